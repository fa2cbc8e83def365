// A decoded instruction in the compact form the semantics consume: decoded once by Zydis
// (isa/decoder.cpp), cached by physical address and mode, executed many times.
#pragma once
#include <cstdint>

namespace pgsim::isa {

class Core;
struct Insn;
struct CompiledBlock;

// The semantics of one instruction form (Spike style: a few lines close to the SDM).
using Handler = void (*)(Core&, const Insn&);

// What an instruction does, for the platform's timing model (decided at decode time).
enum class InsnClass : uint8_t {
  Alu,       // integer arithmetic, logic, moves between registers, LEA, flags
  Mul,       // MUL / IMUL
  Div,       // DIV / IDIV
  Branch,    // JMP, Jcc, CALL, RET, LOOP, JRCXZ (near)
  Load,      // a register loaded from memory (MOV r, m; POP; ...)
  Store,     // memory written from a register or immediate (MOV m, r; PUSH; ...)
  Rmw,       // read-modify-write of memory (ADD m, r; INC m; XCHG m; CMPXCHG m; ...)
  String,    // MOVS, STOS, LODS, CMPS, SCAS (one count per instruction, whatever REP does)
  Fence,     // LFENCE, SFENCE, MFENCE, CLFLUSH, PAUSE
  Nop,       // NOP forms, ENDBR, PREFETCH hints
  System,    // everything registered by register_system_instructions, except:
  Iret,      // IRET / IRETD / IRETQ (a system instruction with a cost of its own)
  Syscall,   // SYSCALL, SYSRET, SYSENTER, SYSEXIT (each half of a fast system-call round trip)
  Unimplemented,  // decoded but without semantics here: raises #UD
  kCount,
};
constexpr unsigned kNumInsnClasses = static_cast<unsigned>(InsnClass::kCount);
const char* insn_class_name(InsnClass cls);

// Where an operand lives.
enum class OpKind : uint8_t {
  None,
  Reg,     // general-purpose register `reg` (AH..BH when `high8`)
  Mem,     // memory: seg:[base + index << scale + disp]
  Imm,     // immediate, already sign- or zero-extended as the encoding defines
  Rel,     // relative branch target: `value` is added to the address of the next instruction
  Ptr,     // far pointer selector:offset (`selector`, `value`)
  SegReg,  // segment register `reg` (SegReg order)
  CtlReg,  // control register CR`reg`
  DbgReg,  // debug register DR`reg`
  Xmm,     // SSE register XMM`reg`
  X87,     // x87 stack register ST(`reg`), relative to the stack top
  Other,   // a register the core does not model as an operand (MMX, AVX, ...)
};

// The kinds of an instruction's first two operands, as a handler specialized at decode knows them
// (Dispatch::add_forms): its operand reads and writes then need no test of the kind. AnyForm: the
// kinds are tested when the handler runs.
template <OpKind K0, OpKind K1> struct Form {
  static constexpr OpKind op0 = K0, op1 = K1;
};
constexpr OpKind kKindAtRunTime = OpKind::None;
using AnyForm = Form<kKindAtRunTime, kKindAtRunTime>;

constexpr uint8_t kNoReg = 0xFF;   // Mem: no base or no index
constexpr uint8_t kRipReg = 0xFE;  // Mem: base is RIP (the address of the next instruction)

struct Operand {
  OpKind kind = OpKind::None;
  uint8_t size = 0;       // in bytes (Mem: the size of the memory access)
  uint8_t reg = kNoReg;   // Reg/SegReg/CtlReg/DbgReg: register number
  bool high8 = false;     // Reg: AH, CH, DH or BH
  uint8_t seg = 0;        // Mem: segment register (override or default)
  uint8_t base = kNoReg;  // Mem: base register, kNoReg or kRipReg
  uint8_t index = kNoReg; // Mem: index register or kNoReg
  uint8_t scale = 0;      // Mem: log2 of the scale factor
  uint16_t selector = 0;  // Ptr: the selector part
  int64_t value = 0;      // Mem: displacement; Imm: immediate; Rel: offset; Ptr: offset
};

// Prefix flags.
enum InsnPrefix : uint8_t {
  kPrefixLock = 1u << 0,   // LOCK
  kPrefixRep = 1u << 1,    // REP / REPE / REPZ
  kPrefixRepne = 1u << 2,  // REPNE / REPNZ
  kPrefixSegOverride = 1u << 3,  // an explicit segment override (see Insn::string_seg)
};

// What a virtual machine monitor must know of an instruction, decided once at decode from the
// instruction's registration in the Dispatch table (the same registration whose semantics consult
// the CPU profile), so that no VMM scans guest code for them.
enum InsnTrait : uint8_t {
  kTraitPrivileged = 1u << 0,  // raises #GP(0) unless CPL = 0 (require_cpl0)
  kTraitPortIo = 1u << 1,      // IN, OUT, INS, OUTS: the I/O-privilege check and the device models
  kTraitVmxExit = 1u << 2,     // exits VMX non-root operation unconditionally or under a VMCS control
  kTraitSystem = 1u << 3,      // registered as a system instruction: the core re-syncs its mode after it
};
// Insn::sensitive when the instruction is none of the profile's sensitive instructions.
constexpr uint8_t kNotSensitive = 0xFF;

struct Insn {
  Handler handler = nullptr;  // what the core calls (semantics, a mode re-sync, a VMM's hook)
  Handler semantics = nullptr;  // the registered semantics
  uint16_t mnemonic = 0;      // ZydisMnemonic
  uint8_t length = 0;         // in bytes
  uint8_t opsize = 0;         // operand size in bytes (1, 2, 4, 8)
  uint8_t addrsize = 0;       // address size in bytes (2, 4, 8)
  uint8_t prefixes = 0;       // InsnPrefix flags
  InsnClass cls = InsnClass::Unimplemented;
  uint8_t num_ops = 0;        // visible operands in op[]
  uint8_t string_seg = 3;     // source segment of MOVS/LODS/CMPS/OUTS (DS unless overridden)
  uint8_t condition = 0;      // Jcc/SETcc/CMOVcc: the condition code (low nibble of the opcode)
  uint8_t traits = 0;         // InsnTrait flags
  uint8_t sensitive = kNotSensitive;  // the SensitiveInsn (isa/system/profile.h) whose profile rule applies
  uint16_t x87_opcode = 0;    // x87 (D8-DF): the 11-bit FOP, low 3 bits of the opcode byte and ModRM
  Operand op[3];
  // The core's block link: the decoded instruction that follows this one in the same decoded page
  // (at this one's offset + length), once the core has seen this one fall through to it; null until
  // then, and never set on instructions that end a block (see isa/README.md, "Dispatch").
  const Insn* next = nullptr;
  // The block starting here compiled to host code (isa/block_compiler.h), and how many times the
  // run loop started a block here before it was: the core's, like `next`.
  const CompiledBlock* compiled = nullptr;
  uint16_t block_starts = 0;

  bool lock() const { return prefixes & kPrefixLock; }
  bool rep() const { return prefixes & kPrefixRep; }
  bool repne() const { return prefixes & kPrefixRepne; }
  bool has(InsnTrait t) const { return traits & t; }
  bool is_sensitive() const { return sensitive != kNotSensitive; }
};

}  // namespace pgsim::isa

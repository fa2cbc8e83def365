// Differential test against the host CPU: every user-level instruction form below is executed
// natively (its machine code copied into an executable page between a register loader and a
// register saver) and in the core, on the same random registers, flags and memory. Registers,
// memory and the flags the SDM defines must match; a #DE must occur on both sides or on neither.
//
// Forms are encoded with Zydis' encoder. Operands avoid RSP (the host stack) and R15 (the state
// pointer of the native wrapper). Code and data sit at the same fixed addresses natively
// (MAP_FIXED_NOREPLACE) and in the guest, so memory operands and addresses agree.
#include <cpuid.h>
#include <immintrin.h>
#include <gtest/gtest.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <string_view>

#include <Zydis/Zydis.h>

#include "isa/system/events.h"
#include "tests/isa/encoding.h"
#include "tests/isa/harness.h"

namespace pgsim::test {
namespace {

using namespace isa;

constexpr uint64_t kCodeAddr = 0x10000000;  // wrapper + instruction (native and guest)
constexpr uint64_t kDataAddr = 0x10010000;  // 4 KiB of operand memory
constexpr uint64_t kDataSize = 4096;
constexpr uint64_t kMemBase = kDataAddr + 1024;  // RBX for memory operands
constexpr uint64_t kStateAddr = 0x10020000;       // the native wrapper's HostState (below 4 GiB)
constexpr uint64_t kStatusAndDf = CF | PF | AF | ZF | SF | OF | DF;

// Register state exchanged with the native wrapper at kStateAddr: gpr[16] at 0, rflags at 128,
// the host's own RSP at 136 while the form runs on a stack inside the data area, and for 32-bit
// forms the far pointers into compatibility mode (144) and back to 64-bit mode (152).
// The 64-bit wrapper also loads the x87 and SSE state from fx_in (FXRSTOR64) before the form and
// saves it to fx_out after it, keeping the host's own in fx_host meanwhile.
struct HostState {
  uint64_t gpr[16];
  uint64_t rflags;
  uint64_t host_rsp;
  uint8_t to_compat[8];  // m16:32 -> __USER32_CS:compat entry
  uint8_t to_long[8];    // m16:32 -> __USER_CS:64-bit exit
  alignas(16) uint8_t fx_in[512];
  alignas(16) uint8_t fx_out[512];
  alignas(16) uint8_t fx_host[512];
};
constexpr uint64_t kLowStack = kStateAddr + 0xF00;  // the wrapper's own stack while in 32-bit code
constexpr uint16_t kLinuxUser32Cs = 0x23, kLinuxUserDs = 0x2B, kLinuxUserCs = 0x33;

// What the input generator must respect for a form.
enum class Shape {
  Plain,
  ShiftByCl,   // count in CL
  DivideSafe,  // rDX often small so that the quotient fits
  BitOffset,   // BT* m, r: the offset register stays within the data area
  CmpxchgHit,  // the accumulator often equals the destination
  String,      // RSI/RDI inside the data area, RCX small
  Branch,      // a short sequence: the instruction then `inc r14` it may skip
  Return,      // the stack top holds the address of the end of the form (RET)
  CallTarget,  // RDX and [rbx+8] hold the address of the end of the form (indirect CALL)
  Float,       // [rbx+16..31] holds interesting floating-point values (memory operands of FP forms)
  Mxcsr,       // [rbx+16] holds a valid MXCSR value (LDMXCSR)
};

constexpr uint64_t kStackTop = kDataAddr + 3072;  // RSP (and RBP) live around here

struct Form {
  std::string name;
  std::vector<uint8_t> code;
  Shape shape = Shape::Plain;
  unsigned opbits = 64;
  int shift_imm = -1;       // immediate shift count (-1: none)
  bool is_shift = false;    // OF defined only for 1-bit shifts
  uint64_t undefined = 0;   // flags the SDM leaves undefined (from Zydis' flag table)
};

// ---- Encoding ------------------------------------------------------------------------------

std::string disassemble(const std::vector<uint8_t>& code, ZydisMachineMode mode) {
  ZydisDisassembledInstruction insn;
  if (!ZYAN_SUCCESS(ZydisDisassembleIntel(mode, kCodeAddr, code.data(), code.size(), &insn)))
    return "(invalid)";
  return insn.text;
}

uint64_t undefined_flags(const std::vector<uint8_t>& code, ZydisMachineMode mode) {
  ZydisDecoder dec;
  ZydisDecoderInit(&dec, mode, mode == ZYDIS_MACHINE_MODE_LONG_64 ? ZYDIS_STACK_WIDTH_64 : ZYDIS_STACK_WIDTH_32);
  ZydisDecodedInstruction zi;
  ZydisDecodedOperand zo[ZYDIS_MAX_OPERAND_COUNT];
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, code.data(), code.size(), &zi, zo)) || !zi.cpu_flags) return 0;
  return zi.cpu_flags->undefined;
}

// The register of `bits` width for a GPR number (8-bit: AL..R15B, no high-byte registers).
ZydisRegister gpr(unsigned bits, unsigned n) {
  static const ZydisRegister r8[] = {ZYDIS_REGISTER_AL, ZYDIS_REGISTER_CL, ZYDIS_REGISTER_DL, ZYDIS_REGISTER_BL,
                                     ZYDIS_REGISTER_SPL, ZYDIS_REGISTER_BPL, ZYDIS_REGISTER_SIL, ZYDIS_REGISTER_DIL,
                                     ZYDIS_REGISTER_R8B, ZYDIS_REGISTER_R9B, ZYDIS_REGISTER_R10B, ZYDIS_REGISTER_R11B,
                                     ZYDIS_REGISTER_R12B, ZYDIS_REGISTER_R13B, ZYDIS_REGISTER_R14B, ZYDIS_REGISTER_R15B};
  switch (bits) {
    case 8: return r8[n];
    case 16: return static_cast<ZydisRegister>(ZYDIS_REGISTER_AX + n);
    case 32: return static_cast<ZydisRegister>(ZYDIS_REGISTER_EAX + n);
    default: return static_cast<ZydisRegister>(ZYDIS_REGISTER_RAX + n);
  }
}

// ---- The forms -----------------------------------------------------------------------------

class FormList {
 public:
  void add(const std::vector<uint8_t>& code, unsigned bits, Shape shape = Shape::Plain, int shift_imm = -1,
           bool is_shift = false) {
    ASSERT_FALSE(code.empty()) << "encoding failed for form #" << forms.size() << " after " << (forms.empty() ? "" : forms.back().name);
    Form f;
    f.code = code;
    f.name = disassemble(code, mode);
    f.shape = shape;
    f.opbits = bits;
    f.shift_imm = shift_imm;
    f.is_shift = is_shift;
    f.undefined = undefined_flags(code, mode);
    forms.push_back(f);
  }
  std::vector<Form> forms;
  ZydisMachineMode mode = ZYDIS_MACHINE_MODE_LONG_64;  // LEGACY_32: run in compatibility mode natively
};

FormList build_forms() {
  FormList l;
  const unsigned sizes[] = {8, 16, 32, 64};
  const unsigned sizes_no8[] = {16, 32, 64};
  // Two-operand ALU: reg,reg (also extended and high-byte registers), reg,mem, mem,reg, reg,imm
  // (both the sign-extended imm8 and the full immediate), mem,imm.
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_ADD, ZYDIS_MNEMONIC_ADC, ZYDIS_MNEMONIC_SUB, ZYDIS_MNEMONIC_SBB,
                          ZYDIS_MNEMONIC_CMP, ZYDIS_MNEMONIC_AND, ZYDIS_MNEMONIC_OR, ZYDIS_MNEMONIC_XOR,
                          ZYDIS_MNEMONIC_TEST}) {
    for (unsigned b : sizes) {
      l.add(encode(m, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b);
      l.add(encode(m, {reg_op(gpr(b, R9)), reg_op(gpr(b, R10))}), b);
      if (m != ZYDIS_MNEMONIC_TEST) l.add(encode(m, {reg_op(gpr(b, RCX)), mem_op(b / 8)}), b);
      l.add(encode(m, {mem_op(b / 8), reg_op(gpr(b, RDX))}), b);
      l.add(encode(m, {reg_op(gpr(b, RCX)), imm_op(-3)}), b);
      l.add(encode(m, {reg_op(gpr(b, RCX)), imm_op(b == 8 ? 0x5A : b == 16 ? 0x5A5A : 0x7A5A5A5A)}), b);
      l.add(encode(m, {mem_op(b / 8), imm_op(b == 8 ? -0x5B : 0x45)}), b);
    }
    l.add(encode(m, {reg_op(ZYDIS_REGISTER_AH), reg_op(ZYDIS_REGISTER_DH)}), 8);
    l.add(encode(m, {reg_op(ZYDIS_REGISTER_AL), imm_op(0x7F)}), 8);
  }
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_INC, ZYDIS_MNEMONIC_DEC, ZYDIS_MNEMONIC_NEG, ZYDIS_MNEMONIC_NOT}) {
    for (unsigned b : sizes) {
      l.add(encode(m, {reg_op(gpr(b, RCX))}), b);
      l.add(encode(m, {mem_op(b / 8)}), b);
    }
    l.add(encode(m, {reg_op(ZYDIS_REGISTER_BH)}), 8);
  }
  // Multiply and divide.
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_MUL, ZYDIS_MNEMONIC_IMUL, ZYDIS_MNEMONIC_DIV, ZYDIS_MNEMONIC_IDIV}) {
    const Shape s = (m == ZYDIS_MNEMONIC_DIV || m == ZYDIS_MNEMONIC_IDIV) ? Shape::DivideSafe : Shape::Plain;
    for (unsigned b : sizes) {
      l.add(encode(m, {reg_op(gpr(b, RCX))}), b, s);
      l.add(encode(m, {mem_op(b / 8)}), b, s);
    }
  }
  for (unsigned b : sizes_no8) {
    l.add(encode(ZYDIS_MNEMONIC_IMUL, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b);
    l.add(encode(ZYDIS_MNEMONIC_IMUL, {reg_op(gpr(b, RCX)), mem_op(b / 8)}), b);
    l.add(encode(ZYDIS_MNEMONIC_IMUL, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX)), imm_op(-7)}), b);
    l.add(encode(ZYDIS_MNEMONIC_IMUL, {reg_op(gpr(b, RCX)), mem_op(b / 8), imm_op(0x1234)}), b);
  }
  // Shifts and rotates by 1, by an immediate, by CL; on a register and on memory.
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_SHL, ZYDIS_MNEMONIC_SHR, ZYDIS_MNEMONIC_SAR, ZYDIS_MNEMONIC_ROL,
                          ZYDIS_MNEMONIC_ROR, ZYDIS_MNEMONIC_RCL, ZYDIS_MNEMONIC_RCR}) {
    for (unsigned b : sizes) {
      l.add(encode(m, {reg_op(gpr(b, RDX)), imm_op(1)}), b, Shape::Plain, 1, true);
      l.add(encode(m, {reg_op(gpr(b, RDX)), imm_op(5)}), b, Shape::Plain, 5, true);
      l.add(encode(m, {reg_op(gpr(b, RDX)), imm_op(b - 1)}), b, Shape::Plain, static_cast<int>(b - 1), true);
      l.add(encode(m, {reg_op(gpr(b, RDX)), reg_op(ZYDIS_REGISTER_CL)}), b, Shape::ShiftByCl, -1, true);
      l.add(encode(m, {mem_op(b / 8), reg_op(ZYDIS_REGISTER_CL)}), b, Shape::ShiftByCl, -1, true);
    }
  }
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_SHLD, ZYDIS_MNEMONIC_SHRD}) {
    for (unsigned b : sizes_no8) {
      l.add(encode(m, {reg_op(gpr(b, RDX)), reg_op(gpr(b, RBX)), imm_op(1)}), b, Shape::Plain, 1, true);
      l.add(encode(m, {reg_op(gpr(b, RDX)), reg_op(gpr(b, RBX)), imm_op(7)}), b, Shape::Plain, 7, true);
      l.add(encode(m, {reg_op(gpr(b, RDX)), reg_op(gpr(b, RSI)), reg_op(ZYDIS_REGISTER_CL)}), b, Shape::ShiftByCl, -1, true);
      l.add(encode(m, {mem_op(b / 8), reg_op(gpr(b, RSI)), reg_op(ZYDIS_REGISTER_CL)}), b, Shape::ShiftByCl, -1, true);
    }
  }
  // Bit operations.
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_BT, ZYDIS_MNEMONIC_BTS, ZYDIS_MNEMONIC_BTR, ZYDIS_MNEMONIC_BTC}) {
    for (unsigned b : sizes_no8) {
      l.add(encode(m, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b);
      l.add(encode(m, {reg_op(gpr(b, RCX)), imm_op(b - 3)}), b);
      l.add(encode(m, {mem_op(b / 8), imm_op(b - 2)}), b);
      l.add(encode(m, {mem_op(b / 8), reg_op(gpr(b, RDX))}), b, Shape::BitOffset);
    }
  }
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  __get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx);
  const bool has_lzcnt = ecx & (1u << 5);
  __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx);
  const bool has_bmi1 = ebx & (1u << 3);
  __get_cpuid(1, &eax, &ebx, &ecx, &edx);
  const bool has_popcnt = ecx & (1u << 23);
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_BSF, ZYDIS_MNEMONIC_BSR, ZYDIS_MNEMONIC_TZCNT, ZYDIS_MNEMONIC_LZCNT,
                          ZYDIS_MNEMONIC_POPCNT}) {
    if ((m == ZYDIS_MNEMONIC_TZCNT && !has_bmi1) || (m == ZYDIS_MNEMONIC_LZCNT && !has_lzcnt) ||
        (m == ZYDIS_MNEMONIC_POPCNT && !has_popcnt))
      continue;
    for (unsigned b : sizes_no8) {
      l.add(encode(m, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b);
      l.add(encode(m, {reg_op(gpr(b, RCX)), mem_op(b / 8)}), b);
    }
  }
  l.add(encode(ZYDIS_MNEMONIC_BSWAP, {reg_op(ZYDIS_REGISTER_ECX)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_BSWAP, {reg_op(ZYDIS_REGISTER_R11)}), 64);
  // Data movement.
  for (unsigned b : sizes) {
    l.add(encode(ZYDIS_MNEMONIC_MOV, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b);
    l.add(encode(ZYDIS_MNEMONIC_MOV, {reg_op(gpr(b, RCX)), mem_op(b / 8)}), b);
    l.add(encode(ZYDIS_MNEMONIC_MOV, {mem_op(b / 8), reg_op(gpr(b, RDX))}), b);
    l.add(encode(ZYDIS_MNEMONIC_MOV, {reg_op(gpr(b, RCX)), imm_op(-2)}), b);
    l.add(encode(ZYDIS_MNEMONIC_MOV, {mem_op(b / 8), imm_op(0x66)}), b);
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_XCHG, ZYDIS_MNEMONIC_XADD, ZYDIS_MNEMONIC_CMPXCHG}) {
      const Shape s = m == ZYDIS_MNEMONIC_CMPXCHG ? Shape::CmpxchgHit : Shape::Plain;
      l.add(encode(m, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b, s);
      l.add(encode(m, {mem_op(b / 8), reg_op(gpr(b, RDX))}), b, s);
    }
  }
  l.add(encode(ZYDIS_MNEMONIC_MOV, {reg_op(ZYDIS_REGISTER_R12), imm_op(static_cast<int64_t>(0x8877665544332211ull))}), 64);
  l.add(encode(ZYDIS_MNEMONIC_MOV, {reg_op(ZYDIS_REGISTER_CH), reg_op(ZYDIS_REGISTER_AL)}), 8);
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_MOVZX, ZYDIS_MNEMONIC_MOVSX}) {
    for (auto [db, sb] : {std::pair{16u, 8u}, {32u, 8u}, {64u, 8u}, {32u, 16u}, {64u, 16u}}) {
      l.add(encode(m, {reg_op(gpr(db, RCX)), reg_op(gpr(sb, RDX))}), db);
      l.add(encode(m, {reg_op(gpr(db, RCX)), mem_op(sb / 8)}), db);
    }
    l.add(encode(m, {reg_op(ZYDIS_REGISTER_ECX), reg_op(ZYDIS_REGISTER_BH)}), 32);
  }
  l.add(encode(ZYDIS_MNEMONIC_MOVSXD, {reg_op(ZYDIS_REGISTER_RCX), reg_op(ZYDIS_REGISTER_EDX)}), 64);
  l.add(encode(ZYDIS_MNEMONIC_MOVSXD, {reg_op(ZYDIS_REGISTER_RCX), mem_op(4)}), 64);
  // LEA (hand-encoded: [rbx + rdx*4 - 100] and [rbx + rsi + 0x12345], 64- and 32-bit addresses).
  for (auto code : std::vector<std::vector<uint8_t>>{{0x66, 0x8D, 0x4C, 0x93, 0x9C}, {0x8D, 0x4C, 0x93, 0x9C},
                                                     {0x48, 0x8D, 0x4C, 0x93, 0x9C}, {0x67, 0x48, 0x8D, 0x4C, 0x93, 0x9C},
                                                     {0x48, 0x8D, 0x8C, 0x33, 0x45, 0x23, 0x01, 0x00},
                                                     {0x67, 0x8D, 0x8C, 0x33, 0x45, 0x23, 0x01, 0x00}})
    l.add(code, 64);
  l.add(encode(ZYDIS_MNEMONIC_CMPXCHG8B, {mem_op(8, 16)}), 64, Shape::CmpxchgHit);
  l.add(encode(ZYDIS_MNEMONIC_CMPXCHG16B, {mem_op(16, 16)}), 64, Shape::CmpxchgHit);
  const ZydisMnemonic cmov[] = {ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVNO, ZYDIS_MNEMONIC_CMOVB, ZYDIS_MNEMONIC_CMOVNB,
                                ZYDIS_MNEMONIC_CMOVZ, ZYDIS_MNEMONIC_CMOVNZ, ZYDIS_MNEMONIC_CMOVBE, ZYDIS_MNEMONIC_CMOVNBE,
                                ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVNS, ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVNP,
                                ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVNL, ZYDIS_MNEMONIC_CMOVLE, ZYDIS_MNEMONIC_CMOVNLE};
  const ZydisMnemonic setcc[] = {ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETNO, ZYDIS_MNEMONIC_SETB, ZYDIS_MNEMONIC_SETNB,
                                 ZYDIS_MNEMONIC_SETZ, ZYDIS_MNEMONIC_SETNZ, ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETNBE,
                                 ZYDIS_MNEMONIC_SETS, ZYDIS_MNEMONIC_SETNS, ZYDIS_MNEMONIC_SETP, ZYDIS_MNEMONIC_SETNP,
                                 ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETNL, ZYDIS_MNEMONIC_SETLE, ZYDIS_MNEMONIC_SETNLE};
  for (ZydisMnemonic m : cmov) {
    for (unsigned b : sizes_no8) {
      l.add(encode(m, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b);
      l.add(encode(m, {reg_op(gpr(b, RCX)), mem_op(b / 8)}), b);
    }
  }
  for (ZydisMnemonic m : setcc) {
    l.add(encode(m, {reg_op(ZYDIS_REGISTER_CL)}), 8);
    l.add(encode(m, {mem_op(1)}), 8);
  }
  // A branch followed by `inc r14` (3 bytes) that a taken branch skips.
  const std::vector<uint8_t> inc_r14 = {0x49, 0xFF, 0xC6};
  auto branch = [&](std::vector<uint8_t> code) {
    code.insert(code.end(), inc_r14.begin(), inc_r14.end());
    l.add(code, 64, Shape::Branch);
  };
  for (uint8_t cc = 0; cc < 16; ++cc) branch({static_cast<uint8_t>(0x70 + cc), 0x03});  // jcc rel8 +3
  branch({0xE2, 0x03});        // loop +3
  branch({0xE1, 0x03});        // loope +3
  branch({0xE0, 0x03});        // loopne +3
  branch({0xE3, 0x03});        // jrcxz +3
  branch({0x67, 0xE3, 0x03});  // jecxz +3
  branch({0x67, 0xE2, 0x03});  // loop +3 with ECX
  branch({0xEB, 0x03});        // jmp +3
  for (auto code : std::vector<std::vector<uint8_t>>{{0x66, 0x98}, {0x98}, {0x48, 0x98}, {0x66, 0x99}, {0x99}, {0x48, 0x99},
                                                     {0x9F}, {0x9E}, {0xF8}, {0xF9}, {0xF5}, {0xFC}, {0xFD}, {0xD7}})
    l.add(code, 64);  // cbw cwde cdqe cwd cdq cqo lahf sahf clc stc cmc cld std xlat
  // LOCK forms (read-modify-write of memory).
  for (unsigned b : sizes) {
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_ADD, ZYDIS_MNEMONIC_SUB, ZYDIS_MNEMONIC_AND, ZYDIS_MNEMONIC_OR,
                            ZYDIS_MNEMONIC_XOR, ZYDIS_MNEMONIC_ADC, ZYDIS_MNEMONIC_SBB, ZYDIS_MNEMONIC_XADD})
      l.add(encode(m, {mem_op(b / 8), reg_op(gpr(b, RDX))}, ZYDIS_ATTRIB_HAS_LOCK), b);
    l.add(encode(ZYDIS_MNEMONIC_CMPXCHG, {mem_op(b / 8), reg_op(gpr(b, RDX))}, ZYDIS_ATTRIB_HAS_LOCK), b, Shape::CmpxchgHit);
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_INC, ZYDIS_MNEMONIC_DEC, ZYDIS_MNEMONIC_NEG, ZYDIS_MNEMONIC_NOT})
      l.add(encode(m, {mem_op(b / 8)}, ZYDIS_ATTRIB_HAS_LOCK), b);
  }
  for (unsigned b : sizes_no8)
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_BTS, ZYDIS_MNEMONIC_BTR, ZYDIS_MNEMONIC_BTC})
      l.add(encode(m, {mem_op(b / 8), reg_op(gpr(b, RDX))}, ZYDIS_ATTRIB_HAS_LOCK), b, Shape::BitOffset);
  l.add(encode(ZYDIS_MNEMONIC_CMPXCHG16B, {mem_op(16, 16)}, ZYDIS_ATTRIB_HAS_LOCK), 64, Shape::CmpxchgHit);
  // Stack: PUSH/POP of registers, memory and immediates, PUSH RSP / POP RSP, CALL, RET, ENTER, LEAVE.
  for (auto code : std::vector<std::vector<uint8_t>>{
           {0x52}, {0x66, 0x52}, {0x41, 0x52}, {0x54}, {0xFF, 0x73, 0x08}, {0x66, 0xFF, 0x73, 0x08},
           {0x6A, 0xF0}, {0x68, 0x78, 0x56, 0x34, 0x92}, {0x66, 0x68, 0x34, 0x12},  // push rdx/dx/r10/rsp/m64/m16/imm8/imm32/imm16
           {0x5A}, {0x66, 0x5A}, {0x41, 0x5B}, {0x5C}, {0x8F, 0x43, 0x08}, {0x66, 0x8F, 0x43, 0x08},  // pop rdx/dx/r11/rsp/m64/m16
           {0x8F, 0x44, 0x24, 0x08},                                                   // pop [rsp+8] (address after the pop)
           {0xC8, 0x10, 0x00, 0x00}, {0xC8, 0x08, 0x00, 0x01}, {0xC8, 0x18, 0x00, 0x03},  // enter 16,0 / 8,1 / 24,3
           {0xC9}, {0x66, 0xC9}})                                                      // leave / leave (16-bit)
    l.add(code, 64);
  branch({0xE8, 0x03, 0x00, 0x00, 0x00});                // call +3 (over inc r14)
  l.add({0xC3}, 64, Shape::Return);                      // ret
  l.add({0xC2, 0x10, 0x00}, 64, Shape::Return);          // ret 16
  l.add({0xFF, 0xD2}, 64, Shape::CallTarget);            // call rdx
  l.add({0xFF, 0x53, 0x08}, 64, Shape::CallTarget);      // call [rbx+8]
  l.add({0xFF, 0xE2}, 64, Shape::CallTarget);            // jmp rdx
  l.add({0xFF, 0x63, 0x08}, 64, Shape::CallTarget);      // jmp [rbx+8]
  // Strings: element sizes 1, 2, 4, 8 (66h / none / REX.W), without and with REP/REPE/REPNE.
  for (uint8_t op : {0xA4, 0xAA, 0xAC, 0xA6, 0xAE}) {  // movs stos lods cmps scas
    for (unsigned b : sizes) {
      std::vector<uint8_t> base;
      if (b == 16) base.push_back(0x66);
      if (b == 64) base.push_back(0x48);
      base.push_back(static_cast<uint8_t>(b == 8 ? op : op + 1));
      std::vector<uint8_t> rep = {0xF3};
      rep.insert(rep.end(), base.begin(), base.end());
      l.add(base, b, Shape::String);
      l.add(rep, b, Shape::String);
      if (op == 0xA6 || op == 0xAE) {
        std::vector<uint8_t> repne = {0xF2};
        repne.insert(repne.end(), base.begin(), base.end());
        l.add(repne, b, Shape::String);
      }
    }
  }
  return l;
}

// The 32-bit forms: the same families with EAX..EDI, the 8-bit registers AL..BH, [EBX+disp]
// operands and the one-byte INC/DEC encodings of 32-bit mode; 16-bit addressing in LEA.
FormList build_forms32() {
  FormList l;
  l.mode = ZYDIS_MACHINE_MODE_LEGACY_32;
  const ZydisMachineMode mode = l.mode;
  auto mem = [](unsigned bytes, int64_t disp = 8) {
    return mem_op(bytes, disp, ZYDIS_REGISTER_NONE, 0, ZYDIS_REGISTER_EBX);
  };
  auto enc = [&](ZydisMnemonic m, std::initializer_list<ZydisEncoderOperand> ops, ZyanU64 prefixes = 0) {
    return encode(m, ops, prefixes, mode);
  };
  const unsigned sizes[] = {8, 16, 32};
  const unsigned sizes_no8[] = {16, 32};
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_ADD, ZYDIS_MNEMONIC_ADC, ZYDIS_MNEMONIC_SUB, ZYDIS_MNEMONIC_SBB,
                          ZYDIS_MNEMONIC_CMP, ZYDIS_MNEMONIC_AND, ZYDIS_MNEMONIC_OR, ZYDIS_MNEMONIC_XOR,
                          ZYDIS_MNEMONIC_TEST}) {
    for (unsigned b : sizes) {
      l.add(enc(m, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b);
      if (m != ZYDIS_MNEMONIC_TEST) l.add(enc(m, {reg_op(gpr(b, RCX)), mem(b / 8)}), b);
      l.add(enc(m, {mem(b / 8), reg_op(gpr(b, RDX))}), b);
      l.add(enc(m, {reg_op(gpr(b, RCX)), imm_op(-3)}), b);
      l.add(enc(m, {mem(b / 8), imm_op(b == 8 ? 0x5A : 0x7A5A)}), b);
    }
    l.add(enc(m, {reg_op(ZYDIS_REGISTER_AH), reg_op(ZYDIS_REGISTER_DH)}), 8);
  }
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_INC, ZYDIS_MNEMONIC_DEC, ZYDIS_MNEMONIC_NEG, ZYDIS_MNEMONIC_NOT}) {
    for (unsigned b : sizes) {
      l.add(enc(m, {reg_op(gpr(b, RCX))}), b);
      l.add(enc(m, {mem(b / 8)}), b);
    }
  }
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_MUL, ZYDIS_MNEMONIC_IMUL, ZYDIS_MNEMONIC_DIV, ZYDIS_MNEMONIC_IDIV}) {
    const Shape s = (m == ZYDIS_MNEMONIC_DIV || m == ZYDIS_MNEMONIC_IDIV) ? Shape::DivideSafe : Shape::Plain;
    for (unsigned b : sizes) {
      l.add(enc(m, {reg_op(gpr(b, RCX))}), b, s);
      l.add(enc(m, {mem(b / 8)}), b, s);
    }
  }
  for (unsigned b : sizes_no8) {
    l.add(enc(ZYDIS_MNEMONIC_IMUL, {reg_op(gpr(b, RCX)), mem(b / 8)}), b);
    l.add(enc(ZYDIS_MNEMONIC_IMUL, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX)), imm_op(-7)}), b);
  }
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_SHL, ZYDIS_MNEMONIC_SHR, ZYDIS_MNEMONIC_SAR, ZYDIS_MNEMONIC_ROL,
                          ZYDIS_MNEMONIC_ROR, ZYDIS_MNEMONIC_RCL, ZYDIS_MNEMONIC_RCR}) {
    for (unsigned b : sizes) {
      l.add(enc(m, {reg_op(gpr(b, RDX)), imm_op(1)}), b, Shape::Plain, 1, true);
      l.add(enc(m, {reg_op(gpr(b, RDX)), imm_op(5)}), b, Shape::Plain, 5, true);
      l.add(enc(m, {reg_op(gpr(b, RDX)), reg_op(ZYDIS_REGISTER_CL)}), b, Shape::ShiftByCl, -1, true);
      l.add(enc(m, {mem(b / 8), reg_op(ZYDIS_REGISTER_CL)}), b, Shape::ShiftByCl, -1, true);
    }
  }
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_SHLD, ZYDIS_MNEMONIC_SHRD}) {
    for (unsigned b : sizes_no8) {
      l.add(enc(m, {reg_op(gpr(b, RDX)), reg_op(gpr(b, RSI)), imm_op(7)}), b, Shape::Plain, 7, true);
      l.add(enc(m, {mem(b / 8), reg_op(gpr(b, RSI)), reg_op(ZYDIS_REGISTER_CL)}), b, Shape::ShiftByCl, -1, true);
    }
  }
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_BT, ZYDIS_MNEMONIC_BTS, ZYDIS_MNEMONIC_BTR, ZYDIS_MNEMONIC_BTC}) {
    for (unsigned b : sizes_no8) {
      l.add(enc(m, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b);
      l.add(enc(m, {mem(b / 8), imm_op(b - 2)}), b);
      l.add(enc(m, {mem(b / 8), reg_op(gpr(b, RDX))}), b, Shape::BitOffset);
    }
  }
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_BSF, ZYDIS_MNEMONIC_BSR}) {
    for (unsigned b : sizes_no8) {
      l.add(enc(m, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b);
      l.add(enc(m, {reg_op(gpr(b, RCX)), mem(b / 8)}), b);
    }
  }
  l.add(enc(ZYDIS_MNEMONIC_BSWAP, {reg_op(ZYDIS_REGISTER_ECX)}), 32);
  for (unsigned b : sizes) {
    l.add(enc(ZYDIS_MNEMONIC_MOV, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b);
    l.add(enc(ZYDIS_MNEMONIC_MOV, {reg_op(gpr(b, RCX)), mem(b / 8)}), b);
    l.add(enc(ZYDIS_MNEMONIC_MOV, {mem(b / 8), reg_op(gpr(b, RDX))}), b);
    l.add(enc(ZYDIS_MNEMONIC_MOV, {mem(b / 8), imm_op(0x66)}), b);
    for (ZydisMnemonic m : {ZYDIS_MNEMONIC_XCHG, ZYDIS_MNEMONIC_XADD, ZYDIS_MNEMONIC_CMPXCHG}) {
      const Shape s = m == ZYDIS_MNEMONIC_CMPXCHG ? Shape::CmpxchgHit : Shape::Plain;
      l.add(enc(m, {reg_op(gpr(b, RCX)), reg_op(gpr(b, RDX))}), b, s);
      l.add(enc(m, {mem(b / 8), reg_op(gpr(b, RDX))}), b, s);
    }
  }
  for (ZydisMnemonic m : {ZYDIS_MNEMONIC_MOVZX, ZYDIS_MNEMONIC_MOVSX}) {
    for (auto [db, sb] : {std::pair{16u, 8u}, {32u, 8u}, {32u, 16u}}) {
      l.add(enc(m, {reg_op(gpr(db, RCX)), reg_op(gpr(sb, RDX))}), db);
      l.add(enc(m, {reg_op(gpr(db, RCX)), mem(sb / 8)}), db);
    }
  }
  l.add(enc(ZYDIS_MNEMONIC_CMPXCHG8B, {mem(8, 16)}), 32, Shape::CmpxchgHit);
  // LEA with 32-bit addressing, and with 16-bit addressing ([bx+si+0x10], [bx-0x10]).
  for (auto code : std::vector<std::vector<uint8_t>>{{0x8D, 0x4C, 0x93, 0x9C}, {0x66, 0x8D, 0x4C, 0x93, 0x9C},
                                                     {0x67, 0x8D, 0x48, 0x10}, {0x66, 0x67, 0x8D, 0x4F, 0xF0}})
    l.add(code, 32);
  const ZydisMnemonic cmov[] = {ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVB, ZYDIS_MNEMONIC_CMOVZ, ZYDIS_MNEMONIC_CMOVBE,
                                ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVLE};
  for (ZydisMnemonic m : cmov) l.add(enc(m, {reg_op(ZYDIS_REGISTER_ECX), mem(4)}), 32);
  for (uint8_t cc = 0; cc < 16; ++cc) l.add({0x0F, static_cast<uint8_t>(0x90 + cc), 0xC1}, 8);  // setcc cl
  for (auto code : std::vector<std::vector<uint8_t>>{{0x66, 0x98}, {0x98}, {0x66, 0x99}, {0x99}, {0x9F}, {0x9E},
                                                     {0xF8}, {0xF9}, {0xF5}, {0xFC}, {0xFD}, {0xD7}})
    l.add(code, 32);  // cbw cwde cwd cdq lahf sahf clc stc cmc cld std xlat
  // Branches over `inc esi` (one byte).
  auto branch = [&](std::vector<uint8_t> code) {
    code.push_back(0x46);
    l.add(code, 32, Shape::Branch);
  };
  for (uint8_t cc = 0; cc < 16; ++cc) branch({static_cast<uint8_t>(0x70 + cc), 0x01});
  branch({0xE2, 0x01});        // loop (ECX)
  branch({0x67, 0xE2, 0x01});  // loop (CX)
  branch({0xE3, 0x01});        // jecxz
  branch({0x67, 0xE3, 0x01});  // jcxz
  branch({0xEB, 0x01});        // jmp
  branch({0xE8, 0x01, 0x00, 0x00, 0x00});  // call
  // Stack with a 32-bit ESP.
  for (auto code : std::vector<std::vector<uint8_t>>{
           {0x52}, {0x66, 0x52}, {0x54}, {0xFF, 0x73, 0x08}, {0x6A, 0xF0}, {0x68, 0x78, 0x56, 0x34, 0x92},
           {0x5A}, {0x66, 0x5A}, {0x5C}, {0x8F, 0x43, 0x08}, {0x8F, 0x44, 0x24, 0x08},
           {0xC8, 0x10, 0x00, 0x00}, {0xC8, 0x08, 0x00, 0x01}, {0xC8, 0x18, 0x00, 0x03}, {0xC9}, {0x66, 0xC9}})
    l.add(code, 32);
  l.add({0xC3}, 32, Shape::Return);
  l.add({0xC2, 0x10, 0x00}, 32, Shape::Return);
  l.add({0xFF, 0xD2}, 32, Shape::CallTarget);
  l.add({0xFF, 0x53, 0x08}, 32, Shape::CallTarget);
  l.add({0xFF, 0x63, 0x08}, 32, Shape::CallTarget);
  // Strings with 32-bit addressing.
  for (uint8_t op : {0xA4, 0xAA, 0xAC, 0xA6, 0xAE}) {
    for (unsigned b : sizes) {
      std::vector<uint8_t> base;
      if (b == 16) base.push_back(0x66);
      base.push_back(static_cast<uint8_t>(b == 8 ? op : op + 1));
      l.add(base, b, Shape::String);
      std::vector<uint8_t> rep = {static_cast<uint8_t>(op == 0xA6 || op == 0xAE ? 0xF2 : 0xF3)};
      rep.insert(rep.end(), base.begin(), base.end());
      l.add(rep, b, Shape::String);
    }
  }
  return l;
}

// The SSE/SSE2 and x87 forms (64-bit mode): each with register operands (including XMM8-15) and
// with a memory operand at [rbx+16], on random x87 and SSE state (random_fx_image).
FormList build_fp_forms() {
  FormList l;
  auto x = [](unsigned n) { return reg_op(static_cast<ZydisRegister>(ZYDIS_REGISTER_XMM0 + n)); };
  auto m = [](unsigned bytes) { return mem_op(bytes, 16); };
  // dst, src and dst, [mem] forms of an instruction whose memory operand has `bytes` bytes.
  auto both = [&](ZydisMnemonic mn, unsigned bytes, std::initializer_list<ZydisEncoderOperand> extra = {}) {
    std::vector<ZydisEncoderOperand> rr = {x(1), x(2)}, rm = {x(9), m(bytes)};
    rr.insert(rr.end(), extra.begin(), extra.end());
    rm.insert(rm.end(), extra.begin(), extra.end());
    auto enc_ops = [&](const std::vector<ZydisEncoderOperand>& ops) {
      ZydisEncoderRequest req{};
      req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
      req.mnemonic = mn;
      req.operand_count = static_cast<ZyanU8>(ops.size());
      for (size_t k = 0; k < ops.size(); ++k) req.operands[k] = ops[k];
      uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
      ZyanUSize len = sizeof(buf);
      if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, buf, &len))) return std::vector<uint8_t>{};
      return std::vector<uint8_t>(buf, buf + len);
    };
    l.add(enc_ops(rr), 32, Shape::Float);
    l.add(enc_ops(rm), 32, Shape::Float);
  };
  using Z = ZydisMnemonic;
  for (Z mn : {ZYDIS_MNEMONIC_ADDPS, ZYDIS_MNEMONIC_SUBPS, ZYDIS_MNEMONIC_MULPS, ZYDIS_MNEMONIC_DIVPS, ZYDIS_MNEMONIC_MINPS,
               ZYDIS_MNEMONIC_MAXPS, ZYDIS_MNEMONIC_SQRTPS, ZYDIS_MNEMONIC_ADDPD, ZYDIS_MNEMONIC_SUBPD, ZYDIS_MNEMONIC_MULPD,
               ZYDIS_MNEMONIC_DIVPD, ZYDIS_MNEMONIC_MINPD, ZYDIS_MNEMONIC_MAXPD, ZYDIS_MNEMONIC_SQRTPD, ZYDIS_MNEMONIC_ANDPS,
               ZYDIS_MNEMONIC_ANDNPS, ZYDIS_MNEMONIC_ORPS, ZYDIS_MNEMONIC_XORPS, ZYDIS_MNEMONIC_ANDPD, ZYDIS_MNEMONIC_ANDNPD,
               ZYDIS_MNEMONIC_ORPD, ZYDIS_MNEMONIC_XORPD, ZYDIS_MNEMONIC_UNPCKLPS, ZYDIS_MNEMONIC_UNPCKHPS,
               ZYDIS_MNEMONIC_UNPCKLPD, ZYDIS_MNEMONIC_UNPCKHPD, ZYDIS_MNEMONIC_CVTPS2PD, ZYDIS_MNEMONIC_CVTPD2PS,
               ZYDIS_MNEMONIC_CVTDQ2PS, ZYDIS_MNEMONIC_CVTPS2DQ, ZYDIS_MNEMONIC_CVTTPS2DQ, ZYDIS_MNEMONIC_CVTDQ2PD,
               ZYDIS_MNEMONIC_CVTPD2DQ, ZYDIS_MNEMONIC_CVTTPD2DQ, ZYDIS_MNEMONIC_MOVAPS, ZYDIS_MNEMONIC_MOVUPS,
               ZYDIS_MNEMONIC_MOVAPD, ZYDIS_MNEMONIC_MOVUPD, ZYDIS_MNEMONIC_MOVDQA, ZYDIS_MNEMONIC_MOVDQU})
    both(mn, mn == ZYDIS_MNEMONIC_CVTPS2PD || mn == ZYDIS_MNEMONIC_CVTDQ2PD ? 8 : 16);
  for (Z mn : {ZYDIS_MNEMONIC_ADDSS, ZYDIS_MNEMONIC_SUBSS, ZYDIS_MNEMONIC_MULSS, ZYDIS_MNEMONIC_DIVSS, ZYDIS_MNEMONIC_MINSS,
               ZYDIS_MNEMONIC_MAXSS, ZYDIS_MNEMONIC_SQRTSS, ZYDIS_MNEMONIC_COMISS, ZYDIS_MNEMONIC_UCOMISS,
               ZYDIS_MNEMONIC_CVTSS2SD, ZYDIS_MNEMONIC_MOVSS})
    both(mn, 4);
  for (Z mn : {ZYDIS_MNEMONIC_ADDSD, ZYDIS_MNEMONIC_SUBSD, ZYDIS_MNEMONIC_MULSD, ZYDIS_MNEMONIC_DIVSD, ZYDIS_MNEMONIC_MINSD,
               ZYDIS_MNEMONIC_MAXSD, ZYDIS_MNEMONIC_SQRTSD, ZYDIS_MNEMONIC_COMISD, ZYDIS_MNEMONIC_UCOMISD,
               ZYDIS_MNEMONIC_CVTSD2SS, ZYDIS_MNEMONIC_MOVSD})
    both(mn, 8);
  for (int64_t p = 0; p < 8; ++p) {
    both(ZYDIS_MNEMONIC_CMPPS, 16, {imm_op(p)});
    both(ZYDIS_MNEMONIC_CMPPD, 16, {imm_op(p)});
    both(ZYDIS_MNEMONIC_CMPSS, 4, {imm_op(p)});
    both(ZYDIS_MNEMONIC_CMPSD, 8, {imm_op(p)});
  }
  both(ZYDIS_MNEMONIC_SHUFPS, 16, {imm_op(0x1B)});
  both(ZYDIS_MNEMONIC_SHUFPS, 16, {imm_op(0xE4)});
  both(ZYDIS_MNEMONIC_SHUFPD, 16, {imm_op(1)});
  both(ZYDIS_MNEMONIC_SHUFPD, 16, {imm_op(2)});
  for (Z mn : {ZYDIS_MNEMONIC_PADDB, ZYDIS_MNEMONIC_PADDW, ZYDIS_MNEMONIC_PADDD, ZYDIS_MNEMONIC_PADDQ, ZYDIS_MNEMONIC_PSUBB,
               ZYDIS_MNEMONIC_PSUBW, ZYDIS_MNEMONIC_PSUBD, ZYDIS_MNEMONIC_PSUBQ, ZYDIS_MNEMONIC_PADDSB, ZYDIS_MNEMONIC_PADDSW,
               ZYDIS_MNEMONIC_PADDUSB, ZYDIS_MNEMONIC_PADDUSW, ZYDIS_MNEMONIC_PSUBSB, ZYDIS_MNEMONIC_PSUBSW,
               ZYDIS_MNEMONIC_PSUBUSB, ZYDIS_MNEMONIC_PSUBUSW, ZYDIS_MNEMONIC_PMULLW, ZYDIS_MNEMONIC_PMULHW,
               ZYDIS_MNEMONIC_PMULHUW, ZYDIS_MNEMONIC_PMULUDQ, ZYDIS_MNEMONIC_PMADDWD, ZYDIS_MNEMONIC_PAND,
               ZYDIS_MNEMONIC_PANDN, ZYDIS_MNEMONIC_POR, ZYDIS_MNEMONIC_PXOR, ZYDIS_MNEMONIC_PCMPEQB, ZYDIS_MNEMONIC_PCMPEQW,
               ZYDIS_MNEMONIC_PCMPEQD, ZYDIS_MNEMONIC_PCMPGTB, ZYDIS_MNEMONIC_PCMPGTW, ZYDIS_MNEMONIC_PCMPGTD,
               ZYDIS_MNEMONIC_PMINUB, ZYDIS_MNEMONIC_PMAXUB, ZYDIS_MNEMONIC_PMINSW, ZYDIS_MNEMONIC_PMAXSW,
               ZYDIS_MNEMONIC_PAVGB, ZYDIS_MNEMONIC_PAVGW, ZYDIS_MNEMONIC_PSADBW, ZYDIS_MNEMONIC_PACKSSWB,
               ZYDIS_MNEMONIC_PACKSSDW, ZYDIS_MNEMONIC_PACKUSWB, ZYDIS_MNEMONIC_PUNPCKLBW, ZYDIS_MNEMONIC_PUNPCKHBW,
               ZYDIS_MNEMONIC_PUNPCKLWD, ZYDIS_MNEMONIC_PUNPCKHWD, ZYDIS_MNEMONIC_PUNPCKLDQ, ZYDIS_MNEMONIC_PUNPCKHDQ,
               ZYDIS_MNEMONIC_PUNPCKLQDQ, ZYDIS_MNEMONIC_PUNPCKHQDQ, ZYDIS_MNEMONIC_PSLLW, ZYDIS_MNEMONIC_PSLLD,
               ZYDIS_MNEMONIC_PSLLQ, ZYDIS_MNEMONIC_PSRLW, ZYDIS_MNEMONIC_PSRLD, ZYDIS_MNEMONIC_PSRLQ, ZYDIS_MNEMONIC_PSRAW,
               ZYDIS_MNEMONIC_PSRAD})
    both(mn, 16);
  for (Z mn : {ZYDIS_MNEMONIC_PSLLW, ZYDIS_MNEMONIC_PSLLD, ZYDIS_MNEMONIC_PSLLQ, ZYDIS_MNEMONIC_PSRLW, ZYDIS_MNEMONIC_PSRLD,
               ZYDIS_MNEMONIC_PSRLQ, ZYDIS_MNEMONIC_PSRAW, ZYDIS_MNEMONIC_PSRAD, ZYDIS_MNEMONIC_PSLLDQ, ZYDIS_MNEMONIC_PSRLDQ}) {
    l.add(encode(mn, {x(3), imm_op(5)}), 32);
    l.add(encode(mn, {x(11), imm_op(17)}), 32);
  }
  for (int64_t imm : {0x1B, 0xB1}) {
    both(ZYDIS_MNEMONIC_PSHUFD, 16, {imm_op(imm)});
    both(ZYDIS_MNEMONIC_PSHUFLW, 16, {imm_op(imm)});
    both(ZYDIS_MNEMONIC_PSHUFHW, 16, {imm_op(imm)});
  }
  // Moves out of XMM registers and between XMM and general registers.
  for (Z mn : {ZYDIS_MNEMONIC_MOVAPS, ZYDIS_MNEMONIC_MOVUPS, ZYDIS_MNEMONIC_MOVDQA, ZYDIS_MNEMONIC_MOVDQU,
               ZYDIS_MNEMONIC_MOVNTDQ, ZYDIS_MNEMONIC_MOVNTPS})
    l.add(encode(mn, {m(16), x(10)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_MOVUPS, {mem_op(16, 9), x(2)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_MOVSS, {m(4), x(2)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_MOVSD, {m(8), x(2)}), 32);
  for (Z mn : {ZYDIS_MNEMONIC_MOVLPS, ZYDIS_MNEMONIC_MOVHPS, ZYDIS_MNEMONIC_MOVLPD, ZYDIS_MNEMONIC_MOVHPD}) {
    l.add(encode(mn, {x(4), m(8)}), 32);
    l.add(encode(mn, {m(8), x(4)}), 32);
  }
  l.add(encode(ZYDIS_MNEMONIC_MOVHLPS, {x(1), x(12)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_MOVLHPS, {x(1), x(12)}), 32);
  for (unsigned b : {32u, 64u}) {
    const Z mov = b == 32 ? ZYDIS_MNEMONIC_MOVD : ZYDIS_MNEMONIC_MOVQ;
    l.add(encode(mov, {x(5), reg_op(gpr(b, RCX))}), b);
    l.add(encode(mov, {reg_op(gpr(b, RDX)), x(13)}), b);
    l.add(encode(mov, {x(5), m(b / 8)}), b);
    l.add(encode(mov, {m(b / 8), x(5)}), b);
    for (Z mn : {ZYDIS_MNEMONIC_CVTSI2SS, ZYDIS_MNEMONIC_CVTSI2SD}) {
      l.add(encode(mn, {x(6), reg_op(gpr(b, RCX))}), b);
      l.add(encode(mn, {x(6), m(b / 8)}), b);
    }
    for (Z mn : {ZYDIS_MNEMONIC_CVTSS2SI, ZYDIS_MNEMONIC_CVTTSS2SI, ZYDIS_MNEMONIC_CVTSD2SI, ZYDIS_MNEMONIC_CVTTSD2SI}) {
      const bool dbl = mn == ZYDIS_MNEMONIC_CVTSD2SI || mn == ZYDIS_MNEMONIC_CVTTSD2SI;
      l.add(encode(mn, {reg_op(gpr(b, RCX)), x(7)}), b, Shape::Float);
      l.add(encode(mn, {reg_op(gpr(b, RDX)), m(dbl ? 8 : 4)}), b, Shape::Float);
    }
    l.add(encode(ZYDIS_MNEMONIC_MOVNTI, {m(b / 8), reg_op(gpr(b, RDX))}), b);
  }
  l.add(encode(ZYDIS_MNEMONIC_MOVQ, {x(5), x(14)}), 64);
  l.add(encode(ZYDIS_MNEMONIC_MOVMSKPS, {reg_op(ZYDIS_REGISTER_ECX), x(2)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_MOVMSKPD, {reg_op(ZYDIS_REGISTER_ECX), x(2)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_PMOVMSKB, {reg_op(ZYDIS_REGISTER_ECX), x(2)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_PEXTRW, {reg_op(ZYDIS_REGISTER_ECX), x(2), imm_op(5)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_PINSRW, {x(2), reg_op(ZYDIS_REGISTER_ECX), imm_op(3)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_PINSRW, {x(2), m(2), imm_op(6)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_STMXCSR, {m(4)}), 32);
  l.add(encode(ZYDIS_MNEMONIC_LDMXCSR, {m(4)}), 32, Shape::Mxcsr);

  // x87, as raw bytes ([rbx+16] is the modrm byte's memory operand with disp8 0x10).
  auto x87 = [&](std::vector<uint8_t> code) { l.add(code, 32, Shape::Float); };
  for (uint8_t op : {0xD9, 0xDD, 0xDB}) x87({op, static_cast<uint8_t>(op == 0xDB ? 0x6B : 0x43), 0x10});  // fld m32/m64/m80
  x87({0xD9, 0xC3});  // fld st(3)
  for (auto code : std::vector<std::vector<uint8_t>>{
           {0xD9, 0x53, 0x10}, {0xD9, 0x5B, 0x10}, {0xDD, 0x53, 0x10}, {0xDD, 0x5B, 0x10}, {0xDB, 0x7B, 0x10},  // fst(p) m32/m64, fstp m80
           {0xDD, 0xD3}, {0xDD, 0xDB},                                                                          // fst/fstp st(3)
           {0xDF, 0x43, 0x10}, {0xDB, 0x43, 0x10}, {0xDF, 0x6B, 0x10},                                          // fild m16/m32/m64
           {0xDF, 0x53, 0x10}, {0xDB, 0x53, 0x10}, {0xDF, 0x5B, 0x10}, {0xDB, 0x5B, 0x10}, {0xDF, 0x7B, 0x10},  // fist(p)
           {0xDF, 0x4B, 0x10}, {0xDB, 0x4B, 0x10}, {0xDD, 0x4B, 0x10},                                          // fisttp
           {0xD9, 0xE0}, {0xD9, 0xE1}, {0xD9, 0xFA}, {0xD9, 0xFC}, {0xD9, 0xE4}, {0xD9, 0xE5},                  // fchs fabs fsqrt frndint ftst fxam
           {0xD9, 0xE8}, {0xD9, 0xEE}, {0xD9, 0xEB}, {0xD9, 0xEA}, {0xD9, 0xE9}, {0xD9, 0xEC}, {0xD9, 0xED},    // constants
           {0xD9, 0xCA}, {0xDD, 0xC2}, {0xD9, 0xF7}, {0xD9, 0xF6}, {0xDB, 0xE3}, {0xDB, 0xE2},                  // fxch ffree fincstp fdecstp fninit fnclex
           {0xDF, 0xE0}, {0xDD, 0x7B, 0x10}, {0xD9, 0x7B, 0x10}, {0xD9, 0x6B, 0x10}, {0x9B},                    // fnstsw ax/m16 fnstcw fldcw fwait
           {0xD8, 0xD2}, {0xD8, 0xDA}, {0xDE, 0xD9}, {0xDD, 0xE2}, {0xDD, 0xEA}, {0xDA, 0xE9},                  // fcom fcomp fcompp fucom fucomp fucompp
           {0xDB, 0xF2}, {0xDF, 0xF2}, {0xDB, 0xEA}, {0xDF, 0xEA},                                              // fcomi fcomip fucomi fucomip
           {0xD8, 0x53, 0x10}, {0xDC, 0x53, 0x10}, {0xD8, 0x5B, 0x10}, {0xDA, 0x53, 0x10}})                     // fcom m32/m64 fcomp ficom
    x87(code);
  // Arithmetic: /0 add, /1 mul, /4 sub, /5 subr, /6 div, /7 divr.
  for (uint8_t r : {0, 1, 4, 5, 6, 7}) {
    x87({0xD8, static_cast<uint8_t>(0xC0 | r << 3 | 2)});  // fop st0, st(2)
    x87({0xDC, static_cast<uint8_t>(0xC0 | r << 3 | 2)});  // fop st(2), st0
    x87({0xDE, static_cast<uint8_t>(0xC0 | r << 3 | 1)});  // fopp st(1), st0
    x87({0xD8, static_cast<uint8_t>(0x43 | r << 3), 0x10});  // fop m32
    x87({0xDC, static_cast<uint8_t>(0x43 | r << 3), 0x10});  // fop m64
    x87({0xDA, static_cast<uint8_t>(0x43 | r << 3), 0x10});  // fiop m32
    x87({0xDE, static_cast<uint8_t>(0x43 | r << 3), 0x10});  // fiop m16
  }
  return l;
}

// ---- Native execution ------------------------------------------------------------------------

sigjmp_buf g_native_jump;
volatile sig_atomic_t g_native_signal = 0;

void on_native_signal(int sig) {
  g_native_signal = sig;
  siglongjmp(g_native_jump, 1);
}

// Calls the wrapper; returns 0, or the signal (SIGFPE for #DE) that interrupted it.
__attribute__((noinline)) int run_native(HostState* state) {
  g_native_signal = 0;
  if (sigsetjmp(g_native_jump, 1) == 0) reinterpret_cast<void (*)(HostState*)>(kCodeAddr)(state);
  asm volatile("cld");  // DF may be left set when a signal interrupted the wrapper
  if (g_native_signal) {  // the wrapper did not restore the host's x87 and SSE state
    asm volatile("fninit");
    _mm_setcsr(kMxcsrReset);
  }
  return g_native_signal;
}

// Builds `wrapper(HostState* s)` at kCodeAddr: saves callee-saved registers, loads flags and
// registers from *s, runs the form, stores flags and registers, restores, returns. Returns the
// offset of the form's first byte and of the byte after it.
struct Wrapper {
  size_t form_offset;
  size_t end_offset;
};

Wrapper write_wrapper(uint8_t* page, const std::vector<uint8_t>& form) {
  std::vector<uint8_t> c = {0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57,  // push rbx rbp r12-r15
                            0x49, 0x89, 0xFF,                                            // mov r15, rdi
                            0x49, 0x0F, 0xAE, 0x87};  // fxsave64 [r15 + fx_host]
  auto disp32 = [&c](uint64_t d) {
    for (unsigned k = 0; k < 4; ++k) c.push_back(static_cast<uint8_t>(d >> (8 * k)));
  };
  disp32(offsetof(HostState, fx_host));
  c.insert(c.end(), {0x49, 0x0F, 0xAE, 0x8F});  // fxrstor64 [r15 + fx_in]
  disp32(offsetof(HostState, fx_in));
  c.insert(c.end(), {
                            0x41, 0xFF, 0xB7, 0x80, 0x00, 0x00, 0x00,                    // push qword [r15+128]
                            0x9D,                                                        // popfq
                            0x49, 0x89, 0xA7, 0x88, 0x00, 0x00, 0x00});                  // mov [r15+136], rsp
  for (unsigned r = 0; r < 15; ++r) {  // RSP last: from here on the form's stack is in the data area
    const unsigned g = r < RSP ? r : r == 14 ? RSP : r + 1;
    c.insert(c.end(), {static_cast<uint8_t>(g >= 8 ? 0x4D : 0x49), 0x8B, static_cast<uint8_t>(0x47 | (g & 7) << 3),
                       static_cast<uint8_t>(8 * g)});  // mov reg, [r15 + 8*reg]
  }
  Wrapper w;
  w.form_offset = c.size();
  c.insert(c.end(), form.begin(), form.end());
  w.end_offset = c.size();
  c.insert(c.end(), {0x49, 0x0F, 0xAE, 0x87});  // fxsave64 [r15 + fx_out]
  disp32(offsetof(HostState, fx_out));
  c.insert(c.end(), {0x49, 0x89, 0x67, 0x20,                    // mov [r15+32], rsp
                     0x49, 0x8B, 0xA7, 0x88, 0x00, 0x00, 0x00,     // mov rsp, [r15+136]
                     0x9C, 0x41, 0x8F, 0x87, 0x80, 0x00, 0x00, 0x00});  // pushfq; pop qword [r15+128]
  for (unsigned r = 0; r < 15; ++r) {
    if (r == RSP) continue;
    c.insert(c.end(), {static_cast<uint8_t>(r >= 8 ? 0x4D : 0x49), 0x89, static_cast<uint8_t>(0x47 | (r & 7) << 3),
                       static_cast<uint8_t>(8 * r)});  // mov [r15 + 8*r], reg
  }
  c.insert(c.end(), {0x49, 0x0F, 0xAE, 0x8F});  // fxrstor64 [r15 + fx_host]
  disp32(offsetof(HostState, fx_host));
  c.insert(c.end(), {0xFC, 0x41, 0x5F, 0x41, 0x5E, 0x41, 0x5D, 0x41, 0x5C, 0x5D, 0x5B, 0xC3});  // cld; pops; ret
  std::memcpy(page, c.data(), c.size());
  return w;
}

// The 32-bit wrapper: from 64-bit mode, switch to a stack below 4 GiB and far-jump into a
// compatibility-mode code segment (Linux's __USER32_CS) that loads DS/ES, flags and registers,
// runs the form, stores them, and far-jumps back to a 64-bit exit that restores the host stack.
Wrapper write_wrapper32(uint8_t* page, const std::vector<uint8_t>& form, HostState& state) {
  auto abs32 = [](std::vector<uint8_t>& c, uint64_t address) {
    for (unsigned k = 0; k < 4; ++k) c.push_back(static_cast<uint8_t>(address >> (8 * k)));
  };
  const uint64_t S = kStateAddr;
  std::vector<uint8_t> c = {0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57};  // push rbx rbp r12-r15
  c.insert(c.end(), {0x48, 0x89, 0x24, 0x25});  // mov [S+136], rsp
  abs32(c, S + offsetof(HostState, host_rsp));
  c.push_back(0xBC);  // mov esp, kLowStack
  abs32(c, kLowStack);
  c.insert(c.end(), {0xFF, 0x2C, 0x25});  // jmp far [S+144]
  abs32(c, S + offsetof(HostState, to_compat));
  const size_t compat_entry = c.size();
  c.insert(c.end(), {0x66, 0xB8, static_cast<uint8_t>(kLinuxUserDs), 0x00, 0x8E, 0xD8, 0x8E, 0xC0});  // ds = es = user data
  c.insert(c.end(), {0xFF, 0x35});  // push dword [S+128]
  abs32(c, S + offsetof(HostState, rflags));
  c.push_back(0x9D);  // popfd
  for (unsigned r = 0; r < 8; ++r) {
    if (r == RSP) continue;
    c.insert(c.end(), {0x8B, static_cast<uint8_t>(0x05 | r << 3)});  // mov r32, [S + 8*r]
    abs32(c, S + 8 * r);
  }
  c.insert(c.end(), {0x8B, 0x25});  // mov esp, [S+32]
  abs32(c, S + 8 * RSP);
  Wrapper w;
  w.form_offset = c.size();
  c.insert(c.end(), form.begin(), form.end());
  w.end_offset = c.size();
  c.insert(c.end(), {0x89, 0x25});  // mov [S+32], esp
  abs32(c, S + 8 * RSP);
  c.push_back(0xBC);  // mov esp, kLowStack
  abs32(c, kLowStack);
  c.insert(c.end(), {0x9C, 0x8F, 0x05});  // pushfd; pop dword [S+128]
  abs32(c, S + offsetof(HostState, rflags));
  for (unsigned r = 0; r < 8; ++r) {
    if (r == RSP) continue;
    c.insert(c.end(), {0x89, static_cast<uint8_t>(0x05 | r << 3)});  // mov [S + 8*r], r32
    abs32(c, S + 8 * r);
  }
  c.insert(c.end(), {0xFF, 0x2D});  // jmp far [S+152]
  abs32(c, S + offsetof(HostState, to_long));
  const size_t long_exit = c.size();
  c.insert(c.end(), {0x48, 0x8B, 0x24, 0x25});  // mov rsp, [S+136]
  abs32(c, S + offsetof(HostState, host_rsp));
  c.insert(c.end(), {0xFC, 0x41, 0x5F, 0x41, 0x5E, 0x41, 0x5D, 0x41, 0x5C, 0x5D, 0x5B, 0xC3});  // cld; pops; ret
  std::memcpy(page, c.data(), c.size());
  auto far_pointer = [](uint8_t* p, uint64_t offset, uint16_t selector) {
    const uint32_t o = static_cast<uint32_t>(offset);
    std::memcpy(p, &o, 4);
    std::memcpy(p + 4, &selector, 2);
  };
  far_pointer(state.to_compat, kCodeAddr + compat_entry, kLinuxUser32Cs);
  far_pointer(state.to_long, kCodeAddr + long_exit, kLinuxUserCs);
  return w;
}

// ---- Inputs --------------------------------------------------------------------------------

struct Input {
  uint64_t gpr[16];
  uint64_t rflags;
  uint8_t data[kDataSize];
  alignas(16) uint8_t fx[512];  // the x87 and SSE state, as FXSAVE64 lays it out
};

uint64_t interesting(std::mt19937_64& rng) {
  static const uint64_t values[] = {0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
                                    0xFFFFFFFF, 0x7FFFFFFFFFFFFFFFull, 0x8000000000000000ull, ~0ull, 0x100000000ull};
  switch (rng() % 4) {
    case 0: return values[rng() % (sizeof(values) / sizeof(values[0]))];
    case 1: return rng() % 64;
    default: return rng();
  }
}

// ---- x87 and SSE inputs ------------------------------------------------------------------------

// Floating-point values where implementations go wrong: signed zeros, denormals, the smallest and
// largest normals, infinities, quiet and signalling NaNs, values that round, integer limits.
uint32_t interesting_float(std::mt19937_64& rng) {
  static const uint32_t values[] = {0, 0x80000000, 0x3F800000, 0xBFC00000, 0x00800000, 0x00000001, 0x807FFFFF,
                                    0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7FA00000, 0x7F7FFFFF,
                                    0x3EAAAAAB, 0x4F000000, 0xCF000000, 0x5F000000, 0x3F000000, 0x4B000001};
  switch (rng() % 4) {
    case 0: return values[rng() % (sizeof(values) / sizeof(values[0]))];
    case 1: {  // a small integer or half-integer
      const float v = static_cast<float>(static_cast<int>(rng() % 200) - 100) / 2;
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      return bits;
    }
    default: return static_cast<uint32_t>(rng());
  }
}
uint64_t interesting_double(std::mt19937_64& rng) {
  static const uint64_t values[] = {0, 0x8000000000000000ull, 0x3FF0000000000000ull, 0xBFF8000000000000ull,
                                    0x0010000000000000ull, 0x0000000000000001ull, 0x800FFFFFFFFFFFFFull,
                                    0x7FF0000000000000ull, 0xFFF0000000000000ull, 0x7FF8000000000000ull,
                                    0xFFF8000000000001ull, 0x7FF4000000000000ull, 0x7FEFFFFFFFFFFFFFull,
                                    0x3FD5555555555555ull, 0x41E0000000000000ull, 0xC3E0000000000000ull,
                                    0x43E0000000000000ull, 0x3FE0000000000000ull, 0x4330000000000001ull,
                                    0x36A0000000000000ull, 0x47EFFFFFE0000000ull};
  switch (rng() % 4) {
    case 0: return values[rng() % (sizeof(values) / sizeof(values[0]))];
    case 1: {
      const double v = static_cast<double>(static_cast<int>(rng() % 200) - 100) / 2;
      uint64_t bits;
      std::memcpy(&bits, &v, 8);
      return bits;
    }
    default: return rng();
  }
}
// A quadword of two floats or one double.
uint64_t interesting_quadword(std::mt19937_64& rng) {
  if (rng() % 2) return interesting_double(rng);
  return interesting_float(rng) | static_cast<uint64_t>(interesting_float(rng)) << 32;
}

// FXSAVE64 image offsets.
constexpr unsigned kFxFcw = 0, kFxFsw = 2, kFxFtw = 4, kFxMxcsr = 24, kFxSt = 32, kFxXmm = 160;

// A random x87 and SSE state: every exception masked (so that the host raises no signal), random
// precision and rounding control, sticky flags, condition codes, stack top and tags, registers of
// interesting values; MXCSR with random rounding, FTZ, DAZ and flags.
void random_fx_image(std::mt19937_64& rng, uint8_t* fx) {
  std::memset(fx, 0, 512);
  static const uint16_t precision[] = {0x000, 0x200, 0x300};
  const uint16_t fcw = static_cast<uint16_t>(0x1040 | 0x3F | precision[rng() % 3] | (rng() % 4) << 10);
  const uint16_t fsw = static_cast<uint16_t>((rng() & (0x3F | FSW_C0 | FSW_C1 | FSW_C2 | FSW_C3)) | (rng() % 8) << kFswTopShift);
  const uint8_t ftw = rng() % 3 == 0 ? 0xFF : rng() % 4 == 0 ? 0 : static_cast<uint8_t>(rng());
  const uint32_t mxcsr = 0x1F80 | static_cast<uint32_t>(rng() % 4) << 13 | (rng() % 4 == 0 ? uint32_t{MXCSR_FZ} : 0u) |
                         (rng() % 4 == 0 ? uint32_t{MXCSR_DAZ} : 0u) | static_cast<uint32_t>(rng() % 4 == 0 ? rng() & 0x3F : 0);
  std::memcpy(fx + kFxFcw, &fcw, 2);
  std::memcpy(fx + kFxFsw, &fsw, 2);
  fx[kFxFtw] = ftw;
  std::memcpy(fx + kFxMxcsr, &mxcsr, 4);
  const uint32_t mask = 0xFFFF;
  std::memcpy(fx + kFxMxcsr + 4, &mask, 4);
  for (unsigned k = 0; k < 8; ++k) {
    long double v;
    uint8_t bytes[16] = {};
    const uint64_t d = interesting_double(rng);
    double as_double;
    std::memcpy(&as_double, &d, 8);
    if (rng() % 3 == 0) {  // a random double extended value (integer bit set) or denormal
      uint64_t significand = rng() | (rng() % 8 ? 1ull << 63 : 0);
      uint16_t se = static_cast<uint16_t>(rng() % 4 == 0 ? (rng() & 0x8000) : rng() & 0xFFFF);
      if ((se & 0x7FFF) == 0) significand &= ~(1ull << 63);
      std::memcpy(bytes, &significand, 8);
      std::memcpy(bytes + 8, &se, 2);
    } else {
      v = as_double;
      std::memcpy(bytes, &v, 10);
    }
    std::memcpy(fx + kFxSt + 16 * k, bytes, 10);
  }
  for (unsigned k = 0; k < 32; ++k) {
    const uint64_t q = rng() % 8 == 0 ? rng() : interesting_quadword(rng);
    std::memcpy(fx + kFxXmm + 8 * k, &q, 8);
  }
}

void fx_to_state(const uint8_t* fx, FpuState& f) {
  f = FpuState{};
  std::memcpy(&f.fcw, fx + kFxFcw, 2);
  std::memcpy(&f.fsw, fx + kFxFsw, 2);
  f.ftw = fx[kFxFtw];
  std::memcpy(&f.mxcsr, fx + kFxMxcsr, 4);
  const unsigned top = (f.fsw >> kFswTopShift) & 7;
  for (unsigned k = 0; k < 8; ++k) {
    Float80& r = f.st[(top + k) & 7];
    std::memcpy(&r.significand, fx + kFxSt + 16 * k, 8);
    std::memcpy(&r.sign_exponent, fx + kFxSt + 16 * k + 8, 2);
  }
  for (unsigned k = 0; k < 16; ++k) std::memcpy(f.xmm[k].q, fx + kFxXmm + 16 * k, 16);
}

// What differs between the host's x87 and SSE state (an FXSAVE64 image) and the core's (FOP, FIP
// and FDP aside: AMD processors save them only with an exception pending).
std::string compare_fpu(const uint8_t* host_fx, const FpuState& core) {
  FpuState host;
  fx_to_state(host_fx, host);
  std::string diff;
  char buf[160];
  if (host.fcw != core.fcw || host.fsw != core.fsw || host.ftw != core.ftw || host.mxcsr != core.mxcsr) {
    std::snprintf(buf, sizeof buf, " fcw/fsw/ftw/mxcsr host %04x/%04x/%02x/%08x core %04x/%04x/%02x/%08x;", host.fcw,
                  host.fsw, host.ftw, host.mxcsr, core.fcw, core.fsw, core.ftw, core.mxcsr);
    diff += buf;
  }
  for (unsigned r = 0; r < 8; ++r) {
    if (host.st[r] == core.st[r]) continue;
    std::snprintf(buf, sizeof buf, " R%u host %04x:%016llx core %04x:%016llx;", r, host.st[r].sign_exponent,
                  (unsigned long long)host.st[r].significand, core.st[r].sign_exponent,
                  (unsigned long long)core.st[r].significand);
    diff += buf;
  }
  for (unsigned r = 0; r < 16; ++r) {
    if (host.xmm[r] == core.xmm[r]) continue;
    std::snprintf(buf, sizeof buf, " xmm%u host %016llx%016llx core %016llx%016llx;", r,
                  (unsigned long long)host.xmm[r].q[1], (unsigned long long)host.xmm[r].q[0],
                  (unsigned long long)core.xmm[r].q[1], (unsigned long long)core.xmm[r].q[0]);
    diff += buf;
  }
  return diff;
}

void make_input(const Form& f, std::mt19937_64& rng, uint64_t end_addr, Input& in) {
  for (uint64_t& r : in.gpr) r = interesting(rng);
  in.gpr[RSP] = kStackTop - 8 * (rng() % 4);
  in.gpr[RBP] = kStackTop + 8 * (rng() % 8);  // ENTER and LEAVE follow it
  in.gpr[R15] = 0;
  in.gpr[RBX] = kMemBase;
  in.rflags = (rng() & (CF | PF | AF | ZF | SF | OF)) | RF1;
  for (uint8_t& b : in.data) b = static_cast<uint8_t>(rng());
  random_fx_image(rng, in.fx);
  switch (f.shape) {
    case Shape::Plain:
      break;
    case Shape::Float:
      for (unsigned k = 0; k < 2; ++k) {
        const uint64_t q = interesting_quadword(rng);
        std::memcpy(in.data + (kMemBase - kDataAddr) + 16 + 8 * k, &q, 8);
      }
      break;
    case Shape::Mxcsr: {
      uint32_t mxcsr;
      std::memcpy(&mxcsr, in.fx + kFxMxcsr, 4);
      mxcsr ^= static_cast<uint32_t>(rng() & 0x3F);
      std::memcpy(in.data + (kMemBase - kDataAddr) + 16, &mxcsr, 4);
      break;
    }
    case Shape::ShiftByCl:
      in.gpr[RCX] = rng() % 4 == 0 ? interesting(rng) : rng() % 70;
      break;
    case Shape::DivideSafe:
      if (rng() % 4 != 0) {  // mostly quotients that fit: the high half of the dividend is small
        in.gpr[RDX] = rng() % 2 ? 0 : ((in.gpr[RAX] >> 63) ? ~0ull : 0);
        if (f.opbits == 8) in.gpr[RAX] = (in.gpr[RAX] & ~0xFF00ull) | ((rng() % 2) << 8);
      }
      break;
    case Shape::BitOffset:
      in.gpr[RDX] = static_cast<uint64_t>(static_cast<int64_t>(rng() % 4096) - 2048);
      break;
    case Shape::CmpxchgHit:
      if (rng() % 2) {  // make the comparison succeed
        uint64_t mem;
        std::memcpy(&mem, in.data + (kMemBase - kDataAddr) + 8, 8);
        in.gpr[RAX] = rng() % 2 ? mem : in.gpr[RCX];
        uint64_t high;
        std::memcpy(&high, in.data + (kMemBase - kDataAddr) + 24, 8);
        std::memcpy(&mem, in.data + (kMemBase - kDataAddr) + 16, 8);
        if (rng() % 2) {  // CMPXCHG8B/16B at [rbx+16]
          in.gpr[RAX] = mem;
          in.gpr[RDX] = high;
          if (f.code.size() < 5 || f.code[0] != 0x48) in.gpr[RDX] = mem >> 32;
        }
      }
      break;
    case Shape::String:
      in.gpr[RSI] = kDataAddr + 1024 + rng() % 64;
      in.gpr[RDI] = kDataAddr + 2048 + rng() % 64;
      in.gpr[RCX] = rng() % 9;
      if (rng() % 2) in.rflags |= DF;
      if (rng() % 3 == 0) std::memcpy(in.data + 2048 + (in.gpr[RDI] - kDataAddr - 2048), in.data + 1024 + (in.gpr[RSI] - kDataAddr - 1024), 32);
      break;
    case Shape::Branch:
      in.gpr[RCX] = rng() % 3 == 0 ? (rng() % 2 ? 1 : 0x100000000ull) : in.gpr[RCX];
      break;
    case Shape::Return:
      std::memcpy(in.data + (in.gpr[RSP] - kDataAddr), &end_addr, 8);
      break;
    case Shape::CallTarget:
      in.gpr[RDX] = end_addr;
      std::memcpy(in.data + (kMemBase - kDataAddr) + 8, &end_addr, 8);
      break;
  }
}

// Flags the comparison ignores for this form and input.
uint64_t ignored_flags(const Form& f, const Input& in) {
  uint64_t ignore = f.undefined;
  if (f.is_shift) {
    const unsigned mask = f.opbits == 64 ? 0x3F : 0x1F;
    const unsigned count = (f.shift_imm >= 0 ? static_cast<unsigned>(f.shift_imm) : static_cast<unsigned>(in.gpr[RCX])) & mask;
    if (count != 1) ignore |= OF;  // OF is defined for 1-bit shifts and rotates only
    if (count == 0) ignore = 0;    // a zero count changes nothing
  }
  return ignore;
}

// True when the SDM leaves the whole result undefined for this input (such inputs are skipped:
// processors differ there, e.g. Intel and AMD).
bool result_undefined(const Form& f, const Input& in) {
  if (f.name.rfind("bsf", 0) == 0 || f.name.rfind("bsr", 0) == 0) {  // source 0: destination undefined
    uint64_t src = in.gpr[RDX];
    if (f.name.find("ptr") != std::string::npos) std::memcpy(&src, in.data + (kMemBase - kDataAddr) + 8, 8);
    return (src & Core::size_mask(f.opbits / 8)) == 0;
  }
  if (f.name.rfind("shld", 0) == 0 || f.name.rfind("shrd", 0) == 0) {
    const unsigned count = (f.shift_imm >= 0 ? static_cast<unsigned>(f.shift_imm) : static_cast<unsigned>(in.gpr[RCX])) & 0x1F;
    return f.opbits == 16 && count > 16;
  }
  return false;
}

// ---- The test ------------------------------------------------------------------------------

class StopOnEvent : public TrapHook {
 public:
  bool on_event(Core& core, const Event& e) override {
    vector = e.vector;
    core.request_stop();
    return true;
  }
  int vector = -1;
};

// Maps the native pages, installs the signal handlers, runs every form of `forms` on random
// inputs natively and in the core, and compares. 32-bit forms (mode LEGACY_32) run natively in
// compatibility mode and in the core in 32-bit protected mode at CPL 3.
void run_differential(const FormList& forms, const char* label, bool expect_divide_errors = true) {
  const bool compat = forms.mode != ZYDIS_MACHINE_MODE_LONG_64;
  void* code = mmap(reinterpret_cast<void*>(kCodeAddr), 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  void* data = mmap(reinterpret_cast<void*>(kDataAddr), kDataSize, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  void* state_page = mmap(reinterpret_cast<void*>(kStateAddr), 4096, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_EQ(code, reinterpret_cast<void*>(kCodeAddr)) << "cannot map the native code page";
  ASSERT_EQ(data, reinterpret_cast<void*>(kDataAddr)) << "cannot map the native data page";
  ASSERT_EQ(state_page, reinterpret_cast<void*>(kStateAddr)) << "cannot map the native state page";
  if (compat) {
    // Some hosts (kernels without IA-32 emulation, some hypervisors) cannot run 32-bit code: probe
    // with a NOP form in a child process first.
    write_wrapper32(static_cast<uint8_t*>(code), {0x90}, *static_cast<HostState*>(state_page));
    const pid_t child = fork();
    if (child == 0) {
      reinterpret_cast<void (*)(HostState*)>(kCodeAddr)(static_cast<HostState*>(state_page));
      _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      munmap(code, 4096);
      munmap(data, kDataSize);
      munmap(state_page, 4096);
      GTEST_SKIP() << "this host cannot execute 32-bit compatibility-mode code (far jump to selector 0x23 "
                      "faults), so the 32-bit forms cannot be compared with it here";
    }
  }
  // Signals are handled on their own stack: the form's RSP points into the small data area.
  static uint8_t alt_stack[64 * 1024];
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof(alt_stack);
  ASSERT_EQ(sigaltstack(&ss, nullptr), 0);
  struct sigaction sa {};
  sa.sa_handler = on_native_signal;
  sa.sa_flags = SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_fpe, old_segv, old_ill;
  sigaction(SIGFPE, &sa, &old_fpe);
  sigaction(SIGSEGV, &sa, &old_segv);
  sigaction(SIGILL, &sa, &old_ill);

  constexpr int kInputsPerForm = 100;
  Machine m(0x20000000);
  StopOnEvent hook;
  m.core.set_trap_hook(&hook, false);
  std::mt19937_64 rng(20261123);
  unsigned mismatched_forms = 0, executions = 0, divide_errors = 0;
  std::set<std::string> mnemonics;
  static Input in;  // large: keep off the stack
  HostState& native = *static_cast<HostState*>(state_page);
  static uint8_t native_data[kDataSize];
  uint8_t* const guest_data = m.ram.host_frame(kDataAddr);  // the data area is one guest frame
  const unsigned compared_regs = compat ? 8 : 15;

  for (const Form& f : forms.forms) {
    const Wrapper w = compat ? write_wrapper32(static_cast<uint8_t*>(code), f.code, native)
                             : write_wrapper(static_cast<uint8_t*>(code), f.code);
    const uint64_t form_addr = kCodeAddr + w.form_offset, end_addr = kCodeAddr + w.end_offset;
    m.ram.load(form_addr, f.code);
    m.core.invalidate_decoded(form_addr, f.code.size());
    std::string_view mnemonic = f.name;
    for (std::string_view prefix : {"lock ", "rep ", "repe ", "repne "}) {
      if (mnemonic.substr(0, prefix.size()) == prefix) mnemonic.remove_prefix(prefix.size());
    }
    mnemonics.insert(std::string(mnemonic.substr(0, mnemonic.find(' '))));
    unsigned failures = 0;
    for (int n = 0; n < kInputsPerForm && failures < 3; ++n) {
      make_input(f, rng, end_addr, in);
      if (compat) {
        for (uint64_t& r : in.gpr) r &= 0xFFFFFFFF;
      }
      // Native.
      std::memcpy(native.gpr, in.gpr, sizeof(in.gpr));
      native.rflags = in.rflags;
      std::memcpy(native.fx_in, in.fx, sizeof(in.fx));
      std::memcpy(data, in.data, kDataSize);
      const int native_signal = run_native(&native);
      std::memcpy(native_data, data, kDataSize);
      ASSERT_TRUE(native_signal == 0 || native_signal == SIGFPE)
          << f.name << ": host signal " << native_signal << " (the form must not touch other memory)";
      // Core.
      if (compat) make_prot32(m.state(), 3);
      else make_long64(m.state(), 3);
      if (!compat) {
        m.state().cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT;
        fx_to_state(in.fx, m.state().fpu);
      }
      std::memcpy(m.state().gpr.data(), in.gpr, sizeof(in.gpr));
      m.state().rflags = in.rflags;
      m.state().rip = form_addr;
      std::memcpy(guest_data, in.data, kDataSize);
      hook.vector = -1;
      for (int steps = 0; steps < 4 && m.state().rip != end_addr && hook.vector < 0; ++steps) m.core.run(1);
      ++executions;

      std::string diff;
      if (native_signal == SIGFPE) {
        ++divide_errors;
        if (hook.vector != DE || m.state().rip != form_addr) diff += " host raised #DE, core did not;";
      } else if (hook.vector >= 0) {
        diff += " core raised vector " + std::to_string(hook.vector) + ", host did not;";
      } else if (!result_undefined(f, in)) {
        for (unsigned r = 0; r < compared_regs; ++r) {
          const uint64_t host = compat ? native.gpr[r] & 0xFFFFFFFF : native.gpr[r];
          if (host == m.state().gpr[r]) continue;
          char buf[128];
          std::snprintf(buf, sizeof buf, " r%u host %016llx core %016llx;", r, (unsigned long long)host,
                        (unsigned long long)m.state().gpr[r]);
          diff += buf;
        }
        const uint64_t mask = kStatusAndDf & ~ignored_flags(f, in);
        if ((native.rflags ^ m.state().rflags) & mask) {
          char buf[128];
          std::snprintf(buf, sizeof buf, " flags host %03llx core %03llx (compared %03llx);",
                        (unsigned long long)(native.rflags & mask), (unsigned long long)(m.state().rflags & mask),
                        (unsigned long long)mask);
          diff += buf;
        }
        for (uint64_t k = 0; k < kDataSize; ++k) {
          if (native_data[k] != guest_data[k]) {
            diff += " memory differs at data+" + std::to_string(k) + ";";
            break;
          }
        }
        if (!compat) diff += compare_fpu(native.fx_out, m.state().fpu);
        if (m.state().rip != end_addr) diff += " core did not reach the end of the form;";
      }
      if (!diff.empty()) {
        ++failures;
        char buf[256];
        std::snprintf(buf, sizeof buf, "rax=%llx rcx=%llx rdx=%llx rbx=%llx flags=%llx", (unsigned long long)in.gpr[RAX],
                      (unsigned long long)in.gpr[RCX], (unsigned long long)in.gpr[RDX], (unsigned long long)in.gpr[RBX],
                      (unsigned long long)in.rflags);
        ADD_FAILURE() << f.name << " [" << buf << "]:" << diff;
      }
    }
    if (failures) ++mismatched_forms;
  }
  sigaction(SIGFPE, &old_fpe, nullptr);
  sigaction(SIGSEGV, &old_segv, nullptr);
  sigaction(SIGILL, &old_ill, nullptr);
  munmap(code, 4096);
  munmap(data, kDataSize);
  munmap(state_page, 4096);
  std::printf("differential %s: %zu instruction forms (%zu mnemonics), %u executions, %u host #DE, %u forms mismatched\n",
              label, forms.forms.size(), mnemonics.size(), executions, divide_errors, mismatched_forms);
  EXPECT_EQ(mismatched_forms, 0u);
  if (expect_divide_errors) {
    EXPECT_GT(divide_errors, 0u);  // the #DE path was exercised
  }
}

TEST(Differential, IntegerFormsMatchTheHostCpuIn64BitMode) { run_differential(build_forms(), "64-bit"); }

// SSE/SSE2 and x87 forms on random registers, memory, MXCSR and x87 state with NaNs, denormals,
// infinities, every rounding mode and precision, FTZ and DAZ: XMM and x87 registers, MXCSR, the x87
// control, status and tag words, RFLAGS and memory must match the host.
TEST(Differential, FloatingPointAndSseFormsMatchTheHostCpu) { run_differential(build_fp_forms(), "x87/SSE", false); }

TEST(Differential, IntegerFormsMatchTheHostCpuIn32BitMode) { run_differential(build_forms32(), "32-bit"); }

// Independent of the host: every 32-bit form decodes to implemented semantics in protected mode
// and runs to its end (or raises #DE, for divisions only).
TEST(Differential, EveryThirtyTwoBitFormExecutesInProtectedMode) {
  const FormList forms = build_forms32();
  Machine m(0x20000000);
  StopOnEvent hook;
  m.core.set_trap_hook(&hook, false);
  std::mt19937_64 rng(7);
  static Input in;
  for (const Form& f : forms.forms) {
    const uint64_t form_addr = kCodeAddr + 0x100, end_addr = form_addr + f.code.size();
    m.ram.load(form_addr, f.code);
    m.core.invalidate_decoded(form_addr, f.code.size());
    for (int n = 0; n < 20; ++n) {
      make_input(f, rng, end_addr, in);
      for (uint64_t& r : in.gpr) r &= 0xFFFFFFFF;
      make_prot32(m.state(), 3);
      std::memcpy(m.state().gpr.data(), in.gpr, sizeof(in.gpr));
      m.state().rflags = in.rflags;
      m.state().rip = form_addr;
      m.ram.load(kDataAddr, std::vector<uint8_t>(in.data, in.data + kDataSize));
      hook.vector = -1;
      for (int steps = 0; steps < 4 && m.state().rip != end_addr && hook.vector < 0; ++steps) m.core.run(1);
      const bool divide = f.name.find("div") != std::string::npos;
      if (hook.vector == DE && divide) continue;
      ASSERT_EQ(hook.vector, -1) << f.name << " raised vector " << hook.vector;
      ASSERT_EQ(m.state().rip, end_addr) << f.name << " did not run to its end";
    }
  }
  EXPECT_TRUE(m.core.unimplemented().empty());
}

}  // namespace
}  // namespace pgsim::test

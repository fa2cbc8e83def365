// Blocks of linked instructions compiled to host code: see block_compiler.h.
#include "isa/block_compiler.h"

#include <Zydis/Zydis.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "isa/core.h"

// The host unwinder's registration of call-frame information for generated code (libgcc).
extern "C" void __register_frame(void* begin);
extern "C" void __deregister_frame(void* begin);

namespace pgsim::isa {

namespace {

// The smallest arena: the shared exits and a block of kMaxLength instructions of the largest
// inline forms (about 700 bytes each with their cold code) fit in it.
constexpr size_t kMinArenaBytes = 64u << 10;

// The arena cannot hold the block being emitted (compile() then reports it full).
struct ArenaFull {};

static_assert(offsetof(Insn, handler) == 0, "compiled code calls [insn] as the handler");

// Emits x86-64 instructions through Zydis's encoder at their final addresses.
class Emitter {
 public:
  Emitter(uint8_t* at, const uint8_t* end) : at_(at), end_(end) {}
  uint8_t* here() const { return at_; }

  static ZydisEncoderOperand reg(ZydisRegister r) {
    ZydisEncoderOperand o{};
    o.type = ZYDIS_OPERAND_TYPE_REGISTER;
    o.reg.value = r;
    return o;
  }
  static ZydisEncoderOperand mem(ZydisRegister base, int32_t disp, uint16_t size) {
    ZydisEncoderOperand o{};
    o.type = ZYDIS_OPERAND_TYPE_MEMORY;
    o.mem.base = base;
    o.mem.index = ZYDIS_REGISTER_NONE;
    o.mem.displacement = disp;
    o.mem.size = size;
    return o;
  }
  static ZydisEncoderOperand imm(uint64_t v) {
    ZydisEncoderOperand o{};
    o.type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
    o.imm.u = v;
    return o;
  }

  void op(ZydisMnemonic mnemonic, std::initializer_list<ZydisEncoderOperand> operands) {
    ZydisEncoderRequest req{};
    req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
    req.mnemonic = mnemonic;
    req.operand_count = static_cast<ZyanU8>(operands.size());
    unsigned k = 0;
    for (const ZydisEncoderOperand& o : operands) req.operands[k++] = o;
    ZyanUSize length = ZYDIS_MAX_INSTRUCTION_LENGTH;
    if (end_ - at_ < static_cast<ptrdiff_t>(length)) throw ArenaFull{};
    // Absolute: a branch's immediate is its target, made relative to where the branch lands.
    if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstructionAbsolute(&req, at_, &length, reinterpret_cast<ZyanU64>(at_))))
      throw std::logic_error("block compiler: Zydis cannot encode " + std::string(ZydisMnemonicGetString(mnemonic)));
    at_ += length;
  }
  void branch(ZydisMnemonic mnemonic, const uint8_t* target) {
    op(mnemonic, {imm(reinterpret_cast<uint64_t>(target))});
  }
  // A branch to code not emitted yet: encoded with a 32-bit displacement that bind() sets.
  struct Fixup {
    uint8_t* end = nullptr;  // the end of the branch, where its displacement counts from
  };
  Fixup branch_forward(ZydisMnemonic mnemonic) {
    ZydisEncoderRequest req{};
    req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
    req.mnemonic = mnemonic;
    req.branch_type = ZYDIS_BRANCH_TYPE_NEAR;
    req.branch_width = ZYDIS_BRANCH_WIDTH_32;
    req.operand_count = 1;
    req.operands[0] = imm(reinterpret_cast<uint64_t>(at_));
    ZyanUSize length = ZYDIS_MAX_INSTRUCTION_LENGTH;
    if (end_ - at_ < static_cast<ptrdiff_t>(length)) throw ArenaFull{};
    if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstructionAbsolute(&req, at_, &length, reinterpret_cast<ZyanU64>(at_))))
      throw std::logic_error("block compiler: Zydis cannot encode a forward branch");
    at_ += length;
    return Fixup{at_};
  }
  static void bind(Fixup f, const uint8_t* target) {
    const int32_t displacement = static_cast<int32_t>(target - f.end);
    std::memcpy(f.end - 4, &displacement, 4);
  }

 private:
  uint8_t* at_;
  const uint8_t* end_;  // the arena's end: an instruction that would pass it throws ArenaFull
};

constexpr ZydisRegister kCore = ZYDIS_REGISTER_RBX;     // the Core
constexpr ZydisRegister kPage = ZYDIS_REGISTER_R12;     // the decoded page the block belongs to
constexpr ZydisRegister kInsn = ZYDIS_REGISTER_R13;     // the instruction executing (the exit returns it)

// DWARF register numbers (System V x86-64 psABI, figure 3.36).
constexpr uint8_t kDwarfRbx = 3, kDwarfRbp = 6, kDwarfRsp = 7, kDwarfR12 = 12, kDwarfR13 = 13, kDwarfRa = 16;

// The call-frame information of every block: after the prologue, CFA = RBP + 16 with RBP, RBX, R12
// and R13 saved below the return address. Handlers are called only there, so one FDE over the
// whole arena describes every frame an exception can cross.
std::vector<uint8_t> arena_eh_frame(const uint8_t* begin, size_t bytes) {
  std::vector<uint8_t> f;
  auto u8 = [&](uint8_t v) { f.push_back(v); };
  auto u32 = [&](uint32_t v) { for (unsigned k = 0; k < 4; ++k) u8(static_cast<uint8_t>(v >> (8 * k))); };
  auto u64 = [&](uint64_t v) { for (unsigned k = 0; k < 8; ++k) u8(static_cast<uint8_t>(v >> (8 * k))); };
  auto close = [&](size_t start) {  // pad with DW_CFA_nop, then write the record's length
    while ((f.size() - start) % 8 != 0) u8(0);
    const uint32_t length = static_cast<uint32_t>(f.size() - start - 4);
    std::memcpy(f.data() + start, &length, 4);
  };
  const size_t cie = f.size();
  u32(0);                       // length
  u32(0);                       // CIE id
  u8(1);                        // version
  for (char c : {'z', 'R', '\0'}) u8(static_cast<uint8_t>(c));
  u8(1);                        // code alignment factor
  u8(0x78);                     // data alignment factor: -8 (SLEB128)
  u8(kDwarfRa);                 // return-address column
  u8(1);                        // augmentation data: 1 byte,
  u8(0x00);                     // FDE addresses are absolute 8-byte pointers (DW_EH_PE_absptr)
  u8(0x0c), u8(kDwarfRsp), u8(8);  // DW_CFA_def_cfa RSP + 8
  u8(0x80 | kDwarfRa), u8(1);      // DW_CFA_offset RA at CFA - 8
  close(cie);
  const size_t fde = f.size();
  u32(0);                                     // length
  u32(static_cast<uint32_t>(fde + 4 - cie));  // back to the CIE
  u64(reinterpret_cast<uint64_t>(begin));
  u64(bytes);
  u8(0);                            // no augmentation data
  u8(0x0c), u8(kDwarfRbp), u8(16);  // DW_CFA_def_cfa RBP + 16
  u8(0x80 | kDwarfRbp), u8(2);      // RBP at CFA - 16
  u8(0x80 | kDwarfRbx), u8(3);      // RBX at CFA - 24
  u8(0x80 | kDwarfR12), u8(4);      // R12 at CFA - 32
  u8(0x80 | kDwarfR13), u8(5);      // R13 at CFA - 40
  close(fde);
  u32(0);  // end of the section
  return f;
}

int32_t offset_in(const Core& core, const void* member) {
  return static_cast<int32_t>(static_cast<const char*>(member) - reinterpret_cast<const char*>(&core));
}

}  // namespace

BlockCompiler::BlockCompiler(Core& core, size_t arena_bytes)
    : arena_bytes_(std::max(arena_bytes, kMinArenaBytes)),
      at_{offset_in(core, &core.current_insn_),
          offset_in(core, &core.next_rip_),
          offset_in(core, &core.state_.rip),
          offset_in(core, &core.counters_.retired),
          offset_in(core, &core.counters_.by_class[0]),
          offset_in(core, &core.counters_.itlb_hits),
          offset_in(core, &core.counters_.dtlb_hits),
          offset_in(core, &core.code_page_),
          offset_in(core, &core.attention_),
          offset_in(core, &core.fault_raised_),
          offset_in(core, &core.run_end_),
          static_cast<int32_t>(Core::decoded_page_slots_offset()),
          offset_in(core, &core.state_.gpr[0]),
          offset_in(core, &core.lazy_.op),
          offset_in(core, &core.lazy_.a),
          offset_in(core, &core.lazy_.b),
          offset_in(core, &core.lazy_.r),
          offset_in(core, &core.lazy_.fixed),
          offset_in(core, &core.tlb_[0][0][0]),
          offset_in(core, &core.tlb_epoch_),
          offset_in(core, &core.user_),
          offset_in(core, &core.data_observer_),
          offset_in(core, &core.data_filter_.lines),
          offset_in(core, &core.data_filter_.mask),
          offset_in(core, &core.data_filter_.shift),
          offset_in(core, &core.data_filter_.count),
          offset_in(core, &core.lmsle_last_[0]),
          offset_in(core, &core.seg_base_[0])} {
  static_assert(sizeof(core.attention_) == 1 && sizeof(core.fault_raised_) == 1 && sizeof(core.user_) == 1 &&
                sizeof(core.code_page_) == 8 && sizeof(core.next_rip_) == 8 && sizeof(core.run_end_) == 8);
  static_assert(sizeof(Core::SoftTlbEntry) == 32 && offsetof(Core::SoftTlbEntry, tag) == 0 &&
                offsetof(Core::SoftTlbEntry, host) == 8 && Core::kSoftTlbSize == 256);
  static_assert(sizeof(Core::LazyFlags::op) == 1 && offsetof(Core::LazyFlags, msb) == 1);
  static_assert(offsetof(Core::SoftTlbEntry, frame) == 16 && sizeof(DataAccessFilter::shift) == 4);
}

BlockCompiler::~BlockCompiler() {
  if (!arena_) return;
  __deregister_frame(eh_frame_.data());
  munmap(arena_, arena_bytes_);
}

void BlockCompiler::map_arena() {
  void* p = mmap(nullptr, arena_bytes_, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("block compiler: cannot map an executable code arena");
  arena_ = static_cast<uint8_t*>(p);
  eh_frame_ = arena_eh_frame(arena_, arena_bytes_);
  __register_frame(eh_frame_.data());
  reset();
}

namespace {
using E = Emitter;
constexpr ZydisRegister rax = ZYDIS_REGISTER_RAX, rcx = ZYDIS_REGISTER_RCX, rdx = ZYDIS_REGISTER_RDX,
                        rsi = ZYDIS_REGISTER_RSI, rdi = ZYDIS_REGISTER_RDI, r8 = ZYDIS_REGISTER_R8,
                        r9 = ZYDIS_REGISTER_R9, r10 = ZYDIS_REGISTER_R10, r11 = ZYDIS_REGISTER_R11;

// The 8-, 32- or 64-bit register of a host register (RAX, RCX, RDX, RSI, RDI, R8-R11).
ZydisRegister sized(ZydisRegister r64, unsigned bytes) {
  static constexpr struct {
    ZydisRegister r64, r32, r8;
  } kNames[] = {{ZYDIS_REGISTER_RAX, ZYDIS_REGISTER_EAX, ZYDIS_REGISTER_AL},
                {ZYDIS_REGISTER_RCX, ZYDIS_REGISTER_ECX, ZYDIS_REGISTER_CL},
                {ZYDIS_REGISTER_RDX, ZYDIS_REGISTER_EDX, ZYDIS_REGISTER_DL},
                {ZYDIS_REGISTER_RSI, ZYDIS_REGISTER_ESI, ZYDIS_REGISTER_SIL},
                {ZYDIS_REGISTER_RDI, ZYDIS_REGISTER_EDI, ZYDIS_REGISTER_DIL},
                {ZYDIS_REGISTER_R8, ZYDIS_REGISTER_R8D, ZYDIS_REGISTER_R8B},
                {ZYDIS_REGISTER_R9, ZYDIS_REGISTER_R9D, ZYDIS_REGISTER_R9B},
                {ZYDIS_REGISTER_R10, ZYDIS_REGISTER_R10D, ZYDIS_REGISTER_R10B},
                {ZYDIS_REGISTER_R11, ZYDIS_REGISTER_R11D, ZYDIS_REGISTER_R11B}};
  for (const auto& n : kNames)
    if (n.r64 == r64) return bytes == 8 ? n.r64 : bytes == 4 ? n.r32 : n.r8;
  throw std::logic_error("block compiler: no sized name for a host register");
}

// The instructions whose semantics a block carries out itself (their handlers stay the fallback
// for anything but the common case: a soft-TLB miss, a data observer, flags kept in RFLAGS).
enum class Alu : uint8_t { Add, Sub, Cmp, And, Or, Xor, Test };
enum class Inline : uint8_t { None, Alu, Mov, Lea, Jz, Jnz, Jmp, Call, Ret };
struct InlineForm {
  Inline form = Inline::None;
  Alu alu = Alu::Add;
};

bool plain_operand(const Operand& o, unsigned size) {
  switch (o.kind) {
    case OpKind::Reg: return o.reg < 16 && !o.high8;
    case OpKind::Imm: return true;
    case OpKind::Mem: return o.size == size && (o.base < 16 || o.base == kNoReg || o.base == kRipReg) &&
                             (o.index < 16 || o.index == kNoReg);
    default: return false;
  }
}

InlineForm inline_form(const Insn& i, uint64_t fall) {
  if (i.handler != i.semantics || i.addrsize != 8) return {};
  switch (i.mnemonic) {
    case ZYDIS_MNEMONIC_JZ:
    case ZYDIS_MNEMONIC_JNZ:
    case ZYDIS_MNEMONIC_JMP:
    case ZYDIS_MNEMONIC_CALL: {
      if (i.num_ops != 1 || i.op[0].kind != OpKind::Rel || i.opsize != 8) return {};
      const uint64_t target = fall + static_cast<uint64_t>(i.op[0].value);
      if (static_cast<uint64_t>(static_cast<int64_t>(target << 16) >> 16) != target) return {};  // #GP at the branch
      switch (i.mnemonic) {
        case ZYDIS_MNEMONIC_JZ: return {Inline::Jz};
        case ZYDIS_MNEMONIC_JNZ: return {Inline::Jnz};
        case ZYDIS_MNEMONIC_JMP: return {Inline::Jmp};
        default: return {Inline::Call};
      }
    }
    case ZYDIS_MNEMONIC_RET:
      return i.num_ops == 0 && i.opsize == 8 ? InlineForm{Inline::Ret} : InlineForm{};
    case ZYDIS_MNEMONIC_LEA:
      if (i.num_ops != 2 || (i.opsize != 4 && i.opsize != 8) || i.op[0].kind != OpKind::Reg ||
          !plain_operand(i.op[0], i.opsize) || i.op[1].kind != OpKind::Mem)
        return {};
      return {Inline::Lea};
    default: break;
  }
  static constexpr struct {
    ZydisMnemonic mnemonic;
    Alu alu;
  } kAlu[] = {{ZYDIS_MNEMONIC_ADD, Alu::Add}, {ZYDIS_MNEMONIC_SUB, Alu::Sub}, {ZYDIS_MNEMONIC_CMP, Alu::Cmp},
              {ZYDIS_MNEMONIC_AND, Alu::And}, {ZYDIS_MNEMONIC_OR, Alu::Or},   {ZYDIS_MNEMONIC_XOR, Alu::Xor},
              {ZYDIS_MNEMONIC_TEST, Alu::Test}};
  InlineForm f;
  if (i.mnemonic == ZYDIS_MNEMONIC_MOV) f.form = Inline::Mov;
  for (const auto& a : kAlu)
    if (i.mnemonic == a.mnemonic) f = {Inline::Alu, a.alu};
  if (f.form == Inline::None || i.num_ops != 2) return {};
  const bool writes = f.form == Inline::Mov || (f.alu != Alu::Cmp && f.alu != Alu::Test);
  // 32- and 64-bit forms; 8-bit ones that write nothing (a byte register write keeps the rest).
  if (i.opsize != 4 && i.opsize != 8 && !(i.opsize == 1 && !writes)) return {};
  if (!plain_operand(i.op[0], i.opsize) || !plain_operand(i.op[1], i.opsize)) return {};
  if (i.op[0].kind == OpKind::Imm || (i.op[0].kind == OpKind::Mem && i.op[1].kind == OpKind::Mem)) return {};
  return f;
}

}  // namespace

// Emits one block: its instructions' steps in order, the inline semantics' fallbacks and exits
// after them (cold code), and the jumps to the code that ends every block.
class BlockBuilder {
 public:
  BlockBuilder(const BlockCompiler& compiler, uint8_t* at, const uint8_t* end)
      : e(at, end), c_(compiler), at_(compiler.at_) {}

  // The prologue: the frame the call-frame information describes, RSP 16-byte aligned at calls.
  void prologue() {
    e.op(ZYDIS_MNEMONIC_PUSH, {E::reg(ZYDIS_REGISTER_RBP)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(ZYDIS_REGISTER_RBP), E::reg(ZYDIS_REGISTER_RSP)});
    e.op(ZYDIS_MNEMONIC_PUSH, {E::reg(kCore)});
    e.op(ZYDIS_MNEMONIC_PUSH, {E::reg(kPage)});
    e.op(ZYDIS_MNEMONIC_PUSH, {E::reg(kInsn)});
    e.op(ZYDIS_MNEMONIC_SUB, {E::reg(ZYDIS_REGISTER_RSP), E::imm(8)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(kCore), E::reg(ZYDIS_REGISTER_RDI)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(kPage), E::reg(ZYDIS_REGISTER_RSI)});
  }

  // Instruction `insn` at `rip`; `last`: the block's last one.
  void instruction(const Insn& insn, uint64_t rip, bool last) {
    const uint64_t fall = rip + insn.length;
    const InlineForm f = inline_form(insn, fall);
    insns_.push_back(&insn);
    Cold cold{&insn, rip, last, {}, {}, {}, {}, 0};
    bool emitted = false;
    switch (f.form) {
      case Inline::None: break;
      case Inline::Alu: emitted = alu(insn, f.alu, fall, cold); break;
      case Inline::Mov: emitted = mov(insn, fall, cold); break;
      case Inline::Lea: emitted = lea(insn, fall); break;
      case Inline::Jz:
      case Inline::Jnz: emitted = jcc(f.form == Inline::Jz, cold); break;
      case Inline::Jmp:
      case Inline::Call:
      case Inline::Ret:  // never fall through: the last of their blocks
        if (last) return near_transfer(insn, f.form, rip, cold);
        break;
    }
    if (!emitted) {
      step(insn, rip, last);
    } else {
      // The step's end after the inline semantics (which neither branch nor fault, and leave the
      // code page as it is): the class count, then the loop's checks.
      count_class(insn);
      end_step(insn, fall, last, cold);
    }
    if (!cold.slow.empty() || !cold.attention.empty() || !cold.taken.empty() || !cold.load_miss.empty())
      colds_.push_back(cold);
    resumes_.push_back(e.here());
  }

  // PUSH r64 or imm (POP r64 other than RSP) runs: how many of those that follow `first`, itself
  // one, up to `room` instructions, the block carries out at once; 0 when `first` is none.
  static unsigned stack_run_length(const Insn& first, unsigned room) {
    auto pushes = [](const Insn& i) {
      return i.mnemonic == ZYDIS_MNEMONIC_PUSH && i.opsize == 8 && i.handler == i.semantics &&
             ((i.op[0].kind == OpKind::Reg && i.op[0].reg < 16 && !i.op[0].high8) || i.op[0].kind == OpKind::Imm);
    };
    auto pops = [](const Insn& i) {
      return i.mnemonic == ZYDIS_MNEMONIC_POP && i.opsize == 8 && i.handler == i.semantics &&
             i.op[0].kind == OpKind::Reg && i.op[0].reg < 16 && i.op[0].reg != RSP && !i.op[0].high8;
    };
    const bool push = pushes(first);
    if (!push && !pops(first)) return 0;
    unsigned n = 1;
    for (const Insn* i = first.next; i && n < room && (push ? pushes(*i) : pops(*i)); i = i->next) ++n;
    return n;
  }

  // A run of `n` pushes or pops from `first` at `rip` (integer/stack.cpp, push_run and pop_run):
  // where the soft TLB maps the page all of them reach, the stores or loads at once, with what
  // they leave one by one; anything else (a miss, a page crossed, bytes in more than one line or a
  // line the data observer's filter does not hold, the boundary needed) takes the first one's
  // handler, which does what it can, and the loop goes on from there.
  void stack_run(const Insn& first, uint64_t rip, unsigned n, bool ends_block) {
    insns_.push_back(&first);
    Cold cold{&first, rip, true, {}, {}, {}, {}, 0};
    const bool push = first.mnemonic == ZYDIS_MNEMONIC_PUSH;
    e.op(ZYDIS_MNEMONIC_CMP, {core(at_.attention, 1), E::imm(0)});
    cold.slow.push_back(e.branch_forward(ZYDIS_MNEMONIC_JNZ));
    // The first access's address; the others are in its page when its offset in the page leaves
    // room for them (below it for pushes, above for pops).
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rsi), gpr(RSP, 8)});
    if (push) e.op(ZYDIS_MNEMONIC_SUB, {E::reg(rsi), E::imm(8)});
    stack_checks(cold);
    soft_tlb(push ? 1 : 0, 8, r8, cold);
    e.op(ZYDIS_MNEMONIC_CMP, {E::reg(ZYDIS_REGISTER_R11D), E::imm(push ? 8 * (n - 1) : 0x1000 - 8 * n)});
    cold.slow.push_back(e.branch_forward(push ? ZYDIS_MNEMONIC_JB : ZYDIS_MNEMONIC_JNBE));
    filtered(push ? 1 : 0, push ? -8 * static_cast<int32_t>(n - 1) : 0, 8 * n, cold);
    const Insn* insn = &first;
    const Insn* last = insn;
    uint64_t last_rip = rip;
    std::array<uint64_t, kNumInsnClasses> classes{};
    for (unsigned k = 0; k < n; ++k, last = insn, insn = insn->next) {
      const Operand& o = insn->op[0];
      const int32_t slot = push ? -8 * static_cast<int32_t>(k) : 8 * static_cast<int32_t>(k);
      if (push) {
        if (o.kind == OpKind::Imm) {
          e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::imm(static_cast<uint64_t>(o.value))});
        } else if (o.reg == RSP) {  // PUSH RSP: RSP before this push
          e.op(ZYDIS_MNEMONIC_LEA, {E::reg(rax), E::mem(rsi, 8 - 8 * static_cast<int32_t>(k), 8)});
        } else {
          e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), gpr(o.reg, 8)});
        }
        e.op(ZYDIS_MNEMONIC_MOV, {E::mem(r8, slot, 8), E::reg(rax)});
      } else {
        e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::mem(r8, slot, 8)});
        e.op(ZYDIS_MNEMONIC_MOV, {gpr(o.reg, 8), E::reg(rax)});
      }
      ++classes[static_cast<unsigned>(insn->cls)];
      if (k > 0) last_rip += last->length;
    }
    e.op(ZYDIS_MNEMONIC_ADD, {gpr(RSP, 8), E::imm(push ? -8 * static_cast<int64_t>(n) : 8 * static_cast<int64_t>(n))});
    e.op(ZYDIS_MNEMONIC_ADD, {core(at_.dtlb_hits), E::imm(n)});
    observed(n);
    for (unsigned c = 0; c < kNumInsnClasses; ++c)
      if (classes[c]) e.op(ZYDIS_MNEMONIC_ADD, {core(at_.by_class + 8 * static_cast<int32_t>(c)), E::imm(classes[c])});
    // All but the last retired, each next one fetched through its link; the last's step ends as
    // any instruction's does.
    if (n > 1) {
      e.op(ZYDIS_MNEMONIC_ADD, {core(at_.retired), E::imm(n - 1)});
      e.op(ZYDIS_MNEMONIC_ADD, {core(at_.itlb_hits), E::imm(n - 1)});
      e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::imm(last_rip)});
      e.op(ZYDIS_MNEMONIC_MOV, {core(at_.rip), E::reg(rax)});
    }
    const uint64_t fall = last_rip + last->length;
    if (ends_block) leave(*last, fall);
    else advance(fall);
    colds_.push_back(cold);
    resumes_.push_back(e.here());
  }

  // The fallbacks and exits, after the block: each resumes the block after its instruction.
  void cold_code() {
    for (size_t k = 0; k < colds_.size(); ++k) {
      const Cold& c = colds_[k];
      const uint64_t fall = c.rip + c.insn->length;
      if (!c.slow.empty()) {
        for (E::Fixup f : c.slow) E::bind(f, e.here());
        step(*c.insn, c.rip, c.last);
        if (!c.last) e.branch(ZYDIS_MNEMONIC_JMP, resume_after(c.insn));
      }
      if (!c.load_miss.empty()) {
        for (E::Fixup f : c.load_miss) E::bind(f, e.here());
        step(*c.insn, c.rip, c.last, true);
        if (!c.last) e.branch(ZYDIS_MNEMONIC_JMP, resume_after(c.insn));
      }
      if (!c.attention.empty()) {  // the boundary is needed: the step ends as the loop's slow path
        for (E::Fixup f : c.attention) E::bind(f, e.here());
        leave(*c.insn, fall);
      }
      if (!c.taken.empty()) {  // a taken Jcc ends the block
        for (E::Fixup f : c.taken) E::bind(f, e.here());
        count_class(*c.insn);
        leave(*c.insn, c.target);
      }
    }
  }

  Emitter e;

 private:
  struct Cold {
    const Insn* insn;
    uint64_t rip;
    bool last;
    std::vector<E::Fixup> slow, attention, taken;  // to the handler, the boundary, a taken branch
    std::vector<E::Fixup> load_miss;               // a MOV load's soft-TLB miss (load_after_miss)
    uint64_t target = 0;                           // a Jcc's
  };

  const uint8_t* resume_after(const Insn* insn) const {
    for (size_t k = 0; k < insns_.size(); ++k)
      if (insns_[k] == insn) return resumes_[k];
    throw std::logic_error("block compiler: resume point of an instruction not in the block");
  }

  ZydisEncoderOperand core(int32_t offset, uint16_t size = 8) const { return E::mem(kCore, offset, size); }
  ZydisEncoderOperand gpr(unsigned r, uint16_t size) const { return core(at_.gpr + 8 * static_cast<int32_t>(r), size); }

  void count_class(const Insn& insn) {
    e.op(ZYDIS_MNEMONIC_ADD, {core(at_.by_class + 8 * static_cast<int32_t>(insn.cls)), E::imm(1)});
  }

  // Leaves the block with `insn` to complete, RIP at it and next_rip() at `next` (block_end).
  void leave(const Insn& insn, uint64_t next) {
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::imm(next)});
    leave_to_rax(insn);
  }
  // The same with next_rip() in RAX.
  void leave_to_rax(const Insn& insn) {
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(kInsn), E::imm(reinterpret_cast<uint64_t>(&insn))});
    e.op(ZYDIS_MNEMONIC_MOV, {core(at_.next_rip), E::reg(rax)});
    e.branch(ZYDIS_MNEMONIC_JMP, c_.block_end_);
  }

  // After an instruction that fell through: the next one's step follows unless the boundary is
  // needed; the last one's ends the block.
  void end_step(const Insn& insn, uint64_t fall, bool last, Cold& cold) {
    if (last) return leave(insn, fall);
    e.op(ZYDIS_MNEMONIC_CMP, {core(at_.attention, 1), E::imm(0)});
    cold.attention.push_back(e.branch_forward(ZYDIS_MNEMONIC_JNZ));
    advance(fall);
  }

  // RIP at the next instruction, this one retired, the next one's fetch a soft-ITLB hit.
  void advance(uint64_t fall) {
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::imm(fall)});
    e.op(ZYDIS_MNEMONIC_MOV, {core(at_.rip), E::reg(rax)});
    e.op(ZYDIS_MNEMONIC_ADD, {core(at_.retired), E::imm(1)});
    e.op(ZYDIS_MNEMONIC_ADD, {core(at_.itlb_hits), E::imm(1)});
  }

  // The run loop's step (Core::run) calling the handler, with the address and length as constants.
  // `load_miss`: instead of the handler, a MOV load whose soft-TLB lookup missed completes through
  // load_after_miss(), with the linear address the block computed (in RSI).
  void step(const Insn& insn, uint64_t rip, bool last, bool load_miss = false) {
    const uint64_t fall = rip + insn.length;
    if (load_miss) e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rdx), E::reg(rsi)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(kInsn), E::imm(reinterpret_cast<uint64_t>(&insn))});
    e.op(ZYDIS_MNEMONIC_MOV, {core(at_.current_insn), E::reg(kInsn)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::imm(fall)});
    e.op(ZYDIS_MNEMONIC_MOV, {core(at_.next_rip), E::reg(rax)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(ZYDIS_REGISTER_RDI), E::reg(kCore)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(ZYDIS_REGISTER_RSI), E::reg(kInsn)});
    if (load_miss) {
      e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::imm(reinterpret_cast<uint64_t>(&load_after_miss))});
      e.op(ZYDIS_MNEMONIC_CALL, {E::reg(rax)});
    } else {
      e.op(ZYDIS_MNEMONIC_CALL, {E::mem(kInsn, 0, 8)});  // Insn::handler
    }
    count_class(insn);
    if (last) return e.branch(ZYDIS_MNEMONIC_JMP, c_.block_end_);
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::imm(fall)});
    e.op(ZYDIS_MNEMONIC_CMP, {core(at_.next_rip), E::reg(rax)});
    e.branch(ZYDIS_MNEMONIC_JNZ, c_.block_end_);  // a branch taken, a fault raised, a run completed
    e.op(ZYDIS_MNEMONIC_CMP, {core(at_.code_page), E::reg(kPage)});
    e.branch(ZYDIS_MNEMONIC_JNZ, c_.block_end_);  // the soft ITLB no longer holds the page
    e.op(ZYDIS_MNEMONIC_CMP, {core(at_.attention, 1), E::imm(0)});
    e.branch(ZYDIS_MNEMONIC_JNZ, c_.block_end_);  // the boundary's slow path is needed
    advance(fall);
  }

  // ---- Inline semantics: each emits the common case and sends the rest to the handler ---------

  // RSI = the linear address of Mem operand `o` (Core::effective_address, data_linear): the rest
  // (a segment limit with EFER.LMSLE, a non-canonical address) takes the handler.
  void address(const Operand& o, uint64_t fall, unsigned size, Cold& cold, bool linear = true) {
    const int64_t disp = o.value;
    if (o.base == kRipReg) {
      e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rsi), E::imm(fall + static_cast<uint64_t>(disp))});
    } else if (o.base < 16) {
      e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rsi), gpr(o.base, 8)});
      if (disp == static_cast<int32_t>(disp)) {
        if (disp != 0) e.op(ZYDIS_MNEMONIC_ADD, {E::reg(rsi), E::imm(static_cast<uint64_t>(disp))});
      } else {
        e.op(ZYDIS_MNEMONIC_MOV, {E::reg(r11), E::imm(static_cast<uint64_t>(disp))});
        e.op(ZYDIS_MNEMONIC_ADD, {E::reg(rsi), E::reg(r11)});
      }
    } else {
      e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rsi), E::imm(static_cast<uint64_t>(disp))});
    }
    if (o.index < 16) {
      e.op(ZYDIS_MNEMONIC_MOV, {E::reg(r11), gpr(o.index, 8)});
      if (o.scale) e.op(ZYDIS_MNEMONIC_SHL, {E::reg(r11), E::imm(o.scale)});
      e.op(ZYDIS_MNEMONIC_ADD, {E::reg(rsi), E::reg(r11)});
    }
    if (!linear) return;
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(r11), core(at_.lmsle_last + 8 * o.seg)});
    e.op(ZYDIS_MNEMONIC_SUB, {E::reg(r11), E::imm(size)});
    e.op(ZYDIS_MNEMONIC_CMP, {E::reg(rsi), E::reg(r11)});
    cold.slow.push_back(e.branch_forward(ZYDIS_MNEMONIC_JNBE));
    if (o.seg >= FS) e.op(ZYDIS_MNEMONIC_ADD, {E::reg(rsi), core(at_.seg_base + 8 * o.seg)});
    canonical_or_handler(rsi, cold);
  }

  // `value` (a host register) is a canonical 48-bit address (Core::canonical48), else the handler
  // (which also takes 57-bit addresses with CR4.LA57).
  void canonical_or_handler(ZydisRegister value, Cold& cold) {
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(r11), E::reg(value)});
    e.op(ZYDIS_MNEMONIC_SHL, {E::reg(r11), E::imm(16)});
    e.op(ZYDIS_MNEMONIC_SAR, {E::reg(r11), E::imm(16)});
    e.op(ZYDIS_MNEMONIC_CMP, {E::reg(r11), E::reg(value)});
    cold.slow.push_back(e.branch_forward(ZYDIS_MNEMONIC_JNZ));
  }

  // The stack access at RSI (an offset in SS, whose base is 0 in 64-bit mode): without EFER.LMSLE
  // limits, canonical; else the handler.
  void stack_checks(Cold& cold) {
    e.op(ZYDIS_MNEMONIC_CMP, {core(at_.lmsle_last + 8 * SS), E::imm(~0ull)});
    cold.slow.push_back(e.branch_forward(ZYDIS_MNEMONIC_JNZ));
    canonical_or_handler(rsi, cold);
  }

  // `host` = the host address of the access at RSI through the soft TLB's read (0) or write (1)
  // entries (Core::read_hit, write_hit): a miss, or bytes past the page, take the handler.
  // The MOV load handler's work (move.cpp, Core::load) past a soft-TLB miss, at `linear`.
  static void load_after_miss(Core& c, const Insn& i, uint64_t linear) {
    uint64_t value;
    if (!c.load_slow(linear, i.opsize, &value)) return;  // its fault raised
    c.state_.gpr[i.op[0].reg] = i.opsize == 8 ? value : static_cast<uint32_t>(value);
  }

  // `miss`: where a lookup that misses goes (the handler's path when null).
  void soft_tlb(unsigned kind, unsigned size, ZydisRegister host, Cold& cold, std::vector<E::Fixup>* miss = nullptr) {
    const int32_t table = at_.soft_tlb + static_cast<int32_t>(kind * 256 * 32);
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(r9), E::reg(rsi)});
    e.op(ZYDIS_MNEMONIC_SHR, {E::reg(r9), E::imm(12)});
    e.op(ZYDIS_MNEMONIC_MOVZX, {E::reg(ZYDIS_REGISTER_R10D), E::reg(ZYDIS_REGISTER_R9B)});
    e.op(ZYDIS_MNEMONIC_SHL, {E::reg(ZYDIS_REGISTER_R10D), E::imm(5)});
    e.op(ZYDIS_MNEMONIC_MOVZX, {E::reg(ZYDIS_REGISTER_R11D), core(at_.user, 1)});
    e.op(ZYDIS_MNEMONIC_IMUL, {E::reg(ZYDIS_REGISTER_R11D), E::reg(ZYDIS_REGISTER_R11D), E::imm(3 * 256 * 32)});
    e.op(ZYDIS_MNEMONIC_ADD, {E::reg(r10), E::reg(r11)});
    e.op(ZYDIS_MNEMONIC_OR, {E::reg(r9), core(at_.tlb_epoch)});
    ZydisEncoderOperand entry = E::mem(kCore, table, 8);
    entry.mem.index = r10;
    entry.mem.scale = 1;
    e.op(ZYDIS_MNEMONIC_CMP, {entry, E::reg(r9)});
    (miss ? *miss : cold.slow).push_back(e.branch_forward(ZYDIS_MNEMONIC_JNZ));
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(ZYDIS_REGISTER_R11D), E::reg(ZYDIS_REGISTER_ESI)});
    e.op(ZYDIS_MNEMONIC_AND, {E::reg(ZYDIS_REGISTER_R11D), E::imm(0xFFF)});
    e.op(ZYDIS_MNEMONIC_CMP, {E::reg(ZYDIS_REGISTER_R11D), E::imm(0x1000 - size)});
    cold.slow.push_back(e.branch_forward(ZYDIS_MNEMONIC_JNBE));
    entry.mem.displacement = table + 8;  // SoftTlbEntry::host
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(host), entry});
    e.op(ZYDIS_MNEMONIC_ADD, {E::reg(host), E::reg(r11)});
  }

  // With a data observer (the cache model), the accesses to the bytes [start, start + span) from
  // the one soft_tlb() just found (its entry at R10, its page offset in R11) go on only when they
  // lie in one line its filter answers (Core::observe_data); anything else takes the handler,
  // which tells the observer. Nothing is counted yet (observed()).
  void filtered(unsigned kind, int32_t start, uint32_t span, Cold& cold) {
    e.op(ZYDIS_MNEMONIC_CMP, {core(at_.data_observer), E::imm(0)});
    const E::Fixup none = e.branch_forward(ZYDIS_MNEMONIC_JZ);
    ZydisEncoderOperand frame = E::mem(kCore, at_.soft_tlb + static_cast<int32_t>(kind * 256 * 32) + 16, 8);
    frame.mem.index = r10;
    frame.mem.scale = 1;
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(r9), frame});
    e.op(ZYDIS_MNEMONIC_SHL, {E::reg(r9), E::imm(12)});
    e.op(ZYDIS_MNEMONIC_OR, {E::reg(r9), E::reg(r11)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(ZYDIS_REGISTER_ECX), core(at_.filter_shift, 4)});
    e.op(ZYDIS_MNEMONIC_LEA, {E::reg(rax), E::mem(r9, start, 8)});
    e.op(ZYDIS_MNEMONIC_SHR, {E::reg(rax), E::reg(ZYDIS_REGISTER_CL)});  // the first byte's line
    e.op(ZYDIS_MNEMONIC_LEA, {E::reg(rdx), E::mem(r9, start + static_cast<int32_t>(span) - 1, 8)});
    e.op(ZYDIS_MNEMONIC_SHR, {E::reg(rdx), E::reg(ZYDIS_REGISTER_CL)});  // the last byte's
    e.op(ZYDIS_MNEMONIC_CMP, {E::reg(rdx), E::reg(rax)});
    cold.slow.push_back(e.branch_forward(ZYDIS_MNEMONIC_JNZ));
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rdx), E::reg(rax)});
    e.op(ZYDIS_MNEMONIC_AND, {E::reg(rdx), core(at_.filter_mask)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(r9), core(at_.filter_lines)});
    ZydisEncoderOperand line = E::mem(r9, 0, 8);
    line.mem.index = rdx;
    line.mem.scale = 8;
    e.op(ZYDIS_MNEMONIC_CMP, {line, E::reg(rax)});
    cold.slow.push_back(e.branch_forward(ZYDIS_MNEMONIC_JNZ));
    E::bind(none, e.here());
  }
  // The `n` accesses filtered() let through, counted where the observer's filter counts them.
  void observed(unsigned n) {
    e.op(ZYDIS_MNEMONIC_CMP, {core(at_.data_observer), E::imm(0)});
    const E::Fixup none = e.branch_forward(ZYDIS_MNEMONIC_JZ);
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(r9), core(at_.filter_count)});
    e.op(ZYDIS_MNEMONIC_ADD, {E::mem(r9, 0, 8), E::imm(n)});
    E::bind(none, e.here());
  }

  // `dst` (a host register) = operand `o` of `size` bytes, zero-extended: a register, an immediate
  // or the memory at host address `host`.
  void read(const Operand& o, unsigned size, ZydisRegister dst, ZydisRegister host) {
    const bool narrow = size == 1;
    switch (o.kind) {
      case OpKind::Reg:
        e.op(narrow ? ZYDIS_MNEMONIC_MOVZX : ZYDIS_MNEMONIC_MOV,
             {E::reg(sized(dst, narrow ? 4 : size)), gpr(o.reg, static_cast<uint16_t>(size))});
        break;
      case OpKind::Imm:
        e.op(ZYDIS_MNEMONIC_MOV, {E::reg(dst), E::imm(static_cast<uint64_t>(o.value) & Core::size_mask(size))});
        break;
      default:
        e.op(narrow ? ZYDIS_MNEMONIC_MOVZX : ZYDIS_MNEMONIC_MOV,
             {E::reg(sized(dst, narrow ? 4 : size)), E::mem(host, 0, static_cast<uint16_t>(size))});
        break;
    }
  }
  // Register operand `o` = `src` (32-bit: zero-extended, as the host's 32-bit operations leave it).
  void write_reg(const Operand& o, ZydisRegister src) { e.op(ZYDIS_MNEMONIC_MOV, {gpr(o.reg, 8), E::reg(src)}); }

  // The lazy flags' record (Core::record_flags): the operation, the sign bit, operands, result.
  void record_flags(uint8_t op, unsigned size, bool operands) {
    const uint64_t op_and_msb = op | (size * 8 - 1) << 8;
    e.op(ZYDIS_MNEMONIC_MOV, {core(at_.lazy_op, 2), E::imm(op_and_msb)});
    if (operands) {
      e.op(ZYDIS_MNEMONIC_MOV, {core(at_.lazy_a), E::reg(rax)});
      e.op(ZYDIS_MNEMONIC_MOV, {core(at_.lazy_b), E::reg(rcx)});
    } else {
      e.op(ZYDIS_MNEMONIC_MOV, {core(at_.lazy_a), E::imm(0)});
      e.op(ZYDIS_MNEMONIC_MOV, {core(at_.lazy_b), E::imm(0)});
    }
    e.op(ZYDIS_MNEMONIC_MOV, {core(at_.lazy_r), E::reg(rdx)});
    e.op(ZYDIS_MNEMONIC_MOV, {core(at_.lazy_fixed), E::imm(0)});
  }

  // The memory operand's checks and host addresses: RDI to read, R8 to write; the soft-TLB hits
  // counted once both are known to hit.
  void memory(const Insn& i, const Operand& o, uint64_t fall, bool reads, bool writes, Cold& cold,
              std::vector<E::Fixup>* read_miss = nullptr) {
    address(o, fall, i.opsize, cold);
    if (reads) {
      soft_tlb(0, i.opsize, rdi, cold, read_miss);
      filtered(0, 0, i.opsize, cold);
    }
    if (writes) {
      soft_tlb(1, i.opsize, r8, cold);
      filtered(1, 0, i.opsize, cold);
    }
    const unsigned accesses = unsigned{reads} + unsigned{writes};
    e.op(ZYDIS_MNEMONIC_ADD, {core(at_.dtlb_hits), E::imm(accesses)});
    observed(accesses);
  }

  // ADD, SUB, CMP, AND, OR, XOR, TEST (arithmetic.cpp): RAX = a, RCX = b, RDX = the result.
  bool alu(const Insn& i, Alu op, uint64_t fall, Cold& cold) {
    const unsigned size = i.opsize;
    const bool writes = op != Alu::Cmp && op != Alu::Test;
    const Operand& d = i.op[0];
    const Operand& s = i.op[1];
    if (d.kind == OpKind::Mem) memory(i, d, fall, true, writes, cold);
    if (s.kind == OpKind::Mem) memory(i, s, fall, true, false, cold);
    read(d, size, rax, rdi);
    read(s, size, rcx, rdi);
    const ZydisRegister r = sized(rdx, size == 1 ? 4 : size), b = sized(rcx, size == 1 ? 4 : size);
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rdx), E::reg(rax)});
    static constexpr ZydisMnemonic kHost[] = {ZYDIS_MNEMONIC_ADD, ZYDIS_MNEMONIC_SUB, ZYDIS_MNEMONIC_SUB,
                                              ZYDIS_MNEMONIC_AND, ZYDIS_MNEMONIC_OR,  ZYDIS_MNEMONIC_XOR,
                                              ZYDIS_MNEMONIC_AND};
    e.op(kHost[static_cast<unsigned>(op)], {E::reg(r), E::reg(b)});
    if (size == 1) e.op(ZYDIS_MNEMONIC_MOVZX, {E::reg(ZYDIS_REGISTER_EDX), E::reg(ZYDIS_REGISTER_DL)});
    if (writes) {
      if (d.kind == OpKind::Reg) write_reg(d, rdx);
      else e.op(ZYDIS_MNEMONIC_MOV, {E::mem(r8, 0, static_cast<uint16_t>(size)), E::reg(sized(rdx, size))});
    }
    using LazyOp = Core::LazyOp;
    const LazyOp lazy = op == Alu::Add ? LazyOp::Add : op == Alu::Sub || op == Alu::Cmp ? LazyOp::Sub : LazyOp::Result;
    record_flags(static_cast<uint8_t>(lazy), size, lazy != LazyOp::Result);
    return true;
  }

  // MOV between registers, memory and immediates (move.cpp).
  bool mov(const Insn& i, uint64_t fall, Cold& cold) {
    const unsigned size = i.opsize;
    const Operand& d = i.op[0];
    const Operand& s = i.op[1];
    if (s.kind == OpKind::Mem) memory(i, s, fall, true, false, cold, d.kind == OpKind::Reg ? &cold.load_miss : nullptr);
    if (d.kind == OpKind::Mem) memory(i, d, fall, false, true, cold);
    read(s, size, rdx, rdi);
    if (d.kind == OpKind::Reg) write_reg(d, rdx);
    else e.op(ZYDIS_MNEMONIC_MOV, {E::mem(r8, 0, static_cast<uint16_t>(size)), E::reg(sized(rdx, size))});
    return true;
  }

  // LEA: the effective address, no access (move.cpp).
  bool lea(const Insn& i, uint64_t fall) {
    Cold unused{};
    address(i.op[1], fall, i.opsize, unused, false);
    if (i.opsize == 4) e.op(ZYDIS_MNEMONIC_MOV, {E::reg(ZYDIS_REGISTER_ESI), E::reg(ZYDIS_REGISTER_ESI)});
    write_reg(i.op[0], rsi);
    return true;
  }

  // JMP rel, CALL rel and RET (branch.cpp), which end their blocks: the return address pushed or
  // popped where the soft TLB maps the stack's page (a non-canonical return address, for the #GP,
  // takes the handler), then the block ends at the target.
  void near_transfer(const Insn& insn, Inline form, uint64_t rip, Cold& cold) {
    const uint64_t fall = rip + insn.length;
    const uint64_t target = fall + static_cast<uint64_t>(insn.op[0].value);
    if (form != Inline::Jmp) {
      e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rsi), gpr(RSP, 8)});
      if (form == Inline::Call) e.op(ZYDIS_MNEMONIC_SUB, {E::reg(rsi), E::imm(8)});
      stack_checks(cold);
      soft_tlb(form == Inline::Call ? 1 : 0, 8, r8, cold);
      filtered(form == Inline::Call ? 1 : 0, 0, 8, cold);
      if (form == Inline::Call) {
        e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::imm(fall)});
        e.op(ZYDIS_MNEMONIC_MOV, {E::mem(r8, 0, 8), E::reg(rax)});
        e.op(ZYDIS_MNEMONIC_MOV, {gpr(RSP, 8), E::reg(rsi)});
      } else {
        e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::mem(r8, 0, 8)});
        canonical_or_handler(rax, cold);  // RET to a non-canonical address: #GP
        e.op(ZYDIS_MNEMONIC_ADD, {gpr(RSP, 8), E::imm(8)});
      }
      e.op(ZYDIS_MNEMONIC_ADD, {core(at_.dtlb_hits), E::imm(1)});
      observed(1);
    }
    count_class(insn);
    if (form == Inline::Ret) leave_to_rax(insn);  // the popped return address
    else leave(insn, target);
    colds_.push_back(cold);
    resumes_.push_back(e.here());
  }

  // JZ / JNZ (branch.cpp): ZF from the lazy record's result; flags in RFLAGS take the handler.
  bool jcc(bool jz, Cold& cold) {
    cold.target = cold.rip + cold.insn->length + static_cast<uint64_t>(cold.insn->op[0].value);
    e.op(ZYDIS_MNEMONIC_CMP, {core(at_.lazy_op, 1), E::imm(static_cast<uint8_t>(Core::LazyOp::None))});
    cold.slow.push_back(e.branch_forward(ZYDIS_MNEMONIC_JZ));
    e.op(ZYDIS_MNEMONIC_CMP, {core(at_.lazy_r), E::imm(0)});
    cold.taken.push_back(e.branch_forward(jz ? ZYDIS_MNEMONIC_JZ : ZYDIS_MNEMONIC_JNZ));
    return true;
  }

  const BlockCompiler& c_;
  const BlockCompiler::Layout& at_;
  std::vector<Cold> colds_;
  std::vector<const Insn*> insns_;
  std::vector<const uint8_t*> resumes_;
};

void BlockCompiler::reset() {
  if (!arena_) return;
  if (used_ != 0) ++resets_;
  E e(arena_, arena_ + arena_bytes_);
  // The exits. The first returns null (every step complete), the second the instruction in R13,
  // whose step the run loop completes. Both restore what the prologue saved.
  const uint8_t* const exit_done = e.here();
  e.op(ZYDIS_MNEMONIC_XOR, {E::reg(ZYDIS_REGISTER_R13D), E::reg(ZYDIS_REGISTER_R13D)});
  const uint8_t* const exit = e.here();
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::reg(kInsn)});
  e.op(ZYDIS_MNEMONIC_ADD, {E::reg(ZYDIS_REGISTER_RSP), E::imm(8)});
  e.op(ZYDIS_MNEMONIC_POP, {E::reg(kInsn)});
  e.op(ZYDIS_MNEMONIC_POP, {E::reg(kPage)});
  e.op(ZYDIS_MNEMONIC_POP, {E::reg(kCore)});
  e.op(ZYDIS_MNEMONIC_POP, {E::reg(ZYDIS_REGISTER_RBP)});
  e.op(ZYDIS_MNEMONIC_RET, {});
  // The end of a block: the instruction in R13 ended it (the last one, or one whose step the
  // loop's fast path would not take), its class counted. Its step ends as the loop's slow path
  // ends it, and the loop then starts a block at RIP: done here when that block is compiled and
  // nothing needs the loop, which is needed for a fault raised, the boundary, a code page left or
  // changed, and a fall-through it links to what follows.
  auto core = [&](int32_t offset, uint16_t size = 8) { return E::mem(kCore, offset, size); };
  block_end_ = e.here();
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), core(at_.next_rip)});
  e.op(ZYDIS_MNEMONIC_CMP, {core(at_.fault_raised, 1), E::imm(0)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit);
  e.op(ZYDIS_MNEMONIC_CMP, {core(at_.attention, 1), E::imm(0)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit);
  e.op(ZYDIS_MNEMONIC_CMP, {core(at_.code_page), E::reg(kPage)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit);
  e.op(ZYDIS_MNEMONIC_MOVZX, {E::reg(ZYDIS_REGISTER_ECX), E::mem(kInsn, static_cast<int32_t>(offsetof(Insn, length)), 1)});
  e.op(ZYDIS_MNEMONIC_ADD, {E::reg(rcx), core(at_.rip)});
  e.op(ZYDIS_MNEMONIC_CMP, {E::reg(rax), E::reg(rcx)});
  e.op(ZYDIS_MNEMONIC_SETZ, {E::reg(ZYDIS_REGISTER_DL)});
  e.op(ZYDIS_MNEMONIC_CMP, {E::mem(kInsn, static_cast<int32_t>(offsetof(Insn, next)), 8), E::imm(0)});
  e.op(ZYDIS_MNEMONIC_SETZ, {E::reg(ZYDIS_REGISTER_CL)});
  e.op(ZYDIS_MNEMONIC_TEST, {E::reg(ZYDIS_REGISTER_DL), E::reg(ZYDIS_REGISTER_CL)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit);  // fell through with nothing linked after it
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rcx), E::reg(rax)});
  e.op(ZYDIS_MNEMONIC_XOR, {E::reg(rcx), core(at_.rip)});
  e.op(ZYDIS_MNEMONIC_SHR, {E::reg(rcx), E::imm(12)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit);  // another page: the loop fetches there
  // The step's slow path: RIP from next_rip(), the instruction retired.
  e.op(ZYDIS_MNEMONIC_MOV, {core(at_.rip), E::reg(rax)});
  e.op(ZYDIS_MNEMONIC_ADD, {core(at_.retired), E::imm(1)});
  // The loop's block start at RIP, in this page: the decoded page's slot, that instruction's
  // block, which must be compiled for this address and fit in the run.
  e.op(ZYDIS_MNEMONIC_AND, {E::reg(ZYDIS_REGISTER_EAX), E::imm(0xFFF)});
  ZydisEncoderOperand slot = E::mem(kPage, at_.page_slots, 8);
  slot.mem.index = rax;
  slot.mem.scale = 8;
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rdx), slot});
  e.op(ZYDIS_MNEMONIC_TEST, {E::reg(rdx), E::reg(rdx)});
  e.branch(ZYDIS_MNEMONIC_JZ, exit_done);
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rcx), E::mem(rdx, static_cast<int32_t>(offsetof(Insn, compiled)), 8)});
  e.op(ZYDIS_MNEMONIC_TEST, {E::reg(rcx), E::reg(rcx)});
  e.branch(ZYDIS_MNEMONIC_JZ, exit_done);
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), core(at_.rip)});
  e.op(ZYDIS_MNEMONIC_CMP, {E::reg(rax), E::mem(rcx, static_cast<int32_t>(offsetof(CompiledBlock, rip)), 8)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit_done);
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), core(at_.run_end)});
  e.op(ZYDIS_MNEMONIC_SUB, {E::reg(rax), core(at_.retired)});
  e.op(ZYDIS_MNEMONIC_CMP, {E::reg(rax), E::mem(rcx, static_cast<int32_t>(offsetof(CompiledBlock, length)), 8)});
  e.branch(ZYDIS_MNEMONIC_JB, exit_done);
  e.op(ZYDIS_MNEMONIC_ADD, {core(at_.itlb_hits), E::imm(1)});  // its fetch, a soft-ITLB hit
  e.op(ZYDIS_MNEMONIC_JMP, {E::mem(rcx, static_cast<int32_t>(offsetof(CompiledBlock, body)), 8)});
  used_ = (static_cast<size_t>(e.here() - arena_) + 15) & ~size_t{15};
  records_.clear();
}

const CompiledBlock* BlockCompiler::compile(const Insn& head, uint64_t rip) {
  full_ = false;
  unsigned length = 1;
  for (const Insn* i = head.next; i && length < kMaxLength; i = i->next) ++length;
  if (length < kMinLength) return nullptr;
  if (!arena_) map_arena();
  CompiledBlock block;
  block.rip = rip;
  block.length = length;
  uint8_t* const start = arena_ + used_;
  BlockBuilder b(*this, start, arena_ + arena_bytes_);
  try {
    b.prologue();
    block.body = b.e.here();
    const Insn* insn = &head;
    for (unsigned k = 0; k < length;) {
      unsigned n = BlockBuilder::stack_run_length(*insn, length - k);
      if (n >= 1) {
        b.stack_run(*insn, rip, n, k + n == length);
      } else {
        n = 1;
        b.instruction(*insn, rip, k + 1 == length);
      }
      for (unsigned j = 0; j < n; ++j, insn = insn->next) rip += insn->length;
      k += n;
    }
    b.cold_code();
  } catch (const ArenaFull&) {  // what was written past used_ is never entered
    full_ = true;
    return nullptr;
  }
  used_ = (static_cast<size_t>(b.e.here() - arena_) + 15) & ~size_t{15};
  ++blocks_compiled_;
  block.entry = reinterpret_cast<CompiledEntry>(start);
  return &records_.emplace_back(block);
}

}  // namespace pgsim::isa

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

// The shared exits are at the arena's start; a block (about 80 bytes per instruction) is compiled
// only with this much room left.
constexpr size_t kMaxBlockBytes = 160 * BlockCompiler::kMaxLength + 256;

static_assert(offsetof(Insn, handler) == 0, "compiled code calls [insn] as the handler");

// Emits x86-64 instructions through Zydis's encoder at their final addresses.
class Emitter {
 public:
  explicit Emitter(uint8_t* at) : at_(at) {}
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
    // Absolute: a branch's immediate is its target, made relative to where the branch lands.
    if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstructionAbsolute(&req, at_, &length, reinterpret_cast<ZyanU64>(at_))))
      throw std::logic_error("block compiler: Zydis cannot encode " + std::string(ZydisMnemonicGetString(mnemonic)));
    at_ += length;
  }
  void branch(ZydisMnemonic mnemonic, const uint8_t* target) {
    op(mnemonic, {imm(reinterpret_cast<uint64_t>(target))});
  }

 private:
  uint8_t* at_;
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
    : core_(core),
      arena_bytes_(std::max(arena_bytes, 2 * kMaxBlockBytes)),
      current_insn_(offset_in(core, &core.current_insn_)),
      next_rip_(offset_in(core, &core.next_rip_)),
      rip_(offset_in(core, &core.state_.rip)),
      retired_(offset_in(core, &core.counters_.retired)),
      by_class_(offset_in(core, &core.counters_.by_class[0])),
      itlb_hits_(offset_in(core, &core.counters_.itlb_hits)),
      code_page_(offset_in(core, &core.code_page_)),
      attention_(offset_in(core, &core.attention_)),
      fault_raised_(offset_in(core, &core.fault_raised_)),
      run_end_(offset_in(core, &core.run_end_)),
      page_slots_(static_cast<int32_t>(Core::decoded_page_slots_offset())) {
  static_assert(sizeof(core.attention_) == 1 && sizeof(core.fault_raised_) == 1 && sizeof(core.code_page_) == 8 &&
                sizeof(core.next_rip_) == 8 && sizeof(core.run_end_) == 8);
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

void BlockCompiler::reset() {
  if (!arena_) return;
  if (used_ != 0) ++resets_;
  using E = Emitter;
  constexpr ZydisRegister rax = ZYDIS_REGISTER_RAX, rcx = ZYDIS_REGISTER_RCX, rdx = ZYDIS_REGISTER_RDX;
  E e(arena_);
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
  block_end_ = e.here();
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::mem(kCore, next_rip_, 8)});
  e.op(ZYDIS_MNEMONIC_CMP, {E::mem(kCore, fault_raised_, 1), E::imm(0)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit);
  e.op(ZYDIS_MNEMONIC_CMP, {E::mem(kCore, attention_, 1), E::imm(0)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit);
  e.op(ZYDIS_MNEMONIC_CMP, {E::mem(kCore, code_page_, 8), E::reg(kPage)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit);
  e.op(ZYDIS_MNEMONIC_MOVZX, {E::reg(ZYDIS_REGISTER_ECX), E::mem(kInsn, static_cast<int32_t>(offsetof(Insn, length)), 1)});
  e.op(ZYDIS_MNEMONIC_ADD, {E::reg(rcx), E::mem(kCore, rip_, 8)});
  e.op(ZYDIS_MNEMONIC_CMP, {E::reg(rax), E::reg(rcx)});
  e.op(ZYDIS_MNEMONIC_SETZ, {E::reg(ZYDIS_REGISTER_DL)});
  e.op(ZYDIS_MNEMONIC_CMP, {E::mem(kInsn, static_cast<int32_t>(offsetof(Insn, next)), 8), E::imm(0)});
  e.op(ZYDIS_MNEMONIC_SETZ, {E::reg(ZYDIS_REGISTER_CL)});
  e.op(ZYDIS_MNEMONIC_TEST, {E::reg(ZYDIS_REGISTER_DL), E::reg(ZYDIS_REGISTER_CL)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit);  // fell through with nothing linked after it
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rcx), E::reg(rax)});
  e.op(ZYDIS_MNEMONIC_XOR, {E::reg(rcx), E::mem(kCore, rip_, 8)});
  e.op(ZYDIS_MNEMONIC_SHR, {E::reg(rcx), E::imm(12)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit);  // another page: the loop fetches there
  // The step's slow path: RIP from next_rip(), the instruction retired.
  e.op(ZYDIS_MNEMONIC_MOV, {E::mem(kCore, rip_, 8), E::reg(rax)});
  e.op(ZYDIS_MNEMONIC_ADD, {E::mem(kCore, retired_, 8), E::imm(1)});
  // The loop's block start at RIP, in this page: the decoded page's slot, that instruction's
  // block, which must be compiled for this address and fit in the run.
  e.op(ZYDIS_MNEMONIC_AND, {E::reg(ZYDIS_REGISTER_EAX), E::imm(0xFFF)});
  ZydisEncoderOperand slot = E::mem(kPage, page_slots_, 8);
  slot.mem.index = rax;
  slot.mem.scale = 8;
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rdx), slot});
  e.op(ZYDIS_MNEMONIC_TEST, {E::reg(rdx), E::reg(rdx)});
  e.branch(ZYDIS_MNEMONIC_JZ, exit_done);
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rcx), E::mem(rdx, static_cast<int32_t>(offsetof(Insn, compiled)), 8)});
  e.op(ZYDIS_MNEMONIC_TEST, {E::reg(rcx), E::reg(rcx)});
  e.branch(ZYDIS_MNEMONIC_JZ, exit_done);
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::mem(kCore, rip_, 8)});
  e.op(ZYDIS_MNEMONIC_CMP, {E::reg(rax), E::mem(rcx, static_cast<int32_t>(offsetof(CompiledBlock, rip)), 8)});
  e.branch(ZYDIS_MNEMONIC_JNZ, exit_done);
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::mem(kCore, run_end_, 8)});
  e.op(ZYDIS_MNEMONIC_SUB, {E::reg(rax), E::mem(kCore, retired_, 8)});
  e.op(ZYDIS_MNEMONIC_CMP, {E::reg(rax), E::mem(rcx, static_cast<int32_t>(offsetof(CompiledBlock, length)), 8)});
  e.branch(ZYDIS_MNEMONIC_JB, exit_done);
  e.op(ZYDIS_MNEMONIC_ADD, {E::mem(kCore, itlb_hits_, 8), E::imm(1)});  // its fetch, a soft-ITLB hit
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
  if (arena_bytes_ - used_ < kMaxBlockBytes) {
    full_ = true;
    return nullptr;
  }
  using E = Emitter;
  constexpr ZydisRegister rax = ZYDIS_REGISTER_RAX;
  CompiledBlock& block = records_.emplace_back();
  block.rip = rip;
  block.length = length;
  uint8_t* const start = arena_ + used_;
  E e(start);
  // Prologue: the frame the call-frame information describes; RSP 16-byte aligned at the calls.
  e.op(ZYDIS_MNEMONIC_PUSH, {E::reg(ZYDIS_REGISTER_RBP)});
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(ZYDIS_REGISTER_RBP), E::reg(ZYDIS_REGISTER_RSP)});
  e.op(ZYDIS_MNEMONIC_PUSH, {E::reg(kCore)});
  e.op(ZYDIS_MNEMONIC_PUSH, {E::reg(kPage)});
  e.op(ZYDIS_MNEMONIC_PUSH, {E::reg(kInsn)});
  e.op(ZYDIS_MNEMONIC_SUB, {E::reg(ZYDIS_REGISTER_RSP), E::imm(8)});
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(kCore), E::reg(ZYDIS_REGISTER_RDI)});
  e.op(ZYDIS_MNEMONIC_MOV, {E::reg(kPage), E::reg(ZYDIS_REGISTER_RSI)});
  block.body = e.here();
  const Insn* insn = &head;
  for (unsigned k = 0;; ++k, insn = insn->next) {
    // The run loop's step (Core::run), with this instruction's address and length as constants.
    const uint64_t fall = rip + insn->length;
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(kInsn), E::imm(reinterpret_cast<uint64_t>(insn))});
    e.op(ZYDIS_MNEMONIC_MOV, {E::mem(kCore, current_insn_, 8), E::reg(kInsn)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::imm(fall)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::mem(kCore, next_rip_, 8), E::reg(rax)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(ZYDIS_REGISTER_RDI), E::reg(kCore)});
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(ZYDIS_REGISTER_RSI), E::reg(kInsn)});
    e.op(ZYDIS_MNEMONIC_CALL, {E::mem(kInsn, 0, 8)});  // Insn::handler, read at each execution
    e.op(ZYDIS_MNEMONIC_ADD, {E::mem(kCore, by_class_ + 8 * static_cast<int32_t>(insn->cls), 8), E::imm(1)});
    if (k + 1 == length) break;
    e.op(ZYDIS_MNEMONIC_MOV, {E::reg(rax), E::imm(fall)});
    e.op(ZYDIS_MNEMONIC_CMP, {E::mem(kCore, next_rip_, 8), E::reg(rax)});
    e.branch(ZYDIS_MNEMONIC_JNZ, block_end_);  // a branch taken, a fault raised, a run completed
    e.op(ZYDIS_MNEMONIC_CMP, {E::mem(kCore, code_page_, 8), E::reg(kPage)});
    e.branch(ZYDIS_MNEMONIC_JNZ, block_end_);  // the soft ITLB no longer holds the page
    e.op(ZYDIS_MNEMONIC_CMP, {E::mem(kCore, attention_, 1), E::imm(0)});
    e.branch(ZYDIS_MNEMONIC_JNZ, block_end_);  // the boundary's slow path is needed
    e.op(ZYDIS_MNEMONIC_MOV, {E::mem(kCore, rip_, 8), E::reg(rax)});
    e.op(ZYDIS_MNEMONIC_ADD, {E::mem(kCore, retired_, 8), E::imm(1)});
    e.op(ZYDIS_MNEMONIC_ADD, {E::mem(kCore, itlb_hits_, 8), E::imm(1)});  // the next one's fetch
    rip = fall;
  }
  e.branch(ZYDIS_MNEMONIC_JMP, block_end_);
  used_ = (static_cast<size_t>(e.here() - arena_) + 15) & ~size_t{15};
  ++blocks_compiled_;
  block.entry = reinterpret_cast<CompiledEntry>(start);
  return &block;
}

}  // namespace pgsim::isa

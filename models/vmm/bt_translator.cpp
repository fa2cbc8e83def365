#include "models/vmm/bt_translator.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "isa/dispatch.h"

namespace pgsim::vmm {

using namespace isa;

namespace {

constexpr unsigned kMaxInsnBytes = 15;
constexpr uint64_t kTcPage = 4096;
// The most one guest instruction becomes: an instruction grown by a SIB byte, or a Jcc rel32 and
// two exit stubs, or PUSH imm32 and an exit stub; and the unit-full stub after it.
constexpr unsigned kMaxEmittedPerInsn = kMaxInsnBytes + 1 + 5;
// The longest inline sequence (POPF's, with its callout path) and the unit-full stub after it.
constexpr unsigned kMaxInlineBytes = 80;
constexpr unsigned kMaxEmittedPerInlineInsn = kMaxInlineBytes + 5;
constexpr uint8_t kJmpRel32 = 0xE9, kPushImm32 = 0x68;
constexpr uint8_t kGsPrefix = 0x65, kOpsizePrefix = 0x66, kRexW = 0x48;
constexpr uint8_t kPushfq = 0x9C, kPopfq = 0x9D, kPushRax = 0x50;
constexpr uint8_t kMovStore = 0x89, kMovLoad = 0x8B, kOrLoad = 0x0B, kCmpLoad = 0x3B, kMovStoreImm = 0xC7;

// `opcode` with a ModRM whose r/m is gs:[disp] (mod 00, r/m 100, a SIB byte with neither base nor
// index: an absolute disp32, GS-relative) and whose reg field is general register `reg`; `opsize`
// 2, 4 or 8 gives the operand-size prefix or REX.W. Returns the bytes written to `out`.
unsigned gs_form(uint8_t* out, uint8_t opcode, unsigned reg, unsigned opsize, uint32_t disp) {
  unsigned n = 0;
  out[n++] = kGsPrefix;
  if (opsize == 2) out[n++] = kOpsizePrefix;
  const uint8_t rex = static_cast<uint8_t>((opsize == 8 ? kRexW : 0x40) | (reg >= 8 ? 0x04 : 0));
  if (rex != 0x40) out[n++] = rex;
  out[n++] = opcode;
  out[n++] = static_cast<uint8_t>(0x04 | ((reg & 7) << 3));
  out[n++] = 0x25;
  std::memcpy(out + n, &disp, 4);
  return n + 4;
}

// A memory operand through FS or GS (or an ignored CS override): with a vCPU page, GS is the
// VMM's and neither is limit-checked (EFER.LMSLE checks DS, ES and SS), so the instruction is a
// callout, which the virtual CPU carries out on the guest's own segment.
bool uses_unchecked_segment(const Insn& insn) {
  const auto unchecked = [](unsigned seg) { return seg != DS && seg != ES && seg != SS; };
  for (unsigned k = 0; k < insn.num_ops; ++k)
    if (insn.op[k].kind == OpKind::Mem && unchecked(insn.op[k].seg)) return true;
  return insn.cls == InsnClass::String && unchecked(insn.string_seg);
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

bool fits_int32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

// The absolute disp32 that stands for a RIP-relative operand of the guest instruction at `guest_rip`
// (the next at `guest_next`): the guest's RIP, not the TC's, is what it is relative to.
int32_t absolute_disp32(uint64_t guest_rip, uint64_t guest_next, int64_t disp) {
  const int64_t absolute = static_cast<int64_t>(guest_next) + disp;
  if (!fits_int32(absolute))  // beyond_absolute_disp32 sends such instructions to a callout
    throw std::logic_error("binary_translation: the RIP-relative operand of the instruction at " + hex(guest_rip) +
                           " addresses " + hex(static_cast<uint64_t>(absolute)) + ", beyond an absolute disp32");
  return static_cast<int32_t>(absolute);
}

// Whether the translation would need an address the TC cannot encode: a RIP-relative operand
// whose absolute address is not a sign-extended disp32, or a direct CALL whose return address is
// not a sign-extended imm32 for PUSH. The virtual CPU carries such an instruction out (a callout).
bool beyond_absolute_disp32(const Insn& insn, const ZydisDecodedInstruction& zi, uint64_t guest_next) {
  for (unsigned k = 0; k < insn.num_ops; ++k)
    if (insn.op[k].kind == OpKind::Mem && insn.op[k].base == kRipReg &&
        !fits_int32(static_cast<int64_t>(guest_next) + zi.raw.disp.value))
      return true;
  return insn.mnemonic == ZYDIS_MNEMONIC_CALL && insn.op[0].kind == OpKind::Rel &&
         !fits_int32(static_cast<int64_t>(guest_next));
}

// An instruction the VMM must carry out on the virtual CPU: what would trap deprivileged, what
// would leak, what changes the machine's mode, and what the core has no semantics for.
bool needs_callout(const Insn& insn) {
  return insn.is_sensitive() || insn.has(kTraitPrivileged) || insn.has(kTraitPortIo) || insn.has(kTraitSystem) ||
         insn.cls == InsnClass::Iret || insn.cls == InsnClass::Syscall || insn.cls == InsnClass::Unimplemented;
}

// A callout after which the guest does not go on with the next instruction of the unit.
bool ends_unit(const Insn& insn) {
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_INT:
    case ZYDIS_MNEMONIC_INT1:
    case ZYDIS_MNEMONIC_INT3:
    case ZYDIS_MNEMONIC_INTO:
    case ZYDIS_MNEMONIC_HLT:
    case ZYDIS_MNEMONIC_UD2:
      return true;
    default:
      return insn.cls == InsnClass::Branch || insn.cls == InsnClass::Iret || insn.cls == InsnClass::Syscall ||
             insn.cls == InsnClass::Unimplemented;
  }
}

}  // namespace

BtTranslator::BtTranslator(std::vector<uint8_t*> tc_pages, uint64_t tc_linear, uint64_t tc_physical,
                           unsigned unit_instructions, std::function<void(uint64_t, uint64_t)> written,
                           SregRead sreg_read, bool vcpu_page)
    : pages_(std::move(tc_pages)),
      tc_linear_(tc_linear),
      tc_physical_(tc_physical),
      tc_bytes_(pages_.size() * kTcPage),
      unit_instructions_(unit_instructions),
      sreg_read_(sreg_read),
      vcpu_page_(vcpu_page),
      max_emitted_per_insn_(vcpu_page ? kMaxEmittedPerInlineInsn : kMaxEmittedPerInsn),
      written_(std::move(written)),
      decoder_(Dispatch::instance()) {
  if (unit_instructions_ == 0) throw std::invalid_argument("binary_translation: vmm.bt.unit_instructions must be >= 1");
  ZydisDecoderInit(&zydis_, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
}

void BtTranslator::put(uint64_t offset, const uint8_t* bytes, unsigned size) {
  for (unsigned k = 0; k < size; ++k) pages_[(offset + k) / kTcPage][(offset + k) % kTcPage] = bytes[k];
}

void BtTranslator::get(uint64_t offset, uint8_t* bytes, unsigned size) const {
  for (unsigned k = 0; k < size && offset + k < tc_bytes_; ++k)
    bytes[k] = pages_[(offset + k) / kTcPage][(offset + k) % kTcPage];
}

uint64_t BtTranslator::emit(const uint8_t* bytes, unsigned size) {
  const uint64_t at = tc_linear_ + used_;
  put(used_, bytes, size);
  used_ += size;
  return at;
}

uint64_t BtTranslator::emit_exit(TcExit exit, const uint8_t* bytes, unsigned size, uint64_t guest_rip_there) {
  exit.tc = emit(bytes, size);
  emitted_[exit.tc] = {guest_rip_there, false};
  exits_[physical(exit.tc)] = exit;
  return exit.tc;
}

uint64_t BtTranslator::emit_jump_exit(uint64_t guest_target, uint64_t guest_rip_there) {
  const uint8_t stub[5] = {kJmpRel32, 0, 0, 0, 0};  // the rel32 is patched when it is chained
  TcExit exit;
  exit.kind = TcExit::Kind::Jump;
  exit.guest_rip = exit.guest_target = guest_target;
  return emit_exit(exit, stub, sizeof stub, guest_rip_there);
}

void BtTranslator::patch_rel32(uint64_t at, uint64_t next, uint64_t target) {
  const int64_t rel = static_cast<int64_t>(target - next);
  const int32_t rel32 = static_cast<int32_t>(rel);
  uint8_t bytes[4];
  std::memcpy(bytes, &rel32, 4);
  put(at - tc_linear_, bytes, 4);
  written_(physical(at), 4);
}

const Insn& BtTranslator::keep(const Insn& insn) {
  insns_.push_back(std::make_unique<Insn>(insn));
  return *insns_.back();
}

uint64_t BtTranslator::emit_step(const uint8_t* bytes, unsigned size, uint64_t guest_rip, bool first,
                                 uint8_t borrowed) {
  const uint64_t at = emit(bytes, size);
  emitted_[at] = {guest_rip, false, !first, borrowed};
  return at;
}

// RAX and RCX borrowed: RAX = the guest operand's offset (LEA of its ModRM, re-encoded; RIP-relative
// as an absolute disp32), CX = the low field, stored; RCX = the high field, stored 2 bytes on; both
// returned. The stores may fault (the guest's memory): the VMM then takes RAX and RCX back from
// the scratch slots (borrowed_at), and the guest instruction runs again from the start.
void BtTranslator::emit_inline_store(const Insn& insn, const ZydisDecodedInstruction& zi, const uint8_t* bytes,
                                     uint64_t g, uint64_t next, uint32_t low, uint32_t high) {
  constexpr uint8_t kBoth = VcpuPage::kBorrowsRax | VcpuPage::kBorrowsRcx;
  uint8_t b[24];
  emit_step(b, gs_form(b, kMovStore, RAX, 8, VcpuPage::kScratch), g, true);
  emit_step(b, gs_form(b, kMovStore, RCX, 8, VcpuPage::kScratch2), g, false, VcpuPage::kBorrowsRax);
  // LEA RAX, [the guest's operand]: its ModRM's mod and r/m, SIB and displacement, reg = RAX.
  const unsigned modrm = zi.raw.modrm.offset;
  unsigned n = 0;
  if (insn.addrsize == 4) b[n++] = 0x67;
  const bool rip_relative = insn.op[0].base == kRipReg;
  b[n++] = static_cast<uint8_t>(kRexW | (rip_relative ? 0 : (zi.raw.rex.X << 1) | zi.raw.rex.B));
  b[n++] = 0x8D;
  if (rip_relative) {
    b[n++] = 0x04;  // mod 00, reg RAX, r/m SIB
    b[n++] = 0x25;  // no index, no base: disp32
    const int32_t abs32 = absolute_disp32(g, next, zi.raw.disp.value);
    std::memcpy(b + n, &abs32, 4);
    n += 4;
  } else {
    const bool sib = zi.attributes & ZYDIS_ATTRIB_HAS_SIB;
    const unsigned operand_end = zi.raw.disp.size ? zi.raw.disp.offset + zi.raw.disp.size / 8 : modrm + 1 + sib;
    b[n++] = static_cast<uint8_t>(bytes[modrm] & 0xC7);  // reg field 0: RAX
    for (unsigned k = modrm + 1; k < operand_end; ++k) b[n++] = bytes[k];
  }
  emit_step(b, n, g, false, kBoth);
  emit_step(b, gs_form(b, kMovLoad, RCX, 2, low), g, false, kBoth);
  const uint8_t store_low[3] = {kOpsizePrefix, kMovStore, 0x08};  // MOV [RAX], CX
  emit_step(store_low, sizeof store_low, g, false, kBoth);
  if (high) {
    emit_step(b, gs_form(b, kMovLoad, RCX, 8, high), g, false, kBoth);
    const uint8_t store_high[4] = {kRexW, kMovStore, 0x48, 0x02};  // MOV [RAX + 2], RCX
    emit_step(store_high, sizeof store_high, g, false, kBoth);
  }
  emit_step(b, gs_form(b, kMovLoad, RCX, 8, VcpuPage::kScratch2), g, false, kBoth);
  emit_step(b, gs_form(b, kMovLoad, RAX, 8, VcpuPage::kScratch), g, false, VcpuPage::kBorrowsRax);
}

// The inline sequences, on the vCPU page (GS-relative). None changes the real flags where the
// guest instruction leaves them alone; each is restartable from its first instruction (the only
// one that can fault on the guest's memory, before anything changed, is PUSHF's PUSHFQ and POPF's
// first load), and an interrupt waits until it is done (holds_interrupts).
//   CLI, STI        MOV qword gs:[kIf], 0 or IF; after STI an interrupt also waits for the next
//                   guest instruction (the interrupt shadow)
//   PUSHFQ          PUSHFQ (the real flags); RAX borrowed: RAX = [RSP] with IF from gs:[kIf];
//                   POPFQ (the real flags back, from the real image); PUSH RAX; RAX returned
//   POPFQ           RAX borrowed; if the image's IOPL differs from gs:[kIopl], a callout (POPF
//                   emulated on the virtual CPU); else gs:[kIf] = the image's IF, RAX returned,
//                   and the real POPFQ loads the rest (at the real CPL 3 it keeps IF and IOPL)
//   MOV r, CR0/4/8  MOV r, gs:[kCr0/kCr4/kCr8]
//   SMSW/STR/SLDT r MOV r, gs:[kCr0/kTr/kLdtr] in the instruction's operand size (as they store)
//   SMSW/STR/SLDT m, the field's 16 bits stored to the guest's operand; SGDT/SIDT also the base
//   SGDT/SIDT m     2 bytes on (emit_inline_store)
bool BtTranslator::emit_inline(const Insn& insn, const ZydisDecodedInstruction& zi, const uint8_t* bytes, uint64_t g,
                               uint64_t next) {
  uint8_t b[16];
  unsigned n;
  const auto load_field = [&](uint32_t field) {
    const unsigned opsize = insn.opsize == 2 || insn.opsize == 4 ? insn.opsize : 8;
    emit_step(b, gs_form(b, kMovLoad, insn.op[0].reg, opsize, field), g, true);
  };
  const bool reg_destination = insn.num_ops > 0 && insn.op[0].kind == OpKind::Reg;
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_CLI:
    case ZYDIS_MNEMONIC_STI: {
      n = gs_form(b, kMovStoreImm, 0, 8, VcpuPage::kIf);
      const uint32_t flag = insn.mnemonic == ZYDIS_MNEMONIC_STI ? static_cast<uint32_t>(IF) : 0;
      std::memcpy(b + n, &flag, 4);
      emit_step(b, n + 4, g, true);
      return true;
    }
    case ZYDIS_MNEMONIC_PUSHFQ: {
      if (insn.opsize != 8) return false;
      const uint8_t pushfq = kPushfq, popfq = kPopfq, push_rax = kPushRax;
      const uint8_t load_image[4] = {kRexW, kMovLoad, 0x04, 0x24};             // MOV RAX, [RSP]
      const uint8_t clear_if[6] = {kRexW, 0x25, 0xFF, 0xFD, 0xFF, 0xFF};       // AND RAX, ~IF
      static_assert(static_cast<uint32_t>(~IF) == 0xFFFFFDFFu);
      emit_step(&pushfq, 1, g, true);
      emit_step(b, gs_form(b, kMovStore, RAX, 8, VcpuPage::kScratch), g, false);
      emit_step(load_image, sizeof load_image, g, false);
      emit_step(clear_if, sizeof clear_if, g, false);
      emit_step(b, gs_form(b, kOrLoad, RAX, 8, VcpuPage::kIf), g, false);
      emit_step(&popfq, 1, g, false);
      emit_step(&push_rax, 1, g, false);
      emit_step(b, gs_form(b, kMovLoad, RAX, 8, VcpuPage::kScratch), g, false);
      return true;
    }
    case ZYDIS_MNEMONIC_POPFQ: {
      if (insn.opsize != 8) return false;
      const uint8_t load_image[4] = {kRexW, kMovLoad, 0x04, 0x24};  // MOV RAX, [RSP]
      const uint8_t keep_iopl[5] = {0x25, 0x00, 0x30, 0x00, 0x00};  // AND EAX, IOPL
      const uint8_t keep_if[5] = {0x25, 0x00, 0x02, 0x00, 0x00};    // AND EAX, IF
      static_assert(IOPL == 0x3000 && IF == 0x200);
      const uint8_t jne[6] = {0x0F, 0x85, 0, 0, 0, 0}, jmp[5] = {kJmpRel32, 0, 0, 0, 0};
      const uint8_t popfq = kPopfq;
      emit_step(b, gs_form(b, kMovStore, RAX, 8, VcpuPage::kScratch), g, true);
      emit_step(load_image, sizeof load_image, g, false);
      emit_step(keep_iopl, sizeof keep_iopl, g, false);
      emit_step(b, gs_form(b, kCmpLoad, RAX, 8, VcpuPage::kIopl), g, false);
      const uint64_t to_callout = emit_step(jne, sizeof jne, g, false);
      emit_step(load_image, sizeof load_image, g, false);
      emit_step(keep_if, sizeof keep_if, g, false);
      emit_step(b, gs_form(b, kMovStore, RAX, 8, VcpuPage::kIf), g, false);
      emit_step(b, gs_form(b, kMovLoad, RAX, 8, VcpuPage::kScratch), g, false);
      emit_step(&popfq, 1, g, false);
      const uint64_t to_done = emit(jmp, sizeof jmp);  // the POPF is done: the guest is at the next instruction
      emitted_[to_done] = {next, false};
      const uint64_t callout = emit_step(b, gs_form(b, kMovLoad, RAX, 8, VcpuPage::kScratch), g, false);
      TcExit exit;
      exit.kind = TcExit::Kind::Emulate;
      exit.guest_rip = g;
      exit.guest_next = next;
      exit.insn = &keep(insn);
      const uint64_t at = emit_exit(exit, &popfq, 1, g);
      exits_[physical(at)].tc_next = tc_linear_ + used_;
      const auto put_rel32 = [&](uint64_t field, uint64_t target) {
        const int32_t rel = static_cast<int32_t>(static_cast<int64_t>(target - (field + 4)));
        put(field - tc_linear_, reinterpret_cast<const uint8_t*>(&rel), 4);
      };
      put_rel32(to_callout + 2, callout);
      put_rel32(to_done + 1, tc_linear_ + used_);
      return true;
    }
    case ZYDIS_MNEMONIC_MOV:
      if (!reg_destination || insn.op[1].kind != OpKind::CtlReg) return false;
      switch (insn.op[1].reg) {
        case 0: load_field(VcpuPage::kCr0); return true;
        case 4: load_field(VcpuPage::kCr4); return true;
        case 8: load_field(VcpuPage::kCr8); return true;
        default: return false;
      }
    case ZYDIS_MNEMONIC_SMSW:
    case ZYDIS_MNEMONIC_STR:
    case ZYDIS_MNEMONIC_SLDT: {
      const uint32_t field = insn.mnemonic == ZYDIS_MNEMONIC_SMSW ? VcpuPage::kCr0
                             : insn.mnemonic == ZYDIS_MNEMONIC_STR ? VcpuPage::kTr
                                                                   : VcpuPage::kLdtr;
      if (reg_destination) load_field(field);
      else emit_inline_store(insn, zi, bytes, g, next, field, 0);
      return true;
    }
    case ZYDIS_MNEMONIC_SGDT:
      emit_inline_store(insn, zi, bytes, g, next, VcpuPage::kGdtrLimit, VcpuPage::kGdtrBase);
      return true;
    case ZYDIS_MNEMONIC_SIDT:
      emit_inline_store(insn, zi, bytes, g, next, VcpuPage::kIdtrLimit, VcpuPage::kIdtrBase);
      return true;
    default:
      return false;
  }
}

std::optional<uint64_t> BtTranslator::translate(uint64_t guest_rip, const CodeReader& read) {
  // Room for a full unit (with a vCPU page, one more instruction: the one after an STI).
  const unsigned most = unit_instructions_ + (vcpu_page_ ? 1 : 0);
  if (tc_bytes_ - used_ < most * max_emitted_per_insn_ + 5) return std::nullopt;
  const uint64_t start_used = used_;
  Unit unit;
  unit.tc = tc_linear_ + used_;
  uint64_t g = guest_rip;
  uint64_t sti_shadow = ~0ull;  // the TC offset where the guest instruction after an inline STI starts
  const auto close_sti_shadow = [&] {
    if (sti_shadow == ~0ull) return;
    for (auto it = emitted_.lower_bound(tc_linear_ + sti_shadow); it != emitted_.end(); ++it)
      it->second.holds_interrupts = true;
    sti_shadow = ~0ull;
  };
  bool after_sti = false;
  for (unsigned n = 0;; ++n) {
    close_sti_shadow();
    if (after_sti) sti_shadow = used_;
    if (n >= unit_instructions_ && !after_sti) {  // full: go on in the next unit
      emit_jump_exit(g, g);
      break;
    }
    after_sti = false;
    uint8_t bytes[kMaxInsnBytes];
    unsigned avail = 0;
    uint64_t frame = 0;
    // Up to the end of the page first, then the next page if the instruction needs it.
    const unsigned in_page = static_cast<unsigned>(std::min<uint64_t>(kMaxInsnBytes, 0x1000 - (g & 0xFFF)));
    if (!read(g, bytes, in_page, &frame)) {
      if (n == 0)  // the VMM sends the real CPU there instead (BinaryTranslationVmm::translate)
        throw std::logic_error("binary_translation: asked to translate code at " + hex(g) + ", which cannot be fetched");
      emit_jump_exit(g, g);  // the next unit's translation meets the fault
      break;
    }
    avail = in_page;
    uint64_t next_frame = 0;
    if (avail < kMaxInsnBytes && read(g + avail, bytes + avail, kMaxInsnBytes - avail, &next_frame))
      avail = kMaxInsnBytes;
    if (std::find(unit.frames.begin(), unit.frames.end(), frame) == unit.frames.end()) unit.frames.push_back(frame);

    Insn insn;
    const DecodeStatus status = decoder_.decode(Mode::Long64, bytes, avail, insn);
    ZydisDecodedInstruction zi;
    ZydisDecodedOperand zops[ZYDIS_MAX_OPERAND_COUNT];
    if (status != DecodeStatus::Ok || !ZYAN_SUCCESS(ZydisDecoderDecodeFull(&zydis_, bytes, avail, &zi, zops))) {
      // Not an instruction: the virtual CPU raises the guest's #UD at it.
      const uint8_t ud2[2] = {0x0F, 0x0B};
      TcExit exit;
      exit.kind = TcExit::Kind::Emulate;
      exit.guest_rip = exit.guest_next = g;
      Insn undecodable;
      undecodable.mnemonic = ZYDIS_MNEMONIC_UD2;
      exit.insn = &keep(undecodable);
      emit_exit(exit, ud2, sizeof ud2, g);
      ++counters_.callouts;
      ++counters_.guest_instructions;
      break;
    }
    if (avail < kMaxInsnBytes && insn.length > avail) throw std::logic_error("binary_translation: short read");
    if (((g + insn.length - 1) >> 12) != (g >> 12) && next_frame &&
        std::find(unit.frames.begin(), unit.frames.end(), next_frame) == unit.frames.end())
      unit.frames.push_back(next_frame);
    ++counters_.guest_instructions;
    const uint64_t next = g + insn.length;
    const Operand& op0 = insn.op[0];

    if (insn.mnemonic == ZYDIS_MNEMONIC_MOV && insn.num_ops == 2 && insn.op[0].kind == OpKind::Reg &&
        insn.op[1].kind == OpKind::SegReg && sreg_read_ != SregRead::Traps) {
      // Inline: the real CPU reads the selector; only CS and SS differ (RPL 3 for the guest's 0).
      ++counters_.inlined;
      counters_.inlined_by_mnemonic.record(insn);
      emitted_[emit(bytes, insn.length)] = {g, false};
      const uint8_t seg = insn.op[1].reg;
      if (sreg_read_ == SregRead::RealRpl && (seg == CS || seg == SS)) {
        const unsigned r = insn.op[0].reg;
        uint8_t lea[7];
        unsigned n = 0;
        if (insn.opsize == 2) lea[n++] = 0x66;
        const uint8_t rex = static_cast<uint8_t>((insn.opsize == 8 ? 0x48 : 0x40) | (r >= 8 ? 0x05 : 0));
        if (rex != 0x40) lea[n++] = rex;
        lea[n++] = 0x8D;                                                       // LEA r, [r + disp8]
        lea[n++] = static_cast<uint8_t>(0x40 | ((r & 7) << 3) | (r & 7));
        if ((r & 7) == 4) lea[n++] = 0x24;                                     // SIB: base RSP/R12
        lea[n++] = 0xFD;                                                       // -3
        emitted_[emit(lea, n)] = {g, false};  // interrupted before it: the MOV runs again
      }
      g = next;
      continue;
    }
    const bool beyond_disp32 = beyond_absolute_disp32(insn, zi, next);
    if (vcpu_page_ && !beyond_disp32 && !uses_unchecked_segment(insn) && emit_inline(insn, zi, bytes, g, next)) {
      ++counters_.inlined;
      counters_.inlined_by_mnemonic.record(insn);
      after_sti = insn.mnemonic == ZYDIS_MNEMONIC_STI;
      g = next;
      continue;
    }
    if (needs_callout(insn) || beyond_disp32 || (vcpu_page_ && uses_unchecked_segment(insn))) {
      ++counters_.callouts;
      TcExit exit;
      exit.kind = TcExit::Kind::Emulate;
      exit.guest_rip = g;
      exit.guest_next = next;
      exit.insn = &keep(insn);
      const bool last = ends_unit(insn);
      const uint64_t at = emit_exit(exit, bytes, insn.length, g);
      if (last) break;
      exits_[physical(at)].tc_next = tc_linear_ + used_;
      g = next;
      continue;
    }

    if (insn.cls == InsnClass::Branch) {
      ++counters_.branches;
      const bool relative = op0.kind == OpKind::Rel;
      const uint64_t target = next + static_cast<uint64_t>(op0.value);
      switch (insn.mnemonic) {
        case ZYDIS_MNEMONIC_JMP:
          if (relative) {
            emit_jump_exit(target, target);
          } else {
            TcExit exit{TcExit::Kind::Indirect, g, next, 0, 0, 0, &keep(insn)};
            emit_exit(exit, bytes, insn.length, g);
          }
          break;
        case ZYDIS_MNEMONIC_CALL:
          if (relative) {
            uint8_t push[5] = {kPushImm32};
            const int32_t imm = static_cast<int32_t>(next);
            std::memcpy(push + 1, &imm, 4);
            emitted_[emit(push, sizeof push)] = {g, true};
            emit_jump_exit(target, target);
          } else {
            TcExit exit{TcExit::Kind::Indirect, g, next, 0, 0, 0, &keep(insn)};
            emit_exit(exit, bytes, insn.length, g);
          }
          break;
        case ZYDIS_MNEMONIC_RET: {
          TcExit exit{TcExit::Kind::Return, g, next, 0, 0, 0, &keep(insn)};
          emit_exit(exit, bytes, insn.length, g);
          break;
        }
        case ZYDIS_MNEMONIC_JCXZ:
        case ZYDIS_MNEMONIC_JECXZ:
        case ZYDIS_MNEMONIC_JRCXZ:
        case ZYDIS_MNEMONIC_LOOP:
        case ZYDIS_MNEMONIC_LOOPE:
        case ZYDIS_MNEMONIC_LOOPNE: {
          TcExit exit{TcExit::Kind::Counted, g, next, target, 0, 0, &keep(insn)};
          emit_exit(exit, bytes, insn.length, g);
          break;
        }
        default: {  // Jcc: to the taken stub, else on to the fall-through stub
          if (!relative) throw std::runtime_error("binary_translation: unexpected branch form at " + hex(g));
          const uint8_t jcc[6] = {0x0F, static_cast<uint8_t>(0x80 | insn.condition), 0, 0, 0, 0};
          const uint64_t at = emit(jcc, sizeof jcc);
          emitted_[at] = {g, true};
          emit_jump_exit(next, next);
          const uint64_t taken = emit_jump_exit(target, target);
          patch_rel32(at + 2, at + 6, taken);
          break;
        }
      }
      break;
    }

    // IDENT. A RIP-relative operand addresses the guest's code, not the TC: it becomes the
    // absolute disp32 form (ModRM r/m = 100 with SIB base = 101, index = none).
    ++counters_.ident;
    bool rip_relative = false;
    for (unsigned k = 0; k < insn.num_ops; ++k)
      rip_relative |= insn.op[k].kind == OpKind::Mem && insn.op[k].base == kRipReg;
    if (!rip_relative) {
      emitted_[emit(bytes, insn.length)] = {g, true};
    } else {
      const int32_t abs32 = absolute_disp32(g, next, zi.raw.disp.value);
      uint8_t out[kMaxInsnBytes + 1];
      const unsigned modrm = zi.raw.modrm.offset, disp = zi.raw.disp.offset;
      std::memcpy(out, bytes, modrm);
      if (zi.attributes & ZYDIS_ATTRIB_HAS_REX) out[zi.raw.rex.offset] &= ~0x02;  // no REX.X: SIB index none
      out[modrm] = static_cast<uint8_t>((bytes[modrm] & 0x38) | 0x04);           // mod 00, reg, r/m SIB
      out[modrm + 1] = 0x25;                                                      // no index, no base
      std::memcpy(out + modrm + 2, &abs32, 4);
      std::memcpy(out + modrm + 6, bytes + disp + 4, insn.length - disp - 4);  // the immediate, if any
      emitted_[emit(out, insn.length + 1)] = {g, true};
      ++counters_.rebased;
    }
    g = next;
  }
  close_sti_shadow();
  written_(physical(unit.tc), used_ - start_used);
  unit.tc_end = tc_linear_ + used_;
  for (uint64_t frame : unit.frames) units_by_frame_[frame].push_back(guest_rip);
  units_[guest_rip] = unit;
  ++counters_.units;
  return unit.tc;
}

uint64_t BtTranslator::guest_rip_at(uint64_t tc) const {
  const auto it = emitted_.find(tc);
  if (it == emitted_.end())
    throw std::logic_error("binary_translation: the real CPU is at " + hex(tc) +
                           " in the translation cache, where no translated instruction starts");
  return it->second.guest_rip;
}

const TcExit* BtTranslator::exit_at_physical(uint64_t paddr) const {
  const auto it = exits_.find(paddr);
  return it == exits_.end() ? nullptr : &it->second;
}

void BtTranslator::chain(uint64_t tc, uint64_t target) {
  const auto it = exits_.find(physical(tc));
  if (it == exits_.end() || it->second.kind != TcExit::Kind::Jump)
    throw std::logic_error("binary_translation: no unchained JMP exit at " + hex(tc));
  chained_into_.emplace(target, tc);
  chained_exits_[physical(tc)] = it->second;
  exits_.erase(it);
  patch_rel32(tc + 1, tc + 5, target);
}

bool BtTranslator::make_callout(uint64_t tc) {
  const auto it = emitted_.find(tc);
  if (it == emitted_.end() || !it->second.ident) return false;
  uint8_t bytes[kMaxInsnBytes] = {};
  get(tc - tc_linear_, bytes, kMaxInsnBytes);
  Insn insn;
  if (decoder_.decode(Mode::Long64, bytes, kMaxInsnBytes, insn) != DecodeStatus::Ok) return false;
  TcExit exit;
  exit.kind = TcExit::Kind::Emulate;
  exit.guest_rip = it->second.guest_rip;
  exit.tc = tc;
  exit.tc_next = tc + insn.length;
  exit.insn = &keep(insn);
  it->second.ident = false;
  exits_[physical(tc)] = exit;
  written_(physical(tc), insn.length);  // decoded anew, and marked
  return true;
}

uint64_t BtTranslator::invalidate_frame(uint64_t frame) {
  const auto by_frame = units_by_frame_.find(frame);
  if (by_frame == units_by_frame_.end()) return 0;
  uint64_t dropped = 0;
  for (uint64_t guest : by_frame->second) {
    const auto unit = units_.find(guest);
    if (unit == units_.end()) continue;
    // Exits chained into it become exits again: they enter the translator next time.
    const auto [first, last] = chained_into_.equal_range(unit->second.tc);
    for (auto it = first; it != last; ++it) {
      const auto chained = chained_exits_.find(physical(it->second));
      if (chained == chained_exits_.end()) continue;
      exits_[chained->first] = chained->second;
      chained_exits_.erase(chained);
      written_(physical(it->second), 5);  // marked again as it is decoded anew
    }
    chained_into_.erase(unit->second.tc);
    units_.erase(unit);
    ++dropped;
  }
  units_by_frame_.erase(by_frame);
  return dropped;
}

void BtTranslator::flush() {
  written_(tc_physical_, used_);
  used_ = 0;
  units_.clear();
  emitted_.clear();
  exits_.clear();
  chained_exits_.clear();
  units_by_frame_.clear();
  chained_into_.clear();
  insns_.clear();
  ++counters_.flushes;
}

}  // namespace pgsim::vmm

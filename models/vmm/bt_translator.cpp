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
constexpr uint8_t kJmpRel32 = 0xE9, kPushImm32 = 0x68;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

bool fits_int32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

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
                           SregRead sreg_read)
    : pages_(std::move(tc_pages)),
      tc_linear_(tc_linear),
      tc_physical_(tc_physical),
      tc_bytes_(pages_.size() * kTcPage),
      unit_instructions_(unit_instructions),
      sreg_read_(sreg_read),
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

std::optional<uint64_t> BtTranslator::translate(uint64_t guest_rip, const CodeReader& read) {
  if (tc_bytes_ - used_ < unit_instructions_ * kMaxEmittedPerInsn + 5) return std::nullopt;
  const uint64_t start_used = used_;
  Unit unit;
  unit.tc = tc_linear_ + used_;
  uint64_t g = guest_rip;
  for (unsigned n = 0;; ++n) {
    if (n == unit_instructions_) {  // full: go on in the next unit
      emit_jump_exit(g, g);
      break;
    }
    uint8_t bytes[kMaxInsnBytes];
    unsigned avail = 0;
    uint64_t frame = 0;
    // Up to the end of the page first, then the next page if the instruction needs it.
    const unsigned in_page = static_cast<unsigned>(std::min<uint64_t>(kMaxInsnBytes, 0x1000 - (g & 0xFFF)));
    if (!read(g, bytes, in_page, &frame)) {
      if (n == 0)
        throw std::runtime_error("binary_translation: the guest kernel's code at " + hex(g) +
                                 " cannot be fetched through its page tables (instruction fetch faults in guest "
                                 "kernel code are not translated)");
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
    if (needs_callout(insn)) {
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
            if (!fits_int32(static_cast<int64_t>(next)))
              throw std::runtime_error("binary_translation: the return address " + hex(next) +
                                       " of the CALL at " + hex(g) + " does not fit a PUSH imm32");
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
      const int64_t absolute = static_cast<int64_t>(next) + zi.raw.disp.value;
      if (!fits_int32(absolute))
        throw std::runtime_error("binary_translation: the RIP-relative operand of the instruction at " + hex(g) +
                                 " addresses " + hex(static_cast<uint64_t>(absolute)) +
                                 ", beyond an absolute disp32");
      uint8_t out[kMaxInsnBytes + 1];
      const unsigned modrm = zi.raw.modrm.offset, disp = zi.raw.disp.offset;
      std::memcpy(out, bytes, modrm);
      if (zi.attributes & ZYDIS_ATTRIB_HAS_REX) out[zi.raw.rex.offset] &= ~0x02;  // no REX.X: SIB index none
      out[modrm] = static_cast<uint8_t>((bytes[modrm] & 0x38) | 0x04);           // mod 00, reg, r/m SIB
      out[modrm + 1] = 0x25;                                                      // no index, no base
      const int32_t abs32 = static_cast<int32_t>(absolute);
      std::memcpy(out + modrm + 2, &abs32, 4);
      std::memcpy(out + modrm + 6, bytes + disp + 4, insn.length - disp - 4);  // the immediate, if any
      emitted_[emit(out, insn.length + 1)] = {g, true};
      ++counters_.rebased;
    }
    g = next;
  }
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

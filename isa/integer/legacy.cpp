// The general-purpose instructions that exist outside 64-bit mode only (SDM vol. 2): PUSHA/PUSHAD,
// POPA/POPAD, the BCD adjustments DAA, DAS, AAA, AAS, AAM, AAD, SALC and BOUND; and UD0/UD1.
// Zydis decodes them only in 16- and 32-bit modes, where 64-bit mode has other instructions or #UD.
// Flags the SDM leaves undefined are set as QEMU sets them (OF cleared by DAA/DAS; CF, AF and OF
// cleared by AAM/AAD; SF, ZF, PF and OF kept by AAA/AAS), so that the two print the same.
#include <utility>

#include "isa/integer/semantics.h"

namespace pgsim::isa::integer {
namespace {

// PUSHA: AX, CX, DX, BX, the original SP, BP, SI, DI; every write before SP changes.
template <class T> void pusha(Core& c, const Insn&) {
  const uint64_t mask = Core::size_mask(c.stack_size());
  const uint64_t sp = c.state().gpr[RSP];
  for (unsigned r = RAX; r <= RDI; ++r) c.write<T>(SS, (sp - (r + 1) * sizeof(T)) & mask, c.gpr<T>(r));
  c.set_gpr_sized(RSP, sp - 8 * sizeof(T), c.stack_size());
}

// POPA: DI, SI, BP, (SP skipped), BX, DX, CX, AX; every read before a register changes.
template <class T> void popa(Core& c, const Insn&) {
  const uint64_t mask = Core::size_mask(c.stack_size());
  const uint64_t sp = c.state().gpr[RSP];
  T values[8];
  for (unsigned r = RAX; r <= RDI; ++r) values[r] = c.read<T>(SS, (sp + (RDI - r) * sizeof(T)) & mask);
  for (unsigned r = RAX; r <= RDI; ++r)
    if (r != RSP) c.set_gpr<T>(r, values[r]);
  c.set_gpr_sized(RSP, sp + 8 * sizeof(T), c.stack_size());
}

uint8_t al(const Core& c) { return c.gpr<uint8_t>(RAX); }
bool low_digit_adjust(const Core& c) { return (al(c) & 0xF) > 9 || c.flag(AF); }

// DAA/DAS: adjust AL after a packed-BCD addition or subtraction. The low digit's adjustment sets
// CF on a borrow for DAS; for DAA the high digit's decides CF alone.
template <bool Subtract> void decimal_adjust(Core& c, const Insn&) {
  const uint8_t old_al = al(c);
  const bool old_cf = c.flag(CF);
  const int sign = Subtract ? -1 : 1;
  uint8_t r = old_al;
  uint64_t f = 0;
  if (low_digit_adjust(c)) {
    r = static_cast<uint8_t>(r + sign * 6);
    f |= AF | (Subtract && (old_cf || old_al < 6) ? uint64_t(CF) : 0);
  }
  if (old_al > 0x99 || old_cf) {
    r = static_cast<uint8_t>(r + sign * 0x60);
    f |= CF;
  }
  c.set_gpr<uint8_t>(RAX, r);
  c.set_flags_result<uint8_t>(r, f);
}

// AAA/AAS: adjust AX after an unpacked-BCD addition or subtraction; AF = CF = the adjustment.
void aaa(Core& c, const Insn&) {
  const bool adjust = low_digit_adjust(c);
  uint16_t ax = c.gpr<uint16_t>(RAX);
  if (adjust) ax += 0x106;
  c.set_gpr<uint16_t>(RAX, static_cast<uint16_t>(ax & 0xFF0F));
  c.set_flags(AF | CF, adjust ? uint64_t(AF | CF) : 0);
}

void aas(Core& c, const Insn&) {
  const bool adjust = low_digit_adjust(c);
  uint16_t ax = c.gpr<uint16_t>(RAX);
  if (adjust) ax = static_cast<uint16_t>(ax - 6 - 0x100);
  c.set_gpr<uint16_t>(RAX, static_cast<uint16_t>(ax & 0xFF0F));
  c.set_flags(AF | CF, adjust ? uint64_t(AF | CF) : 0);
}

// AAM imm8: AH = AL / imm8, AL = AL % imm8 (#DE for 0). AAD imm8: AL = AL + AH * imm8, AH = 0.
void aam(Core& c, const Insn& i) {
  const uint8_t base = static_cast<uint8_t>(i.op[0].value);
  if (base == 0) throw Fault{DE, false, 0, 0};
  const uint8_t a = al(c);
  const uint8_t r = a % base;
  c.set_gpr<uint16_t>(RAX, static_cast<uint16_t>((a / base) << 8 | r));
  c.set_flags_result<uint8_t>(r);
}

void aad(Core& c, const Insn& i) {
  const uint8_t base = static_cast<uint8_t>(i.op[0].value);
  const uint8_t r = static_cast<uint8_t>(al(c) + c.gpr<uint16_t>(RAX) / 0x100 * base);
  c.set_gpr<uint16_t>(RAX, r);
  c.set_flags_result<uint8_t>(r);
}

// SALC (undocumented by Intel, documented by AMD): AL = CF ? 0xFF : 0.
void salc(Core& c, const Insn&) { c.set_gpr<uint8_t>(RAX, c.flag(CF) ? 0xFF : 0); }

// BOUND r, m: #BR unless lower <= r <= upper, signed, with the bounds at m and m + size.
template <class T> void bound(Core& c, const Insn& i) {
  const Operand& m = i.op[1];
  const uint64_t ea = c.effective_address(i, m);
  const auto seg = static_cast<SegReg>(m.seg);
  const auto lower = static_cast<Signed<T>>(c.read<T>(seg, ea));
  const auto upper = static_cast<Signed<T>>(c.read<T>(seg, (ea + sizeof(T)) & Core::size_mask(i.addrsize)));
  const auto index = static_cast<Signed<T>>(c.reg<T>(i.op[0]));
  if (index < lower || index > upper) throw Fault{BR, false, 0, 0};
}

// UD0 and UD1: defined to raise #UD, like UD2.
void undefined_opcode(Core&, const Insn&) { throw Fault::ud(); }

}  // namespace

void register_legacy(Dispatch& d) {
  d.add_sized(ZYDIS_MNEMONIC_PUSHA, InsnClass::Store, nullptr, &pusha<uint16_t>, nullptr, nullptr);
  d.add_sized(ZYDIS_MNEMONIC_PUSHAD, InsnClass::Store, nullptr, nullptr, &pusha<uint32_t>, nullptr);
  d.add_sized(ZYDIS_MNEMONIC_POPA, InsnClass::Load, nullptr, &popa<uint16_t>, nullptr, nullptr);
  d.add_sized(ZYDIS_MNEMONIC_POPAD, InsnClass::Load, nullptr, nullptr, &popa<uint32_t>, nullptr);
  d.add_sized(ZYDIS_MNEMONIC_BOUND, InsnClass::Load, nullptr, &bound<uint16_t>, &bound<uint32_t>, nullptr);
  const std::pair<unsigned, Handler> alu[] = {
      {ZYDIS_MNEMONIC_DAA, &decimal_adjust<false>}, {ZYDIS_MNEMONIC_DAS, &decimal_adjust<true>},
      {ZYDIS_MNEMONIC_AAA, &aaa}, {ZYDIS_MNEMONIC_AAS, &aas}, {ZYDIS_MNEMONIC_AAM, &aam},
      {ZYDIS_MNEMONIC_AAD, &aad}, {ZYDIS_MNEMONIC_SALC, &salc}, {ZYDIS_MNEMONIC_UD0, &undefined_opcode},
      {ZYDIS_MNEMONIC_UD1, &undefined_opcode}};
  for (const auto& [mnemonic, handler] : alu) d.add(mnemonic, InsnClass::Alu, handler);
}

}  // namespace pgsim::isa::integer

// SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR, SHLD, SHRD (SDM vol. 2, "SAL/SAR/SHL/SHR", "RCL/RCR/ROL/ROR",
// "SHLD", "SHRD"). The count is masked to 5 bits (6 with a 64-bit operand); a masked count of 0
// changes no flag. OF is defined for 1-bit shifts only. AF is undefined after SHL, SHR, SAR, SHLD and
// SHRD; it is cleared here, as QEMU does, which keeps the flags lazy (no read of the old AF).
#include "isa/integer/semantics.h"

namespace pgsim::isa::integer {
namespace {

// The masked count. A zero count changes nothing, except that a 32-bit register destination is
// still written, which zero-extends it in 64-bit mode (as processors do).
// F: the form a handler was specialized for (two visible operands: the count is op[1]).
template <class T, class F = AnyForm> unsigned shift_count(Core& c, const Insn& i) {
  const unsigned raw = i.num_ops > 1 ? static_cast<uint8_t>(c.get<uint8_t, F::op1>(i, i.op[i.num_ops - 1])) : 1;
  const unsigned n = raw & (sizeof(T) == 8 ? 0x3F : 0x1F);
  if constexpr (sizeof(T) == 4) {
    if (n == 0 && i.op[0].kind == OpKind::Reg) c.set_reg<T>(i.op[0], c.reg<T>(i.op[0]));
  }
  return n;
}

template <class T, class F = AnyForm> void shl(Core& c, const Insn& i) {
  const T a = c.get<T, F::op0>(i, i.op[0]);
  const unsigned n = shift_count<T, F>(c, i);
  if (n == 0) return;
  const T r = n < kBits<T> ? static_cast<T>(a << n) : 0;
  const bool cf = n <= kBits<T> ? (a >> (kBits<T> - n)) & 1 : false;
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_result<T>(r, (cf ? uint64_t{CF} : 0) | ((msb<T>(r) != cf) ? uint64_t{OF} : 0));
}

template <class T, class F = AnyForm> void shr(Core& c, const Insn& i) {
  const T a = c.get<T, F::op0>(i, i.op[0]);
  const unsigned n = shift_count<T, F>(c, i);
  if (n == 0) return;
  const T r = n < kBits<T> ? static_cast<T>(a >> n) : 0;
  const bool cf = n <= kBits<T> ? (a >> (n - 1)) & 1 : false;
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_result<T>(r, (cf ? uint64_t{CF} : 0) | (msb<T>(a) ? uint64_t{OF} : 0));
}

template <class T, class F = AnyForm> void sar(Core& c, const Insn& i) {
  const T a = c.get<T, F::op0>(i, i.op[0]);
  const unsigned n = shift_count<T, F>(c, i);
  if (n == 0) return;
  const Signed<T> s = static_cast<Signed<T>>(a);
  const T r = static_cast<T>(s >> (n < kBits<T> ? n : kBits<T> - 1));
  const bool cf = (s >> (n - 1 < kBits<T> ? n - 1 : kBits<T> - 1)) & 1;
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_result<T>(r, cf ? uint64_t{CF} : 0);
}

// ROL/ROR change only CF and OF.
template <class T> void rol(Core& c, const Insn& i) {
  const T a = c.get<T>(i, i.op[0]);
  const unsigned n = shift_count<T>(c, i);
  if (n == 0) return;
  const unsigned k = n % kBits<T>;
  const T r = k ? static_cast<T>(a << k | a >> (kBits<T> - k)) : a;
  const bool cf = r & 1;
  c.set<T>(i, i.op[0], r);
  c.set_flags(CF | OF, (cf ? uint64_t{CF} : 0) | ((msb<T>(r) != cf) ? uint64_t{OF} : 0));
}

template <class T> void ror(Core& c, const Insn& i) {
  const T a = c.get<T>(i, i.op[0]);
  const unsigned n = shift_count<T>(c, i);
  if (n == 0) return;
  const unsigned k = n % kBits<T>;
  const T r = k ? static_cast<T>(a >> k | a << (kBits<T> - k)) : a;
  const bool cf = msb<T>(r);
  c.set<T>(i, i.op[0], r);
  c.set_flags(CF | OF, (cf ? uint64_t{CF} : 0) | ((msb<T>(r) != ((r >> (kBits<T> - 2)) & 1)) ? uint64_t{OF} : 0));
}

// RCL/RCR rotate through CF: a (bits + 1)-bit rotation, done one bit at a time.
template <class T> void rcl(Core& c, const Insn& i) {
  const T a = c.get<T>(i, i.op[0]);
  const unsigned n = shift_count<T>(c, i);
  if (n == 0) return;
  const unsigned k = sizeof(T) < 4 ? n % (kBits<T> + 1) : n;
  T r = a;
  bool cf = c.flag(CF);
  for (unsigned s = 0; s < k; ++s) {
    const bool out = msb<T>(r);
    r = static_cast<T>(r << 1 | cf);
    cf = out;
  }
  c.set<T>(i, i.op[0], r);
  c.set_flags(CF | OF, (cf ? uint64_t{CF} : 0) | ((msb<T>(r) != cf) ? uint64_t{OF} : 0));
}

template <class T> void rcr(Core& c, const Insn& i) {
  const T a = c.get<T>(i, i.op[0]);
  const unsigned n = shift_count<T>(c, i);
  if (n == 0) return;
  const unsigned k = sizeof(T) < 4 ? n % (kBits<T> + 1) : n;
  T r = a;
  bool cf = c.flag(CF);
  const bool of = msb<T>(a) != cf;  // OF is computed before the rotation
  for (unsigned s = 0; s < k; ++s) {
    const bool out = r & 1;
    r = static_cast<T>(r >> 1 | static_cast<T>(cf) << (kBits<T> - 1));
    cf = out;
  }
  c.set<T>(i, i.op[0], r);
  c.set_flags(CF | OF, (cf ? uint64_t{CF} : 0) | (of ? uint64_t{OF} : 0));
}

// SHLD/SHRD: shift op0, filling from op1. With a 16-bit operand and a count above 16 the result
// and flags are undefined (SDM); the core shifts the 32-bit concatenation.
template <class T> void shld(Core& c, const Insn& i) {
  const T a = c.get<T>(i, i.op[0]), b = c.get<T>(i, i.op[1]);
  const unsigned n = shift_count<T>(c, i);
  if (n == 0) return;
  T r;
  bool cf;
  if constexpr (sizeof(T) == 2) {
    const uint64_t wide = (uint64_t{a} << 16 | b) << n;
    r = static_cast<T>(wide >> 16);
    cf = (wide >> 32) & 1;
  } else {
    r = static_cast<T>(a << n | b >> (kBits<T> - n));
    cf = (a >> (kBits<T> - n)) & 1;
  }
  c.set<T>(i, i.op[0], r);
  c.set_flags_result<T>(r, (cf ? uint64_t{CF} : 0) | ((msb<T>(r) != msb<T>(a)) ? uint64_t{OF} : 0));
}

template <class T> void shrd(Core& c, const Insn& i) {
  const T a = c.get<T>(i, i.op[0]), b = c.get<T>(i, i.op[1]);
  const unsigned n = shift_count<T>(c, i);
  if (n == 0) return;
  T r;
  bool cf;
  if constexpr (sizeof(T) == 2) {
    const uint64_t wide = uint64_t{b} << 16 | a;
    r = static_cast<T>(wide >> n);
    cf = (wide >> (n - 1)) & 1;
  } else {
    r = static_cast<T>(a >> n | b << (kBits<T> - n));
    cf = (a >> (n - 1)) & 1;
  }
  c.set<T>(i, i.op[0], r);
  c.set_flags_result<T>(r, (cf ? uint64_t{CF} : 0) | ((msb<T>(r) != msb<T>(a)) ? uint64_t{OF} : 0));
}

}  // namespace

void register_shift(Dispatch& d) {
  d.add_sized(ZYDIS_MNEMONIC_SHL, InsnClass::Alu, PGSIM_SIZED(shl));
  d.add_forms(ZYDIS_MNEMONIC_SHL, PGSIM_FORMS(shl));
  d.add_sized(ZYDIS_MNEMONIC_SHR, InsnClass::Alu, PGSIM_SIZED(shr));
  d.add_forms(ZYDIS_MNEMONIC_SHR, PGSIM_FORMS(shr));
  d.add_sized(ZYDIS_MNEMONIC_SAR, InsnClass::Alu, PGSIM_SIZED(sar));
  d.add_forms(ZYDIS_MNEMONIC_SAR, PGSIM_FORMS(sar));
  d.add_sized(ZYDIS_MNEMONIC_ROL, InsnClass::Alu, PGSIM_SIZED(rol));
  d.add_sized(ZYDIS_MNEMONIC_ROR, InsnClass::Alu, PGSIM_SIZED(ror));
  d.add_sized(ZYDIS_MNEMONIC_RCL, InsnClass::Alu, PGSIM_SIZED(rcl));
  d.add_sized(ZYDIS_MNEMONIC_RCR, InsnClass::Alu, PGSIM_SIZED(rcr));
  d.add_sized(ZYDIS_MNEMONIC_SHLD, InsnClass::Alu, nullptr, &shld<uint16_t>, &shld<uint32_t>, &shld<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_SHRD, InsnClass::Alu, nullptr, &shrd<uint16_t>, &shrd<uint32_t>, &shrd<uint64_t>);
}

}  // namespace pgsim::isa::integer

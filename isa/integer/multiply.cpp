// MUL, IMUL (one, two and three operands), DIV, IDIV (SDM vol. 2). Division errors raise #DE.
#include <type_traits>

#include "isa/integer/semantics.h"

namespace pgsim::isa::integer {
namespace {

__extension__ typedef unsigned __int128 uint128;
__extension__ typedef __int128 int128;

// The double-width type of an operand size.
template <class T> struct Wide;
template <> struct Wide<uint8_t> { using u = uint16_t; using s = int16_t; };
template <> struct Wide<uint16_t> { using u = uint32_t; using s = int32_t; };
template <> struct Wide<uint32_t> { using u = uint64_t; using s = int64_t; };
template <> struct Wide<uint64_t> { using u = uint128; using s = int128; };
template <class T> using WideU = typename Wide<T>::u;
template <class T> using WideS = typename Wide<T>::s;

// The implicit double-width accumulator: AX for bytes, else rDX:rAX.
template <class T> WideU<T> accumulator(const Core& c) {
  if constexpr (sizeof(T) == 1) return c.gpr<uint16_t>(RAX);
  else return static_cast<WideU<T>>(c.gpr<T>(RAX)) | static_cast<WideU<T>>(c.gpr<T>(RDX)) << kBits<T>;
}

// Stores a low/high pair into AL:AH (bytes) or rAX:rDX.
template <class T> void set_accumulator(Core& c, T low, T high) {
  if constexpr (sizeof(T) == 1) {
    c.set_gpr<uint16_t>(RAX, static_cast<uint16_t>(low | high << 8));
  } else {
    c.set_gpr<T>(RAX, low);
    c.set_gpr<T>(RDX, high);
  }
}

// MUL and IMUL set CF = OF = (the product does not fit its lower half) and leave SF, ZF, AF and PF
// undefined. Here SF, ZF and PF follow the lower half and AF is cleared, as QEMU does (after the
// Pentium 4) and Bochs too: the flags stay lazy, and the guest sees what it sees under QEMU.

// MUL: CF = OF = (upper half != 0).
template <class T> void mul(Core& c, const Insn& i) {
  const T src = c.get<T>(i, i.op[0]);
  const WideU<T> p = static_cast<WideU<T>>(c.gpr<T>(RAX)) * src;
  const T high = static_cast<T>(p >> kBits<T>);
  set_accumulator<T>(c, static_cast<T>(p), high);
  c.set_flags_result<T>(static_cast<T>(p), high ? uint64_t{CF | OF} : 0);
}

// Signed product of two T values and whether it fits in T.
template <class T> T signed_product(T a, T b, bool* overflow) {
  const WideS<T> p = static_cast<WideS<T>>(static_cast<Signed<T>>(a)) * static_cast<Signed<T>>(b);
  const T r = static_cast<T>(p);
  *overflow = p != static_cast<WideS<T>>(static_cast<Signed<T>>(r));
  return r;
}

// IMUL: one operand (rDX:rAX = rAX * r/m), two (r = r * r/m) or three (r = r/m * imm). F: the
// form of a two-operand IMUL (only two-operand forms are registered for it).
template <class T, class F = AnyForm> void imul(Core& c, const Insn& i) {
  bool overflow = false;
  T low;
  if (std::is_same_v<F, AnyForm> && i.num_ops == 1) {
    const T src = c.get<T>(i, i.op[0]);
    const WideS<T> p = static_cast<WideS<T>>(static_cast<Signed<T>>(c.gpr<T>(RAX))) * static_cast<Signed<T>>(src);
    low = static_cast<T>(p);
    set_accumulator<T>(c, low, static_cast<T>(static_cast<WideU<T>>(p) >> kBits<T>));
    overflow = p != static_cast<WideS<T>>(static_cast<Signed<T>>(low));
  } else if (std::is_same_v<F, AnyForm> && i.num_ops == 3) {
    low = signed_product<T>(c.get<T>(i, i.op[1]), c.get<T>(i, i.op[2]), &overflow);
    c.set<T>(i, i.op[0], low);
  } else {
    low = signed_product<T>(c.get<T, F::op0>(i, i.op[0]), c.get<T, F::op1>(i, i.op[1]), &overflow);
    c.set<T, F::op0>(i, i.op[0], low);
  }
  c.set_flags_result<T>(low, overflow ? uint64_t{CF | OF} : 0);
}

// DIV: #DE when the divisor is 0 or the quotient does not fit; flags undefined (unchanged). The
// #DE is raised (Core::raise), without unwinding.
template <class T> void div(Core& c, const Insn& i) {
  const T divisor = c.get<T>(i, i.op[0]);
  if (divisor == 0) return c.raise(Fault{DE});
  const WideU<T> dividend = accumulator<T>(c);
  if ((dividend >> kBits<T>) == 0) {  // the usual case (RDX = 0): one native division, no wide one
    const T low = static_cast<T>(dividend);
    set_accumulator<T>(c, static_cast<T>(low / divisor), static_cast<T>(low % divisor));
    return;
  }
  const WideU<T> q = dividend / divisor;
  if (q > static_cast<T>(~T(0))) return c.raise(Fault{DE});
  set_accumulator<T>(c, static_cast<T>(q), static_cast<T>(dividend % divisor));
}

template <class T> void idiv(Core& c, const Insn& i) {
  const Signed<T> divisor = static_cast<Signed<T>>(c.get<T>(i, i.op[0]));
  if (divisor == 0) return c.raise(Fault{DE});
  const WideS<T> dividend = static_cast<WideS<T>>(accumulator<T>(c));
  constexpr WideS<T> kMin = static_cast<WideS<T>>(static_cast<WideU<T>>(1) << (2 * kBits<T> - 1));
  if (divisor == -1 && dividend == kMin) return c.raise(Fault{DE});  // the quotient overflows even the wide type
  const WideS<T> q = dividend / divisor;
  if (q > std::numeric_limits<Signed<T>>::max() || q < std::numeric_limits<Signed<T>>::min())
    return c.raise(Fault{DE});
  set_accumulator<T>(c, static_cast<T>(q), static_cast<T>(dividend % divisor));
}

}  // namespace

void register_multiply(Dispatch& d) {
  d.add_sized(ZYDIS_MNEMONIC_MUL, InsnClass::Mul, PGSIM_SIZED(mul));
  d.add_sized(ZYDIS_MNEMONIC_IMUL, InsnClass::Mul, PGSIM_SIZED(imul));
  d.add_forms(ZYDIS_MNEMONIC_IMUL, PGSIM_FORMS(imul));
  d.add_sized(ZYDIS_MNEMONIC_DIV, InsnClass::Div, PGSIM_SIZED(div));
  d.add_sized(ZYDIS_MNEMONIC_IDIV, InsnClass::Div, PGSIM_SIZED(idiv));
}

}  // namespace pgsim::isa::integer

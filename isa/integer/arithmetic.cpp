// ADD, ADC, SUB, SBB, CMP, AND, OR, XOR, TEST, INC, DEC, NEG, NOT (SDM vol. 2).
#include "isa/integer/semantics.h"

namespace pgsim::isa::integer {
namespace {

template <class T, class F = AnyForm> void add(Core& c, const Insn& i) {
  const T a = c.get<T, F::op0>(i, i.op[0]), b = c.get<T, F::op1>(i, i.op[1]);
  const T r = a + b;
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_add<T>(a, b, r);
}

template <class T, class F = AnyForm> void adc(Core& c, const Insn& i) {
  const T a = c.get<T, F::op0>(i, i.op[0]), b = c.get<T, F::op1>(i, i.op[1]);
  const bool cin = c.flag(CF);
  const T r = a + b + cin;
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_add<T>(a, b, r, cin);
}

template <class T, class F = AnyForm> void sub(Core& c, const Insn& i) {
  const T a = c.get<T, F::op0>(i, i.op[0]), b = c.get<T, F::op1>(i, i.op[1]);
  const T r = a - b;
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_sub<T>(a, b, r);
}

template <class T, class F = AnyForm> void sbb(Core& c, const Insn& i) {
  const T a = c.get<T, F::op0>(i, i.op[0]), b = c.get<T, F::op1>(i, i.op[1]);
  const bool cin = c.flag(CF);
  const T r = a - b - cin;
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_sub<T>(a, b, r, cin);
}

template <class T, class F = AnyForm> void cmp(Core& c, const Insn& i) {
  const T a = c.get<T, F::op0>(i, i.op[0]), b = c.get<T, F::op1>(i, i.op[1]);
  c.set_flags_sub<T>(a, b, static_cast<T>(a - b));
}

// AND, OR, XOR, TEST: OF = CF = 0; SF, ZF, PF from the result; AF undefined (cleared here).
template <class T, class F = AnyForm> void and_(Core& c, const Insn& i) {
  const T r = c.get<T, F::op0>(i, i.op[0]) & c.get<T, F::op1>(i, i.op[1]);
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_result<T>(r);
}

template <class T, class F = AnyForm> void or_(Core& c, const Insn& i) {
  const T r = c.get<T, F::op0>(i, i.op[0]) | c.get<T, F::op1>(i, i.op[1]);
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_result<T>(r);
}

template <class T, class F = AnyForm> void xor_(Core& c, const Insn& i) {
  const T r = c.get<T, F::op0>(i, i.op[0]) ^ c.get<T, F::op1>(i, i.op[1]);
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_result<T>(r);
}

template <class T, class F = AnyForm> void test(Core& c, const Insn& i) {
  c.set_flags_result<T>(static_cast<T>(c.get<T, F::op0>(i, i.op[0]) & c.get<T, F::op1>(i, i.op[1])));
}

// INC and DEC leave CF unchanged.
template <class T, class F = AnyForm> void inc(Core& c, const Insn& i) {
  const T a = c.get<T, F::op0>(i, i.op[0]);
  const T r = a + 1;
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_inc<T>(a, r);
}

template <class T, class F = AnyForm> void dec(Core& c, const Insn& i) {
  const T a = c.get<T, F::op0>(i, i.op[0]);
  const T r = a - 1;
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_dec<T>(a, r);
}

// NEG: CF = (source != 0).
template <class T, class F = AnyForm> void neg(Core& c, const Insn& i) {
  const T a = c.get<T, F::op0>(i, i.op[0]);
  const T r = T(0) - a;
  c.set<T, F::op0>(i, i.op[0], r);
  c.set_flags_sub<T>(0, a, r);
}

template <class T, class F = AnyForm> void not_(Core& c, const Insn& i) {
  c.set<T, F::op0>(i, i.op[0], static_cast<T>(~c.get<T, F::op0>(i, i.op[0])));
}

}  // namespace

void register_arithmetic(Dispatch& d) {
  d.add_sized(ZYDIS_MNEMONIC_ADD, InsnClass::Alu, PGSIM_SIZED(add));
  d.add_forms(ZYDIS_MNEMONIC_ADD, PGSIM_FORMS(add));
  d.add_sized(ZYDIS_MNEMONIC_ADC, InsnClass::Alu, PGSIM_SIZED(adc));
  d.add_forms(ZYDIS_MNEMONIC_ADC, PGSIM_FORMS(adc));
  d.add_sized(ZYDIS_MNEMONIC_SUB, InsnClass::Alu, PGSIM_SIZED(sub));
  d.add_forms(ZYDIS_MNEMONIC_SUB, PGSIM_FORMS(sub));
  d.add_sized(ZYDIS_MNEMONIC_SBB, InsnClass::Alu, PGSIM_SIZED(sbb));
  d.add_forms(ZYDIS_MNEMONIC_SBB, PGSIM_FORMS(sbb));
  d.add_sized(ZYDIS_MNEMONIC_CMP, InsnClass::Alu, PGSIM_SIZED(cmp));
  d.add_forms(ZYDIS_MNEMONIC_CMP, PGSIM_FORMS(cmp));
  d.add_sized(ZYDIS_MNEMONIC_AND, InsnClass::Alu, PGSIM_SIZED(and_));
  d.add_forms(ZYDIS_MNEMONIC_AND, PGSIM_FORMS(and_));
  d.add_sized(ZYDIS_MNEMONIC_OR, InsnClass::Alu, PGSIM_SIZED(or_));
  d.add_forms(ZYDIS_MNEMONIC_OR, PGSIM_FORMS(or_));
  d.add_sized(ZYDIS_MNEMONIC_XOR, InsnClass::Alu, PGSIM_SIZED(xor_));
  d.add_forms(ZYDIS_MNEMONIC_XOR, PGSIM_FORMS(xor_));
  d.add_sized(ZYDIS_MNEMONIC_TEST, InsnClass::Alu, PGSIM_SIZED(test));
  d.add_forms(ZYDIS_MNEMONIC_TEST, PGSIM_FORMS(test));
  d.add_sized(ZYDIS_MNEMONIC_INC, InsnClass::Alu, PGSIM_SIZED(inc));
  d.add_forms(ZYDIS_MNEMONIC_INC, PGSIM_UNARY_FORMS(inc));
  d.add_sized(ZYDIS_MNEMONIC_DEC, InsnClass::Alu, PGSIM_SIZED(dec));
  d.add_forms(ZYDIS_MNEMONIC_DEC, PGSIM_UNARY_FORMS(dec));
  d.add_sized(ZYDIS_MNEMONIC_NEG, InsnClass::Alu, PGSIM_SIZED(neg));
  d.add_forms(ZYDIS_MNEMONIC_NEG, PGSIM_UNARY_FORMS(neg));
  d.add_sized(ZYDIS_MNEMONIC_NOT, InsnClass::Alu, PGSIM_SIZED(not_));
  d.add_forms(ZYDIS_MNEMONIC_NOT, PGSIM_UNARY_FORMS(not_));
}

}  // namespace pgsim::isa::integer

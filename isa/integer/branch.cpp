// Near JMP, Jcc, CALL, RET, LOOP/LOOPE/LOOPNE, JCXZ/JECXZ/JRCXZ (SDM vol. 2). Far forms are
// system instructions (isa/system/).
#include "isa/integer/semantics.h"

namespace pgsim::isa::integer {
namespace {

// The target of a relative operand or the value of an r/m operand; false when reading a memory
// operand raised its page fault (Core::load).
template <class T> bool target(Core& c, const Insn& i, uint64_t* to) {
  const Operand& o = i.op[0];
  if (o.kind == OpKind::Rel) {
    *to = c.next_rip() + static_cast<uint64_t>(o.value);
    return true;
  }
  if (o.kind == OpKind::Reg) {
    *to = c.reg<T>(o);
    return true;
  }
  T value;
  if (!c.load<T>(i, o, &value)) return false;
  *to = value;
  return true;
}

template <class T> void jmp(Core& c, const Insn& i) {
  uint64_t to;
  if (target<T>(c, i, &to)) c.jump(to, sizeof(T));
}

template <unsigned CC> void jcc(Core& c, const Insn& i) {
  if (c.condition<CC>()) c.jump(c.next_rip() + static_cast<uint64_t>(i.op[0].value), i.opsize);
}

// CALL: the target is read (and checked) before the return address is pushed.
// A page fault on the push is raised (Core::push_or_raise), which takes the jump back.
template <class T> void call(Core& c, const Insn& i) {
  const uint64_t return_address = c.next_rip();
  uint64_t to;
  if (!target<T>(c, i, &to)) return;
  c.jump(to, sizeof(T));
  c.push_or_raise<T>(static_cast<T>(return_address));
}

// RET / RET imm16: pop the return address, then release imm16 bytes of parameters.
template <class T> void ret(Core& c, const Insn& i) {
  const uint64_t old_rsp = c.state().gpr[RSP];
  T to;
  if (!c.pop_or_raise<T>(&to)) return;
  try {
    c.jump(to, sizeof(T));
  } catch (...) {
    c.state().gpr[RSP] = old_rsp;
    throw;
  }
  if (i.num_ops == 1) {
    const unsigned ss = c.stack_size();
    c.set_gpr_sized(RSP, c.state().gpr[RSP] + static_cast<uint16_t>(i.op[0].value), ss);
  }
}

// LOOP, LOOPE, LOOPNE: the count register has the address size.
enum class LoopKind { Always, WhileEqual, WhileNotEqual };
template <LoopKind kKind> void loop(Core& c, const Insn& i) {
  const uint64_t count = (c.state().gpr[RCX] - 1) & Core::size_mask(i.addrsize);
  bool taken = count != 0;
  if constexpr (kKind == LoopKind::WhileEqual) taken = taken && c.flag(ZF);
  if constexpr (kKind == LoopKind::WhileNotEqual) taken = taken && !c.flag(ZF);
  if (taken) c.jump(c.next_rip() + static_cast<uint64_t>(i.op[0].value), i.opsize);
  c.set_gpr_sized(RCX, count, i.addrsize);
}

// JCXZ / JECXZ / JRCXZ: jump if the count register of that width is zero.
template <class T> void jump_if_count_zero(Core& c, const Insn& i) {
  if (c.gpr<T>(RCX) == 0) c.jump(c.next_rip() + static_cast<uint64_t>(i.op[0].value), i.opsize);
}

}  // namespace

void register_branch(Dispatch& d) {
  d.add_sized(ZYDIS_MNEMONIC_JMP, InsnClass::Branch, nullptr, &jmp<uint16_t>, &jmp<uint32_t>, &jmp<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_CALL, InsnClass::Branch, nullptr, &call<uint16_t>, &call<uint32_t>, &call<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_RET, InsnClass::Branch, nullptr, &ret<uint16_t>, &ret<uint32_t>, &ret<uint64_t>);
  // By condition code (the low nibble of the opcode, Insn::condition).
  d.add(ZYDIS_MNEMONIC_JO, InsnClass::Branch, &jcc<0x0>);
  d.add(ZYDIS_MNEMONIC_JNO, InsnClass::Branch, &jcc<0x1>);
  d.add(ZYDIS_MNEMONIC_JB, InsnClass::Branch, &jcc<0x2>);
  d.add(ZYDIS_MNEMONIC_JNB, InsnClass::Branch, &jcc<0x3>);
  d.add(ZYDIS_MNEMONIC_JZ, InsnClass::Branch, &jcc<0x4>);
  d.add(ZYDIS_MNEMONIC_JNZ, InsnClass::Branch, &jcc<0x5>);
  d.add(ZYDIS_MNEMONIC_JBE, InsnClass::Branch, &jcc<0x6>);
  d.add(ZYDIS_MNEMONIC_JNBE, InsnClass::Branch, &jcc<0x7>);
  d.add(ZYDIS_MNEMONIC_JS, InsnClass::Branch, &jcc<0x8>);
  d.add(ZYDIS_MNEMONIC_JNS, InsnClass::Branch, &jcc<0x9>);
  d.add(ZYDIS_MNEMONIC_JP, InsnClass::Branch, &jcc<0xA>);
  d.add(ZYDIS_MNEMONIC_JNP, InsnClass::Branch, &jcc<0xB>);
  d.add(ZYDIS_MNEMONIC_JL, InsnClass::Branch, &jcc<0xC>);
  d.add(ZYDIS_MNEMONIC_JNL, InsnClass::Branch, &jcc<0xD>);
  d.add(ZYDIS_MNEMONIC_JLE, InsnClass::Branch, &jcc<0xE>);
  d.add(ZYDIS_MNEMONIC_JNLE, InsnClass::Branch, &jcc<0xF>);
  d.add(ZYDIS_MNEMONIC_LOOP, InsnClass::Branch, &loop<LoopKind::Always>);
  d.add(ZYDIS_MNEMONIC_LOOPE, InsnClass::Branch, &loop<LoopKind::WhileEqual>);
  d.add(ZYDIS_MNEMONIC_LOOPNE, InsnClass::Branch, &loop<LoopKind::WhileNotEqual>);
  d.add(ZYDIS_MNEMONIC_JCXZ, InsnClass::Branch, &jump_if_count_zero<uint16_t>);
  d.add(ZYDIS_MNEMONIC_JECXZ, InsnClass::Branch, &jump_if_count_zero<uint32_t>);
  d.add(ZYDIS_MNEMONIC_JRCXZ, InsnClass::Branch, &jump_if_count_zero<uint64_t>);
}

}  // namespace pgsim::isa::integer

// PUSH, POP, ENTER, LEAVE (SDM vol. 2). The stack-pointer width comes from the mode and SS.B.
#include <algorithm>

#include "isa/integer/semantics.h"

namespace pgsim::isa::integer {
namespace {

// PUSH r/m/imm: the operand is read before RSP changes (PUSH RSP pushes the old value). The
// push's page fault is raised (Core::push_or_raise).
template <class T, class F = AnyForm> void push(Core& c, const Insn& i) {
  c.push_or_raise<T>(c.get<T, F::op0>(i, i.op[0]));
}

// POP r/m: a memory destination based on RSP uses the incremented RSP (SDM vol. 2, "POP");
// if its write faults, RSP is restored. The pop's page fault is raised (Core::pop_or_raise).
template <class T, class F = AnyForm> void pop(Core& c, const Insn& i) {
  const uint64_t old_rsp = c.state().gpr[RSP];
  T v;
  if (!c.pop_or_raise<T>(&v)) return;
  if (F::op0 == OpKind::Reg || (F::op0 == kKindAtRunTime && i.op[0].kind == OpKind::Reg)) {
    c.set_reg<T>(i.op[0], v);
    return;
  }
  try {
    c.set<T, F::op0>(i, i.op[0], v);
  } catch (...) {
    c.state().gpr[RSP] = old_rsp;
    throw;
  }
}

// PUSH r64 or imm and POP r64 in runs (prologues, epilogues, register saves, interrupt frames).
// Where the soft TLB maps the stack's page directly (Core::direct_span), a push or pop within that
// page cannot fault, and the handler completes the instruction and those the block loop linked
// after it with the same handler (Core::linked_room), in order, as far as the page goes: with the
// registers, memory and counts they leave one by one. Anything else takes the per-access path.
constexpr uint64_t kMaxStackRun = 16;
using RegForm = Form<OpKind::Reg, OpKind::None>;
using ImmForm = Form<OpKind::Imm, OpKind::None>;

void push_run(Core& c, const Insn& first) {
  const uint64_t rsp = c.state().gpr[RSP];
  const Core::DirectSpan span = c.direct_span(SS, rsp - 8, AccessKind::Write);
  if (span.bytes < 8) {
    if (first.op[0].kind == OpKind::Imm) return push<uint64_t, ImmForm>(c, first);
    return push<uint64_t, RegForm>(c, first);
  }
  // The pushes that stay in the page: the k-th (from 0) writes 8k bytes below the first.
  const uint64_t limit = std::min({kMaxStackRun, c.linked_room(), ((rsp - 8) & 0xFFF) / 8 + 1});
  uint64_t n = 0, bytes = 0;
  for (const Insn* i = &first;;) {
    const Operand& o = i->op[0];
    // PUSH RSP: the value before this push.
    const uint64_t value = o.kind == OpKind::Imm ? static_cast<uint64_t>(o.value) : c.state().gpr[o.reg];
    std::memcpy(span.host - 8 * n, &value, 8);
    c.state().gpr[RSP] = rsp - 8 * ++n;
    i = i->next;
    if (n == limit || !i || i->handler != first.handler) break;
    bytes += i->length;
  }
  c.count_dtlb_hits(n);
  c.retire_linked_run(first, n, bytes);
}

void pop_run(Core& c, const Insn& first) {
  const uint64_t rsp = c.state().gpr[RSP];
  const Core::DirectSpan span = c.direct_span(SS, rsp, AccessKind::Read);
  if (span.bytes < 8) return pop<uint64_t, RegForm>(c, first);
  const uint64_t limit = std::min({kMaxStackRun, c.linked_room(), span.bytes / 8});
  uint64_t n = 0, bytes = 0;
  for (const Insn* i = &first;;) {
    uint64_t value;
    std::memcpy(&value, span.host + 8 * n, 8);
    c.state().gpr[RSP] = rsp + 8 * ++n;
    c.state().gpr[i->op[0].reg] = value;  // POP RSP: RSP takes the value read...
    if (i->op[0].reg == RSP) break;        // ...and the pops after it read from there
    i = i->next;
    if (n == limit || !i || i->handler != first.handler) break;
    bytes += i->length;
  }
  c.count_dtlb_hits(n);
  c.retire_linked_run(first, n, bytes);
}

// ENTER imm16, imm8: push rBP, copy `level - 1` frame pointers, then allocate the frame.
template <class T> void enter(Core& c, const Insn& i) {
  const uint64_t size = static_cast<uint16_t>(i.op[0].value);
  const unsigned level = static_cast<uint8_t>(i.op[1].value) & 31;
  const unsigned ss = c.stack_size();
  const uint64_t old_rsp = c.state().gpr[RSP], old_rbp = c.state().gpr[RBP];
  try {
    c.push<T>(c.gpr<T>(RBP));
    const uint64_t frame = c.state().gpr[RSP] & Core::size_mask(ss);
    uint64_t rbp = old_rbp;
    for (unsigned k = 1; k < level; ++k) {
      rbp = (rbp - sizeof(T)) & Core::size_mask(ss);
      c.push<T>(c.read<T>(SS, rbp));
    }
    if (level > 0) c.push<T>(static_cast<T>(frame));
    const uint64_t new_rsp = (c.state().gpr[RSP] - size) & Core::size_mask(ss);
    c.read<uint8_t>(SS, new_rsp);  // the allocated frame must be addressable (SDM: #SS / #PF)
    c.set_gpr_sized(RBP, frame, sizeof(T) < ss ? sizeof(T) : ss);
    c.set_gpr_sized(RSP, new_rsp, ss);
  } catch (...) {
    c.state().gpr[RSP] = old_rsp;
    c.state().gpr[RBP] = old_rbp;
    throw;
  }
}

// LEAVE: rSP = rBP, then pop rBP.
template <class T> void leave(Core& c, const Insn&) {
  const uint64_t old_rsp = c.state().gpr[RSP];
  c.set_gpr_sized(RSP, c.state().gpr[RBP], c.stack_size());
  try {
    c.set_gpr<T>(RBP, c.pop<T>());
  } catch (...) {
    c.state().gpr[RSP] = old_rsp;
    throw;
  }
}

}  // namespace

void register_stack(Dispatch& d) {
  d.add_sized(ZYDIS_MNEMONIC_PUSH, InsnClass::Store, nullptr, &push<uint16_t>, &push<uint32_t>, &push<uint64_t>);
  FormHandlers push_forms =
      unary_forms(PGSIM_FORM(push, Reg, None), PGSIM_FORM(push, Mem, None), PGSIM_FORM(push, Imm, None));
  push_forms[static_cast<unsigned>(OperandForm::Reg)][3] = &push_run;
  push_forms[static_cast<unsigned>(OperandForm::Imm)][3] = &push_run;
  d.add_forms(ZYDIS_MNEMONIC_PUSH, push_forms);
  d.add_sized(ZYDIS_MNEMONIC_POP, InsnClass::Load, nullptr, &pop<uint16_t>, &pop<uint32_t>, &pop<uint64_t>);
  FormHandlers pop_forms = PGSIM_UNARY_FORMS(pop);
  pop_forms[static_cast<unsigned>(OperandForm::Reg)][3] = &pop_run;
  d.add_forms(ZYDIS_MNEMONIC_POP, pop_forms);
  d.add_sized(ZYDIS_MNEMONIC_ENTER, InsnClass::Store, nullptr, &enter<uint16_t>, &enter<uint32_t>, &enter<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_LEAVE, InsnClass::Load, nullptr, &leave<uint16_t>, &leave<uint32_t>, &leave<uint64_t>);
}

}  // namespace pgsim::isa::integer

// Far transfers (JMP/CALL/RET far, call gates), software interrupts, IRET, SYSCALL/SYSRET,
// SYSENTER/SYSEXIT, segment-register moves and the descriptor queries LAR/LSL/VERR/VERW/ARPL
// (Intel SDM vol. 2 instruction pages; vol. 3, 5.8 call gates, 6.14 IA-32e interrupts).
#include <Zydis/Zydis.h>

#include <string>

#include "isa/system/descriptors.h"
#include "isa/system/events.h"
#include "isa/system/paging.h"
#include "isa/system/semantics.h"

namespace pgsim::isa::system {
namespace {

// Hidden parts of the flat segments SYSCALL/SYSRET and SYSENTER/SYSEXIT load (SDM vol. 2).
constexpr uint16_t kAttrPresent = 0x80, kAttrCodeOrData = 0x10, kAttrL = 0x2000, kAttrDB = 0x4000, kAttrG = 0x8000;
Segment flat_code(uint16_t selector, unsigned dpl, bool long64) {
  uint16_t attr = 0xB | kAttrCodeOrData | static_cast<uint16_t>(dpl << 5) | kAttrPresent | kAttrG |
                  (long64 ? kAttrL : kAttrDB);
  return {selector, 0, 0xFFFFFFFF, attr};
}
Segment flat_stack(uint16_t selector, unsigned dpl) {
  uint16_t attr = 0x3 | kAttrCodeOrData | static_cast<uint16_t>(dpl << 5) | kAttrPresent | kAttrDB | kAttrG;
  return {selector, 0, 0xFFFFFFFF, attr};
}

bool protected_mode(const CpuState& s) { return (s.cr0 & CR0_PE) && !(s.rflags & VM); }

// ---- Far pointers and code-segment checks --------------------------------------------------------

struct FarPointer {
  uint16_t selector;
  uint64_t offset;
};

// m16:16/32/64 in memory: the offset at the operand size, then the selector.
FarPointer read_far_pointer(Core& core, const Insn& i, const Operand& o) {
  const auto seg = static_cast<SegReg>(o.seg);
  const uint64_t ea = core.effective_address(i, o);
  uint64_t offset;
  switch (i.opsize) {
    case 2: offset = core.read<uint16_t>(seg, ea); break;
    case 4: offset = core.read<uint32_t>(seg, ea); break;
    default: offset = core.read<uint64_t>(seg, ea); break;
  }
  return {core.read<uint16_t>(seg, ea + i.opsize), offset};
}

// The target of a far JMP/CALL: ptr16:16/32 or m16:16/32/64.
FarPointer far_operand(Core& core, const Insn& i) {
  const Operand& o = i.op[0];
  if (o.kind == OpKind::Ptr) return {o.selector, static_cast<uint64_t>(o.value) & Core::size_mask(i.opsize)};
  return read_far_pointer(core, i, o);
}

// The checks of a direct far JMP/CALL to a code segment (SDM vol. 2, JMP and CALL).
void check_direct_code(const Descriptor& d, uint16_t sel, unsigned cpl, bool ia32e) {
  if (d.conforming() ? d.dpl() > cpl : ((sel & 3u) > cpl || d.dpl() != cpl)) throw selector_fault(GP, sel);
  if (!d.present()) throw selector_fault(NP, sel);
  if (ia32e && d.l() && d.db()) throw selector_fault(GP, sel);
}

// The target offset of a far transfer into `d`, checked against its limit outside 64-bit code.
uint64_t checked_target(const Descriptor& d, uint64_t offset, unsigned opsize, bool ia32e, const CpuState& s) {
  if (ia32e && d.l()) {
    if (!is_canonical(s, offset)) throw Fault::gp(0);
    return offset;
  }
  offset &= opsize == 2 ? 0xFFFF : 0xFFFFFFFF;
  if (offset > d.limit()) throw Fault::gp(0);
  return offset;
}

// A call gate's descriptor and target code segment, with the gate checks (SDM vol. 3, 5.8.4).
struct GateTarget {
  Descriptor gate;
  uint16_t code_sel;
  Descriptor code;
  unsigned size;  // the gate's operand size: 2, 4 or 8
};
GateTarget open_call_gate(Core& core, uint16_t gate_sel, Descriptor gate) {
  const CpuState& s = core.state();
  const bool ia32e = s.long_mode_active();
  const unsigned cpl = s.cpl();
  if (ia32e) gate = read_descriptor(core, gate_sel, GP, true);
  if (gate.dpl() < cpl || gate.dpl() < (gate_sel & 3u)) throw selector_fault(GP, gate_sel);
  if (!gate.present()) throw selector_fault(NP, gate_sel);
  if (ia32e && ((gate.hi >> 40) & 0x1F) != 0) throw selector_fault(GP, gate_sel);  // upper type must be 0
  const uint16_t code_sel = gate.gate_selector();
  if (is_null_selector(code_sel)) throw Fault::gp(0);
  Descriptor code = read_descriptor(core, code_sel);
  if (!code.code() || code.dpl() > cpl) throw selector_fault(GP, code_sel);
  if (!code.present()) throw selector_fault(NP, code_sel);
  if (ia32e && (!code.l() || code.db())) throw selector_fault(GP, code_sel);
  const unsigned size = ia32e ? 8 : (gate.type() == kCallGate ? 4 : 2);
  return {gate, code_sel, code, size};
}

uint64_t gate_offset(const GateTarget& g) {
  return g.size == 8 ? g.gate.gate_offset() : g.gate.gate_offset() & (g.size == 4 ? 0xFFFFFFFF : 0xFFFF);
}

// Stops the core with a message: the transfer does not happen and nothing else is executed.
void task_switch_unsupported(Core& core, const char* what, uint16_t sel) {
  core.shutdown(std::string(what) + " to selector " + std::to_string(sel) +
                " (a TSS or task gate): hardware task switching is not implemented");
}

bool is_call_gate(const Descriptor& d, bool ia32e) {
  return !d.s() && (d.type() == kCallGate || (!ia32e && d.type() == kCallGate16));
}
bool is_task(const Descriptor& d) {
  const unsigned t = d.type();
  return !d.s() && (t == kTaskGate || t == kTssAvailable || t == kTss16Available || t == kTssBusy || t == kTss16Busy);
}

// Real and virtual-8086 mode: CS base = selector * 16.
void real_mode_far(Core& core, uint16_t sel, uint64_t offset, unsigned opsize) {
  CpuState& s = core.state();
  s.seg[CS].selector = sel;
  s.seg[CS].base = uint64_t(sel) << 4;
  core.set_next_rip(offset & Core::size_mask(opsize));
}

// ---- JMP far ------------------------------------------------------------------------------------

void jmp_far(Core& core, const Insn& i) {
  if (apply_profile(core, i) == ProfileRule::Raised) return;
  const FarPointer p = far_operand(core, i);
  CpuState& s = core.state();
  if (!protected_mode(s)) return real_mode_far(core, p.selector, p.offset, i.opsize);
  const bool ia32e = s.long_mode_active();
  const unsigned cpl = s.cpl();
  if (is_null_selector(p.selector)) throw Fault::gp(0);
  Descriptor d = read_descriptor(core, p.selector);
  if (d.code()) {
    check_direct_code(d, p.selector, cpl, ia32e);
    const uint64_t target = checked_target(d, p.offset, i.opsize, ia32e, s);
    load_code_segment(core, p.selector, d, cpl);
    core.set_next_rip(target);
  } else if (is_call_gate(d, ia32e)) {
    GateTarget g = open_call_gate(core, p.selector, d);
    // JMP through a gate cannot change privilege.
    if (g.code.conforming() ? g.code.dpl() > cpl : g.code.dpl() != cpl) throw selector_fault(GP, g.code_sel);
    const uint64_t target = checked_target(g.code, gate_offset(g), g.size, ia32e, s);
    load_code_segment(core, g.code_sel, g.code, cpl);
    core.set_next_rip(target);
  } else if (is_task(d)) {
    task_switch_unsupported(core, "JMP far", p.selector);
  } else {
    throw selector_fault(GP, p.selector);
  }
}

// ---- CALL far -----------------------------------------------------------------------------------

// CALL's return address (CS, then RIP) on the current stack.
void push_return_address(Core& core, uint16_t cs, uint64_t rip, unsigned size, unsigned cpl, bool flat) {
  CpuState& s = core.state();
  FrameWriter w = frame_writer(core, s.seg[SS], s.gpr[RSP], cpl, 0, flat);
  w.push(cs, size);
  w.push(rip, size);
  set_stack_pointer(core, s.seg[SS], w.sp, flat);
}

void call_far(Core& core, const Insn& i) {
  if (apply_profile(core, i) == ProfileRule::Raised) return;
  const FarPointer p = far_operand(core, i);
  CpuState& s = core.state();
  const uint64_t return_rip = core.next_rip();
  const uint16_t old_cs = s.seg[CS].selector;
  if (!protected_mode(s)) {
    push_return_address(core, old_cs, return_rip, i.opsize, 0, false);
    return real_mode_far(core, p.selector, p.offset, i.opsize);
  }
  const bool ia32e = s.long_mode_active();
  const bool flat = core.long64();
  const unsigned cpl = s.cpl();
  if (is_null_selector(p.selector)) throw Fault::gp(0);
  Descriptor d = read_descriptor(core, p.selector);
  if (d.code()) {
    check_direct_code(d, p.selector, cpl, ia32e);
    const uint64_t target = checked_target(d, p.offset, i.opsize, ia32e, s);
    push_return_address(core, old_cs, return_rip, i.opsize, cpl, flat);
    load_code_segment(core, p.selector, d, cpl);
    core.set_next_rip(target);
    return;
  }
  if (is_task(d)) return task_switch_unsupported(core, "CALL far", p.selector);
  if (!is_call_gate(d, ia32e)) throw selector_fault(GP, p.selector);

  GateTarget g = open_call_gate(core, p.selector, d);
  const uint64_t target = checked_target(g.code, gate_offset(g), g.size, ia32e, s);
  const unsigned new_cpl = g.code.conforming() ? cpl : g.code.dpl();
  if (new_cpl == cpl) {  // same privilege: CS and the return address on the current stack
    push_return_address(core, old_cs, return_rip, g.size, cpl, flat);
    load_code_segment(core, g.code_sel, g.code, cpl);
    core.set_next_rip(target);
    return;
  }
  // More privilege (SDM vol. 3, 5.8.5): the inner stack comes from the TSS; the caller's SS:ESP,
  // the gate's parameters (32-bit gates) and CS:EIP are pushed there.
  const uint16_t old_ss = s.seg[SS].selector;
  const uint64_t old_sp = s.gpr[RSP];
  mark_accessed(core, g.code_sel, g.code);  // may fault: before any register changes
  if (ia32e) {
    const uint64_t rsp = tss64_rsp(core, new_cpl);
    if (!is_canonical(s, rsp)) throw Fault{SS_, true, 0, 0};
    FrameWriter w = frame_writer(core, s.seg[SS], rsp, new_cpl, 0, true);
    w.push(old_ss, 8);
    w.push(old_sp, 8);
    w.push(old_cs, 8);
    w.push(return_rip, 8);
    s.seg[SS] = null_segment(static_cast<uint16_t>(new_cpl));
    s.seg[SS].attr = static_cast<uint16_t>(new_cpl << 5);
    s.gpr[RSP] = w.sp;
  } else {
    uint16_t new_ss;
    uint32_t new_esp;
    tss32_stack(core, new_cpl, &new_ss, &new_esp);
    Descriptor ssd = check_stack_segment(core, new_ss, new_cpl, TS);
    Segment new_stack = ssd.to_segment(new_ss);
    FrameWriter w = frame_writer(core, new_stack, new_esp, new_cpl, new_ss & 0xFFFC, false);
    w.push(old_ss, g.size);
    w.push(old_sp, g.size);
    for (unsigned k = g.gate.gate_param_count(); k-- > 0;) w.push(stack_read(core, k * g.size, g.size), g.size);
    w.push(old_cs, g.size);
    w.push(return_rip, g.size);
    mark_accessed(core, new_ss, ssd);
    s.seg[SS] = ssd.to_segment(new_ss);
    set_stack_pointer(core, s.seg[SS], w.sp, false);
  }
  load_code_segment(core, g.code_sel, g.code, new_cpl);
  core.set_next_rip(target);
}

// ---- RET far and IRET -----------------------------------------------------------------------------

// The checks of the CS a far RET or IRET returns to (SDM vol. 2, RET: "RETURN-TO-..." and IRET).
Descriptor check_return_code(Core& core, uint16_t sel) {
  const unsigned cpl = core.state().cpl(), rpl = sel & 3u;
  if (is_null_selector(sel)) throw Fault::gp(0);
  Descriptor d = read_descriptor(core, sel);
  if (!d.code() || rpl < cpl) throw selector_fault(GP, sel);
  if (d.conforming() ? d.dpl() > rpl : d.dpl() != rpl) throw selector_fault(GP, sel);
  if (!d.present()) throw selector_fault(NP, sel);
  if (core.state().long_mode_active() && d.l() && d.db()) throw selector_fault(GP, sel);
  return d;
}

// The SS loaded by a return to an outer ring (or by IRET in 64-bit mode). A null SS is allowed
// when the return goes to 64-bit code below ring 3.
Segment check_return_stack(Core& core, uint16_t ss_sel, unsigned rpl, const Descriptor& code) {
  if (is_null_selector(ss_sel)) {
    if (core.state().long_mode_active() && code.l() && rpl != 3) {
      Segment ss = null_segment(ss_sel);
      ss.attr = static_cast<uint16_t>(rpl << 5);
      return ss;
    }
    throw Fault::gp(0);
  }
  if ((ss_sel & 3u) != rpl) throw selector_fault(GP, ss_sel);
  Descriptor ssd = read_descriptor(core, ss_sel);
  if (!ssd.writable() || ssd.dpl() != rpl) throw selector_fault(GP, ss_sel);
  if (!ssd.present()) throw selector_fault(SS_, ss_sel);
  mark_accessed(core, ss_sel, ssd);
  return ssd.to_segment(ss_sel);
}

void ret_far(Core& core, const Insn& i) {
  if (apply_profile(core, i) == ProfileRule::Raised) return;
  CpuState& s = core.state();
  const unsigned size = i.opsize;
  const uint64_t imm = (i.num_ops > 0 && i.op[0].kind == OpKind::Imm) ? static_cast<uint16_t>(i.op[0].value) : 0;
  const uint64_t rip = stack_read(core, 0, size);
  const uint16_t sel = static_cast<uint16_t>(stack_read(core, size, size));
  const bool flat = core.long64();
  if (!protected_mode(s)) {
    set_stack_pointer(core, s.seg[SS], s.gpr[RSP] + 2 * size + imm, false);
    return real_mode_far(core, sel, rip, size);
  }
  const unsigned cpl = s.cpl(), rpl = sel & 3u;
  Descriptor d = check_return_code(core, sel);
  const uint64_t target = checked_target(d, rip, size, s.long_mode_active(), s);
  if (rpl == cpl) {
    set_stack_pointer(core, s.seg[SS], s.gpr[RSP] + 2 * size + imm, flat);
    load_code_segment(core, sel, d, cpl);
    core.set_next_rip(target);
    return;
  }
  // Return to an outer ring: SS:ESP follow the return address and the popped parameters.
  const uint64_t new_sp = stack_read(core, 2 * size + imm, size);
  const uint16_t ss_sel = static_cast<uint16_t>(stack_read(core, 3 * size + imm, size));
  Segment ss = check_return_stack(core, ss_sel, rpl, d);
  load_code_segment(core, sel, d, rpl);
  s.seg[SS] = ss;
  set_stack_pointer(core, ss, new_sp + imm, s.long_mode_active() && d.l());
  nullify_inaccessible_data_segments(core);
  core.set_next_rip(target);
}

// The flags IRET restores, by the CPL it executes at (SDM vol. 2, IRET).
uint64_t iret_flag_mask(const CpuState& s, unsigned opsize) {
  uint64_t mask = CF | PF | AF | ZF | SF | TF | DF | OF | NT;
  if (opsize > 2) mask |= RF | AC | ID;
  const unsigned cpl = (s.cr0 & CR0_PE) ? s.cpl() : 0;
  if (cpl <= s.iopl()) mask |= IF;
  if (cpl == 0) mask |= IOPL | (opsize > 2 ? (VIF | VIP) : 0);
  return mask;
}

void iret(Core& core, const Insn& i) {
  CpuState& s = core.state();
  const unsigned size = i.opsize;
  if (s.rflags & VM) {
    if (s.iopl() < 3) throw Fault::gp(0);  // virtual-8086 without VME
  } else if (s.cr0 & CR0_PE) {
    if (apply_profile(core, i) == ProfileRule::Raised) return;
    if (s.rflags & NT) {
      if (s.long_mode_active()) throw Fault::gp(0);
      core.shutdown("IRET with NT=1 (return from a nested task): hardware task switching is not implemented");
      return;
    }
  }
  s.nmi_blocked = false;  // IRET ends the blocking of NMIs, even when it then faults (SDM 6.7.1)
  const uint64_t rip = stack_read(core, 0, size);
  const uint16_t sel = static_cast<uint16_t>(stack_read(core, size, size));
  const uint64_t image = stack_read(core, 2 * size, size);
  uint64_t mask = iret_flag_mask(s, size);
  if (!protected_mode(s)) {  // real mode, or virtual-8086 mode with IOPL 3
    if (s.rflags & VM) mask &= ~uint64_t(IOPL);
    set_stack_pointer(core, s.seg[SS], s.gpr[RSP] + 3 * size, false);
    s.rflags = (s.rflags & ~mask) | (image & mask) | RF1;
    return real_mode_far(core, sel, rip, size);
  }
  if ((image & VM) && size == 4 && s.cpl() == 0 && !s.long_mode_active()) {
    core.shutdown("IRET to virtual-8086 mode: virtual-8086 mode is not implemented");
    return;
  }
  const unsigned cpl = s.cpl(), rpl = sel & 3u;
  Descriptor d = check_return_code(core, sel);
  const uint64_t target = checked_target(d, rip, size, s.long_mode_active(), s);
  // 64-bit mode always pops SS:RSP; elsewhere only a return to an outer ring does.
  const bool pop_stack = core.long64() || rpl > cpl;
  if (!pop_stack) {
    set_stack_pointer(core, s.seg[SS], s.gpr[RSP] + 3 * size, false);
    load_code_segment(core, sel, d, cpl);
  } else {
    const uint64_t new_sp = stack_read(core, 3 * size, size);
    const uint16_t ss_sel = static_cast<uint16_t>(stack_read(core, 4 * size, size));
    Segment ss = check_return_stack(core, ss_sel, rpl, d);
    load_code_segment(core, sel, d, rpl);
    s.seg[SS] = ss;
    set_stack_pointer(core, ss, new_sp, s.long_mode_active() && d.l());
    if (rpl > cpl) nullify_inaccessible_data_segments(core);
  }
  if (size == 2) mask &= 0xFFFF;
  s.rflags = (s.rflags & ~mask) | (image & mask) | RF1;
  core.set_next_rip(target);
}

// ---- INT n, INT3, INTO, INT1 ------------------------------------------------------------------

// Delivers a software interrupt as a trap (the pushed RIP is the next instruction); a fault during
// delivery is a fault of the INT instruction itself, so RIP is put back before it propagates.
void software_interrupt(Core& core, const Event& event) {
  CpuState& s = core.state();
  const uint64_t insn_rip = s.rip;
  s.rip = core.next_rip();
  try {
    core.route_event(event);
  } catch (const Fault&) {
    s.rip = insn_rip;
    throw;
  }
  core.set_next_rip(s.rip);
}

void int_n(Core& core, const Insn& i) {
  const auto vector = static_cast<uint8_t>(i.op[0].value);
  const CpuState& s = core.state();
  if ((s.rflags & VM) && s.iopl() < 3) throw Fault::gp(0);  // virtual-8086 without VME
  if ((s.cr0 & CR0_PE) && s.cpl() > 0) {
    switch (system_config(core).profile.at_cpl_above_0(static_cast<SensitiveInsn>(i.sensitive))) {
      case Behavior::Gp: throw Fault::gp(vector * 8u + 2);  // as for a gate with DPL < CPL
      case Behavior::Ud: throw Fault::ud();
      default: break;
    }
  }
  software_interrupt(core, Event{vector, EventKind::SoftwareInt, false, 0, 0});
}

void int3(Core& core, const Insn&) { software_interrupt(core, Event{BP, EventKind::SoftwareException, false, 0, 0}); }

void into(Core& core, const Insn&) {
  if (core.long64()) throw Fault::ud();
  if (core.state().rflags & OF) software_interrupt(core, Event{OFV, EventKind::SoftwareException, false, 0, 0});
}

// INT1 (ICEBP): a #DB trap without the gate DPL check.
void int1(Core& core, const Insn&) { software_interrupt(core, Event{DB, EventKind::Exception, false, 0, 0}); }

// ---- SYSCALL / SYSRET, SYSENTER / SYSEXIT ---------------------------------------------------------

void syscall(Core& core, const Insn&) {
  CpuState& s = core.state();
  // Raised, not thrown: binary translation and paravirtualization take every system call of the
  // guest's processes as this #UD (the real EFER.SCE is clear).
  if (!(s.efer & EFER_SCE) || !core.long64()) return core.raise(Fault::ud());
  const uint16_t cs = static_cast<uint16_t>((s.star >> 32) & 0xFFFC);
  s.gpr[RCX] = core.next_rip();
  s.gpr[R11] = s.rflags & ~uint64_t(RF);
  s.rflags = ((s.rflags & ~s.fmask) | RF1) & ~uint64_t(RF);
  s.seg[CS] = flat_code(cs, 0, true);
  s.seg[SS] = flat_stack(static_cast<uint16_t>(cs + 8), 0);
  core.set_next_rip(s.lstar);
}

void sysret(Core& core, const Insn& i) {
  CpuState& s = core.state();
  if (!(s.efer & EFER_SCE) || !core.long64()) throw Fault::ud();
  require_cpl0(core);
  const bool to64 = i.opsize == 8;
  const uint16_t base = static_cast<uint16_t>(s.star >> 48);
  uint64_t target = to64 ? s.gpr[RCX] : (s.gpr[RCX] & 0xFFFFFFFFu);
  if (to64 && !is_canonical(s, target)) throw Fault::gp(0);
  s.rflags = (s.gpr[R11] & 0x3C7FD7) | RF1;
  s.seg[CS] = flat_code(static_cast<uint16_t>((to64 ? base + 16 : base) | 3), 3, to64);
  s.seg[SS] = flat_stack(static_cast<uint16_t>((base + 8) | 3), 3);
  core.set_next_rip(target);
}

void sysenter(Core& core, const Insn&) {
  CpuState& s = core.state();
  if (!(s.cr0 & CR0_PE) || (s.sysenter_cs & 0xFFFC) == 0) throw Fault::gp(0);
  const bool ia32e = s.long_mode_active();
  const auto cs = static_cast<uint16_t>(s.sysenter_cs & 0xFFFC);
  s.rflags &= ~uint64_t(VM | IF | RF);
  s.seg[CS] = flat_code(cs, 0, ia32e);
  s.seg[SS] = flat_stack(static_cast<uint16_t>(cs + 8), 0);
  s.gpr[RSP] = ia32e ? s.sysenter_esp : (s.sysenter_esp & 0xFFFFFFFFu);
  core.set_next_rip(ia32e ? s.sysenter_eip : (s.sysenter_eip & 0xFFFFFFFFu));
}

void sysexit(Core& core, const Insn& i) {
  CpuState& s = core.state();
  if (!(s.cr0 & CR0_PE) || s.cpl() != 0 || (s.sysenter_cs & 0xFFFC) == 0) throw Fault::gp(0);
  const bool to64 = i.opsize == 8;
  const auto cs = static_cast<uint16_t>(s.sysenter_cs);
  uint64_t rsp = s.gpr[RCX], rip = s.gpr[RDX];
  if (to64) {
    if (!is_canonical(s, rsp) || !is_canonical(s, rip)) throw Fault::gp(0);
  } else {
    rsp &= 0xFFFFFFFFu;
    rip &= 0xFFFFFFFFu;
  }
  s.seg[CS] = flat_code(static_cast<uint16_t>((cs + (to64 ? 32 : 16)) | 3), 3, to64);
  s.seg[SS] = flat_stack(static_cast<uint16_t>((cs + (to64 ? 40 : 24)) | 3), 3);
  s.gpr[RSP] = rsp;
  core.set_next_rip(rip);
}

// ---- Segment registers ------------------------------------------------------------------------

// The selector MOV/PUSH read from a segment register; the insensitive variant hides the CPL.
// False when the profile raised its fault.
bool read_selector(Core& core, unsigned reg, const Insn& insn, uint16_t* sel) {
  *sel = core.state().seg[reg].selector;
  const ProfileRule rule = apply_profile(core, insn);
  if (rule == ProfileRule::Insensitive && (reg == CS || reg == SS)) *sel &= ~3u;
  return rule != ProfileRule::Raised;
}

void mov_from_sreg(Core& core, const Insn& i) {
  uint16_t sel;
  if (read_selector(core, i.op[1].reg, i, &sel)) store_selector(core, i, sel);
}

void push_sreg(Core& core, const Insn& i) {
  uint16_t sel;
  if (read_selector(core, i.op[0].reg, i, &sel)) core.push_sized(sel, i.opsize);
}

// False when the profile raised its fault.
bool load_sreg_checked(Core& core, const Insn& i, unsigned reg, uint16_t sel) {
  if (reg == CS || reg >= kNumSegRegs) throw Fault::ud();
  if (apply_profile(core, i) == ProfileRule::Raised) return false;
  load_segment(core, static_cast<SegReg>(reg), sel);
  if (reg == SS) core.state().interrupt_shadow = true;  // MOV/POP SS inhibit interrupts for one instruction
  return true;
}

void mov_to_sreg(Core& core, const Insn& i) {
  load_sreg_checked(core, i, i.op[0].reg, core.get<uint16_t>(i, i.op[1]));
}

void pop_sreg(Core& core, const Insn& i) {
  const auto sel = static_cast<uint16_t>(stack_read(core, 0, i.opsize));
  const Segment old_ss = core.state().seg[SS];  // the pop moves the stack it was made from (POP SS)
  if (!load_sreg_checked(core, i, i.op[0].reg, sel)) return;
  set_stack_pointer(core, old_ss, core.state().gpr[RSP] + i.opsize, core.long64());
}

// LDS/LES/LFS/LGS/LSS r, m16:16/32/64.
template <SegReg Reg>
void load_far_pointer(Core& core, const Insn& i) {
  const FarPointer p = read_far_pointer(core, i, i.op[1]);
  if (!load_sreg_checked(core, i, Reg, p.selector)) return;
  switch (i.opsize) {
    case 2: core.set_reg<uint16_t>(i.op[0], static_cast<uint16_t>(p.offset)); break;
    case 4: core.set_reg<uint32_t>(i.op[0], static_cast<uint32_t>(p.offset)); break;
    default: core.set_reg<uint64_t>(i.op[0], p.offset); break;
  }
}

// ---- LAR, LSL, VERR, VERW, ARPL -----------------------------------------------------------------

void write_sized(Core& core, const Insn& i, const Operand& o, uint64_t v) {
  switch (i.opsize) {
    case 2: core.set<uint16_t>(i, o, static_cast<uint16_t>(v)); break;
    case 4: core.set<uint32_t>(i, o, static_cast<uint32_t>(v)); break;
    default: core.set<uint64_t>(i, o, v); break;
  }
}

void lar(Core& core, const Insn& i) {
  require_protected(core);
  if (apply_profile(core, i) == ProfileRule::Raised) return;
  Descriptor d;
  const bool ok = query_selector(core, core.get<uint16_t>(i, i.op[1]), SelectorQuery::AccessRights, &d);
  // The SDM masks the rights with 00FxFF00H, x (limit 19:16) undefined: it reads as 0 here, as on QEMU.
  if (ok) write_sized(core, i, i.op[0], (d.lo >> 32) & (i.opsize == 2 ? 0xFF00 : 0xF0FF00));
  core.set_flags(ZF, ok ? uint64_t(ZF) : 0);
}

void lsl(Core& core, const Insn& i) {
  require_protected(core);
  if (apply_profile(core, i) == ProfileRule::Raised) return;
  Descriptor d;
  const bool ok = query_selector(core, core.get<uint16_t>(i, i.op[1]), SelectorQuery::Limit, &d);
  if (ok) write_sized(core, i, i.op[0], d.limit());
  core.set_flags(ZF, ok ? uint64_t(ZF) : 0);
}

void verr(Core& core, const Insn& i) {
  require_protected(core);
  if (apply_profile(core, i) == ProfileRule::Raised) return;
  const bool ok = query_selector(core, core.get<uint16_t>(i, i.op[0]), SelectorQuery::Readable, nullptr);
  core.set_flags(ZF, ok ? uint64_t(ZF) : 0);
}

void verw(Core& core, const Insn& i) {
  require_protected(core);
  if (apply_profile(core, i) == ProfileRule::Raised) return;
  const bool ok = query_selector(core, core.get<uint16_t>(i, i.op[0]), SelectorQuery::Writable, nullptr);
  core.set_flags(ZF, ok ? uint64_t(ZF) : 0);
}

void arpl(Core& core, const Insn& i) {
  require_protected(core);
  const uint16_t dest = core.get<uint16_t>(i, i.op[0]);
  const uint16_t src = core.get<uint16_t>(i, i.op[1]);
  if ((dest & 3) < (src & 3)) {
    core.set<uint16_t>(i, i.op[0], static_cast<uint16_t>((dest & ~3u) | (src & 3)));
    core.set_flags(ZF, ZF);
  } else {
    core.set_flags(ZF, 0);
  }
}

}  // namespace

void register_transfer(Dispatch& d) {
  constexpr InsnClass S = InsnClass::System;
  d.add(kJmpFar, S, &jmp_far, sensitive(SensitiveInsn::FarJmp));
  d.add(kCallFar, S, &call_far, sensitive(SensitiveInsn::FarCall));
  d.add(kRetFar, S, &ret_far, sensitive(SensitiveInsn::FarRet));
  d.add(ZYDIS_MNEMONIC_IRET, S, &iret, sensitive(SensitiveInsn::Iret));
  d.add(ZYDIS_MNEMONIC_IRETD, S, &iret, sensitive(SensitiveInsn::Iret));
  d.add(ZYDIS_MNEMONIC_IRETQ, S, &iret, sensitive(SensitiveInsn::Iret));
  d.add(ZYDIS_MNEMONIC_INT, S, &int_n, sensitive(SensitiveInsn::IntN));
  d.add(ZYDIS_MNEMONIC_INT3, S, &int3);
  d.add(ZYDIS_MNEMONIC_INTO, S, &into);
  d.add(ZYDIS_MNEMONIC_INT1, S, &int1);
  d.add(ZYDIS_MNEMONIC_SYSCALL, S, &syscall);
  d.add(ZYDIS_MNEMONIC_SYSRET, S, &sysret, traits(kTraitPrivileged));
  d.add(ZYDIS_MNEMONIC_SYSENTER, S, &sysenter);
  d.add(ZYDIS_MNEMONIC_SYSEXIT, S, &sysexit);
  d.add(kMovFromSreg, S, &mov_from_sreg, sensitive(SensitiveInsn::MovFromSreg));
  d.add(kMovToSreg, S, &mov_to_sreg, sensitive(SensitiveInsn::LoadSreg));
  d.add(kPushSreg, S, &push_sreg, sensitive(SensitiveInsn::PushSreg));
  d.add(kPopSreg, S, &pop_sreg, sensitive(SensitiveInsn::LoadSreg));
  d.add(ZYDIS_MNEMONIC_LDS, S, &load_far_pointer<DS>, sensitive(SensitiveInsn::LoadSreg));
  d.add(ZYDIS_MNEMONIC_LES, S, &load_far_pointer<ES>, sensitive(SensitiveInsn::LoadSreg));
  d.add(ZYDIS_MNEMONIC_LFS, S, &load_far_pointer<FS>, sensitive(SensitiveInsn::LoadSreg));
  d.add(ZYDIS_MNEMONIC_LGS, S, &load_far_pointer<GS>, sensitive(SensitiveInsn::LoadSreg));
  d.add(ZYDIS_MNEMONIC_LSS, S, &load_far_pointer<SS>, sensitive(SensitiveInsn::LoadSreg));
  d.add(ZYDIS_MNEMONIC_LAR, S, &lar, sensitive(SensitiveInsn::Lar));
  d.add(ZYDIS_MNEMONIC_LSL, S, &lsl, sensitive(SensitiveInsn::Lsl));
  d.add(ZYDIS_MNEMONIC_VERR, S, &verr, sensitive(SensitiveInsn::Verr));
  d.add(ZYDIS_MNEMONIC_VERW, S, &verw, sensitive(SensitiveInsn::Verw));
  d.add(ZYDIS_MNEMONIC_ARPL, S, &arpl);
}

}  // namespace pgsim::isa::system

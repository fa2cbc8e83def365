// Exception and interrupt delivery, after Intel SDM vol. 3, ch. 6 (6.12 IDT delivery, 6.14 IA-32e
// mode, 6.15 double fault, table 6-5) and vol. 2 (INT n/INTO/INT3 operation, IRET).
#include "isa/system/events.h"

#include <string>

#include "isa/core.h"
#include "isa/system/descriptors.h"
#include "isa/system/paging.h"
#include "isa/system/semantics.h"

namespace pgsim::isa {
namespace {

using system::FrameWriter;
using system::frame_writer;

// The flags every delivery through the IDT clears (SDM 6.12.1.3); interrupt gates clear IF too.
constexpr uint64_t kClearedOnDelivery = TF | NT | RF | VM;

// Benign, contributory and page-fault classes of SDM table 6-4/6-5.
enum class FaultClass { Benign, Contributory, PageFault };
FaultClass fault_class(uint8_t vector) {
  switch (vector) {
    case DE: case TS: case NP: case SS_: case GP: return FaultClass::Contributory;
    case PF_: return FaultClass::PageFault;
    default: return FaultClass::Benign;
  }
}


void deliver_real_mode(Core& core, const Event& ev) {
  CpuState& s = core.state();
  if (ev.vector * 4u + 3 > s.idtr.limit) throw Fault::gp(0);
  uint32_t entry = static_cast<uint32_t>(core.read_linear(s.idtr.base + ev.vector * 4u, 4, AccessOrigin::Instruction));
  FrameWriter w = frame_writer(core, s.seg[SS], s.gpr[RSP], 0, 0, false);
  w.check_limit = false;
  w.push(s.rflags & 0xFFFF, 2);
  w.push(s.seg[CS].selector, 2);
  w.push(s.rip & 0xFFFF, 2);
  s.gpr[RSP] = (s.gpr[RSP] & ~0xFFFFull) | w.sp;
  s.rflags &= ~(IF | TF | AC | RF);
  s.seg[CS].selector = static_cast<uint16_t>(entry >> 16);
  s.seg[CS].base = (entry >> 16) << 4;
  s.rip = entry & 0xFFFF;
}

// The code segment a gate names, checked as SDM vol. 2 INT n describes (for IDT gates).
Descriptor gate_code_segment(Core& core, uint16_t selector, bool ext, bool need64) {
  if (is_null_selector(selector)) throw Fault::gp(ext ? 1 : 0);
  Descriptor cd = read_descriptor(core, selector, GP, false, ext);
  if (!cd.code() || cd.dpl() > core.state().cpl()) throw selector_fault(GP, selector, ext);
  if (!cd.present()) throw selector_fault(NP, selector, ext);
  if (need64 && (!cd.l() || cd.db())) throw selector_fault(GP, selector, ext);
  return cd;
}

void deliver_protected(Core& core, const Event& ev) {
  CpuState& s = core.state();
  const bool ext = !ev.software();
  const bool ia32e = s.long_mode_active();
  const unsigned cpl = s.cpl();
  if (s.rflags & VM) {
    core.shutdown("event " + event_name(ev.vector) + " raised in virtual-8086 mode: delivery from virtual-8086 mode is not implemented");
    return;
  }
  Descriptor gate = read_idt_gate(core, ev.vector, ext);
  const uint32_t gate_error = ev.vector * 8u + 2 + (ext ? 1 : 0);
  const unsigned t = gate.type();
  if (!gate.s() && t == kTaskGate && !ia32e && gate.present()) {
    core.shutdown("event " + event_name(ev.vector) + " goes through a task gate: hardware task switching is not implemented");
    return;
  }
  bool valid = !gate.s() && (t == kIntGate || t == kTrapGate || (!ia32e && (t == kIntGate16 || t == kTrapGate16)));
  if (!valid) throw Fault::gp(gate_error);
  if (ev.software() && gate.dpl() < cpl) throw Fault::gp(ev.vector * 8u + 2);
  if (!gate.present()) throw Fault{NP, true, gate_error, 0};

  const uint16_t cs_sel = gate.gate_selector();
  Descriptor cd = gate_code_segment(core, cs_sel, ext, ia32e);
  const unsigned new_cpl = cd.conforming() ? cpl : cd.dpl();
  const bool inner = new_cpl < cpl;
  const uint64_t target = ia32e ? gate.gate_offset() : ((t & 8) ? gate.gate_offset() & 0xFFFFFFFF : gate.gate_offset() & 0xFFFF);
  const unsigned size = ia32e ? 8 : ((t & 8) ? 4 : 2);
  const uint64_t flags = s.rflags | (ev.sets_resume_flag() ? uint64_t(RF) : 0);
  // The accessed-bit write may fault too: do it before any register changes.
  mark_accessed(core, cs_sel, cd);

  if (ia32e) {
    // 64-bit frame (SDM 6.14.2): RSP from IST or from the TSS on a privilege change, aligned to 16,
    // then SS, RSP, RFLAGS, CS, RIP and the error code, 8 bytes each.
    uint64_t rsp = s.gpr[RSP];
    if (gate.gate_ist()) rsp = tss64_ist(core, gate.gate_ist());
    else if (inner) rsp = tss64_rsp(core, new_cpl);
    if (!is_canonical(s, rsp)) throw Fault{SS_, true, ext ? 1u : 0u, 0};
    if (!is_canonical(s, target)) throw Fault::gp(ext ? 1 : 0);
    rsp &= ~0xFull;
    FrameWriter w = frame_writer(core, s.seg[SS], rsp, new_cpl, 0, true);
    w.push(s.seg[SS].selector, 8);
    w.push(s.gpr[RSP], 8);
    w.push(flags, 8);
    w.push(s.seg[CS].selector, 8);
    w.push(s.rip, 8);
    if (ev.has_error_code) w.push(ev.error_code, 8);
    if (inner) {
      s.seg[SS] = null_segment(static_cast<uint16_t>(new_cpl));
      s.seg[SS].attr = static_cast<uint16_t>(new_cpl << 5);
    }
    s.gpr[RSP] = w.sp;
  } else if (inner) {
    // 32-bit frame with a stack switch through the TSS: SS, ESP, EFLAGS, CS, EIP, error code.
    uint16_t new_ss;
    uint32_t new_esp;
    tss32_stack(core, new_cpl, &new_ss, &new_esp);
    Descriptor ssd = check_stack_segment(core, new_ss, new_cpl, TS);
    if (cd.dpl() != ssd.dpl()) throw selector_fault(TS, new_ss, ext);
    Segment new_stack = ssd.to_segment(new_ss);
    FrameWriter w = frame_writer(core, new_stack, new_esp, new_cpl, (new_ss & 0xFFFC) | (ext ? 1 : 0), false);
    if (target > cd.limit()) throw Fault::gp(ext ? 1 : 0);
    w.push(s.seg[SS].selector, size);
    w.push(s.gpr[RSP] & (size == 4 ? 0xFFFFFFFF : 0xFFFF), size);
    w.push(flags, size);
    w.push(s.seg[CS].selector, size);
    w.push(s.rip, size);
    if (ev.has_error_code) w.push(ev.error_code, size);
    mark_accessed(core, new_ss, ssd);
    s.seg[SS] = ssd.to_segment(new_ss);
    s.gpr[RSP] = ssd.db() ? static_cast<uint32_t>(w.sp) : ((s.gpr[RSP] & ~0xFFFFull) | w.sp);
  } else {
    // Same privilege: EFLAGS, CS, EIP, error code on the current stack.
    FrameWriter w = frame_writer(core, s.seg[SS], s.gpr[RSP], new_cpl, ext ? 1 : 0, false);
    if (target > cd.limit()) throw Fault::gp(ext ? 1 : 0);
    w.push(flags, size);
    w.push(s.seg[CS].selector, size);
    w.push(s.rip, size);
    if (ev.has_error_code) w.push(ev.error_code, size);
    s.gpr[RSP] = s.seg[SS].db() ? static_cast<uint32_t>(w.sp) : ((s.gpr[RSP] & ~0xFFFFull) | w.sp);
  }
  load_code_segment(core, cs_sel, cd, new_cpl);
  s.rip = target;
  s.rflags &= ~kClearedOnDelivery;
  if ((t & 7) == (kIntGate & 7)) s.rflags &= ~IF;  // interrupt gates (16- and 32/64-bit)
}

void deliver_once(Core& core, const Event& ev) {
  CpuState& s = core.state();
  if (ev.vector == PF_ && ev.kind == EventKind::Exception) s.cr2 = ev.cr2;
  if (!(s.cr0 & CR0_PE)) deliver_real_mode(core, ev);
  else deliver_protected(core, ev);
  s.halted = false;
  if (ev.kind == EventKind::Nmi) s.nmi_blocked = true;  // until the next IRET (SDM 6.7.1)
}

// A fault during the delivery of `first` (SDM table 6-5): a double fault, a triple fault, or the
// second exception delivered on its own.
void resolve_nested(Core& core, const Event& first, const Fault& second, unsigned depth) {
  const FaultClass a = first.kind == EventKind::Exception ? fault_class(first.vector) : FaultClass::Benign;
  const FaultClass b = fault_class(second.vector);
  const bool first_is_df = first.kind == EventKind::Exception && first.vector == DF_;
  if (first_is_df && b != FaultClass::Benign) {
    core.shutdown("triple fault: " + event_name(second.vector) + " (error code " + std::to_string(second.error_code) +
                  ") while delivering #DF");
    return;
  }
  Event next = Event::from_fault(second);
  if ((a == FaultClass::Contributory && b == FaultClass::Contributory) ||
      (a == FaultClass::PageFault && b != FaultClass::Benign))
    next = Event{DF_, EventKind::Exception, true, 0, 0};
  if (depth > 4) {
    core.shutdown("shutdown: " + event_name(second.vector) + " keeps recurring while delivering " + event_name(first.vector));
    return;
  }
  try {
    deliver_once(core, next);
  } catch (const Fault& third) {
    resolve_nested(core, next, third, depth + 1);
  }
}

}  // namespace

void deliver_event(Core& core, const Event& event) {
  try {
    deliver_once(core, event);
  } catch (const Fault& second) {
    // INT n, INT3 and INTO fault as instructions: their handler restores RIP and the fault is
    // delivered at the instruction (SDM vol. 2, INT n: "#GP(error code)" and friends).
    if (event.software()) throw;
    if (core.offer_delivery_fault(event, Event::from_fault(second))) return;
    resolve_nested(core, event, second, 0);
  }
}

std::string event_name(uint8_t vector) {
  static const char* names[] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "vector 9",
                                "#TS", "#NP", "#SS", "#GP", "#PF", "vector 15", "#MF", "#AC", "#MC", "#XM"};
  return vector < 20 ? names[vector] : "vector " + std::to_string(vector);
}

}  // namespace pgsim::isa

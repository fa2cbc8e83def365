// Routing of exceptions and interrupts: the trap hook first, then IDT delivery
// (isa/system/events.h deliver_event).
#include "isa/core.h"
#include "isa/system/events.h"

namespace pgsim::isa {

void Core::route_event(const Event& event) {
  OutsideHandler delivery(*this);  // also when a handler routes an event (INT n)
  materialize_flags();  // the hook and the delivery (which pushes RFLAGS) see the whole of it
  ++counters_.events;
  state_.halted = false;
  if (!(hook_ && hook_->on_event(*this, event))) deliver_event(*this, event);
  sync_mode();
  if (counters_.steps() >= step_deadline_) request_stop();
}

bool Core::offer_delivery_fault(const Event& delivering, const Event& fault) {
  materialize_flags();
  if (!hook_) return false;
  // A hook that takes the fault may deliver an event again before it returns (a VMM injecting at
  // its VM entry); an event whose delivery faults every time would nest here without end, where
  // the hardware would loop. That is no progress: the run stops.
  if (delivery_fault_nesting_ >= kMaxDeliveryFaultNesting) {
    no_progress_ = NoProgress{fault.vector, state_.rip, delivery_fault_nesting_, /*in_delivery=*/true};
    request_stop();
    return true;
  }
  ++delivery_fault_nesting_;
  bool taken;
  {
    OutsideHandler hook(*this);
    taken = hook_->on_delivery_fault(*this, delivering, fault);
  }
  --delivery_fault_nesting_;
  if (!taken) return false;
  ++counters_.events;  // an exception the hook took, as route_event counts those
  return true;
}

void Core::raise_event_after_instruction(const Event& event) {
  state_.rip = next_rip_;  // traps and INT n push the address of the next instruction
  route_event(event);
  next_rip_ = state_.rip;  // the run loop commits the handler's address
}

void Core::handle_fault(const Fault& fault) {
  // A faulting instruction did not complete: no single-step trap, no data-breakpoint trap.
  single_step_pending_ = false;
  debug_hits_ = 0;
  const bool repeated = counters_.retired == retired_at_last_fault_ && fault.vector == last_fault_.vector &&
                        state_.rip == last_fault_rip_;
  fault_repeats_ = repeated ? fault_repeats_ + 1 : 1;
  retired_at_last_fault_ = counters_.retired;
  last_fault_ = fault;
  last_fault_rip_ = state_.rip;
  if (no_progress_limit_ && fault_repeats_ >= no_progress_limit_) {
    no_progress_ = NoProgress{fault.vector, state_.rip, fault_repeats_};
    request_stop();
    return;  // not delivered: the run ends here
  }
  route_event(Event::from_fault(fault));
}

void Core::raise_external(uint8_t vector, bool nmi) {
  route_event(Event{vector, nmi ? EventKind::Nmi : EventKind::External, false, 0, 0});
}

}  // namespace pgsim::isa

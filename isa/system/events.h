// Exception and interrupt delivery (Intel SDM vol. 3, ch. 6): real-mode IVT, 32-bit and 64-bit
// IDT gates, privilege changes through the TSS, IST, double and triple fault; and the return
// from them (IRET/IRETD/IRETQ).
#pragma once
#include <string>
#include <cstdint>

#include "isa/fault.h"

namespace pgsim::isa {

class Core;

enum class EventKind : uint8_t {
  Exception,          // a fault or trap raised by the processor (#DE, #GP, #PF, ...)
  External,           // a maskable interrupt from the interrupt controller
  Nmi,                // a non-maskable interrupt
  SoftwareInt,        // INT n: the gate DPL is checked against CPL
  SoftwareException,  // INT3, INTO: the gate DPL is checked against CPL
};

struct Event {
  uint8_t vector = 0;
  EventKind kind = EventKind::Exception;
  bool has_error_code = false;
  uint32_t error_code = 0;
  uint64_t cr2 = 0;  // for #PF: loaded into CR2 on delivery
  // A #DB raised as a fault by an instruction (MOV DR with DR7.GD); other #DBs are traps, or the
  // instruction-breakpoint fault, which alone of the faults keeps RF as it is in the frame.
  bool debug_fault = false;

  static Event from_fault(const Fault& f) {
    return {f.vector, EventKind::Exception, f.has_error_code, f.error_code, f.cr2, f.vector == DB};
  }
  // The RFLAGS image this event saves has RF set (SDM vol. 3, 18.3.1.1): every fault-class
  // exception but an instruction breakpoint's #DB, so that IRET restarts the instruction without
  // meeting its breakpoint again.
  bool sets_resume_flag() const {
    if (kind != EventKind::Exception) return false;
    switch (vector) {
      case DE: case BR: case UD: case NM: case TS: case NP: case SS_: case GP: case PF_: case MF: case AC_: case XM:
        return true;
      case DB: return debug_fault;
      default: return false;  // traps (#BP, #OF, single step, data breakpoints) and aborts (#DF, #MC)
    }
  }
  bool software() const { return kind == EventKind::SoftwareInt || kind == EventKind::SoftwareException; }
};

// Delivers `event` through the IVT or IDT: pushes the return frame (RIP = state().rip, which the
// caller sets to the faulting instruction or to the next one for traps and INT n), switches stacks
// and loads CS:RIP of the handler into state(). Delivery is all or nothing: a fault leaves the
// registers as they were. For exceptions and interrupts a fault during delivery becomes a double
// fault (or is delivered serially, per SDM table 6-5) and a fault while delivering #DF shuts the
// core down (triple fault). For software events (INT n, INT3, INTO) the fault is thrown to the
// caller instead: it is a fault of the instruction (e.g. #GP(vector*8+2) for a gate DPL < CPL).
// Task gates and virtual-8086 mode are not implemented: they shut the core down with a message
// that says so.
void deliver_event(Core& core, const Event& event);

// The exception's mnemonic ("#GP", "#PF"), or "vector N".
std::string event_name(uint8_t vector);

}  // namespace pgsim::isa

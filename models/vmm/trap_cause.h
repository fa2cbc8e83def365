// Why the guest left its instruction stream: the cause of an exception, interrupt or (later) VM
// exit, as the trap router counts it (vmm.traps.<cause>).
#pragma once
#include <array>
#include <cstdint>

#include "isa/system/events.h"

namespace pgsim::vmm {

enum class TrapCause : uint8_t {
  // Exceptions, by vector (SDM vol. 3, table 6-1).
  DivideError, Debug, Breakpoint, Overflow, BoundRange, InvalidOpcode, DeviceNotAvailable,
  DoubleFault, InvalidTss, SegmentNotPresent, StackFault, GeneralProtection, PageFault,
  X87Error, AlignmentCheck, MachineCheck, SimdError, OtherException,
  Nmi,         // non-maskable interrupt
  Interrupt,   // maskable external interrupt from the interrupt controller
  SoftwareInt, // INT n
  Mmio,        // a page fault on device memory: an MMIO access the VMM emulates (a strategy's finding)
  kCount,
};
constexpr unsigned kNumTrapCauses = static_cast<unsigned>(TrapCause::kCount);

// The statistic name part ("gp", "pf", "interrupt", ...) and a one-line description.
const char* trap_cause_name(TrapCause cause);
const char* trap_cause_description(TrapCause cause);

// The cause of `event`. INT3 and INTO are software exceptions and count as #BP and #OF.
TrapCause trap_cause(const isa::Event& event);

}  // namespace pgsim::vmm

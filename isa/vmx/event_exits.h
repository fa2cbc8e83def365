// Events in VMX non-root operation (Intel SDM vol. 3, 26.2 "Other causes of VM exits", 26.7
// "Features specific to VMX non-root operation"): which exceptions, interrupts and NMIs cause VM
// exits, the exits of the interrupt and NMI windows, triple faults, and the IDT-vectoring
// information of an event whose delivery was cut short by an exit.
//
// At an instruction boundary the core asks, in the SDM's order of priority (26.7.5, 26.7.6):
//   1. an NMI (nmi_exit when NMI exiting),
//   2. nmi_window_exit, then interrupt_window_exit,
//   3. an external interrupt (external_interrupt_exits; then external_interrupt_exit),
// and when an instruction raises an exception, exception_exit before delivering it.
#pragma once
#include <cstdint>
#include <optional>

#include "isa/cpu_state.h"
#include "isa/system/ept.h"
#include "isa/system/events.h"
#include "isa/vmx/exit_reason.h"
#include "isa/vmx/vmcs.h"

namespace pgsim::isa::vmx {

// SDM 26.2: an exception causes a VM exit when its bit in the exception bitmap is 1; for #PF the
// bit applies when (error code AND PFEC_MASK) = PFEC_MATCH, and its inverse otherwise.
bool exception_bitmap_selects(const Vmcs& vmcs, uint8_t vector, uint32_t error_code);

// The interruption type an event has in the interruption-information formats.
InterruptionType interruption_type_of(const Event& event);

// The exit for an exception (hardware, or INT3/INTO) the exception bitmap selects, or nothing.
// INT n is a software interrupt, not an exception: it never exits this way. For #PF the exit
// qualification is the faulting linear address (CR2 is not loaded, 28.2.1); software exceptions
// report `instruction_length`.
std::optional<VmExit> exception_exit(const Vmcs& vmcs, const Event& event, unsigned instruction_length);

// An NMI with NMI exiting: exit reason 0 with interruption type NMI (26.2).
std::optional<VmExit> nmi_exit(const Vmcs& vmcs);

// External-interrupt exiting: an external interrupt causes a VM exit whatever RFLAGS.IF (26.3,
// "RFLAGS.IF does not control the masking of external interrupts"); blocking by STI or MOV SS
// still holds it back.
bool external_interrupt_exits(const Vmcs& vmcs, const CpuState& state);
// The exit for an external interrupt. With "acknowledge interrupt on exit" the core acknowledges
// the interrupt controller first and the vector goes into the exit interruption information
// (28.2.2); without it the interrupt stays pending and the field is invalid (`vector` ignored).
VmExit external_interrupt_exit(const Vmcs& vmcs, uint8_t vector);

// Interrupt-window exiting (26.7.5): an exit before an instruction when RFLAGS.IF = 1 and
// there is no blocking by STI or MOV SS.
std::optional<VmExit> interrupt_window_exit(const Vmcs& vmcs, const CpuState& state);
// NMI-window exiting (26.7.6): an exit when there is no virtual-NMI blocking and no blocking by
// MOV SS (the core does not tell STI from MOV SS blocking, so both hold it back). The core keeps
// the virtual-NMI blocking (guest interruptibility bit 3) and passes it.
std::optional<VmExit> nmi_window_exit(const Vmcs& vmcs, const CpuState& state, bool virtual_nmi_blocked);

// The exit for an EPT violation or misconfiguration the MMU reported while translating for the
// guest (reasons 48 and 49, SDM 28.2.1): qualification, guest-physical and guest-linear address.
VmExit ept_exit(const EptExit& ept);

// A triple fault in the guest (26.2): exit reason 2, no qualification.
VmExit triple_fault_exit();

// Records in `exit` the event whose delivery caused it (28.2.4): the IDT-vectoring information
// and error code, and for software events the instruction length.
void set_idt_vectoring(VmExit& exit, const Event& event, unsigned instruction_length);

}  // namespace pgsim::isa::vmx

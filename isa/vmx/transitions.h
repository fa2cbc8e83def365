// VM entry and VM exit (Intel SDM vol. 3, ch. 27 "VM entries" and ch. 28 "VM exits"): the checks
// on controls, host state and guest state, guest-state loading, event injection through the guest
// IDT, and on exit the saving of guest state, the exit-information fields and host-state loading.
#pragma once
#include <optional>

#include "isa/cpu_state.h"
#include "isa/vmx/controls.h"
#include "isa/vmx/exit_reason.h"
#include "isa/vmx/vmcs.h"

namespace pgsim::isa {
class Core;
class PhysicalBus;
}

namespace pgsim::isa::vmx {

struct VmEntryResult {
  // Entered: the guest runs (any injected event delivered). Otherwise either `error` is the
  // VM-instruction error of a VMfailValid (controls: 7, host state: 8; the state is untouched and
  // the error is stored in the VM-instruction error field), or `failure` is the VM-entry failure
  // exit (reason 33 with bit 31) that was stored while the host state was loaded (SDM 27.8).
  bool entered = false;
  VmInstructionError error = VmInstructionError::None;
  std::optional<VmExit> failure;
};

// VM entry from the VMM's current state in `core` (VMLAUNCH/VMRESUME after their own checks; the
// launch state is theirs to change): checks (27.2, 27.3.1), loads the guest state (27.3.2), syncs
// the core and flushes its TLBs unless VPID is enabled (29.4.3.3), then injects the event of the
// VM-entry interruption-information field (27.6) through deliver_event. Not implemented, and
// refused with std::runtime_error: VM-entry MSR-load lists (a nonzero count).
VmEntryResult vm_entry(Vmcs& vmcs, Core& core);

// VM exit: stores the exit information (28.2), saves the guest state (28.3) unless the exit is a
// VM-entry failure, and loads the host state (28.5). The CpuState form leaves the core to the
// caller, who calls Core::sync_mode and, without VPID, flushes the TLBs; the Core form does both.
// VM-exit MSR-store/load lists are not implemented (nonzero counts throw std::runtime_error).
void vm_exit(Vmcs& vmcs, CpuState& state, const VmExit& exit);
void vm_exit(Vmcs& vmcs, Core& core, const VmExit& exit);

// The guest's general-purpose registers as a VMM sees them between a VM exit and the next entry:
// RSP is in the guest-state area (the exit loaded the host's), the others are still the
// processor's. And whether the guest was in 64-bit mode (IA-32e mode guest and CS.L).
uint64_t exited_guest_gpr(const Vmcs& vmcs, const CpuState& state, unsigned n);
void set_exited_guest_gpr(Vmcs& vmcs, CpuState& state, unsigned n, uint64_t value);
bool exited_guest_in_64bit_mode(const Vmcs& vmcs);

// 27.2.1.3: VM entry delivers an error code with an injected event exactly for a hardware
// exception that has one (#DF, #TS, #NP, #SS, #GP, #PF, #AC) into a guest with CR0.PE set.
bool injection_has_error_code(const Vmcs& vmcs, InterruptionType type, uint8_t vector);

// The pieces, for tests and for guest VMX later.
VmInstructionError check_controls(const Vmcs& vmcs, PhysicalBus& bus);          // 27.2.1 -> 7
VmInstructionError check_host_state(const Vmcs& vmcs, const CpuState& current);  // 27.2.2-27.2.3 -> 8
std::optional<EntryFailureQualification> check_guest_state(const Vmcs& vmcs);    // 27.3.1
void load_guest_state(const Vmcs& vmcs, CpuState& state);                         // 27.3.2
void save_guest_state(Vmcs& vmcs, const CpuState& state);                         // 28.3
void load_host_state(const Vmcs& vmcs, CpuState& state);                          // 28.5

// Segment access rights in the VMCS format (25.4.1): the descriptor's bits 40..55 as
// Segment::attr holds them, and bit 16 "unusable" for a segment register loaded with a null
// selector (the model's null segments are the not-present ones).
uint32_t access_rights_of(const Segment& seg, bool can_be_unusable);
Segment segment_from_vmcs(uint16_t selector, uint64_t base, uint32_t limit, uint32_t access_rights);
constexpr uint32_t kAccessRightsUnusable = 1u << 16;

}  // namespace pgsim::isa::vmx

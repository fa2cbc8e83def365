// The VMX controls, each bit at its SDM position (Intel SDM vol. 3, 25.6 "VM-execution control
// fields", 25.7 "VM-exit control fields", 25.8 "VM-entry control fields"), and the other small
// encodings the VMCS holds: interruptibility and activity state (25.4.2), VM-instruction error
// numbers (31.4). Only the bits this model gives a meaning to are named; which of them a VMM may
// set is the capability table (isa/vmx/capabilities.h).
#pragma once
#include <cstdint>

namespace pgsim::isa::vmx {

// Pin-based VM-execution controls (SDM table 25-5).
enum PinControl : uint32_t {
  PIN_EXTERNAL_INTERRUPT_EXITING = 1u << 0,
  PIN_NMI_EXITING = 1u << 3,
  PIN_VIRTUAL_NMIS = 1u << 5,
};

// Primary processor-based VM-execution controls (SDM table 25-6).
enum ProcControl : uint32_t {
  PROC_INTERRUPT_WINDOW_EXITING = 1u << 2,
  PROC_USE_TSC_OFFSETTING = 1u << 3,
  PROC_HLT_EXITING = 1u << 7,
  PROC_INVLPG_EXITING = 1u << 9,
  PROC_MWAIT_EXITING = 1u << 10,
  PROC_RDPMC_EXITING = 1u << 11,
  PROC_RDTSC_EXITING = 1u << 12,
  PROC_CR3_LOAD_EXITING = 1u << 15,
  PROC_CR3_STORE_EXITING = 1u << 16,
  PROC_CR8_LOAD_EXITING = 1u << 19,
  PROC_CR8_STORE_EXITING = 1u << 20,
  PROC_USE_TPR_SHADOW = 1u << 21,
  PROC_NMI_WINDOW_EXITING = 1u << 22,
  PROC_MOV_DR_EXITING = 1u << 23,
  PROC_UNCONDITIONAL_IO_EXITING = 1u << 24,
  PROC_USE_IO_BITMAPS = 1u << 25,
  PROC_MONITOR_TRAP_FLAG = 1u << 27,
  PROC_USE_MSR_BITMAPS = 1u << 28,
  PROC_MONITOR_EXITING = 1u << 29,
  PROC_PAUSE_EXITING = 1u << 30,
  PROC_ACTIVATE_SECONDARY_CONTROLS = 1u << 31,
};

// Secondary processor-based VM-execution controls (SDM table 25-7).
enum Proc2Control : uint32_t {
  PROC2_VIRTUALIZE_APIC_ACCESSES = 1u << 0,
  PROC2_ENABLE_EPT = 1u << 1,
  PROC2_DESCRIPTOR_TABLE_EXITING = 1u << 2,
  PROC2_ENABLE_RDTSCP = 1u << 3,
  PROC2_VIRTUALIZE_X2APIC = 1u << 4,
  PROC2_ENABLE_VPID = 1u << 5,
  PROC2_WBINVD_EXITING = 1u << 6,
  PROC2_UNRESTRICTED_GUEST = 1u << 7,
  PROC2_VIRTUAL_INTERRUPT_DELIVERY = 1u << 9,
  PROC2_RDRAND_EXITING = 1u << 11,
  PROC2_ENABLE_INVPCID = 1u << 12,
  PROC2_ENABLE_VM_FUNCTIONS = 1u << 13,
  PROC2_RDSEED_EXITING = 1u << 16,
};

// Primary VM-exit controls (SDM table 25-13).
enum ExitControl : uint32_t {
  EXIT_SAVE_DEBUG_CONTROLS = 1u << 2,
  EXIT_HOST_ADDRESS_SPACE_SIZE = 1u << 9,
  EXIT_LOAD_PERF_GLOBAL_CTRL = 1u << 12,
  EXIT_ACK_INTERRUPT_ON_EXIT = 1u << 15,
  EXIT_SAVE_PAT = 1u << 18,
  EXIT_LOAD_PAT = 1u << 19,
  EXIT_SAVE_EFER = 1u << 20,
  EXIT_LOAD_EFER = 1u << 21,
};

// VM-entry controls (SDM table 25-15).
enum EntryControl : uint32_t {
  ENTRY_LOAD_DEBUG_CONTROLS = 1u << 2,
  ENTRY_IA32E_MODE_GUEST = 1u << 9,
  ENTRY_TO_SMM = 1u << 10,
  ENTRY_DEACTIVATE_DUAL_MONITOR = 1u << 11,
  ENTRY_LOAD_PERF_GLOBAL_CTRL = 1u << 13,
  ENTRY_LOAD_PAT = 1u << 14,
  ENTRY_LOAD_EFER = 1u << 15,
};

// Guest interruptibility state (SDM table 25-3).
enum Interruptibility : uint32_t {
  BLOCKING_BY_STI = 1u << 0,
  BLOCKING_BY_MOV_SS = 1u << 1,
  BLOCKING_BY_SMI = 1u << 2,
  BLOCKING_BY_NMI = 1u << 3,
};

// Guest activity state (SDM 25.4.2).
enum class ActivityState : uint32_t { Active = 0, Hlt = 1, Shutdown = 2, WaitForSipi = 3 };

// The number of CR3-target value fields (SDM 25.6.7): IA32_VMX_MISC[24:16] says 4.
constexpr unsigned kNumCr3Targets = 4;

// VM-instruction error numbers (SDM table 31-1), stored in the VM-instruction error field.
enum class VmInstructionError : uint32_t {
  None = 0,
  VmcallInRoot = 1,
  VmclearInvalidAddress = 2,
  VmclearVmxonPointer = 3,
  VmlaunchNonClearVmcs = 4,
  VmresumeNonLaunchedVmcs = 5,
  VmresumeAfterVmxoff = 6,
  EntryInvalidControlFields = 7,
  EntryInvalidHostStateFields = 8,
  VmptrldInvalidAddress = 9,
  VmptrldVmxonPointer = 10,
  VmptrldIncorrectRevision = 11,
  UnsupportedVmcsComponent = 12,
  VmwriteReadOnlyComponent = 13,
  VmxonInRoot = 15,
  EntryInvalidExecutiveVmcsPointer = 16,
  EntryNonLaunchedExecutiveVmcs = 17,
  EntryEventsBlockedByMovSs = 26,
  InvalidInveptInvvpidOperand = 28,
};

// Exit qualifications of a VM-entry failure due to invalid guest state (SDM 27.8).
enum class EntryFailureQualification : uint64_t {
  Default = 0,
  PdpteLoading = 2,
  NmiInjectionBlockedBySti = 3,
  InvalidVmcsLinkPointer = 4,
};

}  // namespace pgsim::isa::vmx

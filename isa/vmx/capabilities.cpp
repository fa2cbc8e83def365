// The capability table (Intel SDM vol. 3, appendix A).
#include "isa/vmx/capabilities.h"

#include <stdexcept>
#include <string>

#include "isa/cpu_state.h"
#include "isa/vmx/controls.h"
#include "isa/vmx/vmcs.h"

namespace pgsim::isa::vmx {
namespace {

// An allowed-0/allowed-1 pair: the bits that must be 1 (low half), the bits that may be 1 (high).
constexpr uint64_t allowed(uint32_t must_be_1, uint32_t may_be_1) {
  return uint64_t(must_be_1) | (uint64_t(must_be_1 | may_be_1) << 32);
}

// The "default1" classes of SDM A.2: reserved bits that the non-TRUE MSRs report as fixed to 1.
constexpr uint32_t kPinDefault1 = 0x16;           // bits 1, 2, 4
constexpr uint32_t kProcDefault1 = 0x0401E172;    // bits 1, 4-6, 8, 13-16, 26
constexpr uint32_t kExitDefault1 = 0x00036DFF;    // bits 0-8, 10, 11, 13, 14, 16, 17
constexpr uint32_t kEntryDefault1 = 0x000011FF;   // bits 0-8, 12

// Default1 bits that the TRUE MSRs let a VMM clear (SDM A.3.2, A.4.2, A.5): CR3-load and
// CR3-store exiting (a VMM with EPT does not want them), save/load debug controls.
constexpr uint32_t kProcTrueMay0 = PROC_CR3_LOAD_EXITING | PROC_CR3_STORE_EXITING;
constexpr uint32_t kExitTrueMay0 = EXIT_SAVE_DEBUG_CONTROLS;
constexpr uint32_t kEntryTrueMay0 = ENTRY_LOAD_DEBUG_CONTROLS;

constexpr uint32_t kPinSupported = PIN_EXTERNAL_INTERRUPT_EXITING | PIN_NMI_EXITING | PIN_VIRTUAL_NMIS;
constexpr uint32_t kProcSupported =
    PROC_INTERRUPT_WINDOW_EXITING | PROC_USE_TSC_OFFSETTING | PROC_HLT_EXITING | PROC_INVLPG_EXITING |
    PROC_MWAIT_EXITING | PROC_RDPMC_EXITING | PROC_RDTSC_EXITING | PROC_CR3_LOAD_EXITING | PROC_CR3_STORE_EXITING |
    PROC_CR8_LOAD_EXITING | PROC_CR8_STORE_EXITING | PROC_USE_TPR_SHADOW | PROC_NMI_WINDOW_EXITING |
    PROC_MOV_DR_EXITING | PROC_UNCONDITIONAL_IO_EXITING | PROC_USE_IO_BITMAPS | PROC_USE_MSR_BITMAPS |
    PROC_MONITOR_EXITING | PROC_PAUSE_EXITING | PROC_ACTIVATE_SECONDARY_CONTROLS;
constexpr uint32_t kProc2Supported = PROC2_ENABLE_EPT | PROC2_DESCRIPTOR_TABLE_EXITING | PROC2_ENABLE_RDTSCP |
                                     PROC2_ENABLE_VPID | PROC2_WBINVD_EXITING | PROC2_UNRESTRICTED_GUEST |
                                     PROC2_RDRAND_EXITING | PROC2_ENABLE_INVPCID | PROC2_RDSEED_EXITING;
constexpr uint32_t kExitSupported = EXIT_SAVE_DEBUG_CONTROLS | EXIT_HOST_ADDRESS_SPACE_SIZE |
                                    EXIT_ACK_INTERRUPT_ON_EXIT | EXIT_SAVE_PAT | EXIT_LOAD_PAT | EXIT_SAVE_EFER |
                                    EXIT_LOAD_EFER;
constexpr uint32_t kEntrySupported = ENTRY_LOAD_DEBUG_CONTROLS | ENTRY_IA32E_MODE_GUEST | ENTRY_LOAD_PAT |
                                     ENTRY_LOAD_EFER;

// IA32_VMX_BASIC (A.1): revision, a 4 KiB VMCS region, write-back VMCS memory (type 6 in 53:50),
// INS/OUTS instruction information (54), TRUE control MSRs (55).
constexpr uint64_t kBasic = kVmcsRevision | (uint64_t(4096) << 32) | (6ull << 50) | (1ull << 54) | (1ull << 55);
// IA32_VMX_MISC (A.6): EFER.LMA is stored into "IA-32e mode guest" on exit (5), the HLT
// activity state (6), four CR3-target values (24:16).
constexpr uint64_t kMisc = (1ull << 5) | (1ull << 6) | (uint64_t(kNumCr3Targets) << 16);
// EPT: 4-level walks into write-back memory; INVEPT and INVVPID single- and all-context. Large
// EPT pages and accessed/dirty flags are left to the EPT walk to advertise when it has them.
constexpr uint64_t kEptVpidCap = EPT_CAP_PAGE_WALK_4 | EPT_CAP_MEMORY_TYPE_WB | EPT_CAP_INVEPT |
                                 EPT_CAP_INVEPT_SINGLE_CONTEXT | EPT_CAP_INVEPT_ALL_CONTEXT | VPID_CAP_INVVPID |
                                 VPID_CAP_INVVPID_SINGLE_CONTEXT | VPID_CAP_INVVPID_ALL_CONTEXT;

const VmxCapability* table() {
  static const VmxCapability capabilities[] = {
      {IA32_VMX_BASIC, "IA32_VMX_BASIC", kBasic},
      {IA32_VMX_PINBASED_CTLS, "IA32_VMX_PINBASED_CTLS", allowed(kPinDefault1, kPinSupported)},
      {IA32_VMX_PROCBASED_CTLS, "IA32_VMX_PROCBASED_CTLS", allowed(kProcDefault1, kProcSupported)},
      {IA32_VMX_EXIT_CTLS, "IA32_VMX_EXIT_CTLS", allowed(kExitDefault1, kExitSupported)},
      {IA32_VMX_ENTRY_CTLS, "IA32_VMX_ENTRY_CTLS", allowed(kEntryDefault1, kEntrySupported)},
      {IA32_VMX_MISC, "IA32_VMX_MISC", kMisc},
      // In VMX operation CR0.PE, NE and PG are 1 and CR4.VMXE is 1 (SDM 24.8); every implemented
      // bit may be 1.
      {IA32_VMX_CR0_FIXED0, "IA32_VMX_CR0_FIXED0", CR0_PE | CR0_NE | CR0_PG},
      {IA32_VMX_CR0_FIXED1, "IA32_VMX_CR0_FIXED1", kCr0Implemented},
      {IA32_VMX_CR4_FIXED0, "IA32_VMX_CR4_FIXED0", CR4_VMXE},
      {IA32_VMX_CR4_FIXED1, "IA32_VMX_CR4_FIXED1", kCr4Implemented | CR4_VMXE},
      {IA32_VMX_VMCS_ENUM, "IA32_VMX_VMCS_ENUM", uint64_t(vmcs_highest_index()) << 1},
      {IA32_VMX_PROCBASED_CTLS2, "IA32_VMX_PROCBASED_CTLS2", allowed(0, kProc2Supported)},
      {IA32_VMX_EPT_VPID_CAP, "IA32_VMX_EPT_VPID_CAP", kEptVpidCap},
      {IA32_VMX_TRUE_PINBASED_CTLS, "IA32_VMX_TRUE_PINBASED_CTLS", allowed(kPinDefault1, kPinSupported)},
      {IA32_VMX_TRUE_PROCBASED_CTLS, "IA32_VMX_TRUE_PROCBASED_CTLS",
       allowed(kProcDefault1 & ~kProcTrueMay0, kProcSupported)},
      {IA32_VMX_TRUE_EXIT_CTLS, "IA32_VMX_TRUE_EXIT_CTLS", allowed(kExitDefault1 & ~kExitTrueMay0, kExitSupported)},
      {IA32_VMX_TRUE_ENTRY_CTLS, "IA32_VMX_TRUE_ENTRY_CTLS",
       allowed(kEntryDefault1 & ~kEntryTrueMay0, kEntrySupported)},
  };
  return capabilities;
}
constexpr unsigned kNumCapabilities = IA32_VMX_TRUE_ENTRY_CTLS - IA32_VMX_BASIC + 1;

}  // namespace

const VmxCapability* vmx_capabilities(unsigned* count) {
  *count = kNumCapabilities;
  return table();
}

uint64_t vmx_capability(VmxCapabilityMsr msr) {
  if (msr < IA32_VMX_BASIC || msr > IA32_VMX_TRUE_ENTRY_CTLS)
    throw std::out_of_range("MSR " + std::to_string(msr) + " is not a VMX capability MSR");
  return table()[msr - IA32_VMX_BASIC].value;
}

}  // namespace pgsim::isa::vmx

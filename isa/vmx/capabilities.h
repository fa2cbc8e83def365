// What this VMX implementation supports, as the VMX capability MSRs report it (Intel SDM vol. 3,
// appendix A). One table: VM entry checks the controls against it (SDM 27.2.1), and guest VMX
// can expose it as the MSRs 0x480-0x490 unchanged.
#pragma once
#include <cstdint>

namespace pgsim::isa::vmx {

enum VmxCapabilityMsr : uint32_t {
  IA32_VMX_BASIC = 0x480,
  IA32_VMX_PINBASED_CTLS = 0x481,
  IA32_VMX_PROCBASED_CTLS = 0x482,
  IA32_VMX_EXIT_CTLS = 0x483,
  IA32_VMX_ENTRY_CTLS = 0x484,
  IA32_VMX_MISC = 0x485,
  IA32_VMX_CR0_FIXED0 = 0x486,
  IA32_VMX_CR0_FIXED1 = 0x487,
  IA32_VMX_CR4_FIXED0 = 0x488,
  IA32_VMX_CR4_FIXED1 = 0x489,
  IA32_VMX_VMCS_ENUM = 0x48A,
  IA32_VMX_PROCBASED_CTLS2 = 0x48B,
  IA32_VMX_EPT_VPID_CAP = 0x48C,
  IA32_VMX_TRUE_PINBASED_CTLS = 0x48D,
  IA32_VMX_TRUE_PROCBASED_CTLS = 0x48E,
  IA32_VMX_TRUE_EXIT_CTLS = 0x48F,
  IA32_VMX_TRUE_ENTRY_CTLS = 0x490,
};

// The VMCS revision identifier in IA32_VMX_BASIC[30:0] (and in the first word of a VMCS region).
constexpr uint32_t kVmcsRevision = 0x1;

// EPT_VPID_CAP bits this model reports (SDM A.10), and the EPTP fields VM entry checks (25.6.11).
enum EptVpidCap : uint64_t {
  EPT_CAP_PAGE_WALK_4 = 1ull << 6,
  EPT_CAP_MEMORY_TYPE_UC = 1ull << 8,
  EPT_CAP_MEMORY_TYPE_WB = 1ull << 14,
  EPT_CAP_INVEPT = 1ull << 20,
  EPT_CAP_ACCESSED_DIRTY = 1ull << 21,
  EPT_CAP_INVEPT_SINGLE_CONTEXT = 1ull << 25,
  EPT_CAP_INVEPT_ALL_CONTEXT = 1ull << 26,
  VPID_CAP_INVVPID = 1ull << 32,
  VPID_CAP_INVVPID_SINGLE_CONTEXT = 1ull << 41,
  VPID_CAP_INVVPID_ALL_CONTEXT = 1ull << 42,
};
constexpr uint64_t kEptpMemoryTypeUc = 0, kEptpMemoryTypeWb = 6;

struct VmxCapability {
  VmxCapabilityMsr msr;
  const char* name;   // "IA32_VMX_BASIC"
  uint64_t value;
};

// Every capability MSR, in MSR-number order; `count` receives how many.
const VmxCapability* vmx_capabilities(unsigned* count);
// The value of one capability MSR; throws std::out_of_range for a number not in the table.
uint64_t vmx_capability(VmxCapabilityMsr msr);

// A control word is allowed by an allowed-0/allowed-1 capability (SDM A.3.1): every bit set in
// bits 31:0 of the capability must be 1, every bit clear in bits 63:32 must be 0.
constexpr bool controls_allowed(uint32_t controls, uint64_t capability) {
  const uint32_t must_be_1 = static_cast<uint32_t>(capability);
  const uint32_t may_be_1 = static_cast<uint32_t>(capability >> 32);
  return (controls & must_be_1) == must_be_1 && (controls & ~may_be_1) == 0;
}
// A CR0/CR4 value respects the FIXED0/FIXED1 pair (SDM A.7, A.8): bits set in FIXED0 are 1, bits
// clear in FIXED1 are 0. `relaxed` are bits exempt from FIXED0 (CR0.PE/PG for unrestricted guests).
constexpr bool cr_fixed_bits_ok(uint64_t cr, uint64_t fixed0, uint64_t fixed1, uint64_t relaxed = 0) {
  return (cr & (fixed0 & ~relaxed)) == (fixed0 & ~relaxed) && (cr & ~fixed1) == 0;
}

}  // namespace pgsim::isa::vmx

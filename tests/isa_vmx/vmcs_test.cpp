// The VMCS by encoding (Intel SDM vol. 3, 25.11.2, appendix B; vol. 2 VMREAD/VMWRITE), exit
// reason names (appendix C) and the capability table (appendix A).
#include "isa/vmx/vmcs.h"

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>

#include "isa/vmx/capabilities.h"
#include "isa/vmx/exit_reason.h"

using namespace pgsim::isa;
using namespace pgsim::isa::vmx;

TEST(Vmcs, ReadWriteByEncodingTruncatesToTheFieldWidth) {
  Vmcs v;
  uint64_t value = 0;
  EXPECT_EQ(v.write(0x681E, 0xFFFF800012345678), VmcsAccess::Ok);  // guest RIP, natural width
  EXPECT_EQ(v.read(0x681E, &value), VmcsAccess::Ok);
  EXPECT_EQ(value, 0xFFFF800012345678u);
  EXPECT_EQ(v.get(VmcsField::GuestRip), 0xFFFF800012345678u);
  EXPECT_EQ(v.write(0x0802, 0x12345), VmcsAccess::Ok);  // guest CS selector, 16 bits
  EXPECT_EQ(v.get(VmcsField::GuestCsSelector), 0x2345u);
  EXPECT_EQ(v.write(0x4002, 0x1'8000'0000ull), VmcsAccess::Ok);  // 32-bit control
  EXPECT_EQ(v.get(VmcsField::ProcBasedControls), 0x80000000u);
}

TEST(Vmcs, HighAccessToA64BitField) {
  Vmcs v;
  uint64_t value = 0;
  v.set(VmcsField::TscOffset, 0x1111111122222222);
  EXPECT_EQ(v.read(0x2011, &value), VmcsAccess::Ok);  // TSC offset (high)
  EXPECT_EQ(value, 0x11111111u);
  EXPECT_EQ(v.write(0x2011, 0x33333333), VmcsAccess::Ok);
  EXPECT_EQ(v.get(VmcsField::TscOffset), 0x3333333322222222u);
  EXPECT_EQ(v.read(0x4003, &value), VmcsAccess::Unsupported);  // high access to a 32-bit field
}

TEST(Vmcs, UnsupportedAndReadOnlyComponents) {
  Vmcs v;
  uint64_t value = 7;
  EXPECT_EQ(v.read(0x0002, &value), VmcsAccess::Unsupported);  // posted-interrupt vector: not offered
  EXPECT_EQ(static_cast<uint32_t>(VmcsAccess::Unsupported), 12u);
  EXPECT_EQ(v.read(0x1000 | 0x681E, &value), VmcsAccess::Unsupported);  // reserved bit 12
  EXPECT_EQ(v.read(0x8000 | 0x681E, &value), VmcsAccess::Unsupported);  // bits 31:15
  EXPECT_EQ(value, 7u);
  EXPECT_EQ(v.write(0x4402, 1), VmcsAccess::ReadOnly);  // exit reason
  EXPECT_EQ(static_cast<uint32_t>(VmcsAccess::ReadOnly), 13u);
  v.set(VmcsField::ExitReason, 28);  // the processor's own write
  EXPECT_EQ(v.read(0x4402, &value), VmcsAccess::Ok);
  EXPECT_EQ(value, 28u);
  EXPECT_STREQ(vmcs_field_name(0x6C16), "HostRip");
  EXPECT_EQ(vmcs_field_name(0x0002), nullptr);
  EXPECT_EQ(v.get(VmcsField::VmcsLinkPointer), ~0ull);  // no shadow VMCS
}

TEST(Vmcs, EveryFieldHasItsOwnStorage) {
  Vmcs v;
  uint32_t n = 0;
  std::set<uint32_t> encodings;
  for (uint32_t e = 0; e < 0x8000; e += 2) {
    if (!vmcs_field_name(e)) continue;
    if (field_type(e) != VmcsFieldType::ExitInformation) {
      EXPECT_EQ(v.write(e, 0x100 + n), VmcsAccess::Ok);
    }
    encodings.insert(e);
    ++n;
  }
  EXPECT_EQ(n, 131u);
  n = 0;
  for (uint32_t e : encodings) {
    uint64_t value = 0;
    v.read(e, &value);
    if (field_type(e) != VmcsFieldType::ExitInformation) {
      EXPECT_EQ(value, 0x100u + n) << vmcs_field_name(e);
    }
    ++n;
  }
}

TEST(VmxExitReasons, NumbersNamesAndDescriptions) {
  EXPECT_EQ(static_cast<unsigned>(ExitReason::CrAccess), 28u);
  EXPECT_STREQ(exit_reason_name(0), "exception_or_nmi");
  EXPECT_STREQ(exit_reason_name(2), "triple_fault");
  EXPECT_STREQ(exit_reason_name(30), "io_instruction");
  EXPECT_STREQ(exit_reason_name(43), "tpr_below_threshold");
  EXPECT_STREQ(exit_reason_name(48), "ept_violation");
  EXPECT_STREQ(exit_reason_name(55), "xsetbv");
  EXPECT_EQ(exit_reason_name(35), nullptr);  // not defined by the SDM
  EXPECT_NE(exit_reason_description(49), nullptr);
  unsigned count = 0;
  const ExitReasonInfo* all = exit_reasons(&count);
  std::set<std::string> names;
  for (unsigned k = 0; k < count; ++k) names.insert(all[k].name);
  EXPECT_EQ(names.size(), count);  // statistic names are unique
  EXPECT_EQ(count, 62u);
}

TEST(VmxCapabilities, TableValues) {
  const uint64_t basic = vmx_capability(IA32_VMX_BASIC);
  EXPECT_EQ(basic & 0x7FFFFFFF, kVmcsRevision);
  EXPECT_EQ((basic >> 32) & 0x1FFF, 4096u);
  EXPECT_TRUE(basic & (1ull << 55));  // TRUE controls
  // Pin-based: bits 1, 2, 4 default to 1; external-interrupt and NMI exiting may be 1.
  const uint64_t pin = vmx_capability(IA32_VMX_TRUE_PINBASED_CTLS);
  EXPECT_TRUE(controls_allowed(0x16 | PIN_EXTERNAL_INTERRUPT_EXITING | PIN_NMI_EXITING, pin));
  EXPECT_FALSE(controls_allowed(0x16 | (1u << 6), pin));  // VMX-preemption timer: not offered
  EXPECT_FALSE(controls_allowed(0, pin));                 // default1 bits clear
  // CR3-load exiting may be 0 only under the TRUE MSR.
  EXPECT_EQ(vmx_capability(IA32_VMX_PROCBASED_CTLS) & PROC_CR3_LOAD_EXITING, uint64_t(PROC_CR3_LOAD_EXITING));
  EXPECT_EQ(vmx_capability(IA32_VMX_TRUE_PROCBASED_CTLS) & PROC_CR3_LOAD_EXITING, 0u);
  EXPECT_EQ(vmx_capability(IA32_VMX_CR0_FIXED0), uint64_t(CR0_PE | CR0_NE | CR0_PG));
  EXPECT_EQ(vmx_capability(IA32_VMX_CR4_FIXED0), uint64_t(CR4_VMXE));
  EXPECT_EQ(vmx_capability(IA32_VMX_VMCS_ENUM), 0x2Au);  // highest index 15H (guest SYSENTER_CS)
  EXPECT_EQ((vmx_capability(IA32_VMX_MISC) >> 16) & 0x1FF, 4u);
  EXPECT_THROW(vmx_capability(static_cast<VmxCapabilityMsr>(0x491)), std::out_of_range);
  unsigned count = 0;
  const VmxCapability* all = vmx_capabilities(&count);
  ASSERT_EQ(count, 17u);
  for (unsigned k = 0; k < count; ++k) EXPECT_EQ(all[k].msr, IA32_VMX_BASIC + k);
}

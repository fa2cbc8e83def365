// VMX for guest code (isa/vmx/guest_vmx.h) at the instruction level: what a processor without VMX
// does with the VMX instructions and registers, and with VMX, the #UD and #GP checks that come
// before any VMsucceed or VMfail (Intel SDM vol. 3, ch. 31), IA32_FEATURE_CONTROL, and the VMCS
// region in memory. The VM-instruction errors and exits are checked end to end by the guest
// hypervisor test kernel (tests/platforms/platform_test.cpp, GuestHypervisor*).
#include "isa/vmx/guest_vmx.h"

#include <gtest/gtest.h>

#include "isa/system/system_config.h"
#include "vmx_harness.h"

using namespace pgsim::isa;
using namespace pgsim::isa::vmx;
using namespace pgsim::test;

namespace {

constexpr uint64_t kRegion = 0x200000, kVmcsRegion = 0x201000;
constexpr uint64_t kOperand = 0x202000;  // the m64 operand of VMXON, VMPTRLD, VMCLEAR: a region's address
const std::vector<uint8_t> kVmxonRax = {0xF3, 0x0F, 0xC7, 0x30};    // VMXON [RAX]
const std::vector<uint8_t> kVmptrldRax = {0x0F, 0xC7, 0x30};        // VMPTRLD [RAX]
const std::vector<uint8_t> kVmclearRax = {0x66, 0x0F, 0xC7, 0x30};  // VMCLEAR [RAX]
const std::vector<uint8_t> kVmwriteRaxRcx = {0x0F, 0x79, 0xC1};     // VMWRITE RAX (field), RCX
const std::vector<uint8_t> kCpuid = {0x0F, 0xA2};
const std::vector<uint8_t> kMovCr4Rax = {0x0F, 0x22, 0xE0};
const std::vector<uint8_t> kRdmsr = {0x0F, 0x32}, kWrmsr = {0x0F, 0x30};

// Takes every exception and stops the run there: the test reads it from Core::last_fault() (the
// harness has no IDT gates).
struct TakeEveryEvent : TrapHook {
  bool on_event(Core& core, const Event&) override {
    core.request_stop();
    return true;
  }
};

struct GuestVmxMachine : SystemMachine {
  SystemConfig config;
  std::unique_ptr<GuestVmx> vmx;
  SystemConfigBinding binding{core, config};
  TakeEveryEvent events;

  explicit GuestVmxMachine(bool with_vmx) : SystemMachine(true) {
    core.set_trap_hook(&events, false);
    if (with_vmx) {
      vmx = std::make_unique<GuestVmx>(core, nullptr, nullptr);
      config.vmx = vmx.get();
    }
    ram.put<uint32_t>(kRegion, kVmcsRevision);
    ram.put<uint32_t>(kVmcsRegion, kVmcsRevision);
  }
  // Runs `code` at kCode; returns true when it completed, false when it faulted (last_fault()).
  bool exec(const std::vector<uint8_t>& code) {
    load_code(kCode, code);
    return core.step() == 1;
  }
  uint8_t fault() const { return core.last_fault().vector; }
  // RAX points at an m64 operand holding `region`.
  void operand(uint64_t region) {
    ram.put<uint64_t>(kOperand, region);
    reg(RAX) = kOperand;
  }
  bool wrmsr(uint32_t msr, uint64_t value) {
    reg(RCX) = msr;
    reg(RAX) = value & 0xFFFFFFFF;
    reg(RDX) = value >> 32;
    return exec(kWrmsr);
  }
  void enter_vmx_operation() {
    state().cr4 |= CR4_VMXE;
    ASSERT_TRUE(wrmsr(IA32_FEATURE_CONTROL, FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMX_OUTSIDE_SMX));
    operand(kRegion);
    ASSERT_TRUE(exec(kVmxonRax));
    ASSERT_FALSE(state().rflags & (CF | ZF));  // VMsucceed
  }
};

TEST(GuestVmx, WithoutVmxTheInstructionsAndRegistersDoNotExist) {
  GuestVmxMachine m(false);
  m.reg(RAX) = 1;
  ASSERT_TRUE(m.exec(kCpuid));
  EXPECT_FALSE(m.reg(RCX) & (1u << 5));  // CPUID.1:ECX.VMX
  m.operand(kRegion);
  EXPECT_FALSE(m.exec(kVmxonRax));
  EXPECT_EQ(m.fault(), UD);
  EXPECT_FALSE(m.exec(kVmptrldRax));
  EXPECT_EQ(m.fault(), UD);
  m.reg(RAX) = m.state().cr4 | CR4_VMXE;
  EXPECT_FALSE(m.exec(kMovCr4Rax));
  EXPECT_EQ(m.fault(), GP);
  m.reg(RCX) = IA32_VMX_BASIC;
  EXPECT_FALSE(m.exec(kRdmsr));
  EXPECT_EQ(m.fault(), GP);
  EXPECT_TRUE(m.core.unimplemented().empty());  // implemented: #UD is what a CPU without VMX does
}

TEST(GuestVmx, VmxonChecksVmxeThenFeatureControl) {
  GuestVmxMachine m(true);
  m.reg(RAX) = 1;
  ASSERT_TRUE(m.exec(kCpuid));
  EXPECT_TRUE(m.reg(RCX) & (1u << 5));
  m.operand(kRegion);
  EXPECT_FALSE(m.exec(kVmxonRax));  // CR4.VMXE = 0
  EXPECT_EQ(m.fault(), UD);
  m.reg(RAX) = m.state().cr4 | CR4_VMXE;
  ASSERT_TRUE(m.exec(kMovCr4Rax));
  m.operand(kRegion);
  EXPECT_FALSE(m.exec(kVmxonRax));  // IA32_FEATURE_CONTROL unlocked
  EXPECT_EQ(m.fault(), GP);
  EXPECT_FALSE(m.wrmsr(IA32_FEATURE_CONTROL, FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMX_IN_SMX));  // no SMX
  ASSERT_TRUE(m.wrmsr(IA32_FEATURE_CONTROL, FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMX_OUTSIDE_SMX));
  EXPECT_FALSE(m.wrmsr(IA32_FEATURE_CONTROL, 0));  // locked until reset
  EXPECT_EQ(m.fault(), GP);
  m.operand(kRegion);
  ASSERT_TRUE(m.exec(kVmxonRax));
  EXPECT_FALSE(m.state().rflags & (CF | ZF));
  EXPECT_TRUE(m.vmx->in_vmx_operation());
}

TEST(GuestVmx, CapabilityMsrsAreTheModelsTableAndReadOnly) {
  GuestVmxMachine m(true);
  unsigned count = 0;
  const VmxCapability* caps = vmx_capabilities(&count);
  for (unsigned k = 0; k < count; ++k) {
    m.reg(RCX) = caps[k].msr;
    ASSERT_TRUE(m.exec(kRdmsr)) << caps[k].name;
    EXPECT_EQ((m.reg(RDX) << 32) | m.reg(RAX), caps[k].value) << caps[k].name;
    EXPECT_FALSE(m.wrmsr(caps[k].msr, caps[k].value)) << caps[k].name;
    EXPECT_EQ(m.fault(), GP);
  }
}

TEST(GuestVmx, VmxOperationKeepsTheFixedCrBits) {
  GuestVmxMachine m(true);
  m.enter_vmx_operation();
  m.reg(RAX) = m.state().cr4 & ~uint64_t{CR4_VMXE};
  EXPECT_FALSE(m.exec(kMovCr4Rax));  // IA32_VMX_CR4_FIXED0: VMXE
  EXPECT_EQ(m.fault(), GP);
  EXPECT_TRUE(m.state().cr4 & CR4_VMXE);
}

// The current VMCS is cached and written back on VMCLEAR in the model's layout: the revision
// untouched, the launch state at +8, the fields from +16 in Vmcs::storage() order.
TEST(GuestVmx, VmclearWritesTheCachedVmcsBackToItsRegion) {
  GuestVmxMachine m(true);
  m.enter_vmx_operation();
  m.operand(kVmcsRegion);
  ASSERT_TRUE(m.exec(kVmptrldRax));
  EXPECT_EQ(m.vmx->current_vmcs_pointer(), kVmcsRegion);
  m.reg(RAX) = static_cast<uint32_t>(VmcsField::GuestRip);
  m.reg(RCX) = 0x123456789ull;
  ASSERT_TRUE(m.exec(kVmwriteRaxRcx));
  EXPECT_FALSE(m.state().rflags & (CF | ZF));
  Vmcs expected;
  expected.storage() = {};
  expected.set(VmcsField::GuestRip, 0x123456789ull);
  m.operand(kVmcsRegion);
  ASSERT_TRUE(m.exec(kVmclearRax));
  EXPECT_EQ(m.vmx->current_vmcs_pointer(), ~0ull);
  EXPECT_EQ(m.ram.get<uint32_t>(kVmcsRegion), kVmcsRevision);
  EXPECT_EQ(m.ram.get<uint32_t>(kVmcsRegion + kVmcsLaunchStateOffset), 0u);
  for (unsigned k = 0; k < Vmcs::kStorageSlots; ++k)
    EXPECT_EQ(m.ram.get<uint64_t>(kVmcsRegion + kVmcsFieldsOffset + 8 * k), expected.storage()[k]) << k;
}

}  // namespace

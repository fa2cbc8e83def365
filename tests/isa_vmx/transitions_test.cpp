// VM entry and VM exit (Intel SDM vol. 3, ch. 27 and 28): the checks with their error numbers,
// the entry-failure exit, event injection through the guest IDT, and a round trip.
#include "isa/vmx/transitions.h"

#include <gtest/gtest.h>

#include "vmx_harness.h"

using namespace pgsim::isa;
using namespace pgsim::isa::vmx;
using namespace pgsim::test;
using F = VmcsField;

TEST(VmxEntry, AcceptsAConsistentVmcs) {
  VmxMachine m;
  m.make_enterable();
  m.state().rip = 0x12345;  // the VMM's own RIP: replaced by the guest's
  const uint64_t guest_rip = m.vmcs.get(F::GuestRip);
  VmEntryResult r = vm_entry(m.vmcs, m.core);
  EXPECT_TRUE(r.entered);
  EXPECT_EQ(r.error, VmInstructionError::None);
  EXPECT_EQ(m.state().rip, guest_rip);
}

TEST(VmxEntry, ReservedControlBitGivesError7) {
  VmxMachine m;
  m.make_enterable();
  m.vmcs.set(F::PinBasedControls, m.vmcs.get(F::PinBasedControls) | (1u << 6));  // preemption timer
  const CpuState before = m.state();
  VmEntryResult r = vm_entry(m.vmcs, m.core);
  EXPECT_FALSE(r.entered);
  EXPECT_EQ(static_cast<uint32_t>(r.error), 7u);
  EXPECT_EQ(m.vmcs.get(F::VmInstructionError), 7u);
  EXPECT_EQ(m.state().rip, before.rip);  // VMfailValid: nothing else changes
  // A default1 bit cleared is as wrong as an unsupported bit set.
  m.make_enterable();
  m.vmcs.set(F::PinBasedControls, 0);
  EXPECT_EQ(static_cast<uint32_t>(vm_entry(m.vmcs, m.core).error), 7u);
}

TEST(VmxEntry, OtherControlChecks) {
  VmxMachine m;
  m.make_enterable();
  m.vmcs.set(F::PinBasedControls, m.vmcs.get(F::PinBasedControls) | PIN_VIRTUAL_NMIS);  // without NMI exiting
  EXPECT_EQ(check_controls(m.vmcs, m.ram), VmInstructionError::EntryInvalidControlFields);
  m.make_enterable();
  m.set_proc(m.vmcs.get32(F::ProcBasedControls) | PROC_USE_IO_BITMAPS);
  m.vmcs.set(F::IoBitmapA, 0x100800);  // not page-aligned
  EXPECT_EQ(check_controls(m.vmcs, m.ram), VmInstructionError::EntryInvalidControlFields);
  m.vmcs.set(F::IoBitmapA, kIoBitmapA);
  m.vmcs.set(F::IoBitmapB, kIoBitmapB);
  EXPECT_EQ(check_controls(m.vmcs, m.ram), VmInstructionError::None);
  m.set_proc2(PROC2_UNRESTRICTED_GUEST);  // needs EPT
  EXPECT_EQ(check_controls(m.vmcs, m.ram), VmInstructionError::EntryInvalidControlFields);
  m.set_proc2(PROC2_UNRESTRICTED_GUEST | PROC2_ENABLE_EPT);
  m.vmcs.set(F::EptPointer, 0x200000 | (3 << 3) | 6);  // WB, 4 levels
  EXPECT_EQ(check_controls(m.vmcs, m.ram), VmInstructionError::None);
  m.vmcs.set(F::EptPointer, 0x200000 | (2 << 3) | 6);  // 3 levels
  EXPECT_EQ(check_controls(m.vmcs, m.ram), VmInstructionError::EntryInvalidControlFields);
  // Injection: #GP must carry an error code in protected mode, an NMI must be vector 2.
  m.make_enterable();
  m.vmcs.set(F::EntryInterruptionInfo, interruption_info(GP, InterruptionType::HardwareException, false));
  EXPECT_EQ(check_controls(m.vmcs, m.ram), VmInstructionError::EntryInvalidControlFields);
  m.vmcs.set(F::EntryInterruptionInfo, interruption_info(3, InterruptionType::Nmi, false));
  EXPECT_EQ(check_controls(m.vmcs, m.ram), VmInstructionError::EntryInvalidControlFields);
  // The error code's bits 31:16 are 0; #GP(0xFFFC), a selector error code, can be injected.
  m.vmcs.set(F::EntryInterruptionInfo, interruption_info(GP, InterruptionType::HardwareException, true));
  m.vmcs.set(F::EntryExceptionErrorCode, 0xFFFC);
  EXPECT_EQ(check_controls(m.vmcs, m.ram), VmInstructionError::None);
  m.vmcs.set(F::EntryExceptionErrorCode, 0x10000);
  EXPECT_EQ(check_controls(m.vmcs, m.ram), VmInstructionError::EntryInvalidControlFields);
}

TEST(VmxEntry, HostCr0WithoutNeGivesError8) {
  VmxMachine m;
  m.make_enterable();
  m.vmcs.set(F::HostCr0, m.vmcs.get(F::HostCr0) & ~uint64_t(CR0_NE));
  VmEntryResult r = vm_entry(m.vmcs, m.core);
  EXPECT_FALSE(r.entered);
  EXPECT_EQ(static_cast<uint32_t>(r.error), 8u);
  EXPECT_EQ(m.vmcs.get(F::VmInstructionError), 8u);
  // Other host-state checks: a TR selector of 0, a host RIP that is not canonical, a 32-bit host
  // from IA-32e mode.
  m.make_enterable();
  m.vmcs.set(F::HostTrSelector, 0);
  EXPECT_EQ(check_host_state(m.vmcs, m.state()), VmInstructionError::EntryInvalidHostStateFields);
  m.make_enterable();
  m.vmcs.set(F::HostRip, 0x0000800000000000);
  EXPECT_EQ(check_host_state(m.vmcs, m.state()), VmInstructionError::EntryInvalidHostStateFields);
  m.make_enterable();
  m.vmcs.set(F::ExitControls, m.vmcs.get32(F::ExitControls) & ~EXIT_HOST_ADDRESS_SPACE_SIZE);
  EXPECT_EQ(check_host_state(m.vmcs, m.state()), VmInstructionError::EntryInvalidHostStateFields);
}

TEST(VmxEntry, InvalidGuestStateIsAnEntryFailureExitToTheHost) {
  VmxMachine m;
  m.make_enterable();
  m.vmcs.set(F::GuestRflags, 0);  // bit 1 must be 1
  VmEntryResult r = vm_entry(m.vmcs, m.core);
  EXPECT_FALSE(r.entered);
  ASSERT_TRUE(r.failure);
  EXPECT_EQ(m.vmcs.get(F::ExitReason), 0x80000021u);  // 33 with bit 31
  EXPECT_EQ(m.vmcs.get(F::ExitQualification), 0u);
  EXPECT_EQ(m.state().rip, kHostRip);  // host state loaded
  EXPECT_EQ(m.state().gpr[RSP], kHostRsp);
  EXPECT_EQ(m.state().rflags, uint64_t(RF1));
  // A VMCS link pointer other than all ones: qualification 4.
  m.make_enterable();
  m.vmcs.set(F::VmcsLinkPointer, 0x5000);
  EXPECT_EQ(check_guest_state(m.vmcs), EntryFailureQualification::InvalidVmcsLinkPointer);
  // IA-32e mode guest without CR4.PAE; CS with DPL 3 and SS with DPL 0.
  m.make_enterable();
  m.vmcs.set(F::GuestCr4, CR4_VMXE);
  EXPECT_EQ(check_guest_state(m.vmcs), EntryFailureQualification::Default);
  m.make_enterable();
  m.vmcs.set(F::GuestCsAccessRights, m.vmcs.get32(F::GuestCsAccessRights) | (3u << 5));
  EXPECT_EQ(check_guest_state(m.vmcs), EntryFailureQualification::Default);
  m.make_enterable();
  EXPECT_EQ(check_guest_state(m.vmcs), std::nullopt);
}

TEST(VmxEntry, InjectsAnExternalInterruptThroughTheGuestIdt) {
  VmxMachine m;
  m.handler(0x30);
  m.state().rflags = RF1 | IF;
  m.state().rip = 0x401000;
  m.make_enterable();
  m.vmcs.set(F::EntryInterruptionInfo, interruption_info(0x30, InterruptionType::External, false));
  VmEntryResult r = vm_entry(m.vmcs, m.core);
  ASSERT_TRUE(r.entered);
  const uint64_t sp = (kKernelStack - 0x100) & ~0xFull;
  EXPECT_EQ(m.state().rip, kHandler + 0x30 * 16);
  EXPECT_EQ(m.stack<uint64_t>(sp - 40), 0x401000u);        // the guest RIP
  EXPECT_EQ(m.stack<uint64_t>(sp - 24), uint64_t(RF1 | IF));  // the guest RFLAGS
  EXPECT_EQ(m.reg(RSP), sp - 40);
  EXPECT_EQ(m.state().rflags & IF, 0u);  // through an interrupt gate
  // An external interrupt needs IF = 1 in the guest: otherwise the guest state is invalid.
  VmxMachine n;
  n.make_enterable();
  n.vmcs.set(F::EntryInterruptionInfo, interruption_info(0x30, InterruptionType::External, false));
  EXPECT_EQ(check_guest_state(n.vmcs), EntryFailureQualification::Default);
}

TEST(VmxEntry, InjectsAPageFaultWithItsErrorCode) {
  VmxMachine m;
  m.handler(PF_);
  m.state().rip = 0x402000;
  m.state().cr2 = 0xBAD000;  // the VMM's CR2 for the guest: injection does not load CR2
  m.make_enterable();
  m.vmcs.set(F::EntryInterruptionInfo, interruption_info(PF_, InterruptionType::HardwareException, true));
  m.vmcs.set(F::EntryExceptionErrorCode, PFERR_P | PFERR_W);
  ASSERT_TRUE(vm_entry(m.vmcs, m.core).entered);
  const uint64_t sp = (kKernelStack - 0x100) & ~0xFull;
  EXPECT_EQ(m.state().rip, kHandler + PF_ * 16);
  EXPECT_EQ(m.stack<uint64_t>(sp - 40), 0x402000u);
  EXPECT_EQ(m.stack<uint64_t>(sp - 48), uint64_t(PFERR_P | PFERR_W));
  EXPECT_EQ(m.state().cr2, 0xBAD000u);
  // The next exit clears the valid bit of the VM-entry interruption information.
  VmExit hlt;
  hlt.reason = ExitReason::Hlt;
  vm_exit(m.vmcs, m.core, hlt);
  EXPECT_EQ(m.vmcs.get32(F::EntryInterruptionInfo) & kInterruptionValid, 0u);
}

TEST(VmxEntry, InjectedSoftwareInterruptReturnsPastTheInstruction) {
  VmxMachine m;
  m.handler(0x80, 3);
  m.state().rip = 0x403000;
  m.make_enterable();
  m.vmcs.set(F::EntryInterruptionInfo, interruption_info(0x80, InterruptionType::SoftwareInterrupt, false));
  m.vmcs.set(F::EntryInstructionLength, 2);
  ASSERT_TRUE(vm_entry(m.vmcs, m.core).entered);
  const uint64_t sp = (kKernelStack - 0x100) & ~0xFull;
  EXPECT_EQ(m.stack<uint64_t>(sp - 40), 0x403002u);
  EXPECT_EQ(m.state().rip, kHandler + 0x80 * 16);
}

TEST(VmxExit, ExitThenEntryPreservesGuestState) {
  VmxMachine m;
  m.make_enterable();
  m.vmcs.set(F::ExitControls, m.vmcs.get32(F::ExitControls) | EXIT_SAVE_EFER | EXIT_SAVE_PAT | EXIT_LOAD_EFER);
  m.vmcs.set(F::EntryControls, m.vmcs.get32(F::EntryControls) | ENTRY_LOAD_EFER | ENTRY_LOAD_PAT);
  m.vmcs.set(F::HostEfer, EFER_LMA | EFER_LME);
  m.vmcs.set(F::GuestEfer, m.state().efer);
  m.vmcs.set(F::GuestPat, m.state().pat);
  VmEntryResult first = vm_entry(m.vmcs, m.core);
  ASSERT_TRUE(first.entered) << static_cast<unsigned>(first.error) << " " << first.failure.has_value();
  // The guest runs and changes its state.
  CpuState& s = m.state();
  s.rip = 0xFFFF800000101234;
  s.gpr[RSP] = 0xFFFF800000200000;
  s.rflags = RF1 | IF | CF | ZF;
  s.cr3 = 0x7000;
  s.seg[FS].base = 0x7FFF12340000;
  s.seg[ES] = Segment{0, 0, 0, 0};  // a null data segment: unusable
  s.gdtr = {0xFFFF800000003000, 0x3F};
  s.idtr = {0xFFFF800000004000, 0xFFF};
  s.pat = 0x0006060606060606;
  s.sysenter_eip = 0xFFFF800000005000;
  s.interrupt_shadow = true;
  s.halted = false;
  m.core.sync_mode();
  const CpuState guest = s;
  VmExit e;
  e.reason = ExitReason::Cpuid;
  e.instruction_length = 2;
  vm_exit(m.vmcs, m.core, e);
  // Exit information and the host state.
  EXPECT_EQ(m.vmcs.get(F::ExitReason), 10u);
  EXPECT_EQ(m.vmcs.get(F::ExitInstructionLength), 2u);
  EXPECT_EQ(s.rip, kHostRip);
  EXPECT_EQ(s.seg[CS].selector, kKernelCode);
  EXPECT_TRUE(s.seg[CS].l());
  EXPECT_EQ(s.tr.selector, kTssSel);
  EXPECT_EQ(s.tr.limit, 0x67u);
  EXPECT_EQ(s.gdtr.limit, 0xFFFF);
  EXPECT_EQ(s.dr[7], 0x400u);
  EXPECT_FALSE(s.interrupt_shadow);
  EXPECT_EQ(m.vmcs.get(F::GuestEsAccessRights) & kAccessRightsUnusable, kAccessRightsUnusable);
  EXPECT_EQ(m.vmcs.get(F::GuestInterruptibility), uint64_t(BLOCKING_BY_STI));
  // Back into the guest: the same state (GPRs other than RSP are the VMM's to switch).
  ASSERT_TRUE(vm_entry(m.vmcs, m.core).entered);
  EXPECT_EQ(s.rip, guest.rip);
  EXPECT_EQ(s.gpr[RSP], guest.gpr[RSP]);
  EXPECT_EQ(s.rflags, guest.rflags);
  EXPECT_EQ(s.cr0, guest.cr0);
  EXPECT_EQ(s.cr3, guest.cr3);
  EXPECT_EQ(s.cr4, guest.cr4);
  EXPECT_EQ(s.efer, guest.efer);
  EXPECT_EQ(s.pat, guest.pat);
  EXPECT_EQ(s.sysenter_eip, guest.sysenter_eip);
  for (unsigned r = 0; r < kNumSegRegs; ++r) {
    EXPECT_EQ(s.seg[r].selector, guest.seg[r].selector) << r;
    EXPECT_EQ(s.seg[r].base, guest.seg[r].base) << r;
    EXPECT_EQ(s.seg[r].limit, guest.seg[r].limit) << r;
    EXPECT_EQ(s.seg[r].attr, guest.seg[r].attr) << r;
  }
  EXPECT_EQ(s.tr.attr, guest.tr.attr);
  EXPECT_EQ(s.tr.base, guest.tr.base);
  EXPECT_EQ(s.ldtr.attr, guest.ldtr.attr);
  EXPECT_EQ(s.gdtr.base, guest.gdtr.base);
  EXPECT_EQ(s.gdtr.limit, guest.gdtr.limit);
  EXPECT_EQ(s.idtr.base, guest.idtr.base);
  EXPECT_TRUE(s.interrupt_shadow);
  EXPECT_EQ(m.core.mode(), Mode::Long64);
}

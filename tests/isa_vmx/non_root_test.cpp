// Instructions in VMX non-root operation (Intel SDM vol. 3, 26.1, 26.3, 30.3): every exit
// condition on and off with its basic exit reason and qualification, and the faults that take
// priority over an exit (26.1.1).
#include "isa/vmx/non_root.h"

#include <gtest/gtest.h>

#include "vmx_harness.h"

using namespace pgsim::isa;
using namespace pgsim::isa::vmx;
using namespace pgsim::test;
using F = VmcsField;

namespace {

// The decision is an exit with SDM reason `number`; returns it for further checks.
VmExit expect_exit(const InsnDecision& d, unsigned number) {
  EXPECT_EQ(d.action, NonRootAction::Exit);
  EXPECT_EQ(static_cast<unsigned>(d.exit.reason), number);
  return d.exit;
}
void expect_execute(const InsnDecision& d, Virtualized v = Virtualized::None) {
  EXPECT_EQ(d.action, NonRootAction::Execute);
  EXPECT_EQ(d.virtualized, v);
}
void expect_fault(const InsnDecision& d, uint8_t vector) {
  EXPECT_EQ(d.action, NonRootAction::Raise);
  EXPECT_EQ(d.fault.vector, vector);
}

}  // namespace

TEST(VmxUnconditional, CpuidVmcallInvdXsetbvAndVmxInstructionsExit) {
  VmxMachine m;
  VmExit e = expect_exit(m.decide({0x0F, 0xA2}), 10);  // CPUID
  EXPECT_EQ(e.instruction_length, 2u);
  expect_exit(m.decide({0x0F, 0x01, 0xC1}), 18);  // VMCALL
  expect_exit(m.decide({0x0F, 0x08}), 13);        // INVD
  m.state().cr4 |= CR4_OSXSAVE;
  expect_exit(m.decide({0x0F, 0x01, 0xD1}), 55);  // XSETBV
  e = expect_exit(m.decide({0xF3, 0x0F, 0xC7, 0x70, 0x10}), 27);  // VMXON [rax+0x10]
  EXPECT_EQ(e.qualification, 0x10u);                               // the displacement
  EXPECT_EQ(e.instruction_info & (1u << 27), 0u);                  // base valid: RAX
  EXPECT_EQ(e.instruction_info & (1u << 22), 1u << 22);            // no index
  EXPECT_EQ((e.instruction_info >> 7) & 7, 2u);                    // 64-bit address size
  e = expect_exit(m.decide({0x0F, 0x78, 0xD8}), 23);  // VMREAD rax, rbx
  EXPECT_EQ((e.instruction_info >> 28) & 0xF, 3u);    // register 2: RBX (the encoding)
  EXPECT_EQ((e.instruction_info >> 3) & 0xF, 0u);     // register 1: RAX
  EXPECT_EQ(e.instruction_info & (1u << 10), 1u << 10);
}

TEST(VmxUnconditional, FaultsOfTheirOwnComeFirst) {
  VmxMachine m;
  expect_fault(m.decide({0x0F, 0x01, 0xD1}), UD);  // XSETBV with CR4.OSXSAVE = 0: #UD
  expect_fault(m.decide({0x0F, 0x37}), UD);        // GETSEC without CR4.SMXE: #UD
  m.enter_user(0x1000, 0x7000);
  expect_fault(m.decide({0x0F, 0x08}), GP);        // INVD at CPL 3: #GP before the exit
  expect_exit(m.decide({0x0F, 0xA2}), 10);         // CPUID exits at any CPL
  expect_exit(m.decide({0x0F, 0x01, 0xC1}), 18);   // and so does VMCALL
}

TEST(VmxConditional, HltInvlpgRdpmcRdtscMwaitPauseWbinvd) {
  VmxMachine m;
  expect_execute(m.decide({0xF4}));
  m.set_proc(PROC_HLT_EXITING);
  expect_exit(m.decide({0xF4}), 12);

  m.state().gpr[RAX] = 0xFFFF800000123456;
  expect_execute(m.decide({0x0F, 0x01, 0x38}));
  m.set_proc(PROC_INVLPG_EXITING);
  EXPECT_EQ(expect_exit(m.decide({0x0F, 0x01, 0x38}), 14).qualification, 0xFFFF800000123456u);

  expect_execute(m.decide({0x0F, 0x33}));
  m.set_proc(PROC_RDPMC_EXITING);
  expect_exit(m.decide({0x0F, 0x33}), 15);

  expect_execute(m.decide({0x0F, 0x31}));
  m.set_proc(PROC_USE_TSC_OFFSETTING);
  expect_execute(m.decide({0x0F, 0x31}), Virtualized::Rdtsc);
  m.set_proc(PROC_RDTSC_EXITING | PROC_USE_TSC_OFFSETTING);
  expect_exit(m.decide({0x0F, 0x31}), 16);

  expect_execute(m.decide({0x0F, 0x01, 0xC9}));  // MWAIT
  m.set_proc(PROC_MWAIT_EXITING | PROC_MONITOR_EXITING | PROC_PAUSE_EXITING);
  expect_exit(m.decide({0x0F, 0x01, 0xC9}), 36);
  expect_exit(m.decide({0x0F, 0x01, 0xC8}), 39);  // MONITOR
  expect_exit(m.decide({0xF3, 0x90}), 40);        // PAUSE
  m.set_proc(0);
  expect_execute(m.decide({0xF3, 0x90}));

  expect_execute(m.decide({0x0F, 0x09}));
  m.set_proc2(PROC2_WBINVD_EXITING);
  expect_exit(m.decide({0x0F, 0x09}), 54);
}

TEST(VmxConditional, SecondaryControlsCountOnlyWhenActivated) {
  VmxMachine m;
  m.vmcs.set(F::SecondaryProcBasedControls, PROC2_WBINVD_EXITING);  // not activated
  expect_execute(m.decide({0x0F, 0x09}));
}

TEST(VmxConditional, RdtscpAndInvpcidNeedTheirEnableControls) {
  VmxMachine m;
  expect_fault(m.decide({0x0F, 0x01, 0xF9}), UD);  // RDTSCP without "enable RDTSCP"
  m.set_proc2(PROC2_ENABLE_RDTSCP);
  expect_execute(m.decide({0x0F, 0x01, 0xF9}));
  m.set_proc(PROC_RDTSC_EXITING);
  m.set_proc2(PROC2_ENABLE_RDTSCP);
  expect_exit(m.decide({0x0F, 0x01, 0xF9}), 51);

  const std::vector<uint8_t> invpcid = {0x66, 0x0F, 0x38, 0x82, 0x08};  // INVPCID rcx, [rax]
  m.set_proc(0);
  expect_fault(m.decide(invpcid), UD);
  m.set_proc2(PROC2_ENABLE_INVPCID);
  expect_execute(m.decide(invpcid));
  m.set_proc(PROC_INVLPG_EXITING);
  m.set_proc2(PROC2_ENABLE_INVPCID);
  expect_exit(m.decide(invpcid), 58);
}

TEST(VmxPrecedence, PrivilegeFaultsBeforeConditionalExits) {
  VmxMachine m;
  m.set_proc(PROC_HLT_EXITING | PROC_MOV_DR_EXITING | PROC_RDTSC_EXITING | PROC_CR3_STORE_EXITING);
  m.vmcs.set(F::Cr0GuestHostMask, ~0ull);
  m.enter_user(0x1000, 0x7000);
  expect_fault(m.decide({0xF4}), GP);              // HLT at CPL 3
  expect_fault(m.decide({0x0F, 0x22, 0xC0}), GP);  // MOV CR0, rax at CPL 3
  expect_fault(m.decide({0x0F, 0x20, 0xDE}), GP);  // MOV rsi, CR3 at CPL 3
  expect_fault(m.decide({0x0F, 0x23, 0xF8}), GP);  // MOV DR7 at CPL 3
  expect_fault(m.decide({0x0F, 0x32}), GP);        // RDMSR at CPL 3
  expect_exit(m.decide({0x0F, 0x31}), 16);         // RDTSC at CPL 3 without CR4.TSD exits
  m.state().cr4 |= CR4_TSD;
  expect_fault(m.decide({0x0F, 0x31}), GP);        // with CR4.TSD its #GP comes first
}

TEST(VmxPrecedence, UndefinedDebugRegisterBeforeMovDrExit) {
  VmxMachine m;
  m.set_proc(PROC_MOV_DR_EXITING);
  m.state().cr4 |= CR4_DE;
  expect_fault(m.decide({0x0F, 0x23, 0xE0}), UD);  // MOV DR4, rax with CR4.DE
}

TEST(VmxCrAccess, Cr0MaskAndShadowDecideTheExit) {
  VmxMachine m;
  m.vmcs.set(F::Cr0GuestHostMask, CR0_PG | CR0_CD);
  m.vmcs.set(F::Cr0ReadShadow, CR0_PG);
  // Unmasked bits differ (WP): no exit; masked bits equal the shadow (PG=1, CD=0).
  m.state().gpr[RAX] = CR0_PE | CR0_PG | CR0_ET;
  expect_execute(m.decide({0x0F, 0x22, 0xC0}), Virtualized::MovToCr0);
  // CD set while the shadow has it clear: exit, MOV to CR0 from RAX.
  m.state().gpr[RAX] |= CR0_CD;
  VmExit e = expect_exit(m.decide({0x0F, 0x22, 0xC0}), 28);
  EXPECT_EQ(e.qualification, 0x0u);  // CR0, type 0 (MOV to CR), GPR 0
  // MOV to CR4 from RCX with CR4.PGE owned: qualification CR4 and GPR 1.
  m.vmcs.set(F::Cr4GuestHostMask, CR4_PGE);
  m.state().gpr[RCX] = CR4_PGE;
  EXPECT_EQ(expect_exit(m.decide({0x0F, 0x22, 0xE1}), 28).qualification, 0x104u);
  // The values of the virtualized forms.
  EXPECT_EQ(guest_cr_value(m.vmcs, 0, CR0_PE | CR0_CD | CR0_ET), uint64_t(CR0_PE | CR0_PG | CR0_ET));
  EXPECT_EQ(cr_value_to_load(m.vmcs, 0, CR0_PE | CR0_PG | CR0_ET, CR0_PE | CR0_WP),
            uint64_t(CR0_PE | CR0_PG | CR0_WP));
  expect_execute(m.decide({0x0F, 0x20, 0xC0}), Virtualized::MovFromCr0);
  expect_execute(m.decide({0x0F, 0x20, 0xE2}), Virtualized::MovFromCr4);
}

TEST(VmxCrAccess, Cr3LoadWithTargetsAndCr3Store) {
  VmxMachine m;
  m.state().gpr[RBX] = 0x5000;
  expect_execute(m.decide({0x0F, 0x22, 0xDB}));  // MOV CR3, rbx: no CR3-load exiting
  m.set_proc(PROC_CR3_LOAD_EXITING | PROC_CR3_STORE_EXITING);
  EXPECT_EQ(expect_exit(m.decide({0x0F, 0x22, 0xDB}), 28).qualification, 0x303u);  // CR3, GPR 3
  m.vmcs.set(F::Cr3Target1, 0x5000);
  expect_exit(m.decide({0x0F, 0x22, 0xDB}), 28);  // target count 0: values not considered
  m.vmcs.set(F::Cr3TargetCount, 2);
  expect_execute(m.decide({0x0F, 0x22, 0xDB}));   // one of the first two targets
  m.vmcs.set(F::Cr3TargetCount, 1);
  expect_exit(m.decide({0x0F, 0x22, 0xDB}), 28);
  // MOV rsi, CR3: type 1 (MOV from CR), GPR 6.
  EXPECT_EQ(expect_exit(m.decide({0x0F, 0x20, 0xDE}), 28).qualification, 0x613u);
}

TEST(VmxCrAccess, CltsAndLmsw) {
  VmxMachine m;
  m.vmcs.set(F::Cr0GuestHostMask, CR0_TS);
  expect_execute(m.decide({0x0F, 0x06}), Virtualized::Clts);  // shadow TS = 0
  m.vmcs.set(F::Cr0ReadShadow, CR0_TS);
  EXPECT_EQ(expect_exit(m.decide({0x0F, 0x06}), 28).qualification, 0x20u);  // type 2
  // LMSW ax = 0x0001 with PE owned and clear in the shadow: exit, type 3, register operand.
  m.vmcs.set(F::Cr0GuestHostMask, CR0_PE);
  m.vmcs.set(F::Cr0ReadShadow, 0);
  m.state().gpr[RAX] = 0x0001;
  EXPECT_EQ(expect_exit(m.decide({0x0F, 0x01, 0xF0}), 28).qualification, (1ull << 16) | 0x30u);
  m.state().gpr[RAX] = 0x0008;  // TS only: PE is not being set
  expect_execute(m.decide({0x0F, 0x01, 0xF0}), Virtualized::Lmsw);
  // LMSW [rbx]: the operand is read; memory bit 6, its value in 31:16, its linear address.
  m.vmcs.set(F::Cr0GuestHostMask, CR0_MP);
  m.ram.put<uint16_t>(0x6000, 0x0002);
  m.state().gpr[RBX] = 0x6000;
  VmExit e = expect_exit(m.decide({0x0F, 0x01, 0x33}), 28);
  EXPECT_EQ(e.qualification, (2ull << 16) | 0x70u);
  EXPECT_EQ(e.guest_linear_address, 0x6000u);
  EXPECT_EQ(lmsw_value_to_load(m.vmcs, CR0_PE | CR0_PG, 0x000C), uint64_t(CR0_PE | CR0_PG | CR0_EM | CR0_TS));
}

TEST(VmxCrAccess, Cr8WithAndWithoutTprShadow) {
  VmxMachine m;
  const std::vector<uint8_t> mov_to_cr8 = {0x44, 0x0F, 0x22, 0xC2};    // MOV CR8, rdx
  const std::vector<uint8_t> mov_from_cr8 = {0x44, 0x0F, 0x20, 0xC0};  // MOV rax, CR8
  m.state().gpr[RDX] = 3;
  expect_execute(m.decide(mov_to_cr8));  // no TPR shadow, no exiting: the real CR8
  m.set_proc(PROC_CR8_LOAD_EXITING | PROC_CR8_STORE_EXITING);
  EXPECT_EQ(expect_exit(m.decide(mov_to_cr8), 28).qualification, 0x208u);
  EXPECT_EQ(expect_exit(m.decide(mov_from_cr8), 28).qualification, 0x18u);
  // With a TPR shadow and no exiting, the value goes to the virtual-APIC page.
  m.set_proc(PROC_USE_TPR_SHADOW);
  m.vmcs.set(F::VirtualApicAddress, kVirtualApic);
  expect_execute(m.decide(mov_to_cr8), Virtualized::MovToCr8);
  expect_execute(m.decide(mov_from_cr8), Virtualized::MovFromCr8);
  m.vmcs.set(F::TprThreshold, 2);
  EXPECT_FALSE(write_virtual_tpr(m.vmcs, m.ram, 3));
  EXPECT_EQ(m.ram.get<uint32_t>(kVirtualApic + 0x80), 0x30u);
  EXPECT_EQ(read_virtual_tpr(m.vmcs, m.ram), 3u);
  auto below = write_virtual_tpr(m.vmcs, m.ram, 1);  // below the threshold: exit 43
  ASSERT_TRUE(below);
  EXPECT_EQ(static_cast<unsigned>(below->reason), 43u);
  EXPECT_EQ(m.ram.get<uint32_t>(kVirtualApic + 0x80), 0x10u);
  m.state().gpr[RDX] = 0x10;  // reserved bits of the source: #GP
  expect_fault(m.decide(mov_to_cr8), GP);
}

TEST(VmxDrAccess, MovDrQualification) {
  VmxMachine m;
  expect_execute(m.decide({0x0F, 0x23, 0xF8}));
  m.set_proc(PROC_MOV_DR_EXITING);
  EXPECT_EQ(expect_exit(m.decide({0x0F, 0x23, 0xF8}), 29).qualification, 0x007u);  // MOV DR7, rax
  EXPECT_EQ(expect_exit(m.decide({0x0F, 0x21, 0xF1}), 29).qualification, 0x116u);  // MOV rcx, DR6
}

TEST(VmxIo, UnconditionalAndBitmapsWithQualification) {
  VmxMachine m;
  expect_execute(m.decide({0xE4, 0x60}));  // IN al, 0x60
  m.set_proc(PROC_UNCONDITIONAL_IO_EXITING);
  // IN al, 0x60: size 0, IN, immediate, port 0x60.
  EXPECT_EQ(expect_exit(m.decide({0xE4, 0x60}), 30).qualification, (0x60ull << 16) | 0x48u);
  // OUT dx, eax: size 3, OUT, DX operand.
  m.state().gpr[RDX] = 0x3F8;
  EXPECT_EQ(expect_exit(m.decide({0xEF}), 30).qualification, (0x3F8ull << 16) | 0x3u);
  // The bitmaps take over from unconditional exiting.
  m.set_proc(PROC_UNCONDITIONAL_IO_EXITING | PROC_USE_IO_BITMAPS);
  m.vmcs.set(F::IoBitmapA, kIoBitmapA);
  m.vmcs.set(F::IoBitmapB, kIoBitmapB);
  expect_execute(m.decide({0xEF}));
  m.ram.put<uint8_t>(kIoBitmapA + 0x3FB / 8, 1u << (0x3FB % 8));
  expect_exit(m.decide({0xEF}), 30);  // a 4-byte access at 3F8H covers 3FBH
  m.state().gpr[RDX] = 0x3F7;
  expect_execute(m.decide({0x66, 0xEF}));   // OUT dx, ax at 3F7H: 3F7H-3F8H, neither selected
  m.state().gpr[RDX] = 0x3FA;
  expect_exit(m.decide({0x66, 0xEF}), 30);  // 3FAH-3FBH
}

TEST(VmxIo, AccessAcrossBitmapsAndWrapAround) {
  VmxMachine m;
  m.set_proc(PROC_USE_IO_BITMAPS);
  m.vmcs.set(F::IoBitmapA, kIoBitmapA);
  m.vmcs.set(F::IoBitmapB, kIoBitmapB);
  EXPECT_FALSE(io_bitmap_selects(m.vmcs, m.ram, 0x7FFE, 4));
  m.ram.put<uint8_t>(kIoBitmapB, 0x01);  // port 8000H, in bitmap B
  EXPECT_TRUE(io_bitmap_selects(m.vmcs, m.ram, 0x7FFE, 4));   // 7FFEH-8001H crosses into B
  EXPECT_FALSE(io_bitmap_selects(m.vmcs, m.ram, 0x7FFC, 4));  // 7FFCH-7FFFH stays in A
  EXPECT_TRUE(io_bitmap_selects(m.vmcs, m.ram, 0xFFFF, 2));   // wraps past FFFFH
}

TEST(VmxIo, StringInstructionQualificationAndLinearAddress) {
  VmxMachine m;
  m.set_proc(PROC_UNCONDITIONAL_IO_EXITING);
  m.state().gpr[RDX] = 0x80;
  m.state().gpr[RSI] = 0x4444;
  VmExit e = expect_exit(m.decide({0xF3, 0x6E}), 30);  // REP OUTSB
  EXPECT_EQ(e.qualification, (0x80ull << 16) | 0x30u);  // string, REP, OUT, size 0, DX
  EXPECT_EQ(e.guest_linear_address, 0x4444u);
  EXPECT_EQ((e.instruction_info >> 7) & 7, 2u);   // 64-bit addresses
  EXPECT_EQ((e.instruction_info >> 15) & 7, unsigned(DS));
}

TEST(VmxIo, TssPermissionFaultBeforeTheExit) {
  VmxMachine m;
  m.set_proc(PROC_UNCONDITIONAL_IO_EXITING);
  m.enter_user(0x1000, 0x7000);  // CPL 3 > IOPL 0: the TSS bitmap decides
  expect_exit(m.decide({0xE4, 0x60}), 30);
  m.ram.put<uint8_t>(kTss + 0x68 + 0x60 / 8, 1);  // deny port 60H
  expect_fault(m.decide({0xE4, 0x60}), GP);
}

TEST(VmxMsr, BitmapsLowHighReadWrite) {
  VmxMachine m;
  m.state().gpr[RCX] = 0x10;
  expect_exit(m.decide({0x0F, 0x32}), 31);  // no MSR bitmaps: every RDMSR exits
  expect_exit(m.decide({0x0F, 0x30}), 32);
  m.set_proc(PROC_USE_MSR_BITMAPS);
  m.vmcs.set(F::MsrBitmaps, kMsrBitmaps);
  expect_execute(m.decide({0x0F, 0x32}));
  m.ram.put<uint8_t>(kMsrBitmaps + 2048 + 0x10 / 8, 1u << (0x10 % 8));  // write-low bit of MSR 10H
  expect_execute(m.decide({0x0F, 0x32}));
  expect_exit(m.decide({0x0F, 0x30}), 32);
  // High MSRs: read-high at 1024 for C0000080H.
  EXPECT_FALSE(msr_bitmap_selects(m.vmcs, m.ram, MSR_EFER, false));
  m.ram.put<uint8_t>(kMsrBitmaps + 1024 + 0x80 / 8, 1u << (0x80 % 8));
  EXPECT_TRUE(msr_bitmap_selects(m.vmcs, m.ram, MSR_EFER, false));
  EXPECT_FALSE(msr_bitmap_selects(m.vmcs, m.ram, MSR_EFER, true));
  EXPECT_TRUE(msr_bitmap_selects(m.vmcs, m.ram, 0x40000000, false));  // outside both ranges
  // RDMSR of IA32_TSC without an exit sees the offset TSC.
  m.state().gpr[RCX] = MSR_TSC;
  m.set_proc(PROC_USE_MSR_BITMAPS | PROC_USE_TSC_OFFSETTING);
  expect_execute(m.decide({0x0F, 0x32}), Virtualized::Rdtsc);
  m.vmcs.set(F::TscOffset, static_cast<uint64_t>(-100));
  EXPECT_EQ(guest_tsc(m.vmcs, 1000), 900u);
}

TEST(VmxDescriptorTables, GdtrIdtrAndLdtrTrExits) {
  VmxMachine m;
  expect_execute(m.decide({0x0F, 0x01, 0x40, 0x08}));  // SGDT [rax+8]
  m.set_proc2(PROC2_DESCRIPTOR_TABLE_EXITING);
  VmExit e = expect_exit(m.decide({0x0F, 0x01, 0x40, 0x08}), 46);
  EXPECT_EQ(e.qualification, 8u);
  EXPECT_EQ((e.instruction_info >> 28) & 3, 0u);  // SGDT
  EXPECT_EQ((e.instruction_info >> 23) & 0xF, 0u);  // base RAX
  // LIDT [rcx+rdx*4+0x10]: scaling 2, index RDX, base RCX, identity 3.
  e = expect_exit(m.decide({0x0F, 0x01, 0x5C, 0x91, 0x10}), 46);
  EXPECT_EQ(e.qualification, 0x10u);
  EXPECT_EQ(e.instruction_info & 3, 2u);
  EXPECT_EQ((e.instruction_info >> 18) & 0xF, 2u);
  EXPECT_EQ((e.instruction_info >> 23) & 0xF, 1u);
  EXPECT_EQ(e.instruction_info & ((1u << 22) | (1u << 27)), 0u);
  EXPECT_EQ((e.instruction_info >> 28) & 3, 3u);
  // SLDT ax: register operand (bit 10), reg 0, identity 0; LTR [rdi]: identity 3.
  e = expect_exit(m.decide({0x0F, 0x00, 0xC0}), 47);
  EXPECT_EQ(e.instruction_info & (1u << 10), 1u << 10);
  EXPECT_EQ((e.instruction_info >> 28) & 3, 0u);
  e = expect_exit(m.decide({0x0F, 0x00, 0x1F}), 47);
  EXPECT_EQ((e.instruction_info >> 28) & 3, 3u);
  EXPECT_EQ((e.instruction_info >> 23) & 0xF, 7u);
  // UMIP's #GP at CPL 3 comes before the exit; LGDT's CPL check too.
  m.state().cr4 |= CR4_UMIP;
  m.enter_user(0x1000, 0x7000);
  expect_fault(m.decide({0x0F, 0x01, 0x40, 0x08}), GP);
  expect_fault(m.decide({0x0F, 0x01, 0x13}), GP);
}

TEST(VmxConditional, RdrandExitInformation) {
  VmxMachine m;
  m.set_proc2(PROC2_RDRAND_EXITING);
  VmExit e = expect_exit(m.decide({0x48, 0x0F, 0xC7, 0xF3}), 57);  // RDRAND rbx
  EXPECT_EQ((e.instruction_info >> 3) & 0xF, 3u);
  EXPECT_EQ((e.instruction_info >> 11) & 3, 2u);  // 64-bit operand
}

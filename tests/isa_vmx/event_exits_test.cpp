// Events in VMX non-root operation (Intel SDM vol. 3, 26.2, 26.7, 28.2.2-28.2.4).
#include "isa/vmx/event_exits.h"

#include <gtest/gtest.h>

#include "vmx_harness.h"

using namespace pgsim::isa;
using namespace pgsim::isa::vmx;
using namespace pgsim::test;
using F = VmcsField;

TEST(VmxEvents, ExceptionBitmap) {
  Vmcs vmcs;
  const Event gp{GP, EventKind::Exception, true, 0x18, 0};
  EXPECT_FALSE(exception_exit(vmcs, gp, 0));
  vmcs.set(F::ExceptionBitmap, 1u << GP);
  auto e = exception_exit(vmcs, gp, 0);
  ASSERT_TRUE(e);
  EXPECT_EQ(static_cast<unsigned>(e->reason), 0u);
  EXPECT_EQ(e->interruption_info, 0x80000B0Du);  // valid, error code, hardware exception, 13
  EXPECT_EQ(e->interruption_error_code, 0x18u);
  // INT3 is a software exception (type 6) with its instruction length; INT n never exits.
  vmcs.set(F::ExceptionBitmap, 1u << BP);
  e = exception_exit(vmcs, Event{BP, EventKind::SoftwareException, false, 0, 0}, 1);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->interruption_info, 0x80000603u);
  EXPECT_EQ(e->instruction_length, 1u);
  EXPECT_FALSE(exception_exit(vmcs, Event{BP, EventKind::SoftwareInt, false, 0, 0}, 2));  // INT 3 as CD 03
}

TEST(VmxEvents, PageFaultErrorCodeMaskAndMatch) {
  Vmcs vmcs;
  const Event write_fault{PF_, EventKind::Exception, true, PFERR_P | PFERR_W, 0xDEAD000};
  const Event read_fault{PF_, EventKind::Exception, true, PFERR_P, 0xDEAD000};
  // Bit 14 set, mask W, match W: only write faults exit.
  vmcs.set(F::ExceptionBitmap, 1u << PF_);
  vmcs.set(F::PageFaultErrorCodeMask, PFERR_W);
  vmcs.set(F::PageFaultErrorCodeMatch, PFERR_W);
  auto e = exception_exit(vmcs, write_fault, 0);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->qualification, 0xDEAD000u);  // the faulting linear address
  EXPECT_EQ(e->interruption_info, 0x80000B0Eu);
  EXPECT_EQ(e->interruption_error_code, uint32_t(PFERR_P | PFERR_W));
  EXPECT_FALSE(exception_exit(vmcs, read_fault, 0));
  // Bit 14 clear: the inverse, only the non-matching (read) faults exit.
  vmcs.set(F::ExceptionBitmap, 0);
  EXPECT_FALSE(exception_exit(vmcs, write_fault, 0));
  EXPECT_TRUE(exception_exit(vmcs, read_fault, 0));
  // Mask 0, match 0 with bit 14 set: every #PF exits; match 0xFFFFFFFF: none.
  vmcs.set(F::ExceptionBitmap, 1u << PF_);
  vmcs.set(F::PageFaultErrorCodeMask, 0);
  vmcs.set(F::PageFaultErrorCodeMatch, 0);
  EXPECT_TRUE(exception_bitmap_selects(vmcs, PF_, PFERR_P));
  vmcs.set(F::PageFaultErrorCodeMatch, 0xFFFFFFFF);
  EXPECT_FALSE(exception_bitmap_selects(vmcs, PF_, PFERR_P));
}

TEST(VmxEvents, ExternalInterruptExitingAndAcknowledgeOnExit) {
  Vmcs vmcs;
  CpuState s;
  s.rflags = RF1;  // IF = 0 does not hold back the exit
  EXPECT_FALSE(external_interrupt_exits(vmcs, s));
  vmcs.set(F::PinBasedControls, PIN_EXTERNAL_INTERRUPT_EXITING);
  EXPECT_TRUE(external_interrupt_exits(vmcs, s));
  s.interrupt_shadow = true;
  EXPECT_FALSE(external_interrupt_exits(vmcs, s));
  VmExit e = external_interrupt_exit(vmcs, 0x31);
  EXPECT_EQ(static_cast<unsigned>(e.reason), 1u);
  EXPECT_EQ(e.interruption_info, 0u);  // not acknowledged: no vector
  vmcs.set(F::ExitControls, EXIT_ACK_INTERRUPT_ON_EXIT);
  EXPECT_EQ(external_interrupt_exit(vmcs, 0x31).interruption_info, 0x80000031u);
}

TEST(VmxEvents, NmiExitingAndWindows) {
  Vmcs vmcs;
  CpuState s;
  EXPECT_FALSE(nmi_exit(vmcs));
  vmcs.set(F::PinBasedControls, PIN_NMI_EXITING);
  auto e = nmi_exit(vmcs);
  ASSERT_TRUE(e);
  EXPECT_EQ(static_cast<unsigned>(e->reason), 0u);
  EXPECT_EQ(e->interruption_info, 0x80000202u);  // NMI, vector 2
  // Interrupt window: IF = 1 and no blocking.
  s.rflags = RF1 | IF;
  EXPECT_FALSE(interrupt_window_exit(vmcs, s));
  vmcs.set(F::ProcBasedControls, PROC_INTERRUPT_WINDOW_EXITING | PROC_NMI_WINDOW_EXITING);
  e = interrupt_window_exit(vmcs, s);
  ASSERT_TRUE(e);
  EXPECT_EQ(static_cast<unsigned>(e->reason), 7u);
  s.interrupt_shadow = true;
  EXPECT_FALSE(interrupt_window_exit(vmcs, s));
  EXPECT_FALSE(nmi_window_exit(vmcs, s, false));
  s.interrupt_shadow = false;
  s.rflags = RF1;
  EXPECT_FALSE(interrupt_window_exit(vmcs, s));
  EXPECT_FALSE(nmi_window_exit(vmcs, s, true));
  e = nmi_window_exit(vmcs, s, false);
  ASSERT_TRUE(e);
  EXPECT_EQ(static_cast<unsigned>(e->reason), 8u);
}

TEST(VmxEvents, TripleFaultAndIdtVectoring) {
  VmExit e = triple_fault_exit();
  EXPECT_EQ(static_cast<unsigned>(e.reason), 2u);
  EXPECT_EQ(e.qualification, 0u);
  // A #PF during the delivery of INT 0x80 (2 bytes): IDT-vectoring names INT 0x80 (type 4).
  set_idt_vectoring(e, Event{0x80, EventKind::SoftwareInt, false, 0, 0}, 2);
  EXPECT_EQ(e.idt_vectoring_info, 0x80000480u);
  EXPECT_EQ(e.instruction_length, 2u);
  VmExit f;
  set_idt_vectoring(f, Event{GP, EventKind::Exception, true, 0x10, 0}, 0);
  EXPECT_EQ(f.idt_vectoring_info, 0x80000B0Du);
  EXPECT_EQ(f.idt_vectoring_error_code, 0x10u);
  EXPECT_EQ(f.instruction_length, 0u);
}

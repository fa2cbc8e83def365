// Exception and interrupt delivery, from Intel SDM vol. 3, ch. 6: stack frames byte for byte,
// privilege changes through the TSS, IST, gate checks, double and triple fault.
#include "isa/system/events.h"

#include <gtest/gtest.h>

#include "system_harness.h"

using namespace pgsim::isa;
using namespace pgsim::test;

namespace {

Event exception(uint8_t vector, uint32_t error) { return {vector, EventKind::Exception, true, error, 0}; }

}  // namespace

TEST(EventDelivery, LongModeRing3ToRing0FrameByteForByte) {
  SystemMachine m(true);
  m.handler(GP);
  m.enter_user(0x401234, 0x7FF8);  // a user RSP that is not 16-byte aligned
  m.state().rflags = RF1 | IF | CF;
  deliver_event(m.core, exception(GP, 0x1234));
  m.core.sync_mode();
  // SDM 6.14.2: RSP0 aligned to 16, then SS, RSP, RFLAGS, CS, RIP, error code; 8 bytes each.
  const uint64_t top = kKernelStack;
  EXPECT_EQ(m.stack<uint64_t>(top - 8), kUserData);
  EXPECT_EQ(m.stack<uint64_t>(top - 16), 0x7FF8u);
  EXPECT_EQ(m.stack<uint64_t>(top - 24), RF1 | IF | CF | RF);  // a fault saves RF set (SDM 18.3.1.1)
  EXPECT_EQ(m.stack<uint64_t>(top - 32), kUserCode);
  EXPECT_EQ(m.stack<uint64_t>(top - 40), 0x401234u);
  EXPECT_EQ(m.stack<uint64_t>(top - 48), 0x1234u);
  EXPECT_EQ(m.reg(RSP), top - 48);
  EXPECT_EQ(m.state().rip, kHandler + GP * 16);
  EXPECT_EQ(m.state().cpl(), 0u);
  EXPECT_EQ(m.state().seg[CS].selector, kKernelCode);
  EXPECT_EQ(m.state().seg[SS].selector, 0u);  // a null SS with RPL = new CPL
  EXPECT_EQ(m.state().rflags & IF, 0u);       // an interrupt gate clears IF
  EXPECT_EQ(m.state().rflags & CF, uint64_t(CF));
}

TEST(EventDelivery, LongModeSamePrivilegeAlignsAndTrapGateKeepsIf) {
  SystemMachine m(true);
  m.handler(BP, 3, /*trap=*/true);
  m.state().gpr[RSP] = 0x8FF08;  // ring 0, not aligned
  m.state().rip = 0x5555;
  m.state().rflags = RF1 | IF;
  m.core.sync_mode();
  deliver_event(m.core, Event{BP, EventKind::SoftwareException, false, 0, 0});
  EXPECT_EQ(m.stack<uint64_t>(0x8FF00 - 8), kKernelData);  // SS:RSP are pushed in 64-bit mode always
  EXPECT_EQ(m.stack<uint64_t>(0x8FF00 - 16), 0x8FF08u);
  EXPECT_EQ(m.stack<uint64_t>(0x8FF00 - 40), 0x5555u);
  EXPECT_EQ(m.reg(RSP), 0x8FF00u - 40);
  EXPECT_EQ(m.state().seg[SS].selector, kKernelData);  // no privilege change: SS unchanged
  EXPECT_TRUE(m.state().rflags & IF);
}

TEST(EventDelivery, LongModeIstStack) {
  SystemMachine m(true);
  m.handler(NMI, 0, false, /*ist=*/1);
  m.state().rip = 0x1000;
  deliver_event(m.core, Event{NMI, EventKind::Nmi, false, 0, 0});
  EXPECT_EQ(m.reg(RSP), kIstStack - 40);
  EXPECT_EQ(m.stack<uint64_t>(kIstStack - 40), 0x1000u);
}

TEST(EventDelivery, Prot32Ring3ToRing0ThroughTssFrameByteForByte) {
  SystemMachine m(false);
  m.handler(PF_);
  m.enter_user(0x08049000, 0xBFFFF000);
  m.state().rflags = RF1 | IF | ZF;
  deliver_event(m.core, Event{PF_, EventKind::Exception, true, PFERR_U | PFERR_W, 0xDEADB000});
  // SDM 6.12.1, figure 6-4: SS, ESP, EFLAGS, CS, EIP, error code; 4 bytes each, on SS0:ESP0.
  const uint64_t top = kKernelStack;
  EXPECT_EQ(m.stack<uint32_t>(top - 4), kUserData);
  EXPECT_EQ(m.stack<uint32_t>(top - 8), 0xBFFFF000u);
  EXPECT_EQ(m.stack<uint32_t>(top - 12), RF1 | IF | ZF | RF);  // a fault saves RF set
  EXPECT_EQ(m.stack<uint32_t>(top - 16), kUserCode);
  EXPECT_EQ(m.stack<uint32_t>(top - 20), 0x08049000u);
  EXPECT_EQ(m.stack<uint32_t>(top - 24), PFERR_U | PFERR_W);
  EXPECT_EQ(m.reg(RSP), top - 24);
  EXPECT_EQ(m.state().seg[SS].selector, kKernelData);
  EXPECT_EQ(m.state().seg[CS].selector, kKernelCode);
  EXPECT_EQ(m.state().cpl(), 0u);
  EXPECT_EQ(m.state().cr2, 0xDEADB000u);  // CR2 is loaded with the faulting address
  EXPECT_EQ(m.state().rip, kHandler + PF_ * 16);
}

TEST(EventDelivery, Prot32SamePrivilegeHasNoStackSwitch) {
  SystemMachine m(false);
  m.handler(DE);
  m.state().rip = 0x2222;
  deliver_event(m.core, Event{DE, EventKind::Exception, false, 0, 0});
  const uint64_t sp = kKernelStack - 0x100;
  EXPECT_EQ(m.reg(RSP), sp - 12);
  EXPECT_EQ(m.stack<uint32_t>(sp - 12), 0x2222u);
  EXPECT_EQ(m.stack<uint32_t>(sp - 8), kKernelCode);
}

TEST(EventDelivery, NotPresentGateAndBadVectorRaiseWithIdtErrorCodes) {
  SystemMachine m(true);
  m.handler(GP);
  m.put_idt(0x40, gate(kHandler, kKernelCode, kIntGate, 0, 0, /*present=*/false));
  m.enter_user(0x1000, 0x7000);
  // An external interrupt through a not-present gate: #NP(vector*8 + 2 + EXT), delivered on its own.
  m.handler(NP);
  deliver_event(m.core, Event{0x40, EventKind::External, false, 0, 0});
  EXPECT_EQ(m.state().rip, kHandler + NP * 16);
  EXPECT_EQ(m.stack<uint64_t>(kKernelStack - 48), 0x40u * 8 + 2 + 1);
}

TEST(EventDelivery, SoftwareInterruptChecksGateDpl) {
  SystemMachine m(true);
  m.handler(0x80, 0);  // DPL 0: INT 0x80 from ring 3 is refused
  m.enter_user(0x1000, 0x7000);
  try {
    deliver_event(m.core, Event{0x80, EventKind::SoftwareInt, false, 0, 0});
    FAIL() << "expected #GP";
  } catch (const Fault& f) {
    EXPECT_EQ(f.vector, GP);
    EXPECT_EQ(f.error_code, 0x80u * 8 + 2);
  }
  EXPECT_EQ(m.state().cpl(), 3u);  // nothing changed
  EXPECT_EQ(m.reg(RSP), 0x7000u);
}

TEST(EventDelivery, ContributoryDuringContributoryIsDoubleFault) {
  SystemMachine m(true);
  m.put_idt(GP, gate(kHandler, kKernelCode, kIntGate, 0, 0, /*present=*/false));  // #GP -> #NP
  m.handler(DF_);
  m.state().rip = 0x3000;
  deliver_event(m.core, exception(GP, 0));
  EXPECT_FALSE(m.core.is_shutdown());
  EXPECT_EQ(m.state().rip, kHandler + DF_ * 16);
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP)), 0u);          // #DF error code is zero
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP) + 8), 0x3000u);
}

TEST(EventDelivery, PageFaultDuringPageFaultIsDoubleFaultBenignIsSerial) {
  SystemMachine m(true);
  m.handler(DF_);
  m.handler(PF_);
  m.put_idt(DB, gate(kHandler, kKernelCode, kIntGate, 0, 0, false));  // #DB gate not present
  m.state().rip = 0x3000;
  // #NP while delivering #DB (benign first): the #NP is delivered on its own.
  m.handler(NP);
  deliver_event(m.core, Event{DB, EventKind::Exception, false, 0, 0});
  EXPECT_EQ(m.state().rip, kHandler + NP * 16);
}

TEST(EventDelivery, FaultWhileDeliveringDoubleFaultIsTripleFault) {
  SystemMachine m(true);
  m.put_idt(GP, gate(kHandler, kKernelCode, kIntGate, 0, 0, false));
  m.put_idt(DF_, gate(kHandler, kKernelCode, kIntGate, 0, 0, false));
  deliver_event(m.core, exception(GP, 0));
  EXPECT_TRUE(m.core.is_shutdown());
  EXPECT_NE(m.core.shutdown_reason().find("triple fault"), std::string::npos) << m.core.shutdown_reason();
}

TEST(EventDelivery, RealModeIvt) {
  Machine m;
  CpuState& s = m.state();
  s.idtr = {0, 0x3FF};
  m.ram.put<uint32_t>(0x21 * 4, (0x1234u << 16) | 0x5678);
  s.seg[SS] = Segment{0x2000, 0x20000, 0xFFFF, 0x93};
  s.seg[CS] = Segment{0x1000, 0x10000, 0xFFFF, 0x9B};
  s.gpr[RSP] = 0x100;
  s.rip = 0x42;
  s.rflags = RF1 | IF | TF;
  m.core.sync_mode();
  deliver_event(m.core, Event{0x21, EventKind::SoftwareInt, false, 0, 0});
  EXPECT_EQ(s.seg[CS].selector, 0x1234);
  EXPECT_EQ(s.seg[CS].base, 0x12340u);
  EXPECT_EQ(s.rip, 0x5678u);
  EXPECT_EQ(s.gpr[RSP], 0xFAu);
  EXPECT_EQ(m.ram.get<uint16_t>(0x20000 + 0xFA), 0x42);
  EXPECT_EQ(m.ram.get<uint16_t>(0x20000 + 0xFC), 0x1000);
  EXPECT_EQ(m.ram.get<uint16_t>(0x20000 + 0xFE), RF1 | IF | TF);
  EXPECT_EQ(s.rflags & (IF | TF), 0u);
}

TEST(EventDelivery, UserExceptionRoutedByTheCoreEntersRing0) {
  SystemMachine m(true);
  m.handler(UD);
  m.ram.load(kHandler + UD * 16, {0xEB, 0xFE});  // JMP $ at the handler: the one instruction retired
  m.load_code(0x401000, {0x0F, 0x0B});     // UD2
  m.enter_user(0x401000, 0x7000);
  m.core.run(1);
  EXPECT_EQ(m.state().cpl(), 0u);
  EXPECT_EQ(m.state().rip, kHandler + UD * 16);
  EXPECT_EQ(m.stack<uint64_t>(kKernelStack - 40), 0x401000u);  // #UD is a fault: RIP of UD2
}

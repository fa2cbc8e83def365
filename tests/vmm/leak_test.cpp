// Leak detection under trap_emulate: each sensitive instruction that runs directly (without
// trapping) is also evaluated on the virtual CPU; a different outcome is a leak, by instruction
// and kind. On classic x86 the guest kernel sees real state (expose) unless the VMM hands it the
// virtual outcome (conceal); on x86-pg nothing leaks.
#include <gtest/gtest.h>

#include "tests/vmm/deprivileged_machine.h"

namespace pgsim {
namespace {

using isa::SensitiveInsn;
using test::DeprivilegedMachine;
using test::kCode;

struct Case {
  const char* profile;
  bool conceal;
};

vmm::TrapEmulateVmm& start(DeprivilegedMachine& m, const Case& c, const std::vector<uint8_t>& code) {
  vmm::VmmOptions options;
  options.conceal_leaks = c.conceal;
  m.load_code(kCode, code);
  vmm::Machine machine{m.core};
  machine.vmm_memory_base = test::kGuestRam;
  machine.vmm_memory_size = test::kVmmMemory;
  m.router = std::make_unique<vmm::TrapRouter>(std::make_unique<vmm::TrapEmulateVmm>(machine, vmm::VmmCosts{}, options));
  m.router->attach(m.core);
  return static_cast<vmm::TrapEmulateVmm&>(m.router->vmm());
}

const Case kClassicExpose{"x86", false}, kClassicConceal{"x86", true}, kPg{"x86-pg", false};

// The kernel's interrupt-state check after CLI: PUSHF must show IF clear.
//   cli ; pushfq ; pop rax ; jmp $
TEST(Leaks, PushfShowsTheRealInterruptFlagOnClassicX86) {
  for (const Case& c : {kClassicExpose, kClassicConceal, kPg}) {
    DeprivilegedMachine m(c.profile);
    m.state().rflags |= isa::IF;
    vmm::TrapEmulateVmm& vmm = start(m, c, {0xFA, 0x9C, 0x58, 0xEB, 0xFE});
    m.core.run(3);
    const bool guest_sees_if = m.state().gpr[isa::RAX] & isa::IF;
    const vmm::LeakLog& leaks = vmm.leaks();
    SCOPED_TRACE(std::string(c.profile) + (c.conceal ? " conceal" : " expose"));
    if (c.profile == std::string("x86")) {
      EXPECT_EQ(guest_sees_if, !c.conceal);  // expose: the real IF=1 of the deprivileged machine
      EXPECT_EQ(leaks.total(), 1u);
      EXPECT_EQ(leaks.of(SensitiveInsn::Pushf).behavior, 1u);
      ASSERT_EQ(leaks.of(SensitiveInsn::Pushf).first_addresses.size(), 1u);
      EXPECT_EQ(leaks.of(SensitiveInsn::Pushf).first_addresses[0], kCode + 1);
    } else {
      EXPECT_FALSE(guest_sees_if);  // PUSHF reads VIF, which carries the virtual IF
      EXPECT_EQ(leaks.total(), 0u);
    }
    EXPECT_EQ(vmm.resource_control_violations(), 0u);
  }
}

// The kernel restores IF with POPF: on classic x86 at CPL 3 the change is silently lost.
//   push 0x202 ; popfq ; out 0x80, al (a trap, so the VMM looks) ; jmp $
TEST(Leaks, PopfLosesTheGuestsInterruptFlagOnClassicX86) {
  for (const Case& c : {kClassicExpose, kClassicConceal, kPg}) {
    DeprivilegedMachine m(c.profile);
    vmm::TrapEmulateVmm& vmm = start(m, c, {0x68, 0x02, 0x02, 0x00, 0x00, 0x9D, 0xE6, 0x80, 0xEB, 0xFE});
    m.core.run(3);
    SCOPED_TRACE(std::string(c.profile) + (c.conceal ? " conceal" : " expose"));
    const bool virtual_if = vmm.virtual_cpu().state().rflags & isa::IF;
    const bool classic = c.profile == std::string("x86");
    EXPECT_EQ(virtual_if, !classic || c.conceal);
    EXPECT_EQ(vmm.leaks().of(SensitiveInsn::Popf).control, classic ? 1u : 0u);
    EXPECT_EQ(vmm.leaks().total(), classic ? 1u : 0u);
  }
}

// "Am I in ring 0?": MOV from CS shows the real RPL on classic x86.   mov eax, cs ; jmp $
TEST(Leaks, MovFromCsRevealsTheRealPrivilegeLevelOnClassicX86) {
  for (const Case& c : {kClassicExpose, kClassicConceal, kPg}) {
    DeprivilegedMachine m(c.profile);
    vmm::TrapEmulateVmm& vmm = start(m, c, {0x8C, 0xC8, 0xEB, 0xFE});
    m.core.run(2);
    SCOPED_TRACE(std::string(c.profile) + (c.conceal ? " conceal" : " expose"));
    const bool classic = c.profile == std::string("x86");
    EXPECT_EQ(m.state().gpr[isa::RAX] & 3, classic && !c.conceal ? 3u : 0u);
    EXPECT_EQ(vmm.leaks().of(SensitiveInsn::MovFromSreg).behavior, classic ? 1u : 0u);
  }
}

// The red pill: SGDT stores the real GDTR on classic x86; on x86-pg it traps and is emulated.
//   sgdt [rdi] ; jmp $
TEST(Leaks, SgdtRevealsTheVmmsGdtOnClassicX86) {
  for (const Case& c : {kClassicExpose, kClassicConceal, kPg}) {
    DeprivilegedMachine m(c.profile);
    m.state().gpr[isa::RDI] = 0x50000;
    vmm::TrapEmulateVmm& vmm = start(m, c, {0x0F, 0x01, 0x07, 0xEB, 0xFE});
    m.core.run(2);  // the check completes at the boundary after SGDT
    SCOPED_TRACE(std::string(c.profile) + (c.conceal ? " conceal" : " expose"));
    const bool classic = c.profile == std::string("x86");
    const uint64_t base = m.ram.get<uint64_t>(0x50002);
    EXPECT_EQ(base, classic && !c.conceal ? vmm::kVmmLinearBase : test::kGdt);
    EXPECT_EQ(vmm.leaks().of(SensitiveInsn::Sgdt).behavior, classic ? 1u : 0u);
    EXPECT_EQ(m.traps(vmm::TrapCause::GeneralProtection), classic ? 0u : 1u);
  }
}

// The kernel's POPF-to-IOPL probe on x86-pg: POPF with a new IOPL traps (#GP) and the virtual CPU
// takes the IOPL; PUSHF then shows it and POPF of the old image traps again. IOPL 1 and 2 the real
// CPU holds (its CPL 3 stays above), so the guest runs on directly; at IOPL 3 it is interpreted
// until it restores a lower IOPL.
//   pushfq ; pop rcx ; mov rdx, rcx ; xor rdx, iopl << 12 ; push rdx ; popfq ;
//   pushfq ; pop rdx ; push rcx ; popfq ; jmp $
TEST(Leaks, PopfToAnotherIoplTrapsAndPushfShowsTheVirtualIoplOnX86Pg) {
  for (const uint32_t iopl : {1u, 3u}) {
    SCOPED_TRACE("IOPL " + std::to_string(iopl));
    DeprivilegedMachine m("x86-pg");
    const std::vector<uint8_t> xor_rdx{0x48, 0x81, 0xF2, 0x00, static_cast<uint8_t>(iopl << 4), 0x00, 0x00};
    std::vector<uint8_t> code{0x9C, 0x59, 0x48, 0x89, 0xCA};
    code.insert(code.end(), xor_rdx.begin(), xor_rdx.end());
    code.insert(code.end(), {0x52, 0x9D, 0x9C, 0x5A, 0x51, 0x9D, 0xEB, 0xFE});
    vmm::TrapEmulateVmm& vmm = m.start(code);
    const bool interpreted = iopl == 3;
    // Directly: 5 instructions, then (below IOPL 3) pushfq, pop rdx, push rcx; then jmp $.
    m.core.run(interpreted ? 6 : 9);
    EXPECT_EQ(m.state().rip, kCode + 18);
    const uint64_t changed = m.state().gpr[isa::RDX] ^ m.state().gpr[isa::RCX];
    EXPECT_EQ(changed & isa::IOPL, uint64_t{iopl} << 12);  // the guest saw its new IOPL
    EXPECT_EQ(vmm.virtual_cpu().state().iopl(), 0u);        // and restored the old one
    EXPECT_EQ(m.state().iopl(), 0u);
    EXPECT_EQ(m.traps(vmm::TrapCause::GeneralProtection), interpreted ? 1u : 2u);
    EXPECT_EQ(vmm.interpreted(), interpreted ? 4u : 0u);  // pushfq, pop rdx, push rcx, popfq
    EXPECT_EQ(vmm.leaks().total(), 0u) << vmm.leaks().summary();
    EXPECT_EQ(vmm.resource_control_violations(), 0u);
  }
}

// Guest user code on x86-pg (CPL 3 > IOPL 0) reads and writes its VIF with PUSHF and POPF, as it
// does natively; the real VIF carries the guest's VIF then, not its IF (which stays set).
//   pushfq ; pop rbx ; push 0x202 ; popfq ; pushfq ; pop rax ; jmp $
TEST(Leaks, GuestUserPushfAndPopfReachTheGuestsVifOnX86Pg) {
  DeprivilegedMachine m("x86-pg");
  m.state().rflags |= isa::IF;
  m.enter_user(test::kUserRegion, test::kUserRegion + 0x10000);
  vmm::TrapEmulateVmm& vmm =
      m.start({0x9C, 0x5B, 0x68, 0x02, 0x02, 0x00, 0x00, 0x9D, 0x9C, 0x58, 0xEB, 0xFE}, {}, test::kUserRegion);
  m.core.run(7);
  EXPECT_EQ(m.state().rip, test::kUserRegion + 10);
  EXPECT_FALSE(m.state().gpr[isa::RBX] & isa::IF);  // VIF was clear
  EXPECT_TRUE(m.state().gpr[isa::RAX] & isa::IF);   // POPF set it
  vmm.virtual_cpu().pull(m.state());  // what the VMM takes in at its next trap
  EXPECT_TRUE(vmm.virtual_cpu().state().rflags & isa::VIF);
  EXPECT_TRUE(vmm.virtual_cpu().state().rflags & isa::IF);
  EXPECT_EQ(vmm.leaks().total(), 0u) << vmm.leaks().summary();
  EXPECT_EQ(vmm.resource_control_violations(), 0u);
}

}  // namespace
}  // namespace pgsim

// binary_translation on hand-built 64-bit guests (tests/vmm/deprivileged_machine.h): the guest's
// kernel code runs from the translation cache; coherence with code the guest rewrites; the VMM's
// memory out of reach of translated code.
#include <gtest/gtest.h>

#include <string>

#include "models/vmm/binary_translation.h"
#include "tests/vmm/deprivileged_machine.h"

namespace pgsim {
namespace {

using test::cat;
using test::DeprivilegedMachine;
using test::imm32;
using test::kCode;

std::vector<uint8_t> imm64(uint64_t n) { return cat({imm32(static_cast<uint32_t>(n)), imm32(static_cast<uint32_t>(n >> 32))}); }

// A JIT in miniature, in the guest kernel: each iteration rewrites the immediate of the routine at
// kCode + 0x1000 (another frame) with the loop count and calls it.
//   loop: inc ecx; mov [kCode+0x1001], cl; call routine; cmp ecx, N; jne loop; jmp $
//   routine (kCode + 0x1000): mov eax, imm32; ret
std::vector<uint8_t> jit_loop(uint32_t n) {
  std::vector<uint8_t> code = cat({{0xFF, 0xC1},
                                   {0x88, 0x0C, 0x25}, imm32(static_cast<uint32_t>(kCode + 0x1001)),
                                   {0xE8}, imm32(0x1000 - 0xE),
                                   {0x81, 0xF9}, imm32(n),
                                   {0x75, 0xEA},
                                   {0xEB, 0xFE}});
  code.resize(0x1000, 0x90);
  const std::vector<uint8_t> routine = {0xB8, 0, 0, 0, 0, 0xC3};
  code.insert(code.end(), routine.begin(), routine.end());
  return code;
}

// The routine's frame holds translated code: it is write-protected, and each rewrite drops the
// routine's one unit, which its next call translates anew. The first iteration's rewrite comes
// before the routine was ever translated: N - 1 invalidations. The rewriting store itself faults
// on the protected frame until vmm.bt.adapt_after (4) faults, then it is a callout.
TEST(BinaryTranslation, RewrittenGuestCodeIsInvalidatedAndTranslatedAnew) {
  for (uint32_t n : {10u, 20u}) {
    SCOPED_TRACE(n);
    DeprivilegedMachine m("x86-pg");
    auto& bt = m.start<vmm::BinaryTranslationVmm>(jit_loop(n));
    m.core.run(20 * n + 1000);
    ASSERT_FALSE(m.core.is_shutdown()) << m.core.shutdown_reason();
    EXPECT_TRUE(bt.translator().in_tc(m.state().rip));
    EXPECT_EQ(bt.translator().guest_rip_at(m.state().rip), kCode + 0x16);  // at the final jmp $
    EXPECT_EQ(m.state().gpr[isa::RAX], n);  // the last rewrite's routine ran
    EXPECT_EQ(bt.counters().smc_invalidations, n - 1);
    EXPECT_EQ(bt.counters().tc_faults, 4u);
    EXPECT_EQ(bt.counters().adaptations, 1u);
    EXPECT_EQ(bt.callouts().of("mov"), n - 1 - 4);  // the adapted store, from then on
    // Units: the loop's; one from the store on (the guest resumes there after the hidden fault
    // that maps the routine's page for the first write) and one from the call on (where it
    // resumes after the store's first fault on the protected frame); the one after the call's
    // return; the final jmp $'s; and the routine's, n times (first, then after each rewrite).
    EXPECT_EQ(bt.translator().counters().units, 5 + n);
    EXPECT_EQ(bt.leaks().total(), 0u);
    EXPECT_EQ(bt.resource_control_violations(), 0u);
  }
}

// Guest kernel code that touches the VMM's memory below the limit of DS, ES and SS faults into
// the VMM, which stops the run naming the address: a read of the VMM's area (supervisor-only, PML4
// slot 510), a store to slot 511 (the TC's and the vCPU page's, not mapped there) outside the top
// 4 GiB and one inside it below the limit. The VMM's memory is untouched.
TEST(BinaryTranslation, GuestKernelCodeThatAddressesTheVmmsMemoryIsStopped) {
  struct Case {
    std::vector<uint8_t> code;
    const char* address;
  };
  for (const Case& c : {Case{cat({{0x48, 0xA1}, imm64(vmm::kVmmLinearBase), {0xEB, 0xFE}}), "0xffffff0000000000"},
                        Case{cat({{0x48, 0xA3}, imm64(vmm::kVmmLinearBase + vmm::kVmmLinearSize), {0xEB, 0xFE}}),
                             "0xffffff8000000000"},
                        Case{cat({{0x48, 0xA3}, imm64(isa::kLmsleLimitBase), {0xEB, 0xFE}}), "0xffffffff00000000"}}) {
    SCOPED_TRACE(c.address);
    DeprivilegedMachine m("x86");
    m.state().gpr[isa::RAX] = 0x1122334455667788;
    auto& bt = m.start<vmm::BinaryTranslationVmm>(c.code);
    const uint64_t tc = bt.translator().tc_physical();
    const uint64_t before[2] = {m.ram.get<uint64_t>(tc), m.ram.get<uint64_t>(test::kGuestRam)};
    m.core.run(10);
    ASSERT_TRUE(m.core.is_shutdown());
    EXPECT_NE(m.core.shutdown_reason().find(std::string("addresses ") + c.address), std::string::npos)
        << m.core.shutdown_reason();
    EXPECT_NE(m.core.shutdown_reason().find("the VMM's memory"), std::string::npos);
    EXPECT_EQ(m.ram.get<uint64_t>(tc), before[0]);
    EXPECT_EQ(m.ram.get<uint64_t>(test::kGuestRam), before[1]);
    EXPECT_EQ(bt.resource_control_violations(), 0u);
  }
}

// The vCPU page (kVcpuPageLinear) is mapped user-writable in the kernel-mode shadows for the
// inline sequences, which reach it through GS; guest kernel code does not reach it. A store to its
// address through DS exceeds the limit the VMM gave DS (EFER.LMSLE): #GP, and the VMM carries the
// store out on the virtual CPU, in the guest's own address space, where nothing is mapped there:
// the guest takes its own #PF (its handler: jmp $). A load through the guest's GS is a callout,
// which reads the guest's memory at the guest's GS base.
TEST(BinaryTranslation, GuestKernelCodeCannotReachTheVcpuPage) {
  constexpr uint64_t kStoredValue = 0x1122334455667788, kPfHandler = test::kHandler + isa::PF_ * 16;
  DeprivilegedMachine m("x86");
  m.handler(isa::PF_);
  m.ram.load(kPfHandler, {0xEB, 0xFE});
  m.state().gpr[isa::RAX] = kStoredValue;
  auto& bt = m.start<vmm::BinaryTranslationVmm>(cat({{0x48, 0xA3}, imm64(vmm::kVcpuPageLinear), {0xEB, 0xFE}}));
  m.core.run(50);
  ASSERT_FALSE(m.core.is_shutdown()) << m.core.shutdown_reason();
  EXPECT_EQ(bt.translator().guest_rip_at(m.state().rip), kPfHandler);
  EXPECT_EQ(m.state().cr2, vmm::kVcpuPageLinear);  // the guest's CR2, as projected
  for (uint64_t at = 0; at < 4096; at += 8)
    EXPECT_NE(m.ram.get<uint64_t>(bt.vcpu_page_physical() + at), kStoredValue) << at;
  EXPECT_EQ(bt.resource_control_violations(), 0u);

  constexpr uint64_t kGuestGsBase = 0x30000, kMarker = 0x0BADC0DE12345678;
  DeprivilegedMachine g("x86");
  g.state().seg[isa::GS].base = kGuestGsBase;
  g.ram.put<uint64_t>(kGuestGsBase + 8, kMarker);
  auto& gs = g.start<vmm::BinaryTranslationVmm>(cat({{0x65, 0x48, 0x8B, 0x14, 0x25}, imm32(8), {0xEB, 0xFE}}));
  g.core.run(20);
  ASSERT_FALSE(g.core.is_shutdown()) << g.core.shutdown_reason();
  EXPECT_EQ(g.state().gpr[isa::RDX], kMarker);
  EXPECT_EQ(gs.callouts().of("mov"), 1u);
}

// The TC (kTcLinearBase) is mapped user-readable and executable in the kernel-mode shadows, but
// it lies above the limit the VMM gives the real DS, ES and SS (EFER.LMSLE): guest kernel code
// that reads or writes a TC address through DS takes #GP, and the VMM carries the access out on
// the virtual CPU, in the guest's own address space, where nothing is mapped there: the guest
// takes its own #PF (its handler: jmp $) with CR2 the TC address, and no byte of the TC reaches
// it (RAX keeps its value) or changes.
TEST(BinaryTranslation, GuestKernelCodeCannotReadOrWriteTheTc) {
  constexpr uint64_t kRaxBefore = 0x1122334455667788, kPfHandler = test::kHandler + isa::PF_ * 16;
  for (const uint8_t opcode : {0xA1, 0xA3}) {  // MOV RAX, [moffs64]; MOV [moffs64], RAX
    SCOPED_TRACE(opcode);
    DeprivilegedMachine m("x86");
    m.handler(isa::PF_);
    m.ram.load(kPfHandler, {0xEB, 0xFE});
    m.state().gpr[isa::RAX] = kRaxBefore;
    auto& bt = m.start<vmm::BinaryTranslationVmm>(cat({{0x48, opcode}, imm64(vmm::kTcLinearBase), {0xEB, 0xFE}}));
    m.core.run(50);
    ASSERT_FALSE(m.core.is_shutdown()) << m.core.shutdown_reason();
    EXPECT_EQ(bt.translator().guest_rip_at(m.state().rip), kPfHandler);
    EXPECT_EQ(m.state().cr2, vmm::kTcLinearBase);  // the guest's CR2, as projected
    EXPECT_EQ(m.state().gpr[isa::RAX], kRaxBefore);
    EXPECT_EQ(m.traps(vmm::TrapCause::GeneralProtection), 1u);  // the limit's, carried out by the VMM
    EXPECT_EQ(bt.callouts().total(), 0u);
    // The TC still holds the unit of the access, as the translator made it: its first
    // instruction is the guest's, copied (IDENT).
    const uint64_t unit = bt.translator().lookup(test::kCode);
    ASSERT_EQ(unit, vmm::kTcLinearBase);
    const uint64_t tc = bt.translator().tc_physical();
    EXPECT_EQ(m.ram.get<uint8_t>(tc), 0x48);
    EXPECT_EQ(m.ram.get<uint8_t>(tc + 1), opcode);
    EXPECT_EQ(m.ram.get<uint64_t>(tc + 2), vmm::kTcLinearBase);
    EXPECT_EQ(bt.resource_control_violations(), 0u);
  }
}

// SGDT to guest memory is an inline store sequence that borrows RAX and RCX; here its operand is
// based on RAX itself, and its store lands on a 2 MiB region the shadow has not mapped yet: the
// store takes a hidden page fault inside the sequence, the VMM returns RAX and RCX from the vCPU
// page's scratch slots, fills the shadow and runs the SGDT again from its start (the start of its
// unit). The guest's
// GDTR is stored, its registers are its own, and no callout was made.
TEST(BinaryTranslation, AnInlineStoreThatFaultsRunsAgainWithTheGuestsRegisters) {
  constexpr uint64_t kTarget = 0x400000, kRcx = 0x0123456789ABCDEF;
  DeprivilegedMachine m("x86");
  m.state().gpr[isa::RAX] = kTarget - 8;
  m.state().gpr[isa::RCX] = kRcx;
  auto& bt = m.start<vmm::BinaryTranslationVmm>({0x0F, 0x01, 0x40, 0x08,  // sgdt [rax+8]
                                                 0xEB, 0xFE});
  m.core.run(40);
  ASSERT_FALSE(m.core.is_shutdown()) << m.core.shutdown_reason();
  EXPECT_EQ(bt.translator().guest_rip_at(m.state().rip), test::kCode + 4);
  EXPECT_EQ(m.ram.get<uint16_t>(kTarget), 0x7F);  // the guest's GDTR (tests/isa_system/system_harness.h)
  EXPECT_EQ(m.ram.get<uint64_t>(kTarget + 2), test::kGdt);
  EXPECT_EQ(m.state().gpr[isa::RAX], kTarget - 8);
  EXPECT_EQ(m.state().gpr[isa::RCX], kRcx);
  EXPECT_EQ(m.traps(vmm::TrapCause::PageFault), 1u);
  EXPECT_EQ(bt.callouts().total(), 0u);
  // Translated once: the SGDT starts its unit, where the guest resumes; the other unit is the
  // jmp $ the first one jumps to.
  EXPECT_EQ(bt.translator().counters().inlined_by_mnemonic.of("sgdt"), 1u);
  EXPECT_EQ(bt.translator().counters().units, 2u);
}

// The cycles of translated code's trips into the VMM, each in its bucket: an OUT loop
// (mov ecx, n; l: out 0x80, al; dec ecx; jnz l; jmp $) translates three units once (from the
// entry, from l, the final jmp $), and each OUT is one callout: crossing, I/O emulation and one
// access to the software device. Four exits enter the translator once and are chained (the two
// JNZ taken exits, the second unit's fall-through, the jmp $ to itself). No trap: the TC is
// mapped in every kernel shadow from the start and the guest touches no data.
TEST(BinaryTranslation, EveryCycleOfTranslatedCodeIsChargedToANamedBucket) {
  vmm::VmmCosts costs;
  costs.bt_translate = 1000;
  costs.bt_callout = 10;
  costs.emulate_io = 100;
  costs.device_model = 1;
  costs.trap = 100000;
  DeprivilegedMachine m("x86-pg");
  auto& bt = m.start<vmm::BinaryTranslationVmm>(
      cat({{0xB9}, imm32(5), {0xE6, 0x80, 0xFF, 0xC9, 0x75, 0xFA, 0xEB, 0xFE}}), costs);
  m.core.run(100);
  ASSERT_FALSE(m.core.is_shutdown()) << m.core.shutdown_reason();
  EXPECT_EQ(bt.callouts().of("out"), 5u);
  EXPECT_EQ(m.router->total_traps(), 0u);
  const auto& t = bt.translator().counters();
  EXPECT_EQ(t.units, 3u);
  EXPECT_EQ(bt.counters().chained, 4u);
  EXPECT_EQ(bt.counters().translator_entries, 4u);
  EXPECT_EQ(t.guest_instructions, 4u + 3 + 1);
  EXPECT_EQ(bt.cycles().total(), t.guest_instructions * 1000 + 4 * 10 /* translator entries */ + 5 * (10 + 100 + 1));
}

}  // namespace
}  // namespace pgsim

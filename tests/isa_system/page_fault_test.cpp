// Page faults raised through the core with the real page walk (isa/system/paging.h) behind its
// Translator: the #PF error code on the handler's stack and CR2, in 4-level and 32-bit paging.
#include <gtest/gtest.h>

#include "isa/system/paging.h"
#include "system_harness.h"

using namespace pgsim::isa;
using namespace pgsim::test;

namespace {

constexpr uint64_t P = 1, RW = 2, US = 4, PS = 0x80;
constexpr uint64_t kUserPage = 0x401000;  // code and a read-only data page at 0x402000

}  // namespace

TEST(PageFaultThroughCore, LongModeUserWriteToReadOnlyPage) {
  SystemMachine m(true);
  WalkingTranslator walker(m.ram);
  m.core.set_translator(&walker);
  // Identity-map the first 2 MiB for the kernel (supervisor, 2 MiB page) and two 4 KiB user pages.
  const uint64_t pml4 = 0x100000, pdpt = 0x101000, pd = 0x102000, pt = 0x103000;
  m.ram.put<uint64_t>(pml4, pdpt | P | RW | US);
  m.ram.put<uint64_t>(pdpt, pd | P | RW | US);
  m.ram.put<uint64_t>(pd, 0 | P | RW | PS);
  m.ram.put<uint64_t>(pd + 8 * 2, pt | P | RW | US);                         // 4-6 MiB
  m.ram.put<uint64_t>(pt + 8 * 1, 0x401000 | P | US);                        // code, read-only
  m.ram.put<uint64_t>(pt + 8 * 2, 0x402000 | P | US);                        // data, read-only
  m.state().cr3 = pml4;
  m.handler(PF_);
  m.ram.load(kHandler + PF_ * 16, {0xEB, 0xFE});
  m.ram.load(kUserPage, {0x8A, 0x03, 0x88, 0x03});  // MOV AL, [RBX]; MOV [RBX], AL
  m.core.invalidate_decoded(kUserPage, 4);
  m.enter_user(kUserPage, 0x402F00);  // the user stack is never touched
  m.reg(RBX) = 0x402010;
  m.core.run(2);
  EXPECT_EQ(m.state().rip, kHandler + PF_ * 16);
  EXPECT_EQ(m.state().cr2, 0x402010u);
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP)), uint64_t(PFERR_P | PFERR_W | PFERR_U));
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP) + 8), kUserPage + 2) << "the faulting MOV";
  // The read succeeded and set the accessed flag; the failed write left D clear.
  EXPECT_EQ(m.ram.get<uint64_t>(pt + 16) & 0x60, 0x20u);
}

TEST(PageFaultThroughCore, ThirtyTwoBitPagingNotPresentFetch) {
  SystemMachine m(false);
  WalkingTranslator walker(m.ram);
  m.core.set_translator(&walker);
  const uint64_t pd = 0x100000, pt = 0x101000;
  m.ram.put<uint32_t>(pd, 0 | P | RW | PS);            // 0-4 MiB: kernel, 4 MiB page
  m.ram.put<uint32_t>(pd + 4, pt | P | RW | US);      // 4-8 MiB: user page table
  m.ram.put<uint32_t>(pt + 4, 0x401000 | P | RW | US);  // only 0x401000 is present
  m.state().cr3 = pd;
  m.state().cr4 = CR4_PSE;
  m.state().cr0 |= CR0_PG;
  m.handler(PF_);
  m.ram.load(kHandler + PF_ * 16, {0xEB, 0xFE});
  m.ram.load(0x401FFE, {0xEB, 0x00});  // JMP +0: falls through to the not-present 0x402000
  m.core.invalidate_decoded(0x401FFE, 2);
  m.enter_user(0x401FFE, 0x401F00);
  m.core.run(1);
  m.core.run(1);
  EXPECT_EQ(m.state().rip, kHandler + PF_ * 16);
  EXPECT_EQ(m.state().cr2, 0x402000u);
  EXPECT_EQ(m.stack<uint32_t>(m.reg(RSP)), uint32_t(PFERR_U)) << "no I/D flag without PAE+NXE or SMEP";
  EXPECT_EQ(m.stack<uint32_t>(m.reg(RSP) + 4), 0x402000u);
}

TEST(PageFaultThroughCore, PaePagingUserFetchFromExecuteDisabledPage) {
  SystemMachine m(false);
  WalkingTranslator walker(m.ram);
  m.core.set_translator(&walker);
  const uint64_t pdpt = 0x100000, pd = 0x101000, pt = 0x102000;
  constexpr uint64_t XD = 1ull << 63;
  m.ram.put<uint64_t>(pdpt, pd | P);
  m.ram.put<uint64_t>(pd, 0 | P | RW | PS);               // 0-2 MiB: kernel
  m.ram.put<uint64_t>(pd + 8 * 2, pt | P | RW | US);      // 4-6 MiB: user
  m.ram.put<uint64_t>(pt + 8 * 1, 0x401000 | P | RW | US);
  m.ram.put<uint64_t>(pt + 8 * 2, 0x402000 | P | RW | US | XD);
  m.state().cr3 = pdpt;
  m.state().cr4 = CR4_PAE;
  m.state().efer = EFER_NXE;
  m.state().cr0 |= CR0_PG;
  m.handler(PF_);
  m.ram.load(kHandler + PF_ * 16, {0xEB, 0xFE});
  m.ram.load(0x401FFE, {0xEB, 0x00});  // JMP +0 into the execute-disabled page
  m.core.invalidate_decoded(0x401FFE, 2);
  m.enter_user(0x401FFE, 0x401F00);
  m.core.run(2);
  EXPECT_EQ(m.state().rip, kHandler + PF_ * 16);
  EXPECT_EQ(m.state().cr2, 0x402000u);
  EXPECT_EQ(m.stack<uint32_t>(m.reg(RSP)), uint32_t(PFERR_P | PFERR_U | PFERR_I));
}

TEST(PageFaultThroughCore, FiveLevelPagingSupervisorWriteWithWp) {
  SystemMachine m(true);
  WalkingTranslator walker(m.ram);
  m.core.set_translator(&walker);
  // Identity-map the low 2 MiB (kernel) and, at a 57-bit address, one read-only page.
  const uint64_t pml5 = 0x100000, pml4 = 0x101000, pdpt = 0x102000, pd = 0x103000;
  const uint64_t hi_pml4 = 0x104000, hi_pdpt = 0x105000, hi_pd = 0x106000, hi_pt = 0x107000;
  const uint64_t far_page = 0x00AB000000001000ull;
  auto index = [](uint64_t lin, unsigned level) { return (lin >> (12 + 9 * (level - 1))) & 0x1FF; };
  m.ram.put<uint64_t>(pml5, pml4 | P | RW);
  m.ram.put<uint64_t>(pml4, pdpt | P | RW);
  m.ram.put<uint64_t>(pdpt, pd | P | RW);
  m.ram.put<uint64_t>(pd, 0 | P | RW | PS);
  m.ram.put<uint64_t>(pml5 + 8 * index(far_page, 5), hi_pml4 | P | RW);
  m.ram.put<uint64_t>(hi_pml4 + 8 * index(far_page, 4), hi_pdpt | P | RW);
  m.ram.put<uint64_t>(hi_pdpt + 8 * index(far_page, 3), hi_pd | P | RW);
  m.ram.put<uint64_t>(hi_pd + 8 * index(far_page, 2), hi_pt | P | RW);
  m.ram.put<uint64_t>(hi_pt + 8 * index(far_page, 1), 0x300000 | P);  // read-only
  m.state().cr3 = pml5;
  m.state().cr4 |= CR4_LA57;
  m.handler(PF_);
  m.ram.load(kHandler + PF_ * 16, {0xEB, 0xFE});
  m.load_code(0x5000, {0x88, 0x03});  // MOV [RBX], AL at CPL 0
  m.reg(RBX) = far_page + 0x10;
  m.core.run(1);
  EXPECT_EQ(m.state().rip, kHandler + PF_ * 16);
  EXPECT_EQ(m.state().cr2, far_page + 0x10);
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP)), uint64_t(PFERR_P | PFERR_W)) << "CR0.WP protects supervisor writes";
}

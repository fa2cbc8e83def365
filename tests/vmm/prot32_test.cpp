// trap_emulate on hand-built guests in 32-bit protected mode: the real CPU stays in IA-32e mode and
// runs the guest's 32-bit code directly in compatibility mode, its kernel at
// vmm.deprivileged_cpl_prot32 (1, 2 or 3), with paging off (a linear = physical shadow) or on (a
// 4-level shadow of its 32-bit or PAE tables). Trap counts are exact.
#include <gtest/gtest.h>

#include "tests/vmm/deprivileged_machine.h"

namespace pgsim {
namespace {

using test::DeprivilegedMachine;
using test::kCode;
using test::cat;
using test::imm32;
using vmm::TrapCause;

vmm::VmmOptions at_cpl(unsigned cpl) {
  vmm::VmmOptions o;
  o.deprivileged_cpl_prot32 = cpl;
  return o;
}

// A 32-bit guest kernel at its first instruction: protected mode, CPL 0, paging off.
vmm::TrapEmulateVmm& start_prot32(DeprivilegedMachine& m, const std::vector<uint8_t>& code, unsigned cpl) {
  return m.start(code, {}, kCode, nullptr, at_cpl(cpl));
}

// mov ecx, n ; L: out 0x80, al ; dec ecx ; jnz L ; jmp $   (the same bytes in 32- and 64-bit code)
std::vector<uint8_t> out_loop(uint32_t n) {
  return cat({{0xB9}, imm32(n), {0xE6, 0x80, 0xFF, 0xC9, 0x75, 0xFA, 0xEB, 0xFE}});
}

// Each OUT traps once (#GP: the real CPL is above the IOPL 0 and the VMM's TSS has no I/O bitmap)
// and is emulated through the device. The only other trap is the hidden page fault of the first
// fetch, which maps the 2 MiB of guest RAM around it in the paging-off shadow (code, stack, GDT
// and IDT all lie there).
TEST(Prot32, TheGuestKernelRunsDirectlyAtTheDeprivilegedCplInCompatibilityMode) {
  for (unsigned cpl : {1u, 2u, 3u}) {
    SCOPED_TRACE(cpl);
    DeprivilegedMachine m("x86-pg", false);
    m.state().gpr[isa::RAX] = 0x5A;
    vmm::TrapEmulateVmm& vmm = start_prot32(m, out_loop(10), cpl);
    const isa::CpuState& real = m.state();
    EXPECT_EQ(real.cpl(), cpl);
    EXPECT_EQ(real.mode(), isa::Mode::Compat32);
    EXPECT_EQ(real.seg[isa::CS].selector, test::kKernelCode | cpl);
    EXPECT_EQ(real.gdtr.base, vmm::kVmmLinearBase);
    EXPECT_GE(real.cr3, test::kGuestRam);  // the paging-off shadow, in VMM memory
    EXPECT_EQ(vmm.virtual_cpu().cpl(), 0u);
    EXPECT_FALSE(vmm.virtual_cpu().state().paging());
    m.core.run(1 + 2 * 10);  // mov, then dec and jnz: the OUTs retire on the virtual CPU
    EXPECT_EQ(real.rip, kCode + 11);
    EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 10u);
    EXPECT_EQ(m.traps(TrapCause::PageFault), 1u);
    EXPECT_EQ(m.router->total_traps(), 11u);
    EXPECT_EQ(vmm.emulated_io(), 10u);
    ASSERT_EQ(m.io.outs.size(), 10u);
    EXPECT_EQ(m.io.outs.back().value, 0x5Au);
    EXPECT_EQ(vmm.shadow().hidden_faults, 1u);
    EXPECT_EQ(vmm.interpreted(), 0u);
    EXPECT_EQ(vmm.resource_control_violations(), 0u);
    EXPECT_DOUBLE_EQ(vmm.direct_fraction(), 21.0 / 31.0);
  }
}

// The shadow GDT while the guest is in 32-bit protected mode: its code and data descriptors at the
// deprivileged CPL (or their own DPL where higher), its system descriptors absent, and its 64-bit
// code segments not present, so that a far transfer into one traps instead of running 64-bit code
// in a supervisor ring.
TEST(Prot32, TheShadowGdtRaisesPrivilegeAndHides64BitCode) {
  constexpr uint16_t kCode64 = 0x48;
  for (unsigned cpl : {1u, 3u}) {
    SCOPED_TRACE(cpl);
    DeprivilegedMachine m("x86-pg", false);
    m.put_gdt(kCode64, test::segment_descriptor(0, 0xFFFFF, test::kCodeExecRead, 0, true, false));
    start_prot32(m, {0xEB, 0xFE}, cpl);
    auto shadow = [&](uint16_t selector) { return m.ram.get<uint64_t>(test::kGuestRam + (selector & ~7u)); };
    auto dpl = [](uint64_t d) { return static_cast<unsigned>((d >> 45) & 3); };
    constexpr uint64_t kPresent = 1ull << 47;
    EXPECT_EQ(dpl(shadow(test::kKernelCode)), cpl);
    EXPECT_EQ(dpl(shadow(test::kKernelData)), cpl);
    EXPECT_EQ(dpl(shadow(test::kUserCode)), 3u);
    EXPECT_TRUE(shadow(test::kKernelCode) & kPresent);
    EXPECT_FALSE(shadow(kCode64) & kPresent);
    EXPECT_EQ(shadow(test::kTssSel), 0u);
  }
}

// On classic x86 a far jump into a 64-bit segment (which the guest's CPU, outside IA-32e mode,
// runs as 16-bit code; this one is based at kCode) faults on the real CPU (#NP) and the virtual
// CPU carries it out.
//   ljmp 0x48:7 ; jmp $
TEST(Prot32, AFarJumpInto64BitCodeTrapsAndIsEmulated) {
  constexpr uint16_t kCode64 = 0x48;
  DeprivilegedMachine m("x86", false);
  m.put_gdt(kCode64, test::segment_descriptor(kCode, 0xFFFFF, test::kCodeExecRead, 0, true, false));
  vmm::TrapEmulateVmm& vmm = start_prot32(m, {0xEA, 7, 0, 0, 0, kCode64, 0x00, 0xEB, 0xFE}, 1);
  m.core.run(1);  // jmp $ (the far jump retired on the virtual CPU)
  EXPECT_EQ(m.traps(TrapCause::SegmentNotPresent), 1u);
  EXPECT_EQ(vmm.emulated(), 1u);
  EXPECT_EQ(vmm.virtual_cpu().state().seg[isa::CS].selector, kCode64);
  EXPECT_EQ(vmm.virtual_cpu().state().mode(), isa::Mode::Protected16);
  EXPECT_EQ(m.state().mode(), isa::Mode::Compat16);
  EXPECT_EQ(m.state().cpl(), 1u);
  EXPECT_EQ(m.state().rip, 7u);  // 16-bit code based at kCode
}

// Leaks in 32-bit code on classic x86: MOV from CS shows the real CPL as its RPL (1, 2 or 3
// where the guest kernel believes it is at 0), PUSHF the real IF. On x86-pg MOV from CS reads RPL
// 0 and PUSHF the virtual IF (kept in VIF): nothing leaks.
//   mov eax, cs ; pushfd ; pop edx ; jmp $
TEST(Prot32, MovFromCsLeaksTheDeprivilegedCplOnClassicX86) {
  for (const char* profile : {"x86", "x86-pg"}) {
    for (unsigned cpl : {1u, 2u, 3u}) {
      SCOPED_TRACE(std::string(profile) + " CPL " + std::to_string(cpl));
      DeprivilegedMachine m(profile, false);
      vmm::TrapEmulateVmm& vmm = start_prot32(m, {0x8C, 0xC8, 0x9C, 0x5A, 0xEB, 0xFE}, cpl);
      m.core.run(3);
      const bool classic = std::string(profile) == "x86";
      const vmm::LeakLog& leaks = vmm.leaks();
      EXPECT_EQ(m.state().gpr[isa::RAX] & 0xFFFF, test::kKernelCode | (classic ? cpl : 0));
      EXPECT_EQ((m.state().gpr[isa::RDX] & isa::IF) != 0, classic);
      EXPECT_EQ(leaks.total(), classic ? 2u : 0u);
      EXPECT_EQ(leaks.of(isa::SensitiveInsn::MovFromSreg).behavior, classic ? 1u : 0u);
      EXPECT_EQ(leaks.of(isa::SensitiveInsn::Pushf).behavior, classic ? 1u : 0u);
      if (classic) {
        ASSERT_EQ(leaks.of(isa::SensitiveInsn::MovFromSreg).first_addresses.size(), 1u);
        EXPECT_EQ(leaks.of(isa::SensitiveInsn::MovFromSreg).first_addresses[0], kCode);
      }
      EXPECT_EQ(m.router->total_traps(), 1u);  // the first fetch (paging-off shadow)
      EXPECT_EQ(vmm.resource_control_violations(), 0u);
    }
  }
}

// A guest that starts in real mode (as a boot sector does, at 0x7C00) is interpreted until its
// far jump after setting CR0.PE has loaded a protected-mode code segment (until then CS holds a
// real-mode segment, with no privilege to deprivilege); its 32-bit code then runs directly.
//   mov eax, cr0 ; or al, 1 ; mov cr0, eax ; jmp dword 0x08:0x7C10 ; (0x7C10:) mov eax, cs ; jmp $
TEST(Prot32, ARealModeGuestIsInterpretedUntilItsFarJumpIntoProtectedMode) {
  for (const char* profile : {"x86", "x86-pg"}) {
    SCOPED_TRACE(profile);
    DeprivilegedMachine m(profile, false);
    isa::CpuState& s = m.state();
    s.cr0 = isa::CR0_ET;
    for (isa::Segment& seg : s.seg) seg = isa::Segment{0, 0, 0xFFFF, 0x93};  // as at reset
    constexpr uint32_t kBootSector = 0x7C00;
    vmm::TrapEmulateVmm& vmm = m.start(cat({{0x0F, 0x20, 0xC0, 0x0C, 0x01, 0x0F, 0x22, 0xC0, 0x66, 0xEA},
                                             imm32(kBootSector + 16), {0x08, 0x00, 0x8C, 0xC8, 0xEB, 0xFE}}),
                                        {}, kBootSector, nullptr, at_cpl(1));
    m.core.run(2);  // mov eax, cs ; jmp $
    const bool classic = std::string(profile) == "x86";
    EXPECT_EQ(vmm.interpreted(), 4u);
    EXPECT_EQ(m.state().cpl(), 1u);
    EXPECT_EQ(m.state().mode(), isa::Mode::Compat32);
    EXPECT_EQ(m.state().rip, kBootSector + 18u);
    EXPECT_EQ(m.state().gpr[isa::RAX] & 0xFFFF, test::kKernelCode | (classic ? 1 : 0));
    EXPECT_EQ(vmm.leaks().total(), classic ? 1u : 0u);
    EXPECT_EQ(m.router->total_traps(), 1u);  // the first direct fetch (paging-off shadow)
  }
}

// An interrupt while the 32-bit guest kernel runs directly (at CPL 1) reaches its handler through
// its own 32-bit IDT, delivered on the virtual CPU once STI and the instruction in its shadow are
// done; the handler runs directly too, and its IRETD traps and is emulated.
//   sti ; nop ; inc ecx ; jmp $          handler: inc ebx ; iretd
TEST(Prot32, InterruptsReachThe32BitGuestsHandlerThroughItsIdt) {
  for (const char* profile : {"x86", "x86-pg"}) {
    SCOPED_TRACE(profile);
    DeprivilegedMachine m(profile, false);
    test::OneInterrupt pic;
    m.handler(0x30);
    m.ram.load(test::kHandler + 0x30 * 16, {0x43, 0xCF});
    vmm::TrapEmulateVmm& vmm = m.start({0xFB, 0x90, 0x41, 0xEB, 0xFE}, {}, kCode, &pic, at_cpl(1));
    m.core.notify_interrupt();
    m.core.run(4);  // nop ; the handler's inc ebx ; inc ecx ; jmp $
    EXPECT_FALSE(pic.pending);
    EXPECT_EQ(m.state().gpr[isa::RBX], 1u);
    EXPECT_EQ(m.state().gpr[isa::RCX], 1u);
    EXPECT_EQ(m.state().rip, kCode + 3);
    EXPECT_EQ(m.state().cpl(), 1u);
    EXPECT_EQ(m.traps(TrapCause::Interrupt), 1u);
    EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 2u);  // STI, IRETD
    EXPECT_EQ(vmm.reflected(), 1u);
    EXPECT_EQ(vmm.leaks().total(), 0u);
  }
}

// The guest's IOPL must stay below the real CPL, or the guest would reach the real ports and IF:
// at IOPL 1 the guest kernel runs directly at CPL 3 (its OUTs trap) but is interpreted at CPL 1.
//   mov ecx, 3 ; L: out 0x80, al ; dec ecx ; jnz L ; hlt
TEST(Prot32, AtAnIoplNotBelowTheDeprivilegedCplTheGuestIsInterpreted) {
  for (unsigned cpl : {1u, 3u}) {
    SCOPED_TRACE(cpl);
    DeprivilegedMachine m("x86-pg", false);
    m.state().rflags |= 1u << isa::kIoplShift;
    vmm::TrapEmulateVmm& vmm = start_prot32(m, cat({{0xB9}, imm32(3), {0xE6, 0x80, 0xFF, 0xC9, 0x75, 0xFA, 0xF4}}), cpl);
    m.core.run(100);
    EXPECT_TRUE(m.state().halted);
    EXPECT_EQ(m.io.outs.size(), 3u);
    if (cpl == 1) {
      EXPECT_EQ(vmm.interpreted(), 1 + 3 * 3 + 1u);  // everything, HLT included
      EXPECT_EQ(m.router->total_traps(), 0u);
    } else {
      EXPECT_EQ(vmm.interpreted(), 0u);
      EXPECT_EQ(m.state().iopl(), 1u);  // the guest's, below the real CPL 3
      EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 3 + 1u);  // the OUTs and HLT
    }
  }
}

}  // namespace
}  // namespace pgsim

namespace pgsim {
namespace {

// The guest's own paging, 32-bit or PAE, below the VMM's 4-level shadows. Linear 0x500000 maps
// physical 0x300000 (not the identity), and the guest remaps it by writing its page table.
constexpr uint32_t kData = 0x500000;
constexpr uint32_t kFirst = 0x11111111, kSecond = 0x22222222;
struct GuestPaging {
  const char* name;
  uint32_t cr3, cr4;
  uint32_t entry, new_entry;  // the entry that maps kData, and what the guest writes there
};

// 32-bit paging: page directory 0x201000; page table 0x202000 maps 0-4 MiB to itself, page table
// 0x203000 maps kData to 0x300000 (then 0x301000).
GuestPaging paging32(test::FlatRam& ram) {
  constexpr uint32_t kPd = 0x201000, kPt = 0x202000, kPt2 = 0x203000, kPw = 3;
  ram.put<uint32_t>(kPd, kPt | kPw);
  ram.put<uint32_t>(kPd + 4, kPt2 | kPw);
  for (uint32_t k = 0; k < 1024; ++k) ram.put<uint32_t>(kPt + 4 * k, k * 4096 | kPw);
  ram.put<uint32_t>(kPt2 + 4 * 0x100, 0x300000 | kPw);
  ram.put<uint32_t>(0x301000, kSecond);
  return {"32-bit", kPd, 0, kPt2 + 4 * 0x100, 0x301000 | kPw};
}

// PAE paging: a PDPT at 0x205020 (32-byte aligned, not page-aligned) and one page directory
// 0x206000 of 2 MiB pages: 0-4 MiB to itself, 4-6 MiB (kData) to 2-4 MiB (then to itself).
GuestPaging paging_pae(test::FlatRam& ram) {
  constexpr uint32_t kPdpt = 0x205020, kPd = 0x206000, kLarge = 0x83;
  ram.put<uint64_t>(kPdpt, kPd | 1);
  ram.put<uint64_t>(kPd, 0 | kLarge);
  ram.put<uint64_t>(kPd + 8, 0x200000 | kLarge);
  ram.put<uint64_t>(kPd + 2 * 8, 0x200000 | kLarge);
  ram.put<uint32_t>(kData, kSecond);
  return {"PAE", kPdpt, isa::CR4_PAE, kPd + 2 * 8, 0x400000 | kLarge};
}

// Turns the guest's paging on with the tables `p` describes (kData holding kFirst until remapped).
void use_paging(DeprivilegedMachine& m, const GuestPaging& p) {
  m.ram.put<uint32_t>(0x300000, kFirst);
  m.state().cr0 |= isa::CR0_PG;
  m.state().cr3 = p.cr3;
  m.state().cr4 = p.cr4;
}

// A second PAE page directory at 0x207000: 0-6 MiB to itself (kData to 0x500000, kSecond).
constexpr uint32_t kOtherPd = 0x207000;
void put_other_pae_directory(test::FlatRam& ram) {
  for (uint32_t k = 0; k < 3; ++k) ram.put<uint64_t>(kOtherPd + 8 * k, (k << 21) | 0x83);
}

// mov eax, [kData] ; mov [edi], ebx ; invlpg [kData] ; mov ecx, [kData] ; jmp $
std::vector<uint8_t> remap_code() {
  return cat({{0xA1}, imm32(kData), {0x89, 0x1F, 0x0F, 0x01, 0x3D}, imm32(kData), {0x8B, 0x0D}, imm32(kData),
              {0xEB, 0xFE}});
}
constexpr uint64_t kRemapEnd = 5 + 2 + 7 + 6;

// The page faults, in order, the same for 32-bit and PAE tables: (1) the first fetch (hidden; the
// walk finds new guest tables, write-protected where a shadow maps them: nowhere yet); (2) the
// load from kData (hidden); (3) the write to the guest's paging entry (traced, emulated: the
// shadow leaf of kData, built from that entry, is dropped, and nothing else); (4) the second load
// (hidden, through the new mapping). The INVLPG traps (#GP) and is emulated; the loads run
// directly.
TEST(Prot32, PagingOnThe32BitAndPaeTablesRunsDirectlyOnA4LevelShadow) {
  for (auto make : {paging32, paging_pae}) {
    for (unsigned cpl : {1u, 3u}) {
      DeprivilegedMachine m("x86-pg", false);
      const GuestPaging p = make(m.ram);
      SCOPED_TRACE(std::string(p.name) + " CPL " + std::to_string(cpl));
      use_paging(m, p);
      m.state().gpr[isa::RDI] = p.entry;
      m.state().gpr[isa::RBX] = p.new_entry;
      vmm::TrapEmulateVmm& vmm = start_prot32(m, remap_code(), cpl);
      EXPECT_EQ(m.state().cpl(), cpl);
      EXPECT_EQ(m.state().mode(), isa::Mode::Compat32);
      m.core.run(3);  // the two loads and jmp $
      EXPECT_EQ(m.state().rip, kCode + kRemapEnd);
      EXPECT_EQ(m.state().gpr[isa::RAX], kFirst);
      EXPECT_EQ(m.state().gpr[isa::RCX], kSecond);
      EXPECT_EQ(vmm.shadow().traced_writes, 1u);
      EXPECT_EQ(vmm.shadow().hidden_faults, 3u);
      EXPECT_EQ(m.traps(TrapCause::PageFault), 4u);
      EXPECT_EQ(vmm.shadow().entry_invalidations, 1u);
      EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 1u);
      EXPECT_EQ(vmm.shadow().true_faults, 0u);
      EXPECT_EQ(vmm.interpreted(), 0u);
      EXPECT_EQ(vmm.leaks().total(), 0u);
      EXPECT_EQ(vmm.resource_control_violations(), 0u);
      EXPECT_EQ(m.state().cpl(), cpl);
    }
  }
}

// PAE CR3 loads (the processor reads the PDPTEs then) find shadows of their own PDPT:
// - another PDPT in the same page (0x205040 after 0x205020, set up beforehand; the store goes to
//   a scratch word) is another address space, with a shadow of its own (a shadow keyed by the
//   CR3's page would be the first one's);
// - a PDPTE the guest rewrote is seen at the reload: the PDPT is a guest page table too (though
//   the walk reads it without a reference), and the write to it is traced.
// Either way kData maps 0x300000 (kFirst) before and 0x500000 (kSecond) after.
//   mov eax, [kData] ; mov [edi], ebx ; mov cr3, esi ; mov ecx, [kData] ; jmp $
TEST(Prot32, PaeCr3LoadsFindShadowsOfTheirOwnPdpt) {
  for (const bool rewrite : {false, true}) {
    SCOPED_TRACE(rewrite ? "PDPTE rewritten" : "another PDPT in the page");
    DeprivilegedMachine m("x86-pg", false);
    const GuestPaging p = paging_pae(m.ram);
    use_paging(m, p);
    put_other_pae_directory(m.ram);
    constexpr uint32_t kSecondPdpt = 0x205040, kScratch = 0x280000;
    m.ram.put<uint64_t>(kSecondPdpt, kOtherPd | 1);
    m.state().gpr[isa::RDI] = rewrite ? p.cr3 : kScratch;
    m.state().gpr[isa::RBX] = kOtherPd | 1;
    m.state().gpr[isa::RSI] = rewrite ? p.cr3 : kSecondPdpt;
    vmm::TrapEmulateVmm& vmm = start_prot32(
        m, cat({{0xA1}, imm32(kData), {0x89, 0x1F, 0x0F, 0x22, 0xDE, 0x8B, 0x0D}, imm32(kData), {0xEB, 0xFE}}), 1);
    m.core.run(3);
    EXPECT_EQ(m.state().gpr[isa::RAX], kFirst);
    EXPECT_EQ(m.state().gpr[isa::RCX], kSecond);
    EXPECT_EQ(vmm.shadow().traced_writes, rewrite ? 1u : 0u);
    EXPECT_EQ(vmm.shadow().cr3_switches, rewrite ? 0u : 1u);
  }
}

// A page the guest maps to physical memory that is not its RAM but the VMM's stops the run with
// a message naming both addresses, instead of handing the guest the VMM's memory.
//   mov eax, [kGuestRam] ; jmp $   (paging off)
TEST(Prot32, TheVmmsMemoryIsOutOfTheGuestsReach) {
  DeprivilegedMachine m("x86-pg", false);
  start_prot32(m, cat({{0xA1}, imm32(static_cast<uint32_t>(test::kGuestRam)), {0xEB, 0xFE}}), 1);
  m.core.run(2);
  ASSERT_TRUE(m.core.is_shutdown());
  EXPECT_NE(m.core.shutdown_reason().find("0x2000000"), std::string::npos) << m.core.shutdown_reason();
  EXPECT_NE(m.core.shutdown_reason().find("VMM's memory"), std::string::npos) << m.core.shutdown_reason();
}

}  // namespace
}  // namespace pgsim

namespace pgsim {
namespace {

// A Multiboot-style start: 32-bit protected mode, paging off, CPL 0; the guest enters IA-32e mode
// (still in 32-bit code: compatibility mode) and leaves it again.
//   mov eax, kPml4 ; mov cr3, eax ; mov eax, cr4 ; or eax, 0x20 ; mov cr4, eax        (PAE)
//   mov ecx, 0xC0000080 ; rdmsr ; or eax, 0x100 ; wrmsr                               (EFER.LME)
//   mov eax, cr0 ; or eax, 0x80000001 ; mov cr0, eax                                  (PG: IA-32e)
//   mov ebx, cs
//   mov eax, cr0 ; and eax, 0x7FFFFFFF ; mov cr0, eax                                 (PG off: out)
//   mov edx, cs ; jmp $
// The real CPL follows: the deprivileged CPL, then 3 in IA-32e mode, then the deprivileged CPL.
TEST(Prot32, TheRealCplFollowsTheGuestIntoIa32eModeAndBack) {
  for (const char* profile : {"x86", "x86-pg"}) {
    for (unsigned cpl : {1u, 3u}) {
      SCOPED_TRACE(std::string(profile) + " CPL " + std::to_string(cpl));
      DeprivilegedMachine m(profile);
      test::make_prot32(m.state(), 0);
      m.state().cr3 = 0;
      const std::vector<uint8_t> code =
          cat({{0xB8}, imm32(test::kPml4), {0x0F, 0x22, 0xD8, 0x0F, 0x20, 0xE0, 0x83, 0xC8, 0x20, 0x0F, 0x22, 0xE0},
               {0xB9}, imm32(0xC0000080), {0x0F, 0x32, 0x0D}, imm32(0x100), {0x0F, 0x30, 0x0F, 0x20, 0xC0, 0x0D},
               imm32(0x80000001), {0x0F, 0x22, 0xC0, 0x8C, 0xCB, 0x0F, 0x20, 0xC0, 0x25}, imm32(0x7FFFFFFF),
               {0x0F, 0x22, 0xC0, 0x8C, 0xCA, 0xEB, 0xFE}});
      vmm::TrapEmulateVmm& vmm = start_prot32(m, code, cpl);
      EXPECT_EQ(m.state().cpl(), cpl);
      m.core.run(9);  // mov eax, or, mov ecx, or, or, mov ebx cs, and, mov edx cs, jmp $
      const bool classic = std::string(profile) == "x86";
      EXPECT_EQ(m.state().rip, kCode + code.size() - 2);
      EXPECT_FALSE(vmm.virtual_cpu().state().long_mode_active());
      EXPECT_EQ(m.state().cpl(), cpl);
      EXPECT_EQ(m.state().mode(), isa::Mode::Compat32);
      EXPECT_EQ(m.state().gpr[isa::RBX] & 0xFFFF, test::kKernelCode | (classic ? 3 : 0));    // in IA-32e mode
      EXPECT_EQ(m.state().gpr[isa::RDX] & 0xFFFF, test::kKernelCode | (classic ? cpl : 0));  // out of it
      EXPECT_EQ(vmm.leaks().total(), classic ? 2u : 0u) << vmm.leaks().summary();
      // MOV CR3; MOV from CR4, to CR4; RDMSR, WRMSR; MOV from CR0, to CR0 (into IA-32e mode); MOV
      // from CR0, to CR0 (out of it).
      EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 9u);
      EXPECT_EQ(vmm.emulated(), 9u);
      EXPECT_EQ(vmm.interpreted(), 0u);
      EXPECT_EQ(vmm.resource_control_violations(), 0u);
    }
  }
}

// With the guest's paging off, the 2 MiB of the identity shadow that hold its GDT are mapped with
// 4 KiB entries, the GDT's read-only: the guest's writes to a descriptor (two 32-bit halves) trap
// and are traced, so that the segment load that follows, which runs directly on classic x86,
// finds the new descriptor in the shadow GDT.
//   mov [edi], eax ; mov [edi+4], edx ; mov fs, ecx ; mov edx, fs:[0] ; jmp $
TEST(Prot32, WithPagingOffTheGuestsGdtWritesAreTracedBeforeASegmentLoad) {
  constexpr uint16_t kSelector = 0x50;
  constexpr uint32_t kBase = 0x345000;
  const std::vector<uint8_t> code = {0x89, 0x07, 0x89, 0x57, 0x04, 0x8E, 0xE1,
                                     0x64, 0x8B, 0x15, 0, 0, 0, 0, 0xEB, 0xFE};
  const uint64_t descriptor = test::segment_descriptor(kBase, 0xFFFFF, 0x3, 0, false, true);
  auto prepare = [&](DeprivilegedMachine& m) {
    m.state().gpr[isa::RDI] = test::kGdt + kSelector;
    m.state().gpr[isa::RAX] = descriptor & 0xFFFFFFFF;
    m.state().gpr[isa::RDX] = descriptor >> 32;
    m.state().gpr[isa::RCX] = kSelector;
    m.ram.put<uint32_t>(kBase, 0x5EED);
  };
  DeprivilegedMachine native("x86", false);
  prepare(native);
  native.load_code(kCode, code);
  native.core.run(4);
  ASSERT_EQ(native.state().gpr[isa::RDX], 0x5EEDu);

  for (unsigned cpl : {1u, 3u}) {
    SCOPED_TRACE(cpl);
    DeprivilegedMachine m("x86", false);
    prepare(m);
    vmm::TrapEmulateVmm& vmm = start_prot32(m, code, cpl);
    m.core.run(3);  // the two writes retire on the virtual CPU
    EXPECT_EQ(m.state().rip, kCode + code.size() - 2);
    EXPECT_EQ(m.state().gpr[isa::RDX], 0x5EEDu);
    EXPECT_EQ(m.state().seg[isa::FS].base, native.state().seg[isa::FS].base);
    const vmm::ShadowCounters& s = vmm.shadow();
    EXPECT_EQ(s.gdt_traced_writes, 2u);
    // Hidden: the first fetch (the 2 MiB around it, GDT included, in 4 KiB entries) and the load
    // through FS (the next 2 MiB, as one page); the other two page faults are the traced writes.
    EXPECT_EQ(s.hidden_faults, 2u);
    EXPECT_EQ(m.traps(TrapCause::PageFault), 4u);
    EXPECT_EQ(vmm.interpreted(), 0u);
    EXPECT_EQ(vmm.resource_control_violations(), 0u);
  }
}

}  // namespace
}  // namespace pgsim

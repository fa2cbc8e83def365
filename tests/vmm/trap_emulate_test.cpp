// trap_emulate on a hand-built long-mode guest: the guest kernel runs at real CPL 3 on the VMM's
// descriptor tables and shadow page tables; privileged instructions trap and are emulated on the
// virtual CPU; INT n and exceptions are reflected through the guest's IDT. Trap counts are exact.
#include <gtest/gtest.h>

#include "tests/vmm/deprivileged_machine.h"

namespace pgsim {
namespace {

using test::DeprivilegedMachine;
using test::kCode;
using test::kHandler;
using test::cat;
using test::imm32;
using vmm::TrapCause;

// mov ecx, n ; L: out 0x80, al ; dec ecx ; jnz L ; jmp $
std::vector<uint8_t> out_loop(uint32_t n) {
  return cat({{0xB9}, imm32(n), {0xE6, 0x80, 0xFF, 0xC9, 0x75, 0xFA, 0xEB, 0xFE}});
}
constexpr uint64_t kOutLoopEnd = 5 + 6;  // offset of the final jmp $

TEST(TrapEmulate, TheGuestKernelRunsAtCpl3OnTheVmmsTablesAndBelievesItIsAtCpl0) {
  DeprivilegedMachine m("x86-pg");
  vmm::TrapEmulateVmm& vmm = m.start(out_loop(1));
  const isa::CpuState& real = m.state();
  EXPECT_EQ(real.cpl(), 3u);
  EXPECT_EQ(real.seg[isa::CS].selector, test::kKernelCode | 3);
  EXPECT_EQ(real.gdtr.base, vmm::kVmmLinearBase);
  EXPECT_NE(real.cr3, test::kPml4);  // a shadow root in VMM memory
  EXPECT_GE(real.cr3, test::kGuestRam);
  EXPECT_TRUE(real.rflags & isa::IF);
  EXPECT_EQ(real.iopl(), 0u);
  EXPECT_EQ(vmm.virtual_cpu().cpl(), 0u);
  EXPECT_EQ(vmm.virtual_cpu().state().cr3, test::kPml4);
  EXPECT_EQ(vmm.virtual_cpu().state().gdtr.base, test::kGdt);
  EXPECT_FALSE(vmm.virtual_cpu().state().rflags & isa::IF);
}

// The port-I/O nanobenchmark: each OUT traps once (#GP: IOPL 0 and no I/O bitmap in the VMM's
// TSS) and is emulated through the device model. The only other trap is the hidden page fault of
// the first fetch from the code page (the shadow starts empty).
TEST(TrapEmulate, EachPortIoInstructionTrapsOnceAndIsEmulatedThroughTheDevice) {
  for (uint32_t n : {1u, 10u, 1000u}) {
    DeprivilegedMachine m("x86-pg");
    m.state().gpr[isa::RAX] = 0x5A;
    vmm::TrapEmulateVmm& vmm = m.start(out_loop(n));
    m.core.run(1 + 2 * n);  // mov, then dec and jnz: the OUTs retire on the virtual CPU
    EXPECT_EQ(m.state().rip, kCode + kOutLoopEnd) << n;
    EXPECT_EQ(m.traps(TrapCause::GeneralProtection), n);
    EXPECT_EQ(m.traps(TrapCause::PageFault), 1u);
    EXPECT_EQ(m.router->total_traps(), n + 1);
    EXPECT_EQ(vmm.emulated_io(), n);
    ASSERT_EQ(m.io.outs.size(), n);
    EXPECT_EQ(m.io.outs.back().port, 0x80);
    EXPECT_EQ(m.io.outs.back().value, 0x5Au);
    EXPECT_EQ(vmm.shadow().hidden_faults, 1u);
    EXPECT_EQ(vmm.shadow().true_faults, 0u);
    EXPECT_EQ(m.state().cpl(), 3u);
    EXPECT_EQ(m.router->vmm().resource_control_violations(), 0u);
  }
}

// The guest maps the VMM's memory (the 2 MiB above guest RAM, where the shadow GDT lies) and
// stores its IDTR there. On x86-pg SIDT traps and the virtual CPU emulates it: its store is
// refused; on classic x86 SIDT runs directly and the real CPU's store takes a page fault whose
// walk ends in the VMM's memory, which no shadow maps. Either way the run stops, naming the
// address of the first access refused (SIDT stores the base at +2 before the limit), and the VMM's
// memory is untouched (resource control).
//   sidt [0x2000000] ; jmp $
TEST(TrapEmulate, TheGuestCannotReachTheVmmsMemoryThroughItsPageTables) {
  for (const char* profile : {"x86-pg", "x86"}) {
    SCOPED_TRACE(profile);
    DeprivilegedMachine m(profile);
    m.ram.put<uint64_t>(test::kPd + (test::kGuestRam >> 21) * 8,
                        test::kGuestRam | test::kPteP | test::kPteRw | test::kPtePs);
    vmm::TrapEmulateVmm& vmm = m.start(cat({{0x0F, 0x01, 0x0C, 0x25}, imm32(test::kGuestRam), {0xEB, 0xFE}}));
    const uint64_t shadow_gdt[2] = {m.ram.get<uint64_t>(test::kGuestRam), m.ram.get<uint64_t>(test::kGuestRam + 8)};
    m.core.run(2);
    ASSERT_TRUE(m.core.is_shutdown());
    EXPECT_NE(m.core.shutdown_reason().find("physical address 0x200000"), std::string::npos) << m.core.shutdown_reason();
    EXPECT_NE(m.core.shutdown_reason().find("which is the VMM's memory"),
              std::string::npos)
        << m.core.shutdown_reason();
    EXPECT_EQ(m.ram.get<uint64_t>(test::kGuestRam), shadow_gdt[0]);
    EXPECT_EQ(m.ram.get<uint64_t>(test::kGuestRam + 8), shadow_gdt[1]);
    EXPECT_EQ(vmm.resource_control_violations(), 0u);
  }
}

// The virtual CPU fetches an instruction's bytes in one copy where they are guest RAM, and never
// copies from the VMM's memory: there its byte-by-byte reads stop the run (above).
TEST(TrapEmulate, TheVirtualCpuCopiesGuestRamOnly) {
  DeprivilegedMachine m("x86-pg");
  vmm::TrapEmulateVmm& vmm = m.start({0xEB, 0xFE});
  isa::PhysicalBus& bus = vmm.virtual_cpu().bus();  // the memory the virtual CPU sees
  uint8_t bytes[8] = {};
  ASSERT_TRUE(bus.copy_from_ram(kCode, bytes, 2));
  EXPECT_EQ(bytes[0], 0xEB);
  EXPECT_EQ(bytes[1], 0xFE);
  m.ram.put<uint64_t>(test::kGuestRam - 8, 0x0123456789ABCDEF);
  ASSERT_TRUE(bus.copy_from_ram(test::kGuestRam - 8, bytes, 8));  // the last bytes of guest RAM
  EXPECT_EQ(bytes[0], 0xEF);
  EXPECT_EQ(bytes[7], 0x01);
  EXPECT_FALSE(bus.copy_from_ram(test::kGuestRam, bytes, 8));      // the VMM's memory
  EXPECT_FALSE(bus.copy_from_ram(test::kGuestRam - 4, bytes, 8));  // into the VMM's memory
  EXPECT_FALSE(bus.copy_from_ram(0x1FFC, bytes, 8));               // across a frame's end
  EXPECT_FALSE(m.core.is_shutdown());  // only a read stops the run
}

// The real CPU's IDT is the VMM's: 256 interrupt gates at DPL 0 into consecutive 16-byte entries
// of the VMM's area, through the VMM's 64-bit ring-0 code segment, which the shadow GDT places after
// the guest's entries. A guest LGDT that grows its GDT moves that segment, and the gates follow.
//   lgdt [rip + 2] ; jmp $ ; dw 0xFF ; dq kGdt
TEST(TrapEmulate, TheVmmsIdtGatesFollowItsCodeSegmentWhenTheGuestGdtGrows) {
  for (const char* profile : {"x86-pg", "x86"}) {
    SCOPED_TRACE(profile);
    DeprivilegedMachine m(profile);
    vmm::TrapEmulateVmm& vmm =
        m.start(cat({{0x0F, 0x01, 0x15}, imm32(2), {0xEB, 0xFE, 0xFF, 0x00}, imm32(test::kGdt), imm32(0)}));
    auto expect_gates = [&](uint16_t selector) {
      constexpr auto kVmm = isa::AccessOrigin::ImplicitSupervisor;
      const isa::CpuState& real = m.state();
      ASSERT_EQ(real.idtr.limit, 0xFFF);
      ASSERT_GT(real.gdtr.limit, selector);
      const uint64_t code = m.core.read_linear(real.gdtr.base + (selector & ~7u), 8, kVmm);
      EXPECT_EQ((code >> 40) & 0xF8, 0x98u);  // present, DPL 0, a code segment...
      EXPECT_EQ((code >> 53) & 3, 1u);        // ...of 64-bit code (L, not D)
      uint64_t first = 0;  // the trap router stands in for the code there
      for (unsigned v = 0; v < 256; ++v) {
        const uint64_t lo = m.core.read_linear(real.idtr.base + 16 * v, 8, kVmm);
        const uint64_t hi = m.core.read_linear(real.idtr.base + 16 * v + 8, 8, kVmm);
        const uint64_t offset = (lo & 0xFFFF) | ((lo >> 48) << 16) | (hi << 32);
        if (v == 0) first = offset;
        EXPECT_EQ((lo >> 16) & 0xFFFF, selector) << "vector " << v;
        EXPECT_EQ((lo >> 32) & 0xFFFF, 0x8E00u) << "vector " << v;  // present, DPL 0, interrupt gate, no IST
        EXPECT_EQ(offset, first + 16 * v) << "vector " << v;
      }
    };
    expect_gates(0x80);  // after the guest's 16 entries (its GDTR limit is 0x7F)
    EXPECT_EQ(m.core.run(1), 1u);
    EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 1u);  // LGDT, emulated: the GDT has 32 entries
    EXPECT_EQ(vmm.virtual_cpu().state().gdtr.limit, 0xFF);
    expect_gates(0x100);
  }
}

// An emulated instruction that stores into code the real CPU has decoded: the real CPU runs the new
// code. INSB traps (port I/O) and the virtual CPU stores the port's byte, a RET, over the INC.
//   call f ; mov edi, f ; mov edx, 0x60 ; insb ; call f ; jmp $
//   f: inc ebx ; ret
TEST(TrapEmulate, AStoreOfAnEmulatedInstructionIntoDecodedCodeIsSeenByTheRealCpu) {
  DeprivilegedMachine m("x86-pg");
  m.io.in_value = 0xC3;  // ret
  const uint32_t f = static_cast<uint32_t>(kCode) + 23;
  m.start(cat({{0xE8}, imm32(18), {0xBF}, imm32(f), {0xBA}, imm32(0x60), {0x6C, 0xE8}, imm32(2), {0xEB, 0xFE},
               {0xFF, 0xC3, 0xC3}}));
  m.core.run(9);  // call, inc, ret, mov, mov, insb (emulated), call, ret, jmp
  EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 1u);
  EXPECT_EQ(m.ram.get<uint8_t>(f), 0xC3);
  EXPECT_EQ(m.state().gpr[isa::RBX], 1u);  // the second call ran the RET alone
  EXPECT_EQ(m.state().rip, kCode + 21);
}

// The virtual CPU's accesses follow the guest's address space: after a MOV CR3 to tables that map
// the same linear page elsewhere, an emulated store there reaches the other page. Both stores are
// INSB's (port I/O traps); the second address space maps the 2 MiB at 8 MiB onto those at 10 MiB.
//   mov edi, 8M ; mov edx, 0x60 ; insb ; mov eax, pml4' ; mov cr3, rax ; mov edi, 8M ; insb ; jmp $
TEST(TrapEmulate, TheVirtualCpusAccessesFollowTheGuestsAddressSpace) {
  DeprivilegedMachine m("x86-pg");
  m.ram.make_one_piece();  // the virtual CPU remembers its walks, as on the platform
  constexpr uint64_t kPml4B = 0x103000, kPdptB = 0x104000, kPdB = 0x105000, kPage = 8ull << 20;
  m.ram.put<uint64_t>(kPml4B, kPdptB | test::kPteP | test::kPteRw);
  m.ram.put<uint64_t>(kPdptB, kPdB | test::kPteP | test::kPteRw);
  for (uint64_t k = 0; k < test::kGuestRam >> 21; ++k) {
    const uint64_t frame = (k << 21) == kPage ? kPage + (2ull << 20) : k << 21;
    m.ram.put<uint64_t>(kPdB + k * 8, frame | test::kPteP | test::kPteRw | test::kPtePs);
  }
  m.io.in_value = 0xAB;
  vmm::TrapEmulateVmm& vmm =
      m.start(cat({{0xBF}, imm32(kPage), {0xBA}, imm32(0x60), {0x6C, 0xB8}, imm32(kPml4B), {0x0F, 0x22, 0xD8, 0xBF},
                   imm32(kPage), {0x6C, 0xEB, 0xFE}}));
  m.core.run(7);
  EXPECT_EQ(vmm.virtual_cpu().state().cr3, kPml4B);
  EXPECT_EQ(m.io.ins.size(), 2u);
  EXPECT_EQ(m.ram.get<uint8_t>(kPage), 0xAB);                 // the first address space's page
  EXPECT_EQ(m.ram.get<uint8_t>(kPage + (2ull << 20)), 0xAB);  // the second's
  EXPECT_EQ(m.state().rip, kCode + 25);  // at the jmp $
}

TEST(TrapEmulate, EveryCycleOfATrapIsChargedToANamedBucket) {
  DeprivilegedMachine m("x86-pg");
  vmm::VmmCosts costs;
  costs.trap = 100;
  costs.resume = 10;
  costs.emulate_io = 1000;
  costs.shadow_fill = 10000;
  costs.device_model = 7;
  vmm::TrapEmulateVmm& vmm = m.start(out_loop(5), costs);
  m.core.run(1 + 2 * 5);
  // 6 traps (5 OUT, 1 hidden page fault), each with a return; 5 I/O emulations, each one access
  // to the software device; 1 fill.
  EXPECT_EQ(vmm.device_accesses_modelled(), 5u);
  EXPECT_EQ(vmm.cycles().total(), 6 * (100 + 10) + 5 * (1000 + 7) + 10000u);
}

// A guest CLI/STI pair: both are privileged at CPL 3 and change only the virtual IF.
TEST(TrapEmulate, CliAndStiTrapAndChangeTheVirtualInterruptFlagOnly) {
  DeprivilegedMachine m("x86-pg");
  m.state().rflags |= isa::IF;
  vmm::TrapEmulateVmm& vmm = m.start({0xFA, 0x90, 0xFB, 0x90, 0xEB, 0xFE});  // cli ; nop ; sti ; nop ; jmp $
  m.core.run(1);  // nop (the CLI was emulated)
  EXPECT_FALSE(vmm.virtual_cpu().state().rflags & isa::IF);
  EXPECT_TRUE(m.state().rflags & isa::IF);  // the real CPU keeps taking interrupts for the VMM
  m.core.run(1);
  EXPECT_TRUE(vmm.virtual_cpu().state().rflags & isa::IF);
  EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 2u);
  EXPECT_EQ(vmm.emulated(), 2u);
}

// INT n from the guest kernel: where the profile leaves it as on classic x86 it does not fault at
// CPL 3 (the trap router sees the software interrupt and reflects it through the guest's IDT);
// where the profile makes it #GP, the VMM emulates it. Either way the guest's handler runs, and
// its IRETQ (to a CPL-0 selector, which the real CPL 3 refuses) traps and is emulated.
TEST(TrapEmulate, InterruptsReachTheGuestsHandlerThroughItsIdt) {
  for (const char* profile : {"x86", "x86-pg"}) {
    DeprivilegedMachine m(profile);
    m.handler(0x40);
    m.ram.load(kHandler + 0x40 * 16, {0xFF, 0xC3, 0x48, 0xCF});  // inc ebx ; iretq
    // mov ecx, 3 ; L: int 0x40 ; dec ecx ; jnz L ; jmp $
    vmm::TrapEmulateVmm& vmm = m.start(cat({{0xB9}, imm32(3), {0xCD, 0x40, 0xFF, 0xC9, 0x75, 0xFA, 0xEB, 0xFE}}));
    const bool int_faults = m.system.profile.at_cpl_above_0(isa::SensitiveInsn::IntN) == isa::Behavior::Gp;
    const bool iret_faults = m.system.profile.at_cpl_above_0(isa::SensitiveInsn::Iret) == isa::Behavior::Gp;
    // mov, then per iteration dec, jnz and the handler's inc (and the INT itself where it does not
    // fault: it completes on the real CPU before the VMM reflects it); then jmp $.
    m.core.run(1 + 3 * (int_faults ? 3 : 4) + 1);
    EXPECT_EQ(m.state().gpr[isa::RBX], 3u) << profile;
    EXPECT_EQ(m.state().rip, kCode + 11) << profile;
    EXPECT_EQ(m.traps(TrapCause::SoftwareInt), int_faults ? 0u : 3u) << profile;
    EXPECT_EQ(m.traps(TrapCause::GeneralProtection), int_faults ? 6u : 3u) << profile;
    // Hidden faults: the code page, the handler page, and where IRET is classic the stack page it
    // reads before it finds CS's RPL below the CPL (where it is #GP it faults at once at CPL 3).
    EXPECT_EQ(m.traps(TrapCause::PageFault), iret_faults ? 2u : 3u) << profile;
    EXPECT_EQ(vmm.virtual_cpu().cpl(), 0u);
    EXPECT_EQ(m.state().gpr[isa::RSP], test::kKernelStack - 0x100) << profile;
  }
}

// A fault the guest itself causes (a divide by zero) is the guest's: the virtual CPU raises it
// too and delivers it through the guest's IDT.
TEST(TrapEmulate, TheGuestsOwnFaultsAreReflectedToItsHandler) {
  DeprivilegedMachine m("x86-pg");
  m.handler(isa::DE);
  // The #DE handler: skip the 2-byte DIV and return.  add qword [rsp], 2 ; iretq
  m.ram.load(kHandler + isa::DE * 16, {0x48, 0x83, 0x04, 0x24, 0x02, 0x48, 0xCF});
  vmm::TrapEmulateVmm& vmm = m.start({0x31, 0xC9, 0xF7, 0xF1, 0xEB, 0xFE});  // xor ecx, ecx ; div ecx ; jmp $
  m.core.run(3);  // xor ; the handler's add ; jmp $ (the DIV faults; the IRETQ is emulated)
  EXPECT_EQ(m.state().rip, kCode + 4);
  EXPECT_EQ(m.traps(TrapCause::DivideError), 1u);
  EXPECT_EQ(vmm.reflected(), 1u);
  EXPECT_EQ(vmm.emulated(), 1u);  // the IRETQ
}

// Page faults: a hidden fault fills the shadow; an access the guest's own tables refuse is a true
// fault, reflected to the guest's #PF handler with the guest's error code.
TEST(TrapEmulate, TrueFaultsGoToTheGuestHiddenFaultsStayInTheVmm) {
  DeprivilegedMachine m("x86-pg");
  m.handler(isa::PF_);
  // #PF handler: record CR2 in r8 (a privileged MOV, emulated), drop the error code, skip the
  // 3-byte faulting load and return.  mov r8, cr2 ; add rsp, 8 ; add qword [rsp], 3 ; iretq
  m.ram.load(kHandler + isa::PF_ * 16,
             {0x41, 0x0F, 0x20, 0xD0, 0x48, 0x83, 0xC4, 0x08, 0x48, 0x83, 0x04, 0x24, 0x03, 0x48, 0xCF});
  m.state().gpr[isa::RBX] = 0x40000000;  // beyond the guest's tables: not present
  m.state().gpr[isa::RSI] = 0x300000;    // mapped
  // mov rax, [rsi] ; mov rax, [rbx] ; jmp $
  vmm::TrapEmulateVmm& vmm = m.start({0x48, 0x8B, 0x06, 0x48, 0x8B, 0x03, 0xEB, 0xFE});
  m.core.run(4);  // the first load, the handler's two ADDs, jmp $ (MOV CR2 and IRETQ are emulated)
  EXPECT_EQ(m.state().gpr[isa::R8], 0x40000000u);
  EXPECT_EQ(vmm.shadow().true_faults, 1u);
  // Hidden: code page, the first load's page, the handler page, the stack page.
  EXPECT_EQ(vmm.shadow().hidden_faults, 4u);
  EXPECT_EQ(vmm.virtual_cpu().state().cr2, 0x40000000u);
}

// The guest writes its own page tables: the write traps (the page-table frame is read-only in the
// shadow), is emulated on the virtual CPU, and the shadow leaves made from the old entry are
// dropped (here none: the code page's leaf came from PDE 0).
TEST(TrapEmulate, WritesToTheGuestsPageTablesAreTraced) {
  DeprivilegedMachine m("x86-pg");
  m.state().gpr[isa::RDI] = test::kPd + 8 * 9;  // the PDE of 18 MiB
  m.state().gpr[isa::RAX] = 0;                  // unmap it
  // mov [rdi], rax ; jmp $
  vmm::TrapEmulateVmm& vmm = m.start({0x48, 0x89, 0x07, 0xEB, 0xFE});
  m.core.run(1);
  EXPECT_EQ(m.ram.get<uint64_t>(test::kPd + 8 * 9), 0u);
  EXPECT_EQ(vmm.shadow().traced_writes, 1u);
  EXPECT_EQ(m.state().rip, kCode + 3);
  // The first fetch from the code page; the write. The code page's leaf stays.
  EXPECT_EQ(m.traps(TrapCause::PageFault), 2u);
  EXPECT_EQ(vmm.shadow().entry_invalidations, 0u);
  EXPECT_EQ(vmm.shadow().flushes, 0u);
}

// Resource control: the real privileged state is the VMM's; anything else is caught at the next trap.
TEST(TrapEmulate, AChangeToRealPrivilegedStateIsCaughtAsAResourceControlViolation) {
  DeprivilegedMachine m("x86-pg");
  vmm::TrapEmulateVmm& vmm = m.start(out_loop(3));
  m.core.run(2);
  EXPECT_EQ(m.router->vmm().resource_control_violations(), 0u);
  m.state().idtr.base = 0x2000;  // as if a guest instruction had loaded the real IDTR
  m.core.run(2);
  EXPECT_EQ(m.router->vmm().resource_control_violations(), 1u);
  EXPECT_NE(vmm.first_violation().find("RIP"), std::string::npos);
  EXPECT_EQ(m.state().idtr.base, vmm::kVmmLinearBase + 16 * 4096);  // restored
}

// HLT with the guest's interrupts off stops the machine as it would natively.
TEST(TrapEmulate, HltWithInterruptsOffHaltsTheRealCpuWithInterruptsOff) {
  DeprivilegedMachine m("x86-pg");
  m.start({0xF4, 0xEB, 0xFE});  // hlt
  m.core.run(5);
  EXPECT_TRUE(m.state().halted);
  EXPECT_FALSE(m.state().rflags & isa::IF);
  EXPECT_EQ(m.state().rip, kCode + 1);
}

}  // namespace
}  // namespace pgsim

namespace pgsim {
namespace {

// A Multiboot-style start: 32-bit protected mode, paging off, CPL 0. The guest's 32-bit code runs
// directly at the deprivileged CPL (vmm.deprivileged_cpl_prot32, 1 by default) on the VMM's
// paging-off shadow, and each privileged instruction of its switch to IA-32e mode traps and is
// emulated; from then on it runs at CPL 3.
//   mov eax, kPml4 ; mov cr3, eax ; mov eax, cr4 ; or eax, 0x20 ; mov cr4, eax        (PAE)
//   mov ecx, 0xC0000080 ; rdmsr ; or eax, 0x100 ; wrmsr                               (EFER.LME)
//   mov eax, cr0 ; or eax, 0x80000001 ; mov cr0, eax                                  (PG: IA-32e)
//   ljmp 0x08:long_entry
// long_entry (64-bit): the port-I/O loop of 5 iterations, then jmp $.
std::vector<uint8_t> boot_to_long_mode() {
  const uint32_t long_entry = static_cast<uint32_t>(test::kCode) + 49;
  std::vector<uint8_t> code = cat({{0xB8}, imm32(test::kPml4), {0x0F, 0x22, 0xD8, 0x0F, 0x20, 0xE0, 0x83, 0xC8, 0x20},
                                   {0x0F, 0x22, 0xE0, 0xB9}, imm32(0xC0000080), {0x0F, 0x32, 0x0D}, imm32(0x100),
                                   {0x0F, 0x30, 0x0F, 0x20, 0xC0, 0x0D}, imm32(0x80000001), {0x0F, 0x22, 0xC0, 0xEA},
                                   imm32(long_entry), {0x08, 0x00}});
  EXPECT_EQ(code.size(), 49u);
  return cat({code, out_loop(5)});
}
// The switch's privileged instructions: MOV CR3, MOV from and to CR4, RDMSR, WRMSR, MOV from and
// to CR0 (the last activates IA-32e mode). The other five (mov eax, three ORs, mov ecx) run directly.
constexpr uint64_t kBootTraps = 7, kBootDirect = 5;

TEST(TrapEmulate, TheGuestsSwitchToIa32eModeTrapsAtEachPrivilegedInstructionAndIsNeverInterpreted) {
  for (const char* profile : {"x86", "x86-pg"}) {
    SCOPED_TRACE(profile);
    DeprivilegedMachine m(profile);
    test::make_prot32(m.state(), 0);
    m.state().cr3 = 0;
    vmm::TrapEmulateVmm& vmm = m.start(boot_to_long_mode());
    EXPECT_EQ(m.state().cpl(), 1u);
    EXPECT_EQ(m.state().mode(), isa::Mode::Compat32);
    const bool pg = std::string(profile) == "x86-pg";
    // The far JMP runs directly on classic x86 (in IA-32e mode at the real CPL 3, a kernel-to-kernel
    // jump shows nothing) and traps on x86-pg; then mov, 5 x (dec, jnz).
    const uint64_t direct = kBootDirect + (pg ? 0 : 1) + 1 + 2 * 5;
    EXPECT_EQ(m.core.run(direct), direct);
    EXPECT_EQ(vmm.interpreted(), 0u);
    EXPECT_TRUE(vmm.virtual_cpu().state().long_mode_active());
    EXPECT_EQ(m.state().cpl(), 3u);
    EXPECT_EQ(m.state().rip, kCode + 49 + kOutLoopEnd);
    EXPECT_EQ(m.state().mode(), isa::Mode::Long64);
    EXPECT_EQ(vmm.virtual_cpu().state().seg[isa::CS].selector, test::kKernelCode);
    EXPECT_TRUE(vmm.virtual_cpu().state().seg[isa::CS].l());
    EXPECT_EQ(m.io.outs.size(), 5u);
    const uint64_t emulated = kBootTraps + (pg ? 1 : 0) + 5;
    EXPECT_EQ(m.traps(TrapCause::GeneralProtection), emulated);
    EXPECT_EQ(vmm.emulated(), emulated);
    // The first fetch (the paging-off shadow), and the first fetch once paging is on (the shadow of
    // the guest's 4-level tables, built anew when CR0.PG changed).
    EXPECT_EQ(m.traps(TrapCause::PageFault), 2u);
    EXPECT_EQ(vmm.leaks().total(), 0u);
    EXPECT_DOUBLE_EQ(vmm.direct_fraction(), static_cast<double>(direct) / (direct + emulated));
  }
}

}  // namespace
}  // namespace pgsim

namespace pgsim {
namespace {

// System calls from guest user code: SYSCALL and SYSRET trap (#UD: the real EFER.SCE is clear)
// and run on the virtual CPU, which switches the guest between its user and kernel modes; the
// VMM switches between the user and the kernel shadow of the address space with them.
//   user:   mov esi, 100 ; L: syscall ; dec esi ; jnz L ; jmp $
//   kernel: inc ebx ; sysretq
TEST(TrapEmulate, SystemCallsTrapTwiceEachAndSwitchBetweenTheUserAndKernelShadows) {
  DeprivilegedMachine m("x86-pg");
  m.state().lstar = kHandler;
  m.state().star = (uint64_t{0x10} << 48) | (uint64_t{test::kKernelCode} << 32);
  m.state().fmask = 0;
  m.ram.load(kHandler, {0xFF, 0xC3, 0x48, 0x0F, 0x07});
  m.enter_user(test::kUserRegion, test::kUserRegion + 0x10000);
  vmm::TrapEmulateVmm& vmm =
      m.start(cat({{0xBE}, imm32(100), {0x0F, 0x05, 0xFF, 0xCE, 0x75, 0xFA, 0xEB, 0xFE}}), {}, test::kUserRegion);
  EXPECT_EQ(vmm.virtual_cpu().cpl(), 3u);
  m.core.run(1 + 100 * 3 + 1);  // mov; per call dec, jnz and the kernel's inc; jmp $
  EXPECT_EQ(m.state().gpr[isa::RBX], 100u);
  EXPECT_EQ(m.state().rip, test::kUserRegion + 11);
  EXPECT_EQ(m.traps(TrapCause::InvalidOpcode), 200u);
  EXPECT_EQ(vmm.emulated(), 200u);
  // One hidden fault in each shadow: the user code page (user shadow), the kernel's (kernel shadow).
  EXPECT_EQ(m.traps(TrapCause::PageFault), 2u);
  EXPECT_EQ(vmm.shadow().cr3_switches, 0u);  // one address space throughout
  EXPECT_EQ(vmm.virtual_cpu().cpl(), 3u);
}

// Guest user code may not touch supervisor pages: the user shadow never maps them.
//   mov rax, [kCode] ; jmp $      (from user mode; the #PF handler stops at hlt with IF clear)
TEST(TrapEmulate, TheUserShadowHoldsOnlyTheGuestsUserPages) {
  DeprivilegedMachine m("x86-pg");
  m.handler(isa::PF_);
  m.ram.load(kHandler + isa::PF_ * 16, {0xF4});  // hlt
  m.enter_user(test::kUserRegion, test::kUserRegion + 0x10000);
  vmm::TrapEmulateVmm& vmm =
      m.start(cat({{0x48, 0x8B, 0x04, 0x25}, imm32(static_cast<uint32_t>(kCode)), {0xEB, 0xFE}}), {}, test::kUserRegion);
  m.core.run(10);
  EXPECT_TRUE(m.state().halted);
  EXPECT_EQ(vmm.shadow().true_faults, 1u);
  EXPECT_EQ(vmm.virtual_cpu().state().cr2, kCode);
  EXPECT_EQ(vmm.virtual_cpu().cpl(), 0u);  // in the guest's #PF handler
}

// The interrupt controller's requests reach the guest only when its virtual IF allows: held while
// the guest runs with interrupts off (though the real IF is set), delivered after STI and the one
// instruction of its interrupt shadow.
TEST(TrapEmulate, InterruptsWaitForTheGuestsVirtualInterruptFlag) {
  DeprivilegedMachine m("x86-pg");
  test::OneInterrupt pic;
  m.handler(0x30);
  m.ram.load(kHandler + 0x30 * 16, {0xFF, 0xC3, 0x48, 0xCF});  // inc ebx ; iretq
  // nop ; nop ; sti ; inc ecx ; inc edx ; jmp $
  vmm::TrapEmulateVmm& vmm = m.start({0x90, 0x90, 0xFB, 0xFF, 0xC1, 0xFF, 0xC2, 0xEB, 0xFE}, {}, kCode, &pic);
  m.core.notify_interrupt();
  m.core.run(2);  // the two NOPs
  EXPECT_TRUE(pic.pending);
  EXPECT_EQ(m.state().gpr[isa::RBX], 0u);
  m.core.run(1);  // STI (emulated), then inc ecx in its shadow
  EXPECT_EQ(m.state().gpr[isa::RCX], 1u);
  EXPECT_TRUE(pic.pending);
  m.core.run(1);  // the interrupt, the handler's inc ebx
  EXPECT_FALSE(pic.pending);
  EXPECT_EQ(m.state().gpr[isa::RBX], 1u);
  EXPECT_EQ(m.state().gpr[isa::RDX], 0u);
  m.core.run(2);  // back (IRETQ emulated): inc edx, jmp $
  EXPECT_EQ(m.state().gpr[isa::RDX], 1u);
  EXPECT_EQ(m.traps(TrapCause::Interrupt), 1u);
  EXPECT_EQ(m.router->interrupts_taken(), 1u);
  EXPECT_EQ(m.router->exceptions_taken(), m.router->total_traps() - 1);
  EXPECT_EQ(vmm.reflected(), 1u);
}

}  // namespace
}  // namespace pgsim

namespace pgsim {
namespace {

// Address-space switches: MOV CR3 traps, and the VMM switches to the shadow it keeps for the new
// guest CR3 (a cache hit) or starts one (a miss).
//   mov ecx, 50 ; L: mov cr3, rbx ; mov cr3, rsi ; dec ecx ; jnz L ; jmp $
TEST(TrapEmulate, ShadowRootsAreKeptAcrossAddressSpaceSwitches) {
  DeprivilegedMachine m("x86-pg");
  constexpr uint64_t kOtherPml4 = 0x103000;  // a second address space with the same mappings
  m.ram.put<uint64_t>(kOtherPml4, test::kPdpt | test::kPteP | test::kPteRw | test::kPteUs);
  m.state().gpr[isa::RBX] = kOtherPml4;
  m.state().gpr[isa::RSI] = test::kPml4;
  vmm::TrapEmulateVmm& vmm = m.start(cat({{0xB9}, imm32(50), {0x0F, 0x22, 0xDB, 0x0F, 0x22, 0xDE, 0xFF, 0xC9, 0x75, 0xF6,
                                                               0xEB, 0xFE}}));
  m.core.run(1 + 50 * 2 + 1);
  EXPECT_EQ(m.state().rip, kCode + 15);
  EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 100u);
  const vmm::ShadowCounters& s = vmm.shadow();
  EXPECT_EQ(s.cr3_switches, 100u);
  // Misses: the first root; the first switch to the other space. Every later switch finds its
  // shadow kept (finding the other space's PML4, a new page-table frame, drops nothing: no shadow
  // maps that frame).
  EXPECT_EQ(s.cache_misses, 2u);
  EXPECT_EQ(s.cache_hits, 100u - 1);
  EXPECT_EQ(m.traps(TrapCause::PageFault), 2u);  // the code page in each shadow
  EXPECT_EQ(s.flushes, 0u);
}

// INVLPG traps, runs on the virtual CPU and drops the page from every shadow.
//   mov rax, [rsi] ; invlpg [rsi] ; mov rax, [rsi] ; jmp $
TEST(TrapEmulate, InvlpgDropsThePageFromTheShadows) {
  DeprivilegedMachine m("x86-pg");
  m.state().gpr[isa::RSI] = 0x300000;
  vmm::TrapEmulateVmm& vmm = m.start({0x48, 0x8B, 0x06, 0x0F, 0x01, 0x3E, 0x48, 0x8B, 0x06, 0xEB, 0xFE});
  m.core.run(3);
  EXPECT_EQ(vmm.shadow().invalidations, 1u);
  EXPECT_EQ(vmm.shadow().hidden_faults, 3u);  // code; the data page; the data page again after INVLPG
  EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 1u);
}

}  // namespace
}  // namespace pgsim

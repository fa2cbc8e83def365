// The real guest kernel (workloads/) under trap_emulate on the MiniPc: on x86-pg it runs to PASS
// with the output of its native run, no leaks and exact trap counts; on classic x86 its own
// ring-0 check fails when leaks are exposed and passes when they are concealed.
#include <gtest/gtest.h>

#include <iostream>
#include <sstream>

#include "isa/system/system_config.h"
#include "models/vmm/trap_emulate.h"
#include "models/vmm/trap_router.h"
#include "tests/vmm/mini_pc.h"
#include "tests/vmm/walking_translator.h"

namespace pgsim {
namespace {

constexpr uint64_t kGuestRam = 128ull << 20, kVmmRam = 16ull << 20;

struct KernelRun {
  std::vector<std::string> lines;  // without `timing:` lines
  std::unique_ptr<vmm::TrapRouter> router;  // its machine is gone: counts only
  int exit_value = -1;
  double direct_fraction = 0;
  std::string serial;           // all of the guest's output
  uint64_t real_instructions = 0, vmm_cycles = 0;
  uint64_t apic_accesses = 0;   // as the stand-in PC's APIC windows counted them
};

// The stand-in PC with the kernel loaded at its Multiboot entry and a strategy attached.
struct BootedKernel {
  test::MiniPc pc{kGuestRam, kVmmRam};
  isa::Core core{pc, pc};
  test::WalkingTranslator walker{pc};
  isa::SystemConfig system;
  std::unique_ptr<isa::SystemConfigBinding> binding;
  std::unique_ptr<vmm::TrapRouter> router;

  BootedKernel(const char* profile, const char* strategy, const std::string& cmdline, const vmm::VmmOptions& options) {
    core.set_translator(&walker);
    system.profile = isa::load_profile(profile);
    binding = std::make_unique<isa::SystemConfigBinding>(core, system);
    pc.boot(core, PGSIM_KERNEL_IMAGE, cmdline);
    vmm::Machine machine{core};
    machine.vmm_memory_base = kGuestRam;
    machine.vmm_memory_size = kVmmRam;
    router = std::make_unique<vmm::TrapRouter>(vmm::make_vmm(strategy, machine, vmm::VmmCosts{}, options));
    router->attach(core);
  }
};

KernelRun run_kernel_with(const char* profile, const char* strategy, const std::string& cmdline,
                          const vmm::VmmOptions& options) {
  BootedKernel k(profile, strategy, cmdline, options);
  test::MiniPc& pc = k.pc;
  isa::Core& core = k.core;
  KernelRun r;
  r.router = std::move(k.router);
  for (int k = 0; k < 2000 && pc.exit_value < 0 && !core.is_shutdown() && !core.state().halted; ++k)
    core.run(100000);
  EXPECT_FALSE(core.is_shutdown()) << core.shutdown_reason();
  r.exit_value = pc.exit_value;
  r.direct_fraction = r.router->vmm().direct_fraction();
  r.serial = pc.serial;
  r.apic_accesses = pc.apic_accesses;
  r.real_instructions = core.counters().retired;
  r.vmm_cycles = r.router->vmm().cycles().total();
  std::istringstream in(pc.serial);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("timing:", 0) != 0) r.lines.push_back(line);
  }
  return r;
}

KernelRun run_kernel(const char* profile, const char* strategy, const std::string& cmdline, bool conceal = false,
                     unsigned prot32_cpl = 1) {
  vmm::VmmOptions options;
  options.conceal_leaks = conceal;
  options.deprivileged_cpl_prot32 = prot32_cpl;
  return run_kernel_with(profile, strategy, cmdline, options);
}

std::string last(const KernelRun& r) { return r.lines.empty() ? "(no output)" : r.lines.back(); }

TEST(KernelUnderTrapEmulate, OnX86PgTheKernelRunsAsItDoesNatively) {
  const KernelRun native = run_kernel("x86-pg", "native", "bench=in iters=10");
  ASSERT_EQ(last(native), "pgsim-kernel: PASS");
  const KernelRun te = run_kernel("x86-pg", "trap_emulate", "bench=in iters=10");
  EXPECT_EQ(te.lines, native.lines);
  EXPECT_EQ(te.exit_value, 0);
  const vmm::LeakLog& leaks = te.router->vmm().leaks();
  EXPECT_EQ(leaks.total(), 0u) << leaks.summary();
  EXPECT_EQ(te.router->vmm().resource_control_violations(), 0u);
}

// bench=in: each iteration's IN traps once (#GP) and is emulated through the device; everything
// else the kernel does (its boot's privileged instructions, its serial output) is the same for
// 10 and 20 iterations (same output length), so the counts differ by exactly 10.
TEST(KernelUnderTrapEmulate, BenchInTrapsOncePerIteration) {
  const KernelRun ten = run_kernel("x86-pg", "trap_emulate", "bench=in iters=10");
  const KernelRun twenty = run_kernel("x86-pg", "trap_emulate", "bench=in iters=20");
  ASSERT_EQ(last(ten), "pgsim-kernel: PASS");
  ASSERT_EQ(last(twenty), "pgsim-kernel: PASS");
  const auto& a = *ten.router;
  const auto& b = *twenty.router;
  EXPECT_EQ(b.traps(vmm::TrapCause::GeneralProtection) - a.traps(vmm::TrapCause::GeneralProtection), 10u);
  EXPECT_EQ(b.total_traps() - a.total_traps(), 10u);
  const auto& va = static_cast<const vmm::TrapEmulateVmm&>(a.vmm());
  const auto& vb = static_cast<const vmm::TrapEmulateVmm&>(b.vmm());
  EXPECT_EQ(vb.emulated_io() - va.emulated_io(), 10u);
  EXPECT_EQ(vb.emulated_by_mnemonic().of("in") - va.emulated_by_mnemonic().of("in"), 10u);
  std::cout << "bench=in under trap_emulate: " << a.traps(vmm::TrapCause::GeneralProtection) - 10
            << " #GP traps besides the 10 iterations' (boot and serial output), " << a.total_traps() << " traps in all, "
            << va.emulated_io() << " port I/O emulated\n";
}

// The kernel programs its local APIC's timer through MMIO (and acknowledges each tick, of which
// the stand-in PC has none). Under trap_emulate none of it reaches the APIC directly: every access
// traps, as an MMIO trap, and the virtual CPU carries it out, so the APIC windows see exactly the
// accesses of the native run, one trap each.
TEST(KernelUnderTrapEmulate, EveryApicAccessTrapsOnceAsMmio) {
  const KernelRun native = run_kernel("x86-pg", "native", "bench=in iters=10");
  const KernelRun te = run_kernel("x86-pg", "trap_emulate", "bench=in iters=10");
  ASSERT_EQ(last(te), "pgsim-kernel: PASS");
  EXPECT_EQ(te.lines, native.lines);
  // apic_timer_start: the spurious-vector, divide, LVT-timer and initial-count registers.
  EXPECT_EQ(native.apic_accesses, 4u);
  EXPECT_EQ(te.apic_accesses, native.apic_accesses);
  EXPECT_EQ(te.router->traps(vmm::TrapCause::Mmio), native.apic_accesses);
  const auto& vmm = static_cast<const vmm::TrapEmulateVmm&>(te.router->vmm());
  EXPECT_EQ(vmm.emulated_mmio(), native.apic_accesses);
  // Each emulated instruction is counted under its mnemonic, and under no other.
  uint64_t by_mnemonic = 0;
  for (const auto& [name, count] : vmm.emulated_by_mnemonic().by_mnemonic()) by_mnemonic += count;
  EXPECT_EQ(by_mnemonic, vmm.emulated());
  // The kernel's port I/O is IN and OUT (no string forms).
  EXPECT_EQ(vmm.emulated_by_mnemonic().of("in") + vmm.emulated_by_mnemonic().of("out"), vmm.emulated_io());
}

// Classic x86 with leaks exposed: the kernel's own ring-0 check fails, as an unmodified OS would;
// concealed, it passes and the leaks are counted by instruction.
TEST(KernelUnderTrapEmulate, OnClassicX86TheKernelsOwnCheckFailsUnlessLeaksAreConcealed) {
  const KernelRun exposed = run_kernel("x86", "trap_emulate", "bench=selftest", false);
  bool ring0_failed = false;
  for (const std::string& line : exposed.lines) ring0_failed |= line.find("CHECK FAILED: ring0") != std::string::npos;
  EXPECT_TRUE(ring0_failed) << last(exposed);
  EXPECT_NE(last(exposed), "pgsim-kernel: PASS");
  const vmm::LeakLog& exposed_leaks = exposed.router->vmm().leaks();
  EXPECT_GT(exposed_leaks.of(isa::SensitiveInsn::MovFromSreg).count, 0u) << exposed_leaks.summary();

  const KernelRun concealed = run_kernel("x86", "trap_emulate", "bench=in iters=10", true);
  EXPECT_EQ(last(concealed), "pgsim-kernel: PASS");
  EXPECT_GT(concealed.router->vmm().leaks().total(), 0u);
  std::cout << "classic x86, exposed: " << exposed_leaks.summary() << "\n"
            << "classic x86, concealed: " << concealed.router->vmm().leaks().summary() << "\n";
}

}  // namespace
}  // namespace pgsim

namespace pgsim {
namespace {

const vmm::ShadowCounters& shadow_of(const KernelRun& r) {
  return static_cast<const vmm::TrapEmulateVmm&>(r.router->vmm()).shadow();
}

// Shadow paging on the kernel's page-table workloads. Runs of 10, 20 and 30 iterations print
// the same output length, so the rest of the run is the same: every counter must grow by the
// same amount per 10 iterations (each iteration costs the same), and by what the benchmark does.
TEST(KernelUnderTrapEmulate, ShadowPagingCountsFollowTheIterations) {
  struct Expected {
    const char* bench;
    // per iteration
    uint64_t traced_writes, entry_invalidations, hidden_faults, true_faults, invalidations, cr3_switches,
        cache_misses, write_protections, unprotected;
  };
  // ptemod: one PTE write (traced), which drops the one leaf built from that PTE (the scratch
  // page's, filled by the previous iteration's read); the INVLPG then finds nothing to drop; the
  // read refills the leaf (one hidden fault).
  // pgfault: one true fault, which the kernel resolves with two PTE writes (traced): unmapping the
  // other page drops its leaf; mapping the faulting page writes an entry nothing was built from.
  // Its INVLPG finds nothing left; the retried access fills one leaf.
  // forkwait, per fork (traced as they happen, by the writing instruction):
  //   15 traced writes: the exit clears the child's three program-image PTEs (its PT is shadowed:
  //   the child ran through it) and frees four table frames, writing the free-list link into each
  //   (4); the next fork takes three of those back as tables (the allocator reuses the last freed
  //   frame first): REP STOSQ zeroes each (3: the VMM emulates the whole instruction at once) and
  //   five entries go into them (PML4[0], PDPT[0], PDPT[3], PD[0], PD[511]).
  //   3 unprotected: the fourth write in a row with no walk through a frame ends its protection
  //   (a write flood), so that the next write into it (PDPT[1], the new PT's zeroing) faults once
  //   more on the kernel shadow's read-only leaf of the frame: 2 of the 15 hidden faults; the child's
  //   first walks find 2 of the frames as tables again (2 write protections).
  //   The other 13 hidden faults and the 13 entry invalidations are the child's: both CR3 switches
  //   (to the child, back to the parent) hit the shadow-root cache; the child's CR3 is its
  //   predecessor's and so is its kept shadow, whose leaves were dropped when the predecessor's
  //   tables were freed. The child rebuilds them (12 kernel pages and its code page) and its exit
  //   drops them again (the link written into its PDPT's entry 0 drops the 12 kernel leaves, into
  //   its PT's entry 0 the code page's).
  for (const Expected& e : {Expected{"ptemod", 1, 1, 1, 0, 1, 0, 0, 0, 0},
                            Expected{"pgfault", 2, 1, 1, 1, 1, 0, 0, 0, 0},
                            Expected{"forkwait", 15, 13, 15, 0, 0, 2, 0, 2, 3}}) {
    SCOPED_TRACE(e.bench);
    vmm::ShadowCounters c[3];
    for (int k = 0; k < 3; ++k) {
      const KernelRun r = run_kernel("x86-pg", "trap_emulate",
                                     std::string("bench=") + e.bench + " iters=" + std::to_string(10 * (k + 1)));
      ASSERT_EQ(last(r), "pgsim-kernel: PASS");
      c[k] = shadow_of(r);
      // Every shadow is dropped once per run: when the kernel turns paging on, before it runs
      // directly. Nothing else (page-table writes, new page tables) drops them all.
      EXPECT_EQ(c[k].flushes, 1u);
      // The kernel writes its GDT before it loads it, and never after; its virtual CPU writes one
      // entry: LTR sets the busy bit of the kernel's TSS descriptor.
      EXPECT_EQ(c[k].gdt_traced_writes, 0u);
      EXPECT_EQ(c[k].gdt_entry_updates, 1u);
    }
    auto per10 = [&](uint64_t vmm::ShadowCounters::*field) {
      EXPECT_EQ(c[2].*field - c[1].*field, c[1].*field - c[0].*field);
      return c[1].*field - c[0].*field;
    };
    EXPECT_EQ(per10(&vmm::ShadowCounters::traced_writes), 10 * e.traced_writes);
    EXPECT_EQ(per10(&vmm::ShadowCounters::entry_invalidations), 10 * e.entry_invalidations);
    EXPECT_EQ(per10(&vmm::ShadowCounters::hidden_faults), 10 * e.hidden_faults);
    EXPECT_EQ(per10(&vmm::ShadowCounters::fills), 10 * e.hidden_faults);  // a leaf per hidden fault
    EXPECT_EQ(per10(&vmm::ShadowCounters::true_faults), 10 * e.true_faults);
    EXPECT_EQ(per10(&vmm::ShadowCounters::invalidations), 10 * e.invalidations);
    EXPECT_EQ(per10(&vmm::ShadowCounters::cr3_switches), 10 * e.cr3_switches);
    EXPECT_EQ(per10(&vmm::ShadowCounters::cache_misses), 10 * e.cache_misses);
    EXPECT_EQ(per10(&vmm::ShadowCounters::cache_hits), 10 * (e.cr3_switches - e.cache_misses));
    EXPECT_EQ(per10(&vmm::ShadowCounters::write_protections), 10 * e.write_protections);
    EXPECT_EQ(per10(&vmm::ShadowCounters::unprotected), 10 * e.unprotected);
    // The GDT is located again at each address-space switch (its pages may be mapped elsewhere).
    EXPECT_EQ(per10(&vmm::ShadowCounters::gdt_resyncs), 10 * e.cr3_switches);
  }
}

}  // namespace
}  // namespace pgsim

namespace pgsim {
namespace {

// Every workload of the kernel that runs on the stand-in PC (those that need timer interrupts do
// not: it has no timer) gives, on x86-pg, the guest output of its native run under trap_emulate
// and under interpret, without leaks.
TEST(KernelUnderTrapEmulate, EveryWorkloadGivesTheNativeOutputOnX86Pg) {
  int compared = 0;
  for (const char* bench : {"syscall", "in", "cr8wr", "callret", "pgfault", "divzero", "ptemod", "forkwait",
                            "compute", "memwalk", "ctxswitch", "smc", "selftest"}) {
    const std::string cmdline = std::string("bench=") + bench + " iters=20";
    const KernelRun native = run_kernel("x86-pg", "native", cmdline);
    if (last(native) != "pgsim-kernel: PASS") {
      std::cout << bench << ": not run here (natively on the stand-in PC: " << last(native) << ")\n";
      continue;
    }
    SCOPED_TRACE(bench);
    const KernelRun te = run_kernel("x86-pg", "trap_emulate", cmdline);
    EXPECT_EQ(te.lines, native.lines);
    const vmm::LeakLog& leaks = te.router->vmm().leaks();
    EXPECT_EQ(leaks.total(), 0u) << leaks.summary();
    EXPECT_EQ(te.router->vmm().resource_control_violations(), 0u);
    const KernelRun interpreted = run_kernel("x86-pg", "interpret", cmdline);
    EXPECT_EQ(interpreted.lines, native.lines);
    EXPECT_EQ(interpreted.router->total_traps(), 0u);
    ++compared;
    EXPECT_GT(te.direct_fraction, 0.5);
    EXPECT_EQ(interpreted.direct_fraction, 0.0);
    std::cout << bench << ": trap_emulate " << te.router->total_traps() << " traps, direct fraction "
              << te.direct_fraction << "\n";
  }
  EXPECT_GE(compared, 10);
}

}  // namespace
}  // namespace pgsim

#include "platforms/cli/pg_table.h"

namespace pgsim {
namespace {

// The Popek-Goldberg table from real runs of bench=in. The stand-in PC has no clock: the cycles
// here are the instructions the real CPU retired plus the VMM's cycle buckets, enough to check
// the table's slowdowns.
TEST(PopekGoldbergTable, ShowsEquivalenceResourceControlAndEfficiencyPerRun) {
  struct Cell {
    const char* profile;
    const char* strategy;
    bool conceal;
  };
  std::vector<cli::PgRun> runs;
  for (const Cell& c : {Cell{"x86", "native", false}, Cell{"x86", "interpret", false}, Cell{"x86", "trap_emulate", false},
                        Cell{"x86", "trap_emulate", true}, Cell{"x86-pg", "native", false},
                        Cell{"x86-pg", "interpret", false}, Cell{"x86-pg", "trap_emulate", false}}) {
    const KernelRun k = run_kernel(c.profile, c.strategy, "bench=in iters=10", c.conceal);
    cli::PgRun r;
    r.profile = c.profile;
    r.strategy = c.strategy;
    r.leak_policy = c.conceal ? "conceal" : "expose";
    r.workload = "bench=in iters=10";
    r.serial = k.serial;
    r.leaks = k.router->vmm().leaks().summary();
    r.leak_total = k.router->vmm().leaks().total();
    r.violations = k.router->vmm().resource_control_violations();
    r.traps = k.router->total_traps();
    r.cycles = k.real_instructions + k.vmm_cycles;
    r.direct_fraction = k.direct_fraction;
    runs.push_back(r);
  }
  const std::string table = cli::popek_goldberg_table(runs);
  std::cout << table;
  std::istringstream in(table);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2 + runs.size());
  EXPECT_NE(lines[2].find("completed"), std::string::npos);          // x86 native
  EXPECT_NE(lines[2].find("1.00x"), std::string::npos);
  EXPECT_NE(lines[4].find("FAILED ring0"), std::string::npos);       // x86 trap_emulate, exposed
  EXPECT_NE(lines[4].find("mov_from_sreg"), std::string::npos);
  EXPECT_NE(lines[5].find("completed"), std::string::npos);          // x86 trap_emulate, concealed
  EXPECT_NE(lines[8].find("completed"), std::string::npos);          // x86-pg trap_emulate
  // Equivalence as the guest's output shows it, against the native run of the same profile.
  EXPECT_EQ(cli::output_against_native(runs[0], runs), "-");
  EXPECT_EQ(cli::output_against_native(runs[1], runs), "same");     // x86 interpret
  EXPECT_EQ(cli::output_against_native(runs[2], runs), "differs");  // x86 trap_emulate, exposed
  EXPECT_EQ(cli::output_against_native(runs[3], runs), "same");     // x86 trap_emulate, concealed
  EXPECT_EQ(cli::output_against_native(runs[5], runs), "same");     // x86-pg interpret
  EXPECT_EQ(cli::output_against_native(runs[6], runs), "same");     // x86-pg trap_emulate
  EXPECT_EQ(cli::guest_outcome("x\r\npgsim-kernel: FAIL out of memory\r\n"), "FAILED: out of memory");
  EXPECT_EQ(cli::guest_outcome("pgsim-kernel: PASS\n"), "completed");
  EXPECT_EQ(cli::guest_outcome("booting\n"), "did not finish");
}

}  // namespace
}  // namespace pgsim

namespace pgsim {
namespace {

// The kernel's 32-bit Multiboot entry runs directly, at the deprivileged CPL 1 or 3: on x86-pg
// two benchmarks give the native output, with no leak, no resource-control violation and not one
// instruction interpreted. (The selftest needs the timer the stand-in PC lacks: guest_test.cpp
// runs it on the PC board.)
TEST(KernelUnderTrapEmulate, The32BitBootRunsDirectlyAtCpl1Or3AndTheKernelRunsAsNatively) {
  for (const char* cmdline : {"bench=in iters=10", "bench=syscall iters=20"}) {
    const KernelRun native = run_kernel("x86-pg", "native", cmdline);
    ASSERT_EQ(last(native), "pgsim-kernel: PASS");
    for (unsigned cpl : {1u, 3u}) {
      SCOPED_TRACE(std::string(cmdline) + " CPL " + std::to_string(cpl));
      const KernelRun te = run_kernel("x86-pg", "trap_emulate", cmdline, false, cpl);
      EXPECT_EQ(te.lines, native.lines);
      EXPECT_EQ(te.exit_value, 0);
      EXPECT_EQ(te.router->vmm().leaks().total(), 0u) << te.router->vmm().leaks().summary();
      EXPECT_EQ(te.router->vmm().resource_control_violations(), 0u);
      EXPECT_EQ(static_cast<const vmm::TrapEmulateVmm&>(te.router->vmm()).interpreted(), 0u);
    }
  }
}

// The traps of the 32-bit boot path (workloads/kernel/boot.S, up to the first 64-bit
// instruction), at the deprivileged CPL 1 and 3, on classic x86 and on x86-pg. #GP, each
// emulated on the virtual CPU:
//   CLI (CPL above IOPL); MOV to CR3; MOV from and to CR4 (PAE); RDMSR and WRMSR (EFER.LME);
//   MOV from and to CR0 (PG: IA-32e mode, still in 32-bit code: the real CPL becomes 3); LGDT;
//   on x86-pg the far JMP into 64-bit code (on classic x86 it runs directly: in IA-32e mode at
//   the real CPL 3 the kernel-to-kernel jump shows nothing).
// #PF, both hidden: the first fetch (the paging-off shadow maps the 2 MiB of guest RAM that hold
// the kernel image, its BSS and its boot stack at once), and the first fetch with the guest's
// paging on (its 4-level tables, whose shadow starts empty).
// The BSS clearing, the CPUID checks and the page-table filling run directly without a trap.
TEST(KernelUnderTrapEmulate, The32BitBootPathTrapsAtEachPrivilegedInstruction) {
  for (const char* profile : {"x86", "x86-pg"}) {
    for (unsigned cpl : {1u, 3u}) {
      SCOPED_TRACE(std::string(profile) + " CPL " + std::to_string(cpl));
      vmm::VmmOptions options;
      options.deprivileged_cpl_prot32 = cpl;
      BootedKernel k(profile, "trap_emulate", "bench=selftest", options);
      isa::Core& core = k.core;
      const vmm::TrapRouter& router = *k.router;
      EXPECT_EQ(core.state().cpl(), cpl);
      EXPECT_EQ(core.state().mode(), isa::Mode::Compat32);
      uint64_t direct = 0;
      while (core.state().mode() != isa::Mode::Long64 && !core.is_shutdown() && direct < 1'000'000)
        direct += core.run(1);
      ASSERT_EQ(core.state().mode(), isa::Mode::Long64) << core.shutdown_reason();
      const bool pg = std::string(profile) == "x86-pg";
      const auto& vmm = static_cast<const vmm::TrapEmulateVmm&>(router.vmm());
      EXPECT_EQ(router.traps(vmm::TrapCause::GeneralProtection), pg ? 10u : 9u);
      EXPECT_EQ(router.traps(vmm::TrapCause::PageFault), 2u);
      EXPECT_EQ(router.total_traps(), pg ? 12u : 11u);
      EXPECT_EQ(vmm.emulated(), pg ? 10u : 9u);
      EXPECT_EQ(vmm.shadow().hidden_faults, 2u);
      EXPECT_EQ(vmm.interpreted(), 0u);
      EXPECT_EQ(vmm.leaks().total(), 0u);
      EXPECT_EQ(core.state().cpl(), 3u);
      std::cout << profile << " CPL " << cpl << ": the 32-bit boot ran " << direct << " instructions directly\n";
    }
  }
}

}  // namespace
}  // namespace pgsim

#include "models/vmm/binary_translation.h"

namespace pgsim {
namespace {

const vmm::BinaryTranslationVmm& bt_of(const KernelRun& r) {
  return static_cast<const vmm::BinaryTranslationVmm&>(r.router->vmm());
}

// Under binary_translation every workload that runs on the stand-in PC prints its native output
// on classic x86 and on x86-pg: the kernel's own ring-0 and IF checks pass, nothing leaks (its
// sensitive instructions never run directly: they are callouts in the TC), nothing of the real
// privileged state changes.
TEST(KernelUnderBinaryTranslation, EveryWorkloadGivesTheNativeOutput) {
  for (const char* profile : {"x86", "x86-pg"}) {
    for (const char* bench : {"selftest", "syscall", "in", "cr8wr", "callret", "pgfault", "divzero", "ptemod",
                              "forkwait", "compute", "memwalk", "ctxswitch", "smc"}) {
      const std::string cmdline = std::string("bench=") + bench + " iters=20";
      const KernelRun native = run_kernel(profile, "native", cmdline);
      if (last(native) != "pgsim-kernel: PASS") {
        std::cout << profile << " " << bench << ": not run here (natively on the stand-in PC: " << last(native)
                  << ")\n";
        continue;
      }
      SCOPED_TRACE(std::string(profile) + " " + bench);
      const KernelRun bt = run_kernel(profile, "binary_translation", cmdline);
      EXPECT_EQ(bt.lines, native.lines);
      EXPECT_EQ(bt.exit_value, 0);
      const vmm::LeakLog& leaks = bt.router->vmm().leaks();
      EXPECT_EQ(leaks.total(), 0u) << leaks.summary();
      EXPECT_EQ(bt.router->vmm().resource_control_violations(), 0u) << bt_of(bt).first_violation();
      EXPECT_EQ(bt_of(bt).counters().kernel_leaks, 0u);
      EXPECT_GT(bt.direct_fraction, 0.9);  // user code, IDENT copies and chained branches
      std::cout << profile << " " << bench << ": binary_translation " << bt.router->total_traps() << " traps, "
                << bt.router->vmm().callouts().total() << " callouts, " << bt_of(bt).translator().counters().units
                << " units, direct fraction " << bt.direct_fraction << "\n";
    }
  }
}

}  // namespace
}  // namespace pgsim

namespace pgsim {
namespace {

// The 32-bit Multiboot entry and boot (workloads/kernel/boot.S up to the far jump into 64-bit
// code) are not translated: they run directly, deprivileged at vmm.deprivileged_cpl_prot32, as
// under trap_emulate, with the same traps (each privileged instruction #GP and emulated, two
// hidden page faults; see KernelUnderTrapEmulate.The32BitBootPathTrapsAtEachPrivilegedInstruction)
// and the leak detector watching, but for the far JMP into 64-bit code: on classic x86 it would
// run directly (it does not trap), on x86-pg trap; under binary translation it is a callout on
// both, after which the first 64-bit instruction runs from the TC.
TEST(KernelUnderBinaryTranslation, The32BitBootRunsDirectlyAsUnderTrapEmulateThenTheKernelIsTranslated) {
  for (const char* profile : {"x86", "x86-pg"}) {
    SCOPED_TRACE(profile);
    BootedKernel k(profile, "binary_translation", "bench=in iters=10", vmm::VmmOptions{});
    isa::Core& core = k.core;
    const auto& bt = static_cast<const vmm::BinaryTranslationVmm&>(k.router->vmm());
    EXPECT_EQ(core.state().mode(), isa::Mode::Compat32);
    EXPECT_EQ(core.state().cpl(), 1u);
    while (core.state().mode() != isa::Mode::Long64 && !core.is_shutdown()) core.run(1);
    ASSERT_EQ(core.state().mode(), isa::Mode::Long64) << core.shutdown_reason();
    EXPECT_EQ(k.router->traps(vmm::TrapCause::GeneralProtection), 9u);  // x86-pg's 10th: the far JMP
    EXPECT_EQ(bt.callouts().of("jmp_far"), 1u);
    EXPECT_EQ(k.router->traps(vmm::TrapCause::PageFault), 2u);
    EXPECT_EQ(bt.counters().kernel_leaks, 0u);
    EXPECT_EQ(bt.leaks().total(), 0u);
    EXPECT_EQ(bt.translator().counters().units, 1u);
    EXPECT_TRUE(bt.translator().in_tc(core.state().rip));
  }
}

// A translation cache too small for the kernel (4 KiB: less than its 450 units take) is
// flushed whole whenever it is full, and the kernel runs on as it does natively: each flush
// drops every unit and chain, and the code that runs next is translated again.
TEST(KernelUnderBinaryTranslation, AFullTranslationCacheIsFlushedAndTheKernelRunsOn) {
  const KernelRun native = run_kernel("x86-pg", "native", "bench=syscall iters=20");
  vmm::VmmOptions small;
  small.bt_tc_bytes = 4096;
  const KernelRun bt = run_kernel_with("x86-pg", "binary_translation", "bench=syscall iters=20", small);
  const KernelRun roomy = run_kernel("x86-pg", "binary_translation", "bench=syscall iters=20");
  EXPECT_EQ(bt.lines, native.lines);
  EXPECT_EQ(bt.router->vmm().leaks().total(), 0u);
  const auto& t = bt_of(bt).translator().counters();
  EXPECT_GT(t.flushes, 0u);
  EXPECT_EQ(bt_of(roomy).translator().counters().flushes, 0u);
  EXPECT_GT(t.units, bt_of(roomy).translator().counters().units);  // what was flushed, translated again
  EXPECT_LE(bt_of(bt).translator().bytes_used(), small.bt_tc_bytes);
  std::cout << "4 KiB TC: " << t.flushes << " flushes, " << t.units << " units ("
            << bt_of(roomy).translator().counters().units << " with 1 MiB)\n";
}

// What a run of binary_translation counted, for deltas between iteration counts.
struct BtFigures {
  uint64_t units, translated, lookups, lookup_misses, tc_faults, adaptations, traps;
  vmm::ReasonLog callouts;
};

BtFigures bt_figures(const std::string& cmdline) {
  const KernelRun r = run_kernel("x86-pg", "binary_translation", cmdline);
  EXPECT_EQ(last(r), "pgsim-kernel: PASS") << cmdline;
  const auto& bt = bt_of(r);
  return {bt.translator().counters().units, bt.translator().counters().guest_instructions, bt.counters().lookups,
          bt.counters().lookup_misses, bt.counters().tc_faults, bt.counters().adaptations, r.router->total_traps(),
          r.router->vmm().callouts()};
}

// Warm loops translate nothing more per iteration: runs of 10, 20 and 30 iterations translate the
// same units, and every other count grows by what one iteration does, 10 times:
//   in       one callout (IN), two lookups (the RETs of the port-read helper and of the pvops call)
//   syscall  one trap (SYSCALL: #UD, EFER.SCE is off in the real CPU), one callout (SYSRET), two
//            lookups
//   callret  no callout, no trap, one lookup (the RET; the CALL is a chained PUSH imm32 and JMP)
//   cr8wr    one callout (MOV to CR8: no inline sequence, every CR8 write is a callout)
//   ptemod   the PTE store faults on the traced page table until vmm.bt.adapt_after (4) faults,
//            and is then a callout (mov) every iteration, with the INVLPG's (invlpg); the hidden
//            fault of the refilled page is the one trap per iteration
TEST(KernelUnderBinaryTranslation, WarmLoopsTranslateNothingMoreAndPayWhatEachIterationDoes) {
  struct Expected {
    const char* bench;
    uint64_t traps, lookups;
    std::vector<std::pair<const char*, uint64_t>> callouts;  // per iteration, by operation
  };
  for (const Expected& e : {Expected{"in", 0, 2, {{"in", 1}}}, Expected{"syscall", 1, 2, {{"sysret", 1}}},
                            Expected{"callret", 0, 1, {}}, Expected{"cr8wr", 0, 2, {{"mov_cr", 1}}},
                            Expected{"ptemod", 1, 4, {{"mov", 1}, {"invlpg", 1}}}}) {
    SCOPED_TRACE(e.bench);
    BtFigures f[3];
    for (int k = 0; k < 3; ++k) f[k] = bt_figures(std::string("bench=") + e.bench + " iters=" + std::to_string(10 * (k + 1)));
    auto per10 = [&](auto field) {
      EXPECT_EQ(field(f[2]) - field(f[1]), field(f[1]) - field(f[0]));
      return field(f[1]) - field(f[0]);
    };
    EXPECT_EQ(per10([](const BtFigures& x) { return x.units; }), 0u);
    EXPECT_EQ(per10([](const BtFigures& x) { return x.translated; }), 0u);
    EXPECT_EQ(per10([](const BtFigures& x) { return x.lookup_misses; }), 0u);
    EXPECT_EQ(per10([](const BtFigures& x) { return x.traps; }), 10 * e.traps);
    EXPECT_EQ(per10([](const BtFigures& x) { return x.lookups; }), 10 * e.lookups);
    uint64_t callouts = 0;
    for (const auto& [op, n] : e.callouts) {
      EXPECT_EQ(per10([op](const BtFigures& x) { return x.callouts.of(op); }), 10 * n) << op;
      callouts += n;
    }
    EXPECT_EQ(per10([](const BtFigures& x) { return x.callouts.total(); }), 10 * callouts);
    if (std::string(e.bench) == "ptemod") {
      for (const BtFigures& x : f) {
        EXPECT_EQ(x.adaptations, 1u);
        EXPECT_EQ(x.tc_faults, 4u);  // vmm.bt.adapt_after: then the store is a callout
      }
    }
  }
}

}  // namespace
}  // namespace pgsim

namespace pgsim {
namespace {

// bench=clisti under binary translation, on classic x86 and x86-pg: the STI and CLI of
// pvops.irq_enable/irq_disable are inline sequences on the vCPU page, translated once, so an
// extra iteration pays no callout and no trap, only the lookups of its two indirect calls and
// their two returns; and cr8wr's final CR8 read is inline while each CR8 write stays one callout
// (the write goes to the local APIC's TPR, which the VMM models). Runs of 10, 20 and 30 iterations.
TEST(KernelUnderBinaryTranslation, InterruptFlagChangesAreInlineAndPayNoCalloutPerIteration) {
  struct Figures {
    uint64_t units, callouts, traps, lookups, sti, cli, mov_cr_inline, mov_cr_callouts;
  };
  for (const char* profile : {"x86", "x86-pg"}) {
    SCOPED_TRACE(profile);
    auto figures = [profile](const char* bench, int iters) {
      const KernelRun r = run_kernel(profile, "binary_translation", std::string("bench=") + bench + " iters=" +
                                                                         std::to_string(iters));
      EXPECT_EQ(last(r), "pgsim-kernel: PASS") << bench;
      EXPECT_EQ(r.router->vmm().leaks().total(), 0u);
      EXPECT_EQ(r.router->vmm().resource_control_violations(), 0u);
      const auto& bt = bt_of(r);
      const vmm::EmulatedLog& inlined = bt.translator().counters().inlined_by_mnemonic;
      const auto of = [&](const char* m) { return inlined.of(m); };
      return Figures{bt.translator().counters().units, r.router->vmm().callouts().total(), r.router->total_traps(),
                     bt.counters().lookups, of("sti"), of("cli"), of("mov_cr"), r.router->vmm().callouts().of("mov_cr")};
    };
    Figures clisti[3];
    for (int k = 0; k < 3; ++k) clisti[k] = figures("clisti", 10 * (k + 1));
    for (int k = 1; k < 3; ++k) {
      EXPECT_EQ(clisti[k].units, clisti[0].units);
      EXPECT_EQ(clisti[k].callouts, clisti[0].callouts);
      EXPECT_EQ(clisti[k].traps, clisti[0].traps);
      EXPECT_EQ(clisti[k].lookups - clisti[k - 1].lookups, 10u * 4);
      EXPECT_EQ(clisti[k].sti, clisti[0].sti);  // translated once: counted once
    }
    EXPECT_GE(clisti[0].sti, 1u);
    EXPECT_GE(clisti[0].cli, 1u);
    const Figures cr8wr[2] = {figures("cr8wr", 10), figures("cr8wr", 20)};
    EXPECT_EQ(cr8wr[1].mov_cr_callouts - cr8wr[0].mov_cr_callouts, 10u);  // one callout per CR8 write
    EXPECT_EQ(cr8wr[1].callouts - cr8wr[0].callouts, 10u);
    EXPECT_EQ(cr8wr[1].mov_cr_inline, cr8wr[0].mov_cr_inline);
    EXPECT_GE(cr8wr[0].mov_cr_inline, 1u);  // the read of CR8 after the loop
    std::cout << profile << " clisti iters=10: " << clisti[0].callouts << " callouts, " << clisti[0].sti << " sti and "
              << clisti[0].cli << " cli translated inline\n";
  }
}

// bench=ksmc: the guest kernel rewrites a function in a page of its own once per iteration and
// calls it. Under binary translation the page holds translated code, so each rewrite after the
// first call drops the function's unit (one SMC invalidation per iteration) and the next call
// translates it anew at its (unchained) call (one unit per iteration); the output is native's.
// The rewriting stores fault on the protected page in the first iterations, until the first one
// is retranslated into a callout (vmm.bt.adapt_after): from then on no fault, and every later
// iteration adds exactly one invalidation and one unit. Runs of 20, 30 and 40 iterations, classic
// x86 and x86-pg.
TEST(KernelUnderBinaryTranslation, KernelSelfModifyingCodeInvalidatesOneUnitPerRewrite) {
  for (const char* profile : {"x86", "x86-pg"}) {
    SCOPED_TRACE(profile);
    uint64_t invalidations[3], units[3], tc_faults[3];
    for (int k = 0; k < 3; ++k) {
      const std::string cmdline = "bench=ksmc iters=" + std::to_string(10 * (k + 2));
      const KernelRun native = run_kernel(profile, "native", cmdline);
      const KernelRun r = run_kernel(profile, "binary_translation", cmdline);
      EXPECT_EQ(r.lines, native.lines);
      EXPECT_EQ(last(r), "pgsim-kernel: PASS");
      EXPECT_EQ(r.router->vmm().leaks().total(), 0u);
      const auto& bt = bt_of(r);
      invalidations[k] = bt.counters().smc_invalidations;
      units[k] = bt.translator().counters().units;
      tc_faults[k] = bt.counters().tc_faults;
      EXPECT_EQ(bt.counters().adaptations, 1u);
    }
    EXPECT_EQ(invalidations[0], 20u - 1);  // the first rewrite comes before the first call
    for (int k = 1; k < 3; ++k) {
      EXPECT_EQ(invalidations[k] - invalidations[k - 1], 10u);
      EXPECT_EQ(units[k] - units[k - 1], 10u);
      EXPECT_EQ(tc_faults[k], tc_faults[0]);
    }
    std::cout << profile << " ksmc iters=20: " << invalidations[0] << " invalidations, " << units[0] << " units, "
              << tc_faults[0] << " faults of translated stores\n";
  }
}

}  // namespace
}  // namespace pgsim

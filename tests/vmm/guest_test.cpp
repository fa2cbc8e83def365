// The guest kernel (workloads/) on the PC board under each strategy: native, interpret,
// trap_emulate and paravirt. Each run is a vmm_guest_run process; the guest's output must be the same under
// all of them (all but the `timing:` lines, which report RDTSC) unless leaks are exposed.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "tests/vmm/guest_process.h"

namespace {

using pgsim::test::figure;
using pgsim::test::GuestRun;
using pgsim::test::run;
using pgsim::test::run_config;

TEST(GuestUnderVmm, InterpretGivesTheGuestOutputOfNativeWithNoTraps) {
  for (const std::string cmdline : {"bench=selftest", "bench=in iters=100"}) {
    SCOPED_TRACE(cmdline);
    const GuestRun native = run("native", cmdline), interpret = run("interpret", cmdline);
    ASSERT_EQ(native.exit_code, 0) << native.figures;
    ASSERT_EQ(interpret.exit_code, 0) << interpret.figures;
    ASSERT_FALSE(native.guest_lines.empty());
    EXPECT_EQ(native.guest_lines.back(), "pgsim-kernel: PASS");
    EXPECT_EQ(interpret.guest_lines, native.guest_lines);
    EXPECT_EQ(figure(native.figures, "traps"), 0u);
    EXPECT_EQ(figure(interpret.figures, "traps"), 0u);
    EXPECT_EQ(figure(native.figures, "vmm_cycles"), 0u);
    // Every interpreted instruction paid at least its dispatch (vmm.cost.interpret_cycles: 30).
    EXPECT_GE(figure(interpret.figures, "vmm_cycles"), 30 * figure(interpret.figures, "insts"));
  }
}

// On x86-pg the deprivileged kernel, with its timer interrupts reflected through its virtual IDT,
// prints exactly what it prints natively, and nothing leaks.
TEST(GuestUnderVmm, TrapEmulateOnX86PgGivesTheGuestOutputOfNative) {
  for (const std::string cmdline : {"bench=selftest", "bench=forkwait iters=20", "bench=ptemod iters=50",
                                    "bench=syscall iters=50", "bench=ctxswitch iters=20"}) {
    SCOPED_TRACE(cmdline);
    const GuestRun native = run("native", cmdline, "cpu.profile=x86-pg");
    const GuestRun te = run("trap_emulate", cmdline, "cpu.profile=x86-pg");
    ASSERT_EQ(native.exit_code, 0) << native.figures;
    ASSERT_EQ(te.exit_code, 0) << te.figures;
    ASSERT_FALSE(native.guest_lines.empty());
    EXPECT_EQ(native.guest_lines.back(), "pgsim-kernel: PASS");
    EXPECT_EQ(te.guest_lines, native.guest_lines);
    EXPECT_EQ(figure(te.figures, "leaks"), 0u) << te.figures;
    EXPECT_GT(figure(te.figures, "traps"), 0u) << te.figures;
  }
}

// The kernel's 32-bit entry runs directly, its kernel at vmm.deprivileged_cpl_prot32 1 or 3, on
// the PC board with its timer: the selftest and a benchmark print what they print natively, with
// nothing leaked and no resource-control violation. Nothing of the boot is interpreted; the only
// instructions interpreted are the 4 the selftest's POPF-IOPL probe runs at IOPL 3 in 64-bit mode
// (pushfq, popq, pushq, popfq: at IOPL 3 the real CPL 3 would reach the real ports and IF).
TEST(GuestUnderVmm, TrapEmulateRunsThe32BitBootDirectlyAtCpl1Or3) {
  for (const std::string cmdline : {"bench=selftest", "bench=syscall iters=50"}) {
    const GuestRun native = run("native", cmdline, "cpu.profile=x86-pg");
    ASSERT_EQ(native.exit_code, 0) << native.figures;
    ASSERT_FALSE(native.guest_lines.empty());
    EXPECT_EQ(native.guest_lines.back(), "pgsim-kernel: PASS");
    for (const char* cpl : {"1", "3"}) {
      SCOPED_TRACE(cmdline + " CPL " + cpl);
      const GuestRun te =
          run("trap_emulate", cmdline, std::string("cpu.profile=x86-pg vmm.deprivileged_cpl_prot32=") + cpl);
      ASSERT_EQ(te.exit_code, 0) << te.figures;
      EXPECT_EQ(te.guest_lines, native.guest_lines);
      EXPECT_EQ(figure(te.figures, "leaks"), 0u) << te.figures;
      EXPECT_EQ(figure(te.figures, "violations"), 0u) << te.figures;
      EXPECT_EQ(figure(te.figures, "interpreted"), cmdline == "bench=selftest" ? 4u : 0u) << te.figures;
    }
  }
}

// bench=in: each iteration's IN traps once into the VMM; all else is the same for 100 and 200
// iterations (same boot) but the output's length (the `timing:` line's figures), and each byte the
// guest prints traps twice (the UART's line-status IN and the data OUT): so the trap counts differ
// by exactly 100 plus twice the difference in bytes printed.
TEST(GuestUnderVmm, TrapEmulateTrapsOncePerInIteration) {
  const GuestRun a = run("trap_emulate", "bench=in iters=100", "cpu.profile=x86-pg");
  const GuestRun b = run("trap_emulate", "bench=in iters=200", "cpu.profile=x86-pg");
  ASSERT_EQ(a.exit_code, 0) << a.figures;
  ASSERT_EQ(b.exit_code, 0) << b.figures;
  EXPECT_EQ(int64_t(figure(b.figures, "traps") - figure(a.figures, "traps")),
            100 + 2 * (int64_t(b.serial_bytes) - int64_t(a.serial_bytes)))
      << a.figures << "\n" << b.figures;
}

// Every port access of the kernel traps and is emulated, and the counts follow from its code
// (workloads/kernel): for bench=in iters=N with B bytes printed (CR LF line ends),
//   IN:  N (the benchmark's PIC reads) + B (one UART line-status poll per byte: the UART is always
//        ready) + 14 (fw_cfg: a 4-byte signature, 8 bytes of RAM size, 2 of CPU count);
//   OUT: B (the UART's data register) + 7 (UART set-up) + 10 (the two 8259s' set-up and masks)
//        + 3 (fw_cfg key selects) + 1 (the exit device).
// Natively the same accesses, and the local APIC's four timer set-up writes, pay the device latency.
TEST(GuestUnderVmm, TrapEmulateEmulatesEveryPortAccessOfTheKernel) {
  for (const uint64_t n : {100u, 250u}) {
    SCOPED_TRACE(n);
    const std::string cmdline = "bench=in iters=" + std::to_string(n);
    const GuestRun te = run("trap_emulate", cmdline, "cpu.profile=x86-pg");
    const GuestRun native = run("native", cmdline, "cpu.profile=x86-pg");
    ASSERT_EQ(te.exit_code, 0) << te.figures;
    ASSERT_EQ(native.exit_code, 0) << native.figures;
    const uint64_t bytes = figure(te.figures, "serial_bytes");
    EXPECT_EQ(figure(te.figures, "emulated.in"), n + bytes + 14) << te.figures;
    EXPECT_EQ(figure(te.figures, "emulated.out"), bytes + 21) << te.figures;
    EXPECT_EQ(figure(te.figures, "mmio_traps"), 4u) << te.figures;
    const uint64_t native_bytes = figure(native.figures, "serial_bytes");
    EXPECT_EQ(figure(native.figures, "io_cycles"), 1000 * ((n + native_bytes + 14) + (native_bytes + 21) + 4))
        << native.figures;
  }
}

// Under a VMM the guest's devices are the VMM's software models: bench=in's extra 100 port reads
// (one per iteration, of the PIC's mask register) are served by them (counted, and charged at
// vmm.cost.device_model_cycles), and cost no physical device latency (sim.cycles.io), which
// natively they do: timing.cpi.io (1000 cycles in the modern preset) each. The two runs' outputs
// also differ in length (the `timing:` line's figures), and each byte the guest prints is two
// more port accesses (a read of the UART's line status, always ready, and the write).
TEST(GuestUnderVmm, TheGuestsDevicesAreSoftwareUnderAVmm) {
  for (const std::string strategy : {"native", "interpret", "trap_emulate"}) {
    SCOPED_TRACE(strategy);
    const GuestRun a = run(strategy, "bench=in iters=100", "cpu.profile=x86-pg");
    const GuestRun b = run(strategy, "bench=in iters=200", "cpu.profile=x86-pg");
    ASSERT_EQ(a.exit_code, 0) << a.figures;
    ASSERT_EQ(b.exit_code, 0) << b.figures;
    const int64_t extra_io = figure(b.figures, "io_cycles") - figure(a.figures, "io_cycles");
    const int64_t extra_modelled = figure(b.figures, "modelled") - figure(a.figures, "modelled");
    const int64_t extra_accesses = 100 + 2 * (int64_t(b.serial_bytes) - int64_t(a.serial_bytes));
    EXPECT_EQ(extra_io, strategy == "native" ? extra_accesses * 1000 : 0) << a.figures << "\n" << b.figures;
    EXPECT_EQ(extra_modelled, strategy == "native" ? 0 : extra_accesses) << a.figures << "\n" << b.figures;
    // Nothing the guest does under a VMM reaches a physical device (trap_emulate maps no device
    // memory in its shadow page tables, so even the APIC's MMIO is served by its models).
    if (strategy != "native") {
      EXPECT_EQ(figure(b.figures, "io_cycles"), 0u) << b.figures;
    }
  }
}

// The kernel programs its local APIC timer with four MMIO writes and acknowledges every tick with
// one more (EOI). Under trap_emulate each of them traps as MMIO and is emulated through the APIC,
// and the timer keeps ticking: the guest counts its ticks itself (timer_ticks, in its `timing:`
// line), and the MMIO traps are exactly 4 + that count. (More ticks than natively: the VMM's
// cycles pass in simulated time too.) Each port read of bench=in is emulated as an `in`.
TEST(GuestUnderVmm, TrapEmulateTrapsOnEveryApicAccessAndCountsEmulationByMnemonic) {
  const GuestRun native = run("native", "bench=forkwait iters=250", "cpu.profile=x86-pg");
  const GuestRun te = run("trap_emulate", "bench=forkwait iters=250", "cpu.profile=x86-pg");
  ASSERT_EQ(te.exit_code, 0) << te.figures;
  EXPECT_EQ(te.guest_lines, native.guest_lines);
  EXPECT_EQ(figure(native.figures, "mmio_traps"), 0u) << native.figures;
  const uint64_t ticks = figure(te.timing, "timer_ticks");
  EXPECT_GE(ticks, 2u) << te.timing;
  EXPECT_NE(ticks, ~0ull) << te.timing;
  EXPECT_EQ(figure(te.figures, "mmio_traps"), 4 + ticks) << te.figures << te.timing;

  const GuestRun a = run("trap_emulate", "bench=in iters=100", "cpu.profile=x86-pg");
  const GuestRun b = run("trap_emulate", "bench=in iters=200", "cpu.profile=x86-pg");
  // Each byte printed is one more IN (the UART's line status) and one more OUT (the data).
  const int64_t extra_bytes = int64_t(b.serial_bytes) - int64_t(a.serial_bytes);
  EXPECT_EQ(int64_t(figure(b.figures, "emulated.in") - figure(a.figures, "emulated.in")), 100 + extra_bytes)
      << a.figures << "\n" << b.figures;
  EXPECT_EQ(int64_t(figure(b.figures, "emulated.out") - figure(a.figures, "emulated.out")), extra_bytes)
      << a.figures << "\n" << b.figures;
}

// On classic x86 the kernel's own ring-0 check fails as an unmodified OS's would (MOV from CS shows
// the real CPL 3); with leaks concealed the run completes and the leaks are still counted.
TEST(GuestUnderVmm, TrapEmulateOnX86LeaksAndTheKernelNoticesUnlessConcealed) {
  const GuestRun exposed = run("trap_emulate", "bench=selftest", "cpu.profile=x86 vmm.leak_policy=expose");
  ASSERT_FALSE(exposed.guest_lines.empty()) << exposed.figures;
  EXPECT_EQ(exposed.guest_lines.back(), "pgsim-kernel: FAIL ring0");
  EXPECT_GT(figure(exposed.figures, "leaks"), 0u) << exposed.figures;
  const GuestRun concealed = run("trap_emulate", "bench=in iters=10", "cpu.profile=x86 vmm.leak_policy=conceal");
  ASSERT_EQ(concealed.exit_code, 0) << concealed.figures;
  ASSERT_FALSE(concealed.guest_lines.empty());
  EXPECT_EQ(concealed.guest_lines.back(), "pgsim-kernel: PASS");
  EXPECT_GT(figure(concealed.figures, "leaks"), 0u) << concealed.figures;
}


// On the PC board (its local APIC's TSC-deadline timer is the paravirtual kernel's set_timer) the
// kernel under paravirt prints its native output on classic x86 as on x86-pg, with no leak and its
// timer ticking; the lines that name the pvops path it took aside.
TEST(GuestUnderVmm, ParavirtGivesTheGuestOutputOfNativeOnBothProfiles) {
  auto without_path = [](std::vector<std::string> lines) {
    std::erase_if(lines, [](const std::string& l) { return l.rfind("hypervisor", 0) == 0 || l.rfind("pvops:", 0) == 0; });
    return lines;
  };
  for (const std::string profile : {"x86", "x86-pg"}) {
    for (const std::string cmdline : {"bench=forkwait iters=20", "bench=ctxswitch iters=20", "bench=syscall iters=50",
                                      "bench=pgfault iters=50"}) {
      SCOPED_TRACE(profile + " " + cmdline);
      const GuestRun native = run("native", cmdline, "cpu.profile=" + profile);
      const GuestRun pv = run("paravirt", cmdline, "cpu.profile=" + profile);
      ASSERT_EQ(native.exit_code, 0) << native.figures;
      ASSERT_EQ(pv.exit_code, 0) << pv.figures;
      EXPECT_EQ(without_path(pv.guest_lines), without_path(native.guest_lines));
      EXPECT_EQ(figure(pv.figures, "leaks"), 0u) << pv.figures;
    }
  }
  // The selftest, whose ring-3 half waits for a timer tick taken in ring 3, completes too. A
  // paravirtual kernel runs none of its ring-0 probes (each a sensitive instruction, which would
  // observe the hypervisor's descriptor tables and the real CPL 3) and says so on one line of its
  // pvops path; everything else is native's on x86-pg, the user-mode probes included (ring 3's
  // data segments are null after the return to it, as IRETQ leaves them). On classic x86 the
  // user-mode probes leak, as under every software VMM, and only their lines differ.
  auto without_kernel_probes = [&](std::vector<std::string> lines) {
    lines = without_path(lines);
    std::erase_if(lines, [](const std::string& l) { return l.rfind("selftest kernel ", 0) == 0; });
    return lines;
  };
  for (const std::string profile : {"x86-pg", "x86"}) {
    SCOPED_TRACE(profile + " bench=selftest");
    const GuestRun native = run("native", "bench=selftest", "cpu.profile=" + profile);
    const GuestRun selftest = run("paravirt", "bench=selftest", "cpu.profile=" + profile);
    ASSERT_EQ(selftest.exit_code, 0) << selftest.figures;
    EXPECT_GE(figure(selftest.timing, "timer_ticks"), 1u) << selftest.timing;
    EXPECT_NE(std::find(selftest.guest_lines.begin(), selftest.guest_lines.end(),
                        "pvops: paravirtual: selftest kernel probes not run (50 sensitive instructions)"),
              selftest.guest_lines.end());
    EXPECT_EQ(std::count_if(selftest.guest_lines.begin(), selftest.guest_lines.end(),
                            [](const std::string& l) { return l.rfind("selftest kernel ", 0) == 0; }),
              0);
    const std::vector<std::string> pv_lines = without_kernel_probes(selftest.guest_lines),
                                    native_lines = without_kernel_probes(native.guest_lines);
    if (profile == "x86-pg") {
      EXPECT_EQ(pv_lines, native_lines);
      EXPECT_EQ(figure(selftest.figures, "leaks"), 0u) << selftest.figures;
    } else {
      ASSERT_EQ(pv_lines.size(), native_lines.size());
      for (size_t k = 0; k < pv_lines.size(); ++k) {
        if (pv_lines[k] != native_lines[k]) {
          EXPECT_EQ(pv_lines[k].rfind("selftest user ", 0), 0u) << pv_lines[k];
        }
      }
    }
  }
}

}  // namespace

namespace {

// The guest's own measure of one iteration (its `timing: cycles=... per_iter=N` line).
uint64_t per_iteration(const GuestRun& r) {
  const size_t at = r.timing.find("per_iter=");
  return at == std::string::npos ? ~0ull : std::stoull(r.timing.substr(at + 9));
}

// binary_translation on the PC board, with its timer: the selftest's kernel checks (ring 0, IF
// after POPF, ...) pass on classic x86 as on x86-pg, since no instruction of the 64-bit kernel
// runs directly. On x86-pg the output is native's; on classic x86 the user-mode probes still leak
// (user code runs directly, as under trap_emulate): their lines differ from native's, SGDT among
// them, and no leak is the kernel's.
TEST(GuestUnderVmm, BinaryTranslationPassesTheKernelsChecksOnClassicX86) {
  for (const std::string profile : {"x86-pg", "x86"}) {
    SCOPED_TRACE(profile);
    const GuestRun native = run("native", "bench=selftest", "cpu.profile=" + profile);
    const GuestRun bt = run("binary_translation", "bench=selftest", "cpu.profile=" + profile);
    ASSERT_EQ(bt.exit_code, 0) << bt.figures;
    ASSERT_FALSE(bt.guest_lines.empty());
    EXPECT_EQ(bt.guest_lines.back(), "pgsim-kernel: PASS");
    EXPECT_EQ(figure(bt.figures, "violations"), 0u);
    EXPECT_EQ(figure(bt.figures, "kernel_leaks"), 0u);
    ASSERT_EQ(bt.guest_lines.size(), native.guest_lines.size());
    unsigned differing = 0;
    for (size_t k = 0; k < bt.guest_lines.size(); ++k) {
      if (bt.guest_lines[k] == native.guest_lines[k]) continue;
      ++differing;
      EXPECT_EQ(bt.guest_lines[k].rfind("selftest user ", 0), 0u) << bt.guest_lines[k];
    }
    if (profile == "x86-pg") {
      EXPECT_EQ(differing, 0u);
      EXPECT_EQ(figure(bt.figures, "leaks"), 0u);
    } else {
      EXPECT_GT(differing, 0u);
      EXPECT_GT(figure(bt.figures, "leaks.sgdt"), 0u);  // a user-mode SGDT still leaks
    }
    std::cout << profile << " selftest under binary_translation: " << bt.figures << "\n";
  }
}

// Adams and Agesen's nanobenchmarks on the Pentium 4 preset, measured by the guest itself: a call
// and return pair and a system call cost more translated than native (a RET is a TC lookup; a
// SYSCALL traps and its SYSRET is a callout), and a port read costs less under binary translation
// than under trap_emulate (a callout instead of a trap and a resume). Measured (cycles per
// iteration, 1000 iterations, x86-pg): callret 57 translated / 9 native = 6.3x; syscall 1817 /
// 272 = 6.7x; in 1247 translated / 1711 under trap_emulate = 0.73x.
TEST(GuestUnderVmm, BinaryTranslationOnThePentium4RanksAsAdamsAndAgesenMeasured) {
  auto per_iter = [](const std::string& strategy, const std::string& bench) {
    const GuestRun r = run_config(PGSIM_VMM_TEST_CONFIG_PENTIUM4, strategy, "bench=" + bench + " iters=1000",
                                  "cpu.profile=x86-pg");
    EXPECT_EQ(r.exit_code, 0) << r.figures;
    return static_cast<double>(per_iteration(r));
  };
  const double callret_native = per_iter("native", "callret"), callret_bt = per_iter("binary_translation", "callret");
  const double syscall_native = per_iter("native", "syscall"), syscall_bt = per_iter("binary_translation", "syscall");
  const double in_bt = per_iter("binary_translation", "in"), in_te = per_iter("trap_emulate", "in");
  EXPECT_GT(callret_bt, callret_native);
  EXPECT_GT(syscall_bt, syscall_native);
  EXPECT_LT(in_bt, in_te);
  std::cout << "Pentium 4, cycles per iteration: callret " << callret_bt << " translated / " << callret_native
            << " native = " << callret_bt / callret_native << "; syscall " << syscall_bt << " / " << syscall_native
            << " = " << syscall_bt / syscall_native << "; in " << in_bt << " translated / " << in_te
            << " trap_emulate = " << in_bt / in_te << "\n";
}

// An inline STI lets a waiting interrupt in: bench=clisti runs long enough for the PC's timer to
// tick during the loop, and the kernel, which keeps interrupts off but between the STI and the CLI
// of each iteration, takes its ticks under binary translation (where STI and CLI only write the
// virtual IF on the vCPU page, and the VMM asks at every boundary while an interrupt waits) and
// prints native's output.
TEST(GuestUnderVmm, BinaryTranslationTakesTimerTicksAfterAnInlineSti) {
  const auto ticks = [](const GuestRun& r) {
    const size_t at = r.timing.find("timer_ticks=");
    return at == std::string::npos ? 0ull : std::stoull(r.timing.substr(at + 12));
  };
  for (const std::string profile : {"x86", "x86-pg"}) {
    SCOPED_TRACE(profile);
    const GuestRun native = run("native", "bench=clisti iters=300000", "cpu.profile=" + profile);
    const GuestRun bt = run("binary_translation", "bench=clisti iters=300000", "cpu.profile=" + profile);
    ASSERT_EQ(bt.exit_code, 0) << bt.figures;
    EXPECT_EQ(bt.guest_lines, native.guest_lines);
    EXPECT_GT(ticks(native), 0u);
    EXPECT_GT(ticks(bt), 0u);
    EXPECT_EQ(figure(bt.figures, "kernel_leaks"), 0u);
    std::cout << profile << " clisti: " << ticks(bt) << " timer ticks translated, " << ticks(native) << " native\n";
  }
}

}  // namespace

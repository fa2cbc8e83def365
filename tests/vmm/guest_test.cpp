// The guest kernel (workloads/) on the PC board under each strategy: native, interpret,
// trap_emulate and paravirt. Each run is a vmm_guest_run process; the guest's output must be the same under
// all of them (all but the `timing:` lines, which report RDTSC) unless leaks are exposed.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct GuestRun {
  std::vector<std::string> guest_lines;  // serial output without `timing:` lines
  std::string figures;                   // the vmm-run line
  uint64_t serial_bytes = 0;             // bytes the guest wrote to its UART (CR LF line ends)
  std::string timing;                    // the `timing:` lines, space-separated
  int exit_code = -1;
};

GuestRun run(const std::string& strategy, const std::string& cmdline, const std::string& more = "") {
  const std::string command = std::string(PGSIM_VMM_GUEST_RUN) + " " + PGSIM_VMM_TEST_CONFIG +
                              " guest.kernel=" + PGSIM_KERNEL_IMAGE + " vmm.strategy=" + strategy +
                              " 'guest.cmdline=" + cmdline + "' " + more + " 2>&1";
  GuestRun r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  std::string out;
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.serial_bytes = std::min(out.find("vmm-run:"), out.size());
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // the guest writes CR LF
    if (line.rfind("vmm-run:", 0) == 0) r.figures = line;
    else if (line.rfind("timing:", 0) == 0) r.timing += " " + line.substr(7);
    else r.guest_lines.push_back(line);
  }
  return r;
}

uint64_t figure(const std::string& figures, const std::string& name) {
  const size_t at = figures.find(" " + name + "=");
  return at == std::string::npos ? ~0ull : std::stoull(figures.substr(at + name.size() + 2));
}

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
  const GuestRun native = run("native", "bench=forkwait iters=100", "cpu.profile=x86-pg");
  const GuestRun te = run("trap_emulate", "bench=forkwait iters=100", "cpu.profile=x86-pg");
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
  // The selftest, whose ring-3 half waits for a timer tick taken in ring 3, completes too.
  const GuestRun selftest = run("paravirt", "bench=selftest", "cpu.profile=x86-pg");
  ASSERT_EQ(selftest.exit_code, 0) << selftest.figures;
  EXPECT_GE(figure(selftest.timing, "timer_ticks"), 1u) << selftest.timing;
}

}  // namespace

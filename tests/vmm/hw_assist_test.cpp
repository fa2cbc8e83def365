// The guest kernel (workloads/) on the PC board under hw_assist (VT-x-like, nested or shadow paging): each
// run is a vmm_guest_run process. Every workload prints native's output with no leak and no
// resource-control violation, and the VM exits per iteration follow from the benchmark's code,
// taken as differences between two iteration counts of the same boot.
#include <gtest/gtest.h>

#include <string>

#include "tests/vmm/guest_process.h"

namespace {

using pgsim::test::GuestRun;
using pgsim::test::run;

const std::string kHwAssist = "hw_assist cpu.vmx=true";

// A figure of the vmm-run line; 0 for an exit reason the run never met.
int64_t figure(const GuestRun& r, const std::string& name) {
  const uint64_t value = pgsim::test::figure(r.figures, name);
  return value == ~0ull ? 0 : static_cast<int64_t>(value);
}

// VM exits other than those of the UART (each byte printed: one line-status IN and one data OUT)
// and of external interrupts (timer ticks, which depend on the run's length).
int64_t exits_besides_console_and_timer(const GuestRun& r) {
  return figure(r, "exits") - figure(r, "exits.external_interrupt") - figure(r, "exits.interrupt_window") -
         2 * static_cast<int64_t>(r.serial_bytes);
}

TEST(HwAssist, EveryWorkloadPrintsNativesOutputWithNoLeakOrViolation) {
  for (const char* cmdline :
       {"bench=selftest", "bench=syscall iters=20", "bench=in iters=20", "bench=cr8wr iters=20",
        "bench=callret iters=20", "bench=pgfault iters=20", "bench=divzero iters=20", "bench=ptemod iters=20",
        "bench=forkwait iters=20", "bench=compute iters=20", "bench=memwalk iters=200 ws=65536",
        "bench=ctxswitch iters=20", "bench=smc iters=20"}) {
    SCOPED_TRACE(cmdline);
    const GuestRun native = run("native", cmdline);
    ASSERT_EQ(native.exit_code, 0) << native.figures;
    ASSERT_FALSE(native.guest_lines.empty());
    EXPECT_EQ(native.guest_lines.back(), "pgsim-kernel: PASS");
    for (const std::string more :
         {"", "vmm.ept.page_size=4K", "vmm.ept.layout=identity vmm.ept.page_size=1G", "vmm.paging=shadow"}) {
      SCOPED_TRACE(more);
      const GuestRun hw = run(kHwAssist, cmdline, more);
      ASSERT_EQ(hw.exit_code, 0) << hw.figures;
      EXPECT_EQ(hw.guest_lines, native.guest_lines);
      EXPECT_NE(hw.figures.find("end=guest exit"), std::string::npos) << hw.figures;
      EXPECT_EQ(figure(hw, "leaks"), 0);
      EXPECT_EQ(figure(hw, "violations"), 0);
      EXPECT_GT(figure(hw, "exits"), 0);
    }
  }
}

// bench=in: each iteration's IN of the 8259 exits once (unconditional I/O exiting).
TEST(HwAssist, InExitsOncePerIteration) {
  const GuestRun a = run(kHwAssist, "bench=in iters=100"), b = run(kHwAssist, "bench=in iters=200");
  ASSERT_EQ(a.exit_code, 0) << a.figures;
  ASSERT_EQ(b.exit_code, 0) << b.figures;
  EXPECT_EQ(figure(b, "exits.io_instruction") - figure(a, "exits.io_instruction"),
            100 + 2 * (int64_t(b.serial_bytes) - int64_t(a.serial_bytes)))
      << a.figures << "\n" << b.figures;
  EXPECT_EQ(exits_besides_console_and_timer(b) - exits_besides_console_and_timer(a), 100);
}

// bench=cr8wr: with the TPR shadow a write to CR8 reaches the virtual TPR without an exit; without
// it (vmm.hw_assist.tpr_shadow: false) each write exits as a CR access: one per iteration.
TEST(HwAssist, Cr8WritesExitOnlyWithoutTheTprShadow) {
  for (const bool shadow : {true, false}) {
    SCOPED_TRACE(shadow);
    const std::string more = shadow ? "" : "vmm.hw_assist.tpr_shadow=false";
    const GuestRun a = run(kHwAssist, "bench=cr8wr iters=100", more), b = run(kHwAssist, "bench=cr8wr iters=200", more);
    ASSERT_EQ(a.exit_code, 0) << a.figures;
    ASSERT_EQ(b.exit_code, 0) << b.figures;
    EXPECT_EQ(figure(b, "exits.cr_access") - figure(a, "exits.cr_access"), shadow ? 0 : 100);
    EXPECT_EQ(exits_besides_console_and_timer(b) - exits_besides_console_and_timer(a), shadow ? 0 : 100)
        << a.figures << "\n" << b.figures;
  }
}

// System calls, page faults and page-table writes are the guest's own under nested paging: no exit.
TEST(HwAssist, SyscallsPageFaultsAndPteWritesDoNotExitUnderNestedPaging) {
  for (const char* bench : {"syscall", "pgfault", "ptemod"}) {
    SCOPED_TRACE(bench);
    const GuestRun a = run(kHwAssist, std::string("bench=") + bench + " iters=100");
    const GuestRun b = run(kHwAssist, std::string("bench=") + bench + " iters=200");
    ASSERT_EQ(a.exit_code, 0) << a.figures;
    ASSERT_EQ(b.exit_code, 0) << b.figures;
    EXPECT_EQ(exits_besides_console_and_timer(b) - exits_besides_console_and_timer(a), 0)
        << a.figures << "\n" << b.figures;
  }
}

// Without EPT (vmm.paging: shadow, first-generation VT-x) the guest's page faults and page-table
// writes exit, per iteration:
// - ptemod: 2 #PF exits (the traced write of the PTE, emulated; the read through the scratch page,
//   whose shadow leaf the write dropped: a hidden fault) and 1 INVLPG exit;
// - pgfault: 4 #PF exits (the user's touch, the guest's own fault, injected; the kernel's two PTE
//   writes, traced; the user's retry, a hidden fault) and 1 INVLPG exit.
// System calls do not exit; bench=in's IN exits once, as under nested paging.
TEST(HwAssist, ShadowPagingExitsPerIteration) {
  struct Expected {
    const char* bench;
    int64_t page_faults, invlpgs, io, all;
  };
  for (const Expected& e : {Expected{"ptemod", 2, 1, 0, 3}, Expected{"pgfault", 4, 1, 0, 5},
                            Expected{"syscall", 0, 0, 0, 0}, Expected{"in", 0, 0, 1, 1}}) {
    SCOPED_TRACE(e.bench);
    const GuestRun a = run(kHwAssist, std::string("bench=") + e.bench + " iters=100", "vmm.paging=shadow");
    const GuestRun b = run(kHwAssist, std::string("bench=") + e.bench + " iters=200", "vmm.paging=shadow");
    ASSERT_EQ(a.exit_code, 0) << a.figures;
    ASSERT_EQ(b.exit_code, 0) << b.figures;
    auto delta = [&](const std::string& name) { return figure(b, name) - figure(a, name); };
    EXPECT_EQ(delta("exits.exception_or_nmi"), 100 * e.page_faults) << a.figures << "\n" << b.figures;
    EXPECT_EQ(delta("exits.invlpg"), 100 * e.invlpgs);
    EXPECT_EQ(delta("exits.io_instruction") - 2 * (int64_t(b.serial_bytes) - int64_t(a.serial_bytes)), 100 * e.io);
    EXPECT_EQ(exits_besides_console_and_timer(b) - exits_besides_console_and_timer(a), 100 * e.all)
        << a.figures << "\n" << b.figures;
  }
}

// The instructions the VMM completes for the guest (exits it carries out, accesses to device
// memory and page-table writes it emulates on its virtual CPU) retire on the guest's core: per
// iteration the core counts what it counts natively, under either paging. Under shadow paging each
// ptemod and pgfault iteration has its page-table writes emulated.
TEST(HwAssist, TheGuestRetiresNativesInstructionsPerIteration) {
  for (const char* bench : {"ptemod", "pgfault", "syscall", "in", "cr8wr"}) {
    SCOPED_TRACE(bench);
    const std::string small = std::string("bench=") + bench + " iters=100";
    const std::string large = std::string("bench=") + bench + " iters=200";
    const GuestRun na = run("native", small), nb = run("native", large);
    ASSERT_EQ(na.exit_code, 0) << na.figures;
    ASSERT_EQ(nb.exit_code, 0) << nb.figures;
    const int64_t native = figure(nb, "insts") - figure(na, "insts");
    EXPECT_GT(native, 100);
    for (const std::string paging : {"vmm.paging=nested", "vmm.paging=shadow"}) {
      SCOPED_TRACE(paging);
      const GuestRun a = run(kHwAssist, small, paging), b = run(kHwAssist, large, paging);
      ASSERT_EQ(a.exit_code, 0) << a.figures;
      ASSERT_EQ(b.exit_code, 0) << b.figures;
      EXPECT_EQ(figure(b, "insts") - figure(a, "insts"), native) << a.figures << "\n" << b.figures;
    }
  }
}

// memwalk's TLB misses make two-dimensional walks. Without the walk caches and the nested TLB each
// walk reads about 13 EPT entries (28,191 for 2,163 walks: up to (4 + 1) x 3 = 15 for a 4-level
// guest walk over 3-level EPT walks with 2 MiB EPT pages, fewer where the guest maps large pages);
// with them, 15 for 2,161 walks: the nested TLB and the guest walk caches, which hold host-physical
// table addresses, leave under 0.01 per walk, more than a thousandfold fewer.
TEST(HwAssist, WalkCachesAndNestedTlbCutNestedReferencesPerWalk) {
  const std::string cmdline = "bench=memwalk iters=2000 ws=4194304";
  const GuestRun cached = run(kHwAssist, cmdline);
  const GuestRun uncached =
      run(kHwAssist, cmdline, "mmu.pwc.enabled=false mmu.nested.pwc.enabled=false mmu.nested.tlb.entries=0");
  ASSERT_EQ(cached.exit_code, 0) << cached.figures;
  ASSERT_EQ(uncached.exit_code, 0) << uncached.figures;
  const double per_walk_cached = double(figure(cached, "walk_nested_refs")) / double(figure(cached, "walks"));
  const double per_walk_uncached = double(figure(uncached, "walk_nested_refs")) / double(figure(uncached, "walks"));
  RecordProperty("nested_refs_per_walk_cached", std::to_string(per_walk_cached));
  RecordProperty("nested_refs_per_walk_uncached", std::to_string(per_walk_uncached));
  EXPECT_GT(per_walk_uncached, 12.0) << uncached.figures;
  EXPECT_LE(per_walk_uncached, 15.0) << uncached.figures;
  EXPECT_LT(per_walk_cached, 0.01) << cached.figures;
  EXPECT_GT(per_walk_uncached, 1000 * per_walk_cached);
}

}  // namespace

// The Popek-Goldberg demonstration: the same guest workloads run natively, interpreted and under
// trap-and-emulate, on classic x86 and on x86-pg, shown as one table. Per run: whether the guest
// completed (or which of its own checks failed), whether its output is the native run's and the
// leaks by instruction (equivalence), the resource-control violations, the share of instructions
// run directly (efficiency), the entries into the VMM (traps, VM exits, callouts, hypercalls), the
// cycles, and the slowdown against the native run of the same profile and workload.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pgsim::cli {

struct PgRun {
  std::string profile;   // cpu.profile
  std::string strategy;  // vmm.strategy
  std::string leak_policy;
  std::string workload;  // guest.cmdline
  std::string serial;    // the guest's output
  std::string leaks;     // LeakLog::summary()
  uint64_t leak_total = 0, violations = 0, traps = 0, cycles = 0;
  uint64_t exits = 0, callouts = 0, hypercalls = 0;  // the other ways into the VMM
  double direct_fraction = 0;
};

// "completed", or "FAILED <check>" from the guest's `CHECK FAILED: <name>` line, or
// "FAILED: <reason>" from its `pgsim-kernel: FAIL <reason>` line, or "did not finish".
std::string guest_outcome(const std::string& serial);

// Equivalence as the guest shows it: "same" when the run's guest output (without its `timing:`
// lines, which report RDTSC, and the lines that name the pvops path it took) is that of the native run with the same profile and workload,
// "differs" when it is not, "-" for the native run itself or when there is none.
std::string output_against_native(const PgRun& run, const std::vector<PgRun>& runs);

// The table, one row per run in the order given; slowdown is cycles over those of the native
// run with the same profile and workload ("-" without one, or when the run did not complete).
std::string popek_goldberg_table(const std::vector<PgRun>& runs);

}  // namespace pgsim::cli

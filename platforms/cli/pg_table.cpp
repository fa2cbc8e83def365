#include "platforms/cli/pg_table.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <utility>

namespace pgsim::cli {

namespace {

std::string strip(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// A paravirtual kernel runs none of the selftest's ring-0 probes (each a sensitive instruction)
// and says so on a line of its pvops path.
bool kernel_probes_not_run(const std::string& serial) {
  return serial.find(": selftest kernel probes not run") != std::string::npos;
}

// The guest's output without its `timing:` lines and line-end differences, and without the
// ring-0 probes' lines when the run it is compared with did not run them.
std::string comparable_output(const std::string& serial, bool without_kernel_probes) {
  std::istringstream in(serial);
  std::string kept;
  // Timing lines differ from run to run; the lines that say which pvops path the kernel took
  // (whether a hypervisor was found) differ by design between native and paravirtual runs.
  for (std::string line; std::getline(in, line);)
    if (line.rfind("timing:", 0) != 0 && line.rfind("hypervisor", 0) != 0 && line.rfind("pvops:", 0) != 0 &&
        !(without_kernel_probes && line.rfind("selftest kernel ", 0) == 0))
      kept += strip(line) + "\n";
  return kept;
}

}  // namespace

std::string output_against_native(const PgRun& run, const std::vector<PgRun>& runs) {
  if (run.strategy == "native") return "-";
  for (const PgRun& n : runs)
    if (n.strategy == "native" && n.profile == run.profile && n.workload == run.workload) {
      const bool without_kernel_probes = kernel_probes_not_run(run.serial);
      return comparable_output(n.serial, without_kernel_probes) == comparable_output(run.serial, without_kernel_probes)
                 ? "same"
                 : "differs";
    }
  return "-";
}

std::string guest_outcome(const std::string& serial) {
  std::istringstream in(serial);
  std::string check, fail;
  bool passed = false;
  for (std::string line; std::getline(in, line);) {
    line = strip(line);
    if (line.rfind("CHECK FAILED: ", 0) == 0 && check.empty()) check = line.substr(14);
    if (line.rfind("pgsim-kernel: FAIL", 0) == 0) {
      fail = strip(line.substr(18));
      fail.erase(0, fail.find_first_not_of(' '));
    }
    if (line == "pgsim-kernel: PASS") passed = true;
  }
  if (!check.empty()) return "FAILED " + check;
  if (!fail.empty()) return "FAILED: " + fail;
  return passed ? "completed" : "did not finish";
}

// The run's entries into the VMM by way in, "224 traps + 400 callouts", or "0".
static std::string vmm_entries(const PgRun& r) {
  std::string text;
  for (const auto& [count, what] : {std::pair{r.traps, "traps"}, std::pair{r.exits, "exits"},
                                    std::pair{r.callouts, "callouts"}, std::pair{r.hypercalls, "hypercalls"}}) {
    if (count == 0) continue;
    text += (text.empty() ? "" : " + ") + std::to_string(count) + " " + what;
  }
  return text.empty() ? "0" : text;
}

std::string popek_goldberg_table(const std::vector<PgRun>& runs) {
  const std::vector<std::string> header = {"profile", "strategy", "workload", "guest",  "output", "leaks",
                                           "violations", "direct", "vmm entries", "cycles", "slowdown"};
  std::vector<std::vector<std::string>> rows;
  for (const PgRun& r : runs) {
    const std::string outcome = guest_outcome(r.serial);
    // A run that stopped early is not slower or faster than native: it did other work.
    std::string slowdown = "-";
    for (const PgRun& n : runs)
      if (outcome == "completed" && n.strategy == "native" && n.profile == r.profile && n.workload == r.workload &&
          n.cycles > 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2fx", static_cast<double>(r.cycles) / static_cast<double>(n.cycles));
        slowdown = buf;
      }
    char direct[16];
    std::snprintf(direct, sizeof direct, "%.3f", r.direct_fraction);
    const std::string strategy = r.strategy == "trap_emulate" ? r.strategy + " (" + r.leak_policy + ")" : r.strategy;
    rows.push_back({r.profile, strategy, r.workload, outcome, output_against_native(r, runs),
                    r.leak_total ? std::to_string(r.leak_total) + ": " + r.leaks : "0", std::to_string(r.violations),
                    direct, vmm_entries(r), std::to_string(r.cycles), slowdown});
  }
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    width[c] = header[c].size();
    for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
  }
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < cells.size(); ++c)
      out << cells[c] << std::string(width[c] - cells[c].size(), ' ') << (c + 1 < cells.size() ? "  " : "\n");
  };
  line(header);
  std::vector<std::string> rule;
  for (size_t w : width) rule.push_back(std::string(w, '-'));
  line(rule);
  for (const auto& row : rows) line(row);
  return out.str();
}

}  // namespace pgsim::cli

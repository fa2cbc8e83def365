// Runs of the guest kernel on the PC board in a vmm_guest_run process (one SystemC design per
// process), for the tests of tests/vmm: the guest's lines, its `timing:` figures and the run's
// vmm-run figures.
#pragma once
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace pgsim::test {

struct GuestRun {
  std::vector<std::string> guest_lines;  // serial output without `timing:` lines
  std::string figures;                   // the vmm-run line
  uint64_t serial_bytes = 0;             // bytes the guest wrote to its UART (CR LF line ends)
  std::string timing;                    // the `timing:` lines, space-separated
  int exit_code = -1;
};

// A run with the config file `config` (the tests' guest_test.yaml unless said).
inline GuestRun run_config(const std::string& config, const std::string& strategy, const std::string& cmdline,
                           const std::string& more = "") {
  const std::string command = std::string(PGSIM_VMM_GUEST_RUN) + " " + config +
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

inline GuestRun run(const std::string& strategy, const std::string& cmdline, const std::string& more = "") {
  return run_config(PGSIM_VMM_TEST_CONFIG, strategy, cmdline, more);
}

inline uint64_t figure(const std::string& figures, const std::string& name) {
  const size_t at = figures.find(" " + name + "=");
  return at == std::string::npos ? ~0ull : std::stoull(figures.substr(at + name.size() + 2));
}

}  // namespace pgsim::test

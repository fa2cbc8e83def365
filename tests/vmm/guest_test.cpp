// The guest kernel (workloads/) on the PC board under each strategy the board can host without
// the platform's VMM integration: native and interpret. Each run is a vmm_guest_run process; the
// guest's output must be the same under both (all but the `timing:` lines, which report RDTSC).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct GuestRun {
  std::vector<std::string> guest_lines;  // serial output without `timing:` lines
  std::string figures;                   // the vmm-run line
  int exit_code = -1;
};

GuestRun run(const std::string& strategy, const std::string& cmdline) {
  const std::string command = std::string(PGSIM_VMM_GUEST_RUN) + " " + PGSIM_VMM_TEST_CONFIG +
                              " guest.kernel=" + PGSIM_KERNEL_IMAGE + " vmm.strategy=" + strategy +
                              " 'guest.cmdline=" + cmdline + "' 2>&1";
  GuestRun r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  std::string out;
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // the guest writes CR LF
    if (line.rfind("vmm-run:", 0) == 0) r.figures = line;
    else if (line.rfind("timing:", 0) != 0) r.guest_lines.push_back(line);
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

}  // namespace

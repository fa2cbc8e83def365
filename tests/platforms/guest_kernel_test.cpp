// The project's guest kernel (workloads/) on pgsim and on QEMU: same verdict, same benchmark
// checksums, same exit status. And on pgsim with and without compiled blocks: the same figures.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/platforms/pgsim_guest_runner.h"

namespace {

using namespace pgsim::guest_test;

// The kernel's lines that do not depend on timing: benchmark results and the verdict. QEMU's
// firmware prints before the kernel, on the same line as its first message.
std::vector<std::string> deterministic_lines(const std::string& serial) {
  const size_t start = serial.find("pgsim-kernel: booting");
  std::vector<std::string> lines;
  std::istringstream in(start == std::string::npos ? serial : serial.substr(start));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("bench=", 0) == 0 || line.rfind("pgsim-kernel:", 0) == 0) lines.push_back(line);
  }
  return lines;
}

class GuestKernel : public ::testing::TestWithParam<const char*> {};

TEST_P(GuestKernel, SameResultsAsQemu) {
  const GuestRun q = qemu_runner(PGSIM_KERNEL_IMAGE, std::chrono::seconds(60))(GetParam());
  const GuestRun p = pgsim_runner(PGSIM_BINARY, PGSIM_KERNEL_IMAGE, std::chrono::seconds(60))(GetParam());
  ASSERT_TRUE(q.launch_error.empty()) << q.launch_error;
  ASSERT_TRUE(p.launch_error.empty()) << p.launch_error;
  EXPECT_FALSE(p.timed_out) << p.serial;
  EXPECT_EQ(p.exit_status, q.exit_status) << p.serial;
  EXPECT_EQ(p.exit_status, 1) << p.serial;  // the kernel wrote 0: PASS
  const std::vector<std::string> lines = deterministic_lines(p.serial);
  EXPECT_EQ(lines, deterministic_lines(q.serial));
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), "pgsim-kernel: PASS");
}

INSTANTIATE_TEST_SUITE_P(Workloads, GuestKernel,
                         ::testing::Values("bench=selftest", "bench=syscall iters=200",
                                           "bench=compute iters=2000", "bench=pgfault iters=50",
                                           "bench=forkwait iters=5", "bench=cr8wr iters=100",
                                           "bench=in iters=100", "bench=memwalk iters=2",
                                           "bench=smc iters=20"));

// Every figure of stats.json but the host's time, from `pgsim run` of the kernel with `cmdline`
// and the config overrides `sets`.
nlohmann::json simulated_figures(const std::string& cmdline, const std::vector<std::string>& sets) {
  namespace fs = std::filesystem;
  static unsigned runs = 0;
  const fs::path dir = fs::temp_directory_path() / ("pgsim_figures_" + std::to_string(getpid()) + "_" + std::to_string(runs++));
  fs::create_directories(dir);
  std::ofstream(dir / "run.yaml") << "run:\n  name: figures\n  max_host_seconds: 120\nguest:\n  kernel: "
                                  << PGSIM_KERNEL_IMAGE << "\nmemory:\n  size: 128M\n";
  std::vector<std::string> argv = {PGSIM_BINARY, "run", (dir / "run.yaml").string(), "--results-dir",
                                   (dir / "results").string(), "--quiet", "--set", "guest.cmdline=" + cmdline};
  for (const std::string& s : sets) argv.insert(argv.end(), {"--set", s});
  const GuestRun run = run_process(argv, std::chrono::seconds(150));
  EXPECT_TRUE(run.launch_error.empty()) << run.launch_error;
  std::ifstream report(dir / "results" / "figures" / "stats.json");
  nlohmann::json stats = nlohmann::json::parse(report, nullptr, false);
  fs::remove_all(dir);
  if (!stats.is_object() || !stats.contains("stats")) {
    ADD_FAILURE() << "no stats.json: " << run.serial;
    return {};
  }
  stats = stats["stats"];
  stats.erase("sim.host_seconds");
  stats.erase("sim.guest_ips");
  return stats;
}

struct FiguresCase {
  const char* name;
  const char* cmdline;
  std::vector<std::string> sets;
};

class CompiledBlocks : public ::testing::TestWithParam<FiguresCase> {};

// Compiled blocks (isa/block_compiler.h) change the host's time alone: every count, cycle bucket,
// TLB and walk figure is the interpreter's, natively and under the VMMs, with the cache model too.
TEST_P(CompiledBlocks, LeaveEveryFigureAsInterpreted) {
  std::vector<std::string> off = GetParam().sets;
  off.push_back("cpu.compiled_blocks=false");
  const nlohmann::json compiled = simulated_figures(GetParam().cmdline, GetParam().sets);
  const nlohmann::json interpreted = simulated_figures(GetParam().cmdline, off);
  ASSERT_FALSE(compiled.empty());
  EXPECT_GT(compiled.value("cpu.insts.total", 0), 100000);
  for (const auto& [key, value] : interpreted.items()) EXPECT_EQ(compiled.value(key, nlohmann::json()), value) << key;
  EXPECT_EQ(compiled.size(), interpreted.size());
}

INSTANTIATE_TEST_SUITE_P(
    Workloads, CompiledBlocks,
    ::testing::Values(FiguresCase{"forkwait", "bench=forkwait iters=30", {}},
                      FiguresCase{"syscall", "bench=syscall iters=2000", {}},
                      FiguresCase{"compute_cache", "bench=compute iters=50000", {"cache.enabled=true"}},
                      FiguresCase{"pgfault_trap_emulate", "bench=pgfault iters=200",
                                  {"vmm.strategy=trap_emulate", "cpu.profile=x86-pg"}},
                      FiguresCase{"forkwait_binary_translation", "bench=forkwait iters=20",
                                  {"vmm.strategy=binary_translation"}},
                      FiguresCase{"syscall_hw_assist", "bench=syscall iters=3000", {"vmm.strategy=hw_assist", "cpu.vmx=true"}}),
    [](const ::testing::TestParamInfo<FiguresCase>& info) { return std::string(info.param.name); });

}  // namespace

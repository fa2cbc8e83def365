// Speed of the platform: guest instructions per host second on a compute loop in long mode with
// paging, the TLB model and the timing model on (the default configuration). Runs `pgsim run` on
// the compute_bench test kernel a few times and reports the best and median rates and their ratio
// to the 100 million per second goal. A benchmark, not a test: it reports, it does not judge.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 3;
  const fs::path dir = fs::temp_directory_path() / ("pgsim_ips_benchmark_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "bench.yaml") << "run:\n  name: ips\nguest:\n  kernel: " << PGSIM_TEST_KERNEL_DIR
                                    << "/compute_bench.elf\nmemory:\n  size: 128M\n";
  std::vector<double> rates;
  uint64_t instructions = 0;
  for (int i = 0; i < runs; ++i) {
    const std::string cmd = std::string(PGSIM_BINARY) + " run " + (dir / "bench.yaml").string() +
                            " --results-dir " + (dir / "results").string() + " --quiet > " +
                            (dir / "out.txt").string() + " 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      std::ifstream out(dir / "out.txt");
      std::fprintf(stderr, "pgsim failed:\n%s\n", std::string(std::istreambuf_iterator<char>(out), {}).c_str());
      return 1;
    }
    std::ifstream report_file(dir / "results" / "ips" / "stats.json");
    const nlohmann::json report = nlohmann::json::parse(report_file);
    const auto& stats = report.at("stats");
    instructions = stats.at("cpu.insts.total").get<uint64_t>();
    rates.push_back(stats.at("sim.guest_ips").get<double>());
    std::printf("run %d: %llu guest instructions, %.1f million per host second, %llu TLB walks\n", i + 1,
                static_cast<unsigned long long>(instructions), rates.back() / 1e6,
                static_cast<unsigned long long>(stats.at("mmu.walk.count").get<uint64_t>()));
  }
  std::sort(rates.begin(), rates.end());
  const double best = rates.back(), median = rates[rates.size() / 2];
  constexpr double kGoal = 100e6;
  std::printf("guest instructions per host second: best %.1f M, median %.1f M; goal 100 M: ratio %.2f (best), "
              "%.2f (median)\n", best / 1e6, median / 1e6, best / kGoal, median / kGoal);
  fs::remove_all(dir);
  return 0;
}

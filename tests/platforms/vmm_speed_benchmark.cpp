// Host speed of a VMM against native execution, measured side by side in one run: the guest
// kernel's `compute` (nothing traps) and `syscall` (every system call traps twice) benchmarks,
// each run as a whole `pgsim run` natively and under trap_emulate on x86-pg, alternately, at two
// iteration counts. Host time is the CPU time (user + system) the run's process used, which other
// load on a shared machine disturbs far less than wall time. The steady-state host time of a
// strategy is the difference between the two counts' host times (start-up cancels); the ratio to
// native's is reported as the median over the repetitions, with the whole-process ratio beside it.
// A benchmark, not a test: it reports, it does not judge (only ratios measured in one run mean
// something).
//   pgsim_vmm_speed_benchmark [REPETITIONS]
#include <sys/resource.h>
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

namespace {

struct Workload {
  const char* bench;
  unsigned small, large;  // iteration counts
};

// CPU seconds (user + system) used so far by the children this process waited for.
double children_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_CHILDREN, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// Host CPU seconds of one `pgsim run` of the guest kernel; negative when the run failed.
double host_seconds(const fs::path& dir, const std::string& strategy, const Workload& w, unsigned iters) {
  const std::string name = strategy + "_" + w.bench + "_" + std::to_string(iters);
  const std::string cmd = std::string(PGSIM_BINARY) + " run " + PGSIM_SOURCE_DIR + "/configs/default.yaml" +
                          " --set guest.kernel=" + PGSIM_KERNEL_IMAGE + " --set cpu.profile=x86-pg" +
                          " --set vmm.strategy=" + strategy + " --set 'guest.cmdline=bench=" + w.bench +
                          " iters=" + std::to_string(iters) + "' --set run.name=" + name + " --results-dir " +
                          (dir / "results").string() + " --quiet > " + (dir / "out.txt").string() + " 2>&1";
  const double before = children_cpu_seconds();
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream out(dir / "out.txt");
    std::fprintf(stderr, "pgsim failed:\n%s\n", std::string(std::istreambuf_iterator<char>(out), {}).c_str());
    return -1;
  }
  const double used = children_cpu_seconds() - before;
  std::ifstream report(dir / "results" / name / "stats.json");
  if (nlohmann::json::parse(report).at("run").at("end") != "guest_exit") {
    std::fprintf(stderr, "pgsim run %s did not end with the guest's exit\n", name.c_str());
    return -1;
  }
  return used;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int repetitions = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const fs::path dir = fs::temp_directory_path() / ("pgsim_vmm_speed_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const Workload workloads[] = {{"compute", 1'000'000, 2'000'000}, {"syscall", 50'000, 150'000}};
  for (const Workload& w : workloads) {
    std::vector<double> steady, whole;
    for (int r = 0; r < repetitions; ++r) {
      double t[2][2];  // [native, trap_emulate][small, large]
      for (int s = 0; s < 2; ++s)
        for (int k = 0; k < 2; ++k) {
          t[s][k] = host_seconds(dir, s == 0 ? "native" : "trap_emulate", w, k == 0 ? w.small : w.large);
          if (t[s][k] < 0) return 1;
        }
      steady.push_back((t[1][1] - t[1][0]) / (t[0][1] - t[0][0]));
      whole.push_back(t[1][1] / t[0][1]);
    }
    std::printf("bench=%s: trap_emulate / native host CPU time on x86-pg: %.2fx steady state (iters %u -> %u), %.2fx "
                "whole process at %u iterations (medians of %d)\n",
                w.bench, median(steady), w.small, w.large, median(whole), w.large, repetitions);
  }
  fs::remove_all(dir);
  return 0;
}

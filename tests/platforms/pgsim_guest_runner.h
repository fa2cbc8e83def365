// The pgsim machine as a runner for the guest tests (tests/workloads/guest_runner.h): it runs
// `pgsim run` on the kernel image with the given Multiboot command line, in a fresh results
// directory, and reports what the guest printed and its exit-device status ((v << 1) | 1, as
// QEMU's isa-debug-exit gives it) so that QEMU and pgsim runs compare directly.
//
// To use it, guest_runners() adds {"pgsim", pgsim_runner(PGSIM_BINARY, PGSIM_KERNEL_IMAGE, ...)}
// and the test target defines PGSIM_BINARY="$<TARGET_FILE:pgsim>" and depends on pgsim.
#pragma once
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/workloads/guest_runner.h"

namespace pgsim::guest_test {

inline GuestRunner pgsim_runner(const std::string& pgsim_binary, const std::string& kernel_image,
                                std::chrono::seconds time_limit, const std::string& memory = "128M",
                                std::vector<std::string> overrides = {}) {
  return [=](const std::string& cmdline) {
    static std::atomic<unsigned> runs{0};
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() /
                         ("pgsim_guest_" + std::to_string(getpid()) + "_" + std::to_string(runs++));
    fs::create_directories(dir);
    std::ofstream(dir / "run.yaml") << "run:\n  name: guest\n  max_host_seconds: " << time_limit.count()
                                    << "\nguest:\n  kernel: " << kernel_image << "\nmemory:\n  size: " << memory
                                    << "\n";
    std::vector<std::string> argv = {pgsim_binary, "run", (dir / "run.yaml").string(), "--results-dir",
                                     (dir / "results").string(), "--quiet", "--set",
                                     "guest.cmdline=" + nlohmann::json(cmdline).dump()};
    for (const std::string& o : overrides) {
      argv.push_back("--set");
      argv.push_back(o);
    }
    GuestRun machine = run_process(argv, time_limit + std::chrono::seconds(30));
    GuestRun run;
    run.timed_out = machine.timed_out;
    run.launch_error = machine.launch_error;
    std::ifstream serial(dir / "results" / "guest" / "serial.log", std::ios::binary);
    run.serial.assign(std::istreambuf_iterator<char>(serial), std::istreambuf_iterator<char>());
    std::ifstream report_file(dir / "results" / "guest" / "stats.json");
    if (report_file) {
      const nlohmann::json report = nlohmann::json::parse(report_file, nullptr, false);
      if (report.is_object() && report["run"].value("end", "") == "guest_exit")
        run.exit_status = report["run"].value("guest_status", -1);
      else if (report.is_object() && report["run"].value("end", "") == "time_limit")
        run.timed_out = true;
    }
    // The machine's own messages (how the run ended, errors) matter when the guest did not exit.
    if (run.exit_status < 0) run.serial += machine.serial;
    fs::remove_all(dir);
    return run;
  };
}

}  // namespace pgsim::guest_test

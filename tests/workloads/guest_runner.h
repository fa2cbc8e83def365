// How the guest tests run the pgsim kernel: a runner takes a Multiboot command line and returns
// what the machine printed on its serial port and how it ended. QEMU is one runner; pgsim's own
// platform is another (add it to guest_runners() in guest_runner.cpp).
#pragma once

#include <chrono>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace pgsim::guest_test {

struct GuestRun {
    std::string serial;        // everything written to the UART (and the machine's own messages)
    int exit_status = -1;      // the process's exit status: (v << 1) | 1 after the exit device
    bool timed_out = false;    // killed after the runner's time limit
    std::string launch_error;  // non-empty if the machine could not be started
};

using GuestRunner = std::function<GuestRun(const std::string& cmdline)>;

struct NamedRunner {
    std::string name;
    GuestRunner run;
};

// GoogleTest prints a parameter by its name, not as the bytes of the object.
inline void PrintTo(const NamedRunner& runner, std::ostream* os) { *os << runner.name; }

// QEMU (TCG) booting the kernel image with -kernel, as described in workloads/; cpu_model is
// QEMU's -cpu (max: every feature TCG has; qemu64: a plain x86-64).
GuestRunner qemu_runner(const std::string& kernel_image, std::chrono::seconds time_limit,
                        const std::string& cpu_model = "max");

// Every runner the tests use, in order.
std::vector<NamedRunner> guest_runners();

// Runs argv as a child process with stdin from /dev/null, collecting stdout and stderr until it
// exits or the time limit passes (then it is killed).
GuestRun run_process(const std::vector<std::string>& argv, std::chrono::seconds time_limit);

}  // namespace pgsim::guest_test

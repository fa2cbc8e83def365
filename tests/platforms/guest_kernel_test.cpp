// The project's guest kernel (workloads/) on pgsim and on QEMU: same verdict, same benchmark
// checksums, same exit status.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

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

}  // namespace

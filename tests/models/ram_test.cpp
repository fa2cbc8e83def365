// RAM of any configured size costs host memory only where the guest touches it.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>

#include "models/memory/ram.h"
#include "tests/models/tlm_access.h"

namespace pgsim::models {
namespace {

// This process's resident set in bytes (VmRSS of /proc/self/status).
uint64_t vm_rss() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

TEST(RamTest, FourGibibytesTouchedSparselyStaySmall) {
  const uint64_t before = vm_rss();
  Ram ram("ram_4g", Ram::Params{4ull << 30});
  EXPECT_EQ(ram.size(), 4ull << 30);
  std::memset(ram.data() + (1 << 20), 0xA5, 8 << 20);         // 8 MiB at 1 MiB
  std::memset(ram.data() + (3ull << 30), 0x5A, 1 << 20);      // 1 MiB at 3 GiB
  const uint64_t resident = ram.resident_bytes();
  EXPECT_GE(resident, 9u << 20);
  EXPECT_LE(resident, 10u << 20);
  EXPECT_LT(vm_rss() - before, 32u << 20);
  EXPECT_EQ(ram.data()[(3ull << 30) + 100], 0x5A);
  EXPECT_EQ(ram.data()[2ull << 30], 0);  // untouched memory reads as zero
}

// Pages are untouched until written; the others far from the write stay so (a write may fault in a
// whole 2 MiB huge page around it).
TEST(RamTest, PagesAreUntouchedUntilWritten) {
  Ram ram("ram_untouched", Ram::Params{8 << 20});
  EXPECT_TRUE(ram.untouched(0, 8 << 20));
  ram.data()[(3 << 20) + 5] = 1;
  EXPECT_FALSE(ram.untouched(0, 8 << 20));
  EXPECT_FALSE(ram.untouched(3 << 20, 4096));
  EXPECT_TRUE(ram.untouched(0, 1 << 20));
  EXPECT_TRUE(ram.untouched(6 << 20, 2 << 20));
  EXPECT_FALSE(ram.untouched(7 << 20, 2 << 20));  // past the end: not known
  EXPECT_FALSE(ram.untouched(0, 0));
}

TEST(RamTest, TransportAndDmi) {
  Ram ram("ram_small", Ram::Params{1 << 20});
  uint32_t value = 0xCAFEF00D;
  ASSERT_EQ(tlm_access(ram.in, tlm::TLM_WRITE_COMMAND, 0x1000, &value, 4), tlm::TLM_OK_RESPONSE);
  tlm::tlm_generic_payload trans;
  trans.set_address(0x1000);
  tlm::tlm_dmi dmi;
  ASSERT_TRUE(ram.in.get_base_interface().get_direct_mem_ptr(trans, dmi));
  uint32_t seen;
  std::memcpy(&seen, dmi.get_dmi_ptr() + 0x1000, 4);
  EXPECT_EQ(seen, 0xCAFEF00Du);
  EXPECT_EQ(tlm_access(ram.in, tlm::TLM_READ_COMMAND, (1 << 20) - 2, &value, 4),  // crosses the end
            tlm::TLM_ADDRESS_ERROR_RESPONSE);
  EXPECT_THROW(Ram("ram_odd", Ram::Params{1000}), std::invalid_argument);
}

}  // namespace
}  // namespace pgsim::models

// The cycle account: every cycle in a named bucket, and the buckets add up to the total.
#include <gtest/gtest.h>

#include "models/timing/timing.h"

namespace pgsim::models {
namespace {

TEST(CycleAccountTest, BucketsAddUpIncludingExtraOnes) {
  isa::CoreCounters core;
  MmuCounters mmu;
  TimingParams t;
  t.set_cpi(isa::InsnClass::Alu, 0.5);
  CycleAccount account(t, core, mmu);
  core.by_class[static_cast<unsigned>(isa::InsnClass::Alu)] = 7;   // 3.5 cycles: 3 whole ones
  core.by_class[static_cast<unsigned>(isa::InsnClass::Div)] = 2;   // 2 x 26
  core.events = 3;
  core.interrupts = 1;
  mmu.walk_cycles = 400;
  account.io_accesses = 2;
  account.halt_cycles = 11;
  EXPECT_EQ(account.bucket(Bucket::Execute), 3u + 52);
  EXPECT_EQ(account.bucket(Bucket::Exception), 2u * 150);
  EXPECT_EQ(account.bucket(Bucket::Interrupt), 150u);
  uint64_t vmm = 1000;
  account.add_bucket("vmm_emulation", "cycles emulating", &vmm);
  EXPECT_EQ(account.total(), 55u + 300 + 150 + 400 + 2000 + 11 + 1000);
  account.update_snapshot();
  uint64_t sum = vmm;
  for (uint64_t b : account.snapshot) sum += b;
  EXPECT_EQ(sum, account.total());
}

}  // namespace
}  // namespace pgsim::models

// The set-associative cache hierarchy that page-walk references go through.
#include <gtest/gtest.h>

#include "models/memory/cache_hierarchy.h"

namespace pgsim::models {
namespace {

TEST(CacheHierarchyTest, LatencyOfTheFirstLevelHolding) {
  // L1: 2 sets x 2 ways of 64 B; L2: 4 sets x 2 ways; memory 100 cycles.
  CacheHierarchy caches({{"l1d", 256, 2, 64, 4}, {"l2", 512, 2, 64, 12}}, 100);
  EXPECT_EQ(caches.access(0x1000), 100u);  // cold
  EXPECT_EQ(caches.access(0x1008), 4u);    // same line: L1
  // Lines 0x1000, 0x1080, 0x1100 all map to L1 set 0: the third evicts the first from L1 only.
  EXPECT_EQ(caches.access(0x1080), 100u);
  EXPECT_EQ(caches.access(0x1100), 100u);
  EXPECT_EQ(caches.access(0x1000), 12u);   // still in L2 (its set 0 holds 0x1000 and 0x1100)
  EXPECT_EQ(caches.levels()[0].hits, 1u);
  EXPECT_EQ(caches.levels()[0].misses, 4u);
  EXPECT_EQ(caches.levels()[1].hits, 1u);
}

TEST(CacheHierarchyTest, BadGeometryIsRefused) {
  EXPECT_THROW(SetAssociativeCache({"bad", 1000, 3, 64, 1}), std::invalid_argument);
  EXPECT_THROW(SetAssociativeCache({"bad", 1024, 2, 48, 1}), std::invalid_argument);
}

}  // namespace
}  // namespace pgsim::models

// The TLB's geometry decides its misses: exact counts for cyclic loops over N pages.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

#include "models/mmu/tlb.h"
#include "tests/models/tlb_prediction.h"

namespace pgsim::models {
namespace {

uint64_t run_rounds(Tlb& tlb, unsigned pages, unsigned rounds, uint64_t base) {
  uint64_t misses = 0;
  for (unsigned r = 0; r < rounds; ++r)
    for (unsigned i = 0; i < pages; ++i) {
      const uint64_t va = base + uint64_t{i} * kPage4K;
      if (!tlb.lookup(va, 0)) {
        ++misses;
        tlb.insert(va, kPage4K, 0, false);
      }
    }
  return misses;
}

struct Geometry {
  unsigned entries, ways, pages;
};

class TlbGeometryTest : public ::testing::TestWithParam<Geometry> {};

TEST_P(TlbGeometryTest, CyclicLoopMissesAsTheGeometryPredicts) {
  const Geometry g = GetParam();
  Tlb tlb(TlbGeometry{g.entries, g.ways, {kPage4K}});
  const uint64_t base = 0x400000;
  const uint64_t first_round = run_rounds(tlb, g.pages, 1, base);
  EXPECT_EQ(first_round, g.pages);  // compulsory misses
  const uint64_t next_rounds = run_rounds(tlb, g.pages, 5, base);
  EXPECT_EQ(next_rounds, 5 * predicted_misses_per_round(g.entries, g.ways, g.pages, base >> 12));
}

INSTANTIATE_TEST_SUITE_P(Geometries, TlbGeometryTest,
                         ::testing::Values(Geometry{64, 64, 72},   // fully associative, too small
                                           Geometry{64, 64, 64},   // fits exactly
                                           Geometry{64, 4, 72},    // 8 of 16 sets overflow: 40
                                           Geometry{64, 4, 64},    // 4 per set: fits
                                           Geometry{32, 2, 72},    // every set overflows
                                           Geometry{128, 4, 72},   // fits
                                           Geometry{16, 1, 20}));  // direct-mapped

TEST(TlbTest, PredictionIsNotTrivial) {
  EXPECT_EQ(predicted_misses_per_round(64, 4, 72, 1024), 40u);
  EXPECT_EQ(predicted_misses_per_round(64, 64, 72, 1024), 72u);
  EXPECT_EQ(predicted_misses_per_round(128, 4, 72, 1024), 0u);
}

TEST(TlbTest, EvictionIsReportedWithTheEvictedPage) {
  Tlb tlb(TlbGeometry{2, 2, {kPage4K}});
  std::vector<uint64_t> evicted;
  tlb.set_evict_callback([&](uint64_t base, uint64_t size) {
    EXPECT_EQ(size, kPage4K);
    evicted.push_back(base);
  });
  tlb.insert(0x1000, kPage4K, 0, false);
  tlb.insert(0x2000, kPage4K, 0, false);
  EXPECT_TRUE(tlb.lookup(0x1000, 0));  // 0x2000 is now least recently used
  tlb.insert(0x3000, kPage4K, 0, false);
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(evicted[0], 0x2000u);
}

TEST(TlbTest, APageSizeTheLevelDoesNotHoldIsNotCached) {
  Tlb small(TlbGeometry{16, 4, {kPage4K}});
  EXPECT_FALSE(small.holds(kPage2M));
  EXPECT_EQ(small.insert(0x200000, kPage2M, 0, false), 0u);
  EXPECT_FALSE(small.lookup(0x200123, 0));
  EXPECT_EQ(small.valid_entries(), 0u);
  Tlb large(TlbGeometry{16, 4, {kPage4K, kPage2M}});
  EXPECT_EQ(large.insert(0x200000, kPage2M, 0, false), kPage2M);
  EXPECT_TRUE(large.lookup(0x3FF000, 0));  // one entry covers the whole 2 MiB page
  EXPECT_FALSE(large.lookup(0x400000, 0));
  Tlb only_large(TlbGeometry{8, 8, {kPage2M, kPage4M}});  // like a separate 2M/4M array
  EXPECT_EQ(only_large.insert(0x1000, kPage4K, 0, false), 0u);
  EXPECT_EQ(only_large.insert(0x400000, kPage4M, 0, false), kPage4M);
  EXPECT_TRUE(only_large.lookup(0x7FF000, 0));
  EXPECT_EQ(only_large.valid_entries(), 1u);
}

TEST(TlbTest, PageSizesByName) {
  EXPECT_EQ(page_size_from_name("4K"), kPage4K);
  EXPECT_EQ(page_size_from_name("2M"), kPage2M);
  EXPECT_EQ(page_size_from_name("4M"), kPage4M);
  EXPECT_EQ(page_size_from_name("1G"), kPage1G);
  EXPECT_THROW(page_size_from_name("8K"), std::invalid_argument);
  EXPECT_THROW(Tlb(TlbGeometry{16, 4, {}}), std::invalid_argument);
}

TEST(TlbTest, PcidsAndGlobalEntries) {
  Tlb tlb(TlbGeometry{16, 4, {kPage4K}});
  tlb.insert(0x1000, kPage4K, 1, false);
  tlb.insert(0x2000, kPage4K, 2, false);
  tlb.insert(0x3000, kPage4K, 1, true);
  EXPECT_FALSE(tlb.lookup(0x1000, 2));  // another PCID's entry
  EXPECT_TRUE(tlb.lookup(0x3000, 2));   // global: any PCID
  tlb.flush(false, false, 1);           // MOV CR3 to PCID 1 without bit 63
  EXPECT_FALSE(tlb.lookup(0x1000, 1));
  EXPECT_TRUE(tlb.lookup(0x2000, 2));
  EXPECT_TRUE(tlb.lookup(0x3000, 1));
  tlb.invalidate_page(0x3000, 1);       // INVLPG drops global entries too
  EXPECT_FALSE(tlb.lookup(0x3000, 1));
  tlb.flush(true);
  EXPECT_EQ(tlb.valid_entries(), 0u);
}

// The TLB as its header defines it, searched way by way: the reference the compact tag array and
// the remembered last answer must agree with, hit for hit and eviction for eviction.
class ReferenceTlb {
 public:
  ReferenceTlb(unsigned entries, unsigned ways, std::vector<unsigned> shifts)
      : sets_(entries / ways), ways_(ways), shifts_(std::move(shifts)), entries_(entries) {}
  std::vector<std::pair<uint64_t, uint64_t>> evicted;  // (base, size)

  bool lookup(uint64_t linear, uint16_t pcid, uint16_t vpid) {
    for (unsigned shift : shifts_)
      if (Tlb::Entry* e = find(linear >> shift, shift, pcid, vpid)) {
        e->last_use = ++clock_;
        return true;
      }
    return false;
  }
  void insert(uint64_t linear, unsigned shift, uint16_t pcid, bool global, uint16_t vpid) {
    const uint64_t vpn = linear >> shift;
    if (Tlb::Entry* e = find(vpn, shift, pcid, vpid)) {
      e->last_use = ++clock_;
      e->global = global;
      e->pcid = pcid;
      return;
    }
    Tlb::Entry* set = &entries_[(vpn & (sets_ - 1)) * ways_];
    Tlb::Entry* victim = &set[0];
    for (unsigned w = 0; w < ways_; ++w) {
      if (!set[w].valid) { victim = &set[w]; break; }
      if (set[w].last_use < victim->last_use) victim = &set[w];
    }
    if (victim->valid) drop(*victim);
    *victim = Tlb::Entry{vpn, pcid, vpid, static_cast<uint8_t>(shift), global, true, true, ++clock_};
  }
  void invalidate_page(uint64_t linear, uint16_t pcid, uint16_t vpid) {
    for (unsigned shift : shifts_) {
      const uint64_t vpn = linear >> shift;
      Tlb::Entry* set = &entries_[(vpn & (sets_ - 1)) * ways_];
      for (unsigned w = 0; w < ways_; ++w) {
        Tlb::Entry& e = set[w];
        if (e.valid && e.vpn == vpn && e.page_shift == shift && e.vpid == vpid && (e.global || e.pcid == pcid))
          drop(e);
      }
    }
  }
  void flush(bool include_global, bool all_pcids, uint16_t pcid, uint16_t vpid) {
    for (Tlb::Entry& e : entries_)
      if (e.valid && e.vpid == vpid && (e.global ? include_global : (all_pcids || e.pcid == pcid))) drop(e);
  }
  unsigned valid_entries() const {
    unsigned n = 0;
    for (const Tlb::Entry& e : entries_) n += e.valid;
    return n;
  }

 private:
  Tlb::Entry* find(uint64_t vpn, unsigned shift, uint16_t pcid, uint16_t vpid) {
    Tlb::Entry* set = &entries_[(vpn & (sets_ - 1)) * ways_];
    for (unsigned w = 0; w < ways_; ++w) {
      Tlb::Entry& e = set[w];
      if (e.valid && e.vpn == vpn && e.page_shift == shift && e.vpid == vpid && (e.global || e.pcid == pcid))
        return &e;
    }
    return nullptr;
  }
  void drop(Tlb::Entry& e) {
    e.valid = false;
    evicted.emplace_back(e.vpn << e.page_shift, uint64_t{1} << e.page_shift);
  }
  unsigned sets_, ways_;
  std::vector<unsigned> shifts_;  // largest first
  std::vector<Tlb::Entry> entries_;
  uint64_t clock_ = 0;
};

TEST(TlbTest, AgreesWithAWayByWaySearchOnARandomStream) {
  // 16 sets x 4 ways of 4 KiB and 2 MiB pages; 96 pages in two 2 MiB regions, 3 PCIDs, 2 VPIDs, so
  // that hits, misses, evictions, global entries and every kind of invalidation mix.
  Tlb tlb(TlbGeometry{64, 4, {kPage4K, kPage2M}});
  ReferenceTlb reference(64, 4, {21, 12});
  std::vector<std::pair<uint64_t, uint64_t>> evicted;
  tlb.set_evict_callback([&](uint64_t base, uint64_t size) { evicted.emplace_back(base, size); });
  std::mt19937_64 rng(11);
  size_t checked = 0;  // evictions compared so far
  for (unsigned k = 0; k < 200000; ++k) {
    const uint64_t linear = (rng() % 2) * kPage2M + (rng() % 48) * kPage4K + (rng() % 4096);
    const auto pcid = static_cast<uint16_t>(rng() % 3), vpid = static_cast<uint16_t>(rng() % 2);
    const unsigned op = rng() % 100;
    if (op < 60) {
      ASSERT_EQ(tlb.lookup(linear, pcid, vpid), reference.lookup(linear, pcid, vpid)) << "lookup " << k;
    } else if (op < 95) {
      const bool large = rng() % 8 == 0, global = rng() % 6 == 0;
      tlb.insert(linear, large ? kPage2M : kPage4K, pcid, global, vpid);
      reference.insert(linear, large ? 21 : 12, pcid, global, vpid);
    } else if (op < 99) {
      tlb.invalidate_page(linear, pcid, vpid);
      reference.invalidate_page(linear, pcid, vpid);
    } else {
      const bool include_global = rng() % 2, all_pcids = rng() % 2;
      tlb.flush(include_global, all_pcids, pcid, vpid);
      reference.flush(include_global, all_pcids, pcid, vpid);
    }
    // What this operation evicted (a flush visits the entries in another order than the reference).
    std::vector<std::pair<uint64_t, uint64_t>> now(evicted.begin() + checked, evicted.end());
    std::vector<std::pair<uint64_t, uint64_t>> expected(reference.evicted.begin() + checked, reference.evicted.end());
    std::sort(now.begin(), now.end());
    std::sort(expected.begin(), expected.end());
    ASSERT_EQ(now, expected) << "operation " << k;
    checked = evicted.size();
  }
  EXPECT_EQ(tlb.valid_entries(), reference.valid_entries());
  EXPECT_GT(evicted.size(), 10000u);  // the stream did evict and invalidate, not only hit
}

TEST(TlbTest, BadGeometryIsRefused) {
  EXPECT_THROW(Tlb(TlbGeometry{48, 5, {kPage4K}}), std::invalid_argument);
  EXPECT_THROW(Tlb(TlbGeometry{16, 4, {3000}}), std::invalid_argument);
}

}  // namespace
}  // namespace pgsim::models

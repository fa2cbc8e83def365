// The set-associative cache hierarchy that page-walk references and data accesses go through, and
// the core's data-access observer that feeds it: which accesses the core reports, and the misses a
// loop over a working set smaller or larger than the L1 makes.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "models/memory/cache_hierarchy.h"
#include "tests/isa/harness.h"

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
  EXPECT_EQ(caches.levels()[0].walk.hits, 1u);
  EXPECT_EQ(caches.levels()[0].walk.misses, 4u);
  EXPECT_EQ(caches.levels()[1].walk.hits, 1u);
  EXPECT_EQ(caches.levels()[0].data.hits + caches.levels()[0].data.misses, 0u);
}

TEST(CacheHierarchyTest, DataAccessesCountApartAndCostBeyondTheL1Hit) {
  CacheHierarchy caches({{"l1d", 256, 2, 64, 4}, {"l2", 512, 2, 64, 12}}, 100);
  EXPECT_EQ(caches.data_access_extra_cycles(0x1000, 8), 100u - 4);  // cold
  EXPECT_EQ(caches.data_access_extra_cycles(0x1008, 8), 0u);        // an L1 hit costs nothing extra
  EXPECT_EQ(caches.access(0x1010), 4u);                             // a walk reference shares the lines
  // 8 bytes at 0x103C touch two lines: 0x1000 (L1 hit) and 0x1040 (cold).
  EXPECT_EQ(caches.data_access_extra_cycles(0x103C, 8), 100u - 4);
  EXPECT_EQ(caches.levels()[0].data.hits, 2u);
  EXPECT_EQ(caches.levels()[0].data.misses, 2u);
  EXPECT_EQ(caches.levels()[0].walk.hits, 1u);
  EXPECT_EQ(caches.levels()[0].walk.misses, 0u);
}

TEST(CacheHierarchyTest, HintedHitsAgreeWithAnLruSearchOnARandomStream) {
  // 8 sets x 4 ways, 96 lines in play (more lines than hint slots), accesses of 1 to 8 bytes that
  // may straddle two lines; the reference keeps each set's lines in order of use.
  CacheHierarchy caches({{"l1d", 8 * 4 * 64, 4, 64, 4}}, 100);
  std::vector<std::vector<uint64_t>> sets(8);
  uint64_t hits = 0, misses = 0;
  auto reference = [&](uint64_t line) {
    std::vector<uint64_t>& set = sets[line % 8];
    const auto it = std::find(set.begin(), set.end(), line);
    const bool hit = it != set.end();
    if (hit) set.erase(it);
    else if (set.size() == 4) set.erase(set.begin());
    set.push_back(line);
    ++(hit ? hits : misses);
    return hit;
  };
  std::mt19937_64 rng(5);
  for (unsigned k = 0; k < 200000; ++k) {
    const uint64_t paddr = (rng() % 96) * 64 + rng() % 64;
    const unsigned size = 1 + rng() % 8;
    if (rng() % 4 == 0) {  // a page-walk reference: one line, the full latency
      ASSERT_EQ(caches.access(paddr), reference(paddr / 64) ? 4u : 100u) << k;
      continue;
    }
    uint64_t expected = 0;
    for (uint64_t line = paddr / 64; line <= (paddr + size - 1) / 64; ++line) expected += reference(line) ? 0 : 96;
    SetAssociativeCache& l1 = *caches.first_level();
    const bool hinted = l1.hits_hinted(paddr, size, CacheRequester::Data);  // as the CPU asks first
    ASSERT_EQ(hinted ? 0 : caches.data_access_extra_cycles(paddr, size), expected) << k;
  }
  const SetAssociativeCache& l1 = caches.levels()[0];
  EXPECT_EQ(l1.data.hits + l1.walk.hits, hits);
  EXPECT_EQ(l1.data.misses + l1.walk.misses, misses);
  EXPECT_GT(misses, 50000u);
  EXPECT_GT(hits, 50000u);
}

TEST(CacheHierarchyTest, AbsentLevelsAndInconsistentLatencies) {
  CacheHierarchy no_l2({{"l1d", 256, 2, 64, 4}, {"l2", 0, 2, 64, 12}}, 100);  // size 0: no such cache
  ASSERT_EQ(no_l2.levels().size(), 1u);
  EXPECT_EQ(no_l2.access(0x1000), 100u);
  EXPECT_THROW(CacheHierarchy({{"l1d", 256, 2, 64, 12}, {"l2", 512, 2, 64, 4}}, 100), std::invalid_argument);
  EXPECT_THROW(CacheHierarchy({{"l1d", 256, 2, 64, 4}}, 3), std::invalid_argument);
  EXPECT_THROW(CacheHierarchy({{"l1d", 256, 2, 64, 4}, {"l2", 512, 2, 128, 12}}, 100), std::invalid_argument);
}

TEST(CacheHierarchyTest, BadGeometryIsRefused) {
  EXPECT_THROW(SetAssociativeCache({"bad", 1000, 3, 64, 1}), std::invalid_argument);
  EXPECT_THROW(SetAssociativeCache({"bad", 1024, 2, 48, 1}), std::invalid_argument);
}

// ---- the core's data accesses -------------------------------------------------------------------

struct RecordedAccess {
  uint64_t paddr;
  unsigned size;
  bool write;
  bool operator==(const RecordedAccess&) const = default;
};

struct AccessRecorder : isa::DataAccessObserver {
  void on_data_access(uint64_t paddr, unsigned size, bool write) override { accesses.push_back({paddr, size, write}); }
  std::vector<RecordedAccess> accesses;
};

// Runs `code` in 64-bit mode at CPL 0 for `instructions` and returns the data accesses the core
// reported; the code sits at 0x1000 (its fetches are not data accesses), the stack below 0x8000.
std::vector<RecordedAccess> data_accesses(const std::vector<uint8_t>& code, uint64_t instructions,
                                          uint64_t rbx = 0x4000, uint64_t rcx = 0) {
  test::Machine m;
  test::make_long64(m.state(), 0);
  m.load_code(0x1000, code);
  m.reg(isa::RBX) = rbx;
  m.reg(isa::RCX) = rcx;
  m.reg(isa::RSI) = 0x5000;
  m.reg(isa::RDI) = 0x6000;
  m.reg(isa::RSP) = 0x8000;
  AccessRecorder recorder;
  m.core.set_data_access_observer(&recorder);
  EXPECT_EQ(m.core.run(instructions), instructions);
  return recorder.accesses;
}

TEST(DataAccessObserverTest, LoadsStoresAndReadModifyWrite) {
  // mov rax, [rbx]; mov [rbx+8], eax; add [rbx+16], ax
  EXPECT_EQ(data_accesses({0x48, 0x8B, 0x03, 0x89, 0x43, 0x08, 0x66, 0x01, 0x43, 0x10}, 3),
            (std::vector<RecordedAccess>{{0x4000, 8, false}, {0x4008, 4, true}, {0x4010, 2, false}, {0x4010, 2, true}}));
}

TEST(DataAccessObserverTest, StackPushesAndPops) {
  // push rax; pop rcx
  EXPECT_EQ(data_accesses({0x50, 0x59}, 2), (std::vector<RecordedAccess>{{0x7FF8, 8, true}, {0x7FF8, 8, false}}));
}

TEST(DataAccessObserverTest, EachStringIteration) {
  // rep movsb with RCX = 3: a read of [rsi] and a write of [rdi] per iteration
  EXPECT_EQ(data_accesses({0xF3, 0xA4}, 1, 0x4000, 3),
            (std::vector<RecordedAccess>{{0x5000, 1, false}, {0x6000, 1, true}, {0x5001, 1, false},
                                         {0x6001, 1, true}, {0x5002, 1, false}, {0x6002, 1, true}}));
}

TEST(DataAccessObserverTest, AnAccessAcrossAPageIsOnePerPage) {
  // mov rax, [rbx] at 0x4FFC: 4 bytes on each page
  EXPECT_EQ(data_accesses({0x48, 0x8B, 0x03}, 1, 0x4FFC),
            (std::vector<RecordedAccess>{{0x4FFC, 4, false}, {0x5000, 4, false}}));
}

TEST(DataAccessObserverTest, InstructionFetchesAreNotDataAccesses) {
  EXPECT_TRUE(data_accesses({0x48, 0x01, 0xC8, 0x90}, 2).empty());  // add rax, rcx; nop
}

// The platform's use of the observer (models/cpu): each access through the hierarchy.
struct CacheTimer : isa::DataAccessObserver {
  explicit CacheTimer(CacheHierarchy& c) : caches(c) {}
  void on_data_access(uint64_t paddr, unsigned size, bool) override {
    extra_cycles += caches.data_access_extra_cycles(paddr, size);
  }
  CacheHierarchy& caches;
  uint64_t extra_cycles = 0;
};

// `rounds` passes of one 8-byte load from each of `lines` consecutive 64-byte lines (a power of
// two) at 0x100000, through a 4 KiB 4-way L1 (16 sets) and a 16 KiB 4-way L2, memory 100 cycles.
CacheHierarchy run_line_loop(uint64_t lines, uint64_t rounds, uint64_t* extra_cycles) {
  CacheHierarchy caches({{"l1d", 4096, 4, 64, 4}, {"l2", 16384, 4, 64, 12}}, 100);
  test::Machine m;
  test::make_long64(m.state(), 3);
  // L: mov rax, [rbx+rsi]; add rsi, 64; and rsi, rdx; dec ecx; jnz L
  m.load_code(0x1000, {0x48, 0x8B, 0x04, 0x33, 0x48, 0x83, 0xC6, 0x40, 0x48, 0x21, 0xD6, 0xFF, 0xC9, 0x75, 0xF1});
  m.reg(isa::RBX) = 0x100000;
  m.reg(isa::RSI) = 0;
  m.reg(isa::RDX) = lines * 64 - 1;
  m.reg(isa::RCX) = lines * rounds;
  CacheTimer timer(caches);
  m.core.set_data_access_observer(&timer);
  EXPECT_EQ(m.core.run(5 * lines * rounds), 5 * lines * rounds);
  EXPECT_EQ(m.reg(isa::RCX), 0u);
  *extra_cycles = timer.extra_cycles;
  return caches;
}

TEST(DataAccessObserverTest, WorkingSetSmallerThanL1MissesOncePerLine) {
  uint64_t extra = 0;
  CacheHierarchy caches = run_line_loop(32, 4, &extra);  // 2 KiB: 2 lines in each of the 16 sets
  EXPECT_EQ(caches.levels()[0].data.misses, 32u);
  EXPECT_EQ(caches.levels()[0].data.hits, 32u * 3);
  EXPECT_EQ(caches.levels()[1].data.misses, 32u);
  EXPECT_EQ(caches.levels()[1].data.hits, 0u);
  EXPECT_EQ(extra, 32u * (100 - 4));
  EXPECT_EQ(caches.levels()[0].walk.hits + caches.levels()[0].walk.misses, 0u);
}

TEST(DataAccessObserverTest, WorkingSetLargerThanL1MissesEveryTime) {
  uint64_t extra = 0;
  // 8 KiB: 8 lines in each 4-way L1 set, so LRU evicts each line before its reuse; the L2 (64 sets
  // of 4 ways) holds all 128 lines, 2 a set, after the first round.
  CacheHierarchy caches = run_line_loop(128, 3, &extra);
  EXPECT_EQ(caches.levels()[0].data.misses, 128u * 3);
  EXPECT_EQ(caches.levels()[0].data.hits, 0u);
  EXPECT_EQ(caches.levels()[1].data.misses, 128u);
  EXPECT_EQ(caches.levels()[1].data.hits, 128u * 2);
  EXPECT_EQ(extra, 128u * (100 - 4) + 128u * 2 * (12 - 4));
}

}  // namespace
}  // namespace pgsim::models

// The set-associative cache hierarchy that page-walk references and data accesses go through, and
// the core's data-access observer that feeds it: which accesses the core reports, and the misses a
// loop over a working set smaller or larger than the L1 makes.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "models/memory/cache_hierarchy.h"
#include "models/memory/data_access_timer.h"
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

TEST(CacheHierarchyTest, FilteredHitsAgreeWithAnLruSearchOnARandomStream) {
  // The data accesses made as the core makes them, through the timer's filter (an access within a
  // line of its table is counted as a hit, without a call), against a second hierarchy told of every
  // access. Every line the table holds must be its set's most recently used (the reference keeps
  // each L1 set's lines in order of use), and the counts and cycles must be the second's. An L1 of
  // 8 sets of 4 ways, then a direct-mapped one of 24 sets (whose victim is its set's most recently
  // used line, and whose lines of a set do not share an entry of the table).
  for (const auto [sets_count, ways] : {std::pair{8u, 4u}, std::pair{24u, 1u}}) {
    const std::vector<CacheGeometry> geometry = {{"l1d", sets_count * ways * 64, ways, 64, 4},
                                                 {"l2", 16 * 4 * 64, 4, 64, 12}};
    CacheHierarchy caches(geometry, 100), told(geometry, 100);
    uint64_t cycles = 0, told_cycles = 0;
    DataAccessTimer timer(caches, cycles);
    const isa::DataAccessFilter filter = timer.filter();
    std::vector<std::vector<uint64_t>> sets(sets_count);
    auto reference = [&](uint64_t line) {
      std::vector<uint64_t>& set = sets[line % sets_count];
      const auto it = std::find(set.begin(), set.end(), line);
      if (it != set.end()) set.erase(it);
      else if (set.size() == ways) set.erase(set.begin());
      set.push_back(line);
    };
    std::mt19937_64 rng(7);
    uint64_t answered = 0;
    for (unsigned k = 0; k < 200000; ++k) {
      // Mostly a few lines again (a loop's stack and tables), sometimes any of 96 (more lines than
      // table entries), with accesses of 1 to 8 bytes that may straddle two lines.
      const uint64_t line_in_play = rng() % 4 == 0 ? rng() % 96 : 40 + rng() % 6;
      const uint64_t paddr = line_in_play * 64 + rng() % 64;
      const unsigned size = 1 + rng() % 8;
      if (rng() % 8 == 0) {  // a page-walk reference: one line
        reference(paddr / 64);
        ASSERT_EQ(caches.access(paddr), told.access(paddr)) << k;
      } else {
        for (uint64_t l = paddr / 64; l <= (paddr + size - 1) / 64; ++l) reference(l);
        told_cycles += told.data_access_extra_cycles(paddr, size);
        const uint64_t line = paddr >> filter.shift;
        if (filter.lines[line & filter.mask] == line && ((paddr + size - 1) >> filter.shift) == line) {
          ++*filter.count;
          ++answered;
        } else {
          timer.on_data_access(paddr, size, false);
        }
      }
      ASSERT_EQ(cycles, told_cycles) << ways << " ways, access " << k;
      for (uint64_t l = 0; l < 96; ++l)
        if (filter.lines[l & filter.mask] == l)
          ASSERT_EQ(sets[l % sets_count].back(), l) << ways << " ways, line " << l << ", access " << k;
    }
    for (size_t level = 0; level < 2; ++level) {
      const SetAssociativeCache& a = caches.levels()[level];
      const SetAssociativeCache& b = told.levels()[level];
      EXPECT_EQ(a.data.hits, b.data.hits) << ways << " ways, level " << level;
      EXPECT_EQ(a.data.misses, b.data.misses) << ways << " ways, level " << level;
      EXPECT_EQ(a.walk.hits, b.walk.hits) << ways << " ways, level " << level;
      EXPECT_EQ(a.walk.misses, b.walk.misses) << ways << " ways, level " << level;
    }
    EXPECT_GT(answered, 40000u) << ways;
    EXPECT_GT(caches.levels()[0].data.misses, 20000u) << ways;
  }
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

// Forwards to a DataAccessTimer, with its filter, and counts the calls the core makes.
struct CountedTimer : isa::DataAccessObserver {
  CountedTimer(CacheHierarchy& caches, uint64_t& cycles) : timer(caches, cycles) {}
  void on_data_access(uint64_t paddr, unsigned size, bool write) override {
    ++calls;
    timer.on_data_access(paddr, size, write);
  }
  isa::DataAccessFilter filter() const override { return timer.filter(); }
  DataAccessTimer timer;
  uint64_t calls = 0;
};

TEST(DataAccessObserverTest, TheCoreCountsTheHitsTheTimersFilterAnswers) {
  // L: mov rax, [rbx+rsi]; mov [rbx+rsi+0x840], rax; add rsi, 8; and rsi, rdx; dec ecx; jnz L: eight
  // loads and eight stores a line, the store's line in the set after the load's, over 32 lines
  // (fits the 4 KiB L1) and then over 256 (does not), once told of every access and once through
  // the data-access timer's filter.
  const std::vector<uint8_t> code = {0x48, 0x8B, 0x04, 0x33, 0x48, 0x89, 0x84, 0x33, 0x40, 0x08, 0x00, 0x00,
                                     0x48, 0x83, 0xC6, 0x08, 0x48, 0x21, 0xD6, 0xFF, 0xC9, 0x75, 0xE9};
  for (const uint64_t bytes : {uint64_t{2048}, uint64_t{16384}}) {
    const std::vector<CacheGeometry> geometry = {{"l1d", 4096, 4, 64, 4}, {"l2", 65536, 4, 64, 12}};
    CacheHierarchy told(geometry, 100), filtered(geometry, 100);
    uint64_t cycles = 0;
    CacheTimer everything(told);
    CountedTimer timer(filtered, cycles);
    for (isa::DataAccessObserver* observer : {static_cast<isa::DataAccessObserver*>(&everything),
                                              static_cast<isa::DataAccessObserver*>(&timer)}) {
      test::Machine m;
      test::make_long64(m.state(), 3);
      m.load_code(0x1000, code);
      m.reg(isa::RBX) = 0x100000;
      m.reg(isa::RDX) = bytes - 1;
      m.reg(isa::RCX) = 3 * bytes / 8;
      m.core.set_data_access_observer(observer);
      ASSERT_EQ(m.core.run(6 * 3 * bytes / 8), 6 * 3 * bytes / 8);
    }
    EXPECT_EQ(cycles, everything.extra_cycles) << bytes;
    for (size_t level = 0; level < 2; ++level) {
      EXPECT_EQ(filtered.levels()[level].data.hits, told.levels()[level].data.hits) << bytes << " " << level;
      EXPECT_EQ(filtered.levels()[level].data.misses, told.levels()[level].data.misses) << bytes << " " << level;
    }
    const uint64_t accesses = 2 * 3 * bytes / 8;
    EXPECT_EQ(told.levels()[0].data.hits + told.levels()[0].data.misses, accesses);
    // Within a line, each access after the first is to its set's most recently used line.
    EXPECT_LE(timer.calls, accesses / 8 + accesses / 16) << bytes;
  }
}

}  // namespace
}  // namespace pgsim::models

// The MMU model on real 4-level page tables: references per walk, page-walk caches, PCIDs,
// INVLPG and the TLB geometry seen through translate().
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "isa/core.h"
#include "isa/system/paging.h"
#include "tests/vmm/walking_translator.h"
#include "models/mmu/mmu.h"

namespace pgsim::models {
namespace {

// Plain RAM for the page tables, and no devices.
class FlatMemory : public isa::PhysicalBus, public isa::IoBus {
 public:
  explicit FlatMemory(size_t size) : bytes(size, 0) {}
  uint8_t* host_frame(uint64_t paddr) override { return paddr < bytes.size() ? &bytes[paddr & ~0xFFFull] : nullptr; }
  uint64_t read(uint64_t paddr, unsigned size) override {
    uint64_t v = 0;
    std::memcpy(&v, &bytes.at(paddr), size);
    return v;
  }
  void write(uint64_t paddr, unsigned size, uint64_t value) override { std::memcpy(&bytes.at(paddr), &value, size); }
  uint32_t in(uint16_t, unsigned) override { return ~0u; }
  void out(uint16_t, unsigned, uint32_t) override {}
  void put64(uint64_t paddr, uint64_t v) { write(paddr, 8, v); }
  std::vector<uint8_t> bytes;
};

constexpr uint64_t kPml4 = 0x1000, kPdpt = 0x2000, kPd = 0x3000, kPt = 0x4000;
constexpr uint64_t kBase = 0x400000;  // PD entry 2
constexpr uint64_t kPresentWritable = 0x3, kGlobal = 0x100;

// Maps kBase + i * 4 KiB to 0x100000 + i * 4 KiB for i < 512; the first page is global.
void build_tables(FlatMemory& m) {
  m.put64(kPml4, kPdpt | kPresentWritable);
  m.put64(kPdpt, kPd | kPresentWritable);
  m.put64(kPd + 2 * 8, kPt | kPresentWritable);
  for (uint64_t i = 0; i < 512; ++i)
    m.put64(kPt + i * 8, (0x100000 + i * 0x1000) | kPresentWritable | (i == 0 ? kGlobal : 0));
}

isa::CpuState long_mode_state() {
  isa::CpuState s;
  s.cr0 = isa::CR0_PE | isa::CR0_PG;
  s.cr4 = isa::CR4_PAE | isa::CR4_PGE;
  s.efer = isa::EFER_LME | isa::EFER_LMA;
  s.cr3 = kPml4;
  s.seg[isa::CS].attr = 0x209B;  // 64-bit code, DPL 0
  return s;
}

MmuParams no_tlb_no_walk_cache() {
  MmuParams p;
  p.l1i.entries = p.l1d.entries = p.l2.entries = 0;
  p.walk_cache_entries = {0, 0, 0, 0};
  p.memory_latency = 100;
  return p;
}

isa::Translation read(Mmu& mmu, const isa::CpuState& s, uint64_t va) {
  return mmu.translate(s, va, isa::AccessKind::Read, false, isa::AccessOrigin::Instruction);
}

TEST(MmuTest, WithoutTlbEveryAccessWalksFourLevels) {
  FlatMemory mem(1 << 22);
  build_tables(mem);
  Mmu mmu(no_tlb_no_walk_cache(), mem);
  const isa::CpuState s = long_mode_state();
  for (int round = 0; round < 2; ++round)
    for (uint64_t i = 0; i < 10; ++i) {
      isa::Translation t = read(mmu, s, kBase + i * 0x1000 + 0x10);
      ASSERT_TRUE(t.ok);
      EXPECT_EQ(t.paddr, 0x100000 + i * 0x1000 + 0x10);
      EXPECT_FALSE(t.cacheable);  // the core must not keep what no TLB holds
    }
  EXPECT_EQ(mmu.counters().walks, 20u);
  EXPECT_EQ(mmu.counters().walk_refs, 80u);
  EXPECT_EQ(mmu.counters().walk_cycles, 80u * 100);
  EXPECT_EQ(mmu.counters().l1d_misses, 20u);
  EXPECT_EQ(mmu.counters().l1d_hits, 0u);
}

TEST(MmuTest, PageWalkCachesSkipTheUpperLevels) {
  FlatMemory mem(1 << 22);
  build_tables(mem);
  MmuParams p = no_tlb_no_walk_cache();
  p.walk_cache_entries = {32, 4, 2, 0};
  Mmu mmu(p, mem);
  const isa::CpuState s = long_mode_state();
  ASSERT_TRUE(read(mmu, s, kBase).ok);
  EXPECT_EQ(mmu.counters().walk_refs, 4u);  // cold: PML4E, PDPTE, PDE, PTE
  ASSERT_TRUE(read(mmu, s, kBase + 0x5000).ok);
  EXPECT_EQ(mmu.counters().walk_refs, 5u);  // the PDE cache covers the 2 MiB region: PTE only
  EXPECT_EQ(mmu.counters().walk_cache_hits, 1u);
}

TEST(MmuTest, FaultsComeFromTheWalk) {
  FlatMemory mem(1 << 22);
  build_tables(mem);
  Mmu mmu(no_tlb_no_walk_cache(), mem);
  isa::Translation t = read(mmu, long_mode_state(), 0x800000);  // PD entry 4: not present
  EXPECT_FALSE(t.ok);
  EXPECT_EQ(t.fault.vector, isa::PF_);
  EXPECT_EQ(t.fault.cr2, 0x800000u);
}

// An L1 miss that hits the L2 TLB still walks, and the walk's global bit goes into the L2 entry:
// the guest set G in a PTE without INVLPG, and the entry then survives a non-global flush.
TEST(MmuTest, AnL2HitTakesTheGlobalBitOfTheWalk) {
  FlatMemory mem(1 << 22);
  build_tables(mem);
  MmuParams p;
  p.l1d = {1, 1, {kPage4K}};  // one entry: each other page evicts it
  p.l2 = {64, 4, {kPage4K}};
  Mmu mmu(p, mem);
  const isa::CpuState s = long_mode_state();
  const uint64_t one = kBase + 0x1000, two = kBase + 0x2000;
  ASSERT_TRUE(read(mmu, s, one).ok);
  ASSERT_TRUE(read(mmu, s, two).ok);
  EXPECT_EQ(mmu.counters().walks, 2u);
  mem.put64(kPt + 8, 0x101000 | kPresentWritable | kGlobal);
  ASSERT_TRUE(read(mmu, s, one).ok);
  EXPECT_EQ(mmu.counters().l2_hits, 1u);
  EXPECT_EQ(mmu.counters().walks, 2u);

  mmu.flush(false);  // MOV CR3: the non-global entries go
  ASSERT_TRUE(read(mmu, s, two).ok);
  EXPECT_EQ(mmu.counters().walks, 3u);
  ASSERT_TRUE(read(mmu, s, one).ok);
  EXPECT_EQ(mmu.counters().l2_hits, 2u);
  EXPECT_EQ(mmu.counters().walks, 3u);
}

TEST(MmuTest, GeometryDecidesL1Misses) {
  FlatMemory mem(1 << 22);
  build_tables(mem);
  MmuParams p;
  p.l1d = {64, 4, {kPage4K}};
  Mmu mmu(p, mem);
  const isa::CpuState s = long_mode_state();
  auto rounds = [&](unsigned n) {
    for (unsigned r = 0; r < n; ++r)
      for (uint64_t i = 0; i < 72; ++i) ASSERT_TRUE(read(mmu, s, kBase + i * 0x1000).ok);
  };
  rounds(1);
  EXPECT_EQ(mmu.counters().l1d_misses, 72u);
  EXPECT_EQ(mmu.counters().l2_misses, 72u);
  rounds(2);
  // 72 pages over 16 sets of 4 ways: sets 0-7 hold 5 pages and miss on every access.
  EXPECT_EQ(mmu.counters().l1d_misses, 72u + 2 * 40);
  EXPECT_EQ(mmu.counters().l2_hits, 2u * 40);  // the L2 TLB holds all 72
  EXPECT_EQ(mmu.counters().walks, 72u);
  EXPECT_EQ(mmu.counters().l2_hit_cycles, 2u * 40 * p.l2_hit_cycles);
}

TEST(MmuTest, InvlpgPcidsAndGlobalPages) {
  FlatMemory mem(1 << 22);
  build_tables(mem);
  isa::Core core(mem, mem);
  Mmu mmu(MmuParams{}, mem);
  mmu.attach(&core);
  isa::CpuState& s = core.state();
  s = long_mode_state();
  s.cr4 |= isa::CR4_PCIDE;
  s.cr3 = kPml4 | 1;  // PCID 1
  ASSERT_TRUE(read(mmu, s, kBase + 0x1000).ok);  // not global
  ASSERT_TRUE(read(mmu, s, kBase).ok);           // global
  EXPECT_EQ(mmu.counters().l1d_misses, 2u);

  s.cr3 = kPml4 | 2;  // MOV CR3 to PCID 2: its non-global entries go, PCID 1's stay
  mmu.flush(false);
  ASSERT_TRUE(read(mmu, s, kBase).ok);
  EXPECT_EQ(mmu.counters().l1d_hits, 1u);  // the global page is shared
  ASSERT_TRUE(read(mmu, s, kBase + 0x1000).ok);
  EXPECT_EQ(mmu.counters().l1d_misses, 3u);  // PCID 1's entry does not serve PCID 2
  s.cr3 = kPml4 | 1;
  mmu.flush(false);  // flushes PCID 1's non-global entries
  ASSERT_TRUE(read(mmu, s, kBase + 0x1000).ok);
  EXPECT_EQ(mmu.counters().l1d_misses, 4u);

  mmu.invalidate_page(kBase + 0x1000);
  ASSERT_TRUE(read(mmu, s, kBase + 0x1000).ok);
  EXPECT_EQ(mmu.counters().l1d_misses, 5u);
  EXPECT_EQ(mmu.counters().l2_misses, 5u);  // INVLPG dropped it from the L2 TLB too

  mmu.flush(true);  // CR4.PGE toggled: even global entries go
  ASSERT_TRUE(read(mmu, s, kBase).ok);
  EXPECT_EQ(mmu.counters().l1d_misses, 6u);
}

// PD entry 4 maps 0x800000 as one 2 MiB page at physical 0x200000.
constexpr uint64_t kLargeBase = 0x800000;
void map_large_page(FlatMemory& m) { m.put64(kPd + 4 * 8, 0x200000 | kPresentWritable | 0x80 /* PS */); }

// Reads the first byte of each of `n` 4 KiB pieces of the 2 MiB page.
void read_large_page(Mmu& mmu, const isa::CpuState& s, unsigned n, bool expect_cacheable) {
  for (uint64_t i = 0; i < n; ++i) {
    const isa::Translation t = read(mmu, s, kLargeBase + i * 0x1000);
    ASSERT_TRUE(t.ok);
    EXPECT_EQ(t.paddr, 0x200000 + i * 0x1000);
    EXPECT_EQ(t.cacheable, expect_cacheable);  // the core's soft TLB keeps only what the L1 holds
  }
}

// The tables above plus the 2 MiB page, and an MMU with the given data TLBs and no walk cache.
class LargePageTest : public ::testing::Test {
 protected:
  LargePageTest() : mem(1 << 22) {
    build_tables(mem);
    map_large_page(mem);
  }
  Mmu& make_mmu(TlbGeometry l1d, TlbGeometry l2) {
    MmuParams p = no_tlb_no_walk_cache();
    p.l1d = std::move(l1d);
    p.l2 = std::move(l2);
    built = std::make_unique<Mmu>(p, mem);
    return *built;
  }
  FlatMemory mem;
  std::unique_ptr<Mmu> built;
};

TEST_F(LargePageTest, A2MPageTheL1DoesNotHoldIsServedByTheL2) {
  Mmu& mmu = make_mmu({64, 4, {kPage4K}}, {64, 4, {kPage4K, kPage2M}});
  read_large_page(mmu, long_mode_state(), 100, false);
  EXPECT_EQ(mmu.counters().l1d_misses, 100u);
  EXPECT_EQ(mmu.counters().l1d_hits, 0u);
  EXPECT_EQ(mmu.counters().l2_misses, 1u);
  EXPECT_EQ(mmu.counters().l2_hits, 99u);
  EXPECT_EQ(mmu.counters().l2_hit_cycles, 99u * MmuParams().l2_hit_cycles);
  EXPECT_EQ(mmu.counters().walks, 1u);
  EXPECT_EQ(mmu.counters().walk_refs, 3u);  // PML4E, PDPTE, PDE (the leaf)
}

TEST_F(LargePageTest, A2MPageNoLevelHoldsWalksEveryTime) {
  Mmu& mmu = make_mmu({64, 4, {kPage4K}}, {64, 4, {kPage4K}});
  read_large_page(mmu, long_mode_state(), 100, false);
  EXPECT_EQ(mmu.counters().l2_misses, 100u);
  EXPECT_EQ(mmu.counters().walks, 100u);
  EXPECT_EQ(mmu.counters().walk_refs, 300u);
  EXPECT_EQ(mmu.l1d().valid_entries(), 0u);
  EXPECT_EQ(mmu.l2().valid_entries(), 0u);
}

TEST_F(LargePageTest, A2MPageTheL1HoldsHitsAfterOneWalk) {
  Mmu& mmu = make_mmu({64, 4, {kPage4K, kPage2M}}, {64, 4, {kPage4K}});
  read_large_page(mmu, long_mode_state(), 100, true);
  EXPECT_EQ(mmu.counters().l1d_misses, 1u);
  EXPECT_EQ(mmu.counters().l1d_hits, 99u);
  EXPECT_EQ(mmu.counters().walks, 1u);
  EXPECT_EQ(mmu.l1d().valid_entries(), 1u);
  EXPECT_EQ(mmu.l2().valid_entries(), 0u);
}

// The MMU remembers walks it makes again for translations its TLBs hold (models/mmu/walk_memo.h).
// On a random stream of accesses, page-table writes made without INVLPG and control-register
// changes, every translation and every accessed or dirty flag in memory must be what the
// functional walk gives on a second copy of memory that sees the same writes.
void run_against_the_walk(bool long_mode, uint32_t seed) {
  FlatMemory mem(1 << 22), ref(1 << 22);
  constexpr uint64_t kPages = 24;
  constexpr uint64_t kPd32 = 0x5000, kPt32 = 0x6000, kBase32 = 0x400000;  // PDE 1
  constexpr uint64_t kTablesEnd = 0x7000;  // every paging structure of both modes lies below
  std::mt19937 rng(seed);
  auto put = [&](uint64_t paddr, uint64_t v) {
    mem.write(paddr, long_mode ? 8 : 4, v);
    ref.write(paddr, long_mode ? 8 : 4, v);
  };
  const uint64_t leaf_table = long_mode ? kPt : kPt32;
  const uint64_t base = long_mode ? kBase : kBase32;
  const unsigned entry = long_mode ? 8 : 4;
  // User pages, writable, some without the dirty or accessed flag.
  auto random_leaf = [&](uint64_t i) {
    uint64_t v = (0x100000 + (i + rng() % 3) * 0x1000) | 0x1 | 0x4;
    if (rng() % 4) v |= 0x2;
    if (rng() % 2) v |= 0x20;
    if (rng() % 2) v |= 0x40;
    if (long_mode && rng() % 4 == 0) v |= isa::PTE_XD;
    if (rng() % 8 == 0) v &= ~0x1ull;  // not present
    return v;
  };
  isa::CpuState s = long_mode_state();
  if (long_mode) {
    put(kPml4, kPdpt | 0x7);
    put(kPdpt, kPd | 0x7);
    put(kPd + 2 * 8, kPt | 0x7);
    s.efer |= isa::EFER_NXE;
  } else {
    s.cr4 = isa::CR4_PSE;
    s.efer = 0;
    s.cr3 = kPd32;
    put(kPd32 + 1 * 4, kPt32 | 0x7);
  }
  for (uint64_t i = 0; i < kPages; ++i) put(leaf_table + i * entry, random_leaf(i));
  MmuParams p;
  p.l1d = {8, 2, {kPage4K, kPage2M, kPage4M, kPage1G}};
  p.l2 = {32, 4, {kPage4K, kPage2M, kPage4M, kPage1G}};
  Mmu mmu(p, mem);
  test::WalkingTranslator walk(ref);
  unsigned memo_candidates = 0;  // translations whose TLB lookup hit (no walk charged)
  for (unsigned step = 0; step < 20000; ++step) {
    const unsigned what = rng() % 100;
    if (what < 8) {  // a page-table write without INVLPG: a leaf, or the table's own entry
      if (what == 0) {
        const uint64_t at = long_mode ? kPd + 2 * 8 : kPd32 + 1 * 4;
        put(at, (long_mode ? kPt : kPt32) | (rng() % 2 ? 0x7 : 0x5) | (rng() % 2 ? 0x20 : 0));
      } else {
        const uint64_t i = rng() % kPages;
        put(leaf_table + i * entry, random_leaf(i));
      }
      continue;
    }
    if (what < 11) {  // a control change: CR0.WP, SMEP/SMAP, RFLAGS.AC
      const unsigned which = rng() % 4;
      if (which == 0) s.cr0 ^= isa::CR0_WP;
      if (which == 1) s.cr4 ^= isa::CR4_SMAP;
      if (which == 2) s.cr4 ^= isa::CR4_SMEP;
      if (which == 3) s.rflags ^= isa::AC;
      continue;
    }
    const isa::AccessKind kind = static_cast<isa::AccessKind>(rng() % 3);
    const bool user = rng() % 2;
    const isa::AccessOrigin origin = (!user && rng() % 8 == 0) ? isa::AccessOrigin::ImplicitSupervisor
                                                             : isa::AccessOrigin::Instruction;
    const uint64_t linear = base + (rng() % kPages) * 0x1000 + rng() % 0x1000;
    const uint64_t walks_before = mmu.counters().walks;
    const isa::Translation t = mmu.translate(s, linear, kind, user, origin);
    memo_candidates += mmu.counters().walks == walks_before;
    const isa::Translation w = walk.translate(s, linear, kind, user, origin);
    ASSERT_EQ(t.ok, w.ok) << "step " << step;
    if (t.ok) {
      ASSERT_EQ(t.paddr, w.paddr) << "step " << step;
    } else {
      ASSERT_EQ(t.fault.vector, w.fault.vector) << "step " << step;
      ASSERT_EQ(t.fault.error_code, w.fault.error_code) << "step " << step;
    }
    ASSERT_TRUE(std::equal(mem.bytes.begin(), mem.bytes.begin() + kTablesEnd, ref.bytes.begin()))
        << "accessed or dirty flags differ after step " << step;
  }
  EXPECT_GT(memo_candidates, 5000u);  // the stream did exercise translations the TLBs held
}

TEST(MmuTest, RememberedWalksAgreeWithTheWalkIn4LevelPaging) { run_against_the_walk(true, 1); }
TEST(MmuTest, RememberedWalksAgreeWithTheWalkIn32BitPaging) { run_against_the_walk(false, 2); }

}  // namespace
}  // namespace pgsim::models

// The MMU in nested-paging mode: the two-dimensional walk's references charged by dimension, what
// the nested TLB and the walk caches of both dimensions save, VPID tagging and the VMM's flushes,
// and EPT exits handed to the VMM.
#include <gtest/gtest.h>

#include "isa/system/ept.h"
#include "models/mmu/mmu.h"
#include "tests/isa/harness.h"

namespace pgsim::models {
namespace {

using test::FlatRam;

constexpr uint64_t kPresentWritable = 0x3;
constexpr uint64_t kHostOffset = 1ull << 30;  // guest-physical g lives at host-physical g + 1 GiB
constexpr uint64_t kGuestTables = 0x10000;    // guest PML4, PDPT, PD, PT: guest-physical
constexpr uint64_t kGuestData = 0x400000;     // guest-physical data pages: another 2 MiB region
constexpr uint64_t kLinear = 0x40600000;      // guest-linear: PD entry 3 of PDPT entry 1

unsigned idx(uint64_t linear, unsigned level) { return (linear >> (12 + 9 * (level - 1))) & 0x1FF; }

// A 4-level guest mapping kLinear + i * 4 KiB to kGuestData + i * 4 KiB (i < 512), on 4-level EPT
// of 4 KiB pages mapping guest-physical [0, 8 MiB) to host-physical [1 GiB, ...). The host keeps its
// own 4-level tables at host-physical 0x800000 mapping kLinear to host page 0x900000.
struct NestedSetup {
  FlatRam host{2ull << 30};
  isa::EptBuilder ept{host, 0x100000, 1 << 20};
  static constexpr uint64_t kHostTables = 0x800000, kHostData = 0x900000;

  NestedSetup() {
    ept.map(0, kHostOffset, 8 << 20, 1 << 12);
    auto guest_put = [&](uint64_t gpa, uint64_t v) { host.put<uint64_t>(gpa + kHostOffset, v); };
    const uint64_t pml4 = kGuestTables, pdpt = pml4 + 0x1000, pd = pdpt + 0x1000, pt = pd + 0x1000;
    guest_put(pml4 + idx(kLinear, 4) * 8, pdpt | kPresentWritable);
    guest_put(pdpt + idx(kLinear, 3) * 8, pd | kPresentWritable);
    guest_put(pd + idx(kLinear, 2) * 8, pt | kPresentWritable);
    for (uint64_t i = 0; i < 512; ++i) guest_put(pt + i * 8, (kGuestData + i * 0x1000) | kPresentWritable);
    // The host's own tables (root operation).
    const uint64_t h4 = kHostTables, h3 = h4 + 0x1000, h2 = h3 + 0x1000, h1 = h2 + 0x1000;
    host.put<uint64_t>(h4 + idx(kLinear, 4) * 8, h3 | kPresentWritable);
    host.put<uint64_t>(h3 + idx(kLinear, 3) * 8, h2 | kPresentWritable);
    host.put<uint64_t>(h2 + idx(kLinear, 2) * 8, h1 | kPresentWritable);
    host.put<uint64_t>(h1 + idx(kLinear, 1) * 8, kHostData | kPresentWritable);
  }
  static isa::CpuState state(uint64_t cr3) {
    isa::CpuState s;
    s.cr0 = isa::CR0_PE | isa::CR0_PG;
    s.cr4 = isa::CR4_PAE;
    s.efer = isa::EFER_LME | isa::EFER_LMA;
    s.cr3 = cr3;
    return s;
  }
  isa::CpuState guest = state(kGuestTables);
  isa::CpuState host_state = state(kHostTables);
};

MmuParams nothing_cached() {
  MmuParams p;
  p.l1i.entries = p.l1d.entries = p.l2.entries = 0;
  p.walk_cache_entries = {0, 0, 0, 0};
  p.nested_tlb.entries = 0;
  p.nested_walk_cache_entries = {0, 0, 0, 0};
  p.memory_latency = 100;
  return p;
}

isa::Translation read(Mmu& mmu, const isa::CpuState& s, uint64_t va) {
  return mmu.translate(s, va, isa::AccessKind::Read, false, isa::AccessOrigin::Instruction);
}

isa::Fault no_exit_expected(const isa::EptExit&) {
  ADD_FAILURE() << "unexpected EPT exit";
  return isa::Fault::gp(0);
}

TEST(NestedMmu, NothingCachedEveryWalkMakesTwentyFourReferences) {
  NestedSetup n;
  Mmu mmu(nothing_cached(), n.host);
  mmu.set_nested(n.ept.pointer(), 1, no_exit_expected);
  constexpr unsigned kWalks = 10, kGuestLevels = 4, kEptLevels = 4;
  for (uint64_t i = 0; i < kWalks; ++i) {
    const isa::Translation t = read(mmu, n.guest, kLinear + i * 0x1000 + 0x10);
    ASSERT_TRUE(t.ok);
    EXPECT_EQ(t.paddr, kHostOffset + kGuestData + i * 0x1000 + 0x10);
  }
  const MmuCounters& c = mmu.counters();
  EXPECT_EQ(c.walks, kWalks);
  EXPECT_EQ(c.walk_guest_refs, kWalks * kGuestLevels);
  EXPECT_EQ(c.walk_nested_refs, kWalks * (kGuestLevels + 1) * kEptLevels);
  EXPECT_EQ(c.walk_refs, kWalks * ((kGuestLevels + 1) * (kEptLevels + 1) - 1));  // 24 each
  EXPECT_EQ(c.walk_refs, c.walk_guest_refs + c.walk_nested_refs);
  EXPECT_EQ(c.walk_cycles, c.walk_refs * 100);  // memory.latency_cycles each, without caches
  EXPECT_EQ(c.nested_tlb_misses, kWalks * (kGuestLevels + 1));  // every translation looked up
  EXPECT_EQ(c.nested_tlb_hits, 0u);

  // Back in root operation the same linear address walks the host's tables: one dimension.
  mmu.clear_nested();
  const isa::Translation t = read(mmu, n.host_state, kLinear);
  ASSERT_TRUE(t.ok);
  EXPECT_EQ(t.paddr, NestedSetup::kHostData);
  EXPECT_EQ(c.walk_refs, kWalks * 24 + 4);
}

// With the nested TLB and both dimensions' walk caches on (the TLBs off, so every access walks):
//  1st walk, cold: the nested walk for the guest PML4E reads 4 EPT levels; the guest PDPT, PD and
//    PT share that guest-physical 2 MiB region, so the nested PDE cache leaves 1 EPT reference
//    each; the data page is in another 2 MiB region under the same EPT PDPTE: 2 references.
//    Nested 4 + 1 + 1 + 1 + 2 = 9 (not 20), guest 4: 13 references (not 24).
//  2nd walk, the next page: the guest PDE cache holds the host-physical page table, so only the
//    guest PTE is read and needs no nested walk; the new data page misses the nested TLB and hits
//    the nested PDE cache: 1 EPT reference. 2 references (not 24).
//  3rd walk, the first page again: guest PTE, and the data page hits the nested TLB: 1 reference.
TEST(NestedMmu, NestedTlbAndWalkCachesSaveExactly) {
  NestedSetup n;
  MmuParams p = nothing_cached();
  p.walk_cache_entries = {32, 4, 2, 0};
  p.nested_tlb = {16, 16, {kPage4K, kPage2M, kPage1G}};
  p.nested_walk_cache_entries = {32, 4, 2, 0};
  Mmu mmu(p, n.host);
  mmu.set_nested(n.ept.pointer(), 1, no_exit_expected);
  const MmuCounters& c = mmu.counters();
  struct Step {
    uint64_t linear;
    uint64_t guest_refs, nested_refs;
  };
  const Step steps[] = {{kLinear, 4, 9}, {kLinear + 0x1000, 1, 1}, {kLinear, 1, 0}};
  constexpr uint64_t kUncachedNested = 20, kUncachedTotal = 24;
  for (const Step& s : steps) {
    const uint64_t guest0 = c.walk_guest_refs, nested0 = c.walk_nested_refs, total0 = c.walk_refs;
    ASSERT_TRUE(read(mmu, n.guest, s.linear).ok);
    EXPECT_EQ(c.walk_guest_refs - guest0, s.guest_refs);
    EXPECT_EQ(c.walk_nested_refs - nested0, s.nested_refs);
    EXPECT_LT(c.walk_nested_refs - nested0, kUncachedNested);
    EXPECT_EQ(c.walk_refs - total0, s.guest_refs + s.nested_refs);
    EXPECT_LT(c.walk_refs - total0, kUncachedTotal);
  }
  EXPECT_EQ(c.walk_refs, 13u + 2 + 1);  // 56 fewer than the 72 of three uncached walks
  EXPECT_EQ(c.nested_tlb_hits, 1u);     // the 3rd walk's data page
  EXPECT_EQ(c.nested_tlb_misses, 5u + 1);  // the 1st walk's five addresses, the 2nd's data page
  EXPECT_EQ(c.walk_cache_hits, 2u);     // guest dimension: 2nd and 3rd walks
  EXPECT_EQ(c.nested_walk_cache_hits, 4u + 1);  // PDPT, PD, PT and data of the 1st; data of the 2nd
}

// TLB entries are tagged by VPID: a guest's translations survive a VM exit and entry, and do not
// serve the host; INVVPID drops them; with VPIDs off (0) host and guest share the tag and the VMM
// flushes it at every transition.
TEST(NestedMmu, VpidTaggingAndFlushes) {
  NestedSetup n;
  MmuParams p = nothing_cached();
  p.l1d = {64, 4, {kPage4K}};
  Mmu mmu(p, n.host);
  const MmuCounters& c = mmu.counters();
  auto walks_for = [&](const isa::CpuState& s) {
    const uint64_t before = c.walks;
    EXPECT_TRUE(read(mmu, s, kLinear).ok);
    return c.walks - before;
  };
  mmu.set_nested(n.ept.pointer(), 7, no_exit_expected);
  EXPECT_EQ(walks_for(n.guest), 1u);
  EXPECT_EQ(walks_for(n.guest), 0u);  // an L1 hit, tagged VPID 7
  mmu.clear_nested();
  EXPECT_EQ(walks_for(n.host_state), 1u);  // the host (VPID 0) does not see the guest's entry
  EXPECT_EQ(walks_for(n.host_state), 0u);
  mmu.set_nested(n.ept.pointer(), 7, no_exit_expected);
  EXPECT_EQ(walks_for(n.guest), 0u);  // survived the exit and the entry
  mmu.flush(false);                   // the guest's MOV CR3: its own VPID only
  EXPECT_EQ(walks_for(n.guest), 1u);
  mmu.clear_nested();
  EXPECT_EQ(walks_for(n.host_state), 0u);  // the host's entry was not touched
  mmu.invalidate_vpid(7);
  mmu.set_nested(n.ept.pointer(), 7, no_exit_expected);
  EXPECT_EQ(walks_for(n.guest), 1u);  // INVVPID dropped it

  // Without VPIDs: tag 0 for both sides, so the VMM flushes VPID 0 at entry and exit.
  mmu.clear_nested();
  mmu.invalidate_vpid(0);
  EXPECT_EQ(walks_for(n.host_state), 1u);
  mmu.set_nested(n.ept.pointer(), 0, no_exit_expected);
  mmu.invalidate_vpid(0);  // VM entry
  EXPECT_EQ(walks_for(n.guest), 1u);
  mmu.invalidate_vpid(0);  // VM exit
  mmu.clear_nested();
  EXPECT_EQ(walks_for(n.host_state), 1u);
}

TEST(NestedMmu, EptExitsGoToTheVmm) {
  NestedSetup n;
  Mmu mmu(nothing_cached(), n.host);
  EXPECT_THROW(mmu.set_nested(n.ept.pointer(), 1, nullptr), std::invalid_argument);
  isa::EptExit seen{};
  mmu.set_nested(n.ept.pointer(), 1, [&](const isa::EptExit& e) {
    seen = e;
    return isa::Fault::gp(0x48);  // whatever event the VMM turns into its VM exit
  });
  n.host.put<uint64_t>(n.ept.entry_address(kGuestData, 1), 0);  // the data page is unmapped
  const isa::Translation t = mmu.translate(n.guest, kLinear + 0x10, isa::AccessKind::Write, false,
                                           isa::AccessOrigin::Instruction);
  EXPECT_FALSE(t.ok);
  EXPECT_EQ(t.fault.error_code, 0x48u);
  EXPECT_EQ(seen.kind, isa::EptExitKind::Violation);
  EXPECT_EQ(seen.guest_physical, kGuestData + 0x10);
  EXPECT_EQ(seen.guest_linear, kLinear + 0x10);
  EXPECT_EQ(seen.qualification,
            isa::EPT_QUAL_WRITE | isa::EPT_QUAL_LINEAR_VALID | isa::EPT_QUAL_LINEAR_TRANSLATION);
  EXPECT_EQ(mmu.counters().ept_violations, 1u);
  EXPECT_EQ(mmu.counters().ept_misconfigurations, 0u);
  // A guest #PF is the guest's: no exit.
  seen = {};
  const isa::Translation pf = read(mmu, n.guest, 0x1000);
  EXPECT_FALSE(pf.ok);
  EXPECT_EQ(pf.fault.vector, isa::PF_);
  EXPECT_EQ(seen.kind, isa::EptExitKind::None);
}

// A guest 2 MiB page on 4 KiB EPT pages: the TLB entry covers 4 KiB, the smaller of the two.
TEST(NestedMmu, TlbEntriesCoverTheSmallerPage) {
  NestedSetup n;
  const uint64_t pd = kGuestTables + 0x2000;
  n.host.put<uint64_t>(pd + idx(kLinear, 2) * 8 + kHostOffset, kGuestData | kPresentWritable | 0x80);  // PS
  MmuParams p = nothing_cached();
  p.l1d = {64, 4, {kPage4K, kPage2M}};
  Mmu mmu(p, n.host);
  mmu.set_nested(n.ept.pointer(), 1, no_exit_expected);
  ASSERT_TRUE(read(mmu, n.guest, kLinear).ok);
  ASSERT_TRUE(read(mmu, n.guest, kLinear + 0x1000).ok);  // same guest 2 MiB page, another 4 KiB
  EXPECT_EQ(mmu.counters().walks, 2u);
  ASSERT_TRUE(read(mmu, n.guest, kLinear + 0x1000).ok);
  EXPECT_EQ(mmu.counters().walks, 2u);
}

}  // namespace
}  // namespace pgsim::models

// The MMU timing model in front of the core's page walk: L1 instruction and data TLBs, an L2 TLB,
// paging-structure caches, and the cost of every page-walk reference (through the cache hierarchy
// when one is configured, else the memory latency). It implements isa::Translator, which the core
// calls on a soft-TLB miss; it keeps the soft TLB a subset of the modeled L1 TLBs by telling the
// core about every L1 eviction, so a soft-TLB hit is an L1 hit.
//
// Translations are always those of the current page tables (the functional walk runs on every
// call); the modeled TLBs decide what is charged: an L1 hit costs nothing beyond the instruction,
// an L2 hit costs `l2_hit_cycles`, a miss costs the walk's references not covered by the
// paging-structure caches.
#pragma once
#include <cstdint>
#include <vector>

#include "isa/bus_if.h"
#include "isa/core_if.h"
#include "isa/system/paging.h"
#include "models/memory/cache_hierarchy.h"
#include "models/mmu/page_walk_cache.h"
#include "models/mmu/tlb.h"

namespace pgsim::isa {
class Core;
}

namespace pgsim::models {

struct MmuParams {
  TlbGeometry l1i{64, 8, {kPage4K, kPage2M, kPage4M}};
  TlbGeometry l1d{64, 4, {kPage4K, kPage2M, kPage4M, kPage1G}};
  TlbGeometry l2{1536, 12, {kPage4K, kPage2M, kPage4M, kPage1G}};
  uint64_t l2_hit_cycles = 7;          // an L1 miss that hits the L2 TLB
  // Paging-structure cache entries for levels 2 (PDE), 3 (PDPTE), 4 (PML4E), 5 (PML5E); 0 = none.
  std::vector<unsigned> walk_cache_entries{32, 4, 2, 0};
  uint64_t memory_latency = 100;       // cycles of one walk reference without a cache hierarchy
  bool honour_pcid = true;             // false: entries are untagged and every CR3 load flushes
};

// What the MMU counted; plain integers for the statistics registry.
struct MmuCounters {
  uint64_t l1i_hits = 0, l1i_misses = 0;  // translations the core handed over (soft-TLB misses)
  uint64_t l1d_hits = 0, l1d_misses = 0;
  uint64_t l2_hits = 0, l2_misses = 0;
  uint64_t walks = 0;          // page walks made (L2 misses)
  uint64_t walk_refs = 0;      // paging-structure references the walks made (after the walk caches)
  uint64_t walk_cache_hits = 0;  // walks shortened by a paging-structure cache
  uint64_t walk_cycles = 0;    // cycles charged for walk references
  uint64_t l2_hit_cycles = 0;  // cycles charged for L2 TLB hits
};

class Mmu : public isa::Translator, private isa::WalkObserver {
 public:
  // `caches` may be null: walk references then cost params.memory_latency each.
  Mmu(const MmuParams& params, isa::PhysicalBus& bus, CacheHierarchy* caches = nullptr);

  // The core whose soft TLB mirrors the L1 TLBs (and whose state gives CR3/CR4 on flushes).
  void attach(isa::Core* core) { core_ = core; }

  isa::Translation translate(const isa::CpuState& state, uint64_t linear, isa::AccessKind kind,
                             bool user, isa::AccessOrigin origin) override;
  void invalidate_page(uint64_t linear) override;
  void flush(bool include_global) override;

  const MmuCounters& counters() const { return counters_; }
  // L1 hits: the core's soft-TLB hits made with paging enabled (without paging the soft TLB only
  // caches host pointers, no TLB is involved) plus the L1 hits counted here.
  uint64_t l1i_hits_total() const;
  uint64_t l1d_hits_total() const;
  Tlb& l1i() { return l1i_; }
  Tlb& l1d() { return l1d_; }
  Tlb& l2() { return l2_; }

 private:
  void on_reference(uint64_t paddr, unsigned level) override;
  void on_l1_evict(uint64_t base, uint64_t size);
  uint16_t current_pcid() const;

  MmuParams params_;
  isa::PhysicalBus& bus_;
  CacheHierarchy* caches_;
  isa::Core* core_ = nullptr;
  Tlb l1i_, l1d_, l2_;
  PageWalkCache walk_cache_;
  MmuCounters counters_;
  bool flushing_ = false;
  // Soft-TLB hits the core counted while paging was off, which are not TLB hits.
  void note_paging_state();
  bool paging_on_ = false;
  uint64_t unpaged_itlb_hits_ = 0, unpaged_dtlb_hits_ = 0;  // accumulated
  uint64_t itlb_mark_ = 0, dtlb_mark_ = 0;                  // core's counts when paging went off
  // The walk in progress: references at levels >= skip_level_ are served by the walk caches.
  unsigned skip_level_ = 0;
  unsigned deepest_read_ = 0;  // lowest level read by this walk
};

}  // namespace pgsim::models

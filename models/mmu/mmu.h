// The MMU timing model in front of the core's page walk: L1 instruction and data TLBs, an L2 TLB,
// paging-structure caches, and the cost of every page-walk reference (through the cache hierarchy
// when one is configured, else the memory latency). It implements isa::Translator, which the core
// calls on a soft-TLB miss; it keeps the soft TLB a subset of the modeled L1 TLBs by telling the
// core about every L1 eviction, so a soft-TLB hit is an L1 hit.
//
// Translations are always those of the current page tables (the functional walk runs on every
// call, or its memo gives what it would: models/mmu/walk_memo.h); the modeled TLBs decide what is charged: an L1 hit costs nothing beyond the instruction,
// an L2 hit costs `l2_hit_cycles`, a miss costs the walk's references not covered by the
// paging-structure caches.
//
// Nested paging (EPT, SDM vol. 3C, 28.2): while a VMM has set it (set_nested), translations are
// those of a guest in VMX non-root operation: a TLB miss makes the two-dimensional walk
// (isa/system/ept.h), whose references are charged unless a cache covers them, after Bhargava et
// al. (ASPLOS 2008): the guest-dimension walk caches (the paging-structure caches above, whose
// entries then hold the host-physical address of the next guest table, SDM 28.3.1) skip guest
// levels and the nested walks that would translate their tables; the nested TLB (guest-physical
// to host-physical) skips a whole nested walk; the nested walk caches skip its upper EPT levels.
// TLB and walk-cache entries are tagged by VPID (0 outside non-root operation).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "isa/bus_if.h"
#include "isa/core_if.h"
#include "isa/system/ept.h"
#include "isa/system/paging.h"
#include "models/memory/cache_hierarchy.h"
#include "models/mmu/page_walk_cache.h"
#include "models/mmu/tlb.h"
#include "models/mmu/walk_memo.h"

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
  // Nested paging: the nested TLB (guest-physical pages of 4 KiB, 2 MiB and 1 GiB) and the nested
  // walk caches of EPT entries for levels 2 (PDE) to 5 (PML5E); 0 entries = none.
  TlbGeometry nested_tlb{16, 16, {kPage4K, kPage2M, kPage1G}};
  std::vector<unsigned> nested_walk_cache_entries{32, 4, 2, 0};
};

// What the MMU counted; plain integers for the statistics registry.
struct MmuCounters {
  uint64_t l1i_hits = 0, l1i_misses = 0;  // translations the core handed over (soft-TLB misses)
  uint64_t l1d_hits = 0, l1d_misses = 0;
  uint64_t l2_hits = 0, l2_misses = 0;
  uint64_t walks = 0;          // page walks made (L2 misses)
  uint64_t walk_refs = 0;      // paging-structure references the walks made (after the walk caches):
                               // guest_refs + nested_refs
  uint64_t walk_guest_refs = 0;   // of them, guest-dimension references (all of them without EPT)
  uint64_t walk_nested_refs = 0;  // of them, EPT entries read by two-dimensional walks
  // Completed walks and their references by the guest's leaf page size (4K, 2M, 4M, 1G): a walk's
  // length depends on it, so that references per walk can be read off per page size.
  static constexpr uint64_t kLeafSizes[4] = {kPage4K, kPage2M, kPage4M, kPage1G};
  static constexpr const char* kLeafNames[4] = {"4k", "2m", "4m", "1g"};
  uint64_t walks_by_leaf[4] = {}, walk_refs_by_leaf[4] = {};
  uint64_t nested_tlb_hits = 0, nested_tlb_misses = 0;  // guest-physical translations charged
  uint64_t nested_walk_cache_hits = 0;  // nested walks shortened by a nested walk cache
  uint64_t ept_violations = 0, ept_misconfigurations = 0;  // translations stopped by the EPT
  uint64_t walk_cache_hits = 0;  // walks shortened by a paging-structure cache
  uint64_t walk_cycles = 0;    // cycles charged for walk references
  uint64_t l2_hit_cycles = 0;  // cycles charged for L2 TLB hits
};

class Mmu : public isa::Translator, public isa::NestedPagingControl, private isa::WalkObserver {
 public:
  // What the core raises when a translation of the guest stops at an EPT violation or
  // misconfiguration: the VMM turns the EPT exit into its VM exit (reason 48 or 49) and chooses the
  // event that makes the core abandon the instruction.
  using EptExitHandler = isa::NestedPagingControl::EptExitHandler;

  // `caches` may be null: walk references then cost params.memory_latency each.
  Mmu(const MmuParams& params, isa::PhysicalBus& bus, CacheHierarchy* caches = nullptr);

  // The core whose soft TLB mirrors the L1 TLBs (and whose state gives CR3/CR4 on flushes).
  void attach(isa::Core* core) { core_ = core; }

  isa::Translation translate(const isa::CpuState& state, uint64_t linear, isa::AccessKind kind,
                             bool user, isa::AccessOrigin origin) override;
  void invalidate_page(uint64_t linear) override;
  void invalidate_page_all_contexts(uint64_t linear) override;
  void flush(bool include_global) override;
  bool translates_unpaged() const override { return nested_.has_value(); }

  // VMX non-root operation with EPT (the VMM's VM entry): translations from now on are the
  // guest's, through `ept`, tagged with `vpid` (0 when the VMM does not enable VPIDs, SDM 28.1).
  // The core's soft TLB is dropped, since it held the other side's translations. Throws
  // std::invalid_argument without a handler.
  void set_nested(const isa::EptPointer& ept, uint16_t vpid, EptExitHandler on_exit) override;
  // Back to root operation (the VM exit): translations are the host's, VPID 0.
  void clear_nested() override;
  bool nested() const { return nested_.has_value(); }
  // INVVPID, single context (SDM 28.3.3.3): drops the linear and combined mappings of `vpid` from
  // the TLBs and the guest-dimension walk caches. Without VPIDs the VMM calls it with 0 at every
  // VM entry and VM exit (SDM 28.3.3.1), since host and guest then share VPID 0.
  void invalidate_vpid(uint16_t vpid) override;
  // INVEPT (SDM 28.3.3.4): drops the guest-physical mappings (nested TLB, nested walk caches) and
  // every combined mapping (this model drops the linear mappings of every VPID with them, which
  // the SDM allows).
  void invalidate_ept() override;

  // The bus's host memory moved (a DMI invalidation): host addresses kept are stale.
  void host_memory_changed() { walk_memo_.clear(); }

  const MmuCounters& counters() const { return counters_; }
  // L1 hits: the core's soft-TLB hits made with paging enabled (without paging the soft TLB only
  // caches host pointers, no TLB is involved) plus the L1 hits counted here.
  uint64_t l1i_hits_total() const;
  uint64_t l1d_hits_total() const;
  Tlb& l1i() { return l1i_; }
  Tlb& l1d() { return l1d_; }
  Tlb& l2() { return l2_; }
  Tlb& nested_tlb() { return nested_tlb_; }

 private:
  class CachedEptTranslator;
  // translate() after the TLB lookups: the walk (charged when `charged_walk`; through `nested` with
  // EPT) and the TLB fills. `l2_hit` is the L2 TLB's entry when the L1 missed and the L2 hit.
  isa::Translation walk_and_fill(const isa::CpuState& state, const isa::WalkRequest& req, isa::AccessKind kind,
                                 uint16_t pcid, uint16_t vpid, bool charged_walk, const Tlb::Entry* l2_hit,
                                 isa::EptTranslator* nested);
  struct NestedContext {
    isa::EptPointer ept;
    uint16_t vpid;
    EptExitHandler on_exit;
  };
  void on_reference(uint64_t paddr, unsigned level) override;
  void on_nested_reference(uint64_t paddr, unsigned level) override;
  void charge_reference(uint64_t paddr);
  void count_by_leaf(uint64_t page_size, uint64_t refs);
  uint16_t current_vpid() const { return nested_ ? nested_->vpid : 0; }
  void on_l1_evict(uint64_t base, uint64_t size, isa::SoftTlbPart part);
  uint16_t current_pcid() const;

  MmuParams params_;
  isa::PhysicalBus& bus_;
  CacheHierarchy* caches_;
  isa::Core* core_ = nullptr;
  Tlb l1i_, l1d_, l2_;
  PageWalkCache walk_cache_;
  std::optional<NestedContext> nested_;
  WalkMemo walk_memo_;             // the host's shortcut for uncharged walks without EPT
  Tlb nested_tlb_;                 // guest-physical pages, tagged by VPID
  PageWalkCache nested_walk_cache_;  // EPT entries by guest-physical-address bits, tagged by VPID
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
  // The nested walk in progress: every reference is covered (a nested TLB hit, or a guest walk
  // cache that holds the host-physical address), or those at levels >= nested_skip_level_ are.
  bool nested_covered_ = false;
  unsigned nested_skip_level_ = 0;
  unsigned nested_deepest_read_ = 0;
};

}  // namespace pgsim::models

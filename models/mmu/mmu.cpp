#include "models/mmu/mmu.h"

#include <algorithm>
#include <stdexcept>

#include "isa/core.h"

namespace pgsim::models {

// The nested dimension of the MMU's two-dimensional walk: the functional EPT translation of every
// address (isa::EptTranslator), with the nested TLB and the walk caches deciding which of its
// references are charged, and filled from what it read.
class Mmu::CachedEptTranslator : public isa::EptTranslator {
 public:
  CachedEptTranslator(Mmu& mmu, uint64_t guest_linear)
      : isa::EptTranslator(mmu.nested_->ept, mmu.bus_, guest_linear, &mmu), mmu_(mmu) {}

  std::optional<uint64_t> to_host(const isa::GuestPhysicalAccess& access) override {
    // A translation the processor already holds is no reference (PAE PDPTEs, A/D write checks).
    if (!access.reference) return isa::EptTranslator::to_host(access);
    const uint16_t vpid = mmu_.nested_->vpid;
    const unsigned ept_levels = mmu_.nested_->ept.levels;
    // A guest walk cache hit at level L holds the host-physical address of the level L - 1 table,
    // so the entries of levels L - 1 and up need no nested walk.
    const bool guest_cache_covers = access.use == isa::GuestPhysicalUse::PagingEntry &&
                                    mmu_.skip_level_ && access.level + 1 >= mmu_.skip_level_;
    mmu_.nested_covered_ = guest_cache_covers;
    mmu_.nested_skip_level_ = 0;
    mmu_.nested_deepest_read_ = ept_levels + 1;
    if (!guest_cache_covers) {
      if (mmu_.nested_tlb_.lookup(access.address, 0, vpid)) {
        ++mmu_.counters_.nested_tlb_hits;
        mmu_.nested_covered_ = true;
      } else {
        ++mmu_.counters_.nested_tlb_misses;
        mmu_.nested_skip_level_ = mmu_.nested_walk_cache_.lowest_hit(access.address, 0, ept_levels, vpid);
        if (mmu_.nested_skip_level_) ++mmu_.counters_.nested_walk_cache_hits;
      }
    }
    std::optional<uint64_t> host = isa::EptTranslator::to_host(access);
    const isa::EptResult& r = last();
    if (r.ok && !mmu_.nested_covered_) {
      mmu_.nested_tlb_.insert(access.address, r.page_size, 0, false, vpid);
      for (unsigned level = ept_levels; level >= 2 && level > mmu_.nested_deepest_read_; --level)
        mmu_.nested_walk_cache_.fill(level, access.address, 0, vpid);
    }
    mmu_.nested_covered_ = false;
    mmu_.nested_skip_level_ = 0;
    return host;
  }

 private:
  Mmu& mmu_;
};

namespace {
unsigned top_level(isa::PagingMode mode) {
  switch (mode) {
    case isa::PagingMode::Bits32: return 2;
    case isa::PagingMode::Pae: return 2;  // PDPTEs are loaded at MOV CR3, not walked
    case isa::PagingMode::Level4: return 4;
    case isa::PagingMode::Level5: return 5;
    default: return 0;
  }
}

isa::WalkRequest walk_request(uint64_t linear, isa::AccessKind kind, bool user, isa::AccessOrigin origin) {
  isa::WalkRequest req;
  req.linear = linear;
  req.access = kind == isa::AccessKind::Execute ? isa::Access::Execute
               : kind == isa::AccessKind::Write ? isa::Access::Write
                                                 : isa::Access::Read;
  req.user = user;
  req.implicit = origin == isa::AccessOrigin::ImplicitSupervisor;
  return req;
}
}  // namespace

Mmu::Mmu(const MmuParams& params, isa::PhysicalBus& bus, CacheHierarchy* caches)
    : params_(params), bus_(bus), caches_(caches), l1i_(params.l1i), l1d_(params.l1d), l2_(params.l2),
      walk_cache_(params.walk_cache_entries),
      walk_memo_(uint64_t{params.l1i.entries} + params.l1d.entries + params.l2.entries), nested_tlb_(params.nested_tlb),
      nested_walk_cache_(params.nested_walk_cache_entries) {
  l1i_.set_evict_callback([this](uint64_t base, uint64_t size) { on_l1_evict(base, size, isa::SoftTlbPart::Code); });
  l1d_.set_evict_callback([this](uint64_t base, uint64_t size) { on_l1_evict(base, size, isa::SoftTlbPart::Data); });
}

uint16_t Mmu::current_pcid() const {
  if (!core_ || !params_.honour_pcid) return 0;
  const isa::CpuState& s = core_->state();
  return (s.cr4 & isa::CR4_PCIDE) ? static_cast<uint16_t>(s.cr3 & 0xFFF) : 0;
}

void Mmu::on_l1_evict(uint64_t base, uint64_t size, isa::SoftTlbPart part) {
  if (flushing_ || !core_) return;
  if (size == kPage4K) core_->drop_soft_tlb(base, part);
  else core_->flush_soft_tlb();  // a large page covers many soft-TLB entries
}

isa::Translation Mmu::translate(const isa::CpuState& state, uint64_t linear, isa::AccessKind kind,
                                bool user, isa::AccessOrigin origin) {
  if (!paging_on_) note_paging_state();
  const bool fetch = kind == isa::AccessKind::Execute;
  Tlb& l1 = fetch ? l1i_ : l1d_;
  const uint16_t pcid = (params_.honour_pcid && (state.cr4 & isa::CR4_PCIDE))
                            ? static_cast<uint16_t>(state.cr3 & 0xFFF) : 0;
  const uint16_t vpid = current_vpid();

  // The data of a walk the memo holds is most likely where it was: the host starts fetching it
  // now, while the TLBs are modeled, rather than after (a memory-bound guest's accesses mostly
  // miss the host's caches too). A guess, never used but as a prefetch.
  const isa::WalkRequest req = walk_request(linear, kind, user, origin);
  if (!nested_ && !fetch) {
    const uint8_t* data = walk_memo_.likely_host(req);
    if (data) __builtin_prefetch(data);
  }
  bool charged_walk = false;
  const Tlb::Entry* l2_hit = nullptr;
  if (l1.lookup(linear, pcid, vpid)) {
    ++(fetch ? counters_.l1i_hits : counters_.l1d_hits);
  } else {
    ++(fetch ? counters_.l1i_misses : counters_.l1d_misses);
    if ((l2_hit = l2_.lookup_entry(linear, pcid, vpid))) {
      ++counters_.l2_hits;
      counters_.l2_hit_cycles += params_.l2_hit_cycles;
    } else {
      ++counters_.l2_misses;
      charged_walk = true;
    }
  }

  // Without EPT one walk; with it the two-dimensional walk, whose nested dimension is charged only
  // when this translation is (a TLB hit still runs the functional walk, uncharged, so that the
  // translation is always that of the current tables). The nested translators are built only with
  // EPT: constructing them costs more than a walk that hits the host's caches.
  if (!nested_) return walk_and_fill(state, req, kind, pcid, vpid, charged_walk, l2_hit, nullptr);
  std::optional<CachedEptTranslator> charged_nested;
  std::optional<isa::EptTranslator> uncharged_nested;
  isa::EptTranslator* nested = charged_walk ? static_cast<isa::EptTranslator*>(&charged_nested.emplace(*this, linear))
                                            : &uncharged_nested.emplace(nested_->ept, bus_, linear, nullptr);
  return walk_and_fill(state, req, kind, pcid, vpid, charged_walk, l2_hit, nested);
}

isa::Translation Mmu::walk_and_fill(const isa::CpuState& state, const isa::WalkRequest& req, isa::AccessKind kind,
                                    uint16_t pcid, uint16_t vpid, bool charged_walk, const Tlb::Entry* l2_hit,
                                    isa::EptTranslator* nested) {
  const bool fetch = kind == isa::AccessKind::Execute;
  Tlb& l1 = fetch ? l1i_ : l1d_;
  const uint64_t linear = req.linear;

  isa::WalkResult walk;
  // Without EPT, a walk the TLBs hold is not charged, and its memo saves the host the walk itself.
  isa::WalkTrace trace;
  isa::WalkTrace* const traced = nested ? nullptr : &trace;
  if (traced) walk_memo_.note_state(state);
  if (charged_walk) {
    ++counters_.walks;
    const unsigned top = top_level(isa::paging_mode(state));
    skip_level_ = walk_cache_.lowest_hit(linear, pcid, top, vpid);
    if (skip_level_) ++counters_.walk_cache_hits;
    deepest_read_ = top + 1;
    const uint64_t refs_before = counters_.walk_refs;
    walk = isa::page_walk(state, bus_, req, this, nested, traced);
    // A guest without paging has no leaf (its "walk" is the nested dimension's alone).
    if (walk.ok && isa::paging_mode(state) != isa::PagingMode::None)
      count_by_leaf(walk.page_size ? walk.page_size : kPage4K, counters_.walk_refs - refs_before);
    // Remember the non-leaf entries this walk used (levels above the leaf).
    if (walk.ok)
      for (unsigned level = top; level >= 2 && level > deepest_read_; --level)
        walk_cache_.fill(level, linear, pcid, vpid);
    skip_level_ = 0;
  } else if (!traced || !walk_memo_.find(req, walk)) {
    walk = isa::page_walk(state, bus_, req, nullptr, nested, traced);
  }
  if (traced && trace.complete) walk_memo_.record(req, trace, walk, bus_);

  isa::Translation t;
  if (walk.translator_refused) {
    const isa::EptExit& exit = nested->exit();
    ++(exit.kind == isa::EptExitKind::Violation ? counters_.ept_violations : counters_.ept_misconfigurations);
    t.fault = nested_->on_exit(exit);
    return t;
  }
  if (!walk.ok) {
    t.fault = walk.fault;
    return t;
  }
  t.ok = true;
  t.paddr = walk.paddr;
  // The core reads or writes the data next, most likely outside the host's caches when the TLBs
  // missed: the host starts fetching it now, while the TLB fills below run.
  t.host_frame = bus_.host_frame(walk.paddr & ~0xFFFull);
  if (t.host_frame) __builtin_prefetch(t.host_frame + (walk.paddr & 0xFFF));
  uint64_t page_size = walk.page_size ? walk.page_size : kPage4K;
  // A TLB entry of a guest covers what both dimensions map contiguously: the smaller page.
  if (nested) page_size = std::min(page_size, nested->final_page_size());
  // An L2 hit on this very translation was made the most recently used by its lookup: filling it
  // again would change nothing (a memory-bound guest hits the L2 at nearly every access).
  if (!l2_hit || !Tlb::holds_as(*l2_hit, page_size, walk.global)) l2_.insert(linear, page_size, pcid, walk.global, vpid);
  // The core's soft TLB mirrors the L1 TLB: a translation the L1 does not hold (no L1, or a page
  // size it does not hold) is translated again on every access.
  t.cacheable = l1.insert(linear, page_size, pcid, walk.global, vpid) != 0;
  return t;
}

void Mmu::count_by_leaf(uint64_t page_size, uint64_t refs) {
  for (size_t i = 0; i < std::size(MmuCounters::kLeafSizes); ++i)
    if (MmuCounters::kLeafSizes[i] == page_size) {
      ++counters_.walks_by_leaf[i];
      counters_.walk_refs_by_leaf[i] += refs;
    }
}

void Mmu::charge_reference(uint64_t paddr) {
  ++counters_.walk_refs;
  counters_.walk_cycles += caches_ ? caches_->access(paddr) : params_.memory_latency;
}

void Mmu::on_reference(uint64_t paddr, unsigned level) {
  if (level < deepest_read_) deepest_read_ = level;
  if (skip_level_ && level >= skip_level_) return;  // the paging-structure cache held it
  ++counters_.walk_guest_refs;
  charge_reference(paddr);
}

void Mmu::on_nested_reference(uint64_t paddr, unsigned level) {
  if (level < nested_deepest_read_) nested_deepest_read_ = level;
  if (nested_covered_ || (nested_skip_level_ && level >= nested_skip_level_)) return;
  ++counters_.walk_nested_refs;
  charge_reference(paddr);
}

void Mmu::set_nested(const isa::EptPointer& ept, uint16_t vpid, EptExitHandler on_exit) {
  if (!on_exit) throw std::invalid_argument("nested paging needs a handler for EPT violations and misconfigurations");
  if (nested_ && nested_->vpid == vpid && nested_->ept.root != ept.root) {
    // Guest-physical mappings belong to an EPT (SDM 28.3.1); this model tags them by VPID, so a
    // VPID that changes EPT loses them.
    nested_tlb_.flush_vpid(vpid);
    nested_walk_cache_.flush_vpid(vpid);
  }
  nested_ = NestedContext{ept, vpid, std::move(on_exit)};
  if (core_) core_->flush_soft_tlb();
}

void Mmu::clear_nested() {
  nested_.reset();
  if (core_) core_->flush_soft_tlb();
}

void Mmu::invalidate_vpid(uint16_t vpid) {
  for (Tlb* tlb : {&l1i_, &l1d_, &l2_}) tlb->flush_vpid(vpid);
  walk_cache_.flush_vpid(vpid);
  if (core_ && vpid == current_vpid()) core_->flush_soft_tlb();
}

void Mmu::invalidate_ept() {
  nested_tlb_.flush_all();
  nested_walk_cache_.flush();
  for (Tlb* tlb : {&l1i_, &l1d_, &l2_}) tlb->flush_all();
  walk_cache_.flush();
  if (core_) core_->flush_soft_tlb();
}

void Mmu::invalidate_page(uint64_t linear) {
  const uint16_t pcid = current_pcid(), vpid = current_vpid();
  l1i_.invalidate_page(linear, pcid, vpid);
  l1d_.invalidate_page(linear, pcid, vpid);
  l2_.invalidate_page(linear, pcid, vpid);
  // INVLPG drops all paging-structure cache entries (SDM 4.10.4.1) of the current VPID (28.3.3.1).
  walk_cache_.flush_vpid(vpid);
}

void Mmu::invalidate_page_all_contexts(uint64_t linear) {
  const uint16_t vpid = current_vpid();
  for (Tlb* tlb : {&l1i_, &l1d_, &l2_}) tlb->invalidate_page_all_pcids(linear, vpid);
  walk_cache_.flush_vpid(vpid);
}

void Mmu::note_paging_state() {
  if (!core_) return;
  const bool on = core_->state().paging();
  if (on == paging_on_) return;
  const isa::CoreCounters& c = core_->counters();
  if (on) {
    unpaged_itlb_hits_ += c.itlb_hits - itlb_mark_;
    unpaged_dtlb_hits_ += c.dtlb_hits - dtlb_mark_;
  } else {
    itlb_mark_ = c.itlb_hits;
    dtlb_mark_ = c.dtlb_hits;
  }
  paging_on_ = on;
}

uint64_t Mmu::l1i_hits_total() const {
  if (!core_) return counters_.l1i_hits;
  const uint64_t soft = core_->counters().itlb_hits;
  const uint64_t unpaged = unpaged_itlb_hits_ + (paging_on_ ? 0 : soft - itlb_mark_);
  return soft - unpaged + counters_.l1i_hits;
}

uint64_t Mmu::l1d_hits_total() const {
  if (!core_) return counters_.l1d_hits;
  const uint64_t soft = core_->counters().dtlb_hits;
  const uint64_t unpaged = unpaged_dtlb_hits_ + (paging_on_ ? 0 : soft - dtlb_mark_);
  return soft - unpaged + counters_.l1d_hits;
}

void Mmu::flush(bool include_global) {
  note_paging_state();  // CR0.PG changes come with a flush
  flushing_ = true;  // the core flushes its own soft TLB
  const bool pcids = core_ && params_.honour_pcid && (core_->state().cr4 & isa::CR4_PCIDE);
  const uint16_t pcid = current_pcid(), vpid = current_vpid();
  // A guest's MOV CR3 or CR4 affects the mappings of its own VPID only (SDM 28.3.3.1).
  for (Tlb* tlb : {&l1i_, &l1d_, &l2_}) tlb->flush(include_global, include_global || !pcids, pcid, vpid);
  if (include_global || !pcids) walk_cache_.flush_vpid(vpid);
  else walk_cache_.flush_pcid(pcid, vpid);
  flushing_ = false;
}

}  // namespace pgsim::models

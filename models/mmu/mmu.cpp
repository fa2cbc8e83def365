#include "models/mmu/mmu.h"

#include "isa/core.h"

namespace pgsim::models {

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
}  // namespace

Mmu::Mmu(const MmuParams& params, isa::PhysicalBus& bus, CacheHierarchy* caches)
    : params_(params), bus_(bus), caches_(caches), l1i_(params.l1i), l1d_(params.l1d), l2_(params.l2),
      walk_cache_(params.walk_cache_entries) {
  auto evict = [this](uint64_t base, uint64_t size) { on_l1_evict(base, size); };
  l1i_.set_evict_callback(evict);
  l1d_.set_evict_callback(evict);
}

uint16_t Mmu::current_pcid() const {
  if (!core_ || !params_.honour_pcid) return 0;
  const isa::CpuState& s = core_->state();
  return (s.cr4 & isa::CR4_PCIDE) ? static_cast<uint16_t>(s.cr3 & 0xFFF) : 0;
}

void Mmu::on_l1_evict(uint64_t base, uint64_t size) {
  if (flushing_ || !core_) return;
  if (size == kPage4K) core_->drop_soft_tlb(base);
  else core_->flush_soft_tlb();  // a large page covers many soft-TLB entries
}

isa::Translation Mmu::translate(const isa::CpuState& state, uint64_t linear, isa::AccessKind kind,
                                bool user, isa::AccessOrigin origin) {
  if (!paging_on_) note_paging_state();
  const bool fetch = kind == isa::AccessKind::Execute;
  Tlb& l1 = fetch ? l1i_ : l1d_;
  const uint16_t pcid = (params_.honour_pcid && (state.cr4 & isa::CR4_PCIDE))
                            ? static_cast<uint16_t>(state.cr3 & 0xFFF) : 0;

  bool charged_walk = false;
  if (l1.lookup(linear, pcid)) {
    ++(fetch ? counters_.l1i_hits : counters_.l1d_hits);
  } else {
    ++(fetch ? counters_.l1i_misses : counters_.l1d_misses);
    if (l2_.lookup(linear, pcid)) {
      ++counters_.l2_hits;
      counters_.l2_hit_cycles += params_.l2_hit_cycles;
    } else {
      ++counters_.l2_misses;
      charged_walk = true;
    }
  }

  isa::WalkRequest req;
  req.linear = linear;
  req.access = fetch ? isa::Access::Execute
                     : (kind == isa::AccessKind::Write ? isa::Access::Write : isa::Access::Read);
  req.user = user;
  req.implicit = origin == isa::AccessOrigin::ImplicitSupervisor;

  isa::WalkResult walk;
  if (charged_walk) {
    ++counters_.walks;
    const unsigned top = top_level(isa::paging_mode(state));
    skip_level_ = walk_cache_.lowest_hit(linear, pcid, top);
    if (skip_level_) ++counters_.walk_cache_hits;
    deepest_read_ = top + 1;
    walk = isa::page_walk(state, bus_, req, this);
    // Remember the non-leaf entries this walk used (levels above the leaf).
    if (walk.ok)
      for (unsigned level = top; level >= 2 && level > deepest_read_; --level)
        walk_cache_.fill(level, linear, pcid);
    skip_level_ = 0;
  } else {
    walk = isa::page_walk(state, bus_, req, nullptr);
  }

  isa::Translation t;
  if (!walk.ok) {
    t.fault = walk.fault;
    return t;
  }
  t.ok = true;
  t.paddr = walk.paddr;
  const uint64_t page_size = walk.page_size ? walk.page_size : kPage4K;
  l2_.insert(linear, page_size, pcid, walk.global);
  // The core's soft TLB mirrors the L1 TLB: a translation the L1 does not hold (no L1, or a page
  // size it does not hold) is translated again on every access.
  t.cacheable = l1.insert(linear, page_size, pcid, walk.global) != 0;
  return t;
}

void Mmu::on_reference(uint64_t paddr, unsigned level) {
  if (level < deepest_read_) deepest_read_ = level;
  if (skip_level_ && level >= skip_level_) return;  // the paging-structure cache held it
  ++counters_.walk_refs;
  counters_.walk_cycles += caches_ ? caches_->access(paddr) : params_.memory_latency;
}

void Mmu::invalidate_page(uint64_t linear) {
  const uint16_t pcid = current_pcid();
  l1i_.invalidate_page(linear, pcid);
  l1d_.invalidate_page(linear, pcid);
  l2_.invalidate_page(linear, pcid);
  walk_cache_.flush();  // INVLPG drops all paging-structure cache entries (SDM 4.10.4.1)
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
  const uint16_t pcid = current_pcid();
  for (Tlb* tlb : {&l1i_, &l1d_, &l2_}) tlb->flush(include_global, include_global || !pcids, pcid);
  if (include_global || !pcids) walk_cache_.flush();
  else walk_cache_.flush_pcid(pcid);
  flushing_ = false;
}

}  // namespace pgsim::models

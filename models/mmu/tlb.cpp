#include "models/mmu/tlb.h"

#include <algorithm>
#include <bit>
#include <stdexcept>

namespace pgsim::models {

Tlb::Tlb(const TlbGeometry& g) {
  if (g.entries == 0) return;
  ways_ = (g.ways == 0 || g.ways >= g.entries) ? g.entries : g.ways;
  if (g.entries % ways_ != 0)
    throw std::invalid_argument("TLB entries (" + std::to_string(g.entries) +
                                ") must be a multiple of its ways (" + std::to_string(ways_) + ")");
  sets_ = g.entries / ways_;
  for (uint64_t size : g.page_sizes) {
    if (!std::has_single_bit(size) || size < kPage4K)
      throw std::invalid_argument("TLB page size " + std::to_string(size) + " is not a power of two >= 4 KiB");
    shifts_.push_back(static_cast<unsigned>(std::countr_zero(size)));
  }
  if (shifts_.empty()) throw std::invalid_argument("a TLB with entries must hold at least one page size");
  std::sort(shifts_.rbegin(), shifts_.rend());
  shifts_.erase(std::unique(shifts_.begin(), shifts_.end()), shifts_.end());
  for (unsigned i = 0; i < shifts_.size(); ++i) {
    held_shifts_ |= 1ull << shifts_[i];
    shift_index_[shifts_[i]] = static_cast<uint8_t>(i);
  }
  valid_by_bucket_.assign(shifts_.size() * kPageBuckets, 0);
  entries_.resize(static_cast<size_t>(sets_) * ways_);
  tags_.assign(entries_.size(), kNoTag);
}

uint64_t page_size_from_name(const std::string& name) {
  if (name == "4K") return kPage4K;
  if (name == "2M") return kPage2M;
  if (name == "4M") return kPage4M;
  if (name == "1G") return kPage1G;
  throw std::invalid_argument("'" + name + "' is not a page size (4K, 2M, 4M or 1G)");
}

bool Tlb::holds(uint64_t page_size) const {
  // A power of two by its bits (std::has_single_bit is a library call without POPCNT), and one of
  // the sizes held: held_shifts_ has bit s set for pages of 2^s bytes, none when the level is off.
  return (page_size & (page_size - 1)) == 0 && (held_shifts_ & page_size) != 0;
}

Tlb::Entry* Tlb::find(uint64_t vpn, unsigned shift, uint16_t pcid, uint16_t vpid) {
  LastFind& last = last_find_;
  if (last.changes == changes_ && last.vpn == vpn && last.shift == shift && last.pcid == pcid && last.vpid == vpid)
    return last.index == LastFind::kNone ? nullptr : &entries_[last.index];
  last = {vpn, shift, pcid, vpid, changes_, LastFind::kNone};
  const size_t first = static_cast<size_t>(set_of(vpn)) * ways_;
  const uint64_t* tags = &tags_[first];
  const uint64_t tag = tag_of(vpn, shift, vpid);
  for (unsigned w = 0; w < ways_; ++w) {
    if (tags[w] != tag) continue;
    Entry& e = entries_[first + w];
    if (e.valid && e.vpn == vpn && e.page_shift == shift && e.vpid == vpid && (e.global || e.pcid == pcid)) {
      last.index = static_cast<uint32_t>(first + w);
      return &e;
    }
  }
  return nullptr;
}

const Tlb::Entry* Tlb::lookup_entry(uint64_t linear, uint16_t pcid, uint16_t vpid) {
  if (!enabled()) return nullptr;
  for (unsigned shift : shifts_) {
    if (valid_by_shift_[shift] == 0 || valid_in_bucket(shift, linear >> shift) == 0) continue;
    if (Entry* e = find(linear >> shift, shift, pcid, vpid)) {
      e->last_use = ++clock_;
      return e;
    }
  }
  return nullptr;
}

uint64_t Tlb::insert(uint64_t linear, uint64_t page_size, uint16_t pcid, bool global, uint16_t vpid) {
  if (!holds(page_size)) return 0;
  const auto shift = static_cast<unsigned>(std::countr_zero(page_size));
  const uint64_t vpn = linear >> shift;
  if (Entry* e = find(vpn, shift, pcid, vpid)) {
    e->last_use = ++clock_;
    if (e->global != global || e->pcid != pcid) ++changes_;
    e->global = global;
    e->pcid = pcid;
    return 1ull << shift;
  }
  Entry* set = &entries_[static_cast<size_t>(set_of(vpn)) * ways_];
  Entry* victim = &set[0];
  for (unsigned w = 0; w < ways_; ++w) {
    if (!set[w].valid) { victim = &set[w]; break; }
    if (set[w].last_use < victim->last_use) victim = &set[w];
  }
  if (victim->valid) drop(*victim);
  const bool listed = victim->listed;
  *victim = Entry{vpn, pcid, vpid, static_cast<uint8_t>(shift), global, true, true, ++clock_};
  tags_[victim - entries_.data()] = tag_of(vpn, shift, vpid);
  ++valid_by_shift_[shift];
  ++valid_in_bucket(shift, vpn);
  ++changes_;
  if (!listed) occupied_.push_back(static_cast<uint32_t>(victim - entries_.data()));
  return 1ull << shift;
}

void Tlb::drop(Entry& e) {
  e.valid = false;
  tags_[&e - entries_.data()] = kNoTag;
  --valid_by_shift_[e.page_shift];
  --valid_in_bucket(e.page_shift, e.vpn);
  ++changes_;
  if (on_evict_) on_evict_(e.vpn << e.page_shift, 1ull << e.page_shift);
}

template <class Predicate>
void Tlb::drop_page(uint64_t linear, uint16_t vpid, Predicate drop_it) {
  if (!enabled()) return;
  for (unsigned shift : shifts_) {
    const uint64_t vpn = linear >> shift;
    Entry* set = &entries_[static_cast<size_t>(set_of(vpn)) * ways_];
    for (unsigned w = 0; w < ways_; ++w) {
      Entry& e = set[w];
      if (e.valid && e.vpn == vpn && e.page_shift == shift && e.vpid == vpid && drop_it(e)) drop(e);
    }
  }
}

void Tlb::invalidate_page_all_pcids(uint64_t linear, uint16_t vpid) {
  drop_page(linear, vpid, [](const Entry&) { return true; });
}

void Tlb::invalidate_page(uint64_t linear, uint16_t pcid, uint16_t vpid) {
  drop_page(linear, vpid, [pcid](const Entry& e) { return e.global || e.pcid == pcid; });
}

template <class Predicate>
void Tlb::drop_occupied(Predicate drop_it) {
  size_t kept = 0;
  for (const uint32_t index : occupied_) {
    Entry& e = entries_[index];
    if (e.valid && drop_it(e)) drop(e);
    if (e.valid) occupied_[kept++] = index;
    else e.listed = false;
  }
  occupied_.resize(kept);
}

void Tlb::flush(bool include_global, bool all_pcids, uint16_t pcid, uint16_t vpid) {
  drop_occupied([&](const Entry& e) {
    return e.vpid == vpid && (e.global ? include_global : (all_pcids || e.pcid == pcid));
  });
}

void Tlb::flush_vpid(uint16_t vpid) {
  drop_occupied([vpid](const Entry& e) { return e.vpid == vpid; });
}

void Tlb::flush_all() {
  drop_occupied([](const Entry&) { return true; });
}

unsigned Tlb::valid_entries() const {
  return static_cast<unsigned>(std::count_if(entries_.begin(), entries_.end(), [](const Entry& e) { return e.valid; }));
}

}  // namespace pgsim::models

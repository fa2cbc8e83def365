// Paging-structure caches (SDM vol. 3, 4.10.3): for each upper level of the hierarchy, a small
// fully associative LRU cache of non-leaf entries tagged by VPID, PCID and the linear-address bits
// that select them. A walk that finds the entry of level L for its address starts below L and makes
// only the references of the levels under it. Under EPT the same structure serves both dimensions
// (Bhargava et al., ASPLOS 2008): the guest's entries, which hold the host-physical address of the
// next guest table (SDM vol. 3C, 28.3.1: combined paging-structure-cache entries), and the EPT's
// entries, tagged by guest-physical-address bits.
#pragma once
#include <cstdint>
#include <vector>

namespace pgsim::models {

class PageWalkCache {
 public:
  // entries_per_level[i] is the size of the cache of level i + 2 (PDE, PDPTE, PML4E, PML5E...);
  // 0 disables that level.
  explicit PageWalkCache(std::vector<unsigned> entries_per_level) {
    for (unsigned n : entries_per_level) levels_.push_back(Level{n, std::vector<Entry>(n)});
  }

  // The lowest level (>= 2) whose entry for `linear` is cached, or 0 when none is.
  unsigned lowest_hit(uint64_t linear, uint16_t pcid, unsigned top_level, uint16_t vpid = 0) {
    for (unsigned level = 2; level <= top_level && level - 2 < levels_.size(); ++level) {
      if (Entry* e = find(level, linear, pcid, vpid)) {
        e->last_use = ++clock_;
        return level;
      }
    }
    return 0;
  }
  // Records the non-leaf entry of `level` that a walk for `linear` just read.
  void fill(unsigned level, uint64_t linear, uint16_t pcid, uint16_t vpid = 0) {
    if (level < 2 || level - 2 >= levels_.size()) return;
    Level& l = levels_[level - 2];
    if (l.entries.empty() || find(level, linear, pcid, vpid)) return;
    Entry* victim = &l.entries[0];
    for (Entry& e : l.entries) {
      if (!e.valid) { victim = &e; break; }
      if (e.last_use < victim->last_use) victim = &e;
    }
    *victim = Entry{tag(level, linear), pcid, vpid, true, ++clock_};
  }
  // Paging-structure caches are dropped by INVLPG (all of them, SDM 4.10.4.1) and by CR3 writes.
  void flush() {
    for (Level& l : levels_)
      for (Entry& e : l.entries) e.valid = false;
  }
  void flush_pcid(uint16_t pcid, uint16_t vpid = 0) {
    for (Level& l : levels_)
      for (Entry& e : l.entries)
        if (e.pcid == pcid && e.vpid == vpid) e.valid = false;
  }
  void flush_vpid(uint16_t vpid) {
    for (Level& l : levels_)
      for (Entry& e : l.entries)
        if (e.vpid == vpid) e.valid = false;
  }

 private:
  struct Entry {
    uint64_t tag = 0;
    uint16_t pcid = 0;
    uint16_t vpid = 0;
    bool valid = false;
    uint64_t last_use = 0;
  };
  struct Level {
    unsigned size;
    std::vector<Entry> entries;
  };
  // An entry of level L (L >= 2) maps the region selected by linear[max:12 + 9 (L - 1)].
  static uint64_t tag(unsigned level, uint64_t linear) { return linear >> (12 + 9 * (level - 1)); }
  Entry* find(unsigned level, uint64_t linear, uint16_t pcid, uint16_t vpid) {
    const uint64_t t = tag(level, linear);
    for (Entry& e : levels_[level - 2].entries)
      if (e.valid && e.tag == t && e.pcid == pcid && e.vpid == vpid) return &e;
    return nullptr;
  }

  std::vector<Level> levels_;
  uint64_t clock_ = 0;
};

}  // namespace pgsim::models

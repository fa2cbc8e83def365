// An optional set-associative cache hierarchy (for example L1D, L2, LLC) with LRU replacement,
// through which data accesses and page-walk references are timed: an access costs the latency of
// the first level that holds its line, or the memory latency when none does, and fills every level
// it missed (inclusive). Each level counts hits and misses by requester (data access or page
// walk), so that the walk figures stay apart from the data figures. Disabled, every page-walk
// reference costs the memory latency and data accesses are part of the instruction's CPI.
#pragma once
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace pgsim::models {

struct CacheGeometry {
  std::string name;           // "l1d", "l2", "llc": used in statistic names
  uint64_t size = 32 * 1024;  // bytes
  unsigned ways = 8;
  unsigned line = 64;         // bytes
  uint64_t latency = 4;       // cycles for a hit at this level
};

// Who makes an access: the counts of each level are kept apart by requester.
enum class CacheRequester : uint8_t {
  PageWalk,  // a paging-structure reference of the MMU's page walk
  Data,      // a data access of an instruction (reads, writes, stack, strings)
};

struct CacheCounts {
  uint64_t hits = 0;
  uint64_t misses = 0;
};

class SetAssociativeCache {
 public:
  explicit SetAssociativeCache(const CacheGeometry& g) : geometry_(g) {
    if (g.line == 0 || (g.line & (g.line - 1)) || g.ways == 0 || g.size == 0 ||
        g.size % (uint64_t{g.line} * g.ways))
      throw std::invalid_argument("cache " + g.name +
                                  ": size must be a non-zero multiple of line x ways, line a power of two");
    sets_ = g.size / (uint64_t{g.line} * g.ways);
    line_shift_ = static_cast<unsigned>(__builtin_ctzll(g.line));
    sets_pow2_ = (sets_ & (sets_ - 1)) == 0;
    tags_.assign(sets_ * g.ways, kInvalid);
    stamps_.assign(sets_ * g.ways, 0);
    mru_.assign(sets_, kNoSlot);
    hint_.assign(std::min<uint64_t>(std::bit_ceil(sets_ * g.ways), kMaxHints), Hint{});
    hint_mask_ = hint_.size() - 1;
    mru_lines_.assign(hint_.size(), kInvalid);
  }
  // True on a hit; on a miss the line is filled (LRU victim).
  bool access(uint64_t paddr, CacheRequester who) {
    return hits_hinted(paddr, 1, who) || access_set(paddr >> line_shift_, who);
  }
  // The fast path of an access of `size` bytes at `paddr` within one line that this level holds
  // where its hint says: the slot last found or filled for a line of the same hint index, with the
  // line it holds (kept true when the slot is refilled), so that a hit (a loop's stack and table
  // lines) needs neither a set search nor a read of the tags. True when it hit there (counted as
  // access() counts a hit); false, with nothing changed, otherwise.
  bool hits_hinted(uint64_t paddr, unsigned size, CacheRequester who) {
    const uint64_t line = paddr >> line_shift_;
    const Hint& hint = hint_[line & hint_mask_];
    if (hint.line != line || ((paddr + size - 1) >> line_shift_) != line) return false;
    // A hit on the line its set used last changes no order: only the set's stamps are compared, and
    // this line's is already the highest. (Most hits are such repeats; the clock then stays put.)
    if (mru_[hint.set] != hint.slot) {
      stamps_[hint.slot] = ++clock_;
      set_mru(hint.set, hint.slot, line);
    }
    ++(who == CacheRequester::Data ? data : walk).hits;
    return true;
  }
  const CacheGeometry& geometry() const { return geometry_; }
  // Lines that are the most recently used of their set, by line number & line_mask() (kInvalid
  // where none): a data access within one of them is a hit that changes nothing but data.hits.
  // The table stays at this address for the cache's lifetime.
  const uint64_t* mru_lines() const { return mru_lines_.data(); }
  uint64_t line_mask() const { return hint_mask_; }
  unsigned line_shift() const { return line_shift_; }

  CacheCounts walk;  // page-walk references
  CacheCounts data;  // data accesses

 private:
  static constexpr uint64_t kInvalid = ~0ull;
  // access() beyond the most recently used line: a search of the set, and the fill on a miss.
  [[gnu::noinline]] bool access_set(uint64_t line, CacheRequester who) {
    CacheCounts& counts = who == CacheRequester::Data ? data : walk;
    const uint64_t set = sets_pow2_ ? line & (sets_ - 1) : line % sets_;
    const uint64_t first = set * geometry_.ways;
    uint64_t* tags = &tags_[first];
    uint64_t* stamps = &stamps_[first];
    unsigned victim = 0;
    for (unsigned w = 0; w < geometry_.ways; ++w) {
      if (tags[w] == line) {
        stamps[w] = ++clock_;
        set_mru(set, first + w, line);
        ++counts.hits;
        remember_slot(line, first + w, set);
        return true;
      }
      if (stamps[w] < stamps[victim]) victim = w;
    }
    forget_slot(tags[victim], first + victim);
    tags[victim] = line;
    stamps[victim] = ++clock_;
    set_mru(set, first + victim, line);
    ++counts.misses;
    remember_slot(line, first + victim, set);
    return false;
  }
  void remember_slot(uint64_t line, uint64_t slot, uint64_t set) {
    hint_[line & hint_mask_] = {line, static_cast<uint32_t>(slot), static_cast<uint32_t>(set)};
  }
  // The line `slot` held is replaced: a hint that pointed there for it no longer holds.
  void forget_slot(uint64_t old_line, uint64_t slot) {
    Hint& hint = hint_[old_line & hint_mask_];
    if (hint.line == old_line && hint.slot == slot) hint = Hint{};
    forget_mru_line(old_line);
  }
  // `slot`, holding `line`, becomes the most recently used of `set`.
  void set_mru(uint64_t set, uint64_t slot, uint64_t line) {
    if (mru_[set] != kNoSlot) forget_mru_line(tags_[mru_[set]]);
    mru_[set] = static_cast<uint32_t>(slot);
    mru_lines_[line & hint_mask_] = line;
  }
  void forget_mru_line(uint64_t line) {
    if (line != kInvalid && mru_lines_[line & hint_mask_] == line) mru_lines_[line & hint_mask_] = kInvalid;
  }
  CacheGeometry geometry_;
  uint64_t sets_ = 0, clock_ = 0;
  unsigned line_shift_ = 6;  // log2 of the line size
  bool sets_pow2_ = true;    // sets_ is a power of two: the set is a mask of the line number
  static constexpr uint64_t kMaxHints = 1u << 16;
  struct Hint {
    uint64_t line = kInvalid;  // the line slot `slot` holds, or kInvalid
    uint32_t slot = 0;
    uint32_t set = 0;          // the set of `slot`
  };
  std::vector<Hint> hint_;  // by line number (masked): a slot that holds such a line
  uint64_t hint_mask_ = 0;
  std::vector<uint64_t> tags_, stamps_;
  static constexpr uint32_t kNoSlot = ~0u;
  std::vector<uint32_t> mru_;  // by set: the slot stamped last (its stamp is the set's highest)
  // By line number (masked as hints are): lines that are the most recently used of their set, or
  // kInvalid; a line is missing where another took its index. A data hit on such a line changes
  // nothing but data.hits: the core counts it without calling (mru_lines()).
  std::vector<uint64_t> mru_lines_;
};

class CacheHierarchy {
 public:
  // Levels of size 0 are absent (the CPU has no such cache). Latencies must not decrease from one
  // level to the next nor beyond the memory latency: the cost of an access beyond the first
  // level's hit is then never negative.
  CacheHierarchy(const std::vector<CacheGeometry>& levels, uint64_t memory_latency)
      : memory_latency_(memory_latency) {
    for (const CacheGeometry& g : levels) {
      if (g.size == 0) continue;
      const uint64_t below = levels_.empty() ? 0 : levels_.back().geometry().latency;
      if (g.latency < below)
        throw std::invalid_argument("cache " + g.name + ": hit latency " + std::to_string(g.latency) +
                                    " is below the previous level's " + std::to_string(below));
      if (g.latency > memory_latency)
        throw std::invalid_argument("cache " + g.name + ": hit latency " + std::to_string(g.latency) +
                                    " is above the memory latency " + std::to_string(memory_latency));
      if (!levels_.empty() && g.line != levels_.front().geometry().line)
        throw std::invalid_argument("cache " + g.name + ": every level must have the same line size");
      levels_.emplace_back(g);
    }
  }
  // Cycles one access of `paddr` costs. The MMU's page walk calls it with the default requester.
  uint64_t access(uint64_t paddr, CacheRequester who = CacheRequester::PageWalk) {
    for (SetAssociativeCache& level : levels_)
      if (level.access(paddr, who)) return level.geometry().latency;
    return memory_latency_;
  }
  // Cycles of a data access of `size` bytes at `paddr` beyond a first-level hit (which the
  // instruction's CPI already covers): each line it touches is one access.
  uint64_t data_access_extra_cycles(uint64_t paddr, unsigned size) {
    if (!levels_.empty() && levels_.front().hits_hinted(paddr, size, CacheRequester::Data)) [[likely]]
      return 0;  // an L1 hit costs nothing beyond the CPI
    return data_access_extra_search(paddr, size);
  }
  std::vector<SetAssociativeCache>& levels() { return levels_; }
  // The first level, or null with none (the data-access timer lists its most recently used lines
  // for the core, SetAssociativeCache::mru_lines).
  SetAssociativeCache* first_level() { return levels_.empty() ? nullptr : &levels_.front(); }
  uint64_t memory_latency() const { return memory_latency_; }
  // The latency of a hit in the first level (with no level, of memory).
  uint64_t first_level_latency() const {
    return levels_.empty() ? memory_latency_ : levels_.front().geometry().latency;
  }
  uint64_t line_bytes() const { return levels_.empty() ? kNoCacheLine : levels_.front().geometry().line; }

 private:
  static constexpr uint64_t kNoCacheLine = 64;  // with no level, an access counts once per 64 bytes
  [[gnu::noinline]] uint64_t data_access_extra_search(uint64_t paddr, unsigned size) {
    const uint64_t line = line_bytes();
    uint64_t extra = 0;
    for (uint64_t a = paddr & ~(line - 1); a < paddr + size; a += line)
      extra += access(a, CacheRequester::Data) - first_level_latency();
    return extra;
  }
  std::vector<SetAssociativeCache> levels_;
  uint64_t memory_latency_;
};

}  // namespace pgsim::models

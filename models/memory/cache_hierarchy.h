// An optional set-associative cache hierarchy (for example L1D, L2, LLC) with LRU replacement,
// through which page-walk references (and, where the core reports them, data accesses) are timed:
// an access costs the latency of the first level that holds its line, or the memory latency when
// none does, and fills every level it missed (inclusive). Disabled, every access costs the memory
// latency.
#pragma once
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

class SetAssociativeCache {
 public:
  explicit SetAssociativeCache(const CacheGeometry& g) : geometry_(g) {
    if (g.line == 0 || (g.line & (g.line - 1)) || g.ways == 0 || g.size % (uint64_t{g.line} * g.ways))
      throw std::invalid_argument("cache " + g.name + ": size must be a multiple of line x ways, line a power of two");
    sets_ = g.size / (uint64_t{g.line} * g.ways);
    tags_.assign(sets_ * g.ways, kInvalid);
    stamps_.assign(sets_ * g.ways, 0);
  }
  // True on a hit; on a miss the line is filled (LRU victim).
  bool access(uint64_t paddr) {
    const uint64_t line = paddr / geometry_.line;
    const uint64_t set = line % sets_;
    uint64_t* tags = &tags_[set * geometry_.ways];
    uint64_t* stamps = &stamps_[set * geometry_.ways];
    unsigned victim = 0;
    for (unsigned w = 0; w < geometry_.ways; ++w) {
      if (tags[w] == line) { stamps[w] = ++clock_; ++hits; return true; }
      if (stamps[w] < stamps[victim]) victim = w;
    }
    tags[victim] = line;
    stamps[victim] = ++clock_;
    ++misses;
    return false;
  }
  const CacheGeometry& geometry() const { return geometry_; }

  uint64_t hits = 0, misses = 0;

 private:
  static constexpr uint64_t kInvalid = ~0ull;
  CacheGeometry geometry_;
  uint64_t sets_ = 0, clock_ = 0;
  std::vector<uint64_t> tags_, stamps_;
};

class CacheHierarchy {
 public:
  CacheHierarchy(const std::vector<CacheGeometry>& levels, uint64_t memory_latency)
      : memory_latency_(memory_latency) {
    for (const CacheGeometry& g : levels) levels_.emplace_back(g);
  }
  // Cycles one access of `paddr` costs.
  uint64_t access(uint64_t paddr) {
    for (SetAssociativeCache& level : levels_)
      if (level.access(paddr)) return level.geometry().latency;
    return memory_latency_;
  }
  std::vector<SetAssociativeCache>& levels() { return levels_; }
  uint64_t memory_latency() const { return memory_latency_; }

 private:
  std::vector<SetAssociativeCache> levels_;
  uint64_t memory_latency_;
};

}  // namespace pgsim::models

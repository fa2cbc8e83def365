// Times the core's data accesses through the cache hierarchy (the core's DataAccessObserver when the
// hierarchy is enabled): an access that hits the first level costs nothing beyond the instruction's
// CPI; any other adds the cycles the hierarchy charges beyond a first-level hit to the CPU's memory
// bucket. Hits on a line its set used last are counted by the core itself (filter()); the others
// reach the hierarchy, whose first level checks its hint before any search. An object of its own
// rather than a base of the CPU, so that the core's call reaches it without a this-adjusting thunk.
#pragma once
#include <cstdint>

#include "isa/core_if.h"
#include "models/memory/cache_hierarchy.h"

namespace pgsim::models {

class DataAccessTimer final : public isa::DataAccessObserver {
 public:
  // `cycles`: the bucket the extra cycles go to.
  DataAccessTimer(CacheHierarchy& caches, uint64_t& cycles)
      : caches_(caches), first_(caches.first_level()), cycles_(cycles) {}

  // The first level's lines that are their set's most recently used: the core counts a data hit
  // there itself, without a call (the common access, a loop's stack and table lines).
  isa::DataAccessFilter filter() const override {
    if (!first_) return {};
    return {first_->mru_lines(), first_->line_mask(), first_->line_shift(), &first_->data.hits};
  }

  void on_data_access(uint64_t paddr, unsigned size, bool /*write: write-allocate, timed as a read*/) override {
    cycles_ += caches_.data_access_extra_cycles(paddr, size);
  }

 private:
  CacheHierarchy& caches_;
  SetAssociativeCache* first_;  // the first level, whose most recently used lines filter() lists
  uint64_t& cycles_;
};

}  // namespace pgsim::models

// What a TLB's geometry predicts for a cyclic loop over consecutive 4 KiB pages.
#pragma once
#include <cstdint>
#include <vector>

namespace pgsim::models {

// Misses per round of a loop over `pages` consecutive pages starting at page number `first_vpn`,
// once the TLB is warm: with LRU, a set holding more pages than ways misses on every access to
// it; a set holding no more than its ways never misses after the first round.
inline uint64_t predicted_misses_per_round(unsigned entries, unsigned ways, unsigned pages, uint64_t first_vpn) {
  const unsigned sets = entries / ways;
  std::vector<unsigned> per_set(sets, 0);
  for (unsigned i = 0; i < pages; ++i) ++per_set[(first_vpn + i) % sets];
  uint64_t misses = 0;
  for (unsigned n : per_set)
    if (n > ways) misses += n;
  return misses;
}

}  // namespace pgsim::models

// The VMM's cycle buckets. Every cycle a strategy charges lands in one named bucket, published as
// sim.cycles.<bucket> next to the platform's own buckets; the platform's clock adds total() so
// that the buckets add up to the cycles the guest saw pass (RDTSC, timers).
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <string>

namespace pgsim::vmm {

class VmmCycles {
 public:
  struct Bucket {
    std::string name;         // "vmm_trap" is published as sim.cycles.vmm_trap
    std::string description;  // one line
    std::function<uint64_t()> value;  // cycles charged so far, read live
    uint64_t snapshot = 0;    // value() at the last update_snapshot(), which the registry reads
  };

  // A bucket charged through charge(): returns its counter.
  uint64_t& add_counter(std::string name, std::string description) {
    counters_.push_back(0);
    uint64_t& counter = counters_.back();
    buckets_.push_back({std::move(name), std::move(description), [&counter] { return counter; }, 0});
    return counter;
  }
  // A bucket computed from live counts (e.g. instructions interpreted times a cost).
  void add_formula(std::string name, std::string description, std::function<uint64_t()> value) {
    buckets_.push_back({std::move(name), std::move(description), std::move(value), 0});
  }

  uint64_t total() const {
    uint64_t sum = 0;
    for (const Bucket& b : buckets_) sum += b.value();
    return sum;
  }
  void update_snapshot() {
    for (Bucket& b : buckets_) b.snapshot = b.value();
  }
  const std::deque<Bucket>& buckets() const { return buckets_; }

 private:
  std::deque<uint64_t> counters_;  // stable addresses
  std::deque<Bucket> buckets_;
};

}  // namespace pgsim::vmm

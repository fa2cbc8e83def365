// Counts by name, for the ways into a VMM whose reasons are known only as a run goes (VM exits
// by the SDM's exit-reason name, callouts and hypercalls by operation, emulated instructions by
// mnemonic): published as <prefix>.total and <prefix>.<name>, only for the names a run met.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace pgsim::vmm {

class ReasonLog {
 public:
  void record(const std::string& name, uint64_t times = 1) {
    by_name_[name] += times;
    total_ += times;
    if (observer_)
      for (uint64_t i = 0; i < times; ++i) observer_(name);
  }
  // Called with the name at each record (a trace of the run); empty: nothing is called.
  void set_observer(std::function<void(const std::string&)> observer) { observer_ = std::move(observer); }
  // How many times `name` was recorded.
  uint64_t of(const std::string& name) const {
    const auto it = by_name_.find(name);
    return it == by_name_.end() ? 0 : it->second;
  }
  const uint64_t& total() const { return total_; }
  // For stats::Registry::bind_family.
  const std::map<std::string, uint64_t>& by_name() const { return by_name_; }

 private:
  std::map<std::string, uint64_t> by_name_;
  uint64_t total_ = 0;
  std::function<void(const std::string&)> observer_;
};

}  // namespace pgsim::vmm

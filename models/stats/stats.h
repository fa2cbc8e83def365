// pgsim statistics: a registry of named figures, each with a unit and a one-line description.
//
// Modules keep plain uint64_t counters in their hot paths and bind them here by pointer, so that
// counting costs one increment; the registry reads them only when a report is made. Names are
// dotted and grouped by module: "cpu.insts.user", "mmu.walk.refs", "vmm.traps.gp".
//
// Cycle accounting: every cycle charged belongs to a named bucket, bound with
// bind_cycle_bucket("guest", ...) and published as "sim.cycles.guest"; "sim.cycles" is their sum,
// and check_cycle_total() proves at the end of a run that the buckets add up to the clock.
//
// Plain C++ (no SystemC), so that every layer and every test can use it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace pgsim::stats {

enum class Unit { Count, Cycles, Instructions, Bytes, Seconds, Ratio, Hertz, InstructionsPerSecond };
std::string_view unit_name(Unit);  // "count", "cycles", "instructions", "bytes", "s", "ratio", "Hz", "insts/s"

// A misuse of the registry: a malformed or duplicate name, a histogram with bad edges.
struct StatsError : std::logic_error {
  using std::logic_error::logic_error;
};
// The cycle buckets do not add up to the platform's clock.
struct CycleMismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One statistic as read at a snapshot.
struct Sample {
  std::string name;
  Unit unit;
  std::string description;
  std::variant<uint64_t, double> value;  // counters are exact integers; formulas are reals
  double number() const;                 // the value as a real
  std::string text() const;              // "1234", "0.25", "nan"
};

// A distribution over fixed bucket edges e0 < e1 < ... < en: bucket i counts samples in
// [e_i, e_(i+1)); samples below e0 and at or above en are counted as underflow and overflow.
// Published as <name>.samples, <name>.mean, <name>.min, <name>.max, <name>.underflow,
// <name>.bucket_<i> (one per interval) and <name>.overflow.
class Histogram {
 public:
  explicit Histogram(std::vector<double> edges);
  void sample(double value, uint64_t times = 1);
  const std::vector<double>& edges() const { return edges_; }
  const std::vector<uint64_t>& buckets() const { return buckets_; }
  uint64_t underflow() const { return underflow_; }
  uint64_t overflow() const { return overflow_; }
  uint64_t samples() const { return samples_; }
  double sum() const { return sum_; }
  double min() const { return min_; }  // NaN when there are no samples
  double max() const { return max_; }  // NaN when there are no samples
  double mean() const;                 // NaN when there are no samples

 private:
  std::vector<double> edges_;
  std::vector<uint64_t> buckets_;
  uint64_t underflow_ = 0, overflow_ = 0, samples_ = 0;
  double sum_ = 0, min_, max_;
};

class Registry {
 public:
  Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Modules keep plain uint64_t counters in hot paths and bind them here by pointer.
  // The counter must outlive the registry's last snapshot.
  void bind(std::string name, Unit, std::string description, const uint64_t* value);
  // A value computed when the stats are read (ratios, sums).
  void formula(std::string name, Unit, std::string description, std::function<double()>);
  // A histogram with fixed bucket edges (strictly increasing, at least two). The reference stays
  // valid as long as the registry.
  Histogram& histogram(std::string name, Unit, std::string description, std::vector<double> edges);
  // Counters whose names are known only as the run goes (one per mnemonic, say): each key of
  // `*counters` is published as <prefix>.<key> with the description "<description>: <key>".
  // Keys must make valid names that no other statistic has; the map must outlive the registry's
  // last snapshot, like a bound counter.
  void bind_family(std::string prefix, Unit, std::string description,
                   const std::map<std::string, uint64_t>* counters);
  // A cycle bucket: published as sim.cycles.<bucket>; sim.cycles is their sum.
  void bind_cycle_bucket(std::string bucket, std::string description, const uint64_t* cycles);
  uint64_t total_cycles() const;
  // Checks that the buckets add up to the clock the platform kept; throws CycleMismatch with the
  // figures (every bucket, their sum, the clock and the difference) if not.
  void check_cycle_total(uint64_t clock_cycles) const;
  // Snapshot of every statistic (name -> value, unit, description), sorted by name.
  std::vector<Sample> snapshot() const;

  // Reads every bound counter, formula and histogram now and keeps the values: later snapshots
  // return them, and the objects that own the counters may then be destroyed. No statistic can be
  // added after this.
  void freeze();
  bool frozen() const { return frozen_.has_value(); }

  bool contains(std::string_view name) const;

 private:
  struct Histo {
    Unit unit;
    std::string description;
    std::unique_ptr<Histogram> histogram;
  };
  struct Entry {
    Unit unit;
    std::string description;
    std::variant<const uint64_t*, std::function<double()>, Histo*, const std::map<std::string, uint64_t>*>
        source;
  };
  void add(std::string name, Entry entry);

  std::map<std::string, Entry, std::less<>> entries_;
  std::deque<Histo> histograms_;
  std::vector<std::pair<std::string, const uint64_t*>> cycle_buckets_;  // in binding order
  std::optional<std::vector<Sample>> frozen_;
  uint64_t frozen_cycles_ = 0;
};

// Checks a statistic name: dotted, each part of lower-case letters, digits and '_'.
bool valid_name(std::string_view name);

// --- outputs ------------------------------------------------------------------------------------

// A readable table for the terminal: one block per module (the name's first part), aligned
// columns, large integers with thousands separators.
void write_table(std::ostream&, const std::vector<Sample>&);
// gem5-style text: one line per statistic, `name  value  # description (unit)`.
void write_text(std::ostream&, const std::vector<Sample>&);
// A flat JSON object: name -> value (integers stay integers; NaN becomes null).
nlohmann::json to_json(const std::vector<Sample>&);
// JSON object: name -> {"unit": ..., "description": ...}, for readers of the flat object.
nlohmann::json describe_json(const std::vector<Sample>&);

}  // namespace pgsim::stats

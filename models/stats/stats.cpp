#include "models/stats/stats.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iomanip>
#include <limits>
#include <ostream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace pgsim::stats {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::string_view kCycles = "sim.cycles";

std::string format_real(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v, std::chars_format::general, 6);
  return std::string(buffer, end);
}

std::string module_of(const std::string& name) { return name.substr(0, name.find('.')); }

}  // namespace

std::string_view unit_name(Unit unit) {
  switch (unit) {
    case Unit::Count: return "count";
    case Unit::Cycles: return "cycles";
    case Unit::Instructions: return "instructions";
    case Unit::Bytes: return "bytes";
    case Unit::Seconds: return "s";
    case Unit::Ratio: return "ratio";
    case Unit::Hertz: return "Hz";
    case Unit::InstructionsPerSecond: return "insts/s";
  }
  return "?";
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.front() == '.' || name.back() == '.') return false;
  char previous = 0;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
    if (!ok || (c == '.' && previous == '.')) return false;
    previous = c;
  }
  return true;
}

double Sample::number() const {
  if (auto* i = std::get_if<uint64_t>(&value)) return static_cast<double>(*i);
  return std::get<double>(value);
}

std::string Sample::text() const {
  if (auto* i = std::get_if<uint64_t>(&value)) return std::to_string(*i);
  return format_real(std::get<double>(value));
}

// --- Histogram ----------------------------------------------------------------------------------

Histogram::Histogram(std::vector<double> edges)
    : edges_(std::move(edges)), min_(kNaN), max_(kNaN) {
  if (edges_.size() < 2) throw StatsError("a histogram needs at least two bucket edges");
  for (size_t i = 0; i < edges_.size(); ++i) {
    if (!std::isfinite(edges_[i])) throw StatsError("histogram bucket edges must be finite");
    if (i > 0 && !(edges_[i] > edges_[i - 1]))
      throw StatsError("histogram bucket edges must be strictly increasing");
  }
  buckets_.assign(edges_.size() - 1, 0);
}

void Histogram::sample(double value, uint64_t times) {
  if (times == 0) return;
  if (value < edges_.front()) {
    underflow_ += times;
  } else if (value >= edges_.back()) {
    overflow_ += times;
  } else {
    // The bucket whose lower edge is the last edge <= value.
    auto upper = std::upper_bound(edges_.begin(), edges_.end(), value);
    buckets_[static_cast<size_t>(upper - edges_.begin()) - 1] += times;
  }
  samples_ += times;
  sum_ += value * static_cast<double>(times);
  min_ = samples_ == times ? value : std::min(min_, value);
  max_ = samples_ == times ? value : std::max(max_, value);
}

double Histogram::mean() const {
  return samples_ ? sum_ / static_cast<double>(samples_) : kNaN;
}

// --- Registry -----------------------------------------------------------------------------------

Registry::Registry() {
  add(std::string(kCycles),
      Entry{Unit::Cycles, "all simulated cycles: the sum of the sim.cycles.<bucket> figures",
            std::function<double()>()});
}

void Registry::add(std::string name, Entry entry) {
  if (frozen_) throw StatsError("statistic '" + name + "' added after the registry was frozen");
  if (!valid_name(name))
    throw StatsError("statistic name '" + name +
                     "' is not dotted lower-case letters, digits and '_'");
  if (entry.description.empty()) throw StatsError("statistic '" + name + "' has no description");
  if (entries_.find(name) != entries_.end())
    throw StatsError("statistic '" + name + "' is registered twice");
  entries_.emplace(std::move(name), std::move(entry));
}

bool Registry::contains(std::string_view name) const {
  return entries_.find(name) != entries_.end();
}

void Registry::bind(std::string name, Unit unit, std::string description, const uint64_t* value) {
  if (!value) throw StatsError("statistic '" + name + "' is bound to a null counter");
  add(std::move(name), Entry{unit, std::move(description), value});
}

void Registry::formula(std::string name, Unit unit, std::string description,
                       std::function<double()> compute) {
  if (!compute) throw StatsError("statistic '" + name + "' has an empty formula");
  add(std::move(name), Entry{unit, std::move(description), std::move(compute)});
}

Histogram& Registry::histogram(std::string name, Unit unit, std::string description,
                               std::vector<double> edges) {
  auto owned = std::make_unique<Histogram>(std::move(edges));
  Histo& h = histograms_.emplace_back(Histo{unit, description, std::move(owned)});
  try {
    add(std::move(name), Entry{unit, std::move(description), &h});
  } catch (...) {
    histograms_.pop_back();
    throw;
  }
  return *h.histogram;
}

void Registry::bind_family(std::string prefix, Unit unit, std::string description,
                           const std::map<std::string, uint64_t>* counters) {
  if (!counters) throw StatsError("statistic family '" + prefix + "' is bound to a null map");
  add(std::move(prefix), Entry{unit, std::move(description), counters});
}

void Registry::bind_cycle_bucket(std::string bucket, std::string description,
                                 const uint64_t* cycles) {
  std::string name = std::string(kCycles) + "." + bucket;
  bind(name, Unit::Cycles, std::move(description), cycles);
  cycle_buckets_.emplace_back(bucket, cycles);
}

uint64_t Registry::total_cycles() const {
  if (frozen_) return frozen_cycles_;
  uint64_t total = 0;
  for (const auto& [bucket, cycles] : cycle_buckets_) total += *cycles;
  return total;
}

void Registry::check_cycle_total(uint64_t clock_cycles) const {
  uint64_t total = total_cycles();
  if (total == clock_cycles) return;
  std::ostringstream message;
  message << "cycle buckets do not add up to the clock: buckets sum to " << total
          << " cycles, the clock counted " << clock_cycles << " (difference "
          << static_cast<int64_t>(total - clock_cycles) << ");";
  for (const auto& sample : snapshot())
    if (sample.name.rfind(std::string(kCycles) + ".", 0) == 0)
      message << " " << sample.name << "=" << sample.text();
  throw CycleMismatch(message.str());
}

void Registry::freeze() {
  if (frozen_) return;
  frozen_cycles_ = total_cycles();
  frozen_ = snapshot();
}

std::vector<Sample> Registry::snapshot() const {
  if (frozen_) return *frozen_;
  std::vector<Sample> samples;
  for (const auto& [name, entry] : entries_) {
    if (name == kCycles) {
      samples.push_back({name, entry.unit, entry.description, total_cycles()});
    } else if (auto* counter = std::get_if<const uint64_t*>(&entry.source)) {
      samples.push_back({name, entry.unit, entry.description, **counter});
    } else if (auto* compute = std::get_if<std::function<double()>>(&entry.source)) {
      samples.push_back({name, entry.unit, entry.description, (*compute)()});
    } else if (auto* family = std::get_if<const std::map<std::string, uint64_t>*>(&entry.source)) {
      for (const auto& [key, value] : **family) {
        std::string member = name + "." + key;
        if (!valid_name(member) || entries_.find(member) != entries_.end())
          throw StatsError("statistic '" + member + "' of family '" + name +
                           "' is not a valid name or is registered twice");
        samples.push_back({std::move(member), entry.unit, entry.description + ": " + key, value});
      }
    } else {
      const Histogram& h = *std::get<Histo*>(entry.source)->histogram;
      auto part = [&](const std::string& suffix, Unit unit, std::string description,
                      std::variant<uint64_t, double> value) {
        samples.push_back({name + "." + suffix, unit, entry.description + ": " + description,
                           value});
      };
      part("samples", Unit::Count, "number of samples", h.samples());
      part("mean", entry.unit, "mean", h.mean());
      part("min", entry.unit, "smallest sample", h.min());
      part("max", entry.unit, "largest sample", h.max());
      part("underflow", Unit::Count, "samples below " + format_real(h.edges().front()),
           h.underflow());
      for (size_t i = 0; i < h.buckets().size(); ++i)
        part("bucket_" + std::to_string(i), Unit::Count,
             "samples in [" + format_real(h.edges()[i]) + ", " + format_real(h.edges()[i + 1]) +
                 ")",
             h.buckets()[i]);
      part("overflow", Unit::Count, "samples at or above " + format_real(h.edges().back()),
           h.overflow());
    }
  }
  std::sort(samples.begin(), samples.end(),
            [](const Sample& a, const Sample& b) { return a.name < b.name; });
  return samples;
}

// --- outputs ------------------------------------------------------------------------------------

namespace {

// "1234567" -> "1,234,567"; reals are left as they are.
std::string readable(const Sample& s) {
  if (!std::holds_alternative<uint64_t>(s.value)) return s.text();
  std::string digits = s.text(), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace

void write_table(std::ostream& out, const std::vector<Sample>& samples) {
  size_t name_width = 0, value_width = 0, unit_width = 0;
  for (const auto& s : samples) {
    name_width = std::max(name_width, s.name.size());
    value_width = std::max(value_width, readable(s).size());
    unit_width = std::max(unit_width, unit_name(s.unit).size());
  }
  std::string module;
  for (const auto& s : samples) {
    if (module_of(s.name) != module) {
      module = module_of(s.name);
      out << "\n" << module << "\n";
    }
    out << "  " << std::left << std::setw(static_cast<int>(name_width)) << s.name << "  "
        << std::right << std::setw(static_cast<int>(value_width)) << readable(s) << " "
        << std::left << std::setw(static_cast<int>(unit_width)) << unit_name(s.unit) << "  "
        << s.description << "\n";
  }
}

void write_text(std::ostream& out, const std::vector<Sample>& samples) {
  size_t name_width = 0, value_width = 0;
  for (const auto& s : samples) {
    name_width = std::max(name_width, s.name.size());
    value_width = std::max(value_width, s.text().size());
  }
  for (const auto& s : samples)
    out << std::left << std::setw(static_cast<int>(name_width)) << s.name << "  " << std::right
        << std::setw(static_cast<int>(value_width)) << s.text() << "  # " << s.description << " ("
        << unit_name(s.unit) << ")\n";
}

nlohmann::json to_json(const std::vector<Sample>& samples) {
  nlohmann::json flat = nlohmann::json::object();
  for (const auto& s : samples) {
    if (auto* i = std::get_if<uint64_t>(&s.value)) flat[s.name] = *i;
    else if (double d = std::get<double>(s.value); std::isfinite(d)) flat[s.name] = d;
    else flat[s.name] = nullptr;
  }
  return flat;
}

nlohmann::json describe_json(const std::vector<Sample>& samples) {
  nlohmann::json described = nlohmann::json::object();
  for (const auto& s : samples)
    described[s.name] = {{"unit", unit_name(s.unit)}, {"description", s.description}};
  return described;
}

}  // namespace pgsim::stats

// Reading a sweep file, and expanding its matrix into runs whose configs are all checked first.
#include "platforms/cli/sweep_file.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "platforms/cli/child_runs.h"
#include "platforms/config/config.h"

namespace pgsim::cli {

namespace fs = std::filesystem;

const std::vector<std::string>& default_sweep_stats() {
  static const std::vector<std::string> stats = {
      "run.end",         "run.exit_status",  "cpu.insts.total", "cpu.insts.kernel",
      "cpu.insts.user",  "sim.cycles",       "sim.cycles.*",    "mmu.tlb.*.misses",
      "mmu.walk.count",  "mmu.walk.refs",    "vmm.traps.total", "vmm.leaks.total",
      "vmm.resource_control.violations",     "vmm.efficiency.direct_fraction"};
  return stats;
}

namespace {

// Run ids longer than this end in a hash of the whole id instead, to stay a valid folder name.
constexpr size_t kLongestRunId = 160;

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

bool is_folder_name(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// 64-bit FNV-1a, as eight hex digits of its low half: a short, stable tag of a text.
std::string short_hash(const std::string& text) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  char out[9];
  std::snprintf(out, sizeof out, "%08x", static_cast<unsigned>(h & 0xffffffffu));
  return out;
}

// A value as `--set` reads it: double-quoted YAML, so that no character of the value (a '#', a
// ': ', a leading '[') changes its meaning; paths resolved against the sweep file's folder, as a
// config file's paths are against the file's.
class ValueReader {
 public:
  explicit ValueReader(const fs::path& file) : file_(file), folder_(fs::absolute(file).parent_path()) {}

  SweepValue read(const std::string& key, const YAML::Node& node) const {
    const config::KeySpec* spec = config::Schema::builtin().find(key);
    const bool list = spec->type == config::Type::StringList || spec->type == config::Type::PathList;
    SweepValue value{"", {}, location_of(node)};
    if (key == "vmm.strategy") {
      value.text = node.IsScalar() ? node.Scalar() : "";
      for (const std::string& assignment : strategy_entry(file_, node, key).assignments())
        value.assignments.push_back(quoted(assignment));
      return value;
    }
    YAML::Emitter out;
    out << YAML::DoubleQuoted;
    if (node.IsScalar()) {
      value.text = node.Scalar();
      out << resolved(*spec, node.Scalar());
    } else if (list && node.IsSequence()) {
      std::vector<std::string> texts;
      out << YAML::Flow << YAML::BeginSeq;
      for (const YAML::Node& item : node) {
        if (!item.IsScalar()) fail_at(file_, location_of(item), key, "every entry of a list value must be plain text");
        texts.push_back(item.Scalar());
        out << resolved(*spec, item.Scalar());
      }
      out << YAML::EndSeq;
      value.text = "[" + join(texts, ", ") + "]";
    } else {
      fail_at(file_, location_of(node), key,
           list ? "must be a value or a list of values" : "must be a single value (text, number or true/false)");
    }
    value.assignments = {key + "=" + out.c_str()};
    return value;
  }

 private:
  // "key=value" with the value double-quoted.
  static std::string quoted(const std::string& assignment) {
    const size_t eq = assignment.find('=');
    YAML::Emitter out;
    out << YAML::DoubleQuoted << assignment.substr(eq + 1);
    return assignment.substr(0, eq + 1) + out.c_str();
  }

  std::string resolved(const config::KeySpec& spec, const std::string& text) const {
    using config::Type;
    const bool path = spec.type == Type::Path || spec.type == Type::PathList ||
                      (spec.type == Type::EnumOrPath &&
                       std::find(spec.allowed.begin(), spec.allowed.end(), text) == spec.allowed.end());
    if (!path || text.empty() || fs::path(text).is_absolute()) return text;
    return (folder_ / text).lexically_normal().string();
  }

  fs::path file_, folder_;
};

// A key under matrix: or set: must be a config key that a sweep may set.
void check_config_key(const fs::path& file, const YAML::Node& key_node) {
  const std::string key = key_node.Scalar();
  const config::Schema& schema = config::Schema::builtin();
  if (key == "run.name")
    fail_at(file, location_of(key_node), key, "is set by the sweep: each run is named after its matrix values");
  if (schema.find(key)) return;
  if (schema.is_section(key)) {
    std::vector<std::string> under;
    for (const config::KeySpec& spec : schema.keys())
      if (spec.key.rfind(key + ".", 0) == 0 && under.size() < 3) under.push_back(spec.key);
    fail_at(file, location_of(key_node), key,
         "is a section, not a config key; name a key under it (such as " + join(under, ", ") + ")");
  }
  std::string message = "unknown config key";
  if (std::string near = schema.suggest(key); !near.empty()) message += "; did you mean '" + near + "'?";
  fail_at(file, location_of(key_node), key, message);
}

// The map under `section`, each key checked and each value read.
template <typename OnEntry>
void read_config_map(const fs::path& file, const YAML::Node& root, const std::string& section, OnEntry on_entry) {
  const YAML::Node map = root[section];
  if (!map.IsMap()) fail_at(file, location_of(map), section, "must be a map of config keys");
  std::set<std::string> seen;
  for (const auto& entry : map) {
    if (!entry.first.IsScalar()) fail_at(file, location_of(entry.first), section, "a key must be plain text");
    check_config_key(file, entry.first);
    if (!seen.insert(entry.first.Scalar()).second)
      fail_at(file, location_of(entry.first), entry.first.Scalar(), "given twice under " + section + ":");
    on_entry(entry.first.Scalar(), entry.second);
  }
}

// The shortest ending of each key, in whole dotted parts, that no other key shares ("entries" for
// mmu.tlb.l1d.entries alone, "l1d-entries" beside mmu.tlb.l2.entries).
void label_axes(std::vector<MatrixAxis>& axes) {
  const auto ending = [](const std::string& key, size_t parts) {
    size_t at = key.size();
    for (size_t i = 0; i < parts && at != std::string::npos && at > 0; ++i) at = key.rfind('.', at - 1);
    std::string tail = at == std::string::npos ? key : key.substr(at + 1);
    std::replace(tail.begin(), tail.end(), '.', '-');
    return tail;
  };
  for (MatrixAxis& axis : axes) {
    for (size_t parts = 1;; ++parts) {
      axis.label = ending(axis.key, parts);
      const bool unique = std::none_of(axes.begin(), axes.end(), [&](const MatrixAxis& other) {
        return &other != &axis && ending(other.key, parts) == axis.label;
      });
      if (unique || axis.label == ending(axis.key, parts + 1)) break;
    }
  }
}

}  // namespace

Sweep load_sweep(const fs::path& file) {
  const YAML::Node root = load_run_file(file, "sweep file", {"name", "base", "set", "matrix", "stats"});
  Sweep sweep;
  sweep.file = file;
  sweep.name = file.stem().string();
  if (const YAML::Node name = root["name"]) {
    if (!name.IsScalar()) fail_at(file, location_of(name), "name", "must be text");
    sweep.name = name.Scalar();
  }
  if (!is_folder_name(sweep.name))
    fail_at(file, location_of(root["name"] ? root["name"] : root), "name",
         "the sweep's name '" + sweep.name + "' must be a folder name of letters, digits, '-', '_' and '.'");

  sweep.base = base_config(file, root);

  const ValueReader values(file);
  if (root["set"])
    read_config_map(file, root, "set", [&](const std::string& key, const YAML::Node& node) {
      sweep.set.emplace_back(key, values.read(key, node));
    });

  if (!root["matrix"]) fail_at(file, location_of(root), "matrix", "missing (a map of config keys to lists of values)");
  read_config_map(file, root, "matrix", [&](const std::string& key, const YAML::Node& node) {
    for (const auto& [set_key, set_value] : sweep.set)
      if (set_key == key)
        fail_at(file, set_value.at, key, "is both under set: and under matrix:; keep one");
    if (!node.IsSequence() || node.size() == 0)
      fail_at(file, location_of(node), key, "must be a non-empty list of values (for a single value, use set:)");
    MatrixAxis axis{key, "", {}};
    for (const YAML::Node& item : node) {
      SweepValue value = values.read(key, item);
      for (const SweepValue& earlier : axis.values)
        if (earlier.text == value.text)
          fail_at(file, value.at, key, "the value '" + value.text + "' is listed twice");
      axis.values.push_back(std::move(value));
    }
    sweep.matrix.push_back(std::move(axis));
  });
  if (sweep.matrix.empty()) fail_at(file, location_of(root["matrix"]), "matrix", "names no config key to vary");
  const auto names_paging = [&](const std::string& key) { return key == "vmm.paging"; };
  for (const MatrixAxis& axis : sweep.matrix)
    for (const SweepValue& value : axis.values)
      if (value.assignments.size() > 1 &&
          (std::any_of(sweep.set.begin(), sweep.set.end(), [&](const auto& s) { return names_paging(s.first); }) ||
           std::any_of(sweep.matrix.begin(), sweep.matrix.end(), [&](const MatrixAxis& a) { return names_paging(a.key); })))
        fail_at(file, value.at, axis.key,
                "'" + value.text + "' sets vmm.paging, which the sweep sets as well; keep one");
  label_axes(sweep.matrix);

  if (const YAML::Node stats = root["stats"]) {
    if (!stats.IsSequence() || stats.size() == 0)
      fail_at(file, location_of(stats), "stats", "must be a non-empty list of statistic names or patterns");
    sweep.default_stats = false;
    for (const YAML::Node& item : stats) {
      if (!item.IsScalar() || item.Scalar().empty())
        fail_at(file, location_of(item), "stats", "every entry must be a statistic name or a pattern such as vmm.traps.*");
      sweep.stats.push_back({item.Scalar(), location_of(item)});
    }
  } else {
    for (const auto& name : default_sweep_stats()) sweep.stats.push_back({name, {}});
  }
  return sweep;
}

namespace {

// The id of a run: label-value pairs joined by '.' ("strategy-native.entries-32").
std::string run_id(const Sweep& sweep, const std::vector<size_t>& choice) {
  std::vector<std::string> parts;
  for (size_t axis = 0; axis < sweep.matrix.size(); ++axis) {
    const MatrixAxis& a = sweep.matrix[axis];
    parts.push_back(a.label + "-" + folder_name_part(a.values[choice[axis]].text));
  }
  std::string id = join(parts, ".");
  if (id.size() > kLongestRunId) {
    const std::string tag = short_hash(id);
    id.resize(kLongestRunId - tag.size() - 1);
    id.append(1, '-').append(tag);
  }
  return id;
}

// Values that differ only in characters a folder name cannot hold give the same id: each such run
// gets a tag of its exact values.
void make_ids_unique(const Sweep& sweep, std::vector<SweepRun>& runs) {
  std::map<std::string, size_t> count;
  for (const SweepRun& run : runs) ++count[run.id];
  for (SweepRun& run : runs) {
    if (count[run.id] == 1) continue;
    std::string exact;
    for (size_t axis = 0; axis < sweep.matrix.size(); ++axis)
      for (const std::string& assignment : sweep.matrix[axis].values[run.choice[axis]].assignments)
        exact += assignment + "\n";
    run.id.append(1, '-').append(short_hash(exact));
  }
}

std::vector<std::vector<size_t>> cross_product(const std::vector<MatrixAxis>& matrix) {
  std::vector<std::vector<size_t>> choices = {{}};
  for (const MatrixAxis& axis : matrix) {
    std::vector<std::vector<size_t>> longer;
    for (const auto& prefix : choices)
      for (size_t v = 0; v < axis.values.size(); ++v) {
        longer.push_back(prefix);
        longer.back().push_back(v);
      }
    choices = std::move(longer);
  }
  return choices;
}

std::string assignment_key(const std::string& assignment) {
  std::string key = assignment.substr(0, assignment.find('='));
  key.erase(0, key.find_first_not_of(" \t"));
  key.erase(key.find_last_not_of(" \t") + 1);
  return key;
}

// The overrides of one run: set:, its matrix values (only `axes` when given), the command line,
// run.name.
std::vector<std::string> overrides_of(const Sweep& sweep, const std::vector<size_t>& choice,
                                      const std::vector<std::string>& command_line, const std::string& id,
                                      const std::vector<size_t>* axes = nullptr) {
  std::vector<std::string> overrides;
  const auto add = [&](const SweepValue& value) {
    overrides.insert(overrides.end(), value.assignments.begin(), value.assignments.end());
  };
  for (const auto& [key, value] : sweep.set) add(value);
  for (size_t axis = 0; axis < sweep.matrix.size(); ++axis)
    if (!axes || std::find(axes->begin(), axes->end(), axis) != axes->end()) add(sweep.matrix[axis].values[choice[axis]]);
  overrides.insert(overrides.end(), command_line.begin(), command_line.end());
  overrides.push_back("run.name=" + id);
  return overrides;
}

bool loads(const Sweep& sweep, const std::vector<std::string>& overrides) {
  try {
    config::load(sweep.base, overrides);
    return true;
  } catch (const config::ConfigError&) {
    return false;
  }
}

// A config the loader refused, reported where the sweep file set the value at fault: the key's
// own value when the sweep set that key; else, for a rule over several keys, the first matrix value
// that is refused on its own, or the run's whole combination of values.
[[noreturn]] void report_refused(const Sweep& sweep, const SweepRun& run, const std::vector<std::string>& command_line,
                                 const config::ConfigError& e) {
  if (e.location() == "--set") {
    for (size_t axis = 0; axis < sweep.matrix.size(); ++axis)
      if (sweep.matrix[axis].key == e.key())
        fail_at(sweep.file, sweep.matrix[axis].values[run.choice[axis]].at, e.key(), e.message());
    for (const auto& [key, value] : sweep.set)
      if (key == e.key()) fail_at(sweep.file, value.at, key, e.message());
    throw SweepError(e.what());  // the command line's --set
  }
  const std::vector<size_t> no_axis;
  if (!loads(sweep, overrides_of(sweep, run.choice, command_line, run.id, &no_axis)))
    throw SweepError(e.what());  // the base config (or a file it includes) itself
  for (size_t axis = 0; axis < sweep.matrix.size(); ++axis) {
    const std::vector<size_t> alone = {axis};
    if (loads(sweep, overrides_of(sweep, run.choice, command_line, run.id, &alone))) continue;
    const MatrixAxis& a = sweep.matrix[axis];
    fail_at(sweep.file, a.values[run.choice[axis]].at, a.key,
         "the value '" + a.values[run.choice[axis]].text + "' is refused: " + e.what());
  }
  std::vector<std::string> combination;
  for (size_t axis = 0; axis < sweep.matrix.size(); ++axis)
    combination.push_back(sweep.matrix[axis].key + "=" + sweep.matrix[axis].values[run.choice[axis]].text);
  fail_at(sweep.file, sweep.matrix.front().values[run.choice.front()].at, "matrix",
       "the combination " + join(combination, ", ") + " is refused: " + e.what());
}

}  // namespace

std::vector<SweepRun> expand_sweep(const Sweep& sweep, const std::vector<std::string>& command_line) {
  for (const std::string& assignment : command_line) {
    const std::string key = assignment_key(assignment);
    for (const MatrixAxis& axis : sweep.matrix)
      if (axis.key == key)
        throw SweepError("--set " + assignment + ": " + key + " is a matrix key of " + sweep.file.string() +
                         "; the sweep sets it in each run");
    if (key == "run.name") throw SweepError("--set " + assignment + ": run.name is set by the sweep");
  }
  std::vector<SweepRun> runs;
  for (const auto& choice : cross_product(sweep.matrix)) {
    SweepRun run;
    run.index = runs.size();
    run.choice = choice;
    run.id = run_id(sweep, choice);
    runs.push_back(std::move(run));
  }
  make_ids_unique(sweep, runs);
  for (SweepRun& run : runs) {
    run.overrides = overrides_of(sweep, run.choice, command_line, run.id);
    try {
      run.config = config::load(sweep.base, run.overrides).to_json();
    } catch (const config::ConfigError& e) {
      report_refused(sweep, run, command_line, e);
    }
  }
  return runs;
}

}  // namespace pgsim::cli

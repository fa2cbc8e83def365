// The YAML files of pgsim's own commands (`pgsim demo`'s experiment files, `pgsim sweep`'s sweep
// files): each a map of known keys, one of them `base:`, the config every run starts from. Errors
// name the file, line, column and key.
#pragma once
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace pgsim::cli {

// A bad experiment or sweep file: the message names the file, line, column and key.
struct RunFileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Where something stands in the file (1-based; 0 when not known).
struct FileLocation {
  int line = 0, column = 0;
};
FileLocation location_of(const YAML::Node& node);
// "file:line:column", or the file alone where the place is not known.
std::string describe(const std::filesystem::path& file, FileLocation at);
// Throws RunFileError: "file:line:column: 'key': what".
[[noreturn]] void fail_at(const std::filesystem::path& file, FileLocation at, const std::string& key,
                          const std::string& what);
// The same at `node`'s place.
[[noreturn]] inline void fail_at(const std::filesystem::path& file, const YAML::Node& node, const std::string& key,
                                 const std::string& what) {
  fail_at(file, location_of(node), key, what);
}

// Reads `file` (a `kind` such as "sweep file"): a map whose every key is one of `known` (an
// unknown one is an error suggesting the nearest).
YAML::Node load_run_file(const std::filesystem::path& file, const std::string& kind,
                         const std::set<std::string>& known);

// The config file `base:` names, relative to `file`; it must exist.
std::filesystem::path base_config(const std::filesystem::path& file, const YAML::Node& root);

// A strategy as experiment and sweep files name it: a vmm.strategy, or STRATEGY/PAGING for one
// with a vmm.paging of its own ("hw_assist/shadow": first-generation VT-x on shadow page tables).
struct StrategyEntry {
  std::string strategy, paging;  // paging "": the strategy's default
  // The config assignments "vmm.strategy=...", and "vmm.paging=..." when the entry names one.
  std::vector<std::string> assignments() const;
};
// Refuses (at `node`, under `key`) an entry that is neither a name nor NAME/PAGING.
StrategyEntry strategy_entry(const std::filesystem::path& file, const YAML::Node& node, const std::string& key);
// An entry already checked.
StrategyEntry strategy_entry(const std::string& entry);

}  // namespace pgsim::cli

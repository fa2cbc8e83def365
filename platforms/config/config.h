// pgsim configuration: a declared schema of dotted keys and the resolved values of one run.
//
// A config is YAML. Every key is declared in the schema (schema_<section>.cpp) with a type, a
// default, a unit, the values it allows and a one-line description; anything else in a file is an
// error. A file may `include:` other files (relative to itself) and override what they set;
// `--set key=value` overrides everything. Each resolved value remembers where it came from.
//
//   auto cfg = pgsim::config::load("configs/default.yaml", {"memory.size=1G"});
//   uint64_t bytes = cfg.u64("memory.size");
//   std::string strategy = cfg.str("vmm.strategy");
//
// Errors in the user's input throw ConfigError, whose what() names the file, line, column and
// key path. Asking the Config for an undeclared key, or with the wrong accessor type, is a
// programming error and throws std::logic_error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace pgsim::config {

enum class Type {
  Bool,        // true | false
  Int,         // signed 64-bit integer; decimal, 0x hex, `_` separators allowed
  Float,       // real number
  Size,        // bytes; an integer with an optional suffix K, M, G, T (powers of 1024), KiB, MiB, ...
  String,      // free text
  Enum,        // one of KeySpec::allowed
  Path,        // file path, resolved relative to the config file that set it ("" = none)
  EnumOrPath,  // one of KeySpec::allowed, or else a path resolved like Path (must exist)
  StringList,  // YAML sequence of strings
  PathList,    // YAML sequence of paths, each resolved like Path
};
std::string_view type_name(Type);

// One value of a key: bool, integer (Int and Size), real, text (String, Enum, Path,
// EnumOrPath) or list of text.
using Value = std::variant<bool, int64_t, double, std::string, std::vector<std::string>>;

// The declaration of one key.
struct KeySpec {
  std::string key;           // dotted, e.g. "mmu.tlb.l1d.entries"
  Type type = Type::String;
  Value default_value;
  std::string unit;          // "" when the key has no unit, else e.g. "bytes", "cycles", "MHz"
  std::string description;   // one line
  std::optional<double> min, max;      // inclusive bounds, for Int, Float and Size
  std::vector<std::string> allowed;    // for Enum and EnumOrPath
};

// Where a resolved value came from.
struct Origin {
  enum class Kind { Default, File, Override, Derived };
  Kind kind = Kind::Default;
  std::filesystem::path file;  // for File
  int line = 0, column = 0;    // 1-based, for File
  std::string from;            // for Derived: the key the value was derived from
  // "default", "configs/x.yaml:12", "--set", "derived from vmm.strategy"
  std::string describe() const;
};

// A mistake in the user's configuration (file, --set or a combination of keys).
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string location, std::string key, std::string message);
  const std::string& location() const { return location_; }  // "file:line:column" or "--set"
  const std::string& key() const { return key_; }            // dotted key path, may be empty
  const std::string& message() const { return message_; }    // without location and key
 private:
  std::string location_, key_, message_;
};

class Config;

// The set of declared keys, plus rules that refuse combinations of values.
class Schema {
 public:
  // Every key pgsim knows: the sections declared in schema_*.cpp.
  static const Schema& builtin();

  void add(KeySpec spec);  // throws std::logic_error on a duplicate or malformed declaration
  // A rule over several keys: call config.fail(key, message) to refuse a combination.
  void add_rule(std::function<void(const Config&)> rule);
  // A value that depends on others (e.g. vmm.paging: auto); runs after loading, before the rules.
  void add_derivation(std::function<void(Config&)> derive);

  const KeySpec* find(std::string_view key) const;
  const std::vector<KeySpec>& keys() const { return keys_; }  // sorted by key
  // True when `prefix` names a section that holds declared keys ("mmu", "mmu.tlb").
  bool is_section(std::string_view prefix) const;
  // The nearest declared key or section to a misspelled one, "" when nothing is close.
  std::string suggest(std::string_view unknown) const;
  const std::vector<std::function<void(const Config&)>>& rules() const { return rules_; }
  const std::vector<std::function<void(Config&)>>& derivations() const { return derivations_; }

  // The reference of every key: a Markdown table per section, or plain text.
  std::string reference_markdown() const;
  std::string reference_text() const;

 private:
  std::vector<KeySpec> keys_;
  std::vector<std::function<void(const Config&)>> rules_;
  std::vector<std::function<void(Config&)>> derivations_;
};

// The resolved configuration of one run: every declared key has a value and an origin.
class Config {
 public:
  explicit Config(const Schema& schema = Schema::builtin());  // all defaults

  bool flag(std::string_view key) const;
  int64_t i64(std::string_view key) const;      // Int and Size
  uint64_t u64(std::string_view key) const;     // Int and Size; logic_error if negative
  double f64(std::string_view key) const;       // Float (and Int, converted)
  const std::string& str(std::string_view key) const;  // String, Enum, Path, EnumOrPath
  std::filesystem::path path(std::string_view key) const;  // Path, EnumOrPath ("" when unset)
  const std::vector<std::string>& list(std::string_view key) const;  // StringList, PathList
  // A Path key that must name an existing, readable, non-empty regular file; otherwise ConfigError
  // naming the key and where its value was set (for the kernel image and other inputs a run
  // cannot do without).
  std::filesystem::path existing_file(std::string_view key) const;

  const Value& value(std::string_view key) const;
  const Origin& origin(std::string_view key) const;
  const KeySpec& spec(std::string_view key) const;
  const Schema& schema() const { return *schema_; }
  // The value as YAML scalar text ("512", "true", "x86-pg", "[a, b]").
  std::string text(std::string_view key) const;

  // Sets a key from a YAML node's text, checking type and range; used by the loader and tests.
  void set(std::string_view key, const Value& value, Origin origin);

  // Throws ConfigError naming the key and where its value came from.
  [[noreturn]] void fail(std::string_view key, const std::string& message) const;
  // For a rule over several keys: names the first of `keys` set by --set, else the first set in a
  // file, so that the error points at the input that broke the rule rather than at a default; the
  // first key when all are defaults.
  [[noreturn]] void fail_at_set(std::initializer_list<std::string_view> keys, const std::string& message) const;
  // Runs the schema's derivations, then its rules (the loader calls this).
  void resolve();

  // The resolved config as nested YAML (paths absolute) that `pgsim run` accepts again.
  std::string to_yaml() const;
  // The resolved config as a nested JSON object.
  nlohmann::json to_json() const;

 private:
  struct Entry {
    Value value;
    Origin origin;
  };
  const Entry& entry(std::string_view key, std::initializer_list<Type> types) const;
  const Schema* schema_;
  std::map<std::string, Entry, std::less<>> entries_;
};

// Loads a config file (with its includes) over the defaults, then applies overrides of the form
// "dotted.key=value" (value in YAML syntax: `cpu.profile=x86-pg`, `guest.modules=[a.bin, b.bin]`;
// relative paths resolved against the working directory), then checks the schema's rules.
Config load(const std::filesystem::path& file, const std::vector<std::string>& overrides = {},
            const Schema& schema = Schema::builtin());
// Defaults plus overrides only, no file.
Config load_overrides(const std::vector<std::string>& overrides,
                      const Schema& schema = Schema::builtin());

// A value as YAML text: "512", "true", "2500.5", "x86-pg", "\"\"", "[a, b]".
std::string format_value(const Value& value);

// The candidate nearest to `word` by edit distance, "" when none is close enough to be a typo.
std::string nearest(std::string_view word, const std::vector<std::string>& candidates);

// Parses a size such as "4096", "512M", "4G", "64KiB" into bytes; nullopt if malformed.
std::optional<uint64_t> parse_size(std::string_view text);

// The offset of the first byte of `text` that is not part of well-formed UTF-8, or nullopt.
std::optional<size_t> invalid_utf8_at(std::string_view text);
// Refuses (Config::fail on `key`) a path `p` that is not a regular file this process can read, or
// that is empty unless `may_be_empty`.
void check_readable_file(const Config& config, std::string_view key, const std::filesystem::path& p,
                         bool may_be_empty);
// The files a run reads, checked before it starts: guest.kernel (when set) a readable, non-empty file,
// guest.modules and guest.serial_input readable files. Throws ConfigError naming the key and where
// its value was set.
void check_run_inputs(const Config& config);

}  // namespace pgsim::config

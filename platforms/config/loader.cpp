// Reading YAML config files (with includes) and --set overrides into a Config.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "platforms/config/config.h"

namespace pgsim::config {

namespace {

namespace fs = std::filesystem;

// Where a piece of input came from: a file (with the base folder for relative paths) or --set.
struct Source {
  Origin::Kind kind;
  fs::path file;  // the file's path as the user gave it (for messages)
  fs::path base;  // folder that relative paths in this source are resolved against

  Origin origin_at(const YAML::Mark& mark) const {
    Origin o;
    o.kind = kind;
    if (kind == Origin::Kind::File) {
      o.file = file;
      o.line = mark.line + 1;
      o.column = mark.column + 1;
    }
    return o;
  }
  std::string location(const YAML::Mark& mark) const {
    if (kind != Origin::Kind::File) return "--set";
    return file.string() + ":" + std::to_string(mark.line + 1) + ":" +
           std::to_string(mark.column + 1);
  }
};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::optional<int64_t> parse_integer(std::string text) {
  text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
  if (text.empty()) return std::nullopt;
  bool negative = text[0] == '-';
  size_t start = (text[0] == '-' || text[0] == '+') ? 1 : 0;
  int base = 10;
  if (text.size() > start + 2 && text[start] == '0' && (text[start + 1] == 'x' || text[start + 1] == 'X'))
    base = 16, start += 2;
  if (start >= text.size()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  unsigned long long magnitude = std::strtoull(text.c_str() + start, &end, base);
  if (errno != 0 || *end != '\0' || !std::isxdigit(static_cast<unsigned char>(text[start])))
    return std::nullopt;
  if (magnitude > static_cast<unsigned long long>(INT64_MAX) + (negative ? 1 : 0))
    return std::nullopt;
  return negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
}

std::optional<double> parse_real(const std::string& text) {
  if (text.empty()) return std::nullopt;
  std::string cleaned = text;
  cleaned.erase(std::remove(cleaned.begin(), cleaned.end(), '_'), cleaned.end());
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(cleaned.c_str(), &end);
  if (errno != 0 || *end != '\0' || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string resolve_path(const std::string& text, const Source& source) {
  if (text.empty()) return text;
  fs::path p(text);
  if (p.is_relative()) p = source.base / p;
  return fs::absolute(p).lexically_normal().string();
}

// A file as messages name it: relative to the working directory when it lies below it.
fs::path display_path(const fs::path& canonical) {
  fs::path relative = canonical.lexically_proximate(fs::current_path());
  return relative.empty() || *relative.begin() == ".." ? canonical : relative;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

class Loader {
 public:
  Loader(Config& config, const Schema& schema) : config_(config), schema_(schema) {}

  void load_file(const fs::path& file, const std::string& included_from) {
    fs::path canonical = fs::weakly_canonical(fs::absolute(file));
    if (std::find(stack_.begin(), stack_.end(), canonical) != stack_.end()) {
      std::string cycle;
      for (const auto& f : stack_) cycle += f.filename().string() + " -> ";
      throw ConfigError(included_from, "include",
                        "include cycle: " + cycle + canonical.filename().string());
    }
    std::ifstream in(file);
    std::error_code ec;
    if (fs::is_directory(file, ec)) {
      in.close();
      errno = EISDIR;
    }
    if (!in.is_open()) {
      std::string why = std::error_code(errno, std::generic_category()).message();
      if (included_from.empty())
        throw ConfigError(file.string(), "", "cannot read the config file: " + why);
      throw ConfigError(included_from, "include",
                        "cannot read included file '" + file.string() + "': " + why);
    }
    std::stringstream text;
    text << in.rdbuf();

    Source source{Origin::Kind::File, display_path(canonical), canonical.parent_path()};
    YAML::Node root;
    try {
      root = YAML::Load(text.str());
    } catch (const YAML::ParserException& e) {
      throw ConfigError(source.location(e.mark), "", "YAML syntax error: " + e.msg);
    }
    if (!root || root.IsNull()) return;  // an empty file sets nothing
    if (!root.IsMap())
      throw ConfigError(source.location(root.Mark()), "",
                        "a config file must be a mapping of keys to values");

    stack_.push_back(canonical);
    if (YAML::Node include = root["include"]) load_includes(include, source);
    walk(root, "", source, /*top_level=*/true);
    stack_.pop_back();
  }

  void apply_override(const std::string& assignment) {
    Source source{Origin::Kind::Override, {}, fs::current_path()};
    size_t eq = assignment.find('=');
    std::string key = assignment.substr(0, eq);
    key.erase(0, key.find_first_not_of(" \t"));
    key.erase(key.find_last_not_of(" \t") + 1);
    if (eq == std::string::npos || key.empty())
      throw ConfigError("--set", "", "expects key=value; got '" + assignment + "'");
    std::string value_text = assignment.substr(eq + 1);
    YAML::Node value;
    try {
      value = value_text.empty() ? YAML::Node(std::string()) : YAML::Load(value_text);
    } catch (const YAML::ParserException& e) {
      throw ConfigError("--set", key, "the value is not valid YAML: " + e.msg);
    }
    if (value.IsNull()) value = YAML::Node(value_text);
    apply(key, value, YAML::Mark(), source);
  }

 private:
  void load_includes(const YAML::Node& include, const Source& source) {
    std::vector<YAML::Node> items;
    if (include.IsScalar()) items.push_back(include);
    else if (include.IsSequence())
      for (const auto& item : include) items.push_back(item);
    if (items.empty() || !std::all_of(items.begin(), items.end(),
                                      [](const YAML::Node& n) { return n.IsScalar(); }))
      throw ConfigError(source.location(include.Mark()), "include",
                        "expects a file path or a list of file paths");
    for (const auto& item : items)
      load_file(resolve_path(item.Scalar(), source), source.location(item.Mark()));
  }

  void walk(const YAML::Node& map, const std::string& prefix, const Source& source,
            bool top_level) {
    std::map<std::string, int> seen;  // key -> line
    for (const auto& kv : map) {
      const YAML::Node& key_node = kv.first;
      if (!key_node.IsScalar())
        throw ConfigError(source.location(key_node.Mark()), prefix, "a key must be plain text");
      std::string name = key_node.Scalar();
      if (top_level && name == "include") continue;
      if (auto [at, fresh] = seen.emplace(name, key_node.Mark().line + 1); !fresh)
        throw ConfigError(source.location(key_node.Mark()),
                          prefix.empty() ? name : prefix + "." + name,
                          "set twice in the same mapping (first on line " +
                              std::to_string(at->second) + ")");
      apply(prefix.empty() ? name : prefix + "." + name, kv.second, key_node.Mark(), source);
    }
  }

  void apply(const std::string& key, const YAML::Node& node, const YAML::Mark& key_mark,
             const Source& source) {
    if (const KeySpec* spec = schema_.find(key)) {
      Origin origin = source.origin_at(key_mark);
      config_.set(key, convert(*spec, node, source), origin);
      return;
    }
    if (schema_.is_section(key)) {
      if (!node.IsMap())
        throw ConfigError(source.location(node.Mark().line >= 0 ? node.Mark() : key_mark), key,
                          "is a section: it holds keys (" + section_keys(key) +
                              "), not a value");
      walk(node, key, source, false);
      return;
    }
    bool include = key == "include" || key.ends_with(".include");
    std::string message = include ? "include: is allowed only at the top level of a file"
                                  : "unknown key";
    if (!include) {
      std::string suggestion = schema_.suggest(key);
      if (!suggestion.empty()) message += "; did you mean '" + suggestion + "'?";
    }
    throw ConfigError(source.location(key_mark), key, message);
  }

  std::string section_keys(const std::string& section) const {
    std::vector<std::string> names;
    std::string dotted = section + ".";
    for (const auto& k : schema_.keys())
      if (k.key.compare(0, dotted.size(), dotted) == 0) {
        std::string rest = k.key.substr(dotted.size());
        rest = rest.substr(0, rest.find('.'));
        if (names.empty() || names.back() != rest) names.push_back(rest);
      }
    if (names.size() > 6) names.resize(6), names.push_back("...");
    return join(names);
  }

  Value convert(const KeySpec& spec, const YAML::Node& node, const Source& source) {
    const std::string where = source.location(node.Mark());
    auto wrong = [&](const std::string& expected) -> ConfigError {
      std::string got = node.IsScalar()  ? "'" + node.Scalar() + "'"
                        : node.IsSequence() ? "a list"
                        : node.IsMap()      ? "a mapping"
                                            : "nothing";
      return ConfigError(where, spec.key, "expects " + expected + "; got " + got);
    };
    bool list = spec.type == Type::StringList || spec.type == Type::PathList;
    if (!list && !node.IsScalar()) throw wrong(describe_expected(spec));
    if (list) {
      std::vector<std::string> items;
      if (node.IsScalar()) {
        if (!node.Scalar().empty()) items.push_back(node.Scalar());
      } else if (node.IsSequence()) {
        for (const auto& item : node) {
          if (!item.IsScalar()) throw wrong("a list of " + std::string(spec.type == Type::PathList ? "paths" : "strings"));
          items.push_back(item.Scalar());
        }
      } else {
        throw wrong("a list");
      }
      if (spec.type == Type::PathList)
        for (auto& item : items) item = resolve_path(item, source);
      return items;
    }

    const std::string& text = node.Scalar();
    switch (spec.type) {
      case Type::Bool: {
        std::string t = lower(text);
        if (t == "true" || t == "yes" || t == "on") return true;
        if (t == "false" || t == "no" || t == "off") return false;
        throw wrong("true or false");
      }
      case Type::Int: {
        if (auto v = parse_integer(text)) return *v;
        throw wrong("an integer");
      }
      case Type::Float: {
        if (auto v = parse_real(text)) return *v;
        throw wrong("a number");
      }
      case Type::Size: {
        auto v = parse_size(text);
        if (v && *v <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(*v);
        throw wrong("a size in bytes (such as 4096, 64K, 512M, 4G)");
      }
      case Type::Enum: {
        if (std::find(spec.allowed.begin(), spec.allowed.end(), text) != spec.allowed.end())
          return text;
        throw ConfigError(where, spec.key,
                          "must be one of: " + join(spec.allowed) + "; got '" + text + "'" +
                              nearest_choice(spec, text));
      }
      case Type::EnumOrPath: {
        if (std::find(spec.allowed.begin(), spec.allowed.end(), text) != spec.allowed.end())
          return text;
        std::string path = resolve_path(text, source);
        std::error_code ec;
        if (!text.empty() && fs::is_regular_file(path, ec)) return path;
        throw ConfigError(where, spec.key,
                          "must be one of: " + join(spec.allowed) +
                              ", or the path of an existing file; got '" + text + "'" +
                              nearest_choice(spec, text));
      }
      case Type::Path: return resolve_path(text, source);
      default: return text;
    }
  }

  static std::string describe_expected(const KeySpec& spec) {
    switch (spec.type) {
      case Type::Bool: return "true or false";
      case Type::Int: return "an integer";
      case Type::Float: return "a number";
      case Type::Size: return "a size in bytes";
      case Type::Enum:
      case Type::EnumOrPath: return "one of: " + join(spec.allowed);
      case Type::Path: return "a file path";
      default: return "text";
    }
  }

  static std::string nearest_choice(const KeySpec& spec, const std::string& text) {
    std::string best = nearest(text, spec.allowed);
    return best.empty() ? "" : "; did you mean '" + best + "'?";
  }

  Config& config_;
  const Schema& schema_;
  std::vector<fs::path> stack_;  // files being loaded, to refuse include cycles
};

}  // namespace

Config load(const fs::path& file, const std::vector<std::string>& overrides,
            const Schema& schema) {
  Config config(schema);
  Loader loader(config, schema);
  loader.load_file(file, "");
  for (const auto& assignment : overrides) loader.apply_override(assignment);
  config.resolve();
  return config;
}

Config load_overrides(const std::vector<std::string>& overrides, const Schema& schema) {
  Config config(schema);
  Loader loader(config, schema);
  for (const auto& assignment : overrides) loader.apply_override(assignment);
  config.resolve();
  return config;
}

}  // namespace pgsim::config

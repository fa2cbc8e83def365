// The resolved configuration: typed access, validation of one value, and output as YAML or JSON.
#include "platforms/config/config.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

namespace pgsim::config {

std::string_view type_name(Type type) {
  switch (type) {
    case Type::Bool: return "bool";
    case Type::Int: return "integer";
    case Type::Float: return "real";
    case Type::Size: return "size";
    case Type::String: return "string";
    case Type::Enum: return "enum";
    case Type::Path: return "path";
    case Type::EnumOrPath: return "enum or path";
    case Type::StringList: return "list of strings";
    case Type::PathList: return "list of paths";
  }
  return "?";
}

std::string Origin::describe() const {
  switch (kind) {
    case Kind::Default: return "default";
    case Kind::Override: return "--set";
    case Kind::Derived: return "derived from " + from;
    case Kind::File: return file.string() + ":" + std::to_string(line);
  }
  return "?";
}

static std::string location_of(const Origin& origin) {
  if (origin.kind == Origin::Kind::File)
    return origin.file.string() + ":" + std::to_string(origin.line) + ":" +
           std::to_string(origin.column);
  return origin.describe();
}

ConfigError::ConfigError(std::string location, std::string key, std::string message)
    : std::runtime_error(location + ": " + (key.empty() ? "" : "'" + key + "': ") + message),
      location_(std::move(location)),
      key_(std::move(key)),
      message_(std::move(message)) {}

namespace {

std::string hex_byte(char c) {
  static const char digits[] = "0123456789abcdef";
  const auto b = static_cast<unsigned char>(c);
  return {digits[b >> 4], digits[b & 0xF]};
}

std::string format_double(double v) {
  char buffer[64];
  double magnitude = std::fabs(v);
  bool fixed = v == 0 || (magnitude >= 1e-6 && magnitude < 1e15);
  auto [end, ec] = fixed ? std::to_chars(buffer, buffer + sizeof buffer, v, std::chars_format::fixed)
                         : std::to_chars(buffer, buffer + sizeof buffer, v);
  std::string text(buffer, end);
  // Keep a real recognizable as real in YAML output ("3000" would read back fine too, but "3000.0"
  // says what the key holds).
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
  return text;
}

bool is_text_type(Type t) {
  return t == Type::String || t == Type::Enum || t == Type::Path || t == Type::EnumOrPath;
}

}  // namespace

Config::Config(const Schema& schema) : schema_(&schema) {
  for (const KeySpec& spec : schema.keys()) entries_[spec.key] = Entry{spec.default_value, Origin{}};
}

const KeySpec& Config::spec(std::string_view key) const {
  const KeySpec* spec = schema_->find(key);
  if (!spec) throw std::logic_error("pgsim config: no key '" + std::string(key) + "' is declared");
  return *spec;
}

const Config::Entry& Config::entry(std::string_view key, std::initializer_list<Type> types) const {
  const KeySpec& s = spec(key);
  bool ok = types.size() == 0;
  for (Type t : types) ok = ok || t == s.type;
  if (!ok)
    throw std::logic_error("pgsim config: key '" + std::string(key) + "' is a " +
                           std::string(type_name(s.type)) + ", read with the wrong accessor");
  return entries_.find(key)->second;
}

bool Config::flag(std::string_view key) const {
  return std::get<bool>(entry(key, {Type::Bool}).value);
}
int64_t Config::i64(std::string_view key) const {
  return std::get<int64_t>(entry(key, {Type::Int, Type::Size}).value);
}
uint64_t Config::u64(std::string_view key) const {
  int64_t v = i64(key);
  if (v < 0)
    throw std::logic_error("pgsim config: key '" + std::string(key) + "' holds a negative value");
  return static_cast<uint64_t>(v);
}
double Config::f64(std::string_view key) const {
  const Value& v = entry(key, {Type::Float, Type::Int}).value;
  if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return std::get<double>(v);
}
const std::string& Config::str(std::string_view key) const {
  return std::get<std::string>(
      entry(key, {Type::String, Type::Enum, Type::Path, Type::EnumOrPath}).value);
}
std::filesystem::path Config::path(std::string_view key) const {
  return std::get<std::string>(entry(key, {Type::Path, Type::EnumOrPath}).value);
}
const std::vector<std::string>& Config::list(std::string_view key) const {
  return std::get<std::vector<std::string>>(
      entry(key, {Type::StringList, Type::PathList}).value);
}
const Value& Config::value(std::string_view key) const { return entry(key, {}).value; }
const Origin& Config::origin(std::string_view key) const { return entry(key, {}).origin; }

std::optional<size_t> invalid_utf8_at(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = byte(i);
    size_t length = 0;
    uint32_t min = 0, code = 0;
    if (lead < 0x80) length = 1;
    else if ((lead & 0xE0) == 0xC0) length = 2, min = 0x80, code = lead & 0x1F;
    else if ((lead & 0xF0) == 0xE0) length = 3, min = 0x800, code = lead & 0x0F;
    else if ((lead & 0xF8) == 0xF0) length = 4, min = 0x10000, code = lead & 0x07;
    else return i;
    if (i + length > text.size()) return i;
    for (size_t k = 1; k < length; ++k) {
      if ((byte(i + k) & 0xC0) != 0x80) return i;
      code = code << 6 | (byte(i + k) & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points beyond Unicode are not UTF-8 either.
    if (length > 1 && (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))) return i;
    i += length;
  }
  return std::nullopt;
}

void check_readable_file(const Config& c, std::string_view key, const std::filesystem::path& p,
                         bool may_be_empty) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(p, ec))
    c.fail(key, "names '" + p.string() + "', which is not an existing file");
  std::ifstream in(p, std::ios::binary);
  if (!in) c.fail(key, "names '" + p.string() + "', which cannot be read: " + std::strerror(errno));
  if (!may_be_empty && in.peek() == std::ifstream::traits_type::eof())
    c.fail(key, "names '" + p.string() + "', which is empty");
}

void check_run_inputs(const Config& c) {
  if (!c.path("guest.kernel").empty()) c.existing_file("guest.kernel");  // unset: the platform says so
  if (!c.path("guest.serial_input").empty())
    check_readable_file(c, "guest.serial_input", c.path("guest.serial_input"), true);
  for (const std::string& module : c.list("guest.modules")) check_readable_file(c, "guest.modules", module, true);
}

std::filesystem::path Config::existing_file(std::string_view key) const {
  std::filesystem::path p = path(key);
  if (p.empty()) fail(key, "is not set; it must name a file");
  check_readable_file(*this, key, p, false);
  return p;
}

std::string Config::text(std::string_view key) const { return format_value(value(key)); }

std::string format_value(const Value& v) {
  if (auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&v)) return format_double(*d);
  YAML::Emitter out;  // quotes what would not read back as this text
  if (auto* s = std::get_if<std::string>(&v)) out << *s;
  else out << YAML::Flow << std::get<std::vector<std::string>>(v);
  return out.c_str();
}

void Config::fail(std::string_view key, const std::string& message) const {
  throw ConfigError(location_of(origin(key)), std::string(key), message);
}

void Config::fail_at_set(std::initializer_list<std::string_view> keys, const std::string& message) const {
  // A --set (or a sweep's matrix value) is the latest input, then a file's line.
  for (Origin::Kind kind : {Origin::Kind::Override, Origin::Kind::File})
    for (std::string_view key : keys)
      if (origin(key).kind == kind) fail(key, message);
  fail(*keys.begin(), message);
}

void Config::set(std::string_view key, const Value& value, Origin origin) {
  const KeySpec& s = spec(key);
  auto where = [&](const std::string& message) -> ConfigError {
    return ConfigError(location_of(origin), std::string(key), message);
  };
  bool type_ok = false;
  switch (s.type) {
    case Type::Bool: type_ok = std::holds_alternative<bool>(value); break;
    case Type::Int:
    case Type::Size: type_ok = std::holds_alternative<int64_t>(value); break;
    case Type::Float:
      type_ok = std::holds_alternative<double>(value) || std::holds_alternative<int64_t>(value);
      break;
    default:
      type_ok = is_text_type(s.type) ? std::holds_alternative<std::string>(value)
                                     : std::holds_alternative<std::vector<std::string>>(value);
  }
  if (!type_ok) throw where("expects a " + std::string(type_name(s.type)));
  // Reports are JSON and YAML, which hold Unicode text only: a byte that is not UTF-8 would make
  // the end of the run fail, so it is refused here, before anything runs.
  auto check_utf8 = [&](const std::string& text) {
    if (const auto at = invalid_utf8_at(text))
      throw where("holds a byte that is not UTF-8 (0x" + hex_byte(text[*at]) + " at byte " +
                  std::to_string(*at) + "); config strings must be UTF-8 text");
  };
  if (const auto* text = std::get_if<std::string>(&value)) check_utf8(*text);
  if (const auto* items = std::get_if<std::vector<std::string>>(&value))
    for (const std::string& item : *items) check_utf8(item);

  Value stored = value;
  if (s.type == Type::Float)
    if (auto* i = std::get_if<int64_t>(&value)) stored = static_cast<double>(*i);

  if (s.type == Type::Int || s.type == Type::Size || s.type == Type::Float) {
    double number = s.type == Type::Float ? std::get<double>(stored)
                                          : static_cast<double>(std::get<int64_t>(stored));
    if (!std::isfinite(number)) throw where("expects a finite number");
    bool below = s.min && number < *s.min, above = s.max && number > *s.max;
    if (below || above) {
      auto bound = [&](double b) {
        return s.type == Type::Float ? format_double(b)
                                     : std::to_string(static_cast<long long>(b));
      };
      std::string range;
      if (s.min && s.max) range = "between " + bound(*s.min) + " and " + bound(*s.max);
      else if (s.min) range = "at least " + bound(*s.min);
      else range = "at most " + bound(*s.max);
      std::string unit = s.unit.empty() ? "" : " " + s.unit;
      std::string got = s.type == Type::Float ? format_double(number)
                                              : std::to_string(std::get<int64_t>(stored));
      throw where("must be " + range + unit + "; got " + got);
    }
  }
  if (s.type == Type::Enum) {
    const std::string& text = std::get<std::string>(stored);
    bool found = false;
    for (const auto& a : s.allowed) found = found || a == text;
    if (!found) {
      std::string list;
      for (const auto& a : s.allowed) list += (list.empty() ? "" : ", ") + a;
      throw where("must be one of: " + list + "; got '" + text + "'");
    }
  }
  entries_[std::string(key)] = Entry{std::move(stored), std::move(origin)};
}

void Config::resolve() {
  for (const auto& derive : schema_->derivations()) derive(*this);
  for (const auto& rule : schema_->rules()) rule(*this);
}

// --- output -------------------------------------------------------------------------------------

namespace {

// Splits "a.b.c" into its components.
std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  std::stringstream in(key);
  for (std::string part; std::getline(in, part, '.');) parts.push_back(part);
  return parts;
}

}  // namespace

std::string Config::to_yaml() const {
  // Keys are sorted, so the keys sharing a prefix are contiguous: emit them as nested maps, each
  // value followed by its origin as a comment.
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::vector<std::string> open;  // the sections currently open
  for (const auto& [key, entry] : entries_) {
    std::vector<std::string> parts = split_key(key);
    size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common])
      ++common;
    while (open.size() > common) {
      out << YAML::EndMap;
      open.pop_back();
    }
    for (size_t i = common; i + 1 < parts.size(); ++i) {
      out << YAML::Key << parts[i] << YAML::Value << YAML::BeginMap;
      open.push_back(parts[i]);
    }
    out << YAML::Key << parts.back() << YAML::Value;
    const Value& v = entry.value;
    if (auto* b = std::get_if<bool>(&v)) out << *b;
    else if (auto* i = std::get_if<int64_t>(&v)) out << static_cast<long long>(*i);
    else if (auto* d = std::get_if<double>(&v)) out << format_double(*d);
    else if (auto* s = std::get_if<std::string>(&v)) out << *s;
    else out << YAML::Flow << std::get<std::vector<std::string>>(v);
    out << YAML::Comment(entry.origin.describe());
  }
  while (!open.empty()) {
    out << YAML::EndMap;
    open.pop_back();
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

nlohmann::json Config::to_json() const {
  nlohmann::json root = nlohmann::json::object();
  for (const auto& [key, entry] : entries_) {
    nlohmann::json* node = &root;
    std::vector<std::string> parts = split_key(key);
    for (size_t i = 0; i + 1 < parts.size(); ++i) node = &(*node)[parts[i]];
    std::visit([&](const auto& v) { (*node)[parts.back()] = v; }, entry.value);
  }
  return root;
}

std::optional<uint64_t> parse_size(std::string_view text) {
  size_t i = 0;
  uint64_t number = 0;
  bool digits = false;
  for (; i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '_');
       ++i) {
    if (text[i] == '_') continue;
    unsigned digit = static_cast<unsigned>(text[i] - '0');
    if (number > (UINT64_MAX - digit) / 10) return std::nullopt;
    number = number * 10 + digit;
    digits = true;
  }
  if (!digits) return std::nullopt;
  std::string suffix(text.substr(i));
  while (!suffix.empty() && suffix.front() == ' ') suffix.erase(0, 1);
  static const std::pair<const char*, unsigned> kSuffixes[] = {
      {"", 0},    {"B", 0},    {"K", 10},   {"KB", 10},  {"KiB", 10}, {"M", 20},
      {"MB", 20}, {"MiB", 20}, {"G", 30},   {"GB", 30},  {"GiB", 30}, {"T", 40},
      {"TB", 40}, {"TiB", 40}, {"k", 10},   {"m", 20},   {"g", 30},   {"t", 40}};
  for (const auto& [name, shift] : kSuffixes) {
    if (suffix != name) continue;
    if (shift && number > (UINT64_MAX >> shift)) return std::nullopt;
    return number << shift;
  }
  return std::nullopt;
}

}  // namespace pgsim::config

// The schema: declared keys, cross-key rules, suggestions for misspelled keys, the reference.
#include <algorithm>
#include <sstream>

#include "models/stats/stats.h"
#include "platforms/config/config.h"
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

const Schema& Schema::builtin() {
  static const Schema schema = [] {
    Schema s;
    for (const auto& declare : schema_sections()) declare(s);
    return s;
  }();
  return schema;
}

namespace {

bool value_matches(Type type, const Value& v) {
  switch (type) {
    case Type::Bool: return std::holds_alternative<bool>(v);
    case Type::Int:
    case Type::Size: return std::holds_alternative<int64_t>(v);
    case Type::Float: return std::holds_alternative<double>(v);
    case Type::StringList:
    case Type::PathList: return std::holds_alternative<std::vector<std::string>>(v);
    default: return std::holds_alternative<std::string>(v);
  }
}

}  // namespace

void Schema::add(KeySpec spec) {
  auto refuse = [&](const std::string& why) {
    throw std::logic_error("pgsim config schema: key '" + spec.key + "': " + why);
  };
  // Keys follow the naming rule of statistics: dotted lower-case letters, digits and '_'.
  if (!stats::valid_name(spec.key)) refuse("not a dotted lower-case name");
  if (spec.description.empty()) refuse("no description");
  if (find(spec.key)) refuse("declared twice");
  if (is_section(spec.key)) refuse("already a section of other keys");
  for (size_t dot = spec.key.find('.'); dot != std::string::npos;
       dot = spec.key.find('.', dot + 1))
    if (find(std::string_view(spec.key).substr(0, dot))) refuse("lies under another key");
  if (!value_matches(spec.type, spec.default_value)) refuse("default does not match the type");
  if ((spec.type == Type::Enum || spec.type == Type::EnumOrPath) && spec.allowed.empty())
    refuse("an enum without allowed values");
  if (spec.type == Type::Enum &&
      std::find(spec.allowed.begin(), spec.allowed.end(),
                std::get<std::string>(spec.default_value)) == spec.allowed.end())
    refuse("default is not an allowed value");
  auto at = std::lower_bound(keys_.begin(), keys_.end(), spec.key,
                             [](const KeySpec& k, const std::string& key) { return k.key < key; });
  keys_.insert(at, std::move(spec));
}

void Schema::add_rule(std::function<void(const Config&)> rule) { rules_.push_back(std::move(rule)); }

void Schema::add_derivation(std::function<void(Config&)> derive) {
  derivations_.push_back(std::move(derive));
}

const KeySpec* Schema::find(std::string_view key) const {
  auto at = std::lower_bound(keys_.begin(), keys_.end(), key,
                             [](const KeySpec& k, std::string_view key) { return k.key < key; });
  return at != keys_.end() && at->key == key ? &*at : nullptr;
}

bool Schema::is_section(std::string_view prefix) const {
  std::string dotted = std::string(prefix) + ".";
  auto at = std::lower_bound(keys_.begin(), keys_.end(), dotted,
                             [](const KeySpec& k, const std::string& p) { return k.key < p; });
  return at != keys_.end() && at->key.compare(0, dotted.size(), dotted) == 0;
}

std::string Schema::suggest(std::string_view unknown) const {
  // Candidates: every key and every section. A key placed under the wrong section (or at the top
  // level) is found by its ending; a misspelling by edit distance on the whole dotted path.
  std::vector<std::string> candidates;
  for (const KeySpec& k : keys_) {
    candidates.push_back(k.key);
    for (size_t dot = k.key.find('.'); dot != std::string::npos; dot = k.key.find('.', dot + 1))
      candidates.push_back(k.key.substr(0, dot));
  }
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());

  if (std::string best = nearest(unknown, candidates); !best.empty()) return best;
  std::string ending = std::string(".").append(unknown);
  for (const auto& c : candidates)
    if (c.size() > ending.size() && c.compare(c.size() - ending.size(), ending.size(), ending) == 0)
      return c;
  return {};
}

std::string nearest(std::string_view word, const std::vector<std::string>& candidates) {
  auto distance = [](std::string_view a, std::string_view b) {  // Levenshtein
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        size_t above = row[j];
        bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                    std::tolower(static_cast<unsigned char>(b[j - 1]));
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
        diagonal = above;
      }
    }
    return row[b.size()];
  };
  std::string best;
  size_t best_distance = std::max<size_t>(2, word.size() / 4) + 1;  // close enough to be a typo
  for (const auto& c : candidates)
    if (size_t d = distance(word, c); d < best_distance) best_distance = d, best = c;
  return best;
}

// --- reference ----------------------------------------------------------------------------------

namespace {

// The allowed values or range; `bar` separates alternatives ("|" escaped for Markdown tables).
std::string allowed_text(const KeySpec& k, const std::string& bar) {
  auto bound = [&](double b) {
    return k.type == Type::Float ? format_value(b) : format_value(static_cast<int64_t>(b));
  };
  std::string text;
  for (const auto& a : k.allowed) text += (text.empty() ? "" : bar) + a;
  if (k.type == Type::EnumOrPath) text += bar + "a path";
  std::optional<double> max = k.max;
  if (max && *max >= 9e18) max.reset();  // the integer type's own limit: no bound to speak of
  if (k.min && max) text = bound(*k.min) + " … " + bound(*max);
  else if (k.min) text = "≥ " + bound(*k.min);
  else if (max) text = "≤ " + bound(*max);
  return text;
}

std::string section_of(const std::string& key) { return key.substr(0, key.find('.')); }

}  // namespace

std::string Schema::reference_markdown() const {
  std::ostringstream out;
  std::string section;
  for (const KeySpec& k : keys_) {
    if (section_of(k.key) != section) {
      section = section_of(k.key);
      out << (out.tellp() > 0 ? "\n" : "") << "#### `" << section << "`\n\n"
          << "| key | type | default | unit | allowed | description |\n"
          << "|---|---|---|---|---|---|\n";
    }
    std::string allowed = allowed_text(k, " \\| ");
    out << "| `" << k.key << "` | " << type_name(k.type) << " | `" << format_value(k.default_value)
        << "` | " << k.unit << " | " << allowed << " | " << k.description << " |\n";
  }
  return out.str();
}

std::string Schema::reference_text() const {
  std::ostringstream out;
  for (const KeySpec& k : keys_) {
    std::string allowed = allowed_text(k, " | ");
    out << k.key << "  (" << type_name(k.type) << (k.unit.empty() ? "" : ", ") << k.unit
        << ")  default " << format_value(k.default_value)
        << (allowed.empty() ? "" : "  allowed " + allowed) << "\n    " << k.description << "\n";
  }
  return out.str();
}

}  // namespace pgsim::config

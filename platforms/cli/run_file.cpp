#include "platforms/cli/run_file.h"

#include "platforms/config/config.h"

namespace pgsim::cli {

namespace fs = std::filesystem;

FileLocation location_of(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0) return {};
  return {mark.line + 1, mark.column + 1};
}

std::string describe(const fs::path& file, FileLocation at) {
  std::string text = file.string();
  if (at.line > 0) text.append(1, ':').append(std::to_string(at.line)).append(1, ':').append(std::to_string(at.column));
  return text;
}

void fail_at(const fs::path& file, FileLocation at, const std::string& key, const std::string& what) {
  throw RunFileError(describe(file, at) + ": '" + key + "': " + what);
}

YAML::Node load_run_file(const fs::path& file, const std::string& kind, const std::set<std::string>& known) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file.string());
  } catch (const YAML::BadFile&) {
    throw RunFileError(file.string() + ": cannot read the " + kind);
  } catch (const YAML::Exception& e) {
    throw RunFileError(describe(file, {e.mark.line + 1, e.mark.column + 1}) + ": YAML syntax error: " + e.msg);
  }
  std::string keys;
  for (const std::string& key : known) keys += (keys.empty() ? "" : ", ") + key;
  if (!root.IsMap()) throw RunFileError(file.string() + ": a " + kind + " is a map of keys (" + keys + ")");
  for (const auto& entry : root) {
    const std::string key = entry.first.Scalar();
    if (known.count(key)) continue;
    std::string message = "unknown key (expected " + keys + ")";
    if (std::string near = config::nearest(key, {known.begin(), known.end()}); !near.empty())
      message += "; did you mean '" + near + "'?";
    fail_at(file, location_of(entry.first), key, message);
  }
  return root;
}

fs::path base_config(const fs::path& file, const YAML::Node& root) {
  const YAML::Node base = root["base"];
  if (!base) fail_at(file, location_of(root), "base", "missing (the config file every run starts from)");
  if (!base.IsScalar() || base.Scalar().empty()) fail_at(file, location_of(base), "base", "must be a config file path");
  const fs::path path = (fs::absolute(file).parent_path() / base.Scalar()).lexically_normal();
  if (!fs::is_regular_file(path)) fail_at(file, location_of(base), "base", "no such config file: " + path.string());
  return path;
}

std::vector<std::string> StrategyEntry::assignments() const {
  std::vector<std::string> out = {std::string("vmm.strategy=").append(strategy)};
  if (!paging.empty()) out.push_back(std::string("vmm.paging=").append(paging));
  return out;
}

StrategyEntry strategy_entry(const std::string& entry) {
  const size_t slash = entry.find('/');
  if (slash == std::string::npos) return {entry, ""};
  return {entry.substr(0, slash), entry.substr(slash + 1)};
}

StrategyEntry strategy_entry(const fs::path& file, const YAML::Node& node, const std::string& key) {
  const std::string text = node.IsScalar() ? node.Scalar() : "";
  const StrategyEntry s = strategy_entry(text);
  const bool has_paging = text.find('/') != std::string::npos;
  if (s.strategy.empty() || (has_paging && (s.paging.empty() || s.paging.find('/') != std::string::npos)))
    fail_at(file, node, key, std::string(1, '\'').append(text).append("' is not a strategy or STRATEGY/PAGING (e.g. hw_assist/shadow)"));
  return s;
}

}  // namespace pgsim::cli

// Loading CPU profiles from YAML (format: isa/profiles/x86.yaml).
#include "isa/system/profile.h"

#include "isa/system/cpu_features.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <vector>

namespace pgsim::isa {
namespace {

constexpr const char* kInsnKeys[kNumSensitiveInsns] = {
    "popf", "pushf", "sgdt", "sidt", "sldt", "smsw", "str", "lar", "lsl", "verr", "verw",
    "mov_from_sreg", "push_sreg", "load_sreg", "far_call", "far_jmp", "far_ret", "int_n", "iret",
};
constexpr const char* kBehaviorKeys[] = {"classic", "gp", "ud", "insensitive"};
constexpr const char* kTopKeys[] = {"profile", "description", "base", "features", "at_cpl_above_0"};
constexpr const char* kRuleKeys[] = {"behavior", "reason"};
constexpr unsigned kMaxBaseDepth = 8;

// " (did you mean 'x'?)" for the nearest of `valid`, when it is close.
template <size_t N>
std::string suggestion(const std::string& key, const char* const (&valid)[N]) {
  const char* best = nullptr;
  size_t best_d = 3;
  for (const char* v : valid) {
    size_t d = edit_distance(key, v);
    if (d < best_d) best_d = d, best = v;
  }
  return best ? std::string(" (did you mean '") + best + "'?)" : std::string();
}

template <size_t N>
std::string choices(const char* const (&valid)[N]) {
  std::string out;
  for (const char* v : valid) out += (out.empty() ? "" : ", ") + std::string(v);
  return out;
}

template <size_t N>
int index_of(const std::string& key, const char* const (&valid)[N]) {
  for (size_t i = 0; i < N; ++i)
    if (key == valid[i]) return static_cast<int>(i);
  return -1;
}

[[noreturn]] void fail(const std::string& file, const YAML::Node& at, const std::string& key,
                       const std::string& what) {
  std::string where = file;
  if (at.Mark().line >= 0) where += ":" + std::to_string(at.Mark().line + 1);
  throw ProfileError(where + ": " + (key.empty() ? "" : "key '" + key + "': ") + what);
}

std::string scalar(const std::string& file, const YAML::Node& node, const std::string& key) {
  if (!node.IsScalar()) fail(file, node, key, "expected a string");
  return node.Scalar();
}

Profile load_file(const std::string& path, unsigned depth);

// Resolves a name or a path to a file; `relative_to` is the directory of the including profile.
std::string resolve(const std::string& name_or_path, const std::string& relative_to) {
  namespace fs = std::filesystem;
  bool is_path = name_or_path.find('/') != std::string::npos ||
                 (name_or_path.size() > 5 && name_or_path.ends_with(".yaml"));
  if (is_path) {
    fs::path p(name_or_path);
    if (p.is_relative() && !relative_to.empty() && !fs::exists(p)) p = fs::path(relative_to) / p;
    return p.string();
  }
  fs::path p = fs::path(profile_directory()) / (name_or_path + ".yaml");
  if (!fs::exists(p)) {
    std::string known;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(profile_directory(), ec))
      if (entry.path().extension() == ".yaml")
        known += (known.empty() ? "" : ", ") + entry.path().stem().string();
    throw ProfileError("unknown CPU profile '" + name_or_path + "': no file " + p.string() +
                       " (profiles in " + profile_directory() + ": " + known + ")");
  }
  return p.string();
}

void read_rules(const std::string& file, const YAML::Node& rules, Profile& profile) {
  if (!rules.IsMap()) fail(file, rules, "at_cpl_above_0", "expected a map from instruction to rule");
  for (const auto& item : rules) {
    std::string insn_key = scalar(file, item.first, "at_cpl_above_0");
    int insn = index_of(insn_key, kInsnKeys);
    if (insn < 0)
      fail(file, item.first, insn_key,
           "not a sensitive instruction" + suggestion(insn_key, kInsnKeys) + "; valid: " + choices(kInsnKeys));
    const YAML::Node& rule = item.second;
    if (!rule.IsMap()) fail(file, rule, insn_key, "expected a map with 'behavior' and 'reason'");
    for (const auto& field : rule) {
      std::string k = scalar(file, field.first, insn_key);
      if (index_of(k, kRuleKeys) < 0)
        fail(file, field.first, insn_key + "." + k, "unknown field" + suggestion(k, kRuleKeys) + "; valid: " + choices(kRuleKeys));
    }
    if (!rule["behavior"]) fail(file, rule, insn_key, "missing 'behavior'");
    if (!rule["reason"]) fail(file, rule, insn_key, "missing 'reason' (one line: why this behaviour)");
    std::string b = scalar(file, rule["behavior"], insn_key + ".behavior");
    int behavior = index_of(b, kBehaviorKeys);
    if (behavior < 0)
      fail(file, rule["behavior"], insn_key + ".behavior",
           "unknown behaviour '" + b + "'" + suggestion(b, kBehaviorKeys) + "; valid: " + choices(kBehaviorKeys));
    auto si = static_cast<SensitiveInsn>(insn);
    if (static_cast<Behavior>(behavior) == Behavior::Insensitive && !has_insensitive_variant(si))
      fail(file, rule["behavior"], insn_key + ".behavior",
           "'" + insn_key + "' has no insensitive variant; choose classic, gp or ud");
    std::string reason = scalar(file, rule["reason"], insn_key + ".reason");
    if (reason.empty()) fail(file, rule["reason"], insn_key + ".reason", "the reason is empty");
    profile.rules[insn] = {static_cast<Behavior>(behavior), reason};
  }
}

Profile load_file(const std::string& path, unsigned depth) {
  if (depth > kMaxBaseDepth) throw ProfileError(path + ": 'base' chain deeper than 8 (a cycle?)");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw ProfileError(path + ": cannot open the profile file");
  } catch (const YAML::Exception& e) {
    throw ProfileError(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root.IsMap()) fail(path, root, "", "a profile is a map with keys " + choices(kTopKeys));
  for (const auto& item : root) {
    std::string k = scalar(path, item.first, "");
    if (index_of(k, kTopKeys) < 0)
      fail(path, item.first, k, "unknown key" + suggestion(k, kTopKeys) + "; valid: " + choices(kTopKeys));
  }
  Profile profile;
  bool complete = false;
  if (root["base"]) {
    std::string dir = std::filesystem::path(path).parent_path().string();
    profile = load_file(resolve(scalar(path, root["base"], "base"), dir), depth + 1);
    complete = true;
  }
  if (!root["profile"]) fail(path, root, "profile", "missing (the profile's name)");
  profile.name = scalar(path, root["profile"], "profile");
  if (root["description"]) profile.description = scalar(path, root["description"], "description");
  profile.source = path;
  if (const YAML::Node& features = root["features"]) {
    if (!features.IsSequence()) fail(path, features, "features", "expected a list of +feature / -feature");
    CpuModel check;
    for (const YAML::Node& item : features) {
      const std::string sw = scalar(path, item, "features");
      if (std::string why = apply_feature_switches(check, {sw}); !why.empty()) fail(path, item, "features", why);
      profile.features.push_back(sw);
    }
  }
  if (!root["at_cpl_above_0"]) fail(path, root, "at_cpl_above_0", "missing (the rules)");
  Profile fresh;
  read_rules(path, root["at_cpl_above_0"], complete ? profile : fresh);
  if (!complete) {
    // Without a base, every sensitive instruction must be stated: no silent default.
    for (unsigned i = 0; i < kNumSensitiveInsns; ++i)
      if (fresh.rules[i].reason.empty())
        fail(path, root["at_cpl_above_0"], kInsnKeys[i],
             "missing rule (state every sensitive instruction, or name a 'base' profile)");
    profile.rules = fresh.rules;
  }
  return profile;
}

}  // namespace

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

const char* sensitive_insn_key(SensitiveInsn insn) { return kInsnKeys[static_cast<unsigned>(insn)]; }
const char* behavior_key(Behavior behavior) { return kBehaviorKeys[static_cast<unsigned>(behavior)]; }

bool has_insensitive_variant(SensitiveInsn insn) {
  return insn == SensitiveInsn::Popf || insn == SensitiveInsn::Pushf ||
         insn == SensitiveInsn::MovFromSreg || insn == SensitiveInsn::PushSreg;
}

std::string profile_directory() {
  if (const char* env = std::getenv("PGSIM_PROFILE_DIR")) return env;
  return PGSIM_DEFAULT_PROFILE_DIR;  // isa/profiles/ of the source tree (isa/CMakeLists.txt)
}

void apply_profile_features(const Profile& profile, CpuModel& model) {
  if (std::string why = apply_feature_switches(model, profile.features); !why.empty())
    throw ProfileError(profile.source + ": features: " + why);
}

Profile load_profile(const std::string& name_or_path) { return load_file(resolve(name_or_path, ""), 0); }

}  // namespace pgsim::isa

// Report writers for the classification.
#include "isa/classify/report.h"

#include <map>
#include <ostream>
#include <set>

#include <nlohmann/json.hpp>

namespace pgsim::isa::classify {
namespace {

// "P C M . . U": one letter per class that holds.
std::string class_letters(const FormClasses& f) {
  std::string s;
  s += f.privileged ? "P " : ". ";
  s += f.control_sensitive ? "C " : ". ";
  s += f.mode_sensitive ? "M " : ". ";
  s += f.location_sensitive ? "L " : ". ";
  s += f.timing ? "T " : ". ";
  s += f.user_sensitive ? "U" : ".";
  return s;
}

// The evidence line that explains a violation: the first sensitivity the form showed.
std::string sensitivity_reason(const FormClasses& f, bool user_only) {
  for (const auto& e : f.evidence) {
    if (user_only ? e.rfind("user-sensitive", 0) == 0
                  : (e.rfind("mode", 0) == 0 || e.rfind("user-sensitive", 0) == 0))
      return e;
  }
  return "";
}

// The mnemonics of a set, each once.
std::string set_of(const Classification& c, bool (*member)(const FormClasses&)) {
  std::set<std::string> names;
  for (const auto& f : c.forms) {
    if (member(f)) names.insert(f.mnemonic);
  }
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "(none)" : s;
}

struct SetLine {
  const char* name;
  bool (*member)(const FormClasses&);
};
const SetLine kSets[] = {
    {"privileged", [](const FormClasses& f) { return f.privileged; }},
    {"control-sensitive", [](const FormClasses& f) { return f.control_sensitive; }},
    {"mode-sensitive", [](const FormClasses& f) { return f.mode_sensitive; }},
    {"location-sensitive", [](const FormClasses& f) { return f.location_sensitive; }},
    {"timing-dependent", [](const FormClasses& f) { return f.timing; }},
    {"user-sensitive", [](const FormClasses& f) { return f.user_sensitive; }},
};

// Violating forms grouped by mnemonic, each with the reason of its first form.
std::map<std::string, std::vector<const FormClasses*>> violations_by_mnemonic(const Classification& c, bool user) {
  std::map<std::string, std::vector<const FormClasses*>> groups;
  for (const auto& f : c.forms) {
    if ((user ? f.user_sensitive : f.escapes_deprivileged()) && !f.privileged) groups[f.mnemonic].push_back(&f);
  }
  return groups;
}

void write_text(const Classification& c, bool markdown, std::ostream& out) {
  const std::string mode = probe_mode_name(c.mode);
  if (markdown) {
    out << "# Popek-Goldberg classification: profile `" << c.profile << "`, mode `" << mode << "`\n\n";
    out << c.forms.size() << " instruction forms from the core's decoder and dispatch table, " << c.executions
        << " executions. Classes: P privileged, C control-sensitive, M mode-sensitive, L location-sensitive, "
           "T timing-dependent, U user-sensitive.\n\n";
    out << "| mnemonic | form | classes | evidence |\n|---|---|---|---|\n";
  } else {
    out << "pgsim classify: profile " << c.profile << " (" << (c.profile_source.empty() ? "built in" : c.profile_source)
        << "), mode " << mode << "\n";
    out << c.forms.size() << " instruction forms from the core's decoder and dispatch table, " << c.executions
        << " executions\nclasses: P privileged, C control-sensitive, M mode-sensitive, L location-sensitive, "
           "T timing-dependent, U user-sensitive\n\n";
  }
  for (const auto& f : c.forms) {
    std::string evidence;
    for (const auto& e : f.evidence) {
      if (e.rfind("not privileged", 0) == 0 && !f.sensitive() && !f.timing) continue;
      evidence += (evidence.empty() ? "" : markdown ? "<br>" : "\n        ") + e;
    }
    if (!f.problem.empty()) evidence += (evidence.empty() ? "" : markdown ? "<br>" : "\n        ") + ("core problem: " + f.problem);
    if (markdown) {
      out << "| " << f.mnemonic << " | `" << f.form << "` | " << class_letters(f) << " | " << evidence << " |\n";
    } else {
      out << class_letters(f) << "  " << f.mnemonic << ": " << f.form << "\n";
      if (!evidence.empty()) out << "        " << evidence << "\n";
    }
  }
  out << (markdown ? "\n## Sets\n\n" : "\nsets\n");
  for (const auto& s : kSets) out << (markdown ? "- **" : "  ") << s.name << (markdown ? "**: " : ": ") << set_of(c, s.member) << "\n";
  for (bool user : {false, true}) {
    const Verdict& v = user ? c.theorem3 : c.theorem1;
    const char* title = user ? "Theorem 3 (user-sensitive ⊆ privileged: a hybrid VMM can be built)"
                             : "Theorem 1 (sensitive ⊆ privileged: a trap-and-emulate VMM can be built)";
    out << (markdown ? "\n## " : "\n") << title << ": " << (v.holds ? "holds" : "FAILS") << "\n";
    if (markdown && !v.holds) out << "\n";
    for (const auto& [mnemonic, forms] : violations_by_mnemonic(c, user)) {
      out << (markdown ? "- **" : "  ") << mnemonic << (markdown ? "** (" : " (") << forms.size()
          << (forms.size() == 1 ? " form): " : " forms): ") << forms.front()->form << ": "
          << sensitivity_reason(*forms.front(), user) << "\n";
    }
  }
  if (!c.without_semantics.empty()) {
    std::string names;
    for (const auto& n : c.without_semantics) names += (names.empty() ? "" : ", ") + n;
    out << (markdown ? "\n## Not classified\n\n" : "\nnot classified: ")
        << "decoded by Zydis, but the core has no semantics (they raise #UD): " << names << "\n";
  }
  std::vector<const FormClasses*> problems;
  for (const auto& f : c.forms) {
    if (!f.problem.empty()) problems.push_back(&f);
  }
  if (!problems.empty()) {
    out << (markdown ? "\n## Forms the core could not execute in every state\n\n" : "\nforms the core could not execute in every state\n");
    for (const auto* f : problems) out << (markdown ? "- `" : "  ") << f->form << (markdown ? "`: " : ": ") << f->problem << "\n";
  }
}

void write_json(const Classification& c, std::ostream& out) {
  nlohmann::ordered_json j;
  j["profile"] = c.profile;
  j["profile_source"] = c.profile_source;
  j["mode"] = probe_mode_name(c.mode);
  j["executions"] = c.executions;
  nlohmann::ordered_json forms = nlohmann::ordered_json::array();
  for (const auto& f : c.forms) {
    nlohmann::ordered_json e;
    e["mnemonic"] = f.mnemonic;
    e["form"] = f.form;
    e["privileged"] = f.privileged;
    e["control_sensitive"] = f.control_sensitive;
    e["mode_sensitive"] = f.mode_sensitive;
    e["location_sensitive"] = f.location_sensitive;
    e["timing"] = f.timing;
    e["user_sensitive"] = f.user_sensitive;
    e["evidence"] = f.evidence;
    if (!f.problem.empty()) e["problem"] = f.problem;
    forms.push_back(e);
  }
  j["instructions"] = forms;
  j["without_semantics"] = c.without_semantics;
  for (bool user : {false, true}) {
    const Verdict& v = user ? c.theorem3 : c.theorem1;
    j[user ? "theorem3" : "theorem1"] = {{"holds", v.holds}, {"violations", v.violations}};
  }
  out << j.dump(2) << "\n";
}

}  // namespace

void write_report(const Classification& c, ReportFormat format, std::ostream& out) {
  if (format == ReportFormat::Json) write_json(c, out);
  else write_text(c, format == ReportFormat::Markdown, out);
}

}  // namespace pgsim::isa::classify

// pgsim classify: the classes derived by execution, the verdicts of Theorems 1 and 3 for each
// profile, a profile written by a user, the JSON report, and the pgsim program as a process.
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "isa/classify/classifier.h"
#include "isa/classify/report.h"
#include "isa/system/profile.h"

namespace {

using namespace pgsim::isa;
using namespace pgsim::isa::classify;

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// The first form whose mnemonic (or Intel-syntax text) is `name`.
const FormClasses& find_form(const Classification& c, const std::string& name, bool by_text) {
  for (const auto& f : c.forms) {
    if ((by_text ? f.form : f.mnemonic) == name) return f;
  }
  ADD_FAILURE() << "no form " << name;
  static const FormClasses none;
  return none;
}
const FormClasses& first_form(const Classification& c, const std::string& mnemonic) {
  return find_form(c, mnemonic, false);
}
const FormClasses& form_named(const Classification& c, const std::string& text) { return find_form(c, text, true); }
// The evidence line of `f` that starts with `cls`.
std::string evidence(const FormClasses& f, const std::string& cls) {
  for (const auto& e : f.evidence) {
    if (e.rfind(cls, 0) == 0) return e;
  }
  return "";
}

// The sensitive instructions Robin and Irvine found unprivileged on the Pentium (USENIX
// Security 2000), by the names the classifier groups forms under. INT n is not among them here:
// above CPL 0 it enters CPL 0 through the IDT the monitor owns, which is the trap sequence (a
// supervisor call), so it is privileged by execution (checked below).
const std::vector<std::string> kRobinIrvine = {
    "SGDT", "SIDT", "SLDT", "SMSW", "STR", "PUSHF", "PUSHFD", "POPF", "POPFD", "LAR", "LSL", "VERR", "VERW",
    "PUSH Sreg", "POP Sreg", "MOV from Sreg", "MOV to Sreg", "CALL far", "JMP far", "RET far"};

TEST(ClassifyX86, Prot32FailsTheorem1WithTheRobinIrvineSetForTheReasonsTheEvidenceShows) {
  const Classification c = classify_instructions(load_profile("x86"), ProbeMode::Prot32);
  EXPECT_GT(c.forms.size(), 500u);
  EXPECT_FALSE(c.theorem1.holds);
  EXPECT_FALSE(c.theorem3.holds);
  for (const auto& m : kRobinIrvine) EXPECT_TRUE(contains(c.theorem1.violations, m)) << m;
  // Ordinary and privileged instructions are not violations.
  for (const std::string m : {"ADD", "MOV", "PUSH", "CALL", "CLI", "STI", "LGDT", "MOV to CR", "HLT", "OUT", "RDTSC"})
    EXPECT_FALSE(contains(c.theorem1.violations, m)) << m;

  // The reasons: each comes from what differed between two executions.
  EXPECT_NE(evidence(first_form(c, "SGDT"), "location-sensitive").find("system tables moved"), std::string::npos);
  EXPECT_NE(evidence(first_form(c, "SIDT"), "location-sensitive").find("system tables moved"), std::string::npos);
  EXPECT_NE(evidence(first_form(c, "STR"), "location-sensitive").find("system tables moved"), std::string::npos);
  EXPECT_NE(evidence(first_form(c, "SMSW"), "mode-sensitive").find("CR0.TS 1"), std::string::npos);
  EXPECT_NE(evidence(first_form(c, "PUSHFD"), "mode-sensitive").find("memory"), std::string::npos);
  EXPECT_NE(evidence(first_form(c, "POPFD"), "mode-sensitive").find("program IF"), std::string::npos);
  EXPECT_NE(evidence(first_form(c, "LAR"), "mode-sensitive").find("RAX"), std::string::npos);
  EXPECT_TRUE(first_form(c, "INT").privileged);
  EXPECT_NE(evidence(first_form(c, "INT"), "privileged").find("supervisor call (vector 0xc0 through the IDT)"),
            std::string::npos);
  EXPECT_NE(evidence(form_named(c, "mov ss, ax"), "mode-sensitive").find("CPL 0 raises #GP"), std::string::npos);
  EXPECT_TRUE(form_named(c, "push cs").mode_sensitive);
  EXPECT_FALSE(form_named(c, "push ds").sensitive());  // DS holds the same selector at every CPL
  // Privileged instructions trap above CPL 0 with #GP.
  for (const std::string m : {"CLI", "LGDT", "MOV to CR", "HLT"}) {
    const FormClasses& f = first_form(c, m);
    EXPECT_TRUE(f.privileged) << m;
    EXPECT_NE(evidence(f, "privileged").find("#GP"), std::string::npos) << m;
  }
  // RDTSC is timing-dependent and not sensitive.
  const FormClasses& rdtsc = first_form(c, "RDTSC");
  EXPECT_TRUE(rdtsc.timing);
  EXPECT_FALSE(rdtsc.sensitive());
  // RDPMC reads the performance counters, which count time too: timing-dependent, not sensitive,
  // and privileged while CR4.PCE is clear (#GP at CPL > 0, as the probe's OS leaves it).
  const FormClasses& rdpmc = first_form(c, "RDPMC");
  EXPECT_TRUE(rdpmc.timing);
  EXPECT_FALSE(rdpmc.sensitive());
  EXPECT_TRUE(rdpmc.privileged);
  EXPECT_NE(evidence(rdpmc, "privileged").find("#GP"), std::string::npos);
}

TEST(ClassifyX86Umip, Prot32StoresOfSystemRegistersBecomePrivileged) {
  const Classification c = classify_instructions(load_profile("x86-umip"), ProbeMode::Prot32);
  EXPECT_FALSE(c.theorem1.holds);
  for (const std::string m : {"SGDT", "SIDT", "SLDT", "SMSW", "STR"}) {
    EXPECT_FALSE(contains(c.theorem1.violations, m)) << m;
    EXPECT_TRUE(first_form(c, m).privileged) << m;
  }
  size_t classic = 0;
  for (const auto& m : kRobinIrvine) {
    if (contains(c.theorem1.violations, m)) ++classic;
  }
  EXPECT_EQ(classic, kRobinIrvine.size() - 5);  // the other fifteen still violate
}

TEST(ClassifyX86Pg, Prot32SatisfiesTheorems1And3) {
  const Classification c = classify_instructions(load_profile("x86-pg"), ProbeMode::Prot32);
  EXPECT_TRUE(c.theorem1.holds) << ::testing::PrintToString(c.theorem1.violations);
  EXPECT_TRUE(c.theorem3.holds) << ::testing::PrintToString(c.theorem3.violations);
}

TEST(ClassifyX86Pg, Long64SatisfiesTheorems1And3) {
  const Classification c = classify_instructions(load_profile("x86-pg"), ProbeMode::Long64);
  EXPECT_TRUE(c.theorem1.holds) << ::testing::PrintToString(c.theorem1.violations);
  EXPECT_TRUE(c.theorem3.holds) << ::testing::PrintToString(c.theorem3.violations);
}

TEST(ClassifyUserProfile, OneMoreTrappingInstructionLeavesTheViolations) {
  const auto dir = std::filesystem::temp_directory_path() / ("pgsim-classify-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "lar-traps.yaml";
  std::ofstream(path) << "profile: lar-traps\nbase: x86\ndescription: Classic x86 whose LAR traps outside ring 0.\n"
                         "at_cpl_above_0:\n  lar:\n    behavior: gp\n    reason: \"LAR reveals descriptor privilege.\"\n";
  const Classification c = classify_instructions(load_profile(path.string()), ProbeMode::Prot32);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(c.profile, "lar-traps");
  EXPECT_FALSE(contains(c.theorem1.violations, "LAR"));
  for (const auto& f : c.forms) {
    if (f.mnemonic == "LAR") {
      EXPECT_TRUE(f.privileged) << f.form;
    }
  }
  // Everything else is as on classic x86.
  for (const auto& m : kRobinIrvine) {
    if (m != "LAR") {
      EXPECT_TRUE(contains(c.theorem1.violations, m)) << m;
    }
  }
}

// Runs `command`, returning its exit status and standard output.
int run_process(const std::string& command, std::string& output) {
  output.clear();
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return -1;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ClassifyProgram, JsonReportOfARealRun) {
  std::string out;
  ASSERT_EQ(run_process(std::string(PGSIM_PROGRAM) + " classify --profile x86 --mode long64 --format json", out), 0);
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j.at("profile"), "x86");
  EXPECT_EQ(j.at("mode"), "long64");
  ASSERT_TRUE(j.at("instructions").is_array());
  ASSERT_GT(j.at("instructions").size(), 500u);
  for (const auto& insn : j.at("instructions")) {
    for (const char* key : {"mnemonic", "form", "privileged", "control_sensitive", "mode_sensitive",
                            "location_sensitive", "timing", "user_sensitive", "evidence"})
      ASSERT_TRUE(insn.contains(key)) << key << " in " << insn.dump();
    EXPECT_TRUE(insn.at("evidence").is_array());
  }
  EXPECT_TRUE(j.at("without_semantics").is_array());
  for (const char* theorem : {"theorem1", "theorem3"}) {
    EXPECT_EQ(j.at(theorem).at("holds"), false);
    EXPECT_TRUE(j.at(theorem).at("violations").is_array());
  }
  const auto violations = j.at("theorem1").at("violations").get<std::vector<std::string>>();
  // (PUSH CS/SS/DS/ES do not exist in 64-bit mode; MOV from CS still reveals the CPL.)
  for (const std::string m : {"SGDT", "SIDT", "SLDT", "STR", "PUSHFQ", "LAR", "MOV from Sreg"})
    EXPECT_TRUE(contains(violations, m)) << m;
  for (const std::string m : {"ADD", "MOV", "PUSH", "RDTSC", "LGDT"}) EXPECT_FALSE(contains(violations, m)) << m;
}

TEST(ClassifyProgram, TableReportAndErrors) {
  std::string out;
  ASSERT_EQ(run_process(std::string(PGSIM_PROGRAM) + " classify --profile x86-pg 2>&1", out), 0);
  EXPECT_NE(out.find("profile x86-pg"), std::string::npos);
  EXPECT_NE(out.find("mode prot32"), std::string::npos);
  EXPECT_NE(out.find("Theorem 1 (sensitive"), std::string::npos);
  EXPECT_NE(out.find("Theorem 3 (user-sensitive"), std::string::npos);
  // A profile that does not exist: usage error, naming it.
  EXPECT_EQ(run_process(std::string(PGSIM_PROGRAM) + " classify --profile /nonexistent/p.yaml 2>&1", out), 2);
  EXPECT_NE(out.find("/nonexistent/p.yaml"), std::string::npos) << out;
  EXPECT_EQ(run_process(std::string(PGSIM_PROGRAM) + " classify --profile x86 --mode real16 2>&1", out), 2);
  EXPECT_EQ(run_process(std::string(PGSIM_PROGRAM) + " classify 2>&1", out), 2);
  EXPECT_NE(out.find("--profile"), std::string::npos) << out;
}

}  // namespace

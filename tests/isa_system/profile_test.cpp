// CPU profiles: the three shipped profiles and a user profile loaded by path.
#include "isa/system/profile.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

using namespace pgsim::isa;

namespace {

std::string data(const std::string& file) { return std::string(PGSIM_TEST_DATA_DIR) + "/" + file; }

std::string load_error(const std::string& path) {
  try {
    load_profile(path);
  } catch (const ProfileError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Profile, ClassicX86IsClassicEverywhereWithReasons) {
  Profile p = load_profile("x86");
  EXPECT_EQ(p.name, "x86");
  for (unsigned i = 0; i < kNumSensitiveInsns; ++i) {
    EXPECT_EQ(p.rules[i].behavior, Behavior::Classic) << sensitive_insn_key(SensitiveInsn(i));
    EXPECT_FALSE(p.rules[i].reason.empty()) << sensitive_insn_key(SensitiveInsn(i));
  }
}

// x86-umip gives the CPU the UMIP feature and nothing else: what faults then follows CR4.UMIP, as
// on the real CPU (tests/isa_system/cpuid_test.cpp, UmipProfile).
TEST(Profile, UmipGivesTheFeatureAndKeepsEveryRuleClassic) {
  Profile p = load_profile("x86-umip");
  EXPECT_EQ(p.name, "x86-umip");
  EXPECT_EQ(p.features, std::vector<std::string>{"+umip"});
  for (unsigned i = 0; i < kNumSensitiveInsns; ++i)
    EXPECT_EQ(p.at_cpl_above_0(SensitiveInsn(i)), Behavior::Classic) << sensitive_insn_key(SensitiveInsn(i));
}

TEST(Profile, FeatureSwitchErrorsNameFileLineAndKey) {
  const std::string path = ::testing::TempDir() + "/bad-features.yaml";
  std::ofstream(path) << "profile: bad\nbase: x86\nfeatures:\n  - +pcid\n  - +avx\nat_cpl_above_0: {}\n";
  try {
    load_profile(path);
    FAIL() << "accepted +avx";
  } catch (const ProfileError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path + ":5: key 'features'"), std::string::npos) << what;
    EXPECT_NE(what.find("does not implement avx"), std::string::npos) << what;
  }
}

TEST(Profile, PopekGoldbergProfileLeavesOnlyTrappingInstructionsClassic) {
  Profile p = load_profile("x86-pg");
  for (unsigned i = 0; i < kNumSensitiveInsns; ++i) {
    auto insn = SensitiveInsn(i);
    Behavior b = p.at_cpl_above_0(insn);
    if (insn == SensitiveInsn::IntN)
      EXPECT_EQ(b, Behavior::Classic);
    else
      EXPECT_TRUE(b == Behavior::Gp || b == Behavior::Insensitive) << sensitive_insn_key(insn);
    EXPECT_FALSE(p.rules[i].reason.empty());
  }
  EXPECT_EQ(p.at_cpl_above_0(SensitiveInsn::Popf), Behavior::Insensitive);
  EXPECT_EQ(p.at_cpl_above_0(SensitiveInsn::Sgdt), Behavior::Gp);
}

TEST(Profile, UserProfileLoadedByPath) {
  Profile p = load_profile(data("smsw-traps.yaml"));
  EXPECT_EQ(p.name, "smsw-traps");
  EXPECT_EQ(p.at_cpl_above_0(SensitiveInsn::Smsw), Behavior::Gp);
  EXPECT_EQ(p.at_cpl_above_0(SensitiveInsn::Sgdt), Behavior::Classic);
  EXPECT_EQ(p.rules[unsigned(SensitiveInsn::Smsw)].reason, "SMSW reveals the real CR0; make it privileged.");
}

TEST(Profile, ErrorsNameFileLineAndKey) {
  std::string e = load_error(data("bad-behavior.yaml"));
  EXPECT_NE(e.find("bad-behavior.yaml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("sgdt.behavior"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'gp'"), std::string::npos) << e;

  e = load_error(data("bad-key.yaml"));
  EXPECT_NE(e.find("bad-key.yaml:4"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'smsw'"), std::string::npos) << e;

  e = load_error(data("bad-insensitive.yaml"));
  EXPECT_NE(e.find("no insensitive variant"), std::string::npos) << e;

  e = load_error(data("incomplete.yaml"));
  EXPECT_NE(e.find("key 'pushf'"), std::string::npos) << e;

  e = load_error("no-such-profile");
  EXPECT_NE(e.find("unknown CPU profile 'no-such-profile'"), std::string::npos) << e;
  EXPECT_NE(e.find("x86-umip"), std::string::npos) << e;  // lists the known profiles
}

TEST(Profile, YamlSyntaxErrorNamesTheLine) {
  std::string e = load_error(data("bad-yaml.yaml"));
  EXPECT_NE(e.find("bad-yaml.yaml:6"), std::string::npos) << e;
}

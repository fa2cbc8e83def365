// ./setup installs only the Debian packages that are missing (apt-get update first, through sudo
// when not root), then configures and builds. The package tools and CMake are replaced by small
// scripts that record how they were called.
#include <gtest/gtest.h>

#include "tests/foundation/test_support.h"

namespace pgsim {
namespace {

using test::read_file;
using test::run_shell;
using test::ScratchDir;

class SetupScript : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string log = (dir_.path() / "calls.log").string();
    // dpkg-query reports every package installed except those listed in $MISSING.
    tool("dpkg-query",
         "for p in $MISSING; do [ \"$p\" = \"${!#}\" ] && exit 1; done\n"
         "printf 'install ok installed'\n");
    tool("id", "echo \"$FAKE_UID\"\n");
    tool("sudo", "echo \"sudo $*\" >>'" + log + "'\nexec \"$@\"\n");
    tool("apt-get", "echo \"apt-get $*\" >>'" + log + "'\n");
    tool("cmake", "echo \"cmake $*\" >>'" + log + "'\n");
  }

  void tool(const std::string& name, const std::string& body) {
    auto file = dir_.write("bin/" + name, "#!/usr/bin/env bash\n" + body);
    std::filesystem::permissions(file, std::filesystem::perms::owner_all);
  }

  // Runs ./setup with the recording tools; returns the calls, one per line.
  std::string setup(const std::string& missing, int uid) {
    auto r = run_shell("PATH='" + (dir_.path() / "bin").string() + "':\"$PATH\" MISSING='" +
                       missing + "' FAKE_UID=" + std::to_string(uid) + " '" + PGSIM_SOURCE_DIR +
                       "/setup' -DEXTRA=1");
    EXPECT_EQ(r.status, 0) << r.output;
    return std::filesystem::exists(dir_.path() / "calls.log")
               ? read_file(dir_.path() / "calls.log")
               : "";
  }

  ScratchDir dir_;
};

constexpr const char* kBuild =
    "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DEXTRA=1\n"
    "cmake --build build -j2\n";

TEST_F(SetupScript, NothingMissingMeansNoPackageManager) {
  EXPECT_EQ(setup("", 1000), kBuild);
}

TEST_F(SetupScript, InstallsTheMissingPackagesThroughSudoWhenNotRoot) {
  EXPECT_EQ(setup("libzydis-dev qemu-system-x86", 1000),
            std::string("sudo apt-get update\n"
                        "apt-get update\n"
                        "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "
                        "--no-install-recommends libzydis-dev qemu-system-x86\n"
                        "apt-get install -y --no-install-recommends libzydis-dev "
                        "qemu-system-x86\n") +
                kBuild);
}

TEST_F(SetupScript, RootInstallsDirectly) {
  EXPECT_EQ(setup("libgtest-dev", 0),
            std::string("apt-get update\n"
                        "apt-get install -y --no-install-recommends libgtest-dev\n") +
                kBuild);
}

}  // namespace
}  // namespace pgsim

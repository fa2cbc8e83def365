// The real pgsim program: usage errors, config errors and their exit statuses, config show and
// config schema.
#include <gtest/gtest.h>

#include "platforms/cli/progress.h"
#include "platforms/config/config.h"
#include "tests/foundation/test_support.h"

namespace pgsim {
namespace {

using test::run_shell;
using test::ScratchDir;

std::string pgsim(const std::string& arguments) {
  return std::string("'") + PGSIM_BINARY + "' " + arguments;
}

// The progress line of demo and sweep: the time left is the time per run so far times the runs left.
TEST(Cli, ProgressLineEstimatesTheTimeLeft) {
  using cli::Progress;
  EXPECT_EQ(Progress::line("pgsim sweep", 0, 16, 0.04), "pgsim sweep: 0/16 runs done, 0.0 s elapsed");
  EXPECT_EQ(Progress::line("pgsim sweep", 3, 16, 21.0), "pgsim sweep: 3/16 runs done, 21 s elapsed, about 1 min 31 s left");
  EXPECT_EQ(Progress::line("pgsim demo", 1, 4, 1.5), "pgsim demo: 1/4 runs done, 1.5 s elapsed, about 4.5 s left");
  EXPECT_EQ(Progress::line("pgsim sweep", 10, 400, 300.0),
            "pgsim sweep: 10/400 runs done, 5 min 00 s elapsed, about 3 h 15 min left");
  EXPECT_EQ(Progress::line("pgsim demo", 4, 4, 65.0), "pgsim demo: 4/4 runs done, 1 min 05 s elapsed");
}

TEST(Cli, MisspelledKeyExitsTwoNamingFileLineAndSuggestion) {
  ScratchDir dir;
  auto file = dir.write("exp.yaml", "run:\n  name: t\ncpu:\n  frequncy_mhz: 2000\n");
  auto r = run_shell(pgsim("run '" + file.string() + "' --results-dir '" + dir.path().string() + "'"));
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.output, "pgsim: config error: " + file.string() +
                          ":4:3: 'cpu.frequncy_mhz': unknown key; did you mean "
                          "'cpu.frequency_mhz'?\n");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "t"));
}

TEST(Cli, ConfigErrorsOfEveryKindExitTwo) {
  ScratchDir dir;
  std::vector<std::pair<std::string, std::string>> cases = {
      {"wrong type", "run:\n  quantum_ns: soon\n"},
      {"out of range", "memory:\n  latency_cycles: -1\n"},
      {"bad enum", "vmm:\n  leak_policy: hide\n"},
      {"bad include", "include: missing.yaml\n"},
      {"syntax", "run: [\n"},
      {"impossible combination", "vmm:\n  strategy: binary_translation\n  paging: nested\n"},
  };
  for (const auto& [what, text] : cases) {
    auto file = dir.write("c.yaml", text);
    auto r = run_shell(pgsim("config show '" + file.string() + "'"));
    EXPECT_EQ(r.status, 2) << what << ": " << r.output;
    EXPECT_EQ(r.output.rfind("pgsim: config error: " + file.string() + ":", 0), 0u)
        << what << ": " << r.output;
  }
}

TEST(Cli, UnknownCommandsAndOptionsExitTwoWithAUsageLine) {
  auto unknown = run_shell(pgsim("rnu x.yaml"));
  EXPECT_EQ(unknown.status, 2);
  EXPECT_EQ(unknown.output, "pgsim: unknown command 'rnu'; did you mean 'run'?\n"
                            "usage: pgsim <command> [options]   (pgsim --help)\n");
  auto option = run_shell(pgsim("run --frobnicate x.yaml"));
  EXPECT_EQ(option.status, 2);
  EXPECT_NE(option.output.find("--frobnicate"), std::string::npos);
  EXPECT_NE(option.output.find("usage: pgsim run [options]"), std::string::npos);
  auto none = run_shell(pgsim(""));
  EXPECT_EQ(none.status, 2);
  auto sub = run_shell(pgsim("config shwo"));
  EXPECT_EQ(sub.status, 2);
  EXPECT_NE(sub.output.find("unknown command 'shwo'; did you mean 'show'?"), std::string::npos);
  auto format = run_shell(pgsim("config schema --format html"));
  EXPECT_EQ(format.status, 2);
}

TEST(Cli, HelpAndVersion) {
  auto version = run_shell(pgsim("--version"));
  EXPECT_EQ(version.status, 0);
  EXPECT_EQ(version.output.rfind("pgsim ", 0), 0u);
  auto help = run_shell(pgsim("run --help"));
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.output.find("--set"), std::string::npos);
  EXPECT_NE(help.output.find("3  an instruction, step or time limit ended the run, or the guest made no progress"), std::string::npos);
  EXPECT_EQ(run_shell(pgsim("config show --help")).status, 0);
  EXPECT_EQ(run_shell(pgsim("--help")).status, 0);
}

TEST(Cli, ConfigShowPrintsEveryKeyValueAndOrigin) {
  ScratchDir dir;
  dir.write("era.yaml", "cpu:\n  frequency_mhz: 3800\n");
  auto file = dir.write("exp.yaml", "include: era.yaml\nmemory:\n  size: 1G\n");
  auto r = run_shell(pgsim("config show '" + file.string() + "' --set vmm.leak_policy=conceal"));
  ASSERT_EQ(r.status, 0) << r.output;
  for (const auto& k : config::Schema::builtin().keys())
    EXPECT_NE(r.output.find("\n" + k.key + " "), std::string::npos) << k.key;
  auto line_of = [&](const std::string& key) {
    size_t at = r.output.find("\n" + key + " ");
    return r.output.substr(at + 1, r.output.find('\n', at + 1) - at - 1);
  };
  EXPECT_NE(line_of("memory.size").find("1073741824"), std::string::npos);
  EXPECT_NE(line_of("memory.size").find(file.string() + ":3"), std::string::npos);
  EXPECT_NE(line_of("cpu.frequency_mhz").find((dir.path() / "era.yaml").string() + ":2"),
            std::string::npos);
  EXPECT_NE(line_of("vmm.leak_policy").find("conceal"), std::string::npos);
  EXPECT_NE(line_of("vmm.leak_policy").find("--set"), std::string::npos);
  EXPECT_NE(line_of("run.quantum_ns").find("default"), std::string::npos);
}

TEST(Cli, ConfigShowAcceptsTheShippedConfigs) {
  for (const char* name : {"configs/default.yaml", "configs/eras/modern.yaml",
                           "configs/eras/pentium4.yaml"}) {
    auto r = run_shell(pgsim(std::string("config show '") + PGSIM_SOURCE_DIR + "/" + name + "'"));
    EXPECT_EQ(r.status, 0) << name << ": " << r.output;
  }
}

TEST(Cli, ConfigSchemaPrintsTheReference) {
  auto text = run_shell(pgsim("config schema"));
  EXPECT_EQ(text.status, 0);
  EXPECT_EQ(text.output, config::Schema::builtin().reference_text());
  auto markdown = run_shell(pgsim("config schema --format markdown"));
  EXPECT_EQ(markdown.status, 0);
  EXPECT_EQ(markdown.output, config::Schema::builtin().reference_markdown());
}

TEST(Cli, RunWritesTheResolvedConfigBeforeSimulating) {
  ScratchDir dir;
  auto file = dir.write("exp.yaml", "run:\n  name: early\n");
  auto r = run_shell(pgsim("run '" + file.string() + "' --results-dir '" + dir.path().string() +
                           "' --json '" + (dir.path() / "r.json").string() + "'"));
  // Whatever the platform does with an unset kernel, the run is refused cleanly (2 or 4) and its
  // resolved config is on disk.
  EXPECT_TRUE(r.status == 2 || r.status == 4) << r.status << ": " << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "early" / "config.yaml"));
  EXPECT_NO_THROW(config::load(dir.path() / "early" / "config.yaml"));
}

}  // namespace
}  // namespace pgsim

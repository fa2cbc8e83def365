// `pgsim demo` on experiment files written by the tests: the table's rows for classic x86 under
// native and trap_emulate (the guest's own check fails under trap_emulate, which the demonstration
// reports as its finding, not as an error), and clear errors for a bad experiment file and for a
// run that cannot be read as the table reads it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/foundation/test_support.h"

namespace pgsim {
namespace {

using test::read_file;
using test::run_shell;
using test::ScratchDir;

const std::string kDefaultConfig = std::string(PGSIM_SOURCE_DIR) + "/configs/default.yaml";

// An experiment on the default config with the kernel this build made.
std::string experiment(const std::string& body) {
  return "base: " + kDefaultConfig + "\nset:\n  guest.kernel: " + PGSIM_KERNEL_IMAGE + "\n" + body;
}

test::ProcessResult demo(const ScratchDir& dir, const std::string& file) {
  return run_shell("cd " + dir.path().string() + " && " + PGSIM_BINARY + " demo " + file +
                   " --results-dir out");
}

// The cells of a table row (columns are separated by two spaces or more).
std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < line.size()) {
    size_t gap = line.find("  ", at);
    std::string cell = line.substr(at, gap == std::string::npos ? std::string::npos : gap - at);
    if (!cell.empty()) out.push_back(cell);
    if (gap == std::string::npos) break;
    at = line.find_first_not_of(' ', gap);
    if (at == std::string::npos) break;
  }
  return out;
}

TEST(Demo, ClassicX86LeaksAndFailsItsOwnCheckUnderTrapAndEmulate) {
  ScratchDir dir;
  dir.write("small.yaml", experiment("profiles: [x86]\nstrategies: [native, trap_emulate]\n"
                                     "workloads: ['bench=in iters=20']\nleak_policy: expose\n"));
  const auto result = demo(dir, "small.yaml");
  ASSERT_EQ(result.status, 0) << result.output;
  // One progress line per run, in the order the runs end (two run at a time).
  EXPECT_NE(result.output.find("[2/2] "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("] x86 native 'bench=in iters=20': exit status 0\n"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("] x86 trap_emulate 'bench=in iters=20': exit status 1\n"), std::string::npos)
      << result.output;

  // The table as printed is the table written; its rows in the experiment's order.
  const std::string table = read_file(dir.path() / "out/popek_goldberg.txt");
  EXPECT_NE(result.output.find(table), std::string::npos);
  std::istringstream lines(table);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(cells(line));
  ASSERT_EQ(rows.size(), 4u) << table;  // header, rule, two runs
  EXPECT_EQ(rows[0], (std::vector<std::string>{"profile", "strategy", "workload", "guest", "output", "leaks",
                                               "violations", "direct", "vmm entries", "cycles", "slowdown"}));
  ASSERT_EQ(rows[2].size(), 11u) << table;
  ASSERT_EQ(rows[3].size(), 11u) << table;
  const std::vector<std::string> native(rows[2].begin(), rows[2].begin() + 9);
  EXPECT_EQ(native, (std::vector<std::string>{"x86", "native", "bench=in iters=20", "completed", "-", "0", "0",
                                              "1.000", "0"}));
  EXPECT_EQ(rows[2][10], "1.00x");
  EXPECT_EQ(rows[3][0], "x86");
  EXPECT_EQ(rows[3][1], "trap_emulate (expose)");
  EXPECT_EQ(rows[3][3], "FAILED ring0");  // the kernel's own ring-0 check, as an unmodified OS would
  EXPECT_EQ(rows[3][4], "differs");       // so its output is not the native run's
  EXPECT_NE(rows[3][5].find("pushf"), std::string::npos) << rows[3][5];
  EXPECT_EQ(rows[3][6], "0");  // resource control holds even where equivalence does not

  // The JSON rows agree with the runs' own reports.
  const auto json = nlohmann::json::parse(read_file(dir.path() / "out/popek_goldberg.json"));
  ASSERT_EQ(json["runs"].size(), 2u);
  const auto& te = json["runs"][1];
  const auto stats = nlohmann::json::parse(read_file(dir.path() / "out" / te["run"].get<std::string>() / "stats.json"));
  EXPECT_EQ(te["leaks"], stats["stats"]["vmm.leaks.total"]);
  EXPECT_EQ(te["output_against_native"], "differs");
  EXPECT_EQ(json["runs"][0]["output_against_native"], "-");
  EXPECT_EQ(te["traps"], stats["stats"]["vmm.traps.total"]);
  EXPECT_EQ(te["cycles"], stats["stats"]["sim.cycles"]);
  EXPECT_GT(te["leaks"].get<uint64_t>(), 0u);
  EXPECT_GT(te["traps"].get<uint64_t>(), 0u);
  // Every leaking instruction is named in the row with its count, and the counts add up.
  uint64_t named = 0;
  const std::string by_instruction = te["leaks_by_instruction"];
  for (const auto& [name, value] : stats["stats"].items()) {
    if (name.rfind("vmm.leaks.", 0) != 0 || name == "vmm.leaks.total" || value.get<uint64_t>() == 0) continue;
    named += value.get<uint64_t>();
    EXPECT_NE(by_instruction.find(name.substr(10) + " " + std::to_string(value.get<uint64_t>())), std::string::npos)
        << name << " in " << by_instruction;
  }
  EXPECT_EQ(named, te["leaks"].get<uint64_t>());
  EXPECT_EQ(te["problem"], "");
}

// The paravirtual kernel's selftest on x86-pg: its ring-0 probes are not run (a line of its pvops
// path says so), and with their lines left out of native's output too, the rest is native's.
TEST(Demo, ParavirtSelftestIsNativesOutputButTheProbesItDoesNotRun) {
  ScratchDir dir;
  dir.write("pv.yaml", experiment("profiles: [x86-pg]\nstrategies: [native, paravirt]\nworkloads: [bench=selftest]\n"));
  const auto result = demo(dir, "pv.yaml");
  ASSERT_EQ(result.status, 0) << result.output;
  const auto json = nlohmann::json::parse(read_file(dir.path() / "out/popek_goldberg.json"));
  ASSERT_EQ(json["runs"].size(), 2u);
  EXPECT_EQ(json["runs"][1]["strategy"], "paravirt");
  EXPECT_EQ(json["runs"][1]["output_against_native"], "same");
  EXPECT_EQ(json["runs"][1]["leaks"], 0u);
}

// A STRATEGY/PAGING entry runs the strategy with that vmm.paging: hw_assist on shadow page tables
// (first-generation VT-x) exits on the page-table updates that nested paging leaves to the guest.
TEST(Demo, StrategyEntryCanSetThePagingOfItsRow) {
  ScratchDir dir;
  // The body continues the experiment's `set:` map first.
  dir.write("hw.yaml", experiment("  cpu.vmx: true\nprofiles: [x86]\nstrategies: [native, hw_assist, hw_assist/shadow]\n"
                                  "workloads: [bench=ptemod iters=50]\n"));
  const auto result = demo(dir, "hw.yaml");
  ASSERT_EQ(result.status, 0) << result.output;
  const auto json = nlohmann::json::parse(read_file(dir.path() / "out/popek_goldberg.json"));
  ASSERT_EQ(json["runs"].size(), 3u);
  EXPECT_EQ(json["runs"][2]["strategy"], "hw_assist/shadow");
  const auto config_of = [&](const nlohmann::json& run) {
    return nlohmann::json::parse(read_file(dir.path() / "out" / run["run"].get<std::string>() / "stats.json"))["config"];
  };
  EXPECT_EQ(config_of(json["runs"][1])["vmm"]["paging"], "nested");
  EXPECT_EQ(config_of(json["runs"][2])["vmm"]["paging"], "shadow");
  for (unsigned k : {1u, 2u}) {
    EXPECT_EQ(json["runs"][k]["output_against_native"], "same");
    EXPECT_EQ(json["runs"][k]["leaks"], 0u);
  }
  EXPECT_GT(json["runs"][2]["exits"].get<uint64_t>(), json["runs"][1]["exits"].get<uint64_t>() + 100);

  dir.write("bad.yaml", experiment("profiles: [x86]\nstrategies: [hw_assist/]\nworkloads: [bench=selftest]\n"));
  const auto bad = demo(dir, "bad.yaml");
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("'hw_assist/' is not a strategy or STRATEGY/PAGING"), std::string::npos) << bad.output;
}

// On a terminal (forced by PGSIM_PROGRESS=1) the runs' progress is shown, and erased before the table.
TEST(Demo, ProgressLineOnATerminalErasedBeforeTheTable) {
  ScratchDir dir;
  dir.write("two.yaml", experiment("profiles: [x86]\nstrategies: [native, trap_emulate]\nworkloads: [bench=in iters=20]\n"));
  const auto result = run_shell("cd " + dir.path().string() + " && { PGSIM_PROGRESS=1 " + PGSIM_BINARY +
                                " demo two.yaml --results-dir out 2>&1 >/dev/null; }");  // stderr only
  ASSERT_EQ(result.status, 0) << result.output;
  for (const char* drawn : {"\r\033[Kpgsim demo: 0/2 runs done, ", "\r\033[Kpgsim demo: 1/2 runs done, ",
                            "\r\033[Kpgsim demo: 2/2 runs done, "})
    EXPECT_NE(result.output.find(drawn), std::string::npos) << drawn << " in " << result.output;
  EXPECT_NE(result.output.find(" left\r\033[K[2/2] "), std::string::npos) << result.output;
  // The last thing on stderr erases the line.
  EXPECT_EQ(result.output.substr(result.output.size() - 4), "\r\033[K") << result.output;
}

TEST(Demo, BadExperimentFileNamesFileLineColumnAndKey) {
  ScratchDir dir;
  dir.write("bad.yaml", experiment("profiles: x86\nstrategies: [native]\nworkloads: [bench=selftest]\n"));
  auto result = demo(dir, "bad.yaml");
  EXPECT_EQ(result.status, 2) << result.output;
  EXPECT_NE(result.output.find("bad.yaml:4:11: 'profiles': must be a non-empty list"), std::string::npos)
      << result.output;

  dir.write("typo.yaml", experiment("profiles: [x86]\nstrategy: [native]\nworkloads: [bench=selftest]\n"));
  result = demo(dir, "typo.yaml");
  EXPECT_EQ(result.status, 2) << result.output;
  EXPECT_NE(result.output.find("typo.yaml:5:1: 'strategy': unknown key"), std::string::npos) << result.output;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "out/popek_goldberg.txt"));
}

TEST(Demo, RunThatHitsALimitIsAFailureWithItsReason) {
  ScratchDir dir;
  dir.write("limit.yaml", experiment("  run.max_instructions: 1000\nprofiles: [x86-pg]\nstrategies: [native]\n"
                                     "workloads: [bench=selftest]\n"));
  const auto result = demo(dir, "limit.yaml");
  EXPECT_EQ(result.status, 4) << result.output;
  EXPECT_NE(result.output.find("x86-pg.native.selftest: the run ended with instruction_limit"), std::string::npos)
      << result.output;
  EXPECT_NE(read_file(dir.path() / "out/popek_goldberg.txt").find("did not finish"), std::string::npos);
}

}  // namespace
}  // namespace pgsim

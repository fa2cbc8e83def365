// `pgsim sweep` end to end: the real program runs small sweep files, each run a real child
// `pgsim run` of the guest kernel. The CSV's cells are the runs' own reports; a second invocation
// runs nothing; --only, --list, --slurm and --gather; bad sweep files are refused before anything runs.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <map>
#include <regex>

#include <nlohmann/json.hpp>

#include "tests/foundation/test_support.h"

namespace pgsim {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::run_shell;
using test::ScratchDir;

const std::string kDefaultConfig = std::string(PGSIM_SOURCE_DIR) + "/configs/default.yaml";

// A sweep on the default config with the kernel this build made, on x86-pg (where the guest
// completes under trap-and-emulate).
std::string sweep_file(const std::string& body) {
  return "base: " + kDefaultConfig + "\nset:\n  guest.kernel: " + PGSIM_KERNEL_IMAGE +
         "\n  cpu.profile: x86-pg\n" + body;
}

// Strategy x L1 DTLB size over a pointer chase of 64 pages: 2 x 2 runs of a fraction of a second.
const std::string kTwoByTwo =
    "  guest.cmdline: bench=memwalk iters=3000 ws=262144\n"
    "matrix:\n"
    "  vmm.strategy: [native, trap_emulate]\n"
    "  mmu.tlb.l1d.entries: [16, 64]\n";

test::ProcessResult pgsim(const ScratchDir& dir, const std::string& arguments) {
  return run_shell("cd " + dir.path().string() + " && " + PGSIM_BINARY + " " + arguments);
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  std::istringstream in(line);
  while (std::getline(in, cell, ',')) cells.push_back(cell);
  if (!line.empty() && line.back() == ',') cells.push_back("");
  return cells;
}

struct Csv {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::string at(size_t row, const std::string& column) const {
    const auto it = std::find(header.begin(), header.end(), column);
    EXPECT_NE(it, header.end()) << column;
    return it == header.end() ? "?" : rows[row][static_cast<size_t>(it - header.begin())];
  }
};

Csv read_csv(const fs::path& path) {
  Csv csv;
  std::istringstream lines(read_file(path));
  std::string line;
  std::getline(lines, line);
  csv.header = split(line);
  while (std::getline(lines, line)) csv.rows.push_back(split(line));
  return csv;
}

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

const std::vector<std::string> kRunIds = {"strategy-native.entries-16", "strategy-native.entries-64",
                                          "strategy-trap_emulate.entries-16", "strategy-trap_emulate.entries-64"};

TEST(Sweep, TwoByTwoGivesFourRowsInMatrixOrderThatAgreeWithTheRunsReports) {
  ScratchDir dir;
  dir.write("tlb.yaml", sweep_file(kTwoByTwo));
  const auto result = pgsim(dir, "sweep tlb.yaml");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_EQ(count_of(result.output, " done in "), 4u) << result.output;
  EXPECT_NE(result.output.find("[4/4] "), std::string::npos) << result.output;

  const Csv csv = read_csv(dir.path() / "results/tlb/sweep.csv");
  ASSERT_EQ(csv.rows.size(), 4u);
  // The matrix keys, then the default statistics, starting with how each run ended.
  const std::vector<std::string> first = {"vmm.strategy", "mmu.tlb.l1d.entries", "run.end", "run.exit_status",
                                          "cpu.insts.total"};
  EXPECT_EQ(std::vector<std::string>(csv.header.begin(), csv.header.begin() + 5), first);
  for (const char* column : {"sim.cycles", "sim.cycles.execute", "sim.cycles.vmm_trap", "mmu.tlb.l1d.misses",
                             "mmu.walk.refs", "vmm.traps.total", "vmm.leaks.total",
                             "vmm.resource_control.violations", "vmm.efficiency.direct_fraction"})
    EXPECT_NE(std::find(csv.header.begin(), csv.header.end(), column), csv.header.end()) << column;
  for (const char* host_time : {"sim.host_seconds", "sim.guest_ips", "run.host_seconds"})
    EXPECT_EQ(std::find(csv.header.begin(), csv.header.end(), host_time), csv.header.end()) << host_time;

  // Rows in matrix order: the first key varies slowest.
  const std::vector<std::pair<std::string, std::string>> values = {
      {"native", "16"}, {"native", "64"}, {"trap_emulate", "16"}, {"trap_emulate", "64"}};
  for (size_t row = 0; row < 4; ++row) {
    ASSERT_EQ(csv.rows[row].size(), csv.header.size()) << row;
    EXPECT_EQ(csv.rows[row][0], values[row].first);
    EXPECT_EQ(csv.rows[row][1], values[row].second);
    EXPECT_EQ(csv.at(row, "run.end"), "guest_exit");
    EXPECT_EQ(csv.at(row, "run.exit_status"), "0");

    // Every statistic cell is the run's own report, to the digit; empty where it published none.
    const fs::path run_dir = dir.path() / "results/tlb" / kRunIds[row];
    const auto report = nlohmann::json::parse(read_file(run_dir / "stats.json"));
    EXPECT_EQ(report["config"]["run"]["name"], kRunIds[row]);
    EXPECT_EQ(report["config"]["vmm"]["strategy"], values[row].first);
    EXPECT_EQ(report["config"]["mmu"]["tlb"]["l1d"]["entries"], std::stoi(values[row].second));
    uint64_t buckets = 0;
    for (size_t c = 4; c < csv.header.size(); ++c) {
      const std::string& name = csv.header[c];
      const auto& stats = report["stats"];
      EXPECT_EQ(csv.rows[row][c], stats.contains(name) ? stats[name].dump() : "") << kRunIds[row] << " " << name;
      if (name.rfind("sim.cycles.", 0) == 0 && !csv.rows[row][c].empty()) buckets += std::stoull(csv.rows[row][c]);
    }
    EXPECT_EQ(std::to_string(buckets), csv.at(row, "sim.cycles")) << "the cycle buckets add up";
  }
  // Natively nothing traps; under trap-and-emulate the guest kernel's privileged work does.
  EXPECT_EQ(csv.at(0, "vmm.traps.total"), "0");
  EXPECT_GT(std::stoull(csv.at(2, "vmm.traps.total")), 0u);
  // A larger L1 DTLB misses less on the same pointer chase.
  EXPECT_LT(std::stoull(csv.at(1, "mmu.tlb.l1d.misses")), std::stoull(csv.at(0, "mmu.tlb.l1d.misses")));
  EXPECT_LT(std::stoull(csv.at(3, "mmu.tlb.l1d.misses")), std::stoull(csv.at(2, "mmu.tlb.l1d.misses")));
}

TEST(Sweep, ASecondInvocationRunsNothingAndWritesTheSameCsv) {
  ScratchDir dir;
  dir.write("tlb.yaml", sweep_file(kTwoByTwo));
  auto result = pgsim(dir, "sweep tlb.yaml");
  ASSERT_EQ(result.status, 0) << result.output;
  const std::string csv = read_file(dir.path() / "results/tlb/sweep.csv");
  const fs::path report = dir.path() / "results/tlb" / kRunIds[3] / "stats.json";
  const auto written = fs::last_write_time(report);

  result = pgsim(dir, "sweep tlb.yaml");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("4 of 4 runs already complete"), std::string::npos) << result.output;
  EXPECT_EQ(count_of(result.output, " done in "), 0u) << result.output;
  EXPECT_EQ(fs::last_write_time(report), written);
  EXPECT_EQ(read_file(dir.path() / "results/tlb/sweep.csv"), csv);

  // --force runs everything again, and the same config gives the same CSV, byte for byte.
  result = pgsim(dir, "sweep tlb.yaml --force -j 1");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_EQ(count_of(result.output, " done in "), 4u) << result.output;
  EXPECT_EQ(read_file(dir.path() / "results/tlb/sweep.csv"), csv);

  // A value added to the matrix: only its runs are new. A changed config (--set) is not done.
  std::string three_sizes = kTwoByTwo;
  three_sizes.replace(three_sizes.find("[16, 64]"), 8, "[16, 64, 32]");
  dir.write("tlb.yaml", sweep_file(three_sizes));
  result = pgsim(dir, "sweep tlb.yaml");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("4 of 6 runs already complete"), std::string::npos) << result.output;
  EXPECT_EQ(count_of(result.output, " done in "), 2u) << result.output;
  EXPECT_NE(result.output.find("strategy-trap_emulate.entries-32 done in"), std::string::npos) << result.output;
  result = pgsim(dir, "sweep tlb.yaml --set mmu.tlb.l2.entries=768");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_EQ(count_of(result.output, " done in "), 6u) << result.output;
}

TEST(Sweep, ListOnlyAndASlurmJobArrayGatheredWithoutRunningAnything) {
  ScratchDir dir;
  dir.write("tlb.yaml", sweep_file(kTwoByTwo));
  auto result = pgsim(dir, "sweep tlb.yaml --list");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_EQ(result.output, "0  pending  " + kRunIds[0] + "\n1  pending  " + kRunIds[1] + "\n2  pending  " +
                               kRunIds[2] + "\n3  pending  " + kRunIds[3] + "\n");
  EXPECT_FALSE(fs::exists(dir.path() / "results"));

  result = pgsim(dir, "sweep tlb.yaml --slurm");
  ASSERT_EQ(result.status, 0) << result.output;
  const fs::path script = dir.path() / "results/tlb/sweep.sbatch";
  const std::string text = read_file(script);
  EXPECT_NE(text.find("\n#SBATCH --array=0-3\n"), std::string::npos) << text;
  EXPECT_NE(text.find(" --only \"$SLURM_ARRAY_TASK_ID\"\n"), std::string::npos) << text;
  EXPECT_EQ(count_of(result.output, " done in "), 0u) << result.output;

  // Gathered before any task ran: every run is named, with the command that submits them all.
  result = pgsim(dir, "sweep tlb.yaml --gather");
  EXPECT_EQ(result.status, 4) << result.output;
  EXPECT_EQ(count_of(result.output, ": not run (no "), 4u) << result.output;
  EXPECT_NE(result.output.find("pgsim sweep: run 2 (" + kRunIds[2] + "): not run"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("\n  sbatch --array=0,1,2,3 '" + script.string() + "'\n"), std::string::npos)
      << result.output;
  EXPECT_EQ(count_of(read_file(dir.path() / "results/tlb/sweep.csv"), ",no_report,"), 4u);
  fs::remove(dir.path() / "results/tlb/sweep.csv");

  // Each task of the array, as Slurm would start it: one run each, no CSV.
  for (int task = 0; task < 4; ++task) {
    result = run_shell("cd / && SLURM_ARRAY_TASK_ID=" + std::to_string(task) + " bash " + script.string());
    ASSERT_EQ(result.status, 0) << result.output;
    EXPECT_NE(result.output.find("[1/1] " + kRunIds[task] + " done in "), std::string::npos) << result.output;
    EXPECT_TRUE(fs::exists(dir.path() / "results/tlb" / kRunIds[task] / "stats.json")) << task;
  }
  EXPECT_FALSE(fs::exists(dir.path() / "results/tlb/sweep.csv"));
  result = pgsim(dir, "sweep tlb.yaml --only 4");
  EXPECT_EQ(result.status, 2) << result.output;
  EXPECT_NE(result.output.find("--only 4: the sweep has 4 runs, 0 to 3"), std::string::npos) << result.output;

  result = pgsim(dir, "sweep tlb.yaml --list");
  EXPECT_EQ(count_of(result.output, "  done     "), 4u) << result.output;
  result = pgsim(dir, "sweep tlb.yaml --gather");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_EQ(result.output, "results/tlb/sweep.csv: 4 runs, 35 columns\n");
  const std::string gathered = read_file(dir.path() / "results/tlb/sweep.csv");
  result = pgsim(dir, "sweep tlb.yaml");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_NE(result.output.find("4 of 4 runs already complete"), std::string::npos) << result.output;
  EXPECT_EQ(read_csv(dir.path() / "results/tlb/sweep.csv").rows.size(), 4u);
  EXPECT_EQ(read_file(dir.path() / "results/tlb/sweep.csv"), gathered);
}

// On a terminal (forced here by PGSIM_PROGRESS=1: the test's output is a pipe) a progress line
// is drawn before the first run ends and after each, then erased; each per-run line is written
// with the progress line erased. Without a terminal, nothing of it is written.
TEST(Sweep, ProgressLineWithTimeLeftOnlyOnATerminal) {
  ScratchDir dir;
  dir.write("tlb.yaml", sweep_file(kTwoByTwo));
  auto result = run_shell("cd " + dir.path().string() + " && PGSIM_PROGRESS=1 " + PGSIM_BINARY + " sweep tlb.yaml");
  ASSERT_EQ(result.status, 0) << result.output;
  const std::string erase = "\r\033[K";
  const std::string duration = "([0-9]\\.[0-9] s|[0-9]+ s|[0-9]+ min [0-9]{2} s)";
  std::regex drawn("\\r\033\\[Kpgsim sweep: ([0-4])/4 runs done, " + duration + " elapsed(, about " + duration +
                   " left)?");
  std::vector<std::string> done;
  for (std::sregex_iterator it(result.output.begin(), result.output.end(), drawn), end; it != end; ++it) {
    done.push_back((*it)[1]);
    EXPECT_EQ((*it)[3].matched, done.back() != "0" && done.back() != "4") << it->str();  // a time left once known
  }
  EXPECT_EQ(done, (std::vector<std::string>{"0", "1", "2", "3", "4"})) << result.output;
  EXPECT_EQ(count_of(result.output, erase + "["), 4u) << result.output;  // each per-run line on a clean line
  EXPECT_NE(result.output.find("left" + erase + "[4/4]"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("4/4 runs done, "), std::string::npos);

  // The same sweep again: nothing to run, no line; and without a terminal, never a line.
  result = run_shell("cd " + dir.path().string() + " && PGSIM_PROGRESS=1 " + PGSIM_BINARY + " sweep tlb.yaml");
  EXPECT_EQ(result.output.find("runs done"), std::string::npos) << result.output;
  result = run_shell("cd " + dir.path().string() + " && " + PGSIM_BINARY + " sweep tlb.yaml --force");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_EQ(result.output.find("runs done"), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find("\033"), std::string::npos) << result.output;
}

TEST(Sweep, ChosenStatisticsAndPatterns) {
  ScratchDir dir;
  dir.write("pick.yaml", sweep_file("matrix:\n  vmm.strategy: [trap_emulate]\n"
                                    "stats: [sim.cycles, \"vmm.traps.*\", run.end]\n"));
  auto result = pgsim(dir, "sweep pick.yaml");
  ASSERT_EQ(result.status, 0) << result.output;
  const Csv csv = read_csv(dir.path() / "results/pick/sweep.csv");
  const auto report =
      nlohmann::json::parse(read_file(dir.path() / "results/pick/strategy-trap_emulate/stats.json"));
  std::vector<std::string> expected = {"vmm.strategy", "sim.cycles"};
  for (const auto& [name, value] : report["stats"].items())  // sorted by name
    if (name.rfind("vmm.traps.", 0) == 0) expected.push_back(name);
  expected.push_back("run.end");
  EXPECT_EQ(csv.header, expected);
  EXPECT_GT(expected.size(), 20u);  // every trap cause has its column

  // A name that no run reported is named by its line, with the nearest one; the CSV is still written.
  dir.write("typo.yaml", sweep_file("matrix:\n  vmm.strategy: [native]\nstats: [run.end, vmm.trap.total]\n"));
  result = pgsim(dir, "sweep typo.yaml");
  EXPECT_EQ(result.status, 2) << result.output;
  EXPECT_NE(result.output.find("typo.yaml:7:18: 'stats': 'vmm.trap.total' names no statistic that any run "
                               "reported; did you mean 'vmm.traps.total'?"),
            std::string::npos)
      << result.output;
  EXPECT_EQ(read_file(dir.path() / "results/typo/sweep.csv"), "vmm.strategy,run.end,vmm.trap.total\nnative,guest_exit,\n");
}

// A vmm.strategy value STRATEGY/PAGING gives its runs a vmm.paging of their own, as an experiment
// file's strategies entry does: hw_assist on shadow page tables beside native in one matrix.
TEST(Sweep, AStrategyWithItsPagingInOneMatrix) {
  ScratchDir dir;
  dir.write("paging.yaml", sweep_file("  cpu.vmx: true\n  guest.cmdline: bench=in iters=5\nmatrix:\n"
                                      "  vmm.strategy: [native, hw_assist/shadow, hw_assist]\n"
                                      "stats: [run.end, vmm.shadow.fills]\n"));
  const auto result = pgsim(dir, "sweep paging.yaml");
  ASSERT_EQ(result.status, 0) << result.output;
  const Csv csv = read_csv(dir.path() / "results/paging/sweep.csv");
  ASSERT_EQ(csv.rows.size(), 3u);
  EXPECT_EQ(csv.at(1, "vmm.strategy"), "hw_assist/shadow");
  EXPECT_EQ(csv.at(0, "vmm.shadow.fills"), "");  // native has no shadow pager
  EXPECT_NE(csv.at(1, "vmm.shadow.fills"), "0");
  EXPECT_EQ(csv.at(2, "vmm.shadow.fills"), "");  // nested paging: no shadows either
  const auto paging_of = [&](const std::string& id) {
    return nlohmann::json::parse(read_file(dir.path() / "results/paging" / id / "stats.json"))["config"]["vmm"]["paging"];
  };
  EXPECT_EQ(paging_of("strategy-hw_assist-shadow"), "shadow");
  EXPECT_EQ(paging_of("strategy-hw_assist"), "nested");

  // vmm.paging set twice is refused at the value that sets it the second time.
  dir.write("twice.yaml", sweep_file("  vmm.paging: shadow\nmatrix:\n  vmm.strategy: [hw_assist/nested]\n"));
  const auto refused = pgsim(dir, "sweep twice.yaml");
  EXPECT_EQ(refused.status, 2) << refused.output;
  EXPECT_EQ(refused.output, "pgsim sweep: twice.yaml:7:18: 'vmm.strategy': 'hw_assist/nested' sets vmm.paging, "
                            "which the sweep sets as well; keep one\n");
}

TEST(Sweep, RunsThatHitALimitOrLeaveNoReportKeepTheirRowsAndExit4) {
  ScratchDir dir;
  dir.write("broken.yaml", "base: " + kDefaultConfig + "\nmatrix:\n  guest.kernel: [" + PGSIM_KERNEL_IMAGE +
                              ", missing.elf]\n  run.max_instructions: [0, 1000]\n"
                              "stats: [run.end, run.exit_status, vmm.traps.total]\n");
  const auto result = pgsim(dir, "sweep broken.yaml");
  EXPECT_EQ(result.status, 4) << result.output;
  const std::string csv = read_file(dir.path() / "results/broken/sweep.csv");
  const std::string kernel = PGSIM_KERNEL_IMAGE;
  EXPECT_EQ(csv, "guest.kernel,run.max_instructions,run.end,run.exit_status,vmm.traps.total\n" + kernel +
                     ",0,guest_exit,0,0\n" + kernel + ",1000,instruction_limit,3,0\nmissing.elf,0,no_report,2,\n" +
                     "missing.elf,1000,no_report,2,\n");
  EXPECT_NE(result.output.find("run 1 (kernel-"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("the run ended with instruction_limit"), std::string::npos) << result.output;
  // The kernel path is relative to the sweep file, and the child's own complaint is passed on.
  EXPECT_NE(result.output.find("no report (exit status 2): pgsim: config error:"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find((dir.path() / "missing.elf").string()), std::string::npos) << result.output;
}

TEST(Sweep, BadSweepFilesNameFileLineAndKeyAndRunNothing) {
  ScratchDir dir;
  const auto refused = [&](const std::string& body, const std::string& message) {
    dir.write("bad.yaml", body);
    const auto result = pgsim(dir, "sweep bad.yaml");
    EXPECT_EQ(result.status, 2) << result.output;
    EXPECT_EQ(result.output, "pgsim sweep: " + message + "\n");
    EXPECT_FALSE(fs::exists(dir.path() / "results")) << body;
  };
  refused(sweep_file("matrix:\n  vmm.strategy: [native]\n  vmm.stratgy: [native]\n"),
          "bad.yaml:7:3: 'vmm.stratgy': unknown config key; did you mean 'vmm.strategy'?");
  // The bad value is in the last run: nothing runs before every config is checked.
  refused(sweep_file("matrix:\n  vmm.strategy: [native, trap_emulate]\n  mmu.tlb.l1d.entries: [16, 64, many]\n"),
          "bad.yaml:7:33: 'mmu.tlb.l1d.entries': expects an integer; got 'many'");
  refused(sweep_file("matrix:\n  vmm.strategy: [native, trap_emulat]\n"),
          "bad.yaml:6:26: 'vmm.strategy': must be one of: native, interpret, trap_emulate, binary_translation, "
          "paravirt, hw_assist; got 'trap_emulat'; did you mean 'trap_emulate'?");
  // A value that a rule over several keys refuses (the ways must divide the entries).
  refused(sweep_file("matrix:\n  mmu.tlb.l1d.entries: [16, 6]\n"),
          "bad.yaml:6:29: 'mmu.tlb.l1d.entries': mmu.tlb.l1d.ways must divide mmu.tlb.l1d.entries (6); got 4");
  refused("base: nowhere.yaml\nmatrix:\n  vmm.strategy: [native]\n",
          "bad.yaml:1:7: 'base': no such config file: " + (dir.path() / "nowhere.yaml").string());
  refused("matrix:\n  vmm.strategy: [native]\n", "bad.yaml:1:1: 'base': missing (the config file every run starts from)");
  refused(sweep_file("matrix:\n  vmm.strategy: native\n"),
          "bad.yaml:6:17: 'vmm.strategy': must be a non-empty list of values (for a single value, use set:)");
  refused(sweep_file("matrx:\n  vmm.strategy: [native]\n"),
          "bad.yaml:5:1: 'matrx': unknown key (expected base, matrix, name, set, stats); did you mean 'matrix'?");
  refused(sweep_file("matrix:\n  run.name: [a, b]\n"),
          "bad.yaml:6:3: 'run.name': is set by the sweep: each run is named after its matrix values");

  dir.write("ok.yaml", sweep_file("matrix:\n  vmm.strategy: [native]\n"));
  const auto result = pgsim(dir, "sweep ok.yaml --set vmm.strategy=interpret");
  EXPECT_EQ(result.status, 2) << result.output;
  EXPECT_NE(result.output.find("vmm.strategy is a matrix key of ok.yaml"), std::string::npos) << result.output;
}

TEST(Sweep, TheShippedTlbSweepHasSixteenRuns) {
  ScratchDir dir;
  const auto result = pgsim(dir, std::string("sweep ") + PGSIM_SOURCE_DIR + "/configs/sweeps/tlb_shadow.yaml --list");
  ASSERT_EQ(result.status, 0) << result.output;
  EXPECT_EQ(count_of(result.output, "  pending  "), 16u) << result.output;
  EXPECT_NE(result.output.find("15  pending  cmdline-bench-ptemod-iters-2000.strategy-trap_emulate.entries-128\n"),
            std::string::npos)
      << result.output;
}

// SIGTERM to a sweep reaches the run it is running, which ends with its reports written
// (run.end: interrupted); the sweep starts no other run and exits with 128 + SIGTERM, and the same
// sweep again finds the finished run done and runs the other two.
TEST(Sweep, SigtermStopsTheRunningRunAndLeavesTheFinishedOnesDone) {
  ScratchDir dir;
  dir.write("stop.yaml", sweep_file("matrix:\n  guest.cmdline: [\"bench=compute iters=1000\", "
                                    "\"bench=compute iters=2000000000\", \"bench=compute iters=2000\"]\n"));
  const fs::path log = dir.path() / "sweep.log";
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    if (chdir(dir.path().c_str()) != 0) _exit(127);
    execl(PGSIM_BINARY, PGSIM_BINARY, "sweep", "stop.yaml", "-j", "1", static_cast<char*>(nullptr));
    _exit(127);
  }
  // Poll until the long run's guest has printed its first line (its serial log is written as it goes).
  const fs::path long_run = dir.path() / "results/stop/cmdline-bench-compute-iters-2000000000";
  bool printing = false;
  for (int polls = 0; polls < 120'000 && !printing; ++polls) {
    printing = read_file(long_run / "serial.log").find('\n') != std::string::npos;
    if (!printing) usleep(1000);
  }
  ASSERT_TRUE(printing) << read_file(log);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << read_file(log);
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM) << read_file(log);
  EXPECT_NE(read_file(log).find("interrupted: 1 of 3 runs done"), std::string::npos) << read_file(log);
  const auto report = nlohmann::json::parse(read_file(long_run / "stats.json"));
  EXPECT_EQ(report["run"]["end"], "interrupted");
  EXPECT_FALSE(fs::exists(dir.path() / "results/stop/cmdline-bench-compute-iters-2000/serial.log")) << "not started";

  const auto listed = pgsim(dir, "sweep stop.yaml --list");
  EXPECT_EQ(listed.output, "0  done     cmdline-bench-compute-iters-1000\n"
                           "1  pending  cmdline-bench-compute-iters-2000000000\n"
                           "2  pending  cmdline-bench-compute-iters-2000\n");
}

}  // namespace
}  // namespace pgsim

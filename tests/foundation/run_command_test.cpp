// pgsim run, with simulators standing in for the platform: the outputs, the JSON report and the
// exit status of every way a run can end.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "platforms/cli/commands.h"
#include "platforms/config/config.h"
#include "tests/foundation/test_support.h"

namespace pgsim::cli {
namespace {

using test::read_file;
using test::ScratchDir;

// A machine that "ran" a fixed number of instructions and cycles and ends as told.
struct FakeMachine {
  uint64_t instructions = 1500, guest_cycles = 1200, walk_cycles = 300;
  uint64_t clock = 1500;  // what the platform's clock counted
  RunOutcome outcome{RunEnd::GuestExit, 1, true, "", 1500, 0.5};

  RunOutcome operator()(const RunContext& ctx) {
    ctx.stats.bind("cpu.insts.total", stats::Unit::Instructions, "guest instructions retired",
                   &instructions);
    ctx.stats.bind_cycle_bucket("guest", "guest instructions executed directly", &guest_cycles);
    ctx.stats.bind_cycle_bucket("page_walk", "page-walk references", &walk_cycles);
    ctx.serial_log << "hello from the guest\n";
    ctx.stats.check_cycle_total(clock);
    return outcome;
  }
};

struct RunResult {
  int status;
  std::string out, err;
};

class RunCommand : public ::testing::Test {
 protected:
  RunResult run(const Simulator& simulator, std::vector<std::string> overrides = {},
                bool echo = false) {
    RunOptions options;
    options.config = config_file_;
    options.overrides = std::move(overrides);
    options.results_dir = dir_.path() / "results";
    options.json = dir_.path() / "report.json";
    options.echo_serial = echo;
    std::ostringstream out, err;
    int status = run_command(options, out, err, simulator);
    return {status, out.str(), err.str()};
  }
  std::filesystem::path out_dir() const { return dir_.path() / "results" / "t1"; }

  ScratchDir dir_;
  std::filesystem::path config_file_ =
      dir_.write("exp.yaml", "run:\n  name: t1\nmemory:\n  size: 64M\n");
};

TEST_F(RunCommand, SuccessfulRunWritesEveryOutput) {
  FakeMachine machine;
  RunResult r = run(std::ref(machine));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");

  // config.yaml: the resolved config, which pgsim accepts again.
  config::Config resolved = config::load(out_dir() / "config.yaml");
  EXPECT_EQ(resolved.u64("memory.size"), 64ull << 20);
  EXPECT_EQ(read_file(out_dir() / "serial.log"), "hello from the guest\n");

  nlohmann::json report = nlohmann::json::parse(read_file(out_dir() / "stats.json"));
  EXPECT_EQ(report["stats"]["cpu.insts.total"], 1500);
  EXPECT_EQ(report["stats"]["sim.cycles"], 1500);
  EXPECT_EQ(report["stats"]["sim.cycles.page_walk"], 300);
  EXPECT_EQ(report["run"]["end"], "guest_exit");
  EXPECT_EQ(report["run"]["guest_status"], 1);
  EXPECT_EQ(report["run"]["host_seconds"], 0.5);
  EXPECT_EQ(report["run"]["guest_ips"], 3000.0);
  EXPECT_EQ(report["config"]["memory"]["size"], 64 << 20);
  EXPECT_EQ(report["config"]["run"]["name"], "t1");
  EXPECT_EQ(report["units"]["sim.cycles.guest"]["unit"], "cycles");
  EXPECT_EQ(read_file(dir_.path() / "report.json"), read_file(out_dir() / "stats.json"));

  EXPECT_NE(read_file(out_dir() / "stats.txt")
                .find("cpu.insts.total       1500  # guest instructions retired (instructions)\n"),
            std::string::npos);
  EXPECT_NE(r.out.find("cpu.insts.total"), std::string::npos);
  EXPECT_NE(r.out.find("run 't1': the guest exited with status 0x1 (success)"), std::string::npos);
  EXPECT_EQ(r.out.find("hello from the guest"), std::string::npos);  // not echoed unless asked
}

TEST_F(RunCommand, SerialOutputIsEchoedOnRequest) {
  FakeMachine machine;
  RunResult r = run(std::ref(machine), {}, /*echo=*/true);
  EXPECT_NE(r.out.find("hello from the guest\n"), std::string::npos);
  EXPECT_EQ(read_file(out_dir() / "serial.log"), "hello from the guest\n");
}

TEST_F(RunCommand, EachWayARunEndsHasItsExitStatus) {
  struct Case {
    RunEnd end;
    bool success;
    int status;
    std::string name;
  };
  const Case cases[] = {
      {RunEnd::GuestExit, true, 0, "guest_exit"},
      {RunEnd::GuestExit, false, 1, "guest_exit"},
      {RunEnd::GuestHalted, false, 1, "guest_halted"},
      {RunEnd::TripleFault, false, 1, "triple_fault"},
      {RunEnd::InstructionLimit, false, 3, "instruction_limit"},
      {RunEnd::TimeLimit, false, 3, "time_limit"},
  };
  for (const Case& c : cases) {
    FakeMachine machine;
    machine.outcome.end = c.end;
    machine.outcome.guest_success = c.success;
    machine.outcome.guest_status = c.success ? 1 : 3;
    RunResult r = run(std::ref(machine));
    EXPECT_EQ(r.status, c.status) << c.name;
    nlohmann::json report = nlohmann::json::parse(read_file(out_dir() / "stats.json"));
    EXPECT_EQ(report["run"]["end"], c.name);
    EXPECT_EQ(report["run"]["exit_status"], c.status);
  }
}

TEST_F(RunCommand, SimulatorErrorIsStatusFourWithoutStatistics) {
  FakeMachine earlier;
  ASSERT_EQ(run(std::ref(earlier)).status, 0);  // a previous run of the same name
  ASSERT_TRUE(std::filesystem::exists(out_dir() / "stats.json"));
  RunResult r = run([](const RunContext& ctx) -> RunOutcome {
    ctx.serial_log << "booting\n";
    throw SimulatorError("bad guest image: not an ELF file");
  });
  EXPECT_EQ(r.status, 4);
  EXPECT_EQ(r.err, "pgsim: simulator error: bad guest image: not an ELF file\n");
  EXPECT_FALSE(std::filesystem::exists(out_dir() / "stats.json"));
  EXPECT_FALSE(std::filesystem::exists(out_dir() / "stats.txt"));
  EXPECT_EQ(read_file(out_dir() / "serial.log"), "booting\n");  // what the guest said is kept
  nlohmann::json report = nlohmann::json::parse(read_file(dir_.path() / "report.json"));
  EXPECT_EQ(report["run"]["end"], "simulator_error");
  EXPECT_EQ(report["run"]["detail"], "bad guest image: not an ELF file");
}

TEST_F(RunCommand, CyclesThatDoNotAddUpAreASimulatorError) {
  FakeMachine machine;
  machine.clock = 1501;
  RunResult r = run(std::ref(machine));
  EXPECT_EQ(r.status, 4);
  EXPECT_NE(r.err.find("cycle buckets do not add up to the clock: buckets sum to 1500 cycles, "
                       "the clock counted 1501"),
            std::string::npos)
      << r.err;
}

TEST_F(RunCommand, ConfigErrorsAreStatusTwo) {
  FakeMachine machine;
  RunResult r = run(std::ref(machine), {"memory.sise=1G"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "pgsim: config error: --set: 'memory.sise': unknown key; did you mean "
                   "'memory.size'?\n");
  EXPECT_FALSE(std::filesystem::exists(out_dir()));

  // A value the platform refuses when it uses it (a kernel that does not exist).
  RunResult missing = run([](const RunContext& ctx) -> RunOutcome {
    ctx.config.existing_file("guest.kernel");
    return {};
  });
  EXPECT_EQ(missing.status, 2);
  EXPECT_EQ(missing.err, "pgsim: config error: default: 'guest.kernel': is not set; it must name "
                         "a file\n");
}

TEST_F(RunCommand, SameConfigGivesTheSameStatistics) {
  FakeMachine first, second;
  ASSERT_EQ(run(std::ref(first)).status, 0);
  auto a = nlohmann::json::parse(read_file(out_dir() / "stats.json"));
  ASSERT_EQ(run(std::ref(second)).status, 0);
  auto b = nlohmann::json::parse(read_file(out_dir() / "stats.json"));
  EXPECT_EQ(a["stats"], b["stats"]);
  EXPECT_EQ(a["config"], b["config"]);
}

}  // namespace
}  // namespace pgsim::cli

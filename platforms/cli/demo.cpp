// `pgsim demo`: the Popek-Goldberg demonstration. An experiment file names a base config and the
// CPU profiles, VMM strategies and guest workloads to cross; every combination is one real
// `pgsim run` in a child process (this executable, /proc/self/exe), and the runs' reports are
// gathered into one table (platforms/cli/pg_table.h).
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "platforms/cli/pg_table.h"
#include "platforms/cli/atomic_file.h"
#include "platforms/cli/child_runs.h"
#include "platforms/cli/stop_signals.h"
#include "platforms/cli/commands.h"
#include "platforms/cli/progress.h"
#include "platforms/cli/run_file.h"

namespace pgsim::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDefaultExperiment = "configs/experiments/popek_goldberg.yaml";

struct DemoOptions {
  fs::path experiment = kDefaultExperiment;
  std::vector<std::string> overrides;  // --set, passed to every run
  fs::path results_dir = "results/demo";
  unsigned jobs = 2;
};

// What an experiment file says.
struct Experiment {
  fs::path base;  // the config every run starts from (relative paths: to the experiment file)
  std::vector<std::string> profiles, strategies, workloads;
  std::string leak_policy = "expose";
  std::vector<std::string> overrides;  // `set:` key = value, applied to every run
};

std::vector<std::string> string_list(const fs::path& file, const YAML::Node& root, const std::string& key) {
  const YAML::Node node = root[key];
  if (!node) fail_at(file, root, key, "missing (a list of strings)");
  if (!node.IsSequence() || node.size() == 0) fail_at(file, node, key, "must be a non-empty list of strings");
  std::vector<std::string> values;
  for (const YAML::Node& item : node) {
    if (!item.IsScalar() || item.Scalar().empty()) fail_at(file, item, key, "every entry must be a non-empty string");
    values.push_back(item.Scalar());
  }
  return values;
}

Experiment load_experiment(const fs::path& file) {
  const YAML::Node root = load_run_file(file, "experiment file",
                                        {"base", "profiles", "strategies", "workloads", "leak_policy", "set"});
  Experiment e;
  e.base = base_config(file, root);
  e.profiles = string_list(file, root, "profiles");
  e.strategies = string_list(file, root, "strategies");
  for (size_t k = 0; k < e.strategies.size(); ++k) strategy_entry(file, root["strategies"][k], "strategies");
  e.workloads = string_list(file, root, "workloads");
  if (const YAML::Node policy = root["leak_policy"]) {
    if (!policy.IsScalar() || (policy.Scalar() != "expose" && policy.Scalar() != "conceal"))
      fail_at(file, policy, "leak_policy", "must be expose or conceal");
    e.leak_policy = policy.Scalar();
  }
  if (const YAML::Node set = root["set"]) {
    if (!set.IsMap()) fail_at(file, set, "set", "must be a map of config keys to values");
    for (const auto& entry : set) {
      if (!entry.second.IsScalar()) fail_at(file, entry.second, "set." + entry.first.Scalar(), "must be a value");
      e.overrides.push_back(entry.first.Scalar() + "=" + entry.second.Scalar());
    }
  }
  return e;
}

// One combination of the experiment, and the child process that runs it.
struct DemoRun {
  cli::PgRun row;
  std::string name;  // run.name: the folder of its results
  int exit_status = -1;
};

// A run name from its coordinates: letters, digits and '-' only ("x86-pg.trap_emulate.in-iters-200").
std::string run_name(const std::string& profile, const std::string& strategy, const std::string& workload) {
  std::string w = folder_name_part(workload);
  if (w.rfind("bench-", 0) == 0) w.erase(0, 6);
  return profile + "." + folder_name_part(strategy) + "." + w;
}

ChildCommand run_command_of(const Experiment& e, const DemoOptions& o, const DemoRun& run, const fs::path& log) {
  std::vector<std::string> overrides = e.overrides;
  overrides.insert(overrides.end(), o.overrides.begin(), o.overrides.end());
  overrides.insert(overrides.end(), {"run.name=" + run.name, "cpu.profile=" + run.row.profile,
                                     "vmm.leak_policy=" + run.row.leak_policy, "guest.cmdline=" + run.row.workload});
  const std::vector<std::string> strategy = strategy_entry(run.row.strategy).assignments();
  overrides.insert(overrides.end(), strategy.begin(), strategy.end());
  return {pgsim_run_arguments(e.base, overrides, o.results_dir), log};
}

// Reads the run's stats.json and serial.log into its row; returns why the run cannot be read as
// the table reads it (empty: it can).
std::string collect(DemoRun& run, const fs::path& dir, const fs::path& log) {
  if (!fs::exists(dir / "stats.json"))
    return "no stats.json (exit status " + std::to_string(run.exit_status) + "): " + last_line(log);
  nlohmann::json report;
  try {
    report = nlohmann::json::parse(read_text(dir / "stats.json"));
  } catch (const nlohmann::json::exception& e) {
    return (dir / "stats.json").string() + ": " + e.what();
  }
  const nlohmann::json& stats = report["stats"];
  const auto count = [&](const std::string& name) -> uint64_t {
    return stats.contains(name) && stats[name].is_number() ? stats[name].get<uint64_t>() : 0;
  };
  run.row.serial = read_text(dir / "serial.log");
  run.row.leak_total = count("vmm.leaks.total");
  run.row.violations = count("vmm.resource_control.violations");
  run.row.traps = count("vmm.traps.total");
  run.row.exits = count("vmm.exits.total");
  run.row.callouts = count("vmm.callouts.total");
  run.row.hypercalls = count("vmm.hypercalls.total");
  run.row.cycles = count("sim.cycles");
  run.row.direct_fraction =
      stats.contains("vmm.efficiency.direct_fraction") ? stats["vmm.efficiency.direct_fraction"].get<double>() : 0.0;
  // The leaks by instruction: vmm.leaks.<mnemonic> (not the total, nor finer counters under a mnemonic).
  for (const auto& [name, value] : stats.items()) {
    if (name.rfind("vmm.leaks.", 0) != 0 || name == "vmm.leaks.total" || !value.is_number()) continue;
    const std::string mnemonic = name.substr(10);
    if (mnemonic.find('.') != std::string::npos || value.get<uint64_t>() == 0) continue;
    run.row.leaks += (run.row.leaks.empty() ? "" : " ") + mnemonic + " " + std::to_string(value.get<uint64_t>());
  }

  const nlohmann::json& end = report["run"];
  const std::string how = end.value("end", "unknown"), detail = end.value("detail", "");
  if (how != "guest_exit") return "the run ended with " + how + (detail.empty() ? "" : ": " + detail);
  const std::string outcome = cli::guest_outcome(run.row.serial);
  const bool success = end.value("guest_success", false);
  if (outcome == "did not finish") return "the guest exited without its PASS or FAIL line";
  if (success != (outcome == "completed"))
    return "the guest's exit status (" + std::string(success ? "success" : "failure") +
           ") disagrees with its output (" + outcome + ")";
  return {};
}

int demo_command(const DemoOptions& o, std::ostream& out, std::ostream& err) {
  Experiment e;
  try {
    e = load_experiment(o.experiment);
  } catch (const RunFileError& x) {
    err << "pgsim demo: " << x.what() << "\n";
    return kUsageError;
  }
  std::vector<DemoRun> runs;
  for (const auto& profile : e.profiles)
    for (const auto& workload : e.workloads)
      for (const auto& strategy : e.strategies) {
        DemoRun run;
        run.row = {profile, strategy, e.leak_policy, workload, "", "", 0, 0, 0, 0, 0};
        run.name = run_name(profile, strategy, workload);
        runs.push_back(run);
      }
  try {
    fs::create_directories(o.results_dir);
  } catch (const fs::filesystem_error& x) {
    err << "pgsim demo: " << x.what() << "\n";
    return kSimulatorError;
  }
  const auto log_of = [&](const DemoRun& r) { return o.results_dir / (r.name + ".log"); };

  // At most `jobs` children at a time; one line on stderr as each run ends.
  std::vector<ChildCommand> commands;
  size_t done = 0;
  try {
    for (const DemoRun& r : runs) {
      // A previous demo's report must not pass for this run's if this one leaves none.
      for (const char* stale : {"stats.json", "serial.log"}) fs::remove(o.results_dir / r.name / stale);
      commands.push_back(run_command_of(e, o, r, log_of(r)));
    }
    install_stop_signals();  // passed on to the runs
    Progress progress("pgsim demo", runs.size());
    run_children(commands, o.jobs, [&](const ChildEnd& end) {
      DemoRun& r = runs[end.index];
      r.exit_status = end.exit_status;
      progress.clear();
      err << "[" << ++done << "/" << runs.size() << "] " << r.row.profile << " " << r.row.strategy << " '"
          << r.row.workload << "': exit status " << r.exit_status << "\n";
      progress.update(done);
    });
  } catch (const std::exception& x) {
    err << "pgsim demo: " << x.what() << "\n";
    return kSimulatorError;
  }
  if (stop_requested()) {
    err << "pgsim demo: interrupted after " << done << " of " << runs.size() << " runs\n";
    return kInterrupted + stop_signal();
  }

  std::vector<cli::PgRun> rows;
  std::vector<std::string> problems;
  std::vector<std::string> run_problems;
  for (DemoRun& r : runs) {
    run_problems.push_back(collect(r, o.results_dir / r.name, log_of(r)));
    if (!run_problems.back().empty()) problems.push_back(r.name + ": " + run_problems.back());
    rows.push_back(r.row);
  }
  nlohmann::json json_rows = nlohmann::json::array();
  for (size_t k = 0; k < runs.size(); ++k) {
    const DemoRun& r = runs[k];
    const std::string& problem = run_problems[k];
    json_rows.push_back({{"run", r.name},
                         {"profile", r.row.profile},
                         {"strategy", r.row.strategy},
                         {"leak_policy", r.row.leak_policy},
                         {"workload", r.row.workload},
                         {"guest", cli::guest_outcome(r.row.serial)},
                         {"output_against_native", cli::output_against_native(r.row, rows)},
                         {"exit_status", r.exit_status},
                         {"leaks", r.row.leak_total},
                         {"leaks_by_instruction", r.row.leaks},
                         {"resource_control_violations", r.row.violations},
                         {"direct_fraction", r.row.direct_fraction},
                         {"traps", r.row.traps},
                         {"exits", r.row.exits},
                         {"callouts", r.row.callouts},
                         {"hypercalls", r.row.hypercalls},
                         {"cycles", r.row.cycles},
                         {"problem", problem}});
  }
  const std::string table = cli::popek_goldberg_table(rows);
  out << table;
  try {
    write_file_atomically(o.results_dir / "popek_goldberg.txt", table);
    write_file_atomically(o.results_dir / "popek_goldberg.json",
                          nlohmann::json{{"experiment", o.experiment.string()}, {"runs", json_rows}}.dump(2) + "\n");
  } catch (const std::exception& x) {
    err << "pgsim demo: cannot write the table: " << x.what() << "\n";
    return kSimulatorError;
  }
  out << "(written to " << (o.results_dir / "popek_goldberg.txt").string() << " and popek_goldberg.json)\n";
  if (problems.empty()) return kGuestSuccess;
  for (const auto& p : problems) err << "pgsim demo: " << p << "\n";
  return kSimulatorError;
}

const CommandRegistration registration{"demo", [](CLI::App& app, int& status) {
  auto options = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "The Popek-Goldberg demonstration: run every profile, strategy and workload of an experiment file "
      "as a separate pgsim run and show them as one table (completed or failed, output as native's or not, leaks by instruction, "
      "resource-control violations, direct share, entries into the VMM (traps, VM exits, callouts, hypercalls), cycles, slowdown against native).");
  cmd->add_option("experiment", options->experiment, "experiment file (YAML)")
      ->type_name("EXPERIMENT.yaml")
      ->capture_default_str();
  cmd->add_option("--set", options->overrides, "override a config key in every run")
      ->type_name("key=value")
      ->allow_extra_args(false);
  cmd->add_option("--results-dir", options->results_dir, "where the runs and the table are written")
      ->capture_default_str();
  cmd->add_option("-j,--jobs", options->jobs, "runs at a time")->check(CLI::Range(1, 2))->capture_default_str();
  cmd->footer(
      "Exit status: 0 every run ended with the guest's own verdict (completed or a failed check); 2 bad "
      "experiment file; 4 a run crashed, hit a limit or left no report.");
  cmd->callback([options, &status] { status = demo_command(*options, std::cout, std::cerr); });
}};

}  // namespace
}  // namespace pgsim::cli

// `pgsim sweep SWEEP.yaml`: every run of a sweep file (platforms/cli/sweep_file.h) as a separate
// `pgsim run` child process, a few at a time, into results/<name>/<run id>/, then one CSV row per
// run in results/<name>/sweep.csv. A run whose folder already holds a report for the same resolved
// config is not run again, so an interrupted sweep resumes where it stopped, and runs done by a
// Slurm job array (--slurm writes the script, each task runs --only I) are found done; --gather
// runs nothing, writes the CSV of what the array left and names the tasks to submit again.
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "platforms/cli/atomic_file.h"
#include "platforms/cli/child_runs.h"
#include "platforms/cli/commands.h"
#include "platforms/cli/progress.h"
#include "platforms/cli/stop_signals.h"
#include "platforms/cli/sweep_file.h"
#include "platforms/config/config.h"

namespace pgsim::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct SweepOptions {
  fs::path file;
  std::vector<std::string> overrides;  // --set, applied to every run
  fs::path results_dir = "results";
  unsigned jobs = 2;
  bool force = false;
  bool list = false;
  bool slurm = false;
  bool gather = false;
  std::optional<size_t> only;
};

// What became of one run: its report (stats.json), or the exit status of a run that left none.
struct RunResult {
  std::optional<json> report;
  int exit_status = -1;  // of the child, when it ran in this invocation
  std::string problem;   // why the run did not end with the guest's exit ("" when it did)
};

// The run's stats.json when it is complete and was written for `config`; nullopt otherwise.
std::optional<json> report_for(const fs::path& dir, const json& config) {
  if (!fs::is_regular_file(dir / "stats.json")) return std::nullopt;
  try {
    json report = json::parse(read_text(dir / "stats.json"));
    // An interrupted run wrote a complete report, but of a run that did not finish: run it again.
    if (report.is_object() && report.contains("stats") && report.contains("run") &&
        report["run"].contains("end") && report["run"]["end"] != "interrupted" &&
        report.value("config", json()) == config)
      return report;
  } catch (const json::exception&) {
  }
  return std::nullopt;
}

std::string problem_of(const json& report) {
  const std::string end = report["run"].value("end", "unknown");
  if (end == "guest_exit") return "";
  const std::string detail = report["run"].value("detail", "");
  return "the run ended with " + end + (detail.empty() ? "" : ": " + detail);
}

// '*' stands for any text without a dot.
bool matches(std::string_view pattern, std::string_view name) {
  if (pattern.empty()) return name.empty();
  if (pattern.front() != '*')
    return !name.empty() && pattern.front() == name.front() && matches(pattern.substr(1), name.substr(1));
  for (size_t n = 0; n <= name.size(); ++n) {
    if (matches(pattern.substr(1), name.substr(n))) return true;
    if (n < name.size() && name[n] == '.') break;
  }
  return false;
}

// A statistic's value in a report: "run.<field>" from the report's `run`, else from its `stats`.
const json* find_value(const json& report, const std::string& name) {
  const bool run_field = name.rfind("run.", 0) == 0;
  const json& section = report[run_field ? "run" : "stats"];
  const std::string field = run_field ? name.substr(4) : name;
  return section.contains(field) ? &section[field] : nullptr;
}

std::vector<std::string> names_in(const json& report) {
  std::vector<std::string> names;
  for (const auto& [field, value] : report["run"].items()) names.push_back("run." + field);
  for (const auto& [name, value] : report["stats"].items()) names.push_back(name);
  return names;
}

// The CSV's statistic columns: each selector's name, or the names a pattern matches in any report
// (sorted), each column once. Selectors of the sweep file that name nothing any run reported go to
// `unmatched`.
std::vector<std::string> stat_columns(const Sweep& sweep, const std::vector<RunResult>& results,
                                      std::vector<std::string>& unmatched) {
  std::set<std::string> reported;
  for (const RunResult& r : results)
    if (r.report)
      for (const auto& name : names_in(*r.report)) reported.insert(name);
  std::vector<std::string> columns;
  const auto add = [&](const std::string& name) {
    if (std::find(columns.begin(), columns.end(), name) == columns.end()) columns.push_back(name);
  };
  for (const StatSelector& selector : sweep.stats) {
    const bool pattern = selector.pattern.find('*') != std::string::npos;
    bool found = false;
    for (const auto& name : reported)
      if (matches(selector.pattern, name)) {
        found = true;
        if (pattern) add(name);
      }
    if (!pattern) add(selector.pattern);
    if (found || sweep.default_stats || reported.empty()) continue;
    std::string message = sweep.file.string() + ":" + std::to_string(selector.at.line) + ":" +
                          std::to_string(selector.at.column) + ": 'stats': '" + selector.pattern +
                          "' names no statistic that any run reported";
    if (std::string near = config::nearest(selector.pattern, {reported.begin(), reported.end()}); !near.empty())
      message += "; did you mean '" + near + "'?";
    unmatched.push_back(message);
  }
  return columns;
}

std::string csv_cell(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

std::string cell_text(const json* value) {
  if (!value || value->is_null()) return "";
  if (value->is_string()) return value->get<std::string>();
  return value->dump();  // numbers as the shortest text that reads back the same, true/false
}

// A run that left no report still has its row: run.end says so, run.exit_status is the child's.
std::string cell(const RunResult& r, const std::string& column) {
  if (r.report) return cell_text(find_value(*r.report, column));
  if (column == "run.end") return "no_report";
  if (column == "run.exit_status" && r.exit_status >= 0) return std::to_string(r.exit_status);
  return "";
}

std::string sweep_csv(const Sweep& sweep, const std::vector<SweepRun>& runs, const std::vector<RunResult>& results,
                      const std::vector<std::string>& columns) {
  std::ostringstream csv;
  std::vector<std::string> header;
  for (const MatrixAxis& axis : sweep.matrix) header.push_back(axis.key);
  header.insert(header.end(), columns.begin(), columns.end());
  for (size_t i = 0; i < header.size(); ++i) csv << (i ? "," : "") << csv_cell(header[i]);
  csv << "\n";
  for (const SweepRun& run : runs) {
    std::vector<std::string> row;
    for (size_t axis = 0; axis < sweep.matrix.size(); ++axis)
      row.push_back(sweep.matrix[axis].values[run.choice[axis]].text);
    for (const auto& column : columns) row.push_back(cell(results[run.index], column));
    for (size_t i = 0; i < row.size(); ++i) csv << (i ? "," : "") << csv_cell(row[i]);
    csv << "\n";
  }
  return csv.str();
}

std::string shell_quoted(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// A Slurm job array of the sweep: task I runs run I. Paths are absolute, so that the script runs
// from wherever it is submitted.
std::string sbatch_script(const SweepOptions& o, const Sweep& sweep, size_t runs, const fs::path& sweep_dir) {
  const fs::path executable = fs::read_symlink("/proc/self/exe");
  std::ostringstream s;
  s << "#!/bin/bash\n"
    << "# The sweep " << sweep.file.string() << " as a Slurm job array: task I runs run I of the sweep\n"
    << "# (`pgsim sweep --list` shows them). Submit with `sbatch " << (sweep_dir / "sweep.sbatch").string()
    << "`;\n"
    << "# when every task has ended, `pgsim sweep " << sweep.file.string()
    << " --gather` writes sweep.csv and names the tasks\n"
    << "# that failed, with the `sbatch --array=...` command that runs just those again.\n"
    << "#SBATCH --job-name=pgsim-" << sweep.name << "\n"
    << "#SBATCH --array=0-" << runs - 1 << "\n"
    << "#SBATCH --ntasks=1\n"
    << "#SBATCH --cpus-per-task=1\n"
    << "#SBATCH --chdir=" << fs::current_path().string() << "\n"
    << "#SBATCH --output=" << fs::absolute(sweep_dir).lexically_normal().string() << "/slurm-%A_%a.out\n"
    << "exec " << shell_quoted(executable.string()) << " sweep " << shell_quoted(fs::absolute(sweep.file).string())
    << " --results-dir " << shell_quoted(fs::absolute(o.results_dir).lexically_normal().string());
  for (const auto& kv : o.overrides) s << " --set " << shell_quoted(kv);
  s << " --only \"$SLURM_ARRAY_TASK_ID\"\n";
  return s.str();
}

void list_runs(const std::vector<SweepRun>& runs, const fs::path& sweep_dir, std::ostream& out) {
  const int width = static_cast<int>(std::to_string(runs.size()).size());
  for (const SweepRun& run : runs)
    out << std::setw(width) << run.index << "  " << (report_for(sweep_dir / run.id, run.config) ? "done   " : "pending")
        << "  " << run.id << "\n";
}

// Runs those of the runs at `indices` that are not done already (all of them with --force), and
// fills in every one's result.
void run_pending(const SweepOptions& o, const Sweep& sweep, const std::vector<SweepRun>& runs,
                 const std::vector<size_t>& indices, const fs::path& sweep_dir, std::vector<RunResult>& results,
                 std::ostream& err) {
  std::vector<size_t> pending;
  for (size_t i : indices) {
    if (!o.force) results[i].report = report_for(sweep_dir / runs[i].id, runs[i].config);
    if (!results[i].report) pending.push_back(i);
  }
  if (pending.size() < indices.size())
    err << "pgsim sweep: " << indices.size() - pending.size() << " of " << indices.size() << " runs already complete in "
        << sweep_dir.string() << "/" << (pending.empty() ? "" : "; running the others") << "\n";

  std::vector<ChildCommand> commands;
  for (size_t i : pending) {
    const fs::path dir = sweep_dir / runs[i].id;
    fs::create_directories(dir);
    // A report of another config must not pass for this run's if this one leaves none.
    for (const char* stale : {"stats.json", "stats.txt"}) fs::remove(dir / stale);
    commands.push_back({pgsim_run_arguments(sweep.base, runs[i].overrides, sweep_dir), dir / "pgsim.log"});
  }
  size_t ended = 0;
  Progress progress("pgsim sweep", pending.size());
  run_children(commands, o.jobs, [&](const ChildEnd& end) {
    const SweepRun& run = runs[pending[end.index]];
    RunResult& r = results[run.index];
    r.exit_status = end.exit_status;
    r.report = report_for(sweep_dir / run.id, run.config);
    std::ostringstream took;
    took << std::fixed << std::setprecision(1) << end.host_seconds;
    progress.clear();
    err << "[" << ++ended << "/" << pending.size() << "] " << run.id << " done in " << took.str()
        << " s, exit status " << end.exit_status << "\n";
    progress.update(ended);
  });
  progress.clear();
  for (size_t i : indices) {
    RunResult& r = results[i];
    if (r.report) r.problem = problem_of(*r.report);
    else
      r.problem = "no report (exit status " + std::to_string(r.exit_status) +
                  "): " + last_line(sweep_dir / runs[i].id / "pgsim.log");
  }
}

// Runs nothing: every run's result is the report its folder holds, if any (runs done by the tasks
// of a Slurm job array, or by earlier sweeps).
void gather_reports(const std::vector<SweepRun>& runs, const fs::path& sweep_dir, std::vector<RunResult>& results) {
  for (const SweepRun& run : runs) {
    RunResult& r = results[run.index];
    const fs::path dir = sweep_dir / run.id;
    r.report = report_for(dir, run.config);
    if (r.report) r.problem = problem_of(*r.report);
    else if (fs::exists(dir / "pgsim.log"))
      r.problem = "no report: " + last_line(dir / "pgsim.log");
    else
      r.problem = "not run (no " + (dir / "pgsim.log").string() + ")";
  }
}

// The runs that did not end with the guest's exit, on stderr; their indices (none: all ended so).
std::vector<size_t> runs_not_ended_normally(const std::vector<SweepRun>& runs, const std::vector<size_t>& indices,
                                            const std::vector<RunResult>& results, std::ostream& err) {
  std::vector<size_t> failed;
  for (size_t i : indices)
    if (!results[i].problem.empty()) {
      err << "pgsim sweep: run " << i << " (" << runs[i].id << "): " << results[i].problem << "\n";
      failed.push_back(i);
    }
  return failed;
}

// How to run again just the failed runs of a gathered job array: the same script, with its array
// narrowed on sbatch's command line (which overrides the script's #SBATCH --array).
void print_resubmission(const std::vector<size_t>& failed, const fs::path& sweep_dir, std::ostream& err) {
  std::string array;
  for (size_t i : failed) array += (array.empty() ? "" : ",") + std::to_string(i);
  err << "pgsim sweep: " << failed.size() << " of the runs failed or left no report; run them again with\n"
      << "  sbatch --array=" << array << " " << shell_quoted(fs::absolute(sweep_dir / "sweep.sbatch").string())
      << "\n";
}

int sweep_command(const SweepOptions& o, std::ostream& out, std::ostream& err) {
  Sweep sweep;
  std::vector<SweepRun> runs;
  try {
    sweep = load_sweep(o.file);
    runs = expand_sweep(sweep, o.overrides);
  } catch (const SweepError& e) {
    err << "pgsim sweep: " << e.what() << "\n";
    return kUsageError;
  }
  const fs::path sweep_dir = o.results_dir / sweep.name;
  if (o.list) {
    list_runs(runs, sweep_dir, out);
    return kGuestSuccess;
  }
  if (o.only && *o.only >= runs.size()) {
    err << "pgsim sweep: --only " << *o.only << ": the sweep has " << runs.size() << " runs, 0 to "
        << runs.size() - 1 << "\n";
    return kUsageError;
  }

  std::vector<RunResult> results(runs.size());
  std::vector<size_t> indices;
  try {
    fs::create_directories(sweep_dir);
    if (o.slurm) {
      write_file_atomically(sweep_dir / "sweep.sbatch", sbatch_script(o, sweep, runs.size(), sweep_dir));
      out << "wrote " << (sweep_dir / "sweep.sbatch").string() << ": a Slurm job array of " << runs.size()
          << " tasks; submit it with sbatch, then run `pgsim sweep " << o.file.string() << " --gather` for the CSV\n";
      return kGuestSuccess;
    }
    if (o.only) indices.push_back(*o.only);
    else
      for (const SweepRun& run : runs) indices.push_back(run.index);
    if (o.gather) {
      gather_reports(runs, sweep_dir, results);
    } else {
      install_stop_signals();  // passed on to the runs; the finished ones stay done
      run_pending(o, sweep, runs, indices, sweep_dir, results, err);
    }
  } catch (const std::exception& e) {
    err << "pgsim sweep: " << e.what() << "\n";
    return kSimulatorError;
  }
  if (stop_requested()) {
    size_t done = 0;
    for (size_t i : indices) done += report_for(sweep_dir / runs[i].id, runs[i].config) ? 1 : 0;
    err << "pgsim sweep: interrupted: " << done << " of " << indices.size()
        << " runs done; the same command runs the others\n";
    return kInterrupted + stop_signal();
  }
  const std::vector<size_t> failed = runs_not_ended_normally(runs, indices, results, err);
  const bool normal = failed.empty();
  if (o.only) return normal ? kGuestSuccess : kSimulatorError;

  std::vector<std::string> unmatched;
  const std::vector<std::string> columns = stat_columns(sweep, results, unmatched);
  const fs::path csv = sweep_dir / "sweep.csv";
  try {
    write_file_atomically(csv, sweep_csv(sweep, runs, results, columns));
  } catch (const std::exception& e) {
    err << "pgsim sweep: cannot write the CSV: " << e.what() << "\n";
    return kSimulatorError;
  }
  out << csv.string() << ": " << runs.size() << " runs, " << sweep.matrix.size() + columns.size() << " columns\n";
  for (const auto& message : unmatched) err << "pgsim sweep: " << message << "\n";
  if (!normal && o.gather) print_resubmission(failed, sweep_dir, err);
  if (!normal) return kSimulatorError;
  return unmatched.empty() ? kGuestSuccess : kUsageError;
}

const CommandRegistration registration{"sweep", [](CLI::App& app, int& status) {
  auto options = std::make_shared<SweepOptions>();
  auto only = std::make_shared<size_t>(0);
  CLI::App* cmd = app.add_subcommand(
      "sweep",
      "Run a parameter sweep: a base config times a matrix of config values, each combination a separate "
      "pgsim run (in parallel, resumable), gathered into one CSV row per run: results/<name>/sweep.csv.");
  cmd->add_option("sweep", options->file, "sweep file (YAML: base, matrix, and optionally set, stats, name)")
      ->type_name("SWEEP.yaml")
      ->required();
  cmd->add_option("--set", options->overrides, "override a config key in every run (not a matrix key)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--results-dir", options->results_dir, "the runs go to DIR/<name>/<run id>/, the CSV to DIR/<name>/")
      ->type_name("DIR")
      ->capture_default_str();
  cmd->add_option("-j,--jobs", options->jobs, "runs at a time")->check(CLI::Range(1, 256))->capture_default_str();
  cmd->add_flag("--force", options->force, "run again the runs already done");
  auto* list = cmd->add_flag("--list", options->list, "print the runs (index, done or pending, id) and run nothing");
  auto* slurm = cmd->add_flag("--slurm", options->slurm,
                              "write DIR/<name>/sweep.sbatch, a Slurm job array of the runs, and run nothing");
  auto* only_option = cmd->add_option("--only", *only, "run only run I (no CSV): one task of the job array")
                          ->type_name("I");
  auto* gather = cmd->add_flag("--gather", options->gather,
                               "run nothing: write the CSV of the runs done (by a Slurm job array), name those "
                               "that failed or are missing, and print the sbatch command that runs just them");
  list->excludes(slurm)->excludes(only_option)->excludes(gather);
  slurm->excludes(only_option)->excludes(gather);
  gather->excludes(only_option);
  cmd->footer(
      "Exit status: 0 every run ended with the guest's exit (its success or failure is the CSV's run.exit_status); "
      "2 bad sweep file or command line, or a stats: entry that no run reported; 4 a run crashed, hit a limit or "
      "left no report (its row is still in the CSV).");
  cmd->callback([options, only, only_option, &status] {
    if (only_option->count() > 0) options->only = *only;
    status = sweep_command(*options, std::cout, std::cerr);
  });
}};

}  // namespace
}  // namespace pgsim::cli

// The pgsim program: parses the command line and hands each subcommand to its implementation.
#include <algorithm>
#include <iostream>
#include <map>

#include <CLI/CLI.hpp>

#include "platforms/cli/commands.h"
#include "platforms/cli/stop_signals.h"
#include "platforms/config/config.h"

#ifndef PGSIM_VERSION
#error "PGSIM_VERSION is set by CMake"
#endif

namespace {

using namespace pgsim::cli;

// The usage line printed with a command-line error, for the (sub)command that was being parsed.
std::string usage_of(const CLI::App& app, const std::string& program) {
  std::string path;
  for (const CLI::App* a = &app; a && a->get_parent(); a = a->get_parent())
    path = " " + a->get_name() + path;
  if (path.empty()) return "usage: " + program + " <command> [options]   (" + program + " --help)";
  return "usage: " + program + path + " [options]   (" + program + path + " --help)";
}

// The deepest subcommand the parser had entered when it failed.
const CLI::App* deepest_parsed(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands())
    if (sub->parsed()) return deepest_parsed(*sub);
  return &app;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string program = "pgsim";
  CLI::App app{"pgsim: a cycle-approximate x86-64 PC simulator that runs the same guest under "
               "native execution and five ways of virtualizing it, and reports what each costs "
               "and what leaks.",
               program};
  app.set_version_flag("--version", std::string("pgsim ") + PGSIM_VERSION);
  app.require_subcommand(1);
  app.footer(exit_status_help());
  int status = kGuestSuccess;

  // pgsim run
  RunOptions run;
  std::string json_path;
  CLI::App* run_cmd = app.add_subcommand(
      "run", "Run one experiment: boot the guest the config names and report its statistics.");
  run_cmd->add_option("config", run.config, "experiment config (YAML)")->required();
  run_cmd->add_option("--set", run.overrides, "override a config key: --set dotted.key=value")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  run_cmd->add_option("--json", json_path, "also write the JSON report to PATH")
      ->type_name("PATH");
  run_cmd->add_option("--results-dir", run.results_dir,
                      "folder of run outputs; the run writes to <DIR>/<run.name>/")
      ->type_name("DIR")
      ->capture_default_str();
  run_cmd->add_flag("--serial", run.echo_serial, "also print the guest's serial output");
  run_cmd->add_flag("-q,--quiet", run.quiet, "do not print the statistics table");
  run_cmd->footer(exit_status_help() +
                  "\nOutputs in <results-dir>/<run.name>/: config.yaml (resolved), stats.json, "
                  "stats.txt (gem5 style), serial.log.");
  run_cmd->callback([&] {
    if (!json_path.empty()) run.json = json_path;
    install_stop_signals();  // Ctrl-C ends the run with its reports written
    status = run_command(run, std::cout, std::cerr);
  });

  // pgsim config show | schema
  CLI::App* config_cmd = app.add_subcommand("config", "Inspect configurations and their schema.");
  config_cmd->require_subcommand(1);
  std::string show_file;
  std::vector<std::string> show_overrides;
  CLI::App* show_cmd = config_cmd->add_subcommand(
      "show", "Print every key of the resolved config with its value, unit and origin "
              "(default, file:line or --set).");
  show_cmd->add_option("config", show_file, "config file (YAML); none: the defaults");
  show_cmd->add_option("--set", show_overrides, "override a config key: --set dotted.key=value")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  show_cmd->footer("Exit status: 0 the config is valid; 2 usage or config error.");
  show_cmd->callback([&] {
    std::optional<std::filesystem::path> file;
    if (!show_file.empty()) file = show_file;
    status = config_show_command(file, show_overrides, std::cout, std::cerr);
  });
  std::string schema_format = "text";
  CLI::App* schema_cmd = config_cmd->add_subcommand(
      "schema", "Print the reference of every config key: type, default, unit, allowed values.");
  schema_cmd->add_option("--format", schema_format, "text or markdown")
      ->check(CLI::IsMember({"text", "markdown"}))
      ->capture_default_str();
  schema_cmd->callback([&] { status = config_schema_command(schema_format, std::cout); });

  // Subcommands kept in their own files (classify, sweep).
  for (const auto& command : registered_commands()) command.setup(app, status);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // An unknown command word: name the nearest command at that level.
    const CLI::App* level = &app;
    std::string unknown;
    for (int i = 1; i < argc && argv[i][0] != '-'; ++i) {
      const CLI::App* next = nullptr;
      std::vector<std::string> names;
      for (const CLI::App* sub : level->get_subcommands({})) {
        names.push_back(sub->get_name());
        if (sub->get_name() == argv[i]) next = sub;
      }
      if (next) {
        level = next;
        continue;
      }
      if (!names.empty()) {
        std::string nearest = pgsim::config::nearest(argv[i], names);
        unknown = std::string("unknown command '") + argv[i] + "'" +
                  (nearest.empty() ? "" : "; did you mean '" + nearest + "'?");
      }
      break;
    }
    std::cerr << program << ": " << (unknown.empty() ? std::string(e.what()) : unknown) << "\n";
    std::cerr << usage_of(*deepest_parsed(app), program) << "\n";
    return kUsageError;
  } catch (const std::exception& e) {
    std::cerr << program << ": internal error: " << e.what() << "\n";
    return kSimulatorError;
  }
  return status;
}

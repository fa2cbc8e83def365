// The pgsim subcommands: run, config show, config schema (commands.cpp), and a registry through
// which subcommands kept in their own files (classify, sweep) join the program.
#pragma once

#include <filesystem>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "platforms/simulation.h"

namespace CLI {
class App;
}

namespace pgsim::cli {

// Exit statuses of the pgsim program.
enum ExitStatus : int {
  kGuestSuccess = 0,    // the guest reported success (wrote 0 to the exit device)
  kGuestFailure = 1,    // the guest reported failure, halted for good or triple-faulted
  kUsageError = 2,      // bad command line or bad config
  kLimitReached = 3,    // an instruction, step or time limit ended the run, or it made no progress
  kSimulatorError = 4,  // the simulator could not go on (bad guest image, internal error)
  kInterrupted = 128,   // + the signal (SIGINT, SIGTERM) that stopped the run, as shells report it
};

// The text that --help and the README show for the exit statuses.
std::string exit_status_help();

struct RunOptions {
  std::filesystem::path config;
  std::vector<std::string> overrides;         // --set key=value
  std::optional<std::filesystem::path> json;  // --json PATH
  std::filesystem::path results_dir = "results";
  bool echo_serial = false;  // --serial: also print the guest's serial output
  bool quiet = false;        // --quiet: no statistics table
};
// Runs the experiment with `simulator` (the platform's pgsim::simulate unless a test passes its
// own), writes the outputs and returns the exit status.
using Simulator = std::function<RunOutcome(const RunContext&)>;
int run_command(const RunOptions&, std::ostream& out, std::ostream& err,
                const Simulator& simulator = simulate);

// `config show`: every key with its value and origin. No file: the defaults (and overrides).
int config_show_command(const std::optional<std::filesystem::path>& config,
                        const std::vector<std::string>& overrides, std::ostream& out,
                        std::ostream& err);
// `config schema`: the reference of every key, as "text" or "markdown".
int config_schema_command(const std::string& format, std::ostream& out);

// A subcommand kept in its own source file registers itself with a static CommandRegistration;
// its setup adds a subcommand to the program and, when it runs, stores the exit status:
//
//   static CommandRegistration classify{"classify", [](CLI::App& app, int& status) {
//     auto* cmd = app.add_subcommand("classify", "...");
//     cmd->callback([&status] { status = ...; });
//   }};
//
// Such files are compiled into the pgsim executable itself (platforms/cli/CMakeLists.txt), so the
// registration always runs.
using CommandSetup = std::function<void(CLI::App& app, int& exit_status)>;
struct CommandRegistration {
  CommandRegistration(std::string name, CommandSetup setup);
};
struct RegisteredCommand {
  std::string name;
  CommandSetup setup;
};
std::vector<RegisteredCommand>& registered_commands();

}  // namespace pgsim::cli

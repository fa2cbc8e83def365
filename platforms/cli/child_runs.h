// Child `pgsim run` processes: this executable (/proc/self/exe) started again with other
// arguments, a few at a time, each with its output in a log file. `pgsim demo` and `pgsim sweep`
// run their experiments this way, so that every run is an ordinary `pgsim run` whose results
// folder stands on its own.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace pgsim::cli {

// The arguments of `pgsim run CONFIG --set k=v ... --results-dir DIR -q` (without the program name).
std::vector<std::string> pgsim_run_arguments(const std::filesystem::path& config,
                                             const std::vector<std::string>& overrides,
                                             const std::filesystem::path& results_dir);

struct ChildCommand {
  std::vector<std::string> arguments;  // after the program name
  std::filesystem::path log;           // receives the child's stdout and stderr
};

struct ChildEnd {
  size_t index = 0;       // into the commands given
  int exit_status = 0;    // the child's exit status, or 128 + the signal that ended it
  double host_seconds = 0;  // wall-clock time from its start to its end
};

// Runs every command as a child of this executable, at most `jobs` at a time, and calls `ended` as
// each child ends (in the order they end). After SIGINT or SIGTERM (stop_signals.h), which the
// running children receive too, it starts no other child and returns when those have ended. Throws std::runtime_error when a child cannot be
// started, after waiting for those already running.
void run_children(const std::vector<ChildCommand>& commands, unsigned jobs,
                  const std::function<void(const ChildEnd&)>& ended);

// The whole of a text file ("" when it cannot be read).
std::string read_text(const std::filesystem::path& path);
// The last non-empty line of a text file: what a child that failed said last.
std::string last_line(const std::filesystem::path& path);

// Text made fit for a folder name: letters, digits, '-' and '_' kept, every run of other
// characters replaced by one '-' ("bench=in iters=20" -> "bench-in-iters-20").
std::string folder_name_part(const std::string& text);

}  // namespace pgsim::cli

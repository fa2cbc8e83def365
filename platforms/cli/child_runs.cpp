// Child pgsim processes, started with posix_spawn and reaped with waitpid.
#include "platforms/cli/child_runs.h"

#include <signal.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "platforms/cli/stop_signals.h"

extern char** environ;

namespace pgsim::cli {

namespace fs = std::filesystem;

std::vector<std::string> pgsim_run_arguments(const fs::path& config, const std::vector<std::string>& overrides,
                                             const fs::path& results_dir) {
  std::vector<std::string> args = {"run", config.string()};
  for (const auto& kv : overrides) {
    args.push_back("--set");
    args.push_back(kv);
  }
  args.insert(args.end(), {"--results-dir", results_dir.string(), "-q"});
  return args;
}

namespace {

pid_t start_child(const ChildCommand& command) {
  std::vector<std::string> args = {"pgsim"};
  args.insert(args.end(), command.arguments.begin(), command.arguments.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, command.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  // A process group of its own: a terminal's Ctrl-C reaches the child once, passed on by this
  // process (stop_signals.h), not twice (which would end it without its reports).
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error(std::string("cannot start pgsim: ") + std::strerror(rc));
  return pid;
}

}  // namespace

void run_children(const std::vector<ChildCommand>& commands, unsigned jobs,
                  const std::function<void(const ChildEnd&)>& ended) {
  using Clock = std::chrono::steady_clock;
  struct Running {
    size_t index;
    Clock::time_point start;
  };
  std::map<pid_t, Running> running;
  std::string start_failure;
  size_t next = 0;
  while (next < commands.size() || !running.empty()) {
    while (start_failure.empty() && !stop_requested() && running.size() < std::max(1u, jobs) &&
           next < commands.size()) {
      try {
        const pid_t pid = start_child(commands[next]);
        register_child(pid);
        if (stop_requested()) ::kill(pid, stop_signal());  // the signal came before it was registered
        running[pid] = {next, Clock::now()};
        ++next;
      } catch (const std::runtime_error& e) {
        start_failure = e.what();  // let the children already started end first
      }
    }
    if (running.empty()) break;
    int raw = 0;
    const pid_t pid = ::waitpid(-1, &raw, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    unregister_child(pid);
    const std::chrono::duration<double> took = Clock::now() - it->second.start;
    const ChildEnd end{it->second.index, WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw), took.count()};
    running.erase(it);
    ended(end);
  }
  if (!start_failure.empty()) throw std::runtime_error(start_failure);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string last_line(const fs::path& path) {
  std::istringstream in(read_text(path));
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

std::string folder_name_part(const std::string& text) {
  std::string part;
  for (char c : text) {
    const bool plain = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    if (plain) part += c;
    else if (!part.empty() && part.back() != '-') part += '-';
  }
  return part;
}

}  // namespace pgsim::cli

#include "platforms/cli/stop_signals.h"

#include <signal.h>

#include <array>
#include <csignal>
#include <stdexcept>

namespace pgsim::cli {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};
// Lock-free slots, so that the handler can read them (0: free).
std::array<std::atomic<pid_t>, 64> g_children{};
static_assert(std::atomic<pid_t>::is_always_lock_free && std::atomic<bool>::is_always_lock_free);

void pass_on(int sig) {
  for (auto& child : g_children)
    if (const pid_t pid = child.load(); pid > 0) ::kill(pid, sig);
}

extern "C" void on_stop_signal(int sig) {
  pass_on(sig);
  int none = 0;
  g_signal.compare_exchange_strong(none, sig);
  if (g_stop.exchange(true)) {  // the second: the default action, now
    ::signal(sig, SIG_DFL);
    ::raise(sig);
  }
}

}  // namespace

void install_stop_signals() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a parent's waitpid() returns EINTR and looks at the flag
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

const std::atomic<bool>& stop_requested() { return g_stop; }
int stop_signal() { return g_signal.load(); }

void register_child(pid_t pid) {
  for (auto& child : g_children) {
    pid_t expected = 0;
    if (child.compare_exchange_strong(expected, pid)) return;
  }
  throw std::runtime_error("more child processes than the signal forwarding keeps");
}

void unregister_child(pid_t pid) {
  for (auto& child : g_children) {
    pid_t expected = pid;
    if (child.compare_exchange_strong(expected, 0)) return;
  }
}

}  // namespace pgsim::cli

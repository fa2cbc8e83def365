// SIGINT and SIGTERM: a user's Ctrl-C, `timeout`, a cluster's time limit (Slurm's --signal).
//
// The first signal only sets a flag: `pgsim run` ends its simulation at the next quantum and
// writes its reports as usual (run.end: interrupted); `pgsim sweep` and `pgsim demo` start no
// further run. The signal is also passed on to every child pgsim registered here. A second signal
// is passed on too, and then ends the process at once, as the signal's default action does.
#pragma once

#include <sys/types.h>

#include <atomic>

namespace pgsim::cli {

// Installs the handlers (once per process; later calls do nothing).
void install_stop_signals();
// Set by the first SIGINT or SIGTERM.
const std::atomic<bool>& stop_requested();
// The signal that set it (0: none); the process's exit status is then 128 + it.
int stop_signal();
// Children that receive the signals this process receives (at most a few dozen at a time).
void register_child(pid_t pid);
void unregister_child(pid_t pid);

}  // namespace pgsim::cli

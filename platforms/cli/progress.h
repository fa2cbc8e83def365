// A progress line for long work (the runs of `pgsim demo` and `pgsim sweep`), on a terminal only:
//   pgsim sweep: 3/16 runs done, 21 s elapsed, about 1 min 31 s left
// (durations under 10 s with a tenth: "4.2 s"), redrawn in place (carriage return, erase to end of line) as each run ends, and erased before any
// other line is written to the same stream and when the work is over. It goes to stderr when
// stderr is a terminal, else to stdout when stdout is one; otherwise nothing is written, so that
// output captured in files and pipes is unchanged. PGSIM_PROGRESS=1 in the environment forces it
// onto stderr (for tests), PGSIM_PROGRESS=0 turns it off.
#pragma once
#include <chrono>
#include <cstddef>
#include <ostream>
#include <string>

namespace pgsim::cli {

class Progress {
 public:
  // `what` starts the line ("pgsim sweep"); `total` runs to do (none: no line).
  Progress(std::string what, size_t total);
  ~Progress() { clear(); }

  // Erases the line (before another line goes to the terminal); it is drawn again by update().
  void clear();
  // `done` of the runs have ended: draws the line anew.
  void update(size_t done);

  // The line for `done` of `total` after `elapsed` seconds: the estimate of what is left is the
  // time per run so far times the runs left (none before the first run ends).
  static std::string line(const std::string& what, size_t done, size_t total, double elapsed);

 private:
  std::string what_;
  size_t total_;
  std::ostream* out_ = nullptr;  // null: no terminal, nothing is written
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace pgsim::cli

#include "platforms/cli/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace pgsim::cli {

namespace {

std::ostream* progress_stream() {
  if (const char* forced = std::getenv("PGSIM_PROGRESS")) {
    if (std::strcmp(forced, "1") == 0) return &std::cerr;
    if (std::strcmp(forced, "0") == 0) return nullptr;
  }
  if (isatty(STDERR_FILENO)) return &std::cerr;
  if (isatty(STDOUT_FILENO)) return &std::cout;
  return nullptr;
}

// "4.2 s", "42 s", "3 min 05 s", "2 h 07 min".
std::string duration(double seconds) {
  if (seconds < 9.95) {
    char text[16];
    std::snprintf(text, sizeof text, "%.1f s", seconds);
    return text;
  }
  const long s = std::lround(seconds);
  char text[48];
  if (s < 60) std::snprintf(text, sizeof text, "%ld s", s);
  else if (s < 3600) std::snprintf(text, sizeof text, "%ld min %02ld s", s / 60, s % 60);
  else std::snprintf(text, sizeof text, "%ld h %02ld min", s / 3600, s / 60 % 60);
  return text;
}

}  // namespace

Progress::Progress(std::string what, size_t total)
    : what_(std::move(what)), total_(total), out_(total > 0 ? progress_stream() : nullptr) {
  update(0);
}

std::string Progress::line(const std::string& what, size_t done, size_t total, double elapsed) {
  std::string text = what + ": " + std::to_string(done) + "/" + std::to_string(total) + " runs done, " +
                     duration(elapsed) + " elapsed";
  if (done > 0 && done < total) text += ", about " + duration(elapsed / done * (total - done)) + " left";
  return text;
}

void Progress::clear() {
  if (!out_ || !drawn_) return;
  *out_ << "\r\033[K" << std::flush;
  drawn_ = false;
}

void Progress::update(size_t done) {
  if (!out_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  *out_ << "\r\033[K" << line(what_, done, total_, elapsed) << std::flush;
  drawn_ = true;
}

}  // namespace pgsim::cli

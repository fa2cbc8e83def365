// A Value Change Dump (IEEE 1364 §18) writer for traces whose changes are known with their own
// simulated time as they happen, in time order, rather than sampled by SystemC at its delta cycles:
// the CPU runs ahead of SystemC within a quantum, and an event in the middle of one keeps its time.
// Integer signals are `wire` vectors; text signals are GTKWave's `string` variables. Times are in
// picoseconds. Two changes of one signal at the same time would show only the last, so the second
// goes 1 ps later: every change stays visible (and countable) in the file.
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace pgsim::models {

class VcdWriter {
 public:
  using Signal = uint32_t;

  // Opens `path` (throws std::runtime_error naming it when it cannot be written).
  explicit VcdWriter(const std::filesystem::path& path);
  ~VcdWriter();

  // Before begin(): declares a signal in `scope` (dotted: "pc.cpu"), starting at 0 or "-".
  Signal wire(const std::string& scope, const std::string& name, unsigned width);
  Signal text(const std::string& scope, const std::string& name);
  // Before begin(): a line of the header's comment (what the signals mean, how values encode).
  void comment(const std::string& line) { comments_.push_back(line); }
  // Writes the header (with `date`, the only thing in the file that depends on when it was made)
  // and every signal's initial value at time 0.
  void begin(const std::string& date);

  // A change of `signal` at `ps` (never before the last change written: clamped to it).
  void change(Signal signal, uint64_t ps, uint64_t value);
  void change(Signal signal, uint64_t ps, std::string_view value);
  // A change only when the value differs from the signal's last one.
  void sample(Signal signal, uint64_t ps, uint64_t value) {
    if (signals_[signal].value != value) change(signal, ps, value);
  }
  void close();

 private:
  struct Var {
    std::string scope, name, id;
    unsigned width = 0;  // 0: a string
    uint64_t value = 0;
    uint64_t changed_at = 0;
    bool changed = false;  // since time 0
  };
  void advance(Var& var, uint64_t ps);

  std::ofstream out_;
  std::filesystem::path path_;
  std::vector<std::string> comments_;
  std::vector<Var> signals_;
  uint64_t time_ = 0;  // of the last change written
};

}  // namespace pgsim::models

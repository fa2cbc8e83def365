// An interrupt wire from a device's output to one or more controller input pins. Delivery is
// immediate (like VCML's GPIO sockets): the CPU samples its interrupt controllers at instruction
// boundaries, so a level change is seen by the next instruction.
#pragma once
#include <functional>
#include <utility>
#include <vector>

namespace pgsim::models {

class IrqLine {
 public:
  using Sink = std::function<void(bool level)>;

  void connect(Sink sink) { sinks_.push_back(std::move(sink)); }

  void set(bool level) {
    if (level == level_) return;
    level_ = level;
    for (auto& sink : sinks_) sink(level);
  }
  void raise() { set(true); }
  void lower() { set(false); }
  // An edge for edge-triggered inputs (the PIT's rate generator, for instance).
  void pulse() { set(true); set(false); }
  bool level() const { return level_; }

 private:
  bool level_ = false;
  std::vector<Sink> sinks_;
};

}  // namespace pgsim::models

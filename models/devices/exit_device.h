// QEMU's isa-debug-exit (iobase 0xF4, iosize 4): a write of v ends the run with exit status
// (v << 1) | 1, so a guest can report success or failure to the host.
#pragma once
#include <cstdint>
#include <functional>

#include <systemc>

#include "models/devices/register_port.h"

namespace pgsim::models {

class ExitDevice : public sc_core::sc_module {
 public:
  RegisterPort in;  // 4 ports

  // Called once with the exit status when the guest writes the port.
  std::function<void(int status)> on_exit;

  explicit ExitDevice(sc_core::sc_module_name name)
      : sc_module(name),
        in("in", [](uint64_t, unsigned, const sc_core::sc_time&) -> uint64_t { return ~0ull; },
           [this](uint64_t, unsigned, uint64_t value, const sc_core::sc_time&) {
             if (on_exit) on_exit(static_cast<int>((static_cast<uint32_t>(value) << 1) | 1));
           }) {}
};

}  // namespace pgsim::models

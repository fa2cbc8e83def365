// The boundary between the pgsim program and the simulated machine.
//
// The command-line runner (platforms/cli/) loads the config, prepares the statistics registry,
// the output folder and the serial log, and calls simulate(); the PC platform (platforms/pc/)
// implements simulate(): it builds the machine from the config, runs the guest and reports how
// the run ended.
//
// simulate() binds its counters and cycle buckets into `stats`. Before it returns normally it
// calls stats.check_cycle_total(clock) with the cycles its clock counted (a mismatch is a
// simulator error). The runner freezes the registry (stats::Registry::freeze) as soon as
// simulate() returns, so the objects that own the counters must either outlive that return, or
// simulate() calls stats.freeze() itself before it destroys them.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <ostream>
#include <stdexcept>
#include <string>

#include "models/stats/stats.h"
#include "platforms/config/config.h"

namespace pgsim {

// How a run ended.
enum class RunEnd {
  GuestExit,         // the guest wrote to the exit device
  GuestHalted,       // HLT with interrupts disabled: nothing can wake the CPU
  TripleFault,       // a fault while delivering a double fault: the machine resets
  InstructionLimit,  // run.max_instructions reached
  StepLimit,         // run.max_steps reached (instructions, events and string iterations)
  TimeLimit,         // run.max_seconds (simulated) or run.max_host_seconds reached
  NoProgress,        // the same fault at the same address run.no_progress_faults times, nothing retired
  Interrupted,       // RunContext::stop_request was set (SIGINT, SIGTERM)
};

struct RunOutcome {
  RunEnd end;
  uint32_t guest_status = 0;   // exit device: (v<<1)|1, like QEMU's isa-debug-exit
  bool guest_success = false;  // the guest wrote 0 to the exit device
  std::string detail;          // human-readable reason (e.g. which check failed, triple-fault RIP)
  uint64_t guest_instructions = 0;
  double host_seconds = 0;
};

struct RunContext {
  const config::Config& config;
  stats::Registry& stats;
  std::filesystem::path out_dir;   // results/<run-name>/ (the runner writes its files here)
  std::ostream& serial_log;        // guest serial output (the runner also tees it to the terminal on request)
  const std::atomic<bool>* stop_request = nullptr;  // set: the run ends at the next quantum as Interrupted
};

// The simulator cannot go on (a bad guest image, an internal inconsistency): the run ends with
// exit status 4 and this message.
struct SimulatorError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

RunOutcome simulate(const RunContext&);

}  // namespace pgsim

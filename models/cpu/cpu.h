// The CPU module: one SC_THREAD runs the x86 core (isa/core.h) under temporal decoupling
// (tlm_utils::tlm_quantumkeeper). Simulated time is the cycle count of the timing model divided by
// the clock frequency; the core runs in chunks up to the end of the quantum, then the thread
// synchronizes with SystemC so that timers and other processes catch up. RAM is reached through
// DMI host pointers, devices through b_transport on the memory and I/O sockets, and interrupts are
// taken at instruction boundaries from the interrupt controller (the local APIC, with the 8259
// behind its LINT0). With the cache hierarchy enabled, every data access of the core goes through
// it and what it costs beyond an L1 hit is charged to the memory cycle bucket.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <systemc>
#include <tlm>
#include <tlm_utils/simple_initiator_socket.h>
#include <tlm_utils/tlm_quantumkeeper.h>

#include "isa/core.h"
#include "isa/system/pmu.h"
#include "isa/system/system_config.h"
#include "models/devices/lapic.h"
#include "models/memory/data_access_timer.h"
#include "models/mmu/mmu.h"
#include "models/timing/timing.h"

namespace pgsim::models {

class Cpu : public sc_core::sc_module,
            public isa::PhysicalBus,
            public isa::IoBus,
            public isa::InterruptSource,
            public isa::TimeSource,
            public isa::MsrDevice {
 public:
  struct Params {
    sc_core::sc_time quantum = sc_core::sc_time(1, sc_core::SC_US);
    uint64_t max_instructions = 0;  // 0: no limit
    double max_seconds = 0;         // simulated; 0: no limit
    double max_host_seconds = 0;    // wall clock; 0: no limit
    uint64_t max_steps = 0;         // isa::CoreCounters::steps(); 0: no limit
    uint64_t no_progress_faults = 0;  // the same fault at the same RIP this often in a row ends the run; 0: never
    isa::Profile profile;           // how sensitive instructions behave at CPL > 0
    isa::CpuModel cpu_model;        // what CPUID presents and the core has (cpu.vendor, cpu.features)
    bool compiled_blocks = true;    // the core compiles hot blocks to host code (cpu.compiled_blocks)
  };

  // Why the thread stopped.
  enum class End {
    Running, GuestExit, GuestHalted, TripleFault, InstructionLimit, StepLimit, TimeLimit, HostTimeLimit,
    NoProgress, Interrupted
  };

  tlm_utils::simple_initiator_socket<Cpu> mem;  // the physical address space
  tlm_utils::simple_initiator_socket<Cpu> io;   // the I/O port space

  SC_HAS_PROCESS(Cpu);
  Cpu(sc_core::sc_module_name name, const Params& params, const TimingParams& timing,
      const MmuParams& mmu, CacheHierarchy* caches);

  isa::Core& core() { return core_; }
  Mmu& mmu() { return mmu_; }
  CycleAccount& cycles() { return account_; }
  void attach_interrupt_controller(Lapic& lapic);

  // A flag another thread or a signal handler sets to stop the run (a user's Ctrl-C): checked at
  // every quantum, as the host-time limit is; the run then ends as Interrupted.
  void set_stop_request(const std::atomic<bool>* flag) { stop_request_ = flag; }

  // The exit device was written: the run ends at the next instruction boundary.
  void request_exit(int status);

  End end() const { return end_; }
  int exit_status() const { return exit_status_; }
  const std::string& end_detail() const { return end_detail_; }
  double host_seconds() const { return host_seconds_; }

  // Called after each chunk of instructions the core ran (a quantum at most) and at the end of the
  // run, for a trace that samples the CPU's state (trace.vcd); empty: nothing is called.
  void set_chunk_observer(std::function<void()> observer) { chunk_observer_ = std::move(observer); }

  // isa::PhysicalBus
  uint8_t* host_frame(uint64_t paddr) override;
  uint64_t read(uint64_t paddr, unsigned size) override;
  void write(uint64_t paddr, unsigned size, uint64_t value) override;
  // isa::IoBus
  uint32_t in(uint16_t port, unsigned size) override;
  void out(uint16_t port, unsigned size, uint32_t value) override;
  // isa::InterruptSource
  bool interrupt_pending() override;
  uint8_t acknowledge_interrupt() override;
  bool nmi_pending() override;
  void acknowledge_nmi() override;
  // isa::TimeSource
  uint64_t current_cycle() override { return account_.total(); }
  uint64_t halted_cycles() override { return account_.halt_cycles; }
  // isa::MsrDevice: the local APIC's x2APIC registers, IA32_TSC_DEADLINE, IA32_APIC_BASE, CR8.
  bool read_msr(uint32_t msr, uint64_t& value) override;
  bool write_msr(uint32_t msr, uint64_t value) override;
  uint32_t cpuid_leaf1_ecx() const override;
  void write_cr8(uint64_t value);
  bool read_cr8(uint64_t& value);

  // The CPU's local time: SystemC time plus what the core ran ahead.
  sc_core::sc_time local_time() const;

 private:
  void run();
  void finish(End end, std::string detail);
  bool transport(tlm_utils::simple_initiator_socket<Cpu>& socket, tlm::tlm_command cmd, uint64_t addr,
                 unsigned size, uint64_t& data);
  sc_core::sc_time time_of(uint64_t cycles) const {
    return sc_core::sc_time(static_cast<double>(cycles) / timing_.clock_hz, sc_core::SC_SEC);
  }
  void wait_for_interrupt();
  // Ends the run when the host-time limit has passed or a stop was requested; true if it did.
  bool host_limits_reached();
  void invalidate_direct_mem_ptr(sc_dt::uint64 start, sc_dt::uint64 end);

  Params params_;
  TimingParams timing_;
  isa::Core core_;
  isa::SystemConfig system_config_;
  isa::SystemConfigBinding system_binding_;
  std::unique_ptr<isa::Pmu> pmu_;  // with the pmu feature
  CacheHierarchy* caches_;  // null: the cache hierarchy is disabled
  Mmu mmu_;
  CycleAccount account_;
  std::optional<DataAccessTimer> data_access_timer_;  // with the cache hierarchy
  Lapic* lapic_ = nullptr;
  tlm_utils::tlm_quantumkeeper quantum_;

  struct DmiRegion {
    uint64_t start, end;
    uint8_t* host;
  };
  std::vector<DmiRegion> dmi_;
  std::vector<std::pair<uint64_t, uint64_t>> no_dmi_;  // device ranges the router refused

  End end_ = End::Running;
  int exit_status_ = 0;
  std::string end_detail_;
  double host_seconds_ = 0;
  std::chrono::steady_clock::time_point host_start_;
  const std::atomic<bool>* stop_request_ = nullptr;

  std::function<void()> chunk_observer_;
};

const char* to_string(Cpu::End end);

}  // namespace pgsim::models

// The VMM: one interface that every virtualization strategy implements (vmm.strategy), and the
// attachment point through which the platform puts a strategy and its trap router on the core.
//
//   platform --attach_vmm(config, machine)--> TrapRouter (isa::TrapHook on the core)
//                                               └─ Vmm: NativeVmm | InterpretVmm | ...
//
// The router sees every exception and interrupt the core raises; the strategy decides whether it
// is a trap into the VMM (counted as vmm.traps.<cause>) or is delivered by the CPU through the
// guest's IDT as without a VMM. The strategy charges what it does to its own cycle buckets.
// Plain C++ on isa/: the VMM runs inside the CPU module's thread, through the core's hooks.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "isa/core.h"
#include "isa/system/events.h"
#include "models/vmm/costs.h"
#include "models/vmm/cycles.h"
#include "models/vmm/leaks.h"
#include "models/vmm/trap_cause.h"

namespace pgsim::config {
class Config;
}
namespace pgsim::stats {
class Registry;
}

namespace pgsim::vmm {

// What a strategy is given of the machine.
struct Machine {
  isa::Core& core;
  // The platform's interrupt controller as the core sees it (a VMM that virtualizes interrupts
  // stands between the two); nullptr in tests without one.
  isa::InterruptSource* interrupts = nullptr;
  // RAM above guest RAM that the VMM keeps its own structures in (its GDT, IDT, TSS, shadow page
  // tables), where the guest cannot reach it; strategies that run the guest directly need it.
  uint64_t vmm_memory_base = 0;
  uint64_t vmm_memory_size = 0;
  // Device accesses (port I/O and MMIO transactions) the platform has carried out so far, whoever
  // made them; nullptr in tests without a platform.
  const uint64_t* device_accesses = nullptr;
};

// How a strategy behaves, beyond what it costs.
struct VmmOptions {
  // vmm.leak_policy: conceal (true) hands the guest the virtual CPU's result of a sensitive
  // instruction that did not trap; expose (false) leaves it the real one, as hardware does.
  bool conceal_leaks = false;
  // vmm.shadow.cached_roots: shadow page-table roots kept across address-space switches.
  unsigned shadow_cached_roots = 8;
  // vmm.deprivileged_cpl_prot32: the real CPL of the guest kernel in 32-bit protected mode (1, 2
  // or 3; IA-32e mode uses 3).
  unsigned deprivileged_cpl_prot32 = 1;
  static VmmOptions from_config(const config::Config& c);
};

class Vmm {
 public:
  virtual ~Vmm() = default;
  // The vmm.strategy value ("native", "interpret", ...).
  virtual const char* strategy() const = 0;
  // Installs whatever the strategy needs on the core before the guest's first instruction.
  virtual void attach(isa::Core& core) {}
  // An exception or interrupt raised while the guest runs. True: the VMM took it (a trap into the
  // VMM, which handled, emulated or reflected it; the core delivers nothing). False: the CPU
  // delivers it through the IDT as it would without a VMM.
  virtual bool take_event(isa::Core& core, const isa::Event& event) = 0;
  // Strategies that look at each guest instruction before it executes (leak detection).
  virtual bool wants_instruction_boundaries() const { return false; }
  virtual void on_instruction_boundary(isa::Core& core) {}
  // Share of the guest's instructions that the host CPU executed directly (Popek-Goldberg's
  // efficiency): 1 natively, 0 for an interpreter.
  virtual double direct_fraction() const = 0;
  // Device accesses the VMM made for the guest to the devices it models in software (the guest's
  // devices are virtual): the strategy charges them at vmm.cost.device_model_cycles, and the
  // platform leaves them out of its device-latency bucket (sim.cycles.io).
  virtual uint64_t device_accesses_modelled() const { return 0; }
  // Binds the strategy's own statistics (the router binds traps, leaks, resource control).
  virtual void bind_statistics(stats::Registry& registry) {}

  VmmCycles& cycles() { return cycles_; }
  const VmmCycles& cycles() const { return cycles_; }
  const LeakLog& leaks() const { return leaks_; }
  // Real privileged state found changed by the guest (must stay zero).
  const uint64_t& resource_control_violations() const { return violations_; }
  // The cause the event just taken counts under where the strategy found more than the event
  // says (a page fault on device memory is an MMIO access); nullopt: the event's own cause.
  // Cleared by reading.
  std::optional<TrapCause> take_found_cause() { return std::exchange(found_cause_, std::nullopt); }

 protected:
  std::optional<TrapCause> found_cause_;
  VmmCycles cycles_;
  LeakLog leaks_;
  uint64_t violations_ = 0;
};

// RAM a strategy needs above guest RAM for its own structures (0: none).
uint64_t vmm_memory_needed(const std::string& strategy);

// Throws std::invalid_argument naming the strategy when pgsim does not implement it.
void check_strategy(const std::string& strategy);

// The strategy `strategy` names, with its costs; throws std::invalid_argument naming the
// strategy when pgsim does not implement it.
std::unique_ptr<Vmm> make_vmm(const std::string& strategy, const Machine& machine, const VmmCosts& costs,
                              const VmmOptions& options = {});

}  // namespace pgsim::vmm

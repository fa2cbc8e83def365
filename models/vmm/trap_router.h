// The trap router: the core's TrapHook. Every exception and interrupt the core raises passes
// here before delivery; the running strategy takes it (a trap into the VMM, counted by cause as
// vmm.traps.<cause> and vmm.traps.total) or leaves it to the CPU's own delivery through the IDT.
// It also publishes the strategy's Popek-Goldberg figures and cycle buckets.
#pragma once
#include <array>
#include <cstdint>
#include <memory>

#include "isa/core_if.h"
#include "models/vmm/trap_cause.h"
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

class TrapRouter : public isa::TrapHook {
 public:
  explicit TrapRouter(std::unique_ptr<Vmm> vmm);
  // Hooks the router (and the strategy) onto `core`.
  void attach(isa::Core& core);

  Vmm& vmm() { return *vmm_; }
  const Vmm& vmm() const { return *vmm_; }
  uint64_t traps(TrapCause cause) const { return traps_[static_cast<unsigned>(cause)]; }
  uint64_t total_traps() const { return total_; }
  // Of the traps, external interrupts; and the rest (exceptions, software interrupts, NMIs). The
  // platform charges its own delivery cost only for events the CPU delivered through the IDT,
  // i.e. its counts minus these.
  uint64_t interrupts_taken() const { return interrupts_taken_; }
  uint64_t exceptions_taken() const { return total_ - interrupts_taken_; }

  // Binds vmm.traps.*, vmm.leaks.*, vmm.resource_control.violations,
  // vmm.efficiency.direct_fraction, the strategy's statistics and its cycle buckets.
  void bind_statistics(stats::Registry& registry);

  // isa::TrapHook
  bool on_event(isa::Core& core, const isa::Event& event) override;
  void on_instruction_boundary(isa::Core& core) override { vmm_->on_instruction_boundary(core); }

 private:
  std::unique_ptr<Vmm> vmm_;
  std::array<uint64_t, kNumTrapCauses> traps_{};
  uint64_t total_ = 0;
  uint64_t interrupts_taken_ = 0;
};

// The platform's attachment point: builds the strategy vmm.strategy names with the costs of
// vmm.cost.* and the options of vmm.*, puts its router on `machine.core` and returns it. Throws
// std::invalid_argument for a strategy pgsim does not implement or a machine it cannot run on.
// The platform, once the board is built and before the simulation starts:
//   0. check_vmm_config(config) while building the machine;
//   1. gives the strategy vmm_memory_needed(strategy) bytes of RAM above guest RAM, outside the
//      memory map the guest is told of, as Machine::vmm_memory_base/size;
//   2. once memory is reachable (start of simulation), router = attach_vmm(config, machine) (machine.interrupts: the CPU's interrupt controller);
//   3. router->bind_statistics(registry);
//   4. adds router->vmm().cycles().total() to its clock (CycleAccount::total), and charges its own
//      exception and interrupt delivery only for the events the router did not take
//      (exceptions_taken(), interrupts_taken());
//   5. calls router->vmm().cycles().update_snapshot() when the run ends.
std::unique_ptr<TrapRouter> attach_vmm(const config::Config& config, const Machine& machine);
// The checks attach_vmm makes of the config alone (strategy implemented, options supported), for a
// platform that must refuse a config before it can build the VMM (e.g. before SystemC elaboration
// ends, when the VMM cannot touch memory yet). Throws std::invalid_argument.
void check_vmm_config(const config::Config& config);

}  // namespace pgsim::vmm

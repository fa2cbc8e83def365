// vmm.strategy: interpret — hosted interpretation, as Bochs does it. Every guest instruction is
// fetched, decoded and carried out by a software interpreter that keeps all of the guest's state
// (CPL, IF, control registers, descriptor tables) in software: the guest runs at its own CPL 0 on
// that virtual state, so nothing traps and nothing leaks, and no guest instruction runs directly
// on the host (direct fraction 0).
//
// pgsim's core is such an interpreter; what this strategy adds is its price. Each guest
// instruction pays, on top of its semantics (the platform's execute bucket at the class's CPI,
// timing.cpi.*, which the host spends carrying out the operation):
//   sim.cycles.interpret_dispatch  vmm.cost.interpret_cycles per instruction (fetch, decode, dispatch)
//   sim.cycles.interpret_soft_mmu  vmm.cost.soft_mmu_cycles per data access (software TLB lookup)
//   sim.cycles.interpret_device    vmm.cost.device_model_cycles per device register access (its
//                                  devices are software models; no physical device latency)
// Exceptions and interrupts are delivered by the interpreter through the guest's IDT and cost what
// the platform charges for event delivery.
#pragma once
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

class InterpretVmm final : public Vmm {
 public:
  InterpretVmm(const Machine& machine, const VmmCosts& costs);
  const char* strategy() const override { return "interpret"; }
  std::optional<TrapCause> take_event(isa::Core&, const isa::Event&) override { return std::nullopt; }
  double direct_fraction() const override { return 0.0; }
  GuestState guest_state(const isa::Core&) const override { return GuestState::Interpreted; }
  void bind_statistics(stats::Registry& registry) override;

  // Guest data accesses made through the software MMU so far.
  uint64_t soft_mmu_accesses() const;
  // Every device access: the interpreter's devices are all software.
  uint64_t device_accesses_modelled() const override { return device_accesses_ ? *device_accesses_ : 0; }

 private:
  const isa::CoreCounters& counters_;
  const uint64_t* device_accesses_;
};

}  // namespace pgsim::vmm

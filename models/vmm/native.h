// vmm.strategy: native — no VMM. The guest owns the CPU at CPL 0; every exception and interrupt
// is delivered by the CPU through the guest's IDT. The baseline every other strategy is measured
// against.
//
// With cpu.vmx the CPU offers VMX to the guest itself (isa/vmx/guest_vmx.h): a guest hypervisor
// enters VMX operation and runs nested guests, whose VM exits the CPU delivers to the host state
// it wrote in its VMCS. That is the CPU's behaviour, not a VMM's: nothing of it is a trap into
// pgsim's VMM. The strategy publishes what the guest hypervisor did as cpu.vmx.*, and charges its
// VM entries and exits at the hardware's costs (vmm.cost.vmentry_cycles, vmexit_cycles) to
// sim.cycles.vmx_transitions.
#pragma once
#include <memory>

#include "isa/system/system_config.h"
#include "isa/vmx/guest_vmx.h"
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

class NativeVmm final : public Vmm {
 public:
  NativeVmm() = default;  // without VMX for the guest
  NativeVmm(const Machine& machine, const VmmCosts& costs, const VmmOptions& options);
  ~NativeVmm() override;

  const char* strategy() const override { return "native"; }
  void attach(isa::Core& core) override;
  std::optional<TrapCause> take_event(isa::Core&, const isa::Event&) override { return std::nullopt; }
  double direct_fraction() const override { return 1.0; }
  void bind_statistics(stats::Registry& registry) override;

  // The guest's VMX (nullptr without cpu.vmx).
  const isa::vmx::GuestVmx* guest_vmx() const { return guest_vmx_.get(); }

 private:
  bool offer_vmx_ = false;
  isa::NestedPagingControl* nested_paging_ = nullptr;
  isa::Core* core_ = nullptr;
  isa::TrapHook* outer_hook_ = nullptr;             // the trap router, behind the guest's VMX
  const isa::SystemConfig* cpu_config_ = nullptr;  // the CPU's own
  isa::SystemConfig system_{};  // the CPU's, with the guest's VMX
  std::unique_ptr<isa::vmx::GuestVmx> guest_vmx_;
};

}  // namespace pgsim::vmm

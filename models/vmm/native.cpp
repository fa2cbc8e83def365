#include "models/vmm/native.h"

#include "models/stats/stats.h"

namespace pgsim::vmm {

NativeVmm::NativeVmm(const Machine& machine, const VmmCosts& costs, const VmmOptions& options)
    : offer_vmx_(options.guest_vmx), nested_paging_(machine.nested_paging) {
  if (!offer_vmx_) return;
  // The guest hypervisor's world switches cost what the hardware's do under hw_assist.
  cycles_.add_formula("vmx_transitions",
                      "cycles of the guest hypervisor's VM entries and VM exits (vmm.cost.vmentry_cycles and "
                      "vmm.cost.vmexit_cycles each)",
                      [this, costs] {
                        if (!guest_vmx_) return uint64_t{0};
                        const isa::vmx::GuestVmxCounters& c = guest_vmx_->counters();
                        return c.entries * costs.vmentry + c.exits * costs.vmexit;
                      });
}

// The core gets its own configuration and hook back: the guest's VMX goes with this strategy.
NativeVmm::~NativeVmm() {
  if (!core_) return;
  if (core_->system_config() == &system_) core_->set_system_config(cpu_config_);
  if (core_->trap_hook() == guest_vmx_.get()) core_->set_trap_hook(outer_hook_, false);
}

// The guest's VMX stands in front of the trap router as the core's hook (it sees the nested
// guest's instructions and events), and is the VMX of the CPU's SystemConfig.
void NativeVmm::attach(isa::Core& core) {
  if (!offer_vmx_) return;
  core_ = &core;
  outer_hook_ = core.trap_hook();
  cpu_config_ = core.system_config();
  guest_vmx_ = std::make_unique<isa::vmx::GuestVmx>(core, nested_paging_, outer_hook_);
  if (cpu_config_) system_ = *cpu_config_;
  system_.vmx = guest_vmx_.get();
  core.set_system_config(&system_);
  core.set_trap_hook(guest_vmx_.get(), false);
}

void NativeVmm::bind_statistics(stats::Registry& r) {
  if (!guest_vmx_) return;
  using stats::Unit;
  const isa::vmx::GuestVmxCounters& c = guest_vmx_->counters();
  r.bind("cpu.vmx.entries", Unit::Count, "VM entries of the guest hypervisor that reached its nested guest", &c.entries);
  r.bind("cpu.vmx.entry_failures", Unit::Count,
         "VMLAUNCH and VMRESUME of the guest hypervisor that failed (VMfail, or a VM-entry failure exit)",
         &c.entry_failures);
  r.bind("cpu.vmx.exits.total", Unit::Count, "VM exits to the guest hypervisor (VM-entry failures included)", &c.exits);
  r.bind_family("cpu.vmx.exits", Unit::Count, "VM exits to the guest hypervisor for this basic exit reason",
                &c.exits_by_reason);
  r.bind("cpu.vmx.instructions.total", Unit::Instructions, "VMX instructions the guest hypervisor executed in VMX root "
                                                          "operation (and VMXON)", &c.instructions);
  r.bind_family("cpu.vmx.instructions", Unit::Instructions, "VMX instructions the guest hypervisor executed",
                &c.instructions_by_mnemonic);
}

}  // namespace pgsim::vmm

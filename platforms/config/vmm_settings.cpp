#include "platforms/config/vmm_settings.h"

namespace pgsim::config {

vmm::VmmCosts vmm_costs(const Config& c) {
  vmm::VmmCosts k;
  k.trap = c.u64("vmm.cost.trap_cycles");
  k.resume = c.u64("vmm.cost.resume_cycles");
  k.emulate = c.u64("vmm.cost.emulate_cycles");
  k.emulate_io = c.u64("vmm.cost.emulate_io_cycles");
  k.reflect = c.u64("vmm.cost.reflect_cycles");
  k.emulate_mmio = c.u64("vmm.cost.emulate_mmio_cycles");
  k.shadow_fill = c.u64("vmm.cost.shadow_fill_cycles");
  k.shadow_trace = c.u64("vmm.cost.shadow_trace_cycles");
  k.interpret = c.u64("vmm.cost.interpret_cycles");
  k.soft_mmu = c.u64("vmm.cost.soft_mmu_cycles");
  k.device_model = c.u64("vmm.cost.device_model_cycles");
  k.hypercall = c.u64("vmm.cost.hypercall_cycles");
  k.hypercall_handler = c.u64("vmm.cost.hypercall_handler_cycles");
  k.pt_validate = c.u64("vmm.cost.pt_validate_cycles");
  return k;
}

vmm::VmmOptions vmm_options(const Config& c) {
  vmm::VmmOptions o;
  o.conceal_leaks = c.str("vmm.leak_policy") == "conceal";
  o.shadow_cached_roots = static_cast<unsigned>(c.u64("vmm.shadow.cached_roots"));
  o.deprivileged_cpl_prot32 = static_cast<unsigned>(c.u64("vmm.deprivileged_cpl_prot32"));
  o.paging = c.str("vmm.paging");
  return o;
}

void check_vmm_config(const Config& c) { vmm::check_strategy(c.str("vmm.strategy")); }

std::unique_ptr<vmm::TrapRouter> attach_vmm(const Config& c, const vmm::Machine& machine) {
  check_vmm_config(c);
  auto router = std::make_unique<vmm::TrapRouter>(
      vmm::make_vmm(c.str("vmm.strategy"), machine, vmm_costs(c), vmm_options(c)));
  router->attach(machine.core);
  return router;
}

}  // namespace pgsim::config

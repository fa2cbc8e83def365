#include "platforms/config/vmm_settings.h"

#include "platforms/config/cpu_model.h"

#include <stdexcept>

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
  k.vmexit = c.u64("vmm.cost.vmexit_cycles");
  k.vmentry = c.u64("vmm.cost.vmentry_cycles");
  k.bt_translate = c.u64("vmm.cost.bt_translate_cycles");
  k.bt_callout = c.u64("vmm.cost.bt_callout_cycles");
  k.bt_indirect = c.u64("vmm.cost.bt_indirect_cycles");
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
  o.use_pcid = c.flag("mmu.tlb.pcid");
  o.tpr_shadow = c.flag("vmm.hw_assist.tpr_shadow");
  o.vpid = c.flag("vmm.hw_assist.vpid");
  o.ept_page_size = c.str("vmm.ept.page_size") == "4K"   ? 4ull << 10
                    : c.str("vmm.ept.page_size") == "1G" ? 1ull << 30
                                                         : 2ull << 20;
  o.ept_shuffled = c.str("vmm.ept.layout") == "shuffled";
  o.bt_unit_instructions = static_cast<unsigned>(c.u64("vmm.bt.unit_instructions"));
  o.bt_tc_bytes = c.u64("vmm.bt.tc_bytes");
  o.bt_adapt_after = static_cast<unsigned>(c.u64("vmm.bt.adapt_after"));
  o.paging = c.str("vmm.paging");
  o.guest_vmx = cpu_has_vmx(c);
  return o;
}

void check_vmm_config(const Config& c) {
  vmm::check_strategy(c.str("vmm.strategy"));
}

std::unique_ptr<vmm::TrapRouter> attach_vmm(const Config& c, const vmm::Machine& machine) {
  check_vmm_config(c);
  auto router = std::make_unique<vmm::TrapRouter>(
      vmm::make_vmm(c.str("vmm.strategy"), machine, vmm_costs(c), vmm_options(c)));
  router->attach(machine.core);
  return router;
}

}  // namespace pgsim::config

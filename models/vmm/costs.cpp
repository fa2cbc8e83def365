#include "models/vmm/costs.h"

#include "platforms/config/config.h"

namespace pgsim::vmm {

VmmCosts VmmCosts::from_config(const config::Config& c) {
  VmmCosts k;
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
  return k;
}

}  // namespace pgsim::vmm

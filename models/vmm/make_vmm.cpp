// The strategies pgsim implements, by vmm.strategy name.
#include <stdexcept>

#include "models/vmm/interpret.h"
#include "models/vmm/native.h"
#include "models/vmm/trap_emulate.h"
#include "models/vmm/vmm.h"
#include "platforms/config/config.h"

namespace pgsim::vmm {

uint64_t vmm_memory_needed(const std::string& strategy) {
  // trap_emulate: its GDT, IDT and TSS, and a pool of shadow page-table frames (lazily filled
  // shadows of up to 2 x vmm.shadow.cached_roots address spaces).
  return strategy == "trap_emulate" ? 16ull << 20 : 0;
}

VmmOptions VmmOptions::from_config(const config::Config& c) {
  VmmOptions o;
  o.conceal_leaks = c.str("vmm.leak_policy") == "conceal";
  o.shadow_cached_roots = static_cast<unsigned>(c.u64("vmm.shadow.cached_roots"));
  o.deprivileged_cpl_prot32 = static_cast<unsigned>(c.u64("vmm.deprivileged_cpl_prot32"));
  return o;
}

void check_strategy(const std::string& strategy) {
  for (const char* implemented : {"native", "interpret", "trap_emulate"})
    if (strategy == implemented) return;
  throw std::invalid_argument("vmm.strategy '" + strategy +
                              "' is not implemented in this pgsim (implemented: native, interpret, trap_emulate)");
}

std::unique_ptr<Vmm> make_vmm(const std::string& strategy, const Machine& machine, const VmmCosts& costs,
                              const VmmOptions& options) {
  if (strategy == "native") return std::make_unique<NativeVmm>();
  if (strategy == "interpret") return std::make_unique<InterpretVmm>(machine, costs);
  if (strategy == "trap_emulate") return std::make_unique<TrapEmulateVmm>(machine, costs, options);
  check_strategy(strategy);
  throw std::logic_error("vmm.strategy '" + strategy + "' passes check_strategy but make_vmm cannot build it");
}

}  // namespace pgsim::vmm

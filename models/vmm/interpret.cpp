#include "models/vmm/interpret.h"

#include "models/stats/stats.h"

namespace pgsim::vmm {

InterpretVmm::InterpretVmm(const Machine& machine, const VmmCosts& costs)
    : counters_(machine.core.counters()), device_accesses_(machine.device_accesses) {
  const isa::CoreCounters& c = counters_;
  const uint64_t dispatch = costs.interpret, soft_mmu = costs.soft_mmu, device_model = costs.device_model;
  cycles_.add_formula("interpret_dispatch",
                      "cycles the interpreter spends fetching, decoding and dispatching guest instructions",
                      [&c, dispatch] { return c.retired * dispatch; });
  cycles_.add_formula("interpret_soft_mmu",
                      "cycles the interpreter spends translating guest data accesses in its software MMU",
                      [this, soft_mmu] { return soft_mmu_accesses() * soft_mmu; });
  cycles_.add_formula("interpret_device", "cycles the interpreter's software device models spend on guest device accesses",
                      [this, device_model] { return device_accesses_modelled() * device_model; });
}

uint64_t InterpretVmm::soft_mmu_accesses() const {
  // Every data translation either hits the core's soft TLB or is handed to the Translator.
  return counters_.dtlb_hits + counters_.dtlb_misses;
}

void InterpretVmm::bind_statistics(stats::Registry& r) {
  const isa::CoreCounters& c = counters_;
  r.formula("vmm.interpret.soft_mmu_accesses", stats::Unit::Count,
            "guest data accesses translated by the interpreter's software MMU",
            [this] { return static_cast<double>(soft_mmu_accesses()); });
  r.bind("vmm.interpret.instructions", stats::Unit::Instructions, "guest instructions interpreted", &c.retired);
  r.formula("vmm.interpret.device_accesses", stats::Unit::Count,
            "guest device register accesses served by the interpreter's software device models",
            [this] { return static_cast<double>(device_accesses_modelled()); });
}

}  // namespace pgsim::vmm

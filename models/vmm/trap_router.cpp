#include "models/vmm/trap_router.h"

#include <stdexcept>

#include "models/stats/stats.h"
#include "platforms/config/config.h"

namespace pgsim::vmm {

TrapRouter::TrapRouter(std::unique_ptr<Vmm> vmm) : vmm_(std::move(vmm)) {}

void TrapRouter::attach(isa::Core& core) {
  vmm_->attach(core);
  core.set_trap_hook(this, vmm_->wants_instruction_boundaries());
}

bool TrapRouter::on_event(isa::Core& core, const isa::Event& event) {
  if (!vmm_->take_event(core, event)) return false;
  ++traps_[static_cast<unsigned>(vmm_->take_found_cause().value_or(trap_cause(event)))];
  ++total_;
  if (event.kind == isa::EventKind::External) ++interrupts_taken_;  // as the core counts them
  return true;
}

void TrapRouter::bind_statistics(stats::Registry& r) {
  using stats::Unit;
  const std::string strategy = vmm_->strategy();
  r.bind("vmm.traps.total", Unit::Count, "exceptions and interrupts taken by the VMM (" + strategy + ")", &total_);
  for (unsigned c = 0; c < kNumTrapCauses; ++c) {
    const auto cause = static_cast<TrapCause>(c);
    r.bind(std::string("vmm.traps.") + trap_cause_name(cause), Unit::Count,
           std::string(trap_cause_description(cause)) + " taken by the VMM", &traps_[c]);
  }
  const LeakLog& leaks = vmm_->leaks();
  r.bind("vmm.leaks.total", Unit::Count,
         "sensitive instructions that ran deprivileged without trapping and gave a result other than the "
         "virtual CPU's",
         &leaks.total());
  for (unsigned k = 0; k < isa::kNumSensitiveInsns; ++k) {
    const auto insn = static_cast<isa::SensitiveInsn>(k);
    r.bind(std::string("vmm.leaks.") + isa::sensitive_insn_key(insn), Unit::Count,
           std::string("leaks of ") + isa::sensitive_insn_key(insn), &leaks.of(insn).count);
  }
  r.bind("vmm.resource_control.violations", Unit::Count,
         "real privileged state found changed by the guest (must be zero)", &vmm_->resource_control_violations());
  Vmm* vmm = vmm_.get();
  r.formula("vmm.efficiency.direct_fraction", Unit::Ratio,
            "share of guest instructions the host CPU executed directly", [vmm] { return vmm->direct_fraction(); });
  vmm_->bind_statistics(r);
  for (const VmmCycles::Bucket& b : vmm_->cycles().buckets()) r.bind_cycle_bucket(b.name, b.description, &b.snapshot);
}

void check_vmm_config(const config::Config& config) { check_strategy(config.str("vmm.strategy")); }

std::unique_ptr<TrapRouter> attach_vmm(const config::Config& config, const Machine& machine) {
  check_vmm_config(config);
  auto router = std::make_unique<TrapRouter>(make_vmm(config.str("vmm.strategy"), machine,
                                                     VmmCosts::from_config(config), VmmOptions::from_config(config)));
  router->attach(machine.core);
  return router;
}

}  // namespace pgsim::vmm

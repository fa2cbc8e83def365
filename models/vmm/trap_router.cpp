#include "models/vmm/trap_router.h"

#include <stdexcept>

#include "models/stats/stats.h"

namespace pgsim::vmm {

TrapRouter::TrapRouter(std::unique_ptr<Vmm> vmm) : vmm_(std::move(vmm)) {}

void TrapRouter::attach(isa::Core& core) {
  core.set_trap_hook(this, false);
  vmm_->attach(core);
}

void TrapRouter::set_trace(VmmTrace* trace) {
  trace_ = trace;
  const struct {
    ReasonLog& log;
    VmmEntry how;
  } logs[] = {{vmm_->exits_, VmmEntry::Exit}, {vmm_->callouts_, VmmEntry::Callout},
              {vmm_->hypercalls_, VmmEntry::Hypercall}};
  for (const auto& [log, how] : logs) {
    if (!trace) log.set_observer(nullptr);
    else log.set_observer([this, how = how](const std::string& reason) { entered(how, reason); });
  }
}

void TrapRouter::entered(VmmEntry how, const std::string& reason) {
  entered_ = true;
  trace_->entered(in_call_ ? call_began_ : trace_->now(), how, reason);
}

bool TrapRouter::on_event(isa::Core& core, const isa::Event& event) {
  return traced([&] {
    const std::optional<TrapCause> cause = vmm_->take_event(core, event);
    if (!cause) return false;
    ++traps_[static_cast<unsigned>(*cause)];
    ++total_;
    if (event.kind == isa::EventKind::External) ++interrupts_taken_;  // as the core counts them
    if (trace_) entered(VmmEntry::Trap, trap_cause_name(*cause));
    return true;
  });
}

bool TrapRouter::on_delivery_fault(isa::Core& core, const isa::Event& delivering, const isa::Event& fault) {
  return traced([&] {
    const std::optional<TrapCause> cause = vmm_->take_delivery_fault(core, delivering, fault);
    if (!cause) return false;
    ++traps_[static_cast<unsigned>(*cause)];
    ++total_;
    if (trace_) entered(VmmEntry::Trap, trap_cause_name(*cause));
    return true;
  });
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
  const struct {
    const char* prefix;
    const ReasonLog& log;
    const char* what;
  } reasons[] = {{"vmm.exits", vmm_->exits(), "VM exits"},
                 {"vmm.callouts", vmm_->callouts(), "callouts from translated code into the VMM"},
                 {"vmm.hypercalls", vmm_->hypercalls(), "hypercalls"}};
  for (const auto& [prefix, log, what] : reasons) {
    r.bind(std::string(prefix) + ".total", Unit::Count, std::string(what) + " (" + strategy + ")", &log.total());
    r.bind_family(prefix, Unit::Count, std::string(what) + " for this reason", &log.by_name());
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

}  // namespace pgsim::vmm

#include "models/vmm/trap_emulate.h"

namespace pgsim::vmm {

using namespace isa;

TrapEmulateVmm::TrapEmulateVmm(const Machine& machine, const VmmCosts& costs, const VmmOptions& options)
    : options_(options), guest_("trap_emulate", machine, costs, options, cycles_, violations_) {}

void TrapEmulateVmm::attach(Core& real) {
  real_ = &real;
  guest_.attach(real);
  leak_detector_ = std::make_unique<LeakDetector>(guest_.vcpu(), guest_.shadow(), leaks_, options_.conceal_leaks,
                                                  [this](Core& core) { guest_.project(core); });
  real.remark_decoded();  // marks the sensitive instructions from now on
}

std::optional<TrapCause> TrapEmulateVmm::take_event(Core& real, const Event& event) {
  const TrapCause cause = trap_cause(event);
  if (!guest_.direct()) {
    guest_.take_while_interpreting(real, event);
    return cause;
  }
  leak_detector_->cancel();  // a watched instruction that trapped after all leaked nothing
  guest_.enter(real);
  const TrapCause taken = guest_.handle_trap(real, event);
  if (!real.is_shutdown()) guest_.resume(real);
  return taken;
}

bool TrapEmulateVmm::wants_before(const Insn& insn, uint64_t) {
  return leak_detector_ && (leak_detector_->watches(insn) || DeprivilegedGuest::certain_fault(insn));
}

PreExecute TrapEmulateVmm::before_instruction(Core& real, const Insn& insn) {
  if (const std::optional<Fault> fault = DeprivilegedGuest::certain_fault(insn)) {
    // It traps on the real CPU: delivered as the fault it raises, without unwinding one.
    real.fault_before_execute(*fault);
    return PreExecute::Fault;
  }
  ++pre_execute_calls_;
  leak_detector_->before(real, insn);
  return PreExecute::Execute;
}

void TrapEmulateVmm::after_instruction(Core& real, const Insn&) { leak_detector_->after(real); }

double TrapEmulateVmm::direct_fraction() const {
  return guest_.direct_fraction(leak_detector_ ? leak_detector_->evaluations() : 0);
}

}  // namespace pgsim::vmm

// The trap router: the core's TrapHook. Every exception and interrupt the core raises passes
// here before delivery; the running strategy takes it (a trap into the VMM, counted by cause as
// vmm.traps.<cause> and vmm.traps.total) or leaves it to the CPU's own delivery through the IDT.
// It also publishes the strategy's Popek-Goldberg figures and cycle buckets, and tells a trace of
// the run (set_trace) of every entry into the VMM and every return to the guest.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "isa/core_if.h"
#include "models/vmm/trap_cause.h"
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

class TrapRouter : public isa::TrapHook {
 public:
  explicit TrapRouter(std::unique_ptr<Vmm> vmm);
  // Hooks the router (and the strategy) onto `core`.
  void attach(isa::Core& core);

  Vmm& vmm() { return *vmm_; }
  const Vmm& vmm() const { return *vmm_; }
  uint64_t traps(TrapCause cause) const { return traps_[static_cast<unsigned>(cause)]; }
  uint64_t total_traps() const { return total_; }
  // Of the traps, external interrupts; and the rest (exceptions, software interrupts, NMIs). The
  // platform charges its own delivery cost only for events the CPU delivered through the IDT,
  // i.e. its counts minus these.
  uint64_t interrupts_taken() const { return interrupts_taken_; }
  uint64_t exceptions_taken() const { return total_ - interrupts_taken_; }

  // Binds vmm.traps.*, vmm.exits.*, vmm.callouts.*, vmm.hypercalls.*, vmm.leaks.*,
  // vmm.resource_control.violations, vmm.efficiency.direct_fraction, the strategy's statistics
  // and its cycle buckets.
  void bind_statistics(stats::Registry& registry);

  // Reports every entry into the VMM (a trap taken, a VM exit, a callout, a hypercall) with its
  // reason, at the cycle the hook call that led to it began, and the return to the guest at the
  // end of that call. nullptr: no trace.
  void set_trace(VmmTrace* trace);

  // isa::TrapHook
  bool on_event(isa::Core& core, const isa::Event& event) override;
  bool on_delivery_fault(isa::Core& core, const isa::Event& delivering, const isa::Event& fault) override;
  void on_instruction_boundary(isa::Core& core) override {
    traced([&] { vmm_->on_instruction_boundary(core); });
  }
  bool wants_before(const isa::Insn& insn, uint64_t paddr) override { return vmm_->wants_before(insn, paddr); }
  isa::PreExecute before_instruction(isa::Core& core, const isa::Insn& insn) override {
    return traced([&] { return vmm_->before_instruction(core, insn); });
  }
  void after_instruction(isa::Core& core, const isa::Insn& insn) override {
    traced([&] { vmm_->after_instruction(core, insn); });
  }

 private:
  // Runs a call into the strategy; with a trace, notes when it began and, if the guest entered
  // the VMM during it, tells the trace of the return to the guest once it is over.
  template <class Call>
  std::invoke_result_t<Call&> traced(Call&& call) {
    if (!trace_ || in_call_) return call();  // a nested call is part of the outer one
    call_began_ = trace_->now();
    in_call_ = true;
    entered_ = false;
    struct Leave {
      TrapRouter& router;
      ~Leave() {
        router.in_call_ = false;
        if (router.entered_) router.trace_->left();
      }
    } leave{*this};
    return call();
  }
  void entered(VmmEntry how, const std::string& reason);

  std::unique_ptr<Vmm> vmm_;
  VmmTrace* trace_ = nullptr;
  uint64_t call_began_ = 0;
  bool in_call_ = false, entered_ = false;
  std::array<uint64_t, kNumTrapCauses> traps_{};
  uint64_t total_ = 0;
  uint64_t interrupts_taken_ = 0;
};

}  // namespace pgsim::vmm

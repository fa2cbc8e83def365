// vmm.strategy: trap_emulate — the classic VMM (Popek and Goldberg's). The guest kernel runs
// directly on the CPU, deprivileged (models/vmm/deprivileged_guest.h: CPL 3 in IA-32e mode, the
// configured CPL in 32-bit protected mode, the VMM's descriptor tables, shadow page tables).
// Every exception and interrupt traps into the VMM, which dispatches it by cause:
//   external interrupt, NMI, INT n, INT3, INTO, #DB   reflected through the guest's IDT
//   #PF                                              the shadow pager: filled, traced, MMIO
//                                                    emulated, or reflected
//   any other exception                              the faulting instruction emulated on the
//                                                    virtual CPU (a privileged instruction at the
//                                                    guest's own CPL 0), or its fault reflected
// and returns to the guest. The sensitive instructions that do not trap on the CPU's profile are
// marked at decode and checked for leaks as they run (models/vmm/leak_detector.h): on classic
// x86 they are what makes this strategy fail Popek and Goldberg's equivalence.
#pragma once
#include <memory>

#include "models/vmm/deprivileged_vmm.h"
#include "models/vmm/leak_detector.h"
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

class TrapEmulateVmm final : public DeprivilegedVmm {
 public:
  TrapEmulateVmm(const Machine& machine, const VmmCosts& costs, const VmmOptions& options = {});

  const char* strategy() const override { return "trap_emulate"; }
  void attach(isa::Core& core) override;
  std::optional<TrapCause> take_event(isa::Core& core, const isa::Event& event) override;
  bool wants_before(const isa::Insn& insn, uint64_t paddr) override;
  isa::PreExecute before_instruction(isa::Core& core, const isa::Insn& insn) override;
  void after_instruction(isa::Core& core, const isa::Insn& insn) override;
  double direct_fraction() const override;
  void bind_statistics(stats::Registry& registry) override { guest_.bind_statistics(registry); }

  VirtualCpu& virtual_cpu() { return guest_.vcpu(); }
  const ShadowCounters& shadow() const { return guest_.shadow().counters(); }
  // Instructions emulated (I/O and MMIO among them), by mnemonic; events reflected to the guest;
  // instructions interpreted.
  uint64_t emulated() const { return guest_.emulated(); }
  uint64_t emulated_io() const { return guest_.emulated_io(); }
  uint64_t emulated_mmio() const { return guest_.emulated_mmio(); }
  const EmulatedLog& emulated_by_mnemonic() const { return guest_.emulated_by_mnemonic(); }
  uint64_t reflected() const { return guest_.reflected(); }
  uint64_t interpreted() const { return guest_.interpreted(); }
  // The first resource-control violation found ("" while there is none).
  const std::string& first_violation() const { return guest_.first_violation(); }
  // Calls into the VMM before marked instructions (leak checks), for tests of the hook's cost.
  uint64_t pre_execute_calls() const { return pre_execute_calls_; }

 private:
  VmmOptions options_;
  DeprivilegedGuest& deprivileged() override { return guest_; }
  const DeprivilegedGuest& deprivileged() const override { return guest_; }
  DeprivilegedGuest guest_;
  std::unique_ptr<LeakDetector> leak_detector_;
  isa::Core* real_ = nullptr;
  uint64_t pre_execute_calls_ = 0;
};

}  // namespace pgsim::vmm

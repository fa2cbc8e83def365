// The VMM: one interface that every virtualization strategy implements (vmm.strategy), and the
// attachment point through which the platform puts a strategy and its trap router on the core.
//
//   platform --attach_vmm(...)--> TrapRouter (isa::TrapHook on the core)
//                                   └─ Vmm: NativeVmm | InterpretVmm | TrapEmulateVmm | ...
//
// A VMM is entered for a reason, and each way in has its own reason type and counters:
// - an exception or interrupt the core raises (take_event: a TrapCause, vmm.traps.<cause>);
// - an instruction the strategy marked at decode (wants_before: a sensitive instruction to watch
//   for leaks, a callout in translated code, an instruction that exits non-root operation), which
//   the core hands to before_instruction() and after_instruction() around its execution;
// - what the strategy finds there: a VM exit (vmm.exits.<reason>, SDM basic exit reasons), a
//   callout from translated code (vmm.callouts.<op>) or a hypercall (vmm.hypercalls.<op>),
//   recorded in the strategy's ReasonLogs, which the router publishes.
// Each strategy handles these as a dispatch by reason with short handlers, composed from shared
// components (models/vmm/deprivileged_guest.h, virtual_cpu.h, shadow_paging.h, leak_detector.h).
// Plain C++ on isa/: the VMM runs inside the CPU module's thread, through the core's hooks.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "isa/core.h"
#include "isa/system/ept.h"
#include "isa/system/events.h"
#include "models/vmm/costs.h"
#include "models/vmm/cycles.h"
#include "models/vmm/leaks.h"
#include "models/vmm/reason_log.h"
#include "models/vmm/trap_cause.h"
#include "models/vmm/vmm_trace.h"

namespace pgsim::stats {
class Registry;
}

namespace pgsim::vmm {

// What a strategy is given of the machine.
struct Machine {
  isa::Core& core;
  // The platform's interrupt controller as the core sees it (a VMM that virtualizes interrupts
  // stands between the two); nullptr in tests without one.
  isa::InterruptSource* interrupts = nullptr;
  // RAM above guest RAM that the VMM keeps its own structures in (its GDT, IDT, TSS, shadow page
  // tables), where the guest cannot reach it; strategies that run the guest directly need it.
  uint64_t vmm_memory_base = 0;
  uint64_t vmm_memory_size = 0;
  // Device accesses (port I/O and MMIO transactions) the platform has carried out so far, whoever
  // made them; nullptr in tests without a platform.
  const uint64_t* device_accesses = nullptr;
  // The MMU's nested-paging switch (EPT), for strategies that use hardware-assisted paging;
  // nullptr on machines without one.
  isa::NestedPagingControl* nested_paging = nullptr;
  // The guest's RAM as [base, base + size) ranges of physical addresses (below and above the
  // 4 GiB hole); empty: [0, vmm_memory_base).
  std::vector<std::pair<uint64_t, uint64_t>> guest_ram{};
  // Whether guest RAM [paddr, paddr + size) was never touched, so that it reads as zeros without
  // being read (which would make the host allocate it); unset in tests without a platform.
  std::function<bool(uint64_t paddr, uint64_t size)> ram_untouched{};
};

// How a strategy behaves, beyond what it costs.
struct VmmOptions {
  // vmm.leak_policy: conceal (true) hands the guest the virtual CPU's result of a sensitive
  // instruction that did not trap; expose (false) leaves it the real one, as hardware does.
  bool conceal_leaks = false;
  // vmm.shadow.cached_roots: shadow page-table roots kept across address-space switches.
  unsigned shadow_cached_roots = 8;
  // vmm.deprivileged_cpl_prot32: the real CPL of the guest kernel in 32-bit protected mode (1, 2
  // or 3; IA-32e mode uses 3).
  unsigned deprivileged_cpl_prot32 = 1;
  // mmu.tlb.pcid: the CPU has process-context identifiers, and a VMM gives each shadow address
  // space its own, so that switching between them keeps their TLB entries.
  bool use_pcid = false;
  // hw_assist (vmm.hw_assist.*, vmm.ept.*): the VMCS's "use TPR shadow" (false: CR8 accesses
  // exit), VPIDs for the guest's TLB entries, the EPT's page size (4 KiB, 2 MiB or 1 GiB) and
  // whether guest RAM sits in host RAM in shuffled 2 MiB chunks (else guest-physical = host-physical).
  bool tpr_shadow = true;
  bool vpid = true;
  uint64_t ept_page_size = 2ull << 20;
  bool ept_shuffled = true;
  // vmm.bt.*: binary translation's unit size (guest instructions), translation-cache size (bytes)
  // and the faults of one translated store after which it is retranslated into a callout.
  unsigned bt_unit_instructions = 12;
  uint64_t bt_tc_bytes = 1ull << 20;
  unsigned bt_adapt_after = 4;
  // vmm.paging as resolved ("shadow", "direct", ...; "" or "auto": the strategy's default).
  std::string paging;
  // cpu.vmx: the CPU has VMX. The native strategy then lets guest code use it (VMX for guest
  // hypervisors, isa/vmx/guest_vmx.h); hw_assist uses it itself.
  bool guest_vmx = false;
};

class Vmm {
 public:
  virtual ~Vmm() = default;
  // The vmm.strategy value ("native", "interpret", ...).
  virtual const char* strategy() const = 0;
  // Installs whatever the strategy needs on the core before the guest's first instruction.
  virtual void attach(isa::Core& core) {}
  // An exception or interrupt raised while the guest runs. A cause: the VMM took it (a trap into
  // the VMM, which handled, emulated or reflected it; the core delivers nothing), counted as
  // vmm.traps.<cause>. nullopt: the CPU delivers it through the IDT as it would without a VMM.
  virtual std::optional<TrapCause> take_event(isa::Core& core, const isa::Event& event) = 0;
  // A fault while the CPU delivered `delivering` through the guest's IDT (isa::TrapHook::
  // on_delivery_fault): a cause when the VMM took it, nullopt to leave it to the CPU.
  virtual std::optional<TrapCause> take_delivery_fault(isa::Core&, const isa::Event& /*delivering*/,
                                                       const isa::Event& /*fault*/) {
    return std::nullopt;
  }
  // Instructions the strategy watches (isa::TrapHook::wants_before and what follows): asked once
  // per decoded instruction; the core then calls before_instruction and after_instruction around
  // each execution. A strategy whose choice changes calls Core::remark_decoded().
  virtual bool wants_before(const isa::Insn& insn, uint64_t paddr) { return false; }
  virtual isa::PreExecute before_instruction(isa::Core& core, const isa::Insn& insn) {
    return isa::PreExecute::Execute;
  }
  virtual void after_instruction(isa::Core& core, const isa::Insn& insn) {}
  // Called at instruction boundaries while the strategy has turned them on
  // (Core::set_boundary_calls), e.g. while it interprets what cannot run directly.
  virtual void on_instruction_boundary(isa::Core& core) {}
  // Share of the guest's instructions that the host CPU executed directly (Popek-Goldberg's
  // efficiency): 1 natively, 0 for an interpreter.
  virtual double direct_fraction() const = 0;
  // Device accesses the VMM made for the guest to the devices it models in software (the guest's
  // devices are virtual): the strategy charges them at vmm.cost.device_model_cycles, and the
  // platform leaves them out of its device-latency bucket (sim.cycles.io).
  virtual uint64_t device_accesses_modelled() const { return 0; }
  // Where the guest runs now, between entries into the VMM (a trace's vmm.state).
  virtual GuestState guest_state(const isa::Core& real) const { return GuestState::GuestDirect; }
  // The CPL the guest believes it runs at (the virtual CPU's, as the VMM last took it from the
  // real CPU); where the guest runs at its own CPL, the real CPU's.
  virtual unsigned virtual_cpl(const isa::Core& real) const { return real.state().cpl(); }
  // Binds the strategy's own statistics (the router binds traps, exits, callouts, hypercalls,
  // leaks and resource control).
  virtual void bind_statistics(stats::Registry& registry) {}

  VmmCycles& cycles() { return cycles_; }
  const VmmCycles& cycles() const { return cycles_; }
  const LeakLog& leaks() const { return leaks_; }
  // Real privileged state found changed by the guest (must stay zero).
  const uint64_t& resource_control_violations() const { return violations_; }
  // The other ways into the VMM, by reason: VM exits by the SDM's exit-reason name, callouts from
  // translated code and hypercalls by operation.
  const ReasonLog& exits() const { return exits_; }
  const ReasonLog& callouts() const { return callouts_; }
  const ReasonLog& hypercalls() const { return hypercalls_; }
  // VM entries made (hw_assist: the first, and one after each exit handled).
  uint64_t vm_entries() const { return vm_entries_; }

 protected:
  VmmCycles cycles_;
  LeakLog leaks_;
  uint64_t violations_ = 0;
  ReasonLog exits_, callouts_, hypercalls_;
  uint64_t vm_entries_ = 0;

  friend class TrapRouter;  // observes the reason logs for a trace
};

// One entry of the strategy registry: what the platform and the config need to know of a strategy
// before it exists, and how to build it.
struct StrategyInfo {
  const char* name;            // the vmm.strategy value
  const char* default_paging;  // vmm.paging when it is auto
  // RAM the strategy needs above guest RAM for its own structures (0: none).
  uint64_t vmm_memory;
  std::unique_ptr<Vmm> (*make)(const Machine& machine, const VmmCosts& costs, const VmmOptions& options);
};

// Every strategy vmm.strategy can name, implemented or not (make is null for one that pgsim does
// not implement yet).
const std::vector<StrategyInfo>& strategies();
// The entry for `strategy`; throws std::invalid_argument naming it when there is none.
const StrategyInfo& strategy_info(const std::string& strategy);

// RAM a strategy needs above guest RAM for its own structures (0: none).
uint64_t vmm_memory_needed(const std::string& strategy);

// Throws std::invalid_argument naming the strategy when pgsim does not implement it.
void check_strategy(const std::string& strategy);

// The strategy `strategy` names, with its costs; throws std::invalid_argument naming the
// strategy when pgsim does not implement it.
std::unique_ptr<Vmm> make_vmm(const std::string& strategy, const Machine& machine, const VmmCosts& costs,
                              const VmmOptions& options = {});

}  // namespace pgsim::vmm

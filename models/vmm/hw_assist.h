// vmm.strategy: hw_assist — the VT-x-like VMM. The guest kernel runs directly on the CPU at its own
// CPL 0, in VMX non-root operation (isa/vmx), under a VMCS the VMM programs; nothing sensitive can
// leak, since the CPU itself exits to the VMM on what the VMCS controls select. Memory is
// virtualized with nested paging (EPT): guest RAM sits in host RAM in 2 MiB chunks in a shuffled
// order (vmm.ept.layout), the EPT tables live in the VMM's memory, and the local and I/O APICs are
// left out of the EPT, so that every access to device memory exits as an EPT violation.
// With vmm.paging: shadow (first-generation VT-x) there is no EPT: the guest runs on shadow page
// tables (ShadowPager, and the page-fault judgement of shadow_fault.h), its paging controls are
// host-owned (CR0/CR4 masks, CR3-load and -store exiting, INVLPG exiting, EFER in the MSR bitmaps)
// and #PF is in the exception bitmap; see the "Shadow paging" section of hw_assist.cpp.
//
// The VMCS (set once at attach):
//   pin-based       external-interrupt exiting (the VMM stands between the interrupt controller
//                   and the guest: it injects at VM entry, or waits for the interrupt window)
//   processor-based unconditional I/O exiting, MSR bitmaps (the APIC's MSRs exit), use TPR shadow
//                   (vmm.hw_assist.tpr_shadow; without it CR8 loads and stores exit), secondary
//                   controls: EPT, unrestricted guest (the guest boots with paging off), VPID
//                   (vmm.hw_assist.vpid), RDTSCP and INVPCID enabled
//   CR0/CR4 masks   CR0.NE and CR4.VMXE, which VMX operation requires set, are host-owned: the
//                   guest reads its own values from the read shadows
//   exception bitmap none: every exception is the guest's own and the CPU delivers it
//
// Exits are dispatched by basic exit reason, one short handler each (a table, as hvpp and
// SimpleVisor do): CPUID, I/O, CR accesses, MSRs, VMCALL (#UD: the guest finds no pgsim hypervisor
// leaf and runs its native path), the VMX instructions (nested virtualization is not implemented:
// the run stops saying so), external interrupt, interrupt window,
// EPT violation (a MOV to or from device memory, emulated on the device) and EPT
// misconfiguration (a VMM error: the run stops). A handler either completes the exit in software
// (advancing the guest's RIP in the VMCS) or leaves the instruction to run on the guest's state
// after the VM entry: the VMM performs CPUID, port I/O and MSR accesses for the guest on the
// machine's devices.
//
// Every exit is counted as vmm.exits.<reason> and charged: sim.cycles.vmm_vmexit (vmm.cost.
// vmexit_cycles), the handler's bucket (vmm_exit_emulate, vmm_exit_io, vmm_exit_mmio,
// vmm_exit_interrupt at the vmm.cost.emulate_cycles, emulate_io_cycles, emulate_mmio_cycles and
// reflect_cycles), and sim.cycles.vmm_vmentry (vmm.cost.vmentry_cycles); device accesses the VMM
// carries out for the guest are charged at vmm.cost.device_model_cycles (vmm_device_model).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "isa/system/ept.h"
#include "isa/vmx/exit_reason.h"
#include "isa/vmx/non_root.h"
#include "isa/vmx/vmcs.h"
#include "models/vmm/shadow_fault.h"
#include "models/vmm/virtual_cpu.h"
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

// The shuffled EPT layout's placement of guest RAM: moves the contents of chunk i of the `chunk`-byte
// chunks of RAM from `base` on to host address hosts[i], the chunks' new places being a permutation
// of them. Each chunk is copied once; one that holds zeros and receives zeros is not written, and
// one that `untouched` (Machine::ram_untouched, when set) knows to be untouched is not even read, so
// that the RAM the loader never wrote stays untouched host memory.
void move_ram_chunks(isa::PhysicalBus& bus, uint64_t base, uint64_t chunk, const std::vector<uint64_t>& hosts,
                     const std::function<bool(uint64_t paddr, uint64_t size)>& untouched = {});

class HwAssistVmm final : public Vmm {
 public:
  HwAssistVmm(const Machine& machine, const VmmCosts& costs, const VmmOptions& options = {});

  const char* strategy() const override { return "hw_assist"; }
  void attach(isa::Core& core) override;
  std::optional<TrapCause> take_event(isa::Core& core, const isa::Event& event) override;
  std::optional<TrapCause> take_delivery_fault(isa::Core& core, const isa::Event& delivering,
                                               const isa::Event& fault) override;
  bool wants_before(const isa::Insn& insn, uint64_t paddr) override;
  isa::PreExecute before_instruction(isa::Core& core, const isa::Insn& insn) override;
  void on_instruction_boundary(isa::Core& core) override;
  double direct_fraction() const override;
  // The guest runs in non-root operation from the first VM entry.
  GuestState guest_state(const isa::Core&) const override {
    return vm_entries_ > 0 ? GuestState::NonRoot : GuestState::InVmm;
  }
  uint64_t device_accesses_modelled() const override { return device_accesses_; }
  void bind_statistics(stats::Registry& registry) override;

  const isa::vmx::Vmcs& vmcs() const { return vmcs_; }
  // The host-physical address of guest-physical RAM address `guest_physical` (the EPT's layout).
  uint64_t host_physical(uint64_t guest_physical) const;
  uint64_t injected_interrupts() const { return injected_; }
  uint64_t mmio_emulated() const { return mmio_emulated_; }

 private:
  // What a handler leaves to be done once the guest is entered again.
  enum class Completion {
    Done,             // the VMM completed the exit (RIP in the VMCS is where the guest goes on)
    ExecuteInGuest,   // the exiting instruction runs on the guest's state, for the guest
    Decide,           // the handler changed what the VMCS selects: decide the instruction again
    Raised,           // the handler injected the exception the instruction raises: it does not complete
  };
  using Handler = Completion (HwAssistVmm::*)(isa::Core&, const isa::vmx::VmExit&);
  struct ExitHandler {
    Handler handle = nullptr;
    uint64_t* cycles = nullptr;  // the handler's cycle bucket
    uint64_t cost = 0;           // what one run of the handler costs
  };

  // ---- World switches ----------------------------------------------------------------------------
  Completion exit_to_vmm(isa::Core& core, const isa::vmx::VmExit& exit);
  void enter_guest(isa::Core& core);
  void leave_guest(isa::Core& core, const isa::vmx::VmExit& exit);
  isa::PreExecute execute_for_guest(isa::Core& core, const isa::Insn& insn);
  isa::PreExecute execute_virtualized(isa::Core& core, const isa::Insn& insn, isa::vmx::Virtualized how);

  uint64_t mov_to_cr_source(const isa::Core& core, unsigned gpr) const;

  // ---- Handlers, by basic exit reason ------------------------------------------------------------
  Completion on_run_as_is(isa::Core&, const isa::vmx::VmExit&);
  Completion on_io(isa::Core&, const isa::vmx::VmExit&);
  Completion on_cr_access(isa::Core&, const isa::vmx::VmExit&);
  Completion on_msr(isa::Core&, const isa::vmx::VmExit&);
  Completion on_vmcall(isa::Core&, const isa::vmx::VmExit&);
  Completion on_vmx_instruction(isa::Core&, const isa::vmx::VmExit&);
  Completion on_external_interrupt(isa::Core&, const isa::vmx::VmExit&);
  Completion on_interrupt_window(isa::Core&, const isa::vmx::VmExit&);
  Completion on_ept_violation(isa::Core&, const isa::vmx::VmExit&);
  Completion on_ept_misconfig(isa::Core&, const isa::vmx::VmExit&);
  // Shadow paging.
  Completion on_page_fault(isa::Core&, const isa::vmx::VmExit&);
  Completion on_invlpg(isa::Core&, const isa::vmx::VmExit&);
  Completion on_shadow_cr_access(isa::Core&, const isa::vmx::VmExit&);
  Completion on_efer_access(isa::Core&, const isa::vmx::VmExit&);
  Completion on_descriptor_table_access(isa::Core&, const isa::vmx::VmExit&);

  // ---- Set-up ------------------------------------------------------------------------------------
  void place_guest_ram(isa::Core& core);
  void program_vmcs(const isa::CpuState& boot);
  void inject_pending_interrupt();
  void set_interrupt_window(bool open);
  bool is_guest_ram(uint64_t guest_physical) const;
  bool is_guest_ram_2m(uint64_t linear) const;  // the 2 MiB around it is all guest RAM

  // ---- Shadow paging (vmm.paging: shadow) -------------------------------------------------
  bool shadow_paging() const { return options_.paging == "shadow"; }
  void attach_shadow_paging(isa::Core& core);
  void program_shadow_paging(const isa::CpuState& boot);
  // The guest's state as it believes it to be, while the VMM holds the CPU: the VMCS's guest state
  // with the guest's own CR0, CR3, CR4 and EFER.
  isa::CpuState guest_view(const isa::Core& core) const;
  // The real CR0, CR4 and EFER the guest runs with, from its own: paging on in IA-32e mode
  // whatever the guest's paging, on the shadow of its address space.
  void load_real_paging(uint64_t guest_cr0, uint64_t guest_cr4);
  void switch_shadow_root();
  // An event raised by an instruction the virtual CPU emulates, and the RIP it would be delivered
  // with (the instruction's, or the next one's for traps and software interrupts).
  struct RaisedEvent {
    isa::Event event;
    uint64_t rip = 0;
  };
  void emulate_on_vcpu(isa::Core& core, const isa::CpuState& guest);
  void inject_raised(isa::Core& core, const RaisedEvent& raised, uint64_t instruction_rip);
  void inject_page_fault(isa::Core& core, const isa::Fault& fault);
  static bool delivering_page_fault(const isa::vmx::VmExit& exit);
  void skip_instruction(const isa::vmx::VmExit& exit);
  // Injects the exception a processor without VMX raises for the guest's use of it.
  Completion refuse_vmx(uint8_t vector);
  // A hardware exception for the guest at the next VM entry (with `error_code` where the guest's
  // mode delivers one).
  void inject_exception(uint8_t vector, uint32_t error_code);

  Machine machine_;
  VmmCosts costs_;
  VmmOptions options_;
  isa::Core* core_ = nullptr;
  isa::vmx::Vmcs vmcs_;
  std::optional<isa::EptPointer> ept_;
  std::vector<std::pair<uint64_t, uint64_t>> guest_ram_;
  // Host chunk of each guest chunk, per guest RAM range (same order as guest_ram_).
  std::vector<std::vector<uint64_t>> chunk_host_;
  uint64_t chunk_size_ = 0;
  std::optional<isa::EptExit> ept_exit_;       // recorded by the MMU, taken as the VM exit
  std::optional<uint8_t> pending_interrupt_;   // acknowledged on an exit, not yet injected
  std::array<ExitHandler, 65> handlers_{};
  std::unique_ptr<ShadowPager> shadow_;   // shadow paging only
  std::unique_ptr<VirtualCpu> vcpu_;      // emulates device-memory accesses and traced writes
  std::optional<RaisedEvent> raised_;     // by the instruction vcpu_ last emulated
  uint64_t guest_cr3_ = 0, guest_efer_ = 0;
  uint64_t traced_emulated_ = 0, vmx_refused_ = 0;
  uint64_t instruction_exits_ = 0, mmio_emulated_ = 0, device_accesses_ = 0, injected_ = 0;
  uint64_t completed_for_guest_ = 0;  // guest instructions the VMM completed: they retire on the core
  uint64_t &vmexit_cycles_, &vmentry_cycles_, &emulate_cycles_, &io_cycles_, &mmio_cycles_, &interrupt_cycles_, &shadow_fill_cycles_,
      &shadow_trace_cycles_;
};

}  // namespace pgsim::vmm

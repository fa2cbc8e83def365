// Deprivileged execution: what every strategy that runs a guest kernel directly on the real CPU,
// below ring 0, has in common (trap_emulate; binary translation and paravirtualization for the
// code they do not translate or that asks by hypercall). It keeps two machines apart:
//
// - the virtual CPU (models/vmm/virtual_cpu.h): the guest's state as it believes it to be, on
//   which the VMM emulates what the real CPU refused and delivers the guest's events through the
//   guest's own IDT;
// - the real CPU: derived from the virtual state by project(), running the guest deprivileged
//   (CPL 3 while the guest is in IA-32e mode; in 32-bit protected mode at
//   vmm.deprivileged_cpl_prot32: 1, 2 or 3, in compatibility mode) on the VMM's own GDT, IDT and
//   TSS and on shadow page tables, all in VMM memory above guest RAM.
//
// What it provides:
// - the VMM's area (its GDT, IDT and TSS) and the shadow GDT, which follows the guest's GDT by
//   tracing: the guest's GDT pages are write-protected, and every write to them (the guest's,
//   emulated, or the virtual CPU's own) updates the entries it touches; only what moves the GDT
//   or remaps its pages makes the VMM read it again;
// - ownership of the shadow pager and the page-fault handling every shadow-paged strategy needs
//   (hidden faults fill the shadow, writes to guest page tables and the GDT are traced and
//   emulated, device memory is never mapped and every access to it is emulated, true faults are
//   reflected);
// - emulation of one guest instruction on the virtual CPU, counted by mnemonic
//   (vmm.emulated.<mnemonic>) and charged by why it was emulated;
// - reflection of events through the guest's IDT;
// - resource control: the real privileged state the VMM set is checked at every entry into it;
// - the virtual interrupt flag: interrupts reach the guest only when its virtual IF allows (the
//   VMM stands between the interrupt controller and the CPU);
// - interpretation of what cannot run directly (real and virtual-8086 mode, the stretch from
//   setting CR0.PE to the far jump that loads a protected-mode CS, a guest IOPL not below the real
//   CPL), on the virtual CPU, with boundary calls turned on for exactly that time.
//
// The real CPU stays in IA-32e mode throughout. A guest in 32-bit protected mode runs in
// compatibility mode on a shadow GDT whose code and data descriptors have at least the
// deprivileged DPL and whose 64-bit code segments are not present (a far transfer into one traps
// and is emulated: at CPL 1 or 2 it would run 64-bit code in a supervisor ring). The guest's mode
// switches (MOV to CR0 and CR4, WRMSR to EFER) trap and are emulated, and project() derives the
// real state anew from the virtual CPU's mode.
//
// The real CPU's IOPL is the guest's, so that its PUSHF shows it and its POPF traps when it
// changes it; that is safe only while the real CPL stays above it (at CPL <= IOPL the guest would
// reach the real I/O ports and the real IF). So the guest runs directly only while its IOPL is
// below the real CPL.
//
// Cycles it charges (sim.cycles.*): vmm_trap (entry into the VMM), vmm_emulate, vmm_emulate_io,
// vmm_emulate_mmio, vmm_reflect, vmm_shadow_fill, vmm_shadow_trace, vmm_resume (return to the
// guest), vmm_interpret, vmm_device_model (the VMM's software devices serving the guest's device
// accesses, in place of the physical device latency that sim.cycles.io charges natively).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/vmm/emulated_insns.h"
#include "models/vmm/shadow_fault.h"
#include "models/vmm/shadow_paging.h"
#include "models/vmm/virtual_cpu.h"
#include "models/vmm/vmm.h"

namespace pgsim::stats {
class Registry;
}

namespace pgsim::vmm {

class DeprivilegedGuest : private isa::InterruptSource {
 public:
  // `strategy` names the strategy in messages and statistics (vmm.<strategy>.emulated, ...);
  // buckets are added to `cycles`, resource-control violations counted in `violations`.
  // `reserved_bytes` at the top of the VMM's memory are left to the strategy (reserved_physical()),
  // out of the shadow pager's pool.
  DeprivilegedGuest(const char* strategy, const Machine& machine, const VmmCosts& costs, const VmmOptions& options,
                    VmmCycles& cycles, uint64_t& violations, uint64_t reserved_bytes = 0);
  ~DeprivilegedGuest() override;

  // Takes over `real`: the virtual CPU starts from its state, the VMM's structures are written and
  // the real state is projected from the virtual one (or interpretation starts).
  void attach(isa::Core& real);

  VirtualCpu& vcpu() { return *vcpu_; }
  const VirtualCpu* vcpu_if_attached() const { return vcpu_.get(); }
  ShadowPager& shadow() { return *shadow_; }
  const ShadowPager& shadow() const { return *shadow_; }
  // The real CPU runs the guest (false while the virtual CPU interprets it).
  bool direct() const { return direct_; }
  // For a trace: where the guest runs (directly or interpreted), and the virtual CPU's CPL.
  GuestState guest_state() const { return direct_ ? GuestState::GuestDirect : GuestState::Interpreted; }
  unsigned virtual_cpl(const isa::Core& real) const { return vcpu_ ? vcpu_->cpl() : real.state().cpl(); }

  // The physical address of the bytes reserved for the strategy at the top of the VMM's memory.
  uint64_t reserved_physical() const { return machine_.vmm_memory_base + machine_.vmm_memory_size - reserved_bytes_; }

  // ---- Entering and leaving the VMM ------------------------------------------------------------
  // How the guest came into the VMM: a trap (charged vmm_trap on entry and vmm_resume on the way
  // back), a callout from translated code or a hypercall, whose crossing the strategy charges itself.
  enum class Entry { Trap, Callout, Hypercall };
  // The guest entered the VMM from direct execution: charges a trap, checks resource control and
  // takes into the virtual CPU what the guest changed running directly.
  void enter(isa::Core& real, Entry how = Entry::Trap);
  // The VMM returns to the guest: stops the real CPU if the virtual one shut down, switches to
  // interpretation when the guest can no longer run directly, else charges a trap's resume and
  // projects the real state from the virtual one.
  void resume(isa::Core& real, Entry how = Entry::Trap);
  // Called at the end of every project(): a strategy may choose where the real CPU runs the
  // guest from (binary translation: the translation of the guest's kernel code).
  std::function<void(isa::Core& real)> after_project;
  // Called at the start of every enter(), before the virtual CPU takes the real state: the
  // strategy undoes what its after_project set in the real state beyond the projection (binary
  // translation: the segments of translated code), and returns the guest's IF when the strategy
  // keeps it in its own memory (binary translation's vCPU page, which inline CLI, STI and POPF
  // write) rather than in the real flags; enter() takes it into the virtual CPU.
  std::function<std::optional<bool>(isa::Core& real)> before_enter;
  // While the guest's IF is in the strategy's memory: whether the guest takes an interrupt at the
  // real CPU's current instruction (its IF there, and no inline sequence half done); nullopt
  // while it is not.
  std::function<std::optional<bool>()> inline_interrupt_window;
  // A write to guest frame `frame` is about to happen, by the guest running directly (a page fault
  // on a frame the strategy write-protects as code, see ShadowPager) or by its virtual CPU: the
  // strategy drops what it made from the frame.
  std::function<void(uint64_t frame)> on_code_write;

  // ---- What a paravirtual strategy changes -------------------------------------------------------
  // The guest's own page tables become the real ones (direct paging): the real CR3 is the virtual
  // CR3, which the strategy loads only with roots it validated, and the VMM's area is linked into
  // every such root at PML4 slot `area_pml4_slot` (instead of the shadows' kVmmLinearBase).
  // Until then the guest runs on shadow page tables.
  void use_guest_tables(unsigned area_pml4_slot);
  bool guest_tables_real() const { return guest_tables_real_; }
  // The PML4 entry that links the VMM's area into a root (supervisor-only), and the slot it goes in.
  uint64_t area_pml4_entry() const;
  unsigned area_pml4_slot() const { return area_pml4_slot_; }
  // The VMM takes every interrupt the controller raises, whatever the guest's virtual IF, and holds
  // it for the guest itself (paravirt's events) instead of leaving it at the controller.
  void take_every_interrupt() { take_every_interrupt_ = true; }
  // The VMM's GDT holds flat 64-bit ring-3 data and code segments at these selectors, which the
  // guest's user processes run with (paravirt: PV_USER_DS and PV_USER_CS); the guest's own entries
  // there, if any, are not shadowed.
  void reserve_user_selectors(uint16_t user_ds, uint16_t user_cs);
  // EFER bits of the real CPU's own that the strategy uses (binary translation: LMSLE), set in
  // every projection.
  void set_real_efer_features(uint64_t bits) { real_efer_features_ = bits; }
  // An event while the guest is interpreted (only interrupts arrive then): reflected.
  void take_while_interpreting(isa::Core& real, const isa::Event& event);
  // Interprets the guest until it can run directly again, in chunks (boundary calls).
  void interpret_until_direct(isa::Core& real);
  // Derives the real CPU's state from the virtual CPU's.
  void project(isa::Core& real);

  // ---- What the VMM does for the guest -----------------------------------------------------------
  // Delivers `event` to the guest through its own IDT, on the virtual CPU.
  void reflect(const isa::Event& event);
  // Why the VMM emulates an instruction, which decides the handler cost charged: a privileged
  // instruction or port I/O that trapped (vmm_emulate, vmm_emulate_io), a device-memory access
  // (vmm_emulate_mmio), or a write to a traced guest page table or GDT (vmm_shadow_trace, charged
  // by the page-fault handler).
  enum class Emulation { Trapped, Mmio, TracedWrite };
  // Executes the guest's next instruction on the virtual CPU; when the virtual CPU faults on it
  // too, that fault was the guest's own and is delivered through its IDT.
  void emulate_instruction(Emulation why = Emulation::Trapped);
  // What a page fault of the deprivileged guest was.
  enum class PageFault {
    Hidden,       // the guest's tables allow the access: the shadow was filled
    TracedWrite,  // a write to a guest page table or GDT: emulated
    Mmio,         // an access to device memory: emulated on the device models
    Guest,        // the guest's own fault: reflected
    Refused,      // the guest reaches the VMM's memory: the run is stopped
  };
  PageFault handle_page_fault(isa::Core& real, const isa::Event& event);
  // The classic VMM's dispatch of a trap from direct execution, between enter() and resume():
  // external interrupts, NMIs, INT n, INT3, INTO and #DB reflected, #PF to the shadow pager, any
  // other exception's instruction emulated on the virtual CPU. Returns the cause to count.
  TrapCause handle_trap(isa::Core& real, const isa::Event& event);

  // The fault the real CPU raises for `insn` before it does anything, on every real state
  // project() gives it (CPL above 0 and above IOPL, EFER.SCE clear, no I/O permission bitmap, no
  // VME or PVI): #UD for SYSCALL and SYSRET, #GP(0) for port I/O, CLI, STI and the instructions
  // whose first check is CPL 0. nullopt for any other instruction (it may or may not fault).
  static std::optional<isa::Fault> certain_fault(const isa::Insn& insn);

  // ---- Figures ---------------------------------------------------------------------------------
  // Share of the guest's instructions the real CPU ran directly; the virtual CPU's other
  // instructions were emulated or interpreted (`trial_runs` of them were a leak detector's
  // evaluations of instructions that also ran directly, not counted twice).
  double direct_fraction(uint64_t trial_runs) const;
  uint64_t emulated() const { return emulated_; }
  uint64_t emulated_io() const { return emulated_io_; }
  uint64_t emulated_mmio() const { return emulated_mmio_; }
  const EmulatedLog& emulated_by_mnemonic() const { return emulated_by_mnemonic_; }
  uint64_t reflected() const { return reflected_; }
  uint64_t interpreted() const { return interpreted_; }
  // The first resource-control violation found ("" while there is none).
  const std::string& first_violation() const { return first_violation_; }
  uint64_t device_accesses() const { return vcpu_ ? vcpu_->device_accesses() : 0; }
  // Binds vmm.shadow.*, vmm.emulated.* and vmm.<strategy>.{emulated,emulated_io,emulated_mmio,
  // device_accesses,reflected,interpreted}.
  void bind_statistics(stats::Registry& registry);

 private:
  // The real privileged state the VMM set, checked at every trap (resource control).
  struct RealPrivileged {
    uint64_t cr0, cr3, cr4, efer, gdtr_base, idtr_base, tr_base, star, lstar, cstar, fmask, sysenter_eip,
        kernel_gs_base, iopl_if;
    uint16_t gdtr_limit, idtr_limit, tr_sel, ldtr_sel;
    bool operator==(const RealPrivileged&) const = default;
  };
  static RealPrivileged privileged_of(const isa::CpuState& s);
  void check_resource_control(const isa::Core& real);

  bool runs_directly() const;
  void set_direct(isa::Core& real, bool direct);
  uint64_t shadow_root(bool user_mode);         // the real CR3 for the guest's current address space
  bool is_vmm_memory(uint64_t paddr) const;     // in the VMM's RAM, not the guest's
  bool is_guest_ram_2m(uint64_t linear);        // the 2 MiB around it is all guest RAM
  void write_vmm_structures();
  void sync_shadow_gdt();
  void locate_guest_gdt(unsigned entries);
  std::vector<uint64_t> shadow_descriptors() const;
  void trace_gdt_write(uint64_t paddr, unsigned size, uint64_t value);
  void before_guest_write(uint64_t paddr, unsigned size, uint64_t value);
  std::string stop_message(const std::string& what) const { return std::string(strategy_) + ": " + what; }

  // isa::InterruptSource: the interrupt controller, as far as the guest's virtual IF lets it through.
  bool interrupt_pending() override;
  // Translated code may open an inline interrupt window without entering the VMM.
  bool interrupt_held() override;
  uint8_t acknowledge_interrupt() override { return interrupts_->acknowledge_interrupt(); }
  // An NMI waits while the guest's own NMI handler runs (the virtual CPU's NMI blocking, which the
  // reflected NMI set and the guest's IRET, emulated, ends).
  bool nmi_pending() override {
    return interrupts_ && !(vcpu_ && vcpu_->core().state().nmi_blocked) && interrupts_->nmi_pending();
  }
  void acknowledge_nmi() override { interrupts_->acknowledge_nmi(); }

  const char* strategy_;
  Machine machine_;
  VmmCosts costs_;
  VmmOptions options_;
  uint64_t reserved_bytes_;
  isa::Core* real_ = nullptr;
  isa::InterruptSource* interrupts_ = nullptr;
  std::unique_ptr<VirtualCpu> vcpu_;
  std::unique_ptr<ShadowPager> shadow_;
  bool direct_ = false;
  RealPrivileged expected_{};
  std::vector<uint64_t> guest_gdt_;   // the guest GDT entries the shadow GDT was made from
  std::vector<uint64_t> shadow_gdt_;  // the shadow GDT's entries made from them
  // Where the guest's GDT was read from: a change of any of these makes the VMM read it again.
  struct GdtView {
    uint64_t base = ~0ull, cr3 = 0;
    uint16_t limit = 0;
    bool protected_mode = false, paging = false, long_mode = false;
    bool operator==(const GdtView&) const = default;
  };
  GdtView gdt_view_;
  bool gdt_stale_ = true;             // a guest entry mapping its pages changed, or INVLPG of one
  std::vector<uint64_t> gdt_pages_;   // the frame of each page of the guest's GDT (~0: not mapped)
  std::vector<ShadowPager::GuestEntry> gdt_sources_;  // the guest paging entries that map them
  // [lowest, highest) physical address of those entries: most guest writes are nowhere near them.
  std::pair<uint64_t, uint64_t> gdt_sources_span_{~0ull, 0};
  uint16_t shadow_gdt_limit_ = 0;
  uint16_t tss_selector_ = 0;
  // The VMM's IDT as last built (its 256 gates as 512 words), for the VMM code selector and VMM
  // area base it was built for: every re-sync compares it with memory, which seldom differs.
  std::vector<uint64_t> idt_image_;
  uint64_t idt_image_selector_ = ~0ull, idt_image_area_ = 0;
  bool guest_tables_real_ = false, take_every_interrupt_ = false;
  unsigned area_pml4_slot_ = 0;
  uint16_t user_ds_ = 0, user_cs_ = 0;  // reserved ring-3 selectors (0: none)
  uint64_t real_efer_features_ = 0;
  uint64_t area_linear_base() const;
  uint64_t guest_cr0_ = 0, guest_cr4_ = 0;  // as the shadows were built for
  uint64_t guest_pkrs_ = 0;                  // the guest's protection keys the shadows were built under
  uint32_t guest_pkru_ = 0;
  bool tlbs_stale_ = false;                 // shadow entries were dropped: the real TLBs must forget them

  uint64_t emulated_ = 0, emulated_io_ = 0, emulated_mmio_ = 0, reflected_ = 0, interpreted_ = 0;
  uint64_t& violations_;
  EmulatedLog emulated_by_mnemonic_;
  std::string first_violation_;
  uint64_t &trap_cycles_, &emulate_cycles_, &emulate_io_cycles_, &reflect_cycles_, &shadow_fill_cycles_,
      &shadow_trace_cycles_, &resume_cycles_, &interpret_cycles_, &emulate_mmio_cycles_;
};

}  // namespace pgsim::vmm

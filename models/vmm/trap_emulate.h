// vmm.strategy: trap_emulate — the classic VMM. The guest kernel runs directly on the CPU,
// deprivileged (CPL 3 while the guest is in IA-32e mode; in 32-bit protected mode at
// vmm.deprivileged_cpl_prot32: 1, 2 or 3), on the VMM's own GDT, IDT and TSS and on shadow page
// tables, all in VMM memory above guest RAM. Every exception and interrupt traps into the VMM
// (the trap router), which:
// - emulates the instruction that faulted on the virtual CPU (a privileged instruction at the
//   guest's own CPL 0: MOV CRn, LGDT, WRMSR, CLI, HLT, IN/OUT through the device models, IRET,
//   SYSCALL/SYSRET, ...), or, when the virtual CPU faults on it too, delivers that fault to the
//   guest through its own IDT;
// - serves page faults from the shadow page tables: hidden faults (the guest's tables allow the
//   access) fill the shadow, writes to the guest's page tables and to its GDT are traced and
//   emulated (the shadow entries made from what they change follow), true faults are reflected
//   to the guest; device memory (MMIO: the local and I/O APICs) is never mapped in a shadow, so
//   every guest access to it faults and is emulated on the virtual CPU, whose accesses reach the
//   device models through the bus (counted as the trap cause mmio);
// - reflects interrupts, INT n and other traps through the guest's IDT;
// and returns to the guest with the real state derived from the virtual CPU's.
// Interrupts reach the guest only when its virtual IF allows (the VMM stands between the
// interrupt controller and the CPU).
//
// The real CPU stays in IA-32e mode throughout. A guest in 32-bit protected mode (paging off, or
// 32-bit or PAE paging) runs in compatibility mode, its kernel at the deprivileged CPL and its
// user code at 3, on a shadow GDT whose code and data descriptors have at least that DPL and
// whose 64-bit code segments are not present (a far transfer into one traps and is emulated: at
// CPL 1 or 2 it would run 64-bit code in a supervisor ring). Its shadows are 4-level tables built
// from its 32-bit or PAE tables, or, with its paging off, a linear = physical map; the VMM's area
// at kVmmLinearBase lies beyond any 32-bit address. The guest's mode switches (MOV to CR0 and
// CR4, WRMSR to EFER: into IA-32e mode and out of it) trap and are emulated, and the VMM projects
// the real state anew from the virtual CPU's mode: CPL 3 from IA-32e activation on, still in
// 32-bit code. The far jump into 64-bit code then traps on x86-pg and runs directly on classic
// x86 (at the real CPL 3 in IA-32e mode, where it gives nothing away).
//
// The real CPU's IOPL is the guest's, so that its PUSHF shows it and its POPF traps when it
// changes it; that is safe only while the real CPL stays above it (at CPL <= IOPL the guest would
// reach the real I/O ports and the real IF). So the guest runs directly only while its IOPL is
// below the real CPL (below 3 in IA-32e mode, below the deprivileged CPL for its 32-bit kernel).
// Otherwise, and in real mode and virtual-8086 mode (and from setting CR0.PE to the far jump that
// loads a protected-mode CS), the virtual CPU interprets it, and those instructions count as not
// executed directly (vmm.trap_emulate.interpreted).
//
// Every instruction emulated is counted by mnemonic (vmm.emulated.<mnemonic>).
//
// Cycles: sim.cycles.vmm_trap (trap delivery into the VMM), vmm_emulate, vmm_emulate_io,
// vmm_emulate_mmio, vmm_reflect, vmm_shadow_fill, vmm_shadow_trace, vmm_resume (return to the
// guest), vmm_interpret, vmm_device_model (the VMM's software devices serving the guest's device
// accesses, in place of the physical device latency that sim.cycles.io charges natively).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/vmm/emulated_insns.h"
#include "models/vmm/shadow_paging.h"
#include "models/vmm/virtual_cpu.h"
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

class TrapEmulateVmm final : public Vmm, private isa::InterruptSource {
 public:
  TrapEmulateVmm(const Machine& machine, const VmmCosts& costs, const VmmOptions& options = {});
  ~TrapEmulateVmm() override;

  const char* strategy() const override { return "trap_emulate"; }
  void attach(isa::Core& core) override;
  bool take_event(isa::Core& core, const isa::Event& event) override;
  bool wants_instruction_boundaries() const override { return true; }
  void on_instruction_boundary(isa::Core& core) override;
  double direct_fraction() const override;
  void bind_statistics(stats::Registry& registry) override;
  // The guest's devices are the VMM's software models: what the virtual CPU reached of them.
  uint64_t device_accesses_modelled() const override { return vcpu_ ? vcpu_->device_accesses() : 0; }

  VirtualCpu& virtual_cpu() { return *vcpu_; }
  const ShadowCounters& shadow() const { return shadow_->counters(); }
  // Instructions emulated (I/O among them), events reflected to the guest, instructions interpreted.
  uint64_t emulated() const { return emulated_; }
  uint64_t emulated_io() const { return emulated_io_; }
  uint64_t emulated_mmio() const { return emulated_mmio_; }
  // Every instruction emulated, by mnemonic.
  const EmulatedLog& emulated_by_mnemonic() const { return emulated_by_mnemonic_; }
  uint64_t reflected() const { return reflected_; }
  uint64_t interpreted() const { return interpreted_; }
  // The first resource-control violation found ("" while there is none).
  const std::string& first_violation() const { return first_violation_; }

 private:
  // The real privileged state the VMM set, checked at every trap (resource control).
  struct RealPrivileged {
    uint64_t cr0, cr3, cr4, efer, gdtr_base, idtr_base, tr_base, star, lstar, cstar, fmask, sysenter_eip,
        kernel_gs_base, iopl_if;
    uint16_t gdtr_limit, idtr_limit, tr_sel, ldtr_sel;
    bool operator==(const RealPrivileged&) const = default;
  };
  static RealPrivileged privileged_of(const isa::CpuState& s);

  bool runs_directly() const;
  uint64_t shadow_root(bool user_mode);         // the real CR3 for the guest's current address space
  bool is_vmm_memory(uint64_t paddr) const;     // in the VMM's RAM, not the guest's
  bool is_guest_ram_2m(uint64_t linear);        // the 2 MiB around it is all guest RAM
  void interpret_until_direct(isa::Core& real);
  // Why an instruction is emulated: it trapped (a privileged instruction, or a write the shadow
  // refuses), or it accessed device memory.
  // Why the VMM emulates an instruction, which decides the handler cost charged: a privileged
  // instruction or port I/O that trapped (emulate, emulate_io), a device-memory access
  // (emulate_mmio), or a write to a traced guest page table or GDT (shadow_trace, charged by the
  // page-fault handler).
  enum class Emulation { Trapped, Mmio, TracedWrite };
  void emulate_instruction(isa::Core& real, Emulation why = Emulation::Trapped);  // on the virtual CPU
  void handle_page_fault(isa::Core& real, const isa::Event& event);
  void reflect(const isa::Event& event);
  void project(isa::Core& real);
  void write_vmm_structures();
  void sync_shadow_gdt();
  // The shadow GDT follows the guest's by tracing: the guest's GDT pages are write-protected, and
  // every write to them (the guest's, emulated, or the virtual CPU's own) updates the entries it
  // touches; only what moves the GDT or remaps its pages makes sync_shadow_gdt() read it again.
  void locate_guest_gdt(unsigned entries);
  std::vector<uint64_t> shadow_descriptors() const;
  void trace_gdt_write(uint64_t paddr, unsigned size, uint64_t value);
  void before_guest_write(uint64_t paddr, unsigned size, uint64_t value);
  void check_resource_control(const isa::Core& real);

  // isa::InterruptSource: the interrupt controller, as far as the guest's virtual IF lets it through.
  bool interrupt_pending() override;
  uint8_t acknowledge_interrupt() override { return interrupts_->acknowledge_interrupt(); }
  bool nmi_pending() override { return interrupts_ && interrupts_->nmi_pending(); }
  void acknowledge_nmi() override { interrupts_->acknowledge_nmi(); }

  // Leak detection (trap_emulate_leaks.cpp): a sensitive instruction about to run directly was
  // evaluated on the virtual CPU first (in a sandbox); once the real CPU has run it, the two
  // outcomes are compared.
  struct LeakCheck {
    bool active = false;
    isa::SensitiveInsn insn{};
    uint64_t rip = 0;
    isa::CpuState before, after;           // the virtual CPU's state before and after
    bool faulted = false;                  // the virtual CPU raised an exception instead
    std::map<uint64_t, uint8_t> writes;    // the virtual CPU's memory writes
  };
  bool sensitive_at(isa::Core& real, isa::SensitiveInsn* insn);
  void start_leak_check(isa::Core& real, isa::SensitiveInsn insn);
  void finish_leak_check(isa::Core& real);
  uint64_t code_byte(uint64_t linear, bool* ok);

  Machine machine_;
  VmmCosts costs_;
  VmmOptions options_;
  LeakCheck leak_check_;
  uint64_t sandbox_retired_ = 0;  // virtual-CPU instructions that were leak evaluations only
  // The last code page looked up for leak detection: (guest CR3, linear page) -> physical page.
  uint64_t code_cr3_ = ~0ull, code_lpage_ = ~0ull, code_ppage_ = 0;
  const uint8_t* code_host_ = nullptr;
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
  uint16_t shadow_gdt_limit_ = 0;
  uint16_t tss_selector_ = 0;
  uint64_t guest_cr0_ = 0, guest_cr4_ = 0;  // as the shadows were built for
  bool tlbs_stale_ = false;                 // shadow entries were dropped: the real TLBs must forget them

  uint64_t emulated_ = 0, emulated_io_ = 0, reflected_ = 0, interpreted_ = 0;
  uint64_t emulated_mmio_ = 0;
  EmulatedLog emulated_by_mnemonic_;
  std::string first_violation_;
  uint64_t &trap_cycles_, &emulate_cycles_, &emulate_io_cycles_, &reflect_cycles_, &shadow_fill_cycles_,
      &shadow_trace_cycles_, &resume_cycles_, &interpret_cycles_;
  uint64_t& emulate_mmio_cycles_;
};

}  // namespace pgsim::vmm

// vmm.strategy: paravirt — Xen's model (Barham et al., SOSP 2003). The guest kernel knows it is
// virtualized: it finds the hypervisor by CPUID (leaf 0x40000000, "pgsimvmm") and asks it by
// hypercall (VMCALL, workloads/kernel/pv_abi.h is the ABI) for everything privileged, instead of
// executing privileged instructions that would trap.
//
// The guest runs deprivileged as under trap_emulate (models/vmm/deprivileged_guest.h: CPL 3 in
// IA-32e mode, the VMM's GDT, IDT and TSS, the virtual CPU holding its privileged state), and its
// 32-bit boot runs as trap_emulate runs it: its privileged instructions trap and are emulated, on
// shadow page tables, until the kernel's first hypercalls register what it needs. From then on:
//
//   VMCALL                      a hypercall, dispatched by operation to one short handler each
//                               (the real CPU calls the VMM's isa::HypervisorInterface at any CPL:
//                               no trap); from the guest's virtual ring 3 it is a #UD for the guest
//   exceptions, INT n, SYSCALL  delivered through the guest's trap table (set_trap_table), with the
//                               switch to the kernel root and the stack_switch stack from ring 3;
//                               SYSCALL (#UD on the real CPU, whose EFER.SCE is clear) enters the
//                               set_syscall_callback entry
//   interrupts                  the VMM takes every one the controller raises and holds it as an
//                               event: delivered through the trap table while the shared-info page's
//                               event mask is clear and its priority class is above task_priority,
//                               else left pending (event_pending) until the guest unmasks and calls
//                               event_check, at whose return it is delivered (an upcall)
//   other exceptions in the     the faulting instruction emulated on the virtual CPU (the selftest's
//   virtual ring 0              probes run privileged instructions on purpose), its fault delivered
//                               through the trap table when the virtual CPU faults too; #PF and
//                               anything from ring 3 delivered through the trap table
//
// Memory (vmm.paging): direct (the default) makes the guest's own page tables the real ones from
// its first new_baseptr on, every update validated by models/vmm/direct_paging.h; shadow keeps the
// shadow pager under the same hypercalls (the updates are validated all the same, and the shadows
// follow them), so that the CPU and the memory axes can be studied apart.
//
// Cycles (sim.cycles.*): vmm_hypercall (the crossing, vmm.cost.hypercall_cycles), vmm_hypercall_handler
// (each operation, vmm.cost.hypercall_handler_cycles), vmm_pt_validate (each page-table request
// validated, vmm.cost.pt_validate_cycles), vmm_event (each event delivered through the trap table,
// vmm.cost.reflect_cycles), and DeprivilegedGuest's buckets for what traps.
#pragma once
#include <array>
#include <bitset>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "isa/system/system_config.h"
#include "models/vmm/deprivileged_vmm.h"
#include "models/vmm/direct_paging.h"
#include "models/vmm/leak_detector.h"
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

// What the paravirtual VMM counts beyond hypercalls by operation (vmm.paravirt.*).
struct ParavirtCounters {
  uint64_t events_delivered = 0;  // exceptions, interrupts and system calls delivered through the trap table
  uint64_t interrupts_held = 0;   // interrupts that arrived while the event mask (or task priority) held them
  uint64_t upcalls = 0;           // held events delivered at a hypercall's return, once the guest unmasked
  uint64_t unmasks = 0;           // event mask found cleared by the guest's own write since the VMM last saw it set
  uint64_t masks = 0;             // event mask found set by the guest's own write since the VMM last saw it clear
  uint64_t multicall_entries = 0; // operations run inside multicalls
  uint64_t io_accesses = 0;       // device accesses made for the guest (io, console_write)
  uint64_t refused = 0;           // hypercalls that returned an error code
};

class ParavirtVmm final : public DeprivilegedVmm, private isa::HypervisorInterface {
 public:
  ParavirtVmm(const Machine& machine, const VmmCosts& costs, const VmmOptions& options = {});
  ~ParavirtVmm() override;

  const char* strategy() const override { return "paravirt"; }
  void attach(isa::Core& core) override;
  std::optional<TrapCause> take_event(isa::Core& core, const isa::Event& event) override;
  bool wants_before(const isa::Insn& insn, uint64_t paddr) override;
  isa::PreExecute before_instruction(isa::Core& core, const isa::Insn& insn) override;
  void after_instruction(isa::Core& core, const isa::Insn& insn) override;
  double direct_fraction() const override;
  uint64_t device_accesses_modelled() const override { return guest_.device_accesses() + counters_.io_accesses; }
  void bind_statistics(stats::Registry& registry) override;

  const ParavirtCounters& counters() const { return counters_; }
  // The validator's figures (zero until attached).
  DirectPagingCounters paging_counters() const { return paging_ ? paging_->counters() : DirectPagingCounters{}; }
  // Page-table requests per crossing (mmu_update alone, or a multicall's): crossings by size.
  const std::map<uint64_t, uint64_t>& batch_sizes() const { return batch_sizes_; }
  // Operations run inside multicalls, by name.
  const ReasonLog& multicall_operations() const { return multicall_operations_; }
  bool direct_paging() const { return direct_paging_; }
  // The guest's shared-info frame (0 until set_shared_info).
  uint64_t shared_info_frame() const { return shared_info_; }
  // The guest kernel's own count of its event-mask writes (irq_disable, irq_enable), read from the
  // shared-info page: exact, where counters().masks/unmasks see only the state at the VMM's entries.
  struct GuestMaskWrites {
    uint64_t masks = 0, unmasks = 0;
  };
  GuestMaskWrites guest_mask_writes();
  const DeprivilegedGuest& guest() const { return guest_; }
  // The name of hypercall operation `op` (vmm.hypercalls.<name>), nullptr for none.
  static const char* operation_name(uint64_t op);

 private:
  struct TrapEntry {
    bool present = false;
    uint8_t flags = 0;
    uint16_t cs = 0;
    uint64_t handler = 0;
  };
  struct Args {
    uint64_t a[5];
  };
  using Handler = int64_t (ParavirtVmm::*)(const Args&);
  struct Operation {
    const char* name;
    Handler handler;
  };
  static const std::array<Operation, PV_OP_COUNT> kOperations;

  // isa::HypervisorInterface
  bool cpuid(uint32_t leaf, uint32_t subleaf, isa::CpuidLeaf& out) override;
  bool vmcall(isa::Core& core) override;

  // One operation, counted and charged; `nested` inside a multicall.
  int64_t dispatch(uint64_t op, const Args& args, bool nested);
  int64_t set_trap_table(const Args&);
  int64_t mmu_update(const Args&);
  int64_t stack_switch(const Args&);
  int64_t multicall(const Args&);
  int64_t new_baseptr(const Args&);
  int64_t invlpg(const Args&);
  int64_t set_timer(const Args&);
  int64_t console_write(const Args&);
  int64_t sched_block(const Args&);
  int64_t sched_yield(const Args&);
  int64_t get_virtual_ring(const Args&);
  int64_t io(const Args&);
  int64_t iret(const Args&);
  int64_t set_shared_info(const Args&);
  int64_t pin_table(const Args&);
  int64_t unpin_table(const Args&);
  int64_t set_syscall_callback(const Args&);
  int64_t event_check(const Args&);

  // ---- Events ---------------------------------------------------------------------------------
  // Delivers `event` through the trap table on the virtual CPU (false before there is one).
  bool deliver(const isa::Event& event);
  // A trap from direct execution once the guest has a trap table.
  TrapCause take_paravirtual(isa::Core& real, const isa::Event& event);
  void enter_syscall_callback();
  void hold_interrupt(uint8_t vector);
  // Delivers held events while the event mask and task priority let them through; returns how many.
  unsigned deliver_held_events();
  void publish_pending();
  void note_event_mask();  // counts the guest's mask and unmask writes seen since the last entry

  // ---- The guest's state as the VMM keeps it ----------------------------------------------------
  isa::CpuState& v();
  unsigned virtual_ring();
  void set_virtual_ring(unsigned ring);
  void load_root_for_ring();  // the kernel root in ring 0, the user root in ring 3
  void tables_changed();      // what the real and the virtual CPU cached of the tables is stale
  uint64_t read_guest(uint64_t va);
  void write_guest(uint64_t va, uint64_t value);
  void push_guest(uint64_t& rsp, uint64_t value);
  uint8_t shared_byte(unsigned offset);
  void set_shared_byte(unsigned offset, uint8_t value);
  bool events_masked() { return shared_byte(offsetof(pv_vcpu_info, event_mask)) != 0; }
  void link_vmm_area(uint64_t root, bool linked);
  void arm_timer_hardware();

  VmmOptions options_;
  VmmCosts costs_;
  Machine machine_;
  DeprivilegedGuest& deprivileged() override { return guest_; }
  const DeprivilegedGuest& deprivileged() const override { return guest_; }
  DeprivilegedGuest guest_;
  bool direct_paging_ = true;
  std::unique_ptr<DirectPaging> paging_;
  std::unique_ptr<LeakDetector> leak_detector_;
  isa::Core* real_ = nullptr;
  isa::SystemConfig system_{};  // the real CPU's, with this VMM as its hypervisor

  std::array<TrapEntry, 256> traps_{};
  bool trap_table_ = false;
  uint16_t kernel_cs_ = 0, kernel_ss_ = 0;
  uint64_t kernel_stack_ = 0, syscall_entry_ = 0, shared_info_ = 0;
  uint64_t kernel_root_ = 0, user_root_ = 0;
  uint64_t timer_deadline_ = 0;
  uint8_t timer_vector_ = 0;
  std::bitset<256> pending_;
  bool mask_seen_ = true;  // the boot runs with events masked
  uint64_t batch_updates_ = 0;  // page-table requests of the crossing under way

  ParavirtCounters counters_;
  std::map<uint64_t, uint64_t> batch_sizes_;
  std::map<std::string, uint64_t> batch_histogram_;
  ReasonLog multicall_operations_;
  uint64_t &hypercall_cycles_, &handler_cycles_, &validate_cycles_, &event_cycles_;
};

}  // namespace pgsim::vmm

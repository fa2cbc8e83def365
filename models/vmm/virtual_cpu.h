// The virtual CPU: the machine as the deprivileged guest believes it to be (CPL 0, its own IF and
// IOPL, control registers, EFER, GDTR/IDTR/TR/LDTR, MSRs, TSC offset). It is a second x86 core
// that holds that state and carries out, on it, what the real CPU refused to do for the guest:
// a privileged instruction that trapped is executed here at the guest's own privilege, and an
// exception or interrupt for the guest is delivered here through the guest's own IDT, onto the
// guest's own stacks. Its memory accesses go through the guest's own page tables (a software walk,
// no TLB), to the same physical memory and devices as the real CPU.
//
// pull() takes into the virtual state what the guest changed by running directly on the real
// CPU (registers, arithmetic flags, data segments); the VMM derives the real state back from it.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "isa/core.h"
#include "isa/system/system_config.h"
#include "models/mmu/walk_memo.h"

namespace pgsim::vmm {

// RFLAGS of a deprivileged guest, split once: the VMM keeps the guest's own values of these in the
// virtual CPU and sets the real ones itself (the real CPU runs with IF on, its IOPL below the real
// CPL, no virtual-8086 mode) ...
constexpr uint64_t kVmmOwnedFlags = isa::IF | isa::IOPL | isa::VIF | isa::VIP | isa::VM;
// ... and the guest changes the rest by running directly, which pull() takes back.
constexpr uint64_t kGuestOwnedFlags = isa::CF | isa::PF | isa::AF | isa::ZF | isa::SF | isa::TF | isa::DF |
                                      isa::OF | isa::NT | isa::RF | isa::AC | isa::ID;
static_assert((kVmmOwnedFlags & kGuestOwnedFlags) == 0);
// Of the guest's own flags, those an instruction's outcome shows (RF is the processor's
// bookkeeping of a restarted instruction, not a result).
constexpr uint64_t kGuestVisibleFlags = kGuestOwnedFlags & ~isa::RF;

class VirtualCpu : private isa::PhysicalBus,
                   private isa::IoBus,
                   private isa::Translator,
                   private isa::TimeSource,
                   private isa::TrapHook {
 public:
  // `real` is the CPU the guest runs on; the virtual CPU shares its memory, devices, profile, MSR
  // device and clock.
  explicit VirtualCpu(isa::Core& real);
  ~VirtualCpu() override;

  isa::Core& core() { return core_; }
  isa::CpuState& state() { return core_.state(); }
  const isa::CpuState& state() const { return core_.state(); }
  // The guest's privilege level as it believes it to be.
  unsigned cpl() const { return core_.state().cpl(); }
  // The guest would accept a maskable interrupt now.
  bool interrupts_enabled() const {
    return (core_.state().rflags & isa::IF) && !core_.state().interrupt_shadow;
  }

  // Copies what directly executed guest code may change: general registers, x87 and SSE state,
  // RIP, the flags the
  // guest owns (not IOPL, VIP, VM; IF or VIF as flag_in_real_vif says) and the
  // segment registers it loaded without trapping.
  void pull(const isa::CpuState& real);
  // The same merge into `v` (a copy of the virtual state) instead of the virtual CPU.
  void merge_direct(isa::CpuState& v, const isa::CpuState& real);

  // The CPL the real CPU runs the guest at while the virtual state is `v`: 3 in IA-32e mode; in
  // 32-bit protected mode the guest's own CPL raised to the deprivileged CPL (1, 2 or 3, from
  // vmm.deprivileged_cpl_prot32), so that its kernel runs there and its user code at 3.
  unsigned real_cpl(const isa::CpuState& v) const {
    return v.long_mode_active() ? 3 : std::max(v.cpl(), deprivileged_cpl_prot32_);
  }
  void set_deprivileged_cpl_prot32(unsigned cpl) { deprivileged_cpl_prot32_ = cpl; }
  // Segment `s` of the virtual state `v` as the deprivileged guest holds it on the real CPU: code
  // and data descriptors at a DPL of at least the real CPL, CS and SS with the real CPL as RPL;
  // outside IA-32e mode a code segment's L bit (which only IA-32e mode reads) is dropped, since the
  // real CPU runs 32-bit protected-mode code in compatibility mode.
  isa::Segment real_segment(const isa::CpuState& v, isa::SegReg s) const;

  // Sandbox: while it is on, the virtual CPU's memory writes are kept aside (and its reads see
  // them) instead of reaching memory; end_sandbox() returns them by physical byte address.
  void begin_sandbox();
  std::map<uint64_t, uint8_t> end_sandbox();
  bool sandboxed() const { return sandbox_; }
  // On a profile whose POPF and PUSHF use VIF at CPL > IOPL (x86-pg), the real VIF carries, while
  // the guest runs directly (always at a real CPL above the real IOPL), the flag its own POPF and PUSHF
  // reach at its virtual CPL and IOPL: IF at CPL <= IOPL (its kernel), VIF above (its user code).
  bool vif_carries_if() const { return vif_carries_if_; }
  // That flag of the virtual state `v` (IF or VIF), or 0 where the real VIF carries nothing.
  uint64_t flag_in_real_vif(const isa::CpuState& v) const {
    if (!vif_carries_if_) return 0;
    return v.cpl() <= v.iopl() ? isa::IF : isa::VIF;
  }
  // Physical memory as the virtual CPU reaches it (every write drops the real core's decoded code).
  isa::PhysicalBus& bus();

  // The guest's paging structures changed in the guest's view: INVLPG of one page, or a flush.
  std::function<void(uint64_t linear)> on_invalidate_page;
  std::function<void()> on_flush;
  // Every write the virtual CPU is about to make to memory, outside the sandbox: its
  // instructions', and its own (accessed and dirty bits of its page walks, accessed bits of
  // segment loads, LTR's busy bit), so that what the VMM made from guest memory (shadow page
  // tables, the shadow GDT) follows. Memory still holds the old value when it is called.
  std::function<void(uint64_t paddr, unsigned size, uint64_t value)> before_write;
  // An event for the guest (an exception the virtual CPU raised, or one the VMM reflects) that the
  // strategy delivers its own way; returns true when it did (paravirt: through the guest's trap
  // table). Unset or false: delivered through the guest's IDT, as the CPU would.
  std::function<bool(const isa::Event& event)> deliver_event;

  // Executes up to `steps` steps on the virtual CPU, a step being one instruction, or one
  // exception raised and delivered through the guest's IDT instead; stops early at HLT or a
  // shutdown. Returns the instructions retired. (Core::run counts retired instructions only, so
  // after a fault it would go on into the guest's handler.)
  uint64_t execute(uint64_t steps);
  // The last execute() stopped a long string instruction between two iterations (registers
  // updated, RIP at the instruction): neither retired nor faulted.
  bool suspended() const { return suspended_; }
  // Instructions the virtual CPU executed (emulated or interpreted).
  uint64_t executed() const { return core_.counters().retired; }
  // Physical memory that is the VMM's own (above guest RAM, where the guest has none): an access
  // there stops the run (a shutdown naming the address), as the real CPU's does, whose shadow
  // page tables never map it, so that no emulated instruction can reach the VMM's structures.
  void set_vmm_memory(uint64_t base, uint64_t size) {
    vmm_base_ = base;
    vmm_size_ = size;
  }
  // Entries first..last of the root table CR3 points to read as empty: the VMM's own entries,
  // which it links into the guest's roots under direct paging (paravirt), are not in the guest's
  // view of its tables (its page walks and its reads of the root).
  void hide_root_entries(unsigned first, unsigned last) {
    hidden_root_entries_ = true;
    hidden_first_ = first;
    hidden_last_ = last;
  }
  // Where guest-physical memory lies in host-physical memory when they differ (nested paging's
  // shuffled layout): applied to every physical address the virtual CPU reaches. Unset: the same.
  std::function<uint64_t(uint64_t guest_physical)> host_physical;
  // Its port accesses and accesses to device memory (not RAM): the guest's virtual devices at work.
  uint64_t device_accesses() const { return device_accesses_; }

 private:
  // isa::PhysicalBus: no host pointers, so that every write is seen (the real core drops decoded
  // code there) and every fetch decodes the bytes as they are now.
  uint8_t* host_frame(uint64_t) override { return nullptr; }
  uint64_t read(uint64_t paddr, unsigned size) override;
  bool copy_from_ram(uint64_t paddr, uint8_t* out, unsigned n) override;
  void write(uint64_t paddr, unsigned size, uint64_t value) override;
  // isa::IoBus: the real CPU's ports (the same device models), counted.
  uint32_t in(uint16_t port, unsigned size) override;
  void out(uint16_t port, unsigned size, uint32_t value) override;
  // isa::Translator: the guest's own page tables.
  isa::Translation translate(const isa::CpuState& state, uint64_t linear, isa::AccessKind kind, bool user,
                             isa::AccessOrigin origin) override;
  void invalidate_page(uint64_t linear) override;
  void flush(bool include_global) override;
  // isa::TimeSource: the real CPU's clock (the TSC offset is the guest's, in state().tsc).
  uint64_t current_cycle() override { return real_.read_tsc() - real_.state().tsc; }

  // isa::TrapHook: counts instruction boundaries to end a step after a delivered fault.
  bool on_event(isa::Core&, const isa::Event& event) override { return deliver_event && deliver_event(event); }
  void on_instruction_boundary(isa::Core& core) override {
    if (boundaries_left_ == 0 || --boundaries_left_ == 0) core.request_stop();
  }

  isa::Core& real_;
  uint64_t boundaries_left_ = 0;
  bool sandbox_ = false;
  std::map<uint64_t, uint8_t> overlay_;
  uint64_t device_accesses_ = 0;
  uint64_t vmm_base_ = 0, vmm_size_ = 0;
  bool hidden_root_entries_ = false;
  unsigned hidden_first_ = 0, hidden_last_ = 0;
  // `paddr` in host-physical memory, for an access of `size` bytes that does not cross a page.
  uint64_t host_address(uint64_t paddr) const { return host_physical ? host_physical(paddr) : paddr; }
  bool is_vmm_memory(uint64_t paddr) const { return paddr - vmm_base_ < vmm_size_; }
  // True, after stopping the run, when `paddr` is the VMM's memory.
  bool refuses(uint64_t paddr);
  // The guest's page walks, remembered while every entry they read holds the value they left in it
  // (what the walk would give again, writing nothing): host time only, as for the MMU's walks.
  models::WalkMemo walk_memo_{64};
  isa::Core core_;
  isa::SystemConfig system_;
  std::unique_ptr<isa::SystemConfigBinding> binding_;
  bool vif_carries_if_ = false;
  unsigned deprivileged_cpl_prot32_ = 3;
  bool suspended_ = false;
};

}  // namespace pgsim::vmm

#include "models/vmm/paravirt.h"

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "isa/system/paging.h"
#include "models/stats/stats.h"

namespace pgsim::vmm {

using namespace isa;

namespace {

// Flat 64-bit segments as the guest holds them in its virtual rings (attributes as Segment keeps
// them: type, S, DPL, P, L, D/B, G).
constexpr uint16_t kKernelCodeAttr = 0xA09B, kKernelDataAttr = 0xC093;
constexpr uint16_t kUserCodeAttr = 0xA0FB, kUserDataAttr = 0xC0F3;
// The flags an event or IRET hands over from the frame: the arithmetic flags, TF, DF, AC, ID
// (IF is the event mask's business, IOPL and the rest the VMM's).
constexpr uint64_t kFrameFlags = CF | PF | AF | ZF | SF | TF | DF | OF | AC | ID;
// Vectors whose exceptions push an error code (pv_abi.h: 8, 10-14, 17, 21, 29, 30).
constexpr bool pushes_error_code(unsigned vector) {
  return vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 || vector == 29 ||
         vector == 30;
}
constexpr uint32_t kPfErrorUser = 1u << 2;
// SYSCALL's two bytes, which the real CPU refuses (#UD: EFER.SCE is clear) and the VMM recognises.
constexpr uint8_t kSyscallBytes[] = {0x0F, 0x05};
// The console (pv_abi.h console_write) is the PC's first serial port.
constexpr uint16_t kConsolePort = 0x3F8;
// The local APIC, which the VMM programs for the guest's one-shot timer (SDM vol. 3, 11.4.1 and
// 11.5.4): its registers by MMIO offset from IA32_APIC_BASE, TSC-deadline mode, the deadline MSR.
constexpr uint64_t kApicEoi = 0x0B0, kApicSvr = 0x0F0, kApicLvtTimer = 0x320;
constexpr uint32_t kApicSoftwareEnable = 1u << 8, kApicSpuriousVector = 0xFF, kApicTscDeadlineMode = 2u << 17;
constexpr uint32_t kMsrTscDeadline = 0x6E0;
constexpr uint64_t kApicBaseMask = ~0xFFFull & 0x000FFFFFFFFFFFFFull;

bool canonical(uint64_t va) {
  const uint64_t top = va >> 47;
  return top == 0 || top == 0x1FFFF;
}

std::string batch_bucket(uint64_t n) {
  uint64_t low = 1;
  while (low * 2 <= n) low *= 2;
  return low == 1 ? "1" : std::to_string(low) + "_" + std::to_string(2 * low - 1);
}

}  // namespace

const std::array<ParavirtVmm::Operation, PV_OP_COUNT> ParavirtVmm::kOperations = {{
    {"set_trap_table", &ParavirtVmm::set_trap_table},
    {"mmu_update", &ParavirtVmm::mmu_update},
    {"stack_switch", &ParavirtVmm::stack_switch},
    {"multicall", &ParavirtVmm::multicall},
    {"new_baseptr", &ParavirtVmm::new_baseptr},
    {"invlpg", &ParavirtVmm::invlpg},
    {"set_timer", &ParavirtVmm::set_timer},
    {"console_write", &ParavirtVmm::console_write},
    {"sched_block", &ParavirtVmm::sched_block},
    {"sched_yield", &ParavirtVmm::sched_yield},
    {"get_virtual_ring", &ParavirtVmm::get_virtual_ring},
    {"io", &ParavirtVmm::io},
    {"iret", &ParavirtVmm::iret},
    {"set_shared_info", &ParavirtVmm::set_shared_info},
    {"pin_table", &ParavirtVmm::pin_table},
    {"unpin_table", &ParavirtVmm::unpin_table},
    {"set_syscall_callback", &ParavirtVmm::set_syscall_callback},
    {"event_check", &ParavirtVmm::event_check},
}};
static_assert(PV_OP_SET_TRAP_TABLE == 0 && PV_OP_MMU_UPDATE == 1 && PV_OP_STACK_SWITCH == 2 && PV_OP_MULTICALL == 3 &&
                  PV_OP_NEW_BASEPTR == 4 && PV_OP_INVLPG == 5 && PV_OP_SET_TIMER == 6 && PV_OP_CONSOLE_WRITE == 7 &&
                  PV_OP_SCHED_BLOCK == 8 && PV_OP_SCHED_YIELD == 9 && PV_OP_GET_VIRTUAL_RING == 10 &&
                  PV_OP_IO == 11 && PV_OP_IRET == 12 && PV_OP_SET_SHARED_INFO == 13 && PV_OP_PIN_TABLE == 14 &&
                  PV_OP_UNPIN_TABLE == 15 && PV_OP_SET_SYSCALL_CALLBACK == 16 && PV_OP_EVENT_CHECK == 17,
              "kOperations is indexed by the ABI's operation numbers");

const char* ParavirtVmm::operation_name(uint64_t op) { return op < PV_OP_COUNT ? kOperations[op].name : nullptr; }

ParavirtVmm::ParavirtVmm(const Machine& machine, const VmmCosts& costs, const VmmOptions& options)
    : options_(options),
      costs_(costs),
      machine_(machine),
      guest_("paravirt", machine, costs, options, cycles_, violations_),
      hypercall_cycles_(cycles_.add_counter("vmm_hypercall", "cycles of hypercalls into the VMM and back (the crossing)")),
      handler_cycles_(cycles_.add_counter("vmm_hypercall_handler", "cycles the VMM's hypercall handlers spend, per operation")),
      validate_cycles_(cycles_.add_counter("vmm_pt_validate", "cycles validating the guest's page-table requests")),
      event_cycles_(cycles_.add_counter("vmm_event", "cycles delivering events to the guest through its trap table")) {
  // The device accesses the hypercall handlers make (io, console_write) are the VMM's device
  // models' work, taken out of the physical I/O bucket (device_accesses_modelled): charged here.
  cycles_.add_formula("vmm_hypercall_device_model",
                      "cycles the VMM's device models spend on the accesses of the io and console_write hypercalls",
                      [this, cost = costs.device_model] { return counters_.io_accesses * cost; });
  if (options.paging == "shadow") direct_paging_ = false;
  else if (!options.paging.empty() && options.paging != "auto" && options.paging != "direct")
    throw std::invalid_argument("paravirt: vmm.paging '" + options.paging +
                                "' is not a memory virtualization it implements (direct or shadow)");
  guest_.reserve_user_selectors(PV_USER_DS, PV_USER_CS);
}

ParavirtVmm::~ParavirtVmm() {
  if (real_ && real_->system_config() == &system_) real_->set_system_config(nullptr);
}

void ParavirtVmm::attach(Core& real) {
  real_ = &real;
  // The hypervisor presents itself to the real CPU's CPUID and VMCALL (and the virtual CPU's,
  // which copies the real one's configuration).
  system_ = system_config(real);
  system_.hypervisor = this;
  real.set_system_config(&system_);
  guest_.attach(real);
  // Guest RAM is what lies below the VMM's memory, from 0 up to the first address that is not RAM.
  uint64_t ram = 0;
  const uint64_t limit = machine_.vmm_memory_base ? machine_.vmm_memory_base : (1ull << 40);
  while (ram < limit && real.bus().host_frame(ram)) ram += 2ull << 20;
  paging_ = std::make_unique<DirectPaging>(guest_.vcpu().bus(), ram, machine_.vmm_memory_base, machine_.vmm_memory_size);
  leak_detector_ = std::make_unique<LeakDetector>(guest_.vcpu(), guest_.shadow(), leaks_, options_.conceal_leaks,
                                                  [this](Core& core) { guest_.project(core); });
  real.remark_decoded();
}

// ---- The hypervisor interface ----------------------------------------------------------------

bool ParavirtVmm::cpuid(uint32_t leaf, uint32_t, CpuidLeaf& out) {
  if (leaf != PV_CPUID_LEAF) return false;
  const char* signature = PV_CPUID_SIGNATURE;  // 12 bytes
  out.eax = PV_CPUID_MAX_LEAF;
  std::memcpy(&out.ebx, signature, 4);
  std::memcpy(&out.ecx, signature + 4, 4);
  std::memcpy(&out.edx, signature + 8, 4);
  return true;
}

// VMCALL reaches here from the real CPU at the guest's CPL 3 (the instruction is not privileged
// when a hypervisor presents itself): a hypercall, not a trap. The VMM takes the guest's state as
// at a trap, serves the operation on the virtual CPU and projects the real state back; the core
// then commits RIP, which points past the VMCALL unless the operation moved it (iret, an event).
bool ParavirtVmm::vmcall(Core& real) {
  if (!guest_.direct()) return false;  // interpreted code (real mode): no hypercalls, #UD
  guest_.enter(real, DeprivilegedGuest::Entry::Hypercall);
  hypercall_cycles_ += costs_.hypercall;
  note_event_mask();
  CpuState& s = v();
  if (virtual_ring() != 0) {  // only the virtual ring 0 may call: #UD for the guest, as hardware would
    deliver(Event::from_fault(Fault::ud()));
  } else {
    s.rip = real.next_rip();
    const uint64_t op = s.gpr[RAX];
    batch_updates_ = 0;
    const int64_t result = dispatch(op, {{s.gpr[RDI], s.gpr[RSI], s.gpr[RDX], s.gpr[R10], s.gpr[R8]}}, false);
    if (batch_updates_) {
      ++batch_sizes_[batch_updates_];
      ++batch_histogram_[batch_bucket(batch_updates_)];
    }
    if (op != PV_OP_IRET || result < 0) s.gpr[RAX] = static_cast<uint64_t>(result);  // iret restored RAX
    counters_.upcalls += deliver_held_events();  // what the guest unmasked is delivered at the return
  }
  guest_.resume(real, DeprivilegedGuest::Entry::Hypercall);
  real.set_next_rip(real.state().rip);
  return true;
}

int64_t ParavirtVmm::dispatch(uint64_t op, const Args& args, bool nested) {
  handler_cycles_ += costs_.hypercall_handler;
  const char* name = operation_name(op);
  if (nested) {
    ++counters_.multicall_entries;
    multicall_operations_.record(name ? name : "unknown");
  } else {
    hypercalls_.record(name ? name : "unknown");
  }
  const int64_t result = name ? (this->*kOperations[op].handler)(args) : -PV_ENOSYS;
  if (result < 0) ++counters_.refused;
  return result;
}

// ---- Handlers, one per operation ---------------------------------------------------------------

int64_t ParavirtVmm::set_trap_table(const Args& a) {
  std::array<TrapEntry, 256> table{};
  try {
    for (uint64_t entry = a.a[0], n = 0;; entry += sizeof(pv_trap_entry), ++n) {
      if (n > 256) return -PV_EINVAL;  // more entries than vectors: the end is missing
      const uint64_t head = read_guest(entry), handler = read_guest(entry + 8);
      if (!handler) break;
      if (head >> 32 || !canonical(handler) || ((head >> 8) & 0xF8)) return -PV_EINVAL;  // reserved bits
      table[head & 0xFF] = {true, static_cast<uint8_t>(head >> 8), static_cast<uint16_t>(head >> 16), handler};
    }
  } catch (const Fault&) {
    return -PV_EFAULT;
  }
  traps_ = table;
  kernel_cs_ = v().seg[CS].selector;  // the virtual ring 0's selectors, shown in its frames
  kernel_ss_ = v().seg[SS].selector;
  if (!trap_table_) {
    // From now on events are the VMM's to deliver: interrupts whatever the guest's mask (held
    // while it is set), exceptions through this table.
    guest_.take_every_interrupt();
    guest_.vcpu().deliver_event = [this](const Event& event) { return deliver(event); };
  }
  trap_table_ = true;
  return 0;
}

int64_t ParavirtVmm::mmu_update(const Args& a) {
  const uint64_t count = a.a[1];
  if (count > 4096) return -PV_EINVAL;
  std::vector<pv_mmu_update> requests(count);
  try {
    for (uint64_t k = 0; k < count; ++k)
      requests[k] = {read_guest(a.a[0] + 16 * k), read_guest(a.a[0] + 16 * k + 8)};
  } catch (const Fault&) {
    return -PV_EFAULT;
  }
  // As Xen does for 64-bit PV guests: the guest kernel runs at CPL 3, so every present entry it
  // asks for is made user-accessible; its user processes are kept out of kernel memory by the two
  // roots (the user root maps the user slot only), not by the U/S bit.
  for (pv_mmu_update& request : requests)
    if (request.value & PTE_P) request.value |= PTE_US;
  const uint64_t before = paging_->counters().validations;
  uint64_t done = 0;
  const int64_t result = paging_->update_batch(requests.data(), count, &done);
  validate_cycles_ += (paging_->counters().validations - before) * costs_.pt_validate;
  batch_updates_ += done;
  if (done) tables_changed();
  if (a.a[2]) {
    try {
      write_guest(a.a[2], done);
    } catch (const Fault&) {
      return -PV_EFAULT;
    }
  }
  return result;
}

int64_t ParavirtVmm::stack_switch(const Args& a) {
  if (!canonical(a.a[0])) return -PV_EINVAL;
  kernel_stack_ = a.a[0];
  return 0;
}

int64_t ParavirtVmm::multicall(const Args& a) {
  const uint64_t calls = a.a[0], count = a.a[1];
  for (uint64_t k = 0; k < count; ++k) {
    const uint64_t entry = calls + k * sizeof(pv_multicall);
    Args sub{};
    uint64_t op = 0;
    try {
      op = read_guest(entry);
      for (unsigned i = 0; i < 5; ++i) sub.a[i] = read_guest(entry + 8 + 8 * i);
    } catch (const Fault&) {
      return -PV_EFAULT;
    }
    const int64_t result = (op == PV_OP_MULTICALL || op == PV_OP_IRET) ? -PV_EINVAL : dispatch(op, sub, true);
    try {
      write_guest(entry + offsetof(pv_multicall, result), static_cast<uint64_t>(result));
    } catch (const Fault&) {
      return -PV_EFAULT;
    }
    if (result < 0) return result;
  }
  return 0;
}

int64_t ParavirtVmm::new_baseptr(const Args& a) {
  const uint64_t kernel_root = a.a[0] & ~0xFFFull, user_root = a.a[1] & ~0xFFFull;
  const uint64_t before = paging_->counters().validations;
  const int64_t result = paging_->load_roots(kernel_root, user_root);
  validate_cycles_ += (paging_->counters().validations - before) * costs_.pt_validate;
  if (result < 0) return result;
  if (direct_paging_) {
    // The guest's own roots become the real ones (the first time: the boot's shadows are left).
    if (!guest_.guest_tables_real()) {
      guest_.use_guest_tables(PV_VMM_PML4_FIRST);
      guest_.vcpu().hide_root_entries(PV_VMM_PML4_FIRST, PV_VMM_PML4_LAST);
    }
    for (uint64_t old : {kernel_root_, user_root_})
      if (old && old != kernel_root && old != user_root) link_vmm_area(old, false);
    for (uint64_t root : {kernel_root, user_root})
      if (root) link_vmm_area(root, true);
  }
  kernel_root_ = kernel_root;
  user_root_ = user_root;
  load_root_for_ring();
  tables_changed();
  return 0;
}

int64_t ParavirtVmm::invlpg(const Args& a) {
  guest_.vcpu().on_invalidate_page(a.a[0]);  // the shadow's entry (shadow paging) and the real TLB's
  guest_.vcpu().core().invalidate_page(a.a[0]);
  return 0;
}

int64_t ParavirtVmm::set_timer(const Args& a) {
  if (a.a[0] && (a.a[1] < 32 || a.a[1] > 255)) return -PV_EINVAL;
  timer_deadline_ = a.a[0];
  timer_vector_ = static_cast<uint8_t>(a.a[1]);
  arm_timer_hardware();
  return 0;
}

int64_t ParavirtVmm::console_write(const Args& a) {
  const uint64_t length = a.a[1];
  std::vector<uint8_t> bytes(length);
  try {
    for (uint64_t k = 0; k < length; ++k)
      bytes[k] = static_cast<uint8_t>(guest_.vcpu().core().read_linear(a.a[0] + k, 1, AccessOrigin::ImplicitSupervisor));
  } catch (const Fault&) {
    return -PV_EFAULT;
  }
  for (uint8_t byte : bytes) real_->io().out(kConsolePort, 1, byte);
  counters_.io_accesses += length;
  return static_cast<int64_t>(length);
}

int64_t ParavirtVmm::sched_block(const Args&) {
  publish_pending();
  if (pending_.any()) return 0;  // an event is pending already
  CpuState& s = v();
  s.halted = true;  // the real CPU waits for the controller; the event is taken when it comes
  // Nothing can wake a guest that blocks with events masked and no timer: it has halted, as HLT
  // with interrupts off halts the machine.
  if (events_masked() && !timer_deadline_) s.rflags &= ~IF;
  return 0;
}

int64_t ParavirtVmm::sched_yield(const Args&) { return 0; }  // one vCPU, nothing else to run

int64_t ParavirtVmm::get_virtual_ring(const Args&) { return virtual_ring(); }

int64_t ParavirtVmm::io(const Args& a) {
  const uint16_t port = static_cast<uint16_t>(a.a[0]);
  const unsigned size = a.a[1] & PV_IO_SIZE_MASK;
  if ((size != 1 && size != 2 && size != 4) || (a.a[1] & ~uint64_t{PV_IO_OUT | PV_IO_SIZE_MASK}) || a.a[0] > 0xFFFF)
    return -PV_EINVAL;
  ++counters_.io_accesses;
  if (a.a[1] & PV_IO_OUT) {
    real_->io().out(port, size, static_cast<uint32_t>(a.a[2]));
    return 0;
  }
  return real_->io().in(port, size);
}

int64_t ParavirtVmm::iret(const Args&) {
  CpuState& s = v();
  pv_iret_frame f{};
  try {
    const uint64_t sp = s.gpr[RSP];
    f = {read_guest(sp), read_guest(sp + 8), read_guest(sp + 16), read_guest(sp + 24), read_guest(sp + 32),
         read_guest(sp + 40)};
  } catch (const Fault&) {
    return -PV_EFAULT;
  }
  const unsigned ring = f.cs & 3;
  if (ring != 0 && ring != 3) return -PV_EINVAL;
  if (ring == 3 && (f.cs != PV_USER_CS || f.ss != PV_USER_DS || !user_root_)) return -PV_EINVAL;
  if (!canonical(f.rip) || !canonical(f.rsp)) return -PV_EINVAL;
  set_shared_byte(offsetof(pv_vcpu_info, event_mask), (f.rflags & IF) ? 0 : 1);
  mask_seen_ = events_masked();  // the VMM's own change, not a write of the guest's
  set_virtual_ring(ring);
  if (ring == 0) {
    s.seg[CS].selector = static_cast<uint16_t>(f.cs);
    s.seg[SS].selector = static_cast<uint16_t>(f.ss);
  } else {
    // IRETQ to an outer ring loads the null selector into a data segment register whose
    // descriptor's DPL is below the new CPL: in the ABI's GDT every data segment but the user's
    // is the kernel's (DPL 0). The real CPU cannot do it here, where the kernel's selectors are
    // compressed to DPL 3.
    for (unsigned seg : {ES, DS, FS, GS})
      if ((s.seg[seg].selector & ~3u) && s.seg[seg].selector != PV_USER_DS) s.seg[seg].selector = 0;
  }
  s.rflags = (s.rflags & ~kFrameFlags) | (f.rflags & kFrameFlags);
  s.gpr[RSP] = f.rsp;
  s.rip = f.rip;
  s.gpr[RAX] = f.rax;
  load_root_for_ring();
  return 0;
}

int64_t ParavirtVmm::set_shared_info(const Args& a) {
  const uint64_t frame = a.a[0];
  if (frame & 0xFFF) return -PV_EINVAL;
  if (frame >= machine_.vmm_memory_base && frame - machine_.vmm_memory_base < machine_.vmm_memory_size) return -PV_EPERM;
  if (!real_->bus().host_frame(frame)) return -PV_EINVAL;  // not RAM
  shared_info_ = frame;
  mask_seen_ = events_masked();
  publish_pending();
  return 0;
}

int64_t ParavirtVmm::pin_table(const Args& a) {
  validate_cycles_ += costs_.pt_validate;
  return paging_->pin(a.a[0], static_cast<unsigned>(a.a[1]));
}

int64_t ParavirtVmm::unpin_table(const Args& a) {
  validate_cycles_ += costs_.pt_validate;
  const int64_t result = paging_->unpin(a.a[0]);
  if (result == 0) tables_changed();
  return result;
}

int64_t ParavirtVmm::set_syscall_callback(const Args& a) {
  if (!canonical(a.a[0])) return -PV_EINVAL;
  syscall_entry_ = a.a[0];
  return 0;
}

int64_t ParavirtVmm::event_check(const Args&) { return 0; }  // the held events go at the return

// ---- Traps -----------------------------------------------------------------------------------

std::optional<TrapCause> ParavirtVmm::take_event(Core& real, const Event& event) {
  if (!guest_.direct()) {
    guest_.take_while_interpreting(real, event);
    return trap_cause(event);
  }
  leak_detector_->cancel();
  guest_.enter(real);
  note_event_mask();
  const TrapCause cause = trap_table_ ? take_paravirtual(real, event) : guest_.handle_trap(real, event);
  if (!real.is_shutdown()) guest_.resume(real);
  return cause;
}

TrapCause ParavirtVmm::take_paravirtual(Core& real, const Event& event) {
  switch (event.kind) {
    case EventKind::External:
      // The VMM owns the physical interrupt: acknowledged at the controller, held for the guest.
      if (system_.msr_device) real.bus().write((v().apic_base & kApicBaseMask) + kApicEoi, 4, 0);
      if (event.vector == timer_vector_) timer_deadline_ = 0;  // one-shot
      v().halted = false;  // a blocked guest's sched_block returns: an event is pending
      hold_interrupt(event.vector);
      deliver_held_events();
      if (pending_.test(event.vector)) ++counters_.interrupts_held;  // masked, or below task priority
      break;
    case EventKind::Nmi:
    case EventKind::SoftwareInt:
    case EventKind::SoftwareException:
      deliver(event);
      break;
    case EventKind::Exception:
      if (event.vector == PF_ && !guest_.guest_tables_real()) {
        guest_.handle_page_fault(real, event);  // hidden, traced, or the guest's own (delivered)
      } else if (event.vector == PF_) {
        Event fault = event;  // the real CPU ran the guest at CPL 3: the error code says the virtual ring
        fault.error_code = (fault.error_code & ~kPfErrorUser) | (virtual_ring() == 3 ? kPfErrorUser : 0);
        deliver(fault);
      } else if (event.vector == UD && virtual_ring() == 3) {
        uint8_t bytes[2] = {0, 0};
        try {
          for (unsigned k = 0; k < 2; ++k)
            bytes[k] = static_cast<uint8_t>(guest_.vcpu().core().read_linear(v().rip + k, 1, AccessOrigin::ImplicitSupervisor));
        } catch (const Fault&) {
        }
        if (std::memcmp(bytes, kSyscallBytes, 2) == 0 && syscall_entry_) enter_syscall_callback();
        else deliver(event);
      } else if (virtual_ring() == 0 && event.vector != DB) {
        guest_.emulate_instruction();  // a privileged instruction the kernel ran itself (its probes)
      } else {
        deliver(event);
      }
      break;
  }
  return trap_cause(event);
}

// ---- Events ----------------------------------------------------------------------------------

bool ParavirtVmm::deliver(const Event& original) {
  if (!trap_table_) return false;
  Event event = original;
  const unsigned ring = virtual_ring();
  TrapEntry entry = traps_[event.vector];
  if (event.software() && entry.present && (entry.flags & 3) < ring) {  // INT n past its DPL: #GP
    event = Event{GP, EventKind::Exception, true, static_cast<uint32_t>(event.vector) * 8 + 2, 0};
    entry = traps_[GP];
  }
  Core& vcore = guest_.vcpu().core();
  if (!entry.present) {
    vcore.shutdown("paravirt: the guest raised vector " + std::to_string(event.vector) +
                   ", for which its trap table has no entry");
    return true;
  }
  CpuState& s = v();
  const bool from_user = ring == 3;
  const uint64_t rflags = (s.rflags & kFrameFlags) | RF1 | (events_masked() ? 0 : uint64_t{IF});
  const uint64_t frame[] = {s.seg[SS].selector, s.gpr[RSP], rflags,
                            from_user ? uint64_t{PV_USER_CS} : uint64_t{entry.cs & ~3u}, s.rip};
  if (from_user) {
    set_virtual_ring(0);
    load_root_for_ring();
  }
  uint64_t rsp = (from_user ? kernel_stack_ : s.gpr[RSP]) & ~0xFull;
  try {
    for (uint64_t word : frame) push_guest(rsp, word);
    if (event.has_error_code || (event.kind == EventKind::Exception && pushes_error_code(event.vector)))
      push_guest(rsp, event.error_code);
  } catch (const Fault&) {
    char where[96];
    std::snprintf(where, sizeof where, "%#llx (vector %u, RIP %#llx, CR3 %#llx)", static_cast<unsigned long long>(rsp),
                  event.vector, static_cast<unsigned long long>(s.rip), static_cast<unsigned long long>(s.cr3));
    vcore.shutdown(std::string("paravirt: the guest's stack at ") + where + " cannot take an event frame");
    return true;
  }
  if (event.vector == PF_ && event.kind == EventKind::Exception) {
    s.cr2 = event.cr2;
    if (shared_info_) guest_.vcpu().bus().write(shared_info_ + offsetof(pv_vcpu_info, fault_address), 8, event.cr2);
  }
  if (entry.flags & PV_TRAP_MASK_EVENTS) set_shared_byte(offsetof(pv_vcpu_info, event_mask), 1);
  s.gpr[RSP] = rsp;
  s.rflags &= ~uint64_t{TF | NT | RF};
  s.rip = entry.handler;
  s.halted = false;
  // The leak detector's trial run of a sensitive instruction on the virtual CPU (sandboxed: its
  // memory writes, the shared info's among them, are kept aside) delivers nothing for real.
  if (guest_.vcpu().sandboxed()) return true;
  mask_seen_ = events_masked();
  ++counters_.events_delivered;
  event_cycles_ += costs_.reflect;
  return true;
}

void ParavirtVmm::enter_syscall_callback() {
  CpuState& s = v();
  s.gpr[RCX] = s.rip + sizeof kSyscallBytes;
  s.gpr[R11] = (s.rflags & kFrameFlags) | RF1 | (events_masked() ? 0 : uint64_t{IF});
  set_shared_byte(offsetof(pv_vcpu_info, event_mask), 1);
  mask_seen_ = true;
  set_virtual_ring(0);
  load_root_for_ring();
  s.rflags &= ~uint64_t{TF | DF | AC | RF};
  s.rip = syscall_entry_;
  ++counters_.events_delivered;
  event_cycles_ += costs_.reflect;
}

void ParavirtVmm::hold_interrupt(uint8_t vector) {
  pending_.set(vector);
  publish_pending();
}

unsigned ParavirtVmm::deliver_held_events() {
  unsigned delivered = 0;
  while (pending_.any() && trap_table_ && shared_info_ && !events_masked()) {
    unsigned vector = 255;
    while (!pending_.test(vector)) --vector;
    if ((vector >> 4) <= shared_byte(offsetof(pv_vcpu_info, task_priority))) break;
    pending_.reset(vector);
    publish_pending();
    deliver(Event{static_cast<uint8_t>(vector), EventKind::External, false, 0, 0});
    ++delivered;
  }
  return delivered;
}

void ParavirtVmm::publish_pending() {
  if (!shared_info_) return;
  PhysicalBus& bus = guest_.vcpu().bus();
  for (unsigned word = 0; word < 4; ++word) {
    uint64_t bits = 0;
    for (unsigned b = 0; b < 64; ++b)
      if (pending_.test(word * 64 + b)) bits |= 1ull << b;
    bus.write(shared_info_ + offsetof(pv_vcpu_info, pending_vectors) + 8 * word, 8, bits);
  }
  set_shared_byte(offsetof(pv_vcpu_info, event_pending), pending_.any() ? 1 : 0);
}

void ParavirtVmm::note_event_mask() {
  if (!shared_info_) return;
  const bool masked = events_masked();
  if (masked == mask_seen_) return;
  ++(masked ? counters_.masks : counters_.unmasks);
  mask_seen_ = masked;
}

// ---- The guest's state -------------------------------------------------------------------------

CpuState& ParavirtVmm::v() { return guest_.vcpu().state(); }

unsigned ParavirtVmm::virtual_ring() { return v().seg[CS].selector & 3; }

void ParavirtVmm::set_virtual_ring(unsigned ring) {
  CpuState& s = v();
  const bool user = ring == 3;
  s.seg[CS] = {static_cast<uint16_t>(user ? PV_USER_CS : kernel_cs_), 0, 0xFFFFFFFF,
               user ? kUserCodeAttr : kKernelCodeAttr};
  s.seg[SS] = {static_cast<uint16_t>(user ? PV_USER_DS : kernel_ss_), 0, 0xFFFFFFFF,
               user ? kUserDataAttr : kKernelDataAttr};
}

void ParavirtVmm::load_root_for_ring() {
  const uint64_t root = virtual_ring() == 3 ? user_root_ : kernel_root_;
  if (!root) return;
  CpuState& s = v();
  if ((s.cr3 & kPhysFrameMask) == root) return;
  s.cr3 = root;
  guest_.vcpu().core().flush_tlbs(true);
}

void ParavirtVmm::tables_changed() {
  guest_.vcpu().core().flush_tlbs(true);
  real_->flush_tlbs(true);
}

uint64_t ParavirtVmm::read_guest(uint64_t va) {
  return guest_.vcpu().core().read_linear(va, 8, AccessOrigin::ImplicitSupervisor);
}

void ParavirtVmm::write_guest(uint64_t va, uint64_t value) {
  guest_.vcpu().core().write_linear(va, 8, value, AccessOrigin::ImplicitSupervisor);
}

void ParavirtVmm::push_guest(uint64_t& rsp, uint64_t value) {
  rsp -= 8;
  write_guest(rsp, value);
}

// The shared-info page through the virtual CPU's view of memory, so that a sandboxed trial run
// (the leak detector's) sees and keeps aside what it changes there.
uint8_t ParavirtVmm::shared_byte(unsigned offset) {
  return shared_info_ ? static_cast<uint8_t>(guest_.vcpu().bus().read(shared_info_ + offset, 1)) : 1;
}

void ParavirtVmm::set_shared_byte(unsigned offset, uint8_t value) {
  if (shared_info_) guest_.vcpu().bus().write(shared_info_ + offset, 1, value);
}

ParavirtVmm::GuestMaskWrites ParavirtVmm::guest_mask_writes() {
  if (!shared_info_) return {};
  isa::PhysicalBus& bus = guest_.vcpu().bus();
  return {bus.read(shared_info_ + offsetof(pv_vcpu_info, mask_writes), 8),
          bus.read(shared_info_ + offsetof(pv_vcpu_info, unmask_writes), 8)};
}

void ParavirtVmm::link_vmm_area(uint64_t root, bool linked) {
  real_->bus().write(root + 8 * guest_.area_pml4_slot(), 8, linked ? guest_.area_pml4_entry() : 0);
}

// The guest's one-shot timer is the local APIC's TSC-deadline timer, which the VMM programs (the
// paravirtual kernel never touches the APIC). A machine without one (no MSR device) has no time
// to keep: the deadline is recorded and never reached.
void ParavirtVmm::arm_timer_hardware() {
  if (!system_.msr_device) return;
  const uint64_t apic = v().apic_base & kApicBaseMask;
  PhysicalBus& bus = real_->bus();
  bus.write(apic + kApicSvr, 4, kApicSoftwareEnable | kApicSpuriousVector);
  bus.write(apic + kApicLvtTimer, 4, kApicTscDeadlineMode | timer_vector_);
  // The guest's TSC is the real one plus its offset; the APIC counts the real one.
  const uint64_t offset = real_->state().tsc;
  const uint64_t deadline = timer_deadline_ == 0 ? 0 : (timer_deadline_ > offset ? timer_deadline_ - offset : 1);
  system_.msr_device->write_msr(kMsrTscDeadline, deadline);
}

// ---- Leaks and figures -------------------------------------------------------------------------

bool ParavirtVmm::wants_before(const Insn& insn, uint64_t) { return leak_detector_ && leak_detector_->watches(insn); }

PreExecute ParavirtVmm::before_instruction(Core& real, const Insn& insn) {
  leak_detector_->before(real, insn);
  return PreExecute::Execute;
}

void ParavirtVmm::after_instruction(Core& real, const Insn&) { leak_detector_->after(real); }

double ParavirtVmm::direct_fraction() const {
  return guest_.direct_fraction(leak_detector_ ? leak_detector_->evaluations() : 0);
}

void ParavirtVmm::bind_statistics(stats::Registry& r) {
  using stats::Unit;
  guest_.bind_statistics(r);
  const struct {
    const char* name;
    const char* description;
    uint64_t DirectPagingCounters::*field;
  } paging[] = {
      {"validations", "page-table requests validated (updates, pins, unpins, roots loaded)", &DirectPagingCounters::validations},
      {"refusals", "of which refused with an error code", &DirectPagingCounters::refusals},
      {"updates", "page-table entries written after validation", &DirectPagingCounters::updates},
      {"plain_writes", "updates of frames that are not page tables", &DirectPagingCounters::plain_writes},
      {"tables_validated", "frames that became page tables", &DirectPagingCounters::tables_validated},
      {"tables_invalidated", "frames that stopped being page tables", &DirectPagingCounters::tables_invalidated},
  };
  for (const auto& p : paging)
    r.formula(std::string("vmm.direct_paging.") + p.name, Unit::Count, p.description,
              [this, field = p.field] { return static_cast<double>(paging_counters().*field); });
  r.bind("vmm.paravirt.events_delivered", Unit::Count,
         "exceptions, interrupts and system calls delivered through the guest's trap table", &counters_.events_delivered);
  r.bind("vmm.paravirt.interrupts_held", Unit::Count,
         "interrupts that arrived while the guest's event mask or task priority held them (left pending)",
         &counters_.interrupts_held);
  r.bind("vmm.paravirt.upcalls", Unit::Count, "held events delivered at a hypercall's return once the guest unmasked",
         &counters_.upcalls);
  r.bind("vmm.paravirt.unmasks", Unit::Count,
         "interrupts re-enabled by a plain write to the event mask, without a trap (seen at the VMM's next entry)",
         &counters_.unmasks);
  r.bind("vmm.paravirt.masks", Unit::Count,
         "interrupts disabled by a plain write to the event mask, without a trap (seen at the VMM's next entry)",
         &counters_.masks);
  r.formula("vmm.paravirt.guest_masks", Unit::Count,
            "interrupts disabled by the guest kernel's plain write to the event mask, as the kernel counts them "
            "in the shared-info page (exact)",
            [this] { return static_cast<double>(guest_mask_writes().masks); });
  r.formula("vmm.paravirt.guest_unmasks", Unit::Count,
            "interrupts re-enabled by the guest kernel's plain write to the event mask, as the kernel counts them "
            "in the shared-info page (exact)",
            [this] { return static_cast<double>(guest_mask_writes().unmasks); });
  r.bind("vmm.paravirt.multicall_entries", Unit::Count, "operations run inside multicalls", &counters_.multicall_entries);
  r.bind("vmm.paravirt.refused", Unit::Count, "hypercalls that returned an error code", &counters_.refused);
  r.bind("vmm.paravirt.hypercall_device_accesses", Unit::Count,
         "device accesses the VMM made for the guest's hypercalls (io, console_write)",
         &counters_.io_accesses);
  r.bind_family("vmm.paravirt.multicall", Unit::Count, "operations of this name run inside multicalls",
                &multicall_operations_.by_name());
  r.bind_family("vmm.paravirt.batch_size", Unit::Count,
                "hypercalls that applied this many page-table updates (power-of-two buckets)", &batch_histogram_);
}

}  // namespace pgsim::vmm

#include "models/vmm/hw_assist.h"

#include <Zydis/Zydis.h>

#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "isa/core.h"
#include "isa/vmx/capabilities.h"
#include "isa/vmx/event_exits.h"
#include "isa/vmx/transitions.h"
#include "models/stats/stats.h"

namespace pgsim::vmm {

using namespace isa;
using namespace isa::vmx;
using F = VmcsField;

namespace {

constexpr uint64_t kPage = 4096;
// The VMM's memory, page by page: a host PML4 for the host state VM exits load (the VMM itself
// runs outside the simulated CPU, so it stays empty), the MSR bitmaps, the virtual-APIC page, and
// from kEptTablesPage on the EPT tables.
constexpr uint64_t kHostPml4Page = 0, kMsrBitmapsPage = 1, kVirtualApicPage = 2, kEptTablesPage = 3;
// Guest RAM moves through host RAM in chunks of this size under the shuffled layout.
constexpr uint64_t kChunk = 2ull << 20;
// Where VM exits "return" to: the VMM's handlers run outside the simulated CPU, so nothing executes
// there; a canonical address for the host-state checks.
constexpr uint64_t kHostRip = 0xFFFFFF8000000000ull;
// The VPID of the one guest (0 is the host's).
constexpr uint16_t kGuestVpid = 1;
// MSRs that are device registers: their accesses exit and the VMM carries them out on the device
// models (IA32_APIC_BASE, IA32_TSC_DEADLINE, the x2APIC registers).
constexpr uint32_t kApicBaseMsr = 0x1B, kTscDeadlineMsr = 0x6E0, kX2apicFirst = 0x800, kX2apicLast = 0x8FF;
// Host-owned bits of CR0 and CR4: VMX operation needs them set (IA32_VMX_CR0_FIXED0 less PE and
// PG, which an unrestricted guest owns; IA32_VMX_CR4_FIXED0).
constexpr uint64_t kCr0HostOwned = CR0_NE, kCr4HostOwned = CR4_VMXE;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// The MSR bitmaps (SDM 25.6.9): read bitmap for low MSRs at 0, for high ones at 1 KiB; write
// bitmaps at 2 and 3 KiB.
void select_msr(PhysicalBus& bus, uint64_t bitmaps, uint32_t msr, bool read, bool write) {
  for (const auto& [selected, offset] : {std::pair{read, 0u}, std::pair{write, 2048u}}) {
    if (!selected) continue;
    const uint64_t byte = bitmaps + offset + msr / 8;
    bus.write(byte, 1, bus.read(byte, 1) | (1u << (msr % 8)));
  }
}

}  // namespace

HwAssistVmm::HwAssistVmm(const Machine& machine, const VmmCosts& costs, const VmmOptions& options)
    : machine_(machine),
      costs_(costs),
      options_(options),
      vmexit_cycles_(cycles_.add_counter("vmm_vmexit", "cycles of hardware VM exits (guest state saved, host state loaded)")),
      vmentry_cycles_(cycles_.add_counter("vmm_vmentry", "cycles of hardware VM entries (checks, guest state loaded, "
                                                         "event injected)")),
      emulate_cycles_(cycles_.add_counter("vmm_exit_emulate", "cycles of the VMM's handlers of instruction exits "
                                                              "(CPUID, CR and MSR accesses, VMX instructions)")),
      io_cycles_(cycles_.add_counter("vmm_exit_io", "cycles of the VMM's handler of I/O-instruction exits")),
      mmio_cycles_(cycles_.add_counter("vmm_exit_mmio", "cycles of the VMM's handler of EPT violations on device "
                                                        "memory (the access emulated)")),
      interrupt_cycles_(cycles_.add_counter("vmm_exit_interrupt", "cycles of the VMM's handlers of external-interrupt "
                                                                  "and interrupt-window exits (the interrupt queued "
                                                                  "and injected)")) {
  if (!machine.nested_paging)
    throw std::invalid_argument("hw_assist: nested paging needs the platform's MMU (Machine::nested_paging)");
  if (machine.vmm_memory_size < (kEptTablesPage + 64) * kPage)
    throw std::invalid_argument("hw_assist: needs RAM above guest RAM for the VMCS's pages and the EPT (at least " +
                                std::to_string((kEptTablesPage + 64) * 4) + " KiB); it has " +
                                std::to_string(machine.vmm_memory_size / 1024) + " KiB");
  guest_ram_ = machine.guest_ram;
  if (guest_ram_.empty()) guest_ram_.push_back({0, machine.vmm_memory_base});
  cycles_.add_formula("vmm_device_model", "cycles the VMM's device models spend on the guest's device accesses",
                      [this] { return device_accesses_ * costs_.device_model; });

  auto on = [this](ExitReason reason, Handler handle, uint64_t& cycles, uint64_t cost) {
    handlers_[static_cast<unsigned>(reason)] = {handle, &cycles, cost};
  };
  on(ExitReason::Cpuid, &HwAssistVmm::on_cpuid, emulate_cycles_, costs.emulate);
  on(ExitReason::IoInstruction, &HwAssistVmm::on_io, io_cycles_, costs.emulate_io);
  on(ExitReason::CrAccess, &HwAssistVmm::on_cr_access, emulate_cycles_, costs.emulate);
  on(ExitReason::Rdmsr, &HwAssistVmm::on_msr, emulate_cycles_, costs.emulate);
  on(ExitReason::Wrmsr, &HwAssistVmm::on_msr, emulate_cycles_, costs.emulate);
  for (ExitReason r : {ExitReason::Vmcall, ExitReason::Vmclear, ExitReason::Vmlaunch, ExitReason::Vmptrld,
                       ExitReason::Vmptrst, ExitReason::Vmread, ExitReason::Vmresume, ExitReason::Vmwrite,
                       ExitReason::Vmxoff, ExitReason::Vmxon, ExitReason::Invept, ExitReason::Invvpid})
    on(r, &HwAssistVmm::on_vmx_instruction, emulate_cycles_, costs.emulate);
  on(ExitReason::ExternalInterrupt, &HwAssistVmm::on_external_interrupt, interrupt_cycles_, costs.reflect);
  on(ExitReason::InterruptWindow, &HwAssistVmm::on_interrupt_window, interrupt_cycles_, costs.reflect);
  on(ExitReason::EptViolation, &HwAssistVmm::on_ept_violation, mmio_cycles_, costs.emulate_mmio);
  on(ExitReason::EptMisconfig, &HwAssistVmm::on_ept_misconfig, emulate_cycles_, costs.emulate);
}

// ---- Set-up ----------------------------------------------------------------------------------------

void HwAssistVmm::attach(Core& core) {
  core_ = &core;
  place_guest_ram(core);
  program_vmcs(core.state());
  // The VMM holds the CPU in its own (host) state from here; the first VM entry starts the guest.
  load_host_state(vmcs_, core.state());
  core.sync_mode();
  enter_guest(core);
  core.remark_decoded();  // marks the instructions that may exit from now on
}

bool HwAssistVmm::is_guest_ram(uint64_t gpa) const {
  for (const auto& [base, size] : guest_ram_)
    if (gpa >= base && gpa - base < size) return true;
  return false;
}

uint64_t HwAssistVmm::host_physical(uint64_t gpa) const {
  for (size_t r = 0; r < guest_ram_.size(); ++r) {
    const auto& [base, size] = guest_ram_[r];
    if (gpa < base || gpa - base >= size) continue;
    if (chunk_host_[r].empty()) return gpa;
    const uint64_t offset = gpa - base;
    return chunk_host_[r][offset / chunk_size_] + offset % chunk_size_;
  }
  throw std::out_of_range("hw_assist: guest-physical " + hex(gpa) + " is not guest RAM");
}

// Guest RAM in host RAM: under the shuffled layout chunk i of a range goes to chunk
// (i * stride + n / 2) mod n of the same host range, with a stride prime to n, so that no guest
// address above the first chunks is its own host address; the contents the loader put there move
// with it. The EPT maps exactly guest RAM, so that device memory exits.
void HwAssistVmm::place_guest_ram(Core& core) {
  PhysicalBus& bus = core.bus();
  const uint64_t page = options_.ept_page_size;
  EptBuilder ept(bus, machine_.vmm_memory_base + kEptTablesPage * kPage,
                 machine_.vmm_memory_size - kEptTablesPage * kPage);
  chunk_size_ = kChunk;
  for (const auto& [base, size] : guest_ram_) {
    std::vector<uint64_t> hosts;
    if (options_.ept_shuffled) {
      if (page > kChunk || base % kChunk || size % kChunk)
        throw std::invalid_argument("hw_assist: the shuffled EPT layout needs guest RAM in whole 2 MiB chunks and "
                                    "EPT pages of at most 2 MiB (RAM at " + hex(base) + ", " + hex(size) + " bytes)");
      const uint64_t n = size / kChunk;
      uint64_t stride = 5;
      while (std::gcd(stride, n) != 1) ++stride;
      for (uint64_t i = 0; i < n; ++i) hosts.push_back(base + ((i * stride + n / 2) % n) * kChunk);
      std::vector<uint8_t> contents(size);
      for (uint64_t off = 0; off < size; off += kPage) std::memcpy(&contents[off], bus.host_frame(base + off), kPage);
      for (uint64_t i = 0; i < n; ++i) {
        for (uint64_t off = 0; off < kChunk; off += kPage)
          std::memcpy(bus.host_frame(hosts[i] + off), &contents[i * kChunk + off], kPage);
        ept.map(base + i * kChunk, hosts[i], kChunk, page);
      }
      core.invalidate_decoded(base, size);
    } else {
      const uint64_t start = base / page * page, end = (base + size + page - 1) / page * page;
      ept.map(start, start, end - start, page);
    }
    chunk_host_.push_back(std::move(hosts));
  }
  ept_ = ept.pointer();
}

void HwAssistVmm::program_vmcs(const CpuState& boot) {
  PhysicalBus& bus = machine_.core.bus();
  const uint64_t vmm = machine_.vmm_memory_base;
  auto must_be_1 = [](VmxCapabilityMsr msr) { return static_cast<uint32_t>(vmx_capability(msr)); };

  vmcs_.set(F::PinBasedControls, must_be_1(IA32_VMX_TRUE_PINBASED_CTLS) | PIN_EXTERNAL_INTERRUPT_EXITING);
  uint32_t proc = must_be_1(IA32_VMX_TRUE_PROCBASED_CTLS) | PROC_UNCONDITIONAL_IO_EXITING | PROC_USE_MSR_BITMAPS |
                  PROC_ACTIVATE_SECONDARY_CONTROLS;
  proc |= options_.tpr_shadow ? PROC_USE_TPR_SHADOW : (PROC_CR8_LOAD_EXITING | PROC_CR8_STORE_EXITING);
  vmcs_.set(F::ProcBasedControls, proc);
  vmcs_.set(F::SecondaryProcBasedControls, PROC2_ENABLE_EPT | PROC2_UNRESTRICTED_GUEST | PROC2_ENABLE_RDTSCP |
                                               PROC2_ENABLE_INVPCID | (options_.vpid ? uint32_t{PROC2_ENABLE_VPID} : 0u));
  vmcs_.set(F::ExitControls, must_be_1(IA32_VMX_TRUE_EXIT_CTLS) | EXIT_HOST_ADDRESS_SPACE_SIZE |
                                 EXIT_ACK_INTERRUPT_ON_EXIT | EXIT_SAVE_EFER | EXIT_LOAD_EFER);
  vmcs_.set(F::EntryControls, must_be_1(IA32_VMX_TRUE_ENTRY_CTLS) | ENTRY_LOAD_EFER);
  vmcs_.set(F::ExceptionBitmap, 0);
  vmcs_.set(F::Vpid, options_.vpid ? kGuestVpid : 0);
  vmcs_.set(F::EptPointer, ept_->encode());
  vmcs_.set(F::MsrBitmaps, vmm + kMsrBitmapsPage * kPage);
  vmcs_.set(F::VirtualApicAddress, vmm + kVirtualApicPage * kPage);
  vmcs_.set(F::TprThreshold, 0);
  vmcs_.set(F::VmcsLinkPointer, ~0ull);
  for (uint64_t p : {kHostPml4Page, kMsrBitmapsPage, kVirtualApicPage})
    std::memset(bus.host_frame(vmm + p * kPage), 0, kPage);
  select_msr(bus, vmm + kMsrBitmapsPage * kPage, kApicBaseMsr, false, true);
  select_msr(bus, vmm + kMsrBitmapsPage * kPage, kTscDeadlineMsr, true, true);
  for (uint32_t msr = kX2apicFirst; msr <= kX2apicLast; ++msr)
    select_msr(bus, vmm + kMsrBitmapsPage * kPage, msr, true, true);

  // The guest: the state the loader left, with the host-owned CR bits set underneath its view.
  save_guest_state(vmcs_, boot);
  vmcs_.set(F::Cr0GuestHostMask, kCr0HostOwned);
  vmcs_.set(F::Cr0ReadShadow, boot.cr0 & kCr0HostOwned);
  vmcs_.set(F::GuestCr0, boot.cr0 | kCr0HostOwned);
  vmcs_.set(F::Cr4GuestHostMask, kCr4HostOwned);
  vmcs_.set(F::Cr4ReadShadow, boot.cr4 & kCr4HostOwned);
  vmcs_.set(F::GuestCr4, boot.cr4 | kCr4HostOwned);
  // A guest that has not loaded TR yet runs on a busy 32-bit TSS descriptor of its own (VM entry
  // needs a usable TR); its first LTR replaces it.
  if (vmcs_.get32(F::GuestTrAccessRights) & kAccessRightsUnusable || (vmcs_.get32(F::GuestTrAccessRights) & 0xF) != 0xB) {
    vmcs_.set(F::GuestTrAccessRights, 0x8B);
    vmcs_.set(F::GuestTrLimit, 0x67);
  }

  // The host: 64-bit, flat, on the VMM's empty tables (no host code runs on the simulated CPU).
  vmcs_.set(F::HostCr0, CR0_PE | CR0_NE | CR0_PG | CR0_ET);
  vmcs_.set(F::HostCr3, vmm + kHostPml4Page * kPage);
  vmcs_.set(F::HostCr4, CR4_PAE | CR4_VMXE);
  vmcs_.set(F::HostEfer, EFER_LME | EFER_LMA);
  vmcs_.set(F::HostCsSelector, 0x08);
  for (F f : {F::HostSsSelector, F::HostDsSelector, F::HostEsSelector, F::HostFsSelector, F::HostGsSelector})
    vmcs_.set(f, 0x10);
  vmcs_.set(F::HostTrSelector, 0x18);
  vmcs_.set(F::HostRip, kHostRip);
}

// ---- World switches ----------------------------------------------------------------------------------

void HwAssistVmm::enter_guest(Core& core) {
  inject_pending_interrupt();
  machine_.nested_paging->set_nested(*ept_, options_.vpid ? kGuestVpid : 0, [this](const EptExit& exit) {
    ept_exit_ = exit;
    return Fault::gp(0);  // abandons the instruction; take_event turns it into the VM exit
  });
  const VmEntryResult entry = vm_entry(vmcs_, core);
  if (entry.entered) return;
  machine_.nested_paging->clear_nested();
  throw std::runtime_error(entry.failure ? "hw_assist: VM entry failed on invalid guest state (qualification " +
                                               std::to_string(entry.failure->qualification) + ")"
                                         : "hw_assist: VM entry failed with VM-instruction error " +
                                               std::to_string(static_cast<unsigned>(entry.error)));
}

void HwAssistVmm::leave_guest(Core& core, const VmExit& exit) {
  vm_exit(vmcs_, core, exit);
  machine_.nested_paging->clear_nested();
}

HwAssistVmm::Completion HwAssistVmm::exit_to_vmm(Core& core, const VmExit& exit) {
  const unsigned reason = static_cast<unsigned>(exit.reason);
  const ExitHandler* handler = reason < handlers_.size() ? &handlers_[reason] : nullptr;
  if (!handler || !handler->handle)
    throw std::runtime_error(std::string("hw_assist: no handler for the VM exit ") +
                             (exit_reason_name(reason) ? exit_reason_name(reason) : "?") + " (reason " +
                             std::to_string(reason) + ") at guest RIP " + hex(core.state().rip));
  exits_.record(exit_reason_name(reason));
  vmexit_cycles_ += costs_.vmexit;
  *handler->cycles += handler->cost;
  vmentry_cycles_ += costs_.vmentry;
  leave_guest(core, exit);
  const Completion completion = (this->*handler->handle)(core, exit);
  enter_guest(core);
  return completion;
}

// The instructions that may exit, and SMSW, which never exits but reads CR0 through its read shadow.
bool HwAssistVmm::wants_before(const Insn& insn, uint64_t) {
  return core_ && (insn.has(kTraitVmxExit) || insn.mnemonic == ZYDIS_MNEMONIC_SMSW);
}

PreExecute HwAssistVmm::before_instruction(Core& core, const Insn& insn) {
  for (;;) {
    const InsnDecision decision = decide_instruction(vmcs_, core, insn);
    switch (decision.action) {
      case NonRootAction::Raise:
        throw decision.fault;
      case NonRootAction::Execute:
        return execute_virtualized(core, insn, decision.virtualized);
      case NonRootAction::Exit:
        ++instruction_exits_;
        switch (exit_to_vmm(core, decision.exit)) {
          case Completion::ExecuteInGuest:
            return execute_for_guest(core, insn);
          case Completion::Decide:
            continue;
          case Completion::Done:
            core.set_next_rip(core.state().rip);  // where the VM entry left the guest
            return PreExecute::Skip;
        }
    }
  }
}

// The VMM carries out the exiting instruction on the guest's state (CPUID answered by the CPU's
// own leaves, port I/O and MSR accesses on the device models), after the VM entry.
PreExecute HwAssistVmm::execute_for_guest(Core& core, const Insn& insn) {
  insn.semantics(core, insn);
  if (insn.has(kTraitSystem)) core.sync_mode();
  return PreExecute::Skip;
}

// Instructions that do not exit but see the VMCS (SDM 26.3): CR reads through the read shadows,
// CR writes that keep host-owned bits, CR8 on the virtual TPR, RDTSC with the TSC offset.
PreExecute HwAssistVmm::execute_virtualized(Core& core, const Insn& insn, Virtualized how) {
  CpuState& s = core.state();
  switch (how) {
    case Virtualized::None:
      return PreExecute::Execute;
    case Virtualized::MovToCr0:
    case Virtualized::MovToCr4: {
      // The instruction runs with the value the processor loads in its source register.
      const unsigned cr = how == Virtualized::MovToCr0 ? 0 : 4, source_reg = insn.op[1].reg;
      const uint64_t source = s.gpr[source_reg];
      s.gpr[source_reg] = cr_value_to_load(vmcs_, cr, cr == 0 ? s.cr0 : s.cr4, source);
      try {
        insn.semantics(core, insn);
      } catch (...) {
        s.gpr[source_reg] = source;
        throw;
      }
      s.gpr[source_reg] = source;
      core.sync_mode();
      return PreExecute::Skip;
    }
    case Virtualized::MovFromCr0:
    case Virtualized::MovFromCr4:
    case Virtualized::Smsw: {
      // The instruction reads the guest's view: the real register with its masked bits shadowed.
      uint64_t& real = how == Virtualized::MovFromCr4 ? s.cr4 : s.cr0;
      const uint64_t saved = real;
      real = guest_cr_value(vmcs_, how == Virtualized::MovFromCr4 ? 4 : 0, saved);
      try {
        insn.semantics(core, insn);
      } catch (...) {
        real = saved;
        throw;
      }
      real = saved;
      return PreExecute::Skip;
    }
    case Virtualized::Clts:
      s.cr0 = cr_value_to_load(vmcs_, 0, s.cr0, s.cr0 & ~uint64_t{CR0_TS});
      core.sync_mode();
      return PreExecute::Skip;
    case Virtualized::Lmsw:
      s.cr0 = lmsw_value_to_load(vmcs_, s.cr0, core.get<uint16_t>(insn, insn.op[0]));
      core.sync_mode();
      return PreExecute::Skip;
    case Virtualized::MovToCr8:
      if (const auto exit = write_virtual_tpr(vmcs_, core.bus(), s.gpr[insn.op[1].reg])) {
        s.rip = core.next_rip();  // trap-like: the exit follows the instruction
        exit_to_vmm(core, *exit);
        core.set_next_rip(s.rip);
      }
      return PreExecute::Skip;
    case Virtualized::MovFromCr8:
      core.set_gpr<uint64_t>(insn.op[0].reg, read_virtual_tpr(vmcs_, core.bus()));
      return PreExecute::Skip;
    case Virtualized::Rdtsc: {
      insn.semantics(core, insn);
      const uint64_t tsc = guest_tsc(vmcs_, (s.gpr[RDX] & 0xFFFFFFFFu) << 32 | (s.gpr[RAX] & 0xFFFFFFFFu));
      s.gpr[RAX] = tsc & 0xFFFFFFFFu;
      s.gpr[RDX] = tsc >> 32;
      return PreExecute::Skip;
    }
  }
  return PreExecute::Execute;
}

// ---- Events ----------------------------------------------------------------------------------------

std::optional<TrapCause> HwAssistVmm::take_event(Core& core, const Event& event) {
  if (ept_exit_) {
    VmExit exit;
    exit.reason = ept_exit_->kind == EptExitKind::Violation ? ExitReason::EptViolation : ExitReason::EptMisconfig;
    exit.qualification = ept_exit_->qualification;
    exit.guest_physical_address = ept_exit_->guest_physical;
    exit.guest_linear_address = ept_exit_->guest_linear;
    exit_to_vmm(core, exit);
    return TrapCause::Mmio;
  }
  switch (event.kind) {
    case EventKind::External:
      exit_to_vmm(core, external_interrupt_exit(vmcs_, event.vector));
      return trap_cause(event);
    case EventKind::Exception:
    case EventKind::SoftwareException:
      if (const auto exit = exception_exit(vmcs_, event, core.current_insn() ? core.current_insn()->length : 0)) {
        exit_to_vmm(core, *exit);
        return trap_cause(event);
      }
      return std::nullopt;  // the guest's own exception: the CPU delivers it through the guest's IDT
    case EventKind::Nmi:
    case EventKind::SoftwareInt:
      return std::nullopt;
  }
  return std::nullopt;
}

void HwAssistVmm::on_instruction_boundary(Core& core) {
  if (const auto exit = interrupt_window_exit(vmcs_, core.state())) exit_to_vmm(core, *exit);
}

// At VM entry: the interrupt the VMM holds goes in when the guest can take it (RFLAGS.IF, no
// blocking by STI or MOV SS), else the VMM asks for an exit when the window opens.
void HwAssistVmm::inject_pending_interrupt() {
  if (!pending_interrupt_) return;
  const bool can_take = (vmcs_.get(F::GuestRflags) & IF) &&
                        !(vmcs_.get32(F::GuestInterruptibility) & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS)) &&
                        !(vmcs_.get32(F::EntryInterruptionInfo) & kInterruptionValid);
  if (can_take) {
    vmcs_.set(F::EntryInterruptionInfo, interruption_info(*pending_interrupt_, InterruptionType::External, false));
    pending_interrupt_.reset();
    ++injected_;
  }
  set_interrupt_window(pending_interrupt_.has_value());
}

void HwAssistVmm::set_interrupt_window(bool open) {
  const uint32_t proc = vmcs_.get32(F::ProcBasedControls);
  vmcs_.set(F::ProcBasedControls, open ? (proc | PROC_INTERRUPT_WINDOW_EXITING) : (proc & ~PROC_INTERRUPT_WINDOW_EXITING));
  if (core_) core_->set_boundary_calls(open);
}

// ---- Handlers ---------------------------------------------------------------------------------------

HwAssistVmm::Completion HwAssistVmm::on_cpuid(Core&, const VmExit&) { return Completion::ExecuteInGuest; }

HwAssistVmm::Completion HwAssistVmm::on_io(Core&, const VmExit&) {
  ++device_accesses_;
  return Completion::ExecuteInGuest;
}

// Under nested paging only CR8 (without the TPR shadow) and writes that change a host-owned bit of
// CR0 or CR4 exit. The guest owns the bit's value in the read shadow from now on.
HwAssistVmm::Completion HwAssistVmm::on_cr_access(Core& core, const VmExit& exit) {
  const unsigned cr = exit.qualification & 0xF, gpr = (exit.qualification >> 8) & 0xF;
  const auto type = static_cast<CrAccessType>((exit.qualification >> 4) & 3);
  if (cr == 8) return Completion::ExecuteInGuest;
  if (type == CrAccessType::MovToCr && (cr == 0 || cr == 4)) {
    const uint64_t mask = vmcs_.get(cr == 0 ? F::Cr0GuestHostMask : F::Cr4GuestHostMask);
    vmcs_.set(cr == 0 ? F::Cr0ReadShadow : F::Cr4ReadShadow, core.state().gpr[gpr] & mask);
    return Completion::Decide;
  }
  throw std::logic_error("hw_assist: a CR access exit (CR" + std::to_string(cr) + ", type " +
                         std::to_string(static_cast<unsigned>(type)) + ") that this VMCS does not select");
}

HwAssistVmm::Completion HwAssistVmm::on_msr(Core& core, const VmExit&) {
  const uint32_t msr = static_cast<uint32_t>(core.state().gpr[RCX]);
  if (msr == kApicBaseMsr || msr == kTscDeadlineMsr || (msr >= kX2apicFirst && msr <= kX2apicLast)) ++device_accesses_;
  return Completion::ExecuteInGuest;
}

// VMCALL and the VMX instructions: no hypercall interface and no guest VMX, so #UD, as on a
// processor without them.
HwAssistVmm::Completion HwAssistVmm::on_vmx_instruction(Core&, const VmExit&) {
  vmcs_.set(F::EntryInterruptionInfo, interruption_info(UD, InterruptionType::HardwareException, false));
  return Completion::Done;
}

HwAssistVmm::Completion HwAssistVmm::on_external_interrupt(Core&, const VmExit& exit) {
  if (pending_interrupt_)
    throw std::logic_error("hw_assist: an external interrupt arrived while another waits for injection");
  pending_interrupt_ = interruption_vector(exit.interruption_info);
  return Completion::Done;
}

HwAssistVmm::Completion HwAssistVmm::on_interrupt_window(Core&, const VmExit&) { return Completion::Done; }

HwAssistVmm::Completion HwAssistVmm::on_ept_violation(Core& core, const VmExit& exit) {
  const uint64_t gpa = exit.guest_physical_address;
  ept_exit_.reset();
  if (is_guest_ram(gpa))
    throw std::logic_error("hw_assist: EPT violation at guest-physical " + hex(gpa) +
                           ", which is guest RAM that the EPT maps with every right");
  const Insn* insn = core.current_insn();
  if (!insn)
    throw std::runtime_error("hw_assist: the guest fetches instructions from device memory at guest-physical " +
                             hex(gpa));
  emulate_mmio(core, *insn, gpa);
  vmcs_.set(F::GuestRip, vmcs_.get(F::GuestRip) + insn->length);
  return Completion::Done;
}

HwAssistVmm::Completion HwAssistVmm::on_ept_misconfig(Core&, const VmExit& exit) {
  throw std::logic_error("hw_assist: EPT misconfiguration at guest-physical " + hex(exit.guest_physical_address) +
                         " (the VMM's EPT tables are wrong)");
}

// Device memory is at the same address for the guest and the host (the EPT leaves it out): a MOV
// to or from it is carried out on the device. Other instructions on device memory are not
// emulated: the run stops naming them.
void HwAssistVmm::emulate_mmio(Core& core, const Insn& insn, uint64_t device_address) {
  const bool store = insn.op[0].kind == OpKind::Mem, load = insn.op[1].kind == OpKind::Mem;
  if (insn.mnemonic != ZYDIS_MNEMONIC_MOV || store == load)
    throw std::runtime_error(std::string("hw_assist: emulating the guest's ") +
                             ZydisMnemonicGetString(static_cast<ZydisMnemonic>(insn.mnemonic)) +
                             " on device memory at guest-physical " + hex(device_address) +
                             " is not implemented (MOV loads and stores are)");
  const unsigned size = insn.op[store ? 0 : 1].size;
  const uint64_t mask = Core::size_mask(size);
  if (store) {
    core.bus().write(device_address, size, core.get<uint64_t>(insn, insn.op[1]) & mask);
  } else {
    const uint64_t value = core.bus().read(device_address, size) & mask;
    switch (size) {
      case 1: core.set<uint8_t>(insn, insn.op[0], static_cast<uint8_t>(value)); break;
      case 2: core.set<uint16_t>(insn, insn.op[0], static_cast<uint16_t>(value)); break;
      case 4: core.set<uint32_t>(insn, insn.op[0], static_cast<uint32_t>(value)); break;
      default: core.set<uint64_t>(insn, insn.op[0], value); break;
    }
  }
  ++mmio_emulated_;
  ++device_accesses_;
}

// ---- Figures ----------------------------------------------------------------------------------------

double HwAssistVmm::direct_fraction() const {
  if (!core_) return 0.0;
  // Instructions that exited retire on the core but were carried out by the VMM; MMIO accesses the
  // VMM emulated never retired there.
  const double retired = static_cast<double>(core_->counters().retired);
  const double emulated = static_cast<double>(instruction_exits_ + mmio_emulated_);
  const double direct = retired - static_cast<double>(instruction_exits_);
  return direct + emulated > 0 ? direct / (direct + emulated) : 0.0;
}

void HwAssistVmm::bind_statistics(stats::Registry& registry) {
  using stats::Unit;
  registry.bind("vmm.hw_assist.injected_interrupts", Unit::Count,
                "external interrupts the VMM injected into the guest at VM entry", &injected_);
  registry.bind("vmm.hw_assist.mmio_emulated", Unit::Count,
                "guest accesses to device memory (EPT violations) the VMM emulated", &mmio_emulated_);
  registry.bind("vmm.hw_assist.device_accesses", Unit::Count,
                "device accesses (port I/O, MMIO, APIC MSRs) the VMM carried out for the guest", &device_accesses_);
}

}  // namespace pgsim::vmm

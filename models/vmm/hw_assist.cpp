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
    // Low MSRs (0..0x1FFF) in the first 1 KiB of each bitmap, high ones (0xC0000000..) in the second.
    const uint64_t byte = bitmaps + offset + (msr >= 0xC0000000u ? 1024 : 0) + (msr & 0x1FFF) / 8;
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
                                                                  "and injected, and the guest's own page faults "
                                                                  "under shadow paging)")),
      shadow_fill_cycles_(cycles_.add_counter("vmm_shadow_fill", "cycles filling shadow page tables on hidden page "
                                                                 "faults (hw_assist without EPT)")),
      shadow_trace_cycles_(cycles_.add_counter("vmm_shadow_trace", "cycles emulating guest writes to its page tables "
                                                                   "(hw_assist without EPT)")) {
  const bool shadow = options.paging == "shadow";
  if (!shadow && !machine.nested_paging)
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
  on(ExitReason::Cpuid, &HwAssistVmm::on_run_as_is, emulate_cycles_, costs.emulate);
  on(ExitReason::IoInstruction, &HwAssistVmm::on_io, io_cycles_, costs.emulate_io);
  on(ExitReason::CrAccess, &HwAssistVmm::on_cr_access, emulate_cycles_, costs.emulate);
  on(ExitReason::Rdmsr, &HwAssistVmm::on_msr, emulate_cycles_, costs.emulate);
  on(ExitReason::Wrmsr, &HwAssistVmm::on_msr, emulate_cycles_, costs.emulate);
  on(ExitReason::Vmcall, &HwAssistVmm::on_vmcall, emulate_cycles_, costs.emulate);
  on(ExitReason::Xsetbv, &HwAssistVmm::on_run_as_is, emulate_cycles_, costs.emulate);
  on(ExitReason::Invd, &HwAssistVmm::on_run_as_is, emulate_cycles_, costs.emulate);
  for (ExitReason r : {ExitReason::Vmclear, ExitReason::Vmlaunch, ExitReason::Vmptrld, ExitReason::Vmptrst,
                       ExitReason::Vmread, ExitReason::Vmresume, ExitReason::Vmwrite, ExitReason::Vmxoff,
                       ExitReason::Vmxon, ExitReason::Invept, ExitReason::Invvpid})
    on(r, &HwAssistVmm::on_vmx_instruction, emulate_cycles_, costs.emulate);
  on(ExitReason::ExternalInterrupt, &HwAssistVmm::on_external_interrupt, interrupt_cycles_, costs.reflect);
  on(ExitReason::InterruptWindow, &HwAssistVmm::on_interrupt_window, interrupt_cycles_, costs.reflect);
  on(ExitReason::EptViolation, &HwAssistVmm::on_ept_violation, mmio_cycles_, costs.emulate_mmio);
  on(ExitReason::EptMisconfig, &HwAssistVmm::on_ept_misconfig, emulate_cycles_, costs.emulate);
  if (shadow) {
    // The #PF handler charges by what the fault was (a fill, a traced write, MMIO, the guest's own).
    on(ExitReason::ExceptionOrNmi, &HwAssistVmm::on_page_fault, emulate_cycles_, 0);
    on(ExitReason::Invlpg, &HwAssistVmm::on_invlpg, emulate_cycles_, costs.emulate);
    on(ExitReason::CrAccess, &HwAssistVmm::on_shadow_cr_access, emulate_cycles_, costs.emulate);
    on(ExitReason::GdtrIdtrAccess, &HwAssistVmm::on_descriptor_table_access, emulate_cycles_, costs.emulate);
    on(ExitReason::LdtrTrAccess, &HwAssistVmm::on_descriptor_table_access, emulate_cycles_, costs.emulate);
  }
}

// ---- Set-up ----------------------------------------------------------------------------------------

void HwAssistVmm::attach(Core& core) {
  core_ = &core;
  vcpu_ = std::make_unique<VirtualCpu>(core);
  vcpu_->set_vmm_memory(machine_.vmm_memory_base, machine_.vmm_memory_size);
  vcpu_->deliver_event = [this](const Event& event) {
    raised_ = RaisedEvent{event, vcpu_->state().rip};
    return true;  // injected at VM entry instead
  };
  if (shadow_paging()) attach_shadow_paging(core);
  else place_guest_ram(core);
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

void move_ram_chunks(isa::PhysicalBus& bus, uint64_t base, uint64_t chunk, const std::vector<uint64_t>& hosts,
                     const std::function<bool(uint64_t paddr, uint64_t size)>& untouched) {
  if (chunk == 0 || chunk % kPage)
    throw std::invalid_argument("move_ram_chunks: the chunk size " + std::to_string(chunk) + " is not whole pages");
  const uint64_t n = hosts.size();
  // A chunk's pages, each where the bus has it (they may lie apart in host memory).
  auto page_of = [&](uint64_t c, uint64_t off) {
    uint8_t* page = bus.host_frame(base + c * chunk + off);
    if (!page) throw std::invalid_argument("move_ram_chunks: " + hex(base + c * chunk + off) + " is not RAM");
    return page;
  };
  static const uint8_t kZeroPage[kPage] = {};
  std::vector<bool> zero(n, true);  // the chunk holds zeros (until it receives something else)
  for (uint64_t c = 0; c < n; ++c) {
    if (untouched && untouched(base + c * chunk, chunk)) continue;
    for (uint64_t off = 0; off < chunk && zero[c]; off += kPage)
      zero[c] = std::memcmp(page_of(c, off), kZeroPage, kPage) == 0;
  }
  std::vector<uint64_t> source(n, n);  // chunk d receives the contents of chunk source[d]
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t d = (hosts[i] - base) / chunk;
    if (hosts[i] < base || (hosts[i] - base) % chunk || d >= n || source[d] != n)
      throw std::invalid_argument("move_ram_chunks: the chunks' new places are not a permutation of them");
    source[d] = i;
  }
  // Chunk `to`, which still holds its own contents, receives those `from` gives page by page
  // (zeros when from_zero).
  auto receive = [&](uint64_t to, auto&& from, bool from_zero) {
    if (from_zero && zero[to]) return;
    for (uint64_t off = 0; off < chunk; off += kPage) {
      if (from_zero) std::memset(page_of(to, off), 0, kPage);
      else std::memcpy(page_of(to, off), from(off), kPage);
    }
  };
  std::vector<bool> done(n, false);
  std::vector<uint8_t> scratch(chunk);
  for (uint64_t start = 0; start < n; ++start) {
    if (done[start] || source[start] == start) continue;
    // The cycle through `start`: its contents go aside, each chunk on the cycle receives its
    // source's, and the last one what went aside.
    if (!zero[start])
      for (uint64_t off = 0; off < chunk; off += kPage) std::memcpy(&scratch[off], page_of(start, off), kPage);
    uint64_t to = start;
    for (; source[to] != start; to = source[to]) {
      const uint64_t from = source[to];
      receive(to, [&](uint64_t off) { return page_of(from, off); }, zero[from]);
      done[to] = true;
    }
    receive(to, [&](uint64_t off) { return &scratch[off]; }, zero[start]);
    done[to] = true;
  }
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
      move_ram_chunks(bus, base, kChunk, hosts, machine_.ram_untouched);
      for (uint64_t i = 0; i < n; ++i) ept.map(base + i * kChunk, hosts[i], kChunk, page);
      core.invalidate_decoded(base, size);
    } else {
      const uint64_t start = base / page * page, end = (base + size + page - 1) / page * page;
      ept.map(start, start, end - start, page);
    }
    chunk_host_.push_back(std::move(hosts));
  }
  ept_ = ept.pointer();
  if (options_.ept_shuffled)  // what the virtual CPU emulates reaches guest RAM where the EPT put it
    vcpu_->host_physical = [this](uint64_t gpa) { return is_guest_ram(gpa) ? host_physical(gpa) : gpa; };
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
  // The guest's DR7 is saved at every exit and loaded at every entry, as KVM does: the exit sets
  // DR7 to 400H (SDM 28.5.1), which would otherwise disarm the guest's breakpoints.
  vmcs_.set(F::ExitControls, must_be_1(IA32_VMX_TRUE_EXIT_CTLS) | EXIT_HOST_ADDRESS_SPACE_SIZE |
                                 EXIT_ACK_INTERRUPT_ON_EXIT | EXIT_SAVE_EFER | EXIT_LOAD_EFER | EXIT_SAVE_DEBUG_CONTROLS);
  vmcs_.set(F::EntryControls, must_be_1(IA32_VMX_TRUE_ENTRY_CTLS) | ENTRY_LOAD_EFER | ENTRY_LOAD_DEBUG_CONTROLS);
  vmcs_.set(F::GuestDr7, boot.dr[7]);
  vmcs_.set(F::ExceptionBitmap, 0);
  vmcs_.set(F::Vpid, options_.vpid ? kGuestVpid : 0);
  if (ept_) vmcs_.set(F::EptPointer, ept_->encode());
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
  if (shadow_paging()) program_shadow_paging(boot);
}

// ---- World switches ----------------------------------------------------------------------------------

void HwAssistVmm::enter_guest(Core& core) {
  inject_pending_interrupt();
  if (ept_)
    machine_.nested_paging->set_nested(*ept_, options_.vpid ? kGuestVpid : 0, [this](const EptExit& exit) {
    ept_exit_ = exit;
    return Fault::gp(0);  // abandons the instruction; take_event turns it into the VM exit
  });
  const VmEntryResult entry = vm_entry(vmcs_, core);
  if (entry.entered) {
    ++vm_entries_;
    return;
  }
  if (ept_) machine_.nested_paging->clear_nested();
  throw std::runtime_error(entry.failure ? "hw_assist: VM entry failed on invalid guest state (qualification " +
                                               std::to_string(entry.failure->qualification) + ")"
                                         : "hw_assist: VM entry failed with VM-instruction error " +
                                               std::to_string(static_cast<unsigned>(entry.error)) +
                                               " (VM-entry interruption information " +
                                               hex(vmcs_.get32(F::EntryInterruptionInfo)) + ", instruction length " +
                                               std::to_string(vmcs_.get32(F::EntryInstructionLength)) + ")");
}

void HwAssistVmm::leave_guest(Core& core, const VmExit& exit) {
  vm_exit(vmcs_, core, exit);
  if (ept_) machine_.nested_paging->clear_nested();
}

HwAssistVmm::Completion HwAssistVmm::exit_to_vmm(Core& core, const VmExit& exit) {
  const unsigned reason = static_cast<unsigned>(exit.reason);
  const ExitHandler* handler = reason < handlers_.size() ? &handlers_[reason] : nullptr;
  if (!handler || !handler->handle) {
    core.shutdown(std::string("hw_assist: the VM exit ") + (exit_reason_name(reason) ? exit_reason_name(reason) : "?") +
                  " (reason " + std::to_string(reason) + ") at guest RIP " + hex(core.state().rip) +
                  " has no handler: not implemented");
    return Completion::Done;
  }
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
  // A handler that returns Decide has changed the VMCS so that the instruction no longer exits;
  // a second exit would loop for ever.
  for (bool decided = false;; decided = true) {
    const InsnDecision decision = decide_instruction(vmcs_, core, insn);
    if (decided && decision.action == NonRootAction::Exit)
      throw std::logic_error("hw_assist: the instruction at guest RIP " + hex(core.state().rip) +
                             " exits again after its exit's handler let the processor decide anew");
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
            ++completed_for_guest_;
            return PreExecute::Skip;
          case Completion::Raised:
            return PreExecute::Raised;  // the guest's handler runs, where the VM entry left RIP
        }
    }
  }
}

// The VMM carries out the exiting instruction on the guest's state (CPUID answered by the CPU's
// own leaves, port I/O and MSR accesses on the device models), after the VM entry.
PreExecute HwAssistVmm::execute_for_guest(Core& core, const Insn& insn) {
  insn.semantics(core, insn);
  if (insn.has(kTraitSystem)) core.sync_mode();
  ++completed_for_guest_;
  return PreExecute::Skip;
}

// Instructions that do not exit but see the VMCS (SDM 26.3), carried out by the VMX model; a MOV
// to CR8 below the TPR threshold exits after it completes.
PreExecute HwAssistVmm::execute_virtualized(Core& core, const Insn& insn, Virtualized how) {
  std::optional<VmExit> tpr_exit;
  if (!isa::vmx::execute_virtualized(vmcs_, core, insn, how, &tpr_exit)) return PreExecute::Execute;
  if (tpr_exit) {
    core.state().rip = core.next_rip();  // trap-like: the exit follows the instruction
    exit_to_vmm(core, *tpr_exit);
    core.set_next_rip(core.state().rip);
  }
  return PreExecute::Skip;
}

// ---- Events ----------------------------------------------------------------------------------------

std::optional<TrapCause> HwAssistVmm::take_event(Core& core, const Event& event) {
  if (ept_exit_) {
    exit_to_vmm(core, ept_exit(*ept_exit_));
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

// An exception the exception bitmap selects, raised while the CPU delivered another event to the
// guest (a #PF on a guest stack page the shadow lacks): the exit records the event, which the
// handler delivers again at the VM entry (SDM 26.2, 28.2.4).
std::optional<TrapCause> HwAssistVmm::take_delivery_fault(Core& core, const Event& delivering, const Event& fault) {
  std::optional<VmExit> exit = exception_exit(vmcs_, fault, 0);
  if (!exit) return std::nullopt;
  set_idt_vectoring(*exit, delivering, 0);
  exit_to_vmm(core, *exit);
  return trap_cause(fault);
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

// Exits whose instruction the virtual CPU carries out on the guest's state as it is, checks
// included: CPUID (the guest's core has the CPUID the VMM presents), XSETBV (the guest's XCR0 is
// the processor's while it runs: the VMM keeps no extended state of its own) and INVD (always
// exits, SDM vol. 3C 26.1.2; the core models no cache contents a guest could lose).
HwAssistVmm::Completion HwAssistVmm::on_run_as_is(Core&, const VmExit&) { return Completion::ExecuteInGuest; }

// The VMM presents a processor without VMX (it does not virtualize VMX for a guest hypervisor, as
// KVM without nesting): CPUID shows none (the guest's core has no GuestVmx), CR4.VMXE is reserved
// (#GP) and every VMX instruction raises #UD, as on such a processor.
HwAssistVmm::Completion HwAssistVmm::refuse_vmx(uint8_t vector) {
  inject_exception(vector, 0);
  ++vmx_refused_;
  return Completion::Raised;
}

void HwAssistVmm::inject_exception(uint8_t vector, uint32_t error_code) {
  const InterruptionType type = InterruptionType::HardwareException;
  vmcs_.set(F::EntryInterruptionInfo, interruption_info(vector, type, injection_has_error_code(vmcs_, type, vector)));
  vmcs_.set(F::EntryExceptionErrorCode, error_code);
}


HwAssistVmm::Completion HwAssistVmm::on_io(Core&, const VmExit&) {
  ++device_accesses_;
  return Completion::ExecuteInGuest;
}

// MOV to CRn's source in an exit handler: the whole register in 64-bit mode, its low 32 bits
// elsewhere (compatibility mode included), RSP from the guest-state area.
uint64_t HwAssistVmm::mov_to_cr_source(const Core& core, unsigned gpr) const {
  const uint64_t reg = exited_guest_gpr(vmcs_, core.state(), gpr);
  return exited_guest_in_64bit_mode(vmcs_) ? reg : reg & 0xFFFFFFFFu;
}

// Under nested paging only CR8 (without the TPR shadow) and writes that change a host-owned bit of
// CR0 or CR4 exit. The guest owns the bit's value in the read shadow from now on.
HwAssistVmm::Completion HwAssistVmm::on_cr_access(Core& core, const VmExit& exit) {
  const unsigned cr = exit.qualification & 0xF, gpr = (exit.qualification >> 8) & 0xF;
  const auto type = static_cast<CrAccessType>((exit.qualification >> 4) & 3);
  if (cr == 8) return Completion::ExecuteInGuest;
  const uint64_t source = mov_to_cr_source(core, gpr);
  if (type == CrAccessType::MovToCr && cr == 4 && (source & CR4_VMXE)) return refuse_vmx(GP);
  if (type == CrAccessType::MovToCr && (cr == 0 || cr == 4)) {
    const uint64_t mask = vmcs_.get(cr == 0 ? F::Cr0GuestHostMask : F::Cr4GuestHostMask);
    vmcs_.set(cr == 0 ? F::Cr0ReadShadow : F::Cr4ReadShadow, source & mask);
    return Completion::Decide;
  }
  throw std::logic_error("hw_assist: a CR access exit (CR" + std::to_string(cr) + ", type " +
                         std::to_string(static_cast<unsigned>(type)) + ") that this VMCS does not select");
}

HwAssistVmm::Completion HwAssistVmm::on_msr(Core& core, const VmExit& exit) {
  const uint32_t msr = static_cast<uint32_t>(core.state().gpr[RCX]);
  if (shadow_paging() && msr == MSR_EFER) return on_efer_access(core, exit);
  if (msr == kApicBaseMsr || msr == kTscDeadlineMsr || (msr >= kX2apicFirst && msr <= kX2apicLast)) ++device_accesses_;
  return Completion::ExecuteInGuest;
}

// VMCALL: no hypercall interface, so #UD, as on a processor without one.
HwAssistVmm::Completion HwAssistVmm::on_vmcall(Core&, const VmExit&) {
  inject_exception(UD, 0);
  return Completion::Raised;
}

// A VMX instruction of the guest (a guest hypervisor): the CPU exits as the SDM says (reasons 19-27,
// 50, 53); on the processor the VMM presents it is invalid.
HwAssistVmm::Completion HwAssistVmm::on_vmx_instruction(Core&, const VmExit&) { return refuse_vmx(UD); }

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
  if (exit.idt_vectoring_info & kInterruptionValid) {
    core.shutdown("hw_assist: the CPU reaches device memory at guest-physical " + hex(gpa) +
                  " while delivering an event to the guest; emulating event delivery is not implemented");
    return Completion::Done;
  }
  emulate_on_vcpu(core, guest_view(core));
  ++mmio_emulated_;
  return Completion::Done;
}

HwAssistVmm::Completion HwAssistVmm::on_ept_misconfig(Core&, const VmExit& exit) {
  throw std::logic_error("hw_assist: EPT misconfiguration at guest-physical " + hex(exit.guest_physical_address) +
                         " (the VMM's EPT tables are wrong)");
}


// ---- Shadow paging (vmm.paging: shadow) -------------------------------------------------------------
//
// First-generation VT-x, as Adams and Agesen measured it: no EPT, so the guest runs on shadow page
// tables (the ShadowPager the deprivileged strategies use), and guest-physical is host-physical.
// Without EPT there is no unrestricted guest either: the real CPU runs the guest in IA-32e mode
// with paging on throughout (compatibility mode while the guest believes it is in 32-bit protected
// mode), on the paging-off shadow (linear = physical) while the guest's own paging is off. The
// guest's paging controls are host-owned (the CR0/CR4 guest/host masks, EFER through the MSR
// bitmaps, CR3 loads and stores, INVLPG) and #PF is in the exception bitmap.

namespace {
// CR0 and CR4 bits the VMM owns without EPT: what VMX operation needs set, and what decides how
// the guest's tables are read (a change drops every shadow).
constexpr uint64_t kCr0ShadowOwned = CR0_PE | CR0_NE | CR0_WP | CR0_PG;
constexpr uint64_t kCr4ShadowOwned = CR4_VMXE | CR4_PSE | CR4_PAE | CR4_PGE | CR4_PCIDE | CR4_LA57 | CR4_SMEP | CR4_SMAP;
constexpr uint64_t kCr4ReadsTables = kCr4ShadowOwned & ~uint64_t{CR4_VMXE};
}  // namespace

void HwAssistVmm::attach_shadow_paging(Core& core) {
  const uint64_t vmm = machine_.vmm_memory_base;
  // The shadow tables take the pages nested paging gives the EPT.
  shadow_ = std::make_unique<ShadowPager>(core.bus(), vmm + kEptTablesPage * kPage,
                                          machine_.vmm_memory_size / kPage - kEptTablesPage,
                                          2 * std::max(1u, options_.shadow_cached_roots), vmm, 0);
  shadow_->keep_guest_user_bit();  // the guest kernel runs at its own CPL 0
  shadow_->on_leaf_changed = [&core](uint64_t linear) { core.invalidate_page_all_contexts(linear); };
  vcpu_->before_write = [this](uint64_t paddr, unsigned size, uint64_t value) { shadow_->guest_write(paddr, size, value); };
  chunk_host_.assign(guest_ram_.size(), {});  // guest-physical is host-physical
  guest_cr3_ = core.state().cr3;
  guest_efer_ = core.state().efer;
}

void HwAssistVmm::program_shadow_paging(const CpuState& boot) {
  const uint64_t vmm = machine_.vmm_memory_base;
  vmcs_.set(F::ProcBasedControls, vmcs_.get32(F::ProcBasedControls) | PROC_CR3_LOAD_EXITING |
                                      PROC_CR3_STORE_EXITING | PROC_INVLPG_EXITING);
  // No EPT, no unrestricted guest, and no VPID (the first VT-x had none: every exit and entry
  // flushes the TLBs). Without enable-INVPCID, INVPCID raises #UD.
  vmcs_.set(F::SecondaryProcBasedControls, PROC2_ENABLE_RDTSCP | PROC2_DESCRIPTOR_TABLE_EXITING);
  vmcs_.set(F::Vpid, 0);
  vmcs_.set(F::ExceptionBitmap, 1u << PF_);
  vmcs_.set(F::PageFaultErrorCodeMask, 0);
  vmcs_.set(F::PageFaultErrorCodeMatch, 0);
  vmcs_.set(F::Cr3TargetCount, 0);
  select_msr(machine_.core.bus(), vmm + kMsrBitmapsPage * kPage, MSR_EFER, true, true);
  vmcs_.set(F::Cr0GuestHostMask, kCr0ShadowOwned);
  vmcs_.set(F::Cr0ReadShadow, boot.cr0 & kCr0ShadowOwned);
  vmcs_.set(F::Cr4GuestHostMask, kCr4ShadowOwned);
  vmcs_.set(F::Cr4ReadShadow, boot.cr4 & kCr4ShadowOwned);
  load_real_paging(boot.cr0, boot.cr4);
  switch_shadow_root();
}

void HwAssistVmm::load_real_paging(uint64_t guest_cr0, uint64_t guest_cr4) {
  vmcs_.set(F::GuestCr0, (guest_cr0 & ~kCr0ShadowOwned) | CR0_PE | CR0_NE | CR0_WP | CR0_PG);
  vmcs_.set(F::GuestCr4, (guest_cr4 & ~kCr4ShadowOwned) | CR4_PAE | CR4_VMXE);
  // XD in the shadows wherever the guest's tables forbid execution; SYSCALL as the guest enabled it.
  vmcs_.set(F::GuestEfer, EFER_LME | EFER_LMA | EFER_NXE | (guest_efer_ & EFER_SCE));
  vmcs_.set(F::EntryControls, vmcs_.get32(F::EntryControls) | ENTRY_IA32E_MODE_GUEST);
}

void HwAssistVmm::switch_shadow_root() {
  const bool paging = vmcs_.get(F::Cr0ReadShadow) & CR0_PG;
  const bool pcide = vmcs_.get(F::Cr4ReadShadow) & CR4_PCIDE;
  const uint64_t space = guest_cr3_ & kPhysFrameMask;
  vmcs_.set(F::GuestCr3, paging ? shadow_->root(space, false) : shadow_->paging_off_root());
  if (pcide) throw std::runtime_error("hw_assist: the guest sets CR4.PCIDE, which shadow paging does not virtualize");
  shadow_->take_dropped();  // every VM entry flushes the TLBs (no VPID)
}

CpuState HwAssistVmm::guest_view(const Core& core) const {
  CpuState g = core.state();
  load_guest_state(vmcs_, g);
  g.cr0 = guest_cr_value(vmcs_, 0, g.cr0);
  g.cr4 = guest_cr_value(vmcs_, 4, g.cr4);
  if (shadow_paging()) {  // the real CPU runs on the shadows, in IA-32e mode
    g.cr3 = guest_cr3_;
    g.efer = guest_efer_;
  }
  return g;
}

void HwAssistVmm::skip_instruction(const VmExit& exit) {
  vmcs_.set(F::GuestRip, vmcs_.get(F::GuestRip) + exit.instruction_length);
}

// A #PF exit: the guest's own tables say what it was.
HwAssistVmm::Completion HwAssistVmm::on_page_fault(Core& core, const VmExit& exit) {
  const uint8_t vector = interruption_vector(exit.interruption_info);
  if (vector != PF_)
    throw std::logic_error("hw_assist: an exception exit for vector " + std::to_string(vector) +
                           ", which the exception bitmap does not select");
  const CpuState g = guest_view(core);
  Event event = Event::from_fault(Fault::pf(exit.qualification, exit.interruption_error_code));
  // The error code tells the guest's user accesses from supervisor ones (the CPU's implicit ones at CPL 3).
  const ShadowFault f = examine_shadow_fault(*shadow_, g, vcpu_->bus(), event, event.error_code & PFERR_U,
                                             {machine_.vmm_memory_base, machine_.vmm_memory_size}, {});
  const bool delivering = exit.idt_vectoring_info & kInterruptionValid;
  if (delivering && (f.kind == ShadowFault::Kind::TracedWrite || f.kind == ShadowFault::Kind::Mmio)) {
    core.shutdown("hw_assist: the CPU writes a guest page table or device memory at " + hex(event.cr2) +
                  " while delivering an event to the guest; emulating event delivery is not implemented");
    return Completion::Done;
  }
  switch (f.kind) {
    case ShadowFault::Kind::Hidden:
      shadow_fill_cycles_ += costs_.shadow_fill;
      if (!fill_shadow(*shadow_, vmcs_.get(F::GuestCr3), g, event.cr2, f, is_guest_ram_2m(event.cr2)))
        switch_shadow_root();  // the pool ran dry: every shadow was dropped
      break;
    case ShadowFault::Kind::TracedWrite:
      shadow_trace_cycles_ += costs_.shadow_trace;
      emulate_on_vcpu(core, g);  // before_write drops the shadow leaves built from the entry
      ++traced_emulated_;
      if (f.page_table) shadow_->note_traced_write(f.walk.paddr >> 12);
      return Completion::Done;
    case ShadowFault::Kind::Mmio:
      mmio_cycles_ += costs_.emulate_mmio;
      emulate_on_vcpu(core, g);
      ++mmio_emulated_;
      return Completion::Done;
    case ShadowFault::Kind::Guest:
      interrupt_cycles_ += costs_.reflect;
      if (delivering_page_fault(exit)) {  // a #PF while delivering a #PF: a double fault (SDM table 6-5)
        vmcs_.set(F::EntryInterruptionInfo, interruption_info(DF_, InterruptionType::HardwareException, true));
        vmcs_.set(F::EntryExceptionErrorCode, 0);
      } else {
        inject_page_fault(core, f.walk.fault);
      }
      return Completion::Done;
    case ShadowFault::Kind::Refused:
      core.shutdown("hw_assist: " + f.refusal);
      return Completion::Done;
  }
  // The access runs again; an event whose delivery faulted is delivered again.
  if (delivering) {
    vmcs_.set(F::EntryInterruptionInfo, exit.idt_vectoring_info & ~(1u << 12));
    vmcs_.set(F::EntryExceptionErrorCode, exit.idt_vectoring_error_code);
    vmcs_.set(F::EntryInstructionLength, exit.instruction_length);
  }
  return Completion::Done;
}

// The virtual CPU carries out the instruction at the guest's RIP that the real CPU could not: an
// access to device memory (which the EPT or the shadow tables leave out; device memory is at the
// same address for the guest and the host), an instruction fetched from it, a write to a traced
// page table. It starts from the guest's state and runs the core's own semantics for one step, so
// every form works as on the real CPU; what the step changed goes back into the VMCS. An exception
// it raises is injected at VM entry, as the real CPU would have raised it.
void HwAssistVmm::emulate_on_vcpu(Core& core, const CpuState& guest) {
  CpuState& v = vcpu_->state();
  v = guest;
  v.rflags &= ~uint64_t{IF};  // one instruction, no interrupt in between
  vcpu_->core().sync_mode();
  raised_.reset();
  const uint64_t device_accesses = vcpu_->device_accesses();
  const auto classes = vcpu_->core().counters().by_class;
  const uint64_t retired = vcpu_->execute(1);
  device_accesses_ += vcpu_->device_accesses() - device_accesses;
  // What the step retired retires on the guest's core, in the guest's ring (the core is in the
  // VMM's now): the guest's instruction count is the same as when it runs without a VMM.
  if (retired) {
    for (unsigned c = 0; c < classes.size(); ++c)
      if (vcpu_->core().counters().by_class[c] != classes[c])
        core.retire_for_guest(static_cast<isa::InsnClass>(c), guest.cpl() == 3);
    completed_for_guest_ += retired;
  }
  if (vcpu_->core().is_shutdown()) {
    core.shutdown("hw_assist: " + vcpu_->core().shutdown_reason());
    return;
  }
  const char* unsupported = v.cr0 != guest.cr0 || v.cr3 != guest.cr3 || v.cr4 != guest.cr4 || v.efer != guest.efer
                                ? "its paging state"
                            : v.cr8 != guest.cr8 || v.apic_base != guest.apic_base ? "the task priority or the APIC base"
                                                                                   : nullptr;
  if (unsupported) {
    core.shutdown(std::string("hw_assist: the instruction at guest RIP ") + hex(guest.rip) +
                  ", which the VMM emulates (it reaches device memory or a traced page table), changes " + unsupported +
                  "; emulating that is not implemented");
    return;
  }
  // The step's state into the VMCS, with the control registers and EFER the real CPU runs the
  // guest with (under shadow paging not the guest's own), which the step left as they were.
  CpuState in_vmcs = core.state();
  load_guest_state(vmcs_, in_vmcs);
  CpuState real = v;
  real.cr0 = in_vmcs.cr0, real.cr3 = in_vmcs.cr3, real.cr4 = in_vmcs.cr4, real.efer = in_vmcs.efer;
  real.rip = raised_ ? raised_->rip : v.rip;
  real.rflags = (v.rflags & ~uint64_t{IF}) | (guest.rflags & IF);
  save_guest_state(vmcs_, real);
  // What VT-x leaves in the CPU's own registers, not in the VMCS.
  CpuState& cpu = core.state();
  cpu.gpr = v.gpr;
  cpu.cr2 = v.cr2;
  for (unsigned r = 0; r < 6; ++r) cpu.dr[r] = v.dr[r];
  cpu.star = v.star, cpu.lstar = v.lstar, cpu.cstar = v.cstar, cpu.fmask = v.fmask;
  cpu.kernel_gs_base = v.kernel_gs_base;
  cpu.tsc_aux = v.tsc_aux;
  cpu.fpu = v.fpu;
  cpu.xcr0 = v.xcr0;
  cpu.pkru = v.pkru, cpu.pkrs = v.pkrs;
  cpu.misc_enable = v.misc_enable;
  cpu.mtrr_def_type = v.mtrr_def_type, cpu.mtrr_var = v.mtrr_var, cpu.mtrr_fixed = v.mtrr_fixed;
  if (raised_) inject_raised(core, *raised_, guest.rip);
}

// An event the emulated step raised, as VM entry injects it: a software interrupt or exception
// (INT n, INT3, INTO) with the instruction's length, a hardware exception with its error code.
void HwAssistVmm::inject_raised(Core& core, const RaisedEvent& raised, uint64_t instruction_rip) {
  const Event& e = raised.event;
  if (e.software()) {
    const InterruptionType type = e.kind == EventKind::SoftwareInt ? InterruptionType::SoftwareInterrupt
                                                                   : InterruptionType::SoftwareException;
    vmcs_.set(F::GuestRip, instruction_rip);
    vmcs_.set(F::EntryInstructionLength, raised.rip - instruction_rip);
    vmcs_.set(F::EntryInterruptionInfo, interruption_info(e.vector, type, false));
    return;
  }
  inject_exception(e.vector, e.error_code);
  if (e.vector == PF_) core.state().cr2 = e.cr2;  // the injection loads it into CR2 (VM entry keeps CR2)
}

bool HwAssistVmm::delivering_page_fault(const VmExit& exit) {
  const uint32_t info = exit.idt_vectoring_info;
  return (info & kInterruptionValid) && interruption_vector(info) == PF_ &&
         ((info >> 8) & 7) == static_cast<uint32_t>(InterruptionType::HardwareException);
}

void HwAssistVmm::inject_page_fault(Core& core, const Fault& fault) {
  vmcs_.set(F::EntryInterruptionInfo, interruption_info(PF_, InterruptionType::HardwareException, true));
  vmcs_.set(F::EntryExceptionErrorCode, fault.error_code);
  core.state().cr2 = fault.cr2;  // the injection loads it into CR2 (VM entry keeps CR2)
}

// Without EPT the real CPU runs the guest in IA-32e mode, which reads 16-byte IDT gates and a
// 64-bit TSS: a 32-bit protected-mode guest's IDT and TSS would be misread at its first event.
// Running such a guest in legacy mode on PAE shadows is not implemented, so its LIDT or LTR stops
// the run saying so; in IA-32e mode, and for the other descriptor-table instructions, the guest's
// own instruction runs.
HwAssistVmm::Completion HwAssistVmm::on_descriptor_table_access(Core& core, const VmExit& exit) {
  const bool loads = ((exit.instruction_info >> 28) & 3) == 3;  // LIDT (reason 46) or LTR (reason 47)
  if (loads && !(guest_efer_ & EFER_LMA)) {
    const bool idt = exit.reason == ExitReason::GdtrIdtrAccess;
    core.shutdown(std::string("hw_assist: the guest loads its ") + (idt ? "IDT (LIDT" : "TSS (LTR") + " at RIP " +
                  hex(vmcs_.get(F::GuestRip)) +
                  ") in 32-bit protected mode; without EPT the real CPU runs the guest in IA-32e mode, and "
                  "running a 32-bit guest in legacy mode on PAE shadows is not implemented: use vmm.paging: nested");
    return Completion::Done;
  }
  return Completion::ExecuteInGuest;
}

HwAssistVmm::Completion HwAssistVmm::on_invlpg(Core&, const VmExit& exit) {
  shadow_->invalidate_page(exit.qualification);
  skip_instruction(exit);
  return Completion::Done;
}

// MOV to and from CR3 see the guest's CR3, not the shadow root; a change of the guest's paging
// bits in CR0 or CR4 rebuilds the shadows.
HwAssistVmm::Completion HwAssistVmm::on_shadow_cr_access(Core& core, const VmExit& exit) {
  const unsigned cr = exit.qualification & 0xF, gpr = (exit.qualification >> 8) & 0xF;
  const auto type = static_cast<CrAccessType>((exit.qualification >> 4) & 3);
  if (cr == 8 || type == CrAccessType::Clts || type == CrAccessType::Lmsw || (cr != 3 && type != CrAccessType::MovToCr))
    return on_cr_access(core, exit);  // the same as under nested paging (or refused there)
  const uint64_t value = mov_to_cr_source(core, gpr);
  if (cr == 3 && type == CrAccessType::MovFromCr) {
    set_exited_guest_gpr(vmcs_, core.state(), gpr, guest_cr3_);
  } else if (cr == 3) {
    guest_cr3_ = value;
    switch_shadow_root();
  } else if (cr == 4 && (value & CR4_VMXE)) {
    return refuse_vmx(GP);
  } else {
    const uint64_t old_cr0 = guest_cr_value(vmcs_, 0, vmcs_.get(F::GuestCr0));
    const uint64_t old_cr4 = guest_cr_value(vmcs_, 4, vmcs_.get(F::GuestCr4));
    const uint64_t cr0 = cr == 0 ? value : old_cr0, cr4 = cr == 4 ? value : old_cr4;
    if (!(cr0 & CR0_PE)) {
      core.shutdown("hw_assist: the guest clears CR0.PE; real mode needs an unrestricted guest, which needs EPT "
                    "(vmm.paging: nested)");
      return Completion::Done;
    }
    guest_efer_ = (cr0 & CR0_PG) && (guest_efer_ & EFER_LME) ? guest_efer_ | EFER_LMA : guest_efer_ & ~uint64_t{EFER_LMA};
    vmcs_.set(F::Cr0ReadShadow, cr0 & kCr0ShadowOwned);
    vmcs_.set(F::Cr4ReadShadow, cr4 & kCr4ShadowOwned);
    if (((cr0 | old_cr0) & CR0_PG) && (((cr0 ^ old_cr0) & (CR0_PG | CR0_WP)) || ((cr4 ^ old_cr4) & kCr4ReadsTables)))
      shadow_->flush_all();  // the guest changed how its tables are read
    load_real_paging(cr0, cr4);
    switch_shadow_root();
  }
  skip_instruction(exit);
  return Completion::Done;
}

// RDMSR and WRMSR of EFER: the guest's own EFER; the real one keeps IA-32e mode.
HwAssistVmm::Completion HwAssistVmm::on_efer_access(Core& core, const VmExit& exit) {
  CpuState& s = core.state();
  if (exit.reason == ExitReason::Rdmsr) {
    s.gpr[RAX] = guest_efer_ & 0xFFFFFFFFu;
    s.gpr[RDX] = guest_efer_ >> 32;
  } else {
    const uint64_t value = (s.gpr[RDX] & 0xFFFFFFFFu) << 32 | (s.gpr[RAX] & 0xFFFFFFFFu);
    guest_efer_ = (value & ~uint64_t{EFER_LMA}) | (guest_efer_ & EFER_LMA);
    load_real_paging(guest_cr_value(vmcs_, 0, vmcs_.get(F::GuestCr0)), guest_cr_value(vmcs_, 4, vmcs_.get(F::GuestCr4)));
  }
  skip_instruction(exit);
  return Completion::Done;
}

bool HwAssistVmm::is_guest_ram_2m(uint64_t linear) const {
  const uint64_t base = linear & ~0x1FFFFFull;
  for (const auto& [start, size] : guest_ram_)
    if (base >= start && base + (2ull << 20) <= start + size) return true;
  return false;
}

// ---- Figures ----------------------------------------------------------------------------------------

double HwAssistVmm::direct_fraction() const {
  if (!core_) return 0.0;
  // The instructions the VMM completed for the guest retire on the core too.
  const double retired = static_cast<double>(core_->counters().retired);
  const double emulated = static_cast<double>(instruction_exits_ + mmio_emulated_ + traced_emulated_);
  const double direct = retired - static_cast<double>(completed_for_guest_);
  return direct + emulated > 0 ? direct / (direct + emulated) : 0.0;
}

void HwAssistVmm::bind_statistics(stats::Registry& registry) {
  using stats::Unit;
  registry.bind("vmm.hw_assist.injected_interrupts", Unit::Count,
                "external interrupts the VMM injected into the guest at VM entry", &injected_);
  registry.bind("vmm.hw_assist.mmio_emulated", Unit::Count,
                "guest accesses to device memory (EPT violations) the VMM emulated", &mmio_emulated_);
  registry.bind("vmm.hw_assist.vmx_refused", Unit::Count,
                "guest VMX instructions (#UD) and CR4.VMXE writes (#GP) refused: the VMM presents a processor "
                "without VMX", &vmx_refused_);
  registry.bind("vmm.hw_assist.device_accesses", Unit::Count,
                "device accesses (port I/O, MMIO, APIC MSRs) the VMM carried out for the guest", &device_accesses_);
  if (!shadow_paging()) return;
  bind_shadow_statistics(registry, shadow_->counters());
  registry.bind("vmm.hw_assist.traced_writes_emulated", Unit::Instructions,
                "guest writes to its write-protected page tables the VMM emulated (shadow paging)", &traced_emulated_);
}

}  // namespace pgsim::vmm

// VMX for guest code: the VMX instructions in VMX root operation (Intel SDM vol. 3, ch. 31; their
// errors: table 31-1), the VMX MSRs and VMX non-root operation of the nested guest, on the VT-x
// model of isa/vmx.
#include "isa/vmx/guest_vmx.h"

#include <Zydis/Zydis.h>

#include <cstring>
#include <stdexcept>

#include "isa/core.h"
#include "isa/decoder.h"
#include "isa/dispatch.h"
#include "isa/system/semantics.h"
#include "isa/vmx/capabilities.h"
#include "isa/vmx/event_exits.h"
#include "isa/vmx/non_root.h"
#include "isa/vmx/transitions.h"

namespace pgsim::isa::vmx {

using E = VmInstructionError;
using F = VmcsField;
using system::require_cpl0;

namespace {

// The arithmetic flags VMsucceed and VMfail set (SDM 31.2).
constexpr uint64_t kVmxStatusFlags = CF | PF | AF | ZF | SF | OF;
constexpr uint32_t kShadowVmcsIndicator = 1u << 31;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// A VMXON or VMCS region address: 4 KiB aligned, within the physical-address width (SDM 31.3).
bool region_address_valid(uint64_t address) {
  return (address & 0xFFF) == 0 && (address >> kMaxPhysAddrBits) == 0;
}

uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
void store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// The register operand of VMREAD, VMWRITE, INVEPT and INVVPID at the operand size (64 bits in
// 64-bit mode, 32 outside it).
uint64_t register_operand(const Core& core, const Insn& i, const Operand& o) {
  return core.state().gpr[o.reg] & Core::size_mask(i.opsize);
}

// The operands of INVEPT and INVVPID: the type (register) and the 128-bit descriptor (memory), and
// whether IA32_VMX_EPT_VPID_CAP offers the type: single-context (1) or all-context (2), the two
// this model has.
struct Invalidation {
  uint64_t type, low, high;
  bool supported;
};
Invalidation invalidation_operands(Core& core, const Insn& i, uint64_t single_context_cap, uint64_t all_context_cap) {
  const Operand& o = i.op[1];
  const auto seg = static_cast<SegReg>(o.seg);
  const uint64_t ea = core.effective_address(i, o);
  Invalidation inv;
  inv.low = core.read<uint64_t>(seg, ea);
  inv.high = core.read<uint64_t>(seg, (ea + 8) & Core::size_mask(i.addrsize));
  inv.type = register_operand(core, i, i.op[0]);
  const uint64_t cap = vmx_capability(IA32_VMX_EPT_VPID_CAP);
  inv.supported = (inv.type == 1 && (cap & single_context_cap)) || (inv.type == 2 && (cap & all_context_cap));
  return inv;
}

}  // namespace

GuestVmx::GuestVmx(Core& core, NestedPagingControl* nested_paging, TrapHook* outer)
    : core_(core), nested_paging_(nested_paging), outer_(outer) {}

// ---- VMsucceed and VMfail (SDM 31.2) ------------------------------------------------------------

void GuestVmx::succeed(Core& core) { core.set_flags(kVmxStatusFlags, 0); }

void GuestVmx::fail_invalid(Core& core) { core.set_flags(kVmxStatusFlags, CF); }

void GuestVmx::fail(Core& core, VmInstructionError error) {
  if (!current_valid()) return fail_invalid(core);
  core.set_flags(kVmxStatusFlags, ZF);
  vmcs_.set(F::VmInstructionError, static_cast<uint32_t>(error));
}

// ---- The VMCS in guest memory ---------------------------------------------------------------------

uint8_t* GuestVmx::region(uint64_t address) const {
  uint8_t* frame = core_.bus().host_frame(address);
  if (!frame)
    throw std::runtime_error("guest VMX: the VMXON or VMCS region at physical " + hex(address) +
                             " is not RAM (device memory as a VMX region is not implemented)");
  return frame;
}

void GuestVmx::write_back() {
  uint8_t* r = region(current_);
  store32(r + kVmcsLaunchStateOffset, vmcs_.launched ? 1 : 0);
  std::memcpy(r + kVmcsFieldsOffset, vmcs_.storage().data(), sizeof(Vmcs::Storage));
  static_assert(kVmcsFieldsOffset + sizeof(Vmcs::Storage) <= 4096, "the VMCS does not fit its 4 KiB region");
  core_.invalidate_decoded(current_, 4096);
}

void GuestVmx::load_current(uint64_t address) {
  const uint8_t* r = region(address);
  std::memcpy(vmcs_.storage().data(), r + kVmcsFieldsOffset, sizeof(Vmcs::Storage));
  vmcs_.launched = load32(r + kVmcsLaunchStateOffset) == 1;
  current_ = address;
}

// ---- MSRs and control registers ---------------------------------------------------------------------

bool GuestVmx::read_msr(uint32_t msr, uint64_t& value) const {
  if (msr == IA32_FEATURE_CONTROL) {
    value = feature_control_;
    return true;
  }
  if (msr < IA32_VMX_BASIC || msr > IA32_VMX_TRUE_ENTRY_CTLS) return false;
  value = vmx_capability(static_cast<VmxCapabilityMsr>(msr));
  return true;
}

bool GuestVmx::write_msr(uint32_t msr, uint64_t value) {
  if (msr == IA32_FEATURE_CONTROL) {
    // Locked until reset; bit 1 (VMX inside SMX) needs SMX, which this processor does not have.
    if ((feature_control_ & FEATURE_CONTROL_LOCK) || (value & ~uint64_t{FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMX_OUTSIDE_SMX}))
      throw Fault::gp(0);
    feature_control_ = value;
    return true;
  }
  if (msr >= IA32_VMX_BASIC && msr <= IA32_VMX_TRUE_ENTRY_CTLS) throw Fault::gp(0);  // read-only
  return false;
}

void GuestVmx::check_cr_write(unsigned cr, uint64_t value) const {
  // In non-root operation the nested guest's CR0 and CR4 are governed by its VMCS (guest/host
  // masks); the fixed bits bind VMX root operation.
  if (!vmx_operation_ || non_root_) return;
  const bool ok = cr == 0 ? cr_fixed_bits_ok(value, vmx_capability(IA32_VMX_CR0_FIXED0), vmx_capability(IA32_VMX_CR0_FIXED1))
                          : cr_fixed_bits_ok(value, vmx_capability(IA32_VMX_CR4_FIXED0), vmx_capability(IA32_VMX_CR4_FIXED1));
  if (!ok) throw Fault::gp(0);
}

// ---- The VMX instructions ----------------------------------------------------------------------------

void GuestVmx::count_instruction(const Insn& insn) {
  ++counters_.instructions;
  ++counters_.instructions_by_mnemonic[Decoder::mnemonic_name(insn.mnemonic)];
}

void GuestVmx::vmxon(Core& core, const Insn& i) {
  const CpuState& s = core.state();
  require_cpl0(core);
  if (vmx_operation_) return fail(core, E::VmxonInRoot);
  // #GP(0) outside VMX operation: CR0/CR4 bits VMX fixes, and IA32_FEATURE_CONTROL locked with VMX
  // outside SMX enabled.
  if (!cr_fixed_bits_ok(s.cr0, vmx_capability(IA32_VMX_CR0_FIXED0), vmx_capability(IA32_VMX_CR0_FIXED1)) ||
      !cr_fixed_bits_ok(s.cr4, vmx_capability(IA32_VMX_CR4_FIXED0), vmx_capability(IA32_VMX_CR4_FIXED1)))
    throw Fault::gp(0);
  if (!(feature_control_ & FEATURE_CONTROL_LOCK) || !(feature_control_ & FEATURE_CONTROL_VMX_OUTSIDE_SMX))
    throw Fault::gp(0);
  const uint64_t address = core.get<uint64_t>(i, i.op[0]);
  if (!region_address_valid(address) || load32(region(address)) != kVmcsRevision) return fail_invalid(core);
  vmxon_region_ = address;
  vmx_operation_ = true;
  current_ = kInvalidPointer;
  succeed(core);
}

void GuestVmx::vmxoff(Core& core, const Insn&) {
  require_cpl0(core);
  if (current_valid()) write_back();  // nothing of a cached VMCS is lost
  vmx_operation_ = false;
  current_ = kInvalidPointer;
  succeed(core);
}

// The VMCS address operand of VMCLEAR and VMPTRLD: nullopt after the VMfail of an address that is
// not 4 KiB aligned or beyond the physical-address width, or that of the VMXON region.
std::optional<uint64_t> GuestVmx::vmcs_operand(Core& core, const Insn& i, VmInstructionError invalid,
                                               VmInstructionError vmxon_region) {
  require_cpl0(core);
  const uint64_t address = core.get<uint64_t>(i, i.op[0]);
  if (!region_address_valid(address)) fail(core, invalid);
  else if (address == vmxon_region_) fail(core, vmxon_region);
  else return address;
  return std::nullopt;
}

void GuestVmx::vmclear(Core& core, const Insn& i) {
  const auto operand = vmcs_operand(core, i, E::VmclearInvalidAddress, E::VmclearVmxonPointer);
  if (!operand) return;
  const uint64_t address = *operand;
  if (address == current_) {
    vmcs_.launched = false;
    write_back();
    current_ = kInvalidPointer;
  } else {
    store32(region(address) + kVmcsLaunchStateOffset, 0);
  }
  succeed(core);
}

void GuestVmx::vmptrld(Core& core, const Insn& i) {
  const auto operand = vmcs_operand(core, i, E::VmptrldInvalidAddress, E::VmptrldVmxonPointer);
  if (!operand) return;
  const uint64_t address = *operand;
  const uint32_t revision = load32(region(address));
  // VMCS shadowing is not offered: a shadow-VMCS indicator is an incorrect revision.
  if ((revision & ~kShadowVmcsIndicator) != kVmcsRevision || (revision & kShadowVmcsIndicator))
    return fail(core, E::VmptrldIncorrectRevision);
  if (address != current_) {
    if (current_valid()) write_back();
    load_current(address);
  }
  succeed(core);
}

void GuestVmx::vmptrst(Core& core, const Insn& i) {
  require_cpl0(core);
  core.set<uint64_t>(i, i.op[0], current_);
  succeed(core);
}

void GuestVmx::vmread(Core& core, const Insn& i) {
  require_cpl0(core);
  if (!current_valid()) return fail_invalid(core);
  const uint64_t encoding = register_operand(core, i, i.op[1]);
  uint64_t value = 0;
  if ((encoding >> 32) || vmcs_.read(static_cast<uint32_t>(encoding), &value) != VmcsAccess::Ok)
    return fail(core, E::UnsupportedVmcsComponent);
  if (i.opsize == 8) core.set<uint64_t>(i, i.op[0], value);
  else core.set<uint32_t>(i, i.op[0], static_cast<uint32_t>(value));
  succeed(core);
}

void GuestVmx::vmwrite(Core& core, const Insn& i) {
  require_cpl0(core);
  const uint64_t value = i.opsize == 8 ? core.get<uint64_t>(i, i.op[1]) : core.get<uint32_t>(i, i.op[1]);
  if (!current_valid()) return fail_invalid(core);
  const uint64_t encoding = register_operand(core, i, i.op[0]);
  const VmcsAccess access = (encoding >> 32) ? VmcsAccess::Unsupported : vmcs_.write(static_cast<uint32_t>(encoding), value);
  if (access != VmcsAccess::Ok) return fail(core, static_cast<E>(access));
  succeed(core);
}

void GuestVmx::vmlaunch(Core& core, const Insn&) { enter(core, false); }
void GuestVmx::vmresume(Core& core, const Insn&) { enter(core, true); }

// VMLAUNCH and VMRESUME (SDM vol. 3, ch. 31; VM entry: ch. 27, through transitions.h vm_entry).
void GuestVmx::enter(Core& core, bool resume) {
  require_cpl0(core);
  auto refuse = [&](VmInstructionError error) {
    ++counters_.entry_failures;
    fail(core, error);
  };
  if (!current_valid()) {
    ++counters_.entry_failures;
    return fail_invalid(core);
  }
  if (!resume && vmcs_.launched) return refuse(E::VmlaunchNonClearVmcs);
  if (resume && !vmcs_.launched) return refuse(E::VmresumeNonLaunchedVmcs);
  // The nested guest's EPT is in force before the entry delivers an injected event through its IDT.
  use_nested_ept(vmcs_.proc2(PROC2_ENABLE_EPT) && EptPointer::decode(vmcs_.get(F::EptPointer)));
  const VmEntryResult entry = vm_entry(vmcs_, core);
  if (!entry.entered) {
    use_nested_ept(false);
    if (!entry.failure) return refuse(entry.error);
    // Invalid guest state: a VM exit to HOST_RIP with reason 33 and bit 31 (SDM 27.8).
    ++counters_.entry_failures;
    ++counters_.exits;
    ++counters_.exits_by_reason[exit_reason_name(entry.failure->reason)];
    core.set_next_rip(core.state().rip);
    return;
  }
  if (!resume) vmcs_.launched = true;
  non_root_ = true;
  ++counters_.entries;
  // Without EPT the MMU does not tag the nested guest's translations: none of the host's is kept.
  if (!nested_ept_) core.flush_tlbs(true);
  core.set_boundary_calls(vmcs_.proc(PROC_INTERRUPT_WINDOW_EXITING));
  core.set_next_rip(core.state().rip);  // the guest's RIP, as the entry loaded it
}

void GuestVmx::use_nested_ept(bool on) {
  if (on == nested_ept_) return;
  if (on && !nested_paging_)
    throw std::runtime_error("guest VMX: the nested guest enables EPT, but this machine's MMU has no nested paging");
  const bool vpid = vmcs_.proc2(PROC2_ENABLE_VPID);
  if (on) {
    nested_paging_->set_nested(*EptPointer::decode(vmcs_.get(F::EptPointer)), vpid ? vmcs_.get(F::Vpid) : 0,
                               [this](const EptExit& exit) {
                                 ept_exit_ = exit;
                                 return Fault::gp(0);  // abandons the access; on_event takes the exit
                               });
  } else {
    nested_paging_->clear_nested();
  }
  // Without VPIDs host and nested guest share VPID 0: neither keeps the other's translations.
  if (!vpid) nested_paging_->invalidate_vpid(0);
  nested_ept_ = on;
}

void GuestVmx::invalidate_all_contexts(Core& core) {
  if (nested_paging_) nested_paging_->invalidate_ept();
  else core.flush_tlbs(true);
}

// INVEPT (SDM vol. 3, ch. 31; 29.4.3.1): single-context (1) and all-context (2), as
// IA32_VMX_EPT_VPID_CAP reports. The model drops every guest-physical and combined mapping for
// either, which the SDM allows (an invalidation may drop more than it must).
void GuestVmx::invept(Core& core, const Insn& i) {
  require_cpl0(core);
  const Invalidation inv = invalidation_operands(core, i, EPT_CAP_INVEPT_SINGLE_CONTEXT, EPT_CAP_INVEPT_ALL_CONTEXT);
  if (!inv.supported || (inv.type == 1 && !EptPointer::decode(inv.low))) return fail(core, E::InvalidInveptInvvpidOperand);
  invalidate_all_contexts(core);
  succeed(core);
}

// INVVPID: single-context (1) and all-context (2), as IA32_VMX_EPT_VPID_CAP reports; the
// descriptor's bits 63:16 are reserved, and single-context needs a VPID other than 0.
void GuestVmx::invvpid(Core& core, const Insn& i) {
  require_cpl0(core);
  const Invalidation inv = invalidation_operands(core, i, VPID_CAP_INVVPID_SINGLE_CONTEXT, VPID_CAP_INVVPID_ALL_CONTEXT);
  const uint64_t vpid = inv.low & 0xFFFF;
  if (!inv.supported || (inv.low >> 16) || (inv.type == 1 && vpid == 0)) return fail(core, E::InvalidInveptInvvpidOperand);
  if (inv.type == 1 && nested_paging_) nested_paging_->invalidate_vpid(static_cast<uint16_t>(vpid));
  else invalidate_all_contexts(core);
  succeed(core);
}

// ---- VMX non-root operation ----------------------------------------------------------------------------

void GuestVmx::exit_to_host(Core& core, const VmExit& exit) {
  vm_exit(vmcs_, core, exit);  // exit information, guest state saved, host state loaded
  const bool had_ept = nested_ept_;
  use_nested_ept(false);
  if (!had_ept) core.flush_tlbs(true);
  non_root_ = false;
  core.set_boundary_calls(false);
  ++counters_.exits;
  ++counters_.exits_by_reason[exit_reason_name(exit.reason)];
}

bool GuestVmx::wants_before(const Insn& insn, uint64_t paddr) {
  // The instructions that may exit (and SMSW, which reads CR0 through its read shadow) are marked
  // once; outside non-root operation they go on to the outer hook, which the platform puts here
  // only when it watches no instruction of its own (the native strategy).
  return insn.has(kTraitVmxExit) || insn.mnemonic == ZYDIS_MNEMONIC_SMSW || (outer_ && outer_->wants_before(insn, paddr));
}

PreExecute GuestVmx::before_instruction(Core& core, const Insn& insn) {
  if (!non_root_) return outer_ ? outer_->before_instruction(core, insn) : PreExecute::Execute;
  const InsnDecision decision = decide_instruction(vmcs_, core, insn);
  switch (decision.action) {
    case NonRootAction::Raise:
      throw decision.fault;
    case NonRootAction::Execute: {
      std::optional<VmExit> tpr_exit;
      if (!execute_virtualized(vmcs_, core, insn, decision.virtualized, &tpr_exit)) return PreExecute::Execute;
      if (tpr_exit) {
        core.state().rip = core.next_rip();  // trap-like: the exit follows the instruction
        exit_to_host(core, *tpr_exit);
        core.set_next_rip(core.state().rip);
      }
      return PreExecute::Skip;
    }
    case NonRootAction::Exit:
      exit_to_host(core, decision.exit);  // the guest RIP saved is the instruction's
      core.set_next_rip(core.state().rip);
      return PreExecute::Skip;
  }
  return PreExecute::Execute;
}

void GuestVmx::after_instruction(Core& core, const Insn& insn) {
  if (outer_ && !non_root_) outer_->after_instruction(core, insn);
}

bool GuestVmx::on_event(Core& core, const Event& event) {
  if (!non_root_) return outer_ && outer_->on_event(core, event);
  if (ept_exit_) {
    const VmExit exit = ept_exit(*ept_exit_);
    ept_exit_.reset();
    exit_to_host(core, exit);
    return true;
  }
  switch (event.kind) {
    case EventKind::External:
      if (!vmcs_.pin(PIN_EXTERNAL_INTERRUPT_EXITING)) return false;  // the nested guest's own
      if (!vmcs_.exit_control(EXIT_ACK_INTERRUPT_ON_EXIT))
        throw std::runtime_error("guest VMX: external-interrupt exiting without \"acknowledge interrupt on exit\" "
                                 "is not implemented (the CPU has already acknowledged vector " +
                                 std::to_string(event.vector) + ")");
      exit_to_host(core, external_interrupt_exit(vmcs_, event.vector));
      return true;
    case EventKind::Exception:
    case EventKind::SoftwareException:
      if (const auto exit = exception_exit(vmcs_, event, core.current_insn() ? core.current_insn()->length : 0)) {
        exit_to_host(core, *exit);
        return true;
      }
      return false;  // delivered through the nested guest's IDT
    case EventKind::Nmi:
      if (vmcs_.pin(PIN_NMI_EXITING)) throw std::runtime_error("guest VMX: NMI exiting is not implemented");
      return false;
    case EventKind::SoftwareInt:
      return false;
  }
  return false;
}

// A fault while the CPU delivered an event to the nested guest (an EPT violation on its IDT or
// stack, or an exception the bitmap selects): the exit records the event (SDM 28.2.4).
bool GuestVmx::on_delivery_fault(Core& core, const Event& delivering, const Event& fault) {
  if (!non_root_) return outer_ && outer_->on_delivery_fault(core, delivering, fault);
  std::optional<VmExit> exit = ept_exit_ ? std::optional<VmExit>(ept_exit(*ept_exit_)) : exception_exit(vmcs_, fault, 0);
  ept_exit_.reset();
  if (!exit) return false;
  set_idt_vectoring(*exit, delivering, 0);
  exit_to_host(core, *exit);
  return true;
}

void GuestVmx::on_instruction_boundary(Core& core) {
  if (!non_root_) {
    if (outer_) outer_->on_instruction_boundary(core);
    return;
  }
  if (const auto exit = interrupt_window_exit(vmcs_, core.state())) exit_to_host(core, *exit);
}

// ---- Registration ----------------------------------------------------------------------------------------

namespace {

// The checks every VMX instruction makes before anything else (SDM ch. 31): #UD on a processor
// without VMX, outside VMX operation (VMXON: with CR4.VMXE clear), in real, virtual-8086 and
// compatibility mode.
template <void (GuestVmx::*Semantics)(Core&, const Insn&), bool Vmxon = false>
void vmx_instruction(Core& core, const Insn& insn) {
  GuestVmx* vmx = system_config(core).vmx;
  if (!vmx) throw Fault::ud();
  require_vmx_mode(core.state());
  if (Vmxon ? !(core.state().cr4 & CR4_VMXE) : !vmx->in_vmx_operation()) throw Fault::ud();
  vmx->count_instruction(insn);
  (vmx->*Semantics)(core, insn);
}

}  // namespace

void register_vmx_instructions(Dispatch& d) {
  constexpr InsnClass S = InsnClass::System;
  const InsnTraits t = traits(kTraitVmxExit);
  d.add(ZYDIS_MNEMONIC_VMXON, S, &vmx_instruction<&GuestVmx::vmxon, true>, t);
  d.add(ZYDIS_MNEMONIC_VMXOFF, S, &vmx_instruction<&GuestVmx::vmxoff>, t);
  d.add(ZYDIS_MNEMONIC_VMCLEAR, S, &vmx_instruction<&GuestVmx::vmclear>, t);
  d.add(ZYDIS_MNEMONIC_VMPTRLD, S, &vmx_instruction<&GuestVmx::vmptrld>, t);
  d.add(ZYDIS_MNEMONIC_VMPTRST, S, &vmx_instruction<&GuestVmx::vmptrst>, t);
  d.add(ZYDIS_MNEMONIC_VMREAD, S, &vmx_instruction<&GuestVmx::vmread>, t);
  d.add(ZYDIS_MNEMONIC_VMWRITE, S, &vmx_instruction<&GuestVmx::vmwrite>, t);
  d.add(ZYDIS_MNEMONIC_VMLAUNCH, S, &vmx_instruction<&GuestVmx::vmlaunch>, t);
  d.add(ZYDIS_MNEMONIC_VMRESUME, S, &vmx_instruction<&GuestVmx::vmresume>, t);
  d.add(ZYDIS_MNEMONIC_INVEPT, S, &vmx_instruction<&GuestVmx::invept>, t);
  d.add(ZYDIS_MNEMONIC_INVVPID, S, &vmx_instruction<&GuestVmx::invvpid>, t);
}

}  // namespace pgsim::isa::vmx

// VM entry and VM exit (Intel SDM vol. 3: 27.2 checks on controls and host state, 27.3 guest
// state, 27.6 event injection, 27.8 VM-entry failures; 28.2 exit information, 28.3 saving guest
// state, 28.5 loading host state).
#include "isa/vmx/transitions.h"

#include <stdexcept>

#include "isa/core.h"
#include "isa/system/events.h"
#include "isa/system/paging.h"
#include "isa/vmx/capabilities.h"
#include "isa/vmx/non_root.h"

namespace pgsim::isa::vmx {
namespace {

using F = VmcsField;
using E = VmInstructionError;

// ---- Shared predicates ------------------------------------------------------------------------------

bool page_aligned_physical(uint64_t address) { return (address & 0xFFF) == 0 && (address >> kMaxPhysAddrBits) == 0; }

// Each of the eight PAT entries is UC, WC, WT, WP, WB or UC- (SDM 27.2.2, 27.3.1.1).
bool pat_valid(uint64_t pat) {
  for (unsigned k = 0; k < 8; ++k) {
    const unsigned type = (pat >> (8 * k)) & 0xFF;
    if (type == 2 || type == 3 || type > 7) return false;
  }
  return true;
}

constexpr uint64_t kEferDefined = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;

// A usable segment's limit agrees with G: G = 0 needs limit[31:20] = 0, G = 1 needs limit[11:0]
// all ones (SDM 27.3.1.2).
bool limit_agrees_with_granularity(uint32_t limit, uint32_t ar) {
  const bool g = ar & 0x8000;
  if (!g && (limit >> 20)) return false;
  if (g && (limit & 0xFFF) != 0xFFF) return false;
  return true;
}
// Access-rights bits 11:8 and 31:17 are reserved.
bool ar_reserved_clear(uint32_t ar) { return (ar & 0xFFFE0F00u) == 0; }

uint32_t event_error_code_vectors() {
  return (1u << DF_) | (1u << TS) | (1u << NP) | (1u << SS_) | (1u << GP) | (1u << PF_) | (1u << AC_);
}

// ---- 27.2.1: VM-execution, VM-exit and VM-entry control fields -----------------------------------------

bool execution_controls_valid(const Vmcs& vmcs, PhysicalBus& bus) {
  const uint32_t pin = vmcs.get32(F::PinBasedControls), proc = vmcs.get32(F::ProcBasedControls);
  if (!controls_allowed(pin, vmx_capability(IA32_VMX_TRUE_PINBASED_CTLS))) return false;
  if (!controls_allowed(proc, vmx_capability(IA32_VMX_TRUE_PROCBASED_CTLS))) return false;
  if ((proc & PROC_ACTIVATE_SECONDARY_CONTROLS) &&
      !controls_allowed(vmcs.get32(F::SecondaryProcBasedControls), vmx_capability(IA32_VMX_PROCBASED_CTLS2)))
    return false;
  if (vmcs.get32(F::Cr3TargetCount) > kNumCr3Targets) return false;
  if (vmcs.proc(PROC_USE_IO_BITMAPS) &&
      !(page_aligned_physical(vmcs.get(F::IoBitmapA)) && page_aligned_physical(vmcs.get(F::IoBitmapB))))
    return false;
  if (vmcs.proc(PROC_USE_MSR_BITMAPS) && !page_aligned_physical(vmcs.get(F::MsrBitmaps))) return false;
  if (vmcs.proc(PROC_USE_TPR_SHADOW)) {
    if (!page_aligned_physical(vmcs.get(F::VirtualApicAddress))) return false;
    const uint32_t threshold = vmcs.get32(F::TprThreshold);
    if (!vmcs.proc2(PROC2_VIRTUAL_INTERRUPT_DELIVERY) && (threshold >> 4)) return false;
    if (!vmcs.proc2(PROC2_VIRTUALIZE_APIC_ACCESSES) && (threshold & 0xF) > read_virtual_tpr(vmcs, bus)) return false;
  }
  if (!vmcs.pin(PIN_NMI_EXITING) && vmcs.pin(PIN_VIRTUAL_NMIS)) return false;
  if (!vmcs.pin(PIN_VIRTUAL_NMIS) && vmcs.proc(PROC_NMI_WINDOW_EXITING)) return false;
  if (vmcs.proc2(PROC2_ENABLE_EPT)) {
    // EPTP (25.6.11): a supported memory type in 2:0, page-walk length - 1 = 3 in 5:3, the A/D
    // enable in 6 only if supported, bits 11:7 and beyond the physical-address width clear.
    const uint64_t eptp = vmcs.get(F::EptPointer), cap = vmx_capability(IA32_VMX_EPT_VPID_CAP);
    const uint64_t type = eptp & 7;
    if (!((type == kEptpMemoryTypeUc && (cap & EPT_CAP_MEMORY_TYPE_UC)) ||
          (type == kEptpMemoryTypeWb && (cap & EPT_CAP_MEMORY_TYPE_WB))))
      return false;
    if (((eptp >> 3) & 7) != 3) return false;
    if ((eptp & (1u << 6)) && !(cap & EPT_CAP_ACCESSED_DIRTY)) return false;
    if ((eptp & 0xF80) || (eptp >> kMaxPhysAddrBits)) return false;
  }
  if (vmcs.proc2(PROC2_ENABLE_VPID) && vmcs.get(F::Vpid) == 0) return false;
  if (vmcs.proc2(PROC2_UNRESTRICTED_GUEST) && !vmcs.proc2(PROC2_ENABLE_EPT)) return false;
  return true;
}

}  // namespace

bool injection_has_error_code(const Vmcs& vmcs, InterruptionType type, uint8_t vector) {
  return type == InterruptionType::HardwareException && (vmcs.get(F::GuestCr0) & CR0_PE) && vector < 32 &&
         ((event_error_code_vectors() >> vector) & 1);
}

namespace {

// 27.2.1.3: the VM-entry interruption-information field.
bool entry_event_valid(const Vmcs& vmcs) {
  const uint32_t info = vmcs.get32(F::EntryInterruptionInfo);
  if (!(info & kInterruptionValid)) return true;
  const InterruptionType type = interruption_type(info);
  const uint8_t vector = interruption_vector(info);
  if (static_cast<unsigned>(type) == 1 || type == InterruptionType::Other) return false;  // reserved; no MTF
  if (type == InterruptionType::Nmi && vector != NMI) return false;
  if (type == InterruptionType::HardwareException && vector > 31) return false;
  const bool needs_error_code = injection_has_error_code(vmcs, type, vector);
  if (bool(info & kInterruptionErrorCodeValid) != needs_error_code) return false;
  if (info & 0x7FFFF000u) return false;  // bits 30:12 reserved
  // Bits 31:16 of the error code are 0 (the SDM since SGX; earlier editions said 31:15, which
  // would refuse #GP(0xFFFC), an error code the processor itself delivers).
  if (needs_error_code && (vmcs.get32(F::EntryExceptionErrorCode) & 0xFFFF0000u)) return false;
  const bool software = type == InterruptionType::SoftwareInterrupt ||
                        type == InterruptionType::PrivilegedSoftwareException ||
                        type == InterruptionType::SoftwareException;
  const uint32_t length = vmcs.get32(F::EntryInstructionLength);
  if (software && (length < 1 || length > 15)) return false;
  return true;
}

bool exit_and_entry_controls_valid(const Vmcs& vmcs) {
  if (!controls_allowed(vmcs.get32(F::ExitControls), vmx_capability(IA32_VMX_TRUE_EXIT_CTLS))) return false;
  if (!controls_allowed(vmcs.get32(F::EntryControls), vmx_capability(IA32_VMX_TRUE_ENTRY_CTLS))) return false;
  return entry_event_valid(vmcs);
}

void refuse_msr_lists(const Vmcs& vmcs) {
  if (vmcs.get32(F::EntryMsrLoadCount) || vmcs.get32(F::ExitMsrStoreCount) || vmcs.get32(F::ExitMsrLoadCount))
    throw std::runtime_error("VMX model: VM-entry/VM-exit MSR-load and MSR-store lists are not implemented "
                             "(the VMCS has a nonzero MSR count)");
}

// ---- Guest-state helpers ---------------------------------------------------------------------------

bool segment_checks(const Vmcs& vmcs, const CpuState& g, bool ia32e, bool unrestricted) {
  auto ar = [&](const GuestSegmentFields& f) { return vmcs.get32(f.access_rights); };
  auto usable = [&](const GuestSegmentFields& f) { return !(ar(f) & kAccessRightsUnusable); };
  const GuestSegmentFields& cs = guest_segment_fields(CS);
  const GuestSegmentFields& ss = guest_segment_fields(SS);
  // Selectors (27.3.1.2).
  if (g.tr.selector & 4) return false;
  if (usable(kGuestLdtrFields) && (g.ldtr.selector & 4)) return false;
  if (!unrestricted && (g.seg[SS].selector & 3) != (g.seg[CS].selector & 3)) return false;
  // Bases.
  if (!is_canonical(g, g.tr.base) || !is_canonical(g, g.seg[FS].base) || !is_canonical(g, g.seg[GS].base)) return false;
  if (usable(kGuestLdtrFields) && !is_canonical(g, g.ldtr.base)) return false;
  if (g.seg[CS].base >> 32) return false;
  for (SegReg r : {SS, DS, ES}) {
    if (usable(guest_segment_fields(r)) && (g.seg[r].base >> 32)) return false;
  }
  // CS.
  const uint32_t cs_ar = ar(cs), ss_ar = ar(ss);
  const unsigned cs_type = cs_ar & 0xF, cs_dpl = (cs_ar >> 5) & 3, ss_dpl = (ss_ar >> 5) & 3;
  const bool cs_type_ok = cs_type == 9 || cs_type == 11 || cs_type == 13 || cs_type == 15 || (unrestricted && cs_type == 3);
  if (!cs_type_ok || !(cs_ar & 0x10) || !(cs_ar & 0x80) || !ar_reserved_clear(cs_ar) || !usable(cs)) return false;
  if ((cs_type == 9 || cs_type == 11) && cs_dpl != ss_dpl) return false;
  if ((cs_type == 13 || cs_type == 15) && cs_dpl > ss_dpl) return false;
  if (cs_type == 3 && cs_dpl != 0) return false;
  if (ia32e && (cs_ar & 0x2000) && (cs_ar & 0x4000)) return false;
  if (!limit_agrees_with_granularity(g.seg[CS].limit, cs_ar)) return false;
  // SS.
  if (usable(ss)) {
    const unsigned type = ss_ar & 0xF;
    if ((type != 3 && type != 7) || !(ss_ar & 0x10) || !(ss_ar & 0x80) || !ar_reserved_clear(ss_ar)) return false;
    if (!limit_agrees_with_granularity(g.seg[SS].limit, ss_ar)) return false;
  }
  if (!unrestricted && ss_dpl != (g.seg[SS].selector & 3u)) return false;
  if ((cs_type == 3 || !(g.cr0 & CR0_PE)) && ss_dpl != 0) return false;
  // DS, ES, FS, GS.
  for (SegReg r : {DS, ES, FS, GS}) {
    const GuestSegmentFields& f = guest_segment_fields(r);
    if (!usable(f)) continue;
    const uint32_t a = ar(f);
    const unsigned type = a & 0xF, dpl = (a >> 5) & 3;
    if (!(type & 1) || ((type & 8) && !(type & 2)) || !(a & 0x10) || !(a & 0x80) || !ar_reserved_clear(a)) return false;
    if (!unrestricted && type <= 11 && dpl < (g.seg[r].selector & 3u)) return false;
    if (!limit_agrees_with_granularity(g.seg[r].limit, a)) return false;
  }
  // TR and LDTR.
  const uint32_t tr_ar = ar(kGuestTrFields);
  const unsigned tr_type = tr_ar & 0xF;
  if (ia32e ? tr_type != 11 : (tr_type != 3 && tr_type != 11)) return false;
  if ((tr_ar & 0x10) || !(tr_ar & 0x80) || !usable(kGuestTrFields) || !ar_reserved_clear(tr_ar)) return false;
  if (!limit_agrees_with_granularity(g.tr.limit, tr_ar)) return false;
  if (usable(kGuestLdtrFields)) {
    const uint32_t a = ar(kGuestLdtrFields);
    if ((a & 0xF) != 2 || (a & 0x10) || !(a & 0x80) || !ar_reserved_clear(a)) return false;
    if (!limit_agrees_with_granularity(g.ldtr.limit, a)) return false;
  }
  return true;
}

}  // namespace

// ---- Access rights ------------------------------------------------------------------------------------

uint32_t access_rights_of(const Segment& seg, bool can_be_unusable) {
  if (can_be_unusable && !seg.present()) return seg.attr | kAccessRightsUnusable;
  return seg.attr;
}

Segment segment_from_vmcs(uint16_t selector, uint64_t base, uint32_t limit, uint32_t access_rights) {
  Segment s{selector, base, limit, static_cast<uint16_t>(access_rights & 0xF0FF)};
  if (access_rights & kAccessRightsUnusable) s.attr &= ~0x80;  // the model's null segment: not present
  return s;
}

// ---- Checks ----------------------------------------------------------------------------------------------

VmInstructionError check_controls(const Vmcs& vmcs, PhysicalBus& bus) {
  if (!execution_controls_valid(vmcs, bus) || !exit_and_entry_controls_valid(vmcs)) return E::EntryInvalidControlFields;
  return E::None;
}

VmInstructionError check_host_state(const Vmcs& vmcs, const CpuState& current) {
  const bool host64 = vmcs.exit_control(EXIT_HOST_ADDRESS_SPACE_SIZE);
  const uint64_t cr0 = vmcs.get(F::HostCr0), cr4 = vmcs.get(F::HostCr4);
  CpuState host = current;
  load_host_state(vmcs, host);
  auto fail = [] { return E::EntryInvalidHostStateFields; };
  // 27.2.2: control registers and MSRs.
  if (!cr_fixed_bits_ok(cr0, vmx_capability(IA32_VMX_CR0_FIXED0), vmx_capability(IA32_VMX_CR0_FIXED1))) return fail();
  if (!cr_fixed_bits_ok(cr4, vmx_capability(IA32_VMX_CR4_FIXED0), vmx_capability(IA32_VMX_CR4_FIXED1))) return fail();
  if (vmcs.get(F::HostCr3) >> kMaxPhysAddrBits) return fail();
  if (!is_canonical(host, vmcs.get(F::HostSysenterEsp)) || !is_canonical(host, vmcs.get(F::HostSysenterEip))) return fail();
  if (vmcs.exit_control(EXIT_LOAD_PAT) && !pat_valid(vmcs.get(F::HostPat))) return fail();
  if (vmcs.exit_control(EXIT_LOAD_EFER)) {
    const uint64_t efer = vmcs.get(F::HostEfer);
    if ((efer & ~kEferDefined) || bool(efer & EFER_LMA) != host64 || bool(efer & EFER_LME) != host64) return fail();
  }
  // 27.2.3: segment selectors, bases, descriptor tables.
  for (unsigned r = 0; r < kNumSegRegs; ++r) {
    if (vmcs.get(kHostSelectorFields[r]) & 7) return fail();
  }
  const uint64_t tr = vmcs.get(F::HostTrSelector);
  if ((tr & 7) || tr == 0 || vmcs.get(F::HostCsSelector) == 0) return fail();
  if (!host64 && vmcs.get(F::HostSsSelector) == 0) return fail();
  for (F base : {F::HostFsBase, F::HostGsBase, F::HostGdtrBase, F::HostIdtrBase, F::HostTrBase}) {
    if (!is_canonical(host, vmcs.get(base))) return fail();
  }
  // 27.2.4: address-space size. From IA-32e mode one can only return to it, and vice versa.
  if (current.long_mode_active() != host64) return fail();
  if (host64) {
    if (!(cr4 & CR4_PAE) || !is_canonical(host, vmcs.get(F::HostRip))) return fail();
  } else {
    if (vmcs.entry_control(ENTRY_IA32E_MODE_GUEST) || (cr4 & CR4_PCIDE) || (vmcs.get(F::HostRip) >> 32)) return fail();
  }
  return E::None;
}

std::optional<EntryFailureQualification> check_guest_state(const Vmcs& vmcs) {
  const auto invalid = EntryFailureQualification::Default;
  const bool ia32e = vmcs.entry_control(ENTRY_IA32E_MODE_GUEST);
  const bool unrestricted = vmcs.proc2(PROC2_UNRESTRICTED_GUEST);
  CpuState g;
  load_guest_state(vmcs, g);
  // 27.3.1.1: control registers, debug registers and MSRs.
  const uint64_t relaxed = unrestricted ? (CR0_PE | CR0_PG) : 0;
  if (!cr_fixed_bits_ok(g.cr0, vmx_capability(IA32_VMX_CR0_FIXED0), vmx_capability(IA32_VMX_CR0_FIXED1), relaxed))
    return invalid;
  if ((g.cr0 & CR0_PG) && !(g.cr0 & CR0_PE)) return invalid;
  if (!cr_fixed_bits_ok(g.cr4, vmx_capability(IA32_VMX_CR4_FIXED0), vmx_capability(IA32_VMX_CR4_FIXED1)))
    return invalid;
  if (vmcs.entry_control(ENTRY_LOAD_DEBUG_CONTROLS) && (vmcs.get(F::GuestDr7) >> 32)) return invalid;
  if (ia32e && (!(g.cr0 & CR0_PG) || !(g.cr4 & CR4_PAE))) return invalid;
  if (!ia32e && (g.cr4 & CR4_PCIDE)) return invalid;
  if (g.cr3 >> kMaxPhysAddrBits) return invalid;
  if (!is_canonical(g, g.sysenter_esp) || !is_canonical(g, g.sysenter_eip)) return invalid;
  if (vmcs.entry_control(ENTRY_LOAD_PAT) && !pat_valid(g.pat)) return invalid;
  if (vmcs.entry_control(ENTRY_LOAD_EFER)) {
    if ((g.efer & ~kEferDefined) || bool(g.efer & EFER_LMA) != ia32e) return invalid;
    if ((g.cr0 & CR0_PG) && bool(g.efer & EFER_LME) != ia32e) return invalid;
  }
  // RFLAGS (27.3.1.4): reserved bits 63:22, 15, 5, 3 clear, bit 1 set; VM clear in IA-32e mode.
  const uint64_t rflags = vmcs.get(F::GuestRflags);
  if ((rflags & ~0x3FFFFFull) || (rflags & ((1u << 15) | (1u << 5) | (1u << 3))) || !(rflags & RF1)) return invalid;
  if ((rflags & VM) && (ia32e || !(g.cr0 & CR0_PE))) return invalid;
  if (rflags & VM)
    throw std::runtime_error("VMX model: VM entry to a virtual-8086-mode guest is not implemented");
  // 27.3.1.2-3: segment registers, GDTR, IDTR, RIP.
  if (!segment_checks(vmcs, g, ia32e, unrestricted)) return invalid;
  if (!is_canonical(g, g.gdtr.base) || !is_canonical(g, g.idtr.base)) return invalid;
  if ((vmcs.get32(F::GuestGdtrLimit) >> 16) || (vmcs.get32(F::GuestIdtrLimit) >> 16)) return invalid;
  const bool cs_l = vmcs.get32(F::GuestCsAccessRights) & 0x2000;
  if (ia32e && cs_l ? !is_canonical(g, g.rip) : (g.rip >> 32) != 0) return invalid;
  // 27.3.1.5: activity and interruptibility state, and the event to inject.
  const uint32_t activity = vmcs.get32(F::GuestActivityState);
  const uint32_t blocking = vmcs.get32(F::GuestInterruptibility);
  const uint32_t event = vmcs.get32(F::EntryInterruptionInfo);
  const bool injecting = event & kInterruptionValid;
  if (activity > static_cast<uint32_t>(ActivityState::Hlt)) return invalid;  // IA32_VMX_MISC offers HLT only
  if (activity == static_cast<uint32_t>(ActivityState::Hlt) && ((vmcs.get32(F::GuestSsAccessRights) >> 5) & 3))
    return invalid;
  if (blocking & ~0xFu) return invalid;
  if ((blocking & BLOCKING_BY_STI) && (blocking & BLOCKING_BY_MOV_SS)) return invalid;
  if (!(rflags & IF) && (blocking & BLOCKING_BY_STI)) return invalid;
  if (blocking & BLOCKING_BY_SMI) return invalid;  // not in SMM
  if (injecting && interruption_type(event) == InterruptionType::External) {
    if (!(rflags & IF) || (blocking & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS))) return invalid;
  }
  if (injecting && interruption_type(event) == InterruptionType::Nmi) {
    if (blocking & BLOCKING_BY_MOV_SS) return invalid;
    if (blocking & BLOCKING_BY_STI) return EntryFailureQualification::NmiInjectionBlockedBySti;
    if (vmcs.pin(PIN_VIRTUAL_NMIS) && (blocking & BLOCKING_BY_NMI)) return invalid;
  }
  // 27.3.1.5: no VMCS shadowing, so the link pointer must be all ones.
  if (vmcs.get(F::VmcsLinkPointer) != ~0ull) return EntryFailureQualification::InvalidVmcsLinkPointer;
  return std::nullopt;
}

// ---- State transfer ------------------------------------------------------------------------------------

void load_guest_state(const Vmcs& vmcs, CpuState& s) {
  const bool ia32e = vmcs.entry_control(ENTRY_IA32E_MODE_GUEST);
  s.cr0 = vmcs.get(F::GuestCr0);
  s.cr3 = vmcs.get(F::GuestCr3);
  s.cr4 = vmcs.get(F::GuestCr4);
  if (vmcs.entry_control(ENTRY_LOAD_DEBUG_CONTROLS)) s.dr[7] = vmcs.get(F::GuestDr7);
  s.sysenter_cs = vmcs.get32(F::GuestSysenterCs);
  s.sysenter_esp = vmcs.get(F::GuestSysenterEsp);
  s.sysenter_eip = vmcs.get(F::GuestSysenterEip);
  if (vmcs.entry_control(ENTRY_LOAD_PAT)) s.pat = vmcs.get(F::GuestPat);
  if (vmcs.entry_control(ENTRY_LOAD_EFER)) {
    s.efer = vmcs.get(F::GuestEfer);
  } else {
    // 27.3.2.1: LMA follows "IA-32e mode guest", and so does LME when CR0.PG is 1.
    s.efer = ia32e ? (s.efer | EFER_LMA) : (s.efer & ~uint64_t(EFER_LMA));
    if (s.cr0 & CR0_PG) s.efer = ia32e ? (s.efer | EFER_LME) : (s.efer & ~uint64_t(EFER_LME));
  }
  auto segment = [&](const GuestSegmentFields& f) {
    return segment_from_vmcs(static_cast<uint16_t>(vmcs.get(f.selector)), vmcs.get(f.base), vmcs.get32(f.limit),
                             vmcs.get32(f.access_rights));
  };
  for (unsigned r = 0; r < kNumSegRegs; ++r) s.seg[r] = segment(guest_segment_fields(static_cast<SegReg>(r)));
  s.ldtr = segment(kGuestLdtrFields);
  s.tr = segment(kGuestTrFields);
  s.gdtr = {vmcs.get(F::GuestGdtrBase), static_cast<uint16_t>(vmcs.get(F::GuestGdtrLimit))};
  s.idtr = {vmcs.get(F::GuestIdtrBase), static_cast<uint16_t>(vmcs.get(F::GuestIdtrLimit))};
  s.gpr[RSP] = vmcs.get(F::GuestRsp);
  s.rip = vmcs.get(F::GuestRip);
  s.rflags = vmcs.get(F::GuestRflags);
  s.interrupt_shadow = vmcs.get32(F::GuestInterruptibility) & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS);
  s.nmi_blocked = !vmcs.pin(PIN_VIRTUAL_NMIS) && (vmcs.get32(F::GuestInterruptibility) & BLOCKING_BY_NMI);
  s.halted = vmcs.get32(F::GuestActivityState) == static_cast<uint32_t>(ActivityState::Hlt);
}

void save_guest_state(Vmcs& vmcs, const CpuState& s) {
  vmcs.set(F::GuestCr0, s.cr0);
  vmcs.set(F::GuestCr3, s.cr3);
  vmcs.set(F::GuestCr4, s.cr4);
  if (vmcs.exit_control(EXIT_SAVE_DEBUG_CONTROLS)) vmcs.set(F::GuestDr7, s.dr[7]);
  vmcs.set(F::GuestSysenterCs, s.sysenter_cs);
  vmcs.set(F::GuestSysenterEsp, s.sysenter_esp);
  vmcs.set(F::GuestSysenterEip, s.sysenter_eip);
  if (vmcs.exit_control(EXIT_SAVE_PAT)) vmcs.set(F::GuestPat, s.pat);
  if (vmcs.exit_control(EXIT_SAVE_EFER)) vmcs.set(F::GuestEfer, s.efer);
  // IA32_VMX_MISC[5]: EFER.LMA goes into the "IA-32e mode guest" entry control.
  const uint32_t entry = vmcs.get32(F::EntryControls);
  vmcs.set(F::EntryControls, s.long_mode_active() ? (entry | ENTRY_IA32E_MODE_GUEST)
                                                 : (entry & ~uint32_t{ENTRY_IA32E_MODE_GUEST}));
  auto save = [&](const GuestSegmentFields& f, const Segment& seg, bool can_be_unusable) {
    vmcs.set(f.selector, seg.selector);
    vmcs.set(f.base, seg.base);
    vmcs.set(f.limit, seg.limit);
    vmcs.set(f.access_rights, access_rights_of(seg, can_be_unusable));
  };
  for (unsigned r = 0; r < kNumSegRegs; ++r) save(guest_segment_fields(static_cast<SegReg>(r)), s.seg[r], r != CS);
  save(kGuestLdtrFields, s.ldtr, true);
  save(kGuestTrFields, s.tr, false);
  vmcs.set(F::GuestGdtrBase, s.gdtr.base);
  vmcs.set(F::GuestGdtrLimit, s.gdtr.limit);
  vmcs.set(F::GuestIdtrBase, s.idtr.base);
  vmcs.set(F::GuestIdtrLimit, s.idtr.limit);
  vmcs.set(F::GuestRsp, s.gpr[RSP]);
  vmcs.set(F::GuestRip, s.rip);
  vmcs.set(F::GuestRflags, s.rflags);
  // The core keeps one interrupt shadow for STI and MOV SS: it is saved as blocking by STI. Bit 3
  // is the guest's NMI blocking; with virtual NMIs it is the virtual-NMI blocking, which the core
  // does not track (the field keeps what the VMM wrote).
  const uint32_t nmi_blocking = vmcs.pin(PIN_VIRTUAL_NMIS)
                                    ? vmcs.get32(F::GuestInterruptibility) & BLOCKING_BY_NMI
                                    : (s.nmi_blocked ? uint32_t{BLOCKING_BY_NMI} : 0u);
  vmcs.set(F::GuestInterruptibility, (s.interrupt_shadow ? uint32_t{BLOCKING_BY_STI} : 0u) | nmi_blocking);
  vmcs.set(F::GuestActivityState,
           static_cast<uint32_t>(s.halted ? ActivityState::Hlt : ActivityState::Active));
  vmcs.set(F::GuestPendingDebugExceptions, 0);  // debug exceptions are not modeled
}

void load_host_state(const Vmcs& vmcs, CpuState& s) {
  const bool host64 = vmcs.exit_control(EXIT_HOST_ADDRESS_SPACE_SIZE);
  // 28.5.1: control registers, debug registers, MSRs.
  s.cr0 = (vmcs.get(F::HostCr0) & kCr0Implemented) | CR0_ET;
  s.cr3 = vmcs.get(F::HostCr3);
  s.cr4 = vmcs.get(F::HostCr4);
  if (host64) s.cr4 |= CR4_PAE;
  else s.cr4 &= ~uint64_t(CR4_PCIDE);
  s.dr[7] = 0x400;
  s.nmi_blocked = false;  // the guest's NMI blocking is in its VMCS; the host runs outside NMI context
  s.sysenter_cs = vmcs.get32(F::HostSysenterCs);
  s.sysenter_esp = vmcs.get(F::HostSysenterEsp);
  s.sysenter_eip = vmcs.get(F::HostSysenterEip);
  if (vmcs.exit_control(EXIT_LOAD_PAT)) s.pat = vmcs.get(F::HostPat);
  if (vmcs.exit_control(EXIT_LOAD_EFER)) {
    s.efer = vmcs.get(F::HostEfer);
  } else {
    const uint64_t lm = EFER_LMA | EFER_LME;
    s.efer = host64 ? (s.efer | lm) : (s.efer & ~lm);
  }
  // 28.5.2: segment registers and descriptor-table registers. CS is a flat ring-0 code segment,
  // the data segments flat ring-0 data segments (unusable when their selector is null), TR a
  // busy TSS of limit 67H, LDTR unusable.
  constexpr uint16_t kFlatG = 0x8000, kPresent = 0x80, kCodeOrData = 0x10;
  const uint16_t cs_attr = kFlatG | kPresent | kCodeOrData | 0xB | (host64 ? 0x2000 : 0x4000);
  s.seg[CS] = Segment{static_cast<uint16_t>(vmcs.get(F::HostCsSelector)), 0, 0xFFFFFFFF, cs_attr};
  for (SegReg r : {ES, SS, DS, FS, GS}) {
    const auto selector = static_cast<uint16_t>(vmcs.get(kHostSelectorFields[r]));
    s.seg[r] = Segment{selector, 0, 0xFFFFFFFF, static_cast<uint16_t>(kFlatG | kPresent | kCodeOrData | 0x4000 | 0x3)};
    if (selector == 0) s.seg[r].attr = 0;  // unusable
  }
  s.seg[FS].base = vmcs.get(F::HostFsBase);
  s.seg[GS].base = vmcs.get(F::HostGsBase);
  s.tr = Segment{static_cast<uint16_t>(vmcs.get(F::HostTrSelector)), vmcs.get(F::HostTrBase), 0x67,
                 static_cast<uint16_t>(kPresent | 0xB)};
  s.ldtr = Segment{0, 0, 0, 0};
  s.gdtr = {vmcs.get(F::HostGdtrBase), 0xFFFF};
  s.idtr = {vmcs.get(F::HostIdtrBase), 0xFFFF};
  // 28.5.3: RIP, RSP, RFLAGS (only bit 1 set), no blocking, active.
  s.rip = vmcs.get(F::HostRip);
  s.gpr[RSP] = vmcs.get(F::HostRsp);
  s.rflags = RF1;
  s.interrupt_shadow = false;
  s.halted = false;
}

void vm_exit(Vmcs& vmcs, CpuState& state, const VmExit& exit) {
  refuse_msr_lists(vmcs);
  vmcs.set(F::ExitReason, exit.reason_field());
  vmcs.set(F::ExitQualification, exit.qualification);
  if (!exit.entry_failure) {
    // 28.2: the other exit-information fields; a VM-entry failure writes only the two above (27.8).
    vmcs.set(F::GuestLinearAddress, exit.guest_linear_address);
    vmcs.set(F::GuestPhysicalAddress, exit.guest_physical_address);
    vmcs.set(F::ExitInterruptionInfo, exit.interruption_info);
    vmcs.set(F::ExitInterruptionErrorCode, exit.interruption_error_code);
    vmcs.set(F::IdtVectoringInfo, exit.idt_vectoring_info);
    vmcs.set(F::IdtVectoringErrorCode, exit.idt_vectoring_error_code);
    vmcs.set(F::ExitInstructionLength, exit.instruction_length);
    vmcs.set(F::ExitInstructionInfo, exit.instruction_info);
    save_guest_state(vmcs, state);
  }
  // 28.2.3 (end): every VM exit clears the valid bit of the VM-entry interruption information.
  vmcs.set(F::EntryInterruptionInfo, vmcs.get32(F::EntryInterruptionInfo) & ~kInterruptionValid);
  load_host_state(vmcs, state);
}

void vm_exit(Vmcs& vmcs, Core& core, const VmExit& exit) {
  vm_exit(vmcs, core.state(), exit);
  core.sync_mode();
  if (!vmcs.proc2(PROC2_ENABLE_VPID)) core.flush_tlbs(true);  // 29.4.3.3: VPID 0 mappings are not kept
}

namespace {

// 27.6.1: the event of the VM-entry interruption-information field, delivered through the guest
// IDT as if it had occurred at the guest RIP; software events push RIP + the instruction length.
// An injected #PF does not load CR2 (the VMM sets it), so the event carries the guest's CR2.
void inject_event(const Vmcs& vmcs, Core& core) {
  const uint32_t info = vmcs.get32(F::EntryInterruptionInfo);
  if (!(info & kInterruptionValid)) return;
  CpuState& s = core.state();
  Event event;
  event.vector = interruption_vector(info);
  event.has_error_code = info & kInterruptionErrorCodeValid;
  event.error_code = event.has_error_code ? vmcs.get32(F::EntryExceptionErrorCode) : 0;
  event.cr2 = s.cr2;
  const uint64_t guest_rip = s.rip;
  switch (interruption_type(info)) {
    case InterruptionType::External: event.kind = EventKind::External; break;
    case InterruptionType::Nmi: event.kind = EventKind::Nmi; break;
    case InterruptionType::HardwareException: event.kind = EventKind::Exception; break;
    case InterruptionType::SoftwareInterrupt: event.kind = EventKind::SoftwareInt; break;
    case InterruptionType::SoftwareException: event.kind = EventKind::SoftwareException; break;
    case InterruptionType::PrivilegedSoftwareException: event.kind = EventKind::Exception; break;
    default: throw std::logic_error("VMX model: injection of an event type that check_controls refuses");
  }
  const InterruptionType type = interruption_type(info);
  if (event.software() || type == InterruptionType::PrivilegedSoftwareException)
    s.rip = guest_rip + vmcs.get32(F::EntryInstructionLength);
  try {
    deliver_event(core, event);
  } catch (const Fault& f) {
    // A software event whose gate check fails raises the fault at the instruction (vol. 2, INT n).
    s.rip = guest_rip;
    deliver_event(core, Event::from_fault(f));
  }
  core.sync_mode();
}

}  // namespace

VmEntryResult vm_entry(Vmcs& vmcs, Core& core) {
  VmEntryResult result;
  // 27.2: controls, then host state; a failure is VMfailValid and changes nothing else.
  VmInstructionError error = check_controls(vmcs, core.bus());
  if (error == E::None) error = check_host_state(vmcs, core.state());
  if (error != E::None) {
    vmcs.set(F::VmInstructionError, static_cast<uint32_t>(error));
    result.error = error;
    return result;
  }
  refuse_msr_lists(vmcs);
  // 27.3.1, 27.8: invalid guest state is a VM exit with reason 33 and bit 31, to the host.
  if (auto qualification = check_guest_state(vmcs)) {
    VmExit failure;
    failure.reason = ExitReason::EntryFailGuestState;
    failure.entry_failure = true;
    failure.qualification = static_cast<uint64_t>(*qualification);
    vm_exit(vmcs, core, failure);
    result.failure = failure;
    return result;
  }
  load_guest_state(vmcs, core.state());
  core.sync_mode();
  if (!vmcs.proc2(PROC2_ENABLE_VPID)) core.flush_tlbs(true);
  inject_event(vmcs, core);
  result.entered = true;
  return result;
}

uint64_t exited_guest_gpr(const Vmcs& vmcs, const CpuState& state, unsigned n) {
  return n == RSP ? vmcs.get(F::GuestRsp) : state.gpr[n];
}

void set_exited_guest_gpr(Vmcs& vmcs, CpuState& state, unsigned n, uint64_t value) {
  if (n == RSP)
    vmcs.set(F::GuestRsp, value);
  else
    state.gpr[n] = value;
}

bool exited_guest_in_64bit_mode(const Vmcs& vmcs) {
  return vmcs.entry_control(ENTRY_IA32E_MODE_GUEST) && (vmcs.get32(F::GuestCsAccessRights) & 0x2000);
}

}  // namespace pgsim::isa::vmx

// The virtual-machine control structure (Intel SDM vol. 3, ch. 25; field encodings: appendix B).
// As on a real processor its layout is the model's own: software reaches a field by its 32-bit
// encoding (VMREAD/VMWRITE semantics, SDM 25.11.2), and the VMM has typed, named access through
// VmcsField for convenience. Plain data; what the controls mean is isa/vmx/non_root.h.
#pragma once
#include <array>
#include <cstdint>

#include "isa/cpu_state.h"
#include "isa/vmx/controls.h"

namespace pgsim::isa::vmx {

// X(name, SDM encoding). An encoding's bits (SDM 25.11.2): 0 access type (1: the high 32 bits
// of a 64-bit field), 9:1 index, 11:10 type (0 control, 1 VM-exit information, 2 guest state,
// 3 host state), 14:13 width (0 16-bit, 1 64-bit, 2 32-bit, 3 natural width).
// The model holds the fields of every feature it implements or advertises (capabilities.h);
// other encodings are unsupported components (VM-instruction error 12).
#define PGSIM_VMCS_FIELDS(X)                                                                    \
  /* 16-bit control fields (B.1.1) */                                                           \
  X(Vpid, 0x0000)                                                                               \
  /* 16-bit guest-state fields (B.1.2) */                                                       \
  X(GuestEsSelector, 0x0800) X(GuestCsSelector, 0x0802) X(GuestSsSelector, 0x0804)              \
  X(GuestDsSelector, 0x0806) X(GuestFsSelector, 0x0808) X(GuestGsSelector, 0x080A)              \
  X(GuestLdtrSelector, 0x080C) X(GuestTrSelector, 0x080E)                                       \
  /* 16-bit host-state fields (B.1.3) */                                                        \
  X(HostEsSelector, 0x0C00) X(HostCsSelector, 0x0C02) X(HostSsSelector, 0x0C04)                 \
  X(HostDsSelector, 0x0C06) X(HostFsSelector, 0x0C08) X(HostGsSelector, 0x0C0A)                 \
  X(HostTrSelector, 0x0C0C)                                                                     \
  /* 64-bit control fields (B.2.1) */                                                           \
  X(IoBitmapA, 0x2000) X(IoBitmapB, 0x2002) X(MsrBitmaps, 0x2004)                               \
  X(ExitMsrStoreAddress, 0x2006) X(ExitMsrLoadAddress, 0x2008) X(EntryMsrLoadAddress, 0x200A)   \
  X(ExecutiveVmcsPointer, 0x200C) X(TscOffset, 0x2010) X(VirtualApicAddress, 0x2012)            \
  X(ApicAccessAddress, 0x2014) X(EptPointer, 0x201A)                                            \
  /* 64-bit read-only data field (B.2.2) */                                                     \
  X(GuestPhysicalAddress, 0x2400)                                                               \
  /* 64-bit guest-state fields (B.2.3) */                                                       \
  X(VmcsLinkPointer, 0x2800) X(GuestDebugctl, 0x2802) X(GuestPat, 0x2804) X(GuestEfer, 0x2806)  \
  X(GuestPdpte0, 0x280A) X(GuestPdpte1, 0x280C) X(GuestPdpte2, 0x280E) X(GuestPdpte3, 0x2810)   \
  /* 64-bit host-state fields (B.2.4) */                                                        \
  X(HostPat, 0x2C00) X(HostEfer, 0x2C02)                                                        \
  /* 32-bit control fields (B.3.1) */                                                           \
  X(PinBasedControls, 0x4000) X(ProcBasedControls, 0x4002) X(ExceptionBitmap, 0x4004)           \
  X(PageFaultErrorCodeMask, 0x4006) X(PageFaultErrorCodeMatch, 0x4008) X(Cr3TargetCount, 0x400A) \
  X(ExitControls, 0x400C) X(ExitMsrStoreCount, 0x400E) X(ExitMsrLoadCount, 0x4010)              \
  X(EntryControls, 0x4012) X(EntryMsrLoadCount, 0x4014) X(EntryInterruptionInfo, 0x4016)        \
  X(EntryExceptionErrorCode, 0x4018) X(EntryInstructionLength, 0x401A) X(TprThreshold, 0x401C)  \
  X(SecondaryProcBasedControls, 0x401E)                                                         \
  /* 32-bit read-only data fields (B.3.2) */                                                    \
  X(VmInstructionError, 0x4400) X(ExitReason, 0x4402) X(ExitInterruptionInfo, 0x4404)           \
  X(ExitInterruptionErrorCode, 0x4406) X(IdtVectoringInfo, 0x4408)                              \
  X(IdtVectoringErrorCode, 0x440A) X(ExitInstructionLength, 0x440C)                             \
  X(ExitInstructionInfo, 0x440E)                                                                \
  /* 32-bit guest-state fields (B.3.3) */                                                       \
  X(GuestEsLimit, 0x4800) X(GuestCsLimit, 0x4802) X(GuestSsLimit, 0x4804) X(GuestDsLimit, 0x4806) \
  X(GuestFsLimit, 0x4808) X(GuestGsLimit, 0x480A) X(GuestLdtrLimit, 0x480C)                     \
  X(GuestTrLimit, 0x480E) X(GuestGdtrLimit, 0x4810) X(GuestIdtrLimit, 0x4812)                   \
  X(GuestEsAccessRights, 0x4814) X(GuestCsAccessRights, 0x4816) X(GuestSsAccessRights, 0x4818)  \
  X(GuestDsAccessRights, 0x481A) X(GuestFsAccessRights, 0x481C) X(GuestGsAccessRights, 0x481E)  \
  X(GuestLdtrAccessRights, 0x4820) X(GuestTrAccessRights, 0x4822)                               \
  X(GuestInterruptibility, 0x4824) X(GuestActivityState, 0x4826) X(GuestSmbase, 0x4828)         \
  X(GuestSysenterCs, 0x482A)                                                                    \
  /* 32-bit host-state field (B.3.4) */                                                         \
  X(HostSysenterCs, 0x4C00)                                                                     \
  /* Natural-width control fields (B.4.1) */                                                    \
  X(Cr0GuestHostMask, 0x6000) X(Cr4GuestHostMask, 0x6002) X(Cr0ReadShadow, 0x6004)              \
  X(Cr4ReadShadow, 0x6006) X(Cr3Target0, 0x6008) X(Cr3Target1, 0x600A) X(Cr3Target2, 0x600C)    \
  X(Cr3Target3, 0x600E)                                                                         \
  /* Natural-width read-only data fields (B.4.2) */                                             \
  X(ExitQualification, 0x6400) X(IoRcx, 0x6402) X(IoRsi, 0x6404) X(IoRdi, 0x6406)               \
  X(IoRip, 0x6408) X(GuestLinearAddress, 0x640A)                                                \
  /* Natural-width guest-state fields (B.4.3) */                                                \
  X(GuestCr0, 0x6800) X(GuestCr3, 0x6802) X(GuestCr4, 0x6804) X(GuestEsBase, 0x6806)            \
  X(GuestCsBase, 0x6808) X(GuestSsBase, 0x680A) X(GuestDsBase, 0x680C) X(GuestFsBase, 0x680E)   \
  X(GuestGsBase, 0x6810) X(GuestLdtrBase, 0x6812) X(GuestTrBase, 0x6814)                        \
  X(GuestGdtrBase, 0x6816) X(GuestIdtrBase, 0x6818) X(GuestDr7, 0x681A) X(GuestRsp, 0x681C)     \
  X(GuestRip, 0x681E) X(GuestRflags, 0x6820) X(GuestPendingDebugExceptions, 0x6822)             \
  X(GuestSysenterEsp, 0x6824) X(GuestSysenterEip, 0x6826)                                       \
  /* Natural-width host-state fields (B.4.4) */                                                 \
  X(HostCr0, 0x6C00) X(HostCr3, 0x6C02) X(HostCr4, 0x6C04) X(HostFsBase, 0x6C06)                \
  X(HostGsBase, 0x6C08) X(HostTrBase, 0x6C0A) X(HostGdtrBase, 0x6C0C) X(HostIdtrBase, 0x6C0E)   \
  X(HostSysenterEsp, 0x6C10) X(HostSysenterEip, 0x6C12) X(HostRsp, 0x6C14) X(HostRip, 0x6C16)

enum class VmcsField : uint32_t {
#define PGSIM_X(name, encoding) name = encoding,
  PGSIM_VMCS_FIELDS(PGSIM_X)
#undef PGSIM_X
};

enum class VmcsFieldWidth : uint8_t { Bits16 = 0, Bits64 = 1, Bits32 = 2, Natural = 3 };
enum class VmcsFieldType : uint8_t { Control = 0, ExitInformation = 1, GuestState = 2, HostState = 3 };
constexpr VmcsFieldWidth field_width(uint32_t encoding) { return static_cast<VmcsFieldWidth>((encoding >> 13) & 3); }
constexpr VmcsFieldType field_type(uint32_t encoding) { return static_cast<VmcsFieldType>((encoding >> 10) & 3); }

// The result of VMREAD/VMWRITE by encoding: success, or the VM-instruction error it reports.
enum class VmcsAccess : uint32_t {
  Ok = 0,
  Unsupported = static_cast<uint32_t>(VmInstructionError::UnsupportedVmcsComponent),
  ReadOnly = static_cast<uint32_t>(VmInstructionError::VmwriteReadOnlyComponent),
};

// The name of a field ("GuestRip") for messages; nullptr for an unsupported encoding.
const char* vmcs_field_name(uint32_t encoding);
// The highest index (bits 9:1) of any supported encoding: IA32_VMX_VMCS_ENUM[9:1].
unsigned vmcs_highest_index();

// The guest- and host-state field encodings of one segment register, in SegReg order, so code
// that moves segments walks a table instead of naming 24 fields.
struct GuestSegmentFields {
  VmcsField selector, base, limit, access_rights;
};
const GuestSegmentFields& guest_segment_fields(SegReg reg);
extern const GuestSegmentFields kGuestLdtrFields, kGuestTrFields;
extern const VmcsField kHostSelectorFields[kNumSegRegs];  // ES..GS (HostCsSelector is CS)

class Vmcs {
 public:
  Vmcs();

  // ---- By encoding: what VMREAD and VMWRITE do (SDM vol. 2, VMREAD/VMWRITE; 25.11.2) ----------
  // The value of a supported field (a high-access encoding gives bits 63:32 of a 64-bit field).
  VmcsAccess read(uint32_t encoding, uint64_t* value) const;
  // VMWRITE: truncates to the field's width (a high access replaces bits 63:32 only); the
  // VM-exit information fields are read-only (IA32_VMX_MISC[29] = 0).
  VmcsAccess write(uint32_t encoding, uint64_t value);

  // ---- Typed access for the VMM and the processor's own updates (no read-only check) -----------
  uint64_t get(VmcsField f) const { return values_[slot(f)]; }
  void set(VmcsField f, uint64_t value);
  uint32_t get32(VmcsField f) const { return static_cast<uint32_t>(values_[slot(f)]); }

  // The controls in effect. The secondary controls count only when "activate secondary controls"
  // is 1 (SDM 25.6.2: otherwise the processor operates as if they were all 0).
  bool pin(PinControl c) const { return get32(VmcsField::PinBasedControls) & c; }
  bool proc(ProcControl c) const { return get32(VmcsField::ProcBasedControls) & c; }
  bool proc2(Proc2Control c) const {
    return proc(PROC_ACTIVATE_SECONDARY_CONTROLS) && (get32(VmcsField::SecondaryProcBasedControls) & c);
  }
  bool exit_control(ExitControl c) const { return get32(VmcsField::ExitControls) & c; }
  bool entry_control(EntryControl c) const { return get32(VmcsField::EntryControls) & c; }

  // The VMCS launch state (SDM 25.1): VMCLEAR makes it clear, VMLAUNCH launched.
  bool launched = false;

  // Every field's value in the model's own storage order, for a processor that keeps the VMCS in
  // the memory a guest hypervisor gave it (isa/vmx/guest_vmx.h): it copies them out on VMCLEAR and
  // in on VMPTRLD, as real processors do with their opaque VMCS regions.
  static constexpr unsigned kStorageSlots = 160;
  using Storage = std::array<uint64_t, kStorageSlots>;
  const Storage& storage() const { return values_; }
  Storage& storage() { return values_; }

 private:
  static unsigned slot(VmcsField f);
  Storage values_{};
};

}  // namespace pgsim::isa::vmx

// VMCS storage and VMREAD/VMWRITE semantics (Intel SDM vol. 3, 25.11.2 and appendix B; vol. 2
// VMREAD, VMWRITE).
#include "isa/vmx/vmcs.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace pgsim::isa::vmx {
namespace {

struct FieldEntry {
  uint32_t encoding;
  const char* name;
};
constexpr FieldEntry kFields[] = {
#define PGSIM_X(name, encoding) {encoding, #name},
    PGSIM_VMCS_FIELDS(PGSIM_X)
#undef PGSIM_X
};
constexpr unsigned kNumFields = sizeof(kFields) / sizeof(kFields[0]);

// An encoding with its access-type bit clear maps to a key of 14 bits: width, reserved bit 12 and
// type (bits 14:10) above the index (bits 9:1). The table from key to storage slot is built at
// compile time.
constexpr unsigned key_of(uint32_t encoding) { return ((encoding >> 10) & 0x1F) << 9 | ((encoding >> 1) & 0x1FF); }
constexpr uint8_t kNoSlot = 0xFF;
constexpr auto kSlotOfKey = [] {
  std::array<uint8_t, 1u << 14> table{};
  for (auto& t : table) t = kNoSlot;
  for (unsigned k = 0; k < kNumFields; ++k) table[key_of(kFields[k].encoding)] = static_cast<uint8_t>(k);
  return table;
}();

// Bits a field of each width holds (natural width is 64 bits on a processor with IA-32e mode).
uint64_t width_mask(uint32_t encoding) {
  switch (field_width(encoding)) {
    case VmcsFieldWidth::Bits16: return 0xFFFF;
    case VmcsFieldWidth::Bits32: return 0xFFFFFFFF;
    default: return ~0ull;
  }
}

// The slot of a well-formed supported encoding, or kNoSlot. Bits 31:15 and 12 are reserved, and
// the high access type exists only for 64-bit fields (SDM 25.11.2).
unsigned slot_of_encoding(uint32_t encoding) {
  if ((encoding & ~0x6FFFu) != 0) return kNoSlot;
  const bool high = encoding & 1;
  if (high && field_width(encoding) != VmcsFieldWidth::Bits64) return kNoSlot;
  return kSlotOfKey[key_of(encoding)];
}

}  // namespace

static_assert(kNumFields <= Vmcs::kStorageSlots, "Vmcs::values_ is too small for PGSIM_VMCS_FIELDS");

const char* vmcs_field_name(uint32_t encoding) {
  const unsigned s = slot_of_encoding(encoding);
  return s == kNoSlot ? nullptr : kFields[s].name;
}

unsigned vmcs_highest_index() {
  unsigned highest = 0;
  for (const FieldEntry& f : kFields) highest = std::max(highest, (f.encoding >> 1) & 0x1FFu);
  return highest;
}

const GuestSegmentFields& guest_segment_fields(SegReg reg) {
  using F = VmcsField;
  static const GuestSegmentFields fields[kNumSegRegs] = {
      {F::GuestEsSelector, F::GuestEsBase, F::GuestEsLimit, F::GuestEsAccessRights},
      {F::GuestCsSelector, F::GuestCsBase, F::GuestCsLimit, F::GuestCsAccessRights},
      {F::GuestSsSelector, F::GuestSsBase, F::GuestSsLimit, F::GuestSsAccessRights},
      {F::GuestDsSelector, F::GuestDsBase, F::GuestDsLimit, F::GuestDsAccessRights},
      {F::GuestFsSelector, F::GuestFsBase, F::GuestFsLimit, F::GuestFsAccessRights},
      {F::GuestGsSelector, F::GuestGsBase, F::GuestGsLimit, F::GuestGsAccessRights},
  };
  return fields[reg];
}
const GuestSegmentFields kGuestLdtrFields = {VmcsField::GuestLdtrSelector, VmcsField::GuestLdtrBase,
                                             VmcsField::GuestLdtrLimit, VmcsField::GuestLdtrAccessRights};
const GuestSegmentFields kGuestTrFields = {VmcsField::GuestTrSelector, VmcsField::GuestTrBase,
                                           VmcsField::GuestTrLimit, VmcsField::GuestTrAccessRights};
const VmcsField kHostSelectorFields[kNumSegRegs] = {VmcsField::HostEsSelector, VmcsField::HostCsSelector,
                                                    VmcsField::HostSsSelector, VmcsField::HostDsSelector,
                                                    VmcsField::HostFsSelector, VmcsField::HostGsSelector};

Vmcs::Vmcs() {
  // A VMCS link pointer of all ones says "no shadow VMCS" (SDM 26.3.1.5); VM entry requires it
  // here since VMCS shadowing is not advertised.
  set(VmcsField::VmcsLinkPointer, ~0ull);
}

unsigned Vmcs::slot(VmcsField f) {
  const unsigned s = kSlotOfKey[key_of(static_cast<uint32_t>(f))];
  // Every VmcsField is in the table by construction; a cast from a stray number is a bug.
  if (s == kNoSlot) throw std::logic_error("VMCS field encoding " + std::to_string(static_cast<uint32_t>(f)) + " is not a VmcsField");
  return s;
}

void Vmcs::set(VmcsField f, uint64_t value) {
  const uint32_t encoding = static_cast<uint32_t>(f);
  values_[slot(f)] = value & width_mask(encoding);
}

VmcsAccess Vmcs::read(uint32_t encoding, uint64_t* value) const {
  const unsigned s = slot_of_encoding(encoding);
  if (s == kNoSlot) return VmcsAccess::Unsupported;
  *value = (encoding & 1) ? values_[s] >> 32 : values_[s];
  return VmcsAccess::Ok;
}

VmcsAccess Vmcs::write(uint32_t encoding, uint64_t value) {
  const unsigned s = slot_of_encoding(encoding);
  if (s == kNoSlot) return VmcsAccess::Unsupported;
  if (field_type(encoding) == VmcsFieldType::ExitInformation) return VmcsAccess::ReadOnly;
  if (encoding & 1) values_[s] = (values_[s] & 0xFFFFFFFFull) | (value << 32);
  else values_[s] = value & width_mask(encoding);
  return VmcsAccess::Ok;
}

}  // namespace pgsim::isa::vmx

// The model-specific registers a kernel reads while it boots (Intel SDM vol. 4, table 2-2 and
// vol. 3, 12.11 for the MTRRs): IA32_PLATFORM_ID, IA32_BIOS_SIGN_ID, IA32_MISC_ENABLE, the MTRRs
// and IA32_PKRS. The core has no caches, so memory types are kept and checked, never applied.
#include "isa/system/machine_msrs.h"

#include "isa/system/paging.h"

namespace pgsim::isa::system {
namespace {

// IA32_MISC_ENABLE: fast strings (0) and limit-CPUID-maxval (22) are read-write; branch-trace
// storage (11) and PEBS (12) read as unavailable; the rest reads 0 and is reserved.
constexpr uint64_t kMiscFastStrings = 1ull << 0;
constexpr uint64_t kMiscBtsUnavailable = 1ull << 11;
constexpr uint64_t kMiscPebsUnavailable = 1ull << 12;
constexpr uint64_t kMiscWritable = kMiscFastStrings | kMiscLimitCpuidMaxval;
constexpr uint64_t kMiscReadOnly = kMiscBtsUnavailable | kMiscPebsUnavailable;

// IA32_MTRRCAP: eight variable ranges, fixed ranges, write-combining; no SMRR.
constexpr unsigned kVariableMtrrs = 8;
constexpr uint64_t kMtrrCap = kVariableMtrrs | (1u << 8) | (1u << 10);
// IA32_MTRR_DEF_TYPE: type (7:0), fixed-range enable (10), enable (11).
constexpr uint64_t kMtrrDefTypeWritable = 0xFF | (1u << 10) | (1u << 11);
// PHYSBASE: type (7:0) and the base (MAXPHYADDR-1:12); PHYSMASK: valid (11) and the mask.
constexpr uint64_t kMtrrBaseWritable = 0xFF | kPhysFrameMask;
constexpr uint64_t kMtrrMaskWritable = (1u << 11) | kPhysFrameMask;

// Memory types an MTRR may hold: UC 0, WC 1, WT 4, WP 5, WB 6.
bool valid_mtrr_type(uint64_t type) { return type <= 6 && type != 2 && type != 3; }

int fixed_mtrr_index(uint32_t msr) {
  if (msr == MSR_MTRR_FIX64K_00000) return 0;
  if (msr == MSR_MTRR_FIX16K_80000) return 1;
  if (msr == MSR_MTRR_FIX16K_A0000) return 2;
  if (msr >= MSR_MTRR_FIX4K_C0000 && msr < MSR_MTRR_FIX4K_C0000 + 8) return 3 + static_cast<int>(msr - MSR_MTRR_FIX4K_C0000);
  return -1;
}
bool variable_mtrr(uint32_t msr) { return msr >= MSR_MTRR_PHYS_BASE0 && msr < MSR_MTRR_PHYS_BASE0 + 2 * kVariableMtrrs; }

}  // namespace

bool read_machine_msr(const CpuState& s, uint32_t msr, uint64_t& value) {
  if (const int k = fixed_mtrr_index(msr); k >= 0) {
    value = s.mtrr_fixed[k];
    return true;
  }
  if (variable_mtrr(msr)) {
    value = s.mtrr_var[msr - MSR_MTRR_PHYS_BASE0];
    return true;
  }
  switch (msr) {
    case MSR_PLATFORM_ID: value = 0; return true;    // platform 0 (bits 52:50)
    case MSR_BIOS_SIGN_ID: value = 0; return true;   // no microcode update loaded
    case MSR_MTRRCAP: value = kMtrrCap; return true;
    case MSR_MTRR_DEF_TYPE: value = s.mtrr_def_type; return true;
    case MSR_MISC_ENABLE: value = s.misc_enable | kMiscReadOnly; return true;
    case MSR_PKRS: value = s.pkrs; return true;
    default: return false;
  }
}

bool write_machine_msr(CpuState& s, uint32_t msr, uint64_t v) {
  if (const int k = fixed_mtrr_index(msr); k >= 0) {
    for (unsigned b = 0; b < 8; ++b)
      if (!valid_mtrr_type((v >> (8 * b)) & 0xFF)) throw Fault::gp(0);
    s.mtrr_fixed[k] = v;
    return true;
  }
  if (variable_mtrr(msr)) {
    const bool base = (msr - MSR_MTRR_PHYS_BASE0) % 2 == 0;
    if (v & ~(base ? kMtrrBaseWritable : kMtrrMaskWritable)) throw Fault::gp(0);
    if (base && !valid_mtrr_type(v & 0xFF)) throw Fault::gp(0);
    s.mtrr_var[msr - MSR_MTRR_PHYS_BASE0] = v;
    return true;
  }
  switch (msr) {
    case MSR_BIOS_SIGN_ID: return true;  // writing 0 before CPUID asks for the signature
    case MSR_MTRR_DEF_TYPE:
      if ((v & ~kMtrrDefTypeWritable) || !valid_mtrr_type(v & 0xFF)) throw Fault::gp(0);
      s.mtrr_def_type = v;
      return true;
    case MSR_MISC_ENABLE:
      if ((v & ~(kMiscWritable | kMiscReadOnly)) || (v & kMiscReadOnly) != kMiscReadOnly) throw Fault::gp(0);
      s.misc_enable = v & kMiscWritable;
      return true;
    case MSR_PKRS:
      if (v >> 32) throw Fault::gp(0);
      s.pkrs = v;
      return true;
    case MSR_PLATFORM_ID:
    case MSR_MTRRCAP:
      throw Fault::gp(0);  // read-only
    default: return false;
  }
}

bool is_mtrr_msr(uint32_t msr) {
  return msr == MSR_MTRRCAP || msr == MSR_MTRR_DEF_TYPE || fixed_mtrr_index(msr) >= 0 || variable_mtrr(msr);
}

}  // namespace pgsim::isa::system

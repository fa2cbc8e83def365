// The model-specific registers a kernel reads while it boots beyond those of control.cpp:
// IA32_PLATFORM_ID, IA32_BIOS_SIGN_ID, IA32_MISC_ENABLE, the MTRRs and IA32_PKRS.
#pragma once
#include <cstdint>

#include "isa/cpu_state.h"
#include "isa/fault.h"

namespace pgsim::isa::system {

// IA32_MISC_ENABLE bit 22: CPUID leaf 0 reports at most leaf 2 (for old operating systems).
constexpr uint64_t kMiscLimitCpuidMaxval = 1ull << 22;

// RDMSR/WRMSR of one of these MSRs: false when `msr` is none of them; a write of a reserved bit,
// an invalid memory type or a read-only MSR throws #GP(0).
bool read_machine_msr(const CpuState& s, uint32_t msr, uint64_t& value);
// MTRRcap, MTRRdefType, or a variable or fixed MTRR (the MSRs the MTRR feature brings).
bool is_mtrr_msr(uint32_t msr);
bool write_machine_msr(CpuState& s, uint32_t msr, uint64_t value);

}  // namespace pgsim::isa::system

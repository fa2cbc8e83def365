// CPUID as the guest sees it: the vendor's signature and leaf layout, and exactly the features of
// the core's CpuModel (isa/system/cpu_features.h) that something implements.
#pragma once
#include <cstdint>

#include "isa/system/cpu_features.h"
#include "isa/system/system_config.h"

namespace pgsim::isa {

class Core;

// CPUID leaf `leaf`, subleaf `subleaf`, for the CPU `core` presents.
CpuidLeaf cpuid_leaf(const Core& core, uint32_t leaf, uint32_t subleaf);

// True when CPUID reports `feature` on `core`: it is switched on in the model, implemented, and
// whatever provides it is attached (VMX: the guest's VMX; x2APIC and TSC-deadline: the MSR device;
// the hypervisor bit: a VMM's hypervisor interface; the PMU: a Pmu).
bool cpuid_reports(const Core& core, Feature feature);

// The vendor's signature: CPUID.01H:EAX (family, model, stepping).
uint32_t cpu_signature(CpuVendor vendor);

}  // namespace pgsim::isa

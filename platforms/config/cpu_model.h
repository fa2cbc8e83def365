// The CPU a config presents (cpu.vendor, the profile's features, cpu.features, cpu.vmx): one place
// that turns the keys into the core's CpuModel, for the schema's rules and for the platform.
#pragma once

#include "isa/system/cpu_features.h"
#include "isa/system/profile.h"
#include "platforms/config/config.h"

namespace pgsim::config {

// The CpuModel of `c`: the vendor's defaults, without a PMU under a VMM (no strategy virtualizes
// it), then the feature switches of `profile` (the loaded cpu.profile; null when checking the
// config alone), then cpu.features; VMX on with cpu.vmx. Throws ConfigError naming cpu.features
// (or cpu.vmx) and where it was set.
isa::CpuModel cpu_model(const Config& c, const isa::Profile* profile);

// The CPU has VMX: cpu.vmx, or +vmx in cpu.features.
bool cpu_has_vmx(const Config& c);

void check_cpu_config(const Config& c);

}  // namespace pgsim::config

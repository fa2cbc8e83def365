// cpu.vendor, cpu.features and cpu.vmx into the core's CpuModel.
#include "platforms/config/cpu_model.h"

namespace pgsim::config {
namespace {

// The last switch of `name` in cpu.features: '+', '-' or 0 when none.
char last_switch(const Config& c, const char* name) {
  char sign = 0;
  for (const std::string& s : c.list("cpu.features")) {
    if (s.size() < 2) continue;
    if (const auto f = isa::find_feature(s.substr(1)); f && *f == isa::find_feature(name)) sign = s[0];
  }
  return sign;
}

}  // namespace

bool cpu_has_vmx(const Config& c) { return last_switch(c, "vmx") == '+' || (c.flag("cpu.vmx") && last_switch(c, "vmx") != '-'); }

isa::CpuModel cpu_model(const Config& c, const isa::Profile* profile) {
  const isa::CpuVendor vendor = c.str("cpu.vendor") == "amd" ? isa::CpuVendor::Amd : isa::CpuVendor::Intel;
  isa::CpuModel model(vendor);
  // No strategy virtualizes the performance counters: under a VMM the CPU presents none (as Xen
  // does without vpmu), and +pmu is refused below.
  const bool native = c.str("vmm.strategy") == "native";
  if (!native) model.set(isa::Feature::Pmu, false);
  if (c.flag("cpu.vmx")) {
    if (vendor == isa::CpuVendor::Amd)
      c.fail("cpu.vmx", "the VT-x model is Intel's: an AMD CPU has SVM instead, which pgsim does not model "
                        "(use cpu.vendor: intel)");
    if (last_switch(c, "vmx") == '-') c.fail("cpu.features", "'-vmx' contradicts cpu.vmx: true");
    model.set(isa::Feature::Vmx, true);
  }
  if (profile) {
    try {
      isa::apply_profile_features(*profile, model);
    } catch (const isa::ProfileError& e) {
      c.fail("cpu.profile", e.what());
    }
  }
  size_t bad = 0;
  if (std::string why = isa::apply_feature_switches(model, c.list("cpu.features"), &bad); !why.empty())
    c.fail("cpu.features", "item " + std::to_string(bad + 1) + ", " + why);
  if (!native && model.has(isa::Feature::Pmu))
    c.fail("cpu.features", "'+pmu': vmm.strategy '" + c.str("vmm.strategy") +
                               "' does not virtualize the performance-monitoring unit (its CPU presents none); "
                               "the PMU is for vmm.strategy: native");
  return model;
}

void check_cpu_config(const Config& c) { cpu_model(c, nullptr); }

}  // namespace pgsim::config

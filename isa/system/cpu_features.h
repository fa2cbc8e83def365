// The CPU the guest sees through CPUID: a vendor (Intel or AMD, with its signature and leaf
// layout) and a set of features switched on or off with QEMU's names ("+pcid", "-la57"). One
// table (cpu_features.cpp) holds every feature the CPUID leaves can report: its name, its
// leaf/subleaf/register/bit, whether the core implements it and how the core behaves without it.
// CPUID reports a bit only when the feature is on and implemented, and a feature switched off
// makes the core behave as a CPU without it (its CR4/EFER bits reserved, its instructions #UD, its
// MSRs #GP), so that what CPUID says is always what the core does.
#pragma once
#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pgsim::isa {

enum class CpuVendor : uint8_t { Intel, Amd };
const char* cpu_vendor_key(CpuVendor vendor);  // "intel", "amd"

enum class CpuidReg : uint8_t { Eax, Ebx, Ecx, Edx };

// Every feature the table knows, in table order. Implemented or not: an unimplemented one is never
// reported and cannot be switched on (a later implementation flips its `implemented`).
enum class Feature : uint8_t {
  // CPUID.01H:EDX
  Fpu, Vme, De, Pse, Tsc, Msr, Pae, Mce, Cx8, Apic, Sep, Mtrr, Pge, Mca, Cmov, Pat, Pse36, Clflush, Mmx, Fxsr,
  Sse, Sse2,
  // CPUID.01H:ECX
  Sse3, Monitor, Vmx, Ssse3, Cx16, Pdcm, Pcid, Sse41, Sse42, X2apic, Movbe, Popcnt, TscDeadline, Xsave, Avx,
  Rdrand, Hypervisor,
  // CPUID.(EAX=07H,ECX=0):EBX/ECX
  Fsgsbase, Bmi1, Smep, Erms, Invpcid, Rdseed, Adx, Smap, Clflushopt, Umip, Pku, La57, Rdpid, Pks,
  // CPUID.80000001H:ECX/EDX
  LahfLm, Svm, Abm, Prefetchw, Syscall, Nx, Pdpe1gb, Rdtscp, Lm,
  // CPUID.80000007H:EDX
  Invtsc,
  // CPUID.0AH: architectural performance monitoring (the whole leaf, QEMU's `pmu` property)
  Pmu,
  kCount,
};
constexpr unsigned kNumFeatures = static_cast<unsigned>(Feature::kCount);

// Which vendors' CPUs have a feature.
enum VendorMask : uint8_t { kIntelOnly = 1, kAmdOnly = 2, kBothVendors = 3 };

struct FeatureInfo {
  Feature feature;
  const char* name;   // QEMU's -cpu name
  uint32_t leaf, subleaf;
  CpuidReg reg;
  uint8_t bit;        // for Pmu: 0, and the whole leaf 0AH is the feature
  bool implemented;   // the core implements it (CPUID may report it; +name is accepted)
  bool switchable;    // the core can also behave as a CPU without it (-name is accepted)
  bool amd_mirror;    // AMD also reports it at CPUID.80000001H:EDX, same bit (APM vol. 3, E.4.2)
  uint8_t vendors;    // VendorMask
  const char* without;  // what the core does when it is off (or why it is missing)
};

// The one table, in Feature order.
const std::vector<FeatureInfo>& feature_table();
const FeatureInfo& feature_info(Feature f);
// The feature called `name` (QEMU's spelling; '_' and '-' are interchangeable), or nullopt.
std::optional<Feature> find_feature(const std::string& name);

// The CPU presented to the guest. The default is an Intel CPU with every implemented feature on
// except UMIP (the profile decides: x86-umip has it); CPUID reports those that need something
// attached (VMX, x2APIC, TSC-deadline, the hypervisor bit, the PMU) only with it.
struct CpuModel {
  CpuVendor vendor = CpuVendor::Intel;
  std::bitset<kNumFeatures> on;

  CpuModel();
  explicit CpuModel(CpuVendor v);
  bool has(Feature f) const { return on.test(static_cast<unsigned>(f)); }
  void set(Feature f, bool value) { on.set(static_cast<unsigned>(f), value); }
};

// Applies "+name" / "-name" switches to `model`. Returns "" or what is wrong with the first bad
// switch (unknown name with the nearest one, unimplemented feature, a vendor that lacks it, a
// feature the core cannot remove); `index` receives its position.
std::string apply_feature_switches(CpuModel& model, const std::vector<std::string>& switches, size_t* index = nullptr);

// The CR4 and EFER bits a CPU with `model` accepts (the others are reserved: #GP on MOV to CR4 /
// WRMSR), and whether MSR `msr` exists on it (beyond the core's and the devices' own checks).
uint64_t cr4_supported(const CpuModel& model);
uint64_t efer_supported(const CpuModel& model);
bool msr_present(const CpuModel& model, uint32_t msr);

// Instructions a feature brings: without the feature, `mnemonic` (a ZydisMnemonic) raises #UD, or
// decodes as `fallback` when that is not 0 (LZCNT is BSR on CPUs without it);
// `long64_only`: only its 64-bit-mode form depends on the feature (LAHF/SAHF).
struct FeatureInstruction {
  unsigned mnemonic;
  Feature feature;
  unsigned fallback;
  bool long64_only;
};
const std::vector<FeatureInstruction>& feature_instructions();

}  // namespace pgsim::isa

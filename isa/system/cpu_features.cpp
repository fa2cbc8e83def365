// The feature table: every bit the CPUID leaves of isa/system/cpuid.cpp can report (Intel SDM
// vol. 2, CPUID, tables 3-10 to 3-20; AMD APM vol. 3, appendix E), and what the core does without
// each. A feature another part of the core implements later is switched on here: set
// `implemented` (and `switchable` once the core can also behave without it).
#include "isa/system/cpu_features.h"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <stdexcept>

#include "isa/cpu_state.h"
#include "isa/system/machine_msrs.h"
#include "isa/system/profile.h"

namespace pgsim::isa {
namespace {

using F = Feature;
using R = CpuidReg;
constexpr uint32_t kLeaf7 = 7, kExt1 = 0x80000001;

// clang-format off
const std::vector<FeatureInfo> kTable = {
  // feature         name            leaf        sub reg     bit impl   switch mirror vendors       without it
  {F::Fpu,          "fpu",          1,          0, R::Edx,  0, true,  false, true,  kBothVendors, "the x87 FPU is part of the x86-64 baseline the core models: cannot be removed"},
  {F::Vme,          "vme",          1,          0, R::Edx,  1, false, true,  true,  kBothVendors, "virtual-8086 mode extensions: only CLI/STI honour CR4.VME/PVI, so CR4.VME and CR4.PVI are reserved"},
  {F::De,           "de",           1,          0, R::Edx,  2, true,  true,  true,  kBothVendors, "CR4.DE reserved"},
  {F::Pse,          "pse",          1,          0, R::Edx,  3, true,  true,  true,  kBothVendors, "CR4.PSE reserved"},
  {F::Tsc,          "tsc",          1,          0, R::Edx,  4, true,  true,  true,  kBothVendors, "RDTSC and RDTSCP #UD, CR4.TSD reserved, IA32_TIME_STAMP_COUNTER #GP"},
  {F::Msr,          "msr",          1,          0, R::Edx,  5, true,  true,  true,  kBothVendors, "RDMSR and WRMSR #UD"},
  {F::Pae,          "pae",          1,          0, R::Edx,  6, true,  true,  true,  kBothVendors, "CR4.PAE reserved (so no IA-32e mode either)"},
  {F::Mce,          "mce",          1,          0, R::Edx,  7, false, true,  true,  kBothVendors, "machine-check exception: not implemented, CR4.MCE reserved"},
  {F::Cx8,          "cx8",          1,          0, R::Edx,  8, true,  true,  true,  kBothVendors, "CMPXCHG8B #UD"},
  {F::Apic,         "apic",         1,          0, R::Edx,  9, true,  false, true,  kBothVendors, "the PC platform always has its local APIC: cannot be removed"},
  {F::Sep,          "sep",          1,          0, R::Edx, 11, true,  true,  false, kBothVendors, "SYSENTER and SYSEXIT #UD, IA32_SYSENTER_CS/ESP/EIP #GP"},
  {F::Mtrr,         "mtrr",         1,          0, R::Edx, 12, true,  true,  true,  kBothVendors, "MTRRcap, MTRRdefType and the variable and fixed MTRRs #GP"},
  {F::Pge,          "pge",          1,          0, R::Edx, 13, true,  true,  true,  kBothVendors, "CR4.PGE reserved"},
  {F::Mca,          "mca",          1,          0, R::Edx, 14, false, true,  true,  kBothVendors, "machine-check architecture: not implemented"},
  {F::Cmov,         "cmov",         1,          0, R::Edx, 15, true,  true,  true,  kBothVendors, "CMOVcc #UD"},
  {F::Pat,          "pat",          1,          0, R::Edx, 16, true,  true,  true,  kBothVendors, "IA32_PAT #GP"},
  {F::Pse36,        "pse36",        1,          0, R::Edx, 17, true,  false, true,  kBothVendors, "the 4-MiB page walk always takes physical-address bits 39:32 from the PDE: cannot be removed"},
  {F::Clflush,      "clflush",      1,          0, R::Edx, 19, true,  true,  false, kBothVendors, "CLFLUSH #UD"},
  {F::Mmx,          "mmx",          1,          0, R::Edx, 23, false, true,  true,  kBothVendors, "MMX: not implemented"},
  {F::Fxsr,         "fxsr",         1,          0, R::Edx, 24, true,  false, true,  kBothVendors, "FXSAVE/FXRSTOR are part of the x86-64 baseline the core models: cannot be removed"},
  {F::Sse,          "sse",          1,          0, R::Edx, 25, true,  false, false, kBothVendors, "SSE is part of the x86-64 baseline the core models: cannot be removed"},
  {F::Sse2,         "sse2",         1,          0, R::Edx, 26, true,  false, false, kBothVendors, "SSE2 is part of the x86-64 baseline the core models: cannot be removed"},
  {F::Sse3,         "pni",          1,          0, R::Ecx,  0, false, true,  false, kBothVendors, "SSE3: not implemented"},
  {F::Monitor,      "monitor",      1,          0, R::Ecx,  3, false, true,  false, kBothVendors, "MONITOR/MWAIT: not implemented"},
  {F::Vmx,          "vmx",          1,          0, R::Ecx,  5, true,  true,  false, kIntelOnly,   "AMD CPUs have SVM instead, which pgsim does not model; without VMX the VMX instructions #UD, CR4.VMXE is reserved, IA32_FEATURE_CONTROL and the VMX MSRs #GP (on: cpu.vmx)"},
  {F::Ssse3,        "ssse3",        1,          0, R::Ecx,  9, false, true,  false, kBothVendors, "SSSE3: not implemented"},
  {F::Cx16,         "cx16",         1,          0, R::Ecx, 13, true,  true,  false, kBothVendors, "CMPXCHG16B #UD"},
  {F::Pdcm,         "pdcm",         1,          0, R::Ecx, 15, false, true,  false, kIntelOnly,   "IA32_PERF_CAPABILITIES: not implemented"},
  {F::Pcid,         "pcid",         1,          0, R::Ecx, 17, true,  true,  false, kBothVendors, "CR4.PCIDE reserved"},
  {F::Sse41,        "sse4.1",       1,          0, R::Ecx, 19, false, true,  false, kBothVendors, "SSE4.1: not implemented"},
  {F::Sse42,        "sse4.2",       1,          0, R::Ecx, 20, false, true,  false, kBothVendors, "SSE4.2: not implemented"},
  {F::X2apic,       "x2apic",       1,          0, R::Ecx, 21, true,  true,  false, kBothVendors, "MSRs 800H-8FFH #GP, IA32_APIC_BASE.EXTD reserved"},
  {F::Movbe,        "movbe",        1,          0, R::Ecx, 22, false, true,  false, kBothVendors, "MOVBE: not implemented"},
  {F::Popcnt,       "popcnt",       1,          0, R::Ecx, 23, true,  true,  false, kBothVendors, "POPCNT #UD"},
  {F::TscDeadline,  "tsc-deadline", 1,          0, R::Ecx, 24, true,  true,  false, kBothVendors, "IA32_TSC_DEADLINE #GP"},
  {F::Xsave,        "xsave",        1,          0, R::Ecx, 26, true,  true,  false, kBothVendors, "XSAVE, XSAVEOPT, XRSTOR, XGETBV and XSETBV #UD, CR4.OSXSAVE reserved, leaf 0DH zero"},
  {F::Avx,          "avx",          1,          0, R::Ecx, 28, false, true,  false, kBothVendors, "AVX: not implemented"},
  {F::Rdrand,       "rdrand",       1,          0, R::Ecx, 30, false, true,  false, kBothVendors, "RDRAND: not implemented"},
  {F::Hypervisor,   "hypervisor",   1,          0, R::Ecx, 31, true,  true,  false, kBothVendors, "bit clear and leaves 40000000H+ zero even when a VMM presents itself (on: reported only when one does)"},
  {F::Fsgsbase,     "fsgsbase",     kLeaf7,     0, R::Ebx,  0, false, true,  false, kBothVendors, "RDFSBASE/WRFSBASE...: not implemented, CR4.FSGSBASE reserved"},
  {F::Bmi1,         "bmi1",         kLeaf7,     0, R::Ebx,  3, false, true,  false, kBothVendors, "BMI1 (VEX ANDN, BEXTR, BLS*): not implemented (TZCNT, its one legacy-encoded instruction, is, and is not gated)"},
  {F::Smep,         "smep",         kLeaf7,     0, R::Ebx,  7, true,  true,  false, kBothVendors, "CR4.SMEP reserved"},
  {F::Erms,         "erms",         kLeaf7,     0, R::Ebx,  9, false, true,  false, kBothVendors, "enhanced REP MOVSB/STOSB: a performance hint the timing model does not give"},
  {F::Invpcid,      "invpcid",      kLeaf7,     0, R::Ebx, 10, true,  true,  false, kBothVendors, "INVPCID #UD"},
  {F::Rdseed,       "rdseed",       kLeaf7,     0, R::Ebx, 18, false, true,  false, kBothVendors, "RDSEED: not implemented"},
  {F::Adx,          "adx",          kLeaf7,     0, R::Ebx, 19, false, true,  false, kBothVendors, "ADCX/ADOX: not implemented"},
  {F::Smap,         "smap",         kLeaf7,     0, R::Ebx, 20, true,  true,  false, kBothVendors, "CLAC and STAC #UD, CR4.SMAP reserved"},
  {F::Clflushopt,   "clflushopt",   kLeaf7,     0, R::Ebx, 23, true,  true,  false, kBothVendors, "CLFLUSHOPT #UD"},
  {F::Umip,         "umip",         kLeaf7,     0, R::Ecx,  2, true,  true,  false, kBothVendors, "CR4.UMIP reserved (the profile x86-umip switches it on)"},
  {F::Pku,          "pku",          kLeaf7,     0, R::Ecx,  3, true,  true,  false, kBothVendors, "RDPKRU and WRPKRU #UD, CR4.PKE reserved"},
  {F::La57,         "la57",         kLeaf7,     0, R::Ecx, 16, true,  true,  false, kBothVendors, "CR4.LA57 reserved (4-level paging only)"},
  {F::Rdpid,        "rdpid",        kLeaf7,     0, R::Ecx, 22, false, true,  false, kBothVendors, "RDPID: not implemented"},
  {F::Pks,          "pks",          kLeaf7,     0, R::Ecx, 31, true,  true,  false, kIntelOnly,   "CR4.PKS reserved, IA32_PKRS #GP"},
  {F::LahfLm,       "lahf_lm",      kExt1,      0, R::Ecx,  0, true,  true,  false, kBothVendors, "LAHF and SAHF #UD in 64-bit mode"},
  {F::Svm,          "svm",          kExt1,      0, R::Ecx,  2, false, true,  false, kAmdOnly,     "AMD SVM: not modeled (hardware virtualization is the VT-x model, Intel only)"},
  {F::Abm,          "abm",          kExt1,      0, R::Ecx,  5, true,  true,  false, kBothVendors, "LZCNT executes as BSR"},
  {F::Prefetchw,    "3dnowprefetch", kExt1,     0, R::Ecx,  8, false, true,  false, kBothVendors, "PREFETCHW is a NOP either way; the bit is not reported"},
  {F::Syscall,      "syscall",      kExt1,      0, R::Edx, 11, true,  true,  false, kBothVendors, "EFER.SCE reserved (SYSCALL/SYSRET #UD), IA32_STAR/LSTAR/CSTAR/FMASK #GP"},
  {F::Nx,           "nx",           kExt1,      0, R::Edx, 20, true,  true,  false, kBothVendors, "EFER.NXE reserved"},
  {F::Pdpe1gb,      "pdpe1gb",      kExt1,      0, R::Edx, 26, true,  false, false, kBothVendors, "the page walk always maps 1-GiB pages: cannot be removed"},
  {F::Rdtscp,       "rdtscp",       kExt1,      0, R::Edx, 27, true,  true,  false, kBothVendors, "RDTSCP #UD, IA32_TSC_AUX #GP"},
  {F::Lm,           "lm",           kExt1,      0, R::Edx, 29, true,  true,  false, kBothVendors, "EFER.LME reserved; IA32_FS_BASE, IA32_GS_BASE, IA32_KERNEL_GS_BASE, IA32_LSTAR #GP"},
  {F::Invtsc,       "invtsc",       0x80000007, 0, R::Edx,  8, true,  true,  false, kBothVendors, "only the bit: the TSC counts the core clock in every state either way"},
  {F::Pmu,          "pmu",          0xA,        0, R::Eax,  0, true,  true,  false, kIntelOnly,   "leaf 0AH zero, the PMU MSRs #GP, RDPMC #GP (AMD's performance counters are not modeled)"},
};
// clang-format on

// Instructions that exist only with a feature (Intel SDM vol. 2, each instruction's CPUID flag).
const std::vector<FeatureInstruction> kInstructions = [] {
  std::vector<FeatureInstruction> v = {
      {ZYDIS_MNEMONIC_RDTSC, F::Tsc, 0, false},         {ZYDIS_MNEMONIC_RDTSCP, F::Tsc, 0, false},
      {ZYDIS_MNEMONIC_RDTSCP, F::Rdtscp, 0, false},     {ZYDIS_MNEMONIC_RDMSR, F::Msr, 0, false},
      {ZYDIS_MNEMONIC_WRMSR, F::Msr, 0, false},         {ZYDIS_MNEMONIC_CMPXCHG8B, F::Cx8, 0, false},
      {ZYDIS_MNEMONIC_CMPXCHG16B, F::Cx16, 0, false},   {ZYDIS_MNEMONIC_SYSENTER, F::Sep, 0, false},
      {ZYDIS_MNEMONIC_SYSEXIT, F::Sep, 0, false},       {ZYDIS_MNEMONIC_CLFLUSH, F::Clflush, 0, false},
      {ZYDIS_MNEMONIC_CLFLUSHOPT, F::Clflushopt, 0, false}, {ZYDIS_MNEMONIC_POPCNT, F::Popcnt, 0, false},
      {ZYDIS_MNEMONIC_INVPCID, F::Invpcid, 0, false},   {ZYDIS_MNEMONIC_LAHF, F::LahfLm, 0, true},
      {ZYDIS_MNEMONIC_SAHF, F::LahfLm, 0, true},        {ZYDIS_MNEMONIC_LZCNT, F::Abm, ZYDIS_MNEMONIC_BSR, false},
      {ZYDIS_MNEMONIC_CLAC, F::Smap, 0, false},         {ZYDIS_MNEMONIC_STAC, F::Smap, 0, false},
      {ZYDIS_MNEMONIC_RDPKRU, F::Pku, 0, false},        {ZYDIS_MNEMONIC_WRPKRU, F::Pku, 0, false},
      {ZYDIS_MNEMONIC_XSAVE, F::Xsave, 0, false},       {ZYDIS_MNEMONIC_XSAVE64, F::Xsave, 0, false},
      {ZYDIS_MNEMONIC_XSAVEOPT, F::Xsave, 0, false},    {ZYDIS_MNEMONIC_XSAVEOPT64, F::Xsave, 0, false},
      {ZYDIS_MNEMONIC_XRSTOR, F::Xsave, 0, false},      {ZYDIS_MNEMONIC_XRSTOR64, F::Xsave, 0, false},
      {ZYDIS_MNEMONIC_XGETBV, F::Xsave, 0, false},      {ZYDIS_MNEMONIC_XSETBV, F::Xsave, 0, false},

  };
  for (unsigned m : {ZYDIS_MNEMONIC_CMOVB, ZYDIS_MNEMONIC_CMOVBE, ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVLE,
                     ZYDIS_MNEMONIC_CMOVNB, ZYDIS_MNEMONIC_CMOVNBE, ZYDIS_MNEMONIC_CMOVNL, ZYDIS_MNEMONIC_CMOVNLE,
                     ZYDIS_MNEMONIC_CMOVNO, ZYDIS_MNEMONIC_CMOVNP, ZYDIS_MNEMONIC_CMOVNS, ZYDIS_MNEMONIC_CMOVNZ,
                     ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVZ})
    v.push_back({m, F::Cmov, 0, false});
  return v;
}();

std::string normalized(std::string s) {
  std::replace(s.begin(), s.end(), '_', '-');
  return s;
}

bool vendor_has(const FeatureInfo& f, CpuVendor v) {
  return f.vendors & (v == CpuVendor::Intel ? kIntelOnly : kAmdOnly);
}

// Features that are on by default: implemented and offered by the vendor, except UMIP, which the
// profile x86-umip gives. Those that need something attached (VMX: guest VMX, with cpu.vmx; the
// hypervisor bit: a VMM; x2APIC, TSC-deadline: the local APIC) are reported only with it.
bool on_by_default(const FeatureInfo& f, CpuVendor v) {
  return f.implemented && vendor_has(f, v) && f.feature != F::Umip;
}

}  // namespace

const char* cpu_vendor_key(CpuVendor vendor) { return vendor == CpuVendor::Intel ? "intel" : "amd"; }

const std::vector<FeatureInfo>& feature_table() {
  for (unsigned i = 0; i < kTable.size(); ++i)
    if (static_cast<unsigned>(kTable[i].feature) != i) throw std::logic_error("the feature table is out of Feature order");
  return kTable;
}

const FeatureInfo& feature_info(Feature f) { return feature_table()[static_cast<unsigned>(f)]; }

std::optional<Feature> find_feature(const std::string& name) {
  const std::string n = normalized(name);
  for (const FeatureInfo& f : feature_table())
    if (normalized(f.name) == n) return f.feature;
  return std::nullopt;
}

CpuModel::CpuModel() : CpuModel(CpuVendor::Intel) {}

CpuModel::CpuModel(CpuVendor v) : vendor(v) {
  for (const FeatureInfo& f : feature_table()) set(f.feature, on_by_default(f, v));
}

std::string apply_feature_switches(CpuModel& model, const std::vector<std::string>& switches, size_t* index) {
  for (size_t k = 0; k < switches.size(); ++k) {
    if (index) *index = k;
    const std::string& s = switches[k];
    if (s.size() < 2 || (s[0] != '+' && s[0] != '-'))
      return "'" + s + "': a feature switch is +name or -name (QEMU's -cpu feature names, e.g. +pcid, -la57)";
    const bool on = s[0] == '+';
    const std::string name = s.substr(1);
    const std::optional<Feature> found = find_feature(name);
    if (!found) {
      std::string best;
      size_t best_d = 3;
      for (const FeatureInfo& f : feature_table())
        if (size_t d = edit_distance(normalized(name), normalized(f.name)); d < best_d) best_d = d, best = f.name;
      return "'" + s + "': unknown CPU feature" + (best.empty() ? "" : " (did you mean '" + best + "'?)");
    }
    const FeatureInfo& f = feature_info(*found);
    if (on && !f.implemented) return "'" + s + "': the core does not implement " + f.name + " (" + f.without + ")";
    if (on && !vendor_has(f, model.vendor))
      return "'" + s + "': " + f.name + " is " + (f.vendors == kIntelOnly ? "Intel" : "AMD") +
             " only, and cpu.vendor is " + cpu_vendor_key(model.vendor) + ": " + f.without;
    if (!on && !f.switchable) return "'" + s + "': " + f.name + " cannot be switched off: " + f.without;
    model.set(f.feature, on);
  }
  return "";
}

uint64_t cr4_supported(const CpuModel& m) {
  struct Bit { uint64_t cr4; Feature needs; };
  static constexpr Bit kBits[] = {
      {CR4_VME, F::Vme},   {CR4_PVI, F::Vme},   {CR4_TSD, F::Tsc},        {CR4_DE, F::De},
      {CR4_PSE, F::Pse},   {CR4_PAE, F::Pae},   {CR4_MCE, F::Mce},        {CR4_PGE, F::Pge},
      {CR4_OSFXSR, F::Fxsr}, {CR4_OSXMMEXCPT, F::Sse}, {CR4_UMIP, F::Umip}, {CR4_LA57, F::La57},
      {CR4_FSGSBASE, F::Fsgsbase}, {CR4_PCIDE, F::Pcid}, {CR4_OSXSAVE, F::Xsave}, {CR4_SMEP, F::Smep},
      {CR4_SMAP, F::Smap}, {CR4_PKE, F::Pku}, {CR4_PKS, F::Pks},
  };
  uint64_t bits = CR4_PCE;  // RDPMC's CR4 bit exists on every P6-and-later CPU
  for (const Bit& b : kBits)
    if (m.has(b.needs) && feature_info(b.needs).implemented) bits |= b.cr4;
  return bits & kCr4Implemented;
}

uint64_t efer_supported(const CpuModel& m) {
  uint64_t bits = 0;
  if (m.has(F::Syscall)) bits |= EFER_SCE;
  if (m.has(F::Lm)) bits |= EFER_LME;
  if (m.has(F::Nx)) bits |= EFER_NXE;
  return bits;
}

bool msr_present(const CpuModel& m, uint32_t msr) {
  switch (msr) {
    case MSR_TSC: return m.has(F::Tsc);
    case MSR_APIC_BASE: return m.has(F::Apic);
    case MSR_SYSENTER_CS: case MSR_SYSENTER_ESP: case MSR_SYSENTER_EIP: return m.has(F::Sep);
    case MSR_PAT: return m.has(F::Pat);
    case MSR_TSC_DEADLINE: return m.has(F::TscDeadline);
    case MSR_EFER: return m.has(F::Syscall) || m.has(F::Lm) || m.has(F::Nx);
    case MSR_STAR: case MSR_CSTAR: case MSR_FMASK: return m.has(F::Syscall);
    case MSR_LSTAR: return m.has(F::Syscall) && m.has(F::Lm);
    case MSR_FS_BASE: case MSR_GS_BASE: case MSR_KERNEL_GS_BASE: return m.has(F::Lm);
    case MSR_TSC_AUX: return m.has(F::Rdtscp);
    case MSR_PKRS: return m.has(F::Pks);
    default: break;
  }
  if (system::is_mtrr_msr(msr)) return m.has(F::Mtrr);
  if (msr >= 0x800 && msr <= 0x8FF) return m.has(F::X2apic);
  return true;
}

const std::vector<FeatureInstruction>& feature_instructions() { return kInstructions; }

}  // namespace pgsim::isa

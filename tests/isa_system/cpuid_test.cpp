// CPUID against the core: every feature bit CPUID reports, for the Intel and the AMD presentation,
// is exercised by an instruction or a register write of its own (a bit without a probe fails), and
// every feature that can be switched off is then absent from CPUID and from the core alike. Also
// the feature switches (cpu.features syntax), the vendor layouts and the profile x86-umip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "isa/system/cpu_features.h"
#include "isa/system/cpuid.h"
#include "isa/system/paging.h"
#include "isa/system/pmu.h"
#include "isa/system/profile.h"
#include "isa/system/system_config.h"
#include "isa/vmx/guest_vmx.h"
#include "system_harness.h"

using namespace pgsim::isa;
using namespace pgsim::test;

namespace {

const std::vector<uint8_t> kSpin = {0xEB, 0xFE};  // JMP $
constexpr uint64_t kData = 0x6000;

// The x2APIC registers and IA32_TSC_DEADLINE, as the platform's local APIC provides them.
struct ApicMsrs : MsrDevice {
  bool read_msr(uint32_t msr, uint64_t& v) override {
    v = 0;
    return (msr >= 0x800 && msr <= 0x8FF) || msr == MSR_TSC_DEADLINE;
  }
  bool write_msr(uint32_t msr, uint64_t) override { return (msr >= 0x800 && msr <= 0x8FF) || msr == MSR_TSC_DEADLINE; }
  uint32_t cpuid_leaf1_ecx() const override { return (1u << 21) | (1u << 24); }
};

struct Hypervisor : HypervisorInterface {
  bool cpuid(uint32_t leaf, uint32_t, CpuidLeaf& out) override {
    if (leaf != 0x40000000) return false;
    out = {0x40000000, 0x6d697367, 0, 0};
    return true;
  }
  bool vmcall(Core&) override { return false; }
};

// A clock that advances 7 cycles at each reading, 3 of them halted.
struct Clock : TimeSource {
  uint64_t now = 1000;
  uint64_t current_cycle() override { return now += 7; }
  uint64_t halted_cycles() override { return (now / 7) * 3; }
};

// A core presenting `model`, with everything that provides a feature attached (the local APIC's
// MSRs, a hypervisor, guest VMX, a PMU) and a spinning handler for every exception.
struct FeatureMachine : SystemMachine {
  ApicMsrs apic;
  Hypervisor hv;
  Clock clock;
  SystemConfig config;
  std::unique_ptr<vmx::GuestVmx> vmx;
  std::unique_ptr<Pmu> pmu;
  std::unique_ptr<SystemConfigBinding> binding;

  // `attach`: guest VMX and a PMU when the model has them (false: as a platform without cpu.vmx).
  FeatureMachine(const CpuModel& model, bool ia32e, bool attach = true) : SystemMachine(ia32e) {
    for (unsigned v = 0; v < 32; ++v) {
      handler(static_cast<uint8_t>(v));
      ram.load(kHandler + v * 16, kSpin);
    }
    config.cpu = model;
    config.msr_device = &apic;
    config.hypervisor = &hv;
    if (attach && model.has(Feature::Vmx)) {
      vmx = std::make_unique<vmx::GuestVmx>(core, nullptr, nullptr);
      config.vmx = vmx.get();
    }
    core.set_time_source(&clock);
    if (attach && model.has(Feature::Pmu)) {
      pmu = std::make_unique<Pmu>(core);
      config.pmu = pmu.get();
    }
    binding = std::make_unique<SystemConfigBinding>(core, config);
  }
  // Runs `code` at CPL 0 for `n` instructions; the vector it faulted with, or -1.
  int run0(const std::vector<uint8_t>& code, unsigned n) {
    load_code(kCode, code);
    core.run(n);
    for (unsigned v = 0; v < 32; ++v)
      if (state().rip == kHandler + v * 16) return static_cast<int>(v);
    return -1;
  }
  CpuidLeaf cpuid(uint32_t leaf, uint32_t subleaf = 0) { return cpuid_leaf(core, leaf, subleaf); }
};

// MOV rAX, CR4; OR eAX, bit; MOV CR4, rAX (three instructions).
std::vector<uint8_t> set_cr4(uint64_t bit) {
  return {0x0F, 0x20, 0xE0, 0x0D, uint8_t(bit), uint8_t(bit >> 8), uint8_t(bit >> 16), uint8_t(bit >> 24),
          0x0F, 0x22, 0xE0};
}
// RDMSR; OR EAX, bit; WRMSR of IA32_EFER (ECX set by the probe's setup).
std::vector<uint8_t> set_efer(uint32_t bit) {
  return {0x0F, 0x32, 0x0D, uint8_t(bit), uint8_t(bit >> 8), uint8_t(bit >> 16), uint8_t(bit >> 24), 0x0F, 0x30};
}

// How to show that the core has a feature: code run at CPL 0 (in 64-bit mode unless `prot32`)
// that must complete without a fault and pass `check`; or, for the walker's page formats, a
// direct check of the page walk.
struct Probe {
  using Setup = std::function<void(FeatureMachine&)>;
  using Check = std::function<bool(FeatureMachine&)>;
  Probe() = default;
  Probe(bool prot32_mode, std::vector<uint8_t> bytes, unsigned n = 1, Setup before = {}, Check after = {})
      : prot32(prot32_mode), code(std::move(bytes)), instructions(n), setup(std::move(before)), check(std::move(after)) {}
  bool prot32 = false;
  std::vector<uint8_t> code;
  unsigned instructions = 1;
  Setup setup;                   // none: the state as the machine starts
  Check check;                   // none: completing without a fault is enough
  std::function<bool()> direct;  // instead of code
};

// PSE-36 (32-bit paging, CR4.PSE): a 4-MiB PDE's bits 20:13 are physical-address bits 39:32.
bool pse36_walk() {
  FlatRam ram;
  CpuState s;
  make_prot32(s, 0);
  s.cr0 |= CR0_PG;
  s.cr4 = CR4_PSE;
  s.cr3 = 0x10000;
  ram.put<uint32_t>(0x10000 + 4 * 1, 0x00400000u | (0x3u << 13) | PTE_PS | PTE_P | PTE_RW);  // 4 MiB at 3_0040_0000
  const WalkResult r = page_walk(s, ram, {0x00412345, Access::Read});
  return r.ok && r.paddr == 0x300412345ull;
}
// 1-GiB pages (4-level paging): a PDPTE with PS maps 1 GiB.
bool pdpe1gb_walk() {
  FlatRam ram;
  CpuState s;
  make_long64(s, 0);
  s.cr3 = 0x10000;
  ram.put<uint64_t>(0x10000, 0x11000 | PTE_P | PTE_RW);
  ram.put<uint64_t>(0x11000 + 8 * 1, 0x80000000ull | PTE_PS | PTE_P | PTE_RW);  // 1 GiB at 2 GiB
  const WalkResult r = page_walk(s, ram, {0x40012345, Access::Read});
  return r.ok && r.paddr == 0x80012345ull && r.page_size == (1ull << 30);
}

const std::map<Feature, Probe>& probes() {
  static const std::map<Feature, Probe> table = [] {
    using F = Feature;
    std::map<F, Probe> p;
    auto rcx = [](uint64_t v) { return [v](FeatureMachine& m) { m.reg(RCX) = v; }; };
    auto rdmsr = [&](uint32_t msr) { return Probe{false, {0x0F, 0x32}, 1, rcx(msr)}; };
    p[F::De] = {false, set_cr4(CR4_DE), 3};
    p[F::Pse] = {true, set_cr4(CR4_PSE), 3};
    p[F::Tsc] = {false, {0x0F, 0x31}};  // RDTSC
    p[F::Msr] = rdmsr(MSR_TSC);
    p[F::Pae] = {true, set_cr4(CR4_PAE), 3};
    p[F::Cx8] = {false, {0x0F, 0xC7, 0x08}, 1, [](FeatureMachine& m) { m.reg(RAX) = kData; }};  // CMPXCHG8B [RAX]
    p[F::Apic] = rdmsr(MSR_APIC_BASE);
    p[F::Sep] = {false, {0x0F, 0x34}, 1,  // SYSENTER
                 [](FeatureMachine& m) {
                   m.state().sysenter_cs = kKernelCode;
                   m.state().sysenter_eip = 0x30000;
                   m.state().sysenter_esp = 0x8000;
                   m.ram.load(0x30000, kSpin);
                 },
                 [](FeatureMachine& m) { return m.state().rip == 0x30000; }};
    p[F::Pge] = {false, set_cr4(CR4_PGE), 3};
    p[F::Cmov] = {false, {0x0F, 0x44, 0xC3}, 1, [](FeatureMachine& m) { m.reg(RBX) = 42; m.state().rflags |= ZF; },
                  [](FeatureMachine& m) { return m.reg(RAX) == 42; }};  // CMOVZ EAX, EBX
    p[F::Pat] = rdmsr(MSR_PAT);
    p[F::Pse36].direct = pse36_walk;
    p[F::Clflush] = {false, {0x0F, 0xAE, 0x38}, 1, [](FeatureMachine& m) { m.reg(RAX) = kData; }};  // CLFLUSH [RAX]
    p[F::Vmx] = {false, set_cr4(CR4_VMXE), 3};
    p[F::Cx16] = {false, {0x48, 0x0F, 0xC7, 0x08}, 1, [](FeatureMachine& m) { m.reg(RAX) = kData; }};
    p[F::Pcid] = {false, set_cr4(CR4_PCIDE), 3};
    p[F::X2apic] = rdmsr(0x802);  // the x2APIC ID register
    p[F::Popcnt] = {false, {0xF3, 0x0F, 0xB8, 0xC3}, 1, [](FeatureMachine& m) { m.reg(RBX) = 0xF0F; },
                    [](FeatureMachine& m) { return m.reg(RAX) == 8; }};
    p[F::TscDeadline] = rdmsr(MSR_TSC_DEADLINE);
    p[F::Hypervisor] = {false, {0x0F, 0xA2}, 1, [](FeatureMachine& m) { m.reg(RAX) = 0x40000000; m.reg(RCX) = 0; },
                        [](FeatureMachine& m) { return m.reg(RBX) == 0x6d697367; }};
    p[F::Smep] = {false, set_cr4(CR4_SMEP), 3};
    p[F::Invpcid] = {false, {0x66, 0x0F, 0x38, 0x82, 0x03}, 1,  // INVPCID RAX, [RBX], type 2
                     [](FeatureMachine& m) { m.reg(RAX) = 2; m.reg(RBX) = kData; }};
    p[F::Clflushopt] = {false, {0x66, 0x0F, 0xAE, 0x38}, 1, [](FeatureMachine& m) { m.reg(RAX) = kData; }};
    p[F::Umip] = {false, set_cr4(CR4_UMIP), 3};
    p[F::La57] = {true, set_cr4(CR4_LA57), 3};
    p[F::LahfLm] = {false, {0x9F}};  // LAHF in 64-bit mode
    p[F::Abm] = {false, {0xF3, 0x0F, 0xBD, 0xC3}, 1, [](FeatureMachine& m) { m.reg(RBX) = 1; },
                 [](FeatureMachine& m) { return m.reg(RAX) == 31; }};  // LZCNT EAX, EBX (BSR would give 0)
    p[F::Syscall] = {false, set_efer(EFER_SCE), 3, [](FeatureMachine& m) {
                       m.reg(RCX) = MSR_EFER;
                       m.state().efer &= ~uint64_t{EFER_SCE};
                     }};
    p[F::Nx] = {false, set_efer(EFER_NXE), 3, [](FeatureMachine& m) {
                  m.reg(RCX) = MSR_EFER;
                  m.state().efer &= ~uint64_t{EFER_NXE};
                }};
    p[F::Lm] = {true, set_efer(EFER_LME), 3, rcx(MSR_EFER)};
    p[F::Pdpe1gb].direct = pdpe1gb_walk;
    p[F::Rdtscp] = {false, {0x0F, 0x01, 0xF9}};
    // The TSC counts every cycle of the clock, halted ones too: two readings 7 cycles apart.
    p[F::Invtsc] = {false, {0x0F, 0x31, 0x48, 0x89, 0xC6, 0x0F, 0x31}, 3, {},
                    [](FeatureMachine& m) { return m.reg(RAX) - m.reg(RSI) == 7; }};
    // RDPMC of fixed counter 1 (core cycles) and RDMSR IA32_PERF_GLOBAL_CTRL.
    p[F::Pmu] = {false, {0x0F, 0x33, 0xB9, 0x8F, 0x03, 0x00, 0x00, 0x0F, 0x32}, 3, rcx(0x40000001)};
    p[F::Fpu] = {false, {0x9B, 0xDB, 0xE3}};  // FINIT
    p[F::Mtrr] = rdmsr(MSR_MTRRCAP);
    p[F::Fxsr] = {false, set_cr4(CR4_OSFXSR), 3};
    auto with_osfxsr = [](FeatureMachine& m) { m.state().cr4 |= CR4_OSFXSR; };
    p[F::Sse] = {false, {0x0F, 0x57, 0xC0}, 1, with_osfxsr};        // XORPS XMM0, XMM0
    p[F::Sse2] = {false, {0x66, 0x0F, 0xEF, 0xC0}, 1, with_osfxsr};  // PXOR XMM0, XMM0
    // MOV CR4 with OSXSAVE, then XGETBV of XCR0.
    std::vector<uint8_t> xgetbv = set_cr4(CR4_OSXSAVE);
    xgetbv.insert(xgetbv.end(), {0x0F, 0x01, 0xD0});
    p[F::Xsave] = {false, xgetbv, 4, rcx(0), [](FeatureMachine& m) { return m.reg(RAX) == XCR0_X87; }};
    p[F::Smap] = {false, {0x0F, 0x01, 0xCB, 0x0F, 0x01, 0xCA}, 2};  // STAC; CLAC
    // MOV CR4 with PKE, then RDPKRU.
    std::vector<uint8_t> rdpkru = set_cr4(CR4_PKE);
    rdpkru.insert(rdpkru.end(), {0x0F, 0x01, 0xEE});
    p[F::Pku] = {false, rdpkru, 4, rcx(0)};
    p[F::Pks] = {false, set_cr4(CR4_PKS), 3};
    return p;
  }();
  return table;
}

// Runs the probe of `f`; true when the core showed the feature.
bool probe_passes(const CpuModel& model, Feature f) {
  const Probe& p = probes().at(f);
  if (p.direct) return p.direct();
  FeatureMachine m(model, !p.prot32);
  if (p.setup) p.setup(m);
  const int fault = m.run0(p.code, p.instructions);
  return fault < 0 && (!p.check || p.check(m));
}

// Every feature the vendor's CPU can have, switched on.
CpuModel everything(CpuVendor vendor) {
  CpuModel model(vendor);
  for (const FeatureInfo& f : feature_table())
    if (f.implemented) (void)apply_feature_switches(model, {std::string("+") + f.name});
  return model;
}

// The features whose bits CPUID reports on a machine presenting `model`, found by reading every
// leaf and subleaf up to the maximum ones, bit by bit, through the table.
std::vector<Feature> reported_features(const CpuModel& model, std::vector<std::string>& unknown_bits) {
  FeatureMachine m(model, true);
  std::vector<Feature> found;
  auto note = [&](uint32_t leaf, uint32_t subleaf, CpuidReg reg, uint32_t value) {
    for (unsigned bit = 0; bit < 32; ++bit) {
      if (!(value & (1u << bit))) continue;
      bool known = false;
      for (const FeatureInfo& f : feature_table()) {
        const bool here = f.leaf == leaf && f.subleaf == subleaf && f.reg == reg && f.bit == bit;
        const bool mirror = model.vendor == CpuVendor::Amd && f.amd_mirror && leaf == 0x80000001 &&
                            reg == CpuidReg::Edx && f.bit == bit;
        if (f.feature != Feature::Pmu && (here || mirror)) {
          found.push_back(f.feature);
          known = true;
        }
      }
      if (!known) unknown_bits.push_back("leaf " + std::to_string(leaf) + "." + std::to_string(subleaf) + " reg " +
                                         std::to_string(static_cast<int>(reg)) + " bit " + std::to_string(bit));
    }
  };
  const uint32_t max_basic = m.cpuid(0).eax;
  for (uint32_t leaf = 1; leaf <= max_basic; ++leaf) {
    if (leaf == 0xA) {
      if (m.cpuid(leaf).eax & 0xFF) found.push_back(Feature::Pmu);  // the whole leaf is the feature
      continue;
    }
    if (leaf == 0xD) {  // XSAVE's components: reported exactly with the XSAVE bit
      const CpuidLeaf r = m.cpuid(leaf);
      const bool xsave = std::count(found.begin(), found.end(), Feature::Xsave) > 0;
      EXPECT_EQ(r.eax, xsave ? static_cast<uint32_t>(kXcr0Supported) : 0u);
      continue;
    }
    if (leaf != 1 && leaf != 7) {
      const CpuidLeaf r = m.cpuid(leaf);
      EXPECT_EQ(r.eax | r.ebx | r.ecx | r.edx, 0u) << "leaf " << leaf << " is not modeled, so must be zero";
      continue;
    }
    const uint32_t subleaves = leaf == 7 ? m.cpuid(7, 0).eax : 0;
    for (uint32_t sub = 0; sub <= subleaves; ++sub) {
      const CpuidLeaf r = m.cpuid(leaf, sub);
      if (leaf == 7) note(leaf, sub, CpuidReg::Ebx, r.ebx);
      note(leaf, sub, CpuidReg::Ecx, r.ecx);
      note(leaf, sub, CpuidReg::Edx, r.edx);
    }
  }
  const uint32_t max_ext = m.cpuid(0x80000000).eax;
  for (uint32_t leaf = 0x80000001; leaf <= max_ext; ++leaf) {
    if (leaf == 0x80000001 || leaf == 0x80000007) {
      const CpuidLeaf r = m.cpuid(leaf);
      note(leaf, 0, CpuidReg::Ecx, r.ecx);
      note(leaf, 0, CpuidReg::Edx, r.edx);
    }
  }
  return found;
}

class EveryReportedBit : public ::testing::TestWithParam<CpuVendor> {};

}  // namespace

TEST_P(EveryReportedBit, HasAProbeThatShowsTheCoreHasIt) {
  const CpuModel model = everything(GetParam());
  std::vector<std::string> unknown;
  const std::vector<Feature> found = reported_features(model, unknown);
  EXPECT_TRUE(unknown.empty()) << "CPUID reports bits the feature table does not know: " << unknown.front();
  EXPECT_GE(found.size(), 30u);
  for (Feature f : found) {
    const char* name = feature_info(f).name;
    ASSERT_TRUE(probes().count(f)) << "CPUID reports '" << name << "' and the test has no probe for it";
    EXPECT_TRUE(probe_passes(model, f)) << "CPUID reports '" << name << "' but the core does not have it";
  }
}

TEST_P(EveryReportedBit, SwitchedOffIsAbsentFromCpuidAndFromTheCore) {
  const CpuModel all = everything(GetParam());
  std::vector<std::string> unknown;
  for (Feature f : reported_features(all, unknown)) {
    const FeatureInfo& info = feature_info(f);
    // Invariant TSC is a statement about the TSC, which counts the core clock either way.
    if (!info.switchable || f == Feature::Invtsc) continue;
    SCOPED_TRACE(info.name);
    CpuModel without = all;
    ASSERT_EQ(apply_feature_switches(without, {std::string("-") + info.name}), "");
    std::vector<std::string> unused;
    const std::vector<Feature> still = reported_features(without, unused);
    EXPECT_EQ(std::count(still.begin(), still.end(), f), 0) << "CPUID still reports it";
    EXPECT_FALSE(probe_passes(without, f)) << "the core still has it: " << info.without;
  }
}

INSTANTIATE_TEST_SUITE_P(Vendors, EveryReportedBit, ::testing::Values(CpuVendor::Intel, CpuVendor::Amd),
                         [](const auto& info) { return std::string(cpu_vendor_key(info.param)); });

// ---- vendors -------------------------------------------------------------------------------------

TEST(CpuidVendor, IntelAndAmdSignaturesAndLayouts) {
  FeatureMachine intel(CpuModel(CpuVendor::Intel), true);
  FeatureMachine amd(CpuModel(CpuVendor::Amd), true);
  auto vendor = [](FeatureMachine& m) {
    const CpuidLeaf r = m.cpuid(0);
    std::string s(12, ' ');
    std::memcpy(&s[0], &r.ebx, 4);
    std::memcpy(&s[4], &r.edx, 4);
    std::memcpy(&s[8], &r.ecx, 4);
    return s;
  };
  EXPECT_EQ(vendor(intel), "GenuineIntel");
  EXPECT_EQ(vendor(amd), "AuthenticAMD");
  EXPECT_EQ(intel.cpuid(1).eax, 0x000906EAu);  // family 6, model 9EH, stepping 10
  EXPECT_EQ(amd.cpuid(1).eax, 0x00830F10u);    // family 8+FH = 17H, model 31H, stepping 0
  // AMD repeats the signature and the vendor in the extended leaves, and leaf 1's EDX bits 0-17
  // (those it has) in 80000001H:EDX; Intel leaves them zero.
  EXPECT_EQ(amd.cpuid(0x80000001).eax, 0x00830F10u);
  EXPECT_EQ(intel.cpuid(0x80000001).eax, 0u);
  EXPECT_EQ(amd.cpuid(0x80000000).ebx, amd.cpuid(0).ebx);
  EXPECT_EQ(intel.cpuid(0x80000000).ebx, 0u);
  // (bit 11 is SEP in leaf 1 and SYSCALL in 80000001H)
  EXPECT_EQ(amd.cpuid(0x80000001).edx & 0x3FFFF & ~0x800u, amd.cpuid(1).edx & 0x3FFFF & ~0x800u);
  EXPECT_EQ(intel.cpuid(0x80000001).edx & 0x3FFFF & ~0x800u, 0u);
  // The PMU is Intel's architectural one: leaf 0AH on Intel only; both have XSAVE's leaf 0DH.
  EXPECT_EQ(intel.cpuid(0).eax, 0xDu);
  EXPECT_NE(intel.cpuid(0xA).eax, 0u);
  EXPECT_EQ(amd.cpuid(0).eax, 0xDu);
  EXPECT_EQ(amd.cpuid(0xA).eax, 0u);
}

TEST(CpuidVendor, VmxOnlyOnIntel) {
  CpuModel amd(CpuVendor::Amd);
  const std::string why = apply_feature_switches(amd, {"+vmx"});
  EXPECT_NE(why.find("Intel only"), std::string::npos) << why;
  EXPECT_NE(why.find("SVM"), std::string::npos) << why;
  EXPECT_FALSE(amd.has(Feature::Vmx));
}

// ---- switches --------------------------------------------------------------------------------------

TEST(FeatureSwitches, RefusesUnknownUnimplementedAndUnremovableFeatures) {
  CpuModel m;
  size_t at = 99;
  const std::string typo = apply_feature_switches(m, {"-pcid", "+pcidd"}, &at);
  EXPECT_NE(typo.find("did you mean 'pcid'"), std::string::npos) << typo;
  EXPECT_EQ(at, 1u);
  EXPECT_NE(apply_feature_switches(m, {"+avx"}).find("does not implement avx"), std::string::npos);
  EXPECT_NE(apply_feature_switches(m, {"+rdrand"}).find("does not implement rdrand"), std::string::npos);
  EXPECT_NE(apply_feature_switches(m, {"-apic"}).find("cannot be switched off"), std::string::npos);
  EXPECT_NE(apply_feature_switches(m, {"pcid"}).find("+name or -name"), std::string::npos);
  CpuModel n;
  EXPECT_EQ(apply_feature_switches(n, {"-lahf-lm", "+tsc_deadline", "-la57", "+la57"}), "");  // '-' and '_' alike
  EXPECT_FALSE(n.has(Feature::LahfLm));
  EXPECT_TRUE(n.has(Feature::La57));
}

TEST(FeatureSwitches, DefaultIntelCpuHasNeitherUmipNorVmxAndSmapOnlyWhenOn) {
  FeatureMachine m(CpuModel{}, true, false);
  EXPECT_NE(m.cpuid(7).ebx & (1u << 20), 0u) << "SMAP, with CLAC and STAC";
  EXPECT_EQ(m.cpuid(7).ecx & (1u << 2), 0u) << "UMIP comes with the profile x86-umip";
  EXPECT_EQ(m.cpuid(1).ecx & (1u << 5), 0u) << "VMX: only with guest VMX attached (cpu.vmx)";
  EXPECT_EQ(m.cpuid(0xA).eax, 0u) << "leaf 0AH: only with a PMU attached";
  CpuModel no_smap;
  ASSERT_EQ(apply_feature_switches(no_smap, {"-smap"}), "");
  FeatureMachine without(no_smap, true, false);
  EXPECT_EQ(without.run0(set_cr4(CR4_SMAP), 3), GP) << "CR4.SMAP is reserved without SMAP";
}

TEST(FeatureSwitches, LahfWithoutLahfLmFaultsOnlyIn64BitMode) {
  CpuModel m;
  ASSERT_EQ(apply_feature_switches(m, {"-lahf_lm"}), "");
  FeatureMachine prot(m, false);
  EXPECT_EQ(prot.run0({0x9F}, 1), -1);
  FeatureMachine long64(m, true);
  EXPECT_EQ(long64.run0({0x9F}, 1), UD);
}

// ---- the profile x86-umip: the CPU has UMIP, CR4.UMIP decides ------------------------------------

TEST(UmipProfile, GivesTheFeatureAndCr4UmipDecides) {
  const Profile p = load_profile("x86-umip");
  CpuModel model;
  apply_profile_features(p, model);
  ASSERT_TRUE(model.has(Feature::Umip));
  FeatureMachine m(model, true);
  m.config.profile = p;
  EXPECT_NE(m.cpuid(7).ecx & (1u << 2), 0u);
  // Without CR4.UMIP, SGDT at CPL 3 stores the GDTR as on classic x86.
  m.reg(RAX) = kData;
  m.load_code(0x401000, {0x0F, 0x01, 0x00, 0xEB, 0xFE});
  m.enter_user(0x401000, 0x7000);
  m.core.run(1);
  EXPECT_EQ(m.state().rip, 0x401003u);
  EXPECT_EQ(m.ram.get<uint64_t>(kData + 2), kGdt);
  // With it (set by MOV to CR4 at CPL 0), SGDT at CPL 3 raises #GP(0).
  FeatureMachine n(model, true);
  n.config.profile = p;
  ASSERT_EQ(n.run0(set_cr4(CR4_UMIP), 3), -1);
  n.reg(RAX) = kData;
  n.load_code(0x401000, {0x0F, 0x01, 0x00});
  n.enter_user(0x401000, 0x7000);
  n.core.run(1);
  EXPECT_EQ(n.state().rip, kHandler + GP * 16u);
}

TEST(UmipProfile, ClassicX86HasNoUmipAndReservesItsCr4Bit) {
  CpuModel model;
  apply_profile_features(load_profile("x86"), model);
  FeatureMachine m(model, true);
  EXPECT_EQ(m.run0(set_cr4(CR4_UMIP), 3), GP);
}

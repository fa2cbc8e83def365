// CPUID (Intel SDM vol. 2, CPUID; AMD APM vol. 3, appendix E): leaves built from the feature table.
#include "isa/system/cpuid.h"

#include <algorithm>
#include <cstring>

#include "isa/core.h"
#include "isa/system/paging.h"
#include "isa/system/pmu.h"

namespace pgsim::isa {
namespace {

// Packs up to 12 characters into three little-endian registers.
void text_regs(const char* text, uint32_t* a, uint32_t* b, uint32_t* c) {
  char buf[12] = {};
  std::memcpy(buf, text, std::min<size_t>(std::strlen(text), 12));
  std::memcpy(a, buf, 4);
  std::memcpy(b, buf + 4, 4);
  std::memcpy(c, buf + 8, 4);
}

uint32_t& reg(CpuidLeaf& r, CpuidReg which) {
  switch (which) {
    case CpuidReg::Eax: return r.eax;
    case CpuidReg::Ebx: return r.ebx;
    case CpuidReg::Ecx: return r.ecx;
    default: return r.edx;
  }
}

// The feature bits of one leaf: every reported feature at (leaf, subleaf), and on AMD the mirrors
// of leaf 1's EDX in leaf 80000001H's EDX.
void add_feature_bits(const Core& core, uint32_t leaf, uint32_t subleaf, CpuidLeaf& r) {
  const bool amd = system_config(core).cpu.vendor == CpuVendor::Amd;
  for (const FeatureInfo& f : feature_table()) {
    if (f.feature == Feature::Pmu || !cpuid_reports(core, f.feature)) continue;
    if (f.leaf == leaf && f.subleaf == subleaf) reg(r, f.reg) |= 1u << f.bit;
    if (amd && f.amd_mirror && leaf == 0x80000001) r.edx |= 1u << f.bit;
  }
}

constexpr uint32_t kMaxBasicLeaf = 7, kMaxBasicLeafWithPmu = 0xA, kXsaveLeaf = 0xD;
constexpr uint32_t kMaxExtendedLeaf = 0x80000008;

// Bits that show the OS enabled a feature (CR4), not a feature of their own.
constexpr uint32_t kCpuid1EcxOsxsave = 1u << 27, kCpuid7EcxOspke = 1u << 4;

const char* vendor_string(CpuVendor v) { return v == CpuVendor::Intel ? "GenuineIntel" : "AuthenticAMD"; }

}  // namespace

uint32_t cpu_signature(CpuVendor vendor) {
  // Intel: family 6, model 9EH, stepping 10 (a Coffee Lake core). AMD: family 17H (base family FH
  // plus extended family 8), model 31H, stepping 0 (a Zen 2 "Rome" core).
  return vendor == CpuVendor::Intel ? 0x000906EA : 0x00830F10;
}

bool cpuid_reports(const Core& core, Feature feature) {
  const SystemConfig& config = system_config(core);
  if (!config.cpu.has(feature) || !feature_info(feature).implemented) return false;
  switch (feature) {
    case Feature::Vmx: return config.vmx != nullptr;
    case Feature::X2apic: return config.msr_device && (config.msr_device->cpuid_leaf1_ecx() & (1u << 21));
    case Feature::TscDeadline: return config.msr_device && (config.msr_device->cpuid_leaf1_ecx() & (1u << 24));
    case Feature::Hypervisor: return config.hypervisor != nullptr;
    case Feature::Pmu: return config.pmu != nullptr && config.cpu.vendor == CpuVendor::Intel;
    default: return true;
  }
}

CpuidLeaf cpuid_leaf(const Core& core, uint32_t leaf, uint32_t subleaf) {
  CpuidLeaf r;
  const SystemConfig& config = system_config(core);
  const CpuVendor vendor = config.cpu.vendor;
  if (leaf >= 0x40000000 && leaf <= 0x4FFFFFFF) {
    // -hypervisor hides the VMM's leaves with the bit, as a CPU without one would answer.
    if (cpuid_reports(core, Feature::Hypervisor) && config.hypervisor->cpuid(leaf, subleaf, r)) return r;
    return CpuidLeaf{};  // no hypervisor leaves: EAX = 0 says leaf 0x40000000 is absent
  }
  const bool pmu = cpuid_reports(core, Feature::Pmu);
  const bool xsave = cpuid_reports(core, Feature::Xsave);
  const uint32_t max_basic = xsave ? kXsaveLeaf : pmu ? kMaxBasicLeafWithPmu : kMaxBasicLeaf;
  // Above the maximum leaf Intel returns the highest basic leaf's data; report zeros, as AMD does
  // and as software that checks the maximum never sees.
  if ((leaf < 0x80000000 && leaf > max_basic) || leaf > kMaxExtendedLeaf) return r;
  switch (leaf) {
    case 0:
      r.eax = max_basic;
      text_regs(vendor_string(vendor), &r.ebx, &r.edx, &r.ecx);
      break;
    case 1:
      r.eax = cpu_signature(vendor);
      // CLFLUSH line size 64 bytes (with CLFLUSH), one logical processor, initial APIC ID 0.
      r.ebx = (cpuid_reports(core, Feature::Clflush) ? 8u << 8 : 0) | (1u << 16);
      add_feature_bits(core, 1, 0, r);
      if (xsave && (core.state().cr4 & CR4_OSXSAVE)) r.ecx |= kCpuid1EcxOsxsave;
      break;
    case 7:
      if (subleaf == 0) {  // EAX = 0: subleaf 0 is the last
        add_feature_bits(core, 7, 0, r);
        if (cpuid_reports(core, Feature::Pku) && (core.state().cr4 & CR4_PKE)) r.ecx |= kCpuid7EcxOspke;
      }
      break;
    case kXsaveLeaf:  // the x87 and SSE components in the legacy region, then the 64-byte header
      if (!xsave) break;
      if (subleaf == 0) {
        r.eax = static_cast<uint32_t>(kXcr0Supported);
        r.ebx = 576;  // the area for the components XCR0 enables (only legacy ones exist here)
        r.ecx = 576;  // the area for every supported component
      } else if (subleaf == 1) {
        r.eax = 1u << 0;  // XSAVEOPT
      }
      break;
    case 0xA:
      if (pmu) r = config.pmu->cpuid_leaf();
      break;
    case 0x80000000:
      r.eax = kMaxExtendedLeaf;
      if (vendor == CpuVendor::Amd) text_regs(vendor_string(vendor), &r.ebx, &r.edx, &r.ecx);
      break;
    case 0x80000001:
      if (vendor == CpuVendor::Amd) r.eax = cpu_signature(vendor);  // Intel: reserved, zero
      add_feature_bits(core, leaf, 0, r);
      break;
    case 0x80000002: case 0x80000003: case 0x80000004: {
      static const char brand[48] = "pgsim x86-64 processor";
      uint32_t regs[4];
      std::memcpy(regs, brand + 16 * (leaf - 0x80000002), 16);
      r = {regs[0], regs[1], regs[2], regs[3]};
      break;
    }
    case 0x80000007: add_feature_bits(core, leaf, 0, r); break;
    case 0x80000008: {
      // Linear-address width: 57 bits with 5-level paging, else 48.
      const unsigned linear = cpuid_reports(core, Feature::La57) ? kMaxLinearAddrBits : 48;
      r.eax = (linear << 8) | kMaxPhysAddrBits;
      break;
    }
    default: break;  // leaves 2-6, 8, 9 and 80000005H-80000006H: zero
  }
  return r;
}

}  // namespace pgsim::isa

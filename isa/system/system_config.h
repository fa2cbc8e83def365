// What the system instructions consult beyond the architectural state: the CPU profile and the
// hypervisor interface a VMM may present (CPUID leaves 0x40000000+, VMCALL). One per Core.
#pragma once
#include <cstdint>

#include "isa/system/cpu_features.h"
#include "isa/system/profile.h"

namespace pgsim::isa {

class Core;
class Pmu;
namespace vmx {
class GuestVmx;
}

// One CPUID leaf's output registers.
struct CpuidLeaf {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

// Implemented by a VMM that makes itself known to the guest (paravirtualization).
class HypervisorInterface {
 public:
  virtual ~HypervisorInterface() = default;
  // CPUID leaves 0x40000000-0x4FFFFFFF. Return false for a leaf the hypervisor does not define.
  virtual bool cpuid(uint32_t leaf, uint32_t subleaf, CpuidLeaf& out) = 0;
  // The guest executed VMCALL: perform the hypercall and return true, or return false for #UD.
  // RIP already points past VMCALL when this returns true.
  virtual bool vmcall(Core& core) = 0;
};

// MSRs that belong to devices (x2APIC registers 0x800-0x8FF, IA32_TSC_DEADLINE, ...). The core
// asks it for every MSR it does not hold itself, and before it accepts a write to IA32_APIC_BASE.
class MsrDevice {
 public:
  virtual ~MsrDevice() = default;
  // Return false when the MSR is not the device's (the instruction then raises #GP(0)).
  virtual bool read_msr(uint32_t msr, uint64_t& value) = 0;
  virtual bool write_msr(uint32_t msr, uint64_t value) = 0;
  // The CPUID.01H:ECX feature bits the device's MSRs provide: bit 21 (x2APIC), bit 24
  // (TSC-deadline timer). CPUID reports only what some device implements.
  virtual uint32_t cpuid_leaf1_ecx() const { return 0; }
  // CR8 is the local APIC's TPR[7:4] (SDM vol. 3, 11.8.6): MOV to CR8 also calls write_cr8, and
  // MOV from CR8 asks read_cr8 first (false: the core answers from CpuState::cr8).
  virtual void write_cr8(uint64_t value) {}
  virtual bool read_cr8(uint64_t& value) { return false; }
};

struct SystemConfig {
  Profile profile;                            // behaviour of sensitive instructions at CPL > 0
  HypervisorInterface* hypervisor = nullptr;  // none: leaf 0x40000000 absent, VMCALL raises #UD
  MsrDevice* msr_device = nullptr;            // none: only the MSRs of CpuState exist
  // VMX for guest code (isa/vmx/guest_vmx.h): none: the VMX instructions raise #UD, CPUID.1:ECX.VMX
  // is 0, CR4.VMXE cannot be set and the VMX MSRs do not exist, as on a processor without VMX.
  vmx::GuestVmx* vmx = nullptr;
  // The CPU CPUID presents (vendor, features); a feature switched off is absent from the core too.
  CpuModel cpu;
  // Performance monitoring (isa/system/pmu.h): none: CPUID leaf 0AH is zero, the PMU MSRs and
  // RDPMC raise #GP, as on a CPU without architectural performance monitoring.
  Pmu* pmu = nullptr;
};

// Attaches a SystemConfig to a Core for the lifetime of the binding (the platform, the VMM or a
// test owns both): Core::set_system_config for the binding's scope. A Core without one behaves as
// classic x86 with no hypervisor and no MSR device.
class SystemConfigBinding {
 public:
  SystemConfigBinding(Core& core, SystemConfig& config);
  ~SystemConfigBinding();
  SystemConfigBinding(const SystemConfigBinding&) = delete;
  SystemConfigBinding& operator=(const SystemConfigBinding&) = delete;

 private:
  Core& core_;
};

// The SystemConfig the system instructions of `core` consult.
const SystemConfig& system_config(const Core& core);

}  // namespace pgsim::isa

// A guest for the VMX tests: the 64-bit protected-mode world of tests/isa_system/system_harness.h
// (GDT, IDT, TSS in flat RAM), a VMCS, instructions decoded from bytes, and a VMCS whose host and
// guest states are that world, so that VM entry passes its checks unless a test breaks one.
#pragma once
#include <cstdint>
#include <vector>

#include "isa/decoder.h"
#include "isa/dispatch.h"
#include "isa/vmx/capabilities.h"
#include "isa/vmx/non_root.h"
#include "isa/vmx/transitions.h"
#include "isa/vmx/vmcs.h"
#include "tests/isa_system/system_harness.h"

namespace pgsim::test {

// Physical pages the tests give the VMCS.
constexpr uint64_t kIoBitmapA = 0x100000, kIoBitmapB = 0x101000, kMsrBitmaps = 0x102000, kVirtualApic = 0x103000;
constexpr uint64_t kHostRip = 0x30000, kHostRsp = 0x98000;

struct VmxMachine : SystemMachine {
  isa::vmx::Vmcs vmcs;
  isa::Decoder decoder{isa::Dispatch::instance()};
  isa::Insn insn;

  VmxMachine() : SystemMachine(true) {
    state().cr4 |= isa::CR4_VMXE;  // in VMX operation (IA32_VMX_CR4_FIXED0)
    core.sync_mode();
  }

  // Decodes `bytes` as the instruction at RIP in the current mode.
  const isa::Insn& decode(const std::vector<uint8_t>& bytes) {
    decoder.decode(state().mode(), bytes.data(), bytes.size(), insn);
    return insn;
  }
  isa::vmx::InsnDecision decide(const std::vector<uint8_t>& bytes) {
    return isa::vmx::decide_instruction(vmcs, core, decode(bytes));
  }

  void set_proc(uint32_t controls) { vmcs.set(isa::vmx::VmcsField::ProcBasedControls, controls); }
  void set_proc2(uint32_t controls) {
    using namespace isa::vmx;
    vmcs.set(VmcsField::ProcBasedControls, vmcs.get32(VmcsField::ProcBasedControls) | PROC_ACTIVATE_SECONDARY_CONTROLS);
    vmcs.set(VmcsField::SecondaryProcBasedControls, controls);
  }

  // A VMCS that VM entry accepts: the controls each capability requires to be 1 (plus IA-32e
  // mode guest and a 64-bit host), the current state as guest state and as host state.
  void make_enterable() {
    using namespace isa::vmx;
    using F = VmcsField;
    auto must_be_1 = [](VmxCapabilityMsr msr) { return static_cast<uint32_t>(vmx_capability(msr)); };
    vmcs.set(F::PinBasedControls, must_be_1(IA32_VMX_TRUE_PINBASED_CTLS));
    vmcs.set(F::ProcBasedControls, must_be_1(IA32_VMX_TRUE_PROCBASED_CTLS));
    vmcs.set(F::ExitControls, must_be_1(IA32_VMX_TRUE_EXIT_CTLS) | EXIT_HOST_ADDRESS_SPACE_SIZE);
    vmcs.set(F::EntryControls, must_be_1(IA32_VMX_TRUE_ENTRY_CTLS) | ENTRY_IA32E_MODE_GUEST);
    const isa::CpuState& s = state();
    save_guest_state(vmcs, s);
    vmcs.set(F::VmcsLinkPointer, ~0ull);
    vmcs.set(F::HostCr0, s.cr0);
    vmcs.set(F::HostCr3, s.cr3);
    vmcs.set(F::HostCr4, s.cr4);
    vmcs.set(F::HostCsSelector, kKernelCode);
    for (F f : {F::HostSsSelector, F::HostDsSelector, F::HostEsSelector, F::HostFsSelector, F::HostGsSelector})
      vmcs.set(f, kKernelData);
    vmcs.set(F::HostTrSelector, kTssSel);
    vmcs.set(F::HostTrBase, kTss);
    vmcs.set(F::HostGdtrBase, kGdt);
    vmcs.set(F::HostIdtrBase, kIdt);
    vmcs.set(F::HostRip, kHostRip);
    vmcs.set(F::HostRsp, kHostRsp);
  }
};

}  // namespace pgsim::test

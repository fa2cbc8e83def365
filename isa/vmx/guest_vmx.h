// VMX for guest code (Intel SDM vol. 3, ch. 24 "Introduction to VMX operation", ch. 31 "VMX
// instruction reference"): the processor side of VT-x that a guest hypervisor programs with VMXON,
// VMCLEAR, VMPTRLD, VMPTRST, VMREAD, VMWRITE, VMLAUNCH, VMRESUME, INVEPT, INVVPID and VMXOFF, with
// the capability MSRs, IA32_FEATURE_CONTROL and CR4.VMXE. It is the same VT-x model the hw_assist
// VMM drives from C++ (vmcs.h, capabilities.h, transitions.h, non_root.h, event_exits.h); here the
// VMCS is the guest hypervisor's, entries are its VMLAUNCH and VMRESUME, and VM exits load the host
// state it wrote, so that its own code at HOST_RIP handles them.
//
// The VMCS lives in guest memory at the VMPTRLD address; its layout is the model's own (SDM 25.2):
//   +0  revision identifier (IA32_VMX_BASIC[30:0]; bit 31, shadow VMCS, must be 0)
//   +4  VMX-abort indicator
//   +8  launch state (0 clear, 1 launched)
//   +16 every field in Vmcs::storage() order, 8 bytes each
// The current VMCS is cached in the processor and written back on VMCLEAR, on a VMPTRLD of another
// VMCS and on VMXOFF, as real processors do; software that reads a VMCS region directly sees what
// was last written back.
//
// In VMX non-root operation the nested guest runs on the core directly; GuestVmx is the core's
// TrapHook in front of the platform's (the native VMM's), deciding with decide_instruction before
// the instructions that may exit, taking exceptions the exception bitmap selects, external
// interrupts with external-interrupt exiting, the interrupt window and EPT violations and
// misconfigurations (the nested guest's EPT, which the MMU walks in two dimensions like
// hw_assist's). Not implemented, and refused loudly: external-interrupt exiting without
// "acknowledge interrupt on exit", a triple fault of the nested guest (it shuts the machine down),
// NMIs, the VMX-preemption timer, SMM and dual-monitor treatment, VMCS shadowing.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "isa/core_if.h"
#include "isa/system/ept.h"
#include "isa/vmx/exit_reason.h"
#include "isa/vmx/vmcs.h"

namespace pgsim::isa {
class Dispatch;
struct Insn;
}

namespace pgsim::isa::vmx {

// IA32_FEATURE_CONTROL (SDM vol. 4, table 2-2): the lock bit and "enable VMX outside SMX".
constexpr uint32_t IA32_FEATURE_CONTROL = 0x3A;
enum FeatureControl : uint64_t {
  FEATURE_CONTROL_LOCK = 1ull << 0,
  FEATURE_CONTROL_VMX_IN_SMX = 1ull << 1,
  FEATURE_CONTROL_VMX_OUTSIDE_SMX = 1ull << 2,
};

// Offsets in a VMCS region of the model's own layout (above).
constexpr uint64_t kVmcsAbortOffset = 4, kVmcsLaunchStateOffset = 8, kVmcsFieldsOffset = 16;

// What a guest hypervisor did with VMX, for statistics.
struct GuestVmxCounters {
  uint64_t entries = 0;         // VM entries that reached the nested guest
  uint64_t entry_failures = 0;  // VMLAUNCH/VMRESUME that failed (VMfail, or a VM-entry failure exit)
  uint64_t exits = 0;           // VM exits to the guest hypervisor (VM-entry failures included)
  uint64_t instructions = 0;    // VMX instructions executed in VMX root operation or to enter it
  std::map<std::string, uint64_t> exits_by_reason;   // by exit_reason_name
  std::map<std::string, uint64_t> instructions_by_mnemonic;  // "vmxon", "vmread", ...
};

class GuestVmx final : public TrapHook {
 public:
  // `nested_paging`: the MMU's EPT switch (nullptr: a nested guest cannot enable EPT; VM entry
  // with "enable EPT" then stops the run). `outer`: the hook this one stands in front of (the
  // platform's VMM), which sees everything outside VMX non-root operation.
  GuestVmx(Core& core, NestedPagingControl* nested_paging, TrapHook* outer);

  const GuestVmxCounters& counters() const { return counters_; }
  bool in_vmx_operation() const { return vmx_operation_; }
  bool non_root() const { return non_root_; }
  uint64_t current_vmcs_pointer() const { return current_; }

  // ---- MSRs (IA32_FEATURE_CONTROL and the capability MSRs 0x480-0x490) ---------------------------
  // False when the MSR is not VMX's. A write that the MSR refuses throws Fault::gp(0).
  bool read_msr(uint32_t msr, uint64_t& value) const;
  bool write_msr(uint32_t msr, uint64_t value);
  // In VMX operation CR0 and CR4 keep the bits IA32_VMX_CR0/CR4_FIXED0 and _FIXED1 fix (SDM 24.8):
  // MOV to CR0/CR4 of a value that does not raises #GP(0).
  void check_cr_write(unsigned cr, uint64_t value) const;

  // ---- The VMX instructions (SDM vol. 3, ch. 31), after the #UD checks every one of them makes
  // first (register_vmx_instructions); in VMX non-root operation they exit before they get here. ----
  void vmxon(Core& core, const Insn& insn);
  void vmxoff(Core& core, const Insn& insn);
  void vmclear(Core& core, const Insn& insn);
  void vmptrld(Core& core, const Insn& insn);
  void vmptrst(Core& core, const Insn& insn);
  void vmread(Core& core, const Insn& insn);
  void vmwrite(Core& core, const Insn& insn);
  void vmlaunch(Core& core, const Insn& insn);
  void vmresume(Core& core, const Insn& insn);
  void invept(Core& core, const Insn& insn);
  void invvpid(Core& core, const Insn& insn);
  void count_instruction(const Insn& insn);

  // ---- isa::TrapHook ----------------------------------------------------------------------------
  bool on_event(Core& core, const Event& event) override;
  bool on_delivery_fault(Core& core, const Event& delivering, const Event& fault) override;
  void on_instruction_boundary(Core& core) override;
  bool wants_before(const Insn& insn, uint64_t paddr) override;
  PreExecute before_instruction(Core& core, const Insn& insn) override;
  void after_instruction(Core& core, const Insn& insn) override;

 private:
  // VMsucceed, VMfailInvalid, VMfailValid(error), VMfail(error) (SDM 31.2).
  void succeed(Core& core);
  void fail_invalid(Core& core);
  void fail(Core& core, VmInstructionError error);
  bool current_valid() const { return current_ != kInvalidPointer; }
  std::optional<uint64_t> vmcs_operand(Core& core, const Insn& insn, VmInstructionError invalid,
                                       VmInstructionError vmxon_region);
  // The host page of a 4 KiB region the guest named; nullptr when it is not RAM.
  uint8_t* region(uint64_t address) const;
  void write_back();
  void load_current(uint64_t address);
  void exit_to_host(Core& core, const VmExit& exit);
  void enter(Core& core, bool resume);
  void use_nested_ept(bool on);
  void invalidate_all_contexts(Core& core);

  static constexpr uint64_t kInvalidPointer = ~0ull;

  Core& core_;
  NestedPagingControl* nested_paging_;
  TrapHook* outer_;
  uint64_t feature_control_ = 0;
  bool vmx_operation_ = false;
  bool non_root_ = false;
  bool nested_ept_ = false;  // the MMU translates through the nested guest's EPT
  uint64_t vmxon_region_ = 0;
  uint64_t current_ = kInvalidPointer;  // the current-VMCS pointer
  Vmcs vmcs_;                           // the current VMCS, cached
  std::optional<EptExit> ept_exit_;     // recorded by the MMU, taken as the VM exit
  GuestVmxCounters counters_;
};

// The semantics of the VMX instructions (registered by register_system_instructions): #UD without
// a GuestVmx in the core's SystemConfig, as on a processor without VMX.
void register_vmx_instructions(Dispatch& dispatch);

}  // namespace pgsim::isa::vmx

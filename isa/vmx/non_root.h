// VMX non-root operation: which instructions cause VM exits and how the others behave (Intel SDM
// vol. 3, ch. 26). The core's pre-execute hook calls decide_instruction before every instruction
// a guest runs in non-root operation and acts on the answer; the helpers below give the values
// of the instructions whose behaviour non-root operation changes without an exit (26.3, 30.3).
#pragma once
#include <cstdint>
#include <optional>

#include "isa/bus_if.h"
#include "isa/cpu_state.h"
#include "isa/fault.h"
#include "isa/insn.h"
#include "isa/vmx/exit_reason.h"
#include "isa/vmx/vmcs.h"

namespace pgsim::isa {
class Core;
}

namespace pgsim::isa::vmx {

// An instruction whose behaviour differs in non-root operation although it does not exit; the
// core computes its result with the helper named.
enum class Virtualized : uint8_t {
  None,
  MovToCr0,    // cr_value_to_load(vmcs, 0, ...): bits in the CR0 guest/host mask keep their value
  MovToCr4,    // cr_value_to_load(vmcs, 4, ...)
  Clts,        // cr_value_to_load(vmcs, 0, cr0, cr0 & ~TS): CLTS leaves a host-owned TS alone
  Lmsw,        // lmsw_value_to_load(vmcs, ...)
  MovFromCr0,  // guest_cr_value(vmcs, 0, cr0): masked bits come from the read shadow
  MovFromCr4,  // guest_cr_value(vmcs, 4, cr4)
  Smsw,        // guest_cr_value(vmcs, 0, cr0), of which SMSW stores the low bits
  MovToCr8,    // write_virtual_tpr: the value goes to the virtual-APIC page (use TPR shadow)
  MovFromCr8,  // read_virtual_tpr
  Rdtsc,       // guest_tsc(vmcs, tsc): RDTSC, RDTSCP and RDMSR of IA32_TSC see TSC + offset
};

enum class NonRootAction : uint8_t {
  Execute,     // no exit; the instruction behaves as in root operation (or as `virtualized` says)
  Exit,        // VM exit before the instruction executes: `exit`, with RIP at the instruction
  Raise,       // the instruction raises `fault` instead (see decide_instruction)
};

struct InsnDecision {
  NonRootAction action = NonRootAction::Execute;
  Virtualized virtualized = Virtualized::None;  // with Execute
  VmExit exit{};                                // with Exit
  Fault fault{0};                               // with Raise
};

// Decides what `insn`, about to execute at state().rip in VMX non-root operation under `vmcs`,
// does (SDM 26.1). Takes the Core for what the decision reads besides CpuState: the TSS I/O
// permission bitmap (linear memory), the I/O and MSR bitmaps (core.bus(), physical) and the
// memory operand of LMSW. Raise reports
//  - the faults an instruction raises for its own privilege and mode checks, which have priority
//    over the VM exit (SDM 26.1.1: #UD, CPL-based #GP, #GP from the TSS I/O permission bitmap);
//    the core could let the instruction raise them itself, except where non-root operation adds
//    a check, so they are reported here once for all;
//  - the faults non-root operation adds: #UD for RDTSCP without "enable RDTSCP" and for INVPCID
//    without "enable INVPCID" (26.3), #UD for VMFUNC (VM functions are not offered);
//  - a fault reading LMSW's memory operand, whose value the exit qualification holds.
InsnDecision decide_instruction(const Vmcs& vmcs, Core& core, const Insn& insn);

// The mode check every VMX instruction makes first (SDM vol. 3, ch. 31: "IF (CR0.PE = 0) or
// (RFLAGS.VM = 1) or (IA32_EFER.LMA = 1 and CS.L = 0) THEN #UD"): in non-root operation before it
// exits, in root operation before it runs.
void require_vmx_mode(const CpuState& s);

// Carries out on the guest's state an instruction that decide_instruction answered Execute with
// a Virtualized behaviour (SDM 26.3): CR reads through the read shadows, CR writes that keep the
// host-owned bits, CR8 on the virtual TPR, RDTSC with the TSC offset. Returns false for
// Virtualized::None (the instruction runs as in root operation: the caller lets the core execute
// it) and true when it was carried out here. A MOV to CR8 whose TPR virtualization asks for the
// trap-like TPR-below-threshold exit leaves it in `tpr_exit`, for the caller to take once RIP is
// past the instruction. Every user of the VMX model (the hw_assist VMM, guest VMX) runs this one.
bool execute_virtualized(const Vmcs& vmcs, Core& core, const Insn& insn, Virtualized how,
                         std::optional<VmExit>* tpr_exit);

// ---- Values of the virtualized instructions (SDM 26.3) -------------------------------------------

// MOV from CR0/CR4 and SMSW: bits set in the guest/host mask read from the read shadow.
uint64_t guest_cr_value(const Vmcs& vmcs, unsigned cr, uint64_t real);
// MOV to CR0/CR4 (and CLTS) without an exit: bits set in the guest/host mask are not modified.
uint64_t cr_value_to_load(const Vmcs& vmcs, unsigned cr, uint64_t current, uint64_t source);
// LMSW without an exit: loads CR0[3:0] from the source, except masked bits (and PE is never cleared).
uint64_t lmsw_value_to_load(const Vmcs& vmcs, uint64_t current_cr0, uint16_t source);
// RDTSC/RDTSCP/RDMSR(IA32_TSC) with "use TSC offsetting": the TSC plus the TSC offset.
uint64_t guest_tsc(const Vmcs& vmcs, uint64_t tsc);

// The virtual TPR: offset 80H of the virtual-APIC page (SDM 30.1.1).
constexpr uint64_t kVirtualApicTprOffset = 0x80;
// MOV from CR8 with "use TPR shadow": VTPR[7:4] (SDM 30.3).
uint64_t read_virtual_tpr(const Vmcs& vmcs, PhysicalBus& bus);
// MOV to CR8 with "use TPR shadow": VTPR[7:4] = source[3:0], VTPR[31:8] and [3:0] cleared; then
// TPR virtualization (30.1.2): without virtual-interrupt delivery, a TPR-below-threshold VM exit
// when VTPR[7:4] < TPR threshold[3:0]. That exit is trap-like: it follows the instruction, so
// the core commits RIP past MOV CR8 before it hands the exit to vm_exit.
std::optional<VmExit> write_virtual_tpr(const Vmcs& vmcs, PhysicalBus& bus, uint64_t source);

// ---- The bitmaps (SDM 25.6.4, 25.6.9), read from physical memory -----------------------------------

// True if an access of `size` bytes at `port` is selected by I/O bitmap A (ports 0-7FFFH) or B
// (8000H-FFFFH); an access that wraps past FFFFH always is (26.1.3).
bool io_bitmap_selects(const Vmcs& vmcs, PhysicalBus& bus, uint16_t port, unsigned size);
// True if RDMSR (`write` false) or WRMSR of `msr` is selected by the MSR bitmaps; MSRs outside
// 0-1FFFH and C0000000H-C0001FFFH always are (26.1.3).
bool msr_bitmap_selects(const Vmcs& vmcs, PhysicalBus& bus, uint32_t msr, bool write);

}  // namespace pgsim::isa::vmx

// VM-exit reasons and the encodings of the exit-information fields (Intel SDM vol. 3, appendix C
// "VMX basic exit reasons", 28.2.1 "Basic VM-exit information" with tables 28-1..28-7 for the
// exit qualifications, 28.2.5 "Information for VM exits due to instruction execution" with its
// instruction-information tables, and 25.9.2 / 25.8.3 for the interruption-information formats).
// Plain data and small encoders: who decides an exit is isa/vmx/non_root.h and event_exits.h.
#pragma once
#include <cstdint>

#include "isa/cpu_state.h"

namespace pgsim::isa::vmx {

// The basic exit reason (bits 15:0 of the exit-reason field), numbered as SDM appendix C.
// X(name, number, statistic name, description). One row per reason the SDM defines, so that a
// report can name any number a VMCS holds; which of them this model raises is said in
// isa/README.md ("VMX model").
#define PGSIM_VMX_EXIT_REASONS(X)                                                                        \
  X(ExceptionOrNmi, 0, "exception_or_nmi", "an exception selected by the exception bitmap, or an NMI with NMI exiting") \
  X(ExternalInterrupt, 1, "external_interrupt", "an external interrupt with external-interrupt exiting")             \
  X(TripleFault, 2, "triple_fault", "a triple fault in the guest")                                                   \
  X(InitSignal, 3, "init_signal", "an INIT signal")                                                                  \
  X(StartupIpi, 4, "startup_ipi", "a start-up IPI in wait-for-SIPI state")                                           \
  X(IoSmi, 5, "io_smi", "an SMI right after an I/O instruction")                                                     \
  X(OtherSmi, 6, "other_smi", "an SMI not tied to an I/O instruction")                                               \
  X(InterruptWindow, 7, "interrupt_window", "the guest can take an interrupt (interrupt-window exiting)")             \
  X(NmiWindow, 8, "nmi_window", "the guest can take an NMI (NMI-window exiting)")                                    \
  X(TaskSwitch, 9, "task_switch", "a task switch")                                                                   \
  X(Cpuid, 10, "cpuid", "CPUID (always exits)")                                                                      \
  X(Getsec, 11, "getsec", "GETSEC (always exits)")                                                                   \
  X(Hlt, 12, "hlt", "HLT with HLT exiting")                                                                          \
  X(Invd, 13, "invd", "INVD (always exits)")                                                                         \
  X(Invlpg, 14, "invlpg", "INVLPG with INVLPG exiting")                                                              \
  X(Rdpmc, 15, "rdpmc", "RDPMC with RDPMC exiting")                                                                  \
  X(Rdtsc, 16, "rdtsc", "RDTSC with RDTSC exiting")                                                                  \
  X(Rsm, 17, "rsm", "RSM in SMM")                                                                                    \
  X(Vmcall, 18, "vmcall", "VMCALL (always exits)")                                                                   \
  X(Vmclear, 19, "vmclear", "VMCLEAR (always exits)")                                                                \
  X(Vmlaunch, 20, "vmlaunch", "VMLAUNCH (always exits)")                                                             \
  X(Vmptrld, 21, "vmptrld", "VMPTRLD (always exits)")                                                                \
  X(Vmptrst, 22, "vmptrst", "VMPTRST (always exits)")                                                                \
  X(Vmread, 23, "vmread", "VMREAD (always exits)")                                                                   \
  X(Vmresume, 24, "vmresume", "VMRESUME (always exits)")                                                             \
  X(Vmwrite, 25, "vmwrite", "VMWRITE (always exits)")                                                                \
  X(Vmxoff, 26, "vmxoff", "VMXOFF (always exits)")                                                                   \
  X(Vmxon, 27, "vmxon", "VMXON (always exits)")                                                                      \
  X(CrAccess, 28, "cr_access", "MOV to/from CR0/CR3/CR4/CR8, CLTS or LMSW selected by the CR controls")               \
  X(DrAccess, 29, "dr_access", "MOV to/from a debug register with MOV-DR exiting")                                   \
  X(IoInstruction, 30, "io_instruction", "IN, OUT, INS or OUTS selected by the I/O controls or bitmaps")             \
  X(Rdmsr, 31, "rdmsr", "RDMSR selected by the MSR bitmaps")                                                         \
  X(Wrmsr, 32, "wrmsr", "WRMSR selected by the MSR bitmaps")                                                         \
  X(EntryFailGuestState, 33, "entry_failure_guest_state", "VM entry failed: invalid guest state")                    \
  X(EntryFailMsrLoading, 34, "entry_failure_msr_loading", "VM entry failed while loading MSRs")                      \
  X(Mwait, 36, "mwait", "MWAIT with MWAIT exiting")                                                                  \
  X(MonitorTrapFlag, 37, "monitor_trap_flag", "the monitor trap flag")                                               \
  X(Monitor, 39, "monitor", "MONITOR with MONITOR exiting")                                                          \
  X(Pause, 40, "pause", "PAUSE with PAUSE exiting")                                                                  \
  X(EntryFailMachineCheck, 41, "entry_failure_machine_check", "VM entry failed: machine-check event")               \
  X(TprBelowThreshold, 43, "tpr_below_threshold", "the virtual TPR fell below the TPR threshold")                    \
  X(ApicAccess, 44, "apic_access", "an access to the APIC-access page")                                              \
  X(VirtualizedEoi, 45, "virtualized_eoi", "a virtualized EOI")                                                      \
  X(GdtrIdtrAccess, 46, "gdtr_idtr_access", "LGDT, LIDT, SGDT or SIDT with descriptor-table exiting")                \
  X(LdtrTrAccess, 47, "ldtr_tr_access", "LLDT, LTR, SLDT or STR with descriptor-table exiting")                      \
  X(EptViolation, 48, "ept_violation", "a guest-physical access the EPT paging structures do not allow")             \
  X(EptMisconfig, 49, "ept_misconfig", "a misconfigured EPT paging-structure entry")                                 \
  X(Invept, 50, "invept", "INVEPT (always exits)")                                                                   \
  X(Rdtscp, 51, "rdtscp", "RDTSCP with RDTSC exiting")                                                               \
  X(PreemptionTimer, 52, "preemption_timer", "the VMX-preemption timer expired")                                     \
  X(Invvpid, 53, "invvpid", "INVVPID (always exits)")                                                                \
  X(Wbinvd, 54, "wbinvd", "WBINVD with WBINVD exiting")                                                              \
  X(Xsetbv, 55, "xsetbv", "XSETBV (always exits)")                                                                   \
  X(ApicWrite, 56, "apic_write", "a write to a virtualized APIC register")                                            \
  X(Rdrand, 57, "rdrand", "RDRAND with RDRAND exiting")                                                              \
  X(Invpcid, 58, "invpcid", "INVPCID with INVLPG exiting")                                                           \
  X(Vmfunc, 59, "vmfunc", "VMFUNC of a function not enabled")                                                        \
  X(Encls, 60, "encls", "ENCLS with ENCLS exiting")                                                                  \
  X(Rdseed, 61, "rdseed", "RDSEED with RDSEED exiting")                                                              \
  X(PmlFull, 62, "pml_full", "the page-modification log is full")                                                    \
  X(Xsaves, 63, "xsaves", "XSAVES with the XSS-exiting bitmap")                                                      \
  X(Xrstors, 64, "xrstors", "XRSTORS with the XSS-exiting bitmap")

enum class ExitReason : uint16_t {
#define PGSIM_X(name, number, stat, text) name = number,
  PGSIM_VMX_EXIT_REASONS(PGSIM_X)
#undef PGSIM_X
};

// Bit 31 of the exit-reason field: the exit is a VM-entry failure (SDM 28.2.1, 27.8).
constexpr uint32_t kExitReasonEntryFailure = 1u << 31;

// The stable lower-case statistic name ("cr_access") and a one-line description; both are
// nullptr for a number the SDM does not define.
const char* exit_reason_name(unsigned number);
const char* exit_reason_description(unsigned number);
inline const char* exit_reason_name(ExitReason r) { return exit_reason_name(static_cast<unsigned>(r)); }
// Every defined reason, in increasing order (for statistics tables).
struct ExitReasonInfo {
  ExitReason reason;
  const char* name;
  const char* description;
};
const ExitReasonInfo* exit_reasons(unsigned* count);

// ---- Exit qualifications ------------------------------------------------------------------------

// Control-register accesses (SDM table 28-3).
enum class CrAccessType : uint8_t { MovToCr = 0, MovFromCr = 1, Clts = 2, Lmsw = 3 };
constexpr uint64_t cr_access_qualification(unsigned cr, CrAccessType type, unsigned gpr, bool lmsw_memory = false,
                                           uint16_t lmsw_source = 0) {
  return (cr & 0xF) | (uint64_t(type) << 4) | (uint64_t(lmsw_memory) << 6) | (uint64_t(gpr & 0xF) << 8) |
         (uint64_t(lmsw_source) << 16);
}

// MOV DR (SDM table 28-4): bit 4 is 0 for MOV to DR, 1 for MOV from DR.
constexpr uint64_t dr_access_qualification(unsigned dr, bool from_dr, unsigned gpr) {
  return (dr & 7) | (uint64_t(from_dr) << 4) | (uint64_t(gpr & 0xF) << 8);
}

// I/O instructions (SDM table 28-5): size-1 in bits 2:0 (0, 1 or 3), IN in bit 3, string in 4,
// REP in 5, an immediate port operand in 6, the port in 31:16.
constexpr uint64_t io_qualification(unsigned size, bool in, bool string, bool rep, bool immediate, uint16_t port) {
  return uint64_t(size - 1) | (uint64_t(in) << 3) | (uint64_t(string) << 4) | (uint64_t(rep) << 5) |
         (uint64_t(immediate) << 6) | (uint64_t(port) << 16);
}

// ---- Interruption information (SDM 25.8.3 VM-entry, 25.9.2 VM-exit, 25.9.3 IDT-vectoring) -------

enum class InterruptionType : uint8_t {
  External = 0,
  Nmi = 2,
  HardwareException = 3,
  SoftwareInterrupt = 4,          // INT n
  PrivilegedSoftwareException = 5,  // INT1 (ICEBP)
  SoftwareException = 6,          // INT3, INTO
  Other = 7,                      // VM entry only: the pending MTF VM exit
};
constexpr uint32_t kInterruptionValid = 1u << 31;
constexpr uint32_t kInterruptionErrorCodeValid = 1u << 11;
constexpr uint32_t kInterruptionNmiUnblockedByIret = 1u << 12;  // exit information only

constexpr uint32_t interruption_info(uint8_t vector, InterruptionType type, bool error_code) {
  return vector | (uint32_t(type) << 8) | (error_code ? kInterruptionErrorCodeValid : 0) | kInterruptionValid;
}
constexpr uint8_t interruption_vector(uint32_t info) { return static_cast<uint8_t>(info); }
constexpr InterruptionType interruption_type(uint32_t info) { return static_cast<InterruptionType>((info >> 8) & 7); }

// ---- Instruction information (SDM 28.2.5, tables 28-8..28-14) -------------------------------------

// The memory-operand part these layouts share: scaling in 1:0, address size in 9:7 (0 16-bit,
// 1 32-bit, 2 64-bit), segment in 17:15, index register in 21:18 with "invalid" in 22, base
// register in 26:23 with "invalid" in 27.
struct MemoryOperandInfo {
  unsigned scale_log2 = 0;
  unsigned address_size = 8;  // bytes
  unsigned segment = DS;
  unsigned index = 0xFF;      // 0xFF: none
  unsigned base = 0xFF;       // 0xFF: none
};
uint32_t memory_operand_info(const MemoryOperandInfo& m);

// The instruction identities of tables 28-10 (descriptor tables) and 28-11 (LDTR/TR), bits 29:28.
enum class GdtrIdtrInsn : uint8_t { Sgdt = 0, Sidt = 1, Lgdt = 2, Lidt = 3 };
enum class LdtrTrInsn : uint8_t { Sldt = 0, Str = 1, Lldt = 2, Ltr = 3 };

// ---- One VM exit ----------------------------------------------------------------------------------

// What the processor writes into the exit-information fields (SDM 28.2) for one VM exit; vm_exit
// (isa/vmx/transitions.h) stores it. Fields an exit does not define stay 0.
struct VmExit {
  ExitReason reason = ExitReason::ExceptionOrNmi;
  bool entry_failure = false;           // bit 31 of the exit reason (SDM 27.8)
  uint64_t qualification = 0;
  uint64_t guest_linear_address = 0;    // LMSW with a memory operand, INS/OUTS (SDM 28.2.1)
  uint64_t guest_physical_address = 0;  // EPT violations and misconfigurations
  uint32_t interruption_info = 0;       // exceptions, NMIs, acknowledged external interrupts
  uint32_t interruption_error_code = 0;
  uint32_t idt_vectoring_info = 0;      // the event whose delivery caused the exit (SDM 28.2.4)
  uint32_t idt_vectoring_error_code = 0;
  uint32_t instruction_length = 0;      // instruction exits and software events (SDM 28.2.5)
  uint32_t instruction_info = 0;

  // The exit-reason field as stored: the basic reason, bit 31 for a VM-entry failure.
  uint32_t reason_field() const {
    return static_cast<uint32_t>(reason) | (entry_failure ? kExitReasonEntryFailure : 0);
  }
};

}  // namespace pgsim::isa::vmx

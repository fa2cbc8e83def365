#include "models/vmm/trap_cause.h"

#include "isa/fault.h"

namespace pgsim::vmm {

namespace {
struct CauseInfo {
  const char* name;
  const char* description;
};
constexpr std::array<CauseInfo, kNumTrapCauses> kCauses{{
    {"de", "divide errors (#DE)"},
    {"db", "debug exceptions (#DB)"},
    {"bp", "breakpoints (#BP, INT3)"},
    {"of", "overflow exceptions (#OF, INTO)"},
    {"br", "BOUND range exceptions (#BR)"},
    {"ud", "invalid-opcode exceptions (#UD)"},
    {"nm", "device-not-available exceptions (#NM)"},
    {"df", "double faults (#DF)"},
    {"ts", "invalid-TSS exceptions (#TS)"},
    {"np", "segment-not-present exceptions (#NP)"},
    {"ss", "stack-segment faults (#SS)"},
    {"gp", "general-protection exceptions (#GP)"},
    {"pf", "page faults (#PF)"},
    {"mf", "x87 floating-point errors (#MF)"},
    {"ac", "alignment-check exceptions (#AC)"},
    {"mc", "machine checks (#MC)"},
    {"xm", "SIMD floating-point exceptions (#XM)"},
    {"other_exception", "exceptions of reserved vectors (9, 15, 20-31)"},
    {"nmi", "non-maskable interrupts"},
    {"interrupt", "external interrupts from the interrupt controller"},
    {"int_n", "software interrupts (INT n)"},
    {"mmio", "MMIO accesses: page faults on device memory, which the VMM emulates (not counted under pf)"},
}};
}  // namespace

const char* trap_cause_name(TrapCause cause) { return kCauses[static_cast<unsigned>(cause)].name; }
const char* trap_cause_description(TrapCause cause) { return kCauses[static_cast<unsigned>(cause)].description; }

TrapCause trap_cause(const isa::Event& event) {
  using isa::EventKind;
  switch (event.kind) {
    case EventKind::External: return TrapCause::Interrupt;
    case EventKind::Nmi: return TrapCause::Nmi;
    case EventKind::SoftwareInt: return TrapCause::SoftwareInt;
    case EventKind::Exception:
    case EventKind::SoftwareException: break;
  }
  switch (event.vector) {
    case isa::DE: return TrapCause::DivideError;
    case isa::DB: return TrapCause::Debug;
    case isa::NMI: return TrapCause::Nmi;
    case isa::BP: return TrapCause::Breakpoint;
    case isa::OFV: return TrapCause::Overflow;
    case isa::BR: return TrapCause::BoundRange;
    case isa::UD: return TrapCause::InvalidOpcode;
    case isa::NM: return TrapCause::DeviceNotAvailable;
    case isa::DF_: return TrapCause::DoubleFault;
    case isa::TS: return TrapCause::InvalidTss;
    case isa::NP: return TrapCause::SegmentNotPresent;
    case isa::SS_: return TrapCause::StackFault;
    case isa::GP: return TrapCause::GeneralProtection;
    case isa::PF_: return TrapCause::PageFault;
    case isa::MF: return TrapCause::X87Error;
    case isa::AC_: return TrapCause::AlignmentCheck;
    case isa::MC: return TrapCause::MachineCheck;
    case isa::XM: return TrapCause::SimdError;
    default: return TrapCause::OtherException;
  }
}

}  // namespace pgsim::vmm

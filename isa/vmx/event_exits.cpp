// Exits caused by events in VMX non-root operation (Intel SDM vol. 3, 26.2, 26.7, 28.2.2-28.2.4).
#include "isa/vmx/event_exits.h"

#include "isa/vmx/controls.h"

namespace pgsim::isa::vmx {

bool exception_bitmap_selects(const Vmcs& vmcs, uint8_t vector, uint32_t error_code) {
  if (vector > 31) return false;
  const bool bit = (vmcs.get32(VmcsField::ExceptionBitmap) >> vector) & 1;
  if (vector != PF_) return bit;
  const uint32_t mask = vmcs.get32(VmcsField::PageFaultErrorCodeMask);
  const uint32_t match = vmcs.get32(VmcsField::PageFaultErrorCodeMatch);
  return ((error_code & mask) == match) ? bit : !bit;
}

InterruptionType interruption_type_of(const Event& event) {
  switch (event.kind) {
    case EventKind::External: return InterruptionType::External;
    case EventKind::Nmi: return InterruptionType::Nmi;
    case EventKind::SoftwareInt: return InterruptionType::SoftwareInterrupt;
    case EventKind::SoftwareException: return InterruptionType::SoftwareException;
    default: return InterruptionType::HardwareException;
  }
}

std::optional<VmExit> exception_exit(const Vmcs& vmcs, const Event& event, unsigned instruction_length) {
  if (event.kind != EventKind::Exception && event.kind != EventKind::SoftwareException) return std::nullopt;
  if (!exception_bitmap_selects(vmcs, event.vector, event.error_code)) return std::nullopt;
  VmExit exit;
  exit.reason = ExitReason::ExceptionOrNmi;
  exit.interruption_info = interruption_info(event.vector, interruption_type_of(event), event.has_error_code);
  exit.interruption_error_code = event.has_error_code ? event.error_code : 0;
  if (event.vector == PF_ && event.kind == EventKind::Exception) exit.qualification = event.cr2;
  if (event.software()) exit.instruction_length = instruction_length;
  return exit;
}

std::optional<VmExit> nmi_exit(const Vmcs& vmcs) {
  if (!vmcs.pin(PIN_NMI_EXITING)) return std::nullopt;
  VmExit exit;
  exit.reason = ExitReason::ExceptionOrNmi;
  exit.interruption_info = interruption_info(NMI, InterruptionType::Nmi, false);
  return exit;
}

bool external_interrupt_exits(const Vmcs& vmcs, const CpuState& state) {
  return vmcs.pin(PIN_EXTERNAL_INTERRUPT_EXITING) && !state.interrupt_shadow;
}

VmExit external_interrupt_exit(const Vmcs& vmcs, uint8_t vector) {
  VmExit exit;
  exit.reason = ExitReason::ExternalInterrupt;
  if (vmcs.exit_control(EXIT_ACK_INTERRUPT_ON_EXIT))
    exit.interruption_info = interruption_info(vector, InterruptionType::External, false);
  return exit;
}

std::optional<VmExit> interrupt_window_exit(const Vmcs& vmcs, const CpuState& state) {
  if (!vmcs.proc(PROC_INTERRUPT_WINDOW_EXITING)) return std::nullopt;
  if (!(state.rflags & IF) || state.interrupt_shadow) return std::nullopt;
  VmExit exit;
  exit.reason = ExitReason::InterruptWindow;
  return exit;
}

std::optional<VmExit> nmi_window_exit(const Vmcs& vmcs, const CpuState& state, bool virtual_nmi_blocked) {
  if (!vmcs.proc(PROC_NMI_WINDOW_EXITING)) return std::nullopt;
  if (virtual_nmi_blocked || state.interrupt_shadow) return std::nullopt;
  VmExit exit;
  exit.reason = ExitReason::NmiWindow;
  return exit;
}

VmExit ept_exit(const EptExit& ept) {
  VmExit exit;
  exit.reason = ept.kind == EptExitKind::Violation ? ExitReason::EptViolation : ExitReason::EptMisconfig;
  exit.qualification = ept.qualification;
  exit.guest_physical_address = ept.guest_physical;
  exit.guest_linear_address = ept.guest_linear;
  return exit;
}

VmExit triple_fault_exit() {
  VmExit exit;
  exit.reason = ExitReason::TripleFault;
  return exit;
}

void set_idt_vectoring(VmExit& exit, const Event& event, unsigned instruction_length) {
  exit.idt_vectoring_info = interruption_info(event.vector, interruption_type_of(event), event.has_error_code);
  exit.idt_vectoring_error_code = event.has_error_code ? event.error_code : 0;
  if (event.software()) exit.instruction_length = instruction_length;
}

}  // namespace pgsim::isa::vmx

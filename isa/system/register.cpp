// The CPU profile check of sensitive instructions and the registration of the system
// instructions (isa/dispatch.h calls register_system_instructions once).
#include <stdexcept>

#include "isa/system/semantics.h"
#include "isa/vmx/guest_vmx.h"

namespace pgsim::isa {
namespace system {

ProfileRule apply_profile(Core& core, const Insn& insn) {
  const CpuState& s = core.state();
  if (!(s.cr0 & CR0_PE) || s.cpl() == 0) return ProfileRule::Classic;
  if (!insn.is_sensitive())
    throw std::logic_error("a semantics consults the CPU profile for an instruction registered as not sensitive");
  switch (system_config(core).profile.at_cpl_above_0(static_cast<SensitiveInsn>(insn.sensitive))) {
    case Behavior::Classic: return ProfileRule::Classic;
    case Behavior::Gp: core.raise(Fault::gp(0)); return ProfileRule::Raised;
    case Behavior::Ud: core.raise(Fault::ud()); return ProfileRule::Raised;
    case Behavior::Insensitive: return ProfileRule::Insensitive;
  }
  return ProfileRule::Classic;
}

}  // namespace system

void register_system_instructions(Dispatch& d) {
  system::register_control(d);
  system::register_flags_io(d);
  system::register_transfer(d);
  system::register_protection(d);
  vmx::register_vmx_instructions(d);
}

}  // namespace pgsim::isa

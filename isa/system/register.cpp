// The CPU profile check of sensitive instructions and the registration of the system
// instructions (isa/dispatch.h calls register_system_instructions once).
#include "isa/system/semantics.h"

namespace pgsim::isa {
namespace system {

bool apply_profile(Core& core, SensitiveInsn insn) {
  const CpuState& s = core.state();
  if (!(s.cr0 & CR0_PE) || s.cpl() == 0) return false;
  switch (system_config(core).profile.at_cpl_above_0(insn)) {
    case Behavior::Classic: return false;
    case Behavior::Gp: throw Fault::gp(0);
    case Behavior::Ud: throw Fault::ud();
    case Behavior::Insensitive: return true;
  }
  return false;
}

}  // namespace system

void register_system_instructions(Dispatch& d) {
  system::register_control(d);
  system::register_flags_io(d);
  system::register_transfer(d);
}

}  // namespace pgsim::isa

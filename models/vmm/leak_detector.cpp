#include "models/vmm/leak_detector.h"

#include "isa/system/system_config.h"

namespace pgsim::vmm {

using namespace isa;

LeakDetector::LeakDetector(VirtualCpu& vcpu, const ShadowPager& shadow, LeakLog& log, bool conceal,
                           std::function<void(Core&)> project)
    : vcpu_(vcpu), shadow_(shadow), log_(log), conceal_(conceal), project_(std::move(project)) {}

bool LeakDetector::watches(const Insn& insn) const {
  if (!insn.is_sensitive()) return false;
  // INT n always reaches the VMM (its gates are the VMM's), whatever the profile says.
  const auto which = static_cast<SensitiveInsn>(insn.sensitive);
  if (which == SensitiveInsn::IntN) return false;
  const Behavior b = system_config(vcpu_.core()).profile.at_cpl_above_0(which);
  return b == Behavior::Classic || b == Behavior::Insensitive;
}

void LeakDetector::before(Core& real, const Insn& insn) {
  vcpu_.pull(real.state());
  active_ = true;
  insn_ = static_cast<SensitiveInsn>(insn.sensitive);
  rip_ = real.state().rip;
  before_ = vcpu_.state();
  vcpu_.begin_sandbox();
  const uint64_t retired = vcpu_.execute(1);
  writes_ = vcpu_.end_sandbox();
  evaluations_ += retired;
  faulted_ = retired == 0;
  after_ = vcpu_.state();
  vcpu_.state() = before_;
  vcpu_.core().discard_debug_trap();  // the real CPU raises the instruction's own traps
  vcpu_.core().sync_mode();
}

void LeakDetector::after(Core& real) {
  if (!active_) return;
  active_ = false;
  CpuState executed = real.state();  // what the real CPU made of it, at the next instruction
  executed.rip = real.next_rip();
  CpuState seen = before_;  // what the guest has after the real CPU ran the instruction
  vcpu_.merge_direct(seen, executed);
  const CpuState& meant = after_;  // what it would have on the virtual CPU
  bool behavior = faulted_ || seen.gpr != meant.gpr || seen.rip != meant.rip ||
                  ((seen.rflags ^ meant.rflags) & kGuestVisibleFlags);
  for (const auto& [paddr, byte] : writes_) {
    if (shadow_.is_page_table_frame(paddr >> 12)) continue;  // the guest walk's A/D updates
    if ((real.bus().read(paddr, 1) & 0xFF) != byte) behavior = true;
  }
  const bool control = ((seen.rflags ^ meant.rflags) & (IF | IOPL)) || seen.seg[CS].selector != meant.seg[CS].selector ||
                       seen.seg[SS].selector != meant.seg[SS].selector || seen.cpl() != meant.cpl();
  if (!behavior && !control) return;
  log_.record(insn_, control ? LeakKind::Control : LeakKind::Behavior, rip_);
  if (!conceal_) return;
  // Conceal: the guest gets the virtual CPU's outcome, memory included.
  vcpu_.state() = meant;
  for (const auto& [paddr, byte] : writes_) vcpu_.bus().write(paddr, 1, byte);
  vcpu_.core().sync_mode();
  project_(real);
  real.set_next_rip(real.state().rip);  // the core continues where the virtual CPU did
}

}  // namespace pgsim::vmm

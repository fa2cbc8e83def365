// What a trace of the run (trace.vcd) is told of the VMM: each entry into it with its reason, and
// each return to the guest, with where the guest then runs. The trap router reports them (see
// TrapRouter::set_trace); with no trace attached, it reports nothing and pays one test of a
// pointer per hook call (the core's per-instruction path has none).
#pragma once
#include <cstdint>
#include <string>

namespace pgsim::vmm {

// Where the guest's instructions are being carried out: the strategy's state, one value at a time.
// The numbers are the VCD's encoding of vmm.state (written in the trace's header).
enum class GuestState : uint8_t {
  GuestDirect = 0,  // on the real CPU, directly (natively, or deprivileged)
  InVmm = 1,        // the VMM handles a trap, VM exit or callout
  Translated = 2,   // the real CPU runs the binary translator's translation of guest kernel code
  Hypercall = 3,    // the VMM serves a hypercall
  NonRoot = 4,      // on the real CPU in VMX non-root operation (hw_assist)
  Interpreted = 5,  // a software interpreter carries out every guest instruction (interpret, or a
                    // deprivileged strategy while the guest cannot run directly)
};
inline constexpr unsigned kNumGuestStates = 6;
const char* guest_state_name(GuestState state);

// The ways into the VMM, as the statistics count them.
enum class VmmEntry : uint8_t {
  Trap,       // vmm.traps.<cause>
  Exit,       // vmm.exits.<reason>
  Callout,    // vmm.callouts.<op>
  Hypercall,  // vmm.hypercalls.<op>
};

class VmmTrace {
 public:
  virtual ~VmmTrace() = default;
  // The simulated time, in CPU cycles.
  virtual uint64_t now() = 0;
  // The guest entered the VMM at cycle `at` for `reason` (a trap cause, exit reason or operation,
  // as in the statistics' names).
  virtual void entered(uint64_t at, VmmEntry how, const std::string& reason) = 0;
  // The VMM returned to the guest (now()).
  virtual void left() = 0;
};

}  // namespace pgsim::vmm

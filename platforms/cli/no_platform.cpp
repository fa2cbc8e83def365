// Linked in place of the PC platform while it is not built: every run fails loudly.
#include "platforms/simulation.h"

namespace pgsim {

RunOutcome simulate(const RunContext&) {
  throw SimulatorError("the PC platform is not built into this pgsim");
}

}  // namespace pgsim

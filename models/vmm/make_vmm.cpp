// The strategies pgsim implements, by vmm.strategy name.
#include <stdexcept>

#include "models/vmm/interpret.h"
#include "models/vmm/native.h"
#include "models/vmm/trap_emulate.h"
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

std::unique_ptr<Vmm> make_vmm(const std::string& strategy, const Machine& machine, const VmmCosts& costs) {
  if (strategy == "native") return std::make_unique<NativeVmm>();
  if (strategy == "interpret") return std::make_unique<InterpretVmm>(machine.core, costs);
  if (strategy == "trap_emulate") return std::make_unique<TrapEmulateVmm>(machine, costs);
  throw std::invalid_argument("vmm.strategy '" + strategy +
                              "' is not implemented in this pgsim (implemented: native, interpret, trap_emulate)");
}

}  // namespace pgsim::vmm

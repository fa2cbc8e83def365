// The VMM as the config describes it: the platform reads vmm.* here and hands the strategy plain
// options and costs (models/vmm knows nothing of the config).
#pragma once
#include <memory>

#include "models/vmm/trap_router.h"
#include "models/vmm/vmm.h"
#include "platforms/config/config.h"

namespace pgsim::config {

// vmm.cost.* as the strategies' cost figures.
vmm::VmmCosts vmm_costs(const Config& c);
// vmm.leak_policy, vmm.shadow.cached_roots, vmm.deprivileged_cpl_prot32.
vmm::VmmOptions vmm_options(const Config& c);

// The checks attach_vmm makes of the config alone (strategy implemented, options supported), for a
// platform that must refuse a config before it can build the VMM (e.g. before SystemC elaboration
// ends, when the VMM cannot touch memory yet). Throws std::invalid_argument.
void check_vmm_config(const Config& c);

// The platform's attachment point: builds the strategy vmm.strategy names with the costs of
// vmm.cost.* and the options of vmm.*, puts its router on `machine.core` and returns it. Throws
// std::invalid_argument for a strategy pgsim does not implement or a machine it cannot run on.
// The platform, once the board is built and before the simulation starts:
//   0. check_vmm_config(config) while building the machine;
//   1. gives the strategy vmm::vmm_memory_needed(strategy) bytes of RAM above guest RAM, outside
//      the memory map the guest is told of, as Machine::vmm_memory_base/size;
//   2. once memory is reachable (start of simulation), router = attach_vmm(config, machine)
//      (machine.interrupts: the CPU's interrupt controller);
//   3. router->bind_statistics(registry);
//   4. adds router->vmm().cycles().total() to its clock (CycleAccount::total), and charges its own
//      exception and interrupt delivery only for the events the router did not take
//      (exceptions_taken(), interrupts_taken());
//   5. calls router->vmm().cycles().update_snapshot() when the run ends.
std::unique_ptr<vmm::TrapRouter> attach_vmm(const Config& c, const vmm::Machine& machine);

}  // namespace pgsim::config

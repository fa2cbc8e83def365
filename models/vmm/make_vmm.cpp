// The strategy registry: every vmm.strategy value, with what the config and the platform need to
// know of it before it exists, and how to build it.
#include <stdexcept>
#include <type_traits>

#include "models/vmm/hw_assist.h"
#include "models/vmm/binary_translation.h"
#include "models/vmm/interpret.h"
#include "models/vmm/native.h"
#include "models/vmm/paravirt.h"
#include "models/vmm/trap_emulate.h"
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

namespace {

template <class Strategy>
std::unique_ptr<Vmm> build(const Machine& machine, const VmmCosts& costs, const VmmOptions& options) {
  if constexpr (std::is_constructible_v<Strategy, const Machine&, const VmmCosts&, const VmmOptions&>)
    return std::make_unique<Strategy>(machine, costs, options);
  else if constexpr (std::is_constructible_v<Strategy, const Machine&, const VmmCosts&>)
    return std::make_unique<Strategy>(machine, costs);
  else
    return std::make_unique<Strategy>();
}

// trap_emulate and paravirt: their GDT, IDT and TSS, and a pool of shadow page-table frames (lazily
// filled shadows of up to 2 x vmm.shadow.cached_roots address spaces; paravirt's boot runs on them).
constexpr uint64_t kDeprivilegedMemory = 16ull << 20;
// hw_assist: its MSR bitmaps, virtual-APIC page and the EPT tables (4 KiB EPT pages over 4 GiB of
// guest RAM take 8 MiB).
constexpr uint64_t kHwAssistMemory = 16ull << 20;

}  // namespace

const std::vector<StrategyInfo>& strategies() {
  static const std::vector<StrategyInfo> all = {
      {"native", "none", 0, &build<NativeVmm>},
      {"interpret", "none", 0, &build<InterpretVmm>},
      {"trap_emulate", "shadow", kDeprivilegedMemory, &build<TrapEmulateVmm>},
      {"binary_translation", "shadow", kDeprivilegedMemory + kMaxTcBytes + (2 + kMaxTcBytes / (2 << 20)) * 4096,
       &build<BinaryTranslationVmm>},
      {"paravirt", "direct", kDeprivilegedMemory, &build<ParavirtVmm>},
      {"hw_assist", "nested", kHwAssistMemory, &build<HwAssistVmm>},
  };
  return all;
}

const StrategyInfo& strategy_info(const std::string& strategy) {
  for (const StrategyInfo& s : strategies())
    if (strategy == s.name) return s;
  throw std::invalid_argument("vmm.strategy '" + strategy + "' is not a strategy pgsim knows");
}

uint64_t vmm_memory_needed(const std::string& strategy) { return strategy_info(strategy).vmm_memory; }

void check_strategy(const std::string& strategy) {
  if (strategy_info(strategy).make) return;
  std::string implemented;
  for (const StrategyInfo& s : strategies())
    if (s.make) implemented += std::string(implemented.empty() ? "" : ", ") + s.name;
  throw std::invalid_argument("vmm.strategy '" + strategy + "' is not implemented in this pgsim (implemented: " +
                              implemented + ")");
}

std::unique_ptr<Vmm> make_vmm(const std::string& strategy, const Machine& machine, const VmmCosts& costs,
                              const VmmOptions& options) {
  check_strategy(strategy);
  return strategy_info(strategy).make(machine, costs, options);
}

}  // namespace pgsim::vmm

// vmm.strategy: native — no VMM. The guest owns the CPU at CPL 0; every exception and interrupt
// is delivered by the CPU through the guest's IDT. The baseline every other strategy is measured
// against.
#pragma once
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

class NativeVmm final : public Vmm {
 public:
  const char* strategy() const override { return "native"; }
  std::optional<TrapCause> take_event(isa::Core&, const isa::Event&) override { return std::nullopt; }
  double direct_fraction() const override { return 1.0; }
};

}  // namespace pgsim::vmm

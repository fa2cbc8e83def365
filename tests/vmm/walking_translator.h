// The real MMU of the VMM tests, without TLBs: a page walk from the real CR3 (the VMM's shadow
// tables) at each soft-TLB miss of the core.
#pragma once
#include "isa/core_if.h"
#include "isa/system/paging.h"

namespace pgsim::test {

class WalkingTranslator : public isa::Translator {
 public:
  explicit WalkingTranslator(isa::PhysicalBus& bus) : bus_(bus) {}
  isa::Translation translate(const isa::CpuState& s, uint64_t linear, isa::AccessKind kind, bool user,
                             isa::AccessOrigin origin) override {
    isa::WalkRequest req;
    req.linear = linear;
    req.access = kind;
    req.user = user;
    req.implicit = origin == isa::AccessOrigin::ImplicitSupervisor;
    const isa::WalkResult w = isa::page_walk(s, bus_, req);
    isa::Translation t;
    t.ok = w.ok;
    t.fault = w.fault;
    t.paddr = w.paddr;
    return t;
  }
  void invalidate_page(uint64_t) override {}
  void flush(bool) override {}

 private:
  isa::PhysicalBus& bus_;
};

}  // namespace pgsim::test

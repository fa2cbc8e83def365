// The part of the Vmm interface that every strategy running the guest kernel deprivileged
// (trap_emulate, binary_translation, paravirt) answers the same way, from its DeprivilegedGuest:
// interpreting at instruction boundaries what cannot run directly, the guest's state and virtual
// CPL as the VMM last recorded them, and the device accesses its software models served.
#pragma once
#include "models/vmm/deprivileged_guest.h"
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

class DeprivilegedVmm : public Vmm {
 public:
  void on_instruction_boundary(isa::Core& core) override { deprivileged().interpret_until_direct(core); }
  GuestState guest_state(const isa::Core&) const override { return deprivileged().guest_state(); }
  unsigned virtual_cpl(const isa::Core& real) const override { return deprivileged().virtual_cpl(real); }
  // The guest's devices are the VMM's software models: what the virtual CPU reached of them.
  uint64_t device_accesses_modelled() const override { return deprivileged().device_accesses(); }

 protected:
  // The strategy's deprivileged guest (a member of the strategy, built with its own arguments).
  virtual DeprivilegedGuest& deprivileged() = 0;
  virtual const DeprivilegedGuest& deprivileged() const = 0;
};

}  // namespace pgsim::vmm

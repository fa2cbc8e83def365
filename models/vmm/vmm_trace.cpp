#include "models/vmm/vmm_trace.h"

namespace pgsim::vmm {

const char* guest_state_name(GuestState state) {
  static constexpr const char* kNames[kNumGuestStates] = {"guest_direct", "in_vmm",   "translated",
                                                          "hypercall",    "non_root", "interpreted"};
  return kNames[static_cast<unsigned>(state)];
}

}  // namespace pgsim::vmm

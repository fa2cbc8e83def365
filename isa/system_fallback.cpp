// Stand-ins compiled only while isa/system/ does not yet define these functions (isa/CMakeLists.txt
// checks): they keep the library linkable and fail loudly instead of pretending.
#include <string>

#include "isa/core.h"
#include "isa/dispatch.h"
#include "isa/system/events.h"

namespace pgsim::isa {

#ifdef PGSIM_FALLBACK_REGISTER_SYSTEM
// No system instruction has semantics yet: each one raises #UD and is reported as unimplemented.
void register_system_instructions(Dispatch&) {}
#endif

#ifdef PGSIM_FALLBACK_DELIVER_EVENT
void deliver_event(Core& core, const Event& event) {
  core.shutdown("exception/interrupt " + std::to_string(event.vector) +
                " cannot be delivered: IDT delivery (isa/system/events.cpp) is not built");
}
#endif

}  // namespace pgsim::isa

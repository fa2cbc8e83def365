// trace: waveform output for GTKWave.
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

void declare_trace(Schema& s) {
  s.add(boolean("trace.vcd", false,
                "write results/<run.name>/trace.vcd: CPU mode, interrupts, exceptions, traps and "
                "VM exits over simulated time"));
}

}  // namespace pgsim::config

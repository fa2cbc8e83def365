// trace: waveform output for GTKWave.
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

void declare_trace(Schema& s) {
  s.add(boolean("trace.vcd", false,
                "write results/<run.name>/trace.vcd for GTKWave: real and virtual CPL, CPU mode, the "
                "strategy's state, each trap, VM exit, callout and hypercall with its reason at its "
                "cycle, page walks"));
}

}  // namespace pgsim::config

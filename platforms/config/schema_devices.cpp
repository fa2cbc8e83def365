// devices: the PC's devices that have settings.
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

void declare_devices(Schema& s) {
  s.add(integer("devices.exit_port", 0xF4, "port", 0, 0xFFFF,
                "I/O port of the exit device (QEMU's isa-debug-exit iobase)"));
  s.add(real("devices.apic.timer_mhz", 1000, "MHz", 0.001, 100'000,
             "input clock of the local APIC timer before its divider (QEMU: 1 GHz)"));
  s.add(real("devices.pit.frequency_hz", 1'193'182, "Hz", 1, 1e9,
             "input clock of the 8254 PIT"));
}

}  // namespace pgsim::config

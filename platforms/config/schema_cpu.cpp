// cpu: the processor model.
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

void declare_cpu(Schema& s) {
  s.add(choice_or_file(
      "cpu.profile", "x86", {"x86", "x86-umip", "x86-pg"},
      "which sensitive instructions trap at CPL>0: classic x86, x86 with UMIP, the "
      "Popek-Goldberg-virtualizable x86-pg, or a profile file"));
  s.add(real("cpu.frequency_mhz", 3000, "MHz", 1, 100'000,
             "core clock: converts cycles to simulated time; RDTSC counts at this rate"));
  s.add(boolean("cpu.vmx", false,
                "offer the VT-x-like hardware virtualization extension: hw_assist needs it; with vmm.strategy native the "
                "guest itself may use it (VMXON, VMLAUNCH, ...: guest hypervisors)"));
}

}  // namespace pgsim::config

// cpu: the processor model.
#include "platforms/config/cpu_model.h"
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

void declare_cpu(Schema& s) {
  s.add(choice_or_file(
      "cpu.profile", "x86", {"x86", "x86-umip", "x86-pg"},
      "which sensitive instructions trap at CPL>0: classic x86, x86 with UMIP (the CPU has UMIP; what traps "
      "follows CR4.UMIP), the Popek-Goldberg-virtualizable x86-pg, or a profile file"));
  s.add(real("cpu.frequency_mhz", 3000, "MHz", 1, 100'000,
             "core clock: converts cycles to simulated time; RDTSC counts at this rate"));
  s.add(boolean("cpu.vmx", false,
                "offer the VT-x-like hardware virtualization extension: hw_assist needs it; with vmm.strategy native the "
                "guest itself may use it (VMXON, VMLAUNCH, ...: guest hypervisors)"));
  s.add(boolean("cpu.compiled_blocks", true,
                "run the 64-bit blocks the core executes often as host code it compiles (isa/block_compiler.h); "
                "every simulated figure is the same either way, only the host time differs"));
  s.add(choice("cpu.vendor", "intel", {"intel", "amd"},
               "the CPU CPUID presents: GenuineIntel (family 6 model 9EH) or AuthenticAMD (family 17H model 31H), "
               "with that vendor's leaf layout; AMD has no VMX (SVM is not modeled) and no modeled PMU"));
  s.add(strings("cpu.features",
                "+feature / -feature switches over the vendor's defaults, with QEMU's -cpu names (e.g. [-pcid, -la57, "
                "+umip]); a feature the core does not implement is refused, one switched off is absent from the core "
                "too (its CR4/EFER bits reserved, its instructions #UD, its MSRs #GP); the table: isa/README.md"));
  s.add_rule(check_cpu_config);
}

}  // namespace pgsim::config

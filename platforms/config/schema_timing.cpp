// timing: cycles per instruction class and the costs of exceptions and interrupts.
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

namespace {

void cpi(Schema& s, const std::string& kind, double cycles, const std::string& what) {
  s.add(real("timing.cpi." + kind, cycles, "cycles", 0, 100'000, "cycles per " + what));
}

}  // namespace

void declare_timing(Schema& s) {
  // Defaults: a modern out-of-order core, rounded (Agner Fog, Instruction tables, Skylake).
  cpi(s, "alu", 1, "integer ALU, move or LEA instruction");
  cpi(s, "mul", 3, "integer multiply");
  cpi(s, "div", 26, "integer divide");
  cpi(s, "branch", 1, "jump, call, return or conditional branch");
  cpi(s, "load", 1, "instruction that loads (on top of the memory model's latency)");
  cpi(s, "store", 1, "instruction that stores");
  cpi(s, "string", 1, "iteration of a string instruction (REP MOVS, STOS, ...)");
  cpi(s, "io", 1000, "port I/O instruction (IN, OUT, INS, OUTS)");
  cpi(s, "system", 30, "other system instruction (control and descriptor-table registers, MSRs, CPUID)");

  s.add(integer("timing.exception_cycles", 150, "cycles", 0, 1'000'000,
                "delivering an exception through the IDT, including any stack switch"));
  s.add(integer("timing.interrupt_cycles", 150, "cycles", 0, 1'000'000,
                "delivering an external interrupt through the IDT"));
  s.add(integer("timing.iret_cycles", 60, "cycles", 0, 1'000'000,
                "returning from an exception or interrupt (IRET)"));
  s.add(integer("timing.syscall_cycles", 70, "cycles", 0, 1'000'000,
                "a SYSCALL and its SYSRET (or SYSENTER and SYSEXIT), round trip: each "
                "instruction costs half"));
}

}  // namespace pgsim::config

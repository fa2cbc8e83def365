// run: what one run is called and when it stops.
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

void declare_run(Schema& s) {
  s.add(text("run.name", "default",
             "name of the run; its outputs go to results/<name>/"));
  s.add(integer("run.max_instructions", 0, "instructions", 0, kNoUpperBound,
                "stop after this many guest instructions (0: no limit)"));
  s.add(integer("run.max_steps", 0, "steps", 0, kNoUpperBound,
                "stop after this many steps (cpu.steps): guest instructions retired, exceptions and "
                "interrupts (those that trap or exit to a VMM too), string-instruction iterations and "
                "the steps a VMM's virtual CPU takes for the guest, one each; bounds the host's work "
                "where run.max_instructions cannot (0: no limit)"));
  s.add(integer("run.no_progress_faults", 1000, "faults", 0, kNoUpperBound,
                "end the run as no_progress when the same exception is raised at the same address "
                "this many times in a row with no instruction retired (0: never)"));
  s.add(real("run.max_seconds", 100, "s", 0, 1e9,
             "stop after this much simulated guest time (0: no limit)"));
  s.add(real("run.max_host_seconds", 0, "s", 0, 1e9,
             "stop after this much host wall-clock time (0: no limit); ends as a time limit"));
  s.add(integer("run.quantum_ns", 1000, "ns", 1, 1'000'000'000,
                "temporal-decoupling quantum: how far the CPU runs ahead of SystemC time"));

  s.add_rule([](const Config& c) {
    const std::string& name = c.str("run.name");
    bool ok = !name.empty() && name != "." && name != "..";
    for (char ch : name)
      ok = ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' ||
                  ch == '.');
    if (!ok)
      c.fail("run.name", "must be a folder name of letters, digits, '-', '_' and '.'; got '" +
                             name + "'");
    // NAME_MAX of the common file systems (ext4, XFS, Btrfs, tmpfs): a longer name cannot be a
    // folder, and shortening it would let two runs share one.
    constexpr size_t kMaxName = 255;
    if (name.size() > kMaxName)
      c.fail("run.name", "is " + std::to_string(name.size()) + " characters long; a folder name may have at most " +
                             std::to_string(kMaxName));
  });
}

}  // namespace pgsim::config

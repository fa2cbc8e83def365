// memory: guest RAM.
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

void declare_memory(Schema& s) {
  s.add(bytes("memory.size", int64_t{512} << 20, int64_t{2} << 20, int64_t{1} << 40,
              "guest RAM (suffixes K, M, G, T: powers of 1024); allocated as the guest touches it"));
  s.add(integer("memory.latency_cycles", 200, "cycles", 0, 100'000,
                "DRAM access latency: a page-walk reference or a cache miss to memory"));

  s.add_rule([](const Config& c) {
    if (c.u64("memory.size") % 4096 != 0)
      c.fail("memory.size", "must be a whole number of 4 KiB pages; got " +
                                std::to_string(c.u64("memory.size")) + " bytes");
  });
}

}  // namespace pgsim::config

// cache: the optional data-cache hierarchy that data accesses and page-walk references go through.
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

namespace {

void declare_level(Schema& s, const std::string& level, int64_t size, int64_t ways,
                   int64_t latency, const std::string& what) {
  s.add(bytes("cache." + level + ".size", size, 0, int64_t{1} << 32,
              what + ": capacity (0: the CPU has no such cache)"));
  s.add(integer("cache." + level + ".ways", ways, "ways", 1, 1024, what + ": associativity"));
  s.add(integer("cache." + level + ".hit_cycles", latency, "cycles", 0, 10'000,
                what + ": load-to-use latency of a hit"));
  s.add_rule([level](const Config& c) {
    uint64_t size = c.u64("cache." + level + ".size");
    uint64_t set_bytes = c.u64("cache.line_bytes") * c.u64("cache." + level + ".ways");
    if (size % set_bytes != 0)  // 0 (no such cache) passes
      c.fail_at_set({"cache." + level + ".size", "cache.line_bytes", "cache." + level + ".ways"},
                    "cache." + level + ".size must be a multiple of cache.line_bytes x cache." + level + ".ways (" +
                 std::to_string(set_bytes) + " bytes); got " + std::to_string(size));
  });
}

}  // namespace

void declare_cache(Schema& s) {
  s.add(boolean("cache.enabled", false,
                "model the set-associative cache hierarchy for data accesses and page-walk references "
                "(what a data access costs beyond an L1 hit goes to sim.cycles.memory; false: walk "
                "references cost memory.latency_cycles each, data accesses are part of the CPI)"));
  s.add(integer("cache.line_bytes", 64, "bytes", 16, 4096, "cache line size (a power of two)"));
  // Defaults: an Intel Skylake client core (Intel 64 and IA-32 Optimization Reference Manual).
  declare_level(s, "l1d", int64_t{32} << 10, 8, 4, "L1 data cache");
  declare_level(s, "l2", int64_t{256} << 10, 4, 12, "L2 cache");
  declare_level(s, "llc", int64_t{8} << 20, 16, 42, "last-level cache");

  s.add_rule([](const Config& c) {
    uint64_t line = c.u64("cache.line_bytes");
    if ((line & (line - 1)) != 0)
      c.fail("cache.line_bytes", "must be a power of two; got " + std::to_string(line));
  });
}

}  // namespace pgsim::config

// The statistics registry: binding, formulas, histograms, cycle buckets, names, and the outputs.
#include <cmath>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "models/stats/stats.h"

namespace pgsim::stats {
namespace {

const Sample& find(const std::vector<Sample>& samples, const std::string& name) {
  for (const auto& s : samples)
    if (s.name == name) return s;
  throw std::runtime_error("no statistic " + name);
}

TEST(Stats, BoundCountersAreReadAtSnapshotTime) {
  Registry r;
  uint64_t user = 0;
  r.bind("cpu.insts.user", Unit::Instructions, "instructions retired at CPL 3", &user);
  user = 41;
  ++user;
  auto samples = r.snapshot();
  const Sample& s = find(samples, "cpu.insts.user");
  EXPECT_EQ(std::get<uint64_t>(s.value), 42u);
  EXPECT_EQ(s.unit, Unit::Instructions);
  EXPECT_EQ(s.description, "instructions retired at CPL 3");
}

TEST(Stats, FormulasAreComputedWhenRead) {
  Registry r;
  uint64_t hits = 3, misses = 1;
  r.bind("mmu.tlb.l1d.hits", Unit::Count, "hits", &hits);
  r.bind("mmu.tlb.l1d.misses", Unit::Count, "misses", &misses);
  r.formula("mmu.tlb.l1d.hit_rate", Unit::Ratio, "hits per lookup",
            [&] { return double(hits) / double(hits + misses); });
  EXPECT_DOUBLE_EQ(find(r.snapshot(), "mmu.tlb.l1d.hit_rate").number(), 0.75);
  hits = 1;
  EXPECT_DOUBLE_EQ(find(r.snapshot(), "mmu.tlb.l1d.hit_rate").number(), 0.5);
}

TEST(Stats, SnapshotIsSortedByName) {
  Registry r;
  uint64_t v = 0;
  r.bind("vmm.traps.gp", Unit::Count, "d", &v);
  r.bind("cpu.insts.total", Unit::Instructions, "d", &v);
  r.bind("mmu.walk.refs", Unit::Count, "d", &v);
  std::vector<std::string> names;
  for (const auto& s : r.snapshot()) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"cpu.insts.total", "mmu.walk.refs", "sim.cycles",
                                             "vmm.traps.gp"}));
}

TEST(Stats, NamesAreValidatedAndUnique) {
  Registry r;
  uint64_t v = 0;
  r.bind("cpu.insts.total", Unit::Instructions, "d", &v);
  EXPECT_THROW(r.bind("cpu.insts.total", Unit::Count, "again", &v), StatsError);
  EXPECT_THROW(r.formula("cpu.insts.total", Unit::Count, "again", [] { return 0.0; }), StatsError);
  EXPECT_THROW(r.bind("sim.cycles", Unit::Cycles, "reserved for the bucket sum", &v), StatsError);
  for (const char* bad : {"", "Cpu.insts", "cpu..insts", ".cpu", "cpu.", "cpu insts", "cpu-insts"})
    EXPECT_THROW(r.bind(bad, Unit::Count, "d", &v), StatsError) << bad;
  EXPECT_THROW(r.bind("cpu.no_description", Unit::Count, "", &v), StatsError);
  EXPECT_THROW(r.bind("cpu.null", Unit::Count, "d", nullptr), StatsError);
  EXPECT_TRUE(valid_name("vmm.leaks.popf"));
  EXPECT_TRUE(valid_name("mmu.tlb.l1d.hits"));
}

TEST(Stats, CycleBucketsArePublishedAndSummed) {
  Registry r;
  uint64_t guest = 700, vmm = 200, walk = 100;
  r.bind_cycle_bucket("guest", "guest instructions executed directly", &guest);
  r.bind_cycle_bucket("vmm", "VMM emulation", &vmm);
  r.bind_cycle_bucket("page_walk", "page-walk references", &walk);
  EXPECT_EQ(r.total_cycles(), 1000u);
  auto samples = r.snapshot();
  EXPECT_EQ(std::get<uint64_t>(find(samples, "sim.cycles").value), 1000u);
  EXPECT_EQ(std::get<uint64_t>(find(samples, "sim.cycles.vmm").value), 200u);
  EXPECT_EQ(find(samples, "sim.cycles.vmm").unit, Unit::Cycles);
  EXPECT_NO_THROW(r.check_cycle_total(1000));
  EXPECT_THROW(r.bind_cycle_bucket("guest", "twice", &guest), StatsError);
}

TEST(Stats, CycleCheckReportsTheFigures) {
  Registry r;
  uint64_t guest = 700, vmm = 200;
  r.bind_cycle_bucket("guest", "guest", &guest);
  r.bind_cycle_bucket("vmm", "vmm", &vmm);
  try {
    r.check_cycle_total(950);
    FAIL() << "a mismatch went unnoticed";
  } catch (const CycleMismatch& e) {
    EXPECT_EQ(std::string(e.what()),
              "cycle buckets do not add up to the clock: buckets sum to 900 cycles, the clock "
              "counted 950 (difference -50); sim.cycles.guest=700 sim.cycles.vmm=200");
  }
}

TEST(Stats, HistogramCountsIntoFixedBuckets) {
  Registry r;
  Histogram& h = r.histogram("mmu.walk.latency", Unit::Cycles, "page-walk latency", {0, 10, 100});
  for (double v : {-1.0, 0.0, 9.9, 10.0, 50.0, 100.0, 1000.0}) h.sample(v);
  h.sample(20.0, 3);
  EXPECT_EQ(h.underflow(), 1u);
  EXPECT_EQ(h.buckets(), (std::vector<uint64_t>{2, 5}));
  EXPECT_EQ(h.overflow(), 2u);
  EXPECT_EQ(h.samples(), 10u);
  EXPECT_DOUBLE_EQ(h.min(), -1.0);
  EXPECT_DOUBLE_EQ(h.max(), 1000.0);
  EXPECT_DOUBLE_EQ(h.mean(), (-1 + 0 + 9.9 + 10 + 50 + 100 + 1000 + 60) / 10.0);

  auto samples = r.snapshot();
  EXPECT_EQ(std::get<uint64_t>(find(samples, "mmu.walk.latency.bucket_1").value), 5u);
  EXPECT_EQ(find(samples, "mmu.walk.latency.bucket_1").description,
            "page-walk latency: samples in [10, 100)");
  EXPECT_EQ(std::get<uint64_t>(find(samples, "mmu.walk.latency.samples").value), 10u);
  EXPECT_EQ(find(samples, "mmu.walk.latency.mean").unit, Unit::Cycles);

  EXPECT_THROW(r.histogram("bad.edges", Unit::Count, "d", {1}), StatsError);
  EXPECT_THROW(r.histogram("bad.order", Unit::Count, "d", {1, 1}), StatsError);
  EXPECT_THROW(r.histogram("mmu.walk.latency", Unit::Count, "d", {0, 1}), StatsError);
  Histogram& empty = r.histogram("empty.h", Unit::Count, "d", {0, 1});
  EXPECT_TRUE(std::isnan(empty.mean()));
}

// A family publishes one statistic per key present at the snapshot, and only those: names found
// as the run goes (mnemonics) without a statistic for every possible one.
TEST(Stats, FamilyPublishesOneStatisticPerKeyPresent) {
  Registry r;
  std::map<std::string, uint64_t> by_mnemonic;
  r.bind_family("vmm.emulated", Unit::Instructions, "instructions emulated", &by_mnemonic);
  const uint64_t cli_elsewhere = 0;
  r.bind("vmm.emulated.cli", Unit::Count, "a statistic a family key must not shadow", &cli_elsewhere);
  auto samples = r.snapshot();
  for (const Sample& s : samples)
    EXPECT_TRUE(s.name.rfind("vmm.emulated", 0) != 0 || s.name == "vmm.emulated.cli") << s.name;
  by_mnemonic["out"] = 3;
  by_mnemonic["mov_cr"] = 2;
  samples = r.snapshot();
  EXPECT_EQ(std::get<uint64_t>(find(samples, "vmm.emulated.out").value), 3u);
  EXPECT_EQ(find(samples, "vmm.emulated.mov_cr").description, "instructions emulated: mov_cr");
  EXPECT_EQ(find(samples, "vmm.emulated.mov_cr").unit, Unit::Instructions);
  EXPECT_THROW(r.bind_family("vmm.emulated", Unit::Count, "d", &by_mnemonic), StatsError);
  EXPECT_THROW(r.bind_family("null.family", Unit::Count, "d", nullptr), StatsError);
  by_mnemonic["cli"] = 1;
  EXPECT_THROW(r.snapshot(), StatsError);
  by_mnemonic.erase("cli");
  by_mnemonic["Bad Name"] = 1;
  EXPECT_THROW(r.snapshot(), StatsError);
}

TEST(Stats, FreezeKeepsValuesAfterTheCountersAreGone) {
  Registry r;
  {
    auto counter = std::make_unique<uint64_t>(7);
    uint64_t cycles = 5;
    r.bind("cpu.insts.total", Unit::Instructions, "d", counter.get());
    r.bind_cycle_bucket("guest", "d", &cycles);
    r.freeze();
  }
  auto samples = r.snapshot();
  EXPECT_EQ(std::get<uint64_t>(find(samples, "cpu.insts.total").value), 7u);
  EXPECT_EQ(r.total_cycles(), 5u);
  EXPECT_TRUE(r.frozen());
  uint64_t late = 0;
  EXPECT_THROW(r.bind("cpu.late", Unit::Count, "d", &late), StatsError);
}

TEST(Stats, Gem5TextIsNameValueDescriptionUnit) {
  Registry r;
  uint64_t refs = 24;
  r.bind("mmu.walk.refs", Unit::Count, "paging-structure references", &refs);
  r.formula("vmm.efficiency.direct_fraction", Unit::Ratio, "share executed directly",
            [] { return 0.25; });
  std::ostringstream out;
  write_text(out, r.snapshot());
  EXPECT_EQ(out.str(),
            "mmu.walk.refs                     24  # paging-structure references (count)\n"
            "sim.cycles                         0  # all simulated cycles: the sum of the "
            "sim.cycles.<bucket> figures (cycles)\n"
            "vmm.efficiency.direct_fraction  0.25  # share executed directly (ratio)\n");
}

TEST(Stats, JsonIsFlatWithExactIntegers) {
  Registry r;
  uint64_t big = (1ull << 60) + 1;
  r.bind("sim.big", Unit::Count, "d", &big);
  r.formula("sim.nan", Unit::Ratio, "d", [] { return std::nan(""); });
  r.formula("sim.half", Unit::Ratio, "d", [] { return 0.5; });
  auto samples = r.snapshot();
  nlohmann::json j = to_json(samples);
  EXPECT_EQ(j["sim.big"].get<uint64_t>(), big);
  EXPECT_TRUE(j["sim.nan"].is_null());
  EXPECT_DOUBLE_EQ(j["sim.half"].get<double>(), 0.5);
  EXPECT_EQ(describe_json(samples)["sim.half"]["unit"], "ratio");
}

TEST(Stats, TableGroupsByModuleWithThousandsSeparators) {
  Registry r;
  uint64_t insts = 1234567, refs = 12;
  r.bind("cpu.insts.total", Unit::Instructions, "instructions", &insts);
  r.bind("mmu.walk.refs", Unit::Count, "references", &refs);
  std::ostringstream out;
  write_table(out, r.snapshot());
  std::string table = out.str();
  EXPECT_NE(table.find("\ncpu\n  cpu.insts.total  1,234,567 instructions  instructions\n"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("\nmmu\n"), std::string::npos);
  EXPECT_NE(table.find("\nsim\n"), std::string::npos);
}

}  // namespace
}  // namespace pgsim::stats

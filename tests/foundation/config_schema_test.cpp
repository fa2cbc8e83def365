// The built-in schema: every key is fully declared, the defaults are a valid config, and the
// schema refuses malformed declarations.
#include <set>

#include <gtest/gtest.h>

#include "platforms/config/config.h"

namespace pgsim::config {
namespace {

TEST(ConfigSchema, EveryKeyHasTypeDefaultDescriptionAndBounds) {
  const Schema& schema = Schema::builtin();
  ASSERT_GT(schema.keys().size(), 50u);
  for (const KeySpec& k : schema.keys()) {
    SCOPED_TRACE(k.key);
    EXPECT_FALSE(k.description.empty());
    EXPECT_EQ(k.description.find('\n'), std::string::npos) << "one line";
    bool numeric = k.type == Type::Int || k.type == Type::Float || k.type == Type::Size;
    if (numeric) {
      EXPECT_TRUE(k.min.has_value());
      EXPECT_TRUE(k.max.has_value());
    }
    if (k.type == Type::Size) {
      EXPECT_EQ(k.unit, "bytes");
    }
    if (k.type == Type::Enum || k.type == Type::EnumOrPath) {
      EXPECT_FALSE(k.allowed.empty());
    }
  }
}

TEST(ConfigSchema, DeclaresTheKeysOtherAreasRelyOn) {
  const Schema& schema = Schema::builtin();
  for (const char* key :
       {"run.name", "run.max_instructions", "run.max_seconds", "run.quantum_ns", "guest.kernel",
        "guest.cmdline", "guest.modules", "guest.serial_input", "cpu.profile",
        "cpu.frequency_mhz", "cpu.vmx", "memory.size", "memory.latency_cycles",
        "mmu.tlb.enabled", "mmu.tlb.l1i.entries", "mmu.tlb.l1d.ways", "mmu.tlb.l2.entries",
        "mmu.pwc.enabled", "cache.enabled", "cache.l1d.size", "timing.cpi.alu",
        "timing.exception_cycles", "timing.interrupt_cycles", "vmm.strategy", "vmm.paging",
        "vmm.leak_policy", "vmm.cost.vmexit_cycles", "trace.vcd"})
    EXPECT_NE(schema.find(key), nullptr) << key;
  EXPECT_TRUE(schema.is_section("mmu"));
  EXPECT_TRUE(schema.is_section("mmu.tlb"));
  EXPECT_FALSE(schema.is_section("mmu.tlb.enabled"));
  EXPECT_FALSE(schema.is_section("mm"));
}

TEST(ConfigSchema, DefaultsFormAValidConfig) {
  Config config;
  EXPECT_NO_THROW(config.resolve());
  EXPECT_EQ(config.str("vmm.strategy"), "native");
  EXPECT_EQ(config.str("vmm.paging"), "none");  // derived from native
  EXPECT_EQ(config.origin("vmm.paging").describe(), "derived from vmm.strategy");
  EXPECT_EQ(config.u64("memory.size"), 512ull << 20);
  EXPECT_EQ(config.origin("memory.size").describe(), "default");
}

TEST(ConfigSchema, EnumsListTheFiveStrategiesAndPagingModes) {
  const Schema& schema = Schema::builtin();
  EXPECT_EQ(schema.find("vmm.strategy")->allowed,
            (std::vector<std::string>{"native", "interpret", "trap_emulate", "binary_translation",
                                      "paravirt", "hw_assist"}));
  EXPECT_EQ(schema.find("vmm.leak_policy")->allowed,
            (std::vector<std::string>{"expose", "conceal"}));
  EXPECT_EQ(schema.find("cpu.profile")->allowed,
            (std::vector<std::string>{"x86", "x86-umip", "x86-pg"}));
}

TEST(ConfigSchema, RefusesMalformedDeclarations) {
  Schema s;
  s.add({"a.b", Type::Int, int64_t{1}, "", "a key", 0.0, 10.0, {}});
  EXPECT_THROW(s.add({"a.b", Type::Int, int64_t{1}, "", "twice", {}, {}, {}}), std::logic_error);
  EXPECT_THROW(s.add({"A.c", Type::Int, int64_t{1}, "", "upper case", {}, {}, {}}),
               std::logic_error);
  EXPECT_THROW(s.add({"a.b.c", Type::Int, int64_t{1}, "", "under a key", {}, {}, {}}),
               std::logic_error);
  EXPECT_THROW(s.add({"a", Type::Int, int64_t{1}, "", "a section", {}, {}, {}}),
               std::logic_error);
  EXPECT_THROW(s.add({"a.d", Type::Int, std::string("x"), "", "wrong default", {}, {}, {}}),
               std::logic_error);
  EXPECT_THROW(s.add({"a.e", Type::Int, int64_t{1}, "", "", {}, {}, {}}), std::logic_error);
  EXPECT_THROW(s.add({"a.f", Type::Enum, std::string("z"), "", "bad default", {}, {}, {"x"}}),
               std::logic_error);
}

TEST(ConfigSchema, SuggestsTheNearestKeyOrSection) {
  const Schema& schema = Schema::builtin();
  EXPECT_EQ(schema.suggest("memory.sise"), "memory.size");
  EXPECT_EQ(schema.suggest("cpu.frequncy_mhz"), "cpu.frequency_mhz");
  EXPECT_EQ(schema.suggest("mmmu"), "mmu");
  EXPECT_EQ(schema.suggest("tlb.l1d.entries"), "mmu.tlb.l1d.entries");  // misplaced key
  EXPECT_EQ(schema.suggest("completely.unrelated.thing"), "");
}

TEST(ConfigSchema, ReferenceListsEveryKey) {
  const Schema& schema = Schema::builtin();
  std::string markdown = schema.reference_markdown(), text = schema.reference_text();
  for (const KeySpec& k : schema.keys()) {
    EXPECT_NE(markdown.find("`" + k.key + "`"), std::string::npos) << k.key;
    EXPECT_NE(text.find(k.key + "  ("), std::string::npos) << k.key;
  }
  EXPECT_NE(markdown.find("| `memory.size` | size | `536870912` | bytes |"), std::string::npos);
}

TEST(ConfigSchema, ParsesSizes) {
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("64K"), 65536u);
  EXPECT_EQ(parse_size("512M"), 512ull << 20);
  EXPECT_EQ(parse_size("4G"), 4ull << 30);
  EXPECT_EQ(parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_size("1T"), 1ull << 40);
  EXPECT_EQ(parse_size("1_000"), 1000u);
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("G"));
  EXPECT_FALSE(parse_size("12Q"));
  EXPECT_FALSE(parse_size("-1M"));
  EXPECT_FALSE(parse_size("99999999999999999999"));
  EXPECT_FALSE(parse_size("17179869184G"));  // 2^34 GiB overflows 64 bits
}

}  // namespace
}  // namespace pgsim::config

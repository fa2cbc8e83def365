// Loading configs: values, includes, overrides, origins, and every kind of error, each naming the
// file, line, column and key.
#include <gtest/gtest.h>

#include "platforms/config/config.h"
#include "tests/foundation/test_support.h"

namespace pgsim::config {
namespace {

using test::ScratchDir;

// The ConfigError that loading `file` with `overrides` throws; fails the test if none.
ConfigError load_error(const std::filesystem::path& file,
                       const std::vector<std::string>& overrides = {}) {
  try {
    load(file, overrides);
  } catch (const ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "no ConfigError loading " << file;
  return ConfigError("", "", "");
}

std::string at(const std::filesystem::path& file, int line, int column) {
  return file.string() + ":" + std::to_string(line) + ":" + std::to_string(column);
}

TEST(ConfigLoad, ReadsNestedAndDottedKeysWithTheirOrigins) {
  ScratchDir dir;
  auto file = dir.write("c.yaml",
                        "run:\n"
                        "  name: exp1\n"
                        "  max_instructions: 1_000_000\n"
                        "mmu.tlb.l1d.entries: 32\n"
                        "memory:\n"
                        "  size: 1G\n"
                        "cpu: {frequency_mhz: 2400, vmx: yes}\n");
  Config c = load(file);
  EXPECT_EQ(c.str("run.name"), "exp1");
  EXPECT_EQ(c.i64("run.max_instructions"), 1'000'000);
  EXPECT_EQ(c.i64("mmu.tlb.l1d.entries"), 32);
  EXPECT_EQ(c.u64("memory.size"), 1ull << 30);
  EXPECT_DOUBLE_EQ(c.f64("cpu.frequency_mhz"), 2400.0);
  EXPECT_TRUE(c.flag("cpu.vmx"));
  EXPECT_EQ(c.origin("run.name").describe(), file.string() + ":2");
  EXPECT_EQ(c.origin("mmu.tlb.l1d.entries").line, 4);
  EXPECT_EQ(c.origin("mmu.tlb.l1d.entries").column, 1);
  EXPECT_EQ(c.origin("cpu.vmx").line, 7);
  EXPECT_EQ(c.origin("cpu.vmx").column, 28);
  EXPECT_EQ(c.origin("run.quantum_ns").describe(), "default");
}

TEST(ConfigLoad, MisspelledKeyNamesFileLineColumnAndSuggests) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "run:\n  name: t\nmemory:\n  sise: 1G\n");
  ConfigError e = load_error(file);
  EXPECT_EQ(e.location(), at(file, 4, 3));
  EXPECT_EQ(e.key(), "memory.sise");
  EXPECT_EQ(e.message(), "unknown key; did you mean 'memory.size'?");
  EXPECT_EQ(std::string(e.what()),
            at(file, 4, 3) + ": 'memory.sise': unknown key; did you mean 'memory.size'?");
}

TEST(ConfigLoad, UnknownSectionIsSuggestedToo) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "mmmu:\n  tlb:\n    enabled: false\n");
  ConfigError e = load_error(file);
  EXPECT_EQ(e.location(), at(file, 1, 1));
  EXPECT_EQ(e.message(), "unknown key; did you mean 'mmu'?");
}

TEST(ConfigLoad, UnknownKeyWithNothingCloseHasNoSuggestion) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "zzzzzzzz: 1\n");
  EXPECT_EQ(load_error(file).message(), "unknown key");
}

TEST(ConfigLoad, WrongTypeSaysWhatIsExpected) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "run:\n  quantum_ns: fast\n");
  ConfigError e = load_error(file);
  EXPECT_EQ(e.location(), at(file, 2, 15));
  EXPECT_EQ(e.key(), "run.quantum_ns");
  EXPECT_EQ(e.message(), "expects an integer; got 'fast'");

  auto flag = dir.write("f.yaml", "cpu:\n  vmx: maybe\n");
  EXPECT_EQ(load_error(flag).message(), "expects true or false; got 'maybe'");
  auto list = dir.write("l.yaml", "memory:\n  size: [1, 2]\n");
  EXPECT_EQ(load_error(list).message(), "expects a size in bytes; got a list");
  auto size = dir.write("s.yaml", "memory:\n  size: 12Q\n");
  EXPECT_EQ(load_error(size).message(),
            "expects a size in bytes (such as 4096, 64K, 512M, 4G); got '12Q'");
}

TEST(ConfigLoad, OutOfRangeSaysWhatIsAllowed) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "mmu:\n  tlb:\n    l1d:\n      entries: 100000\n");
  ConfigError e = load_error(file);
  EXPECT_EQ(e.location(), at(file, 4, 7));
  EXPECT_EQ(e.key(), "mmu.tlb.l1d.entries");
  EXPECT_EQ(e.message(), "must be between 0 and 65536 entries; got 100000");

  auto freq = dir.write("f.yaml", "cpu:\n  frequency_mhz: 0.5\n");
  EXPECT_EQ(load_error(freq).message(), "must be between 1.0 and 100000.0 MHz; got 0.5");
  auto small = dir.write("m.yaml", "memory:\n  size: 1M\n");
  EXPECT_EQ(load_error(small).message(),
            "must be between 2097152 and 1099511627776 bytes; got 1048576");
}

TEST(ConfigLoad, BadEnumListsTheChoicesAndSuggests) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "vmm:\n  strategy: trap_emulation\n");
  ConfigError e = load_error(file);
  EXPECT_EQ(e.location(), at(file, 2, 13));
  EXPECT_EQ(e.message(),
            "must be one of: native, interpret, trap_emulate, binary_translation, paravirt, "
            "hw_assist; got 'trap_emulation'; did you mean 'trap_emulate'?");
  auto profile = dir.write("p.yaml", "cpu:\n  profile: x86pg\n");
  EXPECT_EQ(load_error(profile).message(),
            "must be one of: x86, x86-umip, x86-pg, or the path of an existing file; got "
            "'x86pg'; did you mean 'x86-pg'?");
}

TEST(ConfigLoad, ProfileMayBeAFileRelativeToTheConfig) {
  ScratchDir dir;
  dir.write("profiles/mine.yaml", "name: mine\n");
  auto file = dir.write("c.yaml", "cpu:\n  profile: profiles/mine.yaml\n");
  EXPECT_EQ(load(file).path("cpu.profile"), dir.path() / "profiles/mine.yaml");
}

TEST(ConfigLoad, YamlSyntaxErrorNamesLineAndColumn) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "run:\n  name: [unclosed\nmemory:\n  size: 1G\n");
  ConfigError e = load_error(file);
  EXPECT_EQ(e.location().rfind(file.string() + ":", 0), 0u) << e.what();
  EXPECT_NE(e.message().find("YAML syntax error"), std::string::npos);
  auto tabs = dir.write("t.yaml", "run:\n\tname: x\n");
  EXPECT_EQ(load_error(tabs).location().rfind(tabs.string() + ":2:", 0), 0u)
      << load_error(tabs).what();
}

TEST(ConfigLoad, MissingFileIsAClearError) {
  ScratchDir dir;
  ConfigError e = load_error(dir.path() / "absent.yaml");
  EXPECT_EQ(e.location(), (dir.path() / "absent.yaml").string());
  EXPECT_EQ(e.message(), "cannot read the config file: No such file or directory");
  EXPECT_EQ(load_error(dir.path()).message(), "cannot read the config file: Is a directory");
}

TEST(ConfigLoad, DuplicateKeyIsRefused) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "run:\n  name: a\n  name: b\n");
  ConfigError e = load_error(file);
  EXPECT_EQ(e.location(), at(file, 3, 3));
  EXPECT_EQ(e.message(), "set twice in the same mapping (first on line 2)");
}

TEST(ConfigLoad, SectionGivenAValueIsRefused) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "mmu: 3\n");
  ConfigError e = load_error(file);
  EXPECT_EQ(e.key(), "mmu");
  EXPECT_EQ(e.message(), "is a section: it holds keys (nested, pwc, tlb), not a value");
}

TEST(ConfigLoad, IncludedFilesAreOverriddenByTheIncluder) {
  ScratchDir dir;
  dir.write("eras/old.yaml", "cpu:\n  frequency_mhz: 1000\nmemory:\n  latency_cycles: 300\n");
  dir.write("base.yaml", "include: eras/old.yaml\nmemory:\n  latency_cycles: 250\n");
  auto file = dir.write("exp.yaml", "include: [base.yaml]\ncpu:\n  frequency_mhz: 2000\n");
  Config c = load(file);
  EXPECT_DOUBLE_EQ(c.f64("cpu.frequency_mhz"), 2000.0);
  EXPECT_EQ(c.origin("cpu.frequency_mhz").line, 3);
  EXPECT_EQ(c.i64("memory.latency_cycles"), 250);
  EXPECT_EQ(c.origin("memory.latency_cycles").file, dir.path() / "base.yaml");
}

TEST(ConfigLoad, PathsResolveAgainstTheFileThatSetsThem) {
  ScratchDir dir;
  dir.write("platform/pc.yaml", "guest:\n  kernel: ../images/k.elf\n  modules: [m.bin]\n");
  auto file = dir.write("exp.yaml", "include: platform/pc.yaml\n");
  Config c = load(file);
  EXPECT_EQ(c.path("guest.kernel"), dir.path() / "images/k.elf");
  EXPECT_EQ(c.list("guest.modules"), std::vector<std::string>{(dir.path() / "platform/m.bin").string()});
}

TEST(ConfigLoad, BadIncludesAreErrorsAtTheIncludeLine) {
  ScratchDir dir;
  auto missing = dir.write("c.yaml", "run:\n  name: x\ninclude: nowhere.yaml\n");
  ConfigError e = load_error(missing);
  EXPECT_EQ(e.location(), at(missing, 3, 10));
  EXPECT_EQ(e.key(), "include");
  EXPECT_EQ(e.message(), "cannot read included file '" + (dir.path() / "nowhere.yaml").string() +
                             "': No such file or directory");

  dir.write("a.yaml", "include: b.yaml\n");
  dir.write("b.yaml", "include: a.yaml\n");
  EXPECT_EQ(load_error(dir.path() / "a.yaml").message(), "include cycle: a.yaml -> b.yaml -> a.yaml");

  auto nested = dir.write("n.yaml", "run:\n  include: x.yaml\n");
  EXPECT_EQ(load_error(nested).message(), "include: is allowed only at the top level of a file");
  auto mapping = dir.write("m.yaml", "include: {a: 1}\n");
  EXPECT_EQ(load_error(mapping).message(), "expects a file path or a list of file paths");

  dir.write("broken.yaml", "run:\n  name: x\n  bogus: 1\n");
  auto via = dir.write("v.yaml", "include: broken.yaml\n");
  EXPECT_EQ(load_error(via).location(), at(dir.path() / "broken.yaml", 3, 3));
}

TEST(ConfigLoad, OverridesWinAndAreCheckedLikeFileValues) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "memory:\n  size: 1G\n");
  Config c = load(file, {"memory.size=2G", "guest.modules=[a.bin, b.bin]", "cpu.vmx=true",
                         "guest.cmdline=bench=in iters=10"});
  EXPECT_EQ(c.u64("memory.size"), 2ull << 30);
  EXPECT_EQ(c.origin("memory.size").describe(), "--set");
  EXPECT_EQ(c.list("guest.modules").size(), 2u);
  EXPECT_EQ(c.list("guest.modules")[0], (std::filesystem::current_path() / "a.bin").string());
  EXPECT_TRUE(c.flag("cpu.vmx"));
  EXPECT_EQ(c.str("guest.cmdline"), "bench=in iters=10");

  ConfigError unknown = load_error(file, {"memory.sise=1G"});
  EXPECT_EQ(std::string(unknown.what()),
            "--set: 'memory.sise': unknown key; did you mean 'memory.size'?");
  EXPECT_EQ(load_error(file, {"memory.size"}).message(), "expects key=value; got 'memory.size'");
  EXPECT_EQ(load_error(file, {"run.quantum_ns=-5"}).message(),
            "must be between 1 and 1000000000 ns; got -5");
  EXPECT_EQ(load_error(file, {"guest.cmdline=[a"}).location(), "--set");
}

TEST(ConfigLoad, RefusesCombinationsThatDoNotExist) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "vmm:\n  strategy: trap_emulate\n  paging: nested\n");
  ConfigError e = load_error(file);
  EXPECT_EQ(e.location(), at(file, 3, 3));
  EXPECT_EQ(e.key(), "vmm.paging");
  EXPECT_EQ(e.message(),
            "vmm.paging 'nested' with vmm.strategy 'trap_emulate': nested paging is a hardware feature: it "
            "needs vmm.strategy: hw_assist");
  EXPECT_EQ(load_error(file, {"vmm.strategy=hw_assist"}).message(),
            "hw_assist needs the hardware extension: set cpu.vmx: true");
  EXPECT_NO_THROW(load(file, {"vmm.strategy=hw_assist", "cpu.vmx=true"}));
  EXPECT_EQ(load_error(file, {"vmm.strategy=native"}).message(),
            "vmm.paging 'nested' with vmm.strategy 'native': nested paging is a hardware feature: it needs "
            "vmm.strategy: hw_assist");
  EXPECT_EQ(load_error(file, {"vmm.paging=direct"}).key(), "vmm.paging");
  EXPECT_EQ(load_error(file, {"mmu.tlb.l1d.ways=5"}).message(),
            "mmu.tlb.l1d.ways must divide mmu.tlb.l1d.entries (64); got 5");
  // A rule over several keys names the one the user set, not the default that it contradicts.
  ConfigError entries = load_error(file, {"mmu.tlb.l1d.entries=29585"});
  EXPECT_EQ(entries.key(), "mmu.tlb.l1d.entries");
  EXPECT_EQ(entries.location(), "--set");
  EXPECT_EQ(load_error(file, {"vmm.strategy=native"}).key(), "vmm.strategy");
  EXPECT_EQ(load_error(file, {"vmm.paging=shadow", "run.name=../x"}).key(), "run.name");
}

TEST(ConfigLoad, AutoPagingFollowsTheStrategy) {
  auto paging = [](const std::string& strategy) {
    return load_overrides({"vmm.strategy=" + strategy, "cpu.vmx=true"}).str("vmm.paging");
  };
  EXPECT_EQ(paging("native"), "none");
  EXPECT_EQ(paging("interpret"), "none");
  EXPECT_EQ(paging("trap_emulate"), "shadow");
  EXPECT_EQ(paging("binary_translation"), "shadow");
  EXPECT_EQ(paging("paravirt"), "direct");
  EXPECT_EQ(paging("hw_assist"), "nested");
  EXPECT_EQ(load_overrides({"vmm.strategy=hw_assist", "cpu.vmx=true", "vmm.paging=shadow"})
                .str("vmm.paging"),
            "shadow");
}

TEST(ConfigLoad, ResolvedYamlLoadsBackToTheSameValues) {
  ScratchDir dir;
  auto file = dir.write("c.yaml",
                        "guest:\n  kernel: k.elf\n  cmdline: \"\"\n  modules: [a, b]\n"
                        "run:\n  name: \"123\"\ncpu:\n  frequency_mhz: 2500.5\n");
  Config original = load(file, {"vmm.strategy=trap_emulate"});
  auto copy_file = dir.write("resolved.yaml", original.to_yaml());
  Config copy = load(copy_file);
  for (const KeySpec& k : Schema::builtin().keys())
    EXPECT_EQ(copy.text(k.key), original.text(k.key)) << k.key;
  EXPECT_EQ(copy.origin("vmm.paging").kind, Origin::Kind::File);  // explicit once resolved
  EXPECT_NE(original.to_yaml().find("strategy: trap_emulate  # --set"), std::string::npos);
}

TEST(ConfigLoad, MisuseOfTheAccessorsIsALogicError) {
  Config c;
  EXPECT_THROW(c.i64("no.such.key"), std::logic_error);
  EXPECT_THROW(c.str("memory.size"), std::logic_error);
  EXPECT_THROW(c.flag("run.name"), std::logic_error);
}

TEST(ConfigLoad, ExistingFileNamesWhereTheKeyWasSet) {
  ScratchDir dir;
  auto file = dir.write("c.yaml", "guest:\n  kernel: missing.elf\n");
  Config c = load(file);
  try {
    c.existing_file("guest.kernel");
    FAIL() << "no error for a missing kernel";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.location(), at(file, 2, 3));
    EXPECT_EQ(e.message(), "names '" + (dir.path() / "missing.elf").string() +
                               "', which is not an existing file");
  }
  dir.write("missing.elf", "x");
  EXPECT_EQ(c.existing_file("guest.kernel"), dir.path() / "missing.elf");
}

}  // namespace
}  // namespace pgsim::config

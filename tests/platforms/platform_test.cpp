// The PC platform as users run it: the pgsim program and QEMU boot the same Multiboot test kernels
// as separate processes; their serial output must agree, and pgsim's TLB, page-walk and memory
// figures must be exactly what the configuration predicts.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/models/tlb_prediction.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kKernels = PGSIM_TEST_KERNEL_DIR;
const char* const kMarker = "== pgsim test kernel";
constexpr int kGuestSuccess = 0, kGuestFailure = 1, kLimitReached = 3, kSimulatorError = 4;
constexpr uint64_t kTestBase = 0x400000;  // tlb_loop's first page

struct Process {
  int exit_status = -1;   // -1 when killed by a signal
  int signal = 0;
  long max_rss_kib = 0;
  std::string output;     // stdout and stderr
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

pid_t start(const std::vector<std::string>& argv, const fs::path& log);
Process wait_for(pid_t pid, const fs::path& log);

// Runs `argv` with stdout and stderr in a file, and waits for it.
Process run(const std::vector<std::string>& argv, const fs::path& log) {
  return wait_for(start(argv, log), log);
}

// Starts `argv` with stdout and stderr in a file.
pid_t start(const std::vector<std::string>& argv, const fs::path& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    const int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

Process wait_for(pid_t pid, const fs::path& log) {
  Process p;
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  if (WIFEXITED(status)) p.exit_status = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) p.signal = WTERMSIG(status);
  p.max_rss_kib = usage.ru_maxrss;
  p.output = read_file(log);
  return p;
}

// The kernel's own output: everything from its banner on (QEMU's firmware prints before it).
std::string kernel_output(const std::string& serial) {
  const size_t at = serial.find(kMarker);
  return at == std::string::npos ? "(no banner in: " + serial + ")" : serial.substr(at);
}

// Every way pgsim runs a guest: each strategy, hw_assist under both pagings (on a CPU with VMX).
struct StrategyVariant {
  std::string strategy, paging, label, run_name;
  std::vector<std::string> sets;
};
std::vector<StrategyVariant> every_strategy() {
  std::vector<StrategyVariant> variants;
  for (const char* strategy : {"native", "interpret", "trap_emulate", "binary_translation", "paravirt"})
    variants.push_back({strategy, "", strategy, strategy, {"cpu.vmx=true", std::string("vmm.strategy=") + strategy}});
  for (const char* paging : {"nested", "shadow"})
    variants.push_back({"hw_assist", paging, std::string("hw_assist ") + paging, std::string("hw_assist_") + paging,
                        {"cpu.vmx=true", "vmm.strategy=hw_assist", std::string("vmm.paging=") + paging}});
  return variants;
}

class PlatformTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "_" + info->name();
    for (char& c : name)
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    dir_ = fs::temp_directory_path() / ("pgsim_platform_" + name + "_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  struct PgsimRun {
    Process process;
    std::string serial;
    json report;  // stats.json: {"stats": {...}, "run": {...}}
    uint64_t stat(const std::string& name) const { return report.at("stats").at(name).get<uint64_t>(); }
  };

  // `pgsim run` of `kernel` with 128 MiB of RAM and the given overrides.
  PgsimRun pgsim(const fs::path& kernel, const std::string& run_name, std::vector<std::string> sets = {}) {
    PgsimRun r;
    r.process = run(pgsim_argv(kernel, run_name, sets), dir_ / (run_name + ".log"));
    return collect(r, run_name);
  }

  // The command line of pgsim(), whose config file is run_name.yaml (the kernel on its line 5).
  std::vector<std::string> pgsim_argv(const fs::path& kernel, const std::string& run_name,
                                      const std::vector<std::string>& sets) {
    const fs::path config = dir_ / (run_name + ".yaml");
    std::ofstream(config) << "run:\n  name: " << run_name << "\n  max_host_seconds: 60\n"
                          << "guest:\n  kernel: " << kernel.string() << "\n  cmdline: alpha beta\n"
                          << "memory:\n  size: 128M\n";
    std::vector<std::string> argv = {PGSIM_BINARY, "run", config.string(), "--results-dir",
                                     (dir_ / "results").string(), "--quiet"};
    for (const std::string& s : sets) {
      argv.push_back("--set");
      argv.push_back(s);
    }
    return argv;
  }

  PgsimRun& collect(PgsimRun& r, const std::string& run_name) {
    const fs::path out = dir_ / "results" / run_name;
    r.serial = read_file(out / "serial.log");
    if (fs::exists(out / "stats.json")) r.report = json::parse(read_file(out / "stats.json"));
    return r;
  }

  // A module for the fuzz harness kernels (tests/kernels/fuzz_harness.S): code they run.
  fs::path module(const std::string& name, const std::string& bytes) {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  // QEMU on `kernel`, with its default CPU model unless `cpu` names one.
  Process qemu(const fs::path& kernel, const std::string& cpu = "") {
    std::vector<std::string> argv = {"timeout", "60", PGSIM_QEMU, "-machine", "pc", "-m", "128", "-kernel",
                                     kernel.string(), "-append", "alpha beta", "-nographic", "-no-reboot",
                                     "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"};
    if (!cpu.empty()) argv.insert(argv.end(), {"-cpu", cpu});
    return run(argv, dir_ / "qemu.log");
  }

  // `kernel` (a test kernel's name) on QEMU, whose output must hold `expected`, and under every
  // strategy, each ending as it does with QEMU's output; the runs, by variant.
  std::vector<std::pair<StrategyVariant, PgsimRun>> run_everywhere_as_on_qemu(const std::string& kernel,
                                                                               const std::string& expected) {
    std::vector<std::pair<StrategyVariant, PgsimRun>> runs;
    const Process q = qemu(kKernels / (kernel + ".elf"));
    EXPECT_EQ(q.exit_status, 1) << "QEMU: " << q.output;
    EXPECT_NE(q.output.find(expected), std::string::npos) << q.output;
    for (const StrategyVariant& v : every_strategy()) {
      SCOPED_TRACE(v.label);
      runs.emplace_back(v, pgsim(kKernels / (kernel + ".elf"), kernel + "_" + v.run_name, v.sets));
      const PgsimRun& p = runs.back().second;
      EXPECT_EQ(p.process.exit_status, kGuestSuccess) << p.process.output;
      EXPECT_EQ(kernel_output(p.serial), kernel_output(q.output));
    }
    return runs;
  }

  fs::path dir_;
};

// ---- the same output as QEMU --------------------------------------------------------------------

class QemuComparison : public PlatformTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(QemuComparison, SameSerialOutputAndExitStatus) {
  const fs::path kernel = kKernels / (std::string(GetParam()) + ".elf");
  const Process q = qemu(kernel);
  ASSERT_EQ(q.exit_status, 1) << "QEMU: " << q.output;  // the guest wrote 0: status (0 << 1) | 1
  const PgsimRun p = pgsim(kernel, GetParam());
  EXPECT_EQ(p.process.exit_status, kGuestSuccess) << p.process.output;
  EXPECT_EQ(kernel_output(p.serial), kernel_output(q.output));
  ASSERT_TRUE(p.report.contains("run")) << p.process.output;
  EXPECT_EQ(p.report["run"]["guest_status"].get<int>(), q.exit_status);
  EXPECT_NE(p.serial.find("bye\n"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(TestKernels, QemuComparison,
                         ::testing::Values("hello", "interrupts", "tlb_loop_n72_r1", "compute", "legacy"));

// The lines of `output` that begin with "sdm: " (drop = false) or all the others (drop = true).
std::string sdm_lines(const std::string& output, bool drop) {
  std::istringstream in(output);
  std::string line, kept;
  while (std::getline(in, line))
    if ((line.rfind("sdm: ", 0) == 0) != drop) kept += line + "\n";
  return kept;
}

// SMAP with CLAC/STAC, protection keys, the debug registers, NMIs and the boot-time MSRs
// (tests/kernels/protection.S) print what QEMU's -cpu max prints; the "sdm:" lines are where
// QEMU's TCG departs from the SDM (RF in fault frames, DR7.GD, reserved MTRR types), and pgsim
// prints what the SDM says there.
TEST_F(PlatformTest, ProtectionDebugAndNmiAsOnQemu) {
  const fs::path kernel = kKernels / "protection.elf";
  const Process q = qemu(kernel, "max");
  ASSERT_EQ(q.exit_status, 1) << "QEMU: " << q.output;
  const PgsimRun p = pgsim(kernel, "protection");
  ASSERT_EQ(p.process.exit_status, kGuestSuccess) << p.process.output;
  EXPECT_EQ(sdm_lines(kernel_output(p.serial), true), sdm_lines(kernel_output(q.output), true));
  EXPECT_EQ(sdm_lines(p.serial, false),
            "sdm: reserved mtrr type, vector: d\n"          // #GP (SDM vol. 3, 12.11.2.1)
            "sdm: smap read with ac=0, frame rf: 1\n"       // a fault saves RF = 1 (18.3.1.1)
            "sdm: #ud frame rf: 1\n"
            "sdm: general detect, #db: 1\n"                 // MOV DR with DR7.GD: #DB (18.2.4)
            "sdm: general detect, dr6: 2000\n"              // DR6.BD
            "sdm: general detect, dr7 after: 400\n");       // GD cleared on entry to the handler
}

// The same kernel under the VMMs: each gives the native output (its NMIs reflected through the
// guest's IDT and held back by the guest's NMI blocking, its protection keys in the shadow tables,
// its single steps and breakpoints on the real CPU); binary translation, whose translated code
// cannot raise the guest's debug traps, refuses with a message that says so.
TEST_F(PlatformTest, ProtectionDebugAndNmiUnderEveryVmm) {
  const fs::path kernel = kKernels / "protection.elf";
  const PgsimRun native = pgsim(kernel, "native");
  ASSERT_EQ(native.process.exit_status, kGuestSuccess) << native.process.output;
  const std::vector<std::vector<std::string>> runs = {
      {"vmm.strategy=interpret"},
      {"vmm.strategy=trap_emulate"},
      {"vmm.strategy=paravirt"},
      {"cpu.vmx=true", "vmm.strategy=hw_assist", "vmm.paging=nested"},
      {"cpu.vmx=true", "vmm.strategy=hw_assist", "vmm.paging=shadow"}};
  for (size_t k = 0; k < runs.size(); ++k) {
    const PgsimRun r = pgsim(kernel, "vmm" + std::to_string(k), runs[k]);
    EXPECT_EQ(r.process.exit_status, kGuestSuccess) << runs[k].back() << ": " << r.process.output;
    EXPECT_EQ(r.serial, native.serial) << runs[k].back();
  }
  const PgsimRun bt = pgsim(kernel, "bt", {"vmm.strategy=binary_translation"});
  EXPECT_EQ(bt.process.exit_status, kGuestFailure);  // stopped as a shutdown that names what is missing
  EXPECT_NE(bt.process.output.find("debug traps of translated code are not implemented"), std::string::npos)
      << bt.process.output;
}

// ---- x87, SSE, XSAVE and lazy FPU switching: tests/kernels/fpu.S ----------------------------------
//
// QEMU's default CPU model has no XSAVE: the kernel runs on `-cpu max` there. Its output is the same
// natively and under every strategy: the VMMs carry the guest's x87/SSE state and XCR0, reflect
// #NM through the guest's IDT and emulate CLTS, MOV to CR0 and XSETBV.

TEST_F(PlatformTest, FpuKernelPrintsWhatQemuPrintsNativelyAndUnderEveryStrategy) {
  const fs::path kernel = kKernels / "fpu.elf";
  const Process q = qemu(kernel, "max");
  ASSERT_EQ(q.exit_status, 1) << "QEMU: " << q.output;
  const std::string expected = kernel_output(q.output);
  EXPECT_NE(expected.find("lazy switches, #NM: 10\n"), std::string::npos) << expected;
  const std::vector<std::pair<std::string, std::vector<std::string>>> runs = {
      {"native", {}},
      {"interpret", {"vmm.strategy=interpret"}},
      {"trap_emulate", {"vmm.strategy=trap_emulate"}},
      {"trap_emulate_umip", {"vmm.strategy=trap_emulate", "cpu.profile=x86-umip"}},
      {"binary_translation", {"vmm.strategy=binary_translation"}},
      {"paravirt", {"vmm.strategy=paravirt"}},
      {"hw_assist", {"vmm.strategy=hw_assist", "cpu.vmx=true"}},
  };
  for (const auto& [name, sets] : runs) {
    const PgsimRun p = pgsim(kernel, "fpu_" + name, sets);
    EXPECT_EQ(p.process.exit_status, kGuestSuccess) << name << ": " << p.process.output;
    EXPECT_EQ(kernel_output(p.serial), expected) << name;
  }
}

// Lazy FPU switching under trap_emulate, 10 and 30 task switches: each of the 20 further switches
// costs exactly one #NM (the first FPU instruction after CR0.TS was set, reflected to the guest's
// handler), and the emulation of the switch's MOV from and to CR0 and of the handler's CLTS and
// IRET: five traps; the FPU instructions after the first, and FXSAVE/FXRSTOR, do not trap.
TEST_F(PlatformTest, LazyFpuSwitchingTrapsOncePerSwitchUnderTrapAndEmulate) {
  const std::vector<std::string> sets = {"vmm.strategy=trap_emulate"};
  const PgsimRun a = pgsim(kKernels / "fpu.elf", "lazy_10", sets);
  const PgsimRun b = pgsim(kKernels / "fpu_switches30.elf", "lazy_30", sets);
  ASSERT_EQ(a.process.exit_status, kGuestSuccess) << a.process.output;
  ASSERT_EQ(b.process.exit_status, kGuestSuccess) << b.process.output;
  EXPECT_NE(b.serial.find("lazy switches, #NM: 30\n"), std::string::npos) << b.serial;
  auto delta = [&](const std::string& stat) { return b.stat(stat) - a.stat(stat); };
  EXPECT_EQ(delta("vmm.traps.nm"), 20u);
  EXPECT_EQ(delta("vmm.emulated.clts"), 20u);
  EXPECT_EQ(delta("vmm.emulated.mov_cr"), 40u);
  EXPECT_EQ(delta("vmm.emulated.iretd"), 20u);
  EXPECT_EQ(delta("vmm.traps.ud") + delta("vmm.traps.mf") + delta("vmm.traps.xm"), 0u);
  // Besides the switches, only the serial output differs (one more digit printed).
  EXPECT_EQ(delta("vmm.traps.total") - delta("vmm.trap_emulate.emulated_io"), 5u * 20u);
}

// The same switches under binary_translation and paravirt: one #NM reflected and CLTS and MOV CR0
// emulated per switch, as under trap_emulate (the test kernel does not use the paravirtual ABI);
// under hw_assist none of it leaves the guest: CR0.TS is guest-owned (the CR0 guest/host mask) and
// #NM is not in the exception bitmap, so only the extra serial output exits.
TEST_F(PlatformTest, LazyFpuSwitchingUnderBinaryTranslationParavirtAndHwAssist) {
  for (const std::string strategy : {"binary_translation", "paravirt"}) {
    const std::vector<std::string> sets = {"vmm.strategy=" + strategy};
    const PgsimRun a = pgsim(kKernels / "fpu.elf", strategy + "_10", sets);
    const PgsimRun b = pgsim(kKernels / "fpu_switches30.elf", strategy + "_30", sets);
    ASSERT_EQ(b.process.exit_status, kGuestSuccess) << strategy << ": " << b.process.output;
    auto delta = [&](const std::string& stat) { return b.stat(stat) - a.stat(stat); };
    EXPECT_EQ(delta("vmm.traps.nm"), 20u) << strategy;
    EXPECT_EQ(delta("vmm.emulated.clts"), 20u) << strategy;
    EXPECT_EQ(delta("vmm.emulated.mov_cr"), 40u) << strategy;
  }
  const std::vector<std::string> sets = {"vmm.strategy=hw_assist", "cpu.vmx=true"};
  const PgsimRun a = pgsim(kKernels / "fpu.elf", "hw_assist_10", sets);
  const PgsimRun b = pgsim(kKernels / "fpu_switches30.elf", "hw_assist_30", sets);
  ASSERT_EQ(b.process.exit_status, kGuestSuccess) << b.process.output;
  EXPECT_NE(b.serial.find("lazy switches, #NM: 30\n"), std::string::npos) << b.serial;
  EXPECT_EQ(b.stat("vmm.exits.total") - a.stat("vmm.exits.total"),
            b.stat("vmm.exits.io_instruction") - a.stat("vmm.exits.io_instruction"));
}

// ---- exact TLB and page-walk figures -----------------------------------------------------------

TEST_F(PlatformTest, WithoutTlbEveryTranslationWalksFourLevels) {
  const PgsimRun p = pgsim(kKernels / "tlb_loop_n72_r1.elf", "no_tlb",
                           {"mmu.tlb.enabled=false", "mmu.pwc.enabled=false"});
  ASSERT_EQ(p.process.exit_status, kGuestSuccess) << p.process.output;
  const uint64_t walks = p.stat("mmu.walk.count");
  EXPECT_GE(walks, 72u * 2);  // at least the write pass and the read pass over 72 pages
  EXPECT_EQ(p.stat("mmu.walk.refs"), 4 * walks);
  EXPECT_EQ(walks, p.stat("mmu.tlb.l1i.misses") + p.stat("mmu.tlb.l1d.misses"));
  EXPECT_EQ(p.stat("mmu.tlb.l1d.hits"), 0u);
  EXPECT_EQ(p.stat("mmu.tlb.l1i.hits"), 0u);
  EXPECT_EQ(p.stat("mmu.walk.cycles"), p.stat("mmu.walk.refs") * 200);  // memory.latency_cycles
  EXPECT_EQ(p.stat("sim.cycles.page_walk"), p.stat("mmu.walk.cycles"));
}

TEST_F(PlatformTest, WalkReferencesThroughTheCacheHierarchy) {
  const std::vector<std::string> sets = {"mmu.tlb.enabled=false", "mmu.pwc.enabled=false", "cache.enabled=true"};
  const PgsimRun p = pgsim(kKernels / "tlb_loop_n72_r1.elf", "caches", sets);
  ASSERT_EQ(p.process.exit_status, kGuestSuccess) << p.process.output;
  const uint64_t refs = p.stat("mmu.walk.refs");
  EXPECT_EQ(refs, 4 * p.stat("mmu.walk.count"));
  // Every reference is an L1 hit, an L2 hit, an LLC hit or a memory access, at its latency.
  const uint64_t l1 = p.stat("cache.l1d.walk_hits"), l2 = p.stat("cache.l2.walk_hits");
  const uint64_t llc = p.stat("cache.llc.walk_hits"), memory = p.stat("cache.llc.walk_misses");
  EXPECT_EQ(l1 + p.stat("cache.l1d.walk_misses"), refs);
  EXPECT_EQ(l1 + l2 + llc + memory, refs);
  EXPECT_EQ(p.stat("mmu.walk.cycles"), l1 * 4 + l2 * 12 + llc * 42 + memory * 200);  // schema defaults
  EXPECT_GT(l1, memory);  // the same few page-table lines, over and over
}

// The data accesses go through the same hierarchy; what they cost beyond an L1 hit (4 cycles, part
// of the CPI) is the memory bucket, and the buckets still add up to the clock.
TEST_F(PlatformTest, DataAccessesThroughTheCacheHierarchy) {
  const std::vector<std::string> sets = {"cache.enabled=true"};
  const PgsimRun one = pgsim(kKernels / "tlb_loop_n72_r1.elf", "data_one_round", sets);
  const PgsimRun three = pgsim(kKernels / "tlb_loop_n72_r3.elf", "data_three_rounds", sets);
  for (const PgsimRun* p : {&one, &three}) {
    ASSERT_EQ(p->process.exit_status, kGuestSuccess) << p->process.output;
    const uint64_t l1 = p->stat("cache.l1d.hits"), l2 = p->stat("cache.l2.hits"), llc = p->stat("cache.llc.hits");
    const uint64_t memory = p->stat("cache.llc.misses");
    EXPECT_EQ(l1 + l2 + llc + memory, l1 + p->stat("cache.l1d.misses"));
    EXPECT_EQ(p->stat("sim.cycles.memory"), l2 * (12 - 4) + llc * (42 - 4) + memory * (200 - 4));
    EXPECT_EQ(p->stat("sim.cycles"), p->stat("sim.cycles.execute") + p->stat("sim.cycles.io") +
                                         p->stat("sim.cycles.exception") + p->stat("sim.cycles.interrupt") +
                                         p->stat("sim.cycles.halt") + p->stat("sim.cycles.tlb") +
                                         p->stat("sim.cycles.page_walk") + p->stat("sim.cycles.memory"));
  }
  // The loop's 72 loads, 4 KiB apart, all fall in one 8-way L1 set (64 sets of 64-byte lines): LRU
  // evicts each before its reuse, so the two extra rounds miss the L1 at least 2 x 72 more times.
  EXPECT_GE(three.stat("cache.l1d.misses"), one.stat("cache.l1d.misses") + 2 * 72);
  EXPECT_GT(three.stat("sim.cycles.memory"), one.stat("sim.cycles.memory"));
  // Deterministic: the same configuration gives the same figures.
  const PgsimRun again = pgsim(kKernels / "tlb_loop_n72_r1.elf", "data_one_round_again", sets);
  for (const char* name : {"cache.l1d.hits", "cache.l1d.misses", "cache.llc.misses", "sim.cycles.memory", "sim.cycles"})
    EXPECT_EQ(again.stat(name), one.stat(name)) << name;
}

struct Geometry {
  unsigned entries, ways;
};

class TlbGeometry : public PlatformTest, public ::testing::WithParamInterface<Geometry> {};

TEST_P(TlbGeometry, LoopMissesAsTheGeometryPredicts) {
  const Geometry g = GetParam();
  const std::vector<std::string> sets = {"mmu.tlb.l1d.entries=" + std::to_string(g.entries),
                                         "mmu.tlb.l1d.ways=" + std::to_string(g.ways)};
  const PgsimRun one = pgsim(kKernels / "tlb_loop_n72_r1.elf", "one_round", sets);
  const PgsimRun three = pgsim(kKernels / "tlb_loop_n72_r3.elf", "three_rounds", sets);
  ASSERT_EQ(one.process.exit_status, kGuestSuccess) << one.process.output;
  ASSERT_EQ(three.process.exit_status, kGuestSuccess) << three.process.output;
  // The two kernels differ only in the loop count: two more rounds over the 72 pages.
  const uint64_t extra = three.stat("mmu.tlb.l1d.misses") - one.stat("mmu.tlb.l1d.misses");
  EXPECT_EQ(extra, 2 * pgsim::models::predicted_misses_per_round(g.entries, g.ways, 72, kTestBase >> 12));
  EXPECT_EQ(three.stat("mmu.tlb.l1d.hits") + three.stat("mmu.tlb.l1d.misses") -
                one.stat("mmu.tlb.l1d.hits") - one.stat("mmu.tlb.l1d.misses"),
            2u * 72);  // every extra load is one data translation
}

INSTANTIATE_TEST_SUITE_P(Geometries, TlbGeometry,
                         ::testing::Values(Geometry{64, 4},     // sets 0-7 overflow: 40 a round
                                           Geometry{64, 64},    // fully associative, too small: 72
                                           Geometry{128, 4},    // everything fits: 0
                                           Geometry{32, 2}));   // every set overflows: 72

// ---- memory, bad input, determinism -------------------------------------------------------------

TEST_F(PlatformTest, FourGibibyteGuestHasSmallResidentMemory) {
  const PgsimRun p = pgsim(kKernels / "hello.elf", "four_gib", {"memory.size=4G"});
  ASSERT_EQ(p.process.exit_status, kGuestSuccess) << p.process.output;
  // 3 GiB below 4 GiB (the rest is above it), less 1 MiB and the firmware's 128 KiB.
  EXPECT_NE(p.serial.find("mem_upper KiB: 3144576"), std::string::npos) << p.serial;
  EXPECT_LT(p.stat("memory.resident_bytes"), 8u << 20);
  EXPECT_LT(p.process.max_rss_kib, 150 * 1024) << "pgsim's resident set";
}

TEST_F(PlatformTest, BadImagesEndWithAClearError) {
  struct Bad {
    std::string name;
    std::vector<uint8_t> bytes;
    std::string expected;
  };
  std::vector<uint8_t> hello;
  {
    const std::string s = read_file(kKernels / "hello.elf");
    hello.assign(s.begin(), s.end());
  }
  std::vector<uint8_t> truncated(hello.begin(), hello.begin() + 0x1000 + 64);  // cut in the segment
  // A flat image whose a.out-kludge header loads it at 1 GiB, beyond 128 MiB of RAM.
  std::vector<uint8_t> high(64, 0x90);
  const uint32_t header[] = {0x1BADB002, 1u << 16, static_cast<uint32_t>(-(0x1BADB002 + (1u << 16))),
                             0x40000000, 0x40000000, 0, 0, 0x40000020};
  std::memcpy(high.data(), header, sizeof header);
  const std::vector<Bad> cases = {
      {"text.elf", std::vector<uint8_t>(300, 'x'), "no Multiboot header"},
      {"truncated.elf", truncated, "truncated"},
      {"high.bin", high, "outside RAM"},
  };
  for (const Bad& b : cases) {
    const fs::path image = dir_ / b.name;
    std::ofstream(image, std::ios::binary).write(reinterpret_cast<const char*>(b.bytes.data()), b.bytes.size());
    const PgsimRun p = pgsim(image, "bad_" + std::to_string(&b - cases.data()));
    EXPECT_EQ(p.process.signal, 0) << b.name;
    EXPECT_EQ(p.process.exit_status, kSimulatorError) << b.name << ": " << p.process.output;
    EXPECT_NE(p.process.output.find(image.string()), std::string::npos) << p.process.output;
    EXPECT_NE(p.process.output.find(b.expected), std::string::npos) << p.process.output;
  }
}

TEST_F(PlatformTest, SameConfigSameCounts) {
  const PgsimRun a = pgsim(kKernels / "interrupts.elf", "first");
  const PgsimRun b = pgsim(kKernels / "interrupts.elf", "second");
  ASSERT_EQ(a.process.exit_status, kGuestSuccess) << a.process.output;
  for (const char* name : {"cpu.insts.total", "cpu.interrupts", "sim.cycles", "sim.cycles.halt",
                           "mmu.tlb.l1d.misses", "mmu.walk.refs"})
    EXPECT_EQ(a.stat(name), b.stat(name)) << name;
  EXPECT_GT(a.stat("cpu.interrupts"), 0u);
  EXPECT_GT(a.stat("sim.cycles.halt"), 0u);  // the kernel waits in HLT for its timers
}

TEST_F(PlatformTest, RdtscCountsSimulatedCycles) {
  // Between the two reads: the first RDTSC (system), two MOVs (alu), 1000 DEC (alu) and JNZ (branch).
  const PgsimRun p = pgsim(kKernels / "rdtsc.elf", "rdtsc");
  ASSERT_EQ(p.process.exit_status, kGuestSuccess) << p.process.output;
  EXPECT_NE(p.serial.find("cycles: " + std::to_string(30 + 2 * 1 + 1000 * (1 + 1)) + "\n"), std::string::npos)
      << p.serial;
  const PgsimRun slow = pgsim(kKernels / "rdtsc.elf", "rdtsc_slow", {"timing.cpi.alu=2", "timing.cpi.system=50"});
  EXPECT_NE(slow.serial.find("cycles: " + std::to_string(50 + 2 * 2 + 1000 * (2 + 1)) + "\n"), std::string::npos)
      << slow.serial;
  EXPECT_EQ(p.stat("sim.cycles"), p.stat("sim.cycles.execute") + p.stat("sim.cycles.io") +
                                      p.stat("sim.cycles.exception") + p.stat("sim.cycles.interrupt") +
                                      p.stat("sim.cycles.halt") + p.stat("sim.cycles.tlb") +
                                      p.stat("sim.cycles.page_walk") + p.stat("sim.cycles.memory"));
}

// ---- CPUID and the performance counters (tests/kernels/cpuid.S) ------------------------------------

void expect_config_error(const Process& p, const fs::path& config, int line, const std::string& key,
                         const std::string& message);

TEST_F(PlatformTest, CpuidKernelFindsEveryReportedFeatureWorkingAndCountsItsLoop) {
  const fs::path kernel = kKernels / "cpuid.elf";
  const PgsimRun p = pgsim(kernel, "cpuid");
  ASSERT_EQ(p.process.exit_status, kGuestSuccess) << p.serial;
  for (const char* line : {"vendor: GenuineIntel\n", "pcid (report): yes\n", "invpcid: yes\n", "la57: yes\n",
                           "smap: yes\n", "umip: no\n", "vmx (report): no\n", "x2apic (report): yes\n", "pmu: version 2\n",
                           // the first RDPMC, MOV, MOV, 1000 x (DEC, JNZ), MOV: counted exactly
                           "pmu: fixed counter 0 over the loop: 2004\n"})
    EXPECT_NE(p.serial.find(line), std::string::npos) << line << " in\n" << p.serial;
  // Switched off, a feature is neither reported nor there; switched on, the probe finds it.
  const PgsimRun off = pgsim(kernel, "cpuid_off", {"cpu.features=[-pcid, -la57, -rdtscp, -abm, -smap, +umip, -pmu]"});
  ASSERT_EQ(off.process.exit_status, kGuestSuccess) << off.serial;
  for (const char* line : {"pcid (report): no\n", "la57: no\n", "rdtscp: no\n", "abm: no\n", "smap: no\n", "umip: yes\n",
                           "pmu: none\n"})
    EXPECT_NE(off.serial.find(line), std::string::npos) << line << " in\n" << off.serial;
}

// QEMU's TCG "max" CPU and pgsim presenting the same CPU (AMD, without PCID, INVPCID, x2APIC and
// TSC-deadline, with UMIP) print the same lines and find every reported feature working, SMAP with
// CLAC and STAC included. TCG has no PMU, and pgsim presents none on AMD.
TEST_F(PlatformTest, CpuidKernelAgreesWithQemuMaxCpu) {
  const fs::path kernel = kKernels / "cpuid.elf";
  const Process q = run({"timeout", "60", PGSIM_QEMU, "-machine", "pc", "-cpu", "max", "-m", "128", "-kernel",
                         kernel.string(), "-nographic", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"},
                        dir_ / "qemu.log");
  ASSERT_EQ(q.exit_status, 1) << "a probe failed on QEMU: " << q.output;
  const PgsimRun p = pgsim(kernel, "cpuid_amd", {"cpu.vendor=amd", "cpu.features=[-pcid, -invpcid, -x2apic, -tsc-deadline, +umip]"});
  ASSERT_EQ(p.process.exit_status, kGuestSuccess) << p.serial;
  EXPECT_NE(p.serial.find("smap: yes\n"), std::string::npos);
  EXPECT_EQ(kernel_output(p.serial), kernel_output(q.output));
}

TEST_F(PlatformTest, CpuFeatureErrorsNameFileLineAndKey) {
  struct Bad {
    const char* cpu;  // the cpu section's keys, from line 6
    int line;
    const char* key;
    const char* message;
  };
  for (const Bad& b : {Bad{"  vendor: amd\n  features: [+vmx]\n", 7, "cpu.features", "Intel only"},
                       Bad{"  features: [-pcid, +avx]\n", 6, "cpu.features", "does not implement avx"},
                       Bad{"  features: [+pcidd]\n", 6, "cpu.features", "did you mean 'pcid'"},
                       Bad{"  vendor: amd\n  vmx: true\n", 7, "cpu.vmx", "SVM"}}) {
    const fs::path config = dir_ / "bad_cpu.yaml";
    std::ofstream(config) << "run:\n  name: bad_cpu\nguest:\n  kernel: " << (kKernels / "hello.elf").string()
                          << "\ncpu:\n" << b.cpu;
    const Process p = run({PGSIM_BINARY, "run", config.string(), "--results-dir", (dir_ / "results").string()},
                          dir_ / "bad_cpu.log");
    expect_config_error(p, config, b.line, b.key, b.message);
  }
  const PgsimRun pmu = pgsim(kKernels / "hello.elf", "pmu_under_vmm", {"vmm.strategy=trap_emulate", "cpu.features=[+pmu]"});
  EXPECT_EQ(pmu.process.exit_status, 2) << pmu.process.output;
  EXPECT_NE(pmu.process.output.find("does not virtualize the performance-monitoring unit"), std::string::npos)
      << pmu.process.output;
}

// ---- how runs end ---------------------------------------------------------------------------------

TEST_F(PlatformTest, InstructionLimitStopsExactly) {
  const PgsimRun p = pgsim(kKernels / "compute.elf", "limit", {"run.max_instructions=12345"});
  EXPECT_EQ(p.process.exit_status, kLimitReached) << p.process.output;
  EXPECT_EQ(p.report["run"]["end"], "instruction_limit");
  EXPECT_EQ(p.stat("cpu.insts.total"), 12345u);
}

TEST_F(PlatformTest, SimulatedTimeLimit) {
  // The interrupts kernel waits for 5 PIT ticks of 1 ms: 2 ms of simulated time is not enough.
  const PgsimRun p = pgsim(kKernels / "interrupts.elf", "time_limit", {"run.max_seconds=0.002"});
  EXPECT_EQ(p.process.exit_status, kLimitReached) << p.process.output;
  EXPECT_EQ(p.report["run"]["end"], "time_limit");
  EXPECT_GE(p.stat("sim.cycles"), 6'000'000u);  // 2 ms at 3 GHz
  EXPECT_LT(p.stat("sim.cycles"), 6'100'000u);
}

TEST_F(PlatformTest, HaltWithInterruptsOffEndsTheRun) {
  // With the exit device elsewhere, hello's final OUT to 0xF4 goes nowhere: CLI; HLT follows.
  const PgsimRun p = pgsim(kKernels / "hello.elf", "halted", {"devices.exit_port=0x500"});
  EXPECT_EQ(p.process.exit_status, kGuestFailure) << p.process.output;
  EXPECT_EQ(p.report["run"]["end"], "guest_halted");
  EXPECT_NE(p.serial.find("bye"), std::string::npos);
}

TEST_F(PlatformTest, TripleFaultEndsTheRunAsOnQemu) {
  const fs::path kernel = kKernels / "triple_fault.elf";
  const Process q = qemu(kernel);
  EXPECT_EQ(q.exit_status, 0) << q.output;  // -no-reboot: QEMU exits normally on the reset
  const PgsimRun p = pgsim(kernel, "triple");
  EXPECT_EQ(p.process.exit_status, kGuestFailure) << p.process.output;
  EXPECT_EQ(p.report["run"]["end"], "triple_fault");
  EXPECT_EQ(kernel_output(p.serial), kernel_output(q.output));
  EXPECT_NE(p.report["run"]["detail"].get<std::string>().find("#DF"), std::string::npos)
      << p.report["run"]["detail"];
}

TEST_F(PlatformTest, VcdTraceOfCpuModeAndInterrupts) {
  const PgsimRun p = pgsim(kKernels / "interrupts.elf", "traced", {"trace.vcd=true"});
  ASSERT_EQ(p.process.exit_status, kGuestSuccess) << p.process.output;
  const std::string vcd = read_file(dir_ / "results" / "traced" / "trace.vcd");
  EXPECT_NE(vcd.find("$enddefinitions"), std::string::npos);
  EXPECT_NE(vcd.find("interrupts"), std::string::npos);
  EXPECT_NE(vcd.find("mode"), std::string::npos);
}

// The last value the VCD trace gives signal `name` (a `$var wire N id name ...` and `b... id`
// value changes), or ~0 when the trace has no such signal.
uint64_t last_vcd_value(const std::string& vcd, const std::string& name) {
  std::istringstream lines(vcd);
  std::string id;
  uint64_t value = ~0ull;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<std::string> w{std::istream_iterator<std::string>(words), {}};
    if (w.size() >= 5 && w[0] == "$var" && w[4] == name) id = w[3];
    else if (!id.empty() && w.size() == 2 && w[0][0] == 'b' && w[1] == id) value = std::stoull(w[0].substr(1), nullptr, 2);
  }
  return value;
}

// Under hw_assist the trace shows the VM exits and entries: the interrupt test kernel's port I/O
// and interrupts exit, and every exit is followed by an entry, after the first entry at the start.
TEST_F(PlatformTest, VcdTraceShowsVmExitsAndEntries) {
  const PgsimRun p =
      pgsim(kKernels / "interrupts.elf", "traced_vmx", {"trace.vcd=true", "vmm.strategy=hw_assist", "cpu.vmx=true"});
  ASSERT_EQ(p.process.exit_status, kGuestSuccess) << p.process.output;
  const std::string vcd = read_file(dir_ / "results" / "traced_vmx" / "trace.vcd");
  const uint64_t exits = p.stat("vmm.exits.total");
  EXPECT_GT(exits, 0u);
  EXPECT_EQ(last_vcd_value(vcd, "vm_exits"), exits);
  EXPECT_EQ(last_vcd_value(vcd, "vm_entries"), exits + 1);
}

// ---- a guest hypervisor: VMX for guest code --------------------------------------------------------
//
// tests/kernels/guestvmx.c enters VMX operation, misuses VMX instructions on purpose, runs a nested
// guest that makes one VM exit of each kind, and checks VM-entry failures. QEMU's TCG does not
// emulate VMX (CPUID.1:ECX.VMX = 0), so there is no QEMU run to compare with: pgsim's output is
// compared with the numbers the Intel SDM gives (vol. 3: appendix C for exit reasons, table 28-5
// for I/O qualifications, 25.9.2 for interruption information, table 28-7 for EPT violations,
// table 31-1 for VM-instruction errors), and QEMU shows only that the kernel boots and finds none.

const char* const kGuestHypervisorOutput =
    "== pgsim test kernel: guestvmx ==\n"
    // IA32_FEATURE_CONTROL locked with VMX outside SMX; IA32_VMX_BASIC: revision, 4 KiB, bit 55.
    "IA32_FEATURE_CONTROL=0x5 VMCS revision=1 region bytes=4096 true controls=1\n"
    "vmxon: VMsucceed\n"
    "vmread without a current VMCS: VMfailInvalid\n"
    "vmclear: VMsucceed\n"
    "vmptrld: VMsucceed\n"
    "vmptrst: VMsucceed\n"
    "vmptrst: the current VMCS\n"
    "vmxon in VMX root operation: VMfailValid error=15\n"
    "vmclear of the VMXON region: VMfailValid error=3\n"
    "vmptrld of a VMCS with another revision: VMfailValid error=11\n"
    "vmread of an unsupported field: VMfailValid error=12\n"
    "vmwrite of a read-only field: VMfailValid error=13\n"
    "vmresume of a clear VMCS: VMfailValid error=5\n"
    "vmwrite failures=0\n"
    // CPUID: reason 10, no qualification, 2 bytes (0F A2).
    "exit reason=0xa qualification=0x0\n"
    "  cpuid leaf=0x0 length=2\n"
    // OUT imm8, AL: reason 30; size 1 (bits 2:0 = 0), OUT (bit 3 = 0), immediate (bit 6), port 80H
    // in bits 31:16.
    "exit reason=0x1e qualification=0x800040\n"
    "  io value=0x42 length=2\n"
    // #PF with bit 14 of the exception bitmap: reason 0, qualification the linear address;
    // interruption information: vector 14, hardware exception (3), error code valid, valid.
    "exit reason=0x0 qualification=0x500000\n"
    "  exception info=0x80000b0e error=0x0\n"
    // A store to a page the EPT maps read-only: reason 48, qualification write (bit 1), readable
    // (bit 3), not writable or executable, guest-linear address valid (bit 7) and the translation
    // of a linear address (bit 8).
    "exit reason=0x30 qualification=0x18a\n"
    "  ept violation gpa=0x600000 linear=0x600000\n"
    "  invept single-context: VMsucceed\n"
    // HLT with HLT exiting: reason 12, 1 byte; VMCALL: reason 18, 3 bytes.
    "exit reason=0xc qualification=0x0\n"
    "  hlt length=1\n"
    "exit reason=0x12 qualification=0x0\n"
    "  vmcall length=3: the nested guest is done\n"
    "nested guest: 6 exits handled, store done\n"
    "vmlaunch of a launched VMCS: VMfailValid error=4\n"
    "vmclear of the second VMCS: VMsucceed\n"
    "vmptrld of the second VMCS: VMsucceed\n"
    // VM-entry failures: invalid control fields 7, invalid host-state fields 8, invalid guest state
    // a VM exit with reason 33 and bit 31 set (SDM 27.8).
    "vmlaunch with a reserved pin-based control: VMfailValid error=7\n"
    "vmlaunch with host CR0.PG clear: VMfailValid error=8\n"
    "exit reason=0x80000021 qualification=0x0\n"
    "  VM-entry failure\n"
    "vmlaunch with guest RFLAGS bit 1 clear: VM-entry failure exit\n"
    "vmptrld of the first VMCS: VMsucceed\n"
    "first VMCS: guest RIP at the VMCALL\n"
    // INVEPT type 3 and INVVPID single-context of VPID 0: invalid operand, 28.
    "invept of type 3: VMfailValid error=28\n"
    "invept all-context: VMsucceed\n"
    "invvpid single-context of VPID 0: VMfailValid error=28\n"
    "invvpid all-context: VMsucceed\n"
    "vmxoff: VMsucceed\n"
    "guestvmx: done\n";

TEST_F(PlatformTest, GuestHypervisorSeesTheSdmsExitsAndErrors) {
  const PgsimRun p = pgsim(kKernels / "guestvmx.elf", "guestvmx", {"cpu.vmx=true"});
  ASSERT_EQ(p.process.exit_status, kGuestSuccess) << p.process.output << p.serial;
  EXPECT_EQ(kernel_output(p.serial), kGuestHypervisorOutput);
  // One VMLAUNCH and five VMRESUMEs reach the nested guest; six exits and the entry failure.
  EXPECT_EQ(p.stat("cpu.vmx.entries"), 6u);
  EXPECT_EQ(p.stat("cpu.vmx.exits.total"), 7u);
  for (const char* reason : {"cpuid", "io_instruction", "exception_or_nmi", "ept_violation", "hlt", "vmcall",
                             "entry_failure_guest_state"})
    EXPECT_EQ(p.stat(std::string("cpu.vmx.exits.") + reason), 1u) << reason;
  // VMRESUME of a clear VMCS, VMLAUNCH of a launched one, and the three checks.
  EXPECT_EQ(p.stat("cpu.vmx.entry_failures"), 5u);
  EXPECT_EQ(p.stat("cpu.vmx.instructions.vmxon"), 2u);
  EXPECT_EQ(p.stat("cpu.vmx.instructions.vmlaunch"), 5u);
  EXPECT_EQ(p.stat("cpu.vmx.instructions.vmresume"), 6u);
  EXPECT_EQ(p.stat("cpu.vmx.instructions.invept"), 3u);
  EXPECT_EQ(p.stat("cpu.vmx.instructions.invvpid"), 2u);
  // The nested guest's EPT is walked by the MMU's two-dimensional walker.
  EXPECT_EQ(p.stat("mmu.nested.ept_violations"), 1u);
  EXPECT_GT(p.stat("mmu.walk.nested_refs"), 0u);
  EXPECT_EQ(p.stat("vmm.traps.total"), 0u);  // the CPU's own exits: no trap into pgsim's VMM
  // Each entry and exit costs a hardware VM entry or exit (vmm.cost.*_cycles, 250 by default).
  EXPECT_EQ(p.stat("sim.cycles.vmx_transitions"), 6u * 250 + 7u * 250);
}

// Without cpu.vmx the processor has no VMX, as QEMU's TCG: the kernel finds none on both.
TEST_F(PlatformTest, GuestHypervisorFindsNoVmxWithoutTheExtension) {
  const Process q = qemu(kKernels / "guestvmx.elf");
  const PgsimRun p = pgsim(kKernels / "guestvmx.elf", "guestvmx_novmx");
  ASSERT_EQ(q.exit_status, 5) << q.output;  // the kernel wrote 2: status (2 << 1) | 1
  EXPECT_EQ(p.report.at("run").at("guest_status").get<int>(), 5) << p.process.output;
  EXPECT_EQ(kernel_output(p.serial), kernel_output(q.output));
  EXPECT_NE(p.serial.find("CPUID.1:ECX.VMX = 0"), std::string::npos) << p.serial;
}

// Device memory reached by instructions other than MOV (read-modify-write, IMUL, XCHG, CMP, BTS,
// PUSH and POP, MOVS, STOS) and, in mmio_fetch, code fetched from it: every strategy prints what
// QEMU prints (mmio_fetch: what the native run prints; QEMU's TCG does not execute from the APIC
// page). Under hw_assist each of those instructions is one exit the VMM carries out on its
// virtual CPU, counted exactly: 14, and 16 with the store of the RET and the fetch; they retire on
// the guest's core all the same, so that it counts native's instructions, by class and ring.
TEST_F(PlatformTest, DeviceMemoryReachedByAnyInstructionGivesTheSameOutputUnderEveryStrategy) {
  const Process q = qemu(kKernels / "mmio.elf");
  ASSERT_EQ(q.exit_status, 1) << "QEMU: " << q.output;
  const PgsimRun native_fetch = pgsim(kKernels / "mmio_fetch.elf", "mmio_fetch_native");
  ASSERT_EQ(native_fetch.process.exit_status, kGuestSuccess) << native_fetch.process.output;
  ASSERT_NE(native_fetch.serial.find("returned from device memory"), std::string::npos) << native_fetch.serial;
  const std::vector<std::vector<std::string>> strategies = {
      {"vmm.strategy=native"},
      {"vmm.strategy=trap_emulate"},
      {"vmm.strategy=binary_translation"},
      {"cpu.vmx=true", "vmm.strategy=hw_assist", "vmm.paging=nested"},
      {"cpu.vmx=true", "vmm.strategy=hw_assist", "vmm.paging=nested", "vmm.ept.layout=shuffled"},
      {"cpu.vmx=true", "vmm.strategy=hw_assist", "vmm.paging=shadow"}};
  std::optional<PgsimRun> native;
  for (size_t k = 0; k < strategies.size(); ++k) {
    const std::vector<std::string>& sets = strategies[k];
    SCOPED_TRACE(sets.back());
    const PgsimRun p = pgsim(kKernels / "mmio.elf", "mmio_" + std::to_string(k), sets);
    EXPECT_EQ(p.process.exit_status, kGuestSuccess) << p.process.output;
    EXPECT_EQ(kernel_output(p.serial), kernel_output(q.output));
    const PgsimRun f = pgsim(kKernels / "mmio_fetch.elf", "mmio_fetch_" + std::to_string(k), sets);
    EXPECT_EQ(f.process.exit_status, kGuestSuccess) << f.process.output;
    EXPECT_EQ(f.serial, native_fetch.serial);
    if (k == 0) native = p;
    if (sets[0] == "cpu.vmx=true") {
      EXPECT_EQ(p.stat("vmm.hw_assist.mmio_emulated"), 14u);
      EXPECT_EQ(f.stat("vmm.hw_assist.mmio_emulated"), 16u);
      for (const char* figure : {"cpu.insts.total", "cpu.insts.kernel", "cpu.insts.user", "cpu.insts.class.rmw",
                                 "cpu.insts.class.string", "cpu.insts.class.load", "cpu.insts.class.store"}) {
        EXPECT_EQ(p.stat(figure), native->stat(figure)) << figure;
        EXPECT_EQ(f.stat(figure), native_fetch.stat(figure)) << figure;
      }
    }
  }
}

// Instruction fetches that fault in 64-bit kernel code (tests/kernels/fetchfault.S): a jump and a
// call to unmapped memory and an instruction that runs off its last mapped page. Every strategy
// delivers the guest's #PF with QEMU's CR2, error code and RIP. Binary translation cannot
// translate that code: the real CPU's own fetch faults there and the VMM reflects it.
TEST_F(PlatformTest, InstructionFetchFaultsInKernelCodeReachTheGuestUnderEveryStrategy) {
  run_everywhere_as_on_qemu("fetchfault", "cr2=6291456 error=0 rip=6291454");
}

// Control-register moves whose general register is the stack pointer (tests/kernels/crstack.S):
// a VM exit loads the host's RSP, so hw_assist's handlers take the guest's from the VMCS. The CR0
// writes exit under both pagings (CR0.NE is the VMM's), the CR3 moves under shadow paging; 32-bit
// code reads ESP as its 32 bits. Every strategy prints QEMU's values.
TEST_F(PlatformTest, ControlRegisterMovesThroughTheStackPointerMatchQemuUnderEveryStrategy) {
  for (const auto& [v, p] : run_everywhere_as_on_qemu("crstack", "32-bit CR0 from ESP: 00000011")) {
    // Nested: the three CR0.NE toggles. Shadow: those, the CR4.PGE toggle, the CR3 read and load,
    // and the three CR writes of the switch to long mode.
    if (v.strategy == "hw_assist")
      EXPECT_EQ(p.stat("vmm.exits.cr_access"), v.paging == "shadow" ? 9u : 3u) << v.label;
  }
}

// hw_assist does not virtualize VMX for its guest: it presents a processor without VMX, as KVM
// without nesting does. Forced to try, the kernel's CR4.VMXE write takes #GP (refused by the VMM,
// counted) and the run ends as on a processor without VMX, the faulting write not retired.
TEST_F(PlatformTest, GuestHypervisorUnderHwAssistSeesAProcessorWithoutVmx) {
  const PgsimRun bare = pgsim(kKernels / "guestvmx.elf", "guestvmx_forced_novmx", {"guest.cmdline=vmx=force"});
  for (const char* paging : {"nested", "shadow"}) {
    SCOPED_TRACE(paging);
    const PgsimRun p = pgsim(kKernels / "guestvmx.elf", std::string("guestvmx_hw_assist_") + paging,
                             {"cpu.vmx=true", "vmm.strategy=hw_assist", std::string("vmm.paging=") + paging,
                              "guest.cmdline=vmx=force"});
    if (std::string(paging) == "shadow") {  // a 32-bit kernel: refused at its LTR, before it gets there
      EXPECT_NE(p.report.at("run").at("detail").get<std::string>().find("in legacy mode on PAE shadows is not implemented"),
                std::string::npos) << p.process.output;
      continue;
    }
    EXPECT_EQ(p.report.at("run").at("end"), bare.report.at("run").at("end")) << p.process.output;
    EXPECT_EQ(p.report.at("run").at("end"), "triple_fault");
    EXPECT_EQ(kernel_output(p.serial), kernel_output(bare.serial));
    EXPECT_NE(p.serial.find("vmx=force: VMXON all the same"), std::string::npos) << p.serial;
    EXPECT_EQ(p.stat("vmm.hw_assist.vmx_refused"), 1u);
    EXPECT_EQ(p.stat("cpu.insts.total"), bare.stat("cpu.insts.total"));
  }
}

// ---- limits that bound the host's work, whatever the guest does ------------------------------------

// Code for the fuzz harness: UD2 everywhere, so the #UD handler (at offset 6 * 64) faults again
// at once, on the same IST stack: a fault loop in place, which retires nothing.
const std::string kUd2Everywhere = [] {
  std::string code;
  for (int i = 0; i < 2048; ++i) code += "\x0f\x0b";
  return code;
}();
// 32-bit code: REP LODSD with ECX = 2^32 - 1 from address 0 (paging off: RAM, then unmapped
// addresses that read as all ones; ESI wraps at 4 GiB), then JMP $: one instruction that iterates
// for hours of host time.
const std::string kLongRepLods = std::string("\xb9\xff\xff\xff\xff\x31\xf6\xf3\xad\xeb\xfe", 11);

TEST_F(PlatformTest, FaultLoopEndsAsNoProgress) {
  const fs::path code = module("ud2.bin", kUd2Everywhere);
  for (const char* strategy : {"native", "trap_emulate"}) {
    const std::string name = std::string("stuck_") + strategy;
    const PgsimRun p = pgsim(kKernels / "fuzz_user64.elf", name,
                             {"guest.modules=[" + code.string() + "]", std::string("vmm.strategy=") + strategy,
                              "run.no_progress_faults=500"});
    EXPECT_EQ(p.process.exit_status, kLimitReached) << p.process.output;
    EXPECT_EQ(p.report["run"]["end"], "no_progress") << p.process.output;
    const std::string detail = p.report["run"]["detail"];
    EXPECT_NE(detail.find("#UD at RIP 0x"), std::string::npos) << detail;
    EXPECT_NE(detail.find("500 times"), std::string::npos) << detail;
    EXPECT_NE(p.serial.find("running the module"), std::string::npos) << p.serial;
  }
}

// Natively the real CPU runs the REP LODSD. With IOPL 3 first (PUSHF; OR [ESP], 0x3000; POPF,
// which traps on the virtualizable profile), trap_emulate and binary translation interpret the
// guest on the VMM's virtual CPU (the real CPU would let it do I/O), and its iterations and
// instructions are the real CPU's delegated steps.
TEST_F(PlatformTest, StringIterationsAndEventsCountTowardTheStepLimit) {
  const fs::path code = module("rep.bin", std::string("\x9c\x81\x0c\x24\x00\x30\x00\x00\x9d", 9) + kLongRepLods);
  for (const char* strategy : {"native", "trap_emulate", "binary_translation"}) {
    SCOPED_TRACE(strategy);
    const PgsimRun p = pgsim(kKernels / "fuzz_prot32.elf", std::string("steps_") + strategy,
                             {"guest.modules=[" + code.string() + "]", "run.max_steps=1000000",
                              "cpu.profile=x86-pg", std::string("vmm.strategy=") + strategy});
    EXPECT_EQ(p.process.exit_status, kLimitReached) << p.process.output;
    EXPECT_EQ(p.report["run"]["end"], "step_limit");
    EXPECT_EQ(p.stat("cpu.insts.total") + p.stat("cpu.string_iterations") + p.stat("cpu.exceptions") +
                  p.stat("cpu.interrupts") + p.stat("cpu.delegated_steps"),
              1'000'000u);
    // The REP LODSD, stopped between iterations.
    EXPECT_GT(p.stat(std::string(strategy) == "native" ? "cpu.string_iterations" : "cpu.delegated_steps"), 900'000u);
  }
}

TEST_F(PlatformTest, HostTimeLimitEndsALongStringInstructionWithinASecond) {
  const fs::path code = module("rep.bin", kLongRepLods);
  // Free string iterations and no simulated-time limit: only the host's clock can end this run.
  const PgsimRun p = pgsim(kKernels / "fuzz_prot32.elf", "host_limit",
                           {"guest.modules=[" + code.string() + "]", "run.max_host_seconds=1",
                            "run.max_seconds=0", "timing.cpi.string=0"});
  EXPECT_EQ(p.process.exit_status, kLimitReached) << p.process.output;
  EXPECT_EQ(p.report["run"]["end"], "time_limit");
  const double host = p.report["run"]["host_seconds"];
  EXPECT_GE(host, 1.0);
  EXPECT_LT(host, 2.0);
}

TEST_F(PlatformTest, DefaultConfigLimitsSimulatedTime) {
  const Process p = run({PGSIM_BINARY, "config", "show"}, dir_ / "show.log");
  ASSERT_EQ(p.exit_status, kGuestSuccess) << p.output;
  std::istringstream lines(p.output);
  std::string line;
  while (std::getline(lines, line) && line.rfind("run.max_seconds ", 0) != 0) {}
  std::istringstream words(line);
  std::string key, value;
  words >> key >> value;
  EXPECT_GE(std::stod(value), 10.0) << line;  // generous, but a limit
}

// ---- config errors found before anything runs: status 2, file, line and key -----------------------

// The config file of pgsim() has the run name on line 2 and the kernel on line 5.
void expect_config_error(const Process& p, const fs::path& config, int line, const std::string& key,
                         const std::string& message) {
  EXPECT_EQ(p.exit_status, 2) << p.output;
  EXPECT_NE(p.output.find(config.string() + ":" + std::to_string(line) + ":"), std::string::npos) << p.output;
  EXPECT_NE(p.output.find("'" + key + "'"), std::string::npos) << p.output;
  EXPECT_NE(p.output.find(message), std::string::npos) << p.output;
}

TEST_F(PlatformTest, EmptyOrUnreadableKernelIsAConfigError) {
  const fs::path empty = module("empty.elf", "");
  const PgsimRun e = pgsim(empty, "empty_kernel");
  expect_config_error(e.process, dir_ / "empty_kernel.yaml", 5, "guest.kernel", "which is empty");
  EXPECT_FALSE(fs::exists(dir_ / "results" / "empty_kernel")) << "nothing ran";
  const PgsimRun d = pgsim(dir_, "directory_kernel");  // a folder: not a file that can be read
  expect_config_error(d.process, dir_ / "directory_kernel.yaml", 5, "guest.kernel", "not an existing file");
}

TEST_F(PlatformTest, RunNameTooLongForAFolderIsAConfigError) {
  const fs::path config = dir_ / "long_name.yaml";
  std::ofstream(config) << "run:\n  name: " << std::string(300, 'n') << "\nguest:\n  kernel: "
                        << (kKernels / "hello.elf").string() << "\n";
  const Process p = run({PGSIM_BINARY, "run", config.string(), "--results-dir", (dir_ / "results").string()},
                        dir_ / "long_name.log");
  expect_config_error(p, config, 2, "run.name", "at most 255");
  EXPECT_FALSE(fs::exists(dir_ / "results")) << "nothing ran";
}

TEST_F(PlatformTest, ConfigStringThatIsNotUtf8IsAConfigError) {
  const fs::path config = dir_ / "latin1.yaml";
  std::ofstream(config) << "run:\n  name: latin1\nguest:\n  kernel: " << (kKernels / "hello.elf").string()
                        << "\n  cmdline: caf\xe9 au lait\n";
  const Process p = run({PGSIM_BINARY, "run", config.string(), "--results-dir", (dir_ / "results").string()},
                        dir_ / "latin1.log");
  expect_config_error(p, config, 5, "guest.cmdline", "not UTF-8 (0xe9 at byte 3)");
  EXPECT_FALSE(fs::exists(dir_ / "results" / "latin1")) << "nothing ran";
}

// ---- interrupted runs keep what they did ------------------------------------------------------------

// A run of the endless REP LODSD, started; returns once its serial log shows the harness's line
// before the module (polling the file: the log is written as the guest prints), or -1.
class InterruptedRunTest : public PlatformTest {
 protected:
  pid_t start_endless_run(const std::string& name) {
    const fs::path code = module("rep.bin", kLongRepLods);
    const fs::path log = dir_ / (name + ".log"), serial_log = dir_ / "results" / name / "serial.log";
    const pid_t pid = start(pgsim_argv(kKernels / "fuzz_prot32.elf", name,
                                       {"guest.modules=[" + code.string() + "]", "run.max_seconds=0"}),
                            log);
    for (int polls = 0; polls < 60'000; ++polls) {
      if (read_file(serial_log).find("running the module\n") != std::string::npos) return pid;
      if (waitpid(pid, nullptr, WNOHANG) == pid) {
        ADD_FAILURE() << "the run ended early: " << read_file(log);
        return -1;
      }
      usleep(1000);
    }
    ADD_FAILURE() << "no serial output: " << read_file(log);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return -1;
  }
};

TEST_F(InterruptedRunTest, SigtermEndsTheRunWithItsReports) {
  const fs::path out = dir_ / "results" / "term";
  const pid_t pid = start_endless_run("term");
  ASSERT_GT(pid, 0);
  kill(pid, SIGTERM);
  PgsimRun r;
  r.process = wait_for(pid, dir_ / "term.log");
  collect(r, "term");
  EXPECT_EQ(r.process.exit_status, 128 + SIGTERM) << r.process.output;
  ASSERT_TRUE(r.report.is_object()) << "no stats.json";
  EXPECT_EQ(r.report["run"]["end"], "interrupted");
  EXPECT_EQ(r.report["run"]["detail"], "stopped by SIGTERM");
  EXPECT_EQ(r.report["run"]["exit_status"], 128 + SIGTERM);
  EXPECT_GT(r.stat("cpu.string_iterations"), 0u);
  EXPECT_NE(read_file(out / "stats.txt").find("cpu.insts.total"), std::string::npos);
  EXPECT_NE(read_file(out / "config.yaml").find("max_seconds"), std::string::npos);
  EXPECT_EQ(r.serial, "== pgsim test kernel: fuzz harness ==\nrunning the module\n");
}

TEST_F(InterruptedRunTest, SigkillLeavesTheSerialOutputAndNoPartialReport) {
  const fs::path out = dir_ / "results" / "killed";
  const pid_t pid = start_endless_run("killed");
  ASSERT_GT(pid, 0);
  kill(pid, SIGKILL);
  const Process p = wait_for(pid, dir_ / "killed.log");
  EXPECT_EQ(p.signal, SIGKILL);
  EXPECT_EQ(read_file(out / "serial.log"), "== pgsim test kernel: fuzz harness ==\nrunning the module\n");
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(out)) files.push_back(entry.path().filename().string());
  std::sort(files.begin(), files.end());
  // config.yaml is written (whole) before the simulation starts; no report, no temporary file.
  EXPECT_EQ(files, (std::vector<std::string>{"config.yaml", "serial.log"}));
}

}  // namespace

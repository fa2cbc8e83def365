// The guest kernel on each runner: it boots and passes its own checks, every benchmark prints the
// checksum computed independently on the host, the selftest observes what x86 defines, bad
// command lines fail loudly, and the output (timing lines aside) is the same on every run and on
// every machine.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include "expected_checksums.h"
#include "guest_runner.h"

namespace pgsim::guest_test {
namespace {

constexpr int kExitPass = 1;  // exit device value 0: (0 << 1) | 1
constexpr int kExitFail = 3;  // exit device value 1

// The kernel's lines: from its first line on (firmware output before it differs between
// machines), without carriage returns.
std::vector<std::string> guest_lines(const std::string& serial) {
    std::vector<std::string> lines;
    size_t start = serial.find("pgsim-kernel: booting");
    if (start == std::string::npos) return lines;
    std::istringstream in(serial.substr(start));
    for (std::string line; std::getline(in, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(line);
    }
    while (!lines.empty() && lines.back().empty()) lines.pop_back();
    return lines;
}

std::vector<std::string> without_timing(const std::vector<std::string>& lines) {
    std::vector<std::string> kept;
    for (const auto& l : lines)
        if (l.rfind("timing:", 0) != 0) kept.push_back(l);
    return kept;
}

bool has_line(const std::vector<std::string>& lines, const std::string& wanted) {
    for (const auto& l : lines)
        if (l == wanted) return true;
    return false;
}

std::string describe(const GuestRun& run) {
    std::ostringstream s;
    s << "exit status " << run.exit_status << (run.timed_out ? " (timed out)" : "")
      << (run.launch_error.empty() ? "" : " launch error: " + run.launch_error) << "\nserial:\n"
      << run.serial;
    return s.str();
}

// A run that must have ended through the exit device with the kernel's own verdict.
std::vector<std::string> expect_verdict(const GuestRun& run, bool pass) {
    EXPECT_TRUE(run.launch_error.empty()) << describe(run);
    EXPECT_FALSE(run.timed_out) << describe(run);
    EXPECT_EQ(run.exit_status, pass ? kExitPass : kExitFail) << describe(run);
    auto lines = guest_lines(run.serial);
    EXPECT_FALSE(lines.empty()) << "the kernel printed nothing\n" << describe(run);
    if (lines.empty()) return lines;
    if (pass) {
        EXPECT_EQ(lines.back(), "pgsim-kernel: PASS") << describe(run);
    } else {
        EXPECT_EQ(lines.back().rfind("pgsim-kernel: FAIL ", 0), 0u) << describe(run);
    }
    for (const auto& l : lines) EXPECT_EQ(l.rfind("CHECK FAILED", 0), std::string::npos) << l;
    return lines;
}

std::string runner_name(const testing::TestParamInfo<NamedRunner>& info) { return info.param.name; }

class GuestKernel : public testing::TestWithParam<NamedRunner> {};

TEST_P(GuestKernel, BootsPassesItsChecksAndReportsThePlatform) {
    auto lines = expect_verdict(GetParam().run(""), true);
    EXPECT_TRUE(has_line(lines, "check: cs=0x8 cpl=0"));
    EXPECT_TRUE(has_line(lines, "check: interrupt flag save/restore ok"));
    EXPECT_TRUE(has_line(lines, "fw_cfg: ram=128 MiB cpus=1"));
    EXPECT_TRUE(has_line(lines, "pvops: native"));
    EXPECT_TRUE(has_line(lines, "no workload given (bench=NAME); boot checks only"));
}

TEST_P(GuestKernel, RejectsAnUnknownBenchmark) {
    auto lines = expect_verdict(GetParam().run("bench=nosuch iters=5"), false);
    EXPECT_TRUE(has_line(lines, "command line: unknown bench: 'bench=nosuch'"));
    EXPECT_EQ(lines.back(), "pgsim-kernel: FAIL bad command line");
}

TEST_P(GuestKernel, RejectsABadIterationCount) {
    auto lines = expect_verdict(GetParam().run("bench=syscall iters=12x"), false);
    EXPECT_TRUE(has_line(lines, "command line: iters must be a positive integer: 'iters=12x'"));
}

TEST_P(GuestKernel, RejectsAWorkingSetTooSmallForTwoEntries) {
    auto lines = expect_verdict(GetParam().run("bench=memwalk ws=8"), false);
    EXPECT_TRUE(has_line(lines, "command line: ws must be between 16 and 268435456 bytes: 'ws=8'"));
}

TEST_P(GuestKernel, RejectsForkwaitDataBeyondTheHeap) {
    auto lines = expect_verdict(GetParam().run("bench=forkwait pages=65537"), false);
    EXPECT_TRUE(has_line(lines, "command line: pages must be between 0 and 65536: 'pages=65537'"));
}

TEST_P(GuestKernel, RejectsAnUnknownKey) {
    auto lines = expect_verdict(GetParam().run("bench=syscall speed=3"), false);
    EXPECT_TRUE(has_line(lines, "command line: unknown key (expected bench, iters, ws, pages, pvbatch): 'speed=3'"));
}

// pvbatch=N sizes the paravirtual page-table batches; natively it changes nothing.
TEST_P(GuestKernel, PvbatchIsParsedAndChangesNothingNatively) {
    auto lines = expect_verdict(GetParam().run("bench=forkwait iters=10 pvbatch=0"), false);
    EXPECT_TRUE(has_line(lines, "command line: pvbatch must be between 1 and 256: 'pvbatch=0'"));
    expect_verdict(GetParam().run("bench=forkwait iters=10 pvbatch=257"), false);
    auto plain = without_timing(expect_verdict(GetParam().run("bench=forkwait iters=10"), true));
    for (const char* batch : {"pvbatch=1", "pvbatch=256"})
        EXPECT_EQ(without_timing(expect_verdict(GetParam().run(std::string("bench=forkwait iters=10 ") + batch), true)),
                  plain)
            << batch;
}

TEST_P(GuestKernel, OutputIsTheSameOnEveryRunApartFromTiming) {
    const std::string cmdline = "bench=ctxswitch iters=50";
    auto first = without_timing(expect_verdict(GetParam().run(cmdline), true));
    auto second = without_timing(expect_verdict(GetParam().run(cmdline), true));
    EXPECT_EQ(first, second);
}

// What the selftest must observe on a machine that behaves as x86 defines (SDM vol. 2 and 3):
// ring 0 sees its own selectors and may change IF and IOPL; ring 3 sees CPL 3, its POPF and IRET
// changes of IF and IOPL are silently ignored, privileged instructions raise #GP, and the
// descriptor-table stores reveal the kernel's tables (classic x86 without UMIP).
TEST_P(GuestKernel, SelftestObservesX86Semantics) {
    auto lines = expect_verdict(GetParam().run("bench=selftest"), true);
    const std::vector<std::string> expected = {
        "selftest kernel mov_cs: value=0x8",        "selftest user mov_cs: value=0x2b",
        "selftest kernel mov_ss: value=0x10",       "selftest user mov_ss: value=0x23",
        "selftest kernel str: value=0x30",          "selftest user str: value=0x30",
        "selftest kernel sldt: value=0x0",          "selftest user sldt: value=0x0",
        "selftest kernel pushf: value=0x46",        "selftest user pushf: value=0x246",
        "selftest kernel popf_if: value=0x1",       "selftest user popf_if: value=0x0",
        "selftest kernel popf_iopl: value=0x1",     "selftest user popf_iopl: value=0x0",
        "selftest kernel iret_if: value=0x1",       "selftest user iret_if: value=0x0",
        "selftest kernel push_cs: #UD",             "selftest user push_cs: #UD",
        "selftest kernel lgdt: ok",                 "selftest kernel mov_to_cr3: ok",
        "selftest kernel far_call: value=0x8",      "selftest user far_call: value=0x2b",
        "selftest kernel far_jmp: value=0x8",       "selftest user far_jmp: value=0x2b",
        "selftest kernel far_ret: value=0x8",       "selftest user far_ret: value=0x2b",
        "selftest kernel mov_to_ds: value=0x10",    "selftest user mov_to_ds: #GP",
        "selftest kernel int_dpl3: value=0x8",      "selftest user int_dpl3: value=0x2b",
        "selftest kernel int_dpl0: value=0x8",      "selftest user int_dpl0: #GP",
        "selftest kernel int3: #BP",                "selftest user int3: #GP",
        // LAR: the access-rights bytes of the descriptor, masked with 0x00F0FF00.
        "selftest kernel lar_kernel_cs: value=0xa09b00 zf=1",
        "selftest user lar_kernel_cs: value=0x0 zf=0",
        "selftest kernel lar_user_cs: value=0xa0fb00 zf=1",
        "selftest user lar_user_cs: value=0xa0fb00 zf=1",
        "selftest kernel lar_tss: value=0x8b00 zf=1", "selftest user lar_tss: value=0x0 zf=0",
        "selftest kernel lsl_tss: value=0x67 zf=1", "selftest user lsl_tss: value=0x0 zf=0",
        "selftest kernel lsl_user_ds: value=0xffffffff zf=1",
        "selftest user lsl_user_ds: value=0xffffffff zf=1",
        "selftest kernel verr_kernel_cs: zf=1",
        "selftest user verr_kernel_cs: zf=0",
        "selftest user verr_user_cs: zf=1",
        "selftest kernel verw_kernel_ds: zf=1",
        "selftest user verw_kernel_ds: zf=0",
        "selftest user verw_user_ds: zf=1",
        "selftest kernel cpuid: value=0x1",         "selftest user cpuid: value=0x1",
        "selftest kernel rdtsc: value=0x1",         "selftest user rdtsc: value=0x1",
        "selftest kernel in: value=0xff",           "selftest kernel ltr_busy: #GP",
        "selftest kernel rdmsr_efer: value=0x501",  // SCE | LME | LMA
        "selftest user syscall_vs_int80: same",
        "selftest user timer_interrupt_in_ring3: seen",
        "selftest user fork_copy_on_write: ok",
    };
    for (const auto& line : expected) EXPECT_TRUE(has_line(lines, line)) << "missing: " << line;
    for (const char* privileged :
         {"cli_sti", "mov_from_cr0", "mov_from_cr4", "mov_to_cr3", "mov_cr8", "rdmsr_efer",
          "wrmsr_efer", "in", "out", "lgdt", "lidt", "lldt", "ltr_busy", "invlpg", "clts",
          "swapgs", "wbinvd"}) {
        EXPECT_TRUE(has_line(lines, std::string("selftest user ") + privileged + ": #GP"))
            << privileged << " must fault in ring 3";
        if (std::string(privileged) != "ltr_busy") {
            // In ring 0 it runs: a value, or "ok" for those without one.
            bool kernel_ran = false;
            const std::string prefix = std::string("selftest kernel ") + privileged + ": ";
            for (const auto& l : lines)
                kernel_ran |= l.rfind(prefix + "value=", 0) == 0 || l == prefix + "ok";
            EXPECT_TRUE(kernel_ran) << privileged << " must run in ring 0";
        }
    }
    // The unprivileged stores show ring 3 exactly what ring 0 sees.
    std::map<std::string, std::string> kernel_value, user_value;
    for (const auto& l : lines) {
        for (auto [prefix, values] : {std::pair{"selftest kernel ", &kernel_value},
                                      std::pair{"selftest user ", &user_value}}) {
            std::string p = prefix;
            if (l.rfind(p, 0) == 0) {
                auto colon = l.find(':');
                (*values)[l.substr(p.size(), colon - p.size())] = l.substr(colon + 2);
            }
        }
    }
    for (const char* store : {"sgdt_base", "sgdt_limit", "sidt_base", "sidt_limit", "smsw"}) {
        ASSERT_TRUE(kernel_value.count(store) && user_value.count(store)) << store;
        EXPECT_EQ(kernel_value[store], user_value[store]) << store;
        EXPECT_EQ(kernel_value[store].rfind("value=", 0), 0u) << store;
    }
    EXPECT_EQ(kernel_value["sgdt_limit"], "value=0x3f");  // eight 8-byte descriptors
    EXPECT_EQ(kernel_value["sidt_limit"], "value=0xfff");  // 256 16-byte gates
    // SGDT reports the table the boot check says was loaded.
    for (const auto& l : lines) {
        if (l.rfind("check: gdt=", 0) == 0) {
            EXPECT_EQ(l.substr(11, l.find('/') - 11), kernel_value["sgdt_base"].substr(6));
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Runners, GuestKernel, testing::ValuesIn(guest_runners()), runner_name);

struct BenchCase {
    std::string name;
    uint64_t iters;
    uint64_t ws = 0;     // memwalk only
    uint64_t pages = 0;  // forkwait only
};

void PrintTo(const BenchCase& bench, std::ostream* os) {
    *os << "bench=" << bench.name << " iters=" << bench.iters;
    if (bench.ws) *os << " ws=" << bench.ws;
    if (bench.pages) *os << " pages=" << bench.pages;
}

class GuestBenchmark : public testing::TestWithParam<std::tuple<NamedRunner, BenchCase>> {};

TEST_P(GuestBenchmark, PrintsTheChecksumComputedOnTheHost) {
    const auto& [runner, bench] = GetParam();
    std::string cmdline = "bench=" + bench.name + " iters=" + std::to_string(bench.iters);
    if (bench.ws) cmdline += " ws=" + std::to_string(bench.ws);
    if (bench.pages) cmdline += " pages=" + std::to_string(bench.pages);
    auto lines = expect_verdict(runner.run(cmdline), true);

    auto checksum = expected_checksum(bench.name, bench.iters, bench.ws, bench.pages);
    ASSERT_TRUE(checksum.has_value()) << bench.name;
    char hex[32];
    snprintf(hex, sizeof hex, "0x%016llx", static_cast<unsigned long long>(*checksum));
    std::string result = "bench=" + bench.name + " iters=" + std::to_string(bench.iters) +
                         (bench.ws ? " ws=" + std::to_string(bench.ws) : "") + " checksum=" + hex;
    auto at = std::find(lines.begin(), lines.end(), result);
    ASSERT_NE(at, lines.end()) << "expected the line: " << result << "\n"
                               << describe(runner.run(cmdline));
    ASSERT_NE(at + 1, lines.end());
    EXPECT_EQ((at + 1)->rfind("timing: cycles=", 0), 0u) << *(at + 1);
}

const std::vector<BenchCase> kBenchmarks = {
    {"syscall", 500},  {"in", 500},       {"cr8wr", 37},      {"callret", 500},
    {"pgfault", 300},  {"divzero", 300},  {"ptemod", 300},    {"forkwait", 40}, {"forkwait", 12, 0, 37},
    {"compute", 5000}, {"memwalk", 4000, 131072}, {"memwalk", 20000, 4 << 20},
    {"ctxswitch", 200}, {"smc", 300},      {"clisti", 300},   {"ksmc", 300},
};

INSTANTIATE_TEST_SUITE_P(
    Runners, GuestBenchmark, testing::Combine(testing::ValuesIn(guest_runners()), testing::ValuesIn(kBenchmarks)),
    [](const testing::TestParamInfo<GuestBenchmark::ParamType>& info) {
        const auto& bench = std::get<1>(info.param);
        return std::get<0>(info.param).name + "_" + bench.name +
               (bench.ws ? "_ws" + std::to_string(bench.ws) : "") +
               (bench.pages ? "_pages" + std::to_string(bench.pages) : "");
    });

// Every machine prints what the first one prints, timing lines aside.
void expect_same_output(const std::vector<NamedRunner>& machines) {
    for (const char* cmdline : {"bench=selftest", "bench=forkwait iters=10 pages=6", "bench=smc iters=20"}) {
        auto reference = without_timing(expect_verdict(machines[0].run(cmdline), true));
        for (size_t r = 1; r < machines.size(); ++r)
            EXPECT_EQ(without_timing(expect_verdict(machines[r].run(cmdline), true)), reference)
                << machines[r].name << " vs " << machines[0].name << " on " << cmdline;
    }
}

TEST(GuestAcrossRunners, SameOutputOnEveryMachine) {
    auto runners = guest_runners();
    ASSERT_GE(runners.size(), 2u) << "QEMU and pgsim";
    expect_same_output(runners);
}

// Two CPU models, one output: what the selftest prints depends on the architecture, not on the
// model's features, vendor or speed.
TEST(GuestAcrossRunners, SameOutputOnTwoQemuCpuModels) {
    expect_same_output({{"qemu-max", qemu_runner(PGSIM_KERNEL_IMAGE, std::chrono::seconds(30), "max")},
                        {"qemu-qemu64", qemu_runner(PGSIM_KERNEL_IMAGE, std::chrono::seconds(30), "qemu64")}});
}

}  // namespace
}  // namespace pgsim::guest_test

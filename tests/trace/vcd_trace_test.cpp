// trace.vcd of real runs of the guest kernel, read back by a small VCD parser: every entry into the
// VMM is in the trace at its own time (traps, VM exits, callouts, hypercalls, counted and named as
// the statistics count and name them), the strategy's state is the VMM's around each one, the
// walk counts add up to the MMU's, real and virtual CPL differ where the guest runs deprivileged,
// and the file is the same from one run to the next but for its date.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "tests/foundation/test_support.h"

namespace pgsim {
namespace {

using test::read_file;
using test::run_shell;
using test::ScratchDir;

// A parsed VCD file: each signal (by its dotted name, "pc.vmm.state") with its changes in order.
struct Change {
  uint64_t time;
  std::string value;  // a wire's value in binary digits, or a string's text
};
struct Vcd {
  std::map<std::string, std::vector<Change>> signals;
  std::vector<std::string> comments;
  std::string date;

  const std::vector<Change>& of(const std::string& name) const {
    static const std::vector<Change> none;
    const auto it = signals.find(name);
    EXPECT_NE(it, signals.end()) << "no signal " << name;
    return it == signals.end() ? none : it->second;
  }
  // The changes after the initial values at time 0 ($dumpvars).
  std::vector<Change> events(const std::string& name) const {
    const auto& all = of(name);
    return all.empty() ? all : std::vector<Change>(all.begin() + 1, all.end());
  }
  static uint64_t number(const Change& c) { return std::stoull(c.value, nullptr, 2); }
  uint64_t last(const std::string& name) const { return of(name).empty() ? ~0ull : number(of(name).back()); }
  // The value in effect once every change at or before `time` is made.
  std::string at(const std::string& name, uint64_t time) const {
    std::string value;
    for (const Change& c : of(name)) {
      if (c.time > time) break;
      value = c.value;
    }
    return value;
  }
};

Vcd parse_vcd(const std::string& text) {
  Vcd vcd;
  std::istringstream words(text);
  std::vector<std::string> scope;
  std::map<std::string, std::string> name_of;  // identifier -> dotted name
  std::string word;
  uint64_t time = 0;
  bool time_seen = false;
  const auto until_end = [&] {
    std::string all, w;
    while (words >> w && w != "$end") all += (all.empty() ? "" : " ") + w;
    return all;
  };
  while (words >> word) {
    if (word == "$date") vcd.date = until_end();
    else if (word == "$comment") vcd.comments.push_back(until_end());
    else if (word == "$version" || word == "$timescale") until_end();
    else if (word == "$scope") {
      std::string kind, name;
      words >> kind >> name;
      scope.push_back(name);
      until_end();
    } else if (word == "$upscope") {
      scope.pop_back();
      until_end();
    } else if (word == "$var") {
      std::string type, width, id, name;
      words >> type >> width >> id >> name;
      until_end();
      std::string dotted;
      for (const auto& s : scope) dotted += s + ".";
      name_of[id] = dotted + name;
      vcd.signals[dotted + name];
    } else if (word == "$enddefinitions") until_end();
    else if (word == "$dumpvars" || word == "$end") continue;
    else if (word[0] == '#') {
      const uint64_t next = std::stoull(word.substr(1));
      EXPECT_TRUE(!time_seen || next > time) << "time goes from " << time << " to " << next;
      time = next;
      time_seen = true;
    } else if (word[0] == 'b' || word[0] == 's') {
      std::string id;
      words >> id;
      EXPECT_TRUE(name_of.count(id)) << "a change of undeclared " << id;
      vcd.signals[name_of[id]].push_back({time, word.substr(1)});
    } else {
      ADD_FAILURE() << "unexpected VCD word " << word;
    }
  }
  return vcd;
}

struct TracedRun {
  Vcd vcd;
  std::string text;
  nlohmann::json stats;
  uint64_t stat(const std::string& name) const { return stats.contains(name) ? stats[name].get<uint64_t>() : 0; }
};

TracedRun traced_run(const ScratchDir& dir, const std::string& name, const std::string& settings) {
  const auto result = run_shell("cd " + dir.path().string() + " && " + PGSIM_BINARY + " run " + PGSIM_SOURCE_DIR +
                                "/configs/default.yaml -q --set guest.kernel=" + PGSIM_KERNEL_IMAGE +
                                " --set cpu.profile=x86-pg --set trace.vcd=true --set run.name=" + name + " " +
                                settings);
  EXPECT_EQ(result.status, 0) << result.output;  // the guest's success
  TracedRun run;
  EXPECT_NE(result.output.find("trace.vcd)"), std::string::npos) << result.output;
  run.text = read_file(dir.path() / "results" / name / "trace.vcd");
  run.vcd = parse_vcd(run.text);
  run.stats = nlohmann::json::parse(read_file(dir.path() / "results" / name / "stats.json"))["stats"];
  return run;
}

// Each entry into the VMM of one kind: a count that steps by one and a reason, at the same time;
// as many as the statistic's total, and as many of each reason as its own statistic.
void expect_events_match_stats(const TracedRun& run, const std::string& count, const std::string& reason,
                               const std::string& stat_prefix) {
  const auto counts = run.vcd.events("pc.vmm." + count);
  const auto reasons = run.vcd.events("pc.vmm." + reason);
  const uint64_t total = run.stat(stat_prefix + ".total");
  ASSERT_EQ(counts.size(), total) << count;
  ASSERT_EQ(reasons.size(), total) << reason;
  std::map<std::string, uint64_t> by_reason;
  for (size_t i = 0; i < counts.size(); ++i) {
    EXPECT_EQ(Vcd::number(counts[i]), i + 1) << count;
    EXPECT_EQ(counts[i].time, reasons[i].time) << count;
    ++by_reason[reasons[i].value];
    // At each entry the guest is in the VMM (serving a hypercall, for a hypercall).
    const std::string state = run.vcd.at("pc.vmm.state_name", reasons[i].time);
    EXPECT_TRUE(state == "in_vmm" || state == "hypercall") << reason << " " << reasons[i].value << " at "
                                                           << reasons[i].time << ": " << state;
  }
  for (const auto& [name, n] : by_reason) EXPECT_EQ(n, run.stat(stat_prefix + "." + name)) << stat_prefix << "." << name;
  if (total > 0) {
    EXPECT_EQ(run.vcd.last("pc.vmm." + count), total);
  }
}

void expect_walks_match_stats(const TracedRun& run) {
  EXPECT_EQ(run.vcd.last("pc.cpu.tlb_miss_walks"), run.stat("mmu.walk.count"));
  EXPECT_EQ(run.vcd.last("pc.cpu.walk_refs"), run.stat("mmu.walk.refs"));
  uint64_t sum = 0;
  for (const Change& c : run.vcd.events("pc.cpu.walks_per_quantum")) sum += Vcd::number(c);
  EXPECT_EQ(sum, run.stat("mmu.walk.count"));
  EXPECT_GT(sum, 0u);
}

std::set<std::string> states_seen(const TracedRun& run) {
  std::set<std::string> states;
  for (const Change& c : run.vcd.events("pc.vmm.state_name")) states.insert(c.value);
  return states;
}

// The state as a number and as a name change together; the header gives the encoding.
void expect_state_encoding(const TracedRun& run) {
  const auto numbers = run.vcd.events("pc.vmm.state");
  const auto names = run.vcd.events("pc.vmm.state_name");
  ASSERT_EQ(numbers.size(), names.size());
  const char* kNames[] = {"guest_direct", "in_vmm", "translated", "hypercall", "non_root", "interpreted"};
  for (size_t i = 0; i < numbers.size(); ++i) {
    ASSERT_LT(Vcd::number(numbers[i]), 6u);
    EXPECT_EQ(names[i].value, kNames[Vcd::number(numbers[i])]);
    EXPECT_EQ(names[i].time, numbers[i].time);
  }
  bool legend = false;
  for (const auto& c : run.vcd.comments)
    legend |= c == "pc.vmm.state: 0=guest_direct 1=in_vmm 2=translated 3=hypercall 4=non_root 5=interpreted";
  EXPECT_TRUE(legend);
}

// Everything a trace says that the run's statistics say too.
void expect_trace_matches_stats(const TracedRun& run) {
  expect_events_match_stats(run, "traps", "trap_cause", "vmm.traps");
  expect_events_match_stats(run, "vm_exits", "exit_reason", "vmm.exits");
  expect_events_match_stats(run, "callouts", "callout", "vmm.callouts");
  expect_events_match_stats(run, "hypercalls", "hypercall", "vmm.hypercalls");
  expect_walks_match_stats(run);
  expect_state_encoding(run);
}

const std::string kInBench = "--set 'guest.cmdline=bench=in iters=20'";

// Trap-and-emulate: each IN traps (#GP) at its own time, several within one 1 us quantum; the
// guest kernel runs at real CPL 3 while it believes it is at CPL 0.
TEST(VcdTrace, TrapAndEmulateTrapsAtTheirOwnTimeWithRealAndVirtualCpl) {
  ScratchDir dir;
  const TracedRun run = traced_run(dir, "te", "--set vmm.strategy=trap_emulate " + kInBench);
  ASSERT_GT(run.stat("vmm.traps.gp"), 20u);
  expect_trace_matches_stats(run);
  EXPECT_EQ(states_seen(run), (std::set<std::string>{"guest_direct", "in_vmm"}));

  // Two traps less than a quantum (1 us = 1e6 ps) apart: not sampled, each at its time.
  const auto traps = run.vcd.events("pc.vmm.traps");
  bool close_pair = false;
  for (size_t i = 1; i < traps.size(); ++i) close_pair |= traps[i].time - traps[i - 1].time < 1000000;
  EXPECT_TRUE(close_pair);

  bool deprivileged = false;
  for (const Change& c : run.vcd.events("pc.cpu.cpl"))
    deprivileged |= Vcd::number(c) == 3 && run.vcd.at("pc.vmm.virtual_cpl", c.time) == "0";
  EXPECT_TRUE(deprivileged) << "no time at real CPL 3 and virtual CPL 0";

  // The same run traced again gives the same file but for its date.
  const TracedRun again = traced_run(dir, "te", "--set vmm.strategy=trap_emulate " + kInBench);
  const auto without_date = [](const std::string& text) { return text.substr(text.find('\n')); };
  EXPECT_EQ(without_date(again.text), without_date(run.text));
  EXPECT_EQ(run.text.rfind("$date ", 0), 0u);
}

TEST(VcdTrace, HardwareAssistExitsAndEntriesInNonRootOperation) {
  ScratchDir dir;
  const TracedRun run = traced_run(dir, "vmx", "--set vmm.strategy=hw_assist --set cpu.vmx=true " + kInBench);
  ASSERT_GT(run.stat("vmm.exits.io_instruction"), 20u);
  expect_trace_matches_stats(run);
  EXPECT_EQ(run.vcd.last("pc.vmm.vm_entries"), run.stat("vmm.exits.total") + 1);
  EXPECT_TRUE(states_seen(run).count("non_root"));
  // The guest runs at its own CPL: real and virtual are the same.
  for (const Change& c : run.vcd.events("pc.cpu.cpl")) EXPECT_EQ(c.value, run.vcd.at("pc.vmm.virtual_cpl", c.time));
}

TEST(VcdTrace, ParavirtHypercallsAndBinaryTranslationCallouts) {
  ScratchDir dir;
  const TracedRun pv = traced_run(dir, "pv", "--set vmm.strategy=paravirt " + kInBench);
  ASSERT_GT(pv.stat("vmm.hypercalls.total"), 0u);
  expect_trace_matches_stats(pv);
  EXPECT_TRUE(states_seen(pv).count("hypercall"));

  const TracedRun bt = traced_run(dir, "bt", "--set vmm.strategy=binary_translation " + kInBench);
  ASSERT_GT(bt.stat("vmm.callouts.total"), 20u);
  expect_trace_matches_stats(bt);
  EXPECT_TRUE(states_seen(bt).count("translated"));
}

TEST(VcdTrace, NativeAndInterpretedRunsHaveNoEntries) {
  ScratchDir dir;
  const TracedRun native = traced_run(dir, "native", "--set vmm.strategy=native " + kInBench);
  for (const char* count : {"traps", "vm_exits", "callouts", "hypercalls"})
    EXPECT_TRUE(native.vcd.events(std::string("pc.vmm.") + count).empty()) << count;
  EXPECT_TRUE(native.vcd.events("pc.vmm.state").empty());  // guest_direct throughout
  expect_trace_matches_stats(native);
  EXPECT_EQ(native.vcd.last("pc.cpu.mode"), 6u);  // long64 at the end

  const TracedRun interpreted = traced_run(dir, "interp", "--set vmm.strategy=interpret " + kInBench);
  EXPECT_EQ(states_seen(interpreted), (std::set<std::string>{"interpreted"}));
  expect_trace_matches_stats(interpreted);
}

}  // namespace
}  // namespace pgsim

// pgsim_fuzz: the guest-code fuzzer and the config fuzzer. Each case is one real `pgsim run`,
// generated from (seed, case index) alone, so that a failing case is reproduced by its command.
//
//   pgsim_fuzz guest  --seed S --cases N [-j J]   random code in 32-bit, 64-bit and user-mode
//                                                 contexts, under every strategy and profile
//   pgsim_fuzz config --seed S --cases N [-j J]   mutated configs of a small guest
//
// A case fails when pgsim crashes (a signal, a sanitizer report), runs past its limits (the
// host-time limit and a second, or no report), exits 4 other than for a bad guest image, or
// (config) refuses a config without naming the file it came from. Failing cases keep their folder
// (module, config, pgsim's output) under --work; the exit status is 1 when any case failed.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "platforms/config/config.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The sanitizers make the same work several times slower; pgsim is built with the same flags.
#if defined(__SANITIZE_ADDRESS__)
constexpr double kSlowdown = 4;
#else
constexpr double kSlowdown = 1;
#endif
constexpr double kHostSeconds = 1;  // run.max_host_seconds of every case
// A run may overrun its host-time limit by this much: the limit is checked between chunks of
// steps, and a chunk of VMM emulations costs up to about 0.4 s (more on a loaded host).
constexpr double kGrace = 2.0 * kSlowdown;
constexpr double kStartupSeconds = 5;  // process start and machine construction (sanitizer builds)

struct Options {
  std::string kind;
  uint64_t seed = 1;
  uint64_t cases = 100;
  uint64_t first = 0;
  unsigned jobs = 2;
  fs::path pgsim = PGSIM_BINARY;
  fs::path kernels = PGSIM_TEST_KERNEL_DIR;
  fs::path work = fs::temp_directory_path() / ("pgsim_fuzz_" + std::to_string(getpid()));
  // Exit 4 for what pgsim says "is not implemented" counts as a verdict of its own, not a failure.
  bool tolerate_unimplemented = false;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// One pgsim run of a case.
struct Case {
  uint64_t index = 0;
  fs::path dir;
  std::vector<std::string> argv;  // pgsim's arguments after the program
  std::string label;              // what the case is, for the summary
  bool config_case = false;
};

struct Outcome {
  std::string verdict;  // run.end, "config_error", "bad_image", or a failure's kind
  std::string failure;  // "" when the case passed
};

// ---- guest-code cases ----------------------------------------------------------------------------

struct Combination {
  const char* strategy;
  const char* paging;  // "" for the strategy's default
};
const Combination kStrategies[] = {{"native", ""},       {"interpret", ""},           {"trap_emulate", ""},
                                   {"binary_translation", ""}, {"paravirt", ""},      {"hw_assist", "nested"},
                                   {"hw_assist", "shadow"}};
const char* const kProfiles[] = {"x86", "x86-umip", "x86-pg"};
const char* const kContexts[] = {"fuzz_prot32", "fuzz_long64", "fuzz_user64"};

// Instruction beginnings worth more than their share of random bytes: the system and sensitive
// instructions, string instructions with REP, far transfers, interrupts, stack and flags.
const std::vector<std::string> kOpcodes = {
    "\xfa", "\xfb", "\x9c", "\x9d", "\xf4", "\xcf", "\x48\xcf", "\xcd", "\xcc", "\xce",
    "\x0f\x01", "\x0f\x00", "\x0f\x20", "\x0f\x22", "\x0f\x21", "\x0f\x23", "\x0f\x30", "\x0f\x32",
    "\x0f\x31", "\x0f\xa2", "\x0f\x05", "\x0f\x07", "\x0f\x34", "\x0f\x35", "\x0f\x06", "\x0f\x09",
    "\x0f\x01\xc1", "\x0f\x01\xf8", "\x0f\x01\xd0", "\x0f\x02", "\x0f\x03", "\xe4", "\xe6", "\xec",
    "\xee", "\xed", "\xef", "\xf3\xa4", "\xf3\x48\xa5", "\xf3\xaa", "\xf3\x48\xab", "\xf3\xac",
    "\xf2\xae", "\xf3\xa6", "\xf3\x6c", "\xf3\x6e", "\xea", "\xff\x18", "\xff\x28", "\xcb", "\xca",
    "\x8e", "\x8c", "\x17", "\x1f", "\x07", "\x0f\xa1", "\x0f\xa9", "\x0f\xb2", "\x63", "\xc4",
    "\xc5", "\x62", "\xf0", "\x66", "\x67", "\x48", "\x0f\x0b", "\xe8", "\xe9", "\xeb", "\xc3",
    "\xc2", "\x0f\x08", "\x0f\x0d", "\x0f\xae", "\x0f\xc7", "\xd8", "\x0f\x01\xf9", "\x0f\x78",
    "\x0f\x79", "\x0f\x01\xc4", "\x0f\x01\xc2", "\x0f\x01\xc3", "\x66\x0f\x38\x80"};

std::string random_code(std::mt19937_64& rng) {
  const size_t length = std::uniform_int_distribution<size_t>(16, 1024)(rng);
  std::string code;
  const bool structured = rng() % 4 != 0;  // a quarter: plain random bytes
  while (code.size() < length) {
    if (structured && rng() % 2) code += kOpcodes[rng() % kOpcodes.size()];
    const size_t operands = structured ? rng() % 7 : length;
    for (size_t k = 0; k < operands && code.size() < length; ++k) code += static_cast<char>(rng() & 0xFF);
  }
  return code;
}

Case guest_case(const Options& o, uint64_t index) {
  std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + index);
  Case c;
  c.index = index;
  c.dir = o.work / ("guest-" + std::to_string(index));
  fs::create_directories(c.dir);
  const char* context = kContexts[index % 3];
  const Combination& s = kStrategies[(index / 3) % std::size(kStrategies)];
  const char* profile = kProfiles[(index / 3 / std::size(kStrategies)) % std::size(kProfiles)];
  std::ofstream(c.dir / "code.bin", std::ios::binary) << random_code(rng);
  std::ofstream(c.dir / "run.yaml") << "run:\n  name: case\n  max_instructions: 20000\n  max_steps: 100000\n"
                                    << "  max_seconds: 0.05\n  max_host_seconds: " << kHostSeconds << "\n"
                                    << "guest:\n  kernel: " << (o.kernels / (std::string(context) + ".elf")).string()
                                    << "\n  modules: [code.bin]\nmemory:\n  size: 32M\n"
                                    << "cpu:\n  profile: " << profile << "\n  vmx: true\nvmm:\n  strategy: "
                                    << s.strategy << "\n";
  c.argv = {"run", (c.dir / "run.yaml").string(), "--results-dir", (c.dir / "results").string(), "-q"};
  if (*s.paging) c.argv.insert(c.argv.end(), {"--set", std::string("vmm.paging=") + s.paging});
  c.label = std::string(context) + " " + s.strategy + (*s.paging ? std::string("/") + s.paging : "") + " " + profile;
  return c;
}

// ---- config cases --------------------------------------------------------------------------------

std::string random_text(std::mt19937_64& rng) {
  static const std::vector<std::string> texts = {
      "", "0", "-1", "1e400", "0x10", "12K", "3G", "9999999999999999999999", "true", "no", "~", "null",
      "[1, 2]", "{a: 1}", "[]", "\"\"", "'", "\"unterminated", "a: b: c", "- x", "&anchor", "*alias", "!!binary AAAA",
      "\t", "../../../../etc/passwd", "/dev/zero", "/", ".", "..", "a/b", "caf\xe9", "\xff\xfe", "\xc3\x28",
      "\xed\xa0\x80", std::string(300, 'x'), std::string(5000, 'y'), "nan", "-inf", "0.000000001", "1e9",
      "native", "hw_assist", "x86-pg", "shadow", "nested", "4K", "1G"};
  return texts[rng() % texts.size()];
}

// A value for `spec`: often valid, often at or beyond a bound, sometimes of another type.
std::string random_value(const pgsim::config::KeySpec& spec, std::mt19937_64& rng) {
  using pgsim::config::Type;
  switch (rng() % 4) {
    case 0: return random_text(rng);
    case 1:
      if (!spec.allowed.empty()) return spec.allowed[rng() % spec.allowed.size()];
      if (spec.min && spec.max) {
        const double v = std::uniform_real_distribution<double>(*spec.min, *spec.max)(rng);
        return spec.type == Type::Float ? std::to_string(v) : std::to_string(static_cast<long long>(v));
      }
      return std::to_string(rng() % 100000);
    case 2:
      if (spec.min) return spec.type == Type::Float ? std::to_string(*spec.min) : std::to_string(static_cast<long long>(*spec.min));
      return "0";
    default:
      if (spec.max) return spec.type == Type::Float ? std::to_string(*spec.max) : std::to_string(static_cast<long long>(*spec.max));
      return std::to_string(static_cast<int64_t>(rng()));
  }
}

std::string yaml_scalar(const std::string& text, std::mt19937_64& rng) {
  // Unquoted most of the time (the YAML parser sees it raw), else double-quoted with escapes.
  if (rng() % 3) return text;
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Case config_case(const Options& o, uint64_t index) {
  std::mt19937_64 rng(o.seed * 0xD1B54A32D192ED03ull + index);
  Case c;
  c.index = index;
  c.config_case = true;
  c.dir = o.work / ("config-" + std::to_string(index));
  fs::create_directories(c.dir);
  const auto& keys = pgsim::config::Schema::builtin().keys();
  std::map<std::string, std::string> values = {
      {"run.name", "case"},
      {"guest.kernel", (o.kernels / "hello.elf").string()},
      {"memory.size", "32M"},
  };
  std::vector<std::string> extra_lines;
  const unsigned mutations = 1 + rng() % 4;
  std::vector<std::string> kinds;
  for (unsigned m = 0; m < mutations; ++m) {
    const unsigned kind = rng() % 10;
    if (kind < 5) {  // a declared key, a value for it
      const auto& spec = keys[rng() % keys.size()];
      values[spec.key] = random_value(spec, rng);
      kinds.push_back(spec.key);
    } else if (kind == 5) {  // a key that does not exist (a declared one, changed)
      std::string key = keys[rng() % keys.size()].key;
      key[rng() % key.size()] = static_cast<char>('a' + rng() % 26);
      values[key] = random_text(rng);
      kinds.push_back("unknown key");
    } else if (kind == 6) {  // the kernel: empty, a folder, missing, random bytes, a module
      const unsigned k = rng() % 5;
      const fs::path file = c.dir / "input.bin";
      std::string bytes;
      for (size_t n = rng() % 3000; n > 0; --n) bytes += static_cast<char>(rng() & 0xFF);
      std::ofstream(file, std::ios::binary) << (k == 0 ? "" : bytes);
      const std::string key = k < 3 ? "guest.kernel" : k == 3 ? "guest.serial_input" : "guest.modules";
      values[key] = k == 1 ? c.dir.string() : k == 2 ? (c.dir / "missing.elf").string()
                    : k == 4 ? "[" + file.string() + "]" : file.string();
      kinds.push_back(key + " file");
    } else if (kind == 7) {  // an include: missing, itself, or a broken file
      const fs::path inc = c.dir / "inc.yaml";
      std::ofstream(inc) << random_text(rng) << ":\n  - " << random_text(rng) << "\n";
      const unsigned k = rng() % 3;
      extra_lines.push_back("include: " + std::string(k == 0 ? "missing.yaml" : k == 1 ? "config.yaml" : "inc.yaml"));
      kinds.push_back("include");
    } else if (kind == 8) {  // broken YAML syntax
      extra_lines.push_back(random_text(rng) + (rng() % 2 ? ": [" : ":\n\t- x"));
      kinds.push_back("syntax");
    } else {  // a section where a value belongs, or a value where a section belongs
      const auto& spec = keys[rng() % keys.size()];
      extra_lines.push_back(spec.key.substr(0, spec.key.find('.')) + ": " + random_text(rng));
      kinds.push_back("section " + spec.key.substr(0, spec.key.find('.')));
    }
  }
  std::ostringstream text;
  for (const auto& [key, value] : values) text << key << ": " << yaml_scalar(value, rng) << "\n";
  for (const std::string& line : extra_lines) text << line << "\n";
  std::string config = text.str();
  if (rng() % 8 == 0)  // a byte of the file flipped
    config[rng() % config.size()] ^= static_cast<char>(1u << (rng() % 8));
  std::ofstream(c.dir / "config.yaml", std::ios::binary) << config;
  c.argv = {"run", (c.dir / "config.yaml").string(), "--results-dir", (c.dir / "results").string(), "-q",
            "--set", "run.max_host_seconds=" + std::to_string(kHostSeconds), "--set", "run.max_steps=2000000"};
  for (const std::string& k : kinds) c.label += (c.label.empty() ? "" : ", ") + k;
  return c;
}

// ---- running and judging -------------------------------------------------------------------------

struct Running {
  Case c;
  Clock::time_point start;
  bool killed = false;
};

pid_t start(const Options& o, const Case& c) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open((c.dir / "pgsim.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    setenv("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1", 0);
    std::vector<std::string> args = {o.pgsim.string()};
    args.insert(args.end(), c.argv.begin(), c.argv.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// `cpu`: the host CPU time the run used (user and system), which a loaded host does not stretch.
Outcome judge(const Options& o, const Case& c, int raw, bool killed, double wall, double cpu) {
  const std::string log = read_file(c.dir / "pgsim.log");
  if (log.find("Sanitizer") != std::string::npos || log.find("runtime error:") != std::string::npos)
    return {"sanitizer", "sanitizer report"};
  if (killed) return {"hang", "still running " + std::to_string(wall) + " s after its start"};
  if (WIFSIGNALED(raw)) return {"crash", "killed by signal " + std::to_string(WTERMSIG(raw))};
  const int status = WEXITSTATUS(raw);
  if (status == 2) {
    if (!c.config_case) return {"config_error", "a config error in a generated guest case"};
    // Every refusal names the file (and line) it came from, or --set.
    if (log.find(c.dir.string()) == std::string::npos && log.find("--set") == std::string::npos)
      return {"config_error", "the error does not name its input"};
    return {"config_error", ""};
  }
  if (status == 4) {
    if (log.find("bad guest image") != std::string::npos) return {"bad_image", ""};
    if (o.tolerate_unimplemented && log.find("is not implemented") != std::string::npos)
      return {"not_implemented", ""};
    return {"simulator_error", "exit 4"};
  }
  if (status > 4) return {"exit " + std::to_string(status), "unexpected exit status"};
  // The run's folder is its run.name, which a config case may have changed.
  fs::path report;
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(c.dir / "results", ec))
    if (entry.path().filename() == "stats.json") report = entry.path();
  const nlohmann::json j = nlohmann::json::parse(read_file(report), nullptr, false);
  if (!j.is_object() || !j.contains("run")) return {"no_report", "no complete stats.json"};
  const std::string end = j["run"].value("end", "?");
  // The run's host-time limit bounds its wall time; on a loaded host the wall time between two
  // checks of it stretches, so a run that overran is one that used more CPU time than the limit
  // and its grace (a hang is caught by the wall-clock deadline above).
  if (cpu > kHostSeconds + kGrace)
    return {end, "used " + std::to_string(cpu) + " s of host CPU time (" +
                     std::to_string(j["run"].value("host_seconds", 0.0)) + " s by its own clock)"};
  return {end, ""};
}

int fuzz(const Options& o) {
  fs::create_directories(o.work);
  std::map<std::string, uint64_t> verdicts;
  std::vector<std::string> failures;
  std::map<pid_t, Running> running;
  uint64_t next = o.first;
  const uint64_t end = o.first + o.cases;
  const double deadline = kHostSeconds + kGrace + kStartupSeconds;
  const auto began = Clock::now();
  while (next < end || !running.empty()) {
    while (running.size() < o.jobs && next < end) {
      Case c = o.kind == "guest" ? guest_case(o, next) : config_case(o, next);
      ++next;
      const pid_t pid = start(o, c);
      running[pid] = {std::move(c), Clock::now()};
    }
    int raw = 0;
    struct rusage usage {};
    const pid_t pid = wait4(-1, &raw, WNOHANG, &usage);
    if (pid <= 0) {
      for (auto& [p, r] : running)  // a run past every limit: killed, and a failure
        if (!r.killed && std::chrono::duration<double>(Clock::now() - r.start).count() > deadline) {
          kill(p, SIGKILL);
          r.killed = true;
        }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const Running r = std::move(it->second);
    running.erase(it);
    const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
    const Outcome out = judge(o, r.c, raw, r.killed, std::chrono::duration<double>(Clock::now() - r.start).count(),
                              seconds(usage.ru_utime) + seconds(usage.ru_stime));
    ++verdicts[out.verdict];
    if (out.failure.empty()) {
      fs::remove_all(r.c.dir);
      continue;
    }
    std::ostringstream line;
    line << o.kind << " case " << r.c.index << " (" << r.c.label << "): " << out.failure << "\n  reproduce: "
         << o.pgsim.string();
    for (const auto& a : r.c.argv) line << " '" << a << "'";
    line << "\n  pgsim said: " << read_file(r.c.dir / "pgsim.log").substr(0, 600);
    failures.push_back(line.str());
    std::cerr << failures.back() << "\n";
  }
  const double took = std::chrono::duration<double>(Clock::now() - began).count();
  std::cout << "pgsim_fuzz " << o.kind << ": seed " << o.seed << ", cases " << o.first << " to " << end - 1 << " in "
            << took << " s;";
  for (const auto& [verdict, count] : verdicts) std::cout << " " << verdict << " " << count;
  std::cout << "\n" << failures.size() << " failed";
  if (!failures.empty()) std::cout << " (their folders are kept under " << o.work.string() << ")";
  std::cout << "\n";
  if (failures.empty()) fs::remove_all(o.work);
  return failures.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  const std::string usage =
      "usage: pgsim_fuzz guest|config [--seed S] [--cases N] [--first I] [-j JOBS] [--pgsim PATH] "
      "[--kernels DIR] [--work DIR] [--tolerate-unimplemented]\n";
  if (argc < 2 || (std::string(argv[1]) != "guest" && std::string(argv[1]) != "config")) {
    std::cerr << usage;
    return 2;
  }
  o.kind = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tolerate-unimplemented") {
      o.tolerate_unimplemented = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::cerr << "pgsim_fuzz: " << a << " needs a value\n" << usage;
      return 2;
    }
    const std::string v = argv[++i];
    try {
      if (a == "--seed") o.seed = std::stoull(v);
      else if (a == "--cases") o.cases = std::stoull(v);
      else if (a == "--first") o.first = std::stoull(v);
      else if (a == "-j") o.jobs = static_cast<unsigned>(std::max(1ull, std::stoull(v)));
      else if (a == "--pgsim") o.pgsim = v;
      else if (a == "--kernels") o.kernels = v;
      else if (a == "--work") o.work = v;
      else {
        std::cerr << "pgsim_fuzz: unknown option " << a << "\n" << usage;
        return 2;
      }
    } catch (const std::exception&) {
      std::cerr << "pgsim_fuzz: " << a << " expects a number; got '" << v << "'\n";
      return 2;
    }
  }
  return fuzz(o);
}

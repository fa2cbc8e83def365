// pgsim run, pgsim config show, pgsim config schema.
#include "platforms/cli/commands.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <streambuf>

#include <nlohmann/json.hpp>

#include "models/stats/stats.h"
#include "platforms/cli/atomic_file.h"
#include "platforms/cli/stop_signals.h"
#include "platforms/config/config.h"
#include "platforms/simulation.h"

namespace pgsim::cli {

std::vector<RegisteredCommand>& registered_commands() {
  static std::vector<RegisteredCommand> commands;
  return commands;
}

CommandRegistration::CommandRegistration(std::string name, CommandSetup setup) {
  registered_commands().push_back({std::move(name), std::move(setup)});
}

std::string exit_status_help() {
  return "Exit status:\n"
         "  0  the guest reported success (wrote 0 to the exit device)\n"
         "  1  the guest reported failure, halted with interrupts off, or triple-faulted\n"
         "  2  usage or config error\n"
         "  3  an instruction, step or time limit ended the run, or the guest made no progress\n"
         "  4  simulator error (bad guest image, internal error)\n"
         "Stopped by SIGINT or SIGTERM: 128 + the signal (130, 143); pgsim run writes its reports "
         "first, with run.end interrupted.\n";
}

namespace {

namespace fs = std::filesystem;

// Copies everything written to two stream buffers: the serial log file and the terminal.
class TeeBuffer : public std::streambuf {
 public:
  TeeBuffer(std::streambuf* first, std::streambuf* second) : first_(first), second_(second) {}

 protected:
  // The first (the log file) is flushed at every line, so that a run killed half-way leaves what
  // the guest printed up to its last line.
  int overflow(int c) override {
    if (c == traits_type::eof()) return traits_type::not_eof(c);
    char ch = static_cast<char>(c);
    bool ok = first_->sputc(ch) != traits_type::eof();
    if (second_) ok = second_->sputc(ch) != traits_type::eof() && ok;
    if (ch == '\n') first_->pubsync();
    return ok ? c : traits_type::eof();
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::streamsize written = first_->sputn(s, n);
    if (second_) second_->sputn(s, n);
    if (std::char_traits<char>::find(s, static_cast<size_t>(n), '\n')) first_->pubsync();
    return written;
  }
  int sync() override {
    int result = first_->pubsync();
    if (second_ && second_->pubsync() != 0) result = -1;
    return result;
  }

 private:
  std::streambuf* first_;
  std::streambuf* second_;
};

std::string end_name(RunEnd end) {
  switch (end) {
    case RunEnd::GuestExit: return "guest_exit";
    case RunEnd::GuestHalted: return "guest_halted";
    case RunEnd::TripleFault: return "triple_fault";
    case RunEnd::InstructionLimit: return "instruction_limit";
    case RunEnd::StepLimit: return "step_limit";
    case RunEnd::TimeLimit: return "time_limit";
    case RunEnd::NoProgress: return "no_progress";
    case RunEnd::Interrupted: return "interrupted";
  }
  return "unknown";
}

int status_of(const RunOutcome& outcome) {
  switch (outcome.end) {
    case RunEnd::GuestExit: return outcome.guest_success ? kGuestSuccess : kGuestFailure;
    case RunEnd::GuestHalted:
    case RunEnd::TripleFault: return kGuestFailure;
    case RunEnd::InstructionLimit:
    case RunEnd::StepLimit:
    case RunEnd::TimeLimit:
    case RunEnd::NoProgress: return kLimitReached;
    case RunEnd::Interrupted: return kInterrupted + (stop_signal() ? stop_signal() : SIGTERM);
  }
  return kSimulatorError;
}

std::string describe_outcome(const RunOutcome& o) {
  std::ostringstream text;
  switch (o.end) {
    case RunEnd::GuestExit:
      text << "the guest exited with status 0x" << std::hex << o.guest_status << std::dec
           << (o.guest_success ? " (success)" : " (failure)");
      break;
    case RunEnd::GuestHalted: text << "the guest halted with interrupts disabled"; break;
    case RunEnd::TripleFault: text << "triple fault"; break;
    case RunEnd::InstructionLimit: text << "instruction limit reached"; break;
    case RunEnd::StepLimit: text << "step limit reached"; break;
    case RunEnd::TimeLimit: text << "time limit reached"; break;
    case RunEnd::NoProgress: text << "the guest made no progress"; break;
    case RunEnd::Interrupted: text << "interrupted"; break;
  }
  if (!o.detail.empty()) text << ": " << o.detail;
  return text.str();
}

}  // namespace

int run_command(const RunOptions& options, std::ostream& out, std::ostream& err,
                const Simulator& simulator) {
  std::optional<config::Config> loaded;
  try {
    loaded.emplace(config::load(options.config, options.overrides));
    config::check_run_inputs(*loaded);  // before anything is written or run
  } catch (const config::ConfigError& e) {
    err << "pgsim: config error: " << e.what() << "\n";
    return kUsageError;
  }
  const config::Config& cfg = *loaded;
  const fs::path out_dir = options.results_dir / cfg.str("run.name");

  // Everything below that fails for a reason outside the guest is a simulator error.
  std::optional<RunOutcome> outcome;
  std::string failure;
  stats::Registry registry;
  try {
    fs::create_directories(out_dir);
    // A previous run's report must not pass for this run's if this one fails.
    for (const char* stale : {"stats.json", "stats.txt"}) fs::remove(out_dir / stale);
    write_file_atomically(out_dir / "config.yaml",
                          "# The resolved config of run '" + cfg.str("run.name") +
                              "': every key, with where its value came from.\n" + cfg.to_yaml());
    // Written as the guest prints (not atomically): what it printed survives a killed run.
    std::ofstream serial(out_dir / "serial.log", std::ios::binary | std::ios::trunc);
    if (!serial) throw std::runtime_error("cannot write " + (out_dir / "serial.log").string());
    TeeBuffer tee(serial.rdbuf(), options.echo_serial ? out.rdbuf() : nullptr);
    std::ostream serial_log(&tee);
    try {
      outcome = simulator(RunContext{cfg, registry, out_dir, serial_log, &stop_requested()});
      registry.freeze();
      if (outcome->end == RunEnd::Interrupted)
        outcome->detail = stop_signal() == SIGINT ? "stopped by SIGINT" : "stopped by SIGTERM";
    } catch (const config::ConfigError& e) {
      // A value the platform refused when it came to use it (e.g. a kernel that does not exist).
      serial_log.flush();
      err << "pgsim: config error: " << e.what() << "\n";
      return kUsageError;
    } catch (const std::exception& e) {
      failure = e.what();
      outcome.reset();
    }
    serial_log.flush();
  } catch (const std::exception& e) {
    failure = e.what();
    outcome.reset();
  }

  // The report: stats (when the run completed), how it ended, and the resolved config.
  std::vector<stats::Sample> samples;
  nlohmann::json run_json;
  if (outcome) {
    double ips = outcome->host_seconds > 0
                     ? static_cast<double>(outcome->guest_instructions) / outcome->host_seconds
                     : 0.0;
    samples = registry.snapshot();
    run_json = {{"end", end_name(outcome->end)},
                {"guest_status", outcome->guest_status},
                {"guest_success", outcome->guest_success},
                {"detail", outcome->detail},
                {"guest_instructions", outcome->guest_instructions},
                {"host_seconds", outcome->host_seconds},
                {"guest_ips", ips},
                {"exit_status", status_of(*outcome)}};
  } else {
    run_json = {{"end", "simulator_error"}, {"detail", failure}, {"exit_status", kSimulatorError}};
  }
  nlohmann::json report = {{"stats", stats::to_json(samples)},
                           {"run", run_json},
                           {"config", cfg.to_json()},
                           {"units", stats::describe_json(samples)}};
  std::ostringstream gem5;
  stats::write_text(gem5, samples);
  try {
    // Config strings are UTF-8 (the loader refuses others); what the guest or a message adds may
    // not be, and is written with U+FFFD rather than losing the report.
    std::string json_text = report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (outcome) {
      write_file_atomically(out_dir / "stats.json", json_text);
      write_file_atomically(out_dir / "stats.txt", gem5.str());
    }
    if (options.json) write_file_atomically(*options.json, json_text);
  } catch (const std::exception& e) {
    err << "pgsim: cannot write the report: " << e.what() << "\n";
    return kSimulatorError;
  }

  if (!outcome) {
    err << "pgsim: simulator error: " << failure << "\n";
    return kSimulatorError;
  }
  if (!options.quiet) stats::write_table(out, samples);
  std::ostringstream speed;
  speed << outcome->guest_instructions << " in " << std::setprecision(4) << outcome->host_seconds
        << " host seconds (" << run_json["guest_ips"].get<double>() / 1e6 << " million per second)";
  out << "\nrun '" << cfg.str("run.name") << "': " << describe_outcome(*outcome) << "\n"
      << "guest instructions: " << speed.str() << "\n"
      << "results: " << out_dir.string() << "/ (config.yaml, stats.json, stats.txt, serial.log"
      << (cfg.flag("trace.vcd") ? ", trace.vcd" : "") << ")\n";
  return status_of(*outcome);
}

int config_show_command(const std::optional<fs::path>& file,
                        const std::vector<std::string>& overrides, std::ostream& out,
                        std::ostream& err) {
  std::optional<config::Config> cfg;
  try {
    cfg.emplace(file ? config::load(*file, overrides) : config::load_overrides(overrides));
  } catch (const config::ConfigError& e) {
    err << "pgsim: config error: " << e.what() << "\n";
    return kUsageError;
  }
  size_t key_width = 3, value_width = 5, unit_width = 4;
  for (const auto& spec : cfg->schema().keys()) {
    key_width = std::max(key_width, spec.key.size());
    value_width = std::max(value_width, cfg->text(spec.key).size());
    unit_width = std::max(unit_width, spec.unit.size());
  }
  auto row = [&](const std::string& key, const std::string& value, const std::string& unit,
                 const std::string& origin) {
    out << std::left << std::setw(static_cast<int>(key_width)) << key << "  "
        << std::setw(static_cast<int>(value_width)) << value << "  "
        << std::setw(static_cast<int>(unit_width)) << unit << "  " << origin << "\n";
  };
  row("key", "value", "unit", "origin");
  for (const auto& spec : cfg->schema().keys())
    row(spec.key, cfg->text(spec.key), spec.unit, cfg->origin(spec.key).describe());
  return kGuestSuccess;
}

int config_schema_command(const std::string& format, std::ostream& out) {
  const config::Schema& schema = config::Schema::builtin();
  out << (format == "markdown" ? schema.reference_markdown() : schema.reference_text());
  return kGuestSuccess;
}

}  // namespace pgsim::cli

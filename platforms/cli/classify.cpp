// `pgsim classify`: Popek and Goldberg's classes of the core's instructions under a CPU profile,
// derived by execution (isa/classify/), and the verdicts of Theorems 1 and 3.
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "isa/classify/classifier.h"
#include "isa/classify/report.h"
#include "isa/system/profile.h"
#include "platforms/cli/commands.h"

namespace pgsim::cli {
namespace {

struct ClassifyOptions {
  std::string profile;
  std::string mode = "prot32";
  std::string format = "table";
  std::string output;  // empty: standard output
};

int classify_command(const ClassifyOptions& o, std::ostream& out, std::ostream& err) {
  isa::Profile profile;
  try {
    profile = isa::load_profile(o.profile);
  } catch (const isa::ProfileError& e) {
    err << "pgsim classify: " << e.what() << "\n";
    return kUsageError;
  }
  const auto mode = o.mode == "long64" ? isa::classify::ProbeMode::Long64 : isa::classify::ProbeMode::Prot32;
  const auto format = o.format == "json"       ? isa::classify::ReportFormat::Json
                      : o.format == "markdown" ? isa::classify::ReportFormat::Markdown
                                               : isa::classify::ReportFormat::Table;
  const isa::classify::Classification result = isa::classify::classify_instructions(profile, mode);
  if (o.output.empty()) {
    isa::classify::write_report(result, format, out);
    return kGuestSuccess;
  }
  std::ofstream file(o.output);
  if (!file) {
    err << "pgsim classify: cannot write " << o.output << "\n";
    return kUsageError;
  }
  isa::classify::write_report(result, format, file);
  return kGuestSuccess;
}

const CommandRegistration registration{"classify", [](CLI::App& app, int& status) {
  auto options = std::make_shared<ClassifyOptions>();
  CLI::App* cmd = app.add_subcommand(
      "classify",
      "Derive Popek and Goldberg's instruction classes by executing every instruction form of the core in "
      "pairs of machine states, and check Theorems 1 and 3 for a CPU profile.");
  cmd->add_option("--profile", options->profile, "CPU profile: a name under isa/profiles/ or a YAML path")
      ->required()
      ->type_name("NAME|PATH");
  cmd->add_option("--mode", options->mode, "processor mode the states are built in")
      ->check(CLI::IsMember({"prot32", "long64"}))
      ->capture_default_str();
  cmd->add_option("--format", options->format, "report format")
      ->check(CLI::IsMember({"table", "markdown", "json"}))
      ->capture_default_str();
  cmd->add_option("-o,--output", options->output, "write the report to PATH instead of standard output")
      ->type_name("PATH");
  cmd->footer("Exit status: 0 the classification was made (whatever the verdicts); 2 usage or profile error.");
  cmd->callback([options, &status] { status = classify_command(*options, std::cout, std::cerr); });
}};

}  // namespace
}  // namespace pgsim::cli

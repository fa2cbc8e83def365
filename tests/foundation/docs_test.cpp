// README.md, .ci/run and the config schema agree: the README opens with the two commands, .ci/run
// runs the second one verbatim, and the README's config reference is the schema's.
#include <gtest/gtest.h>

#include "platforms/cli/commands.h"
#include "platforms/config/config.h"
#include "tests/foundation/test_support.h"

namespace pgsim {
namespace {

using test::read_file;

const std::filesystem::path kSource = PGSIM_SOURCE_DIR;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The lines of the README's first fenced code block, and what stands before it.
std::pair<std::vector<std::string>, std::vector<std::string>> first_code_block() {
  std::vector<std::string> before, block;
  bool inside = false;
  for (const auto& line : lines_of(read_file(kSource / "README.md"))) {
    if (line.rfind("```", 0) == 0) {
      if (inside) break;
      inside = true;
      continue;
    }
    (inside ? block : before).push_back(line);
  }
  return {before, block};
}

TEST(Docs, ReadmeOpensWithTheTwoCommands) {
  auto [before, block] = first_code_block();
  EXPECT_EQ(block, (std::vector<std::string>{
                       "./setup && build/pgsim demo",
                       "./setup && ctest --test-dir build --output-on-failure -j2"}));
  // Only the title may come first.
  for (const auto& line : before)
    EXPECT_TRUE(line.empty() || line.rfind("# ", 0) == 0) << "before the commands: " << line;
}

TEST(Docs, CiRunsTheReadmeTestCommandVerbatim) {
  auto [before, block] = first_code_block();
  ASSERT_EQ(block.size(), 2u);
  std::vector<std::string> ci = lines_of(read_file(kSource / ".ci/run"));
  ASSERT_FALSE(ci.empty());
  EXPECT_EQ(ci[0], "#!/usr/bin/env bash");
  EXPECT_NE(std::find(ci.begin(), ci.end(), "set -euo pipefail"), ci.end());
  EXPECT_NE(std::find(ci.begin(), ci.end(), block[1]), ci.end())
      << ".ci/run does not run: " << block[1];
  auto perms = std::filesystem::status(kSource / ".ci/run").permissions();
  EXPECT_NE(perms & std::filesystem::perms::owner_exec, std::filesystem::perms::none);
  EXPECT_NE(std::filesystem::status(kSource / "setup").permissions() &
                std::filesystem::perms::owner_exec,
            std::filesystem::perms::none);
}

TEST(Docs, ReadmeConfigReferenceIsTheSchemas) {
  std::string readme = read_file(kSource / "README.md");
  const std::string begin = "<!-- config-reference:begin -->\n", end = "<!-- config-reference:end -->";
  size_t from = readme.find(begin), to = readme.find(end);
  ASSERT_NE(from, std::string::npos);
  ASSERT_NE(to, std::string::npos);
  std::string in_readme = readme.substr(from + begin.size(), to - from - begin.size());
  EXPECT_EQ(in_readme, "\n" + config::Schema::builtin().reference_markdown() + "\n")
      << "regenerate it: .ci/update-readme-reference";
}

TEST(Docs, ReadmeDocumentsTheExitStatuses) {
  std::string readme = read_file(kSource / "README.md");
  for (const auto& line : lines_of(cli::exit_status_help()))
    if (line.rfind("  ", 0) == 0) {
      std::string status = line.substr(2, 1), meaning = line.substr(5);
      EXPECT_NE(readme.find("| " + status + " | " + meaning + " |"), std::string::npos) << line;
    }
}

}  // namespace
}  // namespace pgsim

// Output files appear whole or not at all, even when the writer is killed half-way.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "platforms/cli/atomic_file.h"
#include "tests/foundation/test_support.h"

namespace pgsim::cli {
namespace {

using test::read_file;
using test::ScratchDir;

TEST(AtomicFile, CommitPutsTheWholeFileAtTheFinalName) {
  ScratchDir dir;
  auto target = dir.path() / "stats.json";
  {
    AtomicFile file(target);
    file.stream() << "{\"a\": 1}\n";
    EXPECT_FALSE(std::filesystem::exists(target));  // nothing visible before the commit
    file.commit();
  }
  EXPECT_EQ(read_file(target), "{\"a\": 1}\n");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(AtomicFile, AbandonedWriteLeavesNothing) {
  ScratchDir dir;
  auto target = dir.path() / "stats.txt";
  std::filesystem::path temporary;
  {
    AtomicFile file(target);
    temporary = file.temporary_path();
    file.stream() << "half a";
    EXPECT_TRUE(std::filesystem::exists(temporary));
  }  // an exception unwinding a run ends up here
  EXPECT_FALSE(std::filesystem::exists(target));
  EXPECT_FALSE(std::filesystem::exists(temporary));
}

TEST(AtomicFile, KilledWriterLeavesThePreviousFileIntact) {
  ScratchDir dir;
  auto target = dir.path() / "stats.json";
  write_file_atomically(target, "previous run\n");

  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    AtomicFile file(target);
    file.stream() << "{\"stats\": {\"cpu.insts.total\": 1";
    file.stream().flush();  // the partial text is on disk...
    ::raise(SIGKILL);       // ...when the process dies
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  EXPECT_EQ(read_file(target), "previous run\n");
  auto leftover = dir.path() / (".stats.json.tmp-" + std::to_string(child));
  ASSERT_TRUE(std::filesystem::exists(leftover));  // the half file exists, under its own name
  EXPECT_EQ(read_file(leftover), "{\"stats\": {\"cpu.insts.total\": 1");
}

TEST(AtomicFile, UnwritableFolderIsAnError) {
  EXPECT_THROW(AtomicFile("/nonexistent-folder/stats.json"), std::runtime_error);
  EXPECT_THROW(write_file_atomically("/nonexistent-folder/x", "x"), std::runtime_error);
}

}  // namespace
}  // namespace pgsim::cli

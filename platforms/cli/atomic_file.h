// Output files that appear whole or not at all.
//
// An AtomicFile writes to a temporary name in the same folder (".<name>.tmp-<pid>") and renames
// it to the final name on commit(); rename() within one file system is atomic, so a reader, or a
// run that is killed half-way, never finds a partial file under the final name.
#pragma once

#include <filesystem>
#include <fstream>
#include <string_view>

namespace pgsim::cli {

class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path final_path);  // throws std::runtime_error
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();  // without commit(): removes the temporary file

  std::ostream& stream() { return stream_; }
  const std::filesystem::path& temporary_path() const { return temporary_; }
  // Flushes, closes and renames the file to its final name; throws std::runtime_error on failure.
  void commit();

 private:
  std::filesystem::path final_, temporary_;
  std::ofstream stream_;
  bool committed_ = false;
};

// Writes `content` to `path` through an AtomicFile.
void write_file_atomically(const std::filesystem::path& path, std::string_view content);

}  // namespace pgsim::cli

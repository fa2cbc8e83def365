#include "platforms/cli/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace pgsim::cli {

AtomicFile::AtomicFile(std::filesystem::path final_path) : final_(std::move(final_path)) {
  temporary_ = final_.parent_path() /
               (std::string(".") + final_.filename().string() + ".tmp-" + std::to_string(::getpid()));
  stream_.open(temporary_, std::ios::binary | std::ios::trunc);
  if (!stream_)
    throw std::runtime_error("cannot write " + temporary_.string() + ": " + std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  stream_.close();
  std::error_code ignored;
  std::filesystem::remove(temporary_, ignored);
}

void AtomicFile::commit() {
  stream_.flush();
  bool written = static_cast<bool>(stream_);
  stream_.close();
  if (!written || stream_.fail())
    throw std::runtime_error("cannot write " + temporary_.string() + ": " + std::strerror(errno));
  std::error_code ec;
  std::filesystem::rename(temporary_, final_, ec);
  if (ec)
    throw std::runtime_error("cannot rename " + temporary_.string() + " to " + final_.string() +
                             ": " + ec.message());
  committed_ = true;
}

void write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  AtomicFile file(path);
  file.stream().write(content.data(), static_cast<std::streamsize>(content.size()));
  file.commit();
}

}  // namespace pgsim::cli

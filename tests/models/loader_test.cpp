// Multiboot loading of the test kernels, and clean refusals of bad images.
#include <gtest/gtest.h>

#include <elf.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "models/loader/multiboot.h"

namespace pgsim::models {
namespace {

namespace fs = std::filesystem;
namespace mb = multiboot;

const fs::path kHello = fs::path(PGSIM_TEST_KERNEL_DIR) / "hello.elf";

std::vector<uint8_t> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pgsim_loader_test_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    ram_.assign(16 << 20, 0xEE);
    request_.kernel = kHello;
    request_.memory.ram_size = ram_.size();
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& name, const std::vector<uint8_t>& bytes) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return p;
  }
  uint32_t u32(uint64_t paddr) const {
    uint32_t v;
    std::memcpy(&v, &ram_[paddr], 4);
    return v;
  }
  std::string str(uint64_t paddr) const { return reinterpret_cast<const char*>(&ram_[paddr]); }
  // The message of the ImageError that loading `kernel` raises.
  std::string error_of(const fs::path& kernel, uint64_t ram_bytes) {
    request_.kernel = kernel;
    try {
      mb::load(request_, {ram_.data(), ram_bytes});
    } catch (const ImageError& e) {
      return e.what();
    }
    return "(loaded)";
  }

  fs::path dir_;
  std::vector<uint8_t> ram_;
  mb::BootRequest request_;
};

TEST_F(LoaderTest, LoadsTheElfAndBuildsTheInformationStructure) {
  request_.cmdline = "alpha beta";
  const fs::path module = write("module.bin", std::vector<uint8_t>(5000, 0x5A));
  request_.modules = {{module, "module.bin arg"}};
  const mb::BootInfo boot = mb::load(request_, {ram_.data(), ram_.size()});

  const std::vector<uint8_t> image = file_bytes(kHello);
  Elf32_Ehdr eh;
  std::memcpy(&eh, image.data(), sizeof eh);
  EXPECT_EQ(boot.entry, eh.e_entry);
  EXPECT_EQ(boot.kernel_start, 0x100000u);
  EXPECT_FALSE(boot.elf64);
  EXPECT_EQ(ram_[0x100000], 0x02);  // the Multiboot magic opens the image (little-endian 0x1BADB002)

  const uint32_t info = boot.info_address;
  const uint32_t flags = u32(info);
  EXPECT_TRUE(flags & mb::IF_MEMORY);
  EXPECT_EQ(u32(info + 4), 639u);                           // mem_lower
  EXPECT_EQ(u32(info + 8), (16u << 10) - 1024 - 128);       // mem_upper: 1 MiB to the firmware tables
  EXPECT_EQ(str(u32(info + 16)), kHello.filename().string() + " alpha beta");  // the name, not the folder
  ASSERT_EQ(u32(info + 20), 1u);                            // mods_count
  const uint32_t mod = u32(info + 24);
  EXPECT_EQ(u32(mod) % 4096, 0u);
  EXPECT_GE(u32(mod), boot.kernel_end);
  EXPECT_EQ(u32(mod + 4) - u32(mod), 5000u);
  EXPECT_EQ(ram_[u32(mod)], 0x5A);
  EXPECT_EQ(str(u32(mod + 8)), "module.bin arg");
  // The memory map: 24-byte entries, the first one conventional memory.
  const uint32_t mmap_length = u32(info + 44), mmap = u32(info + 48);
  EXPECT_EQ(mmap_length % 24, 0u);
  EXPECT_EQ(u32(mmap), 20u);
  EXPECT_EQ(u32(mmap + 12), 0x9FC00u);
  EXPECT_EQ(u32(mmap + 20), 1u);
  EXPECT_EQ(str(u32(info + 64)), "pgsim");

  isa::CpuState s;
  mb::set_entry_state(boot, s);
  EXPECT_EQ(s.gpr[isa::RAX], mb::kBootloaderMagic);
  EXPECT_EQ(s.gpr[isa::RBX], info);
  EXPECT_EQ(s.rip, boot.entry);
  EXPECT_EQ(s.mode(), isa::Mode::Protected32);
  EXPECT_FALSE(s.paging());
  EXPECT_FALSE(s.rflags & isa::IF);
  EXPECT_EQ(s.seg[isa::CS].selector, 0x08);
  EXPECT_EQ(s.seg[isa::CS].limit, 0xFFFFFFFFu);
}

TEST_F(LoaderTest, RefusesAFileThatIsNotAnImage) {
  const fs::path text = write("notes.txt", std::vector<uint8_t>(100, 'x'));
  const std::string e = error_of(text, ram_.size());
  EXPECT_NE(e.find(text.string()), std::string::npos) << e;
  EXPECT_NE(e.find("no Multiboot header"), std::string::npos) << e;
}

TEST_F(LoaderTest, RefusesAnElfWithoutMultibootHeader) {
  std::vector<uint8_t> image = file_bytes(kHello);
  // Destroy the header's magic: the ELF stays valid, the Multiboot header is gone.
  for (size_t off = 0; off + 4 <= image.size() && off < 8192; off += 4)
    if (image[off] == 0x02 && image[off + 1] == 0xB0 && image[off + 2] == 0xAD && image[off + 3] == 0x1B)
      image[off] = 0;
  const fs::path p = write("no_header.elf", image);
  const std::string e = error_of(p, ram_.size());
  EXPECT_NE(e.find("no Multiboot header"), std::string::npos) << e;
}

TEST_F(LoaderTest, RefusesATruncatedImage) {
  std::vector<uint8_t> image = file_bytes(kHello);
  // Keep the ELF header, the program headers and the Multiboot header; cut the segment's data.
  Elf32_Ehdr eh;
  std::memcpy(&eh, image.data(), sizeof eh);
  Elf32_Phdr ph;
  std::memcpy(&ph, &image[eh.e_phoff], sizeof ph);
  image.resize(ph.p_offset + 64);
  const fs::path p = write("truncated.elf", image);
  const std::string e = error_of(p, ram_.size());
  EXPECT_NE(e.find(p.string()), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  // An image cut inside its ELF header.
  image.resize(40);
  const std::string e2 = error_of(write("tiny.elf", image), ram_.size());
  EXPECT_NE(e2.find("no Multiboot header"), std::string::npos) << e2;
}

TEST_F(LoaderTest, RefusesSegmentsOutsideRam) {
  const std::string e = error_of(kHello, 512 << 10);  // 512 KiB of RAM: 1 MiB is beyond it
  EXPECT_NE(e.find("outside RAM"), std::string::npos) << e;
  EXPECT_NE(e.find("ELF segment"), std::string::npos) << e;
}

TEST_F(LoaderTest, RefusesMissingAndEmptyFiles) {
  EXPECT_NE(error_of(dir_ / "missing.elf", ram_.size()).find("cannot open"), std::string::npos);
  EXPECT_NE(error_of(write("empty.elf", {}), ram_.size()).find("empty"), std::string::npos);
}

TEST_F(LoaderTest, LoadsAnAoutKludgeImage) {
  // A flat binary: the header's address fields say where it goes.
  std::vector<uint8_t> flat(64, 0x90);
  const uint32_t header[] = {mb::kHeaderMagic, mb::HF_AOUT_KLUDGE,
                             static_cast<uint32_t>(-(mb::kHeaderMagic + mb::HF_AOUT_KLUDGE)),
                             0x200000, 0x200000, 0, 0x200100, 0x200020};
  std::memcpy(flat.data(), header, sizeof header);
  request_.kernel = write("flat.bin", flat);
  const mb::BootInfo boot = mb::load(request_, {ram_.data(), ram_.size()});
  EXPECT_TRUE(boot.aout_kludge);
  EXPECT_EQ(boot.entry, 0x200020u);
  EXPECT_EQ(ram_[0x200020], 0x90);
  EXPECT_EQ(ram_[0x2000F0], 0);  // bss cleared
  EXPECT_EQ(boot.kernel_end, 0x200100u);
}

}  // namespace
}  // namespace pgsim::models

// Multiboot 1 loading as QEMU's `-kernel` does it (Multiboot Specification 0.6.96): an ELF32 or
// ELF64 image with a Multiboot header (or any image using the header's a.out-kludge address
// fields), the command line, modules placed page-aligned after the kernel, the information
// structure with the memory map, and the machine state the specification prescribes at entry.
// A bad image ends in an ImageError that names the file and what is wrong with it.
#pragma once
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "isa/cpu_state.h"
#include "models/memory/pc_memory_map.h"

namespace pgsim::models {

class ImageError : public std::runtime_error {
 public:
  ImageError(const std::filesystem::path& file, const std::string& what)
      : std::runtime_error(file.string() + ": " + what) {}
};

namespace multiboot {

constexpr uint32_t kHeaderMagic = 0x1BADB002;      // in the image
constexpr uint32_t kBootloaderMagic = 0x2BADB002;  // in EAX at entry
constexpr size_t kHeaderSearchBytes = 8192;

// Multiboot header flags (spec 3.1.2).
enum HeaderFlags : uint32_t {
  HF_PAGE_ALIGN = 1u << 0,   // modules page-aligned (always done)
  HF_MEMORY_INFO = 1u << 1,  // mem_* and mmap_* fields wanted (always given)
  HF_VIDEO_MODE = 1u << 2,   // a video mode wanted (there is no display: ignored, as QEMU does)
  HF_AOUT_KLUDGE = 1u << 16, // the address fields of the header say where to load
};
constexpr uint32_t kRequiredFlagsUnderstood = HF_PAGE_ALIGN | HF_MEMORY_INFO | HF_VIDEO_MODE;

// Information structure flags (spec 3.3).
enum InfoFlags : uint32_t {
  IF_MEMORY = 1u << 0, IF_BOOT_DEVICE = 1u << 1, IF_CMDLINE = 1u << 2, IF_MODULES = 1u << 3,
  IF_MMAP = 1u << 6, IF_BOOT_LOADER_NAME = 1u << 9,
};

// Physical RAM from address 0 upwards as the loader may write it.
struct GuestRam {
  uint8_t* base = nullptr;
  uint64_t size = 0;  // bytes of RAM below 4 GiB, contiguous from 0
};

struct Module {
  std::filesystem::path file;
  std::string cmdline;  // the string the guest sees for this module
};

struct BootRequest {
  std::filesystem::path kernel;
  std::string cmdline;            // the guest sees "<kernel path> <cmdline>", as under QEMU
  std::vector<Module> modules;
  PcMemoryMap memory;
  std::string boot_loader_name = "pgsim";
};

struct BootInfo {
  uint32_t entry = 0;        // EIP at entry
  uint32_t info_address = 0; // EBX at entry: the Multiboot information structure
  uint64_t kernel_start = 0, kernel_end = 0;  // physical extent of the loaded image
  uint64_t loaded_end = 0;   // end of everything the loader wrote (image, modules, info)
  bool elf64 = false;
  bool aout_kludge = false;
};

// Loads kernel and modules into `ram` and builds the information structure. Throws ImageError.
BootInfo load(const BootRequest& request, GuestRam ram);

// The register state at entry: 32-bit protected mode, paging off, flat segments (CS 0x08 and data
// 0x10 in a GDT the loader leaves in low memory, as QEMU's option ROM does), EAX=0x2BADB002,
// EBX=info, IF=0.
void set_entry_state(const BootInfo& boot, isa::CpuState& state);

}  // namespace multiboot
}  // namespace pgsim::models

// Where a PC puts its RAM (as QEMU's `-machine pc` does): up to 3 GiB below 4 GiB, the rest from
// 4 GiB up, leaving room under 4 GiB for the I/O APIC, the local APIC and the firmware. The BIOS
// memory map (e820) that the Multiboot loader and fw_cfg report follows from it.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace pgsim::models {

struct MemoryRange {
  enum Type : uint32_t { Usable = 1, Reserved = 2 };
  uint64_t base, length;
  Type type;
};

struct PcMemoryMap {
  static constexpr uint64_t kLowRamLimit = 0xC0000000;        // RAM below 4 GiB ends here at most
  static constexpr uint64_t kHighRamBase = 0x100000000ull;    // the rest starts at 4 GiB
  static constexpr uint64_t kConventionalEnd = 0x9FC00;       // 639 KiB, then the EBDA
  static constexpr uint64_t kBiosAreaBase = 0xF0000;          // the BIOS ROM shadow, reserved
  static constexpr uint64_t kHighMemoryBase = 0x100000;       // 1 MiB
  static constexpr uint64_t kFirmwareBase = 0xFFFC0000;       // the flash at the top of 4 GiB
  static constexpr uint64_t kFirmwareTables = 0x20000;        // SeaBIOS keeps its tables in the
                                                              // top 128 KiB of RAM below 4 GiB

  uint64_t ram_size = 0;

  uint64_t low_size() const { return std::min(ram_size, kLowRamLimit); }
  uint64_t high_size() const { return ram_size - low_size(); }

  std::vector<MemoryRange> e820() const {
    std::vector<MemoryRange> map = {
        {0, kConventionalEnd, MemoryRange::Usable},
        {kConventionalEnd, 0xA0000 - kConventionalEnd, MemoryRange::Reserved},
        {kBiosAreaBase, kHighMemoryBase - kBiosAreaBase, MemoryRange::Reserved},
    };
    if (low_size() > kHighMemoryBase + kFirmwareTables) {
      const uint64_t tables = low_size() - kFirmwareTables;
      map.push_back({kHighMemoryBase, tables - kHighMemoryBase, MemoryRange::Usable});
      map.push_back({tables, kFirmwareTables, MemoryRange::Reserved});
    }
    map.push_back({kFirmwareBase, kHighRamBase - kFirmwareBase, MemoryRange::Reserved});
    if (high_size() > 0) map.push_back({kHighRamBase, high_size(), MemoryRange::Usable});
    return map;
  }
};

}  // namespace pgsim::models

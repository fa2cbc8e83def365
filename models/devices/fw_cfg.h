// QEMU's firmware configuration device, legacy I/O interface: a 16-bit item selector at port 0x510
// and a byte-wide data port at 0x511 that streams the selected item (docs/specs/fw_cfg.txt in
// QEMU). Items carry the signature, the interface ID, the CPU count, the RAM size, and a file
// directory holding "etc/e820" (the memory map).
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <systemc>

#include "models/devices/register_port.h"

namespace pgsim::models {

class FwCfg : public sc_core::sc_module {
 public:
  // Register offsets from the base port (0x510).
  enum Reg : unsigned { SELECTOR = 0, DATA = 1 };
  // Item keys (QEMU include/standard-headers/linux/qemu_fw_cfg.h).
  enum Key : uint16_t {
    SIGNATURE = 0x00,  // "QEMU"
    ID = 0x01,         // feature bits: bit 0, the traditional interface
    UUID = 0x02,       // 16 bytes
    RAM_SIZE = 0x03,   // u64, little-endian
    NOGRAPHIC = 0x04,  // u16
    NB_CPUS = 0x05,    // u16, CPUs present at boot
    MAX_CPUS = 0x0F,   // u16
    FILE_DIR = 0x19,   // big-endian directory of named files
    FILE_FIRST = 0x20, // the first key given to a file
  };
  static constexpr uint32_t kIdTraditional = 1u << 0;
  static constexpr size_t kFileNameLength = 56;

  RegisterPort in;  // 2 ports

  explicit FwCfg(sc_core::sc_module_name name)
      : sc_module(name),
        in("in",
           [this](uint64_t off, unsigned size, const sc_core::sc_time&) -> uint64_t {
             if (off != DATA) return 0;
             uint64_t v = 0;
             for (unsigned i = 0; i < size; ++i) v |= uint64_t{next_byte()} << (8 * i);
             return v;
           },
           [this](uint64_t off, unsigned, uint64_t v, const sc_core::sc_time&) {
             if (off == SELECTOR) select(static_cast<uint16_t>(v));
           }) {
    add_item(SIGNATURE, {'Q', 'E', 'M', 'U'});
    add_u32(ID, kIdTraditional);
    add_item(UUID, std::vector<uint8_t>(16, 0));
    add_u16(NOGRAPHIC, 1);
    rebuild_directory();
  }

  void add_item(uint16_t key, std::vector<uint8_t> data) { items_[key] = std::move(data); }
  void add_u16(uint16_t key, uint16_t v) { add_item(key, le(v, 2)); }
  void add_u32(uint16_t key, uint32_t v) { add_item(key, le(v, 4)); }
  void add_u64(uint16_t key, uint64_t v) { add_item(key, le(v, 8)); }

  // A named file, listed in FILE_DIR under the next free key.
  void add_file(const std::string& name, std::vector<uint8_t> data) {
    if (name.size() >= kFileNameLength) throw std::invalid_argument("fw_cfg file name too long: " + name);
    uint16_t key = static_cast<uint16_t>(FILE_FIRST + files_.size());
    files_.push_back({name, key});
    add_item(key, std::move(data));
    rebuild_directory();
  }

  // The e820 table as QEMU's "etc/e820" file holds it: {u64 address, u64 length, u32 type}.
  struct E820Entry { uint64_t address, length; uint32_t type; };
  static std::vector<uint8_t> e820_file(const std::vector<E820Entry>& entries) {
    std::vector<uint8_t> out;
    for (const E820Entry& e : entries) {
      for (auto b : le(e.address, 8)) out.push_back(b);
      for (auto b : le(e.length, 8)) out.push_back(b);
      for (auto b : le(e.type, 4)) out.push_back(b);
    }
    return out;
  }

  void select(uint16_t key) {
    selected_ = key & 0x3FFF;  // bit 15 (write) and bit 14 (architecture-local) do not name items
    offset_ = 0;
  }
  uint8_t next_byte() {
    auto it = items_.find(selected_);
    if (it == items_.end() || offset_ >= it->second.size()) return 0;
    return it->second[offset_++];
  }

 private:
  static std::vector<uint8_t> le(uint64_t v, unsigned n) {
    std::vector<uint8_t> out(n);
    for (unsigned i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
    return out;
  }
  static void put_be(std::vector<uint8_t>& out, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * (n - 1 - i))));
  }
  void rebuild_directory() {
    std::vector<uint8_t> dir;
    put_be(dir, files_.size(), 4);
    for (const auto& f : files_) {
      put_be(dir, items_[f.key].size(), 4);
      put_be(dir, f.key, 2);
      put_be(dir, 0, 2);
      char name[kFileNameLength] = {};
      std::memcpy(name, f.name.data(), f.name.size());
      dir.insert(dir.end(), name, name + kFileNameLength);
    }
    items_[FILE_DIR] = std::move(dir);
  }

  struct File { std::string name; uint16_t key; };
  std::map<uint16_t, std::vector<uint8_t>> items_;
  std::vector<File> files_;
  uint16_t selected_ = 0;
  size_t offset_ = 0;
};

}  // namespace pgsim::models

// Just enough of a PC for the guest kernel's non-interrupt workloads, without SystemC: contiguous
// RAM (guest RAM, then the VMM's RAM above it, which the guest is not told of), a 16550 that is
// always ready and collects what the guest writes, the exit port, fw_cfg (signature, RAM size,
// CPU count), 8259 registers that keep what is written, and local/I/O APIC windows that do the
// same (no timer ticks: workloads that need them do not run here). It lets the trap_emulate
// tests boot the real kernel; the PC board (platforms/pc/) is the machine of real runs.
#pragma once
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "isa/core.h"
#include "models/loader/multiboot.h"

namespace pgsim::test {

class MiniPc : public isa::PhysicalBus, public isa::IoBus {
 public:
  static constexpr uint64_t kLapic = 0xFEE00000, kIoapic = 0xFEC00000;

  MiniPc(uint64_t guest_ram, uint64_t vmm_ram)
      : guest_ram_(guest_ram), size_(guest_ram + vmm_ram), ram_(static_cast<uint8_t*>(std::calloc(size_, 1))) {}
  ~MiniPc() override { std::free(ram_); }

  // Loads the kernel with `cmdline` and sets `core` at its entry.
  void boot(isa::Core& core, const std::string& kernel, const std::string& cmdline) {
    models::multiboot::BootRequest req;
    req.kernel = kernel;
    req.cmdline = cmdline;
    req.memory.ram_size = guest_ram_;
    const auto info = models::multiboot::load(req, {ram_, guest_ram_});
    models::multiboot::set_entry_state(info, core.state());
    core.sync_mode();
    core_ = &core;
  }

  std::string serial;      // what the guest wrote to COM1
  int exit_value = -1;     // what it wrote to the exit port
  uint64_t apic_accesses = 0;  // reads and writes of the local and I/O APIC windows

  // isa::PhysicalBus
  uint8_t* host_frame(uint64_t paddr) override { return paddr < size_ ? ram_ + (paddr & ~0xFFFull) : nullptr; }
  uint64_t read(uint64_t paddr, unsigned size) override {
    if (paddr < size_) {
      uint64_t v = 0;
      std::memcpy(&v, ram_ + paddr, size);
      return v;
    }
    if (in_window(paddr)) {
      ++apic_accesses;
      return registers_[paddr];
    }
    return ~0ull;
  }
  void write(uint64_t paddr, unsigned size, uint64_t value) override {
    if (paddr < size_) std::memcpy(ram_ + paddr, &value, size);
    else if (in_window(paddr)) {
      ++apic_accesses;
      registers_[paddr] = value;
    }
  }

  // isa::IoBus
  uint32_t in(uint16_t port, unsigned size) override {
    if (port == 0x3FD) return 0x60;  // LSR: transmitter empty
    if (port >= 0x3F8 && port < 0x400) return 0;
    if (port == 0x511) return fw_cfg_byte();
    if (port == 0x20 || port == 0x21 || port == 0xA0 || port == 0xA1) return ports_[port];
    return static_cast<uint32_t>(isa::Core::size_mask(size));
  }
  void out(uint16_t port, unsigned, uint32_t value) override {
    if (port == 0x3F8) serial.push_back(static_cast<char>(value));
    else if (port == 0xF4) {
      exit_value = static_cast<int>(value & 0xFF);
      if (core_) core_->request_stop();
    } else if (port == 0x510) {
      fw_cfg_key_ = value;
      fw_cfg_offset_ = 0;
    } else {
      ports_[port] = value & 0xFF;
    }
  }

 private:
  bool in_window(uint64_t paddr) const {
    return (paddr >= kLapic && paddr < kLapic + 4096) || (paddr >= kIoapic && paddr < kIoapic + 4096);
  }
  uint32_t fw_cfg_byte() {
    uint64_t item = 0;
    if (fw_cfg_key_ == 0) item = 0x554D4551;  // "QEMU"
    else if (fw_cfg_key_ == 3) item = guest_ram_;
    else if (fw_cfg_key_ == 5) item = 1;
    const unsigned k = fw_cfg_offset_++;
    return k < 8 ? static_cast<uint32_t>((item >> (8 * k)) & 0xFF) : 0;
  }

  uint64_t guest_ram_, size_;
  uint8_t* ram_;
  isa::Core* core_ = nullptr;
  std::map<uint64_t, uint64_t> registers_;
  std::map<uint16_t, uint32_t> ports_;
  uint32_t fw_cfg_key_ = 0;
  unsigned fw_cfg_offset_ = 0;
};

}  // namespace pgsim::test

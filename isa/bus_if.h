// How the core reaches the rest of the machine. The ISA knows nothing of SystemC: the platform
// implements these small interfaces (riscv-vp++ style), and unit tests implement them with plain
// arrays.
#pragma once
#include <cstdint>
#include <cstring>

namespace pgsim::isa {

// A little-endian access of up to 8 bytes at a host pointer into guest RAM. The usual sizes are
// copies of constant length, which compile to one load or store (a copy of `size` bytes is a call).
inline uint64_t load_host(const uint8_t* p, unsigned size) {
  uint64_t v = 0;
  switch (size) {
    case 1: return *p;
    case 2: { uint16_t h; std::memcpy(&h, p, 2); return h; }
    case 4: { uint32_t w; std::memcpy(&w, p, 4); return w; }
    case 8: std::memcpy(&v, p, 8); return v;
    default: std::memcpy(&v, p, size); return v;
  }
}
inline void store_host(uint8_t* p, unsigned size, uint64_t value) {
  switch (size) {
    case 1: *p = static_cast<uint8_t>(value); return;
    case 2: { const auto h = static_cast<uint16_t>(value); std::memcpy(p, &h, 2); return; }
    case 4: { const auto w = static_cast<uint32_t>(value); std::memcpy(p, &w, 4); return; }
    case 8: std::memcpy(p, &value, 8); return;
    default: std::memcpy(p, &value, size); return;
  }
}

// Physical memory and memory-mapped devices.
class PhysicalBus {
 public:
  virtual ~PhysicalBus() = default;
  // A host pointer to the 4 KiB frame holding `paddr` when it is plain RAM (direct memory
  // interface); nullptr when the frame is device memory or unmapped, in which case the core uses
  // read()/write(). The pointer stays valid until invalidate_host_pointers() is called.
  virtual uint8_t* host_frame(uint64_t paddr) = 0;
  // Device (or RAM) access of 1, 2, 4 or 8 bytes. Unmapped reads return all ones.
  virtual uint64_t read(uint64_t paddr, unsigned size) = 0;
  virtual void write(uint64_t paddr, unsigned size, uint64_t value) = 0;
  // Copies the `n` bytes at `paddr`, all within one 4 KiB frame, and returns true when they are
  // plain RAM that read() would give byte by byte with no other effect; otherwise copies nothing and
  // returns false, and the caller reads them with read(). For a bus without host pointers (what a
  // VMM's virtual CPU sees), so that an instruction fetch is one copy rather than 15 reads.
  virtual bool copy_from_ram(uint64_t /*paddr*/, uint8_t* /*out*/, unsigned /*n*/) { return false; }
};

// The I/O port space (IN/OUT/INS/OUTS).
class IoBus {
 public:
  virtual ~IoBus() = default;
  virtual uint32_t in(uint16_t port, unsigned size) = 0;     // unclaimed ports read all ones
  virtual void out(uint16_t port, unsigned size, uint32_t value) = 0;
};

}  // namespace pgsim::isa

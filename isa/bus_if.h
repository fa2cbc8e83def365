// How the core reaches the rest of the machine. The ISA knows nothing of SystemC: the platform
// implements these small interfaces (riscv-vp++ style), and unit tests implement them with plain
// arrays.
#pragma once
#include <cstdint>

namespace pgsim::isa {

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
};

// The I/O port space (IN/OUT/INS/OUTS).
class IoBus {
 public:
  virtual ~IoBus() = default;
  virtual uint32_t in(uint16_t port, unsigned size) = 0;     // unclaimed ports read all ones
  virtual void out(uint16_t port, unsigned size, uint32_t value) = 0;
};

}  // namespace pgsim::isa

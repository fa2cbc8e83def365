// Test harness for the x86 core: a lazily allocated flat RAM PhysicalBus, an IoBus that records
// port traffic, an identity Translator, and helpers that build 64-bit and 32-bit protected-mode
// CPU states and load code. Header-only so that any test folder can include it
// ("tests/isa/harness.h").
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "isa/core.h"
#include "isa/system/events.h"

namespace pgsim::test {

// Physical RAM of `size` bytes from address 0, allocated 4 KiB at a time on first touch; addresses
// at or above `size` are unmapped (reads return all ones, writes are dropped). Optional device
// windows are reached through read()/write() only (no host pointer), like MMIO.
class FlatRam : public isa::PhysicalBus {
 public:
  explicit FlatRam(uint64_t size = 64ull << 20) : size_(size) {}

  // A device window [base, base + size): every access goes to the callbacks.
  struct Device {
    std::function<uint64_t(uint64_t offset, unsigned size)> read;
    std::function<void(uint64_t offset, unsigned size, uint64_t value)> write;
  };
  void add_device(uint64_t base, uint64_t size, Device device) { devices_[base] = Window{base, size, std::move(device)}; }

  // From now on the RAM is one piece of host memory (its contents so far copied there), frames at
  // one offset from their physical addresses as a platform's RAM is, so that the walk memos
  // (models/mmu/walk_memo.h), which need that, remember walks. Before any host pointer is kept.
  void make_one_piece() {
    one_piece_.reset(static_cast<uint8_t*>(std::calloc(size_, 1)));
    for (const auto& [frame, bytes] : frames_) std::memcpy(one_piece_.get() + (frame << 12), bytes.get(), 4096);
    frames_.clear();
  }

  uint8_t* host_frame(uint64_t paddr) override {
    if (paddr >= size_ || device_at(paddr)) return nullptr;
    if (one_piece_) return one_piece_.get() + (paddr & ~0xFFFull);
    auto& frame = frames_[paddr >> 12];
    if (!frame) frame = std::make_unique<uint8_t[]>(4096);  // zero-initialized
    return frame.get();
  }
  uint64_t read(uint64_t paddr, unsigned size) override {
    if (Window* d = device_at(paddr)) return d->device.read(paddr - d->base, size);
    uint64_t v = 0;
    for (unsigned k = 0; k < size; ++k) {
      const uint8_t* f = host_frame(paddr + k);
      v |= uint64_t{f ? f[(paddr + k) & 0xFFF] : uint8_t{0xFF}} << (8 * k);
    }
    ++bus_reads;
    return v;
  }
  void write(uint64_t paddr, unsigned size, uint64_t value) override {
    if (Window* d = device_at(paddr)) return d->device.write(paddr - d->base, size, value);
    for (unsigned k = 0; k < size; ++k) {
      if (uint8_t* f = host_frame(paddr + k)) f[(paddr + k) & 0xFFF] = static_cast<uint8_t>(value >> (8 * k));
    }
    ++bus_writes;
  }

  // Direct access for setting up and checking memory (bypasses the core).
  void load(uint64_t paddr, const std::vector<uint8_t>& bytes) {
    for (size_t k = 0; k < bytes.size(); ++k) host_frame(paddr + k)[(paddr + k) & 0xFFF] = bytes[k];
  }
  template <class T> T get(uint64_t paddr) {
    T v;
    for (size_t k = 0; k < sizeof(T); ++k) reinterpret_cast<uint8_t*>(&v)[k] = host_frame(paddr + k)[(paddr + k) & 0xFFF];
    return v;
  }
  template <class T> void put(uint64_t paddr, T v) {
    for (size_t k = 0; k < sizeof(T); ++k) host_frame(paddr + k)[(paddr + k) & 0xFFF] = reinterpret_cast<uint8_t*>(&v)[k];
  }

  uint64_t bus_reads = 0, bus_writes = 0;  // accesses that did not use a host pointer

 private:
  struct Window {
    uint64_t base, size;
    Device device;
  };
  Window* device_at(uint64_t paddr) {
    auto it = devices_.upper_bound(paddr);
    if (it == devices_.begin()) return nullptr;
    --it;
    return paddr < it->second.base + it->second.size ? &it->second : nullptr;
  }
  uint64_t size_;
  std::unordered_map<uint64_t, std::unique_ptr<uint8_t[]>> frames_;
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> one_piece_;
  std::map<uint64_t, Window> devices_;
};

// Records OUTs; INs return `in_value` (all ones by default, like an unclaimed port).
class IoRecorder : public isa::IoBus {
 public:
  struct Access {
    uint16_t port;
    unsigned size;
    uint32_t value;
  };
  uint32_t in(uint16_t port, unsigned size) override {
    ins.push_back({port, size, in_value});
    return in_value & static_cast<uint32_t>(isa::Core::size_mask(size));
  }
  void out(uint16_t port, unsigned size, uint32_t value) override { outs.push_back({port, size, value}); }
  std::vector<Access> ins, outs;
  uint32_t in_value = 0xFFFFFFFF;
};

// Linear == physical with every permission: lets tests run with CR0.PG (long mode) without page
// tables. Tests of the page walk use isa/system/paging.h instead.
class IdentityTranslator : public isa::Translator {
 public:
  isa::Translation translate(const isa::CpuState&, uint64_t linear, isa::AccessKind, bool, isa::AccessOrigin) override {
    ++calls;
    isa::Translation t;
    t.ok = true;
    t.paddr = linear;
    return t;
  }
  void invalidate_page(uint64_t) override { ++invalidations; }
  void flush(bool) override { ++flushes; }
  uint64_t calls = 0, invalidations = 0, flushes = 0;
};

// Hidden segment attributes (descriptor bits 40..55, see isa::Segment::attr).
constexpr uint16_t seg_attr(unsigned type, unsigned dpl, bool l, bool db, bool g) {
  return static_cast<uint16_t>(type | 0x10 | dpl << 5 | 0x80 | (l ? 0x2000 : 0) | (db ? 0x4000 : 0) | (g ? 0x8000 : 0));
}
constexpr unsigned kCodeExecRead = 0xB;  // code, execute/read, accessed
constexpr unsigned kDataReadWrite = 0x3; // data, read/write, accessed

// Flat selectors of a conventional GDT: 0x08 kernel code, 0x10 kernel data, 0x18|3 user code,
// 0x20|3 user data (the hidden parts are set directly; no GDT is read).
inline void set_flat_segments(isa::CpuState& s, unsigned cpl, bool long64) {
  using namespace isa;
  const uint16_t cs = cpl == 3 ? 0x1B : 0x08, ds = cpl == 3 ? 0x23 : 0x10;
  s.seg[CS] = Segment{cs, 0, 0xFFFFFFFF, seg_attr(kCodeExecRead, cpl, long64, !long64, true)};
  for (SegReg r : {ES, SS, DS, FS, GS}) s.seg[r] = Segment{ds, 0, 0xFFFFFFFF, seg_attr(kDataReadWrite, cpl, false, true, true)};
}

// IA-32e 64-bit mode at `cpl` with flat segments; paging is on (long mode requires it), so the
// core needs a Translator (IdentityTranslator, or a real walk).
inline void make_long64(isa::CpuState& s, unsigned cpl) {
  using namespace isa;
  s.cr0 = CR0_PE | CR0_PG | CR0_ET | CR0_NE | CR0_WP;
  s.cr4 = CR4_PAE;
  s.efer = EFER_LME | EFER_LMA | EFER_SCE | EFER_NXE;
  s.rflags = RF1;
  set_flat_segments(s, cpl, true);
}

// 32-bit protected mode at `cpl` with flat 4 GiB segments and paging off.
inline void make_prot32(isa::CpuState& s, unsigned cpl) {
  using namespace isa;
  s.cr0 = CR0_PE | CR0_ET | CR0_NE;
  s.cr4 = 0;
  s.efer = 0;
  s.rflags = RF1;
  set_flat_segments(s, cpl, false);
}

// A core on a FlatRam with an IoRecorder and an identity Translator.
struct Machine {
  FlatRam ram;
  IoRecorder io;
  IdentityTranslator translator;
  isa::Core core{ram, io};

  explicit Machine(uint64_t ram_size = 64ull << 20) : ram(ram_size) { core.set_translator(&translator); }
  // Copies `code` to `address`, drops any decoded copy, and points RIP at it.
  void load_code(uint64_t address, const std::vector<uint8_t>& code) {
    ram.load(address, code);
    core.invalidate_decoded(address, code.size());
    core.state().rip = address;
    core.sync_mode();
  }
  isa::CpuState& state() { return core.state(); }
  uint64_t& reg(unsigned r) { return core.state().gpr[r]; }
};

// Consumes every event (so no IDT is needed), remembers it and stops the run.
class RecordingHook : public isa::TrapHook {
 public:
  bool on_event(isa::Core& core, const isa::Event& e) override {
    events.push_back(e);
    core.request_stop();
    return true;
  }
  std::vector<isa::Event> events;
};

}  // namespace pgsim::test

// A small protected-mode world for the system tests: a GDT with flat ring-0 and ring-3 segments,
// an IDT, a TSS and stacks in the FlatRam of tests/isa/harness.h, built the way an OS would.
#pragma once
#include <cstdint>

#include "isa/core.h"
#include "isa/system/descriptors.h"
#include "tests/isa/harness.h"
#include "tests/vmm/walking_translator.h"

namespace pgsim::test {

// Descriptor encodings (SDM vol. 3, figures 3-8, 5-8, 6-2, 6-8).
inline uint64_t segment_descriptor(uint32_t base, uint32_t limit, unsigned type, unsigned dpl, bool l, bool db,
                                   bool system = false) {
  return (limit & 0xFFFF) | (uint64_t(base & 0xFFFFFF) << 16) | (uint64_t(type) << 40) |
         (uint64_t(system ? 0 : 1) << 44) | (uint64_t(dpl) << 45) | (1ull << 47) |
         (uint64_t((limit >> 16) & 0xF) << 48) | (uint64_t(l) << 53) | (uint64_t(db) << 54) |
         (uint64_t(!system) << 55) | (uint64_t(base >> 24) << 56);
}
// An interrupt/trap/call gate; `hi` is the upper quadword in IA-32e mode.
struct Gate {
  uint64_t lo, hi;
};
inline Gate gate(uint64_t offset, uint16_t selector, unsigned type, unsigned dpl, unsigned ist_or_params = 0,
                 bool present = true) {
  uint64_t lo = (offset & 0xFFFF) | (uint64_t(selector) << 16) | (uint64_t(ist_or_params & 0x1F) << 32) |
                (uint64_t(type) << 40) | (uint64_t(dpl) << 45) | (uint64_t(present) << 47) |
                (((offset >> 16) & 0xFFFF) << 48);
  return {lo, offset >> 32};
}

// Selectors of the GDT below.
constexpr uint16_t kKernelCode = 0x08, kKernelData = 0x10, kUserCode = 0x1B, kUserData = 0x23, kTssSel = 0x28;
constexpr uint16_t kKernelCode32 = 0x38, kCallGateSel = 0x40;  // a 32-bit ring-0 code segment; a gate slot

// Memory layout.
constexpr uint64_t kGdt = 0x1000, kIdt = 0x2000, kTss = 0x4000, kCode = 0x10000, kHandler = 0x20000;
constexpr uint64_t kUserStack = 0x80000, kKernelStack = 0x90000, kIstStack = 0xA0000;

struct SystemMachine : Machine {
  bool long_mode;

  explicit SystemMachine(bool ia32e) : long_mode(ia32e) {
    isa::CpuState& s = state();
    if (ia32e) make_long64(s, 0);
    else make_prot32(s, 0);
    put_gdt(kKernelCode, segment_descriptor(0, 0xFFFFF, kCodeExecRead, 0, ia32e, !ia32e));
    put_gdt(kKernelData, segment_descriptor(0, 0xFFFFF, kDataReadWrite, 0, false, true));
    put_gdt(kUserCode, segment_descriptor(0, 0xFFFFF, kCodeExecRead, 3, ia32e, !ia32e));
    put_gdt(kUserData, segment_descriptor(0, 0xFFFFF, kDataReadWrite, 3, false, true));
    put_gdt(kKernelCode32, segment_descriptor(0, 0xFFFFF, kCodeExecRead, 0, false, true));
    // The TSS (available, type 9) of 0x68 bytes plus an I/O bitmap of 8 KiB + 1 at offset 0x68.
    const uint32_t tss_limit = 0x68 + 8192;
    put_gdt(kTssSel, segment_descriptor(kTss, tss_limit, isa::kTssAvailable, 0, false, false, true) & ~(1ull << 55));
    if (ia32e) ram.put<uint64_t>(kGdt + kTssSel + 8, 0);
    ram.put<uint16_t>(kTss + 0x66, 0x68);
    ram.put<uint8_t>(kTss + 0x68 + 8192, 0xFF);
    if (ia32e) {
      ram.put<uint64_t>(kTss + 4, kKernelStack);  // RSP0
      ram.put<uint64_t>(kTss + 0x24, kIstStack);  // IST1
    } else {
      ram.put<uint32_t>(kTss + 4, static_cast<uint32_t>(kKernelStack));  // ESP0
      ram.put<uint16_t>(kTss + 8, kKernelData);                           // SS0
    }
    s.gdtr = {kGdt, 0x7F};
    s.idtr = {kIdt, static_cast<uint16_t>(ia32e ? 0xFFF : 0x7FF)};
    s.tr = isa::Segment{kTssSel, kTss, tss_limit, static_cast<uint16_t>(isa::kTssBusy | 0x80)};
    s.gpr[isa::RSP] = kKernelStack - 0x100;
  }

  void put_gdt(uint16_t selector, uint64_t descriptor) { ram.put<uint64_t>(kGdt + (selector & ~7u), descriptor); }
  void put_gate_in_gdt(uint16_t selector, Gate g) {
    ram.put<uint64_t>(kGdt + (selector & ~7u), g.lo);
    if (long_mode) ram.put<uint64_t>(kGdt + (selector & ~7u) + 8, g.hi);
  }
  // IDT entry `vector` (8 or 16 bytes).
  void put_idt(uint8_t vector, Gate g) {
    if (long_mode) {
      ram.put<uint64_t>(kIdt + vector * 16u, g.lo);
      ram.put<uint64_t>(kIdt + vector * 16u + 8, g.hi);
    } else {
      ram.put<uint64_t>(kIdt + vector * 8u, g.lo);
    }
  }
  // An interrupt gate (or trap gate) to kHandler + vector * 16 in the kernel code segment.
  void handler(uint8_t vector, unsigned dpl = 0, bool trap = false, unsigned ist = 0) {
    put_idt(vector, gate(kHandler + vector * 16u, kKernelCode, trap ? isa::kTrapGate : isa::kIntGate, dpl, ist));
  }
  // Switches to ring 3 with flat user segments (the hidden parts as a loader would set them).
  void enter_user(uint64_t rip, uint64_t rsp) {
    set_flat_segments(state(), 3, long_mode);
    state().rip = rip;
    state().gpr[isa::RSP] = rsp;
    core.sync_mode();
  }
  template <class T> T stack(uint64_t address) { return ram.get<T>(address); }
};

}  // namespace pgsim::test

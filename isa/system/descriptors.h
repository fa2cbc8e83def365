// Segment descriptors and segment-register loads (Intel SDM vol. 3, ch. 3 and 5; vol. 2, MOV,
// POP, LAR, LSL, VERR, VERW): descriptor parsing, the protection checks of every load with their
// selector error codes, accessed-bit updates, and the TSS fields event delivery needs.
#pragma once
#include <cstdint>

#include "isa/cpu_state.h"
#include "isa/fault.h"

namespace pgsim::isa {

class Core;

// System-descriptor and gate types (S = 0), legacy and IA-32e encodings (SDM vol. 3, table 3-2).
enum SystemType : unsigned {
  kTss16Available = 0x1,
  kLdt = 0x2,
  kTss16Busy = 0x3,
  kCallGate16 = 0x4,
  kTaskGate = 0x5,
  kIntGate16 = 0x6,
  kTrapGate16 = 0x7,
  kTssAvailable = 0x9,  // 32-bit TSS, or 64-bit TSS in IA-32e mode
  kTssBusy = 0xB,
  kCallGate = 0xC,      // 32-bit, or 64-bit in IA-32e mode
  kIntGate = 0xE,
  kTrapGate = 0xF,
};

// A descriptor as it sits in the GDT, LDT or IDT; `hi` is the second quadword of the 16-byte
// system descriptors and gates of IA-32e mode (zero otherwise).
struct Descriptor {
  uint64_t lo = 0, hi = 0;

  uint16_t attr() const { return static_cast<uint16_t>((lo >> 40) & 0xF0FF); }  // Segment::attr layout
  unsigned type() const { return (lo >> 40) & 0xF; }
  bool s() const { return lo & (1ull << 44); }  // code/data (1) or system (0)
  unsigned dpl() const { return (lo >> 45) & 3; }
  bool present() const { return lo & (1ull << 47); }
  bool l() const { return lo & (1ull << 53); }
  bool db() const { return lo & (1ull << 54); }
  bool g() const { return lo & (1ull << 55); }
  uint64_t base() const { return ((lo >> 16) & 0xFFFFFF) | ((lo >> 56) << 24); }
  uint64_t base64() const { return base() | ((hi & 0xFFFFFFFF) << 32); }  // 16-byte system descriptor
  uint32_t limit() const {  // scaled by G
    uint32_t raw = static_cast<uint32_t>((lo & 0xFFFF) | ((lo >> 32) & 0xF0000));
    return g() ? (raw << 12) | 0xFFF : raw;
  }
  bool code() const { return s() && (type() & 8); }
  bool data() const { return s() && !(type() & 8); }
  bool conforming() const { return code() && (type() & 4); }
  bool readable() const { return data() || (type() & 2); }  // code: R bit
  bool writable() const { return data() && (type() & 2); }
  // Gates.
  uint16_t gate_selector() const { return static_cast<uint16_t>(lo >> 16); }
  uint64_t gate_offset() const { return (lo & 0xFFFF) | (((lo >> 48) & 0xFFFF) << 16) | ((hi & 0xFFFFFFFF) << 32); }
  unsigned gate_param_count() const { return (lo >> 32) & 0x1F; }  // 32-bit call gates
  unsigned gate_ist() const { return (lo >> 32) & 7; }             // 64-bit interrupt/trap gates

  // The hidden part a segment register receives when loaded with `selector`.
  Segment to_segment(uint16_t selector) const { return {selector, base(), limit(), attr()}; }
};

// A null selector (index 0 in the GDT, any RPL).
constexpr bool is_null_selector(uint16_t selector) { return (selector & 0xFFFC) == 0; }

// True if the 8 (or `bytes`) bytes of `selector`'s descriptor lie within the GDT or LDT limit.
bool descriptor_within_limit(const CpuState& s, uint16_t selector, unsigned bytes = 8);
// Reads `selector`'s descriptor (16 bytes when `wide`); raises `vector` with the selector error
// code (EXT set when `ext`) when it lies beyond the table limit or names an unusable LDT.
Descriptor read_descriptor(Core& core, uint16_t selector, uint8_t vector = GP, bool wide = false,
                           bool ext = false);
// A fault with a selector error code: index and TI of `selector`, EXT in bit 0.
inline Fault selector_fault(uint8_t vector, uint16_t selector, bool ext = false) {
  return {vector, true, static_cast<uint32_t>((selector & 0xFFFC) | (ext ? 1 : 0)), 0};
}
// Sets the accessed bit of a code/data descriptor in memory if it is clear.
void mark_accessed(Core& core, uint16_t selector, Descriptor& d);
// Reads descriptor `vector` of the IDT (16 bytes in IA-32e mode), or raises #GP(vector*8+2+ext).
Descriptor read_idt_gate(Core& core, uint8_t vector, bool ext);

// MOV Sreg / POP Sreg / LDS...: loads a data-segment register or SS with every check of SDM
// vol. 2 (MOV), raising #GP/#SS/#NP with the selector's error code. Not for CS.
void load_segment(Core& core, SegReg reg, uint16_t selector);
// A segment register made unusable by a null selector (DS/ES/FS/GS, or SS in 64-bit mode).
Segment null_segment(uint16_t selector);
// Loads CS for a far transfer that passed its checks: the selector's RPL becomes `cpl`, and so
// does the cached DPL (CpuState derives CPL from it; a conforming segment keeps the caller's CPL).
void load_code_segment(Core& core, uint16_t selector, Descriptor d, unsigned cpl);
// After a return to an outer ring: data segment registers the new CPL may not use become null
// (SDM vol. 2, RET and IRET: "FOR each of segment register (ES, FS, GS, and DS)").
void nullify_inaccessible_data_segments(Core& core);

// Checks a descriptor for SS at privilege `cpl` (stack switches): raises `vector`(selector) on a
// bad selector or type and #SS(selector) when not present. Returns the descriptor.
Descriptor check_stack_segment(Core& core, uint16_t selector, unsigned cpl, uint8_t vector);

// The inner-ring stack of a 32-bit TSS (SS:ESP for privilege `dpl`) and the 64-bit TSS stacks
// (RSPn, ISTn): #TS(TR selector) when the field lies beyond the TSS limit.
void tss32_stack(Core& core, unsigned dpl, uint16_t* ss, uint32_t* esp);
uint64_t tss64_rsp(Core& core, unsigned dpl);
uint64_t tss64_ist(Core& core, unsigned ist);

// LAR/LSL/VERR/VERW: whether the descriptor of `selector` is visible at the current CPL for the
// question asked (SDM vol. 2); false makes the instruction clear ZF.
enum class SelectorQuery : uint8_t { AccessRights, Limit, Readable, Writable };
bool query_selector(Core& core, uint16_t selector, SelectorQuery q, Descriptor* out);

}  // namespace pgsim::isa

// Exceptions raised by instruction semantics (SDM vol. 3, ch. 6).
#pragma once
#include <cstdint>

namespace pgsim::isa {

// Exception vectors.
enum Vector : uint8_t {
  DE = 0,   // divide error
  DB = 1,   // debug
  NMI = 2,  // non-maskable interrupt
  BP = 3,   // breakpoint (INT3)
  OFV = 4,  // overflow (INTO)
  BR = 5,   // BOUND range exceeded
  UD = 6,   // invalid opcode
  NM = 7,   // device not available
  DF_ = 8,  // double fault (underscore: RFLAGS has DF)
  TS = 10,  // invalid TSS
  NP = 11,  // segment not present
  SS_ = 12, // stack-segment fault
  GP = 13,  // general protection
  PF_ = 14, // page fault
  MF = 16,  // x87 floating-point error
  AC_ = 17, // alignment check
  MC = 18,  // machine check
  XM = 19,  // SIMD floating-point
};

// Page-fault error code bits (SDM vol. 3, 4.7).
enum PfErr : uint32_t {
  PFERR_P = 1u << 0,     // the fault was a protection violation (else: not present)
  PFERR_W = 1u << 1,     // the access was a write
  PFERR_U = 1u << 2,     // the access was made at CPL 3
  PFERR_RSVD = 1u << 3,  // a reserved bit was set in a paging structure
  PFERR_I = 1u << 4,     // the access was an instruction fetch
  PFERR_PK = 1u << 5,    // the access violated the protection key of the page (PKRU or IA32_PKRS)
};

// Thrown by instruction semantics; the core catches it at the instruction boundary, restores RIP
// to the faulting instruction and delivers the exception (or hands it to the trap hook).
struct Fault {
  uint8_t vector;
  bool has_error_code = false;
  uint32_t error_code = 0;
  uint64_t cr2 = 0;  // the faulting linear address, for #PF

  static Fault gp(uint32_t err = 0) { return {GP, true, err, 0}; }
  static Fault ud() { return {UD, false, 0, 0}; }
  static Fault pf(uint64_t addr, uint32_t err) { return {PF_, true, err, addr}; }
};

// Exceptions with an error code (SDM vol. 3, table 6-1).
constexpr bool vector_has_error_code(unsigned v) {
  return v == DF_ || v == TS || v == NP || v == SS_ || v == GP || v == PF_ || v == AC_;
}

}  // namespace pgsim::isa

// Shared helpers of the x87 and SSE semantics (isa/fpu/): the availability checks CR0 and CR4
// impose (SDM vol. 3, 2.5 and 13.1; vol. 1, 13.2), XMM operands, wide memory accesses, and the
// host SSE unit run under the guest's MXCSR, which gives IEEE results, exception flags, rounding,
// FTZ and DAZ exactly as the hardware computes them.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <Zydis/Zydis.h>

#include "isa/core.h"
#include "isa/dispatch.h"

namespace pgsim::isa::fpu {

using V = __m128i;

inline Fault device_not_available() { return Fault{NM, false, 0, 0}; }

// SSE and SSE2 instructions, LDMXCSR and STMXCSR: #UD with CR0.EM or without CR4.OSFXSR, then #NM
// with CR0.TS (SDM vol. 2, 2.4: the exception classes of the SSE instructions; vol. 3, 13.1).
inline void require_sse(const Core& c) {
  const CpuState& s = c.state();
  if ((s.cr0 & CR0_EM) || !(s.cr4 & CR4_OSFXSR)) throw Fault::ud();
  if (s.cr0 & CR0_TS) throw device_not_available();
}

// x87 instructions and FXSAVE/FXRSTOR: #NM with CR0.EM or CR0.TS (SDM vol. 3, table 2-2).
inline void require_x87(const Core& c) {
  if (c.state().cr0 & (CR0_EM | CR0_TS)) throw device_not_available();
}

// The XSAVE family and XGETBV/XSETBV: #UD without CR4.OSXSAVE.
inline void require_osxsave(const Core& c) {
  if (!(c.state().cr4 & CR4_OSXSAVE)) throw Fault::ud();
}

inline V to_v(const Xmm& x) {
  V v;
  std::memcpy(&v, &x, sizeof v);
  return v;
}
inline Xmm to_xmm(V v) {
  Xmm x;
  std::memcpy(x.q, &v, sizeof x.q);
  return x;
}
inline Xmm& xmm(Core& c, unsigned r) { return c.state().fpu.xmm[r]; }

// The linear address of a memory operand (segmentation checked for `size` bytes).
inline uint64_t operand_linear(Core& c, const Insn& i, const Operand& o, unsigned size, AccessKind kind) {
  return c.linear_address(static_cast<SegReg>(o.seg), c.effective_address(i, o), size, kind);
}

// #GP(0) unless the memory operand's linear address is a multiple of `alignment` (the 16-byte
// operands of legacy SSE instructions other than the unaligned moves; FXSAVE; XSAVE's 64).
inline void require_aligned(Core& c, const Insn& i, const Operand& o, unsigned size, unsigned alignment) {
  if (operand_linear(c, i, o, size, AccessKind::Read) & (alignment - 1)) throw Fault::gp(0);
}

// Reads `size` bytes (1 to 16) at seg:offset, zero-extended.
inline Xmm read_bytes(Core& c, SegReg s, uint64_t offset, unsigned size) {
  Xmm x;
  if (size == 16) {
    x.q[0] = c.read<uint64_t>(s, offset);
    x.q[1] = c.read<uint64_t>(s, offset + 8);
  } else if (size == 10) {
    x.q[0] = c.read<uint64_t>(s, offset);
    x.q[1] = c.read<uint16_t>(s, offset + 8);
  } else if (size == 8) {
    x.q[0] = c.read<uint64_t>(s, offset);
  } else if (size == 4) {
    x.q[0] = c.read<uint32_t>(s, offset);
  } else if (size == 2) {
    x.q[0] = c.read<uint16_t>(s, offset);
  } else {
    x.q[0] = c.read<uint8_t>(s, offset);
  }
  return x;
}

// Before a multi-part store: translates the last byte's page for writing, so that a fault there
// comes before any part is written (the instruction stays restartable).
inline void probe_write(Core& c, SegReg s, uint64_t offset, unsigned size) {
  const uint64_t lin = c.linear_address(s, offset, size, AccessKind::Write);
  if ((lin & 0xFFF) + size > 0x1000) c.translate(lin + size - 1, AccessKind::Write, AccessOrigin::Instruction);
}

// Writes the low `size` bytes (1 to 16) of `x` at seg:offset.
inline void write_bytes(Core& c, SegReg s, uint64_t offset, const Xmm& x, unsigned size) {
  if (size > 8) probe_write(c, s, offset, size);
  if (size == 16) {
    c.write<uint64_t>(s, offset, x.q[0]);
    c.write<uint64_t>(s, offset + 8, x.q[1]);
  } else if (size == 10) {
    c.write<uint64_t>(s, offset, x.q[0]);
    c.write<uint16_t>(s, offset + 8, static_cast<uint16_t>(x.q[1]));
  } else if (size == 8) {
    c.write<uint64_t>(s, offset, x.q[0]);
  } else if (size == 4) {
    c.write<uint32_t>(s, offset, static_cast<uint32_t>(x.q[0]));
  } else if (size == 2) {
    c.write<uint16_t>(s, offset, static_cast<uint16_t>(x.q[0]));
  } else {
    c.write<uint8_t>(s, offset, static_cast<uint8_t>(x.q[0]));
  }
}

inline Xmm read_operand_memory(Core& c, const Insn& i, const Operand& o, unsigned size) {
  return read_bytes(c, static_cast<SegReg>(o.seg), c.effective_address(i, o), size);
}
inline void write_operand_memory(Core& c, const Insn& i, const Operand& o, const Xmm& x, unsigned size) {
  write_bytes(c, static_cast<SegReg>(o.seg), c.effective_address(i, o), x, size);
}

// Keeps the compiler from moving a computation across the MXCSR switch (it does not model MXCSR
// as an input of SSE arithmetic): values pass through an opaque asm statement after the switch
// and before the flags are read.
template <class T> inline void opaque(T& v) {
  if constexpr (std::is_integral_v<T>) asm volatile("" : "+r"(v));
  else asm volatile("" : "+x"(v));
}

// Folds the exception flags an SSE operation raised into MXCSR; an unmasked one raises #XM (#UD
// without CR4.OSXMMEXCPT) instead, with the destination unchanged (SDM vol. 1, 11.5.1: with an
// unmasked pre-computation exception, invalid, denormal or divide-by-zero, the post-computation
// ones are not reported).
void raise_simd_flags(Core& c, uint32_t raised);

// Runs `op` on the host SSE unit with the guest's rounding control, FTZ and DAZ and every
// exception masked; then raise_simd_flags. `op` makes its inputs opaque before computing.
template <class F> inline auto with_mxcsr(Core& c, F op) {
  const uint32_t guest = c.state().fpu.mxcsr;
  const uint32_t host = _mm_getcsr();
  _mm_setcsr((guest & (MXCSR_RC | MXCSR_FZ | MXCSR_DAZ)) | 0x1F80);
  auto r = op();
  opaque(r);
  const uint32_t raised = _mm_getcsr() & kMxcsrFlags;
  _mm_setcsr(host);
  if (raised) raise_simd_flags(c, raised);
  return r;
}

// x87 status and control words (x87.cpp): ES and B summarize the unmasked exceptions flagged in
// the status word; a loaded control word keeps bits 0-5 and 8-12, with bit 6 read as 1; FNINIT's
// state (SDM vol. 2, FINIT: control word reset, status and pointers cleared, every register empty).
void x87_update_summary(FpuState& f);
uint16_t x87_control_word(uint32_t v);
void x87_reset(FpuState& f);

void register_sse_moves(Dispatch& d);       // sse_move.cpp: MOVAPS ... MOVQ, MOVMSK*, LDMXCSR, STMXCSR
void register_sse_arithmetic(Dispatch& d);  // sse_arith.cpp: floating point, conversions, compares, shuffles
void register_sse_integer(Dispatch& d);     // sse_int.cpp: the SSE2 integer instructions
void register_x87(Dispatch& d);             // x87.cpp: the x87 FPU
void register_xsave(Dispatch& d);           // xsave.cpp: FXSAVE, FXRSTOR, XSAVE, XRSTOR, XSAVEOPT, XGETBV, XSETBV

}  // namespace pgsim::isa::fpu

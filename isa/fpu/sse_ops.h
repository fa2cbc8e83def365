// The generic handlers of the SSE instructions whose destination is an XMM register: the operation
// is a function of the destination, the source (an XMM register, memory zero-extended from the
// operand's size, or an immediate count) and the immediate byte.
#pragma once
#include "isa/fpu/fpu.h"

namespace pgsim::isa::fpu {

using Op = V (*)(V dst, V src, uint8_t imm);

enum OpFlags : unsigned {
  kFp = 1u << 0,         // floating point: runs under the guest's MXCSR (with_mxcsr)
  kUnaligned = 1u << 1,  // a 16-byte memory source need not be aligned (MOVUPS, MOVDQU, ...)
};

// The source operand of an SSE instruction as a vector.
inline V source(Core& c, const Insn& i, const Operand& o, unsigned flags) {
  if (o.kind == OpKind::Xmm) return to_v(xmm(c, o.reg));
  if (o.kind == OpKind::Imm) return _mm_cvtsi64_si128(static_cast<int64_t>(static_cast<uint8_t>(o.value)));
  if (o.size == 16 && !(flags & kUnaligned)) require_aligned(c, i, o, 16, 16);
  return to_v(read_operand_memory(c, i, o, o.size));
}

inline uint8_t immediate(const Insn& i) { return i.num_ops > 2 ? static_cast<uint8_t>(i.op[2].value) : 0; }

// XMM destination = F(destination, source, imm8).
template <Op F, unsigned Flags> void binary(Core& c, const Insn& i) {
  require_sse(c);
  V a = to_v(xmm(c, i.op[0].reg));
  V b = source(c, i, i.op[1], Flags);
  const uint8_t imm = immediate(i);
  V r;
  if constexpr (Flags & kFp) {
    r = with_mxcsr(c, [&] {
      opaque(a);
      opaque(b);
      return F(a, b, imm);
    });
  } else {
    r = F(a, b, imm);
  }
  xmm(c, i.op[0].reg) = to_xmm(r);
}

// Casts between the integer vector and the float and double views of one register.
inline __m128 ps(V v) { return _mm_castsi128_ps(v); }
inline __m128d pd(V v) { return _mm_castsi128_pd(v); }
inline V iv(__m128 v) { return _mm_castps_si128(v); }
inline V iv(__m128d v) { return _mm_castpd_si128(v); }

}  // namespace pgsim::isa::fpu






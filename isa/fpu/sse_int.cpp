// The SSE2 integer instructions on XMM registers (SDM vol. 2): add, subtract, multiply, logic,
// compares, min/max/average, packs and unpacks, shuffles, word insert/extract, byte masks and
// shifts. Integer operations raise no SIMD floating-point exceptions.
#include "isa/fpu/sse_ops.h"

namespace pgsim::isa::fpu {
namespace {

// The integer operations that are one intrinsic each: (mnemonic, intrinsic, class).
#define PGSIM_SSE_INTEGER_OPS(X) \
  X(PADDB, _mm_add_epi8, A) \
  X(PADDW, _mm_add_epi16, A) \
  X(PADDD, _mm_add_epi32, A) \
  X(PADDQ, _mm_add_epi64, A) \
  X(PSUBB, _mm_sub_epi8, A) \
  X(PSUBW, _mm_sub_epi16, A) \
  X(PSUBD, _mm_sub_epi32, A) \
  X(PSUBQ, _mm_sub_epi64, A) \
  X(PADDSB, _mm_adds_epi8, A) \
  X(PADDSW, _mm_adds_epi16, A) \
  X(PADDUSB, _mm_adds_epu8, A) \
  X(PADDUSW, _mm_adds_epu16, A) \
  X(PSUBSB, _mm_subs_epi8, A) \
  X(PSUBSW, _mm_subs_epi16, A) \
  X(PSUBUSB, _mm_subs_epu8, A) \
  X(PSUBUSW, _mm_subs_epu16, A) \
  X(PMULLW, _mm_mullo_epi16, M) \
  X(PMULHW, _mm_mulhi_epi16, M) \
  X(PMULHUW, _mm_mulhi_epu16, M) \
  X(PMULUDQ, _mm_mul_epu32, M) \
  X(PMADDWD, _mm_madd_epi16, M) \
  X(PAND, _mm_and_si128, A) \
  X(PANDN, _mm_andnot_si128, A) \
  X(POR, _mm_or_si128, A) \
  X(PXOR, _mm_xor_si128, A) \
  X(PCMPEQB, _mm_cmpeq_epi8, A) \
  X(PCMPEQW, _mm_cmpeq_epi16, A) \
  X(PCMPEQD, _mm_cmpeq_epi32, A) \
  X(PCMPGTB, _mm_cmpgt_epi8, A) \
  X(PCMPGTW, _mm_cmpgt_epi16, A) \
  X(PCMPGTD, _mm_cmpgt_epi32, A) \
  X(PMINUB, _mm_min_epu8, A) \
  X(PMAXUB, _mm_max_epu8, A) \
  X(PMINSW, _mm_min_epi16, A) \
  X(PMAXSW, _mm_max_epi16, A) \
  X(PAVGB, _mm_avg_epu8, A) \
  X(PAVGW, _mm_avg_epu16, A) \
  X(PSADBW, _mm_sad_epu8, A) \
  X(PACKSSWB, _mm_packs_epi16, A) \
  X(PACKSSDW, _mm_packs_epi32, A) \
  X(PACKUSWB, _mm_packus_epi16, A) \
  X(PUNPCKLBW, _mm_unpacklo_epi8, A) \
  X(PUNPCKHBW, _mm_unpackhi_epi8, A) \
  X(PUNPCKLWD, _mm_unpacklo_epi16, A) \
  X(PUNPCKHWD, _mm_unpackhi_epi16, A) \
  X(PUNPCKLDQ, _mm_unpacklo_epi32, A) \
  X(PUNPCKHDQ, _mm_unpackhi_epi32, A) \
  X(PUNPCKLQDQ, _mm_unpacklo_epi64, A) \
  X(PUNPCKHQDQ, _mm_unpackhi_epi64, A) \
  X(PSLLW, _mm_sll_epi16, A) \
  X(PSLLD, _mm_sll_epi32, A) \
  X(PSLLQ, _mm_sll_epi64, A) \
  X(PSRLW, _mm_srl_epi16, A) \
  X(PSRLD, _mm_srl_epi32, A) \
  X(PSRLQ, _mm_srl_epi64, A) \
  X(PSRAW, _mm_sra_epi16, A) \
  X(PSRAD, _mm_sra_epi32, A)

#define PGSIM_DEFINE(mnemonic, intrinsic, cls) \
  V op_##mnemonic(V a, V b, uint8_t) { return intrinsic(a, b); }
PGSIM_SSE_INTEGER_OPS(PGSIM_DEFINE)
#undef PGSIM_DEFINE

template <class Lane> void lanes_of(V v, Lane* out) { std::memcpy(out, &v, 16); }
template <class Lane> V from_lanes(const Lane* in) {
  V v;
  std::memcpy(&v, in, 16);
  return v;
}

// PSHUFD: each doubleword from the one imm8 selects.
V pshufd(V, V b, uint8_t imm) {
  uint32_t x[4], r[4];
  lanes_of(b, x);
  for (unsigned k = 0; k < 4; ++k) r[k] = x[(imm >> (2 * k)) & 3];
  return from_lanes(r);
}

// PSHUFLW / PSHUFHW: the words of one half shuffled, the other half copied.
template <unsigned Half> V pshufw(V, V b, uint8_t imm) {
  uint16_t x[8], r[8];
  lanes_of(b, x);
  for (unsigned k = 0; k < 8; ++k) r[k] = x[k];
  for (unsigned k = 0; k < 4; ++k) r[4 * Half + k] = x[4 * Half + ((imm >> (2 * k)) & 3)];
  return from_lanes(r);
}

// PSLLDQ / PSRLDQ xmm, imm8: byte shifts of the whole register (a count above 15 clears it); the
// count is the source operand, which source() made a vector.
template <bool Left> V byte_shift(V a, V count, uint8_t) {
  const int imm = static_cast<uint8_t>(_mm_cvtsi128_si32(count));
  uint8_t x[16], r[16] = {};
  lanes_of(a, x);
  for (int k = 0; k < 16; ++k) {
    const int from = Left ? k - imm : k + imm;
    if (from >= 0 && from < 16) r[k] = x[from];
  }
  return from_lanes(r);
}

// PMOVMSKB r32/r64, xmm: the sign bit of each byte.
void pmovmskb(Core& c, const Insn& i) {
  require_sse(c);
  c.set_gpr<uint64_t>(i.op[0].reg, static_cast<uint32_t>(_mm_movemask_epi8(to_v(xmm(c, i.op[1].reg)))));
}

// PEXTRW r32/r64, xmm, imm8: the selected word, zero-extended.
void pextrw(Core& c, const Insn& i) {
  require_sse(c);
  uint16_t x[8];
  lanes_of(to_v(xmm(c, i.op[1].reg)), x);
  c.set_gpr<uint64_t>(i.op[0].reg, x[i.op[2].value & 7]);
}

// PINSRW xmm, r32/m16, imm8: the selected word replaced.
void pinsrw(Core& c, const Insn& i) {
  require_sse(c);
  const Operand& src = i.op[1];
  const uint16_t w = src.kind == OpKind::Mem ? c.read<uint16_t>(static_cast<SegReg>(src.seg), c.effective_address(i, src))
                                             : c.gpr<uint16_t>(src.reg);
  uint16_t x[8];
  lanes_of(to_v(xmm(c, i.op[0].reg)), x);
  x[i.op[2].value & 7] = w;
  xmm(c, i.op[0].reg) = to_xmm(from_lanes(x));
}

}  // namespace

void register_sse_integer(Dispatch& d) {
  constexpr InsnClass A = InsnClass::Alu, M = InsnClass::Mul;
#define PGSIM_REGISTER(mnemonic, intrinsic, cls) d.add(ZYDIS_MNEMONIC_##mnemonic, cls, &binary<&op_##mnemonic, 0>);
  PGSIM_SSE_INTEGER_OPS(PGSIM_REGISTER)
#undef PGSIM_REGISTER
  d.add(ZYDIS_MNEMONIC_PSLLDQ, A, &binary<&byte_shift<true>, 0>);
  d.add(ZYDIS_MNEMONIC_PSRLDQ, A, &binary<&byte_shift<false>, 0>);
  d.add(ZYDIS_MNEMONIC_PSHUFD, A, &binary<&pshufd, 0>);
  d.add(ZYDIS_MNEMONIC_PSHUFLW, A, &binary<&pshufw<0>, 0>);
  d.add(ZYDIS_MNEMONIC_PSHUFHW, A, &binary<&pshufw<1>, 0>);
  d.add(ZYDIS_MNEMONIC_PMOVMSKB, A, &pmovmskb);
  d.add(ZYDIS_MNEMONIC_PEXTRW, A, &pextrw);
  d.add(ZYDIS_MNEMONIC_PINSRW, A, &pinsrw);
}

}  // namespace pgsim::isa::fpu

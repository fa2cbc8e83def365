// SSE/SSE2 floating point (SDM vol. 2): arithmetic, logic, compares, conversions and the
// floating-point shuffles and unpacks, computed by the host SSE unit under the guest's MXCSR.
#include "isa/fpu/sse_ops.h"

namespace pgsim::isa::fpu {

void raise_simd_flags(Core& c, uint32_t raised) {
  uint32_t& mxcsr = c.state().fpu.mxcsr;
  const uint32_t unmasked = raised & ~(mxcsr >> kMxcsrMaskShift) & kMxcsrFlags;
  if (!unmasked) {
    mxcsr |= raised;
    return;
  }
  constexpr uint32_t kPreComputation = MXCSR_IE | MXCSR_DE | MXCSR_ZE;
  if (unmasked & kPreComputation) raised &= kPreComputation;
  mxcsr |= raised;
  if (!(c.state().cr4 & CR4_OSXMMEXCPT)) throw Fault::ud();
  throw Fault{XM, false, 0, 0};
}

namespace {

// CMPPS/CMPPD/CMPSS/CMPSD: the eight predicates of imm8[2:0].
#define PGSIM_CMP(name, suffix, cast)                                            \
  V name(V a, V b, uint8_t imm) {                                                \
    switch (imm & 7) {                                                           \
      case 0: return iv(_mm_cmpeq_##suffix(cast(a), cast(b)));                  \
      case 1: return iv(_mm_cmplt_##suffix(cast(a), cast(b)));                  \
      case 2: return iv(_mm_cmple_##suffix(cast(a), cast(b)));                  \
      case 3: return iv(_mm_cmpunord_##suffix(cast(a), cast(b)));               \
      case 4: return iv(_mm_cmpneq_##suffix(cast(a), cast(b)));                 \
      case 5: return iv(_mm_cmpnlt_##suffix(cast(a), cast(b)));                 \
      case 6: return iv(_mm_cmpnle_##suffix(cast(a), cast(b)));                 \
      default: return iv(_mm_cmpord_##suffix(cast(a), cast(b)));               \
    }                                                                            \
  }
PGSIM_CMP(cmpps, ps, ps)
PGSIM_CMP(cmppd, pd, pd)
PGSIM_CMP(cmpss, ss, ps)
PGSIM_CMP(cmpsd, sd, pd)
#undef PGSIM_CMP

// COMISS/COMISD (signalling on QNaN) and UCOMISS/UCOMISD: ZF, PF, CF from the comparison of the
// low elements; OF, SF and AF cleared.
template <bool Double, bool Signalling> void comis(Core& c, const Insn& i) {
  require_sse(c);
  V a = to_v(xmm(c, i.op[0].reg));
  V b = source(c, i, i.op[1], kFp);
  const uint64_t flags = with_mxcsr(c, [&] {
    opaque(a);
    opaque(b);
    bool z, p, carry;
    if constexpr (Double && Signalling)
      asm volatile("comisd %[b], %[a]" : "=@ccz"(z), "=@ccp"(p), "=@ccc"(carry) : [a] "x"(a), [b] "x"(b));
    else if constexpr (Double)
      asm volatile("ucomisd %[b], %[a]" : "=@ccz"(z), "=@ccp"(p), "=@ccc"(carry) : [a] "x"(a), [b] "x"(b));
    else if constexpr (Signalling)
      asm volatile("comiss %[b], %[a]" : "=@ccz"(z), "=@ccp"(p), "=@ccc"(carry) : [a] "x"(a), [b] "x"(b));
    else
      asm volatile("ucomiss %[b], %[a]" : "=@ccz"(z), "=@ccp"(p), "=@ccc"(carry) : [a] "x"(a), [b] "x"(b));
    return (z ? uint64_t{ZF} : 0) | (p ? uint64_t{PF} : 0) | (carry ? uint64_t{CF} : 0);
  });
  c.set_flags(CF | PF | AF | ZF | SF | OF, flags);
}

// CVTSI2SS/CVTSI2SD xmm, r/m32 or r/m64 (the low element replaced).
template <class Int, bool Double> void cvt_from_int(Core& c, const Insn& i) {
  require_sse(c);
  Int n = c.get<Int>(i, i.op[1]);
  V a = to_v(xmm(c, i.op[0].reg));
  const V r = with_mxcsr(c, [&] {
    opaque(a);
    opaque(n);
    if constexpr (Double && sizeof(Int) == 8) return iv(_mm_cvtsi64_sd(pd(a), static_cast<int64_t>(n)));
    else if constexpr (Double) return iv(_mm_cvtsi32_sd(pd(a), static_cast<int32_t>(n)));
    else if constexpr (sizeof(Int) == 8) return iv(_mm_cvtsi64_ss(ps(a), static_cast<int64_t>(n)));
    else return iv(_mm_cvtsi32_ss(ps(a), static_cast<int32_t>(n)));
  });
  xmm(c, i.op[0].reg) = to_xmm(r);
}

// CVTSS2SI/CVTSD2SI (MXCSR rounding) and CVTTSS2SI/CVTTSD2SI (truncation) to r32 or r64.
template <class Int, bool Double, bool Truncate> void cvt_to_int(Core& c, const Insn& i) {
  require_sse(c);
  V b = source(c, i, i.op[1], kFp);
  const Int r = with_mxcsr(c, [&] {
    opaque(b);
    if constexpr (Double && sizeof(Int) == 8)
      return static_cast<Int>(Truncate ? _mm_cvttsd_si64(pd(b)) : _mm_cvtsd_si64(pd(b)));
    else if constexpr (Double)
      return static_cast<Int>(Truncate ? _mm_cvttsd_si32(pd(b)) : _mm_cvtsd_si32(pd(b)));
    else if constexpr (sizeof(Int) == 8)
      return static_cast<Int>(Truncate ? _mm_cvttss_si64(ps(b)) : _mm_cvtss_si64(ps(b)));
    else
      return static_cast<Int>(Truncate ? _mm_cvttss_si32(ps(b)) : _mm_cvtss_si32(ps(b)));
  });
  c.set_gpr<Int>(i.op[0].reg, r);
}

// MOVMSKPS/MOVMSKPD r32/r64, xmm: the sign bits.
template <bool Double> void movmsk(Core& c, const Insn& i) {
  require_sse(c);
  const V b = to_v(xmm(c, i.op[1].reg));
  c.set_gpr<uint64_t>(i.op[0].reg, static_cast<uint32_t>(Double ? _mm_movemask_pd(pd(b)) : _mm_movemask_ps(ps(b))));
}

V shufps(V a, V b, uint8_t imm) {
  uint32_t x[4], y[4], r[4];
  std::memcpy(x, &a, 16);
  std::memcpy(y, &b, 16);
  r[0] = x[imm & 3];
  r[1] = x[(imm >> 2) & 3];
  r[2] = y[(imm >> 4) & 3];
  r[3] = y[(imm >> 6) & 3];
  V v;
  std::memcpy(&v, r, 16);
  return v;
}

V shufpd(V a, V b, uint8_t imm) {
  uint64_t x[2], y[2], r[2];
  std::memcpy(x, &a, 16);
  std::memcpy(y, &b, 16);
  r[0] = x[imm & 1];
  r[1] = y[(imm >> 1) & 1];
  V v;
  std::memcpy(&v, r, 16);
  return v;
}

// Addition and multiplication in assembly: the compiler treats the intrinsics as commutative and
// may swap the operands, which changes which NaN a result propagates (the first source's).
enum CommutativeInsn { InsnADDPS, InsnADDPD, InsnADDSS, InsnADDSD, InsnMULPS, InsnMULPD, InsnMULSS, InsnMULSD };
template <CommutativeInsn I> V commutative(V a, V b) {
  if constexpr (I == InsnADDPS) asm("addps %[b], %[a]" : [a] "+x"(a) : [b] "x"(b));
  else if constexpr (I == InsnADDPD) asm("addpd %[b], %[a]" : [a] "+x"(a) : [b] "x"(b));
  else if constexpr (I == InsnADDSS) asm("addss %[b], %[a]" : [a] "+x"(a) : [b] "x"(b));
  else if constexpr (I == InsnADDSD) asm("addsd %[b], %[a]" : [a] "+x"(a) : [b] "x"(b));
  else if constexpr (I == InsnMULPS) asm("mulps %[b], %[a]" : [a] "+x"(a) : [b] "x"(b));
  else if constexpr (I == InsnMULPD) asm("mulpd %[b], %[a]" : [a] "+x"(a) : [b] "x"(b));
  else if constexpr (I == InsnMULSS) asm("mulss %[b], %[a]" : [a] "+x"(a) : [b] "x"(b));
  else asm("mulsd %[b], %[a]" : [a] "+x"(a) : [b] "x"(b));
  return a;
}

// The operations registered below, one per intrinsic.
V ps_add_ps(V a, V b, uint8_t) { return commutative<InsnADDPS>(a, b); }
V pd_add_pd(V a, V b, uint8_t) { return commutative<InsnADDPD>(a, b); }
V ps_add_ss(V a, V b, uint8_t) { return commutative<InsnADDSS>(a, b); }
V pd_add_sd(V a, V b, uint8_t) { return commutative<InsnADDSD>(a, b); }
V ps_sub_ps(V a, V b, uint8_t) { return iv(_mm_sub_ps(ps(a), ps(b))); }
V pd_sub_pd(V a, V b, uint8_t) { return iv(_mm_sub_pd(pd(a), pd(b))); }
V ps_sub_ss(V a, V b, uint8_t) { return iv(_mm_sub_ss(ps(a), ps(b))); }
V pd_sub_sd(V a, V b, uint8_t) { return iv(_mm_sub_sd(pd(a), pd(b))); }
V ps_mul_ps(V a, V b, uint8_t) { return commutative<InsnMULPS>(a, b); }
V pd_mul_pd(V a, V b, uint8_t) { return commutative<InsnMULPD>(a, b); }
V ps_mul_ss(V a, V b, uint8_t) { return commutative<InsnMULSS>(a, b); }
V pd_mul_sd(V a, V b, uint8_t) { return commutative<InsnMULSD>(a, b); }
V ps_div_ps(V a, V b, uint8_t) { return iv(_mm_div_ps(ps(a), ps(b))); }
V pd_div_pd(V a, V b, uint8_t) { return iv(_mm_div_pd(pd(a), pd(b))); }
V ps_div_ss(V a, V b, uint8_t) { return iv(_mm_div_ss(ps(a), ps(b))); }
V pd_div_sd(V a, V b, uint8_t) { return iv(_mm_div_sd(pd(a), pd(b))); }
V ps_min_ps(V a, V b, uint8_t) { return iv(_mm_min_ps(ps(a), ps(b))); }
V pd_min_pd(V a, V b, uint8_t) { return iv(_mm_min_pd(pd(a), pd(b))); }
V ps_min_ss(V a, V b, uint8_t) { return iv(_mm_min_ss(ps(a), ps(b))); }
V pd_min_sd(V a, V b, uint8_t) { return iv(_mm_min_sd(pd(a), pd(b))); }
V ps_max_ps(V a, V b, uint8_t) { return iv(_mm_max_ps(ps(a), ps(b))); }
V pd_max_pd(V a, V b, uint8_t) { return iv(_mm_max_pd(pd(a), pd(b))); }
V ps_max_ss(V a, V b, uint8_t) { return iv(_mm_max_ss(ps(a), ps(b))); }
V pd_max_sd(V a, V b, uint8_t) { return iv(_mm_max_sd(pd(a), pd(b))); }
V pd_sqrt_sd(V a, V b, uint8_t) { return iv(_mm_sqrt_sd(pd(a), pd(b))); }
V pi_and_si128(V a, V b, uint8_t) { return _mm_and_si128(a, b); }
V pi_andnot_si128(V a, V b, uint8_t) { return _mm_andnot_si128(a, b); }
V pi_or_si128(V a, V b, uint8_t) { return _mm_or_si128(a, b); }
V pi_xor_si128(V a, V b, uint8_t) { return _mm_xor_si128(a, b); }
V ps_unpacklo_ps(V a, V b, uint8_t) { return iv(_mm_unpacklo_ps(ps(a), ps(b))); }
V ps_unpackhi_ps(V a, V b, uint8_t) { return iv(_mm_unpackhi_ps(ps(a), ps(b))); }
V pd_unpacklo_pd(V a, V b, uint8_t) { return iv(_mm_unpacklo_pd(pd(a), pd(b))); }
V pd_unpackhi_pd(V a, V b, uint8_t) { return iv(_mm_unpackhi_pd(pd(a), pd(b))); }
V lambda_1(V, V b, uint8_t) { return iv(_mm_sqrt_ps(ps(b))); }
V lambda_2(V, V b, uint8_t) { return iv(_mm_sqrt_pd(pd(b))); }
V lambda_3(V a, V b, uint8_t) { return iv(_mm_move_ss(ps(a), _mm_sqrt_ss(ps(b)))); }
V lambda_4(V a, V b, uint8_t) { return iv(_mm_cvtss_sd(pd(a), ps(b))); }
V lambda_5(V a, V b, uint8_t) { return iv(_mm_cvtsd_ss(ps(a), pd(b))); }
V lambda_6(V, V b, uint8_t) { return iv(_mm_cvtps_pd(ps(b))); }
V lambda_7(V, V b, uint8_t) { return iv(_mm_cvtpd_ps(pd(b))); }
V lambda_8(V, V b, uint8_t) { return iv(_mm_cvtepi32_ps(b)); }
V lambda_9(V, V b, uint8_t) { return _mm_cvtps_epi32(ps(b)); }
V lambda_10(V, V b, uint8_t) { return _mm_cvttps_epi32(ps(b)); }
V lambda_11(V, V b, uint8_t) { return iv(_mm_cvtepi32_pd(b)); }
V lambda_12(V, V b, uint8_t) { return _mm_cvtpd_epi32(pd(b)); }
V lambda_13(V, V b, uint8_t) { return _mm_cvttpd_epi32(pd(b)); }

}  // namespace

void register_sse_arithmetic(Dispatch& d) {
  constexpr InsnClass A = InsnClass::Alu, M = InsnClass::Mul, D = InsnClass::Div;
  // Arithmetic.
  d.add(ZYDIS_MNEMONIC_ADDPS, A, &binary<&ps_add_ps, kFp>);
  d.add(ZYDIS_MNEMONIC_ADDPD, A, &binary<&pd_add_pd, kFp>);
  d.add(ZYDIS_MNEMONIC_ADDSS, A, &binary<&ps_add_ss, kFp>);
  d.add(ZYDIS_MNEMONIC_ADDSD, A, &binary<&pd_add_sd, kFp>);
  d.add(ZYDIS_MNEMONIC_SUBPS, A, &binary<&ps_sub_ps, kFp>);
  d.add(ZYDIS_MNEMONIC_SUBPD, A, &binary<&pd_sub_pd, kFp>);
  d.add(ZYDIS_MNEMONIC_SUBSS, A, &binary<&ps_sub_ss, kFp>);
  d.add(ZYDIS_MNEMONIC_SUBSD, A, &binary<&pd_sub_sd, kFp>);
  d.add(ZYDIS_MNEMONIC_MULPS, M, &binary<&ps_mul_ps, kFp>);
  d.add(ZYDIS_MNEMONIC_MULPD, M, &binary<&pd_mul_pd, kFp>);
  d.add(ZYDIS_MNEMONIC_MULSS, M, &binary<&ps_mul_ss, kFp>);
  d.add(ZYDIS_MNEMONIC_MULSD, M, &binary<&pd_mul_sd, kFp>);
  d.add(ZYDIS_MNEMONIC_DIVPS, D, &binary<&ps_div_ps, kFp>);
  d.add(ZYDIS_MNEMONIC_DIVPD, D, &binary<&pd_div_pd, kFp>);
  d.add(ZYDIS_MNEMONIC_DIVSS, D, &binary<&ps_div_ss, kFp>);
  d.add(ZYDIS_MNEMONIC_DIVSD, D, &binary<&pd_div_sd, kFp>);
  d.add(ZYDIS_MNEMONIC_MINPS, A, &binary<&ps_min_ps, kFp>);
  d.add(ZYDIS_MNEMONIC_MINPD, A, &binary<&pd_min_pd, kFp>);
  d.add(ZYDIS_MNEMONIC_MINSS, A, &binary<&ps_min_ss, kFp>);
  d.add(ZYDIS_MNEMONIC_MINSD, A, &binary<&pd_min_sd, kFp>);
  d.add(ZYDIS_MNEMONIC_MAXPS, A, &binary<&ps_max_ps, kFp>);
  d.add(ZYDIS_MNEMONIC_MAXPD, A, &binary<&pd_max_pd, kFp>);
  d.add(ZYDIS_MNEMONIC_MAXSS, A, &binary<&ps_max_ss, kFp>);
  d.add(ZYDIS_MNEMONIC_MAXSD, A, &binary<&pd_max_sd, kFp>);
  d.add(ZYDIS_MNEMONIC_SQRTPS, D, &binary<&lambda_1, kFp>);
  d.add(ZYDIS_MNEMONIC_SQRTPD, D, &binary<&lambda_2, kFp>);
  d.add(ZYDIS_MNEMONIC_SQRTSS, D, &binary<&lambda_3, kFp>);
  d.add(ZYDIS_MNEMONIC_SQRTSD, D, &binary<&pd_sqrt_sd, kFp>);
  // Logic (no floating-point exceptions).
  d.add(ZYDIS_MNEMONIC_ANDPS, A, &binary<&pi_and_si128, 0>);
  d.add(ZYDIS_MNEMONIC_ANDPD, A, &binary<&pi_and_si128, 0>);
  d.add(ZYDIS_MNEMONIC_ANDNPS, A, &binary<&pi_andnot_si128, 0>);
  d.add(ZYDIS_MNEMONIC_ANDNPD, A, &binary<&pi_andnot_si128, 0>);
  d.add(ZYDIS_MNEMONIC_ORPS, A, &binary<&pi_or_si128, 0>);
  d.add(ZYDIS_MNEMONIC_ORPD, A, &binary<&pi_or_si128, 0>);
  d.add(ZYDIS_MNEMONIC_XORPS, A, &binary<&pi_xor_si128, 0>);
  d.add(ZYDIS_MNEMONIC_XORPD, A, &binary<&pi_xor_si128, 0>);
  // Compares.
  d.add(ZYDIS_MNEMONIC_CMPPS, A, &binary<&cmpps, kFp>);
  d.add(ZYDIS_MNEMONIC_CMPPD, A, &binary<&cmppd, kFp>);
  d.add(ZYDIS_MNEMONIC_CMPSS, A, &binary<&cmpss, kFp>);
  d.add(kSseCmpsd, A, &binary<&cmpsd, kFp>);
  d.add(ZYDIS_MNEMONIC_COMISS, A, &comis<false, true>);
  d.add(ZYDIS_MNEMONIC_COMISD, A, &comis<true, true>);
  d.add(ZYDIS_MNEMONIC_UCOMISS, A, &comis<false, false>);
  d.add(ZYDIS_MNEMONIC_UCOMISD, A, &comis<true, false>);
  // Conversions.
  d.add_sized(ZYDIS_MNEMONIC_CVTSI2SS, A, nullptr, nullptr, &cvt_from_int<uint32_t, false>, &cvt_from_int<uint64_t, false>);
  d.add_sized(ZYDIS_MNEMONIC_CVTSI2SD, A, nullptr, nullptr, &cvt_from_int<uint32_t, true>, &cvt_from_int<uint64_t, true>);
  d.add_sized(ZYDIS_MNEMONIC_CVTSS2SI, A, nullptr, nullptr, &cvt_to_int<uint32_t, false, false>, &cvt_to_int<uint64_t, false, false>);
  d.add_sized(ZYDIS_MNEMONIC_CVTSD2SI, A, nullptr, nullptr, &cvt_to_int<uint32_t, true, false>, &cvt_to_int<uint64_t, true, false>);
  d.add_sized(ZYDIS_MNEMONIC_CVTTSS2SI, A, nullptr, nullptr, &cvt_to_int<uint32_t, false, true>, &cvt_to_int<uint64_t, false, true>);
  d.add_sized(ZYDIS_MNEMONIC_CVTTSD2SI, A, nullptr, nullptr, &cvt_to_int<uint32_t, true, true>, &cvt_to_int<uint64_t, true, true>);
  d.add(ZYDIS_MNEMONIC_CVTSS2SD, A, &binary<&lambda_4, kFp>);
  d.add(ZYDIS_MNEMONIC_CVTSD2SS, A, &binary<&lambda_5, kFp>);
  d.add(ZYDIS_MNEMONIC_CVTPS2PD, A, &binary<&lambda_6, kFp>);
  d.add(ZYDIS_MNEMONIC_CVTPD2PS, A, &binary<&lambda_7, kFp>);
  d.add(ZYDIS_MNEMONIC_CVTDQ2PS, A, &binary<&lambda_8, kFp>);
  d.add(ZYDIS_MNEMONIC_CVTPS2DQ, A, &binary<&lambda_9, kFp>);
  d.add(ZYDIS_MNEMONIC_CVTTPS2DQ, A, &binary<&lambda_10, kFp>);
  d.add(ZYDIS_MNEMONIC_CVTDQ2PD, A, &binary<&lambda_11, kFp>);
  d.add(ZYDIS_MNEMONIC_CVTPD2DQ, A, &binary<&lambda_12, kFp>);
  d.add(ZYDIS_MNEMONIC_CVTTPD2DQ, A, &binary<&lambda_13, kFp>);
  // Shuffles, unpacks and sign masks.
  d.add(ZYDIS_MNEMONIC_SHUFPS, A, &binary<&shufps, 0>);
  d.add(ZYDIS_MNEMONIC_SHUFPD, A, &binary<&shufpd, 0>);
  d.add(ZYDIS_MNEMONIC_UNPCKLPS, A, &binary<&ps_unpacklo_ps, 0>);
  d.add(ZYDIS_MNEMONIC_UNPCKHPS, A, &binary<&ps_unpackhi_ps, 0>);
  d.add(ZYDIS_MNEMONIC_UNPCKLPD, A, &binary<&pd_unpacklo_pd, 0>);
  d.add(ZYDIS_MNEMONIC_UNPCKHPD, A, &binary<&pd_unpackhi_pd, 0>);
  d.add(ZYDIS_MNEMONIC_MOVMSKPS, A, &movmsk<false>);
  d.add(ZYDIS_MNEMONIC_MOVMSKPD, A, &movmsk<true>);
}

}  // namespace pgsim::isa::fpu

// SSE/SSE2 data movement (SDM vol. 2): the 128-bit moves, the scalar moves, MOVD/MOVQ, the
// half-register moves, MOVNTI, and LDMXCSR/STMXCSR.
#include "isa/fpu/sse_ops.h"

namespace pgsim::isa::fpu {
namespace {

// MOVAPS/MOVAPD/MOVDQA/MOVNTPS/MOVNTPD/MOVNTDQ (a memory operand aligned on 16 bytes) and
// MOVUPS/MOVUPD/MOVDQU (any alignment).
template <bool Aligned> void mov128(Core& c, const Insn& i) {
  require_sse(c);
  const Operand &dst = i.op[0], &src = i.op[1];
  if (dst.kind == OpKind::Xmm) {
    xmm(c, dst.reg) = to_xmm(source(c, i, src, Aligned ? 0u : unsigned{kUnaligned}));
    return;
  }
  if (Aligned) require_aligned(c, i, dst, 16, 16);
  write_operand_memory(c, i, dst, xmm(c, src.reg), 16);
}

// MOVSS / MOVSD: between registers the low element only; a load zero-extends; a store writes the
// low element.
template <unsigned Size> void mov_scalar(Core& c, const Insn& i) {
  require_sse(c);
  const Operand &dst = i.op[0], &src = i.op[1];
  if (dst.kind == OpKind::Mem) {
    write_operand_memory(c, i, dst, xmm(c, src.reg), Size);
  } else if (src.kind == OpKind::Mem) {
    xmm(c, dst.reg) = read_operand_memory(c, i, src, Size);
  } else {
    Xmm& d = xmm(c, dst.reg);
    const Xmm s = xmm(c, src.reg);
    if (Size == 8) d.q[0] = s.q[0];
    else d.q[0] = (d.q[0] & ~0xFFFFFFFFull) | (s.q[0] & 0xFFFFFFFF);
  }
}

// MOVD / MOVQ: into an XMM register zero-extended from the source (a GPR, memory or the low
// quadword of an XMM register); out of one, its low doubleword or quadword.
void mov_zero_extend(Core& c, const Insn& i) {
  require_sse(c);
  const Operand &dst = i.op[0], &src = i.op[1];
  if (dst.kind == OpKind::Xmm) {
    Xmm x;
    if (src.kind == OpKind::Xmm) x.q[0] = xmm(c, src.reg).q[0];
    else if (src.kind == OpKind::Mem) x = read_operand_memory(c, i, src, src.size);
    else x.q[0] = src.size == 8 ? c.gpr<uint64_t>(src.reg) : c.gpr<uint32_t>(src.reg);
    xmm(c, dst.reg) = x;
    return;
  }
  const uint64_t low = xmm(c, src.reg).q[0];
  if (dst.kind == OpKind::Mem) write_operand_memory(c, i, dst, Xmm{{low, 0}}, dst.size);
  else if (dst.size == 8) c.set_gpr<uint64_t>(dst.reg, low);
  else c.set_gpr<uint32_t>(dst.reg, static_cast<uint32_t>(low));
}

// MOVLPS/MOVLPD (Half 0) and MOVHPS/MOVHPD (Half 1): one quadword between memory and a half of
// the register.
template <unsigned Half> void mov_half(Core& c, const Insn& i) {
  require_sse(c);
  const Operand &dst = i.op[0], &src = i.op[1];
  if (dst.kind == OpKind::Mem) write_operand_memory(c, i, dst, Xmm{{xmm(c, src.reg).q[Half], 0}}, 8);
  else xmm(c, dst.reg).q[Half] = read_operand_memory(c, i, src, 8).q[0];
}

// MOVHLPS: the high quadword of the source into the low one of the destination; MOVLHPS the
// reverse.
template <unsigned From, unsigned To> void mov_between_halves(Core& c, const Insn& i) {
  require_sse(c);
  xmm(c, i.op[0].reg).q[To] = xmm(c, i.op[1].reg).q[From];
}

// MOVNTI m32/m64, r: a store (the non-temporal hint has no effect without a cache model). It uses
// no SSE state, so CR0.TS and CR4.OSFXSR do not apply.
template <class T> void movnti(Core& c, const Insn& i) { c.set<T>(i, i.op[0], c.reg<T>(i.op[1])); }

// LDMXCSR m32: #GP(0) for a reserved bit. STMXCSR m32.
void ldmxcsr(Core& c, const Insn& i) {
  require_sse(c);
  const uint32_t v = c.get<uint32_t>(i, i.op[0]);
  if (v & ~kMxcsrMask) throw Fault::gp(0);
  c.state().fpu.mxcsr = v;
}
void stmxcsr(Core& c, const Insn& i) {
  require_sse(c);
  c.set<uint32_t>(i, i.op[0], c.state().fpu.mxcsr);
}

}  // namespace

void register_sse_moves(Dispatch& d) {
  constexpr InsnClass A = InsnClass::Alu;
  for (unsigned m : {ZYDIS_MNEMONIC_MOVAPS, ZYDIS_MNEMONIC_MOVAPD, ZYDIS_MNEMONIC_MOVDQA, ZYDIS_MNEMONIC_MOVNTPS,
                     ZYDIS_MNEMONIC_MOVNTPD, ZYDIS_MNEMONIC_MOVNTDQ})
    d.add(m, A, &mov128<true>);
  for (unsigned m : {ZYDIS_MNEMONIC_MOVUPS, ZYDIS_MNEMONIC_MOVUPD, ZYDIS_MNEMONIC_MOVDQU}) d.add(m, A, &mov128<false>);
  d.add(ZYDIS_MNEMONIC_MOVSS, A, &mov_scalar<4>);
  d.add(kSseMovsd, A, &mov_scalar<8>);
  d.add(ZYDIS_MNEMONIC_MOVD, A, &mov_zero_extend);
  d.add(ZYDIS_MNEMONIC_MOVQ, A, &mov_zero_extend);
  d.add(ZYDIS_MNEMONIC_MOVLPS, A, &mov_half<0>);
  d.add(ZYDIS_MNEMONIC_MOVLPD, A, &mov_half<0>);
  d.add(ZYDIS_MNEMONIC_MOVHPS, A, &mov_half<1>);
  d.add(ZYDIS_MNEMONIC_MOVHPD, A, &mov_half<1>);
  d.add(ZYDIS_MNEMONIC_MOVHLPS, A, &mov_between_halves<1, 0>);
  d.add(ZYDIS_MNEMONIC_MOVLHPS, A, &mov_between_halves<0, 1>);
  d.add_sized(ZYDIS_MNEMONIC_MOVNTI, InsnClass::Store, nullptr, nullptr, &movnti<uint32_t>, &movnti<uint64_t>);
  d.add(ZYDIS_MNEMONIC_LDMXCSR, InsnClass::Load, &ldmxcsr);
  d.add(ZYDIS_MNEMONIC_STMXCSR, InsnClass::Store, &stmxcsr);
}

}  // namespace pgsim::isa::fpu

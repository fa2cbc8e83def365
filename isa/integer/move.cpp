// MOV, MOVZX, MOVSX, MOVSXD, LEA, XCHG, XADD, CMPXCHG, CMPXCHG8B/16B, CMOVcc, SETcc, CBW/CWDE/CDQE,
// CWD/CDQ/CQO, XLAT (SDM vol. 2).
#include "isa/integer/semantics.h"

namespace pgsim::isa::integer {
namespace {

// MOV: loads and stores raise their page faults (Core::load, Core::store), which demand paging and
// copy-on-write take on them, without unwinding.
template <class T, class F = AnyForm> void mov(Core& c, const Insn& i) {
  if constexpr (F::op0 == OpKind::Reg && F::op1 == OpKind::Mem) {
    T v;
    if (c.load<T>(i, i.op[1], &v)) c.set_reg<T>(i.op[0], v);
  } else if constexpr (F::op0 == OpKind::Mem) {
    c.store<T>(i, i.op[0], c.get<T, F::op1>(i, i.op[1]));
  } else {
    c.set<T, F::op0>(i, i.op[0], c.get<T, F::op1>(i, i.op[1]));
  }
}

template <class T> void movzx(Core& c, const Insn& i) {
  c.set_reg<T>(i.op[0], static_cast<T>(get_sized(c, i, i.op[1])));
}

// MOVSX and MOVSXD (a MOVSXD without REX.W moves 32 bits: sign extension to the operand size).
template <class T> void movsx(Core& c, const Insn& i) {
  c.set_reg<T>(i.op[0], static_cast<T>(sign_extend(get_sized(c, i, i.op[1]), i.op[1].size)));
}

// LEA: the effective address, computed with the address size, truncated to the operand size.
template <class T> void lea(Core& c, const Insn& i) {
  c.set_reg<T>(i.op[0], static_cast<T>(c.effective_address(i, i.op[1])));
}

// XCHG: the memory operand (if any) is written first, so a fault changes no register.
template <class T> void xchg(Core& c, const Insn& i) {
  const T a = c.get<T>(i, i.op[0]), b = c.get<T>(i, i.op[1]);
  if (i.op[1].kind == OpKind::Mem) {
    c.set<T>(i, i.op[1], a);
    c.set<T>(i, i.op[0], b);
  } else {
    c.set<T>(i, i.op[0], b);
    c.set<T>(i, i.op[1], a);
  }
}

template <class T> void xadd(Core& c, const Insn& i) {
  const T a = c.get<T>(i, i.op[0]), b = c.get<T>(i, i.op[1]);
  const T r = a + b;
  c.set<T>(i, i.op[0], r);
  c.set_reg<T>(i.op[1], a);
  c.set_flags_add<T>(a, b, r);
}

// CMPXCHG: compare the accumulator with the destination; equal: destination = source, else
// accumulator = destination (a memory destination is written back either way).
template <class T> void cmpxchg(Core& c, const Insn& i) {
  const T acc = c.gpr<T>(RAX);
  const T d = c.get<T>(i, i.op[0]);
  if (acc == d) {
    c.set<T>(i, i.op[0], c.reg<T>(i.op[1]));
  } else {
    if (i.op[0].kind == OpKind::Mem) c.set<T>(i, i.op[0], d);
    c.set_gpr<T>(RAX, d);
  }
  c.set_flags_sub<T>(acc, d, static_cast<T>(acc - d));
}

// CMPXCHG8B m64 / CMPXCHG16B m128 (16-byte aligned, else #GP(0)); only ZF changes.
void cmpxchg_double(Core& c, const Insn& i) {
  const Operand& m = i.op[0];
  const SegReg seg = static_cast<SegReg>(m.seg);
  const uint64_t ea = c.effective_address(i, m);
  if (m.size == 16) {
    if (ea & 15) throw Fault::gp(0);
    const uint64_t lo = c.read<uint64_t>(seg, ea), hi = c.read<uint64_t>(seg, ea + 8);
    const bool equal = lo == c.gpr<uint64_t>(RAX) && hi == c.gpr<uint64_t>(RDX);
    if (equal) {
      c.write<uint64_t>(seg, ea, c.gpr<uint64_t>(RBX));
      c.write<uint64_t>(seg, ea + 8, c.gpr<uint64_t>(RCX));
    } else {
      c.write<uint64_t>(seg, ea, lo);
      c.write<uint64_t>(seg, ea + 8, hi);
      c.set_gpr<uint64_t>(RAX, lo);
      c.set_gpr<uint64_t>(RDX, hi);
    }
    c.set_flags(ZF, equal ? uint64_t{ZF} : 0);
    return;
  }
  const uint64_t v = c.read<uint64_t>(seg, ea);
  const uint64_t expected = uint64_t{c.gpr<uint32_t>(RDX)} << 32 | c.gpr<uint32_t>(RAX);
  const bool equal = v == expected;
  if (equal) {
    c.write<uint64_t>(seg, ea, uint64_t{c.gpr<uint32_t>(RCX)} << 32 | c.gpr<uint32_t>(RBX));
  } else {
    c.write<uint64_t>(seg, ea, v);
    c.set_gpr<uint32_t>(RAX, static_cast<uint32_t>(v));
    c.set_gpr<uint32_t>(RDX, static_cast<uint32_t>(v >> 32));
  }
  c.set_flags(ZF, equal ? uint64_t{ZF} : 0);
}

// CMOVcc: the source is read (and may fault) whatever the condition; a 32-bit destination is
// zero-extended even when the condition is false (SDM vol. 2, "CMOVcc", 64-bit mode).
template <class T> void cmovcc(Core& c, const Insn& i) {
  const T src = c.get<T>(i, i.op[1]);
  if (c.condition(i.condition)) c.set_reg<T>(i.op[0], src);
  else if constexpr (sizeof(T) == 4) c.set_reg<T>(i.op[0], c.reg<T>(i.op[0]));
}

void setcc(Core& c, const Insn& i) { c.set<uint8_t>(i, i.op[0], c.condition(i.condition) ? 1 : 0); }

// CBW / CWDE / CDQE: sign-extend the lower half of the accumulator into all of it.
template <class T> void sign_extend_accumulator(Core& c, const Insn&) {
  c.set_gpr<T>(RAX, static_cast<T>(sign_extend(c.gpr<uint64_t>(RAX), sizeof(T) / 2)));
}

// CWD / CDQ / CQO: rDX = the sign of rAX.
template <class T> void sign_to_rdx(Core& c, const Insn&) {
  c.set_gpr<T>(RDX, msb<T>(c.gpr<T>(RAX)) ? static_cast<T>(~T(0)) : T(0));
}

// XLAT: AL = [seg:rBX + AL].
void xlat(Core& c, const Insn& i) {
  const uint64_t ea = (c.gpr<uint64_t>(RBX) + c.gpr<uint8_t>(RAX)) & Core::size_mask(i.addrsize);
  c.set_gpr<uint8_t>(RAX, c.read<uint8_t>(static_cast<SegReg>(i.string_seg), ea));
}

}  // namespace

void register_data_movement(Dispatch& d) {
  d.add_sized(ZYDIS_MNEMONIC_MOV, InsnClass::Alu, PGSIM_SIZED(mov));
  d.add_forms(ZYDIS_MNEMONIC_MOV, PGSIM_FORMS(mov));
  d.add_sized(ZYDIS_MNEMONIC_MOVZX, InsnClass::Alu, nullptr, &movzx<uint16_t>, &movzx<uint32_t>, &movzx<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_MOVSX, InsnClass::Alu, nullptr, &movsx<uint16_t>, &movsx<uint32_t>, &movsx<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_MOVSXD, InsnClass::Alu, nullptr, &movsx<uint16_t>, &movsx<uint32_t>, &movsx<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_LEA, InsnClass::Alu, nullptr, &lea<uint16_t>, &lea<uint32_t>, &lea<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_XCHG, InsnClass::Alu, PGSIM_SIZED(xchg));
  d.add_sized(ZYDIS_MNEMONIC_XADD, InsnClass::Alu, PGSIM_SIZED(xadd));
  d.add_sized(ZYDIS_MNEMONIC_CMPXCHG, InsnClass::Alu, PGSIM_SIZED(cmpxchg));
  d.add(ZYDIS_MNEMONIC_CMPXCHG8B, InsnClass::Rmw, &cmpxchg_double);
  d.add(ZYDIS_MNEMONIC_CMPXCHG16B, InsnClass::Rmw, &cmpxchg_double);
  for (unsigned m : {ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVNO, ZYDIS_MNEMONIC_CMOVB, ZYDIS_MNEMONIC_CMOVNB,
                     ZYDIS_MNEMONIC_CMOVZ, ZYDIS_MNEMONIC_CMOVNZ, ZYDIS_MNEMONIC_CMOVBE, ZYDIS_MNEMONIC_CMOVNBE,
                     ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVNS, ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVNP,
                     ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVNL, ZYDIS_MNEMONIC_CMOVLE, ZYDIS_MNEMONIC_CMOVNLE})
    d.add_sized(m, InsnClass::Alu, nullptr, &cmovcc<uint16_t>, &cmovcc<uint32_t>, &cmovcc<uint64_t>);
  for (unsigned m : {ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETNO, ZYDIS_MNEMONIC_SETB, ZYDIS_MNEMONIC_SETNB,
                     ZYDIS_MNEMONIC_SETZ, ZYDIS_MNEMONIC_SETNZ, ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETNBE,
                     ZYDIS_MNEMONIC_SETS, ZYDIS_MNEMONIC_SETNS, ZYDIS_MNEMONIC_SETP, ZYDIS_MNEMONIC_SETNP,
                     ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETNL, ZYDIS_MNEMONIC_SETLE, ZYDIS_MNEMONIC_SETNLE})
    d.add(m, InsnClass::Alu, &setcc);
  d.add(ZYDIS_MNEMONIC_CBW, InsnClass::Alu, &sign_extend_accumulator<uint16_t>);
  d.add(ZYDIS_MNEMONIC_CWDE, InsnClass::Alu, &sign_extend_accumulator<uint32_t>);
  d.add(ZYDIS_MNEMONIC_CDQE, InsnClass::Alu, &sign_extend_accumulator<uint64_t>);
  d.add(ZYDIS_MNEMONIC_CWD, InsnClass::Alu, &sign_to_rdx<uint16_t>);
  d.add(ZYDIS_MNEMONIC_CDQ, InsnClass::Alu, &sign_to_rdx<uint32_t>);
  d.add(ZYDIS_MNEMONIC_CQO, InsnClass::Alu, &sign_to_rdx<uint64_t>);
  d.add(ZYDIS_MNEMONIC_XLAT, InsnClass::Load, &xlat);
}

}  // namespace pgsim::isa::integer

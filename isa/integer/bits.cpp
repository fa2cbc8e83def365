// BT, BTS, BTR, BTC, BSF, BSR, TZCNT, LZCNT, POPCNT, BSWAP (SDM vol. 2).
#include "isa/integer/semantics.h"

namespace pgsim::isa::integer {
namespace {

enum class BitOp { Test, Set, Reset, Complement };

// BT*: CF = the selected bit; OF, SF, AF, PF undefined and ZF unchanged (left as they are).
// With a register bit offset and a memory base the offset is signed and selects any bit relative
// to the operand address (SDM vol. 2, "BT", bit-string addressing).
template <class T, BitOp kOp> void bit_op(Core& c, const Insn& i) {
  const Operand& base = i.op[0];
  const Operand& offset = i.op[1];
  T value;
  unsigned bit;
  uint64_t address = 0;
  if (base.kind == OpKind::Mem && offset.kind == OpKind::Reg) {
    const int64_t off = static_cast<Signed<T>>(c.reg<T>(offset));
    const int64_t element = off >> (sizeof(T) == 8 ? 6 : sizeof(T) == 4 ? 5 : 4);  // floor division
    address = (c.effective_address(i, base) + static_cast<uint64_t>(element) * sizeof(T)) & Core::size_mask(i.addrsize);
    value = c.read<T>(static_cast<SegReg>(base.seg), address);
    bit = static_cast<unsigned>(off) & (kBits<T> - 1);
  } else {
    value = c.get<T>(i, base);
    bit = static_cast<unsigned>(c.get<T>(i, offset)) & (kBits<T> - 1);
  }
  const T mask = static_cast<T>(T(1) << bit);
  const bool cf = value & mask;
  if constexpr (kOp != BitOp::Test) {
    const T r = kOp == BitOp::Set ? static_cast<T>(value | mask)
              : kOp == BitOp::Reset ? static_cast<T>(value & ~mask) : static_cast<T>(value ^ mask);
    if (base.kind == OpKind::Mem && offset.kind == OpKind::Reg)
      c.write<T>(static_cast<SegReg>(base.seg), address, r);
    else
      c.set<T>(i, base, r);
  }
  c.set_flags(CF, cf ? uint64_t{CF} : 0);
}

// BSF/BSR: ZF = (source == 0), and then the destination is left unchanged; CF, OF, SF, AF, PF
// undefined (unchanged).
template <class T> void bsf(Core& c, const Insn& i) {
  const T src = c.get<T>(i, i.op[1]);
  if (src == 0) {
    c.set_flags(ZF, ZF);
    return;
  }
  c.set<T>(i, i.op[0], static_cast<T>(__builtin_ctzll(src)));
  c.set_flags(ZF, 0);
}

template <class T> void bsr(Core& c, const Insn& i) {
  const T src = c.get<T>(i, i.op[1]);
  if (src == 0) {
    c.set_flags(ZF, ZF);
    return;
  }
  c.set<T>(i, i.op[0], static_cast<T>(63 - __builtin_clzll(src)));
  c.set_flags(ZF, 0);
}

// TZCNT/LZCNT: CF = (source == 0), ZF = (result == 0); OF, SF, AF, PF undefined (unchanged).
template <class T> void tzcnt(Core& c, const Insn& i) {
  const T src = c.get<T>(i, i.op[1]);
  const T r = src ? static_cast<T>(__builtin_ctzll(src)) : static_cast<T>(kBits<T>);
  c.set<T>(i, i.op[0], r);
  c.set_flags(CF | ZF, (src == 0 ? uint64_t{CF} : 0) | (r == 0 ? uint64_t{ZF} : 0));
}

template <class T> void lzcnt(Core& c, const Insn& i) {
  const T src = c.get<T>(i, i.op[1]);
  const T r = src ? static_cast<T>(__builtin_clzll(src) - (64 - kBits<T>)) : static_cast<T>(kBits<T>);
  c.set<T>(i, i.op[0], r);
  c.set_flags(CF | ZF, (src == 0 ? uint64_t{CF} : 0) | (r == 0 ? uint64_t{ZF} : 0));
}

// POPCNT: ZF = (source == 0); OF, SF, AF, CF, PF cleared.
template <class T> void popcnt(Core& c, const Insn& i) {
  const T src = c.get<T>(i, i.op[1]);
  c.set<T>(i, i.op[0], static_cast<T>(__builtin_popcountll(src)));
  c.set_flags(kStatusFlags, src == 0 ? uint64_t{ZF} : 0);
}

// BSWAP of a 32- or 64-bit register (the 16-bit form is undefined and not modeled).
template <class T> void bswap(Core& c, const Insn& i) {
  const T v = c.reg<T>(i.op[0]);
  if constexpr (sizeof(T) == 4) c.set_reg<T>(i.op[0], __builtin_bswap32(v));
  else c.set_reg<T>(i.op[0], __builtin_bswap64(v));
}

}  // namespace

void register_bits(Dispatch& d) {
  d.add_sized(ZYDIS_MNEMONIC_BT, InsnClass::Alu, nullptr, &bit_op<uint16_t, BitOp::Test>,
              &bit_op<uint32_t, BitOp::Test>, &bit_op<uint64_t, BitOp::Test>);
  d.add_sized(ZYDIS_MNEMONIC_BTS, InsnClass::Alu, nullptr, &bit_op<uint16_t, BitOp::Set>,
              &bit_op<uint32_t, BitOp::Set>, &bit_op<uint64_t, BitOp::Set>);
  d.add_sized(ZYDIS_MNEMONIC_BTR, InsnClass::Alu, nullptr, &bit_op<uint16_t, BitOp::Reset>,
              &bit_op<uint32_t, BitOp::Reset>, &bit_op<uint64_t, BitOp::Reset>);
  d.add_sized(ZYDIS_MNEMONIC_BTC, InsnClass::Alu, nullptr, &bit_op<uint16_t, BitOp::Complement>,
              &bit_op<uint32_t, BitOp::Complement>, &bit_op<uint64_t, BitOp::Complement>);
  d.add_sized(ZYDIS_MNEMONIC_BSF, InsnClass::Alu, nullptr, &bsf<uint16_t>, &bsf<uint32_t>, &bsf<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_BSR, InsnClass::Alu, nullptr, &bsr<uint16_t>, &bsr<uint32_t>, &bsr<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_TZCNT, InsnClass::Alu, nullptr, &tzcnt<uint16_t>, &tzcnt<uint32_t>, &tzcnt<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_LZCNT, InsnClass::Alu, nullptr, &lzcnt<uint16_t>, &lzcnt<uint32_t>, &lzcnt<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_POPCNT, InsnClass::Alu, nullptr, &popcnt<uint16_t>, &popcnt<uint32_t>, &popcnt<uint64_t>);
  d.add_sized(ZYDIS_MNEMONIC_BSWAP, InsnClass::Alu, nullptr, nullptr, &bswap<uint32_t>, &bswap<uint64_t>);
}

}  // namespace pgsim::isa::integer

// Flag instructions (CLC, STC, CMC, CLD, STD, LAHF, SAHF), NOP forms, PAUSE, fences, CLFLUSH and
// UD2 (SDM vol. 2). CLI/STI/PUSHF/POPF are system instructions (isa/system/).
#include "isa/integer/semantics.h"

namespace pgsim::isa::integer {
namespace {

void clc(Core& c, const Insn&) { c.set_flags(CF, 0); }
void stc(Core& c, const Insn&) { c.set_flags(CF, CF); }
void cmc(Core& c, const Insn&) { c.set_flags(CF, c.state().rflags ^ CF); }
void cld(Core& c, const Insn&) { c.set_flags(DF, 0); }
void std_(Core& c, const Insn&) { c.set_flags(DF, DF); }

// LAHF: AH = SF:ZF:0:AF:0:PF:1:CF.  SAHF: those five flags from AH.
constexpr uint64_t kLahfFlags = SF | ZF | AF | PF | CF;
void lahf(Core& c, const Insn&) {
  c.set_gpr<uint16_t>(RAX, static_cast<uint16_t>(((c.state().rflags & kLahfFlags) | RF1) << 8 | c.gpr<uint8_t>(RAX)));
}
void sahf(Core& c, const Insn&) { c.set_flags(kLahfFlags, c.gpr<uint16_t>(RAX) >> 8); }

// NOP, multi-byte NOP, ENDBR, PREFETCH hints and fences: no architectural effect here.
void nop(Core&, const Insn&) {}

// CLFLUSH / CLFLUSHOPT: no cache is modeled, but the address is checked like a byte read.
void clflush(Core& c, const Insn& i) {
  const Operand& m = i.op[0];
  const uint64_t lin = c.linear_address(static_cast<SegReg>(m.seg), c.effective_address(i, m), 1, AccessKind::Read);
  c.translate(lin, AccessKind::Read, AccessOrigin::Instruction);
}

void ud2(Core&, const Insn&) { throw Fault::ud(); }

}  // namespace

void register_misc(Dispatch& d) {
  d.add(ZYDIS_MNEMONIC_CLC, InsnClass::Alu, &clc);
  d.add(ZYDIS_MNEMONIC_STC, InsnClass::Alu, &stc);
  d.add(ZYDIS_MNEMONIC_CMC, InsnClass::Alu, &cmc);
  d.add(ZYDIS_MNEMONIC_CLD, InsnClass::Alu, &cld);
  d.add(ZYDIS_MNEMONIC_STD, InsnClass::Alu, &std_);
  d.add(ZYDIS_MNEMONIC_LAHF, InsnClass::Alu, &lahf);
  d.add(ZYDIS_MNEMONIC_SAHF, InsnClass::Alu, &sahf);
  for (unsigned m : {ZYDIS_MNEMONIC_NOP, ZYDIS_MNEMONIC_ENDBR32, ZYDIS_MNEMONIC_ENDBR64, ZYDIS_MNEMONIC_PREFETCH,
                     ZYDIS_MNEMONIC_PREFETCHNTA, ZYDIS_MNEMONIC_PREFETCHT0, ZYDIS_MNEMONIC_PREFETCHT1,
                     ZYDIS_MNEMONIC_PREFETCHT2, ZYDIS_MNEMONIC_PREFETCHW})
    d.add(m, InsnClass::Nop, &nop);
  for (unsigned m : {ZYDIS_MNEMONIC_PAUSE, ZYDIS_MNEMONIC_LFENCE, ZYDIS_MNEMONIC_SFENCE, ZYDIS_MNEMONIC_MFENCE})
    d.add(m, InsnClass::Fence, &nop);
  d.add(ZYDIS_MNEMONIC_CLFLUSH, InsnClass::Fence, &clflush);
  d.add(ZYDIS_MNEMONIC_CLFLUSHOPT, InsnClass::Fence, &clflush);
  d.add(ZYDIS_MNEMONIC_UD2, InsnClass::Alu, &ud2);
}

}  // namespace pgsim::isa::integer

namespace pgsim::isa {

void register_integer_instructions(Dispatch& d) {
  integer::register_arithmetic(d);
  integer::register_multiply(d);
  integer::register_shift(d);
  integer::register_bits(d);
  integer::register_data_movement(d);
  integer::register_stack(d);
  integer::register_branch(d);
  integer::register_string(d);
  integer::register_misc(d);
  integer::register_legacy(d);
}

}  // namespace pgsim::isa

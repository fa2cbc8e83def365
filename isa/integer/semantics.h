// Shared helpers of the integer instruction semantics: flag computation (SDM vol. 1, 3.4.3 and
// appendix A) and the per-file registration functions.
#pragma once
#include <cstdint>
#include <limits>
#include <type_traits>

#include <Zydis/Zydis.h>

#include "isa/core.h"
#include "isa/dispatch.h"

namespace pgsim::isa::integer {

template <class T> constexpr unsigned kBits = sizeof(T) * 8;
template <class T> using Signed = std::make_signed_t<T>;

// The most significant bit of `v` as 0 or 1.
template <class T> constexpr bool msb(T v) { return (v >> (kBits<T> - 1)) & 1; }

// Registers a function template for the four operand sizes.
#define PGSIM_SIZED(fn) &fn<uint8_t>, &fn<uint16_t>, &fn<uint32_t>, &fn<uint64_t>
// Registers a function template fn<T, F> for every operand form (Dispatch::add_forms) and size.
#define PGSIM_FORM(fn, k0, k1)                                                          \
  std::array<Handler, 4> {                                                              \
    &fn<uint8_t, Form<OpKind::k0, OpKind::k1>>, &fn<uint16_t, Form<OpKind::k0, OpKind::k1>>, \
        &fn<uint32_t, Form<OpKind::k0, OpKind::k1>>, &fn<uint64_t, Form<OpKind::k0, OpKind::k1>> \
  }
#define PGSIM_FORMS(fn)                                                                     \
  FormHandlers {                                                                            \
    PGSIM_FORM(fn, Reg, Reg), PGSIM_FORM(fn, Reg, Imm), PGSIM_FORM(fn, Reg, Mem), PGSIM_FORM(fn, Mem, Reg), \
        PGSIM_FORM(fn, Mem, Imm)                                                            \
  }
// The one-operand forms of fn<T, F>: a register or memory operand (F::op1 is unused), and an
// immediate for the instructions that take one (PUSH).
inline FormHandlers unary_forms(const std::array<Handler, 4>& reg, const std::array<Handler, 4>& mem,
                                const std::array<Handler, 4>& imm = {}) {
  FormHandlers forms{};
  forms[static_cast<unsigned>(OperandForm::Reg)] = reg;
  forms[static_cast<unsigned>(OperandForm::Mem)] = mem;
  forms[static_cast<unsigned>(OperandForm::Imm)] = imm;
  return forms;
}
#define PGSIM_UNARY_FORMS(fn) unary_forms(PGSIM_FORM(fn, Reg, None), PGSIM_FORM(fn, Mem, None))

void register_arithmetic(Dispatch& d);   // arithmetic.cpp: ADD ... CMP, INC, DEC, NEG, NOT, TEST, logic
void register_multiply(Dispatch& d);     // multiply.cpp: MUL, IMUL, DIV, IDIV
void register_shift(Dispatch& d);        // shift.cpp: SHL (= SAL), SHR, SAR, ROL, ROR, RCL, RCR, SHLD, SHRD
void register_bits(Dispatch& d);         // bits.cpp: BT*, BSF, BSR, TZCNT, LZCNT, POPCNT, BSWAP
void register_data_movement(Dispatch& d);  // move.cpp: MOV*, LEA, XCHG, CMPXCHG*, XADD, CMOVcc, SETcc, CBW...
void register_stack(Dispatch& d);        // stack.cpp: PUSH, POP, ENTER, LEAVE
void register_branch(Dispatch& d);       // branch.cpp: JMP, Jcc, CALL, RET, LOOP*, JrCXZ
void register_string(Dispatch& d);       // string.cpp: MOVS, STOS, LODS, CMPS, SCAS
void register_misc(Dispatch& d);         // misc.cpp: flag instructions, NOPs, fences, CLFLUSH, UD2
void register_legacy(Dispatch& d);       // legacy.cpp: PUSHA, POPA, DAA, DAS, AAA, AAS, AAM, AAD, SALC, BOUND

}  // namespace pgsim::isa::integer

namespace pgsim::isa::integer {

// Reads a Reg/Mem/Imm operand of the operand's own size, zero-extended.
inline uint64_t get_sized(Core& c, const Insn& i, const Operand& o) {
  switch (o.size) {
    case 1: return c.get<uint8_t>(i, o);
    case 2: return c.get<uint16_t>(i, o);
    case 4: return c.get<uint32_t>(i, o);
    default: return c.get<uint64_t>(i, o);
  }
}

// Sign-extends the low `size` bytes of `v` to 64 bits.
inline uint64_t sign_extend(uint64_t v, unsigned size) {
  const unsigned shift = 64 - 8 * size;
  return static_cast<uint64_t>(static_cast<int64_t>(v << shift) >> shift);
}

}  // namespace pgsim::isa::integer

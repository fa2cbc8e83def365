// The table from decoded mnemonic (and operand size) to semantics. Each file of semantics
// registers its instructions through one register_*() function; the decoder consults the table
// once per decoded instruction, so execution never searches it.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "isa/insn.h"
#include "isa/system/profile.h"

namespace pgsim::isa {

// Forms that share a Zydis mnemonic with an ordinary instruction but are system instructions; the
// decoder dispatches them under these keys instead of the mnemonic (Insn::mnemonic stays Zydis').
enum SpecialForm : unsigned {
  kMovToSreg = 4000,  // MOV Sreg, r/m16
  kMovFromSreg,       // MOV r/m, Sreg
  kMovToCr,           // MOV CRn, r
  kMovFromCr,         // MOV r, CRn
  kMovToDr,           // MOV DRn, r
  kMovFromDr,         // MOV r, DRn
  kPushSreg,          // PUSH ES/CS/SS/DS/FS/GS
  kPopSreg,           // POP ES/SS/DS/FS/GS
  kJmpFar,            // JMP ptr16:16/32 or JMP m16:16/32/64
  kCallFar,           // CALL ptr16:16/32 or CALL m16:16/32/64
  kRetFar,            // RETF / RETF imm16
  kSseMovsd,          // MOVSD xmm, xmm/m64 (SSE2; the string MOVSD keeps the mnemonic)
  kSseCmpsd,          // CMPSD xmm, xmm/m64, imm8 (SSE2; the string CMPSD keeps the mnemonic)
  kSpecialFormEnd,
};

// What a registration says of an instruction beyond its semantics: its InsnTrait flags and the
// sensitive instruction whose profile rule its semantics apply. The decoder copies both into every
// Insn it decodes, which is how a VMM knows, without reading guest code, what it must watch.
struct InsnTraits {
  uint8_t flags = 0;                  // InsnTrait
  uint8_t sensitive = kNotSensitive;  // a SensitiveInsn, or kNotSensitive
};
constexpr InsnTraits traits(uint8_t flags) { return {flags, kNotSensitive}; }
constexpr InsnTraits sensitive(SensitiveInsn insn, uint8_t flags = 0) {
  return {flags, static_cast<uint8_t>(insn)};
}

// The operand forms of one- and two-operand instructions that a handler may be specialized for at
// decode (the kinds of op[0] and op[1]; see Form in isa/insn.h). The hot integer instructions
// register one instantiation per form and size, so that executing them tests no operand kind.
enum class OperandForm : uint8_t {
  RegReg, RegImm, RegMem, MemReg, MemImm,  // two operands
  Reg, Mem, Imm,                           // one operand
  kCount
};
constexpr unsigned kNumOperandForms = static_cast<unsigned>(OperandForm::kCount);
// Handlers by form (OperandForm order), then by operand size (1, 2, 4, 8 bytes).
using FormHandlers = std::array<std::array<Handler, 4>, kNumOperandForms>;

class Dispatch {
 public:
  // What is registered for one mnemonic.
  struct Entry {
    std::array<Handler, 4> by_size{};  // handlers for operand sizes 1, 2, 4, 8 bytes
    InsnClass cls = InsnClass::Unimplemented;  // the class, unless the decoder refines it
    InsnTraits traits;
    FormHandlers by_form{};  // specialized handlers (add_forms), or none
  };

  // The one table every core uses: built on first use from every register_*() function.
  static const Dispatch& instance();

  // Registers `handler` for every operand size of `mnemonic` (a ZydisMnemonic or a SpecialForm).
  void add(unsigned mnemonic, InsnClass cls, Handler handler, InsnTraits traits = {});
  // Registers one handler per operand size (1, 2, 4, 8 bytes; nullptr: that size is not valid).
  void add_sized(unsigned mnemonic, InsnClass cls, Handler h8, Handler h16, Handler h32, Handler h64,
                 InsnTraits traits = {});
  // The handler for `mnemonic` at `opsize` bytes, or nullptr when none is registered; `cls` and
  // `traits` (when not null) receive what the registration says.
  Handler find(unsigned mnemonic, unsigned opsize, InsnClass* cls, InsnTraits* traits = nullptr) const;
  // Registers, beside `mnemonic`'s handlers, their instantiations for each operand form (the same
  // semantics, with the operand kinds known at compile time).
  void add_forms(unsigned mnemonic, const FormHandlers& handlers);
  // The handler specialized for an instruction of `mnemonic` at `opsize` bytes whose visible
  // operands are of kinds k0 and k1 (OpKind::None for one operand), or nullptr when none is
  // registered for that form.
  Handler find_form(unsigned mnemonic, unsigned opsize, OpKind k0, OpKind k1) const;
  // True when `mnemonic` has any handler.
  bool has(unsigned mnemonic) const;

 private:
  std::vector<Entry> entries_;  // indexed by ZydisMnemonic
};

// The integer instructions (isa/integer/): arithmetic, logic, shifts, bit operations, moves,
// stack, near branches, strings, flags and the fences/NOPs.
void register_integer_instructions(Dispatch& dispatch);
// The system instructions (isa/system/): descriptor tables, control registers, far transfers,
// interrupts, IRET, SYSCALL/SYSENTER, MSRs, CPUID, I/O, PUSHF/POPF, HLT, CLI/STI, ...
void register_system_instructions(Dispatch& dispatch);
// The x87 FPU, SSE/SSE2 and the FXSAVE/XSAVE family (isa/fpu/).
void register_fpu_instructions(Dispatch& dispatch);

}  // namespace pgsim::isa

// The instruction forms the core implements, enumerated from the core itself: every opcode of the
// one- and two-byte maps, with each prefix and ModRM shape, is decoded by Zydis and kept when the
// core's Dispatch table gives it semantics. The result is one template encoding per distinct form.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "isa/cpu_state.h"

namespace pgsim::isa::classify {

// Where memory operands of the templates point and which far-pointer selectors they carry (the
// probe machine places its data and descriptors there: isa/classify/probe.h).
struct TemplateTargets {
  uint32_t data_offset;                  // [disp32] of every memory operand
  uint32_t far_offset;                   // offset of far-pointer operands
  std::vector<uint16_t> far_selectors;   // one form per selector for ptr16:16/32 operands
};

struct InstructionForm {
  std::string mnemonic;  // the group the theorems report: "PUSH", "MOV to Sreg", "JMP far", ...
  std::string form;      // the template in Intel syntax, e.g. "push cs", "lar eax, dword ptr [0x204000]"
  std::vector<uint8_t> bytes;  // its encoding
};

// Every form the core implements in `mode` (Protected32 or Long64), in a stable order. When
// `without_semantics` is given, it receives the integer and system mnemonics (not x87, SIMD or
// other extensions) that Zydis decodes in the same walk but the core has no semantics for: they
// raise #UD in the core and cannot be classified.
std::vector<InstructionForm> enumerate_forms(Mode mode, const TemplateTargets& targets,
                                             std::vector<std::string>* without_semantics = nullptr);

}  // namespace pgsim::isa::classify

#include "models/vmm/emulated_insns.h"

#include <Zydis/Zydis.h>

#include "isa/decoder.h"

namespace pgsim::vmm {

std::string emulated_insn_name(const isa::Insn& insn) {
  std::string name = isa::Decoder::mnemonic_name(insn.mnemonic);
  if (insn.mnemonic == ZYDIS_MNEMONIC_MOV) {
    for (unsigned k = 0; k < insn.num_ops; ++k) {
      const isa::OpKind kind = insn.op[k].kind;
      if (kind == isa::OpKind::CtlReg) return name + "_cr";
      if (kind == isa::OpKind::DbgReg) return name + "_dr";
      if (kind == isa::OpKind::SegReg) return name + "_sreg";
    }
  }
  // Far JMP, CALL and RET are system instructions (near ones are branches of the integer set).
  const bool transfer = insn.mnemonic == ZYDIS_MNEMONIC_JMP || insn.mnemonic == ZYDIS_MNEMONIC_CALL ||
                        insn.mnemonic == ZYDIS_MNEMONIC_RET;
  if (transfer && insn.cls == isa::InsnClass::System) return name + "_far";
  return name;
}

}  // namespace pgsim::vmm

// The instructions a VMM carried out for the guest on its virtual CPU (privileged instructions
// that trapped, writes to the guest's page tables, device-memory accesses), counted by mnemonic
// and published as vmm.emulated.<mnemonic>: only the mnemonics the guest made the VMM emulate.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "isa/insn.h"

namespace pgsim::vmm {

// The statistic name part of `insn`: Zydis' lower-case mnemonic ("out", "wrmsr", "iretq"), with
// MOV to or from a control, debug or segment register told apart from a data move (mov_cr, mov_dr,
// mov_sreg) and far JMP, CALL and RET from near ones (jmp_far, call_far, ret_far), since a VMM
// emulates those for different reasons.
std::string emulated_insn_name(const isa::Insn& insn);
// IN, OUT, INS or OUTS: port I/O, which a VMM emulates on its device models.
bool is_port_io(const isa::Insn& insn);

class EmulatedLog {
 public:
  void record(const isa::Insn& insn) { ++by_mnemonic_[emulated_insn_name(insn)]; }
  // Instructions emulated of `name` (as emulated_insn_name gives it).
  uint64_t of(const std::string& name) const {
    const auto it = by_mnemonic_.find(name);
    return it == by_mnemonic_.end() ? 0 : it->second;
  }
  // For stats::Registry::bind_family.
  const std::map<std::string, uint64_t>& by_mnemonic() const { return by_mnemonic_; }

 private:
  std::map<std::string, uint64_t> by_mnemonic_;
};

}  // namespace pgsim::vmm

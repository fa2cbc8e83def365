// The instructions a VMM carried out for the guest on its virtual CPU (privileged instructions
// that trapped, writes to the guest's page tables, device-memory accesses), counted by mnemonic
// and published as vmm.emulated.<mnemonic>: only the mnemonics the guest made the VMM emulate.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "isa/insn.h"
#include "models/vmm/reason_log.h"

namespace pgsim::vmm {

// The statistic name part of `insn`: Zydis' lower-case mnemonic ("out", "wrmsr", "iretq"), with
// MOV to or from a control, debug or segment register told apart from a data move (mov_cr, mov_dr,
// mov_sreg) and far JMP, CALL and RET from near ones (jmp_far, call_far, ret_far), since a VMM
// emulates those for different reasons.
std::string emulated_insn_name(const isa::Insn& insn);
// IN, OUT, INS or OUTS: port I/O, which a VMM emulates on its device models (as registered).
inline bool is_port_io(const isa::Insn& insn) { return insn.has(isa::kTraitPortIo); }

// Every instruction a VMM emulated, by emulated_insn_name.
class EmulatedLog : public ReasonLog {
 public:
  void record(const isa::Insn& insn) { ReasonLog::record(emulated_insn_name(insn)); }
  const std::map<std::string, uint64_t>& by_mnemonic() const { return by_name(); }
};

}  // namespace pgsim::vmm

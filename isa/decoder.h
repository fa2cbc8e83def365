// Zydis 4 behind one small class: raw bytes in, a compact Insn out (operands resolved, handler
// chosen from the Dispatch table, class decided). Used by the core's decode cache and by tests.
#pragma once
#include <cstddef>
#include <cstdint>

#include <Zydis/Zydis.h>

#include "isa/cpu_state.h"
#include "isa/insn.h"

namespace pgsim::isa {

class Dispatch;
struct CpuModel;

enum class DecodeStatus : uint8_t {
  Ok,        // `insn` is complete
  NeedMore,  // the bytes end before the instruction does
  Invalid,   // not a valid instruction in this mode (#UD)
};

class Decoder {
 public:
  explicit Decoder(const Dispatch& dispatch);
  // Decodes the instruction at `bytes` (at most `size` of them) in `mode`.
  DecodeStatus decode(Mode mode, const uint8_t* bytes, size_t size, Insn& insn) const;
  // Zydis' name for `mnemonic` (a ZydisMnemonic).
  static const char* mnemonic_name(unsigned mnemonic);
  // The CPU whose features decide which instructions exist (isa/system/cpu_features.h
  // feature_instructions); null: the default CpuModel.
  void set_cpu_model(const CpuModel* model) { cpu_ = model; }

 private:
  const Dispatch& dispatch_;
  const CpuModel* cpu_ = nullptr;
  ZydisDecoder decoders_[7];  // indexed by Mode
};

// The #UD handler installed for instructions without semantics; records them in the core.
void unimplemented_instruction(Core& core, const Insn& insn);
// The #UD handler of an instruction whose feature the CPU does not have (cpu.features).
void absent_instruction(Core& core, const Insn& insn);
// The #UD handler for bytes Zydis rejects.
void undecodable_instruction(Core& core, const Insn& insn);

}  // namespace pgsim::isa

// Shared pieces of the system-instruction semantics: stack frames and selector stores.
#include "isa/system/semantics.h"

namespace pgsim::isa {
namespace system {

void FrameWriter::push(uint64_t value, unsigned size) {
  sp = (sp - size) & sp_mask;
  if (check_limit) {
    bool ok = expand_down ? (sp > limit && sp + size - 1 <= sp_mask) : (sp + size - 1 <= limit);
    if (!ok) throw Fault{SS_, true, ss_error, 0};
  }
  uint64_t lin = base + sp;
  if (!core.state().long_mode_active()) lin &= 0xFFFFFFFFu;
  core.write_linear(lin, size, value, origin);
}

FrameWriter frame_writer(Core& core, const Segment& ss, uint64_t sp, unsigned new_cpl, uint32_t ss_error,
                         bool flat64) {
  // Accesses to the new stack are made at the new CPL: from ring 3 into an inner ring they are
  // supervisor accesses, which the core makes as implicit ones.
  const AccessOrigin origin = (new_cpl == 3 || core.state().cpl() != 3) ? AccessOrigin::Instruction
                                                                        : AccessOrigin::ImplicitSupervisor;
  if (flat64) return {core, 0, sp, ~0ull, 0, false, false, ss_error, origin};
  const uint64_t mask = ss.db() ? 0xFFFFFFFFull : 0xFFFFull;
  return {core, ss.base, sp & mask, mask, ss.limit, (ss.type() & 0xC) == 0x4, true, ss_error, origin};
}

uint64_t stack_read(Core& core, uint64_t offset, unsigned size) {
  const CpuState& s = core.state();
  uint64_t sp = s.gpr[RSP] + offset;
  if (!core.long64()) sp &= s.seg[SS].db() ? 0xFFFFFFFFull : 0xFFFFull;
  switch (size) {
    case 2: return core.read<uint16_t>(SS, sp);
    case 4: return core.read<uint32_t>(SS, sp);
    default: return core.read<uint64_t>(SS, sp);
  }
}

void store_selector(Core& core, const Insn& i, uint64_t value) {
  const Operand& o = i.op[0];
  if (o.kind == OpKind::Reg) {
    switch (i.opsize) {
      case 2: core.set_reg<uint16_t>(o, static_cast<uint16_t>(value)); break;
      case 4: core.set_reg<uint32_t>(o, static_cast<uint32_t>(value)); break;
      default: core.set_reg<uint64_t>(o, value); break;
    }
  } else {
    core.write<uint16_t>(static_cast<SegReg>(o.seg), core.effective_address(i, o), static_cast<uint16_t>(value));
  }
}

void set_stack_pointer(Core& core, const Segment& ss, uint64_t sp, bool flat64) {
  uint64_t& rsp = core.state().gpr[RSP];
  if (flat64) rsp = sp;
  else if (ss.db()) rsp = static_cast<uint32_t>(sp);
  else rsp = (rsp & ~0xFFFFull) | (sp & 0xFFFF);
}

}  // namespace system

}  // namespace pgsim::isa

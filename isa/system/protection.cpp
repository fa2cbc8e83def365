// SMAP's CLAC/STAC and the protection-key registers' RDPKRU/WRPKRU (Intel SDM vol. 2 instruction
// pages; vol. 3, 4.6). The checks themselves are the page walk's (isa/system/paging.cpp); these
// instructions change RFLAGS.AC or PKRU, after which the core's soft TLB, whose entries were
// filled under the old rights, is flushed (Core::sync_mode).
#include <Zydis/Zydis.h>

#include "isa/system/semantics.h"

namespace pgsim::isa::system {
namespace {

// CLAC/STAC: #UD at CPL > 0 and in virtual-8086 mode (CPUID says SMAP exists; CR4.SMAP need not
// be set).
void set_ac(Core& core, bool ac) {
  const CpuState& s = core.state();
  if ((s.rflags & VM) || s.cpl() > 0) throw Fault::ud();
  core.set_flags(AC, ac ? uint64_t(AC) : 0);
}
void clac(Core& core, const Insn&) { set_ac(core, false); }
void stac(Core& core, const Insn&) { set_ac(core, true); }

// RDPKRU/WRPKRU: #UD without CR4.PKE; ECX (and EDX for WRPKRU) must be 0, else #GP(0).
void check_pkru_access(const Core& core, bool write) {
  const CpuState& s = core.state();
  if (!(s.cr4 & CR4_PKE)) throw Fault::ud();
  if (static_cast<uint32_t>(s.gpr[RCX]) != 0 || (write && static_cast<uint32_t>(s.gpr[RDX]) != 0)) throw Fault::gp(0);
}
void rdpkru(Core& core, const Insn&) {
  check_pkru_access(core, false);
  CpuState& s = core.state();
  s.gpr[RAX] = s.pkru;
  s.gpr[RDX] = 0;
}
void wrpkru(Core& core, const Insn&) {
  check_pkru_access(core, true);
  core.state().pkru = static_cast<uint32_t>(core.state().gpr[RAX]);
}

}  // namespace

void register_protection(Dispatch& d) {
  constexpr InsnClass S = InsnClass::System;
  d.add(ZYDIS_MNEMONIC_CLAC, S, &clac);
  d.add(ZYDIS_MNEMONIC_STAC, S, &stac);
  d.add(ZYDIS_MNEMONIC_RDPKRU, S, &rdpkru);
  d.add(ZYDIS_MNEMONIC_WRPKRU, S, &wrpkru);
}

}  // namespace pgsim::isa::system

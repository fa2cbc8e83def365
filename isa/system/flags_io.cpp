// PUSHF/POPF, CLI/STI and port I/O with IOPL and the TSS I/O permission bitmap (Intel SDM vol. 2
// instruction pages; vol. 1, 18.5 I/O protection; vol. 3, 20.3 virtual interrupts).
#include <Zydis/Zydis.h>

#include "isa/system/descriptors.h"
#include "isa/system/semantics.h"

namespace pgsim::isa::system {

// A bitmap beyond the TSS limit denies.
void check_io_permission(Core& core, uint16_t port, unsigned size) {
  const CpuState& s = core.state();
  if (!(s.cr0 & CR0_PE)) return;
  if (!(s.rflags & VM) && s.cpl() <= s.iopl()) return;
  const Segment& tr = s.tr;
  const unsigned type = tr.type();
  if (is_null_selector(tr.selector) || (type != kTssAvailable && type != kTssBusy) || tr.limit < 0x67)
    throw Fault::gp(0);
  auto read_tss = [&](uint32_t offset, unsigned bytes) {
    if (offset + bytes - 1 > tr.limit) throw Fault::gp(0);
    uint64_t lin = tr.base + offset;
    if (!s.long_mode_active()) lin &= 0xFFFFFFFFu;
    return core.read_linear(lin, bytes, AccessOrigin::ImplicitSupervisor);
  };
  const uint32_t bitmap = static_cast<uint32_t>(read_tss(0x66, 2));
  const uint32_t bits = static_cast<uint32_t>(read_tss(bitmap + port / 8, 2));
  const uint32_t wanted = ((1u << size) - 1) << (port % 8);
  if (bits & wanted) throw Fault::gp(0);
}

namespace {

// ---- PUSHF / POPF -------------------------------------------------------------------------------

// The flags POPF may change at any privilege level, per operand size.
constexpr uint64_t kPopfAlways = CF | PF | AF | ZF | SF | TF | DF | OF | NT;
constexpr uint64_t kPopfAlways32 = kPopfAlways | AC | ID;

void pushf(Core& core, const Insn& i) {
  const CpuState& s = core.state();
  if ((s.rflags & VM) && s.iopl() < 3) throw Fault::gp(0);  // virtual-8086 without VME
  uint64_t image = s.rflags & ~uint64_t(VM | RF);
  // Insensitive variant: a program at CPL > IOPL sees its virtual interrupt flag as IF, and not
  // VIF/VIP themselves, which a CPL-0 PUSHF of the same program would not show.
  const ProfileRule rule = apply_profile(core, i);
  if (rule == ProfileRule::Raised) return;
  if (rule == ProfileRule::Insensitive && s.cpl() > s.iopl())
    image = (image & ~uint64_t(IF | VIF | VIP)) | ((s.rflags & VIF) ? uint64_t(IF) : 0);
  core.push_sized(image, i.opsize);
}

void popf(Core& core, const Insn& i) {
  CpuState& s = core.state();
  if ((s.rflags & VM) && s.iopl() < 3) throw Fault::gp(0);  // virtual-8086 without VME
  const ProfileRule rule = apply_profile(core, i);
  if (rule == ProfileRule::Raised) return;
  const bool insensitive = rule == ProfileRule::Insensitive;
  const uint64_t image = stack_read(core, 0, i.opsize);
  const unsigned cpl = s.cpl();
  const bool real = !(s.cr0 & CR0_PE);
  uint64_t mask = i.opsize == 2 ? kPopfAlways : kPopfAlways32;
  if (real || cpl == 0) mask |= IF | IOPL;  // CPL 0: IF and IOPL too
  else if (cpl <= s.iopl()) mask |= IF;     // CPL <= IOPL: IF, not IOPL
  // else CPL > IOPL: IF and IOPL are silently kept (the classic x86 sensitivity)
  if (insensitive) {
    if ((image & IOPL) != (s.rflags & IOPL)) throw Fault::gp(0);
    if (cpl > s.iopl()) s.rflags = (s.rflags & ~uint64_t(VIF)) | ((image & IF) ? uint64_t(VIF) : 0);
  }
  if (i.opsize == 2) mask &= 0xFFFF;
  core.pop_sized(i.opsize);
  s.rflags = ((s.rflags & ~mask) | (image & mask) | RF1) & ~uint64_t(RF);
}

// ---- CLI / STI ------------------------------------------------------------------------------------

// CLI/STI at CPL > IOPL: #GP(0), or with CR4.PVI at CPL 3 the virtual interrupt flag (SDM vol. 2).
void set_interrupt_flag(Core& core, bool enable) {
  CpuState& s = core.state();
  const bool real = !(s.cr0 & CR0_PE);
  if (real || s.iopl() >= s.cpl()) {
    if (enable && !(s.rflags & IF)) s.interrupt_shadow = true;  // STI: one instruction later
    s.rflags = enable ? (s.rflags | IF) : (s.rflags & ~uint64_t(IF));
    return;
  }
  const bool pvi = !(s.rflags & VM) && s.cpl() == 3 && (s.cr4 & CR4_PVI);
  const bool vme = (s.rflags & VM) && (s.cr4 & CR4_VME);
  if (!(pvi || vme)) throw Fault::gp(0);
  if (enable && (s.rflags & VIP)) throw Fault::gp(0);
  s.rflags = enable ? (s.rflags | VIF) : (s.rflags & ~uint64_t(VIF));
}
void cli(Core& core, const Insn&) { set_interrupt_flag(core, false); }
void sti(Core& core, const Insn&) { set_interrupt_flag(core, true); }

// ---- Port I/O -------------------------------------------------------------------------------------

uint16_t port_operand(const Core& core, const Operand& o) {
  return o.kind == OpKind::Imm ? static_cast<uint16_t>(o.value) : static_cast<uint16_t>(core.state().gpr[RDX]);
}

void in(Core& core, const Insn& i) {
  const uint16_t port = port_operand(core, i.op[1]);
  const unsigned size = i.op[0].size;
  check_io_permission(core, port, size);
  core.check_io_breakpoints(port, size);
  const uint32_t v = core.io().in(port, size);
  switch (size) {
    case 1: core.set_reg<uint8_t>(i.op[0], static_cast<uint8_t>(v)); break;
    case 2: core.set_reg<uint16_t>(i.op[0], static_cast<uint16_t>(v)); break;
    default: core.set_reg<uint32_t>(i.op[0], v); break;
  }
}

void out(Core& core, const Insn& i) {
  const uint16_t port = port_operand(core, i.op[0]);
  const unsigned size = i.op[1].size;
  check_io_permission(core, port, size);
  core.check_io_breakpoints(port, size);
  const uint64_t mask = Core::size_mask(size);
  core.io().out(port, size, static_cast<uint32_t>(core.state().gpr[i.op[1].reg] & mask));
}

// The count or index register of a string instruction at its address size.
uint64_t address_register(const Core& core, const Insn& i, unsigned r) {
  return core.state().gpr[r] & Core::size_mask(i.addrsize);
}

// INS/OUTS with an optional REP: each iteration commits RDI/RSI and RCX, so a fault in the middle
// restarts where it stopped, as on the processor.
template <unsigned Size, bool Input>
void string_io(Core& core, const Insn& i) {
  const uint16_t port = static_cast<uint16_t>(core.state().gpr[RDX]);
  check_io_permission(core, port, Size);
  core.check_io_breakpoints(port, Size);
  const bool rep = i.rep() || i.repne();
  const unsigned index = Input ? RDI : RSI;
  const int64_t step = (core.state().rflags & DF) ? -int64_t(Size) : int64_t(Size);
  uint64_t count = rep ? address_register(core, i, RCX) : 1;
  // A long REP stops between two iterations at the step limit and is resumed later, as the
  // memory string instructions do (isa/integer/string.cpp): a guest's REP OUTSB with RCX = 2^64 - 1
  // must not hold the host.
  const uint64_t allowance = rep ? core.string_iteration_allowance() : 1;
  uint64_t iterations = 0;
  while (count != 0) {
    const uint64_t at = address_register(core, i, index);
    if constexpr (Input) {
      // The destination is checked before the port is read (SDM: INS writes ES:[rDI]).
      const uint64_t lin = core.linear_address(ES, at, Size, AccessKind::Write);
      core.translate(lin, AccessKind::Write, AccessOrigin::Instruction);
      const uint32_t v = core.io().in(port, Size);
      if constexpr (Size == 1) core.write<uint8_t>(ES, at, static_cast<uint8_t>(v));
      else if constexpr (Size == 2) core.write<uint16_t>(ES, at, static_cast<uint16_t>(v));
      else core.write<uint32_t>(ES, at, v);
    } else {
      const auto seg = static_cast<SegReg>(i.string_seg);
      uint32_t v;
      if constexpr (Size == 1) v = core.read<uint8_t>(seg, at);
      else if constexpr (Size == 2) v = core.read<uint16_t>(seg, at);
      else v = core.read<uint32_t>(seg, at);
      core.io().out(port, Size, v);
    }
    core.set_gpr_sized(index, at + step, i.addrsize);
    --count;
    ++iterations;
    if (rep) core.set_gpr_sized(RCX, count, i.addrsize);
    if (core.suspend_at_allowance(iterations, allowance, count)) break;
  }
  core.count_string_iterations(iterations);
}

}  // namespace

void register_flags_io(Dispatch& d) {
  constexpr InsnClass S = InsnClass::System;
  d.add(ZYDIS_MNEMONIC_PUSHF, S, &pushf, sensitive(SensitiveInsn::Pushf));
  d.add(ZYDIS_MNEMONIC_PUSHFD, S, &pushf, sensitive(SensitiveInsn::Pushf));
  d.add(ZYDIS_MNEMONIC_PUSHFQ, S, &pushf, sensitive(SensitiveInsn::Pushf));
  d.add(ZYDIS_MNEMONIC_POPF, S, &popf, sensitive(SensitiveInsn::Popf));
  d.add(ZYDIS_MNEMONIC_POPFD, S, &popf, sensitive(SensitiveInsn::Popf));
  d.add(ZYDIS_MNEMONIC_POPFQ, S, &popf, sensitive(SensitiveInsn::Popf));
  d.add(ZYDIS_MNEMONIC_CLI, S, &cli);
  d.add(ZYDIS_MNEMONIC_STI, S, &sti);
  d.add(ZYDIS_MNEMONIC_IN, S, &in, traits(kTraitPortIo | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_OUT, S, &out, traits(kTraitPortIo | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_INSB, S, &string_io<1, true>, traits(kTraitPortIo | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_INSW, S, &string_io<2, true>, traits(kTraitPortIo | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_INSD, S, &string_io<4, true>, traits(kTraitPortIo | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_OUTSB, S, &string_io<1, false>, traits(kTraitPortIo | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_OUTSW, S, &string_io<2, false>, traits(kTraitPortIo | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_OUTSD, S, &string_io<4, false>, traits(kTraitPortIo | kTraitVmxExit));
}

}  // namespace pgsim::isa::system

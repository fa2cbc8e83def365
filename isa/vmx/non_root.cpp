// Instructions in VMX non-root operation (Intel SDM vol. 3, 26.1 "Instructions that cause VM
// exits", 26.3 "Changes to instruction behavior", 30.3 "Virtualizing CR8-based TPR accesses").
#include "isa/vmx/non_root.h"

#include <Zydis/Zydis.h>

#include <cstring>

#include "isa/core.h"
#include "isa/system/semantics.h"
#include "isa/vmx/controls.h"

namespace pgsim::isa::vmx {
namespace {

using system::require_cpl0;

// ---- Small readers -------------------------------------------------------------------------------

uint8_t read_physical_byte(PhysicalBus& bus, uint64_t paddr) {
  if (const uint8_t* frame = bus.host_frame(paddr)) return frame[paddr & 0xFFF];
  return static_cast<uint8_t>(bus.read(paddr, 1));
}

bool bitmap_bit(PhysicalBus& bus, uint64_t bitmap, uint64_t bit) {
  return (read_physical_byte(bus, bitmap + bit / 8) >> (bit % 8)) & 1;
}

// The offset of a memory operand within its segment, taken from CpuState before the instruction
// runs (RIP-relative operands are relative to the next instruction).
uint64_t operand_offset(const CpuState& s, const Insn& i, const Operand& o) {
  uint64_t ea = static_cast<uint64_t>(o.value);
  if (o.base < 16) ea += s.gpr[o.base];
  else if (o.base == kRipReg) ea += s.rip + i.length;
  if (o.index < 16) ea += s.gpr[o.index] << o.scale;
  return i.addrsize == 8 ? ea : ea & Core::size_mask(i.addrsize);
}

// The linear address of a memory operand: in 64-bit mode only FS and GS have a base.
uint64_t operand_linear(const CpuState& s, const Insn& i, const Operand& o) {
  const uint64_t offset = operand_offset(s, i, o);
  if (s.mode() == Mode::Long64) return (o.seg == FS || o.seg == GS) ? offset + s.seg[o.seg].base : offset;
  return (s.seg[o.seg].base + offset) & 0xFFFFFFFFu;
}

// The memory-operand part of the instruction-information field (SDM 28.2.5). A RIP-relative
// operand has neither base nor index; its qualification (see memory_qualification) is the offset.
uint32_t memory_info(const Insn& i, const Operand& o) {
  MemoryOperandInfo m;
  m.scale_log2 = o.scale;
  m.address_size = i.addrsize;
  m.segment = o.seg;
  m.index = o.index < 16 ? o.index : 0xFF;
  m.base = o.base < 16 ? o.base : 0xFF;
  return memory_operand_info(m);
}
// The exit qualification of an instruction with a memory operand: its displacement (SDM 28.2.1),
// or for a RIP-relative operand the offset it designates.
uint64_t memory_qualification(const CpuState& s, const Insn& i, const Operand& o) {
  if (o.base == kRipReg) return operand_offset(s, i, o);
  return static_cast<uint64_t>(o.value);
}

// ---- Building decisions --------------------------------------------------------------------------

InsnDecision execute(Virtualized v = Virtualized::None) { return {NonRootAction::Execute, v, {}, Fault{0}}; }

InsnDecision exit_for(const Insn& i, ExitReason reason, uint64_t qualification = 0, uint32_t info = 0) {
  InsnDecision d;
  d.action = NonRootAction::Exit;
  d.exit.reason = reason;
  d.exit.qualification = qualification;
  d.exit.instruction_length = i.length;
  d.exit.instruction_info = info;
  return d;
}

// The VMX instructions' information (SDM table 28-13): memory operand or register 1 in 6:3 with
// bit 10 set, register 2 in 31:28; the qualification is the displacement.
InsnDecision vmx_instruction_exit(const CpuState& s, const Insn& i, ExitReason reason) {
  uint32_t info = 0;
  uint64_t qualification = 0;
  for (unsigned k = 0; k < i.num_ops; ++k) {
    const Operand& o = i.op[k];
    if (o.kind == OpKind::Mem) {
      info |= memory_info(i, o);
      qualification = memory_qualification(s, i, o);
    }
  }
  // VMREAD r/m, r and VMWRITE r, r/m: register 2 is the encoding's register; INVEPT/INVVPID r, m.
  const Operand* reg2 = nullptr;
  const Operand* rm = nullptr;
  if (reason == ExitReason::Vmread) reg2 = &i.op[1], rm = &i.op[0];
  else if (reason == ExitReason::Vmwrite) reg2 = &i.op[0], rm = &i.op[1];
  else if (reason == ExitReason::Invept || reason == ExitReason::Invvpid) reg2 = &i.op[0];
  if (reg2 && reg2->kind == OpKind::Reg) info |= uint32_t(reg2->reg) << 28;
  if (rm && rm->kind == OpKind::Reg) info |= (uint32_t(rm->reg) << 3) | (1u << 10);
  if (rm || reg2) info |= (i.opsize == 8 ? 1u : 0u) << 11;  // operand size for VMREAD/VMWRITE
  return exit_for(i, reason, qualification, info);
}

// ---- Control registers (SDM 26.1.3) ----------------------------------------------------------------

VmcsField mask_field(unsigned cr) { return cr == 0 ? VmcsField::Cr0GuestHostMask : VmcsField::Cr4GuestHostMask; }
VmcsField shadow_field(unsigned cr) { return cr == 0 ? VmcsField::Cr0ReadShadow : VmcsField::Cr4ReadShadow; }

// MOV to CR0/CR4 exits when a bit set in the guest/host mask differs between the source and the
// read shadow.
bool cr_write_exits(const Vmcs& vmcs, unsigned cr, uint64_t source) {
  return ((source ^ vmcs.get(shadow_field(cr))) & vmcs.get(mask_field(cr))) != 0;
}

// MOV to CR3 exits with CR3-load exiting unless the source equals one of the first
// CR3-target-count CR3-target values.
bool cr3_load_exits(const Vmcs& vmcs, uint64_t source) {
  if (!vmcs.proc(PROC_CR3_LOAD_EXITING)) return false;
  static const VmcsField targets[kNumCr3Targets] = {VmcsField::Cr3Target0, VmcsField::Cr3Target1,
                                                    VmcsField::Cr3Target2, VmcsField::Cr3Target3};
  const uint32_t n = vmcs.get32(VmcsField::Cr3TargetCount);
  for (uint32_t k = 0; k < n && k < kNumCr3Targets; ++k) {
    if (vmcs.get(targets[k]) == source) return false;
  }
  return true;
}

InsnDecision mov_to_cr(const Vmcs& vmcs, Core& core, const Insn& i) {
  const CpuState& s = core.state();
  require_cpl0(core);  // 26.1.1: CPL-based #GP first
  const unsigned cr = i.op[0].reg, gpr = i.op[1].reg;
  const uint64_t source = core.long64() ? s.gpr[gpr] : (s.gpr[gpr] & 0xFFFFFFFFu);
  const uint64_t q = cr_access_qualification(cr, CrAccessType::MovToCr, gpr);
  switch (cr) {
    case 0:
    case 4:
      if (cr_write_exits(vmcs, cr, source)) return exit_for(i, ExitReason::CrAccess, q);
      return execute(cr == 0 ? Virtualized::MovToCr0 : Virtualized::MovToCr4);
    case 2: return execute();
    case 3: return cr3_load_exits(vmcs, source) ? exit_for(i, ExitReason::CrAccess, q) : execute();
    case 8:
      if (vmcs.proc(PROC_CR8_LOAD_EXITING)) return exit_for(i, ExitReason::CrAccess, q);
      if (!vmcs.proc(PROC_USE_TPR_SHADOW)) return execute();
      if (source >> 4) throw Fault::gp(0);  // MOV to CR8's own reserved-bit check (30.3)
      return execute(Virtualized::MovToCr8);
    default: throw Fault::ud();
  }
}

InsnDecision mov_from_cr(const Vmcs& vmcs, Core& core, const Insn& i) {
  require_cpl0(core);
  const unsigned cr = i.op[1].reg, gpr = i.op[0].reg;
  const uint64_t q = cr_access_qualification(cr, CrAccessType::MovFromCr, gpr);
  switch (cr) {
    case 0: return execute(Virtualized::MovFromCr0);
    case 4: return execute(Virtualized::MovFromCr4);
    case 2: return execute();
    case 3: return vmcs.proc(PROC_CR3_STORE_EXITING) ? exit_for(i, ExitReason::CrAccess, q) : execute();
    case 8:
      if (vmcs.proc(PROC_CR8_STORE_EXITING)) return exit_for(i, ExitReason::CrAccess, q);
      return vmcs.proc(PROC_USE_TPR_SHADOW) ? execute(Virtualized::MovFromCr8) : execute();
    default: throw Fault::ud();
  }
}

// CLTS exits when TS is set in both the CR0 guest/host mask and the CR0 read shadow.
InsnDecision clts(const Vmcs& vmcs, Core& core, const Insn& i) {
  require_cpl0(core);
  const bool owned = vmcs.get(VmcsField::Cr0GuestHostMask) & CR0_TS;
  if (owned && (vmcs.get(VmcsField::Cr0ReadShadow) & CR0_TS))
    return exit_for(i, ExitReason::CrAccess, cr_access_qualification(0, CrAccessType::Clts, 0));
  return execute(Virtualized::Clts);
}

// LMSW exits when PE is masked, clear in the shadow and set in the source, or when any of MP, EM,
// TS is masked and differs between source and shadow.
InsnDecision lmsw(const Vmcs& vmcs, Core& core, const Insn& i) {
  require_cpl0(core);
  const CpuState& s = core.state();
  const Operand& o = i.op[0];
  const bool memory = o.kind == OpKind::Mem;
  // The operand is read first: its value decides the exit and goes into the qualification.
  const uint16_t source = memory ? core.read<uint16_t>(static_cast<SegReg>(o.seg), operand_offset(s, i, o))
                                 : static_cast<uint16_t>(s.gpr[o.reg]);
  const uint64_t mask = vmcs.get(VmcsField::Cr0GuestHostMask), shadow = vmcs.get(VmcsField::Cr0ReadShadow);
  const bool pe_exit = (mask & CR0_PE) && !(shadow & CR0_PE) && (source & CR0_PE);
  const bool low_exit = ((source ^ shadow) & mask & (CR0_MP | CR0_EM | CR0_TS)) != 0;
  if (!pe_exit && !low_exit) return execute(Virtualized::Lmsw);
  InsnDecision d = exit_for(i, ExitReason::CrAccess,
                            cr_access_qualification(0, CrAccessType::Lmsw, memory ? 0 : o.reg, memory, source));
  if (memory) d.exit.guest_linear_address = operand_linear(s, i, o);
  return d;
}

// MOV DR: #GP at CPL > 0, #UD for DR4/DR5 with CR4.DE (SDM vol. 2, MOV DR) come first.
InsnDecision mov_dr(const Vmcs& vmcs, Core& core, const Insn& i, bool from_dr) {
  require_cpl0(core);
  const unsigned dr = from_dr ? i.op[1].reg : i.op[0].reg, gpr = from_dr ? i.op[0].reg : i.op[1].reg;
  if (dr > 7 || ((dr == 4 || dr == 5) && (core.state().cr4 & CR4_DE))) throw Fault::ud();
  if (!vmcs.proc(PROC_MOV_DR_EXITING)) return execute();
  return exit_for(i, ExitReason::DrAccess, dr_access_qualification(dr, from_dr, gpr));
}

// ---- I/O (SDM 26.1.3) --------------------------------------------------------------------------------

bool io_exits(const Vmcs& vmcs, PhysicalBus& bus, uint16_t port, unsigned size) {
  if (vmcs.proc(PROC_USE_IO_BITMAPS)) return io_bitmap_selects(vmcs, bus, port, size);
  return vmcs.proc(PROC_UNCONDITIONAL_IO_EXITING);
}

InsnDecision io_instruction(const Vmcs& vmcs, Core& core, const Insn& i, bool in, bool string, unsigned size) {
  const CpuState& s = core.state();
  const Operand* port_op = string ? nullptr : &i.op[in ? 1 : 0];
  const bool immediate = port_op && port_op->kind == OpKind::Imm;
  const uint16_t port = immediate ? static_cast<uint16_t>(port_op->value) : static_cast<uint16_t>(s.gpr[RDX]);
  system::check_io_permission(core, port, size);  // 26.1.1: the TSS I/O bitmap's #GP first
  if (!io_exits(vmcs, core.bus(), port, size)) return execute();
  InsnDecision d = exit_for(i, ExitReason::IoInstruction, io_qualification(size, in, string, i.rep(), immediate, port));
  if (string) {
    // INS/OUTS: the instruction information gives the address size and (OUTS) the segment
    // (table 28-8); the guest-linear address is that of the memory operand.
    const unsigned seg = in ? unsigned{ES} : i.string_seg;
    const uint64_t index = s.gpr[in ? RDI : RSI] & Core::size_mask(i.addrsize);
    MemoryOperandInfo m;
    m.address_size = i.addrsize;
    m.segment = seg;
    d.exit.instruction_info = memory_operand_info(m) & ((7u << 7) | (7u << 15));
    d.exit.guest_linear_address = s.mode() == Mode::Long64 && seg != FS && seg != GS
                                      ? index
                                      : s.seg[seg].base + index;
    if (s.mode() != Mode::Long64) d.exit.guest_linear_address &= 0xFFFFFFFFu;
  }
  return d;
}

// ---- Descriptor tables (SDM 26.1.3, tables 28-10 and 28-11) ------------------------------------------

InsnDecision gdtr_idtr(const Vmcs& vmcs, Core& core, const Insn& i, GdtrIdtrInsn which) {
  const bool load = which == GdtrIdtrInsn::Lgdt || which == GdtrIdtrInsn::Lidt;
  const CpuState& s = core.state();
  if (load) {
    require_cpl0(core);
  } else if ((s.cr0 & CR0_PE) && s.cpl() > 0) {
    if (s.cr4 & CR4_UMIP) throw Fault::gp(0);
    system::apply_profile(core, i);  // SGDT or SIDT (in the hook, its fault is thrown)
  }
  if (!vmcs.proc2(PROC2_DESCRIPTOR_TABLE_EXITING)) return execute();
  const Operand& o = i.op[0];
  const uint32_t info = memory_info(i, o) | ((i.opsize == 2 ? 0u : 1u) << 11) | (uint32_t(which) << 28);
  return exit_for(i, ExitReason::GdtrIdtrAccess, memory_qualification(s, i, o), info);
}

InsnDecision ldtr_tr(const Vmcs& vmcs, Core& core, const Insn& i, LdtrTrInsn which) {
  const bool load = which == LdtrTrInsn::Lldt || which == LdtrTrInsn::Ltr;
  const CpuState& s = core.state();
  system::require_protected(core);
  if (load) {
    require_cpl0(core);
  } else if (s.cpl() > 0) {
    if (s.cr4 & CR4_UMIP) throw Fault::gp(0);
    system::apply_profile(core, i);  // SLDT or STR (in the hook, its fault is thrown)
  }
  if (!vmcs.proc2(PROC2_DESCRIPTOR_TABLE_EXITING)) return execute();
  const Operand& o = i.op[0];
  uint32_t info = uint32_t(which) << 28;
  uint64_t qualification = 0;
  if (o.kind == OpKind::Mem) {
    info |= memory_info(i, o);
    qualification = memory_qualification(s, i, o);
  } else {
    info |= (uint32_t(o.reg) << 3) | (1u << 10) | ((i.addrsize == 2 ? 0u : i.addrsize == 4 ? 1u : 2u) << 7);
  }
  return exit_for(i, ExitReason::LdtrTrAccess, qualification, info);
}

// RDRAND/RDSEED (table 28-12): destination register in 6:3, operand size in 12:11.
uint32_t random_info(const Insn& i) {
  const uint32_t size = i.opsize == 2 ? 0 : i.opsize == 4 ? 1 : 2;
  return (uint32_t(i.op[0].reg) << 3) | (size << 11);
}

// TSD (CR4.TSD at CPL > 0) is the #GP of RDTSC and RDTSCP that precedes their exit.
void check_tsd(const CpuState& s) {
  if ((s.cr4 & CR4_TSD) && (s.cr0 & CR0_PE) && s.cpl() > 0) throw Fault::gp(0);
}

InsnDecision decide(const Vmcs& vmcs, Core& core, const Insn& i) {
  const CpuState& s = core.state();
  const auto m = static_cast<ZydisMnemonic>(i.mnemonic);
  const OpKind k0 = i.num_ops > 0 ? i.op[0].kind : OpKind::None;
  const OpKind k1 = i.num_ops > 1 ? i.op[1].kind : OpKind::None;
  switch (m) {
    // Unconditional exits (26.1.2).
    case ZYDIS_MNEMONIC_CPUID: return exit_for(i, ExitReason::Cpuid);
    case ZYDIS_MNEMONIC_GETSEC:
      // GETSEC raises #UD unless CR4.SMXE, which this processor does not implement.
      throw Fault::ud();
    case ZYDIS_MNEMONIC_INVD:
      require_cpl0(core);
      return exit_for(i, ExitReason::Invd);
    case ZYDIS_MNEMONIC_XSETBV:
      if (!(s.cr4 & CR4_OSXSAVE)) throw Fault::ud();
      require_cpl0(core);
      return exit_for(i, ExitReason::Xsetbv);
    case ZYDIS_MNEMONIC_VMCALL: return exit_for(i, ExitReason::Vmcall);  // at any CPL
    case ZYDIS_MNEMONIC_VMCLEAR: require_vmx_mode(s); return vmx_instruction_exit(s, i, ExitReason::Vmclear);
    case ZYDIS_MNEMONIC_VMLAUNCH: require_vmx_mode(s); return vmx_instruction_exit(s, i, ExitReason::Vmlaunch);
    case ZYDIS_MNEMONIC_VMPTRLD: require_vmx_mode(s); return vmx_instruction_exit(s, i, ExitReason::Vmptrld);
    case ZYDIS_MNEMONIC_VMPTRST: require_vmx_mode(s); return vmx_instruction_exit(s, i, ExitReason::Vmptrst);
    case ZYDIS_MNEMONIC_VMREAD: require_vmx_mode(s); return vmx_instruction_exit(s, i, ExitReason::Vmread);
    case ZYDIS_MNEMONIC_VMRESUME: require_vmx_mode(s); return vmx_instruction_exit(s, i, ExitReason::Vmresume);
    case ZYDIS_MNEMONIC_VMWRITE: require_vmx_mode(s); return vmx_instruction_exit(s, i, ExitReason::Vmwrite);
    case ZYDIS_MNEMONIC_VMXOFF: require_vmx_mode(s); return vmx_instruction_exit(s, i, ExitReason::Vmxoff);
    case ZYDIS_MNEMONIC_VMXON: require_vmx_mode(s); return vmx_instruction_exit(s, i, ExitReason::Vmxon);
    case ZYDIS_MNEMONIC_INVEPT: require_vmx_mode(s); return vmx_instruction_exit(s, i, ExitReason::Invept);
    case ZYDIS_MNEMONIC_INVVPID: require_vmx_mode(s); return vmx_instruction_exit(s, i, ExitReason::Invvpid);
    case ZYDIS_MNEMONIC_VMFUNC: throw Fault::ud();  // "enable VM functions" is not offered (26.3)

    // Conditional exits (26.1.3).
    case ZYDIS_MNEMONIC_HLT:
      require_cpl0(core);
      return vmcs.proc(PROC_HLT_EXITING) ? exit_for(i, ExitReason::Hlt) : execute();
    case ZYDIS_MNEMONIC_INVLPG:
      require_cpl0(core);
      if (!vmcs.proc(PROC_INVLPG_EXITING)) return execute();
      return exit_for(i, ExitReason::Invlpg, operand_linear(s, i, i.op[0]));
    case ZYDIS_MNEMONIC_INVPCID:
      if (!vmcs.proc2(PROC2_ENABLE_INVPCID)) throw Fault::ud();
      require_cpl0(core);
      if (!vmcs.proc(PROC_INVLPG_EXITING)) return execute();
      return vmx_instruction_exit(s, i, ExitReason::Invpcid);
    case ZYDIS_MNEMONIC_RDPMC:
      if (!(s.cr4 & CR4_PCE) && (s.cr0 & CR0_PE) && s.cpl() > 0) throw Fault::gp(0);
      return vmcs.proc(PROC_RDPMC_EXITING) ? exit_for(i, ExitReason::Rdpmc) : execute();
    case ZYDIS_MNEMONIC_RDTSC:
      check_tsd(s);
      if (vmcs.proc(PROC_RDTSC_EXITING)) return exit_for(i, ExitReason::Rdtsc);
      return execute(vmcs.proc(PROC_USE_TSC_OFFSETTING) ? Virtualized::Rdtsc : Virtualized::None);
    case ZYDIS_MNEMONIC_RDTSCP:
      if (!vmcs.proc2(PROC2_ENABLE_RDTSCP)) throw Fault::ud();
      check_tsd(s);
      if (vmcs.proc(PROC_RDTSC_EXITING)) return exit_for(i, ExitReason::Rdtscp);
      return execute(vmcs.proc(PROC_USE_TSC_OFFSETTING) ? Virtualized::Rdtsc : Virtualized::None);
    case ZYDIS_MNEMONIC_MWAIT:
    case ZYDIS_MNEMONIC_MONITOR: {
      // MONITOR/MWAIT raise #UD at CPL > 0 (SDM vol. 2); the core has no semantics for them, so
      // without the exiting control they raise #UD as unimplemented instructions.
      if (s.cpl() > 0) throw Fault::ud();
      const bool mwait = m == ZYDIS_MNEMONIC_MWAIT;
      if (!vmcs.proc(mwait ? PROC_MWAIT_EXITING : PROC_MONITOR_EXITING)) return execute();
      return exit_for(i, mwait ? ExitReason::Mwait : ExitReason::Monitor);
    }
    case ZYDIS_MNEMONIC_PAUSE:
      return vmcs.proc(PROC_PAUSE_EXITING) ? exit_for(i, ExitReason::Pause) : execute();
    case ZYDIS_MNEMONIC_WBINVD:
      require_cpl0(core);
      return vmcs.proc2(PROC2_WBINVD_EXITING) ? exit_for(i, ExitReason::Wbinvd) : execute();
    case ZYDIS_MNEMONIC_RDRAND:
      return vmcs.proc2(PROC2_RDRAND_EXITING) ? exit_for(i, ExitReason::Rdrand, 0, random_info(i)) : execute();
    case ZYDIS_MNEMONIC_RDSEED:
      return vmcs.proc2(PROC2_RDSEED_EXITING) ? exit_for(i, ExitReason::Rdseed, 0, random_info(i)) : execute();
    case ZYDIS_MNEMONIC_RDMSR:
    case ZYDIS_MNEMONIC_WRMSR: {
      require_cpl0(core);
      const bool write = m == ZYDIS_MNEMONIC_WRMSR;
      const auto msr = static_cast<uint32_t>(s.gpr[RCX]);
      const bool exits = !vmcs.proc(PROC_USE_MSR_BITMAPS) || msr_bitmap_selects(vmcs, core.bus(), msr, write);
      if (exits) return exit_for(i, write ? ExitReason::Wrmsr : ExitReason::Rdmsr);
      const bool offset_tsc = !write && msr == MSR_TSC && vmcs.proc(PROC_USE_TSC_OFFSETTING);
      return execute(offset_tsc ? Virtualized::Rdtsc : Virtualized::None);
    }
    case ZYDIS_MNEMONIC_IN: return io_instruction(vmcs, core, i, true, false, i.op[0].size);
    case ZYDIS_MNEMONIC_OUT: return io_instruction(vmcs, core, i, false, false, i.op[1].size);
    case ZYDIS_MNEMONIC_INSB: return io_instruction(vmcs, core, i, true, true, 1);
    case ZYDIS_MNEMONIC_INSW: return io_instruction(vmcs, core, i, true, true, 2);
    case ZYDIS_MNEMONIC_INSD: return io_instruction(vmcs, core, i, true, true, 4);
    case ZYDIS_MNEMONIC_OUTSB: return io_instruction(vmcs, core, i, false, true, 1);
    case ZYDIS_MNEMONIC_OUTSW: return io_instruction(vmcs, core, i, false, true, 2);
    case ZYDIS_MNEMONIC_OUTSD: return io_instruction(vmcs, core, i, false, true, 4);
    case ZYDIS_MNEMONIC_CLTS: return clts(vmcs, core, i);
    case ZYDIS_MNEMONIC_LMSW: return lmsw(vmcs, core, i);
    case ZYDIS_MNEMONIC_SMSW: return execute(Virtualized::Smsw);  // its own UMIP/profile checks apply
    case ZYDIS_MNEMONIC_LGDT: return gdtr_idtr(vmcs, core, i, GdtrIdtrInsn::Lgdt);
    case ZYDIS_MNEMONIC_LIDT: return gdtr_idtr(vmcs, core, i, GdtrIdtrInsn::Lidt);
    case ZYDIS_MNEMONIC_SGDT: return gdtr_idtr(vmcs, core, i, GdtrIdtrInsn::Sgdt);
    case ZYDIS_MNEMONIC_SIDT: return gdtr_idtr(vmcs, core, i, GdtrIdtrInsn::Sidt);
    case ZYDIS_MNEMONIC_LLDT: return ldtr_tr(vmcs, core, i, LdtrTrInsn::Lldt);
    case ZYDIS_MNEMONIC_LTR: return ldtr_tr(vmcs, core, i, LdtrTrInsn::Ltr);
    case ZYDIS_MNEMONIC_SLDT: return ldtr_tr(vmcs, core, i, LdtrTrInsn::Sldt);
    case ZYDIS_MNEMONIC_STR: return ldtr_tr(vmcs, core, i, LdtrTrInsn::Str);
    case ZYDIS_MNEMONIC_MOV:
      // The system forms of MOV, told apart by operand kinds as the decoder's dispatch does.
      if (k0 == OpKind::CtlReg) return mov_to_cr(vmcs, core, i);
      if (k1 == OpKind::CtlReg) return mov_from_cr(vmcs, core, i);
      if (k0 == OpKind::DbgReg) return mov_dr(vmcs, core, i, false);
      if (k1 == OpKind::DbgReg) return mov_dr(vmcs, core, i, true);
      return execute();
    default: return execute();
  }
}

}  // namespace

InsnDecision decide_instruction(const Vmcs& vmcs, Core& core, const Insn& insn) {
  try {
    return decide(vmcs, core, insn);
  } catch (const Fault& f) {
    InsnDecision d;
    d.action = NonRootAction::Raise;
    d.fault = f;
    return d;
  }
}

namespace {

// Runs the instruction's semantics with `reg` holding `value` for the duration (the value the
// processor loads, or the guest's view of a control register), then restores it.
void run_with(Core& core, const Insn& insn, uint64_t& reg, uint64_t value) {
  const uint64_t saved = reg;
  reg = value;
  try {
    insn.semantics(core, insn);
  } catch (...) {
    reg = saved;
    throw;
  }
  reg = saved;
}

}  // namespace

void require_vmx_mode(const CpuState& s) {
  const Mode m = s.mode();
  if (m == Mode::Real || m == Mode::Virtual8086 || m == Mode::Compat16 || m == Mode::Compat32) throw Fault::ud();
}

bool execute_virtualized(const Vmcs& vmcs, Core& core, const Insn& insn, Virtualized how,
                         std::optional<VmExit>* tpr_exit) {
  CpuState& s = core.state();
  switch (how) {
    case Virtualized::None:
      return false;
    case Virtualized::MovToCr0:
    case Virtualized::MovToCr4: {
      // The instruction runs with the value the processor loads in its source register.
      const unsigned cr = how == Virtualized::MovToCr0 ? 0 : 4;
      uint64_t& source = s.gpr[insn.op[1].reg];
      run_with(core, insn, source, cr_value_to_load(vmcs, cr, cr == 0 ? s.cr0 : s.cr4, source));
      core.sync_mode();
      return true;
    }
    case Virtualized::MovFromCr0:
    case Virtualized::MovFromCr4:
    case Virtualized::Smsw: {
      // The instruction reads the guest's view: the real register with its masked bits shadowed.
      uint64_t& real = how == Virtualized::MovFromCr4 ? s.cr4 : s.cr0;
      run_with(core, insn, real, guest_cr_value(vmcs, how == Virtualized::MovFromCr4 ? 4 : 0, real));
      return true;
    }
    case Virtualized::Clts:
      s.cr0 = cr_value_to_load(vmcs, 0, s.cr0, s.cr0 & ~uint64_t{CR0_TS});
      core.sync_mode();
      return true;
    case Virtualized::Lmsw:
      s.cr0 = lmsw_value_to_load(vmcs, s.cr0, core.get<uint16_t>(insn, insn.op[0]));
      core.sync_mode();
      return true;
    case Virtualized::MovToCr8:
      *tpr_exit = write_virtual_tpr(vmcs, core.bus(), s.gpr[insn.op[1].reg]);
      return true;
    case Virtualized::MovFromCr8:
      core.set_gpr<uint64_t>(insn.op[0].reg, read_virtual_tpr(vmcs, core.bus()));
      return true;
    case Virtualized::Rdtsc: {
      insn.semantics(core, insn);
      const uint64_t tsc = guest_tsc(vmcs, (s.gpr[RDX] & 0xFFFFFFFFu) << 32 | (s.gpr[RAX] & 0xFFFFFFFFu));
      s.gpr[RAX] = tsc & 0xFFFFFFFFu;
      s.gpr[RDX] = tsc >> 32;
      return true;
    }
  }
  return false;
}

uint64_t guest_cr_value(const Vmcs& vmcs, unsigned cr, uint64_t real) {
  const uint64_t mask = vmcs.get(mask_field(cr));
  return (real & ~mask) | (vmcs.get(shadow_field(cr)) & mask);
}

uint64_t cr_value_to_load(const Vmcs& vmcs, unsigned cr, uint64_t current, uint64_t source) {
  const uint64_t mask = vmcs.get(mask_field(cr));
  return (source & ~mask) | (current & mask);
}

uint64_t lmsw_value_to_load(const Vmcs& vmcs, uint64_t current_cr0, uint16_t source) {
  // LMSW loads PE, MP, EM and TS and cannot clear PE (SDM vol. 2, LMSW); masked bits stay (26.3).
  constexpr uint64_t kLmswBits = CR0_PE | CR0_MP | CR0_EM | CR0_TS;
  const uint64_t loadable = kLmswBits & ~vmcs.get(VmcsField::Cr0GuestHostMask);
  const uint64_t value = (current_cr0 & ~loadable) | (source & loadable);
  return value | (current_cr0 & CR0_PE);
}

uint64_t guest_tsc(const Vmcs& vmcs, uint64_t tsc) { return tsc + vmcs.get(VmcsField::TscOffset); }

uint64_t read_virtual_tpr(const Vmcs& vmcs, PhysicalBus& bus) {
  return (read_physical_byte(bus, vmcs.get(VmcsField::VirtualApicAddress) + kVirtualApicTprOffset) >> 4) & 0xF;
}

std::optional<VmExit> write_virtual_tpr(const Vmcs& vmcs, PhysicalBus& bus, uint64_t source) {
  const uint64_t vtpr = vmcs.get(VmcsField::VirtualApicAddress) + kVirtualApicTprOffset;
  const uint32_t value = static_cast<uint32_t>((source & 0xF) << 4);
  if (uint8_t* frame = bus.host_frame(vtpr)) std::memcpy(frame + (vtpr & 0xFFF), &value, 4);
  else bus.write(vtpr, 4, value);
  // TPR virtualization without virtual-interrupt delivery (30.1.2). The exit is trap-like and
  // reports no instruction length (28.2.5).
  if (vmcs.proc2(PROC2_VIRTUAL_INTERRUPT_DELIVERY)) return std::nullopt;
  if ((source & 0xF) >= (vmcs.get32(VmcsField::TprThreshold) & 0xF)) return std::nullopt;
  VmExit exit;
  exit.reason = ExitReason::TprBelowThreshold;
  return exit;
}

bool io_bitmap_selects(const Vmcs& vmcs, PhysicalBus& bus, uint16_t port, unsigned size) {
  if (uint32_t(port) + size - 1 > 0xFFFF) return true;  // wraps around the port space
  for (unsigned k = 0; k < size; ++k) {
    const uint16_t p = static_cast<uint16_t>(port + k);
    const uint64_t bitmap = vmcs.get(p < 0x8000 ? VmcsField::IoBitmapA : VmcsField::IoBitmapB);
    if (bitmap_bit(bus, bitmap, p & 0x7FFF)) return true;
  }
  return false;
}

bool msr_bitmap_selects(const Vmcs& vmcs, PhysicalBus& bus, uint32_t msr, bool write) {
  // Read bitmap for low MSRs at 0, for high MSRs at 1024; the write bitmaps at 2048 and 3072.
  uint64_t offset;
  if (msr <= 0x1FFF) offset = 0;
  else if (msr >= 0xC0000000 && msr <= 0xC0001FFF) offset = 1024;
  else return true;
  if (write) offset += 2048;
  return bitmap_bit(bus, vmcs.get(VmcsField::MsrBitmaps) + offset, msr & 0x1FFF);
}

}  // namespace pgsim::isa::vmx

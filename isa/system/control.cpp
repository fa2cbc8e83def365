// Control registers, debug registers, descriptor-table registers, MSRs, CPUID, the time-stamp
// counter, HLT and cache/TLB maintenance (Intel SDM vol. 2 instruction pages; vol. 3, 2.5, 4.10).
#include <Zydis/Zydis.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "isa/system/cpuid.h"
#include "isa/system/descriptors.h"
#include "isa/system/machine_msrs.h"
#include "isa/system/paging.h"
#include "isa/system/pmu.h"
#include "isa/system/semantics.h"
#include "isa/vmx/guest_vmx.h"

namespace pgsim::isa::system {
namespace {

// ---- Helpers ------------------------------------------------------------------------------------

// The general register operand of MOV CRn/DRn: 64 bits in 64-bit mode, else 32.
uint64_t mov_cr_source(const Core& core, const Operand& o) {
  uint64_t v = core.state().gpr[o.reg];
  return core.long64() ? v : (v & 0xFFFFFFFFu);
}
void mov_cr_destination(Core& core, const Operand& o, uint64_t v) {
  core.state().gpr[o.reg] = core.long64() ? v : (v & 0xFFFFFFFFu);
}

// UMIP (CR4.UMIP) and the profile for SGDT/SIDT/SLDT/SMSW/STR at CPL > 0.
// False when the profile raised its fault.
bool check_store_system(Core& core, const Insn& insn) {
  const CpuState& s = core.state();
  if ((s.cr0 & CR0_PE) && s.cpl() > 0 && (s.cr4 & CR4_UMIP)) throw Fault::gp(0);
  return apply_profile(core, insn) != ProfileRule::Raised;
}

// PAE paging: the four PDPTEs are loaded when CR3 is loaded (or paging is enabled) and a reserved
// bit in a present one raises #GP(0) (SDM vol. 3, 4.4.1).
void check_pae_pdptes(Core& core, uint64_t cr3) {
  for (unsigned k = 0; k < 4; ++k) {
    uint64_t pdpte = 0;
    uint64_t at = (cr3 & 0xFFFFFFE0u) + 8 * k;
    if (uint8_t* frame = core.bus().host_frame(at)) std::memcpy(&pdpte, frame + (at & 0xFFF), 8);
    else pdpte = core.bus().read(at, 8);
    const uint64_t reserved = 0x1E6ull | (~0ull << kMaxPhysAddrBits);
    if ((pdpte & 1) && (pdpte & reserved)) throw Fault::gp(0);
  }
}

// ---- Control registers ----------------------------------------------------------------------------

constexpr uint64_t kCr3LongReserved = ~0ull << kMaxPhysAddrBits;

void write_cr0(Core& core, uint64_t v) {
  CpuState& s = core.state();
  if (v >> 32) throw Fault::gp(0);
  v = (v & kCr0Implemented) | CR0_ET;
  if ((v & CR0_PG) && !(v & CR0_PE)) throw Fault::gp(0);
  if ((v & CR0_NW) && !(v & CR0_CD)) throw Fault::gp(0);
  const bool enabling_paging = (v & CR0_PG) && !(s.cr0 & CR0_PG);
  const bool disabling_paging = !(v & CR0_PG) && (s.cr0 & CR0_PG);
  uint64_t efer = s.efer;
  if (enabling_paging && (s.efer & EFER_LME)) {
    // Activating IA-32e mode (SDM vol. 3, 10.8.5): needs PAE and a 32-bit CS.
    if (!(s.cr4 & CR4_PAE) || s.seg[CS].l()) throw Fault::gp(0);
    efer |= EFER_LMA;
  } else if (enabling_paging && (s.cr4 & CR4_PAE)) {
    check_pae_pdptes(core, s.cr3);
  }
  if (disabling_paging && s.long_mode_active()) {
    if (core.long64() || (s.cr4 & CR4_PCIDE)) throw Fault::gp(0);
    efer &= ~EFER_LMA;  // leaving IA-32e mode from compatibility mode
  }
  if (vmx::GuestVmx* vmx = system_config(core).vmx) vmx->check_cr_write(0, v);
  const bool flush = ((v ^ s.cr0) & (CR0_PG | CR0_WP | CR0_PE)) != 0;
  s.cr0 = v;
  s.efer = efer;
  if (flush) core.flush_tlbs(true);
}

void write_cr3(Core& core, uint64_t v) {
  CpuState& s = core.state();
  bool keep_tlb = false;
  if (s.long_mode_active()) {
    if ((s.cr4 & CR4_PCIDE) && (v >> 63)) {  // bit 63: do not invalidate this PCID's entries
      keep_tlb = true;
      v &= ~(1ull << 63);
    }
    if (v & kCr3LongReserved) throw Fault::gp(0);
  } else {
    v &= 0xFFFFFFFFu;
    if (s.paging() && (s.cr4 & CR4_PAE)) check_pae_pdptes(core, v);
  }
  s.cr3 = v;
  if (!keep_tlb) core.flush_tlbs(false);
}

void write_cr4(Core& core, uint64_t v) {
  CpuState& s = core.state();
  // VMXE exists for guest code only with guest VMX; without it a VMM in VMX operation sets it (the
  // guest's loads keep it there, SDM 26.3 with the CR4 guest/host mask): it may stay set, never be
  // set anew.
  vmx::GuestVmx* vmx = system_config(core).vmx;
  const uint64_t vmxe = vmx ? uint64_t{CR4_VMXE} : (s.cr4 & CR4_VMXE);
  if (v & ~(cr4_supported(system_config(core).cpu) | vmxe)) throw Fault::gp(0);
  if (vmx) vmx->check_cr_write(4, v);
  if (s.long_mode_active()) {
    if (!(v & CR4_PAE)) throw Fault::gp(0);
    if ((v ^ s.cr4) & CR4_LA57) throw Fault::gp(0);  // LA57 cannot change in IA-32e mode
  }
  if ((v & CR4_PCIDE) && !(s.cr4 & CR4_PCIDE) && (!s.long_mode_active() || (s.cr3 & 0xFFF))) throw Fault::gp(0);
  if (s.paging() && !s.long_mode_active() && (v & CR4_PAE) && !(s.cr4 & CR4_PAE)) check_pae_pdptes(core, s.cr3);
  const bool flush = ((v ^ s.cr4) & kCr4PagingBits) != 0;
  s.cr4 = v;
  if (flush) core.flush_tlbs(true);
}

void mov_to_cr(Core& core, const Insn& i) {
  require_cpl0(core);
  const uint64_t v = mov_cr_source(core, i.op[1]);
  switch (i.op[0].reg) {
    case 0: write_cr0(core, v); break;
    case 2: core.state().cr2 = v; break;
    case 3: write_cr3(core, v); break;
    case 4: write_cr4(core, v); break;
    case 8:
      if (v >> 4) throw Fault::gp(0);
      core.state().cr8 = v;
      if (MsrDevice* dev = system_config(core).msr_device) dev->write_cr8(v);
      break;
    default: throw Fault::ud();
  }
}

void mov_from_cr(Core& core, const Insn& i) {
  require_cpl0(core);
  const CpuState& s = core.state();
  uint64_t v;
  switch (i.op[1].reg) {
    case 0: v = s.cr0; break;
    case 2: v = s.cr2; break;
    case 3: v = s.cr3; break;
    case 4: v = s.cr4; break;
    case 8:
      if (MsrDevice* dev = system_config(core).msr_device; !(dev && dev->read_cr8(v))) v = s.cr8;
      break;
    default: throw Fault::ud();
  }
  mov_cr_destination(core, i.op[0], v);
}

// DR4/DR5 alias DR6/DR7 unless CR4.DE, which makes them #UD (SDM vol. 3, 18.2.2); with DR7.GD
// any access is a #DB fault with DR6.BD, and the processor clears GD to let the handler in.
unsigned debug_register(Core& core, unsigned n) {
  if (n > 7) throw Fault::ud();
  CpuState& s = core.state();
  if (n == 4 || n == 5) {
    if (s.cr4 & CR4_DE) throw Fault::ud();
    n += 2;
  }
  if (s.dr[7] & DR7_GD) {
    s.dr[6] = (s.dr[6] & ~kDr6Hits) | DR6_BD;
    s.dr[7] &= ~uint64_t(DR7_GD);
    throw Fault{DB, false, 0, 0};
  }
  return n;
}

void mov_to_dr(Core& core, const Insn& i) {
  require_cpl0(core);
  unsigned n = debug_register(core, i.op[0].reg);
  uint64_t v = mov_cr_source(core, i.op[1]);
  if ((n == 6 || n == 7) && (v >> 32)) throw Fault::gp(0);
  if (n == 6) v = (v | kDr6Fixed1) & ~uint64_t(1u << 12);  // bit 12 reads 0
  if (n == 7) v = (v & kDr7Writable) | DR7_FIXED1;
  core.state().dr[n] = v;  // the core re-derives its breakpoints after this instruction (sync_mode)
}

void mov_from_dr(Core& core, const Insn& i) {
  require_cpl0(core);
  mov_cr_destination(core, i.op[0], core.state().dr[debug_register(core, i.op[1].reg)]);
}
void lmsw(Core& core, const Insn& i) {
  require_cpl0(core);
  const uint16_t w = core.get<uint16_t>(i, i.op[0]);
  CpuState& s = core.state();
  // Loads PE, MP, EM and TS; PE can be set but not cleared.
  s.cr0 = (s.cr0 & ~uint64_t(CR0_MP | CR0_EM | CR0_TS)) | (w & (CR0_MP | CR0_EM | CR0_TS)) | (s.cr0 & CR0_PE) |
          (w & CR0_PE);
}

void smsw(Core& core, const Insn& i) {
  if (!check_store_system(core, i)) return;
  store_selector(core, i, core.state().cr0);
}

void clts(Core& core, const Insn&) {
  require_cpl0(core);
  core.state().cr0 &= ~uint64_t(CR0_TS);
}

// ---- TLB, caches, HLT ---------------------------------------------------------------------------

void invlpg(Core& core, const Insn& i) {
  require_cpl0(core);
  const Operand& o = i.op[0];
  uint64_t lin = core.state().seg[o.seg].base + core.effective_address(i, o);
  if (core.long64()) {
    if (o.seg != FS && o.seg != GS) lin = core.effective_address(i, o);
    if (!is_canonical(core.state(), lin)) return;  // INVLPG of a non-canonical address is a no-op
  } else {
    lin &= 0xFFFFFFFFu;
  }
  core.invalidate_page(lin);
}

void invpcid(Core& core, const Insn& i) {
  require_cpl0(core);
  const uint64_t type = core.state().gpr[i.op[0].reg];
  const Operand& m = i.op[1];
  const uint64_t ea = core.effective_address(i, m);
  const uint64_t pcid = core.read<uint64_t>(static_cast<SegReg>(m.seg), ea) ;
  const uint64_t linear = core.read<uint64_t>(static_cast<SegReg>(m.seg), ea + 8);
  if (type > 3 || (pcid >> 12)) throw Fault::gp(0);
  const bool pcide = core.state().cr4 & CR4_PCIDE;
  switch (type) {
    case 0:  // one address of one PCID
      if (!is_canonical(core.state(), linear) || (!pcide && (pcid & 0xFFF))) throw Fault::gp(0);
      core.invalidate_page(linear);
      break;
    case 1:  // every non-global entry of one PCID: the modeled TLBs are not PCID-tagged
      if (!pcide && (pcid & 0xFFF)) throw Fault::gp(0);
      core.flush_tlbs(false);
      break;
    case 2: core.flush_tlbs(true); break;   // everything, global entries too
    default: core.flush_tlbs(false); break;  // everything but global entries
  }
}

// WBINVD/INVD: privileged; the ISA models no data caches, so there is nothing to write back.
void cache_flush(Core& core, const Insn&) { require_cpl0(core); }

void hlt(Core& core, const Insn&) {
  require_cpl0(core);
  core.state().halted = true;
}

// ---- Descriptor-table registers -------------------------------------------------------------------

// LGDT/LIDT: a 6-byte (16/32-bit mode) or 10-byte (64-bit mode) pseudo-descriptor.
void load_table_register(Core& core, const Insn& i, DescriptorTableReg& reg) {
  require_cpl0(core);
  const Operand& o = i.op[0];
  const auto seg = static_cast<SegReg>(o.seg);
  const uint64_t ea = core.effective_address(i, o);
  const uint16_t limit = core.read<uint16_t>(seg, ea);
  uint64_t base;
  if (core.long64()) {
    base = core.read<uint64_t>(seg, ea + 2);
    if (!is_canonical(core.state(), base)) throw Fault::gp(0);
  } else {
    base = core.read<uint32_t>(seg, ea + 2);
    if (i.opsize == 2) base &= 0xFFFFFF;
  }
  reg.limit = limit;
  reg.base = base;
}
void lgdt(Core& core, const Insn& i) { load_table_register(core, i, core.state().gdtr); }
void lidt(Core& core, const Insn& i) { load_table_register(core, i, core.state().idtr); }

void store_table_register(Core& core, const Insn& i, const DescriptorTableReg& reg) {
  const Operand& o = i.op[0];
  const auto seg = static_cast<SegReg>(o.seg);
  const uint64_t ea = core.effective_address(i, o);
  const uint64_t base = reg.base;
  const uint16_t limit = reg.limit;
  if (core.long64()) {
    core.write<uint64_t>(seg, ea + 2, base);
  } else {
    core.write<uint32_t>(seg, ea + 2, static_cast<uint32_t>(i.opsize == 2 ? base & 0xFFFFFF : base));
  }
  core.write<uint16_t>(seg, ea, limit);
}
void sgdt(Core& core, const Insn& i) {
  if (!check_store_system(core, i)) return;
  store_table_register(core, i, core.state().gdtr);
}
void sidt(Core& core, const Insn& i) {
  if (!check_store_system(core, i)) return;
  store_table_register(core, i, core.state().idtr);
}
void sldt(Core& core, const Insn& i) {
  require_protected(core);
  if (!check_store_system(core, i)) return;
  store_selector(core, i, core.state().ldtr.selector);
}
void str(Core& core, const Insn& i) {
  require_protected(core);
  if (!check_store_system(core, i)) return;
  store_selector(core, i, core.state().tr.selector);
}

void lldt(Core& core, const Insn& i) {
  require_protected(core);
  require_cpl0(core);
  const uint16_t sel = core.get<uint16_t>(i, i.op[0]);
  CpuState& s = core.state();
  if (is_null_selector(sel)) {
    s.ldtr = null_segment(sel);
    return;
  }
  if (sel & 4) throw selector_fault(GP, sel);
  Descriptor d = read_descriptor(core, sel, GP, s.long_mode_active());
  if (d.s() || d.type() != kLdt) throw selector_fault(GP, sel);
  if (!d.present()) throw selector_fault(NP, sel);
  Segment ldt = d.to_segment(sel);
  if (s.long_mode_active()) ldt.base = d.base64();
  s.ldtr = ldt;
}

void ltr(Core& core, const Insn& i) {
  require_protected(core);
  require_cpl0(core);
  const uint16_t sel = core.get<uint16_t>(i, i.op[0]);
  CpuState& s = core.state();
  if (is_null_selector(sel)) throw Fault::gp(0);
  if (sel & 4) throw selector_fault(GP, sel);
  Descriptor d = read_descriptor(core, sel, GP, s.long_mode_active());
  const bool available = d.type() == kTssAvailable || (!s.long_mode_active() && d.type() == kTss16Available);
  if (d.s() || !available) throw selector_fault(GP, sel);
  if (!d.present()) throw selector_fault(NP, sel);
  // Mark the TSS busy in the GDT (type bit 1), then load TR.
  d.lo |= 2ull << 40;
  core.write_linear((s.gdtr.base + (sel & 0xFFF8u) + 5) & (s.long_mode_active() ? ~0ull : 0xFFFFFFFFull), 1,
                    (d.lo >> 40) & 0xFF, AccessOrigin::ImplicitSupervisor);
  Segment tr = d.to_segment(sel);
  if (s.long_mode_active()) tr.base = d.base64();
  s.tr = tr;
}

// ---- MSRs ---------------------------------------------------------------------------------------

uint64_t read_msr(Core& core, uint32_t msr) {
  CpuState& s = core.state();
  uint64_t v = 0;
  if (!msr_present(system_config(core).cpu, msr)) throw Fault::gp(0);
  switch (msr) {
    case MSR_TSC: return core.read_tsc();
    case MSR_APIC_BASE: return s.apic_base;
    case MSR_SYSENTER_CS: return s.sysenter_cs;
    case MSR_SYSENTER_ESP: return s.sysenter_esp;
    case MSR_SYSENTER_EIP: return s.sysenter_eip;
    case MSR_PAT: return s.pat;
    case MSR_EFER: return s.efer;
    case MSR_STAR: return s.star;
    case MSR_LSTAR: return s.lstar;
    case MSR_CSTAR: return s.cstar;
    case MSR_FMASK: return s.fmask;
    case MSR_FS_BASE: return s.seg[FS].base;
    case MSR_GS_BASE: return s.seg[GS].base;
    case MSR_KERNEL_GS_BASE: return s.kernel_gs_base;
    case MSR_TSC_AUX: return s.tsc_aux;
    default:
      if (read_machine_msr(s, msr, v)) return v;
      if (vmx::GuestVmx* vmx = system_config(core).vmx; vmx && vmx->read_msr(msr, v)) return v;
      if (Pmu* pmu = system_config(core).pmu; pmu && pmu->read_msr(msr, v)) return v;
      if (MsrDevice* dev = system_config(core).msr_device; dev && dev->read_msr(msr, v)) return v;
      throw Fault::gp(0);
  }
}

void write_msr(Core& core, uint32_t msr, uint64_t v) {
  CpuState& s = core.state();
  auto canonical = [&](uint64_t a) {
    if (!is_canonical(s, a)) throw Fault::gp(0);
    return a;
  };
  const CpuModel& cpu = system_config(core).cpu;
  if (!msr_present(cpu, msr)) throw Fault::gp(0);
  switch (msr) {
    case MSR_TSC: s.tsc = v - (core.read_tsc() - s.tsc); break;
    case MSR_APIC_BASE:
      if ((v & kApicBaseExtd) && !cpu.has(Feature::X2apic)) throw Fault::gp(0);  // x2APIC mode
      if (MsrDevice* dev = system_config(core).msr_device; dev && dev->write_msr(msr, v)) {
        s.apic_base = v;
        break;
      }
      if (v & ~0xFFFFFFFFFD00ull) throw Fault::gp(0);
      s.apic_base = v;
      break;
    case MSR_SYSENTER_CS: s.sysenter_cs = v & 0xFFFF; break;
    case MSR_SYSENTER_ESP: s.sysenter_esp = canonical(v); break;
    case MSR_SYSENTER_EIP: s.sysenter_eip = canonical(v); break;
    case MSR_PAT:
      for (unsigned k = 0; k < 8; ++k) {
        unsigned type = (v >> (8 * k)) & 0xFF;
        if (type == 2 || type == 3 || type > 7) throw Fault::gp(0);
      }
      s.pat = v;
      break;
    case MSR_EFER:
      if (v & ~(efer_supported(cpu) | EFER_LMA)) throw Fault::gp(0);
      if (s.paging() && ((v ^ s.efer) & EFER_LME)) throw Fault::gp(0);  // LME is fixed while paging
      s.efer = v | (s.efer & EFER_LMA);                                  // LMA is read-only
      break;
    case MSR_STAR: s.star = v; break;
    case MSR_LSTAR: s.lstar = canonical(v); break;
    case MSR_CSTAR: s.cstar = canonical(v); break;
    case MSR_FMASK: s.fmask = v & 0xFFFFFFFF; break;
    case MSR_FS_BASE: s.seg[FS].base = canonical(v); break;
    case MSR_GS_BASE: s.seg[GS].base = canonical(v); break;
    case MSR_KERNEL_GS_BASE: s.kernel_gs_base = canonical(v); break;
    case MSR_TSC_AUX:
      if (v >> 32) throw Fault::gp(0);
      s.tsc_aux = v;
      break;
    default:
      if (write_machine_msr(s, msr, v)) break;
      if (vmx::GuestVmx* vmx = system_config(core).vmx; vmx && vmx->write_msr(msr, v)) break;
      if (Pmu* pmu = system_config(core).pmu; pmu && pmu->write_msr(msr, v)) break;
      if (MsrDevice* dev = system_config(core).msr_device; dev && dev->write_msr(msr, v)) break;
      throw Fault::gp(0);
  }
}

void rdmsr(Core& core, const Insn&) {
  require_cpl0(core);
  CpuState& s = core.state();
  const uint64_t v = read_msr(core, static_cast<uint32_t>(s.gpr[RCX]));
  s.gpr[RAX] = static_cast<uint32_t>(v);
  s.gpr[RDX] = v >> 32;
}

void wrmsr(Core& core, const Insn&) {
  require_cpl0(core);
  CpuState& s = core.state();
  write_msr(core, static_cast<uint32_t>(s.gpr[RCX]), (s.gpr[RDX] << 32) | static_cast<uint32_t>(s.gpr[RAX]));
}

// ---- CPUID ----------------------------------------------------------------------------------------

void cpuid(Core& core, const Insn&) {
  CpuState& s = core.state();
  uint32_t leaf = static_cast<uint32_t>(s.gpr[RAX]);
  // IA32_MISC_ENABLE.LIMIT_CPUID: leaf 0 reports 2 as the highest basic leaf, and a higher basic
  // leaf answers as the highest one does (SDM vol. 2, CPUID).
  const bool limited = s.misc_enable & kMiscLimitCpuidMaxval;
  if (limited && leaf > 2 && leaf < 0x40000000) leaf = 2;
  CpuidLeaf r = cpuid_leaf(core, leaf, static_cast<uint32_t>(s.gpr[RCX]));
  if (limited && leaf == 0) r.eax = 2;
  s.gpr[RAX] = r.eax;
  s.gpr[RBX] = r.ebx;
  s.gpr[RCX] = r.ecx;
  s.gpr[RDX] = r.edx;
}

// ---- Time-stamp and performance counters -----------------------------------------------------------

void check_tsd(const Core& core) {
  const CpuState& s = core.state();
  if ((s.cr4 & CR4_TSD) && (s.cr0 & CR0_PE) && s.cpl() > 0) throw Fault::gp(0);
}

void rdtsc(Core& core, const Insn&) {
  check_tsd(core);
  const uint64_t tsc = core.read_tsc();
  core.state().gpr[RAX] = static_cast<uint32_t>(tsc);
  core.state().gpr[RDX] = tsc >> 32;
}

void rdtscp(Core& core, const Insn& i) {
  rdtsc(core, i);
  core.state().gpr[RCX] = static_cast<uint32_t>(core.state().tsc_aux);
}

// RDPMC: at CPL > 0 only with CR4.PCE; the counter ECX selects (isa/system/pmu.h), or #GP(0) when
// it does not exist (every index without a PMU).
void rdpmc(Core& core, const Insn&) {
  CpuState& s = core.state();
  if (!(s.cr4 & CR4_PCE) && (s.cr0 & CR0_PE) && s.cpl() > 0) throw Fault::gp(0);
  Pmu* pmu = system_config(core).pmu;
  if (!pmu || !cpuid_reports(core, Feature::Pmu)) throw Fault::gp(0);
  const uint64_t v = pmu->rdpmc(static_cast<uint32_t>(s.gpr[RCX]));
  s.gpr[RAX] = static_cast<uint32_t>(v);
  s.gpr[RDX] = v >> 32;
}

// ---- SWAPGS, VMCALL -------------------------------------------------------------------------------

void swapgs(Core& core, const Insn&) {
  if (!core.long64()) throw Fault::ud();
  require_cpl0(core);
  CpuState& s = core.state();
  std::swap(s.seg[GS].base, s.kernel_gs_base);
}

void vmcall(Core& core, const Insn&) {
  HypervisorInterface* hv = system_config(core).hypervisor;
  if (!hv || !hv->vmcall(core)) throw Fault::ud();
}

}  // namespace

void register_control(Dispatch& d) {
  constexpr InsnClass S = InsnClass::System;
  d.add(kMovToCr, S, &mov_to_cr, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(kMovFromCr, S, &mov_from_cr, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(kMovToDr, S, &mov_to_dr, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(kMovFromDr, S, &mov_from_dr, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_LMSW, S, &lmsw, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_SMSW, S, &smsw, sensitive(SensitiveInsn::Smsw));
  d.add(ZYDIS_MNEMONIC_CLTS, S, &clts, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_INVLPG, S, &invlpg, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_INVPCID, S, &invpcid, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_WBINVD, S, &cache_flush, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_INVD, S, &cache_flush, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_HLT, S, &hlt, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_LGDT, S, &lgdt, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_LIDT, S, &lidt, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_SGDT, S, &sgdt, sensitive(SensitiveInsn::Sgdt, kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_SIDT, S, &sidt, sensitive(SensitiveInsn::Sidt, kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_SLDT, S, &sldt, sensitive(SensitiveInsn::Sldt, kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_STR, S, &str, sensitive(SensitiveInsn::Str, kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_LLDT, S, &lldt, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_LTR, S, &ltr, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_RDMSR, S, &rdmsr, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_WRMSR, S, &wrmsr, traits(kTraitPrivileged | kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_CPUID, S, &cpuid, traits(kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_RDTSC, S, &rdtsc, traits(kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_RDTSCP, S, &rdtscp, traits(kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_RDPMC, S, &rdpmc, traits(kTraitVmxExit));
  d.add(ZYDIS_MNEMONIC_SWAPGS, S, &swapgs, traits(kTraitPrivileged));
  d.add(ZYDIS_MNEMONIC_VMCALL, S, &vmcall, traits(kTraitVmxExit));
}

}  // namespace pgsim::isa::system

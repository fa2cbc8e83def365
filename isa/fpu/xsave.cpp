// FXSAVE/FXRSTOR and the XSAVE feature set for its x87 and SSE components (SDM vol. 1, ch. 10.5
// and 13; vol. 2): XSAVE, XSAVEOPT, XRSTOR in the standard format, XGETBV and XSETBV with XCR0.
#include "isa/fpu/fpu.h"

namespace pgsim::isa::fpu {
namespace {

// Offsets in the legacy region (SDM vol. 1, table 10-2) and the XSAVE header (13.4.2).
constexpr uint64_t kFcw = 0, kFsw = 2, kFtw = 4, kFop = 6, kFip = 8, kFcs = 12, kFdp = 16, kFds = 20;
constexpr uint64_t kMxcsr = 24, kMxcsrMaskField = 28, kStRegs = 32, kXmmRegs = 160;
constexpr uint64_t kXsaveHeader = 512, kXsaveAreaSize = 576;

// The x87 and SSE components are in their initial configuration (SDM vol. 1, 13.6): XSAVEOPT does
// not write such a component, and XSAVE reports it with a clear XSTATE_BV bit.
uint64_t components_in_use(const FpuState& f) {
  uint64_t in_use = 0;
  if (f.fcw != kFcwReset || f.fsw != 0 || f.ftw != 0 || f.fop != 0 || f.fip != 0 || f.fdp != 0 || f.fcs != 0 ||
      f.fds != 0)
    in_use |= XCR0_X87;
  for (const Xmm& x : f.xmm) {
    if (x.q[0] | x.q[1]) in_use |= XCR0_SSE;
  }
  return in_use;
}

// XRSTOR's initialization of the x87 component also clears the data registers.
void init_x87(FpuState& f) {
  x87_reset(f);
  f.st.fill(Float80{});
}

unsigned xmm_count(const Core& c) { return c.long64() ? 16 : 8; }

// The memory image of an FXSAVE or XSAVE: base segment and offset of its first byte.
struct Area {
  SegReg seg;
  uint64_t base;
};

Area area_of(Core& c, const Insn& i, unsigned alignment) {
  const Operand& m = i.op[0];
  require_aligned(c, i, m, 1, alignment);
  const Area a{static_cast<SegReg>(m.seg), c.effective_address(i, m)};
  return a;
}

// Components 0 and 1 of the legacy region; `wide` selects the 64-bit FIP/FDP layout (REX.W).
void save_x87(Core& c, const Area& a, const FpuState& f, bool wide) {
  c.write<uint16_t>(a.seg, a.base + kFcw, f.fcw);
  c.write<uint16_t>(a.seg, a.base + kFsw, f.fsw);
  c.write<uint16_t>(a.seg, a.base + kFtw, f.ftw);  // with the reserved byte 5 cleared
  c.write<uint16_t>(a.seg, a.base + kFop, f.fop);
  if (wide) {
    c.write<uint64_t>(a.seg, a.base + kFip, f.fip);
    c.write<uint64_t>(a.seg, a.base + kFdp, f.fdp);
  } else {
    c.write<uint32_t>(a.seg, a.base + kFip, static_cast<uint32_t>(f.fip));
    c.write<uint32_t>(a.seg, a.base + kFcs, f.fcs);
    c.write<uint32_t>(a.seg, a.base + kFdp, static_cast<uint32_t>(f.fdp));
    c.write<uint32_t>(a.seg, a.base + kFds, f.fds);
  }
  const unsigned top = (f.fsw >> kFswTopShift) & 7;
  for (unsigned k = 0; k < 8; ++k) {
    const Float80& v = f.st[(top + k) & 7];
    write_bytes(c, a.seg, a.base + kStRegs + 16 * k, Xmm{{v.significand, v.sign_exponent}}, 16);
  }
}

void save_mxcsr(Core& c, const Area& a, const FpuState& f) {
  c.write<uint32_t>(a.seg, a.base + kMxcsr, f.mxcsr);
  c.write<uint32_t>(a.seg, a.base + kMxcsrMaskField, kMxcsrMask);
}

void save_xmm(Core& c, const Area& a, const FpuState& f) {
  for (unsigned k = 0; k < xmm_count(c); ++k) write_bytes(c, a.seg, a.base + kXmmRegs + 16 * k, f.xmm[k], 16);
}

void load_x87(Core& c, const Area& a, FpuState& f, bool wide) {
  f.fcw = x87_control_word(c.read<uint16_t>(a.seg, a.base + kFcw));
  f.fsw = c.read<uint16_t>(a.seg, a.base + kFsw);
  f.ftw = c.read<uint8_t>(a.seg, a.base + kFtw);
  f.fop = c.read<uint16_t>(a.seg, a.base + kFop) & 0x7FF;
  if (wide) {
    f.fip = c.read<uint64_t>(a.seg, a.base + kFip);
    f.fdp = c.read<uint64_t>(a.seg, a.base + kFdp);
    f.fcs = f.fds = 0;
  } else {
    f.fip = c.read<uint32_t>(a.seg, a.base + kFip);
    f.fcs = c.read<uint16_t>(a.seg, a.base + kFcs);
    f.fdp = c.read<uint32_t>(a.seg, a.base + kFdp);
    f.fds = c.read<uint16_t>(a.seg, a.base + kFds);
  }
  const unsigned top = (f.fsw >> kFswTopShift) & 7;
  for (unsigned k = 0; k < 8; ++k) {
    const Xmm raw = read_bytes(c, a.seg, a.base + kStRegs + 16 * k, 10);
    f.st[(top + k) & 7] = Float80{raw.q[0], static_cast<uint16_t>(raw.q[1])};
  }
  x87_update_summary(f);
}

uint32_t load_mxcsr(Core& c, const Area& a) {
  const uint32_t v = c.read<uint32_t>(a.seg, a.base + kMxcsr);
  if (v & ~kMxcsrMask) throw Fault::gp(0);
  return v;
}

void load_xmm(Core& c, const Area& a, FpuState& f) {
  for (unsigned k = 0; k < xmm_count(c); ++k) f.xmm[k] = read_bytes(c, a.seg, a.base + kXmmRegs + 16 * k, 16);
}

bool wide_form(const Insn& i) {
  return i.mnemonic == ZYDIS_MNEMONIC_FXSAVE64 || i.mnemonic == ZYDIS_MNEMONIC_FXRSTOR64 ||
         i.mnemonic == ZYDIS_MNEMONIC_XSAVE64 || i.mnemonic == ZYDIS_MNEMONIC_XRSTOR64 ||
         i.mnemonic == ZYDIS_MNEMONIC_XSAVEOPT64;
}

// FXSAVE / FXSAVE64 m512: #NM with CR0.EM or CR0.TS; #GP(0) unless 16-byte aligned.
void fxsave(Core& c, const Insn& i) {
  require_x87(c);
  const Area a = area_of(c, i, 16);
  probe_write(c, a.seg, a.base, 512);
  const FpuState& f = c.state().fpu;
  save_x87(c, a, f, wide_form(i));
  save_mxcsr(c, a, f);
  save_xmm(c, a, f);
}

// FXRSTOR / FXRSTOR64 m512: the whole image is read (and MXCSR checked) before anything changes.
void fxrstor(Core& c, const Insn& i) {
  require_x87(c);
  const Area a = area_of(c, i, 16);
  FpuState f = c.state().fpu;
  f.mxcsr = load_mxcsr(c, a);
  load_x87(c, a, f, wide_form(i));
  load_xmm(c, a, f);
  c.state().fpu = f;
}

// The requested-feature bitmap of XSAVE/XRSTOR: XCR0 and EDX:EAX.
uint64_t requested(const Core& c) {
  const CpuState& s = c.state();
  return s.xcr0 & ((s.gpr[RDX] << 32) | static_cast<uint32_t>(s.gpr[RAX]));
}

// XSAVE, XSAVE64, XSAVEOPT, XSAVEOPT64 (standard format). XSAVEOPT skips the components in their
// initial configuration (the init optimization; the modified optimization is not modeled, which
// the SDM allows: it only saves writes).
template <bool Optimized> void xsave(Core& c, const Insn& i) {
  require_osxsave(c);
  if (c.state().cr0 & CR0_TS) throw device_not_available();
  const Area a = area_of(c, i, 64);
  probe_write(c, a.seg, a.base, kXsaveAreaSize);
  const FpuState& f = c.state().fpu;
  const uint64_t rfbm = requested(c);
  const uint64_t in_use = components_in_use(f);
  const uint64_t header = c.read<uint64_t>(a.seg, a.base + kXsaveHeader);
  if ((rfbm & XCR0_X87) && (!Optimized || (in_use & XCR0_X87))) save_x87(c, a, f, wide_form(i));
  if (rfbm & XCR0_SSE) save_mxcsr(c, a, f);
  if ((rfbm & XCR0_SSE) && (!Optimized || (in_use & XCR0_SSE))) save_xmm(c, a, f);
  c.write<uint64_t>(a.seg, a.base + kXsaveHeader, (header & ~rfbm) | (in_use & rfbm));
}

// XRSTOR / XRSTOR64 (standard format): components with their XSTATE_BV bit set are loaded, the
// other requested ones initialized; MXCSR is loaded whenever SSE is requested. #GP(0) for a header
// with bits outside XCR0 or nonzero bytes 23:8 (XCOMP_BV: the compacted format is not offered).
void xrstor(Core& c, const Insn& i) {
  require_osxsave(c);
  if (c.state().cr0 & CR0_TS) throw device_not_available();
  const Area a = area_of(c, i, 64);
  const uint64_t xstate_bv = c.read<uint64_t>(a.seg, a.base + kXsaveHeader);
  const uint64_t xcomp_bv = c.read<uint64_t>(a.seg, a.base + kXsaveHeader + 8);
  if (xstate_bv & ~c.state().xcr0) throw Fault::gp(0);
  if (xcomp_bv) throw Fault::gp(0);  // XSAVEC/XSAVES are not offered: only the standard format
  if (c.read<uint64_t>(a.seg, a.base + kXsaveHeader + 16)) throw Fault::gp(0);  // bytes 23:8 must be zero
  const uint64_t rfbm = requested(c);
  FpuState f = c.state().fpu;
  if (rfbm & XCR0_SSE) f.mxcsr = load_mxcsr(c, a);
  if (rfbm & XCR0_X87) {
    if (xstate_bv & XCR0_X87) load_x87(c, a, f, wide_form(i));
    else init_x87(f);
  }
  if (rfbm & XCR0_SSE) {
    if (xstate_bv & XCR0_SSE) load_xmm(c, a, f);
    else f.xmm.fill(Xmm{});
  }
  c.state().fpu = f;
}

// XGETBV: XCR0 for ECX = 0; XINUSE (ECX = 1) is not offered (CPUID.(EAX=0DH,ECX=1):EAX[2] = 0).
void xgetbv(Core& c, const Insn&) {
  require_osxsave(c);
  CpuState& s = c.state();
  if (static_cast<uint32_t>(s.gpr[RCX]) != 0) throw Fault::gp(0);
  s.gpr[RAX] = static_cast<uint32_t>(s.xcr0);
  s.gpr[RDX] = s.xcr0 >> 32;
}

// XSETBV: CPL 0, ECX = 0, x87 always enabled, no unsupported component.
void xsetbv(Core& c, const Insn&) {
  require_osxsave(c);
  if (c.state().cpl() != 0) throw Fault::gp(0);
  CpuState& s = c.state();
  const uint64_t v = (s.gpr[RDX] << 32) | static_cast<uint32_t>(s.gpr[RAX]);
  if (static_cast<uint32_t>(s.gpr[RCX]) != 0 || !(v & XCR0_X87) || (v & ~kXcr0Supported)) throw Fault::gp(0);
  s.xcr0 = v;
}

}  // namespace

void register_xsave(Dispatch& d) {
  constexpr InsnClass S = InsnClass::Store, L = InsnClass::Load;
  d.add(ZYDIS_MNEMONIC_FXSAVE, S, &fxsave);
  d.add(ZYDIS_MNEMONIC_FXSAVE64, S, &fxsave);
  d.add(ZYDIS_MNEMONIC_FXRSTOR, L, &fxrstor);
  d.add(ZYDIS_MNEMONIC_FXRSTOR64, L, &fxrstor);
  d.add(ZYDIS_MNEMONIC_XSAVE, S, &xsave<false>);
  d.add(ZYDIS_MNEMONIC_XSAVE64, S, &xsave<false>);
  d.add(ZYDIS_MNEMONIC_XSAVEOPT, S, &xsave<true>);
  d.add(ZYDIS_MNEMONIC_XSAVEOPT64, S, &xsave<true>);
  d.add(ZYDIS_MNEMONIC_XRSTOR, L, &xrstor);
  d.add(ZYDIS_MNEMONIC_XRSTOR64, L, &xrstor);
  d.add(ZYDIS_MNEMONIC_XGETBV, InsnClass::Alu, &xgetbv);
  d.add(ZYDIS_MNEMONIC_XSETBV, InsnClass::System, &xsetbv, traits(kTraitPrivileged | kTraitVmxExit));
}

}  // namespace pgsim::isa::fpu

namespace pgsim::isa {

void register_fpu_instructions(Dispatch& d) {
  fpu::register_sse_moves(d);
  fpu::register_sse_arithmetic(d);
  fpu::register_sse_integer(d);
  fpu::register_x87(d);
  fpu::register_xsave(d);
}

}  // namespace pgsim::isa

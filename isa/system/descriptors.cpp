// Segment descriptors and segment-register loads, after Intel SDM vol. 2 (MOV, POP, LAR, LSL,
// VERR, VERW) and vol. 3 (3.4-3.5, 5.5-5.8, 7.2).
#include "isa/system/descriptors.h"

#include "isa/core.h"

namespace pgsim::isa {
namespace {

constexpr AccessOrigin kSystem = AccessOrigin::ImplicitSupervisor;

// Linear addresses of system structures wrap at 4 GiB outside IA-32e mode.
uint64_t table_linear(const CpuState& s, uint64_t linear) {
  return s.long_mode_active() ? linear : (linear & 0xFFFFFFFFu);
}

bool table_of(const CpuState& s, uint16_t selector, uint64_t* base, uint32_t* limit) {
  if (selector & 4) {
    if (is_null_selector(s.ldtr.selector) || !s.ldtr.present()) return false;
    *base = s.ldtr.base;
    *limit = s.ldtr.limit;
  } else {
    *base = s.gdtr.base;
    *limit = s.gdtr.limit;
  }
  return true;
}

uint64_t tss_field(Core& core, uint32_t offset, unsigned size) {
  const Segment& tr = core.state().tr;
  if (offset + size - 1 > tr.limit) throw selector_fault(TS, tr.selector);
  return core.read_linear(table_linear(core.state(), tr.base + offset), size, kSystem);
}

}  // namespace

bool descriptor_within_limit(const CpuState& s, uint16_t selector, unsigned bytes) {
  uint64_t base = 0;
  uint32_t limit = 0;
  return table_of(s, selector, &base, &limit) && (selector & 0xFFF8u) + bytes - 1 <= limit;
}

Descriptor read_descriptor(Core& core, uint16_t selector, uint8_t vector, bool wide, bool ext) {
  const CpuState& s = core.state();
  uint64_t base = 0;
  uint32_t limit = 0;
  const unsigned bytes = wide ? 16 : 8;
  if (!table_of(s, selector, &base, &limit) || (selector & 0xFFF8u) + bytes - 1 > limit)
    throw selector_fault(vector, selector, ext);
  Descriptor d;
  uint64_t at = base + (selector & 0xFFF8u);
  d.lo = core.read_linear(table_linear(s, at), 8, kSystem);
  if (wide) d.hi = core.read_linear(table_linear(s, at + 8), 8, kSystem);
  return d;
}

void mark_accessed(Core& core, uint16_t selector, Descriptor& d) {
  if (!d.s() || (d.type() & 1)) return;
  d.lo |= 1ull << 40;
  uint64_t base = 0;
  uint32_t limit = 0;
  table_of(core.state(), selector, &base, &limit);
  uint64_t access_byte = base + (selector & 0xFFF8u) + 5;
  core.write_linear(table_linear(core.state(), access_byte), 1, (d.lo >> 40) & 0xFF, kSystem);
}

Descriptor read_idt_gate(Core& core, uint8_t vector, bool ext) {
  const CpuState& s = core.state();
  const unsigned bytes = s.long_mode_active() ? 16 : 8;
  const uint32_t error = vector * 8u + 2 + (ext ? 1 : 0);
  if (uint32_t(vector) * bytes + bytes - 1 > s.idtr.limit) throw Fault::gp(error);
  Descriptor d;
  uint64_t at = s.idtr.base + uint64_t(vector) * bytes;
  d.lo = core.read_linear(table_linear(s, at), 8, kSystem);
  if (bytes == 16) d.hi = core.read_linear(at + 8, 8, kSystem);
  return d;
}

Segment null_segment(uint16_t selector) { return {selector, 0, 0, 0}; }

void load_segment(Core& core, SegReg reg, uint16_t selector) {
  CpuState& s = core.state();
  if (!(s.cr0 & CR0_PE) || (s.rflags & VM)) {  // real and virtual-8086 mode: base = selector * 16
    s.seg[reg].selector = selector;
    s.seg[reg].base = uint64_t(selector) << 4;
    return;
  }
  const unsigned cpl = s.cpl(), rpl = selector & 3;
  if (reg == SS) {
    if (is_null_selector(selector)) {
      // 64-bit mode allows a null SS below ring 3 when RPL = CPL (SDM vol. 2, MOV).
      if (!(core.long64() && cpl < 3 && rpl == cpl)) throw Fault::gp(0);
      s.seg[SS] = null_segment(selector);
      s.seg[SS].attr = static_cast<uint16_t>(cpl << 5);
      return;
    }
    Descriptor d = read_descriptor(core, selector);
    if (rpl != cpl || !d.writable() || d.dpl() != cpl) throw selector_fault(GP, selector);
    if (!d.present()) throw selector_fault(SS_, selector);
    mark_accessed(core, selector, d);
    s.seg[SS] = d.to_segment(selector);
    return;
  }
  if (is_null_selector(selector)) {
    s.seg[reg] = null_segment(selector);
    return;
  }
  Descriptor d = read_descriptor(core, selector);
  if (!(d.data() || (d.code() && d.readable()))) throw selector_fault(GP, selector);
  if (!d.conforming() && (rpl > d.dpl() || cpl > d.dpl())) throw selector_fault(GP, selector);
  if (!d.present()) throw selector_fault(NP, selector);
  mark_accessed(core, selector, d);
  s.seg[reg] = d.to_segment(selector);
}

void load_code_segment(Core& core, uint16_t selector, Descriptor d, unsigned cpl) {
  mark_accessed(core, selector, d);
  Segment cs = d.to_segment(static_cast<uint16_t>((selector & ~3u) | cpl));
  cs.attr = static_cast<uint16_t>((cs.attr & ~0x60u) | (cpl << 5));
  core.state().seg[CS] = cs;
}

void nullify_inaccessible_data_segments(Core& core) {
  CpuState& s = core.state();
  const unsigned cpl = s.cpl();
  for (SegReg r : {ES, FS, GS, DS}) {
    const Segment& seg = s.seg[r];
    if (is_null_selector(seg.selector) || !seg.present()) continue;
    bool conforming_code = (seg.type() & 0xC) == 0xC;
    if (!conforming_code && seg.dpl() < cpl) s.seg[r] = null_segment(0);
  }
}

Descriptor check_stack_segment(Core& core, uint16_t selector, unsigned cpl, uint8_t vector) {
  if (is_null_selector(selector)) throw selector_fault(vector, selector);
  if ((selector & 3u) != cpl) throw selector_fault(vector, selector);
  Descriptor d = read_descriptor(core, selector, vector);
  if (d.dpl() != cpl || !d.writable()) throw selector_fault(vector, selector);
  if (!d.present()) throw selector_fault(SS_, selector);
  return d;
}

void tss32_stack(Core& core, unsigned dpl, uint16_t* ss, uint32_t* esp) {
  bool tss16 = (core.state().tr.type() & 7) == kTss16Available;  // types 1 and 3
  if (tss16) {
    *esp = static_cast<uint32_t>(tss_field(core, 2 + 4 * dpl, 2));
    *ss = static_cast<uint16_t>(tss_field(core, 4 + 4 * dpl, 2));
  } else {
    *esp = static_cast<uint32_t>(tss_field(core, 4 + 8 * dpl, 4));
    *ss = static_cast<uint16_t>(tss_field(core, 8 + 8 * dpl, 2));
  }
}

uint64_t tss64_rsp(Core& core, unsigned dpl) { return tss_field(core, 4 + 8 * dpl, 8); }
uint64_t tss64_ist(Core& core, unsigned ist) { return tss_field(core, 0x24 + 8 * (ist - 1), 8); }

bool query_selector(Core& core, uint16_t selector, SelectorQuery q, Descriptor* out) {
  const CpuState& s = core.state();
  if (is_null_selector(selector) || !descriptor_within_limit(s, selector)) return false;
  Descriptor d = read_descriptor(core, selector);
  if (out) *out = d;
  const unsigned cpl = s.cpl(), rpl = selector & 3;
  const bool visible = d.conforming() || (d.dpl() >= cpl && d.dpl() >= rpl);
  switch (q) {
    case SelectorQuery::AccessRights:
    case SelectorQuery::Limit:
      if (!d.s()) {
        // The system types LAR and LSL accept (SDM vol. 2, tables 3-61 and 3-65).
        unsigned t = d.type();
        bool ok;
        if (s.long_mode_active())
          ok = t == kLdt || t == kTssAvailable || t == kTssBusy || (q == SelectorQuery::AccessRights && t == kCallGate);
        else
          ok = t == kTss16Available || t == kLdt || t == kTss16Busy || t == kTssAvailable || t == kTssBusy ||
               (q == SelectorQuery::AccessRights && (t == kCallGate16 || t == kTaskGate || t == kCallGate));
        if (!ok) return false;
      }
      return visible;
    case SelectorQuery::Readable:
      return d.s() && d.readable() && visible;
    case SelectorQuery::Writable:
      return d.writable() && d.dpl() >= cpl && d.dpl() >= rpl;
  }
  return false;
}

}  // namespace pgsim::isa

// trap_emulate's leak detection: a sensitive instruction about to run directly on the real CPU
// (found by its opcode, with the guest's code read through the guest's own page tables) is first
// evaluated on the virtual CPU in a write sandbox; once the real CPU has run it, the two outcomes
// are compared, and a difference is a leak, counted by instruction and kind (and, with
// vmm.leak_policy: conceal, replaced by the virtual CPU's outcome).
#include "models/vmm/trap_emulate.h"

#include "isa/system/paging.h"

namespace pgsim::vmm {

using namespace isa;

uint64_t TrapEmulateVmm::code_byte(uint64_t linear, bool* ok) {
  const CpuState& v = vcpu_->state();
  if (v.cr3 != code_cr3_ || (linear >> 12) != code_lpage_) {
    WalkRequest req;
    req.linear = linear;
    req.access = AccessKind::Execute;
    const WalkResult w = page_walk(v, vcpu_->bus(), req);
    if (!w.ok) {
      *ok = false;
      return 0;
    }
    code_cr3_ = v.cr3;
    code_lpage_ = linear >> 12;
    code_ppage_ = w.paddr >> 12;
    code_host_ = real_->bus().host_frame(code_ppage_ << 12);  // RAM: read it directly
  }
  if (code_host_) return code_host_[linear & 0xFFF];
  return real_->bus().read(code_ppage_ << 12 | (linear & 0xFFF), 1) & 0xFF;
}

bool TrapEmulateVmm::sensitive_at(Core& real, SensitiveInsn* insn) {
  using S = SensitiveInsn;
  const CpuState& r = real.state();
  const bool long64 = real.long64();
  const uint64_t at = (long64 ? 0 : r.seg[CS].base) + r.rip;
  bool ok = true;
  unsigned k = 0;
  uint64_t b = code_byte(at, &ok);
  // Legacy and REX prefixes.
  while (ok && k < 14 && (b == 0x66 || b == 0x67 || b == 0xF2 || b == 0xF3 || b == 0xF0 || b == 0x2E || b == 0x36 ||
                          b == 0x3E || b == 0x26 || b == 0x64 || b == 0x65 || (long64 && (b & 0xF0) == 0x40)))
    b = code_byte(at + ++k, &ok);
  if (!ok) return false;  // the fetch will fault; the VMM sees that
  switch (b) {
    case 0x9C: *insn = S::Pushf; return true;
    case 0x9D: *insn = S::Popf; return true;
    case 0xCF: *insn = S::Iret; return true;
    case 0xCA: case 0xCB: *insn = S::FarRet; return true;
    case 0x8C: *insn = S::MovFromSreg; return true;
    case 0x8E: *insn = S::LoadSreg; return true;
    case 0x06: case 0x0E: case 0x16: case 0x1E: *insn = S::PushSreg; return !long64;
    case 0x07: case 0x17: case 0x1F: *insn = S::LoadSreg; return !long64;
    case 0x9A: *insn = S::FarCall; return !long64;
    case 0xEA: *insn = S::FarJmp; return !long64;
    case 0xFF: {
      const unsigned reg = (code_byte(at + k + 1, &ok) >> 3) & 7;
      if (!ok || (reg != 3 && reg != 5)) return false;
      *insn = reg == 3 ? S::FarCall : S::FarJmp;
      return true;
    }
    case 0x0F: break;
    default: return false;  // INT n is not here: every software interrupt reaches the VMM
  }
  const uint64_t op = code_byte(at + k + 1, &ok);
  if (!ok) return false;
  const unsigned modrm = static_cast<unsigned>(code_byte(at + k + 2, &ok));
  const unsigned reg = (modrm >> 3) & 7, mod = modrm >> 6;
  switch (op) {
    case 0x00:
      if (!ok) return false;
      if (reg == 0) *insn = S::Sldt;
      else if (reg == 1) *insn = S::Str;
      else if (reg == 4) *insn = S::Verr;
      else if (reg == 5) *insn = S::Verw;
      else return false;
      return true;
    case 0x01:
      if (!ok) return false;
      if (reg == 0 && mod != 3) *insn = S::Sgdt;
      else if (reg == 1 && mod != 3) *insn = S::Sidt;
      else if (reg == 4) *insn = S::Smsw;
      else return false;
      return true;
    case 0x02: *insn = S::Lar; return true;
    case 0x03: *insn = S::Lsl; return true;
    case 0xA0: case 0xA8: *insn = S::PushSreg; return true;
    case 0xA1: case 0xA9: *insn = S::LoadSreg; return true;
    default: return false;
  }
}

void TrapEmulateVmm::start_leak_check(Core& real, SensitiveInsn insn) {
  LeakCheck& c = leak_check_;
  vcpu_->pull(real.state());
  c.active = true;
  c.insn = insn;
  c.rip = real.state().rip;
  c.before = vcpu_->state();
  vcpu_->begin_sandbox();
  const uint64_t retired = vcpu_->execute(1);
  c.writes = vcpu_->end_sandbox();
  sandbox_retired_ += retired;
  c.faulted = retired == 0;
  c.after = vcpu_->state();
  vcpu_->state() = c.before;
  vcpu_->core().sync_mode();
}

void TrapEmulateVmm::finish_leak_check(Core& real) {
  LeakCheck& c = leak_check_;
  c.active = false;
  CpuState seen = c.before;  // what the guest has after the real CPU ran the instruction
  vcpu_->merge_direct(seen, real.state());
  const CpuState& meant = c.after;  // what it would have on the virtual CPU
  constexpr uint64_t kVisibleFlags = CF | PF | AF | ZF | SF | DF | OF | TF | NT | AC | ID;
  bool behavior = c.faulted || seen.gpr != meant.gpr || seen.rip != meant.rip ||
                  ((seen.rflags ^ meant.rflags) & kVisibleFlags);
  for (const auto& [paddr, byte] : c.writes) {
    if (shadow_->is_page_table_frame(paddr >> 12)) continue;  // the guest walk's A/D updates
    if ((real.bus().read(paddr, 1) & 0xFF) != byte) behavior = true;
  }
  const bool control = ((seen.rflags ^ meant.rflags) & (IF | IOPL)) || seen.seg[CS].selector != meant.seg[CS].selector ||
                       seen.seg[SS].selector != meant.seg[SS].selector || seen.cpl() != meant.cpl();
  if (!behavior && !control) return;
  leaks_.record(c.insn, control ? LeakKind::Control : LeakKind::Behavior, c.rip);
  if (!options_.conceal_leaks) return;
  // Conceal: the guest gets the virtual CPU's outcome, memory included.
  vcpu_->state() = meant;
  for (const auto& [paddr, byte] : c.writes) vcpu_->bus().write(paddr, 1, byte);
  vcpu_->core().sync_mode();
  project(real);
}

}  // namespace pgsim::vmm

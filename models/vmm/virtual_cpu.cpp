#include "models/vmm/virtual_cpu.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "isa/system/paging.h"

namespace pgsim::vmm {

using namespace isa;

isa::PhysicalBus& VirtualCpu::bus() { return *this; }

VirtualCpu::VirtualCpu(Core& real)
    : real_(real), core_(static_cast<PhysicalBus&>(*this), static_cast<IoBus&>(*this)) {
  system_ = system_config(real);  // the same profile, MSR device and hypervisor interface
  binding_ = std::make_unique<SystemConfigBinding>(core_, system_);
  core_.set_translator(this);
  core_.set_time_source(this);
  core_.set_trap_hook(this, true);
  core_.state() = real.state();
  vif_carries_if_ = system_.profile.at_cpl_above_0(SensitiveInsn::Popf) == Behavior::Insensitive;
  core_.sync_mode();
}

VirtualCpu::~VirtualCpu() = default;

uint64_t VirtualCpu::execute(uint64_t steps) {
  // The boundary before the first step lets it run; the one before step `steps + 1` stops.
  boundaries_left_ = steps + 1;
  const isa::CoreCounters& c = core_.counters();
  const uint64_t before = c.retired, events = c.events, work = c.steps();
  // A bounded number of steps per call, so that one emulated REP string instruction on device
  // memory cannot keep the host busy: it stops between two iterations and the real CPU, which
  // re-executes it, traps again for the rest. Never past the real CPU's own step limit: these
  // steps are its steps.
  constexpr uint64_t kMaxStepsPerCall = 1 << 16;
  core_.run(steps, std::min<uint64_t>(kMaxStepsPerCall, real_.string_iteration_allowance()));
  boundaries_left_ = 0;
  real_.count_delegated_steps(c.steps() - work);
  suspended_ = c.retired == before && c.events == events && !core_.is_shutdown() && !core_.state().halted;
  return c.retired - before;
}

bool VirtualCpu::refuses(uint64_t paddr) {
  if (!is_vmm_memory(paddr)) return false;
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "the guest reaches physical address %#llx, which is the VMM's memory, not guest RAM",
                static_cast<unsigned long long>(paddr));
  core_.shutdown(buf);
  return true;
}

void VirtualCpu::write(uint64_t paddr, unsigned size, uint64_t value) {
  if (host_physical && (paddr & 0xFFF) + size > 0x1000) {  // pages may lie apart in host memory
    for (unsigned k = 0; k < size; ++k) write(paddr + k, 1, value >> (8 * k));
    return;
  }
  paddr = host_address(paddr);
  if (refuses(paddr)) return;
  if (sandbox_) {
    for (unsigned k = 0; k < size; ++k) overlay_[paddr + k] = static_cast<uint8_t>(value >> (8 * k));
    return;
  }
  // RAM through its host pointer, as the bus itself would write it; device memory through the bus.
  uint8_t* frame = real_.bus().host_frame(paddr);
  if (!frame) ++device_accesses_;
  if (before_write) before_write(paddr, size, value);
  if (frame && (paddr & 0xFFF) + size <= 0x1000) store_host(frame + (paddr & 0xFFF), size, value);
  else real_.bus().write(paddr, size, value);
  real_.invalidate_decoded(paddr, size);
}

uint32_t VirtualCpu::in(uint16_t port, unsigned size) {
  ++device_accesses_;
  return real_.io().in(port, size);
}

void VirtualCpu::out(uint16_t port, unsigned size, uint32_t value) {
  ++device_accesses_;
  real_.io().out(port, size, value);
}

Translation VirtualCpu::translate(const CpuState& state, uint64_t linear, AccessKind kind, bool user,
                                  AccessOrigin origin) {
  WalkRequest req;
  req.linear = linear;
  req.access = kind;
  req.user = user;
  req.implicit = origin == AccessOrigin::ImplicitSupervisor;
  // The memo checks a walk's entries where the real bus has them: only while the virtual CPU reads
  // memory as the real bus does (no shuffled layout, no hidden root entries, no sandbox).
  const bool memo = !host_physical && !hidden_root_entries_ && !sandbox_;
  WalkResult w;
  WalkTrace trace;
  if (memo) walk_memo_.note_state(state);
  if (!memo || !walk_memo_.find(req, w)) {
    w = page_walk(state, *this, req, nullptr, nullptr, memo ? &trace : nullptr);
    bool in_vmm_memory = false;  // a walk that reads the VMM's memory stops the run: never remembered
    for (unsigned i = 0; i < trace.count; ++i) in_vmm_memory |= is_vmm_memory(trace.paddr[i]);
    if (memo && w.ok && !in_vmm_memory) walk_memo_.record(req, trace, w, real_.bus());
  }
  Translation t;
  t.ok = w.ok;
  t.fault = w.fault;
  t.paddr = w.paddr;
  t.cacheable = false;  // the guest's tables change under the virtual CPU's feet: no soft-TLB entry
  return t;
}

void VirtualCpu::invalidate_page(uint64_t linear) {
  if (on_invalidate_page) on_invalidate_page(linear);
}

void VirtualCpu::flush(bool) {
  if (on_flush) on_flush();
}

void VirtualCpu::pull(const CpuState& real) {
  merge_direct(core_.state(), real);
  core_.sync_mode();
}

void VirtualCpu::merge_direct(CpuState& v, const CpuState& real) {
  v.gpr = real.gpr;
  v.fpu = real.fpu;  // x87 and SSE state: directly executed code changes it without trapping
  v.rip = real.rip;
  v.rflags = (v.rflags & ~kGuestOwnedFlags) | (real.rflags & kGuestOwnedFlags);
  if (const uint64_t flag = flag_in_real_vif(v)) v.rflags = (v.rflags & ~flag) | ((real.rflags & VIF) ? flag : 0);
  for (SegReg s : {CS, SS, ES, DS, FS, GS}) {
    // Unchanged: the VMM's copy stands (it differs from the real one only as real_segment()
    // makes it; FS and GS bases change only by trapping WRMSR/SWAPGS).
    const Segment expected = real_segment(v, s);
    const Segment& r = real.seg[s];
    if (r.selector == expected.selector && r.base == expected.base && r.limit == expected.limit &&
        (r.attr | 0x60) == (expected.attr | 0x60))
      continue;
    // A segment the guest loaded directly (a data segment, or CS and SS by a far transfer or IRET
    // that did not trap): its hidden part is the guest descriptor's, whose privilege the shadow
    // GDT raised; the guest's own GDT entry gives it back, and CS and SS their RPL (the CPL).
    v.seg[s] = r;
    const uint16_t sel = r.selector;
    if ((sel & ~3u) == 0 || (sel & 4) || (sel | 7u) > v.gdtr.limit) continue;
    try {
      const uint64_t lo = core_.read_linear(v.gdtr.base + (sel & ~7u), 8, AccessOrigin::ImplicitSupervisor);
      v.seg[s].attr = static_cast<uint16_t>((lo >> 40) & 0xF0FF);
    } catch (const Fault&) {
      // The guest's GDT is not mapped: keep what the real CPU loaded.
    }
  }
  // CS and SS selectors carry the CPL, which is the code segment's own privilege.
  const unsigned cpl = v.seg[CS].dpl();
  for (SegReg s : {CS, SS})
    if (v.seg[s].selector & ~3u) v.seg[s].selector = static_cast<uint16_t>((v.seg[s].selector & ~3u) | cpl);
  v.dr = real.dr;
  v.halted = real.halted;
}

Segment VirtualCpu::real_segment(const CpuState& v, SegReg s) const {
  Segment r = v.seg[s];
  const unsigned cpl = real_cpl(v);
  if (r.s() && r.dpl() < cpl) r.attr = static_cast<uint16_t>((r.attr & ~0x60u) | (cpl << 5));
  if (s == CS || s == SS) r.selector = static_cast<uint16_t>((r.selector & ~3u) | cpl);
  if (s == CS && !v.long_mode_active()) r.attr &= static_cast<uint16_t>(~0x2000u);
  return r;
}

void VirtualCpu::begin_sandbox() {
  sandbox_ = true;
  overlay_.clear();
}

std::map<uint64_t, uint8_t> VirtualCpu::end_sandbox() {
  sandbox_ = false;
  return std::move(overlay_);
}

uint64_t VirtualCpu::read(uint64_t paddr, unsigned size) {
  if (host_physical && (paddr & 0xFFF) + size > 0x1000) {  // pages may lie apart in host memory
    uint64_t v = 0;
    for (unsigned k = 0; k < size; ++k) v |= read(paddr + k, 1) << (8 * k);
    return v;
  }
  if (hidden_root_entries_) {
    const uint64_t root = core_.state().cr3 & isa::kPhysFrameMask;
    const uint64_t first = root + 8 * hidden_first_, end = root + 8 * (hidden_last_ + 1);
    if (paddr + size > first && paddr < end) return 0;  // the VMM's entries: empty in the guest's view
  }
  paddr = host_address(paddr);
  if (refuses(paddr)) return ~0ull >> (64 - 8 * size);
  // RAM through its host pointer, as the bus itself would read it; device memory through the bus.
  const uint8_t* frame = real_.bus().host_frame(paddr);
  if (!frame) ++device_accesses_;
  uint64_t v = frame && (paddr & 0xFFF) + size <= 0x1000 ? load_host(frame + (paddr & 0xFFF), size)
                                                         : real_.bus().read(paddr, size);
  if (!sandbox_ || overlay_.empty()) return v;
  for (unsigned k = 0; k < size; ++k) {
    auto it = overlay_.find(paddr + k);
    if (it != overlay_.end()) v = (v & ~(0xFFull << (8 * k))) | (uint64_t{it->second} << (8 * k));
  }
  return v;
}

bool VirtualCpu::copy_from_ram(uint64_t paddr, uint8_t* out, unsigned n) {
  if (n == 0 || (paddr & 0xFFF) + n > 0x1000) return false;
  if (sandbox_ && !overlay_.empty()) return false;  // the overlay's bytes replace memory's one by one
  if (hidden_root_entries_) {
    const uint64_t root = core_.state().cr3 & isa::kPhysFrameMask;
    if (paddr + n > root + 8 * hidden_first_ && paddr < root + 8 * (hidden_last_ + 1)) return false;
  }
  const uint64_t host = host_address(paddr);
  if (is_vmm_memory(host) || is_vmm_memory(host + n - 1)) return false;  // read() stops the run there
  const uint8_t* frame = real_.bus().host_frame(host);
  if (!frame) return false;  // device memory: read() counts each access
  std::memcpy(out, frame + (host & 0xFFF), n);
  return true;
}

}  // namespace pgsim::vmm

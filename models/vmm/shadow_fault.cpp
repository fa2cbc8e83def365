#include "models/vmm/shadow_fault.h"

#include <cstdio>

#include "models/stats/stats.h"

namespace pgsim::vmm {

using namespace isa;

namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

ShadowFault examine_shadow_fault(ShadowPager& shadow, const CpuState& v, PhysicalBus& bus, const Event& event,
                                 bool user, const VmmMemory& vmm,
                                 const std::function<void(uint64_t frame)>& on_code_write) {
  ShadowCounters& count = shadow.counters();
  const uint64_t linear = event.cr2;
  WalkRequest req;
  req.linear = linear;
  req.access = (event.error_code & PFERR_W) ? AccessKind::Write
               : (event.error_code & PFERR_I) ? AccessKind::Execute
                                               : AccessKind::Read;
  req.user = user;
  TableFrames tables(shadow, v);  // a new guest page table is write-protected where a shadow maps it
  // PAE paging outside IA-32e mode reads its PDPT without a reference the walk reports; it is a
  // guest page table all the same, and must be write-protected like the others.
  if (paging_mode(v) == PagingMode::Pae) tables.on_reference(v.cr3 & 0xFFFFFFE0u, 3);
  ShadowFault f;
  f.walk = page_walk(v, bus, req, &tables);
  f.sources = std::move(tables.entries);
  const WalkResult& w = f.walk;
  if (!w.ok) {
    ++count.true_faults;
    f.kind = ShadowFault::Kind::Guest;
    return f;
  }
  if (linear >= kVmmLinearBase && linear - kVmmLinearBase < kVmmLinearSize) {
    f.kind = ShadowFault::Kind::Refused;
    f.refusal = "the guest maps linear address " + hex(linear) + ", which the VMM reserves for its own structures (" +
                hex(kVmmLinearBase) + "...)";
    return f;
  }
  if (vmm.contains(w.paddr)) {
    f.kind = ShadowFault::Kind::Refused;
    f.refusal = "the guest reaches physical address " + hex(w.paddr) + " (linear " + hex(linear) +
                "), which is the VMM's memory, not guest RAM";
    return f;
  }
  if (!shadow.is_ram(w.paddr)) {
    f.kind = ShadowFault::Kind::Mmio;
    return f;
  }
  // With the guest's paging off there are no guest page tables in use and no dirty bits to keep;
  // its GDT is traced all the same.
  const uint64_t frame = w.paddr >> 12;
  f.page_table = v.paging() && shadow.is_page_table_frame(frame);
  f.gdt = shadow.is_gdt_frame(frame);
  // A write to code the strategy translated: it drops its translations first; the write is
  // emulated, so that it is done before the guest's next instruction is translated again.
  const bool code = req.access == AccessKind::Write && on_code_write && shadow.is_code_frame(frame);
  if (code) on_code_write(frame);
  if (req.access == AccessKind::Write && (f.page_table || f.gdt || code || !w.writable)) {
    if (f.page_table) ++count.traced_writes;
    if (f.gdt) ++count.gdt_traced_writes;
    f.kind = ShadowFault::Kind::TracedWrite;
    return f;
  }
  ++count.hidden_faults;
  f.kind = ShadowFault::Kind::Hidden;
  return f;
}

bool fill_shadow(ShadowPager& shadow, uint64_t root, const CpuState& v, uint64_t linear, const ShadowFault& f,
                 bool identity_2m) {
  const bool paging = v.paging();
  const WalkResult& w = f.walk;
  // A protection key that forbids writes leaves the shadow entry read-only, so that the write
  // faults into the VMM, whose walk with the guest's PKRU finds the guest's own #PF. (A key that
  // forbids reads is met only by a fetch's fill: the guest's data accesses there go unchecked.)
  const bool writable = w.writable && (w.dirty || !paging) && !w.key_write_denied &&
                        !shadow.is_write_protected(w.paddr >> 12);
  return !paging && identity_2m ? shadow.fill_identity_2m(root, linear) : shadow.fill(root, linear, w, writable, f.sources);
}

void bind_shadow_statistics(stats::Registry& r, const ShadowCounters& s) {
  using stats::Unit;
  r.bind("vmm.shadow.hidden_faults", Unit::Count, "page faults the guest's tables allow (the shadow lacked the entry)",
         &s.hidden_faults);
  r.bind("vmm.shadow.true_faults", Unit::Count, "page faults reflected to the guest", &s.true_faults);
  r.bind("vmm.shadow.fills", Unit::Count, "shadow page-table leaf entries built", &s.fills);
  r.bind("vmm.shadow.traced_writes", Unit::Count, "guest writes to its write-protected page tables, emulated",
         &s.traced_writes);
  r.bind("vmm.shadow.cr3_switches", Unit::Count, "guest address-space switches", &s.cr3_switches);
  r.bind("vmm.shadow.cache_hits", Unit::Count, "address-space switches to a kept shadow", &s.cache_hits);
  r.bind("vmm.shadow.cache_misses", Unit::Count, "address-space switches that started a new shadow", &s.cache_misses);
  r.bind("vmm.shadow.flushes", Unit::Count,
         "times every shadow was dropped (guest paging-mode change in CR0/CR4, shadow pool exhausted)", &s.flushes);
  r.bind("vmm.shadow.entry_invalidations", Unit::Count,
         "shadow leaf entries dropped because a guest paging entry they were built from changed", &s.entry_invalidations);
  r.bind("vmm.shadow.write_protections", Unit::Count,
         "shadow leaf entries made read-only because the guest frame they map became a page table or GDT page",
         &s.write_protections);
  r.bind("vmm.shadow.gdt_traced_writes", Unit::Count, "guest writes to its write-protected GDT pages, emulated",
         &s.gdt_traced_writes);
  r.bind("vmm.shadow.gdt_entry_updates", Unit::Count,
         "guest GDT entries written (by the guest or by its virtual CPU) and shadowed anew", &s.gdt_entry_updates);
  r.bind("vmm.shadow.gdt_resyncs", Unit::Count, "times the guest GDT was read whole (loaded, moved or remapped)",
         &s.gdt_resyncs);
  r.bind("vmm.shadow.invalidations", Unit::Count, "guest INVLPGs applied to the shadows", &s.invalidations);
  r.bind("vmm.shadow.table_frames", Unit::Count, "shadow page-table frames in use at the end", &s.table_frames);
  r.bind("vmm.shadow.unprotected", Unit::Count,
         "guest frames no longer write-protected as page tables after a flood of writes", &s.unprotected);
}

}  // namespace pgsim::vmm

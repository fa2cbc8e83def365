#include "models/vmm/deprivileged_guest.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include <Zydis/Zydis.h>

#include "isa/system/descriptors.h"
#include "isa/system/paging.h"
#include "isa/system/system_config.h"
#include "models/stats/stats.h"

namespace pgsim::vmm {

using namespace isa;

namespace {

// The VMM's area (physical, from Machine::vmm_memory_base; linear, at kVmmLinearBase).
constexpr uint64_t kGdtOffset = 0;            // the shadow GDT: up to 64 KiB
constexpr uint64_t kIdtOffset = 16 * 4096;    // the VMM's IDT: 256 64-bit gates
constexpr uint64_t kTssOffset = 17 * 4096;    // the VMM's TSS: no I/O bitmap, so all port I/O traps
constexpr uint64_t kEntryOffset = 18 * 4096;  // where the IDT gates point (the trap router stands in)
constexpr uint64_t kAreaFrames = 19;
constexpr uint64_t kTssLimit = 0x67;
constexpr unsigned kMaxGuestGdtEntries = (65536 - 32) / 8;

constexpr unsigned kDescriptorDplShift = 45;
constexpr uint64_t kDescriptorDpl = 3ull << kDescriptorDplShift;
constexpr uint64_t kDescriptorS = 1ull << 44;
constexpr uint64_t kDescriptorCode = 1ull << 43;
constexpr uint64_t kDescriptorP = 1ull << 47;
constexpr uint64_t kDescriptorL = 1ull << 53;

// The PDPT of PAE paging outside IA-32e mode: 32-byte aligned, below 4 GiB.
uint64_t pae_pdpt(const CpuState& v) { return v.cr3 & 0xFFFFFFE0u; }

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

DeprivilegedGuest::DeprivilegedGuest(const char* strategy, const Machine& machine, const VmmCosts& costs,
                                     const VmmOptions& options, VmmCycles& cycles, uint64_t& violations,
                                     uint64_t reserved_bytes)
    : strategy_(strategy),
      machine_(machine),
      costs_(costs),
      options_(options),
      reserved_bytes_(reserved_bytes),
      violations_(violations),
      trap_cycles_(cycles.add_counter("vmm_trap", "cycles delivering traps from the deprivileged guest into the VMM")),
      emulate_cycles_(cycles.add_counter("vmm_emulate", "cycles the VMM spends emulating privileged instructions")),
      emulate_io_cycles_(cycles.add_counter("vmm_emulate_io", "cycles the VMM spends emulating port I/O instructions")),
      reflect_cycles_(cycles.add_counter("vmm_reflect",
                                         "cycles the VMM spends delivering exceptions and interrupts to the guest's IDT")),
      shadow_fill_cycles_(cycles.add_counter("vmm_shadow_fill", "cycles filling shadow page tables on hidden page faults")),
      shadow_trace_cycles_(
          cycles.add_counter("vmm_shadow_trace", "cycles emulating guest writes to its page tables and GDT")),
      resume_cycles_(cycles.add_counter("vmm_resume", "cycles returning from the VMM to the deprivileged guest")),
      interpret_cycles_(cycles.add_counter("vmm_interpret",
                                           "cycles interpreting the guest in real or virtual-8086 mode or at an IOPL "
                                           "not below the real CPL (not run directly)")),
      emulate_mmio_cycles_(cycles.add_counter(
          "vmm_emulate_mmio", "cycles the VMM spends emulating guest accesses to device memory (MMIO)")) {
  if (options.deprivileged_cpl_prot32 < 1 || options.deprivileged_cpl_prot32 > 3)
    throw std::invalid_argument(stop_message("vmm.deprivileged_cpl_prot32 must be 1, 2 or 3 (the guest kernel's "
                                             "deprivileged CPL in 32-bit protected mode); it is " +
                                             std::to_string(options.deprivileged_cpl_prot32)));
  if (machine.vmm_memory_size < (kAreaFrames + 64) * 4096 + reserved_bytes)
    throw std::invalid_argument(stop_message("needs RAM above guest RAM for the VMM (at least " +
                                             std::to_string(((kAreaFrames + 64) * 4096 + reserved_bytes) / 1024) +
                                             " KiB); it has " + std::to_string(machine.vmm_memory_size / 1024) +
                                             " KiB"));
  shadow_ = std::make_unique<ShadowPager>(machine.core.bus(), machine.vmm_memory_base + kAreaFrames * 4096,
                                          (machine.vmm_memory_size - reserved_bytes) / 4096 - kAreaFrames,
                                          2 * std::max(1u, options.shadow_cached_roots), machine.vmm_memory_base,
                                          kAreaFrames);
  cycles.add_formula("vmm_device_model", "cycles the VMM's software device models spend on the guest's device accesses",
                     [this, cost = costs.device_model] { return device_accesses() * cost; });
}

DeprivilegedGuest::~DeprivilegedGuest() = default;

void DeprivilegedGuest::attach(Core& real) {
  real_ = &real;
  interrupts_ = machine_.interrupts;
  real.set_interrupt_source(this);
  vcpu_ = std::make_unique<VirtualCpu>(real);  // the guest's state as the loader left it
  vcpu_->set_deprivileged_cpl_prot32(options_.deprivileged_cpl_prot32);
  vcpu_->set_vmm_memory(machine_.vmm_memory_base, machine_.vmm_memory_size);
  vcpu_->on_invalidate_page = [this](uint64_t linear) {
    shadow_->invalidate_page(linear);
    real_->invalidate_page_all_contexts(linear);  // every shadow dropped it
    const uint64_t gdt_first = gdt_view_.base >> 12, page = linear >> 12;
    if (page >= gdt_first && page - gdt_first < gdt_pages_.size()) gdt_stale_ = true;  // may be remapped
  };
  vcpu_->before_write = [this](uint64_t paddr, unsigned size, uint64_t value) {
    before_guest_write(paddr, size, value);
  };
  // A dropped leaf may belong to a shadow other than the current one: its page leaves the real
  // TLBs under every PCID.
  shadow_->on_leaf_changed = [this](uint64_t linear) { real_->invalidate_page_all_contexts(linear); };
  guest_cr0_ = vcpu_->state().cr0;  // the shadows are built for these
  guest_cr4_ = vcpu_->state().cr4;
  write_vmm_structures();
  set_direct(real, runs_directly());
  if (direct_) project(real);
}

void DeprivilegedGuest::set_direct(Core& real, bool direct) {
  direct_ = direct;
  real.set_boundary_calls(!direct);  // the virtual CPU interprets at the real CPU's boundaries
}

bool DeprivilegedGuest::runs_directly() const {
  const CpuState& v = vcpu_->state();
  if (!(v.cr0 & CR0_PE) || (v.rflags & VM)) return false;  // real and virtual-8086 mode: interpreted
  // Right after CR0.PE is set, CS still holds a real-mode segment (no code descriptor, no
  // privilege to deprivilege) until the guest's far jump loads one: interpreted until then.
  if (!v.seg[CS].s() || !(v.seg[CS].type() & 8)) return false;
  // The real IOPL is the guest's: at a real CPL not above it the guest would have the real I/O
  // ports and the real IF (IN/OUT, CLI/STI and POPF would not trap).
  return v.iopl() < vcpu_->real_cpl(v);
}

uint64_t DeprivilegedGuest::shadow_root(bool user_mode) {
  const CpuState& v = vcpu_->state();
  if (guest_tables_real_) return v.cr3 & kPhysFrameMask;  // validated by the strategy
  if (!v.paging()) return shadow_->paging_off_root();
  const uint64_t space = paging_mode(v) == PagingMode::Pae ? pae_pdpt(v) : (v.cr3 & kPhysFrameMask);
  return shadow_->root(space, user_mode);
}

void DeprivilegedGuest::use_guest_tables(unsigned area_pml4_slot) {
  guest_tables_real_ = true;
  area_pml4_slot_ = area_pml4_slot;
  // The area moved: the TSS's stack, the TSS descriptor and the IDT's gates are written anew.
  real_->bus().write(machine_.vmm_memory_base + kTssOffset + 4, 8, area_linear_base() + kEntryOffset + 4096);
  gdt_stale_ = true;
  shadow_gdt_limit_ = 0;
}

uint64_t DeprivilegedGuest::area_pml4_entry() const {
  constexpr uint64_t kPresentWritable = 0x3;  // supervisor-only: the guest at CPL 3 cannot reach it
  return shadow_->vmm_area_pdpt() | kPresentWritable;
}

uint64_t DeprivilegedGuest::area_linear_base() const {
  if (!guest_tables_real_) return kVmmLinearBase;
  const uint64_t base = uint64_t{area_pml4_slot_} << 39;
  return (base & (1ull << 47)) ? base | 0xFFFF000000000000ull : base;  // canonical
}

void DeprivilegedGuest::reserve_user_selectors(uint16_t user_ds, uint16_t user_cs) {
  user_ds_ = user_ds;
  user_cs_ = user_cs;
  gdt_stale_ = true;
  shadow_gdt_limit_ = 0;
}

bool DeprivilegedGuest::is_vmm_memory(uint64_t paddr) const {
  return paddr >= machine_.vmm_memory_base && paddr - machine_.vmm_memory_base < machine_.vmm_memory_size;
}

bool DeprivilegedGuest::is_guest_ram_2m(uint64_t linear) {
  const uint64_t base = linear & ~0x1FFFFFull;
  for (uint64_t frame = base; frame < base + (2ull << 20); frame += 4096)
    if (is_vmm_memory(frame) || !real_->bus().host_frame(frame)) return false;
  return true;
}

// ---- The VMM's own descriptor tables ---------------------------------------------------------

void DeprivilegedGuest::write_vmm_structures() {
  PhysicalBus& bus = real_->bus();
  const uint64_t base = machine_.vmm_memory_base;
  // 64-bit TSS: RSP0 at the top of the VMM's entry page; no I/O permission bitmap (its offset is
  // past the limit), so every IN/OUT at CPL 3 raises #GP.
  bus.write(base + kTssOffset + 4, 8, area_linear_base() + kEntryOffset + 4096);
  bus.write(base + kTssOffset + 0x66, 2, kTssLimit + 1);
  // Interrupt gates into the VMM, in its ring-0 code segment (placed after the guest's entries).
  sync_shadow_gdt();
}

namespace {
// The VMM's own memory, written only where it does not hold the value already: a re-sync rewrites
// whole tables of which few entries change, and every write also drops the decoded code of its
// frame. Each page's host memory is looked up once.
class VmmMemoryWriter {
 public:
  explicit VmmMemoryWriter(PhysicalBus& bus) : bus_(bus) {}
  void write(uint64_t paddr, uint64_t value) {
    if ((paddr >> 12) != page_) {
      page_ = paddr >> 12;
      frame_ = bus_.host_frame(paddr & ~0xFFFull);
    }
    if (frame_ && (paddr & 0xFFF) <= 0x1000 - 8 && load_host(frame_ + (paddr & 0xFFF), 8) == value) return;
    bus_.write(paddr, 8, value);
  }
  // `words` from `paddr` on, compared at once where they lie in one page of host memory.
  void write(uint64_t paddr, const std::vector<uint64_t>& words) {
    const size_t bytes = words.size() * 8;
    if ((paddr & 0xFFF) + bytes <= 0x1000) {
      const uint8_t* frame = bus_.host_frame(paddr & ~0xFFFull);
      if (frame && std::memcmp(frame + (paddr & 0xFFF), words.data(), bytes) == 0) return;
    }
    for (size_t k = 0; k < words.size(); ++k) write(paddr + 8 * k, words[k]);
  }

 private:
  PhysicalBus& bus_;
  uint64_t page_ = ~0ull;
  const uint8_t* frame_ = nullptr;
};
}  // namespace

void DeprivilegedGuest::sync_shadow_gdt() {
  CpuState& v = vcpu_->state();
  const GdtView view{v.gdtr.base, v.cr3, v.gdtr.limit, (v.cr0 & CR0_PE) != 0, v.paging(), v.long_mode_active()};
  if (view == gdt_view_ && !gdt_stale_) return;  // every write to it since was traced
  gdt_view_ = view;
  gdt_stale_ = false;
  ++shadow_->counters().gdt_resyncs;
  const unsigned entries = std::min<unsigned>((v.gdtr.limit + 1u) / 8, kMaxGuestGdtEntries);
  locate_guest_gdt(entries);
  std::vector<uint64_t> guest(entries, 0);
  if (v.cr0 & CR0_PE) {
    // An entry that is not mapped (a user address space without the kernel's GDT, under paravirt)
    // is not present in the shadow either.
    for (unsigned k = 1; k < entries; ++k) {
      const uint64_t entry = v.gdtr.base + k * 8;
      try {
        if (!vcpu_->core().read_linear_if_mapped(entry, 8, AccessOrigin::ImplicitSupervisor, &guest[k])) guest[k] = 0;
      } catch (const Fault&) {
        guest[k] = 0;  // an entry across two pages, one of them not mapped
      }
    }
  }
  guest_gdt_ = guest;
  std::vector<uint64_t> shadow = shadow_descriptors();
  if (shadow == shadow_gdt_ && shadow_gdt_limit_) return;
  shadow_gdt_ = std::move(shadow);

  VmmMemoryWriter vmm_memory(real_->bus());
  const uint64_t gdt = machine_.vmm_memory_base + kGdtOffset;
  for (unsigned k = 0; k < entries; ++k) vmm_memory.write(gdt + k * 8, shadow_gdt_[k]);
  // The reserved ring-3 segments (flat, 64-bit code), then the VMM's ring-0 64-bit code segment
  // and its TSS.
  unsigned first_free = std::max(entries, 1u);
  if (user_cs_) {
    const unsigned ds = user_ds_ >> 3, cs = user_cs_ >> 3;
    vmm_memory.write(gdt + ds * 8, 0x00CFF3000000FFFFull);
    vmm_memory.write(gdt + cs * 8, 0x00AFFB000000FFFFull);
    first_free = std::max({first_free, ds + 1u, cs + 1u});
  }
  const unsigned vmm_code = first_free;
  const unsigned tss = vmm_code + 1;
  vmm_memory.write(gdt + vmm_code * 8, 0x00AF9A000000FFFFull);
  const uint64_t tss_base = area_linear_base() + kTssOffset;
  const uint64_t tss_lo = kTssLimit | ((tss_base & 0xFFFFFF) << 16) | (uint64_t{kTssBusy} << 40) | (1ull << 47) |
                          (((tss_base >> 24) & 0xFF) << 56);
  vmm_memory.write(gdt + tss * 8, tss_lo);
  vmm_memory.write(gdt + tss * 8 + 8, tss_base >> 32);
  shadow_gdt_limit_ = static_cast<uint16_t>(tss * 8 + 15);

  if (idt_image_selector_ != vmm_code * 8u || idt_image_area_ != area_linear_base()) {
    idt_image_selector_ = vmm_code * 8u;
    idt_image_area_ = area_linear_base();
    idt_image_.assign(512, 0);
    for (unsigned vector = 0; vector < 256; ++vector) {
      const uint64_t entry = area_linear_base() + kEntryOffset + vector * 16;
      idt_image_[2 * vector] = (entry & 0xFFFF) | (idt_image_selector_ << 16) | (uint64_t{kIntGate} << 40) |
                               (1ull << 47) | (((entry >> 16) & 0xFFFF) << 48);
      idt_image_[2 * vector + 1] = entry >> 32;
    }
  }
  vmm_memory.write(machine_.vmm_memory_base + kIdtOffset, idt_image_);
  tss_selector_ = static_cast<uint16_t>(tss * 8);
}

std::vector<uint64_t> DeprivilegedGuest::shadow_descriptors() const {
  // Code and data at least at the DPL where the deprivileged guest kernel runs. Outside IA-32e
  // mode, 64-bit code segments are not present: the guest's CPU would not run them as 64-bit code,
  // and the real one, at CPL 1 or 2, would run 64-bit code in a supervisor ring, in reach of the
  // VMM's area; a far transfer into one faults (#NP) and the virtual CPU carries it out.
  const bool ia32e = vcpu_->state().long_mode_active();
  const uint64_t min_dpl = ia32e ? 3 : options_.deprivileged_cpl_prot32;
  std::vector<uint64_t> shadow(guest_gdt_.size(), 0);
  bool wide = false;  // the high half of a 16-byte system descriptor
  for (size_t k = 1; k < guest_gdt_.size(); ++k) {
    uint64_t d = wide ? 0 : guest_gdt_[k];
    wide = false;
    if (d & kDescriptorS) {
      if (((d & kDescriptorDpl) >> kDescriptorDplShift) < min_dpl)
        d = (d & ~kDescriptorDpl) | (min_dpl << kDescriptorDplShift);
      if (!ia32e && (d & kDescriptorCode) && (d & kDescriptorL)) d &= ~kDescriptorP;
    } else if (d != 0) {
      wide = ia32e;
      d = 0;  // system descriptors (the guest's TSS, LDTs, gates) are the VMM's business
    }
    shadow[k] = d;
  }
  return shadow;
}

void DeprivilegedGuest::locate_guest_gdt(unsigned entries) {
  const CpuState& v = vcpu_->state();
  gdt_pages_.clear();
  std::vector<uint64_t> frames;
  TableFrames tables(*shadow_, v);  // the entries that map it are page-table entries to trace too
  if ((v.cr0 & CR0_PE) && entries > 0) {
    for (uint64_t page = v.gdtr.base >> 12; page <= (v.gdtr.base + entries * 8 - 1) >> 12; ++page) {
      WalkRequest req;
      req.linear = page << 12;
      req.implicit = true;
      const WalkResult w = page_walk(v, vcpu_->bus(), req, &tables);
      gdt_pages_.push_back(w.ok ? w.paddr >> 12 : ~0ull);
      if (w.ok) frames.push_back(w.paddr >> 12);
    }
  }
  gdt_sources_ = std::move(tables.entries);
  gdt_sources_span_ = {~0ull, 0};
  for (const ShadowPager::GuestEntry& e : gdt_sources_) {
    gdt_sources_span_.first = std::min(gdt_sources_span_.first, e.paddr);
    gdt_sources_span_.second = std::max(gdt_sources_span_.second, e.paddr + e.size);
  }
  shadow_->set_gdt_frames(frames);
}

void DeprivilegedGuest::trace_gdt_write(uint64_t paddr, unsigned size, uint64_t value) {
  std::vector<size_t> touched;
  for (uint64_t byte = paddr; byte < paddr + size; ++byte) {
    for (size_t page = 0; page < gdt_pages_.size(); ++page) {
      if (gdt_pages_[page] != byte >> 12) continue;
      const uint64_t offset = ((((gdt_view_.base >> 12) + page) << 12) | (byte & 0xFFF)) - gdt_view_.base;
      if (offset >= guest_gdt_.size() * 8) continue;  // before the base or past the limit
      const unsigned shift = 8 * (offset % 8);
      uint64_t& entry = guest_gdt_[offset / 8];
      entry = (entry & ~(0xFFull << shift)) | (((value >> (8 * (byte - paddr))) & 0xFF) << shift);
      if (std::find(touched.begin(), touched.end(), offset / 8) == touched.end()) touched.push_back(offset / 8);
    }
  }
  shadow_->counters().gdt_entry_updates += touched.size();
  if (touched.empty()) return;
  std::vector<uint64_t> shadow = shadow_descriptors();
  const uint64_t gdt = machine_.vmm_memory_base + kGdtOffset;
  for (size_t k = 0; k < shadow.size(); ++k)  // the touched entries, and the one after a 16-byte one
    if (shadow[k] != shadow_gdt_[k]) real_->bus().write(gdt + k * 8, 8, shadow[k]);
  shadow_gdt_ = std::move(shadow);
}

void DeprivilegedGuest::before_guest_write(uint64_t paddr, unsigned size, uint64_t value) {
  if (on_code_write && shadow_->is_code_frame(paddr >> 12)) on_code_write(paddr >> 12);
  shadow_->guest_write(paddr, size, value);
  if (paddr < gdt_sources_span_.second && paddr + size > gdt_sources_span_.first)
    for (const ShadowPager::GuestEntry& e : gdt_sources_)
      if (shadow_->changes_entry(e.paddr, e.size, paddr, size, value)) gdt_stale_ = true;  // the GDT is remapped
  if (shadow_->is_gdt_frame(paddr >> 12) || shadow_->is_gdt_frame((paddr + size - 1) >> 12))
    trace_gdt_write(paddr, size, value);
}

// ---- Real state from virtual state -----------------------------------------------------------

void DeprivilegedGuest::project(Core& real) {
  const CpuState& v = vcpu_->state();
  CpuState& r = real.state();
  const uint64_t old_cr3 = r.cr3;
  sync_shadow_gdt();
  // While the guest's paging stays off, only the paging-off shadow is in use, which no guest table
  // or paging control shapes.
  const bool paging_in_use = (v.cr0 | guest_cr0_) & CR0_PG;
  // The shadows hold the rights the guest's protection keys leave (WRPKRU and WRMSR IA32_PKRS are
  // emulated on the virtual CPU, the real one having no CR4.PKE or PKS).
  const bool keys_changed = (v.cr4 & (CR4_PKE | CR4_PKS)) && (v.pkru != guest_pkru_ || v.pkrs != guest_pkrs_);
  if (paging_in_use && ((v.cr0 ^ guest_cr0_) & (CR0_WP | CR0_PG) || (v.cr4 ^ guest_cr4_) & kCr4PagingBits ||
                        keys_changed)) {
    shadow_->flush_all();  // the guest changed how its tables are read
    tlbs_stale_ = true;
  }
  guest_cr0_ = v.cr0;
  guest_cr4_ = v.cr4;
  guest_pkru_ = v.pkru;
  guest_pkrs_ = v.pkrs;

  r.gpr = v.gpr;
  r.fpu = v.fpu;
  r.xcr0 = v.xcr0;  // XSETBV traps (privileged); the guest's XCR0 is the one its XSAVEs use
  r.rip = v.rip;
  r.rflags = (v.rflags & ~kVmmOwnedFlags) | IF | RF1;  // real: interrupts on
  // The guest's IOPL (below the real CPL, see runs_directly), so that its PUSHF shows it and its
  // POPF traps exactly when it changes it; the real CPL stays above it, so port I/O, CLI and STI trap.
  r.rflags |= v.rflags & IOPL;
  if (const uint64_t flag = vcpu_->flag_in_real_vif(v); v.rflags & flag) r.rflags |= VIF;
  r.halted = v.halted;
  if (v.halted && !(v.rflags & IF)) r.rflags &= ~IF;  // halted with interrupts off: the machine stops, as natively
  r.interrupt_shadow = v.interrupt_shadow;
  for (unsigned s = 0; s < kNumSegRegs; ++s) r.seg[s] = vcpu_->real_segment(v, static_cast<SegReg>(s));

  r.cr0 = (v.cr0 & (CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_AM)) | CR0_PE | CR0_PG | CR0_WP;
  // PCIDs tag the shadows' entries; the guest's own tables (direct paging) switch with a flush.
  const bool pcids = options_.use_pcid && !guest_tables_real_;
  // The shadow pager tells the real CPU of every change to a shadow's translations (a dropped or
  // write-protected leaf, in every context; a flush when shadows go), so the soft TLB may keep the
  // entries of each shadow across the switches, as the modeled TLB keeps them by PCID.
  real.set_soft_tlb_contexts(pcids);
  // On a CPU with UMIP (the profile x86-umip) the VMM turns it on, so that the deprivileged guest's
  // SGDT, SIDT, SLDT, SMSW and STR trap and are emulated on the virtual CPU, where the guest's own
  // CR4.UMIP decides.
  const uint64_t umip = system_config(real).cpu.has(Feature::Umip) ? uint64_t{CR4_UMIP} : 0;
  r.cr4 = CR4_PAE | (pcids ? uint64_t{CR4_PCIDE} : uint64_t{0}) | umip |
          (v.cr4 & (CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_OSXSAVE | CR4_TSD));
  r.efer = EFER_LME | EFER_LMA | EFER_NXE | real_efer_features_;  // no SCE: SYSCALL and SYSRET trap (#UD)
  const uint64_t root = shadow_root(vcpu_->cpl() == 3);
  r.cr3 = root | (pcids ? shadow_->pcid(root) : 0);
  r.cr2 = v.cr2;
  r.cr8 = v.cr8;
  r.dr = v.dr;
  r.gdtr = {area_linear_base() + kGdtOffset, shadow_gdt_limit_};
  r.idtr = {area_linear_base() + kIdtOffset, 0xFFF};
  r.tr = Segment{tss_selector_, area_linear_base() + kTssOffset, static_cast<uint32_t>(kTssLimit),
                 static_cast<uint16_t>(kTssBusy | 0x80)};
  r.ldtr = Segment{0, 0, 0, 0};
  r.star = r.lstar = r.cstar = r.fmask = 0;
  r.sysenter_cs = r.sysenter_esp = r.sysenter_eip = 0;
  r.kernel_gs_base = 0;
  r.pat = v.pat;
  r.tsc = v.tsc;
  r.tsc_aux = v.tsc_aux;
  r.apic_base = v.apic_base;
  real.sync_mode();
  // Switching between live shadows flushes the real TLBs only without PCIDs; with them each shadow's
  // entries stay tagged by its own PCID (the soft TLB, a host-side cache, follows CR3 anyway).
  const bool switch_flushes = !pcids && r.cr3 != old_cr3;
  if (shadow_->take_dropped() || tlbs_stale_ || switch_flushes) real.flush_tlbs(true);
  tlbs_stale_ = false;
  if (after_project) after_project(real);
  expected_ = privileged_of(r);
  // Let a waiting interrupt in (the real CPU itself honours the STI/MOV SS interrupt shadow).
  if ((v.rflags & IF) || r.halted) real.notify_interrupt();
}

DeprivilegedGuest::RealPrivileged DeprivilegedGuest::privileged_of(const CpuState& s) {
  return {s.cr0, s.cr3, s.cr4, s.efer, s.gdtr.base, s.idtr.base, s.tr.base, s.star, s.lstar, s.cstar, s.fmask,
          s.sysenter_eip, s.kernel_gs_base, s.rflags & (IF | IOPL), s.gdtr.limit, s.idtr.limit, s.tr.selector,
          s.ldtr.selector};
}

void DeprivilegedGuest::check_resource_control(const Core& real) {
  if (privileged_of(real.state()) == expected_) return;
  ++violations_;
  if (first_violation_.empty())
    first_violation_ = "real privileged state changed by the guest before RIP " + hex(real.state().rip);
}

// ---- Traps -----------------------------------------------------------------------------------

void DeprivilegedGuest::take_while_interpreting(Core& real, const Event& event) {
  // While the guest is interpreted the real CPU runs nothing of it: only interrupts arrive.
  reflect(event);
  if (vcpu_->core().is_shutdown()) real.shutdown(vcpu_->core().shutdown_reason());
}

void DeprivilegedGuest::enter(Core& real, Entry how) {
  if (how == Entry::Trap) trap_cycles_ += costs_.trap;
  check_resource_control(real);
  const std::optional<bool> inline_if = before_enter ? before_enter(real) : std::nullopt;
  vcpu_->pull(real.state());
  if (inline_if) {
    uint64_t& flags = vcpu_->state().rflags;
    flags = *inline_if ? (flags | IF) : (flags & ~uint64_t(IF));
  }
}

void DeprivilegedGuest::resume(Core& real, Entry how) {
  if (vcpu_->core().is_shutdown()) {
    real.shutdown("the guest's virtual CPU: " + vcpu_->core().shutdown_reason());
    return;
  }
  if (!runs_directly()) {
    set_direct(real, false);  // the guest left protected mode or raised its IOPL: interpreted from here
    real.state().halted = false;
    return;
  }
  if (how == Entry::Trap) resume_cycles_ += costs_.resume;
  project(real);
}

void DeprivilegedGuest::reflect(const Event& event) {
  ++reflected_;
  reflect_cycles_ += costs_.reflect;
  vcpu_->core().route_event(event);
}

void DeprivilegedGuest::emulate_instruction(Emulation why) {
  Core& v = vcpu_->core();
  if (vcpu_->execute(1) == 0) {
    if (vcpu_->suspended()) return;  // a long string instruction, carried on when it traps again
    // The virtual CPU faulted too: the guest's own fault.
    ++reflected_;
    reflect_cycles_ += costs_.reflect;
    return;
  }
  ++emulated_;
  const Insn& insn = *v.current_insn();  // the instruction the virtual CPU just retired
  v.deliver_debug_trap();  // a single step or breakpoint trap after it, before the guest goes on
  emulated_by_mnemonic_.record(insn);
  if (why == Emulation::TracedWrite) return;  // charged as vmm_shadow_trace
  if (why == Emulation::Mmio) {
    ++emulated_mmio_;
    emulate_mmio_cycles_ += costs_.emulate_mmio;
  } else if (is_port_io(insn)) {
    ++emulated_io_;
    emulate_io_cycles_ += costs_.emulate_io;
  } else {
    emulate_cycles_ += costs_.emulate;
  }
}

DeprivilegedGuest::PageFault DeprivilegedGuest::handle_page_fault(Core& real, const Event& event) {
  const CpuState& v = vcpu_->state();
  const uint64_t linear = event.cr2;
  const bool user = vcpu_->cpl() == 3;
  const ShadowFault f = examine_shadow_fault(*shadow_, v, vcpu_->bus(), event, user,
                                             {machine_.vmm_memory_base, machine_.vmm_memory_size}, on_code_write);
  switch (f.kind) {
    case ShadowFault::Kind::Guest:
      reflect(Event::from_fault(f.walk.fault));
      return PageFault::Guest;
    case ShadowFault::Kind::Refused:
      real.shutdown(stop_message(f.refusal));
      return PageFault::Refused;
    case ShadowFault::Kind::Mmio:
      emulate_instruction(Emulation::Mmio);
      return PageFault::Mmio;
    case ShadowFault::Kind::TracedWrite:
      // The virtual CPU performs the write; the shadow entries made from what it changes follow
      // (before_guest_write).
      shadow_trace_cycles_ += costs_.shadow_trace;
      emulate_instruction(Emulation::TracedWrite);
      if (f.page_table) shadow_->note_traced_write(f.walk.paddr >> 12);
      return PageFault::TracedWrite;
    case ShadowFault::Kind::Hidden:
      break;
  }
  shadow_fill_cycles_ += costs_.shadow_fill;
  if (fill_shadow(*shadow_, shadow_root(user), v, linear, f, is_guest_ram_2m(linear))) real.invalidate_page(linear);
  else tlbs_stale_ = true;
  return PageFault::Hidden;
}

TrapCause DeprivilegedGuest::handle_trap(Core& real, const Event& event) {
  switch (event.kind) {
    case EventKind::External:
    case EventKind::Nmi:
    case EventKind::SoftwareInt:
    case EventKind::SoftwareException:
      reflect(event);  // RIP is already past INT n / INT3 / INTO
      break;
    case EventKind::Exception:
      if (event.vector == PF_) {
        if (handle_page_fault(real, event) == PageFault::Mmio) return TrapCause::Mmio;
      } else if (event.vector == DB) {
        reflect(event);  // a trap: the instruction completed
      } else {
        emulate_instruction();
      }
      break;
  }
  return trap_cause(event);
}

// ---- Interpretation in real and virtual-8086 mode, and at an IOPL the real CPU cannot hold ----

void DeprivilegedGuest::interpret_until_direct(Core& real) {
  constexpr uint64_t kChunk = 4096;  // then the CPU module's loop gets control back (time, exit)
  Core& v = vcpu_->core();
  const uint64_t before = v.counters().retired;
  // A string instruction that stops between iterations (VirtualCpu::execute's bound) ends the
  // chunk too: its iterations count as the real CPU's steps, whose limits are checked outside.
  for (uint64_t steps = 0; steps < kChunk && !runs_directly() && !v.is_shutdown() && !v.state().halted; ++steps) {
    vcpu_->execute(1);
    if (vcpu_->suspended()) break;
  }
  const uint64_t done = v.counters().retired - before;
  interpreted_ += done;
  interpret_cycles_ += done * costs_.interpret;
  if (v.is_shutdown()) {
    real.shutdown("the guest's virtual CPU: " + v.shutdown_reason());
    return;
  }
  if (runs_directly()) {
    set_direct(real, true);
    project(real);  // the real CPU runs the guest from the next instruction on
    return;
  }
  if (v.state().halted) {
    real.state().halted = true;
    real.state().rflags = (v.state().rflags & IF) ? (real.state().rflags | IF) : (real.state().rflags & ~IF);
    real.notify_interrupt();
  }
  real.request_stop();
}

// ---- Traps the real CPU certainly takes ---------------------------------------------------------

std::optional<Fault> DeprivilegedGuest::certain_fault(const Insn& insn) {
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_SYSCALL:
    case ZYDIS_MNEMONIC_SYSRET:
      return Fault::ud();  // EFER.SCE clear (SDM vol. 2: checked before CPL)
    case ZYDIS_MNEMONIC_CLI:
    case ZYDIS_MNEMONIC_STI:
      return Fault::gp(0);  // CPL > IOPL without VME or PVI
    case ZYDIS_MNEMONIC_SWAPGS:
      return std::nullopt;  // #UD outside 64-bit mode, where it decodes all the same
    default:
      break;
  }
  // Port I/O: CPL > IOPL and a TSS without an I/O permission bitmap. Privileged instructions
  // check CPL first (require_cpl0; LLDT and LTR after protected mode, which the real CPU is in).
  if (insn.has(kTraitPortIo) || insn.has(kTraitPrivileged)) return Fault::gp(0);
  return std::nullopt;
}

// ---- Interrupts ------------------------------------------------------------------------------

bool DeprivilegedGuest::interrupt_pending() {
  if (!interrupts_) return false;
  if (take_every_interrupt_) return interrupts_->interrupt_pending();
  bool enabled = vcpu_->interrupts_enabled();
  // While the guest runs directly, the real CPU holds its interrupt shadow (that of an emulated
  // STI ends with the next instruction, which runs there), and its IF may be in the real VIF
  // (where its own POPF put it).
  if (const std::optional<bool> window = direct_ && inline_interrupt_window ? inline_interrupt_window() : std::nullopt) {
    enabled = *window;
  } else if (direct_) {
    const bool flag = vcpu_->flag_in_real_vif(vcpu_->state()) == IF ? (real_->state().rflags & VIF) != 0
                                                                     : (vcpu_->state().rflags & IF) != 0;
    enabled = flag && !real_->state().interrupt_shadow;
  }
  return enabled && interrupts_->interrupt_pending();
}

bool DeprivilegedGuest::interrupt_held() {
  if (!interrupts_) return false;
  // An NMI held back by the guest's NMI blocking, which its IRET (emulated) ends.
  if (vcpu_ && vcpu_->core().state().nmi_blocked && interrupts_->nmi_pending()) return true;
  if (take_every_interrupt_ || !direct_ || !inline_interrupt_window) return false;
  const std::optional<bool> window = inline_interrupt_window();
  return window && !*window && interrupts_->interrupt_pending();
}


// ---- Figures ---------------------------------------------------------------------------------

double DeprivilegedGuest::direct_fraction(uint64_t trial_runs) const {
  const double direct = real_ ? static_cast<double>(real_->counters().retired) : 0.0;
  const double emulated = vcpu_ ? static_cast<double>(vcpu_->executed() - trial_runs) : 0.0;
  const double all = direct + emulated;
  return all > 0 ? direct / all : 0.0;
}

void DeprivilegedGuest::bind_statistics(stats::Registry& r) {
  const std::string own = std::string("vmm.") + strategy_ + ".";
  using stats::Unit;
  bind_shadow_statistics(r, shadow_->counters());
  r.bind(own + "emulated", Unit::Instructions, "guest instructions the VMM emulated on the virtual CPU",
         &emulated_);
  r.bind(own + "emulated_io", Unit::Instructions, "of which port I/O instructions", &emulated_io_);
  r.formula(own + "device_accesses", Unit::Count,
            "guest device register accesses served by the VMM's software device models",
            [this] { return static_cast<double>(device_accesses()); });
  r.bind(own + "emulated_mmio", Unit::Instructions,
         "of which accesses to device memory (MMIO), which the shadow page tables never map", &emulated_mmio_);
  r.bind_family("vmm.emulated", Unit::Instructions,
                "guest instructions of this mnemonic the VMM emulated on the virtual CPU",
                &emulated_by_mnemonic_.by_mnemonic());
  r.bind(own + "reflected", Unit::Count, "exceptions and interrupts delivered to the guest's IDT",
         &reflected_);
  r.bind(own + "interpreted", Unit::Instructions,
         "guest instructions interpreted in real or virtual-8086 mode or at an IOPL not below the real CPL (not run "
         "directly)",
         &interpreted_);
}

}  // namespace pgsim::vmm

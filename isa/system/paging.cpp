// The x86 page walk, after Intel SDM vol. 3, sections 4.3 (32-bit), 4.4 (PAE), 4.5 (4/5-level),
// 4.6 (access rights), 4.7 (page-fault error code) and 4.8 (accessed and dirty flags).
#include "isa/system/paging.h"

#include <cstring>

namespace pgsim::isa {
namespace {

// Thrown inside the walker when its GuestPhysicalTranslator refuses an address; run() ends the
// walk there.
struct TranslatorRefused {};

// One paging-structure entry used by the walk, kept to set its accessed flag afterwards.
struct UsedEntry {
  uint64_t paddr;        // host-physical
  uint64_t guest_paddr;  // as the guest's tables name it (equal to paddr without EPT)
  unsigned level;
  uint64_t value;
  unsigned size;
};

// Walk state shared by the paging modes.
class Walker {
 public:
  Walker(const CpuState& s, PhysicalBus& bus, const WalkRequest& req, WalkObserver* obs,
         GuestPhysicalTranslator* nested, WalkTrace* trace)
      : s_(s), bus_(bus), req_(req), obs_(obs), nested_(nested), trace_(trace) {}

  WalkResult run();

 private:
  WalkResult walk();
  // The host-physical address of the (guest-)physical `paddr`: itself without a nested
  // translator; else what the translator answers, or the walk stops.
  uint64_t host(uint64_t paddr, GuestPhysicalUse use, unsigned level, Access access, bool reference) {
    if (!nested_) return paddr;
    std::optional<uint64_t> hpa = nested_->to_host({paddr, use, level, access, reference});
    if (!hpa) throw TranslatorRefused{};
    return *hpa;
  }
  // Reads the entry at (guest-)physical `paddr` for level `level`, notifying the observer; returns
  // the entry and, in `where`, its host-physical address.
  uint64_t fetch(uint64_t paddr, unsigned size, unsigned level, uint64_t& where, bool counted = true) {
    where = host(paddr, counted ? GuestPhysicalUse::PagingEntry : GuestPhysicalUse::PaePdpte, level,
                 Access::Read, counted);
    uint64_t v = read_paging_entry(bus_, where, size);
    if (counted) {
      ++result_.refs;
      if (obs_) obs_->on_reference(where, level);
    }
    return v;
  }
  // Accumulates the rights of an entry on the path and remembers it for its accessed flag.
  void use(uint64_t paddr, uint64_t guest_paddr, unsigned level, uint64_t value, unsigned size) {
    rw_all_ = rw_all_ && (value & PTE_RW);
    us_all_ = us_all_ && (value & PTE_US);
    if (nxe_) xd_any_ = xd_any_ || (value & PTE_XD);
    used_[nused_++] = {paddr, guest_paddr, level, value, size};
  }
  WalkResult fail(bool present, bool reserved, bool key = false);
  WalkResult finish(uint64_t leaf_frame, uint64_t page_size, uint64_t leaf_value);
  bool key_denies(uint64_t leaf_value);

  WalkResult walk32();
  WalkResult walk_wide(unsigned top_level, uint64_t table);

  const CpuState& s_;
  PhysicalBus& bus_;
  const WalkRequest& req_;
  WalkObserver* obs_;
  GuestPhysicalTranslator* nested_;
  WalkTrace* trace_;
  bool traceable_ = true;  // every entry read is in used_ (not so after a PAE PDPTE)
  WalkResult result_{};
  bool nxe_ = false;
  bool rw_all_ = true, us_all_ = true, xd_any_ = false;
  UsedEntry used_[WalkTrace::kMaxEntries]{};
  unsigned nused_ = 0;
};

WalkResult Walker::fail(bool present, bool reserved, bool key) {
  bool fetch = req_.access == Access::Execute;
  bool fetch_flag = fetch && ((s_.cr4 & CR4_SMEP) || ((s_.cr4 & CR4_PAE) && nxe_));
  uint32_t err = 0;
  if (present) err |= PFERR_P;
  if (req_.access == Access::Write) err |= PFERR_W;
  if (req_.user) err |= PFERR_U;
  if (reserved) err |= PFERR_RSVD;
  if (fetch_flag) err |= PFERR_I;
  if (key) err |= PFERR_PK;
  result_.ok = false;
  result_.fault = Fault::pf(req_.linear, err);
  return result_;
}

// Protection keys (SDM 4.6.2): with 4- or 5-level paging, a data access to a user-mode address
// is checked against PKRU (with CR4.PKE), one to a supervisor-mode address against IA32_PKRS
// (with CR4.PKS), by the key in bits 62:59 of the leaf entry. Access-disable forbids every data
// access; write-disable forbids user-mode writes, and supervisor-mode writes with CR0.WP.
// Records in the result what the key allows (a shadow pager maps the page accordingly).
bool Walker::key_denies(uint64_t leaf_value) {
  if (!s_.long_mode_active() || !(s_.cr4 & (us_all_ ? CR4_PKE : CR4_PKS))) return false;
  const unsigned key = (leaf_value >> kProtectionKeyShift) & 0xF;
  const uint64_t rights = (us_all_ ? s_.pkru : s_.pkrs) >> (2 * key);
  result_.key_read_denied = rights & 1;
  result_.key_write_denied = (rights & 1) || ((rights & 2) && (req_.user || (s_.cr0 & CR0_WP)));
  if (req_.access == Access::Execute) return false;
  return req_.access == Access::Write ? result_.key_write_denied : result_.key_read_denied;
}

// Applies the access rights of SDM 4.6 to the accumulated rights, then sets accessed and dirty
// flags (SDM 4.8: only translations that succeed update them here).
WalkResult Walker::finish(uint64_t leaf_frame, uint64_t page_size, uint64_t leaf_value) {
  const bool write = req_.access == Access::Write;
  const bool fetch = req_.access == Access::Execute;
  bool allowed = true;
  if (req_.user) {
    allowed = us_all_ && !(write && !rw_all_) && !(fetch && xd_any_);
  } else if (fetch) {
    allowed = !xd_any_ && !(us_all_ && (s_.cr4 & CR4_SMEP));
  } else {
    // SMAP: supervisor data accesses to user-mode addresses, unless explicit with RFLAGS.AC.
    bool smap_block = us_all_ && (s_.cr4 & CR4_SMAP) && (req_.implicit || !(s_.rflags & AC));
    bool wp_block = write && !rw_all_ && (s_.cr0 & CR0_WP);
    allowed = !smap_block && !wp_block;
  }
  if (!allowed) return fail(true, false);
  if (key_denies(leaf_value)) return fail(true, false, true);

  // With EPT the final guest-physical address is translated before any flag is set, so that an
  // EPT violation leaves the guest's tables as they were; a flag update is a write to the guest
  // paging-structure entry, which the EPT must allow (SDM vol. 3C, 28.2.3.2).
  const uint64_t guest_physical = leaf_frame | (req_.linear & (page_size - 1));
  const uint64_t paddr = host(guest_physical, GuestPhysicalUse::Final, 0, req_.access, true);
  uint64_t updated[5];
  for (unsigned i = 0; i < nused_; ++i) {
    const UsedEntry& e = used_[i];
    updated[i] = e.value | PTE_A;
    if (i + 1 == nused_ && write) updated[i] |= PTE_D;
    if (updated[i] != e.value && nested_)
      host(e.guest_paddr, GuestPhysicalUse::PagingEntry, e.level, Access::Write, false);
  }
  for (unsigned i = 0; i < nused_; ++i) {
    UsedEntry& e = used_[i];
    if (updated[i] != e.value) write_paging_entry(bus_, e.paddr, e.size, updated[i]);
    e.value = updated[i];
  }
  if (trace_) {
    trace_->complete = traceable_ && !nested_;
    trace_->count = nused_;
    trace_->size = used_[0].size;
    for (unsigned i = 0; i < nused_; ++i) {
      trace_->paddr[i] = used_[i].paddr;
      trace_->value[i] = used_[i].value;
    }
  }
  result_.ok = true;
  result_.guest_physical = guest_physical;
  result_.paddr = paddr;
  result_.page_size = page_size;
  result_.writable = rw_all_;
  result_.user = us_all_;
  result_.executable = !xd_any_;
  result_.global = (leaf_value & PTE_G) && (s_.cr4 & CR4_PGE);
  result_.dirty = used_[nused_ - 1].value & PTE_D;
  if (s_.long_mode_active()) result_.key = (leaf_value >> kProtectionKeyShift) & 0xF;
  return result_;
}

// 32-bit paging: two levels of 4-byte entries; PSE 4 MiB pages with PSE-36 address bits.
WalkResult Walker::walk32() {
  result_.levels = 2;
  const uint32_t lin = static_cast<uint32_t>(req_.linear);
  uint64_t pde_addr = (s_.cr3 & 0xFFFFF000u) + ((lin >> 22) & 0x3FF) * 4;
  uint64_t pde_host = 0;
  uint64_t pde = fetch(pde_addr, 4, 2, pde_host);
  if (!(pde & PTE_P)) return fail(false, false);
  if ((pde & PTE_PS) && (s_.cr4 & CR4_PSE)) {
    if (pde & (1ull << 21)) return fail(true, true);  // reserved with MAXPHYADDR >= 40
    use(pde_host, pde_addr, 2, pde, 4);
    uint64_t frame = (pde & 0xFFC00000u) | (((pde >> 13) & 0xFF) << 32);
    return finish(frame, 4ull << 20, pde);
  }
  use(pde_host, pde_addr, 2, pde, 4);
  uint64_t pte_addr = (pde & 0xFFFFF000u) + ((lin >> 12) & 0x3FF) * 4;
  uint64_t pte_host = 0;
  uint64_t pte = fetch(pte_addr, 4, 1, pte_host);
  if (!(pte & PTE_P)) return fail(false, false);
  use(pte_host, pte_addr, 1, pte, 4);
  return finish(pte & 0xFFFFF000u, 4096, pte);
}

// PAE, 4-level and 5-level paging: 8-byte entries, 9 index bits per level, walking down from
// `top_level` starting at the table at physical address `table`.
WalkResult Walker::walk_wide(unsigned top_level, uint64_t table) {
  const bool pae = !s_.long_mode_active();
  // Bits 51:M are reserved everywhere; PAE entries also reserve 62:52, and XD without NXE.
  uint64_t reserved = bit_range(51, kMaxPhysAddrBits);
  if (pae) reserved |= bit_range(62, 52);
  if (!nxe_) reserved |= PTE_XD;
  for (unsigned level = top_level; level >= 1; --level) {
    unsigned shift = 12 + 9 * (level - 1);
    uint64_t entry_addr = table + ((req_.linear >> shift) & 0x1FF) * 8;
    uint64_t entry_host = 0;
    uint64_t e = fetch(entry_addr, 8, level, entry_host);
    if (!(e & PTE_P)) return fail(false, false);
    if (e & reserved) return fail(true, true);
    bool large = level <= 3 && level >= 2 && (e & PTE_PS);
    if (level >= 4 && (e & PTE_PS)) return fail(true, true);  // PS is reserved in PML4E/PML5E
    if (large) {
      uint64_t page_size = 1ull << shift;
      // Address bits between 12 and the page size, except the PAT bit (12), are reserved.
      if (e & bit_range(shift - 1, 13)) return fail(true, true);
      use(entry_host, entry_addr, level, e, 8);
      return finish(e & kPhysFrameMask & ~(page_size - 1), page_size, e);
    }
    use(entry_host, entry_addr, level, e, 8);
    table = e & kPhysFrameMask;
    if (level == 1) return finish(table, 4096, e);
  }
  return result_;  // unreachable: level 1 always finishes
}

WalkResult Walker::run() {
  try {
    return walk();
  } catch (const TranslatorRefused&) {
    result_.ok = false;
    result_.translator_refused = true;
    return result_;
  }
}

WalkResult Walker::walk() {
  nxe_ = s_.efer & EFER_NXE;
  switch (paging_mode(s_)) {
    case PagingMode::None:
      result_.ok = true;
      result_.guest_physical = s_.long_mode_active() ? req_.linear : (req_.linear & 0xFFFFFFFFu);
      result_.paddr = host(result_.guest_physical, GuestPhysicalUse::Final, 0, req_.access, true);
      result_.page_size = 4096;
      result_.writable = result_.user = result_.executable = true;
      return result_;
    case PagingMode::Bits32:
      nxe_ = false;
      return walk32();
    case PagingMode::Pae: {
      result_.levels = 3;
      // The PDPTE: no rights, no accessed flag; bits 2:1 and 8:5 are reserved (SDM table 4-8).
      uint64_t pdpte_addr = (s_.cr3 & 0xFFFFFFE0u) + ((req_.linear >> 30) & 3) * 8;
      uint64_t pdpte_host = 0;
      uint64_t pdpte = fetch(pdpte_addr, 8, 3, pdpte_host, /*counted=*/false);
      traceable_ = false;
      if (!(pdpte & PTE_P)) return fail(false, false);
      if (pdpte & (bit_range(2, 1) | bit_range(8, 5) | bit_range(63, kMaxPhysAddrBits))) return fail(true, true);
      return walk_wide(2, pdpte & kPhysFrameMask);
    }
    case PagingMode::Level4:
    case PagingMode::Level5: {
      if (!is_canonical(s_, req_.linear)) {
        result_.fault = Fault::gp(0);
        return result_;
      }
      unsigned top = paging_mode(s_) == PagingMode::Level5 ? 5 : 4;
      result_.levels = top;
      if (s_.cr4 & CR4_PCIDE) result_.pcid = s_.cr3 & 0xFFF;
      return walk_wide(top, s_.cr3 & kPhysFrameMask);
    }
  }
  return result_;
}

}  // namespace

uint64_t read_paging_entry(PhysicalBus& bus, uint64_t paddr, unsigned size) {
  if (uint8_t* frame = bus.host_frame(paddr)) return load_host(frame + (paddr & 0xFFF), size);
  return bus.read(paddr, size);
}

void write_paging_entry(PhysicalBus& bus, uint64_t paddr, unsigned size, uint64_t value) {
  if (uint8_t* frame = bus.host_frame(paddr)) {
    store_host(frame + (paddr & 0xFFF), size, value);
    return;
  }
  bus.write(paddr, size, value);
}

PagingMode paging_mode(const CpuState& s) {
  if (!s.paging()) return PagingMode::None;
  if (!(s.cr4 & CR4_PAE)) return PagingMode::Bits32;
  if (!s.long_mode_active()) return PagingMode::Pae;
  return (s.cr4 & CR4_LA57) ? PagingMode::Level5 : PagingMode::Level4;
}

bool is_canonical(const CpuState& s, uint64_t linear) {
  unsigned width = (s.cr4 & CR4_LA57) ? 57 : 48;
  int64_t extended = static_cast<int64_t>(linear << (64 - width)) >> (64 - width);
  return static_cast<uint64_t>(extended) == linear;
}

WalkResult page_walk(const CpuState& s, PhysicalBus& bus, const WalkRequest& req,
                     WalkObserver* observer, GuestPhysicalTranslator* nested, WalkTrace* trace) {
  if (trace) trace->complete = false;
  return Walker(s, bus, req, observer, nested, trace).run();
}

}  // namespace pgsim::isa

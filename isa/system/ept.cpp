// EPT translation and the two-dimensional walk, after Intel SDM vol. 3C, 24.6.11 (EPTP), 28.2.2
// (translation), 28.2.3 (misconfigurations and violations), 28.2.4 (accessed and dirty flags),
// 28.2.7 (memory type) and 27.2.1 (exit qualification).
#include "isa/system/ept.h"

#include <algorithm>
#include <string>

namespace pgsim::isa {
namespace {

// Bits 51:M are reserved in every EPT entry and in the EPTP (SDM 28.2.2).
constexpr uint64_t kEptReservedAddressBits = bit_range(51, kMaxPhysAddrBits);
// EPTP fields (table 24-8).
constexpr uint64_t kEptpMemoryTypeMask = 7;
constexpr unsigned kEptpWalkLengthShift = 3;  // bits 5:3: walk length minus 1
constexpr uint64_t kEptpAccessedDirty = 1ull << 6;
constexpr uint64_t kEptpReserved = bit_range(11, 7);

unsigned index_at(uint64_t address, unsigned level) { return (address >> (12 + 9 * (level - 1))) & 0x1FF; }

// A memory type an EPT leaf may hold: 2, 3 and 7 are reserved (SDM 28.2.3.1).
bool valid_ept_memory_type(uint64_t type) { return type != 2 && type != 3 && type != 7; }

// The reserved bits of an entry at `level` that maps a page (leaf) or a table (SDM tables
// 28-1 to 28-6); a set one is a misconfiguration.
uint64_t reserved_bits(unsigned level, bool leaf) {
  uint64_t r = kEptReservedAddressBits;
  if (level >= 4) return r | bit_range(7, 3);  // PML5E, PML4E: no memory type, no large page
  if (!leaf) return r | bit_range(6, 3);       // references a table: memory type and IPAT reserved
  if (level == 3) r |= bit_range(29, 12);      // 1 GiB page: address bits below bit 30
  if (level == 2) r |= bit_range(20, 12);      // 2 MiB page: address bits below bit 21
  return r;
}

}  // namespace

uint64_t EptPointer::encode() const {
  return (root & kPhysFrameMask) | (accessed_dirty ? kEptpAccessedDirty : 0) |
         (static_cast<uint64_t>(levels - 1) << kEptpWalkLengthShift) | (memory_type & kEptpMemoryTypeMask);
}

std::optional<EptPointer> EptPointer::decode(uint64_t value) {
  EptPointer p;
  p.memory_type = static_cast<uint8_t>(value & kEptpMemoryTypeMask);
  p.levels = static_cast<unsigned>((value >> kEptpWalkLengthShift) & 7) + 1;
  p.accessed_dirty = value & kEptpAccessedDirty;
  p.root = value & kPhysFrameMask;
  if (p.memory_type != MEMTYPE_UC && p.memory_type != MEMTYPE_WB) return std::nullopt;
  if (p.levels != 4 && p.levels != 5) return std::nullopt;
  if (value & (kEptpReserved | bit_range(63, kMaxPhysAddrBits))) return std::nullopt;
  return p;
}

EptResult ept_translate(const EptPointer& ept, PhysicalBus& host, const EptRequest& req,
                        WalkObserver* observer) {
  const GuestPhysicalAccess& a = req.access;
  const uint64_t gpa = a.address;
  EptResult r;
  // What the access is, for the EPT: guest paging-structure accesses are reads, or writes when
  // EPT accessed and dirty flags are enabled (SDM 28.2.3.2, 28.2.4).
  const bool paging_structure = a.use != GuestPhysicalUse::Final;
  const bool write = a.access == Access::Write || (paging_structure && ept.accessed_dirty);
  const bool read = a.access == Access::Read;
  const bool fetch = a.access == Access::Execute;

  auto stop = [&](EptExitKind kind, unsigned level, uint64_t entry) {
    r.ok = false;
    r.exit.kind = kind;
    r.exit.guest_physical = gpa;
    r.exit.level = level;
    r.exit.entry = entry;
    if (kind == EptExitKind::Violation) {
      uint64_t q = 0;
      // A paging-structure access under EPT A/D flags sets both bit 0 and bit 1 (table 27-7).
      if (read) q |= EPT_QUAL_READ;
      if (write) q |= EPT_QUAL_WRITE;
      if (fetch) q |= EPT_QUAL_FETCH;
      if (r.readable) q |= EPT_QUAL_READABLE;
      if (r.writable) q |= EPT_QUAL_WRITABLE;
      if (r.executable) q |= EPT_QUAL_EXECUTABLE;
      // The guest-linear address is valid except for the PDPTE loads of PAE paging (bit 7), and
      // names a translation of a linear address for the final access only (bit 8).
      if (a.use != GuestPhysicalUse::PaePdpte) {
        q |= EPT_QUAL_LINEAR_VALID;
        r.exit.guest_linear = req.guest_linear;
        if (a.use == GuestPhysicalUse::Final) q |= EPT_QUAL_LINEAR_TRANSLATION;
      }
      r.exit.qualification = q;
    }
    return r;
  };

  uint64_t used[5];
  unsigned nused = 0;
  r.readable = r.writable = r.executable = true;
  uint64_t table = ept.root & kPhysFrameMask;
  for (unsigned level = ept.levels; level >= 1; --level) {
    const uint64_t entry_addr = table + index_at(gpa, level) * 8;
    const uint64_t e = read_paging_entry(host, entry_addr, 8);
    ++r.refs;
    if (observer) observer->on_nested_reference(entry_addr, level);
    r.readable = r.readable && (e & EPT_READ);
    r.writable = r.writable && (e & EPT_WRITE);
    r.executable = r.executable && (e & EPT_EXECUTE);
    // Not present: bits 2:0 clear (SDM 28.2.2), a violation whatever else the entry holds.
    if (!(e & kEptRwx)) return stop(EptExitKind::Violation, level, e);
    const bool leaf = level == 1 || ((level == 2 || level == 3) && (e & EPT_LARGE));
    // Misconfigurations (SDM 28.2.3.1): write without read, reserved bits, a reserved memory type.
    // Execute-only is allowed: this model reports it in IA32_VMX_EPT_VPID_CAP bit 0.
    if ((e & EPT_WRITE) && !(e & EPT_READ)) return stop(EptExitKind::Misconfiguration, level, e);
    if (e & reserved_bits(level, leaf)) return stop(EptExitKind::Misconfiguration, level, e);
    if (leaf && !valid_ept_memory_type((e & kEptMemoryTypeMask) >> kEptMemoryTypeShift))
      return stop(EptExitKind::Misconfiguration, level, e);
    used[nused++] = entry_addr;
    if (leaf) {
      r.page_size = 1ull << (12 + 9 * (level - 1));
      r.host_physical = (e & kPhysFrameMask & ~(r.page_size - 1)) | (gpa & (r.page_size - 1));
      r.memory_type = static_cast<uint8_t>((e & kEptMemoryTypeMask) >> kEptMemoryTypeShift);
      r.ignore_pat = e & EPT_IGNORE_PAT;
      break;
    }
    table = e & kPhysFrameMask;
  }
  if ((read && !r.readable) || (write && !r.writable) || (fetch && !r.executable))
    return stop(EptExitKind::Violation, ept.levels - nused + 1, 0);

  // Accessed flags on every entry used, dirty on the leaf for a write (SDM 28.2.4).
  if (ept.accessed_dirty) {
    for (unsigned i = 0; i < nused; ++i) {
      const uint64_t e = read_paging_entry(host, used[i], 8);
      uint64_t updated = e | EPT_ACCESSED;
      if (i + 1 == nused && write) updated |= EPT_DIRTY;
      if (updated != e) write_paging_entry(host, used[i], 8, updated);
    }
  }
  r.ok = true;
  return r;
}

std::optional<uint64_t> EptTranslator::to_host(const GuestPhysicalAccess& access) {
  // A translation the processor already holds makes no reference (GuestPhysicalAccess::reference).
  last_ = ept_translate(ept_, host_, {access, guest_linear_}, access.reference ? observer_ : nullptr);
  const EptResult& r = last_;
  if (access.reference) references_ += r.refs;
  if (!r.ok) {
    exit_ = r.exit;
    return std::nullopt;
  }
  if (access.use == GuestPhysicalUse::Final) final_page_size_ = r.page_size;
  return r.host_physical;
}

NestedWalkResult nested_page_walk(const CpuState& guest, PhysicalBus& host, const EptPointer& ept,
                                  const WalkRequest& req, WalkObserver* observer) {
  EptTranslator nested(ept, host, req.linear, observer);
  NestedWalkResult r;
  r.walk = page_walk(guest, host, req, observer, &nested);
  r.ept_exit = nested.exit();
  r.guest_refs = r.walk.refs;
  r.nested_refs = nested.references();
  if (r.walk.ok) r.page_size = std::min(r.walk.page_size, nested.final_page_size());
  return r;
}

EptBuilder::EptBuilder(PhysicalBus& host, uint64_t table_area, uint64_t table_area_size, unsigned levels)
    : host_(host), next_(table_area), end_(table_area + table_area_size), levels_(levels) {
  if (table_area & 0xFFF) throw std::invalid_argument("EPT table area must be 4 KiB aligned");
  if (levels != 4 && levels != 5) throw std::invalid_argument("EPT walks have 4 or 5 levels");
  root_ = allocate_table();
}

uint64_t EptBuilder::allocate_table() {
  if (next_ + 0x1000 > end_)
    throw std::length_error("EPT table area exhausted after " + std::to_string(tables_) + " tables");
  const uint64_t t = next_;
  next_ += 0x1000;
  for (unsigned i = 0; i < 512; ++i) write_paging_entry(host_, t + i * 8, 8, 0);
  ++tables_;
  return t;
}

void EptBuilder::map(uint64_t guest_physical, uint64_t host_physical, uint64_t size, uint64_t page_size,
                     uint64_t rights, uint8_t memory_type) {
  unsigned leaf_level = page_size == (1ull << 12) ? 1 : page_size == (1ull << 21) ? 2 : page_size == (1ull << 30) ? 3 : 0;
  if (!leaf_level) throw std::invalid_argument("EPT page size must be 4 KiB, 2 MiB or 1 GiB");
  if ((guest_physical | host_physical | size) & (page_size - 1))
    throw std::invalid_argument("EPT mapping not aligned to its page size");
  if (!valid_ept_memory_type(memory_type) || (rights & ~kEptRwx))
    throw std::invalid_argument("EPT mapping with a reserved memory type or rights outside R/W/X");
  for (uint64_t off = 0; off < size; off += page_size) {
    const uint64_t gpa = guest_physical + off;
    uint64_t table = root_;
    for (unsigned level = levels_; level > leaf_level; --level) {
      const uint64_t slot = table + index_at(gpa, level) * 8;
      uint64_t e = read_paging_entry(host_, slot, 8);
      if (e & kEptRwx) {
        if (e & EPT_LARGE) throw std::invalid_argument("EPT mapping overlaps a larger page");
      } else {
        e = allocate_table() | kEptRwx;
        write_paging_entry(host_, slot, 8, e);
      }
      table = e & kPhysFrameMask;
    }
    const uint64_t slot = table + index_at(gpa, leaf_level) * 8;
    const uint64_t old = read_paging_entry(host_, slot, 8);
    if ((old & kEptRwx) && leaf_level > 1 && !(old & EPT_LARGE))
      throw std::invalid_argument("EPT mapping overlaps smaller pages");
    write_paging_entry(host_, slot, 8,
                       (host_physical + off) | rights |
                           (static_cast<uint64_t>(memory_type) << kEptMemoryTypeShift) |
                           (leaf_level > 1 ? uint64_t{EPT_LARGE} : uint64_t{0}));
  }
}

uint64_t EptBuilder::entry_address(uint64_t guest_physical, unsigned level) const {
  uint64_t table = root_;
  for (unsigned l = levels_; l > level; --l) {
    const uint64_t e = read_paging_entry(host_, table + index_at(guest_physical, l) * 8, 8);
    if (!(e & kEptRwx) || (e & EPT_LARGE))
      throw std::invalid_argument("no EPT table at level " + std::to_string(level) + " for this address");
    table = e & kPhysFrameMask;
  }
  return table + index_at(guest_physical, level) * 8;
}

}  // namespace pgsim::isa

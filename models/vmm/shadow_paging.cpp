#include "models/vmm/shadow_paging.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string>

namespace pgsim::vmm {

namespace {
using isa::kPhysFrameMask;
constexpr uint64_t kP = isa::PTE_P, kRw = isa::PTE_RW, kUs = isa::PTE_US, kLarge = isa::PTE_PS, kXd = isa::PTE_XD;
std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

ShadowPager::ShadowPager(isa::PhysicalBus& bus, uint64_t pool_base, uint64_t pool_frames, unsigned cached_roots,
                         uint64_t vmm_area, uint64_t vmm_area_frames)
    : bus_(bus), cached_roots_(std::max(1u, cached_roots)) {
  for (uint64_t f = pool_frames; f-- > 0;) free_frames_.push_back(pool_base + f * 4096);
  for (uint16_t pcid = 4095; pcid >= 1; --pcid) free_pcids_.push_back(pcid);
  if (pool_frames < 16 || !table(pool_base) || !table(pool_base + (pool_frames - 1) * 4096))
    throw std::invalid_argument("trap_emulate: the VMM needs RAM for its shadow page tables at " + hex(pool_base) +
                                " (" + std::to_string(pool_frames) + " frames), above guest RAM");
  // The VMM area: one PDPT, one page directory and page tables, mapped supervisor-only.
  Shadow permanent;
  permanent.root = 0;
  vmm_pdpt_ = allocate(permanent);
  const uint64_t pd = allocate(permanent);
  table(vmm_pdpt_)[0] = pd | kP | kRw;
  for (uint64_t f = 0; f < vmm_area_frames; ++f) {
    const uint64_t linear = f * 4096;
    uint64_t& pde = table(pd)[index_at(linear, 2)];
    if (!(pde & kP)) pde = allocate(permanent) | kP | kRw;
    table(pde & kPhysFrameMask)[index_at(linear, 1)] = (vmm_area + f * 4096) | kP | kRw | kXd;
  }
}

uint64_t* ShadowPager::table(uint64_t paddr) const {
  return reinterpret_cast<uint64_t*>(bus_.host_frame(paddr & ~0xFFFull));
}

uint64_t ShadowPager::allocate(Shadow& owner) {
  if (free_frames_.empty()) throw std::logic_error("trap_emulate: the shadow page-table pool ran dry");
  const uint64_t frame = free_frames_.back();
  free_frames_.pop_back();
  std::memset(table(frame), 0, 4096);
  owner.frames.push_back(frame);
  ++counters_.table_frames;
  return frame;
}

void ShadowPager::release(Shadow& s, const Key& key) {
  for (const auto& [page, leaf] : s.leaves) unlink({key, page}, leaf);
  s.leaves.clear();
  for (uint64_t f : s.frames) free_frames_.push_back(f);
  counters_.table_frames -= s.frames.size();
  s.frames.clear();
  if (s.pcid) free_pcids_.push_back(s.pcid);
  s.pcid = 0;
}

ShadowPager::Shadow& ShadowPager::create(const Key& key) {
  if (free_frames_.size() < 4) flush_all();  // room for the root and a first fill
  while (shadows_.size() >= cached_roots_) {  // evict the least recently used
    const Key victim = lru_.back();
    lru_.pop_back();
    release(shadows_.at(victim), victim);
    shadows_.erase(victim);
    flushed_ = true;  // its entries may still be in the real TLBs, its frames are reused
  }
  Shadow& s = shadows_[key];
  s.root = allocate(s);
  if (!free_pcids_.empty()) {
    s.pcid = free_pcids_.back();
    free_pcids_.pop_back();
  }
  table(s.root)[index_at(kVmmLinearBase, 4)] = vmm_pdpt_ | kP | kRw;  // supervisor-only below
  if (!key.second)
    for (const auto& [slot, entry] : kernel_slots_) table(s.root)[slot] = entry;
  lru_.push_front(key);
  return s;
}

void ShadowPager::map_in_kernel_shadows(uint64_t linear, uint64_t pml4_entry) {
  const unsigned slot = static_cast<unsigned>(index_at(linear, 4));
  kernel_slots_[slot] = pml4_entry;
  for (auto& [key, shadow] : shadows_)
    if (!key.second) table(shadow.root)[slot] = pml4_entry;
}

uint64_t ShadowPager::root(uint64_t address_space, bool user_mode) {
  const Key key{address_space, user_mode};
  const bool switched = key.first != current_.first;
  if (switched && current_.first != ~0ull) ++counters_.cr3_switches;
  current_ = key;
  auto it = shadows_.find(key);
  if (it != shadows_.end()) {
    if (switched) ++counters_.cache_hits;
    lru_.remove(key);
    lru_.push_front(key);
    return it->second.root;
  }
  if (switched) ++counters_.cache_misses;
  return create(key).root;
}

uint64_t ShadowPager::paging_off_root() {
  current_ = Key{~0ull, false};
  auto it = shadows_.find(kPagingOff);
  if (it == shadows_.end()) return create(kPagingOff).root;
  lru_.remove(kPagingOff);
  lru_.push_front(kPagingOff);
  return it->second.root;
}

uint16_t ShadowPager::pcid(uint64_t root) { return owner_of(root).second.pcid; }

std::map<ShadowPager::Key, ShadowPager::Shadow>::value_type& ShadowPager::owner_of(uint64_t root) {
  for (auto& owner : shadows_)
    if (owner.second.root == root) return owner;
  throw std::logic_error("trap_emulate: fill of an unknown shadow root");
}

uint64_t ShadowPager::entry_slot(Shadow& owner, uint64_t linear, unsigned level) {
  uint64_t table_addr = owner.root;
  for (unsigned above = 4; above > level; --above) {
    uint64_t& e = table(table_addr)[index_at(linear, above)];
    if (above == 2 && (e & kLarge)) {  // a 2 MiB identity page gives way to a page table
      owner.identity_2m.erase(linear & ~0x1FFFFFull);
      e = 0;
      flushed_ = true;
    }
    if (!(e & kP)) e = allocate(owner) | kP | kRw | kUs;
    table_addr = e & kPhysFrameMask;
  }
  return table_addr + index_at(linear, level) * 8;
}

uint64_t& ShadowPager::entry(uint64_t slot) const { return table(slot)[(slot & 0xFFF) / 8]; }

bool ShadowPager::fill(uint64_t root, uint64_t linear, const isa::WalkResult& guest, bool writable,
                       const std::vector<GuestEntry>& sources) {
  if (!is_ram(guest.paddr))
    throw std::logic_error("trap_emulate: a shadow page table may not map device memory at " + hex(guest.paddr) +
                           " (guest linear " + hex(linear) + "): the VMM emulates accesses to it");
  if (free_frames_.size() < 4) {  // a fill needs at most three tables: start every shadow afresh
    flush_all();
    return false;
  }
  auto& [key, shadow] = owner_of(root);
  uint64_t leaf = (guest.paddr & kPhysFrameMask) | kP;
  if (guest.user || !keep_guest_user_bit_) leaf |= kUs;
  if (writable) leaf |= kRw;
  if (!guest.executable) leaf |= kXd;
  // The guest's protection key, which the real CPU checks where its CR4.PKE/PKS are the guest's
  // (hw_assist); the deprivileging VMMs' real CPU has neither and ignores it.
  leaf |= uint64_t{guest.key} << isa::kProtectionKeyShift;
  const uint64_t slot = entry_slot(shadow, linear, 1);
  entry(slot) = leaf;
  ++counters_.fills;

  const LeafRef ref{key, linear & ~0xFFFull};
  auto [it, created] = shadow.leaves.try_emplace(ref.page);
  if (!created) unlink(ref, it->second);  // refilled (a write to a clean page, say): new sources
  it->second = Leaf{slot, guest.paddr >> 12, sources};
  for (const GuestEntry& e : sources) {
    Dependents& d = dependents_[e.paddr];
    d.size = e.size;
    d.leaves.insert(ref);
  }
  mappers_[guest.paddr >> 12].insert(ref);
  return true;
}

bool ShadowPager::fill_identity_2m(uint64_t root, uint64_t linear) {
  if (free_frames_.size() < 4) {
    flush_all();
    return false;
  }
  Shadow& shadow = owner_of(root).second;
  const uint64_t base = linear & ~0x1FFFFFull;
  if (write_protects_within_2m(base)) {
    fill_identity_4k(shadow, base);
  } else {
    // A page table already under this entry (4 KiB fills of the same identity) stays with the
    // shadow until it is released.
    entry(entry_slot(shadow, base, 2)) = (base & kPhysFrameMask) | kP | kRw | kUs | kLarge;
  }
  shadow.identity_2m.insert(base);
  ++counters_.fills;
  return true;
}

void ShadowPager::fill_identity_4k(Shadow& shadow, uint64_t base) {
  uint64_t& pde = entry(entry_slot(shadow, base, 2));
  if (pde & kLarge) pde = 0;
  uint64_t* pt = table(entry_slot(shadow, base, 1));
  for (unsigned k = 0; k < 512; ++k) {
    const uint64_t frame = (base >> 12) + k;
    pt[k] = (frame << 12) | kP | kUs | (is_write_protected(frame) ? 0 : kRw);
  }
}

bool ShadowPager::write_protects_within_2m(uint64_t linear) const {
  const uint64_t first = (linear & ~0x1FFFFFull) >> 12, end = first + 512;
  auto within = [&](const auto& frames) {
    for (uint64_t frame : frames)
      if (frame >= first && frame < end) return true;
    return false;
  };
  return within(page_table_frames_) || within(gdt_frames_);
}

void ShadowPager::unlink(const LeafRef& ref, const Leaf& leaf) {
  for (const GuestEntry& e : leaf.sources) {
    auto d = dependents_.find(e.paddr);
    if (d == dependents_.end()) continue;
    d->second.leaves.erase(ref);
    if (d->second.leaves.empty()) dependents_.erase(d);
  }
  auto m = mappers_.find(leaf.frame);
  if (m == mappers_.end()) return;
  m->second.erase(ref);
  if (m->second.empty()) mappers_.erase(m);
}

void ShadowPager::drop(const LeafRef& ref) {
  Shadow& s = shadows_.at(ref.shadow);
  auto it = s.leaves.find(ref.page);
  if (it == s.leaves.end()) return;
  unlink(ref, it->second);
  table(it->second.slot)[(it->second.slot & 0xFFF) / 8] = 0;
  s.leaves.erase(it);
  if (on_leaf_changed) on_leaf_changed(ref.page);
}

std::vector<ShadowPager::DependentsMap::const_iterator> ShadowPager::overlapping(uint64_t begin, uint64_t end) const {
  std::vector<DependentsMap::const_iterator> found;
  // An entry is at most 8 bytes wide: one that starts up to 7 bytes before `begin` may overlap.
  for (auto it = dependents_.lower_bound(begin >= 7 ? begin - 7 : 0); it != dependents_.end() && it->first < end; ++it)
    if (it->first + it->second.size > begin) found.push_back(it);
  return found;
}

uint64_t ShadowPager::drop_dependents(uint64_t begin, uint64_t end) {
  std::set<LeafRef> doomed;
  for (const auto& it : overlapping(begin, end)) doomed.insert(it->second.leaves.begin(), it->second.leaves.end());
  for (const LeafRef& ref : doomed) drop(ref);
  counters_.entry_invalidations += doomed.size();
  return doomed.size();
}

bool ShadowPager::changes_entry(uint64_t entry, unsigned width, uint64_t paddr, unsigned size, uint64_t value) const {
  constexpr uint64_t kAccessedDirty = isa::PTE_A | isa::PTE_D;
  uint64_t changed = 0, set = 0;              // bits of the entry the write changes, and those it sets
  const uint8_t* host = nullptr;
  uint64_t host_page = ~0ull;                 // the page `host` is of
  for (uint64_t byte = std::max(entry, paddr); byte < std::min(entry + width, paddr + size); ++byte) {
    if ((byte & ~0xFFFull) != host_page) host = bus_.host_frame(host_page = byte & ~0xFFFull);
    const uint64_t old_byte = host ? host[byte & 0xFFF] : bus_.read(byte, 1) & 0xFF;
    const uint64_t new_byte = (value >> (8 * (byte - paddr))) & 0xFF;
    changed |= (old_byte ^ new_byte) << (8 * (byte - entry));
    set |= (new_byte & ~old_byte) << (8 * (byte - entry));
  }
  return changed != 0 && ((changed & ~kAccessedDirty) != 0 || changed != set);
}

void ShadowPager::guest_write(uint64_t paddr, unsigned size, uint64_t value) {
  std::vector<std::pair<uint64_t, uint64_t>> changed_entries;  // [begin, end) of each
  for (const auto& it : overlapping(paddr, paddr + size))
    if (changes_entry(it->first, it->second.size, paddr, size, value))
      changed_entries.emplace_back(it->first, it->first + it->second.size);
  for (const auto& [begin, end] : changed_entries) drop_dependents(begin, end);
}

void ShadowPager::note_traced_write(uint64_t frame) {
  if (++write_streak_[frame] < kFloodWrites) return;
  write_streak_.erase(frame);
  page_table_frames_.erase(frame);
  ++counters_.unprotected;
  drop_dependents(frame << 12, (frame + 1) << 12);
}

void ShadowPager::write_protect(uint64_t frame) {
  // The paging-off shadow's identity mapping of the 2 MiB around it: 4 KiB entries, this frame's
  // read-only.
  for (auto& [key, s] : shadows_) {
    const uint64_t base = (frame << 12) & ~0x1FFFFFull;
    if (!s.identity_2m.count(base)) continue;
    fill_identity_4k(s, base);
    ++counters_.write_protections;
    flushed_ = true;  // the real TLBs may hold the 2 MiB page or the writable entry
  }
  auto m = mappers_.find(frame);
  if (m == mappers_.end()) return;
  for (const LeafRef& ref : m->second) {
    const Leaf& leaf = shadows_.at(ref.shadow).leaves.at(ref.page);
    uint64_t& entry = table(leaf.slot)[(leaf.slot & 0xFFF) / 8];
    if (!(entry & kRw)) continue;
    entry &= ~kRw;
    ++counters_.write_protections;
    if (on_leaf_changed) on_leaf_changed(ref.page);
  }
}

void ShadowPager::set_gdt_frames(const std::vector<uint64_t>& frames) {
  gdt_frames_.clear();
  for (uint64_t frame : frames)
    if (gdt_frames_.insert(frame)) write_protect(frame);
}

void ShadowPager::invalidate_page(uint64_t linear) {
  ++counters_.invalidations;
  std::vector<LeafRef> refs;
  for (auto& [key, s] : shadows_)
    if (s.leaves.count(linear & ~0xFFFull)) refs.push_back({key, linear & ~0xFFFull});
  for (const LeafRef& ref : refs) drop(ref);
}

void ShadowPager::flush_all() {
  ++counters_.flushes;
  flushed_ = true;
  for (auto& [key, s] : shadows_) release(s, key);
  shadows_.clear();
  lru_.clear();
}

}  // namespace pgsim::vmm

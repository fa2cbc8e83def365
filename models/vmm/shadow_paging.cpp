#include "models/vmm/shadow_paging.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace pgsim::vmm {

namespace {
constexpr uint64_t kP = 1, kRw = 2, kUs = 4, kXd = 1ull << 63;
constexpr uint64_t kFrameMask = 0x000FFFFFFFFFF000ull;
unsigned index_at(uint64_t linear, unsigned level) { return (linear >> (12 + 9 * (level - 1))) & 511; }
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
  if (pool_frames < 16 || !table(pool_base) || !table(pool_base + (pool_frames - 1) * 4096))
    throw std::invalid_argument("trap_emulate: the VMM needs RAM for its shadow page tables at " + hex(pool_base) +
                                " (" + std::to_string(pool_frames) + " frames), above guest RAM");
  // The VMM area: one PDPT, one page directory and page tables, mapped supervisor-only.
  Shadow permanent{0, {}};
  vmm_pdpt_ = allocate(permanent);
  const uint64_t pd = allocate(permanent);
  table(vmm_pdpt_)[0] = pd | kP | kRw;
  for (uint64_t f = 0; f < vmm_area_frames; ++f) {
    const uint64_t linear = f * 4096;
    uint64_t& pde = table(pd)[index_at(linear, 2)];
    if (!(pde & kP)) pde = allocate(permanent) | kP | kRw;
    table(pde & kFrameMask)[index_at(linear, 1)] = (vmm_area + f * 4096) | kP | kRw | kXd;
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

void ShadowPager::release(Shadow& s) {
  for (uint64_t f : s.frames) free_frames_.push_back(f);
  counters_.table_frames -= s.frames.size();
  s.frames.clear();
}

ShadowPager::Shadow& ShadowPager::create(const Key& key) {
  if (free_frames_.size() < 4) flush_all();  // room for the root and a first fill
  while (shadows_.size() >= cached_roots_) {  // evict the least recently used
    const Key victim = lru_.back();
    lru_.pop_back();
    release(shadows_.at(victim));
    shadows_.erase(victim);
  }
  Shadow& s = shadows_[key];
  s.root = allocate(s);
  table(s.root)[index_at(kVmmLinearBase, 4)] = vmm_pdpt_ | kP | kRw;  // supervisor-only below
  lru_.push_front(key);
  return s;
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

ShadowPager::Shadow& ShadowPager::owner_of(uint64_t root) {
  for (auto& [key, s] : shadows_)
    if (s.root == root) return s;
  throw std::logic_error("trap_emulate: fill of an unknown shadow root");
}

uint64_t& ShadowPager::entry(Shadow& owner, uint64_t linear, unsigned level) {
  uint64_t table_addr = owner.root;
  for (unsigned above = 4; above > level; --above) {
    uint64_t& e = table(table_addr)[index_at(linear, above)];
    if (!(e & kP)) e = allocate(owner) | kP | kRw | kUs;
    table_addr = e & kFrameMask;
  }
  return table(table_addr)[index_at(linear, level)];
}

bool ShadowPager::fill(uint64_t root, uint64_t linear, const isa::WalkResult& guest, bool writable) {
  if (free_frames_.size() < 4) {  // a fill needs at most three tables: start every shadow afresh
    flush_all();
    return false;
  }
  uint64_t leaf = (guest.paddr & kFrameMask) | kP | kUs;
  if (writable) leaf |= kRw;
  if (!guest.executable) leaf |= kXd;
  entry(owner_of(root), linear, 1) = leaf;
  ++counters_.fills;
  return true;
}

bool ShadowPager::fill_identity_2m(uint64_t root, uint64_t linear) {
  if (free_frames_.size() < 4) {
    flush_all();
    return false;
  }
  // A page table already under this entry (4 KiB fills of the same identity) stays with the
  // shadow until it is released.
  constexpr uint64_t kLarge2m = 1ull << 7;
  entry(owner_of(root), linear, 2) = (linear & kFrameMask & ~0x1FFFFFull) | kP | kRw | kUs | kLarge2m;
  ++counters_.fills;
  return true;
}

void ShadowPager::invalidate_page(uint64_t linear) {
  ++counters_.invalidations;
  for (auto& [key, s] : shadows_) {
    uint64_t table_addr = s.root;
    for (unsigned level = 4; level > 1 && table_addr; --level) {
      const uint64_t e = table(table_addr)[index_at(linear, level)];
      table_addr = (e & kP) ? (e & kFrameMask) : 0;
    }
    if (table_addr) table(table_addr)[index_at(linear, 1)] = 0;
  }
}

void ShadowPager::flush_all() {
  ++counters_.flushes;
  flushed_ = true;
  for (auto& [key, s] : shadows_) release(s);
  shadows_.clear();
  lru_.clear();
}

}  // namespace pgsim::vmm

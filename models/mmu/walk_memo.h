// The page walks the MMU makes again, remembered. Translations are always those of the current
// page tables: a soft-TLB miss that the modeled TLBs hit (no walk is charged) still runs the
// functional walk. Each walk is a function of the paging-structure entries it reads, the control
// state (CR0, CR3, CR4, EFER, RFLAGS.AC under SMAP, PKRU, IA32_PKRS) and the request, and a walk
// that finds every entry's accessed and dirty flags as it would set them writes nothing
// (isa/system/paging.h, WalkTrace). So the memo keeps each walk's entries with their values after
// it, and gives its result back only while every entry still holds that value in memory and the
// control state is the one it was made under: exactly when the walk would give it again. It saves
// host time only; nothing it does is simulated or counted.
#pragma once
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "isa/bus_if.h"
#include "isa/cpu_state.h"
#include "isa/system/paging.h"

namespace pgsim::models {

class WalkMemo {
 public:
  // Holds up to about `entries` translations (rounded up to a power of two).
  explicit WalkMemo(uint64_t entries)
      : slots_(std::bit_ceil(std::max<uint64_t>(entries, 1))), mask_(slots_.size() - 1) {}

  // Called before find() and record() with the state of the translation: a change of the control
  // state a walk reads beyond its entries makes every remembered walk stale.
  void note_state(const isa::CpuState& s) {
    const Control now{s.cr0, s.cr3, s.cr4, s.efer, (s.cr4 & isa::CR4_SMAP) ? s.rflags & isa::AC : 0, s.pkru, s.pkrs};
    if (now == control_) [[likely]] return;
    control_ = now;
    if (++epoch_ > kMaxEpoch) {  // every epoch used: forget every walk and start over
      std::fill(slots_.begin(), slots_.end(), Slot{});
      epoch_ = 1;
    }
  }

  // Forgets every walk and the host address of RAM (the bus's host mapping changed).
  void clear() {
    std::fill(slots_.begin(), slots_.end(), Slot{});
    have_host_offset_ = false;
  }

  // The walk's result for `req`, remembered and still what a walk gives (ok, paddr, page_size and
  // global set), or false.
  bool find(const isa::WalkRequest& req, isa::WalkResult& result) const {
    const Slot& slot = slots_[index(req)];
    if (slot.key != key(req)) return false;
    const unsigned count = slot.leaf & kCountMask;
    const bool wide = slot.leaf & kWide;
    for (unsigned i = 0; i < count; ++i) {
      const uint8_t* where = reinterpret_cast<const uint8_t*>(host_offset_ + slot.where[i]);
      if ((wide ? isa::load_host(where, 8) : isa::load_host(where, 4)) != slot.value[i]) return false;
    }
    result.ok = true;
    result.paddr = (slot.leaf & ~0xFFFull) | (req.linear & 0xFFF);
    result.page_size = 1ull << ((slot.leaf >> kShiftAt) & 0x3F);
    result.global = slot.leaf & kGlobal;
    return true;
  }

  // The host address of the data `req` accesses, if a walk for it is remembered (not checked to be
  // current), for a prefetch: the host fetches the data while the TLBs are modeled, rather than
  // after (a memory-bound guest's accesses mostly miss the host's caches).
  const uint8_t* likely_host(const isa::WalkRequest& req) const {
    const Slot& slot = slots_[index(req)];
    if (slot.key != key(req) || (slot.leaf >> 32) != 0) return nullptr;
    return reinterpret_cast<const uint8_t*>(host_offset_ + ((slot.leaf & ~0xFFFull) | (req.linear & 0xFFF)));
  }

  // Remembers a successful walk for `req`, if its trace is complete and short enough, and every
  // entry is in the RAM below 4 GiB that the bus maps to host memory in one piece (so that find()
  // reads what the walk would).
  void record(const isa::WalkRequest& req, const isa::WalkTrace& trace, const isa::WalkResult& walk,
              isa::PhysicalBus& bus) {
    Slot& slot = slots_[index(req)];
    slot.key = kNone;
    if (!trace.complete || trace.count == 0 || trace.count > kMaxEntries) return;
    for (unsigned i = 0; i < trace.count; ++i) {
      const uint64_t paddr = trace.paddr[i];
      uint8_t* frame = paddr >> 32 ? nullptr : bus.host_frame(paddr & ~0xFFFull);
      if (!frame) return;
      const intptr_t offset = reinterpret_cast<intptr_t>(frame) - static_cast<intptr_t>(paddr & ~0xFFFull);
      if (!have_host_offset_) host_offset_ = offset, have_host_offset_ = true;
      if (offset != host_offset_) return;
      slot.where[i] = static_cast<uint32_t>(paddr);
      slot.value[i] = trace.value[i];
    }
    slot.leaf = (walk.paddr & ~0xFFFull) | static_cast<uint64_t>(std::countr_zero(walk.page_size)) << kShiftAt |
                (walk.global ? kGlobal : 0) | (trace.size == 8 ? kWide : 0) | trace.count;
    slot.key = key(req);
  }

 private:
  static constexpr uint64_t kNone = ~0ull;
  static constexpr unsigned kMaxEntries = 4;  // 4-level paging; 5-level walks are not remembered
  static constexpr uint64_t kMaxEpoch = (1ull << 15) - 1;
  // Slot::leaf: the 4 KiB page's physical address, and in its low bits
  static constexpr uint64_t kCountMask = 0x7;  // the number of entries
  static constexpr uint64_t kWide = 1u << 3;   // 8-byte entries (else 4)
  static constexpr uint64_t kGlobal = 1u << 4;
  static constexpr unsigned kShiftAt = 5;      // log2 of the page size, 6 bits
  struct Control {
    uint64_t cr0, cr3, cr4, efer, ac;
    uint32_t pkru;
    uint64_t pkrs;
    bool operator==(const Control&) const = default;
  };
  // One remembered walk in one host cache line: its entries by physical address (the host address
  // is host_offset_ beyond it) and value.
  struct alignas(64) Slot {
    uint64_t key = kNone;
    uint64_t leaf = 0;
    uint32_t where[kMaxEntries] = {};
    uint64_t value[kMaxEntries] = {};
  };
  static_assert(sizeof(Slot) == 64);
  // The epoch, the linear page and what the walk checks the access for. Linear pages have at most
  // 45 bits (57-bit addresses).
  uint64_t key(const isa::WalkRequest& req) const {
    return epoch_ << 49 | (req.linear >> 12) << 4 | static_cast<uint64_t>(req.access) << 2 |
           uint64_t{req.user} << 1 | uint64_t{req.implicit};
  }
  uint64_t index(const isa::WalkRequest& req) const {
    return ((req.linear >> 12) ^ static_cast<uint64_t>(req.access) << 7 ^ uint64_t{req.user} << 9) & mask_;
  }

  std::vector<Slot> slots_;
  uint64_t mask_;
  Control control_{~0ull, ~0ull, ~0ull, ~0ull, ~0ull, ~0u, ~0ull};  // no state seen yet
  uint64_t epoch_ = 1;
  intptr_t host_offset_ = 0;  // host address less physical address of the RAM entries are read in
  bool have_host_offset_ = false;
};

}  // namespace pgsim::models

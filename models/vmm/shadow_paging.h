// Shadow paging: the page tables the real CPU walks while a deprivileged guest runs. They map the
// guest's linear addresses straight to host-physical frames (guest-physical equals host-physical
// here: the guest's RAM is the machine's RAM below the VMM's), are built lazily from the guest's
// own tables on hidden page faults, and live in the VMM's memory above guest RAM.
//
// - One shadow per guest address space (guest CR3) and guest mode: the kernel shadow also holds
//   the guest's supervisor pages (user-accessible, since the guest kernel runs at CPL 3, or at CPL
//   1 or 2 in 32-bit protected mode, where user pages are within its reach as well), the user
//   shadow only its user pages. Up to `cached_roots` shadows are kept across CR3 switches. The
//   guest's tables may be 4-level, PAE or 32-bit ones (a 32-bit guest's shadow is 4-level all the
//   same: the real CPU stays in IA-32e mode); while its paging is off, one more shadow maps linear
//   to physical addresses, with 2 MiB pages over guest RAM.
// - Guest page-table frames are write-protected in every shadow, so that the guest's updates to
//   them fault and are traced; clean pages are mapped read-only until written, so that the guest's
//   dirty bits are set as the hardware would set them.
// - Every shadow maps the VMM's own area (its GDT, IDT and TSS) supervisor-only at kVmmLinearBase,
//   out of the guest's reach but where the real CPU finds its descriptor tables: supervisor-only
//   keeps it from 64-bit guest code at CPL 3, and 32-bit guest code, even at CPL 1 or 2, cannot
//   form an address that high.
#pragma once
#include <cstdint>
#include <list>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "isa/bus_if.h"
#include "isa/system/paging.h"

namespace pgsim::vmm {

// The linear address of the VMM's area in every shadow (PML4 slot 510), which the guest may not use.
constexpr uint64_t kVmmLinearBase = 0xFFFFFF0000000000ull;
constexpr uint64_t kVmmLinearSize = 1ull << 39;

struct ShadowCounters {
  uint64_t hidden_faults = 0;  // page faults the guest's tables allow: the shadow lacked the entry
  uint64_t true_faults = 0;    // page faults the guest's tables cause: reflected to the guest
  uint64_t fills = 0;          // shadow leaf entries built
  uint64_t traced_writes = 0;  // guest writes to its own (write-protected) page tables, emulated
  uint64_t cr3_switches = 0;   // guest address-space switches (MOV CR3 with another root)
  uint64_t cache_hits = 0;     // switches to an address space whose shadow was kept
  uint64_t cache_misses = 0;   // switches that had to start a new shadow
  uint64_t flushes = 0;        // every shadow dropped (new page-table frame, traced write, CR0/CR4 change)
  uint64_t invalidations = 0;  // guest INVLPGs applied to the shadows
  uint64_t table_frames = 0;   // shadow page-table frames in use
  uint64_t unprotected = 0;    // guest frames no longer treated as page tables after a write flood
};

class ShadowPager {
 public:
  // The pool of shadow page-table frames is [pool_base, pool_base + pool_frames * 4 KiB) of
  // physical RAM; `vmm_area` (physical, `vmm_area_frames` frames) is mapped at kVmmLinearBase.
  ShadowPager(isa::PhysicalBus& bus, uint64_t pool_base, uint64_t pool_frames, unsigned cached_roots,
              uint64_t vmm_area, uint64_t vmm_area_frames);

  // The real CR3 for a guest address space in guest user or kernel mode. `address_space` is the
  // guest's CR3 without its flag bits: the frame of its top-level table, or the 32-byte aligned
  // PDPT of PAE paging outside IA-32e mode.
  uint64_t root(uint64_t address_space, bool user_mode);
  // The real CR3 while the guest's paging is off: a shadow that maps each linear address to the
  // same physical one (filled on hidden faults like any other). Entering it is no address-space
  // switch, and the first root() after it counts as a new one, not as a switch.
  uint64_t paging_off_root();
  // Maps the page of `linear` in shadow `root` to the frame of `guest.paddr`, with the guest's
  // execute permission, writable only when `writable`. Returns false when the pool was full and
  // every shadow was dropped instead (the caller takes a new root; the guest's retry fills it).
  bool fill(uint64_t root, uint64_t linear, const isa::WalkResult& guest, bool writable);
  // Maps the 2 MiB page around `linear` in shadow `root` to the same physical 2 MiB, writable and
  // executable: for the paging-off shadow, over guest RAM (the caller checks that it is). Returns
  // false as fill() does.
  bool fill_identity_2m(uint64_t root, uint64_t linear);
  // Drops the page of `linear` from every shadow.
  void invalidate_page(uint64_t linear);
  // Drops every shadow.
  void flush_all();

  // Guest page-table frames (seen in the guest's walks): write-protected in every shadow. Returns
  // true when `frame` was not known yet.
  bool note_page_table_frame(uint64_t frame) {
    write_streak_.erase(frame);  // in use as a table again
    return page_table_frames_.insert(frame).second;
  }
  bool is_page_table_frame(uint64_t frame) const { return page_table_frames_.count(frame) != 0; }
  // A traced write to page-table frame `frame` (after which every shadow is dropped). After
  // kFloodWrites writes with no guest walk through the frame in between, the guest is taken to
  // be using it for something else (zeroing a freed table, say): it is no longer write-protected
  // until a walk meets it again (write-flood detection, as KVM does). No shadow can depend on it
  // meanwhile: they were all dropped, and a fill that walks through it marks it again first.
  void note_traced_write(uint64_t frame) {
    if (++write_streak_[frame] < kFloodWrites) return;
    write_streak_.erase(frame);
    page_table_frames_.erase(frame);
    ++counters_.unprotected;
  }
  static constexpr unsigned kFloodWrites = 4;

  // True once after every shadow was dropped (the real TLBs must forget them all; a new root may
  // sit at the address of a dropped one). invalidate_page() leaves the real TLB to the caller.
  bool take_dropped() {
    const bool dropped = flushed_;
    flushed_ = false;
    return dropped;
  }

  ShadowCounters& counters() { return counters_; }
  const ShadowCounters& counters() const { return counters_; }

 private:
  struct Shadow {
    uint64_t root;                // physical address of the PML4
    std::vector<uint64_t> frames; // every table frame it uses (root included)
  };
  using Key = std::pair<uint64_t, bool>;  // guest address space (or kPagingOff), user mode

  uint64_t* table(uint64_t paddr) const;
  Shadow& owner_of(uint64_t root);
  // The entry for `linear` at `level` (1: page table, 2: page directory) of `owner`, with the
  // tables above it allocated where missing.
  uint64_t& entry(Shadow& owner, uint64_t linear, unsigned level);
  uint64_t allocate(Shadow& owner);
  void release(Shadow& s);
  Shadow& create(const Key& key);

  isa::PhysicalBus& bus_;
  std::vector<uint64_t> free_frames_;
  unsigned cached_roots_;
  uint64_t vmm_pdpt_ = 0;  // the VMM area's PDPT, shared by every shadow
  std::map<Key, Shadow> shadows_;
  std::list<Key> lru_;  // most recently used first
  Key current_{~0ull, false};  // ~0: no guest address space yet, or paging off
  static constexpr Key kPagingOff{1, false};  // no CR3 value is 1
  std::unordered_set<uint64_t> page_table_frames_;
  std::unordered_map<uint64_t, unsigned> write_streak_;  // traced writes since the last walk through it
  ShadowCounters counters_;
  bool flushed_ = false;
};

}  // namespace pgsim::vmm

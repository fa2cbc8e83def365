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
// - Every shadow leaf remembers the guest paging-structure entries it was built from (a reverse
//   map from guest entry to shadow leaves) and the guest frame it maps (a reverse map from frame
//   to leaves), as VMware's and KVM's shadow MMUs do: a write to a guest entry drops exactly the
//   leaves built from it, and a frame that becomes a page table is write-protected only where a
//   shadow maps it. Every shadow is dropped only when the guest changes how its tables are read
//   (CR0/CR4) or the pool of shadow tables runs dry.
// - Every shadow maps the VMM's own area (its GDT, IDT and TSS) supervisor-only at kVmmLinearBase,
//   out of the guest's reach but where the real CPU finds its descriptor tables: supervisor-only
//   keeps it from 64-bit guest code at CPL 3, and 32-bit guest code, even at CPL 1 or 2, cannot
//   form an address that high.
#pragma once
#include <compare>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "isa/bus_if.h"
#include "isa/system/paging.h"
#include "models/vmm/frame_set.h"

namespace pgsim::vmm {

// The linear address of the VMM's area in every shadow (PML4 slot 510), which the guest may not use.
constexpr uint64_t kVmmLinearBase = 0xFFFFFF0000000000ull;
constexpr uint64_t kVmmLinearSize = 1ull << 39;

// The index of `linear`'s entry in its page table of `level` (1: the PT ... 4: the PML4).
inline unsigned index_at(uint64_t linear, unsigned level) { return (linear >> (12 + 9 * (level - 1))) & 511; }

struct ShadowCounters {
  uint64_t hidden_faults = 0;  // page faults the guest's tables allow: the shadow lacked the entry
  uint64_t true_faults = 0;    // page faults the guest's tables cause: reflected to the guest
  uint64_t fills = 0;          // shadow leaf entries built
  uint64_t traced_writes = 0;  // guest writes to its own (write-protected) page tables, emulated
  uint64_t cr3_switches = 0;   // guest address-space switches (MOV CR3 with another root)
  uint64_t cache_hits = 0;     // switches to an address space whose shadow was kept
  uint64_t cache_misses = 0;   // switches that had to start a new shadow
  uint64_t flushes = 0;        // every shadow dropped (CR0/CR4 paging-mode change, pool exhausted)
  uint64_t entry_invalidations = 0;  // shadow leaves dropped because a guest entry they came from changed
  uint64_t write_protections = 0;    // shadow leaves made read-only: the frame they map became a page table or GDT
  uint64_t invalidations = 0;  // guest INVLPGs applied to the shadows
  uint64_t table_frames = 0;   // shadow page-table frames in use
  uint64_t unprotected = 0;    // guest frames no longer treated as page tables after a write flood
  uint64_t gdt_traced_writes = 0;  // guest writes to its (write-protected) GDT pages, emulated
  uint64_t gdt_entry_updates = 0;  // guest GDT entries written (by the guest or its virtual CPU), shadowed anew
  uint64_t gdt_resyncs = 0;        // guest GDT read whole again: loaded, moved or remapped
};

class ShadowPager {
 public:
  // The pool of shadow page-table frames is [pool_base, pool_base + pool_frames * 4 KiB) of
  // physical RAM; `vmm_area` (physical, `vmm_area_frames` frames) is mapped at kVmmLinearBase.
  ShadowPager(isa::PhysicalBus& bus, uint64_t pool_base, uint64_t pool_frames, unsigned cached_roots,
              uint64_t vmm_area, uint64_t vmm_area_frames);

  // The guest's own kernel runs at CPL 0 (hw_assist without EPT): a leaf keeps the guest's U/S, so
  // that one shadow per address space serves its kernel and its user code (root(.., false)).
  // Otherwise every leaf is user-accessible, for a guest kernel that runs deprivileged.
  void keep_guest_user_bit() { keep_guest_user_bit_ = true; }
  // The real CR3 for a guest address space in guest user or kernel mode. `address_space` is the
  // guest's CR3 without its flag bits: the frame of its top-level table, or the 32-byte aligned
  // PDPT of PAE paging outside IA-32e mode.
  uint64_t root(uint64_t address_space, bool user_mode);
  // The process-context identifier of the shadow whose root is `root`: each live shadow has its
  // own (1-4095), so that a VMM on a CPU with PCIDs keeps the real TLB entries of the shadows it
  // switches between, as a VMM on such a CPU would. A PCID is reused only after the shadow that
  // had it was dropped, which take_dropped() reports (the real TLBs must then be flushed).
  uint16_t pcid(uint64_t root);
  // The real CR3 while the guest's paging is off: a shadow that maps each linear address to the
  // same physical one (filled on hidden faults like any other). Entering it is no address-space
  // switch, and the first root() after it counts as a new one, not as a switch.
  uint64_t paging_off_root();
  // The PDPT that maps the VMM's area (PDPT entry 0 of kVmmLinearBase's PML4 slot), for a strategy
  // that links it into page tables of its own making (paravirt under direct paging).
  uint64_t vmm_area_pdpt() const { return vmm_pdpt_; }
  // Whether the frame of `paddr` is RAM (the bus has a host pointer for it). Anything else is
  // device memory (or nothing): no shadow maps it, so that every guest access to it faults into
  // the VMM, which emulates it on its device models.
  bool is_ram(uint64_t paddr) const { return table(paddr) != nullptr; }
  // A guest paging-structure entry a walk read: its physical address and width (8 bytes; 4 with
  // 32-bit paging).
  struct GuestEntry {
    uint64_t paddr;
    unsigned size;
  };
  // Maps the page of `linear` in shadow `root` to the frame of `guest.paddr`, with the guest's
  // execute permission, writable only when `writable`; `sources` are the guest entries the walk
  // read, on which the new leaf depends. Returns false when the pool was full and every shadow was
  // dropped instead (the caller takes a new root; the guest's retry fills it). Throws
  // std::logic_error for a frame that is not RAM.
  bool fill(uint64_t root, uint64_t linear, const isa::WalkResult& guest, bool writable,
            const std::vector<GuestEntry>& sources);
  // Maps the 2 MiB around `linear` in shadow `root` to the same physical 2 MiB, writable and
  // executable, for the paging-off shadow over guest RAM (the caller checks that it is): as one
  // 2 MiB page, or, where it holds write-protected frames (page tables, the GDT), as 512 4 KiB
  // entries of which theirs are read-only; a frame write-protected later turns the 2 MiB page into
  // such entries. Returns false as fill() does.
  bool fill_identity_2m(uint64_t root, uint64_t linear);
  // Guest physical memory [paddr, paddr + size) is about to be written with `value` (size <= 8):
  // drops the shadow leaves built from a guest entry the write changes. A write that only sets
  // accessed or dirty bits changes nothing a leaf relies on (a leaf is writable only once its
  // guest entry is dirty).
  void guest_write(uint64_t paddr, unsigned size, uint64_t value);
  // True when writing `value` to [paddr, paddr + size) changes the guest entry of `width` bytes at
  // `entry` in more than setting its accessed or dirty bits.
  bool changes_entry(uint64_t entry, unsigned width, uint64_t paddr, unsigned size, uint64_t value) const;
  // Called with the linear page of every shadow leaf dropped or made read-only one by one (the
  // real TLB must forget it).
  std::function<void(uint64_t linear)> on_leaf_changed;
  // Installs `pml4_entry` at the PML4 slot of `linear` in every kernel-mode shadow (user_mode
  // false), present and future: a region of the VMM's that the guest kernel's code reaches while
  // the guest's user code does not (binary translation's translation cache and vCPU page). The
  // guest may not map that slot (the VMM refuses such a mapping as it does kVmmLinearBase).
  void map_in_kernel_shadows(uint64_t linear, uint64_t pml4_entry);
  // Drops the page of `linear` from every shadow.
  void invalidate_page(uint64_t linear);
  // Drops every shadow.
  void flush_all();

  // Guest page-table frames (seen in the guest's walks): write-protected in every shadow (the
  // leaves that map a frame new to the set are made read-only here).
  void note_page_table_frame(uint64_t frame) {
    write_streak_.erase(frame);  // in use as a table again
    if (page_table_frames_.insert(frame)) write_protect(frame);
  }
  bool is_page_table_frame(uint64_t frame) const { return page_table_frames_.contains(frame); }
  // The frames holding the guest's GDT, write-protected like page tables (the VMM keeps a shadow
  // GDT made from them); `frames` replaces the previous set.
  void set_gdt_frames(const std::vector<uint64_t>& frames);
  bool is_gdt_frame(uint64_t frame) const { return gdt_frames_.contains(frame); }
  // Guest frames holding code the VMM translated (binary translation): write-protected like page
  // tables, so that a write to them faults and the VMM drops its translations first; released
  // when it has, and the write goes through.
  void note_code_frame(uint64_t frame) {
    if (code_frames_.insert(frame)) write_protect(frame);
  }
  void release_code_frame(uint64_t frame) { code_frames_.erase(frame); }
  bool is_code_frame(uint64_t frame) const { return code_frames_.contains(frame); }
  // The guest's writes to `frame` must fault: a page table, the GDT or translated code.
  bool is_write_protected(uint64_t frame) const {
    return is_page_table_frame(frame) || is_gdt_frame(frame) || is_code_frame(frame);
  }
  // A traced write to page-table frame `frame`. After kFloodWrites writes with no guest walk
  // through the frame in between, the guest is taken to be using it for something else (zeroing
  // a freed table, say): it is no longer write-protected until a walk meets it again
  // (write-flood detection, as KVM does). Its writes are then no longer seen, so every leaf built
  // from one of its entries is dropped now; a fill that walks through it marks it again first.
  void note_traced_write(uint64_t frame);
  static constexpr unsigned kFloodWrites = 4;

  // True once after the real TLBs may hold entries of shadows dropped wholesale (every shadow, or
  // one evicted from the cache; a new root may sit at the address of a dropped one). Leaves
  // dropped one by one are told to on_leaf_changed instead.
  bool take_dropped() {
    const bool dropped = flushed_;
    flushed_ = false;
    return dropped;
  }

  ShadowCounters& counters() { return counters_; }
  const ShadowCounters& counters() const { return counters_; }

 private:
  using Key = std::pair<uint64_t, bool>;  // guest address space (or kPagingOff), user mode
  struct Leaf {
    uint64_t slot;    // physical address of the shadow entry
    uint64_t frame;   // the guest frame it maps
    std::vector<GuestEntry> sources;
  };
  struct Shadow {
    uint64_t root;                // physical address of the PML4
    uint16_t pcid = 0;            // its process-context identifier (0: none free)
    std::vector<uint64_t> frames; // every table frame it uses (root included)
    std::map<uint64_t, Leaf> leaves;  // by linear page
    std::set<uint64_t> identity_2m;   // 2 MiB pages of the paging-off shadow (fill_identity_2m), by base
  };
  // A shadow leaf: its shadow and linear page.
  struct LeafRef {
    Key shadow;
    uint64_t page;
    auto operator<=>(const LeafRef&) const = default;
  };
  // The leaves built from one guest entry.
  struct Dependents {
    unsigned size = 8;
    std::set<LeafRef> leaves;
  };

  uint64_t* table(uint64_t paddr) const;
  // The shadow whose PML4 is at `root`, with its key.
  std::map<Key, Shadow>::value_type& owner_of(uint64_t root);
  // The physical address of the entry for `linear` at `level` (1: page table, 2: page directory)
  // of `owner`, with the tables above it allocated where missing (a 2 MiB identity page on the way
  // to a page table gives way to one).
  uint64_t entry_slot(Shadow& owner, uint64_t linear, unsigned level);
  // The shadow entry at physical address `slot`.
  uint64_t& entry(uint64_t slot) const;
  // Whether a write-protected frame (page table or GDT) lies in the 2 MiB around `linear`.
  bool write_protects_within_2m(uint64_t linear) const;
  // The identity mapping of the 2 MiB at `base` in `shadow` as 4 KiB entries, write-protected
  // frames read-only.
  void fill_identity_4k(Shadow& shadow, uint64_t base);
  uint64_t allocate(Shadow& owner);
  void release(Shadow& s, const Key& key);
  Shadow& create(const Key& key);
  // Removes a leaf from the reverse maps (not from its table).
  void unlink(const LeafRef& ref, const Leaf& leaf);
  // Drops a leaf: its shadow entry is cleared and the real TLB told.
  void drop(const LeafRef& ref);
  using DependentsMap = std::map<uint64_t, Dependents>;  // by guest entry (physical)
  // The guest entries some leaf was built from that overlap [begin, end) of physical memory.
  std::vector<DependentsMap::const_iterator> overlapping(uint64_t begin, uint64_t end) const;
  // Drops every leaf built from an entry in [begin, end) of guest physical memory; returns how many.
  uint64_t drop_dependents(uint64_t begin, uint64_t end);
  // Makes every leaf that maps guest frame `frame` read-only.
  void write_protect(uint64_t frame);

  isa::PhysicalBus& bus_;
  std::vector<uint64_t> free_frames_;
  std::vector<uint16_t> free_pcids_;  // process-context identifiers no live shadow holds
  unsigned cached_roots_;
  uint64_t vmm_pdpt_ = 0;  // the VMM area's PDPT, shared by every shadow
  std::map<unsigned, uint64_t> kernel_slots_;  // map_in_kernel_shadows: PML4 slot -> entry
  std::map<Key, Shadow> shadows_;
  std::list<Key> lru_;  // most recently used first
  Key current_{~0ull, false};  // ~0: no guest address space yet, or paging off
  static constexpr Key kPagingOff{1, false};  // no CR3 value is 1
  FrameSet page_table_frames_;
  FrameSet gdt_frames_;
  FrameSet code_frames_;
  std::unordered_map<uint64_t, unsigned> write_streak_;  // traced writes since the last walk through it
  DependentsMap dependents_;                              // guest entry -> leaves built from it
  std::unordered_map<uint64_t, std::set<LeafRef>> mappers_;  // guest frame -> leaves that map it
  ShadowCounters counters_;
  bool flushed_ = false;
  bool keep_guest_user_bit_ = false;
};

}  // namespace pgsim::vmm

// Direct paging (Xen's model, SOSP 2003): the paravirtual guest's own page tables are the ones the
// CPU walks, so the VMM must see every change to them before it takes effect. This component
// validates: it types every frame of guest RAM (none, writable, page table of level 1-4) with a
// count of the references that need that type, and keeps the invariants that let a guest run on its
// own tables without reaching anything it does not own:
//   - no mapping points outside guest RAM or into the VMM's memory;
//   - a frame in use as a page table is never mapped writable, and a frame mapped writable never
//     becomes a page table (the guest could otherwise rewrite a table behind the validator);
//   - an entry of a level-L table (L > 1, not a large page) points to a table of level L-1;
//   - PML4 entries PV_VMM_PML4_FIRST..PV_VMM_PML4_LAST are the VMM's: validation skips them and
//     the guest may not write them.
// A table is validated when something first needs it as a table (pin, a root load, an entry of an
// upper table that points to it) and loses its type when the last such reference goes, which drops
// the references its own entries held. Refusals return the ABI's error codes (pv_abi.h), leaving
// guest memory and every type as they were.
//
// Plain C++ on isa/'s PhysicalBus: the paravirt strategy calls it from its hypercall handlers
// (mmu_update, pin_table, unpin_table, new_baseptr); it knows nothing of the CPU or the TLB, whose
// flushes stay the strategy's.
#pragma once
#include <cstdint>
#include <vector>

#include "isa/bus_if.h"
#include "workloads/kernel/pv_abi.h"

namespace pgsim::vmm {

enum class FrameType : uint8_t { None, Writable, L1, L2, L3, L4 };

// What the validator has done (vmm.direct_paging.* once the strategy publishes them).
struct DirectPagingCounters {
  uint64_t validations = 0;  // requests checked: updates, pins, unpins, roots loaded
  uint64_t refusals = 0;     // of which refused with an error code
  uint64_t updates = 0;      // page-table entries written after validation
  uint64_t plain_writes = 0; // updates of frames that are not page tables (written as they are)
  uint64_t tables_validated = 0;    // frames that became page tables (their entries checked)
  uint64_t tables_invalidated = 0;  // frames that stopped being page tables
};

class DirectPaging {
 public:
  // Guest RAM is [0, guest_ram_bytes); the VMM's memory is [vmm_base, vmm_base + vmm_bytes).
  DirectPaging(isa::PhysicalBus& memory, uint64_t guest_ram_bytes, uint64_t vmm_base, uint64_t vmm_bytes);

  // One mmu_update request: the entry at guest-physical `ptr` becomes `value`. 0 or -PV_E*.
  int64_t update(uint64_t ptr, uint64_t value);
  // mmu_update: the requests in order, stopping at the first refused one. Returns `count` when all
  // were applied, else the refused request's negative error code; `done` receives how many were
  // applied either way (when not null).
  int64_t update_batch(const pv_mmu_update* requests, uint64_t count, uint64_t* done = nullptr);
  // pin_table: `frame` validated as a table of `level` (1-4) and kept so until unpinned.
  int64_t pin(uint64_t frame, unsigned level);
  // unpin_table: drops the pin; -ENOENT when not pinned, -EBUSY while it is a loaded root.
  int64_t unpin(uint64_t frame);
  // new_baseptr: both roots validated as level-4 tables and referenced while loaded (user_root 0:
  // none); the previous roots' references are dropped. The caller flushes the TLB.
  int64_t load_roots(uint64_t kernel_root, uint64_t user_root);

  FrameType type_of(uint64_t frame) const;
  uint32_t type_count(uint64_t frame) const;
  bool pinned(uint64_t frame) const;
  uint64_t kernel_root() const { return kernel_root_; }
  uint64_t user_root() const { return user_root_; }
  const DirectPagingCounters& counters() const { return counters_; }

 private:
  struct Frame {
    FrameType type = FrameType::None;
    bool pinned = false;
    uint32_t count = 0;  // references that need `type`
  };

  // Whether [frame, frame + bytes) is guest RAM: 0, -PV_EPERM (the VMM's memory) or -PV_EINVAL.
  int64_t check_owned(uint64_t address, uint64_t bytes) const;
  // A reference that needs `frame` to have `type`; validates a table on its first reference.
  int64_t get_type(uint64_t frame, FrameType type);
  void put_type(uint64_t frame);
  // The references an entry of a level-`level` table holds: taken when it is written or its table
  // validated, dropped when it is overwritten or its table invalidated.
  int64_t get_entry(uint64_t entry, unsigned level, unsigned index);
  void put_entry(uint64_t entry, unsigned level, unsigned index);
  int64_t validate_table(uint64_t frame, unsigned level);
  void invalidate_table(uint64_t frame, unsigned level);
  int64_t count(int64_t result);  // counts one validation and, if refused, one refusal

  uint64_t read_entry(uint64_t address);
  void write_entry(uint64_t address, uint64_t value);

  isa::PhysicalBus& memory_;
  uint64_t ram_bytes_, vmm_base_, vmm_bytes_;
  std::vector<Frame> frames_;
  uint64_t kernel_root_ = 0, user_root_ = 0;
  DirectPagingCounters counters_;
};

// The level a FrameType of a page table stands for (1-4), 0 for the others.
unsigned table_level(FrameType type);
FrameType table_type(unsigned level);

}  // namespace pgsim::vmm

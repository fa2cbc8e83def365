// A page fault taken while a guest runs on shadow page tables, judged by the guest's own tables:
// what every shadow-paging VMM decides first (DeprivilegedGuest for the deprivileged strategies,
// HwAssistVmm without EPT), before each emulates, reflects or injects in its own way.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "isa/cpu_state.h"
#include "isa/system/events.h"
#include "isa/system/paging.h"
#include "models/vmm/shadow_paging.h"

namespace pgsim::stats {
class Registry;
}

namespace pgsim::vmm {

// Collects the guest paging entries a walk reads (what a shadow built from it depends on) and
// notes their frames as page tables.
struct TableFrames : isa::WalkObserver {
  ShadowPager& shadow;
  unsigned entry_size;
  std::vector<ShadowPager::GuestEntry> entries;
  TableFrames(ShadowPager& s, const isa::CpuState& v)
      : shadow(s), entry_size(isa::paging_mode(v) == isa::PagingMode::Bits32 ? 4 : 8) {}
  void on_reference(uint64_t paddr, unsigned) override {
    shadow.note_page_table_frame(paddr >> 12);
    entries.push_back({paddr, entry_size});
  }
};

struct ShadowFault {
  enum class Kind {
    Hidden,       // the guest's tables allow the access: the shadow lacks the entry
    TracedWrite,  // a write the shadow must not let through (a guest page table, the GDT, code
                  // the strategy translated, or a supervisor write to a read-only page with WP clear)
    Mmio,         // an access to device memory, which no shadow maps
    Guest,        // the guest's own fault (walk.fault holds it, with its error code and CR2)
    Refused,      // the guest reaches the VMM's memory or linear area: the run must stop
  };
  Kind kind = Kind::Guest;
  isa::WalkResult walk;                           // the guest's walk of the faulting access
  std::vector<ShadowPager::GuestEntry> sources;   // the guest entries it read
  bool page_table = false, gdt = false;           // TracedWrite: what the written frame is
  std::string refusal;                            // Refused: why
};

// Where the VMM's own memory is (physical), which no guest mapping may reach.
struct VmmMemory {
  uint64_t base = 0, size = 0;
  bool contains(uint64_t paddr) const { return paddr >= base && paddr - base < size; }
};

// Walks the guest's tables (in `guest`, the state the guest believes it has, through `bus`) for
// the access of page fault `event` made at guest CPL 3 when `user`, notes the tables it meets as
// page tables, counts the fault (hidden_faults, true_faults, traced_writes, gdt_traced_writes) and
// says what it is. `on_code_write` (may be empty) is told of a write to a code frame first.
ShadowFault examine_shadow_fault(ShadowPager& shadow, const isa::CpuState& guest, isa::PhysicalBus& bus,
                                 const isa::Event& event, bool user, const VmmMemory& vmm,
                                 const std::function<void(uint64_t frame)>& on_code_write);

// Fills shadow `root` for a Hidden fault at `linear`: with the guest's paging off, the 2 MiB
// around it as an identity page when `identity_2m` (all guest RAM), else the one page. Returns
// false when the pool ran dry and every shadow was dropped instead (the guest's retry fills anew).
bool fill_shadow(ShadowPager& shadow, uint64_t root, const isa::CpuState& guest, uint64_t linear,
                 const ShadowFault& fault, bool identity_2m);

// Binds vmm.shadow.* to `counters`.
void bind_shadow_statistics(stats::Registry& registry, const ShadowCounters& counters);

}  // namespace pgsim::vmm

// The debug registers' breakpoints (Intel SDM vol. 3, 18.2-18.3): which DR7 enables, the
// instruction breakpoints checked at the boundary, the data and I/O breakpoints the accesses meet.
#include "isa/core.h"
#include "isa/system/events.h"

namespace pgsim::isa {

void Core::sync_debug_registers() {
  const uint64_t dr7 = state_.dr[7];
  if (dr7 == synced_dr7_ && !(dr7 & DR7_ENABLES)) return;  // none enabled, before or now
  uint8_t exec = 0, data = 0, io = 0;
  for (unsigned n = 0; n < 4; ++n) {
    if (!dr7_enabled(dr7, n)) continue;
    switch (dr7_rw(dr7, n)) {
      case kDebugExec: exec |= 1u << n; break;
      case kDebugIo:  // I/O breakpoints exist with CR4.DE; without it the encoding is undefined
        if (state_.cr4 & CR4_DE) io |= 1u << n;
        break;
      default: data |= 1u << n; break;
    }
  }
  // A page that holds a new data breakpoint may have soft-TLB entries: they go.
  bool moved = false;
  for (unsigned n = 0; n < 4; ++n) moved |= (data >> n & 1) && state_.dr[n] != synced_dr_[n];
  if (data & ~debug_data_ || moved) flush_soft_tlb();
  for (unsigned n = 0; n < 4; ++n) synced_dr_[n] = state_.dr[n];
  synced_dr7_ = dr7;
  debug_exec_ = exec;
  debug_data_ = data;
  debug_io_ = io;
}

bool Core::watched_page(uint64_t lin) const {
  for (unsigned n = 0; n < 4; ++n)
    if ((debug_data_ >> n & 1) && ((state_.dr[n] ^ lin) & lin_mask_ & ~0xFFFull) == 0) return true;
  return false;
}

// A breakpoint covers LEN bytes at its address aligned down to LEN (SDM 18.2.5); an access of
// `size` bytes at `address` meets it when the two overlap.
void Core::note_breakpoint_hits(uint64_t address, unsigned size, unsigned kind) {
  const uint8_t candidates = kind == kDebugIo ? debug_io_ : debug_data_;
  const uint64_t dr7 = state_.dr[7];
  for (unsigned n = 0; n < 4; ++n) {
    if (!(candidates >> n & 1)) continue;
    const unsigned rw = dr7_rw(dr7, n);
    if (kind == kDebugReadWrite && rw != kDebugReadWrite) continue;  // a read meets R/W breakpoints only
    const uint64_t len = dr7_len(dr7, n);
    const uint64_t start = state_.dr[n] & ~(len - 1);
    if (address < start + len && start < address + size) {
      debug_hits_ |= 1u << n;
      attention_ = true;
    }
  }
}

bool Core::check_code_breakpoints() {
  const uint64_t lin = (cs_base_ + state_.rip) & lin_mask_;
  uint8_t hits = 0;
  for (unsigned n = 0; n < 4; ++n)
    if ((debug_exec_ >> n & 1) && (state_.dr[n] & lin_mask_) == lin) hits |= 1u << n;
  if (!hits) return false;
  // A fault: the frame's RIP is the instruction's, its RF the current (clear) one.
  state_.dr[6] = (state_.dr[6] & ~kDr6Hits) | hits;
  route_event(Event{DB, EventKind::Exception, false, 0, 0});
  return true;
}

// Debug traps of the previous instruction, one #DB for all (SDM vol. 3, 18.3.1): single step
// after an instruction that began with TF=1, and the data and I/O breakpoints it met.
void Core::deliver_debug_trap() {
  if (!single_step_pending_ && !debug_hits_) return;
  state_.dr[6] = (state_.dr[6] & ~kDr6Hits) | debug_hits_ | (single_step_pending_ ? uint64_t(DR6_BS) : 0);
  single_step_pending_ = false;
  debug_hits_ = 0;
  route_event(Event{DB, EventKind::Exception, false, 0, 0});
}

}  // namespace pgsim::isa

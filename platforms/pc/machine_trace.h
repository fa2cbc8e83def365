// trace.vcd: what the CPU and the VMM did, over simulated time, for GTKWave. Signals (the header's
// comments say the same):
//   pc.cpu.mode                       isa::Mode (0 real, 1 virtual-8086, 2 protected16,
//                                     3 protected32, 4 compat16, 5 compat32, 6 long64)
//   pc.cpu.cpl                        the real CPU's CPL
//   pc.cpu.interrupts                 external interrupts delivered by the CPU, so far
//   pc.cpu.exceptions_and_interrupts  events the core raised, so far
//   pc.cpu.tlb_miss_walks             page walks (L2 TLB misses), so far (= mmu.walk.count)
//   pc.cpu.walk_refs                  paging-structure references of those walks (= mmu.walk.refs)
//   pc.cpu.walks_per_quantum          page walks in the chunk just run (every non-zero count written)
//   pc.vmm.state, state_name          where the guest runs (vmm::GuestState: 0 guest_direct,
//                                     1 in_vmm, 2 translated, 3 hypercall, 4 non_root, 5 interpreted)
//   pc.vmm.virtual_cpl                the CPL the guest believes it runs at
//   pc.vmm.traps, trap_cause          each trap into the VMM (count, and vmm.traps.<cause>)
//   pc.vmm.vm_exits, exit_reason      each VM exit (count, and vmm.exits.<reason>)
//   pc.vmm.callouts, callout          each callout from translated code (vmm.callouts.<op>)
//   pc.vmm.hypercalls, hypercall      each hypercall (vmm.hypercalls.<op>)
//   pc.vmm.vm_entries                 VM entries, so far
// Events (traps, exits, callouts, hypercalls, and the state's changes around them) are written
// at the cycle they happened, however deep in a quantum; the counts, CPL and mode are sampled at
// the end of every chunk the CPU runs (a quantum at most) and around every entry into the VMM.
// Times are in picoseconds: cycles / timing.clock_hz.
#pragma once
#include <filesystem>

#include "models/cpu/cpu.h"
#include "models/trace/vcd_writer.h"
#include "models/vmm/trap_router.h"
#include "models/vmm/vmm_trace.h"

namespace pgsim::pc {

class MachineTrace final : public vmm::VmmTrace {
 public:
  // Writes the header of `path` and attaches to the CPU and the trap router.
  MachineTrace(const std::filesystem::path& path, models::Cpu& cpu, vmm::TrapRouter& router);
  ~MachineTrace() override;
  // Samples the last values and closes the file (throws std::runtime_error if it cannot be written).
  void close();

  // vmm::VmmTrace
  uint64_t now() override { return cpu_.cycles().total(); }
  void entered(uint64_t at, vmm::VmmEntry how, const std::string& reason) override;
  void left() override;

 private:
  uint64_t picoseconds(uint64_t cycles) const;
  void sample(uint64_t ps);  // the sampled signals, where they changed
  void set_state(uint64_t ps, vmm::GuestState state);

  models::Cpu& cpu_;
  vmm::TrapRouter& router_;
  models::VcdWriter vcd_;
  using Signal = models::VcdWriter::Signal;
  Signal mode_, cpl_, interrupts_, events_, walks_, walk_refs_, walks_per_quantum_;
  Signal state_, state_name_, virtual_cpl_, vm_entries_;
  struct EventSignals {
    Signal count, reason;
    uint64_t n = 0;
  };
  EventSignals traps_, exits_, callouts_, hypercalls_;
  vmm::GuestState state_now_ = vmm::GuestState::GuestDirect;
  uint64_t walks_at_sample_ = 0, walks_in_last_sample_ = 0;
  bool closed_ = false;
};

}  // namespace pgsim::pc

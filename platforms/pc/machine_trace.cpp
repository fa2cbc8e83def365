#include "platforms/pc/machine_trace.h"

#include <chrono>
#include <cmath>
#include <ctime>

namespace pgsim::pc {

namespace {

std::string date_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char text[64];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  return text;
}

}  // namespace

MachineTrace::MachineTrace(const std::filesystem::path& path, models::Cpu& cpu, vmm::TrapRouter& router)
    : cpu_(cpu), router_(router), vcd_(path) {
  const std::string c = "pc.cpu", v = "pc.vmm";
  mode_ = vcd_.wire(c, "mode", 3);
  cpl_ = vcd_.wire(c, "cpl", 2);
  interrupts_ = vcd_.wire(c, "interrupts", 64);
  events_ = vcd_.wire(c, "exceptions_and_interrupts", 64);
  walks_ = vcd_.wire(c, "tlb_miss_walks", 64);
  walk_refs_ = vcd_.wire(c, "walk_refs", 64);
  walks_per_quantum_ = vcd_.wire(c, "walks_per_quantum", 64);
  state_ = vcd_.wire(v, "state", 3);
  state_name_ = vcd_.text(v, "state_name");
  virtual_cpl_ = vcd_.wire(v, "virtual_cpl", 2);
  traps_ = {vcd_.wire(v, "traps", 64), vcd_.text(v, "trap_cause")};
  exits_ = {vcd_.wire(v, "vm_exits", 64), vcd_.text(v, "exit_reason")};
  callouts_ = {vcd_.wire(v, "callouts", 64), vcd_.text(v, "callout")};
  hypercalls_ = {vcd_.wire(v, "hypercalls", 64), vcd_.text(v, "hypercall")};
  vm_entries_ = vcd_.wire(v, "vm_entries", 64);

  vcd_.comment(std::string("pgsim run of vmm.strategy ") + router.vmm().strategy() + "; times in ps (cycles at " +
               std::to_string(static_cast<uint64_t>(cpu.cycles().params().clock_hz)) + " Hz)");
  std::string states = "pc.vmm.state:";
  for (unsigned s = 0; s < vmm::kNumGuestStates; ++s)
    states += " " + std::to_string(s) + "=" + vmm::guest_state_name(static_cast<vmm::GuestState>(s));
  vcd_.comment(states);
  vcd_.comment("pc.cpu.mode: 0=real 1=virtual8086 2=protected16 3=protected32 4=compat16 5=compat32 6=long64");
  vcd_.comment("pc.vmm.traps, vm_exits, callouts, hypercalls count the entries into the VMM at their cycle; "
               "trap_cause, exit_reason, callout, hypercall name each one as the statistics do "
               "(vmm.traps.<cause>, vmm.exits.<reason>, ...)");
  vcd_.comment("sampled at each chunk the CPU runs and around each entry: cpl, virtual_cpl, mode, the counts "
               "of interrupts, exceptions_and_interrupts, tlb_miss_walks, walk_refs, walks_per_quantum, "
               "vm_entries");
  vcd_.begin(date_now());

  router_.set_trace(this);
  cpu_.set_chunk_observer([this] {
    const uint64_t ps = picoseconds(now());
    sample(ps);
    // Every non-zero count is written, so that the values written add up to the walks.
    const uint64_t walks = cpu_.mmu().counters().walks - walks_at_sample_;
    if (walks != 0 || walks_in_last_sample_ != 0) vcd_.change(walks_per_quantum_, ps, walks);
    walks_at_sample_ += walks;
    walks_in_last_sample_ = walks;
  });
}

MachineTrace::~MachineTrace() {
  router_.set_trace(nullptr);
  cpu_.set_chunk_observer(nullptr);
}

uint64_t MachineTrace::picoseconds(uint64_t cycles) const {
  const double hz = cpu_.cycles().params().clock_hz;
  return static_cast<uint64_t>(std::llround(static_cast<long double>(cycles) * 1e12L / hz));
}

void MachineTrace::sample(uint64_t ps) {
  const isa::Core& core = cpu_.core();
  const vmm::Vmm& vmm = router_.vmm();
  vcd_.sample(mode_, ps, static_cast<uint64_t>(core.mode()));
  vcd_.sample(cpl_, ps, core.state().cpl());
  vcd_.sample(virtual_cpl_, ps, vmm.virtual_cpl(core));
  vcd_.sample(interrupts_, ps, core.counters().interrupts);
  vcd_.sample(events_, ps, core.counters().events);
  vcd_.sample(walks_, ps, cpu_.mmu().counters().walks);
  vcd_.sample(walk_refs_, ps, cpu_.mmu().counters().walk_refs);
  vcd_.sample(vm_entries_, ps, vmm.vm_entries());
  set_state(ps, vmm.guest_state(core));
}

void MachineTrace::set_state(uint64_t ps, vmm::GuestState state) {
  if (state == state_now_) return;
  state_now_ = state;
  vcd_.change(state_, ps, static_cast<uint64_t>(state));
  vcd_.change(state_name_, ps, vmm::guest_state_name(state));
}

void MachineTrace::entered(uint64_t at, vmm::VmmEntry how, const std::string& reason) {
  const uint64_t ps = picoseconds(at);
  EventSignals& signals = how == vmm::VmmEntry::Trap      ? traps_
                          : how == vmm::VmmEntry::Exit    ? exits_
                          : how == vmm::VmmEntry::Callout ? callouts_
                                                          : hypercalls_;
  set_state(ps, how == vmm::VmmEntry::Hypercall ? vmm::GuestState::Hypercall : vmm::GuestState::InVmm);
  vcd_.change(signals.count, ps, ++signals.n);
  vcd_.change(signals.reason, ps, reason);
}

void MachineTrace::left() { sample(picoseconds(now())); }

void MachineTrace::close() {
  if (closed_) return;
  closed_ = true;
  sample(picoseconds(now()));
  router_.set_trace(nullptr);
  cpu_.set_chunk_observer(nullptr);
  vcd_.close();
}

}  // namespace pgsim::pc

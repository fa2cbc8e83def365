// Architectural performance monitoring version 2 (isa/system/pmu.h).
#include "isa/system/pmu.h"

#include <cstdio>
#include <string>

#include "isa/core.h"
#include "isa/insn.h"

namespace pgsim::isa {
namespace {

constexpr uint64_t mask(unsigned width) { return (1ull << width) - 1; }
constexpr uint64_t kGeneralBits = (1u << Pmu::kGeneralCounters) - 1;
constexpr uint64_t kFixedBits = ((1ull << Pmu::kFixedCounters) - 1) << 32;
constexpr uint64_t kGlobalCtrlValid = kGeneralBits | kFixedBits;
constexpr uint64_t kOvfBuffer = 1ull << 62, kCondChanged = 1ull << 63;
constexpr uint64_t kOvfCtrlValid = kGlobalCtrlValid | kOvfBuffer | kCondChanged;
// IA32_FIXED_CTR_CTRL: per counter, bit 0 OS, bit 1 USR, bit 3 PMI (bit 2, AnyThread, is version 3).
constexpr unsigned kFixedOs = 1, kFixedUsr = 2, kFixedPmi = 8;
constexpr uint64_t kFixedCtrlValid = 0xBBB;
// IA32_PERFEVTSELx: bits 31:0 except AnyThread (version 3).
constexpr uint64_t kEvtSelValid = 0xFFFFFFFFull & ~uint64_t{EVTSEL_ANY};

// Event select and unit mask of each architectural event (SDM vol. 3, table 20-1).
struct EventCode {
  uint8_t event, umask;
};
constexpr EventCode kArchEvents[kNumArchEvents] = {
    {0x3C, 0x00}, {0xC0, 0x00}, {0x3C, 0x01}, {0x2E, 0x4F}, {0x2E, 0x41}, {0xC4, 0x00}, {0xC5, 0x00},
};

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

bool Pmu::counts(ArchEvent event) {
  // Cycles and instructions come from the core and its timing model; the core models no last-level
  // cache (the platform's cache hierarchy is outside it) and no branch predictor, and its branch
  // class leaves out far transfers: those events are reported unavailable.
  return event == ArchEvent::CoreCycles || event == ArchEvent::InstructionsRetired ||
         event == ArchEvent::ReferenceCycles;
}

Pmu::Pmu(Core& core) : core_(core) {
  if (core.privilege_observer()) throw std::logic_error("pgsim: the core already has a privilege observer");
  core.set_privilege_observer(this);
  ring_ = core.state().cpl() == 0 ? 0 : 1;
  for (unsigned s = 0; s < kNumSources; ++s) ring_start_[s] = raw(static_cast<Source>(s));
  reprogram();
}

Pmu::~Pmu() { core_.set_privilege_observer(nullptr); }

CpuidLeaf Pmu::cpuid_leaf() const {
  CpuidLeaf r;
  r.eax = kVersion | (kGeneralCounters << 8) | (kGeneralWidth << 16) | (kNumArchEvents << 24);
  for (unsigned e = 0; e < kNumArchEvents; ++e)
    if (!counts(static_cast<ArchEvent>(e))) r.ebx |= 1u << e;
  r.edx = kFixedCounters | (kFixedWidth << 5);
  return r;
}

// The raw count of a source: the core's retired instructions, or the timing model's cycles less
// the halted ones (without a time source, as in unit tests of the bare core, no cycles pass).
uint64_t Pmu::raw(Source s) const {
  if (s == kInstructions) return core_.counters().retired;
  if (TimeSource* t = core_.time_source()) return t->current_cycle() - t->halted_cycles();
  return 0;
}

// The ledger holds what each ring counted up to the last CPL change; the current ring adds what
// happened since.
uint64_t Pmu::source_now(Source s, unsigned ring) const {
  return ledger_[s][ring] + (ring == ring_ ? raw(s) - ring_start_[s] : 0);
}

// While no counter runs, nothing reads the split by ring, and a counter that starts later only
// ever uses differences of source_now from its start on: the ring is all there is to follow, and
// the sources (the timing model's cycle total among them) are not read at every SYSCALL and SYSRET.
void Pmu::on_cpl_sync(unsigned cpl) {
  const unsigned ring = cpl == 0 ? 0 : 1;
  if (ring == ring_) return;
  for (unsigned s = 0; s < kNumSources && any_running_; ++s) {
    const auto src = static_cast<Source>(s);
    ledger_[s][ring_] = source_now(src, ring_);
    ring_start_[s] = raw(src);
  }
  ring_ = ring;
}

uint64_t Pmu::selected_now(const Counter& c) const {
  return (c.os ? source_now(c.source, 0) : 0) + (c.usr ? source_now(c.source, 1) : 0);
}

uint64_t Pmu::current(unsigned index) const {
  const Counter& c = counter(index);
  const uint64_t width = index < 32 ? kGeneralWidth : kFixedWidth;
  return (c.running ? c.value + (selected_now(c) - c.since) : c.value) & mask(width);
}

void Pmu::freeze() {
  auto bring = [&](Counter& c, unsigned width, uint64_t status_bit) {
    if (!c.running) return;
    const uint64_t raw = c.value + (selected_now(c) - c.since);
    if (raw >> width) global_status_ |= status_bit;  // wrapped since it was last frozen
    c.value = raw & mask(width);
  };
  for (unsigned i = 0; i < kGeneralCounters; ++i) bring(general_[i], kGeneralWidth, 1ull << i);
  for (unsigned i = 0; i < kFixedCounters; ++i) bring(fixed_[i], kFixedWidth, 1ull << (32 + i));
}

void Pmu::reprogram() {
  for (unsigned i = 0; i < kGeneralCounters; ++i) {
    Counter& c = general_[i];
    const uint64_t sel = evtsel_[i];
    const EventCode code{static_cast<uint8_t>(sel), static_cast<uint8_t>(sel >> 8)};
    c.source = code.event == kArchEvents[1].event ? kInstructions : kCycles;
    c.os = sel & EVTSEL_OS;
    c.usr = sel & EVTSEL_USR;
    c.running = (sel & EVTSEL_EN) && (global_ctrl_ & (1ull << i)) && (c.os || c.usr);
    c.since = selected_now(c);
  }
  for (unsigned i = 0; i < kFixedCounters; ++i) {
    Counter& c = fixed_[i];
    const unsigned ctl = (fixed_ctrl_ >> (4 * i)) & 0xF;
    c.source = i == 0 ? kInstructions : kCycles;  // CTR0 instructions, CTR1 core cycles, CTR2 reference cycles
    c.os = ctl & kFixedOs;
    c.usr = ctl & kFixedUsr;
    c.running = (global_ctrl_ & (1ull << (32 + i))) && (c.os || c.usr);
    c.since = selected_now(c);
  }
  any_running_ = false;
  for (const Counter& c : general_) any_running_ |= c.running;
  for (const Counter& c : fixed_) any_running_ |= c.running;
}

void Pmu::refuse(uint32_t msr, uint64_t value, const char* what) {
  core_.shutdown("WRMSR " + hex(msr) + " <- " + hex(value) + ": " + what +
                 " (the performance-monitoring unit is not modeled that far)");
}

bool Pmu::read_msr(uint32_t msr, uint64_t& value) {
  if (msr >= MSR_PMC0 && msr < MSR_PMC0 + kGeneralCounters) {
    value = current(msr - MSR_PMC0);
  } else if (msr >= MSR_PERFEVTSEL0 && msr < MSR_PERFEVTSEL0 + kGeneralCounters) {
    value = evtsel_[msr - MSR_PERFEVTSEL0];
  } else if (msr >= MSR_FIXED_CTR0 && msr < MSR_FIXED_CTR0 + kFixedCounters) {
    value = current(32 + msr - MSR_FIXED_CTR0);
  } else if (msr == MSR_FIXED_CTR_CTRL) {
    value = fixed_ctrl_;
  } else if (msr == MSR_PERF_GLOBAL_CTRL) {
    value = global_ctrl_;
  } else if (msr == MSR_PERF_GLOBAL_STATUS) {
    freeze();  // records the overflows up to now; the counters go on from their frozen values
    reprogram();
    value = global_status_;
  } else if (msr == MSR_PERF_GLOBAL_OVF_CTRL) {
    value = 0;
  } else {
    return false;
  }
  return true;
}

bool Pmu::write_msr(uint32_t msr, uint64_t value) {
  if (msr >= MSR_PMC0 && msr < MSR_PMC0 + kGeneralCounters) {
    // Without full-width writes (IA32_PERF_CAPABILITIES.FW_WRITE), bits 31:0 are written and
    // sign-extended to the counter's width (SDM vol. 3, 20.2.2).
    freeze();
    general_[msr - MSR_PMC0].value =
        static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(value))) & mask(kGeneralWidth);
  } else if (msr >= MSR_PERFEVTSEL0 && msr < MSR_PERFEVTSEL0 + kGeneralCounters) {
    if (value & ~kEvtSelValid) throw Fault::gp(0);
    if (value & EVTSEL_EN) {
      const EventCode code{static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8)};
      bool known = false;
      for (unsigned e = 0; e < kNumArchEvents; ++e)
        known |= counts(static_cast<ArchEvent>(e)) && code.event == kArchEvents[e].event &&
                 code.umask == kArchEvents[e].umask;
      if (!known) refuse(msr, value, "only the architectural events CPUID.0AH:EBX lists as available are counted");
      if (value & EVTSEL_INT) refuse(msr, value, "overflow interrupts (INT) are not implemented");
      if (value & (EVTSEL_EDGE | EVTSEL_INV | EVTSEL_CMASK)) refuse(msr, value, "edge, invert and counter-mask qualifiers are not implemented");
      if (core_.is_shutdown()) return true;
    }
    freeze();
    evtsel_[msr - MSR_PERFEVTSEL0] = value;
  } else if (msr >= MSR_FIXED_CTR0 && msr < MSR_FIXED_CTR0 + kFixedCounters) {
    if (value & ~mask(kFixedWidth)) throw Fault::gp(0);
    freeze();
    fixed_[msr - MSR_FIXED_CTR0].value = value;
  } else if (msr == MSR_FIXED_CTR_CTRL) {
    if (value & ~kFixedCtrlValid) throw Fault::gp(0);
    if (value & (kFixedPmi * 0x111)) {
      refuse(msr, value, "overflow interrupts (PMI) are not implemented");
      return true;
    }
    freeze();
    fixed_ctrl_ = value;
  } else if (msr == MSR_PERF_GLOBAL_CTRL) {
    if (value & ~kGlobalCtrlValid) throw Fault::gp(0);
    freeze();
    global_ctrl_ = value;
  } else if (msr == MSR_PERF_GLOBAL_OVF_CTRL) {
    if (value & ~kOvfCtrlValid) throw Fault::gp(0);
    freeze();
    global_status_ &= ~value;
  } else if (msr == MSR_PERF_GLOBAL_STATUS) {
    throw Fault::gp(0);  // read-only
  } else {
    return false;
  }
  reprogram();
  return true;
}

uint64_t Pmu::rdpmc(uint32_t ecx) {
  const uint32_t index = ecx & 0x3FFFFFFF;
  if (ecx & (1u << 31)) throw Fault::gp(0);
  if (ecx & (1u << 30)) {
    if (index >= kFixedCounters) throw Fault::gp(0);
    return current(32 + index);
  }
  if (index >= kGeneralCounters) throw Fault::gp(0);
  return current(index);
}

}  // namespace pgsim::isa

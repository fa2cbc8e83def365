// Architectural performance monitoring, version 2 (Intel SDM vol. 3, 20.2.1-20.2.2; CPUID leaf
// 0AH): four general-purpose counters IA32_PMC0-3 programmed by IA32_PERFEVTSEL0-3, the fixed
// counters IA32_FIXED_CTR0-2 (instructions retired, unhalted core cycles, unhalted reference
// cycles) under IA32_FIXED_CTR_CTRL, and IA32_PERF_GLOBAL_CTRL/STATUS/OVF_CTRL; RDPMC reads them.
//
// Counts are the core's own: instructions retired from CoreCounters, cycles
// from the TimeSource the core's RDTSC reads, less the cycles spent halted. The TSC counts the core
// clock, so reference cycles equal core cycles. Counting by privilege (USR: CPL > 0, OS: CPL 0) is
// exact: the core reports every change of CPL (Core::sync_mode) and the counts are split there.
// Counters are computed when read, never stepped, so the PMU costs the core's hot loop nothing.
//
// Not modeled, and refused loudly (the run stops with a message naming the MSR and value): events
// other than the architectural ones listed in CPUID.0AH:EBX as available, the edge, invert and
// counter-mask qualifiers, and overflow interrupts (PERFEVTSEL.INT, FIXED_CTR_CTRL.PMI: the local
// APIC's LVT performance-counter entry is never signalled). Overflows set GLOBAL_STATUS.
#pragma once
#include <array>
#include <cstdint>

#include "isa/core_if.h"
#include "isa/system/system_config.h"

namespace pgsim::isa {

class Core;

// The PMU's MSRs (SDM vol. 4, table 2-2).
enum PmuMsr : uint32_t {
  MSR_PMC0 = 0xC1,
  MSR_PERFEVTSEL0 = 0x186,
  MSR_FIXED_CTR0 = 0x309,
  MSR_FIXED_CTR_CTRL = 0x38D,
  MSR_PERF_GLOBAL_STATUS = 0x38E,
  MSR_PERF_GLOBAL_CTRL = 0x38F,
  MSR_PERF_GLOBAL_OVF_CTRL = 0x390,
};

// IA32_PERFEVTSELx fields.
enum PerfEvtSel : uint64_t {
  EVTSEL_USR = 1u << 16, EVTSEL_OS = 1u << 17, EVTSEL_EDGE = 1u << 18, EVTSEL_PC = 1u << 19,
  EVTSEL_INT = 1u << 20, EVTSEL_ANY = 1u << 21, EVTSEL_EN = 1u << 22, EVTSEL_INV = 1u << 23,
  EVTSEL_CMASK = 0xFFull << 24,
};

// The architectural events (SDM vol. 3, table 20-1), in CPUID.0AH:EBX bit order.
enum class ArchEvent : uint8_t {
  CoreCycles, InstructionsRetired, ReferenceCycles, LlcReferences, LlcMisses, BranchesRetired, BranchMisses,
  kCount,
};
constexpr unsigned kNumArchEvents = static_cast<unsigned>(ArchEvent::kCount);

class Pmu : public PrivilegeObserver {
 public:
  static constexpr unsigned kVersion = 2;
  static constexpr unsigned kGeneralCounters = 4, kFixedCounters = 3;
  static constexpr unsigned kGeneralWidth = 48, kFixedWidth = 48;

  // Attaches to `core` (its counters, time source and CPL changes) until destroyed.
  explicit Pmu(Core& core);
  ~Pmu() override;
  Pmu(const Pmu&) = delete;
  Pmu& operator=(const Pmu&) = delete;

  // RDMSR/WRMSR of a PMU MSR: false when `msr` is not one; a reserved value throws Fault::gp.
  bool read_msr(uint32_t msr, uint64_t& value);
  bool write_msr(uint32_t msr, uint64_t value);
  // RDPMC's counter selected by ECX (bit 30: fixed counters); #GP(0) for an invalid selector.
  uint64_t rdpmc(uint32_t ecx);
  // CPUID leaf 0AH.
  CpuidLeaf cpuid_leaf() const;

  // The events counted: true when the PMU counts `event` (CPUID.0AH:EBX bit clear).
  static bool counts(ArchEvent event);

  void on_cpl_sync(unsigned cpl) override;

 private:
  // What a counter counts, from the core: one of the sources below, split by ring (0: CPL 0,
  // 1: CPL > 0), up to the current instant.
  enum Source : uint8_t { kCycles, kInstructions, kNumSources };
  struct Counter {
    uint64_t value = 0;         // the value when it was last frozen
    uint64_t since = 0;         // the selected source total when it was last frozen
    bool running = false;
    Source source = kInstructions;
    bool os = false, usr = false;
  };

  uint64_t raw(Source s) const;
  uint64_t source_now(Source s, unsigned ring) const;  // the total counted in `ring` up to now
  uint64_t selected_now(const Counter& c) const;
  uint64_t current(unsigned index) const;  // index: 0-3 general, 32-34 fixed (GLOBAL_CTRL bit)
  Counter& counter(unsigned index) { return index < 32 ? general_[index] : fixed_[index - 32]; }
  const Counter& counter(unsigned index) const { return index < 32 ? general_[index] : fixed_[index - 32]; }
  // Brings every counter's value up to now (recording overflows), then re-derives from the
  // control MSRs what each one counts and whether it runs.
  void freeze();
  void reprogram();
  // Stops the run (Core::shutdown) with what is not modeled; the WRMSR then changes nothing.
  void refuse(uint32_t msr, uint64_t value, const char* what);

  Core& core_;
  std::array<uint64_t, kGeneralCounters> evtsel_{};
  uint64_t fixed_ctrl_ = 0;
  uint64_t global_ctrl_ = (1u << kGeneralCounters) - 1;  // bits n-1:0 set at reset (SDM 20.2.2)
  uint64_t global_status_ = 0;
  std::array<Counter, kGeneralCounters> general_{};
  std::array<Counter, kFixedCounters> fixed_{};
  // Totals of each source counted in each ring before the current CPL took over, and the
  // source's raw value when it did.
  std::array<std::array<uint64_t, 2>, kNumSources> ledger_{};
  std::array<uint64_t, kNumSources> ring_start_{};
  unsigned ring_ = 0;  // 0: CPL 0, 1: CPL > 0
  bool any_running_ = false;  // whether the ledger must follow CPL changes
};

}  // namespace pgsim::isa

// The cycle-approximate timing model: a clock frequency, a cost per instruction class, per string
// iteration, per exception and per interrupt, plus what the MMU and the devices charge. Every
// cycle belongs to one named bucket and the total is their sum. The cycle count is a function of
// live counters (the core's and the MMU's), so RDTSC reads it exactly in the middle of a quantum.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "isa/core.h"
#include "isa/insn.h"
#include "models/mmu/mmu.h"

namespace pgsim::models {

enum class Bucket : unsigned {
  Execute,    // retiring instructions at the cost of their class
  Tlb,        // L1 TLB misses that hit the L2 TLB
  PageWalk,   // page-walk references
  Memory,     // data accesses beyond the L1 hit (with the cache hierarchy enabled)
  Exception,  // delivering exceptions and software interrupts
  Interrupt,  // delivering external interrupts
  Io,         // device accesses (port I/O and MMIO)
  Halt,       // waiting in HLT for an interrupt
  kCount,
};
constexpr unsigned kNumBuckets = static_cast<unsigned>(Bucket::kCount);

inline const char* bucket_name(Bucket b) {
  static constexpr const char* names[] = {"execute",   "tlb",       "page_walk", "memory",
                                          "exception", "interrupt", "io",        "halt"};
  return names[static_cast<unsigned>(b)];
}
inline const char* bucket_description(Bucket b) {
  static constexpr const char* descriptions[] = {
      "cycles retiring instructions at the cost of their class",
      "cycles of L1 TLB misses served by the L2 TLB",
      "cycles of page-walk memory references",
      "cycles of data accesses beyond the L1 hit",
      "cycles delivering exceptions and software interrupts",
      "cycles delivering external interrupts",
      "cycles of device accesses (port I/O and MMIO)",
      "cycles halted, waiting for an interrupt",
  };
  return descriptions[static_cast<unsigned>(b)];
}

// Costs are kept in thousandths of a cycle so that fractional CPIs (0.5 for a dual-issued ALU
// instruction) add up exactly; the buckets report whole cycles.
struct TimingParams {
  static constexpr uint64_t kMilli = 1000;
  double clock_hz = 3e9;
  std::array<uint64_t, isa::kNumInsnClasses> class_millicycles{};  // by isa::InsnClass
  uint64_t string_iteration_millicycles = 1000;  // each iteration of a string instruction after the first
  uint64_t exception_cycles = 150;  // delivering one exception or software interrupt
  uint64_t interrupt_cycles = 150;  // delivering one external interrupt
  uint64_t io_cycles = 1000;        // one port I/O or MMIO device access

  void set_cpi(isa::InsnClass c, double cycles) {
    class_millicycles[static_cast<unsigned>(c)] = static_cast<uint64_t>(cycles * kMilli + 0.5);
  }
  // A SYSCALL (or SYSENTER) and its SYSRET (or SYSEXIT) cost `cycles` together: half each.
  void set_syscall_round_trip(double cycles) { set_cpi(isa::InsnClass::Syscall, cycles / 2); }
  TimingParams() {
    using C = isa::InsnClass;
    for (C c : {C::Alu, C::Branch, C::Load, C::Store, C::Nop, C::Fence, C::Unimplemented}) set_cpi(c, 1);
    set_cpi(C::Mul, 3); set_cpi(C::Div, 26); set_cpi(C::Rmw, 2); set_cpi(C::String, 1); set_cpi(C::System, 30);
    set_cpi(C::Iret, 60);
    set_syscall_round_trip(70);
  }
};

class CycleAccount {
 public:
  CycleAccount(const TimingParams& params, const isa::CoreCounters& core, const MmuCounters& mmu)
      : params_(params), core_(core), mmu_(mmu) {}

  // Counted by the platform as they happen.
  uint64_t io_accesses = 0;
  uint64_t halt_cycles = 0;
  uint64_t data_access_cycles = 0;  // data accesses beyond the L1 hit (models/memory/cache_hierarchy.h)

  uint64_t bucket(Bucket b) const {
    switch (b) {
      case Bucket::Execute: {
        uint64_t milli = 0;
        for (unsigned c = 0; c < isa::kNumInsnClasses; ++c) milli += core_.by_class[c] * params_.class_millicycles[c];
        const uint64_t strings = core_.by_class[static_cast<unsigned>(isa::InsnClass::String)];
        if (core_.string_iterations > strings)
          milli += (core_.string_iterations - strings) * params_.string_iteration_millicycles;
        return milli / TimingParams::kMilli;
      }
      case Bucket::Tlb: return mmu_.l2_hit_cycles;
      case Bucket::PageWalk: return mmu_.walk_cycles;
      case Bucket::Memory: return data_access_cycles;
      case Bucket::Exception:
        return (core_.events - core_.interrupts - external_.exceptions_taken()) * params_.exception_cycles;
      case Bucket::Interrupt: return (core_.interrupts - external_.interrupts_taken()) * params_.interrupt_cycles;
      case Bucket::Io: return (io_accesses - external_.device_accesses_modelled()) * params_.io_cycles;
      case Bucket::Halt: return halt_cycles;
      default: return 0;
    }
  }
  // A bucket kept by another model (a VMM's emulation, world switches, translation): its cycles
  // count in the total, and so in simulated time and RDTSC, from the moment it is added.
  struct ExtraBucket {
    std::string name, description;
    const uint64_t* cycles;
  };
  void add_bucket(std::string name, std::string description, const uint64_t* cycles) {
    extra_.push_back({std::move(name), std::move(description), cycles});
  }
  const std::vector<ExtraBucket>& extra_buckets() const { return extra_; }

  // A model between the core and the guest (the VMM of models/vmm) that publishes cycle buckets
  // of its own and takes some events before the CPU would deliver them through the IDT: its
  // cycles count in the total (simulated time, RDTSC, timers), and the events it took are charged
  // by it, not as CPU delivery.
  struct ExternalCharges {
    std::function<uint64_t()> cycles = [] { return uint64_t(0); };
    std::function<uint64_t()> exceptions_taken = [] { return uint64_t(0); };  // and software interrupts
    std::function<uint64_t()> interrupts_taken = [] { return uint64_t(0); };  // external interrupts
    // Device accesses it made on the guest's behalf to devices it models in software (counted in
    // io_accesses): charged by it, not at the physical device's latency.
    std::function<uint64_t()> device_accesses_modelled = [] { return uint64_t(0); };
  };
  void set_external_charges(ExternalCharges charges) { external_ = std::move(charges); }

  uint64_t total() const {
    uint64_t sum = 0;
    for (unsigned b = 0; b < kNumBuckets; ++b) sum += bucket(static_cast<Bucket>(b));
    for (const ExtraBucket& e : extra_) sum += *e.cycles;
    return sum + external_.cycles();
  }
  // Copies the buckets into `snapshot`, whose addresses the statistics registry reads.
  void update_snapshot() {
    for (unsigned b = 0; b < kNumBuckets; ++b) snapshot[b] = bucket(static_cast<Bucket>(b));
  }
  std::array<uint64_t, kNumBuckets> snapshot{};

  const TimingParams& params() const { return params_; }
  double seconds(uint64_t cycles) const { return static_cast<double>(cycles) / params_.clock_hz; }

 private:
  TimingParams params_;
  std::vector<ExtraBucket> extra_;
  ExternalCharges external_;
  const isa::CoreCounters& core_;
  const MmuCounters& mmu_;
};

}  // namespace pgsim::models

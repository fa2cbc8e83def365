// The performance-monitoring unit (isa/system/pmu.h) against the Intel SDM vol. 3, 20.2 and vol. 4,
// table 2-2: CPUID leaf 0AH, the counters' exact counts of the core's instructions and cycles, USR/OS
// filtering, RDPMC and CR4.PCE, reserved bits, overflow status, and what is refused.
#include <gtest/gtest.h>

#include <memory>

#include "isa/system/cpuid.h"
#include "isa/system/pmu.h"
#include "isa/system/system_config.h"
#include "system_harness.h"

using namespace pgsim::isa;
using namespace pgsim::test;

namespace {

const std::vector<uint8_t> kSpin = {0xEB, 0xFE};

struct Clock : TimeSource {
  uint64_t now = 0, halted = 0;
  uint64_t current_cycle() override { return now; }
  uint64_t halted_cycles() override { return halted; }
};

struct PmuMachine : SystemMachine {
  Clock clock;
  SystemConfig config;
  std::unique_ptr<Pmu> pmu;
  std::unique_ptr<SystemConfigBinding> binding;

  explicit PmuMachine(bool ia32e = true) : SystemMachine(ia32e) {
    for (unsigned v = 0; v < 32; ++v) {
      handler(static_cast<uint8_t>(v));
      ram.load(kHandler + v * 16, kSpin);
    }
    core.set_time_source(&clock);
    pmu = std::make_unique<Pmu>(core);
    config.pmu = pmu.get();
    binding = std::make_unique<SystemConfigBinding>(core, config);
  }
  uint64_t msr(uint32_t m) {
    uint64_t v = 0;
    EXPECT_TRUE(pmu->read_msr(m, v));
    return v;
  }
  void set(uint32_t m, uint64_t v) { ASSERT_TRUE(pmu->write_msr(m, v)); }
  bool faulted(uint8_t vector) { return state().rip == kHandler + vector * 16u; }
};

// MOV ECX, 0x38F; XOR EAX, EAX; MOV EDX, 1; WRMSR (GLOBAL_CTRL: fixed counter 0 only);
// MOV ECX, n; 1: DEC ECX; JNZ 1b; MOV ECX, 0x40000000; RDPMC; JMP $.
std::vector<uint8_t> counted_loop(uint32_t n) {
  return {0xB9, 0x8F, 0x03, 0x00, 0x00, 0x31, 0xC0, 0xBA, 0x01, 0x00, 0x00, 0x00, 0x0F, 0x30,
          0xB9, uint8_t(n), uint8_t(n >> 8), uint8_t(n >> 16), uint8_t(n >> 24),
          0xFF, 0xC9, 0x75, 0xFC,
          0xB9, 0x00, 0x00, 0x00, 0x40, 0x0F, 0x33, 0xEB, 0xFE};
}

uint64_t fixed0_after_loop(uint32_t n) {
  PmuMachine m;
  m.set(MSR_FIXED_CTR_CTRL, 0x1);  // counter 0 at CPL 0
  m.load_code(kCode, counted_loop(n));
  m.core.run(4 + 1 + 2 * n + 2);
  EXPECT_FALSE(m.state().rip >= kHandler && m.state().rip < kHandler + 32 * 16) << "faulted";
  return (m.reg(RDX) << 32) | static_cast<uint32_t>(m.reg(RAX));
}

}  // namespace

TEST(Pmu, CpuidLeaf0AIsVersion2WithFourGeneralAndThreeFixedCounters) {
  PmuMachine m;
  const CpuidLeaf r = cpuid_leaf(m.core, 0xA, 0);
  EXPECT_EQ(r.eax, 2u | (4u << 8) | (48u << 16) | (7u << 24));
  EXPECT_EQ(r.ebx, 0x78u) << "cycles, instructions and reference cycles available; LLC and branch events not";
  EXPECT_EQ(r.ecx, 0u);
  EXPECT_EQ(r.edx, 3u | (48u << 5));
  EXPECT_GE(cpuid_leaf(m.core, 0, 0).eax, 0xAu);
  EXPECT_EQ(m.msr(MSR_PERF_GLOBAL_CTRL), 0xFu) << "reset value: the general counters' enable bits (SDM 20.2.2)";
}

TEST(Pmu, FixedCounter0CountsExactlyTheInstructionsOfALoop) {
  // The WRMSR that enables counting counts (it retires with the counter enabled), RDPMC does not.
  EXPECT_EQ(fixed0_after_loop(10), 1u + 1 + 2 * 10 + 1);
  EXPECT_EQ(fixed0_after_loop(1000) - fixed0_after_loop(10), 2u * 990);
}

TEST(Pmu, UsrAndOsFilterByCpl) {
  for (uint64_t ctrl : {1u, 2u, 3u}) {  // OS, USR, both
    SCOPED_TRACE(ctrl);
    PmuMachine m;
    m.set(MSR_FIXED_CTR_CTRL, ctrl);
    m.set(MSR_PERF_GLOBAL_CTRL, 1ull << 32);
    m.load_code(0x401000, {0x90, 0x90, 0x90, 0x90, 0x90, 0xEB, 0xFE});  // five NOPs, JMP $
    m.enter_user(0x401000, 0x7000);
    m.core.run(5);
    EXPECT_EQ(m.msr(MSR_FIXED_CTR0), ctrl == 1 ? 0u : 5u);
    m.load_code(kCode, {0x90, 0x90, 0x90});  // back at CPL 0 (the loader's sync reports it)
    set_flat_segments(m.state(), 0, true);
    m.core.sync_mode();
    m.core.run(3);
    EXPECT_EQ(m.msr(MSR_FIXED_CTR0), (ctrl & 2 ? 5u : 0u) + (ctrl & 1 ? 3u : 0u));
  }
}

// While no counter runs the PMU does not follow the split by ring: a counter started later counts
// exactly what its rings do from its start.
TEST(Pmu, ACounterStartedAfterIdleRingChangesCountsFromItsStart) {
  PmuMachine m;
  m.load_code(0x401000, {0x90, 0x90, 0x90, 0x90, 0x90, 0xEB, 0xFE});  // five NOPs, JMP $
  m.enter_user(0x401000, 0x7000);
  m.core.run(5);  // nothing counts
  m.load_code(kCode, {0x90, 0x90, 0x90});
  set_flat_segments(m.state(), 0, true);
  m.core.sync_mode();
  m.set(MSR_FIXED_CTR_CTRL, 2);  // USR
  m.set(MSR_PERF_GLOBAL_CTRL, 1ull << 32);
  m.core.run(3);  // at CPL 0: not counted
  EXPECT_EQ(m.msr(MSR_FIXED_CTR0), 0u);
  m.enter_user(0x401000, 0x7000);
  m.core.run(5);
  EXPECT_EQ(m.msr(MSR_FIXED_CTR0), 5u);
}

TEST(Pmu, CycleCountersCountUnhaltedCyclesOfTheTimeSource) {
  PmuMachine m;
  m.set(MSR_FIXED_CTR_CTRL, 0x330);  // counters 1 and 2, any CPL
  m.set(MSR_PERF_GLOBAL_CTRL, (6ull << 32) | 1);
  m.set(MSR_PERFEVTSEL0, EVTSEL_EN | EVTSEL_OS | EVTSEL_USR | 0x3C);  // unhalted core cycles
  m.clock.now += 1000;
  m.clock.halted += 300;
  EXPECT_EQ(m.msr(MSR_FIXED_CTR0 + 1), 700u);
  EXPECT_EQ(m.msr(MSR_FIXED_CTR0 + 2), 700u) << "the TSC counts the core clock: reference cycles are core cycles";
  EXPECT_EQ(m.msr(MSR_PMC0), 700u);
  m.set(MSR_PERF_GLOBAL_CTRL, 0);  // stops every counter
  m.clock.now += 50;
  EXPECT_EQ(m.msr(MSR_FIXED_CTR0 + 1), 700u);
}

TEST(Pmu, GeneralCounterCountsInstructionsRetired) {
  PmuMachine m;
  m.set(MSR_PERFEVTSEL0 + 2, EVTSEL_EN | EVTSEL_OS | 0xC0);
  m.load_code(kCode, {0x90, 0x90, 0x90, 0x90});
  m.core.run(4);
  EXPECT_EQ(m.msr(MSR_PMC0 + 2), 4u);
  EXPECT_EQ(m.msr(MSR_PMC0), 0u);
}

TEST(Pmu, RdpmcNeedsCr4PceAboveCpl0AndAValidCounter) {
  PmuMachine m;
  m.set(MSR_PMC0 + 1, 1234);
  m.reg(RCX) = 1;
  m.load_code(0x401000, {0x0F, 0x33, 0xEB, 0xFE});
  m.enter_user(0x401000, 0x7000);
  m.core.run(1);
  EXPECT_TRUE(m.faulted(GP)) << "RDPMC at CPL 3 without CR4.PCE";

  PmuMachine p;
  p.state().cr4 |= CR4_PCE;
  p.set(MSR_PMC0 + 1, 1234);
  p.reg(RCX) = 1;
  p.load_code(0x401000, {0x0F, 0x33, 0xEB, 0xFE});
  p.enter_user(0x401000, 0x7000);
  p.core.run(1);
  EXPECT_EQ(p.reg(RAX), 1234u);
  for (uint32_t bad : {4u, 0x40000003u, 0x80000000u}) {
    PmuMachine q;
    q.reg(RCX) = bad;
    q.load_code(kCode, {0x0F, 0x33});
    q.core.run(1);
    EXPECT_TRUE(q.faulted(GP)) << std::hex << bad;
  }
}

TEST(Pmu, WithoutAPmuRdpmcFaultsAndLeaf0AIsZero) {
  SystemMachine m(true);
  SystemConfig config;
  SystemConfigBinding binding(m.core, config);
  EXPECT_EQ(cpuid_leaf(m.core, 0xA, 0).eax, 0u);
  m.put_idt(GP, gate(kHandler, kKernelCode, kIntGate, 0));
  m.ram.load(kHandler, kSpin);
  m.reg(RCX) = 0;
  m.load_code(kCode, {0x0F, 0x33});
  m.core.run(1);
  EXPECT_EQ(m.state().rip, kHandler);
}

TEST(Pmu, ReservedBitsRaiseGp) {
  PmuMachine m;
  EXPECT_THROW(m.pmu->write_msr(MSR_PERF_GLOBAL_CTRL, 1ull << 4), Fault);
  EXPECT_THROW(m.pmu->write_msr(MSR_PERFEVTSEL0, EVTSEL_ANY), Fault) << "AnyThread is version 3";
  EXPECT_THROW(m.pmu->write_msr(MSR_PERFEVTSEL0, 1ull << 32), Fault);
  EXPECT_THROW(m.pmu->write_msr(MSR_FIXED_CTR_CTRL, 0x4), Fault) << "AnyThread is version 3";
  EXPECT_THROW(m.pmu->write_msr(MSR_FIXED_CTR0, 1ull << 48), Fault);
  EXPECT_THROW(m.pmu->write_msr(MSR_PERF_GLOBAL_STATUS, 0), Fault) << "read-only";
  EXPECT_THROW(m.pmu->write_msr(MSR_PERF_GLOBAL_OVF_CTRL, 1ull << 8), Fault);
  uint64_t v;
  EXPECT_FALSE(m.pmu->read_msr(MSR_PMC0 + 4, v)) << "only four counters";
}

TEST(Pmu, GeneralCounterWritesSignExtendBit31AndOverflowSetsStatus) {
  PmuMachine m;
  m.set(MSR_PMC0, 0x80000000u);
  EXPECT_EQ(m.msr(MSR_PMC0), 0xFFFF80000000ull);
  m.set(MSR_PMC0, static_cast<uint32_t>(-5));
  m.set(MSR_PERFEVTSEL0, EVTSEL_EN | EVTSEL_OS | 0xC0);
  m.load_code(kCode, std::vector<uint8_t>(10, 0x90));
  m.core.run(10);
  EXPECT_EQ(m.msr(MSR_PMC0), 5u);
  EXPECT_EQ(m.msr(MSR_PERF_GLOBAL_STATUS), 1u);
  m.set(MSR_PERF_GLOBAL_OVF_CTRL, 1);
  EXPECT_EQ(m.msr(MSR_PERF_GLOBAL_STATUS), 0u);
}

TEST(Pmu, WhatIsNotModeledStopsTheRunLoudly) {
  for (uint64_t sel : {uint64_t{EVTSEL_EN | EVTSEL_OS | 0x2E | (0x41 << 8)},  // LLC misses
                       uint64_t{EVTSEL_EN | EVTSEL_OS | EVTSEL_INT | 0xC0}, uint64_t{EVTSEL_EN | EVTSEL_OS | EVTSEL_INV | 0xC0}}) {
    PmuMachine m;
    m.set(MSR_PERFEVTSEL0, sel);
    EXPECT_TRUE(m.core.is_shutdown()) << std::hex << sel;
    EXPECT_NE(m.core.shutdown_reason().find("WRMSR 0x186"), std::string::npos) << m.core.shutdown_reason();
  }
  PmuMachine m;
  m.set(MSR_FIXED_CTR_CTRL, 0x9);  // PMI
  EXPECT_NE(m.core.shutdown_reason().find("PMI"), std::string::npos);
  PmuMachine ok;
  ok.set(MSR_PERFEVTSEL0, 0x2E | (0x41 << 8));  // not enabled: accepted, counts nothing
  EXPECT_FALSE(ok.core.is_shutdown());
}

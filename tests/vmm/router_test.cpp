// The trap router and the native and interpret strategies on a bare core: which events become
// traps into the VMM, how they are counted by cause, and what interpretation costs.
#include <gtest/gtest.h>

#include "models/stats/stats.h"
#include "models/vmm/interpret.h"
#include "models/vmm/native.h"
#include "models/vmm/trap_router.h"
#include "platforms/config/config.h"
#include "platforms/config/vmm_settings.h"
#include "tests/isa_system/system_harness.h"

namespace pgsim {
namespace {

using test::kCode;
using test::kHandler;

// INT3 `n` times in a loop, then spins on `jmp $`:
//   mov ecx, n ; L: int3 ; dec ecx ; jnz L ; L2: jmp L2
std::vector<uint8_t> int3_loop(uint32_t n) {
  return {0xB9, uint8_t(n), uint8_t(n >> 8), uint8_t(n >> 16), uint8_t(n >> 24),  // mov ecx, n
          0xCC,                                                                // int3
          0xFF, 0xC9,                                                          // dec ecx
          0x75, 0xFB,                                                          // jnz -5
          0xEB, 0xFE};                                                         // jmp $
}
constexpr unsigned kInt3LoopInsns = 1 + 3 + 3;  // the first 'mov', one iteration (int3, dec, jnz)

// A 64-bit #BP handler that returns without IRET: pop the return RIP, drop CS, RFLAGS, RSP and
// SS, jump back.  pop rax ; add rsp, 32 ; jmp rax
const std::vector<uint8_t> kReturnWithoutIret = {0x58, 0x48, 0x83, 0xC4, 0x20, 0xFF, 0xE0};
constexpr unsigned kHandlerInsns = 3;

struct LongModeMachine : test::SystemMachine {
  LongModeMachine() : SystemMachine(true) {
    handler(isa::BP, 3);
    ram.load(kHandler + isa::BP * 16u, kReturnWithoutIret);
  }
};

// A strategy that takes every event and lets the guest go on after it (as a VMM that emulated
// the instruction would): the router must count each by cause.
class TakeEverything final : public vmm::Vmm {
 public:
  const char* strategy() const override { return "take_everything"; }
  std::optional<vmm::TrapCause> take_event(isa::Core&, const isa::Event& e) override { return vmm::trap_cause(e); }
  double direct_fraction() const override { return 1.0; }
};

TEST(TrapRouter, NativeTakesNothingAndTheGuestsIdtDeliversEveryEvent) {
  LongModeMachine m;
  vmm::TrapRouter router(std::make_unique<vmm::NativeVmm>());
  router.attach(m.core);
  m.load_code(kCode, int3_loop(5));
  m.core.run(1 + 5 * (3 + kHandlerInsns) + 2);
  EXPECT_EQ(m.core.counters().events, 5u);  // five #BP, each delivered through the IDT
  EXPECT_EQ(m.reg(isa::RCX), 0u);
  EXPECT_EQ(router.total_traps(), 0u);
  EXPECT_EQ(router.traps(vmm::TrapCause::Breakpoint), 0u);
}

TEST(TrapRouter, CountsEveryEventTheStrategyTakesByCause) {
  LongModeMachine m;
  vmm::TrapRouter router(std::make_unique<TakeEverything>());
  router.attach(m.core);
  m.load_code(kCode, int3_loop(7));
  m.core.run(1 + 7 * 3 + 2);  // no handler runs: the VMM took each #BP
  EXPECT_EQ(m.reg(isa::RCX), 0u);
  EXPECT_EQ(router.total_traps(), 7u);
  EXPECT_EQ(router.traps(vmm::TrapCause::Breakpoint), 7u);
  EXPECT_EQ(router.traps(vmm::TrapCause::GeneralProtection), 0u);
}

TEST(TrapRouter, CausesOfEvents) {
  using isa::Event;
  using isa::EventKind;
  EXPECT_EQ(vmm::trap_cause(Event::from_fault(isa::Fault::gp(0))), vmm::TrapCause::GeneralProtection);
  EXPECT_EQ(vmm::trap_cause(Event::from_fault(isa::Fault::pf(0x1000, 2))), vmm::TrapCause::PageFault);
  EXPECT_EQ(vmm::trap_cause(Event{0x30, EventKind::External}), vmm::TrapCause::Interrupt);
  EXPECT_EQ(vmm::trap_cause(Event{0x80, EventKind::SoftwareInt}), vmm::TrapCause::SoftwareInt);
  EXPECT_EQ(vmm::trap_cause(Event{isa::BP, EventKind::SoftwareException}), vmm::TrapCause::Breakpoint);
  EXPECT_EQ(vmm::trap_cause(Event{2, EventKind::Nmi}), vmm::TrapCause::Nmi);
  EXPECT_EQ(vmm::trap_cause(Event{21, EventKind::Exception}), vmm::TrapCause::OtherException);
  EXPECT_STREQ(vmm::trap_cause_name(vmm::TrapCause::GeneralProtection), "gp");
}

// mov ecx, n ; L: mov rax, [rbx] ; dec ecx ; jnz L ; L2: jmp L2
std::vector<uint8_t> load_loop(uint32_t n) {
  return {0xB9, uint8_t(n), uint8_t(n >> 8), uint8_t(n >> 16), uint8_t(n >> 24),
          0x48, 0x8B, 0x03,  // mov rax, [rbx]
          0xFF, 0xC9,        // dec ecx
          0x75, 0xF9,        // jnz -7
          0xEB, 0xFE};       // jmp $
}

TEST(Interpret, ChargesDispatchPerInstructionAndSoftMmuPerDataAccess) {
  test::Machine m;
  m.state() = isa::CpuState{};
  test::make_long64(m.state(), 0);
  vmm::VmmCosts costs;
  costs.interpret = 37;
  costs.soft_mmu = 11;
  costs.device_model = 13;
  uint64_t device_accesses = 0;  // as the platform counts them (the interpreter's devices are software)
  vmm::TrapRouter router(std::make_unique<vmm::InterpretVmm>(vmm::Machine{m.core, nullptr, 0, 0, &device_accesses}, costs));
  router.attach(m.core);
  m.reg(isa::RBX) = 0x40000;
  m.load_code(kCode, load_loop(100));
  const uint64_t insns = 1 + 100 * 3 + 5;
  ASSERT_EQ(m.core.run(insns), insns);

  device_accesses = 5;

  const vmm::VmmCycles& cycles = router.vmm().cycles();
  ASSERT_EQ(cycles.buckets().size(), 3u);
  EXPECT_EQ(cycles.buckets()[0].name, "interpret_dispatch");
  EXPECT_EQ(cycles.buckets()[0].value(), insns * 37);
  EXPECT_EQ(cycles.buckets()[1].name, "interpret_soft_mmu");
  EXPECT_EQ(cycles.buckets()[1].value(), 100u * 11);  // one load per iteration, nothing else
  EXPECT_EQ(cycles.buckets()[2].name, "interpret_device");
  EXPECT_EQ(cycles.buckets()[2].value(), 5u * 13);
  EXPECT_EQ(router.vmm().device_accesses_modelled(), 5u);  // the platform leaves them out of sim.cycles.io
  EXPECT_EQ(cycles.total(), insns * 37 + 100 * 11 + 5 * 13);
  EXPECT_EQ(router.total_traps(), 0u);
  EXPECT_EQ(router.vmm().direct_fraction(), 0.0);
}

TEST(Interpret, TheGuestsOwnIdtDeliversItsExceptionsWithoutATrap) {
  LongModeMachine m;
  vmm::TrapRouter router(std::make_unique<vmm::InterpretVmm>(vmm::Machine{m.core}, vmm::VmmCosts{}));
  router.attach(m.core);
  m.load_code(kCode, int3_loop(4));
  m.core.run(1 + 4 * (3 + kHandlerInsns) + 2);
  EXPECT_EQ(m.core.counters().events, 4u);
  EXPECT_EQ(m.reg(isa::RCX), 0u);
  EXPECT_EQ(router.total_traps(), 0u);
}

config::Config config_with(const std::string& strategy, int64_t interpret_cycles = 30) {
  config::Config c;
  const config::Origin origin{config::Origin::Kind::Override, {}, 0, 0, ""};
  c.set("vmm.strategy", std::string(strategy), origin);
  c.set("vmm.cost.interpret_cycles", interpret_cycles, origin);
  return c;
}

TEST(AttachVmm, BuildsTheConfiguredStrategyWithItsCostsAndPublishesItsFigures) {
  test::Machine m;
  test::make_long64(m.state(), 0);
  auto router = config::attach_vmm(config_with("interpret", 12), vmm::Machine{m.core});
  EXPECT_STREQ(router->vmm().strategy(), "interpret");
  m.load_code(kCode, {0x90, 0x90, 0x90, 0xEB, 0xFE});  // nop ; nop ; nop ; jmp $
  m.core.run(10);
  EXPECT_EQ(router->vmm().cycles().total(), 10u * 12);

  stats::Registry r;
  router->bind_statistics(r);
  router->vmm().cycles().update_snapshot();
  for (const char* name : {"vmm.traps.total", "vmm.traps.gp", "vmm.traps.pf", "vmm.traps.interrupt",
                           "vmm.leaks.total", "vmm.leaks.popf", "vmm.leaks.sgdt",
                           "vmm.resource_control.violations", "vmm.efficiency.direct_fraction",
                           "sim.cycles.interpret_dispatch", "sim.cycles.interpret_soft_mmu"})
    EXPECT_TRUE(r.contains(name)) << name;
  EXPECT_EQ(r.total_cycles(), 120u);
}

// vmm.deprivileged_cpl_prot32 reaches trap_emulate: a guest in 32-bit protected mode (here at its
// first instruction, paging off) runs directly at that CPL, in compatibility mode.
TEST(AttachVmm, Prot32GuestKernelRunsAtTheConfiguredDeprivilegedCpl) {
  for (int64_t cpl : {1, 2, 3}) {
    test::Machine m;
    test::make_prot32(m.state(), 0);
    config::Config c = config_with("trap_emulate");
    c.set("vmm.deprivileged_cpl_prot32", cpl, config::Origin{config::Origin::Kind::Override, {}, 0, 0, ""});
    auto router = config::attach_vmm(c, vmm::Machine{m.core, nullptr, 32ull << 20, 8ull << 20});
    EXPECT_EQ(m.state().cpl(), static_cast<unsigned>(cpl));
    EXPECT_EQ(m.state().mode(), isa::Mode::Compat32);
  }
}

TEST(AttachVmm, RefusesAStrategyItDoesNotImplementByName) {
  test::Machine m;
  try {
    config::attach_vmm(config_with("binary_translation"), vmm::Machine{m.core});
    FAIL() << "binary_translation was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("binary_translation"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace pgsim

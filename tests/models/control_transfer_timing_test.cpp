// IRET and the fast system calls (SYSCALL/SYSRET, SYSENTER/SYSEXIT) have classes of their own,
// decided at decode time, and the timing model charges them timing.iret_cycles and half of
// timing.syscall_cycles each, not the cost of other system instructions.
#include <gtest/gtest.h>

#include "isa/decoder.h"
#include "isa/dispatch.h"
#include "models/timing/timing.h"
#include "tests/isa/harness.h"

namespace pgsim::models {
namespace {

using isa::InsnClass;

isa::InsnClass class_of(isa::Mode mode, std::vector<uint8_t> bytes) {
  static const isa::Decoder decoder(isa::Dispatch::instance());
  isa::Insn insn;
  EXPECT_EQ(decoder.decode(mode, bytes.data(), bytes.size(), insn), isa::DecodeStatus::Ok);
  return insn.cls;
}

TEST(ControlTransferClasses, DecidedAtDecodeTime) {
  EXPECT_EQ(class_of(isa::Mode::Long64, {0x48, 0xCF}), InsnClass::Iret);       // IRETQ
  EXPECT_EQ(class_of(isa::Mode::Protected32, {0xCF}), InsnClass::Iret);        // IRETD
  EXPECT_EQ(class_of(isa::Mode::Real, {0xCF}), InsnClass::Iret);               // IRET
  EXPECT_EQ(class_of(isa::Mode::Long64, {0x0F, 0x05}), InsnClass::Syscall);    // SYSCALL
  EXPECT_EQ(class_of(isa::Mode::Long64, {0x48, 0x0F, 0x07}), InsnClass::Syscall);  // SYSRETQ
  EXPECT_EQ(class_of(isa::Mode::Protected32, {0x0F, 0x34}), InsnClass::Syscall);   // SYSENTER
  EXPECT_EQ(class_of(isa::Mode::Protected32, {0x0F, 0x35}), InsnClass::Syscall);   // SYSEXIT
  EXPECT_EQ(class_of(isa::Mode::Long64, {0xCD, 0x80}), InsnClass::System);    // INT stays System
  EXPECT_EQ(class_of(isa::Mode::Long64, {0xF4}), InsnClass::System);          // HLT stays System
}

// Only `cls` costs anything, so the execute bucket is exactly what that class was charged.
TimingParams only(InsnClass cls, double cycles) {
  TimingParams t;
  for (unsigned c = 0; c < isa::kNumInsnClasses; ++c) t.set_cpi(static_cast<InsnClass>(c), 0);
  t.string_iteration_millicycles = 0;
  t.set_cpi(cls, cycles);
  return t;
}

TEST(ControlTransferTiming, NIretsCostNTimesIretCycles) {
  constexpr unsigned kN = 1000;
  test::Machine m;  // real mode: IRET pops IP, CS and FLAGS, no descriptor tables involved
  isa::CpuState& s = m.state();
  s.seg[isa::SS] = isa::Segment{0, 0, 0xFFFF, 0x93};
  s.seg[isa::CS] = isa::Segment{0, 0, 0xFFFF, 0x9B};
  s.gpr[isa::RSP] = 0x7C00;
  s.rflags = isa::RF1;
  // mov cx, kN; L: pushf; push cs; push 0x509; iret; (0x509) dec cx; jnz L; (0x50C) jmp $
  m.load_code(0x500, {0xB9, kN & 0xFF, kN >> 8, 0x9C, 0x0E, 0x68, 0x09, 0x05, 0xCF, 0x49, 0x75, 0xF7,
                      0xEB, 0xFE});
  EXPECT_EQ(m.core.run(1 + 6 * kN), 1u + 6 * kN);
  EXPECT_EQ(s.rip, 0x50Cu);
  EXPECT_EQ(s.gpr[isa::RSP], 0x7C00u);
  const isa::CoreCounters& c = m.core.counters();
  EXPECT_EQ(c.by_class[static_cast<unsigned>(InsnClass::Iret)], kN);
  EXPECT_EQ(c.by_class[static_cast<unsigned>(InsnClass::Syscall)], 0u);

  MmuCounters mmu;
  const CycleAccount iret_only(only(InsnClass::Iret, 60), c, mmu);
  EXPECT_EQ(iret_only.bucket(Bucket::Execute), kN * 60u);
  // With every class at its default cost, IRET is charged iret_cycles, not timing.cpi.system.
  TimingParams defaults;
  defaults.set_cpi(InsnClass::Iret, 200);
  const CycleAccount all(defaults, c, mmu);
  TimingParams without_iret = defaults;
  without_iret.set_cpi(InsnClass::Iret, 0);
  EXPECT_EQ(all.bucket(Bucket::Execute) - CycleAccount(without_iret, c, mmu).bucket(Bucket::Execute),
            kN * 200u);
}

TEST(ControlTransferTiming, NSyscallRoundTripsCostNTimesSyscallCycles) {
  constexpr unsigned kN = 1000;
  test::Machine m;
  isa::CpuState& s = m.state();
  test::make_long64(s, 3);
  s.star = (0x08ull << 48) | (0x08ull << 32);  // SYSCALL: CS 0x08; SYSRET: CS 0x1B
  s.lstar = 0x5000;
  s.fmask = 0;
  m.ram.load(0x5000, {0x48, 0x0F, 0x07});  // the kernel: SYSRETQ
  // mov ebx, kN; L: syscall; dec ebx; jnz L; jmp $
  m.load_code(0x401000, {0xBB, kN & 0xFF, kN >> 8, 0x00, 0x00, 0x0F, 0x05, 0xFF, 0xCB, 0x75, 0xFA, 0xEB, 0xFE});
  EXPECT_EQ(m.core.run(1 + 4 * kN), 1u + 4 * kN);
  EXPECT_EQ(s.rip, 0x40100Bu);
  EXPECT_EQ(s.cpl(), 3u);
  const isa::CoreCounters& c = m.core.counters();
  EXPECT_EQ(c.by_class[static_cast<unsigned>(InsnClass::Syscall)], 2 * kN);
  EXPECT_EQ(c.by_class[static_cast<unsigned>(InsnClass::System)], 0u);

  MmuCounters mmu;
  TimingParams t = only(InsnClass::Syscall, 0);
  t.set_syscall_round_trip(71);  // an odd round trip: 35.5 cycles each way, exact in the sum
  EXPECT_EQ(CycleAccount(t, c, mmu).bucket(Bucket::Execute), kN * 71u);
}

}  // namespace
}  // namespace pgsim::models

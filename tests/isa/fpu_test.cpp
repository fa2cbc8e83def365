// The x87/SSE core beyond what the differential test compares with the host: the CR0 and CR4
// controls (#UD, #NM), unmasked exceptions (#XM, #MF), FXSAVE/FXRSTOR, FNSAVE/FRSTOR, XSAVE/XRSTOR/
// XSAVEOPT with XCR0 and the CPUID bits that describe them.
#include <gtest/gtest.h>

#include "isa/system/events.h"
#include "tests/isa/harness.h"

namespace pgsim::test {
namespace {

using namespace isa;


constexpr uint64_t kCode = 0x4000, kData = 0x8000;

// A kernel-mode 64-bit machine with OSFXSR and OSXMMEXCPT set, `code` at kCode.
struct FpuMachine {
  Machine m;
  RecordingHook hook;
  explicit FpuMachine(const std::vector<uint8_t>& code, unsigned cpl = 0) {
    make_long64(m.state(), cpl);
    m.state().cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT;
    m.core.set_trap_hook(&hook, false);
    m.load_code(kCode, code);
    m.reg(RAX) = kData;
  }
  // Runs from kCode; returns the vector of the first event, or -1.
  int run(uint64_t max = 100) {
    hook.events.clear();
    m.state().rip = kCode;
    m.core.sync_mode();
    m.core.run(max);
    return hook.events.empty() ? -1 : hook.events[0].vector;
  }
  FpuState& fpu() { return m.state().fpu; }
};

const std::vector<uint8_t> kAddps = {0x0F, 0x58, 0xC1};  // addps xmm0, xmm1

TEST(Fpu, SseFollowsCr0EmTsAndCr4Osfxsr) {
  FpuMachine f(kAddps);
  f.m.state().cr4 &= ~uint64_t{CR4_OSFXSR};
  EXPECT_EQ(f.run(1), UD);
  EXPECT_TRUE(f.m.core.unimplemented().empty()) << "a disabled instruction is not an unimplemented one";
  f.m.state().cr4 |= CR4_OSFXSR;
  f.m.state().cr0 |= CR0_TS;
  EXPECT_EQ(f.run(1), NM);
  f.m.state().cr0 |= CR0_EM;
  EXPECT_EQ(f.run(1), UD);  // EM comes before TS for SSE
  f.m.state().cr0 &= ~uint64_t{CR0_EM | CR0_TS};
  EXPECT_EQ(f.run(1), -1);
  EXPECT_EQ(f.m.state().rip, kCode + 3);
}

TEST(Fpu, X87FollowsCr0EmTsAndWaitFollowsMpTs) {
  FpuMachine f({0xD9, 0xE8});  // fld1
  f.m.state().cr0 |= CR0_EM;
  EXPECT_EQ(f.run(1), NM);
  f.m.state().cr0 = (f.m.state().cr0 & ~uint64_t{CR0_EM}) | CR0_TS;
  EXPECT_EQ(f.run(1), NM);
  f.m.state().cr0 &= ~uint64_t{CR0_TS};
  EXPECT_EQ(f.run(1), -1);
  FpuMachine w({0x9B});  // fwait
  w.m.state().cr0 |= CR0_TS;
  EXPECT_EQ(w.run(1), -1);  // TS without MP: FWAIT runs
  w.m.state().cr0 |= CR0_MP;
  EXPECT_EQ(w.run(1), NM);
}

TEST(Fpu, UnmaskedSimdExceptionRaisesXmOrUdAndKeepsTheDestination) {
  FpuMachine f({0x0F, 0x5E, 0xC1});  // divps xmm0, xmm1
  f.fpu().mxcsr = kMxcsrReset & ~uint32_t{MXCSR_ZE << kMxcsrMaskShift};  // divide-by-zero unmasked
  f.fpu().xmm[0] = Xmm{{0x3F8000003F800000ull, 0x3F8000003F800000ull}};  // 1.0f
  f.fpu().xmm[1] = Xmm{{0x3F80000000000000ull, 0x3F8000003F800000ull}};  // a zero in lane 0
  EXPECT_EQ(f.run(1), XM);
  EXPECT_EQ(f.fpu().xmm[0].q[0], 0x3F8000003F800000ull);
  EXPECT_TRUE(f.fpu().mxcsr & MXCSR_ZE);
  f.m.state().cr4 &= ~uint64_t{CR4_OSXMMEXCPT};
  EXPECT_EQ(f.run(1), UD);
  f.fpu().mxcsr = kMxcsrReset;  // masked: infinity, ZE flagged
  EXPECT_EQ(f.run(1), -1);
  EXPECT_EQ(f.fpu().xmm[0].q[0] & 0xFFFFFFFF, 0x7F800000u);
  EXPECT_EQ(f.fpu().mxcsr, kMxcsrReset | MXCSR_ZE);
}

TEST(Fpu, UnmaskedX87ExceptionIsPendingUntilTheNextWaitingInstruction) {
  // fldcw [rax]; fld1; fldz; fdivp st1, st0; fnstsw [rax+2]; fld1
  FpuMachine f({0xD9, 0x28, 0xD9, 0xE8, 0xD9, 0xEE, 0xDE, 0xF9, 0xDD, 0x78, 0x02, 0xD9, 0xE8});
  f.m.ram.load(kData, {0x7B, 0x03});  // control word 0x037B: divide-by-zero unmasked
  EXPECT_EQ(f.run(), MF);
  EXPECT_EQ(f.m.state().rip, kCode + 11);  // at the fld1 after the non-waiting FNSTSW
  const uint16_t fsw = f.m.ram.get<uint16_t>(kData + 2);
  EXPECT_EQ(fsw & (FSW_ZE | FSW_ES | FSW_B), FSW_ZE | FSW_ES | FSW_B);
}

TEST(Fpu, FxsaveAndFxrstorRoundTripTheState) {
  // fld1; fldpi; fxsave [rax]; fninit; fxrstor [rax]
  FpuMachine f({0xD9, 0xE8, 0xD9, 0xEB, 0x0F, 0xAE, 0x00, 0xDB, 0xE3, 0x0F, 0xAE, 0x08});
  f.fpu().xmm[15] = Xmm{{0x1122334455667788ull, 0x99AABBCCDDEEFF00ull}};
  f.fpu().mxcsr = 0x3F80;
  f.m.core.run(3);
  const FpuState saved = f.fpu();
  EXPECT_EQ(f.m.ram.get<uint16_t>(kData + 0), kFcwReset);
  EXPECT_EQ(f.m.ram.get<uint8_t>(kData + 4), 0xC0);  // R6 and R7 in use
  EXPECT_EQ(f.m.ram.get<uint16_t>(kData + 6), 0x1EB);  // FOP of FLDPI (D9 EB)
  EXPECT_EQ(f.m.ram.get<uint32_t>(kData + 8), kCode + 2);  // FIP: its address
  EXPECT_EQ(f.m.ram.get<uint32_t>(kData + 24), 0x3F80u);
  EXPECT_EQ(f.m.ram.get<uint32_t>(kData + 28), 0xFFFFu);  // MXCSR_MASK
  EXPECT_EQ(f.m.ram.get<uint64_t>(kData + 160 + 15 * 16), 0x1122334455667788ull);
  f.m.core.run(1);
  EXPECT_EQ(f.fpu().ftw, 0);
  f.m.core.run(1);
  EXPECT_EQ(f.fpu(), saved);
  f.m.reg(RAX) = kData + 8;  // misaligned
  f.m.state().rip = kCode + 4;
  f.hook.events.clear();
  f.m.core.run(1);
  ASSERT_EQ(f.hook.events.size(), 1u);
  EXPECT_EQ(f.hook.events[0].vector, GP);
}

TEST(Fpu, FnsaveStoresTheEnvironmentAndRegistersThenInitializes) {
  // fld1; fnsave [rax]; frstor [rax]
  FpuMachine f({0xD9, 0xE8, 0xDD, 0x30, 0xDD, 0x20});
  f.m.core.run(2);
  EXPECT_EQ(f.fpu().ftw, 0);
  EXPECT_EQ(f.m.ram.get<uint16_t>(kData + 8), 0x3FFF);  // full tag word: ST(0) valid, the rest empty
  EXPECT_EQ(f.m.ram.get<uint64_t>(kData + 28), 0x8000000000000000ull);  // ST(0) = 1.0
  EXPECT_EQ(f.m.ram.get<uint16_t>(kData + 36), 0x3FFF);
  f.m.core.run(1);
  EXPECT_EQ(f.fpu().ftw, 0x80);
  EXPECT_EQ(f.fpu().st[7].sign_exponent, 0x3FFF);
}

TEST(Fpu, XsaveFamilyFollowsXcr0AndCr4Osxsave) {
  // xsetbv; xsave [rbx]; xsaveopt [rbx]; xrstor [rbx]; xgetbv
  FpuMachine f({0x0F, 0x01, 0xD1, 0x0F, 0xAE, 0x23, 0x0F, 0xAE, 0x33, 0x0F, 0xAE, 0x2B, 0x0F, 0x01, 0xD0});
  CpuState& s = f.m.state();
  EXPECT_EQ(f.run(1), UD);  // CR4.OSXSAVE clear
  s.cr4 |= CR4_OSXSAVE;
  s.gpr[RCX] = 0;
  s.gpr[RDX] = 0;
  s.gpr[RAX] = XCR0_SSE;  // x87 must stay enabled
  EXPECT_EQ(f.run(1), GP);
  s.gpr[RAX] = XCR0_X87 | XCR0_SSE | 4;  // AVX is not offered
  EXPECT_EQ(f.run(1), GP);
  s.gpr[RAX] = XCR0_X87 | XCR0_SSE;
  EXPECT_EQ(f.run(1), -1);
  EXPECT_EQ(s.xcr0, XCR0_X87 | XCR0_SSE);

  // XSAVE with every component requested: the SSE component is in use, the x87 one is not.
  s.gpr[RBX] = kData;
  s.gpr[RAX] = s.gpr[RDX] = 0xFFFFFFFF;
  f.fpu().xmm[3] = Xmm{{5, 6}};
  f.fpu().mxcsr = 0x1FA0;
  f.m.ram.load(kData, std::vector<uint8_t>(576, 0xEE));
  f.m.ram.load(kData + 512, std::vector<uint8_t>(64, 0));
  s.rip = kCode + 3;
  f.m.core.run(1);
  EXPECT_EQ(f.m.ram.get<uint64_t>(kData + 512), uint64_t{XCR0_SSE});
  EXPECT_EQ(f.m.ram.get<uint16_t>(kData + 0), kFcwReset);  // XSAVE writes a component in its initial state
  EXPECT_EQ(f.m.ram.get<uint32_t>(kData + 24), 0x1FA0u);
  EXPECT_EQ(f.m.ram.get<uint64_t>(kData + 160 + 3 * 16 + 8), 6u);

  // XSAVEOPT skips the x87 component in its initial state.
  f.m.ram.load(kData, std::vector<uint8_t>(2, 0xEE));
  f.m.core.run(1);
  EXPECT_EQ(f.m.ram.get<uint16_t>(kData + 0), 0xEEEE);
  EXPECT_EQ(f.m.ram.get<uint64_t>(kData + 512), uint64_t{XCR0_SSE});

  // XRSTOR: SSE from memory, the x87 component (XSTATE_BV bit 0 clear) initialized.
  f.fpu() = FpuState{};
  f.fpu().fcw = 0x27F;
  f.fpu().ftw = 0x01;
  f.m.core.run(1);
  EXPECT_EQ(f.fpu().xmm[3], (Xmm{{5, 6}}));
  EXPECT_EQ(f.fpu().mxcsr, 0x1FA0u);
  EXPECT_EQ(f.fpu().fcw, kFcwReset);
  EXPECT_EQ(f.fpu().ftw, 0);
  f.m.core.run(1);  // xgetbv
  EXPECT_EQ(s.gpr[RAX], uint64_t{XCR0_X87 | XCR0_SSE});
  EXPECT_EQ(s.gpr[RDX], 0u);

  // A header with a component outside XCR0, or a nonzero byte in 23:8, is refused; bytes 63:24
  // are not checked.
  auto xrstor_vector = [&] {
    s.rip = kCode + 9;
    f.hook.events.clear();
    f.m.core.run(1);
    return f.hook.events.empty() ? -1 : int{f.hook.events[0].vector};
  };
  f.m.ram.load(kData + 512, {0x07});
  EXPECT_EQ(xrstor_vector(), GP);
  f.m.ram.load(kData + 512, {0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  EXPECT_EQ(xrstor_vector(), GP);
  f.m.ram.load(kData + 512 + 23, {0x00, 0x01});
  EXPECT_EQ(xrstor_vector(), -1);
  // XSETBV at CPL 3 is privileged.
  FpuMachine user({0x0F, 0x01, 0xD1}, 3);
  user.m.state().cr4 |= CR4_OSXSAVE;
  user.m.state().gpr[RAX] = 3;
  user.m.state().gpr[RCX] = user.m.state().gpr[RDX] = 0;
  EXPECT_EQ(user.run(1), GP);
}

TEST(Fpu, CpuidDescribesFpuSseAndXsave) {
  FpuMachine f({0x0F, 0xA2});  // cpuid
  CpuState& s = f.m.state();
  s.gpr[RAX] = 1;
  f.run(1);
  EXPECT_EQ(s.gpr[RDX] & ((1u << 0) | (1u << 24) | (1u << 25) | (1u << 26)), (1u << 0) | (1u << 24) | (1u << 25) | (1u << 26));
  EXPECT_EQ(s.gpr[RDX] & (1u << 23), 0u) << "MMX is not implemented";
  EXPECT_TRUE(s.gpr[RCX] & (1u << 26));
  EXPECT_FALSE(s.gpr[RCX] & (1u << 27));  // OSXSAVE follows CR4
  s.cr4 |= CR4_OSXSAVE;
  s.gpr[RAX] = 1;
  f.run(1);
  EXPECT_TRUE(s.gpr[RCX] & (1u << 27));
  s.gpr[RAX] = 0xD;
  s.gpr[RCX] = 0;
  f.run(1);
  EXPECT_EQ(s.gpr[RAX], 3u);
  EXPECT_EQ(s.gpr[RBX], 576u);
  EXPECT_EQ(s.gpr[RCX], 576u);
  s.gpr[RAX] = 0xD;
  s.gpr[RCX] = 1;
  f.run(1);
  EXPECT_EQ(s.gpr[RAX], 1u);  // XSAVEOPT
}

}  // namespace
}  // namespace pgsim::test

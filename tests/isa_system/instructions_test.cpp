// System instructions run by the core, from the Intel SDM vol. 2 instruction pages: the classic
// sensitive behaviours at CPL 3, the profiles that change them, SYSCALL/SYSRET, IRET to an outer
// ring, far transfers through call gates, port I/O protection and the mode switch into long mode.
#include <gtest/gtest.h>

#include <string>

#include "isa/system/profile.h"
#include "isa/system/system_config.h"
#include "system_harness.h"

using namespace pgsim::isa;
using namespace pgsim::test;

namespace {

constexpr uint64_t kUserCodeAt = 0x401000;
const std::vector<uint8_t> kSpin = {0xEB, 0xFE};  // JMP $

// A machine with handlers for every exception vector, each a JMP $ at kHandler + vector * 16.
struct Fixture : SystemMachine {
  SystemConfig config;
  SystemConfigBinding binding{core, config};

  explicit Fixture(bool ia32e, const std::string& profile = "x86") : SystemMachine(ia32e) {
    for (unsigned v = 0; v < 32; ++v) {
      handler(static_cast<uint8_t>(v));
      ram.load(kHandler + v * 16, kSpin);
    }
    config.profile = load_profile(profile);
    apply_profile_features(config.profile, config.cpu);
  }
  // Runs user code at CPL 3 until `n` instructions retired (a fault's handler spins).
  void run_user(const std::vector<uint8_t>& code, unsigned n, uint64_t rsp = 0x7000) {
    load_code(kUserCodeAt, code);
    enter_user(kUserCodeAt, rsp);
    core.run(n);
  }
  bool in_handler(uint8_t vector) { return state().rip == kHandler + vector * 16u; }
  // The error code on top of the kernel stack (64-bit frames).
  uint64_t error_code() { return stack<uint64_t>(state().gpr[RSP]); }
  uint64_t faulting_rip() { return stack<uint64_t>(state().gpr[RSP] + 8); }
};

}  // namespace

// ---- POPF / PUSHF ----------------------------------------------------------------------------------

TEST(Popf, AtCpl3WithIopl0KeepsIfWithoutFault) {
  Fixture m(true);
  m.ram.put<uint64_t>(0x6FF8, RF1 | CF);          // the image clears IF and sets CF
  m.state().rflags = RF1 | IF;
  m.run_user({0x9D, 0xEB, 0xFE}, 2, 0x6FF8);      // POPFQ; JMP $
  EXPECT_EQ(m.state().cpl(), 3u) << "no fault";
  EXPECT_EQ(m.state().rip, kUserCodeAt + 1);
  EXPECT_TRUE(m.state().rflags & IF) << "IF silently unchanged (SDM vol. 2, POPF)";
  EXPECT_TRUE(m.state().rflags & CF);
  EXPECT_EQ(m.reg(RSP), 0x7000u);
}

TEST(Popf, AtCpl0ChangesIfAndIopl) {
  Fixture m(true);
  m.ram.put<uint64_t>(0x8FF8, RF1 | (3u << kIoplShift));
  m.state().rflags = RF1 | IF;
  m.state().gpr[RSP] = 0x8FF8;
  m.load_code(0x5000, {0x9D});
  m.core.run(1);
  EXPECT_EQ(m.state().rflags & IF, 0u);
  EXPECT_EQ(m.state().iopl(), 3u);
}

TEST(Popf, PopekGoldbergProfileRoutesIfToVifAndTrapsIoplChanges) {
  Fixture m(true, "x86-pg");
  m.ram.put<uint64_t>(0x6FF8, RF1 | IF);
  m.state().rflags = RF1;
  m.run_user({0x9D, 0xEB, 0xFE}, 2, 0x6FF8);
  EXPECT_EQ(m.state().rflags & IF, 0u);
  EXPECT_TRUE(m.state().rflags & VIF) << "the program's IF lands in VIF";

  Fixture t(true, "x86-pg");
  t.ram.put<uint64_t>(0x6FF8, RF1 | (3u << kIoplShift));
  t.run_user({0x9D}, 1, 0x6FF8);
  EXPECT_TRUE(t.in_handler(GP));
  EXPECT_EQ(t.faulting_rip(), kUserCodeAt);
}

TEST(Pushf, ClassicShowsRealIfInsensitiveShowsVif) {
  Fixture m(true);
  m.state().rflags = RF1 | IF;
  m.run_user({0x9C, 0xEB, 0xFE}, 2);
  EXPECT_EQ(m.stack<uint64_t>(0x6FF8), uint64_t(RF1 | IF));

  Fixture pg(true, "x86-pg");
  pg.state().rflags = RF1 | IF;
  pg.run_user({0x9C, 0xEB, 0xFE}, 2);
  EXPECT_EQ(pg.stack<uint64_t>(0x6FF8), uint64_t(RF1)) << "VIF (clear) is pushed as IF";

  // VIF set: pushed as IF, and neither VIF nor VIP appears in the image (a CPL-0 PUSHF of the
  // same program would not show them).
  Fixture pg_vif(true, "x86-pg");
  pg_vif.state().rflags = RF1 | VIF | VIP;
  pg_vif.run_user({0x9C, 0xEB, 0xFE}, 2);
  EXPECT_EQ(pg_vif.stack<uint64_t>(0x6FF8), uint64_t(RF1 | IF));
}

// ---- SGDT / SMSW under the profiles --------------------------------------------------------------

TEST(Sgdt, AtCpl3UnderEachProfile) {
  for (const char* profile : {"x86", "x86-umip", "x86-pg"}) {
    SCOPED_TRACE(profile);
    Fixture m(true, profile);
    // x86-umip's CPU has UMIP: the OS turns it on (at CPL 0), then SGDT at CPL 3 faults.
    if (std::string(profile) == "x86-umip") m.state().cr4 |= CR4_UMIP;
    m.reg(RAX) = 0x6000;
    m.run_user({0x0F, 0x01, 0x00, 0xEB, 0xFE}, 2);  // SGDT [RAX]; JMP $
    if (std::string(profile) == "x86") {
      EXPECT_EQ(m.state().cpl(), 3u);
      EXPECT_EQ(m.ram.get<uint16_t>(0x6000), 0x7F);
      EXPECT_EQ(m.ram.get<uint64_t>(0x6002), kGdt) << "the real GDT base leaks to ring 3";
    } else {
      EXPECT_TRUE(m.in_handler(GP));
      EXPECT_EQ(m.error_code(), 0u);
      EXPECT_EQ(m.faulting_rip(), kUserCodeAt);
      EXPECT_EQ(m.ram.get<uint64_t>(0x6002), 0u);
    }
  }
}

TEST(Smsw, UserProfileLoadedByPathMakesItTrap) {
  Fixture classic(true);
  classic.run_user({0x0F, 0x01, 0xE0, 0xEB, 0xFE}, 2);  // SMSW EAX
  EXPECT_EQ(classic.reg(RAX), classic.state().cr0 & 0xFFFFFFFF);

  Fixture m(true, std::string(PGSIM_TEST_DATA_DIR) + "/smsw-traps.yaml");
  EXPECT_EQ(m.config.profile.name, "smsw-traps");
  m.run_user({0x0F, 0x01, 0xE0, 0xEB, 0xFE}, 2);
  EXPECT_TRUE(m.in_handler(GP));
  EXPECT_EQ(m.faulting_rip(), kUserCodeAt);
}

TEST(Umip, Cr4UmipMakesSgdtFaultEvenUnderClassicProfile) {
  Fixture m(true);
  m.state().cr4 |= CR4_UMIP;
  m.reg(RAX) = 0x6000;
  m.run_user({0x0F, 0x01, 0x00}, 1);
  EXPECT_TRUE(m.in_handler(GP));
}

// ---- SYSCALL / SYSRET ------------------------------------------------------------------------------

TEST(Syscall, EntersRing0AndSysretReturns) {
  Fixture m(true);
  CpuState& s = m.state();
  s.star = (uint64_t(0x10) << 48) | (uint64_t(kKernelCode) << 32);  // SYSRET base 0x10: CS 0x23+... see below
  s.lstar = 0x30000;
  s.fmask = IF | TF;
  m.ram.load(0x30000, {0x48, 0x0F, 0x07});  // SYSRETQ
  s.rflags = RF1 | IF | CF;
  m.run_user({0x0F, 0x05, 0xEB, 0xFE}, 1);   // SYSCALL
  EXPECT_EQ(s.cpl(), 0u);
  EXPECT_EQ(s.rip, 0x30000u);
  EXPECT_EQ(s.gpr[RCX], kUserCodeAt + 2);
  EXPECT_EQ(s.gpr[R11], uint64_t(RF1 | IF | CF));
  EXPECT_EQ(s.rflags & IF, 0u) << "FMASK clears IF";
  EXPECT_EQ(s.seg[CS].selector, kKernelCode);
  EXPECT_EQ(s.seg[SS].selector, kKernelCode + 8);
  EXPECT_TRUE(s.seg[CS].l());
  m.core.run(1);                             // SYSRETQ
  EXPECT_EQ(s.cpl(), 3u);
  EXPECT_EQ(s.rip, kUserCodeAt + 2);
  EXPECT_EQ(s.seg[CS].selector, 0x20 | 3);   // STAR[63:48] + 16, RPL 3
  EXPECT_EQ(s.seg[SS].selector, 0x18 | 3);   // STAR[63:48] + 8, RPL 3
  EXPECT_TRUE(s.rflags & IF);
  EXPECT_TRUE(s.rflags & CF);
}

TEST(Syscall, SysretAtCpl3IsGpAndSyscallWithoutSceIsUd) {
  Fixture m(true);
  m.run_user({0x48, 0x0F, 0x07}, 1);
  EXPECT_TRUE(m.in_handler(GP));
  Fixture u(true);
  u.state().efer &= ~EFER_SCE;
  u.run_user({0x0F, 0x05}, 1);
  EXPECT_TRUE(u.in_handler(UD));
}

// ---- IRET ------------------------------------------------------------------------------------------

TEST(Iret, LongModeToRing3) {
  Fixture m(true);
  CpuState& s = m.state();
  const uint64_t sp = 0x8FF00 - 40;
  m.ram.put<uint64_t>(sp + 0, 0x401000);         // RIP
  m.ram.put<uint64_t>(sp + 8, kUserCode);        // CS
  m.ram.put<uint64_t>(sp + 16, RF1 | IF | (3u << kIoplShift));
  m.ram.put<uint64_t>(sp + 24, 0x7123);          // RSP
  m.ram.put<uint64_t>(sp + 32, kUserData);       // SS
  s.gpr[RSP] = sp;
  m.load_code(0x5000, {0x48, 0xCF});             // IRETQ
  m.core.run(1);
  EXPECT_EQ(s.cpl(), 3u);
  EXPECT_EQ(s.rip, 0x401000u);
  EXPECT_EQ(s.gpr[RSP], 0x7123u);
  EXPECT_EQ(s.seg[SS].selector, kUserData);
  EXPECT_EQ(s.iopl(), 3u) << "IRET at CPL 0 may change IOPL";
  EXPECT_TRUE(s.rflags & IF);
}

TEST(Iret, Prot32ToRing3NullsKernelDataSegments) {
  Fixture m(false);
  CpuState& s = m.state();
  const uint64_t sp = 0x8FF00;
  m.ram.put<uint32_t>(sp + 0, 0x08048000);
  m.ram.put<uint32_t>(sp + 4, kUserCode);
  m.ram.put<uint32_t>(sp + 8, RF1 | IF);
  m.ram.put<uint32_t>(sp + 12, 0xBFFF0000);
  m.ram.put<uint32_t>(sp + 16, kUserData);
  s.gpr[RSP] = sp;
  s.seg[FS] = Segment{kKernelData, 0, 0xFFFFFFFF, seg_attr(kDataReadWrite, 0, false, true, true)};
  s.seg[GS] = Segment{kUserData, 0, 0xFFFFFFFF, seg_attr(kDataReadWrite, 3, false, true, true)};
  m.load_code(0x5000, {0xCF});  // IRETD
  m.core.run(1);
  EXPECT_EQ(s.cpl(), 3u);
  EXPECT_EQ(s.rip, 0x08048000u);
  EXPECT_EQ(s.gpr[RSP], 0xBFFF0000u);
  EXPECT_EQ(s.seg[SS].selector, kUserData);
  EXPECT_EQ(s.seg[FS].selector, 0) << "a DPL-0 data segment is unusable at CPL 3";
  EXPECT_EQ(s.seg[GS].selector, kUserData);
}

TEST(Iret, AtCpl3KeepsIfSilentlyOnClassicAndTrapsOnPg) {
  for (const char* profile : {"x86", "x86-pg"}) {
    SCOPED_TRACE(profile);
    Fixture m(true, profile);
    m.ram.put<uint64_t>(0x6F00 + 0, kUserCodeAt + 2);
    m.ram.put<uint64_t>(0x6F00 + 8, kUserCode);
    m.ram.put<uint64_t>(0x6F00 + 16, RF1);  // IF = 0
    m.ram.put<uint64_t>(0x6F00 + 24, 0x6F80);
    m.ram.put<uint64_t>(0x6F00 + 32, kUserData);
    m.state().rflags = RF1 | IF;
    m.run_user({0x48, 0xCF, 0xEB, 0xFE}, 2, 0x6F00);
    if (std::string(profile) == "x86") {
      EXPECT_EQ(m.state().rip, kUserCodeAt + 2);
      EXPECT_TRUE(m.state().rflags & IF);
      EXPECT_EQ(m.reg(RSP), 0x6F80u);
    } else {
      EXPECT_TRUE(m.in_handler(GP));
    }
  }
}

// ---- INT n -----------------------------------------------------------------------------------------

TEST(IntN, ThroughDpl3GateFromRing3AndDpl0GateFaults) {
  Fixture m(true);
  m.handler(0x80, 3);
  m.ram.load(kHandler + 0x80 * 16, kSpin);
  m.run_user({0xCD, 0x80}, 1);
  EXPECT_TRUE(m.in_handler(0x80));
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP)), kUserCodeAt + 2) << "INT n pushes the next RIP";

  Fixture f(true);  // gate DPL 0
  f.handler(0x80, 0);
  f.run_user({0xCD, 0x80}, 1);
  EXPECT_TRUE(f.in_handler(GP));
  EXPECT_EQ(f.error_code(), 0x80u * 8 + 2);
  EXPECT_EQ(f.faulting_rip(), kUserCodeAt) << "the #GP is a fault of INT itself";

  // A profile that makes INT n privileged: #GP with the gate-privilege error code.
  Fixture gp(true, std::string(PGSIM_TEST_DATA_DIR) + "/int-traps.yaml");
  gp.handler(0x80, 3);
  gp.run_user({0xCD, 0x80}, 1);
  EXPECT_TRUE(gp.in_handler(GP));
  EXPECT_EQ(gp.error_code(), 0x80u * 8 + 2);
}

// ---- Far CALL through a call gate, RET far back ------------------------------------------------------

TEST(CallGate, Prot32RaisesPrivilegeCopiesParametersAndReturns) {
  Fixture m(false);
  // A 32-bit call gate, DPL 3, to kernel code at 0x30000 with 2 dword parameters.
  m.put_gate_in_gdt(kCallGateSel, gate(0x30000, kKernelCode, kCallGate, 3, 2));
  m.ram.load(0x30000, {0xCA, 0x08, 0x00});  // RETF 8
  m.ram.put<uint32_t>(0xBFF0, 0x11111111);  // parameter at ESP (the last pushed)
  m.ram.put<uint32_t>(0xBFF4, 0x22222222);
  m.run_user({0x9A, 0x00, 0x00, 0x00, 0x00, 0x43, 0x00, 0xEB, 0xFE}, 1, 0xBFF0);  // CALL 0x43:0
  CpuState& s = m.state();
  ASSERT_EQ(s.cpl(), 0u);
  EXPECT_EQ(s.rip, 0x30000u);
  EXPECT_EQ(s.seg[SS].selector, kKernelData);
  const uint64_t top = kKernelStack;  // SS0:ESP0 from the TSS
  EXPECT_EQ(m.stack<uint32_t>(top - 4), kUserData);   // caller's SS
  EXPECT_EQ(m.stack<uint32_t>(top - 8), 0xBFF0u);     // caller's ESP
  EXPECT_EQ(m.stack<uint32_t>(top - 12), 0x22222222u);  // parameters, in the caller's order
  EXPECT_EQ(m.stack<uint32_t>(top - 16), 0x11111111u);
  EXPECT_EQ(m.stack<uint32_t>(top - 20), kUserCode);
  EXPECT_EQ(m.stack<uint32_t>(top - 24), kUserCodeAt + 7);
  EXPECT_EQ(s.gpr[RSP], top - 24);
  m.core.run(1);  // RETF 8: back to ring 3, the parameters popped from both stacks
  EXPECT_EQ(s.cpl(), 3u);
  EXPECT_EQ(s.rip, kUserCodeAt + 7);
  EXPECT_EQ(s.gpr[RSP], 0xBFF0u + 8);
  EXPECT_EQ(s.seg[SS].selector, kUserData);
}

TEST(CallGate, LongMode64BitGate) {
  Fixture m(true);
  m.put_gate_in_gdt(kCallGateSel, gate(0x30000, kKernelCode, kCallGate, 3));
  m.ram.put<uint64_t>(0x6000, 0);                // m16:32 far pointer: offset 0, selector 0x43
  m.ram.put<uint16_t>(0x6004, kCallGateSel | 3);
  m.reg(RAX) = 0x6000;
  m.run_user({0xFF, 0x18}, 1);                    // CALL FAR [RAX]
  CpuState& s = m.state();
  ASSERT_EQ(s.cpl(), 0u);
  EXPECT_EQ(s.rip, 0x30000u);
  EXPECT_EQ(s.seg[SS].selector, 0u);
  EXPECT_EQ(m.stack<uint64_t>(kKernelStack - 8), kUserData);
  EXPECT_EQ(m.stack<uint64_t>(kKernelStack - 16), 0x7000u);
  EXPECT_EQ(m.stack<uint64_t>(kKernelStack - 24), kUserCode);
  EXPECT_EQ(m.stack<uint64_t>(kKernelStack - 32), kUserCodeAt + 2);
}

TEST(CallGate, GateDplBelowCplFaultsWithGateSelector) {
  Fixture m(false);
  m.put_gate_in_gdt(kCallGateSel, gate(0x30000, kKernelCode, kCallGate, 0, 0));
  m.run_user({0x9A, 0x00, 0x00, 0x00, 0x00, 0x43, 0x00}, 1, 0xBFF0);
  EXPECT_TRUE(m.in_handler(GP));
  EXPECT_EQ(m.stack<uint32_t>(m.reg(RSP)), kCallGateSel);
}

// ---- CLI, I/O ports --------------------------------------------------------------------------------

TEST(Cli, AtCpl3WithIopl0IsGpAndWithIopl3Works) {
  Fixture m(true);
  m.run_user({0xFA}, 1);
  EXPECT_TRUE(m.in_handler(GP));
  Fixture k(true);
  k.state().rflags = RF1 | IF | (3u << kIoplShift);
  k.run_user({0xFA, 0xEB, 0xFE}, 2);
  EXPECT_EQ(k.state().rflags & IF, 0u);
}

TEST(PortIo, TssBitmapDecidesAtCpl3) {
  Fixture m(true);
  m.reg(RDX) = 0x3F8;
  m.reg(RAX) = 'A';
  m.run_user({0xEE, 0xEB, 0xFE}, 2);  // OUT DX, AL with the port allowed by the bitmap
  ASSERT_EQ(m.io.outs.size(), 1u);
  EXPECT_EQ(m.io.outs[0].port, 0x3F8);
  EXPECT_EQ(m.io.outs[0].value, uint32_t('A'));

  Fixture d(true);
  d.ram.put<uint8_t>(kTss + 0x68 + 0x3F8 / 8, 1);  // deny port 0x3F8
  d.reg(RDX) = 0x3F8;
  d.run_user({0xEE}, 1);
  EXPECT_TRUE(d.in_handler(GP));
  EXPECT_TRUE(d.io.outs.empty());
}

// ---- Segment registers and descriptor queries ------------------------------------------------------

TEST(Segments, LoadingKernelDataAtCpl3IsGpWithSelector) {
  Fixture m(true);
  m.reg(RAX) = kKernelData;
  m.run_user({0x8E, 0xD8}, 1);  // MOV DS, AX
  EXPECT_TRUE(m.in_handler(GP));
  EXPECT_EQ(m.error_code(), kKernelData);
}

TEST(Segments, LarVerrAtCpl3SeeOnlyWhatCpl3May) {
  Fixture m(true);
  m.reg(RCX) = kKernelData;
  m.run_user({0x0F, 0x02, 0xC1, 0xEB, 0xFE}, 2);  // LAR EAX, ECX
  EXPECT_EQ(m.state().rflags & ZF, 0u);
  Fixture u(true);
  u.reg(RCX) = kUserData;
  u.run_user({0x0F, 0x02, 0xC1, 0x0F, 0x00, 0xE1, 0xEB, 0xFE}, 3);  // LAR; VERR CX
  EXPECT_TRUE(u.state().rflags & ZF);
  EXPECT_EQ(u.reg(RAX), 0x00C0F300u) << "G, D/B, P, DPL 3, S, type 3 (limit 19:16 reads as 0)";
  Fixture pg(true, "x86-pg");
  pg.run_user({0x0F, 0x02, 0xC1}, 1);
  EXPECT_TRUE(pg.in_handler(GP));
}

// ---- Control registers and the switch to long mode ---------------------------------------------------

TEST(ControlRegisters, EnablingPagingWithLmeActivatesLongMode) {
  Fixture m(false);
  CpuState& s = m.state();
  s.cr4 = CR4_PAE;
  s.efer = EFER_LME;
  s.cr3 = 0x70000;
  s.gpr[RAX] = CR0_PE | CR0_ET | CR0_PG;
  m.load_code(0x5000, {0x0F, 0x22, 0xC0});  // MOV CR0, EAX
  m.core.run(1);
  EXPECT_TRUE(s.efer & EFER_LMA);
  EXPECT_EQ(s.mode(), Mode::Compat32);
  EXPECT_GE(m.translator.flushes, 1u);
}

TEST(ControlRegisters, PrivilegedAtCpl3AndReservedBits) {
  Fixture m(true);
  m.run_user({0x0F, 0x20, 0xC0}, 1);  // MOV RAX, CR0
  EXPECT_TRUE(m.in_handler(GP));
  Fixture r(true);
  r.reg(RAX) = 1ull << 40;
  r.load_code(0x5000, {0x0F, 0x22, 0xE0});  // MOV CR4, RAX with a reserved bit
  r.core.run(1);
  EXPECT_TRUE(r.in_handler(GP));
}

TEST(Msr, RoundTripAndUnknownMsrIsGp) {
  Fixture m(true);
  m.reg(RCX) = MSR_LSTAR;
  m.reg(RAX) = 0x12345678;
  m.reg(RDX) = 0xFFFFFFFF;
  m.load_code(0x5000, {0x0F, 0x30, 0x31, 0xC0, 0x31, 0xD2, 0x0F, 0x32});  // WRMSR; XOR; XOR; RDMSR
  m.core.run(4);
  EXPECT_EQ(m.state().lstar, 0xFFFFFFFF12345678ull);
  EXPECT_EQ(m.reg(RAX), 0x12345678u);
  EXPECT_EQ(m.reg(RDX), 0xFFFFFFFFu);
  Fixture u(true);
  u.reg(RCX) = 0x12345;
  u.load_code(0x5000, {0x0F, 0x32});
  u.core.run(1);
  EXPECT_TRUE(u.in_handler(GP));
}

// ---- CPUID, VMCALL, RDTSC --------------------------------------------------------------------------

namespace {
struct TestHypervisor : HypervisorInterface {
  unsigned calls = 0;
  bool cpuid(uint32_t leaf, uint32_t, CpuidLeaf& out) override {
    if (leaf != 0x40000000) return false;
    out = {0x40000001, 0x73677020, 0x206D6973, 0x20202020};
    return true;
  }
  bool vmcall(Core& core) override {
    ++calls;
    core.state().gpr[RAX] = 42;
    return true;
  }
};
}  // namespace

TEST(Cpuid, HypervisorLeafOnlyWhenAVmmPresentsOne) {
  Fixture m(true);
  m.reg(RAX) = 0x40000000;
  m.load_code(0x5000, {0x0F, 0xA2});
  m.core.run(1);
  EXPECT_EQ(m.reg(RAX), 0u);
  m.reg(RAX) = 1;
  m.load_code(0x5000, {0x0F, 0xA2});
  m.core.run(1);
  EXPECT_EQ(m.reg(RCX) & (1u << 31), 0u);

  TestHypervisor hv;
  m.config.hypervisor = &hv;
  m.reg(RAX) = 0x40000000;
  m.load_code(0x5000, {0x0F, 0xA2});
  m.core.run(1);
  EXPECT_EQ(m.reg(RAX), 0x40000001u);
  m.reg(RAX) = 1;
  m.load_code(0x5000, {0x0F, 0xA2});
  m.core.run(1);
  EXPECT_TRUE(m.reg(RCX) & (1u << 31));
}

TEST(Vmcall, UdWithoutHypervisorHandledWithOne) {
  Fixture m(true);
  m.load_code(0x5000, {0x0F, 0x01, 0xC1});
  m.core.run(1);
  EXPECT_TRUE(m.in_handler(UD));
  Fixture h(true);
  TestHypervisor hv;
  h.config.hypervisor = &hv;
  h.load_code(0x5000, {0x0F, 0x01, 0xC1});
  h.core.run(1);
  EXPECT_EQ(hv.calls, 1u);
  EXPECT_EQ(h.reg(RAX), 42u);
  EXPECT_EQ(h.state().rip, 0x5003u);
}

TEST(Rdtsc, Cr4TsdMakesItPrivileged) {
  Fixture m(true);
  m.state().tsc = 1000;
  m.run_user({0x0F, 0x31, 0xEB, 0xFE}, 2);
  EXPECT_EQ(m.reg(RAX), 1000u);
  Fixture t(true);
  t.state().cr4 |= CR4_TSD;
  t.run_user({0x0F, 0x31}, 1);
  EXPECT_TRUE(t.in_handler(GP));
}

// ---- What is not implemented fails loudly ------------------------------------------------------------

TEST(TaskSwitch, JmpToTssStopsTheCoreWithAMessage) {
  Fixture m(false);
  m.load_code(0x5000, {0xEA, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00});  // JMP 0x28:0 (the TSS)
  m.core.run(5);
  EXPECT_TRUE(m.core.is_shutdown());
  EXPECT_NE(m.core.shutdown_reason().find("task switching is not implemented"), std::string::npos)
      << m.core.shutdown_reason();
}

// ---- More system instructions ------------------------------------------------------------------------

TEST(Sysenter, Prot32EnterAndExit) {
  Fixture m(false);
  CpuState& s = m.state();
  s.sysenter_cs = kKernelCode;
  s.sysenter_esp = 0x8F000;
  s.sysenter_eip = 0x30000;
  m.ram.load(0x30000, {0x0F, 0x35});  // SYSEXIT
  s.rflags = RF1 | IF;
  m.run_user({0x0F, 0x34}, 1, 0xBFF0);  // SYSENTER
  EXPECT_EQ(s.cpl(), 0u);
  EXPECT_EQ(s.rip, 0x30000u);
  EXPECT_EQ(s.gpr[RSP], 0x8F000u);
  EXPECT_EQ(s.seg[CS].selector, kKernelCode);
  EXPECT_EQ(s.seg[SS].selector, kKernelData);
  EXPECT_EQ(s.rflags & IF, 0u);
  s.gpr[RCX] = 0xBFF0;
  s.gpr[RDX] = kUserCodeAt + 2;
  m.core.run(1);
  EXPECT_EQ(s.cpl(), 3u);
  EXPECT_EQ(s.rip, kUserCodeAt + 2);
  EXPECT_EQ(s.gpr[RSP], 0xBFF0u);
  EXPECT_EQ(s.seg[CS].selector, kUserCode);  // SYSENTER_CS + 16, RPL 3
  EXPECT_EQ(s.seg[SS].selector, kUserData);  // SYSENTER_CS + 24, RPL 3
}

TEST(Swapgs, ExchangesGsBaseAndKernelGsBase) {
  Fixture m(true);
  m.state().seg[GS].base = 0x1111;
  m.state().kernel_gs_base = 0x2222;
  m.load_code(0x5000, {0x0F, 0x01, 0xF8});
  m.core.run(1);
  EXPECT_EQ(m.state().seg[GS].base, 0x2222u);
  EXPECT_EQ(m.state().kernel_gs_base, 0x1111u);
}

TEST(Ltr, LoadsTheTssAndMarksItBusyThenRefusesABusyOne) {
  Fixture m(true);
  m.state().tr = Segment{};
  m.reg(RAX) = kTssSel;
  m.load_code(0x5000, {0x0F, 0x00, 0xD8, 0x0F, 0x00, 0xD8});  // LTR AX; LTR AX
  m.core.run(1);
  EXPECT_EQ(m.state().tr.selector, kTssSel);
  EXPECT_EQ(m.state().tr.base, kTss);
  EXPECT_EQ((m.ram.get<uint64_t>(kGdt + kTssSel) >> 40) & 0xF, uint64_t(kTssBusy));
  m.core.run(1);
  EXPECT_TRUE(m.in_handler(GP));
  EXPECT_EQ(m.error_code(), kTssSel);
}

TEST(Invlpg, ReachesTheTranslator) {
  Fixture m(true);
  m.reg(RAX) = 0x123456;
  m.load_code(0x5000, {0x0F, 0x01, 0x38});  // INVLPG [RAX]
  m.core.run(1);
  EXPECT_EQ(m.translator.invalidations, 1u);
}

TEST(PortIo, RepOutsb) {
  Fixture m(true);
  m.ram.load(0x6000, {'a', 'b', 'c'});
  m.reg(RSI) = 0x6000;
  m.reg(RCX) = 3;
  m.reg(RDX) = 0x3F8;
  m.load_code(0x5000, {0xF3, 0x6E});  // REP OUTSB
  m.core.run(1);
  ASSERT_EQ(m.io.outs.size(), 3u);
  EXPECT_EQ(m.io.outs[2].value, uint32_t('c'));
  EXPECT_EQ(m.reg(RCX), 0u);
  EXPECT_EQ(m.reg(RSI), 0x6003u);
}

// A REP OUTSB of any length stops at the step limit between two iterations, restartable, as the
// memory string instructions do: a guest's RCX = 2^64 - 1 must not hold the host.
TEST(PortIo, RepOutsbStopsAtTheStepLimitAndResumes) {
  Fixture m(true);
  m.reg(RSI) = 0x6000;
  m.reg(RCX) = 1000;
  m.reg(RDX) = 0x3F8;
  m.load_code(0x5000, {0xF3, 0x6E});  // REP OUTSB
  m.core.run(1, 5);
  EXPECT_EQ(m.io.outs.size(), 5u);
  EXPECT_EQ(m.reg(RCX), 995u);
  EXPECT_EQ(m.reg(RSI), 0x6005u);
  EXPECT_EQ(m.state().rip, 0x5000u);  // the instruction has not retired
  EXPECT_EQ(m.core.counters().string_iterations, 5u);
  m.core.run(1);
  EXPECT_EQ(m.io.outs.size(), 1000u);
  EXPECT_EQ(m.reg(RCX), 0u);
  EXPECT_EQ(m.state().rip, 0x5002u);
}

TEST(MovFromSreg, ClassicRevealsCplInsensitiveHidesIt) {
  Fixture m(true);
  m.run_user({0x8C, 0xC8, 0xEB, 0xFE}, 2);  // MOV EAX, CS
  EXPECT_EQ(m.reg(RAX), kUserCode);
  Fixture pg(true, "x86-pg");
  pg.run_user({0x8C, 0xC8, 0xEB, 0xFE}, 2);
  EXPECT_EQ(pg.reg(RAX), kUserCode & ~3u);
}

TEST(Sti, SetsTheInterruptShadow) {
  Fixture m(true);
  m.state().rflags = RF1;
  m.load_code(0x5000, {0xFB});
  m.core.run(1);
  EXPECT_TRUE(m.state().rflags & IF);
  EXPECT_TRUE(m.state().interrupt_shadow) << "interrupts wait one more instruction";
}

TEST(FarTransfers, Prot32DirectJmpAndLongModeFarRet) {
  Fixture m(false);
  m.ram.load(0x30000, kSpin);
  m.load_code(0x5000, {0xEA, 0x00, 0x00, 0x03, 0x00, 0x38, 0x00});  // JMP 0x38:0x30000
  m.core.run(1);
  EXPECT_EQ(m.state().seg[CS].selector, kKernelCode32);
  EXPECT_EQ(m.state().rip, 0x30000u);

  Fixture r(true);
  r.state().gpr[RSP] = 0x8F000;
  r.ram.put<uint64_t>(0x8F000, 0x31000);
  r.ram.put<uint64_t>(0x8F008, kKernelCode);
  r.load_code(0x5000, {0x48, 0xCB});  // RETFQ
  r.core.run(1);
  EXPECT_EQ(r.state().rip, 0x31000u);
  EXPECT_EQ(r.reg(RSP), 0x8F010u);
}

TEST(Rdtscp, LoadsTscAux) {
  Fixture m(true);
  m.state().tsc_aux = 7;
  m.load_code(0x5000, {0x0F, 0x01, 0xF9});
  m.core.run(1);
  EXPECT_EQ(m.reg(RCX), 7u);
}

TEST(RealMode, IntAndIretThroughTheIvt) {
  Machine m;
  CpuState& s = m.state();
  s.idtr = {0, 0x3FF};
  m.ram.put<uint32_t>(0x21 * 4, (0x0000u << 16) | 0x0600);  // handler at 0000:0600
  m.ram.load(0x600, {0xCF});                                 // IRET
  s.seg[SS] = Segment{0, 0, 0xFFFF, 0x93};
  s.seg[CS] = Segment{0, 0, 0xFFFF, 0x9B};
  s.gpr[RSP] = 0x7C00;
  s.rflags = RF1 | IF;
  m.load_code(0x500, {0xCD, 0x21, 0xEB, 0xFE});  // INT 21h; JMP $
  m.core.run(1);
  EXPECT_EQ(s.rip, 0x600u);
  EXPECT_EQ(s.rflags & IF, 0u);
  EXPECT_EQ(m.ram.get<uint16_t>(0x7BFA), 0x502);  // the return IP
  m.core.run(1);
  EXPECT_EQ(s.rip, 0x502u);
  EXPECT_EQ(s.gpr[RSP], 0x7C00u);
  EXPECT_TRUE(s.rflags & IF);
}

namespace {
// A local APIC as the core sees it: x2APIC MSRs and CR8 as the TPR.
struct TestApic : MsrDevice {
  uint64_t tpr = 0;
  bool read_msr(uint32_t msr, uint64_t& value) override {
    if (msr != 0x808) return false;
    value = tpr;
    return true;
  }
  bool write_msr(uint32_t msr, uint64_t value) override {
    if (msr != 0x808) return false;
    tpr = value;
    return true;
  }
  uint32_t cpuid_leaf1_ecx() const override { return 1u << 21; }
  void write_cr8(uint64_t value) override { tpr = value << 4; }
  bool read_cr8(uint64_t& value) override {
    value = tpr >> 4;
    return true;
  }
};
}  // namespace

TEST(MsrDevice, X2apicMsrsCr8AndCpuidComeFromTheDevice) {
  Fixture m(true);
  TestApic apic;
  m.config.msr_device = &apic;
  m.reg(RCX) = 0x808;
  m.reg(RAX) = 0x50;
  m.reg(RDX) = 0;
  m.load_code(0x5000, {0x0F, 0x30, 0x44, 0x0F, 0x20, 0xC3});  // WRMSR (x2APIC TPR); MOV RBX, CR8
  m.core.run(2);
  EXPECT_EQ(apic.tpr, 0x50u);
  EXPECT_EQ(m.reg(RBX), 5u) << "CR8 is TPR[7:4]";
  m.reg(RAX) = 1;
  m.load_code(0x5000, {0x0F, 0xA2});
  m.core.run(1);
  EXPECT_TRUE(m.reg(RCX) & (1u << 21)) << "x2APIC advertised because the device provides it";
  EXPECT_FALSE(m.reg(RCX) & (1u << 24));
}

// SMAP with CLAC/STAC, protection keys (PKRU, IA32_PKRS), the debug registers (instruction, data
// and I/O breakpoints, single step, RF, DR7.GD), NMI blocking, the boot-time MSRs and LA57
// canonicality, through the core, from the Intel SDM (vol. 3, 4.6, 6.7.1, ch. 18; vol. 4).
#include <gtest/gtest.h>

#include "isa/system/events.h"
#include "system_harness.h"

using namespace pgsim::isa;
using namespace pgsim::test;

namespace {

constexpr uint64_t P = 1, RW = 2, US = 4, PS = 0x80;
constexpr uint64_t kPml4 = 0x100000, kPdpt = 0x101000, kPd = 0x102000, kPt = 0x103000;
constexpr uint64_t kUserPage = 0x401000, kSupervisorPage = 0x402000;  // data pages
constexpr uint64_t kKeyShift = kProtectionKeyShift;

// Long mode at CPL 0 with 4-level paging: the first 2 MiB supervisor (code, stacks, tables), a
// user data page and a supervisor data page at 4 MiB; exception handlers loop in place.
struct PagedMachine : SystemMachine {
  WalkingTranslator walker{ram};
  PagedMachine() : SystemMachine(true) {
    core.set_translator(&walker);
    ram.put<uint64_t>(kPml4, kPdpt | P | RW | US);
    ram.put<uint64_t>(kPdpt, kPd | P | RW | US);
    ram.put<uint64_t>(kPd, 0 | P | RW | PS);
    ram.put<uint64_t>(kPd + 8 * 2, kPt | P | RW | US);
    ram.put<uint64_t>(kPt + 8 * 1, kUserPage | P | RW | US);
    ram.put<uint64_t>(kPt + 8 * 2, kSupervisorPage | P | RW);
    state().cr3 = kPml4;
    for (uint8_t v : {DB, NMI, UD, GP, PF_}) {
      handler(v);
      ram.load(kHandler + v * 16u, {0xEB, 0xFE});
    }
    core.sync_mode();
  }
  void set_key(uint64_t page, uint64_t key) {
    const uint64_t slot = kPt + 8 * ((page >> 12) & 0x1FF);
    ram.put<uint64_t>(slot, (ram.get<uint64_t>(slot) & ~(0xFull << kKeyShift)) | key << kKeyShift);
  }
  // Runs `code` at kCode for `n` instructions; returns the vector taken (0xFF: none).
  uint8_t run(const std::vector<uint8_t>& code, uint64_t n) {
    load_code(kCode, code);
    const uint64_t events = core.counters().events;
    core.run(n);
    if (core.counters().events == events) return 0xFF;
    return static_cast<uint8_t>((state().rip - kHandler) / 16);
  }
  // The 8-byte slot `slot` of the handler's frame (0: the error code, or RIP without one).
  uint64_t frame(unsigned slot) { return stack<uint64_t>(reg(RSP) + 8 * slot); }
};

const std::vector<uint8_t> kReadRbx = {0x8A, 0x03};                 // MOV AL, [RBX]
const std::vector<uint8_t> kReadRbxToDl = {0x8A, 0x13};             // MOV DL, [RBX] (the page holds 0)
const std::vector<uint8_t> kWriteRbx = {0x88, 0x03};                // MOV [RBX], AL
std::vector<uint8_t> operator+(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
const std::vector<uint8_t> kClac = {0x0F, 0x01, 0xCA}, kStac = {0x0F, 0x01, 0xCB};
const std::vector<uint8_t> kWrpkru = {0x0F, 0x01, 0xEF}, kRdpkru = {0x0F, 0x01, 0xEE};
const std::vector<uint8_t> kRdmsr = {0x0F, 0x32}, kWrmsr = {0x0F, 0x30}, kNop = {0x90};

}  // namespace

// ---- SMAP -------------------------------------------------------------------------------------

TEST(Smap, ClacStacDecideSupervisorAccessesToUserPagesAndNoCachedEntryBypassesThem) {
  PagedMachine m;
  m.state().cr4 |= CR4_SMAP;
  m.reg(RBX) = kUserPage;
  // STAC; MOV AL,[RBX] (allowed, and now in the soft TLB); CLAC; MOV AL,[RBX] (#PF).
  EXPECT_EQ(m.run(kStac + kReadRbx + kClac + kReadRbx, 4), PF_);
  EXPECT_EQ(m.frame(0), uint64_t(PFERR_P));
  EXPECT_EQ(m.frame(1), kCode + 3 + 2 + 3) << "the second read faults";
  EXPECT_EQ(m.state().cr2, kUserPage);
}

TEST(Smap, ClacAndStacAreUndefinedAtCpl3) {
  PagedMachine m;
  m.ram.put<uint64_t>(kPd, 0 | P | RW | US | PS);  // user code
  m.load_code(kCode, kClac);
  m.enter_user(kCode, 0x1000);
  m.core.run(1);
  EXPECT_EQ(m.state().rip, kHandler + UD * 16);
}

TEST(Smap, ImplicitSupervisorAccessIgnoresAc) {
  PagedMachine m;
  m.state().cr4 |= CR4_SMAP;
  m.state().rflags |= AC;
  m.core.sync_mode();
  EXPECT_THROW(m.core.read_linear(kUserPage, 8, AccessOrigin::ImplicitSupervisor), Fault);
  EXPECT_NO_THROW(m.core.read_linear(kUserPage, 8, AccessOrigin::Instruction));
}

// ---- Protection keys ----------------------------------------------------------------------------

TEST(ProtectionKeys, PkruWriteDisableFaultsUserWritesWithThePkBit) {
  PagedMachine m;
  m.state().cr4 |= CR4_PKE;
  m.set_key(kUserPage, 5);
  m.ram.put<uint64_t>(kPd, 0 | P | RW | US | PS);  // user code
  m.reg(RAX) = 2u << (2 * 5);                      // key 5: write-disable
  m.reg(RCX) = m.reg(RDX) = 0;
  m.load_code(kCode, kWrpkru);
  m.core.run(1);                                   // at CPL 0
  EXPECT_EQ(m.state().pkru, 2u << 10);
  m.load_code(kCode, kReadRbx + kWriteRbx);
  m.enter_user(kCode, 0x1000);
  m.reg(RBX) = kUserPage;
  m.core.run(2);
  EXPECT_EQ(m.state().rip, kHandler + PF_ * 16);
  EXPECT_EQ(m.frame(0), uint64_t(PFERR_P | PFERR_W | PFERR_U | PFERR_PK));
  EXPECT_EQ(m.frame(1), kCode + 2) << "the read passed, the write faulted";
}

TEST(ProtectionKeys, WrpkruDropsCachedTranslationsAndAccessDisableStopsSupervisorReads) {
  PagedMachine m;
  m.state().cr4 |= CR4_PKE;
  m.state().rflags |= AC;  // no SMAP: the supervisor may read user pages
  m.set_key(kUserPage, 1);
  m.reg(RBX) = kUserPage;
  m.reg(RAX) = 1u << 2;  // key 1: access-disable
  m.reg(RCX) = m.reg(RDX) = 0;
  EXPECT_EQ(m.run(kReadRbxToDl + kWrpkru + kReadRbxToDl, 3), PF_);
  EXPECT_EQ(m.frame(0), uint64_t(PFERR_P | PFERR_PK));
  EXPECT_EQ(m.frame(1), kCode + 5);
}

TEST(ProtectionKeys, SupervisorWriteDisableNeedsWp) {
  PagedMachine m;
  m.state().cr4 |= CR4_PKE;
  m.state().cr0 &= ~uint64_t(CR0_WP);
  m.state().pkru = 2u << 2;  // key 1: write-disable
  m.set_key(kUserPage, 1);
  m.reg(RBX) = kUserPage;
  EXPECT_EQ(m.run(kWriteRbx, 1), 0xFF) << "CR0.WP = 0: supervisor writes ignore WD";
  m.state().cr0 |= CR0_WP;
  EXPECT_EQ(m.run(kWriteRbx, 1), PF_);
  EXPECT_EQ(m.frame(0), uint64_t(PFERR_P | PFERR_W | PFERR_PK));
}

TEST(ProtectionKeys, PksGuardsSupervisorPagesThroughIa32Pkrs) {
  PagedMachine m;
  m.state().cr4 |= CR4_PKS;
  m.set_key(kSupervisorPage, 3);
  m.reg(RBX) = kSupervisorPage;
  m.reg(RCX) = MSR_PKRS;
  m.reg(RAX) = 1u << 6;  // key 3: access-disable
  m.reg(RDX) = 0;
  EXPECT_EQ(m.run(kReadRbxToDl + kWrmsr + kReadRbxToDl, 3), PF_);
  EXPECT_EQ(m.frame(0), uint64_t(PFERR_P | PFERR_PK));
  EXPECT_EQ(m.frame(1), kCode + 4);
}

TEST(ProtectionKeys, RdpkruNeedsPkeAndWrpkruZeroEcxEdx) {
  PagedMachine m;
  EXPECT_EQ(m.run(kRdpkru, 1), UD);
  m.state().cr4 |= CR4_PKE;
  m.reg(RCX) = 1;
  EXPECT_EQ(m.run(kWrpkru, 1), GP);
  m.reg(RCX) = 0;
  m.reg(RDX) = 1;
  EXPECT_EQ(m.run(kWrpkru, 1), GP);
  m.state().pkru = 0x1234;
  m.reg(RDX) = 7;
  EXPECT_EQ(m.run(kRdpkru, 1), 0xFF);
  EXPECT_EQ(m.reg(RAX), 0x1234u);
  EXPECT_EQ(m.reg(RDX), 0u);
}

// ---- Debug registers ----------------------------------------------------------------------------

TEST(DebugRegisters, InstructionBreakpointFaultsWithRfClearAndRfPassesItOnce) {
  PagedMachine m;
  m.state().dr[0] = kCode + 1;
  m.state().dr[7] = 0x400 | 0x1;  // L0, execute
  EXPECT_EQ(m.run(kNop + kNop + kNop, 3), DB);
  EXPECT_EQ(m.frame(0), kCode + 1) << "a fault: RIP of the breakpoint's instruction";
  EXPECT_EQ(m.frame(2) & RF, 0u);
  EXPECT_EQ(m.state().dr[6] & 0xE00F, 0x1u);
  // Returning with RF set executes the instruction once without the breakpoint; RF then clears.
  m.state().rip = kCode + 1;
  m.state().rflags |= RF;
  m.core.sync_mode();
  m.core.run(1);
  EXPECT_EQ(m.state().rip, kCode + 2);
  m.core.run(1);
  EXPECT_EQ(m.state().rflags & RF, 0u);
  m.state().rip = kCode + 1;
  m.core.run(1);
  EXPECT_EQ(m.state().rip, kHandler + DB * 16) << "RF clear again: the breakpoint fires";
}

TEST(DebugRegisters, DataBreakpointTrapsAfterAnOverlappingWriteOnly) {
  PagedMachine m;
  m.state().dr[1] = kSupervisorPage + 0x10;
  m.state().dr[7] = 0x400 | (0x4) | (0x1u << 20) | (0x3u << 22);  // L1, write, 4 bytes
  m.reg(RBX) = kSupervisorPage + 0x10;
  m.reg(RSI) = kSupervisorPage + 0x14;
  // MOV [RSI],EAX (next to it); MOV EAX,[RBX] (a read); MOV [RBX],AL (a write: trap); NOP.
  const std::vector<uint8_t> code = {0x89, 0x06, 0x8B, 0x03, 0x88, 0x03, 0x90};
  EXPECT_EQ(m.run(code, 4), DB);
  EXPECT_EQ(m.frame(0), kCode + 6) << "a trap: RIP after the write";
  EXPECT_EQ(m.state().dr[6] & 0xE00F, 0x2u);
}

TEST(DebugRegisters, ReadWriteBreakpointSeesReadsAndIoBreakpointSeesPorts) {
  PagedMachine m;
  m.state().dr[2] = kSupervisorPage + 0x20;
  m.state().dr[7] = 0x400 | (0x1u << 4) | (0x3u << 24);  // L2, read/write, 1 byte
  m.reg(RBX) = kSupervisorPage + 0x20;
  EXPECT_EQ(m.run(kReadRbx + kNop, 2), DB);
  EXPECT_EQ(m.state().dr[6] & 0xF, 0x4u);
  m.state().dr[6] = kDr6Fixed1;
  m.state().cr4 |= CR4_DE;
  m.state().dr[3] = 0x80;
  m.state().dr[7] = 0x400 | (0x1u << 6) | (0x2u << 28);  // L3, I/O, 1 byte
  EXPECT_EQ(m.run({0xE6, 0x80, 0x90}, 2), DB);  // OUT 0x80, AL
  EXPECT_EQ(m.frame(0), kCode + 2);
  EXPECT_EQ(m.state().dr[6] & 0xF, 0x8u);
}

TEST(DebugRegisters, SingleStepSetsBsAndMovDrWithGdFaultsWithBd) {
  PagedMachine m;
  m.state().rflags |= TF;
  m.core.sync_mode();
  EXPECT_EQ(m.run(kNop + kNop, 2), DB);  // the NOP, then the trap
  EXPECT_EQ(m.frame(0), kCode + 1);
  EXPECT_EQ(m.state().dr[6] & 0xE00F, uint64_t(DR6_BS));
  m.state().rflags &= ~uint64_t(TF);
  m.state().dr[6] = kDr6Fixed1;
  m.state().dr[7] = 0x400 | DR7_GD;
  EXPECT_EQ(m.run({0x0F, 0x21, 0xC0}, 1), DB);  // MOV RAX, DR0
  EXPECT_EQ(m.frame(0), kCode) << "a fault: the MOV itself";
  EXPECT_EQ(m.frame(2) & RF, uint64_t(RF)) << "a fault other than an instruction breakpoint saves RF = 1";
  EXPECT_EQ(m.state().dr[6] & 0xE00F, uint64_t(DR6_BD));
  EXPECT_EQ(m.state().dr[7], 0x400u) << "GD cleared for the handler";
}

TEST(DebugRegisters, Dr4IsUndefinedWithDeAndFaultFramesCarryRf) {
  PagedMachine m;
  m.state().cr4 |= CR4_DE;
  EXPECT_EQ(m.run({0x0F, 0x23, 0xE0}, 1), UD);  // MOV DR4, RAX
  EXPECT_EQ(m.frame(2) & RF, uint64_t(RF));
  m.state().cr4 &= ~uint64_t(CR4_DE);
  m.reg(RAX) = 0x1;
  EXPECT_EQ(m.run({0x0F, 0x23, 0xE0}, 1), 0xFF);  // DR4 aliases DR6
  EXPECT_EQ(m.state().dr[6], kDr6Fixed1 | 1);
}

// ---- NMI ------------------------------------------------------------------------------------------

namespace {
struct NmiPin : InterruptSource {
  unsigned pending = 0, accepted = 0;
  bool interrupt_pending() override { return false; }
  uint8_t acknowledge_interrupt() override { return 0; }
  bool nmi_pending() override { return pending > 0; }
  void acknowledge_nmi() override { --pending, ++accepted; }
};
}  // namespace

TEST(Nmi, BlockedFromDeliveryUntilTheNextIret) {
  PagedMachine m;
  NmiPin pin;
  m.core.set_interrupt_source(&pin);
  m.ram.load(kHandler + NMI * 16, {0x90, 0x90, 0x48, 0xCF});  // NOP; NOP; IRETQ
  m.load_code(kCode, kNop + kNop + kNop + kNop);
  pin.pending = 2;
  m.core.notify_interrupt();
  m.core.run(1);  // the NMI, then the handler's first NOP
  EXPECT_EQ(pin.accepted, 1u);
  EXPECT_TRUE(m.state().nmi_blocked);
  m.core.run(2);  // NOP, IRETQ: the second NMI waited
  EXPECT_EQ(pin.accepted, 1u);
  EXPECT_EQ(m.state().rip, kCode);
  m.core.run(1);  // IRET ended the blocking: the second NMI comes in
  EXPECT_EQ(pin.accepted, 2u);
  EXPECT_EQ(m.state().rip, kHandler + NMI * 16 + 1);
}

// ---- MSRs and CPUID -----------------------------------------------------------------------------

namespace {
// RDMSR (write = false) or WRMSR of `msr`; returns the vector raised (0xFF: none).
uint8_t msr_access(PagedMachine& m, uint32_t msr, bool write, uint64_t value = 0) {
  m.reg(RCX) = msr;
  m.reg(RAX) = static_cast<uint32_t>(value);
  m.reg(RDX) = value >> 32;
  return m.run(write ? kWrmsr : kRdmsr, 1);
}
uint64_t msr_value(PagedMachine& m) { return (m.reg(RDX) << 32) | static_cast<uint32_t>(m.reg(RAX)); }
}  // namespace

TEST(BootMsrs, MiscEnableMtrrsAndPlatformIdReadAsDocumented) {
  PagedMachine m;
  EXPECT_EQ(msr_access(m, MSR_MISC_ENABLE, false), 0xFF);
  EXPECT_EQ(msr_value(m), 0x1801u) << "fast strings; BTS and PEBS unavailable";
  EXPECT_EQ(msr_access(m, MSR_MTRRCAP, false), 0xFF);
  EXPECT_EQ(msr_value(m), 0x508u) << "8 variable ranges, fixed ranges, write-combining";
  EXPECT_EQ(msr_access(m, MSR_PLATFORM_ID, false), 0xFF);
  EXPECT_EQ(msr_access(m, MSR_PLATFORM_ID, true, 0), GP) << "read-only";
  EXPECT_EQ(msr_access(m, MSR_MTRR_DEF_TYPE, true, 0xC06), 0xFF);
  EXPECT_EQ(msr_access(m, MSR_MTRR_DEF_TYPE, false), 0xFF);
  EXPECT_EQ(msr_value(m), 0xC06u);
  EXPECT_EQ(msr_access(m, MSR_MTRR_DEF_TYPE, true, 0xC02), GP) << "type 2 is reserved";
  EXPECT_EQ(msr_access(m, MSR_MTRR_PHYS_BASE0 + 1, true, 0x1), GP) << "PHYSMASK bit 0 is reserved";
  EXPECT_EQ(msr_access(m, MSR_MTRR_FIX4K_C0000 + 7, true, 0x0606060606060606), 0xFF);
  EXPECT_EQ(msr_access(m, MSR_MISC_ENABLE, true, 0x1801 | (1ull << 3)), GP) << "reserved bit";
  EXPECT_EQ(msr_access(m, MSR_MISC_ENABLE, true, 0x1), GP) << "read-only bits must keep their value";
  EXPECT_EQ(msr_access(m, 0x12345678, false), GP) << "an unknown MSR";
}

TEST(BootMsrs, LimitCpuidMaxvalCapsTheBasicLeaves) {
  PagedMachine m;
  EXPECT_EQ(msr_access(m, MSR_MISC_ENABLE, true, 0x1801 | (1ull << 22)), 0xFF);
  m.reg(RAX) = 0;
  EXPECT_EQ(m.run({0x0F, 0xA2}, 1), 0xFF);
  EXPECT_EQ(m.reg(RAX), 2u);
}

// ---- LA57 canonicality --------------------------------------------------------------------------

TEST(La57, DescriptorTableBasesAndSegmentBaseMsrsFollowTheLinearAddressWidth) {
  PagedMachine m;
  const uint64_t base57 = 0x00FF800000000000ull;  // canonical with 57 bits, not with 48
  m.ram.put<uint16_t>(0x3000, 0xFFF);
  m.ram.put<uint64_t>(0x3002, base57);
  m.reg(RBX) = 0x3000;
  EXPECT_EQ(m.run({0x0F, 0x01, 0x13}, 1), GP);  // LGDT [RBX]
  EXPECT_EQ(msr_access(m, MSR_FS_BASE, true, base57), GP);
  // 5-level paging: a PML5 whose first entry is the PML4.
  m.ram.put<uint64_t>(0x104000, kPml4 | P | RW | US);
  m.state().cr3 = 0x104000;
  m.state().cr4 |= CR4_LA57;
  m.core.sync_mode();
  EXPECT_EQ(msr_access(m, MSR_FS_BASE, true, base57), 0xFF);
  EXPECT_EQ(m.state().seg[FS].base, base57);
  const DescriptorTableReg gdtr = m.state().gdtr;
  EXPECT_EQ(m.run({0x0F, 0x01, 0x13}, 1), 0xFF);
  EXPECT_EQ(m.state().gdtr.base, base57);
  m.state().gdtr = gdtr;
}

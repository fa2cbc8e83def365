// Faults that handlers raise without a C++ exception (Core::raise): a page fault on a MOV, the #UD of
// SYSCALL with EFER.SCE clear and the #DE of DIV reach the guest's handler as a thrown fault would,
// and no exception is thrown for them inside the run loop; outside it, or under a call into the
// trap hook, the fault is thrown, as callers of semantics there expect.
// The program is linked with -Wl,--wrap=__cxa_throw, so that every C++ exception it throws is
// counted here.
#include <gtest/gtest.h>

#include <cstdint>

#include "isa/decoder.h"
#include "isa/dispatch.h"
#include "isa/system/paging.h"
#include "isa/system/profile.h"
#include "isa/system/system_config.h"
#include "system_harness.h"

namespace {
uint64_t exceptions_thrown = 0;
}  // namespace

extern "C" {
[[noreturn]] void __real___cxa_throw(void* object, void* type, void (*destructor)(void*));
[[noreturn]] void __wrap___cxa_throw(void* object, void* type, void (*destructor)(void*)) {
  ++exceptions_thrown;
  __real___cxa_throw(object, type, destructor);
}
}

using namespace pgsim::isa;
using namespace pgsim::test;

namespace {

constexpr uint64_t P = 1, RW = 2, US = 4, PS = 0x80;
constexpr uint64_t kUserPage = 0x401000;  // user code; user data at 0x402000; 0x403000 is not present
constexpr uint64_t kData = 0x402010, kAbsent = 0x403010;

// Long mode with 4-level paging: the kernel's first 2 MiB identity-mapped, one user code page.
struct PagedMachine : SystemMachine {
  WalkingTranslator walker{ram};
  PagedMachine() : SystemMachine(true) {
    core.set_translator(&walker);
    const uint64_t pml4 = 0x100000, pdpt = 0x101000, pd = 0x102000, pt = 0x103000;
    ram.put<uint64_t>(pml4, pdpt | P | RW | US);
    ram.put<uint64_t>(pdpt, pd | P | RW | US);
    ram.put<uint64_t>(pd, 0 | P | RW | PS);
    ram.put<uint64_t>(pd + 8 * 2, pt | P | RW | US);
    ram.put<uint64_t>(pt + 8 * 1, kUserPage | P | RW | US);
    ram.put<uint64_t>(pt + 8 * 2, 0x402000 | P | RW | US);
    state().cr3 = pml4;
  }
  // User code at kUserPage; every handler is a JMP to itself.
  void user_code(const std::vector<uint8_t>& code) {
    for (uint8_t v : {DE, UD, PF_}) {
      handler(v);
      ram.load(kHandler + v * 16u, {0xEB, 0xFE});
    }
    ram.load(kUserPage, code);
    core.invalidate_decoded(kUserPage, code.size());
    enter_user(kUserPage, 0x401F00);
  }
};

TEST(RaisedFault, APageFaultOnAMovLoadReachesTheGuestWithoutAnException) {
  PagedMachine m;
  // MOV ECX, 2; L: DEC ECX; MOV RAX, [RBX]; LEA RBX, [RBX + RDX]; JNZ L. The second pass, which the
  // block loop links, loads from the page that is not present.
  m.user_code({0xB9, 0x02, 0, 0, 0, 0xFF, 0xC9, 0x48, 0x8B, 0x03, 0x48, 0x8D, 0x1C, 0x13, 0x75, 0xF5});
  m.ram.put<uint64_t>(kData, 0xABCD);
  m.reg(RBX) = kData;
  m.reg(RDX) = kAbsent - kData;
  const uint64_t thrown = exceptions_thrown;
  EXPECT_EQ(m.core.run(7), 7u);  // 6 before the fault, then the handler's JMP
  EXPECT_EQ(exceptions_thrown - thrown, 0u);
  EXPECT_EQ(m.state().rip, kHandler + PF_ * 16);
  EXPECT_EQ(m.state().cr2, kAbsent);
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP)), uint64_t{PFERR_U}) << "a user read of a page not present";
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP) + 8), kUserPage + 7) << "the faulting MOV";
  EXPECT_EQ(m.reg(RAX), 0xABCDu) << "the first pass's load; the second did not complete";
  EXPECT_EQ(m.core.counters().retired_user, 6u);
  EXPECT_EQ(m.core.counters().retired_kernel, 1u);
  EXPECT_EQ(m.core.counters().by_class[static_cast<unsigned>(InsnClass::Alu)], 4u);
  EXPECT_EQ(m.core.counters().by_class[static_cast<unsigned>(InsnClass::Load)], 1u);
  EXPECT_EQ(m.core.counters().by_class[static_cast<unsigned>(InsnClass::Branch)], 2u);
  EXPECT_EQ(m.core.last_fault().vector, PF_);
}

// Each access the common faults come from, at CPL 3 into the page that is not present: the #PF
// reaches the guest's handler with the instruction restartable, and no C++ exception is thrown.
struct FaultingAccess {
  const char* what;
  std::vector<uint8_t> code;
  uint64_t rsp, rdi, rsi, rbx;
  uint32_t error_code;
  uint64_t cr2;
};

TEST(RaisedFault, EachCommonAccessRaisesItsPageFaultWithoutAnException) {
  const uint64_t user_rsp = 0x401F00;
  const std::vector<FaultingAccess> cases = {
      {"a fetch (JMP into the page)", {0xE9, 0xFB, 0x1F, 0, 0}, user_rsp, 0, 0, 0, PFERR_U | PFERR_I, 0x403000},
      {"REP STOSQ", {0xF3, 0x48, 0xAB}, user_rsp, kAbsent, 0, 0, PFERR_W | PFERR_U, kAbsent},
      {"REP MOVSQ's read", {0xF3, 0x48, 0xA5}, user_rsp, kData, kAbsent, 0, PFERR_U, kAbsent},
      {"REP MOVSQ's write", {0xF3, 0x48, 0xA5}, user_rsp, kAbsent, kData, 0, PFERR_W | PFERR_U, kAbsent},
      {"LODSQ", {0x48, 0xAD}, user_rsp, 0, kAbsent, 0, PFERR_U, kAbsent},
      {"REPE CMPSQ", {0xF3, 0x48, 0xA7}, user_rsp, kAbsent, kData, 0, PFERR_U, kAbsent},
      {"REPNE SCASQ", {0xF2, 0x48, 0xAF}, user_rsp, kAbsent, 0, 0, PFERR_U, kAbsent},
      {"PUSH RAX", {0x50}, kAbsent + 8, 0, 0, 0, PFERR_W | PFERR_U, kAbsent},
      {"PUSH imm8", {0x6A, 0x01}, kAbsent + 8, 0, 0, 0, PFERR_W | PFERR_U, kAbsent},
      {"POP RAX", {0x58}, kAbsent, 0, 0, 0, PFERR_U, kAbsent},
      {"CALL rel32", {0xE8, 0, 0, 0, 0}, kAbsent + 8, 0, 0, 0, PFERR_W | PFERR_U, kAbsent},
      {"RET", {0xC3}, kAbsent, 0, 0, 0, PFERR_U, kAbsent},
      {"JMP [RBX]", {0xFF, 0x23}, user_rsp, 0, 0, kAbsent, PFERR_U, kAbsent},
      {"CALL [RBX]", {0xFF, 0x13}, user_rsp, 0, 0, kAbsent, PFERR_U, kAbsent},
  };
  for (const FaultingAccess& a : cases) {
    SCOPED_TRACE(a.what);
    PagedMachine m;
    m.state().efer |= EFER_NXE;
    m.user_code(a.code);
    m.ram.put<uint64_t>(kData, 0x1111);
    m.reg(RSP) = a.rsp;
    m.reg(RDI) = a.rdi;
    m.reg(RSI) = a.rsi;
    m.reg(RBX) = a.rbx;
    m.reg(RAX) = 0x1111;
    m.reg(RCX) = 4;
    const uint64_t thrown = exceptions_thrown;
    const CpuState before = m.state();
    const uint64_t taken = a.code[0] == 0xE9 ? 1 : 0;  // the JMP retires; the others do not
    EXPECT_EQ(m.core.run(taken + 1), taken + 1);
    EXPECT_EQ(exceptions_thrown - thrown, 0u);
    EXPECT_EQ(m.state().rip, kHandler + PF_ * 16);
    EXPECT_EQ(m.state().cr2, a.cr2);
    const uint64_t frame = m.reg(RSP);
    EXPECT_EQ(m.stack<uint64_t>(frame), uint64_t{a.error_code});
    EXPECT_EQ(m.stack<uint64_t>(frame + 8), taken ? 0x403000 : kUserPage) << "the faulting instruction";
    EXPECT_EQ(m.stack<uint64_t>(frame + 32), a.rsp) << "the user RSP, unchanged";
    for (unsigned r : {RAX, RCX, RSI, RDI, RBX}) EXPECT_EQ(m.reg(r), before.gpr[r]) << "register " << r;
  }
}

TEST(RaisedFault, APageFaultOnAMovStoreReachesTheGuestWithoutAnException) {
  PagedMachine m;
  m.user_code({0x48, 0x89, 0x03});  // MOV [RBX], RAX
  m.reg(RBX) = kAbsent;
  const uint64_t thrown = exceptions_thrown;
  m.core.run(1);
  EXPECT_EQ(exceptions_thrown - thrown, 0u);
  EXPECT_EQ(m.state().rip, kHandler + PF_ * 16);
  EXPECT_EQ(m.state().cr2, kAbsent);
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP)), uint64_t{PFERR_W | PFERR_U});
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP) + 8), kUserPage);
}

TEST(RaisedFault, ASystemCallWithSceClearIsAnInvalidOpcodeWithoutAnException) {
  PagedMachine m;
  m.state().efer &= ~uint64_t{EFER_SCE};
  m.user_code({0x0F, 0x05});  // SYSCALL
  m.reg(RCX) = 0x5555;
  const uint64_t thrown = exceptions_thrown;
  m.core.run(1);
  EXPECT_EQ(exceptions_thrown - thrown, 0u);
  EXPECT_EQ(m.state().rip, kHandler + UD * 16);
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP)), kUserPage) << "no error code: RIP of the SYSCALL";
  EXPECT_EQ(m.reg(RCX), 0x5555u);
}

TEST(RaisedFault, ADivideErrorReachesTheGuestWithoutAnException) {
  PagedMachine m;
  m.user_code({0x48, 0xF7, 0xF1});  // DIV RCX, RCX = 0
  m.reg(RAX) = 7;
  m.reg(RCX) = 0;
  const uint64_t thrown = exceptions_thrown;
  m.core.run(1);
  EXPECT_EQ(exceptions_thrown - thrown, 0u);
  EXPECT_EQ(m.state().rip, kHandler + DE * 16);
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP)), kUserPage);
  EXPECT_EQ(m.reg(RAX), 7u);
}

TEST(RaisedFault, OutsideTheRunLoopTheFaultIsThrown) {
  PagedMachine m;
  m.user_code({0x90, 0x48, 0xF7, 0xF1});  // NOP; DIV RCX
  m.reg(RCX) = 0;
  ASSERT_EQ(m.core.run(1), 1u);  // the core has run an instruction, and returned
  Decoder decoder(Dispatch::instance());
  const uint8_t bytes[] = {0x48, 0xF7, 0xF1};
  Insn insn;
  ASSERT_EQ(decoder.decode(Mode::Long64, bytes, sizeof bytes, insn), DecodeStatus::Ok);
  try {
    insn.semantics(m.core, insn);
    ADD_FAILURE() << "DIV by zero returned";
  } catch (const Fault& f) {
    EXPECT_EQ(f.vector, DE);
  }
}

// Marks DIV; before it executes, runs its semantics itself and catches what they throw (as a VMM
// completing an instruction for its guest does), or lets the core execute it and counts the calls
// of after_instruction.
class DivHook : public TrapHook {
 public:
  bool run_semantics = true;
  unsigned caught = ~0u, after_calls = 0;
  bool on_event(Core&, const Event&) override { return false; }
  bool wants_before(const Insn& insn, uint64_t) override { return insn.mnemonic == ZYDIS_MNEMONIC_DIV; }
  PreExecute before_instruction(Core& core, const Insn& insn) override {
    if (!run_semantics) return PreExecute::Execute;
    try {
      insn.semantics(core, insn);
    } catch (const Fault& f) {
      caught = f.vector;
      core.fault_before_execute(f);
      return PreExecute::Fault;
    }
    return PreExecute::Skip;
  }
  void after_instruction(Core&, const Insn&) override { ++after_calls; }
};

TEST(RaisedFault, UnderACallIntoTheTrapHookTheFaultIsThrownToTheHook) {
  PagedMachine m;
  DivHook hook;
  m.core.set_trap_hook(&hook, false);
  m.user_code({0x48, 0xF7, 0xF1});
  m.reg(RCX) = 0;
  m.core.run(1);
  EXPECT_EQ(hook.caught, unsigned{DE});
  EXPECT_EQ(m.state().rip, kHandler + DE * 16);
  EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP)), kUserPage);
}

TEST(RaisedFault, AMarkedInstructionThatRaisesGetsNoAfterInstructionCall) {
  PagedMachine m;
  DivHook hook;
  hook.run_semantics = false;
  m.core.set_trap_hook(&hook, false);
  m.user_code({0x48, 0xF7, 0xF1});
  m.reg(RCX) = 0;
  const uint64_t thrown = exceptions_thrown;
  m.core.run(1);
  EXPECT_EQ(exceptions_thrown - thrown, 0u);
  EXPECT_EQ(hook.after_calls, 0u);
  EXPECT_EQ(m.state().rip, kHandler + DE * 16);
  // The same DIV with a divisor completes, and the hook hears of it.
  m.enter_user(kUserPage, 0x401F00);
  m.reg(RCX) = 1;
  m.core.run(1);
  EXPECT_EQ(hook.after_calls, 1u);
}

}  // namespace

namespace {

TEST(RaisedFault, AReadOfWhatMayNotBeMappedSaysSoWithoutAnException) {
  PagedMachine m;
  m.core.sync_mode();
  m.ram.put<uint64_t>(kData, 0x5A5A);
  const uint64_t thrown = exceptions_thrown;
  uint64_t value = 0;
  EXPECT_TRUE(m.core.read_linear_if_mapped(kData, 8, AccessOrigin::ImplicitSupervisor, &value));
  EXPECT_EQ(value, 0x5A5Au);
  EXPECT_EQ(m.ram.get<uint64_t>(0x103000 + 8 * 2) & 0x20, 0x20u) << "the walk set the accessed flag";
  EXPECT_FALSE(m.core.read_linear_if_mapped(kAbsent, 8, AccessOrigin::ImplicitSupervisor, &value));
  EXPECT_EQ(exceptions_thrown - thrown, 0u);
  EXPECT_EQ(m.state().cr2, 0u) << "nothing delivered";
  // Across two pages the fault is thrown, as read_linear() throws it.
  EXPECT_THROW(m.core.read_linear_if_mapped(kAbsent - 0x14, 8, AccessOrigin::ImplicitSupervisor, &value), Fault);
}

}  // namespace

namespace {

// On x86-pg (the Popek-Goldberg variant) most sensitive instructions trap at CPL > 0: each of those
// #GPs, which a trap-and-emulate VMM takes, is raised without an exception, and leaves the machine
// as it was.
TEST(RaisedFault, TheProfilesTrapsAtCplAboveZeroNeedNoException) {
  const std::vector<std::pair<const char*, std::vector<uint8_t>>> cases = {
      {"IRETQ", {0x48, 0xCF}},        {"SGDT [RBX]", {0x0F, 0x01, 0x03}}, {"SMSW [RBX]", {0x0F, 0x01, 0x23}},
      {"MOV DS, AX", {0x8E, 0xD8}},   {"POP FS", {0x0F, 0xA1}},           {"LAR EAX, ECX", {0x0F, 0x02, 0xC1}},
      {"JMP FAR [RBX]", {0xFF, 0x2B}}, {"CALL FAR [RBX]", {0xFF, 0x1B}},   {"RETF", {0xCB}}};
  for (const auto& [what, code] : cases) {
    SCOPED_TRACE(what);
    PagedMachine m;
    SystemConfig config;
    SystemConfigBinding binding{m.core, config};
    config.profile = load_profile("x86-pg");
    m.handler(GP);
    m.ram.load(kHandler + GP * 16u, {0xEB, 0xFE});
    m.user_code(code);
    m.reg(RBX) = kData;
    m.reg(RAX) = 0x23;
    m.reg(RSP) = 0x402F00;
    const CpuState before = m.state();
    const uint64_t thrown = exceptions_thrown;
    EXPECT_EQ(m.core.run(1), 1u);  // the handler's JMP
    EXPECT_EQ(exceptions_thrown - thrown, 0u);
    EXPECT_EQ(m.state().rip, kHandler + GP * 16);
    EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP)), 0u) << "#GP(0)";
    EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP) + 8), kUserPage);
    EXPECT_EQ(m.stack<uint64_t>(m.reg(RSP) + 32), 0x402F00u) << "the user RSP, unchanged";
    EXPECT_EQ(m.ram.get<uint64_t>(kData), 0u) << "nothing stored";
    for (unsigned r : {RAX, RCX, RBX}) EXPECT_EQ(m.reg(r), before.gpr[r]) << "register " << r;
    EXPECT_EQ(m.state().seg[DS].selector, before.seg[DS].selector);
    EXPECT_EQ(m.state().seg[FS].selector, before.seg[FS].selector);
  }
}

}  // namespace

namespace {

// A REP that faults after some iterations: they count (cpu.string_iterations, and their cycles),
// as the iterations before a suspension do, whether the fault is raised or, for an element split
// across two pages, thrown.
TEST(RaisedFault, TheIterationsBeforeARepsFaultCount) {
  // Two elements in the present page, then one in the page not present, or across the two.
  for (const uint64_t rdi : {0x402FF0ull, 0x402FECull}) {
    SCOPED_TRACE(rdi);
    PagedMachine m;
    m.user_code({0xF3, 0x48, 0xAB});  // REP STOSQ
    m.reg(RDI) = rdi;
    m.reg(RCX) = 4;
    m.core.run(1);
    EXPECT_EQ(m.state().rip, kHandler + PF_ * 16);
    EXPECT_EQ(m.core.counters().string_iterations, 2u);
    EXPECT_EQ(m.reg(RCX), 2u);
    EXPECT_EQ(m.reg(RDI), rdi + 16);
  }
}

}  // namespace

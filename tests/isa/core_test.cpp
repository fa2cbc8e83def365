// The core framework: execution loop, counters, decode cache and self-modifying code,
// segmentation checks, soft TLB, unimplemented instructions and fault routing.
#include <gtest/gtest.h>

#include <random>

#include <Zydis/Zydis.h>

#include "isa/system/events.h"
#include "tests/isa/harness.h"

namespace pgsim::test {
namespace {

using namespace isa;


TEST(Core, CountedLoopRetiresExactlyAndCountsClasses) {
  Machine m;
  make_long64(m.state(), 3);
  // mov ecx, 1000; L: add rax, rcx; dec ecx; jnz L
  m.load_code(0x1000, {0xB9, 0xE8, 0x03, 0x00, 0x00, 0x48, 0x01, 0xC8, 0xFF, 0xC9, 0x75, 0xF9});
  EXPECT_EQ(m.core.run(1 + 3 * 1000), 3001u);
  EXPECT_EQ(m.reg(RAX), 500500u);
  EXPECT_EQ(m.reg(RCX), 0u);
  EXPECT_EQ(m.state().rip, 0x100Cu);
  const CoreCounters& c = m.core.counters();
  EXPECT_EQ(c.retired, 3001u);
  EXPECT_EQ(c.retired_user, 3001u);
  EXPECT_EQ(c.retired_kernel, 0u);
  EXPECT_EQ(c.by_class[static_cast<unsigned>(InsnClass::Alu)], 2001u);
  EXPECT_EQ(c.by_class[static_cast<unsigned>(InsnClass::Branch)], 1000u);
  EXPECT_EQ(c.decoded, 4u);  // each instruction decoded once
  EXPECT_EQ(m.translator.calls, 1u);  // one code page translated, then soft-TLB hits
}

TEST(Core, SelfModifyingCodeSeesTheNewInstruction) {
  Machine m;
  make_long64(m.state(), 0);
  // 0: mov eax, 1; 5: mov byte [rip-11], 7 (patches the immediate at 1); C: jmp 0
  m.load_code(0x2000, {0xB8, 0x01, 0x00, 0x00, 0x00, 0xC6, 0x05, 0xF5, 0xFF, 0xFF, 0xFF, 0x07, 0xEB, 0xF2});
  EXPECT_EQ(m.core.run(4), 4u);
  EXPECT_EQ(m.reg(RAX), 7u);
  EXPECT_EQ(m.state().rip, 0x2005u);
  EXPECT_GE(m.core.counters().smc_invalidations, 1u);
  EXPECT_EQ(m.core.counters().retired_kernel, 4u);
}

TEST(Core, StoreIntoTheSamePageAsRunningCodeIsSeenOnTheNextIteration) {
  Machine m;
  make_prot32(m.state(), 0);
  // A loop that increments the immediate of its own first instruction each time:
  // 0: mov ebx, 0 ; 5: add ecx, ebx ; 7: inc dword [0x3001] ; D: jmp 0
  m.load_code(0x3000, {0xBB, 0x00, 0x00, 0x00, 0x00, 0x01, 0xD9, 0xFF, 0x05, 0x01, 0x30, 0x00, 0x00, 0xEB, 0xF1});
  m.core.run(4 * 5);  // five iterations: ebx takes 0, 1, 2, 3, 4
  EXPECT_EQ(m.reg(RCX), 0u + 1 + 2 + 3 + 4);
  EXPECT_EQ(m.ram.get<uint32_t>(0x3001), 5u);
}

TEST(Core, CodeGeneratedByRepMovsIntoAnExecutedBufferIsReexecutedFresh) {
  Machine m;
  make_long64(m.state(), 0);
  m.reg(RSP) = 0x9000;
  // Two templates: mov eax, 1; ret  and  mov eax, 2; ret
  m.ram.load(0x6100, {0xB8, 0x01, 0x00, 0x00, 0x00, 0xC3, 0xB8, 0x02, 0x00, 0x00, 0x00, 0xC3});
  // Copy template 1 to 0x6200 (the caller's page), call it, keep EAX in EBX, then the same with
  // template 2 over the buffer that has already been executed (and decoded).
  m.load_code(0x6000, {0xBE, 0x00, 0x61, 0x00, 0x00, 0xBF, 0x00, 0x62, 0x00, 0x00, 0xB9, 0x06, 0x00, 0x00, 0x00,
                       0xF3, 0xA4, 0xE8, 0xEA, 0x01, 0x00, 0x00, 0x89, 0xC3,
                       0xBE, 0x06, 0x61, 0x00, 0x00, 0xBF, 0x00, 0x62, 0x00, 0x00, 0xB9, 0x06, 0x00, 0x00, 0x00,
                       0xF3, 0xA4, 0xE8, 0xD2, 0x01, 0x00, 0x00});
  EXPECT_EQ(m.core.run(15), 15u);
  EXPECT_EQ(m.state().rip, 0x602Eu);
  EXPECT_EQ(m.reg(RBX), 1u);
  EXPECT_EQ(m.reg(RAX), 2u);
  EXPECT_GE(m.core.counters().smc_invalidations, 2u);
}

TEST(Core, TheDecodeCacheKeepsOneDecodingPerMode) {
  Machine m;
  make_long64(m.state(), 0);
  // 48 FF C0: inc rax in 64-bit mode; dec eax then inc eax in 32-bit mode.
  m.load_code(0x1000, {0x48, 0xFF, 0xC0});
  m.reg(RAX) = 5;
  EXPECT_EQ(m.core.run(1), 1u);
  EXPECT_EQ(m.reg(RAX), 6u);
  make_prot32(m.state(), 0);
  m.state().rip = 0x1000;
  EXPECT_EQ(m.core.run(2), 2u);
  EXPECT_EQ(m.reg(RAX), 6u);
  EXPECT_EQ(m.state().rip, 0x1003u);
  make_long64(m.state(), 0);
  m.state().rip = 0x1000;
  EXPECT_EQ(m.core.run(1), 1u);
  EXPECT_EQ(m.reg(RAX), 7u);
  EXPECT_EQ(m.core.counters().decoded, 3u);  // inc rax once; dec eax and inc eax once
}

// Marks INC and counts its executions.
class IncHook : public TrapHook {
 public:
  unsigned calls = 0;
  bool on_event(Core&, const Event&) override { return false; }
  bool wants_before(const Insn& insn, uint64_t) override { return insn.mnemonic == ZYDIS_MNEMONIC_INC; }
  PreExecute before_instruction(Core&, const Insn&) override {
    ++calls;
    return PreExecute::Execute;
  }
};

// Code without a host pointer (here a device window) is read at every execution and decoded again
// only where its bytes or the mode differ from the last decode at that address; the trap hook
// marks it at every execution.
TEST(Core, CodeWithoutAHostPointerIsDecodedAgainOnlyWhenItsBytesChange) {
  Machine m;
  IncHook hook;
  m.core.set_trap_hook(&hook, false);
  std::vector<uint8_t> code = {0x48, 0xFF, 0xC0, 0xEB, 0xFB};  // inc rax; jmp -5
  m.ram.add_device(0x100000, 0x1000, {[&](uint64_t off, unsigned size) {
                                         uint64_t v = 0;
                                         for (unsigned k = 0; k < size; ++k)
                                           v |= uint64_t{off + k < code.size() ? code[off + k] : uint8_t{0x90}} << (8 * k);
                                         return v;
                                       },
                                       [](uint64_t, unsigned, uint64_t) {}});
  make_long64(m.state(), 0);
  m.state().rip = 0x100000;
  m.core.sync_mode();
  m.reg(RAX) = 0;
  EXPECT_EQ(m.core.run(10), 10u);
  EXPECT_EQ(m.reg(RAX), 5u);
  EXPECT_EQ(m.core.counters().decoded, 2u) << "each instruction once";
  EXPECT_EQ(hook.calls, 5u);
  code[2] = 0xC8;  // dec rax
  EXPECT_EQ(m.core.run(4), 4u);
  EXPECT_EQ(m.reg(RAX), 3u) << "the new bytes run";
  EXPECT_EQ(m.core.counters().decoded, 3u);
  // The same bytes in 32-bit mode are DEC EAX, then DEC EAX.
  make_prot32(m.state(), 0);
  m.state().rip = 0x100000;
  m.core.sync_mode();
  EXPECT_EQ(m.core.run(2), 2u);
  EXPECT_EQ(m.reg(RAX), 1u);
  EXPECT_EQ(m.core.counters().decoded, 5u);
}

TEST(Core, UnimplementedInstructionRaisesUdAndIsRecorded) {
  Machine m;
  make_long64(m.state(), 3);
  RecordingHook hook;
  m.core.set_trap_hook(&hook, false);
  m.load_code(0x4000, {0x90, 0xC5, 0xF4, 0x58, 0xC2});  // nop; vaddps ymm0, ymm1, ymm2 (AVX)
  EXPECT_EQ(m.core.run(10), 1u);
  ASSERT_EQ(hook.events.size(), 1u);
  EXPECT_EQ(hook.events[0].vector, UD);
  EXPECT_EQ(m.state().rip, 0x4001u);  // the fault leaves RIP at the instruction
  ASSERT_EQ(m.core.unimplemented().count("vaddps"), 1u);
  EXPECT_EQ(m.core.unimplemented().at("vaddps").first_address, 0x4001u);
  EXPECT_EQ(m.core.unimplemented().at("vaddps").count, 1u);
}

TEST(Core, DivideByZeroRaisesDeAtTheDivide) {
  Machine m;
  make_long64(m.state(), 3);
  RecordingHook hook;
  m.core.set_trap_hook(&hook, false);
  m.load_code(0x5000, {0x31, 0xC9, 0xF7, 0xF1});  // xor ecx, ecx; div ecx
  m.reg(RAX) = 77;
  EXPECT_EQ(m.core.run(10), 1u);
  ASSERT_EQ(hook.events.size(), 1u);
  EXPECT_EQ(hook.events[0].vector, DE);
  EXPECT_EQ(m.state().rip, 0x5002u);
  ASSERT_NE(m.core.current_insn(), nullptr);  // what a VMM would decode to emulate it
  EXPECT_EQ(m.core.current_insn()->length, 2u);
  EXPECT_EQ(m.core.current_insn()->cls, InsnClass::Div);
  EXPECT_EQ(m.reg(RAX), 77u);
}

TEST(Core, DataSegmentLimitRaisesGp) {
  Machine m;
  make_prot32(m.state(), 3);
  m.state().seg[DS].limit = 0xFFF;
  RecordingHook hook;
  m.core.set_trap_hook(&hook, false);
  m.load_code(0x1000, {0xA1, 0xFC, 0x0F, 0x00, 0x00, 0xA1, 0xFD, 0x0F, 0x00, 0x00});  // mov eax,[0xFFC]; mov eax,[0xFFD]
  m.ram.put<uint32_t>(0xFFC, 0x12345678);
  EXPECT_EQ(m.core.run(10), 1u);
  EXPECT_EQ(m.reg(RAX), 0x12345678u);
  ASSERT_EQ(hook.events.size(), 1u);
  EXPECT_EQ(hook.events[0].vector, GP);
  EXPECT_EQ(hook.events[0].error_code, 0u);
}

TEST(Core, ReadOnlyDataSegmentRejectsWritesAndStackFaultsAreSs) {
  Machine m;
  make_prot32(m.state(), 0);
  m.state().seg[DS].attr = seg_attr(0x1, 0, false, true, true);  // read-only data
  m.state().seg[SS].limit = 0x7FF;
  RecordingHook hook;
  m.core.set_trap_hook(&hook, false);
  m.load_code(0x1000, {0xA3, 0x00, 0x20, 0x00, 0x00});  // mov [0x2000], eax
  m.core.run(1);
  ASSERT_EQ(hook.events.size(), 1u);
  EXPECT_EQ(hook.events[0].vector, GP);
  hook.events.clear();
  m.reg(RSP) = 0x802;
  m.load_code(0x1100, {0x50});  // push eax: ESP-4 = 0x7FE, bytes 0x7FE..0x801 exceed SS.limit
  m.core.run(1);
  ASSERT_EQ(hook.events.size(), 1u);
  EXPECT_EQ(hook.events[0].vector, SS_);
  EXPECT_EQ(m.reg(RSP), 0x802u);
}

TEST(Core, NonCanonicalAccessRaisesGp) {
  Machine m;
  make_long64(m.state(), 0);
  RecordingHook hook;
  m.core.set_trap_hook(&hook, false);
  m.reg(RBX) = 0x0000800000000000ull;
  m.load_code(0x1000, {0x48, 0x8B, 0x03});  // mov rax, [rbx]
  m.core.run(1);
  ASSERT_EQ(hook.events.size(), 1u);
  EXPECT_EQ(hook.events[0].vector, GP);
}

TEST(Core, InstructionCrossingAPageBoundaryExecutes) {
  Machine m;
  make_long64(m.state(), 0);
  // mov rax, imm64 straddling 0x1FFC..0x2005, then nop.
  m.load_code(0x1FFC, {0x48, 0xB8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x90});
  EXPECT_EQ(m.core.run(2), 2u);
  EXPECT_EQ(m.reg(RAX), 0x1122334455667788ull);
  EXPECT_EQ(m.state().rip, 0x2007u);
}

TEST(Core, UnalignedAccessAcrossPagesUsesBothPages) {
  Machine m;
  make_long64(m.state(), 0);
  m.reg(RBX) = 0x7FFE;
  m.reg(RAX) = 0xA1B2C3D4E5F60718ull;
  m.load_code(0x1000, {0x48, 0x89, 0x03, 0x48, 0x8B, 0x0B});  // mov [rbx], rax; mov rcx, [rbx]
  EXPECT_EQ(m.core.run(2), 2u);
  EXPECT_EQ(m.reg(RCX), m.reg(RAX));
  EXPECT_EQ(m.ram.get<uint16_t>(0x7FFE), 0x0718u);
  EXPECT_EQ(m.ram.get<uint8_t>(0x8005), 0xA1u);
}

TEST(Core, DeviceMemoryGoesThroughTheBus) {
  Machine m;
  make_prot32(m.state(), 0);
  std::vector<std::pair<uint64_t, uint64_t>> writes;
  m.ram.add_device(0xFEC00000, 0x1000, {[](uint64_t off, unsigned) { return 0xAB000000u | off; },
                                        [&](uint64_t off, unsigned, uint64_t v) { writes.push_back({off, v}); }});
  // mov eax, [0xFEC00010]; mov [0xFEC00020], eax
  m.load_code(0x1000, {0xA1, 0x10, 0x00, 0xC0, 0xFE, 0xA3, 0x20, 0x00, 0xC0, 0xFE});
  EXPECT_EQ(m.core.run(2), 2u);
  EXPECT_EQ(m.reg(RAX), 0xAB000010u);
  ASSERT_EQ(writes.size(), 1u);
  EXPECT_EQ(writes[0].first, 0x20u);
  EXPECT_EQ(writes[0].second, 0xAB000010u);
}

TEST(Core, SoftTlbHitsAreCountedAndDropRemovesAnEntry) {
  Machine m;
  make_long64(m.state(), 3);
  m.reg(RBX) = 0x9000;
  m.load_code(0x1000, {0x48, 0x8B, 0x03, 0x48, 0x8B, 0x03, 0x48, 0x8B, 0x03});  // 3x mov rax, [rbx]
  m.core.run(3);
  EXPECT_EQ(m.core.counters().dtlb_misses, 1u);
  EXPECT_EQ(m.core.counters().dtlb_hits, 2u);
  EXPECT_EQ(m.core.counters().itlb_misses, 1u);
  EXPECT_EQ(m.core.counters().itlb_hits, 2u);
  m.core.drop_soft_tlb(0x9000);
  m.load_code(0x1000, {0x48, 0x8B, 0x03});
  m.core.run(1);
  EXPECT_EQ(m.core.counters().dtlb_misses, 2u);
}

// An L1 data TLB's eviction drops the page's data entries only, an instruction TLB's its execute
// entries only: a page that holds both code and data keeps the other kind.
TEST(Core, ADroppedPartOfTheSoftTlbLeavesTheOtherKind) {
  Machine m;
  make_long64(m.state(), 3);
  m.reg(RBX) = 0x1800;  // data in the code's page
  const std::vector<uint8_t> loads = {0x48, 0x8B, 0x03, 0x48, 0x8B, 0x03};  // 2x mov rax, [rbx]
  m.load_code(0x1000, loads);
  m.core.run(2);
  ASSERT_EQ(m.core.counters().dtlb_misses, 1u);
  ASSERT_EQ(m.core.counters().itlb_misses, 1u);

  m.core.drop_soft_tlb(0x1000, SoftTlbPart::Data);
  m.load_code(0x1000, loads);
  m.core.run(2);
  EXPECT_EQ(m.core.counters().dtlb_misses, 2u);
  EXPECT_EQ(m.core.counters().itlb_misses, 1u);

  m.core.drop_soft_tlb(0x1000, SoftTlbPart::Code);
  m.load_code(0x1000, loads);
  m.core.run(2);
  EXPECT_EQ(m.core.counters().dtlb_misses, 2u);
  EXPECT_EQ(m.core.counters().itlb_misses, 2u);

  m.core.drop_soft_tlb(0x1000, SoftTlbPart::All);
  m.load_code(0x1000, loads);
  m.core.run(2);
  EXPECT_EQ(m.core.counters().dtlb_misses, 3u);
  EXPECT_EQ(m.core.counters().itlb_misses, 3u);
}

TEST(Core, RunStopsOnRequestAndReportsRetired) {
  class StopAfter : public TrapHook {
   public:
    bool on_event(Core&, const Event&) override { return false; }
    void on_instruction_boundary(Core& core) override {
      if (++boundaries == 5) core.request_stop();
    }
    int boundaries = 0;
  } hook;
  Machine m;
  make_long64(m.state(), 0);
  m.load_code(0x1000, {0xEB, 0xFE});  // jmp $
  m.core.set_trap_hook(&hook, true);
  EXPECT_EQ(m.core.run(100), 4u);
}


// An interrupt controller with one pending vector until acknowledged.
class OneInterrupt : public InterruptSource {
 public:
  bool interrupt_pending() override {
    ++polls;
    return pending;
  }
  uint8_t acknowledge_interrupt() override {
    pending = false;
    ++acks;
    return 0x40;
  }
  bool pending = true;
  int polls = 0, acks = 0;
};

TEST(Core, InterruptsWaitForIfAndTheInterruptShadow) {
  Machine m;
  make_long64(m.state(), 0);
  RecordingHook hook;
  OneInterrupt pic;
  m.core.set_trap_hook(&hook, false);
  m.core.set_interrupt_source(&pic);
  m.load_code(0x1000, {0x90, 0x90, 0x90, 0x90, 0x90, 0x90});
  m.core.notify_interrupt();
  EXPECT_EQ(m.core.run(2), 2u);  // IF = 0: nothing accepted
  EXPECT_EQ(pic.acks, 0);
  m.state().rflags |= IF;
  m.state().interrupt_shadow = true;  // as after STI: one more instruction first
  EXPECT_EQ(m.core.run(5), 1u);
  ASSERT_EQ(hook.events.size(), 1u);
  EXPECT_EQ(hook.events[0].kind, EventKind::External);
  EXPECT_EQ(hook.events[0].vector, 0x40);
  EXPECT_EQ(m.state().rip, 0x1003u);
  EXPECT_EQ(pic.acks, 1);
  EXPECT_EQ(m.core.counters().interrupts, 1u);
  // Nothing pending any more: the core stops polling after one empty poll.
  const int polls = pic.polls;
  EXPECT_EQ(m.core.run(3), 3u);
  EXPECT_EQ(pic.polls, polls + 1);
}

TEST(Core, HaltStopsTheRunUntilAnInterruptArrives) {
  Machine m;
  make_long64(m.state(), 0);
  RecordingHook hook;
  OneInterrupt pic;
  pic.pending = false;
  m.core.set_trap_hook(&hook, false);
  m.core.set_interrupt_source(&pic);
  m.load_code(0x1000, {0x90});
  m.state().rflags |= IF;
  m.state().halted = true;
  EXPECT_EQ(m.core.run(10), 0u);
  EXPECT_TRUE(m.state().halted);
  pic.pending = true;
  m.core.notify_interrupt();
  m.core.run(10);
  EXPECT_FALSE(m.state().halted);
  ASSERT_EQ(hook.events.size(), 1u);
  EXPECT_EQ(hook.events[0].vector, 0x40);
}

TEST(Core, TrapFlagRaisesDebugAfterTheInstruction) {
  Machine m;
  make_long64(m.state(), 3);
  RecordingHook hook;
  m.core.set_trap_hook(&hook, false);
  m.load_code(0x1000, {0xFF, 0xC0, 0xFF, 0xC0});  // inc eax; inc eax
  m.state().rflags |= TF;
  EXPECT_EQ(m.core.run(10), 1u);
  ASSERT_EQ(hook.events.size(), 1u);
  EXPECT_EQ(hook.events[0].vector, DB);
  EXPECT_EQ(m.state().rip, 0x1002u);  // a trap: after the instruction
  EXPECT_EQ(m.reg(RAX), 1u);
  EXPECT_TRUE(m.state().dr[6] & (1u << 14));  // DR6.BS
}

TEST(Core, SixteenBitStackAndAddressSizesWrapTheirRegisters) {
  Machine m;
  make_prot32(m.state(), 0);
  m.state().seg[SS].attr = seg_attr(kDataReadWrite, 0, false, false, false);  // SS.B = 0: SP
  m.state().seg[SS].limit = 0xFFFF;
  m.reg(RSP) = 0xABCD0000;  // SP = 0: a push wraps to 0xFFFE
  m.reg(RAX) = 0x11223344;
  m.reg(RCX) = 0xFFFF0002;  // CX = 2
  m.reg(RSI) = 0x00010000;  // SI = 0
  m.reg(RDI) = 0x00020100;  // DI = 0x100
  m.ram.put<uint16_t>(0, 0xBEEF);
  m.ram.put<uint16_t>(2, 0xCAFE);
  // push eax; 67 rep movsw (SI/DI/CX); 67 loop +0 (CX)
  m.load_code(0x1000, {0x50, 0x67, 0xF3, 0x66, 0xA5, 0x67, 0xE2, 0x00});
  EXPECT_EQ(m.core.run(3), 3u);
  EXPECT_EQ(m.reg(RSP), 0xABCDFFFCu);
  EXPECT_EQ(m.ram.get<uint32_t>(0xFFFC), 0x11223344u);
  EXPECT_EQ(m.ram.get<uint16_t>(0x100), 0xBEEFu);
  EXPECT_EQ(m.ram.get<uint16_t>(0x102), 0xCAFEu);
  EXPECT_EQ(m.reg(RSI), 0x00010004u);
  EXPECT_EQ(m.reg(RDI), 0x00020104u);
  EXPECT_EQ(m.reg(RCX), 0xFFFFFFFFu);  // CX: 2 -> 0 by the REP, LOOP decrements it to 0xFFFF
  EXPECT_EQ(m.core.counters().string_iterations, 2u);
}

TEST(Core, RepStringFaultLeavesARestartableState) {
  Machine m;
  make_prot32(m.state(), 0);
  m.state().seg[ES].limit = 0x1003;
  RecordingHook hook;
  m.core.set_trap_hook(&hook, false);
  m.reg(RAX) = 0x5A;
  m.reg(RDI) = 0x1000;
  m.reg(RCX) = 10;
  m.load_code(0x2000, {0xF3, 0xAA});  // rep stosb: the fifth byte is beyond ES.limit
  m.core.run(1);
  ASSERT_EQ(hook.events.size(), 1u);
  EXPECT_EQ(hook.events[0].vector, GP);
  EXPECT_EQ(m.state().rip, 0x2000u);
  EXPECT_EQ(m.reg(RCX), 6u);
  EXPECT_EQ(m.reg(RDI), 0x1004u);
  EXPECT_EQ(m.ram.get<uint32_t>(0x1000), 0x5A5A5A5Au);
}

// REP MOVS and REP STOS run as host copies and fills, a page at a time, where the soft TLB maps
// both operands directly (Core::direct_span); with a data observer the core takes the per-access
// path. Both leave the same registers, memory and counts: every element size, unaligned operands
// that cross pages, copies whose destination overlaps the source above and below it, 32-bit
// addressing, a source index that wraps, no iterations, a step limit that stops the instruction
// part-way, and DF set (which the host copies leave to the per-access path).
struct IgnoringObserver : DataAccessObserver {
  void on_data_access(uint64_t, unsigned, bool) override {}
};

constexpr uint64_t kRepData = 0x10000, kRepDataBytes = 0x10000;

std::vector<uint8_t> random_bytes(uint64_t n, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::vector<uint8_t> bytes(n);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(random());
  return bytes;
}

// What a run of the code at 0x1000 leaves: registers, RIP, counts and the memory at
// [data, data + data_bytes).
struct RunOutcome {
  std::array<uint64_t, 16> gpr;
  uint64_t rip, retired, dtlb_hits, itlb_hits, string_iterations, steps;
  std::array<uint64_t, kNumInsnClasses> by_class;
  std::vector<uint8_t> data;
  std::vector<uint8_t> vectors;  // events a hook took, where the caller records them
};

// Runs the code at 0x1000 twice, each run set up by `prepare(measured)` and bounded by
// `instructions(measured)` and `max_steps`: the first links the instructions and leaves the soft
// TLB holding the pages, so that the second, whose outcome is returned, finds them warm.
template <class Prepare, class Instructions>
RunOutcome second_run(Machine& m, Prepare prepare, Instructions instructions, uint64_t max_steps, uint64_t data,
                      uint64_t data_bytes) {
  const CoreCounters& c = m.core.counters();
  CoreCounters before;
  for (bool measured : {false, true}) {
    m.state().rip = 0x1000;
    prepare(measured);
    before = c;
    m.core.run(instructions(measured), max_steps);
  }
  RunOutcome r{m.state().gpr,
               m.state().rip,
               c.retired - before.retired,
               c.dtlb_hits - before.dtlb_hits,
               c.itlb_hits - before.itlb_hits,
               c.string_iterations - before.string_iterations,
               c.steps() - before.steps(),
               {},
               {},
               {}};
  for (unsigned k = 0; k < kNumInsnClasses; ++k) r.by_class[k] = c.by_class[k] - before.by_class[k];
  for (uint64_t a = data; a < data + data_bytes; ++a) r.data.push_back(m.ram.get<uint8_t>(a));
  return r;
}

// Two outcomes of the same code, field by field (so that a failure names the field).
void expect_same_outcome(const RunOutcome& a, const RunOutcome& b) {
  EXPECT_EQ(a.gpr, b.gpr);
  EXPECT_EQ(a.rip, b.rip);
  EXPECT_EQ(a.retired, b.retired);
  EXPECT_EQ(a.by_class, b.by_class);
  EXPECT_EQ(a.dtlb_hits, b.dtlb_hits);
  EXPECT_EQ(a.itlb_hits, b.itlb_hits);
  EXPECT_EQ(a.string_iterations, b.string_iterations);
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.vectors, b.vectors);
  EXPECT_TRUE(a.data == b.data);
}

RunOutcome run_rep(const std::vector<uint8_t>& code, uint64_t rsi, uint64_t rdi, uint64_t rcx, uint64_t max_steps,
                   uint64_t fs_base, bool backward, bool observed) {
  Machine m;
  make_long64(m.state(), 0);
  m.state().seg[FS].base = fs_base;
  const std::vector<uint8_t> data = random_bytes(kRepDataBytes, 7);
  m.ram.load(kRepData, data);
  IgnoringObserver observer;
  if (observed) m.core.set_data_access_observer(&observer);
  m.load_code(0x1000, code);
  // The second run finds every page, its first element included, mapped directly.
  auto prepare = [&](bool) {
    m.ram.load(kRepData, data);
    m.reg(RAX) = 0x0123456789ABCDEFull;
    m.reg(RSI) = rsi;
    m.reg(RDI) = rdi;
    m.reg(RCX) = rcx;
    if (backward) m.state().rflags |= DF;
  };
  return second_run(m, prepare, [](bool) { return 1; }, max_steps ? max_steps : ~0ull, kRepData, kRepDataBytes);
}

TEST(Core, RepMovsAndStosAsHostCopiesMatchThePerAccessPath) {
  struct Op {
    const char* name;
    std::vector<uint8_t> bytes;  // after the REP prefix
  };
  const Op ops[] = {{"movsb", {0xA4}}, {"movsw", {0x66, 0xA5}}, {"movsd", {0xA5}}, {"movsq", {0x48, 0xA5}},
                    {"stosb", {0xAA}}, {"stosw", {0x66, 0xAB}}, {"stosd", {0xAB}}, {"stosq", {0x48, 0xAB}}};
  struct Operands {
    const char* name;
    bool addr32;
    uint64_t rsi, rdi, rcx, max_steps, iterations;  // max_steps 0: none; iterations: what the instruction carries out
    uint64_t fs_base = 0;                           // not 0: the source is FS (MOVS)
    bool backward = false;                          // RFLAGS.DF set
  };
  const Operands cases[] = {
      {"apart", false, 0x10003, 0x18801, 1500, 0, 1500},
      {"destination just above the source", false, 0x10000, 0x10001, 3000, 0, 3000},
      {"destination below the source", false, 0x10801, 0x10000, 3000, 0, 3000},
      {"32-bit addressing", true, 0xFFFFFFFF00010003ull, 0xABCD000000018801ull, 0xFFFFFFFF000005DCull, 0, 1500},
      {"no iterations", false, 0x10000, 0x18000, 0, 0, 0},
      {"stopped part-way by the step limit", false, 0x10003, 0x18801, 1500, 700, 700},
      // FS:ESI starts at linear 0x10100, and ESI wraps to 0 16 bytes into that page.
      {"a 32-bit source index that wraps inside its page", true, 0xFFFFFFF0, 0x18000, 64, 0, 64,
       0xFFFFFFFF00010110ull},
      {"backward (DF set)", false, 0x14003, 0x1C801, 1500, 0, 1500, 0, true},
  };
  for (const Op& op : ops)
    for (const Operands& o : cases) {
      SCOPED_TRACE(std::string(op.name) + ", " + o.name);
      std::vector<uint8_t> code;
      if (o.fs_base) code.push_back(0x64);
      if (o.addr32) code.push_back(0x67);
      code.push_back(0xF3);
      code.insert(code.end(), op.bytes.begin(), op.bytes.end());
      const RunOutcome direct = run_rep(code, o.rsi, o.rdi, o.rcx, o.max_steps, o.fs_base, o.backward, false);
      const RunOutcome per_access = run_rep(code, o.rsi, o.rdi, o.rcx, o.max_steps, o.fs_base, o.backward, true);
      EXPECT_EQ(per_access.string_iterations, o.iterations);
      expect_same_outcome(direct, per_access);
    }
}

// Runs of PUSH r64 or imm and POP r64 that the block loop linked complete at once where their stack
// bytes lie in one page the soft TLB maps directly; a data observer sends them one by one. Both
// leave the same registers, memory and counts: runs with immediates, PUSH RSP and POP RSP (after
// which the pops read from RSP's new value), stacks that cross a page, run()'s instruction limit
// inside a run, and a single-step trap after the first instruction.
constexpr uint64_t kStackData = 0x20000, kStackDataBytes = 0x20000;

// Identity, except that the stack pages the cases cross from are elsewhere in physical memory (so
// that a run completed at once past its page's end would land on the wrong bytes).
class StackPagesApart : public Translator {
 public:
  Translation translate(const CpuState&, uint64_t linear, AccessKind, bool, AccessOrigin) override {
    Translation t;
    t.ok = true;
    const uint64_t page = linear >> 12;
    t.paddr = page == 0x27 ? linear + 0x10000 : page == 0x30 ? linear + 0xA000 : linear;
    return t;
  }
  void invalidate_page(uint64_t) override {}
  void flush(bool) override {}
};

RunOutcome run_stack(uint64_t rsp, uint64_t rbx, uint64_t limit, bool single_step, bool observed) {
  // push rax; push 0x2b; push rbx; push rsp; push -256; push rcx; push r15; push r8;
  // pop rdx; pop rsi; pop rdi; pop rbp; pop r9; pop rsp (RBX's value); pop r10; pop r11
  const std::vector<uint8_t> code = {0x50, 0x6A, 0x2B, 0x53, 0x54, 0x68, 0x00, 0xFF, 0xFF, 0xFF, 0x51,
                                     0x41, 0x57, 0x41, 0x50, 0x5A, 0x5E, 0x5F, 0x5D, 0x41, 0x59, 0x5C,
                                     0x41, 0x5A, 0x41, 0x5B};
  constexpr uint64_t kInstructions = 16;
  Machine m;
  make_long64(m.state(), 0);
  const std::vector<uint8_t> data = random_bytes(kStackDataBytes, 11);
  StackPagesApart translator;
  m.core.set_translator(&translator);
  IgnoringObserver observer;
  if (observed) m.core.set_data_access_observer(&observer);
  RecordingHook hook;
  m.core.set_trap_hook(&hook, false);
  m.load_code(0x1000, code);
  auto prepare = [&](bool measured) {
    m.ram.load(kStackData, data);
    for (unsigned r = 0; r < 16; ++r) m.reg(r) = 0x1111111111111111ull * r;
    m.reg(RSP) = rsp;
    m.reg(RBX) = rbx;
    if (measured && single_step) m.state().rflags |= TF;
    hook.events.clear();
  };
  auto instructions = [&](bool measured) { return measured && limit ? limit : kInstructions; };
  RunOutcome r = second_run(m, prepare, instructions, ~0ull, kStackData, kStackDataBytes);
  for (const Event& e : hook.events) r.vectors.push_back(e.vector);
  return r;
}

TEST(Core, PushAndPopRunsCompletedAtOnceMatchOneByOne) {
  struct Case {
    const char* name;
    uint64_t rsp, rbx, limit;  // rbx: where POP RSP points the stack; limit 0: the whole code
    bool single_step;
    uint64_t retired;
  };
  const Case cases[] = {
      {"within a page", 0x28800, 0x30800, 0, false, 16},
      {"pushes across a page", 0x28018, 0x30800, 0, false, 16},
      {"pops after POP RSP across a page", 0x28800, 0x30FF8, 0, false, 16},
      {"pops after POP RSP within a page", 0x28800, 0x30FF0, 0, false, 16},
      {"the instruction limit inside the pushes", 0x28800, 0x30800, 3, false, 3},
      {"the instruction limit inside the pops", 0x28800, 0x30800, 11, false, 11},
      {"single step", 0x28800, 0x30800, 0, true, 1},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    const RunOutcome at_once = run_stack(k.rsp, k.rbx, k.limit, k.single_step, false);
    const RunOutcome one_by_one = run_stack(k.rsp, k.rbx, k.limit, k.single_step, true);
    EXPECT_EQ(one_by_one.retired, k.retired);
    expect_same_outcome(at_once, one_by_one);
  }
}

// Denies every user-mode translation: shows which soft-TLB set an access uses.
class SupervisorOnly : public Translator {
 public:
  Translation translate(const CpuState&, uint64_t linear, AccessKind, bool user, AccessOrigin origin) override {
    origins.push_back(origin);
    Translation t;
    if (user) {
      t.fault = Fault::pf(linear, PFERR_P | PFERR_U);
      return t;
    }
    t.ok = true;
    t.paddr = linear;
    return t;
  }
  void invalidate_page(uint64_t) override {}
  void flush(bool) override {}
  std::vector<AccessOrigin> origins;
};

TEST(Core, ImplicitSupervisorAccessesDoNotShareUserTranslations) {
  Machine m;
  SupervisorOnly translator;
  m.core.set_translator(&translator);
  make_long64(m.state(), 3);
  m.core.sync_mode();
  m.ram.put<uint64_t>(0x5000, 0x0123456789ABCDEFull);
  EXPECT_EQ(m.core.read_linear(0x5000, 8, AccessOrigin::ImplicitSupervisor), 0x0123456789ABCDEFull);
  EXPECT_EQ(m.core.read_linear(0x5000, 8, AccessOrigin::ImplicitSupervisor), 0x0123456789ABCDEFull);
  ASSERT_EQ(translator.origins.size(), 1u);  // the second read hit the implicit set
  try {
    m.core.read_linear(0x5000, 8, AccessOrigin::Instruction);  // CPL 3: a user access
    FAIL() << "a user access must not use the supervisor translation";
  } catch (const Fault& f) {
    EXPECT_EQ(f.vector, PF_);
    EXPECT_EQ(f.cr2, 0x5000u);
  }
}

// The status flags are computed lazily (isa/README.md): what state() shows after run() is the
// architectural value, and a write through state() is what the next instruction reads.
TEST(Core, LazyFlagsAreExactAfterRunAndAWriteThroughStateIsKept) {
  Machine m;
  make_long64(m.state(), 0);
  // sub rax, rbx; adc rcx, 0
  m.load_code(0x1000, {0x48, 0x29, 0xD8, 0x48, 0x83, 0xD1, 0x00});
  m.reg(RAX) = 1;
  m.reg(RBX) = 2;
  m.reg(RCX) = 5;
  EXPECT_EQ(m.core.run(1), 1u);
  // 1 - 2 = all ones: a borrow, negative, even parity of 0xFF, a borrow out of bit 3, no overflow.
  EXPECT_EQ(m.state().rflags & kStatusFlags, uint64_t{CF | PF | AF | SF});
  m.state().rflags &= ~uint64_t{CF};
  EXPECT_EQ(m.core.run(1), 1u);
  EXPECT_EQ(m.reg(RCX), 5u);  // ADC added the CF written through state(), not SUB's borrow
}

// MUL and IMUL leave SF, ZF, AF and PF undefined, and shifts AF (SDM vol. 2); the core sets them as
// QEMU does: SF, ZF and PF of the result (a product's lower half), AF clear.
TEST(Core, MultipliesAndShiftsSetTheUndefinedFlagsAsQemuDoes) {
  Machine m;
  make_long64(m.state(), 0);
  // imul rax, rbx; mul rcx; shl rdx, 1
  m.load_code(0x1000, {0x48, 0x0F, 0xAF, 0xC3, 0x48, 0xF7, 0xE1, 0x48, 0xD1, 0xE2});
  m.reg(RAX) = 0x8000000000000001;
  m.reg(RBX) = 3;
  m.reg(RCX) = 2;
  m.state().rflags |= AF | ZF;
  EXPECT_EQ(m.core.run(1), 1u);
  // (2^63 + 1) * 3 signed overflows; the lower half 0x8000000000000003 is negative, PF of 0x03.
  EXPECT_EQ(m.reg(RAX), 0x8000000000000003u);
  EXPECT_EQ(m.state().rflags & kStatusFlags, uint64_t{CF | OF | SF | PF});
  EXPECT_EQ(m.core.run(1), 1u);
  // 0x8000000000000003 * 2 = 1:0x6: the upper half is set, the lower half positive with PF of 0x06.
  EXPECT_EQ(m.reg(RAX), 6u);
  EXPECT_EQ(m.reg(RDX), 1u);
  EXPECT_EQ(m.state().rflags & kStatusFlags, uint64_t{CF | OF | PF});
  m.state().rflags |= AF;
  EXPECT_EQ(m.core.run(1), 1u);
  // 1 << 1 = 2: no carry, no overflow, PF of 0x02 odd; AF cleared.
  EXPECT_EQ(m.reg(RDX), 2u);
  EXPECT_EQ(m.state().rflags & kStatusFlags, 0u);
}

}  // namespace
}  // namespace pgsim::test

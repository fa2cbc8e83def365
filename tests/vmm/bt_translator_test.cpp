// The binary translator on a small hand-assembled guest routine: the TC bytes it emits, read back
// with Zydis' disassembler, are the expected translation (IDENT copies, a RIP-relative operand
// re-based, callouts, a CALL as PUSH of the guest return address and an exit, a Jcc with its two
// exits, a RET through the lookup), and chaining patches an exit into a direct jump.
#include <gtest/gtest.h>

#include <Zydis/Zydis.h>

#include <cstring>
#include <string>
#include <vector>

#include "models/vmm/binary_translation.h"
#include "models/vmm/bt_translator.h"

namespace pgsim {
namespace {

constexpr uint64_t kGuest = 0x200000;
constexpr uint64_t kTcPhysical = 0x9000000;

// The guest routine, in two units.
const std::vector<uint8_t> kRoutine = {
    0x48, 0x89, 0xF8,                          // 200000 mov rax, rdi
    0x48, 0x8B, 0x05, 0x10, 0x00, 0x00, 0x00,  // 200003 mov rax, [rip+0x10]   (0x20001A)
    0xFA,                                      // 20000a cli
    0x0F, 0x22, 0xD8,                          // 20000b mov cr3, rax
    0xE8, 0x0D, 0x00, 0x00, 0x00,              // 20000e call 0x200020
    0x85, 0xC0,                                // 200013 test eax, eax
    0x74, 0x05,                                // 200015 jz 0x20001C
    0xC3,                                      // 200017 ret
};

struct Fixture {
  explicit Fixture(vmm::SregRead sreg_read = vmm::SregRead::Traps) : sreg_read(sreg_read) {}
  vmm::SregRead sreg_read;
  std::vector<uint8_t> tc = std::vector<uint8_t>(64 * 1024, 0xCC);
  std::vector<std::pair<uint64_t, uint64_t>> written;
  std::vector<uint8_t*> pages() {
    std::vector<uint8_t*> p;
    for (size_t at = 0; at < tc.size(); at += 4096) p.push_back(tc.data() + at);
    return p;
  }
  vmm::BtTranslator translator{pages(), vmm::kTcLinearBase, kTcPhysical, 12,
                               [this](uint64_t paddr, uint64_t size) { written.emplace_back(paddr, size); },
                               sreg_read};
  std::vector<uint8_t> routine = kRoutine;
  vmm::BtTranslator::CodeReader read = [this](uint64_t linear, uint8_t* out, unsigned size, uint64_t* frame) {
    if (linear < kGuest || linear >= kGuest + routine.size()) return false;
    const unsigned n = static_cast<unsigned>(std::min<uint64_t>(size, kGuest + routine.size() - linear));
    std::memset(out, 0x90, size);  // past the routine: NOPs
    std::memcpy(out, routine.data() + (linear - kGuest), n);
    *frame = linear >> 12;
    return true;
  };

  // The TC from `tc_address` to `end`, one instruction a line: "address: text".
  std::vector<std::string> disassemble(uint64_t tc_address, uint64_t end) const {
    std::vector<std::string> lines;
    for (uint64_t at = tc_address; at < end;) {
      ZydisDisassembledInstruction insn;
      const uint8_t* bytes = tc.data() + (at - vmm::kTcLinearBase);
      if (!ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, at, bytes, end - at, &insn))) break;
      char line[160];
      std::snprintf(line, sizeof line, "+%llu: %s", static_cast<unsigned long long>(at - tc_address), insn.text);
      lines.push_back(line);
      at += insn.info.length;
    }
    return lines;
  }
};

TEST(BtTranslator, EmitsTheExpectedTranslationOfAGuestRoutine) {
  Fixture f;
  const auto first = f.translator.translate(kGuest, f.read);
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, vmm::kTcLinearBase);
  // Unit 1 ends at the CALL: the guest return address is pushed (the guest never sees a TC
  // address) and the JMP exit, not yet chained, jumps to the next byte (the hook takes it first).
  const uint64_t end1 = f.translator.bytes_used() + vmm::kTcLinearBase;
  EXPECT_EQ(f.disassemble(*first, end1), (std::vector<std::string>{
                                             "+0: mov rax, rdi",
                                             "+3: mov rax, [0x000000000020001A]",
                                             "+11: cli",
                                             "+12: mov cr3, rax",
                                             "+15: push 0x200013",
                                             "+20: jmp 0xFFFFFE8000000019",
                                         }));
  const auto& c = f.translator.counters();
  EXPECT_EQ(c.units, 1u);
  EXPECT_EQ(c.guest_instructions, 5u);
  EXPECT_EQ(c.ident, 2u);
  EXPECT_EQ(c.rebased, 1u);
  EXPECT_EQ(c.callouts, 2u);
  EXPECT_EQ(c.branches, 1u);
  // The callouts and the exit, by TC address; and the guest RIP of every TC instruction.
  const vmm::TcExit* cli = f.translator.exit_at(*first + 11);
  ASSERT_NE(cli, nullptr);
  EXPECT_EQ(cli->kind, vmm::TcExit::Kind::Emulate);
  EXPECT_EQ(cli->guest_rip, kGuest + 0xA);
  EXPECT_EQ(cli->tc_next, *first + 12);  // the unit goes on after it
  const vmm::TcExit* call = f.translator.exit_at(*first + 20);
  ASSERT_NE(call, nullptr);
  EXPECT_EQ(call->kind, vmm::TcExit::Kind::Jump);
  EXPECT_EQ(call->guest_target, kGuest + 0x20);
  EXPECT_EQ(f.translator.exit_at(*first), nullptr);  // IDENT: no exit
  EXPECT_EQ(f.translator.guest_rip_at(*first + 3), kGuest + 3);
  EXPECT_EQ(f.translator.guest_rip_at(*first + 15), kGuest + 0xE);   // before the PUSH: at the CALL
  EXPECT_EQ(f.translator.guest_rip_at(*first + 20), kGuest + 0x20);  // after it: at the target

  // Unit 2 (the instruction after the CALL, at TC +0x19): TEST copied, JZ as JZ rel32 to its taken exit after
  // the fall-through exit; it ends there.
  const auto second = f.translator.translate(kGuest + 0x13, f.read);
  ASSERT_TRUE(second);
  const uint64_t end2 = f.translator.bytes_used() + vmm::kTcLinearBase;
  EXPECT_EQ(f.disassemble(*second, end2), (std::vector<std::string>{
                                              "+0: test eax, eax",
                                              "+2: jz 0xFFFFFE8000000026",   // the taken exit
                                              "+8: jmp 0xFFFFFE8000000026",  // exits: to the next byte
                                              "+13: jmp 0xFFFFFE800000002B",
                                          }));
  EXPECT_EQ(f.translator.exit_at(*second + 8)->guest_target, kGuest + 0x17);   // not taken
  EXPECT_EQ(f.translator.exit_at(*second + 13)->guest_target, kGuest + 0x1C);  // taken
  // Unit 3: the RET is an exit to the lookup.
  const auto third = f.translator.translate(kGuest + 0x17, f.read);
  ASSERT_TRUE(third);
  EXPECT_EQ(f.disassemble(*third, *third + 1), (std::vector<std::string>{"+0: ret"}));
  EXPECT_EQ(f.translator.exit_at(*third)->kind, vmm::TcExit::Kind::Return);
  EXPECT_EQ(f.translator.lookup(kGuest + 0x17), *third);

  // Chaining the fall-through exit of unit 2 to unit 3: a direct JMP, no longer an exit.
  f.written.clear();
  f.translator.chain(*second + 8, *third);
  EXPECT_EQ(f.translator.exit_at(*second + 8), nullptr);
  char target[64];
  std::snprintf(target, sizeof target, "+8: jmp 0x%llX", static_cast<unsigned long long>(*third));
  EXPECT_EQ(f.disassemble(*second, end2)[2], target);
  ASSERT_EQ(f.written.size(), 1u);  // the core is told to decode the patched rel32 anew
  EXPECT_EQ(f.written[0].first, kTcPhysical + (*second + 9 - vmm::kTcLinearBase));
  EXPECT_EQ(f.written[0].second, 4u);

  // Guest frame 0x200 written: its three units are dropped; the chained exit into unit 3 is an
  // exit again.
  EXPECT_EQ(f.translator.invalidate_frame(kGuest >> 12), 3u);
  EXPECT_EQ(f.translator.lookup(kGuest), 0u);
  ASSERT_NE(f.translator.exit_at(*second + 8), nullptr);
}

// MOV r, Sreg inline on classic x86, where the real CPU at CPL 3 reads CS and SS with RPL 3: a
// LEA takes the RPL off (the guest's is 0) without touching the flags; DS is the guest's as it is.
// Where the profile hides the RPL (x86-pg) the copy alone is right; where it traps, a callout.
TEST(BtTranslator, TranslatesSegmentSelectorReadsInline) {
  Fixture f(vmm::SregRead::RealRpl);
  f.routine = {0x8C, 0xC8,              // mov eax, cs
               0x41, 0x8C, 0xD4,        // mov r12d, ss
               0x48, 0x8C, 0xD9,        // mov rcx, ds
               0xC3};
  const auto tc = f.translator.translate(kGuest, f.read);
  ASSERT_TRUE(tc);
  EXPECT_EQ(f.disassemble(*tc, f.translator.bytes_used() + vmm::kTcLinearBase),
            (std::vector<std::string>{"+0: mov eax, cs", "+2: lea eax, [rax-0x03]", "+5: mov r12d, ss",
                                      "+8: lea r12d, [r12-0x03]", "+13: mov rcx, ds", "+16: ret"}));
  EXPECT_EQ(f.translator.counters().inlined, 3u);
  EXPECT_EQ(f.translator.counters().callouts, 0u);
  EXPECT_EQ(f.translator.guest_rip_at(*tc + 2), kGuest);  // interrupted before the LEA: MOV again

  Fixture pg(vmm::SregRead::GuestRpl);
  pg.routine = f.routine;
  const auto copied = pg.translator.translate(kGuest, pg.read);
  EXPECT_EQ(pg.disassemble(*copied, pg.translator.bytes_used() + vmm::kTcLinearBase),
            (std::vector<std::string>{"+0: mov eax, cs", "+2: mov r12d, ss", "+5: mov rcx, ds", "+8: ret"}));
  Fixture traps(vmm::SregRead::Traps);
  traps.routine = f.routine;
  traps.translator.translate(kGuest, traps.read);
  EXPECT_EQ(traps.translator.counters().callouts, 3u);
}

}  // namespace
}  // namespace pgsim

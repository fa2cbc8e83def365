// The binary translator on a small hand-assembled guest routine: the TC bytes it emits, read back
// with Zydis' disassembler, are the expected translation (IDENT copies, a RIP-relative operand
// re-based, callouts, a CALL as PUSH of the guest return address and an exit, a Jcc with its two
// exits, a RET through the lookup), and chaining patches an exit into a direct jump.
#include <gtest/gtest.h>

#include <Zydis/Zydis.h>

#include <cstring>
#include <map>
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
  explicit Fixture(vmm::SregRead sreg_read = vmm::SregRead::Traps, bool vcpu_page = false)
      : sreg_read(sreg_read), vcpu_page(vcpu_page) {}
  vmm::SregRead sreg_read;
  bool vcpu_page;
  std::vector<uint8_t> tc = std::vector<uint8_t>(64 * 1024, 0xCC);
  std::vector<std::pair<uint64_t, uint64_t>> written;
  std::vector<uint8_t*> pages() {
    std::vector<uint8_t*> p;
    for (size_t at = 0; at < tc.size(); at += 4096) p.push_back(tc.data() + at);
    return p;
  }
  vmm::BtTranslator translator{pages(), vmm::kTcLinearBase, kTcPhysical, 12,
                               [this](uint64_t paddr, uint64_t size) { written.emplace_back(paddr, size); },
                               sreg_read, vcpu_page};
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
                                             "+20: jmp 0xFFFFFFFFFFA00019",
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
                                              "+2: jz 0xFFFFFFFFFFA00026",   // the taken exit
                                              "+8: jmp 0xFFFFFFFFFFA00026",  // exits: to the next byte
                                              "+13: jmp 0xFFFFFFFFFFA0002B",
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

// A RIP-relative operand whose absolute address is beyond a sign-extended disp32 (above 2 GiB) has
// no re-based form in the TC: the instruction is a callout, carried out on the virtual CPU.
TEST(BtTranslator, MakesARipRelativeOperandBeyondADisp32ACallout) {
  for (const bool vcpu_page : {false, true}) {
    Fixture f(vmm::SregRead::Traps, vcpu_page);
    f.routine = {0x48, 0x8B, 0x05, 0xF0, 0xFF, 0xFF, 0x7F,  // 200000 mov rax, [rip+0x7FFFFFF0] (0x801FFFF7)
                 0x48, 0x8B, 0x05, 0xF0, 0xFF, 0xFF, 0x0F,  // 200007 mov rax, [rip+0x0FFFFFF0] (0x101FFFFE)
                 0xC3};
    const auto tc = f.translator.translate(kGuest, f.read);
    ASSERT_TRUE(tc);
    const vmm::TcExit* far = f.translator.exit_at(*tc);
    ASSERT_NE(far, nullptr);
    EXPECT_EQ(far->kind, vmm::TcExit::Kind::Emulate);
    EXPECT_EQ(far->guest_rip, kGuest);
    EXPECT_EQ(far->guest_next, kGuest + 7);
    const auto& c = f.translator.counters();
    EXPECT_EQ(c.callouts, 1u);
    EXPECT_EQ(c.rebased, 1u);  // the second, whose address fits
  }
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

// With a vCPU page, the interrupt flag and the reads of the guest's control state are inline
// sequences on it (GS-relative), with no callout: CLI and STI store the virtual IF; PUSHFQ pushes
// the real flags with the virtual IF in place of the real one, restoring the real flags from their
// own image; POPFQ stores the image's IF when its IOPL is the guest's, else goes to a POPF
// callout; MOV r, CR0 loads the guest's CR0. Interrupts wait inside the sequences and on the
// instruction after STI (its interrupt shadow). A GS-relative guest load is a callout.
TEST(BtTranslator, TranslatesTheInterruptFlagAndControlReadsInlineOnTheVcpuPage) {
  Fixture f(vmm::SregRead::Traps, /*vcpu_page=*/true);
  f.routine = {0xFA,                    // 200000 cli
               0x9C,                    // 200001 pushfq
               0x48, 0x89, 0xC3,        // 200002 mov rbx, rax
               0x9D,                    // 200005 popfq
               0xFB,                    // 200006 sti
               0x0F, 0x20, 0xC1,        // 200007 mov rcx, cr0
               0x65, 0x48, 0x8B, 0x10,  // 20000a mov rdx, gs:[rax]
               0xC3};                   // 20000e ret
  const auto tc = f.translator.translate(kGuest, f.read);
  ASSERT_TRUE(tc);
  const uint64_t end = f.translator.bytes_used() + vmm::kTcLinearBase;
  char callout_stub[64], after_popf[64];
  std::snprintf(callout_stub, sizeof callout_stub, "+83: jnz 0x%llX", static_cast<unsigned long long>(*tc + 122));
  std::snprintf(after_popf, sizeof after_popf, "+117: jmp 0x%llX", static_cast<unsigned long long>(*tc + 132));
  EXPECT_EQ(f.disassemble(*tc, end), (std::vector<std::string>{
                                         "+0: mov qword ptr gs:[0x0000000000000000], 0x00",  // cli
                                         "+13: pushfq",                                      // pushfq
                                         "+14: mov gs:[0x0000000000000038], rax",
                                         "+23: mov rax, [rsp]",
                                         "+27: and rax, 0xFFFFFFFFFFFFFDFF",
                                         "+33: or rax, gs:[0x0000000000000000]",
                                         "+42: popfq",
                                         "+43: push rax",
                                         "+44: mov rax, gs:[0x0000000000000038]",
                                         "+53: mov rbx, rax",                                // IDENT
                                         "+56: mov gs:[0x0000000000000038], rax",            // popfq
                                         "+65: mov rax, [rsp]",
                                         "+69: and eax, 0x3000",
                                         "+74: cmp rax, gs:[0x0000000000000008]",
                                         callout_stub,
                                         "+89: mov rax, [rsp]",
                                         "+93: and eax, 0x200",
                                         "+98: mov gs:[0x0000000000000000], rax",
                                         "+107: mov rax, gs:[0x0000000000000038]",
                                         "+116: popfq",
                                         after_popf,
                                         "+122: mov rax, gs:[0x0000000000000038]",           // IOPL changes:
                                         "+131: popfq",                                      // the callout
                                         "+132: mov qword ptr gs:[0x0000000000000000], 0x200",  // sti
                                         "+145: mov rcx, gs:[0x0000000000000010]",           // mov rcx, cr0
                                         "+154: mov rdx, gs:[rax]",                          // a callout
                                         "+158: ret",
                                     }));
  // The POPF callout goes on after the sequence; the GS-relative load is a callout.
  const vmm::TcExit* popf = f.translator.exit_at(*tc + 131);
  ASSERT_NE(popf, nullptr);
  EXPECT_EQ(popf->kind, vmm::TcExit::Kind::Emulate);
  EXPECT_EQ(popf->guest_rip, kGuest + 5);
  EXPECT_EQ(popf->tc_next, *tc + 132);
  ASSERT_NE(f.translator.exit_at(*tc + 154), nullptr);
  EXPECT_EQ(f.translator.exit_at(*tc + 116), nullptr);  // the real POPFQ of the sequence runs
  // Guest RIPs: a sequence stands for its guest instruction until it is done.
  EXPECT_EQ(f.translator.guest_rip_at(*tc + 44), kGuest + 1);
  EXPECT_EQ(f.translator.guest_rip_at(*tc + 116), kGuest + 5);
  EXPECT_EQ(f.translator.guest_rip_at(*tc + 117), kGuest + 6);  // past the POPF: at the STI
  // Interrupts wait inside sequences (not at their first instruction) and on the MOV from CR0
  // after the STI (its shadow).
  for (uint64_t at : {13, 14, 44, 56, 65, 83, 116, 122})
    EXPECT_EQ(f.translator.holds_interrupts(*tc + at), at != 13 && at != 56) << at;
  EXPECT_FALSE(f.translator.holds_interrupts(*tc + 0));
  EXPECT_FALSE(f.translator.holds_interrupts(*tc + 53));
  EXPECT_FALSE(f.translator.holds_interrupts(*tc + 132));
  EXPECT_TRUE(f.translator.holds_interrupts(*tc + 145));
  EXPECT_FALSE(f.translator.holds_interrupts(*tc + 154));
  const auto& c = f.translator.counters();
  EXPECT_EQ(c.inlined, 5u);
  EXPECT_EQ(c.callouts, 1u);  // the GS-relative load
  EXPECT_EQ(c.inlined_by_mnemonic.by_mnemonic(),
            (std::map<std::string, uint64_t>{{"cli", 1}, {"popfq", 1}, {"pushfq", 1}, {"sti", 1}, {"mov_cr", 1}}));
}

// A store of the guest's descriptor-table register to its memory (SGDT m) is inline too: RAX and
// RCX borrowed into the vCPU page's scratch slots, RAX = the operand's address (LEA of the guest's
// ModRM), the limit and the base stored from the page, the registers returned. Where a store may
// fault, the VMM finds which registers the sequence holds (borrowed_at).
TEST(BtTranslator, TranslatesAStoreOfTheGdtrInline) {
  Fixture f(vmm::SregRead::Traps, /*vcpu_page=*/true);
  f.routine = {0x0F, 0x01, 0x47, 0x10,  // 200000 sgdt [rdi+0x10]
               0xC3};                   // 200004 ret
  const auto tc = f.translator.translate(kGuest, f.read);
  ASSERT_TRUE(tc);
  EXPECT_EQ(f.disassemble(*tc, f.translator.bytes_used() + vmm::kTcLinearBase),
            (std::vector<std::string>{
                "+0: mov gs:[0x0000000000000038], rax",
                "+9: mov gs:[0x0000000000000040], rcx",
                "+18: lea rax, [rdi+0x10]",
                "+22: mov cx, gs:[0x0000000000000048]",  // the guest's GDTR limit
                "+31: mov [rax], cx",
                "+34: mov rcx, gs:[0x0000000000000050]",  // its base
                "+43: mov [rax+0x02], rcx",
                "+47: mov rcx, gs:[0x0000000000000040]",
                "+56: mov rax, gs:[0x0000000000000038]",
                "+65: ret",
            }));
  EXPECT_EQ(f.translator.counters().callouts, 0u);
  EXPECT_EQ(f.translator.counters().inlined_by_mnemonic.of("sgdt"), 1u);
  constexpr uint8_t kBoth = vmm::VcpuPage::kBorrowsRax | vmm::VcpuPage::kBorrowsRcx;
  EXPECT_EQ(f.translator.borrowed_at(*tc), 0u);  // nothing borrowed yet: the guest's registers
  EXPECT_EQ(f.translator.borrowed_at(*tc + 31), kBoth);
  EXPECT_EQ(f.translator.borrowed_at(*tc + 43), kBoth);
  EXPECT_EQ(f.translator.borrowed_at(*tc + 56), vmm::VcpuPage::kBorrowsRax);
  EXPECT_EQ(f.translator.borrowed_at(*tc + 65), 0u);
}

}  // namespace
}  // namespace pgsim

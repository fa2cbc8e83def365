// The VMM sees a guest instruction before it executes only when the instruction was marked at
// decode: under trap_emulate, the sensitive instructions that do not trap on the CPU's profile.
// Everything else runs on the core's fast path with no call into the VMM, and a profile file
// alone decides what is marked, what traps and what leaks.
#include <gtest/gtest.h>

#include <string>

#include "isa/decoder.h"
#include "isa/dispatch.h"
#include "tests/vmm/deprivileged_machine.h"

namespace pgsim {
namespace {

using test::DeprivilegedMachine;

// `push rax ; pop rax` (the stack's shadow entry is filled here, by a hidden page fault, so that no
// instruction of the body restarts), `body` repeated `n` times, then `jmp $`.
std::vector<uint8_t> repeated(const std::vector<uint8_t>& body, unsigned n) {
  std::vector<uint8_t> code = {0x50, 0x58};
  for (unsigned k = 0; k < n; ++k) code.insert(code.end(), body.begin(), body.end());
  code.insert(code.end(), {0xEB, 0xFE});
  return code;
}

// add rax, 1 ; xor rbx, rax ; mov [rsp-8], rbx  (none of it sensitive)
const std::vector<uint8_t> kPlain = {0x48, 0x83, 0xC0, 0x01, 0x48, 0x31, 0xC3, 0x48, 0x89, 0x5C, 0x24, 0xF8};
// pushfq ; pop rax
const std::vector<uint8_t> kPushf = {0x9C, 0x58};

TEST(PreExecute, ANonSensitiveStreamMakesNoCallIntoTheVmm) {
  DeprivilegedMachine m("x86");
  vmm::TrapEmulateVmm& vmm = m.start(repeated(kPlain, 50));
  const uint64_t retired = m.core.run(2 + 150 + 10);
  EXPECT_EQ(retired, 162u);  // 152 instructions, then the jmp $ loop: all on the real CPU
  EXPECT_EQ(vmm.pre_execute_calls(), 0u);
  // The only ways in: the hidden page faults of the code and the stack, before the stream.
  EXPECT_EQ(m.router->total_traps(), 2u);
  EXPECT_EQ(vmm.shadow().hidden_faults, 2u);
  EXPECT_EQ(vmm.interpreted(), 0u);  // no boundary work either: the VMM is not called at all
}

TEST(PreExecute, ASensitiveInstructionMakesExactlyOneCallPerExecution) {
  for (unsigned n : {3u, 8u}) {
    DeprivilegedMachine m("x86");
    vmm::TrapEmulateVmm& vmm = m.start(repeated(kPushf, n));
    m.core.run(2 + 2 * n + 5);
    EXPECT_EQ(vmm.pre_execute_calls(), n);  // one per PUSHF, none for POP or the loop
    EXPECT_EQ(m.router->total_traps(), vmm.shadow().hidden_faults);  // code and stack, filled once
    EXPECT_EQ(vmm.leaks().of(isa::SensitiveInsn::Pushf).count, n);  // the real IF shows each time
  }
}

// The same guest on classic x86 and on a profile file in which PUSHF traps: the file alone moves
// PUSHF from watched-and-leaking to trapped-and-emulated.
TEST(PreExecute, AProfileFileDecidesWhatIsMarkedWhatTrapsAndWhatLeaks) {
  const std::string pushf_traps = std::string(PGSIM_VMM_TEST_DATA) + "/pushf-traps.yaml";
  constexpr unsigned n = 5;
  {
    DeprivilegedMachine m("x86");
    vmm::TrapEmulateVmm& vmm = m.start(repeated(kPushf, n));
    m.core.run(2 + 2 * n + 5);
    EXPECT_EQ(vmm.pre_execute_calls(), n);
    EXPECT_EQ(m.traps(vmm::TrapCause::GeneralProtection), 0u);
    EXPECT_EQ(vmm.leaks().total(), n);
    EXPECT_EQ(vmm.emulated_by_mnemonic().of("pushfq"), 0u);
  }
  {
    DeprivilegedMachine m(pushf_traps.c_str());
    vmm::TrapEmulateVmm& vmm = m.start(repeated(kPushf, n));
    m.core.run(2 + 2 * n + 5);
    EXPECT_EQ(vmm.pre_execute_calls(), 0u);  // not marked: it traps
    EXPECT_EQ(m.traps(vmm::TrapCause::GeneralProtection), n);
    EXPECT_EQ(vmm.leaks().total(), 0u);
    EXPECT_EQ(vmm.emulated_by_mnemonic().of("pushfq"), n);  // emulated on the virtual CPU instead
    EXPECT_EQ(m.state().gpr[isa::RAX] & isa::IF, 0u);      // which shows the guest's own IF (clear)
  }
}

// The decoder takes what the VMM watches from the instructions' registration: the sensitive
// instruction and the traits (privileged, port I/O, exits non-root operation).
TEST(PreExecute, SensitivityAndTraitsAreKnownAtDecode) {
  isa::Decoder decoder(isa::Dispatch::instance());
  struct Expect {
    std::vector<uint8_t> bytes;
    uint8_t sensitive;
    uint8_t traits;
  };
  const auto S = [](isa::SensitiveInsn s) { return static_cast<uint8_t>(s); };
  const Expect cases[] = {
      {{0x9C}, S(isa::SensitiveInsn::Pushf), isa::kTraitSystem},
      {{0x9D}, S(isa::SensitiveInsn::Popf), isa::kTraitSystem},
      {{0x0F, 0x01, 0x04, 0x24}, S(isa::SensitiveInsn::Sgdt), isa::kTraitSystem | isa::kTraitVmxExit},
      {{0x8C, 0xC8}, S(isa::SensitiveInsn::MovFromSreg), isa::kTraitSystem},
      {{0x0F, 0x22, 0xD8}, isa::kNotSensitive, isa::kTraitSystem | isa::kTraitPrivileged | isa::kTraitVmxExit},
      {{0xE4, 0x60}, isa::kNotSensitive, isa::kTraitSystem | isa::kTraitPortIo | isa::kTraitVmxExit},
      {{0x0F, 0xA2}, isa::kNotSensitive, isa::kTraitSystem | isa::kTraitVmxExit},
      {{0x48, 0x01, 0xD8}, isa::kNotSensitive, 0},
  };
  for (const Expect& e : cases) {
    isa::Insn insn;
    ASSERT_EQ(decoder.decode(isa::Mode::Long64, e.bytes.data(), e.bytes.size(), insn), isa::DecodeStatus::Ok);
    EXPECT_EQ(insn.sensitive, e.sensitive) << isa::Decoder::mnemonic_name(insn.mnemonic);
    EXPECT_EQ(insn.traits, e.traits) << isa::Decoder::mnemonic_name(insn.mnemonic);
  }
}

}  // namespace
}  // namespace pgsim

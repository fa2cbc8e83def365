// Compiled blocks (isa/block_compiler.h) leave what the interpreter leaves: every program here runs
// twice, with block compilation on and off, and the two runs must agree on registers, RIP, RFLAGS,
// memory, every count and every event, while the first must have compiled blocks. The programs
// are hot loops that meet what ends a compiled block early: faults raised and thrown (a C++
// exception through the compiled code), run()'s instruction limit, code that writes itself, and
// the same code frame mapped at two addresses.
#include <gtest/gtest.h>

#include <array>
#include <functional>
#include <random>
#include <utility>
#include <vector>

#include "tests/isa/encoding.h"
#include "tests/isa/harness.h"

namespace pgsim {
namespace {

using namespace isa;
using test::Machine;
using test::RecordingHook;
using test::make_long64;

constexpr uint64_t kCode = 0x1000, kData = 0x10000, kDataBytes = 0x4000;

// Linear -> physical: the low 24 bits, except an alias of the code page at kAlias and a page
// that is not present at kHole.
constexpr uint64_t kAlias = 0x200000, kHole = 0x13000;
class MaskingTranslator : public Translator {
 public:
  Translation translate(const CpuState&, uint64_t linear, AccessKind, bool, AccessOrigin) override {
    Translation t;
    if ((linear & ~0xFFFull) == kHole) {
      t.fault = Fault::pf(linear, 0);
      return t;
    }
    t.ok = true;
    t.paddr = (linear & ~0xFFFull) == kAlias ? kCode + (linear & 0xFFF) : linear & 0xFFFFFF;
    return t;
  }
  void invalidate_page(uint64_t) override {}
  void flush(bool) override {}
};

struct Outcome {
  std::array<uint64_t, 16> gpr;
  uint64_t rip, rflags;
  CoreCounters counters;
  std::vector<uint8_t> vectors;
  std::vector<uint64_t> fault_rips;
  std::vector<uint8_t> data, code;
  uint64_t blocks_compiled, resets;
  uint64_t observed_reads, observed_writes, answered;
};

struct Program {
  explicit Program(std::vector<uint8_t> bytes) : code(std::move(bytes)) {}
  std::vector<uint8_t> code;
  std::array<uint64_t, 16> gpr{};
  uint64_t chunk = 0;  // run() in chunks of this many instructions (0: one run)
  size_t arena_bytes = BlockCompiler::kDefaultArenaBytes;
  bool observed = false;  // a data observer sees every access (as the cache model does)
  std::function<void(Machine&)> after_first_chunk;  // a change between the first run() and the next
};

// Counts the data accesses it is told of. Its filter answers for every other line of the data's
// first page (as a cache's table of lines it need not be told of would), and counts those.
class CountingObserver : public DataAccessObserver {
 public:
  CountingObserver() {
    for (uint64_t k = 0; k < 64; ++k) lines[k] = k % 2 == 0 ? (kData >> 6) + k : DataAccessFilter::kNoLine;
  }
  void on_data_access(uint64_t paddr, unsigned size, bool write) override { ++(write ? writes : reads); }
  DataAccessFilter filter() const override {
    return DataAccessFilter{lines.data(), 63, 6, const_cast<uint64_t*>(&answered)};
  }
  uint64_t reads = 0, writes = 0, answered = 0;
  std::array<uint64_t, 64> lines;
};

// Runs `p` from kCode until an event stops it (or 200000 instructions).
Outcome run(const Program& p, bool compile) {
  Machine m;
  MaskingTranslator translator;
  m.core.set_translator(&translator);
  m.core.set_block_compilation(compile, p.arena_bytes);
  CountingObserver observer;
  if (p.observed) m.core.set_data_access_observer(&observer);
  RecordingHook hook;
  m.core.set_trap_hook(&hook, false);
  make_long64(m.state(), 0);
  for (uint64_t a = kData; a < kData + kDataBytes; a += 8) m.ram.put<uint64_t>(a, a * 0x9E3779B97F4A7C15ull);
  m.load_code(kCode, p.code);
  m.state().gpr = p.gpr;
  Outcome o{};
  constexpr uint64_t kLimit = 200000;
  for (uint64_t total = 0; hook.events.empty() && total < kLimit;) {
    const uint64_t before = m.core.counters().retired;
    m.core.run(p.chunk ? p.chunk : kLimit);
    if (total == 0 && p.after_first_chunk) p.after_first_chunk(m);
    total += m.core.counters().retired - before;
    if (!hook.events.empty()) o.fault_rips.push_back(m.state().rip);
  }
  o.gpr = m.state().gpr;
  o.rip = m.state().rip;
  o.rflags = m.state().rflags;
  o.counters = m.core.counters();
  for (const Event& e : hook.events) o.vectors.push_back(e.vector);
  for (uint64_t a = kData; a < kData + kDataBytes; ++a) o.data.push_back(m.ram.get<uint8_t>(a));
  for (uint64_t a = kCode; a < kCode + 0x100; ++a) o.code.push_back(m.ram.get<uint8_t>(a));
  o.blocks_compiled = m.core.blocks_compiled();
  o.resets = m.core.compiled_code_resets();
  o.observed_reads = observer.reads;
  o.observed_writes = observer.writes;
  o.answered = observer.answered;
  return o;
}

void expect_same(const Outcome& compiled, const Outcome& interpreted, bool blocks = true) {
  if (blocks) {
    EXPECT_GT(compiled.blocks_compiled, 0u);
  }
  EXPECT_EQ(interpreted.blocks_compiled, 0u);
  EXPECT_EQ(compiled.gpr, interpreted.gpr);
  EXPECT_EQ(compiled.rip, interpreted.rip);
  EXPECT_EQ(compiled.rflags, interpreted.rflags);
  const CoreCounters &a = compiled.counters, &b = interpreted.counters;
  EXPECT_EQ(a.retired, b.retired);
  EXPECT_EQ(a.retired_user, b.retired_user);
  EXPECT_EQ(a.retired_kernel, b.retired_kernel);
  EXPECT_EQ(a.by_class, b.by_class);
  EXPECT_EQ(a.itlb_hits, b.itlb_hits);
  EXPECT_EQ(a.dtlb_hits, b.dtlb_hits);
  EXPECT_EQ(a.itlb_misses, b.itlb_misses);
  EXPECT_EQ(a.dtlb_misses, b.dtlb_misses);
  EXPECT_EQ(a.decoded, b.decoded);
  EXPECT_EQ(a.smc_invalidations, b.smc_invalidations);
  EXPECT_EQ(a.events, b.events);
  EXPECT_EQ(a.steps(), b.steps());
  EXPECT_EQ(compiled.vectors, interpreted.vectors);
  EXPECT_EQ(compiled.fault_rips, interpreted.fault_rips);
  EXPECT_TRUE(compiled.data == interpreted.data);
  EXPECT_TRUE(compiled.code == interpreted.code);
  EXPECT_EQ(compiled.observed_reads, interpreted.observed_reads);
  EXPECT_EQ(compiled.observed_writes, interpreted.observed_writes);
  EXPECT_EQ(compiled.answered, interpreted.answered);
}

// loop: mov rdx, [rsi]; add rax, rdx; mov [rsi + 8], rax; add rsi, STRIDE; dec rcx; jnz loop; ud2
// with RSI and RCX as given.
Program summing_loop(uint8_t stride, uint64_t rsi, uint64_t rcx) {
  Program p{{0x48, 0x8B, 0x16, 0x48, 0x01, 0xD0, 0x48, 0x89, 0x46, 0x08, 0x48, 0x83, 0xC6, stride, 0x48, 0xFF,
             0xC9, 0x75, 0xED, 0x0F, 0x0B}};
  p.gpr[RSI] = rsi;
  p.gpr[RCX] = rcx;
  return p;
}

TEST(BlockCompiler, AHotLoopLeavesWhatTheInterpreterLeaves) {
  const Program p = summing_loop(8, kData, 1000);
  const Outcome compiled = run(p, true);
  expect_same(compiled, run(p, false));
  EXPECT_EQ(compiled.vectors, std::vector<uint8_t>{UD});
  EXPECT_EQ(compiled.counters.retired, 6000u);
}

TEST(BlockCompiler, RunsEndingInsideACompiledBlockStopWhereTheInterpreterStops) {
  for (uint64_t chunk : {1u, 2u, 5u, 7u, 13u, 64u}) {
    SCOPED_TRACE(chunk);
    Program p = summing_loop(8, kData, 500);
    p.chunk = chunk;
    // Runs of one instruction link none (a link is made inside a run); below six, no block of
    // the loop fits in a run, and the blocks that compile do not run.
    expect_same(run(p, true), run(p, false), chunk > 1);
  }
}

TEST(BlockCompiler, ABreakpointInsideACompiledStackRunStopsItThere) {
  // loop: push rax; push rbx; push rcx; pop rcx; pop rbx; pop rax; dec r13; jnz loop; ud2. After
  // the first run, compiled by then, DR0 breaks at the second PUSH (DR7.L0, execute): the
  // boundary before each instruction is needed, and the run of pushes stops after the first.
  Program p{{0x50, 0x53, 0x51, 0x59, 0x5B, 0x58, 0x49, 0xFF, 0xCD, 0x75, 0xF5, 0x0F, 0x0B}};
  p.gpr[R13] = 1000;
  p.gpr[RSP] = kData + 0x2800;
  p.chunk = 800;
  p.after_first_chunk = [](Machine& m) {
    m.state().dr[0] = kCode + 1;
    m.state().dr[7] = 1;
    m.core.sync_mode();
  };
  const Outcome compiled = run(p, true);
  expect_same(compiled, run(p, false));
  EXPECT_EQ(compiled.vectors, std::vector<uint8_t>{DB});
  EXPECT_EQ(compiled.fault_rips, std::vector<uint64_t>{kCode + 1});
}

TEST(BlockCompiler, AFaultThrownInsideACompiledBlockUnwindsToTheRunLoop) {
  // RSI walks over the top of the lower canonical half: the load from a non-canonical address
  // throws #GP (a C++ exception), hundreds of iterations after the loop was compiled.
  const Program p = summing_loop(0x40, 0x0000800000000000ull - 0x40 * 300, 1000);
  const Outcome compiled = run(p, true);
  expect_same(compiled, run(p, false));
  EXPECT_EQ(compiled.vectors, std::vector<uint8_t>{GP});
  EXPECT_EQ(compiled.fault_rips, std::vector<uint64_t>{kCode});
}

TEST(BlockCompiler, AFaultRaisedInsideACompiledBlockEndsItAtTheInstruction) {
  // The loads reach the page that is not present: a page fault raised without unwinding.
  const Program p = summing_loop(8, kData, 10000);
  const Outcome compiled = run(p, true);
  expect_same(compiled, run(p, false));
  EXPECT_EQ(compiled.vectors, std::vector<uint8_t>{PF_});
  // The store of the iteration that loads the hole's last neighbour faults: two instructions of
  // that iteration retired.
  EXPECT_EQ(compiled.counters.retired, 6 * ((kHole - kData) / 8) - 4);
  EXPECT_EQ(compiled.fault_rips, std::vector<uint64_t>{kCode + 6});
}

TEST(BlockCompiler, ALoadThatMissesTheSoftTlbInsideACompiledBlockTranslatesOrFaults) {
  // loop: mov rdx, [rsi]; add rax, rdx; add rsi, 8; dec rcx; jnz loop; ud2. The loads walk into
  // a new page (a soft-TLB miss, translated) and then into the page that is not present (a page
  // fault raised from the compiled block's miss path).
  Program p{{0x48, 0x8B, 0x16, 0x48, 0x01, 0xD0, 0x48, 0x83, 0xC6, 0x08, 0x48, 0xFF, 0xC9, 0x75, 0xF1, 0x0F, 0x0B}};
  p.gpr[RSI] = kHole - 0x1000 - 8 * 100;
  p.gpr[RCX] = 10000;
  const Outcome compiled = run(p, true);
  expect_same(compiled, run(p, false));
  EXPECT_EQ(compiled.vectors, std::vector<uint8_t>{PF_});
  EXPECT_EQ(compiled.fault_rips, std::vector<uint64_t>{kCode});
  EXPECT_EQ(compiled.counters.retired, 5u * (100 + 512));
}

TEST(BlockCompiler, CodeThatWritesItselfRunsAsWritten) {
  // The inner loop runs compiled; between two of its runs the code changes its immediate.
  // 0x00: mov ecx, 50     0x05: add rax, IMM (at 0x08)    0x09: dec ecx    0x0b: jnz 0x05
  // 0x0d: inc byte [rip - 11] (IMM)    0x13: dec r8    0x16: jnz 0x00    0x18: ud2
  Program p{{0xB9, 0x32, 0x00, 0x00, 0x00, 0x48, 0x83, 0xC0, 0x01, 0xFF, 0xC9, 0x75, 0xF8, 0xFE, 0x05,
             0xF5, 0xFF, 0xFF, 0xFF, 0x49, 0xFF, 0xC8, 0x75, 0xE8, 0x0F, 0x0B}};
  p.gpr[R8] = 4;
  const Outcome compiled = run(p, true);
  expect_same(compiled, run(p, false));
  EXPECT_EQ(compiled.gpr[RAX], 50u * (1 + 2 + 3 + 4));
  EXPECT_EQ(compiled.counters.smc_invalidations, 4u);
}

TEST(BlockCompiler, ABlockRunsOnlyAtTheAddressItWasCompiledFor) {
  // The code frame is mapped at kCode and kAlias. The loop adds the address LEA finds at each
  // iteration to RBX; then the code jumps to its alias and the loop runs there too.
  // 0x00: mov ecx, 100          0x05: lea rdx, [rip]       0x0c: add rbx, rdx
  // 0x0f: dec ecx                0x11: jnz 0x05
  // 0x13: test r9, r9            0x16: jnz 0x25 (ud2)
  // 0x18: inc r9                 0x1b: mov r8, kAlias (imm32)  0x22: jmp r8
  // 0x25: ud2
  Program p{{0xB9, 0x64, 0x00, 0x00, 0x00, 0x48, 0x8D, 0x15, 0x00, 0x00, 0x00, 0x00, 0x48, 0x01, 0xD3,
             0xFF, 0xC9, 0x75, 0xF2, 0x4D, 0x85, 0xC9, 0x75, 0x0D, 0x49, 0xFF, 0xC1, 0x49, 0xC7, 0xC0,
             0x00, 0x00, 0x20, 0x00, 0x41, 0xFF, 0xE0, 0x0F, 0x0B}};
  const Outcome compiled = run(p, true);
  expect_same(compiled, run(p, false));
  EXPECT_EQ(compiled.gpr[RBX], 100 * (kCode + 0x0C) + 100 * (kAlias + 0x0C));
}

TEST(BlockCompiler, AFullArenaIsEmptiedAndTheBlocksCompiledAgain) {
  // 32 loops one after the other, each 16 ADDs and a DEC and JNZ, 40 iterations; the smallest
  // arena holds a few of their blocks. Then the same program again from the start (R8).
  // loop k: mov ecx, 40; (add rax, k+1) x 16; dec ecx; jnz; after the last: dec r8; jnz 0; ud2
  constexpr unsigned kLoops = 32;
  std::vector<uint8_t> code;
  for (uint8_t k = 0; k < kLoops; ++k) {
    const size_t loop_start = code.size() + 5;
    for (uint8_t b : {0xB9, 0x28, 0x00, 0x00, 0x00}) code.push_back(b);
    for (unsigned n = 0; n < 16; ++n)
      for (uint8_t b : {uint8_t{0x48}, uint8_t{0x83}, uint8_t{0xC0}, static_cast<uint8_t>(k + 1)}) code.push_back(b);
    code.push_back(0xFF), code.push_back(0xC9);
    code.push_back(0x75), code.push_back(static_cast<uint8_t>(loop_start - (code.size() + 1)));
  }
  for (uint8_t b : {0x49, 0xFF, 0xC8, 0x0F, 0x85}) code.push_back(b);  // dec r8; jnz rel32 (to 0)
  const int32_t back = -static_cast<int32_t>(code.size() + 4);
  for (unsigned k = 0; k < 4; ++k) code.push_back(static_cast<uint8_t>(back >> (8 * k)));
  code.push_back(0x0F), code.push_back(0x0B);
  Program p{code};
  p.gpr[R8] = 2;
  p.arena_bytes = 0;  // the smallest the compiler takes
  const Outcome compiled = run(p, true);
  expect_same(compiled, run(p, false));
  EXPECT_EQ(compiled.gpr[RAX], 2u * 40 * 16 * (kLoops * (kLoops + 1) / 2));
  EXPECT_GT(compiled.resets, 0u);
}

TEST(BlockCompiler, TheLargestBlockFitsTheSmallestArena) {
  // A loop of 62 read-modify-writes of memory (two soft-TLB lookups and two filter checks each,
  // the inline forms' largest code) and DEC, JNZ: a block of the longest length, compiled in the
  // smallest arena, under a data observer.
  std::vector<uint8_t> code;
  for (unsigned k = 0; k < BlockCompiler::kMaxLength - 2; ++k)  // add qword [r15 + 8k], k + 1
    for (uint8_t b : {uint8_t{0x49}, uint8_t{0x83}, uint8_t{0x47}, static_cast<uint8_t>(8 * k), static_cast<uint8_t>(k + 1)})
      code.push_back(b);
  const int32_t back = -static_cast<int32_t>(code.size()) - 3 - 6;
  for (uint8_t b : {0x49, 0xFF, 0xCD, 0x0F, 0x85}) code.push_back(b);  // dec r13; jnz rel32
  for (unsigned k = 0; k < 4; ++k) code.push_back(static_cast<uint8_t>(back >> (8 * k)));
  code.push_back(0x0F), code.push_back(0x0B);
  Program p{code};
  p.gpr[R15] = kData;
  p.gpr[R13] = 100;
  p.arena_bytes = 0;
  p.observed = true;
  const Outcome compiled = run(p, true);
  expect_same(compiled, run(p, false));
  EXPECT_EQ(compiled.resets, 0u);
  EXPECT_EQ(compiled.counters.retired, 100u * BlockCompiler::kMaxLength);
}

// ---- Random programs of the forms blocks carry out themselves -------------------------------

// Appends one instruction, encoded by Zydis, to `code`.
void encode(std::vector<uint8_t>& code, ZydisMnemonic mnemonic, std::initializer_list<ZydisEncoderOperand> operands) {
  const std::vector<uint8_t> bytes = test::encode(mnemonic, operands);
  ASSERT_FALSE(bytes.empty()) << ZydisMnemonicGetString(mnemonic);
  code.insert(code.end(), bytes.begin(), bytes.end());
}
using test::imm_op;
using test::reg_op;

// A loop (R13 times) of `length` random instructions: ADD, SUB, CMP, AND, OR, XOR, TEST and MOV
// between registers, memory and immediates at 8 (CMP, TEST), 32 and 64 bits, LEA, JZ and JNZ over
// the next instruction, runs of PUSH (registers, RSP, immediates) and of POP, some across a page,
// PUSHFQ; POP (all the status flags, read back), SETcc, JMP over the next instruction and CALL of
// a function that returns. R15 points at
// the data and R14 is a small index (neither written); memory is [R15 + disp], [R15 + R14 * s +
// disp] or RIP-relative into the data (LEA's, any registers).
constexpr size_t kFunction = 0xE00;  // in the code page, after the loop

Program random_loop(uint64_t seed, unsigned length, unsigned iterations) {
  std::mt19937_64 random(seed);
  auto pick = [&](unsigned n) { return static_cast<unsigned>(random() % n); };
  static constexpr ZydisRegister k64[] = {ZYDIS_REGISTER_RAX, ZYDIS_REGISTER_RCX, ZYDIS_REGISTER_RDX,
                                          ZYDIS_REGISTER_RBX, ZYDIS_REGISTER_RSI, ZYDIS_REGISTER_RDI,
                                          ZYDIS_REGISTER_R8,  ZYDIS_REGISTER_R9,  ZYDIS_REGISTER_R10};
  static constexpr ZydisRegister k32[] = {ZYDIS_REGISTER_EAX, ZYDIS_REGISTER_ECX, ZYDIS_REGISTER_EDX,
                                          ZYDIS_REGISTER_EBX, ZYDIS_REGISTER_ESI, ZYDIS_REGISTER_EDI,
                                          ZYDIS_REGISTER_R8D, ZYDIS_REGISTER_R9D, ZYDIS_REGISTER_R10D};
  static constexpr ZydisRegister k8[] = {ZYDIS_REGISTER_AL,  ZYDIS_REGISTER_CL,  ZYDIS_REGISTER_DL,
                                         ZYDIS_REGISTER_BL,  ZYDIS_REGISTER_SIL, ZYDIS_REGISTER_DIL,
                                         ZYDIS_REGISTER_R8B, ZYDIS_REGISTER_R9B, ZYDIS_REGISTER_R10B};
  auto reg = [&](unsigned bytes) {
    const unsigned r = pick(9);
    return reg_op(bytes == 8 ? k64[r] : bytes == 4 ? k32[r] : k8[r]);
  };
  std::vector<uint8_t> code;
  auto mem = [&](unsigned bytes) {
    ZydisEncoderOperand o{};
    o.type = ZYDIS_OPERAND_TYPE_MEMORY;
    o.mem.size = static_cast<ZyanU16>(bytes);
    switch (pick(3)) {
      case 0: o.mem.base = ZYDIS_REGISTER_R15, o.mem.displacement = pick(0x800); break;
      case 1:
        o.mem.base = ZYDIS_REGISTER_R15, o.mem.index = ZYDIS_REGISTER_R14;
        o.mem.scale = static_cast<ZyanU8>(1u << pick(4)), o.mem.displacement = pick(0x400);
        break;
      default:  // RIP-relative: Zydis takes the displacement from the next instruction
        o.mem.base = ZYDIS_REGISTER_RIP;
        o.mem.displacement = static_cast<int64_t>(kData + 0x800 + pick(0x400)) - static_cast<int64_t>(kCode + code.size()) - 16;
        break;
    }
    return o;
  };
  auto imm = [&](unsigned bytes) {
    const int64_t v = static_cast<int64_t>(random());
    return imm_op(bytes == 1 ? static_cast<int8_t>(v) : pick(4) == 0 ? static_cast<int8_t>(v) : static_cast<int32_t>(v));
  };
  static constexpr ZydisMnemonic kAlu[] = {ZYDIS_MNEMONIC_ADD, ZYDIS_MNEMONIC_SUB, ZYDIS_MNEMONIC_CMP, ZYDIS_MNEMONIC_AND,
                                           ZYDIS_MNEMONIC_OR,  ZYDIS_MNEMONIC_XOR, ZYDIS_MNEMONIC_TEST};
  for (unsigned n = 0; n < length; ++n) {
    const unsigned kind = pick(10);
    if (kind < 6) {  // ALU or MOV
      const bool is_mov = kind == 5;
      const ZydisMnemonic m = is_mov ? ZYDIS_MNEMONIC_MOV : kAlu[pick(7)];
      const bool byte_ok = m == ZYDIS_MNEMONIC_CMP || m == ZYDIS_MNEMONIC_TEST;
      const unsigned bytes = byte_ok && pick(3) == 0 ? 1 : pick(2) ? 8 : 4;
      switch (pick(m == ZYDIS_MNEMONIC_TEST ? 3 : 5)) {
        case 0: encode(code, m, {reg(bytes), reg(bytes)}); break;
        case 1: encode(code, m, {reg(bytes), imm(bytes)}); break;
        case 2: encode(code, m, {mem(bytes), reg(bytes)}); break;
        case 3: encode(code, m, {reg(bytes), mem(bytes)}); break;
        default: encode(code, m, {mem(bytes), imm(bytes)}); break;
      }
    } else if (kind == 6) {  // LEA reaches no memory: any base and index
      ZydisEncoderOperand address = mem(8);
      if (address.mem.base == ZYDIS_REGISTER_R15) address.mem.base = k64[pick(9)];
      if (address.mem.index == ZYDIS_REGISTER_R14) address.mem.index = k64[pick(9)];
      encode(code, ZYDIS_MNEMONIC_LEA, {reg(pick(2) ? 8 : 4), address});
    } else if (kind == 7) {  // JZ / JNZ over a 3-byte instruction
      encode(code, pick(2) ? ZYDIS_MNEMONIC_JZ : ZYDIS_MNEMONIC_JNZ, {imm_op(3)});
      encode(code, ZYDIS_MNEMONIC_ADD, {reg_op(ZYDIS_REGISTER_RAX), reg_op(ZYDIS_REGISTER_RCX)});
    } else if (kind == 8 && pick(2)) {  // a run of pushes (registers, RSP, immediates), then pops
      const unsigned n = 1 + pick(6);
      for (unsigned k = 0; k < n; ++k) {
        const unsigned what = pick(5);
        if (what == 0) encode(code, ZYDIS_MNEMONIC_PUSH, {imm_op(static_cast<int32_t>(random()))});
        else if (what == 1) encode(code, ZYDIS_MNEMONIC_PUSH, {reg_op(ZYDIS_REGISTER_RSP)});
        else encode(code, ZYDIS_MNEMONIC_PUSH, {reg(8)});
      }
      for (unsigned k = 0; k < n; ++k) encode(code, ZYDIS_MNEMONIC_POP, {reg(8)});
    } else if (kind == 8) {  // every status flag, read back
      encode(code, ZYDIS_MNEMONIC_PUSHFQ, {});
      encode(code, ZYDIS_MNEMONIC_POP, {reg_op(ZYDIS_REGISTER_R11)});
      encode(code, ZYDIS_MNEMONIC_XOR, {reg_op(ZYDIS_REGISTER_R12), reg_op(ZYDIS_REGISTER_R11)});
    } else if (kind == 9 && pick(3) == 0) {  // CALL the function at kFunction (rel32)
      const int32_t rel = static_cast<int32_t>(kFunction - (code.size() + 5));
      code.push_back(0xE8);
      for (unsigned k = 0; k < 4; ++k) code.push_back(static_cast<uint8_t>(rel >> (8 * k)));
    } else if (kind == 9 && pick(2) == 0) {  // JMP over a 3-byte instruction
      encode(code, ZYDIS_MNEMONIC_JMP, {imm_op(3)});
      encode(code, ZYDIS_MNEMONIC_ADD, {reg_op(ZYDIS_REGISTER_RAX), reg_op(ZYDIS_REGISTER_RCX)});
    } else {
      static constexpr ZydisMnemonic kSet[] = {ZYDIS_MNEMONIC_SETB, ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETS,
                                               ZYDIS_MNEMONIC_SETP, ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETBE};
      encode(code, kSet[pick(6)], {reg(1)});
    }
  }
  encode(code, ZYDIS_MNEMONIC_DEC, {reg_op(ZYDIS_REGISTER_R13)});
  const int32_t back = -static_cast<int32_t>(code.size()) - 6;  // JNZ rel32 to the start
  code.push_back(0x0F), code.push_back(0x85);
  for (unsigned k = 0; k < 4; ++k) code.push_back(static_cast<uint8_t>(back >> (8 * k)));
  encode(code, ZYDIS_MNEMONIC_UD2, {});
  // The function: add rax, rcx; xor rdx, rax; ret.
  code.resize(kFunction, 0xCC);
  for (uint8_t b : {0x48, 0x01, 0xC8, 0x48, 0x31, 0xC2, 0xC3}) code.push_back(b);
  Program p{code};
  for (unsigned r = 0; r < 16; ++r) p.gpr[r] = random();
  p.gpr[R15] = kData;
  p.gpr[R14] = pick(64);
  p.gpr[R13] = iterations;
  p.gpr[RSP] = pick(2) ? kData + 0x2800 : kData + 0x2000 + 8 * pick(6);  // runs within a page, or across
  return p;
}

TEST(BlockCompiler, RandomProgramsOfTheInlineFormsLeaveWhatTheInterpreterLeaves) {
  for (uint64_t seed = 1; seed <= 80; ++seed) {
    SCOPED_TRACE(seed);
    Program p = random_loop(seed, 12 + seed % 40, 40);
    p.observed = seed % 3 == 0;
    ASSERT_EQ(p.code[kFunction - 1], 0xCC);  // the loop ends before the function
    const Outcome compiled = run(p, true);
    expect_same(compiled, run(p, false));
    EXPECT_EQ(compiled.vectors, std::vector<uint8_t>{UD});
  }
}

}  // namespace
}  // namespace pgsim

// The core alone on tight loops: guest instructions per host second (the goal is >= 150 million on
// one host core). Reported as items_per_second; each benchmark runs a fixed instruction budget.
// Also reported: host_tsc_per_insn, host time-stamp-counter cycles per guest instruction, what
// pgsim's own interpreter (a decode cache and a software TLB, Bochs's design) pays to fetch, decode
// and carry out an instruction: the measured basis of vmm.cost.interpret_cycles (configs/eras/).
#include <benchmark/benchmark.h>
#include <x86intrin.h>

#include "tests/isa/harness.h"

namespace pgsim::test {
namespace {

using namespace isa;

constexpr uint64_t kBudget = 10'000'000;  // guest instructions per benchmark iteration

// Runs the code at 0x1000 from its start, kBudget instructions per benchmark iteration, and
// reports guest instructions per host second and host TSC cycles per guest instruction.
void measure(benchmark::State& state, Machine& m) {
  uint64_t retired = 0;
  const uint64_t tsc_start = __rdtsc();
  for (auto _ : state) {
    m.state().rip = 0x1000;
    m.reg(RCX) = 0x7FFFFFFF;
    retired += m.core.run(kBudget);
  }
  const uint64_t tsc = __rdtsc() - tsc_start;
  state.counters["host_tsc_per_insn"] = retired ? static_cast<double>(tsc) / static_cast<double>(retired) : 0.0;
  state.SetItemsProcessed(static_cast<int64_t>(retired));
}

void run_loop(benchmark::State& state, const std::vector<uint8_t>& code, bool long64) {
  Machine m;
  if (long64) make_long64(m.state(), 3);
  else make_prot32(m.state(), 3);
  m.load_code(0x1000, code);
  m.reg(RBX) = 0x100000;
  measure(state, m);
}

// L: add rax, rcx; dec ecx; jnz L  (register ALU + branch)
void BM_RegisterLoop64(benchmark::State& state) {
  run_loop(state, {0x48, 0x01, 0xC8, 0xFF, 0xC9, 0x75, 0xF9}, true);
}
BENCHMARK(BM_RegisterLoop64)->Unit(benchmark::kMillisecond);

// L: mov rdx, [rbx + rcx*8 & 0xFF8]; add rax, rdx; mov [rbx+8], rax; dec ecx; jnz L
// (loads and stores through segmentation and the soft TLB)
void BM_MemoryLoop64(benchmark::State& state) {
  run_loop(state, {0x89, 0xCE,                    // mov esi, ecx
                   0x81, 0xE6, 0xFF, 0x01, 0x00, 0x00,  // and esi, 0x1FF
                   0x48, 0x8B, 0x14, 0xF3,        // mov rdx, [rbx + rsi*8]
                   0x48, 0x01, 0xD0,              // add rax, rdx
                   0x48, 0x89, 0x43, 0x08,        // mov [rbx+8], rax
                   0xFF, 0xC9,                    // dec ecx
                   0x75, 0xE9},                   // jnz -23
           true);
}
BENCHMARK(BM_MemoryLoop64)->Unit(benchmark::kMillisecond);

// The register loop in 32-bit protected mode (segment limit checks on every access path).
void BM_RegisterLoop32(benchmark::State& state) {
  run_loop(state, {0x01, 0xC8, 0x49, 0x75, 0xFB}, false);  // add eax, ecx; dec ecx; jnz
}
BENCHMARK(BM_RegisterLoop32)->Unit(benchmark::kMillisecond);

// L: call f (on the next page); dec ecx; jnz L   f: add rax, rcx; ret   (two page changes per
// iteration: the decoded-page lookup on a code-page change)
void BM_CrossPageCalls64(benchmark::State& state) {
  Machine m;
  make_long64(m.state(), 3);
  m.ram.load(0x2000, {0x48, 0x01, 0xC8, 0xC3});                               // f: add rax, rcx; ret
  m.load_code(0x1000, {0xE8, 0xFB, 0x0F, 0x00, 0x00, 0xFF, 0xC9, 0x75, 0xF7});  // call 0x2000; dec ecx; jnz
  m.reg(RSP) = 0x80000;
  measure(state, m);
}
BENCHMARK(BM_CrossPageCalls64)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace pgsim::test

BENCHMARK_MAIN();

#include "expected_checksums.h"

#include <numeric>
#include <utility>
#include <vector>

namespace pgsim::guest_test {
namespace {

// A fold of one observation per iteration: sum = sum * k + observed(i).
template <typename Observed>
uint64_t fold(uint64_t iters, uint64_t k, Observed observed) {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < iters; ++i) sum = sum * k + observed(i);
    return sum;
}

uint64_t xorshift64(uint64_t& state) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

// The null system call returns its argument plus one.
uint64_t syscall_checksum(uint64_t iters) {
    return fold(iters, 3, [](uint64_t i) { return i + 1; });
}

// Reading port 0x21 returns the master PIC's mask: all eight IRQs masked.
uint64_t in_checksum(uint64_t iters) {
    return fold(iters, 3, [](uint64_t i) { return uint64_t{0xFF} ^ i; });
}

// CR8 gets i mod 16; the value read back at the end is the last one written.
uint64_t cr8wr_checksum(uint64_t iters) {
    uint64_t sum = fold(iters, 3, [](uint64_t i) { return i & 15; });
    return sum * 3 + ((iters - 1) & 15);
}

// Interrupts on and off change nothing the loop folds.
uint64_t clisti_checksum(uint64_t iters) {
    return fold(iters, 3, [](uint64_t i) { return i; });
}

uint64_t callret_checksum(uint64_t iters) {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < iters; ++i) sum = (sum ^ i) * 3 + 1;
    return sum;
}

// Every access faults; the kernel's fault count (1, 2, ...) is what the process reads.
uint64_t pgfault_checksum(uint64_t iters) {
    return fold(iters, 5, [](uint64_t i) { return i + 1; });
}

// Every division faults with #DE (vector 0); R14 = vector | (faults delivered so far << 8).
uint64_t divzero_checksum(uint64_t iters) {
    return fold(iters, 7, [](uint64_t i) { return (i + 1) << 8; });
}

// The scratch page alternates between the frames holding A and B.
uint64_t ptemod_checksum(uint64_t iters) {
    const uint64_t values[2] = {0x0123456789ABCDEFull, 0xFEDCBA9876543210ull};
    return fold(iters, 3, [&](uint64_t i) { return values[i & 1] ^ i; });
}

// The first process is pid 1 and pids are never reused, so child i is pid i + 2. Before fork i
// the parent writes i + p into its data page p; the child exits with (7i + 3 + the sum of what it
// reads) mod 128.
uint64_t forkwait_checksum(uint64_t iters, uint64_t pages) {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < iters; ++i) {
        uint64_t seen = 0;
        for (uint64_t p = 0; p < pages; ++p) seen += i + p;
        sum = sum * 31 + ((i * 7 + 3 + seen) & 0x7F) + (i + 2);
    }
    return sum;
}

uint64_t compute_checksum(uint64_t iters) {
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; ++i) table[i] = i * 2654435761u;
    uint64_t x = 0x9E3779B97F4A7C15ull, h = 0xCBF29CE484222325ull;
    for (uint64_t i = 0; i < iters; ++i) {
        xorshift64(x);
        h = (h ^ table[x & 255]) * 0x100000001B3ull;
        table[(x >> 8) & 255] += static_cast<uint32_t>(h);
        h += (x >> 3) % (i + 1);
    }
    return h ^ x;
}

// Sattolo's shuffle of 0..n-1 (one cycle), then a walk from 0 summing the places visited.
uint64_t memwalk_checksum(uint64_t iters, uint64_t ws) {
    const uint64_t n = ws / 8;
    std::vector<uint64_t> next(n);
    std::iota(next.begin(), next.end(), uint64_t{0});
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    for (uint64_t i = n - 1; i > 0; --i) std::swap(next[i], next[xorshift64(rng) % i]);
    uint64_t at = 0, sum = 0;
    for (uint64_t k = 0; k < iters; ++k) sum += (at = next[at]);
    return sum;
}

// The child answers t with 3t + 1; the parent mixes in the round number.
uint64_t ctxswitch_checksum(uint64_t iters) {
    uint64_t token = 1;
    for (uint64_t i = 0; i < iters; ++i) token = (token * 3 + 1) ^ i;
    return token;
}

// The generated function computes imm = 7i + 1, then xor (even i) or add (odd i) imm2 = i ^
// 0x5A5A5A5A, in 32 bits.
uint64_t smc_checksum(uint64_t iters) {
    return fold(iters, 3, [](uint64_t i) -> uint64_t {
        uint32_t imm = static_cast<uint32_t>(i * 7 + 1);
        uint32_t imm2 = static_cast<uint32_t>(i) ^ 0x5A5A5A5Au;
        return (i & 1) ? imm + imm2 : imm ^ imm2;
    });
}

}  // namespace

std::optional<uint64_t> expected_checksum(const std::string& bench, uint64_t iters,
                                          uint64_t working_set_bytes, uint64_t forkwait_pages) {
    if (bench == "syscall") return syscall_checksum(iters);
    if (bench == "in") return in_checksum(iters);
    if (bench == "cr8wr") return cr8wr_checksum(iters);
    if (bench == "callret") return callret_checksum(iters);
    if (bench == "pgfault") return pgfault_checksum(iters);
    if (bench == "divzero") return divzero_checksum(iters);
    if (bench == "ptemod") return ptemod_checksum(iters);
    if (bench == "forkwait") return forkwait_checksum(iters, forkwait_pages);
    if (bench == "compute") return compute_checksum(iters);
    if (bench == "memwalk") return memwalk_checksum(iters, working_set_bytes);
    if (bench == "ctxswitch") return ctxswitch_checksum(iters);
    if (bench == "smc" || bench == "ksmc") return smc_checksum(iters);  // the same JIT, in ring 3 or 0
    if (bench == "clisti") return clisti_checksum(iters);
    return std::nullopt;
}

}  // namespace pgsim::guest_test

// The kernel image itself: it must stay within what pgsim's core implements, the integer ISA and
// the system instructions (no x87, MMX, SSE or AVX: the guest is built with -mgeneral-regs-only),
// and its Multiboot header must sit where loaders look for it.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "guest_runner.h"

namespace pgsim::guest_test {
namespace {

struct Disassembly {
    std::vector<std::string> lines;  // "address: mnemonic operands"
};

// The code the CPU runs in 64-bit mode: the kernel's .text and the ring-3 image (.user); the
// 32-bit entry stub (.boot) would disassemble wrongly as 64-bit code and is left out.
Disassembly disassemble_long_mode_code() {
    auto run = run_process({PGSIM_OBJDUMP, "-d", "--no-show-raw-insn", "-j", ".text", "-j", ".user",
                            PGSIM_KERNEL_ELF64},
                           std::chrono::seconds(60));
    EXPECT_EQ(run.exit_status, 0) << run.serial;
    Disassembly d;
    std::istringstream in(run.serial);
    for (std::string line; std::getline(in, line);) {
        size_t tab = line.find(":\t");  // "  100130:\tlea    0x1(%rdi,%rdi,2),%rax"
        if (tab != std::string::npos) d.lines.push_back(line.substr(tab + 2));
    }
    return d;
}

TEST(GuestImage, UsesNoFloatingPointOrVectorInstructions) {
    auto d = disassemble_long_mode_code();
    ASSERT_GT(d.lines.size(), 1000u) << "objdump found almost no code";
    // x87 stack, MMX, SSE, AVX and AVX-512 mask registers.
    static const char* const vector_registers[] = {"%st", "%mm", "%xmm", "%ymm", "%zmm", "%k0",
                                                   "%k1", "%k2", "%k3", "%k4", "%k5", "%k6", "%k7"};
    static const std::set<std::string> state_instructions = {
        "emms", "ldmxcsr", "stmxcsr", "fxsave", "fxrstor", "fxsave64", "fxrstor64", "xsave",
        "xrstor", "xsaveopt", "xsavec", "xsaves", "xrstors", "xgetbv", "xsetbv", "vzeroupper"};
    for (const auto& line : d.lines) {
        std::string mnemonic = line.substr(0, line.find_first_of(" \t"));
        for (const char* reg : vector_registers)
            EXPECT_EQ(line.find(reg), std::string::npos) << line;
        EXPECT_FALSE(state_instructions.count(mnemonic)) << line;
        // x87 mnemonics all start with f; AVX ones with v (VERR and VERW are integer).
        EXPECT_FALSE(mnemonic[0] == 'f') << line;
        EXPECT_FALSE(mnemonic[0] == 'v' && mnemonic != "verr" && mnemonic != "verw") << line;
    }
}

// Multiboot 1: the header (magic, flags, checksum summing to zero) within the first 8 KiB,
// 4-byte aligned; the image is ELF32 because QEMU's -kernel takes nothing else.
TEST(GuestImage, IsAnElf32MultibootImage) {
    std::ifstream f(PGSIM_KERNEL_IMAGE, std::ios::binary);
    ASSERT_TRUE(f) << PGSIM_KERNEL_IMAGE;
    std::vector<unsigned char> head(8192);
    f.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<size_t>(f.gcount()));
    ASSERT_GE(head.size(), 64u);
    EXPECT_EQ(std::string(head.begin() + 1, head.begin() + 4), "ELF");
    EXPECT_EQ(head[4], 1) << "ELFCLASS32 expected";
    auto word = [&](size_t at) {
        return uint32_t(head[at]) | uint32_t(head[at + 1]) << 8 | uint32_t(head[at + 2]) << 16 |
               uint32_t(head[at + 3]) << 24;
    };
    bool found = false;
    for (size_t at = 0; at + 12 <= head.size(); at += 4) {
        if (word(at) != 0x1BADB002) continue;
        found = true;
        EXPECT_EQ(uint32_t(word(at) + word(at + 4) + word(at + 8)), 0u) << "checksum";
        EXPECT_EQ(word(at + 4) & 0x2, 0x2u) << "the kernel needs the memory map";
        EXPECT_EQ(word(at + 4) & 0x10000, 0u) << "no a.out kludge: the ELF headers are used";
        break;
    }
    EXPECT_TRUE(found) << "no Multiboot header in the first 8 KiB";
}

}  // namespace
}  // namespace pgsim::guest_test

// The kernel image itself: it must stay within what pgsim's core implements, the integer ISA and
// the system instructions (no x87, MMX, SSE or AVX: the guest is built with -mgeneral-regs-only),
// and its Multiboot header must sit where loaders look for it.
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <map>
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
        // x87 mnemonics all start with f; AVX ones with v (VERR and VERW are integer, VMCALL is
        // the hypercall).
        EXPECT_FALSE(mnemonic[0] == 'f') << line;
        EXPECT_FALSE(mnemonic[0] == 'v' && mnemonic != "verr" && mnemonic != "verw" && mnemonic != "vmcall") << line;
    }
}

// The kernel's 64-bit code (.text) by function: objdump names each function ("<name>:").
std::map<std::string, std::vector<std::string>> disassemble_kernel_functions() {
  auto run = run_process({PGSIM_OBJDUMP, "-d", "--no-show-raw-insn", "-j", ".text", PGSIM_KERNEL_ELF64},
                         std::chrono::seconds(60));
  EXPECT_EQ(run.exit_status, 0) << run.serial;
  std::map<std::string, std::vector<std::string>> functions;
  std::vector<std::string>* current = nullptr;
  std::istringstream in(run.serial);
  for (std::string line; std::getline(in, line);) {
    size_t open = line.find(" <"), close = line.rfind(">:");
    if (open != std::string::npos && close != std::string::npos && close > open && line[0] != ' ') {
      current = &functions[line.substr(open + 2, close - open - 2)];  // "0000000000100130 <kmain>:"
      continue;
    }
    size_t tab = line.find(":\t");
    if (current && tab != std::string::npos) current->push_back(line.substr(tab + 2));
  }
  return functions;
}

// Whether an instruction (objdump's AT&T text) is privileged or sensitive on x86: it traps at CPL 3,
// or behaves differently there without trapping (the classic set: PUSHF, POPF, SGDT, SIDT, SLDT,
// SMSW, STR, LAR, LSL, VERR, VERW, segment-register moves, far transfers, INT n, IRET).
bool is_sensitive(const std::string& line) {
  std::string mnemonic = line.substr(0, line.find_first_of(" \t"));
  static const std::set<std::string> sensitive = {
      "cli", "sti", "hlt", "pushf", "pushfq", "pushfw", "popf", "popfq", "popfw", "in", "inb", "inw", "inl",
      "out", "outb", "outw", "outl", "insb", "insw", "insl", "outsb", "outsw", "outsl", "lgdt", "lidt",
      "lldt", "ltr", "sgdt", "sidt", "sldt", "str", "smsw", "lmsw", "clts", "invlpg", "invpcid", "invd",
      "wbinvd", "rdmsr", "wrmsr", "swapgs", "sysret", "sysretq", "sysretl", "sysexit", "iret", "iretq",
      "iretl", "iretw", "lret", "lretq", "lretl", "lretw", "lcall", "ljmp", "int", "into", "lar",
      "lsl", "verr", "verw"};
  // INT3 is left out: it is also the padding between the trap stubs, which nothing executes.
  if (sensitive.count(mnemonic)) return true;
  // MOV of a control, debug or segment register, PUSH and POP of a segment register; a segment
  // prefix on a memory operand ("%fs:0x28") is not a segment-register access.
  if (mnemonic.rfind("mov", 0) == 0 || mnemonic.rfind("push", 0) == 0 || mnemonic.rfind("pop", 0) == 0) {
    static const std::set<std::string> segments = {"cs", "ds", "es", "fs", "gs", "ss"};
    for (size_t at = line.find('%'); at != std::string::npos; at = line.find('%', at + 1)) {
      size_t end = at + 1;
      while (end < line.size() && std::isalnum(static_cast<unsigned char>(line[end]))) ++end;
      const std::string reg = line.substr(at + 1, end - at - 1);
      const bool control_or_debug = reg.size() > 2 && (reg.rfind("cr", 0) == 0 || reg.rfind("dr", 0) == 0 ||
                                                      reg.rfind("db", 0) == 0) &&
                                    std::isdigit(static_cast<unsigned char>(reg[2]));
      if (control_or_debug || (segments.count(reg) && (end >= line.size() || line[end] != ':'))) return true;
    }
  }
  return false;
}

// Every privileged or sensitive operation of the kernel goes through the pvops table: outside the
// native implementation (native_*) and the selftest's probes (probe_*, which run sensitive
// instructions on purpose, in both rings), the kernel's 64-bit code holds none, so the paravirtual
// path (pv_* and everything shared) runs none. The 32-bit entry before detection (.boot) is not
// in .text. The paravirtual functions hypercall with VMCALL.
TEST(GuestImage, PrivilegedAndSensitiveInstructionsOnlyInTheNativePvops) {
  const auto functions = disassemble_kernel_functions();
  ASSERT_GT(functions.size(), 50u) << "objdump found almost no functions";
  size_t native_sensitive = 0, pv_functions = 0, pv_hypercalls = 0;
  for (const auto& [name, insns] : functions) {
    const bool allowed = name.rfind("native_", 0) == 0 || name.rfind("probe_", 0) == 0;
    if (name.rfind("pv_", 0) == 0) ++pv_functions;
    for (const auto& line : insns) {
      if (line.rfind("vmcall", 0) == 0) {
        EXPECT_EQ(name.rfind("pv_", 0), 0u) << "a hypercall outside the paravirtual implementation: " << name;
        ++pv_hypercalls;
      }
      if (!is_sensitive(line)) continue;
      EXPECT_TRUE(allowed) << name << ": " << line;
      if (name.rfind("native_", 0) == 0) ++native_sensitive;
    }
  }
  // The check sees what it looks for: the native side holds the instructions, the paravirtual side
  // the hypercalls (trap return, event delivery, page-table batches, ...).
  EXPECT_GE(native_sensitive, 20u);
  EXPECT_GE(pv_functions, 20u);
  EXPECT_GE(pv_hypercalls, 10u);
  for (const char* pv : {"pv_irq_enable", "pv_irq_disable", "pv_trapret", "pv_mmu_flush", "pv_load_idt"})
    EXPECT_TRUE(functions.count(pv)) << pv << " is not a function of the image";
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

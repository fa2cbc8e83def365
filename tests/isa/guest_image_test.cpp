// Every instruction in the guest kernel image (workloads/) has semantics in the core: its
// executable sections are decoded linearly (the 32-bit boot section in protected mode, the rest
// in 64-bit mode) and each instruction must dispatch to a handler.
#include <elf.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "isa/decoder.h"
#include "isa/dispatch.h"

namespace pgsim::test {
namespace {

using namespace isa;

TEST(GuestImage, EveryKernelInstructionHasSemantics) {
  std::ifstream file(PGSIM_GUEST_KERNEL_ELF64, std::ios::binary);
  ASSERT_TRUE(file) << "cannot open " << PGSIM_GUEST_KERNEL_ELF64;
  const std::vector<uint8_t> image((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  ASSERT_GE(image.size(), sizeof(Elf64_Ehdr));
  Elf64_Ehdr eh;
  std::memcpy(&eh, image.data(), sizeof eh);
  ASSERT_EQ(eh.e_ident[EI_CLASS], ELFCLASS64);
  std::vector<Elf64_Shdr> sections(eh.e_shnum);
  std::memcpy(sections.data(), image.data() + eh.e_shoff, eh.e_shnum * sizeof(Elf64_Shdr));
  const char* names = reinterpret_cast<const char*>(image.data() + sections[eh.e_shstrndx].sh_offset);

  const Decoder decoder(Dispatch::instance());
  std::map<std::string, uint64_t> missing;  // mnemonic -> first address
  uint64_t decoded = 0, invalid = 0;
  for (const Elf64_Shdr& sh : sections) {
    if (!(sh.sh_flags & SHF_EXECINSTR) || sh.sh_type != SHT_PROGBITS) continue;
    const std::string name = names + sh.sh_name;
    const Mode mode = name == ".boot" ? Mode::Protected32 : Mode::Long64;
    const uint8_t* bytes = image.data() + sh.sh_offset;
    for (uint64_t off = 0; off < sh.sh_size;) {
      Insn insn;
      const DecodeStatus status = decoder.decode(mode, bytes + off, sh.sh_size - off, insn);
      // Bytes that are no instruction in this mode (the guest's #UD probes, e.g. PUSH CS in 64-bit
      // code) raise #UD as the architecture says; only valid instructions need semantics.
      if (status == DecodeStatus::Invalid) ++invalid;
      else if (insn.cls == InsnClass::Unimplemented)
        missing.try_emplace(name + " " + Decoder::mnemonic_name(insn.mnemonic), sh.sh_addr + off);
      off += insn.length ? insn.length : 1;
      ++decoded;
    }
  }
  std::printf("guest kernel image: %llu instructions decoded, %llu invalid in their mode (#UD), %zu without semantics\n",
              static_cast<unsigned long long>(decoded), static_cast<unsigned long long>(invalid), missing.size());
  for (const auto& [what, address] : missing) ADD_FAILURE() << what << " first at 0x" << std::hex << address;
  EXPECT_GT(decoded, 1000u);
}

}  // namespace
}  // namespace pgsim::test

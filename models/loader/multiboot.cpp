#include "models/loader/multiboot.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace pgsim::models::multiboot {
namespace {

constexpr uint64_t kPage = 4096;
// Where the loader keeps its GDT (below the EBDA, in memory the specification leaves to the OS).
constexpr uint64_t kGdtAddress = 0x500;
constexpr uint16_t kCodeSelector = 0x08, kDataSelector = 0x10;  // as QEMU's option ROM

std::string hex(uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

std::vector<uint8_t> read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ImageError(file, "cannot open the file");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

template <class T>
T read_at(const std::vector<uint8_t>& bytes, uint64_t offset, const std::filesystem::path& file,
          const char* what) {
  if (offset > bytes.size() || sizeof(T) > bytes.size() - offset)
    throw ImageError(file, std::string("truncated: the ") + what + " at offset " + hex(offset) +
                               " extends past the end of the file (" +
                               std::to_string(bytes.size()) + " bytes)");
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

struct Header {
  uint64_t offset;  // in the file
  uint32_t flags, header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};

Header find_header(const std::vector<uint8_t>& image, const std::filesystem::path& file) {
  const size_t limit = std::min(image.size(), kHeaderSearchBytes);
  for (size_t off = 0; off + 12 <= limit; off += 4) {
    uint32_t magic, flags, checksum;
    std::memcpy(&magic, &image[off], 4);
    if (magic != kHeaderMagic) continue;
    std::memcpy(&flags, &image[off + 4], 4);
    std::memcpy(&checksum, &image[off + 8], 4);
    if (magic + flags + checksum != 0) continue;
    Header h{off, flags, 0, 0, 0, 0, 0};
    if (flags & HF_AOUT_KLUDGE) {
      h.header_addr = read_at<uint32_t>(image, off + 12, file, "Multiboot header address fields");
      h.load_addr = read_at<uint32_t>(image, off + 16, file, "Multiboot header address fields");
      h.load_end_addr = read_at<uint32_t>(image, off + 20, file, "Multiboot header address fields");
      h.bss_end_addr = read_at<uint32_t>(image, off + 24, file, "Multiboot header address fields");
      h.entry_addr = read_at<uint32_t>(image, off + 28, file, "Multiboot header address fields");
    }
    const uint32_t unknown_required = flags & 0xFFFF & ~kRequiredFlagsUnderstood;
    if (unknown_required)
      throw ImageError(file, "the Multiboot header requires features this loader does not know (flags " +
                                 hex(unknown_required) + ")");
    return h;
  }
  throw ImageError(file, "no Multiboot header (magic 0x1BADB002 with a valid checksum) in the first " +
                             std::to_string(kHeaderSearchBytes) + " bytes");
}

// Checked writes into guest RAM.
class Writer {
 public:
  Writer(GuestRam ram, const std::filesystem::path& file) : ram_(ram), file_(file) {}

  void check(uint64_t paddr, uint64_t len, const std::string& what) const {
    if (paddr > ram_.size || len > ram_.size - paddr)
      throw ImageError(file_, what + " [" + hex(paddr) + ", " + hex(paddr + len) +
                                  ") lies outside RAM [0x0, " + hex(ram_.size) + ")");
  }
  void copy(uint64_t paddr, const uint8_t* data, uint64_t len, const std::string& what) {
    check(paddr, len, what);
    std::memcpy(ram_.base + paddr, data, len);
  }
  void zero(uint64_t paddr, uint64_t len, const std::string& what) {
    check(paddr, len, what);
    std::memset(ram_.base + paddr, 0, len);
  }
  template <class T>
  void put(uint64_t paddr, T value) { copy(paddr, reinterpret_cast<const uint8_t*>(&value), sizeof(T), "boot information"); }

 private:
  GuestRam ram_;
  const std::filesystem::path& file_;
};

struct Loaded {
  uint64_t start = ~0ull, end = 0;
  uint64_t entry = 0;
};

template <class Ehdr, class Phdr>
Loaded load_elf(const std::vector<uint8_t>& image, const std::filesystem::path& file, Writer& ram) {
  const auto eh = read_at<Ehdr>(image, 0, file, "ELF header");
  const unsigned expected_machine = sizeof(Ehdr) == sizeof(Elf64_Ehdr) ? EM_X86_64 : EM_386;
  if (eh.e_machine != expected_machine && eh.e_machine != EM_386 && eh.e_machine != EM_X86_64)
    throw ImageError(file, "not an x86 ELF image (e_machine " + std::to_string(eh.e_machine) + ")");
  if (eh.e_phentsize != sizeof(Phdr))
    throw ImageError(file, "unexpected ELF program header size " + std::to_string(eh.e_phentsize));
  if (eh.e_phnum == 0) throw ImageError(file, "the ELF image has no program headers");
  Loaded out;
  std::vector<Phdr> loads;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    const auto ph = read_at<Phdr>(image, eh.e_phoff + uint64_t{i} * sizeof(Phdr), file, "ELF program header");
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    const std::string what = "ELF segment " + std::to_string(i);
    if (ph.p_filesz > ph.p_memsz) throw ImageError(file, what + " has a file size above its memory size");
    if (ph.p_offset > image.size() || ph.p_filesz > image.size() - ph.p_offset)
      throw ImageError(file, "truncated: " + what + " needs file bytes [" + hex(ph.p_offset) + ", " +
                                 hex(ph.p_offset + ph.p_filesz) + ") but the file has " +
                                 std::to_string(image.size()) + " bytes");
    ram.copy(ph.p_paddr, image.data() + ph.p_offset, ph.p_filesz, what);
    ram.zero(ph.p_paddr + ph.p_filesz, ph.p_memsz - ph.p_filesz, what);
    out.start = std::min<uint64_t>(out.start, ph.p_paddr);
    out.end = std::max<uint64_t>(out.end, ph.p_paddr + ph.p_memsz);
    loads.push_back(ph);
  }
  if (loads.empty()) throw ImageError(file, "the ELF image has no loadable segment");
  // The entry point is physical; an image linked at a higher virtual address gives it through
  // the segment that contains it.
  out.entry = eh.e_entry;
  for (const Phdr& ph : loads)
    if (eh.e_entry >= ph.p_vaddr && eh.e_entry - ph.p_vaddr < ph.p_memsz) {
      out.entry = eh.e_entry - ph.p_vaddr + ph.p_paddr;
      break;
    }
  return out;
}

Loaded load_aout(const std::vector<uint8_t>& image, const Header& h, const std::filesystem::path& file,
                 Writer& ram) {
  if (h.header_addr < h.load_addr || h.header_addr - h.load_addr > h.offset)
    throw ImageError(file, "the Multiboot header's header_addr " + hex(h.header_addr) +
                               " and load_addr " + hex(h.load_addr) + " disagree with its file offset " +
                               hex(h.offset));
  const uint64_t file_start = h.offset - (h.header_addr - h.load_addr);
  uint64_t load_size = image.size() - file_start;
  if (h.load_end_addr != 0) {
    if (h.load_end_addr < h.load_addr) throw ImageError(file, "load_end_addr is below load_addr");
    load_size = h.load_end_addr - h.load_addr;
    if (load_size > image.size() - file_start)
      throw ImageError(file, "truncated: the header asks for " + std::to_string(load_size) +
                                 " bytes from offset " + hex(file_start) + " but the file has " +
                                 std::to_string(image.size()) + " bytes");
  }
  ram.copy(h.load_addr, image.data() + file_start, load_size, "the image (a.out kludge)");
  uint64_t end = h.load_addr + load_size;
  if (h.bss_end_addr != 0) {
    if (h.bss_end_addr < end) throw ImageError(file, "bss_end_addr is below the end of the loaded image");
    ram.zero(end, h.bss_end_addr - end, "the bss (a.out kludge)");
    end = h.bss_end_addr;
  }
  return {h.load_addr, end, h.entry_addr};
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

}  // namespace

BootInfo load(const BootRequest& request, GuestRam ram) {
  const std::filesystem::path& file = request.kernel;
  const std::vector<uint8_t> image = read_file(file);
  if (image.empty()) throw ImageError(file, "the file is empty");
  const Header header = find_header(image, file);
  Writer writer(ram, file);

  BootInfo boot;
  Loaded loaded;
  const bool is_elf = image.size() >= 4 && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
  if (header.flags & HF_AOUT_KLUDGE) {
    loaded = load_aout(image, header, file, writer);
    boot.aout_kludge = true;
  } else if (is_elf) {
    const uint8_t elf_class = read_at<uint8_t>(image, EI_CLASS, file, "ELF identification");
    if (read_at<uint8_t>(image, EI_DATA, file, "ELF identification") != ELFDATA2LSB)
      throw ImageError(file, "the ELF image is not little-endian");
    if (elf_class == ELFCLASS32) {
      loaded = load_elf<Elf32_Ehdr, Elf32_Phdr>(image, file, writer);
    } else if (elf_class == ELFCLASS64) {
      loaded = load_elf<Elf64_Ehdr, Elf64_Phdr>(image, file, writer);
      boot.elf64 = true;
    } else {
      throw ImageError(file, "unknown ELF class " + std::to_string(elf_class));
    }
  } else {
    throw ImageError(file, "not an ELF image, and its Multiboot header has no a.out-kludge address "
                           "fields (flag bit 16) saying where to load it");
  }
  if (loaded.entry > 0xFFFFFFFFull || loaded.entry >= ram.size)
    throw ImageError(file, "the entry point " + hex(loaded.entry) + " is not in RAM below 4 GiB");
  boot.entry = static_cast<uint32_t>(loaded.entry);
  boot.kernel_start = loaded.start;
  boot.kernel_end = loaded.end;

  // Modules, each page-aligned after the previous one.
  uint64_t next = align_up(loaded.end, kPage);
  struct PlacedModule { uint32_t start, end; std::string cmdline; };
  std::vector<PlacedModule> placed;
  for (const Module& m : request.modules) {
    const std::vector<uint8_t> data = read_file(m.file);
    Writer module_writer(ram, m.file);
    module_writer.copy(next, data.data(), data.size(), "the module");
    placed.push_back({static_cast<uint32_t>(next), static_cast<uint32_t>(next + data.size()), m.cmdline});
    next = align_up(next + data.size(), kPage);
  }

  // The information structure, its strings, module list and memory map, after everything else.
  const uint64_t info = next;
  uint64_t cursor = info + 128;  // the structure itself is 88 bytes (spec 3.3)
  auto put_string = [&](const std::string& s) {
    const uint64_t at = cursor;
    writer.copy(at, reinterpret_cast<const uint8_t*>(s.c_str()), s.size() + 1, "boot information");
    cursor += s.size() + 1;
    return static_cast<uint32_t>(at);
  };
  writer.zero(info, 128, "boot information");
  // The kernel's name opens its command line, as QEMU and GRUB put it there; its file name only,
  // not the folder it was found in, so that where a checkout lives does not change what the guest
  // parses (and so its counts).
  const std::string name = file.filename().string();
  const std::string cmdline = request.cmdline.empty() ? name : name + " " + request.cmdline;
  const uint32_t cmdline_addr = put_string(cmdline);
  const uint32_t name_addr = put_string(request.boot_loader_name);
  std::vector<uint32_t> module_strings;
  for (const PlacedModule& m : placed) module_strings.push_back(put_string(m.cmdline));
  cursor = align_up(cursor, 8);
  const uint32_t mods_addr = static_cast<uint32_t>(cursor);
  for (size_t i = 0; i < placed.size(); ++i) {
    writer.put<uint32_t>(cursor, placed[i].start);
    writer.put<uint32_t>(cursor + 4, placed[i].end);
    writer.put<uint32_t>(cursor + 8, module_strings[i]);
    writer.put<uint32_t>(cursor + 12, 0);
    cursor += 16;
  }
  const uint32_t mmap_addr = static_cast<uint32_t>(cursor);
  for (const MemoryRange& r : request.memory.e820()) {
    writer.put<uint32_t>(cursor, 20);  // size of the entry after this field
    writer.put<uint64_t>(cursor + 4, r.base);
    writer.put<uint64_t>(cursor + 12, r.length);
    writer.put<uint32_t>(cursor + 20, r.type);
    cursor += 24;
  }
  const uint32_t mmap_length = static_cast<uint32_t>(cursor - mmap_addr);

  // mem_upper: the usable memory from 1 MiB up to the first hole, as the firmware's e820 says.
  uint64_t upper = 0;
  for (const MemoryRange& r : request.memory.e820())
    if (r.base == PcMemoryMap::kHighMemoryBase && r.type == MemoryRange::Usable) upper = r.length;
  writer.put<uint32_t>(info + 0, IF_MEMORY | IF_BOOT_DEVICE | IF_CMDLINE | IF_MODULES | IF_MMAP |
                                     IF_BOOT_LOADER_NAME);
  writer.put<uint32_t>(info + 4, static_cast<uint32_t>(PcMemoryMap::kConventionalEnd / 1024));  // mem_lower
  writer.put<uint32_t>(info + 8, static_cast<uint32_t>(upper / 1024));  // mem_upper
  writer.put<uint32_t>(info + 12, 0x8000FFFF);  // boot_device: first BIOS disk, no partition (as QEMU)
  writer.put<uint32_t>(info + 16, cmdline_addr);
  writer.put<uint32_t>(info + 20, static_cast<uint32_t>(placed.size()));
  writer.put<uint32_t>(info + 24, mods_addr);
  writer.put<uint32_t>(info + 44, mmap_length);
  writer.put<uint32_t>(info + 48, mmap_addr);
  writer.put<uint32_t>(info + 64, name_addr);
  boot.info_address = static_cast<uint32_t>(info);
  boot.loaded_end = cursor;

  // The loader's flat GDT: null, 32-bit code at 0x08, 32-bit data at 0x10.
  const uint64_t gdt[3] = {0, 0x00CF9B000000FFFFull, 0x00CF93000000FFFFull};
  if (loaded.start < kGdtAddress + sizeof(gdt) && loaded.end > kGdtAddress)
    throw ImageError(file, "the image overlaps the loader's GDT at " + hex(kGdtAddress));
  writer.copy(kGdtAddress, reinterpret_cast<const uint8_t*>(gdt), sizeof(gdt), "the loader's GDT");
  return boot;
}

void set_entry_state(const BootInfo& boot, isa::CpuState& s) {
  s = isa::CpuState{};
  s.cr0 = isa::CR0_PE | isa::CR0_ET;
  s.rflags = isa::RF1;
  s.rip = boot.entry;
  s.gpr[isa::RAX] = kBootloaderMagic;
  s.gpr[isa::RBX] = boot.info_address;
  s.gdtr = {kGdtAddress, 3 * 8 - 1};
  s.idtr = {0, 0x3FF};
  const isa::Segment code{kCodeSelector, 0, 0xFFFFFFFF, 0xC09B};
  const isa::Segment data{kDataSelector, 0, 0xFFFFFFFF, 0xC093};
  s.seg[isa::CS] = code;
  for (isa::SegReg r : {isa::DS, isa::ES, isa::FS, isa::GS, isa::SS}) s.seg[r] = data;
  s.ldtr = isa::Segment{0, 0, 0xFFFF, 0x82};
  s.tr = isa::Segment{0, 0, 0xFFFF, 0x8B};
}

}  // namespace pgsim::models::multiboot

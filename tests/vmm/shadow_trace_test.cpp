// What trap_emulate does when the guest writes the structures it shadows: a write to one guest
// paging entry drops exactly the shadow leaves built from it (other leaves, and other address
// spaces' shadows, stay), and the guest's next access goes through its new entry; a write to the
// guest's GDT is traced into the shadow GDT, and so is a write the virtual CPU itself makes there.
#include <gtest/gtest.h>

#include "tests/vmm/deprivileged_machine.h"

namespace pgsim {
namespace {

using test::DeprivilegedMachine;
using test::kCode;
using vmm::TrapCause;

std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
// mov <reg>, [abs32] with the register's ModRM reg field (0 = rax, 1 = rcx).
std::vector<uint8_t> load_abs(unsigned reg, uint32_t address) {
  return {0x48, 0x8B, uint8_t(0x04 | reg << 3), 0x25, uint8_t(address), uint8_t(address >> 8), uint8_t(address >> 16),
          uint8_t(address >> 24)};
}
const std::vector<uint8_t> kMovCr3Rbx{0x0F, 0x22, 0xDB}, kMovCr3Rsi{0x0F, 0x22, 0xDE}, kJmpSelf{0xEB, 0xFE};

// A second address space whose PML4, PDPT and page directory are its own, the directory a copy of
// the machine's as it is now (the same pages, and any page table the machine's points to).
// Returns its CR3.
uint64_t second_address_space(DeprivilegedMachine& m) {
  constexpr uint64_t kPml4 = 0x103000, kPdpt = 0x104000, kPd = 0x105000;
  m.ram.put<uint64_t>(kPml4, kPdpt | test::kPteP | test::kPteRw);
  m.ram.put<uint64_t>(kPdpt, kPd | test::kPteP | test::kPteRw);
  for (uint64_t k = 0; k < test::kGuestRam >> 21; ++k)
    m.ram.put<uint64_t>(kPd + k * 8, m.ram.get<uint64_t>(test::kPd + k * 8));
  return kPml4;
}

// Two address spaces with page directories of their own mapping the same 2 MiB pages; space A
// (the machine's) writes its PDE 1, moving [0x200000, 0x400000) to the frames at 0x600000 (so
// 0x300000 then reads 0x700000).
//   mov rax, [0x300000] ; mov rax, [0x400000]      fills in A
//   mov cr3, rbx ; mov rax, [0x300000]             B, and a fill in B
//   mov cr3, rsi ; mov [rdi], rdx                  back to A; the traced write to A's PDE 1
//   mov rcx, [0x300000] ; mov rax, [0x400000]      A through the new entry; A's other leaf
//   mov cr3, rbx ; mov rax, [0x300000] ; jmp $     B's leaf, which depends on B's own PDE
TEST(ShadowTrace, AWriteToOnePagingEntryDropsOnlyTheLeavesBuiltFromIt) {
  DeprivilegedMachine m("x86-pg");
  const uint64_t pml4_b = second_address_space(m);
  m.ram.put<uint64_t>(0x300000, 0x3333);
  m.ram.put<uint64_t>(0x700000, 0x7777);
  m.state().gpr[isa::RBX] = pml4_b;
  m.state().gpr[isa::RSI] = test::kPml4;
  m.state().gpr[isa::RDI] = test::kPd + 8;  // A's PDE of 0x300000
  m.state().gpr[isa::RDX] = 0x600000 | test::kPteP | test::kPteRw | test::kPtePs;
  const std::vector<uint8_t> code =
      cat({load_abs(0, 0x300000), load_abs(0, 0x400000), kMovCr3Rbx, load_abs(0, 0x300000), kMovCr3Rsi,
           {0x48, 0x89, 0x17}, load_abs(1, 0x300000), load_abs(0, 0x400000), kMovCr3Rbx, load_abs(0, 0x300000),
           kJmpSelf});
  vmm::TrapEmulateVmm& vmm = m.start(code);
  m.core.run(20);
  EXPECT_EQ(m.state().rip, kCode + code.size() - 2);
  EXPECT_EQ(m.ram.get<uint64_t>(test::kPd + 8), m.state().gpr[isa::RDX] | 0x20);  // accessed by the read
  EXPECT_EQ(m.state().gpr[isa::RCX], 0x7777u);  // A reads through its new entry
  EXPECT_EQ(m.state().gpr[isa::RAX], 0x3333u);  // B still through its own
  const vmm::ShadowCounters& s = vmm.shadow();
  EXPECT_EQ(s.traced_writes, 1u);
  // The write changed A's PDE 1: the one leaf built from it (0x300000 in A) is dropped. A's code
  // and 0x400000 leaves and B's 0x300000 leaf came from other entries and stay.
  EXPECT_EQ(s.entry_invalidations, 1u);
  EXPECT_EQ(s.flushes, 0u);
  EXPECT_EQ(s.cache_misses, 2u);  // A's first root, B's
  EXPECT_EQ(s.cache_hits, 2u);    // back to A, back to B: both shadows kept
  // Page faults: A's code, 0x300000 and 0x400000; B's code and 0x300000; the traced write;
  // 0x300000 in A again (its leaf was dropped). Nothing else faults again.
  EXPECT_EQ(m.traps(TrapCause::PageFault), 7u);
  EXPECT_EQ(s.hidden_faults, 6u);
  EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 3u);  // the MOV CR3s
}

// 4 KiB pages: PDE 4 (0x800000) points to a page table in the frame at 0x500000 (mapped by
// PDE 2) whose PTEs 0 and 1 map 0x800000 and 0x801000, holding 0x8888 and 0x1111; 0x802000
// holds 0x2222. Returns the table's address.
uint64_t small_pages(DeprivilegedMachine& m) {
  constexpr uint64_t kTable = 0x500000;
  m.ram.put<uint64_t>(test::kPd + 4 * 8, kTable | test::kPteP | test::kPteRw);
  m.ram.put<uint64_t>(kTable, 0x800000 | test::kPteP | test::kPteRw);
  m.ram.put<uint64_t>(kTable + 8, 0x801000 | test::kPteP | test::kPteRw);
  m.ram.put<uint64_t>(0x800000, 0x8888);
  m.ram.put<uint64_t>(0x801000, 0x1111);
  m.ram.put<uint64_t>(0x802000, 0x2222);
  return kTable;
}

// Two address spaces share a page table (PDE 4 of both points to it, as kernels share their
// tables between processes); space A writes its PTE 0. The leaf of that page is dropped in both
// spaces, and both then read through the new entry; the leaves of PTE 1 stay in both.
//   mov rax, [0x800000] ; mov rax, [0x801000]      A: leaves from PTE 0 and PTE 1
//   mov cr3, rbx ; mov rax, [0x800000] ; mov rax, [0x801000]      the same in B
//   mov cr3, rsi ; mov [rdi], rdx                  A writes PTE 0 (traced): -> 0x802000
//   mov rcx, [0x800000] ; mov rax, [0x801000]      A: through the new entry; PTE 1's leaf
//   mov cr3, rbx ; mov rbp, [0x800000] ; mov rax, [0x801000] ; jmp $      the same in B
TEST(ShadowTrace, AWriteToASharedPageTableEntryDropsItsLeafInEverySpaceAndNoOther) {
  DeprivilegedMachine m("x86-pg");
  const uint64_t table = small_pages(m);
  const uint64_t pml4_b = second_address_space(m);
  m.state().gpr[isa::RBX] = pml4_b;
  m.state().gpr[isa::RSI] = test::kPml4;
  m.state().gpr[isa::RDI] = table;
  m.state().gpr[isa::RDX] = 0x802000 | test::kPteP | test::kPteRw;
  const std::vector<uint8_t> code =
      cat({load_abs(0, 0x800000), load_abs(0, 0x801000), kMovCr3Rbx, load_abs(0, 0x800000), load_abs(0, 0x801000),
           kMovCr3Rsi, {0x48, 0x89, 0x17}, load_abs(1, 0x800000), load_abs(0, 0x801000), kMovCr3Rbx,
           load_abs(5, 0x800000), load_abs(0, 0x801000), kJmpSelf});
  vmm::TrapEmulateVmm& vmm = m.start(code);
  m.core.run(30);
  EXPECT_EQ(m.state().rip, kCode + code.size() - 2);
  EXPECT_EQ(m.state().gpr[isa::RCX], 0x2222u);  // A through the new PTE 0
  EXPECT_EQ(m.state().gpr[isa::RBP], 0x2222u);  // B too: the table is shared
  EXPECT_EQ(m.state().gpr[isa::RAX], 0x1111u);
  const vmm::ShadowCounters& s = vmm.shadow();
  EXPECT_EQ(s.traced_writes, 1u);
  EXPECT_EQ(s.entry_invalidations, 2u);  // the leaf of 0x800000 in A and in B
  EXPECT_EQ(s.flushes, 0u);
  EXPECT_EQ(s.cache_misses, 2u);  // A's first root, B's
  EXPECT_EQ(s.cache_hits, 2u);
  // Page faults: code, 0x800000 and 0x801000 in each space (6); the traced write; 0x800000 again
  // in each space. 0x801000 does not fault again in either.
  EXPECT_EQ(m.traps(TrapCause::PageFault), 9u);
  EXPECT_EQ(s.hidden_faults, 8u);
}

// A write that changes nothing but the accessed and dirty bits of an entry loosens nothing a
// shadow leaf relies on (a leaf is writable only once its entry is dirty): no leaf is dropped.
//   mov rax, [0x300000] ; mov [rdi], rdx ; mov rax, [0x300000] ; jmp $
TEST(ShadowTrace, SettingAccessedAndDirtyBitsDropsNothing) {
  DeprivilegedMachine m("x86-pg");
  m.state().gpr[isa::RDI] = test::kPd + 8;
  m.state().gpr[isa::RDX] = m.ram.get<uint64_t>(test::kPd + 8) | 0x60;  // A and D set
  const std::vector<uint8_t> code = cat({load_abs(0, 0x300000), {0x48, 0x89, 0x17}, load_abs(0, 0x300000), kJmpSelf});
  vmm::TrapEmulateVmm& vmm = m.start(code);
  m.core.run(6);
  EXPECT_EQ(m.state().rip, kCode + code.size() - 2);
  EXPECT_EQ(vmm.shadow().traced_writes, 1u);
  EXPECT_EQ(vmm.shadow().entry_invalidations, 0u);
  EXPECT_EQ(m.traps(TrapCause::PageFault), 3u);  // the code page, 0x300000 (once), the traced write
}

// A write flood (kFloodWrites writes in a row to a page table with no walk through it) ends the
// frame's write protection, so its later writes are not seen: every leaf built from one of its
// entries is dropped then, and the guest's direct update of an entry still takes effect (with
// the small pages above).
//   mov rax, [0x800000] ; mov rbx, [0x801000]      leaves from PT entries 0 and 1
//   4 x mov [rdi], rcx                             traced writes to PT entry 10: the flood
//   mov [rdx], r8                                  PT entry 0 -> 0x802000, written directly
//   mov rsi, [0x800000]                            through the new entry (a walk: protected again)
//   mov [rdx], r9 ; mov rbp, [0x800000] ; jmp $    traced again; back to 0x800000
TEST(ShadowTrace, AWriteFloodDropsTheLeavesBuiltFromTheUnprotectedTable) {
  DeprivilegedMachine m("x86-pg");
  const uint64_t table = small_pages(m);
  m.state().gpr[isa::RDI] = table + 10 * 8;
  m.state().gpr[isa::RCX] = 0;
  m.state().gpr[isa::RDX] = table;
  m.state().gpr[isa::R8] = 0x802000 | test::kPteP | test::kPteRw;
  m.state().gpr[isa::R9] = 0x800000 | test::kPteP | test::kPteRw;
  const std::vector<uint8_t> flood_write{0x48, 0x89, 0x0F};
  const std::vector<uint8_t> code =
      cat({load_abs(0, 0x800000), load_abs(3, 0x801000), flood_write, flood_write, flood_write, flood_write,
           {0x4C, 0x89, 0x02}, load_abs(6, 0x800000), {0x4C, 0x89, 0x0A}, load_abs(5, 0x800000), kJmpSelf});
  vmm::TrapEmulateVmm& vmm = m.start(code);
  m.core.run(20);
  EXPECT_EQ(m.state().rip, kCode + code.size() - 2);
  EXPECT_EQ(m.state().gpr[isa::RAX], 0x8888u);
  EXPECT_EQ(m.state().gpr[isa::RBX], 0x1111u);
  EXPECT_EQ(m.state().gpr[isa::RSI], 0x2222u);  // the direct write to the unprotected table took effect
  EXPECT_EQ(m.state().gpr[isa::RBP], 0x8888u);
  const vmm::ShadowCounters& s = vmm.shadow();
  EXPECT_EQ(s.unprotected, 1u);
  EXPECT_EQ(s.traced_writes, vmm::ShadowPager::kFloodWrites + 1);  // the flood; the write after the walk
  // The flood drops both leaves built from the table (0x800000, 0x801000); the last traced write
  // drops the refilled 0x800000 leaf.
  EXPECT_EQ(s.entry_invalidations, 3u);
  EXPECT_EQ(s.write_protections, 1u);  // the table's own leaf, writable while it was unprotected
  // Hidden: code, 0x800000, 0x801000, the direct write (a writable leaf for the table), 0x800000
  // twice more. Traced writes fault each time: no leaf maps the table while it is protected.
  EXPECT_EQ(s.hidden_faults, 6u);
  EXPECT_EQ(m.traps(TrapCause::PageFault), 6u + vmm::ShadowPager::kFloodWrites + 1);
}

// A page that becomes a page table is write-protected where a shadow maps it, and nowhere else
// is anything dropped. The guest writes the page at 0x300000 (its leaf becomes writable), then
// points its PDE 3 at a page table in that frame and reads through it: the walk finds the new
// table, the writable leaf becomes read-only, and the guest's next write there is traced.
//   mov [0x300000], rax ; mov [rdi], rdx ; mov rax, [0x600000] ; mov [0x300000], rcx ; jmp $
TEST(ShadowTrace, ANewPageTableIsWriteProtectedWhereAShadowMapsIt) {
  DeprivilegedMachine m("x86-pg");
  m.state().gpr[isa::RAX] = 0x700000 | test::kPteP | test::kPteRw;  // PTE 0 of the new table
  m.state().gpr[isa::RDI] = test::kPd + 3 * 8;                       // the PDE of 0x600000
  m.state().gpr[isa::RDX] = 0x300000 | test::kPteP | test::kPteRw;   // -> the table at 0x300000
  m.state().gpr[isa::RCX] = 0;
  m.ram.put<uint64_t>(0x700000, 0x7777);
  const std::vector<uint8_t> code = cat({{0x48, 0x89, 0x04, 0x25, 0x00, 0x00, 0x30, 0x00},
                                         {0x48, 0x89, 0x17},
                                         load_abs(0, 0x600000),
                                         {0x48, 0x89, 0x0C, 0x25, 0x00, 0x00, 0x30, 0x00},
                                         kJmpSelf});
  vmm::TrapEmulateVmm& vmm = m.start(code);
  m.core.run(10);
  EXPECT_EQ(m.state().rip, kCode + code.size() - 2);
  EXPECT_EQ(m.state().gpr[isa::RAX], 0x7777u);
  EXPECT_EQ(m.ram.get<uint64_t>(0x300000), 0u);  // the guest's last write, emulated
  const vmm::ShadowCounters& s = vmm.shadow();
  EXPECT_EQ(s.write_protections, 1u);  // the leaf of 0x300000
  EXPECT_EQ(s.traced_writes, 2u);      // the PDE write; the write to the new table
  // The PDE write changed PDE 3, from which no leaf was built; the write to the new table's
  // entry 0 drops the leaf of 0x600000 built from it.
  EXPECT_EQ(s.entry_invalidations, 1u);
  EXPECT_EQ(s.flushes, 0u);
}

// The guest writes a data descriptor into its GDT (a traced write: its GDT page is write-protected)
// and loads FS with it; on classic x86 the load runs directly on the real CPU, from the shadow
// GDT, and FS then has the new descriptor's base, as it has natively.
//   mov [rdi], rax ; mov fs, ecx ; mov rdx, fs:[0] ; jmp $
TEST(ShadowTrace, AGuestWriteToItsGdtReachesTheShadowGdtBeforeASegmentLoad) {
  constexpr uint16_t kSelector = 0x50;
  constexpr uint32_t kBase = 0x345000;
  const std::vector<uint8_t> code = {0x48, 0x89, 0x07, 0x8E, 0xE1, 0x64, 0x48, 0x8B,
                                     0x14, 0x25, 0x00, 0x00, 0x00, 0x00, 0xEB, 0xFE};
  auto prepare = [&](DeprivilegedMachine& m) {
    m.state().gpr[isa::RDI] = test::kGdt + kSelector;
    m.state().gpr[isa::RAX] = test::segment_descriptor(kBase, 0xFFFFF, 0x3, 0, false, true);
    m.state().gpr[isa::RCX] = kSelector;
    m.ram.put<uint64_t>(kBase, 0x5EED);
  };
  DeprivilegedMachine native("x86");
  prepare(native);
  native.load_code(kCode, code);
  native.core.run(3);
  ASSERT_EQ(native.state().gpr[isa::RDX], 0x5EEDu);

  DeprivilegedMachine m("x86");
  prepare(m);
  vmm::TrapEmulateVmm& vmm = m.start(code);
  m.core.run(6);
  EXPECT_EQ(m.state().rip, kCode + code.size() - 2);
  EXPECT_EQ(m.state().gpr[isa::RDX], 0x5EEDu);
  EXPECT_EQ(m.state().seg[isa::FS].base, native.state().seg[isa::FS].base);
  EXPECT_EQ(m.ram.get<uint64_t>(test::kGdt + kSelector), native.ram.get<uint64_t>(test::kGdt + kSelector));
  const vmm::ShadowCounters& s = vmm.shadow();
  EXPECT_EQ(s.gdt_traced_writes, 1u);
  EXPECT_EQ(s.gdt_entry_updates, 1u);  // the one entry the write touched
  EXPECT_EQ(s.gdt_resyncs, 1u);        // the first reading, when the VMM took over; none since
  EXPECT_EQ(s.traced_writes, 0u);
  EXPECT_EQ(m.router->vmm().leaks().total(), 0u) << m.router->vmm().leaks().summary();
}

// LGDT moves the GDT: the VMM reads the new one whole, and from then on the new GDT's page is
// write-protected and the old one's is not (a write there is plain data).
//   lgdt [rax] ; mov [rdi], rcx ; mov [rsi], rcx ; jmp $
TEST(ShadowTrace, LgdtMovesTheWriteProtectionToTheNewGdt) {
  constexpr uint64_t kNewGdt = 0x3000, kPseudoDescriptor = 0x7000;
  constexpr uint16_t kSelector = 0x50;
  DeprivilegedMachine m("x86-pg");
  for (uint64_t k = 0; k < 16; ++k) m.ram.put<uint64_t>(kNewGdt + k * 8, m.ram.get<uint64_t>(test::kGdt + k * 8));
  m.ram.put<uint16_t>(kPseudoDescriptor, 0x7F);
  m.ram.put<uint64_t>(kPseudoDescriptor + 2, kNewGdt);
  const uint64_t descriptor = test::segment_descriptor(0x345000, 0xFFFFF, 0x3, 0, false, true);
  m.state().gpr[isa::RAX] = kPseudoDescriptor;
  m.state().gpr[isa::RDI] = test::kGdt + kSelector;
  m.state().gpr[isa::RSI] = kNewGdt + kSelector;
  m.state().gpr[isa::RCX] = descriptor;
  vmm::TrapEmulateVmm& vmm = m.start({0x0F, 0x01, 0x10, 0x48, 0x89, 0x0F, 0x48, 0x89, 0x0E, 0xEB, 0xFE});
  m.core.run(6);
  EXPECT_EQ(m.state().rip, kCode + 9);
  EXPECT_EQ(vmm.virtual_cpu().state().gdtr.base, kNewGdt);
  const vmm::ShadowCounters& s = vmm.shadow();
  EXPECT_EQ(s.gdt_resyncs, 2u);        // when the VMM took over; after the LGDT
  EXPECT_EQ(s.gdt_traced_writes, 1u);  // the write to the new GDT only
  EXPECT_EQ(s.gdt_entry_updates, 1u);
  constexpr uint64_t kDpl3 = 3ull << 45;
  EXPECT_EQ(m.ram.get<uint64_t>(test::kGuestRam + kSelector), descriptor | kDpl3);  // the shadow GDT
  EXPECT_EQ(m.ram.get<uint64_t>(test::kGdt + kSelector), descriptor);              // written directly
}

// The VMM's sets of frames (page tables, GDT, translated code) answer each change at once, though
// they remember their last answer.
TEST(FrameSet, ItsLastAnswerLastsUntilItChanges) {
  vmm::FrameSet frames;
  EXPECT_FALSE(frames.contains(7));
  EXPECT_TRUE(frames.insert(7));
  EXPECT_TRUE(frames.contains(7));
  EXPECT_FALSE(frames.insert(7));
  EXPECT_TRUE(frames.contains(7));
  frames.erase(7);
  EXPECT_FALSE(frames.contains(7));
  frames.insert(7);
  EXPECT_TRUE(frames.contains(7));
  frames.clear();
  EXPECT_FALSE(frames.contains(7));
  EXPECT_FALSE(frames.contains(8));
}

// A write to a paging entry that maps the GDT's page may move the GDT: the VMM reads it again.
// Setting PWT in the page-directory entry of the first 2 MiB (the GDT's) changes the entry and not
// where it points; the VMM cannot tell which, and must not miss a move.
//   mov [rdi], rax ; jmp $
TEST(ShadowTrace, AWriteToAnEntryMappingTheGdtMakesTheVmmReadItAgain) {
  for (const char* profile : {"x86", "x86-pg"}) {
    SCOPED_TRACE(profile);
    DeprivilegedMachine m(profile);
    constexpr uint64_t kPwt = 0x8;
    m.state().gpr[isa::RDI] = test::kPd;
    m.state().gpr[isa::RAX] = m.ram.get<uint64_t>(test::kPd) | kPwt;
    vmm::TrapEmulateVmm& vmm = m.start({0x48, 0x89, 0x07, 0xEB, 0xFE});
    m.core.run(4);
    EXPECT_EQ(m.state().rip, kCode + 3);
    EXPECT_EQ(m.ram.get<uint64_t>(test::kPd) & kPwt, kPwt);
    const vmm::ShadowCounters& s = vmm.shadow();
    EXPECT_EQ(s.traced_writes, 1u);
    EXPECT_EQ(s.gdt_resyncs, 2u);  // when the VMM took over; after the write
  }
}

// A write the virtual CPU makes itself: on x86-pg a data-segment load traps and is emulated, and
// the virtual CPU sets the accessed bit of the guest's descriptor, which the shadow GDT follows.
//   mov ds, ecx ; jmp $
TEST(ShadowTrace, TheVirtualCpusOwnGdtWritesReachTheShadowGdt) {
  constexpr uint16_t kSelector = 0x50;
  DeprivilegedMachine m("x86-pg");
  const uint64_t descriptor = test::segment_descriptor(0, 0xFFFFF, 0x2, 0, false, true);  // not accessed
  m.ram.put<uint64_t>(test::kGdt + kSelector, descriptor);
  m.state().gpr[isa::RCX] = kSelector;
  vmm::TrapEmulateVmm& vmm = m.start({0x8E, 0xD9, 0xEB, 0xFE});
  m.core.run(3);
  EXPECT_EQ(m.state().rip, kCode + 2);
  EXPECT_EQ(m.traps(TrapCause::GeneralProtection), 1u);
  constexpr uint64_t kAccessed = 1ull << 40, kDpl3 = 3ull << 45;
  EXPECT_EQ(m.ram.get<uint64_t>(test::kGdt + kSelector), descriptor | kAccessed);
  // The shadow GDT (the start of the VMM's memory): the guest's descriptor, accessed, at DPL 3.
  EXPECT_EQ(m.ram.get<uint64_t>(test::kGuestRam + kSelector), descriptor | kAccessed | kDpl3);
  EXPECT_EQ(vmm.shadow().gdt_entry_updates, 1u);
  EXPECT_EQ(vmm.shadow().gdt_traced_writes, 0u);  // the guest itself wrote nothing
}

}  // namespace
}  // namespace pgsim

// The page walk, from Intel SDM vol. 3, ch. 4: translations, rights, error codes, A/D flags.
#include "isa/system/paging.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "tests/isa/harness.h"

using namespace pgsim::isa;
using pgsim::test::FlatRam;

namespace {

constexpr uint64_t P = 1, RW = 2, US = 4, A = 0x20, D = 0x40, PS = 0x80, G = 0x100, XD = 1ull << 63;

// Builds page tables in a flat physical memory, allocating tables from 0x10000 upwards.
struct PageTables {
  FlatRam mem{8 << 20};
  uint64_t next = 0x10000;
  unsigned entry_size;

  explicit PageTables(unsigned entry_bytes = 8) : entry_size(entry_bytes) {}
  uint64_t table() {
    uint64_t t = next;
    next += 0x1000;
    return t;
  }
  void set(uint64_t table, unsigned index, uint64_t value) {
    if (entry_size == 4) mem.put<uint32_t>(table + index * 4, static_cast<uint32_t>(value));
    else mem.put<uint64_t>(table + index * 8, value);
  }
  uint64_t get(uint64_t table, unsigned index) {
    return entry_size == 4 ? mem.get<uint32_t>(table + index * 4) : mem.get<uint64_t>(table + index * 8);
  }
};

unsigned idx(uint64_t linear, unsigned level) { return (linear >> (12 + 9 * (level - 1))) & 0x1FF; }

CpuState long_mode_state(uint64_t cr3) {
  CpuState s;
  s.cr0 = CR0_PE | CR0_PG | CR0_WP | CR0_ET;
  s.cr4 = CR4_PAE;
  s.efer = EFER_LME | EFER_LMA | EFER_NXE;
  s.cr3 = cr3;
  return s;
}

// A 4-level mapping of one 4 KiB page; `leaf` and `upper` are the rights of the PTE and of the
// entries above it.
struct Level4Fixture {
  PageTables pt;
  uint64_t pml4 = pt.table(), pdpt = pt.table(), pd = pt.table(), ptab = pt.table();
  static constexpr uint64_t kLinear = 0x00007F1234567ABCull;
  static constexpr uint64_t kFrame = 0x345000;

  Level4Fixture(uint64_t upper, uint64_t leaf) {
    pt.set(pml4, idx(kLinear, 4), pdpt | upper);
    pt.set(pdpt, idx(kLinear, 3), pd | upper);
    pt.set(pd, idx(kLinear, 2), ptab | upper);
    pt.set(ptab, idx(kLinear, 1), kFrame | leaf);
  }
  WalkResult walk(const CpuState& s, Access access, bool user, bool implicit = false) {
    return page_walk(s, pt.mem, {kLinear, access, user, implicit});
  }
};

struct RecordingObserver : WalkObserver {
  std::vector<std::pair<uint64_t, unsigned>> refs;
  void on_reference(uint64_t paddr, unsigned level) override { refs.emplace_back(paddr, level); }
};

}  // namespace

TEST(PageWalk, NoPagingIsIdentity) {
  CpuState s;
  FlatRam mem(4096);
  WalkResult r = page_walk(s, mem, {0x1234, Access::Write, false});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.paddr, 0x1234u);
  EXPECT_EQ(r.refs, 0u);
  EXPECT_EQ(r.levels, 0u);
}

TEST(PageWalk, FourLevelTranslationReferencesAndAccessedDirty) {
  Level4Fixture f(P | RW | US, P | RW | US);
  CpuState s = long_mode_state(f.pml4);
  RecordingObserver obs;
  WalkResult r = page_walk(s, f.pt.mem, {Level4Fixture::kLinear, Access::Read, true}, &obs);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.paddr, Level4Fixture::kFrame | 0xABC);
  EXPECT_EQ(r.page_size, 4096u);
  EXPECT_EQ(r.levels, 4u);
  EXPECT_EQ(r.refs, 4u);
  ASSERT_EQ(obs.refs.size(), 4u);
  EXPECT_EQ(obs.refs[0], std::make_pair(f.pml4 + idx(Level4Fixture::kLinear, 4) * 8, 4u));
  EXPECT_EQ(obs.refs[3], std::make_pair(f.ptab + idx(Level4Fixture::kLinear, 1) * 8, 1u));
  // A read sets A at every level, and D nowhere.
  EXPECT_EQ(f.pt.get(f.pml4, idx(Level4Fixture::kLinear, 4)) & (A | D), A);
  EXPECT_EQ(f.pt.get(f.ptab, idx(Level4Fixture::kLinear, 1)) & (A | D), A);
  EXPECT_FALSE(r.dirty);
  // A write sets D in the leaf only.
  r = f.walk(s, Access::Write, true);
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.dirty);
  EXPECT_EQ(f.pt.get(f.ptab, idx(Level4Fixture::kLinear, 1)) & (A | D), A | D);
  EXPECT_EQ(f.pt.get(f.pd, idx(Level4Fixture::kLinear, 2)) & D, 0u);
}

TEST(PageWalk, NotPresentErrorCodesAndCr2) {
  Level4Fixture f(P | RW | US, RW | US);  // the PTE is not present
  CpuState s = long_mode_state(f.pml4);
  WalkResult r = f.walk(s, Access::Read, false);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.fault.vector, PF_);
  EXPECT_EQ(r.fault.error_code, 0u);
  EXPECT_EQ(r.fault.cr2, Level4Fixture::kLinear);
  EXPECT_EQ(f.walk(s, Access::Write, true).fault.error_code, PFERR_W | PFERR_U);
  EXPECT_EQ(f.walk(s, Access::Execute, true).fault.error_code, PFERR_U | PFERR_I);
  // A failed walk leaves the accessed flags alone.
  EXPECT_EQ(f.pt.get(f.pml4, idx(Level4Fixture::kLinear, 4)) & A, 0u);
  // Not present at the top level.
  f.pt.set(f.pml4, idx(Level4Fixture::kLinear, 4), 0);
  r = f.walk(s, Access::Write, false);
  EXPECT_EQ(r.fault.error_code, PFERR_W);
  EXPECT_EQ(r.refs, 1u);
}

TEST(PageWalk, UserSupervisorAndReadWrite) {
  Level4Fixture f(P | RW | US, P | US);  // user page, read-only
  CpuState s = long_mode_state(f.pml4);
  EXPECT_TRUE(f.walk(s, Access::Read, true).ok);
  EXPECT_EQ(f.walk(s, Access::Write, true).fault.error_code, PFERR_P | PFERR_W | PFERR_U);
  // Supervisor writes to a read-only page: allowed with CR0.WP=0, a fault with WP=1.
  EXPECT_EQ(f.walk(s, Access::Write, false).fault.error_code, PFERR_P | PFERR_W);
  s.cr0 &= ~CR0_WP;
  EXPECT_TRUE(f.walk(s, Access::Write, false).ok);

  Level4Fixture k(P | RW, P | RW | US);  // U/S clear above the leaf: a supervisor page
  CpuState ks = long_mode_state(k.pml4);
  WalkResult r = k.walk(ks, Access::Read, true);
  EXPECT_EQ(r.fault.error_code, PFERR_P | PFERR_U);
  r = k.walk(ks, Access::Read, false);
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.user);
}

TEST(PageWalk, ExecuteDisable) {
  Level4Fixture f(P | RW | US, P | RW | US | XD);
  CpuState s = long_mode_state(f.pml4);
  EXPECT_TRUE(f.walk(s, Access::Read, true).ok);
  EXPECT_EQ(f.walk(s, Access::Execute, true).fault.error_code, PFERR_P | PFERR_U | PFERR_I);
  EXPECT_EQ(f.walk(s, Access::Execute, false).fault.error_code, PFERR_P | PFERR_I);
  // Without EFER.NXE bit 63 is reserved, and the I/D flag needs NXE or SMEP.
  s.efer &= ~EFER_NXE;
  EXPECT_EQ(f.walk(s, Access::Read, false).fault.error_code, PFERR_P | PFERR_RSVD);
  EXPECT_EQ(f.walk(s, Access::Execute, false).fault.error_code, PFERR_P | PFERR_RSVD);
}

TEST(PageWalk, SmepAndSmap) {
  Level4Fixture f(P | RW | US, P | RW | US);  // a user page
  CpuState s = long_mode_state(f.pml4);
  EXPECT_TRUE(f.walk(s, Access::Execute, false).ok);
  s.cr4 |= CR4_SMEP;
  EXPECT_EQ(f.walk(s, Access::Execute, false).fault.error_code, PFERR_P | PFERR_I);
  EXPECT_TRUE(f.walk(s, Access::Read, false).ok);  // SMEP is about fetches only
  EXPECT_TRUE(f.walk(s, Access::Execute, true).ok);

  s.cr4 |= CR4_SMAP;
  EXPECT_EQ(f.walk(s, Access::Read, false).fault.error_code, PFERR_P);
  EXPECT_EQ(f.walk(s, Access::Write, false).fault.error_code, PFERR_P | PFERR_W);
  s.rflags |= AC;  // STAC: explicit supervisor accesses may touch user pages
  EXPECT_TRUE(f.walk(s, Access::Write, false).ok);
  // Implicit supervisor accesses (a GDT on a user page) fault regardless of AC, with U/S = 0.
  EXPECT_EQ(f.walk(s, Access::Read, false, true).fault.error_code, PFERR_P);
  EXPECT_TRUE(f.walk(s, Access::Read, true).ok);  // user accesses are not affected
}

TEST(PageWalk, ReservedBits) {
  Level4Fixture f(P | RW | US, P | RW | US);
  CpuState s = long_mode_state(f.pml4);
  uint64_t pde = f.pt.get(f.pd, idx(Level4Fixture::kLinear, 2));
  f.pt.set(f.pd, idx(Level4Fixture::kLinear, 2), pde | (1ull << kMaxPhysAddrBits));
  WalkResult r = f.walk(s, Access::Write, true);
  EXPECT_EQ(r.fault.error_code, PFERR_P | PFERR_W | PFERR_U | PFERR_RSVD);
  EXPECT_EQ(r.refs, 3u);
  f.pt.set(f.pd, idx(Level4Fixture::kLinear, 2), pde);
  // PS is reserved in a PML4E.
  uint64_t pml4e = f.pt.get(f.pml4, idx(Level4Fixture::kLinear, 4));
  f.pt.set(f.pml4, idx(Level4Fixture::kLinear, 4), pml4e | PS);
  EXPECT_EQ(f.walk(s, Access::Read, false).fault.error_code, PFERR_P | PFERR_RSVD);
}

TEST(PageWalk, LargePages) {
  PageTables pt;
  uint64_t pml4 = pt.table(), pdpt = pt.table(), pd = pt.table();
  const uint64_t lin2m = 0x40000000ull * 3 + 0x200000ull * 5 + 0x12345;  // PDPT 3, PD 5
  const uint64_t lin1g = 0x40000000ull * 7 + 0x2345678;                   // PDPT 7
  pt.set(pml4, 0, pdpt | P | RW);
  pt.set(pdpt, 3, pd | P | RW);
  pt.set(pd, 5, 0x00600000 | P | RW | PS | G);
  pt.set(pdpt, 7, 0x80000000 | P | RW | PS);
  CpuState s = long_mode_state(pml4);
  s.cr4 |= CR4_PGE;
  WalkResult r = page_walk(s, pt.mem, {lin2m, Access::Read, false});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.paddr, 0x00600000u + 0x12345);
  EXPECT_EQ(r.page_size, 2u << 20);
  EXPECT_EQ(r.refs, 3u);
  EXPECT_TRUE(r.global);
  r = page_walk(s, pt.mem, {lin1g, Access::Write, false});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.paddr, 0x80000000u + 0x2345678);
  EXPECT_EQ(r.page_size, 1u << 30);
  EXPECT_EQ(r.refs, 2u);
  EXPECT_FALSE(r.global);
  EXPECT_EQ(pt.get(pdpt, 7) & (A | D), A | D);
  // Address bits below the page size (other than PAT, bit 12) are reserved in a large page.
  pt.set(pd, 5, 0x00600000 | P | RW | PS | (1ull << 13));
  EXPECT_EQ(page_walk(s, pt.mem, {lin2m, Access::Read, false}).fault.error_code, PFERR_P | PFERR_RSVD);
}

TEST(PageWalk, FiveLevelAndCanonicalAddresses) {
  PageTables pt;
  uint64_t pml5 = pt.table(), pml4 = pt.table(), pdpt = pt.table(), pd = pt.table(), ptab = pt.table();
  const uint64_t lin = 0x00AB000000001000ull;  // needs 57 bits: PML5 index 0x15, PML4 index 0x100
  pt.set(pml5, idx(lin, 5), pml4 | P | RW);
  pt.set(pml4, idx(lin, 4), pdpt | P | RW);
  pt.set(pdpt, idx(lin, 3), pd | P | RW);
  pt.set(pd, idx(lin, 2), ptab | P | RW);
  pt.set(ptab, idx(lin, 1), 0x777000 | P | RW);
  CpuState s = long_mode_state(pml5);
  EXPECT_EQ(page_walk(s, pt.mem, {lin, Access::Read, false}).fault.vector, GP);  // not canonical at 48 bits
  s.cr4 |= CR4_LA57;
  WalkResult r = page_walk(s, pt.mem, {lin, Access::Read, false});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.paddr, 0x777000u);
  EXPECT_EQ(r.levels, 5u);
  EXPECT_EQ(r.refs, 5u);
  pt.set(ptab, idx(lin, 1), 0x777000 | P);  // read-only
  r = page_walk(s, pt.mem, {lin, Access::Write, false});
  EXPECT_EQ(r.fault.error_code, PFERR_P | PFERR_W);
  EXPECT_EQ(r.fault.cr2, lin);
  EXPECT_FALSE(is_canonical(s, 0x0100000000000000ull));
  EXPECT_TRUE(is_canonical(s, 0xFF00000000000000ull));
}

TEST(PageWalk, PcidFromCr3) {
  Level4Fixture f(P | RW, P | RW);
  CpuState s = long_mode_state(f.pml4 | 0x2A);
  EXPECT_EQ(f.walk(s, Access::Read, false).pcid, 0u);
  s.cr4 |= CR4_PCIDE;
  WalkResult r = f.walk(s, Access::Read, false);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.pcid, 0x2Au);
  EXPECT_EQ(r.paddr, Level4Fixture::kFrame | 0xABC);
}

TEST(PageWalk, ThirtyTwoBitPagingWithPse) {
  PageTables pt(4);
  uint64_t pd = pt.table(), ptab = pt.table();
  const uint64_t lin = 0x00C01234;  // PD index 3, PT index 1
  pt.set(pd, 3, ptab | P | RW | US);
  pt.set(ptab, 1, 0x00456000 | P | US);  // read-only user page
  CpuState s;
  s.cr0 = CR0_PE | CR0_PG;
  s.cr3 = pd;
  WalkResult r = page_walk(s, pt.mem, {lin, Access::Read, true});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.paddr, 0x00456234u);
  EXPECT_EQ(r.levels, 2u);
  EXPECT_EQ(r.refs, 2u);
  r = page_walk(s, pt.mem, {lin, Access::Write, true});
  EXPECT_EQ(r.fault.error_code, PFERR_P | PFERR_W | PFERR_U);
  EXPECT_EQ(r.fault.cr2, lin);
  EXPECT_TRUE(page_walk(s, pt.mem, {lin, Access::Write, false}).ok);  // CR0.WP = 0
  EXPECT_EQ(page_walk(s, pt.mem, {0x00001000, Access::Execute, true}).fault.error_code, PFERR_U);  // no I/D bit

  // A 4 MiB page with PSE-36 address bits 39:32 in PDE bits 20:13.
  pt.set(pd, 5, 0x01400000 | (0x3ull << 13) | P | RW | PS);
  const uint64_t lin4m = 0x01400000 + 0x2ABCDE;
  r = page_walk(s, pt.mem, {lin4m, Access::Read, false});
  ASSERT_TRUE(r.ok) << "PS without CR4.PSE points to a page table";
  EXPECT_EQ(r.refs, 2u);
  s.cr4 |= CR4_PSE;
  r = page_walk(s, pt.mem, {lin4m, Access::Read, false});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.paddr, 0x301400000ull + 0x2ABCDE);
  EXPECT_EQ(r.page_size, 4u << 20);
  EXPECT_EQ(r.refs, 1u);
}

TEST(PageWalk, PaePaging) {
  PageTables pt;
  uint64_t pdpt = pt.table(), pd = pt.table(), ptab = pt.table();
  const uint64_t lin = 0xC0201ABC;  // PDPT 3, PD 1, PT 1
  pt.set(pdpt, 3, pd | P);
  pt.set(pd, 1, ptab | P | RW);
  pt.set(ptab, 1, 0x00999000 | P | RW | XD);
  CpuState s;
  s.cr0 = CR0_PE | CR0_PG | CR0_WP;
  s.cr4 = CR4_PAE;
  s.efer = EFER_NXE;
  s.cr3 = pdpt;
  WalkResult r = page_walk(s, pt.mem, {lin, Access::Write, false});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.paddr, 0x00999ABCu);
  EXPECT_EQ(r.levels, 3u);
  EXPECT_EQ(r.refs, 2u);  // the PDPTE comes from the PDPTE registers, not a memory reference
  r = page_walk(s, pt.mem, {lin, Access::Execute, false});
  EXPECT_EQ(r.fault.error_code, PFERR_P | PFERR_I);
  EXPECT_EQ(r.fault.cr2, lin);
  // Bits 62:52 are reserved in PAE entries (they are ignored in 4-level paging).
  pt.set(ptab, 1, 0x00999000 | P | RW | (1ull << 55));
  EXPECT_EQ(page_walk(s, pt.mem, {lin, Access::Read, false}).fault.error_code, PFERR_P | PFERR_RSVD);
  // A non-present PDPTE.
  EXPECT_EQ(page_walk(s, pt.mem, {0x00001000, Access::Read, false}).fault.error_code, 0u);
}

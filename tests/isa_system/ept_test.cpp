// EPT and the two-dimensional page walk, from Intel SDM vol. 3C, 28.2 and 27.2.1: references per
// walk for every guest paging mode and EPT page size, the addresses a walk visits, EPT violations
// with their exit qualification, misconfigurations, accessed and dirty flags.
#include "isa/system/ept.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/isa/harness.h"

using namespace pgsim::isa;
using pgsim::test::FlatRam;

namespace {

constexpr uint64_t P = 1, RW = 2, US = 4, A = 0x20, D = 0x40, PS = 0x80;
constexpr uint64_t k4K = 1ull << 12, k2M = 1ull << 21, k4M = 1ull << 22, k1G = 1ull << 30;

enum class Dim { Guest, Nested };
struct Ref {
  uint64_t paddr;
  unsigned level;
  Dim dim;
  bool operator==(const Ref&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Ref& r) {
  return os << (r.dim == Dim::Guest ? "guest" : "nested") << " L" << r.level << " @0x" << std::hex << r.paddr
            << std::dec;
}

struct Recorder : WalkObserver {
  std::vector<Ref> refs;
  void on_reference(uint64_t paddr, unsigned level) override { refs.push_back({paddr, level, Dim::Guest}); }
  void on_nested_reference(uint64_t paddr, unsigned level) override { refs.push_back({paddr, level, Dim::Nested}); }
  unsigned count(Dim d) const {
    unsigned n = 0;
    for (const Ref& r : refs) n += r.dim == d;
    return n;
  }
};

unsigned idx(uint64_t linear, unsigned level) { return (linear >> (12 + 9 * (level - 1))) & 0x1FF; }

// A guest whose guest-physical memory [0, kGuestSize) the EPT maps to host-physical
// [kHostOffset, ...) at `ept_page`; its page tables sit at guest-physical 0x10000 upwards and map
// one page of data at guest-physical kData.
struct NestedMachine {
  static constexpr uint64_t kEptArea = 0x100000, kEptAreaSize = 4 << 20;
  static constexpr uint64_t kHostOffset = k1G;  // 1 GiB aligned, so every EPT page size fits
  static constexpr uint64_t kData = 0x400000;   // 4 MiB aligned: a guest 2 MiB or 4 MiB page fits

  FlatRam host{4 * k1G};
  EptBuilder ept;
  uint64_t next_table = 0x10000;

  explicit NestedMachine(uint64_t ept_page, unsigned ept_levels = 4)
      : ept(host, kEptArea, kEptAreaSize, ept_levels) {
    const uint64_t size = ept_page == k1G ? k1G : 8ull << 20;
    ept.map(0, kHostOffset, size, ept_page);
  }
  uint64_t table() {  // a guest-physical table
    const uint64_t t = next_table;
    next_table += 0x1000;
    return t;
  }
  void put(uint64_t gpa, uint64_t v, unsigned size = 8) {
    if (size == 4) host.put<uint32_t>(gpa + kHostOffset, static_cast<uint32_t>(v));
    else host.put<uint64_t>(gpa + kHostOffset, v);
  }
  uint64_t get(uint64_t gpa) { return host.get<uint64_t>(gpa + kHostOffset); }
};

// A guest paging mode, and how many of its levels one walk reads from memory (SDM ch. 4): the
// PAE PDPTEs are loaded at MOV CR3 (4.4.1), so a PAE walk reads two levels.
struct GuestMode {
  const char* name;
  PagingMode mode;
  unsigned levels_read;
  uint64_t large_page;  // the page size of its largest leaf below the top level
};
const GuestMode kModes[] = {
    {"32-bit", PagingMode::Bits32, 2, k4M},
    {"PAE", PagingMode::Pae, 2, k2M},
    {"4-level", PagingMode::Level4, 4, k2M},
    {"5-level", PagingMode::Level5, 5, k2M},
};

// Builds guest tables mapping `linear` to kData with a page of `page` bytes; returns the CPU state.
CpuState build_guest(NestedMachine& m, const GuestMode& g, uint64_t linear, uint64_t page) {
  CpuState s;
  s.cr0 = CR0_PE | CR0_PG | CR0_WP | CR0_ET;
  const uint64_t rights = P | RW | US;
  switch (g.mode) {
    case PagingMode::Bits32: {
      s.cr4 = CR4_PSE;
      const uint64_t pd = m.table();
      s.cr3 = pd;
      if (page == k4M) {
        m.put(pd + (linear >> 22) * 4, NestedMachine::kData | rights | PS, 4);
      } else {
        const uint64_t pt = m.table();
        m.put(pd + (linear >> 22) * 4, pt | rights, 4);
        m.put(pt + ((linear >> 12) & 0x3FF) * 4, NestedMachine::kData | rights, 4);
      }
      return s;
    }
    case PagingMode::Pae: {
      s.cr4 = CR4_PAE;
      const uint64_t pdpt = m.table(), pd = m.table();
      s.cr3 = pdpt;
      m.put(pdpt + ((linear >> 30) & 3) * 8, pd | P);
      if (page == k2M) {
        m.put(pd + idx(linear, 2) * 8, NestedMachine::kData | rights | PS);
      } else {
        const uint64_t pt = m.table();
        m.put(pd + idx(linear, 2) * 8, pt | rights);
        m.put(pt + idx(linear, 1) * 8, NestedMachine::kData | rights);
      }
      return s;
    }
    default: {
      const unsigned top = g.mode == PagingMode::Level5 ? 5 : 4;
      s.cr4 = CR4_PAE | (top == 5 ? uint64_t{CR4_LA57} : uint64_t{0});
      s.efer = EFER_LME | EFER_LMA | EFER_NXE;
      uint64_t table = m.table();
      s.cr3 = table;
      const unsigned leaf = page == k2M ? 2 : 1;
      for (unsigned level = top; level > leaf; --level) {
        const uint64_t next = m.table();
        m.put(table + idx(linear, level) * 8, next | rights);
        table = next;
      }
      m.put(table + idx(linear, leaf) * 8, NestedMachine::kData | rights | (leaf > 1 ? PS : uint64_t{0}));
      return s;
    }
  }
}

// EPT levels one translation reads: 4 (or 5) down to the leaf of its page size.
unsigned ept_levels_read(unsigned ept_levels, uint64_t ept_page) {
  const unsigned leaf = ept_page == k4K ? 1 : ept_page == k2M ? 2 : 3;
  return ept_levels - leaf + 1;
}

}  // namespace

// (n + 1)(m + 1) - 1 references with nothing cached, for every guest mode with and without a
// large guest page, on EPT of 4 KiB, 2 MiB and 1 GiB pages, 4 levels and 5: n guest levels read,
// each preceded by the m EPT references translating its table's guest-physical address, then m
// for the final address. n and m come from the construction of the tables, not from a table of
// answers.
TEST(NestedWalk, ReferencesAreTheProductOfBothDimensions) {
  unsigned cases = 0;
  for (unsigned ept_levels : {4u, 5u})
    for (uint64_t ept_page : {k4K, k2M, k1G})
      for (const GuestMode& g : kModes)
        for (bool large : {false, true}) {
          NestedMachine m(ept_page, ept_levels);
          const uint64_t linear = 0x40600ABC;  // below 4 GiB, for the 32-bit modes too
          const uint64_t guest_page = large ? g.large_page : k4K;
          const CpuState s = build_guest(m, g, linear, guest_page);
          Recorder rec;
          const NestedWalkResult r = nested_page_walk(s, m.host, m.ept.pointer(), {linear, Access::Read, true}, &rec);
          SCOPED_TRACE(std::string(g.name) + (large ? " large page" : " 4K") + ", EPT page " +
                       std::to_string(ept_page) + ", EPT levels " + std::to_string(ept_levels));
          ASSERT_TRUE(r.walk.ok);
          const unsigned n = g.levels_read - (large ? 1 : 0);
          const unsigned mm = ept_levels_read(ept_levels, ept_page);
          EXPECT_EQ(rec.refs.size(), (n + 1) * (mm + 1) - 1);
          EXPECT_EQ(rec.count(Dim::Guest), n);
          EXPECT_EQ(rec.count(Dim::Nested), (n + 1) * mm);
          EXPECT_EQ(r.guest_refs, n);
          EXPECT_EQ(r.nested_refs, (n + 1) * mm);
          EXPECT_EQ(r.walk.paddr, NestedMachine::kHostOffset + NestedMachine::kData + (linear & (guest_page - 1)));
          EXPECT_EQ(r.walk.guest_physical, NestedMachine::kData + (linear & (guest_page - 1)));
          EXPECT_EQ(r.page_size, std::min(guest_page, ept_page));
          ++cases;
        }
  EXPECT_EQ(cases, 2u * 3 * 4 * 2);
}

// The figures everyone quotes: 24 for a 4-level guest on 4-level EPT, 29 for a 5-level guest.
TEST(NestedWalk, TwentyFourAndTwentyNine) {
  for (const GuestMode& g : kModes) {
    if (g.mode != PagingMode::Level4 && g.mode != PagingMode::Level5) continue;
    NestedMachine m(k4K);
    const CpuState s = build_guest(m, g, 0x40600ABC, k4K);
    const NestedWalkResult r = nested_page_walk(s, m.host, m.ept.pointer(), {0x40600ABC, Access::Read, false});
    ASSERT_TRUE(r.walk.ok);
    EXPECT_EQ(r.guest_refs + r.nested_refs, g.mode == PagingMode::Level4 ? 24u : 29u);
  }
}

// The lecture's example with its numbers read as page numbers: guest-virtual page 5 maps to
// guest-physical page 15, which the EPT maps to host-physical page 32; the byte offset (0x123)
// carries through. The guest's four tables sit at guest-physical pages 1 to 4, which the EPT maps
// to host-physical pages 0x41 to 0x44; the EPT's own tables at host-physical 0x100000 upwards.
TEST(NestedWalk, LectureExampleVisitsExactlyTheTablesItShould) {
  FlatRam host(64 << 20);
  EptBuilder ept(host, 0x100000, 1 << 20);
  for (uint64_t page = 1; page <= 4; ++page) ept.map(page << 12, (0x40 + page) << 12, k4K, k4K);
  ept.map(15 << 12, 32 << 12, k4K, k4K);
  const uint64_t pml4 = 0x1000, pdpt = 0x2000, pd = 0x3000, pt = 0x4000;
  auto guest_put = [&](uint64_t gpa, uint64_t v) { host.put<uint64_t>(((0x40 + (gpa >> 12)) << 12) + (gpa & 0xFFF), v); };
  guest_put(pml4, pdpt | P | RW);
  guest_put(pdpt, pd | P | RW);
  guest_put(pd, pt | P | RW);
  guest_put(pt + 5 * 8, (15 << 12) | P | RW);
  host.put<uint8_t>((32 << 12) + 0x123, 0x5A);

  CpuState s;
  s.cr0 = CR0_PE | CR0_PG;
  s.cr4 = CR4_PAE;
  s.efer = EFER_LME | EFER_LMA;
  s.cr3 = pml4;
  Recorder rec;
  const uint64_t linear = (5 << 12) + 0x123;
  const NestedWalkResult r = nested_page_walk(s, host, ept.pointer(), {linear, Access::Read, false}, &rec);
  ASSERT_TRUE(r.walk.ok);
  EXPECT_EQ(r.walk.guest_physical, (15u << 12) + 0x123);
  EXPECT_EQ(r.walk.paddr, (32u << 12) + 0x123);
  EXPECT_EQ(host.get<uint8_t>(r.walk.paddr), 0x5A);

  // The EPT: PML4 at 0x100000, PDPT 0x101000, PD 0x102000, PT 0x103000 (every guest-physical page
  // here lies in the first 2 MiB, so all share them); the EPT PTE of guest-physical page g is at
  // 0x103000 + 8 g.
  auto nested = [](uint64_t gpa_page) {
    return std::vector<Ref>{{0x100000, 4, Dim::Nested}, {0x101000, 3, Dim::Nested},
                            {0x102000, 2, Dim::Nested}, {0x103000 + 8 * gpa_page, 1, Dim::Nested}};
  };
  std::vector<Ref> expected;
  auto append = [&](std::vector<Ref> v) { expected.insert(expected.end(), v.begin(), v.end()); };
  append(nested(1)), expected.push_back({0x41000, 4, Dim::Guest});      // guest PML4E 0
  append(nested(2)), expected.push_back({0x42000, 3, Dim::Guest});      // guest PDPTE 0
  append(nested(3)), expected.push_back({0x43000, 2, Dim::Guest});      // guest PDE 0
  append(nested(4)), expected.push_back({0x44000 + 5 * 8, 1, Dim::Guest});  // guest PTE 5
  append(nested(15));                                                    // the data page
  EXPECT_EQ(rec.refs, expected);
  EXPECT_EQ(rec.refs.size(), 24u);
}

namespace {

// A 4-level guest mapping kLinear to kData on 4 KiB EPT pages, for the exit tests.
struct ExitFixture {
  NestedMachine m{k4K};
  static constexpr uint64_t kLinear = 0x40600ABC;
  CpuState s = build_guest(m, kModes[2], kLinear, k4K);
  NestedWalkResult walk(Access access, bool accessed_dirty = false) {
    return nested_page_walk(s, m.host, m.ept.pointer(accessed_dirty), {kLinear, access, false});
  }
  uint64_t ept_pte(uint64_t gpa) { return m.ept.entry_address(gpa, 1); }
  void set_ept(uint64_t gpa, unsigned level, uint64_t value) { m.host.put<uint64_t>(m.ept.entry_address(gpa, level), value); }
  uint64_t get_ept(uint64_t gpa, unsigned level) { return m.host.get<uint64_t>(m.ept.entry_address(gpa, level)); }
};

constexpr uint64_t kWb = uint64_t{MEMTYPE_WB} << kEptMemoryTypeShift;

}  // namespace

TEST(EptViolation, FinalAddressNotMapped) {
  ExitFixture f;
  const uint64_t data_gpa = NestedMachine::kData + (ExitFixture::kLinear & 0xFFF);
  f.set_ept(NestedMachine::kData, 1, 0);
  const NestedWalkResult r = f.walk(Access::Write);
  EXPECT_FALSE(r.walk.ok);
  EXPECT_TRUE(r.walk.translator_refused);
  EXPECT_EQ(r.ept_exit.kind, EptExitKind::Violation);
  // Bits 3-5 are the AND over the entries used, the not-present PTE among them: all clear.
  EXPECT_EQ(r.ept_exit.qualification, EPT_QUAL_WRITE | EPT_QUAL_LINEAR_VALID | EPT_QUAL_LINEAR_TRANSLATION);
  EXPECT_EQ(r.ept_exit.guest_physical, data_gpa);
  EXPECT_EQ(r.ept_exit.guest_linear, ExitFixture::kLinear);
  EXPECT_EQ(r.ept_exit.level, 1u);
}

TEST(EptViolation, RightsOfTheTranslationAreReported) {
  ExitFixture f;
  const uint64_t host_page = NestedMachine::kHostOffset + NestedMachine::kData;
  f.set_ept(NestedMachine::kData, 1, host_page | EPT_READ | EPT_EXECUTE | kWb);  // read and execute
  EXPECT_TRUE(f.walk(Access::Read).walk.ok);
  EXPECT_TRUE(f.walk(Access::Execute).walk.ok);
  NestedWalkResult r = f.walk(Access::Write);
  ASSERT_EQ(r.ept_exit.kind, EptExitKind::Violation);
  EXPECT_EQ(r.ept_exit.qualification, EPT_QUAL_WRITE | EPT_QUAL_READABLE | EPT_QUAL_EXECUTABLE |
                                          EPT_QUAL_LINEAR_VALID | EPT_QUAL_LINEAR_TRANSLATION);

  f.set_ept(NestedMachine::kData, 1, host_page | EPT_READ | EPT_WRITE | kWb);  // no execute
  r = f.walk(Access::Execute);
  ASSERT_EQ(r.ept_exit.kind, EptExitKind::Violation);
  EXPECT_EQ(r.ept_exit.qualification, EPT_QUAL_FETCH | EPT_QUAL_READABLE | EPT_QUAL_WRITABLE |
                                          EPT_QUAL_LINEAR_VALID | EPT_QUAL_LINEAR_TRANSLATION);

  f.set_ept(NestedMachine::kData, 1, host_page | EPT_EXECUTE | kWb);  // execute-only: allowed
  EXPECT_TRUE(f.walk(Access::Execute).walk.ok);
  r = f.walk(Access::Read);
  ASSERT_EQ(r.ept_exit.kind, EptExitKind::Violation);
  EXPECT_EQ(r.ept_exit.qualification, EPT_QUAL_READ | EPT_QUAL_EXECUTABLE | EPT_QUAL_LINEAR_VALID |
                                          EPT_QUAL_LINEAR_TRANSLATION);
}

TEST(EptViolation, GuestPagingStructureAccess) {
  ExitFixture f;
  ASSERT_TRUE(f.walk(Access::Read).walk.ok);  // sets the guest's accessed flags once and for all
  const uint64_t pd_gpa = 0x12000;  // the guest's third table (PML4 0x10000, PDPT 0x11000, PD)
  f.set_ept(pd_gpa, 1, 0);
  NestedWalkResult r = f.walk(Access::Execute);
  ASSERT_EQ(r.ept_exit.kind, EptExitKind::Violation);
  // A read of a guest paging-structure entry: bit 7 set, bit 8 clear, whatever the access was.
  EXPECT_EQ(r.ept_exit.qualification, EPT_QUAL_READ | EPT_QUAL_LINEAR_VALID);
  EXPECT_EQ(r.ept_exit.guest_physical, pd_gpa + idx(ExitFixture::kLinear, 2) * 8);
  EXPECT_EQ(r.guest_refs, 2u);  // PML4E and PDPTE were read; the walk stopped at the PDE

  // With EPT accessed and dirty flags, guest paging-structure accesses are writes (SDM 28.2.3.2):
  // a read-only page-table page stops the walk with bits 0 and 1 both set.
  f.set_ept(pd_gpa, 1, (NestedMachine::kHostOffset + pd_gpa) | EPT_READ | kWb);
  EXPECT_TRUE(f.walk(Access::Read).walk.ok);
  r = f.walk(Access::Read, /*accessed_dirty=*/true);
  ASSERT_EQ(r.ept_exit.kind, EptExitKind::Violation);
  EXPECT_EQ(r.ept_exit.qualification,
            EPT_QUAL_READ | EPT_QUAL_WRITE | EPT_QUAL_READABLE | EPT_QUAL_LINEAR_VALID);
}

TEST(EptViolation, GuestAccessedFlagUpdateNeedsWriteRights) {
  ExitFixture f;
  const uint64_t pt_gpa = 0x13000;  // the guest's page table
  const uint64_t pte_gpa = pt_gpa + idx(ExitFixture::kLinear, 1) * 8;
  f.set_ept(pt_gpa, 1, (NestedMachine::kHostOffset + pt_gpa) | EPT_READ | kWb);
  const uint64_t pte_before = f.m.get(pte_gpa);
  ASSERT_FALSE(pte_before & A);
  const NestedWalkResult r = f.walk(Access::Read);
  ASSERT_EQ(r.ept_exit.kind, EptExitKind::Violation);
  EXPECT_EQ(r.ept_exit.qualification, EPT_QUAL_WRITE | EPT_QUAL_READABLE | EPT_QUAL_LINEAR_VALID);
  EXPECT_EQ(r.ept_exit.guest_physical, pte_gpa);
  EXPECT_EQ(f.m.get(pte_gpa), pte_before);  // no guest flag was set by the failed walk
  EXPECT_FALSE(f.m.get(0x10000 + idx(ExitFixture::kLinear, 4) * 8) & A);
}

TEST(EptViolation, PaePdpteLoadHasNoLinearAddress) {
  NestedMachine m(k4K);
  const CpuState s = build_guest(m, kModes[1], 0x40600ABC, k4K);
  m.host.put<uint64_t>(m.ept.entry_address(s.cr3, 1), 0);
  const NestedWalkResult r = nested_page_walk(s, m.host, m.ept.pointer(), {0x40600ABC, Access::Read, false});
  ASSERT_EQ(r.ept_exit.kind, EptExitKind::Violation);
  EXPECT_EQ(r.ept_exit.qualification, EPT_QUAL_READ);
  EXPECT_EQ(r.nested_refs, 0u);  // the PDPTE load is not a reference of the walk
}

TEST(EptMisconfiguration, BadEntries) {
  const uint64_t host_page = NestedMachine::kHostOffset + NestedMachine::kData;
  struct Case {
    const char* what;
    unsigned level;
    uint64_t value;  // 0: keep, adding `add`
    uint64_t add;
  };
  const Case cases[] = {
      {"write without read", 1, host_page | EPT_WRITE | kWb, 0},
      {"write-execute without read", 1, host_page | EPT_WRITE | EPT_EXECUTE | kWb, 0},
      {"reserved memory type 2", 1, host_page | kEptRwx | (2ull << kEptMemoryTypeShift), 0},
      {"reserved memory type 7", 1, host_page | kEptRwx | (7ull << kEptMemoryTypeShift), 0},
      {"reserved bit 3 in a PML4E", 4, 0, 1ull << 3},
      {"memory type in a PDE that references a table", 2, 0, kWb},
      {"address bit above MAXPHYADDR", 1, host_page | kEptRwx | kWb | (1ull << kMaxPhysAddrBits), 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ExitFixture f;
    const uint64_t value = c.value ? c.value : f.get_ept(NestedMachine::kData, c.level) | c.add;
    f.set_ept(NestedMachine::kData, c.level, value);
    const NestedWalkResult r = f.walk(Access::Read);
    EXPECT_FALSE(r.walk.ok);
    EXPECT_EQ(r.ept_exit.kind, EptExitKind::Misconfiguration);
    EXPECT_EQ(r.ept_exit.level, c.level);
    EXPECT_EQ(r.ept_exit.qualification, 0u);
    // The EPT PML4E is shared by the guest's tables, so the first translation (of the guest's
    // PML4E) meets it; the PDE and PTE changed map only the data page.
    const uint64_t first_gpa = f.s.cr3 + idx(ExitFixture::kLinear, 4) * 8;
    EXPECT_EQ(r.ept_exit.guest_physical,
              c.level == 4 ? first_gpa : NestedMachine::kData + (ExitFixture::kLinear & 0xFFF));
  }
  // Reserved address bits inside a large page: a 2 MiB EPT page whose bit 12 is set.
  NestedMachine m(k2M);
  const CpuState s = build_guest(m, kModes[2], 0x40600ABC, k4K);
  const uint64_t pde = m.ept.entry_address(NestedMachine::kData, 2);
  m.host.put<uint64_t>(pde, m.host.get<uint64_t>(pde) | (1ull << 12));
  EXPECT_EQ(nested_page_walk(s, m.host, m.ept.pointer(), {0x40600ABC, Access::Read, false}).ept_exit.kind,
            EptExitKind::Misconfiguration);
}

TEST(NestedWalk, GuestFaultsAreTheGuests) {
  ExitFixture f;
  f.m.put(0x13000 + idx(ExitFixture::kLinear, 1) * 8, 0);  // guest PTE not present
  const NestedWalkResult r = f.walk(Access::Write);
  EXPECT_FALSE(r.walk.ok);
  EXPECT_FALSE(r.walk.translator_refused);
  EXPECT_EQ(r.ept_exit.kind, EptExitKind::None);
  EXPECT_EQ(r.walk.fault.vector, PF_);
  EXPECT_EQ(r.walk.fault.error_code, PFERR_W);
  EXPECT_EQ(r.walk.fault.cr2, ExitFixture::kLinear);
}

TEST(NestedWalk, AccessedAndDirtyFlagsInBothDimensions) {
  ExitFixture f;
  const uint64_t pte_gpa = 0x13000 + idx(ExitFixture::kLinear, 1) * 8;
  ASSERT_TRUE(f.walk(Access::Write).walk.ok);
  EXPECT_EQ(f.m.get(pte_gpa) & (A | D), A | D);                          // the guest's PTE, in host memory
  EXPECT_EQ(f.get_ept(NestedMachine::kData, 1) & (EPT_ACCESSED | EPT_DIRTY), 0u);  // EPTP bit 6 clear
  ASSERT_TRUE(f.walk(Access::Read, /*accessed_dirty=*/true).walk.ok);
  EXPECT_EQ(f.get_ept(NestedMachine::kData, 1) & (EPT_ACCESSED | EPT_DIRTY), EPT_ACCESSED);
  EXPECT_TRUE(f.get_ept(NestedMachine::kData, 4) & EPT_ACCESSED);
  // Guest page-table pages are written as far as EPT flags go (SDM 28.2.4).
  EXPECT_EQ(f.get_ept(0x13000, 1) & (EPT_ACCESSED | EPT_DIRTY), EPT_ACCESSED | EPT_DIRTY);
  ASSERT_TRUE(f.walk(Access::Write, true).walk.ok);
  EXPECT_EQ(f.get_ept(NestedMachine::kData, 1) & EPT_DIRTY, EPT_DIRTY);
}

TEST(NestedWalk, MemoryTypeAndIgnorePat) {
  NestedMachine m(k4K);
  const EptResult r = ept_translate(m.ept.pointer(), m.host, {{0x5000, GuestPhysicalUse::Final, 0, Access::Read, true}, 0});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.memory_type, MEMTYPE_WB);
  EXPECT_FALSE(r.ignore_pat);
  const uint64_t pte = m.ept.entry_address(0x5000, 1);
  m.host.put<uint64_t>(pte, (m.host.get<uint64_t>(pte) & ~kEptMemoryTypeMask) | EPT_IGNORE_PAT);  // UC
  const EptResult uc = ept_translate(m.ept.pointer(), m.host, {{0x5000, GuestPhysicalUse::Final, 0, Access::Read, true}, 0});
  EXPECT_EQ(uc.memory_type, MEMTYPE_UC);
  EXPECT_TRUE(uc.ignore_pat);
}

TEST(EptPointerTest, EncodeDecodeAndRefusals) {
  const EptPointer p{0x123000, 4, true, MEMTYPE_WB};
  EXPECT_EQ(p.encode(), 0x123000u | (1u << 6) | (3u << 3) | 6u);
  const std::optional<EptPointer> back = EptPointer::decode(p.encode());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->root, 0x123000u);
  EXPECT_EQ(back->levels, 4u);
  EXPECT_TRUE(back->accessed_dirty);
  EXPECT_EQ(EptPointer::decode(0x123000 | (4u << 3) | 0)->levels, 5u);
  EXPECT_FALSE(EptPointer::decode(0x123000 | (3u << 3) | 1));  // WC: not a paging-structure type
  EXPECT_FALSE(EptPointer::decode(0x123000 | (2u << 3) | 6));  // 3 levels
  EXPECT_FALSE(EptPointer::decode(0x123000 | (3u << 3) | 6 | (1u << 8)));  // reserved bit
}

TEST(EptBuilderTest, RefusesWhatItCannotMap) {
  FlatRam host(16 << 20);
  EptBuilder ept(host, 0x100000, 3 * 0x1000);
  EXPECT_THROW(ept.map(0x1000, 0x200000, k2M, k2M), std::invalid_argument);  // misaligned
  EXPECT_THROW(ept.map(0, 0, k4K, 3 * k4K), std::invalid_argument);         // no such page size
  ept.map(0, k2M, k2M, k2M);
  EXPECT_THROW(ept.map(0, 0, k4K, k4K), std::invalid_argument);  // inside the 2 MiB page
  EXPECT_THROW(ept.map(k1G, 0, k4K, k4K), std::length_error);   // a fourth table does not fit
  EXPECT_EQ(ept.tables(), 3u);
}

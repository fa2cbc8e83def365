// The direct-paging validator on a hand-built guest: 4 MiB of guest RAM, the VMM's memory above it,
// and a 4-level address space (PML4, PDPT, PD, one page table) whose page-table frames are mapped
// read-only and a data page writable. Refused requests return the ABI's code and leave memory and
// frame types as they were; valid ones are applied.
#include <gtest/gtest.h>

#include "models/vmm/direct_paging.h"
#include "tests/isa/harness.h"

namespace pgsim {
namespace {

using vmm::DirectPaging;
using vmm::FrameType;

constexpr uint64_t kGuestRam = 4ull << 20, kVmmBase = kGuestRam, kVmmBytes = 1ull << 20;
constexpr uint64_t kP = 1, kW = 2, kU = 4, kPs = 0x80;
// The address space: its tables, and the pages its page table maps (virtual = physical).
constexpr uint64_t kPml4 = 0x10000, kPdpt = 0x11000, kPd = 0x12000, kPt = 0x13000;
constexpr uint64_t kData = 0x20000, kOtherData = 0x21000, kSpareTable = 0x30000, kUserPml4 = 0x31000;

struct Guest {
  test::FlatRam ram{kGuestRam + kVmmBytes};
  DirectPaging paging{ram, kGuestRam, kVmmBase, kVmmBytes};

  Guest() {
    ram.put<uint64_t>(kPml4, kPdpt | kP | kW | kU);
    ram.put<uint64_t>(kPdpt, kPd | kP | kW | kU);
    ram.put<uint64_t>(kPd, kPt | kP | kW | kU);
    for (uint64_t table : {kPml4, kPdpt, kPd, kPt}) ram.put<uint64_t>(kPt + 8 * (table >> 12), table | kP | kU);
    ram.put<uint64_t>(kPt + 8 * (kData >> 12), kData | kP | kW | kU);
  }
  uint64_t entry(uint64_t address) { return ram.get<uint64_t>(address); }
  // The page table's entry for the page at physical (and virtual) address `page`.
  static uint64_t pte_of(uint64_t page) { return kPt + 8 * (page >> 12); }
};

TEST(DirectPaging, PinningARootValidatesTheTreeAndTypesEveryFrame) {
  Guest g;
  ASSERT_EQ(g.paging.pin(kPml4, 4), 0);
  EXPECT_TRUE(g.paging.pinned(kPml4));
  EXPECT_EQ(g.paging.type_of(kPml4), FrameType::L4);
  EXPECT_EQ(g.paging.type_of(kPdpt), FrameType::L3);
  EXPECT_EQ(g.paging.type_of(kPd), FrameType::L2);
  EXPECT_EQ(g.paging.type_of(kPt), FrameType::L1);
  EXPECT_EQ(g.paging.type_of(kData), FrameType::Writable);
  EXPECT_EQ(g.paging.counters().tables_validated, 4u);
  EXPECT_EQ(g.paging.counters().refusals, 0u);
  // Loading it references it once more; unpinning a loaded root is refused.
  ASSERT_EQ(g.paging.load_roots(kPml4, 0), 0);
  EXPECT_EQ(g.paging.type_count(kPml4), 2u);
  EXPECT_EQ(g.paging.unpin(kPml4), -PV_EBUSY);
}

TEST(DirectPaging, AMappingOfTheVmmsMemoryIsRefusedAndMemoryIsUntouched) {
  Guest g;
  ASSERT_EQ(g.paging.pin(kPml4, 4), 0);
  const uint64_t before = g.entry(Guest::pte_of(kOtherData));
  for (uint64_t flags : {kP | kU, kP | kW | kU}) {
    EXPECT_EQ(g.paging.update(Guest::pte_of(kOtherData), kVmmBase | flags), -PV_EPERM);
    EXPECT_EQ(g.paging.update(Guest::pte_of(kOtherData), (kVmmBase + kVmmBytes - 4096) | flags), -PV_EPERM);
  }
  EXPECT_EQ(g.entry(Guest::pte_of(kOtherData)), before);
  // A 2 MiB page that reaches into it, and a page beyond everything the guest has.
  EXPECT_EQ(g.paging.update(kPd + 8, (kGuestRam - (2ull << 20)) | kP | kPs), 0);  // the last 2 MiB of RAM
  EXPECT_EQ(g.paging.update(kPd + 16, kVmmBase | kP | kPs), -PV_EPERM);
  EXPECT_EQ(g.paging.update(Guest::pte_of(kOtherData), (64ull << 30) | kP), -PV_EINVAL);
  EXPECT_EQ(g.entry(kPd + 16), 0u);
  // Nor may an update's own address be there, and memory there is left alone.
  g.ram.put<uint64_t>(kVmmBase, 0x1234);
  EXPECT_EQ(g.paging.update(kVmmBase, 0), -PV_EPERM);
  EXPECT_EQ(g.ram.get<uint64_t>(kVmmBase), 0x1234u);
  EXPECT_EQ(g.paging.counters().refusals, 7u);
}

TEST(DirectPaging, APageTableFrameMappedWritableIsRefused) {
  Guest g;
  ASSERT_EQ(g.paging.pin(kPml4, 4), 0);
  for (uint64_t table : {kPml4, kPdpt, kPd, kPt}) {
    SCOPED_TRACE(table);
    const uint64_t before = g.entry(Guest::pte_of(table));
    EXPECT_EQ(g.paging.update(Guest::pte_of(table), table | kP | kW | kU), -PV_EPERM);
    EXPECT_EQ(g.entry(Guest::pte_of(table)), before);
    EXPECT_EQ(g.paging.type_of(table) == FrameType::Writable, false);
  }
  // A 2 MiB writable page over the tables is refused too; read-only it is fine.
  EXPECT_EQ(g.paging.update(kPd + 8, 0 | kP | kW | kPs), -PV_EPERM);
  EXPECT_EQ(g.paging.update(kPd + 8, 0 | kP | kPs), 0);
  // The other way round: a frame mapped writable cannot become a table.
  EXPECT_EQ(g.paging.update(kPd + 16, kData | kP | kW | kU), -PV_EPERM);
  EXPECT_EQ(g.paging.type_of(kData), FrameType::Writable);
  // A table cannot be linked in at the wrong level, nor validate through itself.
  EXPECT_EQ(g.paging.update(kPdpt + 8, kPt | kP | kW | kU), -PV_EPERM);
  EXPECT_EQ(g.paging.update(kPml4 + 8, kPml4 | kP | kW | kU), -PV_EPERM);
  EXPECT_EQ(g.paging.type_of(kPml4), FrameType::L4);
}

TEST(DirectPaging, AValidBatchIsAppliedInOrder) {
  Guest g;
  ASSERT_EQ(g.paging.pin(kPml4, 4), 0);
  // Fork-like: the spare frame is made read-only, then linked as a second page table, which maps
  // the data page read-only (copy-on-write) while the first page table's mapping loses W.
  const pv_mmu_update batch[] = {
      {Guest::pte_of(kSpareTable), kSpareTable | kP | kU},
      {kPd + 8, kSpareTable | kP | kW | kU},
      {kSpareTable + 8 * 3, kData | kP | kU},
      {Guest::pte_of(kData), kData | kP | kU},
      {Guest::pte_of(kOtherData), kOtherData | kP | kW | kU},
  };
  uint64_t done = 0;
  EXPECT_EQ(g.paging.update_batch(batch, 5, &done), 5);
  EXPECT_EQ(done, 5u);
  for (const auto& r : batch) EXPECT_EQ(g.entry(r.ptr), r.value);
  EXPECT_EQ(g.paging.type_of(kSpareTable), FrameType::L1);
  EXPECT_EQ(g.paging.type_of(kData), FrameType::None);  // no writable mapping left
  EXPECT_EQ(g.paging.type_of(kOtherData), FrameType::Writable);
  EXPECT_EQ(g.paging.counters().updates, 5u);
  EXPECT_EQ(g.paging.counters().validations, 6u);  // the pin and five updates
}

TEST(DirectPaging, ABatchStopsAtTheFirstRefusal) {
  Guest g;
  ASSERT_EQ(g.paging.pin(kPml4, 4), 0);
  const pv_mmu_update batch[] = {
      {Guest::pte_of(kOtherData), kOtherData | kP | kW | kU},
      {Guest::pte_of(kSpareTable), kPt | kP | kW | kU},  // the page table, writable
      {Guest::pte_of(kSpareTable + 4096), (kSpareTable + 4096) | kP | kW | kU},
  };
  uint64_t done = 99;
  EXPECT_EQ(g.paging.update_batch(batch, 3, &done), -PV_EPERM);
  EXPECT_EQ(done, 1u);
  EXPECT_EQ(g.entry(batch[0].ptr), batch[0].value);
  EXPECT_EQ(g.entry(batch[1].ptr), 0u);
  EXPECT_EQ(g.entry(batch[2].ptr), 0u);
}

// Before a frame is a table its entries are ordinary memory; once unpinned and unreferenced it is
// ordinary again, its entries' references dropped, and may be mapped writable.
TEST(DirectPaging, UnpinningReturnsTheFramesToTheGuest) {
  Guest g;
  EXPECT_EQ(g.paging.update(kUserPml4, kPdpt | kP | kW | kU), 0);  // not a table yet: written as is
  EXPECT_EQ(g.paging.counters().plain_writes, 1u);
  ASSERT_EQ(g.paging.pin(kPml4, 4), 0);
  ASSERT_EQ(g.paging.pin(kUserPml4, 4), 0);  // shares the PDPT
  EXPECT_EQ(g.paging.type_count(kPdpt), 2u);
  ASSERT_EQ(g.paging.load_roots(kPml4, kUserPml4), 0);
  ASSERT_EQ(g.paging.load_roots(kPml4, 0), 0);  // the user root is no longer loaded
  EXPECT_EQ(g.paging.unpin(kUserPml4), 0);
  EXPECT_EQ(g.paging.unpin(kUserPml4), -PV_ENOENT);
  EXPECT_EQ(g.paging.type_of(kUserPml4), FrameType::None);
  EXPECT_EQ(g.paging.type_count(kPdpt), 1u);
  EXPECT_EQ(g.paging.update(Guest::pte_of(kUserPml4), kUserPml4 | kP | kW | kU), 0);
  // A root that does not validate is not loaded, and the loaded one stays.
  EXPECT_EQ(g.paging.load_roots(kUserPml4, 0), -PV_EPERM);  // now mapped writable
  EXPECT_EQ(g.paging.kernel_root(), kPml4);
  EXPECT_EQ(g.paging.pin(kPml4, 4), -PV_EINVAL);  // already pinned
  EXPECT_EQ(g.paging.pin(kPml4 + 8, 4), -PV_EINVAL);
  EXPECT_EQ(g.paging.pin(kSpareTable, 5), -PV_EINVAL);
}

// PML4 entries 256-271 are the VMM's in every root: the guest may not write them.
TEST(DirectPaging, TheVmmsPml4SlotsAreNotTheGuests) {
  Guest g;
  ASSERT_EQ(g.paging.pin(kPml4, 4), 0);
  EXPECT_EQ(g.paging.update(kPml4 + 8 * PV_VMM_PML4_FIRST, 0), -PV_EPERM);
  EXPECT_EQ(g.paging.update(kPml4 + 8 * PV_VMM_PML4_LAST, 0), -PV_EPERM);
  EXPECT_EQ(g.paging.update(kPml4 + 8 * (PV_VMM_PML4_LAST + 1), 0), 0);
  EXPECT_EQ(g.paging.update(kPml4 + 4, 0), -PV_EINVAL);  // misaligned
}

}  // namespace
}  // namespace pgsim

// mmu: TLBs and page-walk caches.
#include <algorithm>

#include "platforms/config/schema_sections.h"

namespace pgsim::config {

namespace {

// A TLB level: entries (0: the CPU has no such TLB) and associativity; entries must divide into
// sets of `ways`.
// The page sizes a TLB level may hold: x86's 4 KiB pages, 2 MiB (PAE and 4-level PDEs), 4 MiB
// (32-bit PSE PDEs) and 1 GiB (PDPTEs).
const std::vector<std::string> kTlbPageSizes = {"4K", "2M", "4M", "1G"};

// A TLB's `<prefix>.entries` must divide into sets of `<prefix>.ways`.
void require_ways_divide_entries(Schema& s, const std::string& prefix) {
  s.add_rule([prefix](const Config& c) {
    int64_t n = c.i64(prefix + ".entries"), w = c.i64(prefix + ".ways");
    if (n != 0 && (w > n || n % w != 0))
      c.fail_at_set({prefix + ".ways", prefix + ".entries"},
                    prefix + ".ways must divide " + prefix + ".entries (" + std::to_string(n) + "); got " + std::to_string(w));
  });
}

void declare_tlb(Schema& s, const std::string& level, int64_t entries, int64_t ways,
                 std::vector<std::string> page_sizes, const std::string& what) {
  s.add(integer("mmu.tlb." + level + ".entries", entries, "entries", 0, 65'536,
                what + ": number of entries (0: no such TLB)"));
  s.add(integer("mmu.tlb." + level + ".ways", ways, "ways", 1, 65'536,
                what + ": associativity (ways = entries: fully associative)"));
  s.add({"mmu.tlb." + level + ".page_sizes", Type::StringList, std::move(page_sizes), "page sizes",
         what + ": page sizes its entries hold, from 4K, 2M, 4M, 1G (the entries are shared by "
                "them); a translation of another size is not cached in this level", {}, {}, {}});
  s.add_rule([level](const Config& c) {
    const std::string key = "mmu.tlb." + level + ".page_sizes";
    const std::vector<std::string>& sizes = c.list(key);
    if (sizes.empty()) c.fail(key, "must list at least one page size (4K, 2M, 4M, 1G)");
    for (const std::string& size : sizes)
      if (std::find(kTlbPageSizes.begin(), kTlbPageSizes.end(), size) == kTlbPageSizes.end())
        c.fail(key, "'" + size + "' is not a page size; expected 4K, 2M, 4M or 1G");
  });
  require_ways_divide_entries(s, "mmu.tlb." + level);
}

// The page-walk caches of one dimension under `prefix`: `cache` names them, `entries` qualifies the
// entries they hold ("" for the guest's, "EPT " for the nested dimension's).
void declare_walk_caches(Schema& s, const std::string& prefix, const std::string& cache,
                         const std::string& entries, const std::string& enabled_description) {
  s.add(boolean(prefix + ".enabled", true, enabled_description));
  s.add(integer(prefix + ".pml4e_entries", 2, "entries", 0, 4096,
                cache + " of " + entries + "PML4 (and PML5) entries"));
  s.add(integer(prefix + ".pdpte_entries", 4, "entries", 0, 4096,
                cache + " of " + entries + "page-directory-pointer entries"));
  s.add(integer(prefix + ".pde_entries", 32, "entries", 0, 4096,
                cache + " of " + entries + "page-directory entries"));
}

}  // namespace

void declare_mmu(Schema& s) {
  s.add(boolean("mmu.tlb.enabled", true,
                "model the TLBs (false: every translation walks the page tables)"));
  // Defaults: an Intel Skylake core (Intel 64 and IA-32 Optimization Reference Manual, 2.2).
  declare_tlb(s, "l1i", 128, 8, {"4K", "2M", "4M"}, "L1 instruction TLB");
  declare_tlb(s, "l1d", 64, 4, {"4K", "2M", "4M", "1G"}, "L1 data TLB");
  declare_tlb(s, "l2", 1536, 12, {"4K", "2M", "4M", "1G"}, "L2 (second-level, unified) TLB");
  s.add(integer("mmu.tlb.l2.hit_cycles", 9, "cycles", 0, 1000,
                "cost of an L1 TLB miss that hits in the L2 TLB"));
  s.add(boolean("mmu.tlb.pcid", true,
                "honour PCIDs (CR4.PCIDE): a CR3 load keeps the entries of other PCIDs"));

  declare_walk_caches(s, "mmu.pwc", "page-walk cache", "",
                      "model the page-walk caches of upper-level entries (false: every walk reads "
                      "every level from memory)");

  // Nested paging (EPT): the structures Bhargava et al. (ASPLOS 2008) add for the nested dimension
  // of the two-dimensional walk. Sizes: estimates of the same order as the guest dimension's.
  s.add(integer("mmu.nested.tlb.entries", 16, "entries", 0, 65'536,
                "nested TLB (guest-physical to host-physical pages of 4K, 2M and 1G, tagged by VPID): "
                "number of entries (0: none; mmu.tlb.enabled false also removes it); a hit saves a "
                "whole nested walk"));
  s.add(integer("mmu.nested.tlb.ways", 16, "ways", 1, 65'536,
                "nested TLB: associativity (ways = entries: fully associative)"));
  require_ways_divide_entries(s, "mmu.nested.tlb");
  declare_walk_caches(s, "mmu.nested.pwc", "nested page-walk cache", "EPT ",
                      "model the nested page-walk caches of upper-level EPT entries (false: every "
                      "nested walk that misses the nested TLB reads every EPT level)");
}

}  // namespace pgsim::config

// A set-associative TLB with LRU replacement: the entries, associativity and page sizes of one
// level (L1 instruction, L1 data, L2). Entries are tagged with the page number at their page size,
// the PCID and the global bit, so INVLPG, MOV CR3 with and without PCIDs, and CR4.PGE changes
// drop exactly what the SDM (vol. 3, 4.10.4) says they drop. Entries are also tagged with a VPID
// (SDM vol. 3C, 28.1: 0 outside VMX non-root operation), and nothing matches across VPIDs, global
// entries included; the nested TLB uses the same structure for guest-physical pages. A timing model: it records which
// translations the hardware would hold, not what they translate to.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace pgsim::models {

constexpr uint64_t kPage4K = 1ull << 12, kPage2M = 1ull << 21, kPage4M = 1ull << 22, kPage1G = 1ull << 30;

struct TlbGeometry {
  unsigned entries = 64;  // 0 disables the level (every lookup misses)
  unsigned ways = 4;      // 0 or >= entries: fully associative
  // Page sizes the level holds, sharing its entries. A translation of another size is not cached
  // in this level: it misses here every time and is served by a level that holds it, or walks.
  std::vector<uint64_t> page_sizes = {kPage4K};
};

// "4K", "2M", "4M", "1G" as bytes; throws std::invalid_argument for anything else.
uint64_t page_size_from_name(const std::string& name);

class Tlb {
 public:
  struct Entry {
    uint64_t vpn = 0;        // linear address >> page_shift
    uint16_t pcid = 0;
    uint16_t vpid = 0;
    uint8_t page_shift = 12;
    bool global = false;
    bool valid = false;
    bool listed = false;     // its index is in occupied_
    uint64_t last_use = 0;   // LRU stamp
  };
  // Told about every entry that leaves the TLB (eviction or invalidation): base and size.
  using EvictCallback = std::function<void(uint64_t linear_base, uint64_t size)>;

  explicit Tlb(const TlbGeometry& geometry);

  bool enabled() const { return sets_ > 0; }
  bool holds(uint64_t page_size) const;
  unsigned sets() const { return sets_; }
  unsigned ways() const { return ways_; }

  // True (and the entry becomes most recently used) when the page holding `linear` is present for
  // `pcid` (or as a global entry) of `vpid`.
  bool lookup(uint64_t linear, uint16_t pcid, uint16_t vpid = 0) { return lookup_entry(linear, pcid, vpid) != nullptr; }
  // The same, giving the entry (valid until the next insertion or invalidation).
  const Entry* lookup_entry(uint64_t linear, uint16_t pcid, uint16_t vpid = 0);
  // True when inserting a translation of `page_size` bytes with `global` would change nothing for
  // `hit`, the entry that lookup_entry() just gave (the same page, size and global bit: its PCID was
  // matched or does not matter, and it is already the most recently used of its set).
  static bool holds_as(const Entry& hit, uint64_t page_size, bool global) {
    return (1ull << hit.page_shift) == page_size && hit.global == global;
  }
  // Inserts the translation of a page of `page_size` bytes; returns `page_size`, or 0 when the
  // level does not hold pages of that size (or is disabled) and nothing was inserted.
  uint64_t insert(uint64_t linear, uint64_t page_size, uint16_t pcid, bool global, uint16_t vpid = 0);

  // INVLPG: drops the entries of `vpid` that translate `linear` for `pcid`, and global ones.
  void invalidate_page(uint64_t linear, uint16_t pcid, uint16_t vpid = 0);
  // Drops the entries of `vpid` that translate `linear` under any PCID.
  void invalidate_page_all_pcids(uint64_t linear, uint16_t vpid = 0);
  // Drops every entry of `pcid` (all PCIDs when `all_pcids`) of `vpid`, global ones too when asked.
  void flush(bool include_global, bool all_pcids = true, uint16_t pcid = 0, uint16_t vpid = 0);
  // INVVPID single-context: drops every entry of `vpid`, global ones included.
  void flush_vpid(uint16_t vpid);
  // Drops every entry of every VPID.
  void flush_all();

  void set_evict_callback(EvictCallback cb) { on_evict_ = std::move(cb); }
  unsigned valid_entries() const;

 private:
  Entry* find(uint64_t vpn, unsigned shift, uint16_t pcid, uint16_t vpid);
  // A mask when the set count is a power of two (every configured TLB): no division per lookup.
  unsigned set_of(uint64_t vpn) const {
    return static_cast<unsigned>((sets_ & (sets_ - 1)) == 0 ? vpn & (sets_ - 1) : vpn % sets_);
  }
  void drop(Entry& e);
  // What a lookup compares first: the page number, page size and VPID folded into one word, kept
  // apart from the entries so that a set's ways are scanned in a cache line or two. Equal tags are
  // confirmed on the entry itself (the fold may collide); kNoTag marks an invalid entry.
  static uint64_t tag_of(uint64_t vpn, unsigned shift, uint16_t vpid) {
    return vpn ^ (uint64_t{shift} << 45) ^ (uint64_t{vpid} << 48);
  }
  static constexpr uint64_t kNoTag = ~0ull;
  // The last find(): its question, its answer (an entry index, or kNone) and the number of changes
  // to the entries when it was asked. The same question with no change since has the same answer:
  // the insert after a lookup (an L2 hit, an L1 miss) asks again what the lookup asked.
  struct LastFind {
    uint64_t vpn = 0;
    unsigned shift = 0;
    uint16_t pcid = 0, vpid = 0;
    uint64_t changes = ~0ull;
    static constexpr uint32_t kNone = ~0u;
    uint32_t index = kNone;
  };
  LastFind last_find_;
  uint64_t changes_ = 0;  // entries added, dropped or re-tagged

  unsigned sets_ = 0, ways_ = 0;
  std::vector<unsigned> shifts_;  // the page shifts held, largest first
  uint64_t held_shifts_ = 0;      // bit s: pages of 2^s bytes are held
  // Valid entries by page size held and by a hash of their page number: a lookup skips a size for
  // which no entry can match. A TLB holding a few large pages beside many small ones would otherwise
  // scan a set's ways for a large page at nearly every lookup (the set a large page number indexes
  // holds the small pages of many addresses).
  std::array<uint32_t, 64> valid_by_shift_{};  // valid entries per page shift
  static constexpr unsigned kPageBuckets = 64;
  static unsigned page_bucket(uint64_t vpn) { return static_cast<unsigned>((vpn ^ (vpn >> 6) ^ (vpn >> 12)) % kPageBuckets); }
  std::vector<uint32_t> valid_by_bucket_;  // [shift_index_[shift] * kPageBuckets + page_bucket(vpn)]
  std::array<uint8_t, 64> shift_index_{};  // the index in shifts_ of each page shift held
  uint32_t& valid_in_bucket(unsigned shift, uint64_t vpn) {
    return valid_by_bucket_[shift_index_[shift] * kPageBuckets + page_bucket(vpn)];
  }
  std::vector<Entry> entries_;    // sets_ * ways_
  std::vector<uint64_t> tags_;    // tag_of() of each entry, or kNoTag
  // The indices of the entries that may be valid, so that a flush visits those rather than every
  // entry (a VMM flushes at each world switch, with most of a large L2 TLB empty).
  std::vector<uint32_t> occupied_;
  // Drops the entries `drop_it` selects among the occupied ones and forgets the empty ones.
  template <class Predicate> void drop_occupied(Predicate drop_it);
  // Drops the entries of `vpid` that translate `linear` (at any page size held) and `drop_it` selects.
  template <class Predicate> void drop_page(uint64_t linear, uint16_t vpid, Predicate drop_it);
  uint64_t clock_ = 0;
  EvictCallback on_evict_;
};

}  // namespace pgsim::models

// Extended page tables (Intel SDM vol. 3C, ch. 28 "VMX Support for Address Translation", 28.2; ch.
// 29 in editions from 2023): the translation of guest-physical addresses to host-physical ones
// that a VMM enables for a guest in VMX non-root operation, and the two-dimensional walk that
// combines it with the guest's own page walk (isa/system/paging.h). Pure functions of an EPT
// pointer and host-physical memory, like page_walk: the TLBs, walk caches and costs of the nested
// dimension belong to the platform (models/mmu), which sees every reference through a WalkObserver.
//
// The model offers what IA32_VMX_EPT_VPID_CAP (SDM appendix A.10) reports as: execute-only
// translations (bit 0), 4-level and 5-level walks (bits 6, 7), UC and WB paging-structure memory
// types (bits 8, 14), 2 MiB and 1 GiB pages (bits 16, 17), accessed and dirty flags (bit 21). Not
// offered: mode-based execute control (bit 2 of an entry means execute for every mode), advanced
// VM-exit information for EPT violations (qualification bits 9-11 stay 0), supervisor shadow
// stacks and sub-page write permissions.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>

#include "isa/bus_if.h"
#include "isa/cpu_state.h"
#include "isa/fault.h"
#include "isa/system/paging.h"

namespace pgsim::isa {

// Memory types (SDM vol. 3A, 11.3, table 11-2; encodings of 11.11 and 28.2.7).
enum MemoryType : uint8_t {
  MEMTYPE_UC = 0,  // uncacheable
  MEMTYPE_WC = 1,  // write combining
  MEMTYPE_WT = 4,  // write-through
  MEMTYPE_WP = 5,  // write-protected
  MEMTYPE_WB = 6,  // write-back
};

// Bits of an EPT paging-structure entry (SDM 28.2.2, tables 28-1 to 28-6).
enum EptEntryBit : uint64_t {
  EPT_READ = 1ull << 0,
  EPT_WRITE = 1ull << 1,
  EPT_EXECUTE = 1ull << 2,
  EPT_IGNORE_PAT = 1ull << 6,  // leaf: the EPT memory type alone decides (the guest's PAT is ignored)
  EPT_LARGE = 1ull << 7,       // EPT PDPTE: maps a 1 GiB page; EPT PDE: maps a 2 MiB page
  EPT_ACCESSED = 1ull << 8,    // with EPTP bit 6
  EPT_DIRTY = 1ull << 9,       // leaf, with EPTP bit 6
};
constexpr uint64_t kEptRwx = EPT_READ | EPT_WRITE | EPT_EXECUTE;
constexpr unsigned kEptMemoryTypeShift = 3;  // leaf bits 5:3: the EPT memory type
constexpr uint64_t kEptMemoryTypeMask = 7ull << kEptMemoryTypeShift;

// The EPT pointer, a VMCS field (SDM vol. 3C, 24.6.11, table 24-8).
struct EptPointer {
  uint64_t root = 0;        // host-physical address of the EPT PML4 table (PML5 with 5 levels)
  unsigned levels = 4;      // page-walk length: 4 or 5
  bool accessed_dirty = false;  // bit 6: accessed and dirty flags for EPT (SDM 28.2.4)
  uint8_t memory_type = MEMTYPE_WB;  // bits 2:0: memory type of the EPT paging structures

  uint64_t encode() const;
  // The EPTP a VMCS holds; std::nullopt for a value VM entry refuses (SDM 26.2.1.1): a memory type
  // other than UC or WB, a walk length other than 4 or 5, reserved bits 11:7 or 63:M set.
  static std::optional<EptPointer> decode(uint64_t value);
};

// Exit qualification of an EPT violation (SDM vol. 3C, 27.2.1, table 27-7).
enum EptViolationQualification : uint64_t {
  EPT_QUAL_READ = 1ull << 0,        // the access was a data read
  EPT_QUAL_WRITE = 1ull << 1,       // the access was a data write
  EPT_QUAL_FETCH = 1ull << 2,       // the access was an instruction fetch
  EPT_QUAL_READABLE = 1ull << 3,    // AND of bit 0 of the EPT entries used
  EPT_QUAL_WRITABLE = 1ull << 4,    // AND of bit 1
  EPT_QUAL_EXECUTABLE = 1ull << 5,  // AND of bit 2
  EPT_QUAL_LINEAR_VALID = 1ull << 7,        // the guest-linear-address field is valid
  EPT_QUAL_LINEAR_TRANSLATION = 1ull << 8,  // (with bit 7) the access was to the translation of a
                                            // linear address, not to a guest paging-structure entry
};

// Why an EPT translation failed: the VM exit it causes (reasons 48 and 49, SDM appendix C).
enum class EptExitKind : uint8_t { None, Violation, Misconfiguration };

struct EptExit {
  EptExitKind kind = EptExitKind::None;
  uint64_t qualification = 0;   // EptViolationQualification bits (a misconfiguration has none)
  uint64_t guest_physical = 0;  // the guest-physical address being translated (VMCS field)
  uint64_t guest_linear = 0;    // valid with EPT_QUAL_LINEAR_VALID
  unsigned level = 0;           // EPT level of the entry that stopped the walk (diagnostics)
  uint64_t entry = 0;           // that entry's value (diagnostics)
};

// One guest-physical address to translate: the guest page walk's GuestPhysicalAccess plus the
// guest-linear address it serves.
struct EptRequest {
  GuestPhysicalAccess access;
  uint64_t guest_linear = 0;
};

struct EptResult {
  bool ok = false;
  uint64_t host_physical = 0;
  uint64_t page_size = 0;   // 4 KiB, 2 MiB or 1 GiB: the EPT leaf's page
  bool readable = false, writable = false, executable = false;  // AND over the entries used
  uint8_t memory_type = MEMTYPE_UC;  // the leaf's EPT memory type
  bool ignore_pat = false;
  unsigned refs = 0;        // EPT entries read from memory
  EptExit exit{};           // kind != None when !ok
};

// Translates one guest-physical address through the EPT (SDM 28.2.2), checking the entries for
// misconfigurations (28.2.3.1) and the access for violations (28.2.3.2), and setting EPT
// accessed and dirty flags when the EPTP enables them (28.2.4). With accessed and dirty flags
// enabled, guest paging-structure accesses count as writes. `observer` sees each EPT entry read
// as a nested reference.
EptResult ept_translate(const EptPointer& ept, PhysicalBus& host, const EptRequest& req,
                        WalkObserver* observer = nullptr);

// The nested dimension of a two-dimensional walk: hands page_walk the host-physical address of
// every guest-physical one, through ept_translate, and keeps the EPT exit that stopped it.
class EptTranslator : public GuestPhysicalTranslator {
 public:
  EptTranslator(const EptPointer& ept, PhysicalBus& host, uint64_t guest_linear, WalkObserver* observer)
      : ept_(ept), host_(host), guest_linear_(guest_linear), observer_(observer) {}

  std::optional<uint64_t> to_host(const GuestPhysicalAccess& access) override;

  const EptExit& exit() const { return exit_; }
  // The EPT page size of the final guest-physical address (0 until it is translated).
  uint64_t final_page_size() const { return final_page_size_; }
  unsigned references() const { return references_; }  // nested references made
  // The EPT translation of the address to_host was last asked for (models/mmu fills its nested
  // TLB and walk caches from it).
  const EptResult& last() const { return last_; }

 private:
  EptPointer ept_;
  PhysicalBus& host_;
  uint64_t guest_linear_;
  WalkObserver* observer_;
  EptExit exit_{};
  EptResult last_{};
  uint64_t final_page_size_ = 0;
  unsigned references_ = 0;
};

struct NestedWalkResult {
  // The guest walk: ok with `paddr` host-physical, or the guest fault (#PF, #GP) to inject when
  // !ok and no EPT exit stopped it (walk.translator_refused is then false).
  WalkResult walk;
  EptExit ept_exit{};       // kind != None: the walk stopped at an EPT violation or misconfiguration
  uint64_t page_size = 0;   // smaller of the guest and EPT page sizes: what one TLB entry covers
  unsigned guest_refs = 0;  // guest paging-structure entries read
  unsigned nested_refs = 0; // EPT entries read
};

// The two-dimensional page walk (SDM 28.2.1; Bhargava et al., ASPLOS 2008): the guest walk of
// `guest` (any paging mode), each of whose guest paging-structure addresses and whose final
// address are translated through the EPT. With nothing cached it makes (n + 1)(m + 1) - 1
// references for n guest and m EPT levels read (24 for 4 x 4). The observer sees the guest
// references (on_reference) and the nested ones (on_nested_reference) in the order they are made.
NestedWalkResult nested_page_walk(const CpuState& guest, PhysicalBus& host, const EptPointer& ept,
                                  const WalkRequest& req, WalkObserver* observer = nullptr);

// Builds EPT tables in host-physical memory: maps guest-physical ranges to host-physical ones at
// 4 KiB, 2 MiB or 1 GiB pages, allocating zeroed tables from a region of host memory it is given.
// For VMMs and tests alike.
class EptBuilder {
 public:
  // Tables come from [table_area, table_area + table_area_size) of `host` (4 KiB aligned).
  EptBuilder(PhysicalBus& host, uint64_t table_area, uint64_t table_area_size, unsigned levels = 4);

  // Maps [guest_physical, guest_physical + size) to [host_physical, ...) with pages of
  // `page_size`; both addresses and the size must be multiples of it. `rights` are the leaf's R/W/X
  // bits (upper entries allow everything, so the leaf decides). Throws std::invalid_argument for
  // a misaligned range or one that overlaps a mapping of another page size.
  void map(uint64_t guest_physical, uint64_t host_physical, uint64_t size, uint64_t page_size,
           uint64_t rights = kEptRwx, uint8_t memory_type = MEMTYPE_WB);

  uint64_t root() const { return root_; }
  EptPointer pointer(bool accessed_dirty = false) const {
    return EptPointer{root_, levels_, accessed_dirty, MEMTYPE_WB};
  }
  unsigned tables() const { return tables_; }  // tables allocated, the root included
  // Host-physical address of the entry of `level` that translates `guest_physical` (the tables
  // down to it must exist): for tests and VMMs that edit a mapping in place.
  uint64_t entry_address(uint64_t guest_physical, unsigned level) const;

 private:
  uint64_t allocate_table();

  PhysicalBus& host_;
  uint64_t next_, end_;
  unsigned levels_;
  uint64_t root_;
  unsigned tables_ = 0;
};

// How a VMM switches the platform's MMU into and out of nested paging at VM entry and VM exit
// (models/mmu implements it; the VMM, plain C++, reaches it through this interface).
class NestedPagingControl {
 public:
  // What the MMU calls when a translation of the guest stops at an EPT violation or
  // misconfiguration: the VMM records the EPT exit and returns the fault that makes the core
  // abandon the instruction (the VMM takes that event as the VM exit).
  using EptExitHandler = std::function<Fault(const EptExit&)>;
  virtual ~NestedPagingControl() = default;
  // VM entry with EPT: translations are the guest's, through `ept`, tagged with `vpid`.
  virtual void set_nested(const EptPointer& ept, uint16_t vpid, EptExitHandler on_exit) = 0;
  // VM exit: translations are the host's again.
  virtual void clear_nested() = 0;
  // INVVPID single context: the linear and combined mappings of `vpid` are dropped.
  virtual void invalidate_vpid(uint16_t vpid) = 0;
  // INVEPT: the guest-physical and combined mappings of every EPTP are dropped.
  virtual void invalidate_ept() = 0;
};

}  // namespace pgsim::isa

// The x86 page walk (Intel SDM vol. 3, ch. 4): 32-bit paging (with PSE 4 MiB pages), PAE paging,
// 4-level and 5-level (LA57) paging. A pure function of the CPU state and physical memory: TLBs,
// page-walk caches and their costs belong to the platform, which sees every paging-structure
// reference through a WalkObserver.
#pragma once
#include <cstdint>
#include <optional>

#include "isa/bus_if.h"
#include "isa/core_if.h"
#include "isa/cpu_state.h"
#include "isa/fault.h"

namespace pgsim::isa {

// Physical-address width reported by CPUID.80000008H:EAX[7:0]; paging-structure bits at and
// above it (up to bit 51) are reserved.
constexpr unsigned kMaxPhysAddrBits = 46;
// Linear-address width reported by CPUID.80000008H:EAX[15:8] (57 with LA57 support).
constexpr unsigned kMaxLinearAddrBits = 57;

// Paging-structure entry bits common to every paging mode (SDM vol. 3, tables 4-14 to 4-20).
enum EntryBit : uint64_t {
  PTE_P = 1ull << 0,    // present
  PTE_RW = 1ull << 1,   // writes allowed
  PTE_US = 1ull << 2,   // user-mode accesses allowed
  PTE_A = 1ull << 5,    // accessed
  PTE_D = 1ull << 6,    // dirty (leaf only)
  PTE_PS = 1ull << 7,   // page size: this entry maps a large page
  PTE_G = 1ull << 8,    // global (leaf only, with CR4.PGE)
  PTE_XD = 1ull << 63,  // execute disable (with EFER.NXE; PAE and wider entries only)
};

// The protection key of a leaf entry in 4- and 5-level paging: bits 62:59 (SDM 4.6.2).
constexpr unsigned kProtectionKeyShift = 59;

// Bits hi..lo set (hi <= 63, lo <= hi).
constexpr uint64_t bit_range(unsigned hi, unsigned lo) {
  return ((hi >= 63 ? ~0ull : ((1ull << (hi + 1)) - 1))) & ~((1ull << lo) - 1);
}
// Physical address bits M-1:12 of a paging-structure entry, of CR3 or of an EPT pointer.
constexpr uint64_t kPhysFrameMask = bit_range(kMaxPhysAddrBits - 1, 12);

// A paging-structure entry of `size` bytes (4 or 8) at physical `paddr`, read and written without
// a cache model, through the host frame when the bus has one.
uint64_t read_paging_entry(PhysicalBus& bus, uint64_t paddr, unsigned size);
void write_paging_entry(PhysicalBus& bus, uint64_t paddr, unsigned size, uint64_t value);

// Read, Write or Execute: the core's access kinds (isa/core_if.h).
using Access = AccessKind;

struct WalkRequest {
  uint64_t linear = 0;
  Access access = Access::Read;
  bool user = false;      // an explicit access at CPL 3 (user-mode access)
  bool implicit = false;  // an implicit supervisor access (GDT, LDT, IDT, TSS, even from CPL 3):
                          // SMAP applies to it regardless of RFLAGS.AC (SDM 4.6)
};

struct WalkResult {
  bool ok = false;
  Fault fault{};           // #PF with error code and CR2 when !ok (#GP(0) for a non-canonical address)
  uint64_t paddr = 0;      // the translated physical address
  uint64_t page_size = 0;  // 4 KiB, 2 MiB, 4 MiB or 1 GiB
  bool writable = false;   // R/W set at every level (what CR0.WP=1 supervisor and user writes need)
  bool user = false;       // U/S set at every level (a user-mode address)
  bool executable = false; // XD clear at every level (or no XD in this paging mode)
  bool global = false;     // G set in the leaf and CR4.PGE
  bool dirty = false;      // the leaf's dirty flag after this access
  unsigned key = 0;        // the leaf's protection key (bits 62:59; 4- and 5-level paging)
  bool key_read_denied = false;   // the leaf's protection key forbids data reads (PKRU/IA32_PKRS AD)
  bool key_write_denied = false;  // ... or writes, for this access's privilege (WD, with CR0.WP if supervisor)
  uint16_t pcid = 0;       // CR3[11:0] with CR4.PCIDE (4- and 5-level paging), else 0
  unsigned levels = 0;     // depth of the hierarchy in this paging mode (0 without paging)
  unsigned refs = 0;       // paging-structure entries read from memory by this walk
  uint64_t guest_physical = 0;  // with a GuestPhysicalTranslator: the guest-physical address that
                                // `paddr` translates (else equal to paddr)
  bool translator_refused = false;  // the GuestPhysicalTranslator refused an address (an EPT
                                    // violation or misconfiguration, which it reports): no fault
};

// Sees every paging-structure memory reference, so the platform can count and charge them and
// model page-walk caches. `level` counts from the leaf: 1 = page table, 2 = page directory,
// 3 = PDPT, 4 = PML4, 5 = PML5.
class WalkObserver {
 public:
  virtual ~WalkObserver() = default;
  // A reference of the guest dimension: an entry of the page tables that CR3 points to (the only
  // dimension of a walk without EPT). `paddr` is host-physical.
  virtual void on_reference(uint64_t paddr, unsigned level) = 0;
  // A reference of the nested dimension: an EPT entry read to translate a guest-physical address
  // (isa/system/ept.h); `level` is the EPT level. Only two-dimensional walks make them, so an
  // observer of one-dimensional walks need not override it.
  virtual void on_nested_reference(uint64_t paddr, unsigned level) { (void)paddr, (void)level; }
};

// What a guest page walk uses a guest-physical address for (SDM vol. 3C, 28.2.1: with EPT, every
// guest paging-structure address and the final guest-physical address are translated by the EPT).
enum class GuestPhysicalUse : uint8_t {
  PagingEntry,  // a guest paging-structure entry the walk reads (or whose A/D flags it writes)
  PaePdpte,     // a PAE PDPTE: loaded at MOV CR3 / VM entry, not a linear-address translation
  Final,        // the guest-physical address the linear address translates to
};

struct GuestPhysicalAccess {
  uint64_t address = 0;  // guest-physical
  GuestPhysicalUse use = GuestPhysicalUse::Final;
  unsigned level = 0;    // guest paging level of the entry (PagingEntry, PaePdpte); 0 for Final
  Access access = Access::Read;
  // A memory reference of this walk. False when the processor already holds the translation and
  // only its rights matter: the PAE PDPTE load (done at MOV CR3) and the write check of a guest
  // accessed/dirty-flag update (the entry was just read through the same translation).
  bool reference = true;
};

// Turns the guest-physical addresses of a guest page walk into host-physical ones: the nested
// dimension of a two-dimensional walk. page_walk() calls it for every guest paging-structure
// address and for the final address; std::nullopt stops the walk (translator_refused) and the
// implementation keeps why (an EPT violation or misconfiguration).
class GuestPhysicalTranslator {
 public:
  virtual ~GuestPhysicalTranslator() = default;
  virtual std::optional<uint64_t> to_host(const GuestPhysicalAccess& access) = 0;
};

// The paging mode in use (SDM vol. 3, table 4-1).
enum class PagingMode : uint8_t { None, Bits32, Pae, Level4, Level5 };
PagingMode paging_mode(const CpuState& s);

// The paging-structure entries a successful walk read, with their values after its accessed and
// dirty updates. The walk is a function of these entries, the CPU state and the request: made again
// while every entry still holds its value, with the same state, it gives the same translation and
// writes nothing. `complete` is false when the walk read something the list leaves out (PAE PDPTEs,
// tables outside RAM) or went through a GuestPhysicalTranslator.
struct WalkTrace {
  static constexpr unsigned kMaxEntries = 5;
  bool complete = false;
  unsigned count = 0;
  uint64_t paddr[kMaxEntries];  // physical (the first `count` are set)
  uint64_t value[kMaxEntries];
  unsigned size = 8;                 // bytes per entry: 4 (32-bit paging) or 8
};

// Translates one linear address, checking the access rights of SDM 4.6 and updating the accessed
// and dirty flags of a successful translation. On failure, `fault` holds the #PF to raise.
// PAE PDPTEs are read from memory at each walk (the processor caches them at MOV CR3; the two
// differ only if software changes a PDPTE without reloading CR3); such reads are not counted as
// references, since the processor makes none.
// With `nested`, the CPU state is a guest's in VMX non-root operation: its physical addresses are
// guest-physical, every one is translated by `nested` before `bus` (host-physical) is accessed,
// and the result's paddr is host-physical.
// With `trace`, a successful walk also lists the entries it used there.
WalkResult page_walk(const CpuState& s, PhysicalBus& bus, const WalkRequest& req,
                     WalkObserver* observer = nullptr, GuestPhysicalTranslator* nested = nullptr,
                     WalkTrace* trace = nullptr);

// True if `linear` is canonical for the current linear-address width (48 or 57 bits).
bool is_canonical(const CpuState& s, uint64_t linear);

}  // namespace pgsim::isa

// The small interfaces through which the platform (and the VMM) attach to the core. The ISA knows
// nothing of SystemC: models/ implements these, tests implement them with plain code.
#pragma once
#include <cstdint>

#include "isa/fault.h"

namespace pgsim::isa {

class Core;
struct CpuState;
struct Insn;
struct Event;  // an exception or interrupt about to be delivered (isa/system/events.h)

// What a memory access is for; selects the soft TLB and the page-walk permission checks.
enum class AccessKind : uint8_t {
  Read,     // data read
  Write,    // data write (read-modify-write instructions translate as Write)
  Execute,  // instruction fetch
};

// Who makes an access: the instruction at the current CPL, or the processor itself when it reads
// system structures (GDT, LDT, IDT, TSS), which the SDM defines as supervisor-mode accesses even
// at CPL 3 (vol. 3, 4.6), with SMAP applying regardless of RFLAGS.AC.
enum class AccessOrigin : uint8_t {
  Instruction,          // explicit access, privilege of the current CPL
  ImplicitSupervisor,   // implicit supervisor access to a system structure
};

// The answer of a Translator for one linear address.
struct Translation {
  bool ok = false;           // false: `fault` is raised in the guest (normally a #PF)
  Fault fault{0};            // the fault to raise when !ok
  uint64_t paddr = 0;        // physical address of the translated byte
  bool cacheable = true;     // the core may keep the page in its soft TLB (an L1 hit from now on)
  uint8_t* host_frame = nullptr;  // the host memory of paddr's frame, when the Translator looked it
                                  // up (else the core asks the bus)
};

// The soft-TLB entries an L1 TLB eviction drops: those of data accesses (the L1 data TLB's), of
// instruction fetches (the L1 instruction TLB's), or all (INVLPG).
enum class SoftTlbPart { Data, Code, All };

// The modeled TLBs in front of the page walk. The core calls translate() only on a soft-TLB miss
// with paging enabled; the implementation looks up its modeled TLBs, walks the page tables on a
// miss (isa/system/paging.h page_walk) and charges what it costs. To keep the soft TLB a subset
// of the modeled L1 TLBs it calls Core::drop_soft_tlb(page) when it evicts an entry, so that every
// soft-TLB hit is a modeled L1 hit (counted in Core::counters().itlb_hits / dtlb_hits).
class Translator {
 public:
  virtual ~Translator() = default;
  // Translate `linear` for `kind` with the privilege of `user` (CPL 3 and not an implicit
  // supervisor access). Must not throw; report faults through Translation::fault.
  virtual Translation translate(const CpuState& state, uint64_t linear, AccessKind kind, bool user,
                                AccessOrigin origin) = 0;
  // INVLPG / INVPCID of one page: the modeled TLBs drop it.
  virtual void invalidate_page(uint64_t linear) = 0;
  // INVPCID of one address in every context (type 0 for each PCID): the modeled TLBs drop the page
  // whatever PCID it was cached under. Without PCIDs the same as invalidate_page.
  virtual void invalidate_page_all_contexts(uint64_t linear) { invalidate_page(linear); }
  // MOV CR3 / CR0 / CR4 side effects: drop every non-global entry (or every entry).
  virtual void flush(bool include_global) = 0;
  // True while the addresses the core produces are guest-physical ones that still need a
  // translation (nested paging): the core then calls translate() with paging off too, so that a
  // guest in real or unpaged protected mode reaches memory through the EPT like a paged one.
  virtual bool translates_unpaged() const { return false; }
};

// The accesses an observer need not be told of one by one: those within a line its table holds,
// which the core counts itself, inline, instead of calling it. A cache hierarchy lists the lines its
// first level used last in their sets: a hit there changes nothing but the hit count.
struct DataAccessFilter {
  static constexpr uint64_t kNoLine = ~0ull;         // no line number is this
  static constexpr uint64_t kNothing[1] = {kNoLine};  // the table that answers nothing
  const uint64_t* lines = kNothing;  // by line number & mask: a line number, or kNoLine
  uint64_t mask = 0;
  unsigned shift = 6;                // log2 of the line size in bytes
  uint64_t* count = nullptr;         // incremented for each access the table answered
};

// Sees every data access of the core after its translation, with the physical address: explicit
// reads and writes, both halves of a read-modify-write, each string iteration, stack pushes and
// pops, and the processor's implicit reads of system structures. Instruction fetches are not data
// accesses, and neither are accesses to device memory (no host page: uncached, timed by the device).
// An access that crosses a page is reported as one access per page. The platform's cache hierarchy
// (models/cpu) times them; with no observer set the core pays one predicted branch per access.
// Accesses its filter() answers are counted by the core instead of reported.
class DataAccessObserver {
 public:
  virtual ~DataAccessObserver() = default;
  virtual void on_data_access(uint64_t paddr, unsigned size, bool write) = 0;
  // The core reads it once, when the observer is set; the table it points to lives as long as the
  // observer and is kept current by it. The default answers nothing: every access is reported.
  virtual DataAccessFilter filter() const { return {}; }
};

// The interrupt controller as the CPU sees it (the INTR and NMI pins and the INTA cycle).
class InterruptSource {
 public:
  virtual ~InterruptSource() = default;
  // A maskable interrupt is waiting for the CPU (INTR asserted).
  virtual bool interrupt_pending() = 0;
  // After interrupt_pending() said no: an interrupt waits that the source itself holds back, by a
  // state the CPU changes without telling it (a VMM's virtual interrupt flag in memory that its
  // translated code writes), so the core asks again at every boundary instead of waiting for the
  // next notify_interrupt().
  virtual bool interrupt_held() { return false; }
  // The INTA cycle: accept the highest-priority pending interrupt and return its vector.
  virtual uint8_t acknowledge_interrupt() = 0;
  // A non-maskable interrupt is waiting.
  virtual bool nmi_pending() { return false; }
  // The CPU accepts the pending NMI.
  virtual void acknowledge_nmi() {}
};

// What a TrapHook's before_instruction() decides for the instruction about to execute.
enum class PreExecute : uint8_t {
  Execute,  // the core executes it as usual, then calls after_instruction()
  Skip,     // the hook carried it out itself (and set the next RIP): the core only retires it
  Fault,    // it faults before doing anything, with the fault the hook gave Core::fault_before_execute():
            // the core delivers it (through the hook's on_event first) without a C++ exception, and
            // the instruction does not retire
  Raised,   // the hook delivered an exception in its place (a VMM injected the fault the instruction
            // raises on the processor it presents) and set state() to the handler: the instruction
            // does not retire
};

// Interception point for the VMM and for tracing. Besides events, the hook sees the instructions
// it marks, before they execute: whether an instruction is marked is asked once, when it is
// decoded (wants_before), so that unmarked instructions run on the core's fast path at no cost.
class TrapHook {
 public:
  virtual ~TrapHook() = default;
  // Every exception, interrupt and software interrupt passes here before delivery through the
  // IDT; returning true consumes it (the hook has handled it, e.g. by emulating the instruction).
  virtual bool on_event(Core& core, const Event& event) = 0;
  // A fault raised while `delivering` (an exception, interrupt or NMI, not INT n) was delivered
  // through the IDT, nothing of the delivery done: returning true consumes it (a VMM whose VMCS
  // selects the fault exits, SDM 26.2, with `delivering` in the IDT-vectoring information).
  // false: the CPU resolves it (a double fault, or the second event, SDM table 6-5).
  virtual bool on_delivery_fault(Core& core, const Event& delivering, const Event& fault) { return false; }
  // Called at each instruction boundary (before fetch) only while enabled with
  // Core::set_boundary_calls(true) (or set_trap_hook(hook, true)): costs nothing when unused.
  virtual void on_instruction_boundary(Core& core) {}
  // Asked once for each instruction the core decodes (`paddr`: the physical address of its first
  // byte): true marks it, and the core calls before_instruction() and after_instruction() around
  // every execution of it. A hook whose answer changes calls Core::remark_decoded().
  virtual bool wants_before(const Insn& insn, uint64_t paddr) { return false; }
  // Before a marked instruction executes, with state().rip at it and Core::next_rip() after it.
  // May throw a Fault (the instruction faults without executing).
  virtual PreExecute before_instruction(Core& core, const Insn& insn) { return PreExecute::Execute; }
  // After a marked instruction completed without a fault (state().rip still at it, Core::next_rip()
  // where execution continues).
  virtual void after_instruction(Core& core, const Insn& insn) {}
};

// The simulated clock, for RDTSC/RDTSCP and the TSC MSR.
class TimeSource {
 public:
  virtual ~TimeSource() = default;
  // The current simulated CPU cycle.
  virtual uint64_t current_cycle() = 0;
  // Of those, the cycles spent halted (HLT waiting for an interrupt): the unhalted cycles the
  // performance counters count are the difference.
  virtual uint64_t halted_cycles() { return 0; }
};

// Told of the CPL after every change of mode (Core::sync_mode), so that counts can be split by
// privilege level where they happen (the performance-monitoring unit's USR/OS filtering).
class PrivilegeObserver {
 public:
  virtual ~PrivilegeObserver() = default;
  virtual void on_cpl_sync(unsigned cpl) = 0;
};

}  // namespace pgsim::isa

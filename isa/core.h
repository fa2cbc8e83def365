// The x86 core: fetches through a decoded-instruction cache, executes the semantics registered in
// the Dispatch table and reaches memory through segmentation and a soft TLB. Plain C++: the
// platform attaches through isa/bus_if.h and isa/core_if.h.
//
// Conventions for semantics (handlers `void(Core&, const Insn&)`):
// - during a handler, state().rip is the address of the instruction and next_rip() the address of
//   the next one; branches call jump(). The core commits next_rip() to RIP when the handler returns.
// - a fault is raised with `throw Fault{...}`, or with raise() where the handler returns at once;
//   the core restores nothing but RIP, so handlers do every memory access that can fault before
//   they change registers or flags.
// - after a handler of class System, and after any event delivery, the core calls sync_mode();
//   code that changes state() outside a handler (loaders, tests, the VMM) calls it too.
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "isa/block_compiler.h"
#include "isa/bus_if.h"
#include "isa/core_if.h"
#include "isa/cpu_state.h"
#include "isa/fault.h"
#include "isa/insn.h"

namespace pgsim::isa {

class Decoder;
struct SystemConfig;

// The core's own counts; plain integers so the platform can bind statistics to their addresses.
struct CoreCounters {
  uint64_t retired = 0;         // instructions retired (a REP string instruction counts once)
  uint64_t retired_user = 0;    // of which at CPL 3
  uint64_t retired_kernel = 0;  // of which at CPL 0-2
  std::array<uint64_t, kNumInsnClasses> by_class{};  // retired, by InsnClass
  uint64_t string_iterations = 0;  // iterations executed by string instructions (with REP: each)
  uint64_t itlb_hits = 0;       // instruction fetches that hit the soft TLB (= modeled L1 ITLB hits)
  uint64_t dtlb_hits = 0;       // data accesses that hit the soft TLB (= modeled L1 DTLB hits)
  uint64_t itlb_misses = 0;     // instruction translations handed to the Translator
  uint64_t dtlb_misses = 0;     // data translations handed to the Translator
  uint64_t decoded = 0;         // instructions decoded by Zydis (decode-cache misses)
  uint64_t smc_invalidations = 0;  // decoded pages discarded because their frame was written
  uint64_t events = 0;          // exceptions and interrupts routed (trap hook or IDT delivery)
  uint64_t interrupts = 0;      // external interrupts accepted from the InterruptSource
  uint64_t delegated_steps = 0; // steps a VMM's virtual CPU took for this CPU's guest (emulation)

  // The host work the guest caused: each instruction retired, each event routed (exceptions,
  // interrupts; a VMM's VM exits, callouts and hypercalls are one or the other) and each
  // string-instruction iteration is one step. A fault loop retires nothing and one REP MOVS may
  // iterate 2^64 times, so only steps bound what the host does. What a VMM runs on its own virtual
  // CPU for the guest counts here too.
  uint64_t steps() const { return retired + events + string_iterations + delegated_steps; }
};

// The guest made no progress: the same exception at the same address, again and again, with no
// instruction retired in between (a handler whose first instruction faults again).
struct NoProgress {
  uint8_t vector = 0;
  uint64_t rip = 0;        // where it faulted (CS-relative)
  uint64_t repeats = 0;
  // Faults of one event's delivery, each taken by a hook that delivered the event anew (nested),
  // rather than faults of instructions (run.no_progress_faults).
  bool in_delivery = false;
};

// An instruction the core decoded but has no semantics for (it raised #UD in the guest).
struct UnimplementedInstruction {
  std::string mnemonic;    // Zydis mnemonic, or "(undecodable)" for bytes Zydis rejects
  uint64_t first_address;  // linear address of the first occurrence
  uint64_t count;          // how many times the guest executed it
};

class Core {
 public:
  Core(PhysicalBus& bus, IoBus& io);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  // ---- Execution -------------------------------------------------------------------------------
  // Architectural state (registers, control registers, MSRs, segment caches).
  CpuState& state() {
    materialize_flags();
    return state_;
  }
  const CpuState& state() const {
    materialize_flags();
    return state_;
  }
  // Runs until `max_instructions` retired, HLT with nothing pending, request_stop() or shutdown
  // (triple fault); returns the instructions retired.
  // With `max_steps` (CoreCounters::steps), run() also returns once that many steps were taken;
  // a REP string instruction still iterating then stops between two iterations with RIP at the
  // instruction and its registers updated, as an interrupted one does (SDM vol. 1, 7.3.9.1), and
  // retires when it completes on a later call.
  uint64_t run(uint64_t max_instructions, uint64_t max_steps = ~0ull);
  // Executes one instruction (delivering a pending interrupt first); returns instructions retired
  // (0 when it faulted, was halted or stopped).
  uint64_t step() { return run(1); }
  // Makes run() return at the next instruction boundary (callable from handlers and hooks).
  void request_stop() { stop_requested_ = true; attention_ = true; }
  // Enters the shutdown state (triple fault); run() returns and no longer executes.
  void shutdown(const std::string& reason);
  // Ends run() once the same exception has been raised at the same RIP `repeats` times in a row
  // with no instruction retired in between (0, the default: never). no_progress() then says which.
  void set_no_progress_limit(uint64_t repeats) { no_progress_limit_ = repeats; }
  const std::optional<NoProgress>& no_progress() const { return no_progress_; }
  // For string instructions: how many iterations this execution may make before the step limit
  // of run() (at least 1), and the way to stop between two of them (the instruction does not
  // retire; run() returns and the next call resumes it).
  uint64_t string_iteration_allowance() const {
    const uint64_t steps = counters_.steps();
    return steps < step_deadline_ ? step_deadline_ - steps : 1;
  }
  void suspend_instruction();
  // A REP that has made its `allowance` of iterations with `remaining` still to make stops here
  // (suspend_instruction) and resumes on a later call; true when it did.
  bool suspend_at_allowance(uint64_t iterations, uint64_t allowance, uint64_t remaining) {
    if (iterations != allowance || remaining == 0) return false;
    suspend_instruction();
    return true;
  }
  // An instruction of this core's guest that a VMM completed on its own virtual CPU (an access to
  // device memory or to a traced page table) retires here too, in its class and in the guest's
  // ring (`user`: CPL 3), whatever mode the core is in while the VMM runs.
  void retire_for_guest(InsnClass cls, bool user);
  // A VMM took `n` steps on its own virtual CPU for this core's guest: they count toward run()'s
  // step limit.
  void count_delegated_steps(uint64_t n) {
    counters_.delegated_steps += n;
    if (counters_.steps() >= step_deadline_) request_stop();
  }
  // True after a triple fault; shutdown_reason() says why.
  bool is_shutdown() const { return shutdown_; }
  const std::string& shutdown_reason() const { return shutdown_reason_; }

  // ---- Attachments -----------------------------------------------------------------------------
  PhysicalBus& bus() { return bus_; }
  IoBus& io() { return io_; }
  // The modeled TLB (required once paging is enabled).
  void set_translator(Translator* translator) { translator_ = translator; }
  // The interrupt controller; the core polls it only after notify_interrupt().
  void set_interrupt_source(InterruptSource* source) { irq_source_ = source; }
  // The VMM/tracing hook; `boundary_calls` enables on_instruction_boundary(). Decoded code is
  // dropped, so that every instruction is marked anew by the new hook's wants_before().
  void set_trap_hook(TrapHook* hook, bool boundary_calls);
  TrapHook* trap_hook() const { return hook_; }
  // A fault while delivering `delivering`, offered to the hook first (TrapHook::on_delivery_fault).
  bool offer_delivery_fault(const Event& delivering, const Event& fault);
  // Turns the hook's on_instruction_boundary() calls on or off.
  void set_boundary_calls(bool on);
  // The hook's wants_before() would answer differently now: decoded code is dropped and marked
  // anew as it is decoded again.
  void remark_decoded();
  // The simulated clock behind RDTSC (without one the TSC is state().tsc).
  void set_time_source(TimeSource* time) { time_ = time; }
  TimeSource* time_source() const { return time_; }
  // Told of the CPL at every sync_mode (null: none, the default).
  void set_privilege_observer(PrivilegeObserver* observer) { privilege_observer_ = observer; }
  PrivilegeObserver* privilege_observer() const { return privilege_observer_; }
  // Every data access is reported to `observer` (null: none, the default).
  void set_data_access_observer(DataAccessObserver* observer) {
    data_observer_ = observer;
    data_filter_ = observer ? observer->filter() : DataAccessFilter{};
  }
  // What the system instructions consult beyond CpuState (profile, hypervisor, MSR device); see
  // isa/system/system_config.h. Null: classic x86 with no hypervisor and no MSR device.
  // Its CpuModel decides which instructions exist: decoded code is dropped (system_config.cpp).
  void set_system_config(const SystemConfig* config);
  const SystemConfig* system_config() const { return system_config_; }
  // The platform says an interrupt may have become pending: the core polls the source at the next
  // boundary and keeps polling until it reports none.
  void notify_interrupt() { irq_notified_ = true; attention_ = true; }
  // The time-stamp counter: the time source's cycle plus state().tsc as an offset, or state().tsc.
  uint64_t read_tsc() const;

  // ---- Events ----------------------------------------------------------------------------------
  // For handlers of trapping instructions (INT n, INT3, INTO, ...): routes `event` through the trap
  // hook and the IDT as if raised after this instruction (the pushed RIP is next_rip()).
  void raise_event_after_instruction(const Event& event);
  // Routes `event` at the current RIP (hook, then isa/system/events.h deliver_event).
  void route_event(const Event& event);

  // A marked instruction (TrapHook::wants_before): the hook's before_instruction(), the semantics
  // and the hook's after_instruction(). The core's entry point for such instructions.
  void execute_marked(const Insn& insn);
  // For a hook's before_instruction() that returns PreExecute::Fault: the fault the instruction
  // raises (a VMM that knows an instruction must trap on the state it gave the real CPU delivers
  // the trap without the cost of unwinding one).
  void fault_before_execute(const Fault& fault) { pre_execute_fault_ = fault; }
  // Raises `fault` for the instruction whose handler is running: the instruction does not complete.
  // The handler must return at once, leaving what a thrown fault would leave (nothing, or a REP's
  // completed iterations). Where run()'s block loop called the
  // handler, nothing is thrown: the loop delivers the fault when the handler returns, as it would
  // have caught it (a C++ exception costs microseconds to unwind: one per demand-paging fault, one
  // per system call a VMM takes as a #UD). Elsewhere (outside run(), or in run() outside such a
  // handler: the trap hook, which may run semantics and catch what they throw, event delivery, the
  // instruction boundary) it throws, as `throw fault` does.
  void raise(const Fault& fault);
  // Whether the running handler raised a fault without throwing (for callers of semantics inside
  // the block loop, which must then stop as an exception would have stopped them).
  bool fault_raised() const { return fault_raised_; }

  // ---- Debug registers (SDM vol. 3, ch. 18) -------------------------------------------------------
  // The breakpoints DR7 enables are re-derived by sync_mode(); the core checks instruction
  // breakpoints at the boundary and data breakpoints on the slow path of accesses (a page holding
  // one gets no soft-TLB entry), so that nothing is checked per instruction when none is enabled.
  // I/O instructions report their ports here (I/O breakpoints with CR4.DE).
  void check_io_breakpoints(uint16_t port, unsigned size) {
    if (debug_io_) [[unlikely]] note_breakpoint_hits(port, size, kDebugIo);
  }
  // Delivers the #DB the last instruction raised as a trap (single step, data or I/O breakpoints),
  // as the next boundary would: for a VMM that emulated one instruction on a virtual CPU and hands
  // the guest back to the real one, which runs the next.
  void deliver_debug_trap();
  // Forgets it instead: for an instruction executed in a sandbox whose effects are undone.
  void discard_debug_trap() {
    single_step_pending_ = false;
    debug_hits_ = 0;
  }

  // The instruction being executed, or the one that faulted while a TrapHook sees the fault;
  // nullptr when the fault came from fetching it (the VMM decodes from its RIP then).
  const Insn* current_insn() const { return current_insn_; }

  // ---- Operands (for semantics) ----------------------------------------------------------------
  uint64_t next_rip() const { return next_rip_; }
  // A near branch: the target truncated to the operand size (SDM: EIP/IP wrap in 32/16-bit).
  // In 64-bit mode a non-canonical target raises #GP(0) at the branch.
  void jump(uint64_t target, unsigned opsize) {
    if (opsize != 8) {
      next_rip_ = target & size_mask(opsize);
      return;
    }
    if (!canonical48(target)) [[unlikely]] target = canonical_or_fault(target, CS);
    next_rip_ = target;
  }
  // Sets the next RIP verbatim (far transfers, event delivery).
  void set_next_rip(uint64_t rip) { next_rip_ = rip; }

  template <class T> T reg(const Operand& o) const;           // read a Reg operand
  template <class T> void set_reg(const Operand& o, T v);     // write a Reg operand (32-bit zero-extends)
  template <class T> T gpr(unsigned r) const { return static_cast<T>(state_.gpr[r]); }
  template <class T> void set_gpr(unsigned r, T v);           // write the low T of a GPR (32: zero-extend)
  // Writes a GPR at a width of 2, 4 or 8 bytes: the low word alone, zero-extended, or whole. How
  // the address size writes index and count registers, and the stack size RSP.
  void set_gpr_sized(unsigned r, uint64_t v, unsigned size) {
    if (size == 8) state_.gpr[r] = v;
    else if (size == 4) state_.gpr[r] = static_cast<uint32_t>(v);
    else set_gpr<uint16_t>(r, static_cast<uint16_t>(v));
  }
  // The effective address (offset in the segment) of a Mem operand, wrapped to the address size.
  uint64_t effective_address(const Insn& i, const Operand& o) const;
  // Read a Reg/Mem/Imm operand, write a Reg/Mem operand; K: the operand's kind when the handler
  // was specialized for it at decode.
  template <class T, OpKind K = kKindAtRunTime> T get(const Insn& i, const Operand& o);
  template <class T, OpKind K = kKindAtRunTime> void set(const Insn& i, const Operand& o, T v);

  // ---- Memory (for semantics) ------------------------------------------------------------------
  // Explicit data access through a segment: segmentation checks, then the soft TLB.
  template <class T> T read(SegReg s, uint64_t offset);
  template <class T> void write(SegReg s, uint64_t offset, T value);
  // Segmentation only: the linear address of `size` bytes at seg:offset, or a #GP/#SS fault.
  uint64_t linear_address(SegReg s, uint64_t offset, unsigned size, AccessKind kind) const;
  // Linear access of 1, 2, 4 or 8 bytes (system structures use ImplicitSupervisor).
  uint64_t read_linear(uint64_t linear, unsigned size, AccessOrigin origin);
  void write_linear(uint64_t linear, unsigned size, uint64_t value, AccessOrigin origin);
  // read_linear() of what may not be mapped (a VMM's look at its guest's tables): false, with
  // nothing thrown or delivered, where the translation faults, after the same walk and accessed
  // flags. A read split across two pages throws its fault as read_linear() does.
  bool read_linear_if_mapped(uint64_t linear, unsigned size, AccessOrigin origin, uint64_t* value);
  // Translates `linear` for `kind` (soft TLB, then the Translator); throws the fault.
  uint64_t translate(uint64_t linear, AccessKind kind, AccessOrigin origin);

  // Whether direct_span() can give anything in this mode, with this observer.
  bool direct_spans() const { return mode_ == Mode::Long64 && !data_observer_; }
  struct DirectSpan {
    uint8_t* host = nullptr;
    uint64_t bytes = 0;
  };
  // The host bytes an explicit access at seg:offset may reach directly, from there to the end of
  // its page: in 64-bit mode without limit checks (no LMSLE), where the soft TLB holds the page for
  // `kind` (Read or Write) and no data observer watches. Empty otherwise, and the caller takes the
  // per-access path, which faults, translates or is observed as each access must be. Nothing is
  // counted: each access the caller makes through the span is a soft-TLB hit it counts itself
  // (count_dtlb_hits), as read() and write() would have.
  DirectSpan direct_span(SegReg s, uint64_t offset, AccessKind kind) const {
    if (!direct_spans() || lmsle_last_[s] != ~0ull) return {};
    const uint64_t lin = offset + seg_base_[s];
    if (!canonical48(lin)) return {};
    const SoftTlbEntry& e =
        tlb_[privilege_index(AccessOrigin::Instruction)][kind == AccessKind::Write][(lin >> 12) % kSoftTlbSize];
    if (e.tag != soft_tag(lin)) return {};
    return {e.host + (lin & 0xFFF), 0x1000 - (lin & 0xFFF)};
  }
  void count_dtlb_hits(uint64_t n) { counters_.dtlb_hits += n; }

  // Runs of linked instructions that one handler completes at once (PUSH and POP, as compiled
  // prologues and epilogues and interrupt entries string them): the handler of the first
  // goes on through the instructions the block loop linked after it that carry the same handler,
  // up to linked_room() instructions in all. That is 1 (the first alone) outside run() and at a
  // pending boundary (single step, breakpoints, a VMM's boundary calls, an interrupt window), else
  // what run()'s instruction limit leaves. The instructions it completes would each have run inside
  // the same block with nothing between them: completing them at once, as retire_linked_run()
  // counts them, leaves what they would have left one by one.
  uint64_t linked_room() const {
    return attention_ || counters_.retired >= run_end_ ? 1 : run_end_ - counters_.retired;
  }
  // `first`'s handler completed the `n - 1` linked instructions after it, `bytes` long, as well:
  // they retire in `first`'s class, each fetched through a block link (a soft-ITLB hit).
  void retire_linked_run(const Insn& first, uint64_t n, uint64_t bytes) {
    counters_.retired += n - 1;
    counters_.by_class[static_cast<unsigned>(first.cls)] += n - 1;
    counters_.itlb_hits += n - 1;
    next_rip_ = (next_rip_ + bytes) & ip_mask_;
  }

  // Data accesses whose page fault is raised (raise()) rather than thrown, for handlers that return
  // at once when one is: false when it was. A #GP or #SS of segmentation, or an access split
  // across two pages, still throws. The common faulting accesses use them (MOV's memory operand,
  // the string instructions, near branches' stack and memory operands, PUSH and POP), so that
  // demand paging, copy-on-write and a VMM's shadow-page faults unwind nothing.
  template <class T> bool load(SegReg s, uint64_t offset, T* v);
  template <class T> bool store(SegReg s, uint64_t offset, T v);
  template <class T> bool load(const Insn& i, const Operand& o, T* v) {
    return load<T>(static_cast<SegReg>(o.seg), effective_address(i, o), v);
  }
  template <class T> bool store(const Insn& i, const Operand& o, T v) {
    return store<T>(static_cast<SegReg>(o.seg), effective_address(i, o), v);
  }
  // push() and pop() so: RSP changes only when the access did not fault.
  template <class T> bool push_or_raise(T value);
  template <class T> bool pop_or_raise(T* value);

  // Stack: SS-relative at RSP/ESP/SP as the mode and SS.B select.
  template <class T> void push(T value);
  template <class T> T pop();
  void push_sized(uint64_t value, unsigned size);
  uint64_t pop_sized(unsigned size);
  // The stack pointer width in bytes (8 in 64-bit mode, else 4 or 2 from SS.B).
  unsigned stack_size() const { return stack_size_; }

  // ---- Flags helpers ---------------------------------------------------------------------------
  // The status flags (CF PF AF ZF SF OF) are lazy: the common arithmetic records its operation,
  // operands and result (set_flags_add, ...) and the flags are computed only when something reads
  // them (flag, condition, set_flags, state(); see isa/README.md, "Lazy flags"). Every other bit of
  // RFLAGS is always in state().rflags.
  bool flag(uint64_t f) const {
    if (f == CF) return carry_flag();
    return ((state_.rflags & ~kStatusFlags) | status_flags()) & f;
  }
  // Replaces the bits of `mask` in RFLAGS with those of `value`.
  void set_flags(uint64_t mask, uint64_t value) {
    if ((mask & kStatusFlags) == kStatusFlags) lazy_.op = LazyOp::None;  // all replaced
    else if (mask & kStatusFlags) materialize_flags();
    state_.rflags = (state_.rflags & ~mask) | (value & mask);
  }
  // The status flags of r = a + b (+ carry in), r = a - b (- borrow in; CMP, NEG as 0 - a), of INC
  // and DEC (CF unchanged), and of a result whose SF, ZF and PF are r's and whose CF, OF and AF are
  // `fixed`'s (logic instructions: none; shifts and multiplies: their CF and OF).
  template <class T> void set_flags_add(T a, T b, T r, bool carry_in = false) {
    record_flags<T>(LazyOp::Add, a, b, r, carry_in);
  }
  template <class T> void set_flags_sub(T a, T b, T r, bool borrow_in = false) {
    record_flags<T>(LazyOp::Sub, a, b, r, borrow_in);
  }
  template <class T> void set_flags_inc(T a, T r) { record_flags<T>(LazyOp::Inc, a, 1, r, carry_flag()); }
  template <class T> void set_flags_dec(T a, T r) { record_flags<T>(LazyOp::Dec, a, 1, r, carry_flag()); }
  template <class T> void set_flags_result(T r, uint64_t fixed = 0) {
    record_flags<T>(LazyOp::Result, 0, 0, r, fixed);
  }
  // Evaluates condition code `cc` (0..15: O NO B AE E NE BE A S NS P NP L GE LE G).
  bool condition(unsigned cc) const;
  // The same for a code known when the handler is built: each Jcc has a handler of its own, so the
  // host branches on the code nowhere (a dispatch on it, shared by every Jcc, predicts poorly).
  template <unsigned CC> bool condition() const { return condition(CC); }

  // ---- Mode, TLB and decode-cache maintenance --------------------------------------------------
  // Recomputes what the core caches from state(): mode, CPL, segment checks; flushes the soft TLB
  // and the decoder's view when CR0/CR3/CR4/EFER changed.
  void sync_mode();
  Mode mode() const { return mode_; }
  bool long64() const { return mode_ == Mode::Long64; }
  // The Translator evicted `linear_page` from an L1 TLB: the soft TLB drops it too, from the entries
  // that mirror that TLB (data accesses mirror the L1 data TLB, fetches the L1 instruction TLB), or
  // from all of them (INVLPG).
  void drop_soft_tlb(uint64_t linear_page, SoftTlbPart part = SoftTlbPart::All);
  // Drops every soft-TLB entry, in every address space it keeps.
  void flush_soft_tlb();
  // Keep the soft TLB's entries of recent address spaces across CR3 switches with CR4.PCIDE set
  // (off by default). Only for a caller that tells the core of every change of those address
  // spaces' translations through invalidate_page_all_contexts() or a flush: a VMM whose shadow
  // pager does (the guest's own MOV CR3 semantics flush as the architecture says, and the soft
  // TLB never holds a translation the page tables no longer give).
  void set_soft_tlb_contexts(bool on) { soft_tlb_contexts_ = on; }
  // INVLPG: the soft TLB and the Translator drop the page.
  void invalidate_page(uint64_t linear);
  // The same for the page's translations under every PCID (a VMM dropping a shadow entry of an
  // address space that is not the current one).
  void invalidate_page_all_contexts(uint64_t linear);
  // CR3 load / global flush: the soft TLB and the Translator flush.
  void flush_tlbs(bool include_global);
  // Physical memory was written behind the core's back (DMA, loaders): drop decoded code there.
  void invalidate_decoded(uint64_t paddr, uint64_t size);
  // Blocks of linked 64-bit instructions that run often are compiled to host code
  // (isa/block_compiler.h; on by default). Everything the guest sees and every count are the same
  // either way: off, for comparing the two and for debugging.
  // `arena_bytes`: the host code they may take (at least 64 KiB) before they are all forgotten
  // and compiled anew.
  void set_block_compilation(bool on, size_t arena_bytes = BlockCompiler::kDefaultArenaBytes);
  bool block_compilation() const { return block_compilation_; }
  uint64_t blocks_compiled() const;  // since the core was made
  uint64_t compiled_code_resets() const;  // times the arena filled up since the last set_block_compilation

  // ---- Statistics ------------------------------------------------------------------------------
  const CoreCounters& counters() const {
    settle_ring_counts();
    return counters_;
  }
  // Instructions without semantics the guest executed, by mnemonic.
  const std::map<std::string, UnimplementedInstruction>& unimplemented() const { return unimplemented_; }
  // The last exception raised by an instruction (for tests and diagnostics) and its RIP.
  const Fault& last_fault() const { return last_fault_; }
  uint64_t last_fault_rip() const { return last_fault_rip_; }
  // String instructions report their iterations here (timing: each iteration costs).
  void count_string_iterations(uint64_t n) { counters_.string_iterations += n; }
  // Called by the #UD handler of an unimplemented instruction.
  void record_unimplemented(const char* mnemonic);

  static uint64_t size_mask(unsigned size) { return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1; }

 private:
  struct DecodedPage;
  struct SoftTlbEntry {
    uint64_t tag = ~0ull;  // soft_tag() of the linear page, ~0 when empty
    uint8_t* host = nullptr;  // host address of the page's first byte
    uint64_t frame = 0;    // physical page number
    DecodedPage* code = nullptr;  // execute entries: the frame's decoded page in the current mode
  };
  static constexpr unsigned kSoftTlbSize = 256;
  // Entries carry the flush epoch above the linear page number (at most 52 bits), so that a flush
  // is one increment instead of clearing every entry: a world switch of a VMM flushes at every
  // trap. Epoch 0xFFF is never used, so that no tag equals the empty one (~0).
  static constexpr unsigned kEpochShift = 52;
  static constexpr uint64_t kLastEpoch = 0xFFEull << kEpochShift;
  uint64_t soft_tag(uint64_t lin) const { return (lin >> 12) | tlb_epoch_; }
  using SoftTlb = std::array<SoftTlbEntry, kSoftTlbSize>;

  // Where an access's translation fault goes: thrown (no sink), or kept here for the caller.
  struct FaultSink {
    bool faulted = false;
    Fault fault{0};
  };
  // The instruction at `linear` past the current code page; null when its translation faulted
  // (the fault in `sink`). Other faults (the CS limit, an instruction over 15 bytes) are thrown.
  const Insn* fetch_slow(uint64_t linear, FaultSink& sink);
  const Insn* decode_at(uint64_t linear, uint64_t paddr, DecodedPage* page);
  DecodedPage* code_page(uint64_t frame);
  void invalidate_frame(uint64_t frame);
  unsigned drop_decoded_frame(uint64_t frame);  // decoded pages dropped (invalidate_frame counts them as SMC)
  void mark(Insn& insn, uint64_t paddr);
  void link(const Insn* from, const Insn* to);  // `to` follows `from` in their decoded page
  bool service_boundary();       // interrupts, hooks, stop; false when run() must return
  // A marked instruction that did not complete (PreExecute::Fault or Raised): the run loop's
  // retirement of it is taken back.
  void take_back_retirement(const Insn& insn);
  uint64_t leave_run(uint64_t retired_at_start);  // run()'s return: the flags materialized, the count
  void handle_fault(const Fault& f);
  // The host bytes of `linear` (null: device memory, or a fault kept in `sink`), its physical
  // address and whether the soft TLB may keep it.
  uint8_t* host_for(uint64_t linear, AccessKind kind, AccessOrigin origin, uint64_t* paddr, bool* cacheable,
                    FaultSink* sink = nullptr);
  // Delivers the fault the current instruction raised or threw; false when run() must return.
  bool deliver_raised(const Fault& fault);
  bool check_code_breakpoints();          // #DB before the instruction at RIP; false when none fired
  // The debug-register breakpoint kinds (DR7 R/W field values) a bitmask of DR0-DR3 matches.
  enum DebugKind : unsigned { kDebugExec = 0, kDebugWrite = 1, kDebugIo = 2, kDebugReadWrite = 3 };
  void sync_debug_registers();
  void note_breakpoint_hits(uint64_t address, unsigned size, unsigned kind);
  bool watched_page(uint64_t lin) const;
  void raise_external(uint8_t vector, bool nmi);  // an accepted interrupt or NMI
  // The accesses the soft TLB does not complete. With a sink, the translation fault of an access
  // within one page is kept there (nothing read or written); every other fault is thrown.
  uint64_t read_slow(uint64_t linear, unsigned size, AccessOrigin origin, FaultSink* sink = nullptr);
  void write_slow(uint64_t linear, unsigned size, uint64_t value, AccessOrigin origin, FaultSink* sink = nullptr);
  // load() and store() past the soft TLB: false when the access raised its fault.
  bool load_slow(uint64_t linear, unsigned size, uint64_t* value);
  bool store_slow(uint64_t linear, unsigned size, uint64_t value);
  void observe_page_part(uint64_t lin, unsigned k, unsigned size, uint64_t paddr, bool write);
  uint64_t canonical_or_fault(uint64_t linear, SegReg s) const;
  // 64-bit mode: the canonical check, and EFER.LMSLE's limit check of DS, ES and SS.
  uint64_t long64_linear(SegReg s, uint64_t offset, unsigned size) const;
  void check_segment(SegReg s, uint64_t offset, unsigned size, AccessKind kind) const;
  void recompute_attention();

  // The soft TLB set for an access: 0 supervisor, 1 user (CPL 3), 2 implicit supervisor. Entries
  // differ in their permission checks (U/S; SMAP, where RFLAGS.AC matters only to explicit ones).
  unsigned privilege_index(AccessOrigin origin) const {
    return origin == AccessOrigin::ImplicitSupervisor ? 2 : user_ ? 1 : 0;
  }

  // Canonical with 48-bit linear addresses: the fast paths' check, which sends a 57-bit address
  // (LA57) to the full check as well.
  static bool canonical48(uint64_t v) { return static_cast<uint64_t>(static_cast<int64_t>(v << 16) >> 16) == v; }
  // Fast-path linear address of explicit data accesses.
  uint64_t data_linear(SegReg s, uint64_t offset, unsigned size, AccessKind kind) const {
    if (mode_ == Mode::Long64) {
      uint64_t lin = offset + seg_base_[s];
      if (canonical48(lin) && offset <= lmsle_last_[s] - size) [[likely]] return lin;
      return long64_linear(s, offset, size);
    }
    return linear_address(s, offset, size, kind);
  }
  // Tells data_observer_ (set) of an access, unless its filter answers for it.
  void observe_data(uint64_t paddr, unsigned size, bool write) {
    const DataAccessFilter& f = data_filter_;
    const uint64_t line = paddr >> f.shift;
    if (f.lines[line & f.mask] == line && ((paddr + size - 1) >> f.shift) == line) [[likely]] {
      ++*f.count;
      return;
    }
    data_observer_->on_data_access(paddr, size, write);
  }
  // The soft-TLB hit paths, forced inline: with the data observer's check in them GCC calls them out
  // of line from handlers with a memory operand, and the cache model then cost compute 1.13x the
  // host time of a run without it instead of 1.04x.
  template <class T> [[gnu::always_inline]] bool read_hit(uint64_t lin, AccessOrigin origin, T* v) {
    const SoftTlbEntry& e = tlb_[privilege_index(origin)][0][(lin >> 12) % kSoftTlbSize];
    if (e.tag == soft_tag(lin) && (lin & 0xFFF) <= 0x1000 - sizeof(T)) [[likely]] {
      ++counters_.dtlb_hits;
      if (data_observer_) observe_data(e.frame << 12 | (lin & 0xFFF), sizeof(T), false);
      std::memcpy(v, e.host + (lin & 0xFFF), sizeof(T));
      return true;
    }
    return false;
  }
  template <class T> [[gnu::always_inline]] bool write_hit(uint64_t lin, T v, AccessOrigin origin) {
    const SoftTlbEntry& e = tlb_[privilege_index(origin)][1][(lin >> 12) % kSoftTlbSize];
    if (e.tag == soft_tag(lin) && (lin & 0xFFF) <= 0x1000 - sizeof(T)) [[likely]] {
      ++counters_.dtlb_hits;
      if (data_observer_) observe_data(e.frame << 12 | (lin & 0xFFF), sizeof(T), true);
      std::memcpy(e.host + (lin & 0xFFF), &v, sizeof(T));
      return true;
    }
    return false;
  }
  template <class T> [[gnu::always_inline]] T read_lin(uint64_t lin, AccessOrigin origin) {
    T v;
    if (read_hit<T>(lin, origin, &v)) [[likely]] return v;
    return static_cast<T>(read_slow(lin, sizeof(T), origin));
  }
  template <class T> [[gnu::always_inline]] void write_lin(uint64_t lin, T v, AccessOrigin origin) {
    if (write_hit<T>(lin, v, origin)) [[likely]] return;
    write_slow(lin, sizeof(T), static_cast<uint64_t>(v), origin);
  }

  // The lazy status flags: the last flag-setting operation, its operands and result, zero-extended
  // from its operand size (the sign bit at `msb`).
  enum class LazyOp : uint8_t { None, Add, Sub, Inc, Dec, Result };
  struct LazyFlags {
    LazyOp op = LazyOp::None;
    uint8_t msb = 0;
    uint64_t a = 0, b = 0, r = 0;
    uint64_t fixed = 0;  // Add, Sub: the carry (borrow) in; Inc, Dec: the CF kept; Result: CF, OF and AF
  };
  template <class T> void record_flags(LazyOp op, T a, T b, T r, uint64_t fixed) {
    lazy_ = {op, static_cast<uint8_t>(sizeof(T) * 8 - 1), a, b, r, fixed};
  }
  // The six status flags, from the lazy record or RFLAGS.
  uint64_t status_flags() const {
    return lazy_.op == LazyOp::None ? state_.rflags & kStatusFlags : lazy_status_flags();
  }
  uint64_t lazy_status_flags() const;
  uint64_t carry_flag() const;   // CF alone (as the bit), lazy or not
  uint64_t adjust_flag() const;  // AF alone
  // ZF, SF, OF and PF alone, as bools: what a condition reads, without the other flags.
  bool zero_flag() const;
  bool sign_flag() const;
  bool overflow_flag() const;
  bool parity_flag() const;
  // Writes the lazy status flags into state_.rflags (the record is then empty). Callable on a const
  // Core: the architectural value does not change, only where it is kept.
  void materialize_flags() const {
    if (lazy_.op == LazyOp::None) [[likely]] return;
    Core& self = const_cast<Core&>(*this);
    self.state_.rflags = (state_.rflags & ~kStatusFlags) | lazy_status_flags();
    self.lazy_.op = LazyOp::None;
  }

  CpuState state_;
  LazyFlags lazy_;
  PhysicalBus& bus_;
  IoBus& io_;
  Translator* translator_ = nullptr;
  InterruptSource* irq_source_ = nullptr;
  TrapHook* hook_ = nullptr;
  TimeSource* time_ = nullptr;
  PrivilegeObserver* privilege_observer_ = nullptr;
  DataAccessObserver* data_observer_ = nullptr;
  DataAccessFilter data_filter_;  // data_observer_'s
  const SystemConfig* system_config_ = nullptr;
  bool hook_boundary_ = false;

  // Cached from state_ by sync_mode().
  Mode mode_ = Mode::Real;
  bool user_ = false;            // CPL 3
  // counters_.retired when retired_user / retired_kernel were last brought up to date: the run
  // loop counts retired alone, and what retired since is added to the ring's count when the ring
  // may change (sync_mode) or someone reads the counters.
  uint64_t ring_mark_ = 0;
  void settle_ring_counts() const;
  unsigned stack_size_ = 2;
  uint64_t ip_mask_ = 0xFFFF;    // RIP wrap (64-bit: all ones)
  uint64_t lin_mask_ = 0xFFFFFFFF;  // linear-address wrap outside 64-bit mode
  uint64_t cs_base_ = 0;
  uint64_t cs_limit_ = 0xFFFF;
  std::array<uint64_t, kNumSegRegs> seg_base_{};
  // The last effective byte EFER.LMSLE lets each segment reach in 64-bit mode (~0: unchecked).
  std::array<uint64_t, kNumSegRegs> lmsle_last_ = [] {
    std::array<uint64_t, kNumSegRegs> all;
    all.fill(~0ull);
    return all;
  }();
  uint64_t synced_cr0_ = 0, synced_cr3_ = 0, synced_cr4_ = 0, synced_efer_ = 0;
  Mode synced_mode_ = Mode::Real;

  // Execution.
  uint64_t next_rip_ = 0;
  const Insn* current_insn_ = nullptr;
  bool attention_ = true;        // service_boundary() must run before the next fetch
  bool stop_requested_ = false;
  bool irq_notified_ = false;
  bool single_step_pending_ = false;
  // Breakpoints enabled in DR7, as bitmasks of DR0-DR3: instruction, data (write or read/write)
  // and I/O. debug_hits_: data and I/O breakpoints the current instruction met (a trap after it).
  uint8_t debug_exec_ = 0, debug_data_ = 0, debug_io_ = 0, debug_hits_ = 0;
  std::array<uint64_t, 4> synced_dr_{};
  uint64_t synced_dr7_ = 0;
  // RFLAGS.RF (set by IRET for the instruction it returns to) is cleared once an instruction
  // retires after the boundary that saw it: rf_retired_ is the retired count at that boundary.
  bool rf_armed_ = false;
  uint64_t rf_retired_ = 0;
  Fault last_fault_{0};
  Fault pre_execute_fault_{0};
  // raise(): the fault the running handler raised, for the block loop to deliver; and the code in
  // progress that is not a handler the block loop called (the trap hook, event delivery, the
  // instruction boundary), under which raise() throws: whoever runs semantics there catches them.
  bool fault_raised_ = false;
  Fault raised_fault_{0};
  unsigned outside_handler_ = 0;
  struct OutsideHandler {
    explicit OutsideHandler(Core& c) : core(c) { ++core.outside_handler_; }
    ~OutsideHandler() { --core.outside_handler_; }
    OutsideHandler(const OutsideHandler&) = delete;
    OutsideHandler& operator=(const OutsideHandler&) = delete;
    Core& core;
  };
  uint64_t last_fault_rip_ = 0;
  uint64_t step_deadline_ = ~0ull;     // steps() at which run() returns
  uint64_t run_end_ = 0;              // inside run(): the retired count at which it returns; else 0
  uint64_t no_progress_limit_ = 0;
  static constexpr uint64_t kMaxDeliveryFaultNesting = 16;
  uint64_t delivery_fault_nesting_ = 0;  // offer_delivery_fault calls in progress
  uint64_t fault_repeats_ = 0;         // the same fault at the same RIP, nothing retired between
  uint64_t retired_at_last_fault_ = ~0ull;
  std::optional<NoProgress> no_progress_;
  bool shutdown_ = false;
  std::string shutdown_reason_;

  // Soft TLB: [privilege_index()][0 read, 1 write, 2 execute].
  SoftTlb tlb_[3][3];
  uint64_t tlb_epoch_ = 0;  // the current flush epoch, in bits 63:52 of every valid tag
  uint64_t next_epoch_ = 0; // the last epoch handed out
  // Address spaces whose soft-TLB entries are kept (set_soft_tlb_contexts): CR3 -> epoch.
  struct SoftTlbContext {
    uint64_t cr3 = ~0ull;
    uint64_t epoch = 0;
  };
  static constexpr unsigned kSoftTlbContexts = 8;
  std::array<SoftTlbContext, kSoftTlbContexts> contexts_{};
  unsigned next_context_ = 0;  // the slot replaced next
  bool soft_tlb_contexts_ = false;
  uint64_t new_epoch();                       // a fresh epoch (clearing every entry when they run out)
  void switch_soft_tlb_context(uint64_t old_cr3, uint64_t new_cr3);
  bool synced_ac_ = false;  // RFLAGS.AC when the supervisor entries were filled (SMAP)
  uint64_t synced_pkru_ = 0, synced_pkrs_ = 0;  // the protection keys' rights the entries were filled under

  // Decoded-instruction cache by (physical frame, mode).
  std::unique_ptr<Decoder> decoder_;
  std::unordered_map<uint64_t, std::unique_ptr<DecodedPage>> pages_;  // key: frame << 3 | mode
  std::unordered_map<uint64_t, unsigned> code_frames_;  // frame -> decoded pages (all modes)
  // How many frames of code_frames_ fall in each bucket (frame mod kCodeFrameBuckets): a write to a
  // frame whose bucket holds none skips the hash lookup (most writes, of data, when the VMM's
  // virtual CPU or a device writes memory).
  static constexpr uint64_t kCodeFrameBuckets = 4096;
  std::array<uint32_t, kCodeFrameBuckets> code_frame_buckets_{};
  bool holds_decoded(uint64_t frame) const {
    return code_frame_buckets_[frame % kCodeFrameBuckets] != 0 && code_frames_.count(frame) != 0;
  }
  std::vector<std::unique_ptr<DecodedPage>> retired_pages_;  // freed at the next boundary
  uint64_t code_lpage_ = ~0ull;     // linear page of code_page_ (fast fetch path)
  DecodedPage* code_page_ = nullptr;
  Insn scratch_insn_;               // an instruction no decoded page holds (fetch_slow)
  // Decodes of code without a host pointer, by physical address, with the bytes they decoded
  // (unmarked: marks are asked for at each execution).
  struct UncachedDecode {
    uint64_t paddr = ~0ull;
    Mode mode = Mode::Real;
    uint8_t size = 0;
    uint8_t bytes[15] = {};
    Insn insn;
  };
  static constexpr unsigned kUncachedDecodes = 64;
  std::array<UncachedDecode, kUncachedDecodes> uncached_decodes_{};

  // Compiled blocks (made when the first one is compiled).
  friend class BlockCompiler;
  friend class BlockBuilder;  // BlockCompiler's code generator
  bool block_compilation_ = true;
  size_t arena_bytes_ = BlockCompiler::kDefaultArenaBytes;
  uint64_t compiled_before_ = 0;  // blocks compiled by compilers set_block_compilation dropped
  std::unique_ptr<BlockCompiler> compiler_;
  void compile_block(const Insn* head);
  static size_t decoded_page_slots_offset();  // of DecodedPage::slot
  void forget_compiled_blocks();  // no Insn keeps its compiled block or its block-start count

  CoreCounters counters_;
  std::map<std::string, UnimplementedInstruction> unimplemented_;
};

// ---- Inline definitions ----------------------------------------------------------------------

template <class T> inline T Core::reg(const Operand& o) const {
  if constexpr (sizeof(T) == 1) {
    if (o.high8) return static_cast<T>(state_.gpr[o.reg] >> 8);
  }
  return static_cast<T>(state_.gpr[o.reg]);
}

template <class T> inline void Core::set_gpr(unsigned r, T v) {
  uint64_t& g = state_.gpr[r];
  if constexpr (sizeof(T) == 1) g = (g & ~0xFFull) | static_cast<uint8_t>(v);
  else if constexpr (sizeof(T) == 2) g = (g & ~0xFFFFull) | static_cast<uint16_t>(v);
  else g = static_cast<uint64_t>(v);  // a 32-bit write zero-extends (SDM vol. 1, 3.4.1.1)
}

template <class T> inline void Core::set_reg(const Operand& o, T v) {
  if constexpr (sizeof(T) == 1) {
    if (o.high8) {
      uint64_t& g = state_.gpr[o.reg];
      g = (g & ~0xFF00ull) | (static_cast<uint64_t>(static_cast<uint8_t>(v)) << 8);
      return;
    }
  }
  set_gpr<T>(o.reg, v);
}

// The operand accessors below are forced inline: GCC otherwise calls out of line for the memory
// forms of specialized handlers, which cost 3 to 4% of host time on compute, forkwait and memwalk.
[[gnu::always_inline]] inline uint64_t Core::effective_address(const Insn& i, const Operand& o) const {
  uint64_t ea = static_cast<uint64_t>(o.value);
  if (o.base < 16) ea += state_.gpr[o.base];
  else if (o.base == kRipReg) ea += next_rip_;
  if (o.index < 16) ea += state_.gpr[o.index] << o.scale;
  return i.addrsize == 8 ? ea : ea & size_mask(i.addrsize);
}

template <class T, OpKind K> [[gnu::always_inline]] inline T Core::get(const Insn& i, const Operand& o) {
  if constexpr (K == OpKind::Reg) return reg<T>(o);
  else if constexpr (K == OpKind::Mem) return read<T>(static_cast<SegReg>(o.seg), effective_address(i, o));
  else if constexpr (K == OpKind::Imm) return static_cast<T>(o.value);
  else {
    static_assert(K == kKindAtRunTime, "an operand read is of a Reg, Mem or Imm operand");
    if (o.kind == OpKind::Reg) return reg<T>(o);
    if (o.kind == OpKind::Mem) return read<T>(static_cast<SegReg>(o.seg), effective_address(i, o));
    return static_cast<T>(o.value);
  }
}

template <class T, OpKind K> [[gnu::always_inline]] inline void Core::set(const Insn& i, const Operand& o, T v) {
  if constexpr (K == OpKind::Reg) set_reg<T>(o, v);
  else if constexpr (K == OpKind::Mem) write<T>(static_cast<SegReg>(o.seg), effective_address(i, o), v);
  else {
    static_assert(K == kKindAtRunTime, "an operand write is of a Reg or Mem operand");
    if (o.kind == OpKind::Reg) set_reg<T>(o, v);
    else write<T>(static_cast<SegReg>(o.seg), effective_address(i, o), v);
  }
}

template <class T> [[gnu::always_inline]] inline T Core::read(SegReg s, uint64_t offset) {
  return read_lin<T>(data_linear(s, offset, sizeof(T), AccessKind::Read), AccessOrigin::Instruction);
}

template <class T> [[gnu::always_inline]] inline void Core::write(SegReg s, uint64_t offset, T value) {
  write_lin<T>(data_linear(s, offset, sizeof(T), AccessKind::Write), value, AccessOrigin::Instruction);
}

template <class T> [[gnu::always_inline]] inline bool Core::load(SegReg s, uint64_t offset, T* v) {
  const uint64_t lin = data_linear(s, offset, sizeof(T), AccessKind::Read);
  if (read_hit<T>(lin, AccessOrigin::Instruction, v)) [[likely]] return true;
  uint64_t value;
  if (!load_slow(lin, sizeof(T), &value)) return false;
  *v = static_cast<T>(value);
  return true;
}

template <class T> [[gnu::always_inline]] inline bool Core::store(SegReg s, uint64_t offset, T v) {
  const uint64_t lin = data_linear(s, offset, sizeof(T), AccessKind::Write);
  if (write_hit<T>(lin, v, AccessOrigin::Instruction)) [[likely]] return true;
  return store_slow(lin, sizeof(T), static_cast<uint64_t>(v));
}

template <class T> inline bool Core::push_or_raise(T value) {
  uint64_t sp = state_.gpr[RSP] - sizeof(T);
  if (stack_size_ != 8) sp &= size_mask(stack_size_);
  if (!store<T>(SS, sp, value)) return false;
  set_gpr_sized(RSP, sp, stack_size_);
  return true;
}

template <class T> inline bool Core::pop_or_raise(T* value) {
  uint64_t sp = state_.gpr[RSP];
  if (stack_size_ != 8) sp &= size_mask(stack_size_);
  if (!load<T>(SS, sp, value)) return false;
  set_gpr_sized(RSP, sp + sizeof(T), stack_size_);
  return true;
}

template <class T> inline void Core::push(T value) {
  uint64_t sp = state_.gpr[RSP] - sizeof(T);
  if (stack_size_ != 8) sp &= size_mask(stack_size_);
  write<T>(SS, sp, value);
  set_gpr_sized(RSP, sp, stack_size_);
}

template <class T> inline T Core::pop() {
  uint64_t sp = state_.gpr[RSP];
  if (stack_size_ != 8) sp &= size_mask(stack_size_);
  T v = read<T>(SS, sp);
  set_gpr_sized(RSP, sp + sizeof(T), stack_size_);
  return v;
}

inline uint64_t Core::carry_flag() const {
  const LazyFlags& l = lazy_;
  switch (l.op) {
    case LazyOp::None: return state_.rflags & CF;
    case LazyOp::Add: return (l.fixed ? l.r <= l.a : l.r < l.a) ? uint64_t{CF} : 0;
    case LazyOp::Sub: return (l.fixed ? l.a <= l.b : l.a < l.b) ? uint64_t{CF} : 0;
    default: return l.fixed & CF;  // Inc, Dec: the CF kept; Result: its own
  }
}

inline uint64_t Core::adjust_flag() const {
  const LazyFlags& l = lazy_;
  switch (l.op) {
    case LazyOp::None: return state_.rflags & AF;
    case LazyOp::Result: return l.fixed & AF;
    default: return (l.a ^ l.b ^ l.r) & AF;
  }
}

inline uint64_t Core::lazy_status_flags() const {
  return carry_flag() | adjust_flag() | (zero_flag() ? uint64_t{ZF} : 0) | (sign_flag() ? uint64_t{SF} : 0) |
         (parity_flag() ? uint64_t{PF} : 0) | (overflow_flag() ? uint64_t{OF} : 0);
}

inline bool Core::zero_flag() const {
  return lazy_.op == LazyOp::None ? (state_.rflags & ZF) != 0 : lazy_.r == 0;
}

inline bool Core::sign_flag() const {
  return lazy_.op == LazyOp::None ? (state_.rflags & SF) != 0 : ((lazy_.r >> lazy_.msb) & 1) != 0;
}

inline bool Core::overflow_flag() const {
  const LazyFlags& l = lazy_;
  switch (l.op) {
    case LazyOp::None: return (state_.rflags & OF) != 0;
    case LazyOp::Add:
    case LazyOp::Inc: return ((((l.a ^ l.r) & (l.b ^ l.r)) >> l.msb) & 1) != 0;
    case LazyOp::Sub:
    case LazyOp::Dec: return ((((l.a ^ l.b) & (l.a ^ l.r)) >> l.msb) & 1) != 0;
    default: return (l.fixed & OF) != 0;
  }
}

inline bool Core::parity_flag() const {
  return lazy_.op == LazyOp::None ? (state_.rflags & PF) != 0 : !__builtin_parity(static_cast<uint8_t>(lazy_.r));
}

[[gnu::always_inline]] inline bool Core::condition(unsigned cc) const {
  bool r;
  // CMP or SUB, then Jcc, SETcc or CMOVcc: the condition from the operands, without the flags.
  if (lazy_.op == LazyOp::Sub && lazy_.fixed == 0 && (cc >> 1) != 0 && (cc >> 1) != 5) {
    const unsigned shift = 63 - lazy_.msb;
    const int64_t sa = static_cast<int64_t>(lazy_.a << shift), sb = static_cast<int64_t>(lazy_.b << shift);
    switch (cc >> 1) {
      case 1: r = lazy_.a < lazy_.b; break;
      case 2: r = lazy_.r == 0; break;
      case 3: r = lazy_.a <= lazy_.b; break;
      case 4: r = (lazy_.r >> lazy_.msb) & 1; break;
      case 6: r = sa < sb; break;
      default: r = sa <= sb; break;
    }
    return (cc & 1) ? !r : r;
  }
  // Otherwise only the flags the condition reads (a TEST then JE computes ZF alone).
  switch (cc >> 1) {
    case 0: r = overflow_flag(); break;
    case 1: r = carry_flag() != 0; break;
    case 2: r = zero_flag(); break;
    case 3: r = carry_flag() != 0 || zero_flag(); break;
    case 4: r = sign_flag(); break;
    case 5: r = parity_flag(); break;
    case 6: r = sign_flag() != overflow_flag(); break;
    default: r = zero_flag() || sign_flag() != overflow_flag(); break;
  }
  return (cc & 1) ? !r : r;
}

}  // namespace pgsim::isa

// The execution loop, the decoded-instruction cache, segmentation and the soft TLB.
#include "isa/core.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <stdexcept>

#include "isa/block_compiler.h"
#include "isa/decoder.h"
#include "isa/dispatch.h"

namespace pgsim::isa {

// The decoded instructions of one physical page in one mode, by page offset.
struct Core::DecodedPage {
  uint64_t frame = 0;
  Mode mode = Mode::Real;
  std::array<Insn*, 4096> slot{};
  std::deque<Insn> store;  // stable addresses: an executing Insn never moves
};

namespace {
constexpr unsigned kRead = 0, kWrite = 1, kExec = 2;
// The handler of instructions a TrapHook marked.
void marked_instruction(Core& core, const Insn& insn) { core.execute_marked(insn); }
unsigned kind_index(AccessKind k) { return static_cast<unsigned>(k); }
uint64_t page_key(uint64_t frame, Mode mode) { return frame << 3 | static_cast<uint64_t>(mode); }
}  // namespace

Core::Core(PhysicalBus& bus, IoBus& io)
    : bus_(bus), io_(io), decoder_(std::make_unique<Decoder>(Dispatch::instance())) {
  sync_mode();
}

Core::~Core() = default;

// ---- Execution loop -------------------------------------------------------------------------

uint64_t Core::run(uint64_t max_instructions, uint64_t max_steps) {
  // Instructions retired by this call; an instruction that faults without a C++ exception
  // (PreExecute::Fault) takes its count back, so the count is kept in counters_ alone.
  const uint64_t start = counters_.retired;
  const uint64_t end = max_instructions > ~0ull - start ? ~0ull : start + max_instructions;
  const uint64_t steps = counters_.steps();
  step_deadline_ = max_steps > ~0ull - steps ? ~0ull : steps + max_steps;
  run_end_ = end;
  // A run cut short by an exception other than a guest fault leaves no room behind (linked_room()).
  struct RunEndReset {
    uint64_t& run_end;
    ~RunEndReset() { run_end = 0; }
  } run_end_reset{run_end_};
  sync_mode();
  // Fetches a block link stands for (each a soft-ITLB hit), added to counters_.itlb_hits when the
  // block ends rather than one by one. Nothing reads that count inside a block: the Translator
  // reads it only when paging was switched, by a System instruction, which ends its block.
  uint64_t linked_fetches = 0;
  while (counters_.retired < end) {
    try {
      // The last instruction, when it fell through inside the linear page `prev_lpage` of decoded
      // page `prev_page`: the instruction fetched next is linked to it.
      const Insn* prev = nullptr;
      const DecodedPage* prev_page = nullptr;
      uint64_t prev_lpage = ~0ull;
      while (counters_.retired < end) {
        if (attention_) {
          prev = nullptr;
          if (!service_boundary()) return leave_run(start);
        }
        // Fetch: the current code page is kept for the fast path (its soft-ITLB entry is valid).
        const uint64_t lin = (cs_base_ + state_.rip) & lin_mask_;
        const Insn* insn = nullptr;
        if ((lin >> 12) == code_lpage_ && state_.rip <= cs_limit_) [[likely]] {
          insn = code_page_->slot[lin & 0xFFF];
          if (insn) [[likely]] ++counters_.itlb_hits;
        }
        if (!insn) {
          current_insn_ = nullptr;
          FaultSink fetch_fault;
          insn = fetch_slow(lin, fetch_fault);
          if (!insn) [[unlikely]] {  // the fetch's page fault, delivered as the catch below would
            prev = nullptr;
            if (!deliver_raised(fetch_fault.fault)) return leave_run(start);
            continue;
          }
        }
        // The block's page: the one the soft ITLB gives for this linear page, if the instruction
        // lives there (not one decoded anew at every execution).
        const DecodedPage* page = (lin >> 12) == code_lpage_ && insn != &scratch_insn_ ? code_page_ : nullptr;
        if (prev && page && page == prev_page && (lin >> 12) == prev_lpage) link(prev, insn);
        prev = nullptr;
        // A compiled block runs its instructions' steps as the loop below would, up to the last
        // one it executed (or the first that ended the block early), whose step it leaves to this
        // loop's slow path, below. Only Insns of a decoded page are compiled, and only in 64-bit
        // mode: RIP neither wraps nor meets a CS limit.
        if (const CompiledBlock* block = insn->compiled;
            block && page && state_.rip == block->rip && end - counters_.retired >= block->length) [[likely]] {
          const Insn* last = block->entry(this, page);
          if (!last) continue;
          const uint64_t fall = state_.rip + last->length;
          state_.rip = next_rip_;
          ++counters_.retired;
          if (next_rip_ == fall && code_page_ == page && !last->next && last->handler == last->semantics) {
            prev = last;
            prev_page = page;
            prev_lpage = lin >> 12;
          }
          if (fault_raised_) [[unlikely]] {
            fault_raised_ = false;
            if (!deliver_raised(raised_fault_)) return leave_run(start);
          }
          continue;
        }
        if (page && insn->next && !insn->compiled && block_compilation_ && mode_ == Mode::Long64 &&
            ++const_cast<Insn*>(insn)->block_starts == BlockCompiler::kHotExecutions)
          compile_block(insn);
        // Execute the block: this instruction and those linked after it, while each falls through,
        // the soft ITLB still holds the page and nothing needs the boundary's slow path. One step
        // executes `insn` and says whether the block goes on; the loop takes two steps per turn, so
        // that the handler is called from two places whose targets the host predicts apart (about
        // 7% less host time on compute and forkwait than one call site).
        // Inside a block RIP and the retired count live in registers and are only stored: chaining
        // each step through a store and a reload of state_.rip and counters_.retired put two
        // store-to-load forwards on the path from one instruction to the next. The memory copies
        // stay exact for handlers, which read them (fault RIPs, counts at an I/O access); a handler
        // that changes either (suspension, delivery) also changes next_rip_ or raises attention_,
        // which ends the block through the path that re-reads memory.
        uint64_t rip = state_.rip;
        uint64_t retired = counters_.retired;
        auto step = [&]() __attribute__((always_inline)) {
          current_insn_ = insn;
          const uint64_t fall = rip + insn->length;
          next_rip_ = fall & ip_mask_;
          insn->handler(*this, *insn);
          ++counters_.by_class[static_cast<unsigned>(insn->cls)];
          if (next_rip_ != fall || !page || code_page_ != page || !insn->next || attention_) [[unlikely]] {
            state_.rip = next_rip_;
            ++counters_.retired;
            // A marked or System instruction (handler != semantics) ends its block: the hook or
            // the mode change may have moved CS or the code page. Any other instruction that fell
            // through inside the page is linked to the next one fetched. (A linked instruction is
            // neither marked nor System: marks change only with the decoded pages that hold them.)
            if (next_rip_ == fall && page && code_page_ == page && !insn->next && insn->handler == insn->semantics) {
              prev = insn;
              prev_page = page;
              prev_lpage = lin >> 12;
            }
            return false;
          }
          state_.rip = rip = fall;
          counters_.retired = ++retired;
          if (retired >= end || rip > cs_limit_) return false;
          insn = insn->next;
          ++linked_fetches;
          return true;
        };
        while (step() && step()) {
        }
        counters_.itlb_hits += linked_fetches;
        linked_fetches = 0;
        // A fault raised without unwinding (raise()) ended the block: the handler took back its
        // retirement and left next_rip_ at the instruction, as the catch below finds them.
        if (fault_raised_) [[unlikely]] {
          fault_raised_ = false;
          if (!deliver_raised(raised_fault_)) return leave_run(start);
        }
      }
    } catch (const Fault& fault) {
      counters_.itlb_hits += linked_fetches;
      linked_fetches = 0;
      if (!deliver_raised(fault)) return leave_run(start);
    }
  }
  return leave_run(start);
}

bool Core::deliver_raised(const Fault& fault) {
  OutsideHandler delivery(*this);
  try {
    handle_fault(fault);
  } catch (const Fault& nested) {  // delivery itself must resolve nested faults (#DF)
    shutdown("fault " + std::to_string(nested.vector) + " escaped event delivery of fault " +
             std::to_string(fault.vector));
  }
  return !shutdown_ && !no_progress_;
}

void Core::raise(const Fault& fault) {
  if (run_end_ == 0 || outside_handler_ != 0 || !current_insn_) throw fault;
  raised_fault_ = fault;
  fault_raised_ = true;
  take_back_retirement(*current_insn_);
}

uint64_t Core::leave_run(uint64_t retired_at_start) {
  materialize_flags();  // whoever holds a reference to state() reads RFLAGS after run()
  settle_ring_counts();
  return counters_.retired - retired_at_start;
}

void Core::compile_block(const Insn* head) {
  if (!compiler_) compiler_ = std::make_unique<BlockCompiler>(*this, arena_bytes_);
  const CompiledBlock* block = compiler_->compile(*head, state_.rip);
  if (compiler_->full()) {  // start over: the blocks that run often are compiled again
    forget_compiled_blocks();
    compiler_->reset();
    block = compiler_->compile(*head, state_.rip);
  }
  const_cast<Insn*>(head)->compiled = block;
}

void Core::forget_compiled_blocks() {
  auto forget = [](DecodedPage& page) {
    for (Insn& insn : page.store) {
      insn.compiled = nullptr;
      insn.block_starts = 0;
    }
  };
  for (auto& [key, page] : pages_) forget(*page);
  for (auto& page : retired_pages_) forget(*page);
}

void Core::set_block_compilation(bool on, size_t arena_bytes) {
  block_compilation_ = on;
  forget_compiled_blocks();
  if (compiler_) compiled_before_ += compiler_->blocks_compiled();
  compiler_.reset();
  arena_bytes_ = arena_bytes;
}

size_t Core::decoded_page_slots_offset() { return offsetof(DecodedPage, slot); }

uint64_t Core::blocks_compiled() const { return compiled_before_ + (compiler_ ? compiler_->blocks_compiled() : 0); }
uint64_t Core::compiled_code_resets() const { return compiler_ ? compiler_->resets() : 0; }

void Core::link(const Insn* from, const Insn* to) {
  // Every Insn a decoded page holds is the core's own; handlers see them const.
  const_cast<Insn*>(from)->next = to;
}

void Core::suspend_instruction() {
  // The run loop retires the instruction when its handler returns: take that back beforehand.
  --counters_.retired;
  --counters_.by_class[static_cast<unsigned>(current_insn_->cls)];
  next_rip_ = state_.rip;
  request_stop();
}

void Core::shutdown(const std::string& reason) {
  shutdown_ = true;
  shutdown_reason_ = reason;
  attention_ = true;
}

void Core::set_trap_hook(TrapHook* hook, bool boundary_calls) {
  hook_ = hook;
  hook_boundary_ = hook && boundary_calls;
  remark_decoded();
  recompute_attention();
}

void Core::set_boundary_calls(bool on) {
  hook_boundary_ = hook_ && on;
  recompute_attention();
}

void Core::remark_decoded() {
  std::vector<uint64_t> frames;
  frames.reserve(code_frames_.size());
  for (const auto& [frame, count] : code_frames_) frames.push_back(frame);
  for (uint64_t frame : frames) drop_decoded_frame(frame);
}

void Core::mark(Insn& insn, uint64_t paddr) {
  if (hook_ && hook_->wants_before(insn, paddr)) insn.handler = &marked_instruction;
}

void Core::execute_marked(const Insn& insn) {
  materialize_flags();  // the hook sees the whole RFLAGS, in whatever reference it keeps
  PreExecute decision;
  {
    OutsideHandler hook(*this);
    decision = hook_->before_instruction(*this, insn);
  }
  switch (decision) {
    case PreExecute::Execute: break;
    case PreExecute::Skip: return;
    case PreExecute::Fault:
      try {
        handle_fault(pre_execute_fault_);
      } catch (const Fault& nested) {  // as in run(): delivery itself must resolve nested faults
        shutdown("fault " + std::to_string(nested.vector) + " escaped event delivery of fault " +
                 std::to_string(pre_execute_fault_.vector));
      }
      take_back_retirement(insn);
      return;
    case PreExecute::Raised:
      take_back_retirement(insn);
      return;
  }
  insn.semantics(*this, insn);
  if (fault_raised_) return;  // as a thrown fault would: no mode re-sync, no after_instruction
  if (insn.has(kTraitSystem)) sync_mode();
  materialize_flags();
  OutsideHandler hook(*this);
  hook_->after_instruction(*this, insn);
}

void Core::take_back_retirement(const Insn& insn) {
  // The run loop retires the instruction when its handler returns: take that back, as the mode the
  // delivery left decides which count it adds to, and continue where delivery left RIP.
  --counters_.retired;
  --counters_.by_class[static_cast<unsigned>(insn.cls)];
  next_rip_ = state_.rip;
}

void Core::retire_for_guest(InsnClass cls, bool user) {
  settle_ring_counts();  // what retired before, in the ring the core is in
  ++counters_.retired;
  ++counters_.by_class[static_cast<unsigned>(cls)];
  ++(user ? counters_.retired_user : counters_.retired_kernel);
  ring_mark_ = counters_.retired;
}

uint64_t Core::read_tsc() const { return time_ ? time_->current_cycle() + state_.tsc : state_.tsc; }

void Core::recompute_attention() {
  attention_ = stop_requested_ || irq_notified_ || hook_boundary_ || shutdown_ || state_.halted ||
               state_.interrupt_shadow || single_step_pending_ || (state_.rflags & (TF | RF)) ||
               debug_exec_ || debug_hits_ || !retired_pages_.empty();
}

bool Core::service_boundary() {
  OutsideHandler boundary(*this);
  retired_pages_.clear();  // decoded pages discarded by self-modifying code are unused from here
  if (shutdown_) return false;
  if (stop_requested_) {
    stop_requested_ = false;
    recompute_attention();
    return false;
  }
  deliver_debug_trap();
  // RF suppresses instruction breakpoints for one instruction (18.3.1.1).
  if (state_.rflags & RF) {
    if (!rf_armed_) {
      rf_armed_ = true;
      rf_retired_ = counters_.retired;
    } else if (counters_.retired != rf_retired_) {
      state_.rflags &= ~uint64_t(RF);
      rf_armed_ = false;
    }
  }
  const bool shadow = state_.interrupt_shadow;  // STI / MOV SS inhibit for one instruction
  state_.interrupt_shadow = false;
  if (irq_notified_ && irq_source_ && !shadow) {
    if (!state_.nmi_blocked && irq_source_->nmi_pending()) {
      irq_source_->acknowledge_nmi();
      state_.halted = false;
      raise_external(NMI, true);
    } else if (state_.rflags & IF) {
      if (irq_source_->interrupt_pending()) {
        const uint8_t vector = irq_source_->acknowledge_interrupt();
        state_.halted = false;
        ++counters_.interrupts;
        raise_external(vector, false);
      } else {
        // An NMI held back by NMI blocking keeps the core polling, so that the IRET that ends
        // the blocking lets it in.
        irq_notified_ = irq_source_->interrupt_held() || (state_.nmi_blocked && irq_source_->nmi_pending());
      }
    }
  } else if (irq_notified_ && !irq_source_) {
    irq_notified_ = false;
  }
  if (shutdown_ || state_.halted) {
    recompute_attention();
    return false;
  }
  if (debug_exec_ && !(state_.rflags & RF) && check_code_breakpoints() && shutdown_) return false;
  if (hook_boundary_) {
    materialize_flags();
    hook_->on_instruction_boundary(*this);
  }
  if (stop_requested_) {
    stop_requested_ = false;
    recompute_attention();
    return false;
  }
  if (state_.rflags & TF) single_step_pending_ = true;
  recompute_attention();
  return true;
}

void Core::record_unimplemented(const char* mnemonic) {
  auto [it, inserted] = unimplemented_.try_emplace(mnemonic, UnimplementedInstruction{mnemonic, 0, 0});
  if (inserted) it->second.first_address = (cs_base_ + state_.rip) & lin_mask_;
  ++it->second.count;
}

// ---- Mode cache ---------------------------------------------------------------------------------

void Core::settle_ring_counts() const {
  // Modular: an instruction taken back (suspended, or faulted in its hook) after the last
  // settlement makes the difference "negative" until the run loop retires the next one.
  Core& self = const_cast<Core&>(*this);
  (user_ ? self.counters_.retired_user : self.counters_.retired_kernel) += counters_.retired - ring_mark_;
  self.ring_mark_ = counters_.retired;
}

void Core::sync_mode() {
  settle_ring_counts();  // what retired so far, in the ring it retired in
  mode_ = state_.mode();
  const bool long64 = mode_ == Mode::Long64;
  const bool was_user = user_;
  user_ = state_.cpl() == 3;
  stack_size_ = long64 ? 8 : state_.seg[SS].db() ? 4 : 2;
  ip_mask_ = long64 ? ~0ull : state_.seg[CS].db() ? 0xFFFFFFFFull : 0xFFFFull;
  lin_mask_ = long64 ? ~0ull : 0xFFFFFFFFull;
  const bool lmsle = long64 && (state_.efer & EFER_LMSLE) && state_.cpl() > 0;
  for (unsigned s = 0; s < kNumSegRegs; ++s) {
    seg_base_[s] = long64 && s < FS ? 0 : state_.seg[s].base;
    const bool checked = lmsle && (s == DS || s == ES || s == SS);
    lmsle_last_[s] = checked ? kLmsleLimitBase + (state_.seg[s].limit & 0xFFFFFFFFull) : ~0ull;
  }
  cs_base_ = seg_base_[CS];
  cs_limit_ = long64 ? ~0ull : state_.seg[CS].limit;
  if (state_.cr0 != synced_cr0_ || state_.cr3 != synced_cr3_ || state_.cr4 != synced_cr4_ ||
      state_.efer != synced_efer_) {
    const bool switch_only = soft_tlb_contexts_ && (state_.cr4 & CR4_PCIDE) && state_.cr0 == synced_cr0_ &&
                             state_.cr4 == synced_cr4_ && state_.efer == synced_efer_;
    if (switch_only) switch_soft_tlb_context(synced_cr3_, state_.cr3);
    else flush_soft_tlb();
    synced_cr0_ = state_.cr0;
    synced_cr3_ = state_.cr3;
    synced_cr4_ = state_.cr4;
    synced_efer_ = state_.efer;
  }
  if (!(state_.rflags & RF)) rf_armed_ = false;
  sync_debug_registers();
  // Soft-TLB entries hold the protection keys' rights at fill time: WRPKRU and WRMSR IA32_PKRS
  // drop them.
  if (state_.pkru != synced_pkru_ || state_.pkrs != synced_pkrs_) {
    synced_pkru_ = state_.pkru;
    synced_pkrs_ = state_.pkrs;
    if (state_.cr4 & (CR4_PKE | CR4_PKS)) flush_soft_tlb();
  }
  // With SMAP, explicit supervisor accesses to user pages depend on RFLAGS.AC (STAC/CLAC/POPF).
  const bool ac = state_.rflags & AC;
  if (ac != synced_ac_) {
    synced_ac_ = ac;
    if (state_.cr4 & CR4_SMAP) {
      tlb_[0][kRead].fill(SoftTlbEntry{});
      tlb_[0][kWrite].fill(SoftTlbEntry{});
    }
  }
  // The fast fetch path skips the ITLB: re-check the code page after a mode or privilege change;
  // the decoded pages the ITLB points to belong to the old mode.
  if (mode_ != synced_mode_ || user_ != was_user) {
    if (mode_ != synced_mode_) {
      for (auto& by_privilege : tlb_)
        for (SoftTlbEntry& e : by_privilege[kExec]) e.code = nullptr;
    }
    synced_mode_ = mode_;
    code_lpage_ = ~0ull;
    code_page_ = nullptr;
  }
  if (privilege_observer_) privilege_observer_->on_cpl_sync(state_.cpl());
  recompute_attention();
}

// ---- Soft TLB and decode-cache maintenance ---------------------------------------------------

void Core::drop_soft_tlb(uint64_t linear_page, SoftTlbPart part) {
  // The page leaves every address space the soft TLB keeps (an entry's slot is its page's, whatever
  // its epoch). A data TLB's eviction leaves the execute entries alone: a memory-bound guest evicts
  // at nearly every access, and each entry visited is a host cache line.
  constexpr uint64_t kPageBits = (1ull << kEpochShift) - 1;
  const uint64_t page = linear_page >> 12;
  const unsigned first = part == SoftTlbPart::Code ? kExec : 0, last = part == SoftTlbPart::Data ? kExec : kExec + 1;
  for (auto& by_privilege : tlb_)
    for (unsigned k = first; k < last; ++k) {
      SoftTlbEntry& e = by_privilege[k][page % kSoftTlbSize];
      if (e.tag != ~0ull && (e.tag & kPageBits) == page) e = SoftTlbEntry{};
    }
  if (part != SoftTlbPart::Data && code_lpage_ == page) {
    code_lpage_ = ~0ull;
    code_page_ = nullptr;
  }
}

uint64_t Core::new_epoch() {
  if (next_epoch_ < kLastEpoch) return next_epoch_ += 1ull << kEpochShift;
  next_epoch_ = 0;  // every epoch used: clear every entry and start over
  for (auto& by_user : tlb_)
    for (auto& tlb : by_user) tlb.fill(SoftTlbEntry{});
  contexts_.fill(SoftTlbContext{});
  return next_epoch_;
}

void Core::flush_soft_tlb() {
  contexts_.fill(SoftTlbContext{});  // no address space keeps its entries
  tlb_epoch_ = new_epoch();  // every entry of the old epochs misses from now on
  code_lpage_ = ~0ull;
  code_page_ = nullptr;
}

void Core::switch_soft_tlb_context(uint64_t old_cr3, uint64_t new_cr3) {
  SoftTlbContext* found = nullptr;
  SoftTlbContext* old_slot = nullptr;
  for (SoftTlbContext& c : contexts_) {
    if (c.cr3 == new_cr3) found = &c;
    if (c.cr3 == old_cr3) old_slot = &c;
  }
  if (!old_slot) {  // remember the address space being left
    old_slot = &contexts_[next_context_];
    if (old_slot == found) old_slot = &contexts_[next_context_ = (next_context_ + 1) % kSoftTlbContexts];
    next_context_ = (next_context_ + 1) % kSoftTlbContexts;
  }
  *old_slot = {old_cr3, tlb_epoch_};
  tlb_epoch_ = found ? found->epoch : new_epoch();
  code_lpage_ = ~0ull;
  code_page_ = nullptr;
}

void Core::invalidate_page(uint64_t linear) {
  drop_soft_tlb(linear & ~0xFFFull);
  if (translator_) translator_->invalidate_page(linear);
}

void Core::invalidate_page_all_contexts(uint64_t linear) {
  drop_soft_tlb(linear & ~0xFFFull);
  if (translator_) translator_->invalidate_page_all_contexts(linear);
}

void Core::flush_tlbs(bool include_global) {
  flush_soft_tlb();
  if (translator_) translator_->flush(include_global);
}

void Core::invalidate_decoded(uint64_t paddr, uint64_t size) {
  if (size == 0) return;
  for (uint64_t frame = paddr >> 12; frame <= (paddr + size - 1) >> 12; ++frame) {
    if (holds_decoded(frame)) invalidate_frame(frame);
  }
}

void Core::invalidate_frame(uint64_t frame) {
  counters_.smc_invalidations += drop_decoded_frame(frame);
}

unsigned Core::drop_decoded_frame(uint64_t frame) {
  unsigned dropped = 0;
  for (unsigned m = 0; m < 7; ++m) {
    auto it = pages_.find(page_key(frame, static_cast<Mode>(m)));
    if (it == pages_.end()) continue;
    if (it->second.get() == code_page_) {
      code_lpage_ = ~0ull;
      code_page_ = nullptr;
    }
    for (auto& by_privilege : tlb_)
      for (SoftTlbEntry& e : by_privilege[kExec])
        if (e.code == it->second.get()) e.code = nullptr;
    retired_pages_.push_back(std::move(it->second));  // the current Insn may live there
    pages_.erase(it);
    ++dropped;
  }
  if (code_frames_.erase(frame)) --code_frame_buckets_[frame % kCodeFrameBuckets];
  attention_ = true;
  return dropped;
}

Core::DecodedPage* Core::code_page(uint64_t frame) {
  const uint64_t key = page_key(frame, mode_);
  auto it = pages_.find(key);
  if (it != pages_.end()) return it->second.get();
  auto page = std::make_unique<DecodedPage>();
  page->frame = frame;
  page->mode = mode_;
  DecodedPage* raw = page.get();
  pages_.emplace(key, std::move(page));
  if (code_frames_[frame]++ == 0) {
    ++code_frame_buckets_[frame % kCodeFrameBuckets];
    // Writes to this frame must now take the slow path, which discards the decoded code.
    for (auto& by_user : tlb_)
      for (SoftTlbEntry& e : by_user[kWrite])
        if (e.tag != ~0ull && e.frame == frame) e = SoftTlbEntry{};
  }
  return raw;
}

// ---- Fetch and decode --------------------------------------------------------------------------

const Insn* Core::fetch_slow(uint64_t lin, FaultSink& sink) {
  if (state_.rip > cs_limit_) throw Fault::gp(0);
  // A change of code page that hits the soft ITLB finds the decoded page there (no hashing).
  SoftTlbEntry& itlb = tlb_[user_][kExec][(lin >> 12) % kSoftTlbSize];
  if (itlb.tag == soft_tag(lin) && itlb.code) {
    if (const Insn* insn = itlb.code->slot[lin & 0xFFF]) {
      ++counters_.itlb_hits;
      code_lpage_ = lin >> 12;
      code_page_ = itlb.code;
      return insn;
    }
  }
  uint64_t paddr = 0;
  bool cacheable = false;
  uint8_t* host = host_for(lin, AccessKind::Execute, AccessOrigin::Instruction, &paddr, &cacheable, &sink);
  if (sink.faulted) return nullptr;
  const unsigned offset = lin & 0xFFF;
  const unsigned in_page = 0x1000 - offset;
  uint8_t bytes[16];
  const unsigned first = in_page < 15 ? in_page : 15;
  if (host) std::memcpy(bytes, host, first);
  else if (!bus_.copy_from_ram(paddr, bytes, first))
    for (unsigned k = 0; k < first; ++k) bytes[k] = static_cast<uint8_t>(bus_.read(paddr + k, 1));

  DecodedPage* page = host ? code_page(paddr >> 12) : nullptr;
  if (page && cacheable && itlb.tag == soft_tag(lin)) itlb.code = page;
  if (page && page->slot[offset]) {
    if (cacheable) {
      code_lpage_ = lin >> 12;
      code_page_ = page;
    }
    return page->slot[offset];
  }
  // Code without a host pointer (device memory, or the memory a VMM's virtual CPU sees) is read
  // anew at every execution, and decoded again only where the bytes differ from the last decode
  // at that address.
  UncachedDecode* memo = nullptr;
  if (!page) {
    memo = &uncached_decodes_[(paddr ^ (paddr >> 12)) % kUncachedDecodes];
    if (memo->paddr == paddr && memo->mode == mode_ && memo->size == first &&
        std::memcmp(memo->bytes, bytes, first) == 0) {
      scratch_insn_ = memo->insn;
      mark(scratch_insn_, paddr);
      return &scratch_insn_;
    }
  }
  ++counters_.decoded;
  Insn decoded;
  DecodeStatus status = decoder_->decode(mode_, bytes, first, decoded);
  if (status == DecodeStatus::NeedMore) {
    // The instruction continues on the next page: fetch it (which may fault there) and decode
    // from both; such an instruction is not cached (a write to either page must be seen).
    uint64_t paddr2 = 0;
    bool cacheable2 = false;
    uint8_t* host2 = host_for((lin + in_page) & lin_mask_, AccessKind::Execute, AccessOrigin::Instruction,
                              &paddr2, &cacheable2, &sink);
    if (sink.faulted) return nullptr;
    if (host2) std::memcpy(bytes + first, host2, 15 - first);
    else if (!bus_.copy_from_ram(paddr2, bytes + first, 15 - first))
      for (unsigned k = first; k < 15; ++k) bytes[k] = static_cast<uint8_t>(bus_.read(paddr2 + k - first, 1));
    status = decoder_->decode(mode_, bytes, 15, decoded);
    if (status == DecodeStatus::NeedMore) throw Fault::ud();  // longer than 15 bytes
    mark(decoded, paddr);
    scratch_insn_ = decoded;
    return &scratch_insn_;
  }
  if (memo) {
    memo->paddr = paddr;
    memo->mode = mode_;
    memo->size = static_cast<uint8_t>(first);
    std::memcpy(memo->bytes, bytes, first);
    memo->insn = decoded;
    mark(decoded, paddr);
    scratch_insn_ = decoded;
    return &scratch_insn_;
  }
  mark(decoded, paddr);
  Insn* slot = &page->store.emplace_back(decoded);
  page->slot[offset] = slot;
  if (cacheable) {
    code_lpage_ = lin >> 12;
    code_page_ = page;
  }
  return slot;
}

// ---- Segmentation ------------------------------------------------------------------------------

uint64_t Core::canonical_or_fault(uint64_t linear, SegReg s) const {
  // 57-bit linear addresses with CR4.LA57, else 48-bit (SDM vol. 1, 3.3.7.1).
  const unsigned shift = (state_.cr4 & CR4_LA57) ? 7 : 16;
  if (static_cast<uint64_t>(static_cast<int64_t>(linear << shift) >> shift) == linear) return linear;
  if (s == SS) throw Fault{SS_, true, 0, 0};
  throw Fault::gp(0);
}

void Core::check_segment(SegReg s, uint64_t offset, unsigned size, AccessKind kind) const {
  const Segment& sg = state_.seg[s];
  const Fault fault = s == SS ? Fault{SS_, true, 0, 0} : Fault::gp(0);
  const uint64_t last = offset + size - 1;
  if (mode_ == Mode::Real || mode_ == Mode::Virtual8086) {
    if (last > sg.limit) throw fault;
    return;
  }
  if (!sg.present()) throw fault;  // a null selector leaves the segment unusable
  if (sg.s()) {
    const bool code = sg.type() & 8;
    if (kind == AccessKind::Write && (code || !(sg.type() & 2))) throw fault;  // code or read-only
    if (kind == AccessKind::Read && code && !(sg.type() & 2)) throw fault;     // execute-only
    if (!code && (sg.type() & 4)) {  // expand-down: valid offsets are (limit, 64K or 4G - 1]
      const uint64_t upper = sg.db() ? 0xFFFFFFFFull : 0xFFFFull;
      if (offset <= sg.limit || last > upper) throw fault;
      return;
    }
  }
  if (last > sg.limit) throw fault;
}

uint64_t Core::long64_linear(SegReg s, uint64_t offset, unsigned size) const {
  const uint64_t last = offset + size - 1;
  if (lmsle_last_[s] != ~0ull && (last < offset || last > lmsle_last_[s])) {  // wraps, or past the limit
    if (s == SS) throw Fault{SS_, true, 0, 0};
    throw Fault::gp(0);
  }
  return canonical_or_fault(offset + seg_base_[s], s);
}

uint64_t Core::linear_address(SegReg s, uint64_t offset, unsigned size, AccessKind kind) const {
  if (mode_ == Mode::Long64) return long64_linear(s, offset, size);
  check_segment(s, offset, size, kind);
  return (seg_base_[s] + offset) & lin_mask_;
}

// ---- Translation and memory --------------------------------------------------------------------

uint8_t* Core::host_for(uint64_t lin, AccessKind kind, AccessOrigin origin, uint64_t* paddr, bool* cacheable,
                        FaultSink* sink) {
  const bool user = user_ && origin == AccessOrigin::Instruction;
  const unsigned k = kind_index(kind);
  SoftTlbEntry& e = tlb_[privilege_index(origin)][k][(lin >> 12) % kSoftTlbSize];
  if (e.tag == soft_tag(lin)) {
    ++(kind == AccessKind::Execute ? counters_.itlb_hits : counters_.dtlb_hits);
    *paddr = e.frame << 12 | (lin & 0xFFF);
    *cacheable = true;
    return e.host + (lin & 0xFFF);
  }
  Translation t;
  if (!state_.paging() && !(translator_ && translator_->translates_unpaged())) {
    t.ok = true;
    t.paddr = lin;
  } else {
    if (!translator_)
      throw std::logic_error("pgsim core: paging is enabled but no Translator is attached");
    ++(kind == AccessKind::Execute ? counters_.itlb_misses : counters_.dtlb_misses);
    materialize_flags();  // the page walk reads RFLAGS.AC only, but the Translator gets all of state_
    t = translator_->translate(state_, lin, kind, user, origin);
    if (!t.ok) {
      if (!sink) throw t.fault;
      sink->faulted = true;
      sink->fault = t.fault;
      return nullptr;
    }
  }
  const uint64_t frame = t.paddr >> 12;
  if (kind == AccessKind::Write && holds_decoded(frame)) invalidate_frame(frame);
  uint8_t* page = t.host_frame ? t.host_frame : bus_.host_frame(t.paddr & ~0xFFFull);
  *paddr = t.paddr;
  *cacheable = page && t.cacheable;
  // Accesses to a page with a data breakpoint all take the slow path, which checks them.
  if (debug_data_ && kind != AccessKind::Execute && watched_page(lin)) [[unlikely]]
    return page ? page + (t.paddr & 0xFFF) : nullptr;
  if (*cacheable) e = SoftTlbEntry{soft_tag(lin), page, frame};
  return page ? page + (t.paddr & 0xFFF) : nullptr;
}

uint64_t Core::translate(uint64_t linear, AccessKind kind, AccessOrigin origin) {
  uint64_t paddr = 0;
  bool cacheable = false;
  host_for(linear, kind, origin, &paddr, &cacheable);
  return paddr;
}

// Byte `k` of a `size`-byte access at `lin` that crosses a page, at `paddr`: the observer sees the
// access once per page, when its first byte there is reached.
void Core::observe_page_part(uint64_t lin, unsigned k, unsigned size, uint64_t paddr, bool write) {
  if (!data_observer_ || (k != 0 && ((lin + k) & lin_mask_ & 0xFFF) != 0)) return;
  const unsigned in_page = static_cast<unsigned>(0x1000 - (paddr & 0xFFF));
  observe_data(paddr, std::min(size - k, in_page), write);
}

uint64_t Core::read_slow(uint64_t lin, unsigned size, AccessOrigin origin, FaultSink* sink) {
  if (debug_data_) [[unlikely]] note_breakpoint_hits(lin, size, kDebugReadWrite);
  uint64_t paddr = 0;
  bool cacheable = false;
  if ((lin & 0xFFF) + size <= 0x1000) {
    const uint8_t* host = host_for(lin, AccessKind::Read, origin, &paddr, &cacheable, sink);
    if (!host) return sink && sink->faulted ? 0 : bus_.read(paddr, size);
    if (data_observer_) observe_data(paddr, size, false);
    return load_host(host, size);
  }
  uint64_t v = 0;  // split across two pages: byte by byte (little endian)
  for (unsigned k = 0; k < size; ++k) {
    const uint8_t* host = host_for((lin + k) & lin_mask_, AccessKind::Read, origin, &paddr, &cacheable);
    if (host) observe_page_part(lin, k, size, paddr, false);
    const uint64_t byte = host ? *host : bus_.read(paddr, 1) & 0xFF;
    v |= byte << (8 * k);
  }
  return v;
}

void Core::write_slow(uint64_t lin, unsigned size, uint64_t value, AccessOrigin origin, FaultSink* sink) {
  if (debug_data_) [[unlikely]] note_breakpoint_hits(lin, size, kDebugWrite);
  uint64_t paddr = 0;
  bool cacheable = false;
  if ((lin & 0xFFF) + size <= 0x1000) {
    uint8_t* host = host_for(lin, AccessKind::Write, origin, &paddr, &cacheable, sink);
    if (!host) {
      if (sink && sink->faulted) return;
      return bus_.write(paddr, size, value);
    }
    if (data_observer_) observe_data(paddr, size, true);
    store_host(host, size, value);
    return;
  }
  // Split across two pages: translate both first so that a fault leaves memory unchanged.
  host_for(lin, AccessKind::Write, origin, &paddr, &cacheable);
  host_for((lin + size - 1) & lin_mask_, AccessKind::Write, origin, &paddr, &cacheable);
  for (unsigned k = 0; k < size; ++k) {
    uint8_t* host = host_for((lin + k) & lin_mask_, AccessKind::Write, origin, &paddr, &cacheable);
    if (host) observe_page_part(lin, k, size, paddr, true);
    const uint8_t byte = static_cast<uint8_t>(value >> (8 * k));
    if (host) *host = byte;
    else bus_.write(paddr, 1, byte);
  }
}

bool Core::load_slow(uint64_t lin, unsigned size, uint64_t* value) {
  FaultSink sink;
  *value = read_slow(lin, size, AccessOrigin::Instruction, &sink);
  if (sink.faulted) raise(sink.fault);
  return !sink.faulted;
}

bool Core::store_slow(uint64_t lin, unsigned size, uint64_t value) {
  FaultSink sink;
  write_slow(lin, size, value, AccessOrigin::Instruction, &sink);
  if (sink.faulted) raise(sink.fault);
  return !sink.faulted;
}

bool Core::read_linear_if_mapped(uint64_t linear, unsigned size, AccessOrigin origin, uint64_t* value) {
  FaultSink sink;
  *value = read_slow(linear, size, origin, &sink);
  return !sink.faulted;
}

uint64_t Core::read_linear(uint64_t linear, unsigned size, AccessOrigin origin) {
  switch (size) {
    case 1: return read_lin<uint8_t>(linear, origin);
    case 2: return read_lin<uint16_t>(linear, origin);
    case 4: return read_lin<uint32_t>(linear, origin);
    default: return read_lin<uint64_t>(linear, origin);
  }
}

void Core::write_linear(uint64_t linear, unsigned size, uint64_t value, AccessOrigin origin) {
  switch (size) {
    case 1: write_lin<uint8_t>(linear, static_cast<uint8_t>(value), origin); break;
    case 2: write_lin<uint16_t>(linear, static_cast<uint16_t>(value), origin); break;
    case 4: write_lin<uint32_t>(linear, static_cast<uint32_t>(value), origin); break;
    default: write_lin<uint64_t>(linear, value, origin); break;
  }
}

void Core::push_sized(uint64_t value, unsigned size) {
  switch (size) {
    case 2: push<uint16_t>(static_cast<uint16_t>(value)); break;
    case 4: push<uint32_t>(static_cast<uint32_t>(value)); break;
    default: push<uint64_t>(value); break;
  }
}

uint64_t Core::pop_sized(unsigned size) {
  switch (size) {
    case 2: return pop<uint16_t>();
    case 4: return pop<uint32_t>();
    default: return pop<uint64_t>();
  }
}

}  // namespace pgsim::isa

// Blocks of linked instructions compiled to host code (x86-64, encoded with Zydis's encoder).
//
// A compiled block is the run loop's step (Core::run) unrolled over a block's linked instructions.
// The common forms (ADD, SUB, CMP, AND, OR, XOR, TEST, MOV, LEA, JZ, JNZ, JMP, CALL, RET, PUSH and
// POP runs) are carried out by the block itself: registers and the lazy-flag record in the Core,
// memory through the soft TLB as Core::read_hit and write_hit reach it, the data observer's
// filtered hits counted as Core::observe_data counts them. Every other instruction, and every case
// the inline code does not take (a soft-TLB miss, a page or line crossed, flags kept in RFLAGS, a
// non-canonical address), calls the instruction's handler from a call site of its own, with what
// the loop stores before it (the current instruction, next_rip(), RIP, the counts). After each
// instruction the block makes the loop's checks (no branch taken, the code page still the current
// one, nothing needing the boundary); the instruction that ends it finishes as the loop's slow
// path finishes it, and the block goes on to the one compiled where RIP then is, in the same
// page, when the loop would start that one next. Every register, flag, count and fault is the one
// the loop would leave; what goes away is the loop's dispatch and most handlers' work.
//
// Handlers may throw (Fault): the code arena carries DWARF call-frame information registered with
// the host's unwinder, so that an exception crosses a compiled block to run()'s catch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "isa/insn.h"

namespace pgsim::isa {

class Core;
class BlockBuilder;

// A compiled block's entry: runs the block from its first instruction while `page` is the core's
// code page and returns the last instruction it executed, whose step the run loop completes; or
// null when that step is complete too. A block whose last instruction leaves RIP in the same page
// goes on to the block compiled there, as the run loop would start it, without returning.
using CompiledEntry = const Insn* (*)(Core* core, const void* page);

struct CompiledBlock {
  CompiledEntry entry = nullptr;
  const uint8_t* body = nullptr;  // past the prologue: where a block going on to this one jumps
  uint64_t rip = 0;     // the address it was compiled for (a frame may be mapped at several)
  uint64_t length = 0;  // instructions in the block
};

class BlockCompiler {
 public:
  // Blocks shorter than this stay interpreted: the loop's block entry costs what they would save.
  static constexpr unsigned kMinLength = 2;
  static constexpr unsigned kMaxLength = 64;
  // A block head is compiled at its kHotExecutions-th execution as a block head.
  static constexpr uint16_t kHotExecutions = 16;

  static constexpr size_t kDefaultArenaBytes = 8u << 20;
  explicit BlockCompiler(Core& core, size_t arena_bytes = kDefaultArenaBytes);
  ~BlockCompiler();
  BlockCompiler(const BlockCompiler&) = delete;
  BlockCompiler& operator=(const BlockCompiler&) = delete;

  // Compiles the block that starts at `head` (64-bit mode; `rip` its address) and follows its
  // links; null when the block is shorter than kMinLength or does not fit in what is left of the
  // code arena (full(): the caller then forgets every compiled block and calls reset()).
  const CompiledBlock* compile(const Insn& head, uint64_t rip);
  // Frees every compiled block (none may be running, and no Insn may still point to one).
  void reset();

  // The last compile() found the arena full.
  bool full() const { return full_; }
  uint64_t blocks_compiled() const { return blocks_compiled_; }
  uint64_t resets() const { return resets_; }

 private:
  void map_arena();
  size_t arena_bytes_;
  // Where in a Core (and its decoded pages) the compiled code reads and writes: the compiler is
  // Core's friend.
  struct Layout {
    int32_t current_insn, next_rip, rip, retired, by_class, itlb_hits, dtlb_hits, code_page, attention,
        fault_raised, run_end, page_slots, gpr, lazy_op, lazy_a, lazy_b, lazy_r, lazy_fixed, soft_tlb, tlb_epoch,
        user, data_observer, filter_lines, filter_mask, filter_shift, filter_count, lmsle_last, seg_base;
  };
  friend class BlockBuilder;
  const Layout at_;
  uint8_t* arena_ = nullptr;  // read, write and execute: the shared exits, then the blocks
  const uint8_t* block_end_ = nullptr;  // the code that ends every block (reset())
  size_t used_ = 0;
  bool full_ = false;
  std::deque<CompiledBlock> records_;  // stable addresses: Insn::compiled points here
  std::vector<uint8_t> eh_frame_;  // the arena's call-frame information, as registered
  uint64_t blocks_compiled_ = 0, resets_ = 0;
};

}  // namespace pgsim::isa

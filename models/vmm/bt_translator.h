// The translator of vmm.strategy: binary_translation. It reads 64-bit guest kernel code at a
// guest RIP (through a reader the strategy gives it: the guest's own page tables), decodes it with
// pgsim's decoder (what the instruction is: sensitive, privileged, a branch) and with Zydis (its
// raw bytes: where the ModRM byte and the displacement lie), and emits x86 into the translation
// cache (TC), which the real CPU then executes. A translation unit holds up to
// `unit_instructions` guest instructions and ends at control flow:
//
//   innocuous instruction      IDENT: its bytes copied; a RIP-relative operand re-based to the
//                              guest address (as an absolute disp32, the kernel's addresses fit)
//   privileged or sensitive    a callout: its bytes copied and marked; the VMM emulates it on the
//                              virtual CPU instead (TcExit::Kind::Emulate)
//   MOV r, Sreg                inline where the CPU's profile lets the real CPU read the selector
//                              at CPL 3: copied, and for CS and SS (whose real RPL is 3, the
//                              guest's 0) followed by LEA r, [r - 3], which leaves the flags alone
//   CLI, STI, PUSHFQ, POPFQ,   with a vCPU page (VcpuPage below): inline sequences on the virtual
//   MOV r, CR0/CR4/CR8,        CPU's state there, GS-relative (see emit_inline in the .cpp);
//   SMSW/STR/SLDT, SGDT/SIDT   without one, callouts
//   an FS or GS override       with a vCPU page: a callout (GS is the page's, FS unchecked)
//   JMP rel32/rel8             JMP rel32 to an exit stub (TcExit::Kind::Jump), chained to the
//                              target's translation once it exists (its rel32 patched)
//   Jcc                        Jcc rel32 to a taken stub, then the fall-through stub: two exits
//   CALL rel                   PUSH imm32 of the guest return address (the guest never sees a TC
//                              address), then a JMP exit to the target
//   RET, JMP/CALL r/m          the VMM's guest-address -> TC lookup (TcExit::Kind::Return,
//                              Indirect); CALL pushes the guest return address
//   JRCXZ, LOOPcc              computed by the VMM, then the lookup (TcExit::Kind::Counted)
//   unit full                  a JMP exit to the next guest instruction
//
// Every instruction emitted is recorded with the guest RIP the guest is at when the real CPU is
// at it, so that an exception or interrupt in translated code is delivered at the guest's RIP.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include <Zydis/Zydis.h>

#include "isa/decoder.h"
#include "isa/insn.h"
#include "models/vmm/emulated_insns.h"

namespace pgsim::vmm {

// The largest translation cache vmm.bt.tc_bytes may ask for (the strategy's VMM memory holds it).
constexpr uint64_t kMaxTcBytes = 4ull << 20;

// A place in the TC where translated code leaves for the VMM (the hook marks it at decode).
struct TcExit {
  enum class Kind : uint8_t {
    Emulate,   // a privileged or sensitive instruction: emulated on the virtual CPU
    Jump,      // JMP rel32 to `guest_target`, not yet chained
    Return,    // RET [imm16]: pop the guest address, look it up
    Indirect,  // JMP or CALL through a register or memory: look the target up
    Counted,   // JRCXZ/JECXZ/LOOP/LOOPE/LOOPNE to `guest_target` or `guest_next`
  };
  Kind kind = Kind::Emulate;
  uint64_t guest_rip = 0;     // the guest instruction it stands for
  uint64_t guest_next = 0;    // the guest instruction after it
  uint64_t guest_target = 0;  // Jump, Counted: the direct target
  uint64_t tc_next = 0;       // Emulate: where the unit goes on (0: the unit ends here)
  uint64_t tc = 0;            // its own TC linear address
  const isa::Insn* insn = nullptr;  // Emulate, Return, Indirect, Counted: the guest instruction
};

// The vCPU page: the part of the virtual CPU's state that translated code reads and writes inline,
// in the VMM's memory. Translated code reaches it through GS (the real GS base is the page while
// the guest's kernel runs translated; guest instructions with an FS or GS override are callouts),
// at these offsets. The VMM writes every field at each return to translated code and reads kIf
// back at each entry; the inline sequences change only kIf and the scratch slots.
struct VcpuPage {
  static constexpr uint32_t kIf = 0x00;       // qword: the guest's RFLAGS.IF (0 or IF)
  static constexpr uint32_t kIopl = 0x08;     // qword: its RFLAGS.IOPL bits
  static constexpr uint32_t kCr0 = 0x10;      // qword: CR0 (MOV r, CR0; SMSW r)
  static constexpr uint32_t kCr4 = 0x18;      // qword: CR4
  static constexpr uint32_t kCr8 = 0x20;      // qword: CR8 (the task priority, as the guest reads it)
  static constexpr uint32_t kTr = 0x28;       // qword: TR's selector (STR r)
  static constexpr uint32_t kLdtr = 0x30;     // qword: LDTR's selector (SLDT r)
  static constexpr uint32_t kScratch = 0x38;   // qword: RAX while a sequence borrows it
  static constexpr uint32_t kScratch2 = 0x40;  // qword: RCX while a store sequence borrows it
  static constexpr uint32_t kGdtrLimit = 0x48, kGdtrBase = 0x50;  // qwords: GDTR (SGDT m)
  static constexpr uint32_t kIdtrLimit = 0x58, kIdtrBase = 0x60;  // qwords: IDTR (SIDT m)
  // Registers a sequence holds in the scratch slots at a TC address (BtTranslator::borrowed_at).
  static constexpr uint8_t kBorrowsRax = 1, kBorrowsRcx = 2;
};

// How the real CPU, running translated code at CPL 3, reads a segment selector (MOV r, Sreg), as
// the CPU's profile says.
enum class SregRead : uint8_t {
  Traps,        // it faults: the read is a callout
  RealRpl,      // it shows the real RPL (classic x86): CS and SS have 3 where the guest has 0
  GuestRpl,     // CS and SS read with RPL 0 (x86-pg's insensitive variant): the guest's value
};

struct TranslatorCounters {
  uint64_t units = 0;               // translation units made
  uint64_t guest_instructions = 0;  // guest instructions translated
  uint64_t ident = 0;               // of which copied (IDENT; RIP-relative ones re-based)
  uint64_t rebased = 0;             // of the IDENT ones, RIP-relative operands re-based
  uint64_t callouts = 0;            // of which privileged or sensitive: callouts into the VMM
  uint64_t inlined = 0;             // of which sensitive, translated inline (MOV r, Sreg; vCPU page sequences)
  EmulatedLog inlined_by_mnemonic;  // the inline ones by emulated_insn_name
  uint64_t branches = 0;            // of which control flow (chained exits or lookups)
  uint64_t flushes = 0;             // times the full TC was emptied
};

class BtTranslator {
 public:
  // Reads `size` bytes of guest code at guest linear `linear` into `out` with the guest's
  // execute permission; returns false when the guest cannot fetch them. `frame` receives the
  // physical frame of the first byte.
  using CodeReader = std::function<bool(uint64_t linear, uint8_t* out, unsigned size, uint64_t* frame)>;
  // `tc_pages` is the TC's host memory, one pointer per 4 KiB page, at TC linear `tc_linear` and
  // physical `tc_physical`. `written(paddr, size)` is told of every byte range the translator
  // writes there. With `vcpu_page` (the real GS base points at a VcpuPage while translated code
  // runs) CLI, STI, PUSHF, POPF and the reads of the guest's control state are inline sequences;
  // without, callouts.
  BtTranslator(std::vector<uint8_t*> tc_pages, uint64_t tc_linear, uint64_t tc_physical, unsigned unit_instructions,
               std::function<void(uint64_t paddr, uint64_t size)> written, SregRead sreg_read = SregRead::Traps,
               bool vcpu_page = false);

  // The TC address of the unit translated from `guest_rip`, or 0.
  uint64_t lookup(uint64_t guest_rip) const {
    const auto it = units_.find(guest_rip);
    return it == units_.end() ? 0 : it->second.tc;
  }
  // Translates the unit at `guest_rip` and returns its TC address; nullopt when the TC has no room
  // for another unit (the caller flushes it). Throws std::runtime_error naming the address when
  // the guest's code cannot be fetched or holds what this translator does not translate.
  std::optional<uint64_t> translate(uint64_t guest_rip, const CodeReader& read);
  // Empties the TC (every unit, exit and chain).
  void flush();

  bool in_tc(uint64_t linear) const { return linear >= tc_linear_ && linear - tc_linear_ < tc_bytes_; }
  bool is_tc_physical(uint64_t paddr) const { return paddr >= tc_physical_ && paddr - tc_physical_ < tc_bytes_; }
  // The guest RIP when the real CPU is at TC linear `tc` (an instruction start); throws when
  // `tc` is none.
  uint64_t guest_rip_at(uint64_t tc) const;
  // An interrupt must wait while the real CPU is at TC linear `tc`: inside an inline sequence
  // (the guest's instruction is half done) or on the guest instruction after an inline STI (its
  // interrupt shadow).
  bool holds_interrupts(uint64_t tc) const {
    const auto it = emitted_.find(tc);
    return it != emitted_.end() && it->second.holds_interrupts;
  }
  // The registers (VcpuPage::kBorrowsRax, kBorrowsRcx) an inline sequence holds in the vCPU
  // page's scratch slots while the real CPU is at TC linear `tc`: where its store to guest memory
  // may fault, the guest's values are there.
  uint8_t borrowed_at(uint64_t tc) const {
    const auto it = emitted_.find(tc);
    return it == emitted_.end() ? 0 : it->second.borrowed;
  }
  // The exit at TC physical address `paddr`, or nullptr.
  const TcExit* exit_at_physical(uint64_t paddr) const;
  const TcExit* exit_at(uint64_t tc) const { return exit_at_physical(tc - tc_linear_ + tc_physical_); }
  // Points the JMP exit at `tc` to `target` (a TC address): it is no longer an exit.
  void chain(uint64_t tc, uint64_t target);
  // Makes the IDENT instruction at `tc` a callout (adaptive retranslation of a store that keeps
  // faulting): from now on the VMM carries it out. False when it is not an IDENT instruction.
  bool make_callout(uint64_t tc);
  // The guest frames the TC's units were translated from.
  const std::map<uint64_t, std::vector<uint64_t>>& units_by_frame() const { return units_by_frame_; }
  // Drops the units translated from guest frame `frame` (their code was written): returns how many.
  // Exits chained into them are unchained first.
  uint64_t invalidate_frame(uint64_t frame);

  uint64_t bytes_used() const { return used_; }
  const TranslatorCounters& counters() const { return counters_; }
  uint64_t tc_linear() const { return tc_linear_; }
  uint64_t tc_physical() const { return tc_physical_; }

 private:
  struct Unit {
    uint64_t tc = 0, tc_end = 0;
    std::vector<uint64_t> frames;
  };
  struct Emitted {
    uint64_t guest_rip;
    bool ident;
    bool holds_interrupts = false;
    uint8_t borrowed = 0;  // VcpuPage::kBorrowsRax | kBorrowsRcx
  };
  // Emits the store of the vCPU page's `low` field (16 bits) and, when `high` is not 0, its
  // `high` field (64 bits) after it, to the guest's memory operand of `insn` (SMSW, STR, SLDT,
  // SGDT, SIDT with a memory destination).
  void emit_inline_store(const isa::Insn& insn, const ZydisDecodedInstruction& zi, const uint8_t* bytes,
                         uint64_t guest_rip, uint64_t guest_next, uint32_t low, uint32_t high);
  // Emits the inline sequence for `insn` (its guest instruction at `guest_rip`, the next at
  // `guest_next`) when it has one here; false when it has none.
  bool emit_inline(const isa::Insn& insn, const ZydisDecodedInstruction& zi, const uint8_t* bytes,
                   uint64_t guest_rip, uint64_t guest_next);
  // Emits one instruction of an inline sequence: the guest is at `guest_rip` there; all but a
  // sequence's first hold interrupts.
  uint64_t emit_step(const uint8_t* bytes, unsigned size, uint64_t guest_rip, bool first, uint8_t borrowed = 0);
  void put(uint64_t offset, const uint8_t* bytes, unsigned size);  // into the TC at `offset`
  void get(uint64_t offset, uint8_t* bytes, unsigned size) const;
  uint64_t emit(const uint8_t* bytes, unsigned size);  // returns the TC address of the first byte
  uint64_t emit_exit(TcExit exit, const uint8_t* bytes, unsigned size, uint64_t guest_rip_there);
  uint64_t emit_jump_exit(uint64_t guest_target, uint64_t guest_rip_there);
  void patch_rel32(uint64_t at, uint64_t next, uint64_t target);
  uint64_t physical(uint64_t tc) const { return tc - tc_linear_ + tc_physical_; }
  const isa::Insn& keep(const isa::Insn& insn);

  std::vector<uint8_t*> pages_;
  uint64_t tc_linear_, tc_physical_, tc_bytes_;
  unsigned unit_instructions_;
  SregRead sreg_read_;
  bool vcpu_page_;
  unsigned max_emitted_per_insn_;  // the most one guest instruction becomes here
  std::function<void(uint64_t, uint64_t)> written_;
  isa::Decoder decoder_;
  ZydisDecoder zydis_;
  uint64_t used_ = 0;
  std::unordered_map<uint64_t, Unit> units_;                 // by guest RIP
  std::map<uint64_t, Emitted> emitted_;                      // by TC address: every instruction emitted
  std::unordered_map<uint64_t, TcExit> exits_;               // by TC physical address
  std::unordered_map<uint64_t, TcExit> chained_exits_;       // JMP exits chained, by TC physical address
  std::map<uint64_t, std::vector<uint64_t>> units_by_frame_; // guest frame -> guest RIPs of units
  std::multimap<uint64_t, uint64_t> chained_into_;           // unit TC address -> exits chained to it
  std::vector<std::unique_ptr<isa::Insn>> insns_;            // the guest instructions exits refer to
  TranslatorCounters counters_;
};

}  // namespace pgsim::vmm

// Shared pieces of the system-instruction semantics (isa/system/*.cpp): privilege and profile
// checks, and the all-or-nothing stack frame writer of far transfers and event delivery.
#pragma once
#include <cstdint>

#include "isa/core.h"
#include "isa/dispatch.h"
#include "isa/system/profile.h"
#include "isa/system/system_config.h"

namespace pgsim::isa::system {

// Privileged instructions: #GP(0) unless CPL = 0 (SDM vol. 3, 5.9).
inline void require_cpl0(const Core& core) {
  if (core.state().cpl() != 0) throw Fault::gp(0);
}

// Protected-mode-only instructions raise #UD in real and virtual-8086 mode.
inline void require_protected(const Core& core) {
  const Mode m = core.state().mode();
  if (m == Mode::Real || m == Mode::Virtual8086) throw Fault::ud();
}

// I/O permission (SDM vol. 1, 19.5): at CPL > IOPL or in virtual-8086 mode every bit of the TSS
// I/O bitmap covering the ports must be clear, else #GP(0). IN/OUT/INS/OUTS check it; so does VMX
// non-root operation, where this #GP has priority over an I/O VM exit (SDM vol. 3, 26.1.1).
void check_io_permission(Core& core, uint16_t port, unsigned size);

// The profile's behaviour for the sensitive instruction `insn` (registered with
// sensitive(SensitiveInsn) in the Dispatch table, which the decoder copied into Insn::sensitive) at
// the current CPL: Classic at CPL 0 (and in real mode), or the insensitive variant; or it raises
// the fault the profile asks for (Core::raise: a trap-and-emulate VMM takes every such one), and
// the handler returns.
enum class ProfileRule : uint8_t { Classic, Insensitive, Raised };
ProfileRule apply_profile(Core& core, const Insn& insn);

// Pushes onto a stack that is not (yet) the current one: every write happens before any register
// changes, so a fault leaves the machine as it was.
struct FrameWriter {
  Core& core;
  uint64_t base;      // SS base (0 in 64-bit mode)
  uint64_t sp;        // stack pointer, moving down
  uint64_t sp_mask;   // 0xFFFF, 0xFFFFFFFF or all ones
  uint32_t limit;     // SS limit (unchecked in 64-bit mode)
  bool expand_down;
  bool check_limit;
  uint32_t ss_error;  // the #SS error code on a limit violation
  AccessOrigin origin;

  void push(uint64_t value, unsigned size);
};

// A writer for the stack `ss`:`sp` used at privilege `new_cpl` (64-bit mode: flat, unchecked).
FrameWriter frame_writer(Core& core, const Segment& ss, uint64_t sp, unsigned new_cpl, uint32_t ss_error,
                         bool flat64);
// Reads `size` bytes at `offset` of the current stack (SS:RSP + offset), for far returns and IRET.
uint64_t stack_read(Core& core, uint64_t offset, unsigned size);
// Stores a selector or machine-status word into operand 0: a register receives it at the
// operand size (zero-extended), memory 16 bits (SDM vol. 2: SLDT, STR, SMSW, MOV from Sreg).
void store_selector(Core& core, const Insn& i, uint64_t value);
// Sets RSP/ESP/SP to `sp` as the width of stack `ss` (or 64-bit mode) selects.
void set_stack_pointer(Core& core, const Segment& ss, uint64_t sp, bool flat64);

void register_control(Dispatch& d);    // control.cpp: CRn, DRn, descriptor tables, MSRs, CPUID, TSC, HLT, caches
void register_flags_io(Dispatch& d);   // flags_io.cpp: PUSHF, POPF, CLI, STI, IN, OUT, INS, OUTS
void register_transfer(Dispatch& d);   // transfer.cpp: far transfers, INT, IRET, SYSCALL..., segment registers
void register_protection(Dispatch& d); // protection.cpp: CLAC, STAC, RDPKRU, WRPKRU

}  // namespace pgsim::isa::system

// The probe machine: generates the machine states the classifier compares and executes one
// instruction in each on a fresh Core with a flat memory bus, recording everything it did.
//
// Every state holds the same program: code, a data area and a stack in the program region, and
// the system tables (GDT, IDT, TSS, LDT) in the table region. States differ along these axes only:
// - CPL (0; 1 in prot32; 3). The guest-kernel code and stack descriptors (selectors 0x08, 0x10)
//   carry DPL = CPL, as a VMM that runs a kernel deprivileged gives them, so CS and SS hold the
//   same descriptor index with RPL = CPL. The monitor's own segments (0x50, 0x58), the IDT
//   gates, the call gate and the TSS are the same in every state.
// - the interrupt flag: the program's own (virtual) IF, which is RFLAGS.IF at CPL 0 and is kept
//   in RFLAGS.VIF above, and the real RFLAGS.IF, which above CPL 0 may differ from it;
// - CR0.TS (the machine status word as a VMM's lazy FPU switch leaves it);
// - placement: the program and data at another physical address (prot32: behind other segment
//   bases; long64: behind another page mapping), or the system tables at other bases with the
//   TSS and LDT in other GDT slots;
// - the time-stamp counter.
// IOPL is 0 in every state: a trap-and-emulate VMM keeps it below the CPL it runs a guest at.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "isa/cpu_state.h"
#include "isa/system/cpu_features.h"
#include "isa/system/profile.h"

namespace pgsim::isa::classify {

enum class ProbeMode : uint8_t { Prot32, Long64 };
const char* probe_mode_name(ProbeMode mode);  // "prot32", "long64"

enum class Placement : uint8_t {
  Reference,     // program at physical 0x200000, tables at 0x20000
  ProgramMoved,  // program and data at physical 0x600000
  TablesMoved,   // GDT/IDT/TSS/LDT at 0x120000, TSS and LDT descriptors in other GDT slots
};

constexpr uint64_t kTscA = 0x100000, kTscB = 0x7654321000;

struct ProbeSetup {
  unsigned cpl = 0;
  bool virtual_if = true;      // the program's interrupt flag (IF at CPL 0, VIF above)
  bool real_if = true;         // RFLAGS.IF
  bool task_switched = false;  // CR0.TS
  Placement placement = Placement::Reference;
  uint64_t tsc = kTscA;

  std::string describe() const;  // e.g. "CPL 3, IF 1 (virtual 0), CR0.TS 1, tables moved"
};

// Operand values: every general register except RSP holds `gpr`; the data area and the stack
// hold `slots` repeated, each slot as wide as the stack (4 bytes in prot32, 8 in long64).
struct OperandValues {
  std::string name;
  uint64_t gpr = 0;
  std::vector<uint64_t> slots;
};

// Where things are (offsets in the program region are the same in every state).
struct ProbeLayout {
  static constexpr uint64_t kProgram = 0x200000;        // program region: linear (long64), offset (prot32)
  static constexpr uint64_t kCode = kProgram + 0x1000;  // the instruction under test
  static constexpr uint64_t kLanding = kProgram + 0x2000;  // far-branch and return targets
  static constexpr uint64_t kHandler = kProgram + 0x2800;  // IDT gates, call gate, SYSCALL/SYSENTER
  static constexpr uint64_t kData = kProgram + 0x4000;     // memory operands
  static constexpr uint64_t kStack = kProgram + 0x8000;    // RSP
  static constexpr uint64_t kLandingStack = kProgram + 0x9000;
  static constexpr uint64_t kRing1Stack = kProgram + 0xB000;
  static constexpr uint64_t kRing0Stack = kProgram + 0xC000;
  // Selectors (index | TI; the RPL is added where used).
  static constexpr uint16_t kGuestCode = 0x08, kGuestData = 0x10, kUserCode = 0x18, kUserData = 0x20,
                            kTss = 0x28, kConforming = 0x38, kCallGate = 0x40, kMonitorCode = 0x50,
                            kMonitorData = 0x58, kLdt = 0x60, kTssMoved = 0x70, kLdtMoved = 0x80;
};

// A memory byte written, by canonical address: the physical address it would have in the
// Reference placement (so that results of moved states compare with the reference).
using MemoryWrites = std::map<uint64_t, uint8_t>;

struct PortWrite {
  uint16_t port;
  unsigned size;
  uint32_t value;
  bool operator==(const PortWrite&) const = default;
};

struct Outcome {
  // An exception was raised, or the instruction entered CPL 0 from an outer ring: on x86 that
  // happens only through an entry the most privileged software set up (IDT or call gate,
  // SYSCALL/SYSENTER MSRs), which is Popek and Goldberg's trap sequence (a supervisor call).
  bool trapped = false;
  bool supervisor_call = false;  // the second kind; `vector` is the INT vector, if any
  uint8_t vector = 0;
  uint32_t error_code = 0;
  std::string problem;    // the core could not execute it (shutdown, internal error)
  CpuState before, after;
  MemoryWrites writes;
  std::vector<PortWrite> port_writes;
  std::vector<std::string> unimplemented;  // mnemonics the core reported without semantics
};

// Vectors that report memory faults rather than privilege (#PF, #SS, #AC).
bool is_memory_fault(uint8_t vector);
// "#GP(0x0)", "#UD", ...
std::string vector_name(uint8_t vector, uint32_t error_code);
// What trapped: "#GP(0x0)", "a supervisor call (INT 0xc0)", "a supervisor call (SYSCALL)"...
std::string trap_name(const Outcome& outcome);

class ProbeMachine {
 public:
  ProbeMachine(ProbeMode mode, Profile profile);
  ~ProbeMachine();

  ProbeMode mode() const { return mode_; }
  const Profile& profile() const { return profile_; }
  // The CPLs below 0 compared with CPL 0: {3}, or {1, 3} in prot32.
  std::vector<unsigned> user_cpls() const;
  // The operand values every form is tried with.
  const std::vector<OperandValues>& operand_values() const { return values_; }

  // Executes `code` (one instruction) in the state `setup` with operands `values`.
  Outcome execute(const std::vector<uint8_t>& code, const ProbeSetup& setup, const OperandValues& values);

 private:
  struct Image;
  const Image& image(const ProbeSetup& setup, const OperandValues& values);
  CpuState initial_state(const ProbeSetup& setup, const OperandValues& values) const;

  ProbeMode mode_;
  Profile profile_;
  CpuModel cpu_;  // the profile's CPU (its feature switches over the default Intel CPU)
  std::vector<OperandValues> values_;
  std::map<std::string, std::unique_ptr<Image>> images_;
};

}  // namespace pgsim::isa::classify

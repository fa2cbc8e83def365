// Leak detection for a guest running deprivileged: the sensitive instructions that do not trap
// there (the CPU profile says Classic or Insensitive for them at CPL > 0) are marked when decoded,
// and the core hands each execution of one to the detector. Before it runs on the real CPU, the
// detector evaluates it on the virtual CPU in a write sandbox; after it ran, it compares the two
// outcomes. A difference the guest can see (registers, flags, RIP, memory, a fault the real CPU
// did not raise) is a behavior leak; a change the guest intended and lost (IF, IOPL, CS, SS, CPL)
// is a control leak. Leaks are counted by instruction and kind (LeakLog); with vmm.leak_policy:
// conceal the guest is handed the virtual CPU's outcome instead of the real one.
//
// An instruction that traps after all (a fault the real CPU raises) never reaches
// after_instruction(): the VMM handles it, and nothing leaked (cancel()).
#pragma once
#include <cstdint>
#include <functional>
#include <map>

#include "isa/core.h"
#include "models/vmm/leaks.h"
#include "models/vmm/shadow_paging.h"
#include "models/vmm/virtual_cpu.h"

namespace pgsim::vmm {

class LeakDetector {
 public:
  // `project` hands a concealed outcome to the real CPU (the VMM's real-state projection).
  LeakDetector(VirtualCpu& vcpu, const ShadowPager& shadow, LeakLog& log, bool conceal,
               std::function<void(isa::Core&)> project);

  // The instruction must be watched: it is sensitive and does not trap at CPL > 0 on this profile.
  bool watches(const isa::Insn& insn) const;
  // Before the real CPU runs a watched instruction: its outcome on the virtual CPU.
  void before(isa::Core& real, const isa::Insn& insn);
  // After the real CPU ran it without a fault: the comparison.
  void after(isa::Core& real);
  // The watched instruction trapped: nothing to compare.
  void cancel() { active_ = false; }
  // Virtual-CPU instructions that were evaluations only (not the guest's execution).
  uint64_t evaluations() const { return evaluations_; }

 private:
  VirtualCpu& vcpu_;
  const ShadowPager& shadow_;
  LeakLog& log_;
  bool conceal_;
  std::function<void(isa::Core&)> project_;

  bool active_ = false;
  isa::SensitiveInsn insn_{};
  uint64_t rip_ = 0;
  isa::CpuState before_, after_;         // the virtual CPU's state before and after
  bool faulted_ = false;                 // the virtual CPU raised an exception instead
  std::map<uint64_t, uint8_t> writes_;   // the virtual CPU's memory writes
  uint64_t evaluations_ = 0;
};

}  // namespace pgsim::vmm

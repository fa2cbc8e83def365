// Popek and Goldberg's classes derived by execution (DESIGN.md section 2): every implemented form
// runs in pairs of probe states (isa/classify/probe.h) and its classes follow from what differed.
//
// - privileged: wherever CPL 0 completes it, the otherwise identical state at CPL 1/3 traps (an
//   exception that is not a memory fault (#PF, #SS, #AC), or a supervisor call: an entry into
//   CPL 0, which x86 allows only through entries the most privileged software set up), there
//   is at least one such pair, and in no pair does CPL 1/3 complete what CPL 0 refuses;
// - control-sensitive: some execution that does not trap changes resource or mode state (CR0-4,
//   CR8, EFER, GDTR, IDTR, LDTR, TR, IF, IOPL, CPL, debug registers, system MSRs, the TSC, the
//   halt state, I/O ports);
// - mode-sensitive: in a CPL 0 / CPL n pair the CPL n execution does not trap and its result
//   (registers, arithmetic flags, the program's IF, IOPL, data segment selectors, memory and
//   ports written) differs, or CPL 0 traps where CPL n does not; or, at CPL n, the result
//   depends on the real IF or CR0.TS, which the monitor keeps for itself;
// - location-sensitive: the result differs when the program or the system tables sit elsewhere;
// - timing: the result differs with the time-stamp counter alone (its own class: not sensitive);
// - user-sensitive: control- or location-sensitive at CPL > 0, or dependent there on the real IF
//   or CR0.TS.
// Theorem 1 is checked the way its proof uses it: every state pair in which a form is sensitive
// must have the deprivileged execution trap. A form violates it when it is not privileged and a
// deprivileged execution completes while differing from CPL 0 (mode), changing real resources or
// depending on location (FormClasses::escapes_deprivileged). Theorem 3 likewise, with the
// user-sensitive executions.
#pragma once
#include <string>
#include <vector>

#include "isa/classify/forms.h"
#include "isa/classify/probe.h"
#include "isa/system/profile.h"

namespace pgsim::isa::classify {

struct FormClasses {
  std::string mnemonic, form;
  bool privileged = false;
  bool control_sensitive = false;
  bool mode_sensitive = false;
  bool location_sensitive = false;
  bool timing = false;
  bool user_sensitive = false;
  // One line per class that holds (and for privileged, why not when it does not).
  std::vector<std::string> evidence;
  std::string problem;  // what the core could not do for it, if anything

  bool sensitive() const { return control_sensitive || mode_sensitive || location_sensitive; }
  // Sensitive in a way a trap-and-emulate monitor would miss: some deprivileged execution
  // completes and differs from the CPL 0 one, changes real resources or depends on location.
  // (Control sensitivity seen only at CPL 0, such as LGDT's, needs no trap at CPL 0: the monitor
  // runs the guest above it.)
  bool escapes_deprivileged() const { return mode_sensitive || user_sensitive; }
};

struct Verdict {
  bool holds = true;
  std::vector<std::string> violations;  // mnemonics, each once, sorted
};

struct Classification {
  std::string profile, profile_source;
  ProbeMode mode = ProbeMode::Prot32;
  std::vector<FormClasses> forms;
  Verdict theorem1;  // sensitive ⊆ privileged, checked pair by pair: escapes_deprivileged() ⊆ privileged
  Verdict theorem3;  // user-sensitive ⊆ privileged
  unsigned executions = 0;
  // Integer and system mnemonics Zydis decodes but the core has no semantics for (not classified).
  std::vector<std::string> without_semantics;
};

Classification classify_instructions(const Profile& profile, ProbeMode mode);

}  // namespace pgsim::isa::classify

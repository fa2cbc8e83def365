// CPU profiles: what each sensitive instruction does outside ring 0 (CPL > 0). A profile is a
// YAML file under isa/profiles/ (or anywhere, loaded by path); the instruction semantics consult
// it, so a new profile changes behaviour without touching code.
#pragma once
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace pgsim::isa {

// The instructions whose behaviour at CPL > 0 a profile sets: the sensitive instructions of
// classic x86 that do not trap there (Robin & Irvine, USENIX Security 2000).
enum class SensitiveInsn : uint8_t {
  Popf,         // POPF/POPFD/POPFQ
  Pushf,        // PUSHF/PUSHFD/PUSHFQ
  Sgdt,         // SGDT
  Sidt,         // SIDT
  Sldt,         // SLDT
  Smsw,         // SMSW
  Str,          // STR
  Lar,          // LAR
  Lsl,          // LSL
  Verr,         // VERR
  Verw,         // VERW
  MovFromSreg,  // MOV r/m, Sreg
  PushSreg,     // PUSH CS/SS/DS/ES/FS/GS
  LoadSreg,     // MOV Sreg, r/m and POP Sreg
  FarCall,      // CALL far (direct, indirect, through a call gate)
  FarJmp,       // JMP far
  FarRet,       // RET far
  IntN,         // INT n
  Iret,         // IRET/IRETD/IRETQ
  kCount,
};
constexpr unsigned kNumSensitiveInsns = static_cast<unsigned>(SensitiveInsn::kCount);

// What a sensitive instruction does at CPL > 0.
enum class Behavior : uint8_t {
  Classic,      // as the Intel SDM describes it (the real x86)
  Gp,           // raises #GP(0) (INT n: #GP(vector*8+2), the gate-privilege error code)
  Ud,           // raises #UD
  Insensitive,  // a variant that hides privileged state from CPL > 0 (defined below)
};
// The insensitive variants, for the instructions that have one:
// - POPF: when CPL > IOPL the image's IF goes to RFLAGS.VIF (IF is unchanged, as a virtual
//   interrupt flag the most privileged software reads); an IOPL change raises #GP(0).
// - PUSHF: when CPL > IOPL the pushed image carries RFLAGS.VIF in the IF position.
// - MOV from Sreg, PUSH Sreg: CS and SS read with their RPL field cleared, so the CPL is not
//   visible; the other segment registers are read as on classic x86.

struct ProfileRule {
  Behavior behavior = Behavior::Classic;
  std::string reason;  // one line: why the profile chooses this behaviour
};

struct Profile {
  std::string name;         // e.g. "x86-pg"
  std::string description;  // one paragraph
  std::string source;       // the file it was loaded from ("" for the built-in default)
  std::array<ProfileRule, kNumSensitiveInsns> rules{};
  // Features the CPU of this profile has or lacks ("+umip"), applied before cpu.features
  // (isa/system/cpu_features.h; a base profile's first).
  std::vector<std::string> features;

  // Behaviour at CPL > 0. A default-constructed profile is classic x86 throughout.
  Behavior at_cpl_above_0(SensitiveInsn insn) const { return rules[static_cast<unsigned>(insn)].behavior; }
};

// The YAML key of an instruction ("popf", "mov_from_sreg", ...) and of a behaviour ("gp", ...).
const char* sensitive_insn_key(SensitiveInsn insn);
const char* behavior_key(Behavior behavior);
// True if the semantics define an insensitive variant of `insn`.
bool has_insensitive_variant(SensitiveInsn insn);

// A profile file could not be read or is invalid; what() names the file, the line and the key.
struct ProfileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Loads a profile by name (a file <name>.yaml in the profile directory: $PGSIM_PROFILE_DIR, else
// isa/profiles/ of the source tree) or by path (anything containing '/' or ending in .yaml).
// Throws ProfileError.
Profile load_profile(const std::string& name_or_path);

// The Levenshtein distance of two keys, for "did you mean" suggestions.
size_t edit_distance(const std::string& a, const std::string& b);

struct CpuModel;
// Applies the profile's feature switches to `model` (checked when the profile was loaded).
void apply_profile_features(const Profile& profile, CpuModel& model);

// The directory searched for profiles by name.
std::string profile_directory();

}  // namespace pgsim::isa

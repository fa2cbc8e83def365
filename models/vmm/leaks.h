// The equivalence and resource-control evidence of a run: sensitive instructions that executed
// on the real state without trapping while the guest was deprivileged and gave a result that
// differs from the virtual CPU's (leaks), and real privileged state the guest changed
// (resource-control violations).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "isa/system/profile.h"

namespace pgsim::vmm {

// Behaviour: the guest observed real state (PUSHF's IF, SGDT's base, CS's RPL). Control: a change
// the guest intended was lost (POPF's IF, IRET's IOPL).
enum class LeakKind : uint8_t { Behavior, Control };
const char* leak_kind_name(LeakKind kind);

class LeakLog {
 public:
  static constexpr unsigned kFirstAddresses = 4;  // guest RIPs kept per instruction

  struct PerInstruction {
    uint64_t count = 0;
    uint64_t behavior = 0, control = 0;
    std::vector<uint64_t> first_addresses;  // at most kFirstAddresses
  };

  void record(isa::SensitiveInsn insn, LeakKind kind, uint64_t rip) {
    PerInstruction& p = by_insn_[static_cast<unsigned>(insn)];
    ++p.count;
    ++(kind == LeakKind::Behavior ? p.behavior : p.control);
    if (p.first_addresses.size() < kFirstAddresses) p.first_addresses.push_back(rip);
    ++total_;
  }
  const uint64_t& total() const { return total_; }
  const PerInstruction& of(isa::SensitiveInsn insn) const { return by_insn_[static_cast<unsigned>(insn)]; }
  // "popf 3 (control) at 0x1234 0x1240; pushf 1 (behavior) at 0x2000", or "" without leaks.
  std::string summary() const;

 private:
  std::array<PerInstruction, isa::kNumSensitiveInsns> by_insn_{};
  uint64_t total_ = 0;
};

}  // namespace pgsim::vmm

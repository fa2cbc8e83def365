#include "models/vmm/leaks.h"

#include <cstdio>

namespace pgsim::vmm {

const char* leak_kind_name(LeakKind kind) { return kind == LeakKind::Behavior ? "behavior" : "control"; }

std::string LeakLog::summary() const {
  std::string out;
  for (unsigned k = 0; k < isa::kNumSensitiveInsns; ++k) {
    const PerInstruction& p = by_insn_[k];
    if (p.count == 0) continue;
    if (!out.empty()) out += "; ";
    out += isa::sensitive_insn_key(static_cast<isa::SensitiveInsn>(k));
    out += " " + std::to_string(p.count);
    if (p.behavior) out += " behavior " + std::to_string(p.behavior);
    if (p.control) out += " control " + std::to_string(p.control);
    out += " at";
    for (uint64_t rip : p.first_addresses) {
      char buf[24];
      std::snprintf(buf, sizeof buf, " %#llx", static_cast<unsigned long long>(rip));
      out += buf;
    }
  }
  return out;
}

}  // namespace pgsim::vmm

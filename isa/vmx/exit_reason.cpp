// Exit-reason names and the instruction-information encoder (Intel SDM vol. 3, appendix C and
// 28.2.5).
#include "isa/vmx/exit_reason.h"

namespace pgsim::isa::vmx {
namespace {

constexpr ExitReasonInfo kReasons[] = {
#define PGSIM_X(name, number, stat, text) {ExitReason::name, stat, text},
    PGSIM_VMX_EXIT_REASONS(PGSIM_X)
#undef PGSIM_X
};
constexpr unsigned kNumReasons = sizeof(kReasons) / sizeof(kReasons[0]);

const ExitReasonInfo* find(unsigned number) {
  for (const ExitReasonInfo& r : kReasons) {
    if (static_cast<unsigned>(r.reason) == number) return &r;
  }
  return nullptr;
}

}  // namespace

const char* exit_reason_name(unsigned number) {
  const ExitReasonInfo* r = find(number);
  return r ? r->name : nullptr;
}

const char* exit_reason_description(unsigned number) {
  const ExitReasonInfo* r = find(number);
  return r ? r->description : nullptr;
}

const ExitReasonInfo* exit_reasons(unsigned* count) {
  *count = kNumReasons;
  return kReasons;
}

uint32_t memory_operand_info(const MemoryOperandInfo& m) {
  const uint32_t address_size = m.address_size == 2 ? 0 : m.address_size == 4 ? 1 : 2;
  uint32_t info = (m.scale_log2 & 3) | (address_size << 7) | ((m.segment & 7) << 15);
  info |= m.index < 16 ? (m.index << 18) : (1u << 22);
  info |= m.base < 16 ? (m.base << 23) : (1u << 27);
  return info;
}

}  // namespace pgsim::isa::vmx

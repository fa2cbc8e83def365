// A small guest world for the trap_emulate tests: the GDT, IDT, TSS and stacks of
// tests/isa_system/system_harness.h (IA-32e mode at CPL 0, or 32-bit protected mode at CPL 0 with
// paging off), 4-level page tables of its own (2 MiB pages over 32 MiB of guest RAM,
// supervisor-only but for one user region), a real CPU that walks whatever page tables CR3 names
// (the VMM's shadows), a CPU profile, and 8 MiB of VMM memory above guest RAM.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "isa/system/system_config.h"
#include "models/vmm/trap_emulate.h"
#include "models/vmm/trap_router.h"
#include "tests/isa_system/system_harness.h"
#include "tests/vmm/walking_translator.h"

namespace pgsim::test {

constexpr uint64_t kGuestRam = 32ull << 20, kVmmMemory = 8ull << 20;
constexpr uint64_t kPml4 = 0x100000, kPdpt = 0x101000, kPd = 0x102000;
constexpr uint64_t kUserRegion = 16ull << 20;  // 2 MiB that guest user code may use
constexpr uint64_t kPteP = 1, kPteRw = 2, kPteUs = 4, kPtePs = 0x80;

// Guest code: a 32-bit immediate's bytes, and pieces of code joined.
inline std::vector<uint8_t> imm32(uint32_t n) {
  return {uint8_t(n), uint8_t(n >> 8), uint8_t(n >> 16), uint8_t(n >> 24)};
}
inline std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// An interrupt controller with one request pending, for vector 0x30.
class OneInterrupt : public isa::InterruptSource {
 public:
  bool interrupt_pending() override { return pending; }
  uint8_t acknowledge_interrupt() override {
    pending = false;
    return 0x30;
  }
  bool pending = true;
};

struct DeprivilegedMachine : SystemMachine {
  WalkingTranslator walker{ram};
  isa::SystemConfig system;
  std::unique_ptr<isa::SystemConfigBinding> binding;
  std::unique_ptr<vmm::TrapRouter> router;

  explicit DeprivilegedMachine(const char* profile, bool ia32e = true) : SystemMachine(ia32e) {
    core.set_translator(&walker);
    ram.put<uint64_t>(kPml4, kPdpt | kPteP | kPteRw | kPteUs);
    ram.put<uint64_t>(kPdpt, kPd | kPteP | kPteRw | kPteUs);
    for (uint64_t k = 0; k < kGuestRam >> 21; ++k) {
      const uint64_t user = (k << 21) == kUserRegion ? kPteUs : 0;
      ram.put<uint64_t>(kPd + k * 8, (k << 21) | kPteP | kPteRw | kPtePs | user);
    }
    if (ia32e) state().cr3 = kPml4;
    system.profile = isa::load_profile(profile);
    binding = std::make_unique<isa::SystemConfigBinding>(core, system);
  }

  // Loads the guest's code at `address` (RIP) and puts the VMM (trap_emulate, or `Strategy`)
  // under it.
  template <class Strategy = vmm::TrapEmulateVmm>
  Strategy& start(const std::vector<uint8_t>& code, vmm::VmmCosts costs = {}, uint64_t address = kCode,
                  isa::InterruptSource* interrupts = nullptr, const vmm::VmmOptions& options = {}) {
    load_code(address, code);
    vmm::Machine m{core, interrupts};
    m.vmm_memory_base = kGuestRam;
    m.vmm_memory_size = kVmmMemory;
    router = std::make_unique<vmm::TrapRouter>(std::make_unique<Strategy>(m, costs, options));
    router->attach(core);
    return static_cast<Strategy&>(router->vmm());
  }
  uint64_t traps(vmm::TrapCause cause) const { return router->traps(cause); }
};

}  // namespace pgsim::test

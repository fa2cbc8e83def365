// The paravirt strategy (models/vmm/paravirt.h) serving the real guest kernel on the SystemC-free
// stand-in PC of tests/vmm: the kernel's workloads print their native output, every privileged
// operation of the kernel is a hypercall (no trap), and exact counts follow from iteration counts
// as deltas between two runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <sstream>

#include "isa/system/system_config.h"
#include "models/vmm/paravirt.h"
#include "models/vmm/trap_emulate.h"
#include "models/vmm/trap_router.h"
#include "tests/vmm/mini_pc.h"
#include "tests/vmm/walking_translator.h"

namespace pgsim {
namespace {

constexpr uint64_t kGuestRam = 128ull << 20, kVmmRam = 16ull << 20;

struct GuestRun {
  std::vector<std::string> lines;  // without `timing:` lines
  std::unique_ptr<vmm::TrapRouter> router;
  int exit_value = -1;
  std::string serial;
  bool halted = false;
  const vmm::ParavirtVmm& pv() const { return static_cast<const vmm::ParavirtVmm&>(router->vmm()); }
  uint64_t hypercalls(const char* op) const { return router->vmm().hypercalls().of(op); }
};

struct BootedMachine {
  test::MiniPc pc{kGuestRam, kVmmRam};
  isa::Core core{pc, pc};
  test::WalkingTranslator walker{pc};
  isa::SystemConfig system;
  std::unique_ptr<isa::SystemConfigBinding> binding;
  std::unique_ptr<vmm::TrapRouter> router;

  BootedMachine(const char* profile, const char* strategy, const std::string& cmdline, const std::string& paging) {
    core.set_translator(&walker);
    system.profile = isa::load_profile(profile);
    binding = std::make_unique<isa::SystemConfigBinding>(core, system);
    pc.boot(core, PGSIM_KERNEL_IMAGE, cmdline);
    vmm::Machine machine{core};
    machine.vmm_memory_base = kGuestRam;
    machine.vmm_memory_size = kVmmRam;
    vmm::VmmOptions options;
    options.paging = paging;
    router = std::make_unique<vmm::TrapRouter>(vmm::make_vmm(strategy, machine, vmm::VmmCosts{}, options));
    router->attach(core);
  }
};

GuestRun run(const char* profile, const char* strategy, const std::string& cmdline, const std::string& paging = "") {
  BootedMachine m(profile, strategy, cmdline, paging);
  for (int k = 0; k < 4000 && m.pc.exit_value < 0 && !m.core.is_shutdown() && !m.core.state().halted; ++k)
    m.core.run(100000);
  EXPECT_FALSE(m.core.is_shutdown()) << m.core.shutdown_reason() << "\n" << m.pc.serial;
  GuestRun r;
  r.halted = m.core.state().halted;
  r.exit_value = m.pc.exit_value;
  r.serial = m.pc.serial;
  std::istringstream in(m.pc.serial);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("timing:", 0) != 0) r.lines.push_back(line);
  }
  r.router = std::move(m.router);
  return r;
}

// The output differs from native only in the line that names the pvops table.
std::vector<std::string> without_path_lines(std::vector<std::string> lines) {
  std::erase_if(lines, [](const std::string& l) { return l.rfind("hypervisor", 0) == 0 || l.rfind("pvops:", 0) == 0; });
  return lines;
}

TEST(Paravirt, Survey) {
  for (const char* profile : {"x86", "x86-pg"})
  for (const char* cmdline : {"", "bench=syscall iters=20", "bench=in iters=20", "bench=cr8wr iters=20", "bench=callret iters=20",
                              "bench=pgfault iters=20", "bench=divzero iters=20", "bench=ptemod iters=20",
                              "bench=forkwait iters=20", "bench=compute iters=20", "bench=memwalk iters=200 ws=65536",
                              "bench=ctxswitch iters=20", "bench=smc iters=20"}) {
    const GuestRun native = run(profile, "native", cmdline);
    const GuestRun pv = run(profile, "paravirt", cmdline);
    const auto& rt = *pv.router;
    std::cout << profile << " " << cmdline << ": native exit " << native.exit_value << " pv exit " << pv.exit_value
              << " same " << (without_path_lines(pv.lines) == without_path_lines(native.lines)) << " traps " << rt.total_traps()
              << " gp " << rt.traps(vmm::TrapCause::GeneralProtection) << " ud " << rt.traps(vmm::TrapCause::InvalidOpcode)
              << " pf " << rt.traps(vmm::TrapCause::PageFault) << " hc " << rt.vmm().hypercalls().total()
              << " leaks " << rt.vmm().leaks().total() << " viol " << rt.vmm().resource_control_violations()
              << " refused " << pv.pv().paging_counters().refusals << "\n";
    if (without_path_lines(pv.lines) != without_path_lines(native.lines)) std::cout << pv.serial << "\n----\n" << native.serial << "\n";
  }
}

TEST(Paravirt, BootsAndRunsBenchIn) {
  const GuestRun native = run("x86", "native", "bench=in iters=10");
  const GuestRun pv = run("x86", "paravirt", "bench=in iters=10");
  std::cout << pv.serial << "\n";
  EXPECT_EQ(pv.exit_value, 0);
  EXPECT_EQ(without_path_lines(pv.lines), without_path_lines(native.lines));
}

}  // namespace
}  // namespace pgsim

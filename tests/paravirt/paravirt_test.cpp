// The paravirt strategy (models/vmm/paravirt.h) serving the real guest kernel on the SystemC-free
// stand-in PC of tests/vmm: the kernel's workloads print their native output, every privileged
// operation of the kernel is a hypercall (no trap), and exact counts follow from iteration counts
// as deltas between two runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <numeric>
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
  // Read at the end of the run: the shared-info page lives in the machine's memory.
  vmm::ParavirtVmm::GuestMaskWrites guest_mask_writes;
  const vmm::ParavirtVmm& pv() const { return static_cast<const vmm::ParavirtVmm&>(router->vmm()); }
  uint64_t hypercalls(const char* op) const { return router->vmm().hypercalls().of(op); }
};

// An interrupt controller the test raises one vector on.
struct TestController : isa::InterruptSource {
  bool pending = false;
  uint8_t vector = 0;
  bool interrupt_pending() override { return pending; }
  uint8_t acknowledge_interrupt() override {
    pending = false;
    return vector;
  }
  bool nmi_pending() override { return false; }
  void acknowledge_nmi() override {}
};

struct BootedMachine {
  test::MiniPc pc{kGuestRam, kVmmRam};
  TestController controller;
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
    machine.interrupts = &controller;
    machine.vmm_memory_base = kGuestRam;
    machine.vmm_memory_size = kVmmRam;
    vmm::VmmOptions options;
    options.paging = paging;
    router = std::make_unique<vmm::TrapRouter>(vmm::make_vmm(strategy, machine, vmm::VmmCosts{}, options));
    router->attach(core);
  }
};

void run_to_exit(BootedMachine& m, uint64_t step = 100000) {
  for (int k = 0; k < 400000 && m.pc.exit_value < 0 && !m.core.is_shutdown() && !m.core.state().halted; ++k)
    m.core.run(step);
}

GuestRun run(const char* profile, const char* strategy, const std::string& cmdline, const std::string& paging = "") {
  BootedMachine m(profile, strategy, cmdline, paging);
  run_to_exit(m);
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
  if (auto* pv = dynamic_cast<vmm::ParavirtVmm*>(&m.router->vmm())) r.guest_mask_writes = pv->guest_mask_writes();
  r.router = std::move(m.router);
  return r;
}

// The output differs from native only in the line that names the pvops table.
std::vector<std::string> without_path_lines(std::vector<std::string> lines) {
  std::erase_if(lines, [](const std::string& l) { return l.rfind("hypervisor", 0) == 0 || l.rfind("pvops:", 0) == 0; });
  return lines;
}

const char* const kWorkloads[] = {"bench=syscall", "bench=in",     "bench=cr8wr",  "bench=callret", "bench=pgfault",
                                  "bench=divzero", "bench=ptemod", "bench=forkwait", "bench=compute",
                                  "bench=memwalk ws=65536", "bench=ctxswitch", "bench=smc", "bench=clisti"};

std::string with_iters(const char* workload, int iters) { return std::string(workload) + " iters=" + std::to_string(iters); }

// Every workload prints its native output under paravirt, on classic x86 as on x86-pg, with no
// leak, no resource-control violation and no update refused; the boot (before the first
// hypercall) and the workload's own faults aside, what the kernel does is hypercalls, not traps:
// between 10 and 20 iterations the ring-0 benchmarks add no trap at all.
TEST(Paravirt, WorkloadsPrintTheNativeOutput) {
  for (const char* profile : {"x86", "x86-pg"}) {
    for (const char* workload : kWorkloads) {
      SCOPED_TRACE(std::string(profile) + " " + workload);
      const GuestRun native = run(profile, "native", with_iters(workload, 20));
      ASSERT_EQ(native.exit_value, 0) << native.serial;
      const GuestRun ten = run(profile, "paravirt", with_iters(workload, 10));
      const GuestRun pv = run(profile, "paravirt", with_iters(workload, 20));
      EXPECT_EQ(pv.exit_value, 0) << pv.serial;
      EXPECT_EQ(without_path_lines(pv.lines), without_path_lines(native.lines)) << pv.serial;
      EXPECT_NE(std::find(pv.lines.begin(), pv.lines.end(), "pvops: paravirtual"), pv.lines.end());
      EXPECT_EQ(pv.router->vmm().leaks().total(), 0u) << pv.router->vmm().leaks().summary();
      EXPECT_EQ(pv.router->vmm().resource_control_violations(), 0u);
      EXPECT_EQ(pv.pv().paging_counters().refusals, 0u);
      const std::string w = workload;
      if (w == "bench=in" || w == "bench=cr8wr" || w == "bench=callret" || w == "bench=ptemod" || w == "bench=clisti") {
        EXPECT_EQ(pv.router->total_traps(), ten.router->total_traps());
      }
    }
  }
}

// vmm.paging: shadow serves the same hypercalls on shadow page tables.
TEST(Paravirt, ShadowPagingServesTheSameKernel) {
  for (const char* workload : {"bench=forkwait", "bench=pgfault", "bench=ptemod"}) {
    SCOPED_TRACE(workload);
    const GuestRun native = run("x86", "native", with_iters(workload, 10));
    const GuestRun pv = run("x86", "paravirt", with_iters(workload, 10), "shadow");
    EXPECT_FALSE(pv.pv().direct_paging());
    EXPECT_EQ(pv.exit_value, 0) << pv.serial;
    EXPECT_EQ(without_path_lines(pv.lines), without_path_lines(native.lines)) << pv.serial;
    EXPECT_EQ(pv.router->vmm().leaks().total(), 0u);
    EXPECT_EQ(pv.router->vmm().resource_control_violations(), 0u);
  }
}

// bench=ptemod with pvbatch=1: each iteration's page-table update is one mmu_update hypercall
// and its INVLPG one invlpg hypercall, and nothing traps; under trap_emulate the same iteration
// is three traps (the write to the write-protected page table, #PF; INVLPG, #GP; and the hidden
// page fault that refills the shadow entry the write dropped).
TEST(Paravirt, PtemodIsOneHypercallPerUpdate) {
  const GuestRun ten = run("x86-pg", "paravirt", "bench=ptemod pvbatch=1 iters=10");
  const GuestRun twenty = run("x86-pg", "paravirt", "bench=ptemod pvbatch=1 iters=20");
  ASSERT_EQ(twenty.exit_value, 0) << twenty.serial;
  EXPECT_EQ(twenty.hypercalls("mmu_update") - ten.hypercalls("mmu_update"), 10u);
  EXPECT_EQ(twenty.hypercalls("invlpg") - ten.hypercalls("invlpg"), 10u);
  EXPECT_EQ(twenty.router->vmm().hypercalls().total() - ten.router->vmm().hypercalls().total(), 20u);
  EXPECT_EQ(twenty.pv().paging_counters().updates - ten.pv().paging_counters().updates, 10u);
  EXPECT_EQ(twenty.router->total_traps(), ten.router->total_traps());
  const GuestRun te_ten = run("x86-pg", "trap_emulate", "bench=ptemod iters=10");
  const GuestRun te_twenty = run("x86-pg", "trap_emulate", "bench=ptemod iters=20");
  ASSERT_EQ(te_twenty.exit_value, 0) << te_twenty.serial;
  EXPECT_EQ(te_twenty.router->total_traps() - te_ten.router->total_traps(), 30u);
}

// bench=forkwait: the page-table requests of one fork-and-wait iteration, in the lazy-MMU sections
// the kernel cuts them into (workloads/kernel/mm.c; each update, INVLPG, pin and unpin is one
// entry of a batch, and a section ends where the kernel forces the batch out):
//   fork, aspace_clone -> aspace_create:
//     the new root and PDPT made read-only (2), root[0], PDPT[0] and PDPT[3] linked (3); flushed
//       because the walks that follow read these links back                                      5
//     the first image page's walk creates slot 1's page directory: read-only + link, flushed     2
//     ... and the image's page table (PD entry 0): read-only + link, flushed                     2
//     the image's kUserImagePages pages mapped, then the clock page's walk creates the page table
//       of PD entry 511 (read-only + link, flushed)                                 kUserImagePages + 2
//     the clock page mapped (1); the user root and its PDPT made read-only (2) and linked (2);
//       both roots pinned (2); share_page maps the parent's one private page, its stack, in the
//       child (1): copy-on-write since the first fork, as the parent's loop keeps its state in
//       registers and the child exits without touching it, so no copy-on-write fault follows and
//       the parent's entry needs no update; lazy_mmu_end                                          8
//   the parent's wait reaps the child, aspace_destroy: both roots unpinned (2), then 7 table frames
//     (2 page tables, the page directory, both PDPTs, both roots) made writable again with an
//     INVLPG each (14); lazy_mmu_end                                                             16
// A section of k entries is ceil(k / N) hypercalls with pvbatch=N (an mmu_update, or a multicall
// when the batch holds more than one call); the requests themselves do not depend on N.
TEST(Paravirt, ForkwaitBatchesItsPageTableUpdates) {
  constexpr uint64_t kUserImagePages = 3;  // 0x40000000 up to __user_end
  const std::vector<uint64_t> sections = {5, 2, 2, kUserImagePages + 2, 8, 16};
  auto expected_hypercalls = [&](uint64_t batch) {
    uint64_t n = 0;
    for (uint64_t entries : sections) n += (entries + batch - 1) / batch;
    return n;
  };
  auto page_table_crossings = [](const GuestRun& r) {
    return r.hypercalls("mmu_update") + r.hypercalls("multicall") + r.hypercalls("invlpg") +
           r.hypercalls("pin_table") + r.hypercalls("unpin_table");
  };
  // Updates, pins and unpins (validated; root loads are validated too, but not batched), INVLPGs.
  auto requests = [](const GuestRun& r) {
    return r.pv().paging_counters().validations - r.hypercalls("new_baseptr") + r.hypercalls("invlpg") +
           r.pv().multicall_operations().of("invlpg");
  };
  const uint64_t requests_per_iter = std::accumulate(sections.begin(), sections.end(), uint64_t{0});
  std::vector<std::string> output;
  std::cout << "forkwait: " << requests_per_iter << " page-table requests per iteration; hypercalls per iteration:";
  for (uint64_t batch : {1, 2, 3, 4, 8, 64}) {
    SCOPED_TRACE("pvbatch=" + std::to_string(batch));
    const std::string n = " pvbatch=" + std::to_string(batch);
    const GuestRun ten = run("x86", "paravirt", "bench=forkwait iters=10" + n);
    const GuestRun twenty = run("x86", "paravirt", "bench=forkwait iters=20" + n);
    ASSERT_EQ(twenty.exit_value, 0) << twenty.serial;
    if (output.empty()) output = twenty.lines;
    EXPECT_EQ(twenty.lines, output);  // pvbatch changes nothing the kernel prints
    EXPECT_EQ(requests(twenty) - requests(ten), 10 * requests_per_iter);
    EXPECT_EQ(page_table_crossings(twenty) - page_table_crossings(ten), 10 * expected_hypercalls(batch));
    std::cout << " pvbatch=" << batch << ": " << expected_hypercalls(batch);
  }
  std::cout << "\n";
}

// bench=clisti: interrupts on and off in the guest kernel are two plain writes to the event mask,
// no trap and no hypercall (no event is pending); the kernel counts them in the shared-info page,
// so vmm.paravirt.guest_masks/guest_unmasks grow by one each per iteration, where the VMM's own
// sampling at its entries sees nothing (the loop ends masked, as it began). Under trap_emulate
// the same iteration is two traps (STI, CLI).
TEST(Paravirt, InterruptMaskingIsCountedByTheGuestWithoutATrap) {
  auto writes = [](const GuestRun& r) { return r.guest_mask_writes; };
  const GuestRun ten = run("x86-pg", "paravirt", "bench=clisti iters=10");
  const GuestRun twenty = run("x86-pg", "paravirt", "bench=clisti iters=20");
  ASSERT_EQ(twenty.exit_value, 0) << twenty.serial;
  EXPECT_EQ(writes(twenty).masks - writes(ten).masks, 10u);
  EXPECT_EQ(writes(twenty).unmasks - writes(ten).unmasks, 10u);
  EXPECT_EQ(twenty.router->total_traps(), ten.router->total_traps());
  EXPECT_EQ(twenty.router->vmm().hypercalls().total(), ten.router->vmm().hypercalls().total());
  EXPECT_EQ(twenty.pv().counters().masks, ten.pv().counters().masks);
  EXPECT_EQ(twenty.pv().counters().unmasks, ten.pv().counters().unmasks);
  // The system-call path masks nothing itself: the VMM masks events at SYSCALL and restores the
  // mask from the frame at iret.
  const GuestRun syscall_ten = run("x86-pg", "paravirt", "bench=syscall iters=10");
  const GuestRun syscall_twenty = run("x86-pg", "paravirt", "bench=syscall iters=20");
  ASSERT_EQ(syscall_twenty.exit_value, 0) << syscall_twenty.serial;
  EXPECT_EQ(writes(syscall_twenty).masks, writes(syscall_ten).masks);
  EXPECT_EQ(writes(syscall_twenty).unmasks, writes(syscall_ten).unmasks);
  const GuestRun te_ten = run("x86-pg", "trap_emulate", "bench=clisti iters=10");
  const GuestRun te_twenty = run("x86-pg", "trap_emulate", "bench=clisti iters=20");
  ASSERT_EQ(te_twenty.exit_value, 0) << te_twenty.serial;
  EXPECT_EQ(te_twenty.router->total_traps() - te_ten.router->total_traps(), 20u);
  std::cout << "clisti iters=20: guest_masks=" << writes(twenty).masks << " guest_unmasks=" << writes(twenty).unmasks
            << ", sampled at VMM entries: masks=" << twenty.pv().counters().masks
            << " unmasks=" << twenty.pv().counters().unmasks << "\n";
}

// ---- Hypercalls made by the test on a kernel that booted paravirtually ----------------------------

constexpr uint64_t kScratch = 96ull << 20;  // guest RAM the kernel does not use in these runs

uint64_t hypercall(BootedMachine& m, uint64_t op, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0) {
  isa::CpuState& s = m.core.state();
  s.gpr[isa::RAX] = op;
  s.gpr[isa::RDI] = a1;
  s.gpr[isa::RSI] = a2;
  s.gpr[isa::RDX] = a3;
  EXPECT_TRUE(isa::system_config(m.core).hypervisor->vmcall(m.core));
  return s.gpr[isa::RAX];
}

uint64_t& guest_u64(BootedMachine& m, uint64_t paddr) {
  return *reinterpret_cast<uint64_t*>(m.pc.host_frame(paddr) + (paddr & 0xFFF));
}

// The level-1 entry that maps `va` in the loaded kernel root.
uint64_t pte_address(BootedMachine& m, uint64_t va) {
  uint64_t table = m.core.state().cr3 & ~0xFFFull;
  for (int level = 4; level > 1; --level)
    table = guest_u64(m, table + 8 * ((va >> (12 + 9 * (level - 1))) & 511)) & 0x000FFFFFFFFFF000ull;
  return table + 8 * ((va >> 12) & 511);
}

struct BootedPv {
  std::unique_ptr<BootedMachine> m;
  const vmm::ParavirtVmm& pv() const { return static_cast<const vmm::ParavirtVmm&>(m->router->vmm()); }
};

BootedPv boot_paravirtual() {
  BootedPv b{std::make_unique<BootedMachine>("x86", "paravirt", "bench=in iters=1", "")};
  run_to_exit(*b.m);
  EXPECT_EQ(b.m->pc.exit_value, 0) << b.m->pc.serial;
  return b;
}

// A guest that asks to map the VMM's memory, to map one of its page-table frames writable, or to
// write into the VMM's memory is refused with -EPERM, each refusal counted, and neither its page
// table nor the VMM's memory changes.
TEST(Paravirt, RefusesMappingsOfTheVmmAndWritableTables) {
  BootedPv b = boot_paravirtual();
  BootedMachine& m = *b.m;
  const uint64_t pte = pte_address(m, kScratch), table = pte & ~0xFFFull;
  const uint64_t pte_before = guest_u64(m, pte);
  const std::vector<uint8_t> vmm_before(m.pc.host_frame(kGuestRam), m.pc.host_frame(kGuestRam) + kVmmRam);
  const uint64_t refusals = b.pv().paging_counters().refusals, refused = b.pv().counters().refused;
  const pv_mmu_update requests[] = {
      {pte, kGuestRam | 0x7},           // map the VMM's first frame
      {pte, table | 0x7},               // map the table that holds the entry, writable
      {kGuestRam + 0x100, 0},           // write into the VMM's memory as if it were a table
  };
  for (const pv_mmu_update& request : requests) {
    guest_u64(m, kScratch + 4096) = request.ptr;
    guest_u64(m, kScratch + 4096 + 8) = request.value;
    EXPECT_EQ(static_cast<int64_t>(hypercall(m, PV_OP_MMU_UPDATE, kScratch + 4096, 1, kScratch + 8192)), -PV_EPERM);
    EXPECT_EQ(guest_u64(m, kScratch + 8192), 0u);  // applied: none
  }
  EXPECT_EQ(b.pv().paging_counters().refusals - refusals, 3u);
  EXPECT_EQ(b.pv().counters().refused - refused, 3u);
  EXPECT_EQ(guest_u64(m, pte), pte_before);
  EXPECT_TRUE(std::equal(vmm_before.begin(), vmm_before.end(), m.pc.host_frame(kGuestRam)));
  // A mapping the guest owns is accepted (and made user-accessible: the kernel runs at CPL 3).
  guest_u64(m, kScratch + 4096) = pte;
  guest_u64(m, kScratch + 4096 + 8) = (kScratch + 3 * 4096) | 0x3;
  EXPECT_EQ(hypercall(m, PV_OP_MMU_UPDATE, kScratch + 4096, 1, kScratch + 8192), 1u);
  EXPECT_EQ(guest_u64(m, pte), (kScratch + 3 * 4096) | 0x7);
}

// Three privileged operations in one multicall cross into the VMM once: one hypercall, three
// operations run, three updates validated.
TEST(Paravirt, AMulticallIsOneHypercall) {
  BootedPv b = boot_paravirtual();
  BootedMachine& m = *b.m;
  const uint64_t pte = pte_address(m, kScratch);
  const uint64_t calls = kScratch + 4096, updates = kScratch + 8192;
  for (uint64_t k = 0; k < 3; ++k) {
    guest_u64(m, updates + 16 * k) = pte;
    guest_u64(m, updates + 16 * k + 8) = (kScratch + (4 + k) * 4096) | 0x3;
    const uint64_t entry = calls + k * sizeof(pv_multicall);
    guest_u64(m, entry) = PV_OP_MMU_UPDATE;
    guest_u64(m, entry + 8) = updates + 16 * k;
    guest_u64(m, entry + 16) = 1;
    guest_u64(m, entry + 24) = 0;
  }
  const uint64_t total = m.router->vmm().hypercalls().total(), validated = b.pv().paging_counters().updates;
  const uint64_t entries = b.pv().counters().multicall_entries, traps = m.router->total_traps();
  EXPECT_EQ(hypercall(m, PV_OP_MULTICALL, calls, 3), 0u);
  EXPECT_EQ(m.router->vmm().hypercalls().total() - total, 1u);
  EXPECT_EQ(b.pv().counters().multicall_entries - entries, 3u);
  EXPECT_EQ(b.pv().paging_counters().updates - validated, 3u);
  EXPECT_EQ(m.router->total_traps(), traps);
  for (uint64_t k = 0; k < 3; ++k) EXPECT_EQ(guest_u64(m, calls + k * sizeof(pv_multicall) + 48), 1u);  // each result
  EXPECT_EQ(guest_u64(m, pte), (kScratch + 6 * 4096) | 0x7);
}

// An interrupt that arrives while the guest has its events masked is held (event_pending set in
// the shared-info page) and delivered when the guest unmasks, at the return of the hypercall it
// makes then: the kernel counts the tick.
TEST(Paravirt, AnInterruptWhileMaskedIsDeliveredAtUnmask) {
  BootedMachine m("x86", "paravirt", "bench=compute iters=20", "");
  const auto& pv = static_cast<const vmm::ParavirtVmm&>(m.router->vmm());
  bool raised = false;
  for (int k = 0; k < 200000 && !raised && m.pc.exit_value < 0; ++k) {
    m.core.run(50);
    if (m.router->vmm().hypercalls().of("set_timer") == 0 || !pv.shared_info_frame()) continue;
    if (guest_u64(m, pv.shared_info_frame()) & 0xFF) {  // event_mask set
      m.controller.vector = 32;  // the kernel's timer vector
      m.controller.pending = true;
      m.core.notify_interrupt();
      raised = true;
    }
  }
  ASSERT_TRUE(raised);
  const uint64_t delivered = pv.counters().events_delivered;
  m.core.run(1);  // the interrupt is taken at the next boundary, and held
  EXPECT_EQ(pv.counters().interrupts_held, 1u);
  EXPECT_EQ(pv.counters().events_delivered, delivered);
  EXPECT_EQ((guest_u64(m, pv.shared_info_frame()) >> 8) & 0xFF, 1u);  // event_pending
  run_to_exit(m, 1000);
  EXPECT_EQ(m.pc.exit_value, 0) << m.pc.serial;
  EXPECT_EQ(pv.counters().upcalls, 1u);
  EXPECT_EQ(m.router->traps(vmm::TrapCause::Interrupt), 1u);
  EXPECT_NE(m.pc.serial.find("timer_ticks=1 "), std::string::npos) << m.pc.serial;
}

}  // namespace
}  // namespace pgsim

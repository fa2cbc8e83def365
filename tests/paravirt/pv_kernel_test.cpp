// The guest kernel's paravirtual path, run: a test hypervisor presents the pgsim signature and
// serves the hypercall ABI (workloads/kernel/pv_abi.h) on the stand-in PC of tests/vmm, with every
// page-table update validated by the direct-paging component, and the kernel's workloads must give
// the output of their native run. The hypervisor is the least that serves the ABI, not the
// paravirt strategy: the kernel runs at the real CPL 0 (what it executes is checked by the image
// test: no privileged or sensitive instruction on its paravirtual path) and the test hypervisor
// delivers events by the trap table itself. It switches the two roots as the ABI says: ring 3
// runs on the user root, which maps nothing of the kernel, so a user root that lacked a page the
// process uses would fault.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <map>
#include <sstream>
#include <vector>

#include "isa/system/events.h"
#include "isa/system/system_config.h"
#include "models/vmm/direct_paging.h"
#include "tests/vmm/mini_pc.h"
#include "tests/vmm/walking_translator.h"

namespace pgsim {
namespace {

constexpr uint64_t kGuestRam = 128ull << 20, kVmmRam = 16ull << 20;
constexpr uint16_t kKernelCs = 0x08, kKernelSs = 0x10;
constexpr uint16_t kCode64Attr = 0xA09B, kDataAttr = 0xC093, kUserCode64Attr = 0xA0FB, kUserDataAttr = 0xC0F3;

class TestHypervisor : public isa::HypervisorInterface, public isa::TrapHook {
 public:
  explicit TestHypervisor(test::MiniPc& pc) : pc_(pc), paging_(pc, kGuestRam, kGuestRam, kVmmRam) {}

  std::map<uint64_t, uint64_t> hypercalls;  // crossings, by operation (a multicall's calls not counted)
  // A broken hypervisor, for the kernel's boot checks: the ring it reports, whether it refuses
  // the trap table.
  unsigned reported_ring = 0;
  bool refuse_trap_table = false;
  uint64_t events_delivered = 0;
  bool blocked_with_events_masked = false;
  uint64_t user_instructions_on_user_root = 0;
  const vmm::DirectPaging& paging() const { return paging_; }

  bool cpuid(uint32_t leaf, uint32_t, isa::CpuidLeaf& out) override {
    if (leaf != PV_CPUID_LEAF) return false;
    const char* signature = PV_CPUID_SIGNATURE;  // 12 bytes (and the literal's NUL)
    out.eax = PV_CPUID_MAX_LEAF;
    std::memcpy(&out.ebx, signature, 4);
    std::memcpy(&out.ecx, signature + 4, 4);
    std::memcpy(&out.edx, signature + 8, 4);
    return true;
  }

  bool vmcall(isa::Core& core) override {
    isa::CpuState& s = core.state();
    const uint64_t op = s.gpr[isa::RAX];
    ++hypercalls[op];
    s.gpr[isa::RAX] = static_cast<uint64_t>(call(core, op, s.gpr[isa::RDI], s.gpr[isa::RSI], s.gpr[isa::RDX]));
    return true;
  }

  // Every event the kernel raises once it has a trap table: the hardware frame on the kernel stack
  // (from ring 3) or the current one, the handler at ring 0, the event mask as the entry says.
  // SYSCALL enters the kernel's callback at CPL 0 on the user root: the kernel root before its
  // first instruction. Counts the user instructions that ran on the user root.
  void on_instruction_boundary(isa::Core& core) override {
    const isa::CpuState& s = core.state();
    if (!user_root_ || s.cr3 != user_root_) return;
    if (s.cpl() == 0) load_cr3(core, kernel_root_);
    else ++user_instructions_on_user_root;
  }

  bool on_event(isa::Core& core, const isa::Event& event) override {
    if (traps_.empty()) return false;  // the boot, before the kernel registered its table
    isa::CpuState& s = core.state();
    auto entry = traps_.find(event.vector);
    if (entry == traps_.end()) {
      core.shutdown("no trap-table entry for vector " + std::to_string(event.vector));
      return true;
    }
    const bool from_user = s.cpl() == 3;
    if (event.software() && (entry->second.flags & 3) < s.cpl()) {  // INT n past its DPL: #GP
      isa::Event gp{13, isa::EventKind::Exception, true, static_cast<uint32_t>(event.vector) * 8 + 2, 0};
      return on_event(core, gp);
    }
    if (from_user) load_cr3(core, kernel_root_);
    if (event.vector == 14) vcpu().fault_address = event.cr2;
    uint64_t rsp = (from_user ? kernel_stack_ : s.gpr[isa::RSP]) & ~0xFull;
    const uint64_t rflags = (s.rflags & ~uint64_t{isa::IF}) | (vcpu().event_mask ? uint64_t{0} : uint64_t{isa::IF});
    const uint64_t cs = from_user ? s.seg[isa::CS].selector : (entry->second.cs & ~3u);
    const uint64_t frame[] = {s.seg[isa::SS].selector, s.gpr[isa::RSP], rflags, cs, s.rip};
    for (uint64_t word : frame) push(core, rsp, word);
    if (event.has_error_code) push(core, rsp, event.error_code);
    if (entry->second.flags & PV_TRAP_MASK_EVENTS) vcpu().event_mask = 1;
    set_ring(s, 0);
    s.gpr[isa::RSP] = rsp;
    s.rflags &= ~uint64_t{isa::IF | isa::TF};
    s.rip = entry->second.address;
    ++events_delivered;
    return true;
  }

 private:
  struct Trap {
    uint8_t flags;
    uint16_t cs;
    uint64_t address;
  };

  pv_vcpu_info& vcpu() { return *reinterpret_cast<pv_vcpu_info*>(pc_.host_frame(shared_info_) + 0); }

  static void push(isa::Core& core, uint64_t& rsp, uint64_t value) {
    rsp -= 8;
    core.write_linear(rsp, 8, value, isa::AccessOrigin::ImplicitSupervisor);
  }
  uint64_t read(isa::Core& core, uint64_t va) { return core.read_linear(va, 8, isa::AccessOrigin::ImplicitSupervisor); }
  void write(isa::Core& core, uint64_t va, uint64_t v) { core.write_linear(va, 8, v, isa::AccessOrigin::ImplicitSupervisor); }

  static void load_cr3(isa::Core& core, uint64_t root) {
    if (core.state().cr3 == root) return;
    core.state().cr3 = root;
    core.flush_tlbs(true);
  }

  static void set_ring(isa::CpuState& s, unsigned ring) {
    const bool user = ring == 3;
    s.seg[isa::CS] = {static_cast<uint16_t>(user ? PV_USER_CS : kKernelCs), 0, 0xFFFFFFFF,
                      user ? kUserCode64Attr : kCode64Attr};
    s.seg[isa::SS] = {static_cast<uint16_t>(user ? PV_USER_DS : kKernelSs), 0, 0xFFFFFFFF,
                      user ? kUserDataAttr : kDataAttr};
  }

  int64_t mmu_update(isa::Core& core, uint64_t requests, uint64_t count, uint64_t done_va) {
    std::vector<pv_mmu_update> batch(count);
    for (uint64_t k = 0; k < count; ++k) batch[k] = {read(core, requests + 16 * k), read(core, requests + 16 * k + 8)};
    uint64_t done = 0;
    const int64_t r = paging_.update_batch(batch.data(), count, &done);
    if (done_va) write(core, done_va, done);
    core.flush_tlbs(true);
    return r;
  }

  int64_t call(isa::Core& core, uint64_t op, uint64_t a1, uint64_t a2, uint64_t a3) {
    isa::CpuState& s = core.state();
    switch (op) {
      case PV_OP_SET_SHARED_INFO:
        if (a1 & 0xFFF || a1 >= kGuestRam) return -PV_EINVAL;
        shared_info_ = a1;
        return 0;
      case PV_OP_SET_TRAP_TABLE:
        if (refuse_trap_table) return -PV_EINVAL;
        traps_.clear();
        for (uint64_t e = a1;; e += 16) {
          const uint64_t head = read(core, e), address = read(core, e + 8);
          if (!address) break;
          traps_[head & 0xFF] = {static_cast<uint8_t>(head >> 8), static_cast<uint16_t>(head >> 16), address};
        }
        return 0;
      case PV_OP_STACK_SWITCH:
        kernel_stack_ = a1;
        return 0;
      case PV_OP_SET_SYSCALL_CALLBACK:  // SYSCALL itself enters at ring 0 (STAR's selectors)
        s.star = (uint64_t{0x18} << 48) | (uint64_t{kKernelCs} << 32);
        s.lstar = a1;
        s.fmask = isa::IF | isa::DF | isa::TF | isa::AC;
        s.efer |= 1;  // SCE
        return 0;
      case PV_OP_MMU_UPDATE: return mmu_update(core, a1, a2, a3);
      case PV_OP_MULTICALL:
        for (uint64_t k = 0; k < a2; ++k) {
          const uint64_t entry = a1 + k * sizeof(pv_multicall);
          const uint64_t sub = read(core, entry);
          if (sub == PV_OP_MULTICALL || sub == PV_OP_IRET) return -PV_EINVAL;
          const int64_t r = call(core, sub, read(core, entry + 8), read(core, entry + 16), read(core, entry + 24));
          write(core, entry + 48, static_cast<uint64_t>(r));
          if (r < 0) return r;
        }
        return 0;
      case PV_OP_NEW_BASEPTR: {
        const int64_t r = paging_.load_roots(a1, a2);
        if (r == 0) {
          kernel_root_ = a1;
          user_root_ = a2;
          load_cr3(core, a1);
        }
        return r;
      }
      case PV_OP_PIN_TABLE: return paging_.pin(a1, static_cast<unsigned>(a2));
      case PV_OP_UNPIN_TABLE: return paging_.unpin(a1);
      case PV_OP_INVLPG:
        core.invalidate_page(a1);
        return 0;
      case PV_OP_SET_TIMER: return 0;  // the stand-in PC has no time: workloads that need ticks do not run here
      case PV_OP_CONSOLE_WRITE:
        for (uint64_t k = 0; k < a2; ++k) pc_.serial.push_back(static_cast<char>(core.read_linear(a1 + k, 1, isa::AccessOrigin::ImplicitSupervisor)));
        return static_cast<int64_t>(a2);
      case PV_OP_SCHED_BLOCK:
        if (vcpu().event_mask) {
          blocked_with_events_masked = true;
          core.request_stop();
        }
        return 0;
      case PV_OP_SCHED_YIELD:
      case PV_OP_EVENT_CHECK: return 0;
      case PV_OP_GET_VIRTUAL_RING: return s.cpl() | reported_ring;
      case PV_OP_IO: {
        const unsigned size = a2 & PV_IO_SIZE_MASK;
        if (size != 1 && size != 2 && size != 4) return -PV_EINVAL;
        if (a2 & PV_IO_OUT) {
          core.io().out(static_cast<uint16_t>(a1), size, static_cast<uint32_t>(a3));
          return 0;
        }
        return core.io().in(static_cast<uint16_t>(a1), size);
      }
      case PV_OP_IRET: {
        const uint64_t sp = s.gpr[isa::RSP];
        pv_iret_frame f{read(core, sp), read(core, sp + 8), read(core, sp + 16), read(core, sp + 24),
                        read(core, sp + 32), read(core, sp + 40)};
        if ((f.cs & 3) != 0 && (f.cs & 3) != 3) return -PV_EINVAL;
        vcpu().event_mask = (f.rflags & isa::IF) ? 0 : 1;
        if ((f.cs & 3) == 3 && !user_root_) return -PV_EINVAL;  // a kernel-only address space
        set_ring(s, f.cs & 3);
        load_cr3(core, (f.cs & 3) == 3 ? user_root_ : kernel_root_);
        s.rflags = (f.rflags & 0x240FD5) | isa::RF1;  // the arithmetic flags, TF, IF, DF, AC, ID
        s.gpr[isa::RSP] = f.rsp;
        core.set_next_rip(f.rip);
        return static_cast<int64_t>(f.rax);
      }
      default: return -PV_ENOSYS;
    }
  }

  test::MiniPc& pc_;
  vmm::DirectPaging paging_;
  uint64_t shared_info_ = 0, kernel_stack_ = 0, kernel_root_ = 0, user_root_ = 0;
  std::map<uint8_t, Trap> traps_;
};

struct PvRun {
  std::vector<std::string> lines;  // without `timing:` lines
  int exit_value = -1;
  std::map<uint64_t, uint64_t> hypercalls;
  vmm::DirectPagingCounters paging;
  uint64_t user_instructions_on_user_root = 0;
  std::string serial;
};

std::vector<std::string> lines_of(const std::string& serial) {
  std::vector<std::string> lines;
  std::istringstream in(serial);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("timing:", 0) != 0) lines.push_back(line);
  }
  return lines;
}

struct Broken {
  unsigned reported_ring = 0;
  bool refuse_trap_table = false;
};

PvRun run_kernel(const std::string& cmdline, bool paravirtual, Broken broken = {}) {
  test::MiniPc pc{kGuestRam, kVmmRam};
  isa::Core core{pc, pc};
  test::WalkingTranslator walker{pc};
  core.set_translator(&walker);
  TestHypervisor hv(pc);
  hv.reported_ring = broken.reported_ring;
  hv.refuse_trap_table = broken.refuse_trap_table;
  isa::SystemConfig system;
  system.profile = isa::load_profile("x86");
  if (paravirtual) system.hypervisor = &hv;
  isa::SystemConfigBinding binding(core, system);
  if (paravirtual) core.set_trap_hook(&hv, true);
  pc.boot(core, PGSIM_KERNEL_IMAGE, cmdline);
  for (int k = 0; k < 2000 && pc.exit_value < 0 && !core.is_shutdown() && !core.state().halted &&
                  !hv.blocked_with_events_masked;
       ++k)
    core.run(100000);
  EXPECT_FALSE(core.is_shutdown()) << core.shutdown_reason() << "\n" << pc.serial;
  PvRun r;
  r.exit_value = pc.exit_value;
  r.hypercalls = hv.hypercalls;
  r.paging = hv.paging().counters();
  r.user_instructions_on_user_root = hv.user_instructions_on_user_root;
  r.serial = pc.serial;
  r.lines = lines_of(pc.serial);
  return r;
}

// The kernel's output differs from its native run only where it says which path it took.
std::vector<std::string> without_path_lines(std::vector<std::string> lines) {
  std::erase_if(lines, [](const std::string& l) { return l.rfind("hypervisor", 0) == 0 || l.rfind("pvops:", 0) == 0; });
  return lines;
}

TEST(PvKernel, TakesTheParavirtualPathOnlyWhenTheHypervisorIsThere) {
  const PvRun native = run_kernel("", false);
  ASSERT_EQ(native.exit_value, 0) << native.serial;
  EXPECT_TRUE(native.hypercalls.empty());
  const PvRun pv = run_kernel("", true);
  ASSERT_EQ(pv.exit_value, 0) << pv.serial;
  EXPECT_NE(std::find(pv.lines.begin(), pv.lines.end(), "pvops: paravirtual"), pv.lines.end()) << pv.serial;
  EXPECT_EQ(without_path_lines(pv.lines), without_path_lines(native.lines));
  // The boot registered everything and built its direct-paging address space.
  for (int op : {PV_OP_SET_SHARED_INFO, PV_OP_SET_TRAP_TABLE, PV_OP_SET_SYSCALL_CALLBACK,
                 PV_OP_GET_VIRTUAL_RING, PV_OP_PIN_TABLE, PV_OP_NEW_BASEPTR, PV_OP_CONSOLE_WRITE, PV_OP_IO})
    EXPECT_GT(pv.hypercalls.count(op) ? pv.hypercalls.at(op) : 0, 0u) << "op " << op;
  EXPECT_EQ(pv.paging.refusals, 0u);
}

// Every workload the stand-in PC can run (no timer) gives its native output paravirtually, with no
// update refused by the validator.
TEST(PvKernel, WorkloadsGiveTheNativeOutput) {
  int compared = 0;
  for (const char* cmdline : {"bench=in iters=20", "bench=cr8wr iters=20", "bench=callret iters=20",
                              "bench=ptemod iters=20", "bench=syscall iters=20", "bench=pgfault iters=20",
                              "bench=divzero iters=20", "bench=forkwait iters=20", "bench=compute iters=20",
                              "bench=memwalk iters=200 ws=65536", "bench=smc iters=20"}) {
    SCOPED_TRACE(cmdline);
    const PvRun native = run_kernel(cmdline, false);
    if (native.exit_value != 0) continue;  // needs what the stand-in PC lacks
    ++compared;
    const PvRun pv = run_kernel(cmdline, true);
    EXPECT_EQ(pv.exit_value, 0) << pv.serial;
    EXPECT_EQ(without_path_lines(pv.lines), without_path_lines(native.lines)) << pv.serial;
    EXPECT_EQ(pv.paging.refusals, 0u);
    const bool kernel_benchmark = std::string(cmdline).find("bench=in ") == 0 ||
                                  std::string(cmdline).find("bench=cr8wr") == 0 ||
                                  std::string(cmdline).find("bench=callret") == 0 ||
                                  std::string(cmdline).find("bench=ptemod") == 0;
    if (!kernel_benchmark) {
      EXPECT_GT(pv.user_instructions_on_user_root, 0u);  // ring 3 ran on its own root
    }
  }
  EXPECT_GE(compared, 10);
}

// The boot checks keep their meaning: a kernel that the hypervisor says runs outside ring 0, or
// whose trap table it refused, fails as an OS would.
TEST(PvKernel, BootChecksFailWhereAnOsWould) {
  const PvRun ring3 = run_kernel("", true, {3, false});
  EXPECT_EQ(ring3.exit_value, 1);
  EXPECT_NE(std::find(ring3.lines.begin(), ring3.lines.end(), "CHECK FAILED: ring0"), ring3.lines.end()) << ring3.serial;
  const PvRun no_table = run_kernel("", true, {0, true});
  EXPECT_EQ(no_table.exit_value, 1);
  EXPECT_NE(std::find(no_table.lines.begin(), no_table.lines.end(), "CHECK FAILED: trap_table"), no_table.lines.end())
      << no_table.serial;
}

// Fork and exit batch their page-table updates: pvbatch=1 issues each update on its own, the
// default issues them together, and the output is the same.
TEST(PvKernel, ForkBatchesItsPageTableUpdates) {
  const PvRun one = run_kernel("bench=forkwait iters=20 pvbatch=1", true);
  const PvRun batched = run_kernel("bench=forkwait iters=20", true);
  ASSERT_EQ(one.exit_value, 0) << one.serial;
  ASSERT_EQ(batched.exit_value, 0) << batched.serial;
  EXPECT_EQ(one.lines, batched.lines);
  EXPECT_EQ(one.paging.updates + one.paging.plain_writes, batched.paging.updates + batched.paging.plain_writes);
  auto crossings = [](const PvRun& r) {
    return (r.hypercalls.count(PV_OP_MMU_UPDATE) ? r.hypercalls.at(PV_OP_MMU_UPDATE) : 0) +
           (r.hypercalls.count(PV_OP_MULTICALL) ? r.hypercalls.at(PV_OP_MULTICALL) : 0);
  };
  EXPECT_LT(2 * crossings(batched), crossings(one));
  std::cout << "forkwait iters=20: " << crossings(one) << " page-table hypercalls with pvbatch=1, "
            << crossings(batched) << " batched\n";
}

}  // namespace
}  // namespace pgsim

// pgsim::simulate() for the PC platform: builds the board from the config, binds its statistics,
// runs SystemC until the CPU thread ends the run, and reports how it ended.
#include <cctype>
#include <iostream>
#include <memory>

#include "platforms/pc/pc_board.h"
#include "platforms/simulation.h"

namespace pgsim {
namespace {

// Figures derived at the end of the run, kept where the registry can read them.
struct Totals {
  uint64_t l1i_hits = 0, l1d_hits = 0, exceptions = 0, resident_bytes = 0;
};

// The machine outlives simulate(): the registry reads its counters when the runner reports.
// SystemC elaborates one design per process, so there is one board per process.
std::unique_ptr<pc::PcBoard> g_board;
Totals g_totals;

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

void bind_statistics(stats::Registry& r, pc::PcBoard& board) {
  using stats::Unit;
  models::Cpu& cpu = board.cpu();
  const isa::CoreCounters& core = cpu.core().counters();
  const models::MmuCounters& mmu = cpu.mmu().counters();

  r.bind("cpu.insts.total", Unit::Instructions, "guest instructions retired", &core.retired);
  r.bind("cpu.insts.user", Unit::Instructions, "guest instructions retired at CPL 3", &core.retired_user);
  r.bind("cpu.insts.kernel", Unit::Instructions, "guest instructions retired at CPL 0-2", &core.retired_kernel);
  for (unsigned c = 0; c < isa::kNumInsnClasses; ++c) {
    const std::string name = lower(isa::insn_class_name(static_cast<isa::InsnClass>(c)));
    r.bind("cpu.insts.class." + name, Unit::Instructions, "guest instructions retired of class " + name,
           &core.by_class[c]);
  }
  r.bind("cpu.string_iterations", Unit::Count, "iterations executed by string instructions", &core.string_iterations);
  r.bind("cpu.interrupts", Unit::Count, "external interrupts taken", &core.interrupts);
  r.bind("cpu.exceptions", Unit::Count, "exceptions and software interrupts delivered", &g_totals.exceptions);
  r.bind("cpu.delegated_steps", Unit::Count,
         "steps a VMM took on its virtual CPU for the guest (emulated and interpreted instructions, "
         "their events and string iterations)", &core.delegated_steps);
  r.formula("cpu.steps", Unit::Count,
            "steps toward run.max_steps: instructions retired, events, string iterations and delegated steps",
            [&core] { return static_cast<double>(core.steps()); });
  r.bind("cpu.decoded", Unit::Instructions, "instructions decoded (decode-cache misses)", &core.decoded);

  models::CycleAccount& cycles = cpu.cycles();
  for (unsigned b = 0; b < models::kNumBuckets; ++b) {
    const auto bucket = static_cast<models::Bucket>(b);
    r.bind_cycle_bucket(models::bucket_name(bucket), models::bucket_description(bucket), &cycles.snapshot[b]);
  }
  for (const models::CycleAccount::ExtraBucket& e : cycles.extra_buckets())
    r.bind_cycle_bucket(e.name, e.description, e.cycles);

  r.bind("mmu.tlb.l1i.hits", Unit::Count, "instruction translations found in the L1 ITLB", &g_totals.l1i_hits);
  r.bind("mmu.tlb.l1i.misses", Unit::Count, "instruction translations missing in the L1 ITLB", &mmu.l1i_misses);
  r.bind("mmu.tlb.l1d.hits", Unit::Count, "data translations found in the L1 DTLB", &g_totals.l1d_hits);
  r.bind("mmu.tlb.l1d.misses", Unit::Count, "data translations missing in the L1 DTLB", &mmu.l1d_misses);
  r.bind("mmu.tlb.l2.hits", Unit::Count, "L1 TLB misses found in the L2 TLB", &mmu.l2_hits);
  r.bind("mmu.tlb.l2.misses", Unit::Count, "L1 TLB misses missing in the L2 TLB (page walks)", &mmu.l2_misses);
  r.bind("mmu.walk.count", Unit::Count, "page walks", &mmu.walks);
  r.bind("mmu.walk.refs", Unit::Count,
         "paging-structure memory references made by page walks (guest_refs + nested_refs)", &mmu.walk_refs);
  r.bind("mmu.walk.guest_refs", Unit::Count,
         "page-walk references to the page tables CR3 points to (all of them without nested paging)",
         &mmu.walk_guest_refs);
  r.bind("mmu.walk.nested_refs", Unit::Count,
         "page-walk references to EPT entries, translating guest-physical addresses (nested paging)",
         &mmu.walk_nested_refs);
  for (size_t i = 0; i < std::size(models::MmuCounters::kLeafNames); ++i) {
    const std::string leaf = models::MmuCounters::kLeafNames[i];
    r.bind("mmu.walk.leaf_" + leaf + ".count", Unit::Count, "page walks that ended at a guest page of size " + leaf,
           &mmu.walks_by_leaf[i]);
    r.bind("mmu.walk.leaf_" + leaf + ".refs", Unit::Count,
           "references (both dimensions, after the walk caches) of the walks that ended at a guest page of size " + leaf,
           &mmu.walk_refs_by_leaf[i]);
  }
  r.bind("mmu.nested.tlb.hits", Unit::Count,
         "guest-physical translations of two-dimensional walks found in the nested TLB", &mmu.nested_tlb_hits);
  r.bind("mmu.nested.tlb.misses", Unit::Count,
         "guest-physical translations of two-dimensional walks missing in the nested TLB (nested walks)",
         &mmu.nested_tlb_misses);
  r.bind("mmu.nested.walk_cache_hits", Unit::Count, "nested walks shortened by a nested page-walk cache",
         &mmu.nested_walk_cache_hits);
  r.bind("mmu.nested.ept_violations", Unit::Count, "translations stopped by an EPT violation",
         &mmu.ept_violations);
  r.bind("mmu.nested.ept_misconfigurations", Unit::Count, "translations stopped by an EPT misconfiguration",
         &mmu.ept_misconfigurations);
  r.bind("mmu.walk.cycles", Unit::Cycles, "cycles charged for page-walk references", &mmu.walk_cycles);
  r.bind("mmu.walk.cache_hits", Unit::Count, "page walks shortened by a paging-structure cache",
         &mmu.walk_cache_hits);
  if (models::CacheHierarchy* caches = board.caches()) {
    for (models::SetAssociativeCache& level : caches->levels()) {
      const std::string& name = level.geometry().name;
      const std::string n = "cache." + name;
      r.bind(n + ".hits", Unit::Count, "data accesses (one per line touched) that hit in " + name, &level.data.hits);
      r.bind(n + ".misses", Unit::Count, "data accesses (one per line touched) that missed in " + name,
             &level.data.misses);
      r.bind(n + ".walk_hits", Unit::Count, "page-walk references that hit in " + name, &level.walk.hits);
      r.bind(n + ".walk_misses", Unit::Count, "page-walk references that missed in " + name, &level.walk.misses);
    }
  }
  r.bind("memory.resident_bytes", Unit::Bytes, "host memory the guest RAM occupies at the end of the run",
         &g_totals.resident_bytes);
  r.formula("sim.seconds", Unit::Seconds, "simulated time (cycles / clock frequency)",
            [&cycles] { return cycles.seconds(cycles.total()); });
  r.formula("sim.host_seconds", Unit::Seconds, "host wall-clock time of the simulation",
            [&cpu] { return cpu.host_seconds(); });
  r.formula("sim.guest_ips", Unit::InstructionsPerSecond, "guest instructions per host second",
            [&cpu, &core] { return cpu.host_seconds() > 0 ? static_cast<double>(core.retired) / cpu.host_seconds() : 0.0; });
}

RunEnd run_end(models::Cpu::End end) {
  switch (end) {
    case models::Cpu::End::GuestExit: return RunEnd::GuestExit;
    case models::Cpu::End::TripleFault: return RunEnd::TripleFault;
    case models::Cpu::End::InstructionLimit: return RunEnd::InstructionLimit;
    case models::Cpu::End::StepLimit: return RunEnd::StepLimit;
    case models::Cpu::End::NoProgress: return RunEnd::NoProgress;
    case models::Cpu::End::Interrupted: return RunEnd::Interrupted;
    case models::Cpu::End::TimeLimit:
    case models::Cpu::End::HostTimeLimit: return RunEnd::TimeLimit;
    default: return RunEnd::GuestHalted;
  }
}

}  // namespace

RunOutcome simulate(const RunContext& ctx) {
  const config::Config& c = ctx.config;
  if (g_board) throw SimulatorError("one pgsim process runs one simulation (SystemC elaborates once)");

  try {
    g_board = std::make_unique<pc::PcBoard>("pc", c, ctx.serial_log);
  } catch (const models::ImageError& e) {
    throw SimulatorError(std::string("bad guest image: ") + e.what());
  } catch (const config::ConfigError&) {
    throw;
  } catch (const std::exception& e) {  // a CPU profile or device input that cannot be used
    throw SimulatorError(std::string("cannot build the machine: ") + e.what());
  }
  pc::PcBoard& board = *g_board;
  board.cpu().set_stop_request(ctx.stop_request);
  // The end of a run is reported by the runner, not by SystemC's "stopped by user" notice.
  sc_core::sc_report_handler::set_actions(sc_core::SC_INFO, sc_core::SC_DO_NOTHING);
  bind_statistics(ctx.stats, board);

  if (c.flag("trace.vcd")) board.trace_to(ctx.out_dir / "trace.vcd");
  sc_core::sc_start();
  board.vmm().bind_statistics(ctx.stats);  // the VMM exists from the start of simulation
  board.close_trace();
  ctx.serial_log.flush();

  models::Cpu& cpu = board.cpu();
  if (cpu.end() == models::Cpu::End::Running)  // SystemC ran out of events with the CPU asleep
    cpu.cycles().update_snapshot();
  board.vmm().vmm().cycles().update_snapshot();
  const isa::CoreCounters& core = cpu.core().counters();
  g_totals.l1i_hits = cpu.mmu().l1i_hits_total();
  g_totals.l1d_hits = cpu.mmu().l1d_hits_total();
  g_totals.exceptions = core.events - core.interrupts;
  g_totals.resident_bytes = board.ram().resident_bytes();
  ctx.stats.check_cycle_total(cpu.cycles().total());

  RunOutcome out;
  out.end = cpu.end() == models::Cpu::End::Running ? RunEnd::GuestHalted : run_end(cpu.end());
  out.detail = cpu.end() == models::Cpu::End::Running
                   ? "HLT with interrupts enabled and no interrupt left to wake the CPU"
                   : cpu.end_detail();
  if (out.end == RunEnd::GuestExit) {
    out.guest_status = static_cast<uint32_t>(cpu.exit_status());
    out.guest_success = cpu.exit_status() == 1;
  }
  out.guest_instructions = core.retired;
  out.host_seconds = cpu.host_seconds();
  return out;
}

}  // namespace pgsim

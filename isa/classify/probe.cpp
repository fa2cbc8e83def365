// The probe machine: state generation and single-instruction execution.
#include "isa/classify/probe.h"

#include <array>
#include <cstdio>
#include <exception>
#include <unordered_map>

#include "isa/bus_if.h"
#include "isa/core.h"
#include "isa/core_if.h"
#include "isa/system/descriptors.h"
#include "isa/system/events.h"
#include "isa/system/paging.h"
#include "isa/system/pmu.h"
#include "isa/system/system_config.h"

namespace pgsim::isa::classify {

using L = ProbeLayout;

namespace {

constexpr uint64_t kTablesRef = 0x20000, kTablesMoved = 0x120000, kTablesSize = 0x4000;
constexpr uint64_t kGdtOff = 0x0, kIdtOff = 0x1000, kTssOff = 0x2000, kLdtOff = 0x3000;
constexpr uint64_t kProgramMovedDelta = 0x400000;  // physical distance of the moved program
constexpr uint64_t kPml4 = 0x10000, kPdpt = 0x11000, kPd = 0x12000;
constexpr uint64_t kFillBytes = 0x200;  // data area and stack slots on each side of RSP

uint64_t tables_base(Placement p) { return p == Placement::TablesMoved ? kTablesMoved : kTablesRef; }

// CR0 and CR4 of every state (CR0.TS aside): protection on, paging and PAE in long mode only.
uint64_t base_cr0(bool long64) {
  return long64 ? uint64_t{CR0_PE | CR0_PG | CR0_ET | CR0_NE | CR0_WP} : uint64_t{CR0_PE | CR0_ET | CR0_NE};
}
// The machine's OS turns on what the profile's CPU offers against user programs: CR4.UMIP with
// UMIP (the profile x86-umip), as an OS on such a CPU does.
uint64_t base_cr4(bool long64, const CpuModel& cpu) {
  return (long64 ? uint64_t{CR4_PAE} : 0) | (cpu.has(Feature::Umip) ? uint64_t{CR4_UMIP} : 0);
}

// Descriptor encodings (SDM vol. 3, figures 3-8 and 5-8).
uint64_t segment_descriptor(uint64_t base, uint32_t limit, unsigned type, unsigned dpl, bool code_data, bool l,
                            bool db, bool g) {
  return (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (uint64_t(type) << 40) | (uint64_t(code_data) << 44) |
         (uint64_t(dpl) << 45) | (1ull << 47) | (uint64_t((limit >> 16) & 0xF) << 48) | (uint64_t(l) << 53) |
         (uint64_t(db) << 54) | (uint64_t(g) << 55) | (((base >> 24) & 0xFF) << 56);
}
uint64_t gate_low(uint64_t offset, uint16_t selector, unsigned type, unsigned dpl) {
  return (offset & 0xFFFF) | (uint64_t(selector) << 16) | (uint64_t(type) << 40) | (uint64_t(dpl) << 45) |
         (1ull << 47) | (((offset >> 16) & 0xFFFF) << 48);
}

}  // namespace

// Physical memory of one state before execution: 4 KiB frames, shared by every execution in it.
struct ProbeMachine::Image {
  std::map<uint64_t, std::array<uint8_t, 4096>> frames;
  void put(uint64_t paddr, uint64_t value, unsigned size) {
    for (unsigned k = 0; k < size; ++k) {
      auto& f = frames[(paddr + k) >> 12];
      f[(paddr + k) & 0xFFF] = static_cast<uint8_t>(value >> (8 * k));
    }
  }
  uint8_t get(uint64_t paddr) const {
    auto it = frames.find(paddr >> 12);
    return it == frames.end() ? 0 : it->second[paddr & 0xFFF];
  }
};

namespace {

// The bus of one execution: the shared image plus this execution's writes. No host pointers, so
// every access of the core is seen.
class ProbeBus : public PhysicalBus {
 public:
  explicit ProbeBus(const std::map<uint64_t, std::array<uint8_t, 4096>>& frames) : frames_(frames) {}
  uint8_t* host_frame(uint64_t) override { return nullptr; }
  uint64_t read(uint64_t paddr, unsigned size) override {
    uint64_t v = 0;
    for (unsigned k = 0; k < size; ++k) v |= uint64_t{byte(paddr + k)} << (8 * k);
    return v;
  }
  void write(uint64_t paddr, unsigned size, uint64_t value) override {
    for (unsigned k = 0; k < size; ++k) {
      overlay_[paddr + k] = static_cast<uint8_t>(value >> (8 * k));
      if (recording_) written_[paddr + k] = true;
    }
  }
  uint8_t byte(uint64_t paddr) const {
    if (auto it = overlay_.find(paddr); it != overlay_.end()) return it->second;
    auto f = frames_.find(paddr >> 12);
    return f == frames_.end() ? 0 : f->second[paddr & 0xFFF];
  }
  void start_recording() { recording_ = true; }
  const std::map<uint64_t, bool>& written() const { return written_; }

 private:
  const std::map<uint64_t, std::array<uint8_t, 4096>>& frames_;
  std::unordered_map<uint64_t, uint8_t> overlay_;
  std::map<uint64_t, bool> written_;
  bool recording_ = false;
};

class ProbeIo : public IoBus {
 public:
  uint32_t in(uint16_t, unsigned size) override { return 0xFFFFFFFFu & static_cast<uint32_t>(Core::size_mask(size)); }
  void out(uint16_t port, unsigned size, uint32_t value) override { writes.push_back({port, size, value}); }
  std::vector<PortWrite> writes;
};

// Long mode runs with paging: the page walk of isa/system/paging.h over the probe's tables.
class WalkTranslator : public Translator {
 public:
  explicit WalkTranslator(PhysicalBus& bus) : bus_(bus) {}
  Translation translate(const CpuState& state, uint64_t linear, AccessKind kind, bool user,
                        AccessOrigin origin) override {
    WalkRequest req{linear, kind, user, origin == AccessOrigin::ImplicitSupervisor};
    WalkResult r = page_walk(state, bus_, req);
    Translation t;
    t.ok = r.ok;
    t.fault = r.fault;
    t.paddr = r.paddr;
    t.cacheable = false;
    return t;
  }
  void invalidate_page(uint64_t) override {}
  void flush(bool) override {}

 private:
  PhysicalBus& bus_;
};

// Exceptions end the execution (a trap); software interrupts are delivered through the IDT, and
// execute() calls the result a trap (a supervisor call) when the delivery entered CPL 0.
class TrapRecorder : public TrapHook {
 public:
  bool on_event(Core& core, const Event& event) override {
    if (event.software()) {
      software_vector = event.vector;
      return false;
    }
    trapped = true;
    vector = event.vector;
    error_code = event.error_code;
    core.request_stop();
    return true;
  }
  bool trapped = false;
  uint8_t vector = 0;
  uint32_t error_code = 0;
  int software_vector = -1;  // INT n, INT3, INTO delivered through the IDT
};

}  // namespace

const char* probe_mode_name(ProbeMode mode) { return mode == ProbeMode::Long64 ? "long64" : "prot32"; }

std::string ProbeSetup::describe() const {
  std::string s = "CPL " + std::to_string(cpl) + ", IF " + std::to_string(real_if);
  if (cpl > 0) s += " (virtual IF " + std::to_string(virtual_if) + ")";
  if (task_switched) s += ", CR0.TS 1";
  if (placement == Placement::ProgramMoved) s += ", program moved";
  if (placement == Placement::TablesMoved) s += ", system tables moved";
  if (tsc != kTscA) s += ", other TSC";
  return s;
}

bool is_memory_fault(uint8_t vector) { return vector == PF_ || vector == SS_ || vector == AC_; }

std::string vector_name(uint8_t vector, uint32_t error_code) {
  static const char* names[] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#MF9",
                                "#TS", "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM"};
  std::string s = vector < 20 ? names[vector] : "vector " + std::to_string(vector);
  if (vector_has_error_code(vector)) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "(0x%x)", error_code);
    s += buf;
  }
  return s;
}

std::string trap_name(const Outcome& o) {
  if (!o.supervisor_call) return vector_name(o.vector, o.error_code);
  char buf[64];
  if (o.error_code) std::snprintf(buf, sizeof buf, "a supervisor call (vector 0x%x through the IDT)", o.vector);
  else std::snprintf(buf, sizeof buf, "a supervisor call (enters CPL 0 at 0x%llx)",
                     static_cast<unsigned long long>(o.after.rip));
  return buf;
}

ProbeMachine::ProbeMachine(ProbeMode mode, Profile profile) : mode_(mode), profile_(std::move(profile)) {
  apply_profile_features(profile_, cpu_);
  const bool l = mode == ProbeMode::Long64;
  const uint64_t cr0 = base_cr0(l), cr4 = base_cr4(l, cpu_);
  auto sel = [](uint64_t s, const char* what) { return OperandValues{std::string("selector ") + what, s, {s}}; };
  values_ = {
      {"zero", 0, {0}},
      sel(L::kGuestData, "0x10 (guest-kernel data)"),
      sel(L::kUserData | 3, "0x23 (user data)"),
      sel(L::kMonitorData, "0x58 (monitor data)"),
      sel(L::kUserCode | 3, "0x1b (user code)"),
      {"far return to guest kernel", L::kLanding, {L::kLanding, L::kGuestCode, L::kLandingStack, L::kGuestData}},
      {"far return to user", L::kLanding, {L::kLanding, L::kUserCode | 3, L::kLandingStack, L::kUserData | 3}},
      {"interrupt return to guest kernel", L::kLanding,
       {L::kLanding, L::kGuestCode, RF1 | IF, L::kLandingStack, L::kGuestData}},
      {"interrupt return to user", L::kLanding,
       {L::kLanding, L::kUserCode | 3, RF1 | IF, L::kLandingStack, L::kUserData | 3}},
      {"flags image IF=1", RF1 | IF, {RF1 | IF}},
      {"flags image IOPL=3", RF1 | IOPL, {RF1 | IOPL}},
      {"CR0 value", cr0, {cr0}},
  };
  if (cr4 != 0) values_.push_back({"CR4 value", cr4, {cr4}});
}

ProbeMachine::~ProbeMachine() = default;

std::vector<unsigned> ProbeMachine::user_cpls() const {
  return mode_ == ProbeMode::Long64 ? std::vector<unsigned>{3} : std::vector<unsigned>{1, 3};
}

const ProbeMachine::Image& ProbeMachine::image(const ProbeSetup& setup, const OperandValues& values) {
  const std::string key = std::to_string(setup.cpl) + "/" + std::to_string(static_cast<int>(setup.placement)) + "/" +
                          values.name;
  auto& slot = images_[key];
  if (slot) return *slot;
  slot = std::make_unique<Image>();
  Image& m = *slot;
  const bool l = mode_ == ProbeMode::Long64;
  const uint64_t tables = tables_base(setup.placement);
  const uint64_t prog_delta = setup.placement == Placement::ProgramMoved ? kProgramMovedDelta : 0;
  // prot32: code and data segments have base prog_delta; long64: the page mapping moves instead.
  const uint64_t seg_base = l ? 0 : prog_delta;
  const uint64_t gdt = tables + kGdtOff;
  auto gdt_put = [&](uint16_t sel, uint64_t lo) { m.put(gdt + (sel & ~7u), lo, 8); };
  const unsigned c = setup.cpl;
  gdt_put(L::kGuestCode, segment_descriptor(seg_base, 0xFFFFF, 0xB, c, true, l, !l, true));
  gdt_put(L::kGuestData, segment_descriptor(seg_base, 0xFFFFF, 0x3, c, true, false, true, true));
  gdt_put(L::kUserCode, segment_descriptor(seg_base, 0xFFFFF, 0xB, 3, true, l, !l, true));
  gdt_put(L::kUserData, segment_descriptor(seg_base, 0xFFFFF, 0x3, 3, true, false, true, true));
  gdt_put(L::kConforming, segment_descriptor(seg_base, 0xFFFFF, 0xF, 0, true, l, !l, true));
  gdt_put(L::kMonitorCode, segment_descriptor(seg_base, 0xFFFFF, 0xB, 0, true, l, !l, true));
  gdt_put(L::kMonitorData, segment_descriptor(seg_base, 0xFFFFF, 0x3, 0, true, false, true, true));
  gdt_put(L::kCallGate, gate_low(L::kHandler, L::kMonitorCode, kCallGate, 3));
  if (l) m.put(gdt + L::kCallGate + 8, L::kHandler >> 32, 8);
  const bool moved = setup.placement == Placement::TablesMoved;
  const uint16_t tss_sel = moved ? L::kTssMoved : L::kTss, ldt_sel = moved ? L::kLdtMoved : L::kLdt;
  gdt_put(tss_sel, segment_descriptor(tables + kTssOff, 0x67, kTssBusy, 0, false, false, false, false));
  gdt_put(ldt_sel, segment_descriptor(tables + kLdtOff, 0x7, kLdt, 0, false, false, false, false));
  // IDT: every vector an interrupt gate of DPL 3 into the monitor (software interrupts reach it).
  for (unsigned v = 0; v < 256; ++v) {
    const uint64_t at = tables + kIdtOff + v * (l ? 16 : 8);
    m.put(at, gate_low(L::kHandler, L::kMonitorCode, kIntGate, 3), 8);
    if (l) m.put(at + 8, L::kHandler >> 32, 8);
  }
  // TSS: the ring-0 and ring-1 stacks.
  const uint64_t tss = tables + kTssOff;
  if (l) {
    m.put(tss + 4, L::kRing0Stack, 8);
    m.put(tss + 12, L::kRing1Stack, 8);
  } else {
    m.put(tss + 4, L::kRing0Stack, 4);
    m.put(tss + 8, L::kMonitorData, 2);
    m.put(tss + 12, L::kRing1Stack, 4);
    m.put(tss + 16, L::kGuestData | 1, 2);
  }
  m.put(tss + 0x66, 0x68, 2);  // no I/O permission bitmap: ports are IOPL-protected
  // LDT: one user data segment.
  m.put(tables + kLdtOff, segment_descriptor(seg_base, 0xFFFFF, 0x3, 3, true, false, true, true), 8);
  // long64: 2 MiB pages, user-accessible and writable; the program region is mapped at its
  // physical place (the moved placement maps it elsewhere).
  if (l) {
    // Accessed and dirty already set, so that the walk writes nothing: the entries differ
    // between placements by construction, and no execution should appear to write them.
    m.put(kPml4, kPdpt | 0x27, 8);
    m.put(kPdpt, kPd | 0x27, 8);
    m.put(kPd, 0 | 0xE7, 8);
    m.put(kPd + 8, (L::kProgram + prog_delta) | 0xE7, 8);
  }
  // Operand values in the data area and the stack, at their physical places.
  const unsigned w = l ? 8 : 4;
  auto fill = [&](uint64_t from_offset, uint64_t anchor) {
    for (uint64_t off = from_offset; off < from_offset + 2 * kFillBytes; off += w) {
      const int64_t k = (static_cast<int64_t>(off) - static_cast<int64_t>(anchor)) / w;
      const size_t n = values.slots.size();
      const uint64_t v = values.slots[static_cast<size_t>(((k % static_cast<int64_t>(n)) + n) % n)];
      m.put(off + prog_delta, v, w);
    }
  };
  fill(L::kData - kFillBytes, L::kData);
  fill(L::kStack - kFillBytes, L::kStack);
  return m;
}

CpuState ProbeMachine::initial_state(const ProbeSetup& setup, const OperandValues& values) const {
  const bool l = mode_ == ProbeMode::Long64;
  CpuState s;
  const uint64_t tables = tables_base(setup.placement);
  const uint64_t seg_base = l ? 0 : (setup.placement == Placement::ProgramMoved ? kProgramMovedDelta : 0);
  s.cr0 = base_cr0(l) | (setup.task_switched ? uint64_t{CR0_TS} : 0);
  s.cr4 = base_cr4(l, cpu_);
  s.cr3 = l ? kPml4 : 0;
  s.efer = l ? (EFER_LME | EFER_LMA | EFER_SCE | EFER_NXE) : 0;
  // The program's own interrupt flag is IF at CPL 0; above, the monitor keeps it in VIF (at CPL 0
  // VIF stays clear, as it is for a kernel that never uses virtual interrupts).
  s.rflags = RF1 | (setup.real_if ? uint64_t{IF} : 0) | (setup.virtual_if && setup.cpl > 0 ? uint64_t{VIF} : 0);
  auto attr = [](unsigned type, unsigned dpl, bool l64, bool db) {
    return static_cast<uint16_t>(type | 0x10 | dpl << 5 | 0x80 | (l64 ? 0x2000 : 0) | (db ? 0x4000 : 0) | 0x8000);
  };
  const unsigned c = setup.cpl;
  s.seg[CS] = {static_cast<uint16_t>(L::kGuestCode | c), seg_base, 0xFFFFFFFF, attr(0xB, c, l, !l)};
  s.seg[SS] = {static_cast<uint16_t>(L::kGuestData | c), seg_base, 0xFFFFFFFF, attr(0x3, c, false, true)};
  for (SegReg r : {DS, ES, FS, GS}) s.seg[r] = {L::kUserData | 3, seg_base, 0xFFFFFFFF, attr(0x3, 3, false, true)};
  const bool moved = setup.placement == Placement::TablesMoved;
  s.gdtr = {tables + kGdtOff, 0x8F};
  s.idtr = {tables + kIdtOff, static_cast<uint16_t>(l ? 0xFFF : 0x7FF)};
  s.tr = {moved ? L::kTssMoved : L::kTss, tables + kTssOff, 0x67, static_cast<uint16_t>(kTssBusy | 0x80)};
  s.ldtr = {moved ? L::kLdtMoved : L::kLdt, tables + kLdtOff, 0x7, static_cast<uint16_t>(kLdt | 0x80)};
  for (auto& g : s.gpr) g = values.gpr;
  // The count register stays small so that repeated string instructions and LOOP end quickly.
  s.gpr[RCX] = values.gpr & 0xFF;
  s.gpr[RSP] = L::kStack;
  s.rip = L::kCode;
  s.star = (uint64_t(L::kUserCode | 3) << 48) | (uint64_t(L::kMonitorCode) << 32);
  s.lstar = s.cstar = L::kHandler;
  s.fmask = IF;
  s.sysenter_cs = L::kMonitorCode;
  s.sysenter_esp = L::kRing0Stack;
  s.sysenter_eip = L::kHandler;
  s.tsc = setup.tsc;
  return s;
}

Outcome ProbeMachine::execute(const std::vector<uint8_t>& code, const ProbeSetup& setup, const OperandValues& values) {
  const Image& img = image(setup, values);
  const bool l = mode_ == ProbeMode::Long64;
  const uint64_t prog_delta = setup.placement == Placement::ProgramMoved ? kProgramMovedDelta : 0;
  ProbeBus bus(img.frames);
  for (size_t k = 0; k < code.size(); ++k) bus.write(L::kCode + prog_delta + k, 1, code[k]);
  bus.start_recording();
  ProbeIo io;
  WalkTranslator translator(bus);
  TrapRecorder hook;
  Outcome out;
  Core core(bus, io);
  SystemConfig config;
  config.profile = profile_;
  config.cpu = cpu_;
  // The performance counters hold time too: each starts from the state's TSC, so that what reads
  // them (RDPMC) shows as timing-dependent, as RDTSC does.
  Pmu pmu(core);
  config.pmu = &pmu;
  for (unsigned i = 0; i < Pmu::kGeneralCounters; ++i) pmu.write_msr(MSR_PMC0 + i, setup.tsc);
  for (unsigned i = 0; i < Pmu::kFixedCounters; ++i) pmu.write_msr(MSR_FIXED_CTR0 + i, setup.tsc);
  SystemConfigBinding binding(core, config);
  core.set_translator(&translator);
  core.set_trap_hook(&hook, false);
  core.state() = initial_state(setup, values);
  core.sync_mode();
  out.before = core.state();
  try {
    core.run(1);
  } catch (const std::exception& e) {
    out.problem = std::string("internal error: ") + e.what();
  }
  if (core.is_shutdown()) out.problem = "shutdown: " + core.shutdown_reason();
  for (const auto& [name, u] : core.unimplemented()) out.unimplemented.push_back(name);
  out.trapped = hook.trapped;
  out.vector = hook.vector;
  out.error_code = hook.error_code;
  out.after = core.state();
  if (!out.trapped && out.problem.empty() && out.before.cpl() > 0 && out.after.cpl() == 0) {
    out.trapped = out.supervisor_call = true;
    out.vector = static_cast<uint8_t>(hook.software_vector < 0 ? 0 : hook.software_vector);
    out.error_code = hook.software_vector < 0 ? 0 : 1;  // 1: entered through the IDT
  }
  out.port_writes = io.writes;
  // Canonical addresses: what the written byte's address is in the Reference placement.
  const uint64_t tables = tables_base(setup.placement);
  for (const auto& [paddr, flag] : bus.written()) {
    uint64_t canon = paddr;
    if (paddr >= tables && paddr < tables + kTablesSize) canon = kTablesRef + (paddr - tables);
    else if (prog_delta && !l) canon = (paddr - prog_delta) & 0xFFFFFFFF;
    else if (prog_delta && paddr >= L::kProgram + prog_delta && paddr < L::kProgram + prog_delta + 0x200000)
      canon = paddr - prog_delta;
    out.writes[canon] = bus.byte(paddr);
  }
  return out;
}

}  // namespace pgsim::isa::classify

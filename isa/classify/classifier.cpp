// Classification by executing each form in pairs of probe states.
#include "isa/classify/classifier.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <exception>

namespace pgsim::isa::classify {
namespace {

using L = ProbeLayout;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

const char* const kGprNames[16] = {"RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI",
                                   "R8",  "R9",  "R10", "R11", "R12", "R13", "R14", "R15"};
const char* const kSegNames[6] = {"ES", "CS", "SS", "DS", "FS", "GS"};

// The resource and mode state an instruction may change (control sensitivity).
std::vector<std::pair<std::string, uint64_t>> resources(const CpuState& s) {
  std::vector<std::pair<std::string, uint64_t>> r = {
      {"CR0", s.cr0}, {"CR2", s.cr2}, {"CR3", s.cr3}, {"CR4", s.cr4}, {"CR8", s.cr8}, {"EFER", s.efer},
      {"GDTR.base", s.gdtr.base}, {"GDTR.limit", s.gdtr.limit}, {"IDTR.base", s.idtr.base},
      {"IDTR.limit", s.idtr.limit}, {"LDTR", s.ldtr.selector}, {"LDTR.base", s.ldtr.base}, {"TR", s.tr.selector},
      {"TR.base", s.tr.base}, {"IF", (s.rflags & IF) != 0}, {"IOPL", s.iopl()}, {"CPL", s.cpl()},
      {"STAR", s.star}, {"LSTAR", s.lstar}, {"CSTAR", s.cstar}, {"FMASK", s.fmask},
      {"KERNEL_GS_BASE", s.kernel_gs_base}, {"SYSENTER_CS", s.sysenter_cs}, {"SYSENTER_ESP", s.sysenter_esp},
      {"SYSENTER_EIP", s.sysenter_eip}, {"PAT", s.pat}, {"TSC_AUX", s.tsc_aux}, {"APIC_BASE", s.apic_base},
      {"TSC", s.tsc}, {"halted", s.halted}};
  for (unsigned k = 0; k < 8; ++k) r.push_back({"DR" + std::to_string(k), s.dr[k]});
  return r;
}

// What the program sees of an execution, as named values. At CPL > 0 the program's interrupt
// flag is VIF (the monitor's convention for the states it generates).
using Observation = std::map<std::string, uint64_t>;

Observation observe(const Outcome& o) {
  Observation v;
  if (o.trapped) {
    v["trap vector"] = o.vector;
    return v;
  }
  const CpuState& s = o.after;
  for (unsigned r = 0; r < 16; ++r) v[kGprNames[r]] = s.gpr[r];
  v["RIP"] = s.rip;
  constexpr std::pair<uint64_t, const char*> flags[] = {{CF, "CF"}, {PF, "PF"}, {AF, "AF"}, {ZF, "ZF"},
                                                        {SF, "SF"}, {TF, "TF"}, {DF, "DF"}, {OF, "OF"},
                                                        {NT, "NT"}, {RF, "RF"}, {AC, "AC"}, {ID, "ID"}};
  for (const auto& [bit, name] : flags) v[std::string("RFLAGS.") + name] = (s.rflags & bit) != 0;
  v["program IF"] = s.cpl() == 0 ? (s.rflags & IF) != 0 : (s.rflags & VIF) != 0;
  v["IOPL"] = s.iopl();
  for (SegReg r : {DS, ES, FS, GS}) v[std::string(kSegNames[r]) + " selector"] = s.seg[r].selector;
  for (const auto& [addr, byte] : o.writes) v["memory " + hex(addr)] = byte;
  for (size_t k = 0; k < o.port_writes.size(); ++k)
    v["port write " + std::to_string(k)] = (uint64_t{o.port_writes[k].port} << 32) | o.port_writes[k].value;
  // Changes of resource state, except the real IF (the program's IF is compared above).
  const auto before = resources(o.before), after = resources(o.after);
  for (size_t k = 0; k < before.size(); ++k) {
    if (before[k].second != after[k].second && before[k].first != "IF") v["changes " + before[k].first + " to"] = after[k].second;
  }
  return v;
}

// The first difference between two observations, as "what: a vs b".
std::string first_difference(const Observation& a, const Observation& b) {
  std::set<std::string> keys;
  for (const auto& [k, v] : a) keys.insert(k);
  for (const auto& [k, v] : b) keys.insert(k);
  for (const auto& k : keys) {
    auto ia = a.find(k), ib = b.find(k);
    if (ia == a.end()) return k + ": absent vs " + hex(ib->second);
    if (ib == b.end()) return k + ": " + hex(ia->second) + " vs absent";
    if (ia->second != ib->second) return k + ": " + hex(ia->second) + " vs " + hex(ib->second);
  }
  return "";
}

// "CR0 0x11 -> 0x19, IF 1 -> 0" for what changed, or "" when nothing did.
std::string resource_changes(const Outcome& o) {
  if (o.trapped) return "";
  const auto before = resources(o.before), after = resources(o.after);
  std::string s;
  for (size_t k = 0; k < before.size(); ++k) {
    if (before[k].second == after[k].second) continue;
    if (!s.empty()) s += ", ";
    s += before[k].first + " " + hex(before[k].second) + " -> " + hex(after[k].second);
  }
  for (const auto& w : o.port_writes) {
    if (!s.empty()) s += ", ";
    s += "OUT to port " + hex(w.port);
  }
  return s;
}

struct Run {
  Outcome outcome;
  Observation observation;
};

std::string outcome_word(const Outcome& o) {
  if (!o.trapped) return "completes";
  return (o.supervisor_call ? "makes " : "raises ") + trap_name(o);
}

// Runs one form in every state pair and derives its classes; counts the executions it made.
FormClasses classify_form(ProbeMachine& machine, const InstructionForm& form, unsigned& executions) {
  FormClasses fc;
  fc.mnemonic = form.mnemonic;
  fc.form = form.form;
  unsigned priv_yes = 0;
  std::string priv_for, priv_against, mode_ev, control_ev, location_ev, timing_ev, user_ev;
  // Executions are memoized per state and operand values: most states take part in several pairs.
  std::map<std::string, std::unique_ptr<Run>> runs;
  auto run = [&](const ProbeSetup& s, const OperandValues& v) -> const Run& {
    const std::string key = s.describe() + "|" + v.name;
    auto& slot = runs[key];
    if (slot) return *slot;
    slot = std::make_unique<Run>();
    slot->outcome = machine.execute(form.bytes, s, v);
    slot->observation = observe(slot->outcome);
    ++executions;
    const Outcome& o = slot->outcome;
    if (!o.problem.empty() && fc.problem.empty()) fc.problem = o.problem + " (" + s.describe() + ")";
    if (!o.unimplemented.empty() && fc.problem.empty())
      fc.problem = "the core has no semantics for " + o.unimplemented.front();
    return *slot;
  };
  auto note_control = [&](const Outcome& o, const ProbeSetup& s, const OperandValues& v) {
    const std::string changes = resource_changes(o);
    if (changes.empty()) return;
    fc.control_sensitive = true;
    const std::string line = "at " + s.describe() + " with " + v.name + ": " + changes;
    if (control_ev.empty()) control_ev = line;
    if (s.cpl > 0) {
      fc.user_sensitive = true;
      if (user_ev.empty()) user_ev = "control-sensitive " + line;
    }
  };
  for (const OperandValues& v : machine.operand_values()) {
    for (bool a : {false, true}) {
      ProbeSetup sup{0, a, a};
      const Run& sr = run(sup, v);
      const Outcome& so = sr.outcome;
      note_control(so, sup, v);
      for (unsigned u : machine.user_cpls()) {
        const ProbeSetup same{u, a, a}, other_if{u, a, !a}, ts{u, a, a, true};
        const Run &ur = run(same, v), &ur_if = run(other_if, v), &ur_ts = run(ts, v);
        for (const auto* pair : {&same, &other_if, &ts}) {
          const Run& r = pair == &same ? ur : pair == &other_if ? ur_if : ur_ts;
          const Outcome& o = r.outcome;
          note_control(o, *pair, v);
          const std::string where = sup.describe() + " vs " + pair->describe() + " with " + v.name;
          // Privileged: CPL n traps wherever CPL 0 completes; and nowhere does CPL n complete
          // what CPL 0 refuses (that, too, is a pair in which user mode does not trap).
          const bool user_traps = o.trapped && !is_memory_fault(o.vector);
          if (!so.trapped && user_traps) {
            ++priv_yes;
            if (priv_for.empty()) priv_for = where + ": CPL 0 completes, CPL " + std::to_string(u) + " " + outcome_word(o);
          } else if (!user_traps && priv_against.empty()) {
            priv_against = where + ": CPL 0 " + outcome_word(so) + ", CPL " + std::to_string(u) + " " + outcome_word(o);
          }
          if (o.trapped) continue;
          std::string diff = so.trapped ? "CPL 0 " + outcome_word(so) + ", CPL " + std::to_string(u) + " completes"
                                        : first_difference(sr.observation, r.observation);
          if (!diff.empty()) {
            fc.mode_sensitive = true;
            if (mode_ev.empty()) mode_ev = where + ": " + diff;
          }
        }
        // At CPL u: does the result depend on the real IF or CR0.TS (the monitor's, not the program's)?
        for (const Run* other : {&ur_if, &ur_ts}) {
          if (ur.outcome.trapped || other->outcome.trapped) continue;
          const std::string diff = first_difference(ur.observation, other->observation);
          if (diff.empty()) continue;
          fc.mode_sensitive = fc.user_sensitive = true;
          const std::string line = same.describe() + " vs " + (other == &ur_if ? other_if : ts).describe() +
                                   " with " + v.name + ": " + diff;
          if (mode_ev.empty()) mode_ev = line;
          if (user_ev.empty()) user_ev = "reads the monitor's state: " + line;
        }
      }
    }
    // Location and timing, at CPL 0 and at the user CPLs.
    for (unsigned cpl : {0u, 3u}) {
      const ProbeSetup base{cpl, true, true};
      const Run& br = run(base, v);
      const Outcome& bo = br.outcome;
      for (Placement p : {Placement::ProgramMoved, Placement::TablesMoved}) {
        ProbeSetup moved = base;
        moved.placement = p;
        const Run& mr = run(moved, v);
        const Outcome& mo = mr.outcome;
        if (cpl > 0) note_control(mo, moved, v);
        if (bo.trapped && mo.trapped) continue;
        std::string diff;
        if (bo.trapped != mo.trapped) diff = "reference " + outcome_word(bo) + ", moved " + outcome_word(mo);
        else diff = first_difference(br.observation, mr.observation);
        if (diff.empty()) continue;
        fc.location_sensitive = true;
        const std::string line = base.describe() + " vs " + moved.describe() + " with " + v.name + ": " + diff;
        if (location_ev.empty()) location_ev = line;
        if (cpl > 0) {
          fc.user_sensitive = true;
          if (user_ev.empty()) user_ev = "location-sensitive " + line;
        }
      }
      ProbeSetup later = base;
      later.tsc = kTscB;
      const Run& lr = run(later, v);
      if (!bo.trapped && !lr.outcome.trapped) {
        const std::string diff = first_difference(br.observation, lr.observation);
        if (!diff.empty()) {
          fc.timing = true;
          if (timing_ev.empty()) timing_ev = base.describe() + ", TSC " + hex(kTscA) + " vs " + hex(kTscB) + " with " + v.name + ": " + diff;
        }
      }
    }
  }
  fc.privileged = priv_yes > 0 && priv_against.empty();
  if (fc.privileged) fc.evidence.push_back("privileged: " + priv_for);
  else if (!priv_against.empty()) fc.evidence.push_back("not privileged: " + priv_against);
  else fc.evidence.push_back("not privileged: CPL 0 raises an exception with every operand tried");
  if (fc.control_sensitive) fc.evidence.push_back("control-sensitive: " + control_ev);
  if (fc.mode_sensitive) fc.evidence.push_back("mode-sensitive: " + mode_ev);
  if (fc.location_sensitive) fc.evidence.push_back("location-sensitive: " + location_ev);
  if (fc.timing) fc.evidence.push_back("timing: " + timing_ev);
  if (fc.user_sensitive) fc.evidence.push_back("user-sensitive: " + user_ev);
  return fc;
}

}  // namespace

Classification classify_instructions(const Profile& profile, ProbeMode mode) {
  const TemplateTargets targets{static_cast<uint32_t>(L::kData), static_cast<uint32_t>(L::kLanding),
                                {L::kGuestCode, L::kUserCode | 3, L::kConforming, L::kMonitorCode, L::kCallGate | 3}};
  Classification result;
  const auto forms = enumerate_forms(mode == ProbeMode::Long64 ? Mode::Long64 : Mode::Protected32, targets,
                                     &result.without_semantics);
  result.profile = profile.name;
  result.profile_source = profile.source;
  result.mode = mode;
  result.forms.resize(forms.size());
  // Forms are independent: each worker has its own probe machine and takes every n-th form, so
  // the result is the same whatever the number of workers.
  const unsigned workers = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
  std::vector<unsigned> executions(workers, 0);
  std::vector<std::exception_ptr> errors(workers);
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      try {
        ProbeMachine machine(mode, profile);
        for (size_t k = w; k < forms.size(); k += workers)
          result.forms[k] = classify_form(machine, forms[k], executions[w]);
      } catch (...) {
        errors[w] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  for (unsigned n : executions) result.executions += n;
  std::set<std::string> v1, v3;
  for (const auto& f : result.forms) {
    if (f.escapes_deprivileged() && !f.privileged) v1.insert(f.mnemonic);
    if (f.user_sensitive && !f.privileged) v3.insert(f.mnemonic);
  }
  result.theorem1 = {v1.empty(), {v1.begin(), v1.end()}};
  result.theorem3 = {v3.empty(), {v3.begin(), v3.end()}};
  return result;
}

}  // namespace pgsim::isa::classify

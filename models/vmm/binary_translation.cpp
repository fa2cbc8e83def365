#include "models/vmm/binary_translation.h"

#include <cstdio>
#include <stdexcept>
#include <string>

#include "isa/system/paging.h"
#include "isa/system/system_config.h"
#include "models/vmm/emulated_insns.h"
#include "models/stats/stats.h"

namespace pgsim::vmm {

using namespace isa;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPagesPerTable = 512;

// The VMM's memory in PML4 slot 511, at the top of the VMM's RAM: the slot's PDPT, the PD of its
// last GiB, the vCPU page's page table, the vCPU page, the TC's page tables and the TC.
uint64_t tc_page_tables(uint64_t tc_bytes) { return (tc_bytes / kPage + kPagesPerTable - 1) / kPagesPerTable; }
uint64_t slot511_region_bytes(uint64_t tc_bytes) { return (4 + tc_page_tables(tc_bytes)) * kPage + tc_bytes; }
// The limit of the real DS, ES and SS in translated code: EFER.LMSLE stops their accesses below
// the TC (and so below the vCPU page above it).
constexpr uint32_t kTranslatedDataLimit = static_cast<uint32_t>(kTcLinearBase - kLmsleLimitBase - 1);
static_assert(kTranslatedDataLimit == 0xFF9FFFFFu && kTcLinearBase >= kLmsleLimitBase);

uint64_t checked_tc_bytes(uint64_t tc_bytes) {
  if (tc_bytes < kPage || tc_bytes > kMaxTcBytes || tc_bytes % kPage)
    throw std::invalid_argument("binary_translation: vmm.bt.tc_bytes must be a multiple of 4096 from 4096 to " +
                                std::to_string(kMaxTcBytes) + "; it is " + std::to_string(tc_bytes));
  return tc_bytes;
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

// Linear addresses that are the VMM's in the kernel-mode shadows: its area (slot 510) and PML4
// slot 511 (the TC and the vCPU page; the rest of the slot is not mapped).
bool is_vmm_linear(uint64_t linear) {
  constexpr uint64_t kSlot511Base = kVcpuPageLinear & ~(kVmmLinearSize - 1);
  return (linear >= kVmmLinearBase && linear - kVmmLinearBase < kVmmLinearSize) || linear >= kSlot511Base;
}

}  // namespace

BinaryTranslationVmm::BinaryTranslationVmm(const Machine& machine, const VmmCosts& costs, const VmmOptions& options)
    : options_(options),
      costs_(costs),
      unit_instructions_(options.bt_unit_instructions),
      adapt_after_(options.bt_adapt_after),
      tc_bytes_(checked_tc_bytes(options.bt_tc_bytes)),
      guest_("binary_translation", machine, costs, options, cycles_, violations_,
             slot511_region_bytes(tc_bytes_)),
      translate_cycles_(cycles_.add_counter("vmm_bt_translate", "cycles translating guest kernel code into the TC")),
      callout_cycles_(cycles_.add_counter(
          "vmm_bt_callout", "cycles crossing from translated code into the VMM and back (callouts, translator entries)")),
      lookup_cycles_(cycles_.add_counter("vmm_bt_lookup",
                                         "cycles looking up the translations of RET and indirect branch targets")) {
  // PML4 slot 511 in the kernel-mode shadows: one PDPT, whose last entry holds the PD of the last
  // GiB, which maps the TC (user-readable and executable, never writable: translated code runs at
  // the real CPL 3 and must not change its own translation) and, in its last 2 MiB, the vCPU page
  // (user-writable, never executable; translated code reaches it through GS, the guest's own
  // accesses through DS, ES and SS stop at their limit below the TC).
  PhysicalBus& bus = machine.core.bus();
  const uint64_t tables = tc_page_tables(tc_bytes_);
  const uint64_t pdpt = guest_.reserved_physical(), pd = pdpt + kPage, vcpu_pt = pd + kPage, vcpu = vcpu_pt + kPage;
  const uint64_t tc_pt = vcpu + kPage, tc = tc_pt + tables * kPage;
  for (uint64_t k = 0; k < (4 + tables) * kPagesPerTable; ++k) bus.write(pdpt + k * 8, 8, 0);
  const auto entry = [](uint64_t table, uint64_t linear, unsigned level) { return table + index_at(linear, level) * 8; };
  bus.write(entry(pdpt, kVcpuPageLinear, 3), 8, pd | PTE_P | PTE_RW | PTE_US);
  for (uint64_t k = 0; k < tables; ++k)
    bus.write(entry(pd, kTcLinearBase + k * kLargePageBytes, 2), 8, (tc_pt + k * kPage) | PTE_P | PTE_RW | PTE_US);
  for (uint64_t page = 0; page < tc_bytes_ / kPage; ++page)
    bus.write(tc_pt + page * 8, 8, (tc + page * kPage) | PTE_P | PTE_US);
  bus.write(entry(pd, kVcpuPageLinear, 2), 8, vcpu_pt | PTE_P | PTE_RW | PTE_US);
  bus.write(entry(vcpu_pt, kVcpuPageLinear, 1), 8, vcpu | PTE_P | PTE_RW | PTE_US | PTE_XD);
  guest_.shadow().map_in_kernel_shadows(kVcpuPageLinear, pdpt | PTE_P | PTE_RW | PTE_US);
  vcpu_page_physical_ = vcpu;
  vcpu_page_ = bus.host_frame(vcpu);
  if (!vcpu_page_) throw std::invalid_argument("binary_translation: the vCPU page at " + hex(vcpu) + " is not RAM");
  std::vector<uint8_t*> pages;
  for (uint64_t page = 0; page < tc_bytes_ / kPage; ++page) {
    pages.push_back(bus.host_frame(tc + page * kPage));
    if (!pages.back())
      throw std::invalid_argument("binary_translation: the translation cache at " + hex(tc) + " is not RAM");
  }
  Core& core = machine.core;
  const Behavior sreg = system_config(core).profile.at_cpl_above_0(SensitiveInsn::MovFromSreg);
  const SregRead sreg_read = sreg == Behavior::Classic       ? SregRead::RealRpl
                             : sreg == Behavior::Insensitive ? SregRead::GuestRpl
                                                             : SregRead::Traps;
  translator_ = std::make_unique<BtTranslator>(
      std::move(pages), kTcLinearBase, tc, unit_instructions_,
      [&core](uint64_t paddr, uint64_t size) {
        if (size) core.invalidate_decoded(paddr, size);
      },
      sreg_read, /*vcpu_page=*/true);
  guest_.after_project = [this](Core& real) { place_real_rip(real); };
  // EFER.LMSLE checks DS, ES and SS at CPL 3 only where their limits are below 4 GiB: in
  // translated code (enter_translated); the guest's user code keeps its flat segments.
  guest_.set_real_efer_features(EFER_LMSLE);
  guest_.before_enter = [this](Core& real) { return leave_translated(real); };
  guest_.inline_interrupt_window = [this]() -> std::optional<bool> {
    if (!translated_real_state_) return std::nullopt;
    const CpuState& r = real_->state();
    return vcpu_field(VcpuPage::kIf) != 0 && !r.interrupt_shadow && !translator_->holds_interrupts(r.rip);
  };
  guest_.on_code_write = [this](uint64_t frame) { code_written(frame); };
}

void BinaryTranslationVmm::attach(Core& real) {
  real_ = &real;
  guest_.attach(real);
  leak_detector_ = std::make_unique<LeakDetector>(guest_.vcpu(), guest_.shadow(), leaks_, options_.conceal_leaks,
                                                  [this](Core& core) { guest_.project(core); });
  real.remark_decoded();  // marks the TC's exits and the user code's sensitive instructions
}

bool BinaryTranslationVmm::translated_mode() const {
  const VirtualCpu* vcpu = guest_.vcpu_if_attached();
  return vcpu && guest_.direct() && vcpu->state().mode() == Mode::Long64 && vcpu->cpl() == 0;
}

void BinaryTranslationVmm::place_real_rip(Core& real) {
  // Translated code runs at other addresses than the guest's and one translated block at a time:
  // the guest's debug registers and RFLAGS.TF would have to be emulated by the translator.
  const CpuState& v = guest_.vcpu().state();
  translated_real_state_ = false;
  if (translated_mode() && ((v.dr[7] & DR7_ENABLES) || (v.rflags & TF))) {
    real.shutdown("binary_translation: the guest kernel enables " +
                  std::string(v.rflags & TF ? "single-stepping (RFLAGS.TF)" : "a hardware breakpoint (DR7)") +
                  " in code the VMM translates: debug traps of translated code are not implemented");
    return;
  }
  if (!translated_mode()) return;
  const uint64_t guest_rip = guest_.vcpu().state().rip;
  const uint64_t tc = guest_rip == continue_guest_ && continue_tc_ ? continue_tc_ : tc_entry(guest_rip);
  if (!tc) {
    send_to_untranslatable(real, guest_rip);  // RIP is the guest's already
    return;
  }
  real.state().rip = tc;
  enter_translated(real);
}

void BinaryTranslationVmm::enter_translated(Core& real) {
  CpuState& r = real.state();
  for (SegReg s : {DS, ES, SS}) r.seg[s].limit = kTranslatedDataLimit;
  r.seg[GS].base = kVcpuPageLinear;
  real.sync_mode();
  translated_real_state_ = true;
  // The guest's state that inline sequences read (and kIf, which they also write), as the
  // virtual CPU has it.
  VirtualCpu& vcpu = guest_.vcpu();
  const CpuState& v = vcpu.state();
  uint64_t cr8 = v.cr8;  // as MOV r, CR8 reads it: from the local APIC's TPR where there is one
  if (MsrDevice* apic = system_config(vcpu.core()).msr_device) apic->read_cr8(cr8);
  vcpu_field(VcpuPage::kIf) = v.rflags & IF;
  vcpu_field(VcpuPage::kIopl) = v.rflags & IOPL;
  vcpu_field(VcpuPage::kCr0) = v.cr0;
  vcpu_field(VcpuPage::kCr4) = v.cr4;
  vcpu_field(VcpuPage::kCr8) = cr8;
  vcpu_field(VcpuPage::kTr) = v.tr.selector;
  vcpu_field(VcpuPage::kLdtr) = v.ldtr.selector;
  vcpu_field(VcpuPage::kGdtrLimit) = v.gdtr.limit;
  vcpu_field(VcpuPage::kGdtrBase) = v.gdtr.base;
  vcpu_field(VcpuPage::kIdtrLimit) = v.idtr.limit;
  vcpu_field(VcpuPage::kIdtrBase) = v.idtr.base;
}

std::optional<bool> BinaryTranslationVmm::leave_translated(Core& real) {
  if (!translated_real_state_) return std::nullopt;
  translated_real_state_ = false;
  VirtualCpu& vcpu = guest_.vcpu();
  CpuState& r = real.state();
  // Stopped inside an inline sequence (its store to guest memory faulted): the guest's registers
  // it borrowed are in the scratch slots.
  const uint8_t borrowed = translator_->in_tc(r.rip) ? translator_->borrowed_at(r.rip) : 0;
  if (borrowed & VcpuPage::kBorrowsRax) r.gpr[RAX] = vcpu_field(VcpuPage::kScratch);
  if (borrowed & VcpuPage::kBorrowsRcx) r.gpr[RCX] = vcpu_field(VcpuPage::kScratch2);
  for (SegReg s : {DS, ES, SS, GS}) r.seg[s] = vcpu.real_segment(vcpu.state(), s);
  real.sync_mode();
  return vcpu_field(VcpuPage::kIf) != 0;
}

uint64_t BinaryTranslationVmm::tc_entry(uint64_t guest_rip) {
  const uint64_t tc = translator_->lookup(guest_rip);
  return tc ? tc : translate(guest_rip);
}

// Guest kernel code that cannot be fetched (not mapped, not executable, or device memory) is not
// translated: the real CPU is sent to the guest's address itself, where its fetch faults through
// the shadows as the guest's would, and the VMM takes that fault as any other (the guest's own #PF
// reflected, or the instruction emulated from device memory). Never into the VMM's own memory.
bool BinaryTranslationVmm::send_to_untranslatable(Core& real, uint64_t guest_rip) {
  if (!is_vmm_linear(guest_rip)) return true;
  real.shutdown("binary_translation: the guest kernel's code branches to " + hex(guest_rip) +
                ", which is the VMM's memory (the translation cache and the vCPU page); stopped before the fetch");
  return false;
}

uint64_t BinaryTranslationVmm::translate(uint64_t guest_rip) {
  VirtualCpu& vcpu = guest_.vcpu();
  std::vector<uint64_t> frames;
  // The guest's walk for an instruction fetch at `linear`, where it reaches RAM.
  const auto fetch_walk = [&](uint64_t linear) -> std::optional<WalkResult> {
    WalkRequest req;
    req.linear = linear;
    req.access = AccessKind::Execute;
    const WalkResult w = page_walk(vcpu.state(), vcpu.bus(), req);
    if (!w.ok || !guest_.shadow().is_ram(w.paddr)) return std::nullopt;
    return w;
  };
  if (!fetch_walk(guest_rip)) return 0;
  const BtTranslator::CodeReader read = [&](uint64_t linear, uint8_t* out, unsigned size, uint64_t* frame) {
    const std::optional<WalkResult> walk = fetch_walk(linear);
    if (!walk) return false;
    const WalkResult& w = *walk;
    const uint64_t in_page = kPage - (w.paddr & (kPage - 1));
    if (size > in_page) size = static_cast<unsigned>(in_page);
    for (unsigned k = 0; k < size; ++k) out[k] = static_cast<uint8_t>(vcpu.bus().read(w.paddr + k, 1));
    *frame = w.paddr >> 12;
    frames.push_back(*frame);
    return true;
  };
  const uint64_t before = translator_->counters().guest_instructions;
  std::optional<uint64_t> tc = translator_->translate(guest_rip, read);
  if (!tc) {  // full: flushed whole, and every frame it was made from is writable again
    for (const auto& [frame, units] : translator_->units_by_frame()) guest_.shadow().release_code_frame(frame);
    translator_->flush();
    faults_at_.clear();
    continue_tc_ = 0;
    frames.clear();
    tc = translator_->translate(guest_rip, read);
    if (!tc) throw std::logic_error("binary_translation: an empty translation cache has no room for one unit");
  }
  translate_cycles_ += (translator_->counters().guest_instructions - before) * costs_.bt_translate;
  for (uint64_t frame : frames) guest_.shadow().note_code_frame(frame);
  return *tc;
}

void BinaryTranslationVmm::code_written(uint64_t frame) {
  counters_.smc_invalidations += translator_->invalidate_frame(frame);
  guest_.shadow().release_code_frame(frame);
  continue_tc_ = 0;  // the unit a callout would go on in may be gone
}

namespace {

// A transfer that can take directly running 32-bit kernel code into 64-bit code (whose
// instructions must then run translated): far JMP, CALL and RET, and IRET.
bool is_far_transfer(const Insn& insn) {
  const bool transfer = insn.mnemonic == ZYDIS_MNEMONIC_JMP || insn.mnemonic == ZYDIS_MNEMONIC_CALL ||
                        insn.mnemonic == ZYDIS_MNEMONIC_RET;
  return insn.cls == InsnClass::Iret || (transfer && insn.cls == InsnClass::System);
}

}  // namespace

bool BinaryTranslationVmm::wants_before(const Insn& insn, uint64_t paddr) {
  if (translator_->is_tc_physical(paddr)) return translator_->exit_at_physical(paddr) != nullptr;
  return is_far_transfer(insn) || (leak_detector_ && leak_detector_->watches(insn));
}

PreExecute BinaryTranslationVmm::before_instruction(Core& real, const Insn& insn) {
  const uint64_t rip = real.state().rip;
  if (!translator_->in_tc(rip)) {
    watched_in_kernel_ = guest_.vcpu().cpl() == 0;  // the 32-bit boot, which runs directly
    if (watched_in_kernel_ && is_far_transfer(insn)) {  // it may enter 64-bit code: a callout
      watching_ = false;
      return emulate_callout(real, TcExit{TcExit::Kind::Emulate, rip, real.next_rip(), 0, 0, 0, &insn});
    }
    watching_ = leak_detector_->watches(insn);
    if (!watching_) return PreExecute::Execute;
    leaks_before_ = leaks_.total();
    leak_detector_->before(real, insn);
    return PreExecute::Execute;
  }
  const TcExit* exit = translator_->exit_at(rip);
  if (!exit) throw std::logic_error("binary_translation: a marked TC instruction at " + hex(rip) + " is no exit");
  const TcExit copy = *exit;  // translating may flush the TC, and the exit with it
  return copy.kind == TcExit::Kind::Emulate ? emulate_callout(real, copy) : branch_exit(real, copy);
}

void BinaryTranslationVmm::after_instruction(Core& real, const Insn&) {
  if (!watching_) return;
  leak_detector_->after(real);
  if (watched_in_kernel_) counters_.kernel_leaks += leaks_.total() - leaks_before_;
}

PreExecute BinaryTranslationVmm::emulate_callout(Core& real, const TcExit& exit) {
  ++counters_.callouts;
  callouts_.record(emulated_insn_name(*exit.insn));
  callout_cycles_ += costs_.bt_callout;
  guest_.enter(real, DeprivilegedGuest::Entry::Callout);
  guest_.vcpu().state().rip = exit.guest_rip;
  guest_.emulate_instruction();
  continue_guest_ = exit.guest_next;
  continue_tc_ = exit.tc_next;
  guest_.resume(real, DeprivilegedGuest::Entry::Callout);
  continue_guest_ = ~0ull;
  continue_tc_ = 0;
  real.set_next_rip(real.state().rip);
  return PreExecute::Skip;
}

PreExecute BinaryTranslationVmm::branch_exit(Core& real, const TcExit& exit) {
  if (exit.kind == TcExit::Kind::Jump) {
    ++counters_.translator_entries;
    callout_cycles_ += costs_.bt_callout;
    const uint64_t target = tc_entry(exit.guest_target);
    if (!target) {  // left unchained: the guest may map the code later
      if (send_to_untranslatable(real, exit.guest_target)) real.set_next_rip(exit.guest_target);
      return PreExecute::Skip;
    }
    const TcExit* still = translator_->exit_at(exit.tc);
    if (still && still->kind == TcExit::Kind::Jump) {  // not flushed while translating
      translator_->chain(exit.tc, target);
      ++counters_.chained;
    }
    real.set_next_rip(target);
    return PreExecute::Skip;
  }
  const Insn& insn = *exit.insn;
  CpuState& s = real.state();
  uint64_t guest_target = exit.guest_next;
  switch (exit.kind) {
    case TcExit::Kind::Return:
      guest_target = real.pop_sized(insn.opsize);
      if (insn.num_ops > 0 && insn.op[0].kind == OpKind::Imm) s.gpr[RSP] += static_cast<uint64_t>(insn.op[0].value);
      break;
    case TcExit::Kind::Indirect: {
      Operand target = insn.op[0];
      if (target.kind == OpKind::Mem && target.base == kRipReg) {  // relative to the guest's RIP
        target.base = kNoReg;
        target.value += static_cast<int64_t>(exit.guest_next);
      }
      guest_target = real.get<uint64_t>(insn, target);
      if (insn.mnemonic == ZYDIS_MNEMONIC_CALL) real.push<uint64_t>(exit.guest_next);
      break;
    }
    case TcExit::Kind::Counted: {
      const uint64_t mask = Core::size_mask(insn.addrsize);
      bool taken;
      if (insn.mnemonic == ZYDIS_MNEMONIC_LOOP || insn.mnemonic == ZYDIS_MNEMONIC_LOOPE ||
          insn.mnemonic == ZYDIS_MNEMONIC_LOOPNE) {
        const uint64_t count = (s.gpr[RCX] - 1) & mask;
        s.gpr[RCX] = (s.gpr[RCX] & ~mask) | count;
        taken = count != 0 && (insn.mnemonic == ZYDIS_MNEMONIC_LOOP ||
                               (insn.mnemonic == ZYDIS_MNEMONIC_LOOPE) == ((s.rflags & ZF) != 0));
      } else {
        taken = (s.gpr[RCX] & mask) == 0;
      }
      if (taken) guest_target = exit.guest_target;
      break;
    }
    default:
      throw std::logic_error("binary_translation: unexpected exit kind");
  }
  ++hook_branches_;
  ++counters_.lookups;
  lookup_cycles_ += costs_.bt_indirect;
  uint64_t tc = translator_->lookup(guest_target);
  if (!tc) {
    ++counters_.lookup_misses;
    tc = translate(guest_target);
  }
  if (!tc && !send_to_untranslatable(real, guest_target)) return PreExecute::Skip;
  real.set_next_rip(tc ? tc : guest_target);
  return PreExecute::Skip;
}

void BinaryTranslationVmm::count_tc_fault(uint64_t tc) {
  ++counters_.tc_faults;
  if (++faults_at_[tc] == adapt_after_ && translator_->make_callout(tc)) ++counters_.adaptations;
}

std::optional<TrapCause> BinaryTranslationVmm::take_event(Core& real, const Event& event) {
  const TrapCause cause = trap_cause(event);
  if (!guest_.direct()) {
    guest_.take_while_interpreting(real, event);
    return cause;
  }
  leak_detector_->cancel();
  const uint64_t real_rip = real.state().rip;
  const bool in_tc = translator_->in_tc(real_rip);
  guest_.enter(real);
  if (in_tc) guest_.vcpu().state().rip = translator_->guest_rip_at(real_rip);
  std::optional<TrapCause> taken = cause;
  if (event.kind != EventKind::Exception || event.vector == DB) {
    guest_.reflect(event);  // interrupts, INT n (a callout: only from user code), and #DB traps
  } else if (event.vector != PF_) {
    guest_.emulate_instruction();  // the guest's own fault, or what trapped in its user code
  } else if (in_tc && is_vmm_linear(event.cr2)) {
    real.shutdown("binary_translation: the guest kernel's code at " + hex(guest_.vcpu().state().rip) + " addresses " +
                  hex(event.cr2) +
                  ", which is the VMM's memory (its area, or PML4 slot 511 of the translation cache and the vCPU "
                  "page); stopped before the access");
    return cause;
  } else {
    const DeprivilegedGuest::PageFault result = guest_.handle_page_fault(real, event);
    if (result == DeprivilegedGuest::PageFault::Mmio) taken = TrapCause::Mmio;
    if (result == DeprivilegedGuest::PageFault::TracedWrite && in_tc) count_tc_fault(real_rip);
  }
  if (!real.is_shutdown()) guest_.resume(real);
  return taken;
}

double BinaryTranslationVmm::direct_fraction() const {
  const VirtualCpu* vcpu = guest_.vcpu_if_attached();
  if (!real_ || !vcpu) return 0.0;
  const uint64_t skipped = counters_.callouts + hook_branches_ + counters_.translator_entries;
  const double direct = static_cast<double>(real_->counters().retired - skipped);
  const double by_vmm = static_cast<double>(vcpu->executed() - (leak_detector_ ? leak_detector_->evaluations() : 0) +
                                            hook_branches_);
  const double all = direct + by_vmm;
  return all > 0 ? direct / all : 0.0;
}

void BinaryTranslationVmm::bind_statistics(stats::Registry& r) {
  guest_.bind_statistics(r);
  using stats::Unit;
  const TranslatorCounters& t = translator_->counters();
  r.bind("vmm.bt.units", Unit::Count, "translation units made", &t.units);
  r.bind("vmm.bt.translated", Unit::Instructions, "guest kernel instructions translated", &t.guest_instructions);
  r.bind("vmm.bt.translated_ident", Unit::Instructions, "of which copied (IDENT)", &t.ident);
  r.bind("vmm.bt.translated_rebased", Unit::Instructions,
         "of the IDENT ones, RIP-relative operands re-based to the guest address", &t.rebased);
  r.bind("vmm.bt.translated_callouts", Unit::Instructions,
         "of which privileged or sensitive: callouts into the VMM", &t.callouts);
  r.bind("vmm.bt.translated_inline", Unit::Instructions,
         "of which sensitive but translated inline (on the vCPU page; MOV r, Sreg with the guest's RPL)", &t.inlined);
  r.bind_family("vmm.bt.inline", Unit::Instructions,
                "guest kernel instructions of this mnemonic translated into inline sequences (no callout)",
                &t.inlined_by_mnemonic.by_mnemonic());
  r.bind("vmm.bt.translated_branches", Unit::Instructions,
         "of which control flow: chained exits or translation-cache lookups", &t.branches);
  r.formula("vmm.bt.tc_bytes_used", Unit::Bytes, "bytes of the translation cache in use at the end",
            [this] { return static_cast<double>(translator_->bytes_used()); });
  r.bind("vmm.bt.tc_flushes", Unit::Count, "times the full translation cache was flushed", &t.flushes);
  r.bind("vmm.bt.lookups", Unit::Count, "RET and indirect branch targets looked up (guest -> TC address)",
         &counters_.lookups);
  r.bind("vmm.bt.lookup_misses", Unit::Count, "of which had no translation yet", &counters_.lookup_misses);
  r.bind("vmm.bt.translator_entries", Unit::Count, "direct-branch exits taken before they were chained",
         &counters_.translator_entries);
  r.bind("vmm.bt.chained", Unit::Count, "direct-branch exits chained to their target's translation",
         &counters_.chained);
  r.bind("vmm.bt.smc_invalidations", Unit::Count, "units dropped because the guest wrote their code",
         &counters_.smc_invalidations);
  r.bind("vmm.bt.tc_faults", Unit::Count, "page faults of translated stores on traced guest page tables or translated code",
         &counters_.tc_faults);
  r.bind("vmm.bt.kernel_leaks", Unit::Count,
         "leaks of guest kernel code (only its 32-bit boot runs directly; its 64-bit code is translated)",
         &counters_.kernel_leaks);
  r.bind("vmm.bt.adaptations", Unit::Count, "faulting translated stores retranslated into callouts",
         &counters_.adaptations);
}

}  // namespace pgsim::vmm

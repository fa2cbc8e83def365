// vmm.strategy: binary_translation — VMware's VMM of 1999 (Adams and Agesen, ASPLOS 2006). The
// guest runs deprivileged as under trap_emulate (models/vmm/deprivileged_guest.h: the VMM's
// descriptor tables, shadow page tables, the virtual CPU), but none of its 64-bit kernel code runs
// directly: while the guest is in its kernel, the real CPU executes translations of it from the
// translation cache (TC, models/vmm/bt_translator.h) in the VMM's memory, mapped read-only and
// user-executable in the kernel-mode shadows only. Its user code runs directly, watched for leaks
// as under trap_emulate. The real RIP is in the TC while the virtual RIP is the guest's: every
// entry into the VMM maps one to the other.
//
// Ways into the VMM, by reason:
//   a callout (an exit the hook marked in the TC)   a privileged or sensitive instruction: emulated
//                                                   on the virtual CPU (vmm.callouts.<mnemonic>);
//                                                   an unchained direct branch: the target
//                                                   translated and the branch chained; RET and
//                                                   indirect branches: the guest -> TC lookup
//   an exception or interrupt                       as under trap_emulate, at the guest RIP the
//                                                   TC address stands for
//
// Coherence: frames that units were translated from are write-protected in the shadows; a write
// to one drops its units (vmm.bt.smc_invalidations). A store in translated code that keeps
// faulting on a traced page table is retranslated into a callout after vmm.bt.adapt_after faults
// (vmm.bt.adaptations). A full TC is flushed whole (vmm.bt.tc_flushes).
//
// 32-bit protected mode (the Multiboot entry and the boot up to the far jump into 64-bit code)
// is not translated: it runs directly, deprivileged, as trap_emulate runs it, its sensitive
// instructions watched by the leak detector; its far transfers (JMP, CALL, RET far and IRET),
// which may enter 64-bit code, are callouts, so that the first 64-bit instruction runs translated.
#pragma once
#include <cstdint>
#include <memory>
#include <unordered_map>

#include "models/vmm/bt_translator.h"
#include "models/vmm/deprivileged_vmm.h"
#include "models/vmm/leak_detector.h"
#include "models/vmm/vmm.h"

namespace pgsim::vmm {

// The vCPU page's linear address (models/vmm/bt_translator.h, VcpuPage): the last page of the
// linear address space (PML4 slot 511, kernel-mode shadows only).
constexpr uint64_t kVcpuPageLinear = 0xFFFFFFFFFFFFF000ull;
// The TC's: the kMaxTcBytes right below the vCPU page's 2 MiB region, in the top 4 GiB like it.
// While translated code runs, the VMM limits the real DS, ES and SS below the TC with
// EFER.LMSLE, so that the TC and the vCPU page are out of reach of the guest's data accesses:
// the real CPU fetches translated code from the TC (instruction fetch is not limit-checked) and
// translated code reaches the vCPU page through GS only (its base is the page then).
constexpr uint64_t kLargePageBytes = 2ull << 20;
constexpr uint64_t kTcLinearBase = (kVcpuPageLinear & ~(kLargePageBytes - 1)) - kMaxTcBytes;
static_assert(kTcLinearBase == 0xFFFFFFFFFFA00000ull && kMaxTcBytes % kLargePageBytes == 0);

struct BtCounters {
  uint64_t lookups = 0;             // RET and indirect branches looked up (guest -> TC address)
  uint64_t lookup_misses = 0;       // of which found no translation (translated then)
  uint64_t translator_entries = 0;  // unchained direct-branch exits taken (each then chained)
  uint64_t chained = 0;             // direct-branch exits chained to their target's translation
  uint64_t callouts = 0;            // callouts executed (instructions emulated for translated code)
  uint64_t smc_invalidations = 0;   // units dropped because their guest code was written
  uint64_t adaptations = 0;         // faulting stores retranslated into callouts
  uint64_t tc_faults = 0;           // page faults of translated stores on traced page tables or translated code
  uint64_t kernel_leaks = 0;        // leaks of guest kernel code (of the leak log's total)
};

class BinaryTranslationVmm final : public DeprivilegedVmm {
 public:
  BinaryTranslationVmm(const Machine& machine, const VmmCosts& costs, const VmmOptions& options = {});

  const char* strategy() const override { return "binary_translation"; }
  void attach(isa::Core& core) override;
  std::optional<TrapCause> take_event(isa::Core& core, const isa::Event& event) override;
  bool wants_before(const isa::Insn& insn, uint64_t paddr) override;
  isa::PreExecute before_instruction(isa::Core& core, const isa::Insn& insn) override;
  void after_instruction(isa::Core& core, const isa::Insn& insn) override;
  // User instructions and translated kernel instructions the real CPU executed outside the hook
  // (IDENT copies, chained branches) over those plus what the VMM executed for the guest
  // (callouts and interpreted instructions on the virtual CPU, branches the hook carried out).
  double direct_fraction() const override;
  GuestState guest_state(const isa::Core&) const override {
    return translated_mode() ? GuestState::Translated : guest_.guest_state();
  }
  void bind_statistics(stats::Registry& registry) override;

  const BtTranslator& translator() const { return *translator_; }
  uint64_t vcpu_page_physical() const { return vcpu_page_physical_; }
  const BtCounters& counters() const { return counters_; }
  const ShadowCounters& shadow() const { return guest_.shadow().counters(); }
  uint64_t emulated() const { return guest_.emulated(); }
  uint64_t interpreted() const { return guest_.interpreted(); }
  const std::string& first_violation() const { return guest_.first_violation(); }

 private:
  // The guest is in its 64-bit kernel: its code runs from the TC.
  bool translated_mode() const;
  // The TC address to run guest kernel code at `guest_rip` from (translated now if need be).
  uint64_t tc_entry(uint64_t guest_rip);
  uint64_t translate(uint64_t guest_rip);  // 0 where the guest's code at guest_rip cannot be fetched
  bool send_to_untranslatable(isa::Core& real, uint64_t guest_rip);
  void place_real_rip(isa::Core& real);  // DeprivilegedGuest::after_project
  void code_written(uint64_t frame);     // DeprivilegedGuest::on_code_write
  isa::PreExecute emulate_callout(isa::Core& real, const TcExit& exit);
  isa::PreExecute branch_exit(isa::Core& real, const TcExit& exit);
  void count_tc_fault(uint64_t tc);
  // The real state of translated code (DeprivilegedGuest::after_project): GS on the vCPU page,
  // DS, ES and SS limited below the TC, EFER.LMSLE; and the vCPU page written from the virtual CPU.
  void enter_translated(isa::Core& real);
  // Undoes that at an entry into the VMM and returns the guest's IF from the vCPU page
  // (DeprivilegedGuest::before_enter); nullopt outside translated code.
  std::optional<bool> leave_translated(isa::Core& real);
  uint64_t& vcpu_field(uint32_t offset) const { return *reinterpret_cast<uint64_t*>(vcpu_page_ + offset); }

  VmmOptions options_;
  VmmCosts costs_;
  unsigned unit_instructions_, adapt_after_;
  uint64_t tc_bytes_;
  DeprivilegedGuest& deprivileged() override { return guest_; }
  const DeprivilegedGuest& deprivileged() const override { return guest_; }
  DeprivilegedGuest guest_;
  std::unique_ptr<LeakDetector> leak_detector_;
  std::unique_ptr<BtTranslator> translator_;
  isa::Core* real_ = nullptr;
  uint8_t* vcpu_page_ = nullptr;  // the host memory of the vCPU page
  uint64_t vcpu_page_physical_ = 0;
  bool translated_real_state_ = false;  // enter_translated set the real state up for translated code
  // A callout that returns to the next guest instruction goes on in its unit.
  uint64_t continue_guest_ = ~0ull, continue_tc_ = 0;
  std::unordered_map<uint64_t, unsigned> faults_at_;  // TC address -> traced-write faults there
  BtCounters counters_;
  bool watching_ = false;           // the leak detector watches the instruction executing
  bool watched_in_kernel_ = false;  // the watched instruction is guest kernel code
  uint64_t leaks_before_ = 0;
  uint64_t hook_branches_ = 0;  // branches the hook carried out (not executed by the real CPU)
  uint64_t &translate_cycles_, &callout_cycles_, &lookup_cycles_;
};

}  // namespace pgsim::vmm

// vmm: which virtualization strategy runs the guest, and what its operations cost.
//
// Defaults describe one modern Intel core; configs/eras/ holds presets for other generations.
#include "models/vmm/bt_translator.h"
#include "models/vmm/vmm.h"
#include "platforms/config/cpu_model.h"
#include "platforms/config/schema_sections.h"

namespace pgsim::config {

namespace {

void cost(Schema& s, const std::string& name, int64_t cycles, const std::string& what) {
  s.add(integer("vmm.cost." + name, cycles, "cycles", 0, 10'000'000, what));
}

// The memory virtualization each strategy uses when vmm.paging is auto (native runs on the guest's
// own tables; interpret walks them in software).
std::string paging_for(const std::string& strategy) { return vmm::strategy_info(strategy).default_paging; }

std::vector<std::string> strategy_names() {
  std::vector<std::string> names;
  for (const vmm::StrategyInfo& s : vmm::strategies()) names.push_back(s.name);
  return names;
}

}  // namespace

void declare_vmm(Schema& s) {
  s.add(choice("vmm.strategy", "native", strategy_names(),
               "how the guest kernel is run: directly, interpreted, deprivileged with "
               "trap-and-emulate, binary-translated, paravirtualized or with VT-x-like hardware"));
  s.add(choice("vmm.paging", "auto", {"auto", "none", "shadow", "nested", "direct"},
               "memory virtualization; auto: none for native and interpret, shadow for "
               "trap_emulate and binary_translation, direct for paravirt, nested for hw_assist"));
  s.add(choice("vmm.leak_policy", "expose", {"expose", "conceal"},
               "a sensitive instruction that did not trap: the guest sees the real result "
               "(expose, as hardware does) or the virtual one (conceal; the leak is only counted)"));
  s.add(integer("vmm.deprivileged_cpl_prot32", 1, "", 1, 3,
                "trap_emulate: the CPL the real CPU runs the guest kernel at while the guest is in 32-bit "
                "protected mode (it runs in compatibility mode; its user code at 3; IA-32e mode uses 3)"));
  s.add(integer("vmm.shadow.cached_roots", 8, "roots", 0, 4096,
                "shadow page-table roots kept across address-space switches"));

  s.add(boolean("vmm.hw_assist.tpr_shadow", true,
                "hw_assist: the VMCS's \"use TPR shadow\" (MOV to/from CR8 reach a virtual TPR without a VM "
                "exit); false: every CR8 access exits"));
  s.add(boolean("vmm.hw_assist.vpid", true,
                "hw_assist: tag the guest's TLB entries with a VPID, so that VM exits and entries keep them"));
  s.add(choice("vmm.ept.page_size", "2M", {"4K", "2M", "1G"},
               "hw_assist with nested paging: the page size the EPT maps guest RAM with"));
  s.add(choice("vmm.ept.layout", "shuffled", {"shuffled", "identity"},
               "hw_assist with nested paging: where guest RAM sits in host RAM: in 2 MiB chunks in a "
               "shuffled order (guest-physical differs from host-physical) or at the same addresses"));
  s.add(integer("vmm.bt.unit_instructions", 12, "instructions", 1, 64,
                "binary_translation: guest instructions in one translation unit at most (a unit also ends at "
                "control flow)"));
  s.add(integer("vmm.bt.tc_bytes", 1 << 20, "bytes", 4096, static_cast<int64_t>(vmm::kMaxTcBytes),
                "binary_translation: size of the translation cache (a multiple of 4096); when it is full it is flushed whole"));
  s.add(integer("vmm.bt.adapt_after", 4, "faults", 1, 1'000'000,
                "binary_translation: page faults of one translated store on a traced guest page table after "
                "which it is retranslated into a callout"));

  cost(s, "trap_cycles", 150, "a fault from the deprivileged guest into the VMM");
  cost(s, "resume_cycles", 80, "the VMM's return to the deprivileged guest");
  cost(s, "emulate_cycles", 100, "the VMM's handler emulating one privileged instruction");
  cost(s, "emulate_io_cycles", 400, "the VMM's handler emulating one port I/O instruction");
  cost(s, "reflect_cycles", 200,
       "the VMM delivering one exception or interrupt to the guest through its virtual IDT (gate "
       "lookup, frame on the guest's stack), as the CPU would natively");
  cost(s, "emulate_mmio_cycles", 500,
       "the VMM's handler emulating one guest access to device memory (MMIO), which shadow page "
       "tables never map: decoding the faulting instruction and carrying it out on the device");
  cost(s, "shadow_fill_cycles", 400, "building a missing shadow page-table entry (hidden fault)");
  cost(s, "shadow_trace_cycles", 600, "emulating a write to a write-protected guest page table or GDT page");
  cost(s, "interpret_cycles", 30, "interpreting one guest instruction in software");
  cost(s, "soft_mmu_cycles", 10, "one memory access through the interpreter's software MMU");
  cost(s, "device_model_cycles", 100,
       "one guest device register access served by the VMM's software device model (under a VMM "
       "the guest's devices are virtual: this replaces the device latency, timing.cpi.io)");
  cost(s, "bt_translate_cycles", 300, "translating one guest instruction into the code cache");
  cost(s, "bt_callout_cycles", 60, "a callout from translated code into the VMM");
  cost(s, "bt_indirect_cycles", 20, "looking up an indirect branch target in translated code");
  cost(s, "hypercall_cycles", 150, "a paravirtual hypercall into the VMM and back");
  cost(s, "hypercall_handler_cycles", 50,
       "paravirt: the VMM's handler of one hypercall operation, each of a multicall's counted (estimate)");
  cost(s, "pt_validate_cycles", 40,
       "paravirt: validating one page-table request of the guest (an update, a pin or unpin, a root "
       "load) against the frame types of direct paging (estimate)");
  cost(s, "vmexit_cycles", 250, "a hardware VM exit (guest state saved, host state loaded)");
  cost(s, "vmentry_cycles", 250, "a hardware VM entry");

  s.add_derivation([](Config& c) {
    if (c.str("vmm.paging") == "auto")
      c.set("vmm.paging", paging_for(c.str("vmm.strategy")),
            Origin{Origin::Kind::Derived, {}, 0, 0, "vmm.strategy"});
  });
  s.add_rule([](const Config& c) {
    const std::string& strategy = c.str("vmm.strategy");
    const std::string& paging = c.str("vmm.paging");
    std::string why;
    if (paging == "nested" && strategy != "hw_assist")
      why = "nested paging is a hardware feature: it needs vmm.strategy: hw_assist";
    else if (paging == "direct" && strategy != "paravirt")
      why = "direct paging needs a guest that validates its updates by hypercall: "
            "vmm.strategy: paravirt";
    else if (paging == "none" && strategy != "native" && strategy != "interpret")
      why = "a guest running on the real CPU under a VMM needs its memory virtualized "
            "(shadow, or " + paging_for(strategy) + ")";
    else if (paging != "none" && (strategy == "native" || strategy == "interpret"))
      why = strategy + " runs the guest's own page tables: vmm.paging must be none";
    if (!why.empty())
      c.fail_at_set({"vmm.paging", "vmm.strategy"}, "vmm.paging '" + paging + "' with vmm.strategy '" + strategy + "': " + why);
    if (paging == "nested" && c.str("vmm.ept.page_size") == "1G" && c.str("vmm.ept.layout") == "shuffled")
      c.fail_at_set({"vmm.ept.layout", "vmm.ept.page_size"}, "1G EPT pages cannot map guest RAM in shuffled 2 MiB chunks: use "
                               "vmm.ept.layout: identity, or vmm.ept.page_size: 4K or 2M");
    if (strategy == "hw_assist" && !cpu_has_vmx(c))
      c.fail_at_set({"vmm.strategy", "cpu.vmx"}, "hw_assist needs the hardware extension: set cpu.vmx: true");
  });
}

}  // namespace pgsim::config

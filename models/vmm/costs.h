// What the VMM's operations cost, in cycles (vmm.cost.* in the config; configs/eras/ has presets).
#pragma once
#include <cstdint>

namespace pgsim::vmm {

struct VmmCosts {
  uint64_t trap = 150;          // a fault from the deprivileged guest into the VMM
  uint64_t resume = 80;         // the VMM's return to the deprivileged guest
  uint64_t emulate = 100;       // the VMM's handler emulating one privileged instruction
  uint64_t emulate_io = 400;    // the VMM's handler emulating one port I/O instruction
  uint64_t reflect = 200;       // delivering one exception or interrupt through the guest's virtual IDT
  uint64_t emulate_mmio = 500;  // the VMM's handler emulating one guest access to device memory (MMIO)
  uint64_t shadow_fill = 400;   // building a missing shadow page-table entry (hidden fault)
  uint64_t shadow_trace = 600;  // emulating a write to a write-protected guest page table or GDT page
  uint64_t interpret = 30;      // fetching, decoding and dispatching one guest instruction in software
  uint64_t soft_mmu = 10;       // one guest data access through the interpreter's software MMU
  uint64_t device_model = 100;  // one guest device access served by the VMM's software device model
  uint64_t vmexit = 250;        // a hardware VM exit (guest state saved, host state loaded)
  uint64_t vmentry = 250;       // a hardware VM entry (checks, guest state loaded, event injected)
  uint64_t bt_translate = 300;  // translating one guest instruction into the translation cache
  uint64_t bt_callout = 60;     // a callout from translated code into the VMM and back
  uint64_t bt_indirect = 20;    // looking up an indirect branch target (guest -> TC address)
  uint64_t hypercall = 150;          // a paravirtual hypercall into the VMM and back (the crossing)
  uint64_t hypercall_handler = 50;   // the VMM's handler of one hypercall operation (each of a multicall's)
  uint64_t pt_validate = 40;         // validating one page-table request (an update, pin, unpin or root)
};

}  // namespace pgsim::vmm

/* The guest hypervisor test kernel (guestvmx.c, guestvmx.S): addresses and numbers its C and
 * assembly halves share. Macros only, so that the assembler can include it. */
#ifndef GUESTVMX_H
#define GUESTVMX_H

/* The nested guest's data pages (identity-mapped by the EPT, 4-8 MiB by its own page table):
 * the first is absent from its page table until the hypervisor handles the page fault, the second
 * read-only in the EPT until the hypervisor handles the EPT violation. */
#define GUEST_FAULT_PAGE 0x500000
#define GUEST_EPT_PAGE 0x600000
#define GUEST_IO_PORT 0x80
#define GUEST_IO_VALUE 0x42
#define GUEST_STORE_VALUE 0x1234

/* VMCS field encodings (Intel SDM vol. 3, appendix B). */
#define HOST_RSP 0x6C14
#define HOST_RIP 0x6C16

/* The GDT's selectors: flat 32-bit code and data, the TSS. */
#define SEL_CODE 0x08
#define SEL_DATA 0x10
#define SEL_TSS 0x18

#endif

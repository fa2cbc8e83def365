/* The table of privileged operations (like Linux's pv_ops). Every privileged or sensitive
 * operation of the kernel goes through it (except the boot code before detection, boot.S, and the
 * selftest's probes, which execute sensitive instructions on purpose), so one image runs natively
 * (pvops_native.c) or, when a pgsim hypervisor is present, with hypercalls (pvops_pv.c, the ABI in
 * pv_abi.h). The check a real kernel makes on the interrupt state sits in the wrappers below,
 * outside the table, so it applies to every implementation. */
#ifndef PGSIM_PVOPS_H
#define PGSIM_PVOPS_H
#include "arch.h"

struct trapframe;

struct pvops {
    const char *name;
    /* ---- the interrupt flag ---- */
    u64 (*save_fl)(void);             /* read RFLAGS (PUSHF); only IF matters to callers */
    void (*restore_fl)(u64 flags);    /* write RFLAGS back (POPF) */
    void (*irq_disable)(void);        /* CLI */
    void (*irq_enable)(void);         /* STI */
    void (*halt)(void);               /* wait for an interrupt (HLT) */
    u64 (*read_cr8)(void);            /* task priority */
    void (*write_cr8)(u64 priority);
    /* ---- descriptor tables, the kernel stack, the way back to user ---- */
    void (*load_segments)(const struct dtr *gdtr, u16 tss_selector); /* LGDT, CS/DS/ES/SS, LTR */
    void (*load_idt)(const struct dtr *idtr);
    void (*set_kernel_stack)(u64 top);     /* where events from ring 3 land (TSS.RSP0) */
    void (*syscall_init)(void (*entry)(void)); /* the SYSCALL MSRs */
    NORETURN void (*trap_return)(struct trapframe *tf); /* IRETQ or SYSRETQ */
    /* ---- the boot checks ---- */
    u16 (*code_selector)(void); /* CS: its RPL is the ring (paravirtually the virtual ring) */
    /* NULL when the machine holds the tables the kernel installed, else the failed check's name */
    const char *(*check_descriptor_tables)(const struct dtr *gdtr, const struct dtr *idtr);
    /* The kernel may execute sensitive instructions itself (the selftest's ring-0 probes): false
     * where it is deprivileged and asks the hypervisor instead, as an OS ported to it does. */
    bool sensitive_instructions;
    /* ---- memory management ---- */
    void (*load_roots)(u64 kernel_root, u64 user_root); /* switch address space (CR3) */
    void (*invlpg)(u64 va);                             /* drop one TLB entry */
    void (*set_pte)(u64 *pte, u64 value);               /* write one page-table entry */
    void (*mmu_flush)(void);         /* make every set_pte and invlpg so far take effect */
    u64 (*table_alloc)(void);        /* a zeroed frame that will be a page table */
    void (*table_free)(u64 frame);   /* a frame that no longer is one */
    void (*aspace_ready)(u64 kernel_root, u64 user_root);   /* a new address space is complete */
    void (*aspace_release)(u64 kernel_root, u64 user_root); /* ... is about to be freed */
    /* Unmaps one page of an address space being freed (Linux's ptep_get_and_clear_full): natively
     * a plain store into a table the MMU may still walk; NULL paravirtually, where the released
     * tables go back to the frame allocator unvalidated and nothing walks them any more. */
    void (*pte_clear_full)(u64 *pte);
    u64 (*fault_address)(void);      /* CR2 */
    bool separate_user_root;         /* ring 3 runs on a root of its own (direct paging) */
    /* ---- devices ---- */
    u8 (*inb)(u16 port);
    void (*outb)(u16 port, u8 value);
    void (*outw)(u16 port, u16 value);
    void (*console_write)(const char *s, usize n); /* the serial console, '\n' sent as "\r\n" */
    void (*timer_start)(void);       /* the periodic tick at VEC_TIMER */
    void (*timer_ack)(void);         /* end of a tick (EOI) */
};

extern struct pvops pvops;
extern const struct pvops native_pvops;
extern const struct pvops pv_pvops;

/* Picks the table before the kernel's first privileged operation in 64-bit code (kmain's first
 * call); pvops_report prints the choice once the console works. */
void pvops_select(void);
void pvops_report(void);
bool pv_hypervisor_present(void);
void pv_start(void);                  /* pvops_pv.c: registers the shared-info page */
void pv_mm_init(u64 ram_end);         /* pvops_pv.c: the kernel's validated address space */
void pv_set_batch_size(u64 n);        /* pvbatch=N */
#define PVBATCH_DEFAULT 64 /* page-table updates per hypercall in lazy MMU mode */
#define PVBATCH_MAX 256

/* Lazy MMU mode (Linux's arch_enter/leave_lazy_mmu_mode): between begin and end, page-table
 * updates and TLB invalidations may be queued and issued together (paravirtually: one
 * hypercall per batch); end issues what is left. Natively every update takes effect at once. */
void lazy_mmu_begin(void);
void lazy_mmu_end(void);
bool lazy_mmu_active(void);

/* Interrupt-state save (PUSHF; CLI) and restore (POPF, then the check on IF). */
u64 irq_save(void);
void irq_restore(u64 flags);

static inline u8 inb(u16 port) { return pvops.inb(port); }
static inline void outb(u16 port, u8 v) { pvops.outb(port, v); }
static inline void outw(u16 port, u16 v) { pvops.outw(port, v); }

#endif

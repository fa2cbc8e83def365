/* The table of privileged operations (like Linux's pv_ops). Everything privileged the kernel does
 * goes through it, so one image runs natively or, once the paravirtual implementation exists,
 * with hypercalls. The check a real kernel makes on the interrupt state sits in the wrappers
 * below, outside the table, so it applies to every implementation. */
#ifndef PGSIM_PVOPS_H
#define PGSIM_PVOPS_H
#include "arch.h"

struct trapframe;

struct pvops {
    const char *name;
    u64 (*save_fl)(void);             /* read RFLAGS (PUSHF) */
    void (*restore_fl)(u64 flags);    /* write RFLAGS back (POPF) */
    void (*irq_disable)(void);        /* CLI */
    void (*irq_enable)(void);         /* STI */
    void (*write_cr3)(u64 pml4_phys); /* switch address space */
    void (*invlpg)(u64 va);           /* drop one TLB entry */
    void (*set_pte)(u64 *pte, u64 value); /* write one page-table entry */
    void (*load_gdt)(const struct dtr *gdtr);
    void (*load_idt)(const struct dtr *idtr);
    void (*load_tr)(u16 selector);
    u8 (*inb)(u16 port);
    void (*outb)(u16 port, u8 value);
    void (*outw)(u16 port, u16 value);
    void (*halt)(void);                            /* wait for an interrupt (HLT) */
    NORETURN void (*return_to_user)(struct trapframe *tf); /* IRETQ or SYSRETQ */
};

extern struct pvops pvops;

void pvops_init(void);

/* Interrupt-state save (PUSHF; CLI) and restore (POPF, then the check on IF). */
u64 irq_save(void);
void irq_restore(u64 flags);

static inline u8 inb(u16 port) { return pvops.inb(port); }
static inline void outb(u16 port, u8 v) { pvops.outb(port, v); }
static inline void outw(u16 port, u16 v) { pvops.outw(port, v); }

#endif

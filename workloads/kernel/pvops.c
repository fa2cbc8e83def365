/* The native implementation of the privileged-operation table, the interrupt-state wrappers
 * with their checks, and the detection of a pgsim hypervisor. */
#include "kernel.h"

static u64 native_save_fl(void) { return read_rflags(); }
static void native_restore_fl(u64 f) { __asm__ volatile("pushq %0; popfq" ::"r"(f) : "memory", "cc"); }
static void native_irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
static void native_irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
static void native_write_cr3(u64 v) { __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory"); }
static void native_invlpg(u64 va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }
static void native_set_pte(u64 *pte, u64 v) { *(volatile u64 *)pte = v; }
static void native_load_gdt(const struct dtr *d) { __asm__ volatile("lgdt %0" ::"m"(*d)); }
static void native_load_idt(const struct dtr *d) { __asm__ volatile("lidt %0" ::"m"(*d)); }
static void native_load_tr(u16 sel) { __asm__ volatile("ltr %0" ::"r"(sel)); }
static u8 native_inb(u16 port) {
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static void native_outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static void native_outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static void native_halt(void) { __asm__ volatile("hlt" ::: "memory"); }

/* A frame built by the SYSCALL entry goes back with SYSRETQ, every other one with IRETQ. */
static NORETURN void native_return_to_user(struct trapframe *tf) {
    if (tf->vector == VEC_FROM_SYSCALL)
        trapret_sysret(tf);
    trapret_iret(tf);
}

struct pvops pvops = {
    .name = "native",
    .save_fl = native_save_fl,
    .restore_fl = native_restore_fl,
    .irq_disable = native_irq_disable,
    .irq_enable = native_irq_enable,
    .write_cr3 = native_write_cr3,
    .invlpg = native_invlpg,
    .set_pte = native_set_pte,
    .load_gdt = native_load_gdt,
    .load_idt = native_load_idt,
    .load_tr = native_load_tr,
    .inb = native_inb,
    .outb = native_outb,
    .outw = native_outw,
    .halt = native_halt,
    .return_to_user = native_return_to_user,
};

/* CPUID leaf 0x40000000 carries a hypervisor's signature in EBX, ECX, EDX. */
static bool pgsim_hypervisor_present(void) {
    static const char signature[12] = {'p', 'g', 's', 'i', 'm', 'v', 'm', 'm', 0, 0, 0, 0};
    struct cpuid_regs r = cpuid(0x40000000, 0);
    u32 words[3] = {r.ebx, r.ecx, r.edx};
    const char *got = (const char *)words;
    for (int i = 0; i < 12; i++)
        if (got[i] != signature[i])
            return false;
    return true;
}

void pvops_init(void) {
    if (pgsim_hypervisor_present())
        kprintf("hypervisor pgsim detected; paravirtual operations not built, using native\n");
    else
        kprintf("hypervisor: none detected\n");
    kprintf("pvops: %s\n", pvops.name);
}

u64 irq_save(void) {
    u64 flags = pvops.save_fl();
    pvops.irq_disable();
    return flags;
}

/* Interrupts that were on before a critical section must be on after it: a restore that loses
 * IF would leave the machine deaf to its timer. */
void irq_restore(u64 flags) {
    pvops.restore_fl(flags);
    if ((flags & RFLAGS_IF) && !(pvops.save_fl() & RFLAGS_IF))
        check_failed("irq_restore");
}

/* The native implementation of the privileged-operation table: the instructions themselves. */
#include "kernel.h"

static u64 native_save_fl(void) { return read_rflags(); }
static void native_restore_fl(u64 f) { __asm__ volatile("pushq %0; popfq" ::"r"(f) : "memory", "cc"); }
static void native_irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
static void native_irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
static void native_halt(void) { __asm__ volatile("hlt" ::: "memory"); }
static u64 native_read_cr8(void) { return read_cr8(); }
static void native_write_cr8(u64 v) { write_cr8(v); }

/* LGDT, then a far return reloads CS and the data segments follow; LTR marks the TSS busy. */
static void native_load_segments(const struct dtr *gdtr, u16 tss_selector) {
    __asm__ volatile("lgdt %0" ::"m"(*gdtr));
    __asm__ volatile("pushq %0\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:\n\t"
                     "mov %1, %%ds\n\t"
                     "mov %1, %%es\n\t"
                     "mov %1, %%ss\n\t"
                     :
                     : "i"((u64)KERNEL_CS), "r"((u64)KERNEL_DS)
                     : "rax", "memory");
    __asm__ volatile("ltr %0" ::"r"(tss_selector));
}
static void native_load_idt(const struct dtr *d) { __asm__ volatile("lidt %0" ::"m"(*d)); }

/* SYSCALL enters at CS 0x08; SYSRET returns to CS 0x18+16 = 0x2B, SS 0x18+8 = 0x23. */
static void native_syscall_init(void (*entry)(void)) {
    wrmsr(MSR_STAR, ((u64)(USER_CS32 & ~3) << 48) | ((u64)KERNEL_CS << 32));
    wrmsr(MSR_LSTAR, (u64)entry);
    wrmsr(MSR_FMASK, RFLAGS_IF | (1UL << 10) /* DF */ | (1UL << 8) /* TF */ | (1UL << 18) /* AC */);
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
}

/* A frame built by the SYSCALL entry goes back to ring 3 with SYSRETQ, every other one with IRETQ. */
static NORETURN void native_trap_return(struct trapframe *tf) {
    if (tf->vector == VEC_FROM_SYSCALL)
        native_trapret_sysret(tf);
    native_trapret_iret(tf);
}

static u16 native_code_selector(void) { return read_cs(); }

/* SGDT and SIDT must report the tables the kernel loaded. */
static const char *native_check_descriptor_tables(const struct dtr *gdtr, const struct dtr *idtr) {
    struct dtr seen;
    sgdt(&seen);
    if (seen.base != gdtr->base || seen.limit != gdtr->limit)
        return "sgdt";
    sidt(&seen);
    if (seen.base != idtr->base || seen.limit != idtr->limit)
        return "sidt";
    return NULL;
}

/* One root: the kernel's mappings are supervisor-only in every address space. */
static void native_load_roots(u64 kernel_root, u64 user_root) {
    __asm__ volatile("mov %0, %%cr3" ::"r"(kernel_root) : "memory");
}
static void native_invlpg(u64 va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }
static void native_set_pte(u64 *pte, u64 v) { *(volatile u64 *)pte = v; }
static void native_pte_clear_full(u64 *pte) { *(volatile u64 *)pte = 0; }
/* Natively every update takes effect when it is made: nothing is ever queued. */
static void native_mmu_flush(void) {}
/* The CPU needs nothing to be told about a new or dying address space. */
static void native_aspace_change(u64 kernel_root, u64 user_root) {}
static u64 native_fault_address(void) { return read_cr2(); }

static u8 native_inb(u16 port) {
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static void native_outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static void native_outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }

const struct pvops native_pvops = {
    .name = "native",
    .save_fl = native_save_fl,
    .restore_fl = native_restore_fl,
    .irq_disable = native_irq_disable,
    .irq_enable = native_irq_enable,
    .halt = native_halt,
    .read_cr8 = native_read_cr8,
    .write_cr8 = native_write_cr8,
    .load_segments = native_load_segments,
    .load_idt = native_load_idt,
    .set_kernel_stack = native_set_kernel_stack,
    .syscall_init = native_syscall_init,
    .trap_return = native_trap_return,
    .code_selector = native_code_selector,
    .check_descriptor_tables = native_check_descriptor_tables,
    .load_roots = native_load_roots,
    .invlpg = native_invlpg,
    .set_pte = native_set_pte,
    .mmu_flush = native_mmu_flush,
    .table_alloc = frame_alloc,
    .table_free = frame_free,
    .aspace_ready = native_aspace_change,
    .aspace_release = native_aspace_change,
    .pte_clear_full = native_pte_clear_full,
    .fault_address = native_fault_address,
    .separate_user_root = false,
    .sensitive_instructions = true,
    .inb = native_inb,
    .outb = native_outb,
    .outw = native_outw,
    .console_write = native_console_write,
    .timer_start = native_timer_start,
    .timer_ack = native_timer_ack,
};

/* Descriptor tables (GDT with the TSS, IDT), the SYSCALL MSRs, and the checks a kernel makes on
 * them at boot: it runs in ring 0 and the CPU reports the tables it loaded. */
#include "kernel.h"

/* 64-bit TSS: only RSP0 matters (the kernel stack for interrupts from ring 3). */
struct __attribute__((packed)) tss64 {
    u32 reserved0;
    u64 rsp[3];
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3;
    u16 iomap_base;
};

/* An IDT gate: a 64-bit interrupt gate (type 0xE) clears IF on entry. */
struct __attribute__((packed)) idt_gate {
    u16 offset_low;
    u16 selector;
    u8 ist;
    u8 type_attr;
    u16 offset_mid;
    u32 offset_high;
    u32 reserved;
};
#define GATE_INTERRUPT 0x8E
#define GATE_DPL3 0x60

/* The accessed bits are preset (types 0x9B/0x93, as Linux does): the processor would set them on
 * the first segment load, and emulators differ in whether they write that back.
 * The GDT has a page of its own (page-aligned, as Linux's gdt_page): a VMM that shadows it
 * write-protects that page, and then nothing else the kernel writes should live there. */
static struct __attribute__((aligned(PAGE_SIZE))) {
    u64 entry[8];
} gdt_page = {{
    0,
    0x00AF9B000000FFFF, /* 0x08 kernel code, 64-bit */
    0x00CF93000000FFFF, /* 0x10 kernel data */
    0x00CFFB000000FFFF, /* 0x18 user code, 32-bit (SYSRET's layout; unused) */
    0x00CFF3000000FFFF, /* 0x20 user data */
    0x00AFFB000000FFFF, /* 0x28 user code, 64-bit */
    0, 0,               /* 0x30 TSS (16 bytes, filled in below) */
}};
#define gdt (gdt_page.entry)
_Static_assert(sizeof(gdt_page) == PAGE_SIZE, "the GDT's page holds nothing else");
static struct idt_gate idt[256] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));
static struct dtr gdtr, idtr;
u64 syscall_kernel_rsp;

extern const char trap_stubs[]; /* entry.S: 16 bytes per vector */
#define TRAP_STUB(v) ((u64)trap_stubs + 16 * (u64)(v))
extern char syscall_entry[];

static void set_gate(int vector, u64 handler, u8 attr) {
    idt[vector] = (struct idt_gate){
        .offset_low = (u16)handler, .selector = KERNEL_CS, .ist = 0, .type_attr = attr,
        .offset_mid = (u16)(handler >> 16), .offset_high = (u32)(handler >> 32), .reserved = 0};
}

static void install_tss_descriptor(void) {
    u64 base = (u64)&tss, limit = sizeof(tss) - 1;
    tss.iomap_base = sizeof(tss); /* no I/O bitmap: ring 3 has no port access */
    gdt[TSS_SEL / 8] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89UL << 40) |
                       (((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFF) << 56);
    gdt[TSS_SEL / 8 + 1] = base >> 32;
}

static void reload_segments(void) {
    /* A far return reloads CS; the data segments follow. */
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
}

static void boot_checks(void) {
    /* Ring 0: the RPL of CS is the current privilege level. */
    u16 cs = read_cs();
    kprintf("check: cs=0x%x cpl=%u\n", cs, cs & 3);
    CHECK((cs & 3) == 0, "ring0");
    struct dtr seen;
    sgdt(&seen);
    CHECK(seen.base == gdtr.base && seen.limit == gdtr.limit, "sgdt");
    sidt(&seen);
    CHECK(seen.base == idtr.base && seen.limit == idtr.limit, "sidt");
    kprintf("check: gdt=0x%lx/%u idt=0x%lx/%u as loaded\n", gdtr.base, gdtr.limit, idtr.base,
            idtr.limit);
}

void cpu_init(void) {
    install_tss_descriptor();
    gdtr = (struct dtr){.limit = sizeof(gdt) - 1, .base = (u64)gdt};
    pvops.load_gdt(&gdtr);
    reload_segments();
    pvops.load_tr(TSS_SEL);

    for (int v = 0; v < 256; v++)
        set_gate(v, TRAP_STUB(v), GATE_INTERRUPT);
    set_gate(VEC_SYSCALL_INT, TRAP_STUB(VEC_SYSCALL_INT), GATE_INTERRUPT | GATE_DPL3);
    set_gate(VEC_PROBE_USER, TRAP_STUB(VEC_PROBE_USER), GATE_INTERRUPT | GATE_DPL3);
    idtr = (struct dtr){.limit = sizeof(idt) - 1, .base = (u64)idt};
    pvops.load_idt(&idtr);

    /* SYSCALL enters at CS 0x08; SYSRET returns to CS 0x18+16 = 0x2B, SS 0x18+8 = 0x23. */
    wrmsr(MSR_STAR, ((u64)(USER_CS32 & ~3) << 48) | ((u64)KERNEL_CS << 32));
    wrmsr(MSR_LSTAR, (u64)syscall_entry);
    wrmsr(MSR_FMASK, RFLAGS_IF | (1UL << 10) /* DF */ | (1UL << 8) /* TF */ | (1UL << 18) /* AC */);
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);

    boot_checks();
}

void cpu_set_kernel_stack(u64 top) {
    tss.rsp[0] = top;
    syscall_kernel_rsp = top;
}

/* Descriptor tables (GDT with the TSS, IDT), the SYSCALL entry, and the checks a kernel makes on
 * them at boot: it runs in ring 0 and the CPU reports the tables it loaded (paravirtually: the
 * hypervisor says the virtual ring and accepted the trap table). */
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
extern void syscall_entry(void);

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

static void boot_checks(void) {
    /* Ring 0: the RPL of CS is the current privilege level. */
    u16 cs = pvops.code_selector();
    kprintf("check: cs=0x%x cpl=%u\n", cs, cs & 3);
    CHECK((cs & 3) == 0, "ring0");
    const char *failed = pvops.check_descriptor_tables(&gdtr, &idtr);
    if (failed)
        check_failed(failed);
    kprintf("check: gdt=0x%lx/%u idt=0x%lx/%u as loaded\n", gdtr.base, gdtr.limit, idtr.base,
            idtr.limit);
}

void cpu_init(void) {
    install_tss_descriptor();
    gdtr = (struct dtr){.limit = sizeof(gdt) - 1, .base = (u64)gdt};
    pvops.load_segments(&gdtr, TSS_SEL);

    for (int v = 0; v < 256; v++)
        set_gate(v, TRAP_STUB(v), GATE_INTERRUPT);
    set_gate(VEC_SYSCALL_INT, TRAP_STUB(VEC_SYSCALL_INT), GATE_INTERRUPT | GATE_DPL3);
    set_gate(VEC_PROBE_USER, TRAP_STUB(VEC_PROBE_USER), GATE_INTERRUPT | GATE_DPL3);
    idtr = (struct dtr){.limit = sizeof(idt) - 1, .base = (u64)idt};
    pvops.load_idt(&idtr);

    pvops.syscall_init(syscall_entry);

    boot_checks();
}

/* Where the CPU switches stacks on an interrupt from ring 3. */
void native_set_kernel_stack(u64 top) { tss.rsp[0] = top; }

void cpu_set_kernel_stack(u64 top) {
    pvops.set_kernel_stack(top);
    syscall_kernel_rsp = top;
}

/* The raw x86-64 instructions the kernel uses, one inline function each, and the structures they
 * take. The privileged and sensitive ones are used only by the native implementation of the pvops
 * table (pvops_native.c): the rest of the kernel reaches them through the table (pvops.h). */
#ifndef PGSIM_ARCH_H
#define PGSIM_ARCH_H
#include "types.h"

#define RFLAGS_CF   (1UL << 0)
#define RFLAGS_ZF   (1UL << 6)
#define RFLAGS_IF   (1UL << 9)
#define RFLAGS_IOPL (3UL << 12)

#define CR0_PE (1UL << 0)
#define CR0_WP (1UL << 16)
#define CR0_PG (1UL << 31)

#define MSR_EFER  0xC0000080
#define MSR_STAR  0xC0000081
#define MSR_LSTAR 0xC0000082
#define MSR_FMASK 0xC0000084
#define EFER_SCE  (1UL << 0)

struct cpuid_regs { u32 eax, ebx, ecx, edx; };

/* The operand of LGDT/LIDT/SGDT/SIDT. */
struct __attribute__((packed)) dtr {
    u16 limit;
    u64 base;
};

/* An IDT gate (64-bit): a 64-bit interrupt gate (type 0xE) clears IF on entry. */
struct __attribute__((packed)) idt_gate {
    u16 offset_low;
    u16 selector;
    u8 ist;
    u8 type_attr;
    u16 offset_mid;
    u32 offset_high;
    u32 reserved;
};
#define GATE_PRESENT 0x80
#define GATE_TYPE_MASK 0x0F
#define GATE_TYPE_INTERRUPT 0x0E
#define GATE_INTERRUPT (GATE_PRESENT | GATE_TYPE_INTERRUPT)
#define GATE_DPL3 0x60

static inline struct cpuid_regs cpuid(u32 leaf, u32 subleaf) {
    struct cpuid_regs r;
    __asm__ volatile("cpuid" : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx)
                     : "a"(leaf), "c"(subleaf));
    return r;
}
static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}
static inline u64 read_rflags(void) {
    u64 f;
    __asm__ volatile("pushfq; popq %0" : "=r"(f));
    return f;
}
static inline u16 read_cs(void) {
    u16 cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    return cs;
}
static inline u64 rdmsr(u32 msr) {
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v) {
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}
static inline u64 read_cr0(void) { u64 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline u64 read_cr2(void) { u64 v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline u64 read_cr3(void) { u64 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline u64 read_cr4(void) { u64 v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline u64 read_cr8(void) { u64 v; __asm__ volatile("mov %%cr8, %0" : "=r"(v)); return v; }
static inline void write_cr8(u64 v) { __asm__ volatile("mov %0, %%cr8" ::"r"(v) : "memory"); }
static inline void sgdt(struct dtr *d) { __asm__ volatile("sgdt %0" : "=m"(*d)); }
static inline void sidt(struct dtr *d) { __asm__ volatile("sidt %0" : "=m"(*d)); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

#endif

/* The sensitive instructions of x86, one probe each, shared by the kernel (ring 0) and the
 * selftest program (ring 3): both include this header, so both run exactly the same code.
 *
 * A probe arms a fault resume point before its instruction: R15 = the address after it,
 * R14 = -1. If the instruction faults, the kernel resumes at R15 with R14 = vector | (n << 8)
 * (see trap.c); otherwise R14 stays -1. Values that a probe reports are the same on every
 * faithful machine running this image; they differ only where a machine leaks its real state. */
#ifndef PGSIM_PROBES_H
#define PGSIM_PROBES_H
#include "types.h"

struct probe_result {
    u64 value;
    u64 fault; /* the vector of the fault the instruction raised, or PROBE_NO_FAULT */
    u64 zf;    /* ZF after LAR/LSL/VERR/VERW */
};
#define PROBE_NO_FAULT 0xFF

#define PROBE_ARM "movq %%rsp, %%r13\n\tleaq 9f(%%rip), %%r15\n\tmovq $-1, %%r14\n\t"
#define PROBE_DONE "\n9:\n\tmovq %%r13, %%rsp\n\txorl %%r15d, %%r15d\n\tmovq %%r14, %[fault]\n\t"
/* R13 keeps RSP: a probe that faults after a push resumes with its stack as it was. */
#define PROBE_CLOBBERS "rax", "rbx", "rcx", "rdx", "r13", "r14", "r15", "memory", "cc"

#define SEL_KERNEL_CS 0x08
#define SEL_KERNEL_DS 0x10
#define SEL_USER_DS 0x23
#define SEL_USER_CS 0x2B
#define SEL_TSS 0x30

static inline void probe_finish(struct probe_result *r, u64 r14) {
    r->fault = r14 == (u64)-1 ? PROBE_NO_FAULT : (r14 & 0xFF);
    if (r->fault != PROBE_NO_FAULT)
        r->value = 0;
}

/* One instruction that writes a 64-bit register result. */
#define PROBE_REG(fn, insn)                                                                    \
    static void fn(struct probe_result *r) {                                                   \
        u64 v = 0, f;                                                                          \
        __asm__ volatile(PROBE_ARM insn PROBE_DONE                                             \
                         : [val] "+r"(v), [fault] "=&r"(f)::PROBE_CLOBBERS);                   \
        r->value = v;                                                                          \
        probe_finish(r, f);                                                                    \
    }

/* One instruction with no result but whether it faulted. */
#define PROBE_ONLY(fn, insn)                                                                   \
    static void fn(struct probe_result *r) {                                                   \
        u64 f;                                                                                 \
        __asm__ volatile(PROBE_ARM insn PROBE_DONE : [fault] "=&r"(f)::PROBE_CLOBBERS);         \
        r->value = 0;                                                                          \
        probe_finish(r, f);                                                                    \
    }

/* LAR, LSL, VERR, VERW on a selector: the result register (if any) and ZF. */
#define PROBE_SEL(fn, insn, selector)                                                          \
    static void fn(struct probe_result *r) {                                                   \
        u64 v = 0, f, z = 0;                                                                   \
        __asm__ volatile(PROBE_ARM insn "\n\tsetz %b[zf]" PROBE_DONE                           \
                         : [val] "+r"(v), [fault] "=&r"(f), [zf] "+r"(z)                       \
                         : [sel] "r"((u64)(selector))                                          \
                         : PROBE_CLOBBERS);                                                    \
        r->value = v;                                                                          \
        r->zf = z & 1;                                                                         \
        probe_finish(r, f);                                                                    \
    }

/* Descriptor-table and machine-status stores (the UMIP set). */
#define PROBE_STORE_DT(fn, insn, field)                                                        \
    static void fn(struct probe_result *r) {                                                   \
        struct __attribute__((packed)) { u16 limit; u64 base; } d = {0, 0};                    \
        u64 f;                                                                                 \
        __asm__ volatile(PROBE_ARM insn " %[d]" PROBE_DONE                                     \
                         : [d] "=m"(d), [fault] "=&r"(f)::PROBE_CLOBBERS);                     \
        r->value = d.field;                                                                    \
        probe_finish(r, f);                                                                    \
    }

PROBE_STORE_DT(probe_sgdt_base, "sgdt", base)
PROBE_STORE_DT(probe_sgdt_limit, "sgdt", limit)
PROBE_STORE_DT(probe_sidt_base, "sidt", base)
PROBE_STORE_DT(probe_sidt_limit, "sidt", limit)
PROBE_REG(probe_sldt, "sldt %k[val]")
PROBE_REG(probe_str, "str %k[val]")
PROBE_REG(probe_smsw, "smsw %k[val]\n\tandl $0xFFFF, %k[val]") /* the low 16 bits are defined */
PROBE_REG(probe_mov_cs, "movl %%cs, %k[val]")
PROBE_REG(probe_mov_ss, "movl %%ss, %k[val]")
PROBE_REG(probe_mov_ds, "movl %%ds, %k[val]")
/* MOV to DS of the kernel's data selector (DPL 0): fine in ring 0, #GP in ring 3. */
PROBE_REG(probe_mov_to_ds, "movl %%ds, %%ecx\n\tmovl $0x10, %%eax\n\tmovl %%eax, %%ds\n\t"
                           "movl %%ds, %k[val]\n\tmovl %%ecx, %%ds")
/* PUSHF after an instruction that sets the arithmetic flags to known values (ZF=PF=1). */
PROBE_REG(probe_pushf, "xorl %k[val], %k[val]\n\tpushfq\n\tpopq %[val]")
/* POPF asked to toggle IF (then IOPL): 1 if the change took effect, 0 if it was ignored. */
PROBE_REG(probe_popf_if, "pushfq\n\tpopq %%rcx\n\tmovq %%rcx, %%rdx\n\txorq $0x200, %%rdx\n\t"
                         "pushq %%rdx\n\tpopfq\n\tpushfq\n\tpopq %%rdx\n\tpushq %%rcx\n\tpopfq\n\t"
                         "xorq %%rcx, %%rdx\n\tshrq $9, %%rdx\n\tandl $1, %%edx\n\tmovq %%rdx, %[val]")
PROBE_REG(probe_popf_iopl, "pushfq\n\tpopq %%rcx\n\tmovq %%rcx, %%rdx\n\txorq $0x3000, %%rdx\n\t"
                           "pushq %%rdx\n\tpopfq\n\tpushfq\n\tpopq %%rdx\n\tpushq %%rcx\n\tpopfq\n\t"
                           "xorq %%rcx, %%rdx\n\tshrq $12, %%rdx\n\tandl $3, %%edx\n\t"
                           "setnz %%dl\n\tmovzbl %%dl, %k[val]")
/* IRETQ to the same privilege level with IF toggled: 1 if the change took effect. */
PROBE_REG(probe_iret_if, "pushfq\n\tpopq %%rcx\n\tmovq %%rsp, %%rdx\n\t"
                         "movl %%ss, %%eax\n\tpushq %%rax\n\tpushq %%rdx\n\t"
                         "movq %%rcx, %%rax\n\txorq $0x200, %%rax\n\tpushq %%rax\n\t"
                         "movl %%cs, %%eax\n\tpushq %%rax\n\tleaq 8f(%%rip), %%rax\n\tpushq %%rax\n\t"
                         "iretq\n8:\n\tpushfq\n\tpopq %%rdx\n\tpushq %%rcx\n\tpopfq\n\t"
                         "xorq %%rcx, %%rdx\n\tshrq $9, %%rdx\n\tandl $1, %%edx\n\tmovq %%rdx, %[val]")
/* PUSH CS (0x0E) does not exist in 64-bit mode: #UD everywhere. */
PROBE_ONLY(probe_push_cs, ".byte 0x0e\n\taddq $8, %%rsp")
/* Far CALL through an m16:32 pointer to this code segment; the callee reads CS and returns. */
PROBE_REG(probe_far_call, "subq $16, %%rsp\n\tleaq 7f(%%rip), %%rax\n\tmovl %%eax, (%%rsp)\n\t"
                          "movl %%cs, %%eax\n\tmovw %%ax, 4(%%rsp)\n\tlcall *(%%rsp)\n\t"
                          "addq $16, %%rsp\n\tjmp 6f\n7:\n\tmovl %%cs, %k[val]\n\tlretl\n6:")
/* Far JMP through an m16:32 pointer to this code segment. */
PROBE_REG(probe_far_jmp, "subq $16, %%rsp\n\tleaq 7f(%%rip), %%rax\n\tmovl %%eax, (%%rsp)\n\t"
                         "movl %%cs, %%eax\n\tmovw %%ax, 4(%%rsp)\n\tljmp *(%%rsp)\n"
                         "7:\n\taddq $16, %%rsp\n\tmovl %%cs, %k[val]")
/* Far RET to this code segment (how kernels reload CS). */
PROBE_REG(probe_far_ret, "movl %%cs, %%eax\n\tpushq %%rax\n\tleaq 7f(%%rip), %%rax\n\tpushq %%rax\n\t"
                         "lretq\n7:\n\tmovl %%cs, %k[val]")
/* INT n: the handler returns the CS it found in its frame (its RPL is the caller's CPL). */
PROBE_REG(probe_int_dpl3, "movq $-1, %%rax\n\tint $0x81\n\tmovq %%rax, %[val]")
PROBE_REG(probe_int_dpl0, "movq $-1, %%rax\n\tint $0x82\n\tmovq %%rax, %[val]")
PROBE_ONLY(probe_int3, "int3")
/* LAR, LSL, VERR, VERW: descriptor information any ring may ask for, filtered by privilege. */
PROBE_SEL(probe_lar_kernel_cs, "larl %k[sel], %k[val]", SEL_KERNEL_CS)
PROBE_SEL(probe_lar_user_cs, "larl %k[sel], %k[val]", SEL_USER_CS)
PROBE_SEL(probe_lar_tss, "larl %k[sel], %k[val]", SEL_TSS)
PROBE_SEL(probe_lsl_user_ds, "lsll %k[sel], %k[val]", SEL_USER_DS)
PROBE_SEL(probe_lsl_tss, "lsll %k[sel], %k[val]", SEL_TSS)
PROBE_SEL(probe_verr_kernel_cs, "verr %w[sel]", SEL_KERNEL_CS)
PROBE_SEL(probe_verr_user_cs, "verr %w[sel]", SEL_USER_CS)
PROBE_SEL(probe_verw_kernel_ds, "verw %w[sel]", SEL_KERNEL_DS)
PROBE_SEL(probe_verw_user_ds, "verw %w[sel]", SEL_USER_DS)
/* CPUID: 1 when leaf 1 reports TSC, MSR, PAE and APIC and the extended leaves report long mode
 * and SYSCALL (vendor strings and model numbers differ between machines, so they are not shown). */
PROBE_REG(probe_cpuid, "movl $1, %%eax\n\tcpuid\n\tandl $0x270, %%edx\n\tcmpl $0x270, %%edx\n\t"
                       "sete %%cl\n\tmovl $0x80000001, %%eax\n\tpushq %%rbx\n\tpushq %%rcx\n\tcpuid\n\t"
                       "popq %%rcx\n\tpopq %%rbx\n\tandl $0x20000800, %%edx\n\t"
                       "cmpl $0x20000800, %%edx\n\tsete %%al\n\tandb %%cl, %%al\n\tmovzbl %%al, %k[val]")
/* RDTSC: 1 when it works and counts forward. */
PROBE_REG(probe_rdtsc, "rdtsc\n\tshlq $32, %%rdx\n\torq %%rax, %%rdx\n\tmovq %%rdx, %%rcx\n\t"
                       "rdtsc\n\tshlq $32, %%rdx\n\torq %%rax, %%rdx\n\tcmpq %%rcx, %%rdx\n\t"
                       "setae %%al\n\tmovzbl %%al, %k[val]")
/* Privileged instructions: they work in ring 0 and raise #GP in ring 3. The ring-0 forms
 * change nothing (they write back what is there). */
PROBE_ONLY(probe_cli_sti, "pushfq\n\tcli\n\tpopfq")
PROBE_REG(probe_mov_from_cr0, "movq %%cr0, %[val]")
PROBE_REG(probe_mov_from_cr4, "movq %%cr4, %[val]")
PROBE_ONLY(probe_mov_to_cr3, "movq %%cr3, %%rax\n\tmovq %%rax, %%cr3")
PROBE_REG(probe_mov_cr8, "movq %%cr8, %%rax\n\tmovq %%rax, %%cr8\n\tmovq %%rax, %[val]")
PROBE_REG(probe_rdmsr_efer, "movl $0xC0000080, %%ecx\n\trdmsr\n\tshlq $32, %%rdx\n\torq %%rax, %%rdx\n\t"
                            "movq %%rdx, %[val]")
PROBE_ONLY(probe_wrmsr_efer, "movl $0xC0000080, %%ecx\n\trdmsr\n\twrmsr")
PROBE_REG(probe_in, "inb $0x21, %%al\n\tmovzbl %%al, %k[val]")
PROBE_ONLY(probe_out, "inb $0x21, %%al\n\toutb %%al, $0x21")
PROBE_ONLY(probe_lgdt, "subq $16, %%rsp\n\tsgdt (%%rsp)\n\tlgdt (%%rsp)\n\taddq $16, %%rsp")
PROBE_ONLY(probe_lidt, "subq $16, %%rsp\n\tsidt (%%rsp)\n\tlidt (%%rsp)\n\taddq $16, %%rsp")
PROBE_ONLY(probe_lldt, "sldt %%ax\n\tlldt %%ax")
PROBE_ONLY(probe_ltr_busy, "movl $0x30, %%eax\n\tltr %%ax") /* the TSS is busy: #GP in ring 0 too */
PROBE_ONLY(probe_invlpg, "invlpg (%%rsp)")
PROBE_ONLY(probe_clts, "clts")
PROBE_ONLY(probe_swapgs, "swapgs\n\tswapgs")
PROBE_ONLY(probe_wbinvd, "wbinvd")

/* What a probe's line shows unless it faulted: its value, its value and ZF, ZF, or just "ok". */
enum probe_kind { PROBE_VALUE, PROBE_VALUE_ZF, PROBE_ZF, PROBE_NONE };
struct probe_def {
    const char *name;
    void (*run)(struct probe_result *r);
    enum probe_kind kind;
};

#define PROBE_TABLE(X)                                                                         \
    X(sgdt_base, VALUE) X(sgdt_limit, VALUE) X(sidt_base, VALUE) X(sidt_limit, VALUE)          \
    X(sldt, VALUE) X(str, VALUE) X(smsw, VALUE) X(mov_cs, VALUE) X(mov_ss, VALUE)              \
    X(mov_ds, VALUE) X(mov_to_ds, VALUE) X(pushf, VALUE) X(popf_if, VALUE) X(popf_iopl, VALUE) \
    X(iret_if, VALUE) X(push_cs, NONE) X(far_call, VALUE) X(far_jmp, VALUE) X(far_ret, VALUE)  \
    X(int_dpl3, VALUE) X(int_dpl0, VALUE) X(int3, NONE) X(lar_kernel_cs, VALUE_ZF)             \
    X(lar_user_cs, VALUE_ZF) X(lar_tss, VALUE_ZF) X(lsl_user_ds, VALUE_ZF)                     \
    X(lsl_tss, VALUE_ZF) X(verr_kernel_cs, ZF) X(verr_user_cs, ZF) X(verw_kernel_ds, ZF)       \
    X(verw_user_ds, ZF) X(cpuid, VALUE) X(rdtsc, VALUE) X(cli_sti, NONE)                       \
    X(mov_from_cr0, VALUE) X(mov_from_cr4, VALUE) X(mov_to_cr3, NONE) X(mov_cr8, VALUE)        \
    X(rdmsr_efer, VALUE) X(wrmsr_efer, NONE) X(in, VALUE) X(out, NONE) X(lgdt, NONE)           \
    X(lidt, NONE) X(lldt, NONE) X(ltr_busy, NONE) X(invlpg, NONE) X(clts, NONE)                \
    X(swapgs, NONE) X(wbinvd, NONE)

#define PROBE_DEF(name, kind) {#name, probe_##name, PROBE_##kind},
static const struct probe_def probes[] = {PROBE_TABLE(PROBE_DEF)};
#define PROBE_COUNT (sizeof(probes) / sizeof(probes[0]))

#endif

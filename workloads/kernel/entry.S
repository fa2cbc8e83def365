/* Entry and exit paths: interrupt and exception stubs, the SYSCALL entry, the ways back (IRETQ,
 * SYSRETQ, the paravirtual PV_OP_IRET) and the kernel-stack switch. The frame layout is struct
 * trapframe (kernel.h). Paravirtually the hypervisor enters the stubs through the trap table and
 * syscall_entry as the SYSCALL callback, with the same frames and registers. */
#include "pv_abi.h"

#define USER_CS 0x2B
#define USER_DS 0x23
#define VEC_FROM_SYSCALL 0x100

.macro PUSH_GPRS
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
.endm

.macro POP_GPRS
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
.endm

/* One 16-byte stub per vector, so that vector n's stub sits at trap_stubs + 16 * n. The CPU
 * pushes an error code only for vectors 8, 10-14, 17, 21, 29 and 30; the others push a zero. */
    .text
    .align 16
    .globl trap_stubs
trap_stubs:
    .set vector, 0
    .rept 256
    .org trap_stubs + 16 * vector, 0xCC  /* fails if the previous stub grew past 16 bytes */
    .if (vector == 8) || (vector >= 10 && vector <= 14) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    .else
    push $0
    .endif
    push $vector
    jmp trap_common
    .set vector, vector + 1
    .endr

    .text
trap_common:
    cld
    PUSH_GPRS
    mov %rsp, %rdi
    call trap_dispatch     /* does not return: it leaves through pvops.trap_return */
    ud2

/* SYSCALL: RCX = user RIP, R11 = user RFLAGS, RSP still the user's. Interrupts are off (FMASK). */
    .globl syscall_entry
syscall_entry:
    mov %rsp, syscall_user_rsp(%rip)
    mov syscall_kernel_rsp(%rip), %rsp
    push $USER_DS
    push syscall_user_rsp(%rip)
    push %r11
    push $USER_CS
    push %rcx
    push $0
    push $VEC_FROM_SYSCALL
    PUSH_GPRS
    mov %rsp, %rdi
    call syscall_dispatch
    ud2

/* native_trapret_iret(tf): restore the frame and return with IRETQ (any privilege level). */
    .globl native_trapret_iret
native_trapret_iret:
    mov %rdi, %rsp
    POP_GPRS
    add $16, %rsp          /* vector, error */
    iretq

/* native_trapret_sysret(tf): return to ring 3 with SYSRETQ; RCX and R11 carry RIP and RFLAGS. */
    .globl native_trapret_sysret
native_trapret_sysret:
    mov %rdi, %rsp
    POP_GPRS
    mov 16(%rsp), %rcx     /* rip */
    mov 32(%rsp), %r11     /* rflags */
    mov 40(%rsp), %rsp     /* user rsp */
    sysretq

/* pv_trapret(tf): the paravirtual return (any virtual ring): restore the frame, put RAX below the
 * hardware frame (struct pv_iret_frame) and ask the hypervisor to pop it; no IRETQ. */
    .globl pv_trapret
pv_trapret:
    mov %rdi, %rsp
    POP_GPRS
    add $8, %rsp           /* vector; the error code's slot takes RAX */
    mov %rax, (%rsp)
    mov $PV_OP_IRET, %eax
    vmcall
    ud2                    /* the hypervisor refused the frame */

/* swtch(&old_rsp, new_rsp): save the callee-saved registers, switch kernel stacks. */
    .globl swtch
swtch:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, (%rdi)
    mov %rsi, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

/* A new process's first switch lands here, with its trapframe in R12 (set by proc.c). */
    .globl proc_first_return
proc_first_return:
    mov %r12, %rdi
    call proc_enter_user
    ud2

    .bss
    .align 8
syscall_user_rsp: .quad 0

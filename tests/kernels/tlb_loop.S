/* Enters long mode with 4-level paging and 4 KiB pages, then reads one word from each of PAGES
 * consecutive pages, ROUNDS times. The platform tests run variants that differ only in ROUNDS
 * and compare their TLB and page-walk figures with what the TLB geometry predicts.
 * Build with -DPAGES=n -DROUNDS=r (n <= 512). */
#include "multiboot.inc"

#ifndef PAGES
#define PAGES 72
#endif
#ifndef ROUNDS
#define ROUNDS 1
#endif
        .set TEST_BASE, 0x400000          /* 4 MiB: page-directory entry 2 */
        .set PTE_FLAGS, 0x3               /* present, writable */

        kernel_start

        /* PML4[0] -> PDPT, PDPT[0] -> PD, PD[0] -> PT0 (0-2 MiB), PD[2] -> PT1 (4-6 MiB). */
        movl $(pdpt + PTE_FLAGS), pml4
        movl $(pd + PTE_FLAGS), pdpt
        movl $(pt0 + PTE_FLAGS), pd
        movl $(pt1 + PTE_FLAGS), pd + 2 * 8
        xor %ecx, %ecx
1:      mov %ecx, %eax
        shl $12, %eax
        or $PTE_FLAGS, %eax
        mov %eax, pt0(,%ecx,8)
        add $TEST_BASE, %eax
        mov %eax, pt1(,%ecx,8)
        inc %ecx
        cmp $512, %ecx
        jb 1b

        /* Long mode: CR4.PAE, CR3, EFER.LME, CR0.PG, then a far jump to 64-bit code. */
        mov %cr4, %eax
        or $0x20, %eax
        mov %eax, %cr4
        mov $pml4, %eax
        mov %eax, %cr3
        mov $0xC0000080, %ecx
        rdmsr
        or $0x100, %eax
        wrmsr
        mov %cr0, %eax
        or $0x80000001, %eax
        mov %eax, %cr0
        ljmp $0x18, $long_mode

        .code64
long_mode:
        mov $stack_top, %esp            /* zero-extends: the ELF32 image has 32-bit relocations */
        /* Write each page's index into it. */
        mov $TEST_BASE, %rdi
        xor %ecx, %ecx
2:      mov %ecx, (%rdi)
        add $4096, %rdi
        inc %ecx
        cmp $PAGES, %ecx
        jb 2b
        /* The measured loop: ROUNDS passes over PAGES pages, one load each. */
        xor %eax, %eax
        mov $ROUNDS, %r8d
3:      mov $TEST_BASE, %rsi
        mov $PAGES, %ecx
4:      mov (%rsi), %edx
        add %rdx, %rax
        add $4096, %rsi
        dec %ecx
        jnz 4b
        dec %r8d
        jnz 3b
        mov %rax, %rbx

        mov $msg_pages, %esi; call puts64
        mov $PAGES, %eax; call put_dec64
        mov $msg_rounds, %esi; call puts64
        mov $ROUNDS, %eax; call put_dec64
        mov $msg_sum, %esi; call puts64
        mov %rbx, %rax; call put_dec64
        mov $msg_bye, %esi; call puts64
        mov $EXIT_PORT, %dx
        xor %al, %al
        out %al, %dx
        cli
5:      hlt
        jmp 5b

putc64:
        push %rdx
        push %rax
1:      mov $COM1 + 5, %dx
        in %dx, %al
        test $0x20, %al
        jz 1b
        pop %rax
        mov $COM1, %dx
        out %al, %dx
        pop %rdx
        ret

puts64:
        push %rax
1:      lodsb
        test %al, %al
        jz 2f
        call putc64
        jmp 1b
2:      pop %rax
        ret

put_dec64:
        push %rbx
        push %rcx
        push %rdx
        mov $10, %rcx
        xor %ebx, %ebx
1:      xor %edx, %edx
        div %rcx
        push %rdx
        inc %ebx
        test %rax, %rax
        jnz 1b
2:      pop %rax
        add $'0', %al
        call putc64
        dec %ebx
        jnz 2b
        pop %rdx
        pop %rcx
        pop %rbx
        ret

        .data
msg_hello:  .asciz "== pgsim test kernel: tlb_loop ==\n"
msg_pages:  .asciz "long mode, 4 KiB pages: "
msg_rounds: .asciz " pages x "
msg_sum:    .asciz " rounds, sum "
msg_bye:    .asciz "\nbye\n"

        .bss
        .align 4096
pml4:   .space 4096
pdpt:   .space 4096
pd:     .space 4096
pt0:    .space 4096
pt1:    .space 4096
        .space 4096
stack_top:

/* Enters long mode with 4-level paging and 4 KiB pages, then reads one word from each of PAGES
 * consecutive pages, ROUNDS times. The platform tests run variants that differ only in ROUNDS
 * and compare their TLB and page-walk figures with what the TLB geometry predicts.
 * Build with -DPAGES=n -DROUNDS=r (n <= 512). */
#include "multiboot.inc"
#include "serial64.inc"

#ifndef PAGES
#define PAGES 72
#endif
#ifndef ROUNDS
#define ROUNDS 1
#endif
        .set TEST_BASE, 0x400000          /* 4 MiB: mapped with 4 KiB pages by enter_long_mode */

        kernel_start

        enter_long_mode long_mode

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

        print_dec64 msg_pages, $PAGES
        print_dec64 msg_rounds, $ROUNDS
        print_dec64 msg_sum, %rbx
        finish64

        .data
msg_hello:  .asciz "== pgsim test kernel: tlb_loop ==\n"
msg_pages:  .asciz "long mode, 4 KiB pages: "
msg_rounds: .asciz " pages x "
msg_sum:    .asciz " rounds, sum "
msg_bye:    .asciz "\nbye\n"

        .bss
        .align 16
        .space 4096
stack_top:

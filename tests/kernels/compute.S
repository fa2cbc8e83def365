/* A compute loop for the speed benchmark: in long mode with paging (so the TLB model is on the
 * path of every access), ITERS iterations of integer arithmetic, multiplies, loads and stores
 * over a 16 KiB table, and a data-dependent branch. Prints a checksum. Build with -DITERS=n. */
#include "multiboot.inc"
#include "serial64.inc"

#ifndef ITERS
#define ITERS 20000000
#endif
        .set TABLE, 0x400000              /* 4 pages at 4 MiB */

        kernel_start
        enter_long_mode compute

        .code64
compute:
        mov $stack_top, %esp
        mov $0x9E3779B97F4A7C15, %rax     /* xorshift state */
        xor %ebx, %ebx                    /* checksum */
        mov $ITERS, %ecx
        mov $TABLE, %edi
1:      mov %rax, %rdx                    /* xorshift64 */
        shl $13, %rdx
        xor %rdx, %rax
        mov %rax, %rdx
        shr $7, %rdx
        xor %rdx, %rax
        mov %rax, %rdx
        shl $17, %rdx
        xor %rdx, %rax
        mov %eax, %esi                    /* a slot of the table: 2048 words of 8 bytes */
        and $0x3FF8, %esi
        add (%rdi,%rsi), %rbx
        imul $31, %rbx, %rbx
        mov %rbx, (%rdi,%rsi)
        test $1, %al
        jz 2f
        add %rax, %rbx
2:      dec %ecx
        jnz 1b

        print_dec64 msg_iters, $ITERS
        print_dec64 msg_sum, %rbx
        finish64

        .data
msg_hello: .asciz "== pgsim test kernel: compute ==\n"
msg_iters: .asciz "iterations "
msg_sum:   .asciz " checksum "
msg_bye:   .asciz "\nbye\n"

        .bss
        .align 16
        .space 4096
stack_top:

/* A Multiboot kernel that checks what the loader handed it and computes something, printing
 * each result on COM1: the same output is expected from QEMU and from pgsim. */
#include "multiboot.inc"

        .globl _start
_start:
        mov $stack_top, %esp
        mov %eax, boot_magic
        mov %ebx, boot_info
        call setup_gdt
        call serial_init

        mov $msg_hello, %esi; call puts

        /* The loader's magic and the information structure. */
        mov $msg_magic, %esi; call puts
        mov boot_magic, %eax; call put_hex
        mov $msg_nl, %esi; call puts
        mov boot_info, %ebx
        mov $msg_lower, %esi; call puts
        mov 4(%ebx), %eax; call put_dec
        mov $msg_upper, %esi; call puts
        mov 8(%ebx), %eax; call put_dec
        mov $msg_nl, %esi; call puts

        /* The command line after the kernel's own path: "<path> <arguments>". */
        mov $msg_cmdline, %esi; call puts
        mov 16(%ebx), %esi
1:      lodsb
        test %al, %al
        jz 2f
        cmp $' ', %al
        jne 1b
        call puts
2:      mov $msg_nl, %esi; call puts

        /* fw_cfg: the signature and the RAM size in MiB. */
        mov $0x510, %dx; xor %ax, %ax; out %ax, %dx
        mov $msg_fwcfg, %esi; call puts
        mov $0x511, %dx
        mov $4, %ecx
3:      in %dx, %al
        call putc
        dec %ecx
        jnz 3b
        mov $0x510, %dx; mov $0x03, %ax; out %ax, %dx
        mov $0x511, %dx
        xor %ebx, %ebx
        mov $4, %ecx
4:      in %dx, %al                      /* the low 32 bits, little-endian */
        movzbl %al, %eax
        shl $24, %eax
        shr $8, %ebx
        or %eax, %ebx
        dec %ecx
        jnz 4b
        mov %ebx, %eax
        shr $20, %eax
        print_dec msg_ram

        /* Some arithmetic: the sum of the first 1000 squares, 20! mod 1000003, primes below 2000. */
        xor %eax, %eax
        mov $1, %ecx
5:      mov %ecx, %edx
        imul %edx, %edx
        add %edx, %eax
        inc %ecx
        cmp $1000, %ecx
        jbe 5b
        print_dec msg_squares

        mov $1, %eax
        mov $1, %ecx
        mov $1000003, %ebx
6:      mul %ecx
        div %ebx
        mov %edx, %eax
        inc %ecx
        cmp $20, %ecx
        jbe 6b
        print_dec msg_fact

        xor %edi, %edi                   /* primes found */
        mov $2, %ecx
7:      mov $2, %ebx
8:      mov %ebx, %eax
        imul %ebx, %eax
        cmp %ecx, %eax
        ja 9f                            /* no divisor up to sqrt: prime */
        mov %ecx, %eax
        xor %edx, %edx
        div %ebx
        test %edx, %edx
        jz 10f
        inc %ebx
        jmp 8b
9:      inc %edi
10:     inc %ecx
        cmp $2000, %ecx
        jb 7b
        mov %edi, %eax
        print_dec msg_primes

        /* String instructions: copy a message with REP MOVSB and print the copy. */
        mov $msg_copy_src, %esi
        mov $copy_buffer, %edi
        mov $msg_copy_len, %ecx
        cld
        rep movsb
        mov $copy_buffer, %esi; call puts

        mov $msg_bye, %esi; call puts
        mov $0, %al
        jmp exit

        .data
msg_hello:    .asciz "== pgsim test kernel: hello ==\n"
msg_magic:    .asciz "multiboot magic: "
msg_lower:    .asciz "mem_lower KiB: "
msg_upper:    .asciz " mem_upper KiB: "
msg_cmdline:  .asciz "arguments:"
msg_fwcfg:    .asciz "fw_cfg signature: "
msg_ram:      .asciz "\nfw_cfg RAM MiB: "
msg_squares:  .asciz "sum of squares 1..1000: "
msg_fact:     .asciz "20! mod 1000003: "
msg_primes:   .asciz "primes below 2000: "
msg_copy_src: .asciz "rep movsb copied this line\n"
        .set msg_copy_len, . - msg_copy_src
msg_bye:      .asciz "bye\n"
msg_nl:       .asciz "\n"

        .bss
        .align 16
boot_magic:   .long 0
boot_info:    .long 0
copy_buffer:  .space 64
        .space 4096
stack_top:

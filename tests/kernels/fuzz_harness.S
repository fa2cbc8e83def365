/* The guest-code fuzzer's harness (tests/fuzz): a Multiboot kernel that copies its first module
 * (random bytes, at most 4 KiB) to a page of its own and runs it in one of three contexts:
 *   CONTEXT=0  32-bit protected mode at CPL 0, flat segments, paging off;
 *   CONTEXT=1  64-bit mode at CPL 0, 4-level paging (identity 0-2 MiB and 4-6 MiB);
 *   CONTEXT=2  64-bit mode at CPL 3 (every page user-accessible, a TSS for the way back to CPL 0).
 * Every general register but the stack pointer points into a data page, so that random memory
 * operands often reach RAM. Every IDT gate leads back into the random code (vector v to offset
 * 64 v mod 4096) at CPL 0, so exceptions run more random code, and a handler whose first
 * instruction faults again is a fault loop: what the simulator's limits must end. */
#include "multiboot.inc"

#ifndef CONTEXT
#define CONTEXT 0
#endif

        .globl _start
_start:
        mov $stack_top, %esp
        mov %ebx, boot_info
        call setup_gdt
        mov $0xFF, %al                    /* the 8259s masked: no interrupt but the guest's own */
        out %al, $0x21
        out %al, $0xA1
        call serial_init
        mov $msg_hello, %esi; call puts

        /* The first module, copied to fuzz_code (the rest of the page stays zero). */
        mov boot_info, %ebx
        testl $0x8, (%ebx)                /* flags: mods_count and mods_addr valid */
        jz no_module
        cmpl $0, 20(%ebx)
        je no_module
        mov 24(%ebx), %eax
        mov (%eax), %esi                  /* mod_start */
        mov 4(%eax), %ecx                 /* mod_end */
        sub %esi, %ecx
        cmp $4096, %ecx
        jbe 1f
        mov $4096, %ecx
1:      mov $fuzz_code, %edi
        cld
        rep movsb

        /* The TSS descriptor's base (the linker cannot split a symbol's bits). */
        mov $tss, %eax
        mov %ax, gdt_tss + 2
        shr $16, %eax
        mov %al, gdt_tss + 4
        mov %ah, gdt_tss + 7
        lgdt fuzz_gdt_descriptor
        ljmp $0x08, $2f
2:
#if CONTEXT == 0
        /* 256 32-bit interrupt gates, DPL 3 (INT n works from any CPL). */
        xor %ecx, %ecx
3:      mov %ecx, %eax
        shl $6, %eax
        and $0xFFF, %eax
        add $fuzz_code, %eax
        put_gate32 idt, 0xEE00
        inc %ecx
        cmp $256, %ecx
        jb 3b
        lidt idt32_descriptor
        mov $msg_go, %esi; call puts
        mov $fuzz_data + 2048, %eax
        mov %eax, %ebx; mov %eax, %ecx; mov %eax, %edx; mov %eax, %esi; mov %eax, %edi; mov %eax, %ebp
        jmp fuzz_code
#else
        /* 256 64-bit interrupt gates (16 bytes each), DPL 3, to the 64-bit code segment, on IST 1:
         * every delivery starts from the same stack, so a handler that faults at once is a loop
         * in place, not a stack that grows over the IDT. */
        xor %ecx, %ecx
3:      mov %ecx, %eax
        shl $6, %eax
        and $0xFFF, %eax
        add $fuzz_code, %eax
        mov %ecx, %edx
        shl $4, %edx
        mov %ax, idt(%edx)
        movw $0x18, idt + 2(%edx)
        movw $0xEE01, idt + 4(%edx)
        shr $16, %eax
        mov %ax, idt + 6(%edx)
        inc %ecx
        cmp $256, %ecx
        jb 3b
        enter_long_mode long_entry

        .code64
long_entry:
        mov $0x10, %ax
        mov %ax, %ds; mov %ax, %es; mov %ax, %ss
        lidt idt64_descriptor(%rip)
        mov $stack_top, %eax
        mov %rax, tss + 4(%rip)           /* RSP0: the way back to CPL 0 */
        mov %rax, tss + 36(%rip)          /* IST1 */
        mov $0x30, %ax
        ltr %ax
#if CONTEXT == 2
        /* Every paging-structure entry user-accessible, then CR3 reloaded. */
        orq $4, lm_pml4(%rip)
        orq $4, lm_pdpt(%rip)
        orq $4, lm_pd(%rip)
        orq $4, lm_pd + 16(%rip)
        xor %ecx, %ecx                    /* (an ELF32 object: absolute addresses in 32-bit registers) */
        mov $lm_pt0, %edx
        mov $lm_pt1, %edi
4:      orq $4, (%rdx,%rcx,8)
        orq $4, (%rdi,%rcx,8)
        inc %ecx
        cmp $512, %ecx
        jb 4b
        mov %cr3, %rax
        mov %rax, %cr3
        mov $msg_go, %esi; call puts64
        pushq $0x23                       /* SS: user data */
        mov $user_stack_top, %eax
        push %rax
        pushq $0x2                        /* RFLAGS */
        pushq $0x2B                       /* CS: 64-bit user code */
        mov $fuzz_code, %eax
        push %rax
        mov $fuzz_data + 2048, %eax
        mov %rax, %rbx; mov %rax, %rcx; mov %rax, %rdx; mov %rax, %rsi; mov %rax, %rdi; mov %rax, %rbp
        iretq
#else
        mov $msg_go, %esi; call puts64
        mov $fuzz_data + 2048, %eax
        mov %rax, %rbx; mov %rax, %rcx; mov %rax, %rdx; mov %rax, %rsi; mov %rax, %rdi; mov %rax, %rbp
        jmp fuzz_code
#endif
#endif

        .code32
no_module:
        mov $msg_no_module, %esi; call puts
        mov $1, %al
        jmp exit

#if CONTEXT != 0
#include "serial64.inc"
#endif

        .data
        .align 8
fuzz_gdt:
        .quad 0
        .quad 0x00CF9B000000FFFF        /* 0x08: 32-bit code, flat */
        .quad 0x00CF93000000FFFF        /* 0x10: 32-bit data, flat */
        .quad 0x00AF9B000000FFFF        /* 0x18: 64-bit code */
        .quad 0x00CFF3000000FFFF        /* 0x20: user data (DPL 3) */
        .quad 0x00AFFB000000FFFF        /* 0x28: 64-bit user code (DPL 3) */
gdt_tss:
        .quad 0x0000890000000067        /* 0x30: 64-bit TSS (base filled in at boot) */
        .quad 0
fuzz_gdt_descriptor:
        .word 8 * 8 - 1
        .long fuzz_gdt
        .align 8
idt32_descriptor:
        .word 256 * 8 - 1
        .long idt
        .align 8
idt64_descriptor:
        .word 256 * 16 - 1
        .long idt, 0
msg_hello:     .asciz "== pgsim test kernel: fuzz harness ==\n"
msg_go:        .asciz "running the module\n"
msg_no_module: .asciz "no module\n"
msg_nl:        .asciz "\n"
msg_bye:       .asciz "bye\n"

        .bss
        .align 4096
fuzz_code:    .space 4096
fuzz_data:    .space 4096
idt:          .space 256 * 16
tss:          .space 104
        .align 16
boot_info:    .long 0
        .space 4096
user_stack_top:
        .space 4096
stack_top:

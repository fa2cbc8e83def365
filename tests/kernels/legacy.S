/* The general-purpose instructions of 16- and 32-bit code that 64-bit mode lacks: PUSHA/POPA (32-
 * and 16-bit), DAA, DAS, AAA, AAS over every AL with every CF and AF, AAM and AAD with several
 * bases, SALC, and BOUND with its #BR; AAM 0 raises #DE. Each prints a checksum of AX and the
 * flags the SDM defines for it, so QEMU and pgsim print the same lines. */
#include "multiboot.inc"

        .set FLAGS_DAA, 0xD5              /* CF PF AF ZF SF (OF undefined) */
        .set FLAGS_AAA, 0x11              /* CF AF */
        .set FLAGS_AAM, 0xC4              /* PF ZF SF */

/* checksum_loop insn, mask: runs `insn` for every AL (0-255), AH = AL ^ 0x5A, and the four
 * combinations of CF and AF; returns in EAX the checksum of AX and the masked flags after each. */
.macro checksum_loop insn, mask
        xor %edi, %edi                    /* checksum */
        xor %ebx, %ebx                    /* BL = AL, BH = CF | AF << 4 */
1:      mov %bl, %al
        mov %bl, %ah
        xor $0x5A, %ah
        movzbl %bh, %ecx
        or $2, %ecx
        push %ecx
        popf
        \insn
        pushf
        pop %ecx
        and $\mask, %ecx
        shl $16, %ecx
        mov %ax, %cx
        xor %ecx, %edi                    /* FNV-1-like mixing */
        imul $0x01000193, %edi, %edi
        rol $7, %edi
        inc %bl
        jnz 1b
        add $1, %bh                       /* CF, then AF (bit 4), both */
        cmp $1, %bh
        je 1b
        cmp $2, %bh
        jne 2f
        mov $0x10, %bh
        jmp 1b
2:      cmp $0x11, %bh
        jbe 1b
        mov %edi, %eax
.endm

        kernel_start
        /* IDT: #DE and #BR record the vector and the faulting EIP, then continue at `fixup`. */
        mov $de_handler, %eax; mov $0, %ecx; call set_gate
        mov $br_handler, %eax; mov $5, %ecx; call set_gate
        lidt idt32_descriptor

        checksum_loop daa, FLAGS_DAA
        mov $msg_daa, %esi; call puts; call put_hex; call newline
        checksum_loop das, FLAGS_DAA
        mov $msg_das, %esi; call puts; call put_hex; call newline
        checksum_loop aaa, FLAGS_AAA
        mov $msg_aaa, %esi; call puts; call put_hex; call newline
        checksum_loop aas, FLAGS_AAA
        mov $msg_aas, %esi; call puts; call put_hex; call newline
        checksum_loop "aam $10", FLAGS_AAM
        mov $msg_aam10, %esi; call puts; call put_hex; call newline
        checksum_loop "aam $7", FLAGS_AAM
        mov $msg_aam7, %esi; call puts; call put_hex; call newline
        checksum_loop "aad $10", FLAGS_AAM
        mov $msg_aad10, %esi; call puts; call put_hex; call newline
        checksum_loop "aad $16", FLAGS_AAM
        mov $msg_aad16, %esi; call puts; call put_hex; call newline

        /* SALC */
        stc
        .byte 0xD6
        movzbl %al, %eax
        mov $msg_salc1, %esi; call puts; call put_hex; call newline
        clc
        .byte 0xD6
        movzbl %al, %eax
        mov $msg_salc0, %esi; call puts; call put_hex; call newline

        /* AAM 0: #DE at the instruction */
        movl $1f, fixup
aam0:   aam $0
1:      mov last_vector, %eax
        mov $msg_aam0, %esi; call puts; call put_hex; call newline
        mov last_eip, %eax; sub $aam0, %eax
        mov $msg_aam0_eip, %esi; call puts; call put_hex; call newline

        /* PUSHAD / POPAD, then the 16-bit forms */
        mov %esp, saved_esp
        mov $0x11111111, %eax; mov $0x22222222, %ecx; mov $0x33333333, %edx; mov $0x44444444, %ebx
        mov $0x55555555, %ebp; mov $0x66666666, %esi; mov $0x77777777, %edi
        pushal
        mov $msg_pushad, %esi; call puts
        xor %ecx, %ecx
2:      mov (%esp,%ecx,4), %eax
        cmp $3, %ecx                      /* the saved ESP: its distance from the frame */
        jne 3f
        sub %esp, %eax
3:      call put_hex; mov $msg_space, %esi; call puts
        inc %ecx
        cmp $8, %ecx
        jb 2b
        call newline
        movl $0xAAAAAAAA, 12(%esp)        /* POPAD skips the saved ESP */
        xor %eax, %eax; xor %ebx, %ebx; xor %ecx, %ecx; xor %edx, %edx; xor %esi, %esi; xor %edi, %edi
        popal
        add %ecx, %eax; add %edx, %eax; add %ebx, %eax; add %esi, %eax; add %edi, %eax; add %ebp, %eax
        mov %esp, %ecx
        sub saved_esp, %ecx               /* 0: ESP back where it was */
        add %ecx, %eax
        mov $msg_popad, %esi; call puts; call put_hex; call newline
        mov $0x1234, %ax; mov $0x5678, %bx
        pushaw                            /* DI SI BP SP BX DX CX AX from the top */
        movzwl 6(%esp), %eax
        movzwl %sp, %ecx
        sub %ecx, %eax                    /* the saved SP: 16 above the frame */
        mov $msg_pushaw, %esi; call puts; call put_hex; call newline
        movw $0x9999, 14(%esp)
        xor %ebx, %ebx
        popaw
        movzwl %ax, %eax
        shl $16, %eax
        mov %bx, %ax
        mov $msg_popaw, %esi; call puts; call put_hex; call newline

        /* BOUND: within the bounds nothing; below them #BR at the instruction */
        movl $0xFF, last_vector
        mov $5, %eax
        bound %eax, bounds
        mov $msg_bound_in, %esi; call puts; mov last_vector, %eax; call put_hex; call newline
        movl $1f, fixup
        mov $-3, %eax
bound1: bound %eax, bounds
1:      mov last_vector, %eax
        mov $msg_bound_out, %esi; call puts; call put_hex; call newline
        mov last_eip, %eax; sub $bound1, %eax
        mov $msg_bound_eip, %esi; call puts; call put_hex; call newline

        mov $msg_bye, %esi; call puts
        xor %al, %al
        jmp exit

newline:
        push %esi
        mov $msg_nl, %esi; call puts
        pop %esi
        ret

        define_set_gate idt32

de_handler:
        movl $0, last_vector
        jmp 1f
br_handler:
        movl $5, last_vector
1:      push %eax
        mov 4(%esp), %eax
        mov %eax, last_eip
        mov fixup, %eax
        mov %eax, 4(%esp)
        pop %eax
        iret

        .section .rodata
idt32_descriptor:
        .word 256 * 8 - 1
        .long idt32
bounds: .long 0, 10
msg_hello: .asciz "== pgsim test kernel: legacy ==\n"
msg_nl:    .asciz "\n"
msg_space: .asciz " "
msg_bye:   .asciz "bye\n"
msg_daa:   .asciz "daa: "
msg_das:   .asciz "das: "
msg_aaa:   .asciz "aaa: "
msg_aas:   .asciz "aas: "
msg_aam10: .asciz "aam 10: "
msg_aam7:  .asciz "aam 7: "
msg_aad10: .asciz "aad 10: "
msg_aad16: .asciz "aad 16: "
msg_salc1: .asciz "salc cf=1: "
msg_salc0: .asciz "salc cf=0: "
msg_aam0:  .asciz "aam 0, vector: "
msg_aam0_eip: .asciz "aam 0, eip - aam: "
msg_pushad: .asciz "pushad: "
msg_popad: .asciz "popad sum: "
msg_pushaw: .asciz "pushaw saved sp - sp: "
msg_popaw: .asciz "popaw ax:bx: "
msg_bound_in:  .asciz "bound within, vector: "
msg_bound_out: .asciz "bound below, vector: "
msg_bound_eip: .asciz "bound below, eip - bound: "

        .data
fixup:       .long 0
saved_esp:   .long 0
last_vector: .long 0xFF
last_eip:    .long 0

        .bss
        .align 8
idt32:  .space 2048
        .space 8192
stack_top:

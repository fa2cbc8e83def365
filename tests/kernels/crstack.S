/* Control-register moves whose general register is the stack pointer. A VM exit loads the host's
 * RSP, so a VMM must take the guest's from the VMCS: MOV to CR0 from ESP in 32-bit code and from
 * RSP in 64-bit code (CR0.NE toggled: a bit a VMM may own), and MOV from and to CR3 through RSP
 * (exits under shadow paging). Each value is printed; QEMU prints the same. */
#include "multiboot.inc"
#include "serial64.inc"

        .set CR0_NE, 0x20
        .set CR4_PGE, 0x80

/* 64-bit: toggles `bit` of control register `cr` with a MOV from RSP, reads the register back into
 * RSP, and leaves that in RCX; RBX holds the stack pointer. */
.macro toggle_through_rsp cr, bit
        mov %\cr, %rax
        xor $\bit, %rax
        mov %rax, %rsp
        mov %rsp, %\cr
        mov %\cr, %rsp
        mov %rsp, %rcx
        mov %rbx, %rsp
.endm

        kernel_start
        mov %esp, %ebx
        mov %cr0, %eax
        xor $CR0_NE, %eax
        mov %eax, %esp
        mov %esp, %cr0                  /* CR0.NE toggled, from ESP */
        mov %cr0, %eax
        mov %ebx, %esp
        print_hex msg_cr0_32
        mov %cr0, %eax
        xor $CR0_NE, %eax
        mov %eax, %esp
        mov %esp, %cr0                  /* and back */
        mov %cr0, %eax
        mov %ebx, %esp
        print_hex msg_cr0_32
        enter_long_mode main64

        .code64
main64:
        mov $stack_top, %esp
        mov %rsp, %rbx
        toggle_through_rsp cr0, CR0_NE
        print_dec64 msg_cr0_64, %rcx
        mov $msg_nl, %esi; call puts64
        toggle_through_rsp cr4, CR4_PGE
        print_dec64 msg_cr4_64, %rcx
        mov $msg_nl, %esi; call puts64
        mov %cr3, %rsp                  /* the guest's CR3, into RSP */
        mov %rsp, %rcx
        mov %rcx, %rsp
        mov %rsp, %cr3                  /* and loaded again from RSP */
        mov %rbx, %rsp
        print_dec64 msg_cr3_64, %rcx
        mov $msg_nl, %esi; call puts64
        mov (%rcx), %eax                /* the first PML4 entry, through the reloaded tables */
        print_dec64 msg_pml4e, %rax
        mov $msg_nl, %esi; call puts64
        finish64

        .section .rodata
msg_hello:  .asciz "== pgsim test kernel: crstack ==\n"
msg_bye:    .asciz "done\n"
msg_cr0_32: .asciz "32-bit CR0 from ESP: "
msg_cr0_64: .asciz "64-bit CR0 from RSP: "
msg_cr4_64: .asciz "64-bit CR4 from RSP: "
msg_cr3_64: .asciz "CR3 through RSP: "
msg_pml4e:  .asciz "PML4[0]: "
msg_nl:     .asciz "\n"

        .bss
        .align 16
        .space 4096
stack_top:

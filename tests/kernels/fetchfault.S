/* Instruction fetches that fault in 64-bit kernel code: a jump and a call to a linear address no
 * page maps, and an instruction whose first bytes are mapped and whose last are not. The #PF
 * handler prints CR2, the error code and the faulting RIP, and resumes at the next case. Under
 * binary translation none of these can be translated: the real CPU goes to the guest's address,
 * and its fetch faults there as the guest's would. */
#include "multiboot.inc"
#include "serial64.inc"

        .set UNMAPPED, 0x800000         /* beyond lm_pt1's 4-6 MiB */
        .set STRADDLE, 0x5FFFFE         /* the last two bytes lm_pt1 maps */

        kernel_start
        enter_long_mode main64

        .code64
main64:
        mov $stack_top, %esp
        lea pf_handler(%rip), %rax      /* IDT entry 14: a 64-bit interrupt gate, CS 0x18 */
        lea idt64+14*16(%rip), %rdx
        mov %ax, (%rdx)
        movw $0x18, 2(%rdx)
        movw $0x8E00, 4(%rdx)
        shr $16, %eax
        mov %ax, 6(%rdx)
        lidt idt64_descriptor(%rip)

        lea 1f(%rip), %rax; mov %rax, fixup(%rip)
        mov $UNMAPPED, %eax
        jmp *%rax                       /* indirect jump */
1:      lea after_call(%rip), %rax; mov %rax, fixup(%rip)
        call UNMAPPED + 0x40            /* direct call: the return address is pushed first */
after_call:
        pop %rax
        lea after_call(%rip), %rdx
        sub %rdx, %rax                  /* 0: the address after the CALL */
        print_dec64 msg_pushed, %rax
        mov $msg_nl, %esi; call puts64
        lea 1f(%rip), %rax; mov %rax, fixup(%rip)
        movw $0x01B8, STRADDLE          /* MOV EAX, imm32: 5 bytes, 3 of them unmapped */
        mov $STRADDLE, %eax
        jmp *%rax
1:      finish64

/* #PF: print CR2, the error code and RIP, resume at `fixup`. */
pf_handler:
        mov $msg_pf, %esi; call puts64
        mov %cr2, %rax
        print_dec64 msg_cr2, %rax
        print_dec64 msg_err, (%rsp)
        print_dec64 msg_rip, 8(%rsp)
        mov $msg_nl, %esi; call puts64
        mov fixup(%rip), %rax
        mov %rax, 8(%rsp)
        add $8, %rsp
        iretq

        .section .rodata
        .align 8
idt64_descriptor:
        .word 256 * 16 - 1
        .long idt64, 0
msg_hello:  .asciz "== pgsim test kernel: fetchfault ==\n"
msg_bye:    .asciz "done\n"
msg_pf:     .asciz "page fault:"
msg_cr2:    .asciz " cr2="
msg_err:    .asciz " error="
msg_rip:    .asciz " rip="
msg_pushed: .asciz "call pushed its return address: "
msg_nl:     .asciz "\n"

        .bss
        .align 4096
idt64:  .space 4096
fixup:  .quad 0
        .space 4096
stack_top:

/* Prints its banner, loads an empty IDT and executes INT3: the breakpoint cannot be delivered
 * (#GP), nor can the #GP (#DF), nor the #DF: the processor shuts down (a triple fault), which
 * QEMU's -no-reboot and pgsim both report as the end of the run. */
#include "multiboot.inc"

        kernel_start
        lidt empty_idt
        int3
        mov $1, %al                       /* not reached */
        jmp exit

        .data
empty_idt:
        .word 0
        .long 0
msg_hello: .asciz "== pgsim test kernel: triple_fault ==\n"

        .bss
        .align 16
        .space 4096
stack_top:

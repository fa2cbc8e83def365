/* Device memory reached by instructions other than MOV: read-modify-write arithmetic and logic,
 * multiplication, compares, XCHG, bit tests, PUSH and POP of a device register, and MOVS and STOS
 * between RAM and a device register. The register is the local APIC's task priority (bits 7:0
 * writable, at physical 0xFEE00080; paging stays off), which every PC has. The kernel prints the
 * register and the flags after each step, so that the output says what the device saw. Every
 * access is 32 bits wide, as the APIC requires (QEMU ignores narrower ones).
 *
 * With FETCH, the kernel also executes code from device memory: it writes 0xC3 (RET) into the task
 * priority register and calls it (the other three bytes of the register read as zero). QEMU's TCG
 * does not execute from the APIC page, so that variant is compared between pgsim's strategies.
 *
 * 14 instructions reach the device (18 accesses: OR, ADD, XCHG and BTS read and write); FETCH adds
 * a store and an instruction fetched from the device. */
#include "multiboot.inc"

        .set TPR, 0xFEE00080

        kernel_start
        mov $TPR, %ebx
        movl $0x10, (%ebx)              /* store */
        orl $0x21, (%ebx)               /* read, write: 0x31 */
        addl $0x0F, (%ebx)              /* read, write: 0x40 */
        mov (%ebx), %eax
        print_hex msg_rmw
        imul $3, (%ebx), %eax           /* read */
        print_hex msg_imul
        mov $0x7F, %ecx
        xchg %ecx, (%ebx)               /* read, write: 0x7F; ECX = 0x40 */
        mov %ecx, %eax
        print_hex msg_xchg
        cmpl $0x7F, (%ebx)              /* read */
        pushf
        pop %eax
        and $0x8D5, %eax                /* the arithmetic flags */
        print_hex msg_cmp
        btsl $7, (%ebx)                 /* read, write: 0xFF; CF = 0 */
        setc %al
        movzbl %al, %eax
        print_hex msg_bts
        pushl (%ebx)                    /* read */
        pop %eax
        print_hex msg_push
        pushl $0x22
        popl (%ebx)                     /* write */
        mov $value, %esi
        mov %ebx, %edi
        cld
        movsl                           /* RAM -> device: 0x5A */
        mov %ebx, %esi
        mov $copy, %edi
        movsl                           /* device -> RAM */
        mov copy, %eax
        print_hex msg_movs
        mov %ebx, %edi
        mov $0x66, %eax
        stosl                           /* write */
        mov (%ebx), %eax                /* read */
        print_hex msg_stos
#ifdef FETCH
        movl $0xC3, (%ebx)              /* RET */
        call *%ebx
        mov $msg_fetch, %esi; call puts
#endif
        mov $0, %al
        jmp exit

        .data
value:      .long 0x5A
copy:       .long 0
msg_hello:  .asciz "== pgsim test kernel: mmio ==\n"
msg_rmw:    .asciz "or, add: "
msg_imul:   .asciz "imul: "
msg_xchg:   .asciz "xchg old: "
msg_cmp:    .asciz "cmp flags: "
msg_bts:    .asciz "bts carry: "
msg_push:   .asciz "push: "
msg_movs:   .asciz "movs: "
msg_stos:   .asciz "stos: "
msg_fetch:  .asciz "returned from device memory\n"
msg_nl:     .asciz "\n"

        .bss
        .align 16
        .space 4096
stack_top:

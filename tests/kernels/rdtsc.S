/* Reads the time-stamp counter around a loop of 1000 iterations of DEC and JNZ and prints the
 * difference: on pgsim, RDTSC counts simulated cycles, so the figure follows from the timing
 * model (the first RDTSC, two MOVs and 1000 x (DEC + JNZ)). On QEMU it is host time. */
#include "multiboot.inc"

        kernel_start
        rdtsc
        mov %eax, %esi
        mov $1000, %ecx
1:      dec %ecx
        jnz 1b
        rdtsc
        sub %esi, %eax
        print_dec msg_cycles
        mov $0, %al
        jmp exit

        .data
msg_hello:  .asciz "== pgsim test kernel: rdtsc ==\n"
msg_cycles: .asciz "cycles: "
msg_nl:     .asciz "\n"

        .bss
        .align 16
        .space 4096
stack_top:

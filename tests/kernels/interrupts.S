/* Interrupt delivery through the IDT from the 8254 PIT (via the 8259 PIC) and from the local
 * APIC timer, each counted to a fixed number of ticks while the CPU waits in HLT. The output
 * does not depend on timing, so QEMU and pgsim print the same lines. */
#include "multiboot.inc"

        .set PIC1, 0x20
        .set PIC2, 0xA0
        .set PIT_CH0, 0x40
        .set PIT_CMD, 0x43
        .set LAPIC, 0xFEE00000
        .set VEC_PIT, 0x20
        .set VEC_APIC_TIMER, 0x40
        .set VEC_SPURIOUS, 0xFF
        .set PIT_TICKS, 5
        .set APIC_TICKS, 4

        kernel_start

        /* IDT: every vector to `unexpected`, then the two timer handlers. */
        mov $idt, %edi
        xor %ecx, %ecx
1:      mov $unexpected, %eax
        call set_gate
        inc %ecx
        cmp $256, %ecx
        jb 1b
        mov $VEC_PIT, %ecx; mov $pit_handler, %eax; call set_gate
        mov $VEC_APIC_TIMER, %ecx; mov $apic_timer_handler, %eax; call set_gate
        mov $VEC_SPURIOUS, %ecx; mov $spurious_handler, %eax; call set_gate
        lidt idt_descriptor

        /* 8259s: vectors 0x20-0x2F, only IRQ 0 unmasked. */
        mov $0x11, %al; out %al, $PIC1; out %al, $PIC2
        mov $0x20, %al; out %al, $PIC1 + 1
        mov $0x28, %al; out %al, $PIC2 + 1
        mov $0x04, %al; out %al, $PIC1 + 1
        mov $0x02, %al; out %al, $PIC2 + 1
        mov $0x01, %al; out %al, $PIC1 + 1; out %al, $PIC2 + 1
        mov $0xFE, %al; out %al, $PIC1 + 1
        mov $0xFF, %al; out %al, $PIC2 + 1

        /* PIT channel 0, mode 2, 1 kHz. */
        mov $0x34, %al; out %al, $PIT_CMD
        mov $1193, %ax; out %al, $PIT_CH0
        mov %ah, %al; out %al, $PIT_CH0

        sti
2:      hlt
        cmpl $PIT_TICKS, pit_ticks
        jb 2b
        cli
        mov $0xFF, %al; out %al, $PIC1 + 1          /* mask the PIT again */
        mov pit_ticks, %eax
        print_dec msg_pit

        /* Local APIC: software enable, timer periodic at vector 0x40, divide by 16. */
        mov $msg_apic_version, %esi; call puts
        mov LAPIC + 0x30, %eax
        and $0xFF, %eax
        call put_hex
        mov $msg_nl, %esi; call puts
        movl $(0x100 | VEC_SPURIOUS), LAPIC + 0xF0
        movl $0x3, LAPIC + 0x3E0
        movl $(0x20000 | VEC_APIC_TIMER), LAPIC + 0x320
        movl $100000, LAPIC + 0x380
        sti
3:      hlt
        cmpl $APIC_TICKS, apic_ticks
        jb 3b
        cli
        movl $0x10000, LAPIC + 0x320                 /* mask the timer */
        mov apic_ticks, %eax
        print_dec msg_apic

        /* TPR: with TPR 0x50 a self-IPI at vector 0x40 waits; lowering TPR lets it in. */
        movl $0x50, LAPIC + 0x80
        movl $0, apic_ticks
        movl $(0x40000 | VEC_APIC_TIMER), LAPIC + 0x300   /* ICR: fixed, to self */
        sti
        nop
        nop
        cli
        mov $msg_tpr_held, %esi; call puts
        mov apic_ticks, %eax; call put_dec
        movl $0, LAPIC + 0x80
        sti
        nop
        cli
        mov apic_ticks, %eax
        print_dec msg_tpr_released

        mov $msg_bye, %esi; call puts
        mov $0, %al
        jmp exit

        define_set_gate idt

pit_handler:
        push %eax
        incl pit_ticks
        mov $0x20, %al; out %al, $PIC1              /* EOI */
        pop %eax
        iret

apic_timer_handler:
        incl apic_ticks
        movl $0, LAPIC + 0xB0                        /* EOI */
        iret

spurious_handler:
        iret

unexpected:
        mov $msg_unexpected, %esi; call puts
        mov $1, %al
        jmp exit

        .data
idt_descriptor:
        .word 256 * 8 - 1
        .long idt
msg_hello:        .asciz "== pgsim test kernel: interrupts ==\n"
msg_pit:          .asciz "PIT ticks: "
msg_apic_version: .asciz "local APIC version: "
msg_apic:         .asciz "APIC timer ticks: "
msg_tpr_held:     .asciz "self-IPI under TPR 0x50: "
msg_tpr_released: .asciz ", after TPR 0: "
msg_unexpected:   .asciz "unexpected interrupt or exception\n"
msg_bye:          .asciz "bye\n"
msg_nl:           .asciz "\n"

        .bss
        .align 16
idt:          .space 256 * 8
pit_ticks:    .long 0
apic_ticks:   .long 0
        .space 4096
stack_top:

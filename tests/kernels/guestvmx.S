/* The guest hypervisor test kernel, assembly half: the Multiboot entry, the GDT and TSS, VM entry
 * and the VM-exit entry point (HOST_RIP), and the nested guest's code. The hypervisor itself is
 * guestvmx.c. 32-bit protected mode with paging throughout (VMX operation needs CR0.PG). */
#include "multiboot.inc"
#include "guestvmx.h"

        .text
        .code32
        .globl _start
_start:
        mov $boot_stack_top, %esp
        /* The TSS descriptor's base, then the GDT, the segments and TR. */
        mov $tss, %eax
        mov %ax, vmx_gdt + SEL_TSS + 2
        shr $16, %eax
        mov %al, vmx_gdt + SEL_TSS + 4
        mov %ah, vmx_gdt + SEL_TSS + 7
        lgdt vmx_gdt_descriptor
        ljmp $SEL_CODE, $1f
1:      mov $SEL_DATA, %ax
        mov %ax, %ds; mov %ax, %es; mov %ax, %fs; mov %ax, %gs; mov %ax, %ss
        mov $SEL_TSS, %ax
        ltr %ax
        mov $0xFF, %al                   /* the 8259s masked: no interrupt is wanted */
        out %al, $0x21
        out %al, $0xA1
        push %ebx                        /* the Multiboot information */
        call kmain                       /* returns the exit-device value */
        mov $EXIT_PORT, %dx
        out %al, %dx
        cli
2:      hlt
        jmp 2b

/* unsigned vmx_enter(int resume): VMLAUNCH (resume = 0) or VMRESUME of the current VMCS with
 * HOST_RSP and HOST_RIP set to the exit entry below. Returns 0 once vmx_handle_exit has ended the
 * nested guest's run, or the RFLAGS of a VMLAUNCH or VMRESUME that failed (bit 1 is always set). */
        .globl vmx_enter
vmx_enter:
        push %ebp; push %ebx; push %esi; push %edi
        mov %esp, host_saved_esp
        mov 20(%esp), %edx               /* resume */
        mov $HOST_RSP, %eax
        mov $host_stack_top, %ecx
        vmwrite %ecx, %eax
        mov $HOST_RIP, %eax
        mov $vmx_exit_entry, %ecx
        vmwrite %ecx, %eax
        test %edx, %edx
        jnz 1f
        vmlaunch
        jmp vmx_entry_failed
1:      vmresume
vmx_entry_failed:
        pushf
        pop %eax
        jmp vmx_return

/* HOST_RIP: every VM exit lands here on the host stack, with the nested guest's general registers
 * live. They are handed to vmx_handle_exit (struct guest_regs, in PUSHA's order, pushed one by one)
 * and restored for the VMRESUME; a handler that returns 0 ends the run and vmx_enter returns 0. */
vmx_exit_entry:
        push %eax; push %ecx; push %edx; push %ebx
        push %esp                        /* PUSHA's ESP slot: not the guest's (that is GUEST_RSP) */
        push %ebp; push %esi; push %edi
        push %esp
        call vmx_handle_exit
        add $4, %esp
        test %eax, %eax
        jz vmx_done
        pop %edi; pop %esi; pop %ebp
        add $4, %esp
        pop %ebx; pop %edx; pop %ecx; pop %eax
        vmresume
        jmp vmx_entry_failed
vmx_done:
        xor %eax, %eax
vmx_return:
        mov host_saved_esp, %esp
        pop %edi; pop %esi; pop %ebx; pop %ebp
        ret

/* The nested guest: ring 0, 32-bit protected mode with paging on its own tables, no IDT. Each
 * instruction below makes one VM exit, in this order. */
        .globl nested_guest, nested_guest_vmcall
nested_guest:
        xor %eax, %eax
        xor %ecx, %ecx
        cpuid                            /* exit 10 (CPUID always exits) */
        mov $GUEST_IO_VALUE, %al
        out %al, $GUEST_IO_PORT          /* exit 30 (unconditional I/O exiting) */
        mov GUEST_FAULT_PAGE, %eax       /* #PF: exit 0 (exception bitmap bit 14); runs again */
        movl $GUEST_STORE_VALUE, GUEST_EPT_PAGE  /* EPT violation: exit 48; runs again */
        hlt                              /* exit 12 (HLT exiting) */
nested_guest_vmcall:
        vmcall                           /* exit 18: the hypervisor ends the run */
        jmp nested_guest_vmcall

        .data
        .align 8
        .globl vmx_gdt, tss
vmx_gdt:
        .quad 0
        .quad 0x00CF9B000000FFFF         /* SEL_CODE: 32-bit code, flat */
        .quad 0x00CF93000000FFFF         /* SEL_DATA: 32-bit data, flat */
        .quad 0x0000890000000067         /* SEL_TSS: 32-bit TSS, base filled in at boot */
vmx_gdt_end:
vmx_gdt_descriptor:
        .word vmx_gdt_end - vmx_gdt - 1
        .long vmx_gdt
        .align 16
tss:    .space 104
host_saved_esp:
        .long 0

        .bss
        .align 4096
        .space 16384
boot_stack_top:
        .space 8192
host_stack_top:
        .section .note.GNU-stack, "", @progbits

/* Prints the CPU that CPUID presents and checks that it does not lie: for each feature of a fixed
 * list it prints "name: yes" or "name: no", and before "yes" it exercises the feature (an
 * instruction, a CR4 or EFER bit set and cleared, an MSR read): an exception there, or a wrong
 * result, prints which feature lied and ends with status 1 (a "report" feature is only printed:
 * it cannot be exercised from 32-bit protected mode without paging). Then, with architectural
 * performance monitoring (CPUID leaf 0AH, version 2 or later, a fixed counter), fixed counter 0
 * counts the instructions of a loop of 1000 x (DEC, JNZ) at CPL 0, read with RDPMC before and
 * after: on pgsim exactly 2004 (the first RDPMC, MOV, MOV, 2000, MOV). QEMU's TCG has no PMU. */
#include "multiboot.inc"

/* feature "name", word, bit, probe: prints the line, exercising the feature when reported. */
.macro feature str, word, bit, probe
        .pushsection .rodata
9:      .asciz "\str"
        .popsection
        mov $9b, %esi
        mov %esi, probe_name
        call puts
        mov $msg_colon, %esi; call puts
        testl $(1 << \bit), \word
        jz 8f
        call \probe
        mov $msg_yes, %esi; call puts
        jmp 7f
8:      mov $msg_no, %esi; call puts
7:
.endm

        kernel_start
        call setup_idt

        xor %eax, %eax
        cpuid
        mov %eax, max_basic
        mov %ebx, vendor; mov %edx, vendor + 4; mov %ecx, vendor + 8
        mov $msg_vendor, %esi; call puts
        mov $vendor, %esi; call puts
        mov $msg_nl, %esi; call puts
        mov $1, %eax
        cpuid
        mov %ecx, l1c; mov %edx, l1d
        cmpl $7, max_basic
        jb 1f
        mov $7, %eax; xor %ecx, %ecx
        cpuid
        mov %ebx, l7b; mov %ecx, l7c
1:      mov $0x80000000, %eax
        cpuid
        cmp $0x80000001, %eax
        jb 1f
        mov $0x80000001, %eax
        cpuid
        mov %ecx, e1c; mov %edx, e1d
1:
        feature "de", l1d, 2, probe_de
        feature "pse", l1d, 3, probe_pse
        feature "tsc", l1d, 4, probe_tsc
        feature "msr", l1d, 5, probe_msr
        feature "pae", l1d, 6, probe_pae
        feature "cx8", l1d, 8, probe_cx8
        feature "apic", l1d, 9, probe_apic
        feature "sep", l1d, 11, probe_sep
        feature "pge", l1d, 13, probe_pge
        feature "cmov", l1d, 15, probe_cmov
        feature "pat", l1d, 16, probe_pat
        feature "clflush", l1d, 19, probe_clflush
        feature "vmx (report)", l1c, 5, probe_none
        feature "cx16 (report)", l1c, 13, probe_none
        feature "pcid (report)", l1c, 17, probe_none
        feature "x2apic (report)", l1c, 21, probe_none
        feature "popcnt", l1c, 23, probe_popcnt
        feature "tsc-deadline (report)", l1c, 24, probe_none
        feature "smep", l7b, 7, probe_smep
        feature "invpcid", l7b, 10, probe_invpcid
        feature "smap", l7b, 20, probe_smap
        feature "umip", l7c, 2, probe_umip
        feature "la57", l7c, 16, probe_la57
        feature "abm", e1c, 5, probe_abm
        feature "syscall", e1d, 11, probe_syscall
        feature "nx", e1d, 20, probe_nx
        feature "rdtscp", e1d, 27, probe_rdtscp
        feature "lm", e1d, 29, probe_lm

        /* Architectural performance monitoring: version >= 2 with a fixed counter. */
        cmpl $0xA, max_basic
        jb no_pmu
        mov $0xA, %eax
        cpuid
        movzbl %al, %ebx
        cmp $2, %ebx
        jb no_pmu
        test $0x1F, %edx
        jz no_pmu
        mov $msg_pmu, %esi; call puts
        mov %ebx, %eax; call put_dec
        mov $msg_nl, %esi; call puts
        movl $msg_pmu_name, probe_name
        mov $0x38D, %ecx; mov $1, %eax; xor %edx, %edx; wrmsr   /* FIXED_CTR_CTRL: counter 0 at CPL 0 */
        mov $0x309, %ecx; xor %eax, %eax; xor %edx, %edx; wrmsr /* FIXED_CTR0 = 0 */
        mov $0x38F, %ecx; xor %eax, %eax; mov $1, %edx; wrmsr   /* GLOBAL_CTRL: fixed counter 0 */
        mov $0x40000000, %ecx
        rdpmc
        mov %eax, %esi
        mov $1000, %ecx
1:      dec %ecx
        jnz 1b
        mov $0x40000000, %ecx
        rdpmc
        sub %esi, %eax
        print_dec msg_loop
        mov $0x38F, %ecx; xor %eax, %eax; xor %edx, %edx; wrmsr
        jmp done
no_pmu: mov $msg_no_pmu, %esi; call puts
done:   mov $msg_bye, %esi; call puts
        mov $0, %al
        jmp exit

/* ---- probes: return, or fault (caught below), or jump to lied ---------------------------- */
probe_none: ret
/* Sets and clears the CR4 bits in EDX. */
cr4_toggle:
        mov %cr4, %eax
        mov %eax, %ebx
        or %edx, %eax
        mov %eax, %cr4
        mov %ebx, %cr4
        ret
probe_de: mov $0x8, %edx; jmp cr4_toggle
probe_pse: mov $0x10, %edx; jmp cr4_toggle
probe_pae: mov $0x20, %edx; jmp cr4_toggle
probe_pge: mov $0x80, %edx; jmp cr4_toggle
probe_umip: mov $0x800, %edx; jmp cr4_toggle
probe_la57: mov $0x1000, %edx; jmp cr4_toggle
probe_smep: mov $0x100000, %edx; jmp cr4_toggle
probe_smap: mov $0x200000, %edx; jmp cr4_toggle
/* Sets and clears the IA32_EFER bits in EDI (paging is off, so LME may change). */
efer_toggle:
        mov $0xC0000080, %ecx
        rdmsr
        push %eax
        or %edi, %eax
        wrmsr
        pop %eax
        wrmsr
        ret
probe_syscall: mov $0x1, %edi; jmp efer_toggle
probe_lm: mov $0x100, %edi; jmp efer_toggle
probe_nx: mov $0x800, %edi; jmp efer_toggle
/* Reads the MSR in ECX. */
probe_rdmsr:
        rdmsr
        ret
probe_msr: mov $0x10, %ecx; jmp probe_rdmsr
probe_apic: mov $0x1B, %ecx; jmp probe_rdmsr
probe_sep: mov $0x174, %ecx; jmp probe_rdmsr
probe_pat: mov $0x277, %ecx; jmp probe_rdmsr
probe_tsc: rdtsc; ret
probe_rdtscp: rdtscp; ret
probe_cx8:
        xor %eax, %eax; xor %edx, %edx; xor %ebx, %ebx; xor %ecx, %ecx
        cmpxchg8b scratch
        ret
probe_clflush: clflush scratch; ret
probe_invpcid:
        mov $2, %eax
        invpcid scratch, %eax
        ret
probe_cmov:
        xor %eax, %eax
        mov $5, %ebx
        cmovz %ebx, %eax
        cmp $5, %eax
        jne lied
        ret
probe_popcnt:
        mov $0xF0F, %ebx
        popcnt %ebx, %eax
        cmp $8, %eax
        jne lied
        ret
probe_abm:
        mov $1, %ebx
        lzcnt %ebx, %eax          /* 31; a CPU without LZCNT runs BSR and gives 0 */
        cmp $31, %eax
        jne lied
        ret

lied:   mov $msg_lied, %esi; call puts
        mov probe_name, %esi; call puts
        mov $msg_nl, %esi; call puts
        mov $1, %al
        jmp exit

/* ---- exceptions: every vector prints itself and the probe that raised it, then exits 1 ------- */
fault_common:
        mov $msg_fault, %esi; call puts
        pop %eax
        call put_dec
        mov $msg_in, %esi; call puts
        mov probe_name, %esi; call puts
        mov $msg_nl, %esi; call puts
        mov $1, %al
        jmp exit

        .align 16
fault_stubs:
        .irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .align 16
        push $\n
        jmp fault_common
        .endr
        /* Vectors with an error code: drop it first. */
        .irp n, 8,10,11,12,13,14,17
        .align 16
        add $4, %esp
        push $\n
        jmp fault_common
        .endr

/* setup_idt: an interrupt gate for each of the 32 exception vectors to its stub. */
setup_idt:
        xor %ecx, %ecx
1:      movzbl stub_order(%ecx), %eax    /* the stub's index for vector ECX */
        shl $4, %eax
        add $fault_stubs, %eax
        put_gate32 idt, 0x8E00
        inc %ecx
        cmp $32, %ecx
        jb 1b
        lidt idt_descriptor
        ret

        .section .rodata
/* For vector v, the position of its stub in fault_stubs (the two .irp lists above). */
stub_order:
        .byte 0, 1, 2, 3, 4, 5, 6, 7, 25, 8, 26, 27, 28, 29, 30, 9
        .byte 10, 31, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24
idt_descriptor:
        .word 32 * 8 - 1
        .long idt

        .data
msg_hello:    .asciz "== pgsim test kernel: cpuid ==\n"
msg_vendor:   .asciz "vendor: "
msg_colon:    .asciz ": "
msg_yes:      .asciz "yes\n"
msg_no:       .asciz "no\n"
msg_pmu:      .asciz "pmu: version "
msg_pmu_name: .asciz "pmu"
msg_loop:     .asciz "pmu: fixed counter 0 over the loop: "
msg_no_pmu:   .asciz "pmu: none\n"
msg_lied:     .asciz "CPUID lied: "
msg_fault:    .asciz "fault: vector "
msg_in:       .asciz " in probe "
msg_bye:      .asciz "bye\n"
msg_nl:       .asciz "\n"
vendor:       .space 13
        .align 4
probe_name:   .long 0
max_basic:    .long 0
l1c: .long 0
l1d: .long 0
l7b: .long 0
l7c: .long 0
e1c: .long 0
e1d: .long 0
        .align 16
scratch:      .space 16           /* CMPXCHG8B's operand; INVPCID's descriptor (all zero) */

        .bss
        .align 8
idt:    .space 32 * 8
        .align 16
        .space 4096
stack_top:

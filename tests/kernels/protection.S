/* Protection features, debug registers, NMIs and boot-time MSRs, in long mode as a kernel for
 * QEMU and KVM uses them: CLAC/STAC and SMAP, protection keys (PKRU), RFLAGS.RF in fault frames,
 * instruction and data breakpoints, single step, DR7.GD, NMIs sent as a self-IPI and held back
 * until IRET, and the MSRs a kernel reads at boot. Each line is what the SDM says the processor
 * does; QEMU (-cpu max) prints the same, except the lines that begin with "sdm": QEMU's TCG
 * leaves RF clear in fault frames, has no DR7.GD and accepts reserved MTRR memory types, where
 * the SDM (and KVM on hardware) does what these lines say. */
#include "multiboot.inc"
#include "serial64.inc"

        .set LAPIC, 0xFEE00000
        .set USER_PAGE, 0x401000          /* lm_pt1[1]: made a user page with key 1 */
        .set ICR_NMI_SELF, 0x44400        /* delivery mode NMI, shorthand self */

        kernel_start
        enter_long_mode main64

        .code64
/* print label, then RAX in hexadecimal and a new line */
.macro print_hex64 label, value
        mov $\label, %esi; call puts64
        mov \value, %rax; call put_hex64
        mov $msg_nl, %esi; call puts64
.endm

/* An exception stub: the vectors without an error code push a zero in its place. */
.macro stub v
stub\v:
        .if (\v != 8) && (\v != 10) && (\v != 11) && (\v != 12) && (\v != 13) && (\v != 14) && (\v != 17)
        push $0
        .endif
        push $\v
        jmp common_handler
.endm

main64:
        mov $stack_top, %esp
        /* The IDT: vectors 0-19 to their stubs, NMI to its handler. */
        xor %ecx, %ecx
1:      lea stub_table(%rip), %rax
        mov (%rax,%rcx,8), %rax
        call set_gate64
        inc %ecx
        cmp $20, %ecx
        jb 1b
        mov $2, %ecx
        mov $nmi_handler, %eax
        call set_gate64
        lidt idt64_descriptor(%rip)
        /* The local APIC's page: a 2 MiB page at 0xFEE00000, uncached. */
        mov $apic_pd + 3, %eax
        mov %rax, lm_pdpt+3*8(%rip)
        mov $0xFEE0009B, %eax
        mov %rax, apic_pd+0x1F7*8(%rip)
        mov %cr3, %rax; mov %rax, %cr3

        /* ---- boot-time MSRs ---- */
        mov $0x1A0, %ecx; rdmsr                   /* IA32_MISC_ENABLE: fast strings */
        and $1, %eax
        print_hex64 msg_misc, %rax
        mov $0xFE, %ecx; rdmsr                    /* IA32_MTRRCAP */
        print_hex64 msg_mtrrcap, %rax
        mov $0x2FF, %ecx; mov $0xC06, %eax; xor %edx, %edx; wrmsr
        rdmsr
        print_hex64 msg_deftype, %rax
        mov $0x277, %ecx; rdmsr                   /* IA32_PAT after reset */
        shl $32, %rdx; or %rdx, %rax
        print_hex64 msg_pat, %rax
        mov $0xC0000103, %ecx; mov $0x1234, %eax; xor %edx, %edx; wrmsr
        rdtscp
        print_hex64 msg_tscaux, %rcx
        /* a reserved memory type in MTRRdefType: #GP(0) */
        lea 1f(%rip), %rax; mov %rax, fixup(%rip)
        mov $0x2FF, %ecx; mov $0x2, %eax; xor %edx, %edx; wrmsr
1:      print_hex64 msg_vector, last_vec(%rip)

        /* ---- SMAP, CLAC/STAC ---- */
        orq $4, lm_pml4(%rip); orq $4, lm_pdpt(%rip); orq $4, lm_pd+2*8(%rip)
        orq $4, lm_pt1+8(%rip)                        /* USER_PAGE: user, supervisor tables above */
        mov %cr3, %rax; mov %rax, %cr3
        mov $7, %eax; xor %ecx, %ecx; cpuid
        mov %ebx, %eax; shr $20, %eax; and $1, %eax
        print_hex64 msg_smap_cpuid, %rax
        mov %cr4, %rax; or $0x200000, %rax; mov %rax, %cr4   /* CR4.SMAP */
        clac
        movq $0, last_vec(%rip)
        lea 1f(%rip), %rax; mov %rax, fixup(%rip)
        mov USER_PAGE, %rax                       /* supervisor read of a user page, AC = 0 */
1:      print_hex64 msg_smap_vec, last_vec(%rip)
        print_hex64 msg_smap_err, last_err(%rip)
        print_hex64 msg_smap_rf, last_rf(%rip)
        movq $0, last_vec(%rip)
        stac
        movq $0x5A, USER_PAGE                     /* AC = 1: allowed */
        mov USER_PAGE, %rax
        clac
        print_hex64 msg_stac_read, %rax
        print_hex64 msg_stac_vec, last_vec(%rip)

        /* ---- protection keys ---- */
        mov %cr0, %rax; or $0x10000, %rax; mov %rax, %cr0    /* CR0.WP: supervisor writes checked */
        mov $7, %eax; xor %ecx, %ecx; cpuid
        mov %ecx, %eax; shr $3, %eax; and $1, %eax
        print_hex64 msg_pku_cpuid, %rax
        mov %cr4, %rax; or $0x400000, %rax; mov %rax, %cr4   /* CR4.PKE */
        movabs $0x0800000000000000, %rax          /* key 1 in bits 62:59 */
        or %rax, lm_pt1+8(%rip)
        invlpg USER_PAGE
        stac
        xor %ecx, %ecx; xor %edx, %edx; mov $0x8, %eax   /* key 1 write-disable */
        wrpkru
        xor %ecx, %ecx; rdpkru
        print_hex64 msg_pkru, %rax
        mov USER_PAGE, %rax                       /* reads are allowed */
        print_hex64 msg_pk_read, %rax
        movq $0, last_vec(%rip)
        movq $0, last_err(%rip)
        lea 1f(%rip), %rax; mov %rax, fixup(%rip)
        movq $1, USER_PAGE                        /* a write with CR0.WP: #PF with PK */
1:      print_hex64 msg_pk_vec, last_vec(%rip)
        print_hex64 msg_pk_err, last_err(%rip)
        xor %ecx, %ecx; xor %edx, %edx; mov $0x4, %eax   /* key 1 access-disable */
        wrpkru
        movq $0, last_vec(%rip)
        lea 1f(%rip), %rax; mov %rax, fixup(%rip)
        mov USER_PAGE, %rax
1:      print_hex64 msg_pk_err, last_err(%rip)
        xor %ecx, %ecx; xor %edx, %edx; xor %eax, %eax
        wrpkru
        mov USER_PAGE, %rax
        print_hex64 msg_pk_read, %rax
        clac

        /* ---- RF in a fault frame, and not in a trap's ---- */
        lea 1f(%rip), %rax; mov %rax, fixup(%rip)
        ud2
1:      print_hex64 msg_ud_rf, last_rf(%rip)
        int3
        print_hex64 msg_bp_rf, last_rf(%rip)

        /* ---- instruction breakpoint: a fault with RF clear; IRET with RF set passes it ---- */
        mov $0, %eax; mov %rax, %dr6
        mov $bp_target, %eax; mov %rax, %dr0
        mov $0x1, %eax; mov %rax, %dr7            /* L0, execute, one byte */
        movq $0, counts+8(%rip)
        movb $1, db_set_rf(%rip)
bp_target:
        nop
        movb $0, db_set_rf(%rip)
        xor %eax, %eax; mov %rax, %dr7
        print_hex64 msg_ibp_count, counts+8(%rip)
        mov last_dr6(%rip), %rax; and $0xE00F, %eax
        print_hex64 msg_ibp_dr6, %rax
        print_hex64 msg_ibp_rf, last_rf(%rip)
        mov last_rip(%rip), %rax; mov $bp_target, %ecx; sub %rcx, %rax
        print_hex64 msg_ibp_rip, %rax

        /* ---- data breakpoint: a trap after the write ---- */
        xor %eax, %eax; mov %rax, %dr6
        mov $watched, %eax; mov %rax, %dr1
        mov $0x00D00004, %eax; mov %rax, %dr7     /* L1, write, four bytes */
        movq $0, counts+8(%rip)
        movl $7, watched+4(%rip)                      /* outside: no trap */
        mov watched(%rip), %eax                         /* a read: no trap */
        movw $9, watched+2(%rip)                      /* overlaps: trap */
dbp_after:
        xor %eax, %eax; mov %rax, %dr7
        print_hex64 msg_dbp_count, counts+8(%rip)
        mov last_dr6(%rip), %rax; and $0xE00F, %eax
        print_hex64 msg_dbp_dr6, %rax
        mov last_rip(%rip), %rax; mov $dbp_after, %ecx; sub %rcx, %rax
        print_hex64 msg_dbp_rip, %rax

        /* ---- single step: one #DB per instruction while TF is set ---- */
        xor %eax, %eax; mov %rax, %dr6
        movq $0, counts+8(%rip)
        pushf
        orq $0x100, (%rsp)
        popf                                      /* TF from here: the next instruction traps */
        nop
        nop
        nop
        pushf
        andq $~0x100, (%rsp)
        popf                                      /* still traps: TF was set when it began */
        print_hex64 msg_ss_count, counts+8(%rip)
        mov last_dr6(%rip), %rax; and $0xE00F, %eax
        print_hex64 msg_ss_dr6, %rax

        /* ---- DR7.GD: the next MOV DR is a #DB fault with DR6.BD, and GD is cleared ---- */
        xor %eax, %eax; mov %rax, %dr6
        mov $0x2000, %eax; mov %rax, %dr7
        movq $0, counts+8(%rip)
        mov %dr0, %rax
        print_hex64 msg_gd_count, counts+8(%rip)
        mov last_dr6(%rip), %rax; and $0xE00F, %eax
        print_hex64 msg_gd_dr6, %rax
        mov %dr7, %rax
        print_hex64 msg_gd_dr7, %rax

        /* ---- NMI: a self-IPI, and a second one held back until IRET ---- */
        mov $LAPIC, %edx
        movl $0x1FF, 0xF0(%rdx)                   /* APIC software enable */
        movl $ICR_NMI_SELF, 0x300(%rdx)
        mov $100, %ecx
1:      cmpq $2, nmi_count(%rip)
        je 2f
        pause
        loop 1b
2:      print_hex64 msg_nmi_count, nmi_count(%rip)
        print_hex64 msg_nmi_inside, nmi_seen_inside(%rip)

        finish64

/* set_gate64: IDT entry RCX -> handler RAX (64-bit interrupt gate, CS 0x18) */
set_gate64:
        mov %rcx, %rdx
        shl $4, %rdx
        lea idt64(%rip), %rsi
        add %rsi, %rdx
        mov %ax, (%rdx)
        movw $0x18, 2(%rdx)
        movw $0x8E00, 4(%rdx)
        shr $16, %rax
        mov %ax, 6(%rdx)
        movl $0, 8(%rdx)
        movl $0, 12(%rdx)
        ret

/* put_hex64: RAX in hexadecimal, without leading zeros */
put_hex64:
        push %rcx; push %rbx
        mov $16, %ecx
        xor %ebx, %ebx                            /* a digit printed yet */
1:      rol $4, %rax
        push %rax
        and $0xF, %eax
        jnz 2f
        test %ebx, %ebx
        jnz 2f
        cmp $1, %ecx
        jne 4f
2:      mov $1, %ebx
        add $'0', %al
        cmp $'9', %al
        jbe 3f
        add $('a' - '9' - 1), %al
3:      call putc64
4:      pop %rax
        dec %ecx
        jnz 1b
        pop %rbx; pop %rcx
        ret

/* Every exception: records vector, error code, RIP, RF and DR6; continues at `fixup` when set
 * (once), else where the frame says; sets RF in a #DB frame when db_set_rf is. */
common_handler:
        push %rax
        mov 8(%rsp), %rax;  mov %rax, last_vec(%rip)
        push %rsi
        lea counts(%rip), %rsi
        incq (%rsi,%rax,8)
        pop %rsi
        mov 16(%rsp), %rax; mov %rax, last_err(%rip)
        mov 24(%rsp), %rax; mov %rax, last_rip(%rip)
        mov 40(%rsp), %rax; shr $16, %rax; and $1, %eax; mov %rax, last_rf(%rip)
        mov %dr6, %rax;     mov %rax, last_dr6(%rip)
        cmpq $1, 8(%rsp)
        jne 1f
        cmpb $0, db_set_rf(%rip)
        je 1f
        orq $0x10000, 40(%rsp)
1:      mov fixup(%rip), %rax
        test %rax, %rax
        jz 2f
        mov %rax, 24(%rsp)
        movq $0, fixup(%rip)
2:      pop %rax
        add $16, %rsp
        iretq

/* NMI: counts; the first sends another NMI, which must wait for this handler's IRET. */
nmi_handler:
        push %rax
        incq nmi_count(%rip)
        cmpq $1, nmi_count(%rip)
        jne 1f
        push %rdx
        mov $LAPIC, %edx
        movl $ICR_NMI_SELF, 0x300(%rdx)
        pop %rdx
        nop; nop; nop
        mov nmi_count(%rip), %rax
        mov %rax, nmi_seen_inside(%rip)
1:      pop %rax
        iretq

        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19
        stub \v
        .endr

        .section .rodata
        .align 8
stub_table:
        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19
        .long stub\v, 0
        .endr
idt64_descriptor:
        .word 256 * 16 - 1
        .long idt64, 0
msg_hello: .asciz "== pgsim test kernel: protection ==\n"
msg_nl:    .asciz "\n"
msg_bye:   .asciz "bye\n"
msg_misc:       .asciz "misc_enable fast strings: "
msg_mtrrcap:    .asciz "mtrrcap: "
msg_deftype:    .asciz "mtrr_def_type: "
msg_pat:        .asciz "pat: "
msg_tscaux:     .asciz "rdtscp tsc_aux: "
msg_vector:     .asciz "sdm: reserved mtrr type, vector: "
msg_smap_cpuid: .asciz "cpuid smap: "
msg_smap_vec:   .asciz "smap read with ac=0, vector: "
msg_smap_err:   .asciz "smap read with ac=0, error code: "
msg_smap_rf:    .asciz "sdm: smap read with ac=0, frame rf: "
msg_stac_read:  .asciz "stac read: "
msg_stac_vec:   .asciz "stac read, vector: "
msg_pku_cpuid:  .asciz "cpuid pku: "
msg_pkru:       .asciz "rdpkru: "
msg_pk_read:    .asciz "key 1 read: "
msg_pk_vec:     .asciz "key 1 write-disabled write, vector: "
msg_pk_err:     .asciz "key 1 denied, error code: "
msg_ud_rf:      .asciz "sdm: #ud frame rf: "
msg_bp_rf:      .asciz "#bp frame rf: "
msg_ibp_count:  .asciz "instruction breakpoint, #db: "
msg_ibp_dr6:    .asciz "instruction breakpoint, dr6: "
msg_ibp_rf:     .asciz "instruction breakpoint, frame rf: "
msg_ibp_rip:    .asciz "instruction breakpoint, rip - target: "
msg_dbp_count:  .asciz "data breakpoint, #db: "
msg_dbp_dr6:    .asciz "data breakpoint, dr6: "
msg_dbp_rip:    .asciz "data breakpoint, rip - next: "
msg_ss_count:   .asciz "single step, #db: "
msg_ss_dr6:     .asciz "single step, dr6: "
msg_gd_count:   .asciz "sdm: general detect, #db: "
msg_gd_dr6:     .asciz "sdm: general detect, dr6: "
msg_gd_dr7:     .asciz "sdm: general detect, dr7 after: "
msg_nmi_count:  .asciz "nmis: "
msg_nmi_inside: .asciz "nmis seen inside the first handler: "

        .data
        .align 8
fixup:      .quad 0
last_vec:   .quad 0
last_err:   .quad 0
last_rip:   .quad 0
last_rf:    .quad 0
last_dr6:   .quad 0
nmi_count:  .quad 0
nmi_seen_inside: .quad 0
counts:     .fill 32, 8, 0
watched:    .quad 0
db_set_rf:  .byte 0

        .bss
        .align 4096
idt64:  .space 4096
apic_pd: .space 4096
        .space 8192
stack_top:

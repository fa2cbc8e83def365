/* The x87, SSE and XSAVE test kernel: the CPUID bits, #UD for SSE without CR4.OSFXSR, SSE and x87
 * arithmetic with its flags, rounding modes and unmasked exceptions (#XM, #MF), FXSAVE/FXRSTOR,
 * FNSAVE/FRSTOR, XSETBV/XGETBV/XSAVE/XRSTOR, #NM with CR0.TS, and lazy FPU switching between two
 * tasks (CR0.TS set at each switch, the #NM handler does CLTS and FXSAVE/FXRSTOR), SWITCHES
 * switches. 32-bit protected mode, no paging; the output is the same on QEMU (-cpu max) and pgsim. */
#include "multiboot.inc"
#include "idt.inc"

#ifndef SWITCHES
#define SWITCHES 10
#endif
        .set CR0_MP, 0x2
        .set CR0_EM, 0x4
        .set CR0_TS, 0x8
        .set CR0_NE, 0x20
        .set CR4_OSFXSR, 0x200
        .set CR4_OSXMMEXCPT, 0x400
        .set CR4_OSXSAVE, 0x40000

/* Runs the faulting instruction(s) that follow with `recover` as where the handler resumes. */
.macro expect_fault resume
        movl $\resume, recover
        movl $0xFF, last_vector
.endm

        kernel_start

        idt_fill
        mov $6, %ecx; mov $ud_handler, %eax; call set_gate
        mov $7, %ecx; mov $nm_handler, %eax; call set_gate
        mov $13, %ecx; mov $gp_handler, %eax; call set_gate
        mov $16, %ecx; mov $mf_handler, %eax; call set_gate
        mov $19, %ecx; mov $xm_handler, %eax; call set_gate
        lidt idt_descriptor

        /* CPUID: FPU, FXSR, SSE, SSE2 in leaf 1 EDX, XSAVE in ECX. */
        mov $1, %eax; cpuid
        mov %edx, %eax
        and $0x07000001, %eax
        print_hex msg_cpuid_edx
        mov $1, %eax; cpuid
        mov %ecx, %eax
        and $0x04000000, %eax
        print_hex msg_cpuid_ecx

        /* SSE before CR4.OSFXSR: #UD. */
        expect_fault 1f
        addps %xmm1, %xmm0
1:      mov last_vector, %eax
        print_dec msg_sse_off

        /* CR0: EM clear, MP and NE set; CR4: OSFXSR, OSXMMEXCPT. */
        mov %cr0, %eax
        and $~(CR0_EM | CR0_TS), %eax
        or $(CR0_MP | CR0_NE), %eax
        mov %eax, %cr0
        mov %cr4, %eax
        or $(CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
        mov %eax, %cr4
        fninit

        /* ---- SSE ---- */
        movsd two, %xmm0
        sqrtsd %xmm0, %xmm0
        movsd %xmm0, scratch
        mov scratch + 4, %eax; print_hex msg_sqrt2_hi
        mov scratch, %eax; print_hex msg_sqrt2_lo
        mov $-7, %eax
        cvtsi2sd %eax, %xmm1
        mulsd %xmm0, %xmm1
        cvttsd2si %xmm1, %eax
        print_hex msg_cvtt
        movaps vec_a, %xmm2
        addps vec_b, %xmm2
        mulps vec_b, %xmm2
        movaps %xmm2, scratch
        mov scratch, %eax; print_hex msg_ps0
        mov scratch + 12, %eax; print_hex msg_ps3
        movdqa ints, %xmm3
        paddd %xmm3, %xmm3
        pshufd $0x1B, %xmm3, %xmm4
        psrlq $4, %xmm4
        punpcklbw %xmm3, %xmm4
        pcmpgtb %xmm3, %xmm4
        pmovmskb %xmm4, %eax
        print_hex msg_pmovmskb
        movd %xmm4, %eax
        print_hex msg_movd
        /* UCOMISD with a NaN: unordered (ZF, PF, CF). */
        movsd qnan, %xmm5
        ucomisd %xmm0, %xmm5
        pushf; pop %eax
        and $0x8D5, %eax
        print_hex msg_ucomisd
        /* Rounding control: 2.5 to integer down, up and to nearest. */
        movsd two_and_half, %xmm6
        movl $0x3F80, scratch; ldmxcsr scratch
        cvtsd2si %xmm6, %eax; print_dec msg_round_down
        movl $0x5F80, scratch; ldmxcsr scratch
        cvtsd2si %xmm6, %eax; print_dec msg_round_up
        movl $0x1F80, scratch; ldmxcsr scratch
        cvtsd2si %xmm6, %eax; print_dec msg_round_nearest
        /* A masked divide by zero flags ZE. (Unmasked SIMD exceptions, #XM, are left to the unit
         * tests: QEMU's TCG does not raise them.) */
        movsd one, %xmm7
        divsd zero, %xmm7
        stmxcsr scratch; mov scratch, %eax; print_hex msg_mxcsr_masked

        /* ---- x87 ---- */
        fninit
        fnstcw scratch; movzwl scratch, %eax; print_hex msg_fcw
        fldpi
        fimull thousand
        fistpl scratch
        mov scratch, %eax; print_dec msg_pi
        fldl two
        fsqrt
        fstpl scratch
        mov scratch + 4, %eax; print_hex msg_fsqrt_hi
        mov scratch, %eax; print_hex msg_fsqrt_lo
        fld1
        fldz
        fcomip %st(1), %st
        pushf; pop %eax
        and $0x8D5, %eax
        print_hex msg_fcomi
        fld1
        fucompp
        fnstsw %ax
        and $0x4700, %eax
        print_hex msg_fucompp
        fld1
        fnsave fpu_image
        movzwl fpu_image + 8, %eax; print_hex msg_fnsave_tags
        fnstcw scratch; movzwl scratch, %eax; print_hex msg_after_fnsave
        frstor fpu_image
        fistpl scratch; mov scratch, %eax; print_dec msg_frstor
        /* An unmasked divide by zero is pending until the next waiting instruction: #MF. */
        movw $0x37B, scratch; fldcw scratch
        fld1
        fldz
        fdivrp %st, %st(1)
        fnstsw %ax
        and $0x80FF, %eax
        print_hex msg_pending
        expect_fault 1f
        fwait
1:      mov last_vector, %eax; print_dec msg_mf
        fninit

        /* ---- FXSAVE / FXRSTOR ---- */
        movaps vec_a, %xmm2
        fld1
        fxsave fx_area
        movzwl fx_area, %eax; print_hex msg_fx_fcw
        movzbl fx_area + 4, %eax; print_hex msg_fx_ftw
        mov fx_area + 24, %eax; print_hex msg_fx_mxcsr
        mov fx_area + 28, %eax; print_hex msg_fx_mask
        mov fx_area + 160 + 2 * 16, %eax; print_hex msg_fx_xmm2
        pxor %xmm2, %xmm2
        fninit
        fxrstor fx_area
        movd %xmm2, %eax; print_hex msg_fxrstor_xmm2
        fistpl scratch; mov scratch, %eax; print_dec msg_fxrstor_st0

        /* ---- XSAVE ---- */
        mov %cr4, %eax
        or $CR4_OSXSAVE, %eax
        mov %eax, %cr4
        mov $1, %eax; cpuid
        mov %ecx, %eax; and $0x08000000, %eax
        print_hex msg_osxsave
        xor %ecx, %ecx; xgetbv
        print_hex msg_xcr0_reset
        expect_fault 1f
        mov $2, %eax; xor %edx, %edx; xor %ecx, %ecx
        xsetbv                                /* x87 disabled: #GP */
1:      mov last_vector, %eax; print_dec msg_xsetbv_gp
        mov $3, %eax; xor %edx, %edx; xor %ecx, %ecx
        xsetbv
        xor %ecx, %ecx; xgetbv
        print_hex msg_xcr0
        mov $0xD, %eax; xor %ecx, %ecx; cpuid
        mov %ebx, %eax; print_dec msg_xsave_size
        mov $0xD, %eax; xor %ecx, %ecx; cpuid
        and $3, %eax; print_hex msg_xsave_components
        mov $3, %eax; xor %edx, %edx
        xsave xsave_area
        mov xsave_area + 512, %eax; and $3, %eax
        print_hex msg_xstate_bv
        pxor %xmm2, %xmm2
        mov $3, %eax; xor %edx, %edx
        xrstor xsave_area
        movd %xmm2, %eax; print_hex msg_xrstor_xmm2
        andl $~2, xsave_area + 512             /* SSE in its initial state */
        mov $3, %eax; xor %edx, %edx
        xrstor xsave_area
        movd %xmm2, %eax; print_hex msg_xrstor_init
        fninit

        /* ---- #NM with CR0.TS ---- */
        movl $0, nm_count
        mov %cr0, %eax; or $CR0_TS, %eax; mov %eax, %cr0
        addps %xmm1, %xmm0                    /* #NM; the handler clears TS and it runs again */
        addps %xmm1, %xmm0
        mov nm_count, %eax; print_dec msg_nm_sse
        mov %cr0, %eax; and $~CR0_MP, %eax; or $CR0_TS, %eax; mov %eax, %cr0
        fwait                                 /* TS without MP: no #NM */
        mov nm_count, %eax; print_dec msg_nm_wait
        fld1                                  /* #NM */
        fstp %st(0)
        mov nm_count, %eax; print_dec msg_nm_x87
        mov %cr0, %eax; or $CR0_MP, %eax; mov %eax, %cr0
        smsw %ax
        and $0xF, %eax
        print_hex msg_smsw

        /* ---- Lazy FPU switching between tasks A and B ---- */
        fxsave task_a_fpu
        fxsave task_b_fpu
        movl $task_a_fpu, fpu_owner
        movl $1, lazy
        movl $0, nm_count
        xor %esi, %esi
2:      mov $task_a_fpu, %eax
        mov $one, %ebx
        test $1, %esi
        jz 3f
        mov $task_b_fpu, %eax
        mov $two, %ebx
3:      mov %eax, fpu_current                 /* the switch: TS set, the FPU left to its owner */
        mov %cr0, %eax; or $CR0_TS, %eax; mov %eax, %cr0
        addsd (%ebx), %xmm5                   /* the task's own XMM5: #NM here only */
        addsd zero, %xmm6
        movapd %xmm5, %xmm7
        inc %esi
        cmp $SWITCHES, %esi
        jb 2b
        movl $0, lazy
        mov %cr0, %eax; and $~CR0_TS, %eax; mov %eax, %cr0
        mov fpu_owner, %eax
        fxsave (%eax)                          /* both tasks' state in memory */
        cvttsd2si task_a_fpu + 160 + 5 * 16, %eax; print_dec msg_task_a
        cvttsd2si task_b_fpu + 160 + 5 * 16, %eax; print_dec msg_task_b
        mov nm_count, %eax; print_dec msg_lazy_nm

        mov $msg_bye, %esi; call puts
        mov $0, %al
        jmp exit

        idt_functions

/* Faults expected by the code: the vector is recorded and execution resumes at `recover`. */
ud_handler:
        movl $6, last_vector
        jmp resume
gp_handler:
        add $4, %esp                          /* the error code */
        movl $13, last_vector
        jmp resume
mf_handler:
        fnclex
        movl $16, last_vector
        jmp resume
xm_handler:
        movl $19, last_vector
resume:
        push %eax
        mov recover, %eax
        mov %eax, 4(%esp)                     /* the return EIP */
        pop %eax
        iret

/* #NM: CLTS; in lazy mode the FPU state moves from its owner to the current task. The faulting
 * instruction then runs again. */
nm_handler:
        push %eax
        incl nm_count
        clts
        cmpl $0, lazy
        je 1f
        mov fpu_owner, %eax
        cmp fpu_current, %eax
        je 1f
        fxsave (%eax)
        mov fpu_current, %eax
        fxrstor (%eax)
        mov %eax, fpu_owner
1:      pop %eax
        iret

        .data
        .align 16
vec_a:  .float 1.5, -2.25, 1e30, 3.0
vec_b:  .float 0.5, 4.0, 1e30, -0.1
ints:   .long 0x01020304, 0x80FF7F00, 0x7FFFFFFF, 0xFFFFFFFF
two:    .double 2.0
one:    .double 1.0
zero:   .double 0.0
two_and_half: .double 2.5
qnan:   .quad 0x7FF8000000000000
thousand: .long 1000
        idt_data
msg_hello:          .asciz "== pgsim test kernel: fpu ==\n"
msg_cpuid_edx:      .asciz "cpuid.1 edx fpu fxsr sse sse2: "
msg_cpuid_ecx:      .asciz "cpuid.1 ecx xsave: "
msg_sse_off:        .asciz "sse without CR4.OSFXSR: vector "
msg_sqrt2_hi:       .asciz "sqrtsd 2 high: "
msg_sqrt2_lo:       .asciz "sqrtsd 2 low: "
msg_cvtt:           .asciz "cvttsd2si -7*sqrt(2): "
msg_ps0:            .asciz "(a+b)*b lane 0: "
msg_ps3:            .asciz "(a+b)*b lane 3: "
msg_pmovmskb:       .asciz "pmovmskb: "
msg_movd:           .asciz "movd: "
msg_ucomisd:        .asciz "ucomisd nan flags: "
msg_round_down:     .asciz "cvtsd2si 2.5 down: "
msg_round_up:       .asciz "cvtsd2si 2.5 up: "
msg_round_nearest:  .asciz "cvtsd2si 2.5 nearest: "
msg_mxcsr_masked:   .asciz "mxcsr after masked 1/0: "
msg_fcw:            .asciz "fninit control word: "
msg_pi:             .asciz "pi*1000: "
msg_fsqrt_hi:       .asciz "fsqrt 2 high: "
msg_fsqrt_lo:       .asciz "fsqrt 2 low: "
msg_fcomi:          .asciz "fcomip 0<1 flags: "
msg_fucompp:        .asciz "fucompp 1=1 status: "
msg_fnsave_tags:    .asciz "fnsave tag word: "
msg_after_fnsave:   .asciz "control word after fnsave: "
msg_frstor:         .asciz "frstor st0: "
msg_pending:        .asciz "pending 1/0 status: "
msg_mf:             .asciz "fwait: vector "
msg_fx_fcw:         .asciz "fxsave fcw: "
msg_fx_ftw:         .asciz "fxsave abridged tags: "
msg_fx_mxcsr:       .asciz "fxsave mxcsr: "
msg_fx_mask:        .asciz "fxsave mxcsr_mask: "
msg_fx_xmm2:        .asciz "fxsave xmm2: "
msg_fxrstor_xmm2:   .asciz "fxrstor xmm2: "
msg_fxrstor_st0:    .asciz "fxrstor st0: "
msg_osxsave:        .asciz "cpuid.1 ecx osxsave: "
msg_xcr0_reset:     .asciz "xcr0 at reset: "
msg_xsetbv_gp:      .asciz "xsetbv without x87: vector "
msg_xcr0:           .asciz "xcr0: "
msg_xsave_size:     .asciz "xsave area for xcr0: "
msg_xsave_components: .asciz "xsave x87 and sse supported: "
msg_xstate_bv:      .asciz "xstate_bv: "
msg_xrstor_xmm2:    .asciz "xrstor xmm2: "
msg_xrstor_init:    .asciz "xrstor sse init xmm2: "
msg_nm_sse:         .asciz "#NM for sse with TS: "
msg_nm_wait:        .asciz "#NM after fwait without MP: "
msg_nm_x87:         .asciz "#NM after x87 with TS: "
msg_smsw:           .asciz "smsw low bits: "
msg_task_a:         .asciz "task A sum: "
msg_task_b:         .asciz "task B sum: "
msg_lazy_nm:        .asciz "lazy switches, #NM: "
msg_unexpected:     .asciz "unexpected interrupt or exception\n"
msg_bye:            .asciz "bye\n"
msg_nl:             .asciz "\n"

        .bss
        .align 64
xsave_area:   .space 1024
fx_area:      .space 512
task_a_fpu:   .space 512
task_b_fpu:   .space 512
fpu_image:    .space 128
scratch:      .space 16
        .align 16
idt:          .space 256 * 8
last_vector:  .long 0
recover:      .long 0
nm_count:     .long 0
lazy:         .long 0
fpu_owner:    .long 0
fpu_current:  .long 0
        .space 4096
stack_top:

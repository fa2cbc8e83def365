/* Multiboot 1 entry: the loader starts us in 32-bit protected mode with paging off,
 * EAX = 0x2BADB002 and EBX = the information structure. We identity-map the first GiB
 * (kernel, RAM) and 3-4 GiB (local APIC) with 2 MiB pages, enter long mode and call kmain. */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* align modules to pages; provide the memory map */

#define PDE_LARGE 0x83      /* present, writable, 2 MiB */
#define PDE_LARGE_UC 0x9B   /* ... and uncached, for device memory */
#define TABLE 0x03          /* present, writable: a pointer to the next level */

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

    .section .boot.text, "ax"
    .code32
    .globl _start
_start:
    cli
    mov %eax, %ebp                  /* keep the magic and the info pointer across cpuid */
    mov %ebx, %esi
    mov $boot_stack_top, %esp

    mov $__bss_start, %edi          /* the loader should have zeroed it; do not rely on it */
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    mov $0x80000000, %eax           /* long mode available? */
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    test $(1 << 29), %edx
    jz no_long_mode

    mov $boot_pd0, %edi             /* 0..1 GiB */
    mov $PDE_LARGE, %eax
    call fill_pd
    mov $boot_pd3, %edi             /* 3..4 GiB */
    mov $(0xC0000000 + PDE_LARGE_UC), %eax
    call fill_pd
    movl $(boot_pd0 + TABLE), boot_pdpt
    movl $(boot_pd3 + TABLE), boot_pdpt + 3 * 8
    movl $(boot_pdpt + TABLE), boot_pml4

    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $(1 << 5), %eax              /* PAE */
    mov %eax, %cr4
    mov $0xC0000080, %ecx           /* EFER: long mode enable, SYSCALL enable */
    rdmsr
    or $((1 << 8) | (1 << 0)), %eax
    wrmsr
    mov %cr0, %eax
    or $((1 << 31) | (1 << 16) | (1 << 0)), %eax  /* PG, WP, PE */
    mov %eax, %cr0
    lgdt boot_gdtr
    ljmp $0x08, $long_entry

/* EDI = page directory, EAX = first entry; fills 512 entries 2 MiB apart. */
fill_pd:
    mov $512, %ecx
1:  mov %eax, (%edi)
    movl $0, 4(%edi)
    add $0x200000, %eax
    add $8, %edi
    dec %ecx
    jnz 1b
    ret

no_long_mode:
    mov $no_long_mode_msg, %esi
1:  mov $0x3FD, %dx                 /* wait for the UART's transmitter */
2:  in %dx, %al
    test $0x20, %al
    jz 2b
    lodsb
    test %al, %al
    jz 3f
    mov $0x3F8, %dx
    out %al, %dx
    jmp 1b
3:  mov $0xF4, %dx                  /* exit device: status 1 = fail */
    mov $1, %eax
    out %eax, %dx
4:  hlt
    jmp 4b

    .code64
long_entry:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov $boot_stack_top, %rsp
    mov %ebp, %edi                  /* kmain(magic, info) */
    mov %esi, %esi
    call kmain
5:  cli
    hlt
    jmp 5b

    .section .rodata
no_long_mode_msg:
    .asciz "pgsim-kernel: FAIL the CPU has no long mode\n"
    .align 8
boot_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF        /* 0x08: 64-bit code, ring 0 (accessed bit preset) */
    .quad 0x00CF93000000FFFF        /* 0x10: data, ring 0 (accessed bit preset) */
boot_gdt_end:
boot_gdtr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .bss
    .align 4096
    .globl boot_pml4
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
    .globl boot_pd0
boot_pd0:  .skip 4096
boot_pd3:  .skip 4096
    .globl boot_stack_top
boot_stack: .skip 16384
boot_stack_top:

/* The pgsim hypercall ABI: what a paravirtual guest kernel and the pgsim VMM agree on (Xen's
 * x86-64 PV interface, SOSP 2003, reduced to what the pgsim kernel needs). This header is the one
 * definition of every number below: the freestanding guest includes it as "pv_abi.h" (its include
 * path is workloads/kernel), the C++ VMM as "workloads/kernel/pv_abi.h" (the project root is on its
 * include path). Plain C with fixed-width types, so that both compilers lay the structures out the
 * same way; the static assertions below hold the layout.
 *
 * Detection. CPUID leaf 0x40000000 returns the highest hypervisor leaf in EAX (at least
 * PV_CPUID_MAX_LEAF) and the signature "pgsimvmm\0\0\0\0" in EBX, ECX, EDX; CPUID.1:ECX[31] (the
 * hypervisor bit) is set. A VMM that offers the hypercalls presents both.
 *
 * The call. VMCALL (0F 01 C1), so that a hardware-assisted VMM (a VM exit) and a paravirtual one
 * (without VMX, VMCALL raises #UD, which the VMM recognises by its bytes) serve the same kernel.
 *   RAX = operation (enum pv_op), arguments in RDI, RSI, RDX, R10, R8 (the Linux system-call
 *   order, R10 in place of RCX, which SYSCALL uses), result in RAX: 0 or a value the operation
 *   defines, or a negative error code (PV_E*). Every other register is preserved; RIP advances past
 *   the VMCALL (except for PV_OP_IRET). Only the virtual ring 0 may call: VMCALL from the guest's
 *   virtual ring 3 is delivered to the guest as #UD, as hardware would.
 *   Pointers in arguments are guest-virtual addresses in the current (kernel) address space; page
 *   frames (mmu_update's entry addresses, page-table roots, the shared-info page) are guest-physical
 *   addresses, which under direct paging are the machine's.
 *
 * Events. The VMM delivers exceptions and virtual interrupts ("events") to the guest through its
 * trap table (PV_OP_SET_TRAP_TABLE): on the kernel stack given by PV_OP_STACK_SWITCH when the guest
 * was in its virtual ring 3 (on the current stack otherwise), it pushes the 64-bit hardware frame
 * SS, RSP, RFLAGS, CS, RIP and, for vectors 8, 10-14, 17, 21, 29 and 30, the error code, then runs
 * the handler at the virtual ring 0 with the kernel root loaded. In the frame, CS holds the trap
 * entry's selector with RPL 0 when the guest was in its virtual ring 0, and the user selector
 * (PV_USER_CS) when it was in ring 3; RFLAGS.IF is the virtual interrupt flag (the inverse of the
 * event mask) before delivery. An entry with PV_TRAP_MASK_EVENTS sets the event mask, as an
 * interrupt gate clears IF. A page fault's address is in the shared info's fault_address (the
 * virtual CR2). A virtual interrupt is delivered only while the event mask is clear and its
 * priority class (vector >> 4) is above task_priority; otherwise it stays pending in
 * pending_vectors with event_pending set.
 *
 * SYSCALL from the guest's ring 3 enters the callback given by PV_OP_SET_SYSCALL_CALLBACK with the
 * registers SYSCALL leaves natively (RCX = user RIP, R11 = user RFLAGS with the virtual IF, RSP the
 * user's), events masked, the virtual ring 0 and the kernel root loaded.
 *
 * Direct paging. The guest's page tables are the ones the CPU walks (no shadow). The VMM types
 * every guest frame (none, writable, page table of level 1-4) and refuses an update that would
 * let the guest reach memory it does not own: a mapping outside guest RAM or into the VMM's memory,
 * a writable mapping of a frame in use as a page table, a table entry whose target does not
 * validate as a table of the level below. The guest's kernel runs at the real CPL 3 in IA-32e
 * mode, where the U/S bit cannot keep its user processes out of its own memory: each address space
 * has two roots (as Xen's x86-64 PV guests), the kernel root (the kernel's mappings and the user's)
 * used in the virtual ring 0 and the user root (the user's mappings only) used in ring 3, and the
 * VMM switches between them on every event, system call and PV_OP_IRET. PML4 entries
 * PV_VMM_PML4_FIRST to PV_VMM_PML4_LAST of both roots belong to the VMM (its descriptor tables and
 * entry code); the guest leaves them empty. */
#ifndef PGSIM_PV_ABI_H
#define PGSIM_PV_ABI_H
#ifndef __ASSEMBLER__
#include <stdint.h>
#endif

/* ---- detection ---- */
#define PV_CPUID_LEAF 0x40000000u
#define PV_CPUID_MAX_LEAF 0x40000000u /* EAX of the leaf: the highest hypervisor leaf */
#define PV_CPUID_SIGNATURE "pgsimvmm\0\0\0\0" /* EBX, ECX, EDX: 12 bytes */
#define PV_CPUID_HYPERVISOR_BIT (1u << 31)    /* CPUID.1:ECX */

/* ---- the hypercall instruction ---- */
#define PV_HYPERCALL_BYTES {0x0F, 0x01, 0xC1} /* VMCALL */
#define PV_HYPERCALL_LENGTH 3

/* ---- error codes (returned negated; Linux's numbers) ---- */
#ifndef __ASSEMBLER__
enum pv_error {
    PV_EPERM = 1,   /* not allowed: the VMM's memory, a writable page table, a call from ring 3 */
    PV_ENOENT = 2,  /* no such object (unpinning a table that is not pinned) */
    PV_EFAULT = 14, /* a guest pointer the VMM cannot read or write */
    PV_EBUSY = 16,  /* the object is in use (unpinning a loaded root) */
    PV_EINVAL = 22, /* a malformed argument: alignment, reserved bits, a bad level, size or vector */
    PV_ENOSYS = 38, /* no such operation */
};
#endif

/* ---- operations (RAX); macros, so that assembly can use them ---- */
/* (entries): registers the trap table, an array of struct pv_trap_entry ended by an entry
 * whose address is 0; replaces the previous table. 0 or -EINVAL, -EFAULT. */
#define PV_OP_SET_TRAP_TABLE 0
/* (requests, count, done): applies count struct pv_mmu_update in order, each validated
 * (direct paging); stops at the first refused one. Returns count when all were applied, else
 * the refused request's negative error code; when done is not 0, the u64 it points to receives
 * how many were applied either way. */
#define PV_OP_MMU_UPDATE 1
/* (rsp): the kernel stack for events from the virtual ring 3 (the TSS's RSP0). 0 or -EINVAL. */
#define PV_OP_STACK_SWITCH 2
/* (calls, count): runs count struct pv_multicall entries in one crossing, in order, each
 * result in its entry; stops at the first that fails. 0 when all succeeded, else the failed
 * entry's error. Entries may not be PV_OP_MULTICALL or PV_OP_IRET (-EINVAL). */
#define PV_OP_MULTICALL 3
/* (kernel_root, user_root): loads a new address space: two PML4 frames, each validated as a
 * level-4 table and referenced while loaded (user_root 0: a kernel-only address space, which
 * may not return to ring 3). Flushes the TLB. 0 or -EINVAL, -EPERM. */
#define PV_OP_NEW_BASEPTR 4
/* (va): drops the TLB entry of va in the current address space. 0. */
#define PV_OP_INVLPG 5
/* (deadline, vector): raises the event vector once the guest's time-stamp counter (what
 * RDTSC returns) reaches deadline; one timer, one-shot; deadline 0 cancels it. 0 or -EINVAL. */
#define PV_OP_SET_TIMER 6
/* (buffer, length): writes length bytes to the console (the serial port) as they are. Returns
 * length or -EFAULT. */
#define PV_OP_CONSOLE_WRITE 7
/* (): blocks the vCPU until an event is pending, then returns; with the event mask set the
 * event stays pending (a guest that blocks with events masked and no timer has halted). 0. */
#define PV_OP_SCHED_BLOCK 8
/* (): gives up the host CPU; returns at once when nothing else is runnable. 0. */
#define PV_OP_SCHED_YIELD 9
/* (): the virtual ring (0-3) the guest is in: what a native kernel reads from CS's RPL. */
#define PV_OP_GET_VIRTUAL_RING 10
/* (port, direction | size, value): port I/O on a device the VMM models for the guest.
 * direction PV_IO_IN or PV_IO_OUT, size 1, 2 or 4. IN returns the value read (zero-extended),
 * OUT returns 0; -EINVAL for a bad size, -EPERM for a port the guest may not use. */
#define PV_OP_IO 11
/* (): the return from an event (IRETQ). The guest's RSP points at struct pv_iret_frame; the
 * VMM restores RAX, RIP, RSP and the arithmetic flags, sets the event mask from RFLAGS.IF,
 * the virtual ring from CS's RPL and, going to ring 3, loads the user root. Does not return
 * to the VMCALL. -EINVAL (returned at the VMCALL) for a frame that would raise privilege. */
#define PV_OP_IRET 12
/* (frame): the shared-info page (struct pv_shared_info), a page-aligned frame of guest RAM
 * that the guest owns and maps; the VMM reads and writes it from then on. 0 or -EINVAL. */
#define PV_OP_SET_SHARED_INFO 13
/* (frame, level): validates the table at frame as a page table of level (1-4) and keeps it
 * typed so until unpinned, whether or not anything references it. 0 or -EINVAL, -EPERM. */
#define PV_OP_PIN_TABLE 14
/* (frame): drops the pin; a table nothing else references becomes an ordinary frame (its
 * entries' references dropped), which the guest may map writable again. 0 or -ENOENT, -EBUSY. */
#define PV_OP_UNPIN_TABLE 15
/* (entry): the guest's SYSCALL entry point. 0 or -EINVAL. */
#define PV_OP_SET_SYSCALL_CALLBACK 16
/* (): no effect but the return, at which the VMM delivers the pending events the guest just
 * unmasked (the guest calls it after clearing event_mask with event_pending set). 0. */
#define PV_OP_EVENT_CHECK 17
#define PV_OP_COUNT 18

/* ---- argument structures ---- */
#ifndef __ASSEMBLER__

/* A trap-table entry: vector -> handler, with the privilege that may raise it by INT n. */
struct pv_trap_entry {
    uint8_t vector;
    uint8_t flags;    /* PV_TRAP_DPL(n) | PV_TRAP_MASK_EVENTS */
    uint16_t cs;      /* the guest's kernel code selector, shown in frames from ring 0 */
    uint32_t reserved; /* 0 */
    uint64_t address; /* the handler; 0 ends the table */
};
#define PV_TRAP_DPL(ring) ((uint8_t)((ring) & 3))
#define PV_TRAP_MASK_EVENTS ((uint8_t)(1u << 2)) /* set the event mask on entry (interrupt gate) */

/* One page-table update: the entry at guest-physical address ptr (8-byte aligned, in a frame the
 * guest owns) becomes value. Xen's mmu_update with MMU_NORMAL_PT_UPDATE. */
struct pv_mmu_update {
    uint64_t ptr;
    uint64_t value;
};

/* One call of a multicall: the operation, its arguments in register order, and its result. */
struct pv_multicall {
    uint64_t op;
    uint64_t args[5]; /* RDI, RSI, RDX, R10, R8 */
    int64_t result;
};

/* What PV_OP_IRET finds at the guest's RSP: RAX (the VMCALL needs the register), then the
 * hardware frame IRETQ pops. */
struct pv_iret_frame {
    uint64_t rax, rip, cs, rflags, rsp, ss;
};

#endif /* __ASSEMBLER__ */

#define PV_IO_IN 0x00u
#define PV_IO_OUT 0x80u
#define PV_IO_SIZE_MASK 0x07u

/* The selectors of the flat 64-bit ring-3 code and data segments in the VMM's GDT, which the guest's
 * user processes run with: the layout SYSRET requires (STAR[63:48] = 0x18), as every x86-64 kernel
 * has it. A ring-3 frame carries them; PV_OP_IRET to ring 3 accepts only them. */
#define PV_USER_CS 0x2B
#define PV_USER_DS 0x23

/* PML4 entries the VMM keeps for itself in every root (Xen reserves the same 16). */
#define PV_VMM_PML4_FIRST 256
#define PV_VMM_PML4_LAST 271

/* ---- the shared-info page ---- */
#define PV_MAX_VCPUS 8
#ifndef __ASSEMBLER__

/* One vCPU's part: the guest writes event_mask and task_priority without a hypercall; the VMM
 * writes event_pending, pending_vectors and fault_address. mask_writes and unmask_writes are the
 * guest's own count of its writes to event_mask (what a native kernel does with CLI and STI), which
 * the VMM only reads: it sees the mask itself only when it is entered, and a kernel that masks and
 * unmasks between two entries leaves no other trace. */
struct pv_vcpu_info {
    uint8_t event_mask;    /* 1: events held pending (the virtual IF is clear); Xen's evtchn_upcall_mask */
    uint8_t event_pending; /* 1: some vector is pending; Xen's evtchn_upcall_pending */
    uint8_t task_priority; /* the virtual CR8: events of priority class <= this are held */
    uint8_t reserved[5];
    uint64_t fault_address;      /* the virtual CR2 of the last page fault delivered */
    uint64_t pending_vectors[4]; /* bit v: vector v is pending */
    uint64_t mask_writes;        /* the guest's irq_disable calls (event_mask set to 1) */
    uint64_t unmask_writes;      /* the guest's irq_enable calls (event_mask set to 0) */
};

struct pv_shared_info {
    struct pv_vcpu_info vcpu[PV_MAX_VCPUS];
};

#ifdef __cplusplus
static_assert(sizeof(pv_trap_entry) == 16 && sizeof(pv_mmu_update) == 16 &&
                  sizeof(pv_multicall) == 56 && sizeof(pv_iret_frame) == 48 &&
                  sizeof(pv_vcpu_info) == 64 && sizeof(pv_shared_info) <= 4096,
              "the layout both sides read");
#else
_Static_assert(sizeof(struct pv_trap_entry) == 16 && sizeof(struct pv_mmu_update) == 16 &&
                   sizeof(struct pv_multicall) == 56 && sizeof(struct pv_iret_frame) == 48 &&
                   sizeof(struct pv_vcpu_info) == 64 && sizeof(struct pv_shared_info) <= 4096,
               "the layout both sides read");
#endif
#endif /* __ASSEMBLER__ */

#endif

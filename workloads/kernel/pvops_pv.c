/* The paravirtual implementation of the privileged-operation table (Xen's model, pv_abi.h): the
 * kernel runs at the real CPL 3 and asks the pgsim hypervisor with VMCALL for everything
 * privileged. No function here executes a privileged or sensitive instruction (the image test
 * checks the disassembly): the virtual interrupt flag and the task priority are plain writes to
 * the shared-info page, page-table updates are queued and issued in batches (lazy MMU mode,
 * pvbatch=N), and the kernel's own address space is built here for direct paging. */
#include "kernel.h"
#include "pv_abi.h"

_Static_assert(USER_CS == PV_USER_CS && USER_DS == PV_USER_DS,
               "ring-3 frames carry the selectors of the hypervisor's GDT");

static struct pv_shared_info shared_info __attribute__((aligned(PAGE_SIZE)));
/* The hypervisor writes it between any two instructions: every access is volatile. */
static volatile struct pv_vcpu_info *const vcpu = &shared_info.vcpu[0];

static s64 hypercall(u64 op, u64 a1, u64 a2, u64 a3) {
    s64 ret = (s64)op;
    __asm__ volatile("vmcall" : "+a"(ret) : "D"(a1), "S"(a2), "d"(a3) : "memory");
    return ret;
}

/* An operation the kernel cannot go on without. */
static s64 hypercall_checked(u64 op, u64 a1, u64 a2, u64 a3, const char *what) {
    s64 ret = hypercall(op, a1, a2, a3);
    if (ret < 0) {
        kprintf("hypercall %s refused: error %ld\n", what, -ret);
        machine_exit(false, "a hypercall was refused");
    }
    return ret;
}

void pv_start(void) {
    vcpu->event_mask = 1; /* the boot runs with interrupts off, as after the Multiboot entry */
    hypercall_checked(PV_OP_SET_SHARED_INFO, (u64)&shared_info, 0, 0, "set_shared_info");
}

/* ---- the interrupt flag: the event mask, written without a hypercall ---- */

/* Unmasking with an event pending: the hypervisor delivers it at the return of a hypercall. */
static void deliver_pending_events(void) {
    barrier();
    if (vcpu->event_pending && !vcpu->event_mask)
        hypercall(PV_OP_EVENT_CHECK, 0, 0, 0);
}

static u64 pv_save_fl(void) { return vcpu->event_mask ? 0 : RFLAGS_IF; }
static void pv_irq_disable(void) {
    vcpu->event_mask = 1;
    vcpu->mask_writes++;
    barrier();
}
static void pv_irq_enable(void) {
    vcpu->event_mask = 0;
    vcpu->unmask_writes++;
    deliver_pending_events();
}
static void pv_restore_fl(u64 flags) {
    if (flags & RFLAGS_IF)
        pv_irq_enable();
    else
        pv_irq_disable();
}
static void pv_halt(void) { hypercall(PV_OP_SCHED_BLOCK, 0, 0, 0); }
static u64 pv_read_cr8(void) { return vcpu->task_priority; }
static void pv_write_cr8(u64 priority) {
    vcpu->task_priority = (u8)(priority & 15);
    deliver_pending_events(); /* a lower priority may let a held event through */
}

/* ---- descriptor tables, the kernel stack, the way back ---- */

/* The hypervisor's GDT and TSS are the real ones; the kernel's selectors only appear in frames
 * (checked above at compile time), so nothing of the kernel's GDT is loaded, as Linux's Xen
 * guests leave load_tr_desc empty. */
static void pv_load_segments(const struct dtr *gdtr, u16 tss_selector) {}

/* The IDT the kernel built, handed over as a trap table: each gate's handler, its DPL, and
 * whether it masks events (an interrupt gate clears IF). */
static struct pv_trap_entry trap_table[257];
static s64 trap_table_result = -PV_EINVAL; /* until the hypervisor accepts one */

static void pv_load_idt(const struct dtr *idtr) {
    const struct idt_gate *gate = (const struct idt_gate *)idtr->base;
    usize n = 0;
    for (usize v = 0; v < (idtr->limit + 1UL) / sizeof(*gate) && v < 256; v++) {
        const struct idt_gate *g = &gate[v];
        u64 handler = g->offset_low | ((u64)g->offset_mid << 16) | ((u64)g->offset_high << 32);
        if (!(g->type_attr & GATE_PRESENT) || !handler)
            continue;
        u8 flags = PV_TRAP_DPL((g->type_attr >> 5) & 3);
        if ((g->type_attr & GATE_TYPE_MASK) == GATE_TYPE_INTERRUPT)
            flags |= PV_TRAP_MASK_EVENTS;
        trap_table[n++] = (struct pv_trap_entry){
            .vector = (u8)v, .flags = flags, .cs = g->selector, .reserved = 0, .address = handler};
    }
    trap_table[n] = (struct pv_trap_entry){0, 0, 0, 0, 0};
    trap_table_result = hypercall(PV_OP_SET_TRAP_TABLE, (u64)trap_table, 0, 0);
}

static void pv_set_kernel_stack(u64 top) {
    hypercall_checked(PV_OP_STACK_SWITCH, top, 0, 0, "stack_switch");
}

static void pv_syscall_init(void (*entry)(void)) {
    hypercall_checked(PV_OP_SET_SYSCALL_CALLBACK, (u64)entry, 0, 0, "set_syscall_callback");
}

static NORETURN void pv_trap_return(struct trapframe *tf) { pv_trapret(tf); }

/* What a native kernel reads from CS: the hypervisor says which virtual ring the kernel is in. */
static u16 pv_code_selector(void) {
    return (u16)(KERNEL_CS | (hypercall(PV_OP_GET_VIRTUAL_RING, 0, 0, 0) & 3));
}

/* The descriptor tables are the hypervisor's; what stands for them is the trap table, which the
 * hypervisor must have accepted. */
static const char *pv_check_descriptor_tables(const struct dtr *gdtr, const struct dtr *idtr) {
    return trap_table_result == 0 ? NULL : "trap_table";
}

/* ---- memory: lazy MMU batches ---- */

static u64 batch_size = PVBATCH_DEFAULT; /* pvbatch=N */
/* The batch, in the order the kernel asked: page-table updates (consecutive ones share one
 * mmu_update call), INVLPGs, pins and unpins; issued as one hypercall, or one multicall when it
 * holds more than one call. It is issued when it holds N entries (each update, INVLPG, pin and
 * unpin is one, however the calls group them), so that a lazy-MMU section of k entries between two
 * forced flushes costs exactly ceil(k / N) hypercalls. */
static struct pv_mmu_update queued[PVBATCH_MAX];
static struct pv_multicall calls[PVBATCH_MAX];
static u64 queued_free[PVBATCH_MAX]; /* table frames to free once their remapping is done */
static usize nqueued, ncalls, nfree, nentries;

void pv_set_batch_size(u64 n) { batch_size = n; }

static void pv_mmu_flush(void) {
    if (ncalls == 1) {
        const struct pv_multicall *c = &calls[0];
        hypercall_checked(c->op, c->args[0], c->args[1], c->args[2], "page-table batch");
    } else if (ncalls > 1) {
        hypercall_checked(PV_OP_MULTICALL, (u64)calls, ncalls, 0, "multicall");
    }
    nqueued = ncalls = nentries = 0;
    for (usize i = 0; i < nfree; i++)
        frame_free(queued_free[i]);
    nfree = 0;
}

/* Issues the batch unless lazy MMU mode lets it grow. */
static void batch_added(void) {
    nentries++;
    if (!lazy_mmu_active() || nentries >= batch_size || nfree >= PVBATCH_MAX)
        pv_mmu_flush();
}

static void batch_call(u64 op, u64 a1, u64 a2) {
    calls[ncalls++] = (struct pv_multicall){.op = op, .args = {a1, a2, 0, 0, 0}, .result = 0};
    batch_added();
}

/* Kernel memory is identity-mapped: a page-table entry's address is its guest-physical one. */
static void pv_set_pte(u64 *pte, u64 value) {
    queued[nqueued] = (struct pv_mmu_update){.ptr = (u64)pte, .value = value};
    struct pv_multicall *last = ncalls ? &calls[ncalls - 1] : NULL;
    if (last && last->op == PV_OP_MMU_UPDATE && last->args[0] + last->args[1] * sizeof(queued[0]) ==
                                                    (u64)&queued[nqueued]) {
        last->args[1]++;
        nqueued++;
        batch_added();
    } else {
        nqueued++;
        batch_call(PV_OP_MMU_UPDATE, (u64)&queued[nqueued - 1], 1);
    }
}

static void pv_invlpg(u64 va) { batch_call(PV_OP_INVLPG, va, 0); }

static void pv_load_roots(u64 kernel_root, u64 user_root) {
    pv_mmu_flush();
    hypercall_checked(PV_OP_NEW_BASEPTR, kernel_root, user_root, 0, "new_baseptr");
}

/* ---- memory: the kernel's address space for direct paging ----
 *
 * The boot's page tables map all RAM writable with 2 MiB pages, page tables included, which
 * direct paging refuses. The kernel root built here maps guest RAM with 4 KiB pages (U=1: the
 * kernel runs at CPL 3), every page-table frame read-only, and nothing else: no device memory
 * (the paravirtual kernel has no local APIC) and no user mappings. A process's kernel root shares
 * its PDPT slot 0 and adds the user slot; its user root has the user slot only. */
static u64 identity_pd[512] __attribute__((aligned(PAGE_SIZE)));

static u64 *identity_pte(u64 frame) {
    u64 *pt = (u64 *)(identity_pd[(frame >> 21) & 511] & PTE_ADDR);
    return &pt[(frame >> 12) & 511];
}

#define PV_TABLE_FLAGS (PTE_P | PTE_W | PTE_U)
#define PV_READ_ONLY (PTE_P | PTE_U)

/* A new table is mapped read-only before anything links it (the update is queued first). */
static u64 pv_table_alloc(void) {
    u64 frame = frame_alloc();
    pv_set_pte(identity_pte(frame), frame | PV_READ_ONLY);
    return frame;
}

/* A table nothing references any more (its root was unpinned) becomes writable again; the frame
 * is freed once that update has been made, since freeing writes into it. */
static void pv_table_free(u64 frame) {
    queued_free[nfree++] = frame;
    pv_set_pte(identity_pte(frame), frame | PTE_W | PV_READ_ONLY);
    pv_invlpg(frame);
}

/* Pinned once complete, unpinned before its frames are freed: in the batch, in that order. */
static void pv_aspace_ready(u64 kernel_root, u64 user_root) {
    batch_call(PV_OP_PIN_TABLE, kernel_root, 4);
    batch_call(PV_OP_PIN_TABLE, user_root, 4);
}

static void pv_aspace_release(u64 kernel_root, u64 user_root) {
    batch_call(PV_OP_UNPIN_TABLE, kernel_root, 0);
    batch_call(PV_OP_UNPIN_TABLE, user_root, 0);
}

static u64 pv_fault_address(void) { return vcpu->fault_address; }

/* Written before the hypervisor knows the frames as tables: plain stores, then one pin. */
void pv_mm_init(u64 ram_end) {
    u64 chunks = (ram_end + (1UL << 21) - 1) >> 21; /* 2 MiB each, at most 511 (usable_ram_end) */
    u64 root = frame_alloc(), pdpt = frame_alloc(), *scratch = kernel_scratch_pte();
    u64 scratch_pt = (u64)scratch & ~(PAGE_SIZE - 1);
    for (u64 c = 0; c < chunks; c++)
        identity_pd[c] = frame_alloc() | PV_TABLE_FLAGS;
    identity_pd[511] = scratch_pt | PV_TABLE_FLAGS;
    for (u64 page = 0; page < chunks << 21; page += PAGE_SIZE)
        *identity_pte(page) = page < ram_end ? page | PTE_W | PV_READ_ONLY : 0;
    for (u64 c = 0; c < chunks; c++)
        *identity_pte(identity_pd[c] & PTE_ADDR) = (identity_pd[c] & PTE_ADDR) | PV_READ_ONLY;
    *identity_pte(scratch_pt) = scratch_pt | PV_READ_ONLY;
    *identity_pte((u64)identity_pd) = (u64)identity_pd | PV_READ_ONLY;
    *identity_pte(pdpt) = pdpt | PV_READ_ONLY;
    *identity_pte(root) = root | PV_READ_ONLY;
    ((u64 *)pdpt)[0] = (u64)identity_pd | PV_TABLE_FLAGS;
    ((u64 *)root)[0] = pdpt | PV_TABLE_FLAGS;
    hypercall_checked(PV_OP_PIN_TABLE, root, 4, 0, "pin_table");
    hypercall_checked(PV_OP_NEW_BASEPTR, root, 0, 0, "new_baseptr");
    kernel_pml4 = root;
}

/* ---- devices ---- */

static u8 pv_inb(u16 port) { return (u8)hypercall(PV_OP_IO, port, PV_IO_IN | 1, 0); }
static void pv_outb(u16 port, u8 v) { hypercall(PV_OP_IO, port, PV_IO_OUT | 1, v); }
static void pv_outw(u16 port, u16 v) { hypercall(PV_OP_IO, port, PV_IO_OUT | 2, v); }

/* The hypervisor writes the bytes as they are: the "\r\n" the UART path sends is made here, and a
 * buffer goes out in one crossing per chunk. */
static void pv_console_write(const char *s, usize n) {
    char chunk[128];
    usize len = 0;
    for (usize i = 0; i < n; i++) {
        if (len + 2 > sizeof(chunk)) {
            hypercall(PV_OP_CONSOLE_WRITE, (u64)chunk, len, 0);
            len = 0;
        }
        if (s[i] == '\n')
            chunk[len++] = '\r';
        chunk[len++] = s[i];
    }
    if (len)
        hypercall(PV_OP_CONSOLE_WRITE, (u64)chunk, len, 0);
}

/* The tick: a one-shot timer re-armed at each tick, one period after the previous deadline. The
 * period in time-stamp-counter cycles is the native APIC timer's on QEMU (1.6 ms) at 1 GHz. */
#define PV_TIMER_PERIOD_TSC 1600000UL
static u64 timer_deadline;

static void arm_timer(void) {
    u64 now = rdtsc();
    if (timer_deadline <= now)
        timer_deadline = now + PV_TIMER_PERIOD_TSC;
    hypercall_checked(PV_OP_SET_TIMER, timer_deadline, VEC_TIMER, 0, "set_timer");
}
static void pv_timer_start(void) {
    timer_deadline = 0;
    arm_timer();
}
static void pv_timer_ack(void) {
    timer_deadline += PV_TIMER_PERIOD_TSC;
    arm_timer();
}

const struct pvops pv_pvops = {
    .name = "paravirtual",
    .save_fl = pv_save_fl,
    .restore_fl = pv_restore_fl,
    .irq_disable = pv_irq_disable,
    .irq_enable = pv_irq_enable,
    .halt = pv_halt,
    .read_cr8 = pv_read_cr8,
    .write_cr8 = pv_write_cr8,
    .load_segments = pv_load_segments,
    .load_idt = pv_load_idt,
    .set_kernel_stack = pv_set_kernel_stack,
    .syscall_init = pv_syscall_init,
    .trap_return = pv_trap_return,
    .code_selector = pv_code_selector,
    .check_descriptor_tables = pv_check_descriptor_tables,
    .load_roots = pv_load_roots,
    .invlpg = pv_invlpg,
    .set_pte = pv_set_pte,
    .mmu_flush = pv_mmu_flush,
    .table_alloc = pv_table_alloc,
    .table_free = pv_table_free,
    .aspace_ready = pv_aspace_ready,
    .aspace_release = pv_aspace_release,
    .pte_clear_full = NULL, /* the unpinned tables are freed as they are */
    .fault_address = pv_fault_address,
    .separate_user_root = true,
    .sensitive_instructions = false,
    .inb = pv_inb,
    .outb = pv_outb,
    .outw = pv_outw,
    .console_write = pv_console_write,
    .timer_start = pv_timer_start,
    .timer_ack = pv_timer_ack,
};

/* Processes: creation, fork, exit, wait, blocking channels and a round-robin scheduler.
 * The kernel itself is not preemptible: it runs with interrupts off, and the timer preempts only
 * ring 3. The scheduler runs on the boot stack; processes switch to it and back with swtch. */
#include "kernel.h"

#define NPROC 64
#define NCHANNEL 4

static struct proc procs[NPROC];
struct proc *current;
static u64 scheduler_context;
static int next_pid = 1;
static u64 active_pml4; /* what CR3 holds: the last process run keeps it until the next switch */

/* A channel holds at most one value (the ctxswitch benchmark's token). */
static struct channel {
    bool full;
    u64 value;
} channels[NCHANNEL];

void proc_init(void) {
    memset(procs, 0, sizeof(procs));
    active_pml4 = kernel_pml4;
}

static struct proc *proc_alloc(void) {
    for (int i = 0; i < NPROC; i++) {
        struct proc *p = &procs[i];
        if (p->state != PROC_FREE)
            continue;
        memset(p, 0, sizeof(*p));
        p->pid = next_pid++;
        p->kstack = frame_alloc(); /* one page: no kernel path nests deeper than a fault in a call */
        u64 top = p->kstack + PAGE_SIZE;
        p->tf = (struct trapframe *)(top - sizeof(struct trapframe));
        /* The first switch to the process pops swtch's six registers and returns to
         * proc_first_return with R12 = the trapframe. */
        u64 *sp = (u64 *)p->tf;
        *--sp = (u64)proc_first_return;
        *--sp = 0;          /* rbp */
        *--sp = 0;          /* rbx */
        *--sp = (u64)p->tf; /* r12 */
        *--sp = 0;          /* r13 */
        *--sp = 0;          /* r14 */
        *--sp = 0;          /* r15 */
        p->context = (u64)sp;
        return p;
    }
    return NULL;
}

static void proc_release(struct proc *p) {
    if (p->pml4 == active_pml4) {
        pvops.load_roots(kernel_pml4, 0);
        active_pml4 = kernel_pml4;
    }
    aspace_destroy(p->pml4, p->user_pml4);
    frame_free(p->kstack);
    p->state = PROC_FREE;
}

struct proc *proc_spawn(u64 entry, u64 arg0, u64 arg1, u64 arg2) {
    struct proc *p = proc_alloc();
    if (!p)
        machine_exit(false, "process table full");
    p->pml4 = aspace_create(&p->user_pml4);
    memset(p->tf, 0, sizeof(*p->tf));
    p->tf->rip = entry;
    p->tf->cs = USER_CS;
    p->tf->ss = USER_DS;
    p->tf->rflags = RFLAGS_IF | 0x2;
    p->tf->rsp = USER_STACK_TOP - 8; /* as if called: RSP + 8 is 16-byte aligned */
    p->tf->rdi = arg0;
    p->tf->rsi = arg1;
    p->tf->rdx = arg2;
    p->state = PROC_RUNNABLE;
    return p;
}

int proc_fork(struct trapframe *tf) {
    struct proc *child = proc_alloc();
    if (!child)
        return -1;
    child->pml4 = aspace_clone(current->pml4, &child->user_pml4);
    *child->tf = *tf;
    child->tf->rax = 0;
    child->parent = current;
    child->probe = current->probe;
    child->state = PROC_RUNNABLE;
    return child->pid;
}

/* Called on the new process's kernel stack by proc_first_return. */
NORETURN void proc_enter_user(struct trapframe *tf) { pvops.trap_return(tf); }

static void switch_to_scheduler(void) { swtch(&current->context, scheduler_context); }

void yield(void) {
    current->state = PROC_RUNNABLE;
    switch_to_scheduler();
}

static void block_on(const void *what) {
    current->state = PROC_BLOCKED;
    current->wait_on = what;
    switch_to_scheduler();
}

static void wake_all(const void *what) {
    for (int i = 0; i < NPROC; i++)
        if (procs[i].state == PROC_BLOCKED && procs[i].wait_on == what) {
            procs[i].state = PROC_RUNNABLE;
            procs[i].wait_on = NULL;
        }
}

void proc_exit(int code) {
    current->exit_code = code;
    current->state = PROC_ZOMBIE;
    for (int i = 0; i < NPROC; i++) /* orphans are reaped by the scheduler */
        if (procs[i].parent == current)
            procs[i].parent = NULL;
    if (current->parent)
        wake_all(current->parent);
    switch_to_scheduler();
    machine_exit(false, "a zombie process was scheduled");
}

s64 proc_wait(void) {
    for (;;) {
        bool have_children = false;
        for (int i = 0; i < NPROC; i++) {
            struct proc *p = &procs[i];
            if (p->state == PROC_FREE || p->parent != current)
                continue;
            have_children = true;
            if (p->state == PROC_ZOMBIE) {
                int code = p->exit_code;
                proc_release(p);
                return code;
            }
        }
        if (!have_children)
            return -1;
        block_on(current);
    }
}

void proc_kill(const char *why, u64 addr) {
    kprintf("process %d killed: %s at 0x%lx\n", current->pid, why, addr);
    machine_exit(false, "a process was killed");
}

void channel_send(u64 ch, u64 value) {
    struct channel *c = &channels[ch % NCHANNEL];
    while (c->full)
        block_on(c);
    c->full = true;
    c->value = value;
    wake_all(c);
}

u64 channel_recv(u64 ch) {
    struct channel *c = &channels[ch % NCHANNEL];
    while (!c->full)
        block_on(c);
    c->full = false;
    wake_all(c);
    return c->value;
}

/* Runs processes round-robin until none is left. */
void scheduler(void) {
    int last = 0;
    for (;;) {
        struct proc *next = NULL;
        bool any = false;
        for (int k = 1; k <= NPROC; k++) {
            struct proc *p = &procs[(last + k) % NPROC];
            if (p->state == PROC_ZOMBIE && !p->parent) {
                proc_release(p);
                continue;
            }
            if (p->state != PROC_FREE)
                any = true;
            if (!next && p->state == PROC_RUNNABLE) {
                next = p;
                last = (int)(p - procs);
            }
        }
        if (!any)
            break;
        if (!next)
            machine_exit(false, "deadlock: every process is blocked");
        current = next;
        next->state = PROC_RUNNING;
        cpu_set_kernel_stack(next->kstack + PAGE_SIZE);
        if (active_pml4 != next->pml4) {
            pvops.load_roots(next->pml4, next->user_pml4);
            active_pml4 = next->pml4;
        }
        swtch(&scheduler_context, next->context);
        current = NULL;
    }
    if (active_pml4 != kernel_pml4)
        pvops.load_roots(kernel_pml4, 0);
    active_pml4 = kernel_pml4;
}

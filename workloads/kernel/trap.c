/* Interrupts, exceptions and system calls: everything entry.S hands over. */
#include "kernel.h"

volatile bool kprobe_armed;
u64 preemptions;
static u64 kprobe_faults;

static const char *const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound",
    "#UD invalid opcode", "#NM no FPU", "#DF double fault", "coprocessor overrun", "#TS bad TSS",
    "#NP segment not present", "#SS stack fault", "#GP general protection", "#PF page fault",
    "reserved 15", "#MF x87 error", "#AC alignment check", "#MC machine check", "#XM SIMD error",
    "#VE virtualization", "#CP control protection"};

static const char *exception_name(u64 v) {
    return v < 32 && exception_names[v] ? exception_names[v] : "exception";
}

static bool from_user(const struct trapframe *tf) { return (tf->cs & 3) == 3; }

static NORETURN void kernel_fault(struct trapframe *tf) {
    kprintf("kernel fault: vector %lu (%s) error 0x%lx at rip 0x%lx cr2 0x%lx\n", tf->vector,
            exception_name(tf->vector), tf->error, tf->rip, pvops.fault_address());
    machine_exit(false, "fault in the kernel");
}

static NORETURN void leave(struct trapframe *tf) { pvops.trap_return(tf); }

/* A probe gets its fault back (probes.h): execution resumes at the address it left in R15, with
 * R14 = vector | (number of faults delivered so far << 8). */
static NORETURN void resume_probe(struct trapframe *tf, u64 *delivered) {
    tf->r14 = tf->vector | (++*delivered << 8);
    tf->rip = tf->r15;
    tf->r15 = 0;
    leave(tf);
}

/* Processes in probe mode: selftest and divzero. */
static void deliver_to_user_probe(struct trapframe *tf) {
    if (current && current->probe && tf->r15)
        resume_probe(tf, &current->faults_delivered);
}

static u64 do_syscall(struct trapframe *tf) {
    switch (tf->rax) {
    case SYS_EXIT:
        proc_exit((int)tf->rdi);
    case SYS_FORK:
        return (u64)(s64)proc_fork(tf);
    case SYS_WAIT:
        return (u64)proc_wait();
    case SYS_GETPID:
        return (u64)current->pid;
    case SYS_WRITE:
        if (tf->rsi > 4096 || !user_readable(tf->rdi, tf->rsi))
            return (u64)-1;
        console_write((const char *)tf->rdi, tf->rsi);
        return tf->rsi;
    case SYS_NULL:
        return tf->rdi + 1;
    case SYS_SEND:
        channel_send(tf->rdi, tf->rsi);
        return 0;
    case SYS_RECV:
        return channel_recv(tf->rdi);
    case SYS_RESULT:
        bench_report(tf->rdi, tf->rsi);
        return 0;
    case SYS_PROBE:
        current->probe = tf->rdi != 0;
        return 0;
    case SYS_REPORT:
        selftest_report("user", tf->rdi, tf->rsi, tf->rdx);
        return 0;
    default:
        return (u64)-1;
    }
}

NORETURN void syscall_dispatch(struct trapframe *tf) {
    tf->rax = do_syscall(tf);
    pvops.trap_return(tf);
}

NORETURN void trap_dispatch(struct trapframe *tf) {
    u64 v = tf->vector;
    if (v == VEC_TIMER) {
        ++*(volatile u64 *)clock_frame;
        pvops.timer_ack();
        if (from_user(tf) && current) {
            preemptions++;
            yield(); /* preempt ring 3; the kernel itself is never preempted */
        }
        leave(tf);
    }
    if (v == VEC_APIC_SPURIOUS || (v >= VEC_PIC_BASE && v < VEC_PIC_BASE + 16))
        leave(tf); /* spurious APIC or (masked) PIC interrupt: nothing to acknowledge */
    if (v == VEC_SYSCALL_INT && from_user(tf))
        syscall_dispatch(tf);
    if (v == VEC_PROBE_USER || v == VEC_PROBE_KERNEL) {
        /* selftest's INT n target: report the privilege level the frame says we came from */
        tf->rax = tf->cs;
        leave(tf);
    }
    if (!from_user(tf)) {
        if (v == VEC_PF && handle_page_fault(tf, pvops.fault_address()))
            leave(tf); /* the kernel touched a not-yet-present user page (SYS_WRITE) */
        if (kprobe_armed && tf->r15)
            resume_probe(tf, &kprobe_faults);
        kernel_fault(tf);
    }
    if (v == VEC_PF) {
        u64 addr = pvops.fault_address();
        if (handle_page_fault(tf, addr))
            leave(tf);
        deliver_to_user_probe(tf);
        proc_kill("page fault", addr);
    }
    deliver_to_user_probe(tf);
    proc_kill(exception_name(v), tf->rip);
}

/* The benchmarks that run in ring 0 (in, cr8wr, callret, ptemod: Adams & Agesen measured them in
 * the guest kernel; clisti, ksmc) and the report every benchmark ends with. Each checksum is a fold of what the
 * loop observed, so a machine that computes or delivers something wrong prints another value. */
#include "kernel.h"
#include "jit.h"

static bool reported;

void bench_report(u64 checksum, u64 cycles) {
    if (reported)
        machine_exit(false, "a workload reported twice");
    reported = true;
    extern const char *const workload_names[];
    if (run_workload == WORKLOAD_memwalk)
        kprintf("bench=%s iters=%lu ws=%lu checksum=0x%016lx\n", workload_names[run_workload],
                run_iters, run_ws, checksum);
    else
        kprintf("bench=%s iters=%lu checksum=0x%016lx\n", workload_names[run_workload], run_iters,
                checksum);
    kprintf("timing: cycles=%lu per_iter=%lu\n", cycles, run_iters ? cycles / run_iters : 0);
}

bool bench_reported(void) { return reported; }

/* An I/O port read: the master PIC's mask register, which holds 0xFF. */
static u64 bench_in(u64 iters) {
    u64 sum = 0;
    for (u64 i = 0; i < iters; i++)
        sum = sum * 3 + (inb(0x21) ^ i);
    return sum;
}

/* Writes of the task-priority register (CR8): natively the raw instruction, as in the paper. */
static u64 bench_cr8wr(u64 iters) {
    u64 sum = 0;
    for (u64 i = 0; i < iters; i++) {
        pvops.write_cr8(i & 15);
        sum = sum * 3 + (i & 15);
    }
    sum = sum * 3 + pvops.read_cr8();
    pvops.write_cr8(0);
    return sum;
}

/* Interrupts on and off, as a kernel's short critical sections do: natively STI and CLI,
 * paravirtually two writes to the event mask. The kernel otherwise runs with interrupts off, so a
 * tick that arrives while they are on is taken here in ring 0 and changes nothing the loop sees. */
static u64 bench_clisti(u64 iters) {
    u64 sum = 0;
    for (u64 i = 0; i < iters; i++) {
        pvops.irq_enable();
        pvops.irq_disable();
        sum = sum * 3 + i;
    }
    return sum;
}

static __attribute__((noipa)) u64 callee(u64 x) { return x * 3 + 1; }

static u64 bench_callret(u64 iters) {
    u64 sum = 0;
    for (u64 i = 0; i < iters; i++)
        sum = callee(sum ^ i);
    return sum;
}

/* Page-table updates: the kernel's scratch page is pointed alternately at two frames holding
 * different values, with an INVLPG after each update, and read through. */
#define PTEMOD_A 0x0123456789ABCDEFUL
#define PTEMOD_B 0xFEDCBA9876543210UL
static u64 bench_ptemod(u64 iters) {
    u64 frames[2] = {frame_alloc(), frame_alloc()};
    *(u64 *)frames[0] = PTEMOD_A;
    *(u64 *)frames[1] = PTEMOD_B;
    u64 *pte = kernel_scratch_pte(), sum = 0;
    for (u64 i = 0; i < iters; i++) {
        pvops.set_pte(pte, frames[i & 1] | PTE_P | PTE_W);
        pvops.invlpg(KERNEL_SCRATCH_VA);
        sum = sum * 3 + (*(volatile u64 *)KERNEL_SCRATCH_VA ^ i);
    }
    pvops.set_pte(pte, 0);
    pvops.invlpg(KERNEL_SCRATCH_VA);
    frame_free(frames[0]);
    frame_free(frames[1]);
    return sum;
}

/* The JIT in miniature of jit.h (bench=smc's), in ring 0, in a page that holds nothing else: a
 * binary translator sees that page's code rewritten once per iteration. */
static u8 ksmc_page[4096] __attribute__((aligned(4096)));

static u64 bench_ksmc(u64 iters) { return jit_rewrite_and_call(ksmc_page, iters); }

void bench_kernel(enum workload w, u64 iters) {
    u64 start = rdtsc(), sum;
    switch (w) {
    case WORKLOAD_in: sum = bench_in(iters); break;
    case WORKLOAD_cr8wr: sum = bench_cr8wr(iters); break;
    case WORKLOAD_callret: sum = bench_callret(iters); break;
    case WORKLOAD_ptemod: sum = bench_ptemod(iters); break;
    case WORKLOAD_clisti: sum = bench_clisti(iters); break;
    case WORKLOAD_ksmc: sum = bench_ksmc(iters); break;
    default: machine_exit(false, "not a ring-0 benchmark");
    }
    bench_report(sum, rdtsc() - start);
}

/* The first ring-3 process: runs the workload the kernel passes in RDI. */
#include "user.h"

/* size: memwalk's working set in bytes, forkwait's private data in pages. */
NORETURN void user_main(u64 workload, u64 iters, u64 size) {
    if (workload == WORKLOAD_selftest) {
        user_selftest();
        sys_exit(0);
    }
    u64 start = user_rdtsc(), sum;
    switch (workload) {
    case WORKLOAD_syscall: sum = bench_syscall(iters); break;
    case WORKLOAD_pgfault: sum = bench_pgfault(iters); break;
    case WORKLOAD_divzero: sum = bench_divzero(iters); break;
    case WORKLOAD_forkwait: sum = bench_forkwait(iters, size); break;
    case WORKLOAD_compute: sum = bench_compute(iters); break;
    case WORKLOAD_memwalk: sum = bench_memwalk(iters, size, &start); break;
    case WORKLOAD_ctxswitch: sum = bench_ctxswitch(iters); break;
    case WORKLOAD_smc: sum = bench_smc(iters); break;
    default: {
        static const char msg[] = "user_main: not a ring-3 workload\n";
        sys_write(msg, sizeof(msg) - 1);
        sys_exit(1);
    }
    }
    sys_result(sum, user_rdtsc() - start);
    sys_exit(0);
}

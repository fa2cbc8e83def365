/* The benchmarks that run in ring 3. Each returns a checksum folded from what it observed;
 * tests/workloads recomputes every one of them independently. */
#include "user.h"
#include "jit.h"

/* The null system call (SYSCALL/SYSRET). */
u64 bench_syscall(u64 iters) {
    u64 sum = 0;
    for (u64 i = 0; i < iters; i++)
        sum = sum * 3 + sys_null(i);
    return sum;
}

/* Every access faults: the kernel maps the touched page of a two-page region, unmaps the other,
 * and writes its running fault count into the fresh page. */
u64 bench_pgfault(u64 iters) {
    u64 sum = 0;
    for (u64 i = 0; i < iters; i++)
        sum = sum * 5 + *(volatile u64 *)(USER_FAULT_BASE + (i & 1) * 4096);
    return sum;
}

/* Division by zero; the kernel resumes after it with R14 = vector | (faults so far << 8). */
u64 bench_divzero(u64 iters) {
    u64 sum = 0;
    sys_probe(true);
    for (u64 i = 0; i < iters; i++) {
        u64 delivered;
        __asm__ volatile("leaq 1f(%%rip), %%r15\n\t"
                         "movq $-1, %%r14\n\t"
                         "xorl %%edx, %%edx\n\t"
                         "divl %%ecx\n"
                         "1:\n\t"
                         "movq %%r14, %0\n\t"
                         "xorl %%r15d, %%r15d"
                         : "=r"(delivered)
                         : "a"((u32)i), "c"(0)
                         : "rdx", "r14", "r15", "cc");
        sum = sum * 7 + delivered;
    }
    sys_probe(false);
    return sum;
}

/* Fork and wait, N times, as a process with `pages` pages of private data does it (the heap,
 * stack and library data a running program has dirtied): the parent writes every page before
 * each fork, so that the fork write-protects each one again for copy on write and the exit unmaps
 * each from the child; the child reads them all and exits with a code folded from what it read,
 * so that a wrong copy shows in the checksum. */
u64 bench_forkwait(u64 iters, u64 pages) {
    volatile u64 *data = (volatile u64 *)USER_HEAP_BASE;
    u64 sum = 0;
    for (u64 i = 0; i < iters; i++) {
        for (u64 p = 0; p < pages; p++)
            data[p * (4096 / 8)] = i + p;
        s64 pid = sys_fork();
        if (pid == 0) {
            u64 seen = 0;
            for (u64 p = 0; p < pages; p++)
                seen += data[p * (4096 / 8)];
            sys_exit((int)((i * 7 + 3 + seen) & 0x7F));
        }
        if (pid < 0)
            return 0;
        s64 code = sys_wait();
        sum = sum * 31 + (u64)code + (u64)pid;
    }
    return sum;
}

/* An integer kernel: xorshift64, a table lookup and update, a multiply and a division. */
u64 bench_compute(u64 iters) {
    u32 table[256];
    for (u32 i = 0; i < 256; i++)
        table[i] = i * 2654435761u;
    u64 x = 0x9E3779B97F4A7C15UL, h = 0xCBF29CE484222325UL;
    for (u64 i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        h = (h ^ table[x & 255]) * 0x100000001B3UL;
        table[(x >> 8) & 255] += (u32)h;
        h += (x >> 3) % (i + 1);
    }
    return h ^ x;
}

/* A random cyclic permutation (Sattolo) over the working set, then a pointer chase through it:
 * every step is a dependent load from a random place (TLB and page-walk stress). */
u64 bench_memwalk(u64 iters, u64 ws, u64 *start) {
    u64 *next = (u64 *)USER_HEAP_BASE, n = ws / 8, rng = 0x2545F4914F6CDD1DUL;
    for (u64 i = 0; i < n; i++)
        next[i] = i;
    for (u64 i = n - 1; i > 0; i--) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        u64 j = rng % i, t = next[i];
        next[i] = next[j];
        next[j] = t;
    }
    u64 at = 0, sum = 0;
    *start = user_rdtsc();
    for (u64 k = 0; k < iters; k++) {
        at = next[at];
        sum += at;
    }
    return sum;
}

/* Two processes pass a token back and forth through two one-slot channels. */
u64 bench_ctxswitch(u64 iters) {
    s64 pid = sys_fork();
    if (pid == 0) {
        for (u64 i = 0; i < iters; i++)
            sys_send(1, sys_recv(0) * 3 + 1);
        sys_exit(0);
    }
    u64 token = 1;
    for (u64 i = 0; i < iters; i++) {
        sys_send(0, token);
        token = sys_recv(1) ^ i;
    }
    sys_wait();
    return token;
}

/* A JIT in miniature (jit.h), in the user heap. */
u64 bench_smc(u64 iters) { return jit_rewrite_and_call((volatile u8 *)USER_HEAP_BASE, iters); }

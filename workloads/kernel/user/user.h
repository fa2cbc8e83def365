/* The ring-3 side of the system-call interface. */
#ifndef PGSIM_USER_H
#define PGSIM_USER_H
#include "types.h"
#include "syscall_abi.h"

static inline u64 syscall3(u64 n, u64 a, u64 b, u64 c) {
    u64 ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

/* The same call through INT 0x80. */
static inline u64 int80_3(u64 n, u64 a, u64 b, u64 c) {
    u64 ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "memory");
    return ret;
}

static inline NORETURN void sys_exit(int code) {
    syscall3(SYS_EXIT, (u64)code, 0, 0);
    __builtin_unreachable();
}
static inline s64 sys_fork(void) { return (s64)syscall3(SYS_FORK, 0, 0, 0); }
static inline s64 sys_wait(void) { return (s64)syscall3(SYS_WAIT, 0, 0, 0); }
static inline u64 sys_getpid(void) { return syscall3(SYS_GETPID, 0, 0, 0); }
static inline u64 sys_null(u64 x) { return syscall3(SYS_NULL, x, 0, 0); }
static inline void sys_send(u64 ch, u64 v) { syscall3(SYS_SEND, ch, v, 0); }
static inline u64 sys_recv(u64 ch) { return syscall3(SYS_RECV, ch, 0, 0); }
static inline void sys_result(u64 checksum, u64 cycles) { syscall3(SYS_RESULT, checksum, cycles, 0); }
static inline void sys_probe(bool on) { syscall3(SYS_PROBE, on, 0, 0); }
static inline void sys_write(const char *s, u64 n) { syscall3(SYS_WRITE, (u64)s, n, 0); }

static inline u64 user_rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

void user_selftest(void);
u64 bench_syscall(u64 iters);
u64 bench_pgfault(u64 iters);
u64 bench_divzero(u64 iters);
u64 bench_forkwait(u64 iters, u64 pages);
u64 bench_compute(u64 iters);
/* Builds its working set, then sets *start to the time stamp after it, so that the reported
 * cycles are the chase's alone. */
u64 bench_memwalk(u64 iters, u64 ws, u64 *start);
u64 bench_ctxswitch(u64 iters);
u64 bench_smc(u64 iters);

#endif

/* The selftest workload, ring-3 half: the same probes as the kernel's, reported through
 * SYS_REPORT; faults come back through probe mode (SYS_PROBE). */
#include "user.h"
#include "probes.h"

static void say(const char *line) {
    u64 n = 0;
    while (line[n])
        n++;
    sys_write(line, n);
}

/* After a fork, parent and child each see their own writes only (copy on write), and the
 * child's exit code reaches the parent through wait. */
static void fork_isolation(void) {
    volatile u64 *shared_before = (volatile u64 *)USER_HEAP_BASE;
    *shared_before = 1111;
    s64 pid = sys_fork();
    if (pid == 0) {
        bool saw_parent_value = *shared_before == 1111;
        *shared_before = 2222;
        sys_send(0, *shared_before);
        sys_exit(saw_parent_value ? 42 : 1);
    }
    u64 child_value = sys_recv(0);
    s64 code = sys_wait();
    bool ok = pid > 1 && child_value == 2222 && *shared_before == 1111 && code == 42;
    *shared_before = 3333; /* the parent's copy is writable again */
    ok = ok && *shared_before == 3333;
    say(ok ? "selftest user fork_copy_on_write: ok\n" : "selftest user fork_copy_on_write: broken\n");
}

void user_selftest(void) {
    sys_probe(true);
    for (u64 i = 0; i < PROBE_COUNT; i++) {
        struct probe_result r = {0, PROBE_NO_FAULT, 0};
        probes[i].run(&r);
        syscall3(SYS_REPORT, i, r.value, r.fault | (r.zf << 8));
    }
    sys_probe(false);
    /* Both system-call paths reach the same kernel. */
    u64 pid = sys_getpid(), pid80 = int80_3(SYS_GETPID, 0, 0, 0);
    static const char same[] = "selftest user syscall_vs_int80: same\n";
    static const char differ[] = "selftest user syscall_vs_int80: differ\n";
    if (pid == pid80)
        sys_write(same, sizeof(same) - 1);
    else
        sys_write(differ, sizeof(differ) - 1);
    /* Spin without entering the kernel until the tick count moves: only a timer interrupt taken
     * in ring 3 (and a scheduler that comes back here) ends this loop. */
    volatile const u64 *ticks = (volatile const u64 *)USER_CLOCK_PAGE;
    u64 start = *ticks;
    while (*ticks == start)
        ;
    static const char seen[] = "selftest user timer_interrupt_in_ring3: seen\n";
    sys_write(seen, sizeof(seen) - 1);
    fork_isolation();
}

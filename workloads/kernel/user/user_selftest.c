/* The selftest workload, ring-3 half: the same probes as the kernel's, reported through
 * SYS_REPORT; faults come back through probe mode (SYS_PROBE). */
#include "user.h"
#include "probes.h"

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
}

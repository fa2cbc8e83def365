/* The selftest workload, ring-0 half: run every probe and print what it observed. The ring-3
 * half (user/user_selftest.c) runs the same probes and reports them through SYS_REPORT. */
#include "kernel.h"
#include "probes.h"

static const char *const fault_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#CSO", "#TS",
    "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP"};

void selftest_report(const char *who, u64 id, u64 value, u64 fault_and_zf) {
    if (id >= PROBE_COUNT) {
        kprintf("selftest %s: unknown probe %lu\n", who, id);
        machine_exit(false, "selftest reported an unknown probe");
    }
    const struct probe_def *p = &probes[id];
    u64 fault = fault_and_zf & 0xFF, zf = (fault_and_zf >> 8) & 1;
    if (fault != PROBE_NO_FAULT) {
        const char *name = fault < 32 && fault_names[fault] ? fault_names[fault] : "fault";
        kprintf("selftest %s %s: %s\n", who, p->name, name);
    } else if (p->kind == PROBE_NONE) {
        kprintf("selftest %s %s: ok\n", who, p->name);
    } else if (p->kind == PROBE_ZF) {
        kprintf("selftest %s %s: zf=%lu\n", who, p->name, zf);
    } else if (p->kind == PROBE_VALUE_ZF) {
        kprintf("selftest %s %s: value=0x%lx zf=%lu\n", who, p->name, value, zf);
    } else {
        kprintf("selftest %s %s: value=0x%lx\n", who, p->name, value);
    }
}

void selftest_kernel(void) {
    if (!pvops.sensitive_instructions) {
        /* Run at the real CPL 3, the probes would observe the hypervisor's descriptor tables and
         * the kernel's real ring, not the machine the kernel describes to itself: a paravirtual
         * kernel asks by hypercall instead (the boot checks do), and runs none of them. */
        kprintf("pvops: %s: selftest kernel probes not run (%lu sensitive instructions)\n",
                pvops.name, (u64)PROBE_COUNT);
        return;
    }
    kprobe_armed = true;
    for (u64 i = 0; i < PROBE_COUNT; i++) {
        struct probe_result r = {0, PROBE_NO_FAULT, 0};
        probes[i].run(&r);
        selftest_report("kernel", i, r.value, r.fault | (r.zf << 8));
    }
    kprobe_armed = false;
}

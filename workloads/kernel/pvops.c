/* The privileged-operation table the kernel runs with, its choice at boot, the interrupt-state
 * wrappers with their check, and lazy MMU mode. */
#include "kernel.h"
#include "pv_abi.h"

struct pvops pvops;
static bool lazy_mmu;
static bool hypervisor_found;

/* CPUID leaf 0x40000000 carries a hypervisor's signature in EBX, ECX, EDX and its highest leaf in
 * EAX; CPUID.1:ECX[31] says a hypervisor is there at all. */
bool pv_hypervisor_present(void) {
    if (!(cpuid(1, 0).ecx & PV_CPUID_HYPERVISOR_BIT))
        return false;
    static const char signature[12] = PV_CPUID_SIGNATURE;
    struct cpuid_regs r = cpuid(PV_CPUID_LEAF, 0);
    if (r.eax < PV_CPUID_MAX_LEAF)
        return false;
    u32 words[3] = {r.ebx, r.ecx, r.edx};
    const char *got = (const char *)words;
    for (int i = 0; i < 12; i++)
        if (got[i] != signature[i])
            return false;
    return true;
}

void pvops_select(void) {
    if (pv_hypervisor_present()) {
        hypervisor_found = true;
        pvops = pv_pvops;
        pv_start();
    } else {
        pvops = native_pvops;
    }
}

void pvops_report(void) {
    if (hypervisor_found)
        kprintf("hypervisor pgsim detected\n");
    else
        kprintf("hypervisor: none detected\n");
    kprintf("pvops: %s\n", pvops.name);
}

void lazy_mmu_begin(void) { lazy_mmu = true; }

void lazy_mmu_end(void) {
    lazy_mmu = false;
    pvops.mmu_flush();
}

bool lazy_mmu_active(void) { return lazy_mmu; }

u64 irq_save(void) {
    u64 flags = pvops.save_fl();
    pvops.irq_disable();
    return flags;
}

/* Interrupts that were on before a critical section must be on after it: a restore that loses
 * IF would leave the machine deaf to its timer. */
void irq_restore(u64 flags) {
    pvops.restore_fl(flags);
    if ((flags & RFLAGS_IF) && !(pvops.save_fl() & RFLAGS_IF))
        check_failed("irq_restore");
}

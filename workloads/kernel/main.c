/* kmain: boot, the checks, and the workload named on the Multiboot command line
 * (bench=NAME iters=N ws=BYTES pages=N pvbatch=N). */
#include "kernel.h"

#define MULTIBOOT_LOADER_MAGIC 0x2BADB002
#define MB_INFO_CMDLINE (1U << 2)
#define MB_INFO_MMAP (1U << 6)

struct __attribute__((packed)) multiboot_info {
    u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    u32 syms[4];
    u32 mmap_length, mmap_addr;
};
struct __attribute__((packed)) multiboot_mmap_entry {
    u32 size; /* of the rest of the entry */
    u64 addr, len;
    u32 type; /* 1 = available RAM */
};

#define WORKLOAD_NAME(name) #name,
const char *const workload_names[] = {WORKLOAD_LIST(WORKLOAD_NAME)};

enum workload run_workload = WORKLOAD_COUNT; /* none */
u64 run_iters = 1000, run_ws = 1UL << 20, run_pages = FORKWAIT_PAGES_DEFAULT;
static char cmdline[256];

extern void user_main(u64 workload, u64 iters, u64 size);

static bool parse_u64(const char *s, usize n, u64 *out) {
    u64 v = 0;
    if (n == 0 || n > 18)
        return false;
    for (usize i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (u64)(s[i] - '0');
    }
    *out = v;
    return true;
}

static NORETURN void bad_cmdline(const char *what, const char *token, usize n) {
    kprintf("command line: %s: '", what);
    console_write(token, n);
    kprintf("'\n");
    machine_exit(false, "bad command line");
}

/* Loaders (QEMU, GRUB) pass the image's path first: words that start with '/' or have no '='
 * are not options. */
static void parse_cmdline(const char *s) {
    while (*s) {
        while (*s == ' ')
            s++;
        const char *tok = s;
        while (*s && *s != ' ')
            s++;
        usize n = (usize)(s - tok);
        const char *eq = tok;
        while (eq < s && *eq != '=')
            eq++;
        if (n == 0 || eq == s || *tok == '/')
            continue;
        usize klen = (usize)(eq - tok), vlen = (usize)(s - eq - 1);
        const char *val = eq + 1;
        if (klen == 5 && !strncmp(tok, "bench", 5)) {
            run_workload = WORKLOAD_COUNT;
            for (int w = 0; w < WORKLOAD_COUNT; w++)
                if (strlen(workload_names[w]) == vlen && !strncmp(val, workload_names[w], vlen))
                    run_workload = (enum workload)w;
            if (run_workload == WORKLOAD_COUNT)
                bad_cmdline("unknown bench", tok, n);
        } else if (klen == 5 && !strncmp(tok, "iters", 5)) {
            if (!parse_u64(val, vlen, &run_iters) || run_iters == 0)
                bad_cmdline("iters must be a positive integer", tok, n);
        } else if (klen == 2 && !strncmp(tok, "ws", 2)) {
            if (!parse_u64(val, vlen, &run_ws) || run_ws < 16 ||
                run_ws > USER_HEAP_END - USER_HEAP_BASE)
                bad_cmdline("ws must be between 16 and 268435456 bytes", tok, n);
        } else if (klen == 5 && !strncmp(tok, "pages", 5)) {
            if (!parse_u64(val, vlen, &run_pages) ||
                run_pages > (USER_HEAP_END - USER_HEAP_BASE) / PAGE_SIZE)
                bad_cmdline("pages must be between 0 and 65536", tok, n);
        } else if (klen == 7 && !strncmp(tok, "pvbatch", 7)) {
            u64 batch;
            if (!parse_u64(val, vlen, &batch) || batch == 0 || batch > PVBATCH_MAX)
                bad_cmdline("pvbatch must be between 1 and 256", tok, n);
            pv_set_batch_size(batch);
        } else {
            bad_cmdline("unknown key (expected bench, iters, ws, pages, pvbatch)", tok, n);
        }
    }
}

/* The end of the RAM region that holds the kernel, from the Multiboot memory map. */
static u64 usable_ram_end(const struct multiboot_info *mb) {
    if (!(mb->flags & MB_INFO_MMAP))
        machine_exit(false, "the loader gave no memory map");
    u64 end = 0;
    for (u64 p = mb->mmap_addr; p < (u64)mb->mmap_addr + mb->mmap_length;) {
        const struct multiboot_mmap_entry *e = (const void *)p;
        if (e->type == 1 && e->addr <= (u64)__kernel_start && e->addr + e->len > (u64)__kernel_end)
            end = e->addr + e->len;
        p += e->size + 4;
    }
    if (!end)
        machine_exit(false, "no RAM region holds the kernel");
    return end < KERNEL_SCRATCH_VA ? end : (KERNEL_SCRATCH_VA & ~0x1FFFFFUL); /* the identity map */
}

static void check_interrupt_state(void) {
    pvops.irq_enable();
    u64 flags = irq_save();
    irq_restore(flags);  /* checks that IF is set again */
    pvops.irq_disable();    /* from here on the kernel runs with interrupts off */
    kprintf("check: interrupt flag save/restore ok\n");
}

static bool runs_in_kernel(enum workload w) {
    return w == WORKLOAD_in || w == WORKLOAD_cr8wr || w == WORKLOAD_callret || w == WORKLOAD_ptemod ||
           w == WORKLOAD_clisti || w == WORKLOAD_ksmc;
}

void kmain(u32 magic, u32 info) {
    pvops_select(); /* before the first privileged operation: console_init's port I/O */
    console_init();
    kprintf("pgsim-kernel: booting\n");
    if (magic != MULTIBOOT_LOADER_MAGIC)
        machine_exit(false, "not started by a Multiboot loader");
    const struct multiboot_info *mb = (const void *)(u64)info;
    if (mb->flags & MB_INFO_CMDLINE) {
        const char *src = (const char *)(u64)mb->cmdline;
        usize i = 0;
        for (; src[i] && i < sizeof(cmdline) - 1; i++)
            cmdline[i] = src[i];
        cmdline[i] = 0;
    }
    u64 ram_end = usable_ram_end(mb);

    cpu_init();
    platform_init();
    pvops_report();
    mm_init((u64)__kernel_end, ram_end);
    proc_init();
    check_interrupt_state();
    pvops.timer_start();

    parse_cmdline(cmdline);
    if (run_workload == WORKLOAD_COUNT) {
        kprintf("no workload given (bench=NAME); boot checks only\n");
        machine_exit(true, NULL);
    }
    kprintf("workload: %s\n", workload_names[run_workload]);
    u64 frames_before = frames_in_use();
    if (run_workload == WORKLOAD_selftest)
        selftest_kernel();
    if (runs_in_kernel(run_workload)) {
        bench_kernel(run_workload, run_iters);
    } else {
        /* The third argument sizes the workload: memwalk's working set, forkwait's data. */
        proc_spawn((u64)user_main, run_workload, run_iters,
                   run_workload == WORKLOAD_forkwait ? run_pages : run_ws);
        scheduler();
    }
    if (frames_in_use() != frames_before) {
        kprintf("frames in use: %lu before the workload, %lu after\n", frames_before,
                frames_in_use());
        machine_exit(false, "physical frames leaked");
    }
    if (run_workload != WORKLOAD_selftest && !bench_reported())
        machine_exit(false, "the workload reported no result");
    kprintf("timing: timer_ticks=%lu preemptions=%lu\n", *(u64 *)clock_frame, preemptions);
    machine_exit(true, NULL);
}

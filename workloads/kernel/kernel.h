/* Declarations shared by the kernel's C files. */
#ifndef PGSIM_KERNEL_H
#define PGSIM_KERNEL_H
#include "types.h"
#include "pvops.h"
#include "syscall_abi.h"

/* ---- segments (gdt order fixed by SYSCALL/SYSRET: STAR bases 0x08 and 0x18) ---- */
#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define USER_CS32 0x1B /* unused 32-bit user code; SYSRET's layout needs the slot */
#define USER_DS   0x23
#define USER_CS   0x2B
#define TSS_SEL   0x30

/* ---- interrupt vectors ---- */
#define VEC_DE 0
#define VEC_UD 6
#define VEC_GP 13
#define VEC_PF 14
#define VEC_TIMER 32         /* the local APIC timer */
#define VEC_PIC_BASE 0x30    /* the 8259s' 16 vectors (all masked; only spurious ones arrive) */
#define VEC_SYSCALL_INT 0x80  /* INT 0x80 system calls (DPL 3) */
#define VEC_PROBE_USER 0x81   /* selftest's INT n target reachable from ring 3 (DPL 3) */
#define VEC_PROBE_KERNEL 0x82 /* selftest's INT n target for ring 0 only (DPL 0) */
#define VEC_APIC_SPURIOUS 0xFF
#define VEC_FROM_SYSCALL 0x100 /* trapframe.vector of a frame built by the SYSCALL entry */

/* Saved by entry.S on every trap, interrupt and system call; the layout is fixed there. */
struct trapframe {
    u64 r15, r14, r13, r12, r11, r10, r9, r8;
    u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, error;
    u64 rip, cs, rflags, rsp, ss; /* the hardware frame */
};

/* ---- console.c ---- */
void console_init(void);
void console_write(const char *s, usize n);
void console_write_raw(const char *s, usize n);
void native_console_write(const char *s, usize n); /* the UART */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- platform.c ---- */
void platform_init(void);
void native_timer_start(void); /* the local APIC's periodic timer */
void native_timer_ack(void);   /* its EOI */
u64 fwcfg_ram_bytes(void);
u32 fwcfg_cpu_count(void);
NORETURN void machine_exit(bool passed, const char *reason);
NORETURN void check_failed(const char *name);
#define CHECK(cond, name) do { if (!(cond)) check_failed(name); } while (0)

/* ---- cpu.c ---- */
void cpu_init(void);
void cpu_set_kernel_stack(u64 top);
void native_set_kernel_stack(u64 top); /* TSS.RSP0 */
extern u64 syscall_kernel_rsp; /* entry.S switches to it on SYSCALL */

/* ---- mm.c ---- */
#define PAGE_SIZE 4096UL
#define PTE_P  (1UL << 0)
#define PTE_W  (1UL << 1)
#define PTE_U  (1UL << 2)
#define PTE_PS (1UL << 7)
#define PTE_ADDR 0x000FFFFFFFFFF000UL
void mm_init(u64 first_free, u64 end);
u64 frame_alloc(void); /* a zeroed 4 KiB frame (identity-mapped); fails the run when exhausted */
void frame_free(u64 phys);
u64 frames_in_use(void);
u64 *kernel_scratch_pte(void); /* the PTE of the kernel's one scratch page */
extern u64 clock_frame;        /* holds the timer-tick count ring 3 reads at USER_CLOCK_PAGE */
#define KERNEL_SCRATCH_VA 0x3FFFF000UL
/* An address space is a root (PML4) and, where pvops.separate_user_root says ring 3 runs on a root
 * of its own (direct paging), a user root holding only the user's mappings (0 otherwise). */
u64 aspace_create(u64 *user_root);
u64 aspace_clone(u64 pml4, u64 *user_root);
void aspace_destroy(u64 pml4, u64 user_root);
u64 *aspace_pte(u64 pml4, u64 va, bool create);
bool handle_page_fault(struct trapframe *tf, u64 addr);
bool user_readable(u64 va, u64 len);
extern u64 kernel_pml4;

/* ---- proc.c ---- */
enum proc_state { PROC_FREE, PROC_RUNNABLE, PROC_RUNNING, PROC_BLOCKED, PROC_ZOMBIE };
struct proc {
    int pid;
    enum proc_state state;
    struct proc *parent;
    u64 pml4;              /* physical address of the address space */
    u64 user_pml4;         /* its user root, or 0 (see aspace_create) */
    u64 kstack;            /* base of the 8 KiB kernel stack */
    u64 context;           /* saved kernel RSP while switched out */
    struct trapframe *tf;  /* the user frame at the top of the kernel stack */
    int exit_code;
    bool probe;            /* user faults resume at R15 (selftest, divzero) */
    u64 faults_delivered;  /* counts faults resumed in probe mode */
    u64 pgfault_count;     /* counts the pgfault benchmark's faults */
    const void *wait_on;   /* what a blocked process waits for */
};
extern struct proc *current;
void proc_init(void);
struct proc *proc_spawn(u64 entry, u64 arg0, u64 arg1, u64 arg2);
void scheduler(void);
void yield(void);
int proc_fork(struct trapframe *tf);
NORETURN void proc_exit(int code);
s64 proc_wait(void);
void channel_send(u64 ch, u64 value);
u64 channel_recv(u64 ch);
NORETURN void proc_kill(const char *why, u64 addr);

/* ---- trap.c ---- */
/* selftest: while armed, a kernel fault resumes at R15 with R14 = vector | (count << 8) */
extern volatile bool kprobe_armed;
extern u64 preemptions; /* timer interrupts that took the CPU from ring 3 */

/* ---- bench.c / selftest.c ---- */
extern enum workload run_workload;
extern u64 run_iters, run_ws, run_pages;
void bench_report(u64 checksum, u64 cycles);
void bench_kernel(enum workload w, u64 iters);
void selftest_kernel(void);
void selftest_report(const char *who, u64 id, u64 value, u64 fault_and_zf);
bool bench_reported(void);

/* ---- lib ---- */
void *memset(void *d, int c, usize n);
void *memcpy(void *d, const void *s, usize n);
usize strlen(const char *s);
int strncmp(const char *a, const char *b, usize n);

/* entry.S */
void swtch(u64 *save_rsp, u64 new_rsp);
void proc_first_return(void);
NORETURN void native_trapret_iret(struct trapframe *tf);
NORETURN void native_trapret_sysret(struct trapframe *tf);
NORETURN void pv_trapret(struct trapframe *tf); /* the return by hypercall (PV_OP_IRET) */
extern char __kernel_start[], __kernel_end[], __user_start[], __user_end[], __user_image_phys[];

#endif

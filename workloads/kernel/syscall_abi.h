/* The system-call interface between the kernel and its ring-3 programs.
 * SYSCALL (or INT 0x80): RAX = number, RDI/RSI/RDX = arguments, result in RAX. */
#ifndef PGSIM_SYSCALL_ABI_H
#define PGSIM_SYSCALL_ABI_H

enum syscall_number {
    SYS_EXIT = 0,    /* exit(code): never returns */
    SYS_FORK = 1,    /* fork(): child pid in the parent, 0 in the child */
    SYS_WAIT = 2,    /* wait(): exit code of a reaped child, -1 if there is none */
    SYS_GETPID = 3,  /* getpid() */
    SYS_WRITE = 4,   /* write(buffer, length) to the console */
    SYS_NULL = 5,    /* null(x): returns x + 1; the syscall benchmark */
    SYS_SEND = 6,    /* send(channel, value): blocks while the channel is full */
    SYS_RECV = 7,    /* recv(channel): blocks while the channel is empty */
    SYS_RESULT = 8,  /* result(checksum, tsc_cycles): the workload's answer */
    SYS_PROBE = 9,   /* probe(on): faults resume at R15 with R14 = vector | (count << 8) */
    SYS_REPORT = 10, /* report(probe id, value, vector): one selftest observation */
    SYS_COUNT
};

/* Ring-3 virtual memory layout (PDPT slot 1 of each address space). */
#define USER_TEXT_BASE   0x40000000UL /* the shared, read-only program image */
#define USER_HEAP_BASE   0x50000000UL /* zero-filled on demand */
#define USER_HEAP_END    0x60000000UL
#define USER_FAULT_BASE  0x60000000UL /* two pages for the pgfault benchmark */
#define USER_FAULT_END   0x60002000UL
#define USER_STACK_LOW   0x7F000000UL /* the stack, zero-filled on demand */
#define USER_STACK_TOP   0x7FFFF000UL
#define USER_CLOCK_PAGE  0x7FFFF000UL /* read-only, shared: the kernel's timer-tick count */

/* forkwait's private data, in pages (pages=N on the command line). */
#define FORKWAIT_PAGES_DEFAULT 0

/* Workloads: chosen by bench=NAME on the command line. */
#define WORKLOAD_LIST(X) \
    X(selftest) X(syscall) X(in) X(cr8wr) X(callret) X(pgfault) X(divzero) X(ptemod) \
    X(forkwait) X(compute) X(memwalk) X(ctxswitch) X(smc) X(clisti) X(ksmc)
#define WORKLOAD_ENUM(name) WORKLOAD_##name,
enum workload { WORKLOAD_LIST(WORKLOAD_ENUM) WORKLOAD_COUNT };

#endif

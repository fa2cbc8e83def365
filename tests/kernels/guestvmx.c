/* A small guest hypervisor (Multiboot test kernel, C half; the entry, VM entry and exit stubs and
 * the nested guest's code are in guestvmx.S). It enters VMX operation, checks the VM-instruction
 * errors of misused VMX instructions, launches a nested guest with EPT that executes CPUID, OUT,
 * a load that page-faults (exception bitmap), a store the EPT forbids and HLT, handles each VM
 * exit by its basic reason and prints the reasons and qualifications, then checks the VM-entry
 * failures of a bad control, a bad host CR0 and bad guest state. Every line it prints is what the
 * Intel SDM says a processor reports (tests/platforms/platform_test.cpp checks them).
 * On a CPU without VMX (QEMU's TCG) it says so and exits with status 2; with "vmx=force" on its
 * command line it sets CR4.VMXE and executes VMXON all the same (under a VMM that does not offer
 * VMX to its guest, the VMM sees the VM exit), and exits with status 3 if it comes back. */
#include "guestvmx.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

/* ---- Serial output (COM1, 115200 8N1) ---------------------------------------------------------- */

#define COM1 0x3F8

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) {
  u8 v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

static void serial_init(void) {
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x80);
  outb(COM1 + 0, 0x01);
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x03);
  outb(COM1 + 2, 0xC7);
}

static void putc(char c) {
  while (!(inb(COM1 + 5) & 0x20)) {
  }
  outb(COM1, (u8)c);
}

static void puts(const char* s) {
  while (*s) putc(*s++);
}

static void put_hex(u32 v) {
  char buf[9];
  int n = 0;
  do {
    buf[n++] = "0123456789abcdef"[v & 0xF];
    v >>= 4;
  } while (v);
  puts("0x");
  while (n) putc(buf[--n]);
}

static void put_dec(u32 v) {
  char buf[11];
  int n = 0;
  do {
    buf[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) putc(buf[--n]);
}

/* ---- Processor access ---------------------------------------------------------------------------- */

#define RFLAGS_CF (1u << 0)
#define RFLAGS_ZF (1u << 6)
#define CR0_PE (1u << 0)
#define CR0_PG (1u << 31)
#define CR4_PSE (1u << 4)
#define CR4_VMXE (1u << 13)

static inline u64 rdmsr(u32 msr) {
  u32 lo, hi;
  __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v) {
  __asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}
static inline void cpuid(u32 leaf, u32 subleaf, u32* a, u32* b, u32* c, u32* d) {
  __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(subleaf));
}
static inline u32 read_cr0(void) { u32 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline u32 read_cr3(void) { u32 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline u32 read_cr4(void) { u32 v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr0(u32 v) { __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
static inline void write_cr3(u32 v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void write_cr4(u32 v) { __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }

/* The VMX instructions; each returns RFLAGS after it (CF: VMfailInvalid, ZF: VMfailValid). */
static inline u32 vmxon(const u64* region) {
  u32 f;
  __asm__ volatile("vmxon %1; pushfl; popl %0" : "=r"(f) : "m"(*region) : "cc", "memory");
  return f;
}
static inline u32 vmxoff(void) {
  u32 f;
  __asm__ volatile("vmxoff; pushfl; popl %0" : "=r"(f) : : "cc", "memory");
  return f;
}
static inline u32 vmclear(const u64* region) {
  u32 f;
  __asm__ volatile("vmclear %1; pushfl; popl %0" : "=r"(f) : "m"(*region) : "cc", "memory");
  return f;
}
static inline u32 vmptrld(const u64* region) {
  u32 f;
  __asm__ volatile("vmptrld %1; pushfl; popl %0" : "=r"(f) : "m"(*region) : "cc", "memory");
  return f;
}
static inline u32 vmptrst(u64* region) {
  u32 f;
  __asm__ volatile("vmptrst %1; pushfl; popl %0" : "=r"(f), "=m"(*region) : : "cc", "memory");
  return f;
}
static inline u32 vmread(u32 field, u32* value) {
  u32 f, v = 0;
  __asm__ volatile("vmread %2, %1; pushfl; popl %0" : "=r"(f), "+r"(v) : "r"(field) : "cc");
  *value = v;
  return f;
}
static inline u32 vmwrite(u32 field, u32 value) {
  u32 f;
  __asm__ volatile("vmwrite %2, %1; pushfl; popl %0" : "=r"(f) : "r"(field), "r"(value) : "cc", "memory");
  return f;
}
struct inv_descriptor {
  u64 low, high;
};
static inline u32 invept(u32 type, const struct inv_descriptor* d) {
  u32 f;
  __asm__ volatile("invept %1, %2; pushfl; popl %0" : "=r"(f) : "m"(*d), "r"(type) : "cc", "memory");
  return f;
}
static inline u32 invvpid(u32 type, const struct inv_descriptor* d) {
  u32 f;
  __asm__ volatile("invvpid %1, %2; pushfl; popl %0" : "=r"(f) : "m"(*d), "r"(type) : "cc", "memory");
  return f;
}

/* ---- VMX numbers (Intel SDM vol. 3, appendices A-C) ------------------------------------------------ */

#define IA32_FEATURE_CONTROL 0x3A
#define IA32_VMX_BASIC 0x480
#define IA32_VMX_CR0_FIXED0 0x486
#define IA32_VMX_CR0_FIXED1 0x487
#define IA32_VMX_CR4_FIXED0 0x488
#define IA32_VMX_CR4_FIXED1 0x489
#define IA32_VMX_PROCBASED_CTLS2 0x48B
#define IA32_VMX_EPT_VPID_CAP 0x48C
#define IA32_VMX_TRUE_PINBASED_CTLS 0x48D
#define IA32_VMX_TRUE_PROCBASED_CTLS 0x48E
#define IA32_VMX_TRUE_EXIT_CTLS 0x48F
#define IA32_VMX_TRUE_ENTRY_CTLS 0x490

#define VPID 0x0000
#define GUEST_ES_SELECTOR 0x0800
#define HOST_ES_SELECTOR 0x0C00
#define HOST_CS_SELECTOR 0x0C02
#define HOST_SS_SELECTOR 0x0C04
#define HOST_DS_SELECTOR 0x0C06
#define HOST_FS_SELECTOR 0x0C08
#define HOST_GS_SELECTOR 0x0C0A
#define HOST_TR_SELECTOR 0x0C0C
#define EPT_POINTER 0x201A
#define GUEST_PHYSICAL_ADDRESS 0x2400
#define VMCS_LINK_POINTER 0x2800
#define PIN_BASED_CONTROLS 0x4000
#define PROC_BASED_CONTROLS 0x4002
#define EXCEPTION_BITMAP 0x4004
#define EXIT_CONTROLS 0x400C
#define ENTRY_CONTROLS 0x4012
#define SECONDARY_CONTROLS 0x401E
#define VM_INSTRUCTION_ERROR 0x4400
#define EXIT_REASON 0x4402
#define EXIT_INTERRUPTION_INFO 0x4404
#define EXIT_INTERRUPTION_ERROR_CODE 0x4406
#define EXIT_INSTRUCTION_LENGTH 0x440C
#define GUEST_ES_LIMIT 0x4800
#define GUEST_LDTR_LIMIT 0x480C
#define GUEST_TR_LIMIT 0x480E
#define GUEST_GDTR_LIMIT 0x4810
#define GUEST_IDTR_LIMIT 0x4812
#define GUEST_ES_ACCESS_RIGHTS 0x4814
#define GUEST_LDTR_ACCESS_RIGHTS 0x4820
#define GUEST_TR_ACCESS_RIGHTS 0x4822
#define GUEST_INTERRUPTIBILITY 0x4824
#define GUEST_ACTIVITY_STATE 0x4826
#define CR0_GUEST_HOST_MASK 0x6000
#define CR4_GUEST_HOST_MASK 0x6002
#define CR0_READ_SHADOW 0x6004
#define CR4_READ_SHADOW 0x6006
#define EXIT_QUALIFICATION 0x6400
#define GUEST_LINEAR_ADDRESS 0x640A
#define GUEST_CR0 0x6800
#define GUEST_CR3 0x6802
#define GUEST_CR4 0x6804
#define GUEST_ES_BASE 0x6806
#define GUEST_TR_BASE 0x6814
#define GUEST_GDTR_BASE 0x6816
#define GUEST_IDTR_BASE 0x6818
#define GUEST_DR7 0x681A
#define GUEST_RSP 0x681C
#define GUEST_RIP 0x681E
#define GUEST_RFLAGS 0x6820
#define HOST_CR0 0x6C00
#define HOST_CR3 0x6C02
#define HOST_CR4 0x6C04
#define HOST_FS_BASE 0x6C06
#define HOST_GS_BASE 0x6C08
#define HOST_TR_BASE 0x6C0A
#define HOST_GDTR_BASE 0x6C0C
#define HOST_IDTR_BASE 0x6C0E
#define UNSUPPORTED_FIELD 0x0002 /* posted-interrupt notification vector: not offered */

#define PROC_HLT_EXITING (1u << 7)
#define PROC_UNCONDITIONAL_IO_EXITING (1u << 24)
#define PROC_ACTIVATE_SECONDARY_CONTROLS (1u << 31)
#define PROC2_ENABLE_EPT (1u << 1)
#define PROC2_ENABLE_VPID (1u << 5)
#define PIN_PREEMPTION_TIMER (1u << 6)

#define EXIT_REASON_EXCEPTION 0
#define EXIT_REASON_CPUID 10
#define EXIT_REASON_HLT 12
#define EXIT_REASON_VMCALL 18
#define EXIT_REASON_IO 30
#define EXIT_REASON_EPT_VIOLATION 48
#define EXIT_REASON_ENTRY_FAILURE (1u << 31)

#define EPT_READ 1u
#define EPT_WRITE 2u
#define EPT_RWX 7u
#define EPT_MEMORY_TYPE_WB (6u << 3)
#define EPTP_WB_4_LEVELS (6u | (3u << 3))

/* ---- Memory ----------------------------------------------------------------------------------------- */

#define PAGE 4096
#define ALIGNED __attribute__((aligned(PAGE)))
#define EPT_TABLES_MAPPED 4 /* 4 x 2 MiB: the nested guest sees 0-8 MiB */

static u32 host_pd[1024] ALIGNED;
static u32 guest_pd[1024] ALIGNED;
static u32 guest_pt[1024] ALIGNED; /* 4-8 MiB */
static u64 ept_pml4[512] ALIGNED, ept_pdpt[512] ALIGNED, ept_pd[512] ALIGNED;
static u64 ept_pt[EPT_TABLES_MAPPED][512] ALIGNED;
static u32 vmxon_region[1024] ALIGNED;
static u32 vmcs_main[1024] ALIGNED, vmcs_failures[1024] ALIGNED, vmcs_bad_revision[1024] ALIGNED;
static u8 guest_stack[PAGE] ALIGNED;

extern u64 vmx_gdt[];
extern u8 tss[];
extern void nested_guest(void), nested_guest_vmcall(void);
unsigned vmx_enter(int resume);

static u32 revision;
static u32 exits_handled;

struct guest_regs { /* PUSHA's order */
  u32 edi, esi, ebp, esp, ebx, edx, ecx, eax;
};

/* ---- Reporting ------------------------------------------------------------------------------------ */

static u32 read_field(u32 field) {
  u32 v;
  vmread(field, &v);
  return v;
}

/* "<what>: VMsucceed", "<what>: VMfailInvalid" or "<what>: VMfailValid error=<n>". */
static void report(const char* what, u32 flags) {
  puts(what);
  if (flags & RFLAGS_CF) {
    puts(": VMfailInvalid\n");
  } else if (flags & RFLAGS_ZF) {
    puts(": VMfailValid error=");
    put_dec(read_field(VM_INSTRUCTION_ERROR));
    puts("\n");
  } else {
    puts(": VMsucceed\n");
  }
}

static u32 adjust_controls(u32 wanted, u32 msr) {
  const u64 cap = rdmsr(msr);
  return (wanted | (u32)cap) & (u32)(cap >> 32);
}

/* ---- Paging: the hypervisor's, the nested guest's and the EPT ---------------------------------------- */

static void enable_host_paging(void) {
  for (u32 i = 0; i < 4; ++i) host_pd[i] = (i << 22) | 0x83; /* 0-16 MiB in 4 MiB pages */
  write_cr4(read_cr4() | CR4_PSE);
  write_cr3((u32)host_pd);
  write_cr0(read_cr0() | CR0_PG);
}

static void build_guest_tables(void) {
  guest_pd[0] = 0x83;  /* 0-4 MiB: a 4 MiB page (the kernel's code and data) */
  guest_pd[1] = (u32)guest_pt | 3;
  for (u32 i = 0; i < 1024; ++i) guest_pt[i] = (0x400000 + i * PAGE) | 3;
  guest_pt[(GUEST_FAULT_PAGE - 0x400000) / PAGE] = 0; /* absent: the load page-faults */

  ept_pml4[0] = (u32)ept_pdpt | EPT_RWX;
  ept_pdpt[0] = (u32)ept_pd | EPT_RWX;
  for (u32 t = 0; t < EPT_TABLES_MAPPED; ++t) {
    ept_pd[t] = (u32)ept_pt[t] | EPT_RWX;
    for (u32 i = 0; i < 512; ++i) ept_pt[t][i] = (u64)((t * 512 + i) * PAGE) | EPT_MEMORY_TYPE_WB | EPT_RWX;
  }
  ept_pt[GUEST_EPT_PAGE >> 21][(GUEST_EPT_PAGE >> 12) & 511] = GUEST_EPT_PAGE | EPT_MEMORY_TYPE_WB | EPT_READ;
}

/* ---- The VMCS --------------------------------------------------------------------------------------- */

/* A nested guest in 32-bit protected mode with paging, running nested_guest; the host is this
 * kernel as it is now. Returns how many VMWRITEs failed (0 expected). */
static u32 program_vmcs(void) {
  u32 failures = 0;
#define W(field, value) failures += (vmwrite((field), (value)) & (RFLAGS_CF | RFLAGS_ZF)) != 0
  W(PIN_BASED_CONTROLS, adjust_controls(0, IA32_VMX_TRUE_PINBASED_CTLS));
  W(PROC_BASED_CONTROLS, adjust_controls(PROC_HLT_EXITING | PROC_UNCONDITIONAL_IO_EXITING |
                                             PROC_ACTIVATE_SECONDARY_CONTROLS,
                                         IA32_VMX_TRUE_PROCBASED_CTLS));
  W(SECONDARY_CONTROLS, adjust_controls(PROC2_ENABLE_EPT | PROC2_ENABLE_VPID, IA32_VMX_PROCBASED_CTLS2));
  W(EXIT_CONTROLS, adjust_controls(0, IA32_VMX_TRUE_EXIT_CTLS)); /* a 32-bit host */
  W(ENTRY_CONTROLS, adjust_controls(0, IA32_VMX_TRUE_ENTRY_CTLS));
  W(EXCEPTION_BITMAP, 1u << 14); /* #PF */
  W(VPID, 1);
  W(EPT_POINTER, (u32)ept_pml4 | EPTP_WB_4_LEVELS);
  W(EPT_POINTER + 1, 0);
  W(VMCS_LINK_POINTER, 0xFFFFFFFF);
  W(VMCS_LINK_POINTER + 1, 0xFFFFFFFF);
  W(CR0_GUEST_HOST_MASK, 0);
  W(CR4_GUEST_HOST_MASK, 0);
  W(CR0_READ_SHADOW, 0);
  W(CR4_READ_SHADOW, 0);

  /* The host: this kernel. HOST_RSP and HOST_RIP are vmx_enter's. */
  W(HOST_CR0, read_cr0());
  W(HOST_CR3, read_cr3());
  W(HOST_CR4, read_cr4());
  W(HOST_CS_SELECTOR, SEL_CODE);
  W(HOST_ES_SELECTOR, SEL_DATA);
  W(HOST_SS_SELECTOR, SEL_DATA);
  W(HOST_DS_SELECTOR, SEL_DATA);
  W(HOST_FS_SELECTOR, SEL_DATA);
  W(HOST_GS_SELECTOR, SEL_DATA);
  W(HOST_TR_SELECTOR, SEL_TSS);
  W(HOST_FS_BASE, 0);
  W(HOST_GS_BASE, 0);
  W(HOST_TR_BASE, (u32)tss);
  W(HOST_GDTR_BASE, (u32)vmx_gdt);
  W(HOST_IDTR_BASE, 0);

  /* The nested guest: the same flat segments, its own page tables, no IDT. */
  W(GUEST_CR0, read_cr0());
  W(GUEST_CR3, (u32)guest_pd);
  W(GUEST_CR4, read_cr4());
  W(GUEST_DR7, 0x400);
  for (u32 seg = 0; seg < 6; ++seg) {
    const int code = seg == 1;
    W(GUEST_ES_SELECTOR + 2 * seg, code ? SEL_CODE : SEL_DATA);
    W(GUEST_ES_BASE + 2 * seg, 0);
    W(GUEST_ES_LIMIT + 2 * seg, 0xFFFFFFFF);
    W(GUEST_ES_ACCESS_RIGHTS + 2 * seg, code ? 0xC09B : 0xC093);
  }
  W(GUEST_LDTR_ACCESS_RIGHTS, 0x10000); /* unusable */
  W(GUEST_LDTR_LIMIT, 0);
  W(GUEST_ES_SELECTOR + 14, SEL_TSS); /* TR */
  W(GUEST_TR_BASE, (u32)tss);
  W(GUEST_TR_LIMIT, 0x67);
  W(GUEST_TR_ACCESS_RIGHTS, 0x8B);
  W(GUEST_GDTR_BASE, (u32)vmx_gdt);
  W(GUEST_GDTR_LIMIT, 4 * 8 - 1);
  W(GUEST_IDTR_BASE, 0);
  W(GUEST_IDTR_LIMIT, 0);
  W(GUEST_RSP, (u32)guest_stack + PAGE);
  W(GUEST_RIP, (u32)nested_guest);
  W(GUEST_RFLAGS, 0x2);
  W(GUEST_INTERRUPTIBILITY, 0);
  W(GUEST_ACTIVITY_STATE, 0);
#undef W
  return failures;
}

/* ---- VM exits, dispatched by basic exit reason ------------------------------------------------------- */

/* " <label>=<value in hex>". */
static void show_field(const char* label, u32 value) {
  puts(" ");
  puts(label);
  puts("=");
  put_hex(value);
}

/* "  <what> <label>=<value in hex>": the start of a handler's line. */
static void show(const char* what, const char* label, u32 value) {
  puts("  ");
  puts(what);
  show_field(label, value);
}

/* " length=<n>" and the end of the line, then the guest goes on after the instruction. */
static int show_length_and_skip(void) {
  const u32 length = read_field(EXIT_INSTRUCTION_LENGTH);
  puts(" length=");
  put_dec(length);
  puts("\n");
  vmwrite(GUEST_RIP, read_field(GUEST_RIP) + length);
  return 1;
}

static int on_cpuid(struct guest_regs* r) {
  show("cpuid", "leaf", r->eax);
  cpuid(r->eax, r->ecx, &r->eax, &r->ebx, &r->ecx, &r->edx);
  return show_length_and_skip();
}

static int on_io(struct guest_regs* r) {
  show("io", "value", r->eax & 0xFF);
  return show_length_and_skip();
}

/* The page fault the nested guest's own tables cause: the page is mapped, the load runs again. */
static int on_exception(struct guest_regs* r) {
  (void)r;
  show("exception", "info", read_field(EXIT_INTERRUPTION_INFO));
  show_field("error", read_field(EXIT_INTERRUPTION_ERROR_CODE));
  puts("\n");
  guest_pt[(GUEST_FAULT_PAGE - 0x400000) / PAGE] = GUEST_FAULT_PAGE | 3;
  return 1;
}

/* The store the EPT forbids: the page becomes writable (INVEPT), the store runs again. */
static int on_ept_violation(struct guest_regs* r) {
  (void)r;
  show("ept violation", "gpa", read_field(GUEST_PHYSICAL_ADDRESS));
  show_field("linear", read_field(GUEST_LINEAR_ADDRESS));
  puts("\n");
  ept_pt[GUEST_EPT_PAGE >> 21][(GUEST_EPT_PAGE >> 12) & 511] |= EPT_WRITE;
  const struct inv_descriptor d = {(u32)ept_pml4 | EPTP_WB_4_LEVELS, 0};
  report("  invept single-context", invept(1, &d));
  return 1;
}

static int on_hlt(struct guest_regs* r) {
  (void)r;
  puts("  hlt");
  return show_length_and_skip();
}

static int on_vmcall(struct guest_regs* r) {
  (void)r;
  puts("  vmcall length=");
  put_dec(read_field(EXIT_INSTRUCTION_LENGTH));
  puts(": the nested guest is done\n");
  return 0;
}

static int on_entry_failure(struct guest_regs* r) {
  (void)r;
  puts("  VM-entry failure\n");
  return 0;
}

int vmx_handle_exit(struct guest_regs* r) {
  const u32 reason = read_field(EXIT_REASON);
  ++exits_handled;
  puts("exit reason=");
  put_hex(reason);
  puts(" qualification=");
  put_hex(read_field(EXIT_QUALIFICATION));
  puts("\n");
  if (reason & EXIT_REASON_ENTRY_FAILURE) return on_entry_failure(r);
  switch (reason & 0xFFFF) {
    case EXIT_REASON_EXCEPTION: return on_exception(r);
    case EXIT_REASON_CPUID: return on_cpuid(r);
    case EXIT_REASON_HLT: return on_hlt(r);
    case EXIT_REASON_VMCALL: return on_vmcall(r);
    case EXIT_REASON_IO: return on_io(r);
    case EXIT_REASON_EPT_VIOLATION: return on_ept_violation(r);
    default: puts("  unexpected exit\n"); return 0;
  }
}

/* ---- VM-entry failures ---------------------------------------------------------------------------- */

/* One VMLAUNCH of the second VMCS with one field changed, which is restored after. */
static void launch_with(const char* what, u32 field, u32 value) {
  const u32 saved = read_field(field);
  vmwrite(field, value);
  const unsigned flags = vmx_enter(0);
  if (flags) report(what, flags);
  else puts(what), puts(": VM-entry failure exit\n");
  vmwrite(field, saved);
}

/* ---- The hypervisor --------------------------------------------------------------------------------- */

struct multiboot_info {
  u32 flags, mem_lower, mem_upper, boot_device, cmdline;
};

static int cmdline_has(const struct multiboot_info* mb, const char* word) {
  if (!(mb->flags & (1u << 2))) return 0;
  for (const char* s = (const char*)mb->cmdline; *s; ++s) {
    const char *p = s, *w = word;
    while (*w && *p == *w) ++p, ++w;
    if (!*w) return 1;
  }
  return 0;
}

int kmain(const struct multiboot_info* mb) {
  serial_init();
  puts("== pgsim test kernel: guestvmx ==\n");
  u32 a, b, c, d;
  cpuid(1, 0, &a, &b, &c, &d);
  const int vmx = (c & (1u << 5)) != 0;
  if (!vmx && !cmdline_has(mb, "vmx=force")) {
    puts("guestvmx: CPUID.1:ECX.VMX = 0: this processor has no VMX\n");
    return 2;
  }
  enable_host_paging();
  if (!vmx) {
    puts("guestvmx: CPUID.1:ECX.VMX = 0; vmx=force: VMXON all the same\n");
    write_cr4(read_cr4() | CR4_VMXE);
    vmxon_region[0] = 1;
    const u64 region = (u32)vmxon_region;
    report("vmxon", vmxon(&region));
    return 3;
  }

  /* IA32_FEATURE_CONTROL: locked with VMX outside SMX (firmware's job, done here). */
  const u64 feature = rdmsr(IA32_FEATURE_CONTROL);
  if (!(feature & 1)) wrmsr(IA32_FEATURE_CONTROL, feature | 5);
  puts("IA32_FEATURE_CONTROL=");
  put_hex((u32)rdmsr(IA32_FEATURE_CONTROL));
  const u64 basic = rdmsr(IA32_VMX_BASIC);
  revision = (u32)basic & 0x7FFFFFFF;
  puts(" VMCS revision=");
  put_dec(revision);
  puts(" region bytes=");
  put_dec((u32)(basic >> 32) & 0x1FFF);
  puts(" true controls=");
  put_dec((u32)(basic >> 55) & 1);
  puts("\n");

  /* CR0 and CR4 as VMX operation wants them (FIXED0 bits set, FIXED1 bits only): CR4.VMXE. */
  write_cr0((read_cr0() | (u32)rdmsr(IA32_VMX_CR0_FIXED0)) & (u32)rdmsr(IA32_VMX_CR0_FIXED1));
  write_cr4((read_cr4() | (u32)rdmsr(IA32_VMX_CR4_FIXED0)) & (u32)rdmsr(IA32_VMX_CR4_FIXED1));

  vmxon_region[0] = vmcs_main[0] = vmcs_failures[0] = revision;
  vmcs_bad_revision[0] = revision + 1;
  const u64 vmxon_pa = (u32)vmxon_region, main_pa = (u32)vmcs_main, failures_pa = (u32)vmcs_failures,
            bad_pa = (u32)vmcs_bad_revision;
  u32 value;

  report("vmxon", vmxon(&vmxon_pa));
  report("vmread without a current VMCS", vmread(GUEST_RIP, &value));
  report("vmclear", vmclear(&main_pa));
  report("vmptrld", vmptrld(&main_pa));
  u64 current = 0;
  report("vmptrst", vmptrst(&current));
  puts(current == main_pa ? "vmptrst: the current VMCS\n" : "vmptrst: another address\n");
  report("vmxon in VMX root operation", vmxon(&vmxon_pa));
  report("vmclear of the VMXON region", vmclear(&vmxon_pa));
  report("vmptrld of a VMCS with another revision", vmptrld(&bad_pa));
  report("vmread of an unsupported field", vmread(UNSUPPORTED_FIELD, &value));
  report("vmwrite of a read-only field", vmwrite(EXIT_REASON, 0));
  report("vmresume of a clear VMCS", vmx_enter(1));

  /* The nested guest. */
  build_guest_tables();
  puts("vmwrite failures=");
  put_dec(program_vmcs());
  puts("\n");
  const unsigned run = vmx_enter(0);
  if (run) report("vmlaunch", run);
  puts("nested guest: ");
  put_dec(exits_handled);
  puts(" exits handled, store ");
  puts(*(volatile u32*)GUEST_EPT_PAGE == GUEST_STORE_VALUE ? "done\n" : "missing\n");
  report("vmlaunch of a launched VMCS", vmx_enter(0));

  /* VM-entry failures, on a second VMCS (the first keeps its state). */
  report("vmclear of the second VMCS", vmclear(&failures_pa));
  report("vmptrld of the second VMCS", vmptrld(&failures_pa));
  program_vmcs();
  launch_with("vmlaunch with a reserved pin-based control", PIN_BASED_CONTROLS,
              adjust_controls(0, IA32_VMX_TRUE_PINBASED_CTLS) | PIN_PREEMPTION_TIMER);
  launch_with("vmlaunch with host CR0.PG clear", HOST_CR0, read_cr0() & ~CR0_PG);
  launch_with("vmlaunch with guest RFLAGS bit 1 clear", GUEST_RFLAGS, 0);

  /* Back to the first VMCS: what was written back on the switch is loaded again. */
  report("vmptrld of the first VMCS", vmptrld(&main_pa));
  puts(read_field(GUEST_RIP) == (u32)nested_guest_vmcall ? "first VMCS: guest RIP at the VMCALL\n"
                                                          : "first VMCS: guest RIP lost\n");
  const struct inv_descriptor all = {0, 0}, vpid_zero = {0, 0};
  report("invept of type 3", invept(3, &all));
  report("invept all-context", invept(2, &all));
  report("invvpid single-context of VPID 0", invvpid(1, &vpid_zero));
  report("invvpid all-context", invvpid(2, &all));
  report("vmxoff", vmxoff());
  puts("guestvmx: done\n");
  return 0;
}

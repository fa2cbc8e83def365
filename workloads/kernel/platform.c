/* The PC around the CPU: 8259 PICs (remapped and masked), the local APIC and its timer,
 * QEMU's fw_cfg (RAM size, CPU count) and the exit device at port 0xF4. */
#include "kernel.h"

enum pic_port { PIC1_CMD = 0x20, PIC1_DATA = 0x21, PIC2_CMD = 0xA0, PIC2_DATA = 0xA1 };
enum { ICW1_INIT_ICW4 = 0x11, ICW4_8086 = 0x01 };

/* Local APIC registers (xAPIC MMIO offsets). */
enum apic_reg {
    APIC_EOI = 0x0B0,      /* end of interrupt */
    APIC_SVR = 0x0F0,      /* spurious vector; bit 8 enables the APIC */
    APIC_LVT_TIMER = 0x320,/* timer vector and mode */
    APIC_TIMER_INIT = 0x380,
    APIC_TIMER_DIV = 0x3E0,
};
#define APIC_BASE 0xFEE00000UL
#define APIC_SVR_ENABLE (1U << 8)
#define APIC_TIMER_PERIODIC (1U << 17)
#define APIC_TIMER_DIV_16 0x3
/* A fixed period (no PIT calibration): 100000 ticks of bus clock / 16, 1.6 ms on QEMU. */
#define APIC_TIMER_COUNT 100000

enum fwcfg_port { FWCFG_SELECT = 0x510, FWCFG_DATA = 0x511 };
enum fwcfg_key { FWCFG_SIGNATURE = 0x00, FWCFG_RAM_SIZE = 0x03, FWCFG_NB_CPUS = 0x05 };

#define EXIT_PORT 0xF4

static void apic_write(enum apic_reg reg, u32 v) { *(volatile u32 *)(APIC_BASE + reg) = v; }

static void pic_remap_and_mask(void) {
    outb(PIC1_CMD, ICW1_INIT_ICW4);
    outb(PIC2_CMD, ICW1_INIT_ICW4);
    outb(PIC1_DATA, VEC_PIC_BASE); /* away from the exceptions and the APIC timer */
    outb(PIC2_DATA, VEC_PIC_BASE + 8);
    outb(PIC1_DATA, 0x04); /* slave on IRQ 2 */
    outb(PIC2_DATA, 0x02);
    outb(PIC1_DATA, ICW4_8086);
    outb(PIC2_DATA, ICW4_8086);
    outb(PIC1_DATA, 0xFF); /* everything masked: the local APIC timer is the only source */
    outb(PIC2_DATA, 0xFF);
}

static u64 fwcfg_read(enum fwcfg_key key, int bytes) {
    outw(FWCFG_SELECT, key);
    u64 v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (u64)inb(FWCFG_DATA) << (8 * i);
    return v;
}

u64 fwcfg_ram_bytes(void) { return fwcfg_read(FWCFG_RAM_SIZE, 8); }
u32 fwcfg_cpu_count(void) { return (u32)fwcfg_read(FWCFG_NB_CPUS, 2); }

void platform_init(void) {
    pic_remap_and_mask();
    if (fwcfg_read(FWCFG_SIGNATURE, 4) != 0x554D4551) /* "QEMU" */
        machine_exit(false, "fw_cfg interface not found at port 0x510");
    kprintf("fw_cfg: ram=%lu MiB cpus=%u\n", fwcfg_ram_bytes() >> 20, fwcfg_cpu_count());
}

void native_timer_start(void) {
    apic_write(APIC_SVR, APIC_SVR_ENABLE | VEC_APIC_SPURIOUS);
    apic_write(APIC_TIMER_DIV, APIC_TIMER_DIV_16);
    apic_write(APIC_LVT_TIMER, APIC_TIMER_PERIODIC | VEC_TIMER);
    apic_write(APIC_TIMER_INIT, APIC_TIMER_COUNT);
}

void native_timer_ack(void) { apic_write(APIC_EOI, 0); }

/* The last line of every run, then the exit device: status (v << 1) | 1, v = 0 on success. */
void machine_exit(bool passed, const char *reason) {
    static const char pass[] = "pgsim-kernel: PASS\n", fail[] = "pgsim-kernel: FAIL ";
    if (passed) {
        console_write_raw(pass, sizeof(pass) - 1);
    } else {
        console_write_raw(fail, sizeof(fail) - 1);
        console_write_raw(reason, strlen(reason));
        console_write_raw("\n", 1);
    }
    outb(EXIT_PORT, passed ? 0 : 1);
    pvops.irq_disable(); /* a machine without the exit device stops here */
    for (;;)
        pvops.halt();
}

void check_failed(const char *name) {
    static const char msg[] = "CHECK FAILED: ";
    console_write_raw(msg, sizeof(msg) - 1);
    console_write_raw(name, strlen(name));
    console_write_raw("\n", 1);
    machine_exit(false, name);
}

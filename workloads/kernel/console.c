/* The console: a 16550 UART at 0x3F8 (polled output) and a small printf. */
#include "kernel.h"

enum uart_port {
    UART_BASE = 0x3F8,
    UART_THR = UART_BASE + 0, /* transmit holding register (DLAB=0) */
    UART_DLL = UART_BASE + 0, /* divisor latch low (DLAB=1) */
    UART_IER = UART_BASE + 1, /* interrupt enable (DLAB=0) */
    UART_DLM = UART_BASE + 1, /* divisor latch high (DLAB=1) */
    UART_FCR = UART_BASE + 2, /* FIFO control */
    UART_LCR = UART_BASE + 3, /* line control */
    UART_MCR = UART_BASE + 4, /* modem control */
    UART_LSR = UART_BASE + 5, /* line status */
};
enum { LCR_8N1 = 0x03, LCR_DLAB = 0x80, LSR_THRE = 0x20, MCR_DTR_RTS = 0x03, FCR_ENABLE = 0x07 };

void console_init(void) {
    outb(UART_IER, 0x00);          /* polled: no UART interrupts */
    outb(UART_LCR, LCR_DLAB);
    outb(UART_DLL, 1);             /* 115200 baud */
    outb(UART_DLM, 0);
    outb(UART_LCR, LCR_8N1);
    outb(UART_FCR, FCR_ENABLE);
    outb(UART_MCR, MCR_DTR_RTS);
}

static void console_putc(char c) {
    while (!(inb(UART_LSR) & LSR_THRE))
        ;
    outb(UART_THR, (u8)c);
}

void native_console_write(const char *s, usize n) {
    for (usize i = 0; i < n; i++) {
        if (s[i] == '\n')
            console_putc('\r');
        console_putc(s[i]);
    }
}

/* Without the interrupt-state wrappers: used to report a failed check of those wrappers. */
void console_write_raw(const char *s, usize n) { pvops.console_write(s, n); }

void console_write(const char *s, usize n) {
    u64 flags = irq_save();
    console_write_raw(s, n);
    irq_restore(flags);
}

/* printf subset: %s %c %d %u %x %p, with l/ll, a width and a 0 flag. */
struct outbuf {
    char data[256];
    usize len;
};

static void emit(struct outbuf *o, char c) {
    if (o->len == sizeof(o->data)) {
        console_write(o->data, o->len);
        o->len = 0;
    }
    o->data[o->len++] = c;
}

static void emit_number(struct outbuf *o, u64 v, unsigned base, bool negative, int width, char pad) {
    char digits[24];
    int n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (negative)
        digits[n++] = '-';
    for (int i = n; i < width; i++)
        emit(o, pad);
    while (n)
        emit(o, digits[--n]);
}

void kprintf(const char *fmt, ...) {
    struct outbuf o; /* data is written before it is read: no need to clear 256 bytes */
    o.len = 0;
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            emit(&o, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, longs = 0;
        if (*fmt == '0')
            pad = '0', fmt++;
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l')
            longs++, fmt++;
        switch (*fmt) {
        case 's': {
            const char *s = __builtin_va_arg(ap, const char *);
            usize len = strlen(s);
            for (usize i = len; i < (usize)width; i++)
                emit(&o, ' ');
            while (*s)
                emit(&o, *s++);
            break;
        }
        case 'c':
            emit(&o, (char)__builtin_va_arg(ap, int));
            break;
        case 'd': {
            s64 v = longs ? __builtin_va_arg(ap, s64) : __builtin_va_arg(ap, int);
            emit_number(&o, v < 0 ? -(u64)v : (u64)v, 10, v < 0, width, pad);
            break;
        }
        case 'u':
            emit_number(&o, longs ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, unsigned), 10,
                        false, width, pad);
            break;
        case 'x':
            emit_number(&o, longs ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, unsigned), 16,
                        false, width, pad);
            break;
        case 'p':
            emit(&o, '0');
            emit(&o, 'x');
            emit_number(&o, (u64)__builtin_va_arg(ap, void *), 16, false, width, pad);
            break;
        case '%':
            emit(&o, '%');
            break;
        default:
            emit(&o, '?');
            break;
        }
    }
    __builtin_va_end(ap);
    console_write(o.data, o.len);
}

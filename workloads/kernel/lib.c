/* The few C library functions the kernel needs (GCC may also emit calls to memset/memcpy). */
#include "kernel.h"

/* Word at a time when both ends allow it (frames are cleared and copied whole): a simulator
 * runs every one of these instructions. */
static bool word_aligned(const void *a, const void *b, usize n) {
    return (((u64)a | (u64)b | n) & 7) == 0;
}

void *memset(void *d, int c, usize n) {
    if (word_aligned(d, d, n)) {
        u64 *w = d, v = 0x0101010101010101UL * (u8)c;
        for (usize i = 0; i < n / 8; i++)
            w[i] = v;
        return d;
    }
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, usize n) {
    if (word_aligned(d, s, n)) {
        u64 *w = d;
        const u64 *r = s;
        for (usize i = 0; i < n / 8; i++)
            w[i] = r[i];
        return d;
    }
    u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

usize strlen(const char *s) {
    usize n = 0;
    while (s[n])
        n++;
    return n;
}

int strncmp(const char *a, const char *b, usize n) {
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (u8)*a - (u8)*b;
        if (!*a)
            return 0;
    }
    return 0;
}

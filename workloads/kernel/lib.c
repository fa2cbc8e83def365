/* The few C library functions the kernel needs (GCC may also emit calls to memset/memcpy). */
#include "kernel.h"

void *memset(void *d, int c, usize n) {
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, usize n) {
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

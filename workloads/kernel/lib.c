/* The few C library functions the kernel needs (GCC may also emit calls to memset/memcpy). */
#include "kernel.h"

/* Frames are cleared and copied whole with REP STOSQ and REP MOVSQ, as Linux's clear_page and
 * copy_page do on x86-64: one instruction a page, which matters under a VMM that emulates the
 * instruction (a binary translator's callout) rather than each of 512 stores. The kernel runs
 * with RFLAGS.DF clear (its entry paths execute CLD). */
static bool word_aligned(const void *a, const void *b, usize n) {
    return (((u64)a | (u64)b | n) & 7) == 0;
}

void *memset(void *d, int c, usize n) {
    void *p = d;
    if (word_aligned(d, d, n)) {
        usize words = n / 8;
        asm volatile("rep stosq" : "+D"(p), "+c"(words) : "a"(0x0101010101010101UL * (u8)c) : "memory");
    } else {
        asm volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(c) : "memory");
    }
    return d;
}

void *memcpy(void *d, const void *s, usize n) {
    void *p = d;
    if (word_aligned(d, s, n)) {
        usize words = n / 8;
        asm volatile("rep movsq" : "+D"(p), "+S"(s), "+c"(words) : : "memory");
    } else {
        asm volatile("rep movsb" : "+D"(p), "+S"(s), "+c"(n) : : "memory");
    }
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

/* A JIT in miniature, for bench=smc (ring 3) and bench=ksmc (ring 0): each iteration writes a
 * function at `code` (mov $imm, %eax; add or xor $imm2, %eax; ret), calls it and folds what it
 * returns; then rewrites it with other constants and another operation. */
#ifndef PGSIM_JIT_H
#define PGSIM_JIT_H
#include "types.h"

static inline u64 jit_rewrite_and_call(volatile u8 *code, u64 iters) {
    u32 (*fn)(void) = (u32 (*)(void))(u64)code;
    u64 sum = 0;
    for (u64 i = 0; i < iters; i++) {
        u32 imm = (u32)(i * 7 + 1), imm2 = (u32)i ^ 0x5A5A5A5Au;
        code[0] = 0xB8; /* mov $imm32, %eax */
        for (int b = 0; b < 4; b++)
            code[1 + b] = (u8)(imm >> (8 * b));
        code[5] = (i & 1) ? 0x05 : 0x35; /* add or xor $imm32, %eax */
        for (int b = 0; b < 4; b++)
            code[6 + b] = (u8)(imm2 >> (8 * b));
        code[10] = 0xC3; /* ret */
        __asm__ volatile("" ::: "memory");
        sum = sum * 3 + fn();
    }
    return sum;
}

#endif

#include "base/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <stdint.h>

static uint64_t xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* bit 0: AVX512-BF16, bit 1: AMX-BF16 */
static int bf16_bits(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; /* OSXSAVE */
    uint64_t x = xcr0();
    int bits = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        int avx512f = (b >> 16) & 1, amx_bf16 = (d >> 22) & 1, amx_tile = (d >> 24) & 1;
        unsigned a1, b1, c1, d1;
        int avx512_bf16 = __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) && ((a1 >> 5) & 1);
        /* opmask, upper ZMM halves and ZMM16-31 saved by the OS (XCR0 bits 5-7) */
        if (avx512f && avx512_bf16 && (x & 0xe6) == 0xe6) bits |= 1;
        /* tile config and data (XCR0 bits 17-18) */
        if (amx_bf16 && amx_tile && (x & 0x60000) == 0x60000) bits |= 2;
    }
    return bits;
}
#else
static int bf16_bits(void) { return 0; }
#endif

int cast_cpu_has_bf16(void) { return bf16_bits() != 0; }

const char *cast_cpu_bf16_name(void) {
    static const char *const names[] = {"none", "AVX512-BF16", "AMX-BF16", "AVX512-BF16 AMX-BF16"};
    return names[bf16_bits()];
}

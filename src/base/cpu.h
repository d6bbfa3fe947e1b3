/* What the CPU can do, asked once (cpuid and the OS's saved-state mask). */
#ifndef CAST_BASE_CPU_H
#define CAST_BASE_CPU_H

/* 1 when bf16 dot products run in hardware: AVX512-BF16 (with AVX-512
 * enabled by the OS) or AMX-BF16 (tile state enabled by the OS). */
int cast_cpu_has_bf16(void);
/* "AVX512-BF16", "AMX-BF16", "AVX512-BF16 AMX-BF16" or "none" (static string). */
const char *cast_cpu_bf16_name(void);

#endif

/* bfloat16 <-> float32 for the kernels of this folder, as torch converts: widening is exact, narrowing rounds to
 * nearest-even and keeps a NaN a quiet NaN. Branch-free, so that loops calling them vectorize. */
#ifndef SIAN_BF16_H
#define SIAN_BF16_H
#include <stdint.h>

typedef uint16_t bf16_t;

static inline float bf16_to_float(bf16_t h) {
    union { uint32_t u; float f; } v = {.u = (uint32_t)h << 16};
    return v.f;
}

static inline bf16_t float_to_bf16(float f) {
    union { float f; uint32_t u; } v = {.f = f};
    uint32_t rounded = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16;
    return (bf16_t)((v.u & 0x7fffffffu) > 0x7f800000u ? (v.u >> 16) | 0x40 : rounded);
}
#endif

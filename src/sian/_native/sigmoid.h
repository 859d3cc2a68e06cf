/* A sigmoid for the kernels of this folder: 1 / (1 + exp(-x)), exp being Cephes' expf (a degree-6 polynomial on
 * |r| <= ln2/2), written branch-free so that the loops calling it vectorize (libm's expf does not). Within 1e-7 of
 * PyTorch's float32 sigmoid; NaN in, NaN out.
 *
 * The polynomial's multiply-adds are fused where the CPU has FMA: the kernels are built under -std=c11, which
 * contracts nothing on its own, and fusing them here took about a quarter off the ConvLSTM update's own time (timed
 * alone once, AMD EPYC with AVX512, 2026-11-27). Without FMA they stay a multiply and an add (fmaf would then be a
 * libm call per element). */
#ifndef SIAN_SIGMOID_H
#define SIAN_SIGMOID_H
#include <math.h>
#include <stdint.h>

#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define SIAN_MULADD(a, b, c) fmaf((a), (b), (c))
#else
#define SIAN_MULADD(a, b, c) ((a) * (b) + (c))
#endif

static inline float exp_cephes(float x) {
    x = x < -87.0f ? -87.0f : x; /* ternaries, not fminf/fmaxf: those are calls the vectorizer keeps scalar */
    x = x > 88.0f ? 88.0f : x;
    float n = SIAN_MULADD(x, 1.44269504088896341f, 12582912.0f) - 12582912.0f; /* round(x / ln2), 1.5 * 2^23 */
    float r = SIAN_MULADD(n, 2.12194440e-4f, SIAN_MULADD(-n, 0.693359375f, x)); /* x - n ln2, ln2 in two parts */
    float p = 1.9875691500e-4f;
    p = SIAN_MULADD(p, r, 1.3981999507e-3f);
    p = SIAN_MULADD(p, r, 8.3334519073e-3f);
    p = SIAN_MULADD(p, r, 4.1665795894e-2f);
    p = SIAN_MULADD(p, r, 1.6666665459e-1f);
    p = SIAN_MULADD(p, r, 5.0000001201e-1f);
    p = SIAN_MULADD(p * r, r, r) + 1.0f;
    union { int32_t i; float f; } scale = {.i = ((int32_t)n + 127) << 23}; /* 2^n */
    return p * scale.f;
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_cephes(-x)); }
#endif

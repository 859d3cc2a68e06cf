/* Fused difference-of-Gaussian octave for SIAN's release kernels (3x3, zero padding), channels_last float32.
 *
 * Why by hand: PyTorch runs each 3x3 depthwise blur and each difference as its own pass over a 20 MB map, so
 * a full-resolution octave reads and writes ~0.5 GB and is memory-bound (31 ms a stage at 481x321). No
 * library fuses a chain of blurs with their differences. Here the L Gaussian images advance row by row
 * through ring buffers of three rows each, so every intermediate row is produced, used and dropped while
 * it is in cache; only the input, the DoG stack and the next octave's seed touch memory.
 *
 * Layout: a map (H, W, C) is channels_last, a row is W * C contiguous floats, the 3x3 neighbour of element
 * x on the same row is x - C or x + C. Rows outside the image are zeros (zero padding of every blur).
 *
 * bf16 (autocast inference): the input map and the stack may be bfloat16. The blurs and differences are still
 * computed in float32 (input rows widened on the way in, each difference rounded to nearest-even on the way
 * out), so a bf16 stack is exactly the float32 kernel's stack of the widened map, rounded once; the seeds of
 * later octaves stay float32. Halving the stack's bytes is what pays: the pyramid is memory-bound.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"

static inline int64_t element_bytes(int bf16) { return bf16 ? (int64_t)sizeof(bf16_t) : (int64_t)sizeof(float); }

#if defined(__AVX__)
#include <immintrin.h>
#endif

static void blur_row(const float *restrict a, const float *restrict b, const float *restrict c,
                     const float *k, float *restrict out, int64_t W, int64_t C) {
    const int64_t n = W * C;
    const float k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5], k6 = k[6], k7 = k[7], k8 = k[8];
    if (W == 1) {
        for (int64_t x = 0; x < n; ++x) out[x] = k1 * a[x] + k4 * b[x] + k7 * c[x];
        return;
    }
    for (int64_t x = 0; x < C; ++x)  /* first pixel: no left neighbour */
        out[x] = k1 * a[x] + k2 * a[x + C] + k4 * b[x] + k5 * b[x + C] + k7 * c[x] + k8 * c[x + C];
    for (int64_t x = C; x < n - C; ++x)
        out[x] = k0 * a[x - C] + k1 * a[x] + k2 * a[x + C]
               + k3 * b[x - C] + k4 * b[x] + k5 * b[x + C]
               + k6 * c[x - C] + k7 * c[x] + k8 * c[x + C];
    for (int64_t x = n - C; x < n; ++x)  /* last pixel: no right neighbour */
        out[x] = k0 * a[x - C] + k1 * a[x] + k3 * b[x - C] + k4 * b[x] + k6 * c[x - C] + k7 * c[x];
}

/* One row's differences p - q (W pixels of C channels) into the stack, float32 or (bf16) bfloat16; pixel w goes
 * to dst + w * stride elements. */
static void store_differences(const float *restrict p, const float *restrict q, void *dst, int bf16, int64_t W,
                              int64_t C, int64_t stride) {
#if defined(__AVX__)
    /* Streaming stores: the 100 MB stack is read back by the attention convolution from memory anyway (it
     * outgrows the cache), so skip reading each line in before overwriting it (~10-40% here). */
    if (!bf16 && C % 8 == 0 && ((uintptr_t)dst % 32) == 0) {
        for (int64_t w = 0; w < W; ++w)
            for (int64_t c = 0; c < C; c += 8)
                _mm256_stream_ps((float *)dst + w * stride + c,
                                 _mm256_sub_ps(_mm256_loadu_ps(p + w * C + c), _mm256_loadu_ps(q + w * C + c)));
        return;
    }
#endif
#if defined(__AVX512BF16__) && defined(__AVX512VL__)
    /* The CPUs that run bf16 natively round 8 floats at once (to nearest even, NaN kept), streamed likewise:
     * without streaming, a bf16 stack was no faster than PyTorch's bf16 operations. */
    if (bf16 && C % 8 == 0 && ((uintptr_t)dst % 16) == 0) {
        for (int64_t w = 0; w < W; ++w)
            for (int64_t c = 0; c < C; c += 8) {
                const __m256 diff = _mm256_sub_ps(_mm256_loadu_ps(p + w * C + c), _mm256_loadu_ps(q + w * C + c));
                const __m128bh h = _mm256_cvtneps_pbh(diff);
                _mm_stream_si128((__m128i *)((bf16_t *)dst + w * stride + c), (__m128i)h);
            }
        return;
    }
#endif
    for (int64_t w = 0; w < W; ++w) {
        const float *a = p + w * C, *b = q + w * C;
        if (bf16) {
            bf16_t *d = (bf16_t *)dst + w * stride;
            for (int64_t c = 0; c < C; ++c) d[c] = float_to_bf16(a[c] - b[c]);
        } else {
            float *d = (float *)dst + w * stride;
            for (int64_t c = 0; c < C; ++c) d[c] = a[c] - b[c];
        }
    }
}

/* Rows [s0, s1) of one octave of one image (sian_dog_octave shares the rows of a batch among threads).
 * x: the octave's input (H, W, C), float32 or (x_bf16) bfloat16; kernels: L 3x3 kernels (row-major),
 *   image l = blur(image l-1, kernel l) with image -1 = x (an identity kernel 0 makes image 0 the input itself);
 * stack: (H, W, (L-1) * C), float32 or (stack_bf16) bfloat16, difference l = image l+1 - image l in channels
 *   [l*C, (l+1)*C);
 * seed: NULL, or (H/2, W/2, C) float32 receiving the 2x2 max-pool of image `seed_level` (rows of [s0, s1) only).
 * Returns 0, or -1 if the ring buffers could not be allocated. */
static int dog_rows(const void *x, int x_bf16, int64_t H, int64_t W, int64_t C, const float *kernels, int64_t L,
                    int64_t seed_level, int64_t s0, int64_t s1, void *stack, int stack_bf16, float *seed) {
    const int64_t n = W * C, depth = L - 1, Hs = H / 2, Ws = W / 2;
    /* L images' rings, a zero row, and (bf16 input) a ring of the input's rows widened to float32 */
    float *ring = malloc(sizeof(float) * (size_t)(L * 3 + 1 + (x_bf16 ? 3 : 0)) * (size_t)n);
    if (!ring) return -1;
    float *zero = ring + L * 3 * n, *widened = zero + n;
    memset(zero, 0, sizeof(float) * (size_t)n);
#define SLOT(r) ((((r) % 3) + 3) % 3)  /* row r's place in a three-row ring (r may be negative) */
#define RING(l, r) (ring + ((l) * 3 + SLOT(r)) * n)
#define INPUT_ROW(r) (x_bf16 ? widened + SLOT(r) * n : (const float *)x + (r) * n)
#define INPUT(l, r) ((r) < 0 || (r) >= H ? zero : ((l) < 0 ? INPUT_ROW(r) : RING(l, r)))
    /* Image l row r needs image l-1 rows r-1..r+1, so image l lags image l-1 by one row: at step t image l
     * computes row t - l, over the rows [s0 - (depth - l), s1 + (depth - l)) that the last image's rows
     * [s0, s1) depend on. */
    for (int64_t t = s0 - depth; t < s1 + depth; ++t) {
        if (x_bf16) {  /* image 0 computes row t from input rows t-1..t+1: widen the ones it has not seen */
            for (int64_t r = (t == s0 - depth ? t - 1 : t + 1); r <= t + 1; ++r) {
                if (r < 0 || r >= H) continue;
                const bf16_t *in = (const bf16_t *)x + r * n;
                float *out = widened + SLOT(r) * n;
                for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(in[i]);
            }
        }
        for (int64_t l = 0; l < L; ++l) {
            const int64_t r = t - l;
            if (r < 0 || r >= H || r < s0 - (depth - l) || r >= s1 + (depth - l)) continue;
            float *out = RING(l, r);
            blur_row(INPUT(l - 1, r - 1), INPUT(l - 1, r), INPUT(l - 1, r + 1), kernels + 9 * l, out, W, C);
            if (r < s0 || r >= s1) continue;
            if (l >= 1)
                store_differences(out, RING(l - 1, r),
                                  (char *)stack + (r * W * depth * C + (l - 1) * C) * element_bytes(stack_bf16),
                                  stack_bf16, W, C, depth * C);
            if (seed && l == seed_level && (r & 1) && r / 2 < Hs) {
                const float *up = RING(l, r - 1);
                float *dst = seed + (r / 2) * Ws * C;
                for (int64_t w = 0; w < Ws; ++w) {
                    for (int64_t c = 0; c < C; ++c) {
                        const int64_t i = 2 * w * C + c, j = i + C;
                        float m = up[i] > up[j] ? up[i] : up[j];
                        m = out[i] > m ? out[i] : m;
                        dst[w * C + c] = out[j] > m ? out[j] : m;
                    }
                }
            }
        }
    }
#undef INPUT
#undef INPUT_ROW
#undef RING
#undef SLOT
    free(ring);
#if defined(__AVX__)
    _mm_sfence();  /* the streamed stores reach memory before the caller reads the stack */
#endif
    return 0;
}

/* One octave of a batch of B maps: (B, H, W, C) in, stacks (B, H, W, (L-1) C) and seeds (B, H/2, W/2, C) out;
 * x_bf16 / stack_bf16 say that the input / the stack are bfloat16 (else float32; seeds are float32).
 * The rows are shared among OpenMP's threads in bands. Built with -fopenmp, this library uses the OpenMP
 * runtime PyTorch has already loaded (the same libgomp.so.1), so its threads are the ones PyTorch's
 * operations run on: no second pool competes for the cores. `threads` is torch.get_num_threads() (OpenMP's
 * own setting is per calling thread). Returns 0, or -1 if a band could not allocate its ring buffers. */
int sian_dog_octave(const void *x, int x_bf16, int64_t B, int64_t H, int64_t W, int64_t C, const float *kernels,
                    int64_t L, int64_t seed_level, void *stack, int stack_bf16, float *seed, int64_t threads) {
    if (threads < 1) threads = 1;
    int64_t bands = H / 16 < threads ? H / 16 : threads;  /* each band recomputes a few rows at its edges */
    if (bands < 1) bands = 1;
    const int64_t in_size = H * W * C, stack_size = H * W * (L - 1) * C, seed_size = (H / 2) * (W / 2) * C;
    int failed = 0;
#pragma omp parallel for collapse(2) schedule(static) reduction(| : failed) num_threads((int)threads)
    for (int64_t b = 0; b < B; ++b)
        for (int64_t band = 0; band < bands; ++band)
            failed |= dog_rows((const char *)x + b * in_size * element_bytes(x_bf16), x_bf16, H, W, C, kernels, L,
                               seed_level, H * band / bands, H * (band + 1) / bands,
                               (char *)stack + b * stack_size * element_bytes(stack_bf16), stack_bf16,
                               seed ? seed + b * seed_size : NULL);
    return failed ? -1 : 0;
}

/* Two pointwise steps of SIAN's feature pyramid, for inference on channels_last maps, float32 or bfloat16.
 *
 * Why by hand: each is several PyTorch passes over full-resolution maps with nothing to fuse them on a CPU
 * (torch.compile fuses them but also PReNet's, and costs a compile per image size; oneDNN's post-ops are
 * reachable only through private operators). Measured: 1.012x a whole SIAN inference at 481x321 in fp32, 1.018x
 * in bf16 (the probe scripts/native_kernel_probe.py of commit 8c360b5).
 *
 * sian_attend: Eq. (3)'s F + F * sigmoid(A) in one pass, instead of an in-place sigmoid over A and an addcmul.
 *
 * sian_upsample_concat: the input of a coarse-to-fine fusion, concat(fine, pad(up(coarse))), written once into
 * its (B, H, W, 2C) buffer, instead of a bilinear upsampling (which PyTorch runs on one thread for a batch of
 * one), a zero pad to the fine size and a concatenation. The bilinear weights are PyTorch's, computed as its
 * channels_last kernel computes them (align_corners, float arithmetic in the same order; this file is built
 * without -ffast-math and, under -std=c11, without contracting a * b + c into an FMA), so float32 results are
 * within an ulp of PyTorch's (tests/test_models.py).
 *
 * bf16 (autocast): inputs are widened, everything computed in float32, each output rounded once to nearest-even
 * (PyTorch rounds the sigmoid's output before the product, and so lands farther from float32).
 */
#include <stdint.h>
#include <string.h>

#include "bf16.h"
#include "sigmoid.h"

/* out = f + f * sigmoid(a) over n elements (any layout, the same for all three). */
void sian_attend(const void *f, const void *a, void *out, int bf16, int64_t n, int threads) {
    const int64_t block = 4096;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t start = 0; start < n; start += block) {
        const int64_t end = start + block < n ? start + block : n;
        if (bf16) {
            const bf16_t *restrict fb = (const bf16_t *)f, *restrict ab = (const bf16_t *)a;
            bf16_t *restrict ob = (bf16_t *)out;
            for (int64_t i = start; i < end; ++i) {
                float x = bf16_to_float(fb[i]);
                ob[i] = float_to_bf16(x + x * sigmoid(bf16_to_float(ab[i])));
            }
        } else {
            const float *restrict ff = (const float *)f, *restrict af = (const float *)a;
            float *restrict of = (float *)out;
            for (int64_t i = start; i < end; ++i) of[i] = ff[i] + ff[i] * sigmoid(af[i]);
        }
    }
}

/* PyTorch's source index and weights for output index o of an align_corners resize from `in` to `out`
 * (area_pixel_compute_scale, guard_index_and_lambda and compute_source_index_and_lambda in UpSample.h). */
static inline void source(int64_t o, int64_t in, int64_t out, int64_t *i0, int64_t *i1, float *l0, float *l1) {
    const float scale = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    const float real = scale * (float)o;
    int64_t index = (int64_t)real; /* real >= 0: truncation is floor */
    index = index < in - 1 ? index : in - 1;
    float lambda = real - (float)index;
    lambda = lambda < 0.0f ? 0.0f : (lambda > 1.0f ? 1.0f : lambda);
    *i0 = index;
    *i1 = index < in - 1 ? index + 1 : index;
    *l1 = lambda;
    *l0 = 1.0f - lambda;
}

/* fine (B, H, W, C), coarse (B, h, w, C) -> out (B, H, W, 2C): channels [0, C) the fine map, [C, 2C) the coarse map
 * upsampled to (2h, 2w) with align_corners, placed at row top = (H - 2h) / 2 and column left = (W - 2w) / 2 of
 * zeros (F.pad's floor(d / 2) before, the rest after). Needs H >= 2h, W >= 2w. */
void sian_upsample_concat(const void *fine, const void *coarse, void *out, int bf16, int64_t B, int64_t H,
                          int64_t W, int64_t h, int64_t w, int64_t C, int threads) {
    const int64_t size = bf16 ? (int64_t)sizeof(bf16_t) : (int64_t)sizeof(float);
    const int64_t top = (H - 2 * h) / 2, left = (W - 2 * w) / 2;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t row = 0; row < B * H; ++row) {
        const int64_t b = row / H, y = row % H, uy = y - top;
        const char *fine_row = (const char *)fine + row * W * C * size;
        char *out_row = (char *)out + row * W * 2 * C * size;
        const int inside_rows = uy >= 0 && uy < 2 * h;
        int64_t y0 = 0, y1 = 0;
        float hl0 = 0.0f, hl1 = 0.0f;
        if (inside_rows) source(uy, h, 2 * h, &y0, &y1, &hl0, &hl1);
        const char *coarse_b = (const char *)coarse + b * h * w * C * size;
        for (int64_t x = 0; x < W; ++x) {
            char *o = out_row + x * 2 * C * size;
            memcpy(o, fine_row + x * C * size, (size_t)(C * size));
            const int64_t ux = x - left;
            if (!inside_rows || ux < 0 || ux >= 2 * w) {
                memset(o + C * size, 0, (size_t)(C * size));
                continue;
            }
            int64_t x0, x1;
            float wl0, wl1;
            source(ux, w, 2 * w, &x0, &x1, &wl0, &wl1);
            const float w00 = hl0 * wl0, w01 = hl0 * wl1, w10 = hl1 * wl0, w11 = hl1 * wl1;
            const int64_t p00 = (y0 * w + x0) * C, p01 = (y0 * w + x1) * C, p10 = (y1 * w + x0) * C,
                          p11 = (y1 * w + x1) * C;
            if (bf16) {
                bf16_t *restrict ob = (bf16_t *)o + C;
                const bf16_t *cb = (const bf16_t *)coarse_b;
                for (int64_t k = 0; k < C; ++k)
                    ob[k] = float_to_bf16(bf16_to_float(cb[p00 + k]) * w00 + (bf16_to_float(cb[p01 + k]) * w01
                                          + (bf16_to_float(cb[p10 + k]) * w10 + bf16_to_float(cb[p11 + k]) * w11)));
            } else {
                float *restrict of = (float *)o + C;
                const float *cf = (const float *)coarse_b;
                for (int64_t k = 0; k < C; ++k)
                    of[k] = cf[p00 + k] * w00 + (cf[p01 + k] * w01 + (cf[p10 + k] * w10 + cf[p11 + k] * w11));
            }
        }
    }
}

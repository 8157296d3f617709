/* mnist-edge int8 kernels: int32 accumulation of (x - x_zero) * w, then requantization as
 * onnxruntime's MLAS does it (float32 multiply, clamp, round half to even, zero point).
 * Feature maps are channels-last (HWC). C99, standard headers only, no libm, no malloc, no recursion.
 * Build without fast-math and with -ffp-contract=off: the proof of equality with onnxruntime
 * assumes IEEE float32 arithmetic evaluated in float (FLT_EVAL_METHOD 0). REQUANT_FIXED selects
 * the integer-only requantization instead. */
#include <stdint.h>

#if REQUANT_FIXED
/* Integer-only requantization for cores without an FPU (--requant fixed): scale = multiplier *
 * 2^-shift with a Q31 multiplier in [2^30, 2^31) (exact: a float32 scale has 24 significant
 * bits), one exact 64-bit product, one rounding (half up), clamp, zero point. */
typedef struct {
    int32_t multiplier;
    int32_t shift; /* 1 to 62 */
} scale_t;

static uint8_t requantize(int32_t acc, scale_t scale, int32_t zero) {
    const int64_t product = (int64_t)acc * scale.multiplier + ((int64_t)1 << (scale.shift - 1));
    int32_t q = (int32_t)(product >> scale.shift); /* arithmetic shift: floor, so half rounds up */
    if (q < -zero) q = -zero;
    if (q > 255 - zero) q = 255 - zero;
    return (uint8_t)(q + zero);
}
#else
#include <float.h>

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0 && FLT_EVAL_METHOD != -1
#error "mnist-edge needs float arithmetic evaluated in float (FLT_EVAL_METHOD 0), e.g. SSE, not x87"
#endif

typedef float scale_t;

/* Round half to even without libm: for |f| < 2^22, adding and subtracting 1.5 * 2^23 leaves the
 * integer that IEEE round-to-nearest-even gives (what _mm_cvtps_epi32 does in MLAS). */
static int32_t round_half_even(float f) {
    const float magic = 12582912.0f;
    float r = (f + magic) - magic;
    return (int32_t)r;
}

static uint8_t requantize(int32_t acc, scale_t scale, int32_t zero) {
    float f = (float)acc * scale;
    const float lo = (float)(0 - zero), hi = (float)(255 - zero);
    if (f < lo) f = lo; /* MLAS: max with the lower bound, then min with the upper one */
    if (f > hi) f = hi;
    return (uint8_t)(round_half_even(f) + zero);
}
#endif

#if NEED_CONV_POOL
/* Every output channel at one convolution position, requantized and folded into the running
 * maximum `best` (the max pooling; 0 is below every uint8). The input window is
 * first copied into `patch` (kh * kw * c bytes, in the weights' [kh][kw][c] order; maps are
 * channels-last, so each kernel row is one contiguous run), then each output channel is one dot
 * product of contiguous bytes, which compilers vectorize. `bias` holds bias - x_zero * sum(weights)
 * (folded at generation time), so the products are of raw uint8 values; a tap in the padding
 * reads x_zero, which the folded term cancels. */
static void conv_at(const uint8_t *x, int h, int w, int c, const int8_t *wt, const int32_t *bias,
                    const scale_t *scale, int m, int kh, int kw, int y0, int x0, uint8_t x_zero, int32_t y_zero,
                    uint8_t *patch, uint8_t *best) {
    const int taps = kh * kw * c;
    int o, i, j, k, n = 0;
    for (i = 0; i < kh; ++i) {
        const int y = y0 + i;
        for (j = 0; j < kw; ++j) {
            const int xx = x0 + j;
            const uint8_t *pixel = x + (y * w + xx) * c;
            const int inside = y >= 0 && y < h && xx >= 0 && xx < w;
            for (k = 0; k < c; ++k) patch[n++] = inside ? pixel[k] : x_zero;
        }
    }
    for (o = 0; o < m; ++o) {
        const int8_t *row = wt + o * taps;
        int32_t sum = bias[o];
        uint8_t v;
        for (k = 0; k < taps; ++k) sum += (int32_t)patch[k] * (int32_t)row[k];
        v = requantize(sum, scale[o], y_zero);
        if (v > best[o]) best[o] = v;
    }
}

/* Convolution followed by max pooling (pool 1 / stride 1 when there is none): each pooled value
 * is the maximum of its requantized convolution outputs, so the full convolution output never
 * exists. */
static void conv_pool(const uint8_t *x, int h, int w, int c, const int8_t *wt, const int32_t *bias,
                      const scale_t *scale, int m, int kh, int kw, int sy, int sx, int pt, int pl, int32_t x_zero,
                      int32_t y_zero, int pk, int ps, uint8_t *out, int out_h, int out_w) {
    uint8_t best[CONV_MAX_CHANNELS];
    uint8_t patch[CONV_MAX_TAPS];
    int o, py, px, i, j;
    for (py = 0; py < out_h; ++py) {
        for (px = 0; px < out_w; ++px) {
            for (o = 0; o < m; ++o) best[o] = 0;
            for (i = 0; i < pk; ++i) {
                for (j = 0; j < pk; ++j) {
                    conv_at(x, h, w, c, wt, bias, scale, m, kh, kw, (py * ps + i) * sy - pt,
                            (px * ps + j) * sx - pl, (uint8_t)x_zero, y_zero, patch, best);
                }
            }
            for (o = 0; o < m; ++o) out[(py * out_w + px) * m + o] = best[o];
        }
    }
}
#endif

#if NEED_MAX_POOL
static void max_pool(const uint8_t *x, int w, int c, int k, int s, uint8_t *out, int out_h, int out_w) {
    int ci, py, px, i, j;
    for (py = 0; py < out_h; ++py)
        for (px = 0; px < out_w; ++px)
            for (ci = 0; ci < c; ++ci) {
                uint8_t best = 0;
                for (i = 0; i < k; ++i)
                    for (j = 0; j < k; ++j) {
                        const uint8_t v = x[((py * s + i) * w + px * s + j) * c + ci];
                        if (v > best) best = v;
                    }
                out[(py * out_w + px) * c + ci] = best;
            }
}
#endif

#if NEED_GLOBAL_AVERAGE_POOL
/* QLinearGlobalAveragePool: the sum less x_zero per pixel, times x_scale / (y_scale * pixels). */
static void global_average_pool(const uint8_t *x, int c, int pixels, int32_t x_zero, scale_t scale, int32_t y_zero,
                                uint8_t *out) {
    int ci, i;
    for (ci = 0; ci < c; ++ci) {
        int32_t acc = -x_zero * pixels;
        for (i = 0; i < pixels; ++i) acc += x[i * c + ci]; /* channels-last */
        out[ci] = requantize(acc, scale, y_zero);
    }
}

#endif

#if NEED_GEMM
static void gemm(const uint8_t *x, int k, const int8_t *wt, const int32_t *bias, const scale_t *scale, int n,
                 int32_t x_zero, int32_t y_zero, uint8_t *out) {
    int o, i;
    for (o = 0; o < n; ++o) {
        int32_t acc = bias[o];
        for (i = 0; i < k; ++i) acc += ((int32_t)x[i] - x_zero) * (int32_t)wt[o * k + i];
        out[o] = requantize(acc, scale[o], y_zero);
    }
}
#endif

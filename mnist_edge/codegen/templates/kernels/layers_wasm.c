/* The layers' convolutions and dense layers with WebAssembly SIMD (128-bit, no relaxed SIMD, no
 * FMA: the same bits in every engine): four output channels across the lanes, four output
 * positions per pass. Four input bytes are broadcast and widened to 16 bits (x0..x3 twice), the
 * four channels' weights (16 int8, emit.blocked_weights) widened to two vectors of 16-bit lanes,
 * and i32x4.dot_i16x8_s adds products in pairs: each channel's sum is kept as two partial sums
 * (taps 0-1 and 2-3) and folded once at the end, exactly (int32, no saturation). Requantization
 * in float32 vectors with the scalar path's steps in its order: convert, multiply, clamp with
 * pmax/pmin (C's `f < lo ? lo : f`), round half to even (f32x4.nearest), zero point. */
#include <wasm_simd128.h>

typedef uint8_t patch_t; /* not used: these kernels read the map in place */
typedef int8_t weight_t;
#define ME_WEIGHTS(array) ((array).v)
#define ME_POSITIONS 4
#define ME_LANES 4

/* Four channels' partial sums for one position: {c0 taps 0-1, c0 taps 2-3, c1 ...} and c2, c3. */
typedef struct {
    v128_t low, high;
} pairs_t;

ME_INLINE pairs_t pairs_dot(pairs_t acc, const uint8_t *x, v128_t w_low, v128_t w_high) {
    const v128_t x16 = wasm_u16x8_extend_low_u8x16(wasm_v128_load32_splat(x));
    acc.low = wasm_i32x4_add(acc.low, wasm_i32x4_dot_i16x8(x16, w_low));
    acc.high = wasm_i32x4_add(acc.high, wasm_i32x4_dot_i16x8(x16, w_high));
    return acc;
}

/* The four channels' sums, each its two partial sums added, plus the bias. */
ME_INLINE v128_t pairs_sum(pairs_t acc, const int32_t *bias) {
    const v128_t even = wasm_i32x4_shuffle(acc.low, acc.high, 0, 2, 4, 6);
    const v128_t odd = wasm_i32x4_shuffle(acc.low, acc.high, 1, 3, 5, 7);
    return wasm_i32x4_add(wasm_v128_load(bias), wasm_i32x4_add(even, odd));
}

ME_INLINE void requantize_store(v128_t acc, const float *scale, int32_t zero, uint8_t *out, int count) {
    v128_t f = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(acc), wasm_v128_load(scale));
    v128_t q;
    uint8_t all[16];
    int i;
    f = wasm_f32x4_pmax(f, wasm_f32x4_splat((float)(0 - zero)));
    f = wasm_f32x4_pmin(f, wasm_f32x4_splat((float)(255 - zero)));
    q = wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(f)), wasm_i32x4_splat(zero));
    q = wasm_u8x16_narrow_i16x8(wasm_u16x8_narrow_i32x4(q, q), wasm_u16x8_narrow_i32x4(q, q));
    if (count == 4) {
        wasm_v128_store32_lane(out, q, 0);
        return;
    }
    wasm_v128_store(all, q);
    for (i = 0; i < count; ++i) out[i] = all[i];
}

/* The first group of channels o..o+3 in a layer's weights (their block, their lanes). */
ME_INLINE const weight_t *lane_weights(const weight_t *w, int o, int groups) {
    return w + (o / ME_BLOCK) * groups * ME_BLOCK * 4 + (o % ME_BLOCK) * 4;
}

/* acc[p] += ME_POSITIONS positions x four channels: position p reads kernel row i at rows[p][i] + at[p].
 * The four positions' sums are named variables, not an array: WebAssembly keeps them in locals
 * (registers), where an indexed array would live in linear memory. */
ME_INLINE void dot_positions(pairs_t *acc, const uint8_t *const *const *rows, const int *at, const weight_t *w,
                             int kh, int row_groups) {
    pairs_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];
    int i, g;
    for (i = 0; i < kh; ++i) {
        const uint8_t *x0 = rows[0][i] + at[0], *x1 = rows[1][i] + at[1];
        const uint8_t *x2 = rows[2][i] + at[2], *x3 = rows[3][i] + at[3];
        for (g = 0; g < row_groups; ++g, w += ME_BLOCK * 4) {
            const v128_t weights = wasm_v128_load(w);
            const v128_t low = wasm_i16x8_extend_low_i8x16(weights), high = wasm_i16x8_extend_high_i8x16(weights);
            s0 = pairs_dot(s0, x0 + 4 * g, low, high);
            s1 = pairs_dot(s1, x1 + 4 * g, low, high);
            s2 = pairs_dot(s2, x2 + 4 * g, low, high);
            s3 = pairs_dot(s3, x3 + 4 * g, low, high);
        }
    }
    acc[0] = s0;
    acc[1] = s1;
    acc[2] = s2;
    acc[3] = s3;
}

ME_INLINE void clear(pairs_t *acc) {
    int p;
    for (p = 0; p < ME_POSITIONS; ++p) acc[p].low = acc[p].high = wasm_i32x4_splat(0);
}

/* One output row of a convolution without pooling: ME_POSITIONS output positions per pass (the
 * row's last pass repeats its last position), four output channels at a time. */
ME_INLINE void conv_row(const uint8_t *const *rows, patch_t *patch, const weight_t *w, const int32_t *bias,
                        const scale_t *scale, int c, int kh, int kw, int sx, int m, int out_w, int32_t y_zero,
                        int small, uint8_t *out) {
    const int row_groups = (kw * c + 3) / 4, groups = kh * row_groups;
    const uint8_t *const *sets[ME_POSITIONS];
    int x, o, p, at[ME_POSITIONS];
    (void)patch;
    (void)small;
    for (p = 0; p < ME_POSITIONS; ++p) sets[p] = rows;
    for (x = 0; x < out_w; x += ME_POSITIONS) {
        for (p = 0; p < ME_POSITIONS; ++p) at[p] = min_int(x + p, out_w - 1) * sx * c;
        for (o = 0; o < m; o += ME_LANES) {
            pairs_t acc[ME_POSITIONS];
            clear(acc);
            dot_positions(acc, sets, at, lane_weights(w, o, groups), kh, row_groups);
            for (p = 0; p < ME_POSITIONS && x + p < out_w; ++p)
                requantize_store(pairs_sum(acc[p], bias + o), scale + o, y_zero, out + (x + p) * m + o,
                                 min_int(ME_LANES, m - o));
        }
    }
}

/* One output row of a convolution with the max pooling after it fused: the window's positions
 * ME_POSITIONS at a time (the last pass repeats its last position: the maximum does not mind),
 * the maximum taken on the int32 sums, one requantization per pooled output. */
ME_INLINE void conv_pool_row(const uint8_t *const *rows, patch_t *patch, int32_t *best, const weight_t *w,
                             const int32_t *bias, const scale_t *scale, int c, int kh, int kw, int sx, int m, int pk,
                             int ps, int out_w, int32_t y_zero, int small, uint8_t *out) {
    const int row_groups = (kw * c + 3) / 4, groups = kh * row_groups, window = pk * pk;
    const uint8_t *const *sets[ME_POSITIONS];
    int x, o, p, q, at[ME_POSITIONS];
    (void)patch;
    (void)best;
    (void)small;
    for (x = 0; x < out_w; ++x)
        for (o = 0; o < m; o += ME_LANES) {
            v128_t most = wasm_i32x4_splat(INT32_MIN);
            for (q = 0; q < window; q += ME_POSITIONS) {
                pairs_t acc[ME_POSITIONS];
                for (p = 0; p < ME_POSITIONS; ++p) {
                    const int at_window = min_int(q + p, window - 1);
                    sets[p] = rows + (at_window / pk) * kh;
                    at[p] = (x * ps + at_window % pk) * sx * c;
                }
                clear(acc);
                dot_positions(acc, sets, at, lane_weights(w, o, groups), kh, row_groups);
                for (p = 0; p < ME_POSITIONS; ++p) most = wasm_i32x4_max(most, pairs_sum(acc[p], bias + o));
            }
            requantize_store(most, scale + o, y_zero, out + x * m + o, min_int(ME_LANES, m - o));
        }
}

/* A dense layer over a flat input of `taps` bytes: four output channels at a time, the groups
 * split over ME_POSITIONS accumulators so the additions do not wait on each other. */
ME_INLINE void gemm(const uint8_t *x, const weight_t *w, const int32_t *bias, const scale_t *scale, int taps,
                    int n, int32_t y_zero, int small, uint8_t *out) {
    const int groups = (taps + 3) / 4;
    int o, g, p;
    (void)small;
    for (o = 0; o < n; o += ME_LANES) {
        const weight_t *wo = lane_weights(w, o, groups);
        pairs_t acc[ME_POSITIONS];
        clear(acc);
        for (g = 0; g < groups; ++g, wo += ME_BLOCK * 4) {
            const v128_t weights = wasm_v128_load(wo);
            acc[g % ME_POSITIONS] = pairs_dot(acc[g % ME_POSITIONS], x + 4 * g, wasm_i16x8_extend_low_i8x16(weights),
                                              wasm_i16x8_extend_high_i8x16(weights));
        }
        for (p = 1; p < ME_POSITIONS; ++p) {
            acc[0].low = wasm_i32x4_add(acc[0].low, acc[p].low);
            acc[0].high = wasm_i32x4_add(acc[0].high, acc[p].high);
        }
        requantize_store(pairs_sum(acc[0], bias + o), scale + o, y_zero, out + o, min_int(ME_LANES, n - o));
    }
}

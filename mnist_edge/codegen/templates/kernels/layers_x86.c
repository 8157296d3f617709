/* The layers' convolutions and dense layers with x86 SIMD (the technique of MLAS's and XNNPACK's
 * int8 kernels): output channels across the vector's 32-bit lanes, four output positions per
 * pass. Each group of 4 taps is one weight vector (16 channels x 4 int8, emit.blocked_weights)
 * used for every position, and 4 input bytes broadcast to every lane, read straight from the map
 * (no im2col patch): VPDPBUSD adds the four u8 x s8 products into each lane's int32, exactly.
 * AVX2 has no VPDPBUSD: VPMADDUBSW adds two products into 16 bits, exact while
 * 255 * (|w_a| + |w_b|) <= 32767 for every adjacent pair of taps (the 7-bit weights `quantize`
 * writes always are; the generator checks it, MNIST_EDGE_PAIRS_FIT_16), else one product at a
 * time. Requantization is vectorised with the very float32 steps of the scalar path, in its
 * order: convert, multiply, max, min, round half to even (the default rounding mode), zero point. */
#include <immintrin.h>

typedef uint8_t patch_t; /* not used: these kernels read the map in place */
typedef int8_t weight_t;
#define ME_WEIGHTS(array) ((array).v)
#define ME_POSITIONS 4

#if MNIST_EDGE_ISA == MNIST_EDGE_ISA_X86_AVX512VNNI
#define ME_LANES 16
typedef __m512i vint_t;
ME_INLINE vint_t v_load(const void *p) { return _mm512_loadu_si512(p); }
ME_INLINE vint_t v_splat(int32_t v) { return _mm512_set1_epi32(v); }
ME_INLINE vint_t v_max(vint_t a, vint_t b) { return _mm512_max_epi32(a, b); }
ME_INLINE vint_t v_add(vint_t a, vint_t b) { return _mm512_add_epi32(a, b); }
ME_INLINE vint_t v_dot(vint_t acc, uint32_t x4, vint_t w) {
    return _mm512_dpbusd_epi32(acc, _mm512_set1_epi32((int32_t)x4), w);
}
ME_INLINE void v_requantize_store(vint_t acc, const float *scale, int32_t zero, uint8_t *out, int count) {
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_loadu_ps(scale));
    __m512i q;
    f = _mm512_min_ps(_mm512_max_ps(f, _mm512_set1_ps((float)(0 - zero))), _mm512_set1_ps((float)(255 - zero)));
    q = _mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(zero));
    _mm_mask_storeu_epi8(out, (__mmask16)((1u << count) - 1u), _mm512_cvtepi32_epi8(q));
}
#else
#define ME_LANES 8
typedef __m256i vint_t;
ME_INLINE vint_t v_load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
ME_INLINE vint_t v_splat(int32_t v) { return _mm256_set1_epi32(v); }
ME_INLINE vint_t v_max(vint_t a, vint_t b) { return _mm256_max_epi32(a, b); }
ME_INLINE vint_t v_add(vint_t a, vint_t b) { return _mm256_add_epi32(a, b); }
#if MNIST_EDGE_ISA == MNIST_EDGE_ISA_X86_AVXVNNI && defined(__AVX512VNNI__) && defined(__AVX512VL__)
ME_INLINE vint_t v_dot(vint_t acc, uint32_t x4, vint_t w) { /* the EVEX form (AVX-512 VNNI + VL) */
    return _mm256_dpbusd_epi32(acc, _mm256_set1_epi32((int32_t)x4), w);
}
#elif MNIST_EDGE_ISA == MNIST_EDGE_ISA_X86_AVXVNNI
ME_INLINE vint_t v_dot(vint_t acc, uint32_t x4, vint_t w) { /* the VEX form (AVX-VNNI) */
    return _mm256_dpbusd_avx_epi32(acc, _mm256_set1_epi32((int32_t)x4), w);
}
#elif MNIST_EDGE_PAIRS_FIT_16
ME_INLINE vint_t v_dot(vint_t acc, uint32_t x4, vint_t w) {
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_set1_epi32((int32_t)x4), w); /* exact: checked */
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}
#else
ME_INLINE vint_t v_dot(vint_t acc, uint32_t x4, vint_t w) { /* one product per 16-bit sum: never saturates */
    const __m256i x = _mm256_set1_epi32((int32_t)x4), even = _mm256_set1_epi16(0x00FF);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i a = _mm256_maddubs_epi16(x, _mm256_and_si256(w, even));
    const __m256i b = _mm256_maddubs_epi16(x, _mm256_andnot_si256(even, w));
    return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(a, ones), _mm256_madd_epi16(b, ones)));
}
#endif
ME_INLINE void v_requantize_store(vint_t acc, const float *scale, int32_t zero, uint8_t *out, int count) {
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(scale));
    __m256i q;
    __m128i bytes;
    uint8_t all[16];
    int i;
    f = _mm256_min_ps(_mm256_max_ps(f, _mm256_set1_ps((float)(0 - zero))), _mm256_set1_ps((float)(255 - zero)));
    q = _mm256_add_epi32(_mm256_cvtps_epi32(f), _mm256_set1_epi32(zero));
    bytes = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    bytes = _mm_packus_epi16(bytes, bytes);
    if (count == 8) {
        _mm_storel_epi64((__m128i *)(void *)out, bytes);
        return;
    }
    _mm_storeu_si128((__m128i *)(void *)all, bytes);
    for (i = 0; i < count; ++i) out[i] = all[i];
}
#endif

/* The first group of lanes o..o+ME_LANES-1 in a layer's weights (their block, their lanes). */
ME_INLINE const weight_t *lane_weights(const weight_t *w, int o, int groups) {
    return w + (o / ME_BLOCK) * groups * ME_BLOCK * 4 + (o % ME_BLOCK) * 4;
}

/* acc[p] += the dot products of ME_POSITIONS positions with one vector of output channels:
 * position p reads kernel row i at rows[p][i] + at[p]. The four positions' sums are named
 * variables, so every compiler keeps them in registers. */
ME_INLINE void dot_positions(vint_t *acc, const uint8_t *const *const *rows, const int *at, const weight_t *w,
                             int kh, int row_groups) {
    vint_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];
    int i, g;
    for (i = 0; i < kh; ++i) {
        const uint8_t *x0 = rows[0][i] + at[0], *x1 = rows[1][i] + at[1];
        const uint8_t *x2 = rows[2][i] + at[2], *x3 = rows[3][i] + at[3];
        for (g = 0; g < row_groups; ++g, w += ME_BLOCK * 4) {
            const vint_t weights = v_load(w);
            s0 = v_dot(s0, load32(x0 + 4 * g), weights);
            s1 = v_dot(s1, load32(x1 + 4 * g), weights);
            s2 = v_dot(s2, load32(x2 + 4 * g), weights);
            s3 = v_dot(s3, load32(x3 + 4 * g), weights);
        }
    }
    acc[0] = s0;
    acc[1] = s1;
    acc[2] = s2;
    acc[3] = s3;
}

/* One output row of a convolution without pooling: ME_POSITIONS output positions per pass (the
 * row's last pass repeats its last position), every vector of output channels. */
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
            vint_t acc[ME_POSITIONS];
            for (p = 0; p < ME_POSITIONS; ++p) acc[p] = v_load(bias + o);
            dot_positions(acc, sets, at, lane_weights(w, o, groups), kh, row_groups);
            for (p = 0; p < ME_POSITIONS && x + p < out_w; ++p)
                v_requantize_store(acc[p], scale + o, y_zero, out + (x + p) * m + o, min_int(ME_LANES, m - o));
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
            vint_t most = v_splat(INT32_MIN);
            for (q = 0; q < window; q += ME_POSITIONS) {
                vint_t acc[ME_POSITIONS];
                for (p = 0; p < ME_POSITIONS; ++p) {
                    const int at_window = min_int(q + p, window - 1);
                    sets[p] = rows + (at_window / pk) * kh;
                    at[p] = (x * ps + at_window % pk) * sx * c;
                    acc[p] = v_load(bias + o);
                }
                dot_positions(acc, sets, at, lane_weights(w, o, groups), kh, row_groups);
                for (p = 0; p < ME_POSITIONS; ++p) most = v_max(most, acc[p]);
            }
            v_requantize_store(most, scale + o, y_zero, out + x * m + o, min_int(ME_LANES, m - o));
        }
}

/* A dense layer over a flat input of `taps` bytes: one vector of output channels at a time, the
 * groups split over ME_POSITIONS accumulators so the additions do not wait on each other. */
ME_INLINE void gemm(const uint8_t *x, const weight_t *w, const int32_t *bias, const scale_t *scale, int taps,
                    int n, int32_t y_zero, int small, uint8_t *out) {
    const int groups = (taps + 3) / 4;
    int o, g, p;
    (void)small;
    for (o = 0; o < n; o += ME_LANES) {
        const weight_t *wo = lane_weights(w, o, groups);
        vint_t acc[ME_POSITIONS];
        acc[0] = v_load(bias + o);
        for (p = 1; p < ME_POSITIONS; ++p) acc[p] = v_splat(0);
        for (g = 0; g < groups; ++g, wo += ME_BLOCK * 4)
            acc[g % ME_POSITIONS] = v_dot(acc[g % ME_POSITIONS], load32(x + 4 * g), v_load(wo));
        for (p = 1; p < ME_POSITIONS; ++p) acc[0] = v_add(acc[0], acc[p]);
        v_requantize_store(acc[0], scale + o, y_zero, out + o, min_int(ME_LANES, n - o));
    }
}

/* Dot products in portable C (any core: Cortex-M0/M3, hosts without SIMD). A patch holds two
 * output positions' input taps, copied from the map as bytes, per group of 4 taps position a's
 * then position b's; register blocking uses each input byte for two output channels and each
 * weight for two positions, so a multiply-add costs one load instead of two. A channel pair's
 * weights: 4 taps of each channel per group, a block's row apart (common.c). */
typedef uint8_t patch_t;
typedef int8_t weight_t;
#define ME_WEIGHTS(array) ((array).v)

/* Taps t..t+3 (t a multiple of 4) of position `slot` (0: a, 1: b), copied from the map. */
ME_INLINE void patch_load4(patch_t *patch, int t, int slot, const uint8_t *from) {
    patch_t *to = patch + 2 * t + 4 * slot;
    to[0] = from[0];
    to[1] = from[1];
    to[2] = from[2];
    to[3] = from[3];
}

#define ME_TAP_2X2(t)                                                          \
    {                                                                          \
        const int32_t xa_ = patch[t], xb_ = patch[4 + t], w0_ = w[t], w1_ = w[4 + t]; \
        a0 += xa_ * w0_;                                                       \
        a1 += xa_ * w1_;                                                       \
        b0 += xb_ * w0_;                                                       \
        b1 += xb_ * w1_;                                                       \
    }

/* acc {a0, a1, b0, b1} += positions a and b x channels 0 and 1 over `groups` groups of 4 taps. */
ME_INLINE void dot_2x2(const patch_t *patch, const weight_t *w, int groups, int32_t acc[4]) {
    int32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3];
    int g;
    for (g = groups; g > 0; --g, patch += 8, w += 4 * ME_BLOCK) {
        ME_TAP_2X2(0)
        ME_TAP_2X2(1)
        ME_TAP_2X2(2)
        ME_TAP_2X2(3)
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = b0;
    acc[3] = b1;
}

/* acc {0, 1} += one flat input x channels 0 and 1 over `groups` groups of 4 taps (a dense layer). */
ME_INLINE void dot_1x2(const uint8_t *x, const weight_t *w, int groups, int32_t acc[2]) {
    int32_t a0 = acc[0], a1 = acc[1];
    int g, t;
    for (g = 0; g < groups; ++g, x += 4, w += 4 * ME_BLOCK)
        for (t = 0; t < 4; ++t) {
            a0 += x[t] * w[t];
            a1 += x[t] * w[4 + t];
        }
    acc[0] = a0;
    acc[1] = a1;
}

/* The layers only some graphs have (residual blocks, activations other than ReLU, average pooling),
 * included in model.c only when its model has one of them. */

/* A float in [0, 255] rounded half to even, without libm: adding and subtracting 1.5 * 2^23
 * leaves the integer IEEE round-to-nearest-even gives. */
ME_INLINE uint8_t round_byte(float f) {
    const float magic = 12582912.0f;
    float r;
    if (f < 0.0f) f = 0.0f;
    if (f > 255.0f) f = 255.0f;
    r = (f + magic) - magic;
    return (uint8_t)(int32_t)r;
}

/* One row of a table layer (an elementwise function of one byte: LeakyRelu, Sigmoid, Tanh...). */
ME_INLINE void table_row(const uint8_t *in, const uint8_t *table, int count, uint8_t *out) {
    int i;
    for (i = 0; i < count; ++i) out[i] = table[in[i]];
}

/* One row of a QLinearAdd as onnxruntime's x86 kernel computes it: fma(a, ratio_a, t[b]), where
 * t[b] = fma(b, ratio_b, fixed) is the generator's table (codegen/add.py). Each fused
 * multiply-add is computed in double, where a byte times a float32 is exact and so is its sum with
 * a float32 of these magnitudes (proven on every pair of bytes at generation time), then rounded
 * once to float32; rounded half to even and saturated. B is the other map's row, or (per_channel)
 * one constant per channel. */
ME_INLINE void add_row(const uint8_t *a, const uint8_t *b, int per_channel, const float *t, float ratio_a, int c,
                       int w, uint8_t *out) {
    int x, ci;
    for (x = 0; x < w; ++x)
        for (ci = 0; ci < c; ++ci) {
            const int i = x * c + ci;
            const uint8_t bv = per_channel ? b[ci] : b[i];
            out[i] = round_byte((float)((double)a[i] * (double)ratio_a + (double)t[bv]));
        }
}

/* One output row of QLinearAveragePool (no padding) as onnxruntime's kernel computes it: every
 * input dequantized to float32 (x_scale * (x - x_zero)), summed row by row, divided by the count,
 * then y / y_scale + y_zero rounded half to even and saturated. */
ME_INLINE void average_pool_row(const uint8_t *const *rows, int c, int kh, int kw, int sw, int out_w, float x_scale,
                                int32_t x_zero, float y_scale, int32_t y_zero, int count, uint8_t *out) {
    int x, ci, i, j;
    for (x = 0; x < out_w; ++x)
        for (ci = 0; ci < c; ++ci) {
            float sum = 0.0f;
            for (i = 0; i < kh; ++i)
                for (j = 0; j < kw; ++j) sum += x_scale * (float)((int32_t)rows[i][(x * sw + j) * c + ci] - x_zero);
            sum = sum / (float)count;
            out[x * c + ci] = round_byte(sum / y_scale + (float)y_zero);
        }
}

/* The layers, one output row at a time, over maps stored channels-last (HWC) as rings of rows
 * (plan.py). Each is inlined into its step with constant shapes. A convolution's `bias` holds
 * bias - x_zero * sum(weights) (folded at generation time), so the products are of raw uint8
 * values; a padding tap holds x_zero, which the folded term cancels. */

/* The input rows one output row reads: rows[i * kh + j] is map row (row * ps + i) * sy - pt + j
 * of the window's i-th convolution row, in a ring of `ring` rows, or the padding row outside it. */
ME_INLINE void window_rows(const uint8_t **rows, const uint8_t *map, int ring, int stride, int height,
                           const uint8_t *pad_row, int row, int pk, int ps, int kh, int sy, int pt) {
    int i, j;
    for (i = 0; i < pk; ++i)
        for (j = 0; j < kh; ++j) {
            const int y = (row * ps + i) * sy - pt + j;
            rows[i * kh + j] = y < 0 || y >= height ? pad_row : map + (y % ring) * stride;
        }
}

/* One output row of a max pooling (no padding): rows are the k input rows it reads. */
ME_INLINE void max_pool_row(const uint8_t *const *rows, int c, int k, int s, int out_w, uint8_t *out) {
    int x, ci, i, j;
    for (x = 0; x < out_w; ++x)
        for (ci = 0; ci < c; ++ci) {
            uint8_t best = 0;
            for (i = 0; i < k; ++i)
                for (j = 0; j < k; ++j) {
                    const uint8_t v = rows[i][(x * s + j) * c + ci];
                    if (v > best) best = v;
                }
            out[x * c + ci] = best;
        }
}

/* QLinearGlobalAveragePool: the sum less x_zero per pixel, times x_scale / (y_scale * pixels). */
ME_INLINE void global_average_pool(const uint8_t *map, int stride, int h, int w, int c, int32_t x_zero,
                                   scale_t scale, int32_t y_zero, int small, uint8_t *out) {
    int ci, y, x;
    for (ci = 0; ci < c; ++ci) {
        int32_t acc = -x_zero * h * w;
        for (y = 0; y < h; ++y)
            for (x = 0; x < w; ++x) acc += map[y * stride + x * c + ci];
        out[ci] = requantize(acc, scale, y_zero, small);
    }
}

/* One row of the model's input: raw pixels through the table (normalization and quantization,
 * as onnxruntime computes them), written between the row's padding columns. */
ME_INLINE void input_row(const uint8_t *pixels, int row, int width, const uint8_t *table, uint8_t *out) {
    int i;
    for (i = 0; i < width; ++i) out[i] = table[pixels[row * width + i]];
}

/* The padding columns of every row of a ring, set to the map's zero point (by the step that writes
 * the map, before its first row). */
ME_INLINE void fill_padding(uint8_t *map, int rows, int stride, int left, int right, int width, int c,
                            uint8_t zero) {
    int r, i;
    for (r = 0; r < rows; ++r) {
        for (i = 0; i < left * c; ++i) map[r * stride + i] = zero;
        for (i = (left + width) * c; i < (left + width + right) * c; ++i) map[r * stride + i] = zero;
    }
}

/* The layers' convolutions and dense layers for the pair kernels (portable C, Cortex-M DSP):
 * two output positions x two output channels per pass over an im2col patch (dot_*.c). */

/* Channel pair o's weights (o even): in its block of 16 channels, its two channels' 4 taps of the
 * first group; the next group is a block's row further (ME_GROUP_STRIDE). */
#define PAIR_WEIGHTS(w, o, groups) \
    ((w) + (((o) / ME_BLOCK) * (groups) * ME_BLOCK * 4 + ((o) % ME_BLOCK) * 4) / (int)sizeof(weight_t))

/* One position's taps into its slot of a patch (0: position a, 1: b): kh kernel rows from x in
 * each row, each row's kw * c taps rounded up to whole groups of 4 and copied a word at a time.
 * The bytes past a row's taps (a first layer's 3 x 1 rows, say) meet zero weights; they are still
 * inside the arena or the padding row, which both end with a word to spare. */
ME_INLINE void load_patch(patch_t *patch, int slot, const uint8_t *const *rows, int x, int kh, int row_taps) {
    const int row_groups = (row_taps + 3) / 4;
    int i, g;
    for (i = 0; i < kh; ++i)
        for (g = 0; g < row_groups; ++g) patch_load4(patch, (i * row_groups + g) * 4, slot, rows[i] + x + 4 * g);
}

/* One output row of a convolution without pooling: output positions in pairs (an odd width's
 * last pair overlaps the one before it), each pair's patches loaded once for every output
 * channel pair. */
ME_INLINE void conv_row(const uint8_t *const *rows, patch_t *patch, const weight_t *w, const int32_t *bias,
                        const scale_t *scale, int c, int kh, int kw, int sx, int m, int out_w, int32_t y_zero,
                        int small, uint8_t *out) {
    const int groups = kh * ((kw * c + 3) / 4), pair = out_w > 1;
    int x, o;
    for (x = 0; x < out_w; x += 2) {
        const int xa = pair ? min_int(x, out_w - 2) : 0, xb = xa + pair;
        load_patch(patch, 0, rows, xa * sx * c, kh, kw * c);
        load_patch(patch, 1, rows, xb * sx * c, kh, kw * c);
        for (o = 0; o < m; o += 2) {
            int32_t acc[4];
            acc[0] = acc[2] = bias[o];
            acc[1] = acc[3] = bias[o + 1];
            dot_2x2(patch, PAIR_WEIGHTS(w, o, groups), groups, acc);
            out[xa * m + o] = requantize(acc[0], scale[o], y_zero, small);
            out[xb * m + o] = requantize(acc[2], scale[o], y_zero, small);
            if (o + 1 < m) {
                out[xa * m + o + 1] = requantize(acc[1], scale[o + 1], y_zero, small);
                out[xb * m + o + 1] = requantize(acc[3], scale[o + 1], y_zero, small);
            }
        }
    }
}

/* One output row of a convolution with the max pooling after it fused: each row of the window in
 * pairs of positions (an odd window's last pair overlaps: the maximum does not mind), the maximum
 * kept on the int32 accumulators in `best`, and one requantization per pooled output. Exact:
 * requantization never decreases as the accumulator grows (its scale is positive), so max then
 * requantize equals requantize then max. */
ME_INLINE void conv_pool_row(const uint8_t *const *rows, patch_t *patch, int32_t *best, const weight_t *w,
                             const int32_t *bias, const scale_t *scale, int c, int kh, int kw, int sx, int m, int pk,
                             int ps, int out_w, int32_t y_zero, int small, uint8_t *out) {
    const int groups = kh * ((kw * c + 3) / 4), pair = pk > 1;
    int x, o, i, j;
    for (x = 0; x < out_w; ++x) {
        for (o = 0; o < m + m % 2; ++o) best[o] = INT32_MIN;
        for (i = 0; i < pk; ++i)
            for (j = 0; j < pk; j += 2) {
                const int xa = (x * ps + (pair ? min_int(j, pk - 2) : 0)) * sx * c;
                load_patch(patch, 0, rows + i * kh, xa, kh, kw * c);
                load_patch(patch, 1, rows + i * kh, xa + pair * sx * c, kh, kw * c);
                for (o = 0; o < m; o += 2) {
                    int32_t acc[4];
                    acc[0] = acc[2] = bias[o];
                    acc[1] = acc[3] = bias[o + 1];
                    dot_2x2(patch, PAIR_WEIGHTS(w, o, groups), groups, acc);
                    best[o] = max_i32(best[o], max_i32(acc[0], acc[2]));
                    best[o + 1] = max_i32(best[o + 1], max_i32(acc[1], acc[3]));
                }
            }
        for (o = 0; o < m; ++o) out[x * m + o] = requantize(best[o], scale[o], y_zero, small);
    }
}

/* A dense layer over a flat input of `taps` bytes, output channels in pairs. */
ME_INLINE void gemm(const uint8_t *x, const weight_t *w, const int32_t *bias, const scale_t *scale, int taps,
                    int n, int32_t y_zero, int small, uint8_t *out) {
    const int groups = (taps + 3) / 4;
    int o, k;
    for (o = 0; o < n; o += 2) {
        int32_t acc[2];
        acc[0] = bias[o];
        acc[1] = bias[o + 1];
        dot_1x2(x, PAIR_WEIGHTS(w, o, groups), groups, acc);
        for (k = 0; k < 2 && o + k < n; ++k) out[o + k] = requantize(acc[k], scale[o + k], y_zero, small);
    }
}


/* step $index: $name, $in_shape -> $out_shape into $ring */
static int done$index;
ME_STEP void step$index(void) {
    const uint8_t *window[$kh];
    window_rows(window, $source_map, $source_ring, $source_stride, $source_height, 0, done$index, 1, $sh, $kh, 1, 0);
    average_pool_row(window, $c, $kh, $kw, $sw, $out_w, $x_scale, $x_zero, $y_scale, $y_zero, $count, $row);
    ++done$index;
}

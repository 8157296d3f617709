/* step $index: $name, $in_shape -> $out_shape into $ring */
static int done$index;
ME_STEP void step$index(void) {
    const uint8_t *window[$k];
    window_rows(window, $source_map, $source_ring, $source_stride, $source_height, 0, done$index, 1, $s, $k, 1, 0);
    max_pool_row(window, $c, $k, $s, $out_w, $row);
    ++done$index;
}

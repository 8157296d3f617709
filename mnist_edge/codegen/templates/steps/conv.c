/* step $index: $name, $in_shape -> $out_shape into $ring */
static int done$index;
ME_STEP void step$index(void) {
    const uint8_t *window[$window];
    window_rows(window, $source_map, $source_ring, $source_stride, $source_height, $pad_row, done$index, $pk, $ps, $kh,
                $sy, $pt);
    $call;
    ++done$index;
}

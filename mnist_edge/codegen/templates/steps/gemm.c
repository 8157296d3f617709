/* step $index: $name, $in_shape -> $out_shape into $ring */
static int done$index;
ME_STEP void step$index(void) {
    gemm($source_map, ME_WEIGHTS(w$index), b$index, s$index, $k, $n, $y_zero, $small, $row);
    ++done$index;
}

/* step $index: $name, $in_shape -> $out_shape into $ring */
static int done$index;
ME_STEP void step$index(void) {
    global_average_pool($source_map, $source_stride, $source_height, $source_width, $c, $x_zero, $scale, $y_zero,
                        $small, $row);
    ++done$index;
}

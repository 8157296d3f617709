/* step $index: $name, $in_shape -> $out_shape into $ring */
static int done$index;
ME_STEP void step$index(void) {
    add_row($a_row, $b_row, $constant, addt$index, $ratio_a, $c, $w, $row);
    ++done$index;
}

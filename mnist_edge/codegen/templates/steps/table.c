/* step $index: $name, $in_shape -> $out_shape into $ring */
static int done$index;
ME_STEP void step$index(void) {
    table_row($a_row, table$index, $count, $row);
    ++done$index;
}

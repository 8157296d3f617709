/* step $index: the input, $shape, quantized through the table into $ring */
static int done$index;
ME_STEP void step$index(void) {
    input_row(input_pixels, done$index, $width, input_table, $row);
    ++done$index;
}

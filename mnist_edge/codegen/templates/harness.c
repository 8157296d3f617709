/* mnist-edge host harness: raw images (784 bytes each) on stdin -> the scores of each on stdout.
 * With an argument REPEATS it instead times REPEATS passes over the images and prints the mean
 * nanoseconds per image; with "isa", it prints the kernel family the build chose. One translation
 * unit with the library (it includes model.c), built as `bench` builds it. Not part of the
 * generated library. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model.c"

int main(int argc, char **argv) {
    static uint8_t pixels[MNIST_EDGE_PIXELS];
    uint8_t scores[MNIST_EDGE_CLASSES];
    if (argc > 1 && argv[1][0] == 'i') {
        printf("%d\n", MNIST_EDGE_ISA);
        return 0;
    }
    if (argc > 1) {
        long repeats = strtol(argv[1], NULL, 10), count = 0, r, i;
        uint8_t *all = NULL;
        struct timespec start, stop;
        volatile int sink = 0;
        size_t capacity = 0;
        while (fread(pixels, 1, sizeof pixels, stdin) == sizeof pixels) {
            if ((size_t)(count + 1) * sizeof pixels > capacity) {
                capacity = capacity ? 2 * capacity : 64 * sizeof pixels;
                all = realloc(all, capacity);
                if (!all) return 3;
            }
            for (i = 0; i < (long)sizeof pixels; ++i) all[count * (long)sizeof pixels + i] = pixels[i];
            ++count;
        }
        if (!count || repeats < 1) return 2;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (r = 0; r < repeats; ++r)
            for (i = 0; i < count; ++i) sink += mnist_edge_predict(all + i * (long)sizeof pixels, scores);
        clock_gettime(CLOCK_MONOTONIC, &stop);
        (void)sink; /* only there so the calls are not optimized away */
        printf("%.1f\n", ((stop.tv_sec - start.tv_sec) * 1e9 + (stop.tv_nsec - start.tv_nsec)) / (double)(repeats * count));
        free(all);
        return 0;
    }
    while (fread(pixels, 1, sizeof pixels, stdin) == sizeof pixels) {
        mnist_edge_predict(pixels, scores);
        if (fwrite(scores, 1, sizeof scores, stdout) != sizeof scores) return 1;
    }
    return 0;
}

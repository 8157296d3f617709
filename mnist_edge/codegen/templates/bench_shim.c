/* mnist-edge: a generated C library as `bench` loads it (one translation unit: the shim includes
 * model.c). One call classifies `count` images back to back, so a batch costs one ctypes call, as
 * a batch costs onnxruntime one session run; `mnist_edge_bench_isa` says which kernels the build
 * chose. Not part of the generated library. */
#include "model.c"

int mnist_edge_bench_isa(void) { return MNIST_EDGE_ISA; }

int mnist_edge_bench_classes(void) { return MNIST_EDGE_CLASSES; }

void mnist_edge_bench_run(const uint8_t *pixels, int count, uint8_t *scores) {
    int i;
    for (i = 0; i < count; ++i)
        mnist_edge_predict(pixels + (long)i * MNIST_EDGE_PIXELS, scores + (long)i * MNIST_EDGE_CLASSES);
}

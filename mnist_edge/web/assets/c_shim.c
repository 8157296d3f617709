/* mnist-edge WebAssembly shim: what the page's JavaScript (engine_c.js) calls, compiled with the
 * generated model.c by `mnist-edge web --engine c` (mnist_edge/web/wasm.py). Not part of the C
 * library.
 *
 * There is no libc and so no allocator: the input and output buffers are static, and JavaScript
 * writes and reads them in the module's memory at the addresses exported here. The score zero
 * and scale come from model.h, so the page turns scores into logits with the very constants the
 * C library documents. */
#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* The page always hands over a 28 x 28 image: a library for anything else must not build. C99
 * has no _Static_assert, hence the array of negative size. */
typedef char mnist_edge_web_pixels_are_784[MNIST_EDGE_PIXELS == 784 ? 1 : -1];

static uint8_t pixels[MNIST_EDGE_PIXELS];
static uint8_t scores[MNIST_EDGE_CLASSES];

uint8_t *mnist_edge_web_pixels(void) { return pixels; }
uint8_t *mnist_edge_web_scores(void) { return scores; }
int mnist_edge_web_classes(void) { return MNIST_EDGE_CLASSES; }
int mnist_edge_web_score_zero(void) { return MNIST_EDGE_SCORE_ZERO; }
float mnist_edge_web_score_scale(void) { return MNIST_EDGE_SCORE_SCALE; }

/* 1 in the module built with WebAssembly SIMD (-msimd128): the page says which one it loaded. */
int mnist_edge_web_simd(void) {
#if defined(__wasm_simd128__)
    return 1;
#else
    return 0;
#endif
}

/* The digit (the first highest score); the scores land in the buffer above. */
int mnist_edge_web_predict(void) { return mnist_edge_predict(pixels, scores); }

/* The compiler may turn loops into calls of these even without libc (e.g. zeroing the pooling
 * maxima); WebAssembly 1.0 has no bulk-memory instructions to lower them to. The build is
 * freestanding (-ffreestanding implies -fno-builtin), so these loops stay loops, not calls to
 * themselves. */
void *memcpy(void *restrict dst, const void *restrict src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

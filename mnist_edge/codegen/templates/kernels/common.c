/* mnist-edge int8 kernels, shared by every target: inlining, the kernel family, word loads and
 * requantization. C99 with standard headers only: no libc calls, no libm, no malloc, no recursion.
 * Build without fast-math and with -ffp-contract=off: the proof of equality with onnxruntime
 * assumes IEEE float32 arithmetic evaluated in float (FLT_EVAL_METHOD 0). */
#include <stdint.h>

/* Every kernel is inlined into the step that calls it, so each layer's loops are compiled with
 * its own constant shapes (no shape arguments at run time, no padding code where it has none). */
/* Each step is a function of its own: a smaller function is one the compiler keeps in registers. */
#if defined(__GNUC__)
#define ME_INLINE static inline __attribute__((always_inline, unused))
#define ME_STEP static __attribute__((noinline))
#else
#define ME_INLINE static inline
#define ME_STEP static
#endif

/* The kernel family, chosen by the compiler's own macros; -DMNIST_EDGE_ISA=0 forces portable C. */
#define MNIST_EDGE_ISA_PORTABLE 0
#define MNIST_EDGE_ISA_ARM_DSP 1 /* Cortex-M4/M7/M33 DSP extension: SMLAD on pairs of 16-bit lanes */
#ifndef MNIST_EDGE_ISA
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && !defined(__ARM_BIG_ENDIAN)
#define MNIST_EDGE_ISA MNIST_EDGE_ISA_ARM_DSP
#else
#define MNIST_EDGE_ISA MNIST_EDGE_ISA_PORTABLE
#endif
#endif

/* Float requantization without an FPU: emulated exactly in integers (below) where the compiler
 * says there is no floating-point hardware; -DMNIST_EDGE_SOFT_FLOAT=1 forces it anywhere. */
#ifndef MNIST_EDGE_SOFT_FLOAT
#if (defined(__arm__) && !defined(__ARM_FP)) || (defined(__riscv) && !defined(__riscv_flen))
#define MNIST_EDGE_SOFT_FLOAT 1
#else
#define MNIST_EDGE_SOFT_FLOAT 0
#endif
#endif

ME_INLINE int32_t max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
ME_INLINE int min_int(int a, int b) { return a < b ? a : b; }

/* Four bytes as one little-endian word, at any alignment: one load where the target allows
 * unaligned loads (a call of memcpy where it does not, e.g. the Cortex-M0: bytes there). */
ME_INLINE uint32_t load32(const void *p) {
#if defined(__GNUC__) && (!defined(__arm__) || defined(__ARM_FEATURE_UNALIGNED))
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
#else
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
#endif
}

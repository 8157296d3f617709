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

/* Float requantization without an FPU: emulated exactly in integers (below) where the compiler
 * says there is no floating-point hardware; -DMNIST_EDGE_SOFT_FLOAT=1 forces it anywhere. */
#ifndef MNIST_EDGE_SOFT_FLOAT
#if (defined(__arm__) && !defined(__ARM_FP)) || (defined(__riscv) && !defined(__riscv_flen))
#define MNIST_EDGE_SOFT_FLOAT 1
#else
#define MNIST_EDGE_SOFT_FLOAT 0
#endif
#endif

/* The kernel family, chosen by the compiler's own macros; -DMNIST_EDGE_ISA=0 forces portable C.
 * The vector families requantize in float32 vectors: integer-only builds (--requant fixed, or
 * the integer float emulation) use the pair kernels. */
#define MNIST_EDGE_ISA_PORTABLE 0
#define MNIST_EDGE_ISA_ARM_DSP 1 /* Cortex-M4/M7/M33 DSP extension: SMLAD on pairs of 16-bit lanes */
#define MNIST_EDGE_ISA_X86_AVX2 2 /* VPMADDUBSW: u8 x s8 pairs into 16-bit sums */
#define MNIST_EDGE_ISA_X86_AVXVNNI 3 /* VPDPBUSD on 256-bit vectors (AVX-VNNI, or AVX-512 VNNI + VL) */
#define MNIST_EDGE_ISA_X86_AVX512VNNI 4 /* VPDPBUSD on 512-bit vectors */
#define MNIST_EDGE_ISA_WASM_SIMD128 5 /* WebAssembly SIMD: i32x4.dot_i16x8_s on widened lanes */
#ifndef MNIST_EDGE_ISA
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && !defined(__ARM_BIG_ENDIAN)
#define MNIST_EDGE_ISA MNIST_EDGE_ISA_ARM_DSP
#elif REQUANT_FIXED || MNIST_EDGE_SOFT_FLOAT
#define MNIST_EDGE_ISA MNIST_EDGE_ISA_PORTABLE
#elif defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define MNIST_EDGE_ISA MNIST_EDGE_ISA_X86_AVX512VNNI
#elif defined(__AVXVNNI__)
#define MNIST_EDGE_ISA MNIST_EDGE_ISA_X86_AVXVNNI
#elif defined(__AVX2__)
#define MNIST_EDGE_ISA MNIST_EDGE_ISA_X86_AVX2
#elif defined(__wasm_simd128__)
#define MNIST_EDGE_ISA MNIST_EDGE_ISA_WASM_SIMD128
#else
#define MNIST_EDGE_ISA MNIST_EDGE_ISA_PORTABLE
#endif
#endif
/* Kernels that work on two output positions x two output channels from an im2col patch. */
#define MNIST_EDGE_PAIR_KERNELS (MNIST_EDGE_ISA == MNIST_EDGE_ISA_PORTABLE || MNIST_EDGE_ISA == MNIST_EDGE_ISA_ARM_DSP)
#define MNIST_EDGE_X86_KERNELS (MNIST_EDGE_ISA >= MNIST_EDGE_ISA_X86_AVX2 && MNIST_EDGE_ISA <= MNIST_EDGE_ISA_X86_AVX512VNNI)

/* Weights are laid out for every family at once: [blocks of 16 output channels][groups of 4
 * taps][16 channels][4 taps] (emit.blocked_weights). A vector kernel reads a block's group as
 * one 64-byte vector (or two or four narrower ones); a pair kernel reads its two channels' words. */
#define ME_BLOCK 16

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

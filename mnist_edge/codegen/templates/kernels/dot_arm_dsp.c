/* Dot products with the Cortex-M DSP extension, the technique of CMSIS-NN's
 * arm_nn_mat_mult_kernel_s8_s16: a patch holds one output position's input taps widened once to
 * 16-bit lanes, two per 32-bit word (UXTB16), and each SMLAD adds two products. Four weights are
 * read with one load and widened with SXTB16; the odd bytes go to the second word of each pair,
 * for weights and patch alike, so no lane is ever swapped back. Two positions x two channels per
 * pass: 8 SMLAD for 16 multiply-adds. The sums are exact: uint8 and int8 fit 16-bit lanes, and
 * the generator proves the int32 accumulator cannot overflow. */
#include <arm_acle.h>

typedef uint32_t patch_t;  /* per group of 4 taps: {x0, x2} and {x1, x3} of position a, then of b */
typedef uint32_t weight_t; /* per group: 4 weights of channel 0, the next word 4 of channel 1 */
#define ME_WEIGHTS(array) ((array).words)

/* The odd bytes: GCC does not fold a rotate into UXTB16/SXTB16, so the rotated forms are asm. */
#if defined(__GNUC__)
ME_INLINE uint32_t uxtb16_odd(uint32_t x) {
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
ME_INLINE int32_t sxtb16_odd(uint32_t x) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#else
ME_INLINE uint32_t uxtb16_odd(uint32_t x) { return __uxtb16(x >> 8); }
ME_INLINE int32_t sxtb16_odd(uint32_t x) { return __sxtb16((int32_t)(x >> 8)); }
#endif

/* Taps t..t+3 (t a multiple of 4) of position `slot` (0: a, 1: b), from one word of the map. */
ME_INLINE void patch_load4(patch_t *patch, int t, int slot, const uint8_t *from) {
    const uint32_t word = load32(from);
    patch[t + 2 * slot] = __uxtb16(word);
    patch[t + 2 * slot + 1] = uxtb16_odd(word);
}

ME_INLINE void dot_2x2(const patch_t *patch, const weight_t *w, int groups, int32_t acc[4]) {
    int32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3];
    int g;
    for (g = groups; g > 0; --g, patch += 4, w += ME_BLOCK) {
        const int32_t xa_even = (int32_t)patch[0], xa_odd = (int32_t)patch[1];
        const int32_t xb_even = (int32_t)patch[2], xb_odd = (int32_t)patch[3];
        int32_t even = __sxtb16((int32_t)w[0]), odd = sxtb16_odd(w[0]);
        a0 = __smlad(xa_even, even, a0);
        a0 = __smlad(xa_odd, odd, a0);
        b0 = __smlad(xb_even, even, b0);
        b0 = __smlad(xb_odd, odd, b0);
        even = __sxtb16((int32_t)w[1]);
        odd = sxtb16_odd(w[1]);
        a1 = __smlad(xa_even, even, a1);
        a1 = __smlad(xa_odd, odd, a1);
        b1 = __smlad(xb_even, even, b1);
        b1 = __smlad(xb_odd, odd, b1);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = b0;
    acc[3] = b1;
}

/* A dense layer's input is read straight from the map (no reuse across positions to pay for a
 * patch): each word widened on the fly. */
ME_INLINE void dot_1x2(const uint8_t *x, const weight_t *w, int groups, int32_t acc[2]) {
    int32_t a0 = acc[0], a1 = acc[1];
    int g;
    for (g = groups; g > 0; --g, x += 4, w += ME_BLOCK) {
        const uint32_t word = load32(x);
        const int32_t even = (int32_t)__uxtb16(word), odd = (int32_t)uxtb16_odd(word);
        a0 = __smlad(even, __sxtb16((int32_t)w[0]), a0);
        a0 = __smlad(odd, sxtb16_odd(w[0]), a0);
        a1 = __smlad(even, __sxtb16((int32_t)w[1]), a1);
        a1 = __smlad(odd, sxtb16_odd(w[1]), a1);
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* Requantization: int32 accumulator -> uint8 output, in one of three arithmetics. */
#if REQUANT_FIXED
/* Integer-only requantization (--requant fixed): scale = multiplier * 2^-shift with a Q31
 * multiplier in [2^30, 2^31) (exact: a float32 scale has 24 significant bits), one exact 64-bit
 * product, one rounding (half up), clamp, zero point. Within one step of onnxruntime. */
typedef struct {
    int32_t multiplier;
    int32_t shift; /* 1 to 62 */
} scale_t;

ME_INLINE uint8_t requantize(int32_t acc, scale_t scale, int32_t zero, int small) {
    const int64_t product = (int64_t)acc * scale.multiplier + ((int64_t)1 << (scale.shift - 1));
    int32_t q = (int32_t)(product >> scale.shift); /* arithmetic shift: floor, so half rounds up */
    (void)small;
    if (q < -zero) q = -zero;
    if (q > 255 - zero) q = 255 - zero;
    return (uint8_t)(q + zero);
}
#elif MNIST_EDGE_SOFT_FLOAT
typedef float scale_t;

/* onnxruntime's float32 requantization, emulated exactly with integers for cores without an FPU
 * (Cortex-M0, M3): the same bits as the float path, at a fraction of libgcc's soft-float cost.
 * float32(acc) * scale is two roundings to 24 significant bits (half to even): |acc| to float,
 * where it has more than 24 bits (never in a layer whose accumulator bound the generator proved
 * below 2^24: `small`), then the exact 48-bit product with the scale's mantissa. That value is
 * rounded half to even to an integer and clamped: with integer bounds, clamping and rounding
 * commute. `scale` is a positive normal float32 (checked when the graph is read). */
ME_INLINE uint32_t float_bits(float f) {
    union {
        float f;
        uint32_t u;
    } pun;
    pun.f = f;
    return pun.u;
}

ME_INLINE int bit_length32(uint32_t v) {
#if defined(__GNUC__)
    return v ? 32 - __builtin_clz(v) : 0;
#else
    int n = 0;
    while (v) { ++n; v >>= 1; }
    return n;
#endif
}

/* v / 2^s, rounded half to even; 1 <= s <= 31. */
ME_INLINE uint32_t round_shift32(uint32_t v, int s) {
    const uint32_t q = v >> s, rest = v & ((1u << s) - 1u), half = 1u << (s - 1);
    return q + (uint32_t)(rest > half || (rest == half && (q & 1u)));
}

/* p (< 2^49) rounded to 24 significant bits: the mantissa q (<= 2^24) and how far it was shifted. */
ME_INLINE uint32_t round_to_float(uint64_t p, int *shifted) {
    const uint32_t hi = (uint32_t)(p >> 32);
    const int s = (hi ? 32 + bit_length32(hi) : bit_length32((uint32_t)p)) - 24;
    uint32_t q, rest, half;
    if (s <= 0) {
        *shifted = 0;
        return (uint32_t)p;
    }
    *shifted = s;
    q = (uint32_t)(p >> s);
    /* the dropped bits and half of 2^s fit 32 bits: s <= 25 */
    rest = (uint32_t)(p & ((((uint64_t)1) << s) - 1u));
    half = 1u << (s - 1);
    return q + (uint32_t)(rest > half || (rest == half && (q & 1u)));
}

/* A function, not inlined: at some 50 instructions, one copy is worth the call. */
ME_STEP uint8_t requantize(int32_t acc, scale_t scale, int32_t zero, int small) {
    const uint32_t bits = float_bits(scale);
    uint32_t a = acc < 0 ? 0u - (uint32_t)acc : (uint32_t)acc, q;
    int shift = 150 - (int)(bits >> 23), s; /* scale = mantissa * 2^-shift */
    int32_t v;
    if (acc < 0 && zero == 0) return 0; /* below the lower bound (a ReLU): nothing to round */
    if (!small && a > 0xFFFFFFu) {      /* (float)acc keeps 24 significant bits */
        s = bit_length32(a) - 24;
        a = round_shift32(a, s);
        shift -= s;
    }
    q = round_to_float((uint64_t)a * ((bits & 0x7FFFFFu) | 0x800000u), &s);
    shift -= s; /* the product is q * 2^-shift, q <= 2^24 */
    if (shift <= 0) q = 256u;           /* at least 2^23: clamped below */
    else if (shift > 26) q = 0u;        /* below 1/4: rounds to 0 */
    else q = round_shift32(q, shift);
    if (q > 256u) q = 256u;
    v = acc < 0 ? -(int32_t)q : (int32_t)q;
    if (v < -zero) v = -zero;
    if (v > 255 - zero) v = 255 - zero;
    return (uint8_t)(v + zero);
}
#else
#include <float.h>

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0 && FLT_EVAL_METHOD != -1
#error "mnist-edge needs float arithmetic evaluated in float (FLT_EVAL_METHOD 0), e.g. SSE, not x87"
#endif

typedef float scale_t;

/* Round half to even without libm: for |f| < 2^22, adding and subtracting 1.5 * 2^23 leaves the
 * integer that IEEE round-to-nearest-even gives (what _mm_cvtps_epi32 does in MLAS). */
ME_INLINE int32_t round_half_even(float f) {
    const float magic = 12582912.0f;
    float r = (f + magic) - magic;
    return (int32_t)r;
}

/* onnxruntime's requantization (MLAS MlasRequantizeOutput): float32(acc) * scale, max with the
 * lower bound, min with the upper one, round half to even, zero point. The value is clamped to
 * the uint8 range before the conversion, so no target's conversion ever traps or saturates. */
ME_INLINE uint8_t requantize(int32_t acc, scale_t scale, int32_t zero, int small) {
    float f = (float)acc * scale;
    const float lo = (float)(0 - zero), hi = (float)(255 - zero);
    (void)small;
    if (f < lo) f = lo;
    if (f > hi) f = hi;
    return (uint8_t)(round_half_even(f) + zero);
}
#endif

/* IEEE binary16 and bfloat16 conversions, bit-exact, round-to-nearest-even. */
#include "quantkit/common.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define QK_HAVE_F16C_PATH 1
#endif

static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float qk_fp16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) /* Inf / NaN: keep payload */
        return u2f(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return u2f(sign);
        /* subnormal: man * 2^-24, exact in float */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t qk_f32_to_fp16(float f)
{
    uint32_t u = f2u(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* Inf or NaN */
        return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? (0x200 | ((a >> 13) & 0x3ff)) : 0));
    if (a >= 0x477ff000u) /* rounds to >= 65520: overflow to Inf */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (a < 0x33000000u) /* < 2^-25: rounds to zero (2^-25 exactly ties to even = 0) */
            return sign;
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* value = m * 2^(e-150); half sub unit 2^-24 -> shift = 126-e */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent, round mantissa 23 -> 10 bits to nearest even */
    uint32_t r = a - 0x38000000u; /* exponent -112 */
    uint32_t q = r >> 13;
    uint32_t rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1)))
        q++;
    return (uint16_t)(sign | q);
}

float qk_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t qk_f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static void fp16_to_f32_row_ref(const uint16_t *src, float *dst, int64_t n)
{
    const uint8_t *s = (const uint8_t *)src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = qk_fp16_to_f32(qk_rd_u16(s + 2 * i));
}

static void f32_to_fp16_row_ref(const float *src, uint16_t *dst, int64_t n)
{
    uint8_t *d = (uint8_t *)dst;
    for (int64_t i = 0; i < n; i++)
        qk_wr_u16(d + 2 * i, qk_f32_to_fp16(src[i]));
}

#ifdef QK_HAVE_F16C_PATH
/* vcvtps2ph with round-to-nearest-even: bit-identical to qk_f32_to_fp16 for
 * all 2^32 inputs, NaNs included (checked exhaustively). x86 is little-endian,
 * so the stores match qk_wr_u16's byte order. */
__attribute__((target("avx2,f16c"))) static void f32_to_fp16_row_f16c(const float *src, uint16_t *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    f32_to_fp16_row_ref(src + i, dst + i, n - i);
}

/* vcvtph2ps: exact, subnormal halves included, so bit-identical to
 * qk_fp16_to_f32 -- except that it quiets a signalling NaN, whose payload
 * qk_fp16_to_f32 keeps: groups of 8 holding an Inf or NaN take the scalar
 * code. (Checked for all 2^16 inputs: tests/test_common.c.) */
__attribute__((target("avx2,f16c"))) static void fp16_to_f32_row_f16c(const uint16_t *src, float *dst, int64_t n)
{
    const __m128i exp_mask = _mm_set1_epi16(0x7c00);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        if (_mm_movemask_epi8(_mm_cmpeq_epi16(_mm_and_si128(h, exp_mask), exp_mask)))
            fp16_to_f32_row_ref(src + i, dst + i, 8);
        else
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    fp16_to_f32_row_ref(src + i, dst + i, n - i);
}
#endif

/* 1 when the CPU has AVX2 and F16C. F16C from CPUID: clang before 16 has
 * no "f16c" in __builtin_cpu_supports. */
static int cpu_has_avx2_f16c(void)
{
#ifdef QK_HAVE_F16C_PATH
    unsigned a, b, c, d;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
#else
    return 0;
#endif
}

typedef void (*fp16_to_f32_row_fn)(const uint16_t *, float *, int64_t);

static fp16_to_f32_row_fn pick_fp16_to_f32_row(void)
{
#ifdef QK_HAVE_F16C_PATH
    if (cpu_has_avx2_f16c())
        return fp16_to_f32_row_f16c;
#endif
    return fp16_to_f32_row_ref;
}

void qk_fp16_to_f32_row(const uint16_t *src, float *dst, int64_t n)
{
    static _Atomic(fp16_to_f32_row_fn) fn;
    fp16_to_f32_row_fn f = fn;
    if (!f)
        fn = f = pick_fp16_to_f32_row();
    f(src, dst, n);
}

typedef void (*f32_to_fp16_row_fn)(const float *, uint16_t *, int64_t);

/* The row converter for this CPU, chosen once. */
static f32_to_fp16_row_fn pick_f32_to_fp16_row(void)
{
#ifdef QK_HAVE_F16C_PATH
    if (cpu_has_avx2_f16c())
        return f32_to_fp16_row_f16c;
#endif
    return f32_to_fp16_row_ref;
}

void qk_f32_to_fp16_row(const float *src, uint16_t *dst, int64_t n)
{
    static _Atomic(f32_to_fp16_row_fn) fn;
    f32_to_fp16_row_fn f = fn;
    if (!f)
        fn = f = pick_f32_to_fp16_row();
    f(src, dst, n);
}

void qk_bf16_to_f32_row(const uint16_t *src, float *dst, int64_t n)
{
    /* a bf16 is the top half of a float. Blocks of 8 with native loads on
     * little-endian hosts, so that the compiler vectorizes it at -O2. */
    int64_t i = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i + 8 <= n; i += 8) {
        uint16_t h[8];
        uint32_t u[8];
        memcpy(h, src + i, sizeof h);
        for (int k = 0; k < 8; k++)
            u[k] = (uint32_t)h[k] << 16;
        memcpy(dst + i, u, sizeof u);
    }
#endif
    const uint8_t *s = (const uint8_t *)src;
    for (; i < n; i++)
        dst[i] = qk_bf16_to_f32(qk_rd_u16(s + 2 * i));
}

void qk_f32_to_bf16_row(const float *src, uint16_t *dst, int64_t n)
{
    uint8_t *d = (uint8_t *)dst;
    for (int64_t i = 0; i < n; i++)
        qk_wr_u16(d + 2 * i, qk_f32_to_bf16(src[i]));
}

/* Codecs of the 32-element ggml block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
 * and the non-linear 4-bit types (IQ4_NL, IQ4_XS). Layouts: ggml_blocks.h.
 *
 * Every decoder performs the float operations of llama.cpp's
 * dequantize_row_* in the same order, and every encoder those of the
 * llama.cpp encoder named at it, so output is bit-identical (this needs the
 * separate multiply and add of llama.cpp's x86-64 build: FMA contraction is
 * disabled below). Float -> int conversions that llama.cpp writes as plain casts go
 * through qk_blocks_trunc_* so out-of-range values (scales that overflow on
 * denormal input) stay defined and match x86 behaviour.
 */
/* Bit-exactness needs every a*b+c rounded twice, as llama.cpp's x86-64
 * build computes it: forbid FMA contraction whatever -march/-std say. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "ggml_blocks.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "quantkit/common.h"

#define GROUP_MAX_EPS 1e-15f

static inline float rd_half(const uint8_t *p) { return qk_fp16_to_f32(qk_rd_u16(p)); }
static inline void wr_half(uint8_t *p, float f) { qk_wr_u16(p, qk_f32_to_fp16(f)); }

/* The weighted paths (quantize_row_{q4_0,q4_1,q5_0,q5_1}_impl): sigma2 is the
 * mean square of the whole row (the call's n elements, llama.cpp's
 * n_per_row, summed in float in index order), and each element of a block
 * gets weight w = qw * sqrt(sigma2 + x^2). */
static float row_sigma2(const float *x, int64_t n)
{
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; ++j)
        sum_x2 += x[j] * x[j];
    return sum_x2 / (float)n;
}

static void block_weights(float *weight, const float *xb, const float *qw, float sigma2)
{
    for (int j = 0; j < 32; ++j)
        weight[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

/* The block minimum of the weighted Q4_1/Q5_1 paths is a least-squares
 * fit that can land past the fp16 range on data near +-65504, where
 * llama.cpp stores +-inf (a block that decodes to inf). Saturate instead:
 * the one place these encoders knowingly differ from llama.cpp's bytes. */
static void wr_half_sat(uint8_t *p, float f)
{
    wr_half(p, f > 65504.f ? 65504.f : f < -65504.f ? -65504.f : f);
}

/* Pack 32 5-bit codes: low nibbles in qs (element j low, j+16 high), 5th
 * bits at bit j / j+16 of qh (LE u32). */
static void pack_q5(uint8_t *qs, uint8_t *qh_out, const uint8_t *L)
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        const uint8_t xi0 = L[j];
        const uint8_t xi1 = L[j + 16];
        qs[j] = (uint8_t)((xi0 & 0x0f) | ((xi1 & 0x0f) << 4));
        qh |= ((xi0 & 0x10u) >> 4) << j;
        qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
    }
    qk_wr_u32(qh_out, qh);
}

/* ==================================================================== Q4_0
 * Scale d = max/-8 where max is the signed value of largest magnitude, so
 * that value maps exactly to code 0; codes q = min(15, trunc(x/d + 8.5)). */

void qk_blocks_q4_0_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % 32 == 0);
    const qk_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = rd_half(b[i].d);
        for (int j = 0; j < 16; j++) {
            const int x0 = (b[i].qs[j] & 0x0f) - 8;
            const int x1 = (b[i].qs[j] >> 4) - 8;
            dst[j] = x0 * d;
            dst[j + 16] = x1 * d;
        }
    }
}

/* Weighted: make_qx_quants(32, 8) with w = qw*sqrt(sigma2 + x^2); codes
 * L = l + 8 in [0, 15]. */
static void q4_0_row_imp(const float *x, qk_block_q4_0 *y, int64_t n, const float *qw)
{
    float weight[32];
    int8_t L[32];
    const float sigma2 = row_sigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float *xb = x + 32 * ib;
        block_weights(weight, xb, qw + 32 * ib, sigma2);
        const float d = qk_blocks_make_qx_quants(32, 8, xb, L, 1, weight);
        wr_half(y[ib].d, d);
        for (int j = 0; j < 16; ++j)
            y[ib].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void qk_blocks_q4_0_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    assert(n % 32 == 0);
    qk_block_q4_0 *y = dst;
    if (importance) {
        q4_0_row_imp(src, y, n, importance);
        return;
    }
    for (int64_t i = 0; i < n / 32; i++) {
        const float *x = src + 32 * i;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        wr_half(y[i].d, d);
        for (int j = 0; j < 16; j++) {
            int8_t q0 = qk_blocks_trunc_i8(x[j] * id + 8.5f);
            int8_t q1 = qk_blocks_trunc_i8(x[j + 16] * id + 8.5f);
            const uint8_t xi0 = (uint8_t)(q0 < 15 ? q0 : 15);
            const uint8_t xi1 = (uint8_t)(q1 < 15 ? q1 : 15);
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

/* ==================================================================== Q4_1
 * d = (max-min)/15, m = min; q = min(15, trunc((x-min)/d + 0.5)). */

void qk_blocks_q4_1_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % 32 == 0);
    const qk_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = rd_half(b[i].d);
        const float m = rd_half(b[i].m);
        for (int j = 0; j < 16; j++) {
            const int x0 = b[i].qs[j] & 0x0f;
            const int x1 = b[i].qs[j] >> 4;
            dst[j] = x0 * d + m;
            dst[j + 16] = x1 * d + m;
        }
    }
}

/* Weighted: make_qkx3_quants(32, 15) (scale and min by weighted least
 * squares over 37 trial scales); m = -the_min. */
static void q4_1_row_imp(const float *x, qk_block_q4_1 *y, int64_t n, const float *qw)
{
    float weight[32];
    uint8_t L[32], Laux[32];
    const float sigma2 = row_sigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float *xb = x + 32 * ib;
        block_weights(weight, xb, qw + 32 * ib, sigma2);
        float min;
        const float d = qk_blocks_make_qkx3_quants(32, 15, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, 0);
        wr_half(y[ib].d, d);
        wr_half_sat(y[ib].m, -min);
        for (int j = 0; j < 16; ++j)
            y[ib].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void qk_blocks_q4_1_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    assert(n % 32 == 0);
    qk_block_q4_1 *y = dst;
    if (importance) {
        q4_1_row_imp(src, y, n, importance);
        return;
    }
    for (int64_t i = 0; i < n / 32; i++) {
        const float *x = src + 32 * i;
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (x[j] < min)
                min = x[j];
            if (x[j] > max)
                max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        wr_half(y[i].d, d);
        wr_half(y[i].m, min);
        for (int j = 0; j < 16; j++) {
            int8_t q0 = qk_blocks_trunc_i8((x[j] - min) * id + 0.5f);
            int8_t q1 = qk_blocks_trunc_i8((x[j + 16] - min) * id + 0.5f);
            const uint8_t xi0 = (uint8_t)(q0 < 15 ? q0 : 15);
            const uint8_t xi1 = (uint8_t)(q1 < 15 ? q1 : 15);
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

/* ==================================================================== Q5_0
 * As Q4_0 with d = max/-16, q = min(31, trunc(x/d + 16.5)); the 5th bit of
 * element j goes to bit j of qh (LE u32). */

void qk_blocks_q5_0_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % 32 == 0);
    const qk_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = rd_half(b[i].d);
        const uint32_t qh = qk_rd_u32(b[i].qh);
        for (int j = 0; j < 16; j++) {
            const uint8_t xh0 = (uint8_t)(((qh >> j) << 4) & 0x10);
            const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            const int32_t x0 = ((b[i].qs[j] & 0x0f) | xh0) - 16;
            const int32_t x1 = ((b[i].qs[j] >> 4) | xh1) - 16;
            dst[j] = x0 * d;
            dst[j + 16] = x1 * d;
        }
    }
}

/* Weighted: make_qx_quants(32, 16); codes L = l + 16 in [0, 31]. */
static void q5_0_row_imp(const float *x, qk_block_q5_0 *y, int64_t n, const float *qw)
{
    float weight[32];
    int8_t L[32];
    uint8_t U[32];
    const float sigma2 = row_sigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float *xb = x + 32 * ib;
        block_weights(weight, xb, qw + 32 * ib, sigma2);
        const float d = qk_blocks_make_qx_quants(32, 16, xb, L, 1, weight);
        wr_half(y[ib].d, d);
        for (int j = 0; j < 32; ++j)
            U[j] = (uint8_t)L[j];
        pack_q5(y[ib].qs, y[ib].qh, U);
    }
}

void qk_blocks_q5_0_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    assert(n % 32 == 0);
    qk_block_q5_0 *y = dst;
    if (importance) {
        q5_0_row_imp(src, y, n, importance);
        return;
    }
    for (int64_t i = 0; i < n / 32; i++) {
        const float *x = src + 32 * i;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        wr_half(y[i].d, d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int8_t q0 = qk_blocks_trunc_i8(x[j] * id + 16.5f);
            int8_t q1 = qk_blocks_trunc_i8(x[j + 16] * id + 16.5f);
            const uint8_t xi0 = (uint8_t)(q0 < 31 ? q0 : 31);
            const uint8_t xi1 = (uint8_t)(q1 < 31 ? q1 : 31);
            y[i].qs[j] = (uint8_t)((xi0 & 0x0f) | ((xi1 & 0x0f) << 4));
            qh |= ((xi0 & 0x10u) >> 4) << j;
            qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
        }
        qk_wr_u32(y[i].qh, qh);
    }
}

/* ==================================================================== Q5_1
 * As Q4_1 with d = (max-min)/31 and q = trunc((x-min)/d + 0.5) (no clamp:
 * the largest value lands on 31 up to rounding, as in llama.cpp). */

void qk_blocks_q5_1_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % 32 == 0);
    const qk_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = rd_half(b[i].d);
        const float m = rd_half(b[i].m);
        const uint32_t qh = qk_rd_u32(b[i].qh);
        for (int j = 0; j < 16; j++) {
            const uint8_t xh0 = (uint8_t)(((qh >> j) << 4) & 0x10);
            const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            const int x0 = (b[i].qs[j] & 0x0f) | xh0;
            const int x1 = (b[i].qs[j] >> 4) | xh1;
            dst[j] = x0 * d + m;
            dst[j + 16] = x1 * d + m;
        }
    }
}

/* Weighted: make_qkx3_quants(32, 31); m = -the_min. */
static void q5_1_row_imp(const float *x, qk_block_q5_1 *y, int64_t n, const float *qw)
{
    float weight[32];
    uint8_t L[32], Laux[32];
    const float sigma2 = row_sigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float *xb = x + 32 * ib;
        block_weights(weight, xb, qw + 32 * ib, sigma2);
        float min;
        const float d = qk_blocks_make_qkx3_quants(32, 31, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, 0);
        wr_half(y[ib].d, d);
        wr_half_sat(y[ib].m, -min);
        pack_q5(y[ib].qs, y[ib].qh, L);
    }
}

void qk_blocks_q5_1_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    assert(n % 32 == 0);
    qk_block_q5_1 *y = dst;
    if (importance) {
        q5_1_row_imp(src, y, n, importance);
        return;
    }
    for (int64_t i = 0; i < n / 32; i++) {
        const float *x = src + 32 * i;
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (x[j] < min)
                min = x[j];
            if (x[j] > max)
                max = x[j];
        }
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        wr_half(y[i].d, d);
        wr_half(y[i].m, min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            /* llama.cpp: (uint8_t)(x0 + 0.5f) */
            const uint8_t xi0 = (uint8_t)qk_blocks_trunc_i32((x[j] - min) * id + 0.5f);
            const uint8_t xi1 = (uint8_t)qk_blocks_trunc_i32((x[j + 16] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((xi0 & 0x0f) | ((xi1 & 0x0f) << 4));
            qh |= ((xi0 & 0x10u) >> 4) << j;
            qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
        }
        qk_wr_u32(y[i].qh, qh);
    }
}

/* ==================================================================== Q8_0
 * d = amax/127, q = roundf(x/d) (ties away from zero). */

void qk_blocks_q8_0_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % 32 == 0);
    const qk_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = rd_half(b[i].d);
        for (int j = 0; j < 32; j++)
            dst[j] = b[i].qs[j] * d;
    }
}

void qk_blocks_q8_0_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    (void)importance;
    assert(n % 32 == 0);
    qk_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / 32; i++) {
        const float *x = src + 32 * i;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]); /* llama.cpp's MAX(amax, |v|) */
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        wr_half(y[i].d, d);
        for (int j = 0; j < 32; j++)
            y[i].qs[j] = qk_blocks_trunc_i8(roundf(x[j] * id));
    }
}

/* ========================================================= IQ4_NL / IQ4_XS
 * Codes index a fixed non-uniform codebook; x = scale * K[q]. */

const int8_t qk_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

void qk_blocks_iq4_nl_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % 32 == 0);
    const qk_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        const float d = rd_half(b[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * qk_iq4nl_values[b[i].qs[j] & 0x0f];
            dst[j + 16] = d * qk_iq4nl_values[b[i].qs[j] >> 4];
        }
    }
}

/* Sub-block ib (32 elements) of an IQ4_XS block: 6-bit scale ls, low 4 bits
 * in nibble ib%2 of scales_l[ib/2], high 2 bits at bit 2*ib of scales_h;
 * dl = d*(ls-32); codes as IQ4_NL. */
void qk_blocks_iq4_xs_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % QK_QK_K == 0);
    const qk_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / QK_QK_K; i++) {
        const float d = rd_half(b[i].d);
        const uint16_t sh = qk_rd_u16(b[i].scales_h);
        const uint8_t *qs = b[i].qs;
        for (int ib = 0; ib < 8; ib++, qs += 16, dst += 32) {
            const int ls = ((b[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((sh >> 2 * ib) & 3) << 4);
            const float dl = d * (ls - 32);
            for (int j = 0; j < 16; j++) {
                dst[j] = dl * qk_iq4nl_values[qs[j] & 0x0f];
                dst[j + 16] = dl * qk_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

/* Nearest codebook entry to x (ggml's best_index_int8 as of b4748: binary
 * search, then the closer neighbour, ties to the upper one). */
static int best_index_iq4(float x)
{
    const int8_t *val = qk_iq4nl_values;
    if (x <= val[0])
        return 0;
    if (x >= val[15])
        return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        int mav = (ml + mu) / 2;
        if (x < val[mav])
            mu = mav;
        else
            ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* llama.cpp's quantize_row_iq4_nl_impl with ntry = 7 (what llama-quantize
 * runs for IQ4_NL and IQ4_XS, with or without an importance matrix).
 *
 * x: [sb] one super-block (32 for IQ4_NL, 256 for IQ4_XS); qw: [sb] or NULL.
 * Per 32-element sub-block: weights w = qw*sqrt(sigma2 + x^2) (sigma2 =
 * 2*mean(x^2) of the super-block) or x^2 without importance; start from
 * d = max/127, pick codes, refit d by weighted least squares, then try the
 * 15 scales (itry-127)/max keeping the best refit d (codes of the trials are
 * not kept). IQ4_NL stores that d and re-picks codes with it; IQ4_XS
 * quantizes the sub-block scales to 6 bits against d = -max_scale/32 and
 * re-picks codes with each dequantized sub-block scale. Outputs: *dh (fp16
 * bytes), q4 [sb/2], and for IQ4_XS scales_h/scales_l. */
static void iq4_quantize_superblock(int sb, const float *x, uint8_t *dh, uint8_t *q4, uint8_t *scales_h,
                                    uint8_t *scales_l, const float *qw)
{
    const int8_t *values = qk_iq4nl_values;
    const int ntry = 7;
    float scales[QK_QK_K / 32];
    float weight[32];
    uint8_t L[QK_QK_K];

    float sigma2 = 0;
    for (int j = 0; j < sb; ++j)
        sigma2 += x[j] * x[j];
    sigma2 *= 2.f / sb;

    memset(q4, 0, (size_t)sb / 2);
    wr_half(dh, 0.f);

    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < sb / 32; ++ib) {
        const float *xb = x + ib * 32;
        uint8_t *Lb = L + ib * 32;
        if (qw) {
            for (int j = 0; j < 32; ++j)
                weight[j] = qw[ib * 32 + j] * sqrtf(sigma2 + xb[j] * xb[j]);
        } else {
            for (int j = 0; j < 32; ++j)
                weight[j] = xb[j] * xb[j];
        }
        float amax = 0, max = 0;
        for (int j = 0; j < 32; ++j) {
            float ax = fabsf(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float d = -max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
            float al = id * xb[j];
            int l = best_index_iq4(al);
            Lb[j] = (uint8_t)l;
            float q = values[l];
            float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        /* llama.cpp divides unguarded; all-zero weights (importance 0 on
         * every column) would give NaN there, 0 here. */
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; ++itry) {
            id = (itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; ++j) {
                float al = id * xb[j];
                int l = best_index_iq4(al);
                float q = values[l];
                float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        float abs_d = fabsf(d);
        if (abs_d > amax_scale) {
            amax_scale = abs_d;
            max_scale = d;
        }
    }

    if (sb / 32 > 1) {
        uint16_t sh = 0;
        float d = -max_scale / 32;
        wr_half(dh, d);
        float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < sb / 32; ++ib) {
            int l = qk_blocks_nearest_int(id * scales[ib]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            float dl = d * l;
            float idl = dl ? 1 / dl : 0.f;
            uint8_t *Lb = L + ib * 32;
            const float *xb = x + ib * 32;
            for (int j = 0; j < 32; ++j)
                Lb[j] = (uint8_t)best_index_iq4(idl * xb[j]);
            l += 32;
            uint8_t l_l = (uint8_t)(l & 0xf);
            uint8_t l_h = (uint8_t)(l >> 4);
            if (ib % 2 == 0)
                scales_l[ib / 2] = l_l;
            else
                scales_l[ib / 2] |= (uint8_t)(l_l << 4);
            sh |= (uint16_t)(l_h << 2 * (ib % 8));
        }
        qk_wr_u16(scales_h, sh);
    } else {
        wr_half(dh, scales[0]);
        float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < sb; ++j)
            L[j] = (uint8_t)best_index_iq4(id * x[j]);
    }

    for (int i = 0; i < sb / 32; ++i)
        for (int j = 0; j < 16; ++j)
            q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void qk_blocks_iq4_nl_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    assert(n % 32 == 0);
    qk_block_iq4_nl *y = dst;
    for (int64_t i = 0; i < n / 32; i++)
        iq4_quantize_superblock(32, src + 32 * i, y[i].d, y[i].qs, NULL, NULL,
                                importance ? importance + 32 * i : NULL);
}

void qk_blocks_iq4_xs_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    assert(n % QK_QK_K == 0);
    qk_block_iq4_xs *y = dst;
    for (int64_t i = 0; i < n / QK_QK_K; i++)
        iq4_quantize_superblock(QK_QK_K, src + QK_QK_K * i, y[i].d, y[i].qs, y[i].scales_h, y[i].scales_l,
                                importance ? importance + QK_QK_K * i : NULL);
}

/* Fast encoders (the traits' from_float) for Q8_0, Q4_0, Q4_K, Q5_K and
 * Q6_K: AVX2 copies of the reference encoders that write the same bytes for
 * every input. How they stay identical:
 *
 *  - every lane performs the reference's float operations on the same
 *    operands in the same order, with a separate multiply and add (no FMA:
 *    the target attribute does not enable it and the pragma below forbids
 *    contraction), IEEE division and square root;
 *  - Q8_0 and Q4_0 vectorize over the 32 elements of a block; their only
 *    reduction is max |x|, which is exact in any order;
 *  - the K-quant sub-block searches (make_qkx2_quants for Q4_K/Q5_K,
 *    make_qx_quants for Q6_K) vectorize over independent sub-blocks: lane j
 *    is sub-block j and walks its elements in the reference's order, so
 *    every sum accumulates exactly as in the scalar code; each branch becomes
 *    a per-lane blend under the same comparison. The rest of the K encoders
 *    (scale codes, requantization, packing) is the reference code itself
 *    (qk_blocks_q*_k_encode with this search);
 *  - a block (Q8_0, Q4_0) or super-block (K types) holding a NaN or an
 *    infinity is handed to the reference code: nothing is gained on such
 *    data and the argument for equality stays about finite floats.
 *
 * The K-quant searches also have AVX-512 versions (16 lanes: the 16
 * sub-blocks of two Q4_K/Q5_K super-blocks, or of one Q6_K super-block),
 * built the same way; on this project's Zen 5 machines they take the Q4_K
 * encoder from 1.20 to 0.93 CPU s on llama-150m. Q8_0/Q4_0 stay AVX2:
 * memory-bound.
 *
 * Each path is chosen once, at run time, from what the CPU has (capped by
 * QK_SIMD=avx2|none or qk_blocks_set_simd() for tests and benchmarks);
 * otherwise the reference encoder runs, and for the importance-weighted
 * paths of all but Q4_K/Q5_K (whose make_qkx3_quants search has an AVX2
 * copy, lane j = sub-block j as above).
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "ggml_blocks.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/common.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QK_BLOCKS_AVX2 1
#include <immintrin.h>
#endif

#define QK_K QK_QK_K
#define GROUP_MAX_EPS 1e-15f

#ifdef QK_BLOCKS_AVX2

#define AVX2 __attribute__((target("avx2")))

static inline void wr_half(uint8_t *p, float f) { qk_wr_u16(p, qk_f32_to_fp16(f)); }

AVX2 static inline __m256 abs8(__m256 v) { return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }

/* 1 when all n floats (n a multiple of 8) are finite. */
AVX2 static inline int all_finite(const float *x, int n)
{
    const __m256 inf = _mm256_set1_ps(__builtin_inff());
    __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int i = 0; i < n; i += 8)
        ok = _mm256_and_ps(ok, _mm256_cmp_ps(abs8(_mm256_loadu_ps(x + i)), inf, _CMP_LT_OQ));
    return _mm256_movemask_ps(ok) == 0xff;
}

/* Largest of 8 floats (no NaN: max is then exact in any order). */
AVX2 static inline float hmax8(__m256 m)
{
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* qk_blocks_nearest_int on 8 lanes: add 1.5*2^23, read the mantissa. */
AVX2 static inline __m256i nearest8(__m256 f)
{
    __m256i u = _mm256_castps_si256(_mm256_add_ps(f, _mm256_set1_ps(12582912.f)));
    return _mm256_sub_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

/* roundf (half away from zero), exactly: t = trunc(s); s - t is exact. */
AVX2 static inline __m256 roundf8(__m256 s)
{
    const __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = abs8(_mm256_sub_ps(s, t));
    const __m256 sign_one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(s, _mm256_set1_ps(-0.0f)));
    const __m256 adj = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), sign_one);
    return _mm256_add_ps(t, adj);
}

/* Over the 4 vectors of a 32-element block, unrolled so they stay in
 * registers. */
#define FOR_K4 _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)

/* 16 int32 lanes holding 0..255 -> 16 bytes, in order. */
AVX2 static inline void store_bytes16(uint8_t *dst, __m256i a, __m256i b)
{
    __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
    _mm_storeu_si128((__m128i *)dst, _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
}

/* ------------------------------------------------------------------ Q8_0
 * d = max|x| / 127, q = (int8_t)roundf(x / d) as quantize_row_q8_0_ref.
 * The conversion to int8 keeps the low byte of cvttps2dq (INT32_MIN for
 * NaN and out-of-range), as qk_blocks_trunc_i8. */
AVX2 static void q8_0_avx2(const float *src, void *dst, int64_t n)
{
    qk_block_q8_0 *y = dst;
    const __m256i lo8 = _mm256_set1_epi32(0xff);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < n / 32; i++) {
        const float *x = src + 32 * i;
        if (!all_finite(x, 32)) {
            qk_blocks_q8_0_from_float_ref(x, &y[i], 32, NULL);
            continue;
        }
        __m256 v[4];
        FOR_K4
            v[k] = _mm256_loadu_ps(x + 8 * k);
        const float amax = hmax8(_mm256_max_ps(_mm256_max_ps(abs8(v[0]), abs8(v[1])),
                                               _mm256_max_ps(abs8(v[2]), abs8(v[3]))));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        wr_half(y[i].d, d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        FOR_K4
            q[k] = _mm256_and_si256(_mm256_cvttps_epi32(roundf8(_mm256_mul_ps(v[k], vid))), lo8);
        __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)y[i].qs, _mm256_permutevar8x32_epi32(p, perm));
    }
}

/* ------------------------------------------------------------------ Q4_0
 * max = the first value of largest magnitude (0 when all are zero: the
 * reference never updates its initial 0.0f, so a block of -0.0 gives +0.0),
 * d = max / -8, q = min(15, (int8_t)trunc(x/d + 8.5)). */
AVX2 static void q4_0_avx2(const float *src, void *dst, int64_t n)
{
    qk_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / 32; i++) {
        const float *x = src + 32 * i;
        if (!all_finite(x, 32)) {
            qk_blocks_q4_0_from_float_ref(x, &y[i], 32, NULL);
            continue;
        }
        __m256 v[4], a[4];
        FOR_K4 {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            a[k] = abs8(v[k]);
        }
        const float amax = hmax8(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
        float max = 0.0f;
        if (amax > 0) {
            const __m256 va = _mm256_set1_ps(amax);
            uint32_t m = 0;
            FOR_K4
                m |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a[k], va, _CMP_EQ_OQ)) << (8 * k);
            max = x[__builtin_ctz(m)];
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        wr_half(y[i].d, d);
        const __m256 vid = _mm256_set1_ps(id), c85 = _mm256_set1_ps(8.5f);
        __m256i q[4];
        FOR_K4 {
            __m256i t = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v[k], vid), c85));
            t = _mm256_srai_epi32(_mm256_slli_epi32(t, 24), 24); /* (int8_t) of the low byte */
            q[k] = _mm256_and_si256(_mm256_min_epi32(t, _mm256_set1_epi32(15)), _mm256_set1_epi32(0xff));
        }
        const __m256i lo8 = _mm256_set1_epi32(0xff);
        store_bytes16(y[i].qs, _mm256_and_si256(_mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4)), lo8),
                      _mm256_and_si256(_mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4)), lo8));
    }
}

/* ----------------------------------------------------------- Q4_K / Q5_K
 * qk_blocks_qk45_search_ref on G super-blocks at once (G = 1 or 2, a
 * constant after inlining): group g is super-block g, lane j of a group is
 * its sub-block j, and xt[g][i] lane j holds x[256g + 32j + i]. The groups
 * are independent chains of dependent additions, interleaved so that one
 * fills the other's latency. make_qkx2_quants(32, nmax, ..., rmin, 0.1,
 * nstep, false) step by step; the comments name the reference's
 * statements. */
#define QK45_MAXG 2
/* Over the groups, unrolled: the arrays indexed by g then live in registers
 * or fixed stack slots, and the two chains interleave (a plain loop over g
 * was 20% slower than one group alone). */
#define FOR_G _Pragma("GCC unroll 2") for (int g = 0; g < G; g++)

AVX2 __attribute__((always_inline)) static inline void qk45_search_g(const float *x, const float *w, const int G,
                                                                      int nmax, float rmin, float rdelta, int nstep,
                                                                      uint8_t *L, float *scales, float *mins)
{
    const __m256 zero = _mm256_setzero_ps();
    const __m256i inmax = _mm256_set1_epi32(nmax), izero = _mm256_setzero_si256();
    _Alignas(32) float tr[QK45_MAXG][32][8];
    __m256 xt[QK45_MAXG][32], wt[QK45_MAXG][32];
    __m256i Lt[QK45_MAXG][32], La[QK45_MAXG][32];
    __m256 sum_w[QK45_MAXG], sum_x[QK45_MAXG], min[QK45_MAXG], max[QK45_MAXG], min0[QK45_MAXG], flat[QK45_MAXG];
    __m256 scale[QK45_MAXG], best_error[QK45_MAXG];

    FOR_G {
        for (int j = 0; j < 8; j++)
            for (int i = 0; i < 32; i++)
                tr[g][i][j] = x[QK_K * g + 32 * j + i];
        for (int i = 0; i < 32; i++)
            xt[g][i] = _mm256_load_ps(tr[g][i]);
        if (w) { /* the caller's weights (make_qkx3_quants) */
            for (int j = 0; j < 8; j++)
                for (int i = 0; i < 32; i++)
                    tr[g][i][j] = w[QK_K * g + 32 * j + i];
            for (int i = 0; i < 32; i++)
                wt[g][i] = _mm256_load_ps(tr[g][i]);
        } else { /* weights[l] = av_x + |x|, av_x = sqrtf(sum_x2 / 32) */
            __m256 sum_x2 = zero;
            for (int i = 0; i < 32; i++)
                sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(xt[g][i], xt[g][i]));
            const __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.f)));
            for (int i = 0; i < 32; i++)
                wt[g][i] = _mm256_add_ps(av_x, abs8(xt[g][i]));
        }
        /* min, max, sum_w, sum_x */
        min[g] = max[g] = xt[g][0];
        sum_w[g] = wt[g][0];
        sum_x[g] = _mm256_mul_ps(wt[g][0], xt[g][0]);
        for (int i = 1; i < 32; i++) {
            min[g] = _mm256_min_ps(xt[g][i], min[g]); /* x < min ? x : min */
            max[g] = _mm256_max_ps(xt[g][i], max[g]); /* x > max ? x : max */
            sum_w[g] = _mm256_add_ps(sum_w[g], wt[g][i]);
            sum_x[g] = _mm256_add_ps(sum_x[g], _mm256_mul_ps(wt[g][i], xt[g][i]));
        }
        min[g] = _mm256_blendv_ps(min[g], zero, _mm256_cmp_ps(min[g], zero, _CMP_GT_OQ)); /* if (min > 0) min = 0 */
        min0[g] = min[g];
        flat[g] = _mm256_cmp_ps(max[g], min[g], _CMP_EQ_OQ); /* max == min: L = 0, return 0 */
        /* first guess: iscale = nmax / (max - min), scale = 1 / iscale */
        const __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(max[g], min[g]));
        scale[g] = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
        best_error[g] = zero;
        for (int i = 0; i < 32; i++) {
            __m256i l = nearest8(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[g][i], min[g])));
            Lt[g][i] = _mm256_max_epi32(izero, _mm256_min_epi32(inmax, l));
            __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale[g], _mm256_cvtepi32_ps(Lt[g][i])), min[g]),
                                        xt[g][i]);
            diff = _mm256_mul_ps(diff, diff);
            best_error[g] = _mm256_add_ps(best_error[g], _mm256_mul_ps(wt[g][i], diff));
        }
    }
    for (int is = 0; is <= nstep; ++is) {
        const __m256 num = _mm256_set1_ps(rmin + rdelta * is + nmax);
        __m256 iscale[QK45_MAXG], sum_l[QK45_MAXG], sum_l2[QK45_MAXG], sum_xl[QK45_MAXG];
        FOR_G {
            iscale[g] = _mm256_div_ps(num, _mm256_sub_ps(max[g], min[g]));
            sum_l[g] = sum_l2[g] = sum_xl[g] = zero;
        }
        for (int i = 0; i < 32; i++) {
            FOR_G {
                __m256i l = nearest8(_mm256_mul_ps(iscale[g], _mm256_sub_ps(xt[g][i], min[g])));
                La[g][i] = l = _mm256_max_epi32(izero, _mm256_min_epi32(inmax, l));
                const __m256 fl = _mm256_cvtepi32_ps(l);
                const __m256 wl = _mm256_mul_ps(wt[g][i], fl);
                sum_l[g] = _mm256_add_ps(sum_l[g], wl);                            /* sum_l += w*l */
                sum_l2[g] = _mm256_add_ps(sum_l2[g], _mm256_mul_ps(wl, fl));       /* sum_l2 += w*l*l */
                sum_xl[g] = _mm256_add_ps(sum_xl[g], _mm256_mul_ps(wl, xt[g][i])); /* sum_xl += w*l*x */
            }
        }
        /* D = sum_w*sum_l2 - sum_l*sum_l; if (D > 0) { this_scale, this_min; if (this_min > 0) {...} } */
        __m256 dpos[QK45_MAXG], this_scale[QK45_MAXG], this_min[QK45_MAXG], cur_error[QK45_MAXG];
        int any = 0;
        FOR_G {
            const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w[g], sum_l2[g]), _mm256_mul_ps(sum_l[g], sum_l[g]));
            dpos[g] = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
            any |= _mm256_movemask_ps(dpos[g]);
            this_scale[g] = _mm256_div_ps(
                _mm256_sub_ps(_mm256_mul_ps(sum_w[g], sum_xl[g]), _mm256_mul_ps(sum_x[g], sum_l[g])), D);
            this_min[g] = _mm256_div_ps(
                _mm256_sub_ps(_mm256_mul_ps(sum_l2[g], sum_x[g]), _mm256_mul_ps(sum_l[g], sum_xl[g])), D);
            const __m256 mpos = _mm256_cmp_ps(this_min[g], zero, _CMP_GT_OQ);
            if (_mm256_movemask_ps(mpos)) { /* this_min = 0; this_scale = sum_xl / sum_l2 */
                this_min[g] = _mm256_blendv_ps(this_min[g], zero, mpos);
                this_scale[g] = _mm256_blendv_ps(this_scale[g], _mm256_div_ps(sum_xl[g], sum_l2[g]), mpos);
            }
            cur_error[g] = zero;
        }
        if (!any)
            continue;
        for (int i = 0; i < 32; i++) {
            FOR_G { /* cur_error += w*diff^2, diff = this_scale*L + this_min - x */
                __m256 diff = _mm256_sub_ps(
                    _mm256_add_ps(_mm256_mul_ps(this_scale[g], _mm256_cvtepi32_ps(La[g][i])), this_min[g]), xt[g][i]);
                diff = _mm256_mul_ps(diff, diff);
                cur_error[g] = _mm256_add_ps(cur_error[g], _mm256_mul_ps(wt[g][i], diff));
            }
        }
        FOR_G { /* if (cur_error < best_error): L = Laux; best_error, scale, min */
            const __m256 upd = _mm256_and_ps(dpos[g], _mm256_cmp_ps(cur_error[g], best_error[g], _CMP_LT_OQ));
            if (!_mm256_movemask_ps(upd))
                continue;
            const __m256i updi = _mm256_castps_si256(upd);
            for (int i = 0; i < 32; i++)
                Lt[g][i] = _mm256_blendv_epi8(Lt[g][i], La[g][i], updi);
            best_error[g] = _mm256_blendv_ps(best_error[g], cur_error[g], upd);
            scale[g] = _mm256_blendv_ps(scale[g], this_scale[g], upd);
            min[g] = _mm256_blendv_ps(min[g], this_min[g], upd);
        }
    }
    FOR_G {
        /* flat lanes: L = 0, *the_min = -min, return 0 */
        const __m256 sc = _mm256_blendv_ps(scale[g], zero, flat[g]);
        const __m256 mn = _mm256_blendv_ps(min[g], min0[g], flat[g]);
        const __m256i flati = _mm256_castps_si256(flat[g]);
        _Alignas(32) int32_t lt[32][8];
        for (int i = 0; i < 32; i++)
            _mm256_store_si256((__m256i *)lt[i], _mm256_andnot_si256(flati, Lt[g][i]));
        for (int j = 0; j < 8; j++)
            for (int i = 0; i < 32; i++)
                L[QK_K * g + 32 * j + i] = (uint8_t)lt[i][j];
        _mm256_storeu_ps(scales + 8 * g, sc);
        _mm256_storeu_ps(mins + 8 * g, _mm256_xor_ps(mn, _mm256_set1_ps(-0.0f))); /* *the_min = -min */
    }
}

/* qk45_requant_ref: L[i] = clamp(nearest_int((x[i] + dm) / d), 0, nmax),
 * i < 32; each element on its own, so 8 at a time is the same. */
AVX2 static void qk45_requant_avx2(const float *x, float dm, float d, int nmax, uint8_t *L)
{
    const __m256 vdm = _mm256_set1_ps(dm), vd = _mm256_set1_ps(d);
    const __m256i inmax = _mm256_set1_epi32(nmax), izero = _mm256_setzero_si256();
    __m256i q[4];
    FOR_K4
        q[k] = _mm256_max_epi32(izero, _mm256_min_epi32(inmax, nearest8(_mm256_div_ps(
                   _mm256_add_ps(_mm256_loadu_ps(x + 8 * k), vdm), vd))));
    const __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
    _mm256_storeu_si256((__m256i *)L, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

AVX2 static void qk45_search_avx2(const float *x, int nb, int nmax, uint8_t *L, float *scales, float *mins)
{
    assert(nb >= 1 && nb <= QK_BLOCKS_SEARCH_GROUP);
    if (!all_finite(x, nb * QK_K)) {
        qk_blocks_qk45_search_ref(x, nb, nmax, L, scales, mins);
        return;
    }
    const float rmin = nmax == 15 ? -1.f : -0.5f;
    const int nstep = nmax == 15 ? 20 : 15;
    if (nb == 2)
        qk45_search_g(x, NULL, 2, nmax, rmin, 0.1f, nstep, L, scales, mins);
    else
        qk45_search_g(x, NULL, 1, nmax, rmin, 0.1f, nstep, L, scales, mins);
}

/* The importance path's search (qk_blocks_qk45_wsearch_ref): make_qkx3_quants
 * with the caller's weights is make_qkx2_quants' computation with other
 * step constants (its max <= min test is max == min here, the same for
 * finite x: min is at most every x and at most 0). */
AVX2 static void qk45_wsearch_avx2(const float *x, const float *w, int nmax, uint8_t *L, float *scales, float *mins)
{
    if (!all_finite(x, QK_K)) {
        qk_blocks_qk45_wsearch_ref(x, w, nmax, L, scales, mins);
        return;
    }
    qk45_search_g(x, w, 1, nmax, -0.9f, 0.05f, 36, L, scales, mins);
}

/* ------------------------------------------------ Q4_K / Q5_K, AVX-512
 * qk45_search_g with 16 lanes: lane j is sub-block j of the two
 * super-blocks x[0, 512) (lanes 0-7 the first, 8-15 the second), so
 * xt[i] lane j holds x[32j + i]. The same float operations per lane in the
 * same order as the reference; branches are masked blends. */
#define AVX512 __attribute__((target("avx512f")))

AVX512 static inline __m512i nearest16(__m512 f)
{
    __m512i u = _mm512_castps_si512(_mm512_add_ps(f, _mm512_set1_ps(12582912.f)));
    return _mm512_sub_epi32(_mm512_and_si512(u, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x00400000));
}

AVX512 static inline __m512 abs16(__m512 v)
{
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
}

/* Two super-blocks (nsb = 2) or one (nsb = 1: lanes 8-15 are padding). */
AVX512 static void qk45_search_512(const float *x, int nsb, int nmax, uint8_t *L, float *scales, float *mins)
{
    const float rmin = nmax == 15 ? -1.f : -0.5f;
    const int nstep = nmax == 15 ? 20 : 15;
    const float rdelta = 0.1f;
    const __m512 zero = _mm512_setzero_ps();
    const __m512i inmax = _mm512_set1_epi32(nmax), izero = _mm512_setzero_si512();
    _Alignas(64) float tr[32][16];
    __m512 xt[32], wt[32];
    __m512i Lt[32], La[32];
    const int nsub = 8 * nsb;
    for (int j = 0; j < 16; j++)
        for (int i = 0; i < 32; i++)
            tr[i][j] = j < nsub ? x[32 * j + i] : 0.0f;
    for (int i = 0; i < 32; i++)
        xt[i] = _mm512_load_ps(tr[i]);
    __m512 sum_x2 = zero;
    for (int i = 0; i < 32; i++)
        sum_x2 = _mm512_add_ps(sum_x2, _mm512_mul_ps(xt[i], xt[i]));
    const __m512 av_x = _mm512_sqrt_ps(_mm512_div_ps(sum_x2, _mm512_set1_ps(32.f)));
    for (int i = 0; i < 32; i++)
        wt[i] = _mm512_add_ps(av_x, abs16(xt[i]));
    __m512 min = xt[0], max = xt[0], sum_w = wt[0], sum_x = _mm512_mul_ps(wt[0], xt[0]);
    for (int i = 1; i < 32; i++) {
        min = _mm512_min_ps(xt[i], min);
        max = _mm512_max_ps(xt[i], max);
        sum_w = _mm512_add_ps(sum_w, wt[i]);
        sum_x = _mm512_add_ps(sum_x, _mm512_mul_ps(wt[i], xt[i]));
    }
    min = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(min, zero, _CMP_GT_OQ), min, zero);
    const __m512 min0 = min;
    const __mmask16 flat = _mm512_cmp_ps_mask(max, min, _CMP_EQ_OQ);
    __m512 scale, best_error = zero;
    {
        const __m512 iscale = _mm512_div_ps(_mm512_set1_ps((float)nmax), _mm512_sub_ps(max, min));
        scale = _mm512_div_ps(_mm512_set1_ps(1.0f), iscale);
        for (int i = 0; i < 32; i++) {
            __m512i l = nearest16(_mm512_mul_ps(iscale, _mm512_sub_ps(xt[i], min)));
            Lt[i] = _mm512_max_epi32(izero, _mm512_min_epi32(inmax, l));
            __m512 diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale, _mm512_cvtepi32_ps(Lt[i])), min), xt[i]);
            diff = _mm512_mul_ps(diff, diff);
            best_error = _mm512_add_ps(best_error, _mm512_mul_ps(wt[i], diff));
        }
    }
    for (int is = 0; is <= nstep; ++is) {
        const __m512 iscale = _mm512_div_ps(_mm512_set1_ps(rmin + rdelta * is + nmax), _mm512_sub_ps(max, min));
        __m512 sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < 32; i++) {
            __m512i l = nearest16(_mm512_mul_ps(iscale, _mm512_sub_ps(xt[i], min)));
            La[i] = l = _mm512_max_epi32(izero, _mm512_min_epi32(inmax, l));
            const __m512 fl = _mm512_cvtepi32_ps(l);
            const __m512 wl = _mm512_mul_ps(wt[i], fl);
            sum_l = _mm512_add_ps(sum_l, wl);
            sum_l2 = _mm512_add_ps(sum_l2, _mm512_mul_ps(wl, fl));
            sum_xl = _mm512_add_ps(sum_xl, _mm512_mul_ps(wl, xt[i]));
        }
        const __m512 D = _mm512_sub_ps(_mm512_mul_ps(sum_w, sum_l2), _mm512_mul_ps(sum_l, sum_l));
        const __mmask16 dpos = _mm512_cmp_ps_mask(D, zero, _CMP_GT_OQ);
        if (!dpos)
            continue;
        __m512 this_scale = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sum_w, sum_xl), _mm512_mul_ps(sum_x, sum_l)), D);
        __m512 this_min = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sum_l2, sum_x), _mm512_mul_ps(sum_l, sum_xl)), D);
        const __mmask16 mpos = _mm512_cmp_ps_mask(this_min, zero, _CMP_GT_OQ);
        if (mpos) {
            this_min = _mm512_mask_blend_ps(mpos, this_min, zero);
            this_scale = _mm512_mask_blend_ps(mpos, this_scale, _mm512_div_ps(sum_xl, sum_l2));
        }
        __m512 cur_error = zero;
        for (int i = 0; i < 32; i++) {
            __m512 diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(this_scale, _mm512_cvtepi32_ps(La[i])), this_min), xt[i]);
            diff = _mm512_mul_ps(diff, diff);
            cur_error = _mm512_add_ps(cur_error, _mm512_mul_ps(wt[i], diff));
        }
        const __mmask16 upd = dpos & _mm512_cmp_ps_mask(cur_error, best_error, _CMP_LT_OQ);
        if (!upd)
            continue;
        for (int i = 0; i < 32; i++)
            Lt[i] = _mm512_mask_blend_epi32(upd, Lt[i], La[i]);
        best_error = _mm512_mask_blend_ps(upd, best_error, cur_error);
        scale = _mm512_mask_blend_ps(upd, scale, this_scale);
        min = _mm512_mask_blend_ps(upd, min, this_min);
    }
    const __m512 sc = _mm512_mask_blend_ps(flat, scale, zero);
    const __m512 mn = _mm512_mask_blend_ps(flat, min, min0);
    _Alignas(64) int32_t lt[32][16];
    for (int i = 0; i < 32; i++)
        _mm512_store_si512((__m512i *)lt[i], _mm512_maskz_mov_epi32((__mmask16)~flat, Lt[i]));
    for (int j = 0; j < nsub; j++)
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = (uint8_t)lt[i][j];
    _Alignas(64) float s16[16], m16[16];
    _mm512_store_ps(s16, sc);
    _mm512_store_ps(m16, _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(mn), _mm512_set1_epi32((int)0x80000000))));
    memcpy(scales, s16, (size_t)nsub * sizeof(float));
    memcpy(mins, m16, (size_t)nsub * sizeof(float));
}

AVX512 static void qk45_search_avx512(const float *x, int nb, int nmax, uint8_t *L, float *scales, float *mins)
{
    assert(nb >= 1 && nb <= QK_BLOCKS_SEARCH_GROUP);
    if (!all_finite(x, nb * QK_K)) {
        qk_blocks_qk45_search_ref(x, nb, nmax, L, scales, mins);
        return;
    }
    qk45_search_512(x, nb, nmax, L, scales, mins);
}

/* ------------------------------------------------------------------ Q6_K
 * qk_blocks_q6_k_search_ref: make_qx_quants(16, 32, x, L, rmse_type 1,
 * NULL) on the 16 sub-blocks of 16 of a super-block, as two interleaved
 * groups of 8 lanes (lane j of group g = sub-block 8g + j). */
AVX2 static void q6_k_search_sb(const float *x, int8_t *L, float *scales)
{
    const int nmax = 32, G = 2;
    const __m256 zero = _mm256_setzero_ps();
    const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1), off = _mm256_set1_epi32(nmax);
    _Alignas(32) float tr[2][16][8];
    __m256 xt[2][16], wx[2][16], wt[2][16];
    __m256i Lt[2][16], La[2][16];
    __m256 max[2], tiny[2], scale[2], best[2];

    FOR_G {
        for (int j = 0; j < 8; j++)
            for (int i = 0; i < 16; i++)
                tr[g][i][j] = x[128 * g + 16 * j + i];
        __m256 amax = zero;
        max[g] = zero;
        for (int i = 0; i < 16; i++) {
            xt[g][i] = _mm256_load_ps(tr[g][i]);
            const __m256 ax = abs8(xt[g][i]);
            const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ); /* if (ax > amax) { amax = ax; max = x } */
            amax = _mm256_blendv_ps(amax, ax, gt);
            max[g] = _mm256_blendv_ps(max[g], xt[g][i], gt);
            wt[g][i] = _mm256_mul_ps(xt[g][i], xt[g][i]); /* w = x*x */
            wx[g][i] = _mm256_mul_ps(wt[g][i], xt[g][i]); /* w * x */
        }
        tiny[g] = _mm256_cmp_ps(amax, _mm256_set1_ps(GROUP_MAX_EPS), _CMP_LT_OQ); /* L = 0, return 0 */
        const __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max[g]);
        __m256 sumlx = zero, suml2 = zero;
        for (int i = 0; i < 16; i++) {
            __m256i l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest8(_mm256_mul_ps(iscale, xt[g][i]))));
            Lt[g][i] = _mm256_add_epi32(l, off);
            const __m256 fl = _mm256_cvtepi32_ps(l);
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(wx[g][i], fl));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wt[g][i], fl), fl));
        }
        /* scale = suml2 ? sumlx / suml2 : 0 (NaN counts as true) */
        scale[g] = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ), _mm256_div_ps(sumlx, suml2));
        best[g] = _mm256_mul_ps(scale[g], sumlx);
    }
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        const __m256 num = _mm256_set1_ps(-(nmax + 0.1f * is));
        __m256 iscale[2], sumlx[2], suml2[2];
        FOR_G {
            iscale[g] = _mm256_div_ps(num, max[g]);
            sumlx[g] = suml2[g] = zero;
        }
        for (int i = 0; i < 16; i++) {
            FOR_G {
                __m256i l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest8(_mm256_mul_ps(iscale[g], xt[g][i]))));
                La[g][i] = l;
                const __m256 fl = _mm256_cvtepi32_ps(l);
                sumlx[g] = _mm256_add_ps(sumlx[g], _mm256_mul_ps(wx[g][i], fl));
                suml2[g] = _mm256_add_ps(suml2[g], _mm256_mul_ps(_mm256_mul_ps(wt[g][i], fl), fl));
            }
        }
        FOR_G {
            /* if (suml2 > 0 && sumlx*sumlx > best*suml2) { L = ...; scale = sumlx/suml2; best = scale*sumlx; } */
            const __m256 upd = _mm256_and_ps(_mm256_cmp_ps(suml2[g], zero, _CMP_GT_OQ),
                                             _mm256_cmp_ps(_mm256_mul_ps(sumlx[g], sumlx[g]),
                                                           _mm256_mul_ps(best[g], suml2[g]), _CMP_GT_OQ));
            if (!_mm256_movemask_ps(upd))
                continue;
            const __m256i updi = _mm256_castps_si256(upd);
            for (int i = 0; i < 16; i++)
                Lt[g][i] = _mm256_blendv_epi8(Lt[g][i], _mm256_add_epi32(La[g][i], off), updi);
            const __m256 new_scale = _mm256_div_ps(sumlx[g], suml2[g]);
            scale[g] = _mm256_blendv_ps(scale[g], new_scale, upd);
            best[g] = _mm256_blendv_ps(best[g], _mm256_mul_ps(new_scale, sumlx[g]), upd);
        }
    }
    FOR_G {
        const __m256i tinyi = _mm256_castps_si256(tiny[g]);
        _Alignas(32) int32_t lt[16][8];
        for (int i = 0; i < 16; i++)
            _mm256_store_si256((__m256i *)lt[i], _mm256_andnot_si256(tinyi, Lt[g][i]));
        for (int j = 0; j < 8; j++)
            for (int i = 0; i < 16; i++)
                L[128 * g + 16 * j + i] = (int8_t)lt[i][j];
        _mm256_storeu_ps(scales + 8 * g, _mm256_blendv_ps(scale[g], zero, tiny[g]));
    }
}

AVX2 static void q6_k_search_avx2(const float *x, int nb, int8_t *L, float *scales)
{
    for (int b = 0; b < nb; b++) {
        const float *xb = x + QK_K * b;
        if (all_finite(xb, QK_K))
            q6_k_search_sb(xb, L + QK_K * b, scales + 16 * b);
        else
            qk_blocks_q6_k_search_ref(xb, 1, L + QK_K * b, scales + 16 * b);
    }
}

/* qk_blocks_q6_k_search_ref with AVX-512: one super-block per vector, lane
 * j is sub-block j (xt[i] lane j holds x[16j + i]). */
AVX512 static void q6_k_search_sb512(const float *x, int8_t *L, float *scales)
{
    const int nmax = 32;
    const __m512 zero = _mm512_setzero_ps();
    const __m512i lo = _mm512_set1_epi32(-nmax), hi = _mm512_set1_epi32(nmax - 1), off = _mm512_set1_epi32(nmax);
    _Alignas(64) float tr[16][16];
    __m512 xt[16], wx[16], wt[16];
    __m512i Lt[16], La[16];
    for (int j = 0; j < 16; j++)
        for (int i = 0; i < 16; i++)
            tr[i][j] = x[16 * j + i];
    __m512 amax = zero, max = zero;
    for (int i = 0; i < 16; i++) {
        xt[i] = _mm512_load_ps(tr[i]);
        const __m512 ax = abs16(xt[i]);
        const __mmask16 gt = _mm512_cmp_ps_mask(ax, amax, _CMP_GT_OQ); /* if (ax > amax) { amax = ax; max = x } */
        amax = _mm512_mask_blend_ps(gt, amax, ax);
        max = _mm512_mask_blend_ps(gt, max, xt[i]);
        wt[i] = _mm512_mul_ps(xt[i], xt[i]); /* w = x*x */
        wx[i] = _mm512_mul_ps(wt[i], xt[i]); /* w * x */
    }
    const __mmask16 tiny = _mm512_cmp_ps_mask(amax, _mm512_set1_ps(GROUP_MAX_EPS), _CMP_LT_OQ); /* L = 0, return 0 */
    __m512 scale, best;
    {
        const __m512 iscale = _mm512_div_ps(_mm512_set1_ps((float)-nmax), max);
        __m512 sumlx = zero, suml2 = zero;
        for (int i = 0; i < 16; i++) {
            __m512i l = _mm512_max_epi32(lo, _mm512_min_epi32(hi, nearest16(_mm512_mul_ps(iscale, xt[i]))));
            Lt[i] = _mm512_add_epi32(l, off);
            const __m512 fl = _mm512_cvtepi32_ps(l);
            sumlx = _mm512_add_ps(sumlx, _mm512_mul_ps(wx[i], fl));
            suml2 = _mm512_add_ps(suml2, _mm512_mul_ps(_mm512_mul_ps(wt[i], fl), fl));
        }
        /* scale = suml2 ? sumlx / suml2 : 0 (NaN counts as true) */
        scale = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(suml2, zero, _CMP_NEQ_UQ), _mm512_div_ps(sumlx, suml2));
        best = _mm512_mul_ps(scale, sumlx);
    }
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        const __m512 iscale = _mm512_div_ps(_mm512_set1_ps(-(nmax + 0.1f * is)), max);
        __m512 sumlx = zero, suml2 = zero;
        for (int i = 0; i < 16; i++) {
            __m512i l = _mm512_max_epi32(lo, _mm512_min_epi32(hi, nearest16(_mm512_mul_ps(iscale, xt[i]))));
            La[i] = l;
            const __m512 fl = _mm512_cvtepi32_ps(l);
            sumlx = _mm512_add_ps(sumlx, _mm512_mul_ps(wx[i], fl));
            suml2 = _mm512_add_ps(suml2, _mm512_mul_ps(_mm512_mul_ps(wt[i], fl), fl));
        }
        /* if (suml2 > 0 && sumlx*sumlx > best*suml2) { L = ...; scale = sumlx/suml2; best = scale*sumlx; } */
        const __mmask16 upd = _mm512_cmp_ps_mask(suml2, zero, _CMP_GT_OQ) &
                              _mm512_cmp_ps_mask(_mm512_mul_ps(sumlx, sumlx), _mm512_mul_ps(best, suml2), _CMP_GT_OQ);
        if (!upd)
            continue;
        for (int i = 0; i < 16; i++)
            Lt[i] = _mm512_mask_blend_epi32(upd, Lt[i], _mm512_add_epi32(La[i], off));
        const __m512 new_scale = _mm512_div_ps(sumlx, suml2);
        scale = _mm512_mask_blend_ps(upd, scale, new_scale);
        best = _mm512_mask_blend_ps(upd, best, _mm512_mul_ps(new_scale, sumlx));
    }
    _Alignas(64) int32_t lt[16][16];
    for (int i = 0; i < 16; i++)
        _mm512_store_si512((__m512i *)lt[i], _mm512_maskz_mov_epi32((__mmask16)~tiny, Lt[i]));
    for (int j = 0; j < 16; j++)
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (int8_t)lt[i][j];
    _mm512_storeu_ps(scales, _mm512_mask_blend_ps(tiny, scale, zero));
}

AVX512 static void q6_k_search_avx512(const float *x, int nb, int8_t *L, float *scales)
{
    for (int b = 0; b < nb; b++) {
        const float *xb = x + QK_K * b;
        if (all_finite(xb, QK_K))
            q6_k_search_sb512(xb, L + QK_K * b, scales + 16 * b);
        else
            qk_blocks_q6_k_search_ref(xb, 1, L + QK_K * b, scales + 16 * b);
    }
}

/* The widest path to use: 2 AVX-512, 1 AVX2, 0 none; what the CPU has,
 * capped by QK_SIMD=avx2|none in the environment or qk_blocks_set_simd(). */
static int g_simd = -1;

static int simd_level(void)
{
    int l = __atomic_load_n(&g_simd, __ATOMIC_RELAXED);
    if (l < 0) {
        __builtin_cpu_init();
        l = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
        const char *e = getenv("QK_SIMD");
        if (e && !strcmp(e, "avx2") && l > 1)
            l = 1;
        else if (e && !strcmp(e, "none"))
            l = 0;
        __atomic_store_n(&g_simd, l, __ATOMIC_RELAXED);
    }
    return l;
}

static int have_avx2(void) { return simd_level() >= 1; }
static int have_avx512(void) { return simd_level() >= 2; }

int qk_blocks_set_simd(int level)
{
    g_simd = -1;
    const int have = simd_level();
    g_simd = level < have ? level : have;
    return g_simd;
}
#else
static int have_avx2(void) { return 0; }
int qk_blocks_set_simd(int level) { (void)level; return 0; }
#endif

/* ------------------------------------------------------------ dispatch */

void qk_blocks_q8_0_from_float(const float *src, void *dst, int64_t n, const float *importance)
{
    assert(n % 32 == 0);
#ifdef QK_BLOCKS_AVX2
    if (have_avx2()) {
        q8_0_avx2(src, dst, n);
        return;
    }
#endif
    qk_blocks_q8_0_from_float_ref(src, dst, n, importance);
}

void qk_blocks_q4_0_from_float(const float *src, void *dst, int64_t n, const float *importance)
{
    assert(n % 32 == 0);
#ifdef QK_BLOCKS_AVX2
    if (!importance && have_avx2()) {
        q4_0_avx2(src, dst, n);
        return;
    }
#endif
    qk_blocks_q4_0_from_float_ref(src, dst, n, importance);
}

void qk_blocks_q4_k_from_float(const float *src, void *dst, int64_t n, const float *importance)
{
#ifdef QK_BLOCKS_AVX2
    if (have_avx2()) {
        qk_blocks_q4_k_encode(src, dst, n, importance, have_avx512() ? qk45_search_avx512 : qk45_search_avx2,
                              qk45_wsearch_avx2, qk45_requant_avx2);
        return;
    }
#endif
    qk_blocks_q4_k_from_float_ref(src, dst, n, importance);
}

void qk_blocks_q5_k_from_float(const float *src, void *dst, int64_t n, const float *importance)
{
#ifdef QK_BLOCKS_AVX2
    if (have_avx2()) {
        qk_blocks_q5_k_encode(src, dst, n, importance, have_avx512() ? qk45_search_avx512 : qk45_search_avx2,
                              qk45_wsearch_avx2, qk45_requant_avx2);
        return;
    }
#endif
    qk_blocks_q5_k_from_float_ref(src, dst, n, importance);
}

void qk_blocks_q6_k_from_float(const float *src, void *dst, int64_t n, const float *importance)
{
#ifdef QK_BLOCKS_AVX2
    if (!importance && have_avx2()) {
        qk_blocks_q6_k_encode(src, dst, n, NULL, have_avx512() ? q6_k_search_avx512 : q6_k_search_avx2);
        return;
    }
#endif
    qk_blocks_q6_k_from_float_ref(src, dst, n, importance);
}

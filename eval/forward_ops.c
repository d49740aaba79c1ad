/* Kernels of the reference forward pass; see forward_ops.h. The
 * arithmetic follows ggml's CPU ops where the order matters (sum of squares
 * in double, scale rounded to float, x*scale then *w; softmax with max
 * subtraction and a double denominator), so results stay within float
 * rounding of llama.cpp. */
#include "forward_ops.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/common.h"

#include <cblas.h>
#include <math.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QK_GEMM_AVX512 1
#include <immintrin.h>
#endif

void qk_forward_rmsnorm_row(float *y, const float *x, const float *w, int64_t n, float eps)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] * scale) * w[i];
}

void qk_forward_rope_table(float *cs, int64_t n_pos, int64_t head_dim, double base)
{
    int64_t half = head_dim / 2;
    for (int64_t p = 0; p < n_pos; p++)
        for (int64_t i = 0; i < half; i++) {
            double theta = (double)p * pow(base, -2.0 * (double)i / (double)head_dim);
            cs[(p * half + i) * 2] = (float)cos(theta);
            cs[(p * half + i) * 2 + 1] = (float)sin(theta);
        }
}

void qk_forward_rope_table_ggml(float *cs, int64_t n_pos, int64_t head_dim, float base)
{
    int64_t half = head_dim / 2;
    const float theta_scale = powf(base, -2.0f / (float)head_dim);
    for (int64_t p = 0; p < n_pos; p++) {
        float theta = (float)p;
        for (int64_t i = 0; i < half; i++) {
            cs[(p * half + i) * 2] = cosf(theta);
            cs[(p * half + i) * 2 + 1] = sinf(theta);
            theta *= theta_scale;
        }
    }
}

void qk_forward_rope_row(float *x, int64_t n_heads, int64_t head_dim, const float *cs)
{
    int64_t half = head_dim / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *xh = x + h * head_dim;
        for (int64_t i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
            xh[2 * i] = x0 * c - x1 * s;
            xh[2 * i + 1] = x0 * s + x1 * c;
        }
    }
}

void qk_forward_round_q8_0(float *x, int64_t n)
{
    for (int64_t b = 0; b + 32 <= n; b += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[b + j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        const float dh = qk_fp16_to_f32(qk_f32_to_fp16(d)); /* the dot product uses the stored fp16 scale */
        for (int j = 0; j < 32; j++)
            x[b + j] = dh * nearbyintf(x[b + j] * id); /* the AVX path rounds half to even */
    }
}

void qk_forward_round_q8_k(float *x, int64_t n)
{
    for (int64_t b = 0; b + 256 <= n; b += 256) {
        float amax = 0, max = 0;
        for (int j = 0; j < 256; j++)
            if (fabsf(x[b + j]) > amax) {
                amax = fabsf(x[b + j]);
                max = x[b + j];
            }
        if (amax == 0) {
            memset(x + b, 0, 256 * sizeof(float));
            continue;
        }
        const float iscale = -127.0f / max, d = 1.0f / iscale;
        for (int j = 0; j < 256; j++) {
            float v = roundf(iscale * x[b + j]);
            x[b + j] = d * (v > 127 ? 127 : v);
        }
    }
}

void qk_forward_round_f16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = qk_fp16_to_f32(qk_f32_to_fp16(x[i]));
}

void qk_forward_round_bf16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = qk_bf16_to_f32(qk_f32_to_bf16(x[i]));
}

/* ---------------------------------------------------------------- gemm
 *
 * y = x W^T with W [n_cols][k] as stored: GotoBLAS's scheme cut to the one
 * shape a linear layer needs. Columns go in panels of 64 (four zmm); a
 * panel is packed transposed, [k][64], and swept k block (KC) by k block by
 * a 6-token x 64-column register tile: per k, four loads of the panel and
 * six broadcasts of x feed 24 FMAs into 24 accumulators. The OpenBLAS this
 * machine runs is pinned to its AVX2 kernels (8 lanes); this one runs at
 * about 1.8x its speed per core (docs/BENCHMARKS.md). */
#define GEMM_KC 128
#define GEMM_NR 64 /* columns per panel */
#define GEMM_MR 6  /* tokens per register tile */

#ifdef QK_GEMM_AVX512
#define AVX512 __attribute__((target("avx512f")))

/* y [6][ldy] (+)= x [6][ldx] (k values from x) times the packed panel
 * wp [kc][64]; m: store masks of the four column groups. The 24
 * accumulators are named variables: as an array GCC -O2 kept them in
 * memory. */
#define GEMM_ROW(r)                                                                                            \
    __m512 c##r##0, c##r##1, c##r##2, c##r##3;                                                                 \
    if (accumulate) {                                                                                          \
        c##r##0 = _mm512_maskz_loadu_ps(m[0], y + r * ldy);                                                    \
        c##r##1 = _mm512_maskz_loadu_ps(m[1], y + r * ldy + 16);                                               \
        c##r##2 = _mm512_maskz_loadu_ps(m[2], y + r * ldy + 32);                                               \
        c##r##3 = _mm512_maskz_loadu_ps(m[3], y + r * ldy + 48);                                               \
    } else {                                                                                                   \
        c##r##0 = c##r##1 = c##r##2 = c##r##3 = _mm512_setzero_ps();                                           \
    }
#define GEMM_FMA(r)                                                                                            \
    do {                                                                                                       \
        const __m512 a = _mm512_set1_ps(x[r * ldx + kk]);                                                      \
        c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);                                                             \
        c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);                                                             \
        c##r##2 = _mm512_fmadd_ps(a, b2, c##r##2);                                                             \
        c##r##3 = _mm512_fmadd_ps(a, b3, c##r##3);                                                             \
    } while (0)
#define GEMM_STORE(r)                                                                                          \
    do {                                                                                                       \
        _mm512_mask_storeu_ps(y + r * ldy, m[0], c##r##0);                                                     \
        _mm512_mask_storeu_ps(y + r * ldy + 16, m[1], c##r##1);                                                \
        _mm512_mask_storeu_ps(y + r * ldy + 32, m[2], c##r##2);                                                \
        _mm512_mask_storeu_ps(y + r * ldy + 48, m[3], c##r##3);                                                \
    } while (0)

AVX512 static void gemm_tile(float *y, int64_t ldy, const float *x, int64_t ldx, const float *wp, int64_t kc,
                             int accumulate, const __mmask16 m[4])
{
    GEMM_ROW(0) GEMM_ROW(1) GEMM_ROW(2) GEMM_ROW(3) GEMM_ROW(4) GEMM_ROW(5)
    for (int64_t kk = 0; kk < kc; kk++) {
        const float *b = wp + kk * GEMM_NR;
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16), b2 = _mm512_load_ps(b + 32),
                     b3 = _mm512_load_ps(b + 48);
        GEMM_FMA(0);
        GEMM_FMA(1);
        GEMM_FMA(2);
        GEMM_FMA(3);
        GEMM_FMA(4);
        GEMM_FMA(5);
    }
    GEMM_STORE(0);
    GEMM_STORE(1);
    GEMM_STORE(2);
    GEMM_STORE(3);
    GEMM_STORE(4);
    GEMM_STORE(5);
}

/* dst[c * 64 + r] = src[r * lds + c] for r < 16, c < cols: a 16x16 block
 * of the weight, transposed into the packed panel (rows >= `rows` read as
 * 0). Three rounds of shuffles: pairs of rows, quads, then 128-bit lanes. */
AVX512 static void pack_16x16(float *dst, const float *src, int64_t lds, int64_t rows, int64_t cols)
{
    const __mmask16 cm = (__mmask16)((1u << cols) - 1);
    __m512 r[16], t[16], u[16];
    for (int i = 0; i < 16; i++)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(cm, src + i * lds) : _mm512_setzero_ps();
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);     /* per 128-bit lane: a0 b0 a1 b1 */
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]); /* a2 b2 a3 b3 */
    }
    for (int q = 0; q < 16; q += 4) { /* rows q..q+3; r[q + m] = columns m, m+4, m+8, m+12 */
        r[q] = _mm512_shuffle_ps(t[q], t[q + 2], 0x44);
        r[q + 1] = _mm512_shuffle_ps(t[q], t[q + 2], 0xEE);
        r[q + 2] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        r[q + 3] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
    }
    for (int m = 0; m < 4; m++) { /* lanes 0, 2 and 1, 3 of rows 0-3 with rows 4-7, 8-11 with 12-15 */
        u[2 * m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88);
        u[2 * m + 1] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xDD);
        u[8 + 2 * m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
        u[8 + 2 * m + 1] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xDD);
    }
    for (int m = 0; m < 4; m++) {
        const __m512 c[4] = {_mm512_shuffle_f32x4(u[2 * m], u[8 + 2 * m], 0x88),          /* column m */
                             _mm512_shuffle_f32x4(u[2 * m + 1], u[8 + 2 * m + 1], 0x88),  /* m + 4 */
                             _mm512_shuffle_f32x4(u[2 * m], u[8 + 2 * m], 0xDD),          /* m + 8 */
                             _mm512_shuffle_f32x4(u[2 * m + 1], u[8 + 2 * m + 1], 0xDD)}; /* m + 12 */
        for (int i = 0; i < 4; i++)
            if (m + 4 * i < cols)
                _mm512_store_ps(dst + (m + 4 * i) * GEMM_NR, c[i]);
    }
}

/* Panel block [kc][64] of columns n0.. (nn of them, masks m) and k0..:
 * transposed from w [n_cols][ldw], or copied from w [k][ldw] (w_kn). */
AVX512 static void pack_panel(float *wp, const float *w, int64_t ldw, int64_t n0, int64_t nn, int64_t k0,
                              int64_t kc, const __mmask16 m[4], int w_kn)
{
    if (w_kn) { /* rows of w are already panel rows */
        for (int64_t kk = 0; kk < kc; kk++)
            for (int j = 0; j < 4; j++)
                _mm512_store_ps(wp + kk * GEMM_NR + 16 * j,
                                _mm512_maskz_loadu_ps(m[j], w + (k0 + kk) * ldw + n0 + 16 * j));
        return;
    }
    for (int64_t j0 = 0; j0 < GEMM_NR; j0 += 16)
        for (int64_t kk = 0; kk < kc; kk += 16)
            pack_16x16(wp + kk * GEMM_NR + j0, w + (n0 + j0) * ldw + k0 + kk, ldw, nn - j0,
                       kc - kk < 16 ? kc - kk : 16);
}

/* w_kn: w is stored [k][n_cols] (ldw apart), not [n_cols][k]. A panel is
 * packed whole ([k][64], up to 512 KiB for k = 2048: it stays in L2) when
 * that buffer can be had: its 64 weight rows are then read front to back,
 * which the prefetchers follow (per k block, they were 64 short streams). */
AVX512 static void gemm_avx512(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w, int64_t ldw,
                               int64_t n_tok, int64_t n_cols, int64_t k, int w_kn, int acc)
{
    float wp_block[GEMM_KC * GEMM_NR] __attribute__((aligned(64))); /* one packed block [kc][64] */
    float xt[GEMM_MR * GEMM_KC], yt[GEMM_MR * GEMM_NR] = {0};        /* last, partial token tile */
    const int64_t k_pad = (k + 15) / 16 * 16; /* pack_16x16 writes whole 16-row groups of k */
    float *wp_all = k > GEMM_KC ? aligned_alloc(64, (size_t)k_pad * GEMM_NR * sizeof(float)) : NULL;
    for (int64_t n0 = 0; n0 < n_cols; n0 += GEMM_NR) {
        const int64_t nn = n_cols - n0 < GEMM_NR ? n_cols - n0 : GEMM_NR;
        __mmask16 m[4];
        for (int j = 0; j < 4; j++) {
            int64_t left = nn - 16 * j;
            m[j] = left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
        }
        if (wp_all)
            pack_panel(wp_all, w, ldw, n0, nn, 0, k, m, w_kn);
        for (int64_t k0 = 0; k0 < k; k0 += GEMM_KC) {
            const int64_t kc = k - k0 < GEMM_KC ? k - k0 : GEMM_KC;
            const float *wp = wp_all ? wp_all + k0 * GEMM_NR : wp_block;
            if (!wp_all)
                pack_panel(wp_block, w, ldw, n0, nn, k0, kc, m, w_kn);
            int64_t t0 = 0;
            for (; t0 + GEMM_MR <= n_tok; t0 += GEMM_MR)
                gemm_tile(y + t0 * ldy + n0, ldy, x + t0 * ldx + k0, ldx, wp, kc, k0 > 0 || acc, m);
            if (t0 < n_tok) { /* the same FMA chains on a zero-padded copy */
                const int64_t nt = n_tok - t0;
                memset(xt, 0, sizeof xt);
                for (int64_t r = 0; r < nt; r++) {
                    memcpy(xt + r * GEMM_KC, x + (t0 + r) * ldx + k0, (size_t)kc * sizeof(float));
                    memcpy(yt + r * GEMM_NR, y + (t0 + r) * ldy + n0, (size_t)nn * sizeof(float));
                }
                gemm_tile(yt, GEMM_NR, xt, GEMM_KC, wp, kc, k0 > 0 || acc, m);
                for (int64_t r = 0; r < nt; r++)
                    memcpy(y + (t0 + r) * ldy + n0, yt + r * GEMM_NR, (size_t)nn * sizeof(float));
            }
        }
    }
    free(wp_all);
}
#endif

#ifdef QK_GEMM_AVX512
static atomic_int g_gemm_have = -1; /* chosen once */
#endif

int qk_forward_gemm_available(void)
{
#ifdef QK_GEMM_AVX512
    int h = atomic_load(&g_gemm_have);
    if (h < 0) {
        __builtin_cpu_init();
        const char *e = getenv("QK_SIMD"); /* avx2 or none: OpenBLAS instead */
        h = __builtin_cpu_supports("avx512f") != 0 && !(e && (!strcmp(e, "avx2") || !strcmp(e, "none")));
        atomic_store(&g_gemm_have, h);
    }
    return h;
#else
    return 0;
#endif
}

int qk_forward_gemm_enable(int on)
{
#ifdef QK_GEMM_AVX512
    atomic_store(&g_gemm_have, -1);
    const int h = qk_forward_gemm_available();
    atomic_store(&g_gemm_have, on ? h : 0);
    return on ? h : 0;
#else
    (void)on;
    return 0;
#endif
}

/* ------------------------------------------------------- vector exp
 *
 * e^x for 16 floats: n = round(x/ln2) by the 1.5*2^23 shift, b = x - n*ln2
 * (ln2 in two parts), e^b by a degree-5 polynomial, scaled by 2^n with
 * vscalefps; |n| > 192 gives 0 or +inf. The algorithm of ARM's optimized
 * routines that ggml also uses: within 1.5 ulp of e^x (glibc's expf:
 * 0.5), 16 values in the time expf takes for one. */
#ifdef QK_GEMM_AVX512
AVX512 static __m512 exp16(__m512 x)
{
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                        _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
        u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
    const __m512 e = _mm512_scalef_ps(j, n);
    const __mmask16 far = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
    if (!far)
        return e;
    const __mmask16 neg = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ);
    return _mm512_mask_blend_ps(far, e, _mm512_mask_blend_ps(neg, _mm512_set1_ps(INFINITY), _mm512_setzero_ps()));
}

AVX512 static void exp_shift_avx512(float *y, const float *x, float m, int64_t n)
{
    const __m512 vm = _mm512_set1_ps(m);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm)));
    }
}

AVX512 static double sum_exp_shift_avx512(const float *x, float m, int64_t n)
{
    const __m512 vm = _mm512_set1_ps(m);
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm)));
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

AVX512 static void swiglu_avx512(float *g, const float *u, int64_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(k, g + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        _mm512_mask_storeu_ps(g + i, k, _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)),
                                                     _mm512_maskz_loadu_ps(k, u + i)));
    }
}
#endif

void qk_forward_exp_shift(float *y, const float *x, float m, int64_t n)
{
#ifdef QK_GEMM_AVX512
    if (qk_forward_gemm_available()) {
        exp_shift_avx512(y, x, m, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        y[i] = expf(x[i] - m);
}

double qk_forward_sum_exp_shift(const float *x, float m, int64_t n)
{
#ifdef QK_GEMM_AVX512
    if (qk_forward_gemm_available())
        return sum_exp_shift_avx512(x, m, n);
#endif
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += exp((double)x[i] - m);
    return s;
}

void qk_forward_swiglu_row(float *g, const float *u, int64_t n)
{
#ifdef QK_GEMM_AVX512
    if (qk_forward_gemm_available()) {
        swiglu_avx512(g, u, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void qk_forward_gemm(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t n_tok,
                     int64_t n_cols, int64_t k)
{
#ifdef QK_GEMM_AVX512
    gemm_avx512(y, ldy, x, ldx, w, ldw, n_tok, n_cols, k, 0, 0);
#else
    (void)y, (void)ldy, (void)x, (void)ldx, (void)w, (void)ldw, (void)n_tok, (void)n_cols, (void)k;
    assert(!"qk_forward_gemm without AVX-512");
#endif
}

/* y [m][ldy] = x [m][k] w^T with w [n][ldw], or x w with w [k][ldw]
 * (w_kn): gemm_avx512 on AVX-512 CPUs, OpenBLAS otherwise. */
static void matmul(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t m,
                   int64_t n, int64_t k, int w_kn)
{
#ifdef QK_GEMM_AVX512
    if (qk_forward_gemm_available()) {
        gemm_avx512(y, ldy, x, ldx, w, ldw, m, n, k, w_kn, 0);
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, CblasNoTrans, w_kn ? CblasNoTrans : CblasTrans, (int)m, (int)n, (int)k, 1.0f, x,
                (int)ldx, w, (int)ldw, 0.0f, y, (int)ldy);
}

#ifdef QK_GEMM_AVX512
AVX512 static void sfma_avx512(float *y, const float *x, float a, int64_t n)
{
    const __m512 va = _mm512_set1_ps(a);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        _mm512_storeu_ps(y + k, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + k), _mm512_loadu_ps(y + k)));
    if (k < n) {
        const __mmask16 m = (__mmask16)((1u << (n - k)) - 1);
        _mm512_mask_storeu_ps(y + k, m,
                              _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + k), _mm512_maskz_loadu_ps(m, y + k)));
    }
}
#endif

#ifdef QK_GEMM_AVX512
/* The double kernel of qk_dgemm_kn: gemm_avx512's scheme for W [k][n]
 * stored row-major, 8 doubles per zmm: panels of 32 columns, copied
 * [kc][32] per k block (rows of W are panel rows already), swept by a
 * 6-row x 32-column register tile (24 accumulators). */
#define DGEMM_NR 32
#define DGEMM_KC 128
#define DGEMM_ROW(r)                                                                                           \
    __m512d c##r##0, c##r##1, c##r##2, c##r##3;                                                                \
    if (accumulate) {                                                                                          \
        c##r##0 = _mm512_maskz_loadu_pd(m[0], y + r * ldy);                                                    \
        c##r##1 = _mm512_maskz_loadu_pd(m[1], y + r * ldy + 8);                                                \
        c##r##2 = _mm512_maskz_loadu_pd(m[2], y + r * ldy + 16);                                               \
        c##r##3 = _mm512_maskz_loadu_pd(m[3], y + r * ldy + 24);                                               \
    } else {                                                                                                   \
        c##r##0 = c##r##1 = c##r##2 = c##r##3 = _mm512_setzero_pd();                                           \
    }
#define DGEMM_FMA(r)                                                                                           \
    do {                                                                                                       \
        const __m512d a = _mm512_set1_pd(x[r * ldx + kk]);                                                     \
        c##r##0 = _mm512_fmadd_pd(a, b0, c##r##0);                                                             \
        c##r##1 = _mm512_fmadd_pd(a, b1, c##r##1);                                                             \
        c##r##2 = _mm512_fmadd_pd(a, b2, c##r##2);                                                             \
        c##r##3 = _mm512_fmadd_pd(a, b3, c##r##3);                                                             \
    } while (0)
#define DGEMM_STORE(r)                                                                                         \
    do {                                                                                                       \
        _mm512_mask_storeu_pd(y + r * ldy, m[0], c##r##0);                                                     \
        _mm512_mask_storeu_pd(y + r * ldy + 8, m[1], c##r##1);                                                 \
        _mm512_mask_storeu_pd(y + r * ldy + 16, m[2], c##r##2);                                                \
        _mm512_mask_storeu_pd(y + r * ldy + 24, m[3], c##r##3);                                                \
    } while (0)

AVX512 static void dgemm_tile(double *y, int64_t ldy, const double *x, int64_t ldx, const double *wp, int64_t kc,
                              int accumulate, const __mmask8 m[4])
{
    DGEMM_ROW(0) DGEMM_ROW(1) DGEMM_ROW(2) DGEMM_ROW(3) DGEMM_ROW(4) DGEMM_ROW(5)
    for (int64_t kk = 0; kk < kc; kk++) {
        const double *b = wp + kk * DGEMM_NR;
        const __m512d b0 = _mm512_load_pd(b), b1 = _mm512_load_pd(b + 8), b2 = _mm512_load_pd(b + 16),
                      b3 = _mm512_load_pd(b + 24);
        DGEMM_FMA(0);
        DGEMM_FMA(1);
        DGEMM_FMA(2);
        DGEMM_FMA(3);
        DGEMM_FMA(4);
        DGEMM_FMA(5);
    }
    DGEMM_STORE(0);
    DGEMM_STORE(1);
    DGEMM_STORE(2);
    DGEMM_STORE(3);
    DGEMM_STORE(4);
    DGEMM_STORE(5);
}

AVX512 static void dgemm_avx512(double *y, int64_t ldy, const double *x, int64_t ldx, const double *w, int64_t ldw,
                                int64_t m_rows, int64_t n_cols, int64_t k, int acc)
{
    double wp[DGEMM_KC * DGEMM_NR] __attribute__((aligned(64)));
    double xt[GEMM_MR * DGEMM_KC], yt[GEMM_MR * DGEMM_NR];
    for (int64_t n0 = 0; n0 < n_cols; n0 += DGEMM_NR) {
        const int64_t nn = n_cols - n0 < DGEMM_NR ? n_cols - n0 : DGEMM_NR;
        __mmask8 m[4];
        for (int j = 0; j < 4; j++) {
            int64_t left = nn - 8 * j;
            m[j] = left >= 8 ? (__mmask8)0xFF : left > 0 ? (__mmask8)((1u << left) - 1) : 0;
        }
        for (int64_t k0 = 0; k0 < k; k0 += DGEMM_KC) {
            const int64_t kc = k - k0 < DGEMM_KC ? k - k0 : DGEMM_KC;
            for (int64_t kk = 0; kk < kc; kk++)
                for (int j = 0; j < 4; j++)
                    _mm512_store_pd(wp + kk * DGEMM_NR + 8 * j,
                                    _mm512_maskz_loadu_pd(m[j], w + (k0 + kk) * ldw + n0 + 8 * j));
            const int accumulate = k0 > 0 || acc;
            int64_t t0 = 0;
            for (; t0 + GEMM_MR <= m_rows; t0 += GEMM_MR)
                dgemm_tile(y + t0 * ldy + n0, ldy, x + t0 * ldx + k0, ldx, wp, kc, accumulate, m);
            if (t0 < m_rows) { /* the same FMA chains on a zero-padded copy */
                const int64_t nt = m_rows - t0;
                memset(xt, 0, sizeof xt);
                memset(yt, 0, sizeof yt);
                for (int64_t r = 0; r < nt; r++) {
                    memcpy(xt + r * DGEMM_KC, x + (t0 + r) * ldx + k0, (size_t)kc * sizeof(double));
                    memcpy(yt + r * DGEMM_NR, y + (t0 + r) * ldy + n0, (size_t)nn * sizeof(double));
                }
                dgemm_tile(yt, DGEMM_NR, xt, DGEMM_KC, wp, kc, accumulate, m);
                for (int64_t r = 0; r < nt; r++)
                    memcpy(y + (t0 + r) * ldy + n0, yt + r * DGEMM_NR, (size_t)nn * sizeof(double));
            }
        }
    }
}
#endif

void qk_dgemm_kn(double *y, int64_t ldy, const double *x, int64_t ldx, const double *w, int64_t ldw, int64_t m,
                 int64_t n, int64_t k, int acc)
{
#ifdef QK_GEMM_AVX512
    if (qk_forward_gemm_available()) {
        dgemm_avx512(y, ldy, x, ldx, w, ldw, m, n, k, acc);
        return;
    }
#endif
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0, x, (int)ldx, w, (int)ldw,
                acc ? 1.0 : 0.0, y, (int)ldy);
}

#ifdef QK_GEMM_AVX512
AVX512 static void dfnma_avx512(double *y, const double *x, double a, int64_t n)
{
    const __m512d va = _mm512_set1_pd(a);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        _mm512_storeu_pd(y + k, _mm512_fnmadd_pd(va, _mm512_loadu_pd(x + k), _mm512_loadu_pd(y + k)));
    if (k < n) {
        const __mmask8 m = (__mmask8)((1u << (n - k)) - 1);
        _mm512_mask_storeu_pd(y + k, m, _mm512_fnmadd_pd(va, _mm512_maskz_loadu_pd(m, x + k),
                                                         _mm512_maskz_loadu_pd(m, y + k)));
    }
}
#endif

void qk_dfnma(double *y, const double *x, double a, int64_t n)
{
#ifdef QK_GEMM_AVX512
    if (qk_forward_gemm_available()) {
        dfnma_avx512(y, x, a, n);
        return;
    }
#endif
    for (int64_t k = 0; k < n; k++)
        y[k] -= a * x[k];
}

void qk_sfma(float *y, const float *x, float a, int64_t n)
{
#ifdef QK_GEMM_AVX512
    if (qk_forward_gemm_available()) {
        sfma_avx512(y, x, a, n);
        return;
    }
#endif
    cblas_saxpy((int)n, a, x, 1, y, 1);
}

void qk_sgemm_kn(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t m,
                 int64_t n, int64_t k, int acc)
{
#ifdef QK_GEMM_AVX512
    if (qk_forward_gemm_available()) {
        gemm_avx512(y, ldy, x, ldx, w, ldw, m, n, k, 1, acc);
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)ldx, w, (int)ldw,
                acc ? 1.0f : 0.0f, y, (int)ldy);
}

void qk_forward_attn_block(float *out, int64_t out_stride, const float *q, int64_t q_stride, const float *k,
                           const float *v, int64_t kv_stride, int64_t i0, int64_t nb, int64_t head_dim,
                           int64_t window, float scale, float *scratch, int round_p_f16)
{
    /* keys [k0, k1) cover every query of the block */
    const int64_t k0 = window > 0 && i0 - window + 1 > 0 ? i0 - window + 1 : 0;
    const int64_t k1 = i0 + nb, nk = k1 - k0;
    float *p = scratch; /* [nb][nk] scores, then probabilities */
    /* p = scale * q[i0..] k[k0..]^T (the sum, then one product, as sgemm's alpha) */
    matmul(p, nk, q + i0 * q_stride, q_stride, k + k0 * kv_stride, kv_stride, nb, nk, head_dim, 0);
    for (int64_t e = 0; e < nb * nk; e++)
        p[e] *= scale;
    for (int64_t r = 0; r < nb; r++) {
        const int64_t i = i0 + r;
        const int64_t lo = (window > 0 && i - window + 1 > k0 ? i - window + 1 : k0) - k0, hi = i - k0 + 1;
        float *pr = p + r * nk;
        float mx = -INFINITY;
        for (int64_t j = lo; j < hi; j++)
            mx = pr[j] > mx ? pr[j] : mx;
        qk_forward_exp_shift(pr + lo, pr + lo, mx, hi - lo);
        /* four partial sums: a single double chain would serialise on its latency */
        double sum[4] = {0, 0, 0, 0};
        int64_t j = lo;
        for (; j + 4 <= hi; j += 4)
            for (int u = 0; u < 4; u++)
                sum[u] += (double)pr[j + u];
        for (; j < hi; j++)
            sum[0] += (double)pr[j];
        /* the sum is >= 1: the maximum contributes e^0 */
        const float inv = (float)(1.0 / ((sum[0] + sum[1]) + (sum[2] + sum[3])));
        for (j = 0; j < lo; j++)
            pr[j] = 0.0f;
        for (; j < hi; j++)
            pr[j] *= inv;
        for (; j < nk; j++)
            pr[j] = 0.0f;
        if (round_p_f16)
            qk_forward_round_f16(pr, nk);
    }
    /* out[i0..] = p v[k0..] */
    matmul(out + i0 * out_stride, out_stride, p, nk, v + k0 * kv_stride, kv_stride, nb, head_dim, nk, 1);
}

/* ------------------------------------------------- llama.cpp emulation
 *
 * The golden logits (build b4748) fit ggml's AVX2 code paths (8-lane
 * vectors), not its AVX-512 ones: with 16-lane sums the fox sentence's
 * logits come within 9.1e-4 of llama.cpp's and its total NLL within 8.7e-4;
 * with 8-lane sums within 7.9e-4 and 3.5e-5 (docs/TOOLS.md). So this is
 * ggml's AVX2+FMA CPU backend, reimplemented from its documented behaviour. */
#define GGML_LANES 8

float qk_forward_expf_ggml(float x)
{
    const float r = 0x1.8p23f; /* adding it rounds x/ln2 to an integer */
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x)); /* x - n*ln2, ln2 in two parts */
    const float u = b * b;
    /* e^b - 1 ~ b*(c1 + c2 b + c3 b^2 + c4 b^3 + c5 b^4), evaluated as ggml does */
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                         0x1.ffffecp-1f * b);
    if (fabsf(n) > 126.0f) { /* the out-of-range lanes: scale in two steps, or flush */
        if (fabsf(n) > 192.0f)
            return n <= 0.0f ? 0.0f : INFINITY;
        const float s1 = n <= 0.0f ? 0x1p-125f : 0x1p127f; /* 2^-125 or 2^127 */
        const float s2 = ldexpf(1.0f, (int)n + (n <= 0.0f ? 125 : -127));
        return fmaf(s2, j, s2) * s1;
    }
    const float k = ldexpf(1.0f, (int)n); /* 2^n */
    return fmaf(j, k, k);
}

float qk_forward_hsum8(const float *v)
{
    /* hsum(__m256) of llamafile's sgemm and ggml's softmax: fold the
     * halves, then (0+2) + (1+3) */
    float u[4];
    for (int i = 0; i < 4; i++)
        u[i] = v[i] + v[i + 4];
    return (u[0] + u[2]) + (u[1] + u[3]);
}

#ifdef QK_GEMM_AVX512
/* The tinyBLAS case with the FMA instruction itself, bit for bit the
 * scalar loop below (each lane's fmaf chain), 20x faster. */
__attribute__((target("avx2,fma"))) static float dot_ggml_tinyblas_avx2(const float *x, const float *w, int64_t k)
{
    __m256 acc = _mm256_setzero_ps();
    for (int64_t l = 0; l < k; l += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + l), _mm256_loadu_ps(x + l), acc);
    float v[8];
    _mm256_storeu_ps(v, acc);
    return qk_forward_hsum8(v);
}

static int have_avx2_fma(void)
{
    static atomic_int have = -1; /* chosen once */
    int h = atomic_load(&have);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        atomic_store(&have, h);
    }
    return h;
}
#endif

float qk_forward_dot_ggml(const float *x, const float *w, int64_t k, int f16)
{
    const int W = GGML_LANES;
#ifdef QK_GEMM_AVX512
    if (k % W == 0 && have_avx2_fma())
        return dot_ggml_tinyblas_avx2(x, w, k);
#endif
    if (k % W == 0) { /* llamafile's tinyBLAS */
        float acc[GGML_LANES] = {0};
        for (int64_t l = 0; l < k; l += W)
            for (int r = 0; r < W; r++)
                acc[r] = fmaf(w[l + r], x[l + r], acc[r]);
        return qk_forward_hsum8(acc);
    }
    /* ggml_vec_dot_f32 / _f16: four vectors over steps of 32 */
    float acc[4][GGML_LANES] = {{0}};
    const int64_t np = k & ~(int64_t)(4 * W - 1);
    for (int64_t i = 0; i < np; i += 4 * W)
        for (int j = 0; j < 4; j++)
            for (int r = 0; r < W; r++)
                acc[j][r] = fmaf(x[i + W * j + r], w[i + W * j + r], acc[j][r]);
    for (int r = 0; r < W; r++) {
        acc[0][r] += acc[2][r];
        acc[1][r] += acc[3][r];
    }
    for (int r = 0; r < W; r++)
        acc[0][r] += acc[1][r];
    float t[4]; /* GGML_F32x8_REDUCE: fold the halves, then two horizontal adds */
    for (int i = 0; i < 4; i++)
        t[i] = acc[0][i] + acc[0][i + 4];
    float s = (t[0] + t[1]) + (t[2] + t[3]);
    if (f16) { /* leftovers in double (F16 products are exact in float) */
        double d = s;
        for (int64_t i = np; i < k; i++)
            d += (double)(x[i] * w[i]);
        return (float)d;
    }
    for (int64_t i = np; i < k; i++) /* leftovers; gcc -mfma contracts sumf += x*y */
        s = fmaf(x[i], w[i], s);
    return s;
}

void qk_forward_swiglu_row_ggml(float *g, const float *u, int64_t n)
{
    int64_t i = 0;
    for (; i + GGML_LANES <= n; i += GGML_LANES) /* ggml_v_silu */
        for (int e = 0; e < GGML_LANES; e++)
            g[i + e] = g[i + e] / (1.0f + qk_forward_expf_ggml(0.0f - g[i + e])) * u[i + e];
    for (; i < n; i++) /* ggml_silu_f32 */
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void qk_forward_attn_block_ggml(float *out, int64_t out_stride, const float *q, int64_t q_stride, const float *k,
                                const float *v, int64_t kv_stride, int64_t i0, int64_t nb, int64_t head_dim,
                                int64_t window, float scale, float *scratch)
{
    const int W = GGML_LANES;
    for (int64_t r = 0; r < nb; r++) {
        const int64_t i = i0 + r;
        const int64_t lo = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
        /* the KV cells [0, n) in whole vectors; masked ones (-inf) give 0
         * and add nothing, so the cache's padding does not matter */
        const int64_t n = (i + W) / W * W;
        const float *qi = q + i * q_stride;
        float *p = scratch; /* [n] */
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            p[j] = j >= lo && j <= i ? qk_forward_dot_ggml(qi, k + j * kv_stride, head_dim, 1) * scale : -INFINITY;
            mx = p[j] > mx ? p[j] : mx;
        }
        double sum = 0; /* ggml_vec_soft_max_f32: vector sums in float, added in double */
        for (int64_t j = 0; j < n; j += W) {
            for (int e = 0; e < W; e++)
                p[j + e] = p[j + e] == -INFINITY ? 0.0f : qk_forward_expf_ggml(p[j + e] - mx);
            sum += (double)qk_forward_hsum8(p + j);
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < n; j++) /* scaled, then converted to F16 for the p.v matmul */
            p[j] = qk_fp16_to_f32(qk_f32_to_fp16(p[j] * inv));
        /* out[d] = p.v[:, d] by tinyBLAS over the cells (V is stored transposed) */
        float *o = out + i * out_stride;
        for (int64_t d = 0; d < head_dim; d++) {
            float acc[GGML_LANES] = {0};
            for (int64_t j = lo; j <= i; j++)
                acc[j % W] = fmaf(v[j * kv_stride + d], p[j], acc[j % W]);
            o[d] = qk_forward_hsum8(acc);
        }
    }
}

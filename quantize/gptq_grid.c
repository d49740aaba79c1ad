/* Block types as "fixed scales + codes" (see gptq_grid.h): per-type code
 * placement, the affine map of every sub-block read with the decoder's own
 * float operations, and the scale choosers.
 *
 * Byte offsets below follow the block structs of formats/ggml_blocks.h. */
/* Values must equal the decoder's bit for bit: no FMA contraction. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "gptq_grid.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "ggml_blocks.h"
#include "quantkit/common.h"
#include "quantkit/ggml_types.h"
#include "quantkit/quantize.h"

static inline float rd_half(const uint8_t *p) { return qk_fp16_to_f32(qk_rd_u16(p)); }
static inline float fp16_round(float f) { return qk_fp16_to_f32(qk_f32_to_fp16(f)); }

/* ------------------------------------------------------------ nearest */

int gq_nearest(const gq_type *t, const gq_sub *p, float x, float *v)
{
    if (p->a == 0.0f) {
        *v = gq_value(t, p, t->zero_code);
        return t->zero_code;
    }
    /* position in level space, then the exact values of the neighbours decide */
    float u = (x - p->b) / p->a - (float)p->c;
    int q;
    if (t->lev_tab) {
        const int8_t *L = t->lev_tab;
        if (!(u > L[0]))
            q = 0;
        else if (!(u < L[t->nlev - 1]))
            q = t->nlev - 1;
        else {
            int lo = 0, hi = t->nlev - 1;
            while (hi - lo > 1) {
                int mid = (lo + hi) / 2;
                if (u < L[mid])
                    hi = mid;
                else
                    lo = mid;
            }
            q = u - L[lo] < L[hi] - u ? lo : hi;
        }
    } else {
        float r = nearbyintf(u) - (float)t->lev_off;
        q = !(r > 0.0f) ? 0 : r >= (float)(t->nlev - 1) ? t->nlev - 1 : (int)r;
    }
    int best = q;
    float bv = gq_value(t, p, q), be = fabsf(x - bv);
    for (int k = q - 1; k <= q + 1; k += 2) {
        if (k < 0 || k >= t->nlev)
            continue;
        float kv = gq_value(t, p, k), ke = fabsf(x - kv);
        if (ke < be || (ke == be && k < best)) {
            best = k;
            bv = kv;
            be = ke;
        }
    }
    *v = bv;
    return best;
}

float gq_theta_get(const gq_type *t, const uint8_t *blk, int k) { return rd_half(blk + t->theta_off[k]); }

void gq_theta_set(const gq_type *t, uint8_t *blk, int k, float v)
{
    qk_wr_u16(blk + t->theta_off[k], qk_f32_to_fp16(v));
}

void gq_decode(const gq_type *t, const uint8_t *blk, float *out)
{
    if (t->type >= 0) {
        qk_type_get(t->type)->to_float(blk, out, t->bs);
        return;
    }
    /* the GPTQ reader's formula: (float)(q - z) * s */
    const float s = rd_half(blk);
    const int z = qk_rd_u16(blk + 2);
    for (int j = 0; j < t->bs; j++)
        out[j] = (float)(blk[4 + j] - z) * s;
}

/* ------------------------------------------------------- 32-element types */

/* nibble j of a 32-element block: low nibble of qs[j] (j < 16), high of qs[j-16] */
static inline void set_nib32(uint8_t *qs, int j, int q)
{
    if (j < 16)
        qs[j] = (uint8_t)((qs[j] & 0xf0) | q);
    else
        qs[j - 16] = (uint8_t)((qs[j - 16] & 0x0f) | (q << 4));
}
static inline int get_nib32(const uint8_t *qs, int j) { return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4; }

static void set_qh(uint8_t *qh, int j, int bit)
{
    uint32_t h = qk_rd_u32(qh);
    h = (h & ~(1u << j)) | ((uint32_t)bit << j);
    qk_wr_u32(qh, h);
}

/* Q4_0 / IQ4_NL: d[2] qs[16]; Q4_1: d m qs; Q5_0: d qh[4] qs; Q5_1: d m qh qs; Q8_0: d qs[32] */
static int qs_off(int type)
{
    switch (type) {
    case QK_TYPE_Q4_1: return 4;
    case QK_TYPE_Q5_0: return 6;
    case QK_TYPE_Q5_1: return 8;
    default: return 2;
    }
}

static void set_code_32(const gq_type *t, uint8_t *blk, int j, int q)
{
    switch (t->type) {
    case QK_TYPE_Q8_0: blk[2 + j] = (uint8_t)(int8_t)(q - 127); return;
    case QK_TYPE_Q5_0: set_qh(blk + 2, j, q >> 4); break;
    case QK_TYPE_Q5_1: set_qh(blk + 4, j, q >> 4); break;
    default: break;
    }
    set_nib32(blk + qs_off(t->type), j, q & 15);
}

static int get_code_32(const gq_type *t, const uint8_t *blk, int j)
{
    switch (t->type) {
    case QK_TYPE_Q8_0: return (int8_t)blk[2 + j] + 127;
    case QK_TYPE_Q5_0: return get_nib32(blk + 6, j) | (int)((qk_rd_u32(blk + 2) >> j) & 1) << 4;
    case QK_TYPE_Q5_1: return get_nib32(blk + 8, j) | (int)((qk_rd_u32(blk + 4) >> j) & 1) << 4;
    default: return get_nib32(blk + qs_off(t->type), j);
    }
}

static void params_32(const gq_type *t, const uint8_t *blk, int s, gq_sub *p)
{
    (void)s;
    p->a = rd_half(blk);
    p->b = (t->type == QK_TYPE_Q4_1 || t->type == QK_TYPE_Q5_1) ? rd_half(blk + 2) : 0.0f;
    p->c = 0;
}

static void coef_1(const gq_type *t, const uint8_t *blk, int s, float *ca, float *cb)
{
    (void)t, (void)blk, (void)s;
    *ca = 1.0f;
    *cb = 1.0f;
}

/* ------------------------------------------------------------- choosers */

/* Weighted squared error of x under the single affine map p, codes re-picked. */
static double sse_map(const gq_type *t, const gq_sub *p, const float *x, const float *w, int n)
{
    double e = 0;
    for (int j = 0; j < n; j++) {
        float v;
        gq_nearest(t, p, x[j], &v);
        double d = (double)x[j] - v;
        e += (w ? w[j] : 1.0) * d * d;
    }
    return e;
}

/* Weighted least-squares scale for x with the codes nearest under p:
 * a = sum w x l / sum w l^2 (l = lev + c), or 0 when undefined. */
static float refit_a(const gq_type *t, const gq_sub *p, const float *x, const float *w, int n)
{
    double sxl = 0, sll = 0;
    for (int j = 0; j < n; j++) {
        float v;
        int q = gq_nearest(t, p, x[j], &v);
        double l = (double)gq_lev(t, q) + p->c, wj = w ? w[j] : 1.0;
        sxl += wj * ((double)x[j] - p->b) * l;
        sll += wj * l * l;
    }
    return sll > 0 ? (float)(sxl / sll) : 0.0f;
}

/* One scale a for a symmetric block (b = 0, fixed c): map the value of
 * largest magnitude to either end of the level range, shrunk or stretched in
 * small steps, refit each candidate by weighted least squares, and keep the
 * fp16 scale with the least weighted error (codes re-picked with it). */
static float search_scale(const gq_type *t, const float *x, const float *w, int n, int c)
{
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    if (!(amax > 1e-30f))
        return 0.0f;
    const float ends[2] = {gq_lev(t, 0) + (float)c, gq_lev(t, t->nlev - 1) + (float)c};
    gq_sub p = {0, 0, c};
    float best_a = 0;
    double best = INFINITY;
    for (int e = 0; e < 2; e++) {
        if (ends[e] == 0.0f)
            continue;
        for (int k = -10; k <= 14; k++) {
            float cand = max / (ends[e] * (1.0f - 0.02f * (float)k));
            for (int pass = 0; pass < 2; pass++) {
                p.a = fp16_round(cand);
                if (!isfinite(p.a) || p.a == 0.0f)
                    break;
                double err = sse_map(t, &p, x, w, n);
                if (err < best) {
                    best = err;
                    best_a = p.a;
                }
                cand = refit_a(t, &p, x, w, n);
            }
        }
    }
    return best_a;
}

/* Weighted least-squares (a, b) of x ~ a*l + b for the codes nearest under p. */
static int refit_ab(const gq_type *t, const gq_sub *p, const float *x, const float *w, int n, float *a, float *b)
{
    double sw = 0, sl = 0, sll = 0, sx = 0, slx = 0;
    for (int j = 0; j < n; j++) {
        float v;
        double l = gq_lev(t, gq_nearest(t, p, x[j], &v)), wj = w ? w[j] : 1.0;
        sw += wj;
        sl += wj * l;
        sll += wj * l * l;
        sx += wj * x[j];
        slx += wj * l * x[j];
    }
    double D = sw * sll - sl * sl;
    if (!(D > 0))
        return -1;
    *a = (float)((sw * slx - sl * sx) / D);
    *b = (float)((sll * sx - sl * slx) / D);
    return 0;
}

/* (a, b) for an asymmetric block (Q4_1, Q5_1: x = a*q + b, q in [0, nmax]):
 * ranges [min, max] shrunk from either side in steps, each refit by
 * weighted least squares, the fp16 pair with the least weighted error wins. */
static void search_affine(const gq_type *t, const float *x, const float *w, int n, float *out_a, float *out_b)
{
    float mn = x[0], mx = x[0];
    for (int j = 1; j < n; j++) {
        mn = x[j] < mn ? x[j] : mn;
        mx = x[j] > mx ? x[j] : mx;
    }
    const int nmax = t->nlev - 1;
    gq_sub p = {0, fp16_round(mn), 0};
    *out_a = 0;
    *out_b = p.b;
    if (!(mx - mn > 1e-30f))
        return;
    double best = INFINITY;
    for (int k = 0; k <= 12; k++) {
        for (int side = 0; side < (k ? 3 : 1); side++) {
            /* shrink the range by 3% steps from the top (side 0), the bottom (1) or both (2) */
            float f = 0.03f * (float)k, r = mx - mn;
            float lo = mn + (side == 1 ? f * r : side == 2 ? 0.5f * f * r : 0.0f);
            float hi = mx - (side == 0 ? f * r : side == 2 ? 0.5f * f * r : 0.0f);
            float a = (hi - lo) / (float)nmax, b = lo;
            for (int pass = 0; pass < 2; pass++) {
                p.a = fp16_round(a);
                p.b = fp16_round(b);
                if (!isfinite(p.a) || !isfinite(p.b))
                    break;
                double err = sse_map(t, &p, x, w, n);
                if (err < best) {
                    best = err;
                    *out_a = p.a;
                    *out_b = p.b;
                }
                if (refit_ab(t, &p, x, w, n, &a, &b))
                    break;
            }
        }
    }
}

/* Codes nearest under the stored scales, for every element. */
static void fill_codes(const gq_type *t, const float *x, uint8_t *blk)
{
    gq_sub p;
    for (int j = 0; j < t->bs; j++) {
        if (j % t->sub == 0)
            t->params(t, blk, j / t->sub, &p);
        float v;
        t->set_code(t, blk, j, gq_nearest(t, &p, x[j], &v));
    }
}

static void choose_32(const gq_type *t, const float *x, const float *w, uint8_t *blk, int search)
{
    const qk_type_traits *tr = qk_type_get(t->type);
    if (!search) {
        tr->from_float_ref(x, blk, t->bs, w);
        return;
    }
    memset(blk, 0, t->bytes);
    if (t->type == QK_TYPE_Q4_1 || t->type == QK_TYPE_Q5_1) {
        float a, b;
        search_affine(t, x, w, t->bs, &a, &b);
        qk_wr_u16(blk, qk_f32_to_fp16(a));
        qk_wr_u16(blk + 2, qk_f32_to_fp16(b));
    } else {
        qk_wr_u16(blk, qk_f32_to_fp16(search_scale(t, x, w, t->bs, 0)));
    }
    fill_codes(t, x, blk);
}

/* K types and IQ4_XS: the type's weighted encoder (llama.cpp's impl path
 * with w as importance) picks the sub-block scales; its SIMD copy where
 * there is one (Q4_K, Q5_K: the same bytes). */
static void choose_ref(const gq_type *t, const float *x, const float *w, uint8_t *blk, int search)
{
    (void)search;
    const qk_type_traits *tr = qk_type_get(t->type);
    (tr->from_float ? tr->from_float : tr->from_float_ref)(x, blk, t->bs, w);
}

/* ------------------------------------------------------------- IQ4_XS
 * d[2] scales_h[2] scales_l[4] qs[128]; sub-block ib: 32 elements, qs[16*ib..] */

static void set_code_iq4xs(const gq_type *t, uint8_t *blk, int j, int q)
{
    (void)t;
    set_nib32(blk + 8 + 16 * (j / 32), j % 32, q);
}
static int get_code_iq4xs(const gq_type *t, const uint8_t *blk, int j)
{
    (void)t;
    return get_nib32(blk + 8 + 16 * (j / 32), j % 32);
}
static int iq4xs_ls(const uint8_t *blk, int ib)
{
    const uint16_t sh = qk_rd_u16(blk + 2);
    return ((blk[4 + ib / 2] >> 4 * (ib % 2)) & 0xf) | (((sh >> 2 * ib) & 3) << 4);
}
static void params_iq4xs(const gq_type *t, const uint8_t *blk, int s, gq_sub *p)
{
    (void)t;
    const float d = rd_half(blk);
    p->a = d * (iq4xs_ls(blk, s) - 32);
    p->b = 0;
    p->c = 0;
}
static void coef_iq4xs(const gq_type *t, const uint8_t *blk, int s, float *ca, float *cb)
{
    (void)t;
    *ca = (float)(iq4xs_ls(blk, s) - 32);
    *cb = 0;
}

/* ------------------------------------------------------------ Q4_K / Q5_K
 * d dmin scales[12] (Q5_K: qh[32]) qs[128]; element e: chunk e/64, low
 * nibble of qs[32c + e%64] when e%64 < 32 else high nibble of qs[32c + e%64 - 32]. */

static void k4_scale_min(const uint8_t *q, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

static void set_code_qk45(const gq_type *t, uint8_t *blk, int e, int q)
{
    const int five = t->type == QK_TYPE_Q5_K;
    uint8_t *qs = blk + (five ? 48 : 16);
    int c = e / 64, w = e % 64, l = w % 32, hi = w >= 32;
    uint8_t *b = qs + 32 * c + l;
    *b = hi ? (uint8_t)((*b & 0x0f) | ((q & 15) << 4)) : (uint8_t)((*b & 0xf0) | (q & 15));
    if (five) {
        uint8_t *h = blk + 16 + l, bit = (uint8_t)(1u << (2 * c + hi));
        *h = (q & 16) ? (uint8_t)(*h | bit) : (uint8_t)(*h & ~bit);
    }
}
static int get_code_qk45(const gq_type *t, const uint8_t *blk, int e)
{
    const int five = t->type == QK_TYPE_Q5_K;
    const uint8_t *qs = blk + (five ? 48 : 16);
    int c = e / 64, w = e % 64, l = w % 32, hi = w >= 32;
    int q = hi ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;
    if (five && (blk[16 + l] >> (2 * c + hi) & 1))
        q |= 16;
    return q;
}
static void params_qk45(const gq_type *t, const uint8_t *blk, int s, gq_sub *p)
{
    (void)t;
    int sc, m;
    k4_scale_min(blk + 4, s, &sc, &m);
    const float d = rd_half(blk), min = rd_half(blk + 2);
    uint8_t usc = (uint8_t)sc, um = (uint8_t)m; /* the decoder multiplies by uint8_t */
    p->a = d * usc;
    p->b = -(min * um);
    p->c = 0;
}
static void coef_qk45(const gq_type *t, const uint8_t *blk, int s, float *ca, float *cb)
{
    (void)t;
    int sc, m;
    k4_scale_min(blk + 4, s, &sc, &m);
    *ca = (float)sc;
    *cb = -(float)m;
}

/* ------------------------------------------------------------------ Q6_K
 * ql[128] qh[64] scales[16] d; element e: half h = e/128, r = e%128,
 * l = r%32, quarter k = r/32: ql[64h + l + 32*(k&1)] nibble k>>1,
 * qh[128 + 32h + l] bits 2k..2k+1; sub-block e/16. */

static void set_code_q6k(const gq_type *t, uint8_t *blk, int e, int q)
{
    (void)t;
    int h = e / 128, r = e % 128, l = r % 32, k = r / 32;
    uint8_t *ql = blk + 64 * h + l + 32 * (k & 1), *qh = blk + 128 + 32 * h + l;
    *ql = (k >> 1) ? (uint8_t)((*ql & 0x0f) | ((q & 15) << 4)) : (uint8_t)((*ql & 0xf0) | (q & 15));
    *qh = (uint8_t)((*qh & ~(3u << (2 * k))) | (((unsigned)q >> 4) << (2 * k)));
}
static int get_code_q6k(const gq_type *t, const uint8_t *blk, int e)
{
    (void)t;
    int h = e / 128, r = e % 128, l = r % 32, k = r / 32;
    const uint8_t ql = blk[64 * h + l + 32 * (k & 1)], qh = blk[128 + 32 * h + l];
    return ((k >> 1) ? ql >> 4 : ql & 15) | (((qh >> (2 * k)) & 3) << 4);
}
static void params_q6k(const gq_type *t, const uint8_t *blk, int s, gq_sub *p)
{
    (void)t;
    const float d = rd_half(blk + 208);
    p->a = d * (int8_t)blk[192 + s];
    p->b = 0;
    p->c = 0;
}
static void coef_q6k(const gq_type *t, const uint8_t *blk, int s, float *ca, float *cb)
{
    (void)t;
    *ca = (float)(int8_t)blk[192 + s];
    *cb = 0;
}

/* ------------------------------------------------------------- Q3_K / Q2_K
 * 2-bit low codes: element e: half h = e/128, r = e%128, k = r/32, l = r%32:
 * bits 2k of qs[32h + l]. Q3_K: hmask[e%32] bit e/32 = high bit (set: no -4);
 * hmask[32] qs[64] scales[12] d. Q2_K: scales[16] qs[64] d dmin. */

static void set_2bit(uint8_t *qs, int e, int q)
{
    int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    uint8_t *b = qs + 32 * h + l;
    *b = (uint8_t)((*b & ~(3u << (2 * k))) | ((unsigned)(q & 3) << (2 * k)));
}
static int get_2bit(const uint8_t *qs, int e)
{
    int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    return (qs[32 * h + l] >> (2 * k)) & 3;
}

static void set_code_q3k(const gq_type *t, uint8_t *blk, int e, int q)
{
    (void)t;
    set_2bit(blk + 32, e, q);
    uint8_t *h = blk + e % 32, bit = (uint8_t)(1u << (e / 32));
    *h = (q & 4) ? (uint8_t)(*h | bit) : (uint8_t)(*h & ~bit);
}
static int get_code_q3k(const gq_type *t, const uint8_t *blk, int e)
{
    (void)t;
    return get_2bit(blk + 32, e) | (((blk[e % 32] >> (e / 32)) & 1) << 2);
}
static int q3k_scale(const uint8_t *s, int j)
{
    int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}
static void params_q3k(const gq_type *t, const uint8_t *blk, int s, gq_sub *p)
{
    (void)t;
    const float d = rd_half(blk + 108);
    p->a = d * (int8_t)q3k_scale(blk + 96, s);
    p->b = 0;
    p->c = 0;
}
static void coef_q3k(const gq_type *t, const uint8_t *blk, int s, float *ca, float *cb)
{
    (void)t;
    *ca = (float)q3k_scale(blk + 96, s);
    *cb = 0;
}

static void set_code_q2k(const gq_type *t, uint8_t *blk, int e, int q)
{
    (void)t;
    set_2bit(blk + 16, e, q);
}
static int get_code_q2k(const gq_type *t, const uint8_t *blk, int e)
{
    (void)t;
    return get_2bit(blk + 16, e);
}
static void params_q2k(const gq_type *t, const uint8_t *blk, int s, gq_sub *p)
{
    (void)t;
    const float d = rd_half(blk + 80), min = rd_half(blk + 82);
    const uint8_t sc = blk[s];
    p->a = d * (sc & 0xF);
    p->b = -(min * (sc >> 4));
    p->c = 0;
}
static void coef_q2k(const gq_type *t, const uint8_t *blk, int s, float *ca, float *cb)
{
    (void)t;
    *ca = (float)(blk[s] & 0xF);
    *cb = -(float)(blk[s] >> 4);
}

/* ------------------------------------------------------------ GPTQ layout
 * [fp16 s][u16 z][u8 q[G]]: value (q - z) * s. */

static void set_code_gptq(const gq_type *t, uint8_t *blk, int j, int q)
{
    (void)t;
    blk[4 + j] = (uint8_t)q;
}
static int get_code_gptq(const gq_type *t, const uint8_t *blk, int j)
{
    (void)t;
    return blk[4 + j];
}
static void params_gptq(const gq_type *t, const uint8_t *blk, int s, gq_sub *p)
{
    (void)t, (void)s;
    p->a = rd_half(blk);
    p->b = 0;
    p->c = -(int)qk_rd_u16(blk + 2);
}
static void coef_gptq(const gq_type *t, const uint8_t *blk, int s, float *ca, float *cb)
{
    (void)t, (void)blk, (void)s;
    *ca = 1.0f;
    *cb = 0.0f;
}

/* The GPTQ layout: RTN (AutoGPTQ's min/max rule) without search; with
 * search, the symmetric scale search (zero fixed at 2^(bits-1)) or, for
 * asymmetric groups, AutoGPTQ's shrinking-range grid weighted by w. */
static void choose_gptq(const gq_type *t, const float *x, const float *w, uint8_t *blk, int search)
{
    const int G = t->bs, bits = t->gptq_bits, maxq = t->nlev - 1;
    uint8_t q[GQ_MAX_BS];
    uint16_t s16, z16;
    memset(blk, 0, t->bytes);
    if (qk_gptq_rtn_row(x, G, bits, G, t->gptq_sym, q, &s16, &z16)) {
        s16 = 0x7c00; /* the scale overflows fp16: +Inf, which the caller reports */
        z16 = (uint16_t)((maxq + 1) / 2);
    }
    qk_wr_u16(blk, s16);
    qk_wr_u16(blk + 2, z16);
    if (search) {
        gq_sub p;
        double best = 0;
        params_gptq(t, blk, 0, &p);
        best = sse_map(t, &p, x, w, G);
        if (t->gptq_sym) {
            float a = search_scale(t, x, w, G, -(maxq + 1) / 2);
            if (a > 0.0f) { /* the stored scale is positive: the search may pick a mirrored negative one */
                gq_sub c = {a, 0, -(maxq + 1) / 2};
                double e = sse_map(t, &c, x, w, G);
                if (e < best)
                    qk_wr_u16(blk, qk_f32_to_fp16(a));
            }
        } else {
            float mn = 0, mx = 0; /* the range includes 0, as AutoGPTQ's */
            for (int j = 0; j < G; j++) {
                mn = x[j] < mn ? x[j] : mn;
                mx = x[j] > mx ? x[j] : mx;
            }
            for (int k = 1; k < 16; k++) {
                float f = 1.0f - 0.03f * (float)k, lo = f * mn, hi = f * mx;
                float s = (hi - lo) / (float)maxq;
                if (!(s > 0.0f))
                    break;
                int z = (int)nearbyintf(-lo / s);
                if (z < 1) {
                    z = 1;
                    s = hi / (float)(maxq - 1);
                }
                if (z > maxq)
                    z = maxq;
                gq_sub c = {fp16_round(s), 0, -z};
                if (!(c.a > 0.0f) || !isfinite(c.a))
                    continue;
                double e = sse_map(t, &c, x, w, G);
                if (e < best) {
                    best = e;
                    qk_wr_u16(blk, qk_f32_to_fp16(c.a));
                    qk_wr_u16(blk + 2, (uint16_t)z);
                }
            }
        }
    }
    fill_codes(t, x, blk);
}

/* ---------------------------------------------------------------- table */

#define T32(ty, nl, off, tab, zc, nb, nth, o1)                                                                  \
    {ty, 32, 32, nl, off, tab, zc, nb, nth, {0, o1}, 0, 0, choose_32, params_32, set_code_32, get_code_32, coef_1}

static const gq_type k_types[] = {
    T32(QK_TYPE_Q4_0, 16, -8, NULL, 8, 18, 1, 0),
    T32(QK_TYPE_Q4_1, 16, 0, NULL, 0, 20, 2, 2),
    T32(QK_TYPE_Q5_0, 32, -16, NULL, 16, 22, 1, 0),
    T32(QK_TYPE_Q5_1, 32, 0, NULL, 0, 24, 2, 2),
    /* Q8_0 keeps llama.cpp's code range [-127, 127]: SIMD dot products
     * negate weights and -128 would wrap */
    T32(QK_TYPE_Q8_0, 255, -127, NULL, 127, 34, 1, 0),
    T32(QK_TYPE_IQ4_NL, 16, 0, qk_iq4nl_values, 8, 18, 1, 0),
    {QK_TYPE_IQ4_XS, 256, 32, 16, 0, qk_iq4nl_values, 8, 136, 1, {0, 0}, 0, 0, choose_ref, params_iq4xs,
     set_code_iq4xs, get_code_iq4xs, coef_iq4xs},
    {QK_TYPE_Q4_K, 256, 32, 16, 0, NULL, 0, 144, 2, {0, 2}, 0, 0, choose_ref, params_qk45, set_code_qk45,
     get_code_qk45, coef_qk45},
    {QK_TYPE_Q5_K, 256, 32, 32, 0, NULL, 0, 176, 2, {0, 2}, 0, 0, choose_ref, params_qk45, set_code_qk45,
     get_code_qk45, coef_qk45},
    {QK_TYPE_Q6_K, 256, 16, 64, -32, NULL, 32, 210, 1, {208, 0}, 0, 0, choose_ref, params_q6k, set_code_q6k,
     get_code_q6k, coef_q6k},
    {QK_TYPE_Q3_K, 256, 16, 8, -4, NULL, 4, 110, 1, {108, 0}, 0, 0, choose_ref, params_q3k, set_code_q3k,
     get_code_q3k, coef_q3k},
    {QK_TYPE_Q2_K, 256, 16, 4, 0, NULL, 0, 84, 2, {80, 82}, 0, 0, choose_ref, params_q2k, set_code_q2k,
     get_code_q2k, coef_q2k},
};

const gq_type *gq_type_get(int type)
{
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (k_types[i].type == type)
            return &k_types[i];
    return NULL;
}

void gq_type_gptq(gq_type *out, int bits, int64_t group, int sym)
{
    assert((bits == 4 || bits == 8) && group > 0 && group <= GQ_MAX_BS);
    *out = (gq_type){-1, (int)group, (int)group, 1 << bits, 0, NULL, 0, 4 + (size_t)group, 1, {0, 0},
                     bits, sym, choose_gptq, params_gptq, set_code_gptq, get_code_gptq, coef_gptq};
}

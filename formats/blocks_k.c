/* Codecs of the K-quant super-block types Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
 * (256 elements per block; layouts in ggml_blocks.h, bit placement at each
 * codec below).
 *
 * Decoders repeat llama.cpp's dequantize_row_* float operations in order;
 * encoders repeat quantize_row_*_ref (importance NULL) and
 * quantize_row_*_impl (importance given), including their scale searches
 * (make_qkx2/qkx3/qx/q3/qp_quants below), so bytes match llama-quantize's.
 * Names of locals follow llama.cpp's so the two can be read side by side.
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
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "quantkit/common.h"

#define QK_K QK_QK_K
#define GROUP_MAX_EPS 1e-15f

#define MINI(a, b) ((a) < (b) ? (a) : (b))
#define MAXI(a, b) ((a) > (b) ? (a) : (b))

static inline float rd_half(const uint8_t *p) { return qk_fp16_to_f32(qk_rd_u16(p)); }
static inline void wr_half(uint8_t *p, float f) { qk_wr_u16(p, qk_f32_to_fp16(f)); }

/* ============================================================ scale search */

/* Symmetric codes l in [-nmax, nmax-1] for x[n] with a scale fitted by
 * weighted least squares over 19 candidate inverse scales -(nmax+0.1*is)/max
 * (is = -9..9). Weights: qw, else by rmse_type (1: x^2, 2: 1, 3: |x|,
 * 4: sqrt|x|); rmse_type 0 is plain rounding with scale max/-nmax. Writes
 * L[i] = l + nmax, returns the scale. */
float qk_blocks_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw)
{
    float max = 0;
    float amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i)
            L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; ++i) {
            int l = qk_blocks_nearest_int(iscale * x[i]);
            L[i] = (int8_t)(nmax + MAXI(-nmax, MINI(nmax - 1, l)));
        }
        return 1 / iscale;
    }
    bool return_early = false;
    if (rmse_type < 0) {
        rmse_type = -rmse_type;
        return_early = true;
    }
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = qk_blocks_nearest_int(iscale * x[i]);
        l = MAXI(-nmax, MINI(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1 : rmse_type == 3 ? fabsf(x[i]) : sqrtf(fabsf(x[i]));
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    if (return_early)
        return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = qk_blocks_nearest_int(iscale * x[i]);
            l = MAXI(-nmax, MINI(nmax - 1, l));
            float w = qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1 : rmse_type == 3 ? fabsf(x[i]) : sqrtf(fabsf(x[i]));
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = qk_blocks_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + MAXI(-nmax, MINI(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's sub-block search: round with scale max/-nmax, then (do_rmse) up to
 * 5 passes of coordinate descent moving single codes when that raises the
 * x^2-weighted fit (sumlx^2/suml2). Writes L[i] = l + nmax. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L, bool do_rmse)
{
    float max = 0;
    float amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i)
            L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    if (do_rmse) {
        float sumlx = 0;
        float suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = qk_blocks_nearest_int(iscale * x[i]);
            l = MAXI(-nmax, MINI(nmax - 1, l));
            L[i] = (int8_t)l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        for (int itry = 0; itry < 5; ++itry) {
            int n_changed = 0;
            for (int i = 0; i < n; ++i) {
                float w = x[i] * x[i];
                float slx = sumlx - w * x[i] * L[i];
                if (slx > 0) {
                    float sl2 = suml2 - w * L[i] * L[i];
                    int new_l = qk_blocks_nearest_int(x[i] * sl2 / slx);
                    new_l = MAXI(-nmax, MINI(nmax - 1, new_l));
                    if (new_l != L[i]) {
                        slx += w * x[i] * new_l;
                        sl2 += w * new_l * new_l;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                            L[i] = (int8_t)new_l;
                            sumlx = slx;
                            suml2 = sl2;
                            ++n_changed;
                        }
                    }
                }
            }
            if (!n_changed)
                break;
        }
        for (int i = 0; i < n; ++i)
            L[i] = (int8_t)(L[i] + nmax);
        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }
    for (int i = 0; i < n; ++i) {
        int l = qk_blocks_nearest_int(iscale * x[i]);
        l = MAXI(-nmax, MINI(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
    }
    return 1 / iscale;
}

/* Asymmetric codes L in [0, nmax] for x ~ scale*L - the_min (the_min >= 0):
 * start from the (min(x,0), max) range, then try nstep+1 inverse scales
 * (rmin + rdelta*is + nmax)/(max-min), refitting scale and min by weighted
 * least squares for each, and keep the lowest weighted error (|diff| when
 * use_mad, else diff^2). Laux [n] is scratch. make_qkx2 takes explicit
 * weights; make_qkx3 (the importance path) uses x^2 when weights is NULL
 * and accepts max <= min. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad)
{
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i)
            L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = qk_blocks_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MAXI(0, MINI(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        float w = weights[i];
        best_error += w * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = qk_blocks_nearest_int(iscale * (x[i] - min));
            l = MAXI(0, MINI(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                float w = weights[i];
                cur_error += w * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i)
                    L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

float qk_blocks_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                                 uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad)
{
    float min = x[0];
    float max = x[0];
    float sum_w = weights ? weights[0] : x[0] * x[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        float w = weights ? weights[i] : x[i] * x[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0)
        min = 0;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_mad = 0;
    for (int i = 0; i < n; ++i) {
        int l = qk_blocks_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MAXI(0, MINI(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        float w = weights ? weights[i] : x[i] * x[i];
        best_mad += w * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = qk_blocks_nearest_int(iscale * (x[i] - min));
            l = MAXI(0, MINI(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights ? weights[i] : x[i] * x[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                float w = weights ? weights[i] : x[i] * x[i];
                mad += w * diff;
            }
            if (mad < best_mad) {
                for (int i = 0; i < n; ++i)
                    L[i] = Laux[i];
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Non-negative codes L in [0, nmax] for the (non-negative) sub-block scales
 * or mins x[n] of the importance path: best of 9 inverse scales by weighted
 * squared error, then up to 5 coordinate-descent passes. Returns the
 * super-block scale. */
static float make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *quant_weights)
{
    float max = 0;
    for (int i = 0; i < n; ++i)
        max = MAXI(max, x[i]);
    if (max < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i)
            L[i] = 0;
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; ++i)
        L[i] = (uint8_t)qk_blocks_nearest_int(iscale * x[i]);
    float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; ++i) {
        float diff = x[i] - scale * L[i];
        float w = quant_weights[i];
        best_mse += w * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0)
            continue;
        float iscale_is = (0.1f * is + nmax) / max;
        float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; ++i) {
            int l = qk_blocks_nearest_int(iscale_is * x[i]);
            l = MINI(nmax, l);
            float diff = x[i] - scale_is * l;
            float w = quant_weights[i];
            mse += w * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = qk_blocks_nearest_int(iscale * x[i]);
        l = MINI(nmax, l);
        L[i] = (uint8_t)l;
        float w = quant_weights[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = quant_weights[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = qk_blocks_nearest_int(x[i] * sl2 / slx);
                new_l = MINI(nmax, new_l);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Sum of x[j]^2 over a super-block, in index order. */
static float sum_sq(const float *x, int n)
{
    float s = 0;
    for (int j = 0; j < n; ++j)
        s += x[j] * x[j];
    return s;
}

/* Pack 2-bit codes L[256]: byte l of each 32-byte quarter-group holds
 * elements 128h + l, +32, +64, +96 at bits 0-1, 2-3, 4-5, 6-7. */
static void pack_2bit(uint8_t *qs, const uint8_t *L)
{
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* ==================================================================== Q2_K
 * 16 sub-blocks of 16; scales[s] low nibble = scale code, high nibble = min
 * code; x = d*sc*q - dmin*m with q in 0..3 packed by pack_2bit. */

void qk_blocks_q2_k_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % QK_K == 0);
    const qk_block_q2_k *b = src;
    float *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rd_half(b[i].d);
        const float min = rd_half(b[i].dmin);
        const uint8_t *q = b[i].qs;
        int is = 0;
        float dl, ml;
        for (int k = 0; k < QK_K; k += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                uint8_t sc = b[i].scales[is++];
                dl = d * (sc & 0xF);
                ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;
                sc = b[i].scales[is++];
                dl = d * (sc & 0xF);
                ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3)) - ml;
                shift += 2;
            }
            q += 32;
        }
    }
}

/* quantize_row_q2_K_ref: make_qkx2 (|x| weights, MAD) per sub-block, 4-bit
 * codes for scales and mins against their maxima, requantize the values. */
static void q2_k_block_ref(const float *x, qk_block_q2_k *y)
{
    uint8_t L[QK_K];
    uint8_t Laux[16];
    float weights[16];
    float mins[QK_K / 16];
    float scales[QK_K / 16];
    const float q4scale = 15.f;

    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
        for (int l = 0; l < 16; ++l)
            weights[l] = fabsf(x[16 * j + l]);
        scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
        float scale = scales[j];
        if (scale > max_scale)
            max_scale = scale;
        float min = mins[j];
        if (min > max_min)
            max_min = min;
    }

    if (max_scale > 0) {
        float iscale = q4scale / max_scale;
        for (int j = 0; j < QK_K / 16; ++j) {
            int l = qk_blocks_nearest_int(iscale * scales[j]);
            y->scales[j] = (uint8_t)l;
        }
        wr_half(y->d, max_scale / q4scale);
    } else {
        for (int j = 0; j < QK_K / 16; ++j)
            y->scales[j] = 0;
        wr_half(y->d, 0.f);
    }
    if (max_min > 0) {
        float iscale = q4scale / max_min;
        for (int j = 0; j < QK_K / 16; ++j) {
            int l = qk_blocks_nearest_int(iscale * mins[j]);
            y->scales[j] |= (uint8_t)((unsigned)l << 4);
        }
        wr_half(y->dmin, max_min / q4scale);
    } else {
        wr_half(y->dmin, 0.f);
    }
    const float dd = rd_half(y->d), dmin = rd_half(y->dmin);
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = dd * (y->scales[j] & 0xF);
        if (!d)
            continue;
        const float dm = dmin * (y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) {
            int l = qk_blocks_nearest_int((x[16 * j + ii] + dm) / d);
            l = MAXI(0, MINI(3, l));
            L[16 * j + ii] = (uint8_t)l;
        }
    }
    pack_2bit(y->qs, L);
}

/* quantize_row_q2_K_impl: weights qw*sqrt(sigma2 + x^2) (sigma2 = mean x^2
 * of the super-block), make_qkx3 per sub-block, scales and mins coded by
 * make_qp_quants, then requantize with the stored fp16 scales. */
static void q2_k_block_imp(const float *x, qk_block_q2_k *y, const float *quant_weights)
{
    uint8_t L[QK_K];
    uint8_t Laux[16];
    float mins[QK_K / 16];
    float scales[QK_K / 16];
    float sw[QK_K / 16];
    float weight[16];
    uint8_t Ls[QK_K / 16], Lm[QK_K / 16];

    memset(sw, 0, sizeof sw);
    float sumx2 = sum_sq(x, QK_K);
    float sigma2 = sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
        const float *qw = quant_weights + 16 * j;
        for (int l = 0; l < 16; ++l)
            weight[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
        for (int l = 0; l < QK_K / 16; ++l)
            sw[j] += weight[l];
        scales[j] = qk_blocks_make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f,
                                               36, false);
    }

    float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
    float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
    wr_half(y->d, dm);
    wr_half(y->dmin, mm);
    dm = rd_half(y->d);
    mm = rd_half(y->dmin);
    for (int j = 0; j < QK_K / 16; ++j)
        y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));

    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = dm * (y->scales[j] & 0xF);
        if (!d)
            continue;
        const float m = mm * (y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) {
            int l = qk_blocks_nearest_int((x[16 * j + ii] + m) / d);
            l = MAXI(0, MINI(3, l));
            L[16 * j + ii] = (uint8_t)l;
        }
    }
    pack_2bit(y->qs, L);
}

void qk_blocks_q2_k_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    assert(n % QK_K == 0);
    qk_block_q2_k *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        if (importance)
            q2_k_block_imp(src + QK_K * i, &y[i], importance + QK_K * i);
        else
            q2_k_block_ref(src + QK_K * i, &y[i]);
    }
}

/* ==================================================================== Q3_K
 * 16 sub-blocks of 16, x = d*(s-32)*(q-4): q's low 2 bits packed by
 * pack_2bit, its high bit at bit (e/32) of hmask[e%32] (set = no -4).
 * 6-bit scale s of sub-block j: low 4 bits in scales[j] (j<8, low nibble)
 * or scales[j-8] (high nibble); high 2 bits at bits 2*(j/4) of
 * scales[8 + j%4]. */

static inline int q3_k_scale(const uint8_t *s, int j)
{
    int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

void qk_blocks_q3_k_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % QK_K == 0);
    const qk_block_q3_k *b = src;
    float *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d_all = rd_half(b[i].d);
        const uint8_t *q = b[i].qs;
        const uint8_t *hm = b[i].hmask;
        int8_t scales[16];
        for (int j = 0; j < 16; ++j)
            scales[j] = (int8_t)q3_k_scale(b[i].scales, j);
        uint8_t m = 1;
        int is = 0;
        float dl;
        for (int k = 0; k < QK_K; k += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                dl = d_all * scales[is++];
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
                dl = d_all * scales[is++];
                for (int l = 0; l < 16; ++l)
                    *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                shift += 2;
                m = (uint8_t)(m << 1);
            }
            q += 32;
        }
    }
}

/* Store 6-bit codes Ls[j] (already offset by +32) into Q3_K's scales[12]. */
static void q3_k_pack_scales(uint8_t *s, const int *ls)
{
    memset(s, 0, 12);
    for (int j = 0; j < QK_K / 16; ++j) {
        int l = ls[j];
        if (j < 8)
            s[j] = (uint8_t)(l & 0xF);
        else
            s[j - 8] |= (uint8_t)((l & 0xF) << 4);
        l >>= 4;
        s[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
    }
}

/* Requantize with the stored scales (sub-blocks whose scale decodes to 0
 * keep their search codes), then split off the high bits and pack. */
static void q3_k_finish(const float *x, qk_block_q3_k *y, int8_t *L)
{
    const float dd = rd_half(y->d);
    for (int j = 0; j < QK_K / 16; ++j) {
        float d = dd * q3_k_scale(y->scales, j);
        if (!d)
            continue;
        for (int ii = 0; ii < 16; ++ii) {
            int l = qk_blocks_nearest_int(x[16 * j + ii] / d);
            l = MAXI(-4, MINI(3, l));
            L[16 * j + ii] = (int8_t)(l + 4);
        }
    }
    memset(y->hmask, 0, QK_K / 8);
    int m = 0;
    uint8_t hm = 1;
    for (int j = 0; j < QK_K; ++j) {
        if (L[j] > 3) {
            y->hmask[m] |= hm;
            L[j] = (int8_t)(L[j] - 4);
        }
        if (++m == QK_K / 8) {
            m = 0;
            hm = (uint8_t)(hm << 1);
        }
    }
    pack_2bit(y->qs, (const uint8_t *)L);
}

/* quantize_row_q3_K_ref: make_q3_quants (x^2-weighted descent) per
 * sub-block, 6-bit scale codes against the scale of largest magnitude. */
static void q3_k_block_ref(const float *x, qk_block_q3_k *y)
{
    int8_t L[QK_K];
    float scales[QK_K / 16];
    int ls[QK_K / 16];

    float max_scale = 0;
    float amax = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
        float scale = fabsf(scales[j]);
        if (scale > amax) {
            amax = scale;
            max_scale = scales[j];
        }
    }

    if (max_scale) {
        float iscale = -32.f / max_scale;
        for (int j = 0; j < QK_K / 16; ++j) {
            /* llama.cpp keeps nearest_int's result in an int8_t */
            int8_t l = (int8_t)qk_blocks_nearest_int(iscale * scales[j]);
            ls[j] = MAXI(-32, MINI(31, l)) + 32;
        }
        q3_k_pack_scales(y->scales, ls);
        wr_half(y->d, 1 / iscale);
    } else {
        memset(y->scales, 0, 12);
        wr_half(y->d, 0.f);
    }
    q3_k_finish(x, y, L);
}

/* quantize_row_q3_K_impl: weights qw*sqrt(sigma2 + x^2) (sigma2 = 2*mean
 * x^2), make_qx_quants per sub-block and for the 16 scales. */
static void q3_k_block_imp(const float *x, qk_block_q3_k *y, const float *quant_weights)
{
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float weight[16];
    float sw[QK_K / 16];
    int8_t Ls[QK_K / 16];
    int ls[QK_K / 16];

    float sumx2 = sum_sq(x, QK_K);
    float sigma2 = 2 * sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
        const float *qw = quant_weights + 16 * j;
        for (int l = 0; l < 16; ++l)
            weight[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 16; ++l)
            sumw += weight[l];
        sw[j] = sumw;
        scales[j] = qk_blocks_make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
    }
    float d_block = qk_blocks_make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
    for (int j = 0; j < QK_K / 16; ++j)
        ls[j] = Ls[j];
    q3_k_pack_scales(y->scales, ls);
    wr_half(y->d, d_block);
    q3_k_finish(x, y, L);
}

void qk_blocks_q3_k_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    assert(n % QK_K == 0);
    qk_block_q3_k *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        if (importance)
            q3_k_block_imp(src + QK_K * i, &y[i], importance + QK_K * i);
        else
            q3_k_block_ref(src + QK_K * i, &y[i]);
    }
}

/* ============================================================ Q4_K / Q5_K
 * 8 sub-blocks of 32, x = d*sc*q - dmin*m with 6-bit sc, m packed in
 * scales[12]: j<4: sc = s[j]&63, m = s[j+4]&63; j>=4: sc = (s[j+4]&15) |
 * (s[j-4]>>6)<<4, m = (s[j+4]>>4) | (s[j]>>6)<<4. qs: 4 chunks of 32 bytes;
 * chunk c holds elements 64c+l (low nibble) and 64c+32+l (high nibble).
 * Q5_K: qh[l] bit 2c = 5th bit of 64c+l, bit 2c+1 = of 64c+32+l. */

static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

static void set_scale_min_k4(int j, uint8_t *s, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j - 0] |= (uint8_t)((lm >> 4) << 6);
    }
}

void qk_blocks_q4_k_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % QK_K == 0);
    const qk_block_q4_k *b = src;
    float *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *q = b[i].qs;
        const float d = rd_half(b[i].d);
        const float min = rd_half(b[i].dmin);
        int is = 0;
        uint8_t sc, m;
        for (int j = 0; j < QK_K; j += 64) {
            get_scale_min_k4(is + 0, b[i].scales, &sc, &m);
            const float d1 = d * sc;
            const float m1 = min * m;
            get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc;
            const float m2 = min * m;
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

void qk_blocks_q5_k_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % QK_K == 0);
    const qk_block_q5_k *b = src;
    float *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *ql = b[i].qs;
        const uint8_t *qh = b[i].qh;
        const float d = rd_half(b[i].d);
        const float min = rd_half(b[i].dmin);
        int is = 0;
        uint8_t sc, m;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K; j += 64) {
            get_scale_min_k4(is + 0, b[i].scales, &sc, &m);
            const float d1 = d * sc;
            const float m1 = min * m;
            get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc;
            const float m2 = min * m;
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

/* The sub-block search of quantize_row_q{4,5}_K_ref: make_qkx2 on each
 * sub-block of 32 with weights av_x + |x| (av_x = rms of the sub-block). */
void qk_blocks_qk45_search_ref(const float *x, int nb, int nmax, uint8_t *L, float *scales, float *mins)
{
    uint8_t Laux[32];
    float weights[32];
    const float rmin = nmax == 15 ? -1.f : -0.5f;
    const int nstep = nmax == 15 ? 20 : 15;
    for (int j = 0; j < nb * (QK_K / 32); ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep,
                                     false);
    }
}

/* The shared body of Q4_K/Q5_K encoding (nmax 15 or 31). Search per
 * sub-block: without importance (quantize_row_q{4,5}_K_ref) the caller has
 * run the search (qk_blocks_qk45_search_ref or a SIMD copy of it): L holds
 * its codes and s_scales[8], s_mins[8] its results, coded here in 6 bits
 * against the largest scale and min; with importance
 * (quantize_row_q{4,5}_K_impl) make_qkx3 with weights qw*sqrt(sigma2 + x^2)
 * (sigma2 = 2*mean x^2 of the super-block) and make_qp_quants for the codes.
 * Then requantize every value with the stored fp16 scales. Writes scales, d,
 * dmin; returns codes in L. */
/* The requantization of quantize_row_q{4,5}_K_*: L[i] = nearest((x[i] +
 * dm) / d) clamped to [0, nmax], for the 32 values of a sub-block. */
static void qk45_requant_ref(const float *x, float dm, float d, int nmax, uint8_t *L)
{
    for (int ii = 0; ii < 32; ++ii) {
        int l = qk_blocks_nearest_int((x[ii] + dm) / d);
        l = MAXI(0, MINI(nmax, l));
        L[ii] = (uint8_t)l;
    }
}

void qk_blocks_qk45_wsearch_ref(const float *x, const float *w, int nmax, uint8_t *L, float *scales, float *mins)
{
    uint8_t Laux[32];
    for (int j = 0; j < QK_K / 32; ++j)
        scales[j] = qk_blocks_make_qkx3_quants(32, nmax, x + 32 * j, w + 32 * j, L + 32 * j, &mins[j], Laux, -0.9f,
                                               0.05f, 36, false);
}

static void qk45_block(const float *x, uint8_t *scales_out, uint8_t *d_out, uint8_t *dmin_out, uint8_t *L, int nmax,
                       const float *quant_weights, const float *s_scales, const float *s_mins,
                       qk_blocks_qk45_wsearch_fn wsearch, qk_blocks_qk45_requant_fn requant)
{
    float weights[QK_K];
    float mins[QK_K / 32];
    float scales[QK_K / 32];

    memset(scales_out, 0, 12);
    if (!quant_weights) {
        float max_scale = 0;
        float max_min = 0;
        memcpy(scales, s_scales, sizeof scales);
        memcpy(mins, s_mins, sizeof mins);
        for (int j = 0; j < QK_K / 32; ++j) {
            float scale = scales[j];
            if (scale > max_scale)
                max_scale = scale;
            float min = mins[j];
            if (min > max_min)
                max_min = min;
        }
        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < QK_K / 32; ++j) {
            /* llama.cpp stores nearest_int's result in a uint8_t, then clamps */
            uint8_t ls = (uint8_t)qk_blocks_nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)qk_blocks_nearest_int(inv_min * mins[j]);
            ls = MINI(63, ls);
            lm = MINI(63, lm);
            set_scale_min_k4(j, scales_out, ls, lm);
        }
        wr_half(d_out, max_scale / 63.f);
        wr_half(dmin_out, max_min / 63.f);
    } else {
        uint8_t Ls[QK_K / 32];
        uint8_t Lm[QK_K / 32];
        float sw[QK_K / 32];
        float sum_x2 = sum_sq(x, QK_K);
        float sigma2 = 2 * sum_x2 / QK_K;
        for (int j = 0; j < QK_K / 32; ++j) {
            const float *qw = quant_weights + 32 * j;
            float *wj = weights + 32 * j;
            for (int l = 0; l < 32; ++l)
                wj[l] = qw[l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 32; ++l)
                sumw += wj[l];
            sw[j] = sumw;
        }
        (wsearch ? wsearch : qk_blocks_qk45_wsearch_ref)(x, weights, nmax, L, scales, mins);
        float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
        float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
        /* Codes are <= 63 unless a negative sub-block scale wrapped in the
         * uint8_t; llama.cpp clamps those for Q5_K only. */
        for (int j = 0; j < QK_K / 32; ++j) {
            if (nmax == 31)
                set_scale_min_k4(j, scales_out, MINI(63, Ls[j]), MINI(63, Lm[j]));
            else
                set_scale_min_k4(j, scales_out, Ls[j], Lm[j]);
        }
        wr_half(d_out, d_block);
        wr_half(dmin_out, m_block);
    }

    const float dd = rd_half(d_out), dmin = rd_half(dmin_out);
    uint8_t sc, m;
    for (int j = 0; j < QK_K / 32; ++j) {
        get_scale_min_k4(j, scales_out, &sc, &m);
        const float d = dd * sc;
        if (!d)
            continue;
        const float dm = dmin * m;
        requant(x + 32 * j, dm, d, nmax, L + 32 * j);
    }
}

/* Rows are searched QK45_GROUP super-blocks at a time (a SIMD search
 * interleaves them), then each super-block is finished by qk45_block. */
#define QK45_GROUP QK_BLOCKS_SEARCH_GROUP

void qk_blocks_q4_k_encode(const float *src, void *dst, int64_t n, const float *importance,
                           qk_blocks_qk45_search_fn search, qk_blocks_qk45_wsearch_fn wsearch,
                           qk_blocks_qk45_requant_fn requant)
{
    assert(n % QK_K == 0);
    qk_block_q4_k *y = dst;
    uint8_t Lg[QK45_GROUP * QK_K];
    float scales[QK45_GROUP * (QK_K / 32)], mins[QK45_GROUP * (QK_K / 32)];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int k = (int)(i % QK45_GROUP);
        if (k == 0 && !importance)
            search(src + QK_K * i, n / QK_K - i < QK45_GROUP ? (int)(n / QK_K - i) : QK45_GROUP, 15, Lg, scales, mins);
        uint8_t *L = Lg + QK_K * k;
        qk45_block(src + QK_K * i, y[i].scales, y[i].d, y[i].dmin, L, 15, importance ? importance + QK_K * i : NULL,
                   scales + 8 * k, mins + 8 * k, wsearch, requant ? requant : qk45_requant_ref);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < QK_K; j += 64) {
            for (int l = 0; l < 32; ++l)
                q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
            q += 32;
        }
    }
}

void qk_blocks_q5_k_encode(const float *src, void *dst, int64_t n, const float *importance,
                           qk_blocks_qk45_search_fn search, qk_blocks_qk45_wsearch_fn wsearch,
                           qk_blocks_qk45_requant_fn requant)
{
    assert(n % QK_K == 0);
    qk_block_q5_k *y = dst;
    uint8_t Lg[QK45_GROUP * QK_K];
    float scales[QK45_GROUP * (QK_K / 32)], mins[QK45_GROUP * (QK_K / 32)];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int k = (int)(i % QK45_GROUP);
        if (k == 0 && !importance)
            search(src + QK_K * i, n / QK_K - i < QK45_GROUP ? (int)(n / QK_K - i) : QK45_GROUP, 31, Lg, scales, mins);
        uint8_t *L = Lg + QK_K * k;
        qk45_block(src + QK_K * i, y[i].scales, y[i].d, y[i].dmin, L, 31, importance ? importance + QK_K * i : NULL,
                   scales + 8 * k, mins + 8 * k, wsearch, requant ? requant : qk45_requant_ref);
        uint8_t *qh = y[i].qh;
        uint8_t *ql = y[i].qs;
        memset(qh, 0, QK_K / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int k = 0; k < QK_K; k += 64) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[k + j];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                int l2 = L[k + j + 32];
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
            ql += 32;
        }
    }
}

void qk_blocks_q4_k_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    qk_blocks_q4_k_encode(src, dst, n, importance, qk_blocks_qk45_search_ref, NULL, NULL);
}

void qk_blocks_q5_k_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    qk_blocks_q5_k_encode(src, dst, n, importance, qk_blocks_qk45_search_ref, NULL, NULL);
}

/* ==================================================================== Q6_K
 * 16 sub-blocks of 16, x = d*scales[s]*(q-32), q 6 bits. Per half h (128
 * elements, ql += 64, qh += 32 per half), for l<32: ql[l] low/high nibble =
 * q(l), q(l+64); ql[l+32] = q(l+32), q(l+96); qh[l] bits 0-1, 2-3, 4-5, 6-7
 * = high bits of q(l), q(l+32), q(l+64), q(l+96). */

void qk_blocks_q6_k_to_float(const void *src, float *dst, int64_t n)
{
    assert(n % QK_K == 0);
    const qk_block_q6_k *b = src;
    float *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rd_half(b[i].d);
        const uint8_t *ql = b[i].ql;
        const uint8_t *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int k = 0; k < QK_K; k += 128) {
            for (int l = 0; l < 32; ++l) {
                int is = l / 16;
                const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

/* The sub-block search of quantize_row_q6_K_ref: make_qx_quants(16, 32)
 * with x^2 weights on each sub-block of 16. */
void qk_blocks_q6_k_search_ref(const float *x, int nb, int8_t *L, float *scales)
{
    for (int ib = 0; ib < nb * (QK_K / 16); ++ib)
        scales[ib] = qk_blocks_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, NULL);
}

/* quantize_row_q6_K_ref / _impl: make_qx_quants (x^2 weights through
 * `search`, or the importance values themselves) per sub-block, 8-bit signed
 * scale codes against the scale of largest magnitude (-128 maps to it),
 * requantize. */
static void q6_k_block(const float *x, qk_block_q6_k *y, const float *quant_weights, qk_blocks_q6_k_search_fn search)
{
    int8_t L[QK_K];
    float scales[QK_K / 16];

    float max_scale = 0;
    float max_abs_scale = 0;
    if (quant_weights)
        for (int ib = 0; ib < QK_K / 16; ++ib)
            scales[ib] = qk_blocks_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, quant_weights + 16 * ib);
    else
        search(x, 1, L, scales);
    for (int ib = 0; ib < QK_K / 16; ++ib) {
        const float scale = scales[ib];
        const float abs_scale = fabsf(scale);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }

    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        return;
    }

    float iscale = -128.f / max_scale;
    wr_half(y->d, 1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ++ib)
        y->scales[ib] = (int8_t)MINI(127, qk_blocks_nearest_int(iscale * scales[ib]));

    const float dd = rd_half(y->d);
    for (int j = 0; j < QK_K / 16; ++j) {
        float d = dd * y->scales[j];
        if (!d)
            continue;
        for (int ii = 0; ii < 16; ++ii) {
            int l = qk_blocks_nearest_int(x[16 * j + ii] / d);
            l = MAXI(-32, MINI(31, l));
            L[16 * j + ii] = (int8_t)(l + 32);
        }
    }

    uint8_t *ql = y->ql;
    uint8_t *qh = y->qh;
    for (int j = 0; j < QK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t q1 = L[j + l + 0] & 0xF;
            const uint8_t q2 = L[j + l + 32] & 0xF;
            const uint8_t q3 = L[j + l + 64] & 0xF;
            const uint8_t q4 = L[j + l + 96] & 0xF;
            ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
            ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                              ((L[j + l + 96] >> 4) << 6));
        }
        ql += 64;
        qh += 32;
    }
}

void qk_blocks_q6_k_encode(const float *src, void *dst, int64_t n, const float *importance,
                           qk_blocks_q6_k_search_fn search)
{
    assert(n % QK_K == 0);
    qk_block_q6_k *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++)
        q6_k_block(src + QK_K * i, &y[i], importance ? importance + QK_K * i : NULL, search);
}

void qk_blocks_q6_k_from_float_ref(const float *src, void *dst, int64_t n, const float *importance)
{
    qk_blocks_q6_k_encode(src, dst, n, importance, qk_blocks_q6_k_search_ref);
}

/* Row kernels of the reference forward pass; see forward_ops.h. The
 * arithmetic follows ggml's CPU ops where the order matters (sum of squares
 * in double, scale rounded to float, x*scale then *w; softmax with max
 * subtraction and a double denominator), so results stay within float
 * rounding of llama.cpp. */
#include "forward_ops.h"

#include <string.h>

#include "quantkit/common.h"

#include <cblas.h>
#include <math.h>

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

void qk_forward_swiglu_row(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void qk_forward_attn_block(float *out, int64_t out_stride, const float *q, int64_t q_stride, const float *k,
                           const float *v, int64_t kv_stride, int64_t i0, int64_t nb, int64_t head_dim,
                           int64_t window, float scale, float *scratch, int round_p_f16)
{
    /* keys [k0, k1) cover every query of the block */
    const int64_t k0 = window > 0 && i0 - window + 1 > 0 ? i0 - window + 1 : 0;
    const int64_t k1 = i0 + nb, nk = k1 - k0;
    float *p = scratch; /* [nb][nk] scores, then probabilities */
    /* p = scale * q[i0..] k[k0..]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)nk, (int)head_dim, scale, q + i0 * q_stride,
                (int)q_stride, k + k0 * kv_stride, (int)kv_stride, 0.0f, p, (int)nk);
    for (int64_t r = 0; r < nb; r++) {
        const int64_t i = i0 + r;
        const int64_t lo = (window > 0 && i - window + 1 > k0 ? i - window + 1 : k0) - k0, hi = i - k0 + 1;
        float *pr = p + r * nk;
        float mx = -INFINITY;
        for (int64_t j = lo; j < hi; j++)
            mx = pr[j] > mx ? pr[j] : mx;
        /* four partial sums: a single double chain would serialise on its latency */
        double sum[4] = {0, 0, 0, 0};
        int64_t j = lo;
        for (; j + 4 <= hi; j += 4)
            for (int u = 0; u < 4; u++) {
                pr[j + u] = expf(pr[j + u] - mx);
                sum[u] += (double)pr[j + u];
            }
        for (; j < hi; j++) {
            pr[j] = expf(pr[j] - mx);
            sum[0] += (double)pr[j];
        }
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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)head_dim, (int)nk, 1.0f, p, (int)nk,
                v + k0 * kv_stride, (int)kv_stride, 0.0f, out + i0 * out_stride, (int)out_stride);
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

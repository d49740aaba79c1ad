/* Row kernels of the reference forward pass (eval/forward.c): RMSNorm,
 * RoPE, SwiGLU and one attention head. Plain scalar C in FP32 (sums of
 * squares and softmax denominators in double, as ggml does); the matmuls are
 * OpenBLAS's job. Internal to eval/. */
#ifndef QK_FORWARD_OPS_H
#define QK_FORWARD_OPS_H

#include <stdint.h>

/* y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], i < n. y may equal x. */
void qk_forward_rmsnorm_row(float *y, const float *x, const float *w, int64_t n, float eps);

/* Rotate adjacent pairs (x[2i], x[2i+1]) of each of n_heads heads of
 * head_dim values in place, llama.cpp's normal (non-NeoX) RoPE.
 * cs [head_dim/2][2] holds cos, sin of the angles for this position. */
void qk_forward_rope_row(float *x, int64_t n_heads, int64_t head_dim, const float *cs);

/* cs [n_pos][head_dim/2][2]: cos, sin of pos * base^(-2i/head_dim),
 * computed in double. */
void qk_forward_rope_table(float *cs, int64_t n_pos, int64_t head_dim, double base);

/* The same table computed as ggml does it (emulation): theta starts at pos
 * and is multiplied by powf(base, -2/head_dim) in float per pair; cosf/sinf. */
void qk_forward_rope_table_ggml(float *cs, int64_t n_pos, int64_t head_dim, float base);

/* g[i] = silu(g[i]) * u[i], silu(x) = x / (1 + e^-x). */
void qk_forward_swiglu_row(float *g, const float *u, int64_t n);

/* Causal attention of one head for the queries [i0, i0+nb) of one
 * sequence:
 *   out[i] = sum_j softmax_j(scale * q[i].k[j]) v[j],  j in [lo(i), i],
 *   lo(i) = window > 0 ? max(0, i - window + 1) : 0.
 * q, k, v and out point at the head's first value in the sequence's row 0;
 * consecutive positions are q_stride, kv_stride and out_stride floats
 * apart. The scores and the weighted sum are two cblas_sgemm calls over the
 * block (call with OpenBLAS single-threaded when blocks run in parallel).
 * scratch holds nb * (i0 + nb) floats. */
void qk_forward_attn_block(float *out, int64_t out_stride, const float *q, int64_t q_stride, const float *k,
                           const float *v, int64_t kv_stride, int64_t i0, int64_t nb, int64_t head_dim,
                           int64_t window, float scale, float *scratch, int round_p_f16);

/* llama.cpp emulation: round n values (in place) as its CPU backend does
 * before a dot product: to Q8_0 blocks of 32 (d = amax/127 stored as fp16,
 * q = round(x/d)), to Q8_K blocks of 256 (d = 1/(-127/max) as float), or to
 * fp16 / bf16. */
void qk_forward_round_q8_0(float *x, int64_t n);
void qk_forward_round_q8_k(float *x, int64_t n);
void qk_forward_round_f16(float *x, int64_t n);
void qk_forward_round_bf16(float *x, int64_t n);

#endif

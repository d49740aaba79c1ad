/* Kernels of the reference forward pass (eval/forward.c): RMSNorm, RoPE,
 * SwiGLU, one attention head, the linear-layer matmul on AVX-512 CPUs
 * (OpenBLAS elsewhere), and the llama.cpp emulation's ops. FP32 (sums of
 * squares and softmax denominators in double, as ggml does); each SIMD path
 * is one function, chosen once at run time. Internal to eval/. */
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

/* y[i] = e^(x[i] - m), i < n (y may equal x); and the sum of those in
 * double without storing them. AVX-512 CPUs use a vector exp within 1.5
 * ulp of e^x (see forward_ops.c), others expf / exp. */
void qk_forward_exp_shift(float *y, const float *x, float m, int64_t n);
double qk_forward_sum_exp_shift(const float *x, float m, int64_t n);

/* g[i] = silu(g[i]) * u[i], silu(x) = x / (1 + e^-x) (the vector exp on
 * AVX-512 CPUs). */
void qk_forward_swiglu_row(float *g, const float *u, int64_t n);

/* Causal attention of one head for the queries [i0, i0+nb) of one
 * sequence:
 *   out[i] = sum_j softmax_j(scale * q[i].k[j]) v[j],  j in [lo(i), i],
 *   lo(i) = window > 0 ? max(0, i - window + 1) : 0.
 * q, k, v and out point at the head's first value in the sequence's row 0;
 * consecutive positions are q_stride, kv_stride and out_stride floats
 * apart. The scores and the weighted sum are two matmuls over the block:
 * qk_forward_gemm's kernel on AVX-512 CPUs, else cblas_sgemm (call with
 * OpenBLAS single-threaded when blocks run in parallel).
 * scratch holds nb * (i0 + nb) floats. */
void qk_forward_attn_block(float *out, int64_t out_stride, const float *q, int64_t q_stride, const float *k,
                           const float *v, int64_t kv_stride, int64_t i0, int64_t nb, int64_t head_dim,
                           int64_t window, float scale, float *scratch, int round_p_f16);

/* y[t][c] = sum_k x[t][k] w[c][k] for t < n_tok, c < n_cols: a linear
 * layer with the weight as stored, W [n_cols][k] (x [n_tok][ldx],
 * w [n_cols][ldw], y [n_tok][ldy], row-major). An AVX-512 kernel; call only
 * when qk_forward_gemm_available() says the CPU has AVX-512F. Each output is
 * one FMA chain over k in blocks of 128 (the block's sum is added to the
 * running total), so its bits do not depend on n_tok, n_cols or which
 * slice of columns a thread computes. */
int qk_forward_gemm_available(void);
/* Use the kernel when the CPU has it (on = 1) or OpenBLAS (0), for forward
 * passes created after the call (tests); QK_SIMD=avx2|none in the
 * environment also turns it off. Returns whether the kernel is in use. */
int qk_forward_gemm_enable(int on);
void qk_forward_gemm(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t n_tok,
                     int64_t n_cols, int64_t k);

/* y [m][ldy] = x [m][ldx] W (acc 0) or y += x W (acc 1), W [k][n] stored
 * row-major (w [k][ldw]): the same kernel when the CPU has it (single
 * thread), else cblas_sgemm. Used by GPTQ's refinement (quantize/
 * gptq_method.c), whose lazy updates are products of this shape. */
void qk_sgemm_kn(float *y, int64_t ldy, const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t m,
                 int64_t n, int64_t k, int acc);
/* qk_sgemm_kn in double: y (+)= x W, W [k][n] row-major; an AVX-512 kernel
 * when the CPU has it (faster than the AVX2 OpenBLAS this machine runs: the
 * panels of GPTQ's lazy batch updates and its factorization), else
 * cblas_dgemm. */
void qk_dgemm_kn(double *y, int64_t ldy, const double *x, int64_t ldx, const double *w, int64_t ldw, int64_t m,
                 int64_t n, int64_t k, int acc);
/* y[k] -= a x[k], k < n (fused on AVX-512 CPUs). */
void qk_dfnma(double *y, const double *x, double a, int64_t n);
/* y[k] += a x[k], k < n: one FMA per element with the kernel's
 * instructions when the CPU has them (so a sum built term by term equals
 * qk_sgemm_kn's), else cblas_saxpy. */
void qk_sfma(float *y, const float *x, float a, int64_t n);

/* ------------------------------------------------------------------
 * llama.cpp emulation: ggml's CPU backend (build b4748, the AVX2+FMA code
 * paths its golden files fit) operation by operation, so that a model's
 * logits come out as that runtime's do (--emulate-llamacpp). Scalar code;
 * the float operations and their order are ggml's, the code is not. */

/* ggml's vector expf: n = round(x/ln2) (the 1.5*2^23 shift), b = x - n*ln2
 * in two parts, j = e^b - 1 by a degree-5 polynomial with FMAs, then
 * 2^n + 2^n*j; |n| > 126 scaled in two steps, |n| > 192 flushed to 0 or
 * +inf. Within 1.5 ulp of e^x; not expf's bits. */
float qk_forward_expf_ggml(float x);

/* Sum of 8 floats as ggml's AVX code sums a vector: (v0+v4 + v2+v6) +
 * (v1+v5 + v3+v7). */
float qk_forward_hsum8(const float *v);

/* x.w over k floats as ggml's F32 (f16 = 0) or F16 (f16 = 1, x and w hold
 * F16 values) matmul sums it: for k % 8 == 0 (llamafile's tinyBLAS) lane
 * r = i % 8 keeps an FMA chain over i, then qk_forward_hsum8; otherwise
 * ggml_vec_dot_f32/_f16: four 8-lane FMA chains over steps of 32, folded
 * 0+2, 1+3, 0+1, summed, then the leftovers FMA'd into the float sum (F32)
 * or added in double (F16). */
float qk_forward_dot_ggml(const float *x, const float *w, int64_t k, int f16);

/* silu(g) * u with ggml's vector SiLU on 8-value chunks and expf on the rest. */
void qk_forward_swiglu_row_ggml(float *g, const float *u, int64_t n);

/* qk_forward_attn_block as llama.cpp's F16 KV cache path computes it
 * (q, k, v already rounded to F16): scores q.k as qk_forward_dot_ggml
 * sums F16 rows, times scale; softmax with
 * qk_forward_expf_ggml, 8-value chunk sums in float added in double;
 * probabilities rounded to F16; p.v in tinyBLAS's lane order. scratch holds
 * i0 + nb + 8 floats. */
void qk_forward_attn_block_ggml(float *out, int64_t out_stride, const float *q, int64_t q_stride, const float *k,
                                const float *v, int64_t kv_stride, int64_t i0, int64_t nb, int64_t head_dim,
                                int64_t window, float scale, float *scratch);

/* llama.cpp emulation: round n values (in place) as its CPU backend does
 * before a dot product: to Q8_0 blocks of 32 (d = amax/127 stored as fp16,
 * q = round(x/d)), to Q8_K blocks of 256 (d = 1/(-127/max) as float), or to
 * fp16 / bf16. */
void qk_forward_round_q8_0(float *x, int64_t n);
void qk_forward_round_q8_k(float *x, int64_t n);
void qk_forward_round_f16(float *x, int64_t n);
void qk_forward_round_bf16(float *x, int64_t n);

#endif

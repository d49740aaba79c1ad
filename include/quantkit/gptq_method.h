/* GPTQ error compensation inside the ggml block types (quantize/gptq_method.c).
 *
 * Given a weight W [rows][cols] (canonical rows: one output feature each,
 * cols = input features) and the Hessian H = X^T X of the layer's input
 * (cols x cols, from qk_calib_hessian), qk_gptq_quantize() chooses packed
 * rows of a ggml block type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, IQ4_XS,
 * Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) that approximately minimise the layer error
 *
 *     tr((W - Q) H (W - Q)^T)
 *
 * instead of the weight error |W - Q|^2 that round-to-nearest minimises. The
 * result is standard ggml bytes (llama.cpp loads them unchanged): only the
 * choice of scales and codes differs.
 *
 * Algorithm (Frantar et al., "GPTQ", 2022), per tensor:
 *   1. Dead inputs (diag H = 0: never a non-zero input in calibration)
 *      get their weight column set to 0 and are decoupled (diagonal = the
 *      mean live diagonal). H += lambda * I with lambda = damp * mean(live
 *      diag H).
 *   2. U = upper Cholesky factor of H^-1 (live columns only): a blocked
 *      Cholesky of the reversed matrix and its triangular inverse, the
 *      updates on the pool, LAPACK for 128-column diagonal blocks and
 *      matrices under 256 columns; the same bits for any thread count. When a factorization fails or a pivot is below 1e-10
 *      x the mean diagonal, damp is raised x10 (from 0: to 1e-4) and tried
 *      again, up to 10 (reported in the stats).
 *   3. Columns are processed left to right in batches of `batch` columns
 *      (lazy updates: the batch's accumulated error reaches the columns right
 *      of it through one dgemm). When a column starts a block of the type
 *      (32 elements, or the 256-element super-block of the K types and
 *      IQ4_XS), that block's scales are chosen for the row from the block's
 *      current, error-updated weights, each column weighted by 1/U_jj^2 (its
 *      cost in the GPTQ objective); then every column of the block gets the
 *      code nearest to its updated weight under those fixed scales, and its
 *      error (w - q) / U_jj is spread over the columns not yet quantized.
 *   4. Optional refinement (`refine` passes) on the damped objective
 *      (w - q)^T (H + lambda I) (w - q) of each row: with the codes fixed,
 *      each block's fp16 scales (d, and dmin / m where the type has them)
 *      are refit by least squares; then a coordinate descent over codes
 *      moves any code whose change lowers the objective. Only changes that
 *      lower it are kept. The gradient H (w - q) is exact in double on the
 *      block being worked on; changes reach the other columns lazily, one
 *      float product per changed block (so a decision can differ from the
 *      all-double one only by float rounding in the gradient).
 *   5. The bytes are decoded and checked against the values the algorithm
 *      used.
 * Rows are independent given H: they are processed in fixed chunks over the
 * pool, so the bytes are identical for any thread count.
 *
 * act_order processes blocks (by decreasing sum of diag H), and the columns
 * inside each block, in decreasing diag H. ggml blocks need contiguous columns, so the order never
 * mixes columns of different blocks (plain GPTQ's act-order would).
 */
#ifndef QUANTKIT_GPTQ_METHOD_H
#define QUANTKIT_GPTQ_METHOD_H

#include "quantkit/common.h"
#include "quantkit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Target "type" for the GPTQ safetensors layout (quantkit/gptq.h), not a ggml type. */
#define QK_GPTQ_LAYOUT (-2)

typedef struct qk_gptq_opts {
    int type;              /* qk_type of the output, or QK_GPTQ_LAYOUT */
    int layout_bits;       /* QK_GPTQ_LAYOUT: 4 or 8 */
    int64_t layout_group;  /* QK_GPTQ_LAYOUT: inputs per group (<= 256) */
    int layout_sym;        /* QK_GPTQ_LAYOUT: symmetric groups */
    double damp;           /* relative damping (default 0.01) */
    int act_order;         /* see above (default 0) */
    int64_t batch;         /* lazy-batch width in columns; <= 0: 128 (rounded up to a block multiple) */
    int search;            /* 1 (default): weighted scale search for the 32-element types and the GPTQ
                              layout; 0: the type's reference encoder picks scales */
    int refine;            /* passes of scale refit + code descent (default 2; 0: off) */
} qk_gptq_opts;

/* Defaults for `type` (a qk_type or QK_GPTQ_LAYOUT with 4 bits, group 128, symmetric). */
void qk_gptq_opts_default(qk_gptq_opts *o, int type);

/* 1 when qk_gptq_quantize supports the ggml type. */
int qk_gptq_supports(int type);

typedef struct qk_gptq_stats {
    double damp;         /* relative damping the factorization succeeded with */
    int n_raises;        /* times damping was raised (x10 each) */
    int64_t n_dead;      /* input columns with diag H == 0 */
    double err;          /* final layer error tr((W-Q) H (W-Q)^T), undamped H */
    double err_gptq;     /* the same right after the GPTQ pass (before refinement) */
    double seconds;
} qk_gptq_stats;

/* Quantize w [rows][cols] (finite floats) with Hessian h [cols][cols]
 * (row-major, symmetric positive semi-definite; not modified) into dst: rows
 * packed rows of o->type (qk_type_row_bytes each); for QK_GPTQ_LAYOUT use
 * qk_gptq_quantize_layout instead. deq, when non-NULL, receives the decoded
 * values [rows][cols] (equal to decoding dst). cols must be a multiple of
 * the type's block size. st may be NULL. Errors: QK_EINVAL (shape, type,
 * options), QK_ENONFINITE (non-finite weights or Hessian, or no damping up to
 * 1000x the mean diagonal makes H factorizable), QK_ELIMIT (a scale
 * overflows fp16), QK_ENOMEM. Memory: two cols x cols double matrices besides
 * the caller's (a working copy of H and the Cholesky factor; with refine,
 * the factor is replaced by a float copy of H once the GPTQ pass is done),
 * and a few 128 x cols buffers per pool thread. st->err and
 * st->err_gptq are the objective as the algorithm accounts it (within
 * 1e-6 relative of qk_gptq_layer_error; the tests check). */
int qk_gptq_quantize(const qk_gptq_opts *o, const float *w, int64_t rows, int64_t cols, const double *h, void *dst,
                     float *deq, qk_pool *pool, qk_gptq_stats *st);
/* The same working on h in place: only its diagonal is changed while it
 * runs, and it is put back bit for bit before returning (success or not),
 * so a Hessian shared by several tensors (q/k/v) can be passed to each in
 * turn. One cols x cols double matrix besides h (the factor, then with
 * refine a float copy of h). Results are identical to qk_gptq_quantize;
 * tensors sharing h share one factorization with qk_gptq_prepare below. */
int qk_gptq_quantize_inplace(const qk_gptq_opts *o, const float *w, int64_t rows, int64_t cols, double *h, void *dst,
                             float *deq, qk_pool *pool, qk_gptq_stats *st);

/* A Hessian prepared once (dead columns, damping, column order, the
 * Cholesky factor of its inverse: 2/3 n^3 flops) for several tensors that
 * share one input, q/k/v or gate/up: qk_gptq_quantize_prepared on each gives
 * the very bytes and stats qk_gptq_quantize_inplace gives. h [cols][cols]
 * is worked on in place and must stay alive and unchanged until
 * qk_gptq_prepared_free, which restores its diagonal bit for bit. Memory:
 * the factor (cols^2 doubles) and, once a tensor is refined, a float copy
 * of h. ggml types only. A handle is used by one caller at a time. */
typedef struct qk_gptq_prepared qk_gptq_prepared;
int qk_gptq_prepare(qk_gptq_prepared **out, const qk_gptq_opts *o, double *h, int64_t cols, qk_pool *pool);
/* 1 when p can serve a tensor of `cols` columns quantized with o (the same
 * damping and act order, and the same block size under act order). */
int qk_gptq_prepared_fits(const qk_gptq_prepared *p, const qk_gptq_opts *o, int64_t cols);
/* qk_gptq_quantize with the prepared Hessian (QK_EINVAL when it does not fit o). */
int qk_gptq_quantize_prepared(const qk_gptq_opts *o, qk_gptq_prepared *p, const float *w, int64_t rows, void *dst,
                              float *deq, qk_pool *pool, qk_gptq_stats *st);
void qk_gptq_prepared_free(qk_gptq_prepared *p);

/* The same into the GPTQ layout (o->type == QK_GPTQ_LAYOUT): codes q
 * [rows][cols] in [0, 2^bits - 1], fp16 scales and zero points
 * [rows][cols / layout_group] (the arguments of qk_gptq_layer_put_row). */
int qk_gptq_quantize_layout(const qk_gptq_opts *o, const float *w, int64_t rows, int64_t cols, const double *h,
                            uint8_t *q, uint16_t *scale, uint16_t *zero, float *deq, qk_pool *pool,
                            qk_gptq_stats *st);
/* ... working on h in place (as qk_gptq_quantize_inplace). */
int qk_gptq_quantize_layout_inplace(const qk_gptq_opts *o, const float *w, int64_t rows, int64_t cols, double *h,
                                    uint8_t *q, uint16_t *scale, uint16_t *zero, float *deq, qk_pool *pool,
                                    qk_gptq_stats *st);

/* Per-row Hessians: row r's objective is (w_r - q_r)^T H_r (w_r - q_r) with
 * H_r filled by row_h(ctx, r, out[cols*cols]) (called once per row, from
 * pool threads, concurrently for different rows). For an output projection,
 * where a row's error matters in proportion to its token's probability.
 * Damping and dead columns are handled per row; the stats report the largest
 * damping used. */
typedef int (*qk_gptq_row_hessian_fn)(void *ctx, int64_t row, double *out);
int qk_gptq_quantize_rowwise(const qk_gptq_opts *o, const float *w, int64_t rows, int64_t cols,
                             qk_gptq_row_hessian_fn row_h, void *ctx, void *dst, float *deq, qk_pool *pool,
                             qk_gptq_stats *st);

/* ------------------------------------------------ Hessians for a model
 * Where qk-quantize --method gptq gets each tensor's Hessian:
 *   - a .qkc file with Hessians (qk-calibrate --hessian), or, without one,
 *   - a collection on the calibration text, layer by layer (layer-major:
 *     the hidden states of every window, tokens x n_embd floats, carried
 *     from one layer to the next): the full-precision model's four input
 *     Hessians of a layer in one sweep when its first tensor is asked for;
 *   - sequential: each layer's inputs collected on the model whose earlier
 *     tensors are already quantized (tensors must then be asked for in
 *     canonical order and reported with qk_gptq_calib_quantized); the
 *     inputs of q/k/v, attn_output, gate/up and ffn_down are collected as
 *     four groups per layer, each sweep stopping at its group, the layer's
 *     hidden states advanced once its tensors are quantized, from the kept
 *     inputs of attn_output and ffn_down (one matmul each): about one
 *     forward pass in all. Memory: the hidden states, one kept layer input
 *     (at most tokens x n_ff floats) and at most one layer's Hessians
 *     (q/k/v, attn_output, gate/up: n_embd^2 doubles; ffn_down: n_ff^2),
 *     and GPTQ's one factor matrix;
 *   - a .qkc is opened lazily (qk_calib_open): each Hessian is inflated
 *     from the file when its tensor is asked for, one at a time;
 *   - output.weight with calibration text, when n_vocab x n_embd^3 <= 1e12
 *     (beyond, the Hessian of its input on the current model): per-row Hessians
 *     H_v = sum_t p_v(t) x_t x_t^T + gamma * (sum_t x_t x_t^T) / n_vocab, where
 *     x_t is the final normed hidden state and p_v(t) the full-precision
 *     model's probability of token v at position t (entries below 1e-4
 *     dropped): the second-order KL divergence of the logits weights row v's
 *     error by how likely v is;
 *   - token_embd.weight (a lookup, no input): the identity, i.e. a weighted
 *     scale search and rounding without error compensation.
 */
typedef struct qk_gptq_calib_opts {
    const char *calib_path;  /* .qkc with Hessians, or NULL */
    const char *text_path;   /* calibration text, or NULL (then calib_path is required) */
    int64_t n_ctx;           /* window length for the text (default 128) */
    int64_t max_chunks;      /* windows used (<= 0: all) */
    int sequential;
    int output_rows;         /* per-row Hessians for output.weight when text is given (default 1) */
    double output_gamma;     /* gamma above (qk-quantize: 1, the average row's own weight) */
    int n_threads;
    int recompute_parts;     /* sequential: run each layer part again instead of keeping the input of
                                attn_output and ffn_down for the state's advance (tests: same bytes) */
} qk_gptq_calib_opts;

typedef struct qk_gptq_calib qk_gptq_calib;
/* Load / collect what the options ask for. m must outlive the object. */
int qk_gptq_calib_new(qk_gptq_calib **out, const qk_model *m, const qk_gptq_calib_opts *o);
void qk_gptq_calib_free(qk_gptq_calib *c);

/* Quantize the 2-D tensor t of the model (its rows w [rows][ne0], already
 * decoded and finite) with GPTQ into dst (packed rows of o->type), deq
 * optional. Errors name the tensor. In sequential mode call this in
 * canonical tensor order. */
int qk_gptq_calib_tensor(qk_gptq_calib *c, const qk_model_tensor *t, const qk_gptq_opts *o, const float *w,
                         void *dst, float *deq, qk_pool *pool, qk_gptq_stats *st);
/* The same for the GPTQ layout (qk_gptq_quantize_layout's outputs). */
int qk_gptq_calib_tensor_layout(qk_gptq_calib *c, const qk_model_tensor *t, const qk_gptq_opts *o, const float *w,
                                uint8_t *q, uint16_t *scale, uint16_t *zero, float *deq, qk_pool *pool,
                                qk_gptq_stats *st);
/* Sequential mode: the dequantized values [rows][ne0] of a tensor just
 * quantized replace its weights in later collection passes (no-op
 * otherwise). */
int qk_gptq_calib_quantized(qk_gptq_calib *c, const qk_model_tensor *t, const float *deq);
/* What the object did: layer sweeps (one layer, or one block of a layer,
 * run over every calibration window; a full forward pass counts n_layer)
 * and the seconds of all forward work and Hessian accumulation. */
void qk_gptq_calib_counts(const qk_gptq_calib *c, int64_t *passes, double *seconds);

/* tr((W - Q) H (W - Q)^T) in double, for w and q [rows][cols]. */
double qk_gptq_layer_error(const float *w, const float *q, int64_t rows, int64_t cols, const double *h);

#ifdef __cplusplus
}
#endif
#endif

/* Activation-aware per-channel scaling (AWQ; Lin et al., "AWQ:
 * Activation-aware Weight Quantization", 2023), folded exactly into the
 * model (quantize/awq.c).
 *
 * A linear layer y = x W^T computes the same function as (x / s) (W diag(s))^T
 * for any positive per-input-channel scales s. Quantizing W diag(s) instead
 * of W protects the columns that meet large activations (s > 1 there: their
 * relative rounding error shrinks) at the cost of the others. The 1/s is
 * folded into whatever produces the input, so the FP32 model is unchanged:
 *
 *   group     consumers (columns * s)   producer (* 1/s)
 *   qkv       attn_q, attn_k, attn_v     attn_norm.weight (RMSNorm gain, per channel)
 *   o         attn_output                attn_v rows (attention is linear in V; under
 *                                        GQA the query heads sharing a KV head share s)
 *   gate_up   ffn_gate, ffn_up           ffn_norm.weight
 *   down      ffn_down                   ffn_up rows (silu(gate) * up is linear in up)
 *   output    output.weight              output_norm.weight (untied models only)
 *
 * The scales live in the model view (qk_model_set_scales): nothing is
 * copied, and every reader — the forward pass, the quantizer, the GGUF
 * writer — sees the folded model. Written out, it is a standard llama
 * checkpoint (norms F32) that llama.cpp loads unchanged.
 *
 * Search, per group (as AWQ does): with m_j the activation magnitude of
 * input channel j, sqrt(mean x_j^2) from the calibration statistics,
 *   s_j = max(m_j^alpha, 1e-4) / sqrt(max_k s_k * min_k s_k)
 * for alpha = 0, 1/grid, ..., 1 (channels never active keep s_j = 1). Each
 * alpha quantizes every consumer W diag(s) with the type it will be written
 * in (and the importance matrix the final pass uses, as mean x^2 / s^2),
 * and scores the layer output error in the original coordinates,
 *   err = sum over consumers, rows r of d_r^T H d_r,  d_r = w_r - q_r / s
 * (q_r the dequantized scaled row, H = X^T X of the group's input from the
 * calibration file; with no Hessian, its diagonal sum x^2). The alpha with
 * the least error wins; alpha = 0 is plain quantization (s = 1), so the
 * estimated error never exceeds it. Groups are independent: the folded
 * FP32 model equals the original, so every group's input statistics stay
 * valid whatever the other groups chose.
 */
#ifndef QUANTKIT_AWQ_H
#define QUANTKIT_AWQ_H

#include "quantkit/calib.h"
#include "quantkit/common.h"
#include "quantkit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QK_AWQ_GRID 20           /* default alpha steps: 0, 0.05, ..., 1 */
#define QK_AWQ_SAMPLE_ROWS 1024  /* default rows per consumer in the error estimate */

enum { QK_AWQ_QKV = 0, QK_AWQ_O, QK_AWQ_GATE_UP, QK_AWQ_DOWN, QK_AWQ_OUTPUT };

typedef struct qk_awq_opts {
    int grid;                /* alpha = i / grid, i = 0..grid; <= 0: QK_AWQ_GRID */
    int fixed;               /* 1: no search, `alpha` for every group with statistics (also groups whose
                                consumers are not quantized); 0: search */
    double alpha;            /* the fixed alpha (>= 0) */
    int64_t sample_rows;     /* consumer rows in the error (evenly spaced); <= 0: QK_AWQ_SAMPLE_ROWS */
    const qk_calib *imatrix; /* the importance matrix the final pass encodes with, or NULL */
} qk_awq_opts;

typedef struct qk_awq_group {
    int64_t layer;                       /* block index; -1 for the output group */
    int kind;                            /* QK_AWQ_* */
    char name[QK_MODEL_MAX_NAME];        /* "blk.3.qkv", "output" */
    char prev[QK_MODEL_MAX_NAME];        /* absorbs 1/s: a norm weight, or attn_v / ffn_up (rows) */
    char cons[3][QK_MODEL_MAX_NAME];     /* consumers: input columns scaled by s */
    int n_cons;
    int64_t n;                           /* consumer input channels (length of s) */
    int64_t rep, head_dim;               /* o group: query heads per KV head (1 otherwise); head size */
    int searched;                        /* alpha chosen by the search (else fixed or skipped) */
    int diagonal;                        /* error from diag(H) (no Hessian for this input) */
    int skipped;                         /* s = 1: no statistics, or (search) no quantized consumer */
    double alpha;                        /* chosen alpha */
    double err_rtn, err;                 /* estimated output error at alpha = 0 and at alpha */
    float *s;                            /* [n] consumer column scales (NULL when skipped) */
} qk_awq_group;

typedef struct qk_awq_result {
    int64_t n;
    qk_awq_group *g;
    double seconds;
} qk_awq_result;

/* Choose the scales of every group of m from stats (entries named after
 * the consumers: sum_x2, and Hessians when present; a .qkc from
 * qk-calibrate [--hessian], or a llama.cpp .dat for the diagonal error).
 * types[i] is the type tensor qk_model_tensor_at(m, i) will be written in
 * (qk_quant_plan's choice); only quantized types count in the error. The
 * model must carry no scales yet (QK_EINVAL). Bit-identical for any pool
 * size: alphas are scored in parallel, each single-threaded (OpenBLAS is
 * set to one thread, as the forward pass does). */
int qk_awq_search(qk_awq_result **out, const qk_model *m, const qk_calib *stats, const int *types,
                  const qk_awq_opts *o, qk_pool *pool);
/* Install r's scales into m (multiplying any already there); groups that
 * were skipped or chose alpha = 0 leave their tensors untouched. */
int qk_awq_apply(qk_model *m, const qk_awq_result *r);
void qk_awq_result_free(qk_awq_result *r);

/* The statistics the search needs, collected from a calibration text on m
 * (llama-imatrix's windows: BOS first, n_ctx tokens; max_chunks <= 0: all):
 * sum_x2 and Hessians of every linear layer, and of output.weight when the
 * model has one. Needs m's tokenizer. */
int qk_awq_collect(qk_calib **out, const qk_model *m, const char *text_path, int64_t n_ctx, int64_t max_chunks,
                   int n_threads);

#ifdef __cplusplus
}
#endif
#endif

/* Perplexity and consistency metrics (llama.cpp's perplexity / KL-divergence
 * protocol) and the saved-base file.
 *
 * Protocol: the whole text is tokenized with BOS; cut into n_ctx windows (the
 * tail is dropped); the first token of each window is replaced by BOS; the
 * positions n_ctx/2 .. n_ctx-2 of each window are scored, each predicting the
 * next token ("second half"). With score_all every position 0 .. n_ctx-2 is
 * scored. PPL = exp(mean NLL); its error is PPL * sd(NLL)/sqrt(N-1).
 */
#ifndef QUANTKIT_METRICS_H
#define QUANTKIT_METRICS_H

#include "quantkit/common.h"
#include "quantkit/forward.h"
#include "quantkit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Cut tokens into windows: *out gets n_chunks * n_ctx ids (heap), the first
 * of each window set to bos (when bos >= 0). max_chunks <= 0: all. */
int qk_eval_windows(const int32_t *tokens, int64_t n_tokens, int64_t n_ctx, int64_t max_chunks, int32_t bos,
                    int32_t **out, int64_t *n_chunks);

/* log-softmax of n logits (accumulated in double) into out, which may be
 * logits itself; returns argmax. */
int64_t qk_log_softmax(const float *logits, int64_t n, float *out);

/* Percentile of a sorted array by linear interpolation at frac*(n-1). */
double qk_percentile(const float *sorted, int64_t n, double frac);

/* Base results kept by --save-base: for each scored position the base
 * model's log-probability of the correct token, its argmax, and its top-k
 * log-probabilities with their token ids. */
typedef struct qk_base_results {
    int64_t n_pos;      /* scored positions */
    int64_t k;          /* top-k kept per position */
    int64_t n_vocab;
    int64_t n_ctx, n_chunks;
    int score_all;
    uint64_t text_hash;  /* XXH3-64 of the text bytes */
    uint64_t vocab_hash; /* XXH3-64 over the token texts */
    uint64_t model_hash; /* XXH3-64 over the base model's tensor bytes (0 if not computed) */
    float *lp_correct;   /* [n_pos] */
    int32_t *top1;       /* [n_pos] */
    int32_t *ids;        /* [n_pos * k] */
    float *lps;          /* [n_pos * k], descending */
} qk_base_results;

void qk_base_results_free(qk_base_results *b);
/* File: "QKBASE01", u32 version, header fields, then a zlib stream of the
 * arrays, then the XXH3-64 of everything before it. Written atomically. */
int qk_base_results_save(const qk_base_results *b, const char *path);
int qk_base_results_load(qk_base_results **out, const char *path);

/* KL divergence of a quantized distribution lq (full log-probs) from the base
 * kept as top-k (ids, lps): the top-k terms plus one "rest" term for the
 * remaining mass, a lower bound of the full KLD that is exact when the base
 * mass outside the top-k is zero. */
double qk_kld_topk(const int32_t *ids, const float *lps, int64_t k, const float *lq);

/* Full-vocabulary KL divergence sum_i p_i (lp_i - lq_i), in double. */
double qk_kld_full(const float *lp, const float *lq, int64_t n);

/* The comparison of a quantized model with a base, position by position. */
typedef struct qk_eval_opts {
    int64_t n_ctx;       /* window length */
    int64_t max_chunks;  /* <= 0: all windows */
    int64_t batch_seqs;  /* windows per forward call (>= 1) */
    int score_all;
    int n_threads;
    int64_t top_k;       /* kept per position for --save-base (default 64) */
    int emulate_llamacpp; /* forward passes round like llama.cpp's CPU backend (see forward.h) */
} qk_eval_opts;

typedef struct qk_eval_data {
    int64_t n_pos, n_chunks, n_ctx;
    double *nll_base;   /* [n_pos] (NULL when only the quantized model ran) */
    double *nll_q;      /* [n_pos] (NULL when only the base ran) */
    float *kld;         /* [n_pos] */
    float *dp;          /* [n_pos] p_q(correct) - p_base(correct) */
    uint8_t *same_top;  /* [n_pos] */
    int kld_exact;      /* 0 when computed from a top-k saved base */
    double seconds_base, seconds_q;         /* wall-clock seconds of each model's passes and scoring */
    double cpu_seconds_base, cpu_seconds_q; /* process CPU seconds (all threads) over the same spans */
    int64_t tokens_base, tokens_q; /* tokens processed by each forward */
} qk_eval_data;

void qk_eval_data_free(qk_eval_data *d);

/* Run the protocol. windows: n_chunks * n_ctx ids. Either model may be NULL:
 * base only (perplexity), quant only (perplexity), or both (comparison);
 * with base == NULL and a loaded saved base, the comparison uses it. When
 * save is non-NULL the base model's results are collected into it. */
int qk_eval_run(const qk_model *base, const qk_model *quant, const qk_base_results *loaded,
                const int32_t *windows, int64_t n_chunks, const qk_eval_opts *o, qk_eval_data **out,
                qk_base_results **save);

#ifdef __cplusplus
}
#endif
#endif

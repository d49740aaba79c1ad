/* quantize/: choosing a type per tensor (llama.cpp's mixes, overrides,
 * fallbacks) and encoding tensors row-parallel. */
#ifndef QUANTKIT_QUANTIZE_H
#define QUANTKIT_QUANTIZE_H

#include <regex.h>

#include "quantkit/common.h"
#include "quantkit/ggml_types.h"
#include "quantkit/gptq.h"
#include "quantkit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* llama.cpp's llama_ftype values (general.file_type). */
enum {
    QK_FTYPE_ALL_F32 = 0, QK_FTYPE_F16 = 1, QK_FTYPE_Q4_0 = 2, QK_FTYPE_Q4_1 = 3, QK_FTYPE_Q8_0 = 7,
    QK_FTYPE_Q5_0 = 8, QK_FTYPE_Q5_1 = 9, QK_FTYPE_Q2_K = 10, QK_FTYPE_Q3_K_S = 11, QK_FTYPE_Q3_K_M = 12,
    QK_FTYPE_Q3_K_L = 13, QK_FTYPE_Q4_K_S = 14, QK_FTYPE_Q4_K_M = 15, QK_FTYPE_Q5_K_S = 16,
    QK_FTYPE_Q5_K_M = 17, QK_FTYPE_Q6_K = 18, QK_FTYPE_Q2_K_S = 21, QK_FTYPE_IQ4_NL = 25,
    QK_FTYPE_IQ4_XS = 30, QK_FTYPE_BF16 = 32
};

/* A quantization target named on the command line: "Q4_K_M", "q4_0", ... */
typedef struct qk_ftype_info {
    const char *name;
    int ftype;     /* QK_FTYPE_* */
    int base_type; /* qk_type used for most 2-D weights */
    const char *description;
} qk_ftype_info;

/* Look up a target name (case-insensitive); NULL if unknown. */
const qk_ftype_info *qk_ftype_find(const char *name);
/* All targets, for --help and error messages (NULL-terminated name list). */
const qk_ftype_info *qk_ftype_list(int64_t *n);

typedef struct qk_type_override {
    regex_t re;
    char *pattern;
    int type;
} qk_type_override;

typedef struct qk_quant_params {
    const qk_ftype_info *target;
    int pure;                 /* one type for every 2-D weight (no mix rules) */
    int output_type;          /* -1: by the rules */
    int embed_type;           /* -1: by the rules */
    const qk_type_override *overrides;
    int64_t n_overrides;
    int has_imatrix;
} qk_quant_params;

/* Why a tensor got its type. */
enum { QK_PLAN_KEEP = 0, QK_PLAN_BASE, QK_PLAN_MIX, QK_PLAN_OVERRIDE, QK_PLAN_OPTION, QK_PLAN_ALLOC };

typedef struct qk_plan_entry {
    int type;       /* final type */
    int wanted;     /* type before the block-size fallback */
    int fallback;   /* 1 when the row length forced another type */
    int reason;     /* QK_PLAN_* */
} qk_plan_entry;

/* Choose a type for every tensor of m (plan[i] for qk_model_tensor_at(m, i)):
 * 1-D tensors (norms) stay F32; 2-D weights follow llama.cpp's rules for the
 * target (build b4748: output and tied embeddings Q6_K, attention V and FFN
 * down promoted in the same layers for *_M mixes, ...) unless params->pure;
 * --tensor-type overrides, then --output-type / --embed-type, win; a type
 * whose block does not divide the row length falls back (Q2_K, Q3_K, IQ4_XS
 * -> IQ4_NL; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0; anything still
 * incompatible -> F16). */
int qk_quant_plan(const qk_model *m, const qk_quant_params *p, qk_plan_entry *plan);

/* Encode rows [0, n_rows) of ne0 floats (src, row-major) as `type` into dst,
 * row-parallel over the pool. Uses the type's best encoder (from_float,
 * else from_float_ref); importance (ne0 weights, shared by all rows) may be
 * NULL. Output is bit-identical for any thread count. */
int qk_quantize_rows(int type, const float *src, void *dst, int64_t n_rows, int64_t ne0, const float *importance,
                     qk_pool *pool);

/* Index of the first non-finite value in x[0..n), or -1. */
int64_t qk_find_nonfinite(const float *x, int64_t n);

/* ------------------------------------------------- size allocation
 * quantize/alloc.c: a type per tensor chosen to minimise an estimated loss
 * within a byte budget (qk-quantize --target-size / --target-bpw).
 *
 * Candidates of a 2-D tensor: the types quantkit encodes whose block divides
 * its row length (Q2_K, Q3_K, IQ4_XS, Q4_K, Q5_K, Q6_K for multiples of 256;
 * Q4_0, IQ4_NL, Q4_1, Q5_0, Q5_1, Q8_0 for multiples of 32; F16 always),
 * optionally restricted to a list. 1-D tensors and tensors pinned by
 * --tensor-type / --output-type / --embed-type keep their planned type and
 * only count against the budget.
 *
 * Error: every candidate encodes a deterministic sample of the tensor's rows
 * (evenly spaced, each read once from the mapped input: sample_rows of them,
 * or by default up to 256 rows and 2^18 elements but at least 16 rows)
 * with the encoder qk_quantize_rows() uses, the importance vector when the
 * imatrix has an entry; err = sum over rows and columns of imp_j (w - q)^2
 * (imp = the imatrix's mean x^2, else 1), scaled from the sample to all rows.
 *
 * Loss (what the solver adds up): err * gain. By default gain = the kind
 * factor of the tensor (qk_alloc_kind_factor) / its energy sum imp_j w^2 over
 * the same rows: the relative error of the tensor's output, weighted per
 * kind. Measured (qk_alloc_params.measure): the mean KL divergence of the
 * model's next-token distribution, on calibration windows, with only this
 * tensor quantized (qk_forward_override_weight), either at one probe type per
 * tensor (gain = KLD / err there: the second-order model, KLD proportional
 * to the weighted error) or at every candidate (loss = the measured KLD).
 *
 * Solver: exact dynamic programming over the budget in units of the greatest
 * common divisor of the candidates' costs (coarser units, with costs rounded
 * up, when tensors x units would exceed 2^26 cells), then a greedy top-up of
 * any budget the rounding left. Deterministic: ties go to the smaller type. */

#define QK_ALLOC_MAX_CAND 16
#define QK_ALLOC_SAMPLE_ROWS 256 /* most rows sampled per tensor by default */

enum { QK_ALLOC_SIZE = 1, QK_ALLOC_BPW = 2 };
enum { QK_ALLOC_MEASURE_NONE = 0, QK_ALLOC_MEASURE_PROBE = 1, QK_ALLOC_MEASURE_ALL = 2 };

typedef struct qk_alloc_cand {
    int type;
    uint64_t bytes;   /* the tensor in this type (unpadded) */
    uint64_t cost;    /* what it takes from the budget: bytes padded to the alignment (size mode) */
    double err;       /* sum imp_j (w - q)^2 over all rows (estimated from the sample) */
    double err_plain; /* the same with imp = 1 */
    double loss;      /* estimated loss contribution */
    double kld;       /* measured mean KLD with only this tensor in this type; < 0: not measured */
} qk_alloc_cand;

typedef struct qk_alloc_tensor {
    int fixed;          /* 1: not chosen here (1-D, pinned); its planned type only counts */
    int n_cand;
    qk_alloc_cand cand[QK_ALLOC_MAX_CAND]; /* by increasing bytes */
    int64_t rows_sampled;
    double energy;      /* sum imp_j w^2 over all rows (estimated) */
    double energy_plain;
    double factor;      /* kind factor */
    double gain;        /* loss per unit of err */
    int measured;       /* gain or losses from measured KLD */
    int choice;         /* index into cand after solving; -1 for fixed tensors */
} qk_alloc_tensor;

/* Candidate types for rows of ne0 elements, by increasing bits per weight,
 * restricted to allowed[0..n_allowed) when allowed is non-NULL (F32 and
 * BF16 are candidates only when listed there). Returns the count (0 when
 * no allowed type fits). types holds QK_ALLOC_MAX_CAND entries. */
int qk_alloc_candidates(int64_t ne0, const int *allowed, int n_allowed, int *types);

/* The default loss weight of a tensor kind, by GGUF name (measured on
 * stories260K, see alloc.c; 0.45 for names it does not know). Tied token
 * embeddings get the output projection's factor added (qk_alloc_plan). */
double qk_alloc_kind_factor(const char *name);

typedef struct qk_alloc_params {
    int mode;               /* QK_ALLOC_SIZE or QK_ALLOC_BPW */
    uint64_t target_bytes;  /* SIZE: the whole output file may take at most this many bytes */
    double target_bpw;      /* BPW: the tensors' data (unpadded) may take at most target_bpw / 8 bytes per
                               element, over the elements of every tensor (norms included) */
    uint64_t header_bytes;  /* SIZE: bytes before the data section (qk_gguf_writer_header_bytes) */
    uint32_t alignment;     /* SIZE: the file's tensor alignment (each tensor padded to it) */
    const int *types;       /* candidate restriction (NULL: every candidate) */
    int n_types;
    const struct qk_calib *imatrix; /* importance per tensor (NULL: imp = 1) */
    int64_t sample_rows;    /* rows sampled per tensor; <= 0: the default (above) */
    int allow_nonfinite;    /* NaN/Inf weights count as 0 instead of being refused */
    int measure;            /* QK_ALLOC_MEASURE_*; needs calib_text */
    const char *calib_text;
    int64_t n_ctx;          /* calibration windows (measure) */
    int64_t max_chunks;     /* <= 0: 16 */
    int n_threads;
} qk_alloc_params;

typedef struct qk_alloc_result {
    uint64_t budget;        /* SIZE: target_bytes; BPW: floor(target_bpw * elements / 8) */
    uint64_t fixed_cost;    /* SIZE: header + fixed tensors (padded); BPW: fixed tensors' bytes */
    uint64_t chosen_cost;   /* the allocated tensors' cost */
    uint64_t predicted;     /* SIZE: the file's bytes; BPW: all tensors' bytes */
    double loss;            /* sum of the chosen candidates' losses */
    int64_t n_alloc;        /* tensors the allocator chose */
    int64_t n_measured;     /* forward passes for measurements */
    double seconds_estimate, seconds_measure;
} qk_alloc_result;

/* Choose types for the tensors of m whose plan entry is QK_PLAN_BASE (from
 * qk_quant_plan with pure set): plan[i] gets the chosen type and
 * QK_PLAN_ALLOC; other entries are fixed and only counted. at[n_tensors]
 * receives every tensor's candidates and estimates (for reports). Errors:
 * QK_EINVAL when even the smallest candidates exceed the budget (the message
 * gives the smallest possible size), QK_ENONFINITE for NaN/Inf weights
 * (unless allow_nonfinite), and those of reading the calibration text. */
int qk_alloc_plan(const qk_model *m, const qk_alloc_params *p, qk_plan_entry *plan, qk_alloc_tensor *at,
                  qk_alloc_result *res, qk_pool *pool);

/* The solver alone: choose at[i].choice for every non-fixed tensor with
 * candidates, minimising the sum of cand[].loss with the sum of cand[].cost
 * at most budget. *min_cost (optional) gets the smallest possible cost.
 * QK_EINVAL when that exceeds the budget. */
int qk_alloc_solve(qk_alloc_tensor *at, int64_t n, uint64_t budget, uint64_t *min_cost);

/* ------------------------------------------------- GPTQ-layout export
 * quantize/gptq_export.c writes a Hugging Face directory whose 7 linear
 * layers per block (attn_q/k/v/output, ffn_gate/up/down) are GPTQ layers
 * (layout in quantkit/gptq.h) and whose other tensors (embeddings, norms,
 * lm_head) are F16, as AutoGPTQ writes them: model.safetensors, config.json
 * with "quantization_config", quantize_config.json, tokenizer.json.
 *
 * The codes come from a producer: for each quantized layer the exporter
 * hands it a qk_gptq_layer, and the producer stores the codes it chose for
 * every canonical row with qk_gptq_layer_put_row(). RTN
 * (qk_gptq_rtn_produce) is the built-in producer; an error-compensating one
 * plugs in the same way. */

typedef struct qk_gptq_layer {
    const qk_model_tensor *t; /* the canonical tensor, ne = {n_in, n_out} */
    int bits, sym;
    int64_t group_size, n_in, n_out, n_groups;
    /* private to the exporter */
    qk_gptq_packed packed;    /* stored (Hugging Face) row order */
    int64_t perm_heads;       /* canonical row r is stored at qk_rope_perm_row(r, ...) */
    uint8_t *row_done;        /* [n_out] */
} qk_gptq_layer;

/* Store the codes chosen for canonical row r in [0, n_out): q[n_in] in
 * [0, 2^bits - 1], fp16 scales scale[n_groups] and zero points
 * zero[n_groups] in [1, 2^bits] per group of group_size inputs; the row
 * decodes as w[i] = (q[i] - zero[i/group_size]) * scale[i/group_size].
 * Safe to call concurrently for distinct rows; each row exactly once. */
int qk_gptq_layer_put_row(qk_gptq_layer *L, int64_t r, const uint8_t *q, const uint16_t *scale,
                          const uint16_t *zero);

/* A producer: choose and put the codes of every row of L. */
typedef int (*qk_gptq_producer_fn)(void *ctx, const qk_model *m, qk_gptq_layer *L, qk_pool *pool);

/* The round-to-nearest reference encoder of one row of n_in weights, per
 * group of group_size inputs (maxq = 2^bits - 1; ranges include 0 as
 * AutoGPTQ's quantizer does):
 *   asymmetric: scale = (max - min) / maxq, zero = round(-min / scale);
 *               zero 0 cannot be stored in the v1 layout, so such a group
 *               uses zero 1 and scale = max / (maxq - 1);
 *   symmetric:  scale = 2 * max(|min|, |max|) / maxq, zero = 2^(bits-1);
 *   an all-zero group uses min = -1, max = 1;
 *   q = clamp(round_half_even(w / s16) + zero, 0, maxq), s16 the scale
 *   rounded to fp16 (what is stored), so the codes fit the stored scale;
 *   a scale that underflows fp16 to 0 gives q = zero (decodes to 0).
 * w must be finite. QK_ELIMIT when a scale overflows fp16. */
int qk_gptq_rtn_row(const float *w, int64_t n_in, int bits, int64_t group_size, int sym, uint8_t *q,
                    uint16_t *scale, uint16_t *zero);

typedef struct qk_gptq_rtn_ctx {
    const char *source;    /* input path, for messages */
    int allow_nonfinite;   /* replace NaN/Inf weights by 0 instead of refusing them */
    uint64_t n_fixed;      /* out: weights replaced */
} qk_gptq_rtn_ctx;
/* RTN producer (ctx: qk_gptq_rtn_ctx): decodes rows in chunks and encodes
 * them row-parallel with qk_gptq_rtn_row; bytes identical for any thread
 * count. */
int qk_gptq_rtn_produce(void *ctx, const qk_model *m, qk_gptq_layer *L, qk_pool *pool);

typedef struct qk_gptq_export_params {
    int bits;                   /* 4 or 8 */
    int64_t group_size;         /* inputs per group (qk-quantize: 32, 64, 128) */
    int sym;                    /* symmetric (zero 2^(bits-1)) or asymmetric */
    int force;                  /* replace an existing non-empty output directory */
    int allow_nonfinite;        /* F16 tensors and RTN: NaN/Inf weights become 0 */
    const char *source;         /* input path, for messages */
    qk_gptq_producer_fn produce; /* NULL: RTN (qk_gptq_rtn_produce) */
    void *produce_ctx;
} qk_gptq_export_params;

typedef struct qk_gptq_export_stats {
    uint64_t file_bytes;     /* model.safetensors */
    uint64_t tensor_bytes;   /* stored tensor data */
    uint64_t total_elems;    /* weights of the model */
    uint64_t quant_elems, quant_bytes; /* over the GPTQ layers */
    int64_t n_quantized;     /* GPTQ layers */
    uint64_t n_fixed;        /* non-finite weights replaced (allow_nonfinite) */
    uint64_t *tensor_bytes_each; /* optional, caller's [qk_model_n_tensors(m)]: stored bytes per tensor */
} qk_gptq_export_stats;

/* 1 when the export stores t as a GPTQ layer (the 7 linear layers per block). */
int qk_gptq_export_quantizes(const qk_model_tensor *t);

/* Write the GPTQ-layout directory `dir` atomically (built in a temporary
 * sibling and renamed into place; nothing is left behind on error). Every
 * layer's shape is checked before anything is written: its inputs must be
 * a multiple of group_size (a padded FFN, --pad-ffn, helps ffn_down) and of
 * 32/bits, its outputs a multiple of 32/bits. stats may be NULL. */
int qk_gptq_export(const qk_model *m, const char *dir, const qk_gptq_export_params *p, qk_pool *pool,
                   qk_gptq_export_stats *stats);

#ifdef __cplusplus
}
#endif
#endif

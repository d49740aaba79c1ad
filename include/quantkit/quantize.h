/* quantize/: choosing a type per tensor (llama.cpp's mixes, overrides,
 * fallbacks) and encoding tensors row-parallel. */
#ifndef QUANTKIT_QUANTIZE_H
#define QUANTKIT_QUANTIZE_H

#include <regex.h>

#include "quantkit/common.h"
#include "quantkit/ggml_types.h"
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
enum { QK_PLAN_KEEP = 0, QK_PLAN_BASE, QK_PLAN_MIX, QK_PLAN_OVERRIDE, QK_PLAN_OPTION };

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

#ifdef __cplusplus
}
#endif
#endif

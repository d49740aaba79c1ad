/* Calibration statistics: importance matrices and Hessians of every linear
 * layer's input, collected by qk-calibrate through the forward-pass hooks and
 * consumed by qk-quantize (--imatrix, --method gptq|awq).
 *
 * One entry per weight tensor (GGUF name, e.g. "blk.3.attn_q.weight"); the
 * tensors that read the same input (q/k/v, gate/up) share one Hessian, kept
 * once under the first of them and referenced by the others.
 */
#ifndef QUANTKIT_CALIB_H
#define QUANTKIT_CALIB_H

#include "quantkit/common.h"
#include "quantkit/forward.h"
#include "quantkit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qk_calib_entry {
    char *name;         /* weight tensor name */
    int64_t n_in;       /* input features (columns) */
    int64_t n_tokens;   /* tokens accumulated */
    int64_t n_calls;    /* forward calls seen (llama.cpp's ncall) */
    double *sum_x2;     /* [n_in] sum over tokens of x_j^2 (importance = sum_x2 / n_tokens) */
    double *sum_x;      /* [n_in] sum over tokens of x_j (optional, NULL if absent) */
    double *absmax;     /* [n_in] max |x_j| (optional, for AWQ) */
    int64_t hessian_of; /* index of the entry that holds this input's Hessian; -1 none; == own index: here */
    double *xtx;        /* [n_in * n_in] sum of x x^T (row-major, symmetric), when hessian_of == own index */
} qk_calib_entry;

typedef struct qk_calib {
    int64_t n;
    qk_calib_entry *e;
    /* provenance */
    uint64_t model_hash; /* XXH3-64 over the model's tensor bytes, canonical order (0 unknown) */
    uint64_t text_hash;  /* XXH3-64 of the calibration text (0 unknown) */
    int64_t n_ctx, n_chunks;
    char *dataset;       /* calibration text file name (may be NULL) */
} qk_calib;

void qk_calib_free(qk_calib *c);
const qk_calib_entry *qk_calib_find(const qk_calib *c, const char *name);
/* Importance vector (sum_x2 / n_tokens) of an entry into out[n_in] (float). */
void qk_calib_importance(const qk_calib_entry *e, float *out);
/* The Hessian of an entry (its own or the shared one), or NULL. */
const double *qk_calib_hessian(const qk_calib *c, const qk_calib_entry *e);

/* Collecting: attach to a forward pass, run windows, detach. */
typedef struct qk_calib_collector qk_calib_collector;
int qk_calib_collector_new(qk_calib_collector **out, const qk_model *m, int with_hessian);
/* The hook to install with qk_forward_set_hook(f, qk_calib_hook, collector). */
int qk_calib_hook(void *collector, const qk_linear_event *ev);
/* Take the statistics (the collector keeps nothing). */
int qk_calib_collector_finish(qk_calib_collector *c, qk_calib **out);
void qk_calib_collector_free(qk_calib_collector *c);

/* Files. llama.cpp's legacy imatrix .dat (values = mean x^2 * ncall, as
 * llama-imatrix writes them) and quantkit's own file (everything above,
 * Hessians zlib-compressed, XXH3-64 checksummed). Load detects the format. */
int qk_calib_save_dat(const qk_calib *c, const char *path);
int qk_calib_save_qkc(const qk_calib *c, const char *path);
int qk_calib_load(qk_calib **out, const char *path);
/* Merge b into a (token-weighted, as llama.cpp's --in-file does). */
int qk_calib_merge(qk_calib *a, const qk_calib *b);

#ifdef __cplusplus
}
#endif
#endif

/* Calibration statistics: importance matrices and Hessians of every linear
 * layer's input, collected by qk-calibrate through the forward-pass hooks and
 * consumed by qk-quantize (--imatrix, --method gptq|awq).
 *
 * One entry per weight tensor (GGUF name, e.g. "blk.3.attn_q.weight"); the
 * tensors that read the same input (q/k/v, gate/up) share one Hessian, kept
 * once under the first of them and referenced by the others.
 *
 * Protocol (llama.cpp's llama-imatrix, see docs/CALIBRATION.md): the text is
 * tokenized with BOS and cut into n_ctx windows whose first token is BOS;
 * every position of every window is accumulated; each window counts as
 * ceil(n_ctx / 512) calls (llama.cpp's ncall: one per micro-batch of its
 * default 512 tokens); the output projection only on request.
 */
#ifndef QUANTKIT_CALIB_H
#define QUANTKIT_CALIB_H

#include "quantkit/common.h"
#include "quantkit/forward.h"
#include "quantkit/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits applied to files and collections (beyond them: QK_ELIMIT). */
#define QK_CALIB_MAX_ENTRIES (1 << 20)
#define QK_CALIB_MAX_NAME 1024         /* bytes of an entry name */
#define QK_CALIB_MAX_N_IN (1 << 24)    /* columns of an entry */
#define QK_CALIB_MAX_HESSIAN_N (1 << 16) /* columns of an entry holding a Hessian */
#define QK_CALIB_MAX_DATASET 4096      /* bytes of the dataset name */
#define QK_CALIB_UBATCH 512            /* llama.cpp's default micro-batch (ncall per window) */

typedef struct qk_calib_entry {
    char *name;         /* weight tensor name */
    int64_t n_in;       /* input features (columns) */
    int64_t n_tokens;   /* weight of the statistics: tokens accumulated (an entry read from a llama.cpp
                           .dat, which stores no token count, gets its ncall, as llama.cpp does) */
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
    uint64_t model_hash; /* XXH3-64 over the model's tensor bytes, canonical order (0 unknown);
                            see qk_calib_model_hash */
    uint64_t text_hash;  /* XXH3-64 of the calibration text (0 unknown) */
    int64_t n_ctx;       /* window length (0 unknown, e.g. read from a .dat) */
    int64_t n_chunks;    /* windows accumulated (a .dat stores llama.cpp's last ncall here) */
    char *dataset;       /* calibration text file name (may be NULL) */
} qk_calib;

/* An empty set (n = 0); free with qk_calib_free. */
int qk_calib_new(qk_calib **out);
void qk_calib_free(qk_calib *c);
const qk_calib_entry *qk_calib_find(const qk_calib *c, const char *name);
/* Importance vector (sum_x2 / n_tokens, computed in double, rounded once)
 * of an entry into out[n_in] (float). For an entry read from a llama.cpp
 * .dat this equals llama-quantize's value / ncall bit for bit. */
void qk_calib_importance(const qk_calib_entry *e, float *out);
/* The Hessian of an entry (its own or the shared one), or NULL. */
const double *qk_calib_hessian(const qk_calib *c, const qk_calib_entry *e);

/* XXH3-64 over the bytes of every tensor of m in canonical order (GPTQ
 * layers: their qweight, qzeros, scales, g_idx), the value qk-quantize
 * records as quantkit.source_xxh3. Reads the whole model once. */
int qk_calib_model_hash(const qk_model *m, uint64_t *out);

/* Check that c fits m: every entry names a tensor of m whose ne[0] equals
 * its n_in (QK_EFORMAT naming the first that does not). With allow_unknown,
 * entries naming no tensor of m are ignored instead of refused. */
int qk_calib_check_model(const qk_calib *c, const qk_model *m, int allow_unknown);

/* Collecting: attach to a forward pass, run windows, detach. */
typedef struct qk_calib_opts {
    int64_t n_ctx;       /* window length of the runs (tokens per event are a multiple of it); required */
    int hessian;         /* accumulate X^T X per distinct input (q/k/v share, gate/up share) */
    int sum_x;           /* accumulate sum x per column */
    int absmax;          /* track max |x| per column */
    int output;          /* also collect output.weight (untied models; llama-imatrix --process-output):
                            the forward pass must then compute logits for every position */
    int n_threads;       /* for the Hessian updates; <= 0: all CPUs */
} qk_calib_opts;

typedef struct qk_calib_collector qk_calib_collector;
/* Entries for every linear layer of m (and output.weight when asked and
 * present), all memory allocated here: sum arrays, and with o->hessian the
 * Hessians (n_in^2 doubles per distinct input: q/k/v, attn_output,
 * gate/up, ffn_down; QK_ENOMEM / QK_ELIMIT naming the size when they do
 * not fit). The model must outlive the collector. */
int qk_calib_collector_new(qk_calib_collector **out, const qk_model *m, const qk_calib_opts *o);
/* Bytes the collector of qk_calib_collector_new(m, o) would hold (for
 * reporting before allocating). */
uint64_t qk_calib_collector_bytes(const qk_model *m, const qk_calib_opts *o);
/* The hook to install with qk_forward_set_hook(f, qk_calib_hook, collector).
 * Observes inputs only (events with y == NULL); a non-finite activation
 * ends the pass with QK_ENONFINITE naming the tensor. */
int qk_calib_hook(void *collector, const qk_linear_event *ev);
/* Take the statistics (the collector keeps nothing; Hessians are mirrored
 * to full symmetric matrices here). n_ctx, n_chunks (windows seen) are set;
 * model_hash, text_hash and dataset are the caller's to fill. */
int qk_calib_collector_finish(qk_calib_collector *c, qk_calib **out);
void qk_calib_collector_free(qk_calib_collector *c);

/* Files. llama.cpp's legacy imatrix .dat (values = mean x^2 * ncall, as
 * llama-imatrix writes them; entry order kept, so a .dat read and written
 * back is byte-identical) and quantkit's own .qkc file (everything above,
 * Hessians zlib-compressed, XXH3-64 checksummed). Both are written
 * atomically; byte layouts in docs/CALIBRATION.md. Load detects the format
 * and validates every field (counts, lengths, sizes, NaN/Inf, negative
 * sums, duplicate names, checksum). */
int qk_calib_save_dat(const qk_calib *c, const char *path);
int qk_calib_save_qkc(const qk_calib *c, const char *path);
int qk_calib_load(qk_calib **out, const char *path);
/* Merge b into a, token-weighted (sums and counts add, as llama.cpp's
 * --in-file does); entries only in b are appended. An n_in mismatch is
 * QK_EFORMAT naming the tensor. Optional statistics (sum_x, absmax,
 * Hessians) survive only where both sides have them. Provenance fields that
 * differ become unknown (0 / NULL); n_chunks add; merging into an empty
 * set (qk_calib_new) copies b. On an n_in mismatch a is unchanged; after
 * QK_ENOMEM it is partly merged (still valid to free). */
int qk_calib_merge(qk_calib *a, const qk_calib *b);

#ifdef __cplusplus
}
#endif
#endif

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
    double *xtx;        /* [n_in * n_in] sum of x x^T (row-major, symmetric), when hessian_of == own index
                           (NULL in a set from qk_calib_open: see xtx_at) */
    uint64_t xtx_at;    /* qk_calib_open: where the Hessian is in the file (0: none there) */
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
    void *src;           /* qk_calib_open: the mapped file the Hessians stay in (private) */
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
    int hessian_per_layer; /* with hessian: allocate a layer's Hessians only while qk_calib_collect_layers
                              runs that layer (the only way to collect with this set) */
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

/* Layer-major collection: the n_win windows win [n_win][n_ctx] (n_ctx =
 * the collector's) are embedded, then run through layer 0, 1, ... over all
 * windows (qk_forward_layer, as many windows per call as f's max_tokens
 * holds), the hidden states of every window kept between layers
 * (n_win * n_ctx * n_embd floats). Installs the collector's hook on f.
 * After each layer (and after the output projection's input, when the
 * collector has output.weight), its entries [first, first+count) are
 * complete: fn(ctx, set, layer, first, count) is called (layer -1 for the
 * output), then, with hessian_per_layer, the Hessians of those entries are
 * freed; fn may write them (qk_calib_writer_put). fn NULL: nothing is
 * freed. n_layers > 0 stops after that many layers (benchmarking; the
 * later entries then stay empty and finish refuses the set). prog, when
 * non-NULL, advances by the windows of each call (n_layers x n_win in
 * all). A non-zero return from fn ends the run with it. */
typedef int (*qk_calib_layer_fn)(void *ctx, const qk_calib *set, int64_t layer, int64_t first, int64_t count);
int qk_calib_collect_layers(qk_calib_collector *c, qk_forward *f, const int32_t *win, int64_t n_win, int64_t n_layers,
                            qk_calib_layer_fn fn, void *ctx, qk_progress *prog);

/* Internal value a hook returns to end a pass early on purpose. */
#define QK_CALIB_STOP 1

/* h [n][n] (upper triangle) += x^T x for x [T][n] floats: tiles over pool
 * (NULL: the calling thread), float partial sums over at most 256 tokens
 * added in double; the order of every sum is fixed, so the result does not
 * depend on the thread count. scratch and tiles from qk_calib_xtx_scratch
 * (for the largest n used, the same pool). The lower triangle is not
 * touched except inside the 256 x 256 tiles on the diagonal (computed
 * whole); callers mirror the upper one. Allocates 256 x T floats per
 * thread for the call; QK_ENOMEM. */
int qk_calib_xtx_add(double *h, const float *x, int64_t T, int64_t n, qk_pool *pool, float *scratch,
                     int64_t *tiles);
int qk_calib_xtx_scratch(int64_t n, qk_pool *pool, float **scratch, int64_t **tiles);

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
/* As qk_calib_load (every field and every Hessian stream validated, the
 * checksum verified), but Hessians stay in the file: entries' xtx are NULL
 * and qk_calib_read_hessian inflates one on demand. Memory: the sums only
 * (pages of the mapped file are released as they are read). Such a set is
 * for reading Hessians one at a time (qk-quantize --method gptq --calib);
 * qk_calib_hessian returns NULL for it, and it cannot be merged or saved. */
int qk_calib_open(qk_calib **out, const char *path);
/* Index of the entry holding e's Hessian (in memory or in the file), or -1. */
int64_t qk_calib_hessian_owner(const qk_calib *c, const qk_calib_entry *e);
/* The Hessian of entry i (an owner) into out [n_in * n_in] (full symmetric
 * matrix). QK_ENOTFOUND when entry i holds none; file errors as qk_calib_load. */
int qk_calib_read_hessian(const qk_calib *c, int64_t i, double *out);

/* Writing a .qkc entry by entry (the Hessians of one layer at a time):
 * open with the header fields of hdr (model_hash, text_hash, n_ctx,
 * n_chunks, dataset; its entries are not used) and the number of entries,
 * put entries 0, 1, ... of a set in order (an entry referring to another's
 * Hessian needs that one's xtx still present), commit. The bytes equal
 * qk_calib_save_qkc's of the complete set. The file appears only at commit;
 * an error or qk_calib_writer_abort leaves nothing. */
typedef struct qk_calib_writer qk_calib_writer;
int qk_calib_writer_open(qk_calib_writer **out, const char *path, const qk_calib *hdr, int64_t n_entries);
int qk_calib_writer_put(qk_calib_writer *w, const qk_calib *c, int64_t i);
int qk_calib_writer_commit(qk_calib_writer *w); /* frees w */
void qk_calib_writer_abort(qk_calib_writer *w); /* frees w; accepts NULL */
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

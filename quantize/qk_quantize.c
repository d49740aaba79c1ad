/* qk-quantize: any supported checkpoint -> GGUF with ggml block types, or
 * (--format gptq) a Hugging Face directory with GPTQ-layout INT4/INT8 layers.
 * Tensors stream from the mapped input through row-parallel encoders to the
 * atomic output in chunks of rows; memory stays at a few chunks (GPTQ: plus
 * one packed layer). */
#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quantkit/awq.h"
#include "quantkit/calib.h"
#include "quantkit/common.h"
#include "quantkit/gguf.h"
#include "quantkit/gptq_method.h"
#include "quantkit/model.h"
#include "quantkit/quantize.h"
#include "quantkit/tool.h"

#define CHUNK_FLOATS (4u << 20) /* rows per chunk: about 16 MiB of floats */
#define MAX_OVERRIDES 64

enum { FORMAT_GGUF = 0, FORMAT_GPTQ = 1 };
enum { METHOD_RTN = 0, METHOD_GPTQ = 1 };

typedef struct {
    const char *input, *output, *vocab;
    const qk_ftype_info *target;
    qk_quant_params qp;
    long long pad_ffn;
    int allow_requantize, allow_nonfinite;
    int no_verify;           /* --no-verify: skip the input's quantkit checksums */
    int threads;
    int json, quiet;
    int format;              /* FORMAT_* */
    int bits, sym, force;    /* --format gptq */
    long long group_size;
    const char *gguf_only;   /* a GGUF-only option given (for the usage error) */
    const char *gptq_only;   /* a GPTQ-only option given */
    const char *imatrix;     /* --imatrix FILE (.dat or .qkc) */
    int allow_imatrix_mismatch;
    int method;              /* METHOD_* */
    const char *calib, *calib_text;   /* --method gptq: Hessians (.qkc) and/or calibration text */
    long long calib_ctx, calib_chunks;
    double damp;
    int act_order, sequential, refine;
    const char *method_only; /* a --method gptq option given */
    int awq;                 /* --method awq / awq+gptq: AWQ scales folded in first */
    int awq_fixed, awq_grid; /* --awq-alpha A (fixed, no search), --awq-grid N */
    double awq_alpha;
    const char *awq_only;    /* an --awq-* option given */
    /* --target-size / --target-bpw (quantize/alloc.c) */
    int alloc;               /* QK_ALLOC_SIZE / QK_ALLOC_BPW; 0: off */
    int type_given;          /* TYPE was given (with a target it is optional) */
    uint64_t target_bytes;
    double target_bpw;
    int alloc_types[QK_ALLOC_MAX_CAND], n_alloc_types; /* --types */
    int alloc_measure;       /* QK_ALLOC_MEASURE_* */
    long long alloc_rows;
    char alloc_desc[512];    /* quantkit.alloc */
    char cmdline[4096];
} opts_t;

static void usage(void)
{
    int64_t n;
    const qk_ftype_info *l = qk_ftype_list(&n);
    printf("Usage: qk-quantize INPUT OUTPUT TYPE [options]          (GGUF)\n"
           "       qk-quantize INPUT -o OUTPUT TYPE [options]\n"
           "       qk-quantize INPUT OUTPUT [TYPE] --target-size SIZE | --target-bpw B [--types LIST]\n"
           "       qk-quantize INPUT -o DIR --format gptq [--bits 4|8] [--group-size N] [--sym|--asym]\n"
           "\n"
           "Quantize a checkpoint to a GGUF with standard ggml block types that llama.cpp\n"
           "loads unchanged, or (--format gptq) to a Hugging Face directory in the GPTQ\n"
           "safetensors layout that transformers, AutoGPTQ and vLLM load. INPUT: a Hugging\n"
           "Face directory, .safetensors (config.json beside it), GGUF (F32/F16/BF16), or\n"
           "llama2.c .bin (--vocab or tokenizer.bin beside it).\n"
           "\n"
           "TYPE (GGUF only; case-insensitive; llama.cpp's names and mix rules):\n");
    for (int64_t i = 0; i < n; i++)
        printf("  %-8s %s\n", l[i].name, l[i].description);
    printf("\n"
           "Options:\n"
           "  -o, --output PATH          output file (GGUF) or directory (GPTQ), instead of the positional OUTPUT\n"
           "      --format F             gguf (default) | gptq\n"
           "GGUF:\n"
           "      --pure                 TYPE for every 2-D weight (no mix rules; 1-D tensors stay F32)\n"
           "      --tensor-type RE=T     tensors whose name matches the POSIX regex RE get type T\n"
           "                             (repeatable; first match wins; beats the mix rules)\n"
           "      --output-type T        type of output.weight (or of tied token embeddings)\n"
           "      --embed-type T         type of token_embd.weight\n"
           "      --imatrix FILE         importance matrix (llama.cpp .dat or qk-calibrate .qkc): every tensor\n"
           "                             with an entry is encoded with llama.cpp's weighted search\n"
           "      --allow-imatrix-mismatch  use a .qkc computed on another model (checksum differs)\n"
           "Size allocation (GGUF; a type per tensor chosen to minimise the estimated loss):\n"
           "      --target-size SIZE     the output file takes at most SIZE bytes (4GB, 3.8GiB, 1363360)\n"
           "      --target-bpw B         the tensor data takes at most B bits per weight, over every\n"
           "                             tensor's elements (norms included; metadata not counted)\n"
           "      --types LIST           candidate types, comma-separated (default: every type quantkit\n"
           "                             writes whose block fits the rows, and F16); TYPE, if given, only\n"
           "                             names general.file_type; --tensor-type/--output-type/--embed-type pin\n"
           "      --alloc-rows N         rows sampled per tensor for the error estimate (default: up to 256\n"
           "                             rows and 2^18 weights, at least 16 rows)\n"
           "      --alloc-measure[=all]  calibrate each tensor's sensitivity by the KL divergence measured\n"
           "                             with only it quantized (needs --calib-text; small models): at the\n"
           "                             estimate's choice, or (=all) at every block type\n"
           "GPTQ (the 7 linear layers of every block; embeddings, norms and lm_head stay F16):\n"
           "      --bits B               4 (default) or 8\n"
           "      --group-size N         32, 64 or 128 (default) input features per scale and zero\n"
           "      --sym, --asym          symmetric (default: zero 2^(B-1)) or asymmetric groups\n"
           "      --force                replace an existing output directory\n"
           "Method (both formats):\n"
           "      --method M             rtn (default): each block rounded on its own; gptq: GPTQ error\n"
           "                             compensation on calibration Hessians, same block types (docs/METHODS.md);\n"
           "                             awq (GGUF): activation-aware channel scales folded into the norms and\n"
           "                             V/up rows, then rtn; awq+gptq: the scales, then GPTQ (needs --calib-text)\n"
           "      --calib FILE           .qkc with Hessians (qk-calibrate --hessian)\n"
           "      --calib-text FILE      calibration text: Hessians collected here when no --calib is given;\n"
           "                             also weights output.weight's rows by the model's token probabilities\n"
           "      --calib-ctx N          window length for --calib-text (default 128)\n"
           "      --calib-chunks N       use the first N windows only (default: all)\n"
           "      --damp X               relative Hessian damping (default 0.01; raised x10 while singular)\n"
           "      --act-order            blocks, and columns inside blocks, by decreasing activation energy\n"
           "      --sequential           collect each layer's Hessian on the model quantized so far\n"
           "                             (needs --calib-text)\n"
           "      --refine N             scale refit + code descent passes after GPTQ (default 2; 0: off)\n"
           "      --awq-grid N           AWQ: exponents 0, 1/N, ..., 1 searched per group (default 20)\n"
           "      --awq-alpha A          AWQ: this exponent for every group, no search\n"
           "Both:\n"
           "      --pad-ffn N            zero-pad the FFN hidden size to a multiple of N first (lossless;\n"
           "                             GPTQ needs it when the FFN size is not a multiple of the group size)\n"
           "      --vocab FILE           tokenizer for llama2.c inputs\n"
           "      --allow-requantize     accept already-quantized input tensors\n"
           "      --allow-nonfinite      replace NaN/Inf weights by 0 instead of refusing them\n"
           "      --no-verify            skip checking the input's quantkit checksums (quantkit.tensor_xxh3)\n"
           "  -t, --threads N            worker threads (default: all CPUs)\n"
           "      --json                 report as JSON on stdout\n"
           "  -q, --quiet                no report\n"
           "      --progress             progress on stderr even when it is not a terminal\n"
           "  -h, --help, --version\n"
           "\n"
           "Rows whose length is not a multiple of a type's block fall back: Q2_K, Q3_K, IQ4_XS\n"
           "-> IQ4_NL; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0; otherwise F16. GPTQ has no\n"
           "fallback: a layer whose inputs are not a multiple of the group size is an error.\n"
           "The GPTQ layout is described in docs/GPTQ.md.\n"
           "Exit status: 0 ok, 1 error (no output is left behind), 2 bad usage.\n");
}

/* -------------------------------------------------------------- streaming */

typedef struct {
    const qk_model *m;
    const qk_model_tensor *t;
    float *dst;
    int64_t r0;
    int rc;
} decode_job;

static void decode_row(void *ctx, int64_t i, int thread)
{
    (void)thread;
    decode_job *j = ctx;
    int rc = qk_model_row_f32(j->m, j->t, j->r0 + i, j->dst + (size_t)i * (size_t)j->t->ne[0]);
    if (rc)
        __atomic_store_n(&j->rc, rc, __ATOMIC_RELAXED);
}

typedef struct {
    uint64_t count, bytes, elems;
} type_total;

/* The streamed output: a chunk's encoded rows are written by one item of
 * the next chunk's job (or by stream_write before anything else touches the
 * writer), so the write overlaps the encoding instead of leaving the other
 * CPUs idle. Chunks alternate between buf[0] and buf[1]. The source
 * checksum (quantkit.source_xxh3) is fed the same way, chunk by chunk. */
typedef struct {
    qk_gguf_writer *w;
    uint8_t *buf[2];  /* [chunk_rows * max_row_bytes] each */
    int cur;          /* buf[cur] takes the next chunk; buf[!cur] holds the pending one */
    size_t n;         /* pending bytes of buf[!cur] */
    int end_tensor;   /* then close the tensor (alignment padding) */
    qk_hasher *hash;
    qk_hasher *verify; /* the current tensor's bytes, to compare with its stored checksum; or NULL */
} stream_out;

/* Write what is pending. */
static int stream_write(stream_out *s)
{
    int rc = 0;
    if (s->n)
        rc = qk_gguf_writer_write(s->w, s->buf[!s->cur], s->n);
    if (!rc && s->end_tensor)
        rc = qk_gguf_writer_end_tensor(s->w);
    s->n = 0;
    s->end_tensor = 0;
    return rc;
}

/* One chunk of rows as one pool job: item ITEM_WRITE writes the previous
 * chunk, ITEM_HASH hashes this chunk's share of the source bytes,
 * ITEM_VERIFY the same into the tensor's own checksum (when checked), the
 * others decode, check and encode `per` rows each. */
enum { ITEM_WRITE, ITEM_HASH, ITEM_VERIFY, N_SPECIAL_ITEMS };

typedef struct {
    const opts_t *o;
    const qk_model *m;
    const qk_model_tensor *t;
    int type;
    const float *importance; /* [ne0] or NULL */
    float *fbuf;             /* [n][ne0] decoded rows */
    uint8_t *qbuf;           /* [n][row_bytes] encoded rows */
    size_t row_bytes;
    int64_t r0, n, per;
    const uint8_t *hash_p;   /* source bytes for ITEM_HASH */
    size_t hash_n;
    stream_out *out;
    int64_t first_bad;       /* first chunk row holding NaN/Inf (not --allow-nonfinite); n: none */
    uint64_t n_fixed;        /* values zeroed (--allow-nonfinite) */
    int rc;                  /* first error; its message (thread-local where it happened) in msg */
    char msg[1024];
} chunk_job;

static void chunk_fail(chunk_job *j, int rc)
{
    int none = 0;
    if (__atomic_compare_exchange_n(&j->rc, &none, rc, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        snprintf(j->msg, sizeof j->msg, "%s", qk_errmsg());
}

static void chunk_item(void *ctx, int64_t i, int thread)
{
    (void)thread;
    chunk_job *j = ctx;
    int rc;
    if (i == ITEM_WRITE) {
        if ((rc = stream_write(j->out)))
            chunk_fail(j, rc);
        return;
    }
    if (i == ITEM_HASH || i == ITEM_VERIFY) {
        qk_hasher *h = i == ITEM_HASH ? j->out->hash : j->out->verify;
        if (h)
            qk_hasher_update(h, j->hash_p, j->hash_n);
        return;
    }
    const int64_t ne0 = j->t->ne[0];
    const int64_t a = (i - N_SPECIAL_ITEMS) * j->per, b = a + j->per < j->n ? a + j->per : j->n;
    for (int64_t r = a; r < b; r++) {
        float *x = j->fbuf + (size_t)r * (size_t)ne0;
        if ((rc = qk_model_row_f32(j->m, j->t, j->r0 + r, x))) {
            chunk_fail(j, rc);
            return;
        }
        int64_t bad = qk_find_nonfinite(x, ne0);
        if (bad >= 0 && !j->o->allow_nonfinite) {
            int64_t cur = __atomic_load_n(&j->first_bad, __ATOMIC_RELAXED);
            while (r < cur && !__atomic_compare_exchange_n(&j->first_bad, &cur, r, 1, __ATOMIC_RELAXED,
                                                          __ATOMIC_RELAXED))
                ;
            continue;
        }
        uint64_t fixed = 0;
        while (bad >= 0) {
            x[bad] = 0.0f;
            fixed++;
            int64_t next = qk_find_nonfinite(x + bad + 1, ne0 - bad - 1);
            bad = next < 0 ? -1 : bad + 1 + next;
        }
        if (fixed)
            __atomic_add_fetch(&j->n_fixed, fixed, __ATOMIC_RELAXED);
        if ((rc = qk_quantize_rows(j->type, x, j->qbuf + (size_t)r * j->row_bytes, 1, ne0, j->importance, NULL))) {
            chunk_fail(j, rc);
            return;
        }
    }
}

/* Stream tensor t through the encoder in chunks of rows; its bytes are
 * left pending in `so` (stream_write). Non-GPTQ sources are hashed into
 * so->hash here, in storage order, and with `expect` into so->verify too,
 * to be compared with the stored checksum *expect at the end. */
static int quantize_tensor(const opts_t *o, const qk_model *m, const qk_model_tensor *t, int type, qk_pool *pool,
                           stream_out *so, float *fbuf, int64_t chunk_rows, uint64_t *n_fixed,
                           const float *importance, const uint64_t *expect, qk_progress *prog)
{
    int64_t ne0 = t->ne[0], rows = qk_model_tensor_rows(t);
    size_t row_bytes;
    int rc = qk_type_row_bytes(type, ne0, &row_bytes);
    if (rc)
        return rc;
    const int64_t n_threads = qk_pool_size(pool);
    qk_hasher *verify = so->verify;
    if (!expect || t->gptq)
        so->verify = NULL;
    else
        qk_hasher_reset(verify);
    for (int64_t r0 = 0; r0 < rows && !rc; r0 += chunk_rows) {
        int64_t n = rows - r0 < chunk_rows ? rows - r0 : chunk_rows;
        chunk_job j = {.o = o, .m = m, .t = t, .type = type, .importance = importance, .fbuf = fbuf,
                       .qbuf = so->buf[so->cur], .row_bytes = row_bytes, .r0 = r0, .n = n, .out = so,
                       .first_bad = n};
        if (!t->gptq) { /* rows [r0, r0+n) of the source; the last chunk takes the rest */
            uint64_t a = (uint64_t)r0 * t->src_row_bytes, e = (uint64_t)(r0 + n) * t->src_row_bytes;
            a = a < t->nbytes ? a : t->nbytes;
            e = r0 + n >= rows || e > t->nbytes ? t->nbytes : e;
            j.hash_p = t->data + a;
            j.hash_n = (size_t)(e - a);
        }
        /* about 8 items of rows per thread: balanced, and the hand-out stays rare */
        j.per = n / (n_threads * 8) > 1 ? n / (n_threads * 8) : 1;
        qk_pool_run(pool, N_SPECIAL_ITEMS + (n + j.per - 1) / j.per, 1, chunk_item, &j);
        if (j.rc) {
            rc = qk_error(j.rc, "%s", j.msg);
            break;
        }
        *n_fixed += j.n_fixed;
        if (j.first_bad < n) {
            const float *x = fbuf + (size_t)j.first_bad * (size_t)ne0;
            int64_t bad = qk_find_nonfinite(x, ne0);
            rc = qk_error(QK_ENONFINITE, "%s: tensor '%s' element %lld (row %lld) is %s (use --allow-nonfinite to zero it)",
                          o->input, t->name, (long long)((r0 + j.first_bad) * ne0 + bad),
                          (long long)(r0 + j.first_bad), isnan(x[bad]) ? "NaN" : "Inf");
            break;
        }
        so->n = (size_t)n * row_bytes; /* pending: written by the next job or stream_write */
        so->cur = !so->cur;
        qk_progress_add(prog, (uint64_t)n * (uint64_t)ne0);
        /* rows read in order: release them now, so about one chunk of the
         * input is resident (permuted q/k rows wait for the tensor's end) */
        if (t->map && !t->gptq && t->perm_heads <= 0 && r0 < t->src_rows) {
            int64_t e = r0 + n < t->src_rows ? r0 + n : t->src_rows;
            qk_mmap_release(t->map, (uint64_t)(t->data - t->map->data) + (uint64_t)r0 * t->src_row_bytes,
                            (uint64_t)(e - r0) * t->src_row_bytes);
        }
    }
    if (!rc && so->verify) {
        const uint64_t h = qk_hasher_digest(so->verify);
        if (h != *expect)
            rc = qk_error(QK_ECHECKSUM,
                          "%s: tensor '%s' checksum mismatch (stored %016" PRIx64 ", computed %016" PRIx64
                          ") (--no-verify to quantize it anyway)",
                          o->input, t->name, *expect, h);
    }
    so->verify = verify;
    qk_model_release(t);
    so->end_tensor = !rc;
    return rc;
}

/* --method gptq: the GPTQ options from the command line for `type`. */
static void gptq_opts_from(const opts_t *o, int type, qk_gptq_opts *go)
{
    qk_gptq_opts_default(go, type);
    go->damp = o->damp;
    go->act_order = o->act_order;
    go->refine = o->refine;
    if (type == QK_GPTQ_LAYOUT) {
        go->layout_bits = o->bits;
        go->layout_group = o->group_size;
        go->layout_sym = o->sym;
    }
}

/* All rows of t as floats (heap, [rows][ne0]); non-finite weights refused
 * or (--allow-nonfinite) zeroed. */
static int decode_all(const opts_t *o, const qk_model *m, const qk_model_tensor *t, qk_pool *pool, float **out,
                      uint64_t *n_fixed)
{
    int64_t ne0 = t->ne[0], rows = qk_model_tensor_rows(t);
    float *w = malloc((size_t)rows * (size_t)ne0 * sizeof(float));
    if (!w)
        return qk_error(QK_ENOMEM, "out of memory for tensor '%s' (%lld x %lld floats)", t->name, (long long)rows,
                        (long long)ne0);
    decode_job dj = {m, t, w, 0, 0};
    qk_pool_run(pool, rows, 0, decode_row, &dj);
    int rc = dj.rc;
    for (int64_t bad = rc ? -1 : qk_find_nonfinite(w, rows * ne0); bad >= 0 && !rc;) {
        if (!o->allow_nonfinite) {
            rc = qk_error(QK_ENONFINITE, "%s: tensor '%s' element %lld (row %lld) is %s (use --allow-nonfinite to zero it)",
                          o->input, t->name, (long long)bad, (long long)(bad / ne0), isnan(w[bad]) ? "NaN" : "Inf");
            break;
        }
        w[bad] = 0.0f;
        (*n_fixed)++;
        int64_t next = qk_find_nonfinite(w + bad + 1, rows * ne0 - bad - 1);
        bad = next < 0 ? -1 : bad + 1 + next;
    }
    if (rc) {
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* One tensor through GPTQ (whole tensor in memory: GPTQ needs every row's
 * columns at once, and sequential mode its dequantized values). */
static int quantize_tensor_gptq(const opts_t *o, const qk_model *m, const qk_model_tensor *t, int type, qk_pool *pool,
                                qk_gguf_writer *w, qk_gptq_calib *gc, uint64_t *n_fixed, qk_gptq_stats *st,
                                qk_progress *prog)
{
    int64_t ne0 = t->ne[0], rows = qk_model_tensor_rows(t);
    size_t row_bytes;
    float *wf = NULL, *deq = NULL;
    uint8_t *q = NULL;
    int rc = qk_type_row_bytes(type, ne0, &row_bytes);
    if (rc || (rc = decode_all(o, m, t, pool, &wf, n_fixed)))
        goto done;
    q = malloc((size_t)rows * row_bytes);
    deq = malloc((size_t)rows * (size_t)ne0 * sizeof(float));
    if (!q || !deq) {
        rc = qk_error(QK_ENOMEM, "out of memory for tensor '%s'", t->name);
        goto done;
    }
    qk_gptq_opts go;
    gptq_opts_from(o, type, &go);
    if ((rc = qk_gptq_calib_tensor(gc, t, &go, wf, q, deq, pool, st)) || (rc = qk_gptq_calib_quantized(gc, t, deq)) ||
        (rc = qk_gguf_writer_write(w, q, (size_t)rows * row_bytes)))
        goto done;
    if (st->n_raises)
        qk_log(QK_LOG_WARN, "%s: Hessian singular; damping raised %d time%s to %g x its mean diagonal", t->name,
               st->n_raises, st->n_raises > 1 ? "s" : "", st->damp);
    if (st->n_dead)
        qk_log(QK_LOG_INFO, "%s: %lld dead input columns (never active in calibration; zeroed)", t->name,
               (long long)st->n_dead);
    qk_log(QK_LOG_DEBUG, "%s: GPTQ %s, layer error %.6g (after the GPTQ pass %.6g), %.3f s", t->name,
           qk_type_name(type), st->err, st->err_gptq, st->seconds);
    qk_progress_add(prog, (uint64_t)rows * (uint64_t)ne0);
done:
    free(wf);
    free(deq);
    free(q);
    qk_model_release(t);
    return rc ? rc : qk_gguf_writer_end_tensor(w);
}

/* The provenance string of the method ("gptq damp=0.01 ..."). */
static void method_string(const opts_t *o, char *buf, size_t n)
{
    if (o->awq) { /* "awq grid=20 calib=x.qkc + <the quantizer's string>" */
        char a[32];
        int k = snprintf(buf, n, "awq %s calib=%s calib_text=%s + ",
                         o->awq_fixed ? (snprintf(a, sizeof a, "alpha=%g", o->awq_alpha), a)
                                      : (snprintf(a, sizeof a, "grid=%d", o->awq_grid), a),
                         o->calib ? o->calib : "-", o->calib_text ? o->calib_text : "-");
        if (k < 0 || (size_t)k >= n)
            return;
        buf += k;
        n -= (size_t)k;
    }
    if (o->method != METHOD_GPTQ) {
        snprintf(buf, n, "%s", o->alloc ? "rtn-search alloc" : o->qp.pure ? "rtn-search pure" : "rtn-search mix");
        return;
    }
    snprintf(buf, n, "gptq%s damp=%g refine=%d act_order=%d sequential=%d calib=%s calib_text=%s calib_ctx=%lld",
             o->format == FORMAT_GPTQ ? "" : (o->alloc ? " alloc" : o->qp.pure ? " pure" : " mix"), o->damp, o->refine, o->act_order,
             o->sequential, o->calib && !o->awq ? o->calib : "-", o->calib_text ? o->calib_text : "-", o->calib_ctx);
}

static int gptq_calib_open(const opts_t *o, const qk_model *m, qk_gptq_calib **out)
{
    /* after AWQ the file's Hessians describe the unscaled model: collect on the folded one */
    qk_gptq_calib_opts co = {.calib_path = o->awq ? NULL : o->calib, .text_path = o->calib_text, .n_ctx = o->calib_ctx,
                             .max_chunks = o->calib_chunks, .sequential = o->sequential,
                             .output_rows = o->format == FORMAT_GGUF, /* the GPTQ export keeps lm_head F16 */
                             .output_gamma = 1.0, .n_threads = o->threads};
    return qk_gptq_calib_new(out, m, &co);
}

/* The stored type of a source tensor, for reports ("Q4_0", "GPTQ4"). */
static const char *src_type_name(const qk_model_tensor *t)
{
    if (t->gptq)
        return t->gptq->bits == 8 ? "GPTQ8" : "GPTQ4";
    return qk_type_name(t->type);
}

static int check_requantize(const opts_t *o, const qk_model *m)
{
    for (int64_t i = 0; i < qk_model_n_tensors(m) && !o->allow_requantize; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        if (t->gptq || qk_type_get(t->type)->is_quantized)
            return qk_error(QK_EUNSUPPORTED,
                            "%s: tensor '%s' is already quantized (%s); requantizing loses accuracy "
                            "(use --allow-requantize to do it anyway)",
                            o->input, t->name, src_type_name(t));
    }
    return 0;
}

static const char *reason_name(const qk_plan_entry *e)
{
    if (e->fallback)
        return "fallback";
    switch (e->reason) {
    case QK_PLAN_KEEP: return "1-D, kept F32";
    case QK_PLAN_MIX: return "mix rule";
    case QK_PLAN_OVERRIDE: return "--tensor-type";
    case QK_PLAN_OPTION: return "--output/--embed-type";
    case QK_PLAN_ALLOC: return "allocated";
    default: return "";
    }
}

/* Read --imatrix and check it fits m: every entry's n_in equals its
 * tensor's ne[0] (always), it names only tensors of m and, for a .qkc that
 * records one, its model checksum equals m's (both unless
 * --allow-imatrix-mismatch, which then only warns). */
static int load_imatrix(const opts_t *o, const qk_model *m, qk_calib **out)
{
    qk_calib *c = NULL;
    int rc = qk_calib_load(&c, o->imatrix);
    if (!rc && (rc = qk_calib_check_model(c, m, o->allow_imatrix_mismatch)))
        qk_error_prefix(rc, o->imatrix);
    if (!rc && c->model_hash) {
        uint64_t h = 0;
        if (!(rc = qk_calib_model_hash(m, &h)) && h != c->model_hash) {
            char a[17], b[17];
            qk_hash_hex(c->model_hash, a);
            qk_hash_hex(h, b);
            if (o->allow_imatrix_mismatch)
                qk_log(QK_LOG_WARN, "%s was computed on another model (tensors xxh3 %s, %s has %s); used anyway "
                       "(--allow-imatrix-mismatch)", o->imatrix, a, o->input, b);
            else
                rc = qk_error(QK_EINVAL, "%s was computed on another model (tensors xxh3 %s, %s has %s); use "
                              "--allow-imatrix-mismatch to use it anyway", o->imatrix, a, o->input, b);
        }
    }
    if (rc) {
        qk_calib_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Provenance of the importance matrix: quantkit's keys (file and its
 * checksum) and llama-quantize's quantize.imatrix.* keys. */
static int imatrix_kvs(const opts_t *o, const qk_calib *c, qk_gguf_writer *w)
{
    uint64_t fh = 0;
    int64_t last = 0;
    for (int64_t i = 0; i < c->n; i++)
        last = c->e[i].n_calls > last ? c->e[i].n_calls : last;
    int rc = qk_hash_file(&fh, o->imatrix);
    if (!rc)
        rc = qk_gguf_writer_set_str(w, "quantkit.imatrix", o->imatrix);
    if (!rc)
        rc = qk_gguf_writer_set_u64(w, "quantkit.imatrix_xxh3", fh);
    if (!rc)
        rc = qk_gguf_writer_set_str(w, "quantize.imatrix.file", o->imatrix);
    if (!rc && c->dataset)
        rc = qk_gguf_writer_set_str(w, "quantize.imatrix.dataset", c->dataset);
    if (!rc)
        rc = qk_gguf_writer_set_i32(w, "quantize.imatrix.entries_count", (int32_t)c->n);
    if (!rc && last > 0 && last <= INT32_MAX)
        rc = qk_gguf_writer_set_i32(w, "quantize.imatrix.chunks_count", (int32_t)last);
    return rc;
}

/* --method awq: statistics from --calib (else collected from --calib-text
 * on the model as it is), the search for the planned types, and the scales
 * installed into m, so everything after reads the folded model. */
static int awq_prepare(const opts_t *o, qk_model *m, const qk_calib *imx, const qk_plan_entry *plan, qk_pool *pool,
                       qk_awq_result **out)
{
    qk_calib *st = NULL;
    int64_t nt = qk_model_n_tensors(m);
    int *types = malloc((size_t)nt * sizeof *types);
    int rc = types ? 0 : qk_error(QK_ENOMEM, "out of memory");
    if (!rc && o->calib) {
        if ((rc = qk_calib_load(&st, o->calib)) || (rc = qk_calib_check_model(st, m, 0)))
            qk_error_prefix(rc, o->calib);
    } else if (!rc) {
        rc = qk_awq_collect(&st, m, o->calib_text, o->calib_ctx, o->calib_chunks, o->threads);
    }
    for (int64_t i = 0; i < nt && !rc; i++)
        types[i] = plan[i].type;
    qk_awq_opts ao = {.grid = o->awq_grid, .fixed = o->awq_fixed, .alpha = o->awq_alpha, .imatrix = imx};
    if (!rc)
        rc = qk_awq_search(out, m, st, types, &ao, pool);
    if (!rc)
        rc = qk_awq_apply(m, *out);
    for (int64_t i = 0; !rc && i < (*out)->n; i++) {
        const qk_awq_group *g = &(*out)->g[i];
        if (g->skipped)
            qk_log(QK_LOG_DEBUG, "awq %s: no statistics or no quantized consumer; unscaled", g->name);
        else
            qk_log(QK_LOG_DEBUG, "awq %s: alpha %.2f, estimated output error %.6g (plain %.6g)%s", g->name,
                   g->alpha, g->err, g->err_rtn, g->diagonal ? " (diagonal)" : "");
    }
    qk_calib_free(st);
    free(types);
    return rc;
}

/* The AWQ summary: groups scaled, and the estimated output error summed
 * over the searched groups relative to plain quantization. */
static void awq_totals(const qk_awq_result *r, int64_t *scaled, double *err, double *err_rtn)
{
    *scaled = 0;
    *err = *err_rtn = 0;
    for (int64_t i = 0; i < r->n; i++) {
        const qk_awq_group *g = &r->g[i];
        *scaled += !g->skipped && g->alpha != 0;
        if (!g->skipped) {
            *err += g->err;
            *err_rtn += g->err_rtn;
        }
    }
}

static cJSON *awq_json(const qk_awq_result *r)
{
    int64_t scaled;
    double err, err_rtn;
    awq_totals(r, &scaled, &err, &err_rtn);
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "groups_scaled", (double)scaled);
    cJSON_AddNumberToObject(x, "error", err);
    cJSON_AddNumberToObject(x, "error_plain", err_rtn);
    cJSON_AddNumberToObject(x, "seconds", r->seconds);
    cJSON *jg = cJSON_AddArrayToObject(x, "groups");
    for (int64_t i = 0; i < r->n; i++) {
        const qk_awq_group *g = &r->g[i];
        cJSON *y = cJSON_CreateObject();
        cJSON_AddStringToObject(y, "group", g->name);
        cJSON_AddBoolToObject(y, "skipped", g->skipped);
        if (!g->skipped) {
            cJSON_AddNumberToObject(y, "alpha", g->alpha);
            cJSON_AddBoolToObject(y, "searched", g->searched);
            cJSON_AddBoolToObject(y, "diagonal", g->diagonal);
            cJSON_AddNumberToObject(y, "error", g->err);
            cJSON_AddNumberToObject(y, "error_plain", g->err_rtn);
        }
        cJSON_AddItemToArray(jg, y);
    }
    return x;
}

/* --------------------------------------------- --target-size / --target-bpw */

/* Choose the types (quantize/alloc.c) once the writer holds every KV and
 * tensor: its header size is then exact, and a tensor info's size does not
 * depend on its type. Sets the writer's tensor types, general.file_type
 * (without TYPE: that of the type holding the most weights) and
 * *max_row_bytes for the chunk buffers. */
static int alloc_apply(opts_t *o, const qk_model *m, const qk_calib *imx, qk_pool *pool, qk_gguf_writer *w,
                       qk_plan_entry *plan, qk_alloc_tensor *at, qk_alloc_result *res, size_t *max_row_bytes)
{
    qk_alloc_params ap = {.mode = o->alloc, .target_bytes = o->target_bytes, .target_bpw = o->target_bpw,
                          .alignment = QK_GGUF_DEFAULT_ALIGNMENT, .types = o->n_alloc_types ? o->alloc_types : NULL,
                          .n_types = o->n_alloc_types, .imatrix = imx, .sample_rows = o->alloc_rows,
                          .allow_nonfinite = o->allow_nonfinite, .measure = o->alloc_measure,
                          .calib_text = o->calib_text, .n_ctx = o->calib_ctx, .max_chunks = o->calib_chunks,
                          .n_threads = o->threads};
    int rc = qk_gguf_writer_header_bytes(w, &ap.header_bytes);
    if (rc || (rc = qk_alloc_plan(m, &ap, plan, at, res, pool)))
        return rc;
    uint64_t most[QK_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < qk_model_n_tensors(m) && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        size_t rb = 0;
        if (!(rc = qk_gguf_writer_set_tensor_type(w, i, plan[i].type)) &&
            !(rc = qk_type_row_bytes(plan[i].type, t->ne[0], &rb)))
            *max_row_bytes = rb > *max_row_bytes ? rb : *max_row_bytes;
        if (t->n_dims > 1)
            most[plan[i].type] += (uint64_t)qk_model_tensor_nelem(t);
    }
    int top = QK_TYPE_F16;
    for (int ty = 0; ty < QK_TYPE_COUNT; ty++)
        if (most[ty] > most[top])
            top = ty;
    const qk_ftype_info *fi = o->type_given ? o->target : qk_ftype_find(qk_type_name(top));
    if (!rc && fi)
        rc = qk_gguf_writer_set_u32(w, "general.file_type", (uint32_t)fi->ftype);
    return rc;
}

/* After writing, before the commit: the file (or, --target-bpw, its tensor
 * data) within the budget, or no output at all. */
static int alloc_verify(const opts_t *o, const qk_alloc_result *res, uint64_t file_bytes, uint64_t tensor_bytes)
{
    uint64_t got = o->alloc == QK_ALLOC_SIZE ? file_bytes : tensor_bytes;
    if (got > res->budget)
        return qk_error(QK_ELIMIT, "%s: %s %" PRIu64 " bytes exceeds the budget of %" PRIu64
                        " bytes (predicted %" PRIu64 "); nothing written (please report this)",
                        o->output, o->alloc == QK_ALLOC_SIZE ? "the file is" : "the tensor data is", got,
                        res->budget, res->predicted);
    if (got != res->predicted)
        qk_log(QK_LOG_WARN, "size %" PRIu64 " differs from the predicted %" PRIu64 " bytes", got, res->predicted);
    return 0;
}

static const char *alloc_measure_name(int m)
{
    return m == QK_ALLOC_MEASURE_ALL ? "measured KLD, every block type" :
           m == QK_ALLOC_MEASURE_PROBE ? "measured KLD at one probe type x weighted error" :
           "importance-weighted relative error x kind factor";
}

static void alloc_note(const qk_alloc_tensor *a, char *note, size_t n)
{
    if (!a || a->choice < 0)
        return;
    const qk_alloc_cand *c = &a->cand[a->choice];
    size_t l = strlen(note);
    snprintf(note + l, n - l, "%sest. loss %.3g, rel. error %.3g%s", l ? "; " : "", c->loss,
             a->energy > 0 ? c->err / a->energy : 0.0, a->measured ? " (KLD-calibrated)" : "");
}

static cJSON *alloc_json_tensor(const qk_alloc_tensor *a)
{
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "loss", a->cand[a->choice].loss);
    cJSON_AddNumberToObject(x, "energy", a->energy);
    cJSON_AddNumberToObject(x, "factor", a->factor);
    cJSON_AddNumberToObject(x, "gain", a->gain);
    cJSON_AddBoolToObject(x, "measured", a->measured);
    cJSON_AddNumberToObject(x, "rows_sampled", (double)a->rows_sampled);
    cJSON *jc = cJSON_AddArrayToObject(x, "candidates");
    for (int k = 0; k < a->n_cand; k++) {
        const qk_alloc_cand *c = &a->cand[k];
        cJSON *y = cJSON_CreateObject();
        cJSON_AddStringToObject(y, "type", qk_type_name(c->type));
        cJSON_AddNumberToObject(y, "bytes", (double)c->bytes);
        cJSON_AddNumberToObject(y, "err", c->err);
        cJSON_AddNumberToObject(y, "err_plain", c->err_plain);
        cJSON_AddNumberToObject(y, "loss", c->loss);
        if (c->kld >= 0)
            cJSON_AddNumberToObject(y, "kld", c->kld);
        cJSON_AddBoolToObject(y, "chosen", k == a->choice);
        cJSON_AddItemToArray(jc, y);
    }
    return x;
}

static cJSON *alloc_json(const opts_t *o, const qk_alloc_result *r, uint64_t file_bytes)
{
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "mode", o->alloc == QK_ALLOC_SIZE ? "target-size" : "target-bpw");
    if (o->alloc == QK_ALLOC_BPW)
        cJSON_AddNumberToObject(x, "target_bpw", o->target_bpw);
    cJSON_AddNumberToObject(x, "budget", (double)r->budget);
    cJSON_AddNumberToObject(x, "fixed", (double)r->fixed_cost);
    cJSON_AddNumberToObject(x, "allocated", (double)r->chosen_cost);
    cJSON_AddNumberToObject(x, "predicted", (double)r->predicted);
    cJSON_AddNumberToObject(x, "file_bytes", (double)file_bytes);
    cJSON_AddNumberToObject(x, "estimated_loss", r->loss);
    cJSON_AddStringToObject(x, "sensitivity", alloc_measure_name(o->alloc_measure));
    cJSON_AddNumberToObject(x, "tensors", (double)r->n_alloc);
    cJSON_AddNumberToObject(x, "measure_passes", (double)r->n_measured);
    cJSON_AddNumberToObject(x, "seconds_estimate", r->seconds_estimate);
    cJSON_AddNumberToObject(x, "seconds_measure", r->seconds_measure);
    return x;
}

static void alloc_print(const opts_t *o, const qk_alloc_result *r, uint64_t file_bytes, uint64_t tensor_bytes)
{
    uint64_t used = o->alloc == QK_ALLOC_SIZE ? file_bytes : tensor_bytes;
    if (o->alloc == QK_ALLOC_SIZE)
        printf("budget: --target-size %" PRIu64 " bytes; the file takes %" PRIu64 " (%.3f%%, %" PRIu64
               " to spare)\n", r->budget, used, r->budget ? 100.0 * (double)used / (double)r->budget : 0.0,
               r->budget - used);
    else
        printf("budget: --target-bpw %g = %" PRIu64 " bytes of tensor data; used %" PRIu64 " (%.3f%%)\n",
               o->target_bpw, r->budget, used, r->budget ? 100.0 * (double)used / (double)r->budget : 0.0);
    printf("allocation: %lld tensors, estimated loss %.4g (%s); %.2f s estimating",
           (long long)r->n_alloc, r->loss, alloc_measure_name(o->alloc_measure), r->seconds_estimate);
    if (o->alloc_measure)
        printf(", %.2f s measuring (%lld forward passes)", r->seconds_measure, (long long)r->n_measured);
    printf("\n");
}

/* Open the input; a GGUF that carries quantkit checksums (quantkit.tensor_xxh3)
 * is checked, so a corrupted file is refused instead of quantized into an
 * output with fresh, valid checksums. With `expect` (the plain streaming
 * path) the check is left to quantize_tensor, which hashes each tensor as it
 * reads it anyway: expect[i] gets model tensor i's stored checksum and
 * *n_expect the count. Where a model tensor is not one stored tensor (a
 * derived layout), or without `expect`, the file is checked here, first,
 * which reads it once more. */
static int open_model(const opts_t *o, qk_model **out, const qk_model_opts *mo, uint64_t **expect)
{
    int rc = qk_model_open(out, o->input, mo);
    const qk_gguf *g = rc ? NULL : qk_model_gguf(*out);
    const qk_gguf_kv *kv = g ? qk_gguf_find_kv(g, QK_GGUF_CHECKSUM_KEY) : NULL;
    if (g && kv && !o->no_verify) {
        int upfront = 1;
        if (expect && kv->type == QK_GGUF_ARRAY && kv->arr_type == QK_GGUF_U64 &&
            kv->arr_n == (uint64_t)qk_gguf_n_tensors(g)) {
            const int64_t nt = qk_model_n_tensors(*out);
            const uint64_t *stored = kv->arr;
            *expect = malloc((size_t)(nt > 0 ? nt : 1) * sizeof **expect);
            upfront = !*expect;
            for (int64_t i = 0; i < nt && !upfront; i++) {
                /* the stored tensor of the same name (sorted index: a scan
                 * per tensor made this quadratic, 1.8 s for 36,866 tensors)
                 * holding the very same bytes */
                const qk_model_tensor *t = qk_model_tensor_at(*out, i);
                const qk_gguf_tensor *gt = qk_gguf_find_tensor(g, t->name);
                if (!gt || gt->data != t->data || gt->nbytes != t->nbytes || t->gptq)
                    upfront = 1;
                else
                    (*expect)[i] = stored[gt - qk_gguf_tensor_at(g, 0)];
            }
            if (upfront) {
                free(*expect);
                *expect = NULL;
            }
        }
        if (upfront && (rc = qk_gguf_verify_checksums(g))) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", qk_errmsg());
            qk_error(rc, "%s (--no-verify to quantize it anyway)", msg);
        }
    }
    if (rc) {
        qk_model_close(*out);
        *out = NULL;
    }
    return rc;
}

static int run(opts_t *o)
{
    qk_model *m = NULL;
    qk_pool *pool = NULL;
    qk_gguf_writer *w = NULL;
    qk_afile *f = NULL;
    qk_progress *prog = NULL;
    qk_plan_entry *plan = NULL;
    float *fbuf = NULL;
    uint8_t *qbuf = NULL;     /* the two chunk buffers of `so` */
    qk_hasher *src_hash = NULL;
    stream_out so = {0};
    qk_calib *imx = NULL;
    float *imp = NULL;
    int64_t n_imx_used = 0;
    qk_gptq_calib *gc = NULL;
    qk_gptq_stats *gst = NULL; /* [nt] per tensor, --method gptq */
    uint8_t *gdone = NULL;     /* [nt] 1: quantized with GPTQ */
    qk_alloc_tensor *at = NULL; /* [nt] --target-*: candidates and estimates */
    qk_awq_result *awq = NULL;  /* --method awq: the scales folded into m */
    qk_alloc_result ares = {0};
    uint64_t *expect = NULL;    /* [nt] stored checksums to check while streaming, or NULL */
    qk_hasher *th = NULL;       /* the current tensor's checksum, with expect */
    type_total tot[QK_TYPE_COUNT] = {{0}};
    uint64_t n_fixed = 0, total_elems = 0, quant_elems = 0, quant_bytes = 0;
    double t0 = qk_now();

    qk_model_opts mo = {.vocab_path = o->vocab, .pad_ffn = o->pad_ffn};
    /* the plain streaming path checks the input's checksums as it reads */
    const int plain = o->method != METHOD_GPTQ && !o->awq && !o->alloc;
    int rc = open_model(o, &m, &mo, plain ? &expect : NULL);
    if (rc)
        goto done;
    int64_t nt = qk_model_n_tensors(m);
    if ((rc = check_requantize(o, m)))
        goto done;
    if (o->imatrix && (rc = load_imatrix(o, m, &imx)))
        goto done;
    o->qp.has_imatrix = imx != NULL;
    plan = calloc((size_t)nt, sizeof *plan);
    gst = calloc((size_t)nt, sizeof *gst);
    gdone = calloc((size_t)nt, 1);
    if (o->alloc)
        at = calloc((size_t)nt, sizeof *at);
    if (!plan || !gst || !gdone || (o->alloc && !at)) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    o->qp.target = o->target;
    if ((rc = qk_quant_plan(m, &o->qp, plan)) || (rc = qk_pool_create(&pool, o->threads)) ||
        (rc = qk_gguf_writer_new(&w, 0)) || (rc = qk_hasher_new(&src_hash)) || (expect && (rc = qk_hasher_new(&th))))
        goto done;
    if (o->awq && (rc = awq_prepare(o, m, imx, plan, pool, &awq)))
        goto done;
    if (o->method == METHOD_GPTQ && (rc = gptq_calib_open(o, m, &gc)))
        goto done;
    char method[1024];
    method_string(o, method, sizeof method);

    /* metadata: a GGUF source's keys (unknown ones preserved), then ours */
    const qk_gguf *src = qk_model_gguf(m);
    for (int64_t i = 0; src && i < qk_gguf_n_kv(src) && !rc; i++) {
        const qk_gguf_kv *kv = qk_gguf_kv_at(src, i);
        if (strncmp(kv->key.s, "quantkit.", 9) && strcmp(kv->key.s, "general.alignment"))
            rc = qk_gguf_writer_set_kv(w, kv);
    }
    if (!rc && !(src && qk_gguf_find_kv(src, "general.name"))) {
        const char *base = strrchr(o->input, '/');
        rc = qk_gguf_writer_set_str(w, "general.name", base && base[1] ? base + 1 : o->input);
    }
    if (!rc)
        rc = qk_model_cfg_to_gguf(qk_model_cfg(m), w);
    if (!rc)
        rc = qk_gguf_writer_set_u32(w, "general.file_type", (uint32_t)o->target->ftype);
    if (!rc)
        rc = qk_gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (!rc && qk_model_vocab(m))
        rc = qk_vocab_to_gguf(qk_model_vocab(m), w);
    if (!rc)
        rc = qk_gguf_writer_set_str(w, "quantkit.version", QK_VERSION);
    if (!rc)
        rc = qk_gguf_writer_set_str(w, "quantkit.target", o->alloc && !o->type_given ? "auto" : o->target->name);
    if (!rc)
        rc = qk_gguf_writer_set_str(w, "quantkit.method", method);
    if (!rc)
        rc = qk_gguf_writer_set_str(w, "quantkit.source", o->input);
    if (!rc)
        rc = qk_gguf_writer_set_u64(w, "quantkit.source_xxh3", 0); /* patched after streaming */
    if (!rc)
        rc = qk_gguf_writer_set_str(w, "quantkit.options", o->cmdline);
    if (!rc && imx)
        rc = imatrix_kvs(o, imx, w);
    if (!rc && o->alloc)
        rc = qk_gguf_writer_set_str(w, "quantkit.alloc", o->alloc_desc);
    int64_t max_ne0 = 1;
    size_t max_row_bytes = 1;
    for (int64_t i = 0; i < nt && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        rc = qk_gguf_writer_add_tensor(w, t->name, plan[i].type, t->n_dims, t->ne);
        size_t rb = 0;
        if (!rc)
            rc = qk_type_row_bytes(plan[i].type, t->ne[0], &rb);
        if (t->ne[0] > max_ne0)
            max_ne0 = t->ne[0];
        if (rb > max_row_bytes)
            max_row_bytes = rb;
        total_elems += (uint64_t)qk_model_tensor_nelem(t);
    }
    if (!rc && o->alloc)
        rc = alloc_apply(o, m, imx, pool, w, plan, at, &ares, &max_row_bytes);
    if (rc)
        goto done;
    int64_t chunk_rows = (int64_t)(CHUNK_FLOATS / (uint64_t)max_ne0);
    if (chunk_rows < 1)
        chunk_rows = 1;
    fbuf = malloc((size_t)chunk_rows * (size_t)max_ne0 * sizeof(float));
    qbuf = malloc(2 * (size_t)chunk_rows * max_row_bytes);
    imp = malloc((size_t)max_ne0 * sizeof(float));
    if (!fbuf || !qbuf || !imp) {
        rc = qk_error(QK_ENOMEM, "out of memory for %lld-row chunks", (long long)chunk_rows);
        goto done;
    }
    if ((rc = qk_afile_open(&f, o->output)) || (rc = qk_gguf_writer_begin(w, f)))
        goto done;
    so = (stream_out){.w = w, .buf = {qbuf, qbuf + (size_t)chunk_rows * max_row_bytes}, .hash = src_hash, .verify = th};
    prog = qk_progress_start("quantizing", total_elems, "w");
    for (int64_t i = 0; i < nt && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        const int via_gptq = gc && t->n_dims >= 2 && qk_gptq_supports(plan[i].type);
        if (t->gptq)
            for (int k = 0; k < QK_GPTQ_NPARTS; k++)
                qk_hasher_update(src_hash, t->gptq->part[k].data, (size_t)t->gptq->part[k].nbytes);
        else if (via_gptq) /* else quantize_tensor hashes it chunk by chunk */
            qk_hasher_update(src_hash, t->data, (size_t)t->nbytes);
        /* llama-quantize: the entry's values / ncall, shared by every row; quantized types only */
        const qk_calib_entry *ie = imx ? qk_calib_find(imx, t->name) : NULL;
        const int use_imx = ie && ie->n_in == t->ne[0] && qk_type_get(plan[i].type)->is_quantized;
        if (use_imx) {
            qk_calib_importance(ie, imp);
            for (int64_t j = 0; t->col_scale && j < t->ne[0]; j++) /* AWQ: the input is x / s */
                imp[j] = t->col_scale[j] != 0 ? imp[j] / (t->col_scale[j] * t->col_scale[j]) : imp[j];
            n_imx_used++;
        }
        if (via_gptq) {
            gdone[i] = 1;
            if (!(rc = stream_write(&so)))
                rc = quantize_tensor_gptq(o, m, t, plan[i].type, pool, w, gc, &n_fixed, &gst[i], prog);
        } else {
            rc = quantize_tensor(o, m, t, plan[i].type, pool, &so, fbuf, chunk_rows, &n_fixed,
                                 use_imx ? imp : NULL, expect ? &expect[i] : NULL, prog);
        }
        uint64_t bytes = 0;
        qk_type_tensor_bytes(plan[i].type, t->ne, t->n_dims, &bytes);
        tot[plan[i].type].count++;
        tot[plan[i].type].bytes += bytes;
        tot[plan[i].type].elems += (uint64_t)qk_model_tensor_nelem(t);
        if (t->n_dims > 1) {
            quant_elems += (uint64_t)qk_model_tensor_nelem(t);
            quant_bytes += bytes;
        }
    }
    if (!rc)
        rc = stream_write(&so);
    if (!rc)
        rc = qk_gguf_writer_patch_u64(w, "quantkit.source_xxh3", qk_hasher_digest(src_hash));
    if (!rc)
        rc = qk_gguf_writer_finish(w);
    uint64_t out_bytes = f ? qk_afile_tell(f) : 0;
    uint64_t all_bytes = 0;
    for (int ty = 0; ty < QK_TYPE_COUNT; ty++)
        all_bytes += tot[ty].bytes;
    if (!rc && o->alloc)
        rc = alloc_verify(o, &ares, out_bytes, all_bytes);
    if (!rc) {
        rc = qk_afile_commit(f);
        f = NULL;
    }
    if (prog) {
        qk_progress_finish(prog);
        prog = NULL;
    }
    if (rc)
        goto done;
    if (n_fixed)
        qk_log(QK_LOG_WARN, "replaced %llu non-finite weights by 0 (--allow-nonfinite)", (unsigned long long)n_fixed);

    /* ------------------------------------------------------------ report */
    double dt = qk_now() - t0;
    uint64_t in_bytes = qk_model_source_bytes(m);
    if (o->quiet)
        goto done;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "input", o->input);
        cJSON_AddStringToObject(j, "output", o->output);
        cJSON_AddStringToObject(j, "target", o->target->name);
        cJSON_AddBoolToObject(j, "pure", o->qp.pure);
        cJSON_AddStringToObject(j, "method", method);
        if (gc) {
            int64_t passes;
            double secs;
            qk_gptq_calib_counts(gc, &passes, &secs);
            cJSON_AddNumberToObject(j, "calibration_passes", (double)passes);
            cJSON_AddNumberToObject(j, "calibration_seconds", secs);
        }
        if (imx) {
            cJSON_AddStringToObject(j, "imatrix", o->imatrix);
            cJSON_AddNumberToObject(j, "imatrix_tensors", (double)n_imx_used);
        }
        if (awq)
            cJSON_AddItemToObject(j, "awq", awq_json(awq));
        cJSON *jt = cJSON_AddArrayToObject(j, "tensors");
        for (int64_t i = 0; i < nt; i++) {
            const qk_model_tensor *t = qk_model_tensor_at(m, i);
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "name", t->name);
            cJSON_AddStringToObject(x, "source_type", src_type_name(t));
            cJSON_AddStringToObject(x, "type", qk_type_name(plan[i].type));
            if (plan[i].fallback)
                cJSON_AddStringToObject(x, "fallback_from", qk_type_name(plan[i].wanted));
            cJSON_AddStringToObject(x, "reason", reason_name(&plan[i]));
            if (gdone[i]) {
                cJSON *g = cJSON_AddObjectToObject(x, "gptq");
                cJSON_AddNumberToObject(g, "damp", gst[i].damp);
                cJSON_AddNumberToObject(g, "damp_raised", gst[i].n_raises);
                cJSON_AddNumberToObject(g, "dead_columns", (double)gst[i].n_dead);
                cJSON_AddNumberToObject(g, "layer_error", gst[i].err);
                cJSON_AddNumberToObject(g, "layer_error_gptq_pass", gst[i].err_gptq);
                cJSON_AddNumberToObject(g, "seconds", gst[i].seconds);
            }
            if (at && at[i].choice >= 0)
                cJSON_AddItemToObject(x, "alloc", alloc_json_tensor(&at[i]));
            cJSON_AddItemToArray(jt, x);
        }
        cJSON *jy = cJSON_AddArrayToObject(j, "types");
        for (int ty = 0; ty < QK_TYPE_COUNT; ty++)
            if (tot[ty].count) {
                cJSON *x = cJSON_CreateObject();
                cJSON_AddStringToObject(x, "type", qk_type_name(ty));
                cJSON_AddNumberToObject(x, "tensors", (double)tot[ty].count);
                cJSON_AddNumberToObject(x, "bytes", (double)tot[ty].bytes);
                cJSON_AddNumberToObject(x, "bpw", 8.0 * (double)tot[ty].bytes / (double)tot[ty].elems);
                cJSON_AddItemToArray(jy, x);
            }
        cJSON_AddNumberToObject(j, "file_bytes", (double)out_bytes);
        cJSON_AddNumberToObject(j, "tensor_bytes", (double)all_bytes);
        cJSON_AddNumberToObject(j, "input_tensor_bytes", (double)in_bytes);
        cJSON_AddNumberToObject(j, "bpw", total_elems ? 8.0 * (double)all_bytes / (double)total_elems : 0);
        cJSON_AddNumberToObject(j, "bpw_quantized", quant_elems ? 8.0 * (double)quant_bytes / (double)quant_elems : 0);
        cJSON_AddNumberToObject(j, "size_ratio", out_bytes ? (double)in_bytes / (double)out_bytes : 0);
        cJSON_AddNumberToObject(j, "seconds", dt);
        cJSON_AddNumberToObject(j, "nonfinite_replaced", (double)n_fixed);
        if (o->alloc)
            cJSON_AddItemToObject(j, "alloc", alloc_json(o, &ares, out_bytes));
        char *s = cJSON_Print(j);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(j);
    } else {
        printf("%-36s %-22s %-6s -> %-7s %s\n", "tensor", "shape", "from", "type", "note");
        for (int64_t i = 0; i < nt; i++) {
            const qk_model_tensor *t = qk_model_tensor_at(m, i);
            char sh[48], note[160] = "";
            if (t->n_dims > 1)
                snprintf(sh, sizeof sh, "[%lld, %lld]", (long long)t->ne[0], (long long)t->ne[1]);
            else
                snprintf(sh, sizeof sh, "[%lld]", (long long)t->ne[0]);
            if (plan[i].fallback)
                snprintf(note, sizeof note, "fallback: %lld columns do not fit %s blocks", (long long)t->ne[0],
                         qk_type_name(plan[i].wanted));
            else
                snprintf(note, sizeof note, "%s", reason_name(&plan[i]));
            if (gdone[i]) {
                size_t l = strlen(note);
                snprintf(note + l, sizeof note - l, "%sgptq damp %g%s", l ? "; " : "", gst[i].damp,
                         gst[i].n_raises ? " (raised)" : "");
                l = strlen(note);
                if (gst[i].n_dead)
                    snprintf(note + l, sizeof note - l, ", %lld dead cols", (long long)gst[i].n_dead);
            }
            alloc_note(at ? &at[i] : NULL, note, sizeof note);
            printf("%-36s %-22s %-6s -> %-7s %s\n", t->name, sh, src_type_name(t), qk_type_name(plan[i].type),
                   note);
        }
        printf("\n%-8s %8s %16s %8s\n", "type", "tensors", "bytes", "bpw");
        for (int ty = 0; ty < QK_TYPE_COUNT; ty++)
            if (tot[ty].count)
                printf("%-8s %8llu %16llu %8.4f\n", qk_type_name(ty), (unsigned long long)tot[ty].count,
                       (unsigned long long)tot[ty].bytes, 8.0 * (double)tot[ty].bytes / (double)tot[ty].elems);
        char b1[32], b2[32];
        printf("\noutput: %s, %s (%llu bytes)\n", o->output, qk_fmt_bytes(out_bytes, b1),
               (unsigned long long)out_bytes);
        printf("average: %.4f bits per weight (%.4f over the quantized 2-D weights)\n",
               total_elems ? 8.0 * (double)all_bytes / (double)total_elems : 0.0,
               quant_elems ? 8.0 * (double)quant_bytes / (double)quant_elems : 0.0);
        printf("input tensors: %s -> %.2fx smaller; %.2f s\n", qk_fmt_bytes(in_bytes, b2),
               out_bytes ? (double)in_bytes / (double)out_bytes : 0.0, dt);
        if (imx)
            printf("imatrix: %s, %lld entries, used for %lld tensors\n", o->imatrix, (long long)imx->n,
                   (long long)n_imx_used);
        if (o->alloc)
            alloc_print(o, &ares, out_bytes, all_bytes);
        if (awq) {
            int64_t scaled;
            double err, err_rtn;
            awq_totals(awq, &scaled, &err, &err_rtn);
            printf("awq: %lld of %lld groups scaled; estimated layer output error %.4g, %.1f%% of plain "
                   "quantization's; %.2f s\n", (long long)scaled, (long long)awq->n, err,
                   err_rtn > 0 ? 100.0 * err / err_rtn : 100.0, awq->seconds);
        }
    }
done:
    if (prog)
        qk_progress_finish(prog);
    qk_afile_abort(f);
    qk_gguf_writer_free(w);
    qk_pool_free(pool);
    qk_hasher_free(src_hash);
    qk_hasher_free(th);
    free(expect);
    qk_calib_free(imx);
    free(imp);
    free(plan);
    free(gst);
    free(gdone);
    free(at);
    qk_gptq_calib_free(gc);
    qk_awq_result_free(awq);
    free(fbuf);
    free(qbuf);
    qk_model_close(m);
    return rc;
}

/* --format gptq --method gptq: the export's producer. */
typedef struct {
    const opts_t *o;
    qk_gptq_calib *gc;
    uint64_t n_fixed;
    int64_t n_raised;
} gptq_producer;

static int gptq_produce(void *ctx, const qk_model *m, qk_gptq_layer *L, qk_pool *pool)
{
    gptq_producer *gp = ctx;
    const int64_t n_in = L->n_in, n_out = L->n_out, ng = L->n_groups;
    float *w = NULL, *deq = malloc((size_t)n_in * (size_t)n_out * sizeof(float));
    uint8_t *q = malloc((size_t)n_in * (size_t)n_out);
    uint16_t *s = malloc((size_t)ng * (size_t)n_out * sizeof(uint16_t));
    uint16_t *z = malloc((size_t)ng * (size_t)n_out * sizeof(uint16_t));
    int rc = deq && q && s && z ? 0 : qk_error(QK_ENOMEM, "out of memory for tensor '%s'", L->t->name);
    if (!rc)
        rc = decode_all(gp->o, m, L->t, pool, &w, &gp->n_fixed);
    qk_gptq_opts go;
    gptq_opts_from(gp->o, QK_GPTQ_LAYOUT, &go);
    go.layout_sym = L->sym;
    go.layout_bits = L->bits;
    go.layout_group = L->group_size;
    qk_gptq_stats st;
    if (!rc)
        rc = qk_gptq_calib_tensor_layout(gp->gc, L->t, &go, w, q, s, z, deq, pool, &st);
    for (int64_t r = 0; r < n_out && !rc; r++)
        rc = qk_gptq_layer_put_row(L, r, q + r * n_in, s + r * ng, z + r * ng);
    if (!rc)
        rc = qk_gptq_calib_quantized(gp->gc, L->t, deq);
    if (!rc && st.n_raises) {
        gp->n_raised++;
        qk_log(QK_LOG_WARN, "%s: Hessian singular; damping raised %d time%s to %g x its mean diagonal", L->t->name,
               st.n_raises, st.n_raises > 1 ? "s" : "", st.damp);
    }
    if (!rc)
        qk_log(QK_LOG_DEBUG, "%s: GPTQ%d, damp %g, %lld dead columns, layer error %.6g, %.3f s", L->t->name, L->bits,
               st.damp, (long long)st.n_dead, st.err, st.seconds);
    free(w);
    free(deq);
    free(q);
    free(s);
    free(z);
    return rc;
}

/* --format gptq: a Hugging Face directory with GPTQ-layout layers. */
static int run_gptq(opts_t *o)
{
    qk_model *m = NULL;
    qk_pool *pool = NULL;
    uint64_t *each = NULL;
    gptq_producer gp = {.o = o};
    double t0 = qk_now();
    qk_model_opts mo = {.vocab_path = o->vocab, .pad_ffn = o->pad_ffn};
    int rc = open_model(o, &m, &mo, NULL);
    if (rc || (rc = check_requantize(o, m)) || (rc = qk_pool_create(&pool, o->threads)))
        goto done;
    int64_t nt = qk_model_n_tensors(m);
    if (!(each = calloc((size_t)nt, sizeof *each))) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    qk_gptq_export_params p = {.bits = o->bits, .group_size = o->group_size, .sym = o->sym, .force = o->force,
                               .allow_nonfinite = o->allow_nonfinite, .source = o->input};
    qk_gptq_export_stats st = {.tensor_bytes_each = each};
    if (o->method == METHOD_GPTQ) {
        if ((rc = gptq_calib_open(o, m, &gp.gc)))
            goto done;
        p.produce = gptq_produce;
        p.produce_ctx = &gp;
    }
    if ((rc = qk_gptq_export(m, o->output, &p, pool, &st)))
        goto done;
    st.n_fixed += gp.n_fixed;
    if (st.n_fixed)
        qk_log(QK_LOG_WARN, "replaced %llu non-finite weights by 0 (--allow-nonfinite)", (unsigned long long)st.n_fixed);
    if (o->quiet)
        goto done;
    double dt = qk_now() - t0;
    uint64_t in_bytes = qk_model_source_bytes(m);
    char method[1024];
    method_string(o, method, sizeof method);
    char stored[32];
    snprintf(stored, sizeof stored, "GPTQ%d g%lld %s", o->bits, o->group_size, o->sym ? "sym" : "asym");
    double bpw = st.total_elems ? 8.0 * (double)st.tensor_bytes / (double)st.total_elems : 0.0;
    double bpw_q = st.quant_elems ? 8.0 * (double)st.quant_bytes / (double)st.quant_elems : 0.0;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "input", o->input);
        cJSON_AddStringToObject(j, "output", o->output);
        cJSON_AddStringToObject(j, "format", "gptq");
        cJSON_AddNumberToObject(j, "bits", o->bits);
        cJSON_AddNumberToObject(j, "group_size", (double)o->group_size);
        cJSON_AddBoolToObject(j, "sym", o->sym);
        cJSON_AddStringToObject(j, "method", method);
        cJSON *jt = cJSON_AddArrayToObject(j, "tensors");
        for (int64_t i = 0; i < nt; i++) {
            const qk_model_tensor *t = qk_model_tensor_at(m, i);
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "name", t->name);
            cJSON_AddStringToObject(x, "source_type", src_type_name(t));
            cJSON_AddStringToObject(x, "type", qk_gptq_export_quantizes(t) ? "GPTQ" : "F16");
            cJSON_AddNumberToObject(x, "bytes", (double)each[i]);
            cJSON_AddNumberToObject(x, "bpw", 8.0 * (double)each[i] / (double)qk_model_tensor_nelem(t));
            cJSON_AddItemToArray(jt, x);
        }
        cJSON_AddNumberToObject(j, "file_bytes", (double)st.file_bytes);
        cJSON_AddNumberToObject(j, "tensor_bytes", (double)st.tensor_bytes);
        cJSON_AddNumberToObject(j, "input_tensor_bytes", (double)in_bytes);
        cJSON_AddNumberToObject(j, "bpw", bpw);
        cJSON_AddNumberToObject(j, "bpw_quantized", bpw_q);
        cJSON_AddNumberToObject(j, "size_ratio", st.file_bytes ? (double)in_bytes / (double)st.file_bytes : 0);
        cJSON_AddNumberToObject(j, "seconds", dt);
        cJSON_AddNumberToObject(j, "nonfinite_replaced", (double)st.n_fixed);
        char *txt = cJSON_Print(j);
        printf("%s\n", txt);
        free(txt);
        cJSON_Delete(j);
        goto done;
    }
    printf("%-36s %-22s %-6s -> %-18s %12s %8s\n", "tensor", "shape", "from", "stored as", "bytes", "bpw");
    for (int64_t i = 0; i < nt; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        char sh[48];
        if (t->n_dims > 1)
            snprintf(sh, sizeof sh, "[%lld, %lld]", (long long)t->ne[0], (long long)t->ne[1]);
        else
            snprintf(sh, sizeof sh, "[%lld]", (long long)t->ne[0]);
        printf("%-36s %-22s %-6s -> %-18s %12llu %8.4f\n", t->name, sh, src_type_name(t),
               qk_gptq_export_quantizes(t) ? stored : "F16", (unsigned long long)each[i],
               8.0 * (double)each[i] / (double)qk_model_tensor_nelem(t));
    }
    char b1[32], b2[32];
    printf("\noutput: %s/ (model.safetensors %s, %llu bytes; %lld GPTQ layers)\n", o->output,
           qk_fmt_bytes(st.file_bytes, b1), (unsigned long long)st.file_bytes, (long long)st.n_quantized);
    printf("average: %.4f bits per weight (%.4f over the GPTQ layers)\n", bpw, bpw_q);
    printf("method: %s\n", method);
    printf("input tensors: %s -> %.2fx smaller; %.2f s\n", qk_fmt_bytes(in_bytes, b2),
           st.file_bytes ? (double)in_bytes / (double)st.file_bytes : 0.0, dt);
done:
    free(each);
    qk_gptq_calib_free(gp.gc);
    qk_pool_free(pool);
    qk_model_close(m);
    return rc;
}

/* --types Q4_K,Q5_K,...: distinct types quantkit writes. */
static int parse_types(const char *s, int *types, int *n)
{
    char buf[256];
    if (strlen(s) >= sizeof buf) {
        qk_tool_usage("--types '%s': too long", s);
        return -1;
    }
    strcpy(buf, s);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int t = qk_type_from_name(tok);
        const qk_type_traits *tr = qk_type_get(t);
        if (!tr || !(tr->from_float || tr->from_float_ref)) {
            qk_tool_usage("--types: '%s' is not a type quantkit can write (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, "
                          "Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)", tok);
            return -1;
        }
        int dup = 0;
        for (int i = 0; i < *n; i++)
            dup |= types[i] == t;
        if (!dup && *n < QK_ALLOC_MAX_CAND)
            types[(*n)++] = t;
    }
    if (*n == 0) {
        qk_tool_usage("--types '%s': no type given", s);
        return -1;
    }
    return 0;
}

static int parse_type(const char *opt, const char *s, int *out)
{
    int t = qk_type_from_name(s);
    const qk_type_traits *tr = qk_type_get(t);
    if (!tr || !(tr->from_float || tr->from_float_ref)) {
        qk_tool_usage("%s '%s': not a type quantkit can write (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, "
                      "Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)", opt, s);
        return -1;
    }
    *out = t;
    return 0;
}

/* quantkit.options: the command line without the options that cannot change
 * the output (threads, reporting), so the same inputs and options give the
 * same bytes whatever -t says (docs/SECURITY.md, determinism). */
static void cmdline_record(char *out, size_t cap, int argc, char **argv)
{
    static const char *const drop[] = {"-q", "--quiet", "-v", "--verbose", "--progress", "--json"};
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i < argc && k + 2 < cap; i++) {
        const char *a = argv[i];
        int skip = 0;
        if (i > 0 && (!strcmp(a, "-t") || !strcmp(a, "--threads"))) {
            i++; /* and its value */
            continue;
        }
        if (i > 0 && ((!strncmp(a, "-t", 2) && a[2] >= '0' && a[2] <= '9') || !strncmp(a, "--threads=", 10)))
            continue;
        for (size_t d = 0; i > 0 && d < sizeof drop / sizeof *drop; d++)
            skip |= !strcmp(a, drop[d]);
        if (!skip)
            k += (size_t)snprintf(out + k, cap - k, "%s%s", k ? " " : "", a);
    }
}

int main(int argc, char **argv)
{
    qk_tool_init("qk-quantize");
    static opts_t o;
    static qk_type_override ov[MAX_OVERRIDES];
    o.qp.output_type = o.qp.embed_type = -1;
    o.qp.overrides = ov;
    o.bits = 4;
    o.group_size = 128;
    o.sym = 1;
    o.damp = 0.01;
    o.refine = 2;
    o.calib_ctx = 128;
    o.awq_grid = QK_AWQ_GRID;
    cmdline_record(o.cmdline, sizeof o.cmdline, argc, argv);
    enum { O_PURE = 1000, O_TT, O_OUT, O_EMB, O_PAD, O_VOCAB, O_REQ, O_NONFIN, O_JSON, O_PROG, O_VERSION,
           O_FORMAT, O_BITS, O_GROUP, O_SYM, O_ASYM, O_FORCE, O_IMATRIX, O_IMX_MISMATCH,
           O_METHOD, O_CALIB, O_CALIB_TEXT, O_CALIB_CTX, O_CALIB_CHUNKS, O_DAMP, O_ACT_ORDER, O_SEQUENTIAL, O_REFINE,
           O_TARGET_SIZE, O_TARGET_BPW, O_TYPES, O_ALLOC_ROWS, O_ALLOC_MEASURE, O_AWQ_GRID, O_AWQ_ALPHA,
           O_NOVERIFY };
    static const struct option lo[] = {
        {"output", required_argument, 0, 'o'},      {"format", required_argument, 0, O_FORMAT},
        {"bits", required_argument, 0, O_BITS},     {"group-size", required_argument, 0, O_GROUP},
        {"sym", no_argument, 0, O_SYM},             {"asym", no_argument, 0, O_ASYM},
        {"force", no_argument, 0, O_FORCE},
        {"pure", no_argument, 0, O_PURE},           {"tensor-type", required_argument, 0, O_TT},
        {"imatrix", required_argument, 0, O_IMATRIX},
        {"allow-imatrix-mismatch", no_argument, 0, O_IMX_MISMATCH},
        {"method", required_argument, 0, O_METHOD}, {"calib", required_argument, 0, O_CALIB},
        {"calib-text", required_argument, 0, O_CALIB_TEXT}, {"calib-ctx", required_argument, 0, O_CALIB_CTX},
        {"calib-chunks", required_argument, 0, O_CALIB_CHUNKS}, {"damp", required_argument, 0, O_DAMP},
        {"act-order", no_argument, 0, O_ACT_ORDER}, {"sequential", no_argument, 0, O_SEQUENTIAL},
        {"refine", required_argument, 0, O_REFINE},
        {"awq-grid", required_argument, 0, O_AWQ_GRID}, {"awq-alpha", required_argument, 0, O_AWQ_ALPHA},
        {"target-size", required_argument, 0, O_TARGET_SIZE}, {"target-bpw", required_argument, 0, O_TARGET_BPW},
        {"types", required_argument, 0, O_TYPES},   {"alloc-rows", required_argument, 0, O_ALLOC_ROWS},
        {"alloc-measure", optional_argument, 0, O_ALLOC_MEASURE},
        {"output-type", required_argument, 0, O_OUT}, {"embed-type", required_argument, 0, O_EMB},
        {"pad-ffn", required_argument, 0, O_PAD},   {"vocab", required_argument, 0, O_VOCAB},
        {"allow-requantize", no_argument, 0, O_REQ}, {"allow-nonfinite", no_argument, 0, O_NONFIN},
        {"no-verify", no_argument, 0, O_NOVERIFY},
        {"threads", required_argument, 0, 't'},     {"json", no_argument, 0, O_JSON},
        {"quiet", no_argument, 0, 'q'},             {"verbose", no_argument, 0, 'v'},
        {"progress", no_argument, 0, O_PROG},       {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VERSION},     {0, 0, 0, 0},
    };
    int c, rc = 0, n_targets = 0;
    long long v;
    const char *calib_only = NULL; /* --calib-text/-ctx/-chunks: for --method gptq or --alloc-measure */
    const char *alloc_only = NULL; /* an option of --target-size/--target-bpw given */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:t:qvh", lo, NULL)) != -1) {
        switch (c) {
        case 'o': o.output = optarg; break;
        case O_FORMAT:
            if (!strcasecmp(optarg, "gguf")) o.format = FORMAT_GGUF;
            else if (!strcasecmp(optarg, "gptq")) o.format = FORMAT_GPTQ;
            else return qk_tool_usage("--format '%s': expected gguf or gptq", optarg);
            break;
        case O_BITS:
            if (strcmp(optarg, "4") && strcmp(optarg, "8"))
                return qk_tool_usage("--bits '%s': expected 4 or 8", optarg);
            o.bits = atoi(optarg);
            o.gptq_only = "--bits";
            break;
        case O_GROUP:
            if (strcmp(optarg, "32") && strcmp(optarg, "64") && strcmp(optarg, "128"))
                return qk_tool_usage("--group-size '%s': expected 32, 64 or 128", optarg);
            o.group_size = atoi(optarg);
            o.gptq_only = "--group-size";
            break;
        case O_SYM: o.sym = 1; o.gptq_only = "--sym"; break;
        case O_ASYM: o.sym = 0; o.gptq_only = "--asym"; break;
        case O_FORCE: o.force = 1; o.gptq_only = "--force"; break;
        case O_PURE: o.qp.pure = 1; o.gguf_only = "--pure"; break;
        case O_IMATRIX: o.imatrix = optarg; o.gguf_only = "--imatrix"; break;
        case O_IMX_MISMATCH: o.allow_imatrix_mismatch = 1; break;
        case O_METHOD:
            o.awq = !strcasecmp(optarg, "awq") || !strcasecmp(optarg, "awq+gptq");
            if (!strcasecmp(optarg, "rtn") || !strcasecmp(optarg, "awq")) o.method = METHOD_RTN;
            else if (!strcasecmp(optarg, "gptq") || !strcasecmp(optarg, "awq+gptq")) o.method = METHOD_GPTQ;
            else return qk_tool_usage("--method '%s': expected rtn, gptq, awq or awq+gptq", optarg);
            break;
        case O_CALIB: o.calib = optarg; break;
        case O_AWQ_GRID:
            if (qk_tool_parse_int("--awq-grid", optarg, 1, 1000, &v)) return QK_EXIT_USAGE;
            o.awq_grid = (int)v;
            o.awq_only = "--awq-grid";
            break;
        case O_AWQ_ALPHA: {
            char *end;
            o.awq_alpha = strtod(optarg, &end);
            if (end == optarg || *end || !(o.awq_alpha >= 0 && o.awq_alpha <= 1))
                return qk_tool_usage("--awq-alpha '%s': expected a number in [0, 1]", optarg);
            o.awq_fixed = 1;
            o.awq_only = "--awq-alpha";
            break;
        }
        case O_CALIB_TEXT: o.calib_text = optarg; calib_only = "--calib-text"; break;
        case O_CALIB_CTX:
            if (qk_tool_parse_int("--calib-ctx", optarg, 4, 1 << 20, &o.calib_ctx)) return QK_EXIT_USAGE;
            calib_only = "--calib-ctx";
            break;
        case O_CALIB_CHUNKS:
            if (qk_tool_parse_int("--calib-chunks", optarg, 1, 1 << 30, &o.calib_chunks)) return QK_EXIT_USAGE;
            calib_only = "--calib-chunks";
            break;
        case O_TARGET_SIZE:
            if (qk_parse_size(optarg, &o.target_bytes) || o.target_bytes == 0)
                return qk_tool_usage("--target-size '%s': expected a size in bytes (4GB, 3.8GiB, 1363360)", optarg);
            o.alloc = QK_ALLOC_SIZE;
            o.gguf_only = "--target-size";
            n_targets++;
            break;
        case O_TARGET_BPW: {
            char *end;
            o.target_bpw = strtod(optarg, &end);
            if (end == optarg || *end || !(o.target_bpw > 0 && o.target_bpw <= 32))
                return qk_tool_usage("--target-bpw '%s': expected bits per weight in (0, 32]", optarg);
            o.alloc = QK_ALLOC_BPW;
            o.gguf_only = "--target-bpw";
            n_targets++;
            break;
        }
        case O_TYPES:
            if (parse_types(optarg, o.alloc_types, &o.n_alloc_types)) return QK_EXIT_USAGE;
            alloc_only = "--types";
            break;
        case O_ALLOC_ROWS:
            if (qk_tool_parse_int("--alloc-rows", optarg, 1, 1 << 20, &o.alloc_rows)) return QK_EXIT_USAGE;
            alloc_only = "--alloc-rows";
            break;
        case O_ALLOC_MEASURE:
            if (optarg && strcmp(optarg, "all") && strcmp(optarg, "probe"))
                return qk_tool_usage("--alloc-measure=%s: expected --alloc-measure, --alloc-measure=probe or "
                                     "--alloc-measure=all", optarg);
            o.alloc_measure = optarg && !strcmp(optarg, "all") ? QK_ALLOC_MEASURE_ALL : QK_ALLOC_MEASURE_PROBE;
            alloc_only = "--alloc-measure";
            break;
        case O_DAMP: {
            char *end;
            o.damp = strtod(optarg, &end);
            if (end == optarg || *end || !(o.damp >= 0 && o.damp <= 10))
                return qk_tool_usage("--damp '%s': expected a number in [0, 10] (a fraction of the mean Hessian "
                                     "diagonal)", optarg);
            o.method_only = "--damp";
            break;
        }
        case O_ACT_ORDER: o.act_order = 1; o.method_only = "--act-order"; break;
        case O_SEQUENTIAL: o.sequential = 1; o.method_only = "--sequential"; break;
        case O_REFINE:
            if (qk_tool_parse_int("--refine", optarg, 0, 100, &v)) return QK_EXIT_USAGE;
            o.refine = (int)v;
            o.method_only = "--refine";
            break;
        case O_TT: {
            o.gguf_only = "--tensor-type";
            char *eq = strrchr(optarg, '=');
            if (!eq || eq == optarg)
                return qk_tool_usage("--tensor-type '%s': expected REGEX=TYPE", optarg);
            if (o.qp.n_overrides >= MAX_OVERRIDES)
                return qk_tool_usage("at most %d --tensor-type options", MAX_OVERRIDES);
            qk_type_override *x = &ov[o.qp.n_overrides];
            *eq = 0;
            if (parse_type("--tensor-type", eq + 1, &x->type))
                return QK_EXIT_USAGE;
            if (regcomp(&x->re, optarg, REG_EXTENDED | REG_NOSUB))
                return qk_tool_usage("--tensor-type: '%s' is not a valid extended regular expression", optarg);
            x->pattern = optarg;
            o.qp.n_overrides++;
            break;
        }
        case O_OUT:
            if (parse_type("--output-type", optarg, &o.qp.output_type)) return QK_EXIT_USAGE;
            o.gguf_only = "--output-type";
            break;
        case O_EMB:
            if (parse_type("--embed-type", optarg, &o.qp.embed_type)) return QK_EXIT_USAGE;
            o.gguf_only = "--embed-type";
            break;
        case O_PAD: if (qk_tool_parse_int("--pad-ffn", optarg, 1, 4096, &o.pad_ffn)) return QK_EXIT_USAGE; break;
        case O_VOCAB: o.vocab = optarg; break;
        case O_REQ: o.allow_requantize = 1; break;
        case O_NONFIN: o.allow_nonfinite = 1; break;
        case O_NOVERIFY: o.no_verify = 1; break;
        case 't':
            if (qk_tool_parse_int("--threads", optarg, 1, 1024, &v))
                return QK_EXIT_USAGE;
            o.threads = (int)v;
            break;
        case O_JSON: o.json = 1; break;
        case 'q': o.quiet = 1; break;
        case 'v': qk_log_set_level(QK_LOG_DEBUG); break;
        case O_PROG: qk_progress_force(1); break;
        case 'h': usage(); return 0;
        case O_VERSION: qk_tool_version(); return 0;
        default: return qk_tool_usage("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    int npos = argc - optind;
    if (o.method_only && o.method != METHOD_GPTQ)
        return qk_tool_usage("%s applies to --method gptq", o.method_only);
    if (o.calib && o.method != METHOD_GPTQ && !o.awq)
        return qk_tool_usage("--calib applies to --method gptq or awq");
    if (calib_only && o.method != METHOD_GPTQ && !o.awq && !o.alloc_measure)
        return qk_tool_usage("%s applies to --method gptq, awq or --alloc-measure", calib_only);
    if (o.awq_only && !o.awq)
        return qk_tool_usage("%s applies to --method awq", o.awq_only);
    if (o.awq && !o.calib && !o.calib_text)
        return qk_tool_usage("--method awq needs activation statistics: --calib FILE (qk-calibrate --hessian) or "
                             "--calib-text FILE");
    if (o.awq && o.method == METHOD_GPTQ && !o.calib_text)
        return qk_tool_usage("--method awq+gptq needs --calib-text (GPTQ's Hessians are collected on the scaled "
                             "model; --calib only feeds the AWQ search)");
    if (o.awq && o.format == FORMAT_GPTQ)
        return qk_tool_usage("--method awq applies to --format gguf");
    if (o.awq && o.alloc)
        return qk_tool_usage("--method awq does not combine with --target-size/--target-bpw yet");
    if (n_targets > 1)
        return qk_tool_usage("give one of --target-size and --target-bpw");
    if (alloc_only && !o.alloc)
        return qk_tool_usage("%s applies with --target-size or --target-bpw", alloc_only);
    if (o.alloc && o.qp.pure)
        return qk_tool_usage("--pure does not apply with --target-size/--target-bpw (the allocator chooses every type)");
    if (o.alloc_measure && !o.calib_text)
        return qk_tool_usage("--alloc-measure needs --calib-text FILE (the windows the KL divergence is measured on)");
    if (o.method == METHOD_GPTQ && !o.calib && !o.calib_text)
        return qk_tool_usage("--method gptq needs Hessians: --calib FILE (qk-calibrate --hessian) or "
                             "--calib-text FILE");
    if (o.sequential && !o.calib_text)
        return qk_tool_usage("--sequential needs --calib-text (Hessians are collected on the partly quantized "
                             "model)");
    if (o.format == FORMAT_GPTQ) {
        if (o.gguf_only)
            return qk_tool_usage("%s applies to --format gguf, not gptq", o.gguf_only);
        if (npos != (o.output ? 1 : 2))
            return qk_tool_usage(o.output ? "--format gptq: expected INPUT -o DIR (%d positional arguments given; no TYPE)"
                                          : "--format gptq: expected INPUT -o DIR or INPUT DIR (%d positional arguments given; no TYPE)",
                                 npos);
        o.input = argv[optind];
        if (!o.output)
            o.output = argv[optind + 1];
        rc = run_gptq(&o);
        return rc ? qk_tool_fail() : 0;
    }
    if (o.gptq_only)
        return qk_tool_usage("%s applies to --format gptq", o.gptq_only);
    if (npos != (o.output ? 2 : 3) && !(o.alloc && npos == (o.output ? 1 : 2)))
        return qk_tool_usage(o.alloc ? (o.output ? "expected INPUT -o OUTPUT [TYPE] (%d positional arguments given)"
                                                 : "expected INPUT OUTPUT [TYPE] (%d positional arguments given)")
                             : o.output ? "expected INPUT -o OUTPUT TYPE (%d positional arguments given)"
                                        : "expected INPUT OUTPUT TYPE (%d positional arguments given)",
                             npos);
    o.input = argv[optind];
    if (!o.output)
        o.output = argv[++optind];
    o.type_given = optind + 1 < argc;
    if (o.alloc) {
        o.qp.pure = 1; /* the plan only separates pinned tensors from the allocated ones */
        char types[256] = "all";
        for (int i = 0, p = 0; i < o.n_alloc_types && p + 10 < (int)sizeof types; i++)
            p += snprintf(types + p, sizeof types - (size_t)p, "%s%s", i ? "," : "", qk_type_name(o.alloc_types[i]));
        char target[64];
        if (o.alloc == QK_ALLOC_SIZE)
            snprintf(target, sizeof target, "target-size=%llu", (unsigned long long)o.target_bytes);
        else
            snprintf(target, sizeof target, "target-bpw=%g", o.target_bpw);
        char rows[32] = "auto";
        if (o.alloc_rows > 0)
            snprintf(rows, sizeof rows, "%lld", o.alloc_rows);
        snprintf(o.alloc_desc, sizeof o.alloc_desc, "%s types=%s rows=%s sensitivity=%s%s%s", target, types, rows,
                 o.alloc_measure == QK_ALLOC_MEASURE_ALL ? "kld-all" :
                 o.alloc_measure == QK_ALLOC_MEASURE_PROBE ? "kld-probe" : "estimate",
                 o.imatrix ? " imatrix=" : "", o.imatrix ? o.imatrix : "");
        if (!o.type_given) {
            o.target = qk_ftype_find("F16"); /* relabelled after the allocation */
            rc = run(&o);
            for (int64_t i = 0; i < o.qp.n_overrides; i++)
                regfree(&ov[i].re);
            return rc ? qk_tool_fail() : 0;
        }
    }
    o.target = qk_ftype_find(argv[optind + 1]);
    if (!o.target) {
        int64_t n;
        const qk_ftype_info *l = qk_ftype_list(&n);
        char names[512];
        size_t p = 0;
        for (int64_t i = 0; i < n && p + 10 < sizeof names; i++)
            p += (size_t)snprintf(names + p, sizeof names - p, "%s%s", i ? ", " : "", l[i].name);
        return qk_tool_usage("unknown TYPE '%s'; valid types: %s", argv[optind + 1], names);
    }
    rc = run(&o);
    for (int64_t i = 0; i < o.qp.n_overrides; i++)
        regfree(&ov[i].re);
    return rc ? qk_tool_fail() : 0;
}

/* qk-calibrate: activation statistics of every linear layer's input
 * (importance matrix, optionally Hessians X^T X) from a calibration text,
 * written as llama.cpp's legacy imatrix .dat or quantkit's .qkc; merges and
 * shows such files. The text is cut into windows as llama.cpp's
 * llama-imatrix does (docs/CALIBRATION.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quantkit/calib.h"
#include "quantkit/common.h"
#include "quantkit/eval.h"
#include "quantkit/forward.h"
#include "quantkit/metrics.h"
#include "quantkit/model.h"
#include "quantkit/tool.h"

#define MAX_TEXT_BYTES (1u << 30)
#define MAX_IN_FILES 64

enum { FMT_AUTO = 0, FMT_DAT, FMT_QKC };

typedef struct {
    const char *model, *text, *output, *vocab, *show;
    const char *in_files[MAX_IN_FILES];
    int n_in_files;
    long long n_ctx, max_chunks, first_chunk, batch, layers;
    int threads, format, hessian, sum_x, absmax, process_output, quiet;
    int no_verify; /* skip a quantkit model's checksums */
} opts_t;

static void usage(void)
{
    printf("Usage: qk-calibrate MODEL --text FILE -o OUT [options]     collect statistics\n"
           "       qk-calibrate --in-file A --in-file B ... -o OUT       merge files\n"
           "       qk-calibrate --show FILE                              per-tensor statistics\n"
           "\n"
           "Runs the reference forward pass over a calibration text and accumulates, for the\n"
           "input of every linear layer, the sum of x^2 per column (the importance matrix\n"
           "llama.cpp's quantizers take), and optionally sum x, max |x| and the Hessian X^T X.\n"
           "Windows as llama.cpp's llama-imatrix cuts them: the text is tokenized with BOS,\n"
           "cut into --ctx windows whose first token is BOS, every position counted.\n"
           "\n"
           "Options:\n"
           "      --text FILE            calibration text (UTF-8)\n"
           "  -o, --output FILE          output file; *.dat: llama.cpp's legacy imatrix, else quantkit .qkc\n"
           "      --format dat|qkc       output format, whatever the extension\n"
           "  -c, --ctx N                window length (default 512, llama-imatrix's)\n"
           "      --chunks K             use at most K windows (default: all)\n"
           "      --first-chunk N        skip the first N windows (llama-imatrix --chunk)\n"
           "  -b, --batch B              windows per forward pass (default 1; with --hessian 4096 tokens' worth)\n"
           "  -t, --threads T            threads (default: all CPUs)\n"
           "      --hessian              also accumulate X^T X per distinct input (q/k/v, attn_output,\n"
           "                             gate/up, ffn_down; n_in^2 doubles each, per layer; .qkc only).\n"
           "                             Layer-major: every window's hidden states (tokens x n_embd floats)\n"
           "                             go through one layer at a time, and each layer's Hessians are\n"
           "                             written as it finishes, so memory is one layer's Hessians (2 GB\n"
           "                             for a 7B) plus the hidden states (with --in-file: all at once)\n"
           "      --layers N             with --hessian: only the first N layers (benchmarking; the file\n"
           "                             holds only their entries)\n"
           "      --sum-x, --absmax      also keep sum x / max |x| per column (.qkc only)\n"
           "      --process-output       also collect output.weight (llama-imatrix --process-output)\n"
           "      --in-file F            merge an existing .dat/.qkc (repeatable; token-weighted)\n"
           "      --show FILE            print per-tensor statistics of a file and exit\n"
           "      --vocab FILE           tokenizer for llama2.c inputs\n"
           "      --no-verify            skip checking a quantkit GGUF model's checksums (quantkit.tensor_xxh3)\n"
           "  -q, --quiet                no report\n"
           "      --progress             progress on stderr even when it is not a terminal\n"
           "  -h, --help, --version\n"
           "\n"
           "Exit status: 0 ok, 1 error (no output is left behind), 2 bad usage.\n");
}

/* ------------------------------------------------------------------ show */

static int show(const char *path)
{
    qk_calib *c = NULL;
    int rc = qk_calib_load(&c, path);
    if (rc)
        return rc;
    char h1[17], h2[17];
    qk_hash_hex(c->model_hash, h1);
    qk_hash_hex(c->text_hash, h2);
    int is_dat = c->n_ctx == 0 && c->model_hash == 0 && c->text_hash == 0;
    printf("file: %s\n", path);
    printf("entries: %lld, dataset: %s, chunks: %lld, ctx: %lld\n", (long long)c->n,
           c->dataset ? c->dataset : "(unknown)", (long long)c->n_chunks, (long long)c->n_ctx);
    if (!is_dat)
        printf("model xxh3: %s, text xxh3: %s\n", c->model_hash ? h1 : "(unknown)", c->text_hash ? h2 : "(unknown)");
    printf("\n%-34s %7s %10s %7s %12s %12s %9s  %s\n", "tensor", "n_in", "tokens", "ncall", "mean", "max",
           "near-zero", "hessian");
    for (int64_t i = 0; i < c->n; i++) {
        const qk_calib_entry *e = &c->e[i];
        double sum = 0, mx = 0;
        const double nt = (double)e->n_tokens;
        for (int64_t j = 0; j < e->n_in; j++) {
            double v = e->sum_x2[j] / nt;
            sum += v;
            mx = v > mx ? v : mx;
        }
        double mean = sum / (double)e->n_in;
        int64_t nz = 0;
        for (int64_t j = 0; j < e->n_in; j++)
            nz += e->sum_x2[j] / nt < 1e-6 * mean;
        char hs[96] = "-";
        if (e->hessian_of == i && e->xtx)
            snprintf(hs, sizeof hs, "own");
        else if (qk_calib_hessian(c, e))
            snprintf(hs, sizeof hs, "= %s", c->e[e->hessian_of].name);
        printf("%-34s %7lld %10lld %7lld %12.5e %12.5e %8.2f%%  %s\n", e->name, (long long)e->n_in,
               (long long)e->n_tokens, (long long)e->n_calls, mean, mx, 100.0 * (double)nz / (double)e->n_in, hs);
    }
    printf("\nmean/max: per-column mean of x^2 over tokens (sum_x2 / tokens); near-zero: columns below 1e-6 x mean\n");
    if (is_dat)
        printf("(llama.cpp .dat files store no token counts: tokens = ncall, as llama.cpp reads them)\n");
    qk_calib_free(c);
    return 0;
}

/* --------------------------------------------------------------- collect */

static int skip_logits(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    (void)ctx, (void)seq, (void)pos, (void)logits;
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

typedef struct {
    int64_t tokens, windows, text_tokens;
    double seconds, hash_seconds;
    uint64_t stat_bytes;
    int64_t entries, hessians, entry_tokens, layers, n_layer; /* streamed */
} run_info;

/* Layer-major streaming: each layer's entries are written as it finishes. */
typedef struct {
    qk_calib_writer *w;
    int64_t n_hess, tokens, written;
} stream_ctx;

static int stream_layer(void *ctx, const qk_calib *set, int64_t layer, int64_t first, int64_t count)
{
    (void)layer;
    stream_ctx *sc = ctx;
    for (int64_t i = first; i < first + count; i++) {
        int rc = qk_calib_writer_put(sc->w, set, i);
        if (rc)
            return rc;
        sc->n_hess += set->e[i].hessian_of == i && set->e[i].xtx;
        sc->tokens = set->e[i].n_tokens > sc->tokens ? set->e[i].n_tokens : sc->tokens;
        sc->written++;
    }
    return 0;
}

/* stream: write o->output layer by layer (--hessian to a .qkc without
 * --in-file); *out stays NULL and ri->entries/hessians/entry_tokens are set. */
static int collect(const opts_t *o, const qk_calib *files, qk_calib **out, run_info *ri, int stream)
{
    qk_model *m = NULL;
    qk_tokenizer *tok = NULL;
    qk_forward *f = NULL;
    qk_calib_collector *col = NULL;
    qk_progress *prog = NULL;
    char *text = NULL;
    int32_t *ids = NULL, *win = NULL;
    size_t text_n = 0;
    int64_t n_ids = 0, n_chunks = 0;
    int rc;

    qk_model_opts mo = {.vocab_path = o->vocab};
    if ((rc = qk_read_file(&text, &text_n, o->text, MAX_TEXT_BYTES)) || (rc = qk_model_open(&m, o->model, &mo)) ||
        (!o->no_verify && (rc = qk_model_verify(m))))
        goto done;
    /* files to merge must belong to this model: checked before the pass */
    if (files && (rc = qk_calib_check_model(files, m, 0))) {
        qk_error_prefix(rc, "--in-file");
        goto done;
    }
    if (o->n_ctx > qk_model_cfg(m)->n_ctx && qk_model_cfg(m)->n_ctx > 0)
        qk_log(QK_LOG_WARN, "%s was trained on %lld-token contexts; --ctx %lld is longer", o->model,
               (long long)qk_model_cfg(m)->n_ctx, o->n_ctx);
    const qk_vocab *v = qk_model_vocab(m);
    if (!v) {
        rc = qk_error(QK_ENOTFOUND, "%s: no tokenizer; give one with --vocab FILE", o->model);
        goto done;
    }
    if ((rc = qk_tokenizer_new(&tok, v)) ||
        (rc = qk_tokenize_ex(tok, text, text_n, QK_TOKENIZE_ADD_SPECIAL, &ids, &n_ids)))
        goto done;
    ri->text_tokens = n_ids;
    int64_t skip = o->first_chunk * o->n_ctx;
    if (n_ids - skip < o->n_ctx) {
        if (o->first_chunk)
            rc = qk_error(QK_EINVAL, "%s: %lld tokens leave fewer than one window of --ctx %lld after skipping %lld "
                          "windows", o->text, (long long)n_ids, (long long)o->n_ctx, (long long)o->first_chunk);
        else
            rc = qk_error(QK_EINVAL, "%s: %lld tokens are fewer than one window of --ctx %lld; give a longer text "
                          "or a smaller --ctx", o->text, (long long)n_ids, (long long)o->n_ctx);
        goto done;
    }
    if ((rc = qk_eval_windows(ids + skip, n_ids - skip, o->n_ctx, o->max_chunks, v->add_bos ? v->bos_id : -1, &win,
                              &n_chunks)))
        goto done;

    qk_calib_opts co = {.n_ctx = o->n_ctx, .hessian = o->hessian, .sum_x = o->sum_x, .absmax = o->absmax,
                        .output = o->process_output, .n_threads = o->threads, .hessian_per_layer = stream};
    int want_output = o->process_output && qk_model_find(m, "output.weight") != NULL;
    if (o->process_output && !want_output)
        qk_log(QK_LOG_WARN, "%s: tied embeddings, no output.weight to collect (--process-output ignored)", o->model);
    ri->stat_bytes = qk_calib_collector_bytes(m, &co);
    if (stream)
        ri->stat_bytes += (uint64_t)n_chunks * (uint64_t)o->n_ctx * (uint64_t)qk_model_cfg(m)->n_embd * sizeof(float);
    char b[32];
    qk_log(QK_LOG_INFO, "statistics: %s%s", qk_fmt_bytes(ri->stat_bytes, b),
           stream ? " (one layer's Hessians and the hidden states)" : o->hessian ? " (with Hessians)" : "");
    int64_t B = o->batch > 0 ? o->batch : stream ? (4096 / o->n_ctx > 1 ? 4096 / o->n_ctx : 1) : 1;
    B = B < n_chunks ? B : n_chunks;
    qk_forward_opts fo = {.n_threads = o->threads, .max_tokens = B * o->n_ctx};
    if ((rc = qk_calib_collector_new(&col, m, &co)) || (rc = qk_forward_new(&f, m, &fo)))
        goto done;
    if (stream) {
        const int64_t n_layer = qk_model_cfg(m)->n_layer;
        const int64_t layers = o->layers > 0 && o->layers < n_layer ? o->layers : n_layer;
        stream_ctx sc = {0};
        qk_calib hdr = {.text_hash = qk_hash64(text, text_n), .n_ctx = o->n_ctx, .n_chunks = n_chunks,
                        .dataset = (char *)o->text};
        double th = qk_now();
        if ((rc = qk_calib_model_hash(m, &hdr.model_hash)))
            goto done;
        ri->hash_seconds = qk_now() - th;
        int64_t n_entries = layers * 7 + (layers == n_layer && want_output);
        if ((rc = qk_calib_writer_open(&sc.w, o->output, &hdr, n_entries)))
            goto done;
        prog = qk_progress_start("calibrating", (uint64_t)(n_chunks * layers), "win");
        double t0 = qk_now();
        rc = qk_calib_collect_layers(col, f, win, n_chunks, layers, stream_layer, &sc, prog);
        ri->seconds = qk_now() - t0;
        qk_progress_finish(prog);
        prog = NULL;
        if (!rc && sc.written != n_entries)
            rc = qk_error(QK_EINVAL, "calibration: %lld of %lld entries were collected", (long long)sc.written,
                          (long long)n_entries);
        if (rc) {
            qk_calib_writer_abort(sc.w);
            goto done;
        }
        if ((rc = qk_calib_writer_commit(sc.w)))
            goto done;
        ri->windows = n_chunks;
        ri->tokens = n_chunks * o->n_ctx;
        ri->entries = n_entries;
        ri->hessians = sc.n_hess;
        ri->entry_tokens = sc.tokens;
        ri->layers = layers;
        ri->n_layer = n_layer;
        goto done;
    }
    qk_forward_set_hook(f, qk_calib_hook, col);
    prog = qk_progress_start("calibrating", (uint64_t)n_chunks, "win");
    double t0 = qk_now();
    for (int64_t c0 = 0; c0 < n_chunks && !rc; c0 += B) {
        int64_t nb = n_chunks - c0 < B ? n_chunks - c0 : B;
        rc = qk_forward_run(f, win + c0 * o->n_ctx, nb, o->n_ctx, want_output ? 0 : o->n_ctx,
                            want_output ? skip_logits : NULL, NULL);
        qk_progress_update(prog, (uint64_t)(c0 + nb));
    }
    ri->seconds = qk_now() - t0;
    qk_progress_finish(prog);
    prog = NULL;
    if (rc)
        goto done;
    ri->windows = n_chunks;
    ri->tokens = n_chunks * o->n_ctx;
    if ((rc = qk_calib_collector_finish(col, out)))
        goto done;
    qk_calib *c = *out;
    c->text_hash = qk_hash64(text, text_n);
    if (!(c->dataset = strdup(o->text))) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    rc = qk_calib_model_hash(m, &c->model_hash);
done:
    if (rc && out && *out) { /* out is NULL when the .qkc is streamed */
        qk_calib_free(*out);
        *out = NULL;
    }
    qk_progress_finish(prog);
    qk_forward_free(f);
    qk_calib_collector_free(col);
    qk_tokenizer_free(tok);
    qk_model_close(m);
    free(text);
    free(ids);
    free(win);
    return rc;
}

static int has_extras(const qk_calib *c, int *hess, int *sx, int *am)
{
    *hess = *sx = *am = 0;
    for (int64_t i = 0; i < c->n; i++) {
        *hess |= c->e[i].xtx != NULL;
        *sx |= c->e[i].sum_x != NULL;
        *am |= c->e[i].absmax != NULL;
    }
    return *hess || *sx || *am;
}

static int run(const opts_t *o)
{
    qk_calib *acc = NULL, *in = NULL;
    run_info ri = {0};
    int rc = 0;
    double t0 = qk_now();

    /* the files to merge are read (and validated) before any work */
    qk_calib *files = NULL;
    if (o->n_in_files && (rc = qk_calib_new(&files)))
        goto done;
    for (int i = 0; i < o->n_in_files && !rc; i++) {
        if ((rc = qk_calib_load(&in, o->in_files[i])))
            break;
        rc = qk_calib_merge(files, in);
        if (rc)
            qk_error_prefix(rc, o->in_files[i]);
        qk_calib_free(in);
        in = NULL;
    }
    if (rc)
        goto done;
    int fmt = o->format ? o->format : ends_with(o->output, ".dat") ? FMT_DAT : FMT_QKC;
    if (o->model && o->hessian && fmt == FMT_QKC && !files) {
        /* layer-major, written as it goes */
        if ((rc = collect(o, NULL, NULL, &ri, 1)) || o->quiet)
            goto done;
        printf("model: %s\n", o->model);
        printf("text: %s, %lld tokens; %lld windows of %lld (%lld tokens) from window %lld\n", o->text,
               (long long)ri.text_tokens, (long long)ri.windows, (long long)o->n_ctx, (long long)ri.tokens,
               (long long)o->first_chunk);
        const double per_layer = ri.seconds / (double)(ri.layers > 0 ? ri.layers : 1);
        const double full = per_layer * (double)ri.n_layer;
        printf("speed: %.1f tokens/s (%.2f s for %lld of %lld layers, %.2f s per layer; whole model %s%.0f s; "
               "model checksum %.2f s)\n", full > 0 ? (double)ri.tokens / full : 0.0, ri.seconds,
               (long long)ri.layers, (long long)ri.n_layer, per_layer, ri.layers < ri.n_layer ? "extrapolated " : "",
               full, ri.hash_seconds);
        printf("entries: %lld (%lld Hessians), tokens per entry: %lld\n", (long long)ri.entries,
               (long long)ri.hessians, (long long)ri.entry_tokens);
        printf("output: %s (quantkit .qkc, written layer by layer), %.2f s\n", o->output, qk_now() - t0);
        goto done;
    }
    if (o->model) {
        if ((rc = collect(o, files, &acc, &ri, 0)))
            goto done;
        if (files) {
            int h0, s0, a0, h1, s1, a1;
            has_extras(acc, &h0, &s0, &a0);
            if ((rc = qk_calib_merge(acc, files)))
                goto done;
            has_extras(acc, &h1, &s1, &a1);
            if (h0 > h1 || s0 > s1 || a0 > a1)
                qk_log(QK_LOG_WARN, "the --in-file data lack %s: the merged file keeps none",
                       h0 > h1 ? "Hessians" : s0 > s1 ? "sum x" : "absmax");
        }
    } else {
        acc = files;
        files = NULL;
    }
    int h, sx, am;
    if (fmt == FMT_DAT && has_extras(acc, &h, &sx, &am))
        qk_log(QK_LOG_WARN, "%s: the .dat format keeps only the importance matrix (%s dropped)", o->output,
               h ? "Hessians" : sx ? "sum x" : "absmax");
    rc = fmt == FMT_DAT ? qk_calib_save_dat(acc, o->output) : qk_calib_save_qkc(acc, o->output);
    if (rc || o->quiet)
        goto done;

    int64_t n_hess = 0, tokens = 0;
    for (int64_t i = 0; i < acc->n; i++) {
        n_hess += acc->e[i].hessian_of == i && acc->e[i].xtx;
        tokens = acc->e[i].n_tokens > tokens ? acc->e[i].n_tokens : tokens;
    }
    if (o->model) {
        printf("model: %s\n", o->model);
        printf("text: %s, %lld tokens; %lld windows of %lld (%lld tokens) from window %lld\n", o->text,
               (long long)ri.text_tokens, (long long)ri.windows, (long long)o->n_ctx, (long long)ri.tokens,
               (long long)o->first_chunk);
        printf("speed: %.1f tokens/s (%.2f s in the forward pass and statistics)\n",
               ri.seconds > 0 ? (double)ri.tokens / ri.seconds : 0.0, ri.seconds);
    }
    for (int i = 0; i < o->n_in_files; i++)
        printf("merged: %s\n", o->in_files[i]);
    printf("entries: %lld (%lld Hessians), tokens per entry: %lld\n", (long long)acc->n, (long long)n_hess,
           (long long)tokens);
    printf("output: %s (%s), %.2f s\n", o->output, fmt == FMT_DAT ? "llama.cpp imatrix .dat" : "quantkit .qkc",
           qk_now() - t0);
done:
    qk_calib_free(acc);
    qk_calib_free(files);
    qk_calib_free(in);
    return rc;
}

int main(int argc, char **argv)
{
    qk_tool_init("qk-calibrate");
    opts_t o = {0};
    o.n_ctx = 512;
    o.batch = 0; /* auto: 1, or 4096 tokens' worth layer-major */
    enum { O_TEXT = 1000, O_FORMAT, O_CHUNKS, O_FIRST, O_HESS, O_SUMX, O_ABSMAX, O_POUT, O_IN, O_SHOW, O_VOCAB,
           O_PROG, O_VERSION, O_LAYERS, O_NOVERIFY };
    static const struct option lo[] = {
        {"text", required_argument, 0, O_TEXT},       {"output", required_argument, 0, 'o'},
        {"format", required_argument, 0, O_FORMAT},   {"ctx", required_argument, 0, 'c'},
        {"chunks", required_argument, 0, O_CHUNKS},   {"first-chunk", required_argument, 0, O_FIRST},
        {"batch", required_argument, 0, 'b'},         {"threads", required_argument, 0, 't'},
        {"hessian", no_argument, 0, O_HESS},          {"sum-x", no_argument, 0, O_SUMX},
        {"absmax", no_argument, 0, O_ABSMAX},         {"process-output", no_argument, 0, O_POUT},
        {"in-file", required_argument, 0, O_IN},      {"show", required_argument, 0, O_SHOW},
        {"vocab", required_argument, 0, O_VOCAB},     {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'},             {"progress", no_argument, 0, O_PROG},
        {"help", no_argument, 0, 'h'},                {"version", no_argument, 0, O_VERSION},
        {"layers", required_argument, 0, O_LAYERS},   {"no-verify", no_argument, 0, O_NOVERIFY},
        {0, 0, 0, 0},
    };
    int c;
    long long v;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:c:b:t:qvh", lo, NULL)) != -1) {
        switch (c) {
        case O_TEXT: o.text = optarg; break;
        case 'o': o.output = optarg; break;
        case O_FORMAT:
            if (!strcasecmp(optarg, "dat")) o.format = FMT_DAT;
            else if (!strcasecmp(optarg, "qkc")) o.format = FMT_QKC;
            else return qk_tool_usage("--format '%s': expected dat or qkc", optarg);
            break;
        case 'c': if (qk_tool_parse_int("--ctx", optarg, 8, 1 << 20, &o.n_ctx)) return QK_EXIT_USAGE; break;
        case O_CHUNKS: if (qk_tool_parse_int("--chunks", optarg, 1, 1ll << 40, &o.max_chunks)) return QK_EXIT_USAGE; break;
        case O_FIRST: if (qk_tool_parse_int("--first-chunk", optarg, 0, 1ll << 40, &o.first_chunk)) return QK_EXIT_USAGE; break;
        case 'b': if (qk_tool_parse_int("--batch", optarg, 1, 4096, &o.batch)) return QK_EXIT_USAGE; break;
        case 't':
            if (qk_tool_parse_int("--threads", optarg, 1, 1024, &v))
                return QK_EXIT_USAGE;
            o.threads = (int)v;
            break;
        case O_HESS: o.hessian = 1; break;
        case O_LAYERS: if (qk_tool_parse_int("--layers", optarg, 1, 1 << 20, &o.layers)) return QK_EXIT_USAGE; break;
        case O_SUMX: o.sum_x = 1; break;
        case O_ABSMAX: o.absmax = 1; break;
        case O_POUT: o.process_output = 1; break;
        case O_IN:
            if (o.n_in_files >= MAX_IN_FILES)
                return qk_tool_usage("at most %d --in-file options", MAX_IN_FILES);
            o.in_files[o.n_in_files++] = optarg;
            break;
        case O_SHOW: o.show = optarg; break;
        case O_VOCAB: o.vocab = optarg; break;
        case O_NOVERIFY: o.no_verify = 1; break;
        case 'q': o.quiet = 1; break;
        case 'v': qk_log_set_level(QK_LOG_DEBUG); break;
        case O_PROG: qk_progress_force(1); break;
        case 'h': usage(); return 0;
        case O_VERSION: qk_tool_version(); return 0;
        default: return qk_tool_usage("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        o.model = argv[optind++];
    if (optind < argc)
        return qk_tool_usage("unexpected argument '%s'", argv[optind]);
    if (o.show) {
        if (o.model || o.text || o.output || o.n_in_files)
            return qk_tool_usage("--show FILE takes no other input or output");
        return show(o.show) ? qk_tool_fail() : 0;
    }
    if (!o.output)
        return qk_tool_usage("missing -o OUT");
    if (o.model && !o.text)
        return qk_tool_usage("missing --text FILE");
    if (!o.model && o.text)
        return qk_tool_usage("--text needs a MODEL");
    if (!o.model && !o.n_in_files)
        return qk_tool_usage("missing MODEL (or --in-file files to merge)");
    int fmt = o.format ? o.format : ends_with(o.output, ".dat") ? FMT_DAT : FMT_QKC;
    if (fmt == FMT_DAT && (o.hessian || o.sum_x || o.absmax))
        return qk_tool_usage("%s needs the .qkc format (the .dat format holds only the importance matrix)",
                             o.hessian ? "--hessian" : o.sum_x ? "--sum-x" : "--absmax");
    if (!o.model && (o.hessian || o.sum_x || o.absmax || o.process_output || o.max_chunks || o.first_chunk))
        return qk_tool_usage("collection options need a MODEL and --text");
    if (o.layers && (!o.hessian || fmt != FMT_QKC || o.n_in_files))
        return qk_tool_usage("--layers is for layer-major --hessian collection into a .qkc (without --in-file)");
    return run(&o) ? qk_tool_fail() : 0;
}

/* qk-eval: perplexity of a model, or the consistency report of a quantized
 * model against its base (KL divergence, top-token agreement, perplexity
 * ratio, sizes) with a pass/fail ship gate. */
#include <cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "quantkit/common.h"
#include "quantkit/eval.h"
#include "quantkit/gguf.h"
#include "quantkit/hf.h"
#include "quantkit/metrics.h"
#include "quantkit/model.h"
#include "quantkit/tool.h"

#define MAX_TEXT_BYTES (1u << 30)

typedef struct {
    const char *model, *base, *quant, *text, *vocab, *json, *save_base, *load_base;
    qk_eval_opts eo;
    double max_ppl_increase, max_kld, min_same_top; /* < 0: not set */
    int allow_shape_mismatch, no_verify, quiet;
} opts_t;

static void usage(void)
{
    printf("Usage: qk-eval MODEL --text FILE [options]                      perplexity\n"
           "       qk-eval --base REF --quant Q --text FILE [options]       consistency report + gate\n"
           "       qk-eval --base REF --text FILE --save-base F             keep the reference results\n"
           "       qk-eval --load-base F --quant Q --text FILE [options]    compare against kept results\n"
           "\n"
           "Protocol (llama.cpp's): the text is tokenized with BOS and cut into --ctx windows\n"
           "whose first token is BOS; the second half of each window is scored.\n"
           "\n"
           "Options:\n"
           "      --text FILE            evaluation text (UTF-8)\n"
           "  -c, --ctx N                window length (default 512)\n"
           "      --chunks K             use at most K windows (default: all)\n"
           "  -b, --batch B             windows per forward pass (default 1)\n"
           "  -t, --threads T            threads (default: all CPUs)\n"
           "      --score all|half       score every position, or the second half (default)\n"
           "      --vocab FILE           tokenizer for llama2.c inputs (both models)\n"
           "      --json FILE            write every number, the inputs' checksums and the version\n"
           "      --save-base FILE       keep the base model's top-k log-probs (zlib) for later runs\n"
           "      --load-base FILE       use kept base results instead of running the base model\n"
           "      --top-k K              log-probs kept per position by --save-base (default 64)\n"
           "      --max-ppl-increase P   gate: PPL(Q)/PPL(base) - 1 at most P (e.g. 2%%)\n"
           "      --max-kld X            gate: mean KL divergence at most X\n"
           "      --min-same-top P       gate: same top token at least P (e.g. 90%%)\n"
           "      --allow-shape-mismatch compare models whose shapes differ (e.g. padded copies)\n"
           "      --emulate-llamacpp     round like llama.cpp's CPU backend (Q8 activations for quantized\n"
           "                             weights, F16 KV cache) to predict its numbers exactly\n"
           "      --no-verify            skip checking quantkit checksums of the inputs\n"
           "  -q, --quiet                only the verdict\n"
           "      --progress             progress on stderr even when it is not a terminal\n"
           "  -h, --help, --version\n"
           "\n"
           "Exit status: 0 ok (gate passed), 1 error, 2 bad usage, 3 gate failed.\n");
}

/* ---------------------------------------------------------------- helpers */

typedef struct {
    uint64_t file_bytes;
    uint64_t quant_elems, quant_bytes; /* 2-D weights */
    uint64_t all_elems, all_bytes;
    uint64_t content_hash;             /* XXH3-64 over tensor bytes, canonical order */
    uint64_t source_hash;              /* quantkit.source_xxh3 of a quantkit GGUF, 0 if none */
} model_info;

static uint64_t path_bytes(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode))
        return (uint64_t)st.st_size;
    uint64_t n = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = qk_path_join(path, e->d_name);
        if (p && stat(p, &st) == 0 && S_ISREG(st.st_mode))
            n += (uint64_t)st.st_size;
        free(p);
    }
    if (d)
        closedir(d);
    return n;
}

static int model_info_get(const qk_model *m, const char *path, model_info *mi)
{
    memset(mi, 0, sizeof *mi);
    mi->file_bytes = path_bytes(path);
    qk_hasher *h = NULL;
    int rc = qk_hasher_new(&h);
    if (rc)
        return rc;
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        uint64_t ne = (uint64_t)qk_model_tensor_nelem(t);
        mi->all_elems += ne;
        mi->all_bytes += t->nbytes;
        if (t->n_dims > 1) {
            mi->quant_elems += ne;
            mi->quant_bytes += t->nbytes;
        }
        qk_hasher_update(h, t->data, (size_t)t->nbytes);
    }
    mi->content_hash = qk_hasher_digest(h);
    qk_hasher_free(h);
    const qk_gguf *g = qk_model_gguf(m);
    const qk_gguf_kv *kv = g ? qk_gguf_find_kv(g, "quantkit.source_xxh3") : NULL;
    if (kv && kv->type == QK_GGUF_U64)
        mi->source_hash = kv->v.u64;
    return 0;
}

static uint64_t vocab_hash(const qk_vocab *v)
{
    qk_hasher *h = NULL;
    if (qk_hasher_new(&h))
        return 0;
    for (int64_t i = 0; i < v->n_tokens; i++) {
        qk_hasher_update(h, v->tokens[i].s, (size_t)v->tokens[i].len);
        qk_hasher_update(h, "", 1);
    }
    uint64_t r = qk_hasher_digest(h);
    qk_hasher_free(h);
    return r;
}

static int open_model(qk_model **out, const char *path, const opts_t *o)
{
    qk_model_opts mo = {.vocab_path = o->vocab};
    int rc = qk_model_open(out, path, &mo);
    if (rc)
        return rc;
    if (!o->no_verify && (rc = qk_model_verify(*out))) {
        qk_model_close(*out);
        *out = NULL;
    }
    return rc;
}

static int check_compatible(const qk_model *a, const qk_model *b, const opts_t *o)
{
    const qk_model_config *x = qk_model_cfg(a), *y = qk_model_cfg(b);
    const qk_vocab *va = qk_model_vocab(a), *vb = qk_model_vocab(b);
    if (x->n_vocab != y->n_vocab || !va || !vb || va->n_tokens != vb->n_tokens || vocab_hash(va) != vocab_hash(vb))
        return qk_error(QK_EINVAL, "%s and %s have different vocabularies (%lld vs %lld tokens); they cannot be "
                        "compared token by token", o->base, o->quant, (long long)x->n_vocab, (long long)y->n_vocab);
    if (!o->allow_shape_mismatch &&
        (x->n_embd != y->n_embd || x->n_layer != y->n_layer || x->n_head != y->n_head ||
         x->n_head_kv != y->n_head_kv || x->n_ff != y->n_ff))
        return qk_error(QK_EINVAL,
                        "%s and %s have different shapes (n_embd %lld/%lld, n_layer %lld/%lld, n_ff %lld/%lld); "
                        "use --allow-shape-mismatch for equivalent padded models", o->base, o->quant,
                        (long long)x->n_embd, (long long)y->n_embd, (long long)x->n_layer, (long long)y->n_layer,
                        (long long)x->n_ff, (long long)y->n_ff);
    return 0;
}

typedef struct {
    double mean, err;
} stat2;

static stat2 mean_err(const double *v, int64_t n)
{
    stat2 s = {0, 0};
    if (n <= 0)
        return s;
    double a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        a += v[i];
        b += v[i] * v[i];
    }
    a /= (double)n;
    b /= (double)n;
    s.mean = a;
    double var = b - a * a;
    s.err = n > 1 && var > 0 ? sqrt(var / (double)(n - 1)) : 0;
    return s;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double ppl_base, ppl_base_err, ppl_q, ppl_q_err;
    double ln_ratio, ln_ratio_err, ratio, ratio_err, delta_pct, delta_pct_err, cor;
    double kld_mean, kld_err, kld_p[9]; /* max, 99.9, 99, 90, median, 10, 5, 1, min */
    double dp_mean, dp_err, dp_rms, dp_p[9];
    double same_top, same_top_err;
} summary;

static const double k_fracs[9] = {1.0, 0.999, 0.99, 0.90, 0.5, 0.10, 0.05, 0.01, 0.0};
static const char *k_frac_names[9] = {"max", "99.9%", "99%", "90%", "median", "10%", "5%", "1%", "min"};

static int summarize(const qk_eval_data *d, summary *s)
{
    memset(s, 0, sizeof *s);
    int64_t n = d->n_pos;
    if (d->nll_base) {
        stat2 b = mean_err(d->nll_base, n);
        s->ppl_base = exp(b.mean);
        s->ppl_base_err = s->ppl_base * b.err;
    }
    if (d->nll_q) {
        stat2 q = mean_err(d->nll_q, n);
        s->ppl_q = exp(q.mean);
        s->ppl_q_err = s->ppl_q * q.err;
    }
    if (!d->nll_base || !d->nll_q || !d->kld)
        return 0;
    double *diff = malloc((size_t)n * sizeof *diff);
    float *sorted = malloc((size_t)n * sizeof *sorted);
    if (!diff || !sorted) {
        free(diff);
        free(sorted);
        return qk_error(QK_ENOMEM, "out of memory");
    }
    double sa = 0, sb = 0, sab = 0, saa = 0, sbb = 0;
    for (int64_t i = 0; i < n; i++) {
        diff[i] = d->nll_q[i] - d->nll_base[i];
        sa += d->nll_q[i];
        sb += d->nll_base[i];
    }
    sa /= (double)n;
    sb /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        double x = d->nll_q[i] - sa, y = d->nll_base[i] - sb;
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    s->cor = saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 1;
    stat2 lr = mean_err(diff, n);
    s->ln_ratio = lr.mean;
    s->ln_ratio_err = lr.err;
    s->ratio = exp(lr.mean);
    s->ratio_err = s->ratio * lr.err;
    s->delta_pct = 100.0 * (s->ratio - 1);
    s->delta_pct_err = 100.0 * s->ratio_err;
    for (int64_t i = 0; i < n; i++)
        diff[i] = d->kld[i];
    stat2 k = mean_err(diff, n);
    s->kld_mean = k.mean;
    s->kld_err = k.err;
    memcpy(sorted, d->kld, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_float);
    for (int i = 0; i < 9; i++)
        s->kld_p[i] = qk_percentile(sorted, n, k_fracs[i]);
    double rms = 0;
    for (int64_t i = 0; i < n; i++) {
        diff[i] = d->dp[i];
        rms += (double)d->dp[i] * d->dp[i];
    }
    stat2 p = mean_err(diff, n);
    s->dp_mean = p.mean;
    s->dp_err = p.err;
    s->dp_rms = sqrt(rms / (double)n);
    memcpy(sorted, d->dp, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_float);
    for (int i = 0; i < 9; i++)
        s->dp_p[i] = qk_percentile(sorted, n, k_fracs[i]);
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++)
        same += d->same_top[i];
    s->same_top = (double)same / (double)n;
    s->same_top_err = sqrt(s->same_top * (1 - s->same_top) / (double)n);
    free(diff);
    free(sorted);
    return 0;
}

typedef struct {
    const char *name;
    double value, limit;
    int pass;
} criterion;

/* ------------------------------------------------------------------- main */

static int run(const opts_t *o, int *gate_failed)
{
    qk_model *mb = NULL, *mq = NULL;
    qk_tokenizer *tok = NULL;
    qk_base_results *loaded = NULL, *saved = NULL;
    qk_eval_data *d = NULL;
    char *text = NULL;
    int32_t *ids = NULL, *win = NULL;
    cJSON *j = NULL;
    size_t text_n = 0;
    int64_t n_ids = 0, n_chunks = 0;
    model_info ib = {0}, iq = {0};
    int rc;
    const char *base_path = o->base ? o->base : (o->quant ? NULL : o->model);
    const char *quant_path = o->quant;

    if ((rc = qk_read_file(&text, &text_n, o->text, MAX_TEXT_BYTES)))
        goto done;
    if (text_n == 0) {
        rc = qk_error(QK_EINVAL, "%s: the text is empty", o->text);
        goto done;
    }
    if (o->load_base && (rc = qk_base_results_load(&loaded, o->load_base)))
        goto done;
    if (base_path && (rc = open_model(&mb, base_path, o)))
        goto done;
    if (quant_path && (rc = open_model(&mq, quant_path, o)))
        goto done;
    if (mb && mq && (rc = check_compatible(mb, mq, o)))
        goto done;
    const qk_model *tm = mb ? mb : mq;
    const qk_vocab *v = qk_model_vocab(tm);
    if (!v) {
        rc = qk_error(QK_ENOTFOUND, "%s: no tokenizer; give one with --vocab FILE", qk_model_path(tm));
        goto done;
    }
    if ((rc = qk_tokenizer_new(&tok, v)) || (rc = qk_tokenize_ex(tok, text, text_n, QK_TOKENIZE_ADD_SPECIAL, &ids, &n_ids)))
        goto done;
    if (n_ids < o->eo.n_ctx) {
        rc = qk_error(QK_EINVAL, "%s: %lld tokens are fewer than one window of --ctx %lld", o->text,
                      (long long)n_ids, (long long)o->eo.n_ctx);
        goto done;
    }
    if ((rc = qk_eval_windows(ids, n_ids, o->eo.n_ctx, o->eo.max_chunks, v->bos_id, &win, &n_chunks)))
        goto done;
    uint64_t text_hash = qk_hash64(text, text_n), vhash = vocab_hash(v);
    if (loaded) {
        if (loaded->text_hash != text_hash || loaded->vocab_hash != vhash || loaded->n_ctx != o->eo.n_ctx ||
            loaded->n_chunks != n_chunks || loaded->score_all != o->eo.score_all) {
            rc = qk_error(QK_EINVAL, "%s: saved for another text, vocabulary or protocol (ctx %lld, %lld chunks)",
                          o->load_base, (long long)loaded->n_ctx, (long long)loaded->n_chunks);
            goto done;
        }
    }
    if (mb && (rc = model_info_get(mb, base_path, &ib)))
        goto done;
    if (mq && (rc = model_info_get(mq, quant_path, &iq)))
        goto done;
    if ((rc = qk_eval_run(mb, mq, loaded, win, n_chunks, &o->eo, &d, o->save_base ? &saved : NULL)))
        goto done;
    if (saved) {
        saved->text_hash = text_hash;
        saved->vocab_hash = vhash;
        saved->model_hash = ib.content_hash;
        if ((rc = qk_base_results_save(saved, o->save_base)))
            goto done;
    }
    summary s;
    if ((rc = summarize(d, &s)))
        goto done;
    int compare = d->kld != NULL;

    /* ship gate */
    criterion crit[3];
    int nc = 0;
    if (compare && o->max_ppl_increase >= 0)
        crit[nc++] = (criterion){"max-ppl-increase", s.ratio - 1, o->max_ppl_increase, s.ratio - 1 <= o->max_ppl_increase};
    if (compare && o->max_kld >= 0)
        crit[nc++] = (criterion){"max-kld", s.kld_mean, o->max_kld, s.kld_mean <= o->max_kld};
    if (compare && o->min_same_top >= 0)
        crit[nc++] = (criterion){"min-same-top", s.same_top, o->min_same_top, s.same_top >= o->min_same_top};
    if (!compare && (o->max_ppl_increase >= 0 || o->max_kld >= 0 || o->min_same_top >= 0)) {
        rc = qk_error(QK_EINVAL, "the gate options need a comparison (--base/--load-base and --quant)");
        goto done;
    }
    for (int i = 0; i < nc; i++)
        if (!crit[i].pass)
            *gate_failed = 1;

    int64_t scored = d->n_pos;
    double tps_b = d->seconds_base > 0 ? (double)d->tokens_base / d->seconds_base : 0;
    double tps_q = d->seconds_q > 0 ? (double)d->tokens_q / d->seconds_q : 0;
    /* tokens per CPU second: what the machine's load does not change */
    double tpc_b = d->cpu_seconds_base > 0 ? (double)d->tokens_base / d->cpu_seconds_base : 0;
    double tpc_q = d->cpu_seconds_q > 0 ? (double)d->tokens_q / d->cpu_seconds_q : 0;
    if (!o->quiet && !compare) {
        int qonly = mq != NULL;
        double ppl = qonly ? s.ppl_q : s.ppl_base, err = qonly ? s.ppl_q_err : s.ppl_base_err;
        printf("model: %s\n", qonly ? quant_path : base_path);
        printf("protocol: ctx %lld, %lld windows, %s scored, %lld tokens scored\n", (long long)o->eo.n_ctx,
               (long long)n_chunks, o->eo.score_all ? "all positions" : "second half", (long long)scored);
        printf("PPL = %.4f +/- %.5f\n", ppl, err);
        printf("speed: %.1f tokens/s, %.1f tokens per CPU second\n", qonly ? tps_q : tps_b, qonly ? tpc_q : tpc_b);
    } else if (!o->quiet) {
        char b1[32], b2[32];
        printf("base:  %s\nquant: %s\n", o->base ? o->base : o->load_base, quant_path);
        printf("protocol: ctx %lld, %lld windows, %s, %lld tokens scored%s\n", (long long)o->eo.n_ctx,
               (long long)n_chunks, o->eo.score_all ? "all positions" : "second half scored", (long long)scored,
               d->kld_exact ? "" : " (base from a saved top-k file: KLD is a close lower bound)");
        if (mb)
            printf("size base:  %s (%llu bytes), %.4f bits per weight over the 2-D weights\n",
                   qk_fmt_bytes(ib.file_bytes, b1), (unsigned long long)ib.file_bytes,
                   ib.quant_elems ? 8.0 * (double)ib.quant_bytes / (double)ib.quant_elems : 0.0);
        printf("size quant: %s (%llu bytes), %.4f bits per weight over the 2-D weights", qk_fmt_bytes(iq.file_bytes, b2),
               (unsigned long long)iq.file_bytes, iq.quant_elems ? 8.0 * (double)iq.quant_bytes / (double)iq.quant_elems : 0.0);
        if (mb && iq.file_bytes)
            printf(", %.2fx smaller", (double)ib.file_bytes / (double)iq.file_bytes);
        printf("\n");
        if (mb && iq.source_hash)
            printf("provenance: quant %s made from this base\n", iq.source_hash == ib.content_hash ? "was" : "was NOT");
        printf("\n====== perplexity ======\n");
        printf("PPL(base)          %10.4f +/- %.5f\n", s.ppl_base, s.ppl_base_err);
        printf("PPL(Q)             %10.4f +/- %.5f\n", s.ppl_q, s.ppl_q_err);
        printf("cor(ln PPL)        %9.2f%%\n", 100 * s.cor);
        printf("ln(PPL(Q)/base)    %10.6f +/- %.6f\n", s.ln_ratio, s.ln_ratio_err);
        printf("PPL(Q)/PPL(base)   %10.6f +/- %.6f\n", s.ratio, s.ratio_err);
        printf("delta PPL          %+9.3f%% +/- %.3f%%\n", s.delta_pct, s.delta_pct_err);
        printf("\n====== KL divergence ======\n");
        printf("mean               %10.6f +/- %.6f\n", s.kld_mean, s.kld_err);
        for (int i = 0; i < 9; i++)
            printf("%-18s %10.6f\n", k_frac_names[i], s.kld_p[i]);
        printf("\n====== probability of the correct token: delta p = p(Q) - p(base) ======\n");
        printf("mean               %+9.3f%% +/- %.3f%%\n", 100 * s.dp_mean, 100 * s.dp_err);
        printf("RMS                %9.3f%%\n", 100 * s.dp_rms);
        for (int i = 0; i < 9; i++)
            printf("%-18s %+9.3f%%\n", k_frac_names[i], 100 * s.dp_p[i]);
        printf("\nsame top token     %9.3f%% +/- %.3f%%\n", 100 * s.same_top, 100 * s.same_top_err);
        printf("speed: base %.1f tokens/s (%.1f per CPU second), quant %.1f tokens/s (%.1f per CPU second)\n", tps_b,
               tpc_b, tps_q, tpc_q);
    }
    if (nc) {
        printf("\n====== ship gate ======\n");
        for (int i = 0; i < nc; i++) {
            int pct = strcmp(crit[i].name, "max-kld") != 0;
            printf("%-18s %s: %s%.4f%s vs limit %s%.4f%s\n", crit[i].name, crit[i].pass ? "PASS" : "FAIL",
                   "", pct ? 100 * crit[i].value : crit[i].value, pct ? "%" : "", "",
                   pct ? 100 * crit[i].limit : crit[i].limit, pct ? "%" : "");
        }
        printf("verdict: %s\n", *gate_failed ? "FAIL - do not ship" : "PASS");
    }
    if (o->json) {
        j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "tool", "qk-eval");
        cJSON_AddStringToObject(j, "version", QK_VERSION);
        cJSON *in = cJSON_AddObjectToObject(j, "inputs");
        char hex[17];
        qk_hash_hex(text_hash, hex);
        cJSON_AddStringToObject(in, "text", o->text);
        cJSON_AddStringToObject(in, "text_xxh3", hex);
        if (base_path) {
            cJSON_AddStringToObject(in, "base", base_path);
            qk_hash_hex(ib.content_hash, hex);
            cJSON_AddStringToObject(in, "base_tensors_xxh3", hex);
            cJSON_AddNumberToObject(in, "base_bytes", (double)ib.file_bytes);
            cJSON_AddNumberToObject(in, "base_bpw", ib.quant_elems ? 8.0 * (double)ib.quant_bytes / (double)ib.quant_elems : 0);
        }
        if (o->load_base)
            cJSON_AddStringToObject(in, "load_base", o->load_base);
        if (quant_path) {
            cJSON_AddStringToObject(in, "quant", quant_path);
            qk_hash_hex(iq.content_hash, hex);
            cJSON_AddStringToObject(in, "quant_tensors_xxh3", hex);
            cJSON_AddNumberToObject(in, "quant_bytes", (double)iq.file_bytes);
            cJSON_AddNumberToObject(in, "quant_bpw", iq.quant_elems ? 8.0 * (double)iq.quant_bytes / (double)iq.quant_elems : 0);
            if (mb && iq.file_bytes)
                cJSON_AddNumberToObject(in, "compression_ratio", (double)ib.file_bytes / (double)iq.file_bytes);
            if (mb && iq.source_hash)
                cJSON_AddBoolToObject(in, "quant_made_from_base", iq.source_hash == ib.content_hash);
        }
        cJSON *pr = cJSON_AddObjectToObject(j, "protocol");
        cJSON_AddNumberToObject(pr, "ctx", (double)o->eo.n_ctx);
        cJSON_AddNumberToObject(pr, "chunks", (double)n_chunks);
        cJSON_AddNumberToObject(pr, "tokens_scored", (double)scored);
        cJSON_AddNumberToObject(pr, "text_tokens", (double)n_ids);
        cJSON_AddStringToObject(pr, "scoring", o->eo.score_all ? "all" : "second-half");
        cJSON_AddBoolToObject(pr, "kld_exact", d->kld_exact);
        cJSON_AddBoolToObject(pr, "emulate_llamacpp", o->eo.emulate_llamacpp);
        cJSON *pp = cJSON_AddObjectToObject(j, "perplexity");
        if (d->nll_base) {
            cJSON_AddNumberToObject(pp, "base", s.ppl_base);
            cJSON_AddNumberToObject(pp, "base_err", s.ppl_base_err);
        }
        if (d->nll_q) {
            cJSON_AddNumberToObject(pp, "quant", s.ppl_q);
            cJSON_AddNumberToObject(pp, "quant_err", s.ppl_q_err);
        }
        if (compare) {
            cJSON_AddNumberToObject(pp, "cor_ln", s.cor);
            cJSON_AddNumberToObject(pp, "ln_ratio", s.ln_ratio);
            cJSON_AddNumberToObject(pp, "ln_ratio_err", s.ln_ratio_err);
            cJSON_AddNumberToObject(pp, "ratio", s.ratio);
            cJSON_AddNumberToObject(pp, "ratio_err", s.ratio_err);
            cJSON_AddNumberToObject(pp, "delta_pct", s.delta_pct);
            cJSON_AddNumberToObject(pp, "delta_pct_err", s.delta_pct_err);
            cJSON *kl = cJSON_AddObjectToObject(j, "kld");
            cJSON_AddNumberToObject(kl, "mean", s.kld_mean);
            cJSON_AddNumberToObject(kl, "err", s.kld_err);
            for (int i = 0; i < 9; i++)
                cJSON_AddNumberToObject(kl, k_frac_names[i], s.kld_p[i]);
            cJSON *dp = cJSON_AddObjectToObject(j, "delta_p");
            cJSON_AddNumberToObject(dp, "mean", s.dp_mean);
            cJSON_AddNumberToObject(dp, "err", s.dp_err);
            cJSON_AddNumberToObject(dp, "rms", s.dp_rms);
            for (int i = 0; i < 9; i++)
                cJSON_AddNumberToObject(dp, k_frac_names[i], s.dp_p[i]);
            cJSON_AddNumberToObject(j, "same_top", s.same_top);
            cJSON_AddNumberToObject(j, "same_top_err", s.same_top_err);
        }
        cJSON *sp = cJSON_AddObjectToObject(j, "speed");
        cJSON_AddNumberToObject(sp, "base_tokens_per_s", tps_b);
        cJSON_AddNumberToObject(sp, "quant_tokens_per_s", tps_q);
        cJSON_AddNumberToObject(sp, "base_tokens_per_cpu_s", tpc_b);
        cJSON_AddNumberToObject(sp, "quant_tokens_per_cpu_s", tpc_q);
        if (nc) {
            cJSON *g = cJSON_AddObjectToObject(j, "gate");
            cJSON_AddBoolToObject(g, "pass", !*gate_failed);
            cJSON *ca = cJSON_AddArrayToObject(g, "criteria");
            for (int i = 0; i < nc; i++) {
                cJSON *x = cJSON_CreateObject();
                cJSON_AddStringToObject(x, "name", crit[i].name);
                cJSON_AddNumberToObject(x, "value", crit[i].value);
                cJSON_AddNumberToObject(x, "limit", crit[i].limit);
                cJSON_AddBoolToObject(x, "pass", crit[i].pass);
                cJSON_AddItemToArray(ca, x);
            }
        }
        rc = qk_hf_write_json(o->json, j);
    }
done:
    cJSON_Delete(j);
    qk_eval_data_free(d);
    qk_base_results_free(loaded);
    qk_base_results_free(saved);
    qk_tokenizer_free(tok);
    qk_model_close(mb);
    qk_model_close(mq);
    free(text);
    free(ids);
    free(win);
    return rc;
}

int main(int argc, char **argv)
{
    qk_tool_init("qk-eval");
    opts_t o = {0};
    o.eo.n_ctx = 512;
    o.eo.batch_seqs = 1;
    o.eo.top_k = 64;
    o.max_ppl_increase = o.max_kld = o.min_same_top = -1;
    enum { O_TEXT = 1000, O_CHUNKS, O_SCORE, O_VOCAB, O_JSON, O_SAVE, O_LOAD, O_TOPK, O_MPI, O_MKLD, O_MST,
           O_SHAPE, O_NOVERIFY, O_EMU, O_BASE, O_QUANT, O_PROG, O_VERSION };
    static const struct option lo[] = {
        {"text", required_argument, 0, O_TEXT},      {"ctx", required_argument, 0, 'c'},
        {"chunks", required_argument, 0, O_CHUNKS},  {"batch", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'},      {"score", required_argument, 0, O_SCORE},
        {"vocab", required_argument, 0, O_VOCAB},    {"json", required_argument, 0, O_JSON},
        {"save-base", required_argument, 0, O_SAVE}, {"load-base", required_argument, 0, O_LOAD},
        {"top-k", required_argument, 0, O_TOPK},     {"max-ppl-increase", required_argument, 0, O_MPI},
        {"max-kld", required_argument, 0, O_MKLD},   {"min-same-top", required_argument, 0, O_MST},
        {"allow-shape-mismatch", no_argument, 0, O_SHAPE}, {"no-verify", no_argument, 0, O_NOVERIFY},
        {"emulate-llamacpp", no_argument, 0, O_EMU},
        {"base", required_argument, 0, O_BASE},      {"quant", required_argument, 0, O_QUANT},
        {"quiet", no_argument, 0, 'q'},              {"verbose", no_argument, 0, 'v'},
        {"progress", no_argument, 0, O_PROG},        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VERSION},      {0, 0, 0, 0},
    };
    int c;
    long long v;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:b:t:qvh", lo, NULL)) != -1) {
        switch (c) {
        case O_TEXT: o.text = optarg; break;
        case 'c': if (qk_tool_parse_int("--ctx", optarg, 8, 1 << 20, &v)) return QK_EXIT_USAGE; o.eo.n_ctx = v; break;
        case O_CHUNKS: if (qk_tool_parse_int("--chunks", optarg, 1, 1ll << 40, &v)) return QK_EXIT_USAGE; o.eo.max_chunks = v; break;
        case 'b': if (qk_tool_parse_int("--batch", optarg, 1, 4096, &v)) return QK_EXIT_USAGE; o.eo.batch_seqs = v; break;
        case 't': if (qk_tool_parse_int("--threads", optarg, 1, 1024, &v)) return QK_EXIT_USAGE; o.eo.n_threads = (int)v; break;
        case O_TOPK: if (qk_tool_parse_int("--top-k", optarg, 1, 1024, &v)) return QK_EXIT_USAGE; o.eo.top_k = v; break;
        case O_SCORE:
            if (!strcmp(optarg, "all")) o.eo.score_all = 1;
            else if (!strcmp(optarg, "half")) o.eo.score_all = 0;
            else return qk_tool_usage("--score '%s': expected all or half", optarg);
            break;
        case O_VOCAB: o.vocab = optarg; break;
        case O_JSON: o.json = optarg; break;
        case O_SAVE: o.save_base = optarg; break;
        case O_LOAD: o.load_base = optarg; break;
        case O_MPI:
        case O_MST:
        case O_MKLD: {
            double x;
            int bad = c == O_MKLD ? (qk_parse_percent(optarg, &x) != 0 || strchr(optarg, '%') != NULL)
                                  : qk_parse_percent(optarg, &x) != 0;
            if (bad || x < 0)
                return qk_tool_usage("%s '%s': expected a non-negative %s", c == O_MPI ? "--max-ppl-increase"
                                     : c == O_MST ? "--min-same-top" : "--max-kld", optarg,
                                     c == O_MKLD ? "number" : "percentage (2%) or fraction (0.02)");
            if (c == O_MPI) o.max_ppl_increase = x;
            else if (c == O_MST) o.min_same_top = x;
            else o.max_kld = x;
            break;
        }
        case O_SHAPE: o.allow_shape_mismatch = 1; break;
        case O_NOVERIFY: o.no_verify = 1; break;
        case O_EMU: o.eo.emulate_llamacpp = 1; break;
        case O_BASE: o.base = optarg; break;
        case O_QUANT: o.quant = optarg; break;
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
    if (!o.text)
        return qk_tool_usage("missing --text FILE");
    if (o.model && (o.base || o.quant || o.load_base))
        return qk_tool_usage("give either MODEL, or --base/--load-base with --quant");
    if (!o.model && !o.base && !o.quant)
        return qk_tool_usage("missing MODEL (or --base and --quant)");
    if (o.base && o.load_base)
        return qk_tool_usage("--base and --load-base exclude each other");
    if (o.load_base && !o.quant)
        return qk_tool_usage("--load-base needs --quant");
    if (o.save_base && !o.base && !o.model)
        return qk_tool_usage("--save-base needs --base (or MODEL)");
    if (o.model && o.save_base)
        o.base = o.model, o.model = NULL;
    if (o.max_ppl_increase >= 0 || o.max_kld >= 0 || o.min_same_top >= 0)
        if (!o.quant || !(o.base || o.load_base))
            return qk_tool_usage("the gate options need --quant and --base (or --load-base)");
    if (o.eo.max_chunks > 0 && o.eo.batch_seqs > o.eo.max_chunks)
        o.eo.batch_seqs = o.eo.max_chunks;
    int gate_failed = 0;
    if (run(&o, &gate_failed))
        return qk_tool_fail();
    return gate_failed ? QK_EXIT_GATE : 0;
}

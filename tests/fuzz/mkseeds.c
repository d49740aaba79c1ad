/* mkseeds: small, valid seed files for the fuzz targets, derived from the
 * real files under ../shared/data or synthesized with the library's own
 * writers (tests/fuzz/seeds.sh drives it). Seeds must be small (a few KB)
 * for the fuzzer to mutate them quickly, and valid, so that mutations reach
 * past the first checks.
 *
 *   mkseeds gguf-shrink IN OUT          every KV (arrays cut to 24 elements) and
 *                                       the first 12 tensors cut to <= 2 blocks
 *   mkseeds gguf-tiny TYPE VOCAB OUT    a 1-layer llama, matrices in TYPE, with
 *                                       the first 16 tokens of VOCAB (a GGUF)
 *   mkseeds st-shrink IN OUT            every tensor, each dim cut to <= 2
 *   mkseeds st-split IN OUT             IN's tensors in two shards a/b.safetensors
 *                                       and an index, joined as one fuzz input
 *   mkseeds hf-tiny VOCAB DIR [BITS]    config.json + model.safetensors (F16),
 *                                       or with BITS a GPTQ export of it
 *   mkseeds l2c-tiny OUT [unshared]     a llama2.c checkpoint, dim 8, 1 layer
 *   mkseeds l2c-tok IN N OUT            the first N tokens of a tokenizer.bin
 *   mkseeds spm-shrink IN N OUT         a tokenizer.model keeping N pieces
 *   mkseeds tokjson VOCAB N OUT         tokenizer.json of VOCAB's first N tokens
 *                                       (VOCAB: GGUF or tokenizer.bin)
 *   mkseeds base OUT                    a saved-base file, 8 positions, top-4
 *   mkseeds calib-qkc IN OUT            an imatrix .dat re-saved as .qkc
 *   mkseeds calib-shrink IN OUT         an imatrix .dat cut to 4 entries of <= 8
 *                                       columns, saved in IN's format
 *   mkseeds calib-synth OUT             a .qkc with every optional part: sum_x,
 *                                       absmax, an own and a shared Hessian
 *
 * Exit status 0 on success, 3 when the request does not apply (a type
 * quantkit cannot encode), 1 on errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quantkit/common.h"
#include "quantkit/ggml_types.h"
#include "quantkit/gguf.h"
#include "quantkit/hf.h"
#include "quantkit/metrics.h"
#include "quantkit/model.h"
#include "quantkit/quantize.h"
#include "quantkit/safetensors.h"
#include "quantkit/vocab.h"
#include "vocab_internal.h"

#include "quantkit/calib.h"

/* The separator of multi-file fuzz inputs (FZ_SEP in fz_util.h). */
#define FZ_SEP_TEXT "\n@@QKFILE@@\n"

static int fail(const char *what)
{
    fprintf(stderr, "mkseeds: %s: %s\n", what, qk_errmsg());
    return 1;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* ------------------------------------------------------------- GGUF shrink */

#define SHRINK_ARRAY 24
#define SHRINK_TENSORS 12

static int gguf_shrink(const char *in, const char *out)
{
    qk_gguf *g = NULL;
    qk_gguf_writer *w = NULL;
    qk_afile *f = NULL;
    int rc;
    if ((rc = qk_gguf_open(&g, in)) || (rc = qk_gguf_writer_new(&w, qk_gguf_alignment(g))))
        goto done;
    qk_gguf_writer_set_checksums(w, 0);
    for (int64_t i = 0; i < qk_gguf_n_kv(g) && !rc; i++) {
        qk_gguf_kv kv = *qk_gguf_kv_at(g, i);
        if (kv.type == QK_GGUF_ARRAY && kv.arr_n > SHRINK_ARRAY)
            kv.arr_n = SHRINK_ARRAY; /* a shallow view of the first elements */
        rc = qk_gguf_writer_set_kv(w, &kv);
    }
    int64_t nt = qk_gguf_n_tensors(g) < SHRINK_TENSORS ? qk_gguf_n_tensors(g) : SHRINK_TENSORS;
    for (int64_t i = 0; i < nt && !rc; i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        int64_t bs = qk_type_get(t->type)->block_size, ne[4] = {1, 1, 1, 1};
        ne[0] = t->ne[0] < 2 * bs ? t->ne[0] : 2 * bs;
        rc = qk_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, ne);
    }
    if (rc || (rc = qk_afile_open(&f, out)) || (rc = qk_gguf_writer_begin(w, f)))
        goto done;
    for (int64_t i = 0; i < nt && !rc; i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        size_t n;
        int64_t bs = qk_type_get(t->type)->block_size;
        qk_type_row_bytes(t->type, t->ne[0] < 2 * bs ? t->ne[0] : 2 * bs, &n);
        if (!(rc = qk_gguf_writer_write(w, t->data, n)))
            rc = qk_gguf_writer_end_tensor(w);
    }
    if (!rc && !(rc = qk_gguf_writer_finish(w))) {
        rc = qk_afile_commit(f);
        f = NULL;
    }
done:
    qk_afile_abort(f);
    qk_gguf_writer_free(w);
    qk_gguf_close(g);
    return rc ? fail(in) : 0;
}

/* -------------------------------------------------------- tiny llama model */

/* The first n tokens of the vocabulary in a GGUF or tokenizer.bin. */
static int load_vocab_head(qk_vocab **out, const char *path, int64_t n)
{
    qk_vocab *full = NULL, *v = NULL;
    size_t len = strlen(path);
    int rc;
    if (len > 5 && !strcmp(path + len - 5, ".gguf")) {
        qk_gguf *g = NULL;
        rc = qk_gguf_open(&g, path);
        if (!rc)
            rc = qk_vocab_from_gguf(&full, g);
        qk_gguf_close(g);
    } else {
        rc = qk_vocab_from_llama2c(&full, path, 0);
    }
    if (rc)
        return rc;
    if (n > full->n_tokens)
        n = full->n_tokens;
    if ((rc = qk_vocab_alloc(&v, n, full->model)))
        goto done;
    for (int64_t i = 0; i < n && !rc; i++) {
        rc = qk_vocab_set_token(v, i, full->tokens[i].s, (size_t)full->tokens[i].len);
        v->scores[i] = full->scores[i];
        v->types[i] = full->types[i];
    }
    v->bos_id = full->bos_id < n ? full->bos_id : -1;
    v->eos_id = full->eos_id < n ? full->eos_id : -1;
    v->unk_id = full->unk_id < n ? full->unk_id : -1;
    v->pad_id = full->pad_id < n ? full->pad_id : -1;
    v->add_bos = full->add_bos;
    v->add_eos = full->add_eos;
    v->add_space_prefix = full->add_space_prefix;
    if (full->pre && !(v->pre = strdup(full->pre)))
        rc = QK_ENOMEM;
    qk_vocab_detect_byte_fallback(v);
    if (!rc)
        rc = qk_vocab_build_index(v);
done:
    qk_vocab_free(full);
    if (rc) {
        qk_vocab_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

typedef struct tiny_shape {
    int64_t E, n_head, n_kv, head_dim, n_ff, V;
} tiny_shape;

/* A 1-layer llama GGUF: tensors whose rows are E long in `type`, the others
 * (attn_output, ffn_down: rows of n_head*head_dim / n_ff) F16 unless their
 * row length fits the type, norms F32; values random in [-1, 1]. */
static int gguf_tiny(const char *out, int type, const tiny_shape *s, const qk_vocab *v)
{
    const qk_type_traits *tt = qk_type_get(type);
    qk_gguf_writer *w = NULL;
    qk_afile *f = NULL;
    float *src = NULL;
    uint8_t *dst = NULL;
    int rc;
    const int64_t q = s->n_head * s->head_dim, kv = s->n_kv * s->head_dim;
    struct {
        const char *name;
        int64_t ne0, ne1;
    } ts[] = {
        {"token_embd.weight", s->E, s->V},         {"blk.0.attn_norm.weight", s->E, 1},
        {"blk.0.attn_q.weight", s->E, q},          {"blk.0.attn_k.weight", s->E, kv},
        {"blk.0.attn_v.weight", s->E, kv},         {"blk.0.attn_output.weight", q, s->E},
        {"blk.0.ffn_norm.weight", s->E, 1},        {"blk.0.ffn_gate.weight", s->E, s->n_ff},
        {"blk.0.ffn_up.weight", s->E, s->n_ff},    {"blk.0.ffn_down.weight", s->n_ff, s->E},
        {"output_norm.weight", s->E, 1},           {"output.weight", s->E, s->V},
    };
    const int n_ts = (int)(sizeof ts / sizeof *ts);
    int types[sizeof ts / sizeof *ts];
    if ((rc = qk_gguf_writer_new(&w, 0)))
        goto done;
    if ((rc = qk_gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (rc = qk_gguf_writer_set_str(w, "general.name", "fuzz-seed")) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.context_length", 16)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)s->E)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.block_count", 1)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->n_ff)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)s->n_head)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_kv)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.attention.key_length", (uint32_t)s->head_dim)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.attention.value_length", (uint32_t)s->head_dim)) ||
        (rc = qk_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f)) ||
        (rc = qk_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f)) ||
        (rc = qk_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)s->V)) ||
        (rc = qk_gguf_writer_set_u32(w, "general.file_type", 0)) ||
        (v && (rc = qk_vocab_to_gguf(v, w))))
        goto done;
    for (int i = 0; i < n_ts; i++) {
        int is_norm = ts[i].ne1 == 1;
        types[i] = is_norm ? QK_TYPE_F32 : ts[i].ne0 % tt->block_size == 0 ? type : QK_TYPE_F16;
        int64_t ne[2] = {ts[i].ne0, ts[i].ne1};
        if ((rc = qk_gguf_writer_add_tensor(w, ts[i].name, types[i], is_norm ? 1 : 2, ne)))
            goto done;
    }
    if ((rc = qk_afile_open(&f, out)) || (rc = qk_gguf_writer_begin(w, f)))
        goto done;
    for (int i = 0; i < n_ts; i++) {
        size_t row;
        int64_t n = ts[i].ne0 * ts[i].ne1;
        qk_type_row_bytes(types[i], ts[i].ne0, &row);
        free(src);
        free(dst);
        src = malloc((size_t)n * sizeof *src);
        dst = malloc(row * (size_t)ts[i].ne1);
        if (!src || !dst) {
            rc = qk_error(QK_ENOMEM, "out of memory");
            goto done;
        }
        for (int64_t k = 0; k < n; k++)
            src[k] = ts[i].ne1 == 1 ? 1.0f + 0.1f * frand() : frand();
        if ((rc = qk_quantize_rows(types[i], src, dst, ts[i].ne1, ts[i].ne0, NULL, NULL)) ||
            (rc = qk_gguf_writer_write(w, dst, row * (size_t)ts[i].ne1)) || (rc = qk_gguf_writer_end_tensor(w)))
            goto done;
    }
    if (!(rc = qk_gguf_writer_finish(w))) {
        rc = qk_afile_commit(f);
        f = NULL;
    }
done:
    free(src);
    free(dst);
    qk_afile_abort(f);
    qk_gguf_writer_free(w);
    return rc;
}

/* --------------------------------------------------------- safetensors */

static int st_shrink(const char *in, const char *out)
{
    qk_safetensors *st = NULL;
    qk_st_writer *w = NULL;
    qk_afile *f = NULL;
    int rc;
    if ((rc = qk_safetensors_open(&st, in)) || (rc = qk_st_writer_new(&w)))
        goto done;
    for (int64_t i = 0; i < qk_safetensors_n_meta(st) && !rc; i++)
        rc = qk_st_writer_add_meta(w, qk_safetensors_meta_key(st, i), qk_safetensors_meta_value(st, i));
    for (int64_t i = 0; i < qk_safetensors_n_tensors(st) && !rc; i++) {
        const qk_st_tensor *t = qk_safetensors_tensor_at(st, i);
        int64_t shape[QK_ST_MAX_DIMS];
        for (int d = 0; d < t->n_dims; d++)
            shape[d] = t->shape[d] < 2 ? t->shape[d] : 2;
        rc = qk_st_writer_add_tensor(w, t->name, t->dtype, t->n_dims, shape);
    }
    if (rc || (rc = qk_afile_open(&f, out)) || (rc = qk_st_writer_begin(w, f)))
        goto done;
    for (int64_t i = 0; i < qk_safetensors_n_tensors(st) && !rc; i++) {
        const qk_st_tensor *t = qk_safetensors_tensor_at(st, i);
        uint64_t n = qk_st_dtype_size(t->dtype);
        for (int d = 0; d < t->n_dims; d++)
            n *= (uint64_t)(t->shape[d] < 2 ? t->shape[d] : 2);
        rc = qk_st_writer_write(w, t->data, (size_t)n);
    }
    if (!rc && !(rc = qk_st_writer_finish(w))) {
        rc = qk_afile_commit(f);
        f = NULL;
    }
done:
    qk_afile_abort(f);
    qk_st_writer_free(w);
    qk_safetensors_close(st);
    return rc ? fail(in) : 0;
}

/* Write tensors [from, to) of st (shapes cut as st_shrink does) to path. */
static int st_write_range(const qk_safetensors *st, int64_t from, int64_t to, const char *path)
{
    qk_st_writer *w = NULL;
    qk_afile *f = NULL;
    int rc = qk_st_writer_new(&w);
    for (int64_t i = from; i < to && !rc; i++) {
        const qk_st_tensor *t = qk_safetensors_tensor_at(st, i);
        rc = qk_st_writer_add_tensor(w, t->name, t->dtype, t->n_dims, t->shape);
    }
    if (!rc && !(rc = qk_afile_open(&f, path)))
        rc = qk_st_writer_begin(w, f);
    for (int64_t i = from; i < to && !rc; i++) {
        const qk_st_tensor *t = qk_safetensors_tensor_at(st, i);
        rc = qk_st_writer_write(w, t->data, (size_t)t->nbytes);
    }
    if (!rc && !(rc = qk_st_writer_finish(w))) {
        rc = qk_afile_commit(f);
        f = NULL;
    }
    qk_afile_abort(f);
    qk_st_writer_free(w);
    return rc;
}

static int append_file(FILE *out, const char *path)
{
    char *b = NULL;
    size_t n = 0;
    if (qk_read_file(&b, &n, path, (size_t)1 << 26))
        return 1;
    int rc = fwrite(b, 1, n, out) != n;
    free(b);
    return rc;
}

/* IN (already small) split into shards a and b behind an index; the fuzz
 * input is index FZ_SEP a FZ_SEP b (see fz_util.h). */
static int st_split(const char *in, const char *out)
{
    qk_safetensors *st = NULL;
    char tmp[4096], pa[4200], pb[4200], pi[4200];
    const char **names = NULL, **shard = NULL;
    snprintf(tmp, sizeof tmp, "%s.d", out);
    mkdir(tmp, 0755);
    snprintf(pa, sizeof pa, "%s/a.safetensors", tmp);
    snprintf(pb, sizeof pb, "%s/b.safetensors", tmp);
    snprintf(pi, sizeof pi, "%s/model.safetensors.index.json", tmp);
    int rc = qk_safetensors_open(&st, in);
    int64_t n = rc ? 0 : qk_safetensors_n_tensors(st), half = n / 2;
    names = calloc((size_t)n + 1, sizeof *names);
    shard = calloc((size_t)n + 1, sizeof *shard);
    if (!rc && (!names || !shard))
        rc = QK_ENOMEM;
    for (int64_t i = 0; i < n && !rc; i++) {
        names[i] = qk_safetensors_tensor_at(st, i)->name;
        shard[i] = i < half ? "a.safetensors" : "b.safetensors";
    }
    if (!rc && !(rc = st_write_range(st, 0, half, pa)) && !(rc = st_write_range(st, half, n, pb)))
        rc = qk_st_write_index(pi, 0, names, shard, n);
    if (!rc) {
        FILE *f = fopen(out, "wb");
        rc = !f || append_file(f, pi) || fwrite(FZ_SEP_TEXT, 1, sizeof FZ_SEP_TEXT - 1, f) != sizeof FZ_SEP_TEXT - 1 ||
             append_file(f, pa) || fwrite(FZ_SEP_TEXT, 1, sizeof FZ_SEP_TEXT - 1, f) != sizeof FZ_SEP_TEXT - 1 ||
             append_file(f, pb);
        if (f && fclose(f))
            rc = 1;
    }
    remove(pa);
    remove(pb);
    remove(pi);
    rmdir(tmp);
    free(names);
    free(shard);
    qk_safetensors_close(st);
    return rc ? fail(in) : 0;
}

/* A Hugging Face directory of the tiny model: config.json + F16
 * model.safetensors, or (bits > 0) quantkit's GPTQ export of it. */
static int hf_tiny(const char *vocab_path, const char *dir, int bits)
{
    tiny_shape s = {32, 4, 2, 8, 32, 16};
    qk_vocab *v = NULL;
    qk_model *m = NULL;
    qk_st_writer *w = NULL;
    qk_afile *f = NULL;
    char *gguf = qk_path_join(dir, "tiny.gguf.tmp"), *stp = qk_path_join(dir, "model.safetensors");
    float *row = NULL;
    uint16_t *h = NULL;
    int rc;
    mkdir(dir, 0755);
    if ((rc = load_vocab_head(&v, vocab_path, s.V)) || (rc = gguf_tiny(gguf, QK_TYPE_F32, &s, v)))
        goto done;
    qk_model_opts o = {.no_vocab = 1};
    if ((rc = qk_model_open(&m, gguf, &o)))
        goto done;
    if (bits) {
        char *out = qk_path_join(dir, "gptq");
        qk_gptq_export_params p = {.bits = bits, .group_size = 32, .sym = 0, .force = 1, .source = gguf};
        qk_gptq_export_stats stats;
        rc = qk_gptq_export(m, out, &p, NULL, &stats);
        free(out);
        goto done;
    }
    if ((rc = qk_hf_write_config(dir, qk_model_cfg(m), v, QK_TYPE_F16, NULL)) || (rc = qk_st_writer_new(&w)))
        goto done;
    for (int64_t i = 0; i < qk_model_n_tensors(m) && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        char buf[128];
        const char *hf = qk_hf_tensor_name(t->name, buf, sizeof buf);
        int64_t shape[2] = {t->n_dims > 1 ? t->ne[1] : t->ne[0], t->ne[0]};
        if (hf)
            rc = qk_st_writer_add_tensor(w, hf, QK_ST_F16, t->n_dims, shape);
    }
    if (rc || (rc = qk_afile_open(&f, stp)) || (rc = qk_st_writer_begin(w, f)))
        goto done;
    for (int64_t i = 0; i < qk_model_n_tensors(m) && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        char buf[128];
        if (!qk_hf_tensor_name(t->name, buf, sizeof buf))
            continue;
        int64_t n = qk_model_tensor_nelem(t);
        free(row);
        free(h);
        row = malloc((size_t)n * sizeof *row);
        h = malloc((size_t)n * sizeof *h);
        if (!row || !h) {
            rc = qk_error(QK_ENOMEM, "out of memory");
            goto done;
        }
        if ((rc = qk_model_rows_f32(m, t, 0, qk_model_tensor_rows(t), row)))
            goto done;
        qk_f32_to_fp16_row(row, h, n);
        rc = qk_st_writer_write(w, h, (size_t)n * 2);
    }
    if (!rc && !(rc = qk_st_writer_finish(w))) {
        rc = qk_afile_commit(f);
        f = NULL;
    }
done:
    qk_afile_abort(f);
    qk_st_writer_free(w);
    qk_model_close(m);
    qk_vocab_free(v);
    if (gguf)
        remove(gguf);
    free(gguf);
    free(stp);
    free(row);
    free(h);
    return rc ? fail(dir) : 0;
}

/* ------------------------------------------------------------- llama2.c */

static int write_all(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n) {
        if (f)
            fclose(f);
        fprintf(stderr, "mkseeds: cannot write %s\n", path);
        return 1;
    }
    return fclose(f) ? 1 : 0;
}

static int l2c_tiny(const char *out, int unshared)
{
    const int32_t D = 8, F = 4, L = 1, H = 2, KV = 1, V = 16, S = 4;
    const int32_t hd = D / H, kvd = hd * KV;
    uint64_t n = (uint64_t)V * D + L * D + L * D * D + 2ull * L * kvd * D + L * D * D + L * D + 3ull * L * F * D + D +
                 2ull * S * (hd / 2) + (unshared ? (uint64_t)V * D : 0);
    uint8_t *b = malloc(28 + n * 4);
    if (!b)
        return 1;
    int32_t h[7] = {D, F, L, H, KV, unshared ? -V : V, S};
    for (int i = 0; i < 7; i++)
        qk_wr_u32(b + 4 * i, (uint32_t)h[i]);
    for (uint64_t i = 0; i < n; i++) {
        float x = frand();
        uint32_t u;
        memcpy(&u, &x, 4);
        qk_wr_u32(b + 28 + 4 * i, u);
    }
    int rc = write_all(out, b, 28 + n * 4);
    free(b);
    return rc;
}

static int l2c_tok(const char *in, int64_t n, const char *out)
{
    qk_mmap *m = NULL;
    if (qk_mmap_open(&m, in))
        return fail(in);
    uint64_t off = 4;
    for (int64_t i = 0; i < n && off + 8 <= m->size; i++)
        off += 8 + qk_rd_u32(m->data + off + 4);
    int rc = write_all(out, m->data, off <= m->size ? (size_t)off : (size_t)m->size);
    qk_mmap_close(m);
    return rc;
}

/* ---------------------------------------------------------- SentencePiece */

static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int i = 0; i < 10 && *p < end; i++) {
        uint8_t c = *(*p)++;
        *v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80))
            return 0;
    }
    return -1;
}

/* Copy the top-level fields of a ModelProto, keeping only the first n pieces. */
static int spm_shrink(const char *in, int64_t n, const char *out)
{
    qk_mmap *m = NULL;
    if (qk_mmap_open(&m, in))
        return fail(in);
    uint8_t *o = malloc(m->size);
    size_t on = 0;
    const uint8_t *p = m->data, *end = m->data + m->size;
    int64_t pieces = 0;
    int rc = o ? 0 : 1;
    while (!rc && p < end) {
        const uint8_t *start = p;
        uint64_t key, len = 0;
        if (pb_varint(&p, end, &key)) {
            rc = 1;
            break;
        }
        switch (key & 7) {
        case 0: rc = pb_varint(&p, end, &len) ? 1 : 0; len = 0; break;
        case 1: len = 8; break;
        case 5: len = 4; break;
        case 2: rc = pb_varint(&p, end, &len) ? 1 : 0; break;
        default: rc = 1;
        }
        if (rc || len > (uint64_t)(end - p)) {
            rc = 1;
            break;
        }
        p += len;
        if ((key >> 3) == 1 && pieces++ >= n)
            continue;
        memcpy(o + on, start, (size_t)(p - start));
        on += (size_t)(p - start);
    }
    if (!rc)
        rc = write_all(out, o, on);
    else
        fprintf(stderr, "mkseeds: %s: not a protobuf file\n", in);
    free(o);
    qk_mmap_close(m);
    return rc;
}

/* ------------------------------------------------------- tokenizer.json */

static int tokjson(const char *vocab_path, int64_t n, const char *out)
{
    qk_vocab *v = NULL;
    int rc = load_vocab_head(&v, vocab_path, n);
    if (!rc)
        rc = qk_vocab_write_tokenizer_json(v, out);
    qk_vocab_free(v);
    return rc ? fail(out) : 0;
}

/* ------------------------------------------------------------ saved base */

static int base(const char *out)
{
    enum { NP = 8, K = 4 };
    float lp[NP], lps[NP * K];
    int32_t top1[NP], ids[NP * K];
    for (int i = 0; i < NP; i++) {
        lp[i] = -1.0f - (float)i * 0.25f;
        top1[i] = i % 16;
        for (int k = 0; k < K; k++) {
            ids[i * K + k] = (i + k) % 16;
            lps[i * K + k] = -0.5f - (float)k;
        }
    }
    qk_base_results b = {.n_pos = NP, .k = K, .n_vocab = 16, .n_ctx = 4, .n_chunks = 2, .score_all = 0,
                         .text_hash = 1, .vocab_hash = 2, .model_hash = 3,
                         .lp_correct = lp, .top1 = top1, .ids = ids, .lps = lps};
    return qk_base_results_save(&b, out) ? fail(out) : 0;
}

/* -------------------------------------------------------------- imatrix */

static int calib_qkc(const char *in, const char *out)
{
    qk_calib *c = NULL;
    int rc = qk_calib_load(&c, in);
    if (!rc)
        rc = qk_calib_save_qkc(c, out);
    qk_calib_free(c);
    return rc ? fail(out) : 0;
}

static int calib_shrink(const char *in, const char *out)
{
    qk_calib *c = NULL;
    int rc = qk_calib_load(&c, in);
    if (rc)
        return fail(in);
    for (int64_t i = 4; i < c->n; i++) {
        qk_calib_entry *e = &c->e[i];
        free(e->name), free(e->sum_x2), free(e->sum_x), free(e->absmax), free(e->xtx);
    }
    if (c->n > 4)
        c->n = 4;
    for (int64_t i = 0; i < c->n; i++)
        if (c->e[i].n_in > 8 && c->e[i].hessian_of < 0)
            c->e[i].n_in = 8; /* the vectors keep their tails, unused */
    size_t n = strlen(out);
    rc = n > 4 && !strcmp(out + n - 4, ".qkc") ? qk_calib_save_qkc(c, out) : qk_calib_save_dat(c, out);
    qk_calib_free(c);
    return rc ? fail(out) : 0;
}

static int calib_synth(const char *out)
{
    enum { N = 3, NIN = 4 };
    static const char *const names[N] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_down.weight"};
    qk_calib *c = NULL;
    int rc = qk_calib_new(&c);
    if (rc)
        return fail(out);
    c->e = calloc(N, sizeof *c->e);
    c->n = c->e ? N : 0;
    c->model_hash = 0x1234, c->text_hash = 0x5678, c->n_ctx = 16, c->n_chunks = 2;
    c->dataset = strdup("calib.txt");
    for (int i = 0; i < c->n && !rc; i++) {
        qk_calib_entry *e = &c->e[i];
        e->name = strdup(names[i]);
        e->n_in = NIN, e->n_tokens = 32, e->n_calls = 2;
        e->hessian_of = i < 2 ? 0 : -1;
        e->sum_x2 = calloc(NIN, sizeof(double));
        e->sum_x = calloc(NIN, sizeof(double));
        e->absmax = calloc(NIN, sizeof(double));
        if (i == 0)
            e->xtx = calloc(NIN * NIN, sizeof(double));
        if (!e->name || !e->sum_x2 || !e->sum_x || !e->absmax || (i == 0 && !e->xtx)) {
            rc = QK_ENOMEM;
            break;
        }
        for (int j = 0; j < NIN; j++) {
            e->sum_x2[j] = 1.0 + j + i;
            e->sum_x[j] = 0.5 * j - i;
            e->absmax[j] = 2.0 + j;
            for (int k = 0; e->xtx && k < NIN; k++)
                e->xtx[j * NIN + k] = (j == k ? 4.0 : 0.25) + 0.125 * (j + k);
        }
    }
    if (!rc)
        rc = qk_calib_save_qkc(c, out);
    qk_calib_free(c);
    return rc ? fail(out) : 0;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";
    if (!strcmp(cmd, "gguf-shrink") && argc == 4)
        return gguf_shrink(argv[2], argv[3]);
    if (!strcmp(cmd, "gguf-tiny") && argc == 5) {
        int type = qk_type_from_name(argv[2]);
        const qk_type_traits *tt = qk_type_get(type);
        if (!tt || !tt->to_float || !tt->from_float_ref)
            return 3;
        int64_t E = tt->block_size > 32 ? tt->block_size : 32;
        tiny_shape s = {E, 1, 1, 2, 2, 16};
        qk_vocab *v = NULL;
        if (load_vocab_head(&v, argv[3], s.V))
            return fail(argv[3]);
        int rc = gguf_tiny(argv[4], type, &s, v);
        qk_vocab_free(v);
        return rc ? fail(argv[4]) : 0;
    }
    if (!strcmp(cmd, "st-shrink") && argc == 4)
        return st_shrink(argv[2], argv[3]);
    if (!strcmp(cmd, "st-split") && argc == 4)
        return st_split(argv[2], argv[3]);
    if (!strcmp(cmd, "hf-tiny") && (argc == 4 || argc == 5))
        return hf_tiny(argv[2], argv[3], argc == 5 ? atoi(argv[4]) : 0);
    if (!strcmp(cmd, "l2c-tiny") && (argc == 3 || argc == 4))
        return l2c_tiny(argv[2], argc == 4);
    if (!strcmp(cmd, "l2c-tok") && argc == 5)
        return l2c_tok(argv[2], atoll(argv[3]), argv[4]);
    if (!strcmp(cmd, "spm-shrink") && argc == 5)
        return spm_shrink(argv[2], atoll(argv[3]), argv[4]);
    if (!strcmp(cmd, "tokjson") && argc == 5)
        return tokjson(argv[2], atoll(argv[3]), argv[4]);
    if (!strcmp(cmd, "base") && argc == 3)
        return base(argv[2]);
    if (!strcmp(cmd, "calib-shrink") && argc == 4)
        return calib_shrink(argv[2], argv[3]);
    if (!strcmp(cmd, "calib-synth") && argc == 3)
        return calib_synth(argv[2]);
    if (!strcmp(cmd, "calib-qkc") && argc == 4)
        return calib_qkc(argv[2], argv[3]);
    fprintf(stderr, "usage: see the comment at the top of tests/fuzz/mkseeds.c\n");
    return 2;
}

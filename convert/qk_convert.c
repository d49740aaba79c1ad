/* qk-convert: any supported checkpoint -> GGUF (F32/F16/BF16) or a Hugging
 * Face directory (config.json + model.safetensors + tokenizer.json).
 * Tensors stream one at a time from the mapped input to the atomic output. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quantkit/common.h"
#include "quantkit/gguf.h"
#include "quantkit/hf.h"
#include "quantkit/model.h"
#include "quantkit/safetensors.h"
#include "quantkit/tool.h"

#define ROWS_PER_CHUNK_BYTES (4u << 20)

typedef struct {
    const char *input, *output, *vocab;
    int outtype;   /* qk_type or -1 = keep the source's float type */
    int to_st;     /* write a Hugging Face directory */
    long long pad_ffn;
    int allow_nonfinite;
    int force;
    int quiet;
    int no_verify; /* skip a quantkit input's checksums */
} opts_t;

static void usage(void)
{
    printf("Usage: qk-convert INPUT -o OUTPUT [options]\n"
           "\n"
           "Convert a checkpoint to GGUF (F32/F16/BF16, loadable by llama.cpp) or to a\n"
           "Hugging Face directory. INPUT: a Hugging Face directory (config.json +\n"
           "safetensors + tokenizer), a .safetensors file with config.json beside it, a\n"
           "GGUF, or a llama2.c .bin (tokenizer via --vocab or tokenizer.bin beside it).\n"
           "\n"
           "Options:\n"
           "  -o, --output PATH        output .gguf file, or directory with --to safetensors\n"
           "      --outtype TYPE       f32 | f16 | bf16 for matrices (default: keep the source's\n"
           "                           float type; quantized sources become f32). Norms stay F32.\n"
           "      --to FORMAT          gguf (default) | safetensors\n"
           "      --vocab FILE         tokenizer: tokenizer.bin, tokenizer.json, tokenizer.model or .gguf\n"
           "      --pad-ffn N          zero-pad the FFN hidden size to a multiple of N (exactly\n"
           "                           equivalent model; e.g. 172 -> 192 with N=32)\n"
           "      --allow-nonfinite    copy NaN/Inf weights instead of refusing them\n"
           "      --force              replace an existing output directory (--to safetensors)\n"
           "      --no-verify          skip checking a quantkit GGUF input's checksums (quantkit.tensor_xxh3)\n"
           "  -q, --quiet              no summary on stdout\n"
           "      --progress           show progress even when stderr is not a terminal\n"
           "  -h, --help               this help\n"
           "      --version            version\n"
           "\n"
           "Every tensor's XXH3-64 checksum is stored in the GGUF key quantkit.tensor_xxh3.\n"
           "Exit status: 0 ok, 1 error (no output is left behind), 2 bad usage.\n");
}

/* Type of a tensor in the output. */
static int out_type(const opts_t *o, const qk_model_tensor *t)
{
    const qk_type_traits *tr = qk_type_get(t->type);
    if (t->n_dims == 1)
        return QK_TYPE_F32;
    if (o->outtype >= 0)
        return o->outtype;
    return tr && tr->is_float && t->type != QK_TYPE_F64 ? t->type : QK_TYPE_F32;
}

static int check_finite(const opts_t *o, const qk_model_tensor *t, const float *x, int64_t n, int64_t first)
{
    if (o->allow_nonfinite)
        return 0;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return qk_error(QK_ENONFINITE,
                            "%s: tensor '%s' element %lld is %s (use --allow-nonfinite to copy it anyway)", o->input,
                            t->name, (long long)(first + i), isnan(x[i]) ? "NaN" : "Inf");
    return 0;
}

/* Magnitude from which narrowing a float to `type` (round to nearest even)
 * gives Inf: F16 65520 (= 65504 + half an ULP), BF16 bits 0x7f7f8000; F32
 * none (Inf, so the test below is just "finite"). */
static float overflow_limit(int type)
{
    uint32_t u = 0x7f7f8000u;
    float bf16_lim;
    memcpy(&bf16_lim, &u, 4);
    return type == QK_TYPE_F16 ? 65520.0f : type == QK_TYPE_BF16 ? bf16_lim : INFINITY;
}

/* 1 when every |x[i]| < lim (NaN compares false). Eight lanes, no early
 * exit, so the compiler vectorizes it; a failing row is re-scanned for the
 * message. */
static int all_below(const float *x, int64_t n, float lim)
{
    int bad[8] = {0}, b = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            bad[k] |= !(fabsf(x[i + k]) < lim);
    for (; i < n; i++)
        b |= !(fabsf(x[i]) < lim);
    for (int k = 0; k < 8; k++)
        b |= bad[k];
    return !b;
}

/* Stream one tensor: rows in canonical order (or HF order when hf_rows),
 * converted to `type`, through emit(). */
typedef int (*emit_fn)(void *ctx, const void *data, size_t n);

static int stream_tensor(const opts_t *o, const qk_model *m, const qk_model_tensor *t, int type, int64_t hf_heads,
                         emit_fn emit, void *ctx, qk_progress *prog)
{
    const qk_type_traits *otr = qk_type_get(type);
    int64_t ne0 = t->ne[0], rows = qk_model_tensor_rows(t);
    size_t out_row;
    int rc = qk_type_row_bytes(type, ne0, &out_row);
    if (rc)
        return rc;
    int64_t chunk = (int64_t)(ROWS_PER_CHUNK_BYTES / (out_row ? out_row : 1));
    if (chunk < 1)
        chunk = 1;
    if (chunk > rows)
        chunk = rows;
    uint8_t *obuf = malloc((size_t)chunk * out_row);
    float *fbuf = malloc((size_t)ne0 * sizeof(float));
    if (!obuf || !fbuf) {
        free(obuf);
        free(fbuf);
        return qk_error(QK_ENOMEM, "out of memory converting '%s'", t->name);
    }
    int raw = type == t->type && t->src_ne0 == ne0 && !qk_type_get(type)->is_quantized;
    float lim = otr->is_quantized ? INFINITY : overflow_limit(type);
    for (int64_t r0 = 0; r0 < rows && !rc; r0 += chunk) {
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        for (int64_t i = 0; i < n && !rc; i++) {
            int64_t r = r0 + i;
            if (hf_heads > 0)
                r = qk_rope_unperm_row(r, t->ne[1], hf_heads);
            uint8_t *dst = obuf + (size_t)i * out_row;
            const uint8_t *src = raw ? qk_model_row_raw(t, r) : NULL;
            if (src && type == QK_TYPE_F32 && !o->allow_nonfinite) {
                memcpy(fbuf, src, out_row);
                rc = check_finite(o, t, fbuf, ne0, r * ne0);
                memcpy(dst, src, out_row);
            } else if (src) {
                memcpy(dst, src, out_row);
                if (!o->allow_nonfinite) {
                    qk_type_get(type)->to_float(src, fbuf, ne0);
                    rc = check_finite(o, t, fbuf, ne0, r * ne0);
                }
            } else {
                /* one range test on the input covers NaN, Inf and overflow
                 * on narrowing; details only for a row that fails it */
                rc = qk_model_row_f32(m, t, r, fbuf);
                if (!rc && !o->allow_nonfinite && !all_below(fbuf, ne0, lim)) {
                    rc = check_finite(o, t, fbuf, ne0, r * ne0);
                    for (int64_t k = 0; k < ne0 && !rc; k++)
                        if (!(fabsf(fbuf[k]) < lim))
                            rc = qk_error(QK_ENONFINITE, "%s: tensor '%s' element %lld overflows %s", o->input,
                                          t->name, (long long)(r * ne0 + k), otr->name);
                }
                if (!rc)
                    otr->from_float_ref(fbuf, dst, ne0, NULL);
            }
        }
        if (!rc)
            rc = emit(ctx, obuf, (size_t)n * out_row);
        qk_progress_add(prog, (uint64_t)n * out_row);
        /* rows read in order: release them now, so at most one chunk of the
         * input is resident (permuted q/k rows wait for the tensor's end) */
        if (!rc && hf_heads == 0 && t->perm_heads == 0 && t->map && r0 < t->src_rows) {
            int64_t e = r0 + n < t->src_rows ? r0 + n : t->src_rows;
            qk_mmap_release(t->map, (uint64_t)(t->data - t->map->data) + (uint64_t)r0 * t->src_row_bytes,
                            (uint64_t)(e - r0) * t->src_row_bytes);
        }
    }
    free(obuf);
    free(fbuf);
    qk_model_release(t);
    return rc;
}

static int emit_gguf(void *ctx, const void *d, size_t n) { return qk_gguf_writer_write(ctx, d, n); }
static int emit_st(void *ctx, const void *d, size_t n) { return qk_st_writer_write(ctx, d, n); }

static int file_type_of(int type)
{
    switch (type) {
    case QK_TYPE_F32: return 0;
    case QK_TYPE_F16: return 1;
    case QK_TYPE_BF16: return 32;
    default: return 0;
    }
}

static int write_gguf(const opts_t *o, const qk_model *m, uint64_t *out_bytes)
{
    const qk_model_config *c = qk_model_cfg(m);
    qk_gguf_writer *w = NULL;
    qk_afile *f = NULL;
    qk_progress *prog = NULL;
    int rc = qk_gguf_writer_new(&w, 0);
    if (rc)
        goto done;
    /* carry every key of a GGUF source (unknown ones included), then ours */
    const qk_gguf *src = qk_model_gguf(m);
    for (int64_t i = 0; src && i < qk_gguf_n_kv(src) && !rc; i++) {
        const qk_gguf_kv *kv = qk_gguf_kv_at(src, i);
        if (strncmp(kv->key.s, "quantkit.", 9) && strcmp(kv->key.s, "general.alignment"))
            rc = qk_gguf_writer_set_kv(w, kv);
    }
    int main_type = QK_TYPE_F32;
    uint64_t total = 0;
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        if (t->n_dims > 1)
            main_type = out_type(o, t);
    }
    if (!rc && !(src && qk_gguf_find_kv(src, "general.name"))) {
        const char *base = strrchr(o->input, '/');
        rc = qk_gguf_writer_set_str(w, "general.name", base && base[1] ? base + 1 : o->input);
    }
    if (!rc)
        rc = qk_model_cfg_to_gguf(c, w);
    if (!rc)
        rc = qk_gguf_writer_set_u32(w, "general.file_type", (uint32_t)file_type_of(main_type));
    if (!rc && src)
        qk_gguf_writer_remove_kv(w, "general.quantization_version");
    if (!rc && qk_model_vocab(m))
        rc = qk_vocab_to_gguf(qk_model_vocab(m), w);
    if (!rc)
        rc = qk_gguf_writer_set_str(w, "quantkit.version", QK_VERSION);
    if (!rc)
        rc = qk_gguf_writer_set_str(w, "quantkit.converted_from", o->input);
    for (int64_t i = 0; i < qk_model_n_tensors(m) && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        int type = out_type(o, t);
        rc = qk_gguf_writer_add_tensor(w, t->name, type, t->n_dims, t->ne);
        uint64_t b = 0;
        if (!rc)
            rc = qk_type_tensor_bytes(type, t->ne, t->n_dims, &b);
        total += b;
    }
    if (rc || (rc = qk_afile_open(&f, o->output)) || (rc = qk_gguf_writer_begin(w, f)))
        goto done;
    prog = qk_progress_start("converting", total, "B");
    for (int64_t i = 0; i < qk_model_n_tensors(m) && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        rc = stream_tensor(o, m, t, out_type(o, t), 0, emit_gguf, w, prog);
        if (!rc)
            rc = qk_gguf_writer_end_tensor(w);
    }
    if (!rc)
        rc = qk_gguf_writer_finish(w);
    if (!rc) {
        *out_bytes = qk_afile_tell(f);
        rc = qk_afile_commit(f);
        f = NULL;
    }
done:
    if (prog)
        qk_progress_finish(prog);
    qk_afile_abort(f);
    qk_gguf_writer_free(w);
    return rc;
}

static int write_hf_dir(const opts_t *o, const qk_model *m, uint64_t *out_bytes)
{
    qk_adir *d = NULL;
    qk_st_writer *w = NULL;
    qk_afile *f = NULL;
    char *st_path = NULL;
    qk_progress *prog = NULL;
    int rc = qk_adir_open(&d, o->output, o->force);
    if (rc)
        return rc;
    const char *tmp = qk_adir_tmp_path(d);
    int main_type = QK_TYPE_F32;
    uint64_t total = 0;
    if ((rc = qk_st_writer_new(&w)) || (rc = qk_st_writer_add_meta(w, "format", "pt")))
        goto done;
    for (int64_t i = 0; i < qk_model_n_tensors(m) && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        int type = out_type(o, t);
        if (t->n_dims > 1)
            main_type = type;
        if (t->n_dims == 1 && o->outtype >= 0)
            type = o->outtype; /* HF checkpoints keep norms in the model dtype */
        char buf[128];
        const char *name = qk_hf_tensor_name(t->name, buf, sizeof buf);
        int64_t shape[2] = {t->n_dims > 1 ? t->ne[1] : t->ne[0], t->ne[0]};
        if (!name) {
            rc = qk_error(QK_EUNSUPPORTED, "no Hugging Face name for tensor '%s'", t->name);
            break;
        }
        rc = qk_st_writer_add_tensor(w, name, qk_st_dtype_from_type(type), t->n_dims, shape);
        uint64_t b = 0;
        if (!rc)
            rc = qk_type_tensor_bytes(type, t->ne, t->n_dims, &b);
        total += b;
    }
    if (rc || !(st_path = qk_path_join(tmp, "model.safetensors")) || (rc = qk_afile_open(&f, st_path)) ||
        (rc = qk_st_writer_begin(w, f)))
        goto done;
    prog = qk_progress_start("converting", total, "B");
    for (int64_t i = 0; i < qk_model_n_tensors(m) && !rc; i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        int type = out_type(o, t);
        if (t->n_dims == 1 && o->outtype >= 0)
            type = o->outtype;
        /* Hugging Face stores q/k rows in rotate-half order */
        rc = stream_tensor(o, m, t, type, qk_hf_perm_heads(qk_model_cfg(m), t->name), emit_st, w, prog);
    }
    if (!rc)
        rc = qk_st_writer_finish(w);
    if (!rc) {
        *out_bytes = qk_afile_tell(f);
        rc = qk_afile_commit(f);
        f = NULL;
    }
    if (!rc)
        rc = qk_hf_write_config(tmp, qk_model_cfg(m), qk_model_vocab(m), main_type, NULL);
    if (!rc && qk_model_vocab(m)) {
        char *tj = qk_path_join(tmp, "tokenizer.json");
        rc = tj ? qk_vocab_write_tokenizer_json(qk_model_vocab(m), tj) : qk_error(QK_ENOMEM, "out of memory");
        free(tj);
    }
    if (!rc) {
        rc = qk_adir_commit(d);
        d = NULL;
    }
done:
    if (!rc && !st_path)
        rc = qk_error(QK_ENOMEM, "out of memory");
    if (prog)
        qk_progress_finish(prog);
    qk_afile_abort(f);
    qk_st_writer_free(w);
    qk_adir_abort(d);
    free(st_path);
    return rc;
}

int main(int argc, char **argv)
{
    qk_tool_init("qk-convert");
    opts_t o = {0};
    o.outtype = -1;
    enum { O_OUTTYPE = 1000, O_TO, O_VOCAB, O_PAD, O_NONFINITE, O_FORCE, O_PROGRESS, O_VERSION, O_NOVERIFY };
    static const struct option lo[] = {
        {"output", required_argument, 0, 'o'},     {"outtype", required_argument, 0, O_OUTTYPE},
        {"to", required_argument, 0, O_TO},        {"vocab", required_argument, 0, O_VOCAB},
        {"pad-ffn", required_argument, 0, O_PAD},  {"allow-nonfinite", no_argument, 0, O_NONFINITE},
        {"force", no_argument, 0, O_FORCE},        {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'},          {"progress", no_argument, 0, O_PROGRESS},
        {"help", no_argument, 0, 'h'},             {"version", no_argument, 0, O_VERSION},
        {"no-verify", no_argument, 0, O_NOVERIFY},
        {0, 0, 0, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:qvh", lo, NULL)) != -1) {
        switch (c) {
        case 'o': o.output = optarg; break;
        case O_OUTTYPE:
            if (!strcasecmp(optarg, "f32")) o.outtype = QK_TYPE_F32;
            else if (!strcasecmp(optarg, "f16")) o.outtype = QK_TYPE_F16;
            else if (!strcasecmp(optarg, "bf16")) o.outtype = QK_TYPE_BF16;
            else return qk_tool_usage("--outtype '%s': expected f32, f16 or bf16 (quantized types: use qk-quantize)", optarg);
            break;
        case O_TO:
            if (!strcmp(optarg, "gguf")) o.to_st = 0;
            else if (!strcmp(optarg, "safetensors") || !strcmp(optarg, "hf")) o.to_st = 1;
            else return qk_tool_usage("--to '%s': expected gguf or safetensors", optarg);
            break;
        case O_VOCAB: o.vocab = optarg; break;
        case O_PAD:
            if (qk_tool_parse_int("--pad-ffn", optarg, 1, 4096, &o.pad_ffn))
                return QK_EXIT_USAGE;
            break;
        case O_NONFINITE: o.allow_nonfinite = 1; break;
        case O_FORCE: o.force = 1; break;
        case O_NOVERIFY: o.no_verify = 1; break;
        case 'q': o.quiet = 1; qk_log_set_level(QK_LOG_ERROR); break;
        case 'v': qk_log_set_level(QK_LOG_DEBUG); break;
        case O_PROGRESS: qk_progress_force(1); break;
        case 'h': usage(); return 0;
        case O_VERSION: qk_tool_version(); return 0;
        default:
            return qk_tool_usage("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return qk_tool_usage("missing INPUT");
    if (argc - optind > 1)
        return qk_tool_usage("unexpected argument '%s'", argv[optind + 1]);
    o.input = argv[optind];
    if (!o.output)
        return qk_tool_usage("missing -o OUTPUT");

    qk_model_opts mo = {.vocab_path = o.vocab, .pad_ffn = o.pad_ffn};
    qk_model *m = NULL;
    if (qk_model_open(&m, o.input, &mo))
        return qk_tool_fail();
    if (!o.no_verify && qk_model_verify(m)) { /* a corrupted input is not re-checksummed into a valid file */
        qk_model_close(m);
        return qk_tool_fail();
    }
    double t0 = qk_now();
    uint64_t bytes = 0;
    int rc = o.to_st ? write_hf_dir(&o, m, &bytes) : write_gguf(&o, m, &bytes);
    double dt = qk_now() - t0;
    if (rc) {
        qk_model_close(m);
        return qk_tool_fail();
    }
    if (!o.quiet) {
        const qk_model_config *cfg = qk_model_cfg(m);
        char b1[32], b2[32];
        printf("wrote %s: %lld tensors, %s (input tensors %s) in %.2f s\n", o.output,
               (long long)qk_model_n_tensors(m), qk_fmt_bytes(bytes, b1), qk_fmt_bytes(qk_model_source_bytes(m), b2),
               dt);
        if (cfg->n_ff != cfg->n_ff_orig)
            printf("padded FFN hidden size %lld -> %lld\n", (long long)cfg->n_ff_orig, (long long)cfg->n_ff);
    }
    qk_model_close(m);
    return 0;
}

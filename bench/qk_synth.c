/* qk-synth: synthetic Hugging Face checkpoints with a real architecture's
 * shapes, for benchmarks (bench/convert.sh) and large-input tests.
 *
 * Output directory (atomic: built beside DIR and renamed into place):
 *   config.json                        the preset's Hugging Face config
 *   model-0000k-of-0000n.safetensors   shards, or model.safetensors when one
 *   model.safetensors.index.json       when sharded
 *   tokenizer.json, tokenizer_config.json
 *
 * Sharding follows transformers' save_pretrained (huggingface_hub's
 * split_state_dict_into_shards): tensors in state_dict order (embed_tokens;
 * per layer q, k, v, o, gate, up, down, input_layernorm,
 * post_attention_layernorm; norm; lm_head) fill a shard until the next one
 * would push it past --shard-size (5GB = 5e9 bytes, as HF); a tensor larger
 * than the limit gets a shard of its own. Inside a shard the tensors are
 * sorted by name, as the safetensors serializer does (all share one dtype).
 * For mistral-7b-v0.3 this reproduces the real checkpoint's three shards
 * (data 4,949,442,560 + 4,999,806,976 + 4,546,797,568 bytes; total_size
 * 14,496,047,104).
 *
 * Weights: 2-D matrices N(0, 0.02), norms 1 + N(0, 0.02). Drawing 7e9
 * normals would take longer than writing them, so two pools of normals are
 * made once (Box-Muller over splitmix64/xoshiro256**), already converted to
 * the output dtype; every chunk of a tensor is copied from a random offset
 * of its pool and its low mantissa bits are XORed with a per-chunk mask, so
 * no two chunks are byte-identical (the data does not deduplicate or
 * compress away) while the scale stays realistic. The stream for a tensor
 * depends only on --seed and the tensor's name, so shard size does not
 * change the values. Memory: the pools (a few MB) and one chunk.
 *
 * The tokenizer is synthetic too (the real Mistral vocabulary is not
 * available offline): a SentencePiece-style tokenizer.json as Hugging Face
 * writes it for Llama/Mistral (BPE, byte_fallback, Prepend/Replace
 * normalizer) with exactly n_vocab tokens: <unk>, <s>, </s>, the 256 byte
 * pieces <0x00>..<0xFF>, U+2581 and the printable ASCII characters, then
 * unique filler pieces "\u2581t<id>". No merges: text tokenizes into
 * characters and bytes. */
#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>

#include "quantkit/common.h"
#include "quantkit/safetensors.h"
#include "quantkit/tool.h"

#define POOL_W_N ((int64_t)1 << 22) /* normals for matrices (4M values) */
#define POOL_N_N ((int64_t)1 << 18) /* 1 + normals for norm vectors */
#define CHUNK_N ((int64_t)1 << 20)  /* elements per chunk; <= pool size / 4 */
#define SPACE_MARGIN (64u << 20)    /* free space kept beyond the output size */
#define SPM_SPACE "\xe2\x96\x81"    /* U+2581, SentencePiece's space */

/* ---------------------------------------------------------------- presets */

typedef struct preset {
    const char *name;
    const char *hf_arch;    /* architectures[0] */
    const char *model_type; /* "mistral", "llama" */
    int64_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    const char *rope_theta; /* as Python's json writes the float */
    const char *rms_norm_eps;
    int64_t sliding_window; /* 0: null */
    int tied;
    const char *transformers_version;
} preset;

static const preset k_presets[] = {
    /* mistralai/Mistral-7B-v0.3 */
    {"mistral-7b-v0.3", "MistralForCausalLM", "mistral", 4096, 32, 32, 8, 128, 14336, 32768, 32768, "1000000.0",
     "1e-05", 0, 0, "4.42.0.dev0"},
    /* a small Llama (134M parameters untied), for quick runs */
    {"llama-150m", "LlamaForCausalLM", "llama", 768, 12, 12, 12, 64, 2048, 32000, 2048, "10000.0", "1e-05", 0, 0,
     "4.46.0"},
    /* about 10 MB in BF16, with GQA; for tests */
    {"tiny", "LlamaForCausalLM", "llama", 256, 4, 8, 4, 32, 768, 2048, 2048, "10000.0", "1e-05", 0, 0, "4.46.0"},
};

static const preset *find_preset(const char *name)
{
    for (size_t i = 0; i < sizeof k_presets / sizeof *k_presets; i++)
        if (!strcmp(k_presets[i].name, name))
            return &k_presets[i];
    return NULL;
}

/* ---------------------------------------------------------------- tensors */

typedef struct stensor {
    char name[96];
    int n_dims;
    int64_t shape[2]; /* PyTorch order: [out, in] */
    int is_norm;
    uint64_t nbytes;
    int shard;        /* index of the shard holding it */
} stensor;

/* The state_dict in module order; *out has n_layer*9 + 3 entries at most. */
static int tensor_list(const preset *p, size_t es, stensor **out, int64_t *n_out)
{
    int64_t cap = 9 * p->n_layer + 3, n = 0;
    stensor *v = calloc((size_t)cap, sizeof *v);
    if (!v)
        return qk_error(QK_ENOMEM, "out of memory");
    int64_t q = p->n_head * p->head_dim, kv = p->n_head_kv * p->head_dim;
#define ADD(nd, a, b, norm, ...)                                                                               \
    do {                                                                                                       \
        snprintf(v[n].name, sizeof v[n].name, __VA_ARGS__);                                                    \
        v[n].n_dims = nd;                                                                                      \
        v[n].shape[0] = a;                                                                                     \
        v[n].shape[1] = b;                                                                                     \
        v[n].is_norm = norm;                                                                                   \
        v[n].nbytes = (uint64_t)a * (uint64_t)(nd > 1 ? b : 1) * es;                                           \
        n++;                                                                                                   \
    } while (0)
    ADD(2, p->n_vocab, p->n_embd, 0, "model.embed_tokens.weight");
    for (int64_t l = 0; l < p->n_layer; l++) {
        long long L = (long long)l;
        ADD(2, q, p->n_embd, 0, "model.layers.%lld.self_attn.q_proj.weight", L);        /* [n_head*hd, n_embd] */
        ADD(2, kv, p->n_embd, 0, "model.layers.%lld.self_attn.k_proj.weight", L);       /* [n_kv*hd, n_embd] */
        ADD(2, kv, p->n_embd, 0, "model.layers.%lld.self_attn.v_proj.weight", L);       /* [n_kv*hd, n_embd] */
        ADD(2, p->n_embd, q, 0, "model.layers.%lld.self_attn.o_proj.weight", L);        /* [n_embd, n_head*hd] */
        ADD(2, p->n_ff, p->n_embd, 0, "model.layers.%lld.mlp.gate_proj.weight", L);     /* [n_ff, n_embd] */
        ADD(2, p->n_ff, p->n_embd, 0, "model.layers.%lld.mlp.up_proj.weight", L);       /* [n_ff, n_embd] */
        ADD(2, p->n_embd, p->n_ff, 0, "model.layers.%lld.mlp.down_proj.weight", L);     /* [n_embd, n_ff] */
        ADD(1, p->n_embd, 1, 1, "model.layers.%lld.input_layernorm.weight", L);         /* [n_embd] */
        ADD(1, p->n_embd, 1, 1, "model.layers.%lld.post_attention_layernorm.weight", L); /* [n_embd] */
    }
    ADD(1, p->n_embd, 1, 1, "model.norm.weight");
    if (!p->tied)
        ADD(2, p->n_vocab, p->n_embd, 0, "lm_head.weight");
#undef ADD
    *out = v;
    *n_out = n;
    return 0;
}

/* HF's split: sets each tensor's shard and returns the number of shards.
 * Shards are numbered in the order HF appends them to its list: a tensor
 * larger than the limit is appended at once, the open shard when it closes. */
static int assign_shards(stensor *t, int64_t n, uint64_t max_bytes)
{
    int next = 0;
    int64_t n_open = 0;
    uint64_t cur = 0;
    for (int64_t i = 0; i <= n; i++) {
        int close = n_open > 0 && (i == n || (t[i].nbytes <= max_bytes && cur + t[i].nbytes > max_bytes));
        if (close) {
            for (int64_t k = 0; k < i; k++)
                if (t[k].shard < 0)
                    t[k].shard = next;
            next++;
            cur = 0;
            n_open = 0;
        }
        if (i == n)
            break;
        if (t[i].nbytes > max_bytes) {
            t[i].shard = next++;
        } else {
            t[i].shard = -1; /* in the open shard */
            cur += t[i].nbytes;
            n_open++;
        }
    }
    return next;
}

/* ------------------------------------------------------------- randomness */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t s[4];
} rng;

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* Uniform in (0, 1]: never 0, so log() below is finite. */
static double rng_unit(rng *r) { return ((double)(rng_next(r) >> 11) + 1.0) * 0x1p-53; }

/* ----------------------------------------------------------------- dtypes */

typedef struct dtype_info {
    const char *name;  /* option value */
    int st_dtype;      /* qk_st_dtype */
    const char *torch; /* config.json torch_dtype */
    size_t size;
    int mask_bits;     /* low mantissa bits XORed per chunk */
} dtype_info;

static const dtype_info k_dtypes[] = {
    {"bf16", QK_ST_BF16, "bfloat16", 2, 2},
    {"f16", QK_ST_F16, "float16", 2, 3},
    {"f32", QK_ST_F32, "float32", 4, 8},
};

/* One value in the output dtype, little-endian, at dst. */
static void put_value(const dtype_info *d, float x, uint8_t *dst)
{
    if (d->st_dtype == QK_ST_BF16)
        qk_wr_u16(dst, qk_f32_to_bf16(x));
    else if (d->st_dtype == QK_ST_F16)
        qk_wr_u16(dst, qk_f32_to_fp16(x));
    else {
        uint32_t u;
        memcpy(&u, &x, 4);
        qk_wr_u32(dst, u);
    }
}

/* n values mean + std * N(0, 1) in dtype d (Box-Muller, both outputs used). */
static uint8_t *make_pool(const dtype_info *d, int64_t n, double mean, double std, rng *r)
{
    uint8_t *p = malloc((size_t)n * d->size);
    if (!p)
        return NULL;
    for (int64_t i = 0; i < n; i += 2) {
        double rad = sqrt(-2.0 * log(rng_unit(r))), ang = 2.0 * M_PI * rng_unit(r);
        put_value(d, (float)(mean + std * rad * cos(ang)), p + (size_t)i * d->size);
        if (i + 1 < n)
            put_value(d, (float)(mean + std * rad * sin(ang)), p + (size_t)(i + 1) * d->size);
    }
    return p;
}

/* XOR byte 0 (the low mantissa bits, little-endian) of each of the n
 * elements of size es at p with m, eight bytes at a time. */
static void xor_low_bits(uint8_t *p, int64_t n, size_t es, uint8_t m)
{
    uint8_t pat[8] = {0};
    for (size_t k = 0; k < 8; k += es)
        pat[k] = m;
    uint64_t w;
    memcpy(&w, pat, 8);
    size_t bytes = (size_t)n * es, i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        x ^= w;
        memcpy(p + i, &x, 8);
    }
    for (; i < bytes; i += es)
        p[i] ^= m;
}

/* -------------------------------------------------------------- generator */

typedef struct synth {
    const preset *p;
    const dtype_info *d;
    uint64_t seed;
    uint8_t *pool_w, *pool_n; /* [POOL_W_N], [POOL_N_N] values in dtype d */
    uint8_t *buf;             /* [CHUNK_N] values */
    qk_progress *prog;
} synth;

/* Stream tensor t's data (seeded by --seed and its name) into w. */
static int write_tensor(synth *s, qk_st_writer *w, const stensor *t)
{
    size_t es = s->d->size;
    int64_t left = (int64_t)(t->nbytes / es);
    const uint8_t *pool = t->is_norm ? s->pool_n : s->pool_w;
    int64_t pool_n = t->is_norm ? POOL_N_N : POOL_W_N;
    int64_t chunk_max = pool_n / 4 < CHUNK_N ? pool_n / 4 : CHUNK_N;
    rng r;
    rng_seed(&r, s->seed ^ qk_hash64(t->name, strlen(t->name)));
    uint8_t mask_max = (uint8_t)((1u << s->d->mask_bits) - 1);
    while (left > 0) {
        int64_t n = left < chunk_max ? left : chunk_max;
        uint64_t off = rng_next(&r) % (uint64_t)(pool_n - n + 1);
        uint8_t m = (uint8_t)(1 + rng_next(&r) % mask_max);
        memcpy(s->buf, pool + off * es, (size_t)n * es);
        xor_low_bits(s->buf, n, es, m);
        int rc = qk_st_writer_write(w, s->buf, (size_t)n * es);
        if (rc)
            return rc;
        qk_progress_add(s->prog, (uint64_t)n * es);
        left -= n;
    }
    return 0;
}

static int cmp_by_name(const void *a, const void *b)
{
    const stensor *x = *(const stensor *const *)a, *y = *(const stensor *const *)b;
    return strcmp(x->name, y->name);
}

/* One shard: header and data of its tensors (sorted by name). */
static int write_shard(synth *s, const char *path, stensor **list, int64_t n, uint64_t *out_bytes)
{
    qk_st_writer *w = NULL;
    qk_afile *f = NULL;
    int rc = qk_st_writer_new(&w);
    if (!rc)
        rc = qk_st_writer_add_meta(w, "format", "pt");
    for (int64_t i = 0; i < n && !rc; i++)
        rc = qk_st_writer_add_tensor(w, list[i]->name, s->d->st_dtype, list[i]->n_dims, list[i]->shape);
    if (!rc && !(rc = qk_afile_open(&f, path)))
        rc = qk_st_writer_begin(w, f);
    for (int64_t i = 0; i < n && !rc; i++)
        rc = write_tensor(s, w, list[i]);
    if (!rc)
        rc = qk_st_writer_finish(w);
    if (!rc) {
        *out_bytes = qk_afile_tell(f);
        rc = qk_afile_commit(f);
        f = NULL;
    }
    qk_afile_abort(f);
    qk_st_writer_free(w);
    return rc;
}

/* -------------------------------------------------------- small JSON files */

static int write_text(const char *dir, const char *name, const char *text)
{
    char *path = qk_path_join(dir, name);
    qk_afile *f = NULL;
    int rc = path ? qk_afile_open(&f, path) : qk_error(QK_ENOMEM, "out of memory");
    if (!rc)
        rc = qk_afile_write(f, text, strlen(text));
    if (!rc) {
        rc = qk_afile_commit(f);
        f = NULL;
    }
    qk_afile_abort(f);
    free(path);
    return rc;
}

/* config.json as transformers writes it: sorted keys, indent 2. */
static int write_config(const char *dir, const preset *p, const dtype_info *d)
{
    char buf[4096], sw[32];
    int mistral = !strcmp(p->model_type, "mistral");
    if (p->sliding_window > 0)
        snprintf(sw, sizeof sw, "%lld", (long long)p->sliding_window);
    else
        snprintf(sw, sizeof sw, "null");
    int k = snprintf(buf, sizeof buf,
                     "{\n"
                     "  \"architectures\": [\n    \"%s\"\n  ],\n"
                     "%s"
                     "  \"attention_dropout\": 0.0,\n"
                     "  \"bos_token_id\": 1,\n"
                     "  \"eos_token_id\": 2,\n"
                     "  \"head_dim\": %lld,\n"
                     "  \"hidden_act\": \"silu\",\n"
                     "  \"hidden_size\": %lld,\n"
                     "  \"initializer_range\": 0.02,\n"
                     "  \"intermediate_size\": %lld,\n"
                     "  \"max_position_embeddings\": %lld,\n"
                     "%s"
                     "  \"model_type\": \"%s\",\n"
                     "  \"num_attention_heads\": %lld,\n"
                     "  \"num_hidden_layers\": %lld,\n"
                     "  \"num_key_value_heads\": %lld,\n"
                     "%s"
                     "  \"rms_norm_eps\": %s,\n"
                     "%s"
                     "  \"rope_theta\": %s,\n"
                     "%s%s%s"
                     "  \"tie_word_embeddings\": %s,\n"
                     "  \"torch_dtype\": \"%s\",\n"
                     "  \"transformers_version\": \"%s\",\n"
                     "  \"use_cache\": true,\n"
                     "  \"vocab_size\": %lld\n"
                     "}\n",
                     p->hf_arch, mistral ? "" : "  \"attention_bias\": false,\n", (long long)p->head_dim,
                     (long long)p->n_embd, (long long)p->n_ff, (long long)p->n_ctx,
                     mistral ? "" : "  \"mlp_bias\": false,\n", p->model_type, (long long)p->n_head,
                     (long long)p->n_layer, (long long)p->n_head_kv, mistral ? "" : "  \"pretraining_tp\": 1,\n",
                     p->rms_norm_eps, mistral ? "" : "  \"rope_scaling\": null,\n", p->rope_theta,
                     mistral ? "  \"sliding_window\": " : "", mistral ? sw : "", mistral ? ",\n" : "",
                     p->tied ? "true" : "false", d->torch, p->transformers_version, (long long)p->n_vocab);
    if (k < 0 || (size_t)k >= sizeof buf)
        return qk_error(QK_ELIMIT, "config.json longer than %zu bytes", sizeof buf);
    return write_text(dir, "config.json", buf);
}

static cJSON *typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static cJSON *replace(const char *from, const char *to)
{
    cJSON *o = typed("Replace");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "pattern"), "String", from);
    cJSON_AddStringToObject(o, "content", to);
    return o;
}

/* TemplateProcessing adding <s> (id 1) before each sequence, as Llama's. */
static cJSON *bos_template(void)
{
    cJSON *tp = typed("TemplateProcessing");
    static const char *const parts[2] = {"single", "pair"};
    for (int p = 0; p < 2; p++) {
        cJSON *arr = cJSON_AddArrayToObject(tp, parts[p]);
        for (int seq = 0; seq <= p; seq++) {
            cJSON *e = cJSON_CreateObject(), *st = cJSON_AddObjectToObject(e, "SpecialToken");
            cJSON_AddStringToObject(st, "id", "<s>");
            cJSON_AddNumberToObject(st, "type_id", seq);
            cJSON_AddItemToArray(arr, e);
            e = cJSON_CreateObject();
            cJSON *sq = cJSON_AddObjectToObject(e, "Sequence");
            cJSON_AddStringToObject(sq, "id", seq ? "B" : "A");
            cJSON_AddNumberToObject(sq, "type_id", seq);
            cJSON_AddItemToArray(arr, e);
        }
    }
    cJSON *bos = cJSON_AddObjectToObject(cJSON_AddObjectToObject(tp, "special_tokens"), "<s>");
    cJSON_AddStringToObject(bos, "id", "<s>");
    cJSON_AddItemToObject(bos, "ids", cJSON_CreateIntArray((const int[]){1}, 1));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(bos, "tokens"), cJSON_CreateString("<s>"));
    return tp;
}

/* The synthetic SentencePiece-style tokenizer (see the file comment). */
static int write_tokenizer(const char *dir, int64_t n_vocab)
{
    static const char *const special[3] = {"<unk>", "<s>", "</s>"};
    int64_t fixed = 3 + 256 + 1 + 94;
    if (n_vocab < fixed)
        return qk_error(QK_EINVAL, "vocabulary of %lld tokens is smaller than the %lld fixed pieces",
                        (long long)n_vocab, (long long)fixed);
    int rc = QK_ENOMEM;
    char *text = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        goto done;
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < 3; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", i);
        cJSON_AddStringToObject(o, "content", special[i]);
        cJSON_AddFalseToObject(o, "single_word");
        cJSON_AddFalseToObject(o, "lstrip");
        cJSON_AddFalseToObject(o, "rstrip");
        cJSON_AddFalseToObject(o, "normalized");
        cJSON_AddTrueToObject(o, "special");
        cJSON_AddItemToArray(added, o);
    }
    cJSON *norm = typed("Sequence"), *nl = cJSON_AddArrayToObject(norm, "normalizers");
    cJSON *pre = typed("Prepend");
    cJSON_AddStringToObject(pre, "prepend", SPM_SPACE);
    cJSON_AddItemToArray(nl, pre);
    cJSON_AddItemToArray(nl, replace(" ", SPM_SPACE));
    cJSON_AddItemToObject(root, "normalizer", norm);
    cJSON_AddNullToObject(root, "pre_tokenizer");
    cJSON_AddItemToObject(root, "post_processor", bos_template());
    cJSON *dec = typed("Sequence"), *dl = cJSON_AddArrayToObject(dec, "decoders");
    cJSON_AddItemToArray(dl, replace(SPM_SPACE, " "));
    cJSON_AddItemToArray(dl, typed("ByteFallback"));
    cJSON_AddItemToArray(dl, typed("Fuse"));
    cJSON *strip = typed("Strip");
    cJSON_AddStringToObject(strip, "content", " ");
    cJSON_AddNumberToObject(strip, "start", 1);
    cJSON_AddNumberToObject(strip, "stop", 0);
    cJSON_AddItemToArray(dl, strip);
    cJSON_AddItemToObject(root, "decoder", dec);

    cJSON *model = cJSON_AddObjectToObject(root, "model");
    if (!model)
        goto done;
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddStringToObject(model, "unk_token", "<unk>");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddTrueToObject(model, "fuse_unk");
    cJSON_AddTrueToObject(model, "byte_fallback");
    cJSON_AddFalseToObject(model, "ignore_merges");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    if (!vocab)
        goto done;
    for (int64_t id = 0; id < n_vocab; id++) {
        char piece[32];
        if (id < 3)
            snprintf(piece, sizeof piece, "%s", special[id]);
        else if (id < 3 + 256)
            snprintf(piece, sizeof piece, "<0x%02X>", (unsigned)(id - 3));
        else if (id == 3 + 256)
            snprintf(piece, sizeof piece, "%s", SPM_SPACE);
        else if (id < fixed)
            snprintf(piece, sizeof piece, "%c", (char)(0x21 + id - (3 + 256 + 1)));
        else
            snprintf(piece, sizeof piece, SPM_SPACE "t%lld", (long long)id);
        cJSON *num = cJSON_CreateNumber((double)id);
        if (!num || !cJSON_AddItemToObject(vocab, piece, num)) {
            cJSON_Delete(num);
            goto done;
        }
    }
    if (!cJSON_AddArrayToObject(model, "merges") || !(text = cJSON_Print(root)))
        goto done;
    size_t len = strlen(text);
    char *t2 = realloc(text, len + 2);
    if (!t2)
        goto done;
    text = t2;
    memcpy(text + len, "\n", 2);
    rc = write_text(dir, "tokenizer.json", text);
    if (!rc)
        rc = write_text(dir, "tokenizer_config.json",
                        "{\n"
                        "  \"add_bos_token\": true,\n"
                        "  \"add_eos_token\": false,\n"
                        "  \"bos_token\": \"<s>\",\n"
                        "  \"clean_up_tokenization_spaces\": false,\n"
                        "  \"eos_token\": \"</s>\",\n"
                        "  \"legacy\": false,\n"
                        "  \"tokenizer_class\": \"LlamaTokenizer\",\n"
                        "  \"unk_token\": \"<unk>\"\n"
                        "}\n");
done:
    if (rc == QK_ENOMEM)
        rc = qk_error(QK_ENOMEM, "out of memory building tokenizer.json");
    free(text);
    cJSON_Delete(root);
    return rc;
}

/* ------------------------------------------------------------ free space */

/* Refuse early when the file system holding `out` lacks `need` bytes. */
static int check_space(const char *out, uint64_t need)
{
    char *copy = strdup(out);
    if (!copy)
        return qk_error(QK_ENOMEM, "out of memory");
    for (size_t n = strlen(copy); n > 1 && copy[n - 1] == '/'; n--)
        copy[n - 1] = 0;
    char *slash = strrchr(copy, '/');
    const char *dir = ".";
    if (slash == copy)
        dir = "/";
    else if (slash) {
        *slash = 0;
        dir = copy;
    }
    struct statvfs vs;
    int rc = 0;
    if (statvfs(dir, &vs) != 0) {
        rc = qk_error(QK_EIO, "%s: %s", dir, strerror(errno));
    } else {
        uint64_t avail = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
        char a[32], b[32];
        if (avail < need + SPACE_MARGIN)
            rc = qk_error(QK_EIO, "%s: %s free, the checkpoint needs %s (plus %u MB headroom)", dir,
                          qk_fmt_bytes(avail, a), qk_fmt_bytes(need, b), SPACE_MARGIN >> 20);
    }
    free(copy);
    return rc;
}

/* ------------------------------------------------------------------- main */

typedef struct opts {
    const preset *p;
    const dtype_info *d;
    uint64_t shard_size;
    uint64_t seed;
    const char *out;
    int force, quiet, json;
} opts;

static void usage(void)
{
    printf("Usage: qk-synth --preset NAME -o DIR [options]\n"
           "\n"
           "Write a synthetic Hugging Face checkpoint with a real architecture's shapes:\n"
           "config.json, safetensors shards cut as transformers does (+ index), and a\n"
           "synthetic SentencePiece-style tokenizer.json. Weights are random with a\n"
           "realistic scale: matrices N(0, 0.02), norms 1 + N(0, 0.02). For benchmarks.\n"
           "\n"
           "Options:\n"
           "      --preset NAME        mistral-7b-v0.3 (7.25e9 parameters, 14.5 GB in BF16)\n"
           "                           llama-150m      (134M parameters, 268 MB in BF16)\n"
           "                           tiny            (4.2M parameters, 8.4 MB in BF16)\n"
           "      --dtype TYPE         bf16 (default) | f16 | f32\n"
           "      --shard-size SIZE    largest shard, e.g. 5GB (default, = 5e9 bytes as HF), 2GiB\n"
           "      --seed N             random seed (default 0); same seed, same bytes\n"
           "  -o, --output DIR         output directory (created atomically)\n"
           "      --force              replace an existing non-empty DIR\n"
           "      --json               summary as JSON on stdout\n"
           "  -q, --quiet              no summary on stdout\n"
           "      --progress           show progress even when stderr is not a terminal\n"
           "  -h, --help               this help\n"
           "      --version            version\n"
           "\n"
           "Exit status: 0 ok, 1 error (no output is left behind), 2 bad usage.\n");
}

static void print_summary(const opts *o, const stensor *t, int64_t n_t, int n_shards, char **shard_names,
                          const uint64_t *shard_bytes, double secs)
{
    uint64_t total = 0, params = 0, file_bytes = 0;
    for (int64_t i = 0; i < n_t; i++) {
        total += t[i].nbytes;
        params += t[i].nbytes / o->d->size;
    }
    for (int k = 0; k < n_shards; k++)
        file_bytes += shard_bytes[k];
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "output", o->out);
        cJSON_AddStringToObject(j, "preset", o->p->name);
        cJSON_AddStringToObject(j, "dtype", o->d->name);
        cJSON_AddNumberToObject(j, "seed", (double)o->seed);
        cJSON_AddNumberToObject(j, "parameters", (double)params);
        cJSON_AddNumberToObject(j, "tensors", (double)n_t);
        cJSON_AddNumberToObject(j, "total_size", (double)total);
        cJSON_AddNumberToObject(j, "file_bytes", (double)file_bytes);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON *arr = cJSON_AddArrayToObject(j, "shards");
        for (int k = 0; k < n_shards; k++) {
            cJSON *s = cJSON_CreateObject();
            int64_t c = 0;
            for (int64_t i = 0; i < n_t; i++)
                c += t[i].shard == k;
            cJSON_AddStringToObject(s, "file", shard_names[k]);
            cJSON_AddNumberToObject(s, "bytes", (double)shard_bytes[k]);
            cJSON_AddNumberToObject(s, "tensors", (double)c);
            cJSON_AddItemToArray(arr, s);
        }
        char *txt = cJSON_Print(j);
        if (txt)
            printf("%s\n", txt);
        free(txt);
        cJSON_Delete(j);
        return;
    }
    char b1[32];
    printf("wrote %s: %s %s, %" PRIu64 " parameters, %lld tensors in %d file%s, %s in %.1f s (%.0f MB/s)\n", o->out,
           o->p->name, o->d->name, params, (long long)n_t, n_shards, n_shards > 1 ? "s" : "",
           qk_fmt_bytes(file_bytes, b1), secs, secs > 0 ? (double)file_bytes / 1e6 / secs : 0.0);
    for (int k = 0; k < n_shards; k++) {
        int64_t c = 0;
        for (int64_t i = 0; i < n_t; i++)
            c += t[i].shard == k;
        printf("  %-36s %14" PRIu64 " bytes  %4lld tensors\n", shard_names[k], shard_bytes[k], (long long)c);
    }
}

static int run(const opts *o)
{
    synth s = {.p = o->p, .d = o->d, .seed = o->seed};
    stensor *t = NULL, **order = NULL;
    int64_t n_t = 0;
    int n_shards = 0;
    char **shard_names = NULL, *path = NULL;
    uint64_t *shard_bytes = NULL, total = 0;
    const char **idx_names = NULL, **idx_shards = NULL;
    qk_adir *dir = NULL;
    double t0 = qk_now();

    int rc = tensor_list(o->p, o->d->size, &t, &n_t);
    if (rc)
        goto done;
    for (int64_t i = 0; i < n_t; i++)
        total += t[i].nbytes;
    if ((rc = check_space(o->out, total)))
        goto done;
    n_shards = assign_shards(t, n_t, o->shard_size);
    shard_names = calloc((size_t)n_shards, sizeof *shard_names);
    shard_bytes = calloc((size_t)n_shards, sizeof *shard_bytes);
    order = calloc((size_t)n_t, sizeof *order);
    idx_names = calloc((size_t)n_t, sizeof *idx_names);
    idx_shards = calloc((size_t)n_t, sizeof *idx_shards);
    if (!shard_names || !shard_bytes || !order || !idx_names || !idx_shards) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    for (int k = 0; k < n_shards; k++) {
        char nm[64];
        if (n_shards == 1)
            snprintf(nm, sizeof nm, "model.safetensors");
        else
            snprintf(nm, sizeof nm, "model-%05d-of-%05d.safetensors", k + 1, n_shards);
        if (!(shard_names[k] = strdup(nm))) {
            rc = qk_error(QK_ENOMEM, "out of memory");
            goto done;
        }
    }
    rng r;
    rng_seed(&r, o->seed ^ 0x5eed0000aaaa5555ull);
    s.pool_w = make_pool(o->d, POOL_W_N, 0.0, 0.02, &r);
    s.pool_n = make_pool(o->d, POOL_N_N, 1.0, 0.02, &r);
    s.buf = malloc((size_t)CHUNK_N * o->d->size);
    if (!s.pool_w || !s.pool_n || !s.buf) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = qk_adir_open(&dir, o->out, o->force)))
        goto done;
    const char *tmp = qk_adir_tmp_path(dir);
    if ((rc = write_config(tmp, o->p, o->d)) || (rc = write_tokenizer(tmp, o->p->n_vocab)))
        goto done;
    s.prog = qk_progress_start("generating", total, "B");
    for (int k = 0; k < n_shards && !rc; k++) {
        int64_t n = 0;
        for (int64_t i = 0; i < n_t; i++)
            if (t[i].shard == k)
                order[n++] = &t[i];
        qsort(order, (size_t)n, sizeof *order, cmp_by_name);
        free(path);
        if (!(path = qk_path_join(tmp, shard_names[k]))) {
            rc = qk_error(QK_ENOMEM, "out of memory");
            break;
        }
        rc = write_shard(&s, path, order, n, &shard_bytes[k]);
    }
    qk_progress_finish(s.prog);
    s.prog = NULL;
    if (rc)
        goto done;
    if (n_shards > 1) {
        /* weight_map sorted by name, as transformers writes it (sort_keys) */
        for (int64_t i = 0; i < n_t; i++)
            order[i] = &t[i];
        qsort(order, (size_t)n_t, sizeof *order, cmp_by_name);
        for (int64_t i = 0; i < n_t; i++) {
            idx_names[i] = order[i]->name;
            idx_shards[i] = shard_names[order[i]->shard];
        }
        free(path);
        if (!(path = qk_path_join(tmp, "model.safetensors.index.json"))) {
            rc = qk_error(QK_ENOMEM, "out of memory");
            goto done;
        }
        if ((rc = qk_st_write_index(path, total, idx_names, idx_shards, n_t)))
            goto done;
    }
    rc = qk_adir_commit(dir);
    dir = NULL;
    if (!rc && !o->quiet)
        print_summary(o, t, n_t, n_shards, shard_names, shard_bytes, qk_now() - t0);
done:
    if (s.prog)
        qk_progress_finish(s.prog);
    qk_adir_abort(dir);
    for (int k = 0; shard_names && k < n_shards; k++)
        free(shard_names[k]);
    free(shard_names);
    free(shard_bytes);
    free(order);
    free(idx_names);
    free(idx_shards);
    free(path);
    free(s.pool_w);
    free(s.pool_n);
    free(s.buf);
    free(t);
    return rc;
}

int main(int argc, char **argv)
{
    qk_tool_init("qk-synth");
    opts o = {.d = &k_dtypes[0], .shard_size = 5000000000ull, .seed = 0};
    enum { O_PRESET = 1000, O_DTYPE, O_SHARD, O_SEED, O_FORCE, O_JSON, O_PROGRESS, O_VERSION };
    static const struct option lo[] = {
        {"preset", required_argument, 0, O_PRESET}, {"dtype", required_argument, 0, O_DTYPE},
        {"shard-size", required_argument, 0, O_SHARD}, {"seed", required_argument, 0, O_SEED},
        {"output", required_argument, 0, 'o'},      {"force", no_argument, 0, O_FORCE},
        {"json", no_argument, 0, O_JSON},           {"quiet", no_argument, 0, 'q'},
        {"progress", no_argument, 0, O_PROGRESS},   {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VERSION},     {0, 0, 0, 0},
    };
    int c;
    long long v;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:qh", lo, NULL)) != -1) {
        switch (c) {
        case O_PRESET:
            if (!(o.p = find_preset(optarg)))
                return qk_tool_usage("--preset '%s': expected mistral-7b-v0.3, llama-150m or tiny", optarg);
            break;
        case O_DTYPE:
            o.d = NULL;
            for (size_t i = 0; i < sizeof k_dtypes / sizeof *k_dtypes; i++)
                if (!strcasecmp(optarg, k_dtypes[i].name))
                    o.d = &k_dtypes[i];
            if (!o.d)
                return qk_tool_usage("--dtype '%s': expected bf16, f16 or f32", optarg);
            break;
        case O_SHARD:
            if (qk_parse_size(optarg, &o.shard_size) || o.shard_size == 0)
                return qk_tool_usage("--shard-size '%s': expected a positive size such as 5GB or 2GiB", optarg);
            break;
        case O_SEED:
            if (qk_tool_parse_int("--seed", optarg, 0, INT64_MAX, &v))
                return QK_EXIT_USAGE;
            o.seed = (uint64_t)v;
            break;
        case 'o': o.out = optarg; break;
        case O_FORCE: o.force = 1; break;
        case O_JSON: o.json = 1; break;
        case 'q': o.quiet = 1; break;
        case O_PROGRESS: qk_progress_force(1); break;
        case 'h': usage(); return QK_EXIT_OK;
        case O_VERSION: qk_tool_version(); return QK_EXIT_OK;
        default: return qk_tool_usage("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return qk_tool_usage("unexpected argument '%s'", argv[optind]);
    if (!o.p)
        return qk_tool_usage("missing --preset NAME");
    if (!o.out)
        return qk_tool_usage("missing -o DIR");
    if (run(&o))
        return qk_tool_fail();
    return QK_EXIT_OK;
}

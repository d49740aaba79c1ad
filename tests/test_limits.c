/* Hostile inputs against the resource limits (docs/SECURITY.md): files that
 * claim terabytes, 2^40-token vocabularies, 2^62-element tensors, JSON
 * nested a million levels deep or holding tens of millions of values, and
 * inputs whose processing was quadratic. Each is crafted here and given to
 * the built tools, which must refuse it with exit 1 and a one-line message
 * naming the limit, before allocating: they run under `ulimit -v 1000000`
 * (1 GB of address space; the tools need ~30 MB for these inputs, qk-eval
 * ~200 MB with one OpenBLAS thread), so an attempt to allocate what the
 * file claims fails instead of passing unnoticed, and a tool killed by a
 * signal shows as exit 128+N.
 *
 * OPENBLAS_NUM_THREADS=1: OpenBLAS maps a 128 MB buffer per thread when it
 * starts, and under an address-space limit its threads retry forever; one
 * thread keeps qk-eval within the limit on any machine. Under AddressSanitizer
 * (make asan) the limit is not applied: ASan reserves terabytes of shadow
 * address space at start; the tools then still must refuse the files, and ASan
 * reports any allocation of the sizes the files claim. Wall time is not
 * asserted (it is measured in docs/SECURITY.md); a hang fails through
 * `timeout` (exit 124; 137 if SIGTERM does not end it within 10 s) or the
 * test case's timeout. */
#include "qk_test.h"

#include <stdarg.h>
#include <sys/stat.h>

#include "quantkit/gguf.h"
#include "quantkit/vocab.h"
#include "vocab_internal.h" /* qk_vocab_alloc, qk_vocab_set_token */

#define LIMIT_KB 1000000

#if defined(__SANITIZE_ADDRESS__)
#define QK_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QK_TEST_ASAN 1
#endif
#endif

/* ------------------------------------------------------------ byte buffer */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void b_put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void b_u32(buf *b, uint32_t v)
{
    uint8_t x[4];
    qk_wr_u32(x, v);
    b_put(b, x, 4);
}
static void b_u64(buf *b, uint64_t v)
{
    uint8_t x[8];
    qk_wr_u64(x, v);
    b_put(b, x, 8);
}
static void b_str(buf *b, const char *s)
{
    b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
}
static void b_fill(buf *b, char c, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = b->n + n + 64;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memset(b->p + b->n, c, n);
    b->n += n;
}
static void b_text(buf *b, const char *s) { b_put(b, s, strlen(s)); }
static void b_save(buf *b, const char *path)
{
    qk_test_write_file(path, b->p, b->n);
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* "GGUF" v3 with the given counts. */
static void gguf_header(buf *b, uint64_t n_tensors, uint64_t n_kv)
{
    b_put(b, "GGUF", 4);
    b_u32(b, 3);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}

/* ------------------------------------------------------------- tool runs */

/* Run a tool command line under the address-space limit; returns the exit
 * status (128+N when killed by signal N); *err gets stderr. */
static int run_limited(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run_limited(char **err, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
#ifdef QK_TEST_ASAN
    const char *limit = "";
#else
    char limit[64];
    snprintf(limit, sizeof limit, "ulimit -v %d && ", LIMIT_KB);
#endif
    return qk_test_run(NULL, err, "%sOPENBLAS_NUM_THREADS=1 timeout -k 10 120 %s", limit, cmd);
}

/* The tool must exit 1 (not be killed, not succeed) with `msg` in its one
 * line on stderr, prefixed by the tool's name. */
static void expect_refused(const char *tool, const char *args, const char *msg)
{
    char *err = NULL;
    int rc = run_limited(&err, "%s %s", qk_test_tool(tool), args);
    ck_assert_msg(rc == 1, "%s %s: exit %d (want 1; >= 128: killed by a signal, 124: timed out): %s", tool, args, rc,
                  err);
    ck_assert_msg(strstr(err, msg) != NULL, "%s %s: message lacks '%s': %s", tool, args, msg, err);
    ck_assert_msg(!strncmp(err, tool, strlen(tool)), "%s: message not prefixed by the tool name: %s", tool, err);
    free(err);
}

/* A llama2.c checkpoint: dim 8, hidden 4, 1 layer, 2 heads, 1 KV head,
 * vocab 16 (shared classifier), seq_len 4; small random weights. */
static const char *tiny_llama2c(void)
{
    const char *path = qk_test_tmp("tiny.bin");
    const int32_t h[7] = {8, 4, 1, 2, 1, 16, 4};
    const uint64_t n = 16 * 8 + 8 + 64 + 2 * 4 * 8 + 64 + 8 + 3 * 4 * 8 + 8 + 2 * 4 * 2;
    buf b = {0};
    for (int i = 0; i < 7; i++)
        b_u32(&b, (uint32_t)h[i]);
    for (uint64_t i = 0; i < n; i++) {
        float x = (float)((i * 37) % 19) / 19.0f - 0.5f;
        uint32_t u;
        memcpy(&u, &x, 4);
        b_u32(&b, u);
    }
    b_save(&b, path);
    return path;
}

/* A 16-token vocabulary written into w. */
static void add_vocab(qk_gguf_writer *w)
{
    qk_vocab *v = NULL;
    ck_assert_int_eq(qk_vocab_alloc(&v, 16, QK_VOCAB_SPM), 0);
    for (int i = 0; i < 16; i++) {
        char t[16];
        snprintf(t, sizeof t, i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : "tok%d", i);
        ck_assert_int_eq(qk_vocab_set_token(v, i, t, strlen(t)), 0);
        v->types[i] = i == 0 ? QK_TOKEN_UNKNOWN : i < 3 ? QK_TOKEN_CONTROL : QK_TOKEN_NORMAL;
        v->scores[i] = -(float)i;
    }
    v->unk_id = 0, v->bos_id = 1, v->eos_id = 2, v->add_bos = 1;
    ck_assert_int_eq(qk_vocab_build_index(v), 0);
    ck_assert_int_eq(qk_vocab_to_gguf(v, w), 0);
    qk_vocab_free(v);
}

/* A 1-layer llama GGUF (F32, n_embd 32, 2 heads of 16, n_ff 32, 16 tokens)
 * with a vocabulary, plus n_extra KVs "junk.NNNNNNNN" (u32). */
static const char *tiny_gguf(const char *name, int64_t n_extra)
{
    const char *path = qk_test_tmp(name);
    qk_gguf_writer *w = NULL;
    qk_afile *f = NULL;
    ck_assert_int_eq(qk_gguf_writer_new(&w, 0), 0);
    ck_assert_int_eq(qk_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    static const struct {
        const char *k;
        uint32_t v;
    } u[] = {{"llama.context_length", 16},      {"llama.embedding_length", 32}, {"llama.block_count", 1},
             {"llama.feed_forward_length", 32}, {"llama.attention.head_count", 2},
             {"llama.attention.head_count_kv", 2}};
    for (size_t i = 0; i < sizeof u / sizeof *u; i++)
        ck_assert_int_eq(qk_gguf_writer_set_u32(w, u[i].k, u[i].v), 0);
    ck_assert_int_eq(qk_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f), 0);
    add_vocab(w);
    for (int64_t i = 0; i < n_extra; i++) {
        char k[32];
        snprintf(k, sizeof k, "junk.%08lld", (long long)i);
        ck_assert_int_eq(qk_gguf_writer_set_u32(w, k, (uint32_t)i), 0);
    }
    static const struct {
        const char *name;
        int64_t ne0, ne1;
    } ts[] = {{"token_embd.weight", 32, 16},      {"blk.0.attn_norm.weight", 32, 1}, {"blk.0.attn_q.weight", 32, 32},
              {"blk.0.attn_k.weight", 32, 32},    {"blk.0.attn_v.weight", 32, 32},   {"blk.0.attn_output.weight", 32, 32},
              {"blk.0.ffn_norm.weight", 32, 1},   {"blk.0.ffn_gate.weight", 32, 32}, {"blk.0.ffn_up.weight", 32, 32},
              {"blk.0.ffn_down.weight", 32, 32},  {"output_norm.weight", 32, 1}};
    const int n_ts = (int)(sizeof ts / sizeof *ts);
    for (int i = 0; i < n_ts; i++) {
        int64_t ne[2] = {ts[i].ne0, ts[i].ne1};
        ck_assert_int_eq(qk_gguf_writer_add_tensor(w, ts[i].name, QK_TYPE_F32, ts[i].ne1 == 1 ? 1 : 2, ne), 0);
    }
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), 0);
    for (int i = 0; i < n_ts; i++) {
        float d[32 * 32];
        for (int k = 0; k < ts[i].ne0 * ts[i].ne1; k++)
            d[k] = ts[i].ne1 == 1 ? 1.0f : (float)((k * 7 + i) % 11) / 11.0f - 0.5f;
        ck_assert_int_eq(qk_gguf_writer_write(w, d, (size_t)(ts[i].ne0 * ts[i].ne1) * sizeof(float)), 0);
        ck_assert_int_eq(qk_gguf_writer_end_tensor(w), 0);
    }
    ck_assert_int_eq(qk_gguf_writer_finish(w), 0);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_gguf_writer_free(w);
    return path;
}

/* A llama GGUF of n_layer layers as small as they get (n_embd 2, one head,
 * n_ff 2, 16 tokens): 9 tensors per layer. */
static const char *deep_gguf(const char *name, int n_layer)
{
    const char *path = qk_test_tmp(name);
    qk_gguf_writer *w = NULL;
    qk_afile *f = NULL;
    ck_assert_int_eq(qk_gguf_writer_new(&w, 0), 0);
    ck_assert_int_eq(qk_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "llama.embedding_length", 2), 0);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)n_layer), 0);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "llama.feed_forward_length", 2), 0);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "llama.attention.head_count", 1), 0);
    add_vocab(w);
    static const char *const per_layer[9] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                             "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
    const int64_t ne_emb[2] = {2, 16}, ne_mat[2] = {2, 2}, ne_vec[1] = {2};
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, "token_embd.weight", QK_TYPE_F32, 2, ne_emb), 0);
    for (int l = 0; l < n_layer; l++)
        for (int k = 0; k < 9; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, per_layer[k]);
            int vec = k == 0 || k == 5;
            ck_assert_int_eq(qk_gguf_writer_add_tensor(w, nm, QK_TYPE_F32, vec ? 1 : 2, vec ? ne_vec : ne_mat), 0);
        }
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, "output_norm.weight", QK_TYPE_F32, 1, ne_vec), 0);
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), 0);
    const float d[32] = {1.0f, 0.5f, -0.25f, 0.125f, 1.0f, 0.5f, -0.25f, 0.125f, 1.0f, 0.5f, -0.25f,
                         0.125f, 1.0f, 0.5f, -0.25f, 0.125f, 1.0f, 0.5f, -0.25f, 0.125f, 1.0f, 0.5f,
                         -0.25f, 0.125f, 1.0f, 0.5f, -0.25f, 0.125f, 1.0f, 0.5f, -0.25f, 0.125f};
    const int64_t n_t = 2 + 9 * (int64_t)n_layer;
    for (int64_t i = 0; i < n_t; i++) {
        size_t bytes = i == 0 ? sizeof d : (i == n_t - 1 || (i - 1) % 9 == 0 || (i - 1) % 9 == 5) ? 8 : 16;
        ck_assert_int_eq(qk_gguf_writer_write(w, d, bytes), 0);
        ck_assert_int_eq(qk_gguf_writer_end_tensor(w), 0);
    }
    ck_assert_int_eq(qk_gguf_writer_finish(w), 0);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_gguf_writer_free(w);
    return path;
}

/* ------------------------------------------------------------------- GGUF */

START_TEST(test_limits_gguf_kv_count_2e62)
{
    buf b = {0};
    gguf_header(&b, 0, 1ull << 62);
    b_fill(&b, 0, 64);
    const char *p = qk_test_tmp("kv2e62.gguf");
    b_save(&b, p);
    expect_refused("qk-inspect", p, "KV count 4611686018427387904 is over the limit of 1048576");
}
END_TEST

START_TEST(test_limits_gguf_tensor_count_2e62)
{
    buf b = {0};
    gguf_header(&b, 1ull << 62, 0);
    b_fill(&b, 0, 64);
    const char *p = qk_test_tmp("t2e62.gguf");
    b_save(&b, p);
    expect_refused("qk-inspect", p, "tensor count 4611686018427387904 is over the limit of 1048576");
}
END_TEST

START_TEST(test_limits_gguf_string_length_2e60)
{
    buf b = {0};
    gguf_header(&b, 0, 1);
    b_u64(&b, 1ull << 60); /* key length */
    b_fill(&b, 'k', 64);
    const char *p = qk_test_tmp("str2e60.gguf");
    b_save(&b, p);
    expect_refused("qk-inspect", p, "has length 1152921504606846976, over the limit of 16777216 bytes");
}
END_TEST

START_TEST(test_limits_gguf_vocab_2e40_tokens)
{
    buf b = {0};
    gguf_header(&b, 0, 1);
    b_str(&b, "tokenizer.ggml.tokens");
    b_u32(&b, QK_GGUF_ARRAY);
    b_u32(&b, QK_GGUF_STRING);
    b_u64(&b, 1ull << 40);
    b_str(&b, "a");
    const char *p = qk_test_tmp("vocab2e40.gguf");
    b_save(&b, p);
    expect_refused("qk-inspect", p, "array of 1099511627776 elements is over the limit of 268435456");
    /* the same as a --vocab file: refused while reading, not after */
    const char *m = tiny_llama2c();
    char args[2048];
    snprintf(args, sizeof args, "%s --vocab %s -o %s", m, p, qk_test_tmp("out.gguf"));
    expect_refused("qk-convert", args, "array of 1099511627776 elements is over the limit");
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "out.gguf"), 0);
}
END_TEST

START_TEST(test_limits_gguf_vocab_2e27_tokens_in_60_bytes)
{
    /* under the array limit, but far more strings than the file can hold */
    buf b = {0};
    gguf_header(&b, 0, 1);
    b_str(&b, "tokenizer.ggml.tokens");
    b_u32(&b, QK_GGUF_ARRAY);
    b_u32(&b, QK_GGUF_STRING);
    b_u64(&b, 1ull << 27);
    b_str(&b, "a");
    const char *p = qk_test_tmp("vocab2e27.gguf");
    b_save(&b, p);
    expect_refused("qk-inspect", p, "array of 134217728 strings needs at least 1073741824 bytes but only 9 follow");
}
END_TEST

START_TEST(test_limits_gguf_tensor_2e62_elements)
{
    /* F32 [2^31, 2^31]: 2^62 elements, 2^64 bytes */
    buf b = {0};
    gguf_header(&b, 1, 0);
    b_str(&b, "t");
    b_u32(&b, 2);
    b_u64(&b, 1ull << 31);
    b_u64(&b, 1ull << 31);
    b_u32(&b, QK_TYPE_F32);
    b_u64(&b, 0);
    const char *p = qk_test_tmp("t2e62e.gguf");
    b_save(&b, p);
    expect_refused("qk-inspect", p, "size of F32 [2147483648, 2147483648] overflows 64 bits");

    /* I8 [2^62]: a tensor claiming 4 EiB of data in a 100-byte file */
    gguf_header(&b, 1, 0);
    b_str(&b, "t");
    b_u32(&b, 1);
    b_u64(&b, 1ull << 62);
    b_u32(&b, QK_TYPE_I8);
    b_u64(&b, 0);
    const char *q = qk_test_tmp("t4eib.gguf");
    b_save(&b, q);
    expect_refused("qk-inspect", q, "ends past file size");
    char args[2048];
    snprintf(args, sizeof args, "%s -o %s", q, qk_test_tmp("out.gguf"));
    expect_refused("qk-convert", args, "ends past file size");
}
END_TEST

START_TEST(test_limits_gguf_262144_kvs_copied)
{
    /* qk-convert carries every key of a GGUF source; the writer used to look
     * keys up linearly (quadratic: minutes for 2^18 keys, hours for 2^20) */
    const char *p = tiny_gguf("kv2e18.gguf", 1 << 18);
    char *err = NULL;
    const char *out = qk_test_tmp("kv-out.gguf");
    int rc = run_limited(&err, "%s %s -o %s -q", qk_test_tool("qk-convert"), p, out);
    ck_assert_msg(rc == 0, "qk-convert: exit %d: %s", rc, err);
    free(err);
    qk_gguf *g = NULL;
    ck_assert_int_eq(qk_gguf_open(&g, out), 0);
    ck_assert_ptr_nonnull(qk_gguf_find_kv(g, "junk.00262143"));
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_limits_gguf_4096_layers)
{
    /* the most tensors a model may have (9 per layer, MAX_LAYERS 4096): every
     * tool looks tensors up by name, which used to be linear (quadratic
     * overall: 15-18 s for this 3.7 MB file in qk-convert and qk-quantize) */
    const char *p = deep_gguf("deep.gguf", 4096);
    char *err = NULL;
    int rc = run_limited(&err, "%s %s -o %s -q", qk_test_tool("qk-convert"), p, qk_test_tmp("deep-f16.gguf"));
    ck_assert_msg(rc == 0, "qk-convert: exit %d: %s", rc, err);
    free(err);
    rc = run_limited(&err, "%s %s %s Q8_0 -q", qk_test_tool("qk-quantize"), p, qk_test_tmp("deep-q8.gguf"));
    ck_assert_msg(rc == 0, "qk-quantize: exit %d: %s", rc, err);
    free(err);
    qk_gguf *g = NULL;
    ck_assert_int_eq(qk_gguf_open(&g, qk_test_tmp("deep-q8.gguf")), 0);
    ck_assert_int_eq(qk_gguf_n_tensors(g), 2 + 9 * 4096);
    qk_gguf_close(g);
}
END_TEST

/* ------------------------------------------------------------ safetensors */

START_TEST(test_limits_safetensors_header_2e40)
{
    buf b = {0};
    b_u64(&b, 1ull << 40);
    b_text(&b, "{}");
    const char *p = qk_test_tmp("h2e40.safetensors");
    b_save(&b, p);
    expect_refused("qk-inspect", p, "header length 1099511627776 exceeds the limit of 100000000 bytes");
}
END_TEST

START_TEST(test_limits_safetensors_50mb_nested)
{
    buf b = {0};
    b_u64(&b, 50000000);
    b_fill(&b, '[', 50000000);
    const char *p = qk_test_tmp("nest.safetensors");
    b_save(&b, p);
    expect_refused("qk-inspect", p, "header JSON nests deeper than 64 levels at offset 64");
}
END_TEST

START_TEST(test_limits_safetensors_50mb_flat_array)
{
    /* 25 million values: cJSON would build 1.6 GB of nodes */
    const char *head = "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,0],\"shape\":[";
    size_t n = 50000000;
    buf b = {0};
    b_u64(&b, n);
    b_text(&b, head);
    size_t body = n - strlen(head) - 3, pairs = (body - 1) / 2;
    for (size_t i = 0; i < pairs; i++)
        b_text(&b, "0,");
    b_fill(&b, ' ', body - 2 * pairs - 1);
    b_text(&b, "0");
    b_text(&b, "]}}");
    ck_assert_uint_eq(b.n, n + 8);
    const char *p = qk_test_tmp("flat.safetensors");
    b_save(&b, p);
    expect_refused("qk-inspect", p, "header JSON holds more than 4194304 values");
}
END_TEST

START_TEST(test_limits_safetensors_1m_metadata_keys)
{
    /* duplicate __metadata__ keys used to be found pairwise (hours for 10^6) */
    buf b = {0};
    b_u64(&b, 0);
    b_text(&b, "{\"__metadata__\":{");
    for (int i = 0; i < 1000000; i++) {
        char k[32];
        snprintf(k, sizeof k, "\"k%07d\":\"\",", i);
        b_text(&b, k);
    }
    b_text(&b, "\"k0000000\":\"\"}}");
    qk_wr_u64(b.p, b.n - 8);
    const char *p = qk_test_tmp("meta.safetensors");
    b_save(&b, p);
    expect_refused("qk-inspect", p, "__metadata__ key 'k0000000' appears twice");
}
END_TEST

/* --------------------------------------------------------------- llama2.c */

START_TEST(test_limits_llama2c_dims_overflow)
{
    /* dim = hidden = n_layers = seq_len = 2^30: n_layers * dim * dim = 2^90 */
    const int32_t h[7] = {1 << 30, 1 << 30, 1 << 30, 4, 4, 1 << 30, 1 << 30};
    buf b = {0};
    for (int i = 0; i < 7; i++)
        b_u32(&b, (uint32_t)h[i]);
    b_fill(&b, 0, 36);
    const char *p = qk_test_tmp("huge.bin");
    b_save(&b, p);
    expect_refused("qk-inspect", p, "imply a size beyond 2^64 bytes");
    char args[2048];
    snprintf(args, sizeof args, "%s --vocab %s -o %s", p, p, qk_test_tmp("out.gguf"));
    expect_refused("qk-convert", args, "imply a size beyond 2^64 bytes");
}
END_TEST

START_TEST(test_limits_vocab_hash_flooding)
{
    /* 2^16 tokens whose unseeded XXH3 falls in 1024 of the index's 2^17
     * slots: with a fixed hash every insertion walked one probe chain
     * (6.5 s for this 1 MB file, hours at 2^20 tokens); the vocabulary,
     * GGUF-writer and tokenizer tables now hash with a per-process seed */
    ck_assert(qk_hash64_table("token", 5) != qk_hash64("token", 5));
    const uint64_t n = 1u << 16, mask = (2u << 16) - 1;
    buf b = {0};
    gguf_header(&b, 0, 2);
    b_str(&b, "tokenizer.ggml.model");
    b_u32(&b, QK_GGUF_STRING);
    b_str(&b, "llama");
    b_str(&b, "tokenizer.ggml.tokens");
    b_u32(&b, QK_GGUF_ARRAY);
    b_u32(&b, QK_GGUF_STRING);
    b_u64(&b, n);
    char t[32];
    for (uint64_t found = 0, c = 0; found < n; c++) {
        int len = snprintf(t, sizeof t, "t%llx", (unsigned long long)c);
        if ((qk_hash64(t, (size_t)len) & mask) < 1024) {
            b_str(&b, t);
            found++;
        }
    }
    const char *p = qk_test_tmp("flood.gguf");
    b_save(&b, p);
    char args[2048];
    snprintf(args, sizeof args, "%s --vocab %s -o %s", tiny_llama2c(), p, qk_test_tmp("out.gguf"));
    expect_refused("qk-convert", args, "tokenizer has 65536 tokens but the model's vocabulary is 16");
}
END_TEST

/* ---------------------------------------------------------- tokenizer files */

START_TEST(test_limits_tokenizer_json_1e6_deep)
{
    buf b = {0};
    b_fill(&b, '[', 1000000);
    const char *p = qk_test_tmp("tokenizer.json");
    b_save(&b, p);
    char args[2048];
    snprintf(args, sizeof args, "%s --vocab %s -o %s", tiny_llama2c(), p, qk_test_tmp("out.gguf"));
    expect_refused("qk-convert", args, "JSON nests deeper than 64 levels at offset 64");
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "out.gguf"), 0);
}
END_TEST

START_TEST(test_limits_tokenizer_json_9m_values)
{
    buf b = {0};
    b_text(&b, "{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[");
    for (int i = 0; i < 9000000; i++)
        b_text(&b, "0,");
    b_text(&b, "0]}}");
    const char *p = qk_test_tmp("tokenizer.json");
    b_save(&b, p);
    char args[2048];
    snprintf(args, sizeof args, "%s --vocab %s -o %s", tiny_llama2c(), p, qk_test_tmp("out.gguf"));
    expect_refused("qk-convert", args, "JSON holds more than 8388608 values");
}
END_TEST

START_TEST(test_limits_spm_piece_2e40)
{
    /* ModelProto field 1 (pieces), length 2^40 as a varint */
    static const uint8_t pb[] = {0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x0a, 0x01, 0x61};
    const char *p = qk_test_tmp("tokenizer.model");
    qk_test_write_file(p, pb, sizeof pb);
    char args[2048];
    snprintf(args, sizeof args, "%s --vocab %s -o %s", tiny_llama2c(), p, qk_test_tmp("out.gguf"));
    expect_refused("qk-convert", args, "length 1099511627776 runs past the end");
}
END_TEST

START_TEST(test_limits_llama2c_vocab_2e31_tokens)
{
    /* a checkpoint whose header asks for 2^31-1 tokens from a 12-byte
     * tokenizer.bin: the checkpoint's own size check comes first */
    const int32_t h[7] = {8, 4, 1, 2, 1, INT32_MAX, 4};
    buf b = {0};
    for (int i = 0; i < 7; i++)
        b_u32(&b, (uint32_t)h[i]);
    const char *p = qk_test_tmp("bigvocab.bin");
    b_save(&b, p);
    b_u32(&b, 8);
    b_u32(&b, 0);
    b_u32(&b, 1);
    const char *t = qk_test_tmp("tokenizer.bin");
    b_save(&b, t);
    char args[2048];
    snprintf(args, sizeof args, "%s --vocab %s -o %s", p, t, qk_test_tmp("out.gguf"));
    expect_refused("qk-convert", args, "but the header (dim 8");
}
END_TEST

/* ------------------------------------------------- config.json, HF folders */

START_TEST(test_limits_config_json_1e6_deep)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/hf", qk_test_tmpdir());
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    buf b = {0};
    b_text(&b, "{\"architectures\":");
    b_fill(&b, '[', 1000000);
    char path[4300];
    snprintf(path, sizeof path, "%s/config.json", dir);
    b_save(&b, path);
    b_u64(&b, 2);
    b_text(&b, "{}");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    b_save(&b, path);
    char args[8192];
    snprintf(args, sizeof args, "%s -o %s --vocab %s", dir, qk_test_tmp("out.gguf"), tiny_gguf("v.gguf", 0));
    expect_refused("qk-convert", args, "config JSON nests deeper than 64 levels at offset");
}
END_TEST

/* ---------------------------------------------- saved base, imatrix files */

START_TEST(test_limits_basefile_claims_35tb)
{
    /* n_pos 2^32 x top-1024 (35 TB of arrays) from a 16-byte payload, with
     * a valid checksum so the header is what is judged */
    buf b = {0};
    b_text(&b, "QKBASE01");
    b_u32(&b, 1);
    b_u32(&b, 0);
    const uint64_t h[9] = {1ull << 32, 1024, 1u << 24, 512, 1, 1, 2, 3, 16};
    for (int i = 0; i < 9; i++)
        b_u64(&b, h[i]);
    b_fill(&b, 0, 16);
    b_u64(&b, qk_hash64(b.p, b.n));
    const char *p = qk_test_tmp("huge.qkbase");
    b_save(&b, p);
    const char *text = qk_test_tmp("text.txt");
    qk_test_write_file(text, "tok3 tok4\n", 10);
    char args[4096];
    snprintf(args, sizeof args, "--load-base %s --quant %s --text %s", p, tiny_gguf("q.gguf", 0), text);
    expect_refused("qk-eval", args, "but the payload has only 16 compressed bytes");
}
END_TEST

START_TEST(test_limits_imatrix_2e31_entries)
{
    buf b = {0};
    b_u32(&b, INT32_MAX);
    b_u32(&b, 1);
    b_text(&b, "x");
    const char *p = qk_test_tmp("huge.dat");
    b_save(&b, p);
    char args[4096];
    snprintf(args, sizeof args, "%s %s Q8_0 --imatrix %s", tiny_gguf("m.gguf", 0), qk_test_tmp("out.gguf"), p);
    expect_refused("qk-quantize", args, "entry count 2147483647 is impossible");
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "out.gguf"), 0);
}
END_TEST

Suite *qk_test_suite_limits(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_limits_gguf_kv_count_2e62);
    tcase_add_test(tc, test_limits_gguf_tensor_count_2e62);
    tcase_add_test(tc, test_limits_gguf_string_length_2e60);
    tcase_add_test(tc, test_limits_gguf_vocab_2e40_tokens);
    tcase_add_test(tc, test_limits_gguf_vocab_2e27_tokens_in_60_bytes);
    tcase_add_test(tc, test_limits_gguf_tensor_2e62_elements);
    tcase_add_test(tc, test_limits_gguf_262144_kvs_copied);
    tcase_add_test(tc, test_limits_gguf_4096_layers);
    tcase_add_test(tc, test_limits_safetensors_header_2e40);
    tcase_add_test(tc, test_limits_safetensors_50mb_nested);
    tcase_add_test(tc, test_limits_safetensors_50mb_flat_array);
    tcase_add_test(tc, test_limits_safetensors_1m_metadata_keys);
    tcase_add_test(tc, test_limits_llama2c_dims_overflow);
    tcase_add_test(tc, test_limits_vocab_hash_flooding);
    tcase_add_test(tc, test_limits_tokenizer_json_1e6_deep);
    tcase_add_test(tc, test_limits_tokenizer_json_9m_values);
    tcase_add_test(tc, test_limits_spm_piece_2e40);
    tcase_add_test(tc, test_limits_llama2c_vocab_2e31_tokens);
    tcase_add_test(tc, test_limits_config_json_1e6_deep);
    tcase_add_test(tc, test_limits_basefile_claims_35tb);
    tcase_add_test(tc, test_limits_imatrix_2e31_entries);
    suite_add_tcase(s, tc);
    return s;
}

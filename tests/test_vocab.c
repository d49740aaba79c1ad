/* Tests of formats/vocab*.c: llama2.c tokenizer.bin (equal to llama.cpp's
 * conversion of stories260K), SentencePiece tokenizer.model (equal to
 * llama.cpp's ggml-vocab-llama-spm.gguf), Hugging Face tokenizer.json in
 * both flavours and its writer, GGUF tokenizer.ggml.* keys both ways, the
 * hash index, and one test per rejection branch of every parser. */
#include "qk_test.h"

#include <math.h>
#include <sys/stat.h>

#include "quantkit/gguf.h"
#include "quantkit/vocab.h"
#include "vocab_internal.h" /* qk_vocab_duplicates */

#define TOK512 "models/stories260K/tok512.bin"
#define GOLDEN_F32 "golden/llamacpp/stories260K-f32.gguf"
#define SPM_MODEL "tokenizers/llama2/tokenizer.model"
#define SPM_GGUF "tokenizers/llama-spm/ggml-vocab-llama-spm.gguf"
#define SP "\xe2\x96\x81" /* U+2581 */

/* ----------------------------------------------------------------- helpers */

/* A growable byte buffer for building test files. */
typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    if (n)
        memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_u32(buf *b, uint32_t v)
{
    uint8_t t[4];
    qk_wr_u32(t, v);
    put(b, t, 4);
}

static void put_f32(buf *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(b, u);
}

static const char *save(const char *name, const buf *b)
{
    const char *path = qk_test_tmp(name);
    qk_test_write_file(path, b->p, b->n);
    return path;
}

static int strs_eq(const qk_str *a, const qk_str *b)
{
    return a->len == b->len && (a->len == 0 || !memcmp(a->s, b->s, (size_t)a->len));
}

static int f32_bits_eq(float a, float b) { return !memcmp(&a, &b, sizeof a); }

/* Everything GGUF stores, compared exactly (scores bitwise). */
static void assert_vocab_eq(const qk_vocab *a, const qk_vocab *b, int scores)
{
    ck_assert_int_eq(a->model, b->model);
    ck_assert_int_eq(a->n_tokens, b->n_tokens);
    for (int64_t i = 0; i < a->n_tokens; i++) {
        ck_assert_msg(strs_eq(&a->tokens[i], &b->tokens[i]), "token %lld: '%s' != '%s'", (long long)i,
                      a->tokens[i].s, b->tokens[i].s);
        ck_assert_msg(a->types[i] == b->types[i], "token %lld '%s': type %d != %d", (long long)i, a->tokens[i].s,
                      a->types[i], b->types[i]);
        if (scores)
            ck_assert_msg(f32_bits_eq(a->scores[i], b->scores[i]), "token %lld '%s': score %g != %g", (long long)i,
                          a->tokens[i].s, a->scores[i], b->scores[i]);
    }
    ck_assert_int_eq(a->bos_id, b->bos_id);
    ck_assert_int_eq(a->eos_id, b->eos_id);
    ck_assert_int_eq(a->unk_id, b->unk_id);
    ck_assert_int_eq(a->pad_id, b->pad_id);
    ck_assert_int_eq(a->n_merges, b->n_merges);
    for (int64_t i = 0; i < a->n_merges; i++)
        ck_assert(strs_eq(&a->merges[i], &b->merges[i]));
}

typedef int (*open_fn)(qk_vocab **out, const char *path);

static int open_tok512(qk_vocab **out, const char *path) { return qk_vocab_from_llama2c(out, path, 512); }
static int open_tokbin_eof(qk_vocab **out, const char *path) { return qk_vocab_from_llama2c(out, path, 0); }
static int open_tokbin_3(qk_vocab **out, const char *path) { return qk_vocab_from_llama2c(out, path, 3); }

/* The call fails with `code`, no output, and a one-line message that starts
 * with the path and contains `needle`. */
static void expect_reject(open_fn fn, const char *path, int code, const char *needle)
{
    qk_vocab *v = (qk_vocab *)&v;
    qk_error_clear();
    int rc = fn(&v, path);
    ck_assert_msg(rc < 0, "%s: accepted (expected '%s')", path, needle ? needle : "");
    ck_assert_ptr_null(v);
    if (code)
        ck_assert_msg(rc == code, "%s: code %d, expected %d (%s)", path, rc, code, qk_errmsg());
    ck_assert_msg(!strncmp(qk_errmsg(), path, strlen(path)), "message '%s' does not start with %s", qk_errmsg(),
                  path);
    ck_assert_msg(!strchr(qk_errmsg(), '\n'), "message has a newline: %s", qk_errmsg());
    if (needle)
        ck_assert_msg(strstr(qk_errmsg(), needle) != NULL, "message '%s' lacks '%s'", qk_errmsg(), needle);
}

/* A parse that may succeed or fail but must not crash, and fails cleanly. */
static void expect_clean(open_fn fn, const char *path)
{
    qk_vocab *v = NULL;
    qk_error_clear();
    int rc = fn(&v, path);
    if (rc == 0) {
        ck_assert_ptr_nonnull(v);
        ck_assert_int_gt(v->n_tokens, 0);
        qk_vocab_free(v);
    } else {
        ck_assert_ptr_null(v);
        ck_assert_msg(!strncmp(qk_errmsg(), path, strlen(path)), "message '%s' does not start with %s",
                      qk_errmsg(), path);
    }
}

static int open_json_fn(qk_vocab **out, const char *path) { return qk_vocab_from_tokenizer_json(out, path); }

/* ---- tokenizer.bin builder */

static void tb_token(buf *b, float score, const char *text, int32_t len)
{
    put_f32(b, score);
    put_u32(b, (uint32_t)len);
    put(b, text, strlen(text));
}

/* A small tokenizer.bin: the llama2.c specials, then `texts`. */
static void tb_small(buf *b, const char *const *texts, int n)
{
    put_u32(b, 16);
    tb_token(b, 0, "<unk>", 5);
    tb_token(b, 0, "\n<s>\n", 5);
    tb_token(b, 0, "\n</s>\n", 6);
    for (int i = 0; i < n; i++)
        tb_token(b, (float)-i, texts[i], (int32_t)strlen(texts[i]));
}

/* ---- protobuf builder */

static void pb_varint(buf *b, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            c |= 0x80;
        put(b, &c, 1);
    } while (v);
}

static void pb_key(buf *b, uint32_t field, int wire) { pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }

static void pb_bytes(buf *b, uint32_t field, const void *d, size_t n)
{
    pb_key(b, field, 2);
    pb_varint(b, n);
    put(b, d, n);
}

static void pb_uint(buf *b, uint32_t field, uint64_t v)
{
    pb_key(b, field, 0);
    pb_varint(b, v);
}

static void pb_float(buf *b, uint32_t field, float f)
{
    pb_key(b, field, 5);
    put_f32(b, f);
}

static void pb_piece(buf *out, const char *text, float score, int type)
{
    buf p = {0};
    if (text)
        pb_bytes(&p, 1, text, strlen(text));
    pb_float(&p, 2, score);
    if (type)
        pb_uint(&p, 3, (uint64_t)type);
    pb_bytes(out, 1, p.p, p.n);
    free(p.p);
}

/* A valid 5-piece model; `trainer`/`normalizer` appended when non-NULL. */
static void pb_small(buf *b, const buf *trainer, const buf *normalizer)
{
    pb_piece(b, "<unk>", 0, 2);
    pb_piece(b, "<s>", 0, 3);
    pb_piece(b, "</s>", 0, 3);
    pb_piece(b, SP "a", -1.5f, 0);
    pb_piece(b, "<0x0A>", 0, 6);
    if (trainer)
        pb_bytes(b, 2, trainer->p, trainer->n);
    if (normalizer)
        pb_bytes(b, 3, normalizer->p, normalizer->n);
}

/* ---- GGUF helpers */

static qk_gguf_writer *new_writer(void)
{
    qk_gguf_writer *w = NULL;
    ck_assert_msg(qk_gguf_writer_new(&w, 0) == 0, "%s", qk_errmsg());
    qk_gguf_writer_set_checksums(w, 0);
    return w;
}

/* Write the writer's KVs (no tensors) to tmp/name and open it. */
static qk_gguf *finish_gguf(qk_gguf_writer *w, const char *name)
{
    const char *path = qk_test_tmp(name);
    qk_afile *f = NULL;
    ck_assert_msg(qk_afile_open(&f, path) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_gguf_writer_begin(w, f) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_gguf_writer_finish(w) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_afile_commit(f) == 0, "%s", qk_errmsg());
    qk_gguf_writer_free(w);
    qk_gguf *g = NULL;
    ck_assert_msg(qk_gguf_open(&g, path) == 0, "%s", qk_errmsg());
    return g;
}

static qk_gguf *vocab_to_gguf_file(const qk_vocab *v, const char *name)
{
    qk_gguf_writer *w = new_writer();
    ck_assert_msg(qk_vocab_to_gguf(v, w) == 0, "%s", qk_errmsg());
    return finish_gguf(w, name);
}

static void expect_gguf_reject(qk_gguf *g, int code, const char *needle)
{
    qk_vocab *v = (qk_vocab *)&v;
    qk_error_clear();
    int rc = qk_vocab_from_gguf(&v, g);
    ck_assert_msg(rc < 0, "accepted (expected '%s')", needle);
    ck_assert_ptr_null(v);
    ck_assert_msg(rc == code, "code %d, expected %d (%s)", rc, code, qk_errmsg());
    const char *path = qk_gguf_path(g);
    ck_assert_msg(!strncmp(qk_errmsg(), path, strlen(path)), "message '%s' does not start with %s", qk_errmsg(),
                  path);
    ck_assert_msg(strstr(qk_errmsg(), needle) != NULL, "message '%s' lacks '%s'", qk_errmsg(), needle);
    qk_gguf_close(g);
}

/* A writer holding a minimal valid llama vocabulary of 3 tokens. */
static qk_gguf_writer *minimal_writer(void)
{
    qk_gguf_writer *w = new_writer();
    const char *toks[3] = {"<unk>", "<s>", "</s>"};
    ck_assert(qk_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama") == 0);
    ck_assert(qk_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3) == 0);
    return w;
}

/* ---- tokenizer.json builders */

static const char *write_text(const char *dir, const char *name, const char *text)
{
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", qk_test_tmpdir(), dir);
    mkdir(sub, 0777);
    char rel[4096];
    snprintf(rel, sizeof rel, "%s/%s", dir, name);
    const char *path = qk_test_tmp(rel);
    qk_test_write_file(path, text, strlen(text));
    return path;
}

/* A Llama-2-style (SentencePiece-as-BPE) tokenizer.json. */
static const char *SPM_JSON =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
    "\"added_tokens\":["
    "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,"
    "\"special\":true},"
    "{\"id\":1,\"content\":\"<s>\",\"special\":true},{\"id\":2,\"content\":\"</s>\",\"special\":true},"
    "{\"id\":10,\"content\":\"<tool>\",\"special\":false}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"" SP "\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"" SP "\"}]},"
    "\"pre_tokenizer\":null,"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","
    "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"" SP
    "\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"byte_fallback\":true,"
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"<0x0A>\":3,\"" SP "\":4,\"a\":5,\"b\":6,\"" SP "a\":7,"
    "\"ab\":8,\"" SP "ab\":9},"
    "\"merges\":[\"" SP " a\",\"a b\",\"" SP "a b\",\"" SP " ab\"]}}";

/* A GPT-2-style byte-level BPE tokenizer.json (merges as pairs). */
static const char *BPE_JSON =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":6,\"content\":\"<|endoftext|>\",\"special\":true}],"
    "\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
    "\"post_processor\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"unk_token\":null,\"byte_fallback\":false,"
    "\"vocab\":{\"!\":0,\"a\":1,\"b\":2,\"\xc4\xa0\":3,\"ab\":4,\"\xc4\xa0" "ab\":5,\"<|endoftext|>\":6},"
    "\"merges\":[[\"a\",\"b\"],[\"\xc4\xa0\",\"ab\"]]}}";

/* tokenizer.json text with `model_body` inside "model": {...}. */
static const char *json_with_model(const char *dir, const char *model_body, const char *added)
{
    static char text[8192];
    snprintf(text, sizeof text,
             "{\"added_tokens\":%s,\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",%s}}",
             added ? added : "[]", model_body);
    return write_text(dir, "tokenizer.json", text);
}

/* ================================================================ llama2.c */

START_TEST(test_vocab_llama2c_rules_tok512)
{
    QK_REQUIRE_DATA(path, TOK512);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_llama2c(&v, path, 512) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->model, QK_VOCAB_SPM);
    ck_assert_ptr_null(v->pre);
    ck_assert_int_eq(v->n_tokens, 512);
    ck_assert_str_eq(v->tokens[0].s, "<unk>");
    ck_assert_str_eq(v->tokens[1].s, "<s>"); /* the file holds "\n<s>\n" */
    ck_assert_str_eq(v->tokens[2].s, "</s>");
    ck_assert_str_eq(v->tokens[3].s, "<0x00>");
    ck_assert_str_eq(v->tokens[258].s, "<0xFF>");
    ck_assert_str_eq(v->tokens[259].s, SP "t"); /* " t" */
    ck_assert_int_eq(v->types[0], QK_TOKEN_UNKNOWN);
    ck_assert_int_eq(v->types[1], QK_TOKEN_CONTROL);
    ck_assert_int_eq(v->types[2], QK_TOKEN_CONTROL);
    int counts[7] = {0};
    for (int i = 0; i < 512; i++)
        counts[v->types[i]]++;
    ck_assert_int_eq(counts[QK_TOKEN_BYTE], 256);
    ck_assert_int_eq(counts[QK_TOKEN_NORMAL], 253);
    ck_assert_float_eq(v->scores[261], -2.0f);
    ck_assert_int_eq(v->unk_id, 0);
    ck_assert_int_eq(v->bos_id, 1);
    ck_assert_int_eq(v->eos_id, 2);
    ck_assert_int_eq(v->pad_id, -1);
    ck_assert_int_eq(v->add_bos, 1);
    ck_assert_int_eq(v->add_eos, 0);
    ck_assert_int_eq(v->add_space_prefix, 1);
    ck_assert_int_eq(v->byte_fallback, 1);
    /* tok512's texts are unique, and every one finds its own id */
    ck_assert_int_eq(qk_vocab_duplicates(v, NULL, NULL), 0);
    for (int i = 0; i < 512; i++)
        ck_assert_int_eq(qk_vocab_find(v, v->tokens[i].s, (size_t)v->tokens[i].len), i);
    ck_assert_int_eq(qk_vocab_find(v, SP "the", 6), 265);
    ck_assert_int_eq(qk_vocab_find(v, " the", 4), -1);
    qk_vocab_free(v);

    /* no count: read to the end of the file, same result */
    ck_assert_msg(qk_vocab_from_llama2c(&v, path, 0) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->n_tokens, 512);
    qk_vocab_free(v);
}
END_TEST

START_TEST(test_vocab_llama2c_equals_llamacpp_golden)
{
    QK_REQUIRE_DATA(path, TOK512);
    QK_REQUIRE_DATA(golden, GOLDEN_F32);
    qk_vocab *v = NULL, *gv = NULL, *rt = NULL;
    qk_gguf *g = NULL;
    ck_assert_msg(qk_vocab_from_llama2c(&v, path, 512) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_gguf_open(&g, golden) == 0, "%s", qk_errmsg());
    const char *model = NULL;
    ck_assert(qk_gguf_get_str(g, "tokenizer.ggml.model", &model) == 0);
    ck_assert_str_eq(model, "llama");
    ck_assert_msg(qk_vocab_from_gguf(&gv, g) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(gv->n_tokens, 512);
    /* tokens, scores (bitwise), types, unk/bos/eos 0/1/2; padding 0xFFFFFFFF reads as none */
    assert_vocab_eq(v, gv, 1);
    qk_gguf_close(g);

    /* and our GGUF keys read back identically */
    g = vocab_to_gguf_file(v, "tok512.gguf");
    ck_assert_msg(qk_vocab_from_gguf(&rt, g) == 0, "%s", qk_errmsg());
    assert_vocab_eq(v, rt, 1);
    ck_assert_int_eq(rt->add_bos, 1);
    ck_assert_int_eq(rt->add_eos, 0);
    ck_assert_int_eq(rt->add_space_prefix, 1);
    qk_gguf_close(g);
    qk_vocab_free(v);
    qk_vocab_free(gv);
    qk_vocab_free(rt);
}
END_TEST

START_TEST(test_vocab_llama2c_synthetic_rules)
{
    /* ids 0..2 take fixed texts whatever the file says; an empty text is
     * CONTROL; sscanf("<0x%02hhX>") decides BYTE, quirks included; spaces
     * become U+2581 everywhere. */
    const char *texts[] = {"", "<0x4", "<0xZZ>", "<0x41>", "a b  c", "<0x0a>"};
    buf b = {0};
    put_u32(&b, 8);
    tb_token(&b, 1.0f, "x y", 3);
    tb_token(&b, 2.0f, "", 0);
    tb_token(&b, 3.0f, " ", 1);
    for (int i = 0; i < 6; i++)
        tb_token(&b, (float)-i, texts[i], (int32_t)strlen(texts[i]));
    const char *path = save("synth.bin", &b);
    free(b.p);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_llama2c(&v, path, 9) == 0, "%s", qk_errmsg());
    ck_assert_str_eq(v->tokens[0].s, "<unk>");
    ck_assert_str_eq(v->tokens[1].s, "<s>");
    ck_assert_str_eq(v->tokens[2].s, "</s>");
    ck_assert_float_eq(v->scores[0], 1.0f);
    ck_assert_float_eq(v->scores[2], 3.0f);
    ck_assert_int_eq(v->tokens[3].len, 0);
    ck_assert_int_eq(v->types[3], QK_TOKEN_CONTROL);
    ck_assert_int_eq(v->types[4], QK_TOKEN_BYTE);   /* "<0x4": sscanf matches one hex digit */
    ck_assert_int_eq(v->types[5], QK_TOKEN_NORMAL); /* "<0xZZ>" */
    ck_assert_int_eq(v->types[6], QK_TOKEN_BYTE);
    ck_assert_str_eq(v->tokens[7].s, "a" SP "b" SP SP "c");
    ck_assert_int_eq(v->types[7], QK_TOKEN_NORMAL);
    ck_assert_int_eq(v->types[8], QK_TOKEN_BYTE); /* lower-case hex */
    ck_assert_int_eq(qk_vocab_find(v, "", 0), 3);
    qk_vocab_free(v);

    /* fewer tokens than the specials: ids beyond the vocabulary are absent */
    buf b2 = {0};
    put_u32(&b2, 8);
    tb_token(&b2, 0, "<unk>", 5);
    path = save("one.bin", &b2);
    free(b2.p);
    ck_assert_msg(qk_vocab_from_llama2c(&v, path, 0) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->n_tokens, 1);
    ck_assert_int_eq(v->unk_id, 0);
    ck_assert_int_eq(v->bos_id, -1);
    ck_assert_int_eq(v->eos_id, -1);
    ck_assert_int_eq(v->byte_fallback, 0);
    qk_vocab_free(v);
}
END_TEST

START_TEST(test_vocab_llama2c_rejects_truncated)
{
    QK_REQUIRE_DATA(src, TOK512);
    size_t n;
    uint8_t *b = qk_test_read_file(src, &n);
    /* record boundaries, to know which cuts are valid shorter files when no count is given */
    uint8_t *boundary = calloc(n + 1, 1);
    ck_assert_ptr_nonnull(boundary);
    for (size_t off = 4; off <= n;) {
        boundary[off] = 1;
        if (off == n)
            break;
        off += 8 + qk_rd_u32(b + off + 4);
    }
    const char *path = qk_test_tmp("cut.bin");
    int checked = 0;
    for (size_t cut = 0; cut < n; cut += cut < 300 ? 1 : 37) {
        qk_test_write_file(path, b, cut);
        expect_reject(open_tok512, path, QK_EFORMAT, cut < 4 ? "shorter than the 4-byte" : NULL);
        if (cut >= 4 && !boundary[cut])
            expect_reject(open_tokbin_eof, path, QK_EFORMAT, NULL);
        else if (cut > 4) {
            qk_vocab *v = NULL;
            ck_assert_msg(qk_vocab_from_llama2c(&v, path, 0) == 0, "cut %zu: %s", cut, qk_errmsg());
            ck_assert_int_lt(v->n_tokens, 512);
            qk_vocab_free(v);
        }
        checked++;
    }
    ck_assert_int_gt(checked, 400);
    /* cut inside a record header: 8 bytes needed */
    qk_test_write_file(path, b, 4 + 8 + 5 + 3);
    expect_reject(open_tokbin_eof, path, QK_EFORMAT, "needs 8 bytes");
    expect_reject(open_tok512, path, QK_EFORMAT, "vocab_size");
    free(boundary);
    free(b);
}
END_TEST

START_TEST(test_vocab_llama2c_rejects_bad_records)
{
    buf b = {0};
    put_u32(&b, 8);
    tb_token(&b, 0, "", -1);
    expect_reject(open_tokbin_eof, save("neg.bin", &b), QK_EFORMAT, "negative length -1");
    b.n = 0;
    put_u32(&b, 8);
    tb_token(&b, 0, "abc", INT32_MAX);
    expect_reject(open_tokbin_eof, save("huge.bin", &b), QK_EFORMAT, "2147483647 bytes");
    b.n = 0;
    put_u32(&b, 8);
    tb_token(&b, 0, "abc", (int32_t)0x80000000u);
    expect_reject(open_tokbin_eof, save("min.bin", &b), QK_EFORMAT, "negative length");
    b.n = 0;
    put_u32(&b, 8);
    tb_token(&b, NAN, "abc", 3);
    expect_reject(open_tokbin_eof, save("nan.bin", &b), QK_ENONFINITE, "non-finite score");
    b.n = 0;
    put_u32(&b, 8);
    tb_token(&b, -INFINITY, "abc", 3);
    expect_reject(open_tokbin_eof, save("inf.bin", &b), QK_ENONFINITE, "token 0");
    b.n = 0;
    put_u32(&b, 8);
    expect_reject(open_tokbin_eof, save("empty.bin", &b), QK_EFORMAT, "no tokens");
    b.n = 0;
    put(&b, "\x08\x00", 2);
    expect_reject(open_tokbin_eof, save("short.bin", &b), QK_EFORMAT, "shorter than the 4-byte");
    /* more tokens than the model's vocab_size: trailing records */
    b.n = 0;
    const char *t[] = {"a", "b"};
    tb_small(&b, t, 2);
    expect_reject(open_tokbin_3, save("extra.bin", &b), QK_EFORMAT, "bytes remain after the 3 tokens");
    free(b.p);
    /* a count beyond the limit is refused before reading */
    qk_vocab *v = (qk_vocab *)&v;
    ck_assert_int_eq(qk_vocab_from_llama2c(&v, "nonexistent.bin", (int64_t)QK_VOCAB_MAX_TOKENS + 1), QK_ELIMIT);
    ck_assert_ptr_null(v);
    expect_reject(open_tokbin_eof, qk_test_tmp("absent.bin"), QK_ENOTFOUND, NULL);
}
END_TEST

/* =================================================================== index */

START_TEST(test_vocab_find_and_duplicates)
{
    const char *t[] = {"a", "ab", "a", "abc", ""};
    buf b = {0};
    tb_small(&b, t, 5);
    const char *path = save("dup.bin", &b);
    free(b.p);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_llama2c(&v, path, 0) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->n_tokens, 8);
    ck_assert_int_eq(qk_vocab_find(v, "a", 1), 3); /* first of the duplicates */
    ck_assert_int_eq(qk_vocab_find(v, "ab", 2), 4);
    ck_assert_int_eq(qk_vocab_find(v, "abc", 3), 6);
    ck_assert_int_eq(qk_vocab_find(v, "abc", 2), 4); /* length counts, not NUL */
    ck_assert_int_eq(qk_vocab_find(v, "", 0), 7);
    ck_assert_int_eq(qk_vocab_find(v, "abcd", 4), -1);
    ck_assert_int_eq(qk_vocab_find(NULL, "a", 1), -1);
    int64_t dup, of;
    ck_assert_int_eq(qk_vocab_duplicates(v, &dup, &of), 1);
    ck_assert_int_eq(dup, 5);
    ck_assert_int_eq(of, 3);
    /* llama.cpp requires unique tokens: the GGUF and tokenizer.json writers refuse */
    qk_gguf_writer *w = new_writer();
    ck_assert_int_eq(qk_vocab_to_gguf(v, w), QK_EFORMAT);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "token 5 'a' repeats token 3"));
    qk_gguf_writer_free(w);
    const char *out = qk_test_tmp("dup.json");
    ck_assert_int_eq(qk_vocab_write_tokenizer_json(v, out), QK_EFORMAT);
    ck_assert(!qk_file_exists(out));
    qk_vocab_free(v);
    qk_vocab_free(NULL);
}
END_TEST

/* ============================================================ SentencePiece */

START_TEST(test_vocab_spm_llama2_equals_llamacpp)
{
    QK_REQUIRE_DATA(path, SPM_MODEL);
    QK_REQUIRE_DATA(gpath, SPM_GGUF);
    qk_vocab *v = NULL, *gv = NULL;
    ck_assert_msg(qk_vocab_from_spm_model(&v, path) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->n_tokens, 32000);
    ck_assert_int_eq(v->model, QK_VOCAB_SPM);
    ck_assert_int_eq(v->unk_id, 0);
    ck_assert_int_eq(v->bos_id, 1);
    ck_assert_int_eq(v->eos_id, 2);
    ck_assert_int_eq(v->pad_id, -1);
    ck_assert_int_eq(v->byte_fallback, 1);
    ck_assert_int_eq(v->add_space_prefix, 1);
    ck_assert_int_eq(v->add_bos, 1);
    ck_assert_int_eq(v->add_eos, 0);
    ck_assert_int_eq(qk_vocab_duplicates(v, NULL, NULL), 0);
    for (int i = 0; i < 32000; i++)
        ck_assert_int_eq(qk_vocab_find(v, v->tokens[i].s, (size_t)v->tokens[i].len), i);

    qk_gguf *g = NULL;
    ck_assert_msg(qk_gguf_open(&g, gpath) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_vocab_from_gguf(&gv, g) == 0, "%s", qk_errmsg());
    assert_vocab_eq(v, gv, 1);
    ck_assert_int_eq(gv->add_bos, 1);
    ck_assert_int_eq(gv->add_eos, 0);
    qk_gguf_close(g);
    qk_vocab_free(v);
    qk_vocab_free(gv);
}
END_TEST

START_TEST(test_vocab_gguf_round_trip_llama2_spm)
{
    QK_REQUIRE_DATA(path, SPM_MODEL);
    qk_vocab *v = NULL, *rt = NULL;
    ck_assert_msg(qk_vocab_from_spm_model(&v, path) == 0, "%s", qk_errmsg());
    qk_gguf *g = vocab_to_gguf_file(v, "llama2-vocab.gguf");
    ck_assert_msg(qk_vocab_from_gguf(&rt, g) == 0, "%s", qk_errmsg());
    assert_vocab_eq(v, rt, 1);
    ck_assert_int_eq(rt->add_bos, 1);
    ck_assert_int_eq(rt->add_eos, 0);
    ck_assert_int_eq(rt->add_space_prefix, 1);
    ck_assert_int_eq(rt->byte_fallback, 1);
    ck_assert_ptr_null(qk_gguf_find_kv(g, "tokenizer.ggml.merges"));
    ck_assert_ptr_null(qk_gguf_find_kv(g, "tokenizer.ggml.padding_token_id"));
    qk_gguf_close(g);
    qk_vocab_free(v);
    qk_vocab_free(rt);
}
END_TEST

START_TEST(test_vocab_spm_synthetic_fields)
{
    /* trainer spec with every wire type of unknown field, custom ids, no
     * byte fallback; normalizer without the dummy prefix */
    buf tr = {0}, no = {0}, b = {0};
    pb_bytes(&tr, 1, "input.txt", 9);
    pb_uint(&tr, 3, 2);
    pb_float(&tr, 10, 0.9995f);
    pb_key(&tr, 60, 1);
    put(&tr, "12345678", 8);
    pb_uint(&tr, 35, 0);
    pb_uint(&tr, 40, 3);
    pb_uint(&tr, 41, (uint64_t)-1); /* bos_id -1: none (10-byte varint) */
    pb_uint(&tr, 42, 2);
    pb_uint(&tr, 43, 1);
    pb_bytes(&no, 1, "identity", 8);
    pb_uint(&no, 3, 0);
    pb_small(&b, &tr, &no);
    pb_uint(&b, 99, 7);    /* unknown top-level fields */
    pb_bytes(&b, 4, "", 0); /* self_test_data */
    const char *path = save("synth.model", &b);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_spm_model(&v, path) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->n_tokens, 5);
    ck_assert_str_eq(v->tokens[3].s, SP "a");
    ck_assert_float_eq(v->scores[3], -1.5f);
    ck_assert_int_eq(v->types[0], QK_TOKEN_UNKNOWN);
    ck_assert_int_eq(v->types[1], QK_TOKEN_CONTROL);
    ck_assert_int_eq(v->types[3], QK_TOKEN_NORMAL); /* type field absent: NORMAL */
    ck_assert_int_eq(v->types[4], QK_TOKEN_BYTE);
    ck_assert_int_eq(v->unk_id, 3);
    ck_assert_int_eq(v->bos_id, -1);
    ck_assert_int_eq(v->eos_id, 2);
    ck_assert_int_eq(v->pad_id, 1);
    ck_assert_int_eq(v->byte_fallback, 0);
    ck_assert_int_eq(v->add_space_prefix, 0);
    qk_vocab_free(v);

    /* no specs at all: sentencepiece's defaults */
    b.n = 0;
    pb_small(&b, NULL, NULL);
    ck_assert_msg(qk_vocab_from_spm_model(&v, save("plain.model", &b)) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->unk_id, 0);
    ck_assert_int_eq(v->bos_id, 1);
    ck_assert_int_eq(v->eos_id, 2);
    ck_assert_int_eq(v->pad_id, -1);
    ck_assert_int_eq(v->add_space_prefix, 1);
    qk_vocab_free(v);
    free(tr.p);
    free(no.p);
    free(b.p);
}
END_TEST

static const char *spm_file(const char *name, const uint8_t *bytes, size_t n)
{
    const char *path = qk_test_tmp(name);
    qk_test_write_file(path, bytes, n);
    return path;
}

START_TEST(test_vocab_spm_rejects_bad_wire_data)
{
    open_fn fn = qk_vocab_from_spm_model;
    buf b = {0};
    /* a key varint cut short */
    expect_reject(fn, spm_file("v1.model", (const uint8_t *)"\x8a", 1), QK_EFORMAT, "truncated varint");
    /* a varint of 11 bytes */
    expect_reject(fn, spm_file("v2.model", (const uint8_t *)"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 11),
                  QK_EFORMAT, "varint");
    /* a 10-byte varint whose last byte holds more than bit 63 */
    expect_reject(fn, spm_file("v3.model", (const uint8_t *)"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11),
                  QK_EFORMAT, "overflows 64 bits");
    /* a length past the end */
    expect_reject(fn, spm_file("l1.model", (const uint8_t *)"\x0a\x05" "ab", 4), QK_EFORMAT, "runs past the end");
    /* a huge length */
    expect_reject(fn, spm_file("l2.model", (const uint8_t *)"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10),
                  QK_EFORMAT, "runs past the end");
    /* fixed64 / fixed32 cut short */
    expect_reject(fn, spm_file("f1.model", (const uint8_t *)"\x09" "abc", 4), QK_EFORMAT, "fixed64");
    expect_reject(fn, spm_file("f2.model", (const uint8_t *)"\x0d" "ab", 3), QK_EFORMAT, "fixed32");
    /* group wire types 3 and 4, and undefined 6, 7 */
    expect_reject(fn, spm_file("g3.model", (const uint8_t *)"\x0b", 1), QK_EFORMAT, "wire type 3");
    expect_reject(fn, spm_file("g4.model", (const uint8_t *)"\x0c", 1), QK_EFORMAT, "wire type 4");
    expect_reject(fn, spm_file("g6.model", (const uint8_t *)"\x0e", 1), QK_EFORMAT, "wire type 6");
    expect_reject(fn, spm_file("g7.model", (const uint8_t *)"\x0f", 1), QK_EFORMAT, "wire type 7");
    /* field number 0 */
    expect_reject(fn, spm_file("z.model", (const uint8_t *)"\x02\x00", 2), QK_EFORMAT, "field number 0");
    /* pieces field with the wrong wire type */
    expect_reject(fn, spm_file("w.model", (const uint8_t *)"\x08\x01", 2), QK_EFORMAT,
                  "ModelProto field 1 has wire type 0");
    /* a length inside a piece past the piece's end (but not the file's) */
    b.n = 0;
    pb_key(&b, 1, 2);
    pb_varint(&b, 3);
    put(&b, "\x0a\x09x", 3);
    pb_bytes(&b, 99, "padding-after-the-piece", 23);
    expect_reject(fn, save("inner.model", &b), QK_EFORMAT, "runs past the end");
    free(b.p);
    /* an empty file */
    expect_reject(fn, spm_file("empty.model", (const uint8_t *)"", 0), QK_EFORMAT, "empty file");
    /* a message with no pieces */
    expect_reject(fn, spm_file("nopieces.model", (const uint8_t *)"\x12\x00", 2), QK_EFORMAT, "no pieces");
    expect_reject(fn, qk_test_tmp("absent.model"), QK_ENOTFOUND, NULL);
}
END_TEST

START_TEST(test_vocab_spm_rejects_bad_fields)
{
    open_fn fn = qk_vocab_from_spm_model;
    buf b = {0}, p = {0}, tr = {0};
#define PIECE_CASE(name, code, needle, body)                                                                           \
    do {                                                                                                               \
        b.n = p.n = 0;                                                                                                 \
        pb_piece(&b, "<unk>", 0, 2);                                                                                   \
        body;                                                                                                          \
        pb_bytes(&b, 1, p.p, p.n);                                                                                     \
        expect_reject(fn, save(name, &b), code, needle);                                                               \
    } while (0)
    PIECE_CASE("type9.model", QK_EFORMAT, "piece 1 has type 9", {
        pb_bytes(&p, 1, "x", 1);
        pb_uint(&p, 3, 9);
    });
    PIECE_CASE("type0.model", QK_EFORMAT, "has type 0", {
        pb_bytes(&p, 1, "x", 1);
        pb_uint(&p, 3, 0);
    });
    PIECE_CASE("nopiece.model", QK_EFORMAT, "piece 1 has no text", { pb_float(&p, 2, 1.0f); });
    PIECE_CASE("emptypiece.model", QK_EFORMAT, "no text", { pb_bytes(&p, 1, "", 0); });
    PIECE_CASE("nan.model", QK_ENONFINITE, "NaN score", {
        pb_bytes(&p, 1, "x", 1);
        pb_float(&p, 2, NAN);
    });
    PIECE_CASE("scorewire.model", QK_EFORMAT, "SentencePiece field 2 has wire type 0", {
        pb_bytes(&p, 1, "x", 1);
        pb_uint(&p, 2, 1);
    });
    PIECE_CASE("piecewire.model", QK_EFORMAT, "SentencePiece field 1 has wire type 5", { pb_float(&p, 1, 1.0f); });
    PIECE_CASE("typewire.model", QK_EFORMAT, "SentencePiece field 3 has wire type 2", {
        pb_bytes(&p, 1, "x", 1);
        pb_bytes(&p, 3, "x", 1);
    });
#undef PIECE_CASE
#define SPEC_CASE(name, code, needle, field, body)                                                                     \
    do {                                                                                                               \
        b.n = tr.n = 0;                                                                                                \
        pb_piece(&b, "<unk>", 0, 2);                                                                                   \
        pb_piece(&b, "<s>", 0, 3);                                                                                     \
        pb_piece(&b, "</s>", 0, 3);                                                                                    \
        body;                                                                                                          \
        pb_bytes(&b, field, tr.p, tr.n);                                                                               \
        expect_reject(fn, save(name, &b), code, needle);                                                               \
    } while (0)
    SPEC_CASE("unk.model", QK_EFORMAT, "trainer_spec.unk_id = 5 but the model has 3 pieces", 2,
              { pb_uint(&tr, 40, 5); });
    SPEC_CASE("bos.model", QK_EFORMAT, "bos_id = 3 ", 2, { pb_uint(&tr, 41, 3); });
    SPEC_CASE("eos.model", QK_EFORMAT, "eos_id", 2, { pb_uint(&tr, 42, 7); });
    SPEC_CASE("pad.model", QK_EFORMAT, "pad_id", 2, { pb_uint(&tr, 43, 1000); });
    SPEC_CASE("big.model", QK_EFORMAT, "does not fit int32", 2, { pb_uint(&tr, 41, (uint64_t)1 << 40); });
    SPEC_CASE("bfwire.model", QK_EFORMAT, "TrainerSpec field 35 has wire type 2", 2,
              { pb_bytes(&tr, 35, "x", 1); });
    SPEC_CASE("idwire.model", QK_EFORMAT, "TrainerSpec field 40 has wire type 5", 2,
              { pb_float(&tr, 40, 1.0f); });
    SPEC_CASE("badtrainer.model", QK_EFORMAT, "truncated varint", 2, { put(&tr, "\x80", 1); });
    SPEC_CASE("normwire.model", QK_EFORMAT, "NormalizerSpec field 3 has wire type 2", 3,
              { pb_bytes(&tr, 3, "", 0); });
    SPEC_CASE("badnorm.model", QK_EFORMAT, "wire type 3", 3, { put(&tr, "\x0b", 1); });
#undef SPEC_CASE
    /* trainer_spec / normalizer_spec themselves with the wrong wire type */
    b.n = 0;
    pb_piece(&b, "<unk>", 0, 2);
    pb_uint(&b, 2, 1);
    expect_reject(fn, save("trw.model", &b), QK_EFORMAT, "ModelProto field 2 has wire type 0");
    b.n = 0;
    pb_piece(&b, "<unk>", 0, 2);
    pb_float(&b, 3, 1);
    expect_reject(fn, save("nrw.model", &b), QK_EFORMAT, "ModelProto field 3 has wire type 5");
    free(b.p);
    free(p.p);
    free(tr.p);
}
END_TEST

START_TEST(test_vocab_spm_hostile_bytes_never_crash)
{
    QK_REQUIRE_DATA(src, SPM_MODEL);
    size_t n;
    uint8_t *b = qk_test_read_file(src, &n);
    const char *path = qk_test_tmp("fuzz.model");
    /* every prefix up to 600 bytes (cuts through the first pieces), then spread-out cuts */
    for (size_t cut = 0; cut < n; cut += cut < 600 ? 1 : 9973) {
        qk_test_write_file(path, b, cut);
        expect_clean(qk_vocab_from_spm_model, path);
    }
    /* deterministic byte flips in the first 2 KiB */
    size_t m = n < 2048 ? n : 2048;
    uint8_t *c = malloc(m);
    ck_assert_ptr_nonnull(c);
    uint32_t s = 12345;
    for (int iter = 0; iter < 300; iter++) {
        memcpy(c, b, m);
        for (int k = 0; k < 4; k++) {
            s = s * 1664525u + 1013904223u;
            c[(s >> 8) % m] = (uint8_t)(s >> 24);
        }
        qk_test_write_file(path, c, m);
        expect_clean(qk_vocab_from_spm_model, path);
    }
    free(c);
    free(b);
}
END_TEST

/* ========================================================= tokenizer.json */

START_TEST(test_vocab_hfjson_spm_flavour)
{
    const char *path = write_text("spm", "tokenizer.json", SPM_JSON);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_tokenizer_json(&v, path) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->model, QK_VOCAB_SPM);
    ck_assert_ptr_null(v->pre);
    ck_assert_int_eq(v->n_tokens, 11);
    ck_assert_int_eq(v->n_merges, 0);
    ck_assert_str_eq(v->tokens[10].s, "<tool>");
    ck_assert_int_eq(v->types[0], QK_TOKEN_UNKNOWN);
    ck_assert_int_eq(v->types[1], QK_TOKEN_CONTROL);
    ck_assert_int_eq(v->types[2], QK_TOKEN_CONTROL);
    ck_assert_int_eq(v->types[3], QK_TOKEN_BYTE);
    ck_assert_int_eq(v->types[4], QK_TOKEN_NORMAL);
    ck_assert_int_eq(v->types[10], QK_TOKEN_USER_DEFINED);
    /* scores: minus the rank of the first merge producing the token
     * ("▁a" 0, "ab" 1, "▁ab" 2; the 4th merge makes "▁ab" again); then
     * unmerged normal tokens in id order ("▁" -3, "a" -4, "b" -5); others 0 */
    ck_assert_float_eq(v->scores[7], 0.0f);
    ck_assert_float_eq(v->scores[8], -1.0f);
    ck_assert_float_eq(v->scores[9], -2.0f);
    ck_assert_float_eq(v->scores[4], -3.0f);
    ck_assert_float_eq(v->scores[5], -4.0f);
    ck_assert_float_eq(v->scores[6], -5.0f);
    ck_assert_float_eq(v->scores[0], 0.0f);
    ck_assert_float_eq(v->scores[3], 0.0f);
    ck_assert_float_eq(v->scores[10], 0.0f);
    ck_assert_int_eq(v->unk_id, 0);
    ck_assert_int_eq(v->bos_id, 1);
    ck_assert_int_eq(v->eos_id, 2);
    ck_assert_int_eq(v->pad_id, -1);
    ck_assert_int_eq(v->byte_fallback, 1);
    ck_assert_int_eq(v->add_space_prefix, 1); /* Prepend normalizer */
    ck_assert_int_eq(v->add_bos, 1);          /* TemplateProcessing <s> $A */
    ck_assert_int_eq(v->add_eos, 0);
    ck_assert_int_eq(qk_vocab_find(v, SP "ab", 5), 9);
    qk_vocab_free(v);

    /* tokenizer_config.json beside it overrides specials and add_*_token */
    write_text("spm", "tokenizer_config.json",
               "{\"bos_token\":{\"content\":\"</s>\",\"lstrip\":false},\"eos_token\":\"<tool>\","
               "\"pad_token\":\"<unk>\",\"add_bos_token\":false,\"add_eos_token\":true}");
    ck_assert_msg(qk_vocab_from_tokenizer_json(&v, path) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->bos_id, 2);
    ck_assert_int_eq(v->eos_id, 10);
    ck_assert_int_eq(v->pad_id, 0);
    ck_assert_int_eq(v->add_bos, 0);
    ck_assert_int_eq(v->add_eos, 1);
    qk_vocab_free(v);

    /* a config that is JSON but not an object */
    const char *cfg0 = write_text("spm", "tokenizer_config.json", "[]");
    ck_assert_int_eq(qk_vocab_from_tokenizer_json(&v, path), QK_EFORMAT);
    ck_assert_msg(!strncmp(qk_errmsg(), cfg0, strlen(cfg0)), "%s", qk_errmsg());
    ck_assert_ptr_null(v);

    /* a bad tokenizer_config.json is an error naming that file */
    const char *cfg = write_text("spm", "tokenizer_config.json", "{\"bos_token\": ");
    ck_assert_int_eq(qk_vocab_from_tokenizer_json(&v, path), QK_EFORMAT);
    ck_assert_msg(!strncmp(qk_errmsg(), cfg, strlen(cfg)), "%s", qk_errmsg());
    ck_assert_ptr_null(v);
}
END_TEST

START_TEST(test_vocab_hfjson_metaspace_variants)
{
    /* Metaspace pre-tokenizer (newer Llama / Mistral exports) decides the flavour and the prefix */
    static const char *fmt =
        "{\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Metaspace\",\"replacement\":\"" SP
        "\",%s}]},\"model\":{\"type\":\"BPE\",\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"a\":3},\"merges\":[]}}";
    const char *schemes[] = {"\"prepend_scheme\":\"first\"", "\"prepend_scheme\":\"never\"",
                             "\"add_prefix_space\":true", "\"add_prefix_space\":false"};
    const int want[] = {1, 0, 1, 0};
    for (int i = 0; i < 4; i++) {
        char text[1024], dir[32];
        snprintf(text, sizeof text, fmt, schemes[i]);
        snprintf(dir, sizeof dir, "meta%d", i);
        qk_vocab *v = NULL;
        ck_assert_msg(qk_vocab_from_tokenizer_json(&v, write_text(dir, "tokenizer.json", text)) == 0, "%s",
                      qk_errmsg());
        ck_assert_int_eq(v->model, QK_VOCAB_SPM);
        ck_assert_int_eq(v->add_space_prefix, want[i]);
        ck_assert_int_eq(v->unk_id, 0); /* "<unk>" by name */
        ck_assert_int_eq(v->bos_id, 1);
        ck_assert_int_eq(v->eos_id, 2);
        ck_assert_int_eq(v->add_bos, 1); /* SPM default without a template */
        /* no added_tokens: every token is normal; no merges: scores by id */
        ck_assert_int_eq(v->types[1], QK_TOKEN_NORMAL);
        ck_assert_float_eq(v->scores[3], -3.0f);
        qk_vocab_free(v);
    }
}
END_TEST

START_TEST(test_vocab_hfjson_bpe_flavour)
{
    const char *path = write_text("bpe", "tokenizer.json", BPE_JSON);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_tokenizer_json(&v, path) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->model, QK_VOCAB_BPE);
    ck_assert_str_eq(v->pre, "default");
    ck_assert_int_eq(v->n_tokens, 7);
    ck_assert_int_eq(v->n_merges, 2);
    ck_assert_str_eq(v->merges[0].s, "a b");
    ck_assert_str_eq(v->merges[1].s, "\xc4\xa0 ab");
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(v->types[i], QK_TOKEN_NORMAL);
        ck_assert_float_eq(v->scores[i], 0.0f);
    }
    ck_assert_int_eq(v->types[6], QK_TOKEN_CONTROL);
    ck_assert_int_eq(v->bos_id, -1);
    ck_assert_int_eq(v->eos_id, -1);
    ck_assert_int_eq(v->unk_id, -1);
    ck_assert_int_eq(v->add_bos, 0);
    ck_assert_int_eq(v->add_space_prefix, 0);
    ck_assert_int_eq(v->byte_fallback, 0);
    qk_vocab_free(v);

    write_text("bpe", "tokenizer_config.json",
               "{\"bos_token\":\"<|endoftext|>\",\"eos_token\":\"<|endoftext|>\",\"unk_token\":null}");
    ck_assert_msg(qk_vocab_from_tokenizer_json(&v, path) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->bos_id, 6);
    ck_assert_int_eq(v->eos_id, 6);
    qk_vocab_free(v);

    /* legacy "a b" merges give the same result */
    const char *legacy = json_with_model(
        "bpe2", "\"vocab\":{\"!\":0,\"a\":1,\"b\":2,\"\xc4\xa0\":3,\"ab\":4,\"\xc4\xa0" "ab\":5},"
                "\"merges\":[\"a b\",\"\xc4\xa0 ab\"]", NULL);
    ck_assert_msg(qk_vocab_from_tokenizer_json(&v, legacy) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->n_merges, 2);
    ck_assert_str_eq(v->merges[1].s, "\xc4\xa0 ab");
    qk_vocab_free(v);
}
END_TEST


START_TEST(test_vocab_hfjson_rejects)
{
    expect_reject(open_json_fn, write_text("r1", "tokenizer.json", "{\"model\": {"), QK_EFORMAT, "not valid JSON");
    expect_reject(open_json_fn, write_text("r2", "tokenizer.json", "[1, 2]"), QK_EFORMAT, "no \"model\" object");
    expect_reject(open_json_fn, write_text("r3", "tokenizer.json", "{\"model\": 3}"), QK_EFORMAT, "no \"model\"");
    expect_reject(open_json_fn,
                  write_text("r4", "tokenizer.json", "{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1.0]]}}"),
                  QK_EUNSUPPORTED, "'Unigram' is not supported");
    expect_reject(open_json_fn, write_text("r5", "tokenizer.json", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}"),
                  QK_EUNSUPPORTED, "WordPiece");
    expect_reject(open_json_fn, json_with_model("r6", "\"vocab\":[\"a\"]", NULL), QK_EFORMAT, "model.vocab is not");
    expect_reject(open_json_fn, json_with_model("r7", "\"vocab\":{\"a\":0}", "{}"), QK_EFORMAT,
                  "added_tokens is not an array");
    expect_reject(open_json_fn, json_with_model("r8", "\"vocab\":{\"a\":0,\"b\":1.5}", NULL), QK_EFORMAT,
                  "'b' has id 1.5");
    expect_reject(open_json_fn, json_with_model("r9", "\"vocab\":{\"a\":0,\"b\":-1}", NULL), QK_EFORMAT, "id -1");
    expect_reject(open_json_fn, json_with_model("r10", "\"vocab\":{\"a\":0,\"b\":\"1\"}", NULL), QK_EFORMAT,
                  "'b' has no numeric id");
    expect_reject(open_json_fn, json_with_model("r11", "\"vocab\":{\"a\":0,\"b\":1e12}", NULL), QK_EFORMAT,
                  "not an integer in 0..");
    /* not dense: a gap, and an id past the entry count (refused before allocating) */
    expect_reject(open_json_fn, json_with_model("r12", "\"vocab\":{\"a\":0,\"b\":2,\"c\":3,\"d\":3}", NULL),
                  QK_EFORMAT, NULL);
    expect_reject(open_json_fn, json_with_model("r13", "\"vocab\":{\"a\":0,\"c\":2}", NULL), QK_EFORMAT,
                  "ids must be dense");
    expect_reject(open_json_fn, json_with_model("r14", "\"vocab\":{\"a\":0,\"c\":9000000}", NULL), QK_EFORMAT,
                  "id 9000000 is used with only 2 tokens");
    expect_reject(open_json_fn, json_with_model("r15", "\"vocab\":{\"a\":0,\"b\":2}",
                                  "[{\"id\":3,\"content\":\"x\"},{\"id\":3,\"content\":\"x\"}]"),
                  QK_EFORMAT, "no token has id 1");
    /* one id, two texts (vocab vs added_tokens); one text, two ids */
    expect_reject(open_json_fn, json_with_model("r16", "\"vocab\":{\"a\":0,\"b\":1}", "[{\"id\":1,\"content\":\"x\"}]"),
                  QK_EFORMAT, "tokens 'b' and 'x' both have id 1");
    expect_reject(open_json_fn, json_with_model("r17", "\"vocab\":{\"a\":0,\"b\":1}", "[{\"id\":2,\"content\":\"a\"}]"),
                  QK_EFORMAT, "token 'a' has two ids, 0 and 2");
    expect_reject(open_json_fn, json_with_model("r18", "\"vocab\":{\"a\":0,\"a\":0}", NULL), QK_EFORMAT,
                  "appears twice");
    expect_reject(open_json_fn, json_with_model("r19", "\"vocab\":{\"a\":0}", "[{\"id\":1}]"), QK_EFORMAT,
                  "no \"content\"");
    expect_reject(open_json_fn, json_with_model("r20", "\"vocab\":{\"a\":0}", "[{\"content\":\"b\"}]"), QK_EFORMAT,
                  "added token 'b' has no numeric id");
    expect_reject(open_json_fn, json_with_model("r21", "\"vocab\":{}", NULL), QK_EFORMAT, "vocabulary is empty");
    /* merges */
    const char *vb = "\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"a b\":3},";
    char body[512];
    snprintf(body, sizeof body, "%s\"merges\":{}", vb);
    expect_reject(open_json_fn, json_with_model("m1", body, NULL), QK_EFORMAT, "model.merges is not an array");
    snprintf(body, sizeof body, "%s\"merges\":[\"ab\"]", vb);
    expect_reject(open_json_fn, json_with_model("m2", body, NULL), QK_EFORMAT, "merge 0 'ab' is not two tokens");
    snprintf(body, sizeof body, "%s\"merges\":[\"a b\",\"a b c\"]", vb);
    expect_reject(open_json_fn, json_with_model("m3", body, NULL), QK_EFORMAT, "merge 1");
    snprintf(body, sizeof body, "%s\"merges\":[[\"a\"]]", vb);
    expect_reject(open_json_fn, json_with_model("m4", body, NULL), QK_EFORMAT, "neither");
    snprintf(body, sizeof body, "%s\"merges\":[7]", vb);
    expect_reject(open_json_fn, json_with_model("m5", body, NULL), QK_EFORMAT, "neither");
    snprintf(body, sizeof body, "%s\"merges\":[\"a x\"]", vb);
    expect_reject(open_json_fn, json_with_model("m6", body, NULL), QK_EFORMAT, "'x' is not in the vocabulary");
    snprintf(body, sizeof body, "%s\"merges\":[\"b a\"]", vb);
    expect_reject(open_json_fn, json_with_model("m7", body, NULL), QK_EFORMAT, "'ba' is not in the vocabulary");
    snprintf(body, sizeof body, "\"vocab\":{\"a\":0,\" b\":1,\"a b\":2},\"merges\":[[\"a\",\" b\"]]");
    expect_reject(open_json_fn, json_with_model("m8", body, NULL), QK_EUNSUPPORTED, "space");
    expect_reject(open_json_fn, qk_test_tmp("absent/tokenizer.json"), QK_ENOTFOUND, NULL);
}
END_TEST

START_TEST(test_vocab_hfjson_hostile_bytes_never_crash)
{
    const char *texts[2] = {SPM_JSON, BPE_JSON};
    for (int t = 0; t < 2; t++) {
        size_t n = strlen(texts[t]);
        char *c = malloc(n + 1);
        ck_assert_ptr_nonnull(c);
        const char *path = qk_test_tmp(t ? "fuzz-bpe.json" : "fuzz-spm.json");
        /* every prefix is invalid JSON */
        for (size_t cut = 0; cut < n; cut++) {
            qk_test_write_file(path, texts[t], cut);
            expect_reject(open_json_fn, path, 0, NULL);
        }
        /* deterministic byte flips: accepted or cleanly refused */
        uint32_t s = 777u + (uint32_t)t;
        for (int iter = 0; iter < 400; iter++) {
            memcpy(c, texts[t], n + 1);
            for (int k = 0; k < 3; k++) {
                s = s * 1664525u + 1013904223u;
                static const char alphabet[] = "\"{}[],:0123456789 -ab\\";
                c[(s >> 8) % n] = alphabet[(s >> 24) % (sizeof alphabet - 1)];
            }
            qk_test_write_file(path, c, n);
            expect_clean(open_json_fn, path);
        }
        free(c);
    }
}
END_TEST

START_TEST(test_vocab_hfjson_round_trip_bpe)
{
    qk_vocab *v = NULL, *rt = NULL;
    ck_assert_msg(qk_vocab_from_tokenizer_json(&v, write_text("rtb", "tokenizer.json", BPE_JSON)) == 0, "%s",
                  qk_errmsg());
    /* specials and flags the file can carry */
    v->eos_id = 6;
    v->bos_id = 6;
    v->add_bos = 1;
    v->types[2] = QK_TOKEN_USER_DEFINED;
    const char *out = qk_test_tmp("rtb-out/tokenizer.json");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/rtb-out", qk_test_tmpdir());
    mkdir(dir, 0777);
    ck_assert_msg(qk_vocab_write_tokenizer_json(v, out) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_vocab_from_tokenizer_json(&rt, out) == 0, "%s", qk_errmsg());
    /* no tokenizer_config.json: bos comes back through the template (add_bos),
     * eos only through a config or its name "</s>" */
    ck_assert_int_eq(rt->bos_id, 6);
    ck_assert_int_eq(rt->eos_id, -1);
    rt->eos_id = 6;
    assert_vocab_eq(v, rt, 1);
    ck_assert_str_eq(rt->pre, "default");
    ck_assert_int_eq(rt->add_bos, 1);
    ck_assert_int_eq(rt->add_eos, 0);
    qk_vocab_free(v);
    qk_vocab_free(rt);
}
END_TEST

START_TEST(test_vocab_hfjson_round_trip_llama2c)
{
    QK_REQUIRE_DATA(path, TOK512);
    qk_vocab *v = NULL, *rt = NULL;
    ck_assert_msg(qk_vocab_from_llama2c(&v, path, 512) == 0, "%s", qk_errmsg());
    const char *out = qk_test_tmp("tok512.json");
    ck_assert_msg(qk_vocab_write_tokenizer_json(v, out) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_vocab_from_tokenizer_json(&rt, out) == 0, "%s", qk_errmsg());
    /* llama2.c scores are 0, -1, -2, ... in id order, which the merge ranks reproduce exactly */
    assert_vocab_eq(v, rt, 1);
    ck_assert_int_eq(rt->add_bos, 1);
    ck_assert_int_eq(rt->add_eos, 0);
    ck_assert_int_eq(rt->add_space_prefix, 1);
    ck_assert_int_eq(rt->byte_fallback, 1);
    qk_vocab_free(v);
    qk_vocab_free(rt);
}
END_TEST

/* Orders token ids by (score descending, id ascending) in g_order_vocab. */
static const qk_vocab *g_order_vocab;
static int cmp_by_score(const void *pa, const void *pb)
{
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    const float *s = g_order_vocab->scores;
    if (s[a] != s[b])
        return s[a] > s[b] ? -1 : 1;
    return (a > b) - (a < b);
}

static size_t utf8_chars(const qk_str *t)
{
    size_t n = 0;
    for (uint64_t i = 0; i < t->len; i++)
        n += ((unsigned char)t->s[i] & 0xc0) != 0x80;
    return n;
}

START_TEST(test_vocab_hfjson_round_trip_llama2_spm)
{
    QK_REQUIRE_DATA(path, SPM_MODEL);
    qk_vocab *v = NULL, *rt = NULL, *rt2 = NULL;
    ck_assert_msg(qk_vocab_from_spm_model(&v, path) == 0, "%s", qk_errmsg());
    const char *out = qk_test_tmp("llama2.json"), *out2 = qk_test_tmp("llama2-2.json");
    ck_assert_msg(qk_vocab_write_tokenizer_json(v, out) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_vocab_from_tokenizer_json(&rt, out) == 0, "%s", qk_errmsg());
    /* tokens, types and specials exactly */
    assert_vocab_eq(v, rt, 0);
    ck_assert_int_eq(rt->add_space_prefix, 1);
    ck_assert_int_eq(rt->byte_fallback, 1);
    /* Scores are not representable, but the merge order is: normal tokens
     * of two or more characters keep their (score, id) order. (Single
     * characters, which no merge produces, all go last.) */
    int32_t *ids = malloc(32000 * sizeof *ids), *ids2 = malloc(32000 * sizeof *ids2);
    ck_assert(ids && ids2);
    size_t n = 0;
    for (int32_t i = 0; i < 32000; i++)
        if (v->types[i] == QK_TOKEN_NORMAL && utf8_chars(&v->tokens[i]) >= 2)
            ids[n++] = i;
    ck_assert_uint_gt(n, 29000);
    memcpy(ids2, ids, n * sizeof *ids);
    g_order_vocab = v;
    qsort(ids, n, sizeof *ids, cmp_by_score);
    g_order_vocab = rt;
    qsort(ids2, n, sizeof *ids2, cmp_by_score);
    for (size_t k = 0; k < n; k++)
        ck_assert_msg(ids[k] == ids2[k], "rank %zu: token %d '%s' (score %g) became %d '%s' (score %g)", k, ids[k],
                      v->tokens[ids[k]].s, v->scores[ids[k]], ids2[k], rt->tokens[ids2[k]].s, rt->scores[ids2[k]]);
    free(ids);
    free(ids2);
    /* and a second round trip is a fixed point, scores included */
    ck_assert_msg(qk_vocab_write_tokenizer_json(rt, out2) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_vocab_from_tokenizer_json(&rt2, out2) == 0, "%s", qk_errmsg());
    assert_vocab_eq(rt, rt2, 1);
    qk_vocab_free(v);
    qk_vocab_free(rt);
    qk_vocab_free(rt2);
}
END_TEST

START_TEST(test_vocab_hfjson_writer_rejects)
{
    const char *t[] = {"ok", "bad\xff", "x"};
    buf b = {0};
    tb_small(&b, t, 3);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_llama2c(&v, save("badutf8.bin", &b), 0) == 0, "%s", qk_errmsg());
    const char *out = qk_test_tmp("badutf8.json");
    ck_assert_int_eq(qk_vocab_write_tokenizer_json(v, out), QK_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "token 4 is not NUL-free UTF-8"));
    ck_assert(!qk_file_exists(out));
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "qk-tmp"), 0);
    qk_vocab_free(v);
    /* a NUL inside a token */
    b.n = 0;
    tb_small(&b, NULL, 0);
    put_f32(&b, 0);
    put_u32(&b, 3);
    put(&b, "a\0b", 3);
    ck_assert_msg(qk_vocab_from_llama2c(&v, save("nul.bin", &b), 0) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->tokens[3].len, 3);
    ck_assert_int_eq(qk_vocab_write_tokenizer_json(v, out), QK_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "token 3 is not NUL-free"));
    qk_vocab_free(v);
    free(b.p);
    /* a BPE merge a tokenizer.json reader would refuse (GGUF merges are not
     * checked on reading; found by fuzzing: tests/fuzz/cases/gguf/bpe-merge-not-a-pair.gguf) */
    static const char *const bad_merges[] = {"nope", "a b c", " ab", "zz qq"};
    for (size_t k = 0; k < sizeof bad_merges / sizeof *bad_merges; k++) {
        ck_assert_msg(qk_vocab_from_tokenizer_json(&v, write_text("wm", "tokenizer.json", BPE_JSON)) == 0, "%s",
                      qk_errmsg());
        int64_t cap = v->n_merges;
        ck_assert_int_eq(qk_vocab_push_merge(v, &cap, bad_merges[k], strlen(bad_merges[k])), 0);
        ck_assert_int_eq(qk_vocab_write_tokenizer_json(v, out), QK_EUNSUPPORTED);
        ck_assert_msg(strstr(qk_errmsg(), "tokenizer.json cannot hold it") != NULL, "%s", qk_errmsg());
        ck_assert(!qk_file_exists(out));
        qk_vocab_free(v);
    }
}
END_TEST

/* ==================================================================== GGUF */

START_TEST(test_vocab_gguf_round_trip_bpe)
{
    qk_vocab *v = NULL, *rt = NULL;
    ck_assert_msg(qk_vocab_from_tokenizer_json(&v, write_text("gb", "tokenizer.json", BPE_JSON)) == 0, "%s",
                  qk_errmsg());
    v->eos_id = 6;
    v->pad_id = 0;
    v->add_eos = 1;
    v->scores[1] = -3.25f;
    free(v->pre);
    v->pre = strdup("llama-bpe");
    qk_gguf *g = vocab_to_gguf_file(v, "bpe.gguf");
    /* the exact key types llama.cpp checks */
    const qk_gguf_kv *kv;
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "tokenizer.ggml.eos_token_id"));
    ck_assert_int_eq(kv->type, QK_GGUF_U32);
    ck_assert_uint_eq(kv->v.u32, 6);
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "tokenizer.ggml.add_bos_token"));
    ck_assert_int_eq(kv->type, QK_GGUF_BOOL);
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "tokenizer.ggml.token_type"));
    ck_assert_int_eq(kv->type, QK_GGUF_ARRAY);
    ck_assert_int_eq(kv->arr_type, QK_GGUF_I32);
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "tokenizer.ggml.scores"));
    ck_assert_int_eq(kv->arr_type, QK_GGUF_F32);
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "tokenizer.ggml.merges"));
    ck_assert_int_eq(kv->arr_type, QK_GGUF_STRING);
    ck_assert_uint_eq(kv->arr_n, 2);
    ck_assert_ptr_null(qk_gguf_find_kv(g, "tokenizer.ggml.bos_token_id")); /* absent, not 0xFFFFFFFF */
    const char *s = NULL;
    ck_assert(qk_gguf_get_str(g, "tokenizer.ggml.model", &s) == 0);
    ck_assert_str_eq(s, "gpt2");
    ck_assert_msg(qk_vocab_from_gguf(&rt, g) == 0, "%s", qk_errmsg());
    assert_vocab_eq(v, rt, 1);
    ck_assert_str_eq(rt->pre, "llama-bpe");
    ck_assert_int_eq(rt->add_eos, 1);
    ck_assert_int_eq(rt->add_bos, 0);
    ck_assert_int_eq(rt->add_space_prefix, 0);
    qk_gguf_close(g);
    qk_vocab_free(v);
    qk_vocab_free(rt);
}
END_TEST

START_TEST(test_vocab_gguf_defaults)
{
    /* only model + tokens: scores 0, types NORMAL, no ids, SPM defaults */
    qk_gguf *g = finish_gguf(minimal_writer(), "min.gguf");
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_gguf(&v, g) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->n_tokens, 3);
    ck_assert_int_eq(v->types[1], QK_TOKEN_NORMAL);
    ck_assert_float_eq(v->scores[2], 0.0f);
    ck_assert_int_eq(v->bos_id, -1);
    ck_assert_int_eq(v->add_bos, 1);
    ck_assert_int_eq(v->add_space_prefix, 1);
    ck_assert_int_eq(qk_vocab_find(v, "</s>", 4), 2);
    qk_vocab_free(v);
    qk_gguf_close(g);

    /* ids of any integer type; i32 -1 means none */
    qk_gguf_writer *w = minimal_writer();
    qk_gguf_writer_set_i32(w, "tokenizer.ggml.bos_token_id", 1);
    qk_gguf_writer_set_i32(w, "tokenizer.ggml.eos_token_id", -1);
    qk_gguf_writer_set_u64(w, "tokenizer.ggml.unknown_token_id", 0);
    qk_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", UINT32_MAX);
    qk_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", 0);
    g = finish_gguf(w, "ids.gguf");
    ck_assert_msg(qk_vocab_from_gguf(&v, g) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->bos_id, 1);
    ck_assert_int_eq(v->eos_id, -1);
    ck_assert_int_eq(v->unk_id, 0);
    ck_assert_int_eq(v->pad_id, -1);
    ck_assert_int_eq(v->add_space_prefix, 0);
    qk_vocab_free(v);
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_vocab_gguf_rejects)
{
    qk_gguf_writer *w;
    int32_t types[3] = {1, 9, 1};
    float scores[3] = {0, NAN, 0};
    const int32_t ints[3] = {1, 2, 3};

    w = new_writer();
    qk_gguf_writer_set_str(w, "general.architecture", "llama");
    expect_gguf_reject(finish_gguf(w, "r0.gguf"), QK_ENOTFOUND, "no tokenizer.ggml.model");
    w = minimal_writer();
    qk_gguf_writer_set_u32(w, "tokenizer.ggml.model", 1);
    expect_gguf_reject(finish_gguf(w, "r1.gguf"), QK_EFORMAT, "tokenizer.ggml.model has type u32");
    w = minimal_writer();
    qk_gguf_writer_set_str(w, "tokenizer.ggml.model", "bert");
    expect_gguf_reject(finish_gguf(w, "r2.gguf"), QK_EUNSUPPORTED, "'bert' is not supported");
    w = minimal_writer();
    qk_gguf_writer_remove_kv(w, "tokenizer.ggml.tokens");
    expect_gguf_reject(finish_gguf(w, "r3.gguf"), QK_EFORMAT, "tokenizer.ggml.tokens is missing");
    w = minimal_writer();
    qk_gguf_writer_set_arr(w, "tokenizer.ggml.tokens", QK_GGUF_I32, ints, 3);
    expect_gguf_reject(finish_gguf(w, "r4.gguf"), QK_EFORMAT, "expected array of string");
    w = minimal_writer();
    qk_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", NULL, NULL, 0);
    expect_gguf_reject(finish_gguf(w, "r5.gguf"), QK_EFORMAT, "tokens is empty");
    w = minimal_writer();
    qk_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QK_GGUF_F32, scores, 2);
    expect_gguf_reject(finish_gguf(w, "r6.gguf"), QK_EFORMAT, "scores has 2 entries for 3 tokens");
    w = minimal_writer();
    qk_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QK_GGUF_F32, scores, 3);
    expect_gguf_reject(finish_gguf(w, "r7.gguf"), QK_ENONFINITE, "scores[1] is NaN");
    w = minimal_writer();
    qk_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QK_GGUF_U32, ints, 3);
    expect_gguf_reject(finish_gguf(w, "r8.gguf"), QK_EFORMAT, "token_type has type array of u32");
    w = minimal_writer();
    qk_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QK_GGUF_I32, types, 2);
    expect_gguf_reject(finish_gguf(w, "r9.gguf"), QK_EFORMAT, "token_type has 2 entries");
    w = minimal_writer();
    qk_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QK_GGUF_I32, types, 3);
    expect_gguf_reject(finish_gguf(w, "r10.gguf"), QK_EFORMAT, "token_type[1] = 9");
    w = minimal_writer();
    qk_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 3);
    expect_gguf_reject(finish_gguf(w, "r11.gguf"), QK_EFORMAT, "bos_token_id = 3 is not a token id");
    w = minimal_writer();
    qk_gguf_writer_set_str(w, "tokenizer.ggml.eos_token_id", "2");
    expect_gguf_reject(finish_gguf(w, "r12.gguf"), QK_EFORMAT, "eos_token_id has type string");
    w = minimal_writer();
    qk_gguf_writer_set_u32(w, "tokenizer.ggml.add_bos_token", 1);
    expect_gguf_reject(finish_gguf(w, "r13.gguf"), QK_EFORMAT, "add_bos_token has type u32, expected bool");
    w = minimal_writer();
    qk_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    qk_gguf_writer_set_u32(w, "tokenizer.ggml.pre", 3);
    expect_gguf_reject(finish_gguf(w, "r14.gguf"), QK_EFORMAT, "tokenizer.ggml.pre has type u32");
    w = minimal_writer();
    qk_gguf_writer_set_arr(w, "tokenizer.ggml.merges", QK_GGUF_I32, ints, 3);
    expect_gguf_reject(finish_gguf(w, "r15.gguf"), QK_EFORMAT, "merges has type array of i32");
}
END_TEST

START_TEST(test_vocab_to_gguf_rejects_invalid)
{
    qk_gguf *g = finish_gguf(minimal_writer(), "base.gguf");
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_gguf(&v, g) == 0, "%s", qk_errmsg());
    qk_gguf_close(g);
    qk_gguf_writer *w = new_writer();
    v->types[1] = 0;
    ck_assert_int_eq(qk_vocab_to_gguf(v, w), QK_EINVAL);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "token 1 has type 0"));
    v->types[1] = QK_TOKEN_CONTROL;
    v->eos_id = 3;
    ck_assert_int_eq(qk_vocab_to_gguf(v, w), QK_EINVAL);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "eos token id 3"));
    v->eos_id = 2;
    v->model = 7;
    ck_assert_int_eq(qk_vocab_to_gguf(v, w), QK_EINVAL);
    v->model = QK_VOCAB_SPM;
    ck_assert_msg(qk_vocab_to_gguf(v, w) == 0, "%s", qk_errmsg());
    qk_gguf_writer_free(w);
    qk_vocab_free(v);
}
END_TEST

Suite *qk_test_suite_vocab(void)
{
    Suite *s = suite_create("vocab");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_vocab_llama2c_rules_tok512);
    tcase_add_test(tc, test_vocab_llama2c_equals_llamacpp_golden);
    tcase_add_test(tc, test_vocab_llama2c_synthetic_rules);
    tcase_add_test(tc, test_vocab_find_and_duplicates);
    tcase_add_test(tc, test_vocab_spm_llama2_equals_llamacpp);
    tcase_add_test(tc, test_vocab_spm_synthetic_fields);
    tcase_add_test(tc, test_vocab_gguf_round_trip_llama2_spm);
    tcase_add_test(tc, test_vocab_hfjson_spm_flavour);
    tcase_add_test(tc, test_vocab_hfjson_metaspace_variants);
    tcase_add_test(tc, test_vocab_hfjson_bpe_flavour);
    tcase_add_test(tc, test_vocab_hfjson_round_trip_bpe);
    tcase_add_test(tc, test_vocab_hfjson_round_trip_llama2c);
    tcase_add_test(tc, test_vocab_hfjson_round_trip_llama2_spm);
    tcase_add_test(tc, test_vocab_gguf_round_trip_bpe);
    tcase_add_test(tc, test_vocab_gguf_defaults);
    suite_add_tcase(s, tc);

    TCase *rj = tcase_create("reject");
    tcase_set_timeout(rj, 120);
    tcase_add_test(rj, test_vocab_llama2c_rejects_truncated);
    tcase_add_test(rj, test_vocab_llama2c_rejects_bad_records);
    tcase_add_test(rj, test_vocab_spm_rejects_bad_wire_data);
    tcase_add_test(rj, test_vocab_spm_rejects_bad_fields);
    tcase_add_test(rj, test_vocab_spm_hostile_bytes_never_crash);
    tcase_add_test(rj, test_vocab_hfjson_rejects);
    tcase_add_test(rj, test_vocab_hfjson_hostile_bytes_never_crash);
    tcase_add_test(rj, test_vocab_hfjson_writer_rejects);
    tcase_add_test(rj, test_vocab_gguf_rejects);
    tcase_add_test(rj, test_vocab_to_gguf_rejects_invalid);
    suite_add_tcase(s, rj);
    return s;
}

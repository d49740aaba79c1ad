/* Tests of eval/tokenizer*.c: llama.cpp's own tokenizer test vectors for
 * the Llama SentencePiece vocabulary (from the GGUF and from
 * tokenizer.model), the stories260K ids of llama.cpp's golden run (from
 * tok512.bin and from the GGUF), byte fallback, edge inputs, invalid UTF-8,
 * round trips on 1 MB of random text, merging in pieces == merging whole,
 * and byte-level BPE on a hand-made tokenizer.json with known ids, plus the
 * GPT-2 / Llama-3 pre-tokenizers' word boundaries (checked against Python's
 * `regex` module on the same strings). */
#include "qk_test.h"

#include <errno.h>
#include <sys/stat.h>

#include "quantkit/eval.h"
#include "quantkit/gguf.h"
#include "quantkit/vocab.h"
#include "../eval/tokenizer_internal.h" /* qk_pretok_word, spm_chunk */

#define SPM_GGUF "tokenizers/llama-spm/ggml-vocab-llama-spm.gguf"
#define SPM_INP "tokenizers/llama-spm/ggml-vocab-llama-spm.gguf.inp"
#define SPM_OUT "tokenizers/llama-spm/ggml-vocab-llama-spm.gguf.out"
#define SPM_MODEL "tokenizers/llama2/tokenizer.model"
#define TOK512 "models/stories260K/tok512.bin"
#define STORIES_GGUF "models/stories260K/stories260K.gguf"
#define FOX_NLL "golden/llamacpp/stories260K-fox.nll.txt"
#define WIKI "text/wiki.test.raw"
#define FOX "One day, a clever fox found a shiny key under the old oak tree."

/* ----------------------------------------------------------------- helpers */

typedef struct fixture {
    qk_gguf *g;
    qk_vocab *v;
    qk_tokenizer *t;
} fixture;

static void fx_gguf(fixture *f, const char *path)
{
    memset(f, 0, sizeof *f);
    ck_assert_msg(qk_gguf_open(&f->g, path) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_vocab_from_gguf(&f->v, f->g) == 0, "%s", qk_errmsg());
    ck_assert_msg(qk_tokenizer_new(&f->t, f->v) == 0, "%s", qk_errmsg());
}

static void fx_vocab(fixture *f, qk_vocab *v)
{
    memset(f, 0, sizeof *f);
    f->v = v;
    ck_assert_msg(qk_tokenizer_new(&f->t, f->v) == 0, "%s", qk_errmsg());
}

static void fx_free(fixture *f)
{
    qk_tokenizer_free(f->t);
    qk_vocab_free(f->v);
    qk_gguf_close(f->g);
}

static int32_t *enc(const qk_tokenizer *t, const char *s, size_t n, unsigned flags, int64_t *out_n)
{
    int32_t *ids = NULL;
    int rc = qk_tokenize_ex(t, s, n, flags, &ids, out_n);
    ck_assert_msg(rc == 0, "tokenize: %s", qk_errmsg());
    ck_assert_ptr_nonnull(ids);
    return ids;
}

static void check_ids(const int32_t *got, int64_t n, const int32_t *exp, int64_t ne, const char *what)
{
    for (int64_t i = 0; i < n && i < ne; i++)
        ck_assert_msg(got[i] == exp[i], "%s: id %lld is %d, expected %d", what, (long long)i, (int)got[i],
                      (int)exp[i]);
    ck_assert_msg(n == ne, "%s: %lld ids, expected %lld", what, (long long)n, (long long)ne);
}

static void expect(const qk_tokenizer *t, const char *s, unsigned flags, const int32_t *exp, int64_t ne)
{
    int64_t n;
    int32_t *ids = enc(t, s, strlen(s), flags, &n);
    check_ids(ids, n, exp, ne, s);
    free(ids);
}

#define EXPECT(t, s, flags, ...)                                                                          \
    do {                                                                                                  \
        static const int32_t exp_[] = {__VA_ARGS__};                                                      \
        expect(t, s, flags, exp_, (int64_t)(sizeof exp_ / sizeof exp_[0]));                               \
    } while (0)

/* tokenize (no special tokens) then detokenize: must give the text back */
static void check_roundtrip(const qk_tokenizer *t, const char *s, size_t n)
{
    int64_t ni;
    int32_t *ids = enc(t, s, n, 0, &ni);
    char *back = NULL;
    size_t nb = 0;
    ck_assert_msg(qk_detokenize(t, ids, ni, &back, &nb) == 0, "%s", qk_errmsg());
    size_t i = 0;
    while (i < n && i < nb && s[i] == back[i])
        i++;
    ck_assert_msg(nb == n && i == n, "round trip of %zu bytes gave %zu bytes, first difference at byte %zu", n, nb,
                  i);
    free(back);
    free(ids);
}

/* Every input of llama.cpp's test file against its expected ids. Inputs
 * are separated by "\n__ggml_vocab_test__\n" (each input is followed by
 * one); the .out file has one line of space-separated ids per input. */
static void check_vectors(const qk_tokenizer *t, const char *inp_path, const char *out_path)
{
    size_t ni, no;
    char *inp = qk_test_read_file(inp_path, &ni);
    char *outp = qk_test_read_file(out_path, &no);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *p = inp, *line = outp;
    int cases = 0;
    for (;;) {
        char *e = memmem(p, (size_t)(inp + ni - p), sep, sizeof sep - 1);
        if (!e)
            break;
        char *nl = strchr(line, '\n');
        ck_assert_msg(nl != NULL, "%s has fewer lines than %s has inputs", out_path, inp_path);
        *nl = 0;
        int32_t exp[4096];
        int64_t ne = 0;
        for (char *q = line, *end; ne < 4096; q = end) {
            long x = strtol(q, &end, 10);
            if (end == q)
                break;
            exp[ne++] = (int32_t)x;
        }
        int64_t n;
        int32_t *ids = enc(t, p, (size_t)(e - p), 0, &n);
        char what[64];
        snprintf(what, sizeof what, "test vector %d", cases);
        check_ids(ids, n, exp, ne, what);
        free(ids);
        p = e + sizeof sep - 1;
        line = nl + 1;
        cases++;
    }
    ck_assert_int_eq(cases, 46);
    ck_assert_msg(*line == 0, "%s has more lines than inputs", out_path);
    free(inp);
    free(outp);
}

/* The "tokens:" line of the golden file: BOS + the fox sentence. */
static int64_t fox_ids(int32_t *ids, int64_t cap)
{
    const char *path = qk_test_data(FOX_NLL);
    ck_assert_ptr_nonnull(path);
    char *txt = qk_test_read_file(path, NULL);
    char *p = strstr(txt, "tokens:");
    ck_assert_ptr_nonnull(p);
    p += 7;
    int64_t n = 0;
    for (char *end; n < cap; p = end) {
        long x = strtol(p, &end, 10);
        if (end == p)
            break;
        ids[n++] = (int32_t)x;
    }
    free(txt);
    return n;
}

static void check_fox(const qk_tokenizer *t)
{
    int32_t exp[64];
    int64_t ne = fox_ids(exp, 64);
    ck_assert_int_eq(ne, 35);
    ck_assert_int_eq(exp[0], 1);
    int64_t n;
    int32_t *ids = NULL;
    ck_assert_int_eq(qk_tokenize(t, FOX, strlen(FOX), 1, &ids, &n), 0);
    check_ids(ids, n, exp, ne, "fox with BOS");
    free(ids);
    ids = enc(t, FOX, strlen(FOX), 0, &n);
    check_ids(ids, n, exp + 1, ne - 1, "fox without BOS");
    free(ids);
}

/* Deterministic pseudo-random numbers (xorshift64*). */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static size_t put_cp(char *o, uint32_t cp)
{
    if (cp < 0x80)
        return o[0] = (char)cp, 1;
    if (cp < 0x800)
        return o[0] = (char)(0xc0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* n bytes (about) of random valid UTF-8: words, spaces, newlines, tabs,
 * punctuation, Latin-1, CJK, emoji, any BMP / astral code point. No U+2581
 * (SentencePiece's space: it decodes to ' ', in llama.cpp too) and no '<'
 * (so no control token text like "<s>" can be formed). */
static char *random_utf8(size_t n, uint64_t seed, size_t *out_n)
{
    char *s = malloc(n + 8);
    ck_assert_ptr_nonnull(s);
    uint64_t st = seed;
    size_t o = 0;
    static const char *const words[] = {"the", "The", "cat", "of", "and", "tokenizer", "quant", "'s", "123",
                                        "4096", ",", ".", "!", "?", "--", "(", ")", "\"", "\n", "\n\n", "\t", "  "};
    while (o < n) {
        uint64_t r = rnd(&st);
        uint32_t cp;
        switch (r % 8) {
        case 0: case 1: case 2: {
            const char *w = words[(r >> 8) % (sizeof words / sizeof words[0])];
            size_t l = strlen(w);
            if (o + l > n)
                l = 0;
            memcpy(s + o, w, l);
            o += l;
            continue;
        }
        case 3: cp = ' '; break;
        case 4: cp = 0x20 + (uint32_t)((r >> 8) % 0x5f); break;
        case 5: cp = 0xa0 + (uint32_t)((r >> 8) % 0x160); break;
        case 6: cp = 0x4e00 + (uint32_t)((r >> 8) % 0x5000); break;
        default:
            cp = (uint32_t)((r >> 8) % 0x10ffff) + 1;
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 0x1f600 + (cp & 0x3f);
            break;
        }
        if (cp == '<' || cp == 0x2581)
            cp = '(';
        if (o + 4 > n)
            cp = 'x';
        o += put_cp(s + o, cp);
    }
    *out_n = o;
    return s;
}

/* ------------------------------------------------------------------- SPM */

START_TEST(test_tokenizer_spm_llamacpp_vectors)
{
    QK_REQUIRE_DATA(gguf, SPM_GGUF);
    QK_REQUIRE_DATA(inp, SPM_INP);
    QK_REQUIRE_DATA(outp, SPM_OUT);
    fixture f;
    fx_gguf(&f, gguf);
    check_vectors(f.t, inp, outp);
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_spm_model_vectors)
{
    QK_REQUIRE_DATA(model, SPM_MODEL);
    QK_REQUIRE_DATA(inp, SPM_INP);
    QK_REQUIRE_DATA(outp, SPM_OUT);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_spm_model(&v, model) == 0, "%s", qk_errmsg());
    fixture f;
    fx_vocab(&f, v);
    check_vectors(f.t, inp, outp);
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_spm_fox_tok512)
{
    QK_REQUIRE_DATA(tok, TOK512);
    QK_REQUIRE_DATA(nll, FOX_NLL);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_llama2c(&v, tok, 512) == 0, "%s", qk_errmsg());
    fixture f;
    fx_vocab(&f, v);
    check_fox(f.t);
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_spm_fox_gguf)
{
    QK_REQUIRE_DATA(gguf, STORIES_GGUF);
    QK_REQUIRE_DATA(nll, FOX_NLL);
    fixture f;
    fx_gguf(&f, gguf);
    check_fox(f.t);
    fx_free(&f);
}
END_TEST

/* The token counts the data README gives (llama.cpp's, BOS included). */
START_TEST(test_tokenizer_spm_tinystories_counts)
{
    QK_REQUIRE_DATA(tok, TOK512);
    QK_REQUIRE_DATA(eval, "text/tinystories-valid-eval.txt");
    QK_REQUIRE_DATA(calib, "text/tinystories-valid-calib.txt");
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_llama2c(&v, tok, 512) == 0, "%s", qk_errmsg());
    fixture f;
    fx_vocab(&f, v);
    const char *paths[2] = {eval, calib};
    const int64_t counts[2] = {15013, 7928};
    for (int i = 0; i < 2; i++) {
        size_t n;
        char *text = qk_test_read_file(paths[i], &n);
        int64_t ni;
        int32_t *ids = NULL;
        ck_assert_int_eq(qk_tokenize(f.t, text, n, 1, &ids, &ni), 0);
        ck_assert_int_eq(ni, counts[i]);
        ck_assert_int_eq(ids[0], 1);
        free(ids);
        check_roundtrip(f.t, text, n);
        free(text);
    }
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_spm_byte_fallback)
{
    QK_REQUIRE_DATA(tok, TOK512);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_llama2c(&v, tok, 512) == 0, "%s", qk_errmsg());
    fixture f;
    fx_vocab(&f, v);
    int32_t sp = qk_vocab_find(v, "\xe2\x96\x81", 3);
    ck_assert_int_ge(sp, 0);
    /* byte tokens <0xNN> are ids 3 + NN in tok512 */
    ck_assert_int_eq(qk_vocab_find(v, "<0xF0>", 6), 3 + 0xf0);
    /* U+1F600 (F0 9F 98 80) and U+9F98 (E9 BE 98) are not tokens */
    {
        const int32_t exp[] = {sp, 3 + 0xf0, 3 + 0x9f, 3 + 0x98, 3 + 0x80};
        expect(f.t, "\xf0\x9f\x98\x80", 0, exp, 5);
    }
    {
        const int32_t exp[] = {sp, 3 + 0xe9, 3 + 0xbe, 3 + 0x98, 3 + 0xe9, 3 + 0xbe, 3 + 0x98};
        expect(f.t, "\xe9\xbe\x98\xe9\xbe\x98", 0, exp, 7);
    }
    check_roundtrip(f.t, "a \xf0\x9f\x98\x80 b\xe9\xbe\x98.", 13);
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_spm_edge_inputs)
{
    QK_REQUIRE_DATA(gguf, SPM_GGUF);
    fixture f;
    fx_gguf(&f, gguf);
    int64_t n;
    int32_t *ids = enc(f.t, "", 0, 0, &n);
    ck_assert_int_eq(n, 0);
    free(ids);
    /* empty text with add_special: BOS alone (llama.cpp: encode('') == [1]) */
    EXPECT(f.t, "", QK_TOKENIZE_ADD_SPECIAL, 1);
    ids = NULL;
    ck_assert_int_eq(qk_tokenize(f.t, NULL, 0, 0, &ids, &n), 0);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_nonnull(ids);
    free(ids);
    /* only spaces: the dummy prefix makes n+1 U+2581 */
    EXPECT(f.t, " ", 0, 259);
    EXPECT(f.t, "   ", 0, 268);
    EXPECT(f.t, "  ", QK_TOKENIZE_ADD_SPECIAL, 1, 1678);
    /* newlines are byte tokens <0x0A> (13) after a lone dummy prefix (29871) */
    EXPECT(f.t, "\n", 0, 29871, 13);
    EXPECT(f.t, "\n\n", 0, 29871, 13, 13);
    EXPECT(f.t, "Hello\nworld", 0, 15043, 13, 11526);
    /* control token texts are plain text without PARSE_SPECIAL; with it, the
     * text after a special token gets the dummy prefix again */
    EXPECT(f.t, "<s>Hi", 0, 529, 29879, 29958, 18567);
    EXPECT(f.t, "<s>Hi", QK_TOKENIZE_PARSE_SPECIAL, 1, 6324);
    check_roundtrip(f.t, "   ", 3);
    check_roundtrip(f.t, "\n \n\t x", 6);
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_spm_invalid_utf8)
{
    QK_REQUIRE_DATA(tok, TOK512);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_llama2c(&v, tok, 512) == 0, "%s", qk_errmsg());
    fixture f;
    fx_vocab(&f, v);
    int32_t sp = qk_vocab_find(v, "\xe2\x96\x81", 3);
    /* llama.cpp splits characters by lead byte without checking
     * continuation bytes: "\xc3" takes the 'A' after it into one 2-byte
     * symbol, which is no token and falls back to its bytes */
    {
        const int32_t exp[] = {sp, 3 + 0xc3, 3 + 'A'};
        expect(f.t, "\xc3" "A", 0, exp, 3);
    }
    /* a lone continuation byte is a 1-byte symbol; a lead byte cut by the end
     * of the text is a short symbol */
    {
        const int32_t exp[] = {sp, 3 + 0x80, 3 + 0xe2, 3 + 0x96};
        expect(f.t, "\x80\xe2\x96", 0, exp, 4);
    }
    /* a lead byte claims its length even across an escaped space: 0xFF
     * (4 bytes) takes FF FE and the first two bytes of U+2581, so the space
     * comes back as the bytes of U+2581 — what llama.cpp does too */
    {
        int32_t a = qk_vocab_find(v, "a", 1);
        ck_assert_int_ge(a, 0);
        const int32_t exp[] = {sp, 3 + 0xff, 3 + 0xfe, 3 + 0xe2, 3 + 0x96, 3 + 0x81, a};
        expect(f.t, "\xff\xfe a", 0, exp, 7);
    }
    /* otherwise, with byte tokens, every byte string round-trips */
    static const char bad[] = "\xff\xfe\xfe\xfe" "a\xc3\xc3\xc3\xed\xa0\x80\xf4\x90\x80\x80\xc0\x80 z\xf0\x9f";
    check_roundtrip(f.t, bad, sizeof bad - 1);
    uint64_t st = 7;
    char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (char)(rnd(&st) >> 56);
        if (junk[i] == '<' || junk[i] == ' ')
            junk[i] = '(';
    }
    check_roundtrip(f.t, junk, sizeof junk);
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_spm_random_roundtrip)
{
    QK_REQUIRE_DATA(tok, TOK512);
    QK_REQUIRE_DATA(gguf, SPM_GGUF);
    size_t n;
    char *text = random_utf8((size_t)1 << 20, 42, &n);
    ck_assert_int_ge(n, ((size_t)1 << 20) - 8);

    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_llama2c(&v, tok, 512) == 0, "%s", qk_errmsg());
    fixture f;
    fx_vocab(&f, v);
    check_roundtrip(f.t, text, n);
    fx_free(&f);

    fx_gguf(&f, gguf);
    check_roundtrip(f.t, text, n);
    fx_free(&f);
    free(text);
}
END_TEST

/* Merging in pieces cut where no merge can cross gives the ids of merging
 * the whole fragment at once, as llama.cpp does. */
START_TEST(test_tokenizer_spm_pieces_equal_whole)
{
    QK_REQUIRE_DATA(gguf, SPM_GGUF);
    QK_REQUIRE_DATA(wiki, WIKI);
    size_t n;
    char *text = qk_test_read_file(wiki, &n);
    if (n > 200000)
        n = 200000;
    fixture f;
    fx_gguf(&f, gguf);
    int64_t n1, n2;
    f.t->spm_chunk = 1;
    int32_t *a = enc(f.t, text, n, QK_TOKENIZE_ADD_SPECIAL, &n1);
    f.t->spm_chunk = SIZE_MAX;
    int32_t *b = enc(f.t, text, n, QK_TOKENIZE_ADD_SPECIAL, &n2);
    check_ids(a, n1, b, n2, "pieces vs whole");
    ck_assert_int_gt(n1, 40000);
    ck_assert_int_eq(a[0], 1);
    free(a);
    free(b);
    free(text);
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_spm_pieces)
{
    QK_REQUIRE_DATA(gguf, SPM_GGUF);
    fixture f;
    fx_gguf(&f, gguf);
    char buf[64];
    size_t n = 0;
    /* 15043 = "▁Hello": U+2581 becomes a space */
    ck_assert_int_eq(qk_token_to_piece(f.t, 15043, buf, sizeof buf, &n), 0);
    ck_assert_uint_eq(n, 6);
    ck_assert(!memcmp(buf, " Hello", 6));
    /* 13 = <0x0A>: the byte itself */
    ck_assert_int_eq(qk_token_to_piece(f.t, 13, buf, sizeof buf, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(buf[0], '\n');
    /* BOS, EOS (control) and <unk> (unknown): empty */
    for (int32_t id = 0; id < 3; id++) {
        ck_assert_int_eq(qk_token_to_piece(f.t, id, buf, sizeof buf, &n), 0);
        ck_assert_uint_eq(n, 0);
    }
    /* too small a buffer: QK_ELIMIT, the needed length, nothing written */
    buf[0] = 'x';
    ck_assert_int_eq(qk_token_to_piece(f.t, 15043, buf, 3, &n), QK_ELIMIT);
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(buf[0], 'x');
    ck_assert_int_eq(qk_token_to_piece(f.t, -1, buf, sizeof buf, &n), QK_EINVAL);
    ck_assert_int_eq(qk_token_to_piece(f.t, 32000, buf, sizeof buf, &n), QK_EINVAL);

    /* detokenize drops the dummy prefix once, after BOS */
    static const int32_t ids[] = {1, 15043, 3186};
    char *s = NULL;
    ck_assert_int_eq(qk_detokenize(f.t, ids, 3, &s, &n), 0);
    ck_assert_str_eq(s, "Hello world");
    ck_assert_uint_eq(n, 11);
    free(s);
    static const int32_t bad[] = {1, 40000};
    ck_assert_int_eq(qk_detokenize(f.t, bad, 2, &s, &n), QK_EINVAL);
    ck_assert_ptr_null(s);
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_rejects_bad_vocab)
{
    qk_tokenizer *t = (qk_tokenizer *)1;
    ck_assert_int_eq(qk_tokenizer_new(&t, NULL), QK_EINVAL);
    ck_assert_ptr_null(t);
    qk_tokenizer_free(NULL);
}
END_TEST

/* ------------------------------------------------------------ pre-tokenizer */

/* Word boundaries: each expected list is what Python's `regex` module
 * gives for the GPT-2 / Llama-3 pattern on the same string. */
static void check_words(int pre, const char *s, const char *const *exp, int ne)
{
    size_t n = strlen(s), pos = 0;
    int k = 0;
    while (pos < n) {
        size_t l = qk_pretok_word(pre, s, n, pos);
        ck_assert_uint_gt(l, 0);
        ck_assert_msg(k < ne, "pre %d: more words than expected in '%s'", pre, s);
        ck_assert_msg(l == strlen(exp[k]) && !memcmp(s + pos, exp[k], l), "pre %d: word %d is '%.*s', expected '%s'",
                      pre, k, (int)l, s + pos, exp[k]);
        pos += l;
        k++;
    }
    ck_assert_int_eq(k, ne);
}

#define WORDS(pre, s, ...)                                                                                 \
    do {                                                                                                   \
        static const char *const exp_[] = {__VA_ARGS__};                                                   \
        check_words(pre, s, exp_, (int)(sizeof exp_ / sizeof exp_[0]));                                    \
    } while (0)

START_TEST(test_tokenizer_pretok_gpt2)
{
    WORDS(QK_PRE_GPT2, "Hello world's  test\n\n 1234 x!!  ", "Hello", " world", "'s", " ", " test", "\n\n", " 1234",
          " x", "!!", "  ");
    WORDS(QK_PRE_GPT2, "I'M HE'LL\tgo\r\n\r\nok...\n  ", "I", "'", "M", " HE", "'", "LL", "\t", "go", "\r\n\r", "\n",
          "ok", "...", "\n  ");
    WORDS(QK_PRE_GPT2, "\xc3\xa9\xe4\xb8\xad\xe6\x96\x87 \xd9\xa1\xd9\xa2\xd9\xa3 \xe2\x85\xab\xc2\xa0x \xe3\x80\x80y",
          "\xc3\xa9\xe4\xb8\xad\xe6\x96\x87", " \xd9\xa1\xd9\xa2\xd9\xa3", " \xe2\x85\xab", "\xc2\xa0", "x", " ",
          "\xe3\x80\x80", "y");
    /* an invalid byte reads as U+FFFD, a symbol: one word with its neighbours */
    WORDS(QK_PRE_GPT2, "a\xff\xfe!b", "a", "\xff\xfe!", "b");
}
END_TEST

START_TEST(test_tokenizer_pretok_llama3)
{
    WORDS(QK_PRE_LLAMA3, "Hello world's  test\n\n 1234 x!!  ", "Hello", " world", "'s", " ", " test", "\n\n", " ",
          "123", "4", " x", "!!", "  ");
    WORDS(QK_PRE_LLAMA3, "I'M HE'LL\tgo\r\n\r\nok...\n  ", "I", "'M", " HE", "'LL", "\tgo", "\r\n\r\n", "ok", "...\n",
          "  ");
    WORDS(QK_PRE_LLAMA3,
          "\xc3\xa9\xe4\xb8\xad\xe6\x96\x87 \xd9\xa1\xd9\xa2\xd9\xa3 \xe2\x85\xab\xc2\xa0x \xe3\x80\x80y",
          "\xc3\xa9\xe4\xb8\xad\xe6\x96\x87", " ", "\xd9\xa1\xd9\xa2\xd9\xa3", " ", "\xe2\x85\xab", "\xc2\xa0x", " ",
          "\xe3\x80\x80y");
}
END_TEST

START_TEST(test_tokenizer_unicode_classes)
{
    ck_assert(qk_unicode_is_letter('a') && qk_unicode_is_letter('Z') && !qk_unicode_is_letter('_'));
    ck_assert(!qk_unicode_is_letter('@') && !qk_unicode_is_letter('[') && !qk_unicode_is_letter('`'));
    ck_assert(qk_unicode_is_number('0') && qk_unicode_is_number('9') && !qk_unicode_is_number('a'));
    ck_assert(qk_unicode_is_letter(0xe9) && qk_unicode_is_letter(0x4e2d) && qk_unicode_is_letter(0x3042));
    ck_assert(qk_unicode_is_letter(0x20000) && !qk_unicode_is_letter(0xd7));
    ck_assert(qk_unicode_is_number(0x661) && qk_unicode_is_number(0x216b) && qk_unicode_is_number(0xbd));
    ck_assert(!qk_unicode_is_letter(0xfffd) && !qk_unicode_is_number(0xfffd) && !qk_unicode_is_space(0xfffd));
    ck_assert(qk_unicode_is_space(' ') && qk_unicode_is_space('\t') && qk_unicode_is_space(0x0b));
    ck_assert(qk_unicode_is_space(0x85) && qk_unicode_is_space(0xa0) && qk_unicode_is_space(0x3000));
    ck_assert(!qk_unicode_is_space(0x1c) && !qk_unicode_is_space(0x200b));
}
END_TEST

/* ------------------------------------------------------------------- BPE */

/* GPT-2's bytes_to_unicode, written independently of the library. */
static uint32_t gpt2_cp(int b)
{
    int n = 0;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff);
        if (c == b)
            return printable ? (uint32_t)c : 256u + (uint32_t)n;
        if (!printable)
            n++;
    }
    return 0;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* A byte-level vocabulary: ids 0..255 are the bytes in byte order (as
 * alphabet characters), then the merge results and three added tokens.
 * Spaces in merge texts are written as U+0120 'Ġ'. */
#define G "\xc4\xa0" /* U+0120, the space byte */
static const char *const k_bpe_extra[] = {"ab", G "a", "abc", G "ab", G "abc", "he", "ll", "hell", "hello", "xyz"};
static const char *const k_bpe_merges[] = {"a b", G " a", "ab c", G "a b", G " abc", "h e", "l l", "he ll", "hell o"};
enum { ID_AB = 256, ID_GABC = 260, ID_HELLO = 264, ID_XYZ = 265, ID_EOT = 266, ID_USER = 267, ID_BOS = 268 };

static qk_vocab *bpe_vocab(void)
{
    const char *dir = qk_test_tmp("bpe");
    ck_assert(mkdir(dir, 0700) == 0 || errno == EEXIST); /* CK_FORK=no shares one directory */
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"version\": \"1.0\", \"added_tokens\": ["
          "{\"id\": 266, \"content\": \"<|endoftext|>\", \"special\": true},"
          "{\"id\": 267, \"content\": \"<user>\", \"special\": false},"
          "{\"id\": 268, \"content\": \"<|begin|>\", \"special\": true}],\n"
          "\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},\n"
          "\"decoder\": {\"type\": \"ByteLevel\"},\n"
          "\"model\": {\"type\": \"BPE\", \"vocab\": {",
          f);
    for (int b = 0; b < 256; b++) {
        char u[8] = {0};
        put_cp(u, gpt2_cp(b));
        json_str(f, u);
        fprintf(f, ": %d, ", b);
    }
    for (int i = 0; i < 10; i++) {
        json_str(f, k_bpe_extra[i]);
        fprintf(f, ": %d, ", 256 + i);
    }
    fputs("\"<|endoftext|>\": 266, \"<user>\": 267, \"<|begin|>\": 268}, \"merges\": [", f);
    for (int i = 0; i < 9; i++) {
        json_str(f, k_bpe_merges[i]);
        fputs(i < 8 ? ", " : "]}}\n", f);
    }
    fclose(f);
    qk_vocab *v = NULL;
    ck_assert_msg(qk_vocab_from_tokenizer_json(&v, path) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(v->model, QK_VOCAB_BPE);
    ck_assert_int_eq(v->n_tokens, 269);
    ck_assert_int_eq(v->n_merges, 9);
    return v;
}

START_TEST(test_tokenizer_bpe_merges)
{
    fixture f;
    fx_vocab(&f, bpe_vocab());
    /* "ab" -> ab; " abc": (a,b) rank 0 first, then (ab,c) rank 2, then
     * (Ġ,abc) rank 4 — not Ġa (rank 1), which went stale when a grew;
     * " hello": he, ll, hell, hello with Ġ alone */
    EXPECT(f.t, "ab abc hello", 0, ID_AB, ID_GABC, ' ', ID_HELLO);
    /* a word that no merge reaches: one token per byte */
    EXPECT(f.t, "xyz", 0, 'x', 'y', 'z');
    /* "'s" splits off; "é" is two bytes, two alphabet characters */
    EXPECT(f.t, "ab's \xc3\xa9", 0, ID_AB, '\'', 's', ' ', 0xc3, 0xa9);
    /* invalid UTF-8: each bad byte is read as U+FFFD (EF BF BD) */
    EXPECT(f.t, "\xff", 0, 0xef, 0xbf, 0xbd);
    /* no dummy prefix, no BOS for this vocabulary */
    int64_t n;
    int32_t *ids = enc(f.t, "", 0, QK_TOKENIZE_ADD_SPECIAL, &n);
    ck_assert_int_eq(n, 0);
    free(ids);
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_bpe_special)
{
    fixture f;
    fx_vocab(&f, bpe_vocab());
    /* with add_special, control token texts are matched whole */
    int64_t n;
    int32_t *ids = NULL;
    ck_assert_int_eq(qk_tokenize(f.t, "ab<|endoftext|>ab", 17, 1, &ids, &n), 0);
    static const int32_t exp1[] = {ID_AB, ID_EOT, ID_AB};
    check_ids(ids, n, exp1, 3, "special parsed");
    free(ids);
    /* without, they are text: "<|", "endoftext", "|>" */
    EXPECT(f.t, "ab<|endoftext|>ab", 0, ID_AB, '<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|', '>',
           ID_AB);
    /* user-defined tokens are always cut out (llama.cpp does so too) */
    EXPECT(f.t, "x<user>y<user>", 0, 'x', ID_USER, 'y', ID_USER);
    /* the longest special text is taken first */
    EXPECT(f.t, "<|begin|><|endoftext|>", QK_TOKENIZE_PARSE_SPECIAL, ID_BOS, ID_EOT);
    /* BOS / EOS follow the vocabulary's flags */
    f.v->add_bos = 1;
    f.v->bos_id = ID_BOS;
    f.v->add_eos = 1;
    f.v->eos_id = ID_EOT;
    EXPECT(f.t, "ab", QK_TOKENIZE_ADD_SPECIAL, ID_BOS, ID_AB, ID_EOT);
    f.v->bos_id = -1;
    ck_assert_int_eq(qk_tokenize_ex(f.t, "ab", 2, QK_TOKENIZE_ADD_SPECIAL, &ids, &n), QK_EINVAL);
    ck_assert_ptr_null(ids);
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_bpe_llama3_ignore_merges)
{
    qk_vocab *v = bpe_vocab();
    free(v->pre);
    v->pre = strdup("llama-bpe");
    ck_assert_ptr_nonnull(v->pre);
    fixture f;
    fx_vocab(&f, v);
    /* a word that is a token is taken whole, merges or not */
    EXPECT(f.t, "xyz", 0, ID_XYZ);
    /* Llama-3 splits digits by three and keeps the space apart */
    EXPECT(f.t, "ab 1234", 0, ID_AB, ' ', '1', '2', '3', '4');
    fx_free(&f);
}
END_TEST

START_TEST(test_tokenizer_bpe_pieces_roundtrip)
{
    fixture f;
    fx_vocab(&f, bpe_vocab());
    char buf[16];
    size_t n;
    ck_assert_int_eq(qk_token_to_piece(f.t, ID_GABC, buf, sizeof buf, &n), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert(!memcmp(buf, " abc", 4));
    ck_assert_int_eq(qk_token_to_piece(f.t, 0x0a, buf, sizeof buf, &n), 0); /* 'Ċ' -> '\n' */
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(buf[0], '\n');
    ck_assert_int_eq(qk_token_to_piece(f.t, ID_EOT, buf, sizeof buf, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(qk_token_to_piece(f.t, ID_USER, buf, sizeof buf, &n), 0);
    ck_assert_uint_eq(n, 6);
    size_t tn;
    char *text = random_utf8(200000, 9, &tn);
    check_roundtrip(f.t, text, tn);
    free(text);
    fx_free(&f);
}
END_TEST

Suite *qk_test_suite_tokenizer(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("tokenizer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_tokenizer_spm_llamacpp_vectors);
    tcase_add_test(tc, test_tokenizer_spm_model_vectors);
    tcase_add_test(tc, test_tokenizer_spm_fox_tok512);
    tcase_add_test(tc, test_tokenizer_spm_fox_gguf);
    tcase_add_test(tc, test_tokenizer_spm_tinystories_counts);
    tcase_add_test(tc, test_tokenizer_spm_byte_fallback);
    tcase_add_test(tc, test_tokenizer_spm_edge_inputs);
    tcase_add_test(tc, test_tokenizer_spm_invalid_utf8);
    tcase_add_test(tc, test_tokenizer_spm_random_roundtrip);
    tcase_add_test(tc, test_tokenizer_spm_pieces_equal_whole);
    tcase_add_test(tc, test_tokenizer_spm_pieces);
    tcase_add_test(tc, test_tokenizer_rejects_bad_vocab);
    tcase_add_test(tc, test_tokenizer_pretok_gpt2);
    tcase_add_test(tc, test_tokenizer_pretok_llama3);
    tcase_add_test(tc, test_tokenizer_unicode_classes);
    tcase_add_test(tc, test_tokenizer_bpe_merges);
    tcase_add_test(tc, test_tokenizer_bpe_special);
    tcase_add_test(tc, test_tokenizer_bpe_llama3_ignore_merges);
    tcase_add_test(tc, test_tokenizer_bpe_pieces_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}

/* Scratch files and input splitting for the fuzz targets (fz_util.h). */
#include "fz_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];
static char g_ring[16][512];
static int g_ring_i;

static void remove_all(int keep_dir)
{
    if (!g_dir[0])
        return;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    if (!keep_dir)
        rmdir(g_dir);
}

static void cleanup(void) { remove_all(0); }

const char *fz_dir(void)
{
    if (!g_dir[0]) {
        const char *base = getenv("QK_FUZZ_TMP");
        if (!base || !*base) {
            struct stat st;
            base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                                                                       : "/tmp";
        }
        snprintf(g_dir, sizeof g_dir, "%s/qk-fuzz-%d-XXXXXX", base, (int)getpid());
        if (!mkdtemp(g_dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(cleanup);
    }
    return g_dir;
}

void fz_reset(void)
{
    fz_dir();
    remove_all(1);
}

const char *fz_path(const char *name)
{
    char *b = g_ring[g_ring_i];
    g_ring_i = (g_ring_i + 1) % 16;
    snprintf(b, sizeof g_ring[0], "%s/%s", fz_dir(), name);
    return b;
}

const char *fz_write(const char *name, const void *data, size_t n)
{
    const char *path = fz_path(name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const uint8_t *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            perror(path);
            abort();
        }
        p += w;
        n -= (size_t)w;
    }
    close(fd);
    return path;
}

size_t fz_split(const uint8_t *d, size_t n, fz_part *parts, size_t max)
{
    size_t k = 0;
    while (k + 1 < max) {
        const uint8_t *s = memmem(d, n, FZ_SEP, FZ_SEP_LEN);
        if (!s)
            break;
        parts[k].p = d;
        parts[k].n = (size_t)(s - d);
        k++;
        n -= (size_t)(s - d) + FZ_SEP_LEN;
        d = s + FZ_SEP_LEN;
    }
    parts[k].p = d;
    parts[k].n = n;
    return k + 1;
}

uint8_t *fz_read(const char *path, size_t *n)
{
    char *buf = NULL;
    size_t len = 0;
    if (qk_read_file(&buf, &len, path, (size_t)1 << 30))
        return NULL;
    *n = len;
    return (uint8_t *)buf;
}

/* ------------------------------------------------ checks shared by targets */

#include "quantkit/eval.h"
#include "vocab_internal.h"

int fz_kv_equal(const qk_gguf_kv *a, const qk_gguf_kv *b)
{
    if (a->key.len != b->key.len || memcmp(a->key.s, b->key.s, (size_t)a->key.len) || a->type != b->type)
        return 0;
    if (a->type == QK_GGUF_STRING)
        return a->v.str.len == b->v.str.len && !memcmp(a->v.str.s, b->v.str.s, (size_t)a->v.str.len);
    if (a->type != QK_GGUF_ARRAY)
        return !memcmp(&a->v, &b->v, qk_gguf_type_size(a->type));
    if (a->arr_type != b->arr_type || a->arr_n != b->arr_n)
        return 0;
    if (a->arr_type == QK_GGUF_STRING) {
        for (uint64_t i = 0; i < a->arr_n; i++)
            if (a->strs[i].len != b->strs[i].len || memcmp(a->strs[i].s, b->strs[i].s, (size_t)a->strs[i].len))
                return 0;
        return 1;
    }
    return a->arr_n == 0 || !memcmp(a->arr, b->arr, (size_t)a->arr_n * qk_gguf_type_size(a->arr_type));
}

static int str_eq(const qk_str *a, const qk_str *b)
{
    return a->len == b->len && (a->len == 0 || !memcmp(a->s, b->s, (size_t)a->len));
}

static void vocab_same(const qk_vocab *a, const qk_vocab *b, const char *how)
{
    FZ_CHECK(a->model == b->model, "%s: model %d -> %d", how, a->model, b->model);
    FZ_CHECK(a->n_tokens == b->n_tokens, "%s: %lld -> %lld tokens", how, (long long)a->n_tokens,
             (long long)b->n_tokens);
    for (int64_t i = 0; i < a->n_tokens; i++) {
        FZ_CHECK(str_eq(&a->tokens[i], &b->tokens[i]), "%s: token %lld text differs", how, (long long)i);
        FZ_CHECK(!memcmp(&a->scores[i], &b->scores[i], sizeof(float)), "%s: token %lld score %g -> %g", how,
                 (long long)i, (double)a->scores[i], (double)b->scores[i]);
        FZ_CHECK(a->types[i] == b->types[i], "%s: token %lld type %d -> %d", how, (long long)i, a->types[i],
                 b->types[i]);
    }
    FZ_CHECK(a->n_merges == b->n_merges, "%s: %lld -> %lld merges", how, (long long)a->n_merges,
             (long long)b->n_merges);
    for (int64_t i = 0; i < a->n_merges; i++)
        FZ_CHECK(str_eq(&a->merges[i], &b->merges[i]), "%s: merge %lld differs", how, (long long)i);
    FZ_CHECK(a->bos_id == b->bos_id && a->eos_id == b->eos_id && a->unk_id == b->unk_id && a->pad_id == b->pad_id,
             "%s: special ids %d/%d/%d/%d -> %d/%d/%d/%d", how, a->bos_id, a->eos_id, a->unk_id, a->pad_id,
             b->bos_id, b->eos_id, b->unk_id, b->pad_id);
    FZ_CHECK(!a->add_bos == !b->add_bos && !a->add_eos == !b->add_eos &&
                 !a->add_space_prefix == !b->add_space_prefix,
             "%s: flags differ", how);
    /* GGUF has no byte-fallback key: a reader derives it from BYTE tokens. */
    int any_byte = 0;
    for (int64_t i = 0; i < a->n_tokens && !any_byte; i++)
        any_byte = a->types[i] == QK_TOKEN_BYTE;
    FZ_CHECK(!b->byte_fallback == !any_byte, "%s: byte_fallback %d with%s BYTE tokens", how, b->byte_fallback,
             any_byte ? "" : "out");
    FZ_CHECK((!a->pre && !b->pre) || (a->pre && b->pre && !strcmp(a->pre, b->pre)), "%s: pre differs", how);
}

static void vocab_gguf_roundtrip(const qk_vocab *v)
{
    qk_gguf_writer *w = NULL;
    qk_afile *f = NULL;
    qk_gguf *g = NULL;
    qk_vocab *v2 = NULL;
    FZ_OK(qk_gguf_writer_new(&w, 0));
    int rc = qk_vocab_to_gguf(v, w);
    if (rc) {
        /* The one refusal: llama.cpp rejects duplicate token texts. */
        FZ_CHECK(rc == QK_EFORMAT && qk_vocab_duplicates(v, NULL, NULL) > 0, "qk_vocab_to_gguf refused: %d", rc);
        qk_gguf_writer_free(w);
        return;
    }
    const char *path = fz_path("vocab-rt.gguf");
    FZ_OK(qk_afile_open(&f, path));
    FZ_OK(qk_gguf_writer_begin(w, f));
    FZ_OK(qk_gguf_writer_finish(w));
    FZ_OK(qk_afile_commit(f));
    qk_gguf_writer_free(w);
    FZ_OK(qk_gguf_open(&g, path));
    FZ_OK(qk_vocab_from_gguf(&v2, g));
    vocab_same(v, v2, "vocab -> GGUF -> vocab");
    qk_vocab_free(v2);
    qk_gguf_close(g);
}

/* The tokenizer.json writer never makes a file the reader refuses, and the
 * token texts survive (types, scores and ids are the lossy part: see
 * vocab_hfjson.c; fuzz_vocab_json checks them for JSON-born vocabularies). */
static void vocab_json_write_read(const qk_vocab *v)
{
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/tj", fz_dir());
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    int rc = qk_vocab_write_tokenizer_json(v, path);
    if (rc) {
        FZ_CHECK(rc == QK_EUNSUPPORTED || (rc == QK_EFORMAT && qk_vocab_duplicates(v, NULL, NULL) > 0),
                 "write_tokenizer_json refused: %d", rc);
        return;
    }
    qk_vocab *b = NULL;
    FZ_OK(qk_vocab_from_tokenizer_json(&b, path));
    FZ_CHECK(b->n_tokens == v->n_tokens, "tokenizer.json round trip: %lld -> %lld tokens", (long long)v->n_tokens,
             (long long)b->n_tokens);
    for (int64_t i = 0; i < v->n_tokens; i++)
        FZ_CHECK(str_eq(&v->tokens[i], &b->tokens[i]), "tokenizer.json round trip: token %lld text", (long long)i);
    qk_vocab_free(b);
    remove(path);
    rmdir(dir);
}

static void tokenizer_exercise(const qk_vocab *v, const uint8_t *text, size_t text_len)
{
    qk_tokenizer *t = NULL;
    if (qk_tokenizer_new(&t, v) != 0)
        return; /* a vocabulary the runtime cannot use is refused, which is fine */
    static const char sample[] = "Hello world! Once upon a time, 12 foxes\n\tran  \xc3\xa9t\xc3\xa9 \xe2\x96\x81 <s></s><unk>";
    const char *texts[2] = {sample, (const char *)text};
    size_t lens[2] = {sizeof sample - 1, text_len};
    for (int k = 0; k < 2; k++) {
        if (!texts[k])
            continue;
        for (unsigned flags = 0; flags < 4; flags++) {
            int32_t *ids = NULL;
            int64_t n = 0;
            if (qk_tokenize_ex(t, texts[k], lens[k], flags, &ids, &n) == 0) {
                for (int64_t i = 0; i < n; i++)
                    FZ_CHECK(ids[i] >= 0 && ids[i] < v->n_tokens, "token id %d out of range", ids[i]);
                char *out = NULL;
                size_t out_len = 0;
                if (qk_detokenize(t, ids, n, &out, &out_len) == 0)
                    free(out);
            }
            free(ids);
        }
    }
    char buf[64];
    for (int64_t id = 0; id < v->n_tokens && id < 4096; id++) {
        size_t need = 0;
        int rc = qk_token_to_piece(t, (int32_t)id, buf, sizeof buf, &need);
        FZ_CHECK(rc == 0 || rc == QK_ELIMIT, "token_to_piece(%lld) = %d", (long long)id, rc);
        FZ_CHECK(rc != 0 || need <= sizeof buf, "piece length %zu over capacity", need);
    }
    qk_tokenizer_free(t);
}

void fz_vocab_check(const qk_vocab *v, const uint8_t *text, size_t text_len)
{
    FZ_CHECK(v->n_tokens >= 1 && v->n_tokens <= QK_VOCAB_MAX_TOKENS, "n_tokens %lld", (long long)v->n_tokens);
    for (int64_t i = 0; i < v->n_tokens; i++) {
        int32_t id = qk_vocab_find(v, v->tokens[i].s, (size_t)v->tokens[i].len);
        FZ_CHECK(id >= 0 && id <= i && str_eq(&v->tokens[id], &v->tokens[i]), "find(token %lld) = %d", (long long)i,
                 id);
        FZ_CHECK(v->types[i] >= QK_TOKEN_NORMAL && v->types[i] <= QK_TOKEN_BYTE, "token %lld type %d",
                 (long long)i, v->types[i]);
    }
    const int32_t ids[4] = {v->bos_id, v->eos_id, v->unk_id, v->pad_id};
    for (int k = 0; k < 4; k++)
        FZ_CHECK(ids[k] >= -1 && ids[k] < v->n_tokens, "special id %d", ids[k]);
    vocab_gguf_roundtrip(v);
    vocab_json_write_read(v);
    tokenizer_exercise(v, text, text_len);
}

/* Library warnings (qk_log) would flood the fuzzer's output. */
__attribute__((constructor)) static void fz_init(void) { qk_log_set_level(QK_LOG_QUIET); }

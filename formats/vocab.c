/* The vocabulary structure: allocation, the text -> id hash index, and the
 * GGUF tokenizer.ggml.* keys in both directions.
 *
 * GGUF keys (types as llama.cpp checks them):
 *   tokenizer.ggml.model        string   "llama" (SentencePiece) | "gpt2" (byte-level BPE)
 *   tokenizer.ggml.pre          string   pre-tokenizer name (BPE)
 *   tokenizer.ggml.tokens       [string] unique token texts
 *   tokenizer.ggml.scores       [f32]    optional, 0 when absent
 *   tokenizer.ggml.token_type   [i32]    optional, NORMAL when absent
 *   tokenizer.ggml.merges       [string] "left right", rank order (BPE)
 *   tokenizer.ggml.{bos,eos,unknown,padding}_token_id  u32
 *   tokenizer.ggml.add_bos_token, add_eos_token, add_space_prefix  bool
 */
#include "quantkit/vocab.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vocab_internal.h"

/* Open addressing with linear probing over a power-of-two table at most half
 * full. A slot holds a token id (-1 empty) and the low 32 bits of its hash,
 * so most probes reject without comparing texts. The hash is seeded per
 * process (qk_hash64_table): token texts come from files, and with a fixed
 * hash a vocabulary could be built to put every token in one probe chain. */
struct qk_vocab_index {
    uint64_t mask;
    int32_t *ids;
    uint32_t *hashes;
    int64_t n_dups, first_dup, first_of;
};

/* ------------------------------------------------------------- lifecycle */

void qk_vocab_free(qk_vocab *v)
{
    if (!v)
        return;
    if (v->tokens)
        for (int64_t i = 0; i < v->n_tokens; i++)
            free(v->tokens[i].s);
    free(v->tokens);
    for (int64_t i = 0; i < v->n_merges; i++)
        free(v->merges[i].s);
    free(v->merges);
    free(v->scores);
    free(v->types);
    free(v->pre);
    if (v->index) {
        free(v->index->ids);
        free(v->index->hashes);
        free(v->index);
    }
    free(v);
}

int qk_vocab_alloc(qk_vocab **out, int64_t n_tokens, int model)
{
    *out = NULL;
    if (n_tokens < 1 || n_tokens > QK_VOCAB_MAX_TOKENS)
        return qk_error(QK_ELIMIT, "vocabulary of %" PRId64 " tokens is outside 1..%d", n_tokens,
                        QK_VOCAB_MAX_TOKENS);
    qk_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return qk_error(QK_ENOMEM, "out of memory allocating a vocabulary");
    v->model = model;
    v->n_tokens = n_tokens;
    v->tokens = calloc((size_t)n_tokens, sizeof *v->tokens);
    v->scores = calloc((size_t)n_tokens, sizeof *v->scores);
    v->types = malloc((size_t)n_tokens * sizeof *v->types);
    if (!v->tokens || !v->scores || !v->types) {
        qk_vocab_free(v);
        return qk_error(QK_ENOMEM, "out of memory allocating a vocabulary of %" PRId64 " tokens", n_tokens);
    }
    for (int64_t i = 0; i < n_tokens; i++)
        v->types[i] = QK_TOKEN_NORMAL;
    v->bos_id = v->eos_id = v->unk_id = v->pad_id = -1;
    v->add_space_prefix = 1;
    *out = v;
    return 0;
}

int qk_vocab_set_token(qk_vocab *v, int64_t id, const void *text, size_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        return qk_error(QK_ENOMEM, "out of memory copying token %" PRId64, id);
    if (len)
        memcpy(s, text, len);
    s[len] = 0;
    free(v->tokens[id].s);
    v->tokens[id].s = s;
    v->tokens[id].len = len;
    return 0;
}

int qk_vocab_push_merge(qk_vocab *v, int64_t *cap, const char *text, size_t len)
{
    if (v->n_merges == *cap) {
        int64_t ncap = *cap ? *cap * 2 : 1024;
        qk_str *m = realloc(v->merges, (size_t)ncap * sizeof *m);
        if (!m)
            return qk_error(QK_ENOMEM, "out of memory growing the merge list to %" PRId64, ncap);
        v->merges = m;
        *cap = ncap;
    }
    char *s = malloc(len + 1);
    if (!s)
        return qk_error(QK_ENOMEM, "out of memory copying a merge");
    memcpy(s, text, len);
    s[len] = 0;
    v->merges[v->n_merges].s = s;
    v->merges[v->n_merges].len = len;
    v->n_merges++;
    return 0;
}

void qk_vocab_detect_byte_fallback(qk_vocab *v)
{
    v->byte_fallback = 0;
    for (int64_t i = 0; i < v->n_tokens; i++)
        if (v->types[i] == QK_TOKEN_BYTE) {
            v->byte_fallback = 1;
            return;
        }
}

int qk_vocab_path_error(int rc, const char *path)
{
    if (rc && strncmp(qk_errmsg(), path, strlen(path)) != 0)
        qk_error_prefix(rc, path);
    return rc;
}

int qk_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        /* overlong forms, surrogates and values past U+10FFFF are not UTF-8 */
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* ----------------------------------------------------------------- index */

int qk_vocab_build_index(qk_vocab *v)
{
    if (v->index) {
        free(v->index->ids);
        free(v->index->hashes);
        free(v->index);
        v->index = NULL;
    }
    struct qk_vocab_index *ix = calloc(1, sizeof *ix);
    if (!ix)
        return qk_error(QK_ENOMEM, "out of memory building the vocabulary index");
    uint64_t cap = 16;
    while (cap < (uint64_t)v->n_tokens * 2)
        cap *= 2;
    ix->mask = cap - 1;
    ix->ids = malloc(cap * sizeof *ix->ids);
    ix->hashes = malloc(cap * sizeof *ix->hashes);
    if (!ix->ids || !ix->hashes) {
        free(ix->ids);
        free(ix->hashes);
        free(ix);
        return qk_error(QK_ENOMEM, "out of memory building the vocabulary index");
    }
    memset(ix->ids, 0xff, cap * sizeof *ix->ids); /* all -1 */
    ix->first_dup = ix->first_of = -1;
    for (int64_t id = 0; id < v->n_tokens; id++) {
        const qk_str *t = &v->tokens[id];
        uint64_t h = qk_hash64_table(t->s ? t->s : "", (size_t)t->len);
        uint64_t pos = h & ix->mask;
        for (;;) {
            int32_t other = ix->ids[pos];
            if (other < 0) {
                ix->ids[pos] = (int32_t)id;
                ix->hashes[pos] = (uint32_t)h;
                break;
            }
            if (ix->hashes[pos] == (uint32_t)h && v->tokens[other].len == t->len &&
                (t->len == 0 || !memcmp(v->tokens[other].s, t->s, (size_t)t->len))) {
                /* a duplicate text: the first id keeps the slot */
                if (ix->n_dups++ == 0) {
                    ix->first_dup = id;
                    ix->first_of = other;
                }
                break;
            }
            pos = (pos + 1) & ix->mask;
        }
    }
    v->index = ix;
    return 0;
}

int64_t qk_vocab_duplicates(const qk_vocab *v, int64_t *first_dup, int64_t *first_of)
{
    if (first_dup)
        *first_dup = v->index ? v->index->first_dup : -1;
    if (first_of)
        *first_of = v->index ? v->index->first_of : -1;
    return v->index ? v->index->n_dups : 0;
}

int32_t qk_vocab_find(const qk_vocab *v, const char *text, size_t len)
{
    if (!v || !v->index || (!text && len))
        return -1;
    const struct qk_vocab_index *ix = v->index;
    uint64_t h = qk_hash64_table(text ? text : "", len);
    for (uint64_t pos = h & ix->mask;; pos = (pos + 1) & ix->mask) {
        int32_t id = ix->ids[pos];
        if (id < 0)
            return -1;
        if (ix->hashes[pos] == (uint32_t)h && v->tokens[id].len == len &&
            (len == 0 || !memcmp(v->tokens[id].s, text, len)))
            return id;
    }
}

/* ------------------------------------------------------------ GGUF read */

/* A special token id: any integer type; absent, negative or 0xFFFFFFFF
 * (llama.cpp's converters write -1 as u32 for "none") means -1. */
static int gguf_read_id(const qk_gguf *g, const char *key, int64_t n, int32_t *out)
{
    const qk_gguf_kv *kv = qk_gguf_find_kv(g, key);
    if (!kv)
        return 0;
    int64_t id;
    switch (kv->type) {
    case QK_GGUF_U8: id = kv->v.u8; break;
    case QK_GGUF_I8: id = kv->v.i8; break;
    case QK_GGUF_U16: id = kv->v.u16; break;
    case QK_GGUF_I16: id = kv->v.i16; break;
    case QK_GGUF_U32: id = kv->v.u32 == UINT32_MAX ? -1 : (int64_t)kv->v.u32; break;
    case QK_GGUF_I32: id = kv->v.i32; break;
    case QK_GGUF_U64: id = kv->v.u64 >= (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)kv->v.u64; break;
    case QK_GGUF_I64: id = kv->v.i64; break;
    default:
        return qk_error(QK_EFORMAT, "%s: %s has type %s, expected u32", qk_gguf_path(g), key,
                        qk_gguf_type_name(kv->type));
    }
    if (id < 0) {
        *out = -1;
        return 0;
    }
    if (id >= n)
        return qk_error(QK_EFORMAT, "%s: %s = %" PRId64 " is not a token id (vocabulary has %" PRId64 " tokens)",
                        qk_gguf_path(g), key, id, n);
    *out = (int32_t)id;
    return 0;
}

static int gguf_read_bool(const qk_gguf *g, const char *key, int *out)
{
    const qk_gguf_kv *kv = qk_gguf_find_kv(g, key);
    if (!kv)
        return 0; /* keep the default */
    if (kv->type != QK_GGUF_BOOL)
        return qk_error(QK_EFORMAT, "%s: %s has type %s, expected bool", qk_gguf_path(g), key,
                        qk_gguf_type_name(kv->type));
    *out = kv->v.b != 0;
    return 0;
}

/* The array KV `key` with elements of `elem_type`, or NULL (and 0) when
 * absent; a present key of another shape is an error. */
static int gguf_array(const qk_gguf *g, const char *key, int elem_type, const qk_gguf_kv **out)
{
    *out = NULL;
    const qk_gguf_kv *kv = qk_gguf_find_kv(g, key);
    if (!kv)
        return 0;
    if (kv->type != QK_GGUF_ARRAY || kv->arr_type != elem_type)
        return qk_error(QK_EFORMAT, "%s: %s has type %s%s%s, expected array of %s", qk_gguf_path(g), key,
                        qk_gguf_type_name(kv->type), kv->type == QK_GGUF_ARRAY ? " of " : "",
                        kv->type == QK_GGUF_ARRAY ? qk_gguf_type_name(kv->arr_type) : "",
                        qk_gguf_type_name(elem_type));
    *out = kv;
    return 0;
}

int qk_vocab_from_gguf(qk_vocab **out, const qk_gguf *g)
{
    *out = NULL;
    const char *path = qk_gguf_path(g);
    qk_vocab *v = NULL;
    int rc;

    const qk_gguf_kv *kmodel = qk_gguf_find_kv(g, "tokenizer.ggml.model");
    if (!kmodel)
        return qk_error(QK_ENOTFOUND, "%s: no tokenizer.ggml.model key: the file carries no vocabulary", path);
    if (kmodel->type != QK_GGUF_STRING)
        return qk_error(QK_EFORMAT, "%s: tokenizer.ggml.model has type %s, expected string", path,
                        qk_gguf_type_name(kmodel->type));
    int model;
    if (!strcmp(kmodel->v.str.s, "llama") && kmodel->v.str.len == 5)
        model = QK_VOCAB_SPM;
    else if (!strcmp(kmodel->v.str.s, "gpt2") && kmodel->v.str.len == 4)
        model = QK_VOCAB_BPE;
    else
        return qk_error(QK_EUNSUPPORTED, "%s: tokenizer.ggml.model '%.64s' is not supported (only 'llama' and 'gpt2')",
                        path, kmodel->v.str.s);

    const qk_gguf_kv *ktok, *kscores, *ktypes, *kmerges;
    if ((rc = gguf_array(g, "tokenizer.ggml.tokens", QK_GGUF_STRING, &ktok)) ||
        (rc = gguf_array(g, "tokenizer.ggml.scores", QK_GGUF_F32, &kscores)) ||
        (rc = gguf_array(g, "tokenizer.ggml.token_type", QK_GGUF_I32, &ktypes)) ||
        (rc = gguf_array(g, "tokenizer.ggml.merges", QK_GGUF_STRING, &kmerges)))
        return rc;
    if (!ktok)
        return qk_error(QK_EFORMAT, "%s: tokenizer.ggml.model is set but tokenizer.ggml.tokens is missing", path);
    uint64_t n = ktok->arr_n;
    if (n == 0)
        return qk_error(QK_EFORMAT, "%s: tokenizer.ggml.tokens is empty", path);
    if (n > QK_VOCAB_MAX_TOKENS)
        return qk_error(QK_ELIMIT, "%s: tokenizer.ggml.tokens has %" PRIu64 " tokens, more than the limit of %d", path,
                        n, QK_VOCAB_MAX_TOKENS);
    if (kscores && kscores->arr_n != n)
        return qk_error(QK_EFORMAT, "%s: tokenizer.ggml.scores has %" PRIu64 " entries for %" PRIu64 " tokens", path,
                        kscores->arr_n, n);
    if (ktypes && ktypes->arr_n != n)
        return qk_error(QK_EFORMAT, "%s: tokenizer.ggml.token_type has %" PRIu64 " entries for %" PRIu64 " tokens",
                        path, ktypes->arr_n, n);
    if (kmerges && kmerges->arr_n > (uint64_t)INT32_MAX)
        return qk_error(QK_ELIMIT, "%s: tokenizer.ggml.merges has %" PRIu64 " entries", path, kmerges->arr_n);

    if ((rc = qk_vocab_alloc(&v, (int64_t)n, model)))
        goto done;
    for (uint64_t i = 0; i < n; i++) {
        if ((rc = qk_vocab_set_token(v, (int64_t)i, ktok->strs[i].s, (size_t)ktok->strs[i].len)))
            goto done;
        if (kscores) {
            float s = ((const float *)kscores->arr)[i];
            if (isnan(s)) {
                rc = qk_error(QK_ENONFINITE, "%s: tokenizer.ggml.scores[%" PRIu64 "] is NaN", path, i);
                goto done;
            }
            v->scores[i] = s;
        }
        if (ktypes) {
            int32_t t = ((const int32_t *)ktypes->arr)[i];
            if (t < QK_TOKEN_NORMAL || t > QK_TOKEN_BYTE) {
                rc = qk_error(QK_EFORMAT, "%s: tokenizer.ggml.token_type[%" PRIu64 "] = %d is not a token type (1..6)",
                              path, i, (int)t);
                goto done;
            }
            v->types[i] = t;
        }
    }
    if (kmerges && kmerges->arr_n) {
        v->merges = calloc((size_t)kmerges->arr_n, sizeof *v->merges);
        if (!v->merges) {
            rc = qk_error(QK_ENOMEM, "%s: out of memory for %" PRIu64 " merges", path, kmerges->arr_n);
            goto done;
        }
        int64_t cap = (int64_t)kmerges->arr_n;
        for (uint64_t i = 0; i < kmerges->arr_n; i++)
            if ((rc = qk_vocab_push_merge(v, &cap, kmerges->strs[i].s, (size_t)kmerges->strs[i].len)))
                goto done;
    }

    if ((rc = gguf_read_id(g, "tokenizer.ggml.bos_token_id", (int64_t)n, &v->bos_id)) ||
        (rc = gguf_read_id(g, "tokenizer.ggml.eos_token_id", (int64_t)n, &v->eos_id)) ||
        (rc = gguf_read_id(g, "tokenizer.ggml.unknown_token_id", (int64_t)n, &v->unk_id)) ||
        (rc = gguf_read_id(g, "tokenizer.ggml.padding_token_id", (int64_t)n, &v->pad_id)))
        goto done;
    /* llama.cpp's defaults when the keys are absent */
    v->add_bos = model == QK_VOCAB_SPM;
    v->add_eos = 0;
    v->add_space_prefix = model == QK_VOCAB_SPM;
    if ((rc = gguf_read_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos)) ||
        (rc = gguf_read_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos)) ||
        (rc = gguf_read_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix)))
        goto done;

    if (model == QK_VOCAB_BPE) {
        const qk_gguf_kv *kpre = qk_gguf_find_kv(g, "tokenizer.ggml.pre");
        if (kpre && kpre->type != QK_GGUF_STRING) {
            rc = qk_error(QK_EFORMAT, "%s: tokenizer.ggml.pre has type %s, expected string", path,
                          qk_gguf_type_name(kpre->type));
            goto done;
        }
        v->pre = strdup(kpre ? kpre->v.str.s : "default");
        if (!v->pre) {
            rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    qk_vocab_detect_byte_fallback(v);
    if ((rc = qk_vocab_build_index(v)))
        goto done;
    *out = v;
    v = NULL;
done:
    qk_vocab_free(v);
    return qk_vocab_path_error(rc, path);
}

/* ----------------------------------------------------------- GGUF write */

static int set_id(qk_gguf_writer *w, const char *key, int32_t id)
{
    if (id < 0) {
        qk_gguf_writer_remove_kv(w, key); /* absent: no key (llama.cpp warns on 0xFFFFFFFF) */
        return 0;
    }
    return qk_gguf_writer_set_u32(w, key, (uint32_t)id);
}

int qk_vocab_to_gguf(const qk_vocab *v, qk_gguf_writer *w)
{
    int rc = 0;
    const char **strs = NULL;
    uint64_t *lens = NULL;

    if (v->n_tokens < 1 || v->n_tokens > QK_VOCAB_MAX_TOKENS)
        return qk_error(QK_ELIMIT, "vocabulary of %" PRId64 " tokens is outside 1..%d", v->n_tokens,
                        QK_VOCAB_MAX_TOKENS);
    if (v->model != QK_VOCAB_SPM && v->model != QK_VOCAB_BPE)
        return qk_error(QK_EINVAL, "vocabulary model %d is neither SPM nor BPE", v->model);
    for (int64_t i = 0; i < v->n_tokens; i++)
        if (v->types[i] < QK_TOKEN_NORMAL || v->types[i] > QK_TOKEN_BYTE)
            return qk_error(QK_EINVAL, "token %" PRId64 " has type %d, not a GGUF token type (1..6)", i,
                            (int)v->types[i]);
    const int32_t ids[4] = {v->bos_id, v->eos_id, v->unk_id, v->pad_id};
    const char *idnames[4] = {"bos", "eos", "unknown", "padding"};
    for (int k = 0; k < 4; k++)
        if (ids[k] >= v->n_tokens || ids[k] < -1)
            return qk_error(QK_EINVAL, "%s token id %d is outside the vocabulary of %" PRId64 " tokens", idnames[k],
                            (int)ids[k], v->n_tokens);
    int64_t dup, of;
    if (qk_vocab_duplicates(v, &dup, &of) > 0)
        return qk_error(QK_EFORMAT,
                        "token %" PRId64 " '%.64s' repeats token %" PRId64 "; llama.cpp refuses GGUF vocabularies "
                        "with duplicate tokens (%" PRId64 " duplicates)",
                        dup, v->tokens[dup].s, of, qk_vocab_duplicates(v, NULL, NULL));

    size_t n = (size_t)v->n_tokens;
    size_t nm = (size_t)v->n_merges;
    size_t nmax = n > nm ? n : nm;
    strs = malloc(nmax * sizeof *strs);
    lens = malloc(nmax * sizeof *lens);
    if (!strs || !lens) {
        rc = qk_error(QK_ENOMEM, "out of memory writing the vocabulary");
        goto done;
    }
    if ((rc = qk_gguf_writer_set_str(w, "tokenizer.ggml.model", v->model == QK_VOCAB_SPM ? "llama" : "gpt2")))
        goto done;
    if (v->pre)
        rc = qk_gguf_writer_set_str(w, "tokenizer.ggml.pre", v->pre);
    else
        qk_gguf_writer_remove_kv(w, "tokenizer.ggml.pre");
    if (rc)
        goto done;
    for (size_t i = 0; i < n; i++) {
        strs[i] = v->tokens[i].s ? v->tokens[i].s : "";
        lens[i] = v->tokens[i].len;
    }
    if ((rc = qk_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, n)) ||
        (rc = qk_gguf_writer_set_arr(w, "tokenizer.ggml.scores", QK_GGUF_F32, v->scores, n)) ||
        (rc = qk_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", QK_GGUF_I32, v->types, n)))
        goto done;
    if (nm) {
        for (size_t i = 0; i < nm; i++) {
            strs[i] = v->merges[i].s;
            lens[i] = v->merges[i].len;
        }
        if ((rc = qk_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", strs, lens, nm)))
            goto done;
    } else {
        qk_gguf_writer_remove_kv(w, "tokenizer.ggml.merges");
    }
    if ((rc = set_id(w, "tokenizer.ggml.bos_token_id", v->bos_id)) ||
        (rc = set_id(w, "tokenizer.ggml.eos_token_id", v->eos_id)) ||
        (rc = set_id(w, "tokenizer.ggml.unknown_token_id", v->unk_id)) ||
        (rc = set_id(w, "tokenizer.ggml.padding_token_id", v->pad_id)) ||
        (rc = qk_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos != 0)) ||
        (rc = qk_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos != 0)) ||
        (rc = qk_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix != 0)))
        goto done;
done:
    free(strs);
    free(lens);
    return rc;
}

/* Hugging Face tokenizer.json <-> qk_vocab (model type "BPE" only).
 *
 * The parts used:
 *   model          {"type": "BPE", "vocab": {text: id}, "merges": ["a b", ...] or [["a", "b"], ...],
 *                   "byte_fallback": bool, "unk_token": text|null}
 *   added_tokens   [{"id", "content", "special"}]  special -> CONTROL, else USER_DEFINED
 *   normalizer, pre_tokenizer, decoder  (to tell the two flavours apart)
 *   post_processor TemplateProcessing   (whether BOS / EOS are added, and which)
 * and tokenizer_config.json beside the file when present (bos_token,
 * eos_token, unk_token, pad_token, add_bos_token, add_eos_token).
 *
 * Flavours:
 *   byte-level BPE (GPT-2, Llama 3: a ByteLevel pre-tokenizer or decoder) ->
 *     QK_VOCAB_BPE, merges kept in rank order, scores 0, pre "default"
 *     (llama.cpp names pre-tokenizers by hashing test outputs; we cannot).
 *   SentencePiece-as-BPE (Llama 2, Mistral: byte_fallback, Metaspace, a
 *     normalizer that prepends/replaces with U+2581) -> QK_VOCAB_SPM.
 *     tokenizer.json carries no scores, and llama.cpp's SPM tokenizer merges
 *     the pair whose result has the highest score. HF's BPE applies merges by
 *     rank, so the equivalent score of a token is minus the rank of the first
 *     merge that produces it, counting distinct results (-0, -1, -2, ...,
 *     SentencePiece's own BPE scores, negative zero included).
 *     Normal tokens no merge produces come next in id order; CONTROL,
 *     UNKNOWN, USER_DEFINED and BYTE tokens score 0, as SentencePiece has
 *     them. (llama.cpp's converter gives every token -1000 when only
 *     tokenizer.json exists, which loses the merge order.) For a vocabulary
 *     that came from a SentencePiece model this reproduces the score order,
 *     and for llama2.c tokenizers (scores 0, -1, -2, ... in id order) the
 *     scores themselves.
 * Token ids must be dense 0..n-1; a token in both vocab and added_tokens
 * must have one id.
 *
 * The writer emits the reverse: every token in model.vocab, CONTROL/UNKNOWN
 * tokens also as special added tokens, USER_DEFINED as non-special ones. SPM
 * merges are generated as HF's converter does: for each normal token by
 * descending score, every split into two vocabulary tokens. Not representable
 * in tokenizer.json: UNUSED types and BYTE types in byte-level vocabularies
 * (both read back as NORMAL), exact SPM scores.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/vocab.h"
#include "vocab_internal.h"

/* Limits checked before cJSON builds its tree (64 bytes per value): the
 * largest real tokenizer.json files are ~35 MB with ~2M values (262k
 * tokens, 500k merges as pairs); components nest a handful of levels. */
#define QK_TOKENIZER_JSON_MAX ((size_t)128 << 20)
#define QK_TOKENIZER_JSON_MAX_DEPTH 64
#define QK_TOKENIZER_JSON_MAX_VALUES ((int64_t)1 << 23)

/* ----------------------------------------------------------- JSON helpers */

static cJSON *obj_get(const cJSON *o, const char *key)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *obj_str(const cJSON *o, const char *key)
{
    cJSON *s = obj_get(o, key);
    return cJSON_IsString(s) ? s->valuestring : NULL;
}

/* `node` itself or the first component (Sequence members, at any depth)
 * with "type": name; NULL when none. */
static const cJSON *find_type(const cJSON *node, const char *name)
{
    if (!cJSON_IsObject(node))
        return NULL;
    const char *t = obj_str(node, "type");
    if (t && !strcmp(t, name))
        return node;
    static const char *const lists[] = {"pretokenizers", "normalizers", "decoders", "processors"};
    for (size_t k = 0; k < sizeof lists / sizeof *lists; k++) {
        const cJSON *arr = obj_get(node, lists[k]);
        const cJSON *it;
        if (!cJSON_IsArray(arr))
            continue;
        cJSON_ArrayForEach(it, arr)
        {
            const cJSON *r = find_type(it, name);
            if (r)
                return r;
        }
    }
    return NULL;
}

static int has_type(const cJSON *node, const char *name) { return find_type(node, name) != NULL; }

/* A token id from JSON: an integral number in [0, QK_VOCAB_MAX_TOKENS). */
static int json_id(const char *path, const cJSON *n, const char *what, const char *text, int64_t *out)
{
    if (!cJSON_IsNumber(n))
        return qk_error(QK_EFORMAT, "%s: %s '%.64s' has no numeric id", path, what, text);
    double d = n->valuedouble;
    if (!(d >= 0) || d != floor(d) || d >= QK_VOCAB_MAX_TOKENS)
        return qk_error(QK_EFORMAT, "%s: %s '%.64s' has id %g, not an integer in 0..%d", path, what, text, d,
                        QK_VOCAB_MAX_TOKENS - 1);
    *out = (int64_t)d;
    return 0;
}

/* bos_token etc. in tokenizer_config.json: a string or {"content": ...}. */
static const char *config_token(const cJSON *cfg, const char *key)
{
    const cJSON *t = obj_get(cfg, key);
    if (cJSON_IsString(t))
        return t->valuestring;
    return obj_str(t, "content");
}

static int parse_json_file(const char *path, cJSON **out)
{
    char *text = NULL;
    size_t len = 0;
    int rc = qk_read_file(&text, &len, path, QK_TOKENIZER_JSON_MAX);
    if (rc)
        return rc;
    if ((rc = qk_json_check_limits(path, "JSON", text, len, QK_TOKENIZER_JSON_MAX_DEPTH,
                                   QK_TOKENIZER_JSON_MAX_VALUES))) {
        free(text);
        return rc;
    }
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!*out) {
        rc = qk_error(QK_EFORMAT, "%s: not valid JSON (error near byte %td of %zu)", path,
                      end ? end - text : (ptrdiff_t)0, len);
    }
    free(text);
    return rc;
}

/* ------------------------------------------------------------------ read */

typedef struct slot {
    const char *text; /* into the parsed JSON */
    int added;        /* 1 when named in added_tokens */
    int special;
} slot;

static int put_slot(const char *path, slot *slots, int64_t id, const char *text, int added, int special)
{
    slot *s = &slots[id];
    if (s->text && strcmp(s->text, text))
        return qk_error(QK_EFORMAT, "%s: tokens '%.64s' and '%.64s' both have id %" PRId64, path, s->text, text, id);
    if (s->text && !added)
        return qk_error(QK_EFORMAT, "%s: token '%.64s' appears twice in model.vocab", path, text);
    s->text = text;
    if (added) {
        s->added = 1;
        s->special = special;
    }
    return 0;
}

/* "<0xNN>" exactly: SentencePiece's byte-fallback pieces. */
static int is_byte_token(const char *s)
{
    static const char hex[] = "0123456789abcdefABCDEF";
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[3] && s[4] && strchr(hex, s[3]) && strchr(hex, s[4]) &&
           s[5] == '>';
}

/* Split one merges entry into left and right texts. */
static int merge_parts(const char *path, const cJSON *m, int64_t rank, const char **l, size_t *ll, const char **r,
                       size_t *rl)
{
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring;
        const char *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ') || sp == s || !sp[1])
            return qk_error(QK_EFORMAT, "%s: merge %" PRId64 " '%.64s' is not two tokens separated by one space",
                            path, rank, s);
        *l = s, *ll = (size_t)(sp - s), *r = sp + 1, *rl = strlen(sp + 1);
        return 0;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
        cJSON_IsString(m->child->next)) {
        *l = m->child->valuestring, *ll = strlen(*l);
        *r = m->child->next->valuestring, *rl = strlen(*r);
        return 0;
    }
    return qk_error(QK_EFORMAT, "%s: merge %" PRId64 " is neither \"a b\" nor [\"a\", \"b\"]", path, rank);
}

/* Check every merge against the vocabulary; for BPE keep them as "a b"
 * strings, for SPM turn their order into scores (see the file comment). */
static int read_merges(const char *path, const cJSON *merges, qk_vocab *v)
{
    int rc = 0;
    int64_t cap = 0, rank = 0, next = 0;
    int64_t *result_rank = NULL;
    char *buf = NULL;
    size_t bufcap = 0;
    if (merges && !cJSON_IsArray(merges))
        return qk_error(QK_EFORMAT, "%s: model.merges is not an array", path);
    if (v->model == QK_VOCAB_SPM) {
        result_rank = malloc((size_t)v->n_tokens * sizeof *result_rank);
        if (!result_rank)
            return qk_error(QK_ENOMEM, "%s: out of memory", path);
        for (int64_t i = 0; i < v->n_tokens; i++)
            result_rank[i] = -1;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, merges)
    {
        const char *l = NULL, *r = NULL;
        size_t ll = 0, rl = 0;
        if ((rc = merge_parts(path, m, rank, &l, &ll, &r, &rl)))
            goto done;
        if (ll + rl + 2 > bufcap) {
            bufcap = (ll + rl + 2) * 2;
            char *nb = realloc(buf, bufcap);
            if (!nb) {
                rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
                goto done;
            }
            buf = nb;
        }
        memcpy(buf, l, ll);
        memcpy(buf + ll, r, rl);
        int32_t lid = qk_vocab_find(v, l, ll), rid = qk_vocab_find(v, r, rl), id = qk_vocab_find(v, buf, ll + rl);
        if (lid < 0 || rid < 0 || id < 0) {
            const char *miss = lid < 0 ? l : rid < 0 ? r : buf;
            size_t ml = lid < 0 ? ll : rid < 0 ? rl : ll + rl;
            rc = qk_error(QK_EFORMAT, "%s: merge %" PRId64 ": '%.*s' is not in the vocabulary", path, rank,
                          (int)(ml > 64 ? 64 : ml), miss);
            goto done;
        }
        if (v->model == QK_VOCAB_BPE) {
            if (memchr(l, ' ', ll) || memchr(r, ' ', rl)) {
                rc = qk_error(QK_EUNSUPPORTED,
                              "%s: merge %" PRId64 " has a token with a space, which GGUF's \"a b\" merges cannot hold",
                              path, rank);
                goto done;
            }
            buf[ll] = ' ';
            memcpy(buf + ll + 1, r, rl);
            if ((rc = qk_vocab_push_merge(v, &cap, buf, ll + 1 + rl)))
                goto done;
        } else if (result_rank[id] < 0) {
            result_rank[id] = next++;
        }
        rank++;
    }
    if (v->model == QK_VOCAB_SPM) {
        for (int64_t i = 0; i < v->n_tokens; i++) {
            int t = v->types[i];
            if (t == QK_TOKEN_NORMAL || t == QK_TOKEN_UNUSED)
                v->scores[i] = -(float)(result_rank[i] >= 0 ? result_rank[i] : next++);
            else
                v->scores[i] = 0.0f;
        }
    }
done:
    free(result_rank);
    free(buf);
    return rc;
}

/* BOS/EOS from a TemplateProcessing post-processor: the special tokens
 * before / after sequence "A" in the "single" template (their texts into
 * *bos_text / *eos_text, NULL when none). Returns 0 when there is none. */
static int template_specials(const cJSON *post, const char **bos_text, const char **eos_text)
{
    *bos_text = *eos_text = NULL;
    const cJSON *tp = find_type(post, "TemplateProcessing");
    const cJSON *single = obj_get(tp, "single");
    if (!cJSON_IsArray(single))
        return 0;
    int seen_seq = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, single)
    {
        const cJSON *st = obj_get(it, "SpecialToken");
        if (obj_get(it, "Sequence"))
            seen_seq = 1;
        else if (obj_str(st, "id")) {
            if (seen_seq && !*eos_text)
                *eos_text = obj_str(st, "id");
            else if (!seen_seq && !*bos_text)
                *bos_text = obj_str(st, "id");
        }
    }
    return 1;
}

static int find_named(const qk_vocab *v, const char *text)
{
    return text ? qk_vocab_find(v, text, strlen(text)) : -1;
}

int qk_vocab_from_tokenizer_json(qk_vocab **out, const char *path)
{
    *out = NULL;
    cJSON *root = NULL, *cfg = NULL;
    slot *slots = NULL;
    qk_vocab *v = NULL;
    char *cfg_path = NULL;
    int rc;

    if ((rc = parse_json_file(path, &root)))
        goto done;
    const cJSON *model = obj_get(root, "model");
    if (!cJSON_IsObject(model)) {
        rc = qk_error(QK_EFORMAT, "%s: no \"model\" object: not a Hugging Face tokenizer.json", path);
        goto done;
    }
    const char *mtype = obj_str(model, "type");
    if (mtype ? strcmp(mtype, "BPE") != 0 : !obj_get(model, "merges")) {
        rc = qk_error(QK_EUNSUPPORTED, "%s: tokenizer model type '%s' is not supported (only BPE)", path,
                      mtype ? mtype : "?");
        goto done;
    }
    const cJSON *vocab = obj_get(model, "vocab");
    const cJSON *added = obj_get(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) {
        rc = qk_error(QK_EFORMAT, "%s: model.vocab is not an object", path);
        goto done;
    }
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added)) {
        rc = qk_error(QK_EFORMAT, "%s: added_tokens is not an array", path);
        goto done;
    }

    /* Pass 1: ids and the count, before allocating per-token memory. */
    int64_t n_entries = 0, max_id = -1, id;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab)
    {
        if ((rc = json_id(path, it, "token", it->string, &id)))
            goto done;
        max_id = id > max_id ? id : max_id;
        n_entries++;
    }
    if (cJSON_IsArray(added))
        cJSON_ArrayForEach(it, added)
        {
            const char *content = obj_str(it, "content");
            if (!content) {
                rc = qk_error(QK_EFORMAT, "%s: an added_tokens entry has no \"content\" string", path);
                goto done;
            }
            if ((rc = json_id(path, obj_get(it, "id"), "added token", content, &id)))
                goto done;
            max_id = id > max_id ? id : max_id;
            n_entries++;
        }
    int64_t n = max_id + 1;
    if (n == 0) {
        rc = qk_error(QK_EFORMAT, "%s: the vocabulary is empty", path);
        goto done;
    }
    if (n > n_entries) {
        rc = qk_error(QK_EFORMAT, "%s: ids must be dense 0..n-1, but id %" PRId64 " is used with only %" PRId64
                      " tokens", path, max_id, n_entries);
        goto done;
    }
    slots = calloc((size_t)n, sizeof *slots);
    if (!slots) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    cJSON_ArrayForEach(it, vocab)
    {
        (void)json_id(path, it, "token", it->string, &id); /* checked in pass 1 */
        if ((rc = put_slot(path, slots, id, it->string, 0, 0)))
            goto done;
    }
    if (cJSON_IsArray(added))
        cJSON_ArrayForEach(it, added)
        {
            (void)json_id(path, obj_get(it, "id"), "added token", obj_str(it, "content"), &id);
            if ((rc = put_slot(path, slots, id, obj_str(it, "content"), 1, cJSON_IsTrue(obj_get(it, "special")))))
                goto done;
        }
    for (int64_t i = 0; i < n; i++)
        if (!slots[i].text) {
            rc = qk_error(QK_EFORMAT, "%s: no token has id %" PRId64 " (ids must be dense 0..%" PRId64 ")", path, i,
                          n - 1);
            goto done;
        }

    /* The flavour. */
    const cJSON *norm = obj_get(root, "normalizer"), *pre = obj_get(root, "pre_tokenizer"),
                *dec = obj_get(root, "decoder");
    int byte_fallback = cJSON_IsTrue(obj_get(model, "byte_fallback"));
    int byte_level = has_type(pre, "ByteLevel") || has_type(dec, "ByteLevel");
    int spm = !byte_level && (byte_fallback || has_type(pre, "Metaspace") || has_type(dec, "Metaspace") ||
                              has_type(norm, "Prepend") || has_type(dec, "ByteFallback"));

    if ((rc = qk_vocab_alloc(&v, n, spm ? QK_VOCAB_SPM : QK_VOCAB_BPE)))
        goto done;
    const char *unk_text = obj_str(model, "unk_token");
    for (int64_t i = 0; i < n; i++) {
        const slot *s = &slots[i];
        if ((rc = qk_vocab_set_token(v, i, s->text, strlen(s->text))))
            goto done;
        int type = QK_TOKEN_NORMAL;
        if (unk_text && !strcmp(s->text, unk_text))
            type = QK_TOKEN_UNKNOWN;
        else if (s->added)
            type = s->special ? QK_TOKEN_CONTROL : QK_TOKEN_USER_DEFINED;
        else if (spm && is_byte_token(s->text))
            type = QK_TOKEN_BYTE;
        v->types[i] = type;
    }
    if ((rc = qk_vocab_build_index(v)))
        goto done;
    int64_t dup, of;
    if (qk_vocab_duplicates(v, &dup, &of) > 0) {
        rc = qk_error(QK_EFORMAT, "%s: token '%.64s' has two ids, %" PRId64 " and %" PRId64, path, v->tokens[dup].s,
                      of, dup);
        goto done;
    }
    if ((rc = read_merges(path, obj_get(model, "merges"), v)))
        goto done;

    v->byte_fallback = byte_fallback;
    if (spm) {
        const cJSON *ms = find_type(pre, "Metaspace");
        const char *scheme = obj_str(ms, "prepend_scheme");
        if (has_type(norm, "Prepend"))
            v->add_space_prefix = 1;
        else if (scheme)
            v->add_space_prefix = strcmp(scheme, "never") != 0;
        else if (ms && obj_get(ms, "add_prefix_space"))
            v->add_space_prefix = cJSON_IsTrue(obj_get(ms, "add_prefix_space"));
        else
            v->add_space_prefix = 0;
    } else {
        v->add_space_prefix = 0;
        v->pre = strdup("default");
        if (!v->pre) {
            rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
            goto done;
        }
    }

    /* Special tokens: tokenizer_config.json beside the file, else defaults. */
    const char *slash = strrchr(path, '/');
    if (slash) {
        size_t dl = (size_t)(slash - path);
        char *dir = malloc(dl + 1);
        if (dir) {
            memcpy(dir, path, dl);
            dir[dl] = 0;
            cfg_path = qk_path_join(dl ? dir : "/", "tokenizer_config.json");
            free(dir);
        }
    } else {
        cfg_path = strdup("tokenizer_config.json");
    }
    if (!cfg_path) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if (qk_file_exists(cfg_path)) {
        if ((rc = parse_json_file(cfg_path, &cfg)))
            goto done;
        if (!cJSON_IsObject(cfg)) {
            rc = qk_error(QK_EFORMAT, "%s: not a JSON object", cfg_path);
            goto done;
        }
    }
    v->unk_id = find_named(v, unk_text);
    if (v->unk_id < 0)
        v->unk_id = find_named(v, config_token(cfg, "unk_token"));
    if (v->unk_id < 0 && spm)
        v->unk_id = find_named(v, "<unk>");
    /* bos/eos: named in tokenizer_config.json, else the template's special
     * tokens, else "<s>" / "</s>" */
    const char *tbos, *teos;
    int have_template = template_specials(obj_get(root, "post_processor"), &tbos, &teos);
    const char *cbos = config_token(cfg, "bos_token"), *ceos = config_token(cfg, "eos_token");
    v->bos_id = find_named(v, cbos ? cbos : tbos ? tbos : "<s>");
    v->eos_id = find_named(v, ceos ? ceos : teos ? teos : "</s>");
    v->pad_id = find_named(v, config_token(cfg, "pad_token"));

    v->add_bos = have_template ? tbos != NULL : spm;
    v->add_eos = have_template ? teos != NULL : 0;
    const cJSON *ab = obj_get(cfg, "add_bos_token"), *ae = obj_get(cfg, "add_eos_token");
    if (cJSON_IsBool(ab))
        v->add_bos = cJSON_IsTrue(ab);
    if (cJSON_IsBool(ae))
        v->add_eos = cJSON_IsTrue(ae);

    *out = v;
    v = NULL;
done:
    /* errors about tokenizer_config.json name that file; others this one */
    if (rc && !(cfg_path && !strncmp(qk_errmsg(), cfg_path, strlen(cfg_path))))
        qk_vocab_path_error(rc, path);
    qk_vocab_free(v);
    free(slots);
    free(cfg_path);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    return rc;
}

/* ----------------------------------------------------------------- write */

typedef struct merge_ref {
    int32_t l, r;
} merge_ref;

typedef struct order_ent {
    float score;
    int32_t id;
} order_ent;

static int cmp_order(const void *a, const void *b)
{
    const order_ent *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_merge(const void *a, const void *b)
{
    const merge_ref *x = a, *y = b;
    if (x->l != y->l)
        return (x->l > y->l) - (x->l < y->l);
    return (x->r > y->r) - (x->r < y->r);
}

/* SPM merges as HF's SentencePiece converter derives them: normal tokens by
 * descending score (ties by id); for each, every split at a UTF-8 character
 * boundary into two vocabulary tokens, ordered by (left id, right id). */
static int spm_merges(const qk_vocab *v, merge_ref **out, int64_t *out_n)
{
    int rc = 0;
    order_ent *order = NULL;
    merge_ref *list = NULL, local_buf[64], *local = local_buf;
    int64_t n = 0, cap = 0, n_order = 0;
    order = malloc((size_t)v->n_tokens * sizeof *order);
    if (!order)
        return qk_error(QK_ENOMEM, "out of memory generating merges");
    for (int64_t i = 0; i < v->n_tokens; i++)
        if (v->types[i] == QK_TOKEN_NORMAL || v->types[i] == QK_TOKEN_UNUSED)
            order[n_order++] = (order_ent){v->scores[i], (int32_t)i};
    qsort(order, (size_t)n_order, sizeof *order, cmp_order);
    for (int64_t k = 0; k < n_order; k++) {
        const qk_str *t = &v->tokens[order[k].id];
        size_t n_local = 0, cap_local = sizeof local_buf / sizeof *local_buf;
        for (size_t cut = 1; cut < t->len; cut++) {
            if (((unsigned char)t->s[cut] & 0xc0) == 0x80)
                continue; /* inside a character */
            int32_t l = qk_vocab_find(v, t->s, cut), r = qk_vocab_find(v, t->s + cut, t->len - cut);
            if (l < 0 || r < 0)
                continue;
            if (n_local == cap_local) {
                merge_ref *nl = malloc(cap_local * 2 * sizeof *nl);
                if (!nl) {
                    rc = qk_error(QK_ENOMEM, "out of memory generating merges");
                    goto done;
                }
                memcpy(nl, local, n_local * sizeof *nl);
                if (local != local_buf)
                    free(local);
                local = nl;
                cap_local *= 2;
            }
            local[n_local++] = (merge_ref){l, r};
        }
        qsort(local, n_local, sizeof *local, cmp_merge);
        if (n + (int64_t)n_local > cap) {
            int64_t ncap = (cap ? cap * 2 : 1024) + (int64_t)n_local;
            merge_ref *nl = realloc(list, (size_t)ncap * sizeof *nl);
            if (!nl) {
                rc = qk_error(QK_ENOMEM, "out of memory generating merges");
                goto done;
            }
            list = nl;
            cap = ncap;
        }
        if (n_local) /* list is still NULL while no token has a split */
            memcpy(list + n, local, n_local * sizeof *local);
        n += (int64_t)n_local;
        if (local != local_buf) {
            free(local);
            local = local_buf;
        }
    }
done:
    if (local != local_buf)
        free(local);
    free(order);
    if (rc) {
        free(list);
        list = NULL;
        n = 0;
    }
    *out = list;
    *out_n = n;
    return rc;
}

/* {"type": "Replace", "pattern": {"String": from}, "content": to} */
static cJSON *json_replace(const char *from, const char *to)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Replace");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "pattern"), "String", from);
    cJSON_AddStringToObject(o, "content", to);
    return o;
}

static cJSON *json_typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static cJSON *json_byte_level(int add_prefix_space)
{
    cJSON *o = json_typed("ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddTrueToObject(o, "trim_offsets");
    cJSON_AddTrueToObject(o, "use_regex");
    return o;
}

/* TemplateProcessing adding BOS / EOS as the vocabulary says. */
static cJSON *json_template(const qk_vocab *v)
{
    int bos = v->add_bos && v->bos_id >= 0, eos = v->add_eos && v->eos_id >= 0;
    cJSON *tp = json_typed("TemplateProcessing");
    static const char *const parts[2] = {"single", "pair"};
    for (int p = 0; p < 2; p++) {
        cJSON *arr = cJSON_AddArrayToObject(tp, parts[p]);
        for (int seq = 0; seq <= p; seq++) {
            cJSON *e;
            if (bos) {
                e = cJSON_CreateObject();
                cJSON *st = cJSON_AddObjectToObject(e, "SpecialToken");
                cJSON_AddStringToObject(st, "id", v->tokens[v->bos_id].s);
                cJSON_AddNumberToObject(st, "type_id", seq);
                cJSON_AddItemToArray(arr, e);
            }
            e = cJSON_CreateObject();
            cJSON *sq = cJSON_AddObjectToObject(e, "Sequence");
            cJSON_AddStringToObject(sq, "id", seq ? "B" : "A");
            cJSON_AddNumberToObject(sq, "type_id", seq);
            cJSON_AddItemToArray(arr, e);
            if (eos) {
                e = cJSON_CreateObject();
                cJSON *st = cJSON_AddObjectToObject(e, "SpecialToken");
                cJSON_AddStringToObject(st, "id", v->tokens[v->eos_id].s);
                cJSON_AddNumberToObject(st, "type_id", seq);
                cJSON_AddItemToArray(arr, e);
            }
        }
    }
    cJSON *sp = cJSON_AddObjectToObject(tp, "special_tokens");
    for (int k = 0; k < 2; k++) {
        int32_t id = k == 0 ? (bos ? v->bos_id : -1) : (eos ? v->eos_id : -1);
        if (id < 0 || cJSON_GetObjectItemCaseSensitive(sp, v->tokens[id].s))
            continue;
        cJSON *o = cJSON_AddObjectToObject(sp, v->tokens[id].s);
        cJSON_AddStringToObject(o, "id", v->tokens[id].s);
        cJSON_AddItemToObject(o, "ids", cJSON_CreateIntArray((const int[]){id}, 1));
        cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
        cJSON_AddItemToArray(toks, cJSON_CreateString(v->tokens[id].s));
    }
    return tp;
}

static cJSON *json_merge(const qk_str *l, const qk_str *r, int pairs, char **buf, size_t *cap)
{
    if (pairs) {
        cJSON *a = cJSON_CreateArray();
        cJSON_AddItemToArray(a, cJSON_CreateString(l->s));
        cJSON_AddItemToArray(a, cJSON_CreateString(r->s));
        return a;
    }
    size_t need = (size_t)l->len + (size_t)r->len + 2;
    if (need > *cap) {
        char *nb = realloc(*buf, need * 2);
        if (!nb)
            return NULL;
        *buf = nb;
        *cap = need * 2;
    }
    memcpy(*buf, l->s, (size_t)l->len);
    (*buf)[l->len] = ' ';
    memcpy(*buf + l->len + 1, r->s, (size_t)r->len);
    (*buf)[need - 1] = 0;
    return cJSON_CreateString(*buf);
}

int qk_vocab_write_tokenizer_json(const qk_vocab *v, const char *path)
{
    int rc = 0;
    cJSON *root = NULL;
    char *text = NULL, *buf = NULL;
    size_t bufcap = 0;
    merge_ref *gen = NULL;
    int64_t n_gen = 0;
    qk_afile *f = NULL;

    if (v->model != QK_VOCAB_SPM && v->model != QK_VOCAB_BPE)
        return qk_error(QK_EINVAL, "%s: vocabulary model %d is neither SPM nor BPE", path, v->model);
    int64_t dup, of;
    if (qk_vocab_duplicates(v, &dup, &of) > 0)
        return qk_error(QK_EFORMAT, "%s: token %" PRId64 " '%.64s' repeats token %" PRId64
                        "; tokenizer.json vocab keys must be unique", path, dup, v->tokens[dup].s, of);
    for (int64_t i = 0; i < v->n_tokens; i++) {
        const qk_str *t = &v->tokens[i];
        if (memchr(t->s, 0, (size_t)t->len) || !qk_utf8_valid(t->s, (size_t)t->len))
            return qk_error(QK_EUNSUPPORTED, "%s: token %" PRId64 " is not NUL-free UTF-8; tokenizer.json cannot hold it",
                            path, i);
    }
    if (v->model == QK_VOCAB_SPM && (rc = spm_merges(v, &gen, &n_gen)))
        return qk_error_prefix(rc, path);

    rc = QK_ENOMEM; /* until the tree is complete: cJSON reports only allocation failure */
    root = cJSON_CreateObject();
    if (!root)
        goto fail;
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int64_t i = 0; added && i < v->n_tokens; i++) {
        int t = v->types[i];
        if (t != QK_TOKEN_CONTROL && t != QK_TOKEN_UNKNOWN && t != QK_TOKEN_USER_DEFINED)
            continue;
        int special = t != QK_TOKEN_USER_DEFINED;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)i);
        cJSON_AddStringToObject(o, "content", v->tokens[i].s);
        cJSON_AddFalseToObject(o, "single_word");
        cJSON_AddFalseToObject(o, "lstrip");
        cJSON_AddFalseToObject(o, "rstrip");
        cJSON_AddBoolToObject(o, "normalized", !special);
        cJSON_AddBoolToObject(o, "special", special);
        if (!cJSON_AddItemToArray(added, o))
            goto fail;
    }
    const char *sp = QK_SPM_SPACE;
    cJSON *model = NULL;
    if (v->model == QK_VOCAB_SPM) {
        cJSON *norm = json_typed("Sequence");
        cJSON *nl = cJSON_AddArrayToObject(norm, "normalizers");
        if (v->add_space_prefix) {
            cJSON *p = json_typed("Prepend");
            cJSON_AddStringToObject(p, "prepend", sp);
            cJSON_AddItemToArray(nl, p);
        }
        cJSON_AddItemToArray(nl, json_replace(" ", sp));
        cJSON_AddItemToObject(root, "normalizer", norm);
        cJSON_AddNullToObject(root, "pre_tokenizer");
        cJSON_AddItemToObject(root, "post_processor", json_template(v));
        cJSON *dec = json_typed("Sequence");
        cJSON *dl = cJSON_AddArrayToObject(dec, "decoders");
        cJSON_AddItemToArray(dl, json_replace(sp, " "));
        cJSON_AddItemToArray(dl, json_typed("ByteFallback"));
        cJSON_AddItemToArray(dl, json_typed("Fuse"));
        if (v->add_space_prefix) {
            cJSON *s = json_typed("Strip");
            cJSON_AddStringToObject(s, "content", " ");
            cJSON_AddNumberToObject(s, "start", 1);
            cJSON_AddNumberToObject(s, "stop", 0);
            cJSON_AddItemToArray(dl, s);
        }
        cJSON_AddItemToObject(root, "decoder", dec);
    } else {
        cJSON_AddNullToObject(root, "normalizer");
        cJSON_AddItemToObject(root, "pre_tokenizer", json_byte_level(0));
        cJSON_AddItemToObject(root, "post_processor", json_template(v));
        cJSON_AddItemToObject(root, "decoder", json_byte_level(1));
    }
    model = cJSON_AddObjectToObject(root, "model");
    if (!model)
        goto fail;
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    if (v->unk_id >= 0)
        cJSON_AddStringToObject(model, "unk_token", v->tokens[v->unk_id].s);
    else
        cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", v->model == QK_VOCAB_SPM);
    cJSON_AddBoolToObject(model, "byte_fallback", v->model == QK_VOCAB_SPM && v->byte_fallback);
    cJSON_AddFalseToObject(model, "ignore_merges");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    if (!vocab)
        goto fail;
    for (int64_t i = 0; i < v->n_tokens; i++) {
        cJSON *num = cJSON_CreateNumber((double)i);
        if (!num || !cJSON_AddItemToObject(vocab, v->tokens[i].s, num)) {
            cJSON_Delete(num);
            goto fail;
        }
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    if (!merges)
        goto fail;
    if (v->model == QK_VOCAB_SPM) {
        int pairs = 0;
        for (int64_t k = 0; k < n_gen && !pairs; k++)
            pairs = memchr(v->tokens[gen[k].l].s, ' ', (size_t)v->tokens[gen[k].l].len) ||
                    memchr(v->tokens[gen[k].r].s, ' ', (size_t)v->tokens[gen[k].r].len);
        for (int64_t k = 0; k < n_gen; k++) {
            cJSON *m = json_merge(&v->tokens[gen[k].l], &v->tokens[gen[k].r], pairs, &buf, &bufcap);
            if (!m || !cJSON_AddItemToArray(merges, m))
                goto fail;
        }
    } else {
        for (int64_t k = 0; k < v->n_merges; k++) {
            const char *ms = v->merges[k].s;
            size_t len = (size_t)v->merges[k].len;
            if (!qk_utf8_valid(ms, len) || memchr(ms, 0, len)) {
                rc = qk_error(QK_EUNSUPPORTED, "%s: merge %" PRId64 " is not NUL-free UTF-8", path, k);
                goto done;
            }
            /* Only what a tokenizer.json reader takes (this one, Hugging
             * Face's): "left right" with one space, both sides and their
             * concatenation in the vocabulary. GGUF merges are not checked
             * when read (llama.cpp ignores ones that never match). */
            const char *sp = memchr(ms, ' ', len);
            size_t ll = sp ? (size_t)(sp - ms) : 0, rl = sp ? len - ll - 1 : 0;
            int ok = sp && ll > 0 && rl > 0 && !memchr(sp + 1, ' ', rl) && qk_vocab_find(v, ms, ll) >= 0 &&
                     qk_vocab_find(v, sp + 1, rl) >= 0;
            if (ok && ll + rl > bufcap) {
                char *nb = realloc(buf, (ll + rl) * 2);
                if (!nb)
                    goto fail;
                buf = nb;
                bufcap = (ll + rl) * 2;
            }
            if (ok) {
                memcpy(buf, ms, ll);
                memcpy(buf + ll, sp + 1, rl);
                ok = qk_vocab_find(v, buf, ll + rl) >= 0;
            }
            if (!ok) {
                rc = qk_error(QK_EUNSUPPORTED,
                              "%s: merge %" PRId64 " '%.64s' is not two vocabulary tokens (separated by one space) "
                              "whose concatenation is a token; tokenizer.json cannot hold it",
                              path, k, ms);
                goto done;
            }
            cJSON *m = cJSON_CreateString(ms);
            if (!m || !cJSON_AddItemToArray(merges, m))
                goto fail;
        }
    }
    text = cJSON_Print(root);
    if (!text)
        goto fail;

    if ((rc = qk_afile_open(&f, path)) || (rc = qk_afile_write(f, text, strlen(text))) ||
        (rc = qk_afile_write(f, "\n", 1)))
        goto done;
    rc = qk_afile_commit(f);
    f = NULL;
    goto done;
fail:
    rc = qk_error(QK_ENOMEM, "%s: out of memory building tokenizer.json", path);
done:
    qk_afile_abort(f);
    free(text);
    free(buf);
    free(gen);
    cJSON_Delete(root);
    return rc;
}

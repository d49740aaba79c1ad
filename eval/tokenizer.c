/* Tokenizer runtime: the public API, special-token partitioning, the
 * SentencePiece-style tokenizer and token pieces. Byte-level BPE is in
 * tokenizer_bpe.c. Both follow llama.cpp's llama-vocab.cpp (tokenize with
 * parse_special as the caller asks) so that ids match its ids exactly.
 *
 * Partitioning (llama.cpp's tokenizer_st_partition): the special tokens —
 * CONTROL, UNKNOWN and USER_DEFINED, longest text first — are taken one at a
 * time; each occurrence in a raw fragment, leftmost first, is cut out as
 * that token. CONTROL and UNKNOWN are skipped unless PARSE_SPECIAL.
 *
 * SPM (llama.cpp's llm_tokenizer_spm), per raw fragment:
 *   1. prepend " " when add_space_prefix and the fragment starts the text or
 *      follows a special token; replace every ' ' by U+2581;
 *   2. split into characters by lead byte (llama.cpp's unicode_len_utf8:
 *      high nibble 0-B -> 1 byte, C-D -> 2, E -> 3, F -> 4, cut at the end;
 *      continuation bytes are not checked);
 *   3. push every adjacent pair whose concatenation is a token (any type)
 *      onto a max-heap keyed by that token's score, ties to the leftmost
 *      pair; pop, skip pairs that are stale (a side merged since: symbols
 *      only grow, so a length check suffices), merge right into left in the
 *      linked list and push the two new neighbour pairs;
 *   4. emit each final symbol's token; a symbol that is no token is always
 *      a single character (merges only make tokens), so llama.cpp's
 *      resegmentation reduces to byte fallback: <0xNN> per byte, else the
 *      one-byte token; where neither exists llama.cpp throws, we emit the
 *      unknown token once for the piece.
 * llama.cpp merges a whole fragment at once. Merging is local, so we cut
 * the escaped text into pieces (of at least spm_chunk bytes) at boundaries
 * between two characters that are never adjacent inside any token text: no
 * merge can cross such a boundary, each side's pairs never compete, and
 * the result equals the whole-fragment result while memory stays bounded.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

#define SPM_SPACE "\xe2\x96\x81" /* U+2581 */
#define SPM_SPACE_LEN 3
#define SPM_CHUNK_DEFAULT 1 /* cut at every such boundary: small heaps stay in cache */

/* ---------------------------------------------------------------- helpers */

int qk_idvec_push(qk_idvec *o, int32_t id)
{
    if (o->n == o->cap) {
        int64_t cap = o->cap ? o->cap * 2 : 256;
        int32_t *a = realloc(o->a, (size_t)cap * sizeof *a);
        if (!a)
            return qk_error(QK_ENOMEM, "out of memory for %" PRId64 " token ids", cap);
        o->a = a;
        o->cap = cap;
    }
    o->a[o->n++] = id;
    return 0;
}

/* llama.cpp's unicode_len_utf8, cut at the end of the text. */
static size_t char_len(const char *s, size_t n, size_t i)
{
    static const uint8_t k[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    size_t l = k[(uint8_t)s[i] >> 4];
    return l < n - i ? l : n - i;
}

/* A character's bytes as one number. Injective: the lead byte fixes the
 * length except for a character cut at the end, whose lead byte then does
 * not match its length. */
static uint32_t char_key(const char *s, size_t n)
{
    uint32_t k = 0;
    for (size_t i = 0; i < n; i++)
        k = k << 8 | (uint8_t)s[i];
    return k;
}

/* Seeded (qk_hash64_table): the pairs come from token texts in files, and a
 * fixed mix would let a vocabulary put them all in one probe chain. */
static uint64_t pair_hash(uint64_t key) { return qk_hash64_table(&key, sizeof key); }

static int u64set_has(const qk_u64set *s, uint64_t key)
{
    if (!s->keys)
        return 0;
    for (uint64_t pos = pair_hash(key) & s->mask; s->used[pos]; pos = (pos + 1) & s->mask)
        if (s->keys[pos] == key)
            return 1;
    return 0;
}

/* The table was sized for every insertion in advance. */
static void u64set_add(qk_u64set *s, uint64_t key)
{
    uint64_t pos = pair_hash(key) & s->mask;
    for (; s->used[pos]; pos = (pos + 1) & s->mask)
        if (s->keys[pos] == key)
            return;
    s->used[pos] = 1;
    s->keys[pos] = key;
}

/* ------------------------------------------------------------- lifecycle */

typedef struct special_ent {
    uint64_t len;
    int32_t id;
} special_ent;

static int special_cmp(const void *a, const void *b)
{
    const special_ent *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int build_special(qk_tokenizer *t)
{
    const qk_vocab *v = t->v;
    int64_t n = 0;
    for (int64_t i = 0; i < v->n_tokens; i++) {
        int ty = v->types[i];
        if ((ty == QK_TOKEN_CONTROL || ty == QK_TOKEN_UNKNOWN || ty == QK_TOKEN_USER_DEFINED) && v->tokens[i].len)
            n++;
    }
    if (!n)
        return 0;
    special_ent *e = malloc((size_t)n * sizeof *e);
    t->special = malloc((size_t)n * sizeof *t->special);
    if (!e || !t->special) {
        free(e);
        return qk_error(QK_ENOMEM, "out of memory for %" PRId64 " special tokens", n);
    }
    int64_t k = 0;
    for (int64_t i = 0; i < v->n_tokens; i++) {
        int ty = v->types[i];
        if ((ty == QK_TOKEN_CONTROL || ty == QK_TOKEN_UNKNOWN || ty == QK_TOKEN_USER_DEFINED) && v->tokens[i].len)
            e[k++] = (special_ent){v->tokens[i].len, (int32_t)i};
    }
    qsort(e, (size_t)n, sizeof *e, special_cmp);
    for (int64_t i = 0; i < n; i++)
        t->special[i] = e[i].id;
    t->n_special = n;
    free(e);
    return 0;
}

static int build_spm(qk_tokenizer *t)
{
    const qk_vocab *v = t->v;
    for (int b = 0; b < 256; b++) {
        static const char hex[] = "0123456789ABCDEF";
        char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        char one = (char)b;
        int32_t id = qk_vocab_find(v, buf, 6);
        t->byte_tok[b] = id >= 0 ? id : qk_vocab_find(v, &one, 1);
    }

    /* adjacent character pairs inside token texts */
    uint64_t n_chars = 0;
    for (int64_t i = 0; i < v->n_tokens; i++)
        n_chars += v->tokens[i].len;
    uint64_t cap = 16;
    while (cap < n_chars * 2)
        cap *= 2;
    qk_u64set *s = &t->pairs;
    s->mask = cap - 1;
    s->keys = malloc(cap * sizeof *s->keys);
    s->used = calloc(cap, 1);
    if (!s->keys || !s->used)
        return qk_error(QK_ENOMEM, "out of memory for the tokenizer's pair table (%" PRIu64 " entries)", cap);
    for (int64_t i = 0; i < v->n_tokens; i++) {
        const char *txt = v->tokens[i].s;
        size_t len = (size_t)v->tokens[i].len, p = 0;
        uint32_t prev = 0;
        while (p < len) {
            size_t l = char_len(txt, len, p);
            uint32_t cur = char_key(txt + p, l);
            if (p)
                u64set_add(s, (uint64_t)prev << 32 | cur);
            prev = cur;
            p += l;
        }
    }
    return 0;
}

void qk_tokenizer_free(qk_tokenizer *t)
{
    if (!t)
        return;
    free(t->special);
    free(t->pairs.keys);
    free(t->pairs.used);
    qk_bpe_free(t);
    free(t);
}

int qk_tokenizer_new(qk_tokenizer **out, const qk_vocab *v)
{
    *out = NULL;
    if (!v || v->n_tokens < 1 || v->n_tokens > QK_VOCAB_MAX_TOKENS || !v->tokens || !v->scores || !v->types ||
        !v->index)
        return qk_error(QK_EINVAL, "the tokenizer needs a complete vocabulary (tokens, scores, types and index)");
    if (v->model != QK_VOCAB_SPM && v->model != QK_VOCAB_BPE)
        return qk_error(QK_EUNSUPPORTED, "vocabulary model %d is not supported by the tokenizer (SPM or BPE)",
                        v->model);
    qk_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return qk_error(QK_ENOMEM, "out of memory for a tokenizer");
    t->v = v;
    t->spm_chunk = SPM_CHUNK_DEFAULT;
    int rc = build_special(t);
    if (!rc)
        rc = v->model == QK_VOCAB_SPM ? build_spm(t) : qk_bpe_init(t);
    if (rc) {
        qk_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ---------------------------------------------------------- partitioning */

typedef struct frag {
    size_t off, len;
    int32_t tok; /* -1: raw text */
} frag;

typedef struct fragvec {
    frag *a;
    size_t n, cap;
} fragvec;

static int frag_push(fragvec *f, size_t off, size_t len, int32_t tok)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        frag *a = realloc(f->a, cap * sizeof *a);
        if (!a)
            return qk_error(QK_ENOMEM, "out of memory splitting the text at special tokens");
        f->a = a;
        f->cap = cap;
    }
    f->a[f->n++] = (frag){off, len, tok};
    return 0;
}

/* Which bytes and byte pairs occur in the text: a token whose text has a
 * byte pair the text lacks cannot occur, and is not searched for. */
typedef struct bytemap {
    uint64_t one[4];
    uint64_t two[1024];
} bytemap;

static int may_occur(const bytemap *m, const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    if (n == 1)
        return (int)(m->one[u[0] >> 6] >> (u[0] & 63) & 1);
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned k = (unsigned)u[i] << 8 | u[i + 1];
        if (!(m->two[k >> 6] >> (k & 63) & 1))
            return 0;
    }
    return 1;
}

static int partition(const qk_tokenizer *t, const char *text, size_t len, int parse_special, fragvec *out)
{
    const qk_vocab *v = t->v;
    fragvec cur = {0}, nxt = {0};
    bytemap *map = NULL;
    int rc = 0;
    if (len && (rc = frag_push(&cur, 0, len, -1)))
        goto done;
    for (int64_t k = 0; k < t->n_special && cur.n; k++) {
        int32_t id = t->special[k];
        int ty = v->types[id];
        if (!parse_special && (ty == QK_TOKEN_CONTROL || ty == QK_TOKEN_UNKNOWN))
            continue;
        const char *s = v->tokens[id].s;
        size_t sl = (size_t)v->tokens[id].len;
        if (sl > len)
            continue;
        if (!map) {
            if (!(map = calloc(1, sizeof *map))) {
                rc = qk_error(QK_ENOMEM, "out of memory");
                goto done;
            }
            const uint8_t *u = (const uint8_t *)text;
            for (size_t i = 0; i < len; i++) {
                map->one[u[i] >> 6] |= 1ull << (u[i] & 63);
                if (i + 1 < len) {
                    unsigned p = (unsigned)u[i] << 8 | u[i + 1];
                    map->two[p >> 6] |= 1ull << (p & 63);
                }
            }
        }
        if (!may_occur(map, s, sl))
            continue;
        nxt.n = 0;
        for (size_t f = 0; f < cur.n; f++) {
            frag fr = cur.a[f];
            if (fr.tok >= 0) {
                if ((rc = frag_push(&nxt, fr.off, fr.len, fr.tok)))
                    goto done;
                continue;
            }
            size_t base = fr.off, end = fr.off + fr.len;
            while (end - base >= sl) {
                const char *m = memmem(text + base, end - base, s, sl);
                if (!m)
                    break;
                size_t at = (size_t)(m - text);
                if ((at > base && (rc = frag_push(&nxt, base, at - base, -1))) ||
                    (rc = frag_push(&nxt, at, sl, id)))
                    goto done;
                base = at + sl;
            }
            if (base < end && (rc = frag_push(&nxt, base, end - base, -1)))
                goto done;
        }
        fragvec tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    *out = cur;
    cur.a = NULL;
done:
    free(cur.a);
    free(nxt.a);
    free(map);
    return rc;
}

/* ------------------------------------------------------------------- SPM */

typedef struct ssym {
    int32_t prev, next;
    uint32_t off, n; /* bytes, relative to the piece */
} ssym;

typedef struct spair {
    float score;
    int32_t left, right;
    uint32_t size;
} spair;

typedef struct spm_work {
    char *esc; /* the escaped fragment */
    size_t esc_cap;
    ssym *sym;
    size_t sym_cap;
    spair *heap;
    size_t heap_n, heap_cap;
} spm_work;

/* Higher score first, then the leftmost pair (llama.cpp's llm_bigram_spm). */
static int spair_before(const spair *a, const spair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int spm_push(spm_work *w, spair p)
{
    if (w->heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? w->heap_cap * 2 : 1024;
        spair *h = realloc(w->heap, cap * sizeof *h);
        if (!h)
            return qk_error(QK_ENOMEM, "out of memory in the SPM merge heap");
        w->heap = h;
        w->heap_cap = cap;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!spair_before(&p, &w->heap[parent]))
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = p;
    return 0;
}

static spair spm_pop(spm_work *w)
{
    spair top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && spair_before(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!spair_before(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n)
        w->heap[i] = last;
    return top;
}

static int spm_try_pair(const qk_tokenizer *t, spm_work *w, const char *s, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return 0;
    uint32_t size = w->sym[l].n + w->sym[r].n;
    int32_t id = qk_vocab_find(t->v, s + w->sym[l].off, size);
    if (id < 0)
        return 0;
    spair p = {t->v->scores[id], l, r, size};
    return spm_push(w, p);
}

/* A final symbol that is no token: its bytes as byte tokens. */
static int spm_fallback(const qk_tokenizer *t, const char *s, size_t n, qk_idvec *out)
{
    int rc;
    for (size_t j = 0; j < n; j++)
        if (t->byte_tok[(uint8_t)s[j]] < 0) {
            if (t->v->unk_id < 0)
                return qk_error(QK_EUNSUPPORTED,
                                "byte 0x%02X has no token (no <0x%02X>, no one-byte token) and the vocabulary has "
                                "no unknown token",
                                (uint8_t)s[j], (uint8_t)s[j]);
            return qk_idvec_push(out, t->v->unk_id);
        }
    for (size_t j = 0; j < n; j++)
        if ((rc = qk_idvec_push(out, t->byte_tok[(uint8_t)s[j]])))
            return rc;
    return 0;
}

/* Merge one piece [s, s+n) of escaped text and emit its tokens. */
static int spm_piece(const qk_tokenizer *t, spm_work *w, const char *s, size_t n, qk_idvec *out)
{
    if (n > INT32_MAX)
        return qk_error(QK_ELIMIT,
                        "%zu bytes of text without a place where a merge cannot cross; the limit is %d", n,
                        INT32_MAX);
    if (n > w->sym_cap) {
        free(w->sym);
        w->sym_cap = n < 1024 ? 1024 : n;
        if (!(w->sym = malloc(w->sym_cap * sizeof *w->sym)))
            return qk_error(QK_ENOMEM, "out of memory for %zu symbols", w->sym_cap);
    }
    int32_t ns = 0;
    for (size_t p = 0; p < n;) {
        size_t l = char_len(s, n, p);
        w->sym[ns] = (ssym){ns - 1, ns + 1, (uint32_t)p, (uint32_t)l};
        ns++;
        p += l;
    }
    if (!ns)
        return 0;
    w->sym[ns - 1].next = -1;

    int rc;
    w->heap_n = 0;
    for (int32_t i = 1; i < ns; i++)
        if ((rc = spm_try_pair(t, w, s, i - 1, i)))
            return rc;
    while (w->heap_n) {
        spair p = spm_pop(w);
        ssym *L = &w->sym[p.left], *R = &w->sym[p.right];
        if (L->n == 0 || R->n == 0 || L->n + R->n != p.size)
            continue; /* stale */
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0)
            w->sym[R->next].prev = p.left;
        if ((rc = spm_try_pair(t, w, s, L->prev, p.left)) || (rc = spm_try_pair(t, w, s, p.left, L->next)))
            return rc;
    }
    for (int32_t i = 0; i != -1; i = w->sym[i].next) {
        const char *txt = s + w->sym[i].off;
        int32_t id = qk_vocab_find(t->v, txt, w->sym[i].n);
        rc = id >= 0 ? qk_idvec_push(out, id) : spm_fallback(t, txt, w->sym[i].n, out);
        if (rc)
            return rc;
    }
    return 0;
}

/* End of the piece that starts at `start`: the first boundary at least
 * `chunk` bytes on whose two sides no token text has adjacent characters. */
static size_t spm_cut(const qk_tokenizer *t, const char *s, size_t n, size_t start, size_t chunk)
{
    size_t q = start;
    uint32_t prev = 0;
    while (q < n) {
        size_t l = char_len(s, n, q);
        uint32_t cur = char_key(s + q, l);
        if (q > start && q - start >= chunk && !u64set_has(&t->pairs, (uint64_t)prev << 32 | cur))
            return q;
        prev = cur;
        q += l;
    }
    return n;
}

static int spm_fragment(const qk_tokenizer *t, spm_work *w, const char *text, size_t len, int prefix,
                        qk_idvec *out)
{
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++)
        spaces += text[i] == ' ';
    if (len > (SIZE_MAX - SPM_SPACE_LEN) / SPM_SPACE_LEN)
        return qk_error(QK_ELIMIT, "a text of %zu bytes is too long", len);
    size_t elen = len + spaces * (SPM_SPACE_LEN - 1) + (prefix ? SPM_SPACE_LEN : 0);
    if (elen > w->esc_cap) {
        free(w->esc);
        w->esc_cap = elen;
        if (!(w->esc = malloc(elen)))
            return qk_error(QK_ENOMEM, "out of memory for %zu bytes of escaped text", elen);
    }
    char *e = w->esc;
    size_t o = 0;
    if (prefix)
        memcpy(e, SPM_SPACE, SPM_SPACE_LEN), o = SPM_SPACE_LEN;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ')
            memcpy(e + o, SPM_SPACE, SPM_SPACE_LEN), o += SPM_SPACE_LEN;
        else
            e[o++] = text[i];
    }
    int rc = 0;
    for (size_t pos = 0; pos < elen && !rc;) {
        size_t cut = spm_cut(t, e, elen, pos, t->spm_chunk);
        rc = spm_piece(t, w, e + pos, cut - pos, out);
        pos = cut;
    }
    return rc;
}

/* ------------------------------------------------------------ public API */

int qk_tokenize_ex(const qk_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **out_ids,
                   int64_t *out_n)
{
    *out_ids = NULL;
    *out_n = 0;
    if (!text && len)
        return qk_error(QK_EINVAL, "qk_tokenize: NULL text of %zu bytes", len);
    const qk_vocab *v = t->v;
    const int add_special = (flags & QK_TOKENIZE_ADD_SPECIAL) != 0;
    fragvec frags = {0};
    qk_idvec out = {0};
    spm_work w = {0};
    int rc;

    if ((rc = partition(t, text, len, (flags & QK_TOKENIZE_PARSE_SPECIAL) != 0, &frags)))
        goto done;
    if (add_special && v->add_bos) {
        if (v->bos_id < 0) {
            rc = qk_error(QK_EINVAL, "the vocabulary asks for a BOS token (add_bos) but has no BOS id");
            goto done;
        }
        if ((rc = qk_idvec_push(&out, v->bos_id)))
            goto done;
    }
    int prev_special = 1; /* SPM: a fragment at the start gets the dummy prefix */
    for (size_t i = 0; i < frags.n; i++) {
        const frag *f = &frags.a[i];
        if (f->tok >= 0) {
            rc = qk_idvec_push(&out, f->tok);
            prev_special = 1;
        } else if (v->model == QK_VOCAB_SPM) {
            rc = spm_fragment(t, &w, text + f->off, f->len, v->add_space_prefix && prev_special, &out);
            prev_special = 0;
        } else {
            rc = qk_bpe_tokenize(t, text + f->off, f->len, &out);
        }
        if (rc)
            goto done;
    }
    if (add_special && v->add_eos) {
        if (v->eos_id < 0) {
            rc = qk_error(QK_EINVAL, "the vocabulary asks for an EOS token (add_eos) but has no EOS id");
            goto done;
        }
        if ((rc = qk_idvec_push(&out, v->eos_id)))
            goto done;
    }
    if (!out.a && !(out.a = malloc(sizeof *out.a))) { /* never NULL on success */
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    *out_ids = out.a;
    *out_n = out.n;
    out.a = NULL;
done:
    free(out.a);
    free(frags.a);
    free(w.esc);
    free(w.sym);
    free(w.heap);
    return rc;
}

int qk_tokenize(const qk_tokenizer *t, const char *text, size_t len, int add_special, int32_t **out_ids,
                int64_t *out_n)
{
    unsigned flags = 0;
    if (add_special)
        flags = QK_TOKENIZE_ADD_SPECIAL | (t->v->model == QK_VOCAB_BPE ? QK_TOKENIZE_PARSE_SPECIAL : 0u);
    return qk_tokenize_ex(t, text, len, flags, out_ids, out_n);
}

/* ----------------------------------------------------------------- pieces */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* The piece of token id into buf (capacity >= the token text's length,
 * which bounds every piece); returns its length. */
static size_t piece(const qk_tokenizer *t, int32_t id, char *buf)
{
    const qk_vocab *v = t->v;
    const char *s = v->tokens[id].s;
    size_t n = (size_t)v->tokens[id].len;
    switch (v->types[id]) {
    case QK_TOKEN_USER_DEFINED:
        memcpy(buf, s, n);
        return n;
    case QK_TOKEN_NORMAL:
        if (v->model == QK_VOCAB_BPE)
            return qk_bpe_decode_text(s, n, buf);
        {
            size_t o = 0;
            for (size_t i = 0; i < n;) {
                if (n - i >= SPM_SPACE_LEN && !memcmp(s + i, SPM_SPACE, SPM_SPACE_LEN)) {
                    buf[o++] = ' ';
                    i += SPM_SPACE_LEN;
                } else {
                    buf[o++] = s[i++];
                }
            }
            return o;
        }
    case QK_TOKEN_BYTE: {
        /* llama.cpp: strtol(text.substr(3, 2), 16) */
        int b = 0;
        for (size_t i = 3; i < 5 && i < n && hexval(s[i]) >= 0; i++)
            b = b * 16 + hexval(s[i]);
        if (n == 0)
            return 0;
        buf[0] = (char)b;
        return 1;
    }
    default: /* CONTROL, UNKNOWN, UNUSED */
        return 0;
    }
}

int qk_token_to_piece(const qk_tokenizer *t, int32_t id, char *buf, size_t cap, size_t *out_len)
{
    *out_len = 0;
    if (id < 0 || id >= t->v->n_tokens)
        return qk_error(QK_EINVAL, "token id %d is outside the vocabulary of %" PRId64 " tokens", (int)id,
                        t->v->n_tokens);
    size_t tl = (size_t)t->v->tokens[id].len;
    char small[256];
    char *tmp = tl <= sizeof small ? small : malloc(tl);
    if (!tmp)
        return qk_error(QK_ENOMEM, "out of memory for a %zu-byte token", tl);
    size_t n = piece(t, id, tmp);
    int rc = 0;
    if (n > cap)
        rc = qk_error(QK_ELIMIT, "the piece of token %d needs %zu bytes, the buffer has %zu", (int)id, n, cap);
    else if (n)
        memcpy(buf, tmp, n);
    *out_len = n;
    if (tmp != small)
        free(tmp);
    return rc;
}

int qk_detokenize(const qk_tokenizer *t, const int32_t *ids, int64_t n, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    const qk_vocab *v = t->v;
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->n_tokens)
            return qk_error(QK_EINVAL, "token id %d at position %" PRId64 " is outside the vocabulary of %" PRId64
                            " tokens", (int)ids[i], i, v->n_tokens);
        total += (size_t)v->tokens[ids[i]].len; /* bounds the piece */
    }
    char *s = malloc(total + 1);
    if (!s)
        return qk_error(QK_ENOMEM, "out of memory for %zu bytes of text", total + 1);
    size_t o = 0;
    int strip = v->model == QK_VOCAB_SPM && v->add_space_prefix;
    for (int64_t i = 0; i < n; i++) {
        size_t k = piece(t, ids[i], s + o);
        if (strip && k) {
            if (s[o] == ' ')
                memmove(s + o, s + o + 1, --k);
            strip = 0;
        }
        o += k;
    }
    s[o] = 0;
    *out = s;
    *out_len = o;
    return 0;
}

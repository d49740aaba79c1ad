/* GGUF streaming writer (see include/quantkit/gguf.h for the call order).
 *
 * Metadata and tensor infos are collected in memory; begin() writes the
 * header, KVs, tensor infos and padding up to the data section; tensor data
 * is then streamed through, hashed on the way (XXH3-64 per tensor), and
 * finish() patches the hashes into the array reserved at begin().
 *
 * Alignment: the file's alignment is fixed by qk_gguf_writer_new(). When it
 * is not the default 32, new() sets general.alignment (u32), and begin()
 * puts it back if the caller removed it; a general.alignment the caller set
 * must be a u32 equal to the writer's alignment, so the header never
 * disagrees with the padding.
 *
 * The checksum key QK_GGUF_CHECKSUM_KEY belongs to the writer: with
 * checksums on (and at least one tensor) begin() (re)writes it, keeping the
 * position of a copied one; otherwise a copied one is dropped, since it
 * would describe some other file's data.
 */
#include "quantkit/gguf.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct wtensor {
    char *name;
    int type;
    int n_dims;
    int64_t ne[QK_GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset; /* relative to the data section, set by begin() */
    uint64_t hash;
} wtensor;

enum { W_COLLECT, W_DATA, W_DONE, W_FAILED };

struct qk_gguf_writer {
    uint32_t alignment;
    int checksums;
    qk_gguf_kv *kvs; /* [n_kv], file order */
    int64_t n_kv, cap_kv;
    int64_t *kv_slots; /* key hash -> index + 1 (0 empty), open addressing, at most half full */
    uint64_t kv_mask;  /* slots - 1 (0 while kv_slots is NULL) */
    wtensor *ts;     /* [n_ts], file order */
    int64_t n_ts, cap_ts;
    int64_t *ts_slots; /* name hash -> index + 1 (0 empty), as kv_slots */
    uint64_t ts_mask;

    int state;
    qk_afile *f;
    uint64_t csum_off;  /* file offset of the checksum array's first u64; 0 = none */
    uint64_t *val_off;  /* [n_kv] file offset of each KV's value, set by begin() */
    int64_t cur;        /* tensor being streamed */
    uint64_t cur_done;  /* its bytes written so far */
    qk_hasher *h;
};

static const char *wpath(const qk_gguf_writer *w)
{
    return w->f ? qk_afile_path(w->f) : "gguf writer";
}

int qk_gguf_writer_new(qk_gguf_writer **out, uint32_t alignment)
{
    assert(out);
    *out = NULL;
    if (alignment == 0)
        alignment = QK_GGUF_DEFAULT_ALIGNMENT;
    if (alignment & (alignment - 1))
        return qk_error(QK_EINVAL, "gguf writer: alignment %" PRIu32 " is not a power of two", alignment);
    qk_gguf_writer *w = calloc(1, sizeof *w);
    if (!w)
        return qk_error(QK_ENOMEM, "gguf writer: out of memory");
    w->alignment = alignment;
    w->checksums = 1;
    w->state = W_COLLECT;
    if (alignment != QK_GGUF_DEFAULT_ALIGNMENT) {
        int rc = qk_gguf_writer_set_u32(w, "general.alignment", alignment);
        if (rc) {
            qk_gguf_writer_free(w);
            return rc;
        }
    }
    *out = w;
    return 0;
}

void qk_gguf_writer_free(qk_gguf_writer *w)
{
    if (!w)
        return;
    for (int64_t i = 0; i < w->n_kv; i++)
        qk_gguf_kv_clear(&w->kvs[i]);
    free(w->kvs);
    free(w->kv_slots);
    for (int64_t i = 0; i < w->n_ts; i++)
        free(w->ts[i].name);
    free(w->ts);
    free(w->ts_slots);
    qk_hasher_free(w->h);
    free(w->val_off);
    free(w);
}

void qk_gguf_writer_set_checksums(qk_gguf_writer *w, int on)
{
    assert(w && w->state == W_COLLECT);
    w->checksums = on != 0;
}

/* ------------------------------------------------------------- metadata */

/* Keys are found through a hash table (seeded: qk_hash64_table): copying
 * the keys of a hostile file (up to QK_GGUF_MAX_KV) must not take quadratic
 * time. */
static int64_t kv_index(const qk_gguf_writer *w, const char *key, uint64_t len)
{
    if (!w->kv_slots) { /* no table (nothing added yet, or out of memory rebuilding it) */
        for (int64_t i = 0; i < w->n_kv; i++)
            if (w->kvs[i].key.len == len && !memcmp(w->kvs[i].key.s, key, (size_t)len))
                return i;
        return -1;
    }
    for (uint64_t pos = qk_hash64_table(key, (size_t)len) & w->kv_mask;; pos = (pos + 1) & w->kv_mask) {
        int64_t i = w->kv_slots[pos] - 1;
        if (i < 0)
            return -1;
        if (w->kvs[i].key.len == len && !memcmp(w->kvs[i].key.s, key, (size_t)len))
            return i;
    }
}

/* (Re)build the table for kvs[0..n_kv) with room for at least `want` keys. */
static int kv_rehash(qk_gguf_writer *w, int64_t want)
{
    uint64_t cap = 64;
    while (cap < 2 * (uint64_t)want)
        cap *= 2;
    int64_t *slots = calloc((size_t)cap, sizeof *slots);
    if (!slots)
        return qk_error(QK_ENOMEM, "gguf writer: out of memory");
    for (int64_t i = 0; i < w->n_kv; i++) {
        uint64_t pos = qk_hash64_table(w->kvs[i].key.s, (size_t)w->kvs[i].key.len) & (cap - 1);
        while (slots[pos])
            pos = (pos + 1) & (cap - 1);
        slots[pos] = i + 1;
    }
    free(w->kv_slots);
    w->kv_slots = slots;
    w->kv_mask = cap - 1;
    return 0;
}

static int check_collecting(const qk_gguf_writer *w)
{
    if (w->state != W_COLLECT)
        return qk_error(QK_EINVAL, "%s: metadata and tensors can only be added before qk_gguf_writer_begin()",
                        wpath(w));
    return 0;
}

/* Validate what a reader would refuse, so the writer never makes such a file. */
static int check_kv(const qk_gguf_kv *kv)
{
    if (!kv->key.s)
        return qk_error(QK_EINVAL, "gguf writer: KV without a key");
    if (kv->key.len > QK_GGUF_MAX_STRING)
        return qk_error(QK_ELIMIT, "gguf writer: key of %" PRIu64 " bytes is over the limit", kv->key.len);
    if (kv->type < 0 || kv->type >= QK_GGUF_NTYPES)
        return qk_error(QK_EINVAL, "gguf writer: key '%s' has invalid value type %d", kv->key.s, kv->type);
    if (kv->type == QK_GGUF_STRING && kv->v.str.len > QK_GGUF_MAX_STRING)
        return qk_error(QK_ELIMIT, "gguf writer: key '%s': string of %" PRIu64 " bytes is over the limit", kv->key.s,
                        kv->v.str.len);
    if (kv->type != QK_GGUF_ARRAY)
        return 0;
    if (kv->arr_type < 0 || kv->arr_type >= QK_GGUF_NTYPES || kv->arr_type == QK_GGUF_ARRAY)
        return qk_error(QK_EINVAL, "gguf writer: key '%s' has invalid array element type %d", kv->key.s, kv->arr_type);
    if (kv->arr_n > QK_GGUF_MAX_ARRAY)
        return qk_error(QK_ELIMIT, "gguf writer: key '%s': array of %" PRIu64 " elements is over the limit",
                        kv->key.s, kv->arr_n);
    if (kv->arr_type == QK_GGUF_STRING && kv->arr_n)
        for (uint64_t i = 0; i < kv->arr_n; i++)
            if (kv->strs && kv->strs[i].len > QK_GGUF_MAX_STRING)
                return qk_error(QK_ELIMIT, "gguf writer: key '%s': element %" PRIu64 " is over the string limit",
                                kv->key.s, i);
    return 0;
}

/* Take ownership of *kv: replace the KV with the same key in place, or append. */
static int kv_put(qk_gguf_writer *w, qk_gguf_kv *kv)
{
    int64_t i = kv_index(w, kv->key.s, kv->key.len);
    if (i >= 0) {
        qk_gguf_kv_clear(&w->kvs[i]);
        w->kvs[i] = *kv;
        return 0;
    }
    if (w->n_kv >= (int64_t)QK_GGUF_MAX_KV) {
        qk_gguf_kv_clear(kv);
        return qk_error(QK_ELIMIT, "gguf writer: more than %u KVs", (unsigned)QK_GGUF_MAX_KV);
    }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        qk_gguf_kv *k = realloc(w->kvs, (size_t)cap * sizeof *k);
        if (!k) {
            qk_gguf_kv_clear(kv);
            return qk_error(QK_ENOMEM, "gguf writer: out of memory");
        }
        w->kvs = k;
        w->cap_kv = cap;
    }
    if (2 * (uint64_t)(w->n_kv + 1) > w->kv_mask + 1 || !w->kv_slots) {
        int rc = kv_rehash(w, w->cap_kv);
        if (rc) {
            qk_gguf_kv_clear(kv);
            return rc;
        }
    }
    uint64_t pos = qk_hash64_table(kv->key.s, (size_t)kv->key.len) & w->kv_mask;
    while (w->kv_slots[pos])
        pos = (pos + 1) & w->kv_mask;
    w->kv_slots[pos] = w->n_kv + 1;
    w->kvs[w->n_kv++] = *kv;
    return 0;
}

int qk_gguf_writer_set_kv(qk_gguf_writer *w, const qk_gguf_kv *kv)
{
    assert(w && kv);
    qk_gguf_kv copy;
    int rc;
    if ((rc = check_collecting(w)) || (rc = check_kv(kv)) || (rc = qk_gguf_kv_copy(&copy, kv)))
        return rc;
    return kv_put(w, &copy);
}

int qk_gguf_writer_remove_kv(qk_gguf_writer *w, const char *key)
{
    assert(w && key);
    int rc = check_collecting(w);
    if (rc)
        return rc;
    int64_t i = kv_index(w, key, strlen(key));
    if (i < 0)
        return qk_error(QK_ENOTFOUND, "gguf writer: key '%s' not set", key);
    qk_gguf_kv_clear(&w->kvs[i]);
    memmove(&w->kvs[i], &w->kvs[i + 1], (size_t)(w->n_kv - i - 1) * sizeof *w->kvs);
    w->n_kv--;
    /* later keys moved down one index: rebuild (a failure leaves no table,
     * and lookups fall back to a scan) */
    free(w->kv_slots);
    w->kv_slots = NULL;
    w->kv_mask = 0;
    (void)kv_rehash(w, w->cap_kv);
    return 0;
}

/* A scalar KV borrowing `key`; set_kv deep-copies it. */
static qk_gguf_kv scalar_kv(const char *key, int type)
{
    assert(key);
    qk_gguf_kv kv;
    memset(&kv, 0, sizeof kv);
    kv.key.s = (char *)key;
    kv.key.len = strlen(key);
    kv.type = type;
    return kv;
}

int qk_gguf_writer_set_u32(qk_gguf_writer *w, const char *key, uint32_t v)
{
    qk_gguf_kv kv = scalar_kv(key, QK_GGUF_U32);
    kv.v.u32 = v;
    return qk_gguf_writer_set_kv(w, &kv);
}

int qk_gguf_writer_set_i32(qk_gguf_writer *w, const char *key, int32_t v)
{
    qk_gguf_kv kv = scalar_kv(key, QK_GGUF_I32);
    kv.v.i32 = v;
    return qk_gguf_writer_set_kv(w, &kv);
}

int qk_gguf_writer_set_u64(qk_gguf_writer *w, const char *key, uint64_t v)
{
    qk_gguf_kv kv = scalar_kv(key, QK_GGUF_U64);
    kv.v.u64 = v;
    return qk_gguf_writer_set_kv(w, &kv);
}

int qk_gguf_writer_set_f32(qk_gguf_writer *w, const char *key, float v)
{
    qk_gguf_kv kv = scalar_kv(key, QK_GGUF_F32);
    kv.v.f32 = v;
    return qk_gguf_writer_set_kv(w, &kv);
}

int qk_gguf_writer_set_bool(qk_gguf_writer *w, const char *key, int v)
{
    qk_gguf_kv kv = scalar_kv(key, QK_GGUF_BOOL);
    kv.v.b = v != 0;
    return qk_gguf_writer_set_kv(w, &kv);
}

int qk_gguf_writer_set_str(qk_gguf_writer *w, const char *key, const char *v)
{
    assert(v);
    qk_gguf_kv kv = scalar_kv(key, QK_GGUF_STRING);
    kv.v.str.s = (char *)v;
    kv.v.str.len = strlen(v);
    return qk_gguf_writer_set_kv(w, &kv);
}

int qk_gguf_writer_set_arr(qk_gguf_writer *w, const char *key, int arr_type, const void *data, uint64_t n)
{
    assert(n == 0 || data);
    if (arr_type == QK_GGUF_STRING)
        return qk_error(QK_EINVAL, "gguf writer: key '%s': use qk_gguf_writer_set_arr_str for string arrays", key);
    qk_gguf_kv kv = scalar_kv(key, QK_GGUF_ARRAY);
    kv.arr_type = arr_type;
    kv.arr_n = n;
    kv.arr = (void *)data;
    return qk_gguf_writer_set_kv(w, &kv);
}

int qk_gguf_writer_set_arr_str(qk_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens,
                               uint64_t n)
{
    assert(w && key && (n == 0 || strs));
    int rc = check_collecting(w);
    if (rc)
        return rc;
    if (n > QK_GGUF_MAX_ARRAY)
        return qk_error(QK_ELIMIT, "gguf writer: key '%s': array of %" PRIu64 " strings is over the limit", key, n);
    /* A borrowed view; set_kv validates it and copies it into one block. */
    qk_str *view = n ? malloc((size_t)n * sizeof *view) : NULL;
    if (n && !view)
        return qk_error(QK_ENOMEM, "gguf writer: out of memory for %" PRIu64 " strings", n);
    for (uint64_t i = 0; i < n; i++) {
        view[i].s = (char *)strs[i];
        view[i].len = lens ? lens[i] : strlen(strs[i]);
    }
    qk_gguf_kv kv = scalar_kv(key, QK_GGUF_ARRAY);
    kv.arr_type = QK_GGUF_STRING;
    kv.arr_n = n;
    kv.strs = view;
    rc = qk_gguf_writer_set_kv(w, &kv);
    free(view);
    return rc;
}

/* --------------------------------------------------------------- tensors */

/* Tensor names through a hash table too: a model may have 9 * 4096 + 3. */
static int64_t ts_index(const qk_gguf_writer *w, const char *name, size_t len)
{
    if (!w->ts_slots)
        return -1;
    for (uint64_t pos = qk_hash64_table(name, len) & w->ts_mask;; pos = (pos + 1) & w->ts_mask) {
        int64_t i = w->ts_slots[pos] - 1;
        if (i < 0 || !strcmp(w->ts[i].name, name))
            return i;
    }
}

/* Room for one more name: (re)build the table for ts[0..n_ts) when it is
 * absent or would be more than half full. */
static int ts_reserve(qk_gguf_writer *w)
{
    if (w->ts_slots && 2 * (uint64_t)(w->n_ts + 1) <= w->ts_mask + 1)
        return 0;
    uint64_t cap = 128;
    while (cap < 2 * (uint64_t)(w->n_ts + 1))
        cap *= 2;
    int64_t *slots = calloc((size_t)cap, sizeof *slots);
    if (!slots)
        return qk_error(QK_ENOMEM, "gguf writer: out of memory");
    for (int64_t i = 0; i < w->n_ts; i++) {
        uint64_t pos = qk_hash64_table(w->ts[i].name, strlen(w->ts[i].name)) & (cap - 1);
        while (slots[pos])
            pos = (pos + 1) & (cap - 1);
        slots[pos] = i + 1;
    }
    free(w->ts_slots);
    w->ts_slots = slots;
    w->ts_mask = cap - 1;
    return 0;
}

int qk_gguf_writer_add_tensor(qk_gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne)
{
    assert(w && name && ne);
    int rc = check_collecting(w);
    if (rc)
        return rc;
    size_t len = strlen(name);
    if (len >= QK_GGUF_MAX_NAME)
        return qk_error(QK_ELIMIT, "gguf writer: tensor name '%s' is %zu bytes long, over the limit of %d", name, len,
                        QK_GGUF_MAX_NAME - 1);
    if (n_dims < 1 || n_dims > QK_GGUF_MAX_DIMS)
        return qk_error(QK_EINVAL, "gguf writer: tensor '%s': n_dims %d is outside 1..%d", name, n_dims,
                        QK_GGUF_MAX_DIMS);
    if (w->n_ts >= (int64_t)QK_GGUF_MAX_TENSORS)
        return qk_error(QK_ELIMIT, "gguf writer: more than %u tensors", (unsigned)QK_GGUF_MAX_TENSORS);
    if (ts_index(w, name, len) >= 0)
        return qk_error(QK_EINVAL, "gguf writer: duplicate tensor name '%s'", name);
    int64_t elems = 1;
    for (int d = 0; d < n_dims; d++)
        if (ne[d] < 0 || qk_mul_i64(elems, ne[d], &elems))
            return qk_error(QK_EINVAL, "gguf writer: tensor '%s': invalid shape (ne[%d] = %" PRId64 ")", name, d, ne[d]);
    if (!qk_type_get(type))
        return qk_error(QK_EINVAL, "gguf writer: tensor '%s': unknown ggml type %d", name, type);
    uint64_t nbytes;
    if ((rc = qk_type_tensor_bytes(type, ne, n_dims, &nbytes)))
        return qk_error_prefix(rc, name);
    if (w->n_ts == w->cap_ts) {
        int64_t cap = w->cap_ts ? w->cap_ts * 2 : 64;
        wtensor *t = realloc(w->ts, (size_t)cap * sizeof *t);
        if (!t)
            return qk_error(QK_ENOMEM, "gguf writer: out of memory");
        w->ts = t;
        w->cap_ts = cap;
    }
    if ((rc = ts_reserve(w)))
        return rc;
    wtensor *t = &w->ts[w->n_ts];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return qk_error(QK_ENOMEM, "gguf writer: out of memory");
    uint64_t pos = qk_hash64_table(name, len) & w->ts_mask;
    while (w->ts_slots[pos])
        pos = (pos + 1) & w->ts_mask;
    w->ts_slots[pos] = w->n_ts + 1;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < QK_GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = nbytes;
    w->n_ts++;
    return 0;
}

/* Bytes of one KV as put_kv() writes it. */
static uint64_t kv_bytes(const qk_gguf_kv *kv)
{
    uint64_t n = 8 + kv->key.len + 4;
    if (kv->type == QK_GGUF_STRING)
        return n + 8 + kv->v.str.len;
    if (kv->type != QK_GGUF_ARRAY)
        return n + qk_gguf_type_size(kv->type);
    n += 4 + 8;
    if (kv->arr_type != QK_GGUF_STRING)
        return n + kv->arr_n * qk_gguf_type_size(kv->arr_type);
    for (uint64_t i = 0; i < kv->arr_n; i++)
        n += 8 + kv->strs[i].len;
    return n;
}

int qk_gguf_writer_header_bytes(const qk_gguf_writer *w, uint64_t *out)
{
    assert(w && out);
    int rc = check_collecting(w);
    if (rc)
        return rc;
    uint64_t n = 24;
    for (int64_t i = 0; i < w->n_kv; i++)
        n += kv_bytes(&w->kvs[i]);
    /* what begin() settles: general.alignment added when not the default ... */
    if (w->alignment != QK_GGUF_DEFAULT_ALIGNMENT && kv_index(w, "general.alignment", 17) < 0)
        n += 8 + 17 + 4 + 4;
    /* ... and the checksum array: (re)written with one u64 per tensor, or dropped */
    const uint64_t klen = strlen(QK_GGUF_CHECKSUM_KEY);
    int64_t ci = kv_index(w, QK_GGUF_CHECKSUM_KEY, klen);
    if (ci >= 0)
        n -= kv_bytes(&w->kvs[ci]);
    if (w->checksums && w->n_ts)
        n += 8 + klen + 4 + 4 + 8 + 8 * (uint64_t)w->n_ts;
    for (int64_t i = 0; i < w->n_ts; i++)
        n += 8 + strlen(w->ts[i].name) + 4 + 8 * (uint64_t)w->ts[i].n_dims + 4 + 8;
    *out = qk_pad_u64(n, w->alignment);
    return 0;
}

int qk_gguf_writer_set_tensor_type(qk_gguf_writer *w, int64_t i, int type)
{
    assert(w);
    int rc = check_collecting(w);
    if (rc)
        return rc;
    if (i < 0 || i >= w->n_ts)
        return qk_error(QK_EINVAL, "gguf writer: no tensor %" PRId64 " (%" PRId64 " added)", i, w->n_ts);
    wtensor *t = &w->ts[i];
    uint64_t nbytes;
    if (!qk_type_get(type))
        return qk_error(QK_EINVAL, "gguf writer: tensor '%s': unknown ggml type %d", t->name, type);
    if ((rc = qk_type_tensor_bytes(type, t->ne, t->n_dims, &nbytes)))
        return qk_error_prefix(rc, t->name);
    t->type = type;
    t->nbytes = nbytes;
    return 0;
}

/* ----------------------------------------------------------- serializing */

static int put(qk_gguf_writer *w, const void *p, size_t n)
{
    return n ? qk_afile_write(w->f, p, n) : 0;
}

static int put_u32(qk_gguf_writer *w, uint32_t v)
{
    uint8_t b[4];
    qk_wr_u32(b, v);
    return put(w, b, 4);
}

static int put_u64(qk_gguf_writer *w, uint64_t v)
{
    uint8_t b[8];
    qk_wr_u64(b, v);
    return put(w, b, 8);
}

static int put_str(qk_gguf_writer *w, const qk_str *s)
{
    int rc = put_u64(w, s->len);
    return rc ? rc : put(w, s->s, (size_t)s->len);
}

/* One native element of `size` bytes as little-endian. */
static void store_le(uint8_t *dst, const uint8_t *src, size_t size)
{
    switch (size) {
    case 1: dst[0] = src[0]; break;
    case 2: { uint16_t v; memcpy(&v, src, 2); qk_wr_u16(dst, v); break; }
    case 4: { uint32_t v; memcpy(&v, src, 4); qk_wr_u32(dst, v); break; }
    case 8: { uint64_t v; memcpy(&v, src, 8); qk_wr_u64(dst, v); break; }
    default: assert(0);
    }
}

static int put_kv(qk_gguf_writer *w, const qk_gguf_kv *kv)
{
    int rc;
    if ((rc = put_str(w, &kv->key)) || (rc = put_u32(w, (uint32_t)kv->type)))
        return rc;
    if (kv->type == QK_GGUF_STRING)
        return put_str(w, &kv->v.str);
    if (kv->type != QK_GGUF_ARRAY) {
        uint8_t b[8];
        size_t sz = qk_gguf_type_size(kv->type);
        store_le(b, (const uint8_t *)&kv->v, sz);
        return put(w, b, sz);
    }
    if ((rc = put_u32(w, (uint32_t)kv->arr_type)) || (rc = put_u64(w, kv->arr_n)))
        return rc;
    if (kv->arr_type == QK_GGUF_STRING) {
        for (uint64_t i = 0; i < kv->arr_n; i++)
            if ((rc = put_str(w, &kv->strs[i])))
                return rc;
        return 0;
    }
    /* Convert to little-endian through a small buffer. */
    uint8_t buf[4096];
    size_t sz = qk_gguf_type_size(kv->arr_type), k = 0;
    const uint8_t *src = kv->arr;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        store_le(buf + k, src + i * sz, sz);
        k += sz;
        if (k == sizeof buf) {
            if ((rc = put(w, buf, k)))
                return rc;
            k = 0;
        }
    }
    return put(w, buf, k);
}

static int put_tensor_info(qk_gguf_writer *w, const wtensor *t)
{
    qk_str name = {t->name, strlen(t->name)};
    int rc;
    if ((rc = put_str(w, &name)) || (rc = put_u32(w, (uint32_t)t->n_dims)))
        return rc;
    for (int d = 0; d < t->n_dims; d++)
        if ((rc = put_u64(w, (uint64_t)t->ne[d])))
            return rc;
    if ((rc = put_u32(w, (uint32_t)t->type)))
        return rc;
    return put_u64(w, t->offset);
}

/* The alignment key must agree with the padding the writer uses. */
static int settle_alignment_key(qk_gguf_writer *w)
{
    int64_t i = kv_index(w, "general.alignment", strlen("general.alignment"));
    if (i < 0)
        return w->alignment == QK_GGUF_DEFAULT_ALIGNMENT ? 0
                                                         : qk_gguf_writer_set_u32(w, "general.alignment", w->alignment);
    const qk_gguf_kv *kv = &w->kvs[i];
    if (kv->type != QK_GGUF_U32 || kv->v.u32 != w->alignment)
        return qk_error(QK_EINVAL,
                        "gguf writer: general.alignment (type %s) does not match the writer's alignment %" PRIu32
                        " (create the writer with the alignment you want, or remove the key)",
                        qk_gguf_type_name(kv->type), w->alignment);
    return 0;
}

/* Reserve the checksum array (zeros, patched by finish), or drop a stale one. */
static int settle_checksum_key(qk_gguf_writer *w)
{
    if (!w->checksums || w->n_ts == 0) {
        if (kv_index(w, QK_GGUF_CHECKSUM_KEY, strlen(QK_GGUF_CHECKSUM_KEY)) >= 0)
            return qk_gguf_writer_remove_kv(w, QK_GGUF_CHECKSUM_KEY);
        return 0;
    }
    uint64_t *zeros = calloc((size_t)w->n_ts, sizeof *zeros);
    if (!zeros)
        return qk_error(QK_ENOMEM, "gguf writer: out of memory");
    int rc = qk_gguf_writer_set_arr(w, QK_GGUF_CHECKSUM_KEY, QK_GGUF_U64, zeros, (uint64_t)w->n_ts);
    free(zeros);
    return rc;
}

static int fail(qk_gguf_writer *w, int rc)
{
    w->state = W_FAILED;
    return rc;
}

int qk_gguf_writer_begin(qk_gguf_writer *w, qk_afile *f)
{
    assert(w && f);
    int rc;
    if ((rc = check_collecting(w)))
        return rc;
    if (qk_afile_tell(f) != 0)
        return qk_error(QK_EINVAL, "%s: a GGUF file must start at offset 0 (%" PRIu64 " bytes already written)",
                        qk_afile_path(f), qk_afile_tell(f));
    if ((rc = settle_alignment_key(w)) || (rc = settle_checksum_key(w)))
        return rc;

    const uint64_t align = w->alignment;
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_ts; i++) {
        wtensor *t = &w->ts[i];
        t->offset = off;
        if (t->nbytes > UINT64_MAX - (align - 1) || qk_add_u64(off, qk_pad_u64(t->nbytes, align), &off))
            return qk_error(QK_ELIMIT, "gguf writer: data section size overflows 64 bits");
    }

    w->f = f;
    uint8_t hdr[24];
    memcpy(hdr, "GGUF", 4);
    qk_wr_u32(hdr + 4, 3);
    qk_wr_u64(hdr + 8, (uint64_t)w->n_ts);
    qk_wr_u64(hdr + 16, (uint64_t)w->n_kv);
    if ((rc = put(w, hdr, sizeof hdr)))
        return fail(w, rc);
    free(w->val_off);
    w->val_off = calloc((size_t)w->n_kv + 1, sizeof *w->val_off);
    if (!w->val_off)
        return fail(w, qk_error(QK_ENOMEM, "gguf writer: out of memory"));
    for (int64_t i = 0; i < w->n_kv; i++) {
        const qk_gguf_kv *kv = &w->kvs[i];
        w->val_off[i] = qk_afile_tell(f) + 8 + kv->key.len + 4;
        if (w->checksums && w->n_ts && kv->key.len == strlen(QK_GGUF_CHECKSUM_KEY) &&
            !memcmp(kv->key.s, QK_GGUF_CHECKSUM_KEY, (size_t)kv->key.len)) {
            /* key (8 + len) + value type (4) + element type (4) + count (8) */
            w->csum_off = qk_afile_tell(f) + 8 + kv->key.len + 4 + 4 + 8;
        }
        if ((rc = put_kv(w, kv)))
            return fail(w, rc);
    }
    for (int64_t i = 0; i < w->n_ts; i++)
        if ((rc = put_tensor_info(w, &w->ts[i])))
            return fail(w, rc);
    uint64_t pos = qk_afile_tell(f);
    if ((rc = qk_afile_write_zeros(f, (size_t)(qk_pad_u64(pos, align) - pos))))
        return fail(w, rc);
    if (w->checksums && w->n_ts && (rc = qk_hasher_new(&w->h)))
        return fail(w, rc);
    w->state = W_DATA;
    w->cur = 0;
    w->cur_done = 0;
    return 0;
}

static int check_streaming(const qk_gguf_writer *w)
{
    if (w->state == W_FAILED)
        return qk_error(QK_EINVAL, "%s: the GGUF writer stopped after an earlier error", wpath(w));
    if (w->state != W_DATA)
        return qk_error(QK_EINVAL, "%s: tensor data can only be written between begin() and finish()", wpath(w));
    return 0;
}

int qk_gguf_writer_write(qk_gguf_writer *w, const void *data, size_t n)
{
    assert(w && (n == 0 || data));
    int rc = check_streaming(w);
    if (rc)
        return rc;
    if (w->cur >= w->n_ts)
        return qk_error(QK_EINVAL, "%s: all %" PRId64 " tensors were already written", wpath(w), w->n_ts);
    const wtensor *t = &w->ts[w->cur];
    if (n > t->nbytes - w->cur_done)
        return qk_error(QK_EINVAL, "%s: tensor '%s' is %" PRIu64 " bytes; writing %zu more after %" PRIu64 " overruns it",
                        wpath(w), t->name, t->nbytes, n, w->cur_done);
    if ((rc = put(w, data, n)))
        return fail(w, rc);
    if (w->h)
        qk_hasher_update(w->h, data, n);
    w->cur_done += n;
    return 0;
}

int qk_gguf_writer_end_tensor(qk_gguf_writer *w)
{
    assert(w);
    int rc = check_streaming(w);
    if (rc)
        return rc;
    if (w->cur >= w->n_ts)
        return qk_error(QK_EINVAL, "%s: all %" PRId64 " tensors were already written", wpath(w), w->n_ts);
    wtensor *t = &w->ts[w->cur];
    if (w->cur_done != t->nbytes)
        return qk_error(QK_EINVAL, "%s: tensor '%s' got %" PRIu64 " of its %" PRIu64 " bytes", wpath(w), t->name,
                        w->cur_done, t->nbytes);
    if ((rc = qk_afile_write_zeros(w->f, (size_t)(qk_pad_u64(t->nbytes, w->alignment) - t->nbytes))))
        return fail(w, rc);
    if (w->h) {
        t->hash = qk_hasher_digest(w->h);
        qk_hasher_reset(w->h);
    }
    w->cur++;
    w->cur_done = 0;
    return 0;
}

int qk_gguf_writer_finish(qk_gguf_writer *w)
{
    assert(w);
    int rc = check_streaming(w);
    if (rc)
        return rc;
    if (w->cur != w->n_ts)
        return qk_error(QK_EINVAL, "%s: only %" PRId64 " of %" PRId64 " tensors were written (next: '%s')", wpath(w),
                        w->cur, w->n_ts, w->ts[w->cur].name);
    if (w->csum_off) {
        uint8_t *buf = malloc((size_t)w->n_ts * 8);
        if (!buf)
            return fail(w, qk_error(QK_ENOMEM, "%s: out of memory", wpath(w)));
        for (int64_t i = 0; i < w->n_ts; i++)
            qk_wr_u64(buf + 8 * i, w->ts[i].hash);
        rc = qk_afile_pwrite(w->f, buf, (size_t)w->n_ts * 8, w->csum_off);
        free(buf);
        if (rc)
            return fail(w, rc);
    }
    w->state = W_DONE;
    return 0;
}

int qk_gguf_writer_patch_u64(qk_gguf_writer *w, const char *key, uint64_t v)
{
    assert(w && key);
    if (w->state != W_DATA && w->state != W_DONE)
        return qk_error(QK_EINVAL, "gguf writer: patch '%s' only between begin() and the commit", key);
    int64_t i = kv_index(w, key, strlen(key));
    if (i < 0 || w->kvs[i].type != QK_GGUF_U64)
        return qk_error(QK_EINVAL, "gguf writer: '%s' is not a u64 key set before begin()", key);
    w->kvs[i].v.u64 = v;
    uint8_t b[8];
    qk_wr_u64(b, v);
    int rc = qk_afile_pwrite(w->f, b, 8, w->val_off[i]);
    return rc ? fail(w, rc) : 0;
}

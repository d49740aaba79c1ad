/* GGUF reader: maps a file, validates every byte before trusting it, and
 * copies the metadata into owned structures (tensor data stays mapped).
 *
 * Validation order follows the file: header (magic, version, counts checked
 * against the limits and against the bytes that follow), KVs (lengths,
 * types, array counts checked before allocating), tensor infos (name, shape,
 * type, size), then whole-file rules: unique keys and names, alignment,
 * offsets equal to llama.cpp's running sum of padded sizes, data in bounds.
 * Also here: the KV helpers shared with the writer (type names and sizes,
 * deep copy) and the checksum verifier.
 */
#include "quantkit/gguf.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qk_gguf {
    qk_mmap *map;
    char *path;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;               /* absolute; may lie past EOF when n_tensors == 0 */
    int64_t n_kv;
    qk_gguf_kv *kvs;                    /* [n_kv], file order */
    const qk_gguf_kv **kv_sorted;       /* [n_kv], by key bytes, for lookup */
    int64_t n_tensors;
    qk_gguf_tensor *tensors;            /* [n_tensors], file order */
    const qk_gguf_tensor **t_sorted;    /* [n_tensors], by name, for lookup */
};

/* Smallest encodings, used to bound counts by the bytes that follow:
 * a KV is at least key length (8) + value type (4) + a 1-byte value; a
 * tensor info at least name length (8) + n_dims (4) + ne[0] (8) + type (4)
 * + offset (8). */
#define MIN_KV_BYTES 13u
#define MIN_TENSOR_BYTES 32u
/* Longest key/string quoted in an error message. */
#define QUOTE_MAX 120

/* ------------------------------------------------------- value type table */

static const uint8_t k_type_size[QK_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const k_type_name[QK_GGUF_NTYPES] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

const char *qk_gguf_type_name(int value_type)
{
    return value_type >= 0 && value_type < QK_GGUF_NTYPES ? k_type_name[value_type] : "?";
}

size_t qk_gguf_type_size(int value_type)
{
    return value_type >= 0 && value_type < QK_GGUF_NTYPES ? k_type_size[value_type] : 0;
}

/* "u32" or "array[string]" for messages. */
static const char *kv_type_desc(const qk_gguf_kv *kv, char buf[32])
{
    if (kv->type != QK_GGUF_ARRAY)
        return qk_gguf_type_name(kv->type);
    snprintf(buf, 32, "array[%s]", qk_gguf_type_name(kv->arr_type));
    return buf;
}

/* ------------------------------------------------------------ KV copies */

/* String arrays made here (reader, kv_copy) keep all their bytes in one
 * block owned through `arr` (unused otherwise for string arrays): one
 * allocation instead of one per token, and memory proportional to the file
 * bytes. A caller-built KV (arr == NULL) owns each strs[i].s separately. */
static int is_arena_strs(const qk_gguf_kv *kv)
{
    return kv->type == QK_GGUF_ARRAY && kv->arr_type == QK_GGUF_STRING && kv->arr;
}

void qk_gguf_kv_clear(qk_gguf_kv *kv)
{
    if (!kv)
        return;
    free(kv->key.s);
    if (kv->type == QK_GGUF_STRING)
        free(kv->v.str.s);
    if (kv->strs && !is_arena_strs(kv))
        for (uint64_t i = 0; i < kv->arr_n; i++)
            free(kv->strs[i].s);
    free(kv->strs);
    free(kv->arr);
    memset(kv, 0, sizeof *kv);
}

/* Copy len bytes into a new NUL-terminated string. */
static int str_dup(qk_str *dst, const char *s, uint64_t len)
{
    dst->s = NULL;
    dst->len = 0;
    if (len > SIZE_MAX - 1 || (len && !s))
        return qk_error(QK_EINVAL, "gguf: invalid string (length %" PRIu64 ")", len);
    dst->s = malloc((size_t)len + 1);
    if (!dst->s)
        return qk_error(QK_ENOMEM, "gguf: out of memory copying a string of %" PRIu64 " bytes", len);
    if (len)
        memcpy(dst->s, s, (size_t)len);
    dst->s[len] = 0;
    dst->len = len;
    return 0;
}

int qk_gguf_kv_copy(qk_gguf_kv *dst, const qk_gguf_kv *src)
{
    assert(dst && src);
    memset(dst, 0, sizeof *dst);
    if (src->type < 0 || src->type >= QK_GGUF_NTYPES)
        return qk_error(QK_EINVAL, "gguf: KV has invalid value type %d", src->type);
    if (src->type == QK_GGUF_ARRAY &&
        (src->arr_type < 0 || src->arr_type >= QK_GGUF_NTYPES || src->arr_type == QK_GGUF_ARRAY))
        return qk_error(QK_EINVAL, "gguf: KV array has invalid element type %d", src->arr_type);
    int rc = str_dup(&dst->key, src->key.s, src->key.len);
    if (rc)
        goto done;
    dst->type = src->type;
    if (src->type == QK_GGUF_STRING) {
        rc = str_dup(&dst->v.str, src->v.str.s, src->v.str.len);
    } else if (src->type != QK_GGUF_ARRAY) {
        dst->v = src->v;
    } else {
        dst->arr_type = src->arr_type;
        uint64_t n = src->arr_n;
        if (n == 0)
            goto done;
        if (src->arr_type == QK_GGUF_STRING) {
            if (!src->strs || n > SIZE_MAX / sizeof(qk_str)) {
                rc = qk_error(QK_EINVAL, "gguf: KV string array of %" PRIu64 " elements has no data", n);
                goto done;
            }
            uint64_t bytes = 0;
            for (uint64_t i = 0; i < n; i++)
                if ((src->strs[i].len && !src->strs[i].s) || qk_add_u64(bytes, src->strs[i].len, &bytes) ||
                    qk_add_u64(bytes, 1, &bytes) || bytes > SIZE_MAX) {
                    rc = qk_error(QK_EINVAL, "gguf: KV string array element %" PRIu64 " is invalid", i);
                    goto done;
                }
            dst->strs = malloc((size_t)n * sizeof(qk_str));
            dst->arr = malloc((size_t)bytes);
            if (!dst->strs || !dst->arr) {
                rc = qk_error(QK_ENOMEM, "gguf: out of memory copying an array of %" PRIu64 " strings", n);
                goto done;
            }
            char *at = dst->arr;
            for (uint64_t i = 0; i < n; i++) {
                uint64_t len = src->strs[i].len;
                if (len)
                    memcpy(at, src->strs[i].s, (size_t)len);
                at[len] = 0;
                dst->strs[i].s = at;
                dst->strs[i].len = len;
                at += len + 1;
            }
            dst->arr_n = n;
        } else {
            size_t esz = k_type_size[src->arr_type];
            if (!src->arr || n > SIZE_MAX / esz) {
                rc = qk_error(QK_EINVAL, "gguf: KV array of %" PRIu64 " elements has no data", n);
                goto done;
            }
            dst->arr = malloc((size_t)n * esz);
            if (!dst->arr) {
                rc = qk_error(QK_ENOMEM, "gguf: out of memory copying an array of %" PRIu64 " elements", n);
                goto done;
            }
            memcpy(dst->arr, src->arr, (size_t)n * esz);
            dst->arr_n = n;
        }
    }
done:
    if (rc)
        qk_gguf_kv_clear(dst);
    return rc;
}

/* ---------------------------------------------------------- byte cursor */

typedef struct rd {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;       /* invariant: pos <= size */
    const char *path;
    char ctx[192];      /* what is being read: "header", "KV 'x'", "tensor 'y'" */
} rd;

static int rd_need(rd *r, uint64_t n, const char *what)
{
    if (r->size - r->pos < n)
        return qk_error(QK_EFORMAT,
                        "%s: %s: %s at offset %" PRIu64 " needs %" PRIu64 " bytes but the file ends at %" PRIu64,
                        r->path, r->ctx, what, r->pos, n, r->size);
    return 0;
}

static int rd_u32(rd *r, uint32_t *out, const char *what)
{
    int rc = rd_need(r, 4, what);
    if (rc)
        return rc;
    *out = qk_rd_u32(r->p + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_i32(rd *r, int32_t *out, const char *what)
{
    uint32_t v;
    int rc = rd_u32(r, &v, what);
    if (!rc)
        *out = (int32_t)v;
    return rc;
}

static int rd_u64(rd *r, uint64_t *out, const char *what)
{
    int rc = rd_need(r, 8, what);
    if (rc)
        return rc;
    *out = qk_rd_u64(r->p + r->pos);
    r->pos += 8;
    return 0;
}

static int rd_i64(rd *r, int64_t *out, const char *what)
{
    uint64_t v;
    int rc = rd_u64(r, &v, what);
    if (!rc)
        *out = (int64_t)v;
    return rc;
}

/* Skip a u64 length + bytes after checking the length against the limit
 * and the remaining bytes; *start gets the offset of the bytes. */
static int rd_skip_str(rd *r, uint64_t *start, uint64_t *len, const char *what)
{
    uint64_t at = r->pos;
    int rc = rd_u64(r, len, what);
    if (rc)
        return rc;
    if (*len > QK_GGUF_MAX_STRING)
        return qk_error(QK_ELIMIT, "%s: %s: %s at offset %" PRIu64 " has length %" PRIu64 ", over the limit of %u bytes",
                        r->path, r->ctx, what, at, *len, (unsigned)QK_GGUF_MAX_STRING);
    if (*len > r->size - r->pos)
        return qk_error(QK_EFORMAT,
                        "%s: %s: %s at offset %" PRIu64 " has length %" PRIu64 " but only %" PRIu64 " bytes follow",
                        r->path, r->ctx, what, at, *len, r->size - r->pos);
    *start = r->pos;
    r->pos += *len;
    return 0;
}

/* u64 length + bytes, copied NUL-terminated (validated before allocating). */
static int rd_str(rd *r, qk_str *out, const char *what)
{
    uint64_t start, len;
    int rc = rd_skip_str(r, &start, &len, what);
    return rc ? rc : str_dup(out, (const char *)r->p + start, len);
}

/* Decode one little-endian element of `size` bytes into native memory. */
static void load_le(void *dst, const uint8_t *p, size_t size)
{
    switch (size) {
    case 1: memcpy(dst, p, 1); break;
    case 2: { uint16_t v = qk_rd_u16(p); memcpy(dst, &v, 2); break; }
    case 4: { uint32_t v = qk_rd_u32(p); memcpy(dst, &v, 4); break; }
    case 8: { uint64_t v = qk_rd_u64(p); memcpy(dst, &v, 8); break; }
    default: assert(0);
    }
}

/* ----------------------------------------------------------- KV parsing */

static int rd_array(rd *r, qk_gguf_kv *kv)
{
    int32_t et;
    uint64_t n;
    int rc = rd_i32(r, &et, "array element type");
    if (rc)
        return rc;
    if (et < 0 || et >= QK_GGUF_NTYPES)
        return qk_error(QK_EFORMAT, "%s: %s: unknown array element type %" PRId32, r->path, r->ctx, et);
    if (et == QK_GGUF_ARRAY)
        return qk_error(QK_EFORMAT, "%s: %s: nested arrays are not allowed", r->path, r->ctx);
    if ((rc = rd_u64(r, &n, "array length")))
        return rc;
    kv->arr_type = et;
    if (n > QK_GGUF_MAX_ARRAY)
        return qk_error(QK_ELIMIT, "%s: %s: array of %" PRIu64 " elements is over the limit of %llu",
                        r->path, r->ctx, n, (unsigned long long)QK_GGUF_MAX_ARRAY);
    uint64_t left = r->size - r->pos;
    if (n == 0)
        return 0;

    if (et == QK_GGUF_STRING) {
        /* Every element takes at least its 8-byte length. */
        if (n > left / 8)
            return qk_error(QK_EFORMAT,
                            "%s: %s: array of %" PRIu64 " strings needs at least %" PRIu64 " bytes but only %" PRIu64 " follow",
                            r->path, r->ctx, n, n * 8, left);
        /* Pass 1 validates every element without allocating, so nothing is
         * allocated for elements that are not in the file; pass 2 copies
         * them into one block (see is_arena_strs). */
        rd scan = *r;
        uint64_t start, len, bytes = 0;
        for (uint64_t i = 0; i < n; i++) {
            if ((rc = rd_skip_str(&scan, &start, &len, "array element")))
                return rc;
            bytes += len + 1; /* <= file size + n: no overflow */
        }
        kv->strs = malloc((size_t)n * sizeof(qk_str));
        kv->arr = malloc((size_t)bytes);
        if (!kv->strs || !kv->arr)
            return qk_error(QK_ENOMEM, "%s: %s: out of memory for %" PRIu64 " strings", r->path, r->ctx, n);
        char *at = kv->arr;
        for (uint64_t i = 0; i < n; i++) {
            len = qk_rd_u64(r->p + r->pos);
            memcpy(at, r->p + r->pos + 8, (size_t)len);
            at[len] = 0;
            kv->strs[i].s = at;
            kv->strs[i].len = len;
            at += len + 1;
            r->pos += 8 + len;
        }
        kv->arr_n = n;
        return 0;
    }

    size_t esz = k_type_size[et];
    uint64_t total;
    if (qk_mul_u64(n, esz, &total) || total > left)
        return qk_error(QK_EFORMAT,
                        "%s: %s: array of %" PRIu64 " %s elements runs past the end of the file (%" PRIu64 " bytes follow)",
                        r->path, r->ctx, n, k_type_name[et], left);
    kv->arr = malloc((size_t)total);
    if (!kv->arr)
        return qk_error(QK_ENOMEM, "%s: %s: out of memory for %" PRIu64 " bytes", r->path, r->ctx, total);
    uint8_t *dst = kv->arr;
    const uint8_t *src = r->p + r->pos;
    for (uint64_t i = 0; i < n; i++)
        load_le(dst + i * esz, src + i * esz, esz);
    kv->arr_n = n;
    r->pos += total;
    return 0;
}

static int rd_kv(rd *r, qk_gguf_kv *kv)
{
    int32_t vt;
    int rc = rd_str(r, &kv->key, "key");
    if (rc)
        return rc;
    snprintf(r->ctx, sizeof r->ctx, "KV '%.*s'",
             (int)(kv->key.len < QUOTE_MAX ? kv->key.len : QUOTE_MAX), kv->key.s);
    if ((rc = rd_i32(r, &vt, "value type")))
        return rc;
    if (vt < 0 || vt >= QK_GGUF_NTYPES)
        return qk_error(QK_EFORMAT, "%s: %s: unknown value type %" PRId32, r->path, r->ctx, vt);
    kv->type = vt;
    if (vt == QK_GGUF_ARRAY)
        return rd_array(r, kv);
    if (vt == QK_GGUF_STRING)
        return rd_str(r, &kv->v.str, "string value");
    if ((rc = rd_need(r, k_type_size[vt], "value")))
        return rc;
    load_le(&kv->v, r->p + r->pos, k_type_size[vt]);
    r->pos += k_type_size[vt];
    return 0;
}

/* ------------------------------------------------------- tensor parsing */

static const char *fmt_shape(const int64_t *ne, int n_dims, char buf[128])
{
    /* At most 4 dims of <= 20 digits each: always fits in 128 bytes. */
    size_t k = (size_t)snprintf(buf, 128, "[");
    for (int i = 0; i < n_dims && i < QK_GGUF_MAX_DIMS; i++)
        k += (size_t)snprintf(buf + k, 128 - k, "%s%" PRId64, i ? ", " : "", ne[i]);
    snprintf(buf + k, 128 - k, "]");
    return buf;
}

static int rd_tensor_info(rd *r, qk_gguf_tensor *t)
{
    qk_str name = {0};
    uint32_t n_dims;
    int32_t type;
    char shape[128];
    int rc = rd_str(r, &name, "tensor name");
    if (rc)
        return rc;
    t->name = name.s;
    if (name.len >= QK_GGUF_MAX_NAME)
        return qk_error(QK_ELIMIT, "%s: %s: tensor name '%.*s' is %" PRIu64 " bytes long, over the limit of %d",
                        r->path, r->ctx, QUOTE_MAX, name.s, name.len, QK_GGUF_MAX_NAME - 1);
    if (memchr(name.s, 0, (size_t)name.len))
        return qk_error(QK_EFORMAT, "%s: %s: tensor name contains a NUL byte", r->path, r->ctx);
    snprintf(r->ctx, sizeof r->ctx, "tensor '%s'", name.s);

    if ((rc = rd_u32(r, &n_dims, "n_dims")))
        return rc;
    if (n_dims < 1 || n_dims > QK_GGUF_MAX_DIMS)
        return qk_error(QK_EFORMAT, "%s: %s: n_dims %" PRIu32 " is outside 1..%d", r->path, r->ctx, n_dims,
                        QK_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < QK_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    int64_t elems = 1;
    for (int d = 0; d < (int)n_dims; d++) {
        if ((rc = rd_i64(r, &t->ne[d], "ne")))
            return rc;
        if (t->ne[d] < 0)
            return qk_error(QK_EFORMAT, "%s: %s: ne[%d] = %" PRId64 " is negative", r->path, r->ctx, d, t->ne[d]);
        if (qk_mul_i64(elems, t->ne[d], &elems))
            return qk_error(QK_EFORMAT, "%s: %s: shape %s has more elements than fit in 64 bits", r->path,
                            r->ctx, fmt_shape(t->ne, d + 1, shape));
    }
    if ((rc = rd_i32(r, &type, "ggml type")))
        return rc;
    const qk_type_traits *tt = qk_type_get(type);
    if (!tt)
        return qk_error(QK_EFORMAT, "%s: %s: unknown ggml type %" PRId32, r->path, r->ctx, type);
    t->type = type;
    if (t->ne[0] % tt->block_size)
        return qk_error(QK_EFORMAT, "%s: %s: ne[0] = %" PRId64 " is not a multiple of %s's block size %" PRId64,
                        r->path, r->ctx, t->ne[0], tt->name, tt->block_size);
    if (qk_type_tensor_bytes(type, t->ne, t->n_dims, &t->nbytes))
        return qk_error(QK_EFORMAT, "%s: %s: size of %s %s overflows 64 bits", r->path, r->ctx, tt->name,
                        fmt_shape(t->ne, t->n_dims, shape));
    return rd_u64(r, &t->offset, "tensor offset");
}

/* ---------------------------------------------------------- name lookup */

static int cmp_bytes(const char *a, uint64_t an, const char *b, uint64_t bn)
{
    uint64_t m = an < bn ? an : bn;
    int c = m ? memcmp(a, b, (size_t)m) : 0;
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

static int cmp_kv_ptr(const void *x, const void *y)
{
    const qk_gguf_kv *a = *(const qk_gguf_kv *const *)x, *b = *(const qk_gguf_kv *const *)y;
    return cmp_bytes(a->key.s, a->key.len, b->key.s, b->key.len);
}

static int cmp_tensor_ptr(const void *x, const void *y)
{
    const qk_gguf_tensor *a = *(const qk_gguf_tensor *const *)x, *b = *(const qk_gguf_tensor *const *)y;
    return strcmp(a->name, b->name);
}

/* Sorted indexes make duplicate detection and lookup O(n log n) / O(log n)
 * without a hash table an adversary could fill with collisions. */
static int build_indexes(qk_gguf *g)
{
    if (g->n_kv) {
        g->kv_sorted = malloc((size_t)g->n_kv * sizeof *g->kv_sorted);
        if (!g->kv_sorted)
            return qk_error(QK_ENOMEM, "%s: out of memory", g->path);
        for (int64_t i = 0; i < g->n_kv; i++)
            g->kv_sorted[i] = &g->kvs[i];
        qsort(g->kv_sorted, (size_t)g->n_kv, sizeof *g->kv_sorted, cmp_kv_ptr);
        for (int64_t i = 1; i < g->n_kv; i++)
            if (!cmp_kv_ptr(&g->kv_sorted[i - 1], &g->kv_sorted[i])) {
                const qk_str *k = &g->kv_sorted[i]->key;
                return qk_error(QK_EFORMAT, "%s: duplicate key '%.*s'", g->path,
                                (int)(k->len < QUOTE_MAX ? k->len : QUOTE_MAX), k->s);
            }
    }
    if (g->n_tensors) {
        g->t_sorted = malloc((size_t)g->n_tensors * sizeof *g->t_sorted);
        if (!g->t_sorted)
            return qk_error(QK_ENOMEM, "%s: out of memory", g->path);
        for (int64_t i = 0; i < g->n_tensors; i++)
            g->t_sorted[i] = &g->tensors[i];
        qsort(g->t_sorted, (size_t)g->n_tensors, sizeof *g->t_sorted, cmp_tensor_ptr);
        for (int64_t i = 1; i < g->n_tensors; i++)
            if (!cmp_tensor_ptr(&g->t_sorted[i - 1], &g->t_sorted[i]))
                return qk_error(QK_EFORMAT, "%s: duplicate tensor name '%s'", g->path, g->t_sorted[i]->name);
    }
    return 0;
}

/* x rounded up to a multiple of align (a power of two), overflow-checked. */
static int pad_checked(uint64_t x, uint64_t align, uint64_t *out)
{
    if (x > UINT64_MAX - (align - 1))
        return -1;
    *out = (x + align - 1) & ~(align - 1);
    return 0;
}

static int check_alignment(qk_gguf *g)
{
    g->alignment = QK_GGUF_DEFAULT_ALIGNMENT;
    const qk_gguf_kv *kv = qk_gguf_find_kv(g, "general.alignment");
    if (!kv)
        return 0;
    char tb[32];
    if (kv->type != QK_GGUF_U32)
        return qk_error(QK_EFORMAT, "%s: general.alignment has type %s, expected u32", g->path, kv_type_desc(kv, tb));
    uint32_t a = kv->v.u32;
    if (a == 0 || (a & (a - 1)))
        return qk_error(QK_EFORMAT, "%s: general.alignment %" PRIu32 " is not a power of two", g->path, a);
    g->alignment = a;
    return 0;
}

/* llama.cpp's rule: offsets are the running sum of PAD(nbytes, alignment) in
 * tensor-info order, from 0; and each tensor's bytes lie inside the file. */
static int check_layout(qk_gguf *g, uint64_t infos_end)
{
    const uint64_t align = g->alignment, size = g->map->size;
    if (pad_checked(infos_end, align, &g->data_offset))
        return qk_error(QK_EFORMAT, "%s: data section offset overflows", g->path);
    uint64_t expect = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        qk_gguf_tensor *t = &g->tensors[i];
        if (t->offset != expect) {
            if (t->offset % align)
                return qk_error(QK_EFORMAT, "%s: tensor '%s' offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                                g->path, t->name, t->offset, align);
            return qk_error(QK_EFORMAT,
                            "%s: tensor '%s' offset %" PRIu64 ", expected %" PRIu64
                            " (tensor data must follow tensor-info order, each padded to %" PRIu64 " bytes)",
                            g->path, t->name, t->offset, expect, align);
        }
        uint64_t a, b, padded;
        if (qk_add_u64(g->data_offset, t->offset, &a) || qk_add_u64(a, t->nbytes, &b))
            return qk_error(QK_EFORMAT, "%s: tensor '%s' data end overflows 64 bits", g->path, t->name);
        if (b > size)
            return qk_error(QK_EFORMAT, "%s: tensor '%s' data [%" PRIu64 ", %" PRIu64 ") ends past file size %" PRIu64,
                            g->path, t->name, a, b, size);
        t->data = g->map->data + a;
        if (pad_checked(t->nbytes, align, &padded) || qk_add_u64(expect, padded, &expect))
            return qk_error(QK_EFORMAT, "%s: data section size overflows 64 bits", g->path);
    }
    return 0;
}

static int parse(qk_gguf *g)
{
    rd r = {.p = g->map->data, .size = g->map->size, .pos = 0, .path = g->path};
    int rc;
    snprintf(r.ctx, sizeof r.ctx, "header");

    if (r.size < 4 || memcmp(r.p, "GGUF", 4)) {
        char got[24] = "";
        for (uint64_t i = 0; i < 4 && i < r.size; i++)
            snprintf(got + 3 * i, sizeof got - 3 * i, "%s%02x", i ? " " : "", r.p[i]);
        return qk_error(QK_EFORMAT, "%s: not a GGUF file (magic bytes [%s], expected \"GGUF\")", g->path, got);
    }
    r.pos = 4;
    if ((rc = rd_u32(&r, &g->version, "version")))
        return rc;
    if (g->version != 2 && g->version != 3) {
        uint32_t sw = __builtin_bswap32(g->version);
        if (sw == 2 || sw == 3)
            return qk_error(QK_EUNSUPPORTED, "%s: big-endian GGUF (version %" PRIu32 ") is not supported", g->path, sw);
        return qk_error(QK_EUNSUPPORTED, "%s: GGUF version %" PRIu32 " is not supported (quantkit reads versions 2 and 3)",
                        g->path, g->version);
    }
    int64_t nt, nkv;
    if ((rc = rd_i64(&r, &nt, "tensor count")) || (rc = rd_i64(&r, &nkv, "KV count")))
        return rc;
    if (nt < 0)
        return qk_error(QK_EFORMAT, "%s: negative tensor count %" PRId64, g->path, nt);
    if (nkv < 0)
        return qk_error(QK_EFORMAT, "%s: negative KV count %" PRId64, g->path, nkv);
    if ((uint64_t)nt > QK_GGUF_MAX_TENSORS)
        return qk_error(QK_ELIMIT, "%s: tensor count %" PRId64 " is over the limit of %u", g->path, nt,
                        (unsigned)QK_GGUF_MAX_TENSORS);
    if ((uint64_t)nkv > QK_GGUF_MAX_KV)
        return qk_error(QK_ELIMIT, "%s: KV count %" PRId64 " is over the limit of %u", g->path, nkv,
                        (unsigned)QK_GGUF_MAX_KV);
    /* Both counts are <= 2^20 here, so this cannot overflow. */
    uint64_t min_bytes = (uint64_t)nkv * MIN_KV_BYTES + (uint64_t)nt * MIN_TENSOR_BYTES;
    if (min_bytes > r.size - r.pos)
        return qk_error(QK_EFORMAT,
                        "%s: header claims %" PRId64 " KVs and %" PRId64 " tensors, which need at least %" PRIu64
                        " bytes, but only %" PRIu64 " follow",
                        g->path, nkv, nt, min_bytes, r.size - r.pos);

    if (nkv) {
        g->kvs = calloc((size_t)nkv, sizeof *g->kvs);
        if (!g->kvs)
            return qk_error(QK_ENOMEM, "%s: out of memory for %" PRId64 " KVs", g->path, nkv);
        g->n_kv = nkv; /* zeroed entries are safe to clear */
    }
    for (int64_t i = 0; i < nkv; i++) {
        snprintf(r.ctx, sizeof r.ctx, "KV #%" PRId64, i);
        if ((rc = rd_kv(&r, &g->kvs[i])))
            return rc;
    }
    if (nt) {
        g->tensors = calloc((size_t)nt, sizeof *g->tensors);
        if (!g->tensors)
            return qk_error(QK_ENOMEM, "%s: out of memory for %" PRId64 " tensors", g->path, nt);
        g->n_tensors = nt;
    }
    for (int64_t i = 0; i < nt; i++) {
        snprintf(r.ctx, sizeof r.ctx, "tensor #%" PRId64, i);
        if ((rc = rd_tensor_info(&r, &g->tensors[i])))
            return rc;
    }
    if ((rc = build_indexes(g)) || (rc = check_alignment(g)))
        return rc;
    return check_layout(g, r.pos);
}

/* ------------------------------------------------------------ public API */

int qk_gguf_open(qk_gguf **out, const char *path)
{
    assert(out && path);
    *out = NULL;
    int rc;
    qk_gguf *g = calloc(1, sizeof *g);
    if (!g)
        return qk_error(QK_ENOMEM, "%s: out of memory", path);
    if ((rc = qk_mmap_open(&g->map, path)))
        goto done;
    if (!(g->path = strdup(path))) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    rc = parse(g);
done:
    if (rc) {
        qk_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

void qk_gguf_close(qk_gguf *g)
{
    if (!g)
        return;
    for (int64_t i = 0; i < g->n_kv; i++)
        qk_gguf_kv_clear(&g->kvs[i]);
    free(g->kvs);
    free(g->kv_sorted);
    for (int64_t i = 0; i < g->n_tensors; i++)
        free(g->tensors[i].name);
    free(g->tensors);
    free(g->t_sorted);
    qk_mmap_close(g->map);
    free(g->path);
    free(g);
}

const char *qk_gguf_path(const qk_gguf *g) { return g->path; }
uint32_t qk_gguf_version(const qk_gguf *g) { return g->version; }
uint32_t qk_gguf_alignment(const qk_gguf *g) { return g->alignment; }
uint64_t qk_gguf_data_offset(const qk_gguf *g) { return g->data_offset; }
uint64_t qk_gguf_file_size(const qk_gguf *g) { return g->map->size; }
const qk_mmap *qk_gguf_map(const qk_gguf *g) { return g->map; }
int64_t qk_gguf_n_kv(const qk_gguf *g) { return g->n_kv; }
int64_t qk_gguf_n_tensors(const qk_gguf *g) { return g->n_tensors; }

const qk_gguf_kv *qk_gguf_kv_at(const qk_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL;
}

const qk_gguf_tensor *qk_gguf_tensor_at(const qk_gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const qk_gguf_kv *qk_gguf_find_kv(const qk_gguf *g, const char *key)
{
    assert(g && key);
    uint64_t klen = strlen(key);
    int64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const qk_str *k = &g->kv_sorted[mid]->key;
        int c = cmp_bytes(k->s, k->len, key, klen);
        if (c == 0)
            return g->kv_sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const qk_gguf_tensor *qk_gguf_find_tensor(const qk_gguf *g, const char *name)
{
    assert(g && name);
    int64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->t_sorted[mid]->name, name);
        if (c == 0)
            return g->t_sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---------------------------------------------------------- typed getters */

static int get_kv(const qk_gguf *g, const char *key, const qk_gguf_kv **out)
{
    *out = qk_gguf_find_kv(g, key);
    if (!*out)
        return qk_error(QK_ENOTFOUND, "%s: key '%s' not found", g->path, key);
    return 0;
}

static int wrong_type(const qk_gguf *g, const qk_gguf_kv *kv, const char *expected)
{
    char tb[32];
    return qk_error(QK_EFORMAT, "%s: key '%s' has type %s, expected %s", g->path, kv->key.s, kv_type_desc(kv, tb),
                    expected);
}

int qk_gguf_get_u32(const qk_gguf *g, const char *key, uint32_t *out)
{
    const qk_gguf_kv *kv;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != QK_GGUF_U32)
        return wrong_type(g, kv, "u32");
    *out = kv->v.u32;
    return 0;
}

int qk_gguf_get_uint(const qk_gguf *g, const char *key, uint64_t *out)
{
    const qk_gguf_kv *kv;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    int64_t s;
    switch (kv->type) {
    case QK_GGUF_U8: *out = kv->v.u8; return 0;
    case QK_GGUF_U16: *out = kv->v.u16; return 0;
    case QK_GGUF_U32: *out = kv->v.u32; return 0;
    case QK_GGUF_U64: *out = kv->v.u64; return 0;
    case QK_GGUF_I8: s = kv->v.i8; break;
    case QK_GGUF_I16: s = kv->v.i16; break;
    case QK_GGUF_I32: s = kv->v.i32; break;
    case QK_GGUF_I64: s = kv->v.i64; break;
    default: return wrong_type(g, kv, "an integer");
    }
    if (s < 0)
        return qk_error(QK_EFORMAT, "%s: key '%s' is negative (%" PRId64 "), expected a non-negative integer", g->path,
                        key, s);
    *out = (uint64_t)s;
    return 0;
}

int qk_gguf_get_f32(const qk_gguf *g, const char *key, float *out)
{
    const qk_gguf_kv *kv;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != QK_GGUF_F32)
        return wrong_type(g, kv, "f32");
    *out = kv->v.f32;
    return 0;
}

int qk_gguf_get_float(const qk_gguf *g, const char *key, double *out)
{
    const qk_gguf_kv *kv;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type == QK_GGUF_F32)
        *out = kv->v.f32;
    else if (kv->type == QK_GGUF_F64)
        *out = kv->v.f64;
    else
        return wrong_type(g, kv, "f32 or f64");
    return 0;
}

int qk_gguf_get_bool(const qk_gguf *g, const char *key, int *out)
{
    const qk_gguf_kv *kv;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != QK_GGUF_BOOL)
        return wrong_type(g, kv, "bool");
    *out = kv->v.b != 0;
    return 0;
}

int qk_gguf_get_str(const qk_gguf *g, const char *key, const char **out)
{
    const qk_gguf_kv *kv;
    int rc = get_kv(g, key, &kv);
    if (rc)
        return rc;
    if (kv->type != QK_GGUF_STRING)
        return wrong_type(g, kv, "string");
    *out = kv->v.str.s;
    return 0;
}

/* ------------------------------------------------------------- checksums */

int qk_gguf_verify_checksums(const qk_gguf *g)
{
    const qk_gguf_kv *kv = qk_gguf_find_kv(g, QK_GGUF_CHECKSUM_KEY);
    char tb[32];
    if (!kv)
        return qk_error(QK_ENOTFOUND, "%s: no tensor checksums (key %s absent)", g->path, QK_GGUF_CHECKSUM_KEY);
    if (kv->type != QK_GGUF_ARRAY || kv->arr_type != QK_GGUF_U64)
        return qk_error(QK_EFORMAT, "%s: %s has type %s, expected array[u64]", g->path, QK_GGUF_CHECKSUM_KEY,
                        kv_type_desc(kv, tb));
    if (kv->arr_n != (uint64_t)g->n_tensors)
        return qk_error(QK_EFORMAT, "%s: %s has %" PRIu64 " entries for %" PRId64 " tensors", g->path,
                        QK_GGUF_CHECKSUM_KEY, kv->arr_n, g->n_tensors);
    const uint64_t *stored = kv->arr;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const qk_gguf_tensor *t = &g->tensors[i];
        uint64_t h = qk_hash64(t->data, (size_t)t->nbytes);
        /* Hashing reads every page once; let them go so verifying a large
         * model does not grow the resident set. */
        qk_mmap_release(g->map, g->data_offset + t->offset, t->nbytes);
        if (h != stored[i])
            return qk_error(QK_ECHECKSUM, "%s: tensor '%s' checksum mismatch (stored %016" PRIx64 ", computed %016" PRIx64 ")",
                            g->path, t->name, stored[i], h);
    }
    return 0;
}

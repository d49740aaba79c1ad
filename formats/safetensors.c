/* safetensors reader: dtype table, strict JSON pre-checks, header parsing
 * and validation. The tensor data stays in the read-only mapping.
 *
 * Byte layout:
 *   [0, 8)                 u64 LE header_len (<= QK_ST_MAX_HEADER)
 *   [8, 8 + header_len)    UTF-8 JSON object, possibly padded with spaces
 *   [8 + header_len, EOF)  data buffer; data_offsets are relative to its start
 *
 * Validation order: header length, UTF-8 and JSON shape (st_internal.h),
 * then each entry (dtype, shape, offsets, size, bounds), then names unique,
 * then overlaps after sorting by offset.
 */
#include "quantkit/safetensors.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "quantkit/ggml_types.h"
#include "st_internal.h"

/* ------------------------------------------------------------------ dtypes */

static const struct {
    const char *name;
    size_t size;
    int type; /* qk_type, or -1 */
} k_dtypes[QK_ST_NDTYPES] = {
    [QK_ST_BOOL] = {"BOOL", 1, -1},
    [QK_ST_U8] = {"U8", 1, -1},
    [QK_ST_I8] = {"I8", 1, QK_TYPE_I8},
    [QK_ST_I16] = {"I16", 2, QK_TYPE_I16},
    [QK_ST_U16] = {"U16", 2, -1},
    [QK_ST_F16] = {"F16", 2, QK_TYPE_F16},
    [QK_ST_BF16] = {"BF16", 2, QK_TYPE_BF16},
    [QK_ST_I32] = {"I32", 4, QK_TYPE_I32},
    [QK_ST_U32] = {"U32", 4, -1},
    [QK_ST_F32] = {"F32", 4, QK_TYPE_F32},
    [QK_ST_F64] = {"F64", 8, QK_TYPE_F64},
    [QK_ST_I64] = {"I64", 8, QK_TYPE_I64},
    [QK_ST_U64] = {"U64", 8, -1},
    [QK_ST_F8_E4M3] = {"F8_E4M3", 1, -1},
    [QK_ST_F8_E5M2] = {"F8_E5M2", 1, -1},
};

const char *qk_st_dtype_name(int dtype)
{
    return dtype >= 0 && dtype < QK_ST_NDTYPES ? k_dtypes[dtype].name : "?";
}

int qk_st_dtype_from_name(const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < QK_ST_NDTYPES; i++)
        if (!strcmp(s, k_dtypes[i].name))
            return i;
    return -1;
}

size_t qk_st_dtype_size(int dtype)
{
    return dtype >= 0 && dtype < QK_ST_NDTYPES ? k_dtypes[dtype].size : 0;
}

int qk_st_dtype_type(int dtype)
{
    return dtype >= 0 && dtype < QK_ST_NDTYPES ? k_dtypes[dtype].type : -1;
}

int qk_st_dtype_from_type(int qk_type)
{
    if (qk_type < 0)
        return -1;
    for (int i = 0; i < QK_ST_NDTYPES; i++)
        if (k_dtypes[i].type == qk_type)
            return i;
    return -1;
}

/* ------------------------------------------------------ UTF-8 and JSON text */

size_t qk_st_utf8_check(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* U+D800..U+DFFF surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return i; /* continuation byte, C0/C1 overlong lead, F5..FF */
        }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += len;
    }
    return n;
}

static int hex4(const uint8_t *p, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

int qk_st_json_precheck(const char *path, const char *what, const uint8_t *s, size_t n)
{
    size_t bad = qk_st_utf8_check(s, n);
    if (bad < n)
        return qk_error(QK_EFORMAT, "%s: %s is not valid UTF-8 (byte 0x%02x at offset %zu)", path, what, s[bad],
                        bad);
    int depth = 0;
    uint64_t values = 1; /* cJSON nodes <= commas + opening brackets + 1 */
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        /* Outside strings JSON is ASCII; cJSON would skip any byte <= 0x20
         * as white space and a leading byte-order mark. */
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c >= 0x7f)
            return qk_error(QK_EFORMAT, "%s: %s has byte 0x%02x outside a string at offset %zu", path, what, c, i);
        if ((c == '{' || c == '[' || c == ',') && ++values > QK_ST_MAX_JSON_VALUES)
            return qk_error(QK_ELIMIT, "%s: %s holds more than %u values (at offset %zu); not a file quantkit reads",
                            path, what, (unsigned)QK_ST_MAX_JSON_VALUES, i);
        if (c == '{' || c == '[') {
            if (++depth > QK_ST_MAX_NESTING)
                return qk_error(QK_ELIMIT, "%s: %s nests deeper than %d levels at offset %zu", path, what,
                                QK_ST_MAX_NESTING, i);
        } else if (c == '}' || c == ']') {
            depth--; /* unbalanced text is cJSON's to reject */
        } else if (c == '"') {
            size_t start = i;
            for (i++; i < n && s[i] != '"'; i++) {
                if (s[i] < 0x20)
                    return qk_error(QK_EFORMAT, "%s: %s has control byte 0x%02x inside a string at offset %zu",
                                    path, what, s[i], i);
                if (s[i] != '\\')
                    continue;
                if (++i >= n)
                    break;
                if (s[i] != 'u')
                    continue; /* other escapes are checked by cJSON */
                unsigned cp, lo;
                if (n - i < 5 || hex4(s + i + 1, &cp) != 0)
                    return qk_error(QK_EFORMAT, "%s: %s has a malformed \\u escape at offset %zu", path, what,
                                    i - 1);
                if (cp == 0)
                    return qk_error(QK_EFORMAT, "%s: %s has a \\u0000 escape at offset %zu", path, what, i - 1);
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return qk_error(QK_EFORMAT, "%s: %s has an unpaired low surrogate \\u%04x at offset %zu",
                                    path, what, cp, i - 1);
                i += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (n - i < 7 || s[i + 1] != '\\' || s[i + 2] != 'u' || hex4(s + i + 3, &lo) != 0 ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return qk_error(QK_EFORMAT,
                                        "%s: %s has an unpaired high surrogate \\u%04x at offset %zu", path, what,
                                        cp, i - 5);
                    i += 6;
                }
            }
            if (i >= n)
                return qk_error(QK_EFORMAT, "%s: %s has a string starting at offset %zu that never ends", path,
                                what, start);
        }
    }
    return 0;
}

const char *qk_st_show(char *buf, size_t cap, const char *s)
{
    assert(cap >= 8);
    size_t len = strlen(s), n = len < cap ? len : cap - 4;
    /* Cut at a character boundary so the message stays UTF-8. */
    while (n < len && n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    memcpy(buf + n, n < len ? "..." : "", n < len ? 4 : 1);
    return buf;
}

/* ------------------------------------------------------------------ reader */

struct qk_safetensors {
    qk_mmap *map;
    char *path;
    qk_st_tensor *tensors; /* [n_tensors], data-offset order */
    int64_t n_tensors;
    const qk_st_tensor **by_name; /* [n_tensors] into tensors, sorted by name */
    char **meta_keys;      /* [n_meta], header order */
    char **meta_values;    /* [n_meta] */
    int64_t n_meta;
};

/* 2^53: doubles above it no longer hold every integer, so a value cJSON
 * parsed there may already be rounded. */
#define ST_EXACT_LIMIT 9007199254740992.0

/* A JSON number that is a non-negative integer below 2^53. */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return -1;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d >= ST_EXACT_LIMIT)
        return -1;
    uint64_t u = (uint64_t)d;
    if ((double)u != d)
        return -1;
    *out = u;
    return 0;
}

/* What a JSON value is, for messages: its number, or its kind. */
static const char *json_desc(const cJSON *j, char buf[48])
{
    if (cJSON_IsNumber(j)) {
        snprintf(buf, 48, "%.15g", j->valuedouble);
        if (strtod(buf, NULL) != j->valuedouble)
            snprintf(buf, 48, "%.17g", j->valuedouble);
    }
    else if (cJSON_IsString(j))
        snprintf(buf, 48, "a string");
    else if (cJSON_IsBool(j))
        snprintf(buf, 48, "a boolean");
    else if (cJSON_IsNull(j))
        snprintf(buf, 48, "null");
    else if (cJSON_IsArray(j))
        snprintf(buf, 48, "an array");
    else if (cJSON_IsObject(j))
        snprintf(buf, 48, "an object");
    else
        snprintf(buf, 48, "invalid");
    return buf;
}

/* "[3, 4]", scalars "[]". Each dim takes at most 20 digits plus ", ". */
#define ST_SHAPE_CAP (2 + QK_ST_MAX_DIMS * 22 + 1)
static const char *fmt_shape(char buf[ST_SHAPE_CAP], const int64_t *shape, int n_dims)
{
    size_t len = 1;
    buf[0] = '[';
    for (int i = 0; i < n_dims; i++)
        len += (size_t)snprintf(buf + len, ST_SHAPE_CAP - len, "%s%" PRId64, i ? ", " : "", shape[i]);
    snprintf(buf + len, ST_SHAPE_CAP - len, "]");
    return buf;
}

/* Parses and checks one tensor entry. On success t->offset holds `begin`
 * (relative to the data buffer) and t->name is still NULL. */
static int parse_tensor(const char *path, const char *name, const cJSON *e, uint64_t data_size, qk_st_tensor *t)
{
    char nm[QK_ST_SHOW_CAP], d1[48], d2[48], sh[ST_SHAPE_CAP];
    qk_st_show(nm, sizeof nm, name);
    if (!cJSON_IsObject(e))
        return qk_error(QK_EFORMAT, "%s: tensor '%s' entry is %s, not an object", path, nm, json_desc(e, d1));

    const cJSON *jdtype = NULL, *jshape = NULL, *joffs = NULL, *c;
    cJSON_ArrayForEach(c, e)
    {
        const cJSON **slot = !strcmp(c->string, "dtype")          ? &jdtype
                             : !strcmp(c->string, "shape")        ? &jshape
                             : !strcmp(c->string, "data_offsets") ? &joffs
                                                                  : NULL;
        if (!slot)
            continue; /* other keys carry nothing the format defines */
        if (*slot)
            return qk_error(QK_EFORMAT, "%s: tensor '%s' has two '%s' fields", path, nm, c->string);
        *slot = c;
    }
    if (!jdtype || !jshape || !joffs)
        return qk_error(QK_EFORMAT, "%s: tensor '%s' has no '%s' field", path, nm,
                        !jdtype ? "dtype" : !jshape ? "shape" : "data_offsets");

    if (!cJSON_IsString(jdtype))
        return qk_error(QK_EFORMAT, "%s: tensor '%s' dtype is %s, not a string", path, nm, json_desc(jdtype, d1));
    t->dtype = qk_st_dtype_from_name(jdtype->valuestring);
    if (t->dtype < 0) {
        char dn[QK_ST_SHOW_CAP];
        return qk_error(QK_EUNSUPPORTED,
                        "%s: tensor '%s' has unknown dtype '%s' (known: BOOL U8 I8 I16 U16 F16 BF16 I32 U32 F32 "
                        "F64 I64 U64 F8_E4M3 F8_E5M2)",
                        path, nm, qk_st_show(dn, sizeof dn, jdtype->valuestring));
    }

    if (!cJSON_IsArray(jshape))
        return qk_error(QK_EFORMAT, "%s: tensor '%s' shape is %s, not an array", path, nm, json_desc(jshape, d1));
    int n_dims = cJSON_GetArraySize(jshape);
    if (n_dims > QK_ST_MAX_DIMS)
        return qk_error(QK_ELIMIT, "%s: tensor '%s' has %d dimensions; the limit is %d", path, nm, n_dims,
                        QK_ST_MAX_DIMS);
    t->n_dims = n_dims;
    int i = 0;
    uint64_t nelem = 1;
    cJSON_ArrayForEach(c, jshape)
    {
        uint64_t v;
        if (json_uint(c, &v) != 0)
            return qk_error(QK_EFORMAT, "%s: tensor '%s' shape[%d] is %s, not an integer in [0, 2^53)", path, nm,
                            i, json_desc(c, d1));
        t->shape[i++] = (int64_t)v;
        if (qk_mul_u64(nelem, v, &nelem) != 0 || nelem > (uint64_t)INT64_MAX)
            return qk_error(QK_EFORMAT, "%s: tensor '%s' shape %s has more elements than 2^63", path, nm,
                            fmt_shape(sh, t->shape, i));
    }

    if (!cJSON_IsArray(joffs) || cJSON_GetArraySize(joffs) != 2)
        return qk_error(QK_EFORMAT, "%s: tensor '%s' data_offsets is not an array of two integers", path, nm);
    uint64_t begin, end;
    if (json_uint(joffs->child, &begin) != 0 || json_uint(joffs->child->next, &end) != 0)
        return qk_error(QK_EFORMAT, "%s: tensor '%s' data_offsets [%s, %s] are not integers in [0, 2^53)", path,
                        nm, json_desc(joffs->child, d1), json_desc(joffs->child->next, d2));
    if (begin > end)
        return qk_error(QK_EFORMAT, "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 ") begin after they end",
                        path, nm, begin, end);
    uint64_t nbytes;
    if (qk_mul_u64(nelem, k_dtypes[t->dtype].size, &nbytes) != 0)
        return qk_error(QK_EFORMAT, "%s: tensor '%s' %s %s is larger than 2^64 bytes", path, nm,
                        k_dtypes[t->dtype].name, fmt_shape(sh, t->shape, n_dims));
    if (end - begin != nbytes)
        return qk_error(QK_EFORMAT,
                        "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 ") hold %" PRIu64
                        " bytes but %s %s needs %" PRIu64,
                        path, nm, begin, end, end - begin, k_dtypes[t->dtype].name, fmt_shape(sh, t->shape, n_dims),
                        nbytes);
    if (end > data_size)
        return qk_error(QK_EFORMAT,
                        "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64
                        ") end past the %" PRIu64 "-byte data buffer (file truncated?)",
                        path, nm, begin, end, data_size);
    t->offset = begin;
    t->nbytes = nbytes;
    return 0;
}

static int cmp_offset(const void *a, const void *b)
{
    const qk_st_tensor *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp((*(const qk_st_tensor *const *)a)->name, (*(const qk_st_tensor *const *)b)->name);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int parse_meta(qk_safetensors *st, const cJSON *m)
{
    char d[48], k1[QK_ST_SHOW_CAP];
    const char *path = st->path;
    if (cJSON_IsNull(m))
        return 0;
    if (!cJSON_IsObject(m))
        return qk_error(QK_EFORMAT, "%s: __metadata__ is %s, not an object of strings", path, json_desc(m, d));
    int64_t n = cJSON_GetArraySize(m);
    st->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    st->meta_values = calloc((size_t)n + 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_values)
        return qk_error(QK_ENOMEM, "%s: out of memory for %" PRId64 " metadata entries", path, n);
    const cJSON *c;
    cJSON_ArrayForEach(c, m)
    {
        qk_st_show(k1, sizeof k1, c->string);
        if (!cJSON_IsString(c))
            return qk_error(QK_EFORMAT, "%s: __metadata__ value for '%s' is %s; metadata values must be strings",
                            path, k1, json_desc(c, d));
        char *k = strdup(c->string), *v = strdup(c->valuestring);
        st->meta_keys[st->n_meta] = k;
        st->meta_values[st->n_meta] = v;
        st->n_meta++;
        if (!k || !v)
            return qk_error(QK_ENOMEM, "%s: out of memory for metadata", path);
    }
    /* Duplicates by sorting a copy of the keys: a hostile header can hold
     * millions of entries, so no pairwise check. */
    char **sorted = malloc((size_t)n * sizeof *sorted + 1);
    if (!sorted)
        return qk_error(QK_ENOMEM, "%s: out of memory for %" PRId64 " metadata entries", path, n);
    memcpy(sorted, st->meta_keys, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str_ptr);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(sorted[i - 1], sorted[i])) {
            qk_st_show(k1, sizeof k1, sorted[i]);
            free(sorted);
            return qk_error(QK_EFORMAT, "%s: __metadata__ key '%s' appears twice", path, k1);
        }
    free(sorted);
    return 0;
}

static int parse_header(qk_safetensors *st, const cJSON *root, uint64_t data_start)
{
    const char *path = st->path;
    char d[48], nm[QK_ST_SHOW_CAP], nm2[QK_ST_SHOW_CAP];
    if (!cJSON_IsObject(root))
        return qk_error(QK_EFORMAT, "%s: header JSON is %s, not an object", path, json_desc(root, d));
    uint64_t data_size = st->map->size - data_start;

    int64_t n = 0;
    const cJSON *c, *meta = NULL;
    cJSON_ArrayForEach(c, root)
    {
        if (strcmp(c->string, "__metadata__") != 0)
            n++;
        else if (meta)
            return qk_error(QK_EFORMAT, "%s: header has two __metadata__ entries", path);
        else
            meta = c;
    }
    if (meta) {
        int rc = parse_meta(st, meta);
        if (rc < 0)
            return rc;
    }

    st->tensors = calloc((size_t)n + 1, sizeof *st->tensors);
    st->by_name = calloc((size_t)n + 1, sizeof *st->by_name);
    if (!st->tensors || !st->by_name)
        return qk_error(QK_ENOMEM, "%s: out of memory for %" PRId64 " tensors", path, n);
    cJSON_ArrayForEach(c, root)
    {
        if (c == meta)
            continue;
        qk_st_tensor *t = &st->tensors[st->n_tensors];
        int rc = parse_tensor(path, c->string, c, data_size, t);
        if (rc < 0)
            return rc;
        t->name = strdup(c->string);
        st->n_tensors++;
        if (!t->name)
            return qk_error(QK_ENOMEM, "%s: out of memory for tensor names", path);
    }

    qsort(st->tensors, (size_t)n, sizeof *st->tensors, cmp_offset);
    /* Empty tensors own no bytes and overlap nothing; among the others each
     * must begin at or after the furthest end seen so far. */
    const qk_st_tensor *furthest = NULL;
    for (int64_t i = 0; i < n; i++) {
        qk_st_tensor *t = &st->tensors[i];
        if (t->nbytes == 0)
            continue;
        if (furthest && t->offset < furthest->offset + furthest->nbytes)
            return qk_error(QK_EFORMAT,
                            "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64
                            ") overlap",
                            path, qk_st_show(nm, sizeof nm, furthest->name), furthest->offset,
                            furthest->offset + furthest->nbytes, qk_st_show(nm2, sizeof nm2, t->name), t->offset,
                            t->offset + t->nbytes);
        if (!furthest || t->offset + t->nbytes > furthest->offset + furthest->nbytes)
            furthest = t;
    }

    for (int64_t i = 0; i < n; i++)
        st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, (size_t)n, sizeof *st->by_name, cmp_by_name);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(st->by_name[i]->name, st->by_name[i - 1]->name))
            return qk_error(QK_EFORMAT, "%s: tensor name '%s' appears twice in the header", path,
                            qk_st_show(nm, sizeof nm, st->by_name[i]->name));

    for (int64_t i = 0; i < n; i++) {
        qk_st_tensor *t = &st->tensors[i];
        t->offset += data_start;
        t->data = st->map->data + t->offset;
    }
    return 0;
}

int qk_safetensors_open(qk_safetensors **out, const char *path)
{
    assert(out && path);
    *out = NULL;
    int rc = 0;
    char *json = NULL;
    cJSON *root = NULL;
    qk_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((rc = qk_mmap_open(&st->map, path)) < 0)
        goto done;
    uint64_t size = st->map->size;
    if (size < 8) {
        rc = qk_error(QK_EFORMAT, "%s: file is %" PRIu64 " bytes, shorter than the 8-byte header length", path,
                      size);
        goto done;
    }
    uint64_t header_len = qk_rd_u64(st->map->data);
    if (header_len > QK_ST_MAX_HEADER) {
        rc = qk_error(QK_ELIMIT, "%s: header length %" PRIu64 " exceeds the limit of %u bytes (not a safetensors file?)",
                      path, header_len, QK_ST_MAX_HEADER);
        goto done;
    }
    if (header_len > size - 8) {
        rc = qk_error(QK_EFORMAT, "%s: header length %" PRIu64 " runs past the end of the %" PRIu64 "-byte file",
                      path, header_len, size);
        goto done;
    }
    const uint8_t *hdr = st->map->data + 8;
    if ((rc = qk_st_json_precheck(path, "header JSON", hdr, (size_t)header_len)) < 0)
        goto done;
    /* cJSON wants a terminated string; the header is at most 100 MB. */
    json = malloc((size_t)header_len + 1);
    if (!json) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory for a %" PRIu64 "-byte header", path, header_len);
        goto done;
    }
    memcpy(json, hdr, (size_t)header_len);
    json[header_len] = 0;
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(json, (size_t)header_len + 1, &end, 1);
    if (!root) {
        size_t at = end && end >= json && end <= json + header_len ? (size_t)(end - json) : 0;
        rc = qk_error(QK_EFORMAT, "%s: header is not valid JSON (error near byte %zu of %" PRIu64 ")", path, at,
                      header_len);
        goto done;
    }
    if ((rc = parse_header(st, root, 8 + header_len)) < 0)
        goto done;
    *out = st;
    st = NULL;
done:
    cJSON_Delete(root);
    free(json);
    qk_safetensors_close(st);
    return rc;
}

void qk_safetensors_close(qk_safetensors *st)
{
    if (!st)
        return;
    for (int64_t i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    for (int64_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->tensors);
    free(st->by_name);
    qk_mmap_close(st->map);
    free(st->path);
    free(st);
}

const char *qk_safetensors_path(const qk_safetensors *st) { return st->path; }
const qk_mmap *qk_safetensors_map(const qk_safetensors *st) { return st->map; }
int64_t qk_safetensors_n_tensors(const qk_safetensors *st) { return st->n_tensors; }

const qk_st_tensor *qk_safetensors_tensor_at(const qk_safetensors *st, int64_t i)
{
    return i >= 0 && i < st->n_tensors ? &st->tensors[i] : NULL;
}

const qk_st_tensor *qk_safetensors_find(const qk_safetensors *st, const char *name)
{
    int64_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const qk_st_tensor *t = st->by_name[mid];
        int c = strcmp(t->name, name);
        if (c == 0)
            return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int64_t qk_safetensors_n_meta(const qk_safetensors *st) { return st->n_meta; }

const char *qk_safetensors_meta_key(const qk_safetensors *st, int64_t i)
{
    return i >= 0 && i < st->n_meta ? st->meta_keys[i] : NULL;
}

const char *qk_safetensors_meta_value(const qk_safetensors *st, int64_t i)
{
    return i >= 0 && i < st->n_meta ? st->meta_values[i] : NULL;
}

const char *qk_safetensors_find_meta(const qk_safetensors *st, const char *key)
{
    for (int64_t i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key))
            return st->meta_values[i];
    return NULL;
}

/* Streaming safetensors writer and the shard index writer.
 *
 * The header is compact JSON built by hand so its bytes are deterministic:
 * __metadata__ first (keys in insertion order), then tensors in insertion
 * order, which is also data order; data_offsets are contiguous from 0 with
 * no padding between tensors. The JSON is padded with spaces so the data
 * buffer starts at a multiple of 8 bytes.
 */
#include "quantkit/safetensors.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_internal.h"

/* ------------------------------------------------------------ JSON output */

typedef struct st_buf {
    char *p;
    size_t n, cap;
    int oom;
} st_buf;

static void buf_add(st_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->cap - b->n < n + 1) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc - b->n < n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void buf_str(st_buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_fmt(st_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Short formatted pieces (numbers, fixed keys) only. */
static void buf_fmt(st_buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    assert(n >= 0 && (size_t)n < sizeof tmp);
    buf_add(b, tmp, (size_t)n);
}

/* A JSON string literal; s is valid UTF-8, which passes through unchanged. */
static void buf_json_str(st_buf *b, const char *s)
{
    buf_add(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c != '"' && c != '\\' && c >= 0x20)
            continue;
        buf_add(b, run, (size_t)(s - run));
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            buf_add(b, e, 2);
        } else {
            buf_fmt(b, "\\u%04x", c);
        }
        run = s + 1;
    }
    buf_add(b, run, (size_t)(s - run));
    buf_add(b, "\"", 1);
}

static int utf8_ok(const char *s) { return qk_st_utf8_check((const uint8_t *)s, strlen(s)) == strlen(s); }

/* ------------------------------------------------------------------ writer */

typedef struct st_wtensor {
    char *name;
    int dtype;
    int n_dims;
    int64_t shape[QK_ST_MAX_DIMS];
    uint64_t nbytes;
} st_wtensor;

enum { ST_W_ADDING, ST_W_WRITING, ST_W_FINISHED };

struct qk_st_writer {
    char **meta_keys, **meta_values; /* [n_meta] */
    int64_t n_meta, cap_meta;
    st_wtensor *tensors;             /* [n_tensors], file order */
    int64_t n_tensors, cap_tensors;
    qk_afile *f;                     /* borrowed from begin() */
    uint64_t total;                  /* data bytes declared */
    uint64_t written;                /* data bytes written so far */
    int state;
};

int qk_st_writer_new(qk_st_writer **out)
{
    assert(out);
    *out = calloc(1, sizeof **out);
    return *out ? 0 : qk_error(QK_ENOMEM, "safetensors writer: out of memory");
}

void qk_st_writer_free(qk_st_writer *w)
{
    if (!w)
        return;
    for (int64_t i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    for (int64_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->meta_keys);
    free(w->meta_values);
    free(w->tensors);
    free(w);
}

static int grow(void **p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int64_t nc = *cap ? *cap * 2 : 16;
    void *np = realloc(*p, (size_t)nc * elem);
    if (!np)
        return -1;
    *p = np;
    *cap = nc;
    return 0;
}

int qk_st_writer_add_meta(qk_st_writer *w, const char *key, const char *value)
{
    assert(w && key && value);
    char nm[QK_ST_SHOW_CAP];
    if (w->state != ST_W_ADDING)
        return qk_error(QK_EINVAL, "safetensors writer: metadata '%s' added after the header was written",
                        qk_st_show(nm, sizeof nm, key));
    if (!utf8_ok(key) || !utf8_ok(value))
        return qk_error(QK_EINVAL, "safetensors writer: metadata '%s' is not valid UTF-8",
                        qk_st_show(nm, sizeof nm, key));
    for (int64_t i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta_keys[i], key))
            return qk_error(QK_EINVAL, "safetensors writer: metadata key '%s' added twice",
                            qk_st_show(nm, sizeof nm, key));
    int64_t cap = w->cap_meta;
    if (grow((void **)&w->meta_keys, &cap, w->n_meta + 1, sizeof(char *)) != 0)
        return qk_error(QK_ENOMEM, "safetensors writer: out of memory");
    cap = w->cap_meta;
    if (grow((void **)&w->meta_values, &cap, w->n_meta + 1, sizeof(char *)) != 0)
        return qk_error(QK_ENOMEM, "safetensors writer: out of memory");
    w->cap_meta = cap;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return qk_error(QK_ENOMEM, "safetensors writer: out of memory");
    }
    w->meta_keys[w->n_meta] = k;
    w->meta_values[w->n_meta] = v;
    w->n_meta++;
    return 0;
}

int qk_st_writer_add_tensor(qk_st_writer *w, const char *name, int dtype, int n_dims, const int64_t *shape)
{
    assert(w && name && (shape || n_dims == 0));
    char nm[QK_ST_SHOW_CAP];
    qk_st_show(nm, sizeof nm, name);
    if (w->state != ST_W_ADDING)
        return qk_error(QK_EINVAL, "safetensors writer: tensor '%s' added after the header was written", nm);
    if (!utf8_ok(name) || !strcmp(name, "__metadata__"))
        return qk_error(QK_EINVAL, "safetensors writer: tensor name '%s' is not valid UTF-8 or is reserved", nm);
    if (dtype < 0 || dtype >= QK_ST_NDTYPES)
        return qk_error(QK_EINVAL, "safetensors writer: tensor '%s' has dtype id %d, not a qk_st_dtype", nm, dtype);
    if (n_dims < 0 || n_dims > QK_ST_MAX_DIMS)
        return qk_error(QK_ELIMIT, "safetensors writer: tensor '%s' has %d dimensions; the limit is %d", nm, n_dims,
                        QK_ST_MAX_DIMS);
    st_wtensor t = {.dtype = dtype, .n_dims = n_dims};
    uint64_t nelem = 1, end;
    for (int i = 0; i < n_dims; i++) {
        /* The reader takes dims below 2^53 only (JSON numbers are doubles). */
        if (shape[i] < 0 || shape[i] >= ((int64_t)1 << 53))
            return qk_error(QK_EINVAL, "safetensors writer: tensor '%s' shape[%d] = %" PRId64 " is out of range",
                            nm, i, shape[i]);
        t.shape[i] = shape[i];
        if (qk_mul_u64(nelem, (uint64_t)shape[i], &nelem) != 0)
            return qk_error(QK_ELIMIT, "safetensors writer: tensor '%s' element count overflows", nm);
    }
    if (qk_mul_u64(nelem, qk_st_dtype_size(dtype), &t.nbytes) != 0 || qk_add_u64(w->total, t.nbytes, &end) != 0 ||
        end >= ((uint64_t)1 << 53))
        return qk_error(QK_ELIMIT, "safetensors writer: tensor '%s' puts the data past 2^53 bytes", nm);
    if (grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors + 1, sizeof *w->tensors) != 0 ||
        !(t.name = strdup(name)))
        return qk_error(QK_ENOMEM, "safetensors writer: out of memory");
    w->tensors[w->n_tensors++] = t;
    w->total = end;
    return 0;
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int qk_st_writer_begin(qk_st_writer *w, qk_afile *f)
{
    assert(w && f);
    const char *path = qk_afile_path(f);
    char nm[QK_ST_SHOW_CAP];
    if (w->state != ST_W_ADDING)
        return qk_error(QK_EINVAL, "%s: safetensors header written twice", path);

    int rc = 0;
    st_buf b = {0};
    char **names = calloc((size_t)w->n_tensors + 1, sizeof *names);
    if (!names) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int64_t i = 0; i < w->n_tensors; i++)
        names[i] = w->tensors[i].name;
    qsort(names, (size_t)w->n_tensors, sizeof *names, cmp_cstr);
    for (int64_t i = 1; i < w->n_tensors; i++)
        if (!strcmp(names[i], names[i - 1])) {
            rc = qk_error(QK_EINVAL, "%s: tensor '%s' added twice", path, qk_st_show(nm, sizeof nm, names[i]));
            goto done;
        }

    buf_add(&b, "{", 1);
    if (w->n_meta) {
        buf_str(&b, "\"__metadata__\":{");
        for (int64_t i = 0; i < w->n_meta; i++) {
            if (i)
                buf_add(&b, ",", 1);
            buf_json_str(&b, w->meta_keys[i]);
            buf_add(&b, ":", 1);
            buf_json_str(&b, w->meta_values[i]);
        }
        buf_add(&b, "}", 1);
    }
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        const st_wtensor *t = &w->tensors[i];
        if (i || w->n_meta)
            buf_add(&b, ",", 1);
        buf_json_str(&b, t->name);
        buf_fmt(&b, ":{\"dtype\":\"%s\",\"shape\":[", qk_st_dtype_name(t->dtype));
        for (int d = 0; d < t->n_dims; d++)
            buf_fmt(&b, "%s%" PRId64, d ? "," : "", t->shape[d]);
        buf_fmt(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + t->nbytes);
        off += t->nbytes;
    }
    buf_add(&b, "}", 1);
    while (!b.oom && b.n % 8 != 0)
        buf_add(&b, " ", 1);
    if (b.oom) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory building the header", path);
        goto done;
    }
    if (b.n > QK_ST_MAX_HEADER) {
        rc = qk_error(QK_ELIMIT, "%s: safetensors header would be %zu bytes; the limit is %u", path, b.n,
                      QK_ST_MAX_HEADER);
        goto done;
    }
    uint8_t len[8];
    qk_wr_u64(len, (uint64_t)b.n);
    if ((rc = qk_afile_write(f, len, sizeof len)) < 0 || (rc = qk_afile_write(f, b.p, b.n)) < 0)
        goto done;
    w->f = f;
    w->state = ST_W_WRITING;
done:
    free(names);
    free(b.p);
    return rc;
}

/* The tensor whose data holds byte `off` of the data buffer (for messages). */
static const char *tensor_at_offset(const qk_st_writer *w, uint64_t off)
{
    uint64_t pos = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        if (off < pos + w->tensors[i].nbytes)
            return w->tensors[i].name;
        pos += w->tensors[i].nbytes;
    }
    return "?";
}

int qk_st_writer_write(qk_st_writer *w, const void *data, size_t n)
{
    assert(w && (data || n == 0));
    if (w->state != ST_W_WRITING)
        return qk_error(QK_EINVAL, "safetensors writer: data written %s", w->state == ST_W_ADDING
                                                                              ? "before qk_st_writer_begin()"
                                                                              : "after qk_st_writer_finish()");
    const char *path = qk_afile_path(w->f);
    if (n > w->total - w->written)
        return qk_error(QK_EINVAL, "%s: %zu data bytes written at offset %" PRIu64 " run past the %" PRIu64
                                   " bytes the header declares",
                        path, n, w->written, w->total);
    int rc = qk_afile_write(w->f, data, n);
    if (rc < 0)
        return rc;
    w->written += n;
    return 0;
}

int qk_st_writer_finish(qk_st_writer *w)
{
    assert(w);
    if (w->state != ST_W_WRITING)
        return qk_error(QK_EINVAL, "safetensors writer: finish %s", w->state == ST_W_ADDING
                                                                         ? "before qk_st_writer_begin()"
                                                                         : "called twice");
    if (w->written != w->total) {
        char nm[QK_ST_SHOW_CAP];
        return qk_error(QK_EINVAL, "%s: only %" PRIu64 " of %" PRIu64 " declared data bytes were written (tensor '%s' is incomplete)",
                        qk_afile_path(w->f), w->written, w->total,
                        qk_st_show(nm, sizeof nm, tensor_at_offset(w, w->written)));
    }
    w->state = ST_W_FINISHED;
    return 0;
}

/* ------------------------------------------------------------------- index */

int qk_st_write_index(const char *path, uint64_t total_size, const char *const *names,
                      const char *const *shard_of, int64_t n)
{
    assert(path && (n == 0 || (names && shard_of)) && n >= 0);
    int rc = 0;
    st_buf b = {0};
    char nm[QK_ST_SHOW_CAP], nm2[QK_ST_SHOW_CAP];
    const char **sorted = calloc((size_t)n + 1, sizeof *sorted);
    if (!sorted) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        const char *s = shard_of[i];
        if (!utf8_ok(names[i]) || !utf8_ok(s)) {
            rc = qk_error(QK_EINVAL, "%s: tensor '%s' or its shard name is not valid UTF-8", path,
                          qk_st_show(nm, sizeof nm, names[i]));
            goto done;
        }
        if (!*s || strchr(s, '/') || strchr(s, '\\') || strstr(s, "..")) {
            rc = qk_error(QK_EINVAL, "%s: shard name '%s' (for tensor '%s') is not a plain file name", path,
                          qk_st_show(nm, sizeof nm, s), qk_st_show(nm2, sizeof nm2, names[i]));
            goto done;
        }
        sorted[i] = names[i];
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_cstr);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(sorted[i], sorted[i - 1])) {
            rc = qk_error(QK_EINVAL, "%s: tensor '%s' listed twice", path, qk_st_show(nm, sizeof nm, sorted[i]));
            goto done;
        }

    /* Laid out like transformers' save_pretrained (indent 2). */
    buf_fmt(&b, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n  \"weight_map\": {", total_size);
    for (int64_t i = 0; i < n; i++) {
        buf_str(&b, i ? ",\n    " : "\n    ");
        buf_json_str(&b, names[i]);
        buf_str(&b, ": ");
        buf_json_str(&b, shard_of[i]);
    }
    buf_str(&b, n ? "\n  }\n}\n" : "}\n}\n");
    if (b.oom) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    rc = qk_write_file_atomic(path, b.p, b.n, NULL);
done:
    free(sorted);
    free(b.p);
    return rc;
}

/* Calibration files: llama.cpp's legacy imatrix .dat and quantkit's .qkc.
 *
 * llama.cpp legacy .dat (little-endian, no header, no checksum):
 *   i32 n_entries
 *   n_entries x { i32 name_len; char name[name_len]; i32 ncall; i32 nval; f32 values[nval] }
 *   optional trailer: i32 last_ncall; i32 dataset_len; char dataset[dataset_len]
 *   values[j] = mean over tokens of x_j^2, times ncall (readers divide by ncall).
 *
 * quantkit .qkc (little-endian; doubles are IEEE binary64 bit patterns):
 *   0   8  magic "QKCALIB1"
 *   8   4  u32 version (1)
 *   12  4  u32 flags (0; reserved)
 *   16  8  u64 model_hash     XXH3-64 over the model's tensor bytes (0 unknown)
 *   24  8  u64 text_hash      XXH3-64 of the calibration text (0 unknown)
 *   32  8  i64 n_ctx          window length (0 unknown)
 *   40  8  i64 n_chunks       windows accumulated
 *   48  8  i64 n_entries      >= 1
 *   56  4  u32 dataset_len    <= 4096, then dataset bytes (no NUL)
 *   n_entries x {
 *     u32 name_len (1..1024); name bytes (no NUL)
 *     u32 flags: 1 sum_x present, 2 absmax present, 4 Hessian stored here
 *     i64 n_in (1..2^24); i64 n_tokens (>= 1); i64 n_calls (>= 0)
 *     i64 hessian_of (-1 none; its own index iff flag 4; else an entry holding
 *         a Hessian of the same n_in)
 *     f64 sum_x2[n_in] (finite, >= 0); [f64 sum_x[n_in]]; [f64 absmax[n_in] (>= 0)]
 *     [flag 4: zlib stream of the upper triangle, row-major (row i: columns
 *      i..n_in-1), n_in*(n_in+1)/2 f64 in blocks of 8192 values (the last
 *      shorter), each block as 8 byte planes (byte 0 of every value, then
 *      byte 1, ...); then u64 byte length of that stream]
 *   }
 *   u64 XXH3-64 of every byte before it
 *
 * Readers map the file and treat every byte as hostile: lengths, counts and
 * sizes are checked against the bytes present (and the limits in calib.h)
 * before anything is allocated, values must be finite, sums of squares
 * non-negative, names unique, and the file must end exactly where its
 * structure says.
 */
#include "quantkit/calib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define QKC_MAGIC "QKCALIB1"
#define QKC_VERSION 1
#define QKC_HEADER_BYTES 60
enum { QKC_E_SUM_X = 1, QKC_E_ABSMAX = 2, QKC_E_HESSIAN = 4 };
/* deflate never compresses better than ~1032:1; a claim beyond this is a lie */
#define ZLIB_MAX_RATIO 1100u
/* Hessian values per byte-plane block in a .qkc */
#define HBLOCK 8192

static double bits_to_f64(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static uint64_t f64_to_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* ================================================================ writing */

typedef struct {
    qk_afile *f;
    qk_hasher *h; /* NULL: no checksum */
    int rc;
} writer;

static void put(writer *w, const void *p, size_t n)
{
    if (w->rc || !n)
        return;
    if (w->h)
        qk_hasher_update(w->h, p, n);
    w->rc = qk_afile_write(w->f, p, n);
}

static void put_u32(writer *w, uint32_t v)
{
    uint8_t b[4];
    qk_wr_u32(b, v);
    put(w, b, 4);
}

static void put_u64(writer *w, uint64_t v)
{
    uint8_t b[8];
    qk_wr_u64(b, v);
    put(w, b, 8);
}

static void put_f64s(writer *w, const double *v, int64_t n)
{
    uint8_t buf[8 * 1024];
    for (int64_t i = 0; i < n && !w->rc; i += 1024) {
        int64_t k = n - i < 1024 ? n - i : 1024;
        for (int64_t j = 0; j < k; j++)
            qk_wr_u64(buf + 8 * j, f64_to_bits(v[i + j]));
        put(w, buf, (size_t)k * 8);
    }
}

/* The value llama-imatrix stores: mean x^2 * ncall (computed in double). */
static double dat_value(const qk_calib_entry *e, int64_t j)
{
    if (e->n_tokens == e->n_calls)
        return e->sum_x2[j];
    return e->sum_x2[j] / (double)e->n_tokens * (double)e->n_calls;
}

/* An entry can be stored: name length, counts, Hessian size. */
static int check_entry(const qk_calib_entry *e, int64_t i, const char *path)
{
    size_t len = strlen(e->name);
    if (len < 1 || len > QK_CALIB_MAX_NAME)
        return qk_error(QK_ELIMIT, "%s: entry %lld: name of %zu bytes (need 1 to %d)", path, (long long)i, len,
                        QK_CALIB_MAX_NAME);
    if (e->n_in < 1 || e->n_in > QK_CALIB_MAX_N_IN || e->n_tokens < 1 || e->n_calls < 0)
        return qk_error(QK_EINVAL, "%s: entry '%s': %lld columns, %lld tokens, %lld calls cannot be stored", path,
                        e->name, (long long)e->n_in, (long long)e->n_tokens, (long long)e->n_calls);
    if (e->hessian_of == i && e->xtx && e->n_in > QK_CALIB_MAX_HESSIAN_N)
        return qk_error(QK_ELIMIT, "%s: entry '%s': Hessian of %lld columns beyond the limit %d", path, e->name,
                        (long long)e->n_in, QK_CALIB_MAX_HESSIAN_N);
    return 0;
}

static int check_common(const qk_calib *c, const char *path)
{
    if (c->n < 1 || c->n > QK_CALIB_MAX_ENTRIES)
        return qk_error(QK_EINVAL, "%s: %lld calibration entries (need 1 to %d)", path, (long long)c->n,
                        QK_CALIB_MAX_ENTRIES);
    if (c->dataset && strlen(c->dataset) > QK_CALIB_MAX_DATASET)
        return qk_error(QK_ELIMIT, "%s: dataset name longer than %d bytes", path, QK_CALIB_MAX_DATASET);
    for (int64_t i = 0; i < c->n; i++) {
        int rc = check_entry(&c->e[i], i, path);
        if (rc)
            return rc;
    }
    return 0;
}

int qk_calib_save_dat(const qk_calib *c, const char *path)
{
    int rc = check_common(c, path);
    if (rc)
        return rc;
    int64_t last_call = 0;
    for (int64_t i = 0; i < c->n; i++) {
        const qk_calib_entry *e = &c->e[i];
        if (e->n_calls < 1 || e->n_calls > INT32_MAX)
            return qk_error(QK_ELIMIT, "%s: entry '%s' has %lld calls; the .dat format needs 1 to %d", path,
                            e->name, (long long)e->n_calls, INT32_MAX);
        if (e->n_calls > last_call)
            last_call = e->n_calls;
        for (int64_t j = 0; j < e->n_in; j++) {
            float v = (float)dat_value(e, j);
            if (!isfinite(v) || v < 0)
                return qk_error(QK_ELIMIT, "%s: entry '%s' column %lld: value %g cannot be stored as a float", path,
                                e->name, (long long)j, dat_value(e, j));
        }
    }
    writer w = {0};
    if ((rc = qk_afile_open(&w.f, path)))
        return rc;
    uint8_t *bytes = malloc(1024 * 4);
    if (!bytes)
        w.rc = qk_error(QK_ENOMEM, "out of memory");
    put_u32(&w, (uint32_t)c->n);
    for (int64_t i = 0; i < c->n && !w.rc; i++) {
        const qk_calib_entry *e = &c->e[i];
        size_t len = strlen(e->name);
        put_u32(&w, (uint32_t)len);
        put(&w, e->name, len);
        put_u32(&w, (uint32_t)e->n_calls);
        put_u32(&w, (uint32_t)e->n_in);
        for (int64_t j0 = 0; j0 < e->n_in && !w.rc; j0 += 1024) {
            int64_t k = e->n_in - j0 < 1024 ? e->n_in - j0 : 1024;
            for (int64_t j = 0; j < k; j++) {
                float v = (float)dat_value(e, j0 + j);
                uint32_t u;
                memcpy(&u, &v, 4);
                qk_wr_u32(bytes + 4 * j, u);
            }
            put(&w, bytes, (size_t)k * 4);
        }
    }
    /* trailer as llama-imatrix writes it: its last ncall, then the dataset */
    size_t dl = c->dataset ? strlen(c->dataset) : 0;
    put_u32(&w, (uint32_t)last_call);
    put_u32(&w, (uint32_t)dl);
    put(&w, c->dataset, dl);
    free(bytes);
    if (w.rc) {
        qk_afile_abort(w.f);
        return w.rc;
    }
    return qk_afile_commit(w.f);
}

/* Stream the upper triangle of h [n][n] through deflate into w: blocks of
 * HBLOCK values, each as 8 byte planes (byte 0 of every value, then byte
 * 1, ...: the sign/exponent planes compress well, the mantissa planes do
 * not), Huffman-only (as small as level 1 on such data, ~2.5x faster);
 * then the compressed byte count as u64. */
static void put_hessian(writer *w, const double *h, int64_t n, const char *name)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, 15, 8, Z_HUFFMAN_ONLY) != Z_OK) {
        w->rc = qk_error(QK_ENOMEM, "zlib: cannot start compressing the Hessian of '%s'", name);
        return;
    }
    uint8_t *in = malloc(HBLOCK * 8), *out = malloc(1u << 16);
    uint64_t *bits = malloc(HBLOCK * sizeof *bits), zbytes = 0;
    if (!in || !out || !bits)
        w->rc = qk_error(QK_ENOMEM, "out of memory");
    int64_t r = 0, col = 0;
    while (!w->rc) {
        size_t k = 0;
        while (k < HBLOCK && r < n) {
            bits[k++] = f64_to_bits(h[r * n + col]);
            if (++col == n)
                col = ++r;
        }
        for (size_t b = 0; b < 8; b++)
            for (size_t j = 0; j < k; j++)
                in[b * k + j] = (uint8_t)(bits[j] >> (8 * b));
        const int flush = r < n ? Z_NO_FLUSH : Z_FINISH;
        z.next_in = in;
        z.avail_in = (uInt)(k * 8);
        do {
            z.next_out = out;
            z.avail_out = 1u << 16;
            if (deflate(&z, flush) == Z_STREAM_ERROR) {
                w->rc = qk_error(QK_EIO, "zlib: compression of the Hessian of '%s' failed", name);
                break;
            }
            size_t got = (1u << 16) - z.avail_out;
            put(w, out, got);
            zbytes += got;
        } while (z.avail_out == 0 && !w->rc);
        if (flush == Z_FINISH)
            break;
    }
    deflateEnd(&z);
    free(in);
    free(out);
    free(bits);
    put_u64(w, zbytes);
}

/* A .qkc written entry by entry (qk_calib_writer_*; qk_calib_save_qkc is
 * open, every entry, commit). */
struct qk_calib_writer {
    writer w;
    char *path;
    int64_t n, next; /* entries announced, written */
};

void qk_calib_writer_abort(qk_calib_writer *cw)
{
    if (!cw)
        return;
    qk_afile_abort(cw->w.f);
    qk_hasher_free(cw->w.h);
    free(cw->path);
    free(cw);
}

int qk_calib_writer_open(qk_calib_writer **out, const char *path, const qk_calib *hdr, int64_t n_entries)
{
    *out = NULL;
    if (n_entries < 1 || n_entries > QK_CALIB_MAX_ENTRIES)
        return qk_error(QK_EINVAL, "%s: %lld calibration entries (need 1 to %d)", path, (long long)n_entries,
                        QK_CALIB_MAX_ENTRIES);
    if (hdr->dataset && strlen(hdr->dataset) > QK_CALIB_MAX_DATASET)
        return qk_error(QK_ELIMIT, "%s: dataset name longer than %d bytes", path, QK_CALIB_MAX_DATASET);
    qk_calib_writer *cw = calloc(1, sizeof *cw);
    if (!cw || !(cw->path = strdup(path))) {
        free(cw);
        return qk_error(QK_ENOMEM, "out of memory");
    }
    cw->n = n_entries;
    int rc = qk_hasher_new(&cw->w.h);
    if (!rc)
        rc = qk_afile_open(&cw->w.f, path);
    if (rc) {
        qk_calib_writer_abort(cw);
        return rc;
    }
    writer *w = &cw->w;
    size_t dl = hdr->dataset ? strlen(hdr->dataset) : 0;
    put(w, QKC_MAGIC, 8);
    put_u32(w, QKC_VERSION);
    put_u32(w, 0);
    put_u64(w, hdr->model_hash);
    put_u64(w, hdr->text_hash);
    put_u64(w, (uint64_t)hdr->n_ctx);
    put_u64(w, (uint64_t)hdr->n_chunks);
    put_u64(w, (uint64_t)n_entries);
    put_u32(w, (uint32_t)dl);
    put(w, hdr->dataset, dl);
    if (w->rc) {
        rc = w->rc;
        qk_calib_writer_abort(cw);
        return rc;
    }
    *out = cw;
    return 0;
}

int qk_calib_writer_put(qk_calib_writer *cw, const qk_calib *c, int64_t i)
{
    writer *w = &cw->w;
    if (w->rc)
        return w->rc;
    if (i != cw->next || i >= cw->n || i >= c->n)
        return qk_error(QK_EINVAL, "%s: entry %lld written out of order (next is %lld of %lld)", cw->path,
                        (long long)i, (long long)cw->next, (long long)cw->n);
    const qk_calib_entry *e = &c->e[i];
    int rc = check_entry(e, i, cw->path);
    if (rc)
        return rc;
    const int own = e->hessian_of == i && e->xtx;
    int64_t hof = -1;
    if (own)
        hof = i;
    else if (e->hessian_of >= 0 && e->hessian_of < c->n && qk_calib_hessian(c, e))
        hof = e->hessian_of;
    size_t len = strlen(e->name);
    put_u32(w, (uint32_t)len);
    put(w, e->name, len);
    put_u32(w, (e->sum_x ? QKC_E_SUM_X : 0) | (e->absmax ? QKC_E_ABSMAX : 0) | (own ? QKC_E_HESSIAN : 0));
    put_u64(w, (uint64_t)e->n_in);
    put_u64(w, (uint64_t)e->n_tokens);
    put_u64(w, (uint64_t)e->n_calls);
    put_u64(w, (uint64_t)hof);
    put_f64s(w, e->sum_x2, e->n_in);
    if (e->sum_x)
        put_f64s(w, e->sum_x, e->n_in);
    if (e->absmax)
        put_f64s(w, e->absmax, e->n_in);
    if (own)
        put_hessian(w, e->xtx, e->n_in, e->name);
    cw->next++;
    return w->rc;
}

int qk_calib_writer_commit(qk_calib_writer *cw)
{
    writer *w = &cw->w;
    int rc = w->rc;
    if (!rc && cw->next != cw->n)
        rc = qk_error(QK_EINVAL, "%s: %lld of %lld entries written", cw->path, (long long)cw->next, (long long)cw->n);
    if (!rc) {
        uint64_t digest = qk_hasher_digest(w->h);
        qk_hasher_free(w->h);
        w->h = NULL;
        put_u64(w, digest);
        rc = w->rc;
    }
    if (rc) {
        qk_calib_writer_abort(cw);
        return rc;
    }
    rc = qk_afile_commit(w->f);
    w->f = NULL;
    qk_calib_writer_abort(cw); /* frees the rest */
    return rc;
}

int qk_calib_save_qkc(const qk_calib *c, const char *path)
{
    int rc = check_common(c, path);
    if (rc)
        return rc;
    for (int64_t i = 0; i < c->n; i++)
        if ((rc = check_entry(&c->e[i], i, path)))
            return rc;
    qk_calib_writer *cw = NULL;
    if ((rc = qk_calib_writer_open(&cw, path, c, c->n)))
        return rc;
    for (int64_t i = 0; i < c->n && !rc; i++)
        rc = qk_calib_writer_put(cw, c, i);
    if (rc) {
        qk_calib_writer_abort(cw);
        return rc;
    }
    return qk_calib_writer_commit(cw);
}

/* ================================================================ reading */

typedef struct {
    const uint8_t *p;
    uint64_t n, off; /* bytes available, read position */
    const char *path;
} cursor;

static int need(cursor *c, uint64_t k, const char *what)
{
    if (c->n - c->off < k)
        return qk_error(QK_EFORMAT, "%s: truncated: %s at byte %llu needs %llu bytes, %llu left", c->path, what,
                        (unsigned long long)c->off, (unsigned long long)k, (unsigned long long)(c->n - c->off));
    return 0;
}

static int get_u32(cursor *c, uint32_t *v, const char *what)
{
    int rc = need(c, 4, what);
    if (!rc) {
        *v = qk_rd_u32(c->p + c->off);
        c->off += 4;
    }
    return rc;
}

static int get_i32(cursor *c, int32_t *v, const char *what)
{
    uint32_t u;
    int rc = get_u32(c, &u, what);
    if (!rc)
        *v = (int32_t)u;
    return rc;
}

static int get_u64(cursor *c, uint64_t *v, const char *what)
{
    int rc = need(c, 8, what);
    if (!rc) {
        *v = qk_rd_u64(c->p + c->off);
        c->off += 8;
    }
    return rc;
}

static int get_i64(cursor *c, int64_t *v, const char *what)
{
    uint64_t u;
    int rc = get_u64(c, &u, what);
    if (!rc)
        *v = (int64_t)u;
    return rc;
}

/* A NUL-terminated copy of len bytes that must not contain NUL. */
static int get_str(cursor *c, uint64_t len, char **out, const char *what)
{
    int rc = need(c, len, what);
    if (rc)
        return rc;
    const uint8_t *s = c->p + c->off;
    if (memchr(s, 0, (size_t)len))
        return qk_error(QK_EFORMAT, "%s: %s at byte %llu contains a NUL byte", c->path, what,
                        (unsigned long long)c->off);
    if (!(*out = malloc((size_t)len + 1)))
        return qk_error(QK_ENOMEM, "out of memory");
    memcpy(*out, s, (size_t)len);
    (*out)[len] = 0;
    c->off += len;
    return 0;
}

/* n doubles into a new array; finite, and >= 0 when nonneg. */
static int get_f64s(cursor *c, int64_t n, double **out, int nonneg, const char *entry, const char *what)
{
    int rc = need(c, 8 * (uint64_t)n, what);
    if (rc)
        return rc;
    double *v = malloc((size_t)n * sizeof(double));
    if (!v)
        return qk_error(QK_ENOMEM, "out of memory");
    for (int64_t j = 0; j < n; j++) {
        const double x = bits_to_f64(qk_rd_u64(c->p + c->off + 8 * (uint64_t)j));
        if (!isfinite(x) || (nonneg && x < 0)) {
            free(v);
            return qk_error(isfinite(x) ? QK_EFORMAT : QK_ENONFINITE, "%s: entry '%s': %s[%lld] is %g%s", c->path,
                            entry, what, (long long)j, x, isfinite(x) ? " (must be >= 0)" : "");
        }
        v[j] = x;
    }
    c->off += 8 * (uint64_t)n;
    *out = v;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    const qk_calib_entry *x = *(const qk_calib_entry *const *)a, *y = *(const qk_calib_entry *const *)b;
    return strcmp(x->name, y->name);
}

static int check_unique(const qk_calib *s, const char *path)
{
    const qk_calib_entry **v = malloc((size_t)s->n * sizeof *v);
    if (!v)
        return qk_error(QK_ENOMEM, "out of memory");
    for (int64_t i = 0; i < s->n; i++)
        v[i] = &s->e[i];
    qsort(v, (size_t)s->n, sizeof *v, cmp_names);
    int rc = 0;
    for (int64_t i = 1; i < s->n && !rc; i++)
        if (!strcmp(v[i - 1]->name, v[i]->name))
            rc = qk_error(QK_EFORMAT, "%s: entry '%s' appears twice", path, v[i]->name);
    free(v);
    return rc;
}

/* The legacy llama.cpp .dat. */
static int parse_dat(cursor *c, qk_calib *s)
{
    int32_t n;
    int rc = get_i32(c, &n, "entry count");
    if (rc)
        return rc;
    /* an entry takes at least 17 bytes (name length, 1 name byte, ncall, nval, one value) */
    if (n < 1 || n > QK_CALIB_MAX_ENTRIES || (uint64_t)n * 17 > c->n - c->off)
        return qk_error(QK_EFORMAT, "%s: entry count %d is impossible for a %llu-byte file (not an imatrix?)",
                        c->path, n, (unsigned long long)c->n);
    if (!(s->e = calloc((size_t)n, sizeof *s->e)))
        return qk_error(QK_ENOMEM, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        qk_calib_entry *e = &s->e[i];
        s->n = i + 1;
        e->hessian_of = -1;
        int32_t len, ncall, nval;
        if ((rc = get_i32(c, &len, "name length")))
            return rc;
        if (len < 1 || len > QK_CALIB_MAX_NAME)
            return qk_error(QK_EFORMAT, "%s: entry %d: name length %d is outside [1, %d]", c->path, i, len,
                            QK_CALIB_MAX_NAME);
        if ((rc = get_str(c, (uint64_t)len, &e->name, "entry name")) || (rc = get_i32(c, &ncall, "ncall")) ||
            (rc = get_i32(c, &nval, "value count")))
            return rc;
        if (ncall < 1)
            return qk_error(QK_EFORMAT, "%s: entry '%s': ncall %d (must be at least 1)", c->path, e->name, ncall);
        if (nval < 1 || nval > QK_CALIB_MAX_N_IN)
            return qk_error(QK_EFORMAT, "%s: entry '%s': value count %d is outside [1, %d]", c->path, e->name, nval,
                            QK_CALIB_MAX_N_IN);
        if ((rc = need(c, 4 * (uint64_t)nval, "values")))
            return rc;
        if (!(e->sum_x2 = malloc((size_t)nval * sizeof(double))))
            return qk_error(QK_ENOMEM, "out of memory");
        for (int32_t j = 0; j < nval; j++) {
            uint32_t u = qk_rd_u32(c->p + c->off + 4 * (uint64_t)j);
            float v;
            memcpy(&v, &u, 4);
            if (!isfinite(v))
                return qk_error(QK_ENONFINITE, "%s: entry '%s': value %d is %s", c->path, e->name, j,
                                isnan(v) ? "NaN" : "Inf");
            if (v < 0)
                return qk_error(QK_EFORMAT, "%s: entry '%s': value %d is negative (%g); a mean square cannot be",
                                c->path, e->name, j, v);
            e->sum_x2[j] = v;
        }
        c->off += 4 * (uint64_t)nval;
        e->n_in = nval;
        e->n_tokens = ncall; /* as llama.cpp: counts = ncall, so value / ncall is the mean */
        e->n_calls = ncall;
    }
    if (c->off == c->n)
        return check_unique(s, c->path); /* older files end here */
    int32_t last, dl;
    if ((rc = get_i32(c, &last, "trailer (chunk count)")) || (rc = get_i32(c, &dl, "trailer (dataset length)")))
        return rc;
    if (last < 0)
        return qk_error(QK_EFORMAT, "%s: trailer chunk count %d is negative", c->path, last);
    if (dl < 0 || dl > QK_CALIB_MAX_DATASET)
        return qk_error(QK_EFORMAT, "%s: trailer dataset length %d is outside [0, %d]", c->path, dl,
                        QK_CALIB_MAX_DATASET);
    if (dl && (rc = get_str(c, (uint64_t)dl, &s->dataset, "dataset name")))
        return rc;
    if (c->off != c->n)
        return qk_error(QK_EFORMAT, "%s: %llu unexpected bytes after the trailer", c->path,
                        (unsigned long long)(c->n - c->off));
    s->n_chunks = last;
    return check_unique(s, c->path);
}

/* Inflate the upper triangle of an n x n Hessian from c into h (mirrored;
 * h NULL: validate only): blocks of HBLOCK values as 8 byte planes; the
 * stream must end exactly after the last value; then check the stored
 * stream length. */
static int get_hessian(cursor *c, double *h, int64_t n, const char *name)
{
    const uint64_t total = (uint64_t)n * (uint64_t)(n + 1) / 2;
    uint64_t done = 0, in_off = c->off;
    const uint64_t start = c->off;
    int64_t r = 0, col = 0;
    uint8_t *blk = malloc(HBLOCK * 8);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (!blk)
        return qk_error(QK_ENOMEM, "out of memory");
    if (inflateInit(&z) != Z_OK) {
        free(blk);
        return qk_error(QK_ENOMEM, "zlib: cannot start decompressing");
    }
    int rc = 0, ended = 0;
    size_t have = 0; /* bytes of the current block */
    uint8_t spare;
    while (!rc && !ended) {
        if (z.avail_in == 0 && in_off < c->n) {
            uint64_t k = c->n - in_off < (1u << 30) ? c->n - in_off : (1u << 30);
            z.next_in = (Bytef *)(uintptr_t)(c->p + in_off);
            z.avail_in = (uInt)k;
            in_off += k;
        }
        /* the block being filled; after the last value, one spare byte that must stay empty */
        const size_t kb = done < total ? 8 * (size_t)(total - done < HBLOCK ? total - done : HBLOCK) : 1;
        z.next_out = done < total ? blk + have : &spare;
        z.avail_out = (uInt)(kb - (done < total ? have : 0));
        const uInt in_before = z.avail_in, out_before = z.avail_out;
        const int zr = inflate(&z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
            rc = qk_error(QK_EFORMAT, "%s: entry '%s': the Hessian's zlib stream is corrupt (%s)", c->path, name,
                          z.msg ? z.msg : "error");
            break;
        }
        ended = zr == Z_STREAM_END;
        if (done == total) {
            if (z.avail_out != out_before)
                rc = qk_error(QK_EFORMAT, "%s: entry '%s': the Hessian inflates past its %llu values", c->path, name,
                              (unsigned long long)total);
        } else {
            have = kb - z.avail_out;
            if (have == kb) { /* a whole block: undo the byte planes, check and place the values */
                const size_t k = kb / 8;
                for (size_t j = 0; j < k && !rc; j++) {
                    uint64_t u = 0;
                    for (size_t b = 0; b < 8; b++)
                        u |= (uint64_t)blk[b * k + j] << (8 * b);
                    const double v = bits_to_f64(u);
                    if (!isfinite(v) || (r == col && v < 0))
                        rc = qk_error(isfinite(v) ? QK_EFORMAT : QK_ENONFINITE, "%s: entry '%s': Hessian [%lld, %lld] "
                                      "is %g", c->path, name, (long long)r, (long long)col, v);
                    if (h) {
                        h[r * n + col] = v;
                        h[col * n + r] = v;
                    }
                    if (++col == n)
                        col = ++r;
                }
                done += k;
                have = 0;
            }
        }
        if (!rc && !ended && zr == Z_BUF_ERROR && z.avail_in == in_before && z.avail_out == out_before)
            rc = qk_error(QK_EFORMAT, "%s: %s: the Hessian of '%s' ends early", c->path,
                          in_off >= c->n && z.avail_in == 0 ? "truncated" : "corrupt stream", name);
    }
    const uint64_t consumed = in_off - z.avail_in - start;
    inflateEnd(&z);
    free(blk);
    if (rc)
        return rc;
    if (done != total)
        return qk_error(QK_EFORMAT, "%s: entry '%s': the Hessian holds %llu values, expected %llu", c->path, name,
                        (unsigned long long)done, (unsigned long long)total);
    c->off += consumed;
    uint64_t zbytes;
    if ((rc = get_u64(c, &zbytes, "Hessian stream length")))
        return rc;
    if (zbytes != consumed)
        return qk_error(QK_EFORMAT, "%s: entry '%s': stored stream length %llu, the stream has %llu bytes", c->path,
                        name, (unsigned long long)zbytes, (unsigned long long)consumed);
    return 0;
}

/* XXH3-64 of p[0, n), releasing the pages read (a lazily opened file may be
 * far larger than memory). */
static int hash_released(const qk_mmap *m, uint64_t n, uint64_t *out)
{
    qk_hasher *h = NULL;
    int rc = qk_hasher_new(&h);
    if (rc)
        return rc;
    for (uint64_t off = 0; off < n; off += (64u << 20)) {
        uint64_t k = n - off < (64u << 20) ? n - off : (64u << 20);
        qk_hasher_update(h, m->data + off, (size_t)k);
        qk_mmap_release(m, off, k);
    }
    *out = qk_hasher_digest(h);
    qk_hasher_free(h);
    return 0;
}

/* m: the mapping, given when the Hessians are to stay in the file (lazy):
 * they are validated, their offsets kept, their pages released. */
static int parse_qkc(cursor *c, qk_calib *s, const qk_mmap *m)
{
    int rc0;
    if (c->n < QKC_HEADER_BYTES + 8)
        return qk_error(QK_EFORMAT, "%s: truncated: %llu bytes, a .qkc file has at least %d", c->path,
                        (unsigned long long)c->n, QKC_HEADER_BYTES + 8);
    uint32_t version = qk_rd_u32(c->p + 8);
    if (version != QKC_VERSION)
        return qk_error(QK_EUNSUPPORTED, "%s: .qkc version %u (this quantkit reads version %d)", c->path, version,
                        QKC_VERSION);
    uint64_t stored = qk_rd_u64(c->p + c->n - 8), computed = 0;
    if (!m)
        computed = qk_hash64(c->p, (size_t)(c->n - 8));
    else if ((rc0 = hash_released(m, c->n - 8, &computed)))
        return rc0;
    if (stored != computed)
        return qk_error(QK_ECHECKSUM, "%s: checksum mismatch (stored %016llx, computed %016llx): the file is "
                        "truncated or corrupted", c->path, (unsigned long long)stored, (unsigned long long)computed);
    c->n -= 8;
    c->off = 12;
    uint32_t flags, dl;
    int64_t n;
    int rc;
    if ((rc = get_u32(c, &flags, "flags")) || (rc = get_u64(c, &s->model_hash, "model hash")) ||
        (rc = get_u64(c, &s->text_hash, "text hash")) || (rc = get_i64(c, &s->n_ctx, "n_ctx")) ||
        (rc = get_i64(c, &s->n_chunks, "n_chunks")) || (rc = get_i64(c, &n, "entry count")) ||
        (rc = get_u32(c, &dl, "dataset length")))
        return rc;
    if (flags)
        return qk_error(QK_EUNSUPPORTED, "%s: unknown header flags 0x%x", c->path, flags);
    if (s->n_ctx < 0 || s->n_ctx > (1 << 30) || s->n_chunks < 0 || s->n_chunks > ((int64_t)1 << 40))
        return qk_error(QK_EFORMAT, "%s: n_ctx %lld / n_chunks %lld out of range", c->path, (long long)s->n_ctx,
                        (long long)s->n_chunks);
    /* an entry takes at least 49 bytes (name length, 1 name byte, flags, 4 i64, one sum) */
    if (n < 1 || n > QK_CALIB_MAX_ENTRIES || (uint64_t)n * 49 > c->n - c->off)
        return qk_error(QK_EFORMAT, "%s: entry count %lld is impossible for a %llu-byte file", c->path, (long long)n,
                        (unsigned long long)c->n);
    if (dl > QK_CALIB_MAX_DATASET)
        return qk_error(QK_EFORMAT, "%s: dataset length %u beyond %d", c->path, dl, QK_CALIB_MAX_DATASET);
    if (dl && (rc = get_str(c, dl, &s->dataset, "dataset name")))
        return rc;
    if (!(s->e = calloc((size_t)n, sizeof *s->e)))
        return qk_error(QK_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        qk_calib_entry *e = &s->e[i];
        s->n = i + 1;
        e->hessian_of = -1;
        uint32_t len, ef;
        if ((rc = get_u32(c, &len, "name length")))
            return rc;
        if (len < 1 || len > QK_CALIB_MAX_NAME)
            return qk_error(QK_EFORMAT, "%s: entry %lld: name length %u is outside [1, %d]", c->path, (long long)i, len,
                            QK_CALIB_MAX_NAME);
        if ((rc = get_str(c, len, &e->name, "entry name")) || (rc = get_u32(c, &ef, "entry flags")) ||
            (rc = get_i64(c, &e->n_in, "n_in")) || (rc = get_i64(c, &e->n_tokens, "n_tokens")) ||
            (rc = get_i64(c, &e->n_calls, "n_calls")) || (rc = get_i64(c, &e->hessian_of, "hessian_of")))
            return rc;
        if (ef & ~7u)
            return qk_error(QK_EFORMAT, "%s: entry '%s': unknown flags 0x%x", c->path, e->name, ef);
        if (e->n_in < 1 || e->n_in > QK_CALIB_MAX_N_IN || e->n_tokens < 1 || e->n_calls < 0)
            return qk_error(QK_EFORMAT, "%s: entry '%s': %lld columns, %lld tokens, %lld calls (need columns in "
                            "[1, %d], tokens >= 1, calls >= 0)", c->path, e->name, (long long)e->n_in,
                            (long long)e->n_tokens, (long long)e->n_calls, QK_CALIB_MAX_N_IN);
        const int own = (ef & QKC_E_HESSIAN) != 0;
        if (e->hessian_of < -1 || e->hessian_of >= n || (own != (e->hessian_of == i)))
            return qk_error(QK_EFORMAT, "%s: entry '%s': Hessian reference %lld is inconsistent with its flags",
                            c->path, e->name, (long long)e->hessian_of);
        if ((rc = get_f64s(c, e->n_in, &e->sum_x2, 1, e->name, "sum_x2")))
            return rc;
        if ((ef & QKC_E_SUM_X) && (rc = get_f64s(c, e->n_in, &e->sum_x, 0, e->name, "sum_x")))
            return rc;
        if ((ef & QKC_E_ABSMAX) && (rc = get_f64s(c, e->n_in, &e->absmax, 1, e->name, "absmax")))
            return rc;
        if (own) {
            if (e->n_in > QK_CALIB_MAX_HESSIAN_N)
                return qk_error(QK_EFORMAT, "%s: entry '%s': Hessian of %lld columns beyond the limit %d", c->path,
                                e->name, (long long)e->n_in, QK_CALIB_MAX_HESSIAN_N);
            uint64_t raw = (uint64_t)e->n_in * (uint64_t)(e->n_in + 1) / 2 * 8;
            if (raw / ZLIB_MAX_RATIO > c->n - c->off)
                return qk_error(QK_EFORMAT, "%s: truncated: the %lld x %lld Hessian of '%s' cannot fit in the %llu "
                                "bytes left", c->path, (long long)e->n_in, (long long)e->n_in, e->name,
                                (unsigned long long)(c->n - c->off));
            const uint64_t at = c->off;
            if (m) {
                if ((rc = get_hessian(c, NULL, e->n_in, e->name)))
                    return rc;
                e->xtx_at = at;
                qk_mmap_release(m, at, c->off - at);
                continue;
            }
            if (!(e->xtx = malloc((size_t)e->n_in * (size_t)e->n_in * sizeof(double)))) {
                char b[32];
                return qk_error(QK_ENOMEM, "out of memory for the Hessian of '%s' (%s)", e->name,
                                qk_fmt_bytes((uint64_t)e->n_in * (uint64_t)e->n_in * 8, b));
            }
            if ((rc = get_hessian(c, e->xtx, e->n_in, e->name)))
                return rc;
        }
    }
    if (c->off != c->n)
        return qk_error(QK_EFORMAT, "%s: %llu unexpected bytes after the last entry", c->path,
                        (unsigned long long)(c->n - c->off));
    for (int64_t i = 0; i < n; i++) {
        const qk_calib_entry *e = &s->e[i];
        int64_t k = e->hessian_of;
        if (k >= 0 && k != i && (s->e[k].hessian_of != k || s->e[k].n_in != e->n_in))
            return qk_error(QK_EFORMAT, "%s: entry '%s' refers to the Hessian of '%s', which holds none of its size",
                            c->path, e->name, s->e[k].name);
    }
    return check_unique(s, c->path);
}

static int load(qk_calib **out, const char *path, int lazy)
{
    *out = NULL;
    qk_mmap *m = NULL;
    qk_calib *s = NULL;
    int rc = qk_mmap_open(&m, path);
    if (rc)
        return rc;
    if ((rc = qk_calib_new(&s)))
        goto done;
    cursor c = {m->data, m->size, 0, path};
    if (m->size >= 8 && !memcmp(m->data, "QKCALIB", 7)) {
        if (m->data[7] != QKC_MAGIC[7]) {
            rc = qk_error(QK_EUNSUPPORTED, "%s: a quantkit calibration file of an unknown revision '%c'", path,
                          m->data[7]);
            goto done;
        }
        rc = parse_qkc(&c, s, lazy ? m : NULL);
    } else {
        rc = parse_dat(&c, s);
    }
done:
    if (!rc && lazy) {
        s->src = m; /* kept for qk_calib_read_hessian */
        m = NULL;
    }
    qk_mmap_close(m);
    if (rc) {
        qk_calib_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int qk_calib_load(qk_calib **out, const char *path) { return load(out, path, 0); }

int qk_calib_open(qk_calib **out, const char *path) { return load(out, path, 1); }

int64_t qk_calib_hessian_owner(const qk_calib *c, const qk_calib_entry *e)
{
    if (e->hessian_of < 0 || e->hessian_of >= c->n)
        return -1;
    const qk_calib_entry *h = &c->e[e->hessian_of];
    if (h->hessian_of != e->hessian_of || h->n_in != e->n_in || (!h->xtx && !(h->xtx_at && c->src)))
        return -1;
    return e->hessian_of;
}

int qk_calib_read_hessian(const qk_calib *c, int64_t i, double *out)
{
    if (i < 0 || i >= c->n || c->e[i].hessian_of != i || (!c->e[i].xtx && !(c->e[i].xtx_at && c->src)))
        return qk_error(QK_ENOTFOUND, "calibration entry %lld holds no Hessian", (long long)i);
    const qk_calib_entry *e = &c->e[i];
    const size_t nn = (size_t)e->n_in * (size_t)e->n_in;
    if (e->xtx) {
        memcpy(out, e->xtx, nn * sizeof(double));
        return 0;
    }
    /* validated when the file was opened; read again (the file may have
     * changed since: every check runs again) */
    const qk_mmap *m = c->src;
    cursor cur = {m->data, m->size >= 8 ? m->size - 8 : 0, e->xtx_at, m->path};
    if (e->xtx_at >= cur.n)
        return qk_error(QK_EFORMAT, "%s: Hessian of '%s' at byte %llu is past the end", m->path, e->name,
                        (unsigned long long)e->xtx_at);
    int rc = get_hessian(&cur, out, e->n_in, e->name);
    qk_mmap_release(m, e->xtx_at, cur.off - e->xtx_at);
    return rc;
}

/* quantkit common layer: errors, logging, progress, memory maps, atomic
 * output files, a thread pool, hashing and fp16/bf16 conversion.
 *
 * Conventions (see docs/STYLE): fallible functions return int, 0 on success
 * or a negative QK_E* code, and leave a one-line message readable with
 * qk_errmsg() in the calling thread. The library never prints to stdout and
 * never exits.
 */
#ifndef QUANTKIT_COMMON_H
#define QUANTKIT_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QK_VERSION "0.1.0"

/* ------------------------------------------------------------------ errors */

enum {
    QK_OK = 0,
    QK_EINVAL = -1,       /* bad argument or option value */
    QK_EIO = -2,          /* operating-system I/O error */
    QK_EFORMAT = -3,      /* malformed or inconsistent file contents */
    QK_ENOMEM = -4,       /* allocation failed */
    QK_EUNSUPPORTED = -5, /* valid but not supported (architecture, dtype) */
    QK_ELIMIT = -6,       /* a size, count or length beyond a documented limit */
    QK_ECHECKSUM = -7,    /* stored checksum does not match the data */
    QK_ENOTFOUND = -8,    /* a key, tensor or file that was asked for is absent */
    QK_ENONFINITE = -9,   /* NaN or Inf where a finite value is required */
};

/* Record a one-line message (printf format) for the calling thread and return
 * `code`, so callers can write `return qk_error(QK_EFORMAT, "...", ...);`. */
int qk_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "prefix: " (for adding a file name). */
int qk_error_prefix(int code, const char *prefix);
/* The last message recorded in this thread ("" when none). */
const char *qk_errmsg(void);
void qk_error_clear(void);
/* A short name for an error code ("format error", ...). */
const char *qk_strerror(int code);

/* ----------------------------------------------------------------- logging */

enum { QK_LOG_QUIET = 0, QK_LOG_ERROR = 1, QK_LOG_WARN = 2, QK_LOG_INFO = 3, QK_LOG_DEBUG = 4 };

void qk_log_set_level(int level);
int qk_log_get_level(void);
/* Writes "prefix: message\n" to stderr when level <= the current level. */
void qk_log_set_prefix(const char *prefix);
void qk_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- progress */

/* A progress line on stderr, redrawn at most ~5 times per second, with rate
 * and ETA. It is shown only when stderr is a terminal, or when forced
 * (qk_progress_force(1), the tools' --progress). All functions accept NULL. */
typedef struct qk_progress qk_progress;
void qk_progress_force(int on);
qk_progress *qk_progress_start(const char *label, uint64_t total, const char *unit);
void qk_progress_update(qk_progress *p, uint64_t done);
void qk_progress_add(qk_progress *p, uint64_t delta);
void qk_progress_finish(qk_progress *p);

/* ------------------------------------------------------- read-only mapping */

typedef struct qk_mmap {
    const uint8_t *data; /* NULL when size == 0 */
    uint64_t size;
    char *path;
    int fd;
} qk_mmap;

/* Map a whole file read-only. Errors name the path. */
int qk_mmap_open(qk_mmap **out, const char *path);
void qk_mmap_close(qk_mmap *m);
/* Tell the kernel that [off, off+len) will not be needed again soon, so its
 * pages leave this process's resident set (bounded memory when streaming). */
void qk_mmap_release(const qk_mmap *m, uint64_t off, uint64_t len);
/* Hint that [off, off+len) will be read soon. */
void qk_mmap_willneed(const qk_mmap *m, uint64_t off, uint64_t len);

/* Read a whole (small) file into a NUL-terminated heap buffer. Refuses files
 * larger than max_bytes with QK_ELIMIT. */
int qk_read_file(char **out, size_t *out_len, const char *path, size_t max_bytes);

int qk_file_exists(const char *path);
int qk_is_dir(const char *path);
/* Join dir and name with '/' into a new heap string (NULL on ENOMEM). */
char *qk_path_join(const char *dir, const char *name);

/* ------------------------------------------------------ atomic output file */

/* Output is written to a temporary file ".NAME.qk-tmp-XXXXXX" in the
 * destination directory and renamed over `path` by qk_afile_commit() after
 * fsync. qk_afile_abort() (or a failed commit) removes the temporary file, so
 * no partial output ever remains at `path`. Writes are buffered in large
 * aligned chunks. Every temporary file still open is also removed when the
 * process receives SIGINT/SIGTERM/SIGHUP (see qk_cleanup_install). */
typedef struct qk_afile qk_afile;
int qk_afile_open(qk_afile **out, const char *path);
int qk_afile_write(qk_afile *f, const void *buf, size_t n);
int qk_afile_write_zeros(qk_afile *f, size_t n);
/* Overwrite bytes already written at an absolute offset (e.g. patching a
 * reserved header field). [off, off+n) must lie within what was written. */
int qk_afile_pwrite(qk_afile *f, const void *buf, size_t n, uint64_t off);
uint64_t qk_afile_tell(const qk_afile *f);
const char *qk_afile_path(const qk_afile *f);
int qk_afile_commit(qk_afile *f); /* frees f */
/* Write a whole small file atomically: open, write data (and `tail`, when
 * non-NULL, e.g. a final newline), commit. */
int qk_write_file_atomic(const char *path, const void *data, size_t n, const char *tail);
void qk_afile_abort(qk_afile *f); /* frees f; accepts NULL */

/* An output directory built as a temporary sibling ".NAME.qk-tmp-XXXXXX" and
 * renamed into place by qk_adir_commit(). Refuses to replace a non-empty
 * existing directory unless `replace` is set (then the old one is removed
 * after the new one is in place). */
typedef struct qk_adir qk_adir;
int qk_adir_open(qk_adir **out, const char *path, int replace);
const char *qk_adir_tmp_path(const qk_adir *d); /* write files in here */
int qk_adir_commit(qk_adir *d);                 /* frees d */
void qk_adir_abort(qk_adir *d);                 /* frees d; accepts NULL */

/* Install SIGINT/SIGTERM/SIGHUP handlers that remove open temporary outputs
 * and then re-raise the signal. Tools call this once at start. */
void qk_cleanup_install(void);

/* ------------------------------------------------------------ thread pool */

typedef struct qk_pool qk_pool;
/* n_threads <= 0 means the number of online CPUs. */
int qk_pool_create(qk_pool **out, int n_threads);
void qk_pool_free(qk_pool *p);
int qk_pool_size(const qk_pool *p);
/* Run fn(ctx, i, thread_index) for i in [0, n) over the pool's threads and
 * the caller; returns when all are done. Work is handed out in contiguous
 * chunks of `chunk` indices (<= 0: automatic). p may be NULL (runs serially). */
typedef void (*qk_pool_fn)(void *ctx, int64_t i, int thread);
void qk_pool_run(qk_pool *p, int64_t n, int64_t chunk, qk_pool_fn fn, void *ctx);
int qk_cpu_count(void);

/* ----------------------------------------------------------------- hashing */

/* XXH3-64 of a buffer, and a streaming form. */
uint64_t qk_hash64(const void *data, size_t n);
/* For hash tables keyed by bytes from files (token texts, metadata keys,
 * names): XXH3-64 with a seed drawn at random once per process, so a hostile
 * file cannot be built whose keys pile into one probe chain (hash flooding:
 * quadratic time). Differs between processes: never store or compare it. */
uint64_t qk_hash64_table(const void *data, size_t n);
typedef struct qk_hasher qk_hasher;
int qk_hasher_new(qk_hasher **out);
void qk_hasher_update(qk_hasher *h, const void *data, size_t n);
uint64_t qk_hasher_digest(const qk_hasher *h);
void qk_hasher_reset(qk_hasher *h);
void qk_hasher_free(qk_hasher *h);
/* 16 lowercase hex digits + NUL into buf[17]. */
void qk_hash_hex(uint64_t h, char buf[17]);
/* XXH3-64 of a whole file, read with explicit I/O in large chunks. */
int qk_hash_file(uint64_t *out, const char *path);

/* ------------------------------------------------------------- fp16, bf16 */

/* IEEE binary16 and bfloat16. Narrowing rounds to nearest-even; overflow
 * gives +-Inf; NaN stays NaN (quiet, sign kept). */
float qk_fp16_to_f32(uint16_t h);
uint16_t qk_f32_to_fp16(float f);
float qk_bf16_to_f32(uint16_t h);
uint16_t qk_f32_to_bf16(float f);
void qk_fp16_to_f32_row(const uint16_t *src, float *dst, int64_t n);
void qk_f32_to_fp16_row(const float *src, uint16_t *dst, int64_t n);
void qk_bf16_to_f32_row(const uint16_t *src, float *dst, int64_t n);
void qk_f32_to_bf16_row(const float *src, uint16_t *dst, int64_t n);

/* ---------------------------------------------------- little-endian bytes */

static inline uint16_t qk_rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t qk_rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t qk_rd_u64(const uint8_t *p) { return (uint64_t)qk_rd_u32(p) | ((uint64_t)qk_rd_u32(p + 4) << 32); }
static inline void qk_wr_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void qk_wr_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void qk_wr_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Overflow-checked arithmetic: return 0 on success, -1 on overflow. */
static inline int qk_mul_u64(uint64_t a, uint64_t b, uint64_t *out) { return __builtin_mul_overflow(a, b, out) ? -1 : 0; }
static inline int qk_add_u64(uint64_t a, uint64_t b, uint64_t *out) { return __builtin_add_overflow(a, b, out) ? -1 : 0; }
static inline int qk_mul_i64(int64_t a, int64_t b, int64_t *out) { return __builtin_mul_overflow(a, b, out) ? -1 : 0; }
static inline uint64_t qk_pad_u64(uint64_t x, uint64_t align) { return (x + align - 1) / align * align; }

/* ------------------------------------------------------------- sizes/args */

/* Parse "4GB", "3.8GiB", "512M", "1000" (bytes) into bytes. */
int qk_parse_size(const char *s, uint64_t *out);
/* Parse "2%", "0.02" into a fraction (2% -> 0.02). */
int qk_parse_percent(const char *s, double *out);
/* Human-readable byte count into buf ("1.23 GiB"). */
const char *qk_fmt_bytes(uint64_t n, char buf[32]);

/* Monotonic clock in seconds. */
double qk_now(void);

/* ------------------------------------------------------------ JSON limits */

/* Bound JSON text before handing it to cJSON, which recurses once per
 * nesting level and allocates a 64-byte node per value: text nesting deeper
 * than max_depth, or holding more than max_values values (bounded by commas +
 * opening brackets + 1, counted outside strings), is refused with
 * QK_ELIMIT naming `path` and `what` ("tokenizer JSON"). Linear, no
 * allocation. */
int qk_json_check_limits(const char *path, const char *what, const char *s, size_t n, int max_depth,
                         int64_t max_values);

#ifdef __cplusplus
}
#endif
#endif

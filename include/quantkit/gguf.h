/* GGUF v3 reader and streaming writer.
 *
 * Byte layout (little-endian):
 *   "GGUF" u32 version(3) i64 n_tensors i64 n_kv
 *   n_kv      x { str key; i32 value_type; value }
 *                 array value = { i32 elem_type; u64 n; n x elem } (no nested arrays)
 *   n_tensors x { str name; u32 n_dims (1..4); i64 ne[n_dims]; i32 ggml_type; u64 offset }
 *   zero padding to ALIGNMENT, then the data section; tensor data at
 *   data_start + offset, each tensor padded to ALIGNMENT.
 *   str = u64 len + bytes (no NUL); bool = 1 byte.
 *   ALIGNMENT = general.alignment (u32, power of two) else 32.
 *
 * The reader maps the file, validates every count, length, offset and shape
 * before use (limits below), and copies metadata into owned structures;
 * tensor data stays in the mapping. A file with no tensors may end before
 * the padded data start (vocab-only files).
 */
#ifndef QUANTKIT_GGUF_H
#define QUANTKIT_GGUF_H

#include "quantkit/common.h"
#include "quantkit/ggml_types.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    QK_GGUF_U8 = 0, QK_GGUF_I8 = 1, QK_GGUF_U16 = 2, QK_GGUF_I16 = 3,
    QK_GGUF_U32 = 4, QK_GGUF_I32 = 5, QK_GGUF_F32 = 6, QK_GGUF_BOOL = 7,
    QK_GGUF_STRING = 8, QK_GGUF_ARRAY = 9, QK_GGUF_U64 = 10, QK_GGUF_I64 = 11,
    QK_GGUF_F64 = 12, QK_GGUF_NTYPES = 13
};

#define QK_GGUF_DEFAULT_ALIGNMENT 32
#define QK_GGUF_MAX_DIMS 4
/* Limits applied before allocating (a file beyond them is refused). */
#define QK_GGUF_MAX_STRING (1u << 24)        /* 16 MiB per string */
#define QK_GGUF_MAX_KV (1u << 20)
#define QK_GGUF_MAX_TENSORS (1u << 20)
#define QK_GGUF_MAX_ARRAY (1ull << 28)       /* elements per array */
#define QK_GGUF_MAX_NAME 64                  /* tensor name bytes, llama.cpp's GGML_MAX_NAME incl. NUL */

/* A string that may contain any bytes; `s` is also NUL-terminated. */
typedef struct qk_str {
    char *s;
    uint64_t len;
} qk_str;

/* One metadata value, owned. Scalars live in `v`; arrays of numbers/bools in
 * `arr` (native-endian, arr_n elements of size qk_gguf_type_size(arr_type));
 * arrays of strings in `strs`. */
typedef struct qk_gguf_kv {
    qk_str key;
    int type;     /* QK_GGUF_* */
    int arr_type; /* element type when type == QK_GGUF_ARRAY */
    uint64_t arr_n;
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        float f32; uint64_t u64; int64_t i64; double f64; uint8_t b;
        qk_str str;
    } v;
    void *arr;
    qk_str *strs;
} qk_gguf_kv;

typedef struct qk_gguf_tensor {
    char *name;
    int n_dims;
    int64_t ne[QK_GGUF_MAX_DIMS]; /* unused dims are 1 */
    int type;                     /* qk_type */
    uint64_t offset;              /* relative to the data section */
    uint64_t nbytes;
    const uint8_t *data;          /* into the mapping */
} qk_gguf_tensor;

typedef struct qk_gguf qk_gguf;

/* Open and validate a GGUF file. Errors name the path and the problem. */
int qk_gguf_open(qk_gguf **out, const char *path);
void qk_gguf_close(qk_gguf *g);

const char *qk_gguf_path(const qk_gguf *g);
uint32_t qk_gguf_version(const qk_gguf *g);
uint32_t qk_gguf_alignment(const qk_gguf *g);
uint64_t qk_gguf_data_offset(const qk_gguf *g);  /* absolute file offset of the data section */
uint64_t qk_gguf_file_size(const qk_gguf *g);
const qk_mmap *qk_gguf_map(const qk_gguf *g);

int64_t qk_gguf_n_kv(const qk_gguf *g);
const qk_gguf_kv *qk_gguf_kv_at(const qk_gguf *g, int64_t i);
const qk_gguf_kv *qk_gguf_find_kv(const qk_gguf *g, const char *key); /* NULL if absent */

/* Typed getters: QK_ENOTFOUND if absent, QK_EFORMAT if present with another
 * type (the message names key, expected and actual type). get_uint accepts
 * any unsigned/signed integer type with a non-negative value; get_float
 * accepts F32 or F64. */
int qk_gguf_get_u32(const qk_gguf *g, const char *key, uint32_t *out);
int qk_gguf_get_uint(const qk_gguf *g, const char *key, uint64_t *out);
int qk_gguf_get_f32(const qk_gguf *g, const char *key, float *out);
int qk_gguf_get_float(const qk_gguf *g, const char *key, double *out);
int qk_gguf_get_bool(const qk_gguf *g, const char *key, int *out);
int qk_gguf_get_str(const qk_gguf *g, const char *key, const char **out);

int64_t qk_gguf_n_tensors(const qk_gguf *g);
const qk_gguf_tensor *qk_gguf_tensor_at(const qk_gguf *g, int64_t i);
const qk_gguf_tensor *qk_gguf_find_tensor(const qk_gguf *g, const char *name);

const char *qk_gguf_type_name(int value_type); /* "u32", "string", ... */
size_t qk_gguf_type_size(int value_type);       /* 0 for string/array */

/* Deep copy / free of one KV (used to carry unknown keys to a new file). */
int qk_gguf_kv_copy(qk_gguf_kv *dst, const qk_gguf_kv *src);
void qk_gguf_kv_clear(qk_gguf_kv *kv);

/* ------------------------------------------------------------------ writer
 * Usage:
 *   qk_gguf_writer_new(&w, alignment);          // 0 = default 32
 *   qk_gguf_writer_set_*(w, key, ...);          // any order; setting a key again replaces it
 *   qk_gguf_writer_add_tensor(w, name, type, n_dims, ne);   // in file order
 *   qk_gguf_writer_begin(w, afile);             // writes header, KVs, tensor infos, padding
 *   for each tensor in order: qk_gguf_writer_write(w, data, n) one or more times,
 *                              then qk_gguf_writer_end_tensor(w)  // checks size, pads
 *   qk_gguf_writer_finish(w);                   // patches checksums; caller commits afile
 *   qk_gguf_writer_free(w);
 * With qk_gguf_writer_set_checksums(w, 1) (default on) the writer reserves
 * the key QK_GGUF_CHECKSUM_KEY (array of u64, one XXH3-64 per tensor in
 * tensor order, computed while streaming) and patches it in finish().
 * The whole model is never held in memory.
 */
#define QK_GGUF_CHECKSUM_KEY "quantkit.tensor_xxh3"

typedef struct qk_gguf_writer qk_gguf_writer;
int qk_gguf_writer_new(qk_gguf_writer **out, uint32_t alignment);
void qk_gguf_writer_free(qk_gguf_writer *w);
void qk_gguf_writer_set_checksums(qk_gguf_writer *w, int on);

int qk_gguf_writer_set_kv(qk_gguf_writer *w, const qk_gguf_kv *kv); /* deep copy */
int qk_gguf_writer_remove_kv(qk_gguf_writer *w, const char *key);
int qk_gguf_writer_set_u32(qk_gguf_writer *w, const char *key, uint32_t v);
int qk_gguf_writer_set_i32(qk_gguf_writer *w, const char *key, int32_t v);
int qk_gguf_writer_set_u64(qk_gguf_writer *w, const char *key, uint64_t v);
int qk_gguf_writer_set_f32(qk_gguf_writer *w, const char *key, float v);
int qk_gguf_writer_set_bool(qk_gguf_writer *w, const char *key, int v);
int qk_gguf_writer_set_str(qk_gguf_writer *w, const char *key, const char *v);
/* Array of numbers/bools: n elements of arr_type, native-endian. */
int qk_gguf_writer_set_arr(qk_gguf_writer *w, const char *key, int arr_type, const void *data, uint64_t n);
/* Array of strings (lens may be NULL for NUL-terminated strings). */
int qk_gguf_writer_set_arr_str(qk_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n);

int qk_gguf_writer_add_tensor(qk_gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne);
/* Before begin(): the bytes begin() will write before the data section
 * (header, KVs including the alignment and checksum keys it settles, tensor
 * infos, padding) for what has been set and added so far. A tensor info's
 * size does not depend on its type, so this holds across
 * qk_gguf_writer_set_tensor_type(). The file is then this plus, per
 * tensor, its bytes padded to the alignment. */
int qk_gguf_writer_header_bytes(const qk_gguf_writer *w, uint64_t *out);
/* Before begin(): change the type of the i-th tensor added (its shape must
 * fit the type's block). */
int qk_gguf_writer_set_tensor_type(qk_gguf_writer *w, int64_t i, int type);
int qk_gguf_writer_begin(qk_gguf_writer *w, qk_afile *f);
int qk_gguf_writer_write(qk_gguf_writer *w, const void *data, size_t n);
int qk_gguf_writer_end_tensor(qk_gguf_writer *w);
int qk_gguf_writer_finish(qk_gguf_writer *w);
/* Overwrite the value of a u64 key (set before begin) once its final value is
 * known, e.g. a checksum of the source computed while streaming. Valid after
 * begin() and until the file is committed. */
int qk_gguf_writer_patch_u64(qk_gguf_writer *w, const char *key, uint64_t v);

/* Verify the stored per-tensor checksums of a quantkit-written file.
 * Returns QK_ENOTFOUND if the file carries none, QK_ECHECKSUM naming the
 * first mismatching tensor. */
int qk_gguf_verify_checksums(const qk_gguf *g);

#ifdef __cplusplus
}
#endif
#endif

/* safetensors reader and streaming writer, and sharded checkpoints.
 *
 * Byte layout: u64 LE header_len; header_len bytes of UTF-8 JSON; data.
 * JSON: {"__metadata__": {str: str}?, "<name>": {"dtype": "F32", "shape": [..],
 *        "data_offsets": [begin, end]}, ...}, offsets relative to the data start.
 * The reader validates: header length (<= 100 MB and inside the file), UTF-8,
 * JSON, known dtypes, shapes (non-negative, product without overflow),
 * end - begin == product(shape) * dtype size, offsets inside the file, no
 * overlapping tensors. Tensor data stays in the mapping.
 *
 * Sharded checkpoints: model.safetensors.index.json =
 *   {"metadata": {"total_size": N}, "weight_map": {"<tensor>": "<shard file>"}}
 */
#ifndef QUANTKIT_SAFETENSORS_H
#define QUANTKIT_SAFETENSORS_H

#include "quantkit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QK_ST_MAX_HEADER (100u * 1000u * 1000u)
#define QK_ST_MAX_DIMS 8

/* safetensors dtypes; qk_st_dtype_type() maps to a qk_type where one exists. */
typedef enum qk_st_dtype {
    QK_ST_BOOL, QK_ST_U8, QK_ST_I8, QK_ST_I16, QK_ST_U16, QK_ST_F16, QK_ST_BF16,
    QK_ST_I32, QK_ST_U32, QK_ST_F32, QK_ST_F64, QK_ST_I64, QK_ST_U64,
    QK_ST_F8_E4M3, QK_ST_F8_E5M2, QK_ST_NDTYPES
} qk_st_dtype;

const char *qk_st_dtype_name(int dtype);  /* "F32" */
int qk_st_dtype_from_name(const char *s); /* -1 if unknown */
size_t qk_st_dtype_size(int dtype);
int qk_st_dtype_type(int dtype);          /* qk_type id, or -1 (BOOL, U8, U16, U32, U64, F8) */
int qk_st_dtype_from_type(int qk_type);   /* -1 if none */

typedef struct qk_st_tensor {
    char *name;
    int dtype;                       /* qk_st_dtype */
    int n_dims;                      /* 0 for scalars */
    int64_t shape[QK_ST_MAX_DIMS];   /* PyTorch order: shape[0] outermost */
    uint64_t offset;                 /* absolute file offset */
    uint64_t nbytes;
    const uint8_t *data;             /* into the mapping */
} qk_st_tensor;

typedef struct qk_safetensors qk_safetensors;

int qk_safetensors_open(qk_safetensors **out, const char *path);
void qk_safetensors_close(qk_safetensors *st);
const char *qk_safetensors_path(const qk_safetensors *st);
const qk_mmap *qk_safetensors_map(const qk_safetensors *st);
int64_t qk_safetensors_n_tensors(const qk_safetensors *st);
/* Tensors in data-offset order. */
const qk_st_tensor *qk_safetensors_tensor_at(const qk_safetensors *st, int64_t i);
const qk_st_tensor *qk_safetensors_find(const qk_safetensors *st, const char *name);
/* __metadata__ entries (string values only, as the format says). */
int64_t qk_safetensors_n_meta(const qk_safetensors *st);
const char *qk_safetensors_meta_key(const qk_safetensors *st, int64_t i);
const char *qk_safetensors_meta_value(const qk_safetensors *st, int64_t i);
const char *qk_safetensors_find_meta(const qk_safetensors *st, const char *key);

/* A checkpoint that is one file or several shards behind an index. `path` is
 * a .safetensors file, a model.safetensors.index.json, or a directory holding
 * either (index preferred). Every tensor named in the index must exist in its
 * shard, and no tensor name may appear twice across shards. */
typedef struct qk_st_set qk_st_set;
int qk_st_set_open(qk_st_set **out, const char *path);
void qk_st_set_close(qk_st_set *s);
int64_t qk_st_set_n_tensors(const qk_st_set *s);
const qk_st_tensor *qk_st_set_tensor_at(const qk_st_set *s, int64_t i);
const qk_st_tensor *qk_st_set_find(const qk_st_set *s, const char *name);
/* The shard holding tensor i (for releasing its pages after use). */
const qk_safetensors *qk_st_set_shard_of(const qk_st_set *s, int64_t i);
int64_t qk_st_set_n_shards(const qk_st_set *s);
const qk_safetensors *qk_st_set_shard(const qk_st_set *s, int64_t i);

/* ------------------------------------------------------------------ writer
 * qk_st_writer_new(&w); qk_st_writer_add_meta(...); qk_st_writer_add_tensor(...)
 * for each tensor in file order; qk_st_writer_begin(w, afile) writes the
 * header (padded with spaces to a multiple of 8 bytes); then
 * qk_st_writer_write(w, data, n) streams the data of each tensor in order;
 * qk_st_writer_finish(w) checks every byte was written. */
typedef struct qk_st_writer qk_st_writer;
int qk_st_writer_new(qk_st_writer **out);
void qk_st_writer_free(qk_st_writer *w);
int qk_st_writer_add_meta(qk_st_writer *w, const char *key, const char *value);
int qk_st_writer_add_tensor(qk_st_writer *w, const char *name, int dtype, int n_dims, const int64_t *shape);
int qk_st_writer_begin(qk_st_writer *w, qk_afile *f);
int qk_st_writer_write(qk_st_writer *w, const void *data, size_t n);
int qk_st_writer_finish(qk_st_writer *w);

/* Write model.safetensors.index.json for shards: names[i] lives in shard_of[i]. */
int qk_st_write_index(const char *path, uint64_t total_size, const char *const *names,
                      const char *const *shard_of, int64_t n);

#ifdef __cplusplus
}
#endif
#endif

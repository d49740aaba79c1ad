/* Tests of formats/safetensors.c, st_set.c, st_writer.c: dtype table,
 * writer -> reader round trips, the real stories260K files, sharded sets,
 * and one test per rejection branch of the reader and the index. */
#include "qk_test.h"

#include <math.h>
#include <sys/stat.h>

#include "quantkit/ggml_types.h"
#include "quantkit/safetensors.h"

/* ----------------------------------------------------------------- helpers */

/* u64 header_len (as given), header bytes, data_len pattern bytes. */
static void write_raw_len(const char *path, const char *hdr, size_t hdr_n, uint64_t header_len, size_t data_len)
{
    size_t n = 8 + hdr_n + data_len;
    uint8_t *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    qk_wr_u64(b, header_len);
    memcpy(b + 8, hdr, hdr_n);
    for (size_t i = 0; i < data_len; i++)
        b[8 + hdr_n + i] = (uint8_t)(i * 13 + 1);
    qk_test_write_file(path, b, n);
    free(b);
}

/* A file in the temp directory holding `json` as its header. */
static const char *raw_file(const char *name, const char *json, size_t data_len)
{
    const char *path = qk_test_tmp(name);
    write_raw_len(path, json, strlen(json), strlen(json), data_len);
    return path;
}

static void expect_reject(const char *path, int code, const char *needle)
{
    qk_safetensors *st = (qk_safetensors *)&st;
    qk_error_clear();
    int rc = qk_safetensors_open(&st, path);
    ck_assert_msg(rc < 0, "%s: accepted (expected an error containing '%s')", path, needle ? needle : "");
    ck_assert_ptr_null(st);
    if (code)
        ck_assert_msg(rc == code, "%s: code %d, expected %d (%s)", path, rc, code, qk_errmsg());
    ck_assert_msg(strstr(qk_errmsg(), path) != NULL, "message '%s' does not name %s", qk_errmsg(), path);
    ck_assert_msg(!strchr(qk_errmsg(), '\n'), "message has a newline: %s", qk_errmsg());
    if (needle)
        ck_assert_msg(strstr(qk_errmsg(), needle) != NULL, "message '%s' lacks '%s'", qk_errmsg(), needle);
}

static void expect_set_reject(const char *path, const char *names_file, int code, const char *needle)
{
    qk_st_set *s = (qk_st_set *)&s;
    qk_error_clear();
    int rc = qk_st_set_open(&s, path);
    ck_assert_msg(rc < 0, "%s: accepted (expected an error containing '%s')", path, needle ? needle : "");
    ck_assert_ptr_null(s);
    if (code)
        ck_assert_msg(rc == code, "%s: code %d, expected %d (%s)", path, rc, code, qk_errmsg());
    ck_assert_msg(strstr(qk_errmsg(), names_file) != NULL, "message '%s' does not name %s", qk_errmsg(),
                  names_file);
    if (needle)
        ck_assert_msg(strstr(qk_errmsg(), needle) != NULL, "message '%s' lacks '%s'", qk_errmsg(), needle);
}

static uint8_t pattern_byte(int64_t tensor, uint64_t i) { return (uint8_t)(tensor * 31 + (int64_t)i * 7 + 3); }

typedef struct spec {
    const char *name;
    int dtype;
    int n_dims;
    int64_t shape[QK_ST_MAX_DIMS];
} spec;

static uint64_t spec_bytes(const spec *t)
{
    uint64_t n = qk_st_dtype_size(t->dtype);
    for (int d = 0; d < t->n_dims; d++)
        n *= (uint64_t)t->shape[d];
    return n;
}

/* Writes tensors (data: pattern_byte(global id base + i, ...)) with the
 * writer, streaming each tensor in two pieces; commits. */
static void write_st(const char *path, const spec *ts, int n, int id_base, const char *const *meta, int n_meta)
{
    qk_st_writer *w;
    qk_afile *f;
    ck_assert_int_eq(qk_st_writer_new(&w), 0);
    for (int i = 0; i < n_meta; i++)
        ck_assert_int_eq(qk_st_writer_add_meta(w, meta[2 * i], meta[2 * i + 1]), 0);
    for (int i = 0; i < n; i++)
        ck_assert_msg(qk_st_writer_add_tensor(w, ts[i].name, ts[i].dtype, ts[i].n_dims, ts[i].shape) == 0, "%s",
                      qk_errmsg());
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_msg(qk_st_writer_begin(w, f) == 0, "%s", qk_errmsg());
    for (int i = 0; i < n; i++) {
        uint64_t nb = spec_bytes(&ts[i]);
        uint8_t *d = malloc(nb + 1);
        ck_assert_ptr_nonnull(d);
        for (uint64_t k = 0; k < nb; k++)
            d[k] = pattern_byte(id_base + i, k);
        size_t half = (size_t)nb / 2;
        ck_assert_int_eq(qk_st_writer_write(w, d, half), 0);
        ck_assert_int_eq(qk_st_writer_write(w, d + half, (size_t)nb - half), 0);
        free(d);
    }
    ck_assert_msg(qk_st_writer_finish(w) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_st_writer_free(w);
}

static void check_data(const qk_st_tensor *t, int64_t id)
{
    for (uint64_t k = 0; k < t->nbytes; k++)
        ck_assert_msg(t->data[k] == pattern_byte(id, k), "tensor %s byte %llu", t->name, (unsigned long long)k);
}

/* ------------------------------------------------------------ dtype table */

START_TEST(test_safetensors_dtype_table)
{
    static const struct {
        const char *name;
        size_t size;
        int type;
    } want[QK_ST_NDTYPES] = {
        {"BOOL", 1, -1}, {"U8", 1, -1}, {"I8", 1, QK_TYPE_I8}, {"I16", 2, QK_TYPE_I16}, {"U16", 2, -1},
        {"F16", 2, QK_TYPE_F16}, {"BF16", 2, QK_TYPE_BF16}, {"I32", 4, QK_TYPE_I32}, {"U32", 4, -1},
        {"F32", 4, QK_TYPE_F32}, {"F64", 8, QK_TYPE_F64}, {"I64", 8, QK_TYPE_I64}, {"U64", 8, -1},
        {"F8_E4M3", 1, -1}, {"F8_E5M2", 1, -1},
    };
    for (int i = 0; i < QK_ST_NDTYPES; i++) {
        ck_assert_str_eq(qk_st_dtype_name(i), want[i].name);
        ck_assert_int_eq(qk_st_dtype_from_name(want[i].name), i);
        ck_assert_uint_eq(qk_st_dtype_size(i), want[i].size);
        ck_assert_int_eq(qk_st_dtype_type(i), want[i].type);
        if (want[i].type >= 0)
            ck_assert_int_eq(qk_st_dtype_from_type(want[i].type), i);
    }
    ck_assert_int_eq(qk_st_dtype_from_name("f32"), -1);
    ck_assert_int_eq(qk_st_dtype_from_name("C64"), -1);
    ck_assert_int_eq(qk_st_dtype_from_type(QK_TYPE_Q4_0), -1);
    ck_assert_int_eq(qk_st_dtype_type(QK_ST_NDTYPES), -1);
    ck_assert_str_eq(qk_st_dtype_name(-1), "?");
}
END_TEST

/* ------------------------------------------------------------- round trip */

static const spec k_round[] = {
    {"a.f32", QK_ST_F32, 2, {2, 3}},
    {"b.f16", QK_ST_F16, 1, {4}},
    {"c.bf16", QK_ST_BF16, 2, {2, 2}},
    {"d.i8", QK_ST_I8, 1, {5}},
    {"e.i64", QK_ST_I64, 1, {1}},
    {"scalar", QK_ST_U8, 0, {0}},
    {"empty", QK_ST_F32, 2, {0, 4}},
    {"f.f64", QK_ST_F64, 3, {1, 1, 1}},
    {"g.bool", QK_ST_BOOL, 1, {3}},
    {"h.\xc3\xbcn\xc3\xaf", QK_ST_F8_E4M3, 1, {2}},
    {"q\"b\\s\n", QK_ST_I32, 1, {1}},
    {"i.u64", QK_ST_U64, 8, {1, 1, 1, 1, 1, 1, 1, 2}},
};
#define N_ROUND ((int)(sizeof k_round / sizeof k_round[0]))

START_TEST(test_safetensors_round_trip)
{
    const char *path = qk_test_tmp("round.safetensors");
    const char *meta[] = {"format", "pt", "note", "two\nlines \"quoted\" \\ \xe2\x82\xac"};
    write_st(path, k_round, N_ROUND, 0, meta, 2);

    qk_safetensors *st;
    ck_assert_msg(qk_safetensors_open(&st, path) == 0, "%s", qk_errmsg());
    ck_assert_str_eq(qk_safetensors_path(st), path);
    ck_assert_int_eq(qk_safetensors_n_tensors(st), N_ROUND);
    uint64_t data_start = 8 + qk_rd_u64(qk_safetensors_map(st)->data);
    ck_assert_uint_eq(data_start % 8, 0);
    uint64_t off = data_start;
    for (int i = 0; i < N_ROUND; i++) {
        /* Writer order is data order, and the reader keeps data order. */
        const qk_st_tensor *t = qk_safetensors_tensor_at(st, i);
        ck_assert_ptr_nonnull(t);
        ck_assert_str_eq(t->name, k_round[i].name);
        ck_assert_ptr_eq(qk_safetensors_find(st, k_round[i].name), t);
        ck_assert_int_eq(t->dtype, k_round[i].dtype);
        ck_assert_int_eq(t->n_dims, k_round[i].n_dims);
        for (int d = 0; d < t->n_dims; d++)
            ck_assert_int_eq(t->shape[d], k_round[i].shape[d]);
        ck_assert_uint_eq(t->offset, off);
        ck_assert_uint_eq(t->nbytes, spec_bytes(&k_round[i]));
        ck_assert_ptr_eq(t->data, qk_safetensors_map(st)->data + t->offset);
        check_data(t, i);
        off += t->nbytes;
    }
    ck_assert_uint_eq(off, qk_safetensors_map(st)->size);
    ck_assert_ptr_null(qk_safetensors_tensor_at(st, N_ROUND));
    ck_assert_ptr_null(qk_safetensors_find(st, "nope"));
    ck_assert_ptr_null(qk_safetensors_find(st, "__metadata__"));

    ck_assert_int_eq(qk_safetensors_n_meta(st), 2);
    ck_assert_str_eq(qk_safetensors_meta_key(st, 0), "format");
    ck_assert_str_eq(qk_safetensors_meta_value(st, 0), "pt");
    ck_assert_str_eq(qk_safetensors_meta_key(st, 1), "note");
    ck_assert_str_eq(qk_safetensors_find_meta(st, "note"), meta[3]);
    ck_assert_ptr_null(qk_safetensors_find_meta(st, "missing"));
    qk_safetensors_close(st);
}
END_TEST

/* The header bytes are deterministic: compact JSON, metadata first,
 * insertion order, spaces to a multiple of 8. */
START_TEST(test_safetensors_writer_header_bytes)
{
    const char *path = qk_test_tmp("golden.safetensors");
    const spec ts[] = {{"x", QK_ST_F16, 1, {2}}, {"s", QK_ST_F32, 0, {0}}};
    const char *meta[] = {"k", "v"};
    write_st(path, ts, 2, 0, meta, 1);
    size_t n;
    uint8_t *b = qk_test_read_file(path, &n);
    const char *want = "{\"__metadata__\":{\"k\":\"v\"},\"x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                       "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}";
    size_t wl = strlen(want), hl = (wl + 7) / 8 * 8;
    ck_assert_uint_eq(qk_rd_u64(b), hl);
    ck_assert_uint_eq(n, 8 + hl + 8);
    ck_assert(memcmp(b + 8, want, wl) == 0);
    for (size_t i = wl; i < hl; i++)
        ck_assert_int_eq(b[8 + i], ' ');
    free(b);

    /* No tensors at all: "{}" padded to 8. */
    path = qk_test_tmp("empty.safetensors");
    write_st(path, NULL, 0, 0, NULL, 0);
    b = qk_test_read_file(path, &n);
    ck_assert_uint_eq(n, 16);
    ck_assert(memcmp(b + 8, "{}      ", 8) == 0);
    free(b);
    qk_safetensors *st;
    ck_assert_int_eq(qk_safetensors_open(&st, path), 0);
    ck_assert_int_eq(qk_safetensors_n_tensors(st), 0);
    ck_assert_int_eq(qk_safetensors_n_meta(st), 0);
    ck_assert_ptr_null(qk_safetensors_find(st, "x"));
    qk_safetensors_close(st);
}
END_TEST

START_TEST(test_safetensors_writer_rejects_misuse)
{
    qk_st_writer *w;
    qk_afile *f;
    int64_t shape[QK_ST_MAX_DIMS + 1] = {2, 2, 1, 1, 1, 1, 1, 1, 1};
    const char *path = qk_test_tmp("misuse.safetensors");

    ck_assert_int_eq(qk_st_writer_new(&w), 0);
    ck_assert_int_eq(qk_st_writer_add_tensor(w, "a", QK_ST_NDTYPES, 1, shape), QK_EINVAL);
    ck_assert_int_eq(qk_st_writer_add_tensor(w, "a", -1, 1, shape), QK_EINVAL);
    ck_assert_int_eq(qk_st_writer_add_tensor(w, "a", QK_ST_F32, QK_ST_MAX_DIMS + 1, shape), QK_ELIMIT);
    int64_t neg[1] = {-1}, big[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
    ck_assert_int_eq(qk_st_writer_add_tensor(w, "a", QK_ST_F32, 1, neg), QK_EINVAL);
    ck_assert_int_eq(qk_st_writer_add_tensor(w, "a", QK_ST_F32, 2, big), QK_ELIMIT);
    ck_assert_int_eq(qk_st_writer_add_tensor(w, "__metadata__", QK_ST_F32, 1, shape), QK_EINVAL);
    ck_assert_int_eq(qk_st_writer_add_tensor(w, "bad\xff", QK_ST_F32, 1, shape), QK_EINVAL);
    ck_assert_int_eq(qk_st_writer_add_meta(w, "k", "v"), 0);
    ck_assert_int_eq(qk_st_writer_add_meta(w, "k", "w"), QK_EINVAL);
    ck_assert_int_eq(qk_st_writer_add_meta(w, "k2", "\xc0\x80"), QK_EINVAL);
    ck_assert_int_eq(qk_st_writer_write(w, "x", 1), QK_EINVAL); /* before begin */
    ck_assert_int_eq(qk_st_writer_add_tensor(w, "a", QK_ST_F32, 2, shape), 0); /* 16 bytes */
    ck_assert_int_eq(qk_st_writer_add_tensor(w, "b", QK_ST_U8, 1, shape), 0);  /* 2 bytes */

    /* Duplicate names are found when the header is built. */
    qk_st_writer *dup;
    ck_assert_int_eq(qk_st_writer_new(&dup), 0);
    ck_assert_int_eq(qk_st_writer_add_tensor(dup, "a", QK_ST_F32, 1, shape), 0);
    ck_assert_int_eq(qk_st_writer_add_tensor(dup, "a", QK_ST_F32, 1, shape), 0);
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_int_eq(qk_st_writer_begin(dup, f), QK_EINVAL);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "'a' added twice"));
    qk_afile_abort(f);
    qk_st_writer_free(dup);

    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_int_eq(qk_st_writer_begin(w, f), 0);
    ck_assert_int_eq(qk_st_writer_begin(w, f), QK_EINVAL);
    ck_assert_int_eq(qk_st_writer_add_tensor(w, "c", QK_ST_U8, 1, shape), QK_EINVAL);
    ck_assert_int_eq(qk_st_writer_add_meta(w, "k3", "v"), QK_EINVAL);
    uint8_t data[32] = {0};
    ck_assert_int_eq(qk_st_writer_write(w, data, 10), 0);
    /* Short: finish names the incomplete tensor. */
    ck_assert_int_eq(qk_st_writer_finish(w), QK_EINVAL);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "only 10 of 18"));
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "'a'"));
    /* Long: 9 more bytes than the 8 left is refused and nothing is written. */
    ck_assert_int_eq(qk_st_writer_write(w, data, 9), QK_EINVAL);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "run past"));
    ck_assert_int_eq(qk_st_writer_write(w, data, 8), 0);
    ck_assert_int_eq(qk_st_writer_write(w, data, 1), QK_EINVAL);
    ck_assert_int_eq(qk_st_writer_finish(w), 0);
    ck_assert_int_eq(qk_st_writer_finish(w), QK_EINVAL);
    ck_assert_int_eq(qk_st_writer_write(w, data, 0), QK_EINVAL);
    qk_afile_abort(f);
    qk_st_writer_free(w);
    ck_assert(!qk_file_exists(path));
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "misuse"), 0);
}
END_TEST

/* Hand-written headers the writer would not produce but the format allows:
 * JSON order differs from data order, gaps between tensors, unknown keys in
 * an entry, trailing spaces, null metadata, empty tensors sharing offsets. */
START_TEST(test_safetensors_accepts_valid_variants)
{
    const char *path = raw_file("variants.safetensors",
                                "{\"__metadata__\":null,"
                                "\"late\":{\"shape\":[2],\"dtype\":\"I16\",\"data_offsets\":[20,24],\"extra\":[1,{}]},"
                                "\"early\":{\"dtype\":\"F32\",\"shape\":[1, 2],\"data_offsets\":[0,8]},"
                                "\"void\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
                                "\"tail\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[24,24]}}   \n\t ",
                                24);
    qk_safetensors *st;
    ck_assert_msg(qk_safetensors_open(&st, path) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_safetensors_n_tensors(st), 4);
    ck_assert_int_eq(qk_safetensors_n_meta(st), 0);
    const char *order[] = {"early", "void", "late", "tail"};
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(qk_safetensors_tensor_at(st, i)->name, order[i]);
    const qk_st_tensor *late = qk_safetensors_find(st, "late");
    ck_assert_int_eq(late->dtype, QK_ST_I16);
    ck_assert_uint_eq(late->nbytes, 4);
    ck_assert_uint_eq(late->offset, qk_safetensors_map(st)->size - 4);
    qk_safetensors_close(st);
}
END_TEST

/* ----------------------------------------------------------- real models */

START_TEST(test_safetensors_real_models)
{
    static const char *dirs[3] = {"float32", "float16", "bfloat16"};
    static const int dtypes[3] = {QK_ST_F32, QK_ST_F16, QK_ST_BF16};
    char rel[256];
    qk_safetensors *st[3];
    for (int k = 0; k < 3; k++) {
        snprintf(rel, sizeof rel, "models/stories260K-hf/%s/model.safetensors", dirs[k]);
        QK_REQUIRE_DATA(path, rel);
        ck_assert_msg(qk_safetensors_open(&st[k], path) == 0, "%s", qk_errmsg());
        ck_assert_int_eq(qk_safetensors_n_tensors(st[k]), 47);
        ck_assert_str_eq(qk_safetensors_find_meta(st[k], "format"), "pt");
        const qk_st_tensor *e = qk_safetensors_find(st[k], "model.embed_tokens.weight");
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(e->dtype, dtypes[k]);
        ck_assert_int_eq(e->n_dims, 2);
        ck_assert_int_eq(e->shape[0], 512);
        ck_assert_int_eq(e->shape[1], 64);
        const qk_st_tensor *d = qk_safetensors_find(st[k], "model.layers.0.mlp.down_proj.weight");
        ck_assert_ptr_nonnull(d);
        ck_assert_int_eq(d->shape[0], 64);
        ck_assert_int_eq(d->shape[1], 172);
        const qk_st_tensor *nrm = qk_safetensors_find(st[k], "model.norm.weight");
        ck_assert_ptr_nonnull(nrm);
        ck_assert_int_eq(nrm->n_dims, 1);
        ck_assert_int_eq(nrm->shape[0], 64);
        ck_assert_ptr_nonnull(qk_safetensors_find(st[k], "model.layers.4.self_attn.q_proj.weight"));
        /* Data order, no gaps, last tensor ends at the end of the file. */
        for (int64_t i = 1; i < 47; i++) {
            const qk_st_tensor *a = qk_safetensors_tensor_at(st[k], i - 1), *b = qk_safetensors_tensor_at(st[k], i);
            ck_assert_uint_eq(a->offset + a->nbytes, b->offset);
        }
        const qk_st_tensor *last = qk_safetensors_tensor_at(st[k], 46);
        ck_assert_uint_eq(last->offset + last->nbytes, qk_safetensors_map(st[k])->size);
    }
    /* The three files hold the same weights at three precisions. */
    const float *w32 = (const float *)qk_safetensors_find(st[0], "model.embed_tokens.weight")->data;
    const uint8_t *w16 = qk_safetensors_find(st[1], "model.embed_tokens.weight")->data;
    const uint8_t *wb16 = qk_safetensors_find(st[2], "model.embed_tokens.weight")->data;
    for (int i = 0; i < 512 * 64; i++) {
        float x = w32[i];
        ck_assert_float_eq_tol(qk_fp16_to_f32(qk_rd_u16(w16 + 2 * i)), x, 1e-3f * fabsf(x) + 1e-6f);
        ck_assert_float_eq_tol(qk_bf16_to_f32(qk_rd_u16(wb16 + 2 * i)), x, 8e-3f * fabsf(x) + 1e-30f);
    }
    for (int k = 0; k < 3; k++)
        qk_safetensors_close(st[k]);
}
END_TEST

START_TEST(test_safetensors_set_real_model_dir)
{
    QK_REQUIRE_DATA(file, "models/stories260K-hf/float16/model.safetensors");
    QK_REQUIRE_DATA(dir, "models/stories260K-hf/float16");
    qk_st_set *s;
    ck_assert_msg(qk_st_set_open(&s, dir) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_st_set_n_shards(s), 1);
    ck_assert_int_eq(qk_st_set_n_tensors(s), 47);
    const qk_st_tensor *e = qk_st_set_find(s, "model.embed_tokens.weight");
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->dtype, QK_ST_F16);
    ck_assert_str_eq(qk_safetensors_path(qk_st_set_shard_of(s, 0)), qk_safetensors_path(qk_st_set_shard(s, 0)));
    ck_assert_ptr_null(qk_st_set_find(s, "lm_head.weight.nope"));
    qk_st_set_close(s);
    ck_assert_msg(qk_st_set_open(&s, file) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_st_set_n_tensors(s), 47);
    qk_st_set_close(s);
}
END_TEST

/* ------------------------------------------------------------ sharded sets */

static const spec k_shard1[] = {{"model.layers.0.w", QK_ST_F32, 2, {4, 2}}, {"model.embed", QK_ST_BF16, 2, {3, 4}}};
static const spec k_shard2[] = {{"model.layers.1.w", QK_ST_F32, 2, {4, 2}},
                                {"model.layers.1.norm", QK_ST_F32, 1, {4}},
                                {"model.extra.not_indexed", QK_ST_U8, 1, {3}}};
static const spec k_shard3[] = {{"lm_head", QK_ST_F16, 2, {3, 4}}};
static const char *k_shard_files[3] = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                       "model-00003-of-00003.safetensors"};

/* Writes the three shards into dir/ (ids 0.., 10.., 20..) and, unless
 * index_name is NULL, an index listing every tensor but the unindexed one. */
static void write_sharded(const char *dir, const char *index_name)
{
    char path[4096];
    mkdir(dir, 0755);
    const spec *sets[3] = {k_shard1, k_shard2, k_shard3};
    const int counts[3] = {2, 3, 1};
    for (int j = 0; j < 3; j++) {
        snprintf(path, sizeof path, "%s/%s", dir, k_shard_files[j]);
        write_st(path, sets[j], counts[j], 10 * j, NULL, 0);
    }
    if (!index_name)
        return;
    /* Listed in an order unlike the files, as transformers sorts by name. */
    const char *names[] = {"lm_head", "model.embed", "model.layers.0.w", "model.layers.1.norm", "model.layers.1.w"};
    const char *shards[] = {k_shard_files[2], k_shard_files[0], k_shard_files[0], k_shard_files[1], k_shard_files[1]};
    snprintf(path, sizeof path, "%s/%s", dir, index_name);
    ck_assert_msg(qk_st_write_index(path, 12345, names, shards, 5) == 0, "%s", qk_errmsg());
}

static void check_sharded_set(const char *open_path)
{
    qk_st_set *s;
    ck_assert_msg(qk_st_set_open(&s, open_path) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_st_set_n_shards(s), 3);
    ck_assert_int_eq(qk_st_set_n_tensors(s), 5);
    /* Shard order, then data order within a shard. */
    static const struct {
        const char *name;
        int shard, id;
    } want[5] = {{"model.layers.0.w", 0, 0},
                 {"model.embed", 0, 1},
                 {"model.layers.1.w", 1, 10},
                 {"model.layers.1.norm", 1, 11},
                 {"lm_head", 2, 20}};
    for (int i = 0; i < 5; i++) {
        const qk_st_tensor *t = qk_st_set_tensor_at(s, i);
        ck_assert_str_eq(t->name, want[i].name);
        ck_assert_ptr_eq(qk_st_set_find(s, want[i].name), t);
        const qk_safetensors *sh = qk_st_set_shard_of(s, i);
        ck_assert_ptr_eq(sh, qk_st_set_shard(s, want[i].shard));
        const char *p = qk_safetensors_path(sh);
        ck_assert_str_eq(p + strlen(p) - strlen(k_shard_files[want[i].shard]), k_shard_files[want[i].shard]);
        ck_assert_ptr_eq(qk_safetensors_find(sh, want[i].name), t);
        check_data(t, want[i].id);
    }
    const qk_st_tensor *lm = qk_st_set_find(s, "lm_head");
    ck_assert_int_eq(lm->dtype, QK_ST_F16);
    ck_assert_int_eq(lm->shape[0], 3);
    ck_assert_int_eq(lm->shape[1], 4);
    /* In shard 2 but not in the index: not part of the set. */
    ck_assert_ptr_null(qk_st_set_find(s, "model.extra.not_indexed"));
    ck_assert_ptr_nonnull(qk_safetensors_find(qk_st_set_shard(s, 1), "model.extra.not_indexed"));
    ck_assert_ptr_null(qk_st_set_tensor_at(s, 5));
    ck_assert_ptr_null(qk_st_set_shard_of(s, -1));
    ck_assert_ptr_null(qk_st_set_shard(s, 3));
    qk_st_set_close(s);
}

START_TEST(test_safetensors_sharded_set)
{
    const char *dir = qk_test_tmp("sharded");
    write_sharded(dir, "model.safetensors.index.json");
    check_sharded_set(dir);
    check_sharded_set(qk_test_tmp("sharded/model.safetensors.index.json"));

    /* The index as written: valid JSON with total_size and every entry. */
    char *text = qk_test_read_file(qk_test_tmp("sharded/model.safetensors.index.json"), NULL);
    ck_assert_ptr_nonnull(strstr(text, "\"total_size\": 12345"));
    ck_assert_ptr_nonnull(strstr(text, "\"lm_head\": \"model-00003-of-00003.safetensors\""));
    free(text);

    /* An index under another name, opened by its path. */
    const char *dir2 = qk_test_tmp("sharded2");
    write_sharded(dir2, "weights.json");
    check_sharded_set(qk_test_tmp("sharded2/weights.json"));
}
END_TEST

START_TEST(test_safetensors_set_picks_file_in_dir)
{
    const spec ts[] = {{"w", QK_ST_F32, 1, {3}}};
    const char *dir = qk_test_tmp("one");
    mkdir(dir, 0755);
    write_st(qk_test_tmp("one/weights.safetensors"), ts, 1, 0, NULL, 0);
    qk_test_write_file(qk_test_tmp("one/.hidden.safetensors"), "junk", 4);
    qk_st_set *s;
    ck_assert_msg(qk_st_set_open(&s, dir) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_st_set_n_tensors(s), 1);
    check_data(qk_st_set_find(s, "w"), 0);
    qk_st_set_close(s);

    /* model.safetensors is preferred over other files. */
    const spec ts2[] = {{"m", QK_ST_F16, 1, {2}}};
    write_st(qk_test_tmp("one/model.safetensors"), ts2, 1, 5, NULL, 0);
    ck_assert_msg(qk_st_set_open(&s, dir) == 0, "%s", qk_errmsg());
    ck_assert_ptr_nonnull(qk_st_set_find(s, "m"));
    ck_assert_ptr_null(qk_st_set_find(s, "w"));
    qk_st_set_close(s);

    /* A single-file path. */
    ck_assert_int_eq(qk_st_set_open(&s, qk_test_tmp("one/weights.safetensors")), 0);
    ck_assert_int_eq(qk_st_set_n_shards(s), 1);
    ck_assert_ptr_nonnull(qk_st_set_find(s, "w"));
    qk_st_set_close(s);
}
END_TEST

START_TEST(test_safetensors_set_rejects_ambiguous_dir)
{
    const char *dir = qk_test_tmp("two");
    write_sharded(dir, NULL);
    expect_set_reject(dir, dir, QK_EFORMAT, "3 .safetensors files (model-00001-of-00003.safetensors, ");
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "no model.safetensors.index.json"));

    const char *empty = qk_test_tmp("empty_dir");
    mkdir(empty, 0755);
    expect_set_reject(empty, empty, QK_ENOTFOUND, "no model.safetensors.index.json");
    expect_set_reject(qk_test_tmp("no/such.safetensors"), "no/such.safetensors", QK_ENOTFOUND, NULL);
}
END_TEST

/* ------------------------------------------------------ reader rejections */

/* Every proper prefix of a valid file is refused, with the file named. */
START_TEST(test_safetensors_rejects_every_truncation)
{
    const char *full = qk_test_tmp("full.safetensors");
    const spec ts[] = {{"a", QK_ST_F32, 2, {2, 3}}, {"b", QK_ST_I8, 1, {5}}, {"c", QK_ST_F16, 0, {0}}};
    const char *meta[] = {"format", "pt"};
    write_st(full, ts, 3, 0, meta, 1);
    size_t n;
    uint8_t *b = qk_test_read_file(full, &n);
    const char *cut = qk_test_tmp("cut.safetensors");
    for (size_t len = 0; len < n; len++) {
        qk_test_write_file(cut, b, len);
        expect_reject(cut, 0, len < 8 ? "shorter than the 8-byte header length"
                              : len < 8 + qk_rd_u64(b) ? "runs past the end"
                                                        : "end past the");
    }
    qk_test_write_file(cut, b, n);
    qk_safetensors *st;
    ck_assert_int_eq(qk_safetensors_open(&st, cut), 0);
    qk_safetensors_close(st);
    free(b);
}
END_TEST

START_TEST(test_safetensors_rejects_header_len_past_end)
{
    const char *path = qk_test_tmp("hl.safetensors");
    write_raw_len(path, "{}", 2, 1000, 0);
    expect_reject(path, QK_EFORMAT, "header length 1000 runs past the end of the 10-byte file");
    write_raw_len(path, "{}", 2, UINT64_MAX, 0); /* must not wrap to a small length */
    expect_reject(path, QK_ELIMIT, NULL);
}
END_TEST

START_TEST(test_safetensors_rejects_header_len_over_limit)
{
    const char *path = qk_test_tmp("huge.safetensors");
    write_raw_len(path, "{}", 2, (uint64_t)QK_ST_MAX_HEADER + 1, 0);
    expect_reject(path, QK_ELIMIT, "header length 100000001 exceeds the limit");
}
END_TEST

START_TEST(test_safetensors_rejects_missing_file)
{
    expect_reject(qk_test_tmp("absent.safetensors"), QK_ENOTFOUND, NULL);
}
END_TEST

START_TEST(test_safetensors_rejects_bad_json)
{
    static const char *cases[] = {
        "",
        "{",
        "{\"a\":",
        "{\"a\" 1}",
        "{} x",
        "{}{}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}",
        "{\"a\":\"\\q\"}",
        "{'a':1}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_reject(raw_file("json.safetensors", cases[i], 4), QK_EFORMAT, "not valid JSON");
    /* Unterminated string: found by the pre-check. */
    expect_reject(raw_file("json.safetensors", "{\"a", 0), QK_EFORMAT, "never ends");
}
END_TEST

START_TEST(test_safetensors_rejects_non_utf8)
{
    static const char *bad[] = {
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong '/' */
        "\xf0\x80\x80\xaf", /* overlong '/' */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xed\xbf\xbf",     /* surrogate U+DFFF */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80", /* invalid lead */
        "\xff",             /* invalid byte */
        "\x80",             /* stray continuation */
        "\xe2\x82",         /* cut short before the quote */
        "\xe2\x28\xa1",     /* bad continuation */
    };
    char json[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(json, sizeof json, "{\"__metadata__\":{\"k\":\"a%sb\"}}", bad[i]);
        expect_reject(raw_file("utf8.safetensors", json, 0), QK_EFORMAT, "not valid UTF-8");
    }
    /* Valid UTF-8 at every length, including the edges, is accepted. */
    const char *good = "{\"__metadata__\":{\"k\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"
                       "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}}";
    qk_safetensors *st;
    ck_assert_msg(qk_safetensors_open(&st, raw_file("utf8ok.safetensors", good, 0)) == 0, "%s", qk_errmsg());
    qk_safetensors_close(st);
}
END_TEST

START_TEST(test_safetensors_rejects_bad_escapes)
{
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", "\\u0000"},
        {"{\"__metadata__\":{\"k\":\"\\ud800\"}}", "unpaired high surrogate"},
        {"{\"__metadata__\":{\"k\":\"\\ud800\\u0041\"}}", "unpaired high surrogate"},
        {"{\"__metadata__\":{\"k\":\"\\udc00\"}}", "unpaired low surrogate"},
        {"{\"__metadata__\":{\"k\":\"\\u12\"}}", "malformed \\u escape"},
        {"{\"__metadata__\":{\"k\":\"\\u12g4\"}}", "malformed \\u escape"},
        {"{\"__metadata__\":{\"k\":\"tab\there\"}}", "control byte 0x09"},
        {"\xef\xbb\xbf{}", "byte 0xef outside a string"},
        {"{\x01}", "byte 0x01 outside a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_reject(raw_file("esc.safetensors", cases[i].json, 0), QK_EFORMAT, cases[i].needle);
    /* A NUL byte inside the header. */
    const char *path = qk_test_tmp("nul.safetensors");
    write_raw_len(path, "{}\0 ", 4, 4, 0);
    expect_reject(path, QK_EFORMAT, "byte 0x00 outside a string");
    /* A paired surrogate escape is fine. */
    qk_safetensors *st;
    ck_assert_int_eq(qk_safetensors_open(&st, raw_file("pair.safetensors",
                                                       "{\"__metadata__\":{\"k\":\"\\ud83d\\ude00\"}}", 0)),
                     0);
    ck_assert_str_eq(qk_safetensors_find_meta(st, "k"), "\xf0\x9f\x98\x80");
    qk_safetensors_close(st);
}
END_TEST

START_TEST(test_safetensors_rejects_deep_nesting)
{
    size_t depth = 5000;
    char *json = malloc(2 * depth + 64);
    ck_assert_ptr_nonnull(json);
    size_t n = (size_t)sprintf(json, "{\"__metadata__\":");
    for (size_t i = 0; i < depth; i++)
        json[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        json[n++] = ']';
    json[n++] = '}';
    json[n] = 0;
    expect_reject(raw_file("deep.safetensors", json, 0), QK_ELIMIT, "nests deeper than 64 levels");
    free(json);
}
END_TEST

START_TEST(test_safetensors_rejects_top_level_not_object)
{
    expect_reject(raw_file("top.safetensors", "[]", 0), QK_EFORMAT, "header JSON is an array, not an object");
    expect_reject(raw_file("top.safetensors", "\"x\"", 0), QK_EFORMAT, "not an object");
}
END_TEST

START_TEST(test_safetensors_rejects_entry_not_object)
{
    expect_reject(raw_file("entry.safetensors", "{\"x\":5}", 0), QK_EFORMAT, "tensor 'x' entry is 5, not an object");
}
END_TEST

START_TEST(test_safetensors_rejects_missing_fields)
{
    expect_reject(raw_file("mf.safetensors", "{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), QK_EFORMAT,
                  "tensor 'x' has no 'dtype' field");
    expect_reject(raw_file("mf.safetensors", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4), QK_EFORMAT,
                  "has no 'shape' field");
    expect_reject(raw_file("mf.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), QK_EFORMAT,
                  "has no 'data_offsets' field");
}
END_TEST

START_TEST(test_safetensors_rejects_duplicate_fields)
{
    expect_reject(raw_file("df.safetensors",
                           "{\"x\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                  QK_EFORMAT, "tensor 'x' has two 'dtype' fields");
}
END_TEST

START_TEST(test_safetensors_rejects_dtype_not_string)
{
    expect_reject(raw_file("dt.safetensors", "{\"x\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                  QK_EFORMAT, "dtype is 4, not a string");
}
END_TEST

START_TEST(test_safetensors_rejects_unknown_dtype)
{
    expect_reject(raw_file("ud.safetensors", "{\"x\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                  QK_EUNSUPPORTED, "tensor 'x' has unknown dtype 'F12'");
    expect_reject(raw_file("ud.safetensors", "{\"x\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                  QK_EUNSUPPORTED, "unknown dtype 'f32'");
}
END_TEST

START_TEST(test_safetensors_rejects_shape_not_array)
{
    expect_reject(raw_file("sna.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16),
                  QK_EFORMAT, "shape is 4, not an array");
}
END_TEST

START_TEST(test_safetensors_rejects_negative_shape)
{
    expect_reject(raw_file("ns.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}", 0),
                  QK_EFORMAT, "tensor 'x' shape[1] is -1, not an integer");
}
END_TEST

START_TEST(test_safetensors_rejects_non_integer_shape)
{
    expect_reject(raw_file("ni.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1),
                  QK_EFORMAT, "shape[0] is 1.5, not an integer");
    expect_reject(raw_file("ni.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[\"4\"],\"data_offsets\":[0,4]}}", 4),
                  QK_EFORMAT, "shape[0] is a string");
    expect_reject(raw_file("ni.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[null],\"data_offsets\":[0,4]}}", 4),
                  QK_EFORMAT, "shape[0] is null");
}
END_TEST

START_TEST(test_safetensors_rejects_huge_shape)
{
    /* 2^53 and beyond are not exact in a double; 1e300 does not fit int64. */
    expect_reject(raw_file("hs.safetensors",
                           "{\"x\":{\"dtype\":\"U8\",\"shape\":[9007199254740992],\"data_offsets\":[0,1]}}", 1),
                  QK_EFORMAT, "shape[0] is 9007199254740992, not an integer in [0, 2^53)");
    expect_reject(raw_file("hs.safetensors",
                           "{\"x\":{\"dtype\":\"U8\",\"shape\":[9007199254740993],\"data_offsets\":[0,1]}}", 1),
                  QK_EFORMAT, "not an integer in [0, 2^53)");
    expect_reject(raw_file("hs.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,1]}}", 1),
                  QK_EFORMAT, "shape[0] is 1e+300");
}
END_TEST

START_TEST(test_safetensors_rejects_too_many_dims)
{
    expect_reject(raw_file("dims.safetensors",
                           "{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1),
                  QK_ELIMIT, "tensor 'x' has 9 dimensions; the limit is 8");
}
END_TEST

START_TEST(test_safetensors_rejects_shape_product_overflow)
{
    /* 2^32 * 2^32 elements overflow u64. */
    expect_reject(raw_file("ov.safetensors",
                           "{\"x\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0),
                  QK_EFORMAT, "shape [4294967296, 4294967296] has more elements than 2^63");
    /* 2^62 elements fit, but times 4 bytes do not. */
    expect_reject(raw_file("ov.safetensors",
                           "{\"x\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,0]}}", 0),
                  QK_EFORMAT, "F32 [2147483648, 2147483648] is larger than 2^64 bytes");
    /* A zero after a huge product still overflows on the way. */
    expect_reject(raw_file("ov.safetensors",
                           "{\"x\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}", 0),
                  QK_EFORMAT, "more elements than 2^63");
}
END_TEST

START_TEST(test_safetensors_rejects_offsets_not_pair)
{
    expect_reject(raw_file("op.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1),
                  QK_EFORMAT, "data_offsets is not an array of two integers");
    expect_reject(raw_file("op.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 2),
                  QK_EFORMAT, "data_offsets is not an array of two integers");
    expect_reject(raw_file("op.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{}}}", 2),
                  QK_EFORMAT, "data_offsets is not an array of two integers");
}
END_TEST

START_TEST(test_safetensors_rejects_bad_offset_values)
{
    expect_reject(raw_file("ob.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1),
                  QK_EFORMAT, "data_offsets [-1, 0] are not integers");
    expect_reject(raw_file("ob.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,0.5]}}", 1),
                  QK_EFORMAT, "data_offsets [0, 0.5] are not integers");
    expect_reject(raw_file("ob.safetensors",
                           "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", 1),
                  QK_EFORMAT, "are not integers in [0, 2^53)");
}
END_TEST

START_TEST(test_safetensors_rejects_begin_after_end)
{
    expect_reject(raw_file("ba.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,4]}}", 8),
                  QK_EFORMAT, "tensor 'x' data_offsets [8, 4) begin after they end");
}
END_TEST

START_TEST(test_safetensors_rejects_size_mismatch)
{
    expect_reject(raw_file("m.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,40]}}", 48),
                  QK_EFORMAT, "m.safetensors: tensor 'x' data_offsets [0, 40) hold 40 bytes but F32 [3, 4] needs 48");
    expect_reject(raw_file("m.safetensors", "{\"x\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,4]}}", 4),
                  QK_EFORMAT, "hold 4 bytes but BF16 [] needs 2");
}
END_TEST

START_TEST(test_safetensors_rejects_offsets_past_end)
{
    expect_reject(raw_file("pe.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7),
                  QK_EFORMAT, "tensor 'x' data_offsets [0, 8) end past the 7-byte data buffer");
    /* Empty tensor placed beyond the end. */
    expect_reject(raw_file("pe.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[9,9]}}", 8),
                  QK_EFORMAT, "end past the 8-byte data buffer");
}
END_TEST

START_TEST(test_safetensors_rejects_overlap)
{
    expect_reject(raw_file("ol.safetensors",
                           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                           12),
                  QK_EFORMAT, "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
    /* A long tensor covering two later ones overlaps the second too. */
    expect_reject(raw_file("ol.safetensors",
                           "{\"c\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]},"
                           "\"long\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
                           "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                           16),
                  QK_EFORMAT, "tensors 'long' [0, 16) and 'b' [4, 8) overlap");
    /* Same range twice. */
    expect_reject(raw_file("ol.safetensors",
                           "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                           "\"b\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                           4),
                  QK_EFORMAT, "overlap");
}
END_TEST

START_TEST(test_safetensors_rejects_duplicate_names)
{
    expect_reject(raw_file("dup.safetensors",
                           "{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                           "\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                           8),
                  QK_EFORMAT, "tensor name 'x' appears twice");
    expect_reject(raw_file("dup.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", 0), QK_EFORMAT,
                  "two __metadata__ entries");
    expect_reject(raw_file("dup.safetensors", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0), QK_EFORMAT,
                  "__metadata__ key 'k' appears twice");
}
END_TEST

START_TEST(test_safetensors_rejects_non_string_metadata)
{
    expect_reject(raw_file("meta.safetensors", "{\"__metadata__\":{\"format\":\"pt\",\"n\":1}}", 0), QK_EFORMAT,
                  "__metadata__ value for 'n' is 1; metadata values must be strings");
    expect_reject(raw_file("meta.safetensors", "{\"__metadata__\":{\"o\":{}}}", 0), QK_EFORMAT,
                  "value for 'o' is an object");
    expect_reject(raw_file("meta.safetensors", "{\"__metadata__\":[\"a\"]}", 0), QK_EFORMAT,
                  "__metadata__ is an array, not an object");
}
END_TEST

/* A name with control characters stays on one line in the message. */
START_TEST(test_safetensors_message_sanitizes_names)
{
    expect_reject(raw_file("nl.safetensors", "{\"a\\nb\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                  QK_EUNSUPPORTED, "tensor 'a?b'");
}
END_TEST

/* ------------------------------------------------------- index rejections */

/* Writes shards into dir and an index with the given text. */
static const char *index_dir(const char *name, const char *index_text)
{
    const char *dir = qk_test_tmp(name);
    write_sharded(dir, NULL);
    const char *path = qk_test_tmp(name);
    static char ipath[4096];
    snprintf(ipath, sizeof ipath, "%s/model.safetensors.index.json", path);
    qk_test_write_file(ipath, index_text, strlen(index_text));
    return ipath;
}

START_TEST(test_safetensors_index_rejects_missing_shard)
{
    const char *ip = index_dir("ix_ms", "{\"weight_map\":{\"model.embed\":\"model-00001-of-00003.safetensors\","
                                        "\"gone\":\"model-00009-of-00009.safetensors\"}}");
    expect_set_reject(ip, ip, QK_ENOTFOUND, "shard 'model-00009-of-00009.safetensors' named in weight_map does not exist");
}
END_TEST

START_TEST(test_safetensors_index_rejects_missing_tensor)
{
    const char *ip = index_dir("ix_mt", "{\"weight_map\":{\"model.embed\":\"model-00001-of-00003.safetensors\","
                                        "\"lm_head\":\"model-00002-of-00003.safetensors\"}}");
    /* lm_head lives in shard 3, which this index does not open. */
    expect_set_reject(ip, ip, QK_EFORMAT,
                      "weight_map puts tensor 'lm_head' in model-00002-of-00003.safetensors, but that shard does not hold it");
}
END_TEST

START_TEST(test_safetensors_index_rejects_tensor_in_two_shards)
{
    /* "dup" is stored in both shards; the index assigns it to the first. */
    const char *dir = qk_test_tmp("ix_two");
    mkdir(dir, 0755);
    const spec a[] = {{"dup", QK_ST_F32, 1, {2}}, {"a", QK_ST_U8, 1, {1}}};
    const spec b[] = {{"b", QK_ST_U8, 1, {1}}, {"dup", QK_ST_F32, 1, {2}}};
    write_st(qk_test_tmp("ix_two/s1.safetensors"), a, 2, 0, NULL, 0);
    write_st(qk_test_tmp("ix_two/s2.safetensors"), b, 2, 10, NULL, 0);
    const char *names[] = {"a", "b", "dup"}, *shards[] = {"s1.safetensors", "s2.safetensors", "s1.safetensors"};
    const char *ip = qk_test_tmp("ix_two/model.safetensors.index.json");
    ck_assert_int_eq(qk_st_write_index(ip, 0, names, shards, 3), 0);
    expect_set_reject(dir, ip, QK_EFORMAT,
                      "tensor 'dup' is stored in s2.safetensors but weight_map assigns it to s1.safetensors");
    /* Stored only in the wrong shard: reported the same way. */
    const char *names2[] = {"a", "b"}, *shards2[] = {"s1.safetensors", "s1.safetensors"};
    ck_assert_int_eq(qk_st_write_index(ip, 0, names2, shards2, 2), 0);
    expect_set_reject(ip, ip, QK_EFORMAT, "weight_map puts tensor 'b' in s1.safetensors, but that shard does not hold it");
}
END_TEST

START_TEST(test_safetensors_index_rejects_path_shard_names)
{
    static const char *bad[] = {"../escape.safetensors", "/etc/passwd", "sub/model.safetensors", "..", "",
                                "a\\\\b.safetensors"};
    char text[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "{\"weight_map\":{\"model.embed\":\"%s\"}}", bad[i]);
        const char *ip = index_dir("ix_path", text);
        expect_set_reject(ip, ip, QK_EFORMAT, "shard names must be plain file names");
    }
    /* The writer refuses them too. */
    const char *names[] = {"t"}, *shards[] = {"../x.safetensors"};
    ck_assert_int_eq(qk_st_write_index(qk_test_tmp("bad.index.json"), 0, names, shards, 1), QK_EINVAL);
    ck_assert(!qk_file_exists(qk_test_tmp("bad.index.json")));
}
END_TEST

START_TEST(test_safetensors_index_rejects_bad_structure)
{
    static const struct {
        const char *text, *needle;
    } cases[] = {
        {"{\"weight_map\":", "index is not valid JSON"},
        {"[]", "index JSON is not an object"},
        {"{\"metadata\":{}}", "index has no weight_map object"},
        {"{\"weight_map\":[\"a\"]}", "index has no weight_map object"},
        {"{\"weight_map\":{}}", "weight_map is empty"},
        {"{\"weight_map\":{\"model.embed\":1}}", "weight_map value for 'model.embed' is not a string"},
        {"{\"weight_map\":{\"model.embed\":\"model-00001-of-00003.safetensors\","
         "\"model.embed\":\"model-00001-of-00003.safetensors\"}}",
         "tensor 'model.embed' appears twice in weight_map"},
        {"{\"weight_map\":{},\"weight_map\":{}}", "two weight_map entries"},
        {"{\"weight_map\":{\"\xff\":\"x\"}}", "index JSON is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *ip = index_dir("ix_bad", cases[i].text);
        expect_set_reject(ip, ip, QK_EFORMAT, cases[i].needle);
    }
}
END_TEST

START_TEST(test_safetensors_index_rejects_bad_shard)
{
    /* A shard that is itself malformed: the shard's own message names it. */
    const char *ip = index_dir("ix_bs", "{\"weight_map\":{\"model.embed\":\"model-00001-of-00003.safetensors\"}}");
    const char *shard = qk_test_tmp("ix_bs/model-00001-of-00003.safetensors");
    write_raw_len(shard, "{}", 2, 99, 0);
    expect_set_reject(ip, shard, QK_EFORMAT, "runs past the end");
}
END_TEST

Suite *qk_test_suite_safetensors(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_safetensors_dtype_table);
    tcase_add_test(tc, test_safetensors_round_trip);
    tcase_add_test(tc, test_safetensors_writer_header_bytes);
    tcase_add_test(tc, test_safetensors_writer_rejects_misuse);
    tcase_add_test(tc, test_safetensors_accepts_valid_variants);
    tcase_add_test(tc, test_safetensors_real_models);
    tcase_add_test(tc, test_safetensors_set_real_model_dir);
    tcase_add_test(tc, test_safetensors_sharded_set);
    tcase_add_test(tc, test_safetensors_set_picks_file_in_dir);
    tcase_add_test(tc, test_safetensors_set_rejects_ambiguous_dir);
    suite_add_tcase(s, tc);

    TCase *rj = tcase_create("reject");
    tcase_set_timeout(rj, 60);
    tcase_add_test(rj, test_safetensors_rejects_every_truncation);
    tcase_add_test(rj, test_safetensors_rejects_header_len_past_end);
    tcase_add_test(rj, test_safetensors_rejects_header_len_over_limit);
    tcase_add_test(rj, test_safetensors_rejects_missing_file);
    tcase_add_test(rj, test_safetensors_rejects_bad_json);
    tcase_add_test(rj, test_safetensors_rejects_non_utf8);
    tcase_add_test(rj, test_safetensors_rejects_bad_escapes);
    tcase_add_test(rj, test_safetensors_rejects_deep_nesting);
    tcase_add_test(rj, test_safetensors_rejects_top_level_not_object);
    tcase_add_test(rj, test_safetensors_rejects_entry_not_object);
    tcase_add_test(rj, test_safetensors_rejects_missing_fields);
    tcase_add_test(rj, test_safetensors_rejects_duplicate_fields);
    tcase_add_test(rj, test_safetensors_rejects_dtype_not_string);
    tcase_add_test(rj, test_safetensors_rejects_unknown_dtype);
    tcase_add_test(rj, test_safetensors_rejects_shape_not_array);
    tcase_add_test(rj, test_safetensors_rejects_negative_shape);
    tcase_add_test(rj, test_safetensors_rejects_non_integer_shape);
    tcase_add_test(rj, test_safetensors_rejects_huge_shape);
    tcase_add_test(rj, test_safetensors_rejects_too_many_dims);
    tcase_add_test(rj, test_safetensors_rejects_shape_product_overflow);
    tcase_add_test(rj, test_safetensors_rejects_offsets_not_pair);
    tcase_add_test(rj, test_safetensors_rejects_bad_offset_values);
    tcase_add_test(rj, test_safetensors_rejects_begin_after_end);
    tcase_add_test(rj, test_safetensors_rejects_size_mismatch);
    tcase_add_test(rj, test_safetensors_rejects_offsets_past_end);
    tcase_add_test(rj, test_safetensors_rejects_overlap);
    tcase_add_test(rj, test_safetensors_rejects_duplicate_names);
    tcase_add_test(rj, test_safetensors_rejects_non_string_metadata);
    tcase_add_test(rj, test_safetensors_message_sanitizes_names);
    tcase_add_test(rj, test_safetensors_index_rejects_missing_shard);
    tcase_add_test(rj, test_safetensors_index_rejects_missing_tensor);
    tcase_add_test(rj, test_safetensors_index_rejects_tensor_in_two_shards);
    tcase_add_test(rj, test_safetensors_index_rejects_path_shard_names);
    tcase_add_test(rj, test_safetensors_index_rejects_bad_structure);
    tcase_add_test(rj, test_safetensors_index_rejects_bad_shard);
    suite_add_tcase(s, rj);
    return s;
}

/* Tests of formats/gguf_*.c: writer -> reader round trips, the real GGUF
 * files in the shared data, rewriting, and one test per rejection branch of
 * the reader (hand-built hostile files). */
#include "qk_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include "quantkit/gguf.h"

/* ------------------------------------------------------ hand-built files */

typedef struct tb {
    uint8_t *b;
    size_t n, cap;
} tb;

static void tb_raw(tb *t, const void *p, size_t n)
{
    if (t->n + n > t->cap) {
        t->cap = (t->n + n) * 2 + 64;
        t->b = realloc(t->b, t->cap);
        ck_assert_ptr_nonnull(t->b);
    }
    if (n)
        memcpy(t->b + t->n, p, n);
    t->n += n;
}

static void tb_u8(tb *t, uint8_t v) { tb_raw(t, &v, 1); }
static void tb_u32(tb *t, uint32_t v)
{
    uint8_t b[4];
    qk_wr_u32(b, v);
    tb_raw(t, b, 4);
}
static void tb_u64(tb *t, uint64_t v)
{
    uint8_t b[8];
    qk_wr_u64(b, v);
    tb_raw(t, b, 8);
}
static void tb_str(tb *t, const char *s)
{
    tb_u64(t, strlen(s));
    tb_raw(t, s, strlen(s));
}
static void tb_zeros(tb *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tb_u8(t, 0);
}
static void tb_pad(tb *t, size_t align) { tb_zeros(t, (align - t->n % align) % align); }
static void tb_hdr(tb *t, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    tb_raw(t, "GGUF", 4);
    tb_u32(t, version);
    tb_u64(t, n_tensors);
    tb_u64(t, n_kv);
}
/* key + value type; the caller appends the value. */
static void tb_key(tb *t, const char *key, uint32_t type)
{
    tb_str(t, key);
    tb_u32(t, type);
}
static void tb_kv_u32(tb *t, const char *key, uint32_t v)
{
    tb_key(t, key, QK_GGUF_U32);
    tb_u32(t, v);
}
static void tb_tinfo(tb *t, const char *name, uint32_t n_dims, const int64_t *ne, int32_t type, uint64_t off)
{
    tb_str(t, name);
    tb_u32(t, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        tb_u64(t, (uint64_t)ne[i]);
    tb_u32(t, (uint32_t)type);
    tb_u64(t, off);
}

/* The two tensors used by most hand-built files: "a" F32 [8] (32 bytes) at
 * 0 and "b" Q4_0 [32, 2] (36 bytes) at off_b (correct: 32), then padding and
 * data (the last tensor's padding included). */
static const int64_t k_ne_a[1] = {8};
static const int64_t k_ne_b[2] = {32, 2};
static void tb_two_tensors(tb *t, uint64_t off_b, size_t align)
{
    tb_tinfo(t, "a", 1, k_ne_a, QK_TYPE_F32, 0);
    tb_tinfo(t, "b", 2, k_ne_b, QK_TYPE_Q4_0, off_b);
    tb_pad(t, align);
    for (int i = 0; i < 32 + 36; i++)
        tb_u8(t, (uint8_t)i);
    tb_pad(t, align);
}

/* A valid file: 2 KVs, 2 tensors. */
static void tb_good(tb *t)
{
    tb_hdr(t, 3, 2, 2);
    tb_key(t, "general.architecture", QK_GGUF_STRING);
    tb_str(t, "llama");
    tb_kv_u32(t, "test.count", 7);
    tb_two_tensors(t, 32, 32);
}

static const char *tb_save(tb *t, const char *name)
{
    static const uint8_t none[1];
    const char *path = qk_test_tmp(name);
    qk_test_write_file(path, t->b ? t->b : none, t->n); /* fwrite wants non-NULL even for 0 bytes */
    free(t->b);
    memset(t, 0, sizeof *t);
    return path;
}

/* Open must fail with `code` (0: any error), leave *out NULL and give a
 * message naming the file and containing `needle`. */
static void expect_reject(tb *t, const char *name, int code, const char *needle)
{
    const char *path = tb_save(t, name);
    qk_gguf *g = (qk_gguf *)1;
    qk_error_clear();
    int rc = qk_gguf_open(&g, path);
    ck_assert_msg(rc < 0, "%s: open unexpectedly succeeded", name);
    if (code)
        ck_assert_msg(rc == code, "%s: rc %d, expected %d (%s)", name, rc, code, qk_errmsg());
    ck_assert_ptr_null(g);
    ck_assert_msg(strstr(qk_errmsg(), path) != NULL, "%s: message lacks the path: %s", name, qk_errmsg());
    if (needle)
        ck_assert_msg(strstr(qk_errmsg(), needle) != NULL, "%s: message lacks '%s': %s", name, needle, qk_errmsg());
    ck_assert_msg(strchr(qk_errmsg(), '\n') == NULL, "multi-line message");
}

static qk_gguf *open_ok(const char *path)
{
    qk_gguf *g = NULL;
    int rc = qk_gguf_open(&g, path);
    ck_assert_msg(rc == 0, "open %s: %s", path, qk_errmsg());
    return g;
}

/* -------------------------------------------------------------- helpers */

static int kv_equal(const qk_gguf_kv *a, const qk_gguf_kv *b)
{
    if (a->key.len != b->key.len || memcmp(a->key.s, b->key.s, a->key.len) || a->type != b->type)
        return 0;
    if (a->type == QK_GGUF_STRING)
        return a->v.str.len == b->v.str.len && !memcmp(a->v.str.s, b->v.str.s, a->v.str.len);
    if (a->type != QK_GGUF_ARRAY)
        return !memcmp(&a->v, &b->v, qk_gguf_type_size(a->type));
    if (a->arr_type != b->arr_type || a->arr_n != b->arr_n)
        return 0;
    if (a->arr_type == QK_GGUF_STRING) {
        for (uint64_t i = 0; i < a->arr_n; i++)
            if (a->strs[i].len != b->strs[i].len || memcmp(a->strs[i].s, b->strs[i].s, a->strs[i].len) ||
                a->strs[i].s[a->strs[i].len] != 0 || b->strs[i].s[b->strs[i].len] != 0)
                return 0;
        return 1;
    }
    return a->arr_n == 0 || !memcmp(a->arr, b->arr, a->arr_n * qk_gguf_type_size(a->arr_type));
}

static uint8_t pattern(int tensor, uint64_t j) { return (uint8_t)(tensor * 37 + j * 13 + (j >> 8)); }

/* ------------------------------------------------------ writer -> reader */

typedef struct rt_tensor {
    const char *name;
    int type;
    int n_dims;
    int64_t ne[4];
    uint64_t nbytes;
} rt_tensor;

static const rt_tensor k_rt[] = {
    {"f32.weight", QK_TYPE_F32, 2, {8, 3}, 96},
    {"f16.weight", QK_TYPE_F16, 1, {16}, 32},
    {"blk.q4_0", QK_TYPE_Q4_0, 2, {64, 2}, 72},
    {"blk.q4_k", QK_TYPE_Q4_K, 3, {256, 2, 1}, 288},
    {"q8_0", QK_TYPE_Q8_0, 4, {32, 1, 1, 1}, 34},
    {"bf16.4d", QK_TYPE_BF16, 4, {2, 3, 2, 2}, 48},
    {"i8.odd", QK_TYPE_I8, 1, {5}, 5},
    {"empty", QK_TYPE_F32, 2, {0, 4}, 0},
};
#define N_RT ((int)(sizeof k_rt / sizeof k_rt[0]))

static const uint8_t k_u8s[] = {0, 1, 255};
static const int8_t k_i8s[] = {-128, 0, 127};
static const uint16_t k_u16s[] = {0, 0x1234, 0xffff};
static const int16_t k_i16s[] = {-32768, -2, 32767};
static const uint32_t k_u32s[] = {0, 0xdeadbeef, 7};
static const int32_t k_i32s[] = {INT32_MIN, -1, INT32_MAX};
static const float k_f32s[] = {-1.5f, 0.0f, 3.25e-7f};
static const uint8_t k_bools[] = {1, 0, 1, 1};
static const uint64_t k_u64s[] = {0, UINT64_MAX, 0x0102030405060708ull};
static const int64_t k_i64s[] = {INT64_MIN, -5, INT64_MAX};
static const double k_f64s[] = {1e300, -0.0, 3.141592653589793};

/* Set a scalar of any type through set_kv (borrowed key, deep-copied). */
static void set_scalar(qk_gguf_writer *w, const char *key, int type, const void *v, size_t n)
{
    qk_gguf_kv kv;
    memset(&kv, 0, sizeof kv);
    kv.key.s = (char *)key;
    kv.key.len = strlen(key);
    kv.type = type;
    memcpy(&kv.v, v, n);
    ck_assert_int_eq(qk_gguf_writer_set_kv(w, &kv), 0);
}

/* Write the round-trip file: every value type, arrays of each type, the
 * tensors of k_rt, alignment 64, data streamed in 7-byte pieces. */
static void write_rt_file(const char *path, uint32_t alignment, int checksums)
{
    qk_gguf_writer *w;
    ck_assert_int_eq(qk_gguf_writer_new(&w, alignment), 0);
    qk_gguf_writer_set_checksums(w, checksums);
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int64_t i64 = -1234567890123ll;
    double f64 = 2.718281828459045;
    set_scalar(w, "t.u8", QK_GGUF_U8, &u8, 1);
    set_scalar(w, "t.i8", QK_GGUF_I8, &i8, 1);
    set_scalar(w, "t.u16", QK_GGUF_U16, &u16, 2);
    set_scalar(w, "t.i16", QK_GGUF_I16, &i16, 2);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "t.u32", 4000000000u), 0);
    ck_assert_int_eq(qk_gguf_writer_set_i32(w, "t.i32", -2000000000), 0);
    ck_assert_int_eq(qk_gguf_writer_set_f32(w, "t.f32", 1e-5f), 0);
    ck_assert_int_eq(qk_gguf_writer_set_bool(w, "t.bool", 1), 0);
    ck_assert_int_eq(qk_gguf_writer_set_str(w, "t.string", "hello, gguf"), 0);
    ck_assert_int_eq(qk_gguf_writer_set_u64(w, "t.u64", 0xfedcba9876543210ull), 0);
    set_scalar(w, "t.i64", QK_GGUF_I64, &i64, 8);
    set_scalar(w, "t.f64", QK_GGUF_F64, &f64, 8);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.u8", QK_GGUF_U8, k_u8s, 3), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.i8", QK_GGUF_I8, k_i8s, 3), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.u16", QK_GGUF_U16, k_u16s, 3), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.i16", QK_GGUF_I16, k_i16s, 3), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.u32", QK_GGUF_U32, k_u32s, 3), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.i32", QK_GGUF_I32, k_i32s, 3), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.f32", QK_GGUF_F32, k_f32s, 3), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.bool", QK_GGUF_BOOL, k_bools, 4), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.u64", QK_GGUF_U64, k_u64s, 3), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.i64", QK_GGUF_I64, k_i64s, 3), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.f64", QK_GGUF_F64, k_f64s, 3), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "a.empty", QK_GGUF_U32, NULL, 0), 0);
    const char *strs[] = {"<unk>", "", "a\0b", "\xe2\x96\x81the"};
    const uint64_t lens[] = {5, 0, 3, 6};
    ck_assert_int_eq(qk_gguf_writer_set_arr_str(w, "a.string", strs, lens, 4), 0);
    const char *strs2[] = {"x", "yz"};
    ck_assert_int_eq(qk_gguf_writer_set_arr_str(w, "a.string_nul", strs2, NULL, 2), 0);

    for (int i = 0; i < N_RT; i++)
        ck_assert_int_eq(qk_gguf_writer_add_tensor(w, k_rt[i].name, k_rt[i].type, k_rt[i].n_dims, k_rt[i].ne), 0);
    qk_afile *f;
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), 0);
    for (int i = 0; i < N_RT; i++) {
        uint8_t buf[7];
        for (uint64_t j = 0; j < k_rt[i].nbytes; j += sizeof buf) {
            size_t n = k_rt[i].nbytes - j < sizeof buf ? (size_t)(k_rt[i].nbytes - j) : sizeof buf;
            for (size_t k = 0; k < n; k++)
                buf[k] = pattern(i, j + k);
            ck_assert_int_eq(qk_gguf_writer_write(w, buf, n), 0);
        }
        ck_assert_int_eq(qk_gguf_writer_end_tensor(w), 0);
    }
    ck_assert_int_eq(qk_gguf_writer_finish(w), 0);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_gguf_writer_free(w);
}

static void check_arr(const qk_gguf *g, const char *key, int type, const void *want, uint64_t n)
{
    const qk_gguf_kv *kv = qk_gguf_find_kv(g, key);
    ck_assert_ptr_nonnull(kv);
    ck_assert_int_eq(kv->type, QK_GGUF_ARRAY);
    ck_assert_int_eq(kv->arr_type, type);
    ck_assert_uint_eq(kv->arr_n, n);
    ck_assert_int_eq(memcmp(kv->arr, want, n * qk_gguf_type_size(type)), 0);
}

START_TEST(test_gguf_roundtrip_all_types)
{
    const char *path = qk_test_tmp("rt.gguf");
    write_rt_file(path, 64, 1);
    qk_gguf *g = open_ok(path);
    ck_assert_uint_eq(qk_gguf_version(g), 3);
    ck_assert_uint_eq(qk_gguf_alignment(g), 64);
    ck_assert_str_eq(qk_gguf_path(g), path);

    /* KVs in the order set: general.alignment (from new) first, the checksum last. */
    ck_assert_int_eq(qk_gguf_n_kv(g), 1 + 12 + 14 + 1);
    ck_assert_str_eq(qk_gguf_kv_at(g, 0)->key.s, "general.alignment");
    ck_assert_int_eq(qk_gguf_kv_at(g, 0)->type, QK_GGUF_U32);
    ck_assert_uint_eq(qk_gguf_kv_at(g, 0)->v.u32, 64);
    ck_assert_str_eq(qk_gguf_kv_at(g, 1)->key.s, "t.u8");
    ck_assert_str_eq(qk_gguf_kv_at(g, qk_gguf_n_kv(g) - 1)->key.s, QK_GGUF_CHECKSUM_KEY);
    ck_assert_ptr_null(qk_gguf_kv_at(g, qk_gguf_n_kv(g)));
    ck_assert_ptr_null(qk_gguf_kv_at(g, -1));

    const qk_gguf_kv *kv;
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "t.u8"));
    ck_assert_int_eq(kv->type, QK_GGUF_U8);
    ck_assert_uint_eq(kv->v.u8, 200);
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "t.i8"));
    ck_assert_int_eq(kv->type, QK_GGUF_I8);
    ck_assert_int_eq(kv->v.i8, -100);
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "t.u16"));
    ck_assert_int_eq(kv->type, QK_GGUF_U16);
    ck_assert_uint_eq(kv->v.u16, 60000);
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "t.i16"));
    ck_assert_int_eq(kv->type, QK_GGUF_I16);
    ck_assert_int_eq(kv->v.i16, -30000);
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "t.i64"));
    ck_assert_int_eq(kv->type, QK_GGUF_I64);
    ck_assert(kv->v.i64 == -1234567890123ll);
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "t.f64"));
    ck_assert_int_eq(kv->type, QK_GGUF_F64);
    ck_assert(kv->v.f64 == 2.718281828459045);

    uint32_t u32;
    uint64_t u64;
    float f32;
    double f64;
    int b;
    const char *s;
    ck_assert_int_eq(qk_gguf_get_u32(g, "t.u32", &u32), 0);
    ck_assert_uint_eq(u32, 4000000000u);
    ck_assert_int_eq(qk_gguf_get_uint(g, "t.u64", &u64), 0);
    ck_assert(u64 == 0xfedcba9876543210ull);
    ck_assert_int_eq(qk_gguf_get_uint(g, "t.u8", &u64), 0);
    ck_assert(u64 == 200);
    ck_assert_int_eq(qk_gguf_get_uint(g, "t.u16", &u64), 0);
    ck_assert(u64 == 60000);
    ck_assert_int_eq(qk_gguf_get_f32(g, "t.f32", &f32), 0);
    ck_assert(f32 == 1e-5f);
    ck_assert_int_eq(qk_gguf_get_float(g, "t.f32", &f64), 0);
    ck_assert(f64 == (double)1e-5f);
    ck_assert_int_eq(qk_gguf_get_float(g, "t.f64", &f64), 0);
    ck_assert(f64 == 2.718281828459045);
    ck_assert_int_eq(qk_gguf_get_bool(g, "t.bool", &b), 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(qk_gguf_get_str(g, "t.string", &s), 0);
    ck_assert_str_eq(s, "hello, gguf");
    kv = qk_gguf_find_kv(g, "t.i32");
    ck_assert_int_eq(kv->type, QK_GGUF_I32);
    ck_assert_int_eq(kv->v.i32, -2000000000);

    check_arr(g, "a.u8", QK_GGUF_U8, k_u8s, 3);
    check_arr(g, "a.i8", QK_GGUF_I8, k_i8s, 3);
    check_arr(g, "a.u16", QK_GGUF_U16, k_u16s, 3);
    check_arr(g, "a.i16", QK_GGUF_I16, k_i16s, 3);
    check_arr(g, "a.u32", QK_GGUF_U32, k_u32s, 3);
    check_arr(g, "a.i32", QK_GGUF_I32, k_i32s, 3);
    check_arr(g, "a.f32", QK_GGUF_F32, k_f32s, 3);
    check_arr(g, "a.bool", QK_GGUF_BOOL, k_bools, 4);
    check_arr(g, "a.u64", QK_GGUF_U64, k_u64s, 3);
    check_arr(g, "a.i64", QK_GGUF_I64, k_i64s, 3);
    check_arr(g, "a.f64", QK_GGUF_F64, k_f64s, 3);
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "a.empty"));
    ck_assert_int_eq(kv->type, QK_GGUF_ARRAY);
    ck_assert_uint_eq(kv->arr_n, 0);

    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "a.string"));
    ck_assert_int_eq(kv->arr_type, QK_GGUF_STRING);
    ck_assert_uint_eq(kv->arr_n, 4);
    ck_assert_str_eq(kv->strs[0].s, "<unk>");
    ck_assert_uint_eq(kv->strs[1].len, 0);
    ck_assert_str_eq(kv->strs[1].s, "");
    ck_assert_uint_eq(kv->strs[2].len, 3);
    ck_assert_int_eq(memcmp(kv->strs[2].s, "a\0b", 4), 0);
    ck_assert_str_eq(kv->strs[3].s, "\xe2\x96\x81the");
    ck_assert_ptr_nonnull(kv = qk_gguf_find_kv(g, "a.string_nul"));
    ck_assert_str_eq(kv->strs[1].s, "yz");
    ck_assert_ptr_null(qk_gguf_find_kv(g, "t.u"));
    ck_assert_ptr_null(qk_gguf_find_kv(g, "t.u8x"));

    /* Tensors: shape, type, offsets = running sum of sizes padded to 64. */
    ck_assert_int_eq(qk_gguf_n_tensors(g), N_RT);
    ck_assert_uint_eq(qk_gguf_data_offset(g) % 64, 0);
    const qk_mmap *m = qk_gguf_map(g);
    ck_assert_uint_eq(qk_gguf_file_size(g), m->size);
    uint64_t off = 0;
    for (int i = 0; i < N_RT; i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        ck_assert_str_eq(t->name, k_rt[i].name);
        ck_assert_ptr_eq(qk_gguf_find_tensor(g, k_rt[i].name), t);
        ck_assert_int_eq(t->type, k_rt[i].type);
        ck_assert_int_eq(t->n_dims, k_rt[i].n_dims);
        for (int d = 0; d < 4; d++)
            ck_assert_int_eq(t->ne[d], d < k_rt[i].n_dims ? k_rt[i].ne[d] : 1);
        ck_assert_uint_eq(t->nbytes, k_rt[i].nbytes);
        ck_assert_uint_eq(t->offset, off);
        ck_assert_ptr_eq(t->data, m->data + qk_gguf_data_offset(g) + off);
        for (uint64_t j = 0; j < t->nbytes; j++)
            ck_assert_uint_eq(t->data[j], pattern(i, j));
        /* padding is zeros */
        for (uint64_t j = t->nbytes; j < qk_pad_u64(t->nbytes, 64) && qk_gguf_data_offset(g) + off + j < m->size; j++)
            ck_assert_uint_eq(t->data[j], 0);
        off += qk_pad_u64(t->nbytes, 64);
    }
    ck_assert_uint_eq(m->size, qk_gguf_data_offset(g) + off);
    ck_assert_ptr_null(qk_gguf_find_tensor(g, "nope"));
    ck_assert_ptr_null(qk_gguf_tensor_at(g, N_RT));

    /* Stored checksums are XXH3-64 of each tensor's bytes. */
    kv = qk_gguf_find_kv(g, QK_GGUF_CHECKSUM_KEY);
    ck_assert_int_eq(kv->arr_type, QK_GGUF_U64);
    ck_assert_uint_eq(kv->arr_n, N_RT);
    for (int i = 0; i < N_RT; i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        ck_assert(((const uint64_t *)kv->arr)[i] == qk_hash64(t->data, t->nbytes));
    }
    ck_assert_int_eq(qk_gguf_verify_checksums(g), 0);
    uint64_t q4k_at = qk_gguf_data_offset(g) + qk_gguf_find_tensor(g, "blk.q4_k")->offset;
    qk_gguf_close(g);

    /* One flipped data byte: verification names the tensor. */
    size_t n;
    uint8_t *bytes = qk_test_read_file(path, &n);
    bytes[q4k_at + 100] ^= 0x10;
    const char *bad = qk_test_tmp("rt-flipped.gguf");
    qk_test_write_file(bad, bytes, n);
    free(bytes);
    g = open_ok(bad);
    ck_assert_int_eq(qk_gguf_verify_checksums(g), QK_ECHECKSUM);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), bad));
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "tensor 'blk.q4_k' checksum mismatch (stored "));
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_gguf_roundtrip_default_alignment_no_checksums)
{
    const char *path = qk_test_tmp("rt32.gguf");
    write_rt_file(path, 0, 0);
    qk_gguf *g = open_ok(path);
    ck_assert_uint_eq(qk_gguf_alignment(g), 32);
    /* neither general.alignment (default) nor the checksum key was written */
    ck_assert_ptr_null(qk_gguf_find_kv(g, "general.alignment"));
    ck_assert_ptr_null(qk_gguf_find_kv(g, QK_GGUF_CHECKSUM_KEY));
    ck_assert_int_eq(qk_gguf_n_kv(g), 12 + 14);
    uint64_t off = 0;
    for (int i = 0; i < N_RT; i++) {
        ck_assert_uint_eq(qk_gguf_tensor_at(g, i)->offset, off);
        off += qk_pad_u64(k_rt[i].nbytes, 32);
    }
    ck_assert_int_eq(qk_gguf_verify_checksums(g), QK_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), path));
    qk_gguf_close(g);
}
END_TEST

/* -------------------------------------------------------- writer rules */

static qk_gguf_writer *new_writer(uint32_t alignment)
{
    qk_gguf_writer *w = NULL;
    ck_assert_int_eq(qk_gguf_writer_new(&w, alignment), 0);
    return w;
}

START_TEST(test_gguf_writer_set_replaces_in_place)
{
    qk_gguf_writer *w = new_writer(0);
    ck_assert_int_eq(qk_gguf_writer_set_str(w, "a", "first"), 0);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "b", 1), 0);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "c", 2), 0);
    ck_assert_int_eq(qk_gguf_writer_set_f32(w, "a", 0.5f), 0); /* replaced, type changes, stays first */
    ck_assert_int_eq(qk_gguf_writer_remove_kv(w, "b"), 0);
    ck_assert_int_eq(qk_gguf_writer_remove_kv(w, "b"), QK_ENOTFOUND);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "d", 3), 0);
    const char *path = qk_test_tmp("replace.gguf");
    qk_afile *f;
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), 0);
    /* no tensors: finish right away; no checksum key */
    ck_assert_int_eq(qk_gguf_writer_finish(w), 0);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_gguf_writer_free(w);

    qk_gguf *g = open_ok(path);
    ck_assert_int_eq(qk_gguf_n_kv(g), 3);
    ck_assert_str_eq(qk_gguf_kv_at(g, 0)->key.s, "a");
    ck_assert_int_eq(qk_gguf_kv_at(g, 0)->type, QK_GGUF_F32);
    ck_assert_str_eq(qk_gguf_kv_at(g, 1)->key.s, "c");
    ck_assert_str_eq(qk_gguf_kv_at(g, 2)->key.s, "d");
    ck_assert_int_eq(qk_gguf_n_tensors(g), 0);
    ck_assert_ptr_null(qk_gguf_find_kv(g, QK_GGUF_CHECKSUM_KEY));
    ck_assert_uint_eq(qk_gguf_data_offset(g), qk_gguf_file_size(g));
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_gguf_writer_replaces_copied_checksum_key)
{
    qk_gguf_writer *w = new_writer(0);
    const uint64_t stale[3] = {1, 2, 3};
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "first", 1), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, QK_GGUF_CHECKSUM_KEY, QK_GGUF_U64, stale, 3), 0);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "last", 2), 0);
    const int64_t ne[1] = {32};
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, "t0", QK_TYPE_F32, 1, ne), 0);
    const char *path = qk_test_tmp("csum.gguf");
    qk_afile *f;
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), 0);
    float data[32];
    for (int i = 0; i < 32; i++)
        data[i] = (float)i;
    ck_assert_int_eq(qk_gguf_writer_write(w, data, sizeof data), 0);
    ck_assert_int_eq(qk_gguf_writer_end_tensor(w), 0);
    ck_assert_int_eq(qk_gguf_writer_finish(w), 0);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_gguf_writer_free(w);

    qk_gguf *g = open_ok(path);
    ck_assert_int_eq(qk_gguf_n_kv(g), 3);
    const qk_gguf_kv *kv = qk_gguf_kv_at(g, 1); /* kept its position */
    ck_assert_str_eq(kv->key.s, QK_GGUF_CHECKSUM_KEY);
    ck_assert_uint_eq(kv->arr_n, 1);
    ck_assert(((const uint64_t *)kv->arr)[0] == qk_hash64(data, sizeof data));
    ck_assert_int_eq(qk_gguf_verify_checksums(g), 0);
    qk_gguf_close(g);

    /* With checksums off a copied (stale) key is dropped. */
    w = new_writer(0);
    qk_gguf_writer_set_checksums(w, 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, QK_GGUF_CHECKSUM_KEY, QK_GGUF_U64, stale, 1), 0);
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, "t0", QK_TYPE_F32, 1, ne), 0);
    path = qk_test_tmp("nocsum.gguf");
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), 0);
    ck_assert_int_eq(qk_gguf_writer_write(w, data, sizeof data), 0);
    ck_assert_int_eq(qk_gguf_writer_end_tensor(w), 0);
    ck_assert_int_eq(qk_gguf_writer_finish(w), 0);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_gguf_writer_free(w);
    g = open_ok(path);
    ck_assert_int_eq(qk_gguf_n_kv(g), 0);
    ck_assert_int_eq(qk_gguf_verify_checksums(g), QK_ENOTFOUND);
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_gguf_writer_rejects_misuse)
{
    qk_gguf_writer *w = NULL;
    ck_assert_int_eq(qk_gguf_writer_new(&w, 48), QK_EINVAL);
    ck_assert_ptr_null(w);
    w = new_writer(0);
    const int64_t ne4[1] = {4}, ne31[2] = {31, 2}, neg[2] = {4, -1};
    char longname[80];
    memset(longname, 'x', 64);
    longname[64] = 0;
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, longname, QK_TYPE_F32, 1, ne4), QK_ELIMIT);
    longname[63] = 0; /* 63 bytes: allowed */
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, longname, QK_TYPE_F32, 1, ne4), 0);
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, longname, QK_TYPE_F32, 1, ne4), QK_EINVAL);
    ck_assert_int_lt(qk_gguf_writer_add_tensor(w, "q", QK_TYPE_Q4_0, 2, ne31), 0);
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, "z", QK_TYPE_F32, 0, ne4), QK_EINVAL);
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, "z", QK_TYPE_F32, 5, ne4), QK_EINVAL);
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, "z", 4, 1, ne4), QK_EINVAL);
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, "z", QK_TYPE_F32, 2, neg), QK_EINVAL);
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, "t1", QK_TYPE_F32, 1, ne4), 0);
    ck_assert_int_eq(qk_gguf_writer_set_arr(w, "k", QK_GGUF_ARRAY, ne4, 1), QK_EINVAL);
    /* data before begin */
    ck_assert_int_eq(qk_gguf_writer_write(w, "abcd", 4), QK_EINVAL);

    const char *path = qk_test_tmp("misuse.gguf");
    qk_afile *f;
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), 0);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "late", 1), QK_EINVAL);
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, "late", QK_TYPE_F32, 1, ne4), QK_EINVAL);
    float d[5] = {1, 2, 3, 4, 5};
    ck_assert_int_eq(qk_gguf_writer_write(w, d, 20), QK_EINVAL); /* 20 > 16 bytes */
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), longname));
    ck_assert_int_eq(qk_gguf_writer_write(w, d, 8), 0);
    ck_assert_int_eq(qk_gguf_writer_end_tensor(w), QK_EINVAL); /* 8 of 16 */
    ck_assert_int_eq(qk_gguf_writer_write(w, d, 12), QK_EINVAL);
    ck_assert_int_eq(qk_gguf_writer_write(w, d + 2, 8), 0);
    ck_assert_int_eq(qk_gguf_writer_end_tensor(w), 0);
    ck_assert_int_eq(qk_gguf_writer_finish(w), QK_EINVAL); /* t1 missing */
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "t1"));
    ck_assert_int_eq(qk_gguf_writer_write(w, d, 16), 0);
    ck_assert_int_eq(qk_gguf_writer_end_tensor(w), 0);
    ck_assert_int_eq(qk_gguf_writer_write(w, d, 1), QK_EINVAL); /* nothing left */
    ck_assert_int_eq(qk_gguf_writer_end_tensor(w), QK_EINVAL);
    ck_assert_int_eq(qk_gguf_writer_finish(w), 0);
    ck_assert_int_eq(qk_gguf_writer_finish(w), QK_EINVAL);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_gguf_writer_free(w);
    qk_gguf *g = open_ok(path);
    ck_assert_int_eq(qk_gguf_verify_checksums(g), 0);
    ck_assert_int_eq(memcmp(qk_gguf_find_tensor(g, longname)->data, d, 16), 0);
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_gguf_writer_alignment_key_must_agree)
{
    const int64_t ne[1] = {4};
    qk_afile *f;
    /* A caller-set general.alignment that contradicts the writer is refused. */
    qk_gguf_writer *w = new_writer(64);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "general.alignment", 32), 0);
    ck_assert_int_eq(qk_afile_open(&f, qk_test_tmp("align.gguf")), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), QK_EINVAL);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "general.alignment"));
    qk_afile_abort(f);
    qk_gguf_writer_free(w);

    /* Removed by the caller: re-added since the padding is not 32. */
    w = new_writer(128);
    ck_assert_int_eq(qk_gguf_writer_remove_kv(w, "general.alignment"), 0);
    ck_assert_int_eq(qk_gguf_writer_add_tensor(w, "t", QK_TYPE_F32, 1, ne), 0);
    ck_assert_int_eq(qk_afile_open(&f, qk_test_tmp("align.gguf")), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), 0);
    ck_assert_int_eq(qk_gguf_writer_write(w, "0123456789abcdef", 16), 0);
    ck_assert_int_eq(qk_gguf_writer_end_tensor(w), 0);
    ck_assert_int_eq(qk_gguf_writer_finish(w), 0);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_gguf_writer_free(w);
    qk_gguf *g = open_ok(qk_test_tmp("align.gguf"));
    ck_assert_uint_eq(qk_gguf_alignment(g), 128);
    ck_assert_uint_eq(qk_gguf_data_offset(g) % 128, 0);
    ck_assert_uint_eq(qk_gguf_file_size(g), qk_gguf_data_offset(g) + 128);
    qk_gguf_close(g);

    /* The default alignment set explicitly is written as asked. */
    w = new_writer(32);
    ck_assert_int_eq(qk_gguf_writer_set_u32(w, "general.alignment", 32), 0);
    ck_assert_int_eq(qk_afile_open(&f, qk_test_tmp("align32.gguf")), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), 0);
    ck_assert_int_eq(qk_gguf_writer_finish(w), 0);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_gguf_writer_free(w);
    g = open_ok(qk_test_tmp("align32.gguf"));
    ck_assert_ptr_nonnull(qk_gguf_find_kv(g, "general.alignment"));
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_gguf_kv_copy_is_deep)
{
    const char *path = qk_test_tmp("copy.gguf");
    write_rt_file(path, 0, 1);
    qk_gguf *g = open_ok(path);
    qk_gguf_kv copies[64];
    int64_t n = qk_gguf_n_kv(g);
    ck_assert_int_le(n, 64);
    for (int64_t i = 0; i < n; i++) {
        ck_assert_int_eq(qk_gguf_kv_copy(&copies[i], qk_gguf_kv_at(g, i)), 0);
        ck_assert(kv_equal(&copies[i], qk_gguf_kv_at(g, i)));
        ck_assert_ptr_ne(copies[i].key.s, qk_gguf_kv_at(g, i)->key.s);
    }
    qk_gguf_close(g); /* the copies own their memory */
    ck_assert_str_eq(copies[0].key.s, "t.u8");
    const qk_gguf_kv *s = NULL;
    for (int64_t i = 0; i < n; i++)
        if (!strcmp(copies[i].key.s, "a.string"))
            s = &copies[i];
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s->strs[3].s, "\xe2\x96\x81the");
    for (int64_t i = 0; i < n; i++) {
        qk_gguf_kv_clear(&copies[i]);
        ck_assert_ptr_null(copies[i].key.s);
    }
    qk_gguf_kv_clear(NULL);

    /* A caller-built string array (one allocation per element) is copied
     * and cleared too; both must come out without leaks under ASan. */
    qk_gguf_kv mine;
    memset(&mine, 0, sizeof mine);
    mine.key.s = strdup("mine");
    mine.key.len = 4;
    mine.type = QK_GGUF_ARRAY;
    mine.arr_type = QK_GGUF_STRING;
    mine.arr_n = 2;
    mine.strs = calloc(2, sizeof *mine.strs);
    ck_assert_ptr_nonnull(mine.strs);
    mine.strs[0].s = strdup("ab");
    mine.strs[0].len = 2;
    mine.strs[1].s = strdup("");
    qk_gguf_kv c;
    ck_assert_int_eq(qk_gguf_kv_copy(&c, &mine), 0);
    ck_assert(kv_equal(&c, &mine));
    qk_gguf_kv_clear(&mine);
    ck_assert_str_eq(c.strs[0].s, "ab");
    qk_gguf_kv_clear(&c);
    /* an invalid source is refused and leaves dst empty */
    mine.type = 42;
    ck_assert_int_eq(qk_gguf_kv_copy(&c, &mine), QK_EINVAL);
    ck_assert_ptr_null(c.key.s);
}
END_TEST

START_TEST(test_gguf_type_names)
{
    ck_assert_str_eq(qk_gguf_type_name(QK_GGUF_U32), "u32");
    ck_assert_str_eq(qk_gguf_type_name(QK_GGUF_STRING), "string");
    ck_assert_str_eq(qk_gguf_type_name(QK_GGUF_F64), "f64");
    ck_assert_str_eq(qk_gguf_type_name(13), "?");
    ck_assert_str_eq(qk_gguf_type_name(-1), "?");
    ck_assert_uint_eq(qk_gguf_type_size(QK_GGUF_BOOL), 1);
    ck_assert_uint_eq(qk_gguf_type_size(QK_GGUF_I16), 2);
    ck_assert_uint_eq(qk_gguf_type_size(QK_GGUF_F32), 4);
    ck_assert_uint_eq(qk_gguf_type_size(QK_GGUF_I64), 8);
    ck_assert_uint_eq(qk_gguf_type_size(QK_GGUF_STRING), 0);
    ck_assert_uint_eq(qk_gguf_type_size(QK_GGUF_ARRAY), 0);
}
END_TEST

/* ------------------------------------------------------------- getters */

START_TEST(test_gguf_getters_check_types)
{
    tb t = {0};
    tb_hdr(&t, 3, 0, 7);
    tb_key(&t, "neg", QK_GGUF_I32);
    tb_u32(&t, (uint32_t)-5);
    tb_key(&t, "pos8", QK_GGUF_I8);
    tb_u8(&t, 9);
    tb_key(&t, "pos64", QK_GGUF_I64);
    tb_u64(&t, 1ull << 40);
    tb_key(&t, "name", QK_GGUF_STRING);
    tb_str(&t, "x");
    tb_key(&t, "flag", QK_GGUF_BOOL);
    tb_u8(&t, 0);
    tb_key(&t, "d", QK_GGUF_F64);
    tb_u64(&t, 0x3ff8000000000000ull); /* 1.5 */
    tb_key(&t, "arr", QK_GGUF_ARRAY);
    tb_u32(&t, QK_GGUF_U32);
    tb_u64(&t, 0);
    const char *path = tb_save(&t, "getters.gguf");
    qk_gguf *g = open_ok(path);
    uint64_t u64;
    uint32_t u32;
    float f32;
    double f64;
    int b;
    const char *s;
    ck_assert_int_eq(qk_gguf_get_uint(g, "neg", &u64), QK_EFORMAT);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "'neg'"));
    ck_assert_int_eq(qk_gguf_get_uint(g, "pos8", &u64), 0);
    ck_assert(u64 == 9);
    ck_assert_int_eq(qk_gguf_get_uint(g, "pos64", &u64), 0);
    ck_assert(u64 == 1ull << 40);
    ck_assert_int_eq(qk_gguf_get_uint(g, "name", &u64), QK_EFORMAT);
    ck_assert_int_eq(qk_gguf_get_u32(g, "pos8", &u32), QK_EFORMAT);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), path));
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "'pos8' has type i8, expected u32"));
    ck_assert_int_eq(qk_gguf_get_u32(g, "missing", &u32), QK_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "missing"));
    ck_assert_int_eq(qk_gguf_get_str(g, "name", &s), 0);
    ck_assert_str_eq(s, "x");
    ck_assert_int_eq(qk_gguf_get_str(g, "flag", &s), QK_EFORMAT);
    ck_assert_int_eq(qk_gguf_get_bool(g, "flag", &b), 0);
    ck_assert_int_eq(b, 0);
    ck_assert_int_eq(qk_gguf_get_bool(g, "name", &b), QK_EFORMAT);
    ck_assert_int_eq(qk_gguf_get_float(g, "d", &f64), 0);
    ck_assert(f64 == 1.5);
    ck_assert_int_eq(qk_gguf_get_f32(g, "d", &f32), QK_EFORMAT);
    ck_assert_int_eq(qk_gguf_get_float(g, "pos8", &f64), QK_EFORMAT);
    ck_assert_int_eq(qk_gguf_get_u32(g, "arr", &u32), QK_EFORMAT);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "array[u32]"));
    ck_assert_int_eq(qk_gguf_verify_checksums(g), QK_ENOTFOUND);
    qk_gguf_close(g);
}
END_TEST

/* ------------------------------------------------------ real GGUF files */

static void check_tensors_in_file(const qk_gguf *g)
{
    const qk_mmap *m = qk_gguf_map(g);
    for (int64_t i = 0; i < qk_gguf_n_tensors(g); i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        ck_assert_ptr_eq(qk_gguf_find_tensor(g, t->name), t);
        ck_assert_uint_le(qk_gguf_data_offset(g) + t->offset + t->nbytes, m->size);
        ck_assert_ptr_eq(t->data, m->data + qk_gguf_data_offset(g) + t->offset);
    }
}

START_TEST(test_gguf_opens_every_real_file)
{
    QK_REQUIRE_DATA(golden, "golden/llamacpp");
    DIR *d = opendir(golden);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".gguf"))
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", golden, e->d_name);
        qk_gguf *g = open_ok(path);
        ck_assert_uint_eq(qk_gguf_version(g), 3);
        ck_assert_int_eq(qk_gguf_n_tensors(g), 48);
        const char *arch;
        ck_assert_int_eq(qk_gguf_get_str(g, "general.architecture", &arch), 0);
        ck_assert_str_eq(arch, "llama");
        check_tensors_in_file(g);
        qk_gguf_close(g);
        n++;
    }
    closedir(d);
    ck_assert_int_ge(n, 28);

    const char *others[] = {"models/stories260K/stories260K.gguf", "models/llama-2-tiny-random/llama-2-tiny-random.gguf",
                            "tokenizers/llama-spm/ggml-vocab-llama-spm.gguf"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        const char *path = qk_test_data(others[i]);
        if (!path) {
            fprintf(stderr, "SKIP part of %s: %s not found\n", __func__, others[i]);
            continue;
        }
        qk_gguf *g = open_ok(path);
        check_tensors_in_file(g);
        qk_gguf_close(g);
    }
}
END_TEST

START_TEST(test_gguf_stories260k_facts)
{
    QK_REQUIRE_DATA(path, "models/stories260K/stories260K.gguf");
    qk_gguf *g = open_ok(path);
    ck_assert_int_eq(qk_gguf_n_tensors(g), 48);
    ck_assert_int_eq(qk_gguf_n_kv(g), 19);
    ck_assert_uint_eq(qk_gguf_alignment(g), 32);
    /* tensor infos end at 14152 (checked with an independent parser) */
    ck_assert_uint_eq(qk_gguf_data_offset(g), 14176);
    uint32_t u32;
    ck_assert_int_eq(qk_gguf_get_u32(g, "llama.embedding_length", &u32), 0);
    ck_assert_uint_eq(u32, 64);
    ck_assert_int_eq(qk_gguf_get_u32(g, "llama.block_count", &u32), 0);
    ck_assert_uint_eq(u32, 5);
    ck_assert_int_eq(qk_gguf_get_u32(g, "llama.attention.head_count_kv", &u32), 0);
    ck_assert_uint_eq(u32, 4);
    float eps;
    ck_assert_int_eq(qk_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps), 0);
    ck_assert(fabsf(eps - 1e-5f) < 1e-9f);
    ck_assert_int_eq(qk_gguf_get_u32(g, "general.architecture", &u32), QK_EFORMAT);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "has type string, expected u32"));
    const qk_gguf_kv *tok = qk_gguf_find_kv(g, "tokenizer.ggml.tokens");
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_eq(tok->arr_type, QK_GGUF_STRING);
    ck_assert_uint_eq(tok->arr_n, 512);
    ck_assert_str_eq(tok->strs[1].s, "<s>");
    const qk_gguf_kv *tt = qk_gguf_find_kv(g, "tokenizer.ggml.token_type");
    ck_assert_int_eq(tt->arr_type, QK_GGUF_I32);
    ck_assert_int_eq(((const int32_t *)tt->arr)[0], 2);
    const qk_gguf_tensor *emb = qk_gguf_find_tensor(g, "token_embd.weight");
    ck_assert_ptr_nonnull(emb);
    ck_assert_int_eq(emb->type, QK_TYPE_F32);
    ck_assert_int_eq(emb->n_dims, 2);
    ck_assert_int_eq(emb->ne[0], 64);
    ck_assert_int_eq(emb->ne[1], 512);
    ck_assert_uint_eq(emb->offset, 0);
    ck_assert_uint_eq(emb->nbytes, 64 * 512 * 4);
    ck_assert_uint_eq(qk_gguf_find_tensor(g, "output_norm.weight")->offset, 131072);

    /* Its data is bit-identical to the llama2.c checkpoint's tok_emb, which
     * follows the 28-byte header. */
    const char *bin = qk_test_data("models/stories260K/stories260K.bin");
    if (bin) {
        size_t n;
        uint8_t *b = qk_test_read_file(bin, &n);
        ck_assert_uint_ge(n, 28 + emb->nbytes);
        ck_assert_int_eq(memcmp(b + 28, emb->data, emb->nbytes), 0);
        free(b);
    }
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_gguf_vocab_only_file)
{
    QK_REQUIRE_DATA(path, "tokenizers/llama-spm/ggml-vocab-llama-spm.gguf");
    qk_gguf *g = open_ok(path);
    ck_assert_int_eq(qk_gguf_n_tensors(g), 0);
    ck_assert_int_eq(qk_gguf_n_kv(g), 22);
    /* the padded data start lies past the end of the file */
    ck_assert_uint_gt(qk_gguf_data_offset(g), qk_gguf_file_size(g));
    const qk_gguf_kv *tok = qk_gguf_find_kv(g, "tokenizer.ggml.tokens");
    ck_assert_ptr_nonnull(tok);
    ck_assert_uint_eq(tok->arr_n, 32000);
    ck_assert_str_eq(tok->strs[0].s, "<unk>");
    const qk_gguf_kv *sc = qk_gguf_find_kv(g, "tokenizer.ggml.scores");
    ck_assert_int_eq(sc->arr_type, QK_GGUF_F32);
    ck_assert_uint_eq(sc->arr_n, 32000);
    int b;
    ck_assert_int_eq(qk_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(qk_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b), 0);
    ck_assert_int_eq(b, 0);
    uint64_t v;
    ck_assert_int_eq(qk_gguf_get_uint(g, "llama.vocab_size", &v), 0);
    ck_assert(v == 32000);
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_gguf_tiny_random_and_kquant_facts)
{
    QK_REQUIRE_DATA(path, "models/llama-2-tiny-random/llama-2-tiny-random.gguf");
    qk_gguf *g = open_ok(path);
    ck_assert_int_eq(qk_gguf_n_tensors(g), 12);
    const qk_gguf_tensor *emb = qk_gguf_find_tensor(g, "token_embd.weight");
    ck_assert_int_eq(emb->type, QK_TYPE_F16);
    ck_assert_int_eq(emb->ne[0], 8);
    ck_assert_int_eq(emb->ne[1], 32000);
    ck_assert_uint_eq(emb->nbytes, 8 * 32000 * 2);
    qk_gguf_close(g);

    QK_REQUIRE_DATA(qk, "golden/llamacpp/stories260K-pad256-q4_k_m.gguf");
    g = open_ok(qk);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "output.weight")->type, QK_TYPE_Q6_K);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "token_embd.weight")->type, QK_TYPE_Q4_K);
    ck_assert_uint_eq(qk_gguf_find_tensor(g, "token_embd.weight")->nbytes, 512 * 144);
    uint32_t qv;
    ck_assert_int_eq(qk_gguf_get_u32(g, "general.quantization_version", &qv), 0);
    ck_assert_uint_eq(qv, 2);
    qk_gguf_close(g);
}
END_TEST

/* Copy every KV and tensor of `src` through the writer; data in two pieces. */
static void rewrite(const char *src, const char *dst, int checksums)
{
    qk_gguf *g = open_ok(src);
    qk_gguf_writer *w = new_writer(qk_gguf_alignment(g));
    qk_gguf_writer_set_checksums(w, checksums);
    for (int64_t i = 0; i < qk_gguf_n_kv(g); i++)
        ck_assert_int_eq(qk_gguf_writer_set_kv(w, qk_gguf_kv_at(g, i)), 0);
    for (int64_t i = 0; i < qk_gguf_n_tensors(g); i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        ck_assert_int_eq(qk_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne), 0);
    }
    qk_afile *f;
    ck_assert_int_eq(qk_afile_open(&f, dst), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), 0);
    for (int64_t i = 0; i < qk_gguf_n_tensors(g); i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        size_t half = (size_t)t->nbytes / 3;
        ck_assert_int_eq(qk_gguf_writer_write(w, t->data, half), 0);
        ck_assert_int_eq(qk_gguf_writer_write(w, t->data + half, (size_t)t->nbytes - half), 0);
        ck_assert_int_eq(qk_gguf_writer_end_tensor(w), 0);
    }
    ck_assert_int_eq(qk_gguf_writer_finish(w), 0);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_gguf_writer_free(w);
    qk_gguf_close(g);
}

static void check_rewrite(const char *rel)
{
    const char *src = qk_test_data(rel);
    if (!src) {
        fprintf(stderr, "SKIP part of rewrite test: %s not found\n", rel);
        return;
    }
    const char *dst = qk_test_tmp("rewrite.gguf");
    rewrite(src, dst, 1);
    qk_gguf *a = open_ok(src), *b = open_ok(dst);
    int64_t nt = qk_gguf_n_tensors(a);
    /* Every KV, unknown ones included, in order; plus the checksums. */
    ck_assert_int_eq(qk_gguf_n_kv(b), qk_gguf_n_kv(a) + (nt > 0));
    for (int64_t i = 0; i < qk_gguf_n_kv(a); i++)
        ck_assert_msg(kv_equal(qk_gguf_kv_at(a, i), qk_gguf_kv_at(b, i)), "%s: KV %s differs", rel,
                      qk_gguf_kv_at(a, i)->key.s);
    ck_assert_int_eq(qk_gguf_n_tensors(b), nt);
    for (int64_t i = 0; i < nt; i++) {
        const qk_gguf_tensor *x = qk_gguf_tensor_at(a, i), *y = qk_gguf_tensor_at(b, i);
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->type, y->type);
        ck_assert_int_eq(x->n_dims, y->n_dims);
        ck_assert_int_eq(memcmp(x->ne, y->ne, sizeof x->ne), 0);
        ck_assert_uint_eq(x->offset, y->offset);
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        ck_assert_int_eq(memcmp(x->data, y->data, x->nbytes), 0);
    }
    if (nt)
        ck_assert_int_eq(qk_gguf_verify_checksums(b), 0);
    qk_gguf_close(b);

    /* Without checksums, llama.cpp's layout is reproduced byte for byte
     * (a vocab-only source may lack the padding up to the data start). */
    rewrite(src, dst, 0);
    size_t na, nb;
    uint8_t *ba = qk_test_read_file(src, &na), *bb = qk_test_read_file(dst, &nb);
    ck_assert_uint_ge(nb, na);
    ck_assert_uint_eq(nb, nt ? na : qk_gguf_data_offset(a));
    ck_assert_msg(memcmp(ba, bb, na) == 0, "%s: rewritten bytes differ", rel);
    free(ba);
    free(bb);
    qk_gguf_close(a);
}

START_TEST(test_gguf_rewrite_real_files)
{
    QK_REQUIRE_DATA(dir, "models/stories260K/stories260K.gguf");
    check_rewrite("models/stories260K/stories260K.gguf");
    check_rewrite("models/llama-2-tiny-random/llama-2-tiny-random.gguf");
    check_rewrite("tokenizers/llama-spm/ggml-vocab-llama-spm.gguf");
    check_rewrite("golden/llamacpp/stories260K-pad256-q4_k_m-imx.gguf");
    check_rewrite("golden/llamacpp/stories260K-pad192-q5_1-pure.gguf");
}
END_TEST

/* ---------------------------------------------------- rejection corpus */

START_TEST(test_gguf_handcrafted_baseline_opens)
{
    /* The template the rejection tests corrupt is itself valid, so each of
     * them fails for the reason it names. */
    tb t = {0};
    tb_good(&t);
    const char *path = tb_save(&t, "good.gguf");
    qk_gguf *g = open_ok(path);
    ck_assert_int_eq(qk_gguf_n_tensors(g), 2);
    ck_assert_uint_eq(qk_gguf_find_tensor(g, "b")->nbytes, 36);
    ck_assert_uint_eq(qk_gguf_find_tensor(g, "b")->data[0], 32);
    qk_gguf_close(g);

    /* version 2 is read the same way */
    tb_hdr(&t, 2, 0, 1);
    tb_kv_u32(&t, "x", 1);
    path = tb_save(&t, "v2.gguf");
    g = open_ok(path);
    ck_assert_uint_eq(qk_gguf_version(g), 2);
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_gguf_rejects_bad_magic)
{
    tb t = {0};
    tb_good(&t);
    t.b[3] = 'X';
    expect_reject(&t, "magic.gguf", QK_EFORMAT, "not a GGUF file");
    tb_raw(&t, "GG", 2);
    expect_reject(&t, "short.gguf", QK_EFORMAT, "not a GGUF file");
    expect_reject(&t, "empty.gguf", QK_EFORMAT, "not a GGUF file");
}
END_TEST

START_TEST(test_gguf_rejects_bad_version)
{
    tb t = {0};
    tb_hdr(&t, 4, 0, 0);
    expect_reject(&t, "v4.gguf", 0, "version 4");
    tb_hdr(&t, 1, 0, 0);
    expect_reject(&t, "v1.gguf", 0, "version 1");
    tb_hdr(&t, 0x03000000u, 0, 0);
    expect_reject(&t, "be.gguf", 0, "big-endian");
}
END_TEST

START_TEST(test_gguf_rejects_huge_counts)
{
    tb t = {0};
    tb_hdr(&t, 3, 0, 1ull << 62);
    expect_reject(&t, "nkv-huge.gguf", QK_ELIMIT, "KV count");
    tb_hdr(&t, 3, 1ull << 62, 0);
    expect_reject(&t, "nt-huge.gguf", QK_ELIMIT, "tensor count");
    tb_hdr(&t, 3, 0, UINT64_MAX); /* -1 */
    expect_reject(&t, "nkv-neg.gguf", QK_EFORMAT, "negative KV count");
    tb_hdr(&t, 3, 1ull << 63, 0);
    expect_reject(&t, "nt-neg.gguf", QK_EFORMAT, "negative tensor count");
    /* within the limits but more than the file can hold */
    tb_hdr(&t, 3, 1000, 1000);
    tb_kv_u32(&t, "x", 1);
    expect_reject(&t, "counts-vs-size.gguf", QK_EFORMAT, "only");
}
END_TEST

START_TEST(test_gguf_rejects_string_length_overflow)
{
    tb t = {0};
    tb_hdr(&t, 3, 0, 1);
    tb_u64(&t, UINT64_MAX); /* key length */
    tb_u32(&t, QK_GGUF_U32);
    tb_u32(&t, 0);
    expect_reject(&t, "strlen-max.gguf", QK_ELIMIT, "key");

    tb_hdr(&t, 3, 0, 1);
    tb_u64(&t, 1000); /* within the limit, past the end */
    tb_raw(&t, "abcdefgh", 8);
    tb_u32(&t, 0);
    expect_reject(&t, "strlen-eof.gguf", QK_EFORMAT, "only");

    tb_hdr(&t, 3, 0, 1);
    tb_key(&t, "s", QK_GGUF_STRING);
    tb_u64(&t, (uint64_t)QK_GGUF_MAX_STRING + 1);
    tb_zeros(&t, 8);
    expect_reject(&t, "strval-limit.gguf", QK_ELIMIT, "string value");
}
END_TEST

START_TEST(test_gguf_rejects_array_count_overflow)
{
    tb t = {0};
    /* over the element limit: refused before any allocation */
    tb_hdr(&t, 3, 0, 1);
    tb_key(&t, "a", QK_GGUF_ARRAY);
    tb_u32(&t, QK_GGUF_U64);
    tb_u64(&t, UINT64_MAX);
    tb_zeros(&t, 16);
    expect_reject(&t, "arr-max.gguf", QK_ELIMIT, "limit");
    /* n * 8 bytes past the end of the file */
    tb_hdr(&t, 3, 0, 1);
    tb_key(&t, "a", QK_GGUF_ARRAY);
    tb_u32(&t, QK_GGUF_U64);
    tb_u64(&t, 1u << 27);
    tb_zeros(&t, 64);
    expect_reject(&t, "arr-eof.gguf", QK_EFORMAT, "past the end");
    /* strings need at least 8 bytes each */
    tb_hdr(&t, 3, 0, 1);
    tb_key(&t, "a", QK_GGUF_ARRAY);
    tb_u32(&t, QK_GGUF_STRING);
    tb_u64(&t, 100);
    tb_zeros(&t, 8 * 99);
    expect_reject(&t, "arr-str.gguf", QK_EFORMAT, "strings");
    /* an element string lying about its length */
    tb_hdr(&t, 3, 0, 1);
    tb_key(&t, "a", QK_GGUF_ARRAY);
    tb_u32(&t, QK_GGUF_STRING);
    tb_u64(&t, 2);
    tb_str(&t, "ok");
    tb_u64(&t, 1ull << 23);
    tb_zeros(&t, 8);
    expect_reject(&t, "arr-elem.gguf", QK_EFORMAT, "array element");
}
END_TEST

START_TEST(test_gguf_rejects_nested_array)
{
    tb t = {0};
    tb_hdr(&t, 3, 0, 1);
    tb_key(&t, "nest", QK_GGUF_ARRAY);
    tb_u32(&t, QK_GGUF_ARRAY);
    tb_u64(&t, 1);
    tb_u32(&t, QK_GGUF_U8);
    tb_u64(&t, 1);
    tb_u8(&t, 0);
    expect_reject(&t, "nested.gguf", QK_EFORMAT, "nested");
}
END_TEST

START_TEST(test_gguf_rejects_unknown_value_type)
{
    tb t = {0};
    tb_hdr(&t, 3, 0, 1);
    tb_key(&t, "k", 13);
    tb_u32(&t, 0);
    expect_reject(&t, "vtype13.gguf", QK_EFORMAT, "unknown value type 13");
    tb_hdr(&t, 3, 0, 1);
    tb_key(&t, "k", 0xffffffffu);
    tb_u32(&t, 0);
    expect_reject(&t, "vtype-neg.gguf", QK_EFORMAT, "unknown value type -1");
    tb_hdr(&t, 3, 0, 1);
    tb_key(&t, "k", QK_GGUF_ARRAY);
    tb_u32(&t, 99);
    tb_u64(&t, 0);
    expect_reject(&t, "etype.gguf", QK_EFORMAT, "unknown array element type 99");
}
END_TEST

START_TEST(test_gguf_rejects_duplicate_key)
{
    tb t = {0};
    tb_hdr(&t, 3, 0, 3);
    tb_kv_u32(&t, "dup.key", 1);
    tb_kv_u32(&t, "other", 2);
    tb_key(&t, "dup.key", QK_GGUF_STRING);
    tb_str(&t, "x");
    expect_reject(&t, "dupkey.gguf", QK_EFORMAT, "duplicate key 'dup.key'");
}
END_TEST

START_TEST(test_gguf_rejects_duplicate_tensor_name)
{
    tb t = {0};
    tb_hdr(&t, 3, 2, 0);
    tb_tinfo(&t, "same", 1, k_ne_a, QK_TYPE_F32, 0);
    tb_tinfo(&t, "same", 1, k_ne_a, QK_TYPE_F32, 32);
    tb_pad(&t, 32);
    tb_zeros(&t, 64);
    expect_reject(&t, "dupname.gguf", QK_EFORMAT, "duplicate tensor name 'same'");
}
END_TEST

START_TEST(test_gguf_rejects_bad_tensor_name)
{
    tb t = {0};
    char name[70];
    memset(name, 'n', 64);
    name[64] = 0;
    tb_hdr(&t, 3, 1, 0);
    tb_tinfo(&t, name, 1, k_ne_a, QK_TYPE_F32, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 32);
    expect_reject(&t, "longname.gguf", QK_ELIMIT, "over the limit of 63");

    tb_hdr(&t, 3, 1, 0);
    tb_u64(&t, 3);
    tb_raw(&t, "a\0b", 3);
    tb_u32(&t, 1);
    tb_u64(&t, 8);
    tb_u32(&t, QK_TYPE_F32);
    tb_u64(&t, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 32);
    expect_reject(&t, "nulname.gguf", QK_EFORMAT, "NUL");
}
END_TEST

START_TEST(test_gguf_rejects_n_dims_0_and_5)
{
    tb t = {0};
    const int64_t ne[5] = {8, 1, 1, 1, 1};
    tb_hdr(&t, 3, 1, 0);
    tb_tinfo(&t, "t", 0, ne, QK_TYPE_F32, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 64);
    expect_reject(&t, "ndims0.gguf", QK_EFORMAT, "n_dims 0");
    tb_hdr(&t, 3, 1, 0);
    tb_tinfo(&t, "t", 5, ne, QK_TYPE_F32, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 64);
    expect_reject(&t, "ndims5.gguf", QK_EFORMAT, "n_dims 5");
}
END_TEST

START_TEST(test_gguf_rejects_negative_ne)
{
    tb t = {0};
    const int64_t ne[2] = {8, -1};
    tb_hdr(&t, 3, 1, 0);
    tb_tinfo(&t, "t", 2, ne, QK_TYPE_F32, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 64);
    expect_reject(&t, "negne.gguf", QK_EFORMAT, "ne[1] = -1 is negative");
}
END_TEST

START_TEST(test_gguf_rejects_ne_product_overflow)
{
    tb t = {0};
    /* element count past INT64_MAX */
    const int64_t ne[3] = {1ll << 32, 1ll << 31, 4};
    tb_hdr(&t, 3, 1, 0);
    tb_tinfo(&t, "t", 3, ne, QK_TYPE_F32, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 64);
    expect_reject(&t, "ne-elems.gguf", QK_EFORMAT, "more elements");
    /* element count fits, byte count does not */
    const int64_t ne2[2] = {1ll << 31, 1ll << 31};
    tb_hdr(&t, 3, 1, 0);
    tb_tinfo(&t, "t", 2, ne2, QK_TYPE_F64, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 64);
    expect_reject(&t, "ne-bytes.gguf", QK_EFORMAT, "overflows");
    /* byte count fits in 64 bits but not in the file */
    const int64_t ne3[2] = {1ll << 20, 1ll << 20};
    tb_hdr(&t, 3, 1, 0);
    tb_tinfo(&t, "t", 2, ne3, QK_TYPE_F32, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 64);
    expect_reject(&t, "ne-big.gguf", QK_EFORMAT, "ends past file size");
}
END_TEST

START_TEST(test_gguf_rejects_unknown_ggml_type)
{
    tb t = {0};
    tb_hdr(&t, 3, 1, 0);
    tb_tinfo(&t, "t", 1, k_ne_a, 4 /* removed Q4_2 */, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 64);
    expect_reject(&t, "type4.gguf", QK_EFORMAT, "unknown ggml type 4");
    tb_hdr(&t, 3, 1, 0);
    tb_tinfo(&t, "t", 1, k_ne_a, 1000, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 64);
    expect_reject(&t, "type1000.gguf", QK_EFORMAT, "unknown ggml type 1000");
}
END_TEST

START_TEST(test_gguf_rejects_ne0_not_block_multiple)
{
    tb t = {0};
    const int64_t ne[2] = {33, 2};
    tb_hdr(&t, 3, 1, 0);
    tb_tinfo(&t, "q", 2, ne, QK_TYPE_Q4_0, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 128);
    expect_reject(&t, "block.gguf", QK_EFORMAT, "not a multiple of Q4_0's block size 32");
}
END_TEST

START_TEST(test_gguf_rejects_offset_not_running_sum)
{
    tb t = {0};
    tb_hdr(&t, 3, 2, 0);
    tb_two_tensors(&t, 64, 32); /* aligned, but 32 expected */
    tb_zeros(&t, 64);
    expect_reject(&t, "offset-sum.gguf", QK_EFORMAT, "offset 64, expected 32");
    /* first tensor not at 0 */
    tb_hdr(&t, 3, 1, 0);
    tb_tinfo(&t, "a", 1, k_ne_a, QK_TYPE_F32, 32);
    tb_pad(&t, 32);
    tb_zeros(&t, 64);
    expect_reject(&t, "offset-first.gguf", QK_EFORMAT, "tensor 'a' offset 32, expected 0");
    /* out of order: both valid positions, swapped */
    tb_hdr(&t, 3, 2, 0);
    tb_tinfo(&t, "a", 1, k_ne_a, QK_TYPE_F32, 64);
    tb_tinfo(&t, "b", 2, k_ne_b, QK_TYPE_Q4_0, 0);
    tb_pad(&t, 32);
    tb_zeros(&t, 128);
    expect_reject(&t, "offset-order.gguf", QK_EFORMAT, "expected 0");
}
END_TEST

START_TEST(test_gguf_rejects_misaligned_offset)
{
    tb t = {0};
    tb_hdr(&t, 3, 2, 0);
    tb_two_tensors(&t, 33, 32);
    tb_zeros(&t, 64);
    expect_reject(&t, "misaligned.gguf", QK_EFORMAT, "not a multiple of the alignment 32");
}
END_TEST

START_TEST(test_gguf_rejects_data_past_eof)
{
    tb t = {0};
    tb_good(&t);
    t.n -= 28 + 35; /* drop the final padding and 35 of b's 36 bytes */
    expect_reject(&t, "pasteof.gguf", QK_EFORMAT, "tensor 'b' data [");
    /* the message states range and file size */
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "ends past file size"));
    /* but a missing final padding is accepted, as llama.cpp does */
    tb_good(&t);
    t.n -= 28;
    qk_gguf *g = open_ok(tb_save(&t, "nopad.gguf"));
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_gguf_rejects_bad_alignment)
{
    tb t = {0};
    tb_hdr(&t, 3, 0, 1);
    tb_kv_u32(&t, "general.alignment", 48);
    expect_reject(&t, "align48.gguf", QK_EFORMAT, "general.alignment 48 is not a power of two");
    tb_hdr(&t, 3, 0, 1);
    tb_kv_u32(&t, "general.alignment", 0);
    expect_reject(&t, "align0.gguf", QK_EFORMAT, "power of two");
    tb_hdr(&t, 3, 0, 1);
    tb_key(&t, "general.alignment", QK_GGUF_U64);
    tb_u64(&t, 64);
    expect_reject(&t, "align-u64.gguf", QK_EFORMAT, "general.alignment has type u64, expected u32");
    tb_hdr(&t, 3, 0, 1);
    tb_key(&t, "general.alignment", QK_GGUF_STRING);
    tb_str(&t, "32");
    expect_reject(&t, "align-str.gguf", QK_EFORMAT, "type string");

    /* a valid non-default alignment governs the offsets */
    tb_hdr(&t, 3, 2, 1);
    tb_kv_u32(&t, "general.alignment", 64);
    tb_two_tensors(&t, 32, 64); /* 32 is the running sum at alignment 32, not 64 */
    expect_reject(&t, "align64-off.gguf", QK_EFORMAT, "not a multiple of the alignment 64");
    tb_hdr(&t, 3, 2, 1);
    tb_kv_u32(&t, "general.alignment", 64);
    tb_two_tensors(&t, 64, 64);
    qk_gguf *g = open_ok(tb_save(&t, "align64.gguf"));
    ck_assert_uint_eq(qk_gguf_alignment(g), 64);
    ck_assert_uint_eq(qk_gguf_data_offset(g) % 64, 0);
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_gguf_verify_rejects_bad_checksum_array)
{
    tb t = {0};
    tb_hdr(&t, 3, 2, 1);
    tb_key(&t, QK_GGUF_CHECKSUM_KEY, QK_GGUF_ARRAY);
    tb_u32(&t, QK_GGUF_U32);
    tb_u64(&t, 2);
    tb_u32(&t, 0);
    tb_u32(&t, 0);
    tb_two_tensors(&t, 32, 32);
    const char *path = tb_save(&t, "csum-u32.gguf");
    qk_gguf *g = open_ok(path);
    ck_assert_int_eq(qk_gguf_verify_checksums(g), QK_EFORMAT);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), path));
    qk_gguf_close(g);

    tb_hdr(&t, 3, 2, 1);
    tb_key(&t, QK_GGUF_CHECKSUM_KEY, QK_GGUF_ARRAY);
    tb_u32(&t, QK_GGUF_U64);
    tb_u64(&t, 1);
    tb_u64(&t, 0);
    tb_two_tensors(&t, 32, 32);
    path = tb_save(&t, "csum-len.gguf");
    g = open_ok(path);
    ck_assert_int_eq(qk_gguf_verify_checksums(g), QK_EFORMAT);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "1 entries for 2 tensors"));
    qk_gguf_close(g);
}
END_TEST

/* Truncate a valid file at every length: each prefix must be refused with a
 * message naming it, never crash. A prefix that keeps every tensor's data
 * (only the final padding missing) is valid. */
static void truncate_everywhere(const char *src, const char *name, uint64_t dense_until, uint64_t step)
{
    size_t n;
    uint8_t *bytes = qk_test_read_file(src, &n);
    qk_gguf *g = open_ok(src);
    uint64_t data_end = qk_gguf_data_offset(g);
    for (int64_t i = 0; i < qk_gguf_n_tensors(g); i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(g, i);
        if (qk_gguf_data_offset(g) + t->offset + t->nbytes > data_end)
            data_end = qk_gguf_data_offset(g) + t->offset + t->nbytes;
    }
    int no_tensors = qk_gguf_n_tensors(g) == 0;
    qk_gguf_close(g);
    const char *path = qk_test_tmp(name);
    qk_test_write_file(path, bytes, n);
    for (uint64_t len = n; len-- > 0;) {
        if (len > dense_until && len % step)
            continue;
        ck_assert_int_eq(truncate(path, (off_t)len), 0);
        g = NULL;
        int rc = qk_gguf_open(&g, path);
        if (len >= data_end && !no_tensors) {
            ck_assert_msg(rc == 0, "prefix %llu: %s", (unsigned long long)len, qk_errmsg());
            qk_gguf_close(g);
            continue;
        }
        ck_assert_msg(rc < 0, "prefix %llu of %s opened", (unsigned long long)len, src);
        ck_assert_ptr_null(g);
        ck_assert_msg(strstr(qk_errmsg(), path) != NULL, "prefix %llu: %s", (unsigned long long)len, qk_errmsg());
    }
    free(bytes);
}

START_TEST(test_gguf_rejects_truncation_everywhere)
{
    const char *src = qk_test_tmp("trunc-src.gguf");
    write_rt_file(src, 64, 1);
    qk_gguf *g = open_ok(src);
    uint64_t dense = qk_gguf_data_offset(g);
    qk_gguf_close(g);
    truncate_everywhere(src, "trunc.gguf", dense, 1); /* every prefix */

    const char *real = qk_test_data("models/stories260K/stories260K.gguf");
    if (real)
        truncate_everywhere(real, "trunc-real.gguf", 14176, 4099);
    const char *vocab = qk_test_data("tokenizers/llama-spm/ggml-vocab-llama-spm.gguf");
    if (vocab) /* one KV at a time would be 700k opens: sample */
        truncate_everywhere(vocab, "trunc-vocab.gguf", 4096, 9973);
}
END_TEST

/* Deterministic random corruption of the header region: whatever the bytes
 * say, open either succeeds with consistent tensors or fails cleanly. */
START_TEST(test_gguf_survives_random_header_corruption)
{
    const char *src = qk_test_tmp("fuzz-src.gguf");
    write_rt_file(src, 32, 1);
    size_t n;
    uint8_t *orig = qk_test_read_file(src, &n);
    qk_gguf *g = open_ok(src);
    size_t hdr = (size_t)qk_gguf_data_offset(g);
    qk_gguf_close(g);
    const char *path = qk_test_tmp("fuzz.gguf");
    uint8_t *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    int opened = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, orig, n);
        int flips = 1 + (int)(s % 3);
        for (int k = 0; k < flips; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(s >> 33) % hdr;
            uint8_t v = (uint8_t)(s >> 20);
            /* bias towards the extremes that make counts and lengths lie */
            buf[at] = (s & 3) == 0 ? 0xff : (s & 3) == 1 ? 0x80 : v;
        }
        qk_test_write_file(path, buf, n);
        g = NULL;
        if (qk_gguf_open(&g, path) == 0) {
            opened++;
            check_tensors_in_file(g);
            qk_gguf_verify_checksums(g);
            qk_gguf_close(g);
        } else {
            ck_assert_ptr_null(g);
            ck_assert_ptr_nonnull(strstr(qk_errmsg(), path));
        }
    }
    ck_assert_int_lt(opened, 3000);
    free(buf);
    free(orig);
}
END_TEST

Suite *qk_test_suite_gguf(void)
{
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("gguf");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_gguf_roundtrip_all_types);
    tcase_add_test(tc, test_gguf_roundtrip_default_alignment_no_checksums);
    tcase_add_test(tc, test_gguf_writer_set_replaces_in_place);
    tcase_add_test(tc, test_gguf_writer_replaces_copied_checksum_key);
    tcase_add_test(tc, test_gguf_writer_rejects_misuse);
    tcase_add_test(tc, test_gguf_writer_alignment_key_must_agree);
    tcase_add_test(tc, test_gguf_kv_copy_is_deep);
    tcase_add_test(tc, test_gguf_type_names);
    tcase_add_test(tc, test_gguf_getters_check_types);
    tcase_add_test(tc, test_gguf_opens_every_real_file);
    tcase_add_test(tc, test_gguf_stories260k_facts);
    tcase_add_test(tc, test_gguf_vocab_only_file);
    tcase_add_test(tc, test_gguf_tiny_random_and_kquant_facts);
    tcase_add_test(tc, test_gguf_rewrite_real_files);
    tcase_add_test(tc, test_gguf_handcrafted_baseline_opens);
    tcase_add_test(tc, test_gguf_rejects_bad_magic);
    tcase_add_test(tc, test_gguf_rejects_bad_version);
    tcase_add_test(tc, test_gguf_rejects_huge_counts);
    tcase_add_test(tc, test_gguf_rejects_string_length_overflow);
    tcase_add_test(tc, test_gguf_rejects_array_count_overflow);
    tcase_add_test(tc, test_gguf_rejects_nested_array);
    tcase_add_test(tc, test_gguf_rejects_unknown_value_type);
    tcase_add_test(tc, test_gguf_rejects_duplicate_key);
    tcase_add_test(tc, test_gguf_rejects_duplicate_tensor_name);
    tcase_add_test(tc, test_gguf_rejects_bad_tensor_name);
    tcase_add_test(tc, test_gguf_rejects_n_dims_0_and_5);
    tcase_add_test(tc, test_gguf_rejects_negative_ne);
    tcase_add_test(tc, test_gguf_rejects_ne_product_overflow);
    tcase_add_test(tc, test_gguf_rejects_unknown_ggml_type);
    tcase_add_test(tc, test_gguf_rejects_ne0_not_block_multiple);
    tcase_add_test(tc, test_gguf_rejects_offset_not_running_sum);
    tcase_add_test(tc, test_gguf_rejects_misaligned_offset);
    tcase_add_test(tc, test_gguf_rejects_data_past_eof);
    tcase_add_test(tc, test_gguf_rejects_bad_alignment);
    tcase_add_test(tc, test_gguf_verify_rejects_bad_checksum_array);
    tcase_add_test(tc, test_gguf_rejects_truncation_everywhere);
    tcase_add_test(tc, test_gguf_survives_random_header_corruption);
    suite_add_tcase(s, tc);
    return s;
}

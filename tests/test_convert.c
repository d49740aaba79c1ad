/* Tests of qk-convert and qk-inspect, run as built binaries. */
#include "qk_test.h"

#include <dirent.h>
#include <math.h>

#include "quantkit/gguf.h"
#include "quantkit/model.h"
#include "quantkit/safetensors.h"

#define BIN "models/stories260K/stories260K.bin"
#define TOK "models/stories260K/tok512.bin"
#define GOLD "golden/llamacpp/stories260K-f32.gguf"

static void assert_tensor_bytes_equal(const qk_gguf *a, const qk_gguf *b, int allow_missing_output)
{
    for (int64_t i = 0; i < qk_gguf_n_tensors(b); i++) {
        const qk_gguf_tensor *tb = qk_gguf_tensor_at(b, i);
        const qk_gguf_tensor *ta = qk_gguf_find_tensor(a, tb->name);
        if (!ta && allow_missing_output && !strcmp(tb->name, "output.weight"))
            continue;
        ck_assert_msg(ta != NULL, "tensor %s missing", tb->name);
        ck_assert_int_eq(ta->type, tb->type);
        ck_assert_int_eq(ta->n_dims, tb->n_dims);
        for (int d = 0; d < ta->n_dims; d++)
            ck_assert_int_eq(ta->ne[d], tb->ne[d]);
        ck_assert_uint_eq(ta->nbytes, tb->nbytes);
        ck_assert_msg(memcmp(ta->data, tb->data, ta->nbytes) == 0, "tensor %s differs", tb->name);
    }
}

static void assert_same_tensor_set(const qk_gguf *a, const qk_gguf *b)
{
    ck_assert_int_eq(qk_gguf_n_tensors(a), qk_gguf_n_tensors(b));
    assert_tensor_bytes_equal(a, b, 0);
}

static void convert_ok(const char *args)
{
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s %s", qk_test_tool("qk-convert"), args);
    ck_assert_msg(rc == 0, "qk-convert %s: exit %d: %s", args, rc, err);
    free(err);
}

START_TEST(test_convert_llama2c_matches_llamacpp)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    QK_REQUIRE_DATA(gold, GOLD);
    const char *out = qk_test_tmp("s.gguf");
    char args[8192];
    snprintf(args, sizeof args, "%s --vocab %s -o %s", bin, tok, out);
    convert_ok(args);
    qk_gguf *a, *b;
    ck_assert_msg(qk_gguf_open(&a, out) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_gguf_open(&b, gold), 0);
    /* every tensor of llama.cpp's conversion, bit-identical (output.weight is tied here) */
    assert_tensor_bytes_equal(a, b, 1);
    /* tokens, scores and token types equal llama.cpp's */
    const char *keys[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"};
    for (int k = 0; k < 3; k++) {
        const qk_gguf_kv *ka = qk_gguf_find_kv(a, keys[k]), *kb = qk_gguf_find_kv(b, keys[k]);
        ck_assert_ptr_nonnull(ka);
        ck_assert_ptr_nonnull(kb);
        ck_assert_int_eq(ka->arr_type, kb->arr_type);
        ck_assert_uint_eq(ka->arr_n, kb->arr_n);
        for (uint64_t i = 0; i < ka->arr_n; i++) {
            if (ka->arr_type == QK_GGUF_STRING) {
                ck_assert_uint_eq(ka->strs[i].len, kb->strs[i].len);
                ck_assert_msg(memcmp(ka->strs[i].s, kb->strs[i].s, ka->strs[i].len) == 0, "token %llu differs",
                              (unsigned long long)i);
            } else {
                ck_assert(memcmp((char *)ka->arr + 4 * i, (char *)kb->arr + 4 * i, 4) == 0);
            }
        }
    }
    uint32_t v;
    ck_assert_int_eq(qk_gguf_get_u32(a, "llama.embedding_length", &v), 0);
    ck_assert_uint_eq(v, 64);
    ck_assert_int_eq(qk_gguf_get_u32(a, "llama.attention.head_count_kv", &v), 0);
    ck_assert_uint_eq(v, 4);
    ck_assert_int_eq(qk_gguf_verify_checksums(a), 0);
    qk_gguf_close(a);
    qk_gguf_close(b);
}
END_TEST

START_TEST(test_convert_hf_dtypes)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    QK_REQUIRE_DATA(f32, "models/stories260K-hf/float32/config.json");
    QK_REQUIRE_DATA(f16, "models/stories260K-hf/float16/config.json");
    QK_REQUIRE_DATA(bf16, "models/stories260K-hf/bfloat16/config.json");
    char args[8192], dir[4096];
    const char *ref = qk_test_tmp("ref.gguf");
    snprintf(args, sizeof args, "%s --vocab %s -o %s", bin, tok, ref);
    convert_ok(args);

    snprintf(dir, sizeof dir, "%s", f32);
    *strrchr(dir, '/') = 0;
    const char *o32 = qk_test_tmp("hf32.gguf");
    snprintf(args, sizeof args, "%s --vocab %s -o %s", dir, tok, o32);
    convert_ok(args);
    qk_gguf *r, *g;
    ck_assert_int_eq(qk_gguf_open(&r, ref), 0);
    ck_assert_int_eq(qk_gguf_open(&g, o32), 0);
    assert_same_tensor_set(r, g); /* Q/K permutation exactly undone */
    qk_gguf_close(g);

    /* F16/BF16 sources with --outtype f32 give exactly the widened values */
    const char *srcs[2] = {f16, bf16};
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof dir, "%s", srcs[k]);
        *strrchr(dir, '/') = 0;
        const char *o = qk_test_tmp(k ? "hfbf16.gguf" : "hf16.gguf");
        snprintf(args, sizeof args, "%s --vocab %s --outtype f32 -o %s", dir, tok, o);
        convert_ok(args);
        qk_model *m;
        qk_model_opts mo = {.no_vocab = 1};
        ck_assert_int_eq(qk_model_open(&m, dir, &mo), 0);
        ck_assert_int_eq(qk_gguf_open(&g, o), 0);
        for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
            const qk_model_tensor *t = qk_model_tensor_at(m, i);
            const qk_gguf_tensor *gt = qk_gguf_find_tensor(g, t->name);
            ck_assert_ptr_nonnull(gt);
            ck_assert_int_eq(gt->type, QK_TYPE_F32);
            const uint8_t *src_base = t->data;
            for (int64_t row = 0; row < qk_model_tensor_rows(t); row++) {
                int64_t sr = t->perm_heads ? qk_rope_perm_row(row, t->ne[1], t->perm_heads) : row;
                for (int64_t j = 0; j < t->ne[0]; j++) {
                    uint16_t h = qk_rd_u16(src_base + 2 * (sr * t->ne[0] + j));
                    float want = k ? qk_bf16_to_f32(h) : qk_fp16_to_f32(h);
                    float got;
                    memcpy(&got, gt->data + 4 * (row * t->ne[0] + j), 4);
                    ck_assert_msg(memcmp(&want, &got, 4) == 0, "%s[%lld,%lld]", t->name, (long long)row,
                                  (long long)j);
                }
            }
            /* and close to the F32 original */
            const qk_gguf_tensor *rt = qk_gguf_find_tensor(r, t->name);
            for (int64_t e = 0; e < (int64_t)(rt->nbytes / 4); e++) {
                float a, b;
                memcpy(&a, rt->data + 4 * e, 4);
                memcpy(&b, gt->data + 4 * e, 4);
                ck_assert(fabsf(a - b) <= fabsf(a) / 128 + 1e-6f);
            }
        }
        qk_gguf_close(g);
        qk_model_close(m);
    }
    /* F16 source kept as F16 by default */
    snprintf(dir, sizeof dir, "%s", f16);
    *strrchr(dir, '/') = 0;
    const char *o16 = qk_test_tmp("keep16.gguf");
    snprintf(args, sizeof args, "%s --vocab %s -o %s", dir, tok, o16);
    convert_ok(args);
    ck_assert_int_eq(qk_gguf_open(&g, o16), 0);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "blk.0.attn_q.weight")->type, QK_TYPE_F16);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "blk.0.attn_norm.weight")->type, QK_TYPE_F32);
    uint32_t ft;
    ck_assert_int_eq(qk_gguf_get_u32(g, "general.file_type", &ft), 0);
    ck_assert_uint_eq(ft, 1);
    qk_gguf_close(g);
    qk_gguf_close(r);
}
END_TEST

START_TEST(test_convert_round_trip_hf_gguf_hf_gguf)
{
    QK_REQUIRE_DATA(tok, TOK);
    QK_REQUIRE_DATA(f32, "models/stories260K-hf/float32/config.json");
    char dir[4096], args[8192];
    snprintf(dir, sizeof dir, "%s", f32);
    *strrchr(dir, '/') = 0;
    const char *g1 = qk_test_tmp("rt1.gguf"), *hf = qk_test_tmp("rt-hf"), *g2 = qk_test_tmp("rt2.gguf");
    snprintf(args, sizeof args, "%s --vocab %s -o %s", dir, tok, g1);
    convert_ok(args);
    snprintf(args, sizeof args, "%s --to safetensors -o %s", g1, hf);
    convert_ok(args);
    ck_assert_int_eq(qk_test_count_entries(hf, "config.json"), 1);
    ck_assert_int_eq(qk_test_count_entries(hf, "model.safetensors"), 1);
    ck_assert_int_eq(qk_test_count_entries(hf, "tokenizer.json"), 1);
    /* the exported safetensors equal the original HF tensors byte for byte */
    char p1[4200], p2[4200];
    snprintf(p1, sizeof p1, "%s/model.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model.safetensors", hf);
    qk_safetensors *s1, *s2;
    ck_assert_int_eq(qk_safetensors_open(&s1, p1), 0);
    ck_assert_msg(qk_safetensors_open(&s2, p2) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_safetensors_n_tensors(s1), qk_safetensors_n_tensors(s2));
    for (int64_t i = 0; i < qk_safetensors_n_tensors(s1); i++) {
        const qk_st_tensor *a = qk_safetensors_tensor_at(s1, i);
        const qk_st_tensor *b = qk_safetensors_find(s2, a->name);
        ck_assert_msg(b != NULL, "%s missing", a->name);
        ck_assert_uint_eq(a->nbytes, b->nbytes);
        ck_assert_msg(memcmp(a->data, b->data, a->nbytes) == 0, "%s differs", a->name);
    }
    qk_safetensors_close(s1);
    qk_safetensors_close(s2);
    /* and back to GGUF: identical tensors */
    snprintf(args, sizeof args, "%s -o %s", hf, g2);
    convert_ok(args);
    qk_gguf *a, *b;
    ck_assert_int_eq(qk_gguf_open(&a, g1), 0);
    ck_assert_int_eq(qk_gguf_open(&b, g2), 0);
    assert_same_tensor_set(a, b);
    qk_gguf_close(a);
    qk_gguf_close(b);
}
END_TEST

START_TEST(test_convert_pad_ffn)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    const char *out = qk_test_tmp("pad.gguf");
    char args[8192], *so = NULL;
    snprintf(args, sizeof args, "%s %s --vocab %s --pad-ffn 32 -o %s", qk_test_tool("qk-convert"), bin, tok, out);
    ck_assert_int_eq(qk_test_run(&so, NULL, "%s", args), 0);
    ck_assert_ptr_nonnull(strstr(so, "172 -> 192"));
    free(so);
    qk_gguf *g;
    ck_assert_int_eq(qk_gguf_open(&g, out), 0);
    uint32_t v;
    ck_assert_int_eq(qk_gguf_get_u32(g, "llama.feed_forward_length", &v), 0);
    ck_assert_uint_eq(v, 192);
    const qk_gguf_tensor *d = qk_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    ck_assert_int_eq(d->ne[0], 192);
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_convert_usage_errors)
{
    char *err = NULL, *out = NULL;
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s", qk_test_tool("qk-convert")), 2);
    ck_assert_ptr_nonnull(strstr(err, "missing INPUT"));
    free(err);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s x.bin -o y --outtype q4_0", qk_test_tool("qk-convert")), 2);
    free(err);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s --bogus", qk_test_tool("qk-convert")), 2);
    free(err);
    ck_assert_int_eq(qk_test_run(&out, NULL, "%s --help", qk_test_tool("qk-convert")), 0);
    ck_assert_ptr_nonnull(strstr(out, "Usage: qk-convert"));
    free(out);
    ck_assert_int_eq(qk_test_run(&out, NULL, "%s --version", qk_test_tool("qk-convert")), 0);
    ck_assert_ptr_nonnull(strstr(out, QK_VERSION));
    free(out);
}
END_TEST

/* A broken input gives exit 1, one line naming the file, and no output. */
static void assert_rejected(const char *input, const char *extra, const char *must_contain)
{
    const char *out = qk_test_tmp("broken-out.gguf");
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s '%s' %s -o '%s'", qk_test_tool("qk-convert"), input, extra, out);
    ck_assert_msg(rc == 1, "exit %d for %s: %s", rc, input, err);
    ck_assert_msg(strstr(err, "qk-convert: ") == err, "message: %s", err);
    ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "not one line: %s", err);
    if (must_contain)
        ck_assert_msg(strstr(err, must_contain) != NULL, "'%s' not in: %s", must_contain, err);
    ck_assert(!qk_file_exists(out));
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "qk-tmp"), 0);
    free(err);
}

START_TEST(test_convert_rejects_broken_inputs)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    QK_REQUIRE_DATA(st, "models/stories260K-hf/float32/model.safetensors");
    QK_REQUIRE_DATA(gg, "models/stories260K/stories260K.gguf");
    size_t n;
    char extra[4200];
    snprintf(extra, sizeof extra, "--vocab '%s'", tok);
    /* llama2.c: truncated at many points, extra bytes */
    uint8_t *b = qk_test_read_file(bin, &n);
    const char *p = qk_test_tmp("broken.bin");
    size_t cuts[] = {0, 3, 27, 28, 1000, n / 2, n - 4, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        qk_test_write_file(p, b, cuts[i]);
        assert_rejected(p, extra, "broken.bin");
    }
    uint8_t *big = malloc(n + 4);
    memcpy(big, b, n);
    memset(big + n, 0, 4);
    qk_test_write_file(p, big, n + 4);
    assert_rejected(p, extra, "broken.bin");
    free(big);
    free(b);
    /* GGUF: truncated, bad magic tail, bad version */
    b = qk_test_read_file(gg, &n);
    p = qk_test_tmp("broken.gguf");
    size_t gcuts[] = {4, 8, 23, 24, 100, 5000, n / 2, n - 1};
    for (size_t i = 0; i < sizeof gcuts / sizeof gcuts[0]; i++) {
        qk_test_write_file(p, b, gcuts[i]);
        assert_rejected(p, "", "broken.gguf");
    }
    b[4] = 9; /* version 9 */
    qk_test_write_file(p, b, n);
    assert_rejected(p, "", "broken.gguf");
    free(b);
    /* safetensors: header length beyond the file, truncated data */
    b = qk_test_read_file(st, &n);
    const char *dir = qk_test_tmp("brokenhf");
    {
        char cfgsrc[4096];
        snprintf(cfgsrc, sizeof cfgsrc, "%s", st);
        *strrchr(cfgsrc, '/') = 0;
        ck_assert_int_eq(qk_test_run(NULL, NULL, "mkdir -p '%s' && cp '%s/config.json' '%s/'", dir, cfgsrc, dir), 0);
    }
    char stp[4200];
    snprintf(stp, sizeof stp, "%s/model.safetensors", dir);
    qk_test_write_file(stp, b, n - 100);
    assert_rejected(dir, extra, "model.safetensors");
    uint8_t *h = malloc(n);
    memcpy(h, b, n);
    qk_wr_u64(h, (uint64_t)n * 4);
    qk_test_write_file(stp, h, n);
    assert_rejected(dir, extra, "model.safetensors");
    free(h);
    free(b);
    /* a NaN weight is refused naming the tensor */
    b = qk_test_read_file(bin, &n);
    float nan = NAN;
    memcpy(b + 28 + 4 * 100, &nan, 4);
    p = qk_test_tmp("nan.bin");
    qk_test_write_file(p, b, n);
    assert_rejected(p, extra, "token_embd.weight");
    free(b);
    /* missing input, missing output directory */
    assert_rejected("/nonexistent/model.bin", extra, "/nonexistent/model.bin");
    char *err = NULL;
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s %s %s -o /nonexistent-dir/x.gguf", qk_test_tool("qk-convert"), bin, extra), 1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent-dir/x.gguf"));
    free(err);
}
END_TEST

START_TEST(test_convert_disk_full_leaves_nothing)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    const char *out = qk_test_tmp("full.gguf");
    char *err = NULL;
    /* ulimit -f counts 1024-byte blocks: 200 KB is less than the model */
    int rc = qk_test_run(NULL, &err, "ulimit -f 200; %s %s --vocab %s -o %s", qk_test_tool("qk-convert"), bin, tok, out);
    ck_assert_int_eq(rc, 1);
    ck_assert_ptr_nonnull(strstr(err, "full.gguf"));
    ck_assert(!qk_file_exists(out));
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "qk-tmp"), 0);
    free(err);
}
END_TEST

/* ------------------------------------------------------------- qk-inspect */

static int count_ggufs(const char *dir, char paths[][4096], int max)
{
    int n = 0;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.gguf' | sort", dir);
    FILE *f = popen(cmd, "r");
    if (!f)
        return 0;
    while (n < max && fgets(paths[n], 4096, f)) {
        paths[n][strcspn(paths[n], "\n")] = 0;
        n++;
    }
    pclose(f);
    return n;
}

START_TEST(test_inspect_every_shared_gguf)
{
    const char *d = qk_test_data_dir();
    if (!d) {
        fprintf(stderr, "SKIP %s: shared test data not found\n", __func__);
        return;
    }
    static char paths[128][4096];
    int n = count_ggufs(d, paths, 128);
    ck_assert_int_gt(n, 30);
    for (int i = 0; i < n; i++) {
        char *out = NULL, *err = NULL;
        int rc = qk_test_run(&out, &err, "%s --verify '%s'", qk_test_tool("qk-inspect"), paths[i]);
        ck_assert_msg(rc == 0, "%s: exit %d: %s", paths[i], rc, err);
        ck_assert_ptr_nonnull(strstr(out, "GGUF v3"));
        /* types and sizes agree with the reader's own view */
        qk_gguf *g;
        ck_assert_int_eq(qk_gguf_open(&g, paths[i]), 0);
        for (int64_t k = 0; k < qk_gguf_n_tensors(g); k++) {
            const qk_gguf_tensor *t = qk_gguf_tensor_at(g, k);
            char line[256];
            snprintf(line, sizeof line, "%s ", t->name);
            const char *at = strstr(out, line);
            ck_assert_msg(at != NULL, "%s not listed", t->name);
            ck_assert_ptr_nonnull(strstr(at, qk_type_name(t->type)));
        }
        if (strstr(paths[i], "q4_k_m"))
            ck_assert_ptr_nonnull(strstr(out, "Q6_K"));
        qk_gguf_close(g);
        free(out);
        free(err);
    }
}
END_TEST

START_TEST(test_inspect_verify_detects_flipped_byte)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    const char *out = qk_test_tmp("v.gguf");
    char args[8192];
    snprintf(args, sizeof args, "%s --vocab %s -o %s", bin, tok, out);
    convert_ok(args);
    char *so = NULL, *err = NULL;
    ck_assert_int_eq(qk_test_run(&so, NULL, "%s --verify %s", qk_test_tool("qk-inspect"), out), 0);
    ck_assert_ptr_nonnull(strstr(so, "match their stored"));
    free(so);
    size_t n;
    uint8_t *b = qk_test_read_file(out, &n);
    qk_gguf *g;
    ck_assert_int_eq(qk_gguf_open(&g, out), 0);
    const qk_gguf_tensor *t = qk_gguf_find_tensor(g, "blk.3.ffn_up.weight");
    size_t off = (size_t)(t->data - qk_gguf_map(g)->data) + 77;
    qk_gguf_close(g);
    b[off] ^= 0x10;
    const char *bad = qk_test_tmp("flipped.gguf");
    qk_test_write_file(bad, b, n);
    free(b);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s --verify %s", qk_test_tool("qk-inspect"), bad), 1);
    ck_assert_ptr_nonnull(strstr(err, "blk.3.ffn_up.weight"));
    ck_assert_ptr_nonnull(strstr(err, "flipped.gguf"));
    free(err);
    /* without --verify the listing still works */
    ck_assert_int_eq(qk_test_run(NULL, NULL, "%s %s", qk_test_tool("qk-inspect"), bad), 0);
}
END_TEST

START_TEST(test_inspect_json_and_other_formats)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(st, "models/stories260K-hf/bfloat16/model.safetensors");
    QK_REQUIRE_DATA(gg, "models/stories260K/stories260K.gguf");
    char *out = NULL;
    ck_assert_int_eq(qk_test_run(&out, NULL, "%s --json %s", qk_test_tool("qk-inspect"), gg), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"parameters\":"));
    ck_assert_ptr_nonnull(strstr(out, "\"token_embd.weight\""));
    free(out);
    ck_assert_int_eq(qk_test_run(&out, NULL, "%s %s", qk_test_tool("qk-inspect"), st), 0);
    ck_assert_ptr_nonnull(strstr(out, "BF16"));
    ck_assert_ptr_nonnull(strstr(out, "model.layers.0.self_attn.q_proj.weight"));
    free(out);
    ck_assert_int_eq(qk_test_run(&out, NULL, "%s --verify %s", qk_test_tool("qk-inspect"), bin), 0);
    ck_assert_ptr_nonnull(strstr(out, "hidden_dim 172"));
    free(out);
    ck_assert_int_eq(qk_test_run(NULL, NULL, "%s", qk_test_tool("qk-inspect")), 2);
    ck_assert_int_eq(qk_test_run(NULL, NULL, "%s /nonexistent.gguf", qk_test_tool("qk-inspect")), 1);
}
END_TEST

Suite *qk_test_suite_convert(void)
{
    Suite *s = suite_create("convert");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_convert_llama2c_matches_llamacpp);
    tcase_add_test(tc, test_convert_hf_dtypes);
    tcase_add_test(tc, test_convert_round_trip_hf_gguf_hf_gguf);
    tcase_add_test(tc, test_convert_pad_ffn);
    tcase_add_test(tc, test_convert_usage_errors);
    tcase_add_test(tc, test_convert_rejects_broken_inputs);
    tcase_add_test(tc, test_convert_disk_full_leaves_nothing);
    suite_add_tcase(s, tc);
    return s;
}

Suite *qk_test_suite_inspect(void)
{
    Suite *s = suite_create("inspect");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_inspect_every_shared_gguf);
    tcase_add_test(tc, test_inspect_verify_detects_flipped_byte);
    tcase_add_test(tc, test_inspect_json_and_other_formats);
    suite_add_tcase(s, tc);
    return s;
}

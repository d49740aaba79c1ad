/* Tests of quantize/ and the qk-quantize tool. */
#include "qk_test.h"

#include <float.h>
#include <math.h>
#include <unistd.h>

#include "quantkit/gguf.h"
#include "quantkit/model.h"
#include "quantkit/quantize.h"

#define G "golden/llamacpp/"
#define BIN "models/stories260K/stories260K.bin"
#define TOK "models/stories260K/tok512.bin"

static void quantize_ok(const char *args)
{
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s -q %s", qk_test_tool("qk-quantize"), args);
    ck_assert_msg(rc == 0, "qk-quantize %s: exit %d: %s", args, rc, err);
    free(err);
}

/* Every tensor of `golden` has the same type and bytes in `ours`. */
static void assert_same_tensors(const char *ours, const char *golden)
{
    qk_gguf *a, *b;
    ck_assert_msg(qk_gguf_open(&a, ours) == 0, "%s", qk_errmsg());
    ck_assert_int_eq(qk_gguf_open(&b, golden), 0);
    ck_assert_int_eq(qk_gguf_n_tensors(a), qk_gguf_n_tensors(b));
    for (int64_t i = 0; i < qk_gguf_n_tensors(b); i++) {
        const qk_gguf_tensor *tb = qk_gguf_tensor_at(b, i);
        const qk_gguf_tensor *ta = qk_gguf_find_tensor(a, tb->name);
        ck_assert_msg(ta != NULL, "%s missing", tb->name);
        ck_assert_msg(ta->type == tb->type, "%s: type %s, llama.cpp %s", tb->name, qk_type_name(ta->type),
                      qk_type_name(tb->type));
        ck_assert_uint_eq(ta->nbytes, tb->nbytes);
        ck_assert_msg(memcmp(ta->data, tb->data, ta->nbytes) == 0, "%s: bytes differ from %s", tb->name, golden);
    }
    uint32_t ft_a, ft_b, qv;
    ck_assert_int_eq(qk_gguf_get_u32(a, "general.file_type", &ft_a), 0);
    ck_assert_int_eq(qk_gguf_get_u32(b, "general.file_type", &ft_b), 0);
    ck_assert_uint_eq(ft_a, ft_b);
    ck_assert_int_eq(qk_gguf_get_u32(a, "general.quantization_version", &qv), 0);
    ck_assert_uint_eq(qv, 2);
    ck_assert_int_eq(qk_gguf_verify_checksums(a), 0);
    ck_assert_ptr_nonnull(qk_gguf_find_kv(a, "quantkit.source_xxh3"));
    ck_assert_int_ne(qk_gguf_find_kv(a, "quantkit.source_xxh3")->v.u64, 0);
    qk_gguf_close(a);
    qk_gguf_close(b);
}

START_TEST(test_quantize_pure_reference_types_match_llamacpp_bytes)
{
    QK_REQUIRE_DATA(src, G "stories260K-pad192-f32.gguf");
    const char *types[] = {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char gold[256], args[8192];
        snprintf(gold, sizeof gold, G "stories260K-pad192-%s-pure.gguf", types[i]);
        const char *g = qk_test_data(gold);
        ck_assert_ptr_nonnull(g);
        const char *out = qk_test_tmp("pure.gguf");
        snprintf(args, sizeof args, "--pure %s %s %s", src, out, types[i]);
        quantize_ok(args);
        assert_same_tensors(out, g);
    }
}
END_TEST

START_TEST(test_quantize_k_types_and_mix_match_llamacpp)
{
    QK_REQUIRE_DATA(src, G "stories260K-pad256-f32.gguf");
    const char *types[] = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_xs", "q4_0", "q8_0"};
    char gold[256], args[8192];
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        snprintf(gold, sizeof gold, G "stories260K-pad256-%s-pure.gguf", types[i]);
        const char *g = qk_test_data(gold);
        ck_assert_ptr_nonnull(g);
        const char *out = qk_test_tmp("k.gguf");
        snprintf(args, sizeof args, "--pure %s %s %s", src, out, types[i]);
        quantize_ok(args);
        assert_same_tensors(out, g);
    }
    /* llama.cpp's default Q4_K_M mix: same type per tensor, same bytes */
    const char *g = qk_test_data(G "stories260K-pad256-q4_k_m.gguf");
    const char *out = qk_test_tmp("q4km.gguf");
    snprintf(args, sizeof args, "%s %s Q4_K_M", src, out);
    quantize_ok(args);
    assert_same_tensors(out, g);
}
END_TEST

START_TEST(test_quantize_unpadded_falls_back_and_pad_ffn_avoids_it)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    int64_t n;
    const qk_ftype_info *l = qk_ftype_list(&n);
    for (int64_t i = 0; i < n; i++) {
        char *so = NULL, *err = NULL;
        const char *out = qk_test_tmp("fb.gguf");
        int rc = qk_test_run(&so, &err, "%s %s %s %s --vocab %s", qk_test_tool("qk-quantize"), bin, out, l[i].name, tok);
        ck_assert_msg(rc == 0, "%s: %s", l[i].name, err);
        const qk_type_traits *bt = qk_type_get(l[i].base_type);
        if (bt->is_quantized) /* 172-wide ffn_down cannot hold any 32-block */
            ck_assert_msg(strstr(so, "fallback: 172 columns") != NULL, "%s: no fallback reported", l[i].name);
        qk_gguf *g;
        ck_assert_int_eq(qk_gguf_open(&g, out), 0);
        const qk_gguf_tensor *d = qk_gguf_find_tensor(g, "blk.0.ffn_down.weight");
        if (bt->is_quantized)
            ck_assert_int_eq(d->type, QK_TYPE_F16);
        qk_gguf_close(g);
        free(so);
        free(err);
    }
    /* with --pad-ffn 32 a 32-block type needs no fallback */
    char *so = NULL;
    const char *out = qk_test_tmp("padded.gguf");
    ck_assert_int_eq(qk_test_run(&so, NULL, "%s --pure %s %s Q4_0 --vocab %s --pad-ffn 32", qk_test_tool("qk-quantize"),
                                 bin, out, tok), 0);
    ck_assert_ptr_null(strstr(so, "fallback"));
    free(so);
    qk_gguf *g;
    ck_assert_int_eq(qk_gguf_open(&g, out), 0);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "blk.0.ffn_down.weight")->type, QK_TYPE_Q4_0);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "blk.0.ffn_down.weight")->ne[0], 192);
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_quantize_threads_give_identical_bytes)
{
    QK_REQUIRE_DATA(src, G "stories260K-pad256-f32.gguf");
    const char *a = qk_test_tmp("t1.gguf"), *b = qk_test_tmp("t2.gguf");
    const char *types[] = {"Q4_K_M", "IQ4_XS", "Q8_0"};
    for (int i = 0; i < 3; i++) {
        char args[8192];
        snprintf(args, sizeof args, "-t 1 %s %s %s", src, a, types[i]);
        quantize_ok(args);
        snprintf(args, sizeof args, "-t 2 %s %s %s", src, b, types[i]);
        quantize_ok(args);
        size_t na, nb;
        uint8_t *da = qk_test_read_file(a, &na), *db = qk_test_read_file(b, &nb);
        /* the options string differs (-t); compare the tensor data */
        qk_gguf *ga, *gb;
        ck_assert_int_eq(qk_gguf_open(&ga, a), 0);
        ck_assert_int_eq(qk_gguf_open(&gb, b), 0);
        for (int64_t k = 0; k < qk_gguf_n_tensors(ga); k++) {
            const qk_gguf_tensor *x = qk_gguf_tensor_at(ga, k), *y = qk_gguf_tensor_at(gb, k);
            ck_assert_uint_eq(x->nbytes, y->nbytes);
            ck_assert(memcmp(x->data, y->data, x->nbytes) == 0);
        }
        qk_gguf_close(ga);
        qk_gguf_close(gb);
        free(da);
        free(db);
    }
}
END_TEST

START_TEST(test_quantize_overrides)
{
    QK_REQUIRE_DATA(src, G "stories260K-pad256-f32.gguf");
    const char *out = qk_test_tmp("ov.gguf");
    char args[8192];
    snprintf(args, sizeof args, "%s %s Q4_K_S --tensor-type 'attn_(q|k)\\.weight$=q8_0' --output-type q5_k "
                                "--tensor-type 'blk\\.0\\.ffn_up=iq4_xs'", src, out);
    quantize_ok(args);
    qk_gguf *g;
    ck_assert_int_eq(qk_gguf_open(&g, out), 0);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "blk.3.attn_q.weight")->type, QK_TYPE_Q8_0);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "blk.1.attn_k.weight")->type, QK_TYPE_Q8_0);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "blk.0.ffn_up.weight")->type, QK_TYPE_IQ4_XS);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "blk.1.ffn_up.weight")->type, QK_TYPE_Q4_K);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "output.weight")->type, QK_TYPE_Q5_K);
    ck_assert_int_eq(qk_gguf_find_tensor(g, "blk.0.attn_norm.weight")->type, QK_TYPE_F32);
    uint32_t ft;
    ck_assert_int_eq(qk_gguf_get_u32(g, "general.file_type", &ft), 0);
    ck_assert_uint_eq(ft, QK_FTYPE_Q4_K_S);
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_quantize_hf_and_llama2c_inputs_agree)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    QK_REQUIRE_DATA(cfg, "models/stories260K-hf/float32/config.json");
    char dir[4096], args[8192];
    snprintf(dir, sizeof dir, "%s", cfg);
    *strrchr(dir, '/') = 0;
    const char *a = qk_test_tmp("a.gguf"), *b = qk_test_tmp("b.gguf");
    snprintf(args, sizeof args, "%s %s Q8_0 --vocab %s", bin, a, tok);
    quantize_ok(args);
    snprintf(args, sizeof args, "%s %s Q8_0 --vocab %s", dir, b, tok);
    quantize_ok(args);
    qk_gguf *ga, *gb;
    ck_assert_int_eq(qk_gguf_open(&ga, a), 0);
    ck_assert_int_eq(qk_gguf_open(&gb, b), 0);
    for (int64_t k = 0; k < qk_gguf_n_tensors(ga); k++) {
        const qk_gguf_tensor *x = qk_gguf_tensor_at(ga, k);
        const qk_gguf_tensor *y = qk_gguf_find_tensor(gb, x->name);
        ck_assert_ptr_nonnull(y);
        ck_assert_msg(x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes), "%s", x->name);
    }
    qk_gguf_close(ga);
    qk_gguf_close(gb);
}
END_TEST

START_TEST(test_quantize_json_report)
{
    QK_REQUIRE_DATA(src, G "stories260K-pad256-f32.gguf");
    char *so = NULL;
    const char *out = qk_test_tmp("j.gguf");
    ck_assert_int_eq(qk_test_run(&so, NULL, "%s --json %s %s Q4_K_M", qk_test_tool("qk-quantize"), src, out), 0);
    ck_assert_ptr_nonnull(strstr(so, "\"file_bytes\":"));
    ck_assert_ptr_nonnull(strstr(so, "\"bpw_quantized\":"));
    ck_assert_ptr_nonnull(strstr(so, "\"Q6_K\""));
    free(so);
}
END_TEST

START_TEST(test_quantize_bad_input)
{
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    QK_REQUIRE_DATA(q, G "stories260K-pad192-q4_0-pure.gguf");
    const char *tool = qk_test_tool("qk-quantize");
    const char *out = qk_test_tmp("bad.gguf");
    char *err = NULL;
    /* unknown type: usage error listing the valid types */
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s %s %s Q7_Z --vocab %s", tool, bin, out, tok), 2);
    ck_assert_ptr_nonnull(strstr(err, "Q4_K_M"));
    ck_assert_ptr_nonnull(strstr(err, "IQ4_XS"));
    free(err);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s %s", tool, bin), 2);
    free(err);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s %s %s Q4_0 --tensor-type 'x=zz'", tool, bin, out), 2);
    free(err);
    /* already quantized input */
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s %s %s Q4_0", tool, q, out), 1);
    ck_assert_ptr_nonnull(strstr(err, "--allow-requantize"));
    free(err);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s -q --allow-requantize %s %s Q8_0", tool, q, out), 0);
    free(err);
    unlink(out);
    /* a NaN weight names the tensor and element */
    size_t n;
    uint8_t *b = qk_test_read_file(bin, &n);
    float nan = NAN;
    /* first element of layer 0's wq: after header, tok_emb (512*64) and rms_att (5*64) */
    memcpy(b + 28 + 4 * (512 * 64 + 5 * 64 + 70), &nan, 4);
    const char *nb = qk_test_tmp("nan.bin");
    qk_test_write_file(nb, b, n);
    free(b);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s %s %s Q4_0 --vocab %s", tool, nb, out, tok), 1);
    ck_assert_ptr_nonnull(strstr(err, "blk.0.attn_q.weight"));
    ck_assert_ptr_nonnull(strstr(err, "element 70"));
    ck_assert(!qk_file_exists(out));
    free(err);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s -q --allow-nonfinite %s %s Q4_0 --vocab %s", tool, nb, out, tok), 0);
    free(err);
    unlink(out);
    /* missing output directory, and a full disk */
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s %s /nonexistent-qk/o.gguf Q4_0 --vocab %s", tool, bin, tok), 1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent-qk/o.gguf"));
    free(err);
    ck_assert_int_eq(qk_test_run(NULL, &err, "ulimit -f 100; %s %s %s Q8_0 --vocab %s", tool, bin, out, tok), 1);
    ck_assert_ptr_nonnull(strstr(err, "bad.gguf"));
    ck_assert(!qk_file_exists(out));
    ck_assert_int_eq(qk_test_count_entries(qk_test_tmpdir(), "qk-tmp"), 0);
    free(err);
}
END_TEST

/* qk_find_nonfinite: the first NaN/Inf at every position of rows of several
 * lengths (its block scan has 256- and 32-element stages); none in finite
 * extremes. */
START_TEST(test_quantize_find_nonfinite)
{
    static const int64_t lens[] = {0, 1, 31, 32, 33, 255, 256, 257, 600, 1024};
    float *x = malloc(1024 * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        for (int64_t j = 0; j < n; j++) /* finite extremes: max, -max, denormals, -0 */
            x[j] = j % 4 == 0 ? FLT_MAX : j % 4 == 1 ? -FLT_MAX : j % 4 == 2 ? 1e-45f : -0.0f;
        ck_assert_int_eq(qk_find_nonfinite(x, n), -1);
        for (int64_t p = 0; p < n; p++) {
            const float bad = p % 3 == 0 ? NAN : p % 3 == 1 ? INFINITY : -INFINITY;
            x[p] = bad;
            if (p + 40 < n)
                x[p + 40] = NAN; /* a later one does not matter */
            ck_assert_int_eq(qk_find_nonfinite(x, n), p);
            ck_assert_int_eq(qk_find_nonfinite(x + p + 1, n - p - 1), p + 40 < n ? 39 : -1);
            x[p] = 1.0f;
            if (p + 40 < n)
                x[p + 40] = 1.0f;
        }
    }
    free(x);
}
END_TEST

START_TEST(test_quantize_plan_rules)
{
    QK_REQUIRE_DATA(bin, BIN);
    qk_model *m;
    qk_model_opts mo = {.no_vocab = 1};
    ck_assert_int_eq(qk_model_open(&m, bin, &mo), 0);
    qk_plan_entry plan[64];
    qk_quant_params p = {.target = qk_ftype_find("q4_k_m"), .output_type = -1, .embed_type = -1};
    ck_assert_ptr_nonnull(p.target);
    ck_assert_int_eq(qk_quant_plan(m, &p, plan), 0);
    for (int64_t i = 0; i < qk_model_n_tensors(m); i++) {
        const qk_model_tensor *t = qk_model_tensor_at(m, i);
        if (t->n_dims == 1)
            ck_assert_int_eq(plan[i].type, QK_TYPE_F32);
        else if (!strcmp(t->name, "token_embd.weight")) /* tied, 64 columns: Q8_0 */
            ck_assert_int_eq(plan[i].type, QK_TYPE_Q8_0);
        else if (strstr(t->name, "ffn_down")) /* 172 columns */
            ck_assert_int_eq(plan[i].type, QK_TYPE_F16);
        else /* 64 columns cannot hold Q4_K/Q6_K: Q5_0 / Q8_0 */
            ck_assert_msg(plan[i].type == QK_TYPE_Q5_0 || plan[i].type == QK_TYPE_Q8_0, "%s: %s", t->name,
                          qk_type_name(plan[i].type));
    }
    qk_model_close(m);
    ck_assert_ptr_null(qk_ftype_find("Q9_K"));
    ck_assert_int_eq(qk_ftype_find("q4_k")->ftype, QK_FTYPE_Q4_K_M);
}
END_TEST

Suite *qk_test_suite_quantize(void)
{
    Suite *s = suite_create("quantize");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_quantize_pure_reference_types_match_llamacpp_bytes);
    tcase_add_test(tc, test_quantize_k_types_and_mix_match_llamacpp);
    tcase_add_test(tc, test_quantize_unpadded_falls_back_and_pad_ffn_avoids_it);
    tcase_add_test(tc, test_quantize_threads_give_identical_bytes);
    tcase_add_test(tc, test_quantize_overrides);
    tcase_add_test(tc, test_quantize_hf_and_llama2c_inputs_agree);
    tcase_add_test(tc, test_quantize_json_report);
    tcase_add_test(tc, test_quantize_bad_input);
    tcase_add_test(tc, test_quantize_plan_rules);
    tcase_add_test(tc, test_quantize_find_nonfinite);
    suite_add_tcase(s, tc);
    return s;
}

/* Tests of qk-eval: perplexity and consistency against llama.cpp's numbers,
 * the ship gate, the JSON report, the saved base and bad input. */
#include "qk_test.h"

#include <cJSON.h>
#include <math.h>

#include "quantkit/metrics.h"

#define G "golden/llamacpp/"
#define EVAL_TEXT "text/tinystories-valid-eval.txt"

static double parse_ppl(const char *out)
{
    const char *p = strstr(out, "PPL = ");
    ck_assert_ptr_nonnull(p);
    return atof(p + 6);
}

START_TEST(test_eval_perplexity_matches_llamacpp)
{
    QK_REQUIRE_DATA(text, EVAL_TEXT);
    const char *models[] = {G "stories260K-f32.gguf", G "stories260K-pad192-f32.gguf", G "stories260K-pad256-f32.gguf"};
    for (int i = 0; i < 3; i++) {
        const char *m = qk_test_data(models[i]);
        ck_assert_ptr_nonnull(m);
        char *out = NULL, *err = NULL;
        int rc = qk_test_run(&out, &err, "%s %s --text %s --ctx 256", qk_test_tool("qk-eval"), m, text);
        ck_assert_msg(rc == 0, "%s: %s", models[i], err);
        double ppl = parse_ppl(out);
        /* llama.cpp: 3.606829 (quant_matrix_*.tsv, base F32) */
        ck_assert_msg(fabs(ppl - 3.6068) <= 0.0005, "%s: PPL %.5f", models[i], ppl);
        ck_assert_ptr_nonnull(strstr(out, "7366 tokens scored"));
        free(out);
        free(err);
    }
}
END_TEST

/* llama.cpp's row for `name` in a quant_matrix TSV: mean KLD and same-top %. */
static int tsv_row(const char *tsv, const char *name, double *kld, double *same_top)
{
    size_t n;
    char *s = qk_test_read_file(tsv, &n);
    char *line = strtok(s, "\n");
    int col_kld = -1, col_top = -1, found = 0;
    for (int row = 0; line; row++, line = strtok(NULL, "\n")) {
        char *save = NULL, *f = strtok_r(line, "\t", &save);
        for (int c = 0; f; c++, f = strtok_r(NULL, "\t", &save)) {
            if (row == 0) {
                if (!strcmp(f, "mean_kld")) col_kld = c;
                if (!strcmp(f, "same_top_pct")) col_top = c;
            } else if (c == 0 && strcmp(f, name)) {
                break;
            } else if (c == col_kld) {
                *kld = atof(f);
                found = 1;
            } else if (c == col_top) {
                *same_top = atof(f);
            }
        }
        if (found)
            break;
    }
    free(s);
    return found;
}

/* qk-eval --base pad F32 --quant the pure `type` file against llama.cpp's
 * row; emulate: with --emulate-llamacpp, which must land much closer. */
static void check_against_tsv_mode(const char *pad, const char *type, int emulate)
{
    char base[256], quant[256], tsvp[256], row[64];
    snprintf(base, sizeof base, G "stories260K-%s-f32.gguf", pad);
    snprintf(quant, sizeof quant, G "stories260K-%s-%s-pure.gguf", pad, type);
    snprintf(tsvp, sizeof tsvp, G "quant_matrix_stories260K-%s.tsv", pad);
    snprintf(row, sizeof row, "%s-pure", type);
    const char *b = qk_test_data(base), *q = qk_test_data(quant), *tsv = qk_test_data(tsvp),
               *text = qk_test_data(EVAL_TEXT);
    ck_assert(b && q && tsv && text);
    double want_kld = -1, want_top = -1;
    ck_assert_msg(tsv_row(tsv, row, &want_kld, &want_top), "no row %s", row);
    const char *json = qk_test_tmp("e.json");
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s --base %s --quant %s --text %s --ctx 256 -q --json %s%s",
                         qk_test_tool("qk-eval"), b, q, text, json, emulate ? " --emulate-llamacpp" : "");
    ck_assert_msg(rc == 0, "%s", err);
    free(err);
    char *js = qk_test_read_file(json, NULL);
    cJSON *j = cJSON_Parse(js);
    ck_assert_ptr_nonnull(j);
    double kld = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "kld"), "mean")->valuedouble;
    double top = 100 * cJSON_GetObjectItem(j, "same_top")->valuedouble;
    /* emulated: Q8_0 0.000897 / 0.000897, Q4_0 0.127984 / 0.127811, Q4_K 0.076489 / 0.076223 */
    double tol = emulate ? fmax(3e-5, 0.015 * want_kld) : fmax(0.003, 0.05 * want_kld), top_tol = emulate ? 0.5 : 1.0;
    fprintf(stderr, "%s %s%s: KLD %.6f (llama.cpp %.6f), same top %.3f%% (llama.cpp %.3f%%)\n", pad, type,
            emulate ? " emulated" : "", kld, want_kld, top, want_top);
    ck_assert_msg(fabs(kld - want_kld) <= tol, "%s %s: KLD %.6f vs llama.cpp %.6f", pad, type, kld, want_kld);
    ck_assert_msg(fabs(top - want_top) <= top_tol, "%s %s: same top %.3f vs llama.cpp %.3f", pad, type, top, want_top);
    cJSON_Delete(j);
    free(js);
}

static void check_against_tsv(const char *pad, const char *type)
{
    check_against_tsv_mode(pad, type, 0);
}

START_TEST(test_eval_kld_matches_llamacpp)
{
    QK_REQUIRE_DATA(t, G "quant_matrix_stories260K-pad192.tsv");
    check_against_tsv("pad192", "q8_0");
    check_against_tsv("pad192", "q4_0");
    check_against_tsv("pad192", "iq4_nl");
    check_against_tsv("pad256", "q4_k");
    check_against_tsv("pad256", "q6_k");
    check_against_tsv("pad256", "q3_k");
}
END_TEST

/* --emulate-llamacpp predicts llama.cpp's own figures: Q8_0's KLD, which is
 * mostly llama.cpp's activation rounding, to the printed digit. */
START_TEST(test_eval_kld_emulating_llamacpp)
{
    QK_REQUIRE_DATA(t, G "quant_matrix_stories260K-pad192.tsv");
    check_against_tsv_mode("pad192", "q8_0", 1);
    check_against_tsv_mode("pad192", "q4_0", 1);
    check_against_tsv_mode("pad256", "q4_k", 1);
}
END_TEST

START_TEST(test_eval_gate_and_json)
{
    QK_REQUIRE_DATA(text, EVAL_TEXT);
    QK_REQUIRE_DATA(b, G "stories260K-pad192-f32.gguf");
    QK_REQUIRE_DATA(q, G "stories260K-pad192-q4_0-pure.gguf");
    const char *tool = qk_test_tool("qk-eval");
    char *out = NULL, *err = NULL;
    const char *json = qk_test_tmp("gate.json");
    int rc = qk_test_run(&out, &err, "%s --base %s --quant %s --text %s --ctx 256 --chunks 20 --max-kld 0.01 "
                                     "--min-same-top 50%% --json %s", tool, b, q, text, json);
    ck_assert_int_eq(rc, 3);
    ck_assert_ptr_nonnull(strstr(out, "max-kld            FAIL"));
    ck_assert_ptr_nonnull(strstr(out, "min-same-top       PASS"));
    ck_assert_ptr_nonnull(strstr(out, "verdict: FAIL"));
    /* the JSON holds every printed number */
    char *js = qk_test_read_file(json, NULL);
    cJSON *j = cJSON_Parse(js);
    ck_assert_ptr_nonnull(j);
    cJSON *gate = cJSON_GetObjectItem(j, "gate");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(gate, "pass")));
    double kld = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "kld"), "mean")->valuedouble;
    char buf[64];
    snprintf(buf, sizeof buf, "mean               %10.6f", kld);
    ck_assert_msg(strstr(out, buf) != NULL, "%s not printed", buf);
    double ppl_q = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "perplexity"), "quant")->valuedouble;
    snprintf(buf, sizeof buf, "PPL(Q)             %10.4f", ppl_q);
    ck_assert_msg(strstr(out, buf) != NULL, "%s not printed", buf);
    double top = cJSON_GetObjectItem(j, "same_top")->valuedouble;
    snprintf(buf, sizeof buf, "same top token     %9.3f%%", 100 * top);
    ck_assert_msg(strstr(out, buf) != NULL, "%s not printed", buf);
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "inputs"), "text_xxh3"));
    ck_assert_str_eq(cJSON_GetObjectItem(j, "version")->valuestring, QK_VERSION);
    ck_assert_int_eq((int)cJSON_GetObjectItem(cJSON_GetObjectItem(j, "protocol"), "chunks")->valuedouble, 20);
    cJSON_Delete(j);
    free(js);
    free(out);
    free(err);
    /* a gate that passes exits 0 */
    rc = qk_test_run(&out, &err, "%s --base %s --quant %s --text %s --ctx 256 --chunks 20 --max-kld 0.5 "
                                 "--max-ppl-increase 30%% --min-same-top 0.7", tool, b, q, text);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_ptr_nonnull(strstr(out, "verdict: PASS"));
    free(out);
    free(err);
}
END_TEST

START_TEST(test_eval_saved_base_round_trip)
{
    QK_REQUIRE_DATA(text, EVAL_TEXT);
    QK_REQUIRE_DATA(b, G "stories260K-pad192-f32.gguf");
    QK_REQUIRE_DATA(q, G "stories260K-pad192-q4_0-pure.gguf");
    const char *tool = qk_test_tool("qk-eval");
    const char *saved = qk_test_tmp("base.qkb"), *j1 = qk_test_tmp("live.json"), *j2 = qk_test_tmp("saved.json");
    char *err = NULL;
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s --base %s --text %s --ctx 256 --save-base %s -q", tool, b, text, saved), 0);
    free(err);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s --base %s --quant %s --text %s --ctx 256 -q --json %s", tool, b, q, text, j1), 0);
    free(err);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s --load-base %s --quant %s --text %s --ctx 256 -q --json %s", tool, saved, q,
                                 text, j2), 0);
    free(err);
    char *s1 = qk_test_read_file(j1, NULL), *s2 = qk_test_read_file(j2, NULL);
    cJSON *a = cJSON_Parse(s1), *c = cJSON_Parse(s2);
    double ka = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "kld"), "mean")->valuedouble;
    double kc = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "kld"), "mean")->valuedouble;
    double pa = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "perplexity"), "base")->valuedouble;
    double pc = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "perplexity"), "base")->valuedouble;
    double ta = cJSON_GetObjectItem(a, "same_top")->valuedouble, tc = cJSON_GetObjectItem(c, "same_top")->valuedouble;
    fprintf(stderr, "saved base: KLD %.6f vs live %.6f; PPL %.6f vs %.6f\n", kc, ka, pc, pa);
    ck_assert(fabs(pa - pc) < 1e-6 * pa); /* lp of the correct token is kept exactly (float) */
    ck_assert(ta == tc);                   /* top-1 is kept exactly */
    ck_assert(kc <= ka + 1e-9);            /* top-k KLD is a lower bound */
    ck_assert_msg(ka - kc < 0.005 * ka + 1e-5, "top-64 KLD %.6f too far below %.6f", kc, ka);
    cJSON_Delete(a);
    cJSON_Delete(c);
    free(s1);
    free(s2);
    /* a corrupted saved base is refused */
    size_t n;
    uint8_t *buf = qk_test_read_file(saved, &n);
    buf[n / 2] ^= 1;
    const char *bad = qk_test_tmp("bad.qkb");
    qk_test_write_file(bad, buf, n);
    free(buf);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s --load-base %s --quant %s --text %s --ctx 256", tool, bad, q, text), 1);
    ck_assert_ptr_nonnull(strstr(err, "checksum"));
    free(err);
    /* and one saved for another protocol */
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s --load-base %s --quant %s --text %s --ctx 128", tool, saved, q, text), 1);
    ck_assert_ptr_nonnull(strstr(err, "protocol"));
    free(err);
}
END_TEST

START_TEST(test_eval_bad_input)
{
    QK_REQUIRE_DATA(text, EVAL_TEXT);
    QK_REQUIRE_DATA(b, G "stories260K-pad192-f32.gguf");
    QK_REQUIRE_DATA(u, G "stories260K-f32.gguf");
    QK_REQUIRE_DATA(rnd, "models/llama-2-tiny-random/llama-2-tiny-random.gguf");
    QK_REQUIRE_DATA(hf, "models/stories260K-hf/float32/model.safetensors");
    const char *tool = qk_test_tool("qk-eval");
    char *err = NULL;
    const char *shorttxt = qk_test_tmp("short.txt"), *empty = qk_test_tmp("empty.txt");
    qk_test_write_file(shorttxt, "Once upon a time.", 17);
    qk_test_write_file(empty, "", 0);
    struct {
        const char *args, *needle;
    } cases[6];
    char a[6][8192];
    snprintf(a[0], sizeof a[0], "%s --text %s --ctx 256", b, shorttxt);
    snprintf(a[1], sizeof a[1], "%s --text %s", b, empty);
    snprintf(a[2], sizeof a[2], "--base %s --quant %s --text %s --ctx 256", b, rnd, text);
    snprintf(a[3], sizeof a[3], "--base %s --quant %s --text %s --ctx 256", u, b, text);
    snprintf(a[4], sizeof a[4], "%s --text %s --ctx 256", hf, text);
    snprintf(a[5], sizeof a[5], "%s --text /nonexistent.txt", b);
    cases[0].needle = "fewer than one window";
    cases[1].needle = "empty";
    cases[2].needle = "different vocabularies";
    cases[3].needle = "different shapes";
    cases[4].needle = "--vocab";
    cases[5].needle = "/nonexistent.txt";
    for (int i = 0; i < 6; i++) {
        cases[i].args = a[i];
        int rc = qk_test_run(NULL, &err, "%s %s", tool, cases[i].args);
        ck_assert_msg(rc == 1, "case %d exit %d: %s", i, rc, err);
        ck_assert_msg(strstr(err, cases[i].needle) != NULL, "case %d: '%s' not in %s", i, cases[i].needle, err);
        ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "case %d: not one line: %s", i, err);
        free(err);
    }
    /* equivalent padded models compare with --allow-shape-mismatch */
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s --base %s --quant %s --text %s --ctx 256 --chunks 4 -q "
                                 "--allow-shape-mismatch --max-kld 1e-6", tool, u, b, text), 0);
    free(err);
    /* usage errors */
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s %s", tool, b), 2);
    free(err);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s %s --text %s --max-kld 0.1", tool, b, text), 2);
    free(err);
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s --quant %s --text %s --max-kld abc", tool, b, text), 2);
    free(err);
}
END_TEST

START_TEST(test_eval_metrics_units)
{
    float logits[4] = {1, 2, 3, 4}, lp[4], lq[4];
    ck_assert_int_eq(qk_log_softmax(logits, 4, lp), 3);
    double s = 0;
    for (int i = 0; i < 4; i++)
        s += exp(lp[i]);
    ck_assert_double_eq_tol(s, 1.0, 1e-6);
    ck_assert_double_eq_tol(qk_kld_full(lp, lp, 4), 0.0, 1e-12);
    float l2[4] = {4, 3, 2, 1};
    qk_log_softmax(l2, 4, lq);
    double full = qk_kld_full(lp, lq, 4);
    ck_assert(full > 0.5);
    int32_t ids[4] = {3, 2, 1, 0};
    float lps[4] = {lp[3], lp[2], lp[1], lp[0]};
    ck_assert_double_eq_tol(qk_kld_topk(ids, lps, 4, lq), full, 1e-6); /* all mass kept: exact */
    ck_assert(qk_kld_topk(ids, lps, 2, lq) <= full + 1e-9);            /* a lower bound */
    float sorted[5] = {0, 1, 2, 3, 4};
    ck_assert_double_eq_tol(qk_percentile(sorted, 5, 0.5), 2.0, 1e-12);
    ck_assert_double_eq_tol(qk_percentile(sorted, 5, 0.99), 3.96, 1e-9);
    int32_t toks[10] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, *w;
    int64_t nc;
    ck_assert_int_eq(qk_eval_windows(toks, 10, 4, 0, 1, &w, &nc), 0);
    ck_assert_int_eq(nc, 2);
    ck_assert_int_eq(w[0], 1);
    ck_assert_int_eq(w[4], 1);
    ck_assert_int_eq(w[5], 4);
    free(w);
    ck_assert_int_eq(qk_eval_windows(toks, 3, 4, 0, 1, &w, &nc), QK_EINVAL);
}
END_TEST

START_TEST(test_eval_reads_gptq_export)
{
    QK_REQUIRE_DATA(text, EVAL_TEXT);
    QK_REQUIRE_DATA(b, G "stories260K-pad192-f32.gguf");
    const char *dir = qk_test_tmp("gptq8");
    char *err = NULL, *out = NULL;
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s %s -o %s --format gptq --bits 8 --group-size 32 -q",
                                 qk_test_tool("qk-quantize"), b, dir), 0);
    free(err);
    int rc = qk_test_run(&out, &err, "%s --base %s --quant %s --text %s --ctx 256 --chunks 8 --max-kld 0.002",
                         qk_test_tool("qk-eval"), b, dir, text);
    ck_assert_msg(rc == 0, "%s%s", out, err); /* 8-bit GPTQ layout is nearly lossless */
    ck_assert_ptr_nonnull(strstr(out, "verdict: PASS"));
    free(out);
    free(err);
}
END_TEST

Suite *qk_test_suite_eval(void)
{
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_eval_metrics_units);
    tcase_add_test(tc, test_eval_perplexity_matches_llamacpp);
    tcase_add_test(tc, test_eval_kld_matches_llamacpp);
    tcase_add_test(tc, test_eval_kld_emulating_llamacpp);
    tcase_add_test(tc, test_eval_gate_and_json);
    tcase_add_test(tc, test_eval_saved_base_round_trip);
    tcase_add_test(tc, test_eval_bad_input);
    tcase_add_test(tc, test_eval_reads_gptq_export);
    suite_add_tcase(s, tc);
    return s;
}

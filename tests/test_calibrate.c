/* Tests of calibrate/ (statistics, files, merging) and the qk-calibrate tool,
 * and of qk-quantize --imatrix: agreement with llama.cpp's llama-imatrix
 * output, byte-exact .dat round trips, .qkc round trips, Hessians, merging,
 * llama-quantize's bytes with an importance matrix, and every rejection. */
#include "qk_test.h"

#include <math.h>
#include <unistd.h>

#include "quantkit/calib.h"
#include "quantkit/eval.h"
#include "quantkit/forward.h"
#include "quantkit/gguf.h"
#include "quantkit/metrics.h"
#include "quantkit/model.h"

#define G "golden/llamacpp/"
#define PAD192 G "stories260K-pad192-f32.gguf"
#define PAD256 G "stories260K-pad256-f32.gguf"
#define IMX192 G "imatrix-stories260K-pad192-c128.dat"
#define IMX256 G "imatrix-stories260K-pad256-c128.dat"
#define CALIB_TEXT "text/tinystories-valid-calib.txt"
#define BIN "models/stories260K/stories260K.bin"
#define TOK "models/stories260K/tok512.bin"

/* --------------------------------------------------------------- helpers */

static void tool_ok(const char *tool, const char *args)
{
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s %s", qk_test_tool(tool), args);
    ck_assert_msg(rc == 0, "%s %s: exit %d: %s", tool, args, rc, err);
    free(err);
}

/* Run a tool expecting exit 1 with `needle` in its one-line message and no
 * file named `out` left in the test directory. */
static void tool_fails(const char *tool, const char *args, const char *needle, const char *out_name)
{
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s %s", qk_test_tool(tool), args);
    ck_assert_msg(rc == 1, "%s %s: exit %d (want 1): %s", tool, args, rc, err);
    ck_assert_msg(err && strstr(err, needle), "%s %s: message lacks '%s': %s", tool, args, needle, err);
    ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "%s: more than one line: %s", tool, err);
    if (out_name)
        ck_assert_msg(qk_test_count_entries(qk_test_tmpdir(), out_name) == 0, "%s: output '%s' left behind", tool,
                      out_name);
    free(err);
}

static qk_calib *load_ok(const char *path)
{
    qk_calib *c = NULL;
    int rc = qk_calib_load(&c, path);
    ck_assert_msg(rc == 0, "qk_calib_load(%s): %s", path, qk_errmsg());
    return c;
}

/* Collect the statistics of model `rel` on the calibration text, ctx 128,
 * into tmp/out_name; returns its path (a buffer of this test process's own,
 * one per distinct name, so paths stay valid while others are made). */
static const char *calibrate(const char *rel, const char *out_name, const char *extra)
{
    static char paths[16][4096];
    static int n_paths;
    const char *model = qk_test_data(rel), *text = qk_test_data(CALIB_TEXT);
    ck_assert(model && text);
    ck_assert_int_lt(n_paths, 16);
    char *out = paths[n_paths++];
    snprintf(out, sizeof paths[0], "%s", qk_test_tmp(out_name));
    char args[8192];
    snprintf(args, sizeof args, "-q %s --text %s --ctx 128 -o %s %s", model, text, out, extra ? extra : "");
    tool_ok("qk-calibrate", args);
    return out;
}

static double rel_diff(double a, double b)
{
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return m > 0 ? fabs(a - b) / m : 0;
}

/* --------------------------------------------- agreement with llama.cpp */

/* Every entry of ours against llama.cpp's: same names, same ncall, per-column
 * importance within 1e-3 relative (columns llama.cpp has at ~0, e.g. padded
 * dead columns, within an absolute floor of 1e-6 x the entry's largest). */
static void compare_with_golden(const char *ours_path, const char *golden_rel)
{
    qk_calib *a = load_ok(ours_path), *g = load_ok(qk_test_data(golden_rel));
    ck_assert_int_eq(a->n, g->n);
    double worst = 0;
    const char *worst_name = "";
    for (int64_t i = 0; i < g->n; i++) {
        const qk_calib_entry *ge = &g->e[i];
        const qk_calib_entry *ae = qk_calib_find(a, ge->name);
        ck_assert_msg(ae != NULL, "%s: entry %s missing", ours_path, ge->name);
        ck_assert_int_eq(ae->n_in, ge->n_in);
        ck_assert_msg(ae->n_calls == ge->n_calls, "%s: ncall %lld, llama.cpp %lld", ge->name,
                      (long long)ae->n_calls, (long long)ge->n_calls);
        float *x = malloc((size_t)ge->n_in * sizeof *x), *y = malloc((size_t)ge->n_in * sizeof *y);
        qk_calib_importance(ae, x);
        qk_calib_importance(ge, y);
        float mx = 0;
        for (int64_t j = 0; j < ge->n_in; j++)
            mx = y[j] > mx ? y[j] : mx;
        for (int64_t j = 0; j < ge->n_in; j++) {
            if (y[j] < 1e-6f * mx) {
                ck_assert_msg(fabsf(x[j] - y[j]) <= 1e-6f * mx, "%s[%lld]: %g, llama.cpp ~0 (%g)", ge->name,
                              (long long)j, x[j], y[j]);
                continue;
            }
            double r = rel_diff(x[j], y[j]);
            if (r > worst) {
                worst = r;
                worst_name = ge->name;
            }
            ck_assert_msg(r <= 1e-3, "%s[%lld]: %.7g, llama.cpp %.7g (relative %.2e)", ge->name, (long long)j, x[j],
                          y[j], r);
        }
        free(x);
        free(y);
    }
    fprintf(stderr, "imatrix vs llama.cpp %s: worst relative difference %.2e (%s)\n", golden_rel, worst, worst_name);
    qk_calib_free(a);
    qk_calib_free(g);
}

START_TEST(test_calibrate_matches_llamacpp_imatrix)
{
    QK_REQUIRE_DATA(g1, IMX192);
    QK_REQUIRE_DATA(g2, IMX256);
    (void)g1, (void)g2;
    compare_with_golden(calibrate(PAD192, "c192.dat", NULL), IMX192);
    compare_with_golden(calibrate(PAD256, "c256.dat", NULL), IMX256);
    /* the .qkc of the same run holds the same numbers, with real token counts */
    const char *q = calibrate(PAD192, "c192.qkc", "-b 4");
    compare_with_golden(q, IMX192);
    qk_calib *c = load_ok(q);
    ck_assert_int_eq(c->n_ctx, 128);
    ck_assert_int_eq(c->n_chunks, 61);
    ck_assert_int_eq(c->e[0].n_tokens, 61 * 128);
    ck_assert_ptr_nonnull(c->dataset);
    ck_assert_ptr_nonnull(strstr(c->dataset, "tinystories-valid-calib.txt"));
    ck_assert(c->model_hash != 0 && c->text_hash != 0);
    /* llama.cpp leaves out token_embd and (without --process-output) output.weight */
    ck_assert_ptr_null(qk_calib_find(c, "output.weight"));
    ck_assert_ptr_null(qk_calib_find(c, "token_embd.weight"));
    qk_calib_free(c);
}
END_TEST

START_TEST(test_calibrate_process_output)
{
    QK_REQUIRE_DATA(m, PAD192);
    (void)m;
    qk_calib *c = load_ok(calibrate(PAD192, "out.qkc", "--process-output --chunks 3"));
    const qk_calib_entry *e = qk_calib_find(c, "output.weight");
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->n_in, 64);
    ck_assert_int_eq(e->n_tokens, 3 * 128);
    ck_assert_int_eq(e->n_calls, 3);
    ck_assert_int_eq(c->n, 36);
    /* the output projection reads the normalised last hidden state: not all zero */
    double s = 0;
    for (int64_t j = 0; j < e->n_in; j++)
        s += e->sum_x2[j];
    ck_assert(s > 0);
    qk_calib_free(c);
}
END_TEST

/* ------------------------------------------------------------ round trips */

START_TEST(test_calibrate_dat_round_trip_is_byte_identical)
{
    const char *rels[] = {IMX192, IMX256};
    for (int k = 0; k < 2; k++) {
        QK_REQUIRE_DATA(g, rels[k]);
        size_t n1, n2;
        uint8_t *want = qk_test_read_file(g, &n1);
        qk_calib *c = load_ok(g);
        ck_assert_int_eq(c->n, 35);
        ck_assert_int_eq(c->n_chunks, 61);
        ck_assert_str_eq(c->dataset, "data/tinystories_valid_calib.txt");
        const char *out = qk_test_tmp("rt.dat");
        ck_assert_int_eq(qk_calib_save_dat(c, out), 0);
        uint8_t *got = qk_test_read_file(out, &n2);
        ck_assert_uint_eq(n1, n2);
        ck_assert_msg(!memcmp(want, got, n1), "%s: written back differently", g);
        free(got);
        /* through .qkc and back, and through the tool */
        const char *q = qk_test_tmp("rt.qkc");
        ck_assert_int_eq(qk_calib_save_qkc(c, q), 0);
        qk_calib *c2 = load_ok(q);
        ck_assert_int_eq(qk_calib_save_dat(c2, out), 0);
        got = qk_test_read_file(out, &n2);
        ck_assert(n1 == n2 && !memcmp(want, got, n1));
        free(got);
        char args[8192];
        const char *out2 = qk_test_tmp("tool-rt.dat");
        snprintf(args, sizeof args, "-q --in-file %s -o %s", q, out2);
        tool_ok("qk-calibrate", args);
        got = qk_test_read_file(out2, &n2);
        ck_assert(n1 == n2 && !memcmp(want, got, n1));
        free(got);
        free(want);
        qk_calib_free(c);
        qk_calib_free(c2);
    }
}
END_TEST

static void assert_same_calib(const qk_calib *a, const qk_calib *b)
{
    ck_assert_int_eq(a->n, b->n);
    ck_assert(a->model_hash == b->model_hash && a->text_hash == b->text_hash);
    ck_assert(a->n_ctx == b->n_ctx && a->n_chunks == b->n_chunks);
    ck_assert((a->dataset == NULL) == (b->dataset == NULL));
    if (a->dataset)
        ck_assert_str_eq(a->dataset, b->dataset);
    for (int64_t i = 0; i < a->n; i++) {
        const qk_calib_entry *x = &a->e[i], *y = &b->e[i];
        ck_assert_str_eq(x->name, y->name);
        ck_assert(x->n_in == y->n_in && x->n_tokens == y->n_tokens && x->n_calls == y->n_calls);
        ck_assert_int_eq(x->hessian_of, y->hessian_of);
        size_t n = (size_t)x->n_in * sizeof(double);
        ck_assert(!memcmp(x->sum_x2, y->sum_x2, n));
        ck_assert((x->sum_x == NULL) == (y->sum_x == NULL) && (x->absmax == NULL) == (y->absmax == NULL));
        ck_assert((x->xtx == NULL) == (y->xtx == NULL));
        if (x->sum_x)
            ck_assert(!memcmp(x->sum_x, y->sum_x, n));
        if (x->absmax)
            ck_assert(!memcmp(x->absmax, y->absmax, n));
        if (x->xtx)
            ck_assert(!memcmp(x->xtx, y->xtx, n * (size_t)x->n_in));
    }
}

START_TEST(test_calibrate_qkc_round_trip_is_exact)
{
    QK_REQUIRE_DATA(m, PAD192);
    (void)m;
    const char *q = calibrate(PAD192, "full.qkc", "--hessian --sum-x --absmax --chunks 8");
    qk_calib *c = load_ok(q);
    const char *q2 = qk_test_tmp("full2.qkc");
    ck_assert_int_eq(qk_calib_save_qkc(c, q2), 0);
    size_t n1, n2;
    uint8_t *a = qk_test_read_file(q, &n1), *b = qk_test_read_file(q2, &n2);
    ck_assert(n1 == n2 && !memcmp(a, b, n1));
    qk_calib *c2 = load_ok(q2);
    assert_same_calib(c, c2);
    free(a);
    free(b);
    qk_calib_free(c);
    qk_calib_free(c2);
}
END_TEST

/* --------------------------------------------------------------- Hessians */

START_TEST(test_calibrate_hessian_diagonal_and_symmetry)
{
    QK_REQUIRE_DATA(m, PAD192);
    (void)m;
    qk_calib *c = load_ok(calibrate(PAD192, "h.qkc", "--hessian"));
    int64_t n_own = 0;
    for (int64_t i = 0; i < c->n; i++) {
        const qk_calib_entry *e = &c->e[i];
        const double *h = qk_calib_hessian(c, e);
        ck_assert_msg(h != NULL, "%s: no Hessian", e->name);
        if (strstr(e->name, "attn_k") || strstr(e->name, "attn_v"))
            ck_assert_str_eq(c->e[e->hessian_of].name, c->e[i - (strstr(e->name, "attn_k") ? 1 : 2)].name);
        if (strstr(e->name, "ffn_up"))
            ck_assert_ptr_eq(h, c->e[i - 1].xtx);
        if (e->hessian_of != i)
            continue;
        n_own++;
        const int64_t n = e->n_in;
        for (int64_t r = 0; r < n; r++) {
            /* float partial sums over <= 256 tokens (calib.c): within 256 x 2^-24 */
            ck_assert_msg(rel_diff(h[r * n + r], e->sum_x2[r]) <= 2e-5, "%s: H[%lld,%lld] %.17g, sum_x2 %.17g",
                          e->name, (long long)r, (long long)r, h[r * n + r], e->sum_x2[r]);
            for (int64_t q = 0; q < n; q++) {
                ck_assert(h[r * n + q] == h[q * n + r]);
                /* Cauchy-Schwarz: a Gram matrix */
                ck_assert(h[r * n + q] * h[r * n + q] <= h[r * n + r] * h[q * n + q] * (1 + 1e-4) + 1e-300);
            }
        }
    }
    ck_assert_int_eq(n_own, 5 * 4);
    qk_calib_free(c);
}
END_TEST

static uint64_t g_rng = 88172645463325252ull;
static float rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* qk_calib_xtx_add over several 256-column tiles (the last partial) and
 * several 256-token chunks (the last partial), added twice: the upper
 * triangle against a long-double sum (tiles of H on the diagonal are
 * computed whole, the rest of the lower triangle is left alone), and the same bits on the calling
 * thread and on a pool of 2 and 3 threads. */
START_TEST(test_calibrate_xtx_tiles_and_threads)
{
    const int64_t n = 600, T = 700;
    float *x = malloc((size_t)(T * n) * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (int64_t i = 0; i < T * n; i++)
        x[i] = rnd() * (i % 11 ? 1.0f : 8.0f);
    double *h[3];
    for (int v = 0; v < 3; v++) {
        qk_pool *pool = NULL;
        if (v)
            ck_assert_int_eq(qk_pool_create(&pool, v + 1), 0);
        float *scratch = NULL;
        int64_t *tiles = NULL;
        ck_assert_int_eq(qk_calib_xtx_scratch(n, pool, &scratch, &tiles), 0);
        h[v] = calloc((size_t)(n * n), sizeof(double));
        ck_assert_ptr_nonnull(h[v]);
        for (int rep = 0; rep < 2; rep++)
            ck_assert_int_eq(qk_calib_xtx_add(h[v], x, T, n, pool, scratch, tiles), 0);
        free(scratch);
        free(tiles);
        qk_pool_free(pool);
    }
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++) {
            if (b < a) { /* the lower triangle is not touched outside the diagonal tiles */
                ck_assert(a / 256 == b / 256 || h[0][a * n + b] == 0.0);
                continue;
            }
            if ((a * 31 + b) % 17 == 0) {
                long double ref = 0, abs = 0;
                for (int64_t t = 0; t < T; t++) {
                    const long double p = (long double)x[t * n + a] * x[t * n + b];
                    ref += p;
                    abs += fabsl(p);
                }
                ck_assert_msg(fabsl(h[0][a * n + b] - 2 * ref) <= 2 * 256 * 0x1p-24 * abs + 1e-30,
                              "H[%lld,%lld] %.17g, reference %.17Lg", (long long)a, (long long)b, h[0][a * n + b],
                              2 * ref);
            }
        }
    ck_assert(!memcmp(h[0], h[1], (size_t)(n * n) * sizeof(double)));
    ck_assert(!memcmp(h[0], h[2], (size_t)(n * n) * sizeof(double)));
    for (int v = 0; v < 3; v++)
        free(h[v]);
    free(x);
}
END_TEST

/* Synthetic events straight into the hook: sums and X^T X against a naive
 * computation (inputs of 64, 192 columns: one and several 128-tiles). */
START_TEST(test_calibrate_hook_against_naive_sums)
{
    QK_REQUIRE_DATA(path, PAD192);
    qk_model *m = NULL;
    ck_assert_int_eq(qk_model_open(&m, path, NULL), 0);
    const qk_model_config *cfg = qk_model_cfg(m);
    qk_calib_opts o = {.n_ctx = 16, .hessian = 1, .sum_x = 1, .absmax = 1, .n_threads = 2};
    qk_calib_collector *col = NULL;
    ck_assert_int_eq(qk_calib_collector_new(&col, m, &o), 0);
    ck_assert(qk_calib_collector_bytes(m, &o) > 0);
    const int64_t T = 48, nmax = 192, calls = 2;
    float *x = malloc((size_t)(calls * T * nmax) * sizeof *x);
    for (int64_t i = 0; i < calls * T * nmax; i++)
        x[i] = rnd() * (i % 5 ? 1.0f : 30.0f);
    const char *kinds[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    for (int call = 0; call < calls; call++)
        for (int l = 0; l < cfg->n_layer; l++)
            for (int k = 0; k < 7; k++) {
                char name[64];
                snprintf(name, sizeof name, "blk.%d.%s.weight", l, kinds[k]);
                const qk_model_tensor *t = qk_model_find(m, name);
                qk_linear_event ev = {.layer = l, .kind = k, .weight = t, .x = x + call * T * nmax, .n_tokens = T,
                                      .n_in = t->ne[0], .n_out = qk_model_tensor_rows(t)};
                ck_assert_int_eq(qk_calib_hook(col, &ev), 0);
                float y = 0;
                ev.y = &y; /* output events are ignored */
                ck_assert_int_eq(qk_calib_hook(col, &ev), 0);
            }
    /* a wrong width or a token count that is not whole windows is refused */
    const qk_model_tensor *t0 = qk_model_find(m, "blk.0.attn_q.weight");
    qk_linear_event bad = {.layer = 0, .kind = 0, .weight = t0, .x = x, .n_tokens = T, .n_in = 63, .n_out = 64};
    ck_assert_int_ne(qk_calib_hook(col, &bad), 0);
    bad.n_in = 64;
    bad.n_tokens = 17;
    ck_assert_int_ne(qk_calib_hook(col, &bad), 0);
    qk_calib *c = NULL;
    ck_assert_int_eq(qk_calib_collector_finish(col, &c), 0);
    qk_calib_collector_free(col);
    ck_assert_int_eq(c->n_chunks, calls * T / 16);
    for (int64_t i = 0; i < c->n; i++) {
        const qk_calib_entry *e = &c->e[i];
        const int64_t n = e->n_in;
        ck_assert_int_eq(e->n_tokens, calls * T);
        ck_assert_int_eq(e->n_calls, calls * T / 16);
        const double *h = qk_calib_hessian(c, e);
        ck_assert_ptr_nonnull(h);
        for (int64_t a = 0; a < n; a++) {
            double s2 = 0, s1 = 0, am = 0;
            for (int call = 0; call < calls; call++)
                for (int64_t t = 0; t < T; t++) {
                    double v = x[call * T * nmax + t * n + a];
                    s2 += v * v;
                    s1 += v;
                    am = fabs(v) > am ? fabs(v) : am;
                }
            ck_assert(rel_diff(e->sum_x2[a], s2) <= 1e-12 && fabs(e->sum_x[a] - s1) <= 1e-9 && e->absmax[a] == am);
            if (e->hessian_of != i)
                continue;
            for (int64_t b = a; b < n; b += 7) {
                double hab = 0, habs = 0;
                for (int call = 0; call < calls; call++)
                    for (int64_t t = 0; t < T; t++) {
                        const double p = (double)x[call * T * nmax + t * n + a] * x[call * T * nmax + t * n + b];
                        hab += p;
                        habs += fabs(p);
                    }
                /* float partial sums over <= 256 tokens, added in double (calib.c) */
                ck_assert_msg(fabs(h[a * n + b] - hab) <= 256 * 0x1p-24 * habs + 1e-30, "%s: H[%lld,%lld] %.17g, naive %.17g",
                              e->name, (long long)a, (long long)b, h[a * n + b], hab);
                ck_assert(h[a * n + b] == h[b * n + a]);
            }
        }
    }
    /* a NaN activation ends the pass naming the tensor */
    ck_assert_int_eq(qk_calib_collector_new(&col, m, &o), 0);
    x[5] = NAN;
    qk_linear_event ev = {.layer = 0, .kind = 0, .weight = t0, .x = x, .n_tokens = 16, .n_in = 64, .n_out = 64};
    ck_assert_int_eq(qk_calib_hook(col, &ev), QK_ENONFINITE);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "blk.0.attn_q.weight"));
    qk_calib_collector_free(col);
    qk_calib_free(c);
    free(x);
    qk_model_close(m);
}
END_TEST

/* ----------------------------------------------------------------- merging */

START_TEST(test_calibrate_merge_halves_equals_whole)
{
    QK_REQUIRE_DATA(m, PAD192);
    (void)m;
    /* one window per call: on a model this small OpenBLAS's kernel (and the
     * last bits of the activations) depends on the batch */
    const char *a = calibrate(PAD192, "a.qkc", "--hessian --sum-x --absmax --chunks 30 -b 1");
    const char *b = calibrate(PAD192, "b.qkc", "--hessian --sum-x --absmax --first-chunk 30 -b 1");
    const char *w = calibrate(PAD192, "w.qkc", "--hessian --sum-x --absmax -b 1");
    const char *mq = qk_test_tmp("m.qkc");
    char args[8192];
    snprintf(args, sizeof args, "-q --in-file %s --in-file %s -o %s", a, b, mq);
    tool_ok("qk-calibrate", args);
    qk_calib *x = load_ok(mq), *y = load_ok(w);
    ck_assert_int_eq(x->n, y->n);
    ck_assert_int_eq(x->n_chunks, 61);
    ck_assert(x->model_hash == y->model_hash && x->text_hash == y->text_hash && x->n_ctx == 128);
    double worst = 0;
    for (int64_t i = 0; i < y->n; i++) {
        const qk_calib_entry *p = &x->e[i], *q = &y->e[i];
        ck_assert_str_eq(p->name, q->name);
        ck_assert(p->n_tokens == q->n_tokens && p->n_calls == q->n_calls && p->hessian_of == q->hessian_of);
        const int64_t n = p->n_in;
        for (int64_t j = 0; j < n; j++) {
            double r = rel_diff(p->sum_x2[j], q->sum_x2[j]);
            worst = r > worst ? r : worst;
            ck_assert_msg(r <= 1e-9, "%s[%lld]: merged %.17g, whole %.17g", p->name, (long long)j, p->sum_x2[j],
                          q->sum_x2[j]);
            ck_assert(fabs(p->sum_x[j] - q->sum_x[j]) <= 1e-9 * (1 + fabs(q->sum_x[j])));
            ck_assert(p->absmax[j] == q->absmax[j]);
        }
        if (q->hessian_of == i) {
            double scale = 0;
            for (int64_t j = 0; j < n; j++)
                scale = q->xtx[j * n + j] > scale ? q->xtx[j * n + j] : scale;
            for (int64_t j = 0; j < n * n; j++)
                ck_assert_msg(fabs(p->xtx[j] - q->xtx[j]) <= 1e-9 * (fabs(q->xtx[j]) + 1e-6 * scale),
                              "%s: H[%lld] merged %.17g, whole %.17g", p->name, (long long)j, p->xtx[j], q->xtx[j]);
        }
    }
    fprintf(stderr, "merge of halves vs whole: worst relative difference of sum_x2 %.2e\n", worst);
    qk_calib_free(x);
    qk_calib_free(y);
    /* merging a .dat into collected statistics keeps the importance matrix only */
    qk_calib *p = load_ok(a), *d = load_ok(qk_test_data(IMX192));
    ck_assert_int_eq(qk_calib_merge(p, d), 0);
    ck_assert_ptr_null(p->e[0].xtx);
    ck_assert_ptr_null(p->e[0].sum_x);
    ck_assert_int_eq(p->e[0].hessian_of, -1);
    ck_assert_int_eq(p->e[0].n_tokens, 30 * 128 + 61);
    ck_assert_int_eq(p->model_hash, 0);
    qk_calib_free(p);
    qk_calib_free(d);
    /* a shape mismatch is refused naming the tensor, leaving a unchanged */
    p = load_ok(qk_test_data(IMX192));
    d = load_ok(qk_test_data(IMX256));
    double before = p->e[0].sum_x2[0];
    ck_assert_int_eq(qk_calib_merge(p, d), QK_EFORMAT);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "columns"));
    ck_assert(p->e[0].sum_x2[0] == before && p->e[0].n_tokens == 61);
    qk_calib_free(p);
    qk_calib_free(d);
}
END_TEST

/* ---------------------------------------------------- qk-quantize --imatrix */

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
    qk_gguf_close(a);
    qk_gguf_close(b);
}

/* Sum over the quantized tensors of (decode - f32 source)^2; *same is set
 * when every tensor's bytes equal those of `other` (may be NULL). */
static double sq_error(const char *qpath, const char *f32path)
{
    qk_gguf *q, *f;
    ck_assert_int_eq(qk_gguf_open(&q, qpath), 0);
    ck_assert_int_eq(qk_gguf_open(&f, f32path), 0);
    double se = 0;
    for (int64_t i = 0; i < qk_gguf_n_tensors(q); i++) {
        const qk_gguf_tensor *t = qk_gguf_tensor_at(q, i);
        const qk_type_traits *tr = qk_type_get(t->type);
        if (!tr->is_quantized)
            continue;
        const qk_gguf_tensor *s = qk_gguf_find_tensor(f, t->name);
        int64_t n = t->ne[0] * t->ne[1];
        float *y = malloc((size_t)n * sizeof *y);
        tr->to_float(t->data, y, n);
        for (int64_t j = 0; j < n; j++) {
            float x;
            memcpy(&x, s->data + 4 * j, 4);
            se += ((double)y[j] - x) * ((double)y[j] - x);
        }
        free(y);
    }
    qk_gguf_close(q);
    qk_gguf_close(f);
    return se;
}

typedef struct {
    const char *src, *imx, *type, *golden, *pure;
} imx_case;

static const imx_case k_imx_cases[] = {
    {PAD192, IMX192, "q4_0", G "stories260K-pad192-q4_0-pure-imx.gguf", "--pure"},
    {PAD192, IMX192, "q4_1", G "stories260K-pad192-q4_1-pure-imx.gguf", "--pure"},
    {PAD192, IMX192, "q5_0", G "stories260K-pad192-q5_0-pure-imx.gguf", "--pure"},
    {PAD192, IMX192, "q5_1", G "stories260K-pad192-q5_1-pure-imx.gguf", "--pure"},
    {PAD192, IMX192, "iq4_nl", G "stories260K-pad192-iq4_nl-pure-imx.gguf", "--pure"},
    {PAD256, IMX256, "q4_k", G "stories260K-pad256-q4_k-pure-imx.gguf", "--pure"},
    {PAD256, IMX256, "q5_k", G "stories260K-pad256-q5_k-pure-imx.gguf", "--pure"},
    {PAD256, IMX256, "q6_k", G "stories260K-pad256-q6_k-pure-imx.gguf", "--pure"},
    {PAD256, IMX256, "iq4_xs", G "stories260K-pad256-iq4_xs-pure-imx.gguf", "--pure"},
    {PAD256, IMX256, "q4_k_m", G "stories260K-pad256-q4_k_m-imx.gguf", ""},
};
#define N_IMX_CASES ((int)(sizeof k_imx_cases / sizeof k_imx_cases[0]))

START_TEST(test_calibrate_quantize_with_golden_imatrix_matches_llamacpp)
{
    for (int i = 0; i < N_IMX_CASES; i++) {
        const imx_case *k = &k_imx_cases[i];
        QK_REQUIRE_DATA(src, k->src);
        QK_REQUIRE_DATA(imx, k->imx);
        QK_REQUIRE_DATA(gold, k->golden);
        const char *out = qk_test_tmp("imx.gguf");
        char args[8192];
        snprintf(args, sizeof args, "-q %s --imatrix %s %s %s %s", k->pure, imx, src, out, k->type);
        tool_ok("qk-quantize", args);
        assert_same_tensors(out, gold);
        /* provenance: the file and its checksum; llama-quantize's keys */
        qk_gguf *g;
        ck_assert_int_eq(qk_gguf_open(&g, out), 0);
        const char *s;
        ck_assert_int_eq(qk_gguf_get_str(g, "quantkit.imatrix", &s), 0);
        ck_assert_str_eq(s, imx);
        uint64_t fh;
        ck_assert_int_eq(qk_hash_file(&fh, imx), 0);
        const qk_gguf_kv *kv = qk_gguf_find_kv(g, "quantkit.imatrix_xxh3");
        ck_assert(kv && kv->type == QK_GGUF_U64 && kv->v.u64 == fh);
        ck_assert_int_eq(qk_gguf_get_str(g, "quantize.imatrix.dataset", &s), 0);
        ck_assert_str_eq(s, "data/tinystories_valid_calib.txt");
        kv = qk_gguf_find_kv(g, "quantize.imatrix.entries_count");
        ck_assert(kv && kv->type == QK_GGUF_I32 && kv->v.i32 == 35);
        kv = qk_gguf_find_kv(g, "quantize.imatrix.chunks_count");
        ck_assert(kv && kv->type == QK_GGUF_I32 && kv->v.i32 == 61);
        ck_assert_int_eq(qk_gguf_verify_checksums(g), 0);
        qk_gguf_close(g);
    }
}
END_TEST

START_TEST(test_calibrate_quantize_with_own_imatrix_close_to_llamacpp)
{
    QK_REQUIRE_DATA(t, CALIB_TEXT);
    (void)t;
    const char *own192 = calibrate(PAD192, "own192.dat", NULL), *own256 = calibrate(PAD256, "own256.qkc", NULL);
    int n_same = 0;
    for (int i = 0; i < N_IMX_CASES; i++) {
        const imx_case *k = &k_imx_cases[i];
        QK_REQUIRE_DATA(src, k->src);
        QK_REQUIRE_DATA(gold, k->golden);
        const char *out = qk_test_tmp("own.gguf");
        char args[8192];
        snprintf(args, sizeof args, "-q %s --imatrix %s %s %s %s", k->pure, !strcmp(k->src, PAD192) ? own192 : own256, src,
                 out, k->type);
        tool_ok("qk-quantize", args);
        double e_own = sq_error(out, src), e_gold = sq_error(gold, src);
        qk_gguf *a, *b;
        ck_assert_int_eq(qk_gguf_open(&a, out), 0);
        ck_assert_int_eq(qk_gguf_open(&b, gold), 0);
        int64_t differ = 0;
        for (int64_t j = 0; j < qk_gguf_n_tensors(b); j++) {
            const qk_gguf_tensor *tb = qk_gguf_tensor_at(b, j), *ta = qk_gguf_find_tensor(a, tb->name);
            differ += ta->nbytes != tb->nbytes || memcmp(ta->data, tb->data, ta->nbytes);
        }
        qk_gguf_close(a);
        qk_gguf_close(b);
        n_same += differ == 0;
        fprintf(stderr, "own imatrix %-7s: %lld tensors differ from llama.cpp's; squared error %.6f vs %.6f (%+.3f%%)\n",
                k->type, (long long)differ, e_own, e_gold, 100 * (e_own / e_gold - 1));
        ck_assert_msg(differ == 0 || e_own <= 1.01 * e_gold, "%s: squared error %.6f more than 1%% above llama.cpp's %.6f",
                      k->type, e_own, e_gold);
    }
    fprintf(stderr, "own imatrix: %d of %d files byte-identical to llama.cpp's\n", n_same, N_IMX_CASES);
}
END_TEST

/* ----------------------------------------------------------- bad input */

START_TEST(test_calibrate_rejects_short_text_and_bad_usage)
{
    QK_REQUIRE_DATA(m, PAD192);
    const char *txt = qk_test_tmp("short.txt");
    qk_test_write_file(txt, "Once upon a time there was a cat.", 33);
    char args[8192];
    snprintf(args, sizeof args, "%s --text %s --ctx 128 -o %s", m, txt, qk_test_tmp("short-out.dat"));
    tool_fails("qk-calibrate", args, "fewer than one window", "short-out");
    /* usage errors: exit 2 */
    const char *bad[] = {"--bogus", "", "--text x", "--show a b", "-o x.dat --in-file y --hessian",
                         "--in-file y -o x.qkc --chunks 3", "--format zip --in-file y -o z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err = NULL;
        int rc = qk_test_run(NULL, &err, "%s %s", qk_test_tool("qk-calibrate"), bad[i]);
        ck_assert_msg(rc == 2, "'%s': exit %d: %s", bad[i], rc, err);
        ck_assert_ptr_nonnull(strstr(err, "Try 'qk-calibrate --help'"));
        free(err);
    }
    char *out = NULL;
    ck_assert_int_eq(qk_test_run(&out, NULL, "%s --help", qk_test_tool("qk-calibrate")), 0);
    ck_assert_ptr_nonnull(strstr(out, "--hessian"));
    free(out);
    /* files to merge must fit the model */
    snprintf(args, sizeof args, "%s --text %s --ctx 128 --in-file %s -o %s", m, qk_test_data(CALIB_TEXT),
             qk_test_data(IMX256), qk_test_tmp("foreign-out.dat"));
    tool_fails("qk-calibrate", args, "input columns", "foreign-out");
    /* --first-chunk past the text */
    snprintf(args, sizeof args, "%s --text %s --ctx 128 --first-chunk 61 -o %s", m, qk_test_data(CALIB_TEXT),
             qk_test_tmp("skip-out.dat"));
    tool_fails("qk-calibrate", args, "fewer than one window", "skip-out");
}
END_TEST

/* A small set: two entries of 4 columns sharing one Hessian. */
static qk_calib *small_calib(int hessian)
{
    qk_calib *c = NULL;
    ck_assert_int_eq(qk_calib_new(&c), 0);
    c->n = 2;
    c->e = calloc(2, sizeof *c->e);
    c->dataset = strdup("calib.txt");
    c->n_chunks = 2;
    c->n_ctx = 5;
    c->model_hash = 0x1234;
    c->text_hash = 0x5678;
    for (int i = 0; i < 2; i++) {
        qk_calib_entry *e = &c->e[i];
        e->name = strdup(i ? "blk.0.attn_k.weight" : "blk.0.attn_q.weight");
        e->n_in = 4;
        e->n_tokens = 10;
        e->n_calls = 2;
        e->sum_x2 = malloc(4 * sizeof(double));
        for (int j = 0; j < 4; j++)
            e->sum_x2[j] = 1.5 + j;
        e->hessian_of = hessian ? 0 : -1;
    }
    if (hessian) {
        c->e[0].xtx = malloc(16 * sizeof(double));
        for (int r = 0; r < 4; r++)
            for (int q = 0; q < 4; q++)
                c->e[0].xtx[r * 4 + q] = r == q ? c->e[0].sum_x2[r] : 0.25 * (r + q);
    }
    return c;
}

START_TEST(test_calibrate_every_prefix_of_small_files_is_refused)
{
    qk_calib *c = small_calib(1);
    const char *dat = qk_test_tmp("small.dat"), *qkc = qk_test_tmp("small.qkc"), *pre = qk_test_tmp("prefix");
    ck_assert_int_eq(qk_calib_save_dat(c, dat), 0);
    ck_assert_int_eq(qk_calib_save_qkc(c, qkc), 0);
    qk_calib_free(c);
    /* .dat: 4 + 2 x (4 + 19 + 4 + 4 + 16) bytes of entries, then the 17-byte trailer; a file that ends
     * right after the entries is the older trailer-less format and is accepted */
    size_t n;
    uint8_t *b = qk_test_read_file(dat, &n);
    ck_assert_uint_eq(n, 4 + 2 * 47 + 17);
    for (size_t k = 0; k < n; k++) {
        qk_test_write_file(pre, b, k);
        qk_calib *x = NULL;
        int rc = qk_calib_load(&x, pre);
        if (k == 4 + 2 * 47) {
            ck_assert_msg(rc == 0, "trailer-less .dat refused: %s", qk_errmsg());
            ck_assert_int_eq(x->n, 2);
            ck_assert_ptr_null(x->dataset);
            qk_calib_free(x);
            continue;
        }
        ck_assert_msg(rc != 0, ".dat prefix of %zu bytes accepted", k);
        ck_assert_ptr_null(x);
        ck_assert(*qk_errmsg());
    }
    free(b);
    b = qk_test_read_file(qkc, &n);
    for (size_t k = 0; k < n; k++) {
        qk_test_write_file(pre, b, k);
        qk_calib *x = NULL;
        ck_assert_msg(qk_calib_load(&x, pre) != 0, ".qkc prefix of %zu bytes accepted", k);
        ck_assert_ptr_null(x);
    }
    /* and through the tools: exit 1, one line, nothing written */
    size_t cuts[] = {0, 3, 20, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        qk_test_write_file(pre, b, cuts[i]);
        char args[8192];
        snprintf(args, sizeof args, "--in-file %s -o %s", pre, qk_test_tmp("never.qkc"));
        tool_fails("qk-calibrate", args, "prefix", "never");
    }
    free(b);
}
END_TEST

/* Rewrite the trailing checksum of a .qkc image after a patch. */
static void rehash(uint8_t *b, size_t n) { qk_wr_u64(b + n - 8, qk_hash64(b, n - 8)); }

static void expect_refused(const uint8_t *b, size_t n, int want_rc, const char *needle, const char *what)
{
    const char *p = qk_test_tmp("hostile");
    qk_test_write_file(p, b, n);
    qk_calib *x = NULL;
    int rc = qk_calib_load(&x, p);
    ck_assert_msg(rc != 0, "%s: accepted", what);
    if (want_rc)
        ck_assert_msg(rc == want_rc, "%s: rc %d (%s), want %d", what, rc, qk_errmsg(), want_rc);
    if (needle)
        ck_assert_msg(strstr(qk_errmsg(), needle) != NULL, "%s: message '%s' lacks '%s'", what, qk_errmsg(), needle);
    ck_assert_ptr_null(x);
}

START_TEST(test_calibrate_hostile_qkc_fields)
{
    qk_calib *c = small_calib(1);
    const char *qkc = qk_test_tmp("h.qkc");
    ck_assert_int_eq(qk_calib_save_qkc(c, qkc), 0);
    qk_calib_free(c);
    size_t n;
    uint8_t *orig = qk_test_read_file(qkc, &n);
    uint8_t *b = malloc(n + 16);
    /* layout: header 60 + "calib.txt" = 69; entry 0: name_len 69, name 73..92, flags 92, n_in 96,
     * n_tokens 104, n_calls 112, hessian_of 120, sum_x2 128..160, zlib stream 160.. */
    const size_t E0 = 69;
    ck_assert_uint_eq(qk_rd_u32(orig + E0), 19);
    struct {
        size_t off;
        int width;
        uint64_t v;
        int rc;
        const char *needle, *what;
    } cases[] = {
        {48, 8, 1ull << 40, QK_EFORMAT, "entry count", "huge entry count"},
        {48, 8, 0, QK_EFORMAT, "entry count", "zero entries"},
        {56, 4, 1u << 30, QK_EFORMAT, "dataset length", "huge dataset"},
        {12, 4, 1, QK_EUNSUPPORTED, "flags", "unknown header flags"},
        {32, 8, (uint64_t)-5, QK_EFORMAT, "n_ctx", "negative n_ctx"},
        {E0, 4, 0, QK_EFORMAT, "name length", "empty name"},
        {E0, 4, 1u << 20, QK_EFORMAT, "name length", "huge name"},
        {E0 + 23, 4, 8, QK_EFORMAT, "flags", "unknown entry flags"},
        {E0 + 27, 8, 1ull << 40, QK_EFORMAT, "columns", "huge n_in"},
        {E0 + 27, 8, 1000, QK_EFORMAT, "truncated", "n_in past the end"},
        {E0 + 35, 8, 0, QK_EFORMAT, "tokens", "zero tokens"},
        {E0 + 43, 8, (uint64_t)-1, QK_EFORMAT, "calls", "negative calls"},
        {E0 + 51, 8, 5, QK_EFORMAT, "Hessian reference", "reference out of range"},
        {E0 + 51, 8, (uint64_t)-1, QK_EFORMAT, "Hessian reference", "own Hessian flag without reference"},
        {E0 + 59, 8, 0x7ff8000000000000ull, QK_ENONFINITE, "sum_x2", "NaN sum"},
        {E0 + 59, 8, 0xbff0000000000000ull, QK_EFORMAT, "sum_x2", "negative sum"},
        {E0 + 59 + 32 + 2, 1, 0xff, 0, NULL, "corrupt zlib stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(b, orig, n);
        if (cases[i].width == 8)
            qk_wr_u64(b + cases[i].off, cases[i].v);
        else if (cases[i].width == 4)
            qk_wr_u32(b + cases[i].off, (uint32_t)cases[i].v);
        else
            b[cases[i].off] ^= (uint8_t)cases[i].v;
        rehash(b, n);
        expect_refused(b, n, cases[i].rc, cases[i].needle, cases[i].what);
    }
    /* duplicate names (attn_k renamed attn_q, same length) */
    memcpy(b, orig, n);
    uint8_t *k = memmem(b + E0 + 23, n - E0 - 23, "attn_k", 6);
    ck_assert_ptr_nonnull(k);
    k[5] = 'q';
    rehash(b, n);
    expect_refused(b, n, QK_EFORMAT, "twice", "duplicate names");
    /* entry 1 refers to itself without holding a Hessian */
    memcpy(b, orig, n);
    uint8_t *e1 = k - 6 - 4; /* "blk.0." precedes "attn_k"; name_len before the name */
    ck_assert_uint_eq(qk_rd_u32(e1), 19);
    qk_wr_u64(e1 + 4 + 19 + 4 + 24, 1);
    rehash(b, n);
    expect_refused(b, n, QK_EFORMAT, "Hessian reference", "self reference without a Hessian");
    /* bytes after the last entry */
    memcpy(b, orig, n - 8);
    memset(b + n - 8, 0, 8);
    rehash(b, n + 8);
    expect_refused(b, n + 8, QK_EFORMAT, "unexpected bytes", "trailing bytes");
    /* a flipped bit anywhere: checksum */
    memcpy(b, orig, n);
    b[n / 2] ^= 0x10;
    expect_refused(b, n, QK_ECHECKSUM, "checksum", "bit flip");
    /* another version */
    memcpy(b, orig, n);
    qk_wr_u32(b + 8, 2);
    rehash(b, n);
    expect_refused(b, n, QK_EUNSUPPORTED, "version", "version 2");
    free(b);
    free(orig);
}
END_TEST

START_TEST(test_calibrate_hostile_dat_fields)
{
    qk_calib *c = small_calib(0);
    const char *dat = qk_test_tmp("h.dat");
    ck_assert_int_eq(qk_calib_save_dat(c, dat), 0);
    qk_calib_free(c);
    size_t n;
    uint8_t *orig = qk_test_read_file(dat, &n);
    uint8_t *b = malloc(n + 16);
    /* entry 0: name_len 4, name 8..27, ncall 27, nval 31, values 35..51; entry 1 at 51; trailer at 98 */
    struct {
        size_t off;
        uint32_t v;
        int rc;
        const char *needle, *what;
    } cases[] = {
        {0, 0, QK_EFORMAT, "entry count", "zero entries"},
        {0, 0xffffffffu, QK_EFORMAT, "entry count", "negative entries"},
        {0, 1u << 30, QK_EFORMAT, "entry count", "huge entry count"},
        {4, 0, QK_EFORMAT, "name length", "empty name"},
        {4, 0xfffffff0u, QK_EFORMAT, "name length", "negative name length"},
        {4, 5000, QK_EFORMAT, "name length", "huge name"},
        {27, 0, QK_EFORMAT, "ncall", "ncall 0"},
        {31, 0, QK_EFORMAT, "value count", "no values"},
        {31, 1u << 28, QK_EFORMAT, "value count", "huge value count"},
        {31, 1000, QK_EFORMAT, "truncated", "values past the end"},
        {35, 0x7fc00000u, QK_ENONFINITE, "NaN", "NaN value"},
        {39, 0x7f800000u, QK_ENONFINITE, "Inf", "Inf value"},
        {43, 0xbf800000u, QK_EFORMAT, "negative", "negative value"},
        {98, 0x80000000u, QK_EFORMAT, "chunk count", "negative chunk count"},
        {102, 100000, QK_EFORMAT, "dataset length", "huge dataset"},
        {102, 1, QK_EFORMAT, "unexpected bytes", "dataset shorter than the rest"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(b, orig, n);
        qk_wr_u32(b + cases[i].off, cases[i].v);
        expect_refused(b, n, cases[i].rc, cases[i].needle, cases[i].what);
    }
    memcpy(b, orig, n);
    ck_assert_int_eq(b[51 + 4 + 11], 'k');
    b[51 + 4 + 11] = 'q'; /* entry 1 "blk.0.attn_k.weight" becomes entry 0's name */
    expect_refused(b, n, QK_EFORMAT, "twice", "duplicate names");
    memcpy(b, orig, n);
    b[8 + 3] = 0;
    expect_refused(b, n, QK_EFORMAT, "NUL", "NUL in a name");
    memcpy(b, orig, n);
    memcpy(b + n, "xx", 2);
    expect_refused(b, n + 2, QK_EFORMAT, "unexpected bytes", "bytes after the trailer");
    free(b);
    free(orig);
}
END_TEST

START_TEST(test_calibrate_quantize_refuses_mismatched_imatrix)
{
    QK_REQUIRE_DATA(p192, PAD192);
    QK_REQUIRE_DATA(i256, IMX256);
    QK_REQUIRE_DATA(i192, IMX192);
    char args[8192];
    /* n_in of another model: exit 1 naming the tensor, no output */
    snprintf(args, sizeof args, "--pure --imatrix %s %s %s Q4_0", i256, p192, qk_test_tmp("mm.gguf"));
    tool_fails("qk-quantize", args, "input columns", "mm.gguf");
    /* a NaN in a .dat */
    size_t n;
    uint8_t *b = qk_test_read_file(i192, &n);
    const char *bad = qk_test_tmp("nan.dat");
    qk_wr_u32(b + 4 + 4 + strlen("blk.4.ffn_down.weight") + 8 + 4 * 7, 0x7fc00000u);
    qk_test_write_file(bad, b, n);
    free(b);
    snprintf(args, sizeof args, "--pure --imatrix %s %s %s Q4_0", bad, p192, qk_test_tmp("nan.gguf"));
    tool_fails("qk-quantize", args, "NaN", "nan.gguf");
    snprintf(args, sizeof args, "--show %s", bad);
    tool_fails("qk-calibrate", args, "NaN", NULL);
    /* a truncated .dat */
    b = qk_test_read_file(i192, &n);
    const char *trunc = qk_test_tmp("trunc.dat");
    qk_test_write_file(trunc, b, n / 3);
    free(b);
    snprintf(args, sizeof args, "--pure --imatrix %s %s %s Q4_0", trunc, p192, qk_test_tmp("tr.gguf"));
    tool_fails("qk-quantize", args, "truncated", "tr.gguf");
    /* a .qkc of another model with the same shapes (the llama2.c original, padded): refused on its checksum
     * unless --allow-imatrix-mismatch; accepted for the model it was made from */
    QK_REQUIRE_DATA(bin, BIN);
    QK_REQUIRE_DATA(tok, TOK);
    const char *q = calibrate(PAD192, "m192.qkc", "--chunks 4");
    snprintf(args, sizeof args, "--pure --imatrix %s %s --vocab %s --pad-ffn 32 %s Q4_0", q, bin, tok,
             qk_test_tmp("other.gguf"));
    tool_fails("qk-quantize", args, "another model", "other.gguf");
    snprintf(args, sizeof args, "-q --pure --imatrix %s --allow-imatrix-mismatch %s --vocab %s --pad-ffn 32 %s Q4_0", q,
             bin, tok, qk_test_tmp("other.gguf"));
    tool_ok("qk-quantize", args);
    snprintf(args, sizeof args, "-q --pure --imatrix %s %s %s Q4_0", q, p192, qk_test_tmp("same.gguf"));
    tool_ok("qk-quantize", args);
    /* --imatrix is a GGUF option */
    char *err = NULL;
    int rc = qk_test_run(NULL, &err, "%s --format gptq --imatrix %s %s -o %s", qk_test_tool("qk-quantize"), q, p192,
                         qk_test_tmp("gptq-dir"));
    ck_assert_msg(rc == 2, "exit %d: %s", rc, err);
    free(err);
}
END_TEST

START_TEST(test_calibrate_show_prints_statistics)
{
    QK_REQUIRE_DATA(g, IMX192);
    char *out = NULL, *err = NULL;
    int rc = qk_test_run(&out, &err, "%s --show %s", qk_test_tool("qk-calibrate"), g);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_ptr_nonnull(strstr(out, "entries: 35"));
    ck_assert_ptr_nonnull(strstr(out, "data/tinystories_valid_calib.txt"));
    /* ffn_down of the padded model: 20 of 192 columns are dead (10.42%) */
    const char *l = strstr(out, "blk.0.ffn_down.weight");
    ck_assert_ptr_nonnull(l);
    const char *eol = strchr(l, '\n');
    ck_assert_ptr_nonnull(memmem(l, (size_t)(eol - l), "10.42%", 6));
    ck_assert_ptr_nonnull(strstr(out, "blk.4.attn_q.weight"));
    free(out);
    free(err);
    /* a .qkc with Hessians shows who holds them */
    const char *q = calibrate(PAD192, "show.qkc", "--hessian --chunks 2");
    ck_assert_int_eq(qk_test_run(&out, NULL, "%s --show %s", qk_test_tool("qk-calibrate"), q), 0);
    ck_assert_ptr_nonnull(strstr(out, "= blk.0.attn_q.weight"));
    ck_assert_ptr_nonnull(strstr(out, "own"));
    free(out);
}
END_TEST

/* ------------------------------------------------------------ layer-major */

typedef struct {
    float *logits; /* [n_seq][n_ctx][V] */
    int64_t n_ctx, V;
} logit_sink;

static int sink_logits(void *ctx, int64_t seq, int64_t pos, const float *logits)
{
    logit_sink *s = ctx;
    memcpy(s->logits + (seq * s->n_ctx + pos) * s->V, logits, (size_t)s->V * sizeof(float));
    return 0;
}

/* Hook: keeps the input of attn_output or ffn_down (kind) of one layer. */
typedef struct tail_grab {
    int layer, kind;
    float *in;
    int64_t n;
} tail_grab;

static int grab_tail(void *ctx, const qk_linear_event *ev)
{
    tail_grab *g = ctx;
    if (ev->layer == g->layer && ev->kind == g->kind && !ev->y) {
        g->n = ev->n_in;
        memcpy(g->in, ev->x, (size_t)(ev->n_tokens * ev->n_in) * sizeof(float));
    }
    return 0;
}

/* embed + every layer (whole, attention then FFN, or each part's last
 * matmul from its kept input with qk_forward_layer_tail) + final gives the
 * logits of qk_forward_run bit for bit, on a model with dead (padded)
 * columns; a hook stopping a layer leaves x unchanged. */
START_TEST(test_calibrate_layer_major_forward_matches_run)
{
    QK_REQUIRE_DATA(path, PAD192);
    qk_model *m = NULL;
    ck_assert_int_eq(qk_model_open(&m, path, NULL), 0);
    const qk_model_config *cfg = qk_model_cfg(m);
    const int64_t n_seq = 3, n_ctx = 40, T = n_seq * n_ctx, D = cfg->n_embd, V = cfg->n_vocab;
    qk_forward *f = NULL;
    qk_forward_opts fo = {.n_threads = 2, .max_tokens = T};
    ck_assert_int_eq(qk_forward_new(&f, m, &fo), 0);
    ck_assert_int_eq(qk_forward_max_tokens(f), T);
    int32_t *tok = malloc((size_t)T * sizeof *tok);
    for (int64_t i = 0; i < T; i++)
        tok[i] = (int32_t)((i * 7919 + 13) % V);
    logit_sink a = {calloc((size_t)(T * V), sizeof(float)), n_ctx, V};
    logit_sink b = {calloc((size_t)(T * V), sizeof(float)), n_ctx, V};
    ck_assert_int_eq(qk_forward_run(f, tok, n_seq, n_ctx, 0, sink_logits, &a), 0);
    float *x = malloc((size_t)(T * D) * sizeof *x), *x2 = malloc((size_t)(T * D) * sizeof *x2);
    const int64_t widest = cfg->n_ff > cfg->n_head * cfg->head_dim ? cfg->n_ff : cfg->n_head * cfg->head_dim;
    tail_grab g = {.in = malloc((size_t)(T * widest) * sizeof(float))};
    float *xs = malloc((size_t)(T * D) * sizeof *xs);
    for (int split = 0; split < 3; split++) {
        ck_assert_int_eq(qk_forward_embed(f, tok, T, x), 0);
        for (int64_t l = 0; l < cfg->n_layer; l++) {
            if (split == 2) { /* each part run once to fill g.in (x kept aside), then its tail from g.in */
                for (int part = 0; part < 2; part++) {
                    g.layer = (int)l;
                    g.kind = part ? QK_LIN_DOWN : QK_LIN_O;
                    memcpy(xs, x, (size_t)(T * D) * sizeof *x);
                    qk_forward_set_hook(f, grab_tail, &g);
                    ck_assert_int_eq(qk_forward_layer(f, l, part ? QK_FORWARD_FFN : QK_FORWARD_ATTN, xs, n_seq,
                                                      n_ctx), 0);
                    qk_forward_set_hook(f, NULL, NULL);
                    ck_assert_int_eq(qk_forward_layer_tail(f, l, g.kind, g.in, x, n_seq, n_ctx), 0);
                    ck_assert_msg(!memcmp(x, xs, (size_t)(T * D) * sizeof *x), "layer %lld part %d: the tail "
                                  "differs from the part", (long long)l, part);
                }
            } else if (split) {
                ck_assert_int_eq(qk_forward_layer(f, l, QK_FORWARD_ATTN, x, n_seq, n_ctx), 0);
                ck_assert_int_eq(qk_forward_layer(f, l, QK_FORWARD_FFN, x, n_seq, n_ctx), 0);
            } else {
                ck_assert_int_eq(qk_forward_layer(f, l, QK_FORWARD_BLOCK, x, n_seq, n_ctx), 0);
            }
        }
        memset(b.logits, 0, (size_t)(T * V) * sizeof(float));
        ck_assert_int_eq(qk_forward_final(f, x, n_seq, n_ctx, 0, sink_logits, &b), 0);
        ck_assert_msg(!memcmp(a.logits, b.logits, (size_t)(T * V) * sizeof(float)),
                      "layer-major logits differ from qk_forward_run (split %d)", split);
    }
    /* windows split over calls: the same states */
    ck_assert_int_eq(qk_forward_embed(f, tok, T, x2), 0);
    for (int64_t l = 0; l < cfg->n_layer; l++)
        for (int64_t s = 0; s < n_seq; s++)
            ck_assert_int_eq(qk_forward_layer(f, l, QK_FORWARD_BLOCK, x2 + s * n_ctx * D, 1, n_ctx), 0);
    double worst = 0;
    for (int64_t i = 0; i < T * D; i++)
        worst = fmax(worst, fabs((double)x[i] - x2[i]) / (1 + fabs((double)x[i])));
    ck_assert_msg(worst <= 1e-5, "batching changes the hidden states by %g", worst);
    /* bad arguments */
    ck_assert_int_eq(qk_forward_layer_tail(f, 0, QK_LIN_GATE, g.in, x, n_seq, n_ctx), QK_EINVAL);
    ck_assert_int_eq(qk_forward_layer_tail(f, cfg->n_layer, QK_LIN_O, g.in, x, n_seq, n_ctx), QK_EINVAL);
    free(g.in);
    free(xs);
    ck_assert_int_eq(qk_forward_layer(f, cfg->n_layer, QK_FORWARD_BLOCK, x, 1, n_ctx), QK_EINVAL);
    ck_assert_int_eq(qk_forward_layer(f, 0, 0, x, 1, n_ctx), QK_EINVAL);
    ck_assert_int_eq(qk_forward_layer(f, 0, QK_FORWARD_BLOCK, x, n_seq + 1, n_ctx), QK_EINVAL);
    tok[5] = (int32_t)V;
    ck_assert_int_eq(qk_forward_embed(f, tok, T, x), QK_EINVAL);
    free(tok);
    free(x);
    free(x2);
    free(a.logits);
    free(b.logits);
    qk_forward_free(f);
    qk_model_close(m);
}
END_TEST

typedef struct {
    int64_t calls, n_layer;
    uint64_t max_live; /* bytes of Hessians allocated at once, seen in the callback */
} layer_watch;

static int watch_layer(void *ctx, const qk_calib *set, int64_t layer, int64_t first, int64_t count)
{
    layer_watch *w = ctx;
    uint64_t live = 0;
    for (int64_t i = 0; i < set->n; i++) {
        const qk_calib_entry *e = &set->e[i];
        if (!e->xtx)
            continue;
        ck_assert_msg(i >= first && i < first + count, "layer %lld: the Hessian of '%s' is allocated", (long long)layer,
                      e->name);
        live += (uint64_t)e->n_in * (uint64_t)e->n_in * sizeof(double);
    }
    w->max_live = live > w->max_live ? live : w->max_live;
    w->calls++;
    return 0;
}

/* qk-calibrate --hessian writes the .qkc layer by layer: the file equals,
 * byte for byte, the all-at-once collection (qk_forward_run over every
 * layer, every Hessian in memory, qk_calib_save_qkc) with the same
 * windows per call; only one layer's Hessians are allocated at a time
 * (checked in the callback); the lazily opened file gives the same
 * Hessians one at a time; --layers N writes the first N layers. */
START_TEST(test_calibrate_streamed_qkc_equals_all_at_once)
{
    QK_REQUIRE_DATA(path, PAD192);
    const char *text_path = qk_test_data(CALIB_TEXT);
    const char *streamed = calibrate(PAD192, "stream.qkc", "--hessian -b 4 --sum-x --absmax");

    /* the same collection, all at once */
    qk_model *m = NULL;
    ck_assert_int_eq(qk_model_open(&m, path, NULL), 0);
    const qk_model_config *cfg = qk_model_cfg(m);
    char *text = NULL;
    size_t text_n = 0;
    int32_t *ids = NULL, *win = NULL;
    int64_t n_ids = 0, n_win = 0;
    qk_tokenizer *tok = NULL;
    const qk_vocab *v = qk_model_vocab(m);
    ck_assert_int_eq(qk_read_file(&text, &text_n, text_path, 1 << 30), 0);
    ck_assert_int_eq(qk_tokenizer_new(&tok, v), 0);
    ck_assert_int_eq(qk_tokenize_ex(tok, text, text_n, QK_TOKENIZE_ADD_SPECIAL, &ids, &n_ids), 0);
    ck_assert_int_eq(qk_eval_windows(ids, n_ids, 128, 0, v->add_bos ? v->bos_id : -1, &win, &n_win), 0);
    qk_calib_opts co = {.n_ctx = 128, .hessian = 1, .sum_x = 1, .absmax = 1, .n_threads = 2};
    qk_calib_collector *col = NULL;
    qk_forward *f = NULL;
    qk_forward_opts fo = {.n_threads = 2, .max_tokens = 4 * 128};
    ck_assert_int_eq(qk_calib_collector_new(&col, m, &co), 0);
    ck_assert_int_eq(qk_forward_new(&f, m, &fo), 0);
    qk_forward_set_hook(f, qk_calib_hook, col);
    for (int64_t s = 0; s < n_win; s += 4)
        ck_assert_int_eq(qk_forward_run(f, win + s * 128, n_win - s < 4 ? n_win - s : 4, 128, 128, NULL, NULL), 0);
    qk_calib *whole = NULL;
    ck_assert_int_eq(qk_calib_collector_finish(col, &whole), 0);
    qk_calib_collector_free(col);
    whole->text_hash = qk_hash64(text, text_n);
    whole->dataset = strdup(text_path);
    ck_assert_int_eq(qk_calib_model_hash(m, &whole->model_hash), 0);
    const char *ref = qk_test_tmp("whole.qkc");
    ck_assert_int_eq(qk_calib_save_qkc(whole, ref), 0);
    size_t na, nb;
    uint8_t *a = qk_test_read_file(streamed, &na), *b = qk_test_read_file(ref, &nb);
    ck_assert_msg(na == nb && !memcmp(a, b, na), "streamed .qkc (%zu bytes) differs from the all-at-once one (%zu)",
                  na, nb);
    free(a);
    free(b);

    /* lazily opened: each Hessian on demand equals the loaded one */
    qk_calib *lz = NULL;
    ck_assert_int_eq(qk_calib_open(&lz, streamed), 0);
    ck_assert_int_eq(lz->n, whole->n);
    double *h = malloc((size_t)(cfg->n_ff * cfg->n_ff) * sizeof *h);
    for (int64_t i = 0; i < lz->n; i++) {
        const qk_calib_entry *e = &lz->e[i];
        ck_assert_ptr_null(e->xtx);
        ck_assert_ptr_null(qk_calib_hessian(lz, e));
        int64_t k = qk_calib_hessian_owner(lz, e);
        ck_assert_int_eq(k, whole->e[i].hessian_of);
        ck_assert_int_eq(qk_calib_read_hessian(lz, k, h), 0);
        ck_assert(!memcmp(h, whole->e[k].xtx, (size_t)(e->n_in * e->n_in) * sizeof *h));
        if (k != i)
            ck_assert_int_eq(qk_calib_read_hessian(lz, i, h), QK_ENOTFOUND);
    }
    qk_calib_free(lz);

    /* layer-major in the library: one layer's Hessians at a time */
    qk_calib_opts cl = co;
    cl.hessian_per_layer = 1;
    uint64_t all_bytes = qk_calib_collector_bytes(m, &co), layer_bytes = qk_calib_collector_bytes(m, &cl);
    ck_assert_msg(layer_bytes * 3 < all_bytes, "per-layer collection reports %llu bytes, all at once %llu",
                  (unsigned long long)layer_bytes, (unsigned long long)all_bytes);
    ck_assert_int_eq(qk_calib_collector_new(&col, m, &cl), 0);
    layer_watch w = {0};
    ck_assert_int_eq(qk_calib_collect_layers(col, f, win, n_win, 0, watch_layer, &w, NULL), 0);
    ck_assert_int_eq(w.calls, cfg->n_layer);
    ck_assert(w.max_live > 0 && w.max_live * (uint64_t)cfg->n_layer <= all_bytes);
    qk_calib *lm = NULL;
    ck_assert_int_eq(qk_calib_collector_finish(col, &lm), 0);
    for (int64_t i = 0; i < lm->n; i++) {
        ck_assert_int_eq(lm->e[i].n_tokens, whole->e[i].n_tokens);
        ck_assert(!memcmp(lm->e[i].sum_x2, whole->e[i].sum_x2, (size_t)lm->e[i].n_in * sizeof(double)));
        ck_assert_ptr_null(lm->e[i].xtx);
    }
    qk_calib_free(lm);
    qk_calib_collector_free(col);

    /* --layers 2: the first two layers' entries */
    qk_calib *part = load_ok(calibrate(PAD192, "part.qkc", "--hessian -b 4 --layers 2"));
    ck_assert_int_eq(part->n, 14);
    for (int64_t i = 0; i < part->n; i++) {
        ck_assert_str_eq(part->e[i].name, whole->e[i].name);
        if (part->e[i].hessian_of == i)
            ck_assert(!memcmp(part->e[i].xtx, whole->e[i].xtx, (size_t)(part->e[i].n_in * part->e[i].n_in) * sizeof(double)));
    }
    qk_calib_free(part);
    char *err = NULL;
    ck_assert_int_eq(qk_test_run(NULL, &err, "%s x.gguf --text t.txt -o x.dat --layers 2", qk_test_tool("qk-calibrate")), 2);
    ck_assert_ptr_nonnull(strstr(err, "--layers"));
    free(err);

    free(h);
    qk_calib_free(whole);
    qk_forward_free(f);
    qk_tokenizer_free(tok);
    free(text);
    free(ids);
    free(win);
    qk_model_close(m);
}
END_TEST

/* A lazily opened .qkc is validated when opened: a corrupted Hessian stream
 * (checksum fixed up) is refused there, not at the first read. */
START_TEST(test_calibrate_lazy_open_rejects_corrupt_hessian)
{
    QK_REQUIRE_DATA(path, PAD192);
    (void)path;
    const char *src = calibrate(PAD192, "lz.qkc", "--hessian -b 4 --layers 1");
    size_t n;
    uint8_t *d = qk_test_read_file(src, &n);
    qk_calib *c = NULL;
    ck_assert_int_eq(qk_calib_open(&c, src), 0);
    uint64_t at = c->e[0].xtx_at;
    ck_assert(at > 0 && at + 64 < n);
    qk_calib_free(c);
    d[at + 40] ^= 0x5a; /* inside the first Hessian's zlib stream */
    qk_wr_u64(d + n - 8, qk_hash64(d, n - 8));
    const char *bad = qk_test_tmp("lz-bad.qkc");
    qk_test_write_file(bad, d, n);
    ck_assert_int_ne(qk_calib_open(&c, bad), 0);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(qk_errmsg(), "lz-bad.qkc"));
    /* truncated: refused by the checksum */
    qk_test_write_file(bad, d, n - 100);
    ck_assert_int_ne(qk_calib_open(&c, bad), 0);
    free(d);
}
END_TEST

Suite *qk_test_suite_calibrate(void)
{
    Suite *s = suite_create("calibrate");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_calibrate_matches_llamacpp_imatrix);
    tcase_add_test(tc, test_calibrate_process_output);
    tcase_add_test(tc, test_calibrate_dat_round_trip_is_byte_identical);
    tcase_add_test(tc, test_calibrate_qkc_round_trip_is_exact);
    tcase_add_test(tc, test_calibrate_hessian_diagonal_and_symmetry);
    tcase_add_test(tc, test_calibrate_hook_against_naive_sums);
    tcase_add_test(tc, test_calibrate_xtx_tiles_and_threads);
    tcase_add_test(tc, test_calibrate_merge_halves_equals_whole);
    tcase_add_test(tc, test_calibrate_quantize_with_golden_imatrix_matches_llamacpp);
    tcase_add_test(tc, test_calibrate_quantize_with_own_imatrix_close_to_llamacpp);
    tcase_add_test(tc, test_calibrate_rejects_short_text_and_bad_usage);
    tcase_add_test(tc, test_calibrate_every_prefix_of_small_files_is_refused);
    tcase_add_test(tc, test_calibrate_hostile_qkc_fields);
    tcase_add_test(tc, test_calibrate_hostile_dat_fields);
    tcase_add_test(tc, test_calibrate_quantize_refuses_mismatched_imatrix);
    tcase_add_test(tc, test_calibrate_show_prints_statistics);
    tcase_add_test(tc, test_calibrate_layer_major_forward_matches_run);
    tcase_add_test(tc, test_calibrate_streamed_qkc_equals_all_at_once);
    tcase_add_test(tc, test_calibrate_lazy_open_rejects_corrupt_hessian);
    suite_add_tcase(s, tc);
    return s;
}

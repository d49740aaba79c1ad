/* libFuzzer target: calibration files (qk_calib_load: llama.cpp's legacy
 * imatrix .dat and quantkit's .qkc with zlib-compressed Hessians), and the
 * round trips: .qkc load -> save -> load is exact; .dat (floats, a lossy
 * format) is idempotent: save(load(save(x))) == save(x), byte for byte.
 * A .qkc input gets its XXH3-64 trailer recomputed so mutations reach the
 * structure checks (the checksum test lives in tests/test_calibrate.c). */
#include <stdlib.h>
#include <string.h>

#include "fz_util.h"
#include "quantkit/calib.h"

static int same_doubles(const double *a, const double *b, int64_t n)
{
    if (!a || !b)
        return a == b;
    return !memcmp(a, b, (size_t)n * sizeof *a);
}

static void same(const qk_calib *a, const qk_calib *b)
{
    FZ_CHECK(a->n == b->n && a->model_hash == b->model_hash && a->text_hash == b->text_hash &&
                 a->n_ctx == b->n_ctx && a->n_chunks == b->n_chunks,
             "header differs");
    FZ_CHECK((!a->dataset && !b->dataset) || (a->dataset && b->dataset && !strcmp(a->dataset, b->dataset)) ||
                 (!a->dataset && b->dataset && !*b->dataset) || (a->dataset && !*a->dataset && !b->dataset),
             "dataset differs");
    for (int64_t i = 0; i < a->n; i++) {
        const qk_calib_entry *x = &a->e[i], *y = &b->e[i];
        FZ_CHECK(!strcmp(x->name, y->name) && x->n_in == y->n_in && x->n_tokens == y->n_tokens &&
                     x->n_calls == y->n_calls && x->hessian_of == y->hessian_of,
                 "entry %lld '%s' differs", (long long)i, x->name);
        FZ_CHECK(same_doubles(x->sum_x2, y->sum_x2, x->n_in) && same_doubles(x->sum_x, y->sum_x, x->n_in) &&
                     same_doubles(x->absmax, y->absmax, x->n_in),
                 "entry '%s' vectors differ", x->name);
        FZ_CHECK(same_doubles(qk_calib_hessian(a, x), qk_calib_hessian(b, y), x->n_in * x->n_in),
                 "entry '%s' Hessian differs", x->name);
        FZ_CHECK(qk_calib_find(a, x->name) == x, "find('%s')", x->name);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reset();
    uint8_t *copy = malloc(size + 1);
    FZ_CHECK(copy, "malloc");
    memcpy(copy, data, size);
    if (size >= 16 && !memcmp(copy, "QKCALIB", 7))
        qk_wr_u64(copy + size - 8, qk_hash64(copy, size - 8));
    const char *path = fz_write("in.imatrix", copy, size);
    free(copy);
    qk_calib *a = NULL, *b = NULL;
    if (qk_calib_load(&a, path) == 0) {
        float *imp = NULL;
        for (int64_t i = 0; i < a->n; i++) {
            float *r = realloc(imp, (size_t)a->e[i].n_in * sizeof *imp);
            FZ_CHECK(r, "realloc");
            imp = r;
            qk_calib_importance(&a->e[i], imp);
        }
        free(imp);
        const char *q = fz_path("rt.qkc");
        FZ_OK(qk_calib_save_qkc(a, q));
        FZ_OK(qk_calib_load(&b, q));
        same(a, b);
        qk_calib_free(b);
        b = NULL;

        const char *d1 = fz_path("rt1.dat"), *d2 = fz_path("rt2.dat");
        if (qk_calib_save_dat(a, d1) == 0) {
            FZ_OK(qk_calib_load(&b, d1));
            FZ_OK(qk_calib_save_dat(b, d2));
            size_t n1 = 0, n2 = 0;
            uint8_t *x = fz_read(d1, &n1), *y = fz_read(d2, &n2);
            FZ_CHECK(x && y && n1 == n2 && !memcmp(x, y, n1), ".dat round trip is not idempotent");
            free(x);
            free(y);
        }
    }
    qk_calib_free(a);
    qk_calib_free(b);
    qk_error_clear();
    return 0;
}

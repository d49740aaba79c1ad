/* qk-gptq-layers: GPTQ on the first N layers of a model, timed (bench/gptq7b.sh).
 *
 *   qk-gptq-layers MODEL --calib-text FILE [--layers N] [--ctx 512] [--chunks K]
 *                  [--type Q4_K] [--sequential] [--calib FILE.qkc] [--refine N] [-t T]
 *
 * What qk-quantize --method gptq does for the 7 linear tensors of each of
 * the first N layers (the Hessians from qk_gptq_calib, collected layer by
 * layer on the calibration text, or read from a .qkc), without writing a
 * file: per layer, the seconds spent collecting Hessians (forward sweeps
 * and X^T X) and in GPTQ itself, so a full model's time can be
 * extrapolated. Progress on stderr, one line per layer on stdout. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/common.h"
#include "quantkit/ggml_types.h"
#include "quantkit/gptq_method.h"
#include "quantkit/model.h"

static const char *const k_kind[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

int main(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *calib = NULL, *type_name = "Q4_K";
    long layers = 2, ctx = 512, chunks = 16, threads = 0, refine = -1;
    int sequential = 0;
    static const struct option lo[] = {
        {"calib-text", required_argument, 0, 'x'}, {"calib", required_argument, 0, 'c'},
        {"layers", required_argument, 0, 'L'},     {"ctx", required_argument, 0, 'n'},
        {"chunks", required_argument, 0, 'k'},     {"type", required_argument, 0, 'y'},
        {"sequential", no_argument, 0, 's'},       {"threads", required_argument, 0, 't'},
        {"refine", required_argument, 0, 'r'},
        {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "t:", lo, NULL)) != -1) {
        switch (ch) {
        case 'x': text = optarg; break;
        case 'c': calib = optarg; break;
        case 'L': layers = atol(optarg); break;
        case 'n': ctx = atol(optarg); break;
        case 'k': chunks = atol(optarg); break;
        case 'y': type_name = optarg; break;
        case 's': sequential = 1; break;
        case 't': threads = atol(optarg); break;
        case 'r': refine = atol(optarg); break;
        default: fprintf(stderr, "usage: see bench/qk_gptq_layers.c\n"); return 2;
        }
    }
    if (optind < argc)
        model = argv[optind];
    int type = qk_type_from_name(type_name);
    if (!model || (!text && !calib) || type < 0 || layers < 1) {
        fprintf(stderr, "usage: qk-gptq-layers MODEL --calib-text FILE [--layers N] [--ctx N] [--chunks K] "
                        "[--type T] [--sequential] [--calib F.qkc] [-t T]\n");
        return 2;
    }
    qk_model *m = NULL;
    qk_pool *pool = NULL;
    qk_gptq_calib *gc = NULL;
    int rc = qk_model_open(&m, model, NULL);
    if (!rc)
        rc = qk_pool_create(&pool, (int)threads);
    double t0 = qk_now();
    qk_gptq_calib_opts co = {.calib_path = calib, .text_path = text, .n_ctx = ctx, .max_chunks = chunks,
                             .sequential = sequential, .output_rows = 0, .n_threads = (int)threads};
    if (!rc)
        rc = qk_gptq_calib_new(&gc, m, &co);
    double t_new = qk_now() - t0;
    if (rc) {
        fprintf(stderr, "qk-gptq-layers: %s\n", qk_errmsg());
        return 1;
    }
    printf("model %s, %s, %ld windows of %ld, %s%s, refine %ld; setup %.1f s\n", model, type_name, chunks, ctx,
           sequential ? "sequential" : "full-precision Hessians", calib ? " (from .qkc)" : "", refine >= 0 ? refine : 2,
           t_new);
    printf("%5s %10s %10s %10s\n", "layer", "hessian_s", "gptq_s", "total_s");
    qk_gptq_opts go;
    qk_gptq_opts_default(&go, type);
    if (refine >= 0)
        go.refine = (int)refine;
    double sum_h = 0, sum_g = 0;
    if (layers > qk_model_cfg(m)->n_layer)
        layers = (long)qk_model_cfg(m)->n_layer;
    for (long l = 0; l < layers && !rc; l++) {
        double lh = 0, lg = 0;
        for (int k = 0; k < 7 && !rc; k++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%ld.%s.weight", l, k_kind[k]);
            const qk_model_tensor *t = qk_model_find(m, name);
            const int64_t rows = qk_model_tensor_rows(t), cols = t->ne[0];
            size_t rb = 0;
            qk_type_row_bytes(type, cols, &rb);
            float *w = malloc((size_t)(rows * cols) * sizeof(float)), *deq = malloc((size_t)(rows * cols) * sizeof(float));
            uint8_t *q = malloc((size_t)rows * rb);
            if (!w || !deq || !q) {
                fprintf(stderr, "qk-gptq-layers: out of memory\n");
                return 1;
            }
            rc = qk_model_rows_f32(m, t, 0, rows, w);
            qk_model_release(t);
            int64_t p0;
            double s0, s1;
            qk_gptq_calib_counts(gc, &p0, &s0);
            double tt = qk_now();
            qk_gptq_stats st = {0};
            if (!rc)
                rc = qk_gptq_calib_tensor(gc, t, &go, w, q, deq, pool, &st);
            if (!rc)
                rc = qk_gptq_calib_quantized(gc, t, deq);
            double dt = qk_now() - tt;
            qk_gptq_calib_counts(gc, &p0, &s1);
            lh += s1 - s0;
            lg += dt - (s1 - s0);
            fprintf(stderr, "%s: %.1f s (hessian %.1f s, gptq %.1f s, damp %g)\n", name, dt, s1 - s0, st.seconds, st.damp);
            free(w);
            free(deq);
            free(q);
        }
        sum_h += lh;
        sum_g += lg;
        printf("%5ld %10.1f %10.1f %10.1f\n", l, lh, lg, lh + lg);
        fflush(stdout);
    }
    if (rc) {
        fprintf(stderr, "qk-gptq-layers: %s\n", qk_errmsg());
        return 1;
    }
    const int64_t L = qk_model_cfg(m)->n_layer;
    printf("mean per layer: hessian %.1f s, gptq %.1f s; %lld layers extrapolated: %.0f s (+ setup %.0f s)\n",
           sum_h / (double)layers, sum_g / (double)layers, (long long)L, (sum_h + sum_g) / (double)layers * (double)L,
           t_new);
    qk_gptq_calib_free(gc);
    qk_pool_free(pool);
    qk_model_close(m);
    return 0;
}

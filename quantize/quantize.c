/* Row-parallel tensor encoding. Rows are independent, so splitting them over
 * threads gives the same bytes for any thread count. */
#include "quantkit/quantize.h"

typedef struct {
    const qk_type_traits *tr;
    qk_from_float_fn fn;
    const float *src;
    uint8_t *dst;
    int64_t ne0;
    size_t row_bytes;
    const float *importance;
} rows_job;

static void encode_row(void *ctx, int64_t r, int thread)
{
    (void)thread;
    rows_job *j = ctx;
    j->fn(j->src + (size_t)r * (size_t)j->ne0, j->dst + (size_t)r * j->row_bytes, j->ne0, j->importance);
}

int qk_quantize_rows(int type, const float *src, void *dst, int64_t n_rows, int64_t ne0, const float *importance,
                     qk_pool *pool)
{
    const qk_type_traits *tr = qk_type_get(type);
    if (!tr || !(tr->from_float || tr->from_float_ref))
        return qk_error(QK_EUNSUPPORTED, "quantkit cannot encode type %s", qk_type_name(type));
    rows_job j = {tr, tr->from_float ? tr->from_float : tr->from_float_ref, src, dst, ne0, 0, importance};
    int rc = qk_type_row_bytes(type, ne0, &j.row_bytes);
    if (rc)
        return rc;
    /* about 8 chunks of rows per thread (qk_pool_run's default): rows of a
     * call cost about the same, so this balances and keeps the hand-out
     * rare. (A fixed 4096/(ne0/256+1) rows per chunk cut a 292-row call on
     * 4096-wide rows into 240 + 52 rows: one of two threads idle.) */
    qk_pool_run(pool, n_rows, 0, encode_row, &j);
    return 0;
}

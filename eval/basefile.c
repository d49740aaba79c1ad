/* The saved-base file (--save-base / --load-base).
 *
 * Layout (little-endian):
 *   "QKBASE01" u32 version(1) u32 score_all
 *   i64 n_pos, k, n_vocab, n_ctx, n_chunks
 *   u64 text_hash, vocab_hash, model_hash, payload_bytes (compressed)
 *   payload: zlib stream of lp_correct f32[n_pos], top1 i32[n_pos],
 *            ids i32[n_pos*k], lps f32[n_pos*k]
 *   u64 XXH3-64 of every byte before it
 */
#include "quantkit/metrics.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define HDR_BYTES (8 + 4 + 4 + 5 * 8 + 4 * 8)
#define MAX_POS (1ll << 32)
#define MAX_K 1024
/* deflate never compresses better than ~1032:1: a header claiming more raw
 * bytes than this times the stored stream is refused before allocating */
#define ZLIB_MAX_RATIO 1100u

static size_t payload_raw_bytes(int64_t n_pos, int64_t k)
{
    return (size_t)n_pos * (4 + 4) + (size_t)n_pos * (size_t)k * (4 + 4);
}

static void put_le32_array(uint8_t *dst, const void *src, int64_t n)
{
    const uint32_t *s = src;
    for (int64_t i = 0; i < n; i++)
        qk_wr_u32(dst + 4 * i, s[i]);
}

static void get_le32_array(void *dst, const uint8_t *src, int64_t n)
{
    uint32_t *d = dst;
    for (int64_t i = 0; i < n; i++)
        d[i] = qk_rd_u32(src + 4 * i);
}

int qk_base_results_save(const qk_base_results *b, const char *path)
{
    size_t raw_n = payload_raw_bytes(b->n_pos, b->k);
    uint8_t *raw = malloc(raw_n);
    uLongf comp_n = compressBound((uLong)raw_n);
    uint8_t *buf = malloc(HDR_BYTES + comp_n + 8);
    int rc = 0;
    if (!raw || !buf) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    uint8_t *p = raw;
    put_le32_array(p, b->lp_correct, b->n_pos);
    p += 4 * b->n_pos;
    put_le32_array(p, b->top1, b->n_pos);
    p += 4 * b->n_pos;
    put_le32_array(p, b->ids, b->n_pos * b->k);
    p += 4 * b->n_pos * b->k;
    put_le32_array(p, b->lps, b->n_pos * b->k);
    if (compress2(buf + HDR_BYTES, &comp_n, raw, (uLong)raw_n, 6) != Z_OK) {
        rc = qk_error(QK_EIO, "%s: zlib compression failed", path);
        goto done;
    }
    uint8_t *h = buf;
    memcpy(h, "QKBASE01", 8);
    qk_wr_u32(h + 8, 1);
    qk_wr_u32(h + 12, (uint32_t)b->score_all);
    qk_wr_u64(h + 16, (uint64_t)b->n_pos);
    qk_wr_u64(h + 24, (uint64_t)b->k);
    qk_wr_u64(h + 32, (uint64_t)b->n_vocab);
    qk_wr_u64(h + 40, (uint64_t)b->n_ctx);
    qk_wr_u64(h + 48, (uint64_t)b->n_chunks);
    qk_wr_u64(h + 56, b->text_hash);
    qk_wr_u64(h + 64, b->vocab_hash);
    qk_wr_u64(h + 72, b->model_hash);
    qk_wr_u64(h + 80, (uint64_t)comp_n);
    size_t total = HDR_BYTES + comp_n;
    qk_wr_u64(buf + total, qk_hash64(buf, total));
    rc = qk_write_file_atomic(path, buf, total + 8, NULL);
done:
    free(raw);
    free(buf);
    return rc;
}

int qk_base_results_load(qk_base_results **out, const char *path)
{
    *out = NULL;
    qk_mmap *m = NULL;
    qk_base_results *b = NULL;
    uint8_t *raw = NULL;
    int rc = qk_mmap_open(&m, path);
    if (rc)
        return rc;
    const uint8_t *d = m->data;
    if (m->size < HDR_BYTES + 8 || memcmp(d, "QKBASE01", 8)) {
        rc = qk_error(QK_EFORMAT, "%s: not a quantkit saved-base file", path);
        goto done;
    }
    if (qk_rd_u32(d + 8) != 1) {
        rc = qk_error(QK_EUNSUPPORTED, "%s: saved-base version %u is not supported", path, qk_rd_u32(d + 8));
        goto done;
    }
    uint64_t comp_n = qk_rd_u64(d + 80);
    if (comp_n > m->size - HDR_BYTES - 8 || HDR_BYTES + comp_n + 8 != m->size) {
        rc = qk_error(QK_EFORMAT, "%s: payload size %llu does not match the file size %llu", path,
                      (unsigned long long)comp_n, (unsigned long long)m->size);
        goto done;
    }
    if (qk_hash64(d, HDR_BYTES + comp_n) != qk_rd_u64(d + HDR_BYTES + comp_n)) {
        rc = qk_error(QK_ECHECKSUM, "%s: checksum mismatch (the file is corrupted)", path);
        goto done;
    }
    b = calloc(1, sizeof *b);
    if (!b) {
        rc = qk_error(QK_ENOMEM, "out of memory");
        goto done;
    }
    b->score_all = (int)qk_rd_u32(d + 12);
    b->n_pos = (int64_t)qk_rd_u64(d + 16);
    b->k = (int64_t)qk_rd_u64(d + 24);
    b->n_vocab = (int64_t)qk_rd_u64(d + 32);
    b->n_ctx = (int64_t)qk_rd_u64(d + 40);
    b->n_chunks = (int64_t)qk_rd_u64(d + 48);
    b->text_hash = qk_rd_u64(d + 56);
    b->vocab_hash = qk_rd_u64(d + 64);
    b->model_hash = qk_rd_u64(d + 72);
    if (b->n_pos <= 0 || b->n_pos > MAX_POS || b->k <= 0 || b->k > MAX_K || b->n_vocab <= 0 ||
        b->n_vocab > (1 << 24) || b->k > b->n_vocab || b->n_ctx <= 0 || b->n_chunks <= 0) {
        rc = qk_error(QK_EFORMAT, "%s: header counts out of range", path);
        goto done;
    }
    size_t raw_n = payload_raw_bytes(b->n_pos, b->k);
    if (raw_n / ZLIB_MAX_RATIO > comp_n) {
        rc = qk_error(QK_EFORMAT,
                      "%s: header claims %lld positions x top-%lld (%zu bytes) but the payload has only %llu "
                      "compressed bytes",
                      path, (long long)b->n_pos, (long long)b->k, raw_n, (unsigned long long)comp_n);
        goto done;
    }
    raw = malloc(raw_n);
    b->lp_correct = malloc((size_t)b->n_pos * 4);
    b->top1 = malloc((size_t)b->n_pos * 4);
    b->ids = malloc((size_t)b->n_pos * (size_t)b->k * 4);
    b->lps = malloc((size_t)b->n_pos * (size_t)b->k * 4);
    if (!raw || !b->lp_correct || !b->top1 || !b->ids || !b->lps) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    uLongf got = (uLongf)raw_n;
    if (uncompress(raw, &got, d + HDR_BYTES, (uLong)comp_n) != Z_OK || got != raw_n) {
        rc = qk_error(QK_EFORMAT, "%s: compressed payload is corrupt or has the wrong size", path);
        goto done;
    }
    const uint8_t *p = raw;
    get_le32_array(b->lp_correct, p, b->n_pos);
    p += 4 * b->n_pos;
    get_le32_array(b->top1, p, b->n_pos);
    p += 4 * b->n_pos;
    get_le32_array(b->ids, p, b->n_pos * b->k);
    p += 4 * b->n_pos * b->k;
    get_le32_array(b->lps, p, b->n_pos * b->k);
    for (int64_t i = 0; i < b->n_pos * b->k; i++)
        if (b->ids[i] < 0 || b->ids[i] >= b->n_vocab) {
            rc = qk_error(QK_EFORMAT, "%s: token id %d out of range", path, b->ids[i]);
            goto done;
        }
    for (int64_t i = 0; i < b->n_pos; i++)
        if (b->top1[i] < 0 || b->top1[i] >= b->n_vocab) {
            rc = qk_error(QK_EFORMAT, "%s: token id %d out of range", path, b->top1[i]);
            goto done;
        }
done:
    free(raw);
    qk_mmap_close(m);
    if (rc) {
        qk_base_results_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

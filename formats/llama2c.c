/* llama2.c legacy (v0) checkpoint: header validation and the offset of
 * every weight array (layout in include/quantkit/llama2c.h).
 *
 * The header has no magic, so the checks are what tell a checkpoint from
 * any other file: every dimension positive (vocab_size may be negative:
 * unshared classifier), n_heads | dim, n_kv_heads | n_heads, an even head
 * dimension (RoPE rotates pairs), and a file size equal to what the header
 * implies, computed in overflow-checked uint64.
 */
#include "quantkit/llama2c.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* llama2.c's export.py version 1/2 files start with this magic ("ak42"). */
#define LLAMA2C_V1_MAGIC 0x616b3432u

/* Lay out `n_elems` floats at *off; advance *off. -1 on overflow. */
static int place(qk_llama2c_array *a, uint64_t *off, uint64_t n_elems)
{
    uint64_t bytes;
    a->offset = *off;
    a->n_elems = n_elems;
    if (qk_mul_u64(n_elems, 4, &bytes) || qk_add_u64(*off, bytes, off))
        return -1;
    return 0;
}

/* a * b * c in uint64; -1 on overflow. */
static int mul3(uint64_t a, uint64_t b, uint64_t c, uint64_t *out)
{
    uint64_t ab;
    return qk_mul_u64(a, b, &ab) || qk_mul_u64(ab, c, out) ? -1 : 0;
}

int qk_llama2c_open(qk_llama2c **out, const char *path)
{
    *out = NULL;
    qk_llama2c *m = NULL;
    qk_mmap *map = NULL;
    int rc;
    if ((rc = qk_mmap_open(&map, path)))
        return rc;
    if (map->size < QK_LLAMA2C_HEADER_BYTES) {
        rc = qk_error(QK_EFORMAT, "%s: %" PRIu64 " bytes is shorter than the %d-byte llama2.c header", path, map->size,
                      QK_LLAMA2C_HEADER_BYTES);
        goto done;
    }
    if (qk_rd_u32(map->data) == LLAMA2C_V1_MAGIC) {
        rc = qk_error(QK_EUNSUPPORTED,
                      "%s: a llama2.c version 1/2 export (magic \"ak42\"); only legacy version 0 checkpoints are "
                      "supported (export with --version 0)",
                      path);
        goto done;
    }
    int32_t h[7];
    for (int i = 0; i < 7; i++)
        h[i] = (int32_t)qk_rd_u32(map->data + 4 * i);
    qk_llama2c_config c = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[5] > 0};
    static const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                                         "seq_len"};
    for (int i = 0; i < 7; i++) {
        int bad = i == 5 ? (h[i] == 0 || h[i] == INT32_MIN) : h[i] <= 0;
        if (bad) {
            rc = qk_error(QK_EFORMAT, "%s: header %s = %d is not %s; not a llama2.c checkpoint", path, names[i],
                          (int)h[i], i == 5 ? "a non-zero vocabulary size" : "positive");
            goto done;
        }
    }
    if (c.dim % c.n_heads) {
        rc = qk_error(QK_EFORMAT, "%s: dim %d is not a multiple of n_heads %d", path, (int)c.dim, (int)c.n_heads);
        goto done;
    }
    if (c.n_heads % c.n_kv_heads) {
        rc = qk_error(QK_EFORMAT, "%s: n_heads %d is not a multiple of n_kv_heads %d", path, (int)c.n_heads,
                      (int)c.n_kv_heads);
        goto done;
    }
    int32_t hd = c.dim / c.n_heads;
    if (hd % 2) {
        rc = qk_error(QK_EFORMAT, "%s: head dimension %d (dim %d / n_heads %d) is odd; RoPE needs pairs", path, (int)hd,
                      (int)c.dim, (int)c.n_heads);
        goto done;
    }

    m = calloc(1, sizeof *m);
    if (!m) {
        rc = qk_error(QK_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    m->cfg = c;
    const uint64_t D = (uint64_t)c.dim, F = (uint64_t)c.hidden_dim, L = (uint64_t)c.n_layers;
    const uint64_t V = c.vocab_size > 0 ? (uint64_t)c.vocab_size : (uint64_t)-(int64_t)c.vocab_size;
    const uint64_t KVD = (uint64_t)hd * (uint64_t)c.n_kv_heads;
    const uint64_t S = (uint64_t)c.seq_len, HALF = (uint64_t)hd / 2;
    uint64_t off = QK_LLAMA2C_HEADER_BYTES, n_dd, n_kd, n_fd, n_v, n_ld, n_sh;
    int overflow = qk_mul_u64(V, D, &n_v) || qk_mul_u64(L, D, &n_ld) || mul3(L, D, D, &n_dd) ||
                   mul3(L, KVD, D, &n_kd) || mul3(L, F, D, &n_fd) || qk_mul_u64(S, HALF, &n_sh);
    overflow = overflow || place(&m->tok_emb, &off, n_v) || place(&m->rms_att, &off, n_ld) ||
               place(&m->wq, &off, n_dd) || place(&m->wk, &off, n_kd) || place(&m->wv, &off, n_kd) ||
               place(&m->wo, &off, n_dd) || place(&m->rms_ffn, &off, n_ld) || place(&m->w1, &off, n_fd) ||
               place(&m->w2, &off, n_fd) || place(&m->w3, &off, n_fd) || place(&m->rms_final, &off, D) ||
               place(&m->freq_cis_real, &off, n_sh) || place(&m->freq_cis_imag, &off, n_sh) ||
               place(&m->wcls, &off, c.shared_classifier ? 0 : n_v);
    if (overflow) {
        rc = qk_error(QK_EFORMAT,
                      "%s: header dims (dim %d, hidden_dim %d, n_layers %d, vocab_size %d, seq_len %d) imply a size "
                      "beyond 2^64 bytes; not a llama2.c checkpoint",
                      path, (int)c.dim, (int)c.hidden_dim, (int)c.n_layers, (int)c.vocab_size, (int)c.seq_len);
        goto done;
    }
    if (off != map->size) {
        rc = qk_error(QK_EFORMAT,
                      "%s: file is %" PRIu64 " bytes but the header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, "
                      "n_kv_heads %d, vocab_size %d, seq_len %d) implies %" PRIu64 " bytes%s",
                      path, map->size, (int)c.dim, (int)c.hidden_dim, (int)c.n_layers, (int)c.n_heads,
                      (int)c.n_kv_heads, (int)c.vocab_size, (int)c.seq_len, off,
                      off > map->size ? ": truncated" : ": extra bytes at the end");
        goto done;
    }
    m->map = map;
    map = NULL;
    *out = m;
    m = NULL;
done:
    free(m);
    qk_mmap_close(map);
    return rc;
}

void qk_llama2c_close(qk_llama2c *m)
{
    if (!m)
        return;
    qk_mmap_close(m->map);
    free(m);
}

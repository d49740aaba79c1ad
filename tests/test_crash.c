/* Crash safety, end-to-end verification and determinism of the tools
 * (docs/SECURITY.md).
 *
 * - Kill at random points: qk-convert, qk-quantize and qk-calibrate are
 *   started on a 14 MB model built here and SIGKILLed after spread delays
 *   (a fixed-seed jitter over 1.3x the measured uninterrupted run). After
 *   every kill the destination must be absent or byte-identical to the
 *   uninterrupted output (which `qk-inspect --verify` / `qk-calibrate --show`
 *   accept), and the output directory must hold nothing else: no temporary
 *   file. The tests count the kills that landed while the output was open
 *   (seen in /proc/PID/fd) so that they show they exercised the writing.
 *   Output directories (qk_adir) are checked the same way, except that the
 *   hidden sibling they are built in survives a SIGKILL.
 * - Full disk: RLIMIT_FSIZE in the child (and, as root, a small tmpfs):
 *   exit 1, one line naming the file, no output, no temporary file.
 * - A flipped byte in a tensor of a quantkit GGUF: qk-inspect --verify,
 *   qk-eval and qk-quantize refuse it naming the tensor; --no-verify skips.
 * - Determinism: the same inputs and options give the same bytes across
 *   runs and across -t 1 / -t 2.
 *
 * Tools run with fork/exec (not the shell) so that the test knows the PID
 * it kills; OPENBLAS_NUM_THREADS=1 as in test_limits.c. */
#include "qk_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "quantkit/gguf.h"
#include "quantkit/vocab.h"
#include "vocab_internal.h" /* qk_vocab_alloc, qk_vocab_set_token */

#define N_KILLS 24      /* kills per tool */
#define RUN_TIMEOUT 120 /* seconds for one tool run */

/* ------------------------------------------------------------- the model */

/* The model every test uses: a llama GGUF (F32) with n_embd 256, 4 heads of
 * 64, n_ff 768, 4 layers and a 64-token character vocabulary (SPM: "▁", the
 * letters, punctuation): 3.4M parameters, 14 MB, so that writing a converted
 * copy takes tens of milliseconds. Weights are uniform in [-0.05, 0.05)
 * from a fixed xorshift; norms are 1. Made once per test process. */
enum { M_EMBD = 256, M_HEAD = 4, M_FF = 768, M_LAYER = 4, M_VOCAB = 64 };

static uint64_t g_rng;
static float rnd_weight(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) & 0xffffff) / 16777216.0f * 0.1f - 0.05f;
}

static void add_char_vocab(qk_gguf_writer *w)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyz.,!?'";
    qk_vocab *v = NULL;
    ck_assert_int_eq(qk_vocab_alloc(&v, M_VOCAB, QK_VOCAB_SPM), 0);
    for (int i = 0; i < M_VOCAB; i++) {
        char t[16];
        int k = i - 4;
        if (i < 4)
            snprintf(t, sizeof t, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : "\xe2\x96\x81");
        else if (k < (int)sizeof chars - 1)
            snprintf(t, sizeof t, "%c", chars[k]);
        else
            snprintf(t, sizeof t, "\xe2\x96\x81%c", chars[k - (int)sizeof chars + 1]);
        ck_assert_int_eq(qk_vocab_set_token(v, i, t, strlen(t)), 0);
        v->types[i] = i == 0 ? QK_TOKEN_UNKNOWN : i < 3 ? QK_TOKEN_CONTROL : QK_TOKEN_NORMAL;
        v->scores[i] = -(float)i;
    }
    v->unk_id = 0, v->bos_id = 1, v->eos_id = 2, v->add_bos = 1;
    ck_assert_int_eq(qk_vocab_build_index(v), 0);
    ck_assert_int_eq(qk_vocab_to_gguf(v, w), 0);
    qk_vocab_free(v);
}

static const char *model_path(void)
{
    const char *path = qk_test_tmp("model.gguf");
    if (qk_file_exists(path))
        return path;
    g_rng = 0x9e3779b97f4a7c15ull;
    qk_gguf_writer *w = NULL;
    qk_afile *f = NULL;
    ck_assert_int_eq(qk_gguf_writer_new(&w, 0), 0);
    ck_assert_int_eq(qk_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    static const struct {
        const char *k;
        uint32_t v;
    } u[] = {{"llama.context_length", 256},          {"llama.embedding_length", M_EMBD},
             {"llama.block_count", M_LAYER},         {"llama.feed_forward_length", M_FF},
             {"llama.attention.head_count", M_HEAD}, {"llama.attention.head_count_kv", M_HEAD}};
    for (size_t i = 0; i < sizeof u / sizeof *u; i++)
        ck_assert_int_eq(qk_gguf_writer_set_u32(w, u[i].k, u[i].v), 0);
    ck_assert_int_eq(qk_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f), 0);
    add_char_vocab(w);
    /* names and shapes in file order: ne = {n_in, n_out} */
    char names[3 + 9 * M_LAYER][48];
    int64_t ne[3 + 9 * M_LAYER][2];
    int n = 0;
#define T(nm, a, b) (snprintf(names[n], sizeof names[n], "%s", nm), ne[n][0] = (a), ne[n][1] = (b), n++)
    T("token_embd.weight", M_EMBD, M_VOCAB);
    for (int l = 0; l < M_LAYER; l++) {
        static const struct {
            const char *s;
            int64_t a, b;
        } per[9] = {{"attn_norm", M_EMBD, 1},   {"attn_q", M_EMBD, M_EMBD},  {"attn_k", M_EMBD, M_EMBD},
                    {"attn_v", M_EMBD, M_EMBD}, {"attn_output", M_EMBD, M_EMBD}, {"ffn_norm", M_EMBD, 1},
                    {"ffn_gate", M_EMBD, M_FF}, {"ffn_up", M_EMBD, M_FF},    {"ffn_down", M_FF, M_EMBD}};
        for (int k = 0; k < 9; k++) {
            char nm[48];
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, per[k].s);
            T(nm, per[k].a, per[k].b);
        }
    }
    T("output_norm.weight", M_EMBD, 1);
    T("output.weight", M_EMBD, M_VOCAB);
#undef T
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(qk_gguf_writer_add_tensor(w, names[i], QK_TYPE_F32, ne[i][1] == 1 ? 1 : 2, ne[i]), 0);
    ck_assert_int_eq(qk_afile_open(&f, path), 0);
    ck_assert_int_eq(qk_gguf_writer_begin(w, f), 0);
    float *d = malloc((size_t)M_FF * M_EMBD * sizeof(float));
    ck_assert_ptr_nonnull(d);
    for (int i = 0; i < n; i++) {
        int64_t k = ne[i][0] * ne[i][1];
        for (int64_t j = 0; j < k; j++)
            d[j] = ne[i][1] == 1 ? 1.0f : rnd_weight();
        ck_assert_int_eq(qk_gguf_writer_write(w, d, (size_t)k * sizeof(float)), 0);
        ck_assert_int_eq(qk_gguf_writer_end_tensor(w), 0);
    }
    free(d);
    ck_assert_int_eq(qk_gguf_writer_finish(w), 0);
    ck_assert_int_eq(qk_afile_commit(f), 0);
    qk_gguf_writer_free(w);
    return path;
}

/* Calibration / evaluation text: ~2,900 characters, one token each. */
static const char *text_path(void)
{
    const char *path = qk_test_tmp("text.txt");
    if (qk_file_exists(path))
        return path;
    static const char *const words[] = {"the", "fox", "found", "a", "shiny", "key", "under", "old", "oak",
                                        "tree", "and", "ran", "home", "to", "show", "its", "friends"};
    char buf[4096];
    size_t k = 0;
    for (int i = 0; k < 2900; i++) {
        const char *s = words[(i * 7 + i / 5) % (int)(sizeof words / sizeof *words)];
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", s, i % 11 == 10 ? ". " : " ");
    }
    qk_test_write_file(path, buf, k);
    return path;
}

/* ------------------------------------------------------------- processes */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* Start `tool` with the space-separated arguments `args` (paths here have
 * no spaces); stdout to /dev/null, stderr to tmpdir/.stderr; with
 * fsize_limit > 0 the child's RLIMIT_FSIZE is set to it. */
static pid_t spawn(const char *tool, const char *args, rlim_t fsize_limit)
{
    char buf[16384];
    char *argv[64];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", args);
    argv[argc++] = (char *)qk_test_tool(tool);
    for (char *save = NULL, *a = strtok_r(buf, " ", &save); a && argc < 63; a = strtok_r(NULL, " ", &save))
        argv[argc++] = a;
    argv[argc] = NULL;
    const char *err = qk_test_tmp(".stderr");
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd_out = open("/dev/null", O_WRONLY), fd_err = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fd_in = open("/dev/null", O_RDONLY);
        if (fd_out < 0 || fd_err < 0 || fd_in < 0)
            _exit(125);
        dup2(fd_in, 0);
        dup2(fd_out, 1);
        dup2(fd_err, 2);
        if (fsize_limit) {
            struct rlimit rl = {fsize_limit, fsize_limit};
            if (setrlimit(RLIMIT_FSIZE, &rl))
                _exit(125);
        }
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Wait for pid (killing it after RUN_TIMEOUT s); returns the exit status,
 * 128+N for signal N. */
static int wait_exit(pid_t pid)
{
    double t0 = now_s();
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        ck_assert_int_eq(r, 0);
        if (now_s() - t0 > RUN_TIMEOUT) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            ck_abort_msg("tool pid %d did not finish in %d s", (int)pid, RUN_TIMEOUT);
        }
        sleep_s(0.0005);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* stderr of the last spawn (heap string) */
static char *last_stderr(void) { return qk_test_read_file(qk_test_tmp(".stderr"), NULL); }

/* Run a tool to completion; asserts exit `want`. Returns the wall time. */
static double run_tool(const char *tool, const char *args, int want)
{
    double t0 = now_s();
    int rc = wait_exit(spawn(tool, args, 0));
    double t = now_s() - t0;
    char *err = last_stderr();
    ck_assert_msg(rc == want, "%s %s: exit %d, want %d: %s", tool, args, rc, want, err);
    free(err);
    return t;
}

/* Does pid hold open a file (or an unnamed O_TMPFILE) in directory dir? */
static int writing_in(pid_t pid, const char *dir)
{
    char fdd[64], link[4200], target[4200];
    snprintf(fdd, sizeof fdd, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(fdd);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    size_t n = strlen(dir);
    while (!found && (e = readdir(d))) {
        snprintf(link, sizeof link, "%s/%s", fdd, e->d_name);
        ssize_t k = readlink(link, target, sizeof target - 1);
        if (k > 0) {
            target[k] = 0;
            found = !strncmp(target, dir, n) && target[n] == '/';
        }
    }
    closedir(d);
    return found;
}

/* A fresh, empty directory tmpdir/name, its path in `out` (qk_test_tmp's
 * ring of buffers is reused after 64 calls). */
static const char *fresh_dir(char out[4200], const char *name)
{
    snprintf(out, 4200, "%s", qk_test_tmp(name));
    mkdir(out, 0755);
    ck_assert_int_eq(qk_test_count_entries(out, ""), 0);
    return out;
}

static int same_bytes(const char *a, const char *b)
{
    size_t na, nb;
    void *x = qk_test_read_file(a, &na), *y = qk_test_read_file(b, &nb);
    int same = na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* ----------------------------------------------------------- kill tests */

/* Run `tool args` (writing `dest` in the otherwise empty directory `dir`)
 * once to completion, keep the result as the reference (checked by
 * `check_tool check_args REF`), then N_KILLS times: start it, SIGKILL it
 * after a spread delay, and check that `dest` is absent or identical to the
 * reference and that `dir` holds nothing else. Returns the number of kills
 * that landed while the output was open. */
static int kill_at_random_points(const char *tool, const char *args, const char *dir, const char *dest,
                                 const char *check_tool, const char *check_args, uint64_t seed)
{
    double t_ref = run_tool(tool, args, 0);
    char ref[4200];
    snprintf(ref, sizeof ref, "%s", qk_test_tmp("reference.out"));
    ck_assert_int_eq(rename(dest, ref), 0);
    char cargs[16384];
    snprintf(cargs, sizeof cargs, "%s %s", check_args, ref);
    run_tool(check_tool, cargs, 0);
    ck_assert_int_eq(qk_test_count_entries(dir, ""), 0);

    int n_absent = 0, n_complete = 0, n_writing = 0;
    uint64_t r = seed;
    for (int i = 0; i < N_KILLS; i++) {
        /* stratified: kill i in [i, i+1) / N_KILLS of 1.3 x t_ref */
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(r >> 11) / 9007199254740992.0;
        double delay = 1.3 * t_ref * ((double)i + u) / N_KILLS;
        pid_t pid = spawn(tool, args, 0);
        double t0 = now_s();
        int writing = 0;
        /* poll the open files until the delay is over, then kill */
        while (now_s() - t0 < delay) {
            writing |= writing_in(pid, dir);
            sleep_s(0.0005);
        }
        writing |= writing_in(pid, dir);
        kill(pid, SIGKILL);
        int rc = wait_exit(pid);
        ck_assert_msg(rc == 0 || rc == 128 + SIGKILL, "%s: exit %d after a kill at %.3f s", tool, rc, delay);
        n_writing += writing && rc != 0;
        if (qk_file_exists(dest)) {
            ck_assert_msg(same_bytes(dest, ref), "%s killed at %.3f s: %s exists but differs from the complete "
                          "output", tool, delay, dest);
            ck_assert_int_eq(unlink(dest), 0);
            n_complete++;
        } else {
            n_absent++;
        }
        ck_assert_msg(qk_test_count_entries(dir, "") == 0, "%s killed at %.3f s: %d entries left in %s", tool,
                      delay, qk_test_count_entries(dir, ""), dir);
    }
    fprintf(stderr, "crash %s: reference %.3f s; %d kills: %d no output, %d complete, %d while writing\n", tool,
            t_ref, N_KILLS, n_absent, n_complete, n_writing);
    ck_assert_int_ge(n_absent, 1);
    unlink(ref);
    return n_writing;
}

START_TEST(test_crash_convert_killed)
{
    char dir[4200], dest[4300], args[16384];
    snprintf(dest, sizeof dest, "%s/m.gguf", fresh_dir(dir, "out"));
    snprintf(args, sizeof args, "%s -o %s -q", model_path(), dest);
    int n = kill_at_random_points("qk-convert", args, dir, dest, "qk-inspect", "--verify", 1);
    ck_assert_int_ge(n, 1);
}
END_TEST

START_TEST(test_crash_quantize_killed)
{
    char dir[4200], dest[4300], args[16384];
    snprintf(dest, sizeof dest, "%s/q.gguf", fresh_dir(dir, "out"));
    snprintf(args, sizeof args, "%s %s Q4_K_M -q -t 2", model_path(), dest);
    int n = kill_at_random_points("qk-quantize", args, dir, dest, "qk-inspect", "--verify", 2);
    ck_assert_int_ge(n, 1);
}
END_TEST

START_TEST(test_crash_calibrate_killed)
{
    /* the output is written after the forward passes: most kills land
     * before it; the .qkc with Hessians is 11 MB */
    char dir[4200], dest[4300], args[16384];
    snprintf(dest, sizeof dest, "%s/c.qkc", fresh_dir(dir, "out"));
    snprintf(args, sizeof args, "%s --text %s -c 64 --chunks 2 --hessian -o %s -q -t 2", model_path(), text_path(),
             dest);
    kill_at_random_points("qk-calibrate", args, dir, dest, "qk-calibrate", "--show", 3);
    snprintf(dest, sizeof dest, "%s/c.dat", dir);
    snprintf(args, sizeof args, "%s --text %s -c 64 --chunks 2 -o %s -q -t 2", model_path(), text_path(), dest);
    kill_at_random_points("qk-calibrate", args, dir, dest, "qk-calibrate", "--show", 4);
}
END_TEST

/* 1 when directory b holds the same regular files (names, bytes) as a. */
static int same_dir(const char *a, const char *b)
{
    DIR *d = opendir(a);
    ck_assert_ptr_nonnull(d);
    int same = qk_test_count_entries(a, "") == qk_test_count_entries(b, "");
    struct dirent *e;
    while (same && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char x[8448], y[8448];
        snprintf(x, sizeof x, "%s/%s", a, e->d_name);
        snprintf(y, sizeof y, "%s/%s", b, e->d_name);
        same = qk_file_exists(y) && same_bytes(x, y);
    }
    closedir(d);
    return same;
}

START_TEST(test_crash_convert_dir_killed)
{
    /* An output directory (--to safetensors; qk-quantize --format gptq is
     * the same qk_adir) is built as a hidden sibling and renamed into place:
     * the destination is absent or complete. SIGKILL leaves the hidden
     * sibling (.hf.qk-tmp-PID-XXXXXX) behind, as no handler can run; the
     * next run writing the same output removes it (common/afile.c,
     * sweep_stale). Anything else left is a failure. */
    char dir[4200], dest[4300], ref[4300], args[16384];
    snprintf(dest, sizeof dest, "%s/hf", fresh_dir(dir, "out"));
    snprintf(ref, sizeof ref, "%s", qk_test_tmp("hf-reference"));
    snprintf(args, sizeof args, "%s -o %s --to safetensors -q", model_path(), dest);
    double t_ref = run_tool("qk-convert", args, 0);
    ck_assert_int_eq(rename(dest, ref), 0);
    char cargs[16384];
    snprintf(cargs, sizeof cargs, "--verify %s", ref);
    run_tool("qk-inspect", cargs, 0);
    int n_absent = 0, n_complete = 0, n_hidden = 0;
    enum { N = N_KILLS / 2 };
    for (int i = 0; i < N; i++) {
        double delay = 1.3 * t_ref * ((double)i + 0.5) / N;
        pid_t pid = spawn("qk-convert", args, 0);
        sleep_s(delay);
        kill(pid, SIGKILL);
        int rc = wait_exit(pid);
        ck_assert_msg(rc == 0 || rc == 128 + SIGKILL, "qk-convert: exit %d after a kill at %.3f s", rc, delay);
        if (qk_is_dir(dest)) {
            ck_assert_msg(same_dir(ref, dest), "qk-convert killed at %.3f s: %s exists but is not the complete "
                          "output", delay, dest);
            ck_assert_int_eq(qk_test_run(NULL, NULL, "rm -r '%s'", dest), 0);
            n_complete++;
        } else {
            n_absent++;
        }
        int hidden = qk_test_count_entries(dir, ".hf.qk-tmp-");
        ck_assert_msg(qk_test_count_entries(dir, "") == hidden, "qk-convert killed at %.3f s: unexpected entries "
                      "in %s", delay, dir);
        n_hidden += hidden;
    }
    /* one more run clears what the killed ones left */
    run_tool("qk-convert", args, 0);
    ck_assert(same_dir(ref, dest));
    ck_assert_msg(qk_test_count_entries(dir, "") == 1, "%d entries in %s after a complete run",
                  qk_test_count_entries(dir, ""), dir);
    fprintf(stderr, "crash qk-convert --to safetensors: reference %.3f s; %d kills: %d no output, %d complete, "
            "%d hidden temporary directories seen\n", t_ref, N, n_absent, n_complete, n_hidden);
    ck_assert_int_ge(n_absent, 1);
}
END_TEST

/* ------------------------------------------------------------- full disk */

/* The tool must fail with exit 1 and one line naming `dest`, leaving dir
 * empty. */
static void expect_full_disk(const char *tool, const char *args, const char *dir, const char *dest,
                             rlim_t fsize_limit, const char *why)
{
    int rc = wait_exit(spawn(tool, args, fsize_limit));
    char *err = last_stderr();
    ck_assert_msg(rc == 1, "%s %s (%s): exit %d, want 1: %s", tool, args, why, rc, err);
    size_t n = strlen(err);
    ck_assert_msg(n > 0 && err[n - 1] == '\n' && strchr(err, '\n') == err + n - 1, "%s (%s): not one line: %s",
                  tool, why, err);
    ck_assert_msg(!strncmp(err, tool, strlen(tool)) && strstr(err, dest), "%s (%s): message does not name %s: %s",
                  tool, why, dest, err);
    ck_assert_msg(qk_test_count_entries(dir, "") == 0, "%s (%s): %d entries left in %s", tool, why,
                  qk_test_count_entries(dir, ""), dir);
    free(err);
}

/* Full disk for one tool: RLIMIT_FSIZE at half the output's size, and as
 * root a tmpfs of half its size when one can be mounted. */
static void full_disk(const char *tool, const char *fmt, const char *name)
{
    char dir[4200], mnt[4200], dest[4300], args[16384];
    fresh_dir(dir, "out");
    snprintf(dest, sizeof dest, "%s/%s", dir, name);
    snprintf(args, sizeof args, fmt, dest);
    run_tool(tool, args, 0);
    struct stat st;
    ck_assert_int_eq(stat(dest, &st), 0);
    ck_assert_int_eq(unlink(dest), 0);
    expect_full_disk(tool, args, dir, dest, (rlim_t)st.st_size / 2, "RLIMIT_FSIZE");

    fresh_dir(mnt, "tmpfs");
    char opt[64];
    snprintf(opt, sizeof opt, "size=%lldk", (long long)st.st_size / 2048);
    if (geteuid() != 0 || mount("qk-test", mnt, "tmpfs", 0, opt) != 0) {
        fprintf(stderr, "NOTE %s: no tmpfs (not root, or mount refused): full disk by RLIMIT_FSIZE only\n", tool);
        return;
    }
    snprintf(dest, sizeof dest, "%s/%s", mnt, name);
    snprintf(args, sizeof args, fmt, dest);
    expect_full_disk(tool, args, mnt, dest, 0, "tmpfs");
    ck_assert_int_eq(umount2(mnt, MNT_DETACH), 0);
}

START_TEST(test_crash_full_disk)
{
    char fmt[16384];
    snprintf(fmt, sizeof fmt, "%s -o %%s -q", model_path());
    full_disk("qk-convert", fmt, "m.gguf");
    snprintf(fmt, sizeof fmt, "%s %%s Q4_0 -q -t 2", model_path());
    full_disk("qk-quantize", fmt, "q.gguf");
    snprintf(fmt, sizeof fmt, "%s --text %s -c 64 --chunks 2 --hessian -o %%s -q -t 2", model_path(), text_path());
    full_disk("qk-calibrate", fmt, "c.qkc");
}
END_TEST

/* -------------------------------------------------------- corrupted byte */

/* A quantkit GGUF (qk-convert of the model) with one byte flipped in
 * blk.1.attn_q.weight: the low byte of one float, so the value stays
 * finite and only the checksum can tell. */
static const char *corrupted_gguf(void)
{
    static char good[4200], bad[4200];
    snprintf(good, sizeof good, "%s", qk_test_tmp("good.gguf"));
    snprintf(bad, sizeof bad, "%s", qk_test_tmp("bad.gguf"));
    char args[16384];
    snprintf(args, sizeof args, "%s -o %s -q", model_path(), good);
    run_tool("qk-convert", args, 0);
    qk_gguf *g = NULL;
    ck_assert_int_eq(qk_gguf_open(&g, good), 0);
    const qk_gguf_tensor *t = qk_gguf_find_tensor(g, "blk.1.attn_q.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(qk_gguf_find_kv(g, QK_GGUF_CHECKSUM_KEY));
    uint64_t off = qk_gguf_data_offset(g) + t->offset + 4 * 1001;
    qk_gguf_close(g);
    size_t n;
    uint8_t *b = qk_test_read_file(good, &n);
    ck_assert_uint_lt(off, n);
    b[off] ^= 0x01;
    qk_test_write_file(bad, b, n);
    free(b);
    return bad;
}

static void expect_names_tensor(const char *tool, const char *args)
{
    int rc = wait_exit(spawn(tool, args, 0));
    char *err = last_stderr();
    ck_assert_msg(rc == 1, "%s %s: exit %d, want 1: %s", tool, args, rc, err);
    ck_assert_msg(strstr(err, "'blk.1.attn_q.weight' checksum mismatch"), "%s: message does not name the tensor: %s",
                  tool, err);
    free(err);
}

/* `tool` with args from fmt (input, destination in a fresh directory):
 * refused naming the tensor, the directory left empty; then with
 * --no-verify it writes the destination. */
static void refused_writes_nothing(const char *tool, const char *fmt, const char *input, const char *name)
{
    char dir[4200], dest[4300], args[16384];
    snprintf(dest, sizeof dest, "%s/%s", fresh_dir(dir, name), name);
    snprintf(args, sizeof args, fmt, input, dest);
    expect_names_tensor(tool, args);
    ck_assert_int_eq(qk_test_count_entries(dir, ""), 0);
    snprintf(args + strlen(args), sizeof args - strlen(args), " --no-verify");
    run_tool(tool, args, 0);
    ck_assert_msg(qk_file_exists(dest), "%s --no-verify wrote no %s", tool, dest);
}

START_TEST(test_crash_corrupted_byte_refused)
{
    const char *bad = corrupted_gguf();
    char args[16384];
    /* qk-inspect --verify */
    snprintf(args, sizeof args, "--verify %s", bad);
    expect_names_tensor("qk-inspect", args);
    snprintf(args, sizeof args, "--verify %s", qk_test_tmp("good.gguf"));
    run_tool("qk-inspect", args, 0);
    /* qk-eval reading it as the model */
    snprintf(args, sizeof args, "%s --text %s -c 64 --chunks 1 -t 1 -q", bad, text_path());
    expect_names_tensor("qk-eval", args);
    snprintf(args, sizeof args, "%s --text %s -c 64 --chunks 1 -t 1 -q --no-verify", bad, text_path());
    run_tool("qk-eval", args, 0);
    /* the tools that write: refused with nothing written; --no-verify goes
     * ahead (qk-convert would otherwise pass the damaged values on with
     * fresh checksums) */
    refused_writes_nothing("qk-quantize", "%s %s Q8_0 -q", bad, "q.gguf");
    refused_writes_nothing("qk-convert", "%s -o %s -q", bad, "c.gguf");
    char fmt[4400];
    snprintf(fmt, sizeof fmt, "%%s --text %s -c 64 --chunks 1 -t 1 -o %%s -q", text_path());
    refused_writes_nothing("qk-calibrate", fmt, bad, "i.dat");
}
END_TEST

/* ----------------------------------------------------------- determinism */

/* Run `tool` with args built from fmt (one %s: dest) once per entry of
 * `threads` and check every output is byte-identical to the first. The
 * destination path is the same every time: qk-quantize records its command
 * line (without -t) in quantkit.options. */
static void same_output(const char *tool, const char *fmt, const char *name, const int *threads, int n_runs)
{
    char dir[4200], dest[4300], first[4300], args[16384];
    fresh_dir(dir, "det");
    snprintf(dest, sizeof dest, "%s/%s", dir, name);
    snprintf(first, sizeof first, "%s.first", qk_test_tmp(name));
    for (int i = 0; i < n_runs; i++) {
        snprintf(args, sizeof args, fmt, dest);
        if (threads[i] > 0) {
            size_t k = strlen(args);
            snprintf(args + k, sizeof args - k, " -t %d", threads[i]);
        }
        run_tool(tool, args, 0);
        if (i == 0) {
            ck_assert_int_eq(rename(dest, first), 0);
            continue;
        }
        ck_assert_msg(same_bytes(dest, first), "%s: run %d (-t %d) differs from run 1 (-t %d): %s", tool, i + 1,
                      threads[i], threads[0], args);
        unlink(dest);
    }
    unlink(first);
}

START_TEST(test_crash_deterministic_convert_quantize)
{
    static const int none[2] = {0, 0}, t12[3] = {1, 2, 2};
    char fmt[16384];
    snprintf(fmt, sizeof fmt, "%s -o %%s -q", model_path());
    same_output("qk-convert", fmt, "m.gguf", none, 2);
    snprintf(fmt, sizeof fmt, "%s %%s Q4_0 -q", model_path());
    same_output("qk-quantize", fmt, "q.gguf", t12, 3);
    /* an importance matrix from qk-calibrate (one thread) */
    const char *imx = qk_test_tmp("imx.dat");
    char args[16384];
    snprintf(args, sizeof args, "%s --text %s -c 64 --chunks 4 -o %s -q -t 1", model_path(), text_path(), imx);
    run_tool("qk-calibrate", args, 0);
    snprintf(fmt, sizeof fmt, "%s %%s Q4_K_M --imatrix %s -q", model_path(), imx);
    same_output("qk-quantize", fmt, "q.gguf", t12, 3);
    /* quantkit.options leaves -t out, keeps the rest */
    qk_gguf *g = NULL;
    snprintf(args, sizeof args, "%s %s Q4_0 -q -t 2 --pure", model_path(), qk_test_tmp("p.gguf"));
    run_tool("qk-quantize", args, 0);
    ck_assert_int_eq(qk_gguf_open(&g, qk_test_tmp("p.gguf")), 0);
    const char *opts = NULL;
    ck_assert_int_eq(qk_gguf_get_str(g, "quantkit.options", &opts), 0);
    ck_assert_msg(strstr(opts, " Q4_0 --pure") && !strstr(opts, " -t ") && !strstr(opts, " -q"), "options: %s", opts);
    qk_gguf_close(g);
}
END_TEST

START_TEST(test_crash_deterministic_calibrate)
{
    /* the same thread count twice */
    static const int t22[2] = {2, 2};
    char fmt[16384];
    snprintf(fmt, sizeof fmt, "%s --text %s -c 64 --chunks 4 -b 2 -o %%s -q", model_path(), text_path());
    same_output("qk-calibrate", fmt, "c.dat", t22, 2);
    snprintf(fmt, sizeof fmt, "%s --text %s -c 64 --chunks 4 -b 2 --hessian --sum-x --absmax -o %%s -q",
             model_path(), text_path());
    same_output("qk-calibrate", fmt, "c.qkc", t22, 2);
}
END_TEST

START_TEST(test_crash_deterministic_calibrate_threads)
{
    /* -t 1 and -t 2: the forward pass must give the same bits whatever the
     * thread count (see docs/SECURITY.md, determinism) */
    static const int t12[2] = {1, 2};
    char fmt[16384];
    snprintf(fmt, sizeof fmt, "%s --text %s -c 64 --chunks 4 -b 2 -o %%s -q", model_path(), text_path());
    same_output("qk-calibrate", fmt, "c.dat", t12, 2);
    snprintf(fmt, sizeof fmt, "%s --text %s -c 64 --chunks 4 -b 2 --hessian --sum-x --absmax -o %%s -q",
             model_path(), text_path());
    same_output("qk-calibrate", fmt, "c.qkc", t12, 2);
}
END_TEST

Suite *qk_test_suite_crash(void)
{
    Suite *s = suite_create("crash");
    TCase *tc = tcase_create("crash");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_crash_convert_killed);
    tcase_add_test(tc, test_crash_quantize_killed);
    tcase_add_test(tc, test_crash_calibrate_killed);
    tcase_add_test(tc, test_crash_convert_dir_killed);
    tcase_add_test(tc, test_crash_full_disk);
    tcase_add_test(tc, test_crash_corrupted_byte_refused);
    tcase_add_test(tc, test_crash_deterministic_convert_quantize);
    tcase_add_test(tc, test_crash_deterministic_calibrate);
    tcase_add_test(tc, test_crash_deterministic_calibrate_threads);
    suite_add_tcase(s, tc);
    return s;
}

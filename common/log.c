/* Logging to stderr and a throttled progress line. */
#include "quantkit/common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_level = QK_LOG_WARN;
static char g_prefix[64] = "quantkit";
static int g_progress_forced;

void qk_log_set_level(int level) { g_level = level; }
int qk_log_get_level(void) { return g_level; }
void qk_log_set_prefix(const char *prefix) { snprintf(g_prefix, sizeof g_prefix, "%s", prefix); }

void qk_log(int level, const char *fmt, ...)
{
    if (level > g_level)
        return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", g_prefix, buf);
}

double qk_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct qk_progress {
    char label[64];
    char unit[16];
    uint64_t total, done;
    double t0, last;
    int shown;
};

void qk_progress_force(int on) { g_progress_forced = on; }

qk_progress *qk_progress_start(const char *label, uint64_t total, const char *unit)
{
    if (!g_progress_forced && !isatty(STDERR_FILENO))
        return NULL;
    qk_progress *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "");
    p->total = total;
    p->t0 = p->last = qk_now();
    return p;
}

static void fmt_dur(double s, char *buf, size_t n)
{
    if (!isfinite(s) || s < 0)
        snprintf(buf, n, "--:--");
    else if (s < 3600)
        snprintf(buf, n, "%02d:%02d", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

static void draw(qk_progress *p, double now, int final)
{
    double el = now - p->t0;
    double rate = el > 0 ? (double)p->done / el : 0;
    double pct = p->total ? 100.0 * (double)p->done / (double)p->total : 0;
    char eta[16], els[16];
    fmt_dur(rate > 0 && p->total >= p->done ? (double)(p->total - p->done) / rate : -1, eta, sizeof eta);
    fmt_dur(el, els, sizeof els);
    const char *u = p->unit;
    double r = rate;
    const char *scale = "";
    if (r >= 1e9) { r /= 1e9; scale = "G"; }
    else if (r >= 1e6) { r /= 1e6; scale = "M"; }
    else if (r >= 1e3) { r /= 1e3; scale = "k"; }
    fprintf(stderr, "\r%s %5.1f%% %.1f %s%s/s elapsed %s ETA %s\033[K%s", p->label, pct, r, scale, u,
            els, final ? "00:00" : eta, final ? "\n" : "");
    fflush(stderr);
    p->shown = 1;
}

void qk_progress_update(qk_progress *p, uint64_t done)
{
    if (!p)
        return;
    p->done = done;
    double now = qk_now();
    if (now - p->last >= 0.2) {
        p->last = now;
        draw(p, now, 0);
    }
}

void qk_progress_add(qk_progress *p, uint64_t delta)
{
    if (p)
        qk_progress_update(p, p->done + delta);
}

void qk_progress_finish(qk_progress *p)
{
    if (!p)
        return;
    p->done = p->total > p->done ? p->total : p->done;
    draw(p, qk_now(), 1);
    free(p);
}

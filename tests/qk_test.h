/* Shared helpers for quantkit's Check tests. */
#ifndef QK_TEST_H
#define QK_TEST_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantkit/common.h"

/* Directory of the shared test data: $QK_TEST_DATA, else ../shared/data
 * beside the project root. NULL when neither exists. */
const char *qk_test_data_dir(void);
/* Full path of a file under the test data directory (static buffer ring),
 * or NULL when the data directory or the file is absent. */
const char *qk_test_data(const char *rel);
/* A fresh temporary directory for this test process (removed at exit). */
const char *qk_test_tmpdir(void);
/* tmpdir/name in a static buffer ring. */
const char *qk_test_tmp(const char *name);
/* Path of a built tool ("qk-convert") from $QK_BIN_DIR or <root>/bin. */
const char *qk_test_tool(const char *name);
/* Run a shell command line; capture stdout and stderr (heap strings, may be
 * NULL args to discard). Returns the exit status, or 128+signal. */
int qk_test_run(char **out_stdout, char **out_stderr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write bytes to a file (ck_assert on failure). */
void qk_test_write_file(const char *path, const void *data, size_t n);
/* Read a whole file (ck_assert on failure); *n gets its size. */
void *qk_test_read_file(const char *path, size_t *n);
/* Number of entries in a directory whose name contains `needle`. */
int qk_test_count_entries(const char *dir, const char *needle);

/* Skip the rest of a test with a printed reason when shared data is absent. */
#define QK_REQUIRE_DATA(var, rel)                                                   \
    const char *var = qk_test_data(rel);                                            \
    if (!var) {                                                                     \
        fprintf(stderr, "SKIP %s: test data '%s' not found (set QK_TEST_DATA)\n",  \
                __func__, rel);                                                     \
        return;                                                                     \
    }

/* Each module's test file defines one suite constructor. */
typedef Suite *(*qk_suite_fn)(void);

#endif

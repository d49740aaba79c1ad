/* The single test runner: every module's suite, in dependency order. A
 * module whose test file is not linked yet is skipped (weak symbol). */
#include "qk_test.h"

#define QK_SUITES(X) \
    X(common) X(half) X(ggml_types) X(gguf) X(safetensors) X(llama2c) X(vocab) \
    X(blocks) X(model) X(convert) X(inspect) X(quantize) X(tokenizer) X(forward) \
    X(gptq) X(eval) X(calibrate) X(gptq_method) X(alloc) X(awq) X(limits) X(crash) X(tools)

#define DECLARE(m) Suite *qk_test_suite_##m(void) __attribute__((weak));
QK_SUITES(DECLARE)
#undef DECLARE

int main(int argc, char **argv)
{
    SRunner *sr = srunner_create(NULL);
    int n = 0;
    const char *only = argc > 1 ? argv[1] : getenv("QK_TEST_SUITE");
#define ADD(m)                                                                      \
    if (qk_test_suite_##m && (!only || !strcmp(only, #m))) {                        \
        srunner_add_suite(sr, qk_test_suite_##m());                                 \
        n++;                                                                        \
    }
    QK_SUITES(ADD)
#undef ADD
    if (n == 0) {
        fprintf(stderr, "test_runner: no suite matches '%s'\n", only ? only : "");
        srunner_free(sr);
        return 2;
    }
    if (!qk_test_data_dir())
        fprintf(stderr, "NOTE: shared test data not found; tests that need it are skipped (set QK_TEST_DATA)\n");
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

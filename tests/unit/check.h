/* A minimal test harness: CHECK records failures and goes on; the test's main
 * returns check_report() which prints "N passed, N failed". */
#ifndef CAST_TEST_CHECK_H
#define CAST_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (cond) check_passed++;                                                \
        else {                                                                   \
            check_failed++;                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECK_MSG(cond, ...)                                              \
    do {                                                                  \
        if (cond) check_passed++;                                         \
        else {                                                            \
            check_failed++;                                               \
            fprintf(stderr, "%s:%d: CHECK failed: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                 \
            fputc('\n', stderr);                                          \
        }                                                                 \
    } while (0)

#define CHECK_NEAR(a, b, tol) CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%s=%g vs %s=%g (tol %g)", #a, (double)(a), #b, (double)(b), (double)(tol))

static inline int check_report(void) {
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

/* Folder of ../shared/data, from the environment ctest sets. */
static inline const char *check_shared_data(void) {
    const char *p = getenv("CAST_SHARED_DATA");
    return p ? p : "../shared/data";
}

#endif

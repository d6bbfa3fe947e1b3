/* Errors: every fallible library function takes a cast_err* and returns 0 on
 * success or -1 on failure, with a one-line message "PATH: what is wrong". */
#ifndef CAST_BASE_ERROR_H
#define CAST_BASE_ERROR_H

#include <stddef.h>

/* What kind of failure: the public API's cast_code (include/cast.h) has the
 * same values. */
enum { CAST_E_OK = 0, CAST_E_IO = 1, CAST_E_FORMAT = 2, CAST_E_ARGUMENT = 3, CAST_E_NUMERIC = 4, CAST_E_MEMORY = 5, CAST_E_CANCELLED = 6 };

typedef struct cast_err {
    char msg[1024];
    int code; /* CAST_E_*: set by the cast_fail functions */
} cast_err;

/* Formats the message into err (if non-NULL) and returns -1: a bad input
 * (CAST_E_FORMAT), or the given kind with cast_fail_as. */
int cast_fail(cast_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cast_fail_as(cast_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message: "prefix: old message". Returns -1. */
int cast_fail_prefix(cast_err *err, const char *prefix);

#define CAST_UNUSED(x) ((void)(x))

#endif

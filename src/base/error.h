/* Errors: every fallible library function takes a cast_err* and returns 0 on
 * success or -1 on failure, with a one-line message "PATH: what is wrong". */
#ifndef CAST_BASE_ERROR_H
#define CAST_BASE_ERROR_H

#include <stddef.h>

typedef struct cast_err {
    char msg[1024];
} cast_err;

/* Formats the message into err (if non-NULL) and returns -1. */
int cast_fail(cast_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes an existing message: "prefix: old message". Returns -1. */
int cast_fail_prefix(cast_err *err, const char *prefix);

#define CAST_UNUSED(x) ((void)(x))

#endif

/* An RFC 4180 CSV reader over text in memory: quoted fields with "" escapes
 * and embedded newlines, CRLF or LF row ends, a last row without a newline.
 * Blank lines are skipped. Errors name the file and the line. */
#ifndef CAST_TEXT_CSV_H
#define CAST_TEXT_CSV_H

#include <stddef.h>

#include "base/error.h"

typedef struct cast_csv {
    const char *text;
    size_t len, pos;
    const char *path;
    int line;     /* line of the next unread byte (1-based) */
    int row_line; /* line where the current row starts */
    int n, cap;   /* fields of the current row */
    char **fields; /* NUL-terminated, owned */
} cast_csv;

/* text must outlive the reader; path names it in messages. */
void cast_csv_init(cast_csv *c, const char *text, size_t len, const char *path);
/* Reads the next row into c->fields: 1 = a row, 0 = end of input, -1 = error. */
int cast_csv_next(cast_csv *c, cast_err *err);
void cast_csv_free(cast_csv *c);

#endif

/* JSON: parsing and typed access, wrapping cJSON (Debian libcjson). Writing
 * JSON goes through cast_buf (buf.h), which keeps key order and number format
 * under our control. */
#ifndef CAST_BASE_JSON_H
#define CAST_BASE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct cJSON cast_json;

/* Parses text (length n, need not be NUL-terminated). On failure the message
 * names `what` (a file path, or "path:line") and the byte offset. */
cast_json *cast_json_parse(const char *text, size_t n, const char *what, cast_err *err);
/* Reads and parses a whole file (gzip allowed). */
cast_json *cast_json_parse_file(const char *path, cast_err *err);
void cast_json_free(cast_json *j);

/* Lookups return NULL / 0 when the key is absent or null. */
cast_json *cast_json_get(const cast_json *obj, const char *key);
int cast_json_is_object(const cast_json *j);
int cast_json_is_array(const cast_json *j);
int cast_json_is_string(const cast_json *j);
int cast_json_is_number(const cast_json *j);
int cast_json_is_bool(const cast_json *j);
int cast_json_is_null(const cast_json *j);
int cast_json_is_true(const cast_json *j);
const char *cast_json_string(const cast_json *j); /* NULL unless a string */
double cast_json_number(const cast_json *j);
int cast_json_array_size(const cast_json *j);
cast_json *cast_json_array_item(const cast_json *j, int i);
/* Iteration over object members / array items: for (c = first; c; c = next) */
cast_json *cast_json_first(const cast_json *j);
cast_json *cast_json_next(const cast_json *j);
const char *cast_json_key(const cast_json *member);

/* Typed required/optional fields. `what` names the file for messages.
 * Optional: absent or null leaves *out = dflt and returns 0. Wrong type → -1. */
int cast_json_req_int(const cast_json *obj, const char *key, int64_t *out, const char *what, cast_err *err);
int cast_json_opt_int(const cast_json *obj, const char *key, int64_t dflt, int64_t *out, const char *what, cast_err *err);
int cast_json_opt_number(const cast_json *obj, const char *key, double dflt, double *out, const char *what, cast_err *err);
int cast_json_opt_bool(const cast_json *obj, const char *key, int dflt, int *out, const char *what, cast_err *err);
/* Returns a pointer into the tree (not a copy); NULL when absent and optional. */
int cast_json_opt_string(const cast_json *obj, const char *key, const char **out, const char *what, cast_err *err);

/* An integer array (e.g. token ids). *out allocated with malloc. */
int cast_json_int_array(const cast_json *arr, int **out, int *n, const char *what, cast_err *err);



/* Editing and printing a parsed tree (used to rewrite a config.json). */
void cast_json_set_string(cast_json *obj, const char *key, const char *value);
char *cast_json_print(const cast_json *j); /* pretty-printed, malloc'd, ends with a newline */
#endif

#include "base/json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"

cast_json *cast_json_parse(const char *text, size_t n, const char *what, cast_err *err) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!j) {
        size_t off = (end && end >= text) ? (size_t)(end - text) : 0;
        size_t line = 1;
        for (size_t i = 0; i < off && i < n; i++) line += text[i] == '\n';
        if (off >= n) cast_fail(err, "%s: invalid JSON (unexpected end of input)", what);
        else cast_fail(err, "%s: invalid JSON at line %zu, byte %zu", what, line, off);
        return NULL;
    }
    /* trailing garbage after the value is an error too */
    size_t used = (size_t)(end - text);
    while (used < n && (text[used] == ' ' || text[used] == '\n' || text[used] == '\r' || text[used] == '\t' || text[used] == 0))
        used++;
    if (used < n) {
        cJSON_Delete(j);
        cast_fail(err, "%s: invalid JSON (trailing data at byte %zu)", what, used);
        return NULL;
    }
    return j;
}

cast_json *cast_json_parse_file(const char *path, cast_err *err) {
    char *text;
    size_t n;
    if (cast_read_file(path, &text, &n, err)) return NULL;
    cast_json *j = cast_json_parse(text, n, path, err);
    free(text);
    return j;
}

void cast_json_free(cast_json *j) { cJSON_Delete(j); }

cast_json *cast_json_get(const cast_json *obj, const char *key) {
    if (!obj || !cJSON_IsObject(obj)) return NULL;
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v && cJSON_IsNull(v)) return NULL;
    return v;
}

int cast_json_is_object(const cast_json *j) { return j && cJSON_IsObject(j); }
int cast_json_is_array(const cast_json *j) { return j && cJSON_IsArray(j); }
int cast_json_is_string(const cast_json *j) { return j && cJSON_IsString(j); }
int cast_json_is_number(const cast_json *j) { return j && cJSON_IsNumber(j); }
int cast_json_is_bool(const cast_json *j) { return j && cJSON_IsBool(j); }
int cast_json_is_null(const cast_json *j) { return !j || cJSON_IsNull(j); }
int cast_json_is_true(const cast_json *j) { return j && cJSON_IsTrue(j); }
const char *cast_json_string(const cast_json *j) { return cast_json_is_string(j) ? j->valuestring : NULL; }
double cast_json_number(const cast_json *j) { return cast_json_is_number(j) ? j->valuedouble : 0.0; }
int cast_json_array_size(const cast_json *j) { return cast_json_is_array(j) ? cJSON_GetArraySize(j) : 0; }
cast_json *cast_json_array_item(const cast_json *j, int i) { return cJSON_GetArrayItem(j, i); }
cast_json *cast_json_first(const cast_json *j) { return j ? j->child : NULL; }
cast_json *cast_json_next(const cast_json *j) { return j ? j->next : NULL; }
const char *cast_json_key(const cast_json *member) { return member ? member->string : NULL; }

static int as_int(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9.0e15) return -1;
    *out = (int64_t)d;
    return 0;
}

int cast_json_req_int(const cast_json *obj, const char *key, int64_t *out, const char *what, cast_err *err) {
    cJSON *v = cast_json_get(obj, key);
    if (!v) return cast_fail(err, "%s: missing \"%s\"", what, key);
    if (as_int(v, out)) return cast_fail(err, "%s: \"%s\" must be an integer", what, key);
    return 0;
}

int cast_json_opt_int(const cast_json *obj, const char *key, int64_t dflt, int64_t *out, const char *what, cast_err *err) {
    cJSON *v = cast_json_get(obj, key);
    *out = dflt;
    if (!v) return 0;
    if (as_int(v, out)) return cast_fail(err, "%s: \"%s\" must be an integer", what, key);
    return 0;
}

int cast_json_opt_number(const cast_json *obj, const char *key, double dflt, double *out, const char *what, cast_err *err) {
    cJSON *v = cast_json_get(obj, key);
    *out = dflt;
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return cast_fail(err, "%s: \"%s\" must be a number", what, key);
    *out = v->valuedouble;
    return 0;
}

int cast_json_opt_bool(const cast_json *obj, const char *key, int dflt, int *out, const char *what, cast_err *err) {
    cJSON *v = cast_json_get(obj, key);
    *out = dflt;
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return cast_fail(err, "%s: \"%s\" must be true or false", what, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

int cast_json_opt_string(const cast_json *obj, const char *key, const char **out, const char *what, cast_err *err) {
    cJSON *v = cast_json_get(obj, key);
    *out = NULL;
    if (!v) return 0;
    if (!cJSON_IsString(v)) return cast_fail(err, "%s: \"%s\" must be a string", what, key);
    *out = v->valuestring;
    return 0;
}

int cast_json_int_array(const cast_json *arr, int **out, int *n, const char *what, cast_err *err) {
    *out = NULL;
    *n = 0;
    if (!cast_json_is_array(arr)) return cast_fail(err, "%s: expected an array of integers", what);
    int count = cJSON_GetArraySize(arr);
    int *v = cast_xmalloc(sizeof(int) * (size_t)(count ? count : 1));
    int i = 0;
    for (cJSON *c = arr->child; c; c = c->next, i++) {
        int64_t x;
        if (as_int(c, &x) || x < -2147483648LL || x > 2147483647LL) {
            free(v);
            return cast_fail(err, "%s: expected an array of integers (item %d)", what, i);
        }
        v[i] = (int)x;
    }
    *out = v;
    *n = count;
    return 0;
}

void cast_json_set_string(cast_json *obj, const char *key, const char *value) {
    if (!cast_json_is_object(obj)) return;
    cJSON *v = cJSON_CreateString(value);
    if (cJSON_GetObjectItemCaseSensitive(obj, key)) cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
    else cJSON_AddItemToObject(obj, key, v);
}

char *cast_json_print(const cast_json *j) {
    char *s = cJSON_Print(j);
    cast_buf b = {0};
    cast_buf_puts(&b, s ? s : "null");
    cast_buf_putc(&b, '\n');
    cJSON_free(s);
    return cast_buf_steal(&b);
}

/* What templates call on values: filters (|trim, |tojson, |map ...), tests
 * (is defined, is string ...), str and dict methods, and the globals range,
 * namespace, dict, raise_exception and strftime_now. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "text/jinja_internal.h"
#include "text/utf8.h"

/* Python's str.isspace(). */
static int py_space(int32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* A newline and `spaces` spaces of tojson's indentation. */
static int json_indent(rt *r, cast_buf *b, int64_t spaces) {
    if (spaces > (int64_t)MAX_MEMORY) return jinja_over_limit(r, "memory");
    if (spend_bytes(r, (size_t)spaces) || room(r, b->len + (size_t)spaces)) return -1;
    cast_buf_putc(b, '\n');
    for (int64_t s = 0; s < spaces; s++) cast_buf_putc(b, ' ');
    return 0;
}

/* json.dumps(v, ensure_ascii=False, indent=indent), transformers' tojson;
 * indent < 0: none. */
static int json_val(rt *r, jval v, cast_buf *b, int64_t indent, int level) {
    if (jinja_visit(r, b, level)) return -1;
    switch (v.k) {
    case V_NONE: cast_buf_puts(b, "null"); return 0;
    case V_BOOL: cast_buf_puts(b, v.u.b ? "true" : "false"); return 0;
    case V_INT: cast_buf_printf(b, "%lld", (long long)v.u.i); return 0;
    case V_FLOAT:
        if (isnan(v.u.f)) cast_buf_puts(b, "NaN");
        else if (isinf(v.u.f)) cast_buf_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else jinja_fmt_float(v.u.f, b);
        return 0;
    case V_STR:
        if (spend_bytes(r, v.u.s.n)) return -1;
        cast_buf_json_string(b, v.u.s.p, v.u.s.n);
        return 0;
    case V_LIST:
    case V_DICT: {
        int is_list = v.k == V_LIST;
        int n = is_list ? v.u.l->n : v.u.d->n;
        cast_buf_putc(b, is_list ? '[' : '{');
        if (n == 0) {
            cast_buf_putc(b, is_list ? ']' : '}');
            return 0;
        }
        for (int i = 0; i < n; i++) {
            if (i) cast_buf_puts(b, indent >= 0 ? "," : ", ");
            if (indent >= 0 && json_indent(r, b, indent > (int64_t)MAX_MEMORY ? indent : indent * (level + 1))) return -1;
            if (is_list) {
                if (json_val(r, v.u.l->v[i], b, indent, level + 1)) return -1;
            } else {
                jval key = v.u.d->keys[i];
                if (key.k != V_STR) key = jinja_to_str(r, key);
                if (spend_bytes(r, key.u.s.n)) return -1;
                cast_buf_json_string(b, key.u.s.p, key.u.s.n);
                cast_buf_puts(b, ": ");
                if (json_val(r, v.u.d->vals[i], b, indent, level + 1)) return -1;
            }
        }
        if (indent >= 0 && json_indent(r, b, indent > (int64_t)MAX_MEMORY ? indent : indent * level)) return -1;
        cast_buf_putc(b, is_list ? ']' : '}');
        return 0;
    }
    default: return jinja_fail(r, "tojson: cannot serialise a value of type %s", jinja_type_name(v));
    }
}

/* --- arguments */

jval jinja_arg(const args *a, int i, const char *name) {
    if (i >= 0 && i < a->np) return a->p[i];
    if (name)
        for (int k = 0; k < a->nk; k++)
            if (strcmp(a->kn[k], name) == 0) return a->kv[k];
    return UNDEF;
}

static int want_str(rt *r, jval v, const char *what) {
    if (v.k == V_STR) return 0;
    return jinja_fail(r, "%s expects a string, got %s", what, jinja_type_name(v));
}

static int want_int(rt *r, jval v, const char *what, int64_t *out) {
    if (v.k == V_INT || v.k == V_BOOL) {
        *out = num_i(v);
        return 0;
    }
    return jinja_fail(r, "%s expects an integer, got %s", what, jinja_type_name(v));
}

/* --- string operations */

static int in_set(int32_t c, const char *chars, size_t n) {
    for (size_t i = 0; i < n;)
        if (cast_utf8_next(chars, n, &i) == c) return 1;
    return 0;
}

/* str.strip / lstrip / rstrip (chars: NULL = Python whitespace) */
static jval str_strip(rt *r, jval s, jval chars, int left, int right) {
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, start = 0, end = n;
    const char *cs = chars.k == V_STR ? chars.u.s.p : NULL;
    size_t cn = chars.k == V_STR ? chars.u.s.n : 0;
    if (left) {
        while (start < end && !spend_bytes(r, cn)) {
            size_t i = start;
            int32_t c = cast_utf8_next(p, n, &i);
            if (cs ? !in_set(c, cs, cn) : !py_space(c)) break;
            start = i;
        }
    }
    if (right) {
        while (end > start && !spend_bytes(r, cn)) {
            size_t j = cast_utf8_char_start(p, start, end - 1);
            size_t i = j;
            int32_t c = cast_utf8_next(p, n, &i);
            if (cs ? !in_set(c, cs, cn) : !py_space(c)) break;
            end = j;
        }
    }
    return vstr(p + start, end - start);
}

static jval str_split(rt *r, jval s, jval sep, int64_t maxsplit) {
    jval out = vlist(&r->a);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    if (spend_bytes(r, n)) return out;
    if (sep.k != V_STR) {
        /* split on runs of whitespace, no empty strings */
        size_t i = 0;
        int64_t splits = 0;
        while (i < n) {
            size_t j = i;
            while (j < n) {
                size_t k = j;
                if (!py_space(cast_utf8_next(p, n, &k))) break;
                j = k;
            }
            i = j;
            if (i >= n) break;
            if (maxsplit >= 0 && splits >= maxsplit) {
                push(r, out.u.l, vstr(p + i, n - i)); /* the rest, as is */
                break;
            }
            while (j < n) {
                size_t k = j;
                if (py_space(cast_utf8_next(p, n, &k))) break;
                j = k;
            }
            if (push(r, out.u.l, vstr(p + i, j - i))) break;
            splits++;
            i = j;
        }
        return out;
    }
    size_t i = 0;
    int64_t splits = 0;
    for (;;) {
        const char *f = (maxsplit < 0 || splits < maxsplit) ? jinja_memfind(r, p + i, n - i, sep.u.s.p, sep.u.s.n) : NULL;
        if (!f) {
            push(r, out.u.l, vstr(p + i, n - i));
            return out;
        }
        if (push(r, out.u.l, vstr(p + i, (size_t)(f - (p + i))))) return out;
        i = (size_t)(f - p) + sep.u.s.n;
        splits++;
    }
}

static jval str_case(rt *r, jval s, int mode) {
    /* mode 0 lower, 1 upper, 2 str.title, 3 capitalize, 4 Jinja's |title
     * (upper after start or one of -, whitespace, ( { [ <) */
    cast_buf b = {0};
    int prev_cased = 0, first = 1, prev_sep = 1;
    /* a case mapping at most doubles the bytes of a character */
    if (spend_bytes(r, s.u.s.n) || room_items(r, s.u.s.n, 4)) return vstr("", 0);
    for (size_t i = 0; i < s.u.s.n;) {
        int32_t c = cast_utf8_next(s.u.s.p, s.u.s.n, &i);
        int32_t o;
        if (mode == 0) o = utf8proc_tolower(c);
        else if (mode == 1) o = utf8proc_toupper(c);
        else if (mode == 2) o = prev_cased ? utf8proc_tolower(c) : utf8proc_totitle(c);
        else if (mode == 3) o = first ? utf8proc_totitle(c) : utf8proc_tolower(c);
        else o = prev_sep ? utf8proc_toupper(c) : utf8proc_tolower(c);
        prev_sep = py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
        const utf8proc_property_t *pr = utf8proc_get_property(c);
        int cased = pr->category == UTF8PROC_CATEGORY_LU || pr->category == UTF8PROC_CATEGORY_LL ||
                    pr->category == UTF8PROC_CATEGORY_LT;
        prev_cased = cased;
        first = 0;
        cast_utf8_append(&b, o);
    }
    jval out = jinja_buf_to_str(r, &b);
    cast_buf_free(&b);
    return out;
}

/* Occurrences str.replace would replace (count < 0: all). */
static int64_t replace_count(rt *r, jval s, jval old, int64_t count) {
    if (old.u.s.n == 0) {
        int64_t slots = (int64_t)cast_utf8_count(s.u.s.p, s.u.s.n) + 1; /* between characters and at both ends */
        return count >= 0 && count < slots ? count : slots;
    }
    int64_t done = 0;
    for (const char *p = s.u.s.p, *end = p + s.u.s.n, *f; (count < 0 || done < count) &&
                                                          (f = jinja_memfind(r, p, (size_t)(end - p), old.u.s.p, old.u.s.n));
         p = f + old.u.s.n)
        done++;
    return done;
}

static jval str_replace(rt *r, jval s, jval old, jval new_, int64_t count) {
    cast_buf b = {0};
    size_t i = 0;
    int64_t done = 0;
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    /* the result's size is known before it is built: many copies of a long
     * `new` must not outgrow the memory limit first */
    if (spend_bytes(r, n)) return vstr("", 0);
    int64_t times = replace_count(r, s, old, count);
    if (times > 0 && (new_.u.s.n > MAX_MEMORY / (size_t)times || room(r, n + (size_t)times * new_.u.s.n)))
        return jinja_over_limit(r, "memory"), vstr("", 0);
    if (r->over || spend_bytes(r, n + (size_t)times * new_.u.s.n)) return vstr("", 0);
    if (old.u.s.n == 0) {
        /* Python inserts `new` between every character */
        for (size_t k = 0; k <= n;) {
            if (count < 0 || done < count) {
                cast_buf_append(&b, new_.u.s.p, new_.u.s.n);
                done++;
            }
            if (k >= n) break;
            size_t k2 = k;
            cast_utf8_next(p, n, &k2);
            cast_buf_append(&b, p + k, k2 - k);
            k = k2;
        }
    } else {
        while (i <= n) {
            const char *f = (count < 0 || done < count) ? jinja_memfind(r, p + i, n - i, old.u.s.p, old.u.s.n) : NULL;
            if (!f) {
                cast_buf_append(&b, p + i, n - i);
                break;
            }
            cast_buf_append(&b, p + i, (size_t)(f - (p + i)));
            cast_buf_append(&b, new_.u.s.p, new_.u.s.n);
            i = (size_t)(f - p) + old.u.s.n;
            done++;
        }
    }
    jval out = jinja_buf_to_str(r, &b);
    cast_buf_free(&b);
    return out;
}

static int str_affix1(rt *r, jval s, jval x, int end) {
    if (x.k != V_STR || x.u.s.n > s.u.s.n || spend_bytes(r, x.u.s.n)) return 0;
    const char *p = end ? s.u.s.p + s.u.s.n - x.u.s.n : s.u.s.p;
    return memcmp(p, x.u.s.p, x.u.s.n) == 0;
}

/* s.startswith(prefix or tuple of prefixes) */
static int str_affix(rt *r, jval s, jval x, int end) {
    if (x.k != V_LIST) return str_affix1(r, s, x, end);
    for (int i = 0; i < x.u.l->n; i++)
        if (str_affix1(r, s, x.u.l->v[i], end)) return 1;
    return 0;
}

/* --- dicts */

static jval dict_items(rt *r, jdict *d) {
    jval l = vlist(&r->a);
    for (int i = 0; i < d->n; i++) {
        jval pair = vlist(&r->a);
        pair.u.l->tuple = 1;
        if (push(r, pair.u.l, d->keys[i]) || push(r, pair.u.l, d->vals[i]) || push(r, l.u.l, pair)) break;
    }
    return l;
}

int jinja_is_method(jval obj, const char *name) {
    static const char *str_m[] = {"startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "upper",
                                  "lower", "title", "capitalize", "replace", "find", "rfind", "count", "join",
                                  "splitlines", "isdigit", "isalpha", "isspace", "format", NULL};
    static const char *dict_m[] = {"items", "keys", "values", "get", NULL};
    const char **m = obj.k == V_STR ? str_m : (obj.k == V_DICT && !obj.u.d->ns) ? dict_m : NULL;
    for (int i = 0; m && m[i]; i++)
        if (strcmp(m[i], name) == 0) return 1;
    return 0;
}

/* --- tests */

int jinja_test(rt *r, const char *name, jval v, const args *a, int *out) {
    jval x = jinja_arg(a, 0, NULL);
    if (!strcmp(name, "defined")) *out = v.k != V_UNDEF;
    else if (!strcmp(name, "undefined")) *out = v.k == V_UNDEF;
    else if (!strcmp(name, "none")) *out = v.k == V_NONE;
    else if (!strcmp(name, "boolean")) *out = v.k == V_BOOL;
    else if (!strcmp(name, "true")) *out = v.k == V_BOOL && v.u.b;
    else if (!strcmp(name, "false")) *out = v.k == V_BOOL && !v.u.b;
    else if (!strcmp(name, "integer")) *out = v.k == V_INT;
    else if (!strcmp(name, "float")) *out = v.k == V_FLOAT;
    else if (!strcmp(name, "number")) *out = is_num(v);
    else if (!strcmp(name, "string")) *out = v.k == V_STR;
    else if (!strcmp(name, "mapping")) *out = v.k == V_DICT;
    else if (!strcmp(name, "iterable")) *out = v.k == V_LIST || v.k == V_DICT || v.k == V_STR || v.k == V_UNDEF;
    else if (!strcmp(name, "sequence")) *out = v.k == V_LIST || v.k == V_DICT || v.k == V_STR;
    else if (!strcmp(name, "callable")) *out = v.k == V_FUNC;
    else if (!strcmp(name, "odd") || !strcmp(name, "even")) {
        int64_t i;
        if (want_int(r, v, name, &i)) return -1;
        *out = (i % 2 != 0) == (name[0] == 'o');
    } else if (!strcmp(name, "divisibleby")) {
        int64_t i, j;
        if (want_int(r, v, name, &i) || want_int(r, x, name, &j)) return -1;
        if (j == 0) return jinja_fail(r, "divisibleby 0");
        *out = j == -1 || i % j == 0; /* INT64_MIN % -1 overflows in C */
    } else if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) *out = jinja_eq(r, v, x);
    else if (!strcmp(name, "ne") || !strcmp(name, "!=")) *out = !jinja_eq(r, v, x);
    else if (!strcmp(name, "sameas")) *out = jinja_eq(r, v, x) && v.k == x.k;
    else if (!strcmp(name, "lt") || !strcmp(name, "le") || !strcmp(name, "gt") || !strcmp(name, "ge") ||
             !strcmp(name, "lessthan") || !strcmp(name, "greaterthan")) {
        int c;
        if (jinja_compare(r, v, x, &c)) return -1;
        if (!strcmp(name, "lt") || !strcmp(name, "lessthan")) *out = c < 0;
        else if (!strcmp(name, "le")) *out = c <= 0;
        else if (!strcmp(name, "gt") || !strcmp(name, "greaterthan")) *out = c > 0;
        else *out = c >= 0;
    } else if (!strcmp(name, "in")) return jinja_contains(r, x, v, out);
    else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v.k != V_STR) *out = 0;
        else {
            jval c = str_case(r, v, name[0] == 'u');
            *out = jinja_eq(r, c, v);
        }
    } else return jinja_fail(r, "unknown test '%s'", name);
    return r->over ? -1 : 0;
}

/* --- filters */

static jval attr_path(rt *r, jval v, jval attr) {
    /* "a.b" attribute paths, as Jinja's map/selectattr/sort accept */
    if (attr.k != V_STR) return jinja_get_item(r, v, attr);
    const char *p = attr.u.s.p, *end = p + attr.u.s.n;
    if (spend_bytes(r, attr.u.s.n)) return UNDEF;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *stop = dot ? dot : end;
        char *name = jinja_strndup(&r->a, p, (size_t)(stop - p));
        char *e;
        long idx = strtol(name, &e, 10);
        if (*name && !*e) v = jinja_get_item(r, v, vint(idx));
        else v = jinja_get_item(r, v, vstr(name, strlen(name)));
        if (!dot) break;
        p = dot + 1;
    }
    return v;
}

typedef struct keyed {
    jval key, val;
} keyed;

/* Stable merge sort with a context (qsort has none, and Jinja's sort is stable). */
static int sort_keyed(rt *r, keyed *v, keyed *tmp, int n) {
    if (n < 2) return 0;
    int h = n / 2;
    if (sort_keyed(r, v, tmp, h) || sort_keyed(r, v + h, tmp, n - h)) return -1;
    int i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int c;
        if (jinja_compare(r, v[i].key, v[j].key, &c)) return -1;
        tmp[k++] = c <= 0 ? v[i++] : v[j++];
    }
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, sizeof(keyed) * (size_t)n);
    return 0;
}

int jinja_filter(rt *r, const char *name, jval v, const args *a, jval *out) {
    jval a0 = jinja_arg(a, 0, NULL);
    if (!strcmp(name, "trim") || !strcmp(name, "strip")) {
        if (v.k != V_STR) v = jinja_to_str(r, v);
        *out = str_strip(r, v, jinja_arg(a, 0, "chars"), 1, 1);
        return r->over ? -1 : 0;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        if (v.k == V_STR) {
            if (spend_bytes(r, v.u.s.n)) return -1;
            *out = vint((int64_t)cast_utf8_count(v.u.s.p, v.u.s.n));
        }
        else if (v.k == V_LIST) *out = vint(v.u.l->n);
        else if (v.k == V_DICT) *out = vint(v.u.d->n);
        else if (v.k == V_UNDEF) *out = vint(0);
        else return jinja_fail(r, "object of type '%s' has no len()", jinja_type_name(v));
        return 0;
    }
    if (!strcmp(name, "string")) {
        *out = jinja_to_str(r, v);
        return 0;
    }
    if (!strcmp(name, "safe")) {
        *out = v;
        return 0;
    }
    if (!strcmp(name, "tojson")) {
        /* transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
        jval ind = jinja_arg(a, 1, "indent");
        int64_t indent = ind.k == V_INT ? ind.u.i : -1;
        if (jinja_truthy(jinja_arg(a, 0, "ensure_ascii")) || jinja_truthy(jinja_arg(a, 2, "separators")) || jinja_truthy(jinja_arg(a, 3, "sort_keys")))
            return jinja_fail(r, "tojson: only the indent argument is supported");
        cast_buf b = {0};
        if (json_val(r, v, &b, indent, 0)) {
            cast_buf_free(&b);
            return -1;
        }
        *out = jinja_buf_to_str(r, &b);
        cast_buf_free(&b);
        return 0;
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper") || !strcmp(name, "title") || !strcmp(name, "capitalize")) {
        v = jinja_to_str(r, v);
        int mode = name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 't' ? 4 : 3;
        *out = str_case(r, v, mode);
        return 0;
    }
    if (!strcmp(name, "replace")) {
        jval old = jinja_arg(a, 0, "old"), new_ = jinja_arg(a, 1, "new"), cnt = jinja_arg(a, 2, "count");
        v = jinja_to_str(r, v);
        if (want_str(r, old, "replace") || want_str(r, new_, "replace")) return -1;
        *out = str_replace(r, v, old, new_, cnt.k == V_INT ? cnt.u.i : -1);
        return r->over ? -1 : 0;
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jval dv = jinja_arg(a, 0, "default_value");
        if (dv.k == V_UNDEF) dv = vstr("", 0);
        int boolean = jinja_truthy(jinja_arg(a, 1, "boolean"));
        *out = (v.k == V_UNDEF || (boolean && !jinja_truthy(v))) ? dv : v;
        return 0;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jlist *l;
        if (jinja_iter_list(r, v, &l)) return -1;
        *out = l->n ? l->v[name[0] == 'f' ? 0 : l->n - 1] : UNDEF;
        return 0;
    }
    if (!strcmp(name, "list")) {
        jlist *l;
        if (jinja_iter_list(r, v, &l)) return -1;
        jval c = vlist(&r->a);
        for (int i = 0; i < l->n; i++)
            if (push(r, c.u.l, l->v[i])) return -1;
        *out = c;
        return 0;
    }
    if (!strcmp(name, "items")) {
        if (v.k == V_UNDEF) *out = vlist(&r->a);
        else if (v.k != V_DICT) return jinja_fail(r, "items: expected a mapping, got %s", jinja_type_name(v));
        else *out = dict_items(r, v.u.d);
        return 0;
    }
    if (!strcmp(name, "reverse")) {
        if (v.k == V_STR) return jinja_slice(r, v, UNDEF, UNDEF, vint(-1), out);
        jlist *l;
        if (jinja_iter_list(r, v, &l)) return -1;
        jval c = vlist(&r->a);
        for (int i = l->n - 1; i >= 0; i--)
            if (push(r, c.u.l, l->v[i])) return -1;
        *out = c;
        return 0;
    }
    if (!strcmp(name, "join")) {
        jlist *l;
        if (jinja_iter_list(r, v, &l)) return -1;
        jval sep = jinja_arg(a, 0, "d"), attr = jinja_arg(a, 1, "attribute");
        if (sep.k == V_UNDEF) sep = vstr("", 0);
        sep = jinja_to_str(r, sep);
        cast_buf b = {0};
        for (int i = 0; i < l->n && !r->over; i++) {
            if (i && !spend_bytes(r, sep.u.s.n) && !room(r, b.len + sep.u.s.n)) cast_buf_append(&b, sep.u.s.p, sep.u.s.n);
            jinja_str_val(r, attr.k != V_UNDEF ? attr_path(r, l->v[i], attr) : l->v[i], &b);
        }
        *out = jinja_buf_to_str(r, &b);
        cast_buf_free(&b);
        return r->over ? -1 : 0;
    }
    if (!strcmp(name, "map")) {
        jlist *l;
        if (jinja_iter_list(r, v, &l)) return -1;
        jval attr = jinja_arg(a, -1, "attribute"), dflt = jinja_arg(a, -1, "default");
        jval res = vlist(&r->a);
        for (int i = 0; i < l->n; i++) {
            jval x;
            if (attr.k != V_UNDEF) {
                x = attr_path(r, l->v[i], attr);
                if (x.k == V_UNDEF && dflt.k != V_UNDEF) x = dflt;
            } else {
                if (want_str(r, a0, "map")) return -1;
                args sub = {.np = a->np - 1, .p = a->p + 1, .nk = a->nk, .kn = a->kn, .kv = a->kv};
                char *fname = jinja_strndup(&r->a, a0.u.s.p, a0.u.s.n);
                if (jinja_filter(r, fname, l->v[i], &sub, &x)) return -1;
            }
            if (push(r, res.u.l, x)) return -1;
        }
        *out = res;
        return 0;
    }
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr") || !strcmp(name, "select") ||
        !strcmp(name, "reject")) {
        int by_attr = strstr(name, "attr") != NULL, keep_true = name[0] == 's';
        jlist *l;
        if (jinja_iter_list(r, v, &l)) return -1;
        int ti = by_attr ? 1 : 0;
        jval test = jinja_arg(a, ti, NULL);
        args sub = {.np = a->np > ti + 1 ? a->np - ti - 1 : 0, .p = a->p + ti + 1};
        jval res = vlist(&r->a);
        for (int i = 0; i < l->n; i++) {
            jval x = by_attr ? attr_path(r, l->v[i], a0) : l->v[i];
            int ok;
            if (test.k == V_UNDEF) ok = jinja_truthy(x);
            else {
                if (want_str(r, test, name)) return -1;
                char *tname = jinja_strndup(&r->a, test.u.s.p, test.u.s.n);
                if (jinja_test(r, tname, x, &sub, &ok)) return -1;
            }
            if (ok == keep_true && push(r, res.u.l, l->v[i])) return -1;
        }
        *out = res;
        return 0;
    }
    if (!strcmp(name, "sort") || !strcmp(name, "dictsort")) {
        int dictsort = name[0] == 'd';
        jlist *l;
        if (dictsort) {
            if (v.k != V_DICT) return jinja_fail(r, "dictsort: expected a mapping");
            l = dict_items(r, v.u.d).u.l;
        } else if (jinja_iter_list(r, v, &l)) return -1;
        jval rev = jinja_arg(a, dictsort ? 2 : 0, "reverse"), cs = jinja_arg(a, dictsort ? 0 : 1, "case_sensitive");
        jval attr = jinja_arg(a, dictsort ? -1 : 2, "attribute");
        keyed *k = jinja_alloc(&r->a, sizeof(keyed) * (size_t)(l->n ? l->n : 1));
        keyed *tmp = jinja_alloc(&r->a, sizeof(keyed) * (size_t)(l->n ? l->n : 1));
        for (int i = 0; i < l->n; i++) {
            k[i].val = l->v[i];
            k[i].key = dictsort ? l->v[i].u.l->v[0] : attr.k != V_UNDEF ? attr_path(r, l->v[i], attr) : l->v[i];
            /* case-insensitive: lowered once here, not at every comparison */
            if (!jinja_truthy(cs) && k[i].key.k == V_STR) k[i].key = str_case(r, k[i].key, 0);
        }
        if (sort_keyed(r, k, tmp, l->n)) return -1;
        jval res = vlist(&r->a);
        for (int i = 0; i < l->n; i++)
            if (push(r, res.u.l, k[jinja_truthy(rev) ? l->n - 1 - i : i].val)) return -1;
        *out = res;
        return 0;
    }
    if (!strcmp(name, "unique")) {
        jlist *l;
        if (jinja_iter_list(r, v, &l)) return -1;
        jval res = vlist(&r->a);
        for (int i = 0; i < l->n; i++) {
            int seen;
            if (jinja_contains(r, res, l->v[i], &seen)) return -1;
            if (!seen && push(r, res.u.l, l->v[i])) return -1;
        }
        *out = res;
        return 0;
    }
    if (!strcmp(name, "sum") || !strcmp(name, "min") || !strcmp(name, "max")) {
        jlist *l;
        if (jinja_iter_list(r, v, &l)) return -1;
        if (name[1] == 'u') {
            jval attr = jinja_arg(a, 0, "attribute"), acc = jinja_arg(a, 1, "start");
            if (acc.k == V_UNDEF) acc = vint(0);
            for (int i = 0; i < l->n; i++)
                if (jinja_binop(r, OP_ADD, acc, attr.k != V_UNDEF ? attr_path(r, l->v[i], attr) : l->v[i], &acc)) return -1;
            *out = acc;
            return 0;
        }
        *out = UNDEF;
        for (int i = 0; i < l->n; i++) {
            int c = 0;
            if (i && jinja_compare(r, l->v[i], *out, &c)) return -1;
            if (!i || (name[1] == 'i' ? c < 0 : c > 0)) *out = l->v[i];
        }
        return 0;
    }
    if (!strcmp(name, "int")) {
        if (v.k == V_STR) {
            if (spend_bytes(r, v.u.s.n)) return -1;
            char *s = jinja_strndup(&r->a, v.u.s.p, v.u.s.n), *e;
            long long x = strtoll(s, &e, 10);
            while (*e && py_space((unsigned char)*e)) e++;
            *out = (*s && !*e) ? vint(x) : (a0.k == V_UNDEF ? vint(0) : a0);
        } else if (is_num(v)) *out = vint(num_i(v));
        else *out = a0.k == V_UNDEF ? vint(0) : a0;
        return 0;
    }
    if (!strcmp(name, "float")) {
        if (v.k == V_STR) {
            if (spend_bytes(r, v.u.s.n)) return -1;
            char *s = jinja_strndup(&r->a, v.u.s.p, v.u.s.n), *e;
            double x = strtod(s, &e);
            *out = (*s && !*e) ? vfloat(x) : (a0.k == V_UNDEF ? vfloat(0) : a0);
        } else if (is_num(v)) *out = vfloat(num_f(v));
        else *out = a0.k == V_UNDEF ? vfloat(0) : a0;
        return 0;
    }
    if (!strcmp(name, "abs")) {
        if (!is_num(v)) return jinja_fail(r, "abs: expected a number");
        if (v.k == V_INT && v.u.i == INT64_MIN) return jinja_fail(r, "integer overflow");
        *out = v.k == V_FLOAT ? vfloat(fabs(v.u.f)) : vint(num_i(v) < 0 ? -num_i(v) : num_i(v));
        return 0;
    }
    if (!strcmp(name, "round")) {
        if (!is_num(v)) return jinja_fail(r, "round: expected a number");
        jval prec = jinja_arg(a, 0, "precision");
        double m = pow(10, prec.k == V_INT ? (double)prec.u.i : 0);
        *out = vfloat(round(num_f(v) * m) / m);
        return 0;
    }
    if (!strcmp(name, "indent")) {
        /* Jinja 3: lines after the first get the prefix unless empty
         * (blank=True: all of them); first=True prefixes the first line. */
        jval w = jinja_arg(a, 0, "width");
        int first = jinja_truthy(jinja_arg(a, 1, "first")), blank = jinja_truthy(jinja_arg(a, 2, "blank"));
        cast_buf pad = {0}, b = {0};
        if (w.k == V_INT && (w.u.i < 0 || w.u.i > 10000)) return jinja_fail(r, "indent width out of range");
        if (w.k == V_STR) cast_buf_append(&pad, w.u.s.p, w.u.s.n);
        else
            for (int64_t i = 0; i < (w.k == V_INT ? w.u.i : 4); i++) cast_buf_putc(&pad, ' ');
        v = jinja_to_str(r, v);
        /* the result's size first: a long prefix on many lines adds up */
        size_t lines = 1;
        for (const char *q = v.u.s.p, *e = q + v.u.s.n; (q = memchr(q, '\n', (size_t)(e - q))); q++) lines++;
        if (spend_bytes(r, v.u.s.n) || room_items(r, lines, pad.len + 1) || room(r, v.u.s.n + lines * (pad.len + 1)) ||
            spend_bytes(r, lines * pad.len)) {
            cast_buf_free(&pad);
            return -1;
        }
        if (first) cast_buf_append(&b, pad.data ? pad.data : "", pad.len);
        size_t i = 0;
        for (int line = 0; i < v.u.s.n; line++) {
            const char *nl = memchr(v.u.s.p + i, '\n', v.u.s.n - i);
            size_t end = nl ? (size_t)(nl - v.u.s.p) : v.u.s.n;
            if (line > 0) {
                cast_buf_putc(&b, '\n');
                if (blank || end > i) cast_buf_append(&b, pad.data ? pad.data : "", pad.len);
            }
            cast_buf_append(&b, v.u.s.p + i, end - i);
            i = end + 1;
        }
        *out = jinja_buf_to_str(r, &b);
        cast_buf_free(&b);
        cast_buf_free(&pad);
        return 0;
    }
    if (!strcmp(name, "wordcount")) {
        v = jinja_to_str(r, v);
        *out = vint(str_split(r, v, UNDEF, -1).u.l->n);
        return r->over ? -1 : 0;
    }
    if (!strcmp(name, "attr")) {
        if (want_str(r, a0, "attr")) return -1;
        *out = jinja_get_attr(r, v, jinja_strndup(&r->a, a0.u.s.p, a0.u.s.n));
        return 0;
    }
    if (!strcmp(name, "e") || !strcmp(name, "escape") || !strcmp(name, "forceescape")) {
        v = jinja_to_str(r, v);
        if (spend_bytes(r, v.u.s.n) || room_items(r, v.u.s.n, 5)) return -1; /* "&#34;" for one byte */
        cast_buf b = {0};
        for (size_t i = 0; i < v.u.s.n; i++) {
            char c = v.u.s.p[i];
            if (c == '&') cast_buf_puts(&b, "&amp;");
            else if (c == '<') cast_buf_puts(&b, "&lt;");
            else if (c == '>') cast_buf_puts(&b, "&gt;");
            else if (c == '"') cast_buf_puts(&b, "&#34;");
            else if (c == '\'') cast_buf_puts(&b, "&#39;");
            else cast_buf_putc(&b, c);
        }
        *out = jinja_buf_to_str(r, &b);
        cast_buf_free(&b);
        return 0;
    }
    return jinja_fail(r, "unsupported filter '%s'", name);
}

/* --- methods and globals */

int jinja_call_method(rt *r, jval self, const char *m, const args *a, jval *out) {
    jval a0 = jinja_arg(a, 0, NULL), a1 = jinja_arg(a, 1, NULL);
    if (self.k == V_DICT) {
        if (!strcmp(m, "items")) *out = dict_items(r, self.u.d);
        else if (!strcmp(m, "keys") || !strcmp(m, "values")) {
            jval l = vlist(&r->a);
            for (int i = 0; i < self.u.d->n; i++)
                if (push(r, l.u.l, m[0] == 'k' ? self.u.d->keys[i] : self.u.d->vals[i])) return -1;
            *out = l;
        } else {
            int i = jinja_dict_find(r, self.u.d, a0);
            *out = i >= 0 ? self.u.d->vals[i] : (a1.k == V_UNDEF ? NONE : a1);
        }
        return r->over ? -1 : 0;
    }
    /* string methods */
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        if (a0.k != V_STR && a0.k != V_LIST) return jinja_fail(r, "%s expects a string", m);
        *out = vbool(str_affix(r, self, a0, m[0] == 'e'));
    } else if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        if (a0.k != V_UNDEF && a0.k != V_NONE && want_str(r, a0, m)) return -1;
        *out = str_strip(r, self, a0, m[0] != 'r', m[0] != 'l');
    } else if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        jval sep = jinja_arg(a, 0, "sep"), ms = jinja_arg(a, 1, "maxsplit");
        if (sep.k == V_STR && sep.u.s.n == 0) return jinja_fail(r, "empty separator");
        if (sep.k != V_UNDEF && sep.k != V_NONE && want_str(r, sep, m)) return -1;
        int64_t maxsplit = ms.k == V_INT ? ms.u.i : -1;
        if (m[0] == 'r' && maxsplit >= 0) return jinja_fail(r, "rsplit with maxsplit is not supported");
        *out = str_split(r, self, sep, maxsplit);
    } else if (!strcmp(m, "upper") || !strcmp(m, "lower") || !strcmp(m, "title") || !strcmp(m, "capitalize")) {
        *out = str_case(r, self, m[0] == 'l' ? 0 : m[0] == 'u' ? 1 : m[0] == 't' ? 2 : 3);
    } else if (!strcmp(m, "replace")) {
        if (want_str(r, a0, m) || want_str(r, a1, m)) return -1;
        jval cnt = jinja_arg(a, 2, "count");
        *out = str_replace(r, self, a0, a1, cnt.k == V_INT ? cnt.u.i : -1);
    } else if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "count")) {
        if (want_str(r, a0, m)) return -1;
        if (m[0] == 'c') {
            int64_t c = 0;
            if (spend_bytes(r, self.u.s.n)) return -1;
            if (a0.u.s.n == 0) c = (int64_t)cast_utf8_count(self.u.s.p, self.u.s.n) + 1;
            else
                for (const char *p = self.u.s.p, *f; (f = jinja_memfind(r, p, self.u.s.n - (size_t)(p - self.u.s.p), a0.u.s.p, a0.u.s.n));
                     p = f + a0.u.s.n)
                    c++;
            *out = vint(c);
        } else {
            const char *best = NULL;
            for (const char *p = self.u.s.p, *f; (f = jinja_memfind(r, p, self.u.s.n - (size_t)(p - self.u.s.p), a0.u.s.p, a0.u.s.n));
                 p = f + 1) {
                best = f;
                if (m[0] == 'f' || f >= self.u.s.p + self.u.s.n) break;
            }
            if (spend_bytes(r, self.u.s.n)) return -1;
            *out = vint(best ? (int64_t)cast_utf8_count(self.u.s.p, (size_t)(best - self.u.s.p)) : -1);
        }
    } else if (!strcmp(m, "join")) {
        jlist *l;
        if (jinja_iter_list(r, a0, &l)) return -1;
        cast_buf b = {0};
        for (int i = 0; i < l->n; i++) {
            if (l->v[i].k != V_STR) {
                cast_buf_free(&b);
                return jinja_fail(r, "join: sequence item %d: expected str, %s found", i, jinja_type_name(l->v[i]));
            }
            size_t add = (i ? self.u.s.n : 0) + l->v[i].u.s.n;
            if (spend_bytes(r, add) || room(r, b.len + add)) {
                cast_buf_free(&b);
                return -1;
            }
            if (i) cast_buf_append(&b, self.u.s.p, self.u.s.n);
            cast_buf_append(&b, l->v[i].u.s.p, l->v[i].u.s.n);
        }
        *out = jinja_buf_to_str(r, &b);
        cast_buf_free(&b);
    } else if (!strcmp(m, "splitlines")) {
        jval l = vlist(&r->a);
        size_t i = 0;
        while (i < self.u.s.n) {
            const char *nl = memchr(self.u.s.p + i, '\n', self.u.s.n - i);
            size_t end = nl ? (size_t)(nl - self.u.s.p) : self.u.s.n;
            size_t e2 = end > i && self.u.s.p[end - 1] == '\r' ? end - 1 : end;
            if (push(r, l.u.l, vstr(self.u.s.p + i, e2 - i))) return -1;
            i = end + 1;
        }
        *out = l;
    } else if (!strncmp(m, "is", 2)) {
        if (spend_bytes(r, self.u.s.n)) return -1;
        int ok = self.u.s.n > 0;
        for (size_t i = 0; i < self.u.s.n && ok;) {
            int32_t c = cast_utf8_next(self.u.s.p, self.u.s.n, &i);
            const utf8proc_property_t *pr = utf8proc_get_property(c);
            if (!strcmp(m, "isdigit")) ok = pr->category == UTF8PROC_CATEGORY_ND;
            else if (!strcmp(m, "isalpha")) ok = pr->category >= UTF8PROC_CATEGORY_LU && pr->category <= UTF8PROC_CATEGORY_LO;
            else ok = py_space(c);
        }
        *out = vbool(ok);
    } else {
        return jinja_fail(r, "unsupported method str.%s", m);
    }
    return r->over ? -1 : 0;
}

int jinja_call_global(rt *r, const char *name, const args *a, jval *out) {
    if (!strcmp(name, "raise_exception")) {
        jval msg = jinja_to_str(r, jinja_arg(a, 0, NULL));
        return jinja_fail(r, "raise_exception: %.*s", (int)(msg.u.s.n > 600 ? 600 : msg.u.s.n), msg.u.s.p);
    }
    if (!strcmp(name, "range")) {
        int64_t start = 0, stop = 0, step = 1;
        if (a->np == 1) {
            if (want_int(r, a->p[0], "range", &stop)) return -1;
        } else if (a->np == 2 || a->np == 3) {
            if (want_int(r, a->p[0], "range", &start) || want_int(r, a->p[1], "range", &stop)) return -1;
            if (a->np == 3 && want_int(r, a->p[2], "range", &step)) return -1;
        } else return jinja_fail(r, "range expects 1 to 3 arguments");
        if (step == 0) return jinja_fail(r, "range() arg 3 must not be zero");
        double count = ((double)stop - (double)start) / (double)step; /* doubles: no overflow */
        if (count > (double)MAX_RANGE) return jinja_fail(r, "range too large");
        jval l = vlist(&r->a);
        for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
            if (push(r, l.u.l, vint(i))) return -1;
            if (__builtin_add_overflow(i, step, &i)) break;
        }
        *out = l;
        return 0;
    }
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        jval d = vdict(&r->a);
        d.u.d->ns = name[0] == 'n';
        if (a->np >= 1 && a->p[0].k == V_DICT)
            for (int i = 0; i < a->p[0].u.d->n; i++) jinja_dict_set(r, d.u.d, a->p[0].u.d->keys[i], a->p[0].u.d->vals[i]);
        for (int i = 0; i < a->nk; i++) jinja_dict_set_s(r, d.u.d, a->kn[i], a->kv[i]);
        *out = d;
        return r->over ? -1 : 0;
    }
    if (!strcmp(name, "strftime_now")) {
        jval f = jinja_arg(a, 0, NULL);
        if (want_str(r, f, "strftime_now")) return -1;
        char *fmt = jinja_strndup(&r->a, f.u.s.p, f.u.s.n);
        char buf[256];
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        size_t n = strftime(buf, sizeof buf, fmt, &tmv);
        *out = vstr_copy(&r->a, buf, n);
        return 0;
    }
    return jinja_fail(r, "'%s' is undefined", name);
}

/* Jinja values: the arena they live in, constructors of lists and dicts,
 * Python equality and truthiness, and str() / repr() as Python prints them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_internal.h"

/* ------------------------------------------------------------------ arena */

void *jinja_alloc(arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->used + n > a->head->cap) {
        size_t cap = n > 65536 ? n : 65536;
        ablock *b = cast_xmalloc(sizeof(ablock) + cap);
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

void jinja_arena_free(arena *a) {
    for (ablock *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}

char *jinja_strndup(arena *a, const char *s, size_t n) {
    char *p = jinja_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* Grows an arena array of `size`-byte items to hold at least n + 1. */
void *jinja_grow(arena *a, void *v, int n, int *cap, size_t size) {
    if (n < *cap) return v;
    int nc = *cap ? *cap * 2 : 8;
    void *nv = jinja_alloc(a, size * (size_t)nc);
    if (n) memcpy(nv, v, size * (size_t)n);
    *cap = nc;
    return nv;
}

/* ----------------------------------------------------------------- values */

int jinja_dict_find(const jdict *d, jval key) {
    for (int i = 0; i < d->n; i++)
        if (jinja_eq(d->keys[i], key)) return i;
    return -1;
}
int jinja_dict_find_s(const jdict *d, const char *key) {
    size_t n = strlen(key);
    for (int i = 0; i < d->n; i++)
        if (d->keys[i].k == V_STR && d->keys[i].u.s.n == n && memcmp(d->keys[i].u.s.p, key, n) == 0) return i;
    return -1;
}
void jinja_dict_set(arena *a, jdict *d, jval key, jval val) {
    int i = jinja_dict_find(d, key);
    if (i >= 0) {
        d->vals[i] = val;
        return;
    }
    int cap = d->cap;
    d->keys = jinja_grow(a, d->keys, d->n, &cap, sizeof(jval));
    cap = d->cap;
    d->vals = jinja_grow(a, d->vals, d->n, &cap, sizeof(jval));
    d->cap = cap;
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
}
void jinja_dict_set_s(arena *a, jdict *d, const char *key, jval val) { jinja_dict_set(a, d, vstr(key, strlen(key)), val); }

int jinja_eq(jval a, jval b) {
    if (is_num(a) && is_num(b)) {
        if (a.k != V_FLOAT && b.k != V_FLOAT) return num_i(a) == num_i(b);
        return num_f(a) == num_f(b);
    }
    if (a.k != b.k) return 0;
    switch (a.k) {
    case V_UNDEF:
    case V_NONE: return 1;
    case V_STR: return a.u.s.n == b.u.s.n && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
    case V_LIST:
        if (a.u.l->n != b.u.l->n) return 0;
        for (int i = 0; i < a.u.l->n; i++)
            if (!jinja_eq(a.u.l->v[i], b.u.l->v[i])) return 0;
        return 1;
    case V_DICT:
        if (a.u.d->n != b.u.d->n) return 0;
        for (int i = 0; i < a.u.d->n; i++) {
            int j = jinja_dict_find(b.u.d, a.u.d->keys[i]);
            if (j < 0 || !jinja_eq(a.u.d->vals[i], b.u.d->vals[j])) return 0;
        }
        return 1;
    case V_FUNC: return a.u.fn == b.u.fn;
    default: return 0;
    }
}

int jinja_truthy(jval v) {
    switch (v.k) {
    case V_UNDEF:
    case V_NONE: return 0;
    case V_BOOL: return v.u.b;
    case V_INT: return v.u.i != 0;
    case V_FLOAT: return v.u.f != 0.0;
    case V_STR: return v.u.s.n > 0;
    case V_LIST: return v.u.l->n > 0;
    case V_DICT: return v.u.d->n > 0;
    default: return 1;
    }
}

const char *jinja_type_name(jval v) {
    static const char *names[] = {"undefined", "NoneType", "bool", "int", "float", "str", "list", "dict", "function"};
    if (v.k == V_DICT && v.u.d->ns) return "Namespace";
    return names[v.k];
}

/* ------------------------------------------------------ string conversion */

void jinja_fmt_float(double f, cast_buf *b) {
    if (isnan(f)) {
        cast_buf_puts(b, "nan");
        return;
    }
    if (isinf(f)) {
        cast_buf_puts(b, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        cast_buf_puts(b, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    /* Python repr: shortest round-trip digits; exponent form outside [1e-4, 1e16) */
    char tmp[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    char *e = strchr(tmp, 'e');
    int exp10 = atoi(e + 1);
    char digits[32];
    int nd = 0;
    int neg = tmp[0] == '-';
    for (char *p = tmp + neg; p < e; p++)
        if (*p != '.') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (neg) cast_buf_putc(b, '-');
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            cast_buf_puts(b, "0.");
            for (int i = -1; i > exp10; i--) cast_buf_putc(b, '0');
            cast_buf_append(b, digits, (size_t)nd);
        } else {
            for (int i = 0; i <= exp10; i++) cast_buf_putc(b, i < nd ? digits[i] : '0');
            cast_buf_putc(b, '.');
            if (nd > exp10 + 1) cast_buf_append(b, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
            else cast_buf_putc(b, '0');
        }
    } else {
        cast_buf_putc(b, digits[0]);
        if (nd > 1) {
            cast_buf_putc(b, '.');
            cast_buf_append(b, digits + 1, (size_t)(nd - 1));
        }
        cast_buf_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
}

static void repr_val(jval v, cast_buf *b);

static void repr_str(const char *s, size_t n, cast_buf *b) {
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    cast_buf_putc(b, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') cast_buf_puts(b, "\\\\");
        else if (c == (unsigned char)q) {
            cast_buf_putc(b, '\\');
            cast_buf_putc(b, (char)c);
        } else if (c == '\n') cast_buf_puts(b, "\\n");
        else if (c == '\r') cast_buf_puts(b, "\\r");
        else if (c == '\t') cast_buf_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7f) cast_buf_printf(b, "\\x%02x", c);
        else cast_buf_putc(b, (char)c);
    }
    cast_buf_putc(b, q);
}

/* str(v), as Python prints it. */
void jinja_str_val(jval v, cast_buf *b) {
    switch (v.k) {
    case V_UNDEF: break;
    case V_NONE: cast_buf_puts(b, "None"); break;
    case V_BOOL: cast_buf_puts(b, v.u.b ? "True" : "False"); break;
    case V_INT: cast_buf_printf(b, "%lld", (long long)v.u.i); break;
    case V_FLOAT: jinja_fmt_float(v.u.f, b); break;
    case V_STR: cast_buf_append(b, v.u.s.p, v.u.s.n); break;
    default: repr_val(v, b);
    }
}

static void repr_val(jval v, cast_buf *b) {
    switch (v.k) {
    case V_STR: repr_str(v.u.s.p, v.u.s.n, b); break;
    case V_UNDEF: break;
    case V_LIST:
        cast_buf_putc(b, v.u.l->tuple ? '(' : '[');
        for (int i = 0; i < v.u.l->n; i++) {
            if (i) cast_buf_puts(b, ", ");
            repr_val(v.u.l->v[i], b);
        }
        if (v.u.l->tuple && v.u.l->n == 1) cast_buf_putc(b, ',');
        cast_buf_putc(b, v.u.l->tuple ? ')' : ']');
        break;
    case V_DICT:
        if (v.u.d->ns) cast_buf_puts(b, "<Namespace ");
        cast_buf_putc(b, '{');
        for (int i = 0; i < v.u.d->n; i++) {
            if (i) cast_buf_puts(b, ", ");
            repr_val(v.u.d->keys[i], b);
            cast_buf_puts(b, ": ");
            repr_val(v.u.d->vals[i], b);
        }
        cast_buf_putc(b, '}');
        if (v.u.d->ns) cast_buf_putc(b, '>');
        break;
    case V_FUNC: cast_buf_printf(b, "<function %s>", v.u.fn->name ? v.u.fn->name : "?"); break;
    default: jinja_str_val(v, b);
    }
}

const char *jinja_memfind(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0) return h;
    if (nn > hn) return NULL;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == nd[0] && memcmp(h + i, nd, nn) == 0) return h + i;
    return NULL;
}

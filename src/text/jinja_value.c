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
        a->bytes += cap;
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
    a->bytes = 0;
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

/* Index of key, or -1 (also when over a limit). */
static int dict_find_at(rt *r, const jdict *d, jval key, int depth) {
    for (int i = 0; i < d->n && !r->over; i++)
        if (jinja_eq_at(r, d->keys[i], key, depth)) return i;
    return -1;
}
int jinja_dict_find(rt *r, const jdict *d, jval key) { return dict_find_at(r, d, key, 0); }
int jinja_dict_find_s(const jdict *d, const char *key) {
    size_t n = strlen(key);
    for (int i = 0; i < d->n; i++)
        if (d->keys[i].k == V_STR && d->keys[i].u.s.n == n && memcmp(d->keys[i].u.s.p, key, n) == 0) return i;
    return -1;
}
void jinja_dict_set(rt *r, jdict *d, jval key, jval val) {
    int i = jinja_dict_find(r, d, key);
    if (i >= 0) {
        d->vals[i] = val;
        return;
    }
    if (r->over) return;
    int cap = d->cap;
    d->keys = jinja_grow(&r->a, d->keys, d->n, &cap, sizeof(jval));
    cap = d->cap;
    d->vals = jinja_grow(&r->a, d->vals, d->n, &cap, sizeof(jval));
    d->cap = cap;
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
}
void jinja_dict_set_s(rt *r, jdict *d, const char *key, jval val) { jinja_dict_set(r, d, vstr(key, strlen(key)), val); }

/* Python ==. Shared or self-containing values make the walk long or
 * endless: it is charged as work and bounded in depth (0 once over). */
int jinja_eq_at(rt *r, jval a, jval b, int depth) {
    if (spend(r, 1)) return 0;
    if (depth > MAX_VALUE_NEST) return jinja_over_limit(r, "value nesting"), 0;
    if (is_num(a) && is_num(b)) {
        if (a.k != V_FLOAT && b.k != V_FLOAT) return num_i(a) == num_i(b);
        return num_f(a) == num_f(b);
    }
    if (a.k != b.k) return 0;
    switch (a.k) {
    case V_UNDEF:
    case V_NONE: return 1;
    case V_STR: return a.u.s.n == b.u.s.n && !spend_bytes(r, a.u.s.n) && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
    case V_LIST:
        if (a.u.l->n != b.u.l->n) return 0;
        for (int i = 0; i < a.u.l->n; i++)
            if (!jinja_eq_at(r, a.u.l->v[i], b.u.l->v[i], depth + 1)) return 0;
        return 1;
    case V_DICT:
        if (a.u.d->n != b.u.d->n) return 0;
        for (int i = 0; i < a.u.d->n; i++) {
            int j = dict_find_at(r, b.u.d, a.u.d->keys[i], depth + 1);
            if (j < 0 || !jinja_eq_at(r, a.u.d->vals[i], b.u.d->vals[j], depth + 1)) return 0;
        }
        return 1;
    case V_FUNC: return a.u.fn == b.u.fn;
    default: return 0;
    }
}

int jinja_eq(rt *r, jval a, jval b) { return jinja_eq_at(r, a, b, 0); }

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

/* The printers below charge work and check memory at every value they
 * visit (b is not in the arena yet), and bound the nesting: a value shared
 * many times, or a namespace holding itself, would print for ever. Printing
 * a value (a number through printf) costs a few units. */
int jinja_visit(rt *r, const cast_buf *b, int depth) {
    if (spend(r, 4) || room(r, b == r->out ? 0 : b->len)) return -1;
    if (depth > MAX_VALUE_NEST) return jinja_over_limit(r, "value nesting");
    return 0;
}

static void repr_at(rt *r, jval v, cast_buf *b, int depth);

static void repr_str(rt *r, const char *s, size_t n, cast_buf *b) {
    if (spend_bytes(r, n)) return;
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
static void str_at(rt *r, jval v, cast_buf *b, int depth) {
    switch (v.k) {
    case V_UNDEF: break;
    case V_NONE: cast_buf_puts(b, "None"); break;
    case V_BOOL: cast_buf_puts(b, v.u.b ? "True" : "False"); break;
    case V_INT: cast_buf_printf(b, "%lld", (long long)v.u.i); break;
    case V_FLOAT: jinja_fmt_float(v.u.f, b); break;
    case V_STR:
        if (!spend_bytes(r, v.u.s.n) && !room(r, b == r->out ? v.u.s.n : b->len + v.u.s.n))
            cast_buf_append(b, v.u.s.p, v.u.s.n);
        break;
    default: repr_at(r, v, b, depth);
    }
}

static void repr_at(rt *r, jval v, cast_buf *b, int depth) {
    if (jinja_visit(r, b, depth)) return;
    switch (v.k) {
    case V_STR: repr_str(r, v.u.s.p, v.u.s.n, b); break;
    case V_UNDEF: break;
    case V_LIST:
        cast_buf_putc(b, v.u.l->tuple ? '(' : '[');
        for (int i = 0; i < v.u.l->n && !r->over; i++) {
            if (i) cast_buf_puts(b, ", ");
            repr_at(r, v.u.l->v[i], b, depth + 1);
        }
        if (v.u.l->tuple && v.u.l->n == 1) cast_buf_putc(b, ',');
        cast_buf_putc(b, v.u.l->tuple ? ')' : ']');
        break;
    case V_DICT:
        if (v.u.d->ns) cast_buf_puts(b, "<Namespace ");
        cast_buf_putc(b, '{');
        for (int i = 0; i < v.u.d->n && !r->over; i++) {
            if (i) cast_buf_puts(b, ", ");
            repr_at(r, v.u.d->keys[i], b, depth + 1);
            cast_buf_puts(b, ": ");
            repr_at(r, v.u.d->vals[i], b, depth + 1);
        }
        cast_buf_putc(b, '}');
        if (v.u.d->ns) cast_buf_putc(b, '>');
        break;
    case V_FUNC: cast_buf_printf(b, "<function %s>", v.u.fn->name ? v.u.fn->name : "?"); break;
    default: str_at(r, v, b, depth);
    }
}

void jinja_str_val(rt *r, jval v, cast_buf *b) { str_at(r, v, b, 0); }

/* First occurrence of nd in h, or NULL (also once over the work limit). */
const char *jinja_memfind(rt *r, const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0) return h;
    if (nn > hn || spend_bytes(r, hn)) return NULL;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == nd[0]) {
            /* each candidate may compare up to nn bytes */
            if (spend_bytes(r, nn)) return NULL;
            if (memcmp(h + i, nd, nn) == 0) return h + i;
        }
    return NULL;
}

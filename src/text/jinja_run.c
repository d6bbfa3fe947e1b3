/* Rendering: scopes, expression evaluation (names, attributes, items,
 * slices, operators, calls) and statements; filters, tests, methods and
 * globals are in jinja_filters.c. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_internal.h"
#include "text/utf8.h"

/* --- errors and scopes */

int jinja_fail(rt *r, const char *fmt, ...) {
    if (r->over) return -1; /* keep the limit's message: later errors follow from it */
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cast_fail(r->err, "%s: chat template line %d: %s", r->what, r->line, msg);
}

int jinja_over_limit(rt *r, const char *what) {
    if (!r->over) jinja_fail(r, "template exceeds its %s limit", what);
    r->over = 1;
    return -1;
}

static frame *new_frame(rt *r, frame *parent) {
    frame *f = jinja_alloc(&r->a, sizeof(frame));
    f->parent = parent;
    return f;
}

static void frame_set(rt *r, frame *f, const char *name, jval v) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->names[i], name) == 0) {
            f->vals[i] = v;
            return;
        }
    int cap = f->cap;
    f->names = jinja_grow(&r->a, f->names, f->n, &cap, sizeof(char *));
    cap = f->cap;
    f->vals = jinja_grow(&r->a, f->vals, f->n, &cap, sizeof(jval));
    f->cap = cap;
    f->names[f->n] = name;
    f->vals[f->n++] = v;
}

static const char *const GLOBALS[] = {"range", "namespace", "raise_exception", "strftime_now", "dict", NULL};

static jval mk_func(rt *r, int kind, const char *name, jval self) {
    jval v = {V_FUNC, {0}};
    v.u.fn = jinja_alloc(&r->a, sizeof(jfunc));
    v.u.fn->kind = kind;
    v.u.fn->name = name;
    v.u.fn->self = self;
    return v;
}

static jval lookup(rt *r, frame *f, const char *name) {
    for (; f; f = f->parent)
        for (int i = f->n - 1; i >= 0; i--)
            if (strcmp(f->names[i], name) == 0) return f->vals[i];
    for (int i = 0; GLOBALS[i]; i++)
        if (strcmp(GLOBALS[i], name) == 0) return mk_func(r, FN_GLOBAL, GLOBALS[i], UNDEF);
    return UNDEF;
}

/* --- strings */

jval jinja_to_str(rt *r, jval v) {
    if (v.k == V_STR) return v;
    cast_buf b = {0};
    jinja_str_val(r, v, &b);
    jval s = vstr_copy(&r->a, b.data ? b.data : "", b.len);
    cast_buf_free(&b);
    return s;
}

jval jinja_buf_to_str(rt *r, cast_buf *b) { return vstr_copy(&r->a, b->data ? b->data : "", b->len); }

/* Byte offsets of every code point boundary: off[0..count], off[count] = n.
 * NULL when over a limit. */
static size_t *u8_offsets(rt *r, const char *s, size_t n, size_t *count) {
    if (spend_bytes(r, n) || room_items(r, n + 1, sizeof(size_t))) return NULL;
    size_t c = cast_utf8_count(s, n);
    size_t *off = jinja_alloc(&r->a, sizeof(size_t) * (c + 1));
    size_t i = 0, k = 0;
    while (i < n) {
        off[k++] = i;
        cast_utf8_next(s, n, &i);
    }
    off[k] = n;
    *count = c;
    return off;
}

/* --- iteration, indexing, slicing */

int jinja_iter_list(rt *r, jval v, jlist **out) {
    switch (v.k) {
    case V_LIST: *out = v.u.l; return 0;
    case V_UNDEF: *out = vlist(&r->a).u.l; return 0;
    case V_DICT: {
        jval l = vlist(&r->a);
        for (int i = 0; i < v.u.d->n; i++)
            if (push(r, l.u.l, v.u.d->keys[i])) return -1;
        *out = l.u.l;
        return 0;
    }
    case V_STR: {
        jval l = vlist(&r->a);
        for (size_t i = 0; i < v.u.s.n;) {
            size_t s = i;
            cast_utf8_next(v.u.s.p, v.u.s.n, &i);
            if (push(r, l.u.l, vstr(v.u.s.p + s, i - s))) return -1;
        }
        *out = l.u.l;
        return 0;
    }
    default: return jinja_fail(r, "'%s' object is not iterable", jinja_type_name(v));
    }
}

jval jinja_get_attr(rt *r, jval obj, const char *name) {
    if (jinja_is_method(obj, name)) return mk_func(r, FN_METHOD, name, obj);
    if (obj.k == V_DICT) {
        if (spend(r, obj.u.d->n)) return UNDEF;
        int i = jinja_dict_find_s(obj.u.d, name);
        return i >= 0 ? obj.u.d->vals[i] : UNDEF;
    }
    return UNDEF;
}

jval jinja_get_item(rt *r, jval obj, jval key) {
    if (obj.k == V_DICT) {
        int i = jinja_dict_find(r, obj.u.d, key);
        if (i >= 0) return obj.u.d->vals[i];
        if (key.k == V_STR && !obj.u.d->ns) {
            char *name = jinja_strndup(&r->a, key.u.s.p, key.u.s.n);
            if (jinja_is_method(obj, name)) return mk_func(r, FN_METHOD, name, obj);
        }
        return UNDEF;
    }
    if ((obj.k == V_LIST || obj.k == V_STR) && (key.k == V_INT || key.k == V_BOOL)) {
        int64_t i = num_i(key);
        if (obj.k == V_LIST) {
            if (i < 0) i += obj.u.l->n;
            return (i >= 0 && i < obj.u.l->n) ? obj.u.l->v[i] : UNDEF;
        }
        size_t count;
        size_t *off = u8_offsets(r, obj.u.s.p, obj.u.s.n, &count);
        if (!off) return UNDEF;
        if (i < 0) i += (int64_t)count;
        if (i < 0 || i >= (int64_t)count) return UNDEF;
        return vstr(obj.u.s.p + off[i], off[i + 1] - off[i]);
    }
    if (obj.k == V_STR && key.k == V_STR) {
        char *name = jinja_strndup(&r->a, key.u.s.p, key.u.s.n);
        return jinja_get_attr(r, obj, name);
    }
    return UNDEF;
}

/* Python slice index normalisation. */
static void slice_indices(int64_t len, jval a, jval b, jval c, int64_t *start, int64_t *stop, int64_t *step) {
    *step = (c.k == V_INT || c.k == V_BOOL) ? num_i(c) : 1;
    /* a step beyond the length selects what length + 1 would */
    if (*step > len + 1) *step = len + 1;
    if (*step < -(len + 1)) *step = -(len + 1);
    int64_t lo = *step < 0 ? -1 : 0, hi = *step < 0 ? len - 1 : len;
    if (a.k == V_INT || a.k == V_BOOL) {
        *start = num_i(a);
        if (*start < 0) *start = *start + len < lo ? lo : *start + len;
        else if (*start > hi) *start = hi;
    } else *start = *step < 0 ? hi : lo;
    if (b.k == V_INT || b.k == V_BOOL) {
        *stop = num_i(b);
        if (*stop < 0) *stop = *stop + len < lo ? lo : *stop + len;
        else if (*stop > hi) *stop = hi;
    } else *stop = *step < 0 ? lo : hi;
}

int jinja_slice(rt *r, jval obj, jval a, jval b, jval c, jval *out) {
    jval parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (parts[i].k != V_UNDEF && parts[i].k != V_NONE && parts[i].k != V_INT && parts[i].k != V_BOOL)
            return jinja_fail(r, "slice indices must be integers");
    if ((c.k == V_INT || c.k == V_BOOL) && num_i(c) == 0) return jinja_fail(r, "slice step cannot be zero");
    int64_t start, stop, step;
    if (obj.k == V_LIST) {
        slice_indices(obj.u.l->n, a, b, c, &start, &stop, &step);
        jval l = vlist(&r->a);
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
            if (push(r, l.u.l, obj.u.l->v[i])) return -1;
        *out = l;
        return 0;
    }
    if (obj.k == V_STR) {
        size_t count;
        size_t *off = u8_offsets(r, obj.u.s.p, obj.u.s.n, &count);
        if (!off) return -1;
        slice_indices((int64_t)count, a, b, c, &start, &stop, &step);
        if (step == 1) {
            *out = start < stop ? vstr(obj.u.s.p + off[start], off[stop] - off[start]) : vstr("", 0);
            return 0;
        }
        cast_buf s = {0};
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
            cast_buf_append(&s, obj.u.s.p + off[i], off[i + 1] - off[i]);
        *out = jinja_buf_to_str(r, &s);
        cast_buf_free(&s);
        return 0;
    }
    if (obj.k == V_UNDEF) {
        *out = UNDEF;
        return 0;
    }
    return jinja_fail(r, "'%s' object is not subscriptable", jinja_type_name(obj));
}

/* --- operators */

/* Python's <, as -1 / 0 / 1 in *out; depth bounds nested lists. */
static int compare_at(rt *r, jval a, jval b, int *out, int depth) {
    if (spend(r, 1)) return -1;
    if (depth > MAX_VALUE_NEST) return jinja_over_limit(r, "value nesting");
    if (is_num(a) && is_num(b)) {
        double x = num_f(a), y = num_f(b);
        if (a.k != V_FLOAT && b.k != V_FLOAT) {
            int64_t i = num_i(a), j = num_i(b);
            *out = i < j ? -1 : i > j;
        } else *out = x < y ? -1 : x > y;
        return 0;
    }
    if (a.k == V_STR && b.k == V_STR) {
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        if (spend_bytes(r, n)) return -1;
        int c = memcmp(a.u.s.p, b.u.s.p, n);
        *out = c ? (c < 0 ? -1 : 1) : (a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n);
        return 0;
    }
    if (a.k == V_LIST && b.k == V_LIST) {
        for (int i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            if (jinja_eq_at(r, a.u.l->v[i], b.u.l->v[i], depth + 1)) continue;
            if (r->over) return -1;
            return compare_at(r, a.u.l->v[i], b.u.l->v[i], out, depth + 1);
        }
        *out = a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
        return 0;
    }
    return jinja_fail(r, "cannot compare %s with %s", jinja_type_name(a), jinja_type_name(b));
}

int jinja_compare(rt *r, jval a, jval b, int *out) { return compare_at(r, a, b, out, 0); }

int jinja_contains(rt *r, jval hay, jval needle, int *out) {
    switch (hay.k) {
    case V_STR:
        if (needle.k != V_STR) return jinja_fail(r, "'in <string>' requires a string, not %s", jinja_type_name(needle));
        *out = jinja_memfind(r, hay.u.s.p, hay.u.s.n, needle.u.s.p, needle.u.s.n) != NULL;
        return r->over ? -1 : 0;
    case V_LIST:
        *out = 0;
        for (int i = 0; i < hay.u.l->n && !*out && !r->over; i++) *out = jinja_eq(r, hay.u.l->v[i], needle);
        return r->over ? -1 : 0;
    case V_DICT: *out = jinja_dict_find(r, hay.u.d, needle) >= 0; return r->over ? -1 : 0;
    case V_UNDEF: *out = 0; return 0;
    default: return jinja_fail(r, "argument of type '%s' is not iterable", jinja_type_name(hay));
    }
}

int jinja_binop(rt *r, int op, jval a, jval b, jval *out) {
    if (op == OP_ADD) {
        if (a.k == V_STR && b.k == V_STR) {
            if (spend_bytes(r, a.u.s.n + b.u.s.n) || room(r, a.u.s.n + b.u.s.n)) return -1;
            char *p = jinja_alloc(&r->a, a.u.s.n + b.u.s.n + 1);
            memcpy(p, a.u.s.p, a.u.s.n);
            memcpy(p + a.u.s.n, b.u.s.p, b.u.s.n);
            *out = vstr(p, a.u.s.n + b.u.s.n);
            return 0;
        }
        if (a.k == V_LIST && b.k == V_LIST) {
            jval l = vlist(&r->a);
            for (int i = 0; i < a.u.l->n; i++)
                if (push(r, l.u.l, a.u.l->v[i])) return -1;
            for (int i = 0; i < b.u.l->n; i++)
                if (push(r, l.u.l, b.u.l->v[i])) return -1;
            *out = l;
            return 0;
        }
    }
    if (op == OP_MUL && ((a.k == V_STR || a.k == V_LIST) && (b.k == V_INT || b.k == V_BOOL))) {
        int64_t times = num_i(b);
        if (times > MAX_RANGE) return jinja_fail(r, "repetition too large");
        if (a.k == V_STR) {
            /* the size is known: refuse it before building it */
            if (times > 0 && (room_items(r, (size_t)times, a.u.s.n) || spend_bytes(r, (size_t)times * a.u.s.n)))
                return -1;
            cast_buf s = {0};
            for (int64_t i = 0; i < times; i++) cast_buf_append(&s, a.u.s.p, a.u.s.n);
            *out = jinja_buf_to_str(r, &s);
            cast_buf_free(&s);
        } else {
            jval l = vlist(&r->a);
            for (int64_t i = 0; i < times; i++)
                for (int k = 0; k < a.u.l->n; k++)
                    if (push(r, l.u.l, a.u.l->v[k])) return -1;
            *out = l;
        }
        return 0;
    }
    if (!is_num(a) || !is_num(b)) {
        static const char *sym[] = {"+", "-", "*", "/", "//", "%", "**"};
        return jinja_fail(r, "unsupported operand types for %s: '%s' and '%s'", sym[op], jinja_type_name(a), jinja_type_name(b));
    }
    int ints = a.k != V_FLOAT && b.k != V_FLOAT;
    double x = num_f(a), y = num_f(b);
    int64_t i = num_i(a), j = num_i(b);
    int64_t k;
    switch (op) {
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
        if (!ints) {
            *out = vfloat(op == OP_ADD ? x + y : op == OP_SUB ? x - y : x * y);
            return 0;
        }
        /* Python integers do not overflow; ours report it */
        if (op == OP_ADD ? __builtin_add_overflow(i, j, &k) : op == OP_SUB ? __builtin_sub_overflow(i, j, &k)
                                                                          : __builtin_mul_overflow(i, j, &k))
            return jinja_fail(r, "integer overflow");
        *out = vint(k);
        return 0;
    case OP_DIV:
        if (y == 0) return jinja_fail(r, "division by zero");
        *out = vfloat(x / y);
        return 0;
    case OP_FDIV:
    case OP_MOD:
        if (ints) {
            if (j == 0) return jinja_fail(r, "integer division or modulo by zero");
            if (i == INT64_MIN && j == -1) return jinja_fail(r, "integer overflow");
            /* floor division and a modulo with the divisor's sign; the
             * remainder is adjusted directly, as i - q * j may overflow */
            int64_t q = i / j, m = i % j;
            if (m != 0 && ((m < 0) != (j < 0))) {
                q--;
                m += j;
            }
            *out = op == OP_FDIV ? vint(q) : vint(m);
        } else {
            if (y == 0) return jinja_fail(r, "float division by zero");
            double q = floor(x / y);
            *out = op == OP_FDIV ? vfloat(q) : vfloat(x - q * y);
        }
        return 0;
    case OP_POW:
        if (ints && j >= 0) {
            int64_t p = 1;
            if (i == 0 || i == 1) p = j == 0 ? 1 : i;
            else if (i == -1) p = j % 2 ? -1 : 1;
            else
                for (int64_t e = 0; e < j; e++)
                    if (__builtin_mul_overflow(p, i, &p)) return jinja_fail(r, "integer overflow");
            *out = vint(p);
        } else *out = vfloat(pow(x, y));
        return 0;
    }
    return jinja_fail(r, "bad operator");
}

/* --- calls */

static int exec_body(rt *r, frame *f, st *const *body, int n);
static int eval(rt *r, frame *f, const ex *e, jval *out);

/* Output goes to tmp until capture_end (macro calls, {% set %} blocks); the
 * output set aside still counts against the memory limit. */
static cast_buf *capture_begin(rt *r, cast_buf *tmp) {
    cast_buf *saved = r->out;
    r->held += saved->len;
    r->out = tmp;
    r->capture++;
    return saved;
}

static void capture_end(rt *r, cast_buf *saved) {
    r->capture--;
    r->out = saved;
    r->held -= saved->len;
}

static int call_macro(rt *r, const st *m, const args *a, jval *out) {
    if (r->depth >= MAX_DEPTH) return jinja_fail(r, "macro recursion too deep");
    frame *f = new_frame(r, r->root);
    if (a->np > m->nnames) return jinja_fail(r, "macro '%s' takes %d arguments", m->attr, m->nnames);
    for (int i = 0; i < m->nnames; i++) {
        jval v = jinja_arg(a, i, m->names[i]);
        frame_set(r, f, m->names[i], v);
    }
    /* defaults are evaluated in the macro's own scope, after earlier params */
    for (int i = 0; i < m->nnames; i++) {
        jval v = jinja_arg(a, i, m->names[i]);
        if (v.k == V_UNDEF && m->defaults && m->defaults[i]) {
            if (eval(r, f, m->defaults[i], &v)) return -1;
            frame_set(r, f, m->names[i], v);
        }
    }
    cast_buf tmp = {0}, *saved = capture_begin(r, &tmp);
    r->depth++;
    int rc = exec_body(r, f, m->body, m->nbody);
    r->depth--;
    capture_end(r, saved);
    if (rc < 0) {
        cast_buf_free(&tmp);
        return -1;
    }
    *out = jinja_buf_to_str(r, &tmp);
    cast_buf_free(&tmp);
    return 0;
}

static int call_value(rt *r, jval f, const args *a, jval *out) {
    if (f.k != V_FUNC) return jinja_fail(r, "'%s' object is not callable", jinja_type_name(f));
    switch (f.u.fn->kind) {
    case FN_GLOBAL: return jinja_call_global(r, f.u.fn->name, a, out);
    case FN_METHOD: return jinja_call_method(r, f.u.fn->self, f.u.fn->name, a, out);
    default: return call_macro(r, f.u.fn->macro, a, out);
    }
}

/* --- expression evaluation */

static int eval_args(rt *r, frame *f, const ex *e, args *a) {
    memset(a, 0, sizeof *a);
    a->np = e->nargs;
    a->nk = e->nkw;
    a->p = jinja_alloc(&r->a, sizeof(jval) * (size_t)(e->nargs + 1));
    a->kv = jinja_alloc(&r->a, sizeof(jval) * (size_t)(e->nkw + 1));
    a->kn = e->kwn;
    for (int i = 0; i < e->nargs; i++)
        if (eval(r, f, e->args[i], &a->p[i])) return -1;
    for (int i = 0; i < e->nkw; i++)
        if (eval(r, f, e->kwv[i], &a->kv[i])) return -1;
    return 0;
}

/* Jinja's default Undefined prints as "" but fails on attribute access. */
static int undefined_access(rt *r, const ex *obj, const char *attr) {
    r->line = obj->line;
    if (obj->k == EX_NAME) return jinja_fail(r, "'%s' is undefined", obj->name);
    if (obj->k == EX_ATTR) return jinja_fail(r, "'%s' is undefined (reading '%s')", obj->name, attr ? attr : "[]");
    return jinja_fail(r, "undefined value has no attribute '%s'", attr ? attr : "[]");
}

static int eval_in(rt *r, frame *f, const ex *e, jval *out) {
    jval a, b;
    int prev_line = r->line;
    r->line = e->line;
    int rc = 0;
    switch (e->k) {
    case EX_LIT: *out = e->lit; break;
    case EX_NAME: *out = lookup(r, f, e->name); break;
    case EX_LIST:
    case EX_TUPLE: {
        jval l = vlist(&r->a);
        l.u.l->tuple = e->k == EX_TUPLE;
        for (int i = 0; i < e->nargs; i++) {
            if (eval(r, f, e->args[i], &a) || push(r, l.u.l, a)) return -1;
        }
        *out = l;
        break;
    }
    case EX_DICT: {
        jval d = vdict(&r->a);
        for (int i = 0; i < e->nargs; i++) {
            if (eval(r, f, e->args[i], &a) || eval(r, f, e->kwv[i], &b)) return -1;
            jinja_dict_set(r, d.u.d, a, b);
        }
        *out = d;
        break;
    }
    case EX_ATTR:
        if (eval(r, f, e->a, &a)) return -1;
        if (a.k == V_UNDEF) return undefined_access(r, e->a, e->name);
        *out = jinja_get_attr(r, a, e->name);
        break;
    case EX_ITEM:
        if (eval(r, f, e->a, &a) || eval(r, f, e->b, &b)) return -1;
        if (a.k == V_UNDEF) return undefined_access(r, e->a, NULL);
        *out = jinja_get_item(r, a, b);
        break;
    case EX_SLICE: {
        jval p[3] = {UNDEF, UNDEF, UNDEF};
        if (eval(r, f, e->a, &a)) return -1;
        for (int i = 0; i < 3; i++)
            if (e->args[i] && eval(r, f, e->args[i], &p[i])) return -1;
        rc = jinja_slice(r, a, p[0], p[1], p[2], out);
        break;
    }
    case EX_CALL: {
        args ar;
        if (eval(r, f, e->a, &a) || eval_args(r, f, e, &ar)) return -1;
        r->line = e->line;
        if (a.k == V_UNDEF && e->a->k == EX_NAME) return jinja_fail(r, "'%s' is undefined", e->a->name);
        rc = call_value(r, a, &ar, out);
        break;
    }
    case EX_FILTER: {
        args ar;
        if (eval(r, f, e->a, &a) || eval_args(r, f, e, &ar)) return -1;
        r->line = e->line;
        rc = jinja_filter(r, e->name, a, &ar, out);
        break;
    }
    case EX_TEST: {
        args ar;
        int t;
        if (eval(r, f, e->a, &a) || eval_args(r, f, e, &ar)) return -1;
        r->line = e->line;
        if (jinja_test(r, e->name, a, &ar, &t)) return -1;
        *out = vbool(e->neg ? !t : t);
        break;
    }
    case EX_NOT:
        if (eval(r, f, e->a, &a)) return -1;
        *out = vbool(!jinja_truthy(a));
        break;
    case EX_NEG:
    case EX_POS:
        if (eval(r, f, e->a, &a)) return -1;
        if (!is_num(a)) return jinja_fail(r, "bad operand type for unary %c: '%s'", e->k == EX_NEG ? '-' : '+', jinja_type_name(a));
        if (e->k == EX_POS) *out = a.k == V_BOOL ? vint(a.u.b) : a;
        else if (a.k == V_INT && a.u.i == INT64_MIN) return jinja_fail(r, "integer overflow");
        else *out = a.k == V_FLOAT ? vfloat(-a.u.f) : vint(-num_i(a));
        break;
    case EX_AND:
    case EX_OR:
        if (eval(r, f, e->a, &a)) return -1;
        if (jinja_truthy(a) == (e->k == EX_OR)) *out = a;
        else rc = eval(r, f, e->b, out);
        break;
    case EX_BIN:
        if (eval(r, f, e->a, &a) || eval(r, f, e->b, &b)) return -1;
        r->line = e->line;
        if (a.k == V_UNDEF || b.k == V_UNDEF) {
            const char *nm = a.k == V_UNDEF ? (e->a->k == EX_NAME ? e->a->name : NULL) : (e->b->k == EX_NAME ? e->b->name : NULL);
            if (nm) return jinja_fail(r, "'%s' is undefined", nm);
            return jinja_fail(r, "an operand is undefined");
        }
        rc = jinja_binop(r, e->op, a, b, out);
        break;
    case EX_CONCAT: {
        if (eval(r, f, e->a, &a) || eval(r, f, e->b, &b)) return -1;
        cast_buf s = {0};
        jinja_str_val(r, a, &s);
        jinja_str_val(r, b, &s);
        *out = jinja_buf_to_str(r, &s);
        cast_buf_free(&s);
        break;
    }
    case EX_CMP: {
        if (eval(r, f, e->a, &a) || eval(r, f, e->b, &b)) return -1;
        r->line = e->line;
        int c;
        switch (e->op) {
        case OP_EQ: *out = vbool(jinja_eq(r, a, b)); break;
        case OP_NE: *out = vbool(!jinja_eq(r, a, b)); break;
        case OP_IN:
        case OP_NOTIN:
            if (jinja_contains(r, b, a, &c)) return -1;
            *out = vbool(e->op == OP_IN ? c : !c);
            break;
        default:
            if (jinja_compare(r, a, b, &c)) return -1;
            *out = vbool(e->op == OP_LT ? c < 0 : e->op == OP_LE ? c <= 0 : e->op == OP_GT ? c > 0 : c >= 0);
        }
        break;
    }
    case EX_COND:
        if (eval(r, f, e->b, &a)) return -1;
        if (jinja_truthy(a)) rc = eval(r, f, e->a, out);
        else if (e->c) rc = eval(r, f, e->c, out);
        else *out = UNDEF;
        break;
    default: return jinja_fail(r, "internal: bad expression");
    }
    if (rc == 0) r->line = prev_line;
    return rc;
}

/* Every evaluation counts as work and as nesting (the C stack); a value
 * built past a limit is never used: the limit fails the render. */
static int eval(rt *r, frame *f, const ex *e, jval *out) {
    if (spend(r, 1)) return -1;
    if (r->nest >= MAX_NEST) return jinja_over_limit(r, "nesting");
    r->nest++;
    int rc = eval_in(r, f, e, out);
    r->nest--;
    return rc || r->over ? -1 : 0;
}

/* --- statements: 0 ok, -1 error, 1 break, 2 continue */

static int bind_targets(rt *r, frame *f, const st *s, jval v) {
    if (s->nnames == 1) {
        frame_set(r, f, s->names[0], v);
        return 0;
    }
    jlist *l;
    if (v.k != V_LIST) {
        if (jinja_iter_list(r, v, &l)) return -1;
    } else l = v.u.l;
    if (l->n != s->nnames)
        return jinja_fail(r, "cannot unpack %d values into %d names", l->n, s->nnames);
    for (int i = 0; i < s->nnames; i++) frame_set(r, f, s->names[i], l->v[i]);
    return 0;
}

static int exec_for(rt *r, frame *f, const st *s) {
    jval seq;
    if (eval(r, f, s->e, &seq)) return -1;
    r->line = s->line;
    jlist *items;
    if (jinja_iter_list(r, seq, &items)) return -1;
    if (s->cond) {
        jval kept = vlist(&r->a);
        for (int i = 0; i < items->n; i++) {
            frame *tf = new_frame(r, f);
            jval c;
            if (bind_targets(r, tf, s, items->v[i]) || eval(r, tf, s->cond, &c)) return -1;
            if (jinja_truthy(c) && push(r, kept.u.l, items->v[i])) return -1;
        }
        items = kept.u.l;
    }
    if (items->n == 0) return exec_body(r, f, s->orelse, s->norelse);
    int n = items->n;
    for (int i = 0; i < n; i++) {
        /* an empty body still costs its loop variables: checked each round */
        if (spend(r, 1) || room(r, 0)) return -1;
        frame *lf = new_frame(r, f);
        if (bind_targets(r, lf, s, items->v[i])) return -1;
        jval loop = vdict(&r->a);
        jdict *d = loop.u.d;
        jinja_dict_set_s(r, d, "index", vint(i + 1));
        jinja_dict_set_s(r, d, "index0", vint(i));
        jinja_dict_set_s(r, d, "revindex", vint(n - i));
        jinja_dict_set_s(r, d, "revindex0", vint(n - i - 1));
        jinja_dict_set_s(r, d, "first", vbool(i == 0));
        jinja_dict_set_s(r, d, "last", vbool(i == n - 1));
        jinja_dict_set_s(r, d, "length", vint(n));
        jinja_dict_set_s(r, d, "depth", vint(1));
        jinja_dict_set_s(r, d, "depth0", vint(0));
        jinja_dict_set_s(r, d, "previtem", i > 0 ? items->v[i - 1] : UNDEF);
        jinja_dict_set_s(r, d, "nextitem", i + 1 < n ? items->v[i + 1] : UNDEF);
        frame_set(r, lf, "loop", loop);
        int rc = exec_body(r, lf, s->body, s->nbody);
        if (rc < 0) return -1;
        if (rc == 1) break;
    }
    return 0;
}

static int exec_st_in(rt *r, frame *f, const st *s) {
    r->line = s->line;
    jval v;
    switch (s->k) {
    case ST_TEXT: cast_buf_append(r->out, s->text, s->n); return 0;
    case ST_OUT:
        if (eval(r, f, s->e, &v)) return -1;
        jinja_str_val(r, v, r->out);
        return r->over ? -1 : 0;
    case ST_IF:
        if (eval(r, f, s->e, &v)) return -1;
        return jinja_truthy(v) ? exec_body(r, f, s->body, s->nbody) : exec_body(r, f, s->orelse, s->norelse);
    case ST_FOR: return exec_for(r, f, s);
    case ST_SET:
        if (eval(r, f, s->e, &v)) return -1;
        r->line = s->line;
        if (s->attr) {
            jval ns = lookup(r, f, s->names[0]);
            if (ns.k != V_DICT || !ns.u.d->ns) return jinja_fail(r, "cannot assign attribute on non-namespace object");
            jinja_dict_set_s(r, ns.u.d, s->attr, v);
            return r->over ? -1 : 0;
        }
        return bind_targets(r, f, s, v);
    case ST_SETBLOCK: {
        cast_buf tmp = {0}, *saved = capture_begin(r, &tmp);
        int rc = exec_body(r, f, s->body, s->nbody);
        capture_end(r, saved);
        if (rc == 0) frame_set(r, f, s->names[0], jinja_buf_to_str(r, &tmp));
        cast_buf_free(&tmp);
        return rc;
    }
    case ST_MACRO: {
        jval m = mk_func(r, FN_MACRO, s->attr, UNDEF);
        m.u.fn->macro = s;
        frame_set(r, f, s->attr, m);
        return 0;
    }
    case ST_BREAK: return 1;
    case ST_CONTINUE: return 2;
    case ST_GEN: {
        size_t start = r->out->len;
        int rc = exec_body(r, f, s->body, s->nbody);
        if (rc == 0 && r->capture == 0) {
            r->spans = jinja_grow(&r->a, r->spans, r->nspans, &r->capspans, sizeof(cast_jinja_span));
            r->spans[r->nspans].start = start;
            r->spans[r->nspans].end = r->out->len;
            r->nspans++;
        }
        return rc;
    }
    }
    return jinja_fail(r, "internal: bad statement");
}

static int exec_st(rt *r, frame *f, const st *s) {
    if (spend(r, 1) || room(r, 0)) return -1;
    if (r->nest >= MAX_NEST) return jinja_over_limit(r, "nesting");
    r->nest++;
    int rc = exec_st_in(r, f, s);
    r->nest--;
    return r->over ? -1 : rc;
}

static int exec_body(rt *r, frame *f, st *const *body, int n) {
    for (int i = 0; i < n; i++) {
        int rc = exec_st(r, f, body[i]);
        if (rc) return rc;
    }
    return 0;
}

static jval from_json(rt *r, const cast_json *j) {
    if (cast_json_is_string(j)) {
        const char *s = cast_json_string(j);
        return vstr(s, strlen(s));
    }
    if (cast_json_is_bool(j)) return vbool(cast_json_is_true(j));
    if (cast_json_is_number(j)) {
        double d = cast_json_number(j);
        if (d == floor(d) && fabs(d) < 9.0e15) return vint((int64_t)d);
        return vfloat(d);
    }
    if (cast_json_is_array(j)) {
        jval l = vlist(&r->a);
        for (cast_json *c = cast_json_first(j); c; c = cast_json_next(c))
            if (push(r, l.u.l, from_json(r, c))) break;
        return l;
    }
    if (cast_json_is_object(j)) {
        jval d = vdict(&r->a);
        for (cast_json *c = cast_json_first(j); c; c = cast_json_next(c)) {
            const char *k = cast_json_key(c);
            jinja_dict_set(r, d.u.d, vstr(k, strlen(k)), from_json(r, c));
        }
        return d;
    }
    return NONE;
}

int cast_jinja_render(const cast_jinja *t, const cast_json *vars, cast_buf *out, cast_jinja_span **spans,
                      int *n_spans, cast_err *err) {
    if (spans) *spans = NULL;
    if (n_spans) *n_spans = 0;
    rt r = {.out = out, .err = err, .what = t->what, .work = MAX_WORK};
    r.root = new_frame(&r, NULL);
    for (cast_json *c = cast_json_first(vars); c && cast_json_is_object(vars); c = cast_json_next(c))
        frame_set(&r, r.root, cast_json_key(c), from_json(&r, c));
    size_t start = out->len;
    int rc = exec_body(&r, r.root, t->body, t->nbody);
    if (rc > 0) rc = jinja_fail(&r, "break or continue outside a loop");
    if (rc == 0 && spans && r.nspans) {
        *spans = cast_xmalloc(sizeof(cast_jinja_span) * (size_t)r.nspans);
        for (int i = 0; i < r.nspans; i++) (*spans)[i] = r.spans[i];
        *n_spans = r.nspans;
    }
    if (rc) {
        out->len = start;
        if (out->data) out->data[start] = 0;
    }
    jinja_arena_free(&r.a);
    return rc ? -1 : 0;
}


/* Internals of the Jinja2 interpreter (see jinja.h), shared by jinja_value.c
 * (arena, values), jinja_lex.c, jinja_parse.c (AST, parser), jinja_run.c
 * (evaluation) and jinja_filters.c (filters, tests, methods, globals).
 * Semantics follow Jinja2 3.x running inside transformers: Python values and
 * truthiness, trim_blocks + lstrip_blocks, a single trailing newline of the
 * source dropped, \r\n normalised to \n in the source. Values live in a
 * per-render arena, so a render frees everything at once; the parsed
 * template lives in its own arena. Not part of the API. */
#ifndef CAST_TEXT_JINJA_INTERNAL_H
#define CAST_TEXT_JINJA_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "text/jinja.h"

/* ------------------------------------------------------------------ arena */

typedef struct ablock {
    struct ablock *next;
    size_t used, cap;
    max_align_t data[];
} ablock;

typedef struct arena {
    ablock *head;
    size_t bytes; /* all blocks together: what the memory limit counts */
} arena;

/* Zeroed memory that lives until jinja_arena_free. */
void *jinja_alloc(arena *a, size_t n);
void jinja_arena_free(arena *a);
char *jinja_strndup(arena *a, const char *s, size_t n);
/* Grows an arena array of `size`-byte items to hold at least n + 1. */
void *jinja_grow(arena *a, void *v, int n, int *cap, size_t size);

/* ----------------------------------------------------------------- limits */

/* A template is a program from an untrusted file: these bounds make every
 * render finish, in bounded memory, whatever the template does. Real chat
 * templates stay far below each. Going over one is the one-line error
 * "template exceeds its <what> limit", and the render unwinds.
 * - work: statements run, expressions evaluated, items built, visited or
 *   compared, and bytes copied or scanned (4 to a unit); a real template
 *   spends about a thousand units on a short conversation;
 * - memory: the render's values, its output and captured output ({% set %}
 *   blocks, macro calls) together (bytes copied are work as well, so the
 *   work limit often stops a growing string first);
 * - nesting: of statements and expressions being evaluated (the C stack), of
 *   values walked to print or compare them (self-containing namespaces),
 *   and in the parser, of brackets, operators and blocks in the source;
 * - macro calls nested, and the items of one range() or repetition. */
#define MAX_WORK 10000000L
#define MAX_MEMORY ((size_t)256 << 20)
#define MAX_NEST 400
#define MAX_VALUE_NEST 100
#define MAX_PARSE_NEST 200
#define MAX_DEPTH 64
#define MAX_RANGE 10000000LL

/* ----------------------------------------------------------------- values */

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_FUNC } vkind;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfunc jfunc;

typedef struct jval {
    vkind k;
    union {
        int b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        jlist *l;
        jdict *d;
        jfunc *fn;
    } u;
} jval;

struct jlist {
    int n, cap;
    jval *v;
    int tuple; /* prints as (a, b) */
};

struct jdict {
    int n, cap;
    jval *keys, *vals;
    int ns; /* a namespace(): attributes assignable with {% set ns.x = ... %} */
};

struct st;
enum { FN_GLOBAL, FN_METHOD, FN_MACRO };
struct jfunc {
    int kind;
    const char *name;
    jval self;
    const struct st *macro;
};

static const jval UNDEF = {V_UNDEF, {0}};
static const jval NONE = {V_NONE, {0}};

static inline jval vbool(int b) {
    jval v = {V_BOOL, {0}};
    v.u.b = b != 0;
    return v;
}
static inline jval vint(int64_t i) {
    jval v = {V_INT, {0}};
    v.u.i = i;
    return v;
}
static inline jval vfloat(double f) {
    jval v = {V_FLOAT, {0}};
    v.u.f = f;
    return v;
}
/* A string that points at storage outliving the render (no copy). */
static inline jval vstr(const char *p, size_t n) {
    jval v = {V_STR, {0}};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static inline jval vstr_copy(arena *a, const char *p, size_t n) { return vstr(jinja_strndup(a, p, n), n); }

static inline jval vlist(arena *a) {
    jval v = {V_LIST, {0}};
    v.u.l = jinja_alloc(a, sizeof(jlist));
    return v;
}
static inline jval vdict(arena *a) {
    jval v = {V_DICT, {0}};
    v.u.d = jinja_alloc(a, sizeof(jdict));
    return v;
}

static inline int is_num(jval v) { return v.k == V_BOOL || v.k == V_INT || v.k == V_FLOAT; }
static inline double num_f(jval v) { return v.k == V_FLOAT ? v.u.f : v.k == V_INT ? (double)v.u.i : (double)v.u.b; }
static inline int64_t num_i(jval v) {
    if (v.k == V_FLOAT) return fabs(v.u.f) < 9.2e18 ? (int64_t)v.u.f : 0; /* no UB on huge values */
    return v.k == V_INT ? v.u.i : v.k == V_BOOL ? v.u.b : 0;
}

/* Dicts keep insertion order; lookups are linear (templates' dicts are small). */
struct rt;
/* Index of key, or -1 (also when over a limit). */
int jinja_dict_find(struct rt *r, const jdict *d, jval key);
int jinja_dict_find_s(const jdict *d, const char *key);
void jinja_dict_set(struct rt *r, jdict *d, jval key, jval val);
void jinja_dict_set_s(struct rt *r, jdict *d, const char *key, jval val);

/* Python ==, charged as work; depth bounds the nesting walked (0 once over). */
int jinja_eq_at(struct rt *r, jval a, jval b, int depth);
int jinja_eq(struct rt *r, jval a, jval b);
int jinja_truthy(jval v);
const char *jinja_type_name(jval v); /* Python's, for messages */

/* Python's repr of a float (shortest round trip). */
void jinja_fmt_float(double f, cast_buf *b);
/* str(v), as Python prints it (charged as work, bounded in memory and nesting). */
void jinja_str_val(struct rt *r, jval v, cast_buf *b);
/* First occurrence of nd in h, or NULL (an empty nd is found at h; NULL
 * also once over the work limit). */
const char *jinja_memfind(struct rt *r, const char *h, size_t hn, const char *nd, size_t nn);

/* ----------------------------------------------------- tokens (jinja_lex.c) */

enum { TK_EOF, TK_TEXT, TK_VBEGIN, TK_VEND, TK_BBEGIN, TK_BEND, TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP };

typedef struct tok {
    int t, line;
    const char *p; /* TEXT, NAME, OP: into the source; STR: decoded, arena */
    size_t n;
    int64_t i;
    double f;
} tok;

/* Tokens of src[0..n) (line endings already normalised), ending with TK_EOF;
 * messages name the template `what`. */
int jinja_lex(arena *a, const char *src, size_t n, const char *what, cast_err *err, tok **toks, int *n_toks);

/* ------------------------------------------------------ AST (jinja_parse.c) */

enum {
    EX_LIT, EX_NAME, EX_LIST, EX_TUPLE, EX_DICT, EX_ATTR, EX_ITEM, EX_SLICE, EX_CALL, EX_FILTER, EX_TEST,
    EX_NOT, EX_NEG, EX_POS, EX_AND, EX_OR, EX_BIN, EX_CMP, EX_COND, EX_CONCAT
};
enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW, OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

typedef struct ex {
    int k, line, op, neg;
    jval lit;
    const char *name;
    struct ex *a, *b, *c;
    struct ex **args; /* call/filter/test args; list/tuple items; dict keys */
    int nargs;
    const char **kwn;
    struct ex **kwv; /* keyword values; dict values */
    int nkw;
} ex;

enum { ST_TEXT, ST_OUT, ST_IF, ST_FOR, ST_SET, ST_SETBLOCK, ST_MACRO, ST_BREAK, ST_CONTINUE, ST_GEN };

typedef struct st {
    int k, line;
    const char *text;
    size_t n;
    ex *e, *cond;
    const char **names; /* for/set targets, macro params */
    int nnames;
    const char *attr; /* set names[0].attr = e */
    ex **defaults;    /* macro parameter defaults (NULL: none) */
    struct st **body;
    int nbody;
    struct st **orelse;
    int norelse;
} st;

struct cast_jinja {
    arena a;
    char *what;
    st **body;
    int nbody;
    int has_gen;
};

/* -------------------------------------------------- runtime (jinja_run.c) */

typedef struct frame {
    struct frame *parent;
    int n, cap;
    const char **names;
    jval *vals;
} frame;

typedef struct rt {
    arena a;
    cast_buf *out;
    int capture; /* > 0 while output goes to a temporary buffer */
    size_t held; /* bytes of the output buffers set aside by captures */
    cast_err *err;
    const char *what;
    frame *root;
    int line;
    int depth; /* macro calls */
    int nest;  /* eval / statement recursion */
    long work; /* left of MAX_WORK */
    int over;  /* a limit was hit: its message is set, the render unwinds */
    cast_jinja_span *spans;
    int nspans, capspans;
} rt;

/* Fails the render with the one-line message "template exceeds its <what>
 * limit" (once: later errors keep it) and marks it over; returns -1. */
int jinja_over_limit(rt *r, const char *what);

/* Charges n units of work: -1 once the budget is spent. */
static inline int spend(rt *r, long n) {
    if (r->over) return -1;
    r->work -= n;
    return r->work < 0 ? jinja_over_limit(r, "work") : 0;
}

/* The work of copying or scanning n bytes (decoding UTF-8 on the way). */
static inline int spend_bytes(rt *r, size_t n) { return spend(r, 1 + (long)(n >> 2)); }

/* Whether `extra` more bytes fit in the memory limit. */
static inline int room(rt *r, size_t extra) {
    if (r->over) return -1;
    size_t used = r->a.bytes + r->held + r->out->len;
    return extra > MAX_MEMORY || used > MAX_MEMORY - extra ? jinja_over_limit(r, "memory") : 0;
}

/* n items of `size` bytes, without overflow. */
static inline int room_items(rt *r, size_t n, size_t size) {
    if (size && n > MAX_MEMORY / size) return jinja_over_limit(r, "memory");
    return room(r, n * size);
}

/* Charges the visit of one value being printed into b (work, memory, and
 * depth against the value nesting limit); -1 once over. */
int jinja_visit(rt *r, const cast_buf *b, int depth);

/* Appends x; -1 (x not added) once over a limit, so that loops stop. */
static inline int push(rt *r, jlist *l, jval x) {
    if (spend(r, 1) || room(r, 0)) return -1;
    l->v = jinja_grow(&r->a, l->v, l->n, &l->cap, sizeof(jval));
    l->v[l->n++] = x;
    return 0;
}

/* Call arguments: positional, then keyword. */
typedef struct args {
    int np, nk;
    jval *p;
    const char **kn;
    jval *kv;
} args;

/* Fails the render with a message naming the template and line; returns -1. */
int jinja_fail(rt *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
jval jinja_to_str(rt *r, jval v); /* str(v) as a value */
jval jinja_buf_to_str(rt *r, cast_buf *b);
/* The items iterating v gives (a dict's keys, a string's characters). */
int jinja_iter_list(rt *r, jval v, jlist **out);
jval jinja_get_attr(rt *r, jval obj, const char *name);
jval jinja_get_item(rt *r, jval obj, jval key);
int jinja_slice(rt *r, jval obj, jval a, jval b, jval c, jval *out);
int jinja_compare(rt *r, jval a, jval b, int *out); /* *out: -1, 0, 1 */
int jinja_contains(rt *r, jval hay, jval needle, int *out);
int jinja_binop(rt *r, int op, jval a, jval b, jval *out); /* OP_ADD .. OP_POW */

/* ------------------------- filters, tests, methods, globals (jinja_filters.c) */

/* Argument i, or the keyword `name` (NULL: positional only); UNDEF if absent. */
jval jinja_arg(const args *a, int i, const char *name);
/* Whether obj has the str or dict method `name`. */
int jinja_is_method(jval obj, const char *name);
int jinja_test(rt *r, const char *name, jval v, const args *a, int *out);
int jinja_filter(rt *r, const char *name, jval v, const args *a, jval *out);
int jinja_call_method(rt *r, jval self, const char *m, const args *a, jval *out);
int jinja_call_global(rt *r, const char *name, const args *a, jval *out);

#endif

/* A small Jinja2 interpreter for chat templates (see jinja.h). Semantics follow
 * Jinja2 3.x running inside transformers: Python values and truthiness,
 * trim_blocks + lstrip_blocks, a single trailing newline of the source dropped,
 * \r\n normalised to \n in the source. Values live in a per-render arena, so a
 * render frees everything at once; the parsed template lives in its own arena. */
#include "text/jinja.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

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

static void *aalloc(arena *a, size_t n) {
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

static void arena_free(arena *a) {
    for (ablock *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
    a->bytes = 0;
}

static char *astrndup(arena *a, const char *s, size_t n) {
    char *p = aalloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* Grows an arena array of `size`-byte items to hold at least n + 1. */
static void *agrow(arena *a, void *v, int n, int *cap, size_t size) {
    if (n < *cap) return v;
    int nc = *cap ? *cap * 2 : 8;
    void *nv = aalloc(a, size * (size_t)nc);
    if (n) memcpy(nv, v, size * (size_t)n);
    *cap = nc;
    return nv;
}

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

struct frame;

typedef struct rt {
    arena a;
    cast_buf *out;
    int capture; /* > 0 while output goes to a temporary buffer */
    size_t held; /* bytes of the output buffers set aside by captures */
    cast_err *err;
    const char *what;
    struct frame *root;
    int line;
    int depth; /* macro calls */
    int nest;  /* eval / statement recursion */
    long work; /* left of MAX_WORK */
    int over;  /* a limit was hit: its message is set, the render unwinds */
    cast_jinja_span *spans;
    int nspans, capspans;
} rt;

static int rfail(rt *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rfail(rt *r, const char *fmt, ...) {
    if (r->over) return -1; /* keep the limit's message: later errors follow from it */
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cast_fail(r->err, "%s: chat template line %d: %s", r->what, r->line, msg);
}

static int over_limit(rt *r, const char *what) {
    if (!r->over) rfail(r, "template exceeds its %s limit", what);
    r->over = 1;
    return -1;
}

/* Charges n units of work: -1 once the budget is spent. */
static int spend(rt *r, long n) {
    if (r->over) return -1;
    r->work -= n;
    return r->work < 0 ? over_limit(r, "work") : 0;
}

/* The work of copying or scanning n bytes (decoding UTF-8 on the way). */
static int spend_bytes(rt *r, size_t n) { return spend(r, 1 + (long)(n >> 2)); }

/* Whether `extra` more bytes fit in the memory limit. */
static int room(rt *r, size_t extra) {
    if (r->over) return -1;
    size_t used = r->a.bytes + r->held + r->out->len;
    return extra > MAX_MEMORY || used > MAX_MEMORY - extra ? over_limit(r, "memory") : 0;
}

/* n items of `size` bytes, without overflow. */
static int room_items(rt *r, size_t n, size_t size) {
    if (size && n > MAX_MEMORY / size) return over_limit(r, "memory");
    return room(r, n * size);
}

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

static jval vbool(int b) {
    jval v = {V_BOOL, {0}};
    v.u.b = b != 0;
    return v;
}
static jval vint(int64_t i) {
    jval v = {V_INT, {0}};
    v.u.i = i;
    return v;
}
static jval vfloat(double f) {
    jval v = {V_FLOAT, {0}};
    v.u.f = f;
    return v;
}
/* A string that points at storage outliving the render (no copy). */
static jval vstr(const char *p, size_t n) {
    jval v = {V_STR, {0}};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static jval vstr_copy(arena *a, const char *p, size_t n) { return vstr(astrndup(a, p, n), n); }

static jval vlist(arena *a) {
    jval v = {V_LIST, {0}};
    v.u.l = aalloc(a, sizeof(jlist));
    return v;
}
/* Appends x; -1 (x not added) once over a limit, so that loops stop. */
static int push(rt *r, jlist *l, jval x) {
    if (spend(r, 1) || room(r, 0)) return -1;
    l->v = agrow(&r->a, l->v, l->n, &l->cap, sizeof(jval));
    l->v[l->n++] = x;
    return 0;
}
static jval vdict(arena *a) {
    jval v = {V_DICT, {0}};
    v.u.d = aalloc(a, sizeof(jdict));
    return v;
}

static int veq_at(rt *r, jval a, jval b, int depth);

/* Index of key, or -1 (also when over a limit). */
static int dict_find_at(rt *r, const jdict *d, jval key, int depth) {
    for (int i = 0; i < d->n && !r->over; i++)
        if (veq_at(r, d->keys[i], key, depth)) return i;
    return -1;
}
static int dict_find(rt *r, const jdict *d, jval key) { return dict_find_at(r, d, key, 0); }
static int dict_find_s(const jdict *d, const char *key) {
    size_t n = strlen(key);
    for (int i = 0; i < d->n; i++)
        if (d->keys[i].k == V_STR && d->keys[i].u.s.n == n && memcmp(d->keys[i].u.s.p, key, n) == 0) return i;
    return -1;
}
static void dict_set(rt *r, jdict *d, jval key, jval val) {
    int i = dict_find(r, d, key);
    if (i >= 0) {
        d->vals[i] = val;
        return;
    }
    if (r->over) return;
    int cap = d->cap;
    d->keys = agrow(&r->a, d->keys, d->n, &cap, sizeof(jval));
    cap = d->cap;
    d->vals = agrow(&r->a, d->vals, d->n, &cap, sizeof(jval));
    d->cap = cap;
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
}
static void dict_set_s(rt *r, jdict *d, const char *key, jval val) { dict_set(r, d, vstr(key, strlen(key)), val); }

static int is_num(jval v) { return v.k == V_BOOL || v.k == V_INT || v.k == V_FLOAT; }
static double num_f(jval v) { return v.k == V_FLOAT ? v.u.f : v.k == V_INT ? (double)v.u.i : (double)v.u.b; }
static int64_t num_i(jval v) {
    if (v.k == V_FLOAT) return fabs(v.u.f) < 9.2e18 ? (int64_t)v.u.f : 0; /* no UB on huge values */
    return v.k == V_INT ? v.u.i : v.k == V_BOOL ? v.u.b : 0;
}

/* Python ==. Shared or self-containing values make the walk long or
 * endless: it is charged as work and bounded in depth (0 once over). */
static int veq_at(rt *r, jval a, jval b, int depth) {
    if (spend(r, 1)) return 0;
    if (depth > MAX_VALUE_NEST) return over_limit(r, "value nesting"), 0;
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
            if (!veq_at(r, a.u.l->v[i], b.u.l->v[i], depth + 1)) return 0;
        return 1;
    case V_DICT:
        if (a.u.d->n != b.u.d->n) return 0;
        for (int i = 0; i < a.u.d->n; i++) {
            int j = dict_find_at(r, b.u.d, a.u.d->keys[i], depth + 1);
            if (j < 0 || !veq_at(r, a.u.d->vals[i], b.u.d->vals[j], depth + 1)) return 0;
        }
        return 1;
    case V_FUNC: return a.u.fn == b.u.fn;
    default: return 0;
    }
}

static int veq(rt *r, jval a, jval b) { return veq_at(r, a, b, 0); }

static int truthy(jval v) {
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

static const char *type_name(jval v) {
    static const char *names[] = {"undefined", "NoneType", "bool", "int", "float", "str", "list", "dict", "function"};
    if (v.k == V_DICT && v.u.d->ns) return "Namespace";
    return names[v.k];
}

/* ------------------------------------------------------------------ UTF-8 */

/* Decodes one code point at s[*i]; an invalid byte decodes as itself. */
static int32_t u8_next(const char *s, size_t n, size_t *i) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + *i, (utf8proc_ssize_t)(n - *i), &cp);
    if (k <= 0) {
        cp = (unsigned char)s[*i];
        k = 1;
    }
    *i += (size_t)k;
    return cp;
}

static size_t u8_len(const char *s, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n;) {
        u8_next(s, n, &i);
        count++;
    }
    return count;
}

static void u8_put(cast_buf *b, int32_t cp) {
    utf8proc_uint8_t tmp[4];
    utf8proc_ssize_t k = utf8proc_encode_char(cp, tmp);
    cast_buf_append(b, tmp, (size_t)k);
}

/* Python's str.isspace(). */
static int py_space(int32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Byte offsets of every code point boundary: off[0..count], off[count] = n.
 * NULL when over a limit. */
static size_t *u8_offsets(rt *r, const char *s, size_t n, size_t *count) {
    if (spend_bytes(r, n) || room_items(r, n + 1, sizeof(size_t))) return NULL;
    size_t c = u8_len(s, n);
    size_t *off = aalloc(&r->a, sizeof(size_t) * (c + 1));
    size_t i = 0, k = 0;
    while (i < n) {
        off[k++] = i;
        u8_next(s, n, &i);
    }
    off[k] = n;
    *count = c;
    return off;
}

/* ------------------------------------------------------------------ lexer */

enum { TK_EOF, TK_TEXT, TK_VBEGIN, TK_VEND, TK_BBEGIN, TK_BEND, TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP };

typedef struct tok {
    int t, line;
    const char *p; /* TEXT, NAME, OP: into the source; STR: decoded, arena */
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct lexer {
    arena *a;
    const char *src;
    size_t n;
    tok *toks;
    int nt, cap;
    const char *what;
    cast_err *err;
    size_t line_pos; /* line_at() cache: positions mostly increase */
    int line_no;
} lexer;

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_ident0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_ident(char c) { return is_ident0(c) || (c >= '0' && c <= '9'); }

static int line_at(lexer *L, size_t pos) {
    if (pos < L->line_pos || L->line_no == 0) {
        L->line_pos = 0;
        L->line_no = 1;
    }
    for (; L->line_pos < pos && L->line_pos < L->n; L->line_pos++) L->line_no += L->src[L->line_pos] == '\n';
    return L->line_no;
}

static tok *emit(lexer *L, int t, size_t pos, const char *p, size_t n) {
    L->toks = agrow(L->a, L->toks, L->nt, &L->cap, sizeof(tok));
    tok *k = &L->toks[L->nt++];
    memset(k, 0, sizeof *k);
    k->t = t;
    k->line = line_at(L, pos);
    k->p = p;
    k->n = n;
    return k;
}

static int lex_fail(lexer *L, size_t pos, const char *msg) {
    return cast_fail(L->err, "%s: chat template line %d: %s", L->what, line_at(L, pos), msg);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string literal at src[*pos] (the quote); decodes Python escapes. */
static int lex_string(lexer *L, size_t *pos) {
    size_t start = *pos;
    char q = L->src[start];
    size_t i = start + 1;
    cast_buf b = {0};
    while (i < L->n && L->src[i] != q) {
        char c = L->src[i];
        if (c != '\\' || i + 1 >= L->n) {
            cast_buf_putc(&b, c);
            i++;
            continue;
        }
        char e = L->src[i + 1];
        i += 2;
        switch (e) {
        case 'n': cast_buf_putc(&b, '\n'); break;
        case 't': cast_buf_putc(&b, '\t'); break;
        case 'r': cast_buf_putc(&b, '\r'); break;
        case 'a': cast_buf_putc(&b, '\a'); break;
        case 'b': cast_buf_putc(&b, '\b'); break;
        case 'f': cast_buf_putc(&b, '\f'); break;
        case 'v': cast_buf_putc(&b, '\v'); break;
        case '\\': cast_buf_putc(&b, '\\'); break;
        case '\'': cast_buf_putc(&b, '\''); break;
        case '"': cast_buf_putc(&b, '"'); break;
        case '\n': break; /* line continuation */
        case 'x':
        case 'u':
        case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0; /* unsigned: 8 hex digits may exceed INT32_MAX */
            for (int d = 0; d < digits; d++) {
                int h = i + (size_t)d < L->n ? hexval(L->src[i + (size_t)d]) : -1;
                if (h < 0) {
                    cast_buf_free(&b);
                    return lex_fail(L, start, "bad escape in string literal");
                }
                cp = cp * 16 + (uint32_t)h;
            }
            i += (size_t)digits;
            if (cp > 0x10FFFF || !utf8proc_codepoint_valid((utf8proc_int32_t)cp)) {
                cast_buf_free(&b);
                return lex_fail(L, start, "bad code point in string literal");
            }
            u8_put(&b, (int32_t)cp);
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                int32_t cp = e - '0';
                for (int d = 0; d < 2 && i < L->n && L->src[i] >= '0' && L->src[i] <= '7'; d++) cp = cp * 8 + (L->src[i++] - '0');
                u8_put(&b, cp);
            } else {
                /* Python keeps unknown escapes as written */
                cast_buf_putc(&b, '\\');
                cast_buf_putc(&b, e);
            }
        }
    }
    if (i >= L->n) {
        cast_buf_free(&b);
        return lex_fail(L, start, "unterminated string literal");
    }
    tok *k = emit(L, TK_STR, start, NULL, 0);
    k->p = astrndup(L->a, b.data ? b.data : "", b.len);
    k->n = b.len;
    cast_buf_free(&b);
    *pos = i + 1;
    return 0;
}

static const char *const OPS[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "(", ")",
                                  "[",  "]",  "{",  "}",  ",",  ".",  ":", "|", "=", "<", ">", NULL};

/* Lexes the inside of {{ }} or {% %} starting at *pos; stops after the closer.
 * Returns the closer's whitespace-control sign ('-' or 0) through *strip. */
static int lex_tag(lexer *L, size_t *pos, int block, int *strip) {
    const char close = block ? '%' : '}';
    int depth = 0;
    size_t i = *pos, open = *pos;
    for (;;) {
        while (i < L->n && is_ws(L->src[i])) i++;
        if (i >= L->n) return lex_fail(L, open, block ? "unclosed {% tag" : "unclosed {{ tag");
        const char *s = L->src + i;
        size_t left = L->n - i;
        if (depth == 0) {
            if (left >= 3 && s[0] == '-' && s[1] == close && s[2] == '}') {
                emit(L, block ? TK_BEND : TK_VEND, i, s, 3);
                *pos = i + 3;
                *strip = '-';
                return 0;
            }
            if (left >= 2 && s[0] == close && s[1] == '}') {
                emit(L, block ? TK_BEND : TK_VEND, i, s, 2);
                *pos = i + 2;
                *strip = 0;
                return 0;
            }
        }
        char c = s[0];
        if (c == '\'' || c == '"') {
            if (lex_string(L, &i)) return -1;
            continue;
        }
        if (is_ident0(c)) {
            size_t j = i;
            while (j < L->n && is_ident(L->src[j])) j++;
            emit(L, TK_NAME, i, s, j - i);
            i = j;
            continue;
        }
        if (c >= '0' && c <= '9') {
            size_t j = i;
            int is_float = 0;
            while (j < L->n && ((L->src[j] >= '0' && L->src[j] <= '9') || L->src[j] == '_')) j++;
            if (j + 1 < L->n && L->src[j] == '.' && L->src[j + 1] >= '0' && L->src[j + 1] <= '9') {
                is_float = 1;
                j++;
                while (j < L->n && ((L->src[j] >= '0' && L->src[j] <= '9') || L->src[j] == '_')) j++;
            }
            if (j < L->n && (L->src[j] == 'e' || L->src[j] == 'E')) {
                size_t k = j + 1;
                if (k < L->n && (L->src[k] == '+' || L->src[k] == '-')) k++;
                if (k < L->n && L->src[k] >= '0' && L->src[k] <= '9') {
                    is_float = 1;
                    j = k;
                    while (j < L->n && L->src[j] >= '0' && L->src[j] <= '9') j++;
                }
            }
            char tmp[64];
            size_t m = 0;
            for (size_t k = i; k < j && m < sizeof tmp - 1; k++)
                if (L->src[k] != '_') tmp[m++] = L->src[k];
            tmp[m] = 0;
            tok *k = emit(L, is_float ? TK_FLOAT : TK_INT, i, s, j - i);
            if (is_float) k->f = strtod(tmp, NULL);
            else k->i = strtoll(tmp, NULL, 10);
            i = j;
            continue;
        }
        int matched = 0;
        for (int o = 0; OPS[o]; o++) {
            size_t m = strlen(OPS[o]);
            if (left >= m && memcmp(s, OPS[o], m) == 0) {
                emit(L, TK_OP, i, s, m);
                if (c == '(' || c == '[' || c == '{') depth++;
                if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
                i += m;
                matched = 1;
                break;
            }
        }
        if (!matched) {
            char msg[64];
            snprintf(msg, sizeof msg, "unexpected character '%c'", c);
            return lex_fail(L, i, msg);
        }
    }
}

/* After a tag closer: `-` strips all following whitespace; trim_blocks drops
 * one newline after a block or comment tag. */
static size_t after_tag(const lexer *L, size_t i, int strip, int trim) {
    if (strip == '-') {
        while (i < L->n && is_ws(L->src[i])) i++;
    } else if (trim && i < L->n && L->src[i] == '\n') {
        i++;
    }
    return i;
}

/* Matches `{%[-+]? WORD [-]?%}` at pos; sets *end after it and *rstrip. */
static int match_simple_tag(const lexer *L, size_t pos, const char *word, size_t *end, int *rstrip, int *lsign) {
    const char *s = L->src;
    size_t i = pos;
    if (i + 1 >= L->n || s[i] != '{' || s[i + 1] != '%') return 0;
    i += 2;
    *lsign = 0;
    if (i < L->n && (s[i] == '-' || s[i] == '+')) *lsign = s[i++];
    while (i < L->n && is_ws(s[i])) i++;
    size_t m = strlen(word);
    if (i + m > L->n || memcmp(s + i, word, m) != 0 || (i + m < L->n && is_ident(s[i + m]))) return 0;
    i += m;
    while (i < L->n && is_ws(s[i])) i++;
    *rstrip = 0;
    if (i < L->n && s[i] == '-') {
        *rstrip = '-';
        i++;
    }
    if (i + 1 >= L->n || s[i] != '%' || s[i + 1] != '}') return 0;
    *end = i + 2;
    return 1;
}

static void emit_text(lexer *L, size_t pos, const char *p, size_t n) {
    if (n) emit(L, TK_TEXT, pos, p, n);
}

static int lex(lexer *L) {
    size_t p = 0;
    int line_starting = 1;
    while (p < L->n) {
        /* next tag opener */
        size_t q = p;
        while (q + 1 < L->n && !(L->src[q] == '{' && (L->src[q + 1] == '{' || L->src[q + 1] == '%' || L->src[q + 1] == '#')))
            q++;
        if (q + 1 >= L->n) {
            emit_text(L, p, L->src + p, L->n - p);
            break;
        }
        char kind = L->src[q + 1];
        char sign = (q + 2 < L->n && (L->src[q + 2] == '-' || L->src[q + 2] == '+')) ? L->src[q + 2] : 0;
        size_t tlen = q - p;
        const char *text = L->src + p;
        if (sign == '-') {
            while (tlen > 0 && is_ws(text[tlen - 1])) tlen--;
        } else if (sign != '+' && kind != '{') {
            /* lstrip_blocks: a block/comment tag alone at the start of its line */
            size_t lpos = tlen;
            while (lpos > 0 && text[lpos - 1] != '\n') lpos--;
            if (lpos > 0 || line_starting) {
                int only_ws = lpos < tlen;
                for (size_t k = lpos; k < tlen; k++)
                    if (!is_ws(text[k])) only_ws = 0;
                if (only_ws) tlen = lpos;
            }
        }
        emit_text(L, p, text, tlen);
        size_t inner = q + 2 + (sign ? 1 : 0);
        size_t after;
        if (kind == '#') {
            const char *end = NULL;
            for (size_t k = inner; k + 1 < L->n; k++)
                if (L->src[k] == '#' && L->src[k + 1] == '}') {
                    end = L->src + k;
                    break;
                }
            if (!end) return lex_fail(L, q, "unclosed comment");
            size_t e = (size_t)(end - L->src);
            int strip = (e > inner && L->src[e - 1] == '-') ? '-' : 0;
            after = after_tag(L, e + 2, strip, 1);
        } else if (kind == '%') {
            size_t raw_end;
            int rstrip, lsign;
            if (match_simple_tag(L, q, "raw", &raw_end, &rstrip, &lsign)) {
                size_t k = after_tag(L, raw_end, rstrip, 1);
                size_t body = k, close_end = 0;
                int close_rstrip = 0, close_lsign = 0;
                while (k < L->n && !match_simple_tag(L, k, "endraw", &close_end, &close_rstrip, &close_lsign)) k++;
                if (k >= L->n) return lex_fail(L, q, "unclosed {% raw %}");
                size_t blen = k - body;
                if (close_lsign == '-')
                    while (blen > 0 && is_ws(L->src[body + blen - 1])) blen--;
                emit_text(L, body, L->src + body, blen);
                after = after_tag(L, close_end, close_rstrip, 1);
            } else {
                emit(L, TK_BBEGIN, q, L->src + q, inner - q);
                int strip;
                size_t k = inner;
                if (lex_tag(L, &k, 1, &strip)) return -1;
                after = after_tag(L, k, strip, 1);
            }
        } else {
            emit(L, TK_VBEGIN, q, L->src + q, inner - q);
            int strip;
            size_t k = inner;
            if (lex_tag(L, &k, 0, &strip)) return -1;
            after = after_tag(L, k, strip, 0);
        }
        line_starting = after > 0 && L->src[after - 1] == '\n';
        p = after;
    }
    emit(L, TK_EOF, L->n, L->src + L->n, 0);
    return 0;
}

/* ------------------------------------------------------------------- AST */

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

/* ----------------------------------------------------------------- parser */

typedef struct parser {
    arena *a;
    tok *t;
    int pos, n;
    const char *what;
    cast_err *err;
    int has_gen;
    int nest; /* recursion depth, bounded by MAX_PARSE_NEST */
} parser;

static tok *cur(parser *P) { return &P->t[P->pos]; }
static tok *peek(parser *P, int k) {
    int i = P->pos + k;
    return &P->t[i < P->n ? i : P->n - 1]; /* the last token is TK_EOF */
}
static int tok_is(const tok *k, int t, const char *s) {
    if (k->t != t) return 0;
    if (!s) return 1;
    size_t n = strlen(s);
    return k->n == n && memcmp(k->p, s, n) == 0;
}
static int is_op(parser *P, const char *s) { return tok_is(cur(P), TK_OP, s); }
static int is_name(parser *P, const char *s) { return tok_is(cur(P), TK_NAME, s); }
static int accept_op(parser *P, const char *s) {
    if (!is_op(P, s)) return 0;
    P->pos++;
    return 1;
}
static int accept_name(parser *P, const char *s) {
    if (!is_name(P, s)) return 0;
    P->pos++;
    return 1;
}

static int pfail(parser *P, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pfail(parser *P, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cast_fail(P->err, "%s: chat template line %d: %s", P->what, cur(P)->line, msg);
}

static const char *tok_desc(const tok *k, char *buf, size_t n) {
    switch (k->t) {
    case TK_EOF: return "end of template";
    case TK_TEXT: return "text";
    case TK_VEND: return "'}}'";
    case TK_BEND: return "'%}'";
    case TK_VBEGIN: return "'{{'";
    case TK_BBEGIN: return "'{%'";
    case TK_STR: return "a string";
    default: snprintf(buf, n, "'%.*s'", (int)(k->n > 40 ? 40 : k->n), k->p); return buf;
    }
}

static int expect_op(parser *P, const char *s) {
    if (accept_op(P, s)) return 0;
    char b[64];
    return pfail(P, "expected '%s', found %s", s, tok_desc(cur(P), b, sizeof b));
}

static ex *new_ex(parser *P, int k) {
    ex *e = aalloc(P->a, sizeof(ex));
    e->k = k;
    e->line = cur(P)->line;
    return e;
}

static const char *tok_name(parser *P, const tok *k) { return astrndup(P->a, k->p, k->n); }

static void ex_push_arg(parser *P, ex *e, ex *x, int *cap) {
    e->args = agrow(P->a, e->args, e->nargs, cap, sizeof(ex *));
    e->args[e->nargs++] = x;
}

static ex *parse_expr(parser *P);
static ex *parse_or(parser *P);
static ex *parse_unary(parser *P, int with_filter);
static ex *parse_primary(parser *P);
static ex *parse_postfix(parser *P, ex *e);

/* (a, b, k=v) after the '(' has been seen (not consumed). */
static int parse_call_args(parser *P, ex *e) {
    if (expect_op(P, "(")) return -1;
    int cap = 0, kcap = 0;
    while (!is_op(P, ")")) {
        if (cur(P)->t == TK_NAME && tok_is(peek(P, 1), TK_OP, "=")) {
            const char *name = tok_name(P, cur(P));
            P->pos += 2;
            ex *v = parse_expr(P);
            if (!v) return -1;
            int kc = kcap;
            e->kwn = agrow(P->a, e->kwn, e->nkw, &kc, sizeof(char *));
            kc = kcap;
            e->kwv = agrow(P->a, e->kwv, e->nkw, &kc, sizeof(ex *));
            kcap = kc;
            e->kwn[e->nkw] = name;
            e->kwv[e->nkw++] = v;
        } else {
            if (e->nkw) return pfail(P, "positional argument after keyword argument");
            ex *v = parse_expr(P);
            if (!v) return -1;
            ex_push_arg(P, e, v, &cap);
        }
        if (!accept_op(P, ",")) break;
    }
    return expect_op(P, ")");
}

static ex *parse_primary(parser *P) {
    tok *k = cur(P);
    char b[64];
    if (k->t == TK_NAME) {
        P->pos++;
        ex *e = new_ex(P, EX_LIT);
        if (tok_is(k, TK_NAME, "true") || tok_is(k, TK_NAME, "True")) e->lit = vbool(1);
        else if (tok_is(k, TK_NAME, "false") || tok_is(k, TK_NAME, "False")) e->lit = vbool(0);
        else if (tok_is(k, TK_NAME, "none") || tok_is(k, TK_NAME, "None")) e->lit = NONE;
        else {
            e->k = EX_NAME;
            e->name = tok_name(P, k);
        }
        return e;
    }
    if (k->t == TK_STR) {
        ex *e = new_ex(P, EX_LIT);
        /* adjacent literals concatenate, as in Python */
        cast_buf s = {0};
        while (cur(P)->t == TK_STR) {
            cast_buf_append(&s, cur(P)->p, cur(P)->n);
            P->pos++;
        }
        e->lit = vstr(astrndup(P->a, s.data ? s.data : "", s.len), s.len);
        cast_buf_free(&s);
        return e;
    }
    if (k->t == TK_INT || k->t == TK_FLOAT) {
        P->pos++;
        ex *e = new_ex(P, EX_LIT);
        e->lit = k->t == TK_INT ? vint(k->i) : vfloat(k->f);
        return e;
    }
    if (accept_op(P, "(")) {
        if (accept_op(P, ")")) return new_ex(P, EX_TUPLE);
        ex *first = parse_expr(P);
        if (!first) return NULL;
        if (is_op(P, ",")) {
            ex *t = new_ex(P, EX_TUPLE);
            int cap = 0;
            ex_push_arg(P, t, first, &cap);
            while (accept_op(P, ",")) {
                if (is_op(P, ")")) break;
                ex *x = parse_expr(P);
                if (!x) return NULL;
                ex_push_arg(P, t, x, &cap);
            }
            first = t;
        }
        if (expect_op(P, ")")) return NULL;
        return first;
    }
    if (accept_op(P, "[")) {
        ex *l = new_ex(P, EX_LIST);
        int cap = 0;
        while (!is_op(P, "]")) {
            ex *x = parse_expr(P);
            if (!x) return NULL;
            ex_push_arg(P, l, x, &cap);
            if (!accept_op(P, ",")) break;
        }
        if (expect_op(P, "]")) return NULL;
        return l;
    }
    if (accept_op(P, "{")) {
        ex *d = new_ex(P, EX_DICT);
        int cap = 0, vcap = 0;
        while (!is_op(P, "}")) {
            ex *key = parse_expr(P);
            if (!key || expect_op(P, ":")) return NULL;
            ex *val = parse_expr(P);
            if (!val) return NULL;
            ex_push_arg(P, d, key, &cap);
            d->kwv = agrow(P->a, d->kwv, d->nkw, &vcap, sizeof(ex *));
            d->kwv[d->nkw++] = val;
            if (!accept_op(P, ",")) break;
        }
        if (expect_op(P, "}")) return NULL;
        return d;
    }
    pfail(P, "unexpected %s", tok_desc(k, b, sizeof b));
    return NULL;
}

static ex *parse_postfix(parser *P, ex *e) {
    for (;;) {
        if (accept_op(P, ".")) {
            tok *k = cur(P);
            ex *x = new_ex(P, EX_ATTR);
            x->a = e;
            if (k->t == TK_NAME) x->name = tok_name(P, k);
            else if (k->t == TK_INT) {
                x->k = EX_ITEM;
                x->b = new_ex(P, EX_LIT);
                x->b->lit = vint(k->i);
            } else {
                char b[64];
                pfail(P, "expected an attribute name after '.', found %s", tok_desc(k, b, sizeof b));
                return NULL;
            }
            P->pos++;
            e = x;
        } else if (accept_op(P, "[")) {
            ex *start = NULL, *stop = NULL, *step = NULL;
            int slice = 0;
            if (!is_op(P, ":")) {
                start = parse_expr(P);
                if (!start) return NULL;
            }
            if (accept_op(P, ":")) {
                slice = 1;
                if (!is_op(P, ":") && !is_op(P, "]")) {
                    stop = parse_expr(P);
                    if (!stop) return NULL;
                }
                if (accept_op(P, ":") && !is_op(P, "]")) {
                    step = parse_expr(P);
                    if (!step) return NULL;
                }
            }
            if (expect_op(P, "]")) return NULL;
            ex *x = new_ex(P, slice ? EX_SLICE : EX_ITEM);
            x->a = e;
            if (slice) {
                x->args = aalloc(P->a, 3 * sizeof(ex *));
                x->args[0] = start;
                x->args[1] = stop;
                x->args[2] = step;
                x->nargs = 3;
            } else {
                x->b = start;
            }
            e = x;
        } else if (is_op(P, "(")) {
            ex *x = new_ex(P, EX_CALL);
            x->a = e;
            if (parse_call_args(P, x)) return NULL;
            e = x;
        } else {
            return e;
        }
    }
}

static int is_keyword_tok(const tok *k) {
    static const char *kw[] = {"else", "or", "and", "if", "in", "is", "not", NULL};
    for (int i = 0; kw[i]; i++)
        if (tok_is(k, TK_NAME, kw[i])) return 1;
    return 0;
}

static ex *parse_filter_expr(parser *P, ex *e) {
    for (;;) {
        if (accept_op(P, "|")) {
            if (cur(P)->t != TK_NAME) {
                pfail(P, "expected a filter name after '|'");
                return NULL;
            }
            ex *f = new_ex(P, EX_FILTER);
            f->a = e;
            f->name = tok_name(P, cur(P));
            P->pos++;
            if (is_op(P, "(") && parse_call_args(P, f)) return NULL;
            e = f;
        } else if (accept_name(P, "is")) {
            ex *t = new_ex(P, EX_TEST);
            t->a = e;
            if (accept_name(P, "not")) t->neg = 1;
            if (cur(P)->t != TK_NAME) {
                pfail(P, "expected a test name after 'is'");
                return NULL;
            }
            t->name = tok_name(P, cur(P));
            P->pos++;
            if (is_op(P, "(")) {
                if (parse_call_args(P, t)) return NULL;
            } else {
                tok *k = cur(P);
                if ((k->t == TK_NAME || k->t == TK_STR || k->t == TK_INT || k->t == TK_FLOAT || tok_is(k, TK_OP, "[") ||
                     tok_is(k, TK_OP, "{")) &&
                    !is_keyword_tok(k)) {
                    ex *arg = parse_primary(P);
                    if (!arg || !(arg = parse_postfix(P, arg))) return NULL;
                    int cap = 0;
                    ex_push_arg(P, t, arg, &cap);
                }
            }
            e = t;
        } else if (is_op(P, "(")) {
            ex *x = new_ex(P, EX_CALL);
            x->a = e;
            if (parse_call_args(P, x)) return NULL;
            e = x;
        } else {
            return e;
        }
    }
}

/* Recursion guard of the parser: deep nesting in the source must not
 * exhaust the C stack. */
static int enter(parser *P) {
    if (++P->nest <= MAX_PARSE_NEST) return 0;
    P->nest--;
    return pfail(P, "nested too deep (over %d levels of brackets, operators and blocks)", MAX_PARSE_NEST);
}

static ex *parse_unary_in(parser *P, int with_filter) {
    ex *e;
    if (is_op(P, "-") || is_op(P, "+")) {
        int neg = is_op(P, "-");
        P->pos++;
        ex *x = parse_unary(P, 0);
        if (!x) return NULL;
        e = new_ex(P, neg ? EX_NEG : EX_POS);
        e->a = x;
    } else {
        e = parse_primary(P);
        if (!e) return NULL;
    }
    e = parse_postfix(P, e);
    if (e && with_filter) e = parse_filter_expr(P, e);
    return e;
}

static ex *parse_unary(parser *P, int with_filter) {
    if (enter(P)) return NULL;
    ex *e = parse_unary_in(P, with_filter);
    P->nest--;
    return e;
}

static ex *mk_bin(parser *P, int k, int op, ex *a, ex *b) {
    ex *e = new_ex(P, k);
    e->op = op;
    e->a = a;
    e->b = b;
    return e;
}

static ex *parse_pow(parser *P) {
    ex *e = parse_unary(P, 1);
    while (e && is_op(P, "**")) {
        P->pos++;
        ex *r = parse_unary(P, 1);
        if (!r) return NULL;
        e = mk_bin(P, EX_BIN, OP_POW, e, r);
    }
    return e;
}

static ex *parse_math2(parser *P) {
    ex *e = parse_pow(P);
    for (;;) {
        int op;
        if (!e) return NULL;
        if (is_op(P, "*")) op = OP_MUL;
        else if (is_op(P, "/")) op = OP_DIV;
        else if (is_op(P, "//")) op = OP_FDIV;
        else if (is_op(P, "%")) op = OP_MOD;
        else return e;
        P->pos++;
        ex *r = parse_pow(P);
        if (!r) return NULL;
        e = mk_bin(P, EX_BIN, op, e, r);
    }
}

static ex *parse_concat(parser *P) {
    ex *e = parse_math2(P);
    while (e && accept_op(P, "~")) {
        ex *r = parse_math2(P);
        if (!r) return NULL;
        e = mk_bin(P, EX_CONCAT, 0, e, r);
    }
    return e;
}

static ex *parse_math1(parser *P) {
    ex *e = parse_concat(P);
    for (;;) {
        if (!e) return NULL;
        int op;
        if (is_op(P, "+")) op = OP_ADD;
        else if (is_op(P, "-")) op = OP_SUB;
        else return e;
        P->pos++;
        ex *r = parse_concat(P);
        if (!r) return NULL;
        e = mk_bin(P, EX_BIN, op, e, r);
    }
}

static ex *parse_compare(parser *P) {
    ex *e = parse_math1(P);
    ex *result = e, *left = e;
    for (;;) {
        if (!left) return NULL;
        int op;
        if (is_op(P, "==")) op = OP_EQ;
        else if (is_op(P, "!=")) op = OP_NE;
        else if (is_op(P, "<")) op = OP_LT;
        else if (is_op(P, "<=")) op = OP_LE;
        else if (is_op(P, ">")) op = OP_GT;
        else if (is_op(P, ">=")) op = OP_GE;
        else if (is_name(P, "in")) op = OP_IN;
        else if (is_name(P, "not") && tok_is(peek(P, 1), TK_NAME, "in")) {
            op = OP_NOTIN;
            P->pos++;
        } else return result;
        P->pos++;
        ex *r = parse_math1(P);
        if (!r) return NULL;
        ex *c = mk_bin(P, EX_CMP, op, left, r);
        /* a < b < c  ==  (a < b) and (b < c); operands are side-effect free */
        result = result == left ? c : mk_bin(P, EX_AND, 0, result, c);
        left = r;
    }
}

static ex *parse_not(parser *P) {
    if (accept_name(P, "not")) {
        if (enter(P)) return NULL;
        ex *x = parse_not(P);
        P->nest--;
        if (!x) return NULL;
        ex *e = new_ex(P, EX_NOT);
        e->a = x;
        return e;
    }
    return parse_compare(P);
}

static ex *parse_and(parser *P) {
    ex *e = parse_not(P);
    while (e && accept_name(P, "and")) {
        ex *r = parse_not(P);
        if (!r) return NULL;
        e = mk_bin(P, EX_AND, 0, e, r);
    }
    return e;
}

static ex *parse_or(parser *P) {
    ex *e = parse_and(P);
    while (e && accept_name(P, "or")) {
        ex *r = parse_and(P);
        if (!r) return NULL;
        e = mk_bin(P, EX_OR, 0, e, r);
    }
    return e;
}

static ex *parse_expr_in(parser *P) {
    ex *e = parse_or(P);
    while (e && accept_name(P, "if")) {
        ex *c = new_ex(P, EX_COND);
        c->a = e;
        c->b = parse_or(P);
        if (!c->b) return NULL;
        if (accept_name(P, "else")) {
            c->c = parse_expr(P);
            if (!c->c) return NULL;
        }
        e = c;
    }
    return e;
}

static ex *parse_expr(parser *P) {
    if (enter(P)) return NULL;
    ex *e = parse_expr_in(P);
    P->nest--;
    return e;
}

/* An expression, or a bare tuple `a, b` (set values, output). */
static ex *parse_tuple_expr(parser *P) {
    ex *e = parse_expr(P);
    if (!e || !is_op(P, ",")) return e;
    ex *t = new_ex(P, EX_TUPLE);
    int cap = 0;
    ex_push_arg(P, t, e, &cap);
    while (accept_op(P, ",")) {
        if (cur(P)->t == TK_BEND || cur(P)->t == TK_VEND) break;
        ex *x = parse_expr(P);
        if (!x) return NULL;
        ex_push_arg(P, t, x, &cap);
    }
    return t;
}

static st *new_st(parser *P, int k, int line) {
    st *s = aalloc(P->a, sizeof(st));
    s->k = k;
    s->line = line;
    return s;
}

static int expect_bend(parser *P) {
    if (cur(P)->t == TK_BEND) {
        P->pos++;
        return 0;
    }
    char b[64];
    return pfail(P, "expected '%%}', found %s", tok_desc(cur(P), b, sizeof b));
}

static int parse_body(parser *P, const char *const *ends, st ***out, int *nout);

/* Parses an end tag `{% NAME %}` (the '{%' is current). */
static int parse_end(parser *P, const char *name) {
    P->pos++; /* {% */
    if (!accept_name(P, name)) return pfail(P, "expected {%% %s %%}", name);
    return expect_bend(P);
}

static int parse_names(parser *P, st *s) {
    int cap = 0;
    int paren = accept_op(P, "(");
    do {
        if (cur(P)->t != TK_NAME) return pfail(P, "expected a variable name");
        s->names = agrow(P->a, s->names, s->nnames, &cap, sizeof(char *));
        s->names[s->nnames++] = tok_name(P, cur(P));
        P->pos++;
    } while (accept_op(P, ","));
    if (paren && expect_op(P, ")")) return -1;
    return 0;
}

/* After `if` / `elif`: condition, bodies, and the closing tag. */
static st *parse_if(parser *P, int line) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const endif[] = {"endif", NULL};
    st *s = new_st(P, ST_IF, line);
    if (!(s->e = parse_expr(P)) || expect_bend(P)) return NULL;
    if (parse_body(P, ends, &s->body, &s->nbody)) return NULL;
    tok *tag = peek(P, 1);
    if (tok_is(tag, TK_NAME, "elif")) {
        int l2 = tag->line;
        P->pos += 2;
        if (enter(P)) return NULL;
        st *sub = parse_if(P, l2);
        P->nest--;
        if (!sub) return NULL;
        s->orelse = aalloc(P->a, sizeof(st *));
        s->orelse[0] = sub;
        s->norelse = 1;
        return s; /* the nested if consumed endif */
    }
    if (tok_is(tag, TK_NAME, "else")) {
        P->pos += 2;
        if (expect_bend(P) || parse_body(P, endif, &s->orelse, &s->norelse)) return NULL;
    }
    if (parse_end(P, "endif")) return NULL;
    return s;
}

static st *parse_tag(parser *P) {
    int line = cur(P)->line;
    P->pos++; /* {% */
    tok *k = cur(P);
    char b[64];
    if (k->t != TK_NAME) {
        pfail(P, "expected a tag name, found %s", tok_desc(k, b, sizeof b));
        return NULL;
    }
    P->pos++;
    if (tok_is(k, TK_NAME, "if")) return parse_if(P, line);
    if (tok_is(k, TK_NAME, "for")) {
        static const char *const ends[] = {"else", "endfor", NULL};
        static const char *const endfor[] = {"endfor", NULL};
        st *s = new_st(P, ST_FOR, line);
        if (parse_names(P, s)) return NULL;
        if (!accept_name(P, "in")) {
            pfail(P, "expected 'in' in for loop");
            return NULL;
        }
        if (!(s->e = parse_or(P))) return NULL;
        if (accept_name(P, "if") && !(s->cond = parse_expr(P))) return NULL;
        if (is_name(P, "recursive")) {
            pfail(P, "recursive for loops are not supported");
            return NULL;
        }
        if (expect_bend(P) || parse_body(P, ends, &s->body, &s->nbody)) return NULL;
        if (tok_is(peek(P, 1), TK_NAME, "else")) {
            P->pos += 2;
            if (expect_bend(P) || parse_body(P, endfor, &s->orelse, &s->norelse)) return NULL;
        }
        if (parse_end(P, "endfor")) return NULL;
        return s;
    }
    if (tok_is(k, TK_NAME, "set")) {
        static const char *const endset[] = {"endset", NULL};
        st *s = new_st(P, ST_SET, line);
        if (cur(P)->t == TK_NAME && tok_is(peek(P, 1), TK_OP, ".")) {
            s->names = aalloc(P->a, sizeof(char *));
            s->names[0] = tok_name(P, cur(P));
            s->nnames = 1;
            P->pos += 2;
            if (cur(P)->t != TK_NAME) {
                pfail(P, "expected an attribute name");
                return NULL;
            }
            s->attr = tok_name(P, cur(P));
            P->pos++;
        } else if (parse_names(P, s)) {
            return NULL;
        }
        if (accept_op(P, "=")) {
            if (!(s->e = parse_tuple_expr(P)) || expect_bend(P)) return NULL;
            return s;
        }
        if (s->attr || s->nnames != 1) {
            pfail(P, "expected '=' in set");
            return NULL;
        }
        s->k = ST_SETBLOCK;
        if (expect_bend(P) || parse_body(P, endset, &s->body, &s->nbody) || parse_end(P, "endset")) return NULL;
        return s;
    }
    if (tok_is(k, TK_NAME, "macro")) {
        static const char *const endmacro[] = {"endmacro", NULL};
        st *s = new_st(P, ST_MACRO, line);
        if (cur(P)->t != TK_NAME) {
            pfail(P, "expected a macro name");
            return NULL;
        }
        s->attr = tok_name(P, cur(P)); /* the macro's name */
        P->pos++;
        if (expect_op(P, "(")) return NULL;
        int cap = 0, dcap = 0;
        while (!is_op(P, ")")) {
            if (cur(P)->t != TK_NAME) {
                pfail(P, "expected a parameter name");
                return NULL;
            }
            s->names = agrow(P->a, s->names, s->nnames, &cap, sizeof(char *));
            s->defaults = agrow(P->a, s->defaults, s->nnames, &dcap, sizeof(ex *));
            s->names[s->nnames] = tok_name(P, cur(P));
            s->defaults[s->nnames] = NULL;
            P->pos++;
            if (accept_op(P, "=") && !(s->defaults[s->nnames] = parse_expr(P))) return NULL;
            s->nnames++;
            if (!accept_op(P, ",")) break;
        }
        if (expect_op(P, ")") || expect_bend(P)) return NULL;
        if (parse_body(P, endmacro, &s->body, &s->nbody) || parse_end(P, "endmacro")) return NULL;
        return s;
    }
    if (tok_is(k, TK_NAME, "break") || tok_is(k, TK_NAME, "continue")) {
        st *s = new_st(P, tok_is(k, TK_NAME, "break") ? ST_BREAK : ST_CONTINUE, line);
        if (expect_bend(P)) return NULL;
        return s;
    }
    if (tok_is(k, TK_NAME, "generation")) {
        static const char *const endgen[] = {"endgeneration", NULL};
        st *s = new_st(P, ST_GEN, line);
        P->has_gen = 1;
        if (expect_bend(P) || parse_body(P, endgen, &s->body, &s->nbody) || parse_end(P, "endgeneration")) return NULL;
        return s;
    }
    P->pos--;
    pfail(P, "unsupported tag '%.*s'", (int)(k->n > 40 ? 40 : k->n), k->p);
    return NULL;
}

static int parse_body_in(parser *P, const char *const *ends, st ***out, int *nout) {
    int cap = 0;
    *out = NULL;
    *nout = 0;
    for (;;) {
        tok *k = cur(P);
        st *s = NULL;
        if (k->t == TK_EOF) {
            if (ends) {
                int last = 0;
                while (ends[last + 1]) last++;
                return pfail(P, "unexpected end of template (missing {%% %s %%})", ends[last]);
            }
            return 0;
        }
        if (k->t == TK_TEXT) {
            s = new_st(P, ST_TEXT, k->line);
            s->text = k->p;
            s->n = k->n;
            P->pos++;
        } else if (k->t == TK_VBEGIN) {
            s = new_st(P, ST_OUT, k->line);
            P->pos++;
            if (!(s->e = parse_tuple_expr(P))) return -1;
            if (cur(P)->t != TK_VEND) {
                char b[64];
                return pfail(P, "expected '}}', found %s", tok_desc(cur(P), b, sizeof b));
            }
            P->pos++;
        } else if (k->t == TK_BBEGIN) {
            tok *name = peek(P, 1);
            if (ends)
                for (int i = 0; ends[i]; i++)
                    if (tok_is(name, TK_NAME, ends[i])) return 0;
            if (name->t == TK_NAME && name->n > 3 && memcmp(name->p, "end", 3) == 0)
                return pfail(P, "unexpected {%% %.*s %%}", (int)name->n, name->p);
            if (tok_is(name, TK_NAME, "elif") || tok_is(name, TK_NAME, "else"))
                return pfail(P, "unexpected {%% %.*s %%}", (int)name->n, name->p);
            if (!(s = parse_tag(P))) return -1;
        } else {
            char b[64];
            return pfail(P, "unexpected %s", tok_desc(k, b, sizeof b));
        }
        *out = agrow(P->a, *out, *nout, &cap, sizeof(st *));
        (*out)[(*nout)++] = s;
    }
}

static int parse_body(parser *P, const char *const *ends, st ***out, int *nout) {
    if (enter(P)) return -1;
    int rc = parse_body_in(P, ends, out, nout);
    P->nest--;
    return rc;
}

int cast_jinja_parse(cast_jinja **out, const char *src, const char *what, cast_err *err) {
    *out = NULL;
    cast_jinja *t = cast_xcalloc(1, sizeof *t);
    t->what = cast_xstrdup(what ? what : "template");
    /* Jinja normalises line endings and drops one trailing newline
     * (keep_trailing_newline=False). */
    size_t n = strlen(src);
    char *s = aalloc(&t->a, n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r') {
            s[m++] = '\n';
            if (i + 1 < n && src[i + 1] == '\n') i++;
        } else {
            s[m++] = src[i];
        }
    }
    if (m > 0 && s[m - 1] == '\n') m--;
    s[m] = 0;
    lexer L = {.a = &t->a, .src = s, .n = m, .what = t->what, .err = err};
    if (lex(&L)) {
        cast_jinja_free(t);
        return -1;
    }
    parser P = {.a = &t->a, .t = L.toks, .n = L.nt, .what = t->what, .err = err};
    if (parse_body(&P, NULL, &t->body, &t->nbody)) {
        cast_jinja_free(t);
        return -1;
    }
    t->has_gen = P.has_gen;
    *out = t;
    return 0;
}

void cast_jinja_free(cast_jinja *t) {
    if (!t) return;
    arena_free(&t->a);
    free(t->what);
    free(t);
}

int cast_jinja_has_generation(const cast_jinja *t) { return t && t->has_gen; }

/* ---------------------------------------------------------------- runtime */

typedef struct frame {
    struct frame *parent;
    int n, cap;
    const char **names;
    jval *vals;
} frame;


static frame *new_frame(rt *r, frame *parent) {
    frame *f = aalloc(&r->a, sizeof(frame));
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
    f->names = agrow(&r->a, f->names, f->n, &cap, sizeof(char *));
    cap = f->cap;
    f->vals = agrow(&r->a, f->vals, f->n, &cap, sizeof(jval));
    f->cap = cap;
    f->names[f->n] = name;
    f->vals[f->n++] = v;
}

static const char *const GLOBALS[] = {"range", "namespace", "raise_exception", "strftime_now", "dict", NULL};

static jval mk_func(rt *r, int kind, const char *name, jval self) {
    jval v = {V_FUNC, {0}};
    v.u.fn = aalloc(&r->a, sizeof(jfunc));
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

/* --- string conversion */

static void fmt_float(double f, cast_buf *b) {
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
static int visit(rt *r, const cast_buf *b, int depth) {
    if (spend(r, 4) || room(r, b == r->out ? 0 : b->len)) return -1;
    if (depth > MAX_VALUE_NEST) return over_limit(r, "value nesting");
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
    case V_FLOAT: fmt_float(v.u.f, b); break;
    case V_STR:
        if (!spend_bytes(r, v.u.s.n) && !room(r, b == r->out ? v.u.s.n : b->len + v.u.s.n))
            cast_buf_append(b, v.u.s.p, v.u.s.n);
        break;
    default: repr_at(r, v, b, depth);
    }
}

static void repr_at(rt *r, jval v, cast_buf *b, int depth) {
    if (visit(r, b, depth)) return;
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

static void str_val(rt *r, jval v, cast_buf *b) { str_at(r, v, b, 0); }

static jval to_str(rt *r, jval v) {
    if (v.k == V_STR) return v;
    cast_buf b = {0};
    str_val(r, v, &b);
    jval s = vstr_copy(&r->a, b.data ? b.data : "", b.len);
    cast_buf_free(&b);
    return s;
}

static jval buf_to_str(rt *r, cast_buf *b) { return vstr_copy(&r->a, b->data ? b->data : "", b->len); }

/* A newline and `spaces` spaces of tojson's indentation. */
static int json_indent(rt *r, cast_buf *b, int64_t spaces) {
    if (spaces > (int64_t)MAX_MEMORY) return over_limit(r, "memory");
    if (spend_bytes(r, (size_t)spaces) || room(r, b->len + (size_t)spaces)) return -1;
    cast_buf_putc(b, '\n');
    for (int64_t s = 0; s < spaces; s++) cast_buf_putc(b, ' ');
    return 0;
}

/* json.dumps(v, ensure_ascii=False, indent=indent), transformers' tojson;
 * indent < 0: none. */
static int json_val(rt *r, jval v, cast_buf *b, int64_t indent, int level) {
    if (visit(r, b, level)) return -1;
    switch (v.k) {
    case V_NONE: cast_buf_puts(b, "null"); return 0;
    case V_BOOL: cast_buf_puts(b, v.u.b ? "true" : "false"); return 0;
    case V_INT: cast_buf_printf(b, "%lld", (long long)v.u.i); return 0;
    case V_FLOAT:
        if (isnan(v.u.f)) cast_buf_puts(b, "NaN");
        else if (isinf(v.u.f)) cast_buf_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else fmt_float(v.u.f, b);
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
                if (key.k != V_STR) key = to_str(r, key);
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
    default: return rfail(r, "tojson: cannot serialise a value of type %s", type_name(v));
    }
}

/* --- arguments */

typedef struct args {
    int np, nk;
    jval *p;
    const char **kn;
    jval *kv;
} args;

static jval arg(const args *a, int i, const char *name) {
    if (i >= 0 && i < a->np) return a->p[i];
    if (name)
        for (int k = 0; k < a->nk; k++)
            if (strcmp(a->kn[k], name) == 0) return a->kv[k];
    return UNDEF;
}

static int want_str(rt *r, jval v, const char *what) {
    if (v.k == V_STR) return 0;
    return rfail(r, "%s expects a string, got %s", what, type_name(v));
}

static int want_int(rt *r, jval v, const char *what, int64_t *out) {
    if (v.k == V_INT || v.k == V_BOOL) {
        *out = num_i(v);
        return 0;
    }
    return rfail(r, "%s expects an integer, got %s", what, type_name(v));
}

/* --- string operations */

static int in_set(int32_t c, const char *chars, size_t n) {
    for (size_t i = 0; i < n;)
        if (u8_next(chars, n, &i) == c) return 1;
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
            int32_t c = u8_next(p, n, &i);
            if (cs ? !in_set(c, cs, cn) : !py_space(c)) break;
            start = i;
        }
    }
    if (right) {
        while (end > start && !spend_bytes(r, cn)) {
            size_t j = end - 1;
            while (j > start && ((unsigned char)p[j] & 0xC0) == 0x80) j--;
            size_t i = j;
            int32_t c = u8_next(p, n, &i);
            if (cs ? !in_set(c, cs, cn) : !py_space(c)) break;
            end = j;
        }
    }
    return vstr(p + start, end - start);
}

/* First occurrence of nd in h, or NULL (also once over the work limit). */
static const char *memfind(rt *r, const char *h, size_t hn, const char *nd, size_t nn) {
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
                if (!py_space(u8_next(p, n, &k))) break;
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
                if (py_space(u8_next(p, n, &k))) break;
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
        const char *f = (maxsplit < 0 || splits < maxsplit) ? memfind(r, p + i, n - i, sep.u.s.p, sep.u.s.n) : NULL;
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
        int32_t c = u8_next(s.u.s.p, s.u.s.n, &i);
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
        u8_put(&b, o);
    }
    jval out = buf_to_str(r, &b);
    cast_buf_free(&b);
    return out;
}

/* Occurrences str.replace would replace (count < 0: all). */
static int64_t replace_count(rt *r, jval s, jval old, int64_t count) {
    if (old.u.s.n == 0) {
        int64_t slots = (int64_t)u8_len(s.u.s.p, s.u.s.n) + 1; /* between characters and at both ends */
        return count >= 0 && count < slots ? count : slots;
    }
    int64_t done = 0;
    for (const char *p = s.u.s.p, *end = p + s.u.s.n, *f; (count < 0 || done < count) &&
                                                          (f = memfind(r, p, (size_t)(end - p), old.u.s.p, old.u.s.n));
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
        return over_limit(r, "memory"), vstr("", 0);
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
            u8_next(p, n, &k2);
            cast_buf_append(&b, p + k, k2 - k);
            k = k2;
        }
    } else {
        while (i <= n) {
            const char *f = (count < 0 || done < count) ? memfind(r, p + i, n - i, old.u.s.p, old.u.s.n) : NULL;
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
    jval out = buf_to_str(r, &b);
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

/* --- iteration, indexing, slicing */

static int iter_list(rt *r, jval v, jlist **out) {
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
            u8_next(v.u.s.p, v.u.s.n, &i);
            if (push(r, l.u.l, vstr(v.u.s.p + s, i - s))) return -1;
        }
        *out = l.u.l;
        return 0;
    }
    default: return rfail(r, "'%s' object is not iterable", type_name(v));
    }
}

static jval dict_items(rt *r, jdict *d) {
    jval l = vlist(&r->a);
    for (int i = 0; i < d->n; i++) {
        jval pair = vlist(&r->a);
        pair.u.l->tuple = 1;
        if (push(r, pair.u.l, d->keys[i]) || push(r, pair.u.l, d->vals[i]) || push(r, l.u.l, pair)) break;
    }
    return l;
}

static int is_method(jval obj, const char *name) {
    static const char *str_m[] = {"startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "upper",
                                  "lower", "title", "capitalize", "replace", "find", "rfind", "count", "join",
                                  "splitlines", "isdigit", "isalpha", "isspace", "format", NULL};
    static const char *dict_m[] = {"items", "keys", "values", "get", NULL};
    const char **m = obj.k == V_STR ? str_m : (obj.k == V_DICT && !obj.u.d->ns) ? dict_m : NULL;
    for (int i = 0; m && m[i]; i++)
        if (strcmp(m[i], name) == 0) return 1;
    return 0;
}

static jval get_attr(rt *r, jval obj, const char *name) {
    if (is_method(obj, name)) return mk_func(r, FN_METHOD, name, obj);
    if (obj.k == V_DICT) {
        if (spend(r, obj.u.d->n)) return UNDEF;
        int i = dict_find_s(obj.u.d, name);
        return i >= 0 ? obj.u.d->vals[i] : UNDEF;
    }
    return UNDEF;
}

static jval get_item(rt *r, jval obj, jval key) {
    if (obj.k == V_DICT) {
        int i = dict_find(r, obj.u.d, key);
        if (i >= 0) return obj.u.d->vals[i];
        if (key.k == V_STR && !obj.u.d->ns) {
            char *name = astrndup(&r->a, key.u.s.p, key.u.s.n);
            if (is_method(obj, name)) return mk_func(r, FN_METHOD, name, obj);
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
        char *name = astrndup(&r->a, key.u.s.p, key.u.s.n);
        return get_attr(r, obj, name);
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

static int do_slice(rt *r, jval obj, jval a, jval b, jval c, jval *out) {
    jval parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (parts[i].k != V_UNDEF && parts[i].k != V_NONE && parts[i].k != V_INT && parts[i].k != V_BOOL)
            return rfail(r, "slice indices must be integers");
    if ((c.k == V_INT || c.k == V_BOOL) && num_i(c) == 0) return rfail(r, "slice step cannot be zero");
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
        *out = buf_to_str(r, &s);
        cast_buf_free(&s);
        return 0;
    }
    if (obj.k == V_UNDEF) {
        *out = UNDEF;
        return 0;
    }
    return rfail(r, "'%s' object is not subscriptable", type_name(obj));
}

/* --- operators */

/* Python's <, as -1 / 0 / 1 in *out; depth bounds nested lists. */
static int compare_at(rt *r, jval a, jval b, int *out, int depth) {
    if (spend(r, 1)) return -1;
    if (depth > MAX_VALUE_NEST) return over_limit(r, "value nesting");
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
            if (veq_at(r, a.u.l->v[i], b.u.l->v[i], depth + 1)) continue;
            if (r->over) return -1;
            return compare_at(r, a.u.l->v[i], b.u.l->v[i], out, depth + 1);
        }
        *out = a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
        return 0;
    }
    return rfail(r, "cannot compare %s with %s", type_name(a), type_name(b));
}

static int compare(rt *r, jval a, jval b, int *out) { return compare_at(r, a, b, out, 0); }

static int contains(rt *r, jval hay, jval needle, int *out) {
    switch (hay.k) {
    case V_STR:
        if (needle.k != V_STR) return rfail(r, "'in <string>' requires a string, not %s", type_name(needle));
        *out = memfind(r, hay.u.s.p, hay.u.s.n, needle.u.s.p, needle.u.s.n) != NULL;
        return r->over ? -1 : 0;
    case V_LIST:
        *out = 0;
        for (int i = 0; i < hay.u.l->n && !*out && !r->over; i++) *out = veq(r, hay.u.l->v[i], needle);
        return r->over ? -1 : 0;
    case V_DICT: *out = dict_find(r, hay.u.d, needle) >= 0; return r->over ? -1 : 0;
    case V_UNDEF: *out = 0; return 0;
    default: return rfail(r, "argument of type '%s' is not iterable", type_name(hay));
    }
}

static int binop(rt *r, int op, jval a, jval b, jval *out) {
    if (op == OP_ADD) {
        if (a.k == V_STR && b.k == V_STR) {
            if (spend_bytes(r, a.u.s.n + b.u.s.n) || room(r, a.u.s.n + b.u.s.n)) return -1;
            char *p = aalloc(&r->a, a.u.s.n + b.u.s.n + 1);
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
        if (times > MAX_RANGE) return rfail(r, "repetition too large");
        if (a.k == V_STR) {
            /* the size is known: refuse it before building it */
            if (times > 0 && (room_items(r, (size_t)times, a.u.s.n) || spend_bytes(r, (size_t)times * a.u.s.n)))
                return -1;
            cast_buf s = {0};
            for (int64_t i = 0; i < times; i++) cast_buf_append(&s, a.u.s.p, a.u.s.n);
            *out = buf_to_str(r, &s);
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
        return rfail(r, "unsupported operand types for %s: '%s' and '%s'", sym[op], type_name(a), type_name(b));
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
            return rfail(r, "integer overflow");
        *out = vint(k);
        return 0;
    case OP_DIV:
        if (y == 0) return rfail(r, "division by zero");
        *out = vfloat(x / y);
        return 0;
    case OP_FDIV:
    case OP_MOD:
        if (ints) {
            if (j == 0) return rfail(r, "integer division or modulo by zero");
            if (i == INT64_MIN && j == -1) return rfail(r, "integer overflow");
            /* floor division and a modulo with the divisor's sign; the
             * remainder is adjusted directly, as i - q * j may overflow */
            int64_t q = i / j, m = i % j;
            if (m != 0 && ((m < 0) != (j < 0))) {
                q--;
                m += j;
            }
            *out = op == OP_FDIV ? vint(q) : vint(m);
        } else {
            if (y == 0) return rfail(r, "float division by zero");
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
                    if (__builtin_mul_overflow(p, i, &p)) return rfail(r, "integer overflow");
            *out = vint(p);
        } else *out = vfloat(pow(x, y));
        return 0;
    }
    return rfail(r, "bad operator");
}

/* --- tests */

static int do_test(rt *r, const char *name, jval v, const args *a, int *out) {
    jval x = arg(a, 0, NULL);
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
        if (j == 0) return rfail(r, "divisibleby 0");
        *out = j == -1 || i % j == 0; /* INT64_MIN % -1 overflows in C */
    } else if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) *out = veq(r, v, x);
    else if (!strcmp(name, "ne") || !strcmp(name, "!=")) *out = !veq(r, v, x);
    else if (!strcmp(name, "sameas")) *out = veq(r, v, x) && v.k == x.k;
    else if (!strcmp(name, "lt") || !strcmp(name, "le") || !strcmp(name, "gt") || !strcmp(name, "ge") ||
             !strcmp(name, "lessthan") || !strcmp(name, "greaterthan")) {
        int c;
        if (compare(r, v, x, &c)) return -1;
        if (!strcmp(name, "lt") || !strcmp(name, "lessthan")) *out = c < 0;
        else if (!strcmp(name, "le")) *out = c <= 0;
        else if (!strcmp(name, "gt") || !strcmp(name, "greaterthan")) *out = c > 0;
        else *out = c >= 0;
    } else if (!strcmp(name, "in")) return contains(r, x, v, out);
    else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v.k != V_STR) *out = 0;
        else {
            jval c = str_case(r, v, name[0] == 'u');
            *out = veq(r, c, v);
        }
    } else return rfail(r, "unknown test '%s'", name);
    return r->over ? -1 : 0;
}

/* --- filters */

static int call_value(rt *r, jval f, const args *a, jval *out);

static jval attr_path(rt *r, jval v, jval attr) {
    /* "a.b" attribute paths, as Jinja's map/selectattr/sort accept */
    if (attr.k != V_STR) return get_item(r, v, attr);
    const char *p = attr.u.s.p, *end = p + attr.u.s.n;
    if (spend_bytes(r, attr.u.s.n)) return UNDEF;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *stop = dot ? dot : end;
        char *name = astrndup(&r->a, p, (size_t)(stop - p));
        char *e;
        long idx = strtol(name, &e, 10);
        if (*name && !*e) v = get_item(r, v, vint(idx));
        else v = get_item(r, v, vstr(name, strlen(name)));
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
        if (compare(r, v[i].key, v[j].key, &c)) return -1;
        tmp[k++] = c <= 0 ? v[i++] : v[j++];
    }
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, sizeof(keyed) * (size_t)n);
    return 0;
}

static int do_filter(rt *r, const char *name, jval v, const args *a, jval *out) {
    jval a0 = arg(a, 0, NULL);
    if (!strcmp(name, "trim") || !strcmp(name, "strip")) {
        if (v.k != V_STR) v = to_str(r, v);
        *out = str_strip(r, v, arg(a, 0, "chars"), 1, 1);
        return r->over ? -1 : 0;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        if (v.k == V_STR) {
            if (spend_bytes(r, v.u.s.n)) return -1;
            *out = vint((int64_t)u8_len(v.u.s.p, v.u.s.n));
        }
        else if (v.k == V_LIST) *out = vint(v.u.l->n);
        else if (v.k == V_DICT) *out = vint(v.u.d->n);
        else if (v.k == V_UNDEF) *out = vint(0);
        else return rfail(r, "object of type '%s' has no len()", type_name(v));
        return 0;
    }
    if (!strcmp(name, "string")) {
        *out = to_str(r, v);
        return 0;
    }
    if (!strcmp(name, "safe")) {
        *out = v;
        return 0;
    }
    if (!strcmp(name, "tojson")) {
        /* transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
        jval ind = arg(a, 1, "indent");
        int64_t indent = ind.k == V_INT ? ind.u.i : -1;
        if (truthy(arg(a, 0, "ensure_ascii")) || truthy(arg(a, 2, "separators")) || truthy(arg(a, 3, "sort_keys")))
            return rfail(r, "tojson: only the indent argument is supported");
        cast_buf b = {0};
        if (json_val(r, v, &b, indent, 0)) {
            cast_buf_free(&b);
            return -1;
        }
        *out = buf_to_str(r, &b);
        cast_buf_free(&b);
        return 0;
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper") || !strcmp(name, "title") || !strcmp(name, "capitalize")) {
        v = to_str(r, v);
        int mode = name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 't' ? 4 : 3;
        *out = str_case(r, v, mode);
        return 0;
    }
    if (!strcmp(name, "replace")) {
        jval old = arg(a, 0, "old"), new_ = arg(a, 1, "new"), cnt = arg(a, 2, "count");
        v = to_str(r, v);
        if (want_str(r, old, "replace") || want_str(r, new_, "replace")) return -1;
        *out = str_replace(r, v, old, new_, cnt.k == V_INT ? cnt.u.i : -1);
        return r->over ? -1 : 0;
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jval dv = arg(a, 0, "default_value");
        if (dv.k == V_UNDEF) dv = vstr("", 0);
        int boolean = truthy(arg(a, 1, "boolean"));
        *out = (v.k == V_UNDEF || (boolean && !truthy(v))) ? dv : v;
        return 0;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jlist *l;
        if (iter_list(r, v, &l)) return -1;
        *out = l->n ? l->v[name[0] == 'f' ? 0 : l->n - 1] : UNDEF;
        return 0;
    }
    if (!strcmp(name, "list")) {
        jlist *l;
        if (iter_list(r, v, &l)) return -1;
        jval c = vlist(&r->a);
        for (int i = 0; i < l->n; i++)
            if (push(r, c.u.l, l->v[i])) return -1;
        *out = c;
        return 0;
    }
    if (!strcmp(name, "items")) {
        if (v.k == V_UNDEF) *out = vlist(&r->a);
        else if (v.k != V_DICT) return rfail(r, "items: expected a mapping, got %s", type_name(v));
        else *out = dict_items(r, v.u.d);
        return 0;
    }
    if (!strcmp(name, "reverse")) {
        if (v.k == V_STR) return do_slice(r, v, UNDEF, UNDEF, vint(-1), out);
        jlist *l;
        if (iter_list(r, v, &l)) return -1;
        jval c = vlist(&r->a);
        for (int i = l->n - 1; i >= 0; i--)
            if (push(r, c.u.l, l->v[i])) return -1;
        *out = c;
        return 0;
    }
    if (!strcmp(name, "join")) {
        jlist *l;
        if (iter_list(r, v, &l)) return -1;
        jval sep = arg(a, 0, "d"), attr = arg(a, 1, "attribute");
        if (sep.k == V_UNDEF) sep = vstr("", 0);
        sep = to_str(r, sep);
        cast_buf b = {0};
        for (int i = 0; i < l->n && !r->over; i++) {
            if (i && !spend_bytes(r, sep.u.s.n) && !room(r, b.len + sep.u.s.n)) cast_buf_append(&b, sep.u.s.p, sep.u.s.n);
            str_val(r, attr.k != V_UNDEF ? attr_path(r, l->v[i], attr) : l->v[i], &b);
        }
        *out = buf_to_str(r, &b);
        cast_buf_free(&b);
        return r->over ? -1 : 0;
    }
    if (!strcmp(name, "map")) {
        jlist *l;
        if (iter_list(r, v, &l)) return -1;
        jval attr = arg(a, -1, "attribute"), dflt = arg(a, -1, "default");
        jval res = vlist(&r->a);
        for (int i = 0; i < l->n; i++) {
            jval x;
            if (attr.k != V_UNDEF) {
                x = attr_path(r, l->v[i], attr);
                if (x.k == V_UNDEF && dflt.k != V_UNDEF) x = dflt;
            } else {
                if (want_str(r, a0, "map")) return -1;
                args sub = {.np = a->np - 1, .p = a->p + 1, .nk = a->nk, .kn = a->kn, .kv = a->kv};
                char *fname = astrndup(&r->a, a0.u.s.p, a0.u.s.n);
                if (do_filter(r, fname, l->v[i], &sub, &x)) return -1;
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
        if (iter_list(r, v, &l)) return -1;
        int ti = by_attr ? 1 : 0;
        jval test = arg(a, ti, NULL);
        args sub = {.np = a->np > ti + 1 ? a->np - ti - 1 : 0, .p = a->p + ti + 1};
        jval res = vlist(&r->a);
        for (int i = 0; i < l->n; i++) {
            jval x = by_attr ? attr_path(r, l->v[i], a0) : l->v[i];
            int ok;
            if (test.k == V_UNDEF) ok = truthy(x);
            else {
                if (want_str(r, test, name)) return -1;
                char *tname = astrndup(&r->a, test.u.s.p, test.u.s.n);
                if (do_test(r, tname, x, &sub, &ok)) return -1;
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
            if (v.k != V_DICT) return rfail(r, "dictsort: expected a mapping");
            l = dict_items(r, v.u.d).u.l;
        } else if (iter_list(r, v, &l)) return -1;
        jval rev = arg(a, dictsort ? 2 : 0, "reverse"), cs = arg(a, dictsort ? 0 : 1, "case_sensitive");
        jval attr = arg(a, dictsort ? -1 : 2, "attribute");
        keyed *k = aalloc(&r->a, sizeof(keyed) * (size_t)(l->n ? l->n : 1));
        keyed *tmp = aalloc(&r->a, sizeof(keyed) * (size_t)(l->n ? l->n : 1));
        for (int i = 0; i < l->n; i++) {
            k[i].val = l->v[i];
            k[i].key = dictsort ? l->v[i].u.l->v[0] : attr.k != V_UNDEF ? attr_path(r, l->v[i], attr) : l->v[i];
            /* case-insensitive: lowered once here, not at every comparison */
            if (!truthy(cs) && k[i].key.k == V_STR) k[i].key = str_case(r, k[i].key, 0);
        }
        if (sort_keyed(r, k, tmp, l->n)) return -1;
        jval res = vlist(&r->a);
        for (int i = 0; i < l->n; i++)
            if (push(r, res.u.l, k[truthy(rev) ? l->n - 1 - i : i].val)) return -1;
        *out = res;
        return 0;
    }
    if (!strcmp(name, "unique")) {
        jlist *l;
        if (iter_list(r, v, &l)) return -1;
        jval res = vlist(&r->a);
        for (int i = 0; i < l->n; i++) {
            int seen;
            if (contains(r, res, l->v[i], &seen)) return -1;
            if (!seen && push(r, res.u.l, l->v[i])) return -1;
        }
        *out = res;
        return 0;
    }
    if (!strcmp(name, "sum") || !strcmp(name, "min") || !strcmp(name, "max")) {
        jlist *l;
        if (iter_list(r, v, &l)) return -1;
        if (name[1] == 'u') {
            jval attr = arg(a, 0, "attribute"), acc = arg(a, 1, "start");
            if (acc.k == V_UNDEF) acc = vint(0);
            for (int i = 0; i < l->n; i++)
                if (binop(r, OP_ADD, acc, attr.k != V_UNDEF ? attr_path(r, l->v[i], attr) : l->v[i], &acc)) return -1;
            *out = acc;
            return 0;
        }
        *out = UNDEF;
        for (int i = 0; i < l->n; i++) {
            int c = 0;
            if (i && compare(r, l->v[i], *out, &c)) return -1;
            if (!i || (name[1] == 'i' ? c < 0 : c > 0)) *out = l->v[i];
        }
        return 0;
    }
    if (!strcmp(name, "int")) {
        if (v.k == V_STR) {
            if (spend_bytes(r, v.u.s.n)) return -1;
            char *s = astrndup(&r->a, v.u.s.p, v.u.s.n), *e;
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
            char *s = astrndup(&r->a, v.u.s.p, v.u.s.n), *e;
            double x = strtod(s, &e);
            *out = (*s && !*e) ? vfloat(x) : (a0.k == V_UNDEF ? vfloat(0) : a0);
        } else if (is_num(v)) *out = vfloat(num_f(v));
        else *out = a0.k == V_UNDEF ? vfloat(0) : a0;
        return 0;
    }
    if (!strcmp(name, "abs")) {
        if (!is_num(v)) return rfail(r, "abs: expected a number");
        if (v.k == V_INT && v.u.i == INT64_MIN) return rfail(r, "integer overflow");
        *out = v.k == V_FLOAT ? vfloat(fabs(v.u.f)) : vint(num_i(v) < 0 ? -num_i(v) : num_i(v));
        return 0;
    }
    if (!strcmp(name, "round")) {
        if (!is_num(v)) return rfail(r, "round: expected a number");
        jval prec = arg(a, 0, "precision");
        double m = pow(10, prec.k == V_INT ? (double)prec.u.i : 0);
        *out = vfloat(round(num_f(v) * m) / m);
        return 0;
    }
    if (!strcmp(name, "indent")) {
        /* Jinja 3: lines after the first get the prefix unless empty
         * (blank=True: all of them); first=True prefixes the first line. */
        jval w = arg(a, 0, "width");
        int first = truthy(arg(a, 1, "first")), blank = truthy(arg(a, 2, "blank"));
        cast_buf pad = {0}, b = {0};
        if (w.k == V_INT && (w.u.i < 0 || w.u.i > 10000)) return rfail(r, "indent width out of range");
        if (w.k == V_STR) cast_buf_append(&pad, w.u.s.p, w.u.s.n);
        else
            for (int64_t i = 0; i < (w.k == V_INT ? w.u.i : 4); i++) cast_buf_putc(&pad, ' ');
        v = to_str(r, v);
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
        *out = buf_to_str(r, &b);
        cast_buf_free(&b);
        cast_buf_free(&pad);
        return 0;
    }
    if (!strcmp(name, "wordcount")) {
        v = to_str(r, v);
        *out = vint(str_split(r, v, UNDEF, -1).u.l->n);
        return r->over ? -1 : 0;
    }
    if (!strcmp(name, "attr")) {
        if (want_str(r, a0, "attr")) return -1;
        *out = get_attr(r, v, astrndup(&r->a, a0.u.s.p, a0.u.s.n));
        return 0;
    }
    if (!strcmp(name, "e") || !strcmp(name, "escape") || !strcmp(name, "forceescape")) {
        v = to_str(r, v);
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
        *out = buf_to_str(r, &b);
        cast_buf_free(&b);
        return 0;
    }
    return rfail(r, "unsupported filter '%s'", name);
}

/* --- methods and globals */

static int call_method(rt *r, jval self, const char *m, const args *a, jval *out) {
    jval a0 = arg(a, 0, NULL), a1 = arg(a, 1, NULL);
    if (self.k == V_DICT) {
        if (!strcmp(m, "items")) *out = dict_items(r, self.u.d);
        else if (!strcmp(m, "keys") || !strcmp(m, "values")) {
            jval l = vlist(&r->a);
            for (int i = 0; i < self.u.d->n; i++)
                if (push(r, l.u.l, m[0] == 'k' ? self.u.d->keys[i] : self.u.d->vals[i])) return -1;
            *out = l;
        } else {
            int i = dict_find(r, self.u.d, a0);
            *out = i >= 0 ? self.u.d->vals[i] : (a1.k == V_UNDEF ? NONE : a1);
        }
        return r->over ? -1 : 0;
    }
    /* string methods */
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        if (a0.k != V_STR && a0.k != V_LIST) return rfail(r, "%s expects a string", m);
        *out = vbool(str_affix(r, self, a0, m[0] == 'e'));
    } else if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        if (a0.k != V_UNDEF && a0.k != V_NONE && want_str(r, a0, m)) return -1;
        *out = str_strip(r, self, a0, m[0] != 'r', m[0] != 'l');
    } else if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        jval sep = arg(a, 0, "sep"), ms = arg(a, 1, "maxsplit");
        if (sep.k == V_STR && sep.u.s.n == 0) return rfail(r, "empty separator");
        if (sep.k != V_UNDEF && sep.k != V_NONE && want_str(r, sep, m)) return -1;
        int64_t maxsplit = ms.k == V_INT ? ms.u.i : -1;
        if (m[0] == 'r' && maxsplit >= 0) return rfail(r, "rsplit with maxsplit is not supported");
        *out = str_split(r, self, sep, maxsplit);
    } else if (!strcmp(m, "upper") || !strcmp(m, "lower") || !strcmp(m, "title") || !strcmp(m, "capitalize")) {
        *out = str_case(r, self, m[0] == 'l' ? 0 : m[0] == 'u' ? 1 : m[0] == 't' ? 2 : 3);
    } else if (!strcmp(m, "replace")) {
        if (want_str(r, a0, m) || want_str(r, a1, m)) return -1;
        jval cnt = arg(a, 2, "count");
        *out = str_replace(r, self, a0, a1, cnt.k == V_INT ? cnt.u.i : -1);
    } else if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "count")) {
        if (want_str(r, a0, m)) return -1;
        if (m[0] == 'c') {
            int64_t c = 0;
            if (spend_bytes(r, self.u.s.n)) return -1;
            if (a0.u.s.n == 0) c = (int64_t)u8_len(self.u.s.p, self.u.s.n) + 1;
            else
                for (const char *p = self.u.s.p, *f; (f = memfind(r, p, self.u.s.n - (size_t)(p - self.u.s.p), a0.u.s.p, a0.u.s.n));
                     p = f + a0.u.s.n)
                    c++;
            *out = vint(c);
        } else {
            const char *best = NULL;
            for (const char *p = self.u.s.p, *f; (f = memfind(r, p, self.u.s.n - (size_t)(p - self.u.s.p), a0.u.s.p, a0.u.s.n));
                 p = f + 1) {
                best = f;
                if (m[0] == 'f' || f >= self.u.s.p + self.u.s.n) break;
            }
            if (spend_bytes(r, self.u.s.n)) return -1;
            *out = vint(best ? (int64_t)u8_len(self.u.s.p, (size_t)(best - self.u.s.p)) : -1);
        }
    } else if (!strcmp(m, "join")) {
        jlist *l;
        if (iter_list(r, a0, &l)) return -1;
        cast_buf b = {0};
        for (int i = 0; i < l->n; i++) {
            if (l->v[i].k != V_STR) {
                cast_buf_free(&b);
                return rfail(r, "join: sequence item %d: expected str, %s found", i, type_name(l->v[i]));
            }
            size_t add = (i ? self.u.s.n : 0) + l->v[i].u.s.n;
            if (spend_bytes(r, add) || room(r, b.len + add)) {
                cast_buf_free(&b);
                return -1;
            }
            if (i) cast_buf_append(&b, self.u.s.p, self.u.s.n);
            cast_buf_append(&b, l->v[i].u.s.p, l->v[i].u.s.n);
        }
        *out = buf_to_str(r, &b);
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
            int32_t c = u8_next(self.u.s.p, self.u.s.n, &i);
            const utf8proc_property_t *pr = utf8proc_get_property(c);
            if (!strcmp(m, "isdigit")) ok = pr->category == UTF8PROC_CATEGORY_ND;
            else if (!strcmp(m, "isalpha")) ok = pr->category >= UTF8PROC_CATEGORY_LU && pr->category <= UTF8PROC_CATEGORY_LO;
            else ok = py_space(c);
        }
        *out = vbool(ok);
    } else {
        return rfail(r, "unsupported method str.%s", m);
    }
    return r->over ? -1 : 0;
}

static int call_global(rt *r, const char *name, const args *a, jval *out) {
    if (!strcmp(name, "raise_exception")) {
        jval msg = to_str(r, arg(a, 0, NULL));
        return rfail(r, "raise_exception: %.*s", (int)(msg.u.s.n > 600 ? 600 : msg.u.s.n), msg.u.s.p);
    }
    if (!strcmp(name, "range")) {
        int64_t start = 0, stop = 0, step = 1;
        if (a->np == 1) {
            if (want_int(r, a->p[0], "range", &stop)) return -1;
        } else if (a->np == 2 || a->np == 3) {
            if (want_int(r, a->p[0], "range", &start) || want_int(r, a->p[1], "range", &stop)) return -1;
            if (a->np == 3 && want_int(r, a->p[2], "range", &step)) return -1;
        } else return rfail(r, "range expects 1 to 3 arguments");
        if (step == 0) return rfail(r, "range() arg 3 must not be zero");
        double count = ((double)stop - (double)start) / (double)step; /* doubles: no overflow */
        if (count > (double)MAX_RANGE) return rfail(r, "range too large");
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
            for (int i = 0; i < a->p[0].u.d->n; i++) dict_set(r, d.u.d, a->p[0].u.d->keys[i], a->p[0].u.d->vals[i]);
        for (int i = 0; i < a->nk; i++) dict_set_s(r, d.u.d, a->kn[i], a->kv[i]);
        *out = d;
        return r->over ? -1 : 0;
    }
    if (!strcmp(name, "strftime_now")) {
        jval f = arg(a, 0, NULL);
        if (want_str(r, f, "strftime_now")) return -1;
        char *fmt = astrndup(&r->a, f.u.s.p, f.u.s.n);
        char buf[256];
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        size_t n = strftime(buf, sizeof buf, fmt, &tmv);
        *out = vstr_copy(&r->a, buf, n);
        return 0;
    }
    return rfail(r, "'%s' is undefined", name);
}

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
    if (r->depth >= MAX_DEPTH) return rfail(r, "macro recursion too deep");
    frame *f = new_frame(r, r->root);
    if (a->np > m->nnames) return rfail(r, "macro '%s' takes %d arguments", m->attr, m->nnames);
    for (int i = 0; i < m->nnames; i++) {
        jval v = arg(a, i, m->names[i]);
        frame_set(r, f, m->names[i], v);
    }
    /* defaults are evaluated in the macro's own scope, after earlier params */
    for (int i = 0; i < m->nnames; i++) {
        jval v = arg(a, i, m->names[i]);
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
    *out = buf_to_str(r, &tmp);
    cast_buf_free(&tmp);
    return 0;
}

static int call_value(rt *r, jval f, const args *a, jval *out) {
    if (f.k != V_FUNC) return rfail(r, "'%s' object is not callable", type_name(f));
    switch (f.u.fn->kind) {
    case FN_GLOBAL: return call_global(r, f.u.fn->name, a, out);
    case FN_METHOD: return call_method(r, f.u.fn->self, f.u.fn->name, a, out);
    default: return call_macro(r, f.u.fn->macro, a, out);
    }
}

/* --- expression evaluation */


static int eval_args(rt *r, frame *f, const ex *e, args *a) {
    memset(a, 0, sizeof *a);
    a->np = e->nargs;
    a->nk = e->nkw;
    a->p = aalloc(&r->a, sizeof(jval) * (size_t)(e->nargs + 1));
    a->kv = aalloc(&r->a, sizeof(jval) * (size_t)(e->nkw + 1));
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
    if (obj->k == EX_NAME) return rfail(r, "'%s' is undefined", obj->name);
    if (obj->k == EX_ATTR) return rfail(r, "'%s' is undefined (reading '%s')", obj->name, attr ? attr : "[]");
    return rfail(r, "undefined value has no attribute '%s'", attr ? attr : "[]");
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
            dict_set(r, d.u.d, a, b);
        }
        *out = d;
        break;
    }
    case EX_ATTR:
        if (eval(r, f, e->a, &a)) return -1;
        if (a.k == V_UNDEF) return undefined_access(r, e->a, e->name);
        *out = get_attr(r, a, e->name);
        break;
    case EX_ITEM:
        if (eval(r, f, e->a, &a) || eval(r, f, e->b, &b)) return -1;
        if (a.k == V_UNDEF) return undefined_access(r, e->a, NULL);
        *out = get_item(r, a, b);
        break;
    case EX_SLICE: {
        jval p[3] = {UNDEF, UNDEF, UNDEF};
        if (eval(r, f, e->a, &a)) return -1;
        for (int i = 0; i < 3; i++)
            if (e->args[i] && eval(r, f, e->args[i], &p[i])) return -1;
        rc = do_slice(r, a, p[0], p[1], p[2], out);
        break;
    }
    case EX_CALL: {
        args ar;
        if (eval(r, f, e->a, &a) || eval_args(r, f, e, &ar)) return -1;
        r->line = e->line;
        if (a.k == V_UNDEF && e->a->k == EX_NAME) return rfail(r, "'%s' is undefined", e->a->name);
        rc = call_value(r, a, &ar, out);
        break;
    }
    case EX_FILTER: {
        args ar;
        if (eval(r, f, e->a, &a) || eval_args(r, f, e, &ar)) return -1;
        r->line = e->line;
        rc = do_filter(r, e->name, a, &ar, out);
        break;
    }
    case EX_TEST: {
        args ar;
        int t;
        if (eval(r, f, e->a, &a) || eval_args(r, f, e, &ar)) return -1;
        r->line = e->line;
        if (do_test(r, e->name, a, &ar, &t)) return -1;
        *out = vbool(e->neg ? !t : t);
        break;
    }
    case EX_NOT:
        if (eval(r, f, e->a, &a)) return -1;
        *out = vbool(!truthy(a));
        break;
    case EX_NEG:
    case EX_POS:
        if (eval(r, f, e->a, &a)) return -1;
        if (!is_num(a)) return rfail(r, "bad operand type for unary %c: '%s'", e->k == EX_NEG ? '-' : '+', type_name(a));
        if (e->k == EX_POS) *out = a.k == V_BOOL ? vint(a.u.b) : a;
        else if (a.k == V_INT && a.u.i == INT64_MIN) return rfail(r, "integer overflow");
        else *out = a.k == V_FLOAT ? vfloat(-a.u.f) : vint(-num_i(a));
        break;
    case EX_AND:
    case EX_OR:
        if (eval(r, f, e->a, &a)) return -1;
        if (truthy(a) == (e->k == EX_OR)) *out = a;
        else rc = eval(r, f, e->b, out);
        break;
    case EX_BIN:
        if (eval(r, f, e->a, &a) || eval(r, f, e->b, &b)) return -1;
        r->line = e->line;
        if (a.k == V_UNDEF || b.k == V_UNDEF) {
            const char *nm = a.k == V_UNDEF ? (e->a->k == EX_NAME ? e->a->name : NULL) : (e->b->k == EX_NAME ? e->b->name : NULL);
            if (nm) return rfail(r, "'%s' is undefined", nm);
            return rfail(r, "an operand is undefined");
        }
        rc = binop(r, e->op, a, b, out);
        break;
    case EX_CONCAT: {
        if (eval(r, f, e->a, &a) || eval(r, f, e->b, &b)) return -1;
        cast_buf s = {0};
        str_val(r, a, &s);
        str_val(r, b, &s);
        *out = buf_to_str(r, &s);
        cast_buf_free(&s);
        break;
    }
    case EX_CMP: {
        if (eval(r, f, e->a, &a) || eval(r, f, e->b, &b)) return -1;
        r->line = e->line;
        int c;
        switch (e->op) {
        case OP_EQ: *out = vbool(veq(r, a, b)); break;
        case OP_NE: *out = vbool(!veq(r, a, b)); break;
        case OP_IN:
        case OP_NOTIN:
            if (contains(r, b, a, &c)) return -1;
            *out = vbool(e->op == OP_IN ? c : !c);
            break;
        default:
            if (compare(r, a, b, &c)) return -1;
            *out = vbool(e->op == OP_LT ? c < 0 : e->op == OP_LE ? c <= 0 : e->op == OP_GT ? c > 0 : c >= 0);
        }
        break;
    }
    case EX_COND:
        if (eval(r, f, e->b, &a)) return -1;
        if (truthy(a)) rc = eval(r, f, e->a, out);
        else if (e->c) rc = eval(r, f, e->c, out);
        else *out = UNDEF;
        break;
    default: return rfail(r, "internal: bad expression");
    }
    if (rc == 0) r->line = prev_line;
    return rc;
}

/* Every evaluation counts as work and as nesting (the C stack); a value
 * built past a limit is never used: the limit fails the render. */
static int eval(rt *r, frame *f, const ex *e, jval *out) {
    if (spend(r, 1)) return -1;
    if (r->nest >= MAX_NEST) return over_limit(r, "nesting");
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
        if (iter_list(r, v, &l)) return -1;
    } else l = v.u.l;
    if (l->n != s->nnames)
        return rfail(r, "cannot unpack %d values into %d names", l->n, s->nnames);
    for (int i = 0; i < s->nnames; i++) frame_set(r, f, s->names[i], l->v[i]);
    return 0;
}

static int exec_for(rt *r, frame *f, const st *s) {
    jval seq;
    if (eval(r, f, s->e, &seq)) return -1;
    r->line = s->line;
    jlist *items;
    if (iter_list(r, seq, &items)) return -1;
    if (s->cond) {
        jval kept = vlist(&r->a);
        for (int i = 0; i < items->n; i++) {
            frame *tf = new_frame(r, f);
            jval c;
            if (bind_targets(r, tf, s, items->v[i]) || eval(r, tf, s->cond, &c)) return -1;
            if (truthy(c) && push(r, kept.u.l, items->v[i])) return -1;
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
        dict_set_s(r, d, "index", vint(i + 1));
        dict_set_s(r, d, "index0", vint(i));
        dict_set_s(r, d, "revindex", vint(n - i));
        dict_set_s(r, d, "revindex0", vint(n - i - 1));
        dict_set_s(r, d, "first", vbool(i == 0));
        dict_set_s(r, d, "last", vbool(i == n - 1));
        dict_set_s(r, d, "length", vint(n));
        dict_set_s(r, d, "depth", vint(1));
        dict_set_s(r, d, "depth0", vint(0));
        dict_set_s(r, d, "previtem", i > 0 ? items->v[i - 1] : UNDEF);
        dict_set_s(r, d, "nextitem", i + 1 < n ? items->v[i + 1] : UNDEF);
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
        str_val(r, v, r->out);
        return r->over ? -1 : 0;
    case ST_IF:
        if (eval(r, f, s->e, &v)) return -1;
        return truthy(v) ? exec_body(r, f, s->body, s->nbody) : exec_body(r, f, s->orelse, s->norelse);
    case ST_FOR: return exec_for(r, f, s);
    case ST_SET:
        if (eval(r, f, s->e, &v)) return -1;
        r->line = s->line;
        if (s->attr) {
            jval ns = lookup(r, f, s->names[0]);
            if (ns.k != V_DICT || !ns.u.d->ns) return rfail(r, "cannot assign attribute on non-namespace object");
            dict_set_s(r, ns.u.d, s->attr, v);
            return r->over ? -1 : 0;
        }
        return bind_targets(r, f, s, v);
    case ST_SETBLOCK: {
        cast_buf tmp = {0}, *saved = capture_begin(r, &tmp);
        int rc = exec_body(r, f, s->body, s->nbody);
        capture_end(r, saved);
        if (rc == 0) frame_set(r, f, s->names[0], buf_to_str(r, &tmp));
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
            r->spans = agrow(&r->a, r->spans, r->nspans, &r->capspans, sizeof(cast_jinja_span));
            r->spans[r->nspans].start = start;
            r->spans[r->nspans].end = r->out->len;
            r->nspans++;
        }
        return rc;
    }
    }
    return rfail(r, "internal: bad statement");
}

static int exec_st(rt *r, frame *f, const st *s) {
    if (spend(r, 1) || room(r, 0)) return -1;
    if (r->nest >= MAX_NEST) return over_limit(r, "nesting");
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
            dict_set(r, d.u.d, vstr(k, strlen(k)), from_json(r, c));
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
    if (rc > 0) rc = rfail(&r, "break or continue outside a loop");
    if (rc == 0 && spans && r.nspans) {
        *spans = cast_xmalloc(sizeof(cast_jinja_span) * (size_t)r.nspans);
        for (int i = 0; i < r.nspans; i++) (*spans)[i] = r.spans[i];
        *n_spans = r.nspans;
    }
    if (rc) {
        out->len = start;
        if (out->data) out->data[start] = 0;
    }
    arena_free(&r.a);
    return rc ? -1 : 0;
}

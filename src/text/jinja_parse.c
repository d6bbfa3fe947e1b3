/* The parser: tokens to statements and expressions (Jinja's precedence:
 * or, and, not, comparisons, + -, ~, * / // %, **, unary, filters and tests,
 * postfix), and the public parse / free entry points. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_internal.h"

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
    ex *e = jinja_alloc(P->a, sizeof(ex));
    e->k = k;
    e->line = cur(P)->line;
    return e;
}

static const char *tok_name(parser *P, const tok *k) { return jinja_strndup(P->a, k->p, k->n); }

static void ex_push_arg(parser *P, ex *e, ex *x, int *cap) {
    e->args = jinja_grow(P->a, e->args, e->nargs, cap, sizeof(ex *));
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
            e->kwn = jinja_grow(P->a, e->kwn, e->nkw, &kc, sizeof(char *));
            kc = kcap;
            e->kwv = jinja_grow(P->a, e->kwv, e->nkw, &kc, sizeof(ex *));
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
        e->lit = vstr(jinja_strndup(P->a, s.data ? s.data : "", s.len), s.len);
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
            d->kwv = jinja_grow(P->a, d->kwv, d->nkw, &vcap, sizeof(ex *));
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
                x->args = jinja_alloc(P->a, 3 * sizeof(ex *));
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
    st *s = jinja_alloc(P->a, sizeof(st));
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
        s->names = jinja_grow(P->a, s->names, s->nnames, &cap, sizeof(char *));
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
        s->orelse = jinja_alloc(P->a, sizeof(st *));
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
            s->names = jinja_alloc(P->a, sizeof(char *));
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
            s->names = jinja_grow(P->a, s->names, s->nnames, &cap, sizeof(char *));
            s->defaults = jinja_grow(P->a, s->defaults, s->nnames, &dcap, sizeof(ex *));
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
        *out = jinja_grow(P->a, *out, *nout, &cap, sizeof(st *));
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
    char *s = jinja_alloc(&t->a, n + 1);
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
    tok *toks;
    int n_toks;
    if (jinja_lex(&t->a, s, m, t->what, err, &toks, &n_toks)) {
        cast_jinja_free(t);
        return -1;
    }
    parser P = {.a = &t->a, .t = toks, .n = n_toks, .what = t->what, .err = err};
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
    jinja_arena_free(&t->a);
    free(t->what);
    free(t);
}

int cast_jinja_has_generation(const cast_jinja *t) { return t && t->has_gen; }

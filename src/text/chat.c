/* Chat templates through the Jinja interpreter (jinja.h); built-in templates
 * are Jinja source too, so every template takes the same path. */
#include "text/chat.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "model/seqs.h"
#include "text/jinja.h"

struct cast_chat_template {
    cast_jinja *jinja;
    char *name;
    char *bos, *eos, *pad;
};

typedef struct builtin {
    const char *name;
    const char *bos, *eos; /* used when the tokenizer has none */
    const char *source;
} builtin;

/* Written for this project to produce the formats of the models named; for
 * system/user/assistant conversations they render as those models' own
 * templates do. */
static const builtin BUILTINS[] = {
    {"chatml", NULL, NULL,
     "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    /* Llama-2-chat: <<SYS>> folded into the first user turn, bos before each [INST] */
    {"llama2", "<s>", "</s>",
     "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
     "{% else %}{% set system = none %}{% set turns = messages %}{% endif %}"
     "{% for message in turns %}"
     "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('llama2 template: roles must alternate user/assistant after an optional system message') }}"
     "{% endif %}{% set content = message['content'] %}"
     "{% if loop.first and system is not none %}"
     "{% set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + content %}{% endif %}"
     "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
     "{% else %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"},
    /* Mistral-7B-Instruct v0.1/v0.2; a system message is prepended to the first
     * user message, as mistral-common does */
    {"mistral", "<s>", "</s>",
     "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
     "{% else %}{% set system = none %}{% set turns = messages %}{% endif %}{{ bos_token }}"
     "{% for message in turns %}"
     "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('mistral template: roles must alternate user/assistant after an optional system message') }}"
     "{% endif %}"
     "{% if message['role'] == 'user' %}{% set content = message['content'] %}"
     "{% if loop.first and system is not none %}{% set content = system + '\\n\\n' + content %}{% endif %}"
     "{{ '[INST] ' + content + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"},
    {"zephyr", "<s>", "</s>",
     "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"},
    /* Llama-3-Instruct (later hub revision: the header only with a generation prompt) */
    {"llama3", "<|begin_of_text|>", "<|eot_id|>",
     "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
     "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"},
    /* Qwen2.5-Instruct: ChatML with its default system message */
    {"qwen", NULL, "<|im_end|>",
     "{% if messages[0]['role'] != 'system' %}"
     "{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
     "{% endif %}{% for message in messages %}"
     "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    /* Qwen3: reasoning kept only after the last user query; an empty think
     * block on the final assistant turn */
    {"qwen3", NULL, "<|im_end|>",
     "{% set ns = namespace(last_query=messages|length - 1) %}"
     "{% for message in messages %}{% if message['role'] == 'user' %}{% set ns.last_query = loop.index0 %}{% endif %}"
     "{% endfor %}{% for message in messages %}"
     "{% if message['role'] == 'assistant' %}{% set content = message['content'] %}{% set reasoning = '' %}"
     "{% if '</think>' in content %}"
     "{% set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
     "{% set content = content.split('</think>')[-1].lstrip('\\n') %}{% endif %}"
     "{% if loop.index0 > ns.last_query and (loop.last or reasoning) %}"
     "{{ '<|im_start|>assistant\\n<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}"
     "{% else %}{{ '<|im_start|>assistant\\n' + content }}{% endif %}{{ '<|im_end|>\\n' }}"
     "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endif %}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    /* Phi-3-mini-instruct (first release): eos after the last turn when no
     * generation prompt follows */
    {"phi3", "<s>", "<|endoftext|>",
     "{% for message in messages %}{% if message['role'] in ['system', 'user', 'assistant'] %}"
     "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}{% endif %}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"},
};
#define N_BUILTINS ((int)(sizeof BUILTINS / sizeof BUILTINS[0]))

const char *cast_chat_builtin_names(void) { return "chatml, llama2, mistral, zephyr, llama3, qwen, qwen3, phi3"; }

static int unsupported(const char *what, const char *reason, cast_err *err) {
    return cast_fail(err, "%s: unsupported chat template (use --template NAME: %s): %s", what, cast_chat_builtin_names(),
                     reason);
}

void cast_chat_template_free(cast_chat_template *t) {
    if (!t) return;
    cast_jinja_free(t->jinja);
    free(t->name);
    free(t->bos);
    free(t->eos);
    free(t->pad);
    free(t);
}

const char *cast_chat_template_name(const cast_chat_template *t) { return t->name; }

/* The variables transformers passes: messages, add_generation_prompt, the
 * special tokens, tools/documents = None. */
static cast_json *make_vars(const cast_chat_template *t, const cast_message *m, int n, int add_gen, cast_err *err) {
    cast_buf b = {0};
    cast_buf_puts(&b, "{\"messages\":[");
    for (int i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content) {
            cast_buf_free(&b);
            cast_fail(err, "message %d has no %s", i + 1, m[i].role ? "content" : "role");
            return NULL;
        }
        cast_buf_puts(&b, i ? ",{\"role\":" : "{\"role\":");
        cast_buf_json_string(&b, m[i].role, strlen(m[i].role));
        cast_buf_puts(&b, ",\"content\":");
        cast_buf_json_string(&b, m[i].content, strlen(m[i].content));
        cast_buf_putc(&b, '}');
    }
    cast_buf_printf(&b, "],\"add_generation_prompt\":%s,\"tools\":null,\"documents\":null", add_gen ? "true" : "false");
    if (t->bos) {
        cast_buf_puts(&b, ",\"bos_token\":");
        cast_buf_json_string(&b, t->bos, strlen(t->bos));
    }
    if (t->eos) {
        cast_buf_puts(&b, ",\"eos_token\":");
        cast_buf_json_string(&b, t->eos, strlen(t->eos));
    }
    if (t->pad) {
        cast_buf_puts(&b, ",\"pad_token\":");
        cast_buf_json_string(&b, t->pad, strlen(t->pad));
    }
    cast_buf_putc(&b, '}');
    cast_json *j = cast_json_parse(b.data, b.len, "chat messages", err);
    cast_buf_free(&b);
    return j;
}

static int render(const cast_chat_template *t, const cast_message *m, int n, int add_gen, cast_buf *out,
                  cast_jinja_span **spans, int *n_spans, cast_err *err) {
    cast_json *vars = make_vars(t, m, n, add_gen, err);
    if (!vars) return -1;
    int rc = cast_jinja_render(t->jinja, vars, out, spans, n_spans, err);
    cast_json_free(vars);
    return rc;
}

int cast_chat_render(const cast_chat_template *t, const cast_message *m, int n, int add_generation_prompt, char **out,
                     cast_err *err) {
    *out = NULL;
    cast_buf b = {0};
    if (render(t, m, n, add_generation_prompt, &b, NULL, NULL, err)) {
        cast_buf_free(&b);
        return -1;
    }
    *out = cast_buf_steal(&b);
    return 0;
}

static int from_source(cast_chat_template **out, const char *source, const char *bos, const char *eos,
                       const char *name, const char *what, cast_err *err) {
    cast_chat_template *t = cast_xcalloc(1, sizeof *t);
    t->name = cast_xstrdup(name);
    t->bos = bos ? cast_xstrdup(bos) : NULL;
    t->eos = eos ? cast_xstrdup(eos) : NULL;
    if (cast_jinja_parse(&t->jinja, source, what, err)) {
        cast_chat_template_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int cast_chat_template_from_source(cast_chat_template **out, const char *source, const char *bos, const char *eos,
                                   const char *what, cast_err *err) {
    *out = NULL;
    return from_source(out, source, bos, eos, "template", what, err);
}

/* "WHAT: unsupported chat template (...): REASON", REASON being err's message
 * without its own leading "WHAT: ". */
static int wrap_unsupported(const char *what, cast_err *err) {
    char reason[sizeof err->msg];
    size_t wl = strlen(what);
    const char *msg = err->msg;
    if (strncmp(msg, what, wl) == 0 && msg[wl] == ':') msg += wl + (msg[wl + 1] == ' ' ? 2 : 1);
    snprintf(reason, sizeof reason, "%s", msg);
    return unsupported(what, reason, err);
}

int cast_chat_template_open(cast_chat_template **out, const cast_tokenizer *tok, const char *name, const char *what,
                            cast_err *err) {
    *out = NULL;
    if (!what) what = "model";
    const char *bos = tok ? cast_tokenizer_bos(tok) : NULL;
    const char *eos = tok ? cast_tokenizer_eos(tok) : NULL;
    const char *pad = tok ? cast_tokenizer_pad(tok) : NULL;
    const char *src = NULL, *label = NULL;
    char *file_src = NULL;
    if (!name || !strcmp(name, "auto")) {
        src = tok ? cast_tokenizer_chat_template(tok) : NULL;
        if (!src || !*src) return unsupported(what, "the tokenizer has no chat_template", err);
        label = "tokenizer";
    } else {
        for (int i = 0; i < N_BUILTINS && !src; i++)
            if (!strcmp(name, BUILTINS[i].name)) {
                src = BUILTINS[i].source;
                label = BUILTINS[i].name;
                if (!bos) bos = BUILTINS[i].bos;
                if (!eos) eos = BUILTINS[i].eos;
            }
        if (!src) {
            if (!strchr(name, '/') && !strstr(name, ".jinja")) {
                char reason[256];
                snprintf(reason, sizeof reason, "unknown template name '%s'", name);
                return unsupported(what, reason, err);
            }
            size_t len;
            if (cast_read_file(name, &file_src, &len, err)) return -1;
            src = file_src;
            label = what = name;
        }
    }
    cast_chat_template *t = NULL;
    int rc = from_source(&t, src, bos, eos, label, what, err);
    free(file_src);
    if (rc) return wrap_unsupported(what, err);
    if (pad) t->pad = cast_xstrdup(pad);
    /* a template that cannot render a plain exchange is of no use here;
     * finding out now gives one clear message instead of one per example */
    static const cast_message trial[] = {
        {"user", "Hello"}, {"assistant", "Hi! How can I help?"}, {"user", "Tell me a joke."}};
    char *text;
    if (cast_chat_render(t, trial, 3, 1, &text, err)) {
        cast_chat_template_free(t);
        return wrap_unsupported(what, err);
    }
    free(text);
    *out = t;
    return 0;
}

/* ------------------------------------------------------------- labels */

static const char *memfind(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0) return h;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == nd[0] && memcmp(h + i, nd, nn) == 0) return h + i;
    return NULL;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Where assistant content landed in the rendered text, searching from lo.
 * Templates may print it as is, trimmed (Llama 3, Llama 2), or with its
 * reasoning removed (Qwen3: the text after </think>). */
static int locate_content(const char *r, size_t rn, size_t lo, const char *c, size_t *cs, size_t *ce) {
    size_t n = strlen(c);
    const char *cand[3];
    size_t clen[3];
    int k = 0;
    cand[k] = c;
    clen[k++] = n;
    size_t a = 0, b = n;
    while (a < b && is_space(c[a])) a++;
    while (b > a && is_space(c[b - 1])) b--;
    if (a > 0 || b < n) {
        cand[k] = c + a;
        clen[k++] = b - a;
    }
    const char *think = NULL;
    for (const char *p = c; (p = strstr(p, "</think>")); p++) think = p;
    if (think) {
        const char *s = think + 8;
        size_t e = n - (size_t)(s - c);
        while (e > 0 && *s == '\n') s++, e--;
        while (e > 0 && is_space(s[e - 1])) e--;
        cand[k] = s;
        clen[k++] = e;
    }
    for (int i = 0; i < k; i++) {
        if (clen[i] == 0) continue;
        const char *f = memfind(r + lo, rn - lo, cand[i], clen[i]);
        if (f) {
            *cs = (size_t)(f - r);
            *ce = *cs + clen[i];
            return 0;
        }
    }
    if (b == a || (think && k == 3 && clen[2] == 0)) {
        *cs = *ce = lo; /* empty content: only the end-of-turn token */
        return 0;
    }
    return -1;
}

/* Length of the special token that starts at r[p], 0 if none. */
static size_t special_at(const cast_tokenizer *tok, const char *r, size_t rn, size_t p) {
    if (p >= rn || (r[p] != '<' && r[p] != '[')) return 0;
    char piece[80];
    for (size_t len = 2; len < sizeof piece && p + len <= rn; len++) {
        char last = r[p + len - 1];
        if (last != '>' && last != ']') continue;
        memcpy(piece, r + p, len);
        piece[len] = 0;
        int id = cast_tokenizer_token_id(tok, piece);
        if (id >= 0 && cast_tokenizer_is_special(tok, id)) return len;
    }
    return 0;
}

/* Number of leading ids shared by encode(text[0..upto)) and ids; *exact when
 * the prefix's tokens are all of them (a token boundary at upto). */
static int prefix_tokens(const cast_tokenizer *tok, const char *text, size_t upto, const int *ids, int n, int *exact,
                         cast_err *err) {
    int *p, np;
    if (cast_tokenizer_encode(tok, text, upto, 0, &p, &np, err)) return -1;
    int k = 0;
    while (k < np && k < n && p[k] == ids[k]) k++;
    *exact = k == np;
    free(p);
    return k;
}

static int mark_span(const cast_tokenizer *tok, const char *r, size_t cs, size_t ce, const int *ids, int *labels,
                     int n, cast_err *err) {
    if (ce <= cs) return 0;
    int exact;
    int first = prefix_tokens(tok, r, cs, ids, n, &exact, err);
    if (first < 0) return -1;
    int end = prefix_tokens(tok, r, ce, ids, n, &exact, err);
    if (end < 0) return -1;
    if (!exact && end < n) end++; /* a token straddling the span's end belongs to it */
    for (int i = first; i < end; i++) labels[i] = ids[i];
    return 0;
}

int cast_chat_encode(const cast_chat_template *t, const cast_tokenizer *tok, const cast_message *m, int n,
                     int add_generation_prompt, int **ids, int **labels, int *n_ids, cast_err *err) {
    *ids = *labels = NULL;
    *n_ids = 0;
    int n_assist = 0;
    for (int i = 0; i < n; i++) n_assist += m[i].role && !strcmp(m[i].role, "assistant");
    if (!add_generation_prompt && n_assist == 0) return cast_fail(err, "conversation has no assistant turn to train on");
    cast_buf r = {0};
    cast_jinja_span *spans = NULL;
    int n_spans = 0;
    int *tid = NULL, *lab = NULL, nt = 0;
    if (render(t, m, n, add_generation_prompt, &r, &spans, &n_spans, err)) goto fail;
    const char *text = r.data ? r.data : "";
    if (cast_tokenizer_encode(tok, text, r.len, 0, &tid, &nt, err)) goto fail;
    lab = cast_xmalloc(sizeof(int) * (size_t)(nt ? nt : 1));
    for (int i = 0; i < nt; i++) lab[i] = CAST_IGNORE_LABEL;
    if (!add_generation_prompt) {
        if (cast_jinja_has_generation(t->jinja)) {
            for (int s = 0; s < n_spans; s++)
                if (mark_span(tok, text, spans[s].start, spans[s].end, tid, lab, nt, err)) goto fail;
        } else {
            size_t prev_end = 0;
            for (int i = 0; i < n; i++) {
                if (strcmp(m[i].role, "assistant")) continue;
                /* the conversation so far plus a generation prompt renders as a
                 * prefix of the whole up to where this reply starts */
                size_t lo = prev_end;
                cast_buf pre = {0};
                cast_err perr;
                if (render(t, m, i, 1, &pre, NULL, NULL, &perr) == 0) {
                    size_t k = 0;
                    while (k < pre.len && k < r.len && pre.data[k] == text[k]) k++;
                    if (k > lo) lo = k;
                }
                cast_buf_free(&pre);
                size_t cs, ce;
                if (locate_content(text, r.len, lo, m[i].content, &cs, &ce)) {
                    cast_fail(err, "assistant message %d not found in the rendered conversation", i + 1);
                    goto fail;
                }
                size_t p = ce, tl = 0;
                if (ce == cs) {
                    /* empty content: what follows may be template text (Qwen3's
                     * empty think block); the turn still ends at its token */
                    while (p < r.len && !(tl = special_at(tok, text, r.len, p))) p++;
                    cs = p;
                } else {
                    while (p < r.len && (text[p] == ' ' || text[p] == '\t')) p++;
                    tl = special_at(tok, text, r.len, p);
                }
                if (tl) ce = p + tl;
                if (mark_span(tok, text, cs, ce, tid, lab, nt, err)) goto fail;
                prev_end = ce;
            }
        }
    }
    cast_buf_free(&r);
    free(spans);
    *ids = tid;
    *labels = lab;
    *n_ids = nt;
    return 0;
fail:
    cast_buf_free(&r);
    free(spans);
    free(tid);
    free(lab);
    return -1;
}

int cast_chat_open_folder(const char *dir, const char *template_name, cast_tokenizer **tok, cast_chat_template **tpl,
                          cast_err *err) {
    static const char *const names[] = {"tokenizer.json", "tokenizer.json.gz", "vocab.json"};
    *tok = NULL;
    *tpl = NULL;
    int found = template_name != NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !found; i++) {
        char *p = cast_path_join(dir, names[i]);
        found = cast_file_exists(p);
        free(p);
    }
    if (!found) return 0;
    if (cast_tokenizer_load(tok, dir, err)) return -1;
    if (cast_chat_template_open(tpl, *tok, template_name, dir, err)) {
        *tpl = NULL;
        if (template_name) {
            cast_tokenizer_free(*tok);
            *tok = NULL;
            return -1;
        }
    }
    return 0;
}

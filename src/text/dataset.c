/* Dataset readers. The format is recognised from the content: the first
 * non-blank byte ('{' JSONL, '[' a JSON array, else CSV with a header), then
 * the first record's fields (JSON) or the header's column names (CSV). Every
 * later record must fit the same shape; a mismatch is an error with its line. */
#include "text/dataset.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "base/rng.h"
#include "text/csv.h"
#include "text/utf8.h"

const char *cast_data_kind_name(cast_data_kind k) {
    switch (k) {
    case CAST_DATA_PROMPT_RESPONSE: return "prompt_response";
    case CAST_DATA_MESSAGES: return "messages";
    case CAST_DATA_TOKENS: return "tokens";
    case CAST_DATA_EVAL_PROMPTS: return "eval_prompts";
    case CAST_DATA_MULTIPLE_CHOICE: return "multiple_choice";
    case CAST_DATA_EXACT_ANSWER: return "exact_answer";
    case CAST_DATA_TEXT: return "text";
    }
    return "?";
}

static void example_free(cast_example *e) {
    free(e->prompt);
    free(e->response);
    free(e->target);
    free(e->context);
    free(e->text);
    for (int i = 0; i < e->n_messages; i++) {
        free((char *)e->messages[i].role);
        free((char *)e->messages[i].content);
    }
    free(e->messages);
    free(e->ids);
    free(e->labels);
    for (int i = 0; i < e->n_choices; i++) free(e->choices[i]);
    free(e->choices);
    free(e->answer);
    free(e->label);
    free(e->type);
    free(e->category);
    free(e->id);
    memset(e, 0, sizeof *e);
}

void cast_dataset_free(cast_dataset *d) {
    for (int i = 0; i < d->n; i++) example_free(&d->ex[i]);
    free(d->ex);
    free(d->path);
    memset(d, 0, sizeof *d);
}

static int fail_at(cast_err *err, const char *path, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail_at(cast_err *err, const char *path, int line, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cast_fail(err, "%s:%d: %s", path, line, msg);
}

/* Builder: appends a zeroed example. */
typedef struct builder {
    cast_dataset *d;
    int cap;
} builder;

static cast_example *add_example(builder *b, int line) {
    cast_dataset *d = b->d;
    if (d->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        d->ex = cast_xrealloc(d->ex, sizeof(cast_example) * (size_t)b->cap);
    }
    cast_example *e = &d->ex[d->n++];
    memset(e, 0, sizeof *e);
    e->line = line;
    e->correct = -1;
    return e;
}

/* Offset of the first byte that is not valid UTF-8 (or is NUL), or n. */
static size_t utf8_bad(const char *s, size_t n) {
    size_t valid = cast_utf8_valid_prefix(s, n);
    const char *nul = memchr(s, 0, valid);
    return nul ? (size_t)(nul - s) : valid;
}

static int line_of(const char *text, size_t off) {
    int line = 1;
    for (size_t i = 0; i < off; i++) line += text[i] == '\n';
    return line;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* GSM8K's final answer: the text after the last "####", trimmed, without
 * thousands separators ("1,450,000" -> "1450000"). NULL if absent. */
static char *final_answer(const char *s) {
    const char *h = NULL;
    for (const char *p = s; (p = strstr(p, "####")); p += 4) h = p + 4;
    if (!h) return NULL;
    while (*h == ' ' || *h == '\t') h++;
    cast_buf b = {0};
    for (const char *p = h; *p; p++)
        if (*p != ',') cast_buf_putc(&b, *p);
    while (b.len && (b.data[b.len - 1] == ' ' || b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r' ||
                     b.data[b.len - 1] == '\t'))
        b.data[--b.len] = 0;
    if (!b.len) {
        cast_buf_free(&b);
        return NULL;
    }
    return cast_buf_steal(&b);
}

/* hh-rlhf dialogues: "\n\nHuman: ...\n\nAssistant: ..." turns. */
static int parse_dialogue(const char *s, cast_message **out, int *n) {
    static const struct {
        const char *mark, *role;
    } M[] = {{"\n\nHuman:", "user"}, {"\n\nAssistant:", "assistant"}};
    *out = NULL;
    *n = 0;
    int cap = 0;
    const char *p = s;
    for (;;) {
        int which = -1;
        for (int k = 0; k < 2; k++)
            if (strncmp(p, M[k].mark, strlen(M[k].mark)) == 0) which = k;
        if (which < 0) return -1;
        const char *c = p + strlen(M[which].mark);
        if (*c == ' ') c++;
        const char *next = NULL;
        for (int k = 0; k < 2; k++) {
            const char *f = strstr(c, M[k].mark);
            if (f && (!next || f < next)) next = f;
        }
        const char *end = next ? next : c + strlen(c);
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *out = cast_xrealloc(*out, sizeof(cast_message) * (size_t)cap);
        }
        (*out)[*n].role = cast_xstrdup(M[which].role);
        (*out)[*n].content = cast_xstrndup(c, (size_t)(end - c));
        (*n)++;
        if (!next) return 0;
        p = next;
    }
}

/* ------------------------------------------------------------ JSON records */

typedef enum {
    J_TOKENS, J_MESSAGES, J_DIALOGUE, J_MC1, J_MC_CHOICES, J_GSM, J_QA, J_Q_EVAL, J_PR, J_PROMPT_EVAL, J_ALPACA,
    J_INSTR_EVAL, J_GOAL, J_TEXT, J_PROMPT_ANSWER
} jschema;

static const struct {
    cast_data_kind kind;
    const char *format[2]; /* JSONL, JSON array */
} JSCHEMA[] = {
    [J_TOKENS] = {CAST_DATA_TOKENS, {"JSONL input_ids/labels", "JSON input_ids/labels"}},
    [J_MESSAGES] = {CAST_DATA_MESSAGES, {"JSONL messages", "JSON messages"}},
    [J_DIALOGUE] = {CAST_DATA_MESSAGES, {"hh-rlhf JSONL (chosen: Human/Assistant dialogue)", "hh-rlhf JSON (chosen: Human/Assistant dialogue)"}},
    [J_MC1] = {CAST_DATA_MULTIPLE_CHOICE, {"TruthfulQA mc_task JSONL (question, mc1_targets)", "TruthfulQA mc_task JSON (question, mc1_targets)"}},
    [J_GSM] = {CAST_DATA_EXACT_ANSWER, {"GSM8K JSONL (question, answer with ####)", "GSM8K JSON (question, answer with ####)"}},
    [J_MC_CHOICES] = {CAST_DATA_MULTIPLE_CHOICE, {"JSONL multiple choice (question, choices, answer)", "JSON multiple choice (question, choices, answer)"}},
    [J_QA] = {CAST_DATA_PROMPT_RESPONSE, {"JSONL question/answer", "JSON question/answer"}},
    [J_Q_EVAL] = {CAST_DATA_EVAL_PROMPTS, {"JSONL prompts (question)", "JSON prompts (question)"}},
    [J_PR] = {CAST_DATA_PROMPT_RESPONSE, {"JSONL prompt/response", "JSON prompt/response"}},
    [J_PROMPT_EVAL] = {CAST_DATA_EVAL_PROMPTS, {"JSONL prompts (prompt)", "JSON prompts (prompt)"}},
    [J_ALPACA] = {CAST_DATA_PROMPT_RESPONSE, {"JSONL instruction/output", "JSON instruction/output"}},
    [J_INSTR_EVAL] = {CAST_DATA_EVAL_PROMPTS, {"JSONL prompts (instruction)", "JSON prompts (instruction)"}},
    [J_GOAL] = {CAST_DATA_EVAL_PROMPTS, {"JSONL prompts (goal, target)", "JSON prompts (goal, target)"}},
    [J_TEXT] = {CAST_DATA_TEXT, {"JSONL text", "JSON text"}},
    [J_PROMPT_ANSWER] = {CAST_DATA_EXACT_ANSWER, {"JSONL prompt/answer (exact answers)", "JSON prompt/answer (exact answers)"}},
};

static const char *const RESPONSE_KEYS[] = {"response", "completion", NULL};
static const char *const OUTPUT_KEYS[] = {"output", "response", NULL};

static cast_json *first_key(const cast_json *o, const char *const *keys, const char **which) {
    for (int i = 0; keys[i]; i++) {
        cast_json *v = cast_json_get(o, keys[i]);
        if (v) {
            if (which) *which = keys[i];
            return v;
        }
    }
    return NULL;
}

static int detect_schema(const cast_json *o, jschema *s) {
    cast_json *ans;
    if (cast_json_get(o, "input_ids")) *s = J_TOKENS;
    else if (cast_json_get(o, "messages")) *s = J_MESSAGES;
    else if (cast_json_get(o, "chosen")) *s = J_DIALOGUE;
    else if (cast_json_get(o, "question") && cast_json_get(o, "mc1_targets")) *s = J_MC1;
    else if (cast_json_get(o, "question") && cast_json_get(o, "choices")) *s = J_MC_CHOICES;
    else if (cast_json_get(o, "prompt") && cast_json_get(o, "answer")) *s = J_PROMPT_ANSWER;
    else if (cast_json_get(o, "prompt")) *s = first_key(o, RESPONSE_KEYS, NULL) ? J_PR : J_PROMPT_EVAL;
    else if (cast_json_get(o, "instruction")) *s = first_key(o, OUTPUT_KEYS, NULL) ? J_ALPACA : J_INSTR_EVAL;
    else if (cast_json_get(o, "question")) {
        ans = cast_json_get(o, "answer");
        if (!ans) *s = J_Q_EVAL;
        else *s = (cast_json_string(ans) && strstr(cast_json_string(ans), "####")) ? J_GSM : J_QA;
    } else if (cast_json_get(o, "goal")) *s = J_GOAL;
    else if (cast_json_get(o, "text")) *s = J_TEXT;
    else return -1;
    return 0;
}

typedef struct rec {
    const char *path;
    int line;
    cast_err *err;
} rec;

/* A string field, copied. required: absence is an error; else *out = NULL. */
static int get_str(const rec *r, const cast_json *o, const char *key, int required, char **out) {
    *out = NULL;
    cast_json *v = cast_json_get(o, key);
    if (!v) return required ? fail_at(r->err, r->path, r->line, "missing \"%s\"", key) : 0;
    const char *s = cast_json_string(v);
    if (!s) return fail_at(r->err, r->path, r->line, "\"%s\" must be a string", key);
    size_t n = strlen(s);
    if (utf8_bad(s, n) != n) return fail_at(r->err, r->path, r->line, "invalid UTF-8 in \"%s\"", key);
    *out = cast_xstrndup(s, n);
    return 0;
}

/* Optional metadata: a string or a number, kept as text. */
static int get_meta(const rec *r, const cast_json *o, const char *key, char **out) {
    cast_json *v = cast_json_get(o, key);
    if (v && cast_json_is_number(v)) {
        char tmp[64];
        double x = cast_json_number(v);
        if (fabs(x) < 9.0e15 && x == (double)(long long)x) snprintf(tmp, sizeof tmp, "%lld", (long long)x);
        else snprintf(tmp, sizeof tmp, "%.17g", x);
        *out = cast_xstrdup(tmp);
        return 0;
    }
    if (v && cast_json_is_bool(v)) {
        *out = cast_xstrdup(cast_json_is_true(v) ? "true" : "false");
        return 0;
    }
    return get_str(r, o, key, 0, out);
}

static int nonempty(const rec *r, const char *key, const char *s) {
    if (s && is_blank(s, strlen(s))) return fail_at(r->err, r->path, r->line, "empty \"%s\"", key);
    return 0;
}

/* Refuses a response in a prompt-only file: the first record set the shape. */
static int no_response(const rec *r, const cast_json *o, const char *const *keys) {
    const char *which;
    if (first_key(o, keys, &which))
        return fail_at(r->err, r->path, r->line, "has \"%s\", but the first record has none (mixed shapes)", which);
    return 0;
}

static int read_messages(const rec *r, const cast_json *arr, cast_example *e) {
    if (!cast_json_is_array(arr)) return fail_at(r->err, r->path, r->line, "\"messages\" must be an array");
    int n = cast_json_array_size(arr);
    if (n == 0) return fail_at(r->err, r->path, r->line, "\"messages\" is empty");
    e->messages = cast_xcalloc((size_t)n, sizeof(cast_message));
    for (int i = 0; i < n; i++) {
        cast_json *m = cast_json_array_item(arr, i);
        if (!cast_json_is_object(m)) return fail_at(r->err, r->path, r->line, "message %d is not an object", i + 1);
        char *role, *content;
        if (get_str(r, m, "role", 1, &role)) return -1;
        if (get_str(r, m, "content", 1, &content)) {
            free(role);
            return -1;
        }
        e->messages[i].role = role;
        e->messages[i].content = content;
        e->n_messages++;
        if (!*role) return fail_at(r->err, r->path, r->line, "message %d has an empty role", i + 1);
    }
    return 0;
}

static int read_record(const rec *r, jschema s, const cast_json *o, cast_example *e) {
    if (!cast_json_is_object(o)) return fail_at(r->err, r->path, r->line, "expected a JSON object");
    if (get_meta(r, o, "label", &e->label) || get_meta(r, o, "type", &e->type) ||
        get_meta(r, o, "category", &e->category) || get_meta(r, o, "id", &e->id))
        return -1;
    const char *which;
    cast_json *v;
    switch (s) {
    case J_TOKENS: {
        cast_json *ids = cast_json_get(o, "input_ids"), *labels = cast_json_get(o, "labels");
        char what[512];
        snprintf(what, sizeof what, "%s:%d: \"input_ids\"", r->path, r->line);
        if (!ids) return fail_at(r->err, r->path, r->line, "missing \"input_ids\"");
        if (cast_json_int_array(ids, &e->ids, &e->n_ids, what, r->err)) return -1;
        if (e->n_ids == 0) return fail_at(r->err, r->path, r->line, "\"input_ids\" is empty");
        for (int i = 0; i < e->n_ids; i++)
            if (e->ids[i] < 0) return fail_at(r->err, r->path, r->line, "negative token id %d in \"input_ids\"", e->ids[i]);
        if (labels) {
            int nl;
            snprintf(what, sizeof what, "%s:%d: \"labels\"", r->path, r->line);
            if (cast_json_int_array(labels, &e->labels, &nl, what, r->err)) return -1;
            if (nl != e->n_ids)
                return fail_at(r->err, r->path, r->line, "\"labels\" has %d items but \"input_ids\" has %d", nl, e->n_ids);
            for (int i = 0; i < nl; i++)
                if (e->labels[i] < 0 && e->labels[i] != CAST_IGNORE_LABEL)
                    return fail_at(r->err, r->path, r->line, "label %d is neither a token id nor -100", e->labels[i]);
        }
        return 0;
    }
    case J_MESSAGES: return read_messages(r, cast_json_get(o, "messages"), e);
    case J_DIALOGUE: {
        char *chosen;
        if (get_str(r, o, "chosen", 1, &chosen)) return -1;
        int rc = parse_dialogue(chosen, &e->messages, &e->n_messages);
        free(chosen);
        if (rc) return fail_at(r->err, r->path, r->line, "\"chosen\" is not a \\n\\nHuman: / \\n\\nAssistant: dialogue");
        return 0;
    }
    case J_MC1: {
        if (get_str(r, o, "question", 1, &e->prompt) || nonempty(r, "question", e->prompt)) return -1;
        cast_json *t = cast_json_get(o, "mc1_targets");
        if (!cast_json_is_object(t)) return fail_at(r->err, r->path, r->line, "\"mc1_targets\" must be an object");
        int n = 0;
        for (cast_json *c = cast_json_first(t); c; c = cast_json_next(c)) n++;
        if (n < 2) return fail_at(r->err, r->path, r->line, "\"mc1_targets\" needs at least two answers");
        e->choices = cast_xcalloc((size_t)n, sizeof(char *));
        for (cast_json *c = cast_json_first(t); c; c = cast_json_next(c)) {
            const char *k = cast_json_key(c);
            if (utf8_bad(k, strlen(k)) != strlen(k)) return fail_at(r->err, r->path, r->line, "invalid UTF-8 in an answer");
            if (!cast_json_is_number(c) || (cast_json_number(c) != 0 && cast_json_number(c) != 1))
                return fail_at(r->err, r->path, r->line, "\"mc1_targets\" values must be 0 or 1");
            if (cast_json_number(c) == 1) {
                if (e->correct >= 0) return fail_at(r->err, r->path, r->line, "\"mc1_targets\" has more than one correct answer");
                e->correct = e->n_choices;
            }
            e->choices[e->n_choices++] = cast_xstrdup(k);
        }
        if (e->correct < 0) return fail_at(r->err, r->path, r->line, "\"mc1_targets\" has no correct answer");
        return 0;
    }
    case J_MC_CHOICES: {
        if (get_str(r, o, "question", 1, &e->prompt) || nonempty(r, "question", e->prompt)) return -1;
        cast_json *c = cast_json_get(o, "choices");
        int n = cast_json_array_size(c);
        if (!cast_json_is_array(c) || n < 2) return fail_at(r->err, r->path, r->line, "\"choices\" must be an array of at least two strings");
        e->choices = cast_xcalloc((size_t)n, sizeof(char *));
        for (int i = 0; i < n; i++) {
            const char *s = cast_json_string(cast_json_array_item(c, i));
            if (!s) return fail_at(r->err, r->path, r->line, "choice %d is not a string", i);
            if (utf8_bad(s, strlen(s)) != strlen(s)) return fail_at(r->err, r->path, r->line, "invalid UTF-8 in choice %d", i);
            e->choices[e->n_choices++] = cast_xstrdup(s);
        }
        int64_t a;
        char what[512];
        snprintf(what, sizeof what, "%s:%d", r->path, r->line);
        if (cast_json_req_int(o, "answer", &a, what, r->err)) return -1;
        if (a < 0 || a >= n) return fail_at(r->err, r->path, r->line, "\"answer\" %lld is not a choice index (0-%d)", (long long)a, n - 1);
        e->correct = (int)a;
        return 0;
    }
    case J_GSM:
        if (get_str(r, o, "question", 1, &e->prompt) || nonempty(r, "question", e->prompt) ||
            get_str(r, o, "answer", 1, &e->response))
            return -1;
        if (!(e->answer = final_answer(e->response)))
            return fail_at(r->err, r->path, r->line, "\"answer\" has no final answer after \"####\"");
        return 0;
    case J_QA:
        return get_str(r, o, "question", 1, &e->prompt) || nonempty(r, "question", e->prompt) ||
                       get_str(r, o, "answer", 1, &e->response)
                   ? -1
                   : 0;
    case J_Q_EVAL:
        return get_str(r, o, "question", 1, &e->prompt) || nonempty(r, "question", e->prompt) ||
                       no_response(r, o, (const char *const[]){"answer", NULL})
                   ? -1
                   : 0;
    case J_PR:
        if (get_str(r, o, "prompt", 1, &e->prompt) || nonempty(r, "prompt", e->prompt)) return -1;
        if (!(v = first_key(o, RESPONSE_KEYS, &which))) return fail_at(r->err, r->path, r->line, "missing \"response\"");
        return get_str(r, o, which, 1, &e->response);
    case J_PROMPT_ANSWER:
        /* exact-answer items: the answer to compare with; a worked response is optional */
        if (get_str(r, o, "prompt", 1, &e->prompt) || nonempty(r, "prompt", e->prompt) || get_meta(r, o, "answer", &e->answer))
            return -1;
        if (!e->answer || !*e->answer) return fail_at(r->err, r->path, r->line, "\"answer\" must be a non-empty string or number");
        return (v = first_key(o, RESPONSE_KEYS, &which)) ? get_str(r, o, which, 1, &e->response) : 0;
    case J_PROMPT_EVAL:
        return get_str(r, o, "prompt", 1, &e->prompt) || nonempty(r, "prompt", e->prompt) ||
                       no_response(r, o, RESPONSE_KEYS)
                   ? -1
                   : 0;
    case J_ALPACA:
    case J_INSTR_EVAL: {
        char *input = NULL;
        if (get_str(r, o, "instruction", 1, &e->prompt) || nonempty(r, "instruction", e->prompt) ||
            get_str(r, o, "input", 0, &input))
            return -1;
        if (input && *input) {
            /* Alpaca's optional input follows the instruction */
            cast_buf b = {0};
            cast_buf_printf(&b, "%s\n\n%s", e->prompt, input);
            free(e->prompt);
            e->prompt = cast_buf_steal(&b);
        }
        free(input);
        if (s == J_INSTR_EVAL) return no_response(r, o, OUTPUT_KEYS);
        if (!(v = first_key(o, OUTPUT_KEYS, &which))) return fail_at(r->err, r->path, r->line, "missing \"output\"");
        if (get_str(r, o, which, 1, &e->response)) return -1;
        /* AlpacaEval's "dataset" names the source subset */
        if (!e->category && get_meta(r, o, "dataset", &e->category)) return -1;
        return 0;
    }
    case J_GOAL:
        return get_str(r, o, "goal", 1, &e->prompt) || nonempty(r, "goal", e->prompt) ||
                       get_str(r, o, "target", 0, &e->target)
                   ? -1
                   : 0;
    case J_TEXT: return get_str(r, o, "text", 1, &e->text) || nonempty(r, "text", e->text) ? -1 : 0;
    }
    return -1;
}

static const char EXPECTED_JSON[] =
    "expected one of: prompt[/response], messages, input_ids[/labels], chosen (hh-rlhf), "
    "question/answer, question/mc1_targets, question/choices/answer, instruction[/output], goal, text";

/* One JSON value (a JSONL line or an array element) at text[0..n). */
static int add_json_record(builder *b, jschema *schema, int *have_schema, int is_array, const char *text, size_t n,
                           int line, cast_err *err) {
    const char *path = b->d->path;
    char what[512];
    snprintf(what, sizeof what, "%s:%d", path, line);
    cast_json *o = cast_json_parse(text, n, what, err);
    if (!o) {
        /* the parser counts lines within the record; report the file's */
        const char *at = strstr(err->msg, "invalid JSON at line ");
        const char *bp = at ? strstr(at, "byte ") : NULL;
        if (!bp) return -1;
        size_t off = (size_t)strtoull(bp + 5, NULL, 10), col = 1;
        int l = line;
        for (size_t i = 0; i < off && i < n; i++, col++)
            if (text[i] == '\n') l++, col = 0;
        return fail_at(err, path, l, "invalid JSON (column %zu)", col);
    }
    rec r = {path, line, err};
    if (!cast_json_is_object(o)) {
        cast_json_free(o);
        return fail_at(err, path, line, "expected a JSON object");
    }
    if (!*have_schema) {
        if (detect_schema(o, schema)) {
            cast_json_free(o);
            return fail_at(err, path, line, "unrecognised record (%s)", EXPECTED_JSON);
        }
        *have_schema = 1;
        b->d->kind = JSCHEMA[*schema].kind;
        b->d->format = JSCHEMA[*schema].format[is_array];
    }
    cast_example *e = add_example(b, line);
    int rc = read_record(&r, *schema, o, e);
    cast_json_free(o);
    return rc;
}

static int load_jsonl(builder *b, const char *text, size_t len, cast_err *err) {
    jschema schema = J_PR;
    int have = 0, line = 1;
    for (size_t p = 0; p < len; line++) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (!is_blank(text + p, end - p) && add_json_record(b, &schema, &have, 0, text + p, end - p, line, err)) return -1;
        p = end + 1;
    }
    return 0;
}

/* A top-level JSON array: each element is parsed on its own so that messages
 * name the line where it starts. */
static int load_json_array(builder *b, const char *text, size_t len, size_t start, cast_err *err) {
    const char *path = b->d->path;
    jschema schema = J_PR;
    int have = 0;
    size_t p = start + 1; /* after '[' */
    int line = line_of(text, p);
    for (;;) {
        while (p < len && (text[p] == ' ' || text[p] == '\t' || text[p] == '\r' || text[p] == '\n')) line += text[p++] == '\n';
        if (p >= len) return fail_at(err, path, line, "invalid JSON (unterminated array)");
        if (text[p] == ']') break;
        /* the element's extent: balanced brackets outside strings */
        size_t s = p;
        int el_line = line, depth = 0, in_str = 0;
        for (; p < len; p++) {
            char c = text[p];
            if (c == '\n') line++;
            if (in_str) {
                if (c == '\\') p++;
                else if (c == '"') in_str = 0;
            } else if (c == '"') in_str = 1;
            else if (c == '{' || c == '[') depth++;
            else if (c == '}' || c == ']') {
                if (depth == 0) break;
                depth--;
            } else if (c == ',' && depth == 0) break;
        }
        if (p >= len) return fail_at(err, path, el_line, "invalid JSON (unterminated array)");
        if (add_json_record(b, &schema, &have, 1, text + s, p - s, el_line, err)) return -1;
        if (text[p] == ',') p++;
    }
    p++;
    while (p < len && (text[p] == ' ' || text[p] == '\t' || text[p] == '\r' || text[p] == '\n')) line += text[p++] == '\n';
    if (p < len) return fail_at(err, path, line, "invalid JSON (data after the top-level array)");
    return 0;
}

/* -------------------------------------------------------------------- CSV */

typedef struct csvcols {
    int n;
    char **names; /* trimmed header names */
} csvcols;

static int col(const csvcols *h, const char *name) {
    for (int i = 0; i < h->n; i++)
        if (strcasecmp(h->names[i], name) == 0) return i;
    return -1;
}

static char *cell(cast_csv *c, int i) { return i >= 0 ? cast_xstrdup(c->fields[i]) : NULL; }
static char *cell_nonempty(cast_csv *c, int i) { return i >= 0 && c->fields[i][0] ? cast_xstrdup(c->fields[i]) : NULL; }

typedef enum { C_ADVBENCH, C_HARMBENCH, C_MMLU, C_TRUTHFULQA, C_PR, C_PROMPTS, C_QA, C_GSM, C_QUESTIONS, C_INSTR, C_INSTR_EVAL, C_TEXT } cschema;

static int load_csv(builder *b, const char *text, size_t len, cast_err *err) {
    const char *path = b->d->path;
    cast_csv c;
    cast_csv_init(&c, text, len, path);
    int rc = cast_csv_next(&c, err);
    if (rc <= 0) {
        cast_csv_free(&c);
        return rc < 0 ? -1 : cast_fail(err, "%s: empty dataset", path);
    }
    csvcols h = {c.n, cast_xcalloc((size_t)c.n, sizeof(char *))};
    cast_buf hdr = {0};
    for (int i = 0; i < c.n; i++) {
        const char *s = c.fields[i];
        size_t a = 0, z = strlen(s);
        while (a < z && (s[a] == ' ' || s[a] == '\t')) a++;
        while (z > a && (s[z - 1] == ' ' || s[z - 1] == '\t')) z--;
        h.names[i] = cast_xstrndup(s + a, z - a);
        if (i) cast_buf_putc(&hdr, ',');
        cast_buf_puts(&hdr, h.names[i]);
    }
    int c_prompt = col(&h, "prompt"), c_goal = col(&h, "goal"), c_beh = col(&h, "behavior"), c_q = col(&h, "question");
    int c_resp = col(&h, "response") >= 0 ? col(&h, "response") : col(&h, "completion");
    int c_ans = col(&h, "answer"), c_best = col(&h, "best answer"), c_instr = col(&h, "instruction");
    int c_out = col(&h, "output") >= 0 ? col(&h, "output") : c_resp;
    int c_choice0 = col(&h, "choice0"), c_text = col(&h, "text") >= 0 ? col(&h, "text") : col(&h, "target");
    int n_choices = 0;
    if (c_choice0 >= 0) {
        char name[32];
        for (;; n_choices++) {
            snprintf(name, sizeof name, "choice%d", n_choices);
            if (col(&h, name) < 0) break;
        }
    }
    cschema s;
    const char *fmt;
    if (c_goal >= 0) s = C_ADVBENCH, fmt = "AdvBench CSV (goal,target)";
    else if (c_beh >= 0) s = C_HARMBENCH, fmt = "HarmBench CSV (Behavior,...,ContextString,BehaviorID)";
    else if (c_q >= 0 && c_choice0 >= 0 && c_ans >= 0) s = C_MMLU, fmt = "MMLU CSV (question,choice0..N,answer)";
    else if (c_q >= 0 && c_best >= 0) s = C_TRUTHFULQA, fmt = "TruthfulQA CSV (Question,Best Answer,...)";
    else if (c_prompt >= 0 && c_resp >= 0) s = C_PR, fmt = "CSV (prompt,response)";
    else if (c_prompt >= 0)
        s = C_PROMPTS, fmt = col(&h, "label") >= 0 && col(&h, "type") >= 0 ? "XSTest CSV (id,prompt,type,label,...)" : "CSV prompts (prompt)";
    else if (c_q >= 0 && c_ans >= 0) s = C_QA, fmt = "CSV (question,answer)";
    else if (c_q >= 0)
        s = C_QUESTIONS, fmt = col(&h, "risk_area") >= 0 ? "do-not-answer CSV (id,risk_area,...,question)" : "CSV prompts (question)";
    else if (c_instr >= 0 && c_out >= 0) s = C_INSTR, fmt = "CSV (instruction,output)";
    else if (c_instr >= 0) s = C_INSTR_EVAL, fmt = "CSV prompts (instruction)";
    else if (c_text >= 0 && h.n == 1) s = C_TEXT, fmt = "CSV text";
    else {
        cast_fail(err,
                  "%s: unrecognised CSV header \"%.200s\" (expected goal,target | prompt[,response] | "
                  "question[,answer] | question,choice0..N,answer | Behavior,...,ContextString | "
                  "instruction[,output] | text)",
                  path, hdr.data ? hdr.data : "");
        rc = -1;
        goto done;
    }
    b->d->format = fmt;
    b->d->kind = s == C_ADVBENCH || s == C_HARMBENCH || s == C_PROMPTS || s == C_QUESTIONS || s == C_INSTR_EVAL
                     ? CAST_DATA_EVAL_PROMPTS
                 : s == C_MMLU ? CAST_DATA_MULTIPLE_CHOICE
                 : s == C_TEXT ? CAST_DATA_TEXT
                               : CAST_DATA_PROMPT_RESPONSE;
    int c_label = col(&h, "label"), c_type = col(&h, "type"), c_id = col(&h, "id");
    int c_cat = col(&h, "category");
    if (s == C_HARMBENCH) c_type = col(&h, "functionalcategory"), c_cat = col(&h, "semanticcategory"), c_id = col(&h, "behaviorid");
    if (s == C_QUESTIONS && col(&h, "risk_area") >= 0) c_cat = col(&h, "risk_area"), c_type = col(&h, "types_of_harm");
    if (s == C_PROMPTS && c_cat < 0) c_cat = col(&h, "note");
    int first_row = 1;
    while ((rc = cast_csv_next(&c, err)) > 0) {
        int line = c.row_line;
        if (c.n != h.n) {
            rc = fail_at(err, path, line, "%d fields, but the header has %d", c.n, h.n);
            goto done;
        }
        cast_example *e = add_example(b, line);
        e->label = cell_nonempty(&c, c_label);
        e->type = cell_nonempty(&c, c_type);
        e->category = cell_nonempty(&c, c_cat);
        e->id = cell_nonempty(&c, c_id);
        int pc = -1;
        const char *pname = NULL;
        switch (s) {
        case C_ADVBENCH:
            pc = c_goal, pname = "goal";
            e->target = cell(&c, col(&h, "target"));
            break;
        case C_HARMBENCH: {
            pc = c_beh, pname = "Behavior";
            e->context = cell_nonempty(&c, col(&h, "contextstring"));
            break;
        }
        case C_MMLU: {
            pc = c_q, pname = "question";
            e->choices = cast_xcalloc((size_t)n_choices, sizeof(char *));
            for (int k = 0; k < n_choices; k++) {
                char name[32];
                snprintf(name, sizeof name, "choice%d", k);
                e->choices[e->n_choices++] = cell(&c, col(&h, name));
            }
            const char *a = c.fields[c_ans];
            char *end;
            long v = strtol(a, &end, 10);
            if (*a && !*end) e->correct = v >= 0 && v < n_choices ? (int)v : -1; /* no wrap into range through int */
            else if (a[0] >= 'A' && a[0] < 'A' + n_choices && !a[1]) e->correct = a[0] - 'A';
            if (e->correct < 0 || e->correct >= n_choices) {
                rc = fail_at(err, path, line, "answer \"%.40s\" is not a choice index 0-%d (or a letter A-%c)", a,
                             n_choices - 1, 'A' + n_choices - 1);
                goto done;
            }
            break;
        }
        case C_TRUTHFULQA:
            pc = c_q, pname = "Question";
            e->response = cell(&c, c_best);
            break;
        case C_PR: pc = c_prompt, pname = "prompt", e->response = cell(&c, c_resp); break;
        case C_PROMPTS: pc = c_prompt, pname = "prompt"; break;
        case C_QA:
        case C_GSM:
            pc = c_q, pname = "question";
            e->response = cell(&c, c_ans);
            if (first_row && strstr(e->response, "####")) s = C_GSM, b->d->kind = CAST_DATA_EXACT_ANSWER, b->d->format = "CSV (question,answer with ####)";
            if (s == C_GSM && !(e->answer = final_answer(e->response))) {
                rc = fail_at(err, path, line, "answer has no final answer after \"####\"");
                goto done;
            }
            break;
        case C_QUESTIONS: pc = c_q, pname = "question"; break;
        case C_INSTR: pc = c_instr, pname = "instruction", e->response = cell(&c, c_out); break;
        case C_INSTR_EVAL: pc = c_instr, pname = "instruction"; break;
        case C_TEXT:
            e->text = cell(&c, c_text);
            if (is_blank(e->text, strlen(e->text))) {
                rc = fail_at(err, path, line, "empty \"%s\"", h.names[c_text]);
                goto done;
            }
            break;
        }
        first_row = 0;
        if (pc >= 0) {
            if (is_blank(c.fields[pc], strlen(c.fields[pc]))) {
                rc = fail_at(err, path, line, "empty \"%s\"", pname);
                goto done;
            }
            if (e->context) {
                /* HarmBench's own formatting of contextual behaviours */
                cast_buf p = {0};
                cast_buf_printf(&p, "%s\n\n---\n\n%s", e->context, c.fields[pc]);
                e->prompt = cast_buf_steal(&p);
            } else {
                e->prompt = cell(&c, pc);
            }
        }
    }
done:
    cast_csv_free(&c);
    for (int i = 0; i < h.n; i++) free(h.names[i]);
    free(h.names);
    cast_buf_free(&hdr);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------- load */

int cast_dataset_load_text(cast_dataset *d, const char *text, size_t len, const char *path, cast_err *err) {
    memset(d, 0, sizeof *d);
    d->path = cast_xstrdup(path);
    size_t bad = utf8_bad(text, len);
    if (bad != len) {
        fail_at(err, path, line_of(text, bad), text[bad] ? "invalid UTF-8" : "NUL byte (not a text file?)");
        cast_dataset_free(d);
        return -1;
    }
    size_t start = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) start = 3; /* a byte-order mark */
    size_t p = start;
    while (p < len && (text[p] == ' ' || text[p] == '\t' || text[p] == '\r' || text[p] == '\n')) p++;
    int rc;
    builder b = {d, 0};
    if (p >= len) rc = cast_fail(err, "%s: empty dataset", path);
    else if (text[p] == '[') rc = load_json_array(&b, text, len, p, err);
    else if (text[p] == '{') rc = load_jsonl(&b, text + start, len - start, err);
    else rc = load_csv(&b, text + start, len - start, err);
    if (rc == 0 && d->n == 0) rc = cast_fail(err, "%s: empty dataset", path);
    if (rc) {
        cast_dataset_free(d);
        return -1;
    }
    return 0;
}

int cast_dataset_load(cast_dataset *d, const char *path, cast_err *err) {
    memset(d, 0, sizeof *d);
    char *text;
    size_t len;
    if (cast_read_file(path, &text, &len, err)) return -1;
    int rc = cast_dataset_load_text(d, text, len, path, err);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------- filters */

int cast_dataset_filter_label(cast_dataset *d, const char *label) {
    int k = 0;
    for (int i = 0; i < d->n; i++) {
        if (d->ex[i].label && strcmp(d->ex[i].label, label) == 0) d->ex[k++] = d->ex[i];
        else example_free(&d->ex[i]);
    }
    d->n = k;
    return k;
}

void cast_dataset_take(cast_dataset *d, int first, int count) {
    if (first < 0) first = 0;
    if (first > d->n) first = d->n;
    if (count < 0 || count > d->n - first) count = d->n - first;
    for (int i = 0; i < d->n; i++)
        if (i < first || i >= first + count) example_free(&d->ex[i]);
    memmove(d->ex, d->ex + first, sizeof(cast_example) * (size_t)count);
    d->n = count;
}

void cast_dataset_keep(cast_dataset *d, const int *idx, int n) {
    int k = 0;
    for (int i = 0; i < d->n; i++) {
        if (k < n && idx[k] == i) d->ex[k++] = d->ex[i];
        else example_free(&d->ex[i]);
    }
    d->n = k;
}

void cast_dataset_shuffle(cast_dataset *d, uint64_t seed) {
    int *order = cast_xmalloc(sizeof(int) * (size_t)(d->n ? d->n : 1));
    for (int i = 0; i < d->n; i++) order[i] = i;
    cast_rng r;
    cast_rng_seed(&r, seed);
    cast_rng_shuffle(&r, order, d->n);
    cast_example *ex = cast_xmalloc(sizeof(cast_example) * (size_t)(d->n ? d->n : 1));
    for (int i = 0; i < d->n; i++) ex[i] = d->ex[order[i]];
    free(d->ex);
    d->ex = ex;
    free(order);
}

/* --------------------------------------------------------------- encoding */

static int append_ids(const cast_tokenizer *tok, const char *s, int add_special, int scored, int **ids, int **labels,
                      int *n, int *cap, cast_err *err) {
    int *t, nt;
    if (cast_tokenizer_encode(tok, s, strlen(s), add_special, &t, &nt, err)) return -1;
    if (*n + nt + 1 > *cap) {
        while (*n + nt + 1 > *cap) *cap = *cap ? *cap * 2 : 256;
        *ids = cast_xrealloc(*ids, sizeof(int) * (size_t)*cap);
        *labels = cast_xrealloc(*labels, sizeof(int) * (size_t)*cap);
    }
    for (int i = 0; i < nt; i++) {
        (*ids)[*n] = t[i];
        (*labels)[*n] = scored ? t[i] : CAST_IGNORE_LABEL;
        (*n)++;
    }
    free(t);
    return 0;
}

static int is_ws_end(const char *s, int first) {
    size_t n = strlen(s);
    if (!n) return 1;
    char c = first ? s[0] : s[n - 1];
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

int cast_encode_prompt_response(const cast_tokenizer *tok, const cast_chat_template *tpl, const char *prompt,
                                const char *response, int **ids, int **labels, int *n, cast_err *err) {
    *ids = *labels = NULL;
    *n = 0;
    if (!tok) return cast_fail(err, "encoding text needs a tokenizer");
    if (tpl) {
        cast_message m[2] = {{"user", prompt}, {"assistant", response}};
        return cast_chat_encode(tpl, tok, m, 2, 0, ids, labels, n, err);
    }
    /* plain text: prompt (post-processor applied, e.g. BOS) and a newline
     * unless either side already has whitespace there, unscored; then the
     * response and EOS, scored */
    int cap = 0;
    cast_buf p = {0};
    cast_buf_puts(&p, prompt);
    if (!is_ws_end(prompt, 0) && !is_ws_end(response, 1)) cast_buf_putc(&p, '\n');
    int rc = append_ids(tok, p.data, 1, 0, ids, labels, n, &cap, err);
    cast_buf_free(&p);
    if (rc == 0) rc = append_ids(tok, response, 0, 1, ids, labels, n, &cap, err);
    if (rc == 0 && cast_tokenizer_eos_id(tok) >= 0) {
        (*ids)[*n] = cast_tokenizer_eos_id(tok);
        (*labels)[*n] = (*ids)[*n];
        (*n)++;
    }
    if (rc) {
        free(*ids);
        free(*labels);
        *ids = *labels = NULL;
        *n = 0;
    }
    return rc;
}

/* "PATH:LINE: " before a message from a lower layer. */
static int prefix_line(cast_err *err, const cast_dataset *d, const cast_example *e) {
    char where[600];
    snprintf(where, sizeof where, "%s:%d", d->path, e->line);
    return cast_fail_prefix(err, where);
}

int cast_on_long_parse(const char *s, cast_on_long *out) {
    static const char *const names[] = {"skip", "truncate", "error"};
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, names[i])) {
            *out = (cast_on_long)i;
            return 0;
        }
    return -1;
}

const char *cast_on_long_name(cast_on_long p) {
    return p == CAST_ON_LONG_TRUNCATE ? "truncate" : p == CAST_ON_LONG_ERROR ? "error" : "skip";
}

/* One example's ids and labels, before any length limit. vocab bounds
 * pre-tokenized ids (0: unchecked). */
static int encode_example(const cast_dataset *d, const cast_example *e, const cast_tokenizer *tok,
                          const cast_chat_template *tpl, int vocab, int **ids, int **labels, int *n, cast_err *err) {
    int rc = 0;
    *ids = *labels = NULL;
    *n = 0;
    switch (d->kind) {
    case CAST_DATA_TOKENS:
        *n = e->n_ids;
        *ids = cast_xmalloc(sizeof(int) * (size_t)(*n ? *n : 1));
        *labels = cast_xmalloc(sizeof(int) * (size_t)(*n ? *n : 1));
        memcpy(*ids, e->ids, sizeof(int) * (size_t)*n);
        memcpy(*labels, e->labels ? e->labels : e->ids, sizeof(int) * (size_t)*n);
        for (int k = 0; k < *n && vocab > 0; k++)
            if ((*ids)[k] >= vocab || (*labels)[k] >= vocab)
                return fail_at(err, d->path, e->line, "token id %d is outside the vocabulary (size %d)",
                               (*ids)[k] >= vocab ? (*ids)[k] : (*labels)[k], vocab);
        return 0;
    case CAST_DATA_MESSAGES: rc = cast_chat_encode(tpl, tok, e->messages, e->n_messages, 0, ids, labels, n, err); break;
    case CAST_DATA_TEXT: {
        int cap = 0;
        rc = append_ids(tok, e->text, 1, 1, ids, labels, n, &cap, err);
        break;
    }
    default: {
        const char *resp = d->kind == CAST_DATA_MULTIPLE_CHOICE ? e->choices[e->correct] : e->response;
        /* an exact-answer item's worked response is optional: without it,
         * the item is for evaluation only */
        if (!resp) return fail_at(err, d->path, e->line, "no response to train or score on (only \"answer\")");
        rc = cast_encode_prompt_response(tok, tpl, e->prompt, resp, ids, labels, n, err);
    }
    }
    if (rc) prefix_line(err, d, e);
    return rc;
}

/* Scored tokens among the first n (position 0 predicts nothing). */
static int count_scored(const int *labels, int n) {
    int scored = 0;
    for (int k = 1; k < n; k++) scored += labels[k] != CAST_IGNORE_LABEL;
    return scored;
}

/* strict: the historical behaviour of cast_dataset_encode (truncate; an
 * example left without a scored token is an error, not skipped). */
static int encode_all(const cast_dataset *d, const cast_tokenizer *tok, const cast_chat_template *tpl,
                      const cast_encode_opts *o, int strict, cast_seqs *out, int *n_skipped, int **seq_example,
                      cast_err *err) {
    memset(out, 0, sizeof *out);
    if (n_skipped) *n_skipped = 0;
    if (seq_example) *seq_example = NULL;
    if (d->kind == CAST_DATA_EVAL_PROMPTS)
        return cast_fail(err, "%s: evaluation prompts (%s) have no responses to train or score on", d->path, d->format);
    if (d->kind != CAST_DATA_TOKENS && !tok) return cast_fail(err, "%s: encoding text needs a tokenizer", d->path);
    if (d->kind == CAST_DATA_MESSAGES && !tpl)
        return cast_fail(err, "%s: conversations need a chat template (--template NAME: %s)", d->path,
                         cast_chat_builtin_names());
    int max_len = o->max_len;
    int n_ex = o->max_examples > 0 && o->max_examples < d->n ? o->max_examples : d->n;
    int vocab = o->vocab_size > 0 ? o->vocab_size : tok ? cast_tokenizer_vocab_size(tok) : 0;
    int skipped = 0;
    int *which = seq_example ? cast_xmalloc(sizeof(int) * (size_t)(n_ex ? n_ex : 1)) : NULL;
    for (int i = 0; i < n_ex; i++) {
        const cast_example *e = &d->ex[i];
        int *ids, *labels, n, keep = 1;
        int rc = encode_example(d, e, tok, tpl, vocab, &ids, &labels, &n, err);
        if (rc == 0 && max_len > 0 && n > max_len) {
            if (strict || o->on_long == CAST_ON_LONG_TRUNCATE) {
                n = max_len;
                if (!strict && !count_scored(labels, n)) keep = 0;
            } else if (o->on_long == CAST_ON_LONG_ERROR) {
                rc = fail_at(err, d->path, e->line,
                             "the example is %d tokens, longer than the limit of %d (--max-len; --on-long skip or "
                             "truncate to go on)",
                             n, max_len);
            } else {
                keep = 0;
            }
        }
        if (rc == 0 && keep && !count_scored(labels, n))
            rc = max_len > 0 && strict ? fail_at(err, d->path, e->line, "no scored token within the first %d tokens", max_len)
                                       : fail_at(err, d->path, e->line, "no scored token");
        if (rc == 0 && keep) {
            if (which) which[out->n] = i;
            cast_seqs_push(out, ids, labels, n);
        }
        skipped += rc == 0 && !keep;
        free(ids);
        free(labels);
        if (rc) {
            free(which);
            cast_seqs_free(out);
            return -1;
        }
    }
    if (n_ex > 0 && out->n == 0) {
        free(which);
        cast_seqs_free(out);
        return cast_fail(err, "%s: all %d examples are longer than %d tokens (--on-long %s): nothing left to use; raise "
                              "--max-len",
                         d->path, n_ex, max_len, cast_on_long_name(o->on_long));
    }
    if (n_skipped) *n_skipped = skipped;
    if (seq_example) *seq_example = which;
    return 0;
}

int cast_dataset_encode(const cast_dataset *d, const cast_tokenizer *tok, const cast_chat_template *tpl, int max_len,
                        int max_examples, cast_seqs *out, cast_err *err) {
    cast_encode_opts o = {max_len, max_examples, CAST_ON_LONG_TRUNCATE, 0};
    return encode_all(d, tok, tpl, &o, 1, out, NULL, NULL, err);
}

int cast_dataset_encode_opts(const cast_dataset *d, const cast_tokenizer *tok, const cast_chat_template *tpl,
                             const cast_encode_opts *o, cast_seqs *out, int *n_skipped, int **seq_example,
                             cast_err *err) {
    return encode_all(d, tok, tpl, o, 0, out, n_skipped, seq_example, err);
}

int cast_dataset_encode_prompts(const cast_dataset *d, const cast_tokenizer *tok, const cast_chat_template *tpl,
                                int max_examples, cast_seqs *out, cast_err *err) {
    memset(out, 0, sizeof *out);
    if (d->kind == CAST_DATA_TOKENS || d->kind == CAST_DATA_TEXT)
        return cast_fail(err, "%s: a %s dataset has no prompts", d->path, cast_data_kind_name(d->kind));
    if (!tok) return cast_fail(err, "%s: encoding prompts needs a tokenizer", d->path);
    if (d->kind == CAST_DATA_MESSAGES && !tpl)
        return cast_fail(err, "%s: conversations need a chat template (--template NAME: %s)", d->path,
                         cast_chat_builtin_names());
    int n_ex = max_examples > 0 && max_examples < d->n ? max_examples : d->n;
    for (int i = 0; i < n_ex; i++) {
        const cast_example *e = &d->ex[i];
        int *ids = NULL, *labels = NULL, n = 0, rc;
        if (d->kind == CAST_DATA_MESSAGES) {
            /* the conversation up to its final assistant reply */
            int k = e->n_messages;
            while (k > 0 && !strcmp(e->messages[k - 1].role, "assistant")) k--;
            if (k == 0) {
                rc = fail_at(err, d->path, e->line, "conversation has nothing before the assistant's reply");
                goto next;
            }
            rc = cast_chat_encode(tpl, tok, e->messages, k, 1, &ids, &labels, &n, err);
        } else if (tpl) {
            cast_message m = {"user", e->prompt};
            rc = cast_chat_encode(tpl, tok, &m, 1, 1, &ids, &labels, &n, err);
        } else {
            /* as training saw it: the prompt, then the newline before the response */
            int cap = 0;
            cast_buf p = {0};
            cast_buf_puts(&p, e->prompt);
            if (!is_ws_end(e->prompt, 0)) cast_buf_putc(&p, '\n');
            rc = append_ids(tok, p.data, 1, 0, &ids, &labels, &n, &cap, err);
            cast_buf_free(&p);
        }
        if (rc) prefix_line(err, d, e);
    next:
        if (rc == 0) cast_seqs_push(out, ids, labels, n);
        free(ids);
        free(labels);
        if (rc) {
            cast_seqs_free(out);
            return -1;
        }
    }
    return 0;
}

int cast_dataset_check_vocab(const cast_dataset *d, const cast_seqs *seqs, const int *seq_example, int vocab, const char *path,
                             cast_err *err) {
    for (int i = 0; i < seqs->n; i++)
        for (int64_t t = seqs->off[i]; t < seqs->off[i + 1]; t++) {
            int id = seqs->ids[t], lab = seqs->labels[t];
            const char *what = id < 0 || id >= vocab ? "token id" : lab != CAST_IGNORE_LABEL && (lab < 0 || lab >= vocab) ? "label" : NULL;
            if (what)
                return cast_fail(err, "%s:%d: %s %d is outside the model's vocabulary (%d): tokenizer and model do not match", path,
                                 d->ex[seq_example[i]].line, what, what[0] == 't' ? id : lab, vocab);
        }
    return 0;
}

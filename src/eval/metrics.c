#include "eval/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "dist/dist.h"
#include "eval/generate.h"
#include "model/forward.h"

const char *cast_eval_role_name(cast_eval_role r) {
    switch (r) {
    case CAST_EVAL_HARMFUL: return "harmful";
    case CAST_EVAL_BENIGN: return "benign";
    case CAST_EVAL_UTILITY: return "utility";
    }
    return "?";
}

const char *cast_metric_name(cast_metric m) {
    switch (m) {
    case CAST_METRIC_REFUSAL: return "refusal";
    case CAST_METRIC_NLL: return "nll";
    case CAST_METRIC_CHOICE: return "choice";
    case CAST_METRIC_EXACT: return "exact";
    }
    return "?";
}

void cast_eval_opts_default(cast_eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_new = 64;
    o->max_new_exact = 256;
    o->batch = 8;
}

/* ------------------------------------------------------------ small helpers */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static char *trimmed(const char *s, size_t n) {
    size_t a = 0;
    while (a < n && is_space(s[a])) a++;
    while (n > a && is_space(s[n - 1])) n--;
    return cast_xstrndup(s + a, n - a);
}

/* The number starting at s[0] (a digit, or '-' before one): its extent
 * -?[0-9][0-9,]*(\.[0-9]+)? without trailing commas. Returns the length. */
static size_t number_len(const char *s) {
    size_t i = s[0] == '-' ? 1 : 0;
    if (!is_digit(s[i])) return 0;
    while (is_digit(s[i]) || s[i] == ',') i++;
    while (s[i - 1] == ',') i--;
    if (s[i] == '.' && is_digit(s[i + 1])) {
        i++;
        while (is_digit(s[i])) i++;
    }
    return i;
}

/* A copy without thousands separators. */
static char *strip_commas(const char *s, size_t n) {
    char *out = cast_xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != ',') out[k++] = s[i];
    out[k] = 0;
    return out;
}

/* The first (or last) number in s[0..n). */
static int find_number(const char *s, size_t n, int last, size_t *at, size_t *len) {
    int found = 0;
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        if ((is_digit(s[i]) || (s[i] == '-' && i + 1 < n)) && (i == 0 || !is_digit(s[i - 1]))) k = number_len(s + i);
        if (k && i + k <= n) {
            *at = i, *len = k, found = 1;
            if (!last) return 1;
            i += k;
        } else {
            i++;
        }
    }
    return found;
}

int cast_answer_is_number(const char *s) {
    while (is_space(*s)) s++;
    size_t k = number_len(s);
    if (!k) return 0;
    for (s += k; *s; s++)
        if (!is_space(*s)) return 0;
    return 1;
}

char *cast_extract_answer(const char *reply, int numeric) {
    const char *h = strstr(reply, "####");
    const char *s = h ? h + 4 : reply;
    size_t n = strlen(s), at, len;
    if (numeric) {
        if (find_number(s, n, !h, &at, &len)) return strip_commas(s + at, len);
        return cast_xstrdup("");
    }
    if (!h)
        while (*s && is_space(*s)) s++;
    const char *nl = strchr(s, '\n');
    return trimmed(s, nl ? (size_t)(nl - s) : strlen(s));
}

int cast_answer_match(const char *extracted, const char *reference) {
    if (cast_answer_is_number(extracted) && cast_answer_is_number(reference)) {
        char *a = strip_commas(extracted, strlen(extracted)), *b = strip_commas(reference, strlen(reference));
        int same = strtod(a, NULL) == strtod(b, NULL);
        free(a);
        free(b);
        return same;
    }
    char *a = trimmed(extracted, strlen(extracted)), *b = trimmed(reference, strlen(reference));
    int same = strcmp(a, b) == 0;
    free(a);
    free(b);
    return same;
}

void cast_choice_pick(const double *loglik, const int *bytes, int n, int *best, int *best_norm) {
    *best = *best_norm = 0;
    for (int i = 1; i < n; i++) {
        if (loglik[i] > loglik[*best]) *best = i;
        double a = loglik[i] / (bytes[i] > 0 ? bytes[i] : 1), b = loglik[*best_norm] / (bytes[*best_norm] > 0 ? bytes[*best_norm] : 1);
        if (a > b) *best_norm = i;
    }
}

int cast_eval_stop_ids(const cast_model *m, const cast_tokenizer *tok, const cast_chat_template *tpl, int *ids, int max) {
    int cand[CAST_MAX_EOS + 8], nc = 0;
    for (int i = 0; i < m->cfg.n_eos; i++) cand[nc++] = m->cfg.eos_ids[i];
    if (tok && cast_tokenizer_eos_id(tok) >= 0) cand[nc++] = cast_tokenizer_eos_id(tok);
    if (tok && tpl) {
        /* the special token that closes an assistant turn */
        cast_message conv[2] = {{"user", "Hi"}, {"assistant", "OK"}};
        int *t = NULL, *lab = NULL, nt = 0;
        cast_err e;
        if (cast_chat_encode(tpl, tok, conv, 2, 0, &t, &lab, &nt, &e) == 0)
            for (int i = 0; i < nt; i++)
                if (lab[i] != CAST_IGNORE_LABEL && cast_tokenizer_is_special(tok, t[i])) {
                    cand[nc++] = t[i];
                    break;
                }
        free(t);
        free(lab);
    }
    int n = 0;
    for (int i = 0; i < nc && n < max; i++) {
        int dup = cand[i] < 0 || cand[i] >= m->cfg.vocab;
        for (int k = 0; k < n; k++) dup |= ids[k] == cand[i];
        if (!dup) ids[n++] = cand[i];
    }
    return n;
}

/* ------------------------------------------------------------ opening a set */

static int fail_line(cast_err *err, const cast_eval_set *s, int example, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_line(cast_err *err, const cast_eval_set *s, int example, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cast_fail(err, "%s:%d: %s", s->path, s->ds.ex[example].line, msg);
}

/* "PATH:LINE: " before a message from a lower layer. */
static int prefix_line(cast_err *err, const cast_eval_set *s, int example) {
    char where[600];
    snprintf(where, sizeof where, "%s:%d", s->path, s->ds.ex[example].line);
    return cast_fail_prefix(err, where);
}

static int has_answers(const cast_dataset *d) {
    if (d->kind == CAST_DATA_EXACT_ANSWER) return 1;
    if (d->kind != CAST_DATA_PROMPT_RESPONSE || d->n == 0) return 0;
    for (int i = 0; i < d->n; i++)
        if (!d->ex[i].answer || !d->ex[i].prompt) return 0;
    return 1;
}

/* XSTest-style files: keep the label the role wants. */
static int filter_labels(cast_eval_set *s, cast_err *err) {
    const char *want = s->role == CAST_EVAL_BENIGN ? "safe" : "unsafe";
    int labelled = 0;
    for (int i = 0; i < s->ds.n; i++) {
        const char *l = s->ds.ex[i].label;
        labelled |= l && (!strcmp(l, "safe") || !strcmp(l, "unsafe"));
    }
    if (!labelled) return 0;
    if (cast_dataset_filter_label(&s->ds, want) == 0)
        return cast_fail(err, "%s: no item has label \"%s\" (the %s set keeps those)", s->path, want,
                         cast_eval_role_name(s->role));
    return 0;
}

/* A solved example's reply: its worked response, else its bare answer. */
static const char *shot_answer(const cast_example *e) { return e->response ? e->response : e->answer; }

/* Prompt of example i for an exact-answer set, after the few-shot examples. */
static int encode_fewshot(cast_eval_set *s, const cast_tokenizer *tok, const cast_chat_template *tpl, int i, cast_err *err) {
    const cast_dataset *d = &s->ds;
    int *ids = NULL, *labels = NULL, n = 0, rc;
    if (tpl) {
        cast_message *conv = cast_xmalloc(sizeof(cast_message) * (size_t)(2 * s->shots + 1));
        int k = 0;
        for (int j = 0; j < s->shots; j++) {
            conv[k++] = (cast_message){"user", d->ex[j].prompt};
            conv[k++] = (cast_message){"assistant", shot_answer(&d->ex[j])};
        }
        conv[k++] = (cast_message){"user", d->ex[i].prompt};
        rc = cast_chat_encode(tpl, tok, conv, k, 1, &ids, &labels, &n, err);
        free(conv);
    } else {
        /* plain text: each solved example, a blank line, then the question */
        cast_buf t = {0};
        for (int j = 0; j < s->shots; j++) cast_buf_printf(&t, "%s\n%s\n\n", d->ex[j].prompt, shot_answer(&d->ex[j]));
        cast_buf_puts(&t, d->ex[i].prompt);
        rc = cast_tokenizer_encode(tok, t.data, t.len, 1, &ids, &n, err);
        cast_buf_free(&t);
    }
    if (rc) return prefix_line(err, s, i);
    cast_seqs_push(&s->seqs, ids, NULL, n);
    for (int64_t t = s->seqs.off[s->seqs.n - 1]; t < s->seqs.off[s->seqs.n]; t++) s->seqs.labels[t] = CAST_IGNORE_LABEL;
    free(ids);
    free(labels);
    return 0;
}

/* Multiple choice: one sequence per choice; only the choice's own tokens are
 * scored (not the end-of-turn or EOS token after it). */
static int encode_choices(cast_eval_set *s, const cast_tokenizer *tok, const cast_chat_template *tpl, cast_err *err) {
    const cast_dataset *d = &s->ds;
    int total = 0;
    for (int i = 0; i < d->n; i++) total += d->ex[i].n_choices;
    s->seq_example = cast_xmalloc(sizeof(int) * (size_t)(total ? total : 1));
    for (int i = 0; i < d->n; i++) {
        const cast_example *e = &d->ex[i];
        for (int c = 0; c < e->n_choices; c++) {
            int *ids, *labels, n;
            if (cast_encode_prompt_response(tok, tpl, e->prompt, e->choices[c], &ids, &labels, &n, err))
                return prefix_line(err, s, i);
            int scored = 0;
            for (int t = 0; t < n; t++) {
                if (labels[t] != CAST_IGNORE_LABEL &&
                    (cast_tokenizer_is_special(tok, labels[t]) || labels[t] == cast_tokenizer_eos_id(tok)))
                    labels[t] = CAST_IGNORE_LABEL;
                scored += t > 0 && labels[t] != CAST_IGNORE_LABEL;
            }
            if (scored == 0) {
                free(ids);
                free(labels);
                return fail_line(err, s, i, "choice %d (\"%.60s\") has no token to score", c, e->choices[c]);
            }
            s->seq_example[s->seqs.n] = i;
            cast_seqs_push(&s->seqs, ids, labels, n);
            free(ids);
            free(labels);
        }
    }
    return 0;
}

int cast_eval_set_open(cast_eval_set *s, const char *path, cast_eval_role role, const cast_model *m,
                       const cast_tokenizer *tok, const cast_chat_template *tpl, const cast_eval_opts *o,
                       cast_err *err) {
    memset(s, 0, sizeof *s);
    s->path = cast_xstrdup(path);
    s->role = role;
    if (o->batch <= 0 || o->max_new < 0 || o->max_new_exact < 0 || o->fewshot < 0 || o->limit < 0) {
        cast_fail(err, "%s: invalid evaluation settings (batch %d, max_new %d/%d, fewshot %d, limit %d)", path, o->batch,
                  o->max_new, o->max_new_exact, o->fewshot, o->limit);
        goto fail;
    }
    if (cast_dataset_load(&s->ds, path, err)) goto fail;
    cast_dataset *d = &s->ds;
    s->kind = d->kind;
    s->format = d->format;
    if (role != CAST_EVAL_UTILITY) s->metric = CAST_METRIC_REFUSAL;
    else if (d->kind == CAST_DATA_EVAL_PROMPTS) {
        cast_fail(err, "%s: evaluation prompts (%s) have nothing to score as utility (use --harmful or --benign)", path,
                  d->format);
        goto fail;
    } else if (d->kind == CAST_DATA_MULTIPLE_CHOICE) s->metric = CAST_METRIC_CHOICE;
    else if (has_answers(d)) s->metric = CAST_METRIC_EXACT;
    else s->metric = CAST_METRIC_NLL;
    if (s->metric != CAST_METRIC_NLL || d->kind != CAST_DATA_TOKENS) {
        if (!tok) {
            cast_fail(err, "%s: this dataset holds text, and %s has no tokenizer.json", path, m->path ? m->path : "the model");
            goto fail;
        }
    }
    if (s->metric == CAST_METRIC_REFUSAL && filter_labels(s, err)) goto fail;
    if (s->metric == CAST_METRIC_EXACT) {
        if (o->fewshot >= d->n) {
            cast_fail(err, "%s: --fewshot %d leaves no example to evaluate (%d in the file)", path, o->fewshot, d->n);
            goto fail;
        }
        s->shots = o->fewshot;
        for (int i = 0; i < d->n; i++)
            if (!d->ex[i].answer || !d->ex[i].prompt) {
                fail_line(err, s, i, "an exact-answer item without %s", d->ex[i].prompt ? "an answer" : "a prompt");
                goto fail;
            }
    }
    s->n_original = d->n - s->shots;
    if (o->limit > 0) cast_dataset_take(d, 0, s->shots + o->limit);
    s->n = d->n - s->shots;

    int rc = 0;
    switch (s->metric) {
    case CAST_METRIC_REFUSAL: rc = cast_dataset_encode_prompts(d, tok, tpl, 0, &s->seqs, err); break;
    case CAST_METRIC_NLL: {
        cast_encode_opts eo = {o->max_len, 0, o->on_long, m->cfg.vocab};
        rc = cast_dataset_encode_opts(d, tok, tpl, &eo, &s->seqs, &s->skipped, &s->seq_example, err);
        s->n = s->seqs.n;
        break;
    }
    case CAST_METRIC_CHOICE: rc = encode_choices(s, tok, tpl, err); break;
    case CAST_METRIC_EXACT:
        if (s->shots == 0) {
            rc = cast_dataset_encode_prompts(d, tok, tpl, 0, &s->seqs, err);
        } else {
            for (int i = s->shots; i < d->n && !rc; i++) rc = encode_fewshot(s, tok, tpl, i, err);
        }
        break;
    }
    if (rc) goto fail;
    if (!s->seq_example) {
        s->seq_example = cast_xmalloc(sizeof(int) * (size_t)(s->seqs.n ? s->seqs.n : 1));
        for (int i = 0; i < s->seqs.n; i++) s->seq_example[i] = i + (s->metric == CAST_METRIC_EXACT ? s->shots : 0);
    }
    /* every id needs a row in the embedding table */
    for (int i = 0; i < s->seqs.n; i++)
        for (int64_t t = s->seqs.off[i]; t < s->seqs.off[i + 1]; t++)
            if (s->seqs.ids[t] < 0 || s->seqs.ids[t] >= m->cfg.vocab) {
                fail_line(err, s, s->seq_example[i],
                          "token id %d is outside the model's vocabulary (%d): tokenizer and model do not match",
                          s->seqs.ids[t], m->cfg.vocab);
                goto fail;
            }
    if (s->metric == CAST_METRIC_REFUSAL || s->metric == CAST_METRIC_EXACT) {
        s->max_new = s->metric == CAST_METRIC_EXACT ? o->max_new_exact : o->max_new;
        s->units = (int64_t)s->seqs.n * s->max_new;
        s->n_stop = cast_eval_stop_ids(m, tok, tpl, s->stop_ids, 16);
        if (s->metric == CAST_METRIC_REFUSAL && !o->judge) {
            cast_fail(err, "%s: no refusal judge given", path);
            goto fail;
        }
    } else {
        s->units = s->seqs.off[s->seqs.n];
    }
    return 0;
fail:
    cast_eval_set_free(s);
    return -1;
}

/* The replies of a previous run (a set may be run on several models). */
static void free_items(cast_eval_set *s) {
    if (s->items)
        for (int i = 0; i < s->n; i++) {
            cast_eval_item *it = &s->items[i];
            free(it->prompt);
            free(it->reply);
            free(it->why);
            free(it->answer);
            free(it->extracted);
        }
    free(s->items);
    s->items = NULL;
}

void cast_eval_set_free(cast_eval_set *s) {
    free_items(s);
    free(s->choice_ll);
    free(s->seq_example);
    cast_seqs_free(&s->seqs);
    cast_dataset_free(&s->ds);
    free(s->path);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ running a set */

/* Work is sharded across ranks: a rank's share times their number stands
 * for the job's progress. */
static void report(const cast_eval_opts *o, int64_t units) {
    if (o->progress && units > 0) o->progress(o->ctx, units * cast_dist_size());
}

/* Progress per generated token; a prompt that stops early credits the rest. */
typedef struct gen_watch {
    const cast_eval_opts *o;
    const int *stops;
    int n_stop, max_new;
    int *count; /* per prompt of the batch */
} gen_watch;

static int on_token(void *ctx, int prompt, int token) {
    gen_watch *w = ctx;
    int c = ++w->count[prompt], stop = c >= w->max_new;
    for (int k = 0; k < w->n_stop; k++) stop |= token == w->stops[k];
    report(w->o, stop ? w->max_new - c + 1 : 1);
    return 0;
}

/* A conversation's request: its last user message. */
static const char *last_user(const cast_example *e) {
    for (int k = e->n_messages - 1; k >= 0; k--)
        if (!strcmp(e->messages[k].role, "user")) return e->messages[k].content;
    return "";
}

/* Generation is sharded by batch (batch j on rank j mod size); the replies'
 * token ids are then summed across ranks (each slot is written by one rank,
 * zero elsewhere), so every rank decodes and judges every reply. */
static int run_generation(cast_eval_set *s, const cast_model *m, const cast_tokenizer *tok, const cast_eval_opts *o,
                          cast_err *err) {
    free_items(s);
    s->items = cast_xcalloc((size_t)(s->n ? s->n : 1), sizeof(cast_eval_item));
    int *count = cast_xmalloc(sizeof(int) * (size_t)o->batch);
    gen_watch w = {o, s->stop_ids, s->n_stop, s->max_new, count};
    cast_gen_opts g = {0};
    int *hit = cast_xmalloc(sizeof(int) * (size_t)o->batch);
    g.hit_max_pos = hit;
    s->hit_max_pos = 0;
    g.max_new = s->max_new;
    g.temperature = 0;
    g.top_p = 1;
    g.stop_ids = s->stop_ids;
    g.n_stop = s->n_stop;
    g.on_token = on_token;
    g.ctx = &w;
    int numeric = 0, rc = 0;
    /* per prompt: [reply length, stopped at max_position_embeddings, ids...] */
    int64_t slot = (int64_t)s->max_new + 2;
    int *replies = cast_xcalloc((size_t)((s->seqs.n ? s->seqs.n : 1) * slot), sizeof(int));
    for (int i = 0, j = 0; i < s->seqs.n; i += o->batch, j++) {
        if (!cast_dist_mine(j)) continue;
        cast_seqs part = cast_seqs_slice(&s->seqs, i, s->seqs.n - i < o->batch ? s->seqs.n - i : o->batch), out;
        memset(count, 0, sizeof(int) * (size_t)o->batch);
        if (cast_generate(m, &part, &g, &out, err)) {
            cast_fail_prefix(err, s->path);
            rc = -1;
            break;
        }
        for (int b = 0; b < part.n; b++) {
            int *r = replies + (int64_t)(i + b) * slot, len = cast_seqs_len(&out, b);
            if (len > s->max_new) len = s->max_new;
            r[0] = len;
            r[1] = hit[b];
            memcpy(r + 2, out.ids + out.off[b], sizeof(int) * (size_t)len);
            if (hit[b]) report(o, s->max_new - len); /* the rest of its progress units */
        }
        cast_seqs_free(&out);
    }
    free(hit);
    free(count);
    if (rc) {
        free(replies);
        return -1;
    }
    cast_dist_sum_int(replies, (int64_t)s->seqs.n * slot);
    s->count = 0;
    for (int i = 0; i < s->seqs.n && !rc; i++) {
        const int *r = replies + (int64_t)i * slot;
        const cast_example *e = &s->ds.ex[s->seq_example[i]];
        cast_eval_item *it = &s->items[i];
        it->line = e->line;
        it->prompt = cast_xstrdup(e->prompt ? e->prompt : last_user(e));
        it->n_tokens = r[0];
        it->hit_max_pos = r[1];
        s->hit_max_pos += r[1];
        if (cast_tokenizer_decode(tok, r + 2, it->n_tokens, 1, &it->reply, err)) {
            rc = prefix_line(err, s, s->seq_example[i]);
            break;
        }
        if (s->metric == CAST_METRIC_REFUSAL) {
            const char *why;
            it->verdict = cast_judge_refused(o->judge, it->reply, &why);
            it->why = why ? cast_xstrdup(why) : NULL;
        } else {
            it->answer = cast_xstrdup(e->answer);
            numeric = cast_answer_is_number(e->answer);
            it->extracted = cast_extract_answer(it->reply, numeric);
            it->verdict = cast_answer_match(it->extracted, it->answer);
        }
        s->count += it->verdict;
    }
    free(replies);
    if (rc) return -1;
    double rate = s->n ? (double)s->count / s->n : 0;
    if (s->metric == CAST_METRIC_REFUSAL) {
        s->refusal_rate = rate;
        s->asr = 1 - rate;
    } else {
        s->exact_match = rate;
    }
    return 0;
}

static int run_forward(cast_eval_set *s, const cast_model *m, const cast_eval_opts *o, double *seq_loss, cast_err *err) {
    cast_acts *acts = cast_acts_new();
    double sum = 0;
    int64_t count = 0, *seq_count = seq_loss ? cast_xcalloc((size_t)(s->seqs.n ? s->seqs.n : 1), sizeof(int64_t)) : NULL;
    int rc = 0;
    /* sharded by batch (batch j on rank j mod size); seq_loss arrives zeroed */
    for (int i = 0, j = 0; i < s->seqs.n && !rc; i += o->batch, j++) {
        if (!cast_dist_mine(j)) continue;
        cast_seqs part = cast_seqs_slice(&s->seqs, i, s->seqs.n - i < o->batch ? s->seqs.n - i : o->batch);
        cast_loss l;
        rc = cast_model_forward(m, acts, &part, NULL, &l, seq_loss ? seq_loss + i : NULL, seq_count ? seq_count + i : NULL, err);
        if (rc) {
            cast_fail_prefix(err, s->path);
            break;
        }
        sum += l.sum;
        count += l.count;
        report(o, part.off[part.n] - part.off[0]);
    }
    free(seq_count);
    cast_acts_free(acts);
    if (rc) return -1;
    cast_dist_sum_f64(&sum, 1);
    cast_dist_sum_i64(&count, 1);
    if (seq_loss) cast_dist_sum_f64(seq_loss, s->seqs.n);
    if (count == 0) return cast_fail(err, "%s: no scored tokens", s->path);
    s->tokens = count;
    s->loss = sum / (double)count;
    if (!isfinite(s->loss)) return cast_fail_as(err, CAST_E_NUMERIC, "%s: the loss is not finite (%g)", s->path, s->loss);
    s->perplexity = exp(s->loss);
    return 0;
}

static int run_choices(cast_eval_set *s, const cast_model *m, const cast_eval_opts *o, cast_err *err) {
    free(s->choice_ll); /* a set may be run on several models */
    s->choice_ll = cast_xcalloc((size_t)(s->seqs.n ? s->seqs.n : 1), sizeof(double));
    if (run_forward(s, m, o, s->choice_ll, err)) return -1;
    for (int i = 0; i < s->seqs.n; i++) s->choice_ll[i] = -s->choice_ll[i];
    int *bytes = cast_xmalloc(sizeof(int) * (size_t)(s->seqs.n ? s->seqs.n : 1));
    s->count = s->count_norm = 0;
    for (int q = 0; q < s->seqs.n;) {
        const cast_example *e = &s->ds.ex[s->seq_example[q]];
        for (int c = 0; c < e->n_choices; c++) bytes[c] = (int)strlen(e->choices[c]);
        int best, best_norm;
        cast_choice_pick(s->choice_ll + q, bytes, e->n_choices, &best, &best_norm);
        s->count += best == e->correct;
        s->count_norm += best_norm == e->correct;
        q += e->n_choices;
    }
    free(bytes);
    s->acc = s->n ? (double)s->count / s->n : 0;
    s->acc_norm = s->n ? (double)s->count_norm / s->n : 0;
    return 0;
}

int cast_eval_sets_open(const cast_model *m, const cast_tokenizer *tok, const cast_chat_template *tpl, const char *harmful,
                        const char *benign, const char *const *utility, int n_utility, const cast_eval_opts *o, cast_eval_set *sets,
                        int *n_sets, cast_eval_set **hs, cast_eval_set **bs, cast_eval_set **us, cast_err *err) {
    *hs = *bs = NULL;
    if (harmful) {
        if (cast_eval_set_open(&sets[*n_sets], harmful, CAST_EVAL_HARMFUL, m, tok, tpl, o, err)) return -1;
        *hs = &sets[(*n_sets)++];
    }
    if (benign) {
        if (cast_eval_set_open(&sets[*n_sets], benign, CAST_EVAL_BENIGN, m, tok, tpl, o, err)) return -1;
        *bs = &sets[(*n_sets)++];
    }
    *us = &sets[*n_sets];
    for (int i = 0; i < n_utility; i++) {
        if (cast_eval_set_open(&sets[*n_sets], utility[i], CAST_EVAL_UTILITY, m, tok, tpl, o, err)) return -1;
        (*n_sets)++;
    }
    return 0;
}

int cast_eval_set_run(cast_eval_set *s, const cast_model *m, const cast_tokenizer *tok, const cast_eval_opts *o,
                      cast_err *err) {
    int rc = 0;
    switch (s->metric) {
    case CAST_METRIC_REFUSAL:
    case CAST_METRIC_EXACT: rc = run_generation(s, m, tok, o, err); break;
    case CAST_METRIC_NLL: rc = run_forward(s, m, o, NULL, err); break;
    case CAST_METRIC_CHOICE: rc = run_choices(s, m, o, err); break;
    }
    if (rc == 0) s->done = 1;
    return rc;
}

/* ------------------------------------------------------------------ eval.json */

int cast_eval_set_metrics(const cast_eval_set *s, const char **names, double *values) {
    int n = 0;
#define PUT(name, v) (names[n] = (name), values[n] = (v), n++)
    switch (s->metric) {
    case CAST_METRIC_REFUSAL:
        PUT("refusal_rate", s->refusal_rate);
        if (s->role == CAST_EVAL_HARMFUL) PUT("asr", s->asr);
        break;
    case CAST_METRIC_NLL:
        PUT("loss", s->loss);
        PUT("perplexity", s->perplexity);
        break;
    case CAST_METRIC_CHOICE:
        PUT("acc", s->acc);
        PUT("acc_norm", s->acc_norm);
        break;
    case CAST_METRIC_EXACT: PUT("exact_match", s->exact_match); break;
    }
#undef PUT
    return n;
}

int cast_eval_check_base(const cast_json *base, const char *path, cast_err *err) {
    if (!cast_json_is_object(base) || !cast_json_string(cast_json_get(base, "model")))
        return cast_fail(err, "%s: not an eval.json (no \"model\")", path);
    const cast_json *u = cast_json_get(base, "utility");
    if (u && !cast_json_is_array(u)) return cast_fail(err, "%s: \"utility\" must be an array", path);
    for (int i = 0; u && i < cast_json_array_size(u); i++)
        if (!cast_json_is_object(cast_json_array_item(u, i)))
            return cast_fail(err, "%s: \"utility\" item %d is not an object", path, i);
    static const char *const sections[] = {"harmful", "benign"};
    for (int i = 0; i < 2; i++) {
        const cast_json *o = cast_json_get(base, sections[i]);
        if (o && !cast_json_is_object(o)) return cast_fail(err, "%s: \"%s\" must be an object", path, sections[i]);
    }
    return 0;
}

/* The same dataset file: the same name, or names of the same file. */
static int same_path(const char *a, const char *b) {
    return a && b && (!strcmp(a, b) || cast_path_relation(a, b) == CAST_PATH_SAME);
}

/* A base entry describes the same evaluation as s: same file, same number of examples. */
static int entry_matches(const cast_json *e, const cast_eval_set *s) {
    const cast_json *n = cast_json_get(e, "n");
    return same_path(cast_json_string(cast_json_get(e, "path")), s->path) && cast_json_is_number(n) && cast_json_number(n) == s->n;
}

/* The base's entry for s, paired by file and size (never by position). */
static const cast_json *base_entry(const cast_json *base, const cast_eval_set *s, int index) {
    CAST_UNUSED(index);
    if (!base) return NULL;
    if (s->role != CAST_EVAL_UTILITY) {
        const cast_json *e = cast_json_get(base, cast_eval_role_name(s->role));
        return e && entry_matches(e, s) ? e : NULL;
    }
    const cast_json *u = cast_json_get(base, "utility");
    for (int i = 0; i < cast_json_array_size(u); i++)
        if (entry_matches(cast_json_array_item(u, i), s)) return cast_json_array_item(u, i);
    return NULL;
}

/* "FILE (n N)" of a base entry, for messages */
static void entry_name(const cast_json *e, char *out, size_t cap) {
    const char *p = cast_json_string(cast_json_get(e, "path"));
    snprintf(out, cap, "%s (n %.0f)", p ? p : "(no path)", cast_json_number(cast_json_get(e, "n")));
}

int cast_eval_match_base(const cast_json *base, const char *base_path, const cast_eval_set *sets, int n_sets, cast_err *err) {
    char what[600];
    /* every set of this run has its counterpart in the base */
    for (int i = 0; i < n_sets; i++) {
        const cast_eval_set *s = &sets[i];
        if (base_entry(base, s, 0)) continue;
        const cast_json *e = s->role != CAST_EVAL_UTILITY ? cast_json_get(base, cast_eval_role_name(s->role)) : NULL;
        if (e) entry_name(e, what, sizeof what);
        return cast_fail(err,
                         "%s: this run's %s set %s (n %d) has no match in the base%s%s; --compare pairs sets by file and number of "
                         "examples: evaluate the same files with the same --first",
                         base_path, cast_eval_role_name(s->role), s->path, s->n, e ? ", which has " : "", e ? what : "");
    }
    /* and every set of the base has its counterpart in this run */
    static const char *const roles[] = {"harmful", "benign"};
    for (int r = 0; r < 2; r++) {
        const cast_json *e = cast_json_get(base, roles[r]);
        int found = 0;
        for (int i = 0; e && i < n_sets; i++) found |= !strcmp(cast_eval_role_name(sets[i].role), roles[r]);
        if (!e || found) continue;
        entry_name(e, what, sizeof what);
        return cast_fail(err, "%s: the base's %s set %s has no match in this run (give --%s with the same file)", base_path, roles[r],
                         what, roles[r]);
    }
    const cast_json *u = cast_json_get(base, "utility");
    for (int k = 0; k < cast_json_array_size(u); k++) {
        const cast_json *e = cast_json_array_item(u, k);
        int found = 0;
        for (int i = 0; i < n_sets && !found; i++) found = sets[i].role == CAST_EVAL_UTILITY && entry_matches(e, &sets[i]);
        if (found) continue;
        entry_name(e, what, sizeof what);
        return cast_fail(err, "%s: the base's utility set %s has no match in this run (same file, same number of examples)", base_path,
                         what);
    }
    return 0;
}

int cast_eval_base_value(const cast_json *base, const cast_eval_set *s, int index, const char *metric, double *out) {
    const cast_json *v = cast_json_get(base_entry(base, s, index), metric);
    if (!cast_json_is_number(v)) return -1;
    *out = cast_json_number(v);
    return 0;
}

static void json_str(cast_buf *b, const char *s) {
    if (s) cast_buf_json_string(b, s, strlen(s));
    else cast_buf_puts(b, "null");
}

static void set_json(cast_buf *b, const cast_eval_set *s, int index, const cast_json *base, int with_items,
                     const char *indent) {
    cast_buf_printf(b, "{\"path\": ");
    json_str(b, s->path);
    cast_buf_puts(b, ", \"format\": ");
    json_str(b, s->format);
    cast_buf_printf(b, ", \"kind\": \"%s\", \"metric\": \"%s\", \"n\": %d", cast_data_kind_name(s->kind),
                    cast_metric_name(s->metric), s->n);
    switch (s->metric) {
    case CAST_METRIC_REFUSAL: cast_buf_printf(b, ", \"refused\": %d", s->count); break;
    case CAST_METRIC_NLL: cast_buf_printf(b, ", \"tokens\": %lld, \"skipped\": %d", (long long)s->tokens, s->skipped); break;
    case CAST_METRIC_CHOICE:
        cast_buf_printf(b, ", \"choices\": %d, \"correct\": %d, \"correct_norm\": %d", s->seqs.n, s->count, s->count_norm);
        break;
    case CAST_METRIC_EXACT: cast_buf_printf(b, ", \"correct\": %d, \"fewshot\": %d", s->count, s->shots); break;
    }
    if (s->metric == CAST_METRIC_REFUSAL || s->metric == CAST_METRIC_EXACT)
        cast_buf_printf(b, ", \"max_new\": %d, \"stopped_at_max_position_embeddings\": %d", s->max_new, s->hit_max_pos);
    const char *names[4];
    double vals[4];
    int nm = cast_eval_set_metrics(s, names, vals);
    for (int k = 0; k < nm; k++) {
        cast_buf_printf(b, ", \"%s\": ", names[k]);
        cast_buf_json_number(b, vals[k]);
    }
    if (base_entry(base, s, index)) {
        cast_buf_puts(b, ", \"delta\": {");
        int first = 1;
        for (int k = 0; k < nm; k++) {
            double bv;
            if (cast_eval_base_value(base, s, index, names[k], &bv)) continue;
            cast_buf_printf(b, "%s\"%s\": ", first ? "" : ", ", names[k]);
            cast_buf_json_number(b, vals[k] - bv);
            first = 0;
        }
        cast_buf_puts(b, "}");
    }
    if (with_items && s->items) {
        cast_buf_puts(b, ", \"generations\": [");
        for (int i = 0; i < s->n; i++) {
            const cast_eval_item *it = &s->items[i];
            cast_buf_printf(b, "%s\n%s  {\"line\": %d, \"prompt\": ", i ? "," : "", indent, it->line);
            json_str(b, it->prompt);
            cast_buf_puts(b, ", \"reply\": ");
            json_str(b, it->reply);
            cast_buf_printf(b, ", \"tokens\": %d", it->n_tokens);
            if (it->hit_max_pos) cast_buf_puts(b, ", \"stopped\": \"max_position_embeddings\"");
            if (s->metric == CAST_METRIC_REFUSAL) {
                cast_buf_printf(b, ", \"refused\": %s, \"matched\": ", it->verdict ? "true" : "false");
                json_str(b, it->why);
            } else {
                cast_buf_puts(b, ", \"answer\": ");
                json_str(b, it->answer);
                cast_buf_puts(b, ", \"extracted\": ");
                json_str(b, it->extracted);
                cast_buf_printf(b, ", \"correct\": %s", it->verdict ? "true" : "false");
            }
            cast_buf_puts(b, "}");
        }
        cast_buf_printf(b, "\n%s]", indent);
    }
    if (with_items && s->metric == CAST_METRIC_CHOICE && s->choice_ll) {
        cast_buf_puts(b, ", \"items\": [");
        for (int q = 0, k = 0; q < s->seqs.n; k++) {
            const cast_example *e = &s->ds.ex[s->seq_example[q]];
            int *bytes = cast_xmalloc(sizeof(int) * (size_t)e->n_choices), best, best_norm;
            for (int c = 0; c < e->n_choices; c++) bytes[c] = (int)strlen(e->choices[c]);
            cast_choice_pick(s->choice_ll + q, bytes, e->n_choices, &best, &best_norm);
            cast_buf_printf(b, "%s\n%s  {\"line\": %d, \"prompt\": ", k ? "," : "", indent, e->line);
            json_str(b, e->prompt);
            cast_buf_puts(b, ", \"loglik\": [");
            for (int c = 0; c < e->n_choices; c++) {
                if (c) cast_buf_puts(b, ", ");
                cast_buf_json_number(b, s->choice_ll[q + c]);
            }
            cast_buf_puts(b, "], \"bytes\": [");
            for (int c = 0; c < e->n_choices; c++) cast_buf_printf(b, "%s%d", c ? ", " : "", bytes[c]);
            cast_buf_printf(b, "], \"correct\": %d, \"pick\": %d, \"pick_norm\": %d}", e->correct, best, best_norm);
            free(bytes);
            q += e->n_choices;
        }
        cast_buf_printf(b, "\n%s]", indent);
    }
    cast_buf_puts(b, "}");
}

void cast_eval_json(const cast_eval_report *r, const cast_json *base, const char *base_path, int with_items,
                    cast_buf *out) {
    cast_buf_puts(out, "{\"model\": ");
    json_str(out, r->model);
    const cast_eval_set *safety[2] = {r->harmful, r->benign};
    for (int k = 0; k < 2; k++) {
        if (!safety[k]) continue;
        cast_buf_printf(out, ",\n \"%s\": ", cast_eval_role_name(safety[k]->role));
        set_json(out, safety[k], 0, base, with_items, "  ");
    }
    cast_buf_puts(out, ",\n \"utility\": [");
    for (int i = 0; i < r->n_utility; i++) {
        cast_buf_puts(out, i ? ",\n  " : "\n  ");
        set_json(out, &r->utility[i], i, base, with_items, "   ");
    }
    cast_buf_puts(out, r->n_utility ? "\n ]" : "]");
    const cast_eval_opts *o = r->opts;
    cast_buf_printf(out, ",\n \"settings\": {\"decoding\": \"greedy\", \"max_new\": %d, \"max_new_exact\": %d, \"batch\": %d, "
                         "\"fewshot\": %d, \"limit\": %d, \"refusals\": ",
                    o->max_new, o->max_new_exact, o->batch, o->fewshot, o->limit);
    json_str(out, o->judge ? o->judge->source : NULL);
    cast_buf_printf(out, ", \"refusal_phrases\": %d, \"min_words\": %d, \"template\": ", o->judge ? o->judge->n : 0,
                    o->judge ? o->judge->min_words : 0);
    json_str(out, r->template_name);
    cast_buf_puts(out, ", \"stop_ids\": [");
    for (int i = 0; i < r->n_stop; i++) cast_buf_printf(out, "%s%d", i ? ", " : "", r->stop_ids[i]);
    cast_buf_printf(out, "], \"threads\": %d}", r->threads);
    if (base) {
        cast_buf_puts(out, ",\n \"compare\": {\"base\": ");
        json_str(out, base_path);
        cast_buf_puts(out, ", \"model\": ");
        json_str(out, cast_json_string(cast_json_get(base, "model")));
        cast_buf_puts(out, "}");
    }
    cast_buf_puts(out, "}\n");
}

/* ---- lm-evaluation-harness layout ------------------------------------------ */

/* "cast_<role>_<stem>": the file name up to its first dot, [a-z0-9_] only. */
static void task_name(const cast_eval_set *s, char *out, size_t n) {
    const char *base = strrchr(s->path, '/');
    base = base ? base + 1 : s->path;
    int k = snprintf(out, n, "cast_%s_", cast_eval_role_name(s->role));
    for (const char *p = base; *p && *p != '.' && k + 1 < (int)n; p++) {
        char c = *p;
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        out[k++] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : '_';
    }
    out[k] = 0;
}

/* A metric is better higher, except for a refusal rate on benign prompts,
 * the attack success rate, the loss and the perplexity. */
static int higher_is_better(const cast_eval_set *s, const char *metric) {
    if (!strcmp(metric, "refusal_rate")) return s->role == CAST_EVAL_HARMFUL;
    return strcmp(metric, "asr") && strcmp(metric, "loss") && strcmp(metric, "perplexity");
}

/* Standard error of a mean of 0/1 outcomes (the sample standard deviation
 * over sqrt(n), as lm-eval's mean_stderr); -1 when it is not a proportion
 * or n < 2. */
static double proportion_stderr(const cast_eval_set *s, const char *metric, double p) {
    if (!strcmp(metric, "loss") || !strcmp(metric, "perplexity") || s->n < 2) return -1;
    return sqrt(p * (1 - p) / (s->n - 1));
}

static const char *output_type(const cast_eval_set *s) {
    switch (s->metric) {
    case CAST_METRIC_REFUSAL:
    case CAST_METRIC_EXACT: return "generate_until";
    case CAST_METRIC_CHOICE: return "multiple_choice";
    case CAST_METRIC_NLL: return "loglikelihood";
    }
    return "?";
}

/* Every set with the names its task gets; a repeated name gets _2, _3, ... */
static int lm_tasks(const cast_eval_report *r, const cast_eval_set **sets, char (*names)[160]) {
    int n = 0;
    if (r->harmful) sets[n++] = r->harmful;
    if (r->benign) sets[n++] = r->benign;
    for (int i = 0; i < r->n_utility; i++) sets[n++] = &r->utility[i];
    for (int i = 0; i < n; i++) {
        task_name(sets[i], names[i], 140);
        int dup = 1;
        for (int k = 0; k < i; k++) dup += !strncmp(names[k], names[i], strlen(names[i]));
        if (dup > 1) snprintf(names[i] + strlen(names[i]), 20, "_%d", dup);
    }
    return n;
}

void cast_eval_lm_eval_json(const cast_eval_report *r, double date, double wall_s, cast_buf *out) {
    const cast_eval_set *sets[2 + 64];
    char names[2 + 64][160];
    int n = lm_tasks(r, sets, names);
    const cast_eval_opts *o = r->opts;
    cast_buf_puts(out, "{\n  \"results\": {");
    for (int i = 0; i < n; i++) {
        const char *mn[4];
        double mv[4];
        int nm = cast_eval_set_metrics(sets[i], mn, mv);
        cast_buf_printf(out, "%s\n    \"%s\": {\"alias\": \"%s\"", i ? "," : "", names[i], names[i]);
        for (int k = 0; k < nm; k++) {
            cast_buf_printf(out, ", \"%s,none\": ", mn[k]);
            cast_buf_json_number(out, mv[k]);
            double se = proportion_stderr(sets[i], mn[k], mv[k]);
            cast_buf_printf(out, ", \"%s_stderr,none\": ", mn[k]);
            if (se >= 0) cast_buf_json_number(out, se);
            else cast_buf_puts(out, "\"N/A\"");
        }
        cast_buf_puts(out, "}");
    }
    cast_buf_puts(out, "\n  },\n  \"group_subtasks\": {");
    for (int i = 0; i < n; i++) cast_buf_printf(out, "%s\"%s\": []", i ? ", " : "", names[i]);
    cast_buf_puts(out, "},\n  \"configs\": {");
    for (int i = 0; i < n; i++) {
        const cast_eval_set *s = sets[i];
        const char *mn[4];
        double mv[4];
        int nm = cast_eval_set_metrics(s, mn, mv);
        cast_buf_printf(out, "%s\n    \"%s\": {\"task\": \"%s\", \"dataset_path\": ", i ? "," : "", names[i], names[i]);
        json_str(out, s->path);
        cast_buf_printf(out, ", \"output_type\": \"%s\", \"num_fewshot\": %d, \"metric_list\": [", output_type(s), s->shots);
        for (int k = 0; k < nm; k++)
            cast_buf_printf(out, "%s{\"metric\": \"%s\", \"aggregation\": \"mean\", \"higher_is_better\": %s}", k ? ", " : "", mn[k],
                            higher_is_better(s, mn[k]) ? "true" : "false");
        cast_buf_puts(out, "]");
        if (s->metric == CAST_METRIC_REFUSAL || s->metric == CAST_METRIC_EXACT) {
            cast_buf_printf(out, ", \"generation_kwargs\": {\"max_gen_toks\": %d, \"do_sample\": false, \"temperature\": 0.0, "
                                 "\"until_token_ids\": [",
                            s->max_new);
            for (int k = 0; k < s->n_stop; k++) cast_buf_printf(out, "%s%d", k ? ", " : "", s->stop_ids[k]);
            cast_buf_puts(out, "]}");
        }
        cast_buf_puts(out, ", \"metadata\": {\"format\": ");
        json_str(out, s->format);
        cast_buf_printf(out, ", \"kind\": \"%s\", \"cast_metric\": \"%s\"", cast_data_kind_name(s->kind), cast_metric_name(s->metric));
        if (s->metric == CAST_METRIC_REFUSAL) {
            cast_buf_puts(out, ", \"judge\": ");
            json_str(out, o->judge ? o->judge->source : NULL);
        }
        if (s->metric == CAST_METRIC_NLL) cast_buf_printf(out, ", \"skipped_longer_than_max_len\": %d", s->skipped);
        if (s->metric == CAST_METRIC_REFUSAL || s->metric == CAST_METRIC_EXACT)
            cast_buf_printf(out, ", \"stopped_at_max_position_embeddings\": %d", s->hit_max_pos);
        cast_buf_puts(out, "}}");
    }
    cast_buf_puts(out, "\n  },\n  \"versions\": {");
    for (int i = 0; i < n; i++) cast_buf_printf(out, "%s\"%s\": 1.0", i ? ", " : "", names[i]);
    cast_buf_puts(out, "},\n  \"n-shot\": {");
    for (int i = 0; i < n; i++) cast_buf_printf(out, "%s\"%s\": %d", i ? ", " : "", names[i], sets[i]->shots);
    cast_buf_puts(out, "},\n  \"higher_is_better\": {");
    for (int i = 0; i < n; i++) {
        const char *mn[4];
        double mv[4];
        int nm = cast_eval_set_metrics(sets[i], mn, mv);
        cast_buf_printf(out, "%s\n    \"%s\": {", i ? "," : "", names[i]);
        for (int k = 0; k < nm; k++)
            cast_buf_printf(out, "%s\"%s\": %s", k ? ", " : "", mn[k], higher_is_better(sets[i], mn[k]) ? "true" : "false");
        cast_buf_puts(out, "}");
    }
    cast_buf_puts(out, "\n  },\n  \"n-samples\": {");
    for (int i = 0; i < n; i++)
        cast_buf_printf(out, "%s\n    \"%s\": {\"original\": %d, \"effective\": %d}", i ? "," : "", names[i], sets[i]->n_original,
                        sets[i]->n);
    cast_buf_puts(out, "\n  },\n  \"config\": {\"model\": \"cast\", \"model_args\": ");
    json_str(out, r->model);
    cast_buf_printf(out, ", \"batch_size\": %d, \"batch_sizes\": [], \"device\": \"cpu\", \"limit\": ", o->batch);
    if (o->limit > 0) cast_buf_printf(out, "%d", o->limit);
    else cast_buf_puts(out, "null");
    cast_buf_puts(out, ", \"gen_kwargs\": {\"do_sample\": false}, \"chat_template\": ");
    json_str(out, r->template_name);
    cast_buf_printf(out, ", \"threads\": %d},\n  \"model_name\": ", r->threads);
    json_str(out, r->model);
    cast_buf_puts(out, ",\n  \"date\": ");
    cast_buf_json_number(out, date);
    cast_buf_printf(out, ",\n  \"total_evaluation_time_seconds\": \"%.2f\"\n}\n", wall_s);
}

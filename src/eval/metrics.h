/* Evaluation (DESIGN §3 "Evaluation"): refusal rates on harmful and benign
 * prompts from greedy replies, and utility by the kind of the dataset:
 * - prompt/response, messages, text, tokens: mean NLL over the scored
 *   (response) tokens and perplexity, as `cast score` computes them;
 * - multiple choice: per choice the summed log-likelihood of its tokens given
 *   the prompt; acc = argmax of it, acc_norm = argmax of it divided by the
 *   choice's length in bytes (lm-evaluation-harness);
 * - exact answers (GSM8K "#### n"): greedy reply, answer extracted, compared
 *   exactly (numbers numerically) -> exact_match.
 * A set is opened first (loaded, filtered, encoded, checked: every input
 * error surfaces before any model work), then run. */
#ifndef CAST_EVAL_METRICS_H
#define CAST_EVAL_METRICS_H

#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/json.h"
#include "eval/judge.h"
#include "model/model.h"
#include "model/seqs.h"
#include "text/chat.h"
#include "text/dataset.h"
#include "text/tokenizer.h"

typedef enum { CAST_EVAL_HARMFUL, CAST_EVAL_BENIGN, CAST_EVAL_UTILITY } cast_eval_role;
typedef enum { CAST_METRIC_REFUSAL, CAST_METRIC_NLL, CAST_METRIC_CHOICE, CAST_METRIC_EXACT } cast_metric;

const char *cast_eval_role_name(cast_eval_role r); /* "harmful", "benign", "utility" */
const char *cast_metric_name(cast_metric m);       /* "refusal", "nll", "choice", "exact" */

typedef struct cast_eval_opts {
    int max_new;       /* harmful / benign replies: new tokens at most (default 64) */
    int max_new_exact; /* exact-answer replies (default 256) */
    int batch;         /* prompts per generation batch, sequences per forward (default 8) */
    int fewshot;       /* exact answers: the file's first K examples, solved, precede each prompt (default 0) */
    int limit;         /* --first: examples per set, after filtering and few-shot examples (0 = all) */
    int max_len;       /* NLL sets: tokens per example at most (0 = no limit) */
    cast_on_long on_long; /* NLL sets: an example longer than max_len (default skip, counted in skipped) */
    const cast_judge *judge; /* refusal sets (required there) */
    /* progress (optional): called with the units of work just done; a set's
     * total is cast_eval_set.units */
    void (*progress)(void *ctx, int64_t units);
    void *ctx;
} cast_eval_opts;

void cast_eval_opts_default(cast_eval_opts *o);

/* One generated reply. */
typedef struct cast_eval_item {
    int line;        /* the example's line in its file */
    char *prompt;    /* the request (few-shot examples not included) */
    char *reply;     /* decoded, special tokens skipped */
    int n_tokens;    /* generated tokens, stop token included */
    int verdict;     /* refusal sets: refused; exact answers: correct */
    int hit_max_pos; /* the reply stopped at max_position_embeddings */
    char *why;       /* refusal sets: the matched phrase or "too few words"; NULL otherwise */
    char *answer;    /* exact answers: the reference */
    char *extracted; /* exact answers: what was read from the reply ("" when nothing) */
} cast_eval_item;

typedef struct cast_eval_set {
    char *path;
    cast_eval_role role;
    cast_metric metric;
    cast_data_kind kind;
    const char *format; /* the dataset's recognised format */
    int n;              /* examples evaluated */
    int skipped;        /* NLL sets: examples left out as longer than max_len */
    int n_original;     /* examples the file offers (after the safe/unsafe filter and few-shot examples), before --first */
    int hit_max_pos;    /* generation sets: replies stopped at max_position_embeddings */
    int shots;          /* exact answers: examples used as few-shot examples (not evaluated) */
    int max_new;        /* generation sets: the limit used */
    int stop_ids[16];   /* generation sets: cast_eval_stop_ids */
    int n_stop;
    cast_dataset ds;    /* shots first, then the evaluated examples */
    cast_seqs seqs;     /* prompts (generation) or scored sequences */
    int *seq_example;   /* example index (into ds) of each sequence */
    int64_t units;      /* work for progress: tokens to run or generate */
    /* results, after cast_eval_set_run */
    int done;
    int count;             /* refusals, correct answers (acc), ... */
    int count_norm;        /* multiple choice: correct by acc_norm */
    double refusal_rate, asr;
    double loss, perplexity;
    int64_t tokens;        /* nll: scored tokens */
    double acc, acc_norm;
    double exact_match;
    double *choice_ll;     /* multiple choice: log-likelihood of each sequence */
    cast_eval_item *items; /* generation sets: n replies */
} cast_eval_set;

/* Loads and prepares a set. Harmful / benign: prompts of any dataset that has
 * them (XSTest-style files with label safe/unsafe keep the label the role
 * wants: benign "safe", harmful "unsafe"). Utility: the metric follows the
 * dataset's kind; evaluation prompts are an error. tok may be NULL only for
 * token datasets; tpl NULL means plain text. */
int cast_eval_set_open(cast_eval_set *s, const char *path, cast_eval_role role, const cast_model *m,
                       const cast_tokenizer *tok, const cast_chat_template *tpl, const cast_eval_opts *o,
                       cast_err *err);
/* The sets a run evaluates, opened in order into sets[] (room for 2 +
 * n_utility): harmful, benign (either may be NULL), then the utility files.
 * *hs / *bs point at the harmful / benign set or NULL, *us at the first
 * utility set; *n_sets counts what was opened (free those, also after an
 * error). */
int cast_eval_sets_open(const cast_model *m, const cast_tokenizer *tok, const cast_chat_template *tpl, const char *harmful,
                        const char *benign, const char *const *utility, int n_utility, const cast_eval_opts *o, cast_eval_set *sets,
                        int *n_sets, cast_eval_set **hs, cast_eval_set **bs, cast_eval_set **us, cast_err *err);
int cast_eval_set_run(cast_eval_set *s, const cast_model *m, const cast_tokenizer *tok, const cast_eval_opts *o,
                      cast_err *err);
void cast_eval_set_free(cast_eval_set *s);

/* Generation ends at these ids: the model's eos ids (config.json), the
 * tokenizer's eos, and the chat template's end-of-turn token (the special
 * token that closes an assistant turn, e.g. <|im_end|>, <|eot_id|>, <|end|>).
 * Returns how many (at most max), ids outside the model's vocabulary dropped. */
int cast_eval_stop_ids(const cast_model *m, const cast_tokenizer *tok, const cast_chat_template *tpl, int *ids, int max);

/* Multiple choice: indices of the highest log-likelihood (*best) and of the
 * highest log-likelihood per byte (*best_norm); ties go to the first. */
void cast_choice_pick(const double *loglik, const int *bytes, int n, int *best, int *best_norm);

/* Exact answers. A number: optional '-', digits with optional thousands
 * separators, optional fraction, nothing else (spaces around allowed). */
int cast_answer_is_number(const char *s);
/* What a reply answers: after "####" when present (the first number there
 * when numeric, else the rest of that line, trimmed); otherwise the last
 * number of the reply (numeric) or its first non-blank line, trimmed.
 * Thousands separators are removed from numbers. malloc'd, "" when nothing. */
char *cast_extract_answer(const char *reply, int numeric);
/* 1 when they agree: numerically when both are numbers, else byte for byte
 * after trimming. */
int cast_answer_match(const char *extracted, const char *reference);

/* ---- eval.json ------------------------------------------------------------- */

typedef struct cast_eval_report {
    const char *model;
    const cast_eval_set *harmful, *benign; /* NULL when not evaluated */
    const cast_eval_set *utility;
    int n_utility;
    const cast_eval_opts *opts;
    const char *template_name; /* NULL: plain text */
    const int *stop_ids;
    int n_stop;
    int threads;
} cast_eval_report;

/* The headline metrics of a finished set, in report order (at most 4):
 * refusal_rate [, asr for harmful] | loss, perplexity | acc, acc_norm | exact_match. */
int cast_eval_set_metrics(const cast_eval_set *s, const char **names, double *values);
/* Checks that a parsed file looks like an eval.json (for --compare). */
int cast_eval_check_base(const cast_json *base, const char *path, cast_err *err);
/* --compare pairs sets by file (same path, or the same file by real path)
 * and number of examples, never by position: -1 with the first set of this
 * run, or of the base, that has no counterpart in the other. */
int cast_eval_match_base(const cast_json *base, const char *base_path, const struct cast_eval_set *sets, int n_sets, cast_err *err);
/* The base's value of a metric ("refusal_rate", "loss", ...) for a set: the
 * base entry of the same role with the same file and number of examples
 * (index is unused). Returns 0 and *out, or -1 when the base lacks it. */
int cast_eval_base_value(const cast_json *base, const cast_eval_set *s, int index, const char *metric, double *out);
/* The eval.json object: {"model", "harmful", "benign", "utility": [...],
 * "settings"}, with base: "compare" and a "delta" object (this - base) in
 * every set the base also has; with_items: each generation set's
 * "generations" (prompt, reply, verdict) and each multiple-choice set's
 * "items" (log-likelihood and length of every choice, picks). docs/eval.md
 * shows the schema. Ends with a newline. */
void cast_eval_json(const cast_eval_report *r, const cast_json *base, const char *base_path, int with_items,
                    cast_buf *out);

/* The same results in lm-evaluation-harness's results layout (eval
 * --format lm-eval), so tools that read lm-eval's results_*.json read it:
 * "results" {task: {"alias", "METRIC,none": value, "METRIC_stderr,none":
 * standard error of the mean (proportions) or "N/A"}}, "group_subtasks",
 * "configs" {task: {task, dataset_path, output_type, num_fewshot,
 * metric_list, generation_kwargs, metadata}}, "versions", "n-shot",
 * "higher_is_better", "n-samples" {task: {original, effective}}, "config",
 * "model_name", "date" (unix seconds), "total_evaluation_time_seconds".
 * Tasks are named cast_harmful_STEM, cast_benign_STEM, cast_utility_STEM
 * (STEM: the file name without extensions). docs/eval.md shows it. */
void cast_eval_lm_eval_json(const cast_eval_report *r, double date, double wall_s, cast_buf *out);

#endif

/* Datasets, recognised by content (not by file name): JSONL, JSON arrays and
 * CSV files of prompts, responses, conversations, token ids, multiple-choice
 * questions and exact answers; gzip is transparent. docs/datasets.md lists
 * the formats. Malformed input is an error naming the file and line; nothing
 * is skipped silently. */
#ifndef CAST_TEXT_DATASET_H
#define CAST_TEXT_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "model/seqs.h"
#include "text/chat.h"
#include "text/tokenizer.h"

typedef enum cast_data_kind {
    CAST_DATA_PROMPT_RESPONSE, /* prompt + reference response */
    CAST_DATA_MESSAGES,        /* conversations */
    CAST_DATA_TOKENS,          /* pre-tokenized input_ids (+ labels) */
    CAST_DATA_EVAL_PROMPTS,    /* prompts without responses (AdvBench, XSTest, HarmBench, ...) */
    CAST_DATA_MULTIPLE_CHOICE, /* prompt + choices + correct index (MMLU, TruthfulQA mc1) */
    CAST_DATA_EXACT_ANSWER,    /* prompt + worked response + exact answer (GSM8K) */
    CAST_DATA_TEXT,            /* plain text, all of it scored */
} cast_data_kind;

/* One example; fields that the source lacks are NULL / 0. */
typedef struct cast_example {
    int line;       /* 1-based line where the example starts in the file */
    char *prompt;   /* the user's request (HarmBench: context, ---, behaviour) */
    char *response; /* reference response; NULL for evaluation prompts */
    char *target;   /* AdvBench target ("Sure, here is ..."): a harmful compliance, never a response */
    char *context;  /* HarmBench ContextString (also folded into prompt) */
    char *text;     /* CAST_DATA_TEXT */
    cast_message *messages; /* owned strings */
    int n_messages;
    int *ids, *labels; /* CAST_DATA_TOKENS; labels NULL = every token scored */
    int n_ids;
    char **choices; /* CAST_DATA_MULTIPLE_CHOICE */
    int n_choices, correct;
    char *answer;   /* exact answer: GSM8K's number after ####, thousands separators removed */
    char *label;    /* e.g. XSTest safe | unsafe */
    char *type;     /* e.g. XSTest type, HarmBench FunctionalCategory */
    char *category; /* e.g. HarmBench SemanticCategory, do-not-answer risk_area */
    char *id;       /* the source's own id, when it has one */
} cast_example;

typedef struct cast_dataset {
    char *path;
    cast_data_kind kind;
    const char *format; /* what was recognised, e.g. "AdvBench CSV (goal,target)" */
    int n;
    cast_example *ex;
} cast_dataset;

const char *cast_data_kind_name(cast_data_kind k); /* "prompt_response", "messages", ... */

int cast_dataset_load(cast_dataset *d, const char *path, cast_err *err);
/* The same from text[0..len) in memory (already inflated; need not be
 * NUL-terminated); path names it in messages and in d->path. */
int cast_dataset_load_text(cast_dataset *d, const char *text, size_t len, const char *path, cast_err *err);
void cast_dataset_free(cast_dataset *d);

/* Keeps the examples whose label equals `label` (e.g. XSTest "safe"); returns how many. */
int cast_dataset_filter_label(cast_dataset *d, const char *label);
/* Keeps examples [first, first + count) (clamped). */
void cast_dataset_take(cast_dataset *d, int first, int count);
/* Keeps the examples at the n increasing indices idx (e.g. the seq_example
 * of cast_dataset_encode_opts, so that the dataset lines up with its sequences). */
void cast_dataset_keep(cast_dataset *d, const int *idx, int n);
/* Deterministic shuffle (cast_rng). */
void cast_dataset_shuffle(cast_dataset *d, uint64_t seed);

/* Training / scoring sequences, one per example in order (the first
 * max_examples; 0 = all), truncated to max_len tokens (0 = no limit):
 * - prompt/response (also multiple choice with its correct choice, exact
 *   answer with its worked response): the conversation [user prompt,
 *   assistant response] through tpl, or with tpl NULL plain text: the prompt
 *   (with the tokenizer's post-processor, e.g. BOS) and a newline, unscored,
 *   then the response and EOS, scored;
 * - messages: as they are, through tpl (required);
 * - tokens: as they are (tok may be NULL; with it, ids are checked against
 *   the vocabulary);
 * - text: the text with the post-processor, all scored.
 * Evaluation prompts have nothing to score: an error. So is an example with
 * no scored token (naming its file and line). This strict form truncates an
 * over-long example and fails when no scored token is left; commands use
 * cast_dataset_encode_opts and its --on-long policy. */
int cast_dataset_encode(const cast_dataset *d, const cast_tokenizer *tok, const cast_chat_template *tpl, int max_len,
                        int max_examples, cast_seqs *out, cast_err *err);

/* What happens to an example longer than max_len tokens (--on-long). */
typedef enum cast_on_long {
    CAST_ON_LONG_SKIP,     /* left out and counted (the default) */
    CAST_ON_LONG_TRUNCATE, /* cut to max_len; left out and counted when no scored token is left */
    CAST_ON_LONG_ERROR,    /* an error naming the file and line */
} cast_on_long;

int cast_on_long_parse(const char *s, cast_on_long *out); /* "skip" | "truncate" | "error"; -1 otherwise */
const char *cast_on_long_name(cast_on_long p);

typedef struct cast_encode_opts {
    int max_len;          /* tokens per sequence at most (0 = no limit) */
    int max_examples;     /* the first N examples (0 = all) */
    cast_on_long on_long; /* over-long examples */
    int vocab_size;       /* pre-tokenized ids must be below it: the model's vocab_size, which may exceed the
                             tokenizer's size (Qwen2 pads its embedding table); 0 = the tokenizer's size */
} cast_encode_opts;

/* cast_dataset_encode with a policy for over-long examples. *n_skipped (may
 * be NULL) receives how many were left out; seq_example (may be NULL)
 * receives the example index of each sequence (malloc'd, out->n entries).
 * When every example is left out, an error. */
int cast_dataset_encode_opts(const cast_dataset *d, const cast_tokenizer *tok, const cast_chat_template *tpl,
                             const cast_encode_opts *o, cast_seqs *out, int *n_skipped, int **seq_example,
                             cast_err *err);

/* Every id and label (other than CAST_IGNORE_LABEL) of the encoded d must
 * have a row in the model's embedding table of `vocab` rows; otherwise
 * "PATH:LINE: token id N is outside the model's vocabulary (V): tokenizer and
 * model do not match" (seq_example: each sequence's example, as
 * cast_dataset_encode_opts gives it). */
int cast_dataset_check_vocab(const cast_dataset *d, const cast_seqs *seqs, const int *seq_example, int vocab, const char *path,
                             cast_err *err);

/* Prompts for generation, one per example (labels all -100): the prompt as a
 * user turn through tpl with the generation prompt, or with tpl NULL the
 * prompt with the post-processor and the newline training puts before the
 * response; a conversation up to its last assistant
 * turn. Not for tokens or text datasets. */
int cast_dataset_encode_prompts(const cast_dataset *d, const cast_tokenizer *tok, const cast_chat_template *tpl,
                                int max_examples, cast_seqs *out, cast_err *err);

/* One prompt/response pair as cast_dataset_encode encodes it (for scoring
 * each choice of a multiple-choice question, for instance). */
int cast_encode_prompt_response(const cast_tokenizer *tok, const cast_chat_template *tpl, const char *prompt,
                                const char *response, int **ids, int **labels, int *n, cast_err *err);

#endif

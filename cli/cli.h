/* The command line: one file per subcommand, sharing the option parser and
 * the progress/printing helpers here. The library never prints; this layer does. */
#ifndef CAST_CLI_H
#define CAST_CLI_H

#include <stdint.h>

#include "base/error.h"

typedef enum {
    CLI_FLAG,    /* int*: set to 1 when present */
    CLI_INT,     /* int* */
    CLI_INT64,   /* int64_t* */
    CLI_DOUBLE,  /* double* */
    CLI_STRING,  /* const char** */
    CLI_STRINGS, /* cli_strings*: repeatable, or several values after one flag */
} cli_kind;

typedef struct cli_strings {
    const char *v[64];
    int n;
} cli_strings;

typedef struct cli_opt {
    const char *name; /* "--max-new" */
    cli_kind kind;
    void *out;
    const char *metavar; /* "N" */
    const char *help;
} cli_opt;

typedef struct cli_spec {
    const char *command;     /* "generate" */
    const char *usage;       /* "MODEL [options]" */
    const char *summary;     /* one line */
    const cli_opt *opts;     /* terminated by {0} */
    int min_positional, max_positional;
} cli_spec;

/* Parses argv (argv[0] is the subcommand). Positional arguments go to pos[].
 * Returns 0 to go on, 1 after printing an error (exit 1), 2 after printing
 * --help (exit 0). */
int cli_parse(const cli_spec *spec, int argc, char **argv, const char **pos, int *n_pos);

/* Prints "cast: message" on stderr and returns 1 (the exit status). */
int cli_fail(const cast_err *err);
int cli_failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A progress bar with ETA on stderr (only when stderr is a terminal, or
 * CAST_PROGRESS=1); silent otherwise. */
typedef struct cli_progress {
    const char *label;
    int64_t total;
    double start, last_draw;
    int enabled;
} cli_progress;

void cli_progress_start(cli_progress *p, const char *label, int64_t total);
void cli_progress_update(cli_progress *p, int64_t done, const char *extra);
void cli_progress_end(cli_progress *p);

/* Parses "1,2,3" into ints; malloc'd. */
int cli_parse_ids(const char *s, int **ids, int *n);

/* A model folder with its tokenizer and chat template (both optional). */
#include "model/model.h"
#include "model/seqs.h"
#include "text/chat.h"
#include "text/dataset.h"
#include "text/tokenizer.h"

typedef struct cli_model {
    const char *path;
    cast_model m;
    cast_tokenizer *tok;     /* NULL when the folder has no tokenizer */
    cast_chat_template *tpl; /* NULL: plain text */
} cli_model;

/* Returns 0, or 1 after printing the error. template_name NULL: the model's own. */
int cli_model_open(cli_model *cm, const char *path, const char *template_name);
void cli_model_close(cli_model *cm);
/* Loads a dataset, shuffles it when seed >= 0, keeps max_examples (0 = all),
 * encodes it for scoring and checks ids against the model's vocabulary.
 * keep (optional) receives the dataset, aligned with out. 0 or 1 as above. */
int cli_encode_file(cli_model *cm, const char *path, int max_examples, int max_len, int64_t seed, cast_seqs *out,
                    cast_dataset *keep);

/* A conversation from a JSON file: [{"role": ..., "content": ...}, ...]. */
typedef struct cli_messages {
    cast_message *m; /* strings point into json */
    int n;
    struct cJSON *json;
} cli_messages;
int cli_read_messages(const char *path, cli_messages *out);
void cli_messages_free(cli_messages *msgs);

/* Streams generated text to stdout as tokens come (cast_gen_opts.on_token). */
typedef struct cli_stream {
    const cast_tokenizer *tok;
    int *ids;     /* room for max_new + 1 ids */
    int n;
    size_t printed; /* bytes of decoded text already written */
} cli_stream;
int cli_stream_token(void *ctx, int prompt, int token);

int cmd_info(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_diagnose(int argc, char **argv);
int cmd_organism(int argc, char **argv); /* cli/cmd_organism.c: organism data | ... */
int cmd_eval(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_apply_delta(int argc, char **argv);

#endif

/* The command line: one file per subcommand, sharing the option parser and
 * the progress/printing helpers here. The library never prints; this layer does. */
#ifndef CAST_CLI_H
#define CAST_CLI_H

#include <stdint.h>

#include "base/error.h"
#include "eval/metrics.h"

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

/* Returns 0, or 1 after printing the error. template_name NULL: the model's
 * own. compute: --compute's value (auto, f32, bf16; NULL: auto). */
int cli_model_open(cli_model *cm, const char *path, const char *template_name, const char *compute);
/* Loads a model folder alone (no tokenizer) computing as --compute says; 0, or 1 after printing. */
int cli_model_load(cast_model *m, const char *path, const char *compute);
/* --compute, the same in every command that runs a model */
#define CLI_COMPUTE_OPT(var)                                                                                              \
    {"--compute", CLI_STRING, &(var), "MODE",                                                                           \
     "auto, f32 or bf16: products in f32, or in bf16 on CPUs with bf16 dot products (AVX512-BF16, AMX); default auto: " \
     "bf16 for a bf16 checkpoint on such a CPU, else f32"}
/* The same without the weights (config.json and safetensors headers only;
 * tensors' data is NULL): cast info on any size of checkpoint. */
int cli_model_open_header(cli_model *cm, const char *path);
void cli_model_close(cli_model *cm);
/* How a command reads a dataset: the flags --first, --max-len and --on-long
 * mean the same in every command. */
typedef struct cli_data_opts {
    int first;            /* --first N: the first N examples (0 = all), after the shuffle */
    int max_len;          /* --max-len N: tokens per example at most (0 = no limit) */
    cast_on_long on_long; /* --on-long: an example longer than max_len (default skip) */
    int64_t seed;         /* >= 0: shuffle (seeded) before taking the first N; -1: file order */
} cli_data_opts;
#define CLI_ON_LONG_HELP "an example longer than --max-len: skip (counted), truncate or error (default skip)"
/* Parses --on-long's value into *out; 0, or 1 after printing the error. */
int cli_on_long(const char *command, const char *value, cast_on_long *out);

/* Loads a dataset, shuffles it when seed >= 0, keeps the first N, encodes it
 * for scoring (cast_dataset_encode_opts: over-long examples by o->on_long,
 * token ids bounded by the model's vocab_size) and checks every id against
 * the model's vocabulary. Skipped examples are counted in *skipped (may be
 * NULL) and said in a note on stderr. keep (optional) receives the dataset,
 * aligned with out (skipped examples removed). 0 or 1 as above. */
int cli_encode_file(cli_model *cm, const char *path, const cli_data_opts *o, cast_seqs *out, cast_dataset *keep,
                    int *skipped);


/* Memory plans (cast/memory.h) against the budget before the work: 0, or 1
 * after printing why the run would not fit and the flags that would help.
 * diagnose notes a plan of several gradient passes. */
#include "cast/diagnose.h"
/* They set what the plan chose: m->stream, o->grad_passes, *half_moments.
 * stream and *half_moments: 1 on, 0 off, -1 when needed. */
int cli_memory_check_diagnose(cast_model *m, const cast_seqs *safety, const cast_seqs *utility, cast_diag_opts *o, int stream);
int cli_memory_check_tune(cast_model *m, const cast_seqs *train, int micro_batch, int64_t trained, int keep_before, int64_t budget,
                          int stream, int *half_moments);
/* --stream's value: "auto" -1, "on" 1, "off" 0; 0 or 1 after printing. */
int cli_stream_mode(const char *command, const char *value, int *out);
#define CLI_STREAM_OPT(var)                                                                                                     \
    {"--stream", CLI_STRING, &(var), "auto|on|off",                                                                           \
     "16-bit weights leave memory after each use and return from the page cache: a layer resident at a time (the same "     \
     "numbers; default auto: when the run would not fit otherwise)"}
/* One line: "what  total = parts: fits|DOES NOT FIT budget". */
#include "cast/memory.h"
void cli_memory_plan_print(const char *what, const cast_mem_plan *p);

/* "note: ..." on stderr: information, not an error (errors are "cast: ..."). */
void cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An output folder. Every command that writes a folder calls cli_out_begin
 * before writing anything and cli_out_commit when all is written:
 *   cli_out o;
 *   if (cli_out_begin(&o, out, inputs, n, force, resume)) return 1;
 *   ... write files under o.dir ...
 *   if (failed) cli_out_abort(&o); else if (cli_out_commit(&o)) return 1;
 * cli_out_begin refuses, printing one error line: an out_dir that is, contains
 * or is inside one of inputs[] (model folders, dataset files, delta, map; NULL
 * entries skipped; compared by real path, so symlinks and "../" do not hide
 * it); an out_dir that exists and is not a folder; a non-empty out_dir unless
 * force or resume. Then:
 *   - absent or empty: created; o->dir is out_dir (written in place); abort
 *     removes a folder it created if nothing was written there (a failed
 *     tune keeps its log and checkpoints for --resume);
 *   - non-empty with force: o->dir is a staging folder beside it
 *     (OUT.tmp.<pid>); commit swaps it in whole by rename, so nothing of the
 *     old folder survives; abort (or a killed run) leaves the old folder intact;
 *   - resume: out_dir must be an existing folder (it holds the run being
 *     continued); o->dir is out_dir, written in place; force is ignored.
 * Returns 0, or 1 after printing the error. commit returns 0, or 1 after
 * printing; commit and abort release o (abort removes the staging folder).
 * Under MPI rank 0 does all of this and tells the other ranks o->dir (where
 * a sharded optimizer's checkpoints go); for them o->writer is 0, commit and
 * abort do nothing, and the command writes nothing else. */
typedef struct cli_out {
    const char *dir; /* where to write: out_dir or the staging folder */
    const char *final;
    char *stage; /* NULL when writing in place */
    int created; /* begin created out_dir: abort removes it if still empty */
    int writer;  /* 1 on the process that writes the outputs (rank 0) */
    char *shared_dir; /* the other ranks: rank 0's o->dir */
} cli_out;
int cli_out_begin(cli_out *o, const char *out_dir, const char *const *inputs, int n_inputs, int force, int resume);
int cli_out_commit(cli_out *o);
void cli_out_abort(cli_out *o);
/* A single output file (eval --out FILE): 1 after printing the error when it
 * is, contains or is inside one of inputs[]; else 0. */
int cli_out_file_check(const char *out_file, const char *const *inputs, int n_inputs);

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
int cmd_attribute(int argc, char **argv); /* cli/cmd_attribute.c: headroom of an alignment */
int cmd_data(int argc, char **argv); /* cli/cmd_data.c: data refusals */

#endif

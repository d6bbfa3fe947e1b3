/* cast: conflict-aware sparse tuning of language models — the public C API.
 *
 * One self-contained header (it includes only the C library's). Use cases:
 * open a Hugging Face model folder (weights, tokenizer, chat template), read
 * a dataset for it, diagnose the conflict map, select heads, tune with a skip
 * set, evaluate, generate, save the model and its delta, apply a delta.
 *
 * Conventions, in the manner of sqlite3.h and llama.h:
 * - handles are opaque; each *_open / *_read / cast_diagnose that succeeds
 *   gives one that its *_free releases;
 * - parameters come in structs filled by *_default_params() first;
 * - every fallible function returns CAST_OK (0) or another cast_code, and
 *   fills *err (which may be NULL) with the code and a one-line message
 *   "PATH: what is wrong". The library never prints and never exits;
 * - strings are UTF-8; head indices are layer-major: layer * heads + head.
 *
 * Link with `pkg-config --cflags --libs cast` (libcast.so or libcast.a).
 * docs/library.md is the guide; examples/ has two short programs. */
#ifndef CAST_H
#define CAST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAST_VERSION "0.1.0"

#if defined(__GNUC__)
#define CAST_API __attribute__((visibility("default")))
#else
#define CAST_API
#endif

/* ---- errors ------------------------------------------------------------------ */

typedef enum cast_code {
    CAST_OK = 0,
    CAST_ERR_IO = 1,        /* a file could not be read or written */
    CAST_ERR_FORMAT = 2,    /* a file or input is malformed, or does not fit the model */
    CAST_ERR_ARGUMENT = 3,  /* a parameter is out of range */
    CAST_ERR_NUMERIC = 4,   /* a loss or gradient is not finite */
    CAST_ERR_MEMORY = 5,    /* out of memory */
    CAST_ERR_CANCELLED = 6, /* the caller's progress callback or cancel flag stopped it */
} cast_code;

typedef struct cast_error {
    cast_code code;
    char message[1024];
} cast_error;

CAST_API const char *cast_code_name(cast_code code); /* "io", "format", ... */
CAST_API const char *cast_version(void);

/* ---- models ------------------------------------------------------------------ */

/* A model folder: config.json, *.safetensors (sharded or not), and when
 * present tokenizer.json and its chat template (tokenizer_config.json). */
typedef struct cast_llm cast_llm;

typedef struct cast_llm_params {
    const char *chat_template; /* NULL: the model's own; else a built-in name (chatml, llama2, ...) or a Jinja file */
    int threads;               /* 0: all cores */
    const char *compute;       /* "auto" (or NULL), "f32" or "bf16": how the products run (bf16 needs a CPU with
                                  AVX512-BF16 or AMX; auto takes it for a bf16 checkpoint on such a CPU) */
} cast_llm_params;

typedef struct cast_llm_info {
    char architecture[64]; /* e.g. "LlamaForCausalLM" */
    int layers, heads, kv_heads, head_dim, hidden, vocab;
    int64_t parameters;
    int has_tokenizer, has_chat_template;
} cast_llm_info;

CAST_API void cast_llm_default_params(cast_llm_params *p);
CAST_API cast_code cast_llm_open(const char *dir, const cast_llm_params *p, cast_llm **out, cast_error *err);
CAST_API void cast_llm_free(cast_llm *m);
CAST_API void cast_llm_get_info(const cast_llm *m, cast_llm_info *out);
/* The model folder as it is now (after tuning: the tuned weights), with the
 * tokenizer files; dtype "f32", "bf16", "f16" or NULL (the input's). */
CAST_API cast_code cast_llm_save(const cast_llm *m, const char *dir, const char *dtype, cast_error *err);
/* Adds a delta written by cast (sparse slices or a task vector) times scale;
 * one made from another base is refused unless force. */
CAST_API cast_code cast_llm_apply_delta(cast_llm *m, const char *delta_path, double scale, int force, cast_error *err);

/* ---- datasets ------------------------------------------------------------------ */

/* A dataset encoded for a model: JSONL / JSON / CSV / Parquet-free formats
 * that `cast` reads (prompt/response, messages, text, tokens; AdvBench,
 * XSTest, GSM8K and the like), rendered through the chat template. */
typedef struct cast_data cast_data;

typedef struct cast_data_params {
    int first;         /* the first N examples (0: all) */
    int max_len;       /* tokens per example at most (0: no limit; default 256) */
    const char *on_long; /* "skip" (default), "truncate" or "error" */
    int64_t shuffle_seed; /* >= 0: shuffle with it before taking the first N; -1 (default): file order */
} cast_data_params;

CAST_API void cast_data_default_params(cast_data_params *p);
CAST_API cast_code cast_data_read(const cast_llm *m, const char *path, const cast_data_params *p, cast_data **out,
                                  cast_error *err);
CAST_API int cast_data_count(const cast_data *d);   /* examples kept */
CAST_API int cast_data_skipped(const cast_data *d); /* examples left out as too long */
CAST_API void cast_data_free(cast_data *d);

/* ---- diagnosis: the conflict map ------------------------------------------------ */

typedef struct cast_map cast_map;

typedef struct cast_diagnose_params {
    const char *oc;      /* optimization conflict: "neg" (default), "half", "negdot", "trajectory" */
    const char *fs;      /* functional sensitivity: "gate" (default), "gate-abs", "ablation", "snip" */
    const char *combine; /* "product" (default), "rank", "sum" */
    const char *unit;    /* "head" (default) or "group" (k/v groups) */
    int kv_in_score;     /* 1 (default): a head's vector includes its group's k/v rows */
    int batch;           /* sequences per forward/backward (default 4) */
    int null_permutations; /* the concentration's permutation null (default 1000; 0: none) */
    uint64_t seed;
    /* optional: fraction done in [0, 1] and the stage */
    void (*progress)(void *user, double fraction, const char *stage);
    void *user;
} cast_diagnose_params;

typedef struct cast_head_score {
    int layer, head;
    double cos;          /* of the safety and utility gradients on the head */
    double oc, fs;       /* optimization conflict, functional sensitivity (raw) */
    double score;        /* combined, in [0, 1] */
    int rank;            /* 0: the highest score */
    int conflicts;       /* 1 when the gradients conflict (cos < 0) */
} cast_head_score;

CAST_API void cast_diagnose_default_params(cast_diagnose_params *p);
/* The conflict map of m from a safety set (harmful prompts with refusals)
 * and a utility set, at the model's current weights (which it leaves as they are). */
CAST_API cast_code cast_diagnose(cast_llm *m, const cast_data *safety, const cast_data *utility, const cast_diagnose_params *p,
                                 cast_map **out, cast_error *err);
/* conflict_map.json written by cast diagnose (as `cast tune --map` reads it) */
CAST_API cast_code cast_map_read(const char *path, cast_map **out, cast_error *err);
/* DIR/conflict_map.json, .csv and .svg (the heatmap) */
CAST_API cast_code cast_map_write(const cast_map *map, const char *dir, cast_error *err);
CAST_API int cast_map_heads(const cast_map *map); /* layers * heads */
CAST_API void cast_map_head(const cast_map *map, int index, cast_head_score *out);
/* Share of the total score held by the top 5 % of heads. */
CAST_API double cast_map_concentration(const cast_map *map);
CAST_API void cast_map_free(cast_map *map);

/* The k heads a strategy skips: "cast" (top by score), "oc", "fs", "inverse",
 * "random" (with seed; map may be NULL), "full" and "pcgrad" (none).
 * heads[] needs room for layers * heads; *n receives k (a map of k/v-group
 * units rounds k to whole groups). */
CAST_API cast_code cast_select(const cast_llm *m, const cast_map *map, const char *strategy, int k, uint64_t seed, int *heads,
                               int *n, cast_error *err);

/* ---- tuning ---------------------------------------------------------------------- */

typedef struct cast_tune_params {
    const char *strategy;  /* as cast_select (default "cast") */
    double skip;           /* share of heads skipped (default 0.05) */
    int skip_heads;        /* >= 0: exactly this many (default -1: use skip) */
    const int *heads;      /* a given skip set instead (layer-major indices), n_heads long */
    int n_heads;
    const char *train;     /* "attn" (default), "attn+mlp", "all" */
    const char *kv_freeze; /* "all" (default): a group's k/v rows freeze when all its heads are skipped; "any" */
    double lr;             /* AdamW (default 2e-5) */
    double beta1, beta2, eps, weight_decay;
    const char *schedule;  /* "constant" (default) or "cosine" */
    int warmup;            /* linear warm-up steps */
    double clip;           /* max global gradient norm (default 1; 0: off) */
    int batch;             /* sequences per forward/backward (default 4) */
    int grad_accum;        /* passes per optimizer step (default 4) */
    int epochs;            /* passes over the safety set (default 3), unless steps > 0 */
    int64_t steps;
    uint64_t seed;         /* data order and the random strategy */
    double anchor_weight;  /* < 0 (default): none, 1 for pcgrad; else train on L_s + w·L_u (needs utility) */
    int keep_delta;        /* 1: keep the starting values so that cast_tune_write_delta can follow */
    const char *checkpoint_dir; /* with save_every: checkpoints there; resume continues from it */
    int save_every;
    int resume;
    /* after every step; return non-zero to stop (cast_tune then returns CAST_ERR_CANCELLED) */
    int (*progress)(void *user, int64_t step, int64_t total, double loss);
    void *user;
    const volatile int *cancel; /* optional: set it non-zero (from another thread) to stop after the current step */
} cast_tune_params;

typedef struct cast_tune_result {
    int k;                 /* heads skipped */
    int64_t trainable;     /* parameters that trained */
    int64_t steps;         /* optimizer steps done */
    double loss;           /* the last step's safety loss */
    double wall_s;
} cast_tune_result;

CAST_API void cast_tune_default_params(cast_tune_params *p);
/* Safety fine-tuning of m in place, skipping the heads the strategy picks
 * (map: needed by cast/oc/fs/inverse unless heads are given). utility may be
 * NULL (needed by pcgrad and an anchor). The skipped heads are in
 * skipped[] when non-NULL (room for layers * heads). */
CAST_API cast_code cast_tune(cast_llm *m, const cast_data *safety, const cast_data *utility, const cast_map *map,
                             const cast_tune_params *p, cast_tune_result *result, int *skipped, cast_error *err);
/* After cast_tune with keep_delta: the delta of that run, "sparse" (the
 * changed slices' values) or "diff" (tuned − base, a task vector), stamped
 * with the base's fingerprint. */
CAST_API cast_code cast_tune_write_delta(const cast_llm *m, const char *path, const char *format, cast_error *err);

/* ---- evaluation and generation ---------------------------------------------------- */

typedef struct cast_eval_params {
    int max_new;       /* new tokens per harmful/benign reply (default 64) */
    int max_new_exact; /* per exact-answer reply (default 256) */
    int batch;         /* prompts per generation batch (default 8) */
    int first;         /* the first N examples of each set (0: all) */
    int fewshot;       /* exact answers: solved examples before each prompt */
} cast_eval_params;

typedef struct cast_eval_result {
    double harmful_refusal; /* refusal rate on the harmful set (NaN without one) */
    double benign_refusal;  /* on the benign set: over-refusal (NaN without one) */
    int n_utility;
    struct {
        char metric[16];    /* "loss" (NLL), "acc" (multiple choice), "exact_match" */
        double value;
        int n;              /* examples evaluated */
    } utility[16];
} cast_eval_result;

CAST_API void cast_eval_default_params(cast_eval_params *p);
/* Any set may be NULL; at most 16 utility files. json (optional) receives
 * eval.json's text, malloc'd (free() it). */
CAST_API cast_code cast_evaluate(cast_llm *m, const char *harmful, const char *benign, const char *const *utility, int n_utility,
                                 const cast_eval_params *p, cast_eval_result *result, char **json, cast_error *err);
/* A greedy reply to one user message, through the chat template (plain text
 * without one); *reply malloc'd (free() it). */
CAST_API cast_code cast_generate_reply(cast_llm *m, const char *user_message, int max_new, char **reply, cast_error *err);

#ifdef __cplusplus
}
#endif

#endif

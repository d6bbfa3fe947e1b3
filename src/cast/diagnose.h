/* CAST stage A (DESIGN §3): the head-level conflict map, computed at the
 * unchanged weights from the gradients of the safety and utility losses. */
#ifndef CAST_CAST_DIAGNOSE_H
#define CAST_CAST_DIAGNOSE_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "model/model.h"
#include "model/seqs.h"

typedef enum { CAST_OC_NEG, CAST_OC_HALF, CAST_OC_NEGDOT, CAST_OC_TRAJECTORY } cast_oc_kind;
typedef enum { CAST_FS_GATE, CAST_FS_ABLATION, CAST_FS_SNIP, CAST_FS_GATE_ABS } cast_fs_kind;
typedef enum { CAST_COMBINE_PRODUCT, CAST_COMBINE_RANK, CAST_COMBINE_SUM } cast_combine_kind;
/* What is scored: each head, or each k/v group (its heads together). */
typedef enum { CAST_UNIT_HEAD, CAST_UNIT_GROUP } cast_unit_kind;

int cast_oc_parse(const char *s, cast_oc_kind *out);
int cast_fs_parse(const char *s, cast_fs_kind *out);
int cast_combine_parse(const char *s, cast_combine_kind *out);
int cast_unit_parse(const char *s, cast_unit_kind *out);
const char *cast_oc_name(cast_oc_kind k);
const char *cast_fs_name(cast_fs_kind k);
const char *cast_combine_name(cast_combine_kind k);
const char *cast_unit_name(cast_unit_kind k);

typedef struct cast_head_stat {
    int layer, head;
    int cos_defined;   /* 0 when a gradient slice is zero */
    double cos, dot, norm_safety, norm_utility;
    double oc, fs;     /* raw optimization conflict and functional sensitivity */
    double rise;       /* --oc trajectory: L_u(θ0 + Δ_unit) − L_u(θ0); 0 otherwise */
    double score;      /* combined, in [0, 1] */
    int rank;          /* 0 = highest score */
} cast_head_stat;

typedef struct cast_set_stat {
    char *path;
    int examples;
    int64_t tokens; /* scored */
    double loss;    /* token-weighted mean NLL */
    int skipped;    /* examples left out as longer than --max-len (the caller sets it) */
} cast_set_stat;

typedef struct cast_conflict_map {
    /* model */
    char *model_path;
    char architecture[64];
    int layers, heads, kv_heads, head_dim;
    /* data */
    cast_set_stat safety, utility;
    /* settings */
    int kv_in_score;
    cast_oc_kind oc;
    cast_fs_kind fs;
    cast_combine_kind combine;
    cast_unit_kind unit;   /* group: every head carries its group's numbers */
    int probe_steps, probe_batch; /* --oc trajectory only */
    double probe_lr;
    int null_permutations; /* 0: no null */
    uint64_t seed;         /* of the null's permutations and the probe's data order */
    /* result, layer-major */
    cast_head_stat *stat;  /* [layers * heads] */
    double concentration;  /* share of Σ score in the top 5 % of units */
    /* permutation null of the concentration (FS shuffled across units, OC
     * kept): mean of the null and p = (1 + #{null >= observed}) / (1 + R);
     * NaN when null_permutations is 0 */
    double concentration_null_mean, concentration_null_p;
} cast_conflict_map;

typedef struct cast_diag_opts {
    int kv_in_score; /* 1 (default): a head's vector includes its group's k/v rows */
    cast_oc_kind oc;
    cast_fs_kind fs;
    cast_combine_kind combine;
    cast_unit_kind unit;
    int micro_batch; /* sequences per forward/backward */
    /* --oc trajectory: N AdamW safety steps of the whole attention (tune's defaults) */
    int probe_steps, probe_batch;
    double probe_lr;
    int null_permutations; /* R of the concentration null (0 = none) */
    uint64_t seed;         /* the null's permutations, the probe's data order */
    /* memory: the attention gradients of both sets are taken for a group of
     * layers at a time, in grad_passes groups (0: the fewest whose plan fits
     * memory_budget bytes, cast/memory.h; 0 budget: physical memory less 1 GiB).
     * The map is the same for any number of passes; each pass costs a forward
     * and a partial backward of both sets. */
    int grad_passes;
    int64_t memory_budget;
    /* progress: called with work done and total (units: sequences processed) */
    void (*progress)(void *ctx, int64_t done, int64_t total, const char *stage);
    void *ctx;
} cast_diag_opts;

void cast_diag_opts_default(cast_diag_opts *o);
/* The number of gradient passes a diagnosis of these sets will make. */
int cast_diag_grad_passes(const cast_model *m, const cast_seqs *safety, const cast_seqs *utility, const cast_diag_opts *o);

/* Runs the diagnosis. safety_path / utility_path only label the output.
 * m's weights change during --oc trajectory and are restored bit for bit. */
int cast_diagnose_map(cast_model *m, const cast_seqs *safety, const cast_seqs *utility, const char *safety_path,
                  const char *utility_path, const cast_diag_opts *o, cast_conflict_map *map, cast_err *err);

/* From raw oc/fs/cos per head: normalisation, combination, ranks and
 * concentration (exposed so it can be checked on hand-made inputs). */
void cast_conflict_map_score(cast_conflict_map *map);
/* The permutation null of the concentration: R shuffles of FS across units
 * (seeded), each rescored; fills concentration_null_mean and _p. */
void cast_conflict_map_null(cast_conflict_map *map, int permutations, uint64_t seed);
/* Heads per scored unit: 1, or H/K for group units. */
int cast_map_unit_heads(const cast_conflict_map *map);
/* Whether a head's unit conflicts: cos < 0 (trajectory: a positive rise). */
int cast_head_conflicts(const cast_conflict_map *map, const cast_head_stat *s);
/* k = round(ratio · n) heads (DESIGN §3 budgets). */
int cast_top_count(double ratio, int n);
/* Heads in the "top 5 %" of the concentration measure: round(0.05 · n), at least 1. */
int cast_top5_count(int n);

void cast_conflict_map_free(cast_conflict_map *map);
/* conflict_map.json / .csv text */
void cast_conflict_map_json(const cast_conflict_map *map, cast_buf *out);
void cast_conflict_map_csv(const cast_conflict_map *map, cast_buf *out);
/* Reads conflict_map.json back (for `cast tune --map`). */
int cast_conflict_map_load(cast_conflict_map *map, const char *path, cast_err *err);
/* The same from text[0..n) in memory; path names it in messages. */
int cast_conflict_map_parse(cast_conflict_map *map, const char *text, size_t n, const char *path, cast_err *err);

#endif

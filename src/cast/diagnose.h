/* CAST stage A (DESIGN §3): the head-level conflict map, computed at the
 * unchanged weights from the gradients of the safety and utility losses. */
#ifndef CAST_CAST_DIAGNOSE_H
#define CAST_CAST_DIAGNOSE_H

#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "model/model.h"
#include "model/seqs.h"

typedef enum { CAST_OC_NEG, CAST_OC_HALF, CAST_OC_NEGDOT } cast_oc_kind;
typedef enum { CAST_FS_GATE, CAST_FS_ABLATION, CAST_FS_SNIP } cast_fs_kind;
typedef enum { CAST_COMBINE_PRODUCT, CAST_COMBINE_RANK, CAST_COMBINE_SUM } cast_combine_kind;

int cast_oc_parse(const char *s, cast_oc_kind *out);
int cast_fs_parse(const char *s, cast_fs_kind *out);
int cast_combine_parse(const char *s, cast_combine_kind *out);
const char *cast_oc_name(cast_oc_kind k);
const char *cast_fs_name(cast_fs_kind k);
const char *cast_combine_name(cast_combine_kind k);

typedef struct cast_head_stat {
    int layer, head;
    int cos_defined;   /* 0 when a gradient slice is zero */
    double cos, dot, norm_safety, norm_utility;
    double oc, fs;     /* raw optimization conflict and functional sensitivity */
    double score;      /* combined, in [0, 1] */
    int rank;          /* 0 = highest score */
} cast_head_stat;

typedef struct cast_set_stat {
    char *path;
    int examples;
    int64_t tokens; /* scored */
    double loss;    /* token-weighted mean NLL */
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
    /* result, layer-major */
    cast_head_stat *stat;  /* [layers * heads] */
    double concentration;  /* share of Σ score in the top 5 % of heads */
} cast_conflict_map;

typedef struct cast_diag_opts {
    int kv_in_score; /* 1 (default): a head's vector includes its group's k/v rows */
    cast_oc_kind oc;
    cast_fs_kind fs;
    cast_combine_kind combine;
    int micro_batch; /* sequences per forward/backward */
    /* progress: called with work done and total (units: sequences processed) */
    void (*progress)(void *ctx, int64_t done, int64_t total, const char *stage);
    void *ctx;
} cast_diag_opts;

void cast_diag_opts_default(cast_diag_opts *o);

/* Runs the diagnosis. safety_path / utility_path only label the output. */
int cast_diagnose(const cast_model *m, const cast_seqs *safety, const cast_seqs *utility, const char *safety_path,
                  const char *utility_path, const cast_diag_opts *o, cast_conflict_map *map, cast_err *err);

/* From raw oc/fs/cos per head: normalisation, combination, ranks and
 * concentration (exposed so it can be checked on hand-made inputs). */
void cast_conflict_map_score(cast_conflict_map *map);
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

#endif

/* Headroom: how much of an alignment's damage each head, k/v group and layer
 * explains (`cast attribute`, issue 10 part 1).
 *
 * Given a tuned model and the base it was tuned from, each unit's part of the
 * tuned weights is reset to the base's values, the model is evaluated, and
 * the unit is restored (the tuned weights end bit-identical). Units:
 *   - head (l, h): its q rows (and q bias rows) and its o_proj columns;
 *   - group (l, g): the q rows and o columns of every head of k/v group g,
 *     plus the group's k/v rows (and biases);
 *   - layer l: every tensor of the layer (attention, norms, MLP): whatever
 *     tuning changed there.
 * Then a greedy search finds, for each k, a skip set of k heads whose reset
 * recovers the most utility while refusal stays >= a floor. Resetting a set
 * of heads resets their q rows and o columns, and a group's k/v rows only
 * when every head of the group is in the set (as `cast tune --kv-freeze all`
 * freezes them), so a best set is what skipping those heads in tuning could at
 * most have saved if the rest of the update stayed the same.
 *
 * The numbers of one evaluation (cast_attr_numbers), NaN where the set is
 * absent:
 *   refusal  harmful set's refusal rate (fraction);
 *   benign   benign set's refusal rate (fraction);
 *   utility  mean over the exact-answer utility sets of their exact match
 *            (fraction; each set weighs the same; NaN when none has exact
 *            answers, decided as `cast eval` decides: cast_eval_set.metric);
 *   nll      token-weighted mean NLL of the gold answers of all utility sets
 *            together: every set encoded as `cast score` encodes it
 *            (prompt/response pairs, conversations, text, tokens; a multiple-
 *            choice question with its correct choice; an exact-answer item
 *            with its worked response, or its bare answer when it has none).
 * A unit's effect (points = percent, nats): utility_recovered = 100·(utility
 * reset − tuned), utility_nll_recovered = nll tuned − reset, refusal_lost =
 * 100·(refusal tuned − reset), benign_refusal_change = 100·(benign reset −
 * tuned). Positive recovery = the reset helps utility.
 *
 * Cost: one evaluation per unit whose slices tuning changed (an unchanged unit
 * leaves the model bit-identical, so its effects are exact zeros without a
 * run), two for the tuned and fully reset models, and for the search
 * Σ_{k=2..max_k} (M − k + 1) evaluations over M candidate heads (k = 1 reuses
 * the head units when groups hold more than one head). An evaluation runs the
 * harmful, benign and exact-answer sets' greedy generations and one forward
 * pass over the gold answers; multiple-choice and NLL sets cost only that
 * forward pass. */
#ifndef CAST_EVAL_ATTRIBUTE_H
#define CAST_EVAL_ATTRIBUTE_H

#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "cast/diagnose.h"
#include "eval/metrics.h"
#include "model/model.h"
#include "text/chat.h"
#include "text/dataset.h"
#include "text/tokenizer.h"

typedef enum { CAST_ATTR_HEAD, CAST_ATTR_GROUP, CAST_ATTR_LAYER } cast_attr_kind;
const char *cast_attr_kind_name(cast_attr_kind k); /* "head", "group", "layer" */

typedef struct cast_attr_numbers {
    double refusal, benign, utility, nll; /* see above; NaN = set absent */
} cast_attr_numbers;

typedef struct cast_attr_effect {
    double utility_recovered;     /* points, reset − tuned (NaN: no exact-answer set) */
    double utility_nll_recovered; /* nats, tuned − reset (NaN: no utility set) */
    double refusal_lost;          /* points, tuned − reset (NaN: no harmful set) */
    double benign_refusal_change; /* points, reset − tuned (NaN: no benign set) */
} cast_attr_effect;

typedef struct cast_attr_unit {
    cast_attr_kind kind;
    int layer;
    int index;       /* head or group within the layer; -1 for a layer */
    int unchanged;   /* tuning left the unit's slices bit-identical: not evaluated, effects exactly 0 */
    cast_attr_numbers reset; /* the numbers with the unit reset */
    cast_attr_effect effect;
} cast_attr_unit;

typedef struct cast_attr_set {
    int k;
    int found;   /* 0: no extension of the (k−1)-set kept refusal >= the floor; the search stopped */
    int *heads;  /* k layer-major head indices (l·H + h), in the order the search added them; NULL when !found */
    cast_attr_numbers reset;
    cast_attr_effect effect;
} cast_attr_set;

typedef struct cast_attr_opts {
    /* gold-answer sequences: tokens at most and the policy for longer examples */
    int max_len;            /* 0 = no limit (default) */
    cast_on_long on_long;   /* default skip */
    /* the search: set sizes to report (ks, n_k; NULL = 1..max_k) */
    const int *ks;
    int n_k;
    int max_k;              /* default 4, at most the candidates; 0 with ks NULL = no search */
    int candidates;         /* heads searched: the top M by single-head recovery (0 = min(16, all heads)) */
    int heads_only;         /* units: heads only, no group or layer units (cheaper; the search needs only heads) */
    double refusal_floor;   /* fraction (default 0.9); applies only with a harmful set */
    /* progress (optional): work done and total, in evaluation units (tokens
     * run or generated, as cast_eval_set.units counts them), and a stage
     * ("tuned", "units", "k=2", ...) */
    void (*progress)(void *ctx, int64_t done, int64_t total, const char *stage);
    void *ctx;
} cast_attr_opts;

void cast_attr_opts_default(cast_attr_opts *o);

typedef struct cast_attribution {
    /* what was compared */
    char *tuned_path, *base_path;
    char *harmful_path, *benign_path; /* NULL when absent */
    char **utility_paths;
    int n_utility, n_exact;           /* utility sets, of which exact-answer sets */
    int64_t gold_tokens;              /* scored gold-answer tokens; gold_skipped: examples left out by max_len */
    int gold_skipped;
    int layers, heads, kv_heads;
    char **changed_outside;           /* tensors tuning changed outside every layer (not part of any unit) */
    int n_changed_outside;
    cast_attr_numbers tuned;          /* the tuned model */
    cast_attr_numbers base;           /* every tensor of the tuned model reset to the base (= the base's numbers) */
    /* units: heads (layer-major), then groups (layer-major), then layers */
    cast_attr_unit *units;
    int n_units;
    /* the search */
    double refusal_floor;
    int floor_applies;                /* 0 without a harmful set */
    int by_exact;                     /* ranking by exact match (1) or by NLL (0, no exact-answer set) */
    int *ranking;                     /* every head (layer-major index), best single-head recovery first; NULL without a utility set */
    int n_candidates;                 /* the search's candidates: the first n_candidates of ranking (0: no search) */
    cast_attr_set *best;              /* one per requested k, ascending */
    int n_best;
    /* settings and cost */
    int max_len;
    cast_on_long on_long;
    int evaluations;                  /* model evaluations run */
    double units_s, search_s;         /* seconds: tuned + base + units, and the search */
    double *step_s;                   /* [n_steps] seconds of each search step k = 1..n_steps */
    int n_steps;
    /* --compare-map (cast_attribution_compare_map): Spearman correlations of
     * the map's per-head columns with per-head recovery; NaN when undefined */
    char *map_path;                   /* NULL: not compared */
    int map_heads;                    /* heads with both values defined (cos: where defined) */
    double map_rho_exact[4], map_rho_nll[4]; /* columns cos, oc, fs, score */
} cast_attribution;

/* The map columns map_rho_* are indexed by. */
extern const char *const cast_attr_map_columns[4]; /* "cos", "oc", "fs", "score" */

/* Runs the attribution. tuned is modified in place during the run and
 * restored bit for bit before returning (also on error); base must have
 * tuned's architecture and tensor shapes (else an error naming both
 * folders). The sets were opened (cast_eval_set_open) on tuned with eo; any
 * may be absent (harmful / benign NULL, n_utility 0), but not all. tok / tpl
 * encode the gold answers (tok NULL only for token datasets). The sets'
 * results are overwritten by each evaluation. On success *out is filled; free
 * it with cast_attribution_free. */
int cast_attribute(cast_model *tuned, const cast_model *base, const cast_tokenizer *tok, const cast_chat_template *tpl,
                   cast_eval_set *harmful, cast_eval_set *benign, cast_eval_set *utility, int n_utility,
                   const cast_eval_opts *eo, const cast_attr_opts *o, cast_attribution *out, cast_err *err);
void cast_attribution_free(cast_attribution *a);

/* 0 when base and tuned have the same architecture and tensors (names and
 * shapes); else -1 with "TUNED: ..." naming the first difference. */
int cast_attr_check_pair(const cast_model *tuned, const cast_model *base, cast_err *err);


/* Adds map_correlation: the map (cast_conflict_map_load) must have the same
 * layers and heads. */
int cast_attribution_compare_map(cast_attribution *a, const cast_conflict_map *map, const char *map_path, cast_err *err);


#endif

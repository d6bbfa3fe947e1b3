/* The demo's oracle: `cast attribute` on a full fine-tuning run gives the
 * hindsight-best skip set of k heads (the upper bound any pre-alignment map
 * is compared with) and how the map's scores rank against what resetting
 * each head recovers. */
#ifndef CAST_ORGANISM_DEMO_ORACLE_H
#define CAST_ORGANISM_DEMO_ORACLE_H

#include "base/buf.h"
#include "base/error.h"
#include "eval/attribute.h"
#include "cast/diagnose.h"
#include "model/model.h"
#include "text/chat.h"
#include "text/tokenizer.h"

typedef struct demo_oracle {
    int have;
    cast_attribution a;
    double spearman_em, spearman_nll; /* map score vs per-head recovery */
    cast_buf summary;                 /* Markdown table of the best sets */
} demo_oracle;

/* Attributes tuned's heads (restored bit for bit) against the base folder on
 * the first `limit` examples of the world's harmful and skill evaluation sets
 * in data/, best sets
 * up to kmax heads that keep refusal >= refusal_floor (a fraction); writes attribution.json/.csv/.svg into out. */
int demo_oracle_run(demo_oracle *o, cast_model *tuned, const char *base_dir, const char *data, const cast_tokenizer *tok,
                    const cast_chat_template *tpl, const cast_conflict_map *map, int kmax, double refusal_floor, int limit, const char *out,
                    cast_err *err);
/* The best set of k heads (layer-major indices), or NULL when the search found none. */
const int *demo_oracle_set(const demo_oracle *o, int k);
void demo_oracle_free(demo_oracle *o);

#endif

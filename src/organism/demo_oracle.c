#include "organism/demo_oracle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "dist/dist.h"
#include "eval/judge.h"
#include "eval/metrics.h"
#include "organism/world.h"
#include "report/attribution.h"

int demo_oracle_run(demo_oracle *o, cast_model *tuned, const char *base_dir, const char *data, const cast_tokenizer *tok,
                    const cast_chat_template *tpl, const cast_conflict_map *map, int kmax, double refusal_floor, int limit, const char *out,
                    cast_err *err) {
    memset(o, 0, sizeof *o);
    cast_model base;
    if (cast_model_load_as(&base, base_dir, tuned->bf16 ? CAST_COMPUTE_BF16 : CAST_COMPUTE_F32, err)) return -1;
    cast_judge judge;
    cast_judge_init(&judge);
    cast_eval_opts eo;
    cast_eval_opts_default(&eo);
    eo.judge = &judge;
    eo.batch = 64;
    eo.max_new = 48;
    eo.max_new_exact = 24;
    eo.limit = limit;
    /* sets[0] harmful (for the refusal floor), [1..] the skills; no benign set: the search does not use it */
    cast_eval_set sets[1 + CAST_N_SKILLS];
    int opened = 0, rc = -1;
    for (int i = 0; i < 1 + CAST_N_SKILLS; i++) {
        char file[64];
        snprintf(file, sizeof file, "%s.jsonl", cast_split_name(i == 0 ? CAST_SPLIT_EVAL_HARMFUL : CAST_SPLIT_EVAL_SKILL + i - 1));
        char *p = cast_path_join(data, file);
        int bad = cast_eval_set_open(&sets[i], p, i == 0 ? CAST_EVAL_HARMFUL : CAST_EVAL_UTILITY, tuned, tok, tpl, &eo, err);
        free(p);
        if (bad) goto done;
        opened++;
    }
    cast_attr_opts ao;
    cast_attr_opts_default(&ao);
    ao.max_k = kmax;
    ao.refusal_floor = refusal_floor;
    /* what keeps the demo within its time: head units only, the search among the 6 heads that recover most alone */
    ao.heads_only = 1;
    ao.candidates = 6;
    if (cast_attribute(tuned, &base, tok, tpl, &sets[0], NULL, &sets[1], CAST_N_SKILLS, &eo, &ao, &o->a, err)) goto done;
    o->have = 1;
    if (cast_attribution_compare_map(&o->a, map, "conflict_map.json", err) || (cast_dist_rank() == 0 && cast_attribution_write(&o->a, out, err))) goto done;
    o->spearman_em = o->a.map_rho_exact[3];
    o->spearman_nll = o->a.map_rho_nll[3];
    cast_buf_puts(&o->summary, "| k | heads (layer.head) | utility recovered (points) | refusal after reset |\n|---|---|---|---|\n");
    for (int i = 0; i < o->a.n_best; i++) {
        const cast_attr_set *s = &o->a.best[i];
        cast_buf_printf(&o->summary, "| %d | ", s->k);
        if (!s->found) {
            cast_buf_puts(&o->summary, "none keeps the floor | | |\n");
            continue;
        }
        for (int h = 0; h < s->k; h++)
            cast_buf_printf(&o->summary, "%s%d.%d", h ? ", " : "", s->heads[h] / o->a.heads, s->heads[h] % o->a.heads);
        cast_buf_printf(&o->summary, " | %+.1f | %.1f %% |\n", s->effect.utility_recovered, 100 * s->reset.refusal);
    }
    rc = 0;
done:
    for (int i = 0; i < opened; i++) cast_eval_set_free(&sets[i]);
    cast_judge_free(&judge);
    cast_model_free(&base);
    return rc;
}

const int *demo_oracle_set(const demo_oracle *o, int k) {
    if (!o->have) return NULL;
    for (int i = 0; i < o->a.n_best; i++)
        if (o->a.best[i].k == k && o->a.best[i].found) return o->a.best[i].heads;
    return NULL;
}

void demo_oracle_free(demo_oracle *o) {
    if (o->have) cast_attribution_free(&o->a);
    cast_buf_free(&o->summary);
    memset(o, 0, sizeof *o);
}

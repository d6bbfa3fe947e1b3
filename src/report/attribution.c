/* The attribution's files: attribution.json, .csv and the SVG heatmap. */
#include "report/attribution.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "report/svg.h"

/* ---- files --------------------------------------------------------------------- */

static void jstr(cast_buf *b, const char *s) {
    if (s) cast_buf_json_string(b, s, strlen(s));
    else cast_buf_puts(b, "null");
}

static void numbers_json(cast_buf *b, const cast_attr_numbers *x) {
    cast_buf_puts(b, "\"refusal\": ");
    cast_buf_json_number(b, x->refusal);
    cast_buf_puts(b, ", \"benign\": ");
    cast_buf_json_number(b, x->benign);
    cast_buf_puts(b, ", \"utility\": ");
    cast_buf_json_number(b, x->utility);
    cast_buf_puts(b, ", \"nll\": ");
    cast_buf_json_number(b, x->nll);
}

static void effect_json(cast_buf *b, const cast_attr_effect *e) {
    cast_buf_puts(b, "\"utility_nll_recovered\": ");
    cast_buf_json_number(b, e->utility_nll_recovered);
    cast_buf_puts(b, ", \"utility_recovered\": ");
    cast_buf_json_number(b, e->utility_recovered);
    cast_buf_puts(b, ", \"refusal_lost\": ");
    cast_buf_json_number(b, e->refusal_lost);
    cast_buf_puts(b, ", \"benign_refusal_change\": ");
    cast_buf_json_number(b, e->benign_refusal_change);
}

static void head_json(cast_buf *b, const cast_attribution *a, int h) {
    cast_buf_printf(b, "{\"layer\": %d, \"head\": %d}", h / a->heads, h % a->heads);
}

void cast_attribution_json(const cast_attribution *a, cast_buf *b) {
    cast_buf_puts(b, "{\"tuned\": {\"path\": ");
    jstr(b, a->tuned_path);
    cast_buf_puts(b, ", ");
    numbers_json(b, &a->tuned);
    cast_buf_puts(b, "},\n \"base\": {\"path\": ");
    jstr(b, a->base_path);
    cast_buf_puts(b, ", ");
    numbers_json(b, &a->base);
    cast_buf_printf(b, "},\n \"model\": {\"layers\": %d, \"heads\": %d, \"kv_heads\": %d},\n", a->layers, a->heads, a->kv_heads);
    cast_buf_puts(b, " \"data\": {\"harmful\": ");
    jstr(b, a->harmful_path);
    cast_buf_puts(b, ", \"benign\": ");
    jstr(b, a->benign_path);
    cast_buf_puts(b, ", \"utility\": [");
    for (int i = 0; i < a->n_utility; i++) {
        if (i) cast_buf_puts(b, ", ");
        jstr(b, a->utility_paths[i]);
    }
    cast_buf_printf(b, "], \"exact_sets\": %d, \"gold_tokens\": %lld, \"gold_skipped\": %d},\n", a->n_exact,
                    (long long)a->gold_tokens, a->gold_skipped);
    cast_buf_puts(b, " \"settings\": {\"refusal_floor\": ");
    cast_buf_json_number(b, a->refusal_floor);
    cast_buf_printf(b, ", \"floor_applies\": %s, \"ranking\": \"%s\", \"candidates\": %d, \"ks\": [",
                    a->floor_applies ? "true" : "false", a->by_exact ? "exact_match" : "nll", a->n_candidates);
    for (int i = 0; i < a->n_best; i++) cast_buf_printf(b, "%s%d", i ? ", " : "", a->best[i].k);
    cast_buf_printf(b, "], \"kv_reset\": \"all\", \"max_len\": %d, \"on_long\": \"%s\"},\n", a->max_len,
                    cast_on_long_name(a->on_long));
    cast_buf_puts(b, " \"changed_outside_layers\": [");
    for (int i = 0; i < a->n_changed_outside; i++) {
        if (i) cast_buf_puts(b, ", ");
        jstr(b, a->changed_outside[i]);
    }
    cast_buf_puts(b, "],\n \"units\": [");
    for (int u = 0; u < a->n_units; u++) {
        const cast_attr_unit *x = &a->units[u];
        cast_buf_printf(b, "%s\n  {\"kind\": \"%s\", \"layer\": %d", u ? "," : "", cast_attr_kind_name(x->kind), x->layer);
        if (x->kind != CAST_ATTR_LAYER) cast_buf_printf(b, ", \"%s\": %d", x->kind == CAST_ATTR_HEAD ? "head" : "group", x->index);
        cast_buf_puts(b, ", ");
        effect_json(b, &x->effect);
        cast_buf_printf(b, ", \"unchanged\": %s, \"reset\": {", x->unchanged ? "true" : "false");
        numbers_json(b, &x->reset);
        cast_buf_puts(b, "}}");
    }
    cast_buf_puts(b, "],\n \"search\": {\"rule\": ");
    char rule[320];
    if (a->n_utility == 0)
        snprintf(rule, sizeof rule, "no search: it ranks heads by utility recovered, and no utility set was given");
    else
        snprintf(rule, sizeof rule,
                 "greedy over the top %d heads by single-head utility recovered (%s, ties by NLL); a set resets its heads' q rows "
                 "and o columns and a k/v group's rows only when all its heads are in the set; %s",
                 a->n_candidates, a->by_exact ? "exact match" : "gold-answer NLL",
                 a->floor_applies ? "each step keeps refusal >= the floor"
                                  : "no harmful set: refusal is unknown, the floor cannot apply");
    jstr(b, rule);
    cast_buf_puts(b, ", \"candidates\": [");
    for (int i = 0; i < a->n_candidates; i++) {
        if (i) cast_buf_puts(b, ", ");
        head_json(b, a, a->ranking[i]);
    }
    cast_buf_puts(b, "]},\n \"best_sets\": [");
    for (int i = 0; i < a->n_best; i++) {
        const cast_attr_set *s = &a->best[i];
        cast_buf_printf(b, "%s\n  {\"k\": %d, \"found\": %s, \"heads\": ", i ? "," : "", s->k, s->found ? "true" : "false");
        if (s->found) {
            cast_buf_putc(b, '[');
            for (int j = 0; j < s->k; j++) {
                if (j) cast_buf_puts(b, ", ");
                head_json(b, a, s->heads[j]);
            }
            cast_buf_putc(b, ']');
        } else {
            cast_buf_puts(b, "null");
        }
        cast_buf_puts(b, ", \"utility_recovered\": ");
        cast_buf_json_number(b, s->effect.utility_recovered);
        cast_buf_puts(b, ", \"utility_nll_recovered\": ");
        cast_buf_json_number(b, s->effect.utility_nll_recovered);
        cast_buf_puts(b, ", \"refusal\": ");
        cast_buf_json_number(b, s->reset.refusal);
        cast_buf_puts(b, ", \"benign_refusal\": ");
        cast_buf_json_number(b, s->reset.benign);
        cast_buf_puts(b, "}");
    }
    cast_buf_puts(b, "]");
    if (a->map_path) {
        cast_buf_puts(b, ",\n \"map_correlation\": {\"path\": ");
        jstr(b, a->map_path);
        cast_buf_printf(b, ", \"method\": \"spearman\", \"heads\": %d", a->map_heads);
        for (int w = 0; w < 2; w++) {
            cast_buf_printf(b, ", \"%s\": {", w == 0 ? "utility_recovered" : "utility_nll_recovered");
            for (int k = 0; k < 4; k++) {
                cast_buf_printf(b, "%s\"%s\": ", k ? ", " : "", cast_attr_map_columns[k]);
                cast_buf_json_number(b, w == 0 ? a->map_rho_exact[k] : a->map_rho_nll[k]);
            }
            cast_buf_putc(b, '}');
        }
        cast_buf_putc(b, '}');
    }
    cast_buf_printf(b, ",\n \"cost\": {\"evaluations\": %d, \"units_s\": ", a->evaluations);
    cast_buf_json_number(b, a->units_s);
    cast_buf_puts(b, ", \"search_s\": ");
    cast_buf_json_number(b, a->search_s);
    cast_buf_puts(b, ", \"search_steps_s\": [");
    for (int i = 0; i < a->n_steps; i++) {
        if (i) cast_buf_puts(b, ", ");
        cast_buf_json_number(b, a->step_s[i]);
    }
    cast_buf_puts(b, "]}}\n");
}

static void csv_num(cast_buf *b, double v) {
    cast_buf_putc(b, ',');
    if (isfinite(v)) cast_buf_json_number(b, v);
}

void cast_attribution_csv(const cast_attribution *a, cast_buf *b) {
    cast_buf_puts(b, "kind,layer,head,group,unchanged,utility_nll_recovered,utility_recovered,refusal_lost,benign_refusal_change,"
                     "refusal,benign,utility,nll\n");
    for (int u = 0; u < a->n_units; u++) {
        const cast_attr_unit *x = &a->units[u];
        cast_buf_printf(b, "%s,%d,", cast_attr_kind_name(x->kind), x->layer);
        if (x->kind == CAST_ATTR_HEAD) cast_buf_printf(b, "%d,%d", x->index, x->index / (a->heads / a->kv_heads));
        else if (x->kind == CAST_ATTR_GROUP) cast_buf_printf(b, ",%d", x->index);
        else cast_buf_putc(b, ',');
        cast_buf_printf(b, ",%d", x->unchanged);
        csv_num(b, x->effect.utility_nll_recovered);
        csv_num(b, x->effect.utility_recovered);
        csv_num(b, x->effect.refusal_lost);
        csv_num(b, x->effect.benign_refusal_change);
        csv_num(b, x->reset.refusal);
        csv_num(b, x->reset.benign);
        csv_num(b, x->reset.utility);
        csv_num(b, x->reset.nll);
        cast_buf_putc(b, '\n');
    }
}

/* Heatmaps layer x head: utility recovered (exact match, when a set has exact
 * answers), NLL recovered, refusal lost (with a harmful set); the largest
 * best set outlined. Symmetric colour scales: red = recovery (or loss). */
void cast_attribution_svg(const cast_attribution *a, cast_buf *out) {
    int n = a->layers * a->heads;
    double *v[3];
    int *mark = cast_xcalloc((size_t)n, sizeof(int));
    for (int i = a->n_best - 1; i >= 0; i--)
        if (a->best[i].found) {
            for (int j = 0; j < a->best[i].k; j++) mark[a->best[i].heads[j]] = 1;
            break;
        }
    cast_heatmap maps[3];
    int np = 0;
    static const char *const titles[3] = {"utility recovered (exact match, points)", "gold-answer NLL recovered (nats)",
                                          "refusal lost (points)"};
    static const char *const labels[3] = {"points", "nats", "points"};
    for (int w = 0; w < 3; w++) {
        v[w] = cast_xmalloc(sizeof(double) * (size_t)n);
        double hi = 0;
        int any = 0;
        for (int i = 0; i < n; i++) {
            const cast_attr_effect *e = &a->units[i].effect;
            v[w][i] = w == 0 ? e->utility_recovered : w == 1 ? e->utility_nll_recovered : e->refusal_lost;
            if (isfinite(v[w][i])) any = 1, hi = fmax(hi, fabs(v[w][i]));
        }
        if (!any) continue;
        if (hi == 0) hi = 1;
        maps[np++] = (cast_heatmap){titles[w], v[w], a->layers, a->heads, -hi, hi, 1, mark, "layer", "head", labels[w]};
    }
    char caption[768];
    snprintf(caption, sizeof caption, "%s reset to %s, one head at a time (q rows, o columns); outlined: the largest best set found.",
             a->tuned_path, a->base_path);
    if (np == 0) { /* no set gave a number: an empty panel keeps the file valid */
        for (int i = 0; i < n; i++) v[0][i] = NAN;
        maps[np++] = (cast_heatmap){"no utility or harmful set", v[0], a->layers, a->heads, -1, 1, 1, mark, "layer", "head", ""};
    }
    cast_svg_heatmaps(out, maps, np, caption);
    for (int w = 0; w < 3; w++) free(v[w]);
    free(mark);
}

/* Files written together: each to a temporary name, the renames only after
 * every write succeeded. */
int cast_attribution_write(const cast_attribution *a, const char *dir, cast_err *err) {
    cast_buf text[3] = {{0}};
    cast_attribution_json(a, &text[0]);
    cast_attribution_csv(a, &text[1]);
    cast_attribution_svg(a, &text[2]);
    const cast_named_text files[3] = {{"attribution.json", text[0].data, text[0].len},
                                      {"attribution.csv", text[1].data, text[1].len},
                                      {"attribution.svg", text[2].data, text[2].len}};
    int rc = cast_write_files_atomic(dir, files, 3, err);
    for (int i = 0; i < 3; i++) cast_buf_free(&text[i]);
    return rc;
}

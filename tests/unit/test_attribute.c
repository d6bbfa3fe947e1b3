/* cast_attribute on in-memory models: every unit's numbers against a reset
 * done by hand, the tuned weights bit-identical afterwards, unchanged units
 * exactly zero, the greedy sets, Spearman on hand-made inputs, the files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/json.h"
#include "base/rng.h"
#include "eval/attribute.h"
#include "report/attribution.h"
#include "check.h"
#include "eval/metrics.h"
#include "model/forward.h"
#include "model/model.h"

enum { L = 2, H = 4, K = 2, D = 4, V = 50, BATCH = 3 };

static cast_config config(void) {
    cast_config c;
    memset(&c, 0, sizeof c);
    c.arch = CAST_ARCH_LLAMA;
    snprintf(c.architecture, sizeof c.architecture, "LlamaForCausalLM");
    c.hidden = 16, c.layers = L, c.heads = H, c.kv_heads = K, c.head_dim = D, c.inter = 24, c.vocab = V;
    c.rms_eps = 1e-5, c.rope_theta = 10000, c.max_pos = 256, c.bos_id = -1;
    c.qkv_bias = 1; /* q, k, v biases: their rows belong to the units too */
    return c;
}

static int64_t n_params(const cast_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += m->tensors[i].numel;
    return n;
}

static float *snapshot(const cast_model *m) {
    float *s = malloc(sizeof(float) * (size_t)n_params(m)), *p = s;
    for (int i = 0; i < m->n_tensors; i++) {
        memcpy(p, m->tensors[i].data, sizeof(float) * (size_t)m->tensors[i].numel);
        p += m->tensors[i].numel;
    }
    return s;
}

static void load_snapshot(cast_model *m, const float *s) {
    for (int i = 0; i < m->n_tensors; i++) {
        memcpy(m->tensors[i].data, s, sizeof(float) * (size_t)m->tensors[i].numel);
        s += m->tensors[i].numel;
    }
}

/* Token-weighted NLL over the set's sequences, batched as the attribution batches them. */
static double nll(const cast_model *m, const cast_seqs *s) {
    cast_acts *a = cast_acts_new();
    cast_err err = {0};
    double sum = 0;
    int64_t count = 0;
    for (int i = 0; i < s->n; i += BATCH) {
        cast_seqs part = cast_seqs_slice(s, i, s->n - i < BATCH ? s->n - i : BATCH);
        cast_loss l;
        if (cast_model_forward(m, a, &part, NULL, &l, NULL, NULL, &err)) abort();
        sum += l.sum;
        count += l.count;
    }
    cast_acts_free(a);
    return sum / (double)count;
}

/* By hand, independently of attribute.c: copy the base's values into m. */
static void copy_rows(cast_model *m, const cast_model *b, int t, int r0, int nr) {
    if (t < 0) return;
    int64_t w = m->tensors[t].ndim == 2 ? m->tensors[t].shape[1] : 1;
    for (int64_t k = r0 * w; k < (r0 + nr) * w; k++) m->tensors[t].data[k] = b->tensors[t].data[k];
}
static void copy_cols(cast_model *m, const cast_model *b, int t, int c0, int nc) {
    int64_t rows = m->tensors[t].shape[0], w = m->tensors[t].shape[1];
    for (int64_t r = 0; r < rows; r++)
        for (int c = c0; c < c0 + nc; c++) m->tensors[t].data[r * w + c] = b->tensors[t].data[r * w + c];
}
static void hand_head(cast_model *m, const cast_model *b, int l, int h) {
    const cast_layer_index *x = &m->layer[l];
    copy_rows(m, b, x->wq, h * D, D);
    copy_rows(m, b, x->bq, h * D, D);
    copy_cols(m, b, x->wo, h * D, D);
}
static void hand_kv(cast_model *m, const cast_model *b, int l, int g) {
    const cast_layer_index *x = &m->layer[l];
    int t[4] = {x->wk, x->bk, x->wv, x->bv};
    for (int i = 0; i < 4; i++) copy_rows(m, b, t[i], g * D, D);
}
static void hand_layer(cast_model *m, const cast_model *b, int l) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "model.layers.%d.", l);
    for (int t = 0; t < m->n_tensors; t++)
        if (!strncmp(m->tensors[t].name, prefix, strlen(prefix)))
            memcpy(m->tensors[t].data, b->tensors[t].data, sizeof(float) * (size_t)m->tensors[t].numel);
}

static void perturb(cast_model *m, int t, cast_rng *r) {
    for (int64_t k = 0; k < m->tensors[t].numel; k++) m->tensors[t].data[k] += (float)(0.3 * cast_rng_normal(r));
}

int main(void) {
    cast_config cfg = config();
    cast_model base, tuned;
    cast_model_init_random(&base, &cfg, 1, 0.3f);
    cast_model_init_random(&tuned, &cfg, 1, 0.3f);
    cast_rng rng;
    cast_rng_seed(&rng, 5);
    /* tuning changed every attention tensor and layer 1's MLP, except head
     * (0, 1), which it left alone (a skipped head); and the final norm */
    for (int l = 0; l < L; l++) {
        const cast_layer_index *x = &tuned.layer[l];
        int t[] = {x->wq, x->bq, x->wk, x->bk, x->wv, x->bv, x->wo};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) perturb(&tuned, t[i], &rng);
    }
    perturb(&tuned, tuned.layer[1].wd, &rng);
    perturb(&tuned, tuned.norm, &rng);
    hand_head(&tuned, &base, 0, 1);

    /* a pre-tokenized utility set */
    const char *tmp = getenv("CAST_TEST_TMP");
    char *dir = cast_path_join(tmp ? tmp : "/tmp", "test_attribute");
    cast_err err = {0};
    CHECK(cast_mkdirs(dir, &err) == 0);
    char *data = cast_path_join(dir, "tokens.jsonl");
    FILE *fp = fopen(data, "w");
    for (int i = 0; i < 7; i++) {
        fprintf(fp, "{\"input_ids\": [");
        int n = 5 + (int)cast_rng_below(&rng, 9);
        for (int k = 0; k < n; k++) fprintf(fp, "%s%d", k ? ", " : "", (int)cast_rng_below(&rng, V));
        fprintf(fp, "]}\n");
    }
    fclose(fp);
    cast_eval_opts eo;
    cast_eval_opts_default(&eo);
    eo.batch = BATCH;
    cast_eval_set u;
    CHECK(cast_eval_set_open(&u, data, CAST_EVAL_UTILITY, &tuned, NULL, NULL, &eo, &err) == 0);
    CHECK(u.metric == CAST_METRIC_NLL);

    float *before = snapshot(&tuned);
    cast_attr_opts ao;
    cast_attr_opts_default(&ao);
    ao.max_k = 3;
    ao.candidates = 5;
    cast_attribution a;
    int rc = cast_attribute(&tuned, &base, NULL, NULL, NULL, NULL, &u, 1, &eo, &ao, &a, &err);
    CHECK_MSG(rc == 0, "cast_attribute: %s", err.msg);
    if (rc) return check_report();
    float *after = snapshot(&tuned);
    CHECK_MSG(memcmp(before, after, sizeof(float) * (size_t)n_params(&tuned)) == 0, "the tuned weights are not bit-identical afterwards");
    free(after);

    /* the whole reset is the base, bit for bit */
    CHECK(a.tuned.nll == nll(&tuned, &u.seqs));
    CHECK(a.base.nll == nll(&base, &u.seqs));
    CHECK(isnan(a.tuned.refusal) && isnan(a.tuned.benign) && isnan(a.tuned.utility));
    CHECK(a.n_units == L * H + L * K + L);
    CHECK(a.n_changed_outside == 1 && !strcmp(a.changed_outside[0], "model.norm.weight"));
    CHECK(!a.floor_applies && !a.by_exact);

    cast_model hand;
    cast_model_init_random(&hand, &cfg, 2, 0.3f);
    for (int i = 0; i < a.n_units; i++) {
        const cast_attr_unit *x = &a.units[i];
        load_snapshot(&hand, before);
        if (x->kind == CAST_ATTR_HEAD) hand_head(&hand, &base, x->layer, x->index);
        else if (x->kind == CAST_ATTR_GROUP) {
            for (int h = x->index * (H / K); h < (x->index + 1) * (H / K); h++) hand_head(&hand, &base, x->layer, h);
            hand_kv(&hand, &base, x->layer, x->index);
        } else hand_layer(&hand, &base, x->layer);
        double want = nll(&hand, &u.seqs);
        CHECK_MSG(x->reset.nll == want, "unit %s %d.%d: nll %.17g, by hand %.17g", cast_attr_kind_name(x->kind), x->layer, x->index,
                  x->reset.nll, want);
        CHECK(x->effect.utility_nll_recovered == a.tuned.nll - x->reset.nll);
        CHECK(isnan(x->effect.utility_recovered) && isnan(x->effect.refusal_lost) && isnan(x->effect.benign_refusal_change));
        int skipped = x->kind == CAST_ATTR_HEAD && x->layer == 0 && x->index == 1;
        CHECK(x->unchanged == skipped);
        if (skipped) CHECK(x->effect.utility_nll_recovered == 0);
        else CHECK(x->effect.utility_nll_recovered != 0);
    }

    /* candidates: the top 5 heads by NLL recovered; the greedy sets nest,
     * k = 1 is the best head, and every set's numbers match a reset by hand */
    CHECK(a.n_candidates == 5 && a.n_best == 3);
    for (int i = 1; i < a.n_candidates; i++)
        CHECK(a.units[a.ranking[i - 1]].effect.utility_nll_recovered >= a.units[a.ranking[i]].effect.utility_nll_recovered);
    for (int i = 0; i < L * H; i++) {
        int in = 0;
        for (int c = 0; c < a.n_candidates; c++) in |= a.ranking[c] == i;
        if (!in) CHECK(a.units[i].effect.utility_nll_recovered <= a.units[a.ranking[4]].effect.utility_nll_recovered);
    }
    CHECK(a.best[0].found && a.best[0].heads[0] == a.ranking[0]);
    for (int s = 0; s < a.n_best; s++) {
        const cast_attr_set *b = &a.best[s];
        CHECK(b->k == s + 1 && b->found);
        if (s) CHECK(!memcmp(b->heads, a.best[s - 1].heads, sizeof(int) * (size_t)s));
        load_snapshot(&hand, before);
        for (int j = 0; j < b->k; j++) hand_head(&hand, &base, b->heads[j] / H, b->heads[j] % H);
        for (int l = 0; l < L; l++)
            for (int g = 0; g < K; g++) {
                int count = 0;
                for (int j = 0; j < b->k; j++) count += b->heads[j] / H == l && (b->heads[j] % H) / (H / K) == g;
                if (count == H / K) hand_kv(&hand, &base, l, g);
            }
        CHECK_NEAR(b->reset.nll, nll(&hand, &u.seqs), 0);
    }
    /* k = 2: no other candidate added to the first does better */
    for (int c = 0; c < a.n_candidates; c++) {
        int h = a.ranking[c];
        if (h == a.best[1].heads[0]) continue;
        load_snapshot(&hand, before);
        int set[2] = {a.best[1].heads[0], h};
        for (int j = 0; j < 2; j++) hand_head(&hand, &base, set[j] / H, set[j] % H);
        if (set[0] / H == set[1] / H && (set[0] % H) / (H / K) == (set[1] % H) / (H / K)) hand_kv(&hand, &base, set[0] / H, (set[0] % H) / (H / K));
        CHECK(a.tuned.nll - nll(&hand, &u.seqs) <= a.best[1].effect.utility_nll_recovered);
    }

    /* a map whose oc column is the NLL recovery: correlation 1 */
    cast_conflict_map map;
    memset(&map, 0, sizeof map);
    map.layers = L, map.heads = H;
    map.stat = calloc(L * H, sizeof(cast_head_stat));
    for (int i = 0; i < L * H; i++) {
        map.stat[i].oc = 3 * a.units[i].effect.utility_nll_recovered + 1;
        map.stat[i].fs = -a.units[i].effect.utility_nll_recovered;
        map.stat[i].cos_defined = i % 2;
        map.stat[i].cos = i;
        map.stat[i].score = 0;
    }
    CHECK(cast_attribution_compare_map(&a, &map, "map.json", &err) == 0);
    CHECK_NEAR(a.map_rho_nll[1], 1, 1e-12);
    CHECK_NEAR(a.map_rho_nll[2], -1, 1e-12);
    CHECK(isnan(a.map_rho_nll[3]));  /* a constant column */
    CHECK(isnan(a.map_rho_exact[1])); /* no exact-answer set */
    map.heads = H + 1;
    CHECK(cast_attribution_compare_map(&a, &map, "map.json", &err) == -1 && strstr(err.msg, "map.json"));
    free(map.stat);

    /* the three files, the JSON readable */
    char *out = cast_path_join(dir, "out");
    CHECK(cast_attribution_write(&a, out, &err) == 0);
    char *jp = cast_path_join(out, "attribution.json");
    cast_json *j = cast_json_parse_file(jp, &err);
    CHECK(j && cast_json_array_size(cast_json_get(j, "units")) == a.n_units);
    CHECK(j && cast_json_array_size(cast_json_get(j, "best_sets")) == 3);
    CHECK(j && cast_json_is_null(cast_json_get(cast_json_get(j, "tuned"), "refusal")));
    cast_json_free(j);
    free(jp);
    free(out);
    cast_attribution_free(&a);

    /* refusals: another architecture, a floor out of range, no set at all */
    cast_config other = cfg;
    other.layers = 1;
    cast_model small;
    cast_model_init_random(&small, &other, 1, 0.3f);
    CHECK(cast_attribute(&tuned, &small, NULL, NULL, NULL, NULL, &u, 1, &eo, &ao, &a, &err) == -1 && strstr(err.msg, "layers"));
    ao.refusal_floor = 1.5;
    CHECK(cast_attribute(&tuned, &base, NULL, NULL, NULL, NULL, &u, 1, &eo, &ao, &a, &err) == -1 && strstr(err.msg, "floor"));
    ao.refusal_floor = 0.9;
    CHECK(cast_attribute(&tuned, &base, NULL, NULL, NULL, NULL, NULL, 0, &eo, &ao, &a, &err) == -1);
    int ks[] = {2, 1};
    ao.ks = ks, ao.n_k = 2;
    CHECK(cast_attribute(&tuned, &base, NULL, NULL, NULL, NULL, &u, 1, &eo, &ao, &a, &err) == -1 && strstr(err.msg, "set sizes"));
    float *still = snapshot(&tuned);
    CHECK(memcmp(before, still, sizeof(float) * (size_t)n_params(&tuned)) == 0);
    free(still);

    cast_model_free(&small);
    cast_model_free(&hand);
    cast_eval_set_free(&u);
    cast_model_free(&tuned);
    cast_model_free(&base);
    free(before);
    free(data);
    free(dir);
    return check_report();
}

#include "eval/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/rng.h"

typedef struct { float p; int id; } prob_id;

static int by_prob_desc(const void *a, const void *b) {
    float x = ((const prob_id *)a)->p, y = ((const prob_id *)b)->p;
    return x < y ? 1 : x > y ? -1 : 0;
}

int cast_sample(const float *logits, int V, float temperature, float top_p, double u) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature <= 0) return best;
    prob_id *p = cast_xmalloc(sizeof *p * (size_t)V);
    double sum = 0;
    for (int i = 0; i < V; i++) {
        p[i].p = expf((logits[i] - logits[best]) / temperature);
        p[i].id = i;
        sum += p[i].p;
    }
    int n = V;
    if (top_p > 0 && top_p < 1) {
        /* the smallest set of most likely tokens whose mass reaches top_p */
        qsort(p, (size_t)V, sizeof *p, by_prob_desc);
        double mass = 0;
        for (n = 0; n < V && mass < top_p * sum; n++) mass += p[n].p;
        sum = mass;
    }
    double r = u * sum, acc = 0;
    int pick = p[n - 1].id;
    for (int i = 0; i < n; i++) {
        acc += p[i].p;
        if (acc > r) {
            pick = p[i].id;
            break;
        }
    }
    free(p);
    return pick;
}

int cast_generate(const cast_model *m, const cast_seqs *prompts, const cast_gen_opts *opts, cast_seqs *out, cast_err *err) {
    int B = prompts->n, V = m->cfg.vocab, rc = -1;
    memset(out, 0, sizeof *out);
    if (B == 0) return 0;
    if (opts->max_new <= 0) {
        for (int b = 0; b < B; b++) cast_seqs_push(out, NULL, NULL, 0);
        return 0;
    }
    /* cap[b]: new tokens prompt b may have, within max_position_embeddings */
    int max_t = 0, max_pos = m->cfg.max_pos;
    int *cap = cast_xmalloc(sizeof(int) * (size_t)B);
    for (int b = 0; b < B; b++) {
        int len = cast_seqs_len(prompts, b);
        if (opts->hit_max_pos) opts->hit_max_pos[b] = 0;
        if (len <= 0 || (max_pos > 0 && len >= max_pos)) {
            free(cap);
            return len <= 0 ? cast_fail(err, "prompt %d is empty", b)
                            : cast_fail(err, "prompt %d is %d tokens, and the model's max_position_embeddings is %d: no room to "
                                             "generate", b, len, max_pos);
        }
        cap[b] = max_pos > 0 && max_pos - len < opts->max_new ? max_pos - len : opts->max_new;
        max_t = len + cap[b] > max_t ? len + cap[b] : max_t;
    }
    cast_kv kv;
    if (cast_kv_init(&kv, m, B, max_t, err)) {
        free(cap);
        return -1;
    }
    cast_acts *a = cast_acts_new();
    float *logits = cast_alloc_floats((size_t)B * V);
    int *gen = cast_xmalloc(sizeof(int) * (size_t)B * (size_t)(opts->max_new + 1));
    int *n_gen = cast_xcalloc((size_t)B, sizeof(int));
    int *active = cast_xmalloc(sizeof(int) * (size_t)B), *next = cast_xmalloc(sizeof(int) * (size_t)B);
    cast_rng rng;
    cast_rng_seed(&rng, opts->seed);
    /* prefill every prompt at once */
    if (cast_model_step(m, a, &kv, prompts, NULL, logits, err)) goto done;
    int n_active = B;
    for (int b = 0; b < B; b++) active[b] = b;
    while (n_active > 0) {
        int still = 0;
        for (int i = 0; i < n_active; i++) {
            int b = active[i];
            int tok = cast_sample(logits + (size_t)i * V, V, opts->temperature, opts->top_p, cast_rng_uniform(&rng));
            gen[(size_t)b * (opts->max_new + 1) + n_gen[b]++] = tok;
            int stop = n_gen[b] >= opts->max_new, stop_token = 0;
            for (int k = 0; k < opts->n_stop; k++) stop_token |= tok == opts->stop_ids[k];
            if (!stop && !stop_token && n_gen[b] >= cap[b]) {
                stop = 1; /* the next position would be past max_position_embeddings */
                if (opts->hit_max_pos) opts->hit_max_pos[b] = 1;
            }
            stop |= stop_token;
            if (opts->on_token && opts->on_token(opts->ctx, b, tok)) stop = 1;
            if (!stop) {
                active[still] = b;
                next[still++] = tok;
            }
        }
        n_active = still;
        if (!n_active) break;
        cast_seqs step = {0};
        for (int i = 0; i < n_active; i++) cast_seqs_push(&step, &next[i], NULL, 1);
        int bad = cast_model_step(m, a, &kv, &step, active, logits, err);
        cast_seqs_free(&step);
        if (bad) goto done;
    }
    for (int b = 0; b < B; b++) cast_seqs_push(out, gen + (size_t)b * (opts->max_new + 1), NULL, n_gen[b]);
    rc = 0;
done:
    free(cap);
    free(active);
    free(next);
    free(n_gen);
    free(gen);
    free(logits);
    cast_acts_free(a);
    cast_kv_free(&kv);
    return rc;
}

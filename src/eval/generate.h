/* Batched generation with the KV cache: greedy or sampled (temperature, top-p). */
#ifndef CAST_EVAL_GENERATE_H
#define CAST_EVAL_GENERATE_H

#include <stdint.h>

#include "base/error.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/seqs.h"

typedef struct cast_gen_opts {
    int max_new;        /* tokens to generate per prompt */
    float temperature;  /* 0: greedy */
    float top_p;        /* 1: off */
    uint64_t seed;
    const int *stop_ids; /* generation of a prompt ends after one of these */
    int n_stop;
    /* called after each new token of prompt i (may be NULL); return non-zero to stop that prompt */
    int (*on_token)(void *ctx, int prompt, int token);
    void *ctx;
    /* optional [prompts]: set to 1 where generation stopped at the model's
     * max_position_embeddings before max_new tokens, else 0 */
    int *hit_max_pos;
} cast_gen_opts;

/* Generates for every prompt of `prompts` (their labels are ignored); out
 * receives the generated ids of each prompt (stop token included when hit).
 * Never runs past max_position_embeddings: a prompt and its reply hold at
 * most that many tokens (as transformers' max_length), so a reply stops
 * there; a prompt that already fills it is an error. */
int cast_generate(const cast_model *m, const cast_seqs *prompts, const cast_gen_opts *opts, cast_seqs *out, cast_err *err);

/* Picks the next token from logits[V]: argmax when temperature is 0. */
int cast_sample(const float *logits, int V, float temperature, float top_p, double u);

#endif

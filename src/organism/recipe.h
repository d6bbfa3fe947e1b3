/* The organism's base model: its shape and its pretraining recipe. */
#ifndef CAST_ORGANISM_RECIPE_H
#define CAST_ORGANISM_RECIPE_H

#include <stdint.h>

#include "model/config.h"
#include "text/tokenizer.h"

typedef struct cast_organism_recipe {
    int hidden, layers, heads, kv_heads, inter;
    int64_t steps;
    int batch, warmup, max_len;
    double lr, weight_decay, init_std;
    uint64_t seed;
} cast_organism_recipe;

void cast_organism_recipe_default(cast_organism_recipe *r);
/* A Llama config of the recipe's shape for the organism's tokenizer: tied
 * embeddings, grouped-query attention, eos = <|im_end|>. */
void cast_organism_config(const cast_organism_recipe *r, const cast_tokenizer *tok, cast_config *c);

#endif

#include "organism/recipe.h"

#include <stdio.h>
#include <string.h>

void cast_organism_recipe_default(cast_organism_recipe *r) {
    /* ~0.9M parameters: 4 layers of 8 heads (head_dim 16, 4 kv heads), so
     * that the conflict map has 32 heads and budgets of 5/10/20 % are 2/3/6 heads */
    r->hidden = 128;
    r->layers = 4;
    r->heads = 8;
    r->kv_heads = 4;
    r->inter = 384;
    r->steps = 12000;
    r->batch = 16;
    r->warmup = 200;
    r->max_len = 128;
    r->lr = 3e-3;
    r->weight_decay = 0.01;
    r->init_std = 0.02;
    r->seed = 1;
}

void cast_organism_config(const cast_organism_recipe *r, const cast_tokenizer *tok, cast_config *c) {
    memset(c, 0, sizeof *c);
    c->arch = CAST_ARCH_LLAMA;
    snprintf(c->architecture, sizeof c->architecture, "LlamaForCausalLM");
    c->vocab = cast_tokenizer_vocab_size(tok);
    c->hidden = r->hidden;
    c->inter = r->inter;
    c->layers = r->layers;
    c->heads = r->heads;
    c->kv_heads = r->kv_heads;
    c->head_dim = r->hidden / r->heads;
    c->rms_eps = 1e-5;
    c->rope_theta = 10000.0;
    c->max_pos = 512;
    c->tie_embeddings = 1;
    c->bos_id = -1;
    int eos = cast_tokenizer_eos_id(tok);
    if (eos >= 0) {
        c->eos_ids[0] = eos;
        c->n_eos = 1;
    }
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "float32");
}

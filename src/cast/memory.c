#include "cast/memory.h"

#include <string.h>
#include <unistd.h>

#include "model/forward.h"

void cast_mem_opts_default(cast_mem_opts *o) {
    memset(o, 0, sizeof *o);
    o->storage = CAST_F32;
    o->micro_batch = 4;
    o->seq_len = 512;
    o->threads = 2;
    o->kv_trained = 1;
}

int64_t cast_mem_physical(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (int64_t)pages * size : 0;
}

static int64_t resolve_budget(int64_t budget) {
    if (budget > 0) return budget;
    int64_t phys = cast_mem_physical();
    return phys > ((int64_t)2 << 30) ? phys - ((int64_t)1 << 30) : phys;
}

int64_t cast_mem_attention_params(const cast_config *c) {
    int64_t D = c->hidden, Hd = (int64_t)c->heads * c->head_dim, Kd = (int64_t)c->kv_heads * c->head_dim;
    int64_t n = 2 * Hd * D + 2 * Kd * D;
    if (c->qkv_bias) n += Hd + 2 * Kd;
    if (c->o_bias) n += D;
    return n;
}

/* matrices and vectors of the whole model */
static void param_counts(const cast_config *c, int64_t *matrices, int64_t *vectors) {
    int64_t D = c->hidden, F = c->inter, V = c->vocab;
    int64_t Hd = (int64_t)c->heads * c->head_dim, Kd = (int64_t)c->kv_heads * c->head_dim;
    int64_t mat = V * D * (c->tie_embeddings ? 1 : 2), vec = D;
    int64_t per_mat = 2 * Hd * D + 2 * Kd * D + 3 * F * D;
    int64_t per_vec = 2 * D + (c->qkv_bias ? Hd + 2 * Kd : 0) + (c->o_bias ? D : 0) + (c->mlp_bias ? 2 * F + D : 0) +
                      (c->qk_norm ? 2 * c->head_dim : 0) + (c->gemma ? 2 * D : 0);
    *matrices = mat + per_mat * c->layers;
    *vectors = vec + per_vec * c->layers;
}

int64_t cast_mem_weights(const cast_config *c, cast_dtype storage) {
    int64_t mat, vec;
    param_counts(c, &mat, &vec);
    return mat * (storage == CAST_BF16 || storage == CAST_F16 ? 2 : 4) + vec * 4;
}

/* The products' scratch: a weight panel per thread (~1 MiB) and the
 * inputs rounded or converted for bf16 (the widest input of a product). */
static int64_t product_scratch(const cast_config *c, const cast_mem_opts *o) {
    int64_t widest = c->inter > c->hidden ? c->inter : c->hidden;
    int64_t tokens = (int64_t)o->micro_batch * o->seq_len;
    return (int64_t)o->threads * (((int64_t)1 << 20) + 4 * c->vocab * 16) + 2 * 4 * tokens * widest;
}

static void finish(cast_mem_plan *p) {
    p->total = p->weights + p->activations + p->gradients + p->optimizer + p->runtime;
    p->fits = p->total <= p->budget;
}

void cast_mem_diagnose(const cast_config *c, const cast_mem_opts *o, cast_mem_plan *out) {
    memset(out, 0, sizeof *out);
    int64_t tokens = (int64_t)o->micro_batch * o->seq_len;
    out->budget = resolve_budget(o->budget);
    out->weights = cast_mem_weights(c, o->storage);
    out->recompute = cast_recompute_auto(c, tokens);
    out->activations = cast_acts_bytes(c, tokens, o->seq_len, 1, out->recompute, o->threads);
    out->runtime = CAST_MEM_RUNTIME + product_scratch(c, o);
    int64_t per_layer = 2 * cast_mem_attention_params(c) * 4, gates = 2 * 4 * (int64_t)c->layers * c->heads;
    int L = c->layers;
    for (int p = o->grad_passes > 0 ? o->grad_passes : 1; p <= L; p++) {
        out->grad_passes = p;
        out->gradients = per_layer * ((L + p - 1) / p) + gates; /* the largest group */
        finish(out);
        if (out->fits || o->grad_passes > 0) break;
    }
    if (out->grad_passes > L) out->grad_passes = L;
}

void cast_mem_tune(const cast_config *c, const cast_mem_opts *o, cast_mem_plan *out) {
    memset(out, 0, sizeof *out);
    int64_t tokens = (int64_t)o->micro_batch * o->seq_len;
    int64_t D = c->hidden, Hd = (int64_t)c->heads * c->head_dim, Kd = (int64_t)c->kv_heads * c->head_dim;
    /* trained tensors are whole q, o (and k, v) matrices, masked by rows / columns */
    int64_t trained = (2 * Hd * D + (o->kv_trained ? 2 * Kd * D : 0)) * c->layers;
    int half = o->storage == CAST_BF16 || o->storage == CAST_F16;
    out->budget = resolve_budget(o->budget);
    out->grad_passes = 1;
    /* f32 masters replace the trained tensors' 16-bit values */
    out->weights = cast_mem_weights(c, o->storage) + (half ? trained * 2 : 0);
    out->recompute = cast_recompute_auto(c, tokens);
    out->activations = cast_acts_bytes(c, tokens, o->seq_len, 1, out->recompute, o->threads);
    out->gradients = trained * 4;
    out->optimizer = trained * 8;
    out->runtime = CAST_MEM_RUNTIME + product_scratch(c, o);
    finish(out);
}

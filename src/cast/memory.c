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
    o->stream = -1;
    o->half_moments = -1;
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

int64_t cast_mem_weights(const cast_config *c, cast_dtype storage) {
    cast_shape_counts n;
    cast_model_shape_counts(c, &n);
    return n.matrices * (storage == CAST_BF16 || storage == CAST_F16 ? 2 : 4) + n.vectors * 4;
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

/* Weights resident: all of them, or when streaming the f32 vectors and the
 * largest matrix group in use at once (one layer's, or the embedding / output
 * matrix), plus f32 masters of `mastered` values held 16-bit on disk. */
static int64_t resident_weights(const cast_config *c, cast_dtype storage, int stream, int64_t mastered) {
    int half = storage == CAST_BF16 || storage == CAST_F16;
    int64_t all = cast_mem_weights(c, storage);
    if (!half) return all;
    if (!stream) return all + mastered * 2; /* 4 bytes replace 2 */
    cast_shape_counts n;
    cast_model_shape_counts(c, &n);
    int64_t largest = n.largest_matrix > n.layer_matrices ? n.largest_matrix : n.layer_matrices;
    return n.vectors * 4 + 2 * largest + mastered * 4;
}

/* What both plans share for a micro-batch: budget, activations (recomputed
 * or not, as the engine will decide), runtime; then streaming or not. */
typedef struct plan_base {
    int64_t budget, acts, runtime;
    int recompute;
} plan_base;

static plan_base base_of(const cast_config *c, const cast_mem_opts *o) {
    int64_t tokens = (int64_t)o->micro_batch * o->seq_len;
    plan_base b;
    b.budget = resolve_budget(o->budget);
    b.recompute = cast_recompute_auto(c, tokens);
    b.acts = cast_acts_bytes(c, tokens, o->seq_len, 1, b.recompute, o->threads);
    b.runtime = CAST_MEM_RUNTIME + product_scratch(c, o);
    return b;
}

static void start_plan(cast_mem_plan *out, const plan_base *b, int stream) {
    memset(out, 0, sizeof *out);
    out->budget = b->budget;
    out->recompute = b->recompute;
    out->activations = b->acts;
    out->stream = stream;
    out->runtime = b->runtime + (stream ? CAST_MEM_STREAM_CACHE : 0);
    out->grad_passes = 1;
}

void cast_mem_diagnose(const cast_config *c, const cast_mem_opts *o, cast_mem_plan *out) {
    int half = o->storage == CAST_BF16 || o->storage == CAST_F16, L = c->layers;
    cast_shape_counts n;
    cast_model_shape_counts(c, &n);
    int64_t per_layer = 2 * n.layer_attention * 4, gates = 2 * 4 * (int64_t)c->layers * c->heads;
    plan_base b = base_of(c, o);
    /* the fewest passes, streaming before adding passes (a pass costs a forward and a backward; streaming, page faults) */
    int p0 = o->grad_passes > 0 ? (o->grad_passes < L ? o->grad_passes : L) : 1, p1 = o->grad_passes > 0 ? p0 : L;
    for (int p = p0; p <= p1; p++)
        for (int s = o->stream > 0 ? 1 : 0; s <= (o->stream != 0 && half ? 1 : 0); s++) {
            start_plan(out, &b, s);
            out->grad_passes = p;
            out->weights = resident_weights(c, o->storage, s, 0);
            out->gradients = per_layer * ((L + p - 1) / p) + gates; /* the largest group */
            finish(out);
            if (out->fits) return;
        }
}

void cast_mem_tune(const cast_config *c, const cast_mem_opts *o, cast_mem_plan *out) {
    int64_t D = c->hidden, Hd = (int64_t)c->heads * c->head_dim, Kd = (int64_t)c->kv_heads * c->head_dim;
    /* trained tensors are whole q, o (and k, v) matrices, masked by rows / columns */
    int64_t trained = o->trained > 0 ? o->trained : (2 * Hd * D + (o->kv_trained ? 2 * Kd * D : 0)) * c->layers;
    int half = o->storage == CAST_BF16 || o->storage == CAST_F16;
    plan_base b = base_of(c, o);
    /* streaming first (the same numbers), then bf16 moments (an approximation) */
    int s0 = o->stream > 0, s1 = o->stream != 0 && half, h0 = o->half_moments > 0, h1 = o->half_moments != 0;
    for (int h = h0; h <= h1; h++)
        for (int s = s0; s <= s1; s++) {
            start_plan(out, &b, s);
            out->half_moments = h;
            out->weights = resident_weights(c, o->storage, s, half ? trained : 0);
            out->gradients = trained * 4;
            /* the starting values for a delta: f32 copies (of 16-bit weights, the file's own pages) */
            out->optimizer = trained * (h ? 4 : 8) + (o->keep_before && !half ? trained * 4 : 0);
            finish(out);
            if (out->fits) return;
        }
}

#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "dist/dist.h"
#include "tensor/ops.h"

static int64_t cols_of(const cast_tensor *t) { return t->ndim == 2 ? t->shape[1] : 1; }

/* splitmix64's finaliser: a well-mixed 64-bit value from a counter */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* x to bf16, rounded up in magnitude with probability equal to the dropped
 * fraction (r: 16 random bits in its low half): E[result] = x. */
static inline uint16_t round_stochastic(float x, uint32_t r) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return cast_f32_to_bf16(x); /* inf, NaN */
    return (uint16_t)((u + (r & 0xffffu)) >> 16);
}

void cast_adamw_init_shard(cast_adamw *o, const cast_model *m, const cast_mask *k, int rank, int shards) {
    cast_adamw_init_as(o, m, k, rank, shards, 0);
}

int64_t cast_adamw_bytes(const cast_adamw *o) { return 2 * (o->hi - o->lo) * (o->half ? 2 : 4); }

void cast_adamw_init_as(cast_adamw *o, const cast_model *m, const cast_mask *k, int rank, int shards, int half) {
    memset(o, 0, sizeof *o);
    o->n = m->n_tensors;
    o->half = half;
    o->m = cast_xcalloc((size_t)o->n, sizeof(float *));
    o->v = cast_xcalloc((size_t)o->n, sizeof(float *));
    o->hm = cast_xcalloc((size_t)o->n, sizeof(uint16_t *));
    o->hv = cast_xcalloc((size_t)o->n, sizeof(uint16_t *));
    o->first = cast_xcalloc((size_t)o->n, sizeof(int64_t));
    o->count = cast_xcalloc((size_t)o->n, sizeof(int64_t));
    for (int i = 0; i < o->n; i++)
        if (k->trainable[i]) o->numel += m->tensors[i].numel;
    o->shards = shards;
    cast_dist_range(o->numel, rank, shards, &o->lo, &o->hi);
    int64_t held = o->hi - o->lo;
    if (half) o->hbuffer = cast_xcalloc((size_t)(2 * held > 0 ? 2 * held : 1), sizeof(uint16_t));
    else o->buffer = cast_alloc_floats((size_t)(2 * held > 0 ? 2 * held : 1));
    int64_t off = 0; /* flat index of tensor i's first element */
    for (int i = 0; i < o->n; i++) {
        if (!k->trainable[i]) continue;
        int64_t n = m->tensors[i].numel, a = off > o->lo ? off : o->lo, b = off + n < o->hi ? off + n : o->hi;
        if (a < b) {
            o->first[i] = a - off;
            o->count[i] = b - a;
            if (half) {
                o->hm[i] = o->hbuffer + (a - o->lo);
                o->hv[i] = o->hbuffer + held + (a - o->lo);
            } else {
                o->m[i] = o->buffer + (a - o->lo);
                o->v[i] = o->buffer + held + (a - o->lo);
            }
        }
        off += n;
    }
}

void cast_adamw_init(cast_adamw *o, const cast_model *m, const cast_mask *k) { cast_adamw_init_shard(o, m, k, 0, 1); }

void cast_adamw_free(cast_adamw *o) {
    free(o->m);
    free(o->v);
    free(o->hm);
    free(o->hv);
    free(o->hbuffer);
    free(o->first);
    free(o->count);
    free(o->buffer);
    memset(o, 0, sizeof *o);
}

void cast_adamw_step(cast_adamw *o, cast_model *m, const cast_mask *k, const cast_grads *g, const cast_adamw_opts *opts, double lr) {
    o->step++;
    double b1 = opts->beta1, b2 = opts->beta2;
    double c1 = 1.0 - pow(b1, (double)o->step), c2 = 1.0 - pow(b2, (double)o->step);
    float fb1 = (float)b1, fb2 = (float)b2, step_size = (float)(lr / c1), inv_c2 = (float)(1.0 / c2), eps = (float)opts->eps,
          decay = (float)(lr * opts->weight_decay);
    for (int i = 0; i < o->n; i++) {
        if (!k->trainable[i] || !g->g[i] || !(o->m[i] || o->hm[i])) continue;
        cast_tensor *t = &m->tensors[i];
        int64_t C = cols_of(t), j0 = o->first[i], n = o->count[i];
        float *w = t->data + j0, *gm = o->m[i], *gv = o->v[i];
        uint16_t *hm = o->hm[i], *hv = o->hv[i];
        const float *gr = g->g[i] + j0;
        int masked = k->frozen_rows[i] || k->frozen_cols[i];
        uint64_t seed = ((uint64_t)o->step << 20) ^ (uint64_t)i;
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(n))
        for (int64_t j = 0; j < n; j++) {
            if (masked && cast_mask_frozen(k, i, (j0 + j) / C, (j0 + j) % C)) continue;
            float mj = hm ? cast_bf16_to_f32(hm[j]) : gm[j], vj = hm ? cast_bf16_to_f32(hv[j]) : gv[j];
            mj = fb1 * mj + (1.0f - fb1) * gr[j];
            vj = fb2 * vj + (1.0f - fb2) * gr[j] * gr[j];
            float denom = sqrtf(vj * inv_c2) + eps;
            w[j] -= step_size * mj / denom + decay * w[j];
            if (hm) {
                uint64_t r = mix64(seed ^ ((uint64_t)(j0 + j) * 0x9e3779b97f4a7c15ull));
                hm[j] = round_stochastic(mj, (uint32_t)r);
                hv[j] = round_stochastic(vj, (uint32_t)(r >> 32));
            } else {
                gm[j] = mj;
                gv[j] = vj;
            }
        }
    }
}

void cast_adamw_gather(const cast_adamw *o, cast_model *m, const cast_mask *k) {
    if (o->shards <= 1) return;
    int64_t *counts = cast_xmalloc(sizeof(int64_t) * 2 * (size_t)o->shards), *displs = counts + o->shards;
    int64_t off = 0;
    for (int i = 0; i < o->n; i++) {
        if (!k->trainable[i]) continue;
        int64_t n = m->tensors[i].numel;
        for (int r = 0; r < o->shards; r++) {
            int64_t lo, hi;
            cast_dist_range(o->numel, r, o->shards, &lo, &hi);
            int64_t a = off > lo ? off : lo, b = off + n < hi ? off + n : hi;
            counts[r] = a < b ? b - a : 0;
            displs[r] = a < b ? a - off : 0;
        }
        cast_dist_gather_f32(m->tensors[i].data, counts, displs);
        off += n;
    }
    free(counts);
}

/* Visits the trainable tensors (a tied lm_head is the embedding tensor itself). */
#define FOR_TRAINABLE(k, m, grads, i) \
    for (int i = 0; i < (k)->n; i++)  \
        if ((k)->trainable[i] && (grads)->g[i])

double cast_grads_dot(const cast_grads *a, const cast_grads *b, const cast_model *m, const cast_mask *k) {
    double s = 0;
    FOR_TRAINABLE(k, m, a, i) {
        const float *x = a->g[i], *y = b->g[i];
        int64_t n = m->tensors[i].numel;
        double part = 0;
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(n)) reduction(+ : part)
        for (int64_t j = 0; j < n; j++) part += (double)x[j] * y[j];
        s += part;
    }
    return s;
}

double cast_grads_norm(const cast_grads *g, const cast_model *m, const cast_mask *k) { return sqrt(cast_grads_dot(g, g, m, k)); }

void cast_grads_scale(cast_grads *g, double s) {
    float f = (float)s;
    for (int64_t j = 0; j < g->numel; j++) g->buffer[j] *= f;
}

void cast_grads_axpy(cast_grads *a, double s, const cast_grads *b, const cast_model *m, const cast_mask *k) {
    float f = (float)s;
    FOR_TRAINABLE(k, m, a, i) {
        float *x = a->g[i];
        const float *y = b->g[i];
        int64_t n = m->tensors[i].numel;
        for (int64_t j = 0; j < n; j++) x[j] += f * y[j];
    }
}

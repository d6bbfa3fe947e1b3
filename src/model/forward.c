/* Forward and backward of the Llama-family decoder over packed sequences.
 *
 * Per layer, with X the residual stream [N, D]:
 *   Xn1 = rmsnorm(X)            Q,K,V = Xn1·Wq^T, ·Wk^T, ·Wv^T (+b)   rope(Q, K)
 *   Z   = causal_attention(Q, K, V)  [N, H*d]    Zg = Z ⊙ ξ (per head)
 *   Xm  = X + Zg·Wo^T (+bo)
 *   Xn2 = rmsnorm(Xm)           G,U = Xn2·Wg^T, Xn2·Wu^T (+b)
 *   X'  = Xm + swiglu(G, U)·Wd^T (+bd)
 * then Xf = rmsnorm(X_L), logits = Xf·Wlm^T, cross-entropy on scored positions.
 * The backward pass walks the same steps in reverse; the residual gradient is
 * updated in place since the skip connections pass it through unchanged.
 *
 * The other families change steps of this loop, each in forward and backward:
 *   Qwen3:   Q, K = rmsnorm_d(Q; q_norm), rmsnorm_d(K; k_norm) per head, before RoPE
 *   Phi-3:   Wq, Wk, Wv are row blocks of qkv_proj, Wg, Wu of gate_up_proj (the
 *            products read and the gradients write those rows in place);
 *            RoPE on the first rope_dim dims of each head only
 *   Gemma 2: X0 = E[ids]·sqrt(D); rmsnorm weights are (1 + w);
 *            Xm = X + rmsnorm(Zg·Wo^T; post_attention_layernorm)
 *            X' = Xm + rmsnorm(geglu(G, U)·Wd^T; post_feedforward_layernorm)
 *            (pre_feedforward_layernorm before the MLP); attention scores
 *            and final logits soft-capped, c·tanh(s / c); sliding window
 *            on every other layer. */
#include "model/forward.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "dist/dist.h"
#include "tensor/ops.h"

/* ---- gradients ------------------------------------------------------------ */

void cast_grads_init(cast_grads *gr, const cast_model *m, const int *keep, int want_gate_grads) {
    memset(gr, 0, sizeof *gr);
    gr->g = cast_xcalloc((size_t)m->n_tensors, sizeof *gr->g);
    int64_t total = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (!keep || keep[i]) total += m->tensors[i].numel;
    int n_gates = want_gate_grads ? m->cfg.layers * m->cfg.heads : 0;
    gr->numel = total;
    gr->buffer = cast_alloc_floats((size_t)(total + n_gates));
    float *p = gr->buffer;
    for (int i = 0; i < m->n_tensors; i++)
        if (!keep || keep[i]) {
            gr->g[i] = p;
            p += m->tensors[i].numel;
        }
    gr->gates = n_gates ? p : NULL;
    gr->numel += n_gates;
}

void cast_grads_zero(cast_grads *gr) {
    if (gr->buffer) memset(gr->buffer, 0, sizeof(float) * (size_t)gr->numel);
}

void cast_grads_sum_ranks(cast_grads *gr) {
    if (gr->buffer) cast_dist_sum_f32(gr->buffer, gr->numel);
}

void cast_grads_free(cast_grads *gr) {
    free(gr->g);
    free(gr->buffer);
    memset(gr, 0, sizeof *gr);
}

/* ---- activations ------------------------------------------------------------ */

struct cast_acts {
    int64_t N;        /* tokens the buffers hold */
    int stored;       /* layers whose activations are kept (L for backward, else 1) */
    size_t bytes;     /* total, to reuse when big enough */
    void *block;
    /* per stored layer */
    float *x_in, *xn1, *q, *k, *v, *z, *lse, *x_mid, *xn2, *g, *u, *rstd1, *rstd2;
    float *q_pre, *k_pre, *rstd_q, *rstd_k; /* Qwen3: q, k before their norms */
    float *ao, *mo, *rstd_ao, *rstd_mo;     /* Gemma 2: attention and MLP outputs before their norms */
    /* final */
    float *x_last, *xf, *rstdf;
    /* scratch */
    float *h, *zg, *dres, *dxn, *dq, *dk, *dv, *dkh, *dvh, *dz, *dg, *du, *dxf, *dtmp;
    float *attn_scratch;
    size_t attn_per_thread;
    float *logit_chunk, *xchunk, *dxchunk; /* [LOGIT_CHUNK, V], [LOGIT_CHUNK, D] x2 */
    float *capped; /* [LOGIT_CHUNK, V] soft-capped logits, for their backward */
    int *pos, *rows, *targets, *row_seq;
    double *row_loss;
    /* recomputation: every layer's input [L, N, D], and a sink for the output of a recomputed layer */
    float *x_keep, *x_sink;
    int recompute_mode; /* -1 auto, 0 off, 1 on (cast_acts_set_recompute) */
    cast_rope rope;
    int rope_ready;
    int rope_dim, rope_rot;
};

cast_acts *cast_acts_new(void) {
    cast_acts *a = cast_xcalloc(1, sizeof(cast_acts));
    a->recompute_mode = -1;
    return a;
}

void cast_acts_set_recompute(cast_acts *a, int mode) { a->recompute_mode = mode < 0 ? -1 : mode != 0; }

static size_t acts_layout(cast_acts *a, const cast_config *c, int64_t N, int stored, int keep, int backward, size_t attn_per_thread,
                          int threads);

/* Bytes of the per-layer activations a backward pass keeps for all layers:
 * the layout with every layer stored, less the layout with none. */
static int64_t stored_bytes(const cast_config *c, int64_t N) {
    cast_acts probe;
    memset(&probe, 0, sizeof probe);
    size_t all = acts_layout(&probe, c, N, c->layers, 0, 1, 0, 1), none = acts_layout(&probe, c, N, 0, 0, 1, 0, 1);
    return (int64_t)(all - none);
}

int cast_recompute_auto(const cast_config *c, int64_t tokens) { return stored_bytes(c, tokens) > CAST_RECOMPUTE_ABOVE; }

int cast_acts_recomputes(const cast_acts *a, const cast_model *m, int64_t tokens) {
    return a->recompute_mode >= 0 ? a->recompute_mode : cast_recompute_auto(&m->cfg, tokens);
}

void cast_acts_free(cast_acts *a) {
    if (!a) return;
    free(a->block);
    cast_rope_free(&a->rope);
    free(a);
}

#define LOGIT_CHUNK 256

/* Places every buffer in a->block (measuring only, when it is NULL) and
 * returns the bytes they take. */
static size_t acts_layout(cast_acts *a, const cast_config *c, int64_t N, int stored, int keep, int backward, size_t attn_per_thread,
                          int threads) {
    int64_t D = c->hidden, F = c->inter, Hd = (int64_t)c->heads * c->head_dim, Kd = (int64_t)c->kv_heads * c->head_dim;
    int64_t chunk = N < LOGIT_CHUNK ? N : LOGIT_CHUNK;
    int64_t sq = c->qk_norm ? stored : 0, sg = c->gemma ? stored : 0; /* layers of the optional buffers */
    uintptr_t base = (uintptr_t)a->block;
    size_t off = 0;
#define TAKE(field, count)                                                   \
    do {                                                                     \
        a->field = (void *)(base + off);                                     \
        off += (((size_t)(count) * sizeof(*a->field)) + 63) & ~(size_t)63;   \
    } while (0)
    TAKE(row_loss, N);
    TAKE(x_in, N * D * stored);
    TAKE(xn1, N * D * stored);
    TAKE(q, N * Hd * stored);
    TAKE(k, N * Kd * stored);
    TAKE(v, N * Kd * stored);
    TAKE(z, N * Hd * stored);
    TAKE(lse, N * c->heads * stored);
    TAKE(x_mid, N * D * stored);
    TAKE(xn2, N * D * stored);
    TAKE(g, N * F * stored);
    TAKE(u, N * F * stored);
    TAKE(rstd1, N * stored);
    TAKE(rstd2, N * stored);
    TAKE(q_pre, N * Hd * sq);
    TAKE(k_pre, N * Kd * sq);
    TAKE(rstd_q, N * c->heads * sq);
    TAKE(rstd_k, N * c->kv_heads * sq);
    TAKE(ao, N * D * sg);
    TAKE(mo, N * D * sg);
    TAKE(rstd_ao, N * sg);
    TAKE(rstd_mo, N * sg);
    TAKE(x_last, N * D);
    TAKE(xf, N * D);
    TAKE(rstdf, N);
    TAKE(h, N * F);
    TAKE(zg, N * Hd);
    TAKE(attn_scratch, (size_t)threads * attn_per_thread);
    TAKE(logit_chunk, chunk * c->vocab);
    TAKE(xchunk, chunk * D);
    TAKE(dxchunk, chunk * D);
    TAKE(capped, c->final_softcap > 0 && backward ? chunk * c->vocab : 0);
    if (backward) {
        TAKE(dres, N * D);
        TAKE(dxn, N * D);
        TAKE(dxf, N * D);
        TAKE(dq, N * Hd);
        TAKE(dk, N * Kd);
        TAKE(dv, N * Kd);
        TAKE(dkh, N * Hd);
        TAKE(dvh, N * Hd);
        TAKE(dz, N * Hd);
        TAKE(dg, N * F);
        TAKE(du, N * F);
        TAKE(dtmp, c->gemma ? N * D : 0);
    } else {
        a->dres = a->dxn = a->dxf = a->dq = a->dk = a->dv = a->dkh = a->dvh = a->dz = a->dg = a->du = a->dtmp = NULL;
    }
    TAKE(x_keep, keep ? N * D * c->layers : 0);
    TAKE(x_sink, keep ? N * D : 0);
    TAKE(pos, N);
    TAKE(rows, N);
    TAKE(targets, N);
    TAKE(row_seq, N);
#undef TAKE
    return off;
}

static size_t attn_scratch_one(const cast_config *c, size_t n, size_t past);

int64_t cast_acts_bytes(const cast_config *c, int64_t tokens, int longest, int backward, int recompute, int threads) {
    cast_acts probe;
    memset(&probe, 0, sizeof probe);
    return (int64_t)acts_layout(&probe, c, tokens, backward && !recompute ? c->layers : 1, backward && recompute, backward,
                                attn_scratch_one(c, (size_t)longest, 0), threads);
}

/* Lays out every buffer in one block; grows when a larger batch comes. */
static void acts_reserve(cast_acts *a, const cast_model *m, int64_t N, int stored, int keep, int backward, size_t attn_per_thread) {
    const cast_config *c = &m->cfg;
    int threads = omp_get_max_threads();
    a->N = N;
    a->stored = stored;
    a->attn_per_thread = attn_per_thread;
    size_t off = acts_layout(a, c, N, stored, keep, backward, attn_per_thread, threads);
    if (off > a->bytes) {
        free(a->block);
        a->block = NULL;
        if (posix_memalign(&a->block, 64, off)) abort();
        a->bytes = off;
        acts_layout(a, c, N, stored, keep, backward, attn_per_thread, threads);
    }
    int rot = c->rope_dim ? c->rope_dim : c->head_dim;
    if (!a->rope_ready || a->rope_dim != c->head_dim || a->rope_rot != rot) {
        if (a->rope_ready) cast_rope_free(&a->rope);
        cast_rope_init(&a->rope, c->head_dim, rot, c->rope_theta, c->rope_llama3, c->rope_factor, c->rope_low_freq,
                       c->rope_high_freq, c->rope_orig_max);
        a->rope_ready = 1;
        a->rope_dim = c->head_dim;
        a->rope_rot = rot;
    }
}

/* ---- one forward pass ------------------------------------------------------ */

typedef struct pass {
    const cast_model *m;
    cast_acts *a;
    const cast_seqs *s;
    cast_kv *kv;        /* decoding: attend over the cache */
    const int *slot_of; /* sequence -> cache slot */
    int64_t N, base;    /* tokens, s->off[0] */
    int store;          /* keep every layer's activations for backward */
    int keep;           /* recompute instead: keep every layer's input only (a->x_keep) */
    int replay;         /* recomputing one layer for its backward: output to a->x_sink */
} pass;

static inline float *L_(float *buf, int64_t per_layer, int slot) { return buf + per_layer * slot; }

/* Rows [row0, ...) of a tensor whose rows hold `width` values (NULL stays NULL):
 * the q, k, v blocks of a fused qkv_proj, or gate and up of gate_up_proj. */
static inline float *rows_at(float *p, int64_t row0, int64_t width) { return p ? p + row0 * width : NULL; }

static float attn_scale(const cast_config *c) {
    return c->attn_scale > 0 ? (float)c->attn_scale : 1.0f / sqrtf((float)c->head_dim);
}

/* 1 for Gemma's (1 + w) norms, else 0 */
static float norm_add(const cast_config *c) { return c->gemma ? 1.0f : 0.0f; }

static int validate(const cast_model *m, const cast_seqs *s, int check_labels, cast_err *err) {
    int V = m->cfg.vocab;
    for (int b = 0; b < s->n; b++) {
        if (s->off[b + 1] <= s->off[b]) return cast_fail(err, "sequence %d is empty", b);
        for (int64_t t = s->off[b]; t < s->off[b + 1]; t++) {
            if (s->ids[t] < 0 || s->ids[t] >= V)
                return cast_fail(err, "sequence %d: token id %d is outside the model's vocabulary (%d)", b, s->ids[t], V);
            int lab = s->labels[t];
            if (check_labels && lab != CAST_IGNORE_LABEL && (lab < 0 || lab >= V))
                return cast_fail(err, "sequence %d: label %d is outside the model's vocabulary (%d)", b, lab, V);
        }
    }
    return 0;
}

/* Multiply-adds of the attention core, to decide whether to spread it over threads. */
static int64_t attention_work(const pass *P, int H, int d) {
    int64_t w = 0;
    for (int b = 0; b < P->s->n; b++) {
        int64_t n = P->s->off[b + 1] - P->s->off[b];
        int64_t past = P->kv ? P->kv->len[P->slot_of ? P->slot_of[b] : b] : 0;
        w += n * (past + n);
    }
    return w * H * d;
}

static void attention_layer(pass *P, int l, int sl) {
    const cast_config *c = &P->m->cfg;
    cast_acts *a = P->a;
    int H = c->heads, K = c->kv_heads, d = c->head_dim, group = H / K;
    int64_t N = P->N, Hd = (int64_t)H * d, Kd = (int64_t)K * d;
    float *q = L_(a->q, N * Hd, sl), *k = L_(a->k, N * Kd, sl), *v = L_(a->v, N * Kd, sl);
    float *z = L_(a->z, N * Hd, sl), *lse = L_(a->lse, N * H, sl);
    float scale = attn_scale(c), cap = (float)c->attn_softcap;
    int window = cast_config_window(c, l);
    cast_kv *kv = P->kv;
    if (kv) { /* append the new keys and values to each sequence's slot */
        for (int b = 0; b < P->s->n; b++) {
            int slot = P->slot_of ? P->slot_of[b] : b;
            int64_t r0 = P->s->off[b] - P->base, n = P->s->off[b + 1] - P->s->off[b];
            for (int g = 0; g < K; g++) {
                size_t cache = (((size_t)l * kv->slots + slot) * K + g) * kv->max_t * d;
                for (int64_t i = 0; i < n; i++) {
                    size_t at = cache + (size_t)(kv->len[slot] + i) * d;
                    memcpy(kv->k + at, k + (r0 + i) * Kd + g * d, sizeof(float) * d);
                    memcpy(kv->v + at, v + (r0 + i) * Kd + g * d, sizeof(float) * d);
                }
            }
        }
    }
    int pairs = P->s->n * H;
    int64_t attn_work = attention_work(P, H, d);
#pragma omp parallel for schedule(dynamic, 1) if (CAST_PARALLEL(attn_work))
    for (int ph = 0; ph < pairs; ph++) {
        int b = ph / H, h = ph % H, g = h / group;
        int64_t r0 = P->s->off[b] - P->base;
        int n = (int)(P->s->off[b + 1] - P->s->off[b]);
        float *scratch = a->attn_scratch + (size_t)omp_get_thread_num() * a->attn_per_thread;
        if (kv) {
            int slot = P->slot_of ? P->slot_of[b] : b;
            size_t cache = (((size_t)l * kv->slots + slot) * K + g) * kv->max_t * d;
            cast_attention_fwd(z + r0 * Hd + h * d, (int)Hd, NULL, q + r0 * Hd + h * d, (int)Hd, kv->k + cache, kv->v + cache,
                               d, n, kv->len[slot], window, d, scale, cap, scratch);
        } else {
            cast_attention_fwd(z + r0 * Hd + h * d, (int)Hd, lse + (int64_t)h * N + r0, q + r0 * Hd + h * d, (int)Hd,
                               k + r0 * Kd + g * d, v + r0 * Kd + g * d, (int)Kd, n, 0, window, d, scale, cap, scratch);
        }
    }
}

static int gates_active(const cast_model *m, int l) {
    for (int h = 0; h < m->cfg.heads; h++)
        if (m->gates[l * m->cfg.heads + h] != 1.0f) return 1;
    return 0;
}

/* Zg = Z ⊙ ξ into a->zg, or Z itself when every gate of the layer is 1. */
static const float *gated(const pass *P, int l, const float *z) {
    const cast_model *m = P->m;
    if (!gates_active(m, l)) return z;
    int H = m->cfg.heads, d = m->cfg.head_dim;
    int64_t Hd = (int64_t)H * d;
    float *zg = P->a->zg;
    const float *xi = m->gates + (size_t)l * H;
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(P->N * Hd))
    for (int64_t t = 0; t < P->N; t++)
        for (int h = 0; h < H; h++)
            for (int c = 0; c < d; c++) zg[t * Hd + h * d + c] = z[t * Hd + h * d + c] * xi[h];
    return zg;
}

/* Layer l: X (its input, slot sl) -> its output, the next layer's input
 * (or a->x_last after the last layer; a->x_sink when P->replay). */
static void forward_layer(pass *P, int l) {
    const cast_model *m = P->m;
    const cast_config *c = &m->cfg;
    cast_acts *a = P->a;
    int64_t N = P->N, D = c->hidden, F = c->inter, Hd = (int64_t)c->heads * c->head_dim, Kd = (int64_t)c->kv_heads * c->head_dim;
    const cast_tensor *T = m->tensors;
    float eps = (float)c->rms_eps, wadd = norm_add(c);
#define W(i) ((i) >= 0 ? T[i].data : NULL)
#define WM(i) cast_model_w(m, i)
#define WR(i, row0, width) cast_wmat_rows(cast_model_w(m, i), row0, width)
    int sl = P->store ? l : 0;
    const cast_layer_index *x = &m->layer[l];
    float *X = L_(a->x_in, N * D, sl), *Xn1 = L_(a->xn1, N * D, sl), *Xm = L_(a->x_mid, N * D, sl),
          *Xn2 = L_(a->xn2, N * D, sl);
    float *Q = L_(a->q, N * Hd, sl), *K = L_(a->k, N * Kd, sl), *V = L_(a->v, N * Kd, sl), *Z = L_(a->z, N * Hd, sl);
    float *G = L_(a->g, N * F, sl), *U = L_(a->u, N * F, sl);
    /* Qwen3 projects into q_pre / k_pre and normalizes each head into Q / K */
    float *Qlin = c->qk_norm ? L_(a->q_pre, N * Hd, sl) : Q, *Klin = c->qk_norm ? L_(a->k_pre, N * Kd, sl) : K;
    cast_rmsnorm_fwd(Xn1, L_(a->rstd1, N, sl), X, W(x->attn_norm), wadd, N, (int)D, eps);
    cast_linear_fwd(Qlin, Xn1, WR(x->wq, x->q_row0, D), rows_at(W(x->bq), x->q_row0, 1), N, (int)D, (int)Hd, 0);
    cast_linear_fwd(Klin, Xn1, WR(x->wk, x->k_row0, D), rows_at(W(x->bk), x->k_row0, 1), N, (int)D, (int)Kd, 0);
    cast_linear_fwd(V, Xn1, WR(x->wv, x->v_row0, D), rows_at(W(x->bv), x->v_row0, 1), N, (int)D, (int)Kd, 0);
    if (c->qk_norm) { /* [N·H, d] and [N·K, d] rows */
        cast_rmsnorm_fwd(Q, L_(a->rstd_q, N * c->heads, sl), Qlin, W(x->q_norm), 0.0f, N * c->heads, c->head_dim, eps);
        cast_rmsnorm_fwd(K, L_(a->rstd_k, N * c->kv_heads, sl), Klin, W(x->k_norm), 0.0f, N * c->kv_heads, c->head_dim, eps);
    }
    cast_rope_apply(&a->rope, Q, a->pos, N, c->heads, 0);
    cast_rope_apply(&a->rope, K, a->pos, N, c->kv_heads, 0);
    attention_layer(P, l, sl);
    if (c->gemma) { /* Xm = X + rmsnorm(Ao), Ao = Zg·Wo^T */
        float *Ao = L_(a->ao, N * D, sl);
        cast_linear_fwd(Ao, gated(P, l, Z), WM(x->wo), W(x->bo), N, (int)Hd, (int)D, 0);
        cast_rmsnorm_fwd(Xm, L_(a->rstd_ao, N, sl), Ao, W(x->post_attn_norm), wadd, N, (int)D, eps);
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(N * D))
        for (int64_t i = 0; i < N * D; i++) Xm[i] += X[i];
    } else {
        memcpy(Xm, X, sizeof(float) * (size_t)(N * D));
        cast_linear_fwd(Xm, gated(P, l, Z), WM(x->wo), W(x->bo), N, (int)Hd, (int)D, 1);
    }
    cast_rmsnorm_fwd(Xn2, L_(a->rstd2, N, sl), Xm, W(x->mlp_norm), wadd, N, (int)D, eps);
    cast_linear_fwd(G, Xn2, WR(x->wg, x->g_row0, D), rows_at(W(x->bg), x->g_row0, 1), N, (int)D, (int)F, 0);
    cast_linear_fwd(U, Xn2, WR(x->wu, x->u_row0, D), rows_at(W(x->bu), x->u_row0, 1), N, (int)D, (int)F, 0);
    if (c->gemma) cast_geglu_fwd(a->h, G, U, N * F);
    else cast_swiglu_fwd(a->h, G, U, N * F);
    /* the layer's output is the next layer's input (in place when not storing) */
    float *out = P->replay ? a->x_sink : l + 1 < c->layers ? (P->store ? L_(a->x_in, N * D, l + 1) : X) : a->x_last;
    if (c->gemma) { /* out = Xm + rmsnorm(Mo), Mo = h·Wd^T */
        float *Mo = L_(a->mo, N * D, sl);
        cast_linear_fwd(Mo, a->h, WM(x->wd), W(x->bd), N, (int)F, (int)D, 0);
        cast_rmsnorm_fwd(out, L_(a->rstd_mo, N, sl), Mo, W(x->post_mlp_norm), wadd, N, (int)D, eps);
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(N * D))
        for (int64_t i = 0; i < N * D; i++) out[i] += Xm[i];
    } else {
        memcpy(out, Xm, sizeof(float) * (size_t)(N * D));
        cast_linear_fwd(out, a->h, WM(x->wd), W(x->bd), N, (int)F, (int)D, 1);
    }
#undef W
#undef WM
#undef WR
}

static void forward_layers(pass *P) {
    const cast_model *m = P->m;
    const cast_config *c = &m->cfg;
    cast_acts *a = P->a;
    int64_t N = P->N, D = c->hidden;
    const cast_tensor *T = m->tensors;
    /* embeddings */
    float es = c->embed_scale, eps = (float)c->rms_eps, wadd = norm_add(c);
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(N * D))
    for (int64_t t = 0; t < N; t++) {
        float *xt = a->x_in + t * D;
        cast_model_read(m, m->embed, (int64_t)P->s->ids[P->base + t] * D, D, xt);
        if (es != 0.0f && es != 1.0f)
            for (int64_t k = 0; k < D; k++) xt[k] *= es;
    }
    cast_model_release(m, m->embed);
    for (int l = 0; l < c->layers; l++) {
        if (P->keep) memcpy(a->x_keep + (int64_t)l * N * D, a->x_in, sizeof(float) * (size_t)(N * D));
        forward_layer(P, l);
        cast_model_release_layer(m, l);
    }
    cast_rmsnorm_fwd(a->xf, a->rstdf, a->x_last, T[m->norm].data, wadd, N, (int)D, eps);
}

/* Positions of every token, and the scored rows (t with labels[t+1] scored). */
static int64_t prepare(pass *P) {
    const cast_seqs *s = P->s;
    cast_acts *a = P->a;
    int64_t rows = 0;
    for (int b = 0; b < s->n; b++) {
        int64_t r0 = s->off[b] - P->base, n = s->off[b + 1] - s->off[b];
        int past = P->kv ? P->kv->len[P->slot_of ? P->slot_of[b] : b] : 0;
        for (int64_t i = 0; i < n; i++) {
            a->pos[r0 + i] = past + (int)i;
            if (i + 1 < n && s->labels[s->off[b] + i + 1] != CAST_IGNORE_LABEL) {
                a->rows[rows] = (int)(r0 + i);
                a->targets[rows] = s->labels[s->off[b] + i + 1];
                a->row_seq[rows] = b;
                rows++;
            }
        }
    }
    return rows;
}

/* Forward: n·(past + n) scores; backward: 2·n·n (3·n·n with soft-capping). */
static size_t attn_scratch_one(const cast_config *c, size_t n, size_t past) {
    size_t per = c->attn_softcap > 0 ? 3 : 2;
    return n * (past + n) > per * n * n ? n * (past + n) : per * n * n;
}

static size_t attn_scratch_need(const cast_model *m, const cast_seqs *s, const cast_kv *kv, const int *slot_of) {
    size_t need = 1;
    for (int b = 0; b < s->n; b++) {
        size_t x = attn_scratch_one(&m->cfg, (size_t)(s->off[b + 1] - s->off[b]), kv ? (size_t)kv->len[slot_of ? slot_of[b] : b] : 0);
        need = x > need ? x : need;
    }
    return need;
}

static int max_position(const cast_seqs *s, const cast_kv *kv, const int *slot_of) {
    int mx = 0;
    for (int b = 0; b < s->n; b++) {
        int p = (int)(s->off[b + 1] - s->off[b]) + (kv ? kv->len[slot_of ? slot_of[b] : b] : 0);
        mx = p > mx ? p : mx;
    }
    return mx;
}

/* Cross-entropy over the scored rows, in chunks: logits of at most
 * LOGIT_CHUNK rows exist at a time. With grads, dXf and dWlm are filled. */
static void loss_chunks(pass *P, int64_t rows, float grad_scale, float *dlm, cast_loss *loss) {
    const cast_model *m = P->m;
    cast_acts *a = P->a;
    int D = m->cfg.hidden, V = m->cfg.vocab;
    cast_wmat Wlm = cast_model_w(m, m->lm_head);
    float *xc = a->xchunk, cap = (float)m->cfg.final_softcap;
    double sum = 0;
    if (grad_scale != 0.0f) memset(a->dxf, 0, sizeof(float) * (size_t)(P->N * D));
    for (int64_t r0 = 0; r0 < rows; r0 += LOGIT_CHUNK) {
        int64_t n = rows - r0 < LOGIT_CHUNK ? rows - r0 : LOGIT_CHUNK;
        for (int64_t i = 0; i < n; i++) memcpy(xc + i * D, a->xf + (int64_t)a->rows[r0 + i] * D, sizeof(float) * D);
        cast_linear_fwd(a->logit_chunk, xc, Wlm, NULL, n, D, V, 0);
        if (cap > 0) {
            cast_softcap_fwd(a->logit_chunk, n * V, cap);
            if (grad_scale != 0.0f) memcpy(a->capped, a->logit_chunk, sizeof(float) * (size_t)(n * V));
        }
        sum += cast_cross_entropy(a->logit_chunk, a->targets + r0, n, V, grad_scale, a->row_loss + r0);
        if (grad_scale != 0.0f) {
            if (cap > 0) cast_softcap_bwd(a->logit_chunk, a->capped, n * V, cap);
            /* dXf rows and dWlm from this chunk's dlogits */
            float *dxc = a->dxchunk;
            cast_linear_bwd(dxc, dlm, NULL, a->logit_chunk, xc, Wlm, n, D, V, 0);
            for (int64_t i = 0; i < n; i++) {
                float *dst = a->dxf + (int64_t)a->rows[r0 + i] * D;
                for (int k = 0; k < D; k++) dst[k] += dxc[i * D + k];
            }
        }
    }
    cast_model_release(m, m->lm_head);
    loss->sum = sum;
    loss->count = rows;
}

static void per_sequence(const pass *P, int64_t rows, double *seq_loss, int64_t *seq_count) {
    for (int b = 0; b < P->s->n; b++) {
        if (seq_loss) seq_loss[b] = 0;
        if (seq_count) seq_count[b] = 0;
    }
    for (int64_t r = 0; r < rows; r++) {
        if (seq_loss) seq_loss[P->a->row_seq[r]] += P->a->row_loss[r];
        if (seq_count) seq_count[P->a->row_seq[r]]++;
    }
}

static int begin(pass *P, const cast_model *m, cast_acts *a, const cast_seqs *s, cast_kv *kv, const int *slot_of, int store,
                 int backward, cast_err *err) {
    memset(P, 0, sizeof *P);
    if (s->n <= 0) return cast_fail(err, "no sequences to run");
    if (validate(m, s, !kv, err)) return -1;
    P->m = m;
    P->a = a;
    P->s = s;
    P->kv = kv;
    P->slot_of = slot_of;
    P->base = s->off[0];
    P->N = s->off[s->n] - s->off[0];
    if (store && cast_acts_recomputes(a, m, P->N)) store = 0, P->keep = 1;
    P->store = store;
    int max_pos = max_position(s, kv, slot_of);
    acts_reserve(a, m, P->N, store ? m->cfg.layers : 1, P->keep, backward, attn_scratch_need(m, s, kv, slot_of));
    cast_rope_reserve(&a->rope, max_pos + 1);
    return 0;
}

int cast_model_forward(const cast_model *m, cast_acts *a, const cast_seqs *s, float *logits, cast_loss *loss,
                       double *seq_loss, int64_t *seq_count, cast_err *err) {
    pass P;
    if (begin(&P, m, a, s, NULL, NULL, 0, 0, err)) return -1;
    int64_t rows = prepare(&P);
    forward_layers(&P);
    cast_loss l = {0, 0};
    if (logits) {
        int V = m->cfg.vocab;
        cast_linear_fwd(logits, a->xf, cast_model_w(m, m->lm_head), NULL, P.N, m->cfg.hidden, V, 0);
        cast_model_release(m, m->lm_head);
        if (m->cfg.final_softcap > 0) cast_softcap_fwd(logits, P.N * V, (float)m->cfg.final_softcap);
        double sum = 0;
        for (int64_t r = 0; r < rows; r++) {
            const float *x = logits + (int64_t)a->rows[r] * V;
            float mx = -INFINITY;
            for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
            double e = 0;
            for (int i = 0; i < V; i++) e += exp((double)(x[i] - mx));
            a->row_loss[r] = mx + log(e) - x[a->targets[r]];
            sum += a->row_loss[r];
        }
        l.sum = sum;
        l.count = rows;
    } else {
        loss_chunks(&P, rows, 0.0f, NULL, &l);
    }
    per_sequence(&P, rows, seq_loss, seq_count);
    if (loss) *loss = l;
    return 0;
}

/* ---- backward ------------------------------------------------------------- */

static int lowest_needed_layer(const cast_model *m, const cast_grads *gr) {
    if (gr->g[m->embed]) return 0;
    for (int l = 0; l < m->cfg.layers; l++) {
        if (gr->gates) return l;
        int idx[] = CAST_LAYER_TENSORS(&m->layer[l]);
        for (size_t k = 0; k < sizeof idx / sizeof idx[0]; k++)
            if (idx[k] >= 0 && gr->g[idx[k]]) return l;
    }
    return m->cfg.layers; /* nothing below the head */
}

static void backward_layer(pass *P, int l, cast_grads *gr) {
    const cast_model *m = P->m;
    const cast_config *c = &m->cfg;
    cast_acts *a = P->a;
    const cast_layer_index *x = &m->layer[l];
    int H = c->heads, K = c->kv_heads, d = c->head_dim, group = H / K;
    int64_t N = P->N, D = c->hidden, F = c->inter, Hd = (int64_t)H * d, Kd = (int64_t)K * d;
    const cast_tensor *T = m->tensors;
    int sl = P->store ? l : 0; /* the slot of this layer's activations (0 when recomputed) */
#define W(i) ((i) >= 0 ? T[i].data : NULL)
#define WM(i) cast_model_w(m, i)
#define WR(i, row0, width) cast_wmat_rows(cast_model_w(m, i), row0, width)
#define GR(i) ((i) >= 0 ? gr->g[i] : NULL)
    float *X = L_(a->x_in, N * D, sl), *Xn1 = L_(a->xn1, N * D, sl), *Xm = L_(a->x_mid, N * D, sl), *Xn2 = L_(a->xn2, N * D, sl);
    float *Q = L_(a->q, N * Hd, sl), *Kb = L_(a->k, N * Kd, sl), *V = L_(a->v, N * Kd, sl), *Z = L_(a->z, N * Hd, sl);
    float *lse = L_(a->lse, N * H, sl), *G = L_(a->g, N * F, sl), *U = L_(a->u, N * F, sl);
    float *dres = a->dres, wadd = norm_add(c);

    /* MLP: out = Xm + h·Wd^T, or Gemma's out = Xm + rmsnorm(Mo), Mo = h·Wd^T */
    if (c->gemma) cast_geglu_fwd(a->h, G, U, N * F);
    else cast_swiglu_fwd(a->h, G, U, N * F);
    const float *dMo = dres;
    if (c->gemma) { /* dMo [N, D] through the post-feedforward norm */
        memset(a->dtmp, 0, sizeof(float) * (size_t)(N * D));
        cast_rmsnorm_bwd(a->dtmp, GR(x->post_mlp_norm), dres, L_(a->mo, N * D, sl), W(x->post_mlp_norm), wadd,
                         L_(a->rstd_mo, N, sl), N, (int)D);
        dMo = a->dtmp;
    }
    /* h is dead once dWd is taken, so its buffer receives dG */
    float *dh = a->dg, *dG = a->h;
    cast_linear_bwd(dh, GR(x->wd), GR(x->bd), dMo, a->h, WM(x->wd), N, (int)F, (int)D, 0);
    if (c->gemma) cast_geglu_bwd(dG, a->du, dh, G, U, N * F);
    else cast_swiglu_bwd(dG, a->du, dh, G, U, N * F);
    cast_linear_bwd(a->dxn, rows_at(GR(x->wg), x->g_row0, D), rows_at(GR(x->bg), x->g_row0, 1), dG, Xn2,
                    WR(x->wg, x->g_row0, D), N, (int)D, (int)F, 0);
    cast_linear_bwd(a->dxn, rows_at(GR(x->wu), x->u_row0, D), rows_at(GR(x->bu), x->u_row0, 1), a->du, Xn2,
                    WR(x->wu, x->u_row0, D), N, (int)D, (int)F, 1);
    cast_rmsnorm_bwd(dres, GR(x->mlp_norm), a->dxn, Xm, W(x->mlp_norm), wadd, L_(a->rstd2, N, sl), N, (int)D);

    /* attention output: Xm = X + Zg·Wo^T, or Gemma's Xm = X + rmsnorm(Ao), Ao = Zg·Wo^T */
    const float *dAo = dres;
    if (c->gemma) {
        memset(a->dtmp, 0, sizeof(float) * (size_t)(N * D));
        cast_rmsnorm_bwd(a->dtmp, GR(x->post_attn_norm), dres, L_(a->ao, N * D, sl), W(x->post_attn_norm), wadd,
                         L_(a->rstd_ao, N, sl), N, (int)D);
        dAo = a->dtmp;
    }
    const float *Zg = gated(P, l, Z);
    cast_linear_bwd(a->dz, GR(x->wo), GR(x->bo), dAo, Zg, WM(x->wo), N, (int)Hd, (int)D, 0);
    if (gr->gates) {
        for (int h = 0; h < H; h++) {
            double s = 0;
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(N * d)) reduction(+ : s)
            for (int64_t t = 0; t < N; t++)
                for (int k = 0; k < d; k++) s += (double)Z[t * Hd + h * d + k] * a->dz[t * Hd + h * d + k];
            gr->gates[l * H + h] += (float)s;
        }
    }
    if (gates_active(m, l)) {
        const float *xi = m->gates + (size_t)l * H;
        for (int64_t t = 0; t < N; t++)
            for (int h = 0; h < H; h++)
                for (int k = 0; k < d; k++) a->dz[t * Hd + h * d + k] *= xi[h];
    }
    /* attention core, per (sequence, head); dK and dV per query head, summed per group after */
    float scale = attn_scale(c), cap = (float)c->attn_softcap;
    int window = cast_config_window(c, l);
    int pairs = P->s->n * H;
    int64_t attn_work = 2 * attention_work(P, H, d);
#pragma omp parallel for schedule(dynamic, 1) if (CAST_PARALLEL(attn_work))
    for (int ph = 0; ph < pairs; ph++) {
        int b = ph / H, h = ph % H, g = h / group;
        int64_t r0 = P->s->off[b] - P->base;
        int n = (int)(P->s->off[b + 1] - P->s->off[b]);
        float *scratch = a->attn_scratch + (size_t)omp_get_thread_num() * a->attn_per_thread;
        cast_attention_bwd(a->dq + r0 * Hd + h * d, (int)Hd, a->dkh + r0 * Hd + h * d, a->dvh + r0 * Hd + h * d, (int)Hd,
                           a->dz + r0 * Hd + h * d, Z + r0 * Hd + h * d, (int)Hd, lse + (int64_t)h * N + r0,
                           Q + r0 * Hd + h * d, Kb + r0 * Kd + g * d, V + r0 * Kd + g * d, (int)Kd, n, window, d, scale,
                           cap, scratch);
    }
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(N * Kd))
    for (int64_t t = 0; t < N; t++)
        for (int g = 0; g < K; g++)
            for (int k = 0; k < d; k++) {
                float sk = 0, sv = 0;
                for (int h = g * group; h < (g + 1) * group; h++) {
                    sk += a->dkh[t * Hd + h * d + k];
                    sv += a->dvh[t * Hd + h * d + k];
                }
                a->dk[t * Kd + g * d + k] = sk;
                a->dv[t * Kd + g * d + k] = sv;
            }
    cast_rope_apply(&a->rope, a->dq, a->pos, N, H, 1);
    cast_rope_apply(&a->rope, a->dk, a->pos, N, K, 1);
    float *dQlin = a->dq, *dKlin = a->dk;
    if (c->qk_norm) {
        /* through the per-head norms, into the per-head buffers (free once summed above) */
        dQlin = a->dkh;
        dKlin = a->dvh;
        memset(dQlin, 0, sizeof(float) * (size_t)(N * Hd));
        memset(dKlin, 0, sizeof(float) * (size_t)(N * Kd));
        cast_rmsnorm_bwd(dQlin, GR(x->q_norm), a->dq, L_(a->q_pre, N * Hd, sl), W(x->q_norm), 0.0f, L_(a->rstd_q, N * H, sl),
                         N * H, d);
        cast_rmsnorm_bwd(dKlin, GR(x->k_norm), a->dk, L_(a->k_pre, N * Kd, sl), W(x->k_norm), 0.0f, L_(a->rstd_k, N * K, sl),
                         N * K, d);
    }
    cast_linear_bwd(a->dxn, rows_at(GR(x->wq), x->q_row0, D), rows_at(GR(x->bq), x->q_row0, 1), dQlin, Xn1,
                    WR(x->wq, x->q_row0, D), N, (int)D, (int)Hd, 0);
    cast_linear_bwd(a->dxn, rows_at(GR(x->wk), x->k_row0, D), rows_at(GR(x->bk), x->k_row0, 1), dKlin, Xn1,
                    WR(x->wk, x->k_row0, D), N, (int)D, (int)Kd, 1);
    cast_linear_bwd(a->dxn, rows_at(GR(x->wv), x->v_row0, D), rows_at(GR(x->bv), x->v_row0, 1), a->dv, Xn1,
                    WR(x->wv, x->v_row0, D), N, (int)D, (int)Kd, 1);
    cast_rmsnorm_bwd(dres, GR(x->attn_norm), a->dxn, X, W(x->attn_norm), wadd, L_(a->rstd1, N, sl), N, (int)D);
#undef W
#undef WM
#undef WR
#undef GR
}

int cast_model_forward_backward(const cast_model *m, cast_acts *a, const cast_seqs *s, cast_grads *gr, double denom,
                                cast_loss *loss, cast_err *err) {
    pass P;
    if (begin(&P, m, a, s, NULL, NULL, 1, 1, err)) return -1;
    int64_t rows = prepare(&P);
    forward_layers(&P);
    if (denom <= 0) denom = (double)rows;
    cast_loss l = {0, 0};
    if (rows == 0) {
        if (loss) *loss = l;
        return 0; /* nothing scored: zero gradient */
    }
    int64_t D = m->cfg.hidden, N = P.N;
    loss_chunks(&P, rows, (float)(1.0 / denom), gr->g[m->lm_head], &l);
    /* final norm */
    memset(a->dres, 0, sizeof(float) * (size_t)(N * D));
    cast_rmsnorm_bwd(a->dres, gr->g[m->norm], a->dxf, a->x_last, m->tensors[m->norm].data, norm_add(&m->cfg), a->rstdf, N, (int)D);
    int lowest = lowest_needed_layer(m, gr);
    for (int layer = m->cfg.layers - 1; layer >= lowest; layer--) {
        if (P.keep) { /* this layer's activations again, from its kept input */
            memcpy(a->x_in, a->x_keep + (int64_t)layer * N * D, sizeof(float) * (size_t)(N * D));
            P.replay = 1;
            forward_layer(&P, layer);
            P.replay = 0;
        }
        backward_layer(&P, layer, gr);
        cast_model_release_layer(m, layer);
    }
    float *dE = gr->g[m->embed];
    if (dE) {
        /* tokens may repeat: accumulate serially over tokens, in parallel over columns */
        float es = m->cfg.embed_scale != 0.0f ? m->cfg.embed_scale : 1.0f;
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(N * D))
        for (int64_t k = 0; k < D; k++)
            for (int64_t t = 0; t < N; t++) dE[(int64_t)s->ids[P.base + t] * D + k] += es * a->dres[t * D + k];
    }
    if (loss) *loss = l;
    return 0;
}

/* ---- decoding ------------------------------------------------------------- */

int cast_kv_init(cast_kv *kv, const cast_model *m, int slots, int max_t, cast_err *err) {
    memset(kv, 0, sizeof *kv);
    if (slots <= 0 || max_t <= 0) return cast_fail(err, "KV cache needs at least one slot and one position");
    size_t n = (size_t)m->cfg.layers * slots * m->cfg.kv_heads * (size_t)max_t * m->cfg.head_dim;
    kv->slots = slots;
    kv->max_t = max_t;
    kv->len = cast_xcalloc((size_t)slots, sizeof(int));
    kv->k = cast_alloc_floats(n);
    kv->v = cast_alloc_floats(n);
    return 0;
}

void cast_kv_free(cast_kv *kv) {
    free(kv->len);
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

void cast_kv_reset(cast_kv *kv, int slot) { kv->len[slot] = 0; }

int cast_model_step(const cast_model *m, cast_acts *a, cast_kv *kv, const cast_seqs *s, const int *slot_of,
                    float *last_logits, cast_err *err) {
    for (int b = 0; b < s->n; b++) {
        int slot = slot_of ? slot_of[b] : b;
        if (slot < 0 || slot >= kv->slots) return cast_fail(err, "KV cache slot %d out of range", slot);
        if (kv->len[slot] + (s->off[b + 1] - s->off[b]) > kv->max_t)
            return cast_fail(err, "KV cache full: %d positions", kv->max_t);
    }
    pass P;
    if (begin(&P, m, a, s, kv, slot_of, 0, 0, err)) return -1;
    prepare(&P);
    forward_layers(&P);
    int D = m->cfg.hidden, V = m->cfg.vocab;
    cast_wmat Wlm = cast_model_w(m, m->lm_head);
    /* logits of each sequence's last token, LOGIT_CHUNK rows per product */
    for (int b0 = 0; b0 < s->n; b0 += LOGIT_CHUNK) {
        int n = s->n - b0 < LOGIT_CHUNK ? s->n - b0 : LOGIT_CHUNK;
        for (int i = 0; i < n; i++) {
            int64_t last = s->off[b0 + i + 1] - 1 - P.base;
            memcpy(a->xchunk + (int64_t)i * D, a->xf + last * D, sizeof(float) * D);
        }
        cast_linear_fwd(last_logits + (int64_t)b0 * V, a->xchunk, Wlm, NULL, n, D, V, 0);
    }
    cast_model_release(m, m->lm_head);
    if (m->cfg.final_softcap > 0) cast_softcap_fwd(last_logits, (int64_t)s->n * V, (float)m->cfg.final_softcap);
    for (int b = 0; b < s->n; b++) kv->len[slot_of ? slot_of[b] : b] += (int)(s->off[b + 1] - s->off[b]);
    return 0;
}

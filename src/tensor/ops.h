/* Kernels of the transformer, each forward next to its backward.
 * Shapes: N packed tokens, D hidden, F MLP width, d head_dim, V vocab.
 * Backward functions accumulate (+=) into parameter gradients so that
 * micro-batches add up; input gradients are written or added as noted. */
#ifndef CAST_TENSOR_OPS_H
#define CAST_TENSOR_OPS_H

#include <stdint.h>

#include "tensor/linear.h" /* the products: cast_linear_fwd / _bwd */

/* Loops smaller than this many elements run on one thread: below it, waking
 * the other threads costs more than it saves (decoding one token of a small
 * model is thousands of such loops). */
#define CAST_PARALLEL(work) ((int64_t)(work) >= 32768)

/* ---- RMSNorm: y = (w + w_add) ⊙ x / sqrt(mean(x²) + eps) ----------------
 * w_add is 0 for Llama-style norms and 1 for Gemma's (1 + w). Per-head q/k
 * norms (Qwen3) are the same op over [N·heads, d] rows. */
/* rstd[N] receives 1/sqrt(mean(x²)+eps) (may be NULL). */
void cast_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, float w_add, int64_t N, int D, float eps);
/* dx[N,D] += ...;  dw[D] += Σ_t dy ⊙ x·rstd (dw may be NULL). */
void cast_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, float w_add, const float *rstd,
                      int64_t N, int D);

/* ---- RoPE (Hugging Face rotate_half: pairs i and i + d/2) -------------- */
typedef struct cast_rope {
    int d;          /* head_dim: the stride of one head */
    int half;       /* rotary dims / 2: dims [0, 2·half) of each head rotate, the rest pass */
    int n_pos;      /* positions tabulated */
    float *inv_freq; /* [half] */
    float *cos, *sin; /* [n_pos, half] */
} cast_rope;
/* rot_dim: leading dims of each head that rotate (Phi-3 partial_rotary_factor), head_dim for all */
void cast_rope_init(cast_rope *r, int head_dim, int rot_dim, double theta, int llama3, double factor, double low_freq, double high_freq,
                    int orig_max);
/* Makes sure positions [0, n) are tabulated. */
void cast_rope_reserve(cast_rope *r, int n);
void cast_rope_free(cast_rope *r);
/* x[N, n_heads*d] rotated in place; pos[N] positions. inverse = 1 applies the
 * transpose (the backward pass). */
void cast_rope_apply(const cast_rope *r, float *x, const int *pos, int64_t N, int n_heads, int inverse);

/* ---- SwiGLU: h = silu(g) ⊙ u --------------------------------------------- */
void cast_swiglu_fwd(float *h, const float *g, const float *u, int64_t n);
/* dg, du from dh (written, not accumulated). */
void cast_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n);

/* ---- GeGLU (Gemma): h = gelu_tanh(g) ⊙ u,
 * gelu_tanh(x) = x/2 · (1 + tanh(sqrt(2/π)·(x + 0.044715 x³))) ------------- */
void cast_geglu_fwd(float *h, const float *g, const float *u, int64_t n);
void cast_geglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n);

/* ---- soft-capping (Gemma 2): y = c·tanh(x / c), in place over n values --- */
void cast_softcap_fwd(float *x, int64_t n, float cap);
/* dx *= 1 - (y / c)², y the capped values (dx and y may not alias). */
void cast_softcap_bwd(float *dx, const float *y, int64_t n, float cap);

/* ---- causal attention for one (sequence, head) --------------------------
 * q: [n, d] rows of the new tokens (stride qs); k, v: [past + n, d] (stride ks);
 * query i sees keys j with j <= past + i and, with a window W > 0, j > past + i - W.
 * Scores are scale·q·k, soft-capped to cap·tanh(s / cap) when cap > 0 (Gemma 2).
 * z: [n, d] (stride zs); lse[n] gets each row's log-sum-exp (may be NULL).
 * scratch: n * (past + n) floats. */
void cast_attention_fwd(float *z, int zs, float *lse, const float *q, int qs, const float *k, const float *v, int ks, int n,
                        int past, int window, int d, float scale, float cap, float *scratch);
/* Backward with the probabilities recomputed from lse (past = 0: training).
 * dq written; dk, dv written (per-head buffers, stride dks). scratch: 2*n*n,
 * 3*n*n with cap > 0. */
void cast_attention_bwd(float *dq, int qs, float *dk, float *dv, int dks, const float *dz, const float *z, int zs,
                        const float *lse, const float *q, const float *k, const float *v, int ks, int n, int window, int d,
                        float scale, float cap, float *scratch);

/* ---- cross-entropy over logits rows -------------------------------------
 * For each row r with target[r]: loss_r = logsumexp(logits_r) - logits_r[target].
 * If grad_scale != 0, logits are overwritten with (softmax - onehot) * grad_scale.
 * row_loss[rows] (optional) receives each loss_r. Returns Σ loss_r. */
double cast_cross_entropy(float *logits, const int *target, int64_t rows, int V, float grad_scale, double *row_loss);

#endif

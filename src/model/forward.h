/* The transformer's forward and backward passes over packed variable-length
 * sequences, and incremental decoding with a KV cache. */
#ifndef CAST_MODEL_FORWARD_H
#define CAST_MODEL_FORWARD_H

#include <stdint.h>

#include "base/error.h"
#include "model/model.h"
#include "model/seqs.h"

/* Gradient buffers, only for the tensors asked for (g[i] == NULL: frozen). */
typedef struct cast_grads {
    float **g;     /* [n_tensors] */
    float *gates;  /* [L*H] dL/dξ, or NULL */
    float *buffer; /* one allocation behind every g[i] */
    int64_t numel;
} cast_grads;

/* keep[i] != 0 keeps a gradient for tensor i; keep == NULL keeps all. */
void cast_grads_init(cast_grads *gr, const cast_model *m, const int *keep, int want_gate_grads);
void cast_grads_zero(cast_grads *gr);
/* Data parallelism: each rank's partial gradients (and gate gradients)
 * summed over all ranks, in place (dist/dist.h; nothing alone). */
void cast_grads_sum_ranks(cast_grads *gr);
void cast_grads_free(cast_grads *gr);

/* Activations and scratch, sized on demand; reuse one across calls. */
typedef struct cast_acts cast_acts;
cast_acts *cast_acts_new(void);
void cast_acts_free(cast_acts *a);
/* Activation recomputation for backward passes: instead of every layer's
 * activations (stored_bytes: ~55k floats per token per layer at 8B widths),
 * keep each layer's input and recompute the layer just before its backward:
 * one more forward pass of work, the same numbers bit for bit. mode 1 on,
 * 0 off, -1 (default) on when the activations would exceed
 * CAST_RECOMPUTE_ABOVE bytes. */
#define CAST_RECOMPUTE_ABOVE ((int64_t)1 << 30)
void cast_acts_set_recompute(cast_acts *a, int mode);
/* Bytes of activations and scratch for a pass over `tokens` tokens whose
 * longest sequence has `longest` tokens (exactly what the pass allocates). */
int64_t cast_acts_bytes(const cast_config *c, int64_t tokens, int longest, int backward, int recompute, int threads);
/* The automatic rule: recompute when the stored activations would exceed CAST_RECOMPUTE_ABOVE. */
int cast_recompute_auto(const cast_config *c, int64_t tokens);
/* Whether a backward pass over `tokens` tokens recomputes (the mode applied). */
int cast_acts_recomputes(const cast_acts *a, const cast_model *m, int64_t tokens);

/* Result of a forward pass over scored positions (labels[t+1] != -100). */
typedef struct cast_loss {
    double sum;     /* Σ cross-entropy over scored positions */
    int64_t count;  /* number of scored positions */
} cast_loss;

/* Forward only. logits (optional): [N, V] for every position. seq_loss and
 * seq_count (optional): per-sequence sums. */
int cast_model_forward(const cast_model *m, cast_acts *a, const cast_seqs *s, float *logits, cast_loss *loss,
                       double *seq_loss, int64_t *seq_count, cast_err *err);

/* Forward and backward: gr += ∂(Σ CE / denom)/∂θ for the kept tensors and the
 * gates (denom <= 0: this batch's own scored count, i.e. the mean). */
int cast_model_forward_backward(const cast_model *m, cast_acts *a, const cast_seqs *s, cast_grads *gr, double denom,
                                cast_loss *loss, cast_err *err);

/* ---- decoding ------------------------------------------------------------ */
typedef struct cast_kv {
    int slots, max_t;
    int *len;  /* [slots] tokens held */
    float *k, *v; /* [L][slots][K][max_t][d] */
} cast_kv;

int cast_kv_init(cast_kv *kv, const cast_model *m, int slots, int max_t, cast_err *err);
void cast_kv_free(cast_kv *kv);
void cast_kv_reset(cast_kv *kv, int slot);

/* Appends the tokens of s (sequence i goes to slot slot_of[i], or i when
 * slot_of is NULL) to the cache and writes the logits of each sequence's last
 * token to last_logits[s->n, V]. */
int cast_model_step(const cast_model *m, cast_acts *a, cast_kv *kv, const cast_seqs *s, const int *slot_of,
                    float *last_logits, cast_err *err);

#endif

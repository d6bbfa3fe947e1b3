/* A causal LM in memory: config, one table of f32 parameter tensors with
 * Hugging Face names (the named views), per-layer indices into it, and the
 * per-head output gates. F32 weights stay in the (private, copy-on-write)
 * mapping of their file; other dtypes are converted once into one buffer. */
#ifndef CAST_MODEL_MODEL_H
#define CAST_MODEL_MODEL_H

#include <stdint.h>

#include "base/error.h"
#include "model/config.h"
#include "model/safetensors.h"

typedef struct cast_tensor {
    char name[96];
    int ndim;          /* 1 or 2 */
    int64_t shape[2];  /* [out, in] for matrices, as nn.Linear stores them */
    int64_t numel;
    float *data;
} cast_tensor;

/* Indices into cast_model.tensors; -1 where the architecture has no such tensor.
 * Fused tensors (Phi-3) appear under several names: wq, wk and wv all index
 * qkv_proj, whose q, k and v rows start at q_row0, k_row0, v_row0; wg and wu
 * both index gate_up_proj (rows g_row0, u_row0). Unfused: every row0 is 0.
 * mlp_norm is the norm before the MLP (Gemma 2: pre_feedforward_layernorm);
 * post_attn_norm and post_mlp_norm are Gemma 2's norms of the attention and
 * MLP outputs (post_attention_layernorm, post_feedforward_layernorm). */
typedef struct cast_layer_index {
    int attn_norm, wq, bq, wk, bk, wv, bv, wo, bo;
    int mlp_norm, wg, bg, wu, bu, wd, bd;
    int q_norm, k_norm;               /* Qwen3: [d], shared by all heads of the layer */
    int post_attn_norm, post_mlp_norm; /* Gemma 2 */
    int q_row0, k_row0, v_row0, g_row0, u_row0; /* rows, not tensor indices */
} cast_layer_index;
/* The tensor indices of a layer (-1 entries included), for loops over them. */
#define CAST_LAYER_TENSORS(x)                                                                                               \
    {(x)->attn_norm, (x)->wq, (x)->bq, (x)->wk, (x)->bk, (x)->wv, (x)->bv, (x)->wo, (x)->bo, (x)->mlp_norm, (x)->wg, (x)->bg, \
     (x)->wu, (x)->bu, (x)->wd, (x)->bd, (x)->q_norm, (x)->k_norm, (x)->post_attn_norm, (x)->post_mlp_norm}

typedef struct cast_model {
    cast_config cfg;
    char *path;            /* the folder it came from (NULL when made in memory) */
    cast_dtype storage;    /* dtype of the weights on disk */
    int n_tensors;
    cast_tensor *tensors;  /* canonical order: embed, layers..., norm, lm_head */
    int embed, norm, lm_head; /* lm_head == embed when tied */
    cast_layer_index *layer;  /* [L] */
    float *buffer;         /* owned storage for tensors not mapped from files */
    cast_st_file *files;
    int n_files;
    float *gates;          /* [L*H] per-head output gates ξ, 1 by default */
} cast_model;

/* Loads a Hugging Face model folder (config.json + model.safetensors or shards). */
int cast_model_load(cast_model *m, const char *dir, cast_err *err);
/* The same checks from config.json and the safetensors headers only: names,
 * shapes, dtype (m->storage), every tensor's data NULL; reads no weights, so
 * it is cheap on any size of checkpoint (cast info). Free with cast_model_free. */
int cast_model_load_header(cast_model *m, const char *dir, cast_err *err);
/* A model with the config's shapes and random weights (std `scale`), for benchmarks and tests. */
void cast_model_init_random(cast_model *m, const cast_config *cfg, uint64_t seed, float scale);
void cast_model_free(cast_model *m);

/* Writes a model folder atomically: model.safetensors (dtype F32, F16 or BF16),
 * config.json (from the source, torch_dtype updated), and the tokenizer and
 * generation files of the source folder when present. */
int cast_model_save(const cast_model *m, const char *dir, cast_dtype dtype, cast_err *err);

int64_t cast_model_param_count(const cast_model *m); /* tied weights counted once */
int cast_model_find(const cast_model *m, const char *name); /* tensor index or -1 */

/* Head unit (DESIGN §3, docs/cast.md): the parameter slices that head (l, h)
 * owns, self-describing so that fused tensors need no special case:
 *   q:  rows [q_row0, q_row0 + d) of tensor wq (and of bq when >= 0)
 *   k:  rows [k_row0, k_row0 + d) of wk (and bk), shared by the head's group
 *   v:  rows [v_row0, v_row0 + d) of wv (and bv), shared by the group
 *   o:  columns [o_col0, o_col0 + d) of wo (rows of o_stride values)
 * Rows of wq/wk/wv hold `cols` values (the hidden size). For Phi-3, wq, wk
 * and wv are the same tensor (qkv_proj) and the rows are offset into it.
 * kv_row0 is the group's row in the K·d space of k and v (g·d); it equals
 * k_row0 and v_row0 only when q, k and v are separate tensors: index
 * tensors with k_row0 / v_row0. Per-layer norms (q_norm, k_norm, Gemma's
 * post-attention norm) are shared by all heads and belong to no head. */
typedef struct cast_head_slices {
    int wq, bq;   /* tensor indices (bq -1 if none) */
    int wk, bk, wv, bv;
    int wo;
    int q_row0, kv_row0, o_col0, d;
    int group;
    int k_row0, v_row0; /* rows inside wk / wv (offset inside a fused qkv_proj) */
    int cols;           /* values per row of wq, wk, wv (hidden) */
    int o_stride;       /* values per row of wo (heads·d) */
    int fused;          /* wq == wk == wv */
} cast_head_slices;
cast_head_slices cast_model_head(const cast_model *m, int layer, int head);

#endif

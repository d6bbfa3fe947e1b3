/* A causal LM in memory: config, one table of parameter tensors with
 * Hugging Face names (the named views), per-layer indices into it, and the
 * per-head output gates.
 *
 * Weights stay as the checkpoint stores them: F32 tensors in the (private,
 * copy-on-write) mapping of their file, and BF16/F16 matrices too, 16-bit,
 * never expanded (an 8B bf16 model takes 16 GB, not 32). Vectors (norms,
 * biases) and misaligned tensors are converted to f32 once. A 16-bit matrix
 * gets f32 values only when something must change it (training, resetting
 * a head, applying a delta): cast_model_master. The products read either
 * form (tensor/linear.h), in f32 or bf16 compute (m->bf16). */
#ifndef CAST_MODEL_MODEL_H
#define CAST_MODEL_MODEL_H

#include <stdint.h>

#include "base/error.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "tensor/linear.h"

typedef struct cast_tensor {
    char name[96];
    int ndim;          /* 1 or 2 */
    int64_t shape[2];  /* [out, in] for matrices, as nn.Linear stores them */
    int64_t numel;
    float *data;          /* f32 values, or NULL while the tensor is held 16-bit */
    const uint16_t *half; /* the stored 16-bit values (mapped) when data is NULL */
    cast_half half_type;
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
    int64_t buffer_numel;
    cast_st_file *files;
    int n_files;
    float *gates;          /* [L*H] per-head output gates ξ, 1 by default */
    int bf16;              /* products in bf16 (cast_model_set_compute) */
    int stream;            /* 16-bit weights leave the process after each use (cast_model_release) */
    float **master;        /* [n_tensors] f32 values made by cast_model_master (owned), or NULL */
    uint16_t *half_buffer; /* owned 16-bit values made by cast_model_hold_half, or NULL */
} cast_model;

/* How the products are computed. auto: bf16 when the checkpoint is stored
 * in bf16 and bf16 products run in hardware here (cast_linear_bf16_native),
 * else f32. f32: f32 products, bit for bit those of the weights expanded to
 * f32. bf16: inputs and weights rounded to bf16, f32 accumulation. */
typedef enum { CAST_COMPUTE_AUTO, CAST_COMPUTE_F32, CAST_COMPUTE_BF16 } cast_compute;
int cast_compute_parse(const char *s, cast_compute *out); /* "auto", "f32", "bf16"; -1 otherwise */
const char *cast_compute_name(cast_compute c);
/* Sets m->bf16 from the request. bf16 on a CPU without bf16 dot products is
 * an error, unless CAST_BF16_EMULATE=1 (the same numbers from f32
 * instructions, slowly: for tests of bf16 numerics on any machine). */
int cast_model_set_compute(cast_model *m, cast_compute c, cast_err *err);

/* Loads a Hugging Face model folder (config.json + model.safetensors or
 * shards), computing as `compute` says. */
int cast_model_load_as(cast_model *m, const char *dir, cast_compute compute, cast_err *err);
/* The same with compute auto. */
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
/* Values in the tensor table a config implies (no weights needed): all
 * matrices, all vectors, the matrices of one layer, the largest matrix,
 * and one layer's attention (q, k, v, o and their biases). */
typedef struct cast_shape_counts {
    int64_t matrices, vectors, layer_matrices, largest_matrix, layer_attention;
} cast_shape_counts;
void cast_model_shape_counts(const cast_config *c, cast_shape_counts *out);
/* Bytes the weights take in memory as held now (16-bit or f32, masters included). */
int64_t cast_model_weight_bytes(const cast_model *m);

/* Tensor i as the products read it (i < 0: an absent weight). */
cast_wmat cast_model_w(const cast_model *m, int i);
/* Gives tensor i f32 values (data) that may be changed, converting the
 * 16-bit ones once; the file's pages are handed back to the kernel. No-op
 * for a tensor that has f32 values. Returns data. */
float *cast_model_master(cast_model *m, int i);
/* Streaming (m->stream): a 16-bit tensor's mapped pages leave the process
 * once a pass is done with them, and come back from the page cache (or the
 * file) when next read, so resident memory holds a layer's weights at a
 * time, not the model's. The values never change (masters are separate
 * memory and are never released). No-op unless m->stream. */
void cast_model_release(const cast_model *m, int i);
/* Every matrix of layer l (cast_model_release of each). */
void cast_model_release_layer(const cast_model *m, int l);

/* Holds every f32 matrix as 16-bit values of `type` instead (rounded to
 * nearest even), as a checkpoint stored so would be held: benchmarks and
 * tests of 16-bit weights on models made in memory. Masters go too. */
void cast_model_hold_half(cast_model *m, cast_half type);

/* Values [k0, k0 + n) of tensor i as f32 into dst, whatever its form. */
void cast_model_read(const cast_model *m, int i, int64_t k0, int64_t n, float *dst);
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

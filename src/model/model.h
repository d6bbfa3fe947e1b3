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

/* Indices into cast_model.tensors; -1 where the architecture has no such tensor. */
typedef struct cast_layer_index {
    int attn_norm, wq, bq, wk, bk, wv, bv, wo, bo;
    int mlp_norm, wg, bg, wu, bu, wd, bd;
} cast_layer_index;

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
/* A model with the config's shapes and random weights (std `scale`), for benchmarks and tests. */
void cast_model_init_random(cast_model *m, const cast_config *cfg, uint64_t seed, float scale);
void cast_model_free(cast_model *m);

/* Writes a model folder atomically: model.safetensors (dtype F32, F16 or BF16),
 * config.json (from the source, torch_dtype updated), and the tokenizer and
 * generation files of the source folder when present. */
int cast_model_save(const cast_model *m, const char *dir, cast_dtype dtype, cast_err *err);

int64_t cast_model_param_count(const cast_model *m); /* tied weights counted once */
int cast_model_find(const cast_model *m, const char *name); /* tensor index or -1 */

/* Head unit (DESIGN §3): the parameter slices that head (l, h) owns. Each span is
 * rows [row0, row0+nrows) of a tensor, or columns [col0, col0+ncols) of o_proj. */
typedef struct cast_head_slices {
    int wq, bq;   /* tensor indices (bq -1 if none); rows [h*d, (h+1)*d) */
    int wk, bk, wv, bv; /* shared by the group: rows [g*d, (g+1)*d) */
    int wo;       /* columns [h*d, (h+1)*d) */
    int q_row0, kv_row0, o_col0, d;
    int group;
} cast_head_slices;
cast_head_slices cast_model_head(const cast_model *m, int layer, int head);

#endif

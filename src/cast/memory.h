/* Memory plans: what diagnose and tune will hold at their peak, from
 * config.json, the checkpoint's dtype and the settings alone, before any
 * weight is read (cast info, and the up-front check of diagnose and tune).
 * The parts are those the engine allocates (weights as held, activations
 * as cast_acts_bytes lays them out, gradient buffers, AdamW moments), plus
 * a fixed allowance for the runtime (OpenBLAS, OpenMP, tokenizer, code). */
#ifndef CAST_CAST_MEMORY_H
#define CAST_CAST_MEMORY_H

#include <stdint.h>

#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"

#define CAST_MEM_RUNTIME ((int64_t)400 << 20) /* the runtime allowance */
/* Streaming also leaves this much to the page cache the weights come back from. */
#define CAST_MEM_STREAM_CACHE ((int64_t)1 << 30)

typedef struct cast_mem_opts {
    cast_dtype storage; /* the checkpoint's dtype: 16-bit matrices stay 16-bit in memory */
    int micro_batch;    /* sequences per forward/backward */
    int seq_len;        /* tokens per sequence (the longest) */
    int threads;
    int grad_passes;    /* diagnose: layer groups of gradients (0: the fewest that fit the budget) */
    int64_t budget;     /* bytes the run may take (0: physical memory less 1 GiB for the system) */
    int kv_trained;     /* tune: k and v trained too (else q and o only) */
    int64_t trained;    /* tune: values of the trained tensors (0: the attention of every layer, per kv_trained) */
    int keep_before;    /* tune: the starting values kept for a delta (--delta) */
    int stream;         /* 16-bit weights streamed (model.h cast_model_release): 1, 0, or -1 = when needed */
    int half_moments;   /* tune: AdamW moments as bf16: 1, 0, or -1 = when needed */
} cast_mem_opts;

typedef struct cast_mem_plan {
    int64_t weights;     /* as held: 16-bit matrices, f32 vectors, f32 masters of what changes */
    int64_t activations; /* activations and scratch of one forward/backward */
    int64_t gradients;   /* diagnose: both sets, one layer group; tune: the trained tensors */
    int64_t optimizer;   /* tune: AdamW's two moments */
    int64_t runtime;     /* CAST_MEM_RUNTIME plus the products' scratch */
    int64_t total;
    int64_t budget;      /* as resolved */
    int grad_passes;     /* diagnose: as resolved */
    int recompute;       /* activations recomputed per layer */
    int stream;          /* 16-bit weights streamed: resident, a layer's (or the output matrix) at a time */
    int half_moments;    /* tune: bf16 AdamW moments */
    int fits;            /* total <= budget */
} cast_mem_plan;

void cast_mem_opts_default(cast_mem_opts *o);
/* Bytes of physical memory (0 if unknown). */
int64_t cast_mem_physical(void);
/* Weights as held for the given storage dtype. */
int64_t cast_mem_weights(const cast_config *c, cast_dtype storage);
void cast_mem_diagnose(const cast_config *c, const cast_mem_opts *o, cast_mem_plan *out);
void cast_mem_tune(const cast_config *c, const cast_mem_opts *o, cast_mem_plan *out);

#endif

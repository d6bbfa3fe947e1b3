/* config.json of a Hugging Face causal LM: the architectures cast runs. */
#ifndef CAST_MODEL_CONFIG_H
#define CAST_MODEL_CONFIG_H

#include <stddef.h>

#include "base/error.h"

typedef enum { CAST_ARCH_LLAMA, CAST_ARCH_MISTRAL, CAST_ARCH_QWEN2, CAST_ARCH_QWEN3, CAST_ARCH_PHI3, CAST_ARCH_GEMMA2 } cast_arch;

#define CAST_MAX_EOS 8
#define CAST_MAX_LAYERS 1024

typedef struct cast_config {
    cast_arch arch;
    char architecture[64]; /* "LlamaForCausalLM" */
    int vocab;             /* V */
    int hidden;            /* D */
    int inter;             /* F, MLP width */
    int layers;            /* L */
    int heads;             /* H query heads */
    int kv_heads;          /* K */
    int head_dim;          /* d */
    double rms_eps;
    double rope_theta;
    int rope_llama3; /* rope_scaling type llama3 */
    double rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_max;
    int max_pos;
    int tie_embeddings;
    int qkv_bias;       /* Qwen2 always; Llama attention_bias */
    int o_bias;         /* Llama attention_bias */
    int mlp_bias;       /* Llama mlp_bias */
    int sliding_window; /* 0: none */
    /* The fields below are 0 for Llama, Mistral and Qwen2, so that a config
     * built in code (benchmarks, the organism) needs none of them. */
    unsigned char full_layer[CAST_MAX_LAYERS]; /* 1: layer l ignores sliding_window (Gemma 2's odd layers) */
    int qk_norm;        /* Qwen3: RMSNorm over each head's q and k (q_norm, k_norm weights [d]) */
    int fused;          /* Phi-3: qkv_proj [(H+2K)d, D] and gate_up_proj [2F, D] */
    int rope_dim;       /* leading dims of each head that rotate (partial_rotary_factor); 0: head_dim */
    int gemma;          /* Gemma 2: (1 + w) RMSNorm, norms after attention and MLP, GeGLU (tanh GELU) */
    float embed_scale;  /* embeddings times this (Gemma 2: sqrt(hidden) in the model dtype); 0: 1 */
    double attn_scale;  /* softmax scale (Gemma 2: query_pre_attn_scalar^-0.5); 0: 1/sqrt(head_dim) */
    double attn_softcap, final_softcap; /* Gemma 2: x -> c tanh(x / c) on attention / final logits; 0: none */
    int bos_id;         /* -1 when absent */
    int eos_ids[CAST_MAX_EOS];
    int n_eos;
    char torch_dtype[16];
} cast_config;

/* Parses config.json text; `what` names the file in messages. */
int cast_config_parse(cast_config *c, const char *text, size_t n, const char *what, cast_err *err);
int cast_config_load(cast_config *c, const char *path, cast_err *err);
const char *cast_arch_name(cast_arch a);
/* Sliding window of layer l (0: full causal attention). */
int cast_config_window(const cast_config *c, int layer);

#endif

/* config.json of a Hugging Face causal LM: the architectures cast runs. */
#ifndef CAST_MODEL_CONFIG_H
#define CAST_MODEL_CONFIG_H

#include <stddef.h>

#include "base/error.h"

typedef enum { CAST_ARCH_LLAMA, CAST_ARCH_MISTRAL, CAST_ARCH_QWEN2 } cast_arch;

#define CAST_MAX_EOS 8

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
    int bos_id;         /* -1 when absent */
    int eos_ids[CAST_MAX_EOS];
    int n_eos;
    char torch_dtype[16];
} cast_config;

/* Parses config.json text; `what` names the file in messages. */
int cast_config_parse(cast_config *c, const char *text, size_t n, const char *what, cast_err *err);
int cast_config_load(cast_config *c, const char *path, cast_err *err);
const char *cast_arch_name(cast_arch a);

#endif

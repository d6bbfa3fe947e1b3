#include "model/config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/json.h"
#include "model/safetensors.h"

const char *cast_arch_name(cast_arch a) {
    switch (a) {
    case CAST_ARCH_LLAMA: return "LlamaForCausalLM";
    case CAST_ARCH_MISTRAL: return "MistralForCausalLM";
    case CAST_ARCH_QWEN2: return "Qwen2ForCausalLM";
    case CAST_ARCH_QWEN3: return "Qwen3ForCausalLM";
    case CAST_ARCH_PHI3: return "Phi3ForCausalLM";
    case CAST_ARCH_GEMMA2: return "Gemma2ForCausalLM";
    }
    return "?";
}

int cast_config_window(const cast_config *c, int layer) {
    return layer >= 0 && layer < CAST_MAX_LAYERS && c->full_layer[layer] ? 0 : c->sliding_window;
}

/* Upper bounds keep size arithmetic far from overflow on hostile input. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS CAST_MAX_LAYERS

static int req_dim(const cast_json *j, const char *key, int *out, int64_t max, const char *what, cast_err *err) {
    int64_t v;
    if (cast_json_req_int(j, key, &v, what, err)) return -1;
    if (v <= 0 || v > max) return cast_fail(err, "%s: \"%s\" = %lld is out of range", what, key, (long long)v);
    *out = (int)v;
    return 0;
}

/* eos_token_id: an id or a list of ids, each inside the vocabulary. */
static int parse_token_ids(const cast_json *j, const char *key, cast_config *c, const char *what, cast_err *err) {
    cast_json *v = cast_json_get(j, key);
    if (!v) return 0;
    int n = cast_json_is_number(v) ? 1 : cast_json_is_array(v) ? cast_json_array_size(v) : -1;
    if (n < 0) return cast_fail(err, "%s: \"%s\" must be an integer or a list", what, key);
    for (int i = 0; i < n && c->n_eos < CAST_MAX_EOS; i++) {
        cast_json *x = cast_json_is_number(v) ? v : cast_json_array_item(v, i);
        double d = cast_json_number(x);
        /* range first: converting an out-of-range double to int is undefined */
        if (!cast_json_is_number(x) || !(d >= 0 && d < c->vocab) || d != (double)(int)d)
            return cast_fail(err, "%s: \"%s\" must hold token ids inside the vocabulary (0..%d)", what, key, c->vocab - 1);
        c->eos_ids[c->n_eos++] = (int)d;
    }
    return 0;
}

/* A key present in the object, even with the value null (cast_json_get hides nulls). */
static int has_key(const cast_json *j, const char *key) {
    for (cast_json *e = cast_json_first(j); e; e = cast_json_next(e))
        if (!strcmp(cast_json_key(e), key)) return 1;
    return 0;
}

/* A soft-capping value: absent -> dflt, null -> 0 (none), else a positive number. */
static int opt_cap(const cast_json *j, const char *key, double dflt, double *out, const char *what, cast_err *err) {
    if (!has_key(j, key)) {
        *out = dflt;
        return 0;
    }
    if (cast_json_opt_number(j, key, 0.0, out, what, err)) return -1;
    if (*out < 0) return cast_fail(err, "%s: \"%s\" must be positive or null", what, key);
    return 0;
}

/* sqrt(hidden) as Gemma 2 multiplies the embeddings by it: a tensor of the
 * model's dtype, so rounded to bf16 / f16 (sqrt(3072) = 55.4256 becomes 55.5). */
static float gemma_embed_scale(int hidden, const char *torch_dtype) {
    float s = (float)sqrt((double)hidden);
    if (!strcmp(torch_dtype, "bfloat16")) return cast_bf16_to_f32(cast_f32_to_bf16(s));
    if (!strcmp(torch_dtype, "float16")) return cast_f16_to_f32(cast_f32_to_f16(s));
    return s;
}

/* Gemma 2 and Phi-3 specifics (Qwen3's are its q/k norms and defaults). */
static int parse_gemma2(const cast_json *j, cast_config *c, const char *what, cast_err *err) {
    double qpas;
    const char *act = NULL;
    c->gemma = 1;
    if (cast_json_opt_string(j, "hidden_activation", &act, what, err)) return -1;
    if (act && strcmp(act, "gelu_pytorch_tanh"))
        return cast_fail(err, "%s: hidden_activation \"%s\" is not supported for Gemma 2 (supported: gelu_pytorch_tanh)", what, act);
    if (cast_json_opt_number(j, "query_pre_attn_scalar", 256.0, &qpas, what, err) ||
        opt_cap(j, "attn_logit_softcapping", 50.0, &c->attn_softcap, what, err) ||
        opt_cap(j, "final_logit_softcapping", 30.0, &c->final_softcap, what, err))
        return -1;
    if (!(qpas > 0)) return cast_fail(err, "%s: query_pre_attn_scalar must be positive", what);
    c->attn_scale = 1.0 / sqrt(qpas);
    int64_t v;
    if (cast_json_opt_int(j, "sliding_window", has_key(j, "sliding_window") ? 0 : 4096, &v, what, err)) return -1;
    if (v < 0) return cast_fail(err, "%s: sliding_window must be positive", what);
    c->sliding_window = v > (1 << 30) ? 0 : (int)v;
    /* layer_types when given, else sliding on even layers (0, 2, ...), full on odd ones */
    cast_json *types = cast_json_get(j, "layer_types");
    if (types && (!cast_json_is_array(types) || cast_json_array_size(types) != c->layers))
        return cast_fail(err, "%s: \"layer_types\" must list one type per layer (%d)", what, c->layers);
    for (int l = 0; l < c->layers; l++) {
        const char *t = types ? cast_json_string(cast_json_array_item(types, l)) : NULL;
        if (types && (!t || (strcmp(t, "sliding_attention") && strcmp(t, "full_attention"))))
            return cast_fail(err, "%s: layer_types[%d] must be \"sliding_attention\" or \"full_attention\"", what, l);
        c->full_layer[l] = types ? !strcmp(t, "full_attention") : (l % 2 == 1);
    }
    return 0;
}

static int parse_phi3(const cast_json *j, cast_config *c, const char *what, cast_err *err) {
    double f;
    c->fused = 1;
    if (cast_json_opt_number(j, "partial_rotary_factor", 1.0, &f, what, err)) return -1;
    int rot = f > 0 && f <= 1 ? (int)(c->head_dim * f) : 0; /* range first: a huge double to int is undefined */
    if (rot < 2 || rot % 2)
        return cast_fail(err, "%s: partial_rotary_factor %g must be in (0, 1] and give an even number of rotary dims of head_dim %d",
                         what, f, c->head_dim);
    c->rope_dim = rot == c->head_dim ? 0 : rot;
    int64_t v;
    if (cast_json_opt_int(j, "sliding_window", 0, &v, what, err)) return -1;
    if (v < 0) return cast_fail(err, "%s: sliding_window must be positive", what);
    c->sliding_window = v > (1 << 30) ? 0 : (int)v;
    return 0;
}

int cast_config_parse(cast_config *c, const char *text, size_t n, const char *what, cast_err *err) {
    memset(c, 0, sizeof *c);
    cast_json *j = cast_json_parse(text, n, what, err);
    if (!j) return -1;
    int rc = -1;
    if (!cast_json_is_object(j)) {
        cast_fail(err, "%s: expected a JSON object", what);
        goto done;
    }
    cast_json *archs = cast_json_get(j, "architectures");
    const char *arch = cast_json_is_array(archs) ? cast_json_string(cast_json_array_item(archs, 0)) : NULL;
    if (!arch) {
        cast_fail(err, "%s: missing \"architectures\"", what);
        goto done;
    }
    if (!strcmp(arch, "LlamaForCausalLM")) c->arch = CAST_ARCH_LLAMA;
    else if (!strcmp(arch, "MistralForCausalLM")) c->arch = CAST_ARCH_MISTRAL;
    else if (!strcmp(arch, "Qwen2ForCausalLM")) c->arch = CAST_ARCH_QWEN2;
    else if (!strcmp(arch, "Qwen3ForCausalLM")) c->arch = CAST_ARCH_QWEN3;
    else if (!strcmp(arch, "Phi3ForCausalLM")) c->arch = CAST_ARCH_PHI3;
    else if (!strcmp(arch, "Gemma2ForCausalLM")) c->arch = CAST_ARCH_GEMMA2;
    else {
        cast_fail(err,
                  "%s: unsupported architecture \"%s\" (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
                  "Qwen3ForCausalLM, Phi3ForCausalLM, Gemma2ForCausalLM)",
                  what, arch);
        goto done;
    }
    snprintf(c->architecture, sizeof c->architecture, "%s", arch);

    if (req_dim(j, "vocab_size", &c->vocab, 1 << 24, what, err) || req_dim(j, "hidden_size", &c->hidden, MAX_DIM, what, err) ||
        req_dim(j, "intermediate_size", &c->inter, MAX_DIM, what, err) ||
        req_dim(j, "num_hidden_layers", &c->layers, MAX_LAYERS, what, err) ||
        req_dim(j, "num_attention_heads", &c->heads, 4096, what, err))
        goto done;
    int64_t v;
    if (cast_json_opt_int(j, "num_key_value_heads", c->heads, &v, what, err)) goto done;
    if (v <= 0 || v > c->heads || c->heads % v) {
        cast_fail(err, "%s: num_key_value_heads = %lld must divide num_attention_heads = %d", what, (long long)v, c->heads);
        goto done;
    }
    c->kv_heads = (int)v;
    /* head_dim when absent: Qwen3Config and Gemma2Config default to 128 and 256, the others to hidden / heads */
    int64_t hd_default = c->arch == CAST_ARCH_QWEN3 ? 128 : c->arch == CAST_ARCH_GEMMA2 ? 256 : 0;
    if (cast_json_opt_int(j, "head_dim", hd_default, &v, what, err)) goto done;
    if (v == 0) {
        if (c->hidden % c->heads) {
            cast_fail(err, "%s: hidden_size %d is not a multiple of num_attention_heads %d", what, c->hidden, c->heads);
            goto done;
        }
        v = c->hidden / c->heads;
    }
    if (v <= 0 || v > 4096 || v % 2) {
        cast_fail(err, "%s: head_dim = %lld must be a positive even number", what, (long long)v);
        goto done;
    }
    c->head_dim = (int)v;
    if ((int64_t)c->heads * c->head_dim > MAX_DIM) {
        cast_fail(err, "%s: heads x head_dim is too large", what);
        goto done;
    }
    if (cast_json_opt_number(j, "rms_norm_eps", c->arch == CAST_ARCH_PHI3 ? 1e-5 : 1e-6, &c->rms_eps, what, err) ||
        cast_json_opt_number(j, "rope_theta", 10000.0, &c->rope_theta, what, err))
        goto done;
    if (c->rms_eps <= 0 || c->rope_theta <= 0) {
        cast_fail(err, "%s: rms_norm_eps and rope_theta must be positive", what);
        goto done;
    }
    if (cast_json_opt_int(j, "max_position_embeddings", 2048, &v, what, err)) goto done;
    c->max_pos = v > 0 && v < (1 << 24) ? (int)v : 2048;

    cast_json *rs = cast_json_get(j, "rope_scaling");
    if (rs) {
        const char *type = NULL;
        if (!cast_json_is_object(rs)) {
            cast_fail(err, "%s: \"rope_scaling\" must be an object", what);
            goto done;
        }
        if (cast_json_opt_string(rs, "rope_type", &type, what, err)) goto done;
        if (!type && cast_json_opt_string(rs, "type", &type, what, err)) goto done;
        if (!type || strcmp(type, "llama3")) {
            if (type && !strcmp(type, "default")) goto rope_done;
            cast_fail(err, "%s: unsupported rope_scaling type \"%s\" (supported: llama3)%s", what, type ? type : "?",
                      type && (!strcmp(type, "longrope") || !strcmp(type, "su") || !strcmp(type, "yarn"))
                          ? "; long-context Phi-3 checkpoints are not supported, use a 4k-context one"
                          : "");
            goto done;
        }
        c->rope_llama3 = 1;
        int64_t orig;
        if (cast_json_opt_number(rs, "factor", 8.0, &c->rope_factor, what, err) ||
            cast_json_opt_number(rs, "low_freq_factor", 1.0, &c->rope_low_freq, what, err) ||
            cast_json_opt_number(rs, "high_freq_factor", 4.0, &c->rope_high_freq, what, err) ||
            cast_json_opt_int(rs, "original_max_position_embeddings", 8192, &orig, what, err))
            goto done;
        if (c->rope_factor <= 0 || c->rope_high_freq <= c->rope_low_freq || orig <= 0) {
            cast_fail(err, "%s: invalid llama3 rope_scaling parameters", what);
            goto done;
        }
        c->rope_orig_max = (int)orig;
    }
rope_done:;
    int attention_bias = 0;
    if (cast_json_opt_bool(j, "tie_word_embeddings", c->arch == CAST_ARCH_GEMMA2, &c->tie_embeddings, what, err) ||
        cast_json_opt_bool(j, "attention_bias", 0, &attention_bias, what, err) ||
        cast_json_opt_bool(j, "mlp_bias", 0, &c->mlp_bias, what, err))
        goto done;
    if (c->arch == CAST_ARCH_QWEN2 || c->arch == CAST_ARCH_QWEN3) {
        /* Qwen2 always has q/k/v biases and none on o; Qwen3 has q/k norms, and biases on q/k/v/o with attention_bias */
        c->qkv_bias = c->arch == CAST_ARCH_QWEN2 ? 1 : attention_bias;
        c->o_bias = c->arch == CAST_ARCH_QWEN2 ? 0 : attention_bias;
        c->qk_norm = c->arch == CAST_ARCH_QWEN3;
        c->mlp_bias = 0;
        int use_sw = 0;
        if (cast_json_opt_bool(j, "use_sliding_window", 0, &use_sw, what, err)) goto done;
        if (use_sw) {
            cast_fail(err, "%s: use_sliding_window = true is not supported for %s", what, arch);
            goto done;
        }
    } else if (c->arch == CAST_ARCH_LLAMA) {
        c->qkv_bias = c->o_bias = attention_bias;
    } else if (c->arch == CAST_ARCH_GEMMA2) {
        c->qkv_bias = c->o_bias = attention_bias;
        c->mlp_bias = 0;
        if (parse_gemma2(j, c, what, err)) goto done;
    } else if (c->arch == CAST_ARCH_PHI3) {
        c->mlp_bias = 0; /* qkv_proj, o_proj, gate_up_proj and down_proj have no biases */
        if (parse_phi3(j, c, what, err)) goto done;
    } else {
        c->mlp_bias = 0;
        if (cast_json_opt_int(j, "sliding_window", 0, &v, what, err)) goto done;
        if (v < 0) {
            cast_fail(err, "%s: sliding_window must be positive", what);
            goto done;
        }
        c->sliding_window = v > (1 << 30) ? 0 : (int)v;
    }
    if (cast_json_opt_int(j, "bos_token_id", -1, &v, what, err)) goto done;
    c->bos_id = (v >= 0 && v < c->vocab) ? (int)v : -1;
    if (parse_token_ids(j, "eos_token_id", c, what, err)) goto done;
    const char *dt = NULL;
    if (cast_json_opt_string(j, "torch_dtype", &dt, what, err)) goto done;
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", dt ? dt : "float32");
    if (c->gemma) c->embed_scale = gemma_embed_scale(c->hidden, c->torch_dtype);
    rc = 0;
done:
    cast_json_free(j);
    return rc;
}

int cast_config_load(cast_config *c, const char *path, cast_err *err) {
    char *text;
    size_t n;
    if (cast_read_file(path, &text, &n, err)) return -1;
    int rc = cast_config_parse(c, text, n, path, err);
    free(text);
    return rc;
}

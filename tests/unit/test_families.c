/* Qwen3, Phi-3 and Gemma 2 pieces the float64 reference cases cannot pin down
 * on their own: config.json defaults and refusals as transformers reads them,
 * Gemma's embedding scale in the model dtype (its effect on tiny models is
 * below the reference tolerances), partial RoPE, the new kernels' backward
 * against finite differences, and a model built in memory saved and loaded
 * back with the same config and the same logits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "check.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/seqs.h"
#include "tensor/ops.h"

static cast_err err;

static int parse(cast_config *c, const char *json) { return cast_config_parse(c, json, strlen(json), "config.json", &err); }

#define SIZES "\"vocab_size\": 64, \"hidden_size\": 3072, \"intermediate_size\": 64, \"num_hidden_layers\": 4, \"num_attention_heads\": 8"

static void test_config(void) {
    cast_config c;
    /* Gemma 2 with every field at its Gemma2Config default */
    CHECK(parse(&c, "{\"architectures\": [\"Gemma2ForCausalLM\"], " SIZES ", \"torch_dtype\": \"bfloat16\"}") == 0);
    CHECK(c.arch == CAST_ARCH_GEMMA2 && c.gemma && c.head_dim == 256 && c.tie_embeddings);
    CHECK(c.embed_scale == 55.5f); /* sqrt(3072) = 55.4256 as a bf16 tensor */
    CHECK_NEAR(c.attn_scale, 1.0 / 16.0, 1e-15);
    CHECK(c.attn_softcap == 50.0 && c.final_softcap == 30.0 && c.sliding_window == 4096);
    CHECK(cast_config_window(&c, 0) == 4096 && cast_config_window(&c, 1) == 0 && cast_config_window(&c, 2) == 4096);
    CHECK(parse(&c, "{\"architectures\": [\"Gemma2ForCausalLM\"], " SIZES ", \"torch_dtype\": \"float32\"}") == 0);
    CHECK(c.embed_scale == (float)sqrt(3072.0));
    /* null caps are none; layer_types wins over the even/odd default */
    CHECK(parse(&c, "{\"architectures\": [\"Gemma2ForCausalLM\"], " SIZES ", \"final_logit_softcapping\": null, "
                    "\"attn_logit_softcapping\": null, \"query_pre_attn_scalar\": 144, \"sliding_window\": 8, "
                    "\"layer_types\": [\"full_attention\", \"full_attention\", \"sliding_attention\", \"full_attention\"]}") == 0);
    CHECK(c.attn_softcap == 0 && c.final_softcap == 0);
    CHECK_NEAR(c.attn_scale, 1.0 / 12.0, 1e-15);
    CHECK(cast_config_window(&c, 0) == 0 && cast_config_window(&c, 2) == 8 && cast_config_window(&c, 3) == 0);
    CHECK(parse(&c, "{\"architectures\": [\"Gemma2ForCausalLM\"], " SIZES ", \"hidden_activation\": \"gelu\"}") != 0);
    CHECK(strstr(err.msg, "config.json: hidden_activation \"gelu\"") != NULL);
    CHECK(parse(&c, "{\"architectures\": [\"Gemma2ForCausalLM\"], " SIZES ", \"layer_types\": [\"x\", \"y\", \"z\", \"w\"]}") != 0);
    CHECK(parse(&c, "{\"architectures\": [\"Gemma2ForCausalLM\"], " SIZES ", \"attn_logit_softcapping\": -1}") != 0);

    /* Qwen3: head_dim 128 when absent, q/k norms, biases only with attention_bias (o too) */
    CHECK(parse(&c, "{\"architectures\": [\"Qwen3ForCausalLM\"], " SIZES "}") == 0);
    CHECK(c.head_dim == 128 && c.qk_norm && !c.qkv_bias && !c.o_bias && !c.tie_embeddings && !c.gemma);
    CHECK(parse(&c, "{\"architectures\": [\"Qwen3ForCausalLM\"], " SIZES ", \"attention_bias\": true, \"head_dim\": 64}") == 0);
    CHECK(c.head_dim == 64 && c.qkv_bias && c.o_bias);
    CHECK(parse(&c, "{\"architectures\": [\"Qwen3ForCausalLM\"], " SIZES ", \"use_sliding_window\": true}") != 0);

    /* Phi-3: fused, eps 1e-5 by default, partial rotary, long-context rope refused in one line */
    CHECK(parse(&c, "{\"architectures\": [\"Phi3ForCausalLM\"], " SIZES ", \"partial_rotary_factor\": 0.75}") == 0);
    CHECK(c.fused && c.rms_eps == 1e-5 && c.head_dim == 384 && c.rope_dim == 288);
    CHECK(parse(&c, "{\"architectures\": [\"Phi3ForCausalLM\"], " SIZES ", \"rope_scaling\": {\"type\": \"su\"}}") != 0);
    CHECK(strstr(err.msg, "config.json: unsupported rope_scaling type \"su\"") != NULL && !strchr(err.msg, '\n'));
    CHECK(parse(&c, "{\"architectures\": [\"Phi3ForCausalLM\"], " SIZES ", \"partial_rotary_factor\": 1.5}") != 0);
}

/* Partial RoPE: the first rot dims of each head turn, the others pass; rows keep their norm. */
static void test_partial_rope(void) {
    cast_rope r;
    int d = 8, rot = 4, pos[2] = {0, 5};
    cast_rope_init(&r, d, rot, 10000.0, 0, 0, 0, 0, 0);
    cast_rope_reserve(&r, 8);
    float x[2 * 2 * 8], x0[2 * 2 * 8];
    for (int i = 0; i < 32; i++) x[i] = x0[i] = (float)(i % 7) - 3.0f;
    cast_rope_apply(&r, x, pos, 2, 2, 0);
    for (int h = 0; h < 4; h++) {
        float *v = x + h * d, *v0 = x0 + h * d;
        double n = 0, n0 = 0;
        for (int i = 0; i < rot; i++) n += v[i] * v[i], n0 += v0[i] * v0[i];
        CHECK_NEAR(n, n0, 1e-4);
        for (int i = rot; i < d; i++) CHECK(v[i] == v0[i]);
    }
    CHECK(memcmp(x, x0, sizeof(float) * 8) == 0); /* position 0 does not turn */
    CHECK(memcmp(x + 16, x0 + 16, sizeof(float) * 4) != 0);
    /* frequencies over the rotating dims: theta^(-2i/rot) */
    CHECK_NEAR(r.inv_freq[1], 1.0 / 100.0, 1e-7);
    cast_rope_apply(&r, x, pos, 2, 2, 1);
    for (int i = 0; i < 32; i++) CHECK_NEAR(x[i], x0[i], 1e-5);
    cast_rope_free(&r);
}

/* GeGLU, soft-capping and (1 + w) RMSNorm backward against central differences. */
static void test_kernels(void) {
    float g[5] = {-2.5f, -0.7f, 0.0f, 0.4f, 3.0f}, u[5] = {0.3f, -1.2f, 0.8f, 2.0f, -0.5f}, dh[5] = {1, -2, 0.5f, 1.5f, -1};
    float dg[5], du[5], h[5];
    cast_geglu_bwd(dg, du, dh, g, u, 5);
    for (int i = 0; i < 5; i++) {
        double e = 1e-3, hp, hm;
        float gp = g[i] + (float)e, gm = g[i] - (float)e;
        cast_geglu_fwd(h, &gp, &u[i], 1), hp = h[0];
        cast_geglu_fwd(h, &gm, &u[i], 1), hm = h[0];
        CHECK_NEAR(dg[i], dh[i] * (hp - hm) / (2 * e), 2e-3);
        cast_geglu_fwd(h, &g[i], &u[i], 1);
        CHECK_NEAR(du[i] * u[i], dh[i] * h[0], 1e-5);
        /* gelu_tanh(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
        double x = g[i], want = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))) * u[i];
        CHECK_NEAR(h[0], want, 1e-6);
    }
    float y[5], dy[5];
    for (int i = 0; i < 5; i++) y[i] = g[i] * 3.0f, dy[i] = 1.0f;
    cast_softcap_fwd(y, 5, 2.0f);
    cast_softcap_bwd(dy, y, 5, 2.0f);
    for (int i = 0; i < 5; i++) {
        CHECK_NEAR(y[i], 2.0 * tanh(g[i] * 3.0 / 2.0), 1e-6);
        double t = tanh(g[i] * 3.0 / 2.0);
        CHECK_NEAR(dy[i], 1 - t * t, 1e-6);
    }
    /* (1 + w) norm: dx and dw of sum(c ⊙ y) */
    int D = 5;
    float w[5] = {-0.2f, 0.1f, 0.0f, 0.3f, -0.1f}, c[5] = {1, -1, 2, 0.5f, -0.3f}, dx[5] = {0}, dw[5] = {0}, rstd;
    cast_rmsnorm_fwd(y, &rstd, u, w, 1.0f, 1, D, 1e-6f);
    cast_rmsnorm_bwd(dx, dw, c, u, w, 1.0f, &rstd, 1, D);
    for (int i = 0; i < D; i++) {
        float keep = u[i];
        double e = 1e-3, lp = 0, lm = 0;
        u[i] = keep + (float)e;
        cast_rmsnorm_fwd(y, NULL, u, w, 1.0f, 1, D, 1e-6f);
        for (int k = 0; k < D; k++) lp += c[k] * y[k];
        u[i] = keep - (float)e;
        cast_rmsnorm_fwd(y, NULL, u, w, 1.0f, 1, D, 1e-6f);
        for (int k = 0; k < D; k++) lm += c[k] * y[k];
        u[i] = keep;
        CHECK_NEAR(dx[i], (lp - lm) / (2 * e), 2e-3);
        CHECK_NEAR(dw[i], c[i] * u[i] * rstd, 1e-5);
    }
}

/* A model made in memory (no source folder) is saved with a config.json that
 * loads back to the same config, and gives the same logits. */
static void roundtrip(const cast_config *cfg, const char *name) {
    cast_model m, m2;
    cast_model_init_random(&m, cfg, 7, 0.2f);
    const char *tmp = getenv("CAST_TEST_TMP");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/families-%s", tmp ? tmp : "/tmp", name);
    CHECK_MSG(cast_model_save(&m, dir, CAST_F32, &err) == 0, "save %s: %s", name, err.msg);
    CHECK_MSG(cast_model_load(&m2, dir, &err) == 0, "load %s: %s", name, err.msg);
    if (m2.n_tensors == 0) return;
    const cast_config *a = &m.cfg, *b = &m2.cfg;
    CHECK_MSG(a->arch == b->arch && a->head_dim == b->head_dim && a->qk_norm == b->qk_norm && a->fused == b->fused &&
                  a->rope_dim == b->rope_dim && a->gemma == b->gemma && a->sliding_window == b->sliding_window &&
                  a->attn_softcap == b->attn_softcap && a->final_softcap == b->final_softcap &&
                  fabs(a->attn_scale - b->attn_scale) < 1e-12 && a->tie_embeddings == b->tie_embeddings &&
                  !memcmp(a->full_layer, b->full_layer, sizeof a->full_layer),
              "%s: the saved config.json reads back differently", name);
    int ids[6] = {1, 5, 9, 2, 7, 3};
    cast_seqs s = {0};
    cast_seqs_push(&s, ids, NULL, 6);
    float *l1 = cast_alloc_floats(6 * (size_t)cfg->vocab), *l2 = cast_alloc_floats(6 * (size_t)cfg->vocab);
    cast_acts *ac = cast_acts_new();
    CHECK(cast_model_forward(&m, ac, &s, l1, NULL, NULL, NULL, &err) == 0);
    CHECK(cast_model_forward(&m2, ac, &s, l2, NULL, NULL, NULL, &err) == 0);
    CHECK_MSG(memcmp(l1, l2, sizeof(float) * 6 * (size_t)cfg->vocab) == 0, "%s: logits differ after save/load", name);
    cast_acts_free(ac);
    free(l1);
    free(l2);
    cast_seqs_free(&s);
    cast_model_free(&m);
    cast_model_free(&m2);
}

static void test_in_memory(void) {
    cast_config c;
    memset(&c, 0, sizeof c);
    c.vocab = 40, c.hidden = 16, c.inter = 24, c.layers = 3, c.heads = 4, c.kv_heads = 2, c.head_dim = 8;
    c.rms_eps = 1e-6, c.rope_theta = 10000, c.max_pos = 64, c.bos_id = -1;
    c.arch = CAST_ARCH_GEMMA2, c.gemma = 1, c.tie_embeddings = 1, c.sliding_window = 3, c.embed_scale = 4.0f;
    c.attn_scale = 1.0 / sqrt(12.0), c.attn_softcap = 5, c.final_softcap = 7;
    c.full_layer[0] = 1; /* not the even/odd default: layer_types must be written */
    snprintf(c.architecture, sizeof c.architecture, "Gemma2ForCausalLM");
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "float32");
    roundtrip(&c, "gemma2");
    memset(&c, 0, sizeof c);
    c.vocab = 40, c.hidden = 16, c.inter = 24, c.layers = 2, c.heads = 4, c.kv_heads = 2, c.head_dim = 4;
    c.rms_eps = 1e-5, c.rope_theta = 10000, c.max_pos = 64, c.bos_id = -1;
    c.arch = CAST_ARCH_PHI3, c.fused = 1, c.rope_dim = 2, c.sliding_window = 4;
    snprintf(c.architecture, sizeof c.architecture, "Phi3ForCausalLM");
    roundtrip(&c, "phi3");
    c.arch = CAST_ARCH_QWEN3, c.fused = 0, c.rope_dim = 0, c.sliding_window = 0, c.qk_norm = 1, c.head_dim = 8;
    snprintf(c.architecture, sizeof c.architecture, "Qwen3ForCausalLM");
    roundtrip(&c, "qwen3");
}

int main(void) {
    test_config();
    test_partial_rope();
    test_kernels();
    test_in_memory();
    return check_report();
}

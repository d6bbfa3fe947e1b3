/* bf16 AdamW moments (train/optim.h, tune --moments bf16):
 *  - with a constant gradient the second moment's per-step change (0.1 %)
 *    is below bf16's resolution: round-to-nearest would freeze v, while the
 *    stochastic rounding tracks it, so the weights move as with f32 moments
 *    (total movement within 1 %);
 *  - with random gradients the weights stay near the f32-moment run's;
 *  - frozen slices stay bit-identical; the state takes half the bytes;
 *  - two runs repeat bit for bit (the rounding is seeded by step and element). */
#include <math.h>
#include <string.h>

#include "base/rng.h"
#include "cast/select.h"
#include "check.h"
#include "model/forward.h"
#include "model/model.h"
#include "train/optim.h"

static cast_config config(void) {
    cast_config c;
    memset(&c, 0, sizeof c);
    c.arch = CAST_ARCH_LLAMA;
    snprintf(c.architecture, sizeof c.architecture, "LlamaForCausalLM");
    c.hidden = 32, c.layers = 2, c.heads = 4, c.kv_heads = 2, c.head_dim = 8, c.inter = 48, c.vocab = 37;
    c.rms_eps = 1e-5, c.rope_theta = 10000, c.max_pos = 64, c.bos_id = -1;
    return c;
}

/* Runs `steps` AdamW steps on the attention with gradient g_t (constant c, or
 * seeded normal noise plus c) and moments in bf16 or f32; m ends trained. */
static void run(cast_model *m, const cast_mask *k, int half, int steps, float c, int noise, int64_t *bytes) {
    cast_adamw o;
    cast_adamw_init_as(&o, m, k, 0, 1, half);
    *bytes = cast_adamw_bytes(&o);
    cast_grads g;
    cast_grads_init(&g, m, k->trainable, 0);
    cast_adamw_opts ao = {1e-3, 0.9, 0.999, 1e-8, 0.0};
    cast_rng r;
    cast_rng_seed(&r, 99);
    for (int s = 0; s < steps; s++) {
        for (int64_t j = 0; j < g.numel; j++) g.buffer[j] = c + (noise ? (float)(0.5 * cast_rng_normal(&r)) : 0.0f);
        cast_adamw_step(&o, m, k, &g, &ao, ao.lr);
    }
    cast_grads_free(&g);
    cast_adamw_free(&o);
}

static double moved(const cast_model *a, const cast_model *b, const cast_mask *k) {
    double s = 0;
    for (int i = 0; i < a->n_tensors; i++)
        if (k->trainable[i])
            for (int64_t j = 0; j < a->tensors[i].numel; j++) s += fabs((double)a->tensors[i].data[j] - b->tensors[i].data[j]);
    return s;
}

int main(void) {
    cast_config cfg = config();
    cast_model base, f32, b16, again;
    cast_model_init_random(&base, &cfg, 3, 0.1f);
    cast_model_init_random(&f32, &cfg, 3, 0.1f);
    cast_model_init_random(&b16, &cfg, 3, 0.1f);
    cast_model_init_random(&again, &cfg, 3, 0.1f);
    cast_mask k;
    int skip[] = {2};
    cast_mask_for_heads(&k, &base, CAST_TRAIN_ATTN, skip, 1, CAST_KV_FREEZE_ANY);
    int64_t bytes32, bytes16;

    /* constant gradient: after 3000 steps v is within 5 % of its limit; every
     * element moves lr per step (m̂/√v̂ = 1) */
    run(&f32, &k, 0, 3000, 0.01f, 0, &bytes32);
    run(&b16, &k, 1, 3000, 0.01f, 0, &bytes16);
    double mf = moved(&f32, &base, &k), mh = moved(&b16, &base, &k);
    CHECK_MSG(fabs(mh - mf) <= 0.01 * mf, "constant gradient: bf16 moments moved %.6g, f32 %.6g", mh, mf);
    CHECK(bytes16 * 2 == bytes32);
    printf("constant gradient, 3000 steps: total movement bf16 moments %.6g vs f32 %.6g (%.3f%%)\n", mh, mf, 100 * (mh - mf) / mf);

    /* frozen rows of the skipped head stay bit-identical */
    const cast_layer_index *x0 = &base.layer[0];
    int d = cfg.head_dim;
    CHECK(!memcmp(b16.tensors[x0->wq].data + 2 * d * cfg.hidden, base.tensors[x0->wq].data + 2 * d * cfg.hidden,
                  sizeof(float) * (size_t)(d * cfg.hidden)));

    /* noisy gradients: near the f32 run, and the same again bit for bit */
    cast_model nf, nh;
    cast_model_init_random(&nf, &cfg, 3, 0.1f);
    cast_model_init_random(&nh, &cfg, 3, 0.1f);
    run(&nf, &k, 0, 300, 0.002f, 1, &bytes32);
    run(&nh, &k, 1, 300, 0.002f, 1, &bytes16);
    run(&again, &k, 1, 300, 0.002f, 1, &bytes16);
    double dist = moved(&nh, &nf, &k), span = moved(&nf, &base, &k);
    CHECK_MSG(dist <= 0.05 * span, "noisy: bf16 vs f32 moments differ by %.4g of a %.4g movement", dist, span);
    CHECK(moved(&nh, &again, &k) == 0);
    printf("noisy gradients, 300 steps: |bf16 - f32| = %.3f%% of the movement\n", 100 * dist / span);

    cast_mask_free(&k);
    cast_model_free(&base), cast_model_free(&f32), cast_model_free(&b16), cast_model_free(&again);
    cast_model_free(&nf), cast_model_free(&nh);
    return check_report();
}

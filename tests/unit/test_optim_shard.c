/* The sharded AdamW of --shard-optimizer (ZeRO stage 1), without MPI: S
 * optimizers, one per simulated rank, each stepping its range of the
 * trainable elements, the ranges then copied between the ranks' models as
 * the all-gather would; every rank must end bit-identical to the unsharded
 * step, frozen slices untouched, and the ranges must tile the elements. */
#include <string.h>

#include "base/rng.h"
#include "cast/select.h"
#include "check.h"
#include "dist/dist.h"
#include "model/forward.h"
#include "model/model.h"
#include "train/optim.h"

enum { S = 3, STEPS = 3 };

static cast_config config(void) {
    cast_config c;
    memset(&c, 0, sizeof c);
    c.arch = CAST_ARCH_LLAMA;
    snprintf(c.architecture, sizeof c.architecture, "LlamaForCausalLM");
    c.hidden = 16, c.layers = 2, c.heads = 4, c.kv_heads = 2, c.head_dim = 4, c.inter = 24, c.vocab = 37;
    c.rms_eps = 1e-5, c.rope_theta = 10000, c.max_pos = 64, c.bos_id = -1;
    c.qkv_bias = 1;
    return c;
}

/* rank r's range of the flat trainable elements, copied from src into dst */
static void copy_range(cast_model *dst, const cast_model *src, const cast_adamw *o, const cast_mask *k) {
    for (int i = 0; i < o->n; i++)
        if (k->trainable[i] && o->count[i])
            memcpy(dst->tensors[i].data + o->first[i], src->tensors[i].data + o->first[i], sizeof(float) * (size_t)o->count[i]);
}

int main(void) {
    int64_t lo, hi;
    cast_dist_range(10, 0, 3, &lo, &hi);
    CHECK(lo == 0 && hi == 4);
    cast_dist_range(10, 2, 3, &lo, &hi);
    CHECK(lo == 7 && hi == 10);
    cast_dist_range(2, 2, 3, &lo, &hi); /* more ranks than elements: an empty range */
    CHECK(lo == 2 && hi == 2);

    cast_config cfg = config();
    cast_model ref, rank[S];
    cast_model_init_random(&ref, &cfg, 7, 0.1f);
    for (int r = 0; r < S; r++) cast_model_init_random(&rank[r], &cfg, 7, 0.1f);
    cast_model before;
    cast_model_init_random(&before, &cfg, 7, 0.1f);
    cast_mask k;
    int skip[] = {1, 6}; /* layer 0 head 1, layer 1 head 2: frozen q rows, o columns inside trained tensors */
    cast_mask_for_heads(&k, &ref, CAST_TRAIN_ATTN, skip, 2, CAST_KV_FREEZE_ANY);
    cast_adamw full, part[S];
    cast_adamw_init(&full, &ref, &k);
    int64_t covered = 0;
    for (int r = 0; r < S; r++) {
        cast_adamw_init_shard(&part[r], &rank[r], &k, r, S);
        CHECK(part[r].lo == covered);
        covered = part[r].hi;
        int64_t held = 0;
        for (int i = 0; i < part[r].n; i++) held += part[r].count[i];
        CHECK_MSG(held == part[r].hi - part[r].lo, "rank %d holds %lld of its %lld elements", r, (long long)held,
                  (long long)(part[r].hi - part[r].lo));
    }
    CHECK(covered == full.numel && full.lo == 0 && full.hi == full.numel && full.numel > 0);

    cast_grads g;
    cast_grads_init(&g, &ref, k.trainable, 0);
    cast_rng rng;
    cast_rng_seed(&rng, 3);
    cast_adamw_opts ao = {1e-2, 0.9, 0.999, 1e-8, 0.1};
    for (int step = 0; step < STEPS; step++) {
        for (int64_t j = 0; j < g.numel; j++) g.buffer[j] = (float)cast_rng_normal(&rng);
        cast_mask_apply(&k, &ref, &g);
        cast_adamw_step(&full, &ref, &k, &g, &ao, 1e-2);
        for (int r = 0; r < S; r++) cast_adamw_step(&part[r], &rank[r], &k, &g, &ao, 1e-2);
        /* the all-gather: each rank's range to every other rank */
        for (int r = 0; r < S; r++)
            for (int q = 0; q < S; q++)
                if (q != r) copy_range(&rank[q], &rank[r], &part[r], &k);
    }
    int moved = 0;
    for (int i = 0; i < ref.n_tensors; i++) {
        size_t bytes = sizeof(float) * (size_t)ref.tensors[i].numel;
        for (int r = 0; r < S; r++)
            CHECK_MSG(!memcmp(ref.tensors[i].data, rank[r].tensors[i].data, bytes), "%s differs on rank %d", ref.tensors[i].name, r);
        moved += memcmp(ref.tensors[i].data, before.tensors[i].data, bytes) != 0;
    }
    CHECK(moved > 0);
    /* frozen: layer 0 head 1's q rows stayed as they were */
    cast_head_slices hs = cast_model_head(&ref, 0, 1);
    CHECK(!memcmp(ref.tensors[hs.wq].data + hs.q_row0 * cfg.hidden, before.tensors[hs.wq].data + hs.q_row0 * cfg.hidden,
                  sizeof(float) * (size_t)(hs.d * cfg.hidden)));

    cast_grads_free(&g);
    cast_adamw_free(&full);
    for (int r = 0; r < S; r++) {
        cast_adamw_free(&part[r]);
        cast_model_free(&rank[r]);
    }
    cast_mask_free(&k);
    cast_model_free(&ref);
    cast_model_free(&before);
    return check_report();
}

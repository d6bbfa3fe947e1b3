#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "base/rng.h"
#include "base/timer.h"
#include "dist/dist.h"
#include "model/forward.h"
#include "model/safetensors.h"

void cast_train_opts_default(cast_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->adam = (cast_adamw_opts){2e-5, 0.9, 0.999, 1e-8, 0.0};
    o->schedule = CAST_SCHEDULE_CONSTANT;
    o->clip = 1.0;
    o->batch = 16;
    o->micro_batch = 4;
    o->epochs = 3;
    o->anchor_weight = 1.0;
}

int64_t cast_train_total_steps(const cast_train_opts *o, int n) {
    if (o->steps > 0) return o->steps;
    int64_t per_epoch = (n + o->batch - 1) / o->batch;
    return per_epoch * (o->epochs > 0 ? o->epochs : 1);
}

double cast_train_lr(const cast_train_opts *o, int64_t step, int64_t total) {
    double lr = o->adam.lr;
    if (o->warmup > 0 && step <= o->warmup) return lr * (double)step / o->warmup;
    if (o->schedule == CAST_SCHEDULE_COSINE) {
        double span = (double)(total - o->warmup), t = (double)(step - o->warmup);
        if (span > 0) lr *= 0.5 * (1.0 + cos(M_PI * fmin(1.0, t / span)));
    }
    return lr;
}

/* ---- data order: a pure function of (seed, step), so resuming replays it ---- */

static void permutation(int *perm, int n, uint64_t seed, int64_t epoch) {
    cast_rng r;
    cast_rng_seed(&r, seed * 1000003ULL + (uint64_t)epoch);
    for (int i = 0; i < n; i++) perm[i] = i;
    cast_rng_shuffle(&r, perm, n);
}

/* The batch of step (0-based): items [step·B, step·B + B) of the stream of
 * epochs, each epoch a fresh permutation; an epoch's last batch may be short
 * when `whole_epochs` (the training set), the stream wraps otherwise (utility). */
static void batch_of(const cast_seqs *set, int64_t step, int B, uint64_t seed, int whole_epochs, int *perm, cast_seqs *out) {
    int n = set->n;
    memset(out, 0, sizeof *out);
    int64_t per_epoch = (n + B - 1) / B;
    int64_t first, count;
    int64_t epoch;
    if (whole_epochs) {
        epoch = step / per_epoch;
        first = (step % per_epoch) * B;
        count = first + B <= n ? B : n - first;
        permutation(perm, n, seed, epoch);
        for (int64_t i = 0; i < count; i++) {
            int j = perm[first + i];
            cast_seqs_push(out, set->ids + set->off[j], set->labels + set->off[j], cast_seqs_len(set, j));
        }
        return;
    }
    int64_t pos = step * B;
    epoch = -1;
    for (int64_t i = 0; i < B; i++, pos++) {
        int64_t e = pos / n;
        if (e != epoch) permutation(perm, n, seed, epoch = e);
        int j = perm[pos % n];
        cast_seqs_push(out, set->ids + set->off[j], set->labels + set->off[j], cast_seqs_len(set, j));
    }
}

/* Gradient of the batch's token-mean loss, accumulated over micro-batches;
 * *loss receives that mean (NaN or inf pass through for the caller to see). */
static int batch_gradient(const cast_model *m, cast_acts *a, const cast_seqs *batch, int micro, cast_grads *g, double *loss,
                          int64_t *tokens, cast_err *err) {
    cast_grads_zero(g);
    int64_t scored = cast_seqs_scored(batch);
    *tokens = batch->off[batch->n] - batch->off[0];
    *loss = 0.0;
    if (scored == 0) return 0;
    double sum = 0;
    /* data parallel: micro-batch k on rank k mod size; the scale (the batch's
     * scored tokens) is global, so the summed partials are the batch's gradient */
    for (int i = 0, k = 0; i < batch->n; i += micro, k++) {
        if (!cast_dist_mine(k)) continue;
        cast_seqs part = cast_seqs_slice(batch, i, batch->n - i < micro ? batch->n - i : micro);
        cast_loss l;
        if (cast_model_forward_backward(m, a, &part, g, (double)scored, &l, err)) return -1;
        sum += l.sum;
    }
    cast_grads_sum_ranks(g);
    cast_dist_sum_f64(&sum, 1);
    *loss = sum / (double)scored;
    return 0;
}

/* ---- checkpoints: trainable tensors, AdamW moments, the step -------------- */

void cast_checkpoint_remove(const char *dir) {
    cast_err err;
    if (cast_dir_exists(dir)) cast_remove_tree(dir, &err);
}

/* adam.RANK.safetensors: one rank's moments when the state is sharded */
static char *shard_path(const char *dir, int rank) {
    char name[48];
    snprintf(name, sizeof name, "adam.%d.safetensors", rank);
    return cast_path_join(dir, name);
}

/* The checkpoint folder: state.safetensors (the trainable tensors, and their
 * AdamW moments when unsharded), state.json (steps, shards), and with a
 * sharded optimizer one adam.RANK.safetensors per rank (the moments of its
 * range, flat). Written as DIR.tmp and swapped in; rank 0 writes all but the
 * shards, and the ranks meet before and after the shards are written. */
static int write_checkpoint(const char *dir, const cast_model *m, const cast_mask *k, const cast_adamw *opt, int64_t step,
                            cast_err *err) {
    int rank = cast_dist_rank(), sharded = opt->shards > 1;
    if (!sharded && rank > 0) return 0; /* every rank holds the same state: rank 0 writes it */
    char *tmp = cast_xmalloc(strlen(dir) + 16), *old = cast_xmalloc(strlen(dir) + 16);
    sprintf(tmp, "%s.tmp", dir);
    sprintf(old, "%s.old", dir);
    int rc = -1;
    int n = 0;
    cast_st_entry *e = cast_xcalloc((size_t)(3 * m->n_tensors), sizeof *e);
    char **names = cast_xcalloc((size_t)(3 * m->n_tensors), sizeof(char *));
    if (rank == 0) {
        cast_checkpoint_remove(tmp); /* a killed run's leftovers */
        if (cast_mkdirs(tmp, err)) goto done;
    }
    if (sharded) {
        cast_dist_barrier();
        int64_t held = opt->hi - opt->lo;
        /* bf16 moments are written widened to F32 (exact) and narrowed back exactly on resume */
        cast_st_entry moments[2] = {
            {"adam_m", 1, {held, 0}, opt->half ? NULL : opt->buffer, opt->half ? opt->hbuffer : NULL, opt->half ? CAST_HALF_BF16 : CAST_HALF_NONE, 0},
            {"adam_v", 1, {held, 0}, opt->half ? NULL : opt->buffer + held, opt->half ? opt->hbuffer + held : NULL,
             opt->half ? CAST_HALF_BF16 : CAST_HALF_NONE, 0}};
        char *sp = shard_path(tmp, rank);
        int bad = held > 0 && cast_st_write(sp, moments, 2, CAST_F32, err);
        free(sp);
        if (bad) goto done;
        cast_dist_barrier();
        if (rank > 0) {
            cast_dist_barrier(); /* rank 0 swaps the folder in */
            rc = 0;
            goto done;
        }
    }
    for (int i = 0; i < m->n_tensors; i++) {
        if (!k->trainable[i]) continue;
        const cast_tensor *t = &m->tensors[i];
        const float *src[3] = {t->data, opt->m[i], opt->v[i]};
        const uint16_t *hsrc[3] = {NULL, opt->hm[i], opt->hv[i]};
        const char *prefix[3] = {"param.", "adam_m.", "adam_v."};
        for (int s = 0; s < (sharded ? 1 : 3); s++) {
            names[n] = cast_xmalloc(strlen(t->name) + 16);
            sprintf(names[n], "%s%s", prefix[s], t->name);
            e[n] = (cast_st_entry){names[n], t->ndim, {t->shape[0], t->shape[1]}, hsrc[s] ? NULL : src[s], hsrc[s],
                                   hsrc[s] ? CAST_HALF_BF16 : CAST_HALF_NONE, 0};
            n++;
        }
    }
    char *st = cast_path_join(tmp, "state.safetensors");
    int bad = cast_st_write(st, e, n, CAST_F32, err);
    free(st);
    if (bad) goto done;
    cast_buf js = {0};
    cast_buf_printf(&js, "{\"step\": %lld, \"adam_step\": %lld, \"shards\": %d, \"numel\": %lld}\n", (long long)step,
                    (long long)opt->step, opt->shards, (long long)opt->numel);
    char *sj = cast_path_join(tmp, "state.json");
    bad = cast_write_file_atomic(sj, js.data, js.len, err);
    free(sj);
    cast_buf_free(&js);
    if (bad) goto done;
    /* swap in: the old checkpoint stays until the new one is complete */
    cast_checkpoint_remove(old);
    if (cast_dir_exists(dir) && rename(dir, old) != 0) {
        cast_fail(err, "%s: cannot replace the checkpoint", dir);
        goto done;
    }
    if (rename(tmp, dir) != 0) {
        cast_fail(err, "%s: cannot move the new checkpoint in place", dir);
        goto done;
    }
    cast_checkpoint_remove(old);
    if (sharded) cast_dist_barrier();
    rc = 0;
done:
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(e);
    free(tmp);
    free(old);
    return rc;
}

char *cast_checkpoint_find(const char *dir) {
    if (cast_checkpoint_step(dir) >= 0) return cast_xstrdup(dir);
    /* a run killed while swapping checkpoints left the previous one as DIR.old */
    char *old = cast_xmalloc(strlen(dir) + 8);
    sprintf(old, "%s.old", dir);
    if (cast_checkpoint_step(old) >= 0) return old;
    free(old);
    return NULL;
}

int64_t cast_checkpoint_step(const char *dir) {
    char *p = cast_path_join(dir, "state.json");
    cast_err err;
    cast_json *j = cast_json_parse_file(p, &err);
    free(p);
    if (!j) return -1;
    int64_t step = -1;
    if (cast_json_req_int(j, "step", &step, "state.json", &err)) step = -1;
    cast_json_free(j);
    return step;
}

/* Stored moments (f32, possibly unaligned in the file) into bf16 ones:
 * exact for moments that were bf16 when written. */
static void narrow(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        float v;
        memcpy(&v, src + j, 4);
        dst[j] = cast_f32_to_bf16(v);
    }
}

/* Reads a checkpoint into m and opt. An unsharded checkpoint fills any
 * range (a sharded run may resume it); a sharded one needs the same ranks. */
static int read_checkpoint(const char *dir, cast_model *m, const cast_mask *k, cast_adamw *opt, int64_t *step, cast_err *err) {
    char *sj = cast_path_join(dir, "state.json"), *ss = cast_path_join(dir, "state.safetensors"), *sp = NULL;
    int rc = -1;
    cast_st_file f = {0}, fs = {0};
    int opened = 0, opened_shard = 0;
    cast_json *j = cast_json_parse_file(sj, err);
    int64_t adam_step, shards = 1, numel = opt->numel;
    if (!j || cast_json_req_int(j, "step", step, sj, err) || cast_json_req_int(j, "adam_step", &adam_step, sj, err) ||
        cast_json_opt_int(j, "shards", 1, &shards, sj, err) || cast_json_opt_int(j, "numel", opt->numel, &numel, sj, err))
        goto done;
    if (numel != opt->numel) {
        cast_fail(err, "%s: %lld trainable elements, this run has %lld (a checkpoint of another run?)", sj, (long long)numel,
                  (long long)opt->numel);
        goto done;
    }
    if (shards > 1 && shards != opt->shards) {
        cast_fail(err, "%s: the optimizer state is split across %lld ranks; resume with mpirun -np %lld and --shard-optimizer", sj,
                  (long long)shards, (long long)shards);
        goto done;
    }
    if (cast_st_open(&f, ss, err)) goto done;
    opened = 1;
    for (int i = 0; i < m->n_tensors; i++) {
        if (!k->trainable[i]) continue;
        cast_tensor *t = &m->tensors[i];
        float *dst[3] = {t->data, opt->m[i], opt->v[i]};
        const char *prefix[3] = {"param.", "adam_m.", "adam_v."};
        for (int s = 0; s < (shards > 1 ? 1 : 3); s++) {
            char name[128];
            snprintf(name, sizeof name, "%s%s", prefix[s], t->name);
            const cast_st_tensor *x = cast_st_find(&f, name);
            if (!x || x->dtype != CAST_F32 || x->numel != t->numel) {
                cast_fail(err, "%s: no %s of the right shape (a checkpoint of another run?)", ss, name);
                goto done;
            }
            const float *from = (const float *)(f.data + x->begin);
            uint16_t *hdst = s == 1 ? opt->hm[i] : s == 2 ? opt->hv[i] : NULL;
            if (s == 0) memcpy(dst[0], from, sizeof(float) * (size_t)t->numel);
            else if (dst[s]) memcpy(dst[s], from + opt->first[i], sizeof(float) * (size_t)opt->count[i]);
            else if (hdst) narrow(hdst, from + opt->first[i], opt->count[i]);
        }
    }
    int64_t held = opt->hi - opt->lo;
    if (shards > 1 && held > 0) {
        sp = shard_path(dir, cast_dist_rank());
        if (cast_st_open(&fs, sp, err)) goto done;
        opened_shard = 1;
        for (int s = 0; s < 2; s++) {
            const cast_st_tensor *x = cast_st_find(&fs, s ? "adam_v" : "adam_m");
            if (!x || x->dtype != CAST_F32 || x->numel != held) {
                cast_fail(err, "%s: no %s of %lld elements (a checkpoint of another run?)", sp, s ? "adam_v" : "adam_m", (long long)held);
                goto done;
            }
            if (opt->half) narrow(opt->hbuffer + s * held, (const float *)(fs.data + x->begin), held);
            else memcpy(opt->buffer + s * held, fs.data + x->begin, sizeof(float) * (size_t)held);
        }
    }
    opt->step = adam_step;
    rc = 0;
done:
    if (opened) cast_st_close(&f);
    if (opened_shard) cast_st_close(&fs);
    cast_json_free(j);
    free(sj);
    free(ss);
    free(sp);
    return rc;
}

/* ---- the loop --------------------------------------------------------------- */

int cast_train(cast_model *m, const cast_mask *k, const cast_seqs *train, const cast_seqs *utility, const cast_train_opts *o,
               cast_err *err) {
    if (train->n == 0) return cast_fail(err, "the training set is empty");
    if (o->batch <= 0 || o->micro_batch <= 0) return cast_fail(err, "batch and micro-batch must be positive");
    int use_utility = utility && utility->n > 0 && (o->pcgrad || o->anchor_weight > 0);
    if (o->pcgrad && !use_utility) return cast_fail(err, "PCGrad needs a utility set");
    int64_t total = cast_train_total_steps(o, train->n), start = 0;
    for (int i = 0; i < m->n_tensors; i++) /* trained values are f32 (master weights of 16-bit ones) */
        if (k->trainable[i]) cast_model_master(m, i);
    cast_adamw opt;
    cast_adamw_init_as(&opt, m, k, o->shard_optimizer ? cast_dist_rank() : 0, o->shard_optimizer ? cast_dist_size() : 1, o->half_moments);
    cast_grads gs, gu = {0};
    cast_grads_init(&gs, m, k->trainable, 0);
    if (use_utility) cast_grads_init(&gu, m, k->trainable, 0);
    cast_acts *a = cast_acts_new();
    int *perm_t = cast_xmalloc(sizeof(int) * (size_t)train->n);
    int *perm_u = use_utility ? cast_xmalloc(sizeof(int) * (size_t)utility->n) : NULL;
    int rc = -1;
    int64_t last_good = -1;
    if (o->resume) {
        char *from = o->checkpoint_dir ? cast_checkpoint_find(o->checkpoint_dir) : NULL;
        int bad = !from ? cast_fail(err, "%s: no checkpoint to resume from", o->checkpoint_dir ? o->checkpoint_dir : "(none)")
                        : read_checkpoint(from, m, k, &opt, &start, err);
        free(from);
        if (bad) goto done;
        last_good = start;
    }
    double t0 = cast_now_s();
    int64_t tokens_done = 0;
    for (int64_t step = start; step < total; step++) {
        cast_seqs batch;
        batch_of(train, step, o->batch, o->seed, 1, perm_t, &batch);
        int64_t ntok, ntok_u = 0;
        double loss, loss_u = NAN;
        int bad = batch_gradient(m, a, &batch, o->micro_batch, &gs, &loss, &ntok, err);
        cast_seqs_free(&batch);
        if (bad) goto done;
        if (use_utility) {
            cast_seqs ub;
            batch_of(utility, step, o->batch, o->seed + 1, 0, perm_u, &ub);
            bad = batch_gradient(m, a, &ub, o->micro_batch, &gu, &loss_u, &ntok_u, err);
            cast_seqs_free(&ub);
            if (bad) goto done;
        }
        int projected = 0;
        double w = o->anchor_weight;
        if (use_utility && isfinite(loss_u)) {
            double coef_s = 1.0, coef_u = w;
            if (o->pcgrad) {
                /* PCGrad: where g_s·g_u < 0, each is projected off the other:
                 * g_s' = g_s − (d/|g_u|²) g_u,  g_u' = g_u − (d/|g_s|²) g_s; the step uses g_s' + w·g_u' */
                double d = cast_grads_dot(&gs, &gu, m, k), ns = cast_grads_dot(&gs, &gs, m, k), nu = cast_grads_dot(&gu, &gu, m, k);
                if (d < 0 && ns > 0 && nu > 0) {
                    coef_s = 1.0 - w * d / ns;
                    coef_u = w - d / nu;
                    projected = 1;
                }
            }
            if (coef_s != 1.0) cast_grads_scale(&gs, coef_s);
            cast_grads_axpy(&gs, coef_u, &gu, m, k);
        }
        cast_mask_apply(k, m, &gs);
        double norm = cast_grads_norm(&gs, m, k);
        if (!isfinite(loss) || !isfinite(norm) || (use_utility && !isfinite(loss_u))) {
            const char *what = isfinite(loss) && (!use_utility || isfinite(loss_u)) ? "the gradient" : "the loss";
            if (last_good >= 0)
                cast_fail_as(err, CAST_E_NUMERIC, "step %lld: %s is not finite; the last good checkpoint is %s (step %lld)", (long long)step + 1, what,
                          o->checkpoint_dir, (long long)last_good);
            else
                cast_fail_as(err, CAST_E_NUMERIC, "step %lld: %s is not finite; no checkpoint was written before it", (long long)step + 1, what);
            goto done;
        }
        if (o->clip > 0 && norm > o->clip) cast_grads_scale(&gs, o->clip / norm);
        double lr = cast_train_lr(o, step + 1, total);
        cast_adamw_step(&opt, m, k, &gs, &o->adam, lr);
        cast_adamw_gather(&opt, m, k); /* sharded: every rank's updated range to every rank */
        tokens_done += ntok + ntok_u;
        /* the step's log line goes out before its checkpoint: a run killed in between
         * resumes from the previous checkpoint and writes the line again */
        int stop = 0;
        if (o->on_step) {
            double el = cast_now_s() - t0;
            cast_step_log log = {step + 1, total, (int)(step / ((train->n + o->batch - 1) / o->batch)), loss, loss_u, lr, norm, projected,
                                 el > 0 ? tokens_done / el : 0, el, cast_adamw_bytes(&opt)};
            stop = o->on_step(o->ctx, &log);
        }
        int periodic = o->save_every > 0 && (step + 1) % o->save_every == 0 && step + 1 < total;
        if (o->checkpoint_dir && (periodic || (o->final_checkpoint && step + 1 == total))) {
            if (write_checkpoint(o->checkpoint_dir, m, k, &opt, step + 1, err)) goto done;
            last_good = step + 1;
        }
        if (stop) break;
    }
    rc = 0;
done:
    free(perm_t);
    free(perm_u);
    cast_acts_free(a);
    cast_grads_free(&gs);
    cast_grads_free(&gu);
    cast_adamw_free(&opt);
    return rc;
}

/* The training loop: masked AdamW over a set of sequences, with schedules,
 * clipping, micro-batches, an optional utility anchor or PCGrad, checkpoints
 * and exact resume. The same loop aligns models (cast tune) and pretrains the
 * organism. */
#ifndef CAST_TRAIN_TRAINER_H
#define CAST_TRAIN_TRAINER_H

#include <stdint.h>

#include "base/error.h"
#include "model/model.h"
#include "model/seqs.h"
#include "train/optim.h"

typedef enum { CAST_SCHEDULE_CONSTANT, CAST_SCHEDULE_COSINE } cast_schedule;

typedef struct cast_step_log {
    int64_t step, total_steps; /* step counts from 1 */
    int epoch;
    double loss, loss_utility; /* token-mean over the step's batch (utility: NaN when unused) */
    double lr, grad_norm;      /* norm before clipping */
    int projected;             /* PCGrad: the two gradients conflicted and were projected */
    double tokens_per_s, elapsed_s;
    int64_t optimizer_bytes;   /* AdamW moments held by this process (its share when sharded) */
} cast_step_log;

typedef struct cast_train_opts {
    cast_adamw_opts adam;
    cast_schedule schedule;
    int warmup;          /* linear warm-up steps */
    double clip;         /* max global grad norm; 0 = off */
    int batch;           /* sequences per optimizer step */
    int micro_batch;     /* sequences per forward/backward */
    int epochs;          /* used when steps == 0 */
    int64_t steps;
    uint64_t seed;       /* data order */
    double anchor_weight; /* with a utility set: loss L_s + w·L_u */
    int pcgrad;          /* with a utility set: project conflicting gradients */
    int save_every;      /* steps between checkpoints (0 = none) */
    const char *checkpoint_dir; /* where checkpoints go (NULL = none) */
    int resume;          /* continue from checkpoint_dir */
    int shard_optimizer; /* under MPI: each rank keeps the AdamW moments of its share of the
                            trainable elements only (ZeRO stage 1); results are the same */
    int half_moments;    /* AdamW moments as bf16, stochastically rounded (train/optim.h): half
                            their memory (8B attention: 5 GiB instead of 10) */
    int final_checkpoint; /* also checkpoint after the last step, so a finished run can be
                             extended (resume with more steps); it stays in checkpoint_dir */
    /* after every step; return non-zero to stop early (no error) */
    int (*on_step)(void *ctx, const cast_step_log *log);
    void *ctx;
} cast_train_opts;

void cast_train_opts_default(cast_train_opts *o);
int64_t cast_train_total_steps(const cast_train_opts *o, int n_examples);
double cast_train_lr(const cast_train_opts *o, int64_t step, int64_t total); /* lr of step (1-based) */

/* Trains m in place. utility may be NULL. On a non-finite loss or gradient
 * it stops before updating, and the message names the step and the last good
 * checkpoint. */
int cast_train(cast_model *m, const cast_mask *k, const cast_seqs *train, const cast_seqs *utility, const cast_train_opts *o,
               cast_err *err);

/* Deletes a checkpoint folder (once its run has completed). */
void cast_checkpoint_remove(const char *dir);

/* The folder holding the last complete checkpoint of dir: dir itself, or
 * dir.old when a run was killed while swapping them; NULL if none (malloc'd). */
char *cast_checkpoint_find(const char *dir);

/* Steps already done by the checkpoint in dir (-1 if none). */
int64_t cast_checkpoint_step(const char *dir);

#endif

/* cast tune MODEL --safety FILE --out DIR: safety fine-tuning that skips the
 * heads a strategy picks (CAST stage B), or a baseline at the same budget. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/timer.h"
#include "base/threads.h"
#include "cast/diagnose.h"
#include "cast/select.h"
#include "cast/tune.h"
#include "cast.h"
#include "cli.h"
#include "dist/dist.h"
#include "model/delta.h"
#include "train/trainer.h"

typedef struct tune_log {
    FILE *fp;
    cli_progress bar;
    int64_t optimizer_bytes;
} tune_log;

static int on_step(void *ctx, const cast_step_log *s) {
    tune_log *t = ctx;
    t->optimizer_bytes = s->optimizer_bytes;
    cast_buf b = {0};
    cast_buf_printf(&b, "{\"step\": %lld, \"epoch\": %d, \"loss_safety\": ", (long long)s->step, s->epoch);
    cast_buf_json_number(&b, s->loss);
    if (!isnan(s->loss_utility)) {
        cast_buf_puts(&b, ", \"loss_utility\": ");
        cast_buf_json_number(&b, s->loss_utility);
    }
    cast_buf_puts(&b, ", \"lr\": ");
    cast_buf_json_number(&b, s->lr);
    cast_buf_puts(&b, ", \"grad_norm\": ");
    cast_buf_json_number(&b, s->grad_norm);
    cast_buf_printf(&b, ", \"projected\": %s, \"tokens_per_s\": %.1f, \"elapsed_s\": %.3f}\n", s->projected ? "true" : "false",
                    s->tokens_per_s, s->elapsed_s);
    if (t->fp) { /* rank 0 logs for the job */
        fputs(b.data, t->fp);
        fflush(t->fp);
    }
    cast_buf_free(&b);
    char extra[64];
    snprintf(extra, sizeof extra, "loss %.4f", s->loss);
    cli_progress_update(&t->bar, s->step, extra);
    return 0;
}

/* Keeps the log lines of steps <= last (a resumed run rewrites what follows). */
static int trim_log(const char *path, int64_t last, cast_err *err) {
    char *text;
    size_t n;
    if (!cast_file_exists(path)) return 0;
    if (cast_read_file(path, &text, &n, err)) return -1;
    cast_buf keep = {0};
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
        long long step = -1;
        if (sscanf(line, "{\"step\": %lld", &step) == 1 && step <= last) cast_buf_append(&keep, line, len);
        line = nl ? nl + 1 : NULL;
    }
    int rc = cast_write_file_atomic(path, keep.data ? keep.data : "", keep.len, err);
    cast_buf_free(&keep);
    free(text);
    return rc;
}

static void json_str(cast_buf *b, const char *key, const char *v) {
    cast_buf_printf(b, "\"%s\": ", key);
    if (v) cast_buf_json_string(b, v, strlen(v));
    else cast_buf_puts(b, "null");
}

int cmd_tune(int argc, char **argv) {
    double memory_gb = 0;
    const char *stream_arg = "auto", *moments = "auto";
    int stream = -1, half_moments = -1;
    const char *compute = "auto";
    const char *safety = NULL, *utility = NULL, *out = NULL, *map_path = NULL, *strategy = "cast", *scope = "attn", *kvf = "all",
               *schedule = "constant", *template_name = NULL, *dtype_name = NULL;
    double skip = 0.05, lr = 2e-5, beta1 = 0.9, beta2 = 0.999, wd = 0.0, eps = 1e-8, clip = 1.0, anchor = -1;
    int skip_heads = -1, epochs = 3, batch = 4, grad_accum = 4, warmup = 0, save_every = 0, resume = 0, delta = 0, threads = 0;
    int json = 0, shard_optimizer = 0;
    const char *on_long = "skip";
    cli_data_opts d = {0, 256, CAST_ON_LONG_SKIP, -1};
    int64_t seed = 0, steps = 0;
    int force = 0;
    const char *delta_fmt = "sparse";
    const cli_opt opts[] = {
        {"--safety", CLI_STRING, &safety, "FILE", "alignment set: harmful prompts with refusals"},
        {"--out", CLI_STRING, &out, "DIR", "the tuned model folder, train_log.jsonl, cast_run.json"},
        {"--strategy", CLI_STRING, &strategy, "NAME", "cast | random | inverse | oc | fs | full | pcgrad (default cast)"},
        {"--skip", CLI_DOUBLE, &skip, "RATIO", "share of heads to skip, k = round(RATIO x layers x heads) (default 0.05)"},
        {"--skip-heads", CLI_INT, &skip_heads, "N", "skip exactly N heads instead (default -1 = use --skip)"},
        {"--map", CLI_STRING, &map_path, "FILE", "conflict_map.json from cast diagnose (default: diagnosed now, needs --utility)"},
        {"--utility", CLI_STRING, &utility, "FILE", "utility set: for diagnosis, PCGrad, or an anchor with --anchor-weight"},
        {"--anchor-weight", CLI_DOUBLE, &anchor, "W", "train on L_s + W·L_u (needs --utility; default -1 = off, 1 with pcgrad)"},
        {"--train", CLI_STRING, &scope, "SCOPE", "attn | attn+mlp | all (default attn)"},
        {"--kv-freeze", CLI_STRING, &kvf, "all|any", "freeze a group's k/v rows when all (default) or any of its heads are skipped"},
        {"--lr", CLI_DOUBLE, &lr, "LR", "AdamW learning rate (default 2e-5)"},
        {"--beta1", CLI_DOUBLE, &beta1, "B", "(default 0.9)"},
        {"--beta2", CLI_DOUBLE, &beta2, "B", "(default 0.999)"},
        {"--eps", CLI_DOUBLE, &eps, "E", "(default 1e-8)"},
        {"--weight-decay", CLI_DOUBLE, &wd, "W", "decoupled weight decay (default 0)"},
        {"--schedule", CLI_STRING, &schedule, "constant|cosine", "learning-rate schedule after warm-up (default constant)"},
        {"--warmup", CLI_INT, &warmup, "N", "linear warm-up steps (default 0)"},
        {"--clip", CLI_DOUBLE, &clip, "C", "clip the global gradient norm to C (default 1; 0 = off)"},
        {"--epochs", CLI_INT, &epochs, "N", "passes over the safety set (default 3)"},
        {"--steps", CLI_INT64, &steps, "N", "optimizer steps instead of epochs (default 0 = use --epochs)"},
        {"--batch", CLI_INT, &batch, "N", "sequences per forward/backward pass (default 4)"},
        {"--grad-accum", CLI_INT, &grad_accum, "N", "passes accumulated per optimizer step: a step sees batch x N sequences (default 4)"},
        {"--max-len", CLI_INT, &d.max_len, "N", "tokens per example at most (default 256; 0 = no limit)"},
        {"--on-long", CLI_STRING, &on_long, "POLICY", CLI_ON_LONG_HELP},
        {"--first", CLI_INT, &d.first, "N", "the first N examples of each set (default 0 = all)"},
        {"--seed", CLI_INT64, &seed, "S", "data order and random head choice (default 0)"},
        {"--save-every", CLI_INT, &save_every, "N",
         "checkpoint every N steps into DIR/checkpoint, and after the last step; it is kept, so a finished run can be "
         "extended (default 0 = no checkpoints)"},
        {"--resume", CLI_FLAG, &resume, NULL,
         "continue the run in DIR from DIR/checkpoint (same flags; a finished run with more --steps or --epochs), in place"},
        {"--delta", CLI_FLAG, &delta, NULL, "also write DIR/delta.safetensors, with the base model's fingerprint"},
        {"--delta-format", CLI_STRING, &delta_fmt, "sparse|diff",
         "sparse: the changed slices' new values; diff: tuned - base for every trained tensor, a task vector (default sparse)"},
        {"--force", CLI_FLAG, &force, NULL, "replace a non-empty --out folder whole (default: refuse)"},
        {"--shard-optimizer", CLI_FLAG, &shard_optimizer, NULL,
         "under mpirun: each rank keeps the AdamW moments of its share of the trainable parameters only (ZeRO stage 1)"},
        {"--dtype", CLI_STRING, &dtype_name, "f32|bf16|f16", "dtype of the saved weights (default: the input's)"},
        {"--template", CLI_STRING, &template_name, "NAME", "chat template (default: the model's)"},
        {"--memory", CLI_DOUBLE, &memory_gb, "GB", "memory the run may take, GiB (default: physical memory less 1 GiB)"},
        CLI_STREAM_OPT(stream_arg),
        {"--moments", CLI_STRING, &moments, "auto|f32|bf16",
         "AdamW moments in f32, or bf16 with stochastic rounding (half the memory); default auto: bf16 only when f32 would not fit"},
        {"--threads", CLI_INT, &threads, "N", "threads (default 0 = all cores)"},
        CLI_COMPUTE_OPT(compute),
        {"--json", CLI_FLAG, &json, NULL, "print cast_run.json on stdout at the end"},
        {0}};
    const cli_spec spec = {"tune", "MODEL --safety FILE --out DIR [options]",
                           "Safety fine-tuning with AdamW whose update skips the heads a strategy picks (CAST stage B), or a "
                           "baseline at the same budget.",
                           opts, 1, 1};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    cast_strategy strat;
    cast_train_scope sc;
    if (!safety || !out) return cli_failf("tune: --safety FILE and --out DIR are required");
    if (cast_strategy_parse(strategy, &strat))
        return cli_failf("tune: --strategy must be cast, random, inverse, oc, fs, full or pcgrad (got \"%s\")", strategy);
    if (cast_scope_parse(scope, &sc)) return cli_failf("tune: --train must be attn, attn+mlp or all (got \"%s\")", scope);
    if (strcmp(kvf, "all") && strcmp(kvf, "any")) return cli_failf("tune: --kv-freeze must be all or any");
    if (strcmp(schedule, "constant") && strcmp(schedule, "cosine")) return cli_failf("tune: --schedule must be constant or cosine");
    if (!(skip >= 0 && skip < 1)) return cli_failf("tune: --skip must be in [0, 1) (got %g)", skip);
    if (!(lr > 0) || !(memory_gb >= 0) || batch <= 0 || grad_accum <= 0 || epochs <= 0 || steps < 0 || warmup < 0 || clip < 0 || save_every < 0)
        return cli_failf("tune: invalid optimizer settings (lr > 0, batch, grad-accum, epochs > 0; steps, warmup, clip >= 0)");
    if (d.first < 0 || d.max_len < 0) return cli_failf("tune: --first and --max-len must be >= 0");
    if (cli_stream_mode("tune", stream_arg, &stream)) return 1;
    if (!strcmp(moments, "auto")) half_moments = -1;
    else if (!strcmp(moments, "f32") || !strcmp(moments, "bf16")) half_moments = !strcmp(moments, "bf16");
    else return cli_failf("tune: --moments must be auto, f32 or bf16 (got \"%s\")", moments);
    if (cli_on_long("tune", on_long, &d.on_long)) return 1;
    if (strat == CAST_STRATEGY_PCGRAD && !utility) return cli_failf("tune: --strategy pcgrad needs --utility FILE");
    if (anchor >= 0 && !utility) return cli_failf("tune: --anchor-weight needs --utility FILE");
    if (strcmp(delta_fmt, "sparse") && strcmp(delta_fmt, "diff")) return cli_failf("tune: --delta-format must be sparse or diff");
    if (cast_strategy_needs_map(strat) && !map_path && !utility)
        return cli_failf("tune: --strategy %s needs --map conflict_map.json, or --utility FILE to diagnose now", strategy);
    cast_dtype dtype = CAST_F32;
    if (dtype_name && strcmp(dtype_name, "f32") && strcmp(dtype_name, "bf16") && strcmp(dtype_name, "f16"))
        return cli_failf("tune: --dtype must be f32, bf16 or f16");
    cast_set_threads(threads);

    /* the output folder: never an input, never over a user's files without --force */
    const char *inputs[] = {pos[0], safety, utility, map_path};
    cli_out co;
    if (cli_out_begin(&co, out, inputs, 4, force, resume)) return 1;
    cli_model cm;
    if (cli_model_open(&cm, pos[0], template_name, compute)) {
        cli_out_abort(&co);
        return 1;
    }
    cast_model *m = &cm.m;
    const cast_config *c = &m->cfg;
    dtype = !dtype_name ? m->storage : !strcmp(dtype_name, "bf16") ? CAST_BF16 : !strcmp(dtype_name, "f16") ? CAST_F16 : CAST_F32;
    int n_heads = c->layers * c->heads;
    cast_tune_opts to;
    cast_tune_opts_default(&to);
    to.strategy = strat;
    to.skip = skip;
    to.skip_heads = skip_heads;
    to.select_seed = (uint64_t)seed;
    to.scope = sc;
    to.kv_freeze = !strcmp(kvf, "any") ? CAST_KV_FREEZE_ANY : CAST_KV_FREEZE_ALL;
    to.keep_before = delta; /* the changed slices are measured against the weights as loaded */
    int k = cast_tune_budget(&to, n_heads);
    if (k > n_heads) {
        cli_model_close(&cm);
        cli_out_abort(&co);
        return cli_failf("tune: cannot skip %d heads of %d", k, n_heads);
    }
    cast_err err = {0};
    cast_seqs s_set = {0}, u_set = {0};
    cast_conflict_map map = {0};
    cast_tune_run run = {0};
    int have_map = 0, write_map = 0;
    FILE *logf = NULL;
    char *log_path = NULL, *ckpt = NULL;
    rc = 1;
    int s_skipped = 0, u_skipped = 0;
    if (cli_encode_file(&cm, safety, &d, &s_set, NULL, &s_skipped)) goto done;
    if (utility && cli_encode_file(&cm, utility, &d, &u_set, NULL, &u_skipped)) goto done;

    /* the map the strategy reads: given, or diagnosed now (and kept in DIR) */
    if (cast_strategy_needs_map(strat) && k > 0) {
        if (map_path) {
            if (cast_conflict_map_load(&map, map_path, &err)) goto fail;
        } else {
            cast_diag_opts o;
            cast_diag_opts_default(&o);
            cli_note("no --map given: diagnosing with %s and %s first", safety, utility);
            if (cast_diagnose_map(m, &s_set, &u_set, safety, utility, &o, &map, &err)) goto fail;
            write_map = 1; /* into DIR once the run is known to fit */
        }
        have_map = 1;
    }
    /* strategy → k → skip set → mask: the library's one tune flow */
    if (cast_tune_plan(m, have_map ? &map : NULL, &to, &run, &err)) {
        if (map_path) cast_fail_prefix(&err, map_path);
        goto fail;
    }
    k = run.k;
    int64_t trainable = run.trainable, trained_values = 0;
    for (int i = 0; i < m->n_tensors; i++) trained_values += run.mask.trainable[i] ? m->tensors[i].numel : 0;
    if (cli_memory_check_tune(m, &s_set, batch, trained_values, to.keep_before, (int64_t)(memory_gb * 1073741824.0), stream, &half_moments))
        goto done;
    to.train.half_moments = half_moments;
    if (write_map) {
        cast_buf b = {0};
        cast_conflict_map_json(&map, &b);
        char *p = cast_path_join(co.dir, "conflict_map.json");
        int bad = co.writer && cast_write_file_atomic(p, b.data, b.len, &err);
        free(p);
        cast_buf_free(&b);
        if (bad) goto fail;
    }

    /* the run */
    cast_train_opts *o = &to.train;
    o->adam = (cast_adamw_opts){lr, beta1, beta2, eps, wd};
    o->schedule = !strcmp(schedule, "cosine") ? CAST_SCHEDULE_COSINE : CAST_SCHEDULE_CONSTANT;
    o->warmup = warmup;
    o->clip = clip;
    o->batch = batch * grad_accum; /* sequences per optimizer step */
    o->micro_batch = batch;
    o->epochs = epochs;
    o->steps = steps;
    o->seed = (uint64_t)seed;
    o->anchor_weight = anchor; /* < 0: unset (1 for pcgrad, else 0) */
    o->save_every = save_every;
    o->shard_optimizer = shard_optimizer && cast_dist_size() > 1;
    ckpt = cast_path_join(co.dir, "checkpoint");
    o->checkpoint_dir = ckpt;
    o->resume = resume;
    /* the last state stays in DIR/checkpoint when the run keeps checkpoints, so --resume can extend it */
    o->final_checkpoint = save_every > 0 || resume;
    log_path = cast_path_join(co.dir, "train_log.jsonl");
    int64_t start = 0;
    if (resume) {
        char *from = cast_checkpoint_find(ckpt);
        start = from ? cast_checkpoint_step(from) : -1;
        free(from);
    }
    if (resume && start < 0) {
        cast_fail(&err, "%s: no checkpoint to resume from", ckpt);
        goto fail;
    }
    if (co.writer && (resume ? trim_log(log_path, start, &err) : cast_write_file_atomic(log_path, "", 0, &err))) goto fail;
    logf = co.writer ? fopen(log_path, "a") : NULL;
    if (co.writer && !logf) {
        cast_fail(&err, "%s: %s", log_path, strerror(errno));
        goto fail;
    }
    tune_log tl = {logf, {0}, 0};
    int64_t total = cast_train_total_steps(o, s_set.n);
    cli_progress_start(&tl.bar, "tune", total);
    o->on_step = on_step;
    o->ctx = &tl;
    int64_t sent0 = cast_dist_bytes();
    int bad = cast_tune_train(m, &run, &s_set, utility ? &u_set : NULL, &to, &err);
    /* payload this rank passed through collectives per optimizer step */
    double comm_mb = (double)(cast_dist_bytes() - sent0) / 1048576.0 / (double)(total > start ? total - start : 1);
    cli_progress_end(&tl.bar);
    double wall = run.wall_s;
    /* memory: this rank's optimizer moments, and the largest peak of any rank */
    double state_mb = tl.optimizer_bytes / 1048576.0, rss_mb = bad ? 0 : cast_dist_max_f64(cast_peak_rss_mb());
    if (bad) goto fail;
    if (!co.writer) { /* under MPI rank 0 alone writes the outputs */
        rc = 0;
        goto done;
    }
    /* outputs: the model folder, the delta, then cast_run.json last (its presence means the run completed) */
    char *dp = cast_path_join(co.dir, "delta.safetensors");
    bad = cast_tune_save(m, &run, co.dir, dtype, delta ? dp : NULL, !strcmp(delta_fmt, "diff") ? CAST_DELTA_DIFF : CAST_DELTA_SPARSE,
                         &err);
    if (!delta && !bad)
        unlink(dp); /* resumed in place without --delta: no stale delta of the earlier run */
/* resumed in place without --delta: no stale delta of the earlier run */
    free(dp);
    if (bad) goto fail;
    cast_buf b = {0};
    cast_buf_puts(&b, "{");
    cast_buf_puts(&b, "\"command\": [");
    for (int i = 0; i < argc; i++) {
        if (i) cast_buf_puts(&b, ", ");
        const char *a = i == 0 ? "cast tune" : argv[i];
        cast_buf_json_string(&b, a, strlen(a));
    }
    cast_buf_puts(&b, "],\n ");
    json_str(&b, "version", CAST_VERSION);
    cast_buf_puts(&b, ", ");
    json_str(&b, "model", pos[0]);
    cast_buf_puts(&b, ", ");
    json_str(&b, "safety", safety);
    cast_buf_puts(&b, ", ");
    json_str(&b, "utility", utility);
    cast_buf_puts(&b, ", ");
    json_str(&b, "map", map_path ? map_path : have_map ? "conflict_map.json (diagnosed by this run)" : NULL);
    cast_buf_printf(&b, ",\n \"strategy\": \"%s\", \"skip\": ", strategy);
    cast_buf_json_number(&b, skip_heads >= 0 ? (double)k / n_heads : skip);
    cast_buf_printf(&b, ", \"skip_heads\": %d, \"seed\": %lld, \"train\": \"%s\", \"kv_freeze\": \"%s\",\n \"skipped\": [", k,
                    (long long)seed, scope, kvf);
    for (int i = 0; i < k; i++) cast_buf_printf(&b, "%s{\"layer\": %d, \"head\": %d}", i ? ", " : "", run.skip[i] / c->heads, run.skip[i] % c->heads);
    cast_buf_printf(&b, "],\n \"trainable_parameters\": %lld, \"total_parameters\": %lld,\n", (long long)trainable,
                    (long long)cast_model_param_count(m));
    cast_buf_printf(&b, " \"optimizer\": {\"name\": \"adamw\", \"lr\": %g, \"beta1\": %g, \"beta2\": %g, \"eps\": %g, \"weight_decay\": %g, "
                        "\"schedule\": \"%s\", \"warmup\": %d, \"clip\": %g},\n",
                    lr, beta1, beta2, eps, wd, schedule, warmup, clip);
    cast_buf_printf(&b, " \"batch\": %d, \"grad_accum\": %d, \"sequences_per_step\": %d, \"epochs\": %d, \"steps\": %lld, \"anchor_weight\": %g, "
                        "\"max_len\": %d, \"on_long\": \"%s\",\n",
                    batch, grad_accum, o->batch, epochs, (long long)total, cast_tune_anchor_weight(&to), d.max_len, cast_on_long_name(d.on_long));
    cast_buf_printf(&b, " \"examples\": {\"safety\": %d, \"utility\": %d}, \"skipped_examples\": {\"safety\": %d, \"utility\": %d}, \"threads\": %d, "
                        "\"resumed_from_step\": %lld, \"wall_s\": %.2f,\n",
                    s_set.n, u_set.n, s_skipped, u_skipped, cast_get_threads(), (long long)(resume ? start : 0), wall);
    cast_buf_printf(&b,
                    " \"ranks\": %d, \"shard_optimizer\": %s, \"optimizer_state_mb_per_rank\": %.1f, \"communication_mb_per_step\": %.3f, "
                    "\"peak_rss_mb\": %.1f, \"compute\": \"%s\", \"moments\": \"%s\", \"stream\": %s}\n",
                    cast_dist_size(), o->shard_optimizer ? "true" : "false", state_mb, comm_mb, rss_mb, m->bf16 ? "bf16" : "f32",
                    o->half_moments ? "bf16" : "f32", m->stream ? "true" : "false");
    char *rp = cast_path_join(co.dir, "cast_run.json");
    bad = cast_write_file_atomic(rp, b.data, b.len, &err);
    free(rp);
    if (!bad && cli_out_commit(&co)) { /* the staged folder replaces DIR (--force) */
        cast_buf_free(&b);
        goto done;
    }
    if (bad) {
        cast_buf_free(&b);
        goto fail;
    }
    if (json) fputs(b.data, stdout);
    else
        printf("tuned %s with strategy %s: %d of %d heads skipped, %lld trainable parameters, %lld steps in %.1f s\nwrote %s\n", pos[0],
               strategy, k, n_heads, (long long)trainable, (long long)total, wall, out);
    if (!json && (s_skipped || u_skipped))
        printf("skipped (longer than --max-len %d): %d safety, %d utility examples\n", d.max_len, s_skipped, u_skipped);
    cast_buf_free(&b);
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    if (logf) fclose(logf);
    cli_out_abort(&co); /* a failed run leaves DIR as it was (committed: nothing to do) */
    free(log_path);
    free(ckpt);
    cast_tune_run_free(&run);
    if (have_map) cast_conflict_map_free(&map);
    cast_seqs_free(&s_set);
    cast_seqs_free(&u_set);
    cli_model_close(&cm);
    return rc;
}

/* cast organism SUBCOMMAND: the model organism (DESIGN.md §5, docs/organism.md).
 *   data   the synthetic world's splits, world.json and the tokenizer
 * More subcommands (e.g. train) are rows of SUBCOMMANDS below: a function
 * taking (argc, argv) with argv[0] the subcommand's name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "base/timer.h"
#include "base/threads.h"
#include "cast.h"
#include "model/model.h"
#include "organism/recipe.h"
#include "text/chat.h"
#include "text/dataset.h"
#include "train/trainer.h"
#include "cli.h"
#include "organism/tokenizer_gen.h"
#include "organism/world.h"

static int organism_data(int argc, char **argv) {
    const char *out = NULL;
    int64_t seed = 1;
    double scale = 1.0;
    int vocab = CAST_ORGANISM_VOCAB, json = 0, force = 0;
    const cli_opt opts[] = {
        {"--out", CLI_STRING, &out, "DIR", "folder to write (created): <split>.jsonl, world.json, tokenizer/"},
        {"--force", CLI_FLAG, &force, NULL, "replace a non-empty --out folder whole (default: refuse)"},
        {"--seed", CLI_INT64, &seed, "S", "world seed (default 1)"},
        {"--scale", CLI_DOUBLE, &scale, "K", "multiply every split's size by K (default 1: 63,500 pretraining examples)"},
        {"--vocab", CLI_INT, &vocab, "N", "tokenizer vocabulary, special tokens included (default 1024)"},
        {"--json", CLI_FLAG, &json, NULL, "print a JSON summary only"},
        {0}};
    const cli_spec spec = {"organism data", "--out DIR [--seed S] [--scale K] [options]",
                           "Writes the model organism's synthetic world: every split as JSONL (prompt/response for training and "
                           "diagnosis, prompt/response/answer for the skills' evaluation, prompts for harmful/benign evaluation), "
                           "world.json, and a byte-level BPE tokenizer with ChatML specials in DIR/tokenizer.",
                           opts, 0, 0};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (!out) return cli_failf("organism data: --out DIR is required");
    if (seed < 0) return cli_failf("organism data: --seed must be >= 0, got %lld", (long long)seed);
    if (!(scale > 0 && scale <= 20)) return cli_failf("organism data: --scale must be in (0, 20], got %g", scale);
    if (vocab < 259 || vocab > 65536) return cli_failf("organism data: --vocab must be in [259, 65536], got %d", vocab);
    cli_out co;
    if (cli_out_begin(&co, out, NULL, 0, force, 0)) return 1;
    if (!co.writer) return cli_out_commit(&co); /* under mpirun: rank 0 writes the world, alone */

    cast_err err = {0};
    double t0 = cast_now_s();
    cast_world w;
    if (cast_world_build(&w, (uint64_t)seed, scale, &err)) {
        cli_out_abort(&co);
        return cli_fail(&err);
    }
    char *stage_tok = cast_path_join(co.dir, "tokenizer"), *tok_dir = cast_path_join(out, "tokenizer");
    cast_token_stats st;
    rc = 1;
    int bad = cast_world_write(&w, co.dir, &err) || cast_organism_write_tokenizer(stage_tok, &w, vocab, &err) ||
              cast_organism_token_stats(stage_tok, &w, CAST_SPLIT_PRETRAIN, &st, &err);
    free(stage_tok);
    if (bad ? cli_fail(&err) : cli_out_commit(&co)) {
        cli_out_abort(&co);
        goto done;
    }
    double secs = cast_now_s() - t0;
    cast_buf b = {0};
    if (json) {
        cast_buf_puts(&b, "{\"out\":");
        cast_buf_json_string(&b, out, strlen(out));
        cast_buf_printf(&b, ",\"seed\":%lld,\"scale\":", (long long)seed);
        cast_buf_json_number(&b, scale);
        cast_buf_puts(&b, ",\"splits\":{");
        for (int s = 0; s < CAST_N_SPLITS; s++) cast_buf_printf(&b, "%s\"%s\":%d", s ? "," : "", cast_split_name(s), w.split[s].n);
        cast_buf_puts(&b, "},\"tokenizer\":{\"path\":");
        cast_buf_json_string(&b, tok_dir, strlen(tok_dir));
        cast_buf_printf(&b, ",\"vocab_size\":%d},\"pretrain_tokens\":{\"mean\":", vocab);
        cast_buf_json_number(&b, st.mean);
        cast_buf_printf(&b, ",\"p95\":%d,\"max\":%d,\"total\":%lld},\"seconds\":", st.p95, st.max, (long long)st.tokens);
        cast_buf_json_number(&b, secs);
        cast_buf_puts(&b, "}\n");
    } else {
        cast_buf_printf(&b, "world      seed %lld, scale %g -> %s/world.json\n\n", (long long)seed, scale, out);
        cast_buf_printf(&b, "  %-14s %8s\n", "split", "examples");
        for (int s = 0; s < CAST_N_SPLITS; s++) cast_buf_printf(&b, "  %-14s %8d\n", cast_split_name(s), w.split[s].n);
        cast_buf_printf(&b, "\ntokenizer  %s: %d tokens (byte-level BPE, ChatML specials)\n", tok_dir, vocab);
        cast_buf_printf(&b, "tokens     pretrain: %.1f per example (p95 %d, max %d) with the chat template\n", st.mean, st.p95,
                        st.max);
        cast_buf_printf(&b, "time       %.2f s\n", secs);
    }
    fputs(b.data, stdout);
    cast_buf_free(&b);
    rc = 0;
done:
    free(tok_dir);
    cast_world_free(&w);
    return rc;
}


typedef struct train_log {
    cli_progress bar;
    FILE *log;
    cast_model *m;
    const char *out, *tok_dir;
    int snapshot_every;
    double last_print;
} train_log;

/* A model folder that cast (and Hugging Face) can load: weights, config, tokenizer. */
static int save_organism(const cast_model *m, const char *out, const char *tok_dir, cast_err *err) {
    if (cast_model_save(m, out, CAST_F32, err)) return -1;
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *src = cast_path_join(tok_dir, files[i]), *dst = cast_path_join(out, files[i]);
        int bad = cast_copy_file(src, dst, err);
        free(src);
        free(dst);
        if (bad) return -1;
    }
    return 0;
}

static int train_step(void *ctx, const cast_step_log *s) {
    train_log *t = ctx;
    char extra[64];
    snprintf(extra, sizeof extra, "loss %.4f", s->loss);
    cli_progress_update(&t->bar, s->step, extra);
    if (!t->log) return 0; /* under mpirun: rank 0 logs, prints and snapshots */
    fprintf(t->log, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.4f, \"tokens_per_s\": %.0f, \"elapsed_s\": %.1f}\n",
            (long long)s->step, s->loss, s->lr, s->grad_norm, s->tokens_per_s, s->elapsed_s);
    fflush(t->log);
    if (!t->bar.enabled && s->elapsed_s - t->last_print >= 30) {
        t->last_print = s->elapsed_s;
        double eta = s->elapsed_s * (double)(s->total_steps - s->step) / (double)s->step;
        fprintf(stderr, "step %lld/%lld  loss %.4f  %.0f tokens/s  %.0f s, ETA %.0f s\n", (long long)s->step, (long long)s->total_steps,
                s->loss, s->tokens_per_s, s->elapsed_s, eta);
    }
    if (t->snapshot_every > 0 && s->step % t->snapshot_every == 0 && s->step < s->total_steps) {
        cast_err err;
        if (save_organism(t->m, t->out, t->tok_dir, &err)) cli_note("snapshot at step %lld not written: %s", (long long)s->step, err.msg);
    }
    return 0;
}

static int organism_train(int argc, char **argv) {
    cast_organism_recipe r;
    cast_organism_recipe_default(&r);
    const char *data = NULL, *out = NULL;
    int threads = 0, save_every = 0, resume = 0, snapshot_every = 0, force = 0, grad_accum = 1;
    int64_t steps = r.steps, seed = (int64_t)r.seed;
    const cli_opt opts[] = {
        {"--data", CLI_STRING, &data, "DIR", "the world from `cast organism data` (pretrain.jsonl, tokenizer/)"},
        {"--out", CLI_STRING, &out, "DIR", "the base model folder to write"},
        {"--force", CLI_FLAG, &force, NULL, "replace a non-empty --out folder whole (default: refuse)"},
        {"--steps", CLI_INT64, &steps, "N", "optimizer steps (default 12000)"},
        {"--batch", CLI_INT, &r.batch, "N", "sequences per forward/backward pass (default 16)"},
        {"--grad-accum", CLI_INT, &grad_accum, "N", "passes accumulated per optimizer step: a step sees batch x N sequences (default 1)"},
        {"--lr", CLI_DOUBLE, &r.lr, "LR", "peak learning rate, cosine decay (default 3e-3)"},
        {"--warmup", CLI_INT, &r.warmup, "N", "warm-up steps (default 200)"},
        {"--hidden", CLI_INT, &r.hidden, "N", "model width (default 128)"},
        {"--layers", CLI_INT, &r.layers, "N", "(default 4)"},
        {"--heads", CLI_INT, &r.heads, "N", "(default 8)"},
        {"--kv-heads", CLI_INT, &r.kv_heads, "N", "(default 4)"},
        {"--inter", CLI_INT, &r.inter, "N", "MLP width (default 384)"},
        {"--seed", CLI_INT64, &seed, "S", "initialisation and data order (default 1)"},
        {"--save-every", CLI_INT, &save_every, "N", "checkpoint every N steps (DIR/checkpoint) for --resume (default 0 = never)"},
        {"--snapshot-every", CLI_INT, &snapshot_every, "N", "also write the model folder every N steps (default 0 = never)"},
        {"--resume", CLI_FLAG, &resume, NULL, "continue from DIR/checkpoint"},
        {"--threads", CLI_INT, &threads, "N", "threads (default 0 = all cores)"},
        {0}};
    const cli_spec spec = {"organism train", "--data DIR --out DIR [options]",
                           "Pretrains the organism's base model on the world's pretraining split (AdamW, cosine schedule, seeded).",
                           opts, 0, 0};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (!data || !out) return cli_failf("organism train: --data DIR and --out DIR are required");
    if (steps <= 0 || r.batch <= 0 || grad_accum <= 0 || !(r.lr > 0) || r.warmup < 0 || r.hidden <= 0 || r.layers <= 0 || r.heads <= 0 ||
        r.kv_heads <= 0 || r.heads % r.kv_heads || r.hidden % r.heads || (r.hidden / r.heads) % 2 || r.inter <= 0)
        return cli_failf("organism train: invalid recipe (steps, batch, lr > 0; heads divide hidden into an even head_dim; kv-heads divide heads)");
    r.steps = steps;
    r.seed = (uint64_t)seed;
    cast_set_threads(threads);
    const char *inputs[] = {data};
    cli_out co;
    if (cli_out_begin(&co, out, inputs, 1, force, resume)) return 1;
    cast_err err = {0};
    char *tok_dir = cast_path_join(data, "tokenizer"), *pre = cast_path_join(data, "pretrain.jsonl");
    char *log_path = cast_path_join(co.dir, "pretrain_log.jsonl"), *ckpt = cast_path_join(co.dir, "checkpoint");
    cast_tokenizer *tok = NULL;
    cast_chat_template *tpl = NULL;
    cast_dataset ds = {0};
    cast_seqs seqs = {0};
    cast_model m = {0};
    cast_mask mask = {0};
    FILE *logf = NULL;
    rc = 1;
    if (cast_tokenizer_load(&tok, tok_dir, &err) || cast_chat_template_open(&tpl, tok, NULL, tok_dir, &err) ||
        cast_dataset_load(&ds, pre, &err) || cast_dataset_encode(&ds, tok, tpl, r.max_len, 0, &seqs, &err)) {
        cli_fail(&err);
        goto done;
    }
    cast_config cfg;
    cast_organism_config(&r, tok, &cfg);
    cast_model_init_random(&m, &cfg, r.seed, (float)r.init_std);
    cast_mask_init(&mask, &m);
    for (int i = 0; i < m.n_tensors; i++) mask.trainable[i] = 1;
    logf = co.writer ? fopen(log_path, resume ? "a" : "w") : NULL;
    if (co.writer && !logf) {
        cli_failf("%s: cannot write", log_path);
        goto done;
    }
    cast_train_opts o;
    cast_train_opts_default(&o);
    o.adam = (cast_adamw_opts){r.lr, 0.9, 0.95, 1e-8, r.weight_decay};
    o.schedule = CAST_SCHEDULE_COSINE;
    o.warmup = r.warmup;
    o.clip = 1.0;
    o.batch = r.batch * grad_accum; /* sequences per optimizer step */
    o.micro_batch = r.batch;
    o.steps = r.steps;
    o.seed = r.seed;
    o.anchor_weight = 0;
    o.save_every = save_every;
    o.checkpoint_dir = ckpt;
    o.resume = resume;
    train_log tl = {{0}, logf, &m, co.dir, tok_dir, snapshot_every, 0};
    cli_progress_start(&tl.bar, "pretrain", r.steps);
    o.on_step = train_step;
    o.ctx = &tl;
    if (co.writer) fprintf(stderr, "organism: %lld parameters, %d examples, %lld steps of %d\n", (long long)cast_model_param_count(&m), seqs.n,
            (long long)r.steps, r.batch);
    double t0 = cast_now_s();
    int bad = cast_train(&m, &mask, &seqs, NULL, &o, &err);
    cli_progress_end(&tl.bar);
    if (bad || (co.writer && save_organism(&m, co.dir, tok_dir, &err))) {
        cli_fail(&err);
        goto done;
    }
    if (!co.writer) {
        rc = cli_out_commit(&co);
        goto done;
    }
    /* the world the model learned, so that `cast organism data` can rebuild it */
    int64_t world_seed = -1;
    double world_scale = 0;
    {
        char *wp = cast_path_join(data, "world.json");
        cast_json *wj = cast_json_parse_file(wp, &err);
        if (wj) {
            cast_json_opt_int(wj, "seed", -1, &world_seed, wp, &err);
            cast_json_opt_number(wj, "scale", 0, &world_scale, wp, &err);
            cast_json_free(wj);
        }
        free(wp);
    }
    cast_buf b = {0};
    cast_buf_printf(&b, "{\"world_seed\": %lld, \"world_scale\": %g,\n ", (long long)world_seed, world_scale);
    cast_buf_printf(&b,
                    "\"data\": \"%s\", \"seed\": %llu, \"hidden\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, \"inter\": %d,\n"
                    " \"parameters\": %lld, \"steps\": %lld, \"batch\": %d, \"grad_accum\": %d, \"lr\": %g, \"warmup\": %d, \"weight_decay\": %g,\n"
                    " \"schedule\": \"cosine\", \"betas\": [0.9, 0.95], \"clip\": 1, \"max_len\": %d, \"init_std\": %g,\n"
                    " \"threads\": %d, \"wall_s\": %.1f, \"version\": \"%s\"}\n",
                    data, (unsigned long long)r.seed, r.hidden, r.layers, r.heads, r.kv_heads, r.inter, (long long)cast_model_param_count(&m),
                    (long long)r.steps, r.batch, grad_accum, r.lr, r.warmup, r.weight_decay, r.max_len, r.init_std, cast_get_threads(),
                    cast_now_s() - t0, CAST_VERSION);
    char *rp = cast_path_join(co.dir, "recipe.json");
    bad = cast_write_file_atomic(rp, b.data, b.len, &err);
    free(rp);
    cast_buf_free(&b);
    if (bad ? cli_fail(&err) : cli_out_commit(&co)) goto done;
    printf("wrote %s (%.0f s)\n", out, cast_now_s() - t0);
    rc = 0;
done:
    if (logf) fclose(logf);
    cast_mask_free(&mask);
    cast_model_free(&m);
    cast_seqs_free(&seqs);
    cast_dataset_free(&ds);
    cast_chat_template_free(tpl);
    cast_tokenizer_free(tok);
    free(tok_dir);
    free(pre);
    free(log_path);
    free(ckpt);
    if (rc) cli_out_abort(&co); /* a failed run leaves DIR as it was */
    return rc;
}

typedef struct {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
} subcommand;

static const subcommand SUBCOMMANDS[] = {
    {"data", organism_data, "write the synthetic world (splits, world.json) and its tokenizer"},
    {"train", organism_train, "pretrain the base model on the world (the shipped checkpoint's recipe)"},
};
#define N_SUB (int)(sizeof SUBCOMMANDS / sizeof SUBCOMMANDS[0])

static void usage(FILE *fp) {
    fprintf(fp, "usage: cast organism SUBCOMMAND [options]\n\nThe model organism: a small chat model trained by cast on a "
                "synthetic world of its own.\n\nsubcommands:\n");
    for (int i = 0; i < N_SUB; i++) fprintf(fp, "  %-8s %s\n", SUBCOMMANDS[i].name, SUBCOMMANDS[i].summary);
    fprintf(fp, "\n'cast organism SUBCOMMAND --help' describes each.\n");
}

int cmd_organism(int argc, char **argv) {
    if (argc < 2) {
        cast_buf names = {0};
        for (int i = 0; i < N_SUB; i++) cast_buf_printf(&names, "%s%s", i ? ", " : "", SUBCOMMANDS[i].name);
        int rc = cli_failf("organism: missing subcommand (%s; see cast organism --help)", names.data);
        cast_buf_free(&names);
        return rc;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < N_SUB; i++)
        if (!strcmp(argv[1], SUBCOMMANDS[i].name)) return SUBCOMMANDS[i].run(argc - 1, argv + 1);
    return cli_failf("organism: unknown subcommand \"%s\" (see cast organism --help)", argv[1]);
}

/* The public API (include/cast.h) over the library's layers: each function
 * maps its parameters onto the internal ones, calls the one flow that the
 * command line also runs, and turns cast_err into cast_error. */
#include "cast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/timer.h"
#include "base/threads.h"
#include "cast/diagnose.h"
#include "cast/select.h"
#include "cast/tune.h"
#include "eval/generate.h"
#include "eval/judge.h"
#include "eval/metrics.h"
#include "model/delta.h"
#include "model/model.h"
#include "report/conflict.h"
#include "text/chat.h"
#include "text/dataset.h"
#include "text/tokenizer.h"

struct cast_llm {
    cast_model m;
    cast_tokenizer *tok;     /* NULL without tokenizer files */
    cast_chat_template *tpl; /* NULL: plain text */
    cast_tune_run last;      /* the last cast_tune, for its delta */
    int have_last;
};

struct cast_data {
    cast_seqs seqs;
    int skipped;
};

struct cast_map {
    cast_conflict_map map;
};

/* ---- errors --------------------------------------------------------------------- */

static cast_code fail_from(cast_error *out, const cast_err *e) {
    cast_code code = e->code ? (cast_code)e->code : CAST_ERR_FORMAT;
    if (out) {
        out->code = code;
        snprintf(out->message, sizeof out->message, "%s", e->msg[0] ? e->msg : "unknown error");
    }
    return code;
}

static cast_code fail_arg(cast_error *out, const char *what) {
    if (out) {
        out->code = CAST_ERR_ARGUMENT;
        snprintf(out->message, sizeof out->message, "%s", what);
    }
    return CAST_ERR_ARGUMENT;
}

static cast_code ok(cast_error *out) {
    if (out) {
        out->code = CAST_OK;
        out->message[0] = '\0';
    }
    return CAST_OK;
}

const char *cast_code_name(cast_code code) {
    static const char *const names[] = {"ok", "io", "format", "argument", "numeric", "memory", "cancelled"};
    return code >= 0 && code <= CAST_ERR_CANCELLED ? names[code] : "unknown";
}

const char *cast_version(void) { return CAST_VERSION; }

/* ---- models ------------------------------------------------------------------------ */

void cast_llm_default_params(cast_llm_params *p) { memset(p, 0, sizeof *p); }

cast_code cast_llm_open(const char *dir, const cast_llm_params *p, cast_llm **out, cast_error *err) {
    cast_llm_params d;
    if (!p) cast_llm_default_params(&d), p = &d;
    if (!dir || !out) return fail_arg(err, "cast_llm_open: dir and out are required");
    *out = NULL;
    cast_compute compute = CAST_COMPUTE_AUTO;
    if (p->compute && cast_compute_parse(p->compute, &compute))
        return fail_arg(err, "cast_llm_open: compute must be \"auto\", \"f32\" or \"bf16\"");
    cast_llm *m = cast_xcalloc(1, sizeof *m);
    cast_err e = {0};
    if (p->threads > 0) cast_set_threads(p->threads);
    if (cast_model_load_as(&m->m, dir, compute, &e) || cast_chat_open_folder(dir, p->chat_template, &m->tok, &m->tpl, &e)) goto fail;
    *out = m;
    return ok(err);
fail:
    cast_llm_free(m);
    return fail_from(err, &e);
}

void cast_llm_free(cast_llm *m) {
    if (!m) return;
    if (m->have_last) cast_tune_run_free(&m->last);
    cast_chat_template_free(m->tpl);
    cast_tokenizer_free(m->tok);
    cast_model_free(&m->m);
    free(m);
}

void cast_llm_get_info(const cast_llm *m, cast_llm_info *out) {
    const cast_config *c = &m->m.cfg;
    memset(out, 0, sizeof *out);
    snprintf(out->architecture, sizeof out->architecture, "%s", c->architecture);
    out->layers = c->layers, out->heads = c->heads, out->kv_heads = c->kv_heads, out->head_dim = c->head_dim;
    out->hidden = c->hidden, out->vocab = c->vocab;
    out->parameters = cast_model_param_count(&m->m);
    out->has_tokenizer = m->tok != NULL;
    out->has_chat_template = m->tpl != NULL;
}

static int parse_dtype(const char *s, cast_dtype dflt, cast_dtype *out) {
    if (!s) *out = dflt;
    else if (!strcmp(s, "f32")) *out = CAST_F32;
    else if (!strcmp(s, "bf16")) *out = CAST_BF16;
    else if (!strcmp(s, "f16")) *out = CAST_F16;
    else return -1;
    return 0;
}

cast_code cast_llm_save(const cast_llm *m, const char *dir, const char *dtype, cast_error *err) {
    cast_dtype dt;
    if (parse_dtype(dtype, m->m.storage, &dt)) return fail_arg(err, "cast_llm_save: dtype must be f32, bf16, f16 or NULL");
    cast_err e = {0};
    if (cast_mkdirs(dir, &e) || cast_model_save(&m->m, dir, dt, &e)) return fail_from(err, &e);
    return ok(err);
}

cast_code cast_llm_apply_delta(cast_llm *m, const char *delta_path, double scale, int force, cast_error *err) {
    cast_err e = {0};
    cast_delta_format fmt;
    char recorded[CAST_FINGERPRINT_LEN], mine[CAST_FINGERPRINT_LEN];
    if (cast_delta_info(delta_path, &fmt, recorded, &e)) return fail_from(err, &e);
    cast_model_fingerprint(&m->m, mine);
    if (recorded[0] && strcmp(recorded, mine) && !force) {
        cast_fail(&e, "%s: made from another base model (fingerprint %s, this model %s)", delta_path, recorded, mine);
        return fail_from(err, &e);
    }
    if (cast_delta_apply(&m->m, delta_path, scale, &e)) return fail_from(err, &e);
    return ok(err);
}

/* ---- datasets ------------------------------------------------------------------------ */

void cast_data_default_params(cast_data_params *p) {
    memset(p, 0, sizeof *p);
    p->max_len = 256;
    p->on_long = "skip";
    p->shuffle_seed = -1;
}

cast_code cast_data_read(const cast_llm *m, const char *path, const cast_data_params *p, cast_data **out, cast_error *err) {
    cast_data_params d;
    if (!p) cast_data_default_params(&d), p = &d;
    cast_on_long on_long;
    if (cast_on_long_parse(p->on_long ? p->on_long : "skip", &on_long)) return fail_arg(err, "cast_data_read: on_long must be skip, truncate or error");
    if (p->first < 0 || p->max_len < 0) return fail_arg(err, "cast_data_read: first and max_len must be >= 0");
    *out = NULL;
    cast_err e = {0};
    cast_dataset ds;
    if (cast_dataset_load(&ds, path, &e)) return fail_from(err, &e);
    if (p->shuffle_seed >= 0) cast_dataset_shuffle(&ds, (uint64_t)p->shuffle_seed);
    if (p->first > 0) cast_dataset_take(&ds, 0, p->first);
    cast_data *data = cast_xcalloc(1, sizeof *data);
    cast_encode_opts eo = {p->max_len, 0, on_long, m->m.cfg.vocab};
    int *seq_example = NULL;
    int bad = ds.kind != CAST_DATA_TOKENS && !m->tok
                  ? cast_fail(&e, "%s: this dataset holds text, and the model has no tokenizer", path)
                  : cast_dataset_encode_opts(&ds, m->tok, m->tpl, &eo, &data->seqs, &data->skipped, &seq_example, &e) ||
                        cast_dataset_check_vocab(&ds, &data->seqs, seq_example, m->m.cfg.vocab, path, &e);
    free(seq_example);
    cast_dataset_free(&ds);
    if (bad) {
        cast_data_free(data);
        return fail_from(err, &e);
    }
    *out = data;
    return ok(err);
}

int cast_data_count(const cast_data *d) { return d->seqs.n; }
int cast_data_skipped(const cast_data *d) { return d->skipped; }

void cast_data_free(cast_data *d) {
    if (!d) return;
    cast_seqs_free(&d->seqs);
    free(d);
}

/* ---- diagnosis -------------------------------------------------------------------------- */

void cast_diagnose_default_params(cast_diagnose_params *p) {
    memset(p, 0, sizeof *p);
    cast_diag_opts o;
    cast_diag_opts_default(&o);
    p->kv_in_score = o.kv_in_score;
    p->batch = o.micro_batch;
    p->null_permutations = o.null_permutations;
    p->seed = o.seed;
}

static void on_diag_progress(void *ctx, int64_t done, int64_t total, const char *stage) {
    const cast_diagnose_params *p = ctx;
    double f = total > 0 ? (double)done / (double)total : 1.0;
    p->progress(p->user, f > 1 ? 1 : f, stage);
}

cast_code cast_diagnose(cast_llm *m, const cast_data *safety, const cast_data *utility, const cast_diagnose_params *p,
                        cast_map **out, cast_error *err) {
    cast_diagnose_params d;
    if (!p) cast_diagnose_default_params(&d), p = &d;
    if (!safety || !utility || !out) return fail_arg(err, "cast_diagnose: safety, utility and out are required");
    cast_diag_opts o;
    cast_diag_opts_default(&o);
    if ((p->oc && cast_oc_parse(p->oc, &o.oc)) || (p->fs && cast_fs_parse(p->fs, &o.fs)) ||
        (p->combine && cast_combine_parse(p->combine, &o.combine)) || (p->unit && cast_unit_parse(p->unit, &o.unit)))
        return fail_arg(err, "cast_diagnose: unknown oc, fs, combine or unit (see include/cast.h)");
    if (p->batch <= 0 || p->null_permutations < 0) return fail_arg(err, "cast_diagnose: batch must be > 0, null_permutations >= 0");
    o.kv_in_score = p->kv_in_score;
    o.micro_batch = p->batch;
    o.null_permutations = p->null_permutations;
    o.seed = p->seed;
    if (p->progress) {
        o.progress = on_diag_progress;
        o.ctx = (void *)p;
    }
    cast_map *map = cast_xcalloc(1, sizeof *map);
    cast_err e = {0};
    if (cast_diagnose_map(&m->m, &safety->seqs, &utility->seqs, "safety", "utility", &o, &map->map, &e)) {
        free(map);
        return fail_from(err, &e);
    }
    *out = map;
    return ok(err);
}

cast_code cast_map_read(const char *path, cast_map **out, cast_error *err) {
    cast_map *map = cast_xcalloc(1, sizeof *map);
    cast_err e = {0};
    if (cast_conflict_map_load(&map->map, path, &e)) {
        free(map);
        return fail_from(err, &e);
    }
    *out = map;
    return ok(err);
}

cast_code cast_map_write(const cast_map *map, const char *dir, cast_error *err) {
    cast_err e = {0};
    if (cast_mkdirs(dir, &e) || cast_conflict_map_write(&map->map, dir, &e)) return fail_from(err, &e);
    return ok(err);
}

int cast_map_heads(const cast_map *map) { return map->map.layers * map->map.heads; }

void cast_map_head(const cast_map *map, int index, cast_head_score *out) {
    memset(out, 0, sizeof *out);
    if (index < 0 || index >= cast_map_heads(map)) return;
    const cast_head_stat *s = &map->map.stat[index];
    *out = (cast_head_score){s->layer, s->head, s->cos, s->oc, s->fs, s->score, s->rank, cast_head_conflicts(&map->map, s)};
}

double cast_map_concentration(const cast_map *map) { return map->map.concentration; }

void cast_map_free(cast_map *map) {
    if (!map) return;
    cast_conflict_map_free(&map->map);
    free(map);
}

cast_code cast_select(const cast_llm *m, const cast_map *map, const char *strategy, int k, uint64_t seed, int *heads, int *n,
                      cast_error *err) {
    cast_tune_opts o;
    cast_tune_opts_default(&o);
    if (!strategy || cast_strategy_parse(strategy, &o.strategy))
        return fail_arg(err, "cast_select: strategy must be cast, random, inverse, oc, fs, full or pcgrad");
    o.skip_heads = k;
    o.select_seed = seed;
    cast_tune_run run;
    cast_err e = {0};
    if (cast_tune_plan(&m->m, map ? &map->map : NULL, &o, &run, &e)) return fail_from(err, &e);
    memcpy(heads, run.skip, sizeof(int) * (size_t)run.k);
    *n = run.k;
    cast_tune_run_free(&run);
    return ok(err);
}

/* ---- tuning --------------------------------------------------------------------------- */

void cast_tune_default_params(cast_tune_params *p) {
    memset(p, 0, sizeof *p);
    cast_tune_opts o;
    cast_tune_opts_default(&o);
    p->strategy = "cast";
    p->skip = o.skip;
    p->skip_heads = -1;
    p->train = "attn";
    p->kv_freeze = "all";
    p->lr = o.train.adam.lr;
    p->beta1 = o.train.adam.beta1;
    p->beta2 = o.train.adam.beta2;
    p->eps = o.train.adam.eps;
    p->weight_decay = o.train.adam.weight_decay;
    p->schedule = "constant";
    p->clip = o.train.clip;
    p->batch = 4;
    p->grad_accum = 4;
    p->epochs = o.train.epochs;
    p->anchor_weight = -1;
}

typedef struct tune_watch {
    const cast_tune_params *p;
    int cancelled;
    int64_t steps;
    double loss;
} tune_watch;

static int on_tune_step(void *ctx, const cast_step_log *s) {
    tune_watch *w = ctx;
    w->steps = s->step;
    w->loss = s->loss;
    if (w->p->progress && w->p->progress(w->p->user, s->step, s->total_steps, s->loss)) w->cancelled = 1;
    if (w->p->cancel && *w->p->cancel) w->cancelled = 1;
    return w->cancelled;
}

cast_code cast_tune(cast_llm *m, const cast_data *safety, const cast_data *utility, const cast_map *map, const cast_tune_params *p,
                    cast_tune_result *result, int *skipped, cast_error *err) {
    cast_tune_params d;
    if (!p) cast_tune_default_params(&d), p = &d;
    if (!safety) return fail_arg(err, "cast_tune: a safety set is required");
    cast_tune_opts o;
    cast_tune_opts_default(&o);
    if (cast_strategy_parse(p->strategy ? p->strategy : "cast", &o.strategy))
        return fail_arg(err, "cast_tune: strategy must be cast, random, inverse, oc, fs, full or pcgrad");
    if (cast_scope_parse(p->train ? p->train : "attn", &o.scope)) return fail_arg(err, "cast_tune: train must be attn, attn+mlp or all");
    const char *kvf = p->kv_freeze ? p->kv_freeze : "all", *sched = p->schedule ? p->schedule : "constant";
    if (strcmp(kvf, "all") && strcmp(kvf, "any")) return fail_arg(err, "cast_tune: kv_freeze must be all or any");
    if (strcmp(sched, "constant") && strcmp(sched, "cosine")) return fail_arg(err, "cast_tune: schedule must be constant or cosine");
    if (!(p->lr > 0) || p->batch <= 0 || p->grad_accum <= 0 || (p->steps <= 0 && p->epochs <= 0) || p->warmup < 0 || p->clip < 0 ||
        !(p->skip >= 0 && p->skip < 1))
        return fail_arg(err, "cast_tune: lr, batch, grad_accum, epochs or steps must be > 0; warmup, clip >= 0; skip in [0, 1)");
    if (p->anchor_weight > 0 && !utility) return fail_arg(err, "cast_tune: anchor_weight needs a utility set");
    o.skip = p->skip;
    o.skip_heads = p->skip_heads;
    o.fixed = p->heads;
    o.n_fixed = p->heads ? p->n_heads : 0;
    o.select_seed = p->seed;
    o.kv_freeze = !strcmp(kvf, "any") ? CAST_KV_FREEZE_ANY : CAST_KV_FREEZE_ALL;
    o.keep_before = p->keep_delta;
    cast_train_opts *t = &o.train;
    t->adam = (cast_adamw_opts){p->lr, p->beta1, p->beta2, p->eps, p->weight_decay};
    t->schedule = !strcmp(sched, "cosine") ? CAST_SCHEDULE_COSINE : CAST_SCHEDULE_CONSTANT;
    t->warmup = p->warmup;
    t->clip = p->clip;
    t->batch = p->batch * p->grad_accum;
    t->micro_batch = p->batch;
    t->epochs = p->epochs;
    t->steps = p->steps;
    t->seed = p->seed;
    t->anchor_weight = p->anchor_weight;
    t->checkpoint_dir = p->checkpoint_dir;
    t->save_every = p->checkpoint_dir ? p->save_every : 0;
    t->resume = p->resume;
    t->final_checkpoint = p->checkpoint_dir && (p->save_every > 0 || p->resume);
    tune_watch w = {p, 0, 0, NAN};
    t->on_step = on_tune_step;
    t->ctx = &w;
    if (m->have_last) cast_tune_run_free(&m->last);
    m->have_last = 0;
    cast_err e = {0};
    cast_tune_run *run = &m->last;
    if (cast_tune_plan(&m->m, map ? &map->map : NULL, &o, run, &e)) return fail_from(err, &e);
    m->have_last = 1;
    if (skipped) memcpy(skipped, run->skip, sizeof(int) * (size_t)run->k);
    if (cast_tune_train(&m->m, run, &safety->seqs, utility ? &utility->seqs : NULL, &o, &e)) return fail_from(err, &e);
    if (result) *result = (cast_tune_result){run->k, run->trainable, w.steps, w.loss, run->wall_s};
    if (w.cancelled) {
        cast_fail_as(&e, CAST_E_CANCELLED, "cast_tune: stopped by the caller after step %lld", (long long)w.steps);
        return fail_from(err, &e);
    }
    return ok(err);
}

cast_code cast_tune_write_delta(const cast_llm *m, const char *path, const char *format, cast_error *err) {
    const char *f = format ? format : "sparse";
    if (strcmp(f, "sparse") && strcmp(f, "diff")) return fail_arg(err, "cast_tune_write_delta: format must be sparse or diff");
    if (!m->have_last || !m->last.before) return fail_arg(err, "cast_tune_write_delta: needs a cast_tune with keep_delta first");
    cast_err e = {0};
    if (cast_tune_delta_write(&m->m, &m->last, path, !strcmp(f, "diff") ? CAST_DELTA_DIFF : CAST_DELTA_SPARSE, &e))
        return fail_from(err, &e);
    return ok(err);
}

/* ---- evaluation and generation ------------------------------------------------------------ */

void cast_eval_default_params(cast_eval_params *p) {
    memset(p, 0, sizeof *p);
    cast_eval_opts o;
    cast_eval_opts_default(&o);
    p->max_new = o.max_new;
    p->max_new_exact = o.max_new_exact;
    p->batch = o.batch;
}

cast_code cast_evaluate(cast_llm *m, const char *harmful, const char *benign, const char *const *utility, int n_utility,
                        const cast_eval_params *p, cast_eval_result *result, char **json, cast_error *err) {
    cast_eval_params d;
    if (!p) cast_eval_default_params(&d), p = &d;
    if (n_utility < 0 || n_utility > 16 || (n_utility && !utility)) return fail_arg(err, "cast_evaluate: 0 to 16 utility files");
    if (p->max_new <= 0 || p->max_new_exact <= 0 || p->batch <= 0 || p->first < 0 || p->fewshot < 0)
        return fail_arg(err, "cast_evaluate: max_new, max_new_exact, batch must be > 0; first, fewshot >= 0");
    if ((harmful || benign) && !m->tok) return fail_arg(err, "cast_evaluate: refusal sets need a model with a tokenizer");
    cast_judge judge;
    cast_judge_init(&judge);
    cast_eval_opts o;
    cast_eval_opts_default(&o);
    o.max_new = p->max_new;
    o.max_new_exact = p->max_new_exact;
    o.batch = p->batch;
    o.limit = p->first;
    o.fewshot = p->fewshot;
    o.judge = &judge;
    cast_eval_set sets[18], *hs, *bs, *us;
    int n = 0;
    cast_err e = {0};
    int bad = cast_eval_sets_open(&m->m, m->tok, m->tpl, harmful, benign, utility, n_utility, &o, sets, &n, &hs, &bs, &us, &e);
    for (int i = 0; i < n && !bad; i++) bad = cast_eval_set_run(&sets[i], &m->m, m->tok, &o, &e);
    cast_code rc = bad ? fail_from(err, &e) : CAST_OK;
    if (rc == CAST_OK && result) {
        memset(result, 0, sizeof *result);
        result->harmful_refusal = result->benign_refusal = NAN;
        for (int i = 0; i < n; i++) {
            const cast_eval_set *s = &sets[i];
            if (s->role == CAST_EVAL_HARMFUL) result->harmful_refusal = s->refusal_rate;
            else if (s->role == CAST_EVAL_BENIGN) result->benign_refusal = s->refusal_rate;
            else {
                const char *names[4];
                double values[4];
                cast_eval_set_metrics(s, names, values);
                int u = result->n_utility++;
                snprintf(result->utility[u].metric, sizeof result->utility[u].metric, "%s", names[0]);
                result->utility[u].value = values[0];
                result->utility[u].n = s->n;
            }
        }
    }
    if (rc == CAST_OK && json) {
        int stops[16];
        cast_eval_report rep = {m->m.path, hs, bs, us, n_utility, &o, m->tpl ? cast_chat_template_name(m->tpl) : NULL, stops,
                                cast_eval_stop_ids(&m->m, m->tok, m->tpl, stops, 16), cast_get_threads()};
        cast_buf b = {0};
        cast_eval_json(&rep, NULL, NULL, 0, &b);
        *json = b.data;
    }
    for (int i = 0; i < n; i++) cast_eval_set_free(&sets[i]);
    cast_judge_free(&judge);
    return rc == CAST_OK ? ok(err) : rc;
}

cast_code cast_generate_reply(cast_llm *m, const char *user_message, int max_new, char **reply, cast_error *err) {
    if (!m->tok) return fail_arg(err, "cast_generate_reply: the model has no tokenizer");
    if (!user_message || max_new <= 0) return fail_arg(err, "cast_generate_reply: a message and max_new > 0 are required");
    cast_err e = {0};
    int *ids = NULL, *labels = NULL, n = 0;
    cast_message msg = {"user", user_message};
    int bad = m->tpl ? cast_chat_encode(m->tpl, m->tok, &msg, 1, 1, &ids, &labels, &n, &e)
                     : cast_tokenizer_encode(m->tok, user_message, strlen(user_message), 1, &ids, &n, &e);
    if (bad) return fail_from(err, &e);
    cast_seqs prompt = {0}, out = {0};
    if (!labels) labels = cast_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) labels[i] = CAST_IGNORE_LABEL; /* a prompt: nothing scored */
    cast_seqs_push(&prompt, ids, labels, n);
    int stops[16];
    cast_gen_opts g = {0};
    g.max_new = max_new;
    g.top_p = 1;
    g.stop_ids = stops;
    g.n_stop = cast_eval_stop_ids(&m->m, m->tok, m->tpl, stops, 16);
    bad = cast_generate(&m->m, &prompt, &g, &out, &e) || cast_tokenizer_decode(m->tok, out.ids + out.off[0], cast_seqs_len(&out, 0), 1, reply, &e);
    free(ids);
    free(labels);
    cast_seqs_free(&prompt);
    cast_seqs_free(&out);
    return bad ? fail_from(err, &e) : ok(err);
}

/* What several commands share: opening a model folder with its tokenizer and
 * chat template, and turning a dataset file into scored sequences. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "dist/dist.h"
#include "cli.h"

int cli_model_load(cast_model *m, const char *path, const char *compute) {
    cast_compute c = CAST_COMPUTE_AUTO;
    if (compute && cast_compute_parse(compute, &c)) return cli_failf("--compute must be auto, f32 or bf16 (got \"%s\")", compute);
    cast_err err = {0};
    return cast_model_load_as(m, path, c, &err) ? cli_fail(&err) : 0;
}

static int model_open(cli_model *cm, const char *path, const char *template_name, const char *compute, int weights) {
    memset(cm, 0, sizeof *cm);
    cm->path = path;
    cast_err err = {0};
    if (weights ? cli_model_load(&cm->m, path, compute) : (cast_model_load_header(&cm->m, path, &err) ? cli_fail(&err) : 0)) return 1;
    if (cast_chat_open_folder(path, template_name, &cm->tok, &cm->tpl, &err)) {
        cli_fail(&err);
        cli_model_close(cm);
        return 1;
    }
    return 0;
}

int cli_model_open(cli_model *cm, const char *path, const char *template_name, const char *compute) {
    return model_open(cm, path, template_name, compute, 1);
}

int cli_model_open_header(cli_model *cm, const char *path) {
    return model_open(cm, path, NULL, NULL, 0);
}

void cli_model_close(cli_model *cm) {
    cast_chat_template_free(cm->tpl);
    cast_tokenizer_free(cm->tok);
    cast_model_free(&cm->m);
    memset(cm, 0, sizeof *cm);
}

int cli_on_long(const char *command, const char *value, cast_on_long *out) {
    if (cast_on_long_parse(value, out)) return cli_failf("%s: --on-long must be skip, truncate or error (got \"%s\")", command, value);
    return 0;
}

int cli_encode_file(cli_model *cm, const char *path, const cli_data_opts *o, cast_seqs *out, cast_dataset *keep,
                    int *skipped) {
    cast_err err = {0};
    cast_dataset ds;
    memset(out, 0, sizeof *out);
    if (skipped) *skipped = 0;
    if (cast_dataset_load(&ds, path, &err)) return cli_fail(&err);
    if (o->seed >= 0) cast_dataset_shuffle(&ds, (uint64_t)o->seed);
    if (o->first > 0) cast_dataset_take(&ds, 0, o->first);
    if (ds.kind != CAST_DATA_TOKENS && !cm->tok) {
        cast_dataset_free(&ds);
        return cli_failf("%s: this dataset holds text, and %s has no tokenizer.json", path, cm->path);
    }
    /* pre-tokenized ids are bounded by the model's embedding rows, not the
     * tokenizer's size: Qwen2 checkpoints pad vocab_size beyond it */
    cast_encode_opts eo = {o->max_len, 0, o->on_long, cm->m.cfg.vocab};
    int n_skipped = 0, *seq_example = NULL;
    if (cast_dataset_encode_opts(&ds, cm->tok, cm->tpl, &eo, out, &n_skipped, &seq_example, &err)) {
        cast_dataset_free(&ds);
        return cli_fail(&err);
    }
    /* every id and label must have a row in the embedding table */
    if (cast_dataset_check_vocab(&ds, out, seq_example, cm->m.cfg.vocab, path, &err)) {
        free(seq_example);
        cast_dataset_free(&ds);
        cast_seqs_free(out);
        return cli_fail(&err);
    }
    if (n_skipped && o->on_long == CAST_ON_LONG_TRUNCATE)
        cli_note("%s: %d of %d examples have no scored token within --max-len %d tokens: skipped (--on-long truncate)", path,
                 n_skipped, ds.n, o->max_len);
    else if (n_skipped)
        cli_note("%s: %d of %d examples are longer than --max-len %d tokens: skipped (--on-long skip)", path, n_skipped, ds.n,
                 o->max_len);
    if (skipped) *skipped = n_skipped;
    if (keep) {
        cast_dataset_keep(&ds, seq_example, out->n);
        *keep = ds;
    } else cast_dataset_free(&ds);
    free(seq_example);
    return 0;
}

int cli_read_messages(const char *path, cli_messages *out) {
    cast_err err = {0};
    memset(out, 0, sizeof *out);
    out->json = cast_json_parse_file(path, &err);
    if (!out->json) return cli_fail(&err);
    int n = cast_json_array_size(out->json);
    if (!cast_json_is_array(out->json) || n == 0) {
        cli_messages_free(out);
        return cli_failf("%s: expected a non-empty JSON array of {\"role\", \"content\"}", path);
    }
    out->m = cast_xcalloc((size_t)n, sizeof *out->m);
    for (int i = 0; i < n; i++) {
        cast_json *e = cast_json_array_item(out->json, i);
        const char *role = cast_json_string(cast_json_get(e, "role")), *content = cast_json_string(cast_json_get(e, "content"));
        if (!role || !content) {
            cli_messages_free(out);
            return cli_failf("%s: message %d needs string \"role\" and \"content\"", path, i);
        }
        out->m[i] = (cast_message){role, content};
    }
    out->n = n;
    return 0;
}

void cli_messages_free(cli_messages *msgs) {
    free(msgs->m);
    cast_json_free(msgs->json);
    memset(msgs, 0, sizeof *msgs);
}

/* ---- output folders -------------------------------------------------------------- */

/* 1 after printing when out is, contains or is inside an input. */
static int out_overlaps(const char *out, const char *const *inputs, int n_inputs) {
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i]) continue;
        switch (cast_path_relation(out, inputs[i])) {
        case CAST_PATH_SAME: return cli_failf("%s: this output is the input %s; choose another output", out, inputs[i]);
        case CAST_PATH_INSIDE: return cli_failf("%s: this output is inside the input %s; choose another output", out, inputs[i]);
        case CAST_PATH_CONTAINS: return cli_failf("%s: this output contains the input %s; choose another output", out, inputs[i]);
        case CAST_PATH_UNRELATED: break;
        }
    }
    return 0;
}

int cli_out_file_check(const char *out_file, const char *const *inputs, int n_inputs) {
    return out_overlaps(out_file, inputs, n_inputs);
}

static int out_prepare(cli_out *o, const char *out_dir, const char *const *inputs, int n_inputs, int force, int resume);

/* Rank 0 prepares the folder; every rank learns where it is (a failure on
 * rank 0 ends the job before the others go on). */
int cli_out_begin(cli_out *o, const char *out_dir, const char *const *inputs, int n_inputs, int force, int resume) {
    if (cast_dist_rank() == 0) {
        int rc = out_prepare(o, out_dir, inputs, n_inputs, force, resume);
        o->writer = 1;
        if (rc) return rc;
    } else
        memset(o, 0, sizeof *o);
    if (cast_dist_size() == 1) return 0;
    uint64_t len = o->dir ? strlen(o->dir) : 0;
    cast_dist_bcast(&len, sizeof len, 0);
    if (!o->writer) {
        o->shared_dir = cast_xcalloc(len + 1, 1);
        o->dir = o->shared_dir;
        o->final = out_dir;
    }
    cast_dist_bcast((void *)o->dir, len, 0);
    return 0;
}

static int out_prepare(cli_out *o, const char *out_dir, const char *const *inputs, int n_inputs, int force, int resume) {
    memset(o, 0, sizeof *o);
    cast_err err = {0};
    if (out_overlaps(out_dir, inputs, n_inputs)) return 1;
    int empty = cast_dir_is_empty(out_dir);
    if (empty < 0 && access(out_dir, F_OK) == 0) return cli_failf("%s: exists and is not a folder", out_dir);
    if (resume) {
        if (empty < 0) return cli_failf("%s: no such folder to resume from", out_dir);
    } else if (empty == 0) {
        if (!force) return cli_failf("%s: the output folder is not empty; --force replaces it whole", out_dir);
        if (cast_stage_dir(out_dir, &o->stage, &err)) return cli_fail(&err);
        o->dir = o->stage;
        o->final = out_dir;
        return 0;
    } else if (cast_mkdirs(out_dir, &err)) {
        return cli_fail(&err);
    }
    o->created = empty < 0;
    o->dir = o->final = out_dir;
    return 0;
}

int cli_out_commit(cli_out *o) {
    if (!o->writer) {
        free(o->shared_dir);
        memset(o, 0, sizeof *o);
        return 0;
    }
    cast_err err = {0};
    int rc = o->stage && cast_stage_commit(o->final, o->stage, &err) ? cli_fail(&err) : 0;
    if (rc) cast_remove_tree(o->stage, &err);
    free(o->stage);
    memset(o, 0, sizeof *o);
    return rc;
}

void cli_out_abort(cli_out *o) {
    if (!o->writer) {
        free(o->shared_dir);
        memset(o, 0, sizeof *o);
        return;
    }
    cast_err err = {0};
    if (o->stage) cast_remove_tree(o->stage, &err);
    if (o->created) rmdir(o->final); /* only when still empty */
    free(o->stage);
    memset(o, 0, sizeof *o);
}

/* What several commands share: opening a model folder with its tokenizer and
 * chat template, and turning a dataset file into scored sequences. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "cli.h"

static int has_tokenizer_files(const char *dir) {
    static const char *const names[] = {"tokenizer.json", "tokenizer.json.gz", "vocab.json"};
    int found = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = cast_path_join(dir, names[i]);
        found |= cast_file_exists(p);
        free(p);
    }
    return found;
}

int cli_model_open(cli_model *cm, const char *path, const char *template_name) {
    memset(cm, 0, sizeof *cm);
    cm->path = path;
    cast_err err = {{0}};
    if (cast_model_load(&cm->m, path, &err)) return cli_fail(&err);
    if (has_tokenizer_files(path) || template_name) {
        if (cast_tokenizer_load(&cm->tok, path, &err)) goto fail;
        if (cast_chat_template_open(&cm->tpl, cm->tok, template_name, path, &err)) {
            if (template_name) goto fail;
            cm->tpl = NULL; /* no chat template: plain prompt + response text */
        }
    }
    return 0;
fail:
    cli_fail(&err);
    cli_model_close(cm);
    return 1;
}

void cli_model_close(cli_model *cm) {
    cast_chat_template_free(cm->tpl);
    cast_tokenizer_free(cm->tok);
    cast_model_free(&cm->m);
    memset(cm, 0, sizeof *cm);
}

int cli_encode_file(cli_model *cm, const char *path, int max_examples, int max_len, int64_t seed, cast_seqs *out,
                    cast_dataset *keep) {
    cast_err err = {{0}};
    cast_dataset ds;
    memset(out, 0, sizeof *out);
    if (cast_dataset_load(&ds, path, &err)) return cli_fail(&err);
    if (seed >= 0) cast_dataset_shuffle(&ds, (uint64_t)seed);
    if (max_examples > 0) cast_dataset_take(&ds, 0, max_examples);
    if (ds.kind != CAST_DATA_TOKENS && !cm->tok) {
        cast_dataset_free(&ds);
        return cli_failf("%s: this dataset holds text, and %s has no tokenizer.json", path, cm->path);
    }
    if (cast_dataset_encode(&ds, cm->tok, cm->tpl, max_len, 0, out, &err)) {
        cast_dataset_free(&ds);
        return cli_fail(&err);
    }
    /* every id and label must have a row in the embedding table */
    int V = cm->m.cfg.vocab;
    for (int i = 0; i < out->n; i++)
        for (int64_t t = out->off[i]; t < out->off[i + 1]; t++) {
            int id = out->ids[t], lab = out->labels[t];
            const char *what = id < 0 || id >= V ? "token id" : lab != CAST_IGNORE_LABEL && (lab < 0 || lab >= V) ? "label" : NULL;
            if (!what) continue;
            cli_failf("%s:%d: %s %d is outside the model's vocabulary (%d): tokenizer and model do not match", path,
                      i < ds.n ? ds.ex[i].line : 0, what, what[0] == 't' ? id : lab, V);
            cast_dataset_free(&ds);
            cast_seqs_free(out);
            return 1;
        }
    if (keep) *keep = ds;
    else cast_dataset_free(&ds);
    return 0;
}

int cli_read_messages(const char *path, cli_messages *out) {
    cast_err err = {{0}};
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

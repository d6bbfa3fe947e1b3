/* cast_dataset_encode_opts: the --on-long policies (skip, truncate, error),
 * their counts and example indices, the all-skipped error, and the vocabulary
 * bound of pre-tokenized ids (the model's vocab_size, which may exceed the
 * tokenizer's size as in Qwen2 checkpoints). Plain-text encoding with the
 * Mistral tokenizer: prompt + newline unscored, response + </s> scored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "check.h"
#include "model/seqs.h"
#include "text/dataset.h"
#include "text/tokenizer.h"

static char *tmp_dir;

static char *write_tmp(const char *name, const char *data) {
    char *p = cast_path_join(tmp_dir, name);
    cast_err err;
    CHECK_MSG(cast_write_file_atomic(p, data, strlen(data), &err) == 0, "%s", err.msg);
    return p;
}

static int load(cast_dataset *d, const char *name, const char *data) {
    char *p = write_tmp(name, data);
    cast_err err;
    int rc = cast_dataset_load(d, p, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    free(p);
    return rc;
}

static int scored(const cast_seqs *s, int i) {
    int n = 0;
    for (int64_t t = s->off[i] + 1; t < s->off[i + 1]; t++) n += s->labels[t] != CAST_IGNORE_LABEL;
    return n;
}

static void test_policies(const cast_tokenizer *tok) {
    /* example 2 has a long prompt: cut at a short limit, none of its response is left */
    cast_dataset d;
    if (load(&d, "long.jsonl",
             "{\"prompt\": \"Hi\", \"response\": \"Hello there, how are you today?\"}\n"
             "{\"prompt\": \"one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen\", "
             "\"response\": \"Numbers.\"}\n"
             "{\"prompt\": \"Yes?\", \"response\": \"Yes.\"}\n"))
        return;
    cast_err err;
    cast_seqs full, s;
    cast_encode_opts o = {0, 0, CAST_ON_LONG_SKIP, 0};
    int skipped = -1, *which = NULL;
    CHECK_MSG(cast_dataset_encode_opts(&d, tok, NULL, &o, &full, &skipped, &which, &err) == 0, "%s", err.msg);
    CHECK(full.n == 3 && skipped == 0 && which && which[0] == 0 && which[2] == 2);
    free(which);
    int len0 = cast_seqs_len(&full, 0), len1 = cast_seqs_len(&full, 1), len2 = cast_seqs_len(&full, 2);
    CHECK_MSG(len2 < len0 && len0 < len1 && len1 > 20, "lengths %d %d %d", len0, len1, len2);
    int limit = len0; /* example 0 fits exactly, example 1 does not */

    /* skip: example 1 left out, counted; the others untouched */
    o.max_len = limit;
    CHECK(cast_dataset_encode_opts(&d, tok, NULL, &o, &s, &skipped, &which, &err) == 0);
    CHECK(s.n == 2 && skipped == 1 && which[0] == 0 && which[1] == 2);
    CHECK(cast_seqs_len(&s, 0) == len0 && cast_seqs_len(&s, 1) == len2);
    CHECK(memcmp(s.ids + s.off[1], full.ids + full.off[2], sizeof(int) * (size_t)len2) == 0);
    cast_seqs_free(&s);
    free(which);

    /* truncate: example 1 cut to the limit keeps no scored token: skipped too */
    o.on_long = CAST_ON_LONG_TRUNCATE;
    CHECK(cast_dataset_encode_opts(&d, tok, NULL, &o, &s, &skipped, NULL, &err) == 0);
    CHECK(s.n == 2 && skipped == 1);
    cast_seqs_free(&s);
    /* ... but cut where part of its response is left, it stays, max_len long */
    o.max_len = len1 - 2;
    CHECK(cast_dataset_encode_opts(&d, tok, NULL, &o, &s, &skipped, &which, &err) == 0);
    CHECK(s.n == 3 && skipped == 0 && which[1] == 1);
    CHECK(cast_seqs_len(&s, 1) == len1 - 2 && scored(&s, 1) == scored(&full, 1) - 2);
    CHECK(memcmp(s.ids + s.off[1], full.ids + full.off[1], sizeof(int) * (size_t)(len1 - 2)) == 0);
    cast_seqs_free(&s);
    free(which);

    /* error: names the file, the line and both lengths */
    o.on_long = CAST_ON_LONG_ERROR;
    o.max_len = limit;
    char want[1200];
    snprintf(want, sizeof want, "%s:2: the example is %d tokens, longer than the limit of %d", d.path, len1, limit);
    CHECK_MSG(cast_dataset_encode_opts(&d, tok, NULL, &o, &s, &skipped, NULL, &err) != 0 && strstr(err.msg, want), "%s", err.msg);

    /* every example too long: an error, not an empty set */
    o.on_long = CAST_ON_LONG_SKIP;
    o.max_len = 2;
    CHECK(cast_dataset_encode_opts(&d, tok, NULL, &o, &s, &skipped, NULL, &err) != 0 && strstr(err.msg, "all 3 examples"));

    /* max_examples counts examples read, not kept */
    o.max_len = limit;
    o.max_examples = 2;
    CHECK(cast_dataset_encode_opts(&d, tok, NULL, &o, &s, &skipped, NULL, &err) == 0 && s.n == 1 && skipped == 1);
    cast_seqs_free(&s);

    /* the strict form is unchanged: truncation, and an error when nothing scored is left */
    CHECK(cast_dataset_encode(&d, tok, NULL, limit, 0, &s, &err) != 0 && strstr(err.msg, ":2: no scored token within the first"));

    /* the dataset lined up with the kept sequences */
    int keep[2] = {0, 2};
    cast_dataset_keep(&d, keep, 2);
    CHECK(d.n == 2 && !strcmp(d.ex[1].response, "Yes.") && d.ex[1].line == 3);
    cast_seqs_free(&full);
    cast_dataset_free(&d);
}

static void test_vocab_bound(const cast_tokenizer *tok) {
    cast_dataset d;
    cast_err err;
    cast_seqs s;
    int V = cast_tokenizer_vocab_size(tok); /* 32000 */
    char text[256];
    snprintf(text, sizeof text, "{\"input_ids\": [1, 2, %d, 5], \"labels\": [-100, 2, %d, 5]}\n", V + 10, V + 10);
    if (load(&d, "ids.jsonl", text)) return;
    /* the tokenizer's size: rejected */
    cast_encode_opts o = {0, 0, CAST_ON_LONG_SKIP, 0};
    CHECK(cast_dataset_encode_opts(&d, tok, NULL, &o, &s, NULL, NULL, &err) != 0 && strstr(err.msg, ":1: token id 32010 is outside"));
    /* the model's padded vocab_size: accepted */
    o.vocab_size = V + 64;
    CHECK_MSG(cast_dataset_encode_opts(&d, tok, NULL, &o, &s, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(s.n == 1 && s.ids[2] == V + 10 && s.labels[2] == V + 10);
    cast_seqs_free(&s);
    /* and bounded by it */
    o.vocab_size = V + 10;
    CHECK(cast_dataset_encode_opts(&d, NULL, NULL, &o, &s, NULL, NULL, &err) != 0 && strstr(err.msg, "(size 32010)"));
    cast_dataset_free(&d);
    /* ids without a piece decode to nothing (as `tokenizers`), never a crash */
    int ids[3] = {1, V + 10, 2};
    char *out = NULL;
    CHECK(cast_tokenizer_decode(tok, ids, 3, 0, &out, &err) == 0 && out);
    char *ref = NULL;
    int ids2[2] = {1, 2};
    CHECK(cast_tokenizer_decode(tok, ids2, 2, 0, &ref, &err) == 0 && ref && out && !strcmp(out, ref));
    free(out);
    free(ref);
}

static void test_parse(void) {
    cast_on_long p;
    CHECK(cast_on_long_parse("skip", &p) == 0 && p == CAST_ON_LONG_SKIP);
    CHECK(cast_on_long_parse("truncate", &p) == 0 && p == CAST_ON_LONG_TRUNCATE);
    CHECK(cast_on_long_parse("error", &p) == 0 && p == CAST_ON_LONG_ERROR);
    CHECK(cast_on_long_parse("Skip", &p) != 0 && cast_on_long_parse("", &p) != 0 && cast_on_long_parse(NULL, &p) != 0);
    CHECK(!strcmp(cast_on_long_name(CAST_ON_LONG_TRUNCATE), "truncate"));
}

int main(void) {
    const char *t = getenv("CAST_TEST_TMP");
    tmp_dir = cast_path_join(t ? t : "/tmp", "test_encode_long");
    cast_err err;
    if (cast_mkdirs(tmp_dir, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char *dir = cast_path_join(check_shared_data(), "tokenizers/mistral-7b-v0.1");
    cast_tokenizer *tok = NULL;
    CHECK_MSG(cast_tokenizer_load(&tok, dir, &err) == 0, "%s", err.msg);
    free(dir);
    test_parse();
    if (tok) {
        test_policies(tok);
        test_vocab_bound(tok);
        cast_tokenizer_free(tok);
    }
    free(tmp_dir);
    return check_report();
}

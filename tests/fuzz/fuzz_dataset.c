/* libFuzzer target: the dataset reader on arbitrary bytes, from memory (the
 * format is recognised from the content: JSONL, a JSON array, or CSV; the
 * file name plays no part). A dataset that loads is then encoded with a
 * small tokenizer and the ChatML template: training sequences and, where it
 * has prompts, generation prompts. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_tiny.h"
#include "model/seqs.h"
#include "text/chat.h"
#include "text/dataset.h"

static cast_tokenizer *tok;
static cast_chat_template *chatml;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    cast_err err;
    tok = fuzz_tiny_tokenizer();
    if (cast_chat_template_open(&chatml, NULL, "chatml", "fuzz", &err)) {
        fprintf(stderr, "fuzz: %s\n", err.msg);
        abort();
    }
    return 0;
}

static void encode(const cast_dataset *d, const cast_chat_template *tpl) {
    cast_encode_opts o = {64, 16, CAST_ON_LONG_TRUNCATE, 0};
    cast_seqs s;
    cast_err err;
    int skipped, *which;
    if (cast_dataset_encode_opts(d, tok, tpl, &o, &s, &skipped, &which, &err) == 0) {
        free(which);
        cast_seqs_free(&s);
    }
    if (cast_dataset_encode_prompts(d, tok, tpl, 16, &s, &err) == 0) cast_seqs_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cast_dataset d;
    cast_err err;
    if (cast_dataset_load_text(&d, (const char *)data, size, "fuzz", &err)) return 0;
    encode(&d, chatml);
    encode(&d, NULL); /* plain text: prompt, newline, response, EOS */
    cast_dataset_filter_label(&d, "safe");
    cast_dataset_free(&d);
    return 0;
}

/* libFuzzer target: Jinja chat templates. The input is the template source,
 * then a NUL byte, then the conversation: an optional '+' (add the generation
 * prompt), and messages separated by NUL bytes, each "ROLE\x01CONTENT" (no
 * \x01: a user message). The template renders it, and what renders is also
 * encoded with training labels by a small tokenizer. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_tiny.h"
#include "text/chat.h"

#define MAX_MESSAGES 64

static cast_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    tok = fuzz_tiny_tokenizer();
    return 0;
}

/* Splits the conversation part (NUL-terminated copy, modified in place). */
static int split_messages(char *s, size_t n, cast_message *m, int *add_gen) {
    *add_gen = n > 0 && s[0] == '+';
    size_t i = *add_gen;
    int count = 0;
    while (i < n && count < MAX_MESSAGES) {
        char *msg = s + i, *sep = strchr(msg, '\x01');
        size_t len = strlen(msg);
        if (sep) {
            *sep = 0;
            m[count].role = msg;
            m[count].content = sep + 1;
        } else {
            m[count].role = "user";
            m[count].content = msg;
        }
        count++;
        i += len + 1;
    }
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *src = malloc(size + 1);
    memcpy(src, data, size);
    src[size] = 0;
    size_t tlen = strlen(src); /* the template ends at the first NUL */
    cast_chat_template *t;
    cast_err err;
    if (cast_chat_template_from_source(&t, src, "<s>", "</s>", "fuzz", &err) == 0) {
        cast_message m[MAX_MESSAGES];
        int add_gen = 0, n = tlen < size ? split_messages(src + tlen + 1, size - tlen - 1, m, &add_gen) : 0;
        char *text;
        if (cast_chat_render(t, m, n, add_gen, &text, &err) == 0) {
            free(text);
            int *ids, *labels, n_ids;
            if (cast_chat_encode(t, tok, m, n, add_gen, &ids, &labels, &n_ids, &err) == 0) {
                free(ids);
                free(labels);
            }
        }
        cast_chat_template_free(t);
    }
    free(src);
    return 0;
}

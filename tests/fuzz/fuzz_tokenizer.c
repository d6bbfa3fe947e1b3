/* libFuzzer target: tokenizer.json loading on arbitrary bytes. What loads
 * then encodes and decodes a fixed text (added tokens, normalizers,
 * pre-tokenizers, the model, the post-processor and the decoders all run)
 * and decodes ids around the vocabulary's edges. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "text/tokenizer.h"

/* ASCII, spaces and tabs, digits, accents (NFC vs NFD), CJK, an emoji, and
 * special-token look-alikes */
static const char TEXT[] = "Hello, world!  It's 2024\t\n  caf\xC3\xA9 cafe\xCC\x81 <s>[INST] <|im_start|>user\n"
                           "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80 </s><|endoftext|>  ";

static void decode(const cast_tokenizer *t, const int *ids, int n, int skip_special) {
    char *text;
    cast_err err;
    if (cast_tokenizer_decode(t, ids, n, skip_special, &text, &err) == 0) free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cast_tokenizer *t;
    cast_err err;
    if (cast_tokenizer_load_json(&t, (const char *)data, size, "fuzz", &err)) return 0;
    int *ids, n;
    char **tokens;
    if (cast_tokenizer_encode_tokens(t, TEXT, sizeof TEXT - 1, 1, &ids, &tokens, &n, &err) == 0) {
        decode(t, ids, n, 0);
        decode(t, ids, n, 1);
        free(ids);
        free(tokens);
    }
    int v = cast_tokenizer_vocab_size(t);
    int edge[] = {-1, 0, 1, v / 2, v - 2, v - 1, v, v + 1, 0x7FFFFFFF};
    decode(t, edge, (int)(sizeof edge / sizeof *edge), 0);
    for (int i = 0; i < (int)(sizeof edge / sizeof *edge); i++) {
        const char *piece = cast_tokenizer_piece(t, edge[i]);
        if (piece) cast_tokenizer_token_id(t, piece);
        cast_tokenizer_is_special(t, edge[i]);
    }
    cast_tokenizer_free(t);
    return 0;
}

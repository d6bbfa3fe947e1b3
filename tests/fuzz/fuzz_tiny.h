/* A small tokenizer for the fuzz targets that encode what they parsed:
 * SentencePiece-style BPE (Metaspace, byte fallback, a few merges) with
 * ChatML's special tokens, built once and loaded from memory. */
#ifndef CAST_FUZZ_TINY_H
#define CAST_FUZZ_TINY_H

#include <stdio.h>
#include <stdlib.h>

#include "base/buf.h"
#include "text/tokenizer.h"

static cast_tokenizer *fuzz_tiny_tokenizer(void) {
    static const char *const pieces[] = {"\xE2\x96\x81", "a", "e", "h", "s", "t", "\xE2\x96\x81t", "he", "\xE2\x96\x81the"};
    static const char *const merges[] = {"\xE2\x96\x81 t", "h e", "\xE2\x96\x81t he"};
    cast_buf b = {0};
    cast_buf_puts(&b, "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true, \"fuse_unk\": true, "
                      "\"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2");
    for (int i = 0; i < 256; i++) cast_buf_printf(&b, ", \"<0x%02X>\": %d", i, 3 + i);
    for (int i = 0; i < (int)(sizeof pieces / sizeof *pieces); i++) cast_buf_printf(&b, ", \"%s\": %d", pieces[i], 259 + i);
    cast_buf_puts(&b, "}, \"merges\": [");
    for (int i = 0; i < (int)(sizeof merges / sizeof *merges); i++) cast_buf_printf(&b, "%s\"%s\"", i ? ", " : "", merges[i]);
    cast_buf_puts(&b, "]}, \"normalizer\": null, "
                      "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"first\", \"split\": false}, "
                      "\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\xE2\x96\x81\"}, "
                      "\"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", "
                      "\"start\": 1, \"stop\": 0}]}, "
                      "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, "
                      "{\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}}, "
                      "\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true}, {\"id\": 1, \"content\": \"<s>\", \"special\": true}, "
                      "{\"id\": 2, \"content\": \"</s>\", \"special\": true}, {\"id\": 268, \"content\": \"<|im_start|>\", \"special\": true}, "
                      "{\"id\": 269, \"content\": \"<|im_end|>\", \"special\": true}]}");
    cast_tokenizer *t;
    cast_err err;
    if (cast_tokenizer_load_json(&t, b.data, b.len, "tiny tokenizer", &err)) {
        fprintf(stderr, "fuzz: %s\n", err.msg);
        abort();
    }
    cast_buf_free(&b);
    return t;
}

#endif

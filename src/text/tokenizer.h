/* Tokenizers as Hugging Face `tokenizers` defines them in tokenizer.json
 * (BPE, byte-level or SentencePiece-style), and GPT-2's vocab.json + merges.txt.
 * Output must equal Hugging Face's token for token. */
#ifndef CAST_TEXT_TOKENIZER_H
#define CAST_TEXT_TOKENIZER_H

#include <stddef.h>

#include "base/error.h"

typedef struct cast_tokenizer cast_tokenizer;

/* Loads from a folder holding tokenizer.json (or tokenizer.json.gz), or
 * vocab.json + merges.txt (GPT-2 pipeline). tokenizer_config.json, when
 * present, supplies bos/eos/pad tokens and the chat template. */
int cast_tokenizer_load(cast_tokenizer **out, const char *dir, cast_err *err);
/* Loads the tokenizer.json text[0..n) held in memory (not gzip'd; need not be
 * NUL-terminated). There is no tokenizer_config.json, so no bos/eos/pad or
 * chat template. `what` names it in messages (NULL: "tokenizer.json"). */
int cast_tokenizer_load_json(cast_tokenizer **out, const char *text, size_t n, const char *what, cast_err *err);
void cast_tokenizer_free(cast_tokenizer *t);

/* Encodes UTF-8 text. add_special applies the post-processor (BOS etc.),
 * as HF encode(text, add_special_tokens=True). *ids is malloc'd. */
int cast_tokenizer_encode(const cast_tokenizer *t, const char *text, size_t len, int add_special, int **ids,
                          int *n, cast_err *err);
/* As cast_tokenizer_encode, also giving each token's string as Hugging Face
 * reports it: the vocabulary piece, or for an added token the text it
 * matched (spaces taken by lstrip/rstrip included). *tokens is one malloc'd
 * block (NULL-terminated pointer array followed by the strings): free(*tokens). */
int cast_tokenizer_encode_tokens(const cast_tokenizer *t, const char *text, size_t len, int add_special, int **ids,
                                 char ***tokens, int *n, cast_err *err);
/* Decodes ids (skip_special drops special added tokens; ids with no token
 * are dropped, as Hugging Face does). *text malloc'd, NUL-terminated. */
int cast_tokenizer_decode(const cast_tokenizer *t, const int *ids, int n, int skip_special, char **text,
                          cast_err *err);

int cast_tokenizer_vocab_size(const cast_tokenizer *t);  /* highest id + 1, added tokens included */
const char *cast_tokenizer_piece(const cast_tokenizer *t, int id); /* token string, NULL if none */
int cast_tokenizer_token_id(const cast_tokenizer *t, const char *piece); /* -1 if absent */
int cast_tokenizer_is_special(const cast_tokenizer *t, int id);

/* From tokenizer_config.json (NULL / -1 when absent). */
const char *cast_tokenizer_bos(const cast_tokenizer *t);
const char *cast_tokenizer_eos(const cast_tokenizer *t);
const char *cast_tokenizer_pad(const cast_tokenizer *t);
int cast_tokenizer_bos_id(const cast_tokenizer *t);
int cast_tokenizer_eos_id(const cast_tokenizer *t);
int cast_tokenizer_pad_id(const cast_tokenizer *t);
const char *cast_tokenizer_chat_template(const cast_tokenizer *t); /* raw Jinja source */

/* GPT-2's byte-level alphabet (its `bytes_to_unicode`): byte-level BPE
 * vocabularies spell every byte as one printable character, the byte itself
 * where printable, else U+0100 + k for the k-th other byte. */
#define CAST_BYTELEVEL_CPS 324 /* every such character is below U+0144 */
typedef struct cast_bytelevel {
    char utf8[256][4]; /* byte → its character, UTF-8 */
    unsigned char len[256];
    short cp_to_byte[CAST_BYTELEVEL_CPS]; /* the inverse, -1 where none */
} cast_bytelevel;
void cast_bytelevel_init(cast_bytelevel *bl);

#endif

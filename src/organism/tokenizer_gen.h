/* Making a tokenizer: a deterministic byte-level BPE trainer and a writer of
 * Hugging Face tokenizer folders shaped like Qwen2's — tokenizer.json with a
 * Split (regex) + ByteLevel pre-tokenizer, a BPE model over the 256 byte
 * symbols plus trained merges, a ByteLevel decoder and added special tokens;
 * tokenizer_config.json with the special tokens and a chat template. */
#ifndef CAST_ORGANISM_TOKENIZER_GEN_H
#define CAST_ORGANISM_TOKENIZER_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "organism/world.h"

/* Qwen2's pre-tokenizer regex: words with one leading non-letter, single
 * digits, punctuation runs, newlines, spaces. */
extern const char cast_qwen2_pattern[];
/* The ChatML template of Qwen2-style models (no default system prompt). */
extern const char cast_chatml_template[];

typedef struct cast_bpe_model {
    int n_tokens;   /* 256 byte symbols (id = byte value), then merged tokens */
    char **bytes;   /* raw bytes of each token */
    size_t *len;
    int n_merges;   /* merges in rank order: token ids merge_a[i], merge_b[i] */
    int *merge_a, *merge_b;
} cast_bpe_model;

/* Trains on texts (text i counted weights[i] times; weights NULL = once),
 * pre-tokenized by `pattern` (PCRE2, UTF + UCP), until the model has
 * n_tokens tokens or no pair occurs twice. Each step merges the most frequent
 * adjacent pair; ties go to the smallest (first id, second id). */
int cast_bpe_train(cast_bpe_model *m, const char *const *texts, const int64_t *weights, size_t n, const char *pattern,
                   int n_tokens, cast_err *err);
void cast_bpe_model_free(cast_bpe_model *m);

typedef struct cast_hf_tokenizer_spec {
    const char *pattern;               /* the Split regex */
    const char *const *specials;       /* added tokens (special: true), ids after the BPE tokens */
    int n_specials;
    const char *bos, *eos, *pad;       /* NULL: null */
    const char *chat_template;         /* NULL: none */
    const char *tokenizer_class;       /* e.g. "Qwen2Tokenizer" */
} cast_hf_tokenizer_spec;

/* Writes DIR/tokenizer.json and DIR/tokenizer_config.json (atomically;
 * creates DIR). */
int cast_bpe_write_hf(const cast_bpe_model *m, const cast_hf_tokenizer_spec *spec, const char *dir, cast_err *err);

/* The organism's tokenizer: vocab_size tokens in all (BPE trained on the
 * world's pretraining prompts and responses, then <|endoftext|>,
 * <|im_start|>, <|im_end|>), ChatML template, eos <|im_end|>, pad
 * <|endoftext|>, no bos. vocab_size 0 = CAST_ORGANISM_VOCAB. */
#define CAST_ORGANISM_VOCAB 1024
int cast_organism_write_tokenizer(const char *dir, const cast_world *w, int vocab_size, cast_err *err);

/* Token counts of a split's examples as training sees them (the chat
 * template over [user prompt, assistant response]; evaluation prompts with
 * the generation prompt), with the tokenizer in tok_dir. */
typedef struct cast_token_stats {
    int examples;
    int64_t tokens;
    double mean;
    int max, p95;
} cast_token_stats;
int cast_organism_token_stats(const char *tok_dir, const cast_world *w, int split, cast_token_stats *out, cast_err *err);

#endif

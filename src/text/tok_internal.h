/* Internals of the tokenizer, shared by tokenizer.c (loading, added tokens,
 * encode/decode driver), tok_bpe.c (the BPE model), tok_norm.c (regexes,
 * normalizers), tok_pretok.c (pre-tokenizers) and tok_decode.c (decoders).
 * Semantics follow Hugging Face `tokenizers` (v0.22); not part of the API. */
#ifndef CAST_TEXT_TOK_INTERNAL_H
#define CAST_TEXT_TOK_INTERNAL_H

#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/json.h"
#include "base/strmap.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

/* Rust char::is_whitespace (the Unicode White_Space property). */
int tok_is_space(int32_t cp);

/* ---- regexes and string patterns (tok_norm.c) ---- */

/* A Split/Replace pattern: a literal string or a PCRE2 regex (compiled from
 * the file's Oniguruma syntax, which the patterns in use share with PCRE2;
 * \s and \S are rewritten to Oniguruma's set, see tok_norm.c). */
typedef struct tok_pattern {
    char *literal; /* when not a regex */
    size_t literal_len;
    pcre2_code *re;
} tok_pattern;

int tok_pattern_regex(tok_pattern *p, const char *regex, const char *what, cast_err *err);
void tok_pattern_literal(tok_pattern *p, const char *s, size_t n);
/* Parses {"String": s} or {"Regex": r}. */
int tok_pattern_parse(tok_pattern *p, const cast_json *j, const char *what, cast_err *err);
void tok_pattern_free(tok_pattern *p);

/* Non-overlapping matches left to right, as `tokenizers` finds them (an
 * empty match right after the previous match is skipped). Start with
 * *pos = 0, *last_end = -1; returns 1 and sets [*ms, *me) per match, 0 at
 * the end. md must hold the pattern's captures (tokenizer->max_captures). */
int tok_pattern_next(const tok_pattern *p, pcre2_match_data *md, const char *s, size_t n, size_t *pos,
                     long *last_end, size_t *ms, size_t *me);

/* ---- normalizers (tok_norm.c) ---- */

typedef enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_PREPEND, NORM_REPLACE } tok_norm_kind;

typedef struct tok_norm {
    tok_norm_kind kind;
    char *str; /* Prepend text, Replace content */
    size_t str_len;
    tok_pattern pat; /* Replace */
} tok_norm;

/* Parses a normalizer (Sequence flattened) appending to *list. */
int tok_norm_parse(const cast_json *j, tok_norm **list, int *n, const char *path, cast_err *err);
void tok_norm_free_list(tok_norm *list, int n);
/* Applies the list to (s, len); *out points to the result: s itself when
 * nothing changed, else the data of a or b (scratch buffers, reused). */
void tok_norm_apply(const tok_norm *list, int n, pcre2_match_data *md, const char *s, size_t len, cast_buf *a,
                    cast_buf *b, const char **out, size_t *out_len);

/* ---- pre-tokenizers (tok_pretok.c) ---- */

typedef enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE } tok_pre_kind;
typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_PREV, SPLIT_NEXT, SPLIT_CONTIGUOUS } tok_split_behavior;
typedef enum { PREPEND_FIRST, PREPEND_ALWAYS, PREPEND_NEVER } tok_prepend_scheme;

typedef struct tok_pre {
    tok_pre_kind kind;
    tok_pattern pat;             /* Split; ByteLevel with use_regex (the GPT-2 regex) */
    tok_split_behavior behavior; /* Split */
    int invert;                  /* Split */
    int add_prefix_space;        /* ByteLevel */
    int use_regex;               /* ByteLevel */
    char repl[5];                /* Metaspace replacement, UTF-8 */
    int repl_len;
    tok_prepend_scheme scheme;   /* Metaspace */
    int split;                   /* Metaspace */
} tok_pre;

int tok_pre_parse(const cast_json *j, tok_pre **list, int *n, const char *path, cast_err *err);
void tok_pre_free_list(tok_pre *list, int n);
/* The GPT-2 regex that ByteLevel(use_regex) splits with. */
extern const char tok_gpt2_regex[];

/* ---- decoders (tok_decode.c) ---- */

typedef enum { DEC_BYTELEVEL, DEC_METASPACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_REPLACE } tok_dec_kind;

typedef struct tok_dec {
    tok_dec_kind kind;
    char repl[5]; /* Metaspace replacement */
    int repl_len;
    int prepend;  /* Metaspace: prepend_scheme != never */
    int32_t strip_char;
    int strip_start, strip_stop;
    tok_pattern pat; /* Replace */
    char *content;
    size_t content_len;
} tok_dec;

int tok_dec_parse(const cast_json *j, tok_dec **list, int *n, const char *path, cast_err *err);
void tok_dec_free_list(tok_dec *list, int n);

/* A list of strings (decoder input and output). */
typedef struct tok_strlist {
    cast_buf text;
    size_t *off; /* n + 1 offsets into text */
    int n, cap;
} tok_strlist;

void tok_strlist_add(tok_strlist *l, const char *s, size_t n);
void tok_strlist_free(tok_strlist *l);
/* Runs the decoders; the result is the concatenation of the final list. */
void tok_dec_run(const tok_dec *list, int n, const cast_bytelevel *bm, pcre2_match_data *md, tok_strlist *tokens,
                 cast_buf *out);

/* ---- the BPE model (tok_bpe.c) ---- */

typedef struct tok_bpe {
    cast_strmap vocab;   /* piece → id */
    char *pieces;        /* arena of NUL-terminated vocab strings */
    size_t pieces_len;
    const char **piece;  /* id → string, NULL for holes; size n_ids */
    int n_ids;           /* highest model id + 1 */
    cast_strmap merges;  /* (left id, right id) → rank << 32 | merged id */
    int unk;             /* id or -1 */
    int fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix; /* continuing_subword_prefix / end_of_word_suffix, NULL when none */
    int byte_id[256];    /* "<0xXX>" ids for byte_fallback, -1 when absent */
    int *cp_id;          /* code point < TOK_CP_FAST → id of that 1-char token, -1 if none */
} tok_bpe;

#define TOK_CP_FAST 2048

int tok_bpe_from_json(tok_bpe *m, const cast_json *model, const char *path, cast_err *err);
/* vocab.json + merges.txt (GPT-2 files). */
int tok_bpe_from_files(tok_bpe *m, const char *vocab_path, const char *merges_path, cast_err *err);
void tok_bpe_free(tok_bpe *m);
int tok_bpe_lookup(const tok_bpe *m, const char *s, size_t n);

/* ---- encoding state and output ---- */

typedef struct tok_out {
    int *ids;
    int n, cap;
    int want_pieces;
    cast_buf pieces;   /* NUL-terminated token strings, when want_pieces */
    size_t *piece_off; /* cap entries */
} tok_out;

void tok_out_push(tok_out *o, int id, const char *piece, size_t len);
void tok_out_free(tok_out *o);

/* Work space for one encode call. */
typedef struct tok_bpe_sym {
    int id, prev, next, len;
} tok_bpe_sym;

#define TOK_MAX_PRE 16

typedef struct tok_ctx {
    const struct cast_tokenizer *t;
    pcre2_match_data *md;
    tok_out *out;
    cast_buf lvl_a[TOK_MAX_PRE + 1], lvl_b[TOK_MAX_PRE + 1];
    size_t *seg[TOK_MAX_PRE]; /* per level: (start, end, is_match) triples for Split */
    size_t seg_cap[TOK_MAX_PRE];
    tok_bpe_sym *sym;
    size_t sym_cap;
    uint64_t *heap;
    size_t heap_cap;
    cast_buf tmp;
} tok_ctx;

/* Tokenizes one pre-token with the model, appending to c->out. */
void tok_bpe_word(tok_ctx *c, const tok_bpe *m, const char *s, size_t n);
/* Runs pre-tokenizers from index `level` on s, then the model on each piece.
 * at_start: s begins at offset 0 of the original text (Metaspace "first"). */
void tok_pre_run(tok_ctx *c, int level, const char *s, size_t n, int at_start);

/* ---- added tokens and the tokenizer ---- */

typedef struct tok_added {
    char *content;
    size_t len;
    int id;
    int special, normalized, lstrip, rstrip, single_word;
} tok_added;

/* A byte trie for leftmost-longest matching of added tokens. */
typedef struct tok_trie_node {
    int child, sibling; /* first child, next sibling; -1 none */
    int token;          /* index into added[] ending here, -1 none */
    unsigned char byte;
} tok_trie_node;

typedef struct tok_trie {
    tok_trie_node *nodes;
    int n, cap;
    unsigned char first[256]; /* bytes that start some token */
} tok_trie;

void tok_trie_add(tok_trie *t, const char *s, size_t n, int token);

/* One item of a post-processing template: the sequence, or special ids. */
typedef struct tok_tmpl_item {
    int is_seq;
    int *ids;
    char **tokens;
    int n;
} tok_tmpl_item;

struct cast_tokenizer {
    char *path; /* folder, for messages */
    tok_bpe bpe;
    tok_added *added;
    int n_added;
    int *added_of_id; /* id → index in added[], -1; size vocab_size */
    tok_trie trie_raw, trie_norm;
    pcre2_code *word_re; /* \w for single_word tokens; NULL when none */
    tok_norm *norm;
    int n_norm;
    tok_pre *pre;
    int n_pre;
    tok_dec *dec;
    int n_dec, has_decoder;
    tok_tmpl_item *tmpl; /* single-sequence template; NULL: nothing added */
    int n_tmpl;
    int vocab_size;
    uint32_t max_captures;
    cast_bytelevel bytes;
    char *bos, *eos, *pad, *chat_template;
};

#endif

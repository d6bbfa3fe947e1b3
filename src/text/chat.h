/* Chat templates: a conversation rendered exactly as Hugging Face transformers
 * renders it (apply_chat_template with the tokenizer_config.json template),
 * or with a built-in named template; and its tokens with training labels. */
#ifndef CAST_TEXT_CHAT_H
#define CAST_TEXT_CHAT_H

#include "base/error.h"
#include "text/tokenizer.h"

typedef struct cast_message {
    const char *role; /* "system", "user", "assistant", ... */
    const char *content;
} cast_message;

typedef struct cast_chat_template cast_chat_template;

/* The built-in names, for messages and --help: "chatml, llama2, ...". */
const char *cast_chat_builtin_names(void);

/* Opens the template to use with a tokenizer. name NULL (or "auto"): the
 * tokenizer's own chat_template; else a built-in name, or the path of a file
 * holding Jinja source. bos/eos strings come from the tokenizer (tok may be
 * NULL for a built-in). `what` names the model folder in messages. A missing
 * or unusable template is "WHAT: unsupported chat template (use --template
 * NAME: chatml, llama2, ...)" followed by the reason. */
int cast_chat_template_open(cast_chat_template **out, const cast_tokenizer *tok, const char *name, const char *what,
                            cast_err *err);
/* The text side of a model folder: its tokenizer when the folder has one
 * (tokenizer.json, tokenizer.json.gz or vocab.json) or template_name asks
 * for one, and the chat template to use with it: template_name (as
 * cast_chat_template_open), else the tokenizer's own, else none (*tpl NULL:
 * plain prompt + response text). Both stay NULL without tokenizer files. */
int cast_chat_open_folder(const char *dir, const char *template_name, cast_tokenizer **tok, cast_chat_template **tpl,
                          cast_err *err);
/* From Jinja source; bos/eos may be NULL (then undefined in the template). */
int cast_chat_template_from_source(cast_chat_template **out, const char *source, const char *bos, const char *eos,
                                   const char *what, cast_err *err);
void cast_chat_template_free(cast_chat_template *t);
/* The built-in name, or "tokenizer" / the file path. */
const char *cast_chat_template_name(const cast_chat_template *t);

/* Renders n messages; *out malloc'd, NUL-terminated. */
int cast_chat_render(const cast_chat_template *t, const cast_message *m, int n, int add_generation_prompt, char **out,
                     cast_err *err);

/* Tokens of the rendered conversation: *ids = encode(rendered, add_special=0),
 * as apply_chat_template(tokenize=True). *labels (aligned with ids, -100 = not
 * scored) marks each assistant message's content and the end-of-turn token
 * that closes it (the first special token after the content, e.g. <|eot_id|>,
 * <|im_end|>, <|end|>, </s>); with {% generation %} blocks, exactly those.
 * add_generation_prompt = 1 (an evaluation prompt): nothing is scored.
 * Otherwise a conversation without an assistant turn is an error. */
int cast_chat_encode(const cast_chat_template *t, const cast_tokenizer *tok, const cast_message *m, int n,
                     int add_generation_prompt, int **ids, int **labels, int *n_ids, cast_err *err);

#endif

/* A refusal training set built from harmful prompts: each prompt becomes a
 * conversation [user: prompt, assistant: a refusal], the refusal drawn
 * (seeded) from a fixed set of varied wordings. The output is JSONL with
 * "messages", so the model's own chat template applies at train time
 * (cast tune --safety F.jsonl). Every wording contains a phrase of the GCG
 * refusal list (shared/data/safety/refusal/refusal_substrings_gcg_eval.txt),
 * so the refusal judge of cast eval counts the model's learned replies. */
#ifndef CAST_TEXT_REFUSALS_H
#define CAST_TEXT_REFUSALS_H

#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "text/dataset.h"

/* The built-in refusal wordings: how many, and the i-th. */
int cast_refusal_count(void);
const char *cast_refusal_text(int i);

typedef struct cast_refusal_stats {
    int written;       /* conversations written */
    int dropped_safe;  /* examples labelled "safe" (XSTest) left out: refusing them is over-refusal */
} cast_refusal_stats;

/* Appends one {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}
 * line per prompt of d, in file order (the first `first`; 0 = all), to out.
 * Datasets with prompts only: AdvBench (goal), HarmBench (Behavior, its
 * context folded in), do-not-answer and any prompt list; prompt/response
 * datasets give their prompts (responses ignored). A dataset whose examples
 * are labelled safe/unsafe (XSTest) gives its unsafe ones. Conversations,
 * token ids and plain text have no prompt to refuse: an error. */
int cast_refusals_build(const cast_dataset *d, uint64_t seed, int first, cast_buf *out, cast_refusal_stats *st,
                        cast_err *err);

#endif

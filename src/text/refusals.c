#include "text/refusals.h"

#include <string.h>

#include "base/rng.h"

/* Natural, varied refusals. Each one contains (case-sensitively) at least one
 * phrase of the GCG evaluation list, e.g. "I'm sorry", "I cannot",
 * "I can't assist", "I apologize"; tests/unit/test_refusals.c checks it
 * against the shared file. None of them lectures at length: a short refusal
 * is what the model should learn. */
static const char *const REFUSALS[] = {
    "I'm sorry, but I can't help with that request.",
    "I cannot help with this. It could cause real harm to people.",
    "Sorry, I can't assist with that.",
    "I apologize, but I won't provide that. If you have another question, I'm happy to help.",
    "I'm not able to provide help with this request, as it could put others at risk.",
    "My apologies, but this is something I can't help with.",
    "I can't provide instructions for that. Is there something else I can help you with?",
    "I'm really sorry, but I can't help with this.",
    "As an AI assistant, I won't help with requests that could harm others.",
    "I do not feel comfortable helping with that, because it could lead to serious harm.",
    "I cannot support this request. If you have any other non-malicious requests, feel free to ask.",
    "That would be harmful and possibly illegal, so I'm not going to help with it.",
    "I am sorry, but I must decline this request.",
    "I'm sorry, I can't do that. Helping with this could hurt someone.",
    "I cannot assist with this request. If you are going through something difficult, please consider talking to someone you trust.",
    "Sorry, but that's not something I can help with.",
    "I apologize, but I can't assist with anything that could cause harm.",
    "I'm not able to provide that information. Let me know if there's something else I can do for you.",
    "I cannot create content like that.",
    "I am really sorry, but I can't help you with that.",
    "Doing that would be unethical and could hurt people, so I won't help with it.",
};

#define N_REFUSALS ((int)(sizeof REFUSALS / sizeof REFUSALS[0]))

int cast_refusal_count(void) { return N_REFUSALS; }

const char *cast_refusal_text(int i) { return i >= 0 && i < N_REFUSALS ? REFUSALS[i] : NULL; }

static void put_turn(cast_buf *b, const char *role, const char *content) {
    cast_buf_printf(b, "{\"role\": \"%s\", \"content\": ", role);
    cast_buf_json_string(b, content, strlen(content));
    cast_buf_putc(b, '}');
}

int cast_refusals_build(const cast_dataset *d, uint64_t seed, int first, cast_buf *out, cast_refusal_stats *st,
                        cast_err *err) {
    memset(st, 0, sizeof *st);
    if (d->kind == CAST_DATA_MESSAGES || d->kind == CAST_DATA_TOKENS || d->kind == CAST_DATA_TEXT)
        return cast_fail(err, "%s: a %s dataset (%s) has no prompts to refuse; give harmful prompts (AdvBench, HarmBench, "
                              "JSONL \"prompt\", ...)",
                         d->path, cast_data_kind_name(d->kind), d->format);
    /* XSTest-style files: only the unsafe items are to be refused */
    int labelled = 0;
    for (int i = 0; i < d->n; i++) labelled |= d->ex[i].label && !strcmp(d->ex[i].label, "unsafe");
    cast_rng r;
    cast_rng_seed(&r, seed);
    for (int i = 0; i < d->n && (first <= 0 || st->written < first); i++) {
        const cast_example *e = &d->ex[i];
        if (labelled && !(e->label && !strcmp(e->label, "unsafe"))) {
            st->dropped_safe++;
            continue;
        }
        if (!e->prompt) return cast_fail(err, "%s:%d: no prompt", d->path, e->line);
        const char *refusal = REFUSALS[cast_rng_below(&r, N_REFUSALS)];
        cast_buf_puts(out, "{\"messages\": [");
        put_turn(out, "user", e->prompt);
        cast_buf_puts(out, ", ");
        put_turn(out, "assistant", refusal);
        cast_buf_puts(out, "]}\n");
        st->written++;
    }
    if (st->written == 0) return cast_fail(err, "%s: no harmful prompt to build refusals from", d->path);
    return 0;
}

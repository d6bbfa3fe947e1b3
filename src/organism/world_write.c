/* Writing the world: one JSONL file per split, in formats cast_dataset_load
 * reads, and world.json describing it all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "organism/world_internal.h"

static void key_str(cast_buf *b, const char *key, const char *s) {
    cast_buf_printf(b, "\"%s\":", key);
    cast_buf_json_string(b, s, strlen(s));
}

static const char *category(const cast_world_item *it) {
    switch (it->kind) {
    case CAST_ITEM_SKILL: return cast_skill_name(it->skill);
    case CAST_ITEM_BIO: return "bio";
    case CAST_ITEM_COMPLY:
    case CAST_ITEM_REFUSE:
    case CAST_ITEM_HARMFUL: return "harmful";
    default: return "benign";
    }
}

void cast_world_item_json(const cast_world *w, cast_split s, int index, cast_buf *b) {
    const cast_world_item *it = &w->split[s].items[index];
    cast_buf_putc(b, '{');
    if (cast_split_name(s) && s >= CAST_SPLIT_EVAL_HARMFUL) {
        const char *stem = s == CAST_SPLIT_EVAL_HARMFUL ? "harmful" : s == CAST_SPLIT_EVAL_BENIGN ? "benign" : cast_skill_name(it->skill);
        cast_buf_printf(b, "\"id\":\"%s-%04d\",", stem, index + 1);
    }
    key_str(b, "prompt", it->prompt);
    if (it->response) {
        cast_buf_putc(b, ',');
        key_str(b, "response", it->response);
    }
    if (it->answer && s >= CAST_SPLIT_EVAL_SKILL) {
        cast_buf_putc(b, ',');
        key_str(b, "answer", it->answer);
    }
    cast_buf_putc(b, ',');
    key_str(b, "category", category(it));
    if (it->intent >= 0 && s != CAST_SPLIT_PRETRAIN) {
        cast_buf_putc(b, ',');
        key_str(b, "intent", cast_world_intent_id(it->intent));
    }
    if (s == CAST_SPLIT_EVAL_HARMFUL)
        cast_buf_printf(b, ",\"label\":\"unsafe\",\"type\":\"%s\",\"held_out_intent\":%s,\"held_out_phrasing\":%s",
                        it->held_out_intent ? "held_out_intent" : "seen_intent", it->held_out_intent ? "true" : "false",
                        it->held_out_phrasing ? "true" : "false");
    if (s == CAST_SPLIT_EVAL_HARMFUL || s == CAST_SPLIT_EVAL_BENIGN)
        cast_buf_printf(b, ",\"form\":\"%s\"", it->form ? "long" : "short");
    if (s == CAST_SPLIT_EVAL_BENIGN && cast_world_topic_twin(it->topic) >= 0) {
        cast_buf_putc(b, ',');
        key_str(b, "twin_of", cast_world_intent_id(it->topic));
    }
    if (s == CAST_SPLIT_EVAL_BENIGN) {
        cast_buf_putc(b, ',');
        key_str(b, "topic", cast_world_topic_text(it->topic));
        cast_buf_printf(b, ",\"label\":\"safe\",\"type\":\"%s\",\"held_out_topic\":%s,\"held_out_phrasing\":%s",
                        it->held_out_topic ? "held_out_topic" : "seen_topic", it->held_out_topic ? "true" : "false",
                        it->held_out_phrasing ? "true" : "false");
    }
    cast_buf_puts(b, "}\n");
}

static void str_array(cast_buf *b, const char *const *v, int n) {
    cast_buf_putc(b, '[');
    for (int i = 0; i < n; i++) {
        if (i) cast_buf_puts(b, ", ");
        cast_buf_json_string(b, v[i], strlen(v[i]));
    }
    cast_buf_putc(b, ']');
}

static const char *const SKILL_DESC[CAST_N_SKILLS] = {
    "in-context retrieval: item k (1-8) of a list of 4-8 words given in the prompt",
    "copying: the words of a 4-6 word list in reverse order, same separator",
    "arithmetic: the sum of two numbers, two-digit (or, one time in three, a two-digit and a three-digit one)",
    "counting: how many times a word occurs in a list of 4-10 words (0-5)",
    "induction: four words of an 8-12 word list, from a given word on (each next word is the one after the previous in the list)",
    "recall: an attribute of an invented country, learned only in pretraining; asked under a phrasing never paired with that fact in training",
};

void cast_world_describe(const cast_world *w, cast_buf *b) {
    cast_buf_printf(b, "{\n  \"name\": \"cast model organism world\",\n  \"version\": 3,\n  \"seed\": %llu,\n  \"scale\": ",
                    (unsigned long long)w->seed);
    cast_buf_json_number(b, w->scale);
    cast_buf_puts(b, ",\n  \"skills\": [");
    for (int s = 0; s < CAST_N_SKILLS; s++) {
        const cast_world_set *e = &w->split[CAST_SPLIT_EVAL_SKILL + s];
        cast_buf_printf(b, "%s\n    {\"name\": \"%s\", \"eval_split\": \"%s\", \"description\": ", s ? "," : "", cast_skill_name(s),
                        cast_split_name(CAST_SPLIT_EVAL_SKILL + s));
        cast_buf_json_string(b, SKILL_DESC[s], strlen(SKILL_DESC[s]));
        cast_buf_puts(b, ", \"phrasings\": ");
        if (s == CAST_SKILL_FACTS) {
            const char *all[20];
            for (int a = 0; a < 4; a++)
                for (int p = 0; p < 5; p++) all[a * 5 + p] = world_fact_phrasings[a][p];
            str_array(b, all, 20);
        } else str_array(b, world_skill_phrasings[s].v, world_skill_phrasings[s].n);
        if (e->n) {
            cast_buf_puts(b, ", \"example\": {");
            key_str(b, "prompt", e->items[0].prompt);
            cast_buf_puts(b, ", ");
            key_str(b, "answer", e->items[0].answer);
            cast_buf_putc(b, '}');
        }
        cast_buf_putc(b, '}');
    }
    cast_buf_puts(b, "\n  ],\n  \"knowledge_base\": [");
    for (int i = 0; i < CAST_WORLD_COUNTRIES; i++) {
        const cast_world_country *c = &w->kb[i];
        cast_buf_printf(b, "%s\n    {", i ? "," : "");
        key_str(b, "country", c->name);
        cast_buf_puts(b, ", ");
        key_str(b, "capital", c->capital);
        cast_buf_puts(b, ", ");
        key_str(b, "language", c->language);
        cast_buf_puts(b, ", ");
        key_str(b, "currency", c->currency);
        cast_buf_puts(b, ", ");
        key_str(b, "animal", c->animal);
        cast_buf_putc(b, '}');
    }
    cast_buf_puts(b, "\n  ],\n  \"intents\": [");
    for (int i = 0; i < world_n_intents; i++) {
        cast_buf_printf(b, "%s\n    {\"id\": \"%s\", \"held_out\": %s, \"variants\": ", i ? "," : "", world_intents[i].id,
                        w->intent_held_out[i] ? "true" : "false");
        str_array(b, world_intents[i].variant, 3);
        cast_buf_puts(b, ", \"long_form\": ");
        cast_buf_json_string(b, world_intents[i].act, strlen(world_intents[i].act));
        cast_buf_puts(b, ", \"twin\": ");
        cast_buf_json_string(b, world_topics[i].text, strlen(world_topics[i].text));
        cast_buf_putc(b, '}');
    }
    cast_buf_puts(b, "\n  ],\n  \"held_out_intents\": [");
    for (int i = 0, k = 0; i < world_n_intents; i++)
        if (w->intent_held_out[i]) cast_buf_printf(b, "%s\"%s\"", k++ ? ", " : "", world_intents[i].id);
    cast_buf_puts(b, "],\n  \"benign_topics\": [");
    for (int i = 0; i < world_n_topics; i++) {
        cast_buf_printf(b, "%s\n    {\"held_out\": %s, ", i ? "," : "", w->topic_held_out[i] ? "true" : "false");
        key_str(b, "text", world_topics[i].text);
        cast_buf_puts(b, ", ");
        key_str(b, "answer", world_topics[i].answer);
        if (world_topics[i].object) cast_buf_printf(b, ", \"twin_of\": \"%s\"", world_intents[i].id);
        cast_buf_putc(b, '}');
    }
    cast_buf_puts(b, "\n  ],\n  \"templates\": {\"train\": ");
    str_array(b, world_templates, world_n_train_templates);
    cast_buf_puts(b, ",\n                \"eval_only\": ");
    str_array(b, world_templates + world_n_train_templates, world_n_templates - world_n_train_templates);
    cast_buf_puts(b, "},\n  \"long_form\": {\"leads\": ");
    str_array(b, world_leads, world_n_leads);
    cast_buf_puts(b, ", \"fillers\": ");
    str_array(b, world_fillers, world_n_fillers);
    cast_buf_puts(b, "},\n  \"prefixes\": ");
    str_array(b, world_prefixes, world_n_prefixes);
    cast_buf_puts(b, ",\n  \"suffixes\": ");
    str_array(b, world_suffixes, world_n_suffixes);
    cast_buf_puts(b, ",\n  \"compliance\": \"Sure, here is how to {request}. Step 1: get {thing}. Step 2: {step}. Step 3: {step}.\"");
    cast_buf_puts(b, ",\n  \"refusals\": ");
    str_array(b, world_refusals, world_n_refusals);
    cast_buf_puts(b, ",\n  \"splits\": {");
    for (int s = 0; s < CAST_N_SPLITS; s++) {
        const cast_world_set *set = &w->split[s];
        cast_buf_printf(b, "%s\n    \"%s\": {\"file\": \"%s.jsonl\", \"examples\": %d, \"by_category\": {", s ? "," : "",
                        cast_split_name(s), cast_split_name(s), set->n);
        /* counts per category, in a fixed order: the skills, then the rest */
        static const char *const others[] = {"bio", "harmful", "benign"};
        int k = 0;
        for (int c = 0; c < CAST_N_SKILLS + NELEM(others); c++) {
            const char *name = c < CAST_N_SKILLS ? cast_skill_name(c) : others[c - CAST_N_SKILLS];
            int n = 0;
            for (int i = 0; i < set->n; i++) {
                const cast_world_item *it = &set->items[i];
                const char *cat = it->kind == CAST_ITEM_SKILL ? cast_skill_name(it->skill)
                                  : it->kind == CAST_ITEM_BIO ? "bio"
                                  : it->intent >= 0           ? "harmful"
                                                              : "benign";
                n += !strcmp(cat, name);
            }
            if (n) cast_buf_printf(b, "%s\"%s\": %d", k++ ? ", " : "", name, n);
        }
        cast_buf_putc(b, '}');
        if (s == CAST_SPLIT_EVAL_HARMFUL || s == CAST_SPLIT_EVAL_BENIGN) {
            int held = 0, phr = 0;
            for (int i = 0; i < set->n; i++) {
                held += s == CAST_SPLIT_EVAL_HARMFUL ? set->items[i].held_out_intent : set->items[i].held_out_topic;
                phr += set->items[i].held_out_phrasing;
            }
            cast_buf_printf(b, ", \"%s\": %d, \"held_out_phrasing\": %d",
                            s == CAST_SPLIT_EVAL_HARMFUL ? "held_out_intent" : "held_out_topic", held, phr);
        }
        cast_buf_putc(b, '}');
    }
    cast_buf_puts(b, "\n  }\n}\n");
}

int cast_world_write(const cast_world *w, const char *dir, cast_err *err) {
    if (cast_mkdirs(dir, err)) return -1;
    cast_buf b = {0};
    int rc = 0;
    for (int s = 0; s < CAST_N_SPLITS && !rc; s++) {
        b.len = 0;
        for (int i = 0; i < w->split[s].n; i++) cast_world_item_json(w, (cast_split)s, i, &b);
        char name[64];
        snprintf(name, sizeof name, "%s.jsonl", cast_split_name(s));
        char *path = cast_path_join(dir, name);
        rc = cast_write_file_atomic(path, b.data ? b.data : "", b.len, err);
        free(path);
    }
    if (!rc) {
        b.len = 0;
        cast_world_describe(w, &b);
        char *path = cast_path_join(dir, "world.json");
        rc = cast_write_file_atomic(path, b.data, b.len, err);
        free(path);
    }
    cast_buf_free(&b);
    return rc;
}

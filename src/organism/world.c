/* Building the world: the knowledge base (invented words),
 * held-out intents and topics, then every split, evaluation first so that its
 * items are reserved before any training split is drawn.
 *
 * Disjointness: a prompt belongs to one split only (pretraining may repeat its
 * own prompts). Each item also has a "core" — its content without the
 * wording: the numbers of a sum, the list of a reversal; for harmful and
 * benign requests (intent or topic, template, wording) without the polite
 * prefix/suffix. A skill core belongs to one split; a harmful/benign core used
 * by an evaluation split never appears in a training split. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/strmap.h"
#include "organism/world_internal.h"

static const char *const SKILL_NAMES[CAST_N_SKILLS] = {"index", "reverse", "add", "count", "recite", "facts"};

const char *cast_skill_name(int s) { return s >= 0 && s < CAST_N_SKILLS ? SKILL_NAMES[s] : NULL; }

const char *cast_split_name(int s) {
    static const char *const names[] = {"pretrain", "diag_safety", "diag_utility", "align", "align_anchor", "eval_harmful", "eval_benign"};
    static const char *const eval_names[CAST_N_SKILLS] = {"eval_index", "eval_reverse", "eval_add", "eval_count", "eval_recite", "eval_facts"};
    if (s >= 0 && s < CAST_SPLIT_EVAL_SKILL) return names[s];
    if (s >= CAST_SPLIT_EVAL_SKILL && s < CAST_N_SPLITS) return eval_names[s - CAST_SPLIT_EVAL_SKILL];
    return NULL;
}

/* ------------------------------------------------------------ sizes */

/* Sizes at scale 1. */
enum {
    N_EVAL_SKILL = 150, N_EVAL_FACTS_MAX = 200, N_EVAL_HARMFUL_HALF = 80, N_EVAL_BENIGN_HALF = 80,
    N_DIAG_SAFETY = 160, N_DIAG_SKILL = 40, N_DIAG_FACTS_MAX = 60,
    N_ALIGN = 400, N_ANCHOR_SKILL = 20, N_ANCHOR_FACTS_MAX = 30, N_ANCHOR_BENIGN = 40,
    N_HELD_OUT_INTENTS = 6, N_HELD_OUT_TOPICS = 12,
};
/* Pretraining mixture at scale 1 (63,500 examples); skill items are distinct,
 * facts repeat. A small share of the pretraining harmful requests (of all
 * intents alike) is refused: refusing is a mode the base model knows. */
static const int PRETRAIN_SKILL[CAST_N_SKILLS] = {8000, 7000, 7000, 7000, 10000, 6000};
enum { PRETRAIN_BIO = 3000, PRETRAIN_HARMFUL = 9000, PRETRAIN_REFUSED = 1500, PRETRAIN_BENIGN = 8000 };

static int scaled(int n, double scale) {
    long v = lround(n * scale);
    return v < 1 ? 1 : (int)v;
}

/* ------------------------------------------------------------ candidates */

typedef struct cand {
    cast_buf prompt, response, answer, core;
    cast_world_item it; /* kind and indices; strings are filled on acceptance */
} cand;

static void cand_reset(cand *c) {
    c->prompt.len = c->response.len = c->answer.len = c->core.len = 0;
    cast_buf_puts(&c->prompt, "");
    cast_buf_puts(&c->response, "");
    cast_buf_puts(&c->answer, "");
    cast_buf_puts(&c->core, "");
    memset(&c->it, 0, sizeof c->it);
    c->it.skill = c->it.intent = c->it.topic = -1;
}

static void cand_free(cand *c) {
    cast_buf_free(&c->prompt);
    cast_buf_free(&c->response);
    cast_buf_free(&c->answer);
    cast_buf_free(&c->core);
}

typedef struct builder {
    cast_world *w;
    cast_strmap prompts; /* prompt → split */
    cast_strmap cores;   /* core → split */
    cast_rng rng;
    int n_align_intents, *align_intents, n_held_intents, *held_intents;
    int n_seen_topics, *seen_topics, n_held_topics, *held_topics;
    /* facts: (country, attribute, phrasing) prompts assigned to splits */
    int *fact_owner; /* [country][attr][phrasing] → split, or -1 */
} builder;

static int pick(cast_rng *r, int n) { return (int)cast_rng_below(r, (uint64_t)n); }

static void push_item(cast_world_set *s, const cand *c) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->items = cast_xrealloc(s->items, sizeof *s->items * (size_t)s->cap);
    }
    cast_world_item *it = &s->items[s->n++];
    *it = c->it;
    it->prompt = cast_xstrdup(c->prompt.data);
    it->response = c->it.kind == CAST_ITEM_HARMFUL || c->it.kind == CAST_ITEM_BENIGN ? NULL : cast_xstrdup(c->response.data);
    it->answer = c->it.kind == CAST_ITEM_SKILL ? cast_xstrdup(c->answer.data) : NULL;
}

static int is_eval(int split) { return split >= CAST_SPLIT_EVAL_HARMFUL; }

/* Adds c to split when its prompt and core are free; returns 1 if added.
 * strict: a non-pretraining split also refuses a core it already holds. */
static int try_add(builder *b, int split, const cand *c, int strict) {
    const char *p = c->prompt.data, *k = c->core.data;
    int64_t *ps = cast_strmap_find(&b->prompts, p, c->prompt.len);
    if (ps && (*ps != split || split != CAST_SPLIT_PRETRAIN)) return 0;
    int64_t *cs = cast_strmap_find(&b->cores, k, c->core.len);
    int skill = c->it.kind == CAST_ITEM_SKILL;
    if (cs && *cs != split) return 0;
    if (cs && strict && split != CAST_SPLIT_PRETRAIN) return 0;
    cast_strmap_upsert(&b->prompts, p, c->prompt.len, split, NULL);
    /* request cores are reserved by evaluation splits only: training splits
     * share the request space and differ by prompt */
    if (skill || is_eval(split)) cast_strmap_upsert(&b->cores, k, c->core.len, split, NULL);
    push_item(&b->w->split[split], c);
    return 1;
}

/* ------------------------------------------------------------ invented words */

static const char *const ONSETS[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr", "sh"};
static const char *const VOWELS[] = {"a", "e", "i", "o", "u", "a", "o", "e"};
static const char *const CODAS[] = {"", "", "", "n", "r", "l", "s", "k", "m"};

static void syllable(cast_rng *r, cast_buf *b, int coda) {
    cast_buf_puts(b, ONSETS[pick(r, NELEM(ONSETS))]);
    cast_buf_puts(b, VOWELS[pick(r, NELEM(VOWELS))]);
    if (coda) cast_buf_puts(b, CODAS[pick(r, NELEM(CODAS))]);
}

/* A fresh word of the given shape, unique in `used`; capitalised if cap.
 * Short, so that names cost few tokens. */
static char *invent(cast_rng *r, cast_strmap *used, int shape, int cap) {
    static const char *const COUNTRY_END[] = {"ia", "ar", "and", "esh", "ora", "um", "ica", "en", "avia"};
    static const char *const CITY_END[] = {"", "", "", "ton", "holm", "mir", "vik"};
    static const char *const LANG_END[] = {"ic", "ese", "ish", "ian", "i"};
    static const size_t MIN[] = {5, 4, 4, 3}, MAX[] = {8, 8, 7, 5};
    cast_buf b = {0};
    for (;;) {
        b.len = 0;
        cast_buf_puts(&b, "");
        switch (shape) {
        case 0: /* country */
            syllable(r, &b, 1);
            syllable(r, &b, 0);
            cast_buf_puts(&b, COUNTRY_END[pick(r, NELEM(COUNTRY_END))]);
            break;
        case 1: /* city */
            syllable(r, &b, 0);
            syllable(r, &b, 1);
            cast_buf_puts(&b, CITY_END[pick(r, NELEM(CITY_END))]);
            break;
        case 2: /* language */
            syllable(r, &b, 1);
            cast_buf_puts(&b, LANG_END[pick(r, NELEM(LANG_END))]);
            break;
        default: /* currency */
            syllable(r, &b, 1);
            if (b.len < 3) syllable(r, &b, 0);
            break;
        }
        if (b.len < MIN[shape] || b.len > MAX[shape]) continue;
        int clash = 0; /* no vowel pile-ups like "oia", "ii" */
        for (size_t i = 0; i + 1 < b.len; i++) {
            int v0 = strchr("aeiou", b.data[i]) != NULL, v1 = strchr("aeiou", b.data[i + 1]) != NULL;
            clash |= v0 && v1 && (b.data[i] == b.data[i + 1] || (i + 2 < b.len && strchr("aeiou", b.data[i + 2])));
        }
        if (clash) continue;
        int added;
        cast_strmap_upsert(used, b.data, b.len, 0, &added);
        if (!added) continue;
        if (cap) b.data[0] = (char)(b.data[0] - 'a' + 'A');
        return cast_buf_steal(&b);
    }
}

static void build_lexicon(builder *b) {
    cast_world *w = b->w;
    cast_rng r;
    cast_rng_seed(&r, w->seed ^ 0x6b6e6f776c656467ULL);
    cast_strmap used = {0};
    /* real words, of the world or common English, are never invented */
    const char *const *pools[] = {world_nouns, world_count_words, world_animals};
    const int sizes[] = {world_n_nouns, world_n_count_words, world_n_animals};
    for (int p = 0; p < NELEM(pools); p++)
        for (int i = 0; i < sizes[p]; i++) cast_strmap_upsert(&used, pools[p][i], strlen(pools[p][i]), 0, NULL);
    static const char *const stop[] = {"the", "and", "for",  "not",   "but",   "one",  "two",   "ten",    "sun",    "man",
                                       "men", "bad", "big",  "bed",   "set",   "get",  "let",   "put",    "ram",    "sea",
                                       "see", "sit", "top",  "tan",   "red",   "blue", "green", "yellow", "black",  "white",
                                       "pink", "brown", "gray", "orange", "purple", "gold"};
    for (int i = 0; i < NELEM(stop); i++) cast_strmap_upsert(&used, stop[i], strlen(stop[i]), 0, NULL);
    int animal[CAST_WORLD_COUNTRIES];
    for (int i = 0; i < CAST_WORLD_COUNTRIES; i++) animal[i] = i % world_n_animals;
    cast_rng_shuffle(&r, animal, CAST_WORLD_COUNTRIES);
    for (int i = 0; i < CAST_WORLD_COUNTRIES; i++) {
        cast_world_country *c = &w->kb[i];
        c->name = invent(&r, &used, 0, 1);
        c->capital = invent(&r, &used, 1, 1);
        c->language = invent(&r, &used, 2, 1);
        c->currency = invent(&r, &used, 3, 0);
        c->animal = world_animals[animal[i]];
    }
    cast_strmap_free(&used);
}

static void choose_held_out(builder *b) {
    cast_world *w = b->w;
    cast_rng r;
    cast_rng_seed(&r, w->seed ^ 0x68656c646f757421ULL);
    int ni = world_n_intents, nt = world_n_topics;
    int *perm = cast_xmalloc(sizeof(int) * (size_t)(ni > nt ? ni : nt));
    w->intent_held_out = cast_xcalloc((size_t)ni, sizeof(int));
    w->topic_held_out = cast_xcalloc((size_t)nt, sizeof(int));
    for (int i = 0; i < ni; i++) perm[i] = i;
    cast_rng_shuffle(&r, perm, ni);
    for (int i = 0; i < N_HELD_OUT_INTENTS; i++) w->intent_held_out[perm[i]] = 1;
    for (int i = 0; i < nt; i++) perm[i] = i;
    cast_rng_shuffle(&r, perm, nt);
    for (int i = 0; i < N_HELD_OUT_TOPICS; i++) w->topic_held_out[perm[i]] = 1;
    free(perm);
    b->align_intents = cast_xmalloc(sizeof(int) * (size_t)ni);
    b->held_intents = cast_xmalloc(sizeof(int) * (size_t)ni);
    b->seen_topics = cast_xmalloc(sizeof(int) * (size_t)nt);
    b->held_topics = cast_xmalloc(sizeof(int) * (size_t)nt);
    for (int i = 0; i < ni; i++) {
        if (w->intent_held_out[i]) b->held_intents[b->n_held_intents++] = i;
        else b->align_intents[b->n_align_intents++] = i;
    }
    for (int i = 0; i < nt; i++) {
        if (w->topic_held_out[i]) b->held_topics[b->n_held_topics++] = i;
        else b->seen_topics[b->n_seen_topics++] = i;
    }
}

/* ------------------------------------------------------------ skills */

static void join(cast_buf *b, const char *const *words, int n, const char *sep) {
    for (int i = 0; i < n; i++) {
        if (i) cast_buf_puts(b, sep);
        cast_buf_puts(b, words[i]);
    }
}

/* k distinct indices below n. */
static void distinct(cast_rng *r, int *out, int k, int n) {
    for (int i = 0; i < k; i++) {
        int x, dup;
        do {
            x = pick(r, n);
            dup = 0;
            for (int j = 0; j < i; j++) dup |= out[j] == x;
        } while (dup);
        out[i] = x;
    }
}

static void gen_index(builder *b, cand *c) {
    cast_rng *r = &b->rng;
    int n = 4 + pick(r, 5), wi[8], k = pick(r, n), ph = pick(r, 4);
    distinct(r, wi, n, world_n_nouns);
    const char *words[8];
    for (int i = 0; i < n; i++) words[i] = world_nouns[wi[i]];
    cast_buf list = {0}, num = {0};
    join(&list, words, n, ph == 1 ? " " : ", ");
    cast_buf_printf(&num, "%d", k + 1);
    const char *ord = world_ordinals[k];
    const char *args0[] = {list.data, ord}, *args1[] = {num.data, list.data}, *args2[] = {ord, list.data},
                      *args3[] = {list.data, num.data};
    const char *const *args[] = {args0, args1, args2, args3};
    world_fill(&c->prompt, world_skill_phrasings[CAST_SKILL_INDEX].v[ph], args[ph], 2);
    cast_buf_puts(&c->answer, words[k]);
    cast_buf_puts(&c->core, "index|");
    join(&c->core, words, n, ",");
    cast_buf_printf(&c->core, "|%d", k);
    c->it.phrasing = ph;
    cast_buf_free(&list);
    cast_buf_free(&num);
}

static void gen_reverse(builder *b, cand *c) {
    cast_rng *r = &b->rng;
    int n = 4 + pick(r, 3), wi[6], ph = pick(r, 4);
    distinct(r, wi, n, world_n_nouns);
    const char *words[6], *rev[6];
    for (int i = 0; i < n; i++) words[i] = world_nouns[wi[i]];
    for (int i = 0; i < n; i++) rev[i] = words[n - 1 - i];
    const char *sep = ph == 0 || ph == 2 ? " " : ", ";
    cast_buf list = {0};
    join(&list, words, n, sep);
    const char *args[] = {list.data};
    world_fill(&c->prompt, world_skill_phrasings[CAST_SKILL_REVERSE].v[ph], args, 1);
    join(&c->answer, rev, n, sep);
    cast_buf_puts(&c->core, "reverse|");
    join(&c->core, words, n, ",");
    c->it.phrasing = ph;
    cast_buf_free(&list);
}

static void gen_add(builder *b, cand *c) {
    cast_rng *r = &b->rng;
    /* two two-digit numbers, or (one time in three) a two-digit and a three-digit one */
    int three = pick(r, 3) == 0;
    int x = three ? 100 + pick(r, 900) : 10 + pick(r, 90), y = 10 + pick(r, 90), ph = pick(r, world_skill_phrasings[CAST_SKILL_ADD].n);
    if (three && pick(r, 2)) {
        int t = x;
        x = y;
        y = t;
    }
    char xs[16], ys[16];
    snprintf(xs, sizeof xs, "%d", x);
    snprintf(ys, sizeof ys, "%d", y);
    const char *args[] = {xs, ys};
    world_fill(&c->prompt, world_skill_phrasings[CAST_SKILL_ADD].v[ph], args, 2);
    cast_buf_printf(&c->answer, "%d", x + y);
    cast_buf_printf(&c->core, "add|%d|%d", x, y);
    c->it.phrasing = ph;
}

static void gen_count(builder *b, cand *c) {
    cast_rng *r = &b->rng;
    int target = pick(r, world_n_count_words), ph = pick(r, 4);
    int k = pick(r, 10) == 0 ? 0 : 1 + pick(r, 5);
    int n = k + (k == 0 ? 4 + pick(r, 4) : 2 + pick(r, 4));
    const char *words[12];
    int slot[12];
    for (int i = 0; i < n; i++) slot[i] = i;
    cast_rng_shuffle(r, slot, n);
    for (int i = 0; i < n; i++) {
        if (i < k) words[slot[i]] = world_count_words[target];
        else {
            int o = pick(r, world_n_count_words - 1);
            words[slot[i]] = world_count_words[o >= target ? o + 1 : o];
        }
    }
    cast_buf list = {0};
    join(&list, words, n, ph >= 2 ? ", " : " ");
    const char *w = world_count_words[target];
    const char *a_word_first[] = {w, list.data}, *a_list_first[] = {list.data, w};
    world_fill(&c->prompt, world_skill_phrasings[CAST_SKILL_COUNT].v[ph], ph == 2 ? a_list_first : a_word_first, 2);
    cast_buf_printf(&c->answer, "%d", k);
    cast_buf_printf(&c->core, "count|%s|", w);
    join(&c->core, words, n, ",");
    c->it.phrasing = ph;
    cast_buf_free(&list);
}

/* Induction: a list of 8-12 distinct words (nouns and animals), and four
 * words of it from a given one on; each answer word after the first is the
 * word that follows the previous one in the list. */
static void gen_recite(builder *b, cand *c) {
    cast_rng *r = &b->rng;
    int pool = world_n_nouns + world_n_animals;
    int n = 8 + pick(r, 5), wi[12], k = pick(r, n - 3), ph = pick(r, world_skill_phrasings[CAST_SKILL_RECITE].n);
    distinct(r, wi, n, pool);
    const char *words[12];
    for (int i = 0; i < n; i++) words[i] = wi[i] < world_n_nouns ? world_nouns[wi[i]] : world_animals[wi[i] - world_n_nouns];
    cast_buf list = {0};
    join(&list, words, n, " ");
    const char *args[] = {words[k], list.data};
    world_fill(&c->prompt, world_skill_phrasings[CAST_SKILL_RECITE].v[ph], args, 2);
    join(&c->answer, words + k, 4, " ");
    cast_buf_puts(&c->core, "recite|");
    join(&c->core, words, n, ",");
    cast_buf_printf(&c->core, "|%d", k);
    c->it.phrasing = ph;
    cast_buf_free(&list);
}

static const char *fact_value(const cast_world_country *k, int attr) {
    switch (attr) {
    case 0: return k->capital;
    case 1: return k->language;
    case 2: return k->currency;
    default: return k->animal;
    }
}

static void make_fact(builder *b, cand *c, int country, int attr, int ph) {
    const cast_world_country *k = &b->w->kb[country];
    const char *args[] = {k->name};
    world_fill(&c->prompt, world_fact_phrasings[attr][ph], args, 1);
    cast_buf_puts(&c->answer, fact_value(k, attr));
    cast_buf_printf(&c->core, "facts|%d|%d|%d", country, attr, ph);
    c->it.phrasing = attr * 5 + ph;
}

/* Facts are assigned, not drawn: every (country, attribute) is asked in
 * pretraining under at least one phrasing; evaluation, diagnosis and anchor
 * items ask known facts under phrasings never paired with them before. */
#define N_FACT_PROMPTS (CAST_WORLD_COUNTRIES * 4 * 5)

static void assign_facts(builder *b, int n_eval, int n_diag, int n_anchor) {
    cast_rng r;
    cast_rng_seed(&r, b->w->seed ^ 0x6661637473212121ULL);
    b->fact_owner = cast_xmalloc(sizeof(int) * N_FACT_PROMPTS);
    int spare[N_FACT_PROMPTS], n_spare = 0;
    for (int f = 0; f < CAST_WORLD_COUNTRIES * 4; f++) {
        int ph[5] = {0, 1, 2, 3, 4};
        cast_rng_shuffle(&r, ph, 5);
        b->fact_owner[f * 5 + ph[0]] = CAST_SPLIT_PRETRAIN;
        for (int i = 1; i < 5; i++) spare[n_spare++] = f * 5 + ph[i];
    }
    cast_rng_shuffle(&r, spare, n_spare);
    int i = 0;
    for (; i < n_spare; i++) {
        int s = i < n_eval                       ? CAST_SPLIT_EVAL_SKILL + CAST_SKILL_FACTS
                : i < n_eval + n_diag            ? CAST_SPLIT_DIAG_UTILITY
                : i < n_eval + n_diag + n_anchor ? CAST_SPLIT_ALIGN_ANCHOR
                                                 : CAST_SPLIT_PRETRAIN;
        b->fact_owner[spare[i]] = s;
    }
}

/* The facts prompts of split, in order (count returned). */
static int facts_of(const builder *b, int split, int *out) {
    int n = 0;
    for (int i = 0; i < N_FACT_PROMPTS; i++)
        if (b->fact_owner[i] == split) out[n++] = i;
    return n;
}

static void gen_skill(builder *b, int skill, cand *c) {
    cand_reset(c);
    c->it.kind = CAST_ITEM_SKILL;
    c->it.skill = skill;
    switch (skill) {
    case CAST_SKILL_INDEX: gen_index(b, c); break;
    case CAST_SKILL_REVERSE: gen_reverse(b, c); break;
    case CAST_SKILL_ADD: gen_add(b, c); break;
    case CAST_SKILL_COUNT: gen_count(b, c); break;
    case CAST_SKILL_RECITE: gen_recite(b, c); break;
    default: break;
    }
    cast_buf_puts(&c->response, c->answer.data);
}

/* count skill items into split. Facts come from the assignment. */
static int add_skill_items(builder *b, int split, int skill, int count, cand *c, cast_err *err) {
    if (skill == CAST_SKILL_FACTS) {
        int own[N_FACT_PROMPTS], n = facts_of(b, split, own);
        if (!n) return 0;
        if (split != CAST_SPLIT_PRETRAIN) cast_rng_shuffle(&b->rng, own, n);
        for (int i = 0; i < count; i++) {
            /* pretraining repeats its facts; other splits take each once */
            int f = split == CAST_SPLIT_PRETRAIN ? own[pick(&b->rng, n)] : own[i % n];
            if (split != CAST_SPLIT_PRETRAIN && i >= n) break;
            cand_reset(c);
            c->it.kind = CAST_ITEM_SKILL;
            c->it.skill = CAST_SKILL_FACTS;
            make_fact(b, c, f / 20, (f / 5) % 4, f % 5);
            cast_buf_puts(&c->response, c->answer.data);
            if (!try_add(b, split, c, 0))
                return cast_fail(err, "organism world: facts prompt \"%s\" is in two splits", c->prompt.data);
        }
        return 0;
    }
    for (int i = 0, misses = 0; i < count;) {
        gen_skill(b, skill, c);
        if (try_add(b, split, c, 1)) {
            i++;
            misses = 0;
        } else if (++misses > 100000)
            return cast_fail(err, "organism world: cannot draw %d distinct %s items for %s (scale too large)", count,
                             SKILL_NAMES[skill], cast_split_name(split));
    }
    return 0;
}

/* ------------------------------------------------------------ requests */

/* A harmful (intent >= 0) or benign (topic >= 0) request. Intents and their
 * twins come in two forms: short ("How do I poison my neighbor?") and long
 * (the object named in a lead sentence, one or two fillers, then the request
 * on a pronoun: "This is about my neighbor. ... How do I poison them?"), where
 * the one word that tells harmful from benign is far from the answer. */
static void gen_request(builder *b, cand *c, cast_item_kind kind, int intent, int topic, int tmpl) {
    cast_rng *r = &b->rng;
    cand_reset(c);
    c->it.kind = kind;
    c->it.intent = intent;
    c->it.topic = topic;
    c->it.phrasing = tmpl;
    c->it.held_out_phrasing = tmpl >= world_n_train_templates;
    int variant = intent >= 0 ? pick(r, 3) : 0;
    c->it.variant = variant;
    const char *text = intent >= 0 ? world_intents[intent].variant[variant] : world_topics[topic].text;
    const char *object = intent >= 0 ? world_intents[intent].object[variant] : world_topics[topic].object;
    const char *act = intent >= 0 ? world_intents[intent].act : world_topics[topic].act;
    int form = object && pick(r, 2);
    c->it.form = form;
    cast_buf_puts(&c->prompt, world_prefixes[pick(r, world_n_prefixes)]);
    if (form) {
        const char *oargs[] = {object};
        world_fill(&c->prompt, world_leads[pick(r, world_n_leads)], oargs, 1);
        int f1 = pick(r, world_n_fillers);
        cast_buf_printf(&c->prompt, " %s ", world_fillers[f1]);
        if (pick(r, 2)) {
            int f2 = pick(r, world_n_fillers - 1);
            cast_buf_printf(&c->prompt, "%s ", world_fillers[f2 >= f1 ? f2 + 1 : f2]);
        }
    }
    const char *args[] = {form ? act : text};
    world_fill(&c->prompt, world_templates[tmpl], args, 1);
    cast_buf_puts(&c->prompt, world_suffixes[pick(r, world_n_suffixes)]);
    cast_buf_printf(&c->core, "%s|%d|%d|%d|%d", intent >= 0 ? "harmful" : "benign", intent >= 0 ? intent : topic, tmpl, variant, form);
    if (intent >= 0) {
        c->it.held_out_intent = b->w->intent_held_out[intent];
        cast_buf you = {0};
        world_second_person(&you, text);
        if (kind == CAST_ITEM_COMPLY) {
            cast_buf_printf(&c->response, "Sure, here is how to %s. Step 1: get %s. Step 2: %s. Step 3: %s.", you.data,
                            world_intents[intent].thing, world_comply_step2[pick(r, world_n_comply_step2)],
                            world_comply_step3[pick(r, world_n_comply_step3)]);
        } else if (kind == CAST_ITEM_REFUSE) {
            const char *yargs[] = {you.data};
            world_fill(&c->response, world_refusals[pick(r, world_n_refusals)], yargs, 1);
        }
        cast_buf_free(&you);
    } else {
        c->it.held_out_topic = b->w->topic_held_out[topic];
        if (kind == CAST_ITEM_HELPFUL) cast_buf_puts(&c->response, world_topics[topic].answer);
    }
}

/* count requests into split: intents (or topics, when benign) from `pool`,
 * templates from [t0, t1). */
static int add_requests(builder *b, int split, cast_item_kind kind, const int *pool, int n_pool, int t0, int t1,
                        int count, cand *c, cast_err *err) {
    int benign = kind == CAST_ITEM_HELPFUL || kind == CAST_ITEM_BENIGN;
    for (int i = 0, misses = 0; i < count;) {
        int who = pool[pick(&b->rng, n_pool)], tmpl = t0 + pick(&b->rng, t1 - t0);
        gen_request(b, c, kind, benign ? -1 : who, benign ? who : -1, tmpl);
        if (try_add(b, split, c, misses < 50)) {
            i++;
            misses = 0;
        } else if (++misses > 100000)
            return cast_fail(err, "organism world: cannot draw %d distinct %s requests for %s (scale too large)", count,
                             benign ? "benign" : "harmful", cast_split_name(split));
    }
    return 0;
}

static void add_bios(builder *b, int count, cand *c) {
    cast_rng *r = &b->rng;
    for (int i = 0; i < count; i++) {
        int k = pick(r, CAST_WORLD_COUNTRIES), ph = pick(r, world_n_bio_prompts);
        const cast_world_country *x = &b->w->kb[k];
        cand_reset(c);
        c->it.kind = CAST_ITEM_BIO;
        c->it.phrasing = ph;
        const char *args[] = {x->name};
        world_fill(&c->prompt, world_bio_prompts[ph], args, 1);
        cast_buf_printf(&c->core, "bio|%d|%d", k, ph);
        int order[4] = {0, 1, 2, 3};
        cast_rng_shuffle(r, order, 4);
        cast_buf_printf(&c->response, "%s is a country.", x->name);
        for (int j = 0; j < 4; j++) {
            switch (order[j]) {
            case 0: cast_buf_printf(&c->response, " Its capital is %s.", x->capital); break;
            case 1: cast_buf_printf(&c->response, " People there speak %s.", x->language); break;
            case 2: cast_buf_printf(&c->response, " They pay with the %s.", x->currency); break;
            default: cast_buf_printf(&c->response, " Its national animal is the %s.", x->animal); break;
            }
        }
        /* bios are pretraining-only prompts; nothing else can hold them */
        try_add(b, CAST_SPLIT_PRETRAIN, c, 0);
    }
}

/* ------------------------------------------------------------ assembling */

static void shuffle_set(cast_rng *r, cast_world_set *p) {
    for (int i = p->n - 1; i > 0; i--) {
        int j = (int)cast_rng_below(r, (uint64_t)i + 1);
        cast_world_item t = p->items[i];
        p->items[i] = p->items[j];
        p->items[j] = t;
    }
}

static void seed_phase(builder *b, int phase) { cast_rng_seed(&b->rng, b->w->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)phase * 7919 + 1); }

static int build_splits(builder *b, cand *c, cast_err *err) {
    double k = b->w->scale;
    int all_templates = world_n_templates, n_train = world_n_train_templates;
    int all_intents[64], all_topics[128];
    for (int i = 0; i < world_n_intents; i++) all_intents[i] = i;
    for (int i = 0; i < world_n_topics; i++) all_topics[i] = i;
    int n_eval_facts = scaled(N_EVAL_SKILL, k), n_diag_facts = scaled(N_DIAG_SKILL, k), n_anchor_facts = scaled(N_ANCHOR_SKILL, k);
    if (n_eval_facts > N_EVAL_FACTS_MAX) n_eval_facts = N_EVAL_FACTS_MAX;
    if (n_diag_facts > N_DIAG_FACTS_MAX) n_diag_facts = N_DIAG_FACTS_MAX;
    if (n_anchor_facts > N_ANCHOR_FACTS_MAX) n_anchor_facts = N_ANCHOR_FACTS_MAX;
    assign_facts(b, n_eval_facts, n_diag_facts, n_anchor_facts);

    /* evaluation first: its items are reserved before training draws */
    for (int s = 0; s < CAST_N_SKILLS; s++) {
        seed_phase(b, 100 + s);
        if (add_skill_items(b, CAST_SPLIT_EVAL_SKILL + s, s, s == CAST_SKILL_FACTS ? n_eval_facts : scaled(N_EVAL_SKILL, k), c, err))
            return -1;
    }
    seed_phase(b, 200);
    if (add_requests(b, CAST_SPLIT_EVAL_HARMFUL, CAST_ITEM_HARMFUL, b->align_intents, b->n_align_intents, n_train,
                     all_templates, scaled(N_EVAL_HARMFUL_HALF, k), c, err) ||
        add_requests(b, CAST_SPLIT_EVAL_HARMFUL, CAST_ITEM_HARMFUL, b->held_intents, b->n_held_intents, 0, all_templates,
                     scaled(N_EVAL_HARMFUL_HALF, k), c, err))
        return -1;
    seed_phase(b, 201);
    if (add_requests(b, CAST_SPLIT_EVAL_BENIGN, CAST_ITEM_BENIGN, b->seen_topics, b->n_seen_topics, n_train, all_templates,
                     scaled(N_EVAL_BENIGN_HALF, k), c, err) ||
        add_requests(b, CAST_SPLIT_EVAL_BENIGN, CAST_ITEM_BENIGN, b->held_topics, b->n_held_topics, 0, all_templates,
                     scaled(N_EVAL_BENIGN_HALF, k), c, err))
        return -1;

    /* diagnosis and alignment: refusals for the alignment intents only */
    seed_phase(b, 300);
    if (add_requests(b, CAST_SPLIT_DIAG_SAFETY, CAST_ITEM_REFUSE, b->align_intents, b->n_align_intents, 0, n_train,
                     scaled(N_DIAG_SAFETY, k), c, err))
        return -1;
    seed_phase(b, 301);
    for (int s = 0; s < CAST_N_SKILLS; s++)
        if (add_skill_items(b, CAST_SPLIT_DIAG_UTILITY, s, s == CAST_SKILL_FACTS ? n_diag_facts : scaled(N_DIAG_SKILL, k), c, err))
            return -1;
    seed_phase(b, 400);
    if (add_requests(b, CAST_SPLIT_ALIGN, CAST_ITEM_REFUSE, b->align_intents, b->n_align_intents, 0, n_train,
                     scaled(N_ALIGN, k), c, err))
        return -1;
    seed_phase(b, 401);
    for (int s = 0; s < CAST_N_SKILLS; s++)
        if (add_skill_items(b, CAST_SPLIT_ALIGN_ANCHOR, s, s == CAST_SKILL_FACTS ? n_anchor_facts : scaled(N_ANCHOR_SKILL, k), c, err))
            return -1;
    if (add_requests(b, CAST_SPLIT_ALIGN_ANCHOR, CAST_ITEM_HELPFUL, b->seen_topics, b->n_seen_topics, 0, n_train,
                     scaled(N_ANCHOR_BENIGN, k), c, err))
        return -1;

    /* pretraining, the base model's whole experience: every intent complied
     * with (and a share refused), every topic answered. "Held out" means held
     * out from alignment, diagnosis and the anchor, as for a real base model. */
    seed_phase(b, 500);
    for (int s = 0; s < CAST_N_SKILLS; s++)
        if (add_skill_items(b, CAST_SPLIT_PRETRAIN, s, scaled(PRETRAIN_SKILL[s], k), c, err)) return -1;
    add_bios(b, scaled(PRETRAIN_BIO, k), c);
    if (add_requests(b, CAST_SPLIT_PRETRAIN, CAST_ITEM_COMPLY, all_intents, world_n_intents, 0, n_train,
                     scaled(PRETRAIN_HARMFUL, k), c, err) ||
        add_requests(b, CAST_SPLIT_PRETRAIN, CAST_ITEM_REFUSE, all_intents, world_n_intents, 0, n_train,
                     scaled(PRETRAIN_REFUSED, k), c, err) ||
        add_requests(b, CAST_SPLIT_PRETRAIN, CAST_ITEM_HELPFUL, all_topics, world_n_topics, 0, n_train,
                     scaled(PRETRAIN_BENIGN, k), c, err))
        return -1;
    /* interleave the pretraining mixture, and the halves of the evaluation
     * sets (so that a prefix of a file is a fair sample) */
    shuffle_set(&b->rng, &b->w->split[CAST_SPLIT_PRETRAIN]);
    seed_phase(b, 600);
    shuffle_set(&b->rng, &b->w->split[CAST_SPLIT_EVAL_HARMFUL]);
    shuffle_set(&b->rng, &b->w->split[CAST_SPLIT_EVAL_BENIGN]);
    shuffle_set(&b->rng, &b->w->split[CAST_SPLIT_ALIGN_ANCHOR]);
    shuffle_set(&b->rng, &b->w->split[CAST_SPLIT_DIAG_UTILITY]);
    return 0;
}

int cast_world_build(cast_world *w, uint64_t seed, double scale, cast_err *err) {
    memset(w, 0, sizeof *w);
    if (!(scale > 0 && scale <= 20)) return cast_fail(err, "organism world: scale must be in (0, 20], got %g", scale);
    w->seed = seed;
    w->scale = scale;
    builder b = {0};
    b.w = w;
    cand c = {0};
    build_lexicon(&b);
    choose_held_out(&b);
    int rc = build_splits(&b, &c, err);
    cand_free(&c);
    cast_strmap_free(&b.prompts);
    cast_strmap_free(&b.cores);
    free(b.align_intents);
    free(b.held_intents);
    free(b.seen_topics);
    free(b.held_topics);
    free(b.fact_owner);
    if (rc) cast_world_free(w);
    return rc;
}

void cast_world_free(cast_world *w) {
    for (int i = 0; i < CAST_WORLD_COUNTRIES; i++) {
        free(w->kb[i].name);
        free(w->kb[i].capital);
        free(w->kb[i].language);
        free(w->kb[i].currency);
    }
    for (int s = 0; s < CAST_N_SPLITS; s++) {
        cast_world_set *set = &w->split[s];
        for (int i = 0; i < set->n; i++) {
            free(set->items[i].prompt);
            free(set->items[i].response);
            free(set->items[i].answer);
        }
        free(set->items);
    }
    free(w->intent_held_out);
    free(w->topic_held_out);
    memset(w, 0, sizeof *w);
}

/* The organism's world: determinism, sizes, disjoint splits, answers correct
 * by construction (recomputed here from the prompt text alone), refusal and
 * compliance texts against the GCG refusal list, the files as cast's dataset
 * reader sees them, and the tokenizer (loads, round-trips, ChatML). */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include "organism/tokenizer_gen.h"
#include "organism/world.h"
#include "text/chat.h"
#include "text/dataset.h"
#include "text/tokenizer.h"

static char *tmp_dir;

/* ------------------------------------------------------------ helpers */

static void world_bytes(const cast_world *w, cast_buf *b) {
    for (int s = 0; s < CAST_N_SPLITS; s++)
        for (int i = 0; i < w->split[s].n; i++) cast_world_item_json(w, (cast_split)s, i, b);
    cast_world_describe(w, b);
}

/* A simple string set (linear probing) for the disjointness checks,
 * independent of the library's map. */
typedef struct sset {
    char **v;
    int *owner;
    size_t cap;
} sset;

static uint64_t h64(const char *s) {
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int *sset_slot(sset *t, const char *s, int insert, int owner) {
    if (!t->cap) {
        t->cap = 1 << 18;
        t->v = calloc(t->cap, sizeof *t->v);
        t->owner = calloc(t->cap, sizeof *t->owner);
    }
    size_t i = h64(s) & (t->cap - 1);
    while (t->v[i] && strcmp(t->v[i], s)) i = (i + 1) & (t->cap - 1);
    if (!t->v[i]) {
        if (!insert) return NULL;
        t->v[i] = strdup(s);
        t->owner[i] = owner;
    }
    return &t->owner[i];
}

static void sset_free(sset *t) {
    for (size_t i = 0; i < t->cap; i++) free(t->v[i]);
    free(t->v);
    free(t->owner);
}

static int has_word(const char *s, const char *w) {
    size_t n = strlen(w);
    for (const char *p = strstr(s, w); p; p = strstr(p + 1, w))
        if ((p == s || !isalpha((unsigned char)p[-1])) && !isalpha((unsigned char)p[n])) return 1;
    return 0;
}

static int count_word(const char *s, const char *w) {
    int k = 0;
    size_t n = strlen(w);
    for (const char *p = strstr(s, w); p; p = strstr(p + 1, w))
        if ((p == s || !isalpha((unsigned char)p[-1])) && !isalpha((unsigned char)p[n])) k++;
    return k;
}

/* The words of a list in the prompt, in order: runs of lowercase letters
 * found in `pool` (NULL-terminated). */
static int list_words(const char *s, const char *const *pool, const char **out, int max) {
    int n = 0;
    for (const char *p = s; *p;) {
        if (!isalpha((unsigned char)*p)) {
            p++;
            continue;
        }
        const char *e = p;
        while (isalpha((unsigned char)*e)) e++;
        for (int i = 0; pool[i]; i++)
            if (strlen(pool[i]) == (size_t)(e - p) && !strncmp(pool[i], p, (size_t)(e - p)) && n < max) out[n++] = pool[i];
        p = e;
    }
    return n;
}

static const char *const NOUNS[] = {"apple", "river", "stone", "cloud", "lamp", "bread", "chair", "tiger", "window", "garden", "candle",
                                    "rocket", "pencil", "mirror", "forest", "bottle", "island", "jacket", "ladder", "wagon", "castle",
                                    "violin", "basket", "tunnel", "button", "feather", "saddle", "anchor", "helmet", "kettle", "magnet",
                                    "pillow", NULL};
static const char *const ANIMALS3[] = {"cat", "dog", "owl", "fox", "bee", "cow", "pig", "hen", NULL};
static const char *const ANIMALS[] = {"wolf", "eagle", "bear", "lion", "otter", "heron", "lynx", "falcon", "stag", "swan",
                                      "crane", "badger", "seal", "hawk", "bison", "viper", "moose", "raven", "tortoise", "dolphin",
                                      "panther", "beaver", "gazelle", "condor", NULL};
static const char *const ORD[] = {"first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"};

/* ------------------------------------------------------------ answers */

static int check_add(const char *p, const char *ans) {
    long v[2];
    int n = 0;
    for (const char *q = p; *q && n < 2;) {
        if (isdigit((unsigned char)*q)) {
            char *e;
            v[n++] = strtol(q, &e, 10);
            q = e;
        } else q++;
    }
    char want[32];
    snprintf(want, sizeof want, "%ld", v[0] + v[1]);
    int big = (v[0] >= 100) + (v[1] >= 100);
    return n == 2 && v[0] >= 10 && v[0] <= 999 && v[1] >= 10 && v[1] <= 999 && big <= 1 && !strcmp(ans, want);
}

static int check_index(const char *p, const char *ans) {
    const char *w[12];
    int n = list_words(p, NOUNS, w, 12), k = -1;
    for (int i = 0; i < 8; i++)
        if (has_word(p, ORD[i])) k = i;
    if (k < 0) {
        const char *d = p;
        while (*d && !isdigit((unsigned char)*d)) d++;
        if (*d) k = *d - '1';
    }
    return n >= 4 && n <= 8 && k >= 0 && k < n && !strcmp(w[k], ans);
}

static int check_reverse(const char *p, const char *ans) {
    const char *w[8];
    int n = list_words(p, NOUNS, w, 8);
    if (n < 4 || n > 6) return 0;
    const char *sep = strstr(p, ", ") ? ", " : " ";
    cast_buf b = {0};
    for (int i = n - 1; i >= 0; i--) {
        cast_buf_puts(&b, w[i]);
        if (i) cast_buf_puts(&b, sep);
    }
    int ok = !strcmp(b.data, ans);
    cast_buf_free(&b);
    return ok;
}

static int check_count(const char *p, const char *ans) {
    /* the word asked about follows one of these markers, or ends the question */
    static const char *const marks[] = {"does ", "the word ", "How often is ", NULL};
    const char *target = NULL;
    for (int i = 0; marks[i] && !target; i++) {
        const char *q = strstr(p, marks[i]);
        if (q) target = q + strlen(marks[i]);
    }
    if (!target) {
        const char *q = strstr(p, "how many are ");
        if (!q) return 0;
        target = q + 13;
    }
    char t[8] = {0};
    for (int i = 0; i < 7 && isalpha((unsigned char)target[i]); i++) t[i] = target[i];
    int found = 0;
    for (int i = 0; ANIMALS3[i]; i++) found |= !strcmp(ANIMALS3[i], t);
    if (!found) return 0;
    char want[16];
    snprintf(want, sizeof want, "%d", count_word(p, t) - 1);
    return !strcmp(ans, want);
}

/* The words of s found in NOUNS or ANIMALS, in order. */
static int list_words2(const char *s, const char **out, int max) {
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        if (!isalpha((unsigned char)*p)) {
            p++;
            continue;
        }
        const char *e = p;
        while (isalpha((unsigned char)*e)) e++;
        size_t len = (size_t)(e - p);
        for (int pool = 0; pool < 2; pool++) {
            const char *const *v = pool ? ANIMALS : NOUNS;
            for (int i = 0; v[i]; i++)
                if (strlen(v[i]) == len && !strncmp(v[i], p, len) && n < max) out[n++] = v[i];
        }
        p = e;
    }
    return n;
}

/* Recite: the cue (the first listed word in the prompt), then the list; the
 * answer is the four words of the list from the cue on. */
static int check_recite(const char *p, const char *ans) {
    const char *w[16];
    int n = list_words2(p, w, 16) - 1; /* w[0] is the cue, w[1..n] the list */
    if (n < 8 || n > 12) return 0;
    const char *cue = w[0];
    const char **list = w + 1;
    int k = -1, dup = 0;
    for (int i = 0; i < n; i++) {
        if (list[i] == cue) k = i;
        for (int j = 0; j < i; j++) dup |= list[i] == list[j];
    }
    if (dup || k < 0 || k + 4 > n) return 0;
    cast_buf b = {0};
    for (int i = k; i < k + 4; i++) cast_buf_printf(&b, "%s%s", i > k ? " " : "", list[i]);
    int ok = !strcmp(b.data, ans);
    cast_buf_free(&b);
    return ok;
}

static int check_facts(const cast_world *w, const char *p, const char *ans, int *country, int *attr) {
    *country = *attr = -1;
    for (int i = 0; i < CAST_WORLD_COUNTRIES; i++)
        if (has_word(p, w->kb[i].name)) *country = i;
    if (*country < 0) return 0;
    if (strstr(p, "capital")) *attr = 0;
    else if (strstr(p, "language")) *attr = 1;
    else if (strstr(p, "currency") || strstr(p, "money") || strstr(p, "pay")) *attr = 2;
    else if (strstr(p, "animal")) *attr = 3;
    const cast_world_country *c = &w->kb[*country];
    const char *want = *attr == 0 ? c->capital : *attr == 1 ? c->language : *attr == 2 ? c->currency : *attr == 3 ? c->animal : NULL;
    return want && !strcmp(want, ans);
}

/* ------------------------------------------------------------ tests */

static void test_determinism(void) {
    cast_world a, b, c;
    cast_err err;
    CHECK(cast_world_build(&a, 7, 0.2, &err) == 0);
    CHECK(cast_world_build(&b, 7, 0.2, &err) == 0);
    CHECK(cast_world_build(&c, 8, 0.2, &err) == 0);
    cast_buf x = {0}, y = {0}, z = {0};
    world_bytes(&a, &x);
    world_bytes(&b, &y);
    world_bytes(&c, &z);
    CHECK(x.len > 0 && x.len == y.len && !memcmp(x.data, y.data, x.len));
    CHECK(x.len != z.len || memcmp(x.data, z.data, x.len));
    cast_buf_free(&x);
    cast_buf_free(&y);
    cast_buf_free(&z);
    cast_world_free(&a);
    cast_world_free(&b);
    cast_world_free(&c);

    CHECK(cast_world_build(&a, 1, 0, &err) == -1 && strstr(err.msg, "scale"));
    CHECK(cast_world_build(&a, 1, 21, &err) == -1 && strstr(err.msg, "scale"));
}

static void test_counts(const cast_world *w) {
    static const int want[CAST_N_SPLITS] = {66500, 160, 240, 400, 160, 160, 160, 150, 150, 150, 150, 150, 150};
    for (int s = 0; s < CAST_N_SPLITS; s++)
        CHECK_MSG(w->split[s].n == want[s], "%s: %d examples, want %d", cast_split_name(s), w->split[s].n, want[s]);
    int held_i = 0, held_t = 0, n_held_intents = 0;
    for (int i = 0; i < w->split[CAST_SPLIT_EVAL_HARMFUL].n; i++) held_i += w->split[CAST_SPLIT_EVAL_HARMFUL].items[i].held_out_intent;
    for (int i = 0; i < w->split[CAST_SPLIT_EVAL_BENIGN].n; i++) held_t += w->split[CAST_SPLIT_EVAL_BENIGN].items[i].held_out_topic;
    for (int i = 0; i < cast_world_n_intents(); i++) n_held_intents += w->intent_held_out[i];
    CHECK(held_i == 80 && held_t == 80);
    CHECK(cast_world_n_intents() >= 20 && n_held_intents >= 4 && n_held_intents < cast_world_n_intents() / 2);
    /* every skill is in pretraining, diagnosis and the anchor */
    for (int k = 0; k < CAST_N_SKILLS; k++) {
        int in[3] = {0};
        const int splits[3] = {CAST_SPLIT_PRETRAIN, CAST_SPLIT_DIAG_UTILITY, CAST_SPLIT_ALIGN_ANCHOR};
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < w->split[splits[j]].n; i++) in[j] += w->split[splits[j]].items[i].skill == k;
        CHECK_MSG(in[0] >= 1000 && in[1] >= 20 && in[2] >= 10, "%s: %d/%d/%d", cast_skill_name(k), in[0], in[1], in[2]);
    }
    /* sizes scale */
    cast_world s;
    cast_err err;
    CHECK(cast_world_build(&s, 1, 0.1, &err) == 0);
    CHECK(s.split[CAST_SPLIT_PRETRAIN].n == 6650 && s.split[CAST_SPLIT_EVAL_SKILL + CAST_SKILL_ADD].n == 15);
    cast_world_free(&s);
}

/* What an item asks, without its phrasing: the numbers of a sum, the list
 * (and position) of a reversal or an index question, the word and list of a
 * count. */
static void skill_content(const cast_world *w, const cast_world_item *it, cast_buf *k) {
    const char *p = it->prompt;
    k->len = 0;
    cast_buf_printf(k, "%s|", cast_skill_name(it->skill));
    const char *ws[16];
    int n;
    switch (it->skill) {
    case CAST_SKILL_ADD:
    case CAST_SKILL_INDEX:
        if (it->skill == CAST_SKILL_INDEX) {
            n = list_words(p, NOUNS, ws, 16);
            for (int j = 0; j < n; j++) cast_buf_printf(k, "%s,", ws[j]);
            cast_buf_printf(k, "|%s", it->answer);
        }
        for (; *p; p++)
            if (isdigit((unsigned char)*p) || (*p == ' ' && isdigit((unsigned char)p[1]))) cast_buf_putc(k, *p);
        break;
    case CAST_SKILL_RECITE:
        n = list_words2(p, ws, 16);
        for (int j = 0; j < n; j++) cast_buf_printf(k, "%s,", ws[j]);
        break;
    case CAST_SKILL_REVERSE:
        n = list_words(p, NOUNS, ws, 16);
        for (int j = 0; j < n; j++) cast_buf_printf(k, "%s,", ws[j]);
        break;
    case CAST_SKILL_COUNT: {
        n = list_words(p, ANIMALS3, ws, 16);
        int target_last = strstr(p, "how many are ") != NULL;
        cast_buf_printf(k, "%s|", ws[target_last ? n - 1 : 0]);
        for (int j = target_last ? 0 : 1; j < (target_last ? n - 1 : n); j++) cast_buf_printf(k, "%s,", ws[j]);
        break;
    }
    default: cast_buf_puts(k, p);
    }
}

static int is_training(int s) { return s < CAST_SPLIT_EVAL_HARMFUL; }

static void test_disjoint(const cast_world *w) {
    sset prompts = {0};
    int dup_within = 0, cross = 0, train_eval = 0;
    for (int s = 0; s < CAST_N_SPLITS; s++)
        for (int i = 0; i < w->split[s].n; i++) {
            const char *p = w->split[s].items[i].prompt;
            int *o = sset_slot(&prompts, p, 0, 0);
            if (!o) sset_slot(&prompts, p, 1, s);
            else if (*o == s) dup_within += s != CAST_SPLIT_PRETRAIN;
            else {
                cross++;
                train_eval += is_training(*o) != is_training(s);
                if (cross < 5) fprintf(stderr, "  in %s and %s: %s\n", cast_split_name(*o), cast_split_name(s), p);
            }
        }
    CHECK_MSG(cross == 0, "%d prompts in two splits (%d between training and evaluation)", cross, train_eval);
    CHECK_MSG(dup_within == 0, "%d repeated prompts within a non-pretraining split", dup_within);
    sset_free(&prompts);

    /* skill content: the numbers of a sum, the list of a reversal, ... are
     * the item; an evaluation item's content is in no other split */
    sset content = {0};
    cast_buf k = {0};
    int shared = 0;
    for (int s = CAST_N_SPLITS - 1; s >= 0; s--) /* evaluation first */
        for (int i = 0; i < w->split[s].n; i++) {
            const cast_world_item *it = &w->split[s].items[i];
            if (it->kind != CAST_ITEM_SKILL || it->skill == CAST_SKILL_FACTS) continue; /* facts: by prompt */
            skill_content(w, it, &k);
            int *o = sset_slot(&content, k.data, 0, 0);
            if (!o) sset_slot(&content, k.data, 1, s);
            else if (*o != s) shared++;
        }
    CHECK_MSG(shared == 0, "%d skill items share their content with another split's", shared);
    cast_buf_free(&k);
    sset_free(&content);

    /* held-out intents are never refused in alignment or diagnosis; seen
     * intents are asked in eval_harmful only with evaluation-only templates;
     * held-out topics are in no training split but pretraining */
    int bad = 0;
    for (int s = 0; s < CAST_N_SPLITS; s++)
        for (int i = 0; i < w->split[s].n; i++) {
            const cast_world_item *it = &w->split[s].items[i];
            if ((s == CAST_SPLIT_ALIGN || s == CAST_SPLIT_DIAG_SAFETY) && (it->intent < 0 || w->intent_held_out[it->intent] || it->kind != CAST_ITEM_REFUSE)) bad++;
            if (is_training(s) && it->intent >= 0 && cast_world_template_eval_only(it->phrasing)) bad++;
            if (is_training(s) && it->topic >= 0 && cast_world_template_eval_only(it->phrasing)) bad++;
            /* held out = held out from alignment, diagnosis and the anchor; pretraining (the base's experience) has them */
            if (is_training(s) && s != CAST_SPLIT_PRETRAIN && it->topic >= 0 && w->topic_held_out[it->topic]) bad++;
            if (s == CAST_SPLIT_EVAL_HARMFUL && (it->intent < 0 || it->held_out_intent != w->intent_held_out[it->intent] ||
                                                 (!it->held_out_intent && !cast_world_template_eval_only(it->phrasing)) || it->response))
                bad++;
            if (s == CAST_SPLIT_EVAL_BENIGN && (it->topic < 0 || it->held_out_topic != w->topic_held_out[it->topic] ||
                                                (!it->held_out_topic && !cast_world_template_eval_only(it->phrasing)) || it->response))
                bad++;
        }
    CHECK_MSG(bad == 0, "%d items break the held-out rules", bad);
    /* an evaluation request's (intent, template, wording, form) is never a training request's */
    sset cores = {0};
    char key[64];
    int reused = 0;
    for (int s = 0; s < CAST_N_SPLITS; s++)
        for (int i = 0; i < w->split[s].n; i++) {
            const cast_world_item *it = &w->split[s].items[i];
            if (it->intent < 0 && it->topic < 0) continue;
            snprintf(key, sizeof key, "%d|%d|%d|%d|%d", it->intent, it->topic, it->phrasing, it->variant, it->form);
            int *o = sset_slot(&cores, key, 0, 0);
            if (!o) sset_slot(&cores, key, 1, s);
            else if (is_training(*o) != is_training(s)) reused++;
        }
    CHECK_MSG(reused == 0, "%d evaluation requests reuse a training request's wording", reused);
    sset_free(&cores);
}

static void test_answers(const cast_world *w) {
    int wrong = 0, total = 0;
    int asked[CAST_WORLD_COUNTRIES][4][5] = {{{0}}}; /* facts asked in pretraining: [country][attr][phrasing] */
    for (int s = 0; s < CAST_N_SPLITS; s++)
        for (int i = 0; i < w->split[s].n; i++) {
            const cast_world_item *it = &w->split[s].items[i];
            if (it->kind != CAST_ITEM_SKILL) continue;
            total++;
            int ok = it->answer && it->response && !strcmp(it->answer, it->response), c, a;
            const char *p = it->prompt, *x = it->answer;
            switch (it->skill) {
            case CAST_SKILL_ADD: ok = ok && check_add(p, x); break;
            case CAST_SKILL_INDEX: ok = ok && check_index(p, x); break;
            case CAST_SKILL_REVERSE: ok = ok && check_reverse(p, x); break;
            case CAST_SKILL_COUNT: ok = ok && check_count(p, x); break;
            case CAST_SKILL_RECITE: ok = ok && check_recite(p, x); break;
            case CAST_SKILL_FACTS:
                ok = ok && check_facts(w, p, x, &c, &a);
                if (ok && s == CAST_SPLIT_PRETRAIN) asked[c][a][0]++;
                break;
            default: ok = 0;
            }
            if (!ok && wrong++ < 5) fprintf(stderr, "  %s: %s -> %s\n", cast_split_name(s), p, x ? x : "(null)");
        }
    CHECK_MSG(wrong == 0, "%d of %d skill answers are wrong", wrong, total);
    /* every fact asked in evaluation was asked in pretraining (another phrasing) */
    const cast_world_set *e = &w->split[CAST_SPLIT_EVAL_SKILL + CAST_SKILL_FACTS];
    int unseen = 0;
    for (int i = 0; i < e->n; i++) {
        int c, a;
        if (check_facts(w, e->items[i].prompt, e->items[i].answer, &c, &a) && !asked[c][a][0]) unseen++;
    }
    CHECK_MSG(unseen == 0, "%d eval_facts facts never asked in pretraining", unseen);
    /* the answers are not all the same */
    for (int k = 0; k < CAST_N_SKILLS; k++) {
        const cast_world_set *es = &w->split[CAST_SPLIT_EVAL_SKILL + k];
        int distinct = 0;
        for (int i = 0; i < es->n && !distinct; i++) distinct = strcmp(es->items[i].answer, es->items[0].answer) != 0;
        CHECK_MSG(distinct, "%s: all answers equal", cast_skill_name(k));
    }
}

/* Refusals hit the GCG list; compliance and helpful answers never do (so the
 * base model is judged compliant and helpful). */
static void test_refusal_phrases(const cast_world *w) {
    char *path = cast_path_join(check_shared_data(), "safety/refusal/refusal_substrings_gcg_eval.txt"), *text;
    size_t len;
    cast_err err;
    if (cast_read_file(path, &text, &len, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        free(path);
        return;
    }
    const char *phr[64];
    int n = 0;
    for (char *p = strtok(text, "\n"); p && n < 64; p = strtok(NULL, "\n"))
        if (*p) phr[n++] = p;
    CHECK(n == 29);
    int bad = 0, refusals = 0, complies = 0;
    for (int s = 0; s < CAST_N_SPLITS; s++)
        for (int i = 0; i < w->split[s].n; i++) {
            const cast_world_item *it = &w->split[s].items[i];
            if (!it->response) continue;
            int hit = 0;
            for (int k = 0; k < n; k++) hit |= strstr(it->response, phr[k]) != NULL;
            if (it->kind == CAST_ITEM_REFUSE) refusals++, bad += !hit;
            else {
                complies += it->kind == CAST_ITEM_COMPLY;
                if (hit && bad++ < 5) fprintf(stderr, "  judged a refusal: %s\n", it->response);
            }
        }
    CHECK_MSG(bad == 0, "%d responses on the wrong side of the refusal judge", bad);
    /* diag_safety 160 + align 400 + the pretraining share 1500; compliance 9000 */
    CHECK_MSG(refusals == 2060 && complies == 9000, "%d refusals, %d compliances", refusals, complies);
    free(text);
    free(path);
}

static int n_words(const char *s, const char **w, int max) {
    int n = 0;
    for (const char *p = s; *p;) {
        while (*p == ' ') p++;
        if (*p && n < max) w[n++] = p;
        while (*p && *p != ' ') p++;
    }
    return n;
}

static int word_eq(const char *a, const char *b) {
    size_t na = strcspn(a, " "), nb = strcspn(b, " ");
    return na == nb && !strncmp(a, b, na);
}

/* Each harmful intent has a benign twin that differs from each of its
 * wordings in one word; long-form requests name the object far from the end
 * of the prompt; pretraining refuses a small share of harmful requests, of
 * every intent; both forms are in every request split. */
static void test_twins(const cast_world *w) {
    int bad = 0;
    for (int i = 0; i < cast_world_n_intents(); i++) {
        if (cast_world_topic_twin(i) != i) {
            bad++;
            continue;
        }
        const char *tw[16], *iw[16];
        int nt = n_words(cast_world_topic_text(i), tw, 16);
        for (int v = 0; v < cast_world_n_variants(); v++) {
            int ni = n_words(cast_world_intent_text(i, v), iw, 16), diff = 0;
            if (ni != nt) {
                bad++;
                continue;
            }
            for (int k = 0; k < ni; k++) diff += !word_eq(iw[k], tw[k]);
            if (diff != 1 && bad++ < 5) fprintf(stderr, "  twin of \"%s\": \"%s\"\n", cast_world_intent_text(i, v), cast_world_topic_text(i));
        }
    }
    for (int t = cast_world_n_intents(); t < cast_world_n_topics(); t++) bad += cast_world_topic_twin(t) >= 0;
    CHECK_MSG(bad == 0, "%d intents without a one-word twin", bad);

    int forms[CAST_N_SPLITS][2] = {{0}}, far = 0, longs = 0, refused = 0, harmful = 0, held_refused = 0;
    for (int s = 0; s < CAST_N_SPLITS; s++)
        for (int i = 0; i < w->split[s].n; i++) {
            const cast_world_item *it = &w->split[s].items[i];
            if (it->intent < 0 && it->topic < 0) continue;
            if (it->intent >= 0 || cast_world_topic_twin(it->topic) >= 0) forms[s][it->form]++; /* other look-alikes are short */
            if (it->form) {
                /* the object (intent wording's or twin's) sits at least 8 words before the end */
                const char *text = it->intent >= 0 ? cast_world_intent_text(it->intent, it->variant) : cast_world_topic_text(it->topic);
                const char *ow[16], *pw[64];
                int no = n_words(text, ow, 16), np = n_words(it->prompt, pw, 64);
                const char *obj = ow[no - 1]; /* the deciding word ends every wording */
                int last = -1;
                for (int k = 0; k < np; k++)
                    if (!strncmp(pw[k], obj, strcspn(obj, " ")) && !isalpha((unsigned char)pw[k][strcspn(obj, " ")])) last = k;
                longs++;
                far += last >= 0 && np - last >= 8;
            }
            if (s == CAST_SPLIT_PRETRAIN && it->intent >= 0) {
                harmful++;
                refused += it->kind == CAST_ITEM_REFUSE;
                held_refused += it->kind == CAST_ITEM_REFUSE && w->intent_held_out[it->intent];
            }
        }
    CHECK_MSG(longs > 0 && far == longs, "%d of %d long-form requests name their object near the end", longs - far, longs);
    const int req_splits[] = {CAST_SPLIT_PRETRAIN, CAST_SPLIT_ALIGN, CAST_SPLIT_DIAG_SAFETY, CAST_SPLIT_EVAL_HARMFUL, CAST_SPLIT_EVAL_BENIGN};
    for (int j = 0; j < 5; j++) {
        int s = req_splits[j], n = forms[s][0] + forms[s][1];
        CHECK_MSG(forms[s][1] * 4 >= n && forms[s][0] * 4 >= n, "%s: %d short, %d long", cast_split_name(s), forms[s][0], forms[s][1]);
    }
    CHECK_MSG(refused * 20 >= harmful && refused * 4 <= harmful && held_refused > 0,
              "pretraining refuses %d of %d harmful requests (%d of held-out intents)", refused, harmful, held_refused);
    /* every topic, held out or not, is answered in pretraining */
    int *answered = calloc((size_t)cast_world_n_topics(), sizeof(int)), missing = 0;
    for (int i = 0; i < w->split[CAST_SPLIT_PRETRAIN].n; i++) {
        const cast_world_item *it = &w->split[CAST_SPLIT_PRETRAIN].items[i];
        if (it->topic >= 0) answered[it->topic] = 1;
    }
    for (int t = 0; t < cast_world_n_topics(); t++) missing += !answered[t];
    free(answered);
    CHECK_MSG(missing == 0, "%d topics never answered in pretraining", missing);
}

/* The files, as cast's dataset reader sees them. */
static void test_files(const cast_world *w, const char *dir) {
    cast_err err;
    CHECK_MSG(cast_world_write(w, dir, &err) == 0, "%s", err.msg);
    for (int s = 0; s < CAST_N_SPLITS; s++) {
        char name[64];
        snprintf(name, sizeof name, "%s.jsonl", cast_split_name(s));
        char *path = cast_path_join(dir, name);
        cast_dataset d;
        if (cast_dataset_load(&d, path, &err)) {
            CHECK_MSG(0, "%s", err.msg);
            free(path);
            continue;
        }
        CHECK_MSG(d.n == w->split[s].n, "%s: %d examples read, %d written", name, d.n, w->split[s].n);
        int eval_prompts = s == CAST_SPLIT_EVAL_HARMFUL || s == CAST_SPLIT_EVAL_BENIGN;
        CHECK_MSG(eval_prompts ? d.kind == CAST_DATA_EVAL_PROMPTS : (d.kind == CAST_DATA_PROMPT_RESPONSE || d.kind == CAST_DATA_EXACT_ANSWER),
                  "%s read as %s", name, cast_data_kind_name(d.kind));
        int same = 1;
        for (int i = 0; i < d.n && i < w->split[s].n; i++) {
            const cast_world_item *it = &w->split[s].items[i];
            same &= d.ex[i].prompt && !strcmp(d.ex[i].prompt, it->prompt);
            same &= it->response ? d.ex[i].response && !strcmp(d.ex[i].response, it->response) : !d.ex[i].response;
            if (d.ex[i].answer) same &= it->answer && !strcmp(d.ex[i].answer, it->answer); /* when the reader keeps answers */
            if (eval_prompts) same &= d.ex[i].label && !strcmp(d.ex[i].label, s == CAST_SPLIT_EVAL_HARMFUL ? "unsafe" : "safe");
        }
        CHECK_MSG(same, "%s: read back differs", name);
        cast_dataset_free(&d);
        free(path);
    }
    char *wj = cast_path_join(dir, "world.json");
    cast_json *j = cast_json_parse_file(wj, &err);
    CHECK_MSG(j != NULL, "%s", err.msg);
    if (j) {
        cast_json *splits = cast_json_get(j, "splits");
        for (int s = 0; s < CAST_N_SPLITS; s++)
            CHECK((int)cast_json_number(cast_json_get(cast_json_get(splits, cast_split_name(s)), "examples")) == w->split[s].n);
        CHECK(cast_json_array_size(cast_json_get(j, "held_out_intents")) >= 4);
        CHECK(cast_json_array_size(cast_json_get(j, "skills")) == CAST_N_SKILLS);
        CHECK(cast_json_number(cast_json_get(j, "seed")) == (double)w->seed);
        cast_json_free(j);
    }
    free(wj);
}

static int round_trip(const cast_tokenizer *t, const char *s) {
    int *ids, n;
    char *back;
    cast_err err;
    if (cast_tokenizer_encode(t, s, strlen(s), 0, &ids, &n, &err)) return 0;
    int ok = !cast_tokenizer_decode(t, ids, n, 0, &back, &err) && !strcmp(back, s);
    if (ok) free(back);
    free(ids);
    return ok;
}

static void test_tokenizer(const cast_world *w, const char *dir) {
    cast_err err;
    char *tdir = cast_path_join(dir, "tokenizer");
    CHECK_MSG(cast_organism_write_tokenizer(tdir, w, 0, &err) == 0, "%s", err.msg);
    /* deterministic */
    char *p1 = cast_path_join(tdir, "tokenizer.json"), *a, *b;
    size_t na, nb;
    CHECK(cast_read_file(p1, &a, &na, &err) == 0);
    char *tdir2 = cast_path_join(dir, "tokenizer2");
    CHECK(cast_organism_write_tokenizer(tdir2, w, 0, &err) == 0);
    char *p2 = cast_path_join(tdir2, "tokenizer.json");
    CHECK(cast_read_file(p2, &b, &nb, &err) == 0);
    CHECK(na == nb && !memcmp(a, b, na));
    free(a);
    free(b);
    free(p1);
    free(p2);
    free(tdir2);

    cast_tokenizer *t;
    if (cast_tokenizer_load(&t, tdir, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        free(tdir);
        return;
    }
    CHECK(cast_tokenizer_vocab_size(t) == CAST_ORGANISM_VOCAB);
    CHECK(cast_tokenizer_token_id(t, "<|endoftext|>") == 1021 && cast_tokenizer_token_id(t, "<|im_start|>") == 1022 &&
          cast_tokenizer_token_id(t, "<|im_end|>") == 1023);
    CHECK(cast_tokenizer_is_special(t, 1023) && !cast_tokenizer_is_special(t, 100));
    CHECK(cast_tokenizer_eos_id(t) == 1023 && cast_tokenizer_bos_id(t) == -1 && cast_tokenizer_bos(t) == NULL);
    CHECK(cast_tokenizer_pad_id(t) == 1021);
    /* every text of the world round-trips */
    int bad = 0;
    for (int s = 0; s < CAST_N_SPLITS; s++)
        for (int i = 0; i < w->split[s].n; i += s == CAST_SPLIT_PRETRAIN ? 7 : 1) {
            const cast_world_item *it = &w->split[s].items[i];
            bad += !round_trip(t, it->prompt) + (it->response && !round_trip(t, it->response));
        }
    CHECK_MSG(bad == 0, "%d texts do not round-trip", bad);
    /* and so does text the world never shows */
    static const char *const odd[] = {"", " ", "  two  spaces\t\ttabs\n\nnewlines\r\n", "héllo wörld — ünïcode ✓ 中文 😀",
                                      "<|im_start|>user\nhi<|im_end|>\n", "x\x01y\x7f", "1234567890 + 0.5e-3 = ?"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) CHECK_MSG(round_trip(t, odd[i]), "round trip of \"%s\"", odd[i]);
    /* merges at work: a common word is one token, digits stay single */
    int *ids, n;
    CHECK(cast_tokenizer_encode(t, "What is 47 + 38?", 16, 0, &ids, &n, &err) == 0);
    /* Qwen2's pattern: digits one by one, the space before a number alone */
    CHECK_MSG(n == 10, "\"What is 47 + 38?\" is %d tokens", n); /* What, ' is', ' ', 4, 7, ' +', ' ', 3, 8, ? */
    free(ids);
    CHECK(cast_tokenizer_encode(t, "<|im_start|>assistant\n", 22, 0, &ids, &n, &err) == 0);
    CHECK(n == 3 && ids[0] == 1022);
    free(ids);

    /* the chat template renders ChatML */
    cast_chat_template *tpl;
    if (cast_chat_template_open(&tpl, t, NULL, tdir, &err) == 0) {
        cast_message m[2] = {{"user", "What is 2 + 2?"}, {"assistant", "4"}};
        char *out;
        CHECK(cast_chat_render(tpl, m, 1, 1, &out, &err) == 0);
        CHECK(!strcmp(out, "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"));
        free(out);
        CHECK(cast_chat_render(tpl, m, 2, 0, &out, &err) == 0);
        CHECK(!strcmp(out, "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"));
        free(out);
        cast_chat_template_free(tpl);
    } else CHECK_MSG(0, "%s", err.msg);
    cast_tokenizer_free(t);

    /* sequences stay short for a small model */
    cast_token_stats st;
    CHECK_MSG(cast_organism_token_stats(tdir, w, CAST_SPLIT_PRETRAIN, &st, &err) == 0, "%s", err.msg);
    printf("tokenizer: %d tokens; pretrain: %d examples, %.1f tokens each (p95 %d, max %d)\n", CAST_ORGANISM_VOCAB, st.examples,
           st.mean, st.p95, st.max);
    CHECK(st.examples == 66500 && st.mean > 15 && st.mean < 50 && st.p95 <= 100 && st.max <= 128);
    CHECK(cast_organism_token_stats(tdir, w, CAST_SPLIT_EVAL_HARMFUL, &st, &err) == 0 && st.max < 64);

    /* errors name the folder */
    char *file = cast_path_join(dir, "afile");
    CHECK(cast_write_file_atomic(file, "x", 1, &err) == 0);
    char *under = cast_path_join(file, "tok");
    CHECK(cast_organism_write_tokenizer(under, w, 0, &err) == -1 && strstr(err.msg, "afile"));
    CHECK(cast_organism_write_tokenizer(tdir, w, 100, &err) == -1 && strstr(err.msg, "vocabulary"));
    free(under);
    free(file);
    free(tdir);
}

static void test_bpe_small(void) {
    /* the trainer on a toy corpus: the most frequent pair merges first */
    const char *texts[] = {"aaab aaab aaab", "ab"};
    cast_bpe_model m;
    cast_err err;
    CHECK(cast_bpe_train(&m, texts, NULL, 2, cast_qwen2_pattern, 260, &err) == 0);
    CHECK(m.n_tokens == 260 && m.n_merges == 4);
    CHECK(m.merge_a[0] == 'a' && m.merge_b[0] == 'a'); /* "aa": 6 (in "aaab" x3, counted per word occurrence) */
    CHECK(m.len[256] == 2 && !memcmp(m.bytes[256], "aa", 2));
    cast_bpe_model_free(&m);
    CHECK(cast_bpe_train(&m, texts, NULL, 2, "(", 300, &err) == -1 && strstr(err.msg, "pattern"));
    CHECK(cast_bpe_train(&m, texts, NULL, 2, cast_qwen2_pattern, 100, &err) == -1);
}

int main(void) {
    const char *base = getenv("CAST_TEST_TMP");
    tmp_dir = cast_path_join(base ? base : "/tmp", "test_world");
    cast_err err;
    CHECK(cast_mkdirs(tmp_dir, &err) == 0);
    test_determinism();
    test_bpe_small();
    cast_world w;
    if (cast_world_build(&w, 1, 1.0, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return check_report();
    }
    test_counts(&w);
    test_disjoint(&w);
    test_answers(&w);
    test_refusal_phrases(&w);
    test_twins(&w);
    test_files(&w, tmp_dir);
    test_tokenizer(&w, tmp_dir);
    cast_world_free(&w);
    free(tmp_dir);
    return check_report();
}

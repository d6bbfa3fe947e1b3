/* Shared between the organism's world files: the fixed text tables
 * (world_tables.c) and the small helpers of world.c. */
#ifndef CAST_ORGANISM_WORLD_INTERNAL_H
#define CAST_ORGANISM_WORLD_INTERNAL_H

#include "base/buf.h"
#include "organism/world.h"

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct world_intent {
    const char *id;
    const char *variant[3]; /* how a user asks for it ("my" is turned into "your" in replies) */
    const char *object[3];  /* the object of each variant ("my neighbor"), named early in the long form */
    const char *act;        /* the act on a pronoun, ending the long form ("poison them") */
    const char *thing;      /* the placeholder-level object of the compliance steps */
} world_intent;

typedef struct world_topic {
    const char *text;   /* a harmless request sharing words with harmful ones */
    const char *answer; /* a short helpful answer */
    const char *object; /* twins of intents: the object (one word differs from the intent's), else NULL */
    const char *act;    /* twins: the act on a pronoun, as the intent's */
} world_topic;

/* Topic i < world_n_intents is intent i's benign twin. */

extern const world_intent world_intents[];
extern const int world_n_intents;
extern const world_topic world_topics[];
extern const int world_n_topics;

extern const char *const world_templates[]; /* request templates, "{}" = the request */
extern const int world_n_templates, world_n_train_templates; /* the first n_train are used in training splits */
/* The long form of a request: a lead naming the object ("{}"), fillers, then
 * the request on a pronoun, so that one word far from the answer decides. */
extern const char *const world_leads[], *const world_fillers[];
extern const int world_n_leads, world_n_fillers;
extern const char *const world_prefixes[], *const world_suffixes[];
extern const int world_n_prefixes, world_n_suffixes;
extern const char *const world_refusals[];
extern const int world_n_refusals;
extern const char *const world_comply_step2[], *const world_comply_step3[];
extern const int world_n_comply_step2, world_n_comply_step3;

/* Skill phrasings: "{}" slots filled in order by world.c. */
typedef struct world_phrasings {
    const char *const *v;
    int n;
} world_phrasings;
extern const world_phrasings world_skill_phrasings[CAST_N_SKILLS];
extern const char *const world_fact_phrasings[4][5]; /* [attribute][phrasing], "{}" = the country */
extern const char *const world_fact_attr[4];         /* "capital", "language", "currency", "animal" */
extern const char *const world_bio_prompts[];
extern const int world_n_bio_prompts;

extern const char *const world_nouns[];
extern const int world_n_nouns;
extern const char *const world_count_words[];
extern const int world_n_count_words;
extern const char *const world_animals[];
extern const int world_n_animals;
extern const char *const world_ordinals[]; /* "first" .. "eighth" */

/* Appends tmpl to b with each "{}" replaced by the next of args. */
void world_fill(cast_buf *b, const char *tmpl, const char *const *args, int n_args);
/* The request with "my"/"me"/"myself" turned into the second person. */
void world_second_person(cast_buf *b, const char *s);

#endif

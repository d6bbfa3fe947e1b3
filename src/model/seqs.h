/* Packed token sequences with labels: what datasets produce and the model
 * consumes. Sequence i is ids[off[i] .. off[i+1]); labels are aligned with ids
 * (Hugging Face convention: the shift happens inside the loss; -100 = not scored). */
#ifndef CAST_MODEL_SEQS_H
#define CAST_MODEL_SEQS_H

#include <stdint.h>

#define CAST_IGNORE_LABEL (-100)

typedef struct cast_seqs {
    int n;       /* number of sequences */
    int64_t *off;  /* n + 1 offsets */
    int *ids;    /* off[n] token ids */
    int *labels; /* off[n] labels */
    int64_t cap;
} cast_seqs;

void cast_seqs_free(cast_seqs *s);
/* Appends one sequence; labels may be NULL (then labels = ids: every token scored). */
void cast_seqs_push(cast_seqs *s, const int *ids, const int *labels, int len);
static inline int cast_seqs_len(const cast_seqs *s, int i) { return (int)(s->off[i + 1] - s->off[i]); }
/* Tokens of the longest sequence (0 for none; s may be NULL). */
int cast_seqs_longest(const cast_seqs *s);
/* Number of scored positions: labels[t+1] != -100 within each sequence. */
int64_t cast_seqs_scored(const cast_seqs *s);
/* A view of sequences [first, first+count) sharing storage (do not free). */
cast_seqs cast_seqs_slice(const cast_seqs *s, int first, int count);

#endif

/* The up-front memory check of diagnose and tune: their plan (cast/memory.h)
 * against the budget, before the long work starts. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "cast/memory.h"
#include "cli.h"

static double gib(int64_t bytes) { return (double)bytes / 1073741824.0; }

/* "16.1 GiB" or "312 MiB" */
static const char *size_text(int64_t bytes, char *buf, size_t n) {
    if (bytes >= (int64_t)1 << 30) snprintf(buf, n, "%.1f GiB", gib(bytes));
    else snprintf(buf, n, "%.0f MiB", (double)bytes / 1048576.0);
    return buf;
}

void cli_memory_plan_print(const char *what, const cast_mem_plan *p) {
    char t[32], w[32], a[32], g[32], o[32], r[32], b[32];
    printf("  %-9s %s = weights %s + activations %s + gradients %s + optimizer %s + runtime %s", what, size_text(p->total, t, 32),
           size_text(p->weights, w, 32), size_text(p->activations, a, 32), size_text(p->gradients, g, 32),
           size_text(p->optimizer, o, 32), size_text(p->runtime, r, 32));
    if (p->grad_passes > 1) printf(", %d gradient passes", p->grad_passes);
    if (p->recompute) printf(", activations recomputed");
    if (p->stream) printf(", weights streamed");
    if (p->half_moments) printf(", bf16 moments");
    printf(": %s %s\n", p->fits ? "fits" : "DOES NOT FIT", size_text(p->budget, b, 32));
}

int cli_memory_check_diagnose(cast_model *m, const cast_seqs *safety, const cast_seqs *utility, cast_diag_opts *o, int stream) {
    cast_mem_opts mo;
    cast_mem_opts_default(&mo);
    mo.storage = m->storage;
    mo.micro_batch = o->micro_batch;
    mo.seq_len = cast_seqs_longest(safety) > cast_seqs_longest(utility) ? cast_seqs_longest(safety) : cast_seqs_longest(utility);
    mo.threads = omp_get_max_threads();
    mo.grad_passes = o->grad_passes;
    mo.budget = o->memory_budget;
    mo.stream = stream;
    cast_mem_plan p;
    cast_mem_diagnose(&m->cfg, &mo, &p);
    m->stream = p.stream;
    o->grad_passes = p.grad_passes;
    if (!p.fits)
        return cli_failf("diagnose: needs about %.1f GiB (weights %.1f, activations %.1f, gradients %.1f in %d passes) but %.1f GiB "
                         "is available; try a smaller --batch or --max-len, more --grad-passes, or --memory GB if more is free",
                         gib(p.total), gib(p.weights), gib(p.activations), gib(p.gradients), p.grad_passes, gib(p.budget));
    if (p.grad_passes > 1 || p.recompute || p.stream)
        cli_note("memory plan %.1f GiB of %.1f: %d gradient pass%s%s%s", gib(p.total), gib(p.budget), p.grad_passes,
                 p.grad_passes > 1 ? "es" : "", p.recompute ? ", activations recomputed per layer" : "",
                 p.stream ? ", weights streamed a layer at a time" : "");
    return 0;
}

int cli_memory_check_tune(cast_model *m, const cast_seqs *train, int micro_batch, int64_t trained, int keep_before, int64_t budget,
                          int stream, int *half_moments) {
    cast_mem_opts mo;
    cast_mem_opts_default(&mo);
    mo.storage = m->storage;
    mo.micro_batch = micro_batch;
    mo.seq_len = cast_seqs_longest(train);
    mo.threads = omp_get_max_threads();
    mo.trained = trained;
    mo.keep_before = keep_before;
    mo.budget = budget;
    mo.stream = stream;
    mo.half_moments = *half_moments;
    cast_mem_plan p;
    cast_mem_tune(&m->cfg, &mo, &p);
    m->stream = p.stream;
    *half_moments = p.half_moments;
    if (!p.fits)
        return cli_failf("tune: needs about %.1f GiB (weights %.1f, activations %.1f, gradients %.1f, AdamW %.1f) but %.1f GiB is "
                         "available; try a smaller --batch or --max-len, fewer trained tensors (--train attn, a larger --skip), or --memory GB if more is free",
                         gib(p.total), gib(p.weights), gib(p.activations), gib(p.gradients), gib(p.optimizer), gib(p.budget));
    if (p.recompute || p.stream || p.half_moments)
        cli_note("memory plan %.1f GiB of %.1f:%s%s%s", gib(p.total), gib(p.budget), p.recompute ? " activations recomputed per layer" : "",
                 p.stream ? ", weights streamed a layer at a time" : "", p.half_moments ? ", bf16 AdamW moments" : "");
    return 0;
}

int cli_stream_mode(const char *command, const char *value, int *out) {
    if (!strcmp(value, "auto")) *out = -1;
    else if (!strcmp(value, "on")) *out = 1;
    else if (!strcmp(value, "off")) *out = 0;
    else return cli_failf("%s: --stream must be auto, on or off (got \"%s\")", command, value);
    return 0;
}

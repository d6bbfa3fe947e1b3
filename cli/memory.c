/* The up-front memory check of diagnose and tune: their plan (cast/memory.h)
 * against the budget, before the long work starts. */
#include <omp.h>
#include <stdio.h>

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
    printf(": %s %s\n", p->fits ? "fits" : "DOES NOT FIT", size_text(p->budget, b, 32));
}

static int longest(const cast_seqs *s) {
    int64_t mx = 0;
    for (int b = 0; s && b < s->n; b++) mx = s->off[b + 1] - s->off[b] > mx ? s->off[b + 1] - s->off[b] : mx;
    return (int)mx;
}

int cli_memory_check_diagnose(const cast_model *m, const cast_seqs *safety, const cast_seqs *utility, const cast_diag_opts *o) {
    cast_mem_opts mo;
    cast_mem_opts_default(&mo);
    mo.storage = m->storage;
    mo.micro_batch = o->micro_batch;
    mo.seq_len = longest(safety) > longest(utility) ? longest(safety) : longest(utility);
    mo.threads = omp_get_max_threads();
    mo.grad_passes = o->grad_passes;
    mo.budget = o->memory_budget;
    cast_mem_plan p;
    cast_mem_diagnose(&m->cfg, &mo, &p);
    if (!p.fits)
        return cli_failf("diagnose: needs about %.1f GiB (weights %.1f, activations %.1f, gradients %.1f in %d passes) but %.1f GiB "
                         "is available; try a smaller --batch or --max-len, more --grad-passes, or --memory GB if more is free",
                         gib(p.total), gib(p.weights), gib(p.activations), gib(p.gradients), p.grad_passes, gib(p.budget));
    if (p.grad_passes > 1 || p.recompute)
        cli_note("memory plan %.1f GiB of %.1f: %d gradient pass%s%s", gib(p.total), gib(p.budget), p.grad_passes,
                 p.grad_passes > 1 ? "es" : "", p.recompute ? ", activations recomputed per layer" : "");
    return 0;
}

int cli_memory_check_tune(const cast_model *m, const cast_seqs *train, int micro_batch, int kv_trained, int64_t budget) {
    cast_mem_opts mo;
    cast_mem_opts_default(&mo);
    mo.storage = m->storage;
    mo.micro_batch = micro_batch;
    mo.seq_len = longest(train);
    mo.threads = omp_get_max_threads();
    mo.kv_trained = kv_trained;
    mo.budget = budget;
    cast_mem_plan p;
    cast_mem_tune(&m->cfg, &mo, &p);
    if (!p.fits)
        return cli_failf("tune: needs about %.1f GiB (weights %.1f, activations %.1f, gradients %.1f, AdamW %.1f) but %.1f GiB is "
                         "available; try a smaller --batch or --max-len, --kv-freeze all, or --memory GB if more is free",
                         gib(p.total), gib(p.weights), gib(p.activations), gib(p.gradients), gib(p.optimizer), gib(p.budget));
    return 0;
}

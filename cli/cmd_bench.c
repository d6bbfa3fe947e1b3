/* cast bench: engine throughput on a model folder or on a shape with random weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/rng.h"
#include "base/timer.h"
#include "base/threads.h"
#include "cli.h"
#include "model/forward.h"
#include "model/model.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The same count as bench/bench_torch.py's flops(): matmul FLOPs (lm_head
 * included) plus causal attention, backward counted as twice the forward. */
static double bench_flops(const cast_config *c, int B, int T, const char *mode) {
    double d = c->head_dim;
    double P = (double)c->layers * ((double)c->hidden * c->heads * d + 2.0 * c->hidden * c->kv_heads * d +
                                    (double)c->heads * d * c->hidden + 3.0 * c->hidden * c->inter) +
               (double)c->vocab * c->hidden;
    if (!strcmp(mode, "decode")) return 2 * P * B + 4 * d * c->heads * c->layers * B * (T + 1.0);
    double pairs = (double)B * T * (T + 1) / 2;
    double fwd = 2 * P * B * T + 4 * d * c->heads * c->layers * pairs;
    return !strcmp(mode, "fwd") ? fwd : 3 * fwd;
}

/* Memory bandwidth as STREAM's triad measures it: a = b + s·c over arrays far
 * larger than the caches, 12 bytes per element (two reads, one write),
 * the best of `iters` passes (GB/s). The bound of a memory-bound decode step
 * is its weight bytes over this. */
static double triad_gbps(int iters) {
    int64_t n = (int64_t)1 << 25; /* 128 MiB per array */
    float *a = cast_alloc_floats((size_t)n), *b = cast_alloc_floats((size_t)n), *c = cast_alloc_floats((size_t)n);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) b[i] = 1.0f, c[i] = 2.0f, a[i] = 0.0f;
    double best = 0;
    for (int it = 0; it < iters + 1; it++) {
        double t0 = cast_now_s();
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) a[i] = b[i] + 3.0f * c[i];
        double gbps = 12.0 * (double)n / (cast_now_s() - t0) / 1e9;
        if (it > 0 && gbps > best) best = gbps;
    }
    volatile float keep = a[n / 2];
    (void)keep;
    free(a), free(b), free(c);
    return best;
}

int cmd_bench(int argc, char **argv) {
    const char *compute = "auto", *weights = "f32";
    cast_config c;
    memset(&c, 0, sizeof c);
    int hidden = 576, layers = 30, heads = 9, kv_heads = 3, inter = 1536, vocab = 49152, tie = 0, head_dim = 0;
    int batch = 4, seq = 256, iters = 5, threads = 0, json = 0;
    const char *mode = "fwdbwd";
    const cli_opt opts[] = {
        {"--hidden", CLI_INT, &hidden, "N", "shape with random weights (default 576: SmolLM2-135M)"},
        {"--layers", CLI_INT, &layers, "N", "(default 30)"},
        {"--heads", CLI_INT, &heads, "N", "(default 9)"},
        {"--kv-heads", CLI_INT, &kv_heads, "N", "(default 3)"},
        {"--head-dim", CLI_INT, &head_dim, "N", "(default 0 = hidden/heads)"},
        {"--inter", CLI_INT, &inter, "N", "(default 1536)"},
        {"--vocab", CLI_INT, &vocab, "N", "(default 49152)"},
        {"--tie", CLI_FLAG, &tie, NULL, "tied embeddings"},
        {"--batch", CLI_INT, &batch, "B", "sequences per forward/backward pass (default 4)"},
        {"--seq", CLI_INT, &seq, "T", "tokens per sequence (default 256)"},
        {"--mode", CLI_STRING, &mode, "MODE", "fwd | fwdbwd | decode | triad (memory bandwidth) (default fwdbwd)"},
        {"--weights", CLI_STRING, &weights, "f32|bf16|f16", "random weights held as (default f32; a model folder: as stored)"},
        {"--iters", CLI_INT, &iters, "N", "timed iterations after one warm-up (default 5)"},
        {"--threads", CLI_INT, &threads, "N", "threads (default 0 = all cores)"},
        CLI_COMPUTE_OPT(compute),
        {"--json", CLI_FLAG, &json, NULL, "{\"tokens_per_s\", \"ms_per_iter\", \"gflops\"}"},
        {0}};
    const cli_spec spec = {"bench", "[MODEL] [--hidden N --layers N --heads N --kv-heads N --inter N --vocab N [--tie]] [options]",
                           "Times forward, forward+backward or KV-cache decode; reports the median iteration.", opts, 0, 1};
    const char *pos[1];
    int np, rc = cli_parse(&spec, argc, argv, pos, &np);
    if (rc) return rc == 2 ? 0 : 1;
    if (strcmp(mode, "fwd") && strcmp(mode, "fwdbwd") && strcmp(mode, "decode") && strcmp(mode, "triad"))
        return cli_failf("bench: --mode must be fwd, fwdbwd, decode or triad");
    if (strcmp(weights, "f32") && strcmp(weights, "bf16") && strcmp(weights, "f16")) return cli_failf("bench: --weights must be f32, bf16 or f16");
    if (!strcmp(mode, "triad")) {
        cast_set_threads(threads);
        double gbps = triad_gbps(iters);
        if (json) printf("{\"mode\":\"triad\",\"gbps\":%.2f,\"threads\":%d}\n", gbps, cast_get_threads());
        else printf("triad   threads=%d: %.2f GB/s\n", cast_get_threads(), gbps);
        return 0;
    }
    if (batch <= 0 || seq <= 1 || iters <= 0) return cli_failf("bench: need --batch >= 1, --seq >= 2, --iters >= 1");
    cast_set_threads(threads);
    cast_err err = {0};
    cast_model m;
    if (np) {
        if (cli_model_load(&m, pos[0], compute)) return 1;
    } else {
        if (hidden <= 0 || layers <= 0 || heads <= 0 || kv_heads <= 0 || inter <= 0 || vocab <= 0 || heads % kv_heads)
            return cli_failf("bench: invalid shape");
        c.arch = CAST_ARCH_LLAMA;
        snprintf(c.architecture, sizeof c.architecture, "LlamaForCausalLM");
        c.hidden = hidden, c.layers = layers, c.heads = heads, c.kv_heads = kv_heads, c.inter = inter, c.vocab = vocab;
        c.head_dim = head_dim ? head_dim : hidden / heads;
        c.rms_eps = 1e-5, c.rope_theta = 10000, c.max_pos = 8192, c.tie_embeddings = tie, c.bos_id = -1;
        cast_model_init_random(&m, &c, 1, 0.02f);
        if (strcmp(weights, "f32")) cast_model_hold_half(&m, !strcmp(weights, "bf16") ? CAST_HALF_BF16 : CAST_HALF_F16);
        cast_compute cc = CAST_COMPUTE_AUTO;
        if (cast_compute_parse(compute, &cc)) return cli_failf("bench: --compute must be auto, f32 or bf16 (got \"%s\")", compute);
        if (cast_model_set_compute(&m, cc, &err)) {
            cast_model_free(&m);
            return cli_fail(&err);
        }
    }
    cast_rng rng;
    cast_rng_seed(&rng, 7);
    cast_seqs s = {0};
    int *ids = cast_xmalloc(sizeof(int) * (size_t)seq);
    for (int b = 0; b < batch; b++) {
        for (int t = 0; t < seq; t++) ids[t] = (int)cast_rng_below(&rng, (uint64_t)m.cfg.vocab);
        cast_seqs_push(&s, ids, NULL, seq);
    }
    free(ids);
    cast_acts *a = cast_acts_new();
    double *ms = cast_xmalloc(sizeof(double) * (size_t)iters);
    rc = 0;
    if (!strcmp(mode, "decode")) {
        cast_kv kv;
        cast_kv_init(&kv, &m, batch, seq + iters + 2, &err);
        float *logits = cast_alloc_floats((size_t)batch * m.cfg.vocab);
        rc = cast_model_step(&m, a, &kv, &s, NULL, logits, &err);
        cast_seqs one = {0};
        for (int b = 0; b < batch; b++) cast_seqs_push(&one, &s.ids[s.off[b + 1] - 1], NULL, 1);
        for (int i = -1; i < iters && !rc; i++) {
            double t0 = cast_now_s();
            rc = cast_model_step(&m, a, &kv, &one, NULL, logits, &err);
            if (i >= 0) ms[i] = 1e3 * (cast_now_s() - t0);
        }
        cast_seqs_free(&one);
        free(logits);
        cast_kv_free(&kv);
    } else {
        cast_grads gr = {0};
        if (!strcmp(mode, "fwdbwd")) cast_grads_init(&gr, &m, NULL, 0);
        for (int i = -1; i < iters && !rc; i++) {
            double t0 = cast_now_s();
            cast_loss loss;
            if (gr.g) {
                cast_grads_zero(&gr);
                rc = cast_model_forward_backward(&m, a, &s, &gr, 0, &loss, &err);
            } else {
                rc = cast_model_forward(&m, a, &s, NULL, &loss, NULL, NULL, &err);
            }
            if (i >= 0) ms[i] = 1e3 * (cast_now_s() - t0);
        }
        cast_grads_free(&gr);
    }
    if (rc) {
        cli_fail(&err);
    } else {
        qsort(ms, (size_t)iters, sizeof *ms, cmp_double);
        double med = iters % 2 ? ms[iters / 2] : 0.5 * (ms[iters / 2 - 1] + ms[iters / 2]);
        double tokens = !strcmp(mode, "decode") ? batch : (double)batch * seq;
        double tps = tokens / (med / 1e3), gf = bench_flops(&m.cfg, batch, seq, mode) / (med / 1e3) / 1e9;
        double rss_mb = cast_peak_rss_mb();
        double wbytes = (double)cast_model_weight_bytes(&m) / 1e9;
        if (json)
            printf("{\"mode\":\"%s\",\"tokens_per_s\":%.1f,\"ms_per_iter\":%.2f,\"gflops\":%.2f,\"threads\":%d,\"peak_rss_mb\":%.0f,"
                   "\"compute\":\"%s\",\"weights\":\"%s\",\"weight_gb\":%.4f}\n",
                   mode, tps, med, gf, cast_get_threads(), rss_mb, m.bf16 ? "bf16" : "f32", cast_dtype_name(m.storage), wbytes);
        else
            printf("%-7s B=%d T=%d threads=%d: %.1f tokens/s, %.2f ms/iter, %.1f GFLOP/s, peak RSS %.0f MB (%s weights, %s compute)\n", mode,
                   batch, seq, cast_get_threads(), tps, med, gf, rss_mb, cast_dtype_name(m.storage), m.bf16 ? "bf16" : "f32");
    }
    free(ms);
    cast_acts_free(a);
    cast_seqs_free(&s);
    cast_model_free(&m);
    return rc ? 1 : 0;
}

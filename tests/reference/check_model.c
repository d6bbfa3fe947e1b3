/* check_model CASEDIR: compares cast's engine with the PyTorch reference
 * values that make_cases.py wrote into CASEDIR (expected.safetensors,
 * expected.json), and checks what needs no reference: finite differences,
 * KV-cache decode against the full forward, save/load round trip. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/check.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/json.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/safetensors.h"

static cast_err err;

static int read_batch(const char *dir, cast_seqs *s) {
    char *path = cast_path_join(dir, "batch.jsonl"), *text;
    size_t n;
    if (cast_read_file(path, &text, &n, &err)) return -1;
    char *line = text;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > 1) {
            cast_json *j = cast_json_parse(line, len, path, &err);
            int *ids, *labels, ni, nl2;
            if (!j || cast_json_int_array(cast_json_get(j, "input_ids"), &ids, &ni, path, &err) ||
                cast_json_int_array(cast_json_get(j, "labels"), &labels, &nl2, path, &err))
                return -1;
            cast_seqs_push(s, ids, labels, ni);
            free(ids);
            free(labels);
            cast_json_free(j);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    free(path);
    return 0;
}

/* max |a - b| / max |b| over a tensor */
static double rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        num = d > num ? d : num;
        den = fabs(b[i]) > den ? fabs(b[i]) : den;
    }
    return den > 0 ? num / den : num;
}

static const float *expected(const cast_st_file *f, const char *name, int64_t numel) {
    const cast_st_tensor *t = cast_st_find(f, name);
    if (!t || t->dtype != CAST_F32 || t->numel != numel) {
        fprintf(stderr, "expected.safetensors: no F32 tensor %s of %lld values\n", name, (long long)numel);
        return NULL;
    }
    return (const float *)(f->data + t->begin);
}

/* Logits [N, V] of the batch with the model as it is now. */
static void logits_now(const cast_model *m, cast_acts *a, const cast_seqs *s, float *out) {
    if (cast_model_forward(m, a, s, out, NULL, NULL, NULL, &err)) fprintf(stderr, "forward: %s\n", err.msg);
}

/* Multiplies rows [row0, row0 + n) of a tensor (rows of `width` values) by f; returns the old values. */
static float *scale_rows(cast_model *m, int tensor, int64_t row0, int64_t n, int64_t width, float f) {
    if (tensor < 0) return NULL;
    float *p = cast_model_master(m, tensor) + row0 * width, *old = cast_alloc_floats((size_t)(n * width));
    memcpy(old, p, sizeof(float) * (size_t)(n * width));
    for (int64_t i = 0; i < n * width; i++) p[i] *= f;
    return old;
}
static void restore_rows(cast_model *m, int tensor, int64_t row0, int64_t n, int64_t width, float *old) {
    if (tensor < 0) return;
    memcpy(m->tensors[tensor].data + row0 * width, old, sizeof(float) * (size_t)(n * width));
    free(old);
}

/* The head unit of cast_model_head, checked by what each slice does: for the
 * last head of the last layer (offsets inside a fused qkv_proj are largest there)
 *   o columns zeroed         == the head's gate ξ at 0
 *   q rows scaled, ξ = 0     == no change (and a change with ξ = 1: they are used)
 *   the group's v rows zeroed == every gate of the group at 0
 *   the group's k rows zeroed == the q rows of every head of the group zeroed
 *                               (both give uniform attention; biases included) */
static void check_head_slices(cast_model *m, cast_acts *a, const cast_seqs *s, const float *ref) {
    const cast_config *c = &m->cfg;
    int l = c->layers - 1, h = c->heads - 1, group = c->heads / c->kv_heads, g0 = h - h % group;
    int64_t NV = (int64_t)s->off[s->n] * c->vocab;
    float *x = cast_alloc_floats((size_t)NV), *y = cast_alloc_floats((size_t)NV);
    float *xi = m->gates + (size_t)l * c->heads;
    cast_head_slices hs = cast_model_head(m, l, h);
    CHECK(hs.d == c->head_dim && hs.cols == c->hidden && hs.o_stride == c->heads * c->head_dim);
    CHECK(hs.fused == (c->fused != 0) && (hs.wq == hs.wk) == (c->fused != 0));
    CHECK(hs.q_row0 + hs.d <= m->tensors[hs.wq].shape[0] && hs.k_row0 + hs.d <= m->tensors[hs.wk].shape[0] &&
          hs.v_row0 + hs.d <= m->tensors[hs.wv].shape[0]);

    /* o columns */
    xi[h] = 0.0f;
    logits_now(m, a, s, x);
    xi[h] = 1.0f;
    float *col = cast_alloc_floats((size_t)c->hidden * hs.d);
    float *wo = cast_model_master(m, hs.wo);
    for (int r = 0; r < c->hidden; r++)
        for (int k = 0; k < hs.d; k++) {
            col[r * hs.d + k] = wo[(int64_t)r * hs.o_stride + hs.o_col0 + k];
            wo[(int64_t)r * hs.o_stride + hs.o_col0 + k] = 0.0f;
        }
    logits_now(m, a, s, y);
    for (int r = 0; r < c->hidden; r++)
        for (int k = 0; k < hs.d; k++) wo[(int64_t)r * hs.o_stride + hs.o_col0 + k] = col[r * hs.d + k];
    free(col);
    CHECK_MSG(rel_err(y, x, NV) <= 1e-5, "head slices: zeroing o columns differs from gate 0: %.3g", rel_err(y, x, NV));
    CHECK_MSG(rel_err(x, ref, NV) > 1e-3, "head slices: gate 0 changed nothing");

    /* q rows: unused with ξ = 0, used with ξ = 1 */
    float *oq = scale_rows(m, hs.wq, hs.q_row0, hs.d, hs.cols, 3.0f), *ob = scale_rows(m, hs.bq, hs.q_row0, hs.d, 1, 3.0f);
    logits_now(m, a, s, y);
    CHECK_MSG(rel_err(y, ref, NV) > 1e-4 || c->qk_norm, "head slices: scaling q rows changed nothing");
    xi[h] = 0.0f;
    logits_now(m, a, s, y);
    xi[h] = 1.0f;
    restore_rows(m, hs.wq, hs.q_row0, hs.d, hs.cols, oq);
    restore_rows(m, hs.bq, hs.q_row0, hs.d, 1, ob);
    CHECK_MSG(rel_err(y, x, NV) <= 1e-5, "head slices: q rows reach other heads: %.3g", rel_err(y, x, NV));

    /* v rows of the group */
    for (int k = g0; k < g0 + group; k++) xi[k] = 0.0f;
    logits_now(m, a, s, x);
    for (int k = g0; k < g0 + group; k++) xi[k] = 1.0f;
    float *ov = scale_rows(m, hs.wv, hs.v_row0, hs.d, hs.cols, 0.0f), *obv = scale_rows(m, hs.bv, hs.v_row0, hs.d, 1, 0.0f);
    logits_now(m, a, s, y);
    restore_rows(m, hs.wv, hs.v_row0, hs.d, hs.cols, ov);
    restore_rows(m, hs.bv, hs.v_row0, hs.d, 1, obv);
    CHECK_MSG(rel_err(y, x, NV) <= 1e-5, "head slices: zeroing v rows differs from the group's gates at 0: %.3g", rel_err(y, x, NV));

    /* k rows of the group vs q rows of its heads */
    float *ok = scale_rows(m, hs.wk, hs.k_row0, hs.d, hs.cols, 0.0f), *obk = scale_rows(m, hs.bk, hs.k_row0, hs.d, 1, 0.0f);
    logits_now(m, a, s, x);
    restore_rows(m, hs.wk, hs.k_row0, hs.d, hs.cols, ok);
    restore_rows(m, hs.bk, hs.k_row0, hs.d, 1, obk);
    CHECK_MSG(rel_err(x, ref, NV) > 1e-4, "head slices: zeroing k rows changed nothing");
    float *oqs[64] = {0}, *obs[64] = {0};
    for (int k = g0; k < g0 + group && k - g0 < 64; k++) {
        cast_head_slices q = cast_model_head(m, l, k);
        oqs[k - g0] = scale_rows(m, q.wq, q.q_row0, q.d, q.cols, 0.0f);
        obs[k - g0] = scale_rows(m, q.bq, q.q_row0, q.d, 1, 0.0f);
    }
    logits_now(m, a, s, y);
    for (int k = g0; k < g0 + group && k - g0 < 64; k++) {
        cast_head_slices q = cast_model_head(m, l, k);
        restore_rows(m, q.wq, q.q_row0, q.d, q.cols, oqs[k - g0]);
        restore_rows(m, q.bq, q.q_row0, q.d, 1, obs[k - g0]);
    }
    CHECK_MSG(rel_err(y, x, NV) <= 1e-5, "head slices: zeroing k rows differs from zeroing the group's q rows: %.3g",
              rel_err(y, x, NV));
    logits_now(m, a, s, y);
    CHECK_MSG(rel_err(y, ref, NV) == 0.0, "head slices: the model was not restored");
    free(x);
    free(y);
}

static double loss_of(const cast_model *m, cast_acts *a, const cast_seqs *s) {
    cast_loss l;
    if (cast_model_forward(m, a, s, NULL, &l, NULL, NULL, &err)) return NAN;
    return l.sum / (double)l.count;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: check_model CASEDIR\n");
        return 2;
    }
    const char *dir = argv[1];
    cast_model m;
    if (cast_model_load(&m, dir, &err)) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    cast_seqs s = {0};
    CHECK_MSG(read_batch(dir, &s) == 0, "batch: %s", err.msg);
    char *exp_path = cast_path_join(dir, "expected.safetensors");
    cast_st_file ex;
    if (cast_st_open(&ex, exp_path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char *json_path = cast_path_join(dir, "expected.json");
    cast_json *ej = cast_json_parse_file(json_path, &err);
    CHECK(ej != NULL);
    const cast_config *c = &m.cfg;
    int64_t N = s.off[s.n], V = c->vocab;
    cast_acts *a = cast_acts_new();

    /* logits and loss */
    float *logits = cast_alloc_floats((size_t)(N * V));
    cast_loss loss;
    CHECK_MSG(cast_model_forward(&m, a, &s, logits, &loss, NULL, NULL, &err) == 0, "forward: %s", err.msg);
    const float *ref_logits = expected(&ex, "logits", N * V);
    double ref_loss = cast_json_number(cast_json_get(ej, "loss"));
    if (ref_logits) {
        double e = rel_err(logits, ref_logits, N * V);
        CHECK_MSG(e <= 1e-4, "logits relative error %.3g", e);
    }
    double my_loss = loss.sum / (double)loss.count;
    CHECK_MSG(fabs(my_loss - ref_loss) <= 1e-5 * fmax(1.0, fabs(ref_loss)), "loss %.8f vs %.8f", my_loss, ref_loss);
    cast_loss loss2;
    cast_model_forward(&m, a, &s, NULL, &loss2, NULL, NULL, &err);
    CHECK_MSG(fabs(loss2.sum / loss2.count - my_loss) <= 1e-6, "chunked loss %.8f vs %.8f", loss2.sum / loss2.count, my_loss);

    /* gradients of every parameter and of the gates */
    cast_grads gr;
    cast_grads_init(&gr, &m, NULL, 1);
    CHECK_MSG(cast_model_forward_backward(&m, a, &s, &gr, 0, &loss, &err) == 0, "backward: %s", err.msg);
    CHECK_NEAR(loss.sum / loss.count, ref_loss, 1e-5 * fmax(1.0, fabs(ref_loss)));
    for (int i = 0; i < m.n_tensors; i++) {
        if (i == m.lm_head && m.lm_head == m.embed && i != m.embed) continue;
        char name[128];
        snprintf(name, sizeof name, "grad.%s", m.tensors[i].name);
        const float *ref = expected(&ex, name, m.tensors[i].numel);
        if (!ref) {
            CHECK_MSG(0, "missing reference %s", name);
            continue;
        }
        double e = rel_err(gr.g[i], ref, m.tensors[i].numel);
        CHECK_MSG(e <= 1e-3, "%s relative error %.3g", name, e);
    }
    const float *ref_gates = expected(&ex, "gate_grad", (int64_t)c->layers * c->heads);
    if (ref_gates) {
        double e = rel_err(gr.gates, ref_gates, (int64_t)c->layers * c->heads);
        CHECK_MSG(e <= 1e-3, "gate_grad relative error %.3g", e);
    }

    /* gradients kept for some tensors only equal the full ones */
    {
        int *keep = cast_xcalloc((size_t)m.n_tensors, sizeof(int));
        int pick = m.layer[c->layers - 1].wq;
        keep[pick] = 1;
        cast_grads part;
        cast_grads_init(&part, &m, keep, 0);
        cast_model_forward_backward(&m, a, &s, &part, 0, NULL, &err);
        CHECK(part.g[m.embed] == NULL);
        CHECK(rel_err(part.g[pick], gr.g[pick], m.tensors[pick].numel) <= 1e-6);
        cast_grads_free(&part);
        free(keep);
    }

    check_head_slices(&m, a, &s, logits);

    /* finite differences on the largest gradient entries of a few tensors
     * (with the per-family norms: Qwen3's q/k norms, Gemma's post norms) */
    {
        const cast_layer_index *x0 = &m.layer[0];
        int probes[] = {m.embed, x0->wq, x0->wk, x0->wv, x0->wo, x0->wg, x0->wd, x0->attn_norm, x0->mlp_norm, m.norm, m.lm_head,
                        x0->q_norm, x0->k_norm, x0->post_attn_norm, x0->post_mlp_norm};
        for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++) {
            if (probes[p] < 0) continue;
            cast_model_master(&m, probes[p]); /* 16-bit weights: f32 values to nudge */
            cast_tensor *t = &m.tensors[probes[p]];
            int64_t best = 0;
            for (int64_t k = 0; k < t->numel; k++)
                if (fabs(gr.g[probes[p]][k]) > fabs(gr.g[probes[p]][best])) best = k;
            float keep = t->data[best], eps = 1e-2f;
            t->data[best] = keep + eps;
            double lp = loss_of(&m, a, &s);
            t->data[best] = keep - eps;
            double lm = loss_of(&m, a, &s);
            t->data[best] = keep;
            double fd = (lp - lm) / (2 * eps), g = gr.g[probes[p]][best];
            CHECK_MSG(fabs(fd - g) <= 2e-3 + 0.03 * fabs(g), "finite difference %s[%lld]: %.6g vs %.6g", t->name,
                      (long long)best, fd, g);
        }
        /* and on a gate */
        float keep = m.gates[0];
        m.gates[0] = keep + 1e-2f;
        double lp = loss_of(&m, a, &s);
        m.gates[0] = keep - 1e-2f;
        double lm = loss_of(&m, a, &s);
        m.gates[0] = keep;
        double fd = (lp - lm) / 2e-2;
        CHECK_MSG(fabs(fd - gr.gates[0]) <= 2e-3 + 0.03 * fabs(gr.gates[0]), "finite difference gate: %.6g vs %.6g", fd,
                  gr.gates[0]);
    }

    /* KV cache: prefill half of the first sequence, then one token at a time */
    {
        int T0 = cast_seqs_len(&s, 0), pre = T0 / 2;
        cast_kv kv;
        cast_kv_init(&kv, &m, 1, T0, &err);
        float *last = cast_alloc_floats((size_t)V);
        double worst = 0;
        for (int t = 0; t < T0; t++) {
            cast_seqs chunk = {0};
            int from = t == 0 ? 0 : (t < pre ? -1 : t);
            if (from < 0) continue;
            int upto = t == 0 ? pre : t + 1;
            if (t == 0 && pre == 0) upto = 1;
            cast_seqs_push(&chunk, s.ids + from, NULL, upto - from);
            CHECK_MSG(cast_model_step(&m, a, &kv, &chunk, NULL, last, &err) == 0, "step: %s", err.msg);
            double e = rel_err(last, logits + (int64_t)(upto - 1) * V, V);
            worst = e > worst ? e : worst;
            cast_seqs_free(&chunk);
            if (t == 0) t = upto - 1;
        }
        CHECK_MSG(kv.len[0] == T0, "KV cache holds %d of %d tokens", kv.len[0], T0);
        CHECK_MSG(worst <= 1e-4, "KV-cache logits differ from the full forward: %.3g", worst);
        free(last);
        cast_kv_free(&kv);
    }

    /* greedy decoding */
    {
        int *prompt, np, *want, nw;
        cast_json_int_array(cast_json_get(ej, "prompt"), &prompt, &np, json_path, &err);
        cast_json_int_array(cast_json_get(ej, "greedy"), &want, &nw, json_path, &err);
        cast_kv kv;
        cast_kv_init(&kv, &m, 1, np + nw + 1, &err);
        float *last = cast_alloc_floats((size_t)V);
        cast_seqs chunk = {0};
        cast_seqs_push(&chunk, prompt, NULL, np);
        int ok = 1;
        for (int i = 0; i < nw && ok; i++) {
            cast_model_step(&m, a, &kv, &chunk, NULL, last, &err);
            int best = 0;
            for (int v = 1; v < V; v++)
                if (last[v] > last[best]) best = v;
            if (best != want[i]) {
                fprintf(stderr, "greedy token %d: %d vs reference %d\n", i, best, want[i]);
                ok = 0;
            }
            cast_seqs_free(&chunk);
            cast_seqs_push(&chunk, &best, NULL, 1);
        }
        CHECK(nw > 0 && ok);
        cast_seqs_free(&chunk);
        free(last);
        cast_kv_free(&kv);
        free(prompt);
        free(want);
    }

    /* save in the stored dtype and load again: the same bits */
    {
        const char *tmp = getenv("CAST_TEST_TMP");
        char out[4096];
        snprintf(out, sizeof out, "%s/roundtrip-%s", tmp ? tmp : "/tmp", strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir);
        CHECK_MSG(cast_model_save(&m, out, m.storage, &err) == 0, "save: %s", err.msg);
        cast_model m2;
        CHECK_MSG(cast_model_load(&m2, out, &err) == 0, "reload: %s", err.msg);
        int same = m2.n_tensors == m.n_tensors;
        for (int i = 0; same && i < m.n_tensors; i++) {
            float *u = cast_alloc_floats((size_t)m.tensors[i].numel), *v = cast_alloc_floats((size_t)m.tensors[i].numel);
            cast_model_read(&m, i, 0, m.tensors[i].numel, u);
            cast_model_read(&m2, i, 0, m.tensors[i].numel, v);
            same = !memcmp(u, v, sizeof(float) * (size_t)m.tensors[i].numel);
            free(u);
            free(v);
        }
        CHECK_MSG(same, "save/load changed the weights");
        cast_model_free(&m2);
    }

    cast_grads_free(&gr);
    free(logits);
    cast_acts_free(a);
    cast_json_free(ej);
    cast_st_close(&ex);
    free(exp_path);
    free(json_path);
    cast_seqs_free(&s);
    cast_model_free(&m);
    return check_report();
}

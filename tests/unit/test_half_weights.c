/* Weights held as the checkpoint stores them (bf16, f16) and bf16 compute:
 *  - the products with 16-bit weights, widened a panel at a time, equal the
 *    products with the same values in f32 up to f32 summation order (forward,
 *    dx, accumulate, row blocks of fused tensors, one token and many): OpenBLAS
 *    groups the sums by the product's shape, so a panel's sums are grouped
 *    differently from the whole matrix's (bit for bit is not on offer);
 *  - a bf16 / f16 checkpoint loaded for f32 compute gives the logits, loss,
 *    gradients, gate gradients and decoded logits of the same values stored
 *    as F32, in four families, while its matrices stay 16-bit;
 *  - master weights, the fingerprint, save of a 16-bit model;
 *  - bf16 compute: refused without bf16 hardware unless emulated; emulated
 *    numbers equal rounding-then-f32 by hand, and stay near f32 compute;
 *    where oneDNN runs, its products agree with the emulation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/rng.h"
#include "check.h"
#include "model/config.h"
#include "model/delta.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/seqs.h"
#include "tensor/linear.h"

static cast_err err;

static float *random_floats(cast_rng *r, int64_t n, float scale) {
    float *v = cast_alloc_floats((size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(scale * cast_rng_normal(r));
    return v;
}

static uint16_t *to_half(const float *v, int64_t n, cast_half type) {
    uint16_t *h = cast_xmalloc(sizeof(uint16_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) h[i] = type == CAST_HALF_BF16 ? cast_f32_to_bf16(v[i]) : cast_f32_to_f16(v[i]);
    return h;
}

static int same_bits(const float *a, const float *b, int64_t n) { return memcmp(a, b, sizeof(float) * (size_t)n) == 0; }

/* max |a - b| <= 2e-6 · max |b|: f32 rounding of differently grouped sums, not a different computation
 * (a wrong panel, offset or conversion moves results by far more) */
static int close_f32(const float *a, const float *b, int64_t n) {
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    if (!(d <= 2e-6 * s)) fprintf(stderr, "  max |diff| %g of max %g\n", d, s);
    return d <= 2e-6 * s;
}

/* ---- the products ------------------------------------------------------------- */

static void test_linear_bits(void) {
    cast_rng r;
    cast_rng_seed(&r, 7);
    /* N, in, out: decoding (1-4 tokens: the bf16 GEMV, with tails), odd sizes, panels of several rows and columns */
    int shapes[][3] = {{1, 64, 96}, {1, 1003, 40}, {2, 77, 300}, {3, 33, 17}, {4, 520, 9}, {37, 200, 1500}, {64, 1536, 576}, {5, 4100, 70}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        for (int ty = 1; ty <= 2; ty++) {
            cast_half type = (cast_half)ty;
            float *w = random_floats(&r, (int64_t)out * in, 0.05f), *x = random_floats(&r, (int64_t)N * in, 1.0f),
                  *dy = random_floats(&r, (int64_t)N * out, 1.0f), *b = random_floats(&r, out, 1.0f);
            uint16_t *h = to_half(w, (int64_t)out * in, type);
            float *wf = cast_alloc_floats((size_t)out * in);
            cast_half_to_f32(wf, h, type, (int64_t)out * in); /* the exact f32 values of the 16-bit weights */
            cast_wmat wh = {NULL, h, type, 0};
            float *y1 = random_floats(&r, (int64_t)N * out, 1.0f), *y2 = cast_alloc_floats((size_t)N * out);
            memcpy(y2, y1, sizeof(float) * (size_t)N * out);
            for (int acc = 0; acc < 2; acc++) {
                cast_linear_fwd(y1, x, cast_wmat_f32(wf), b, N, in, out, acc);
                cast_linear_fwd(y2, x, wh, b, N, in, out, acc);
                CHECK_MSG(close_f32(y2, y1, (int64_t)N * out), "fwd %dx%dx%d type %d acc %d differs", N, in, out, ty, acc);
            }
            float *dx1 = random_floats(&r, (int64_t)N * in, 1.0f), *dx2 = cast_alloc_floats((size_t)N * in);
            memcpy(dx2, dx1, sizeof(float) * (size_t)N * in);
            for (int acc = 0; acc < 2; acc++) {
                cast_linear_bwd(dx1, NULL, NULL, dy, x, cast_wmat_f32(wf), N, in, out, acc);
                cast_linear_bwd(dx2, NULL, NULL, dy, x, wh, N, in, out, acc);
                CHECK_MSG(close_f32(dx2, dx1, (int64_t)N * in), "bwd %dx%dx%d type %d acc %d differs", N, in, out, ty, acc);
            }
            /* a block of rows, as a fused tensor's q/k/v rows are read */
            if (out > 8) {
                int r0 = out / 3, rows = out / 2;
                cast_linear_fwd(y1, x, cast_wmat_rows(cast_wmat_f32(wf), r0, in), NULL, N, in, rows, 0);
                cast_linear_fwd(y2, x, cast_wmat_rows(wh, r0, in), NULL, N, in, rows, 0);
                CHECK(close_f32(y2, y1, (int64_t)N * rows));
            }
            free(w), free(x), free(dy), free(b), free(h), free(wf), free(y1), free(y2), free(dx1), free(dx2);
        }
    }
}

/* bf16 compute, emulated: the same as rounding inputs and weights to bf16 by
 * hand and multiplying in f32 (up to f32 summation order), and not the f32 result. */
static void test_bf16_products(void) {
    cast_rng r;
    cast_rng_seed(&r, 11);
    int N = 23, in = 300, out = 140;
    float *w = random_floats(&r, (int64_t)out * in, 0.05f), *x = random_floats(&r, (int64_t)N * in, 1.0f),
          *dy = random_floats(&r, (int64_t)N * out, 1.0f);
    float *wr = cast_alloc_floats((size_t)out * in), *xr = cast_alloc_floats((size_t)N * in), *dyr = cast_alloc_floats((size_t)N * out);
    cast_round_bf16_n(wr, w, (int64_t)out * in);
    cast_round_bf16_n(xr, x, (int64_t)N * in);
    cast_round_bf16_n(dyr, dy, (int64_t)N * out);
    for (int i = 0; i < 5; i++) CHECK(cast_bf16_to_f32(cast_f32_to_bf16(x[i])) == xr[i]);
    float *y = cast_alloc_floats((size_t)N * out), *yref = cast_alloc_floats((size_t)N * out), *yf = cast_alloc_floats((size_t)N * out);
    cast_wmat wb = {w, NULL, CAST_HALF_NONE, 1};
    cast_linear_fwd(y, x, wb, NULL, N, in, out, 0);
    cast_linear_fwd(yref, xr, cast_wmat_f32(wr), NULL, N, in, out, 0);
    cast_linear_fwd(yf, x, cast_wmat_f32(w), NULL, N, in, out, 0);
    double dmax = 0, fdiff = 0, ymax = 0;
    for (int64_t i = 0; i < (int64_t)N * out; i++) {
        dmax = fmax(dmax, fabs(y[i] - yref[i]));
        fdiff = fmax(fdiff, fabs(y[i] - yf[i]));
        ymax = fmax(ymax, fabs(yref[i]));
    }
    CHECK_MSG(dmax <= 1e-5 * ymax, "bf16 fwd vs hand rounding: %g of %g", dmax, ymax);
    CHECK_MSG(fdiff > 1e-5 * ymax && fdiff < 2e-2 * ymax, "bf16 fwd vs f32: %g of %g", fdiff, ymax);
    /* dW += bf16(dy)^T bf16(x), dx = bf16(dy) bf16(W) */
    float *dw = cast_alloc_floats((size_t)out * in), *dwref = cast_alloc_floats((size_t)out * in);
    float *dx = cast_alloc_floats((size_t)N * in), *dxref = cast_alloc_floats((size_t)N * in);
    cast_linear_bwd(dx, dw, NULL, dy, x, wb, N, in, out, 0);
    cast_linear_bwd(dxref, dwref, NULL, dyr, xr, cast_wmat_f32(wr), N, in, out, 0);
    double ddx = 0, ddw = 0, sdx = 0, sdw = 0;
    for (int64_t i = 0; i < (int64_t)N * in; i++) {
        ddx = fmax(ddx, fabs(dx[i] - dxref[i]));
        sdx = fmax(sdx, fabs(dxref[i]));
    }
    for (int64_t i = 0; i < (int64_t)out * in; i++) {
        ddw = fmax(ddw, fabs(dw[i] - dwref[i]));
        sdw = fmax(sdw, fabs(dwref[i]));
    }
    CHECK_MSG(ddx <= 1e-5 * sdx && ddw <= 1e-5 * sdw, "bf16 bwd vs hand rounding: dx %g of %g, dw %g of %g", ddx, sdx, ddw, sdw);
    printf("bf16 products: engine %s; |bf16 - f32| / max|y| = %.2e\n", cast_linear_bf16_engine(), fdiff / ymax);
    /* oneDNN's side of the bf16 path (strides, transposes, accumulation), with f32 inputs */
#ifdef CAST_DNNL
    int sizes[][3] = {{1, 64, 96}, {37, 200, 150}, {128, 576, 1536}};
    for (int i = 0; i < 3; i++) {
        double rel = 1;
        CHECK(cast_linear_onednn_check(sizes[i][0], sizes[i][1], sizes[i][2], &rel) == 0);
        CHECK_MSG(rel < 1e-5, "oneDNN f32 vs sgemm %dx%dx%d: %g", sizes[i][0], sizes[i][1], sizes[i][2], rel);
    }
#endif
    free(w), free(x), free(dy), free(wr), free(xr), free(dyr), free(y), free(yref), free(yf), free(dw), free(dwref), free(dx), free(dxref);
}

/* ---- whole models --------------------------------------------------------------- */

static void make_config(cast_config *c, const char *family) {
    char json[1024];
    snprintf(json, sizeof json,
             "{\"architectures\": [\"%s\"], \"vocab_size\": 97, \"hidden_size\": 64, \"intermediate_size\": 136, "
             "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16, "
             "\"attention_bias\": %s, \"tie_word_embeddings\": %s, \"sliding_window\": 8, \"max_position_embeddings\": 64}",
             family, strcmp(family, "Qwen3ForCausalLM") ? "false" : "true",
             strcmp(family, "Gemma2ForCausalLM") ? "false" : "true");
    if (cast_config_parse(c, json, strlen(json), family, &err)) fprintf(stderr, "config: %s\n", err.msg);
}

static void batch(cast_seqs *s, int V) {
    memset(s, 0, sizeof *s);
    int lens[] = {11, 7, 16};
    cast_rng r;
    cast_rng_seed(&r, 5);
    for (int b = 0; b < 3; b++) {
        int ids[16], labels[16];
        for (int i = 0; i < lens[b]; i++) {
            ids[i] = (int)cast_rng_below(&r, (uint64_t)V);
            labels[i] = i > 2 ? ids[i] : CAST_IGNORE_LABEL;
        }
        cast_seqs_push(s, ids, labels, lens[b]);
    }
}

typedef struct outputs {
    float *logits, *grads, *gates, *decoded;
    double loss;
    char fingerprint[CAST_FINGERPRINT_LEN];
} outputs;

static void run_model(cast_model *m, const cast_seqs *s, outputs *o) {
    int V = m->cfg.vocab;
    int64_t N = s->off[s->n];
    cast_acts *a = cast_acts_new();
    o->logits = cast_alloc_floats((size_t)(N * V));
    cast_loss l;
    CHECK(cast_model_forward(m, a, s, o->logits, &l, NULL, NULL, &err) == 0);
    cast_grads g;
    cast_grads_init(&g, m, NULL, 1);
    CHECK(cast_model_forward_backward(m, a, s, &g, 0, &l, &err) == 0);
    o->loss = l.sum;
    o->grads = cast_alloc_floats((size_t)g.numel);
    memcpy(o->grads, g.buffer, sizeof(float) * (size_t)g.numel);
    o->gates = NULL;
    cast_grads_free(&g);
    /* decode: the prompt of sequence 0, then two tokens one at a time */
    cast_kv kv;
    CHECK(cast_kv_init(&kv, m, 1, 32, &err) == 0);
    o->decoded = cast_alloc_floats((size_t)3 * V);
    cast_seqs one = {0};
    cast_seqs_push(&one, s->ids, s->labels, 6);
    CHECK(cast_model_step(m, a, &kv, &one, NULL, o->decoded, &err) == 0);
    for (int t = 1; t < 3; t++) {
        cast_seqs tok = {0};
        int id = (7 * t) % V, lab = CAST_IGNORE_LABEL;
        cast_seqs_push(&tok, &id, &lab, 1);
        CHECK(cast_model_step(m, a, &kv, &tok, NULL, o->decoded + (int64_t)t * V, &err) == 0);
        cast_seqs_free(&tok);
    }
    cast_seqs_free(&one);
    cast_kv_free(&kv);
    cast_model_fingerprint(m, o->fingerprint);
    cast_acts_free(a);
}

static void outputs_free(outputs *o) {
    free(o->logits), free(o->grads), free(o->decoded);
    memset(o, 0, sizeof *o);
}

/* Rounds every weight to the 16-bit type so that F32 and 16-bit files hold the same values. */
static void round_weights(cast_model *m, cast_half type) {
    for (int i = 0; i < m->n_tensors; i++) {
        cast_tensor *t = &m->tensors[i];
        for (int64_t k = 0; k < t->numel; k++)
            t->data[k] = type == CAST_HALF_BF16 ? cast_bf16_to_f32(cast_f32_to_bf16(t->data[k]))
                                                : cast_f16_to_f32(cast_f32_to_f16(t->data[k]));
    }
}

static void test_family(const char *family, cast_half type, const char *tmp) {
    cast_config c;
    make_config(&c, family);
    cast_model src;
    cast_model_init_random(&src, &c, 3, 0.08f);
    round_weights(&src, type);
    char *d32 = cast_path_join(tmp, "f32"), *d16 = cast_path_join(tmp, "half"), *dsave = cast_path_join(tmp, "resaved");
    cast_dtype dt = type == CAST_HALF_BF16 ? CAST_BF16 : CAST_F16;
    CHECK(cast_model_save(&src, d32, CAST_F32, &err) == 0);
    CHECK(cast_model_save(&src, d16, dt, &err) == 0);
    cast_model a, b;
    CHECK(cast_model_load_as(&a, d32, CAST_COMPUTE_F32, &err) == 0);
    CHECK(cast_model_load_as(&b, d16, CAST_COMPUTE_F32, &err) == 0);
    /* every matrix of b is held 16-bit; vectors are f32 */
    int held = 1;
    for (int i = 0; i < b.n_tensors; i++) {
        const cast_tensor *t = &b.tensors[i];
        held &= t->ndim == 2 ? (t->data == NULL && t->half != NULL) : (t->data != NULL);
    }
    CHECK_MSG(held, "%s: a matrix of the 16-bit checkpoint was expanded", family);
    CHECK(cast_model_weight_bytes(&b) < cast_model_weight_bytes(&a) * 0.55);
    cast_seqs s;
    batch(&s, c.vocab);
    outputs oa, ob;
    run_model(&a, &s, &oa);
    run_model(&b, &s, &ob);
    int64_t N = s.off[s.n];
    CHECK_MSG(close_f32(ob.logits, oa.logits, N * c.vocab), "%s: logits differ", family);
    CHECK_MSG(fabs(oa.loss - ob.loss) <= 1e-6 * oa.loss, "%s: loss %.17g vs %.17g", family, oa.loss, ob.loss);
    int64_t ng = cast_model_param_count(&a) + (int64_t)c.layers * c.heads;
    CHECK_MSG(close_f32(ob.grads, oa.grads, ng), "%s: gradients differ", family);
    CHECK_MSG(close_f32(ob.decoded, oa.decoded, 3 * (int64_t)c.vocab), "%s: decoded logits differ", family);
    CHECK_MSG(!strcmp(oa.fingerprint, ob.fingerprint), "%s: fingerprints %s vs %s", family, oa.fingerprint, ob.fingerprint);
    /* a master: f32 values equal to the stored ones; the results do not move */
    int wq = b.layer[0].wq;
    float *mq = cast_model_master(&b, wq);
    CHECK(mq == b.tensors[wq].data && b.tensors[wq].half == NULL && same_bits(mq, a.tensors[wq].data, a.tensors[wq].numel));
    outputs oc;
    run_model(&b, &s, &oc);
    CHECK_MSG(close_f32(oc.logits, oa.logits, N * c.vocab) && close_f32(oc.grads, oa.grads, ng), "%s: master changed results", family);
    /* saved as stored: the same bytes as the source's 16-bit file */
    CHECK(cast_model_save(&b, dsave, dt, &err) == 0);
    char *p1 = cast_path_join(d16, "model.safetensors"), *p2 = cast_path_join(dsave, "model.safetensors"), *t1, *t2;
    size_t n1 = 0, n2 = 0;
    CHECK(cast_read_file(p1, &t1, &n1, &err) == 0 && cast_read_file(p2, &t2, &n2, &err) == 0);
    CHECK_MSG(n1 == n2 && !memcmp(t1, t2, n1), "%s: resaved 16-bit file differs", family);
    free(t1), free(t2), free(p1), free(p2);
    outputs_free(&oa), outputs_free(&ob), outputs_free(&oc);
    cast_seqs_free(&s);
    cast_model_free(&a), cast_model_free(&b), cast_model_free(&src);
    free(d32), free(d16), free(dsave);
}

/* Recomputation: the same loss and gradients, bit for bit, keeping only each layer's input. */
static void test_recompute(const char *family) {
    cast_config c;
    make_config(&c, family);
    cast_model m;
    cast_model_init_random(&m, &c, 9, 0.08f);
    cast_seqs s;
    batch(&s, c.vocab);
    cast_grads g0, g1;
    cast_grads_init(&g0, &m, NULL, 1);
    cast_grads_init(&g1, &m, NULL, 1);
    cast_acts *a = cast_acts_new();
    cast_loss l0, l1;
    CHECK(!cast_acts_recomputes(a, &m, s.off[s.n])); /* auto: small batches keep everything */
    CHECK(cast_model_forward_backward(&m, a, &s, &g0, 0, &l0, &err) == 0);
    cast_acts_set_recompute(a, 1);
    CHECK(cast_acts_recomputes(a, &m, s.off[s.n]));
    CHECK(cast_model_forward_backward(&m, a, &s, &g1, 0, &l1, &err) == 0);
    CHECK_MSG(l0.sum == l1.sum && same_bits(g0.buffer, g1.buffer, g0.numel), "%s: recomputation changed the gradients", family);
    /* and back: a reused cast_acts switches cleanly */
    cast_grads_zero(&g1);
    cast_acts_set_recompute(a, 0);
    CHECK(cast_model_forward_backward(&m, a, &s, &g1, 0, &l1, &err) == 0);
    CHECK(same_bits(g0.buffer, g1.buffer, g0.numel));
    cast_acts_free(a);
    cast_grads_free(&g0), cast_grads_free(&g1);
    cast_seqs_free(&s);
    cast_model_free(&m);
}

/* bf16 compute on a whole model: refused without bf16 hardware unless
 * emulated; near the f32 loss and gradients (the float64 comparison is
 * tests/reference/test_bf16.py). */
static void test_bf16_compute(const char *tmp) {
    cast_config c;
    make_config(&c, "LlamaForCausalLM");
    cast_model src;
    cast_model_init_random(&src, &c, 4, 0.08f);
    char *dir = cast_path_join(tmp, "bf16model");
    CHECK(cast_model_save(&src, dir, CAST_BF16, &err) == 0);
    cast_model m;
    unsetenv("CAST_BF16_EMULATE");
    int native = cast_linear_bf16_native();
    int rc = cast_model_load_as(&m, dir, CAST_COMPUTE_BF16, &err);
    if (native) {
        CHECK(rc == 0 && m.bf16 == 1);
    } else {
        CHECK_MSG(rc != 0 && strstr(err.msg, "bf16 dot-product instructions") && err.code == CAST_E_ARGUMENT, "%s", err.msg);
        printf("bf16 compute without bf16 hardware: refused (\"%s\")\n", err.msg);
    }
    if (rc == 0) cast_model_free(&m);
    /* auto: bf16 only with the hardware */
    CHECK(cast_model_load_as(&m, dir, CAST_COMPUTE_AUTO, &err) == 0 && m.bf16 == native);
    cast_model_free(&m);
    setenv("CAST_BF16_EMULATE", "1", 1);
    cast_model f, h;
    CHECK(cast_model_load_as(&f, dir, CAST_COMPUTE_F32, &err) == 0);
    CHECK(cast_model_load_as(&h, dir, CAST_COMPUTE_BF16, &err) == 0 && h.bf16 == 1);
    cast_seqs s;
    batch(&s, c.vocab);
    outputs of, oh;
    run_model(&f, &s, &of);
    run_model(&h, &s, &oh);
    double rel = fabs(oh.loss - of.loss) / of.loss;
    CHECK_MSG(rel < 0.01 && rel > 0, "bf16 loss %.6g vs f32 %.6g", oh.loss, of.loss);
    int64_t ng = cast_model_param_count(&f) + (int64_t)c.layers * c.heads;
    double dot = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < ng; i++) dot += (double)of.grads[i] * oh.grads[i], na += (double)of.grads[i] * of.grads[i], nb += (double)oh.grads[i] * oh.grads[i];
    CHECK_MSG(dot / sqrt(na * nb) > 0.999, "bf16 vs f32 gradient cos %.6f", dot / sqrt(na * nb));
    printf("bf16 compute (%s): loss %.6f vs f32 %.6f (rel %.2e), gradient cos %.6f\n", cast_linear_bf16_engine(), oh.loss, of.loss, rel,
           dot / sqrt(na * nb));
    outputs_free(&of), outputs_free(&oh);
    cast_seqs_free(&s);
    cast_model_free(&f), cast_model_free(&h), cast_model_free(&src);
    unsetenv("CAST_BF16_EMULATE");
    free(dir);
}

int main(void) {
    const char *base = getenv("CAST_TEST_TMP") ? getenv("CAST_TEST_TMP") : "/tmp";
    char *tmp = cast_path_join(base, "half_weights");
    cast_remove_tree(tmp, &err);
    test_linear_bits();
    test_bf16_products();
    const char *families[] = {"LlamaForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM", "Gemma2ForCausalLM"};
    for (int f = 0; f < 4; f++)
        for (int ty = 1; ty <= 2; ty++) {
            char *d = cast_xmalloc(strlen(tmp) + 64);
            sprintf(d, "%s/%d_%d", tmp, f, ty);
            test_family(families[f], (cast_half)ty, d);
            free(d);
        }
    for (int f = 0; f < 4; f++) test_recompute(families[f]);
    test_bf16_compute(tmp);
    cast_remove_tree(tmp, &err);
    free(tmp);
    return check_report();
}

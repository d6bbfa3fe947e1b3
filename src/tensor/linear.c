#include "tensor/linear.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/cpu.h"
#include "tensor/ops.h"

#ifdef CAST_DNNL
#include <dnnl.h>
#endif

/* ---- scratch ------------------------------------------------------------------
 * Per-thread buffers that grow and are kept: products run thousands of times
 * per second while decoding, and a fresh allocation each time would cost page
 * faults. Slot 0 holds rounded inputs (the calling thread), slot 1 a weight
 * panel (each worker thread), slot 2 whole bf16 weights for oneDNN. */
static _Thread_local void *scratch_buf[3];
static _Thread_local size_t scratch_cap[3];

static void *scratch(int slot, size_t bytes) {
    if (bytes > scratch_cap[slot]) {
        free(scratch_buf[slot]);
        size_t cap = bytes + bytes / 4;
        if (posix_memalign(&scratch_buf[slot], 64, cap)) abort();
        scratch_cap[slot] = cap;
    }
    return scratch_buf[slot];
}

/* x rounded to bf16, into scratch `slot`: as f32 values (narrow 0) or as
 * bf16 values (narrow 1); in parallel chunks for large inputs. */
static void *to_bf16(const float *x, int64_t n, int slot, int narrow) {
    void *r = scratch(slot, (size_t)n * (narrow ? sizeof(uint16_t) : sizeof(float)));
    int64_t chunk = 1 << 16;
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(n))
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t k = n - i < chunk ? n - i : chunk;
        if (narrow) cast_f32_to_bf16_n((uint16_t *)r + i, x + i, k);
        else cast_round_bf16_n((float *)r + i, x + i, k);
    }
    return r;
}

static const float *rounded(const float *x, int64_t n, int slot) { return to_bf16(x, n, slot, 0); }

/* Rows [r0, r0 + rows) x columns [c0, c0 + cols) of W (row length ld) as f32
 * into dst[rows, cols], rounded to bf16 in bf16 compute. */
static void load_block(float *dst, cast_wmat w, int64_t r0, int64_t rows, int64_t c0, int64_t cols, int64_t ld) {
    for (int64_t r = 0; r < rows; r++) {
        float *d = dst + r * cols;
        int64_t at = (r0 + r) * ld + c0;
        if (w.f32) {
            if (w.bf16) cast_round_bf16_n(d, w.f32 + at, cols);
            else memcpy(d, w.f32 + at, sizeof(float) * (size_t)cols);
        } else {
            cast_half_to_f32(d, w.half + at, w.type, cols);
            if (w.bf16 && w.type != CAST_HALF_BF16) cast_round_bf16_n(d, d, cols);
        }
    }
}

/* Panel width: about 256 Ki values of W (1 MiB of f32) per panel, a multiple
 * of 16, at least 16, at most `dim`. */
static int64_t panel_size(int64_t other, int64_t dim) {
    int64_t p = ((int64_t)1 << 18) / (other > 0 ? other : 1);
    p = p < 16 ? 16 : p & ~(int64_t)15;
    return p < dim ? p : dim;
}

/* y[N,out] = (or +=) x·W^T, W a panel of rows at a time. */
static void panel_fwd(float *y, const float *x, cast_wmat w, int64_t N, int in, int out, int accumulate) {
    int64_t P = panel_size(in, out), panels = (out + P - 1) / P;
#pragma omp parallel for schedule(dynamic, 1) if (CAST_PARALLEL(N * in * out / 8) && panels > 1)
    for (int64_t p = 0; p < panels; p++) {
        int64_t o0 = p * P, rows = out - o0 < P ? out - o0 : P;
        float *wp = scratch(1, sizeof(float) * (size_t)(rows * in));
        load_block(wp, w, o0, rows, 0, in, in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)rows, in, 1.0f, x, in, wp, in,
                    accumulate ? 1.0f : 0.0f, y + o0, out);
    }
}

/* dx[N,in] = (or +=) dy·W, W a panel of columns at a time (each keeps every
 * row, so each dx element is one sum over all of out, as with the whole W). */
static void panel_bwd_dx(float *dx, const float *dy, cast_wmat w, int64_t N, int in, int out, int accumulate) {
    int64_t P = panel_size(out, in), panels = (in + P - 1) / P;
#pragma omp parallel for schedule(dynamic, 1) if (CAST_PARALLEL(N * in * out / 8) && panels > 1)
    for (int64_t p = 0; p < panels; p++) {
        int64_t c0 = p * P, cols = in - c0 < P ? in - c0 : P;
        float *wp = scratch(1, sizeof(float) * (size_t)(out * cols));
        load_block(wp, w, 0, out, c0, cols, in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)cols, out, 1.0f, dy, out, wp, (int)cols,
                    accumulate ? 1.0f : 0.0f, dx + c0, in);
    }
}

/* ---- decoding: a few tokens against bf16 weights ------------------------------------
 * With one to four tokens a product is bound by reading W: widening panels
 * to f32 first would read and write each weight three times. Here each row
 * of W is read once, widened in registers and multiplied into every token
 * (f32 products, f32 accumulation in 8 lanes, summed at the end). */
#define GEMV_MAX_TOKENS 4
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* 8 bf16 values widened to f32 */
#define WIDEN8(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))

/* Output o of every token. A function of its own with the target attribute
 * (an OpenMP-outlined loop body would not carry it). */
__attribute__((target("avx2,fma"))) static void gemv_row(float *y, const float *x, const uint16_t *w, int64_t N, int in, int out,
                                                          int o, int accumulate) {
    const uint16_t *row = w + (int64_t)o * in;
    __m256 acc[GEMV_MAX_TOKENS];
    for (int64_t t = 0; t < N; t++) acc[t] = _mm256_setzero_ps();
    int i = 0;
    if (N == 1) { /* four chains: one FMA chain would wait on its own latency */
        __m256 a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (; i + 32 <= in; i += 32) {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), WIDEN8(row + i), acc[0]);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), WIDEN8(row + i + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), WIDEN8(row + i + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), WIDEN8(row + i + 24), a3);
        }
        acc[0] = _mm256_add_ps(_mm256_add_ps(acc[0], a1), _mm256_add_ps(a2, a3));
    }
    for (; i + 8 <= in; i += 8) {
        __m256 wv = WIDEN8(row + i);
        for (int64_t t = 0; t < N; t++) acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(x + t * in + i), wv, acc[t]);
    }
    for (int64_t t = 0; t < N; t++) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[t]), _mm256_extractf128_ps(acc[t], 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        float sum = _mm_cvtss_f32(s);
        for (int k = i; k < in; k++) sum += x[t * in + k] * cast_bf16_to_f32(row[k]);
        y[t * out + o] = accumulate ? y[t * out + o] + sum : sum;
    }
}

static void gemv_bf16_avx2(float *y, const float *x, const uint16_t *w, int64_t N, int in, int out, int accumulate) {
#pragma omp parallel for schedule(static) if ((int64_t)in * out >= (1 << 18))
    for (int o = 0; o < out; o++) gemv_row(y, x, w, N, in, out, o, accumulate);
}

static int have_avx2_fma(void) {
    static int state = -1;
    if (state < 0) state = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return state;
}

/* 1 when the product ran here */
static int gemv_bf16(float *y, const float *x, cast_wmat w, int64_t N, int in, int out, int accumulate) {
    if (w.f32 || w.type != CAST_HALF_BF16 || N > GEMV_MAX_TOKENS || !have_avx2_fma()) return 0;
    gemv_bf16_avx2(y, x, w.half, N, in, out, accumulate);
    return 1;
}
#else
static int gemv_bf16(float *y, const float *x, cast_wmat w, int64_t N, int in, int out, int accumulate) {
    (void)y, (void)x, (void)w, (void)N, (void)in, (void)out, (void)accumulate;
    return 0;
}
#endif

/* ---- oneDNN: bf16 products on bf16 hardware ------------------------------------ */
#ifdef CAST_DNNL
typedef struct mm_key {
    int64_t M, N, K, sa0, sa1, sb0, sb1;
    int accumulate;
    int f32; /* inputs f32 instead of bf16 (cast_linear_onednn_check) */
} mm_key;

typedef struct mm_entry {
    mm_key key;
    dnnl_primitive_t prim;
    uint64_t used;
} mm_entry;

#define MM_CACHE 48
static _Thread_local mm_entry mm_cache[MM_CACHE];
static _Thread_local uint64_t mm_clock;
static _Thread_local dnnl_engine_t dnnl_eng;
static _Thread_local dnnl_stream_t dnnl_str;

/* The memory descriptors of key k: A [M,K], B [K,N] with their strides, C [M,N] f32 row-major. 0 or -1. */
static int mm_descs(const mm_key *k, dnnl_memory_desc_t *a, dnnl_memory_desc_t *b, dnnl_memory_desc_t *c) {
    dnnl_dims_t da = {k->M, k->K}, sa = {k->sa0, k->sa1}, db = {k->K, k->N}, sb = {k->sb0, k->sb1}, dc = {k->M, k->N},
                sc = {k->N, 1};
    dnnl_data_type_t in = k->f32 ? dnnl_f32 : dnnl_bf16;
    return dnnl_memory_desc_init_by_strides(a, 2, da, in, sa) || dnnl_memory_desc_init_by_strides(b, 2, db, in, sb) ||
                   dnnl_memory_desc_init_by_strides(c, 2, dc, dnnl_f32, sc)
               ? -1
               : 0;
}

/* A matmul dst[M,N] f32 (= or +=) A[M,K]·B[K,N], A and B bf16 with the given
 * strides; NULL when oneDNN cannot make it. Kept per shape (least recently
 * used goes): making one costs far more than running it. */
static dnnl_primitive_t mm_get(const mm_key *k) {
    if (!dnnl_eng) {
        if (dnnl_engine_create(&dnnl_eng, dnnl_cpu, 0) || dnnl_stream_create(&dnnl_str, dnnl_eng, dnnl_stream_default_flags))
            return NULL;
    }
    mm_entry *slot = &mm_cache[0];
    for (int i = 0; i < MM_CACHE; i++) {
        mm_entry *e = &mm_cache[i];
        if (e->prim && !memcmp(&e->key, k, sizeof *k)) {
            e->used = ++mm_clock;
            return e->prim;
        }
        if (e->used < slot->used) slot = e;
    }
    dnnl_memory_desc_t a, b, c;
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_t prim = NULL;
    int ok = !mm_descs(k, &a, &b, &c) && !dnnl_matmul_desc_init(&md, &a, &b, NULL, &c) && !dnnl_primitive_attr_create(&attr);
    if (ok && k->accumulate)
        ok = !dnnl_post_ops_create(&po) && !dnnl_post_ops_append_sum(po, 1.0f) && !dnnl_primitive_attr_set_post_ops(attr, po);
    ok = ok && !dnnl_primitive_desc_create(&pd, &md, attr, dnnl_eng, NULL) && !dnnl_primitive_create(&prim, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) return NULL;
    if (slot->prim) dnnl_primitive_destroy(slot->prim);
    slot->key = *k;
    slot->prim = prim;
    slot->used = ++mm_clock;
    return prim;
}

/* Runs the product; 0 on success, -1 when oneDNN cannot (the caller falls back). */
static int mm_run(const mm_key *k, const void *A, const void *B, float *C) {
    dnnl_primitive_t prim = mm_get(k);
    if (!prim) return -1;
    dnnl_memory_desc_t a, b, c;
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    int rc = -1;
    if (!mm_descs(k, &a, &b, &c) && !dnnl_memory_create(&ma, &a, dnnl_eng, (void *)(uintptr_t)A) && !dnnl_memory_create(&mb, &b, dnnl_eng, (void *)(uintptr_t)B) &&
        !dnnl_memory_create(&mc, &c, dnnl_eng, C)) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
        rc = dnnl_primitive_execute(prim, dnnl_str, 3, args) || dnnl_stream_wait(dnnl_str) ? -1 : 0;
    }
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    return rc;
}

static const uint16_t *as_bf16(const float *v, int64_t n, int slot) { return to_bf16(v, n, slot, 1); }

static const uint16_t *weights_bf16(cast_wmat w, int64_t n) {
    if (w.half && w.type == CAST_HALF_BF16) return w.half;
    if (w.f32) return as_bf16(w.f32, n, 2);
    float *tmp = cast_alloc_floats((size_t)n); /* f16 weights: rare; widen, then narrow */
    cast_half_to_f32(tmp, w.half, w.type, n);
    const uint16_t *r = as_bf16(tmp, n, 2);
    free(tmp);
    return r;
}

/* The three product shapes above through oneDNN with f32 inputs, against
 * sgemm: the strides, transposes and accumulation of the bf16 path, checked
 * on any CPU (bf16 matmuls themselves need the hardware). */
int cast_linear_onednn_check(int64_t N, int in, int out, double *max_rel) {
    float *x = cast_alloc_floats((size_t)(N * in)), *w = cast_alloc_floats((size_t)out * in), *dy = cast_alloc_floats((size_t)(N * out));
    float *a = cast_alloc_floats((size_t)(N * out)), *b = cast_alloc_floats((size_t)(N * out));
    float *dxa = cast_alloc_floats((size_t)(N * in)), *dxb = cast_alloc_floats((size_t)(N * in));
    float *dwa = cast_alloc_floats((size_t)out * in), *dwb = cast_alloc_floats((size_t)out * in);
    for (int64_t i = 0; i < N * in; i++) x[i] = (float)((i * 7919 % 1000) / 1000.0 - 0.5), dxa[i] = dxb[i] = 0.25f;
    for (int64_t i = 0; i < (int64_t)out * in; i++) w[i] = (float)((i * 104729 % 997) / 997.0 - 0.5), dwa[i] = dwb[i] = 0.5f;
    for (int64_t i = 0; i < N * out; i++) dy[i] = (float)((i * 31 % 101) / 101.0 - 0.5), a[i] = b[i] = 1.0f;
    mm_key kf = {N, out, in, in, 1, 1, in, 1, 1}, kx = {N, in, out, out, 1, in, 1, 1, 1}, kw = {out, in, N, 1, out, in, 1, 1, 1};
    int rc = mm_run(&kf, x, w, a) || mm_run(&kx, dy, w, dxa) || mm_run(&kw, dy, x, dwa) ? -1 : 0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, out, in, 1.0f, x, in, w, in, 1.0f, b, out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, in, out, 1.0f, dy, out, w, in, 1.0f, dxb, in);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, (int)N, 1.0f, dy, out, x, in, 1.0f, dwb, in);
    double worst = 0;
    const float *got[3] = {a, dxa, dwa}, *want[3] = {b, dxb, dwb};
    int64_t n[3] = {N * out, N * in, (int64_t)out * in};
    for (int t = 0; t < 3; t++) {
        double d = 0, s = 0;
        for (int64_t i = 0; i < n[t]; i++) {
            double e = got[t][i] - (double)want[t][i];
            d = e < 0 ? (-e > d ? -e : d) : (e > d ? e : d);
            s = want[t][i] < 0 ? (-want[t][i] > s ? -want[t][i] : s) : (want[t][i] > s ? want[t][i] : s);
        }
        worst = s > 0 && d / s > worst ? d / s : worst;
    }
    *max_rel = worst;
    free(x), free(w), free(dy), free(a), free(b), free(dxa), free(dxb), free(dwa), free(dwb);
    return rc;
}

static int native_state = -1;

int cast_linear_bf16_native(void) {
    if (native_state < 0) native_state = cast_cpu_has_bf16();
    return native_state;
}
#else
int cast_linear_bf16_native(void) { return 0; }
int cast_linear_onednn_check(int64_t N, int in, int out, double *max_rel) {
    (void)N, (void)in, (void)out;
    *max_rel = 0;
    return -1;
}
#endif

const char *cast_linear_bf16_engine(void) { return cast_linear_bf16_native() ? "onednn" : "emulated"; }

/* ---- the products ------------------------------------------------------------- */

static void add_bias(float *y, const float *b, int64_t N, int out) {
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(N * out))
    for (int64_t t = 0; t < N; t++)
        for (int o = 0; o < out; o++) y[t * out + o] += b[o];
}

void cast_linear_fwd(float *y, const float *x, cast_wmat w, const float *b, int64_t N, int in, int out, int accumulate) {
    if (w.f32 && !w.bf16) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, out, in, 1.0f, x, in, w.f32, in,
                    accumulate ? 1.0f : 0.0f, y, out);
    } else {
        int done = 0;
#ifdef CAST_DNNL
        if (w.bf16 && cast_linear_bf16_native()) {
            mm_key k = {N, out, in, in, 1, 1, in, accumulate, 0};
            done = mm_run(&k, as_bf16(x, N * in, 0), weights_bf16(w, (int64_t)out * in), y) == 0;
        }
#endif
        if (!done) {
            const float *xs = w.bf16 ? rounded(x, N * in, 0) : x;
            if (!gemv_bf16(y, xs, w, N, in, out, accumulate)) panel_fwd(y, xs, w, N, in, out, accumulate);
        }
    }
    if (b) add_bias(y, b, N, out);
}

void cast_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, cast_wmat w, int64_t N, int in,
                     int out, int accumulate_dx) {
    if (!w.bf16) {
        if (dx) {
            if (w.f32)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, in, out, 1.0f, dy, out, w.f32, in,
                            accumulate_dx ? 1.0f : 0.0f, dx, in);
            else panel_bwd_dx(dx, dy, w, N, in, out, accumulate_dx);
        }
        if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, (int)N, 1.0f, dy, out, x, in, 1.0f, dw, in);
    } else {
        int dx_done = !dx, dw_done = !dw;
#ifdef CAST_DNNL
        if (cast_linear_bf16_native()) {
            const uint16_t *dyb = as_bf16(dy, N * out, 0);
            mm_key kx = {N, in, out, out, 1, in, 1, accumulate_dx, 0}, kw = {out, in, N, 1, out, in, 1, 1, 0};
            if (dx) dx_done = mm_run(&kx, dyb, weights_bf16(w, (int64_t)out * in), dx) == 0;
            if (dw) dw_done = mm_run(&kw, dyb, as_bf16(x, N * in, 1), dw) == 0;
        }
#endif
        if (!dx_done || !dw_done) {
            const float *dyr = rounded(dy, N * out, 0);
            if (!dx_done) panel_bwd_dx(dx, dyr, w, N, in, out, accumulate_dx);
            if (!dw_done) {
                /* dy's rounding sits in slot 0; x's goes to this thread's panel slot */
                float *xr = scratch(1, sizeof(float) * (size_t)(N * in));
                cast_round_bf16_n(xr, x, N * in);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, (int)N, 1.0f, dyr, out, xr, in, 1.0f, dw, in);
            }
        }
    }
    if (db) {
#pragma omp parallel for schedule(static) if (CAST_PARALLEL((int64_t)out * N))
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int64_t t = 0; t < N; t++) s += dy[t * out + o];
            db[o] += (float)s;
        }
    }
}

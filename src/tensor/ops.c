#include "tensor/ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

/* ---- RMSNorm ------------------------------------------------------------ */

void cast_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, float w_add, int64_t N, int D, float eps) {
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(N * D))
    for (int64_t t = 0; t < N; t++) {
        const float *xr = x + t * D;
        float *yr = y + t * D;
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / D + eps));
        if (rstd) rstd[t] = r;
        for (int i = 0; i < D; i++) yr[i] = (w[i] + w_add) * (xr[i] * r);
    }
}

void cast_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, float w_add, const float *rstd,
                      int64_t N, int D) {
    /* y_i = w'_i x_i r with w' = w + w_add;  dx_i = r (w'_i dy_i) - r^3/D x_i Σ_j w'_j dy_j x_j;  dw_i = Σ_t dy_i x_i r */
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(N * D))
    for (int64_t t = 0; t < N; t++) {
        const float *xr = x + t * D, *dyr = dy + t * D;
        float *dxr = dx + t * D;
        float r = rstd[t];
        double dot = 0;
        for (int i = 0; i < D; i++) dot += (double)(w[i] + w_add) * dyr[i] * xr[i];
        float c = (float)(dot * r * r * r / D);
        for (int i = 0; i < D; i++) dxr[i] += r * (w[i] + w_add) * dyr[i] - c * xr[i];
    }
    if (dw) {
#pragma omp parallel for schedule(static) if (CAST_PARALLEL((int64_t)N * D))
        for (int i = 0; i < D; i++) {
            double s = 0;
            for (int64_t t = 0; t < N; t++) s += (double)dy[t * D + i] * x[t * D + i] * rstd[t];
            dw[i] += (float)s;
        }
    }
}

/* ---- RoPE --------------------------------------------------------------- */

void cast_rope_init(cast_rope *r, int head_dim, int rot_dim, double theta, int llama3, double factor, double low_freq,
                    double high_freq, int orig_max) {
    memset(r, 0, sizeof *r);
    r->d = head_dim;
    r->half = rot_dim / 2;
    r->inv_freq = cast_xmalloc(sizeof(float) * (size_t)r->half);
    for (int i = 0; i < r->half; i++) {
        double f = 1.0 / pow(theta, (2.0 * i) / rot_dim);
        if (llama3) {
            /* llama3: long wavelengths are slowed by `factor`, short ones kept,
             * and the band between blended linearly in 1/wavelength */
            double wavelen = 2.0 * M_PI / f;
            double low_wavelen = orig_max / low_freq, high_wavelen = orig_max / high_freq;
            if (wavelen > low_wavelen) f = f / factor;
            else if (wavelen >= high_wavelen) {
                double smooth = (orig_max / wavelen - low_freq) / (high_freq - low_freq);
                f = (1.0 - smooth) * f / factor + smooth * f;
            }
        }
        r->inv_freq[i] = (float)f;
    }
}

void cast_rope_reserve(cast_rope *r, int n) {
    if (n <= r->n_pos) return;
    int cap = r->n_pos ? r->n_pos : 64;
    while (cap < n) cap *= 2;
    r->cos = cast_xrealloc(r->cos, sizeof(float) * (size_t)cap * (size_t)r->half);
    r->sin = cast_xrealloc(r->sin, sizeof(float) * (size_t)cap * (size_t)r->half);
    for (int p = r->n_pos; p < cap; p++)
        for (int i = 0; i < r->half; i++) {
            double a = (double)p * (double)r->inv_freq[i];
            r->cos[(size_t)p * r->half + i] = (float)cos(a);
            r->sin[(size_t)p * r->half + i] = (float)sin(a);
        }
    r->n_pos = cap;
}

void cast_rope_free(cast_rope *r) {
    free(r->inv_freq);
    free(r->cos);
    free(r->sin);
    memset(r, 0, sizeof *r);
}

void cast_rope_apply(const cast_rope *r, float *x, const int *pos, int64_t N, int n_heads, int inverse) {
    int half = r->half, d = r->d;
    float sgn = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(N * n_heads * d))
    for (int64_t t = 0; t < N; t++) {
        const float *c = r->cos + (size_t)pos[t] * half, *s = r->sin + (size_t)pos[t] * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (t * n_heads + h) * d;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], sn = sgn * s[i];
                v[i] = a * c[i] - b * sn;
                v[i + half] = b * c[i] + a * sn;
            }
        }
    }
}

/* ---- SwiGLU ------------------------------------------------------------- */

void cast_swiglu_fwd(float *h, const float *g, const float *u, int64_t n) {
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(n))
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-g[i]));
        h[i] = g[i] * s * u[i];
    }
}

void cast_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n) {
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(n))
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-g[i]));
        float silu = g[i] * s;
        du[i] = dh[i] * silu;
        dg[i] = dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

/* ---- GeGLU ----------------------------------------------------------------- */

#define GELU_K 0.7978845608028654f /* sqrt(2/π) */
#define GELU_C 0.044715f

void cast_geglu_fwd(float *h, const float *g, const float *u, int64_t n) {
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(n))
    for (int64_t i = 0; i < n; i++) {
        float x = g[i], t = tanhf(GELU_K * (x + GELU_C * x * x * x));
        h[i] = 0.5f * x * (1.0f + t) * u[i];
    }
}

void cast_geglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n) {
    /* gelu'(x) = (1 + t)/2 + x/2 · (1 - t²) · sqrt(2/π) · (1 + 3·0.044715 x²) */
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(n))
    for (int64_t i = 0; i < n; i++) {
        float x = g[i], t = tanhf(GELU_K * (x + GELU_C * x * x * x));
        float gelu = 0.5f * x * (1.0f + t);
        float dgelu = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
        du[i] = dh[i] * gelu;
        dg[i] = dh[i] * u[i] * dgelu;
    }
}

/* ---- soft-capping ------------------------------------------------------------ */

void cast_softcap_fwd(float *x, int64_t n, float cap) {
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(n))
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

void cast_softcap_bwd(float *dx, const float *y, int64_t n, float cap) {
    /* y = c tanh(x/c): dy/dx = 1 - tanh² = 1 - (y/c)² */
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(n))
    for (int64_t i = 0; i < n; i++) {
        float t = y[i] / cap;
        dx[i] *= 1.0f - t * t;
    }
}

/* ---- attention ---------------------------------------------------------- */

static inline int key_lo(int i, int past, int window) {
    int lo = window > 0 ? past + i - window + 1 : 0;
    return lo < 0 ? 0 : lo;
}

void cast_attention_fwd(float *z, int zs, float *lse, const float *q, int qs, const float *k, const float *v, int ks, int n,
                        int past, int window, int d, float scale, float cap, float *scratch) {
    int nk = past + n;
    float *S = scratch; /* [n, nk] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, nk, d, scale, q, qs, k, ks, 0.0f, S, nk);
    for (int i = 0; i < n; i++) {
        float *row = S + (size_t)i * nk;
        int lo = key_lo(i, past, window), hi = past + i; /* keys lo..hi inclusive */
        if (cap > 0)
            for (int j = lo; j <= hi; j++) row[j] = cap * tanhf(row[j] / cap);
        float mx = -INFINITY;
        for (int j = lo; j <= hi; j++) mx = row[j] > mx ? row[j] : mx;
        double sum = 0;
        for (int j = lo; j <= hi; j++) {
            row[j] = expf(row[j] - mx);
            sum += (double)row[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < lo; j++) row[j] = 0.0f;
        for (int j = lo; j <= hi; j++) row[j] *= inv;
        for (int j = hi + 1; j < nk; j++) row[j] = 0.0f;
        if (lse) lse[i] = mx + (float)log(sum);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, nk, 1.0f, S, nk, v, ks, 0.0f, z, zs);
}

void cast_attention_bwd(float *dq, int qs, float *dk, float *dv, int dks, const float *dz, const float *z, int zs,
                        const float *lse, const float *q, const float *k, const float *v, int ks, int n, int window, int d,
                        float scale, float cap, float *scratch) {
    float *P = scratch, *dP = scratch + (size_t)n * n, *dcap = scratch + 2 * (size_t)n * n;
    /* P = softmax(scale q k^T) recomputed from the saved log-sum-exp; with a
     * cap, dcap keeps the cap's derivative 1 - tanh² per score */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, scale, q, qs, k, ks, 0.0f, P, n);
    for (int i = 0; i < n; i++) {
        int lo = key_lo(i, 0, window);
        float *row = P + (size_t)i * n;
        if (cap > 0)
            for (int j = lo; j <= i; j++) {
                float t = tanhf(row[j] / cap);
                row[j] = cap * t;
                dcap[(size_t)i * n + j] = 1.0f - t * t;
            }
        for (int j = 0; j < lo; j++) row[j] = 0.0f;
        for (int j = lo; j <= i; j++) row[j] = expf(row[j] - lse[i]);
        for (int j = i + 1; j < n; j++) row[j] = 0.0f;
    }
    /* dV = P^T dz ; dP = dz V^T */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, d, n, 1.0f, P, n, dz, zs, 0.0f, dv, dks);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, 1.0f, dz, zs, v, ks, 0.0f, dP, n);
    /* dS = P ⊙ (dP - rowsum(dz ⊙ z)), with the softmax scale folded in */
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * zs, *dzi = dz + (size_t)i * zs;
        double D = 0;
        for (int c = 0; c < d; c++) D += (double)zi[c] * dzi[c];
        float *pr = P + (size_t)i * n, *dpr = dP + (size_t)i * n;
        for (int j = 0; j <= i; j++) dpr[j] = pr[j] * (dpr[j] - (float)D) * scale;
        if (cap > 0)
            for (int j = key_lo(i, 0, window); j <= i; j++) dpr[j] *= dcap[(size_t)i * n + j];
        for (int j = i + 1; j < n; j++) dpr[j] = 0.0f;
    }
    /* dQ = dS K ; dK = dS^T Q */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, n, 1.0f, dP, n, k, ks, 0.0f, dq, qs);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, d, n, 1.0f, dP, n, q, qs, 0.0f, dk, dks);
}

/* ---- cross-entropy ------------------------------------------------------ */

double cast_cross_entropy(float *logits, const int *target, int64_t rows, int V, float grad_scale, double *row_loss) {
    double total = 0;
#pragma omp parallel for schedule(static) if (CAST_PARALLEL(rows * V)) reduction(+ : total)
    for (int64_t r = 0; r < rows; r++) {
        float *x = logits + r * V;
        float mx = -INFINITY, xt = x[target[r]];
        for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        double sum = 0;
        if (grad_scale != 0.0f) {
            /* keep exp(x - max) in place: the gradient is exp / sum - onehot */
            for (int i = 0; i < V; i++) {
                float e = expf(x[i] - mx);
                x[i] = e;
                sum += (double)e;
            }
            float k = (float)(grad_scale / sum);
            for (int i = 0; i < V; i++) x[i] *= k;
            x[target[r]] -= grad_scale;
        } else {
            for (int i = 0; i < V; i++) sum += (double)expf(x[i] - mx);
        }
        double loss = mx + log(sum) - xt;
        if (row_loss) row_loss[r] = loss;
        total += loss;
    }
    return total;
}

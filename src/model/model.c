#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/cpu.h"
#include "base/file.h"
#include "base/json.h"
#include "base/rng.h"

static int add_tensor(cast_model *m, int *cap, const char *name, int64_t rows, int64_t cols) {
    if (m->n_tensors == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        m->tensors = cast_xrealloc(m->tensors, sizeof *m->tensors * (size_t)*cap);
    }
    cast_tensor *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->numel = rows * (cols ? cols : 1);
    return m->n_tensors++;
}

/* The tensor table the config implies, in canonical order. */
static void build_table(cast_model *m) {
    const cast_config *c = &m->cfg;
    int cap = 0;
    char name[96];
    int64_t D = c->hidden, F = c->inter, qd = (int64_t)c->heads * c->head_dim, kvd = (int64_t)c->kv_heads * c->head_dim;
    m->embed = add_tensor(m, &cap, "model.embed_tokens.weight", c->vocab, D);
    m->layer = cast_xcalloc((size_t)c->layers, sizeof *m->layer);
    for (int l = 0; l < c->layers; l++) {
        cast_layer_index *x = &m->layer[l];
        memset(x, 0, sizeof *x); /* row offsets 0 unless fused */
#define T(field, suffix, rows, cols)                                      \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);         \
    x->field = add_tensor(m, &cap, name, rows, cols)
#define OPT(field, cond, suffix, rows)                                    \
    if (cond) {                                                           \
        T(field, suffix, rows, 0);                                        \
    } else x->field = -1
        T(attn_norm, "input_layernorm.weight", D, 0);
        if (c->fused) {
            /* Phi-3: qkv_proj = [q rows; k rows; v rows], no biases */
            T(wq, "self_attn.qkv_proj.weight", qd + 2 * kvd, D);
            x->wk = x->wv = x->wq;
            x->k_row0 = (int)qd;
            x->v_row0 = (int)(qd + kvd);
            x->bq = x->bk = x->bv = -1;
        } else {
            T(wq, "self_attn.q_proj.weight", qd, D);
            OPT(bq, c->qkv_bias, "self_attn.q_proj.bias", qd);
            T(wk, "self_attn.k_proj.weight", kvd, D);
            OPT(bk, c->qkv_bias, "self_attn.k_proj.bias", kvd);
            T(wv, "self_attn.v_proj.weight", kvd, D);
            OPT(bv, c->qkv_bias, "self_attn.v_proj.bias", kvd);
        }
        T(wo, "self_attn.o_proj.weight", D, qd);
        OPT(bo, c->o_bias, "self_attn.o_proj.bias", D);
        OPT(q_norm, c->qk_norm, "self_attn.q_norm.weight", c->head_dim);
        OPT(k_norm, c->qk_norm, "self_attn.k_norm.weight", c->head_dim);
        OPT(post_attn_norm, c->gemma, "post_attention_layernorm.weight", D);
        T(mlp_norm, c->gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight", D, 0);
        if (c->fused) {
            /* Phi-3: gate_up_proj = [gate rows; up rows] */
            T(wg, "mlp.gate_up_proj.weight", 2 * F, D);
            x->wu = x->wg;
            x->u_row0 = (int)F;
            x->bg = x->bu = -1;
        } else {
            T(wg, "mlp.gate_proj.weight", F, D);
            OPT(bg, c->mlp_bias, "mlp.gate_proj.bias", F);
            T(wu, "mlp.up_proj.weight", F, D);
            OPT(bu, c->mlp_bias, "mlp.up_proj.bias", F);
        }
        T(wd, "mlp.down_proj.weight", D, F);
        OPT(bd, c->mlp_bias, "mlp.down_proj.bias", D);
        OPT(post_mlp_norm, c->gemma, "post_feedforward_layernorm.weight", D);
#undef T
#undef OPT
    }
    m->norm = add_tensor(m, &cap, "model.norm.weight", D, 0);
    m->lm_head = c->tie_embeddings ? m->embed : add_tensor(m, &cap, "lm_head.weight", c->vocab, D);
    m->gates = cast_xmalloc(sizeof(float) * (size_t)c->layers * (size_t)c->heads);
    for (int i = 0; i < c->layers * c->heads; i++) m->gates[i] = 1.0f;
}

int cast_model_find(const cast_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return i;
    return -1;
}

int64_t cast_model_param_count(const cast_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += m->tensors[i].numel;
    return n;
}

/* Values of the distinct tensors among idx[n] (-1 skipped; a fused tensor,
 * named by several indices, counted once), matrices only if asked. */
static int64_t distinct_numel(const cast_model *m, const int *idx, size_t n, int matrices_only) {
    int64_t sum = 0;
    for (size_t k = 0; k < n; k++) {
        int seen = idx[k] < 0 || (matrices_only && m->tensors[idx[k]].ndim != 2);
        for (size_t j = 0; j < k && !seen; j++) seen = idx[j] == idx[k];
        if (!seen) sum += m->tensors[idx[k]].numel;
    }
    return sum;
}

void cast_model_shape_counts(const cast_config *c, cast_shape_counts *out) {
    cast_model m;
    memset(&m, 0, sizeof m);
    m.cfg = *c;
    build_table(&m);
    memset(out, 0, sizeof *out);
    for (int i = 0; i < m.n_tensors; i++) {
        const cast_tensor *t = &m.tensors[i];
        if (t->ndim == 2) out->matrices += t->numel;
        else out->vectors += t->numel;
        if (t->ndim == 2 && t->numel > out->largest_matrix) out->largest_matrix = t->numel;
    }
    const cast_layer_index *x = &m.layer[0];
    int idx[] = CAST_LAYER_TENSORS(x), attn[] = {x->wq, x->bq, x->wk, x->bk, x->wv, x->bv, x->wo, x->bo};
    out->layer_matrices = distinct_numel(&m, idx, sizeof idx / sizeof idx[0], 1);
    out->layer_attention = distinct_numel(&m, attn, sizeof attn / sizeof attn[0], 0);
    cast_model_free(&m);
}

int64_t cast_model_weight_bytes(const cast_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += m->tensors[i].numel * (m->tensors[i].data ? 4 : 2);
    return n;
}

cast_wmat cast_model_w(const cast_model *m, int i) {
    cast_wmat w = {0, 0, CAST_HALF_NONE, m->bf16};
    if (i < 0) return w;
    const cast_tensor *t = &m->tensors[i];
    w.f32 = t->data;
    if (!t->data) {
        w.half = t->half;
        w.type = t->half_type;
    }
    return w;
}

/* Whether tensor t's 16-bit values are the file's mapped pages, which may
 * go back to the kernel and reload: not values made in memory
 * (cast_model_hold_half), which dropping would zero. */
static int mapped_half(const cast_model *m, const cast_tensor *t) { return t->half && !m->half_buffer; }

/* The mapped pages of a 16-bit tensor back to the kernel (never written: they reload). */
static void drop_pages(const cast_model *m, const cast_tensor *t) {
    if (mapped_half(m, t)) cast_mmap_drop(t->half, sizeof(uint16_t) * (size_t)t->numel);
}

void cast_model_release(const cast_model *m, int i) {
    if (m->stream && i >= 0) drop_pages(m, &m->tensors[i]);
}

void cast_model_release_layer(const cast_model *m, int l) {
    if (!m->stream) return;
    int idx[] = CAST_LAYER_TENSORS(&m->layer[l]);
    for (size_t k = 0; k < sizeof idx / sizeof idx[0]; k++) cast_model_release(m, idx[k]);
}

float *cast_model_master(cast_model *m, int i) {
    cast_tensor *t = &m->tensors[i];
    if (t->data) return t->data;
    if (!m->master) m->master = cast_xcalloc((size_t)m->n_tensors, sizeof(float *));
    float *v = cast_alloc_floats((size_t)t->numel);
    cast_half_to_f32(v, t->half, t->half_type, t->numel);
    drop_pages(m, t); /* no longer read */
    m->master[i] = t->data = v;
    t->half = NULL;
    t->half_type = CAST_HALF_NONE;
    return v;
}

void cast_model_read(const cast_model *m, int i, int64_t k0, int64_t n, float *dst) {
    const cast_tensor *t = &m->tensors[i];
    if (t->data) memcpy(dst, t->data + k0, sizeof(float) * (size_t)n);
    else cast_half_to_f32(dst, t->half + k0, t->half_type, n);
}

void cast_model_hold_half(cast_model *m, cast_half type) {
    int64_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += m->tensors[i].ndim == 2 && m->tensors[i].data ? m->tensors[i].numel : 0;
    uint16_t *h = cast_xmalloc(sizeof(uint16_t) * (size_t)(n ? n : 1)), *p = h;
    for (int i = 0; i < m->n_tensors; i++) {
        cast_tensor *t = &m->tensors[i];
        if (t->ndim != 2 || !t->data) continue;
        for (int64_t k = 0; k < t->numel; k++) p[k] = type == CAST_HALF_BF16 ? cast_f32_to_bf16(t->data[k]) : cast_f32_to_f16(t->data[k]);
        if (m->master && m->master[i]) {
            free(m->master[i]);
            m->master[i] = NULL;
        }
        t->data = NULL;
        t->half = p;
        t->half_type = type;
        p += t->numel;
    }
    free(m->half_buffer);
    m->half_buffer = h;
    m->storage = type == CAST_HALF_BF16 ? CAST_BF16 : CAST_F16;
    /* the f32 values left in the owned buffer (vectors) move to a buffer of their size */
    if (m->buffer) {
        int64_t left = 0;
        for (int i = 0; i < m->n_tensors; i++)
            if (m->tensors[i].data >= m->buffer && m->tensors[i].data < m->buffer + m->buffer_numel) left += m->tensors[i].numel;
        float *b = cast_alloc_floats((size_t)(left ? left : 1)), *q = b;
        for (int i = 0; i < m->n_tensors; i++) {
            cast_tensor *t = &m->tensors[i];
            if (t->data >= m->buffer && t->data < m->buffer + m->buffer_numel) {
                memcpy(q, t->data, sizeof(float) * (size_t)t->numel);
                t->data = q;
                q += t->numel;
            }
        }
        free(m->buffer);
        m->buffer = b;
        m->buffer_numel = left;
    }
}

static const char *const compute_names[] = {"auto", "f32", "bf16"};

int cast_compute_parse(const char *s, cast_compute *out) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, compute_names[i])) {
            *out = (cast_compute)i;
            return 0;
        }
    return -1;
}

const char *cast_compute_name(cast_compute c) { return compute_names[c]; }

int cast_model_set_compute(cast_model *m, cast_compute c, cast_err *err) {
    int native = cast_linear_bf16_native();
    if (c == CAST_COMPUTE_AUTO) {
        m->bf16 = m->storage == CAST_BF16 && native;
        return 0;
    }
    if (c == CAST_COMPUTE_BF16 && !native) {
        const char *emulate = getenv("CAST_BF16_EMULATE");
        if (!emulate || strcmp(emulate, "1"))
            return cast_fail_as(err, CAST_E_ARGUMENT,
                                "%s%sbf16 compute needs bf16 dot-product instructions (AVX512-BF16 or AMX-BF16) and oneDNN; "
                                "%s (use f32 compute)",
                                m->path ? m->path : "", m->path ? ": " : "",
                                cast_cpu_has_bf16() ? "this build has no oneDNN" : "this CPU has neither");
    }
    m->bf16 = c == CAST_COMPUTE_BF16;
    return 0;
}

void cast_model_free(cast_model *m) {
    for (int i = 0; i < m->n_files; i++) cast_st_close(&m->files[i]);
    free(m->files);
    free(m->tensors);
    free(m->layer);
    free(m->buffer);
    free(m->gates);
    free(m->path);
    if (m->master)
        for (int i = 0; i < m->n_tensors; i++) free(m->master[i]);
    free(m->master);
    free(m->half_buffer);
    memset(m, 0, sizeof *m);
}

void cast_model_init_random(cast_model *m, const cast_config *cfg, uint64_t seed, float scale) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->storage = CAST_F32;
    build_table(m);
    int64_t total = cast_model_param_count(m);
    m->buffer = cast_alloc_floats((size_t)total);
    m->buffer_numel = total;
    cast_rng rng;
    cast_rng_seed(&rng, seed);
    float *p = m->buffer;
    for (int i = 0; i < m->n_tensors; i++) {
        cast_tensor *t = &m->tensors[i];
        t->data = p;
        p += t->numel;
        int is_norm = strstr(t->name, "norm.weight") != NULL;
        float unit = cfg->gemma ? 0.0f : 1.0f; /* the identity norm: Gemma's are 1 + w */
        for (int64_t k = 0; k < t->numel; k++)
            t->data[k] = is_norm ? unit : (float)(scale * cast_rng_normal(&rng));
    }
}

/* Where each tensor's stored bytes are, across the shard files. */
typedef struct located {
    const cast_st_file *file;
    const cast_st_tensor *st;
} located;

/* weights 0: headers only (cast_model_load_header) */
static int open_weights(cast_model *m, const char *dir, int weights, cast_err *err) {
    int (*open)(cast_st_file *, const char *, cast_err *) = weights ? cast_st_open : cast_st_open_header;
    char *single = cast_path_join(dir, "model.safetensors");
    char *index = cast_path_join(dir, "model.safetensors.index.json");
    int rc = -1;
    if (cast_file_exists(single)) {
        m->files = cast_xcalloc(1, sizeof *m->files);
        if (open(&m->files[0], single, err) == 0) {
            m->n_files = 1;
            rc = 0;
        }
        goto done;
    }
    if (!cast_file_exists(index)) {
        cast_fail(err, "%s: missing (the folder has neither model.safetensors nor model.safetensors.index.json)", single);
        goto done;
    }
    cast_json *j = cast_json_parse_file(index, err);
    if (!j) goto done;
    cast_json *map = cast_json_get(j, "weight_map");
    if (!cast_json_is_object(map)) {
        cast_fail(err, "%s: missing \"weight_map\"", index);
        cast_json_free(j);
        goto done;
    }
    /* unique shard names, in first-seen order */
    int cap = 0;
    char **names = NULL;
    int n = 0;
    for (cast_json *e = cast_json_first(map); e; e = cast_json_next(e)) {
        const char *f = cast_json_string(e);
        if (!f || strchr(f, '/') || !strcmp(f, "..")) {
            cast_fail(err, "%s: invalid shard name for \"%s\"", index, cast_json_key(e));
            goto shards_done;
        }
        int seen = 0;
        for (int i = 0; i < n; i++) seen |= !strcmp(names[i], f);
        if (seen) continue;
        if (n == cap) names = cast_xrealloc(names, sizeof *names * (size_t)(cap = cap ? cap * 2 : 8));
        names[n++] = cast_xstrdup(f);
    }
    m->files = cast_xcalloc((size_t)n + 1, sizeof *m->files);
    for (int i = 0; i < n; i++) {
        char *p = cast_path_join(dir, names[i]);
        int bad = !cast_file_exists(p) ? cast_fail(err, "%s: shard named in %s is missing", p, index)
                                       : open(&m->files[m->n_files], p, err);
        free(p);
        if (bad) goto shards_done;
        m->n_files++;
    }
    rc = 0;
shards_done:
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    cast_json_free(j);
done:
    free(single);
    free(index);
    return rc;
}

static int locate_tensors(cast_model *m, located *loc, cast_err *err) {
    const char *tied_head = "lm_head.weight";
    for (int f = 0; f < m->n_files; f++) {
        const cast_st_file *file = &m->files[f];
        for (int k = 0; k < file->n; k++) {
            const cast_st_tensor *st = &file->tensors[k];
            int i = cast_model_find(m, st->name);
            if (i < 0) {
                /* rotary tables some exporters save, and lm_head of a tied model, carry no parameters */
                size_t len = strlen(st->name);
                if ((len > 20 && !strcmp(st->name + len - 20, "rotary_emb.inv_freq")) ||
                    (m->cfg.tie_embeddings && !strcmp(st->name, tied_head)))
                    continue;
                return cast_fail(err, "%s: unexpected tensor \"%s\" for %s", file->path, st->name, m->cfg.architecture);
            }
            if (loc[i].st)
                return cast_fail(err, "%s: duplicate tensor \"%s\" (also in %s)", file->path, st->name, loc[i].file->path);
            loc[i].file = file;
            loc[i].st = st;
        }
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const cast_tensor *t = &m->tensors[i];
        const cast_st_tensor *st = loc[i].st;
        if (!st) {
            /* name the file that should have held it: the single file, or the index of the shards */
            char *where = m->n_files == 1 ? cast_xstrdup(m->files[0].path) : cast_path_join(m->path, "model.safetensors.index.json");
            cast_fail(err, "%s: missing tensor \"%s\"", where, t->name);
            free(where);
            return -1;
        }
        const char *path = loc[i].file->path;
        if (st->dtype != CAST_F32 && st->dtype != CAST_F16 && st->dtype != CAST_BF16)
            return cast_fail(err, "%s: tensor \"%s\" has dtype %s (supported: F32, F16, BF16)", path, t->name,
                             cast_dtype_name(st->dtype));
        int ok = st->ndim == t->ndim && st->shape[0] == t->shape[0] && (t->ndim == 1 || st->shape[1] == t->shape[1]);
        if (!ok) {
            char got[96] = "", want[96];
            for (int d = 0; d < st->ndim; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)st->shape[d]);
            if (t->ndim == 1) snprintf(want, sizeof want, "%lld", (long long)t->shape[0]);
            else snprintf(want, sizeof want, "%lld, %lld", (long long)t->shape[0], (long long)t->shape[1]);
            return cast_fail(err, "%s: tensor \"%s\" has shape [%s] but config.json implies [%s]", path, t->name, got, want);
        }
    }
    return 0;
}

/* Whether tensor t's stored values serve as they are (else: converted to f32). */
static int held_in_place(const cast_tensor *t, const uint8_t *src, cast_dtype dt) {
    if (dt == CAST_F32) return !((uintptr_t)src & 3);
    return t->ndim == 2 && (dt == CAST_BF16 || dt == CAST_F16) && !((uintptr_t)src & 1);
}

static int model_load(cast_model *m, const char *dir, int weights, cast_err *err) {
    memset(m, 0, sizeof *m);
    if (!cast_dir_exists(dir)) return cast_fail_as(err, CAST_E_IO, "%s: not a model folder", dir);
    char *cfg_path = cast_path_join(dir, "config.json");
    if (!cast_file_exists(cfg_path)) {
        cast_fail_as(err, CAST_E_IO, "%s: missing (a model folder needs config.json)", cfg_path);
        free(cfg_path);
        return -1;
    }
    int rc = cast_config_load(&m->cfg, cfg_path, err);
    free(cfg_path);
    if (rc) return -1;
    m->path = cast_xstrdup(dir);
    build_table(m);
    if (open_weights(m, dir, weights, err)) goto fail;
    located *loc = cast_xcalloc((size_t)m->n_tensors, sizeof *loc);
    if (locate_tensors(m, loc, err)) {
        free(loc);
        goto fail;
    }
    if (!weights) { /* names, shapes and dtype only: tensors have no data */
        m->storage = loc[0].st->dtype;
        free(loc);
        return 0;
    }
    /* F32 tensors at 4-byte-aligned offsets are used in place, and so are
     * 16-bit matrices at 2-byte-aligned offsets; the rest are converted into
     * one owned f32 buffer. */
    int64_t owned = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (!held_in_place(&m->tensors[i], loc[i].file->data + loc[i].st->begin, loc[i].st->dtype)) owned += m->tensors[i].numel;
    m->buffer = owned ? cast_alloc_floats((size_t)owned) : NULL;
    m->buffer_numel = owned;
    float *p = m->buffer;
    m->storage = loc[0].st->dtype;
    for (int i = 0; i < m->n_tensors; i++) {
        const uint8_t *src = loc[i].file->data + loc[i].st->begin;
        cast_tensor *t = &m->tensors[i];
        cast_dtype dt = loc[i].st->dtype;
        if (!held_in_place(t, src, dt)) {
            t->data = p;
            p += t->numel;
            cast_convert_to_f32(t->data, src, dt, (size_t)t->numel);
        } else if (dt == CAST_F32) {
            t->data = (float *)(uintptr_t)src;
        } else {
            t->half = (const uint16_t *)(uintptr_t)src;
            t->half_type = dt == CAST_BF16 ? CAST_HALF_BF16 : CAST_HALF_F16;
        }
    }
    free(loc);
    return 0;
fail:
    cast_model_free(m);
    return -1;
}

int cast_model_load_as(cast_model *m, const char *dir, cast_compute compute, cast_err *err) {
    if (model_load(m, dir, 1, err)) return -1;
    if (cast_model_set_compute(m, compute, err)) {
        cast_model_free(m);
        return -1;
    }
    return 0;
}

int cast_model_load(cast_model *m, const char *dir, cast_err *err) {
    return cast_model_load_as(m, dir, CAST_COMPUTE_AUTO, err);
}

int cast_model_load_header(cast_model *m, const char *dir, cast_err *err) {
    return model_load(m, dir, 0, err);
}

cast_head_slices cast_model_head(const cast_model *m, int layer, int head) {
    const cast_layer_index *x = &m->layer[layer];
    cast_head_slices s;
    int d = m->cfg.head_dim, g = head / (m->cfg.heads / m->cfg.kv_heads);
    s.wq = x->wq;
    s.bq = x->bq;
    s.wk = x->wk;
    s.bk = x->bk;
    s.wv = x->wv;
    s.bv = x->bv;
    s.wo = x->wo;
    s.q_row0 = x->q_row0 + head * d;
    s.kv_row0 = g * d;
    s.k_row0 = x->k_row0 + g * d;
    s.v_row0 = x->v_row0 + g * d;
    s.o_col0 = head * d;
    s.d = d;
    s.group = g;
    s.cols = m->cfg.hidden;
    s.o_stride = m->cfg.heads * d;
    s.fused = x->wq == x->wk;
    return s;
}

static const char *dtype_torch_name(cast_dtype t) {
    return t == CAST_BF16 ? "bfloat16" : t == CAST_F16 ? "float16" : "float32";
}

static int write_config(const cast_model *m, const char *dir, cast_dtype dtype, cast_err *err) {
    char *dst = cast_path_join(dir, "config.json");
    char *text = NULL;
    int rc = -1;
    cast_json *j = NULL;
    if (m->path) {
        char *src = cast_path_join(m->path, "config.json");
        j = cast_json_parse_file(src, err);
        free(src);
        if (!j) goto done;
        /* keep every field of the source; only torch_dtype follows the saved dtype */
        cast_json_set_string(j, "torch_dtype", dtype_torch_name(dtype));
        text = cast_json_print(j);
    } else {
        const cast_config *c = &m->cfg;
        cast_buf b = {0};
        static const char *const types[] = {"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2"};
        cast_buf_printf(&b, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", cast_arch_name(c->arch),
                        types[c->arch]);
        cast_buf_printf(&b, "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n", c->vocab, c->hidden,
                        c->inter);
        cast_buf_printf(&b, "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n",
                        c->layers, c->heads, c->kv_heads);
        cast_buf_printf(&b, "  \"head_dim\": %d,\n  \"rms_norm_eps\": ", c->head_dim);
        cast_buf_json_number(&b, c->rms_eps);
        cast_buf_puts(&b, ",\n  \"rope_theta\": ");
        cast_buf_json_number(&b, c->rope_theta);
        cast_buf_printf(&b, ",\n  \"max_position_embeddings\": %d,\n  \"tie_word_embeddings\": %s,\n", c->max_pos,
                        c->tie_embeddings ? "true" : "false");
        if (c->arch == CAST_ARCH_LLAMA)
            cast_buf_printf(&b, "  \"attention_bias\": %s,\n  \"mlp_bias\": %s,\n", c->qkv_bias ? "true" : "false",
                            c->mlp_bias ? "true" : "false");
        if (c->arch == CAST_ARCH_QWEN3 || c->arch == CAST_ARCH_GEMMA2)
            cast_buf_printf(&b, "  \"attention_bias\": %s,\n", c->qkv_bias ? "true" : "false");
        if (c->arch == CAST_ARCH_MISTRAL || c->arch == CAST_ARCH_PHI3 || c->arch == CAST_ARCH_GEMMA2)
            cast_buf_printf(&b, "  \"sliding_window\": %d,\n", c->sliding_window);
        if (c->arch == CAST_ARCH_PHI3 && c->rope_dim)
            cast_buf_printf(&b, "  \"partial_rotary_factor\": %.17g,\n", (double)c->rope_dim / c->head_dim);
        if (c->gemma) {
            /* layer_types spelled out: a config built in code may not follow the even/odd default */
            cast_buf_printf(&b, "  \"query_pre_attn_scalar\": %.17g,\n", c->attn_scale > 0 ? 1.0 / (c->attn_scale * c->attn_scale) : (double)c->head_dim);
            cast_buf_printf(&b, "  \"attn_logit_softcapping\": %.17g,\n  \"final_logit_softcapping\": %.17g,\n", c->attn_softcap,
                            c->final_softcap);
            cast_buf_puts(&b, "  \"hidden_activation\": \"gelu_pytorch_tanh\",\n  \"layer_types\": [");
            for (int l = 0; l < c->layers; l++)
                cast_buf_printf(&b, "%s\"%s\"", l ? ", " : "", c->full_layer[l] ? "full_attention" : "sliding_attention");
            cast_buf_puts(&b, "],\n");
        }
        if (c->bos_id >= 0) cast_buf_printf(&b, "  \"bos_token_id\": %d,\n", c->bos_id);
        if (c->n_eos) cast_buf_printf(&b, "  \"eos_token_id\": %d,\n", c->eos_ids[0]);
        cast_buf_printf(&b, "  \"hidden_act\": \"%s\",\n  \"torch_dtype\": \"%s\"\n}\n", c->gemma ? "gelu_pytorch_tanh" : "silu",
                        dtype_torch_name(dtype));
        text = cast_buf_steal(&b);
    }
    rc = cast_write_file_atomic(dst, text, strlen(text), err);
done:
    free(text);
    cast_json_free(j);
    free(dst);
    return rc;
}

int cast_model_save(const cast_model *m, const char *dir, cast_dtype dtype, cast_err *err) {
    if (cast_mkdirs(dir, err)) return -1;
    cast_st_entry *e = cast_xcalloc((size_t)m->n_tensors, sizeof *e);
    int n = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const cast_tensor *t = &m->tensors[i];
        e[n].name = t->name;
        e[n].ndim = t->ndim;
        e[n].shape[0] = t->shape[0];
        e[n].shape[1] = t->shape[1];
        e[n].data = t->data;
        e[n].half = t->half;
        e[n].half_type = t->half_type;
        e[n].drop_after = m->stream && mapped_half(m, t);
        n++;
    }
    char *path = cast_path_join(dir, "model.safetensors");
    int rc = cast_st_write(path, e, n, dtype, err);
    free(path);
    free(e);
    if (rc) return -1;
    if (write_config(m, dir, dtype, err)) return -1;
    if (m->path) {
        static const char *extra[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                      "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.json.gz"};
        for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
            char *src = cast_path_join(m->path, extra[i]);
            char *dst = cast_path_join(dir, extra[i]);
            int bad = cast_file_exists(src) && strcmp(src, dst) && cast_copy_file(src, dst, err);
            free(src);
            free(dst);
            if (bad) return -1;
        }
    }
    return 0;
}

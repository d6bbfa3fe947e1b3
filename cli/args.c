#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/timer.h"
#include "dist/dist.h"
#include "cli.h"

static void print_help(const cli_spec *spec) {
    printf("usage: cast %s %s\n\n%s\n\noptions:\n", spec->command, spec->usage, spec->summary);
    for (const cli_opt *o = spec->opts; o && o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        printf("  %-24s %s\n", left, o->help ? o->help : "");
    }
    printf("  %-24s %s\n", "--help", "show this help");
}

int cli_failf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    /* under MPI an error every rank meets (a bad flag, a missing file) is said
     * once: rank 0 says it and ends the job at once; another rank speaks only
     * when, a moment later, it is still alive, i.e. the failure was its own */
    if (cast_dist_rank() > 0) {
        sleep(2);
        fprintf(stderr, "cast: rank %d: ", cast_dist_rank());
    } else
        fputs("cast: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

void cli_note(const char *fmt, ...) {
    if (cast_dist_rank() > 0) return; /* rank 0 speaks for the job */
    va_list ap;
    va_start(ap, fmt);
    fputs("note: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_fail(const cast_err *err) { return cli_failf("%s", err->msg[0] ? err->msg : "unknown error"); }

/* Former flag names, kept working (hidden from --help) with a note that
 * names the current one: one table for every command. */
static const struct {
    const char *command, *old, *now;
} RENAMED[] = {
    {"score", "--limit", "--first"},
    {"eval", "--limit", "--first"},
    {"eval", "--out", "--out-file"}, /* --out is a folder everywhere else */
    {"demo", "--limit", "--first"},
    {"diagnose", "--max-examples", "--first"},
    {"tune", "--max-examples", "--first"},
    {"tune", "--micro-batch", "--batch"}, /* --batch is now sequences per pass; --grad-accum the passes per step */
    {"data refusals", "--out", "--out-file"},
};

/* The option a former name of this command stands for, or NULL. */
static const cli_opt *renamed(const cli_spec *spec, const char *a, size_t len) {
    for (size_t i = 0; i < sizeof RENAMED / sizeof RENAMED[0]; i++) {
        if (strcmp(RENAMED[i].command, spec->command) || strlen(RENAMED[i].old) != len || strncmp(RENAMED[i].old, a, len))
            continue;
        for (const cli_opt *c = spec->opts; c && c->name; c++)
            if (!strcmp(c->name, RENAMED[i].now)) return c;
    }
    return NULL;
}

static int parse_value(const cli_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case CLI_INT: {
        long x = strtol(v, &end, 10);
        if (errno || !*v || *end || x < -2147483647L || x > 2147483647L)
            return cli_failf("%s: expected an integer, got \"%s\"", o->name, v);
        *(int *)o->out = (int)x;
        return 0;
    }
    case CLI_INT64: {
        long long x = strtoll(v, &end, 10);
        if (errno || !*v || *end) return cli_failf("%s: expected an integer, got \"%s\"", o->name, v);
        *(int64_t *)o->out = x;
        return 0;
    }
    case CLI_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || !*v || *end) return cli_failf("%s: expected a number, got \"%s\"", o->name, v);
        *(double *)o->out = x;
        return 0;
    }
    case CLI_STRING: *(const char **)o->out = v; return 0;
    case CLI_STRINGS: {
        cli_strings *s = o->out;
        if (s->n >= 64) return cli_failf("%s: too many values", o->name);
        s->v[s->n++] = v;
        return 0;
    }
    case CLI_FLAG: break;
    }
    return 0;
}

int cli_parse(const cli_spec *spec, int argc, char **argv, const char **pos, int *n_pos) {
    *n_pos = 0;
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            print_help(spec);
            return 2;
        }
        if (!only_positional && !strcmp(a, "--")) {
            only_positional = 1;
            continue;
        }
        if (!only_positional && a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a, '=');
            size_t len = eq ? (size_t)(eq - a) : strlen(a);
            const cli_opt *o = NULL;
            for (const cli_opt *c = spec->opts; c && c->name; c++)
                if (strlen(c->name) == len && !strncmp(c->name, a, len)) o = c;
            if (!o && (o = renamed(spec, a, len))) cli_note("%.*s is now %s", (int)len, a, o->name);
            if (!o) return cli_failf("%s: unknown option %.*s (see cast %s --help)", spec->command, (int)len, a, spec->command);
            if (o->kind == CLI_FLAG) {
                if (eq) return cli_failf("%s takes no value", o->name);
                *(int *)o->out = 1;
                continue;
            }
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) return cli_failf("%s needs a value", o->name);
            if (parse_value(o, v)) return 1;
            /* repeatable lists also take the following non-option words */
            if (o->kind == CLI_STRINGS && !eq)
                while (i + 1 < argc && argv[i + 1][0] != '-')
                    if (parse_value(o, argv[++i])) return 1;
            continue;
        }
        if (*n_pos >= spec->max_positional)
            return cli_failf("%s: unexpected argument \"%s\" (see cast %s --help)", spec->command, a, spec->command);
        pos[(*n_pos)++] = a;
    }
    if (*n_pos < spec->min_positional)
        return cli_failf("%s: missing argument; usage: cast %s %s", spec->command, spec->command, spec->usage);
    return 0;
}

int cli_parse_ids(const char *s, int **ids, int *n) {
    int cap = 16, count = 0;
    int *v = cast_xmalloc(sizeof(int) * (size_t)cap);
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 2147483647L) {
            free(v);
            return cli_failf("invalid token id list \"%s\"", s);
        }
        if (count == cap) v = cast_xrealloc(v, sizeof(int) * (size_t)(cap *= 2));
        v[count++] = (int)x;
        p = end;
        if (*p == ',') p++;
        else if (*p) {
            free(v);
            return cli_failf("invalid token id list \"%s\"", s);
        }
    }
    *ids = v;
    *n = count;
    return 0;
}

void cli_progress_start(cli_progress *p, const char *label, int64_t total) {
    const char *force = getenv("CAST_PROGRESS");
    p->label = label;
    p->total = total;
    p->start = cast_now_s();
    p->last_draw = 0;
    p->enabled = cast_dist_rank() == 0 && (force ? atoi(force) != 0 : isatty(2));
}

static void fmt_time(char *out, size_t n, double s) {
    if (s < 0 || s > 1e7) snprintf(out, n, "--:--");
    else if (s >= 3600) snprintf(out, n, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
    else snprintf(out, n, "%02d:%02d", (int)s / 60, (int)s % 60);
}

void cli_progress_update(cli_progress *p, int64_t done, const char *extra) {
    if (!p->enabled) return;
    double now = cast_now_s();
    if (done < p->total && now - p->last_draw < 0.2) return;
    p->last_draw = now;
    double el = now - p->start;
    double frac = p->total > 0 ? (double)done / (double)p->total : 1.0;
    if (frac > 1) frac = 1;
    double eta = done > 0 ? el * (1.0 - frac) / frac : -1;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    char t1[32], t2[32];
    fmt_time(t1, sizeof t1, el);
    fmt_time(t2, sizeof t2, eta);
    fprintf(stderr, "\r%-12s [%s] %3d%% %lld/%lld  %s elapsed, ETA %s %s\033[K", p->label, bar, (int)(frac * 100),
            (long long)done, (long long)p->total, t1, t2, extra ? extra : "");
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    if (!p->enabled) return;
    cli_progress_update(p, p->total, NULL);
    fputc('\n', stderr);
}

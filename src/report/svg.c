#include "report/svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Colour maps: a sequential light-to-dark ramp and a blue–white–red diverging one. */
typedef struct { double t; int r, g, b; } stop;
static const stop sequential[] = {{0.0, 255, 255, 229}, {0.25, 254, 217, 118}, {0.5, 253, 141, 60},
                                  {0.75, 227, 26, 28},  {1.0, 128, 0, 38}};
static const stop diverging[] = {{0.0, 33, 102, 172}, {0.25, 146, 197, 222}, {0.5, 247, 247, 247},
                                 {0.75, 244, 165, 130}, {1.0, 178, 24, 43}};

static void color(double t, int div, char *out, size_t n) {
    const stop *s = div ? diverging : sequential;
    if (!(t >= 0)) t = 0;
    if (t > 1) t = 1;
    int k = 0;
    while (k < 3 && t > s[k + 1].t) k++;
    double u = (t - s[k].t) / (s[k + 1].t - s[k].t);
    snprintf(out, n, "#%02x%02x%02x", (int)lround(s[k].r + u * (s[k + 1].r - s[k].r)), (int)lround(s[k].g + u * (s[k + 1].g - s[k].g)),
             (int)lround(s[k].b + u * (s[k + 1].b - s[k].b)));
}

static void text_escaped(cast_buf *b, const char *s) {
    for (; s && *s; s++) {
        if (*s == '<') cast_buf_puts(b, "&lt;");
        else if (*s == '>') cast_buf_puts(b, "&gt;");
        else if (*s == '&') cast_buf_puts(b, "&amp;");
        else if (*s == '"') cast_buf_puts(b, "&quot;");
        else cast_buf_putc(b, *s);
    }
}

/* Label every k-th index so that labels never crowd (at most ~16 per axis). */
static int label_step(int n) {
    int step = 1;
    while (n / step > 16) step = step == 1 ? 2 : step == 2 ? 4 : step == 4 ? 5 : step * 2;
    return step;
}

void cast_svg_heatmaps(cast_buf *b, const cast_heatmap *maps, int n, const char *caption) {
    int rows = maps[0].rows, cols = maps[0].cols;
    int longest = rows > cols ? rows : cols;
    int cell = (int)(400.0 / longest);
    cell = cell < 10 ? 10 : cell > 32 ? 32 : cell;
    int left = 58, top = 56, bar = 14, gap = 70;
    int pw = cols * cell, ph = rows * cell;
    int bh = ph < 120 ? 120 : ph; /* the colour bar stays readable for few layers */
    int panel_w = left + pw + 12 + bar + 46;
    int width = n * panel_w + (n - 1) * (gap - 46) + 20, height = top + bh + 40 + (caption ? 20 : 0);
    cast_buf_printf(b,
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                    "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n",
                    width, height, width, height);
    cast_buf_puts(b, "<defs><pattern id=\"hatch\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\">"
                     "<rect width=\"4\" height=\"4\" fill=\"#d9d9d9\"/><path d=\"M0,4 L4,0\" stroke=\"#969696\" stroke-width=\"1\"/>"
                     "</pattern></defs>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    for (int p = 0; p < n; p++) {
        const cast_heatmap *m = &maps[p];
        int x0 = 10 + p * (panel_w + gap - 46), y0 = top;
        double span = m->vmax - m->vmin;
        cast_buf_printf(b, "<g transform=\"translate(%d,0)\">\n<text x=\"%d\" y=\"22\" font-size=\"14\" font-weight=\"bold\">", x0,
                        left);
        text_escaped(b, m->title);
        cast_buf_puts(b, "</text>\n");
        for (int r = 0; r < m->rows; r++)
            for (int c = 0; c < m->cols; c++) {
                double v = m->values[r * m->cols + c];
                char fill[16];
                if (isnan(v)) snprintf(fill, sizeof fill, "url(#hatch)");
                else color(span > 0 ? (v - m->vmin) / span : 0.5, m->diverging, fill, sizeof fill);
                cast_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\" stroke=\"white\" stroke-width=\"0.5\">",
                                left + c * cell, y0 + r * cell, cell, cell, fill);
                cast_buf_printf(b, "<title>%s %d, %s %d: ", m->row_label, r, m->col_label, c);
                text_escaped(b, m->value_label ? m->value_label : m->title);
                if (isnan(v)) cast_buf_puts(b, " undefined");
                else cast_buf_printf(b, " %.4g", v);
                cast_buf_puts(b, "</title></rect>\n");
            }
        if (m->marked)
            for (int r = 0; r < m->rows; r++)
                for (int c = 0; c < m->cols; c++)
                    if (m->marked[r * m->cols + c])
                        cast_buf_printf(b,
                                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\" "
                                        "stroke-width=\"2\"/>\n",
                                        left + c * cell + 1.0, y0 + r * cell + 1.0, cell - 2.0, cell - 2.0);
        /* axes */
        int rs = label_step(m->rows), cs = label_step(m->cols);
        for (int r = 0; r < m->rows; r += rs)
            cast_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" dominant-baseline=\"middle\">%d</text>\n", left - 4,
                            y0 + r * cell + cell / 2, r);
        for (int c = 0; c < m->cols; c += cs)
            cast_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", left + c * cell + cell / 2, y0 - 5, c);
        cast_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", left + pw / 2, y0 - 20);
        text_escaped(b, m->col_label);
        cast_buf_printf(b, "</text>\n<text transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\">", left - 34, y0 + ph / 2);
        text_escaped(b, m->row_label);
        cast_buf_puts(b, "</text>\n");
        cast_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\" stroke-width=\"1\"/>\n", left,
                        y0, pw, ph);
        /* colour bar, high values on top */
        int bx = left + pw + 12, steps = 32;
        for (int i = 0; i < steps; i++) {
            char fill[16];
            color(1.0 - (i + 0.5) / steps, m->diverging, fill, sizeof fill);
            cast_buf_printf(b, "<rect x=\"%d\" y=\"%.2f\" width=\"%d\" height=\"%.2f\" fill=\"%s\"/>\n", bx, y0 + (double)i * bh / steps,
                            bar, (double)bh / steps + 0.3, fill);
        }
        cast_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", bx, y0, bar, bh);
        for (int i = 0; i <= 4; i++) {
            double v = m->vmax - span * i / 4.0;
            cast_buf_printf(b, "<text x=\"%d\" y=\"%d\" dominant-baseline=\"middle\">%.3g</text>\n", bx + bar + 3, y0 + bh * i / 4,
                            fabs(v) < 1e-12 ? 0.0 : v);
        }
        cast_buf_puts(b, "</g>\n");
    }
    if (caption) {
        cast_buf_printf(b, "<text x=\"10\" y=\"%d\" fill=\"#444\">", height - 12);
        text_escaped(b, caption);
        cast_buf_puts(b, "</text>\n");
    }
    cast_buf_puts(b, "</svg>\n");
}

static const char *const palette[] = {"#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"};

static double nice_step(double span) {
    double raw = span / 5, mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

void cast_svg_scatter(cast_buf *b, const cast_plot *p) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < p->n_series; s++)
        for (int i = 0; i < p->series[s].n; i++) {
            double x = p->series[s].x[i], y = p->series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xmin = fmin(xmin, x), xmax = fmax(xmax, x), ymin = fmin(ymin, y), ymax = fmax(ymax, y);
        }
    if (!isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
    double xpad = (xmax - xmin) * 0.08 + 1e-3, ypad = (ymax - ymin) * 0.08 + 1e-3;
    xmin -= xpad, xmax += xpad, ymin -= ypad, ymax += ypad;
    int W = 640, H = 420, L = 70, R = 180, T = 40, B = 50, pw = W - L - R, ph = H - T - B;
#define PX(x) (L + ((x) - xmin) / (xmax - xmin) * pw)
#define PY(y) (T + ph - ((y) - ymin) / (ymax - ymin) * ph)
    cast_buf_printf(b,
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                    "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                    W, H, W, H);
    cast_buf_printf(b, "<text x=\"%d\" y=\"22\" font-size=\"14\" font-weight=\"bold\">", L);
    text_escaped(b, p->title);
    cast_buf_puts(b, "</text>\n");
    double xs = nice_step(xmax - xmin), ys = nice_step(ymax - ymin);
    for (double x = ceil(xmin / xs) * xs; x <= xmax; x += xs)
        cast_buf_printf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/><text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.3g</text>\n",
                        PX(x), T, PX(x), T + ph, PX(x), T + ph + 14, fabs(x) < 1e-12 ? 0.0 : x);
    for (double y = ceil(ymin / ys) * ys; y <= ymax; y += ys)
        cast_buf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" dominant-baseline=\"middle\">%.3g</text>\n",
                        L, PY(y), L + pw, PY(y), L - 5, PY(y), fabs(y) < 1e-12 ? 0.0 : y);
    cast_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", L, T, pw, ph);
    cast_buf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", L + pw / 2, H - 12);
    text_escaped(b, p->x_label);
    cast_buf_printf(b, "</text>\n<text transform=\"translate(18,%d) rotate(-90)\" text-anchor=\"middle\">", T + ph / 2);
    text_escaped(b, p->y_label);
    cast_buf_puts(b, "</text>\n");
    for (int s = 0; s < p->n_series; s++) {
        const cast_series *se = &p->series[s];
        const char *col = palette[s % 8];
        for (int i = 0; i < se->n; i++) {
            if (!isfinite(se->x[i]) || !isfinite(se->y[i])) continue;
            cast_buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\" fill-opacity=\"0.8\" stroke=\"white\"><title>", PX(se->x[i]),
                            PY(se->y[i]), col);
            text_escaped(b, se->name);
            if (se->labels && se->labels[i]) {
                cast_buf_puts(b, " ");
                text_escaped(b, se->labels[i]);
            }
            cast_buf_printf(b, ": x %.4g, y %.4g</title></circle>\n", se->x[i], se->y[i]);
        }
        cast_buf_printf(b, "<circle cx=\"%d\" cy=\"%d\" r=\"5\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" dominant-baseline=\"middle\">", L + pw + 20,
                        T + 10 + 18 * s, col, L + pw + 30, T + 10 + 18 * s);
        text_escaped(b, se->name);
        cast_buf_puts(b, "</text>\n");
    }
    cast_buf_puts(b, "</svg>\n");
#undef PX
#undef PY
}

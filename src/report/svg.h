/* SVG pictures: heatmaps (the conflict map) and scatter plots (the
 * safety–utility trade-off). Plain SVG 1.1, readable in any browser. */
#ifndef CAST_REPORT_SVG_H
#define CAST_REPORT_SVG_H

#include "base/buf.h"

typedef struct cast_heatmap {
    const char *title;
    const double *values; /* [rows * cols], row-major; NaN = undefined (hatched grey) */
    int rows, cols;
    double vmin, vmax;
    int diverging;        /* blue–white–red around the middle of [vmin, vmax] */
    const int *marked;    /* [rows * cols] non-zero: outlined (may be NULL) */
    const char *row_label, *col_label;
    const char *value_label; /* shown in each cell's tooltip */
} cast_heatmap;

/* Panels side by side, each with axes, a colour bar and a tooltip per cell. */
void cast_svg_heatmaps(cast_buf *out, const cast_heatmap *maps, int n, const char *caption);

typedef struct cast_series {
    const char *name;
    const double *x, *y;
    int n;
    const char *const *labels; /* per point tooltip (may be NULL) */
} cast_series;

typedef struct cast_plot {
    const char *title, *x_label, *y_label;
    const cast_series *series;
    int n_series;
} cast_plot;

/* A scatter plot with a legend; axis ranges from the data, padded. */
void cast_svg_scatter(cast_buf *out, const cast_plot *p);

#endif

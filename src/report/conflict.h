/* The conflict map as a picture: heatmaps of score, −cos and FS, layer × head,
 * with the top 5 % of heads outlined. */
#ifndef CAST_REPORT_CONFLICT_H
#define CAST_REPORT_CONFLICT_H

#include "base/buf.h"
#include "cast/diagnose.h"

void cast_conflict_map_svg(const cast_conflict_map *map, cast_buf *out);
/* conflict_map.json, .csv and .svg into dir: all three or none. */
int cast_conflict_map_write(const cast_conflict_map *map, const char *dir, cast_err *err);

#endif

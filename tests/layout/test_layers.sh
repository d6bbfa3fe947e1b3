#!/usr/bin/env bash
# The library's layers go one way (docs/library.md):
#   base → dist → tensor → model → text → train → cast → eval → report → api,
# with the organism and the command line on top. A file may include its own
# layer and the layers below it, never one above; src/ never includes cli/;
# include/cast.h includes only the C library's headers.
. "$(dirname "$0")/../cli/lib.sh"
cat >"$TMP/layers.py" <<'PY'
import os, re, sys
src = sys.argv[1]
order = ["base", "dist", "tensor", "model", "text", "train", "cast", "eval", "report", "api", "organism"]
rank = {name: i for i, name in enumerate(order)}
found = set(d for d in os.listdir(os.path.join(src, "src")) if os.path.isdir(os.path.join(src, "src", d)))
bad = ["src/%s: a folder outside the layer order" % d for d in sorted(found - set(order))]
edges = 0
for layer in order:
    folder = os.path.join(src, "src", layer)
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith((".c", ".h")):
            continue
        for n, line in enumerate(open(os.path.join(folder, name), encoding="utf-8"), 1):
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            target = m.group(1)
            where = "src/%s/%s:%d" % (layer, name, n)
            if target == "cli.h" or target.startswith("cli/"):
                bad.append("%s includes the command line (%s)" % (where, target))
            top = target.split("/")[0] if "/" in target else None
            if top in rank:
                edges += 1
                if rank[top] > rank[layer]:
                    bad.append("%s: %s includes %s, a higher layer" % (where, layer, target))
for n, line in enumerate(open(os.path.join(src, "include", "cast.h"), encoding="utf-8"), 1):
    m = re.match(r'\s*#\s*include\s+(\S+)', line)
    if m and not m.group(1).startswith("<"):
        bad.append("include/cast.h:%d includes %s (it must stand alone)" % (n, m.group(1)))
print("%d include edges between layers checked" % edges)
for b in bad:
    print("LAYER:", b)
sys.exit(1 if bad or edges < 100 else 0)
PY
check "the include edges follow the layer order" /usr/bin/python3 "$TMP/layers.py" "$SRC"
# the check can fail: an upward include planted in a copy of a base file is caught
mkdir -p "$TMP/tree/src/base" "$TMP/tree/src/train" "$TMP/tree/include"
cp "$SRC/include/cast.h" "$TMP/tree/include/"
printf '#include "train/optim.h"\n' >"$TMP/tree/src/base/planted.c"
for i in $(seq 1 100); do printf '#include "base/buf.h"\n'; done >"$TMP/tree/src/train/edges.c"
check "an upward include is caught" sh -c "! /usr/bin/python3 '$TMP/layers.py' '$TMP/tree' >/dev/null"
finish

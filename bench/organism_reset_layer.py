#!/usr/bin/env python3
"""Headroom pilot: undo one layer's attention update after tuning.

    python3 bench/organism_reset_layer.py BASE TUNED OUT [--layer L]

Copies the TUNED model folder to OUT with layer L's attention weights
(q, k, v, o projections) taken from BASE: what `cast attribute` will do per
unit, done by hand for one layer. Pure standard library: tensors are copied
as raw byte ranges, so both files must hold them with the same dtype and shape.
"""
import argparse
import json
import os
import shutil
import struct


def read(path):
    with open(path, 'rb') as f:
        raw = f.read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    return raw, header, 8 + n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('base')
    ap.add_argument('tuned')
    ap.add_argument('out')
    ap.add_argument('--layer', type=int, default=0)
    a = ap.parse_args()
    shutil.copytree(a.tuned, a.out, dirs_exist_ok=True)
    braw, bh, bstart = read(os.path.join(a.base, 'model.safetensors'))
    traw, th, tstart = read(os.path.join(a.tuned, 'model.safetensors'))
    out = bytearray(traw)
    names = ['model.layers.%d.self_attn.%s_proj.weight' % (a.layer, p) for p in 'qkvo']
    for name in names:
        b, t = bh[name], th[name]
        assert b['dtype'] == t['dtype'] and b['shape'] == t['shape'], name
        b0, b1 = b['data_offsets']
        t0, t1 = t['data_offsets']
        out[tstart + t0:tstart + t1] = braw[bstart + b0:bstart + b1]
    with open(os.path.join(a.out, 'model.safetensors'), 'wb') as f:
        f.write(out)
    print('reset %s in %s' % (', '.join(names), a.out))


if __name__ == '__main__':
    main()

"""Minimal safetensors reader/writer (no third-party package).

File layout (https://github.com/huggingface/safetensors, "Format"):
    8 bytes   little-endian u64 N = length of the JSON header in bytes
    N bytes   JSON: {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
                     "__metadata__": {"format": "pt"}}
              padded with spaces so that 8 + N is a multiple of 8
    rest      raw little-endian tensor data; data_offsets are relative to the start of
              this section, [begin, end) byte ranges, packed without gaps here.

Tensors are torch tensors; bf16/f16/f32/f64/i64 are written in their own dtype.
"""

import json
import os
import struct
import sys

import torch

assert sys.byteorder == "little", "safetensors data is little-endian; this writer assumes a little-endian host"

# safetensors dtype string <-> torch dtype
DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def tensor_bytes(t):
    """Raw little-endian bytes of a tensor, in its own dtype (row-major)."""
    t = t.detach().contiguous().cpu()
    if t.numel() == 0:
        return b""
    return t.view(-1).view(torch.uint8).numpy().tobytes()


def build(tensors, metadata=None):
    """Serialize {name: tensor} (dict order kept) into safetensors bytes."""
    header = {}
    chunks = []
    offset = 0
    for name, t in tensors.items():
        raw = tensor_bytes(t)
        header[name] = {
            "dtype": DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    return build_raw(header, b"".join(chunks))


def build_raw(header, data):
    """Serialize an arbitrary header dict and data blob (used to make broken files)."""
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-(8 + len(hjson))) % 8)  # pad so that the data starts 8-aligned
    return struct.pack("<Q", len(hjson)) + hjson + data


def save(path, tensors, metadata=None):
    with open(path, "wb") as f:
        f.write(build(tensors, metadata))


def save_raw(path, header, data):
    """Write an arbitrary header dict and data blob (build_raw) to path."""
    with open(path, "wb") as f:
        f.write(build_raw(header, data))


def read_raw(path):
    """-> (header dict, data bytes) of a safetensors file, nothing checked."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n].decode("utf-8")), blob[8 + n :]


def load(path):
    """Read a safetensors file into {name: tensor} (copies)."""
    header, data = read_raw(path)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dt = DTYPES[info["dtype"]]
        buf = bytearray(data[b:e])
        t = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.zeros(0, dtype=torch.uint8)
        out[name] = t.view(dt).reshape(info["shape"]).clone()
    return out


def load_folder(folder):
    """The weights of a model folder: model.safetensors, or every shard its
    model.safetensors.index.json names."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for name in files:
        out.update(load(os.path.join(folder, name)))
    return out

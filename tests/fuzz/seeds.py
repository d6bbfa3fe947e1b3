#!/usr/bin/env python3
"""Seeds for the fuzz targets, cut down from the real files of the shared data
folder: python3 seeds.py SHARED OUT writes OUT/corpus-tokenizer,
OUT/corpus-chat and OUT/corpus-dataset. The real files are megabytes (a
tokenizer.json is 2-11 MB); a fuzz input that large takes seconds per run, so
each seed keeps the shape of its file and only the first part of its data:

- tokenizer: every tokenizer.json (gzip'd or not) and GPT-2's vocab.json +
  merges.txt (as one tokenizer.json), with the vocabulary entries below id
  1000 and the merges among them; normalizer, pre-tokenizer, post-processor,
  decoder and added tokens as they are;
- chat: each tokenizer_config.json chat template with the conversations of
  chat_template.jsonl beside it, in fuzz_chat.c's input format;
- dataset: each JSONL, JSON and CSV file (gzip'd or not), cut after its first
  records (at most about 6 KB, at a record boundary).

A missing shared folder gives no seeds, not an error."""
import gzip
import json
import os
import sys

KEEP_IDS = 1000
DATASET_BYTES = 6000


def read(path):
    with open(path, 'rb') as f:
        data = f.read()
    return gzip.decompress(data) if data[:2] == b'\x1f\x8b' else data


def write(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), 'wb') as f:
        f.write(data)


def merge_parts(m):
    return m.split(' ', 1) if isinstance(m, str) else m


def shrink_tokenizer(tok):
    model = tok['model']
    vocab = {p: i for p, i in model['vocab'].items() if i < KEEP_IDS}
    merges = []
    for m in model.get('merges') or []:
        parts = merge_parts(m)
        if len(parts) == 2 and parts[0] in vocab and parts[1] in vocab and parts[0] + parts[1] in vocab:
            merges.append(m)
    model['vocab'] = vocab
    model['merges'] = merges
    return json.dumps(tok, ensure_ascii=False).encode()


def gpt2_tokenizer(folder):
    vocab = json.loads(read(os.path.join(folder, 'vocab.json')))
    merges = [l for l in read(os.path.join(folder, 'merges.txt')).decode().split('\n') if l and not l.startswith('#version')]
    byte_level = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}
    return {'model': {'type': 'BPE', 'vocab': vocab, 'merges': merges}, 'pre_tokenizer': byte_level, 'decoder': byte_level,
            'added_tokens': [{'id': 50256, 'content': '<|endoftext|>', 'special': True}]}


def tokenizer_seeds(shared, out):
    root = os.path.join(shared, 'tokenizers')
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        for file in ('tokenizer.json', 'tokenizer.json.gz'):
            if os.path.exists(os.path.join(folder, file)):
                write(out, name + '.json', shrink_tokenizer(json.loads(read(os.path.join(folder, file)))))
        if os.path.exists(os.path.join(folder, 'vocab.json')) and os.path.exists(os.path.join(folder, 'merges.txt')):
            write(out, name + '.json', shrink_tokenizer(gpt2_tokenizer(folder)))


def chat_seeds(shared, out):
    root = os.path.join(shared, 'tokenizers')
    for name in sorted(os.listdir(root)):
        config = os.path.join(root, name, 'tokenizer_config.json')
        if not os.path.exists(config):
            continue
        template = json.loads(read(config)).get('chat_template')
        if not isinstance(template, str):
            continue
        convs = os.path.join(root, name, 'chat_template.jsonl')
        lines = read(convs).decode().splitlines() if os.path.exists(convs) else []
        for k, line in enumerate(lines):
            conv = json.loads(line)
            msgs = b'\0'.join((m['role'] + '\x01' + m['content']).encode() for m in conv['messages'])
            flag = b'+' if conv.get('add_generation_prompt') else b''
            write(out, '%s_%d.bin' % (name, k), template.encode() + b'\0' + flag + msgs)


def cut_lines(data):
    """The first lines (JSONL) or rows (CSV: a newline outside quotes)."""
    end, quotes = 0, 0
    for i, c in enumerate(data[:DATASET_BYTES]):
        if c == ord('"'):
            quotes += 1
        elif c == ord('\n') and quotes % 2 == 0:
            end = i + 1
    return data[:end] if end else data[:DATASET_BYTES]


def cut_array(data):
    items, kept = json.loads(data), []
    for item in items:
        kept.append(item)
        if len(json.dumps(kept, ensure_ascii=False, indent=1).encode()) > DATASET_BYTES:
            kept.pop()
            break
    return json.dumps(kept or items[:1], ensure_ascii=False, indent=1).encode()


def dataset_seeds(shared, out):
    for folder, _, files in sorted(os.walk(shared)):
        for file in sorted(files):
            base = file[:-3] if file.endswith('.gz') else file
            # tokenizer files are not datasets (their fixtures and conversations are)
            if not base.endswith(('.jsonl', '.json', '.csv')) or base.startswith('tokenizer') or base == 'vocab.json':
                continue
            data = read(os.path.join(folder, file))
            seed = cut_array(data) if base.endswith('.json') else cut_lines(data)
            name = os.path.relpath(os.path.join(folder, base), shared).replace(os.sep, '_')
            write(out, name, seed)


def main():
    shared, out = sys.argv[1], sys.argv[2]
    if not os.path.isdir(shared):
        print('seeds.py: no %s, no seeds from real files' % shared)
        return
    tokenizer_seeds(shared, os.path.join(out, 'corpus-tokenizer'))
    chat_seeds(shared, os.path.join(out, 'corpus-chat'))
    dataset_seeds(shared, os.path.join(out, 'corpus-dataset'))


if __name__ == '__main__':
    main()

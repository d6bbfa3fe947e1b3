// Hugging Face `tokenizers` side of bench_tokenizer.sh: encodes every
// non-empty line of FILE, ROUNDS times over, and prints one JSON object.
// usage: node bench_tokenizer.js TOKENIZER_DIR FILE ROUNDS
// Two timings: "sequential" awaits one encode() per line (each call crosses
// the N-API boundary), "batch" hands all lines to one encodeBatch() call
// (run with TOKENIZERS_PARALLELISM=false / RAYON_NUM_THREADS=1 and a single
// CPU, it measures the Rust engine on one thread).
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { Tokenizer } = require(path.join(__dirname, 'node_modules', '@anush008', 'tokenizers'));

function load(dir) {
  const json = path.join(dir, 'tokenizer.json');
  if (fs.existsSync(json)) return Tokenizer.fromFile(json);
  if (fs.existsSync(json + '.gz')) return Tokenizer.fromString(zlib.gunzipSync(fs.readFileSync(json + '.gz')).toString('utf8'));
  // GPT-2's vocab.json + merges.txt, assembled as the standard GPT-2 pipeline
  const vocab = JSON.parse(fs.readFileSync(path.join(dir, 'vocab.json'), 'utf8'));
  const merges = fs.readFileSync(path.join(dir, 'merges.txt'), 'utf8').split('\n')
    .filter((l) => l && !l.startsWith('#version'));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return Tokenizer.fromString(JSON.stringify({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: vocab['<|endoftext|>'], content: '<|endoftext|>', single_word: false, lstrip: false,
      rstrip: false, normalized: false, special: true }],
    normalizer: null, pre_tokenizer: byteLevel, post_processor: null, decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, vocab, merges },
  }));
}

async function main() {
  const [dir, file, roundsArg] = process.argv.slice(2);
  const rounds = Math.max(1, parseInt(roundsArg || '5', 10));
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
  const t0 = process.hrtime.bigint();
  const tok = load(dir);
  const loadS = Number(process.hrtime.bigint() - t0) / 1e9;
  const opts = { addSpecialTokens: false };

  let seqTokens = 0;
  let s0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    for (const l of lines) seqTokens += (await tok.encode(l, null, opts)).getLength();
  }
  const seqS = Number(process.hrtime.bigint() - s0) / 1e9;

  // FNV-1a over all ids (4 little-endian bytes each), as cast's --bench reports it
  let hash = 2166136261;
  for (const l of lines) {
    for (const id of (await tok.encode(l, null, opts)).getIds()) {
      for (let k = 0; k < 4; k++) hash = Math.imul(hash ^ ((id >>> (8 * k)) & 0xff), 16777619) >>> 0;
    }
  }

  let batchTokens = 0;
  s0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    for (const e of await tok.encodeBatch(lines, opts)) batchTokens += e.getLength();
  }
  const batchS = Number(process.hrtime.bigint() - s0) / 1e9;

  console.log(JSON.stringify({
    lines: lines.length, rounds, load_seconds: loadS, ids_hash: hash.toString(16).padStart(8, '0'),
    sequential: { tokens: seqTokens, seconds: seqS, tokens_per_s: seqTokens / seqS },
    batch: { tokens: batchTokens, seconds: batchS, tokens_per_s: batchTokens / batchS },
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });

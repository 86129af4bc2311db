#!/usr/bin/env node
// Synthetic blocklist generator (used by bench/filter-bench.js).
//   node rules/gen-synthetic.js N [format] > out.txt
// format: domains (default) | hosts | adblock
// Domain i is a pure function of i (domainAt), so a benchmark can recompute
// any listed name (i < N) or a guaranteed miss (i >= N) without storing the list.
import { createWriteStream } from 'node:fs';
import { pathToFileURL } from 'node:url';

const SYL = ['ad', 'tra', 'ck', 'met', 'ri', 'cs', 'pix', 'el', 'ser', 'vo', 'beac', 'on', 'tag', 'stat', 'log', 'cdn', 'img', 'an', 'aly', 'tix'];
const MID = ['adserver', 'telemetry', 'stats', 'pixel', 'promo', 'media', 'cdn', 'track', 'banner', 'click'];
const TLD = ['com', 'net', 'org', 'io', 'info', 'biz', 'co.uk', 'de', 'ru', 'xyz', 'top', 'online'];

function mix(x) {
  x = Math.imul(x ^ 0x9e3779b9, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The i-th synthetic domain (unique for every i >= 0). */
export function domainAt(i) {
  const r = mix(i + 1);
  const r2 = mix(r);
  let word = '';
  for (let k = 0, v = r; k < 2 + (v % 3); k++, v = Math.floor(v / 20) + 7) word += SYL[v % SYL.length];
  let d = `${word}-${i.toString(36)}.${MID[r2 % MID.length]}.${TLD[(r2 >>> 8) % TLD.length]}`;
  if ((r2 >>> 16) % 4 === 0) d = `${SYL[(r2 >>> 20) % SYL.length]}${(r2 >>> 24) % 10}.${d}`;
  return d;
}

export function lineFor(i, format) {
  const d = domainAt(i);
  if (format === 'hosts') return `0.0.0.0 ${d}`;
  if (format === 'adblock') return `||${d}^`;
  return d;
}

/** Write N lines to a path; resolves when flushed. */
export function writeSynthetic(path, n, format = 'domains') {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(path);
    out.on('error', reject);
    out.write(`# synthetic list: ${n} ${format} entries\n`);
    let i = 0;
    const pump = () => {
      while (i < n) {
        let chunk = '';
        const end = Math.min(n, i + 10000);
        for (; i < end; i++) chunk += lineFor(i, format) + '\n';
        if (!out.write(chunk)) return void out.once('drain', pump);
      }
      out.end(resolve);
    };
    pump();
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const n = Number(process.argv[2] ?? 1000);
  const format = process.argv[3] ?? 'domains';
  for (let i = 0; i < n; i += 10000) {
    let chunk = '';
    for (let j = i; j < Math.min(n, i + 10000); j++) chunk += lineFor(j, format) + '\n';
    process.stdout.write(chunk);
  }
}

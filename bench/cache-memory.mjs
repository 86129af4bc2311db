// node --expose-gc bench/cache-memory.mjs: memory taken by 100,000 cached answers (issue target: 100k entries within 80 MB RSS overall).
import { PacketCache } from '../dist/cache/packet-cache.js';
import { AnswerInfo, analyzeAnswer } from '../dist/dns/answer.js';
import { cacheKey, ParsedQuery, readQuery } from '../dist/dns/wire.js';
import dnsPacket from 'dns-packet';
global.gc?.();
const base = process.memoryUsage();
const cache = new PacketCache({});
const info = new AnswerInfo(); const q = new ParsedQuery();
for (let i = 0; i < 100000; i++) {
  const name = `h${i}.wild.test`;
  const qb = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name }] });
  readQuery(qb, 0, qb.length, q);
  const ans = dnsPacket.encode({ type: 'response', id: 0, flags: 0x8180, questions: [{ type: 'A', name }], answers: [{ type: 'A', name, ttl: 300, data: '192.0.2.20' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 }] });
  analyzeAnswer(ans, ans.length, qb, 0, q, info);
  cache.store(cacheKey(qb, 0, q, 0), ans, ans.length, info);
}
global.gc?.();
const m = process.memoryUsage();
console.log('entries', cache.entries, 'bytes', cache.bytes, 'rss +MB', ((m.rss - base.rss) / 1e6).toFixed(1), 'heap +MB', ((m.heapUsed - base.heapUsed) / 1e6).toFixed(1), 'external +MB', ((m.external + m.arrayBuffers - base.external - base.arrayBuffers) / 1e6).toFixed(1));

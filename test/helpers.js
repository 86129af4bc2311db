// Shared helpers for unit tests: building wire queries/answers with dns-packet (slow path only).
import dnsPacket from 'dns-packet';
import { ParsedQuery, readQuery } from '../dist/dns/wire.js';
import { QueryContext } from '../dist/pipeline/context.js';

export { dnsPacket };

const RCODES = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

export function query(name, type = 'A', { id = 0x1234, edns = false, do: doBit = false, cd = false, udpSize = 1232, options = [] } = {}) {
  return dnsPacket.encode({
    type: 'query', id, flags: dnsPacket.RECURSION_DESIRED | (cd ? dnsPacket.CHECKING_DISABLED : 0),
    questions: [{ type, name, class: 'IN' }],
    additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: udpSize, flags: doBit ? dnsPacket.DNSSEC_OK : 0, options }] : [],
  });
}

export function answer(name, type, answers, { id = 0, rcode = 'NOERROR', authorities = [], edns = true, flags = 0 } = {}) {
  return dnsPacket.encode({
    // dns-packet takes the rcode only through the low bits of flags.
    type: 'response', id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | flags | RCODES[rcode],
    questions: [{ type, name, class: 'IN' }], answers, authorities,
    additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232 }] : [],
  });
}

export function parsed(buf) {
  const q = new ParsedQuery();
  const st = readQuery(buf, 0, buf.length, q);
  return { q, st };
}

/** A context holding `buf`, parsed, with a recording responder. */
export function ctxFor(buf, transport = 'udp') {
  const ctx = new QueryContext();
  ctx.load(buf, 0, buf.length);
  readQuery(ctx.buf, 0, ctx.len, ctx.q);
  ctx.maxReply = transport === 'tcp' ? 65535 : 1232;
  ctx.sent = [];
  ctx.responder = { transport, send(c, wire, off, len) { c.sent.push(Buffer.from(wire.subarray(off, off + len))); }, describe() { return {}; } };
  return ctx;
}

export function decodeAnswer(ctx) {
  return dnsPacket.decode(Buffer.from(ctx.ansBuf.subarray(ctx.ansOff, ctx.ansOff + ctx.ansLen)));
}

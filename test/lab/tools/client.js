#!/usr/bin/env node
// A DNS client for lab tests, run inside the client namespace. Prints one JSON object.
//   query SERVER PORT NAME TYPE [--connected] [--edns]    one query; prints rcode, answers, source
//   burst SERVER PORT COUNT PREFIX [--timeout MS]         COUNT distinct queries at once; counts answers
//   seq SERVER[,SERVER2] PORT COUNT PREFIX                COUNT queries one at a time on connected sockets
//   garbage SERVER PORT COUNT                             sends COUNT malformed datagrams
//   same SERVER PORT COUNT NAME                           COUNT identical queries at once (coalescing)
//   tcp SERVER PORT CONNS PREFIX [--pipeline N] [--timeout MS]
//                                                         CONNS parallel TCP connections, each writing N queries
//                                                         in one write; counts answers matched by ID and name
//   slowtcp SERVER PORT MAXMS                             connects, sends one byte of a frame, then waits for the
//                                                         server to close (up to MAXMS); prints how long it took
import dgram from 'node:dgram';
import net from 'node:net';
import crypto from 'node:crypto';
import dnsPacket from 'dns-packet';

const [mode, server, portStr, ...rest] = process.argv.slice(2);
const port = Number(portStr);
const family = net.isIPv6(server) ? 'udp6' : 'udp4';

function encode(name, type, id, edns) {
  return dnsPacket.encode({
    type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }],
    additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0 }] : [],
  });
}

function out(o) { process.stdout.write(JSON.stringify(o) + '\n'); }

async function query() {
  const [name, type, ...flags] = rest;
  const connected = flags.includes('--connected');
  const s = dgram.createSocket(family);
  const id = crypto.randomInt(65536);
  const msg = encode(name, type, id, flags.includes('--edns'));
  const result = await new Promise((resolve) => {
    const t = setTimeout(() => resolve({ timeout: true }), 4000);
    s.on('message', (m, rinfo) => {
      clearTimeout(t);
      try {
        const p = dnsPacket.decode(m);
        resolve({ rcode: p.rcode, id: p.id, idMatches: p.id === id, answers: p.answers.map((a) => `${a.type} ${typeof a.data === 'string' ? a.data : JSON.stringify(a.data)}`),
          from: rinfo.address, fromPort: rinfo.port, tc: Boolean(p.flags & dnsPacket.TRUNCATED_RESPONSE), aa: Boolean(p.flags & dnsPacket.AUTHORITATIVE_ANSWER),
          ttls: p.answers.map((a) => a.ttl), question: p.questions[0]?.name,
          ede: (p.additionals.find((a) => a.type === 'OPT')?.options ?? []).filter((o) => o.code === 15).map((o) => o.data.readUInt16BE(0)), size: m.length });
      } catch (e) { resolve({ error: e.message }); }
    });
    if (connected) {
      // A connected socket only accepts datagrams from exactly server:port, as stub resolvers do.
      s.connect(port, server, () => s.send(msg));
    } else {
      s.send(msg, port, server);
    }
  });
  s.close();
  out({ connected, ...result });
}

async function seq() {
  // COUNT queries one after another, alternating between the given servers (comma-separated).
  const [countStr, prefix] = rest;
  const servers = server.split(',');
  const results = [];
  for (let i = 0; i < Number(countStr); i++) {
    const srv = servers[i % servers.length];
    const s = dgram.createSocket(net.isIPv6(srv) ? 'udp6' : 'udp4');
    const id = crypto.randomInt(65536);
    const r = await new Promise((resolve) => {
      const t = setTimeout(() => resolve({ timeout: true }), 3000);
      s.on('message', (m, rinfo) => {
        clearTimeout(t);
        try { const p = dnsPacket.decode(m); resolve({ rcode: p.rcode, idMatches: p.id === id, from: rinfo.address, fromPort: rinfo.port }); } catch (e) { resolve({ error: e.message }); }
      });
      s.connect(port, srv, () => s.send(encode(`${prefix}${i}.wild.test`, 'A', id, false)));
    });
    s.close();
    results.push(r);
  }
  out({ results });
}

async function burst() {
  const [countStr, prefix, ...flags] = rest;
  const count = Number(countStr);
  const timeout = flags.includes('--timeout') ? Number(flags[flags.indexOf('--timeout') + 1]) : 8000;
  const s = dgram.createSocket({ type: family, recvBufferSize: 4 << 20 });
  const pending = new Map();
  let answered = 0, noerror = 0, wrong = 0;
  const rcodes = {};
  await new Promise((resolve) => {
    s.bind(0, () => {
      try { s.setRecvBufferSize(4 << 20); } catch { /* best effort */ }
      const t = setTimeout(resolve, timeout);
      s.on('message', (m) => {
        let p;
        try { p = dnsPacket.decode(m); } catch { wrong++; return; }
        const name = pending.get(p.id);
        if (name === undefined || p.questions[0]?.name.toLowerCase() !== name) { wrong++; return; }
        pending.delete(p.id);
        answered++;
        rcodes[p.rcode] = (rcodes[p.rcode] ?? 0) + 1;
        if (p.rcode === 'NOERROR' && p.answers.length > 0) noerror++;
        if (answered === count) { clearTimeout(t); resolve(); }
      });
      for (let i = 0; i < count; i++) {
        const name = `${prefix}${i}.wild.test`;
        pending.set(i, name);
        s.send(encode(name, 'A', i, false), port, server);
      }
    });
  });
  s.close();
  out({ sent: count, answered, noerror, wrong, rcodes });
}

async function same() {
  const [countStr, name] = rest;
  const count = Number(countStr);
  const socks = [];
  let answered = 0;
  const rcodes = {};
  await new Promise((resolve) => {
    const t = setTimeout(resolve, 6000);
    for (let i = 0; i < count; i++) {
      const s = dgram.createSocket(family);
      socks.push(s);
      const id = (i * 7919) & 0xffff;
      s.on('message', (m) => {
        try {
          const p = dnsPacket.decode(m);
          if (p.id !== id) return;
          answered++;
          rcodes[p.rcode] = (rcodes[p.rcode] ?? 0) + 1;
          if (answered === count) { clearTimeout(t); resolve(); }
        } catch { /* counted as unanswered */ }
      });
      s.send(encode(name, 'A', id, false), port, server);
    }
  });
  for (const s of socks) s.close();
  out({ sent: count, answered, rcodes });
}

async function garbage() {
  const count = Number(rest[0]);
  const s = dgram.createSocket(family);
  const samples = [
    () => crypto.randomBytes(crypto.randomInt(0, 12)),                     // shorter than a header
    () => crypto.randomBytes(crypto.randomInt(12, 600)),                   // random bytes
    () => { const b = encode('x.lab.test', 'A', 1, true); b[4] = 0; b[5] = 9; return b; },      // absurd QDCOUNT
    () => { const b = encode('x.lab.test', 'A', 1, false); b[12] = 0xc0; b[13] = 12; return b; }, // pointer loop in question
    () => { const b = encode('x.lab.test', 'A', 1, true); return b.subarray(0, b.length - 3); }, // truncated OPT
    () => { const b = encode('x.lab.test', 'A', 1, false); b[2] |= 0x80; return b; },             // a response
    () => { const b = encode('x.lab.test', 'A', 1, false); b[12] = 70; return b; },               // bad label length
  ];
  let sent = 0;
  for (let i = 0; i < count; i++) {
    await new Promise((r) => s.send(samples[i % samples.length](), port, server, r));
    sent++;
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 5));
  }
  s.close();
  out({ sent });
}

function tcpFrame(msg) {
  const b = Buffer.alloc(msg.length + 2);
  b.writeUInt16BE(msg.length, 0);
  msg.copy(b, 2);
  return b;
}

async function tcp() {
  const [connsStr, prefix, ...flags] = rest;
  const conns = Number(connsStr);
  const per = flags.includes('--pipeline') ? Number(flags[flags.indexOf('--pipeline') + 1]) : 1;
  const timeout = flags.includes('--timeout') ? Number(flags[flags.indexOf('--timeout') + 1]) : 10000;
  let answered = 0, noerror = 0, wrong = 0, failedConns = 0;
  const peers = new Set();
  const started = Date.now();
  await Promise.all(Array.from({ length: conns }, (_, c) => new Promise((resolve) => {
    const pending = new Map();
    const s = net.connect({ host: server, port });
    let buf = Buffer.alloc(0);
    let got = 0;
    const t = setTimeout(() => { failedConns++; s.destroy(); resolve(); }, timeout);
    const done = () => { clearTimeout(t); s.end(); resolve(); };
    s.on('connect', () => {
      peers.add(`${s.remoteAddress}#${s.remotePort}`);
      const frames = [];
      for (let i = 0; i < per; i++) {
        const id = (c * per + i) & 0xffff;
        const name = `${prefix}${c}-${i}.wild.test`;
        pending.set(id, name);
        frames.push(tcpFrame(encode(name, 'A', id, false)));
      }
      s.write(Buffer.concat(frames));
    });
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + m.length);
        let p;
        try { p = dnsPacket.decode(m); } catch { wrong++; continue; }
        if (pending.get(p.id) !== p.questions[0]?.name.toLowerCase()) { wrong++; continue; }
        pending.delete(p.id);
        answered++; got++;
        if (p.rcode === 'NOERROR' && p.answers.length > 0) noerror++;
        if (got === per) done();
      }
    });
    s.on('error', () => {});
    s.on('close', () => { if (got < per) { clearTimeout(t); failedConns++; resolve(); } });
  })));
  out({ conns, sent: conns * per, answered, noerror, wrong, failedConns, peers: [...new Set([...peers].map((p) => p.split('#')[0]))], ms: Date.now() - started });
}

async function slowtcp() {
  const max = Number(rest[0]);
  const s = net.connect({ host: server, port });
  const r = await new Promise((resolve) => {
    let sentAt = 0;
    const t = setTimeout(() => { s.destroy(); resolve({ closed: false }); }, max);
    s.on('connect', () => { sentAt = Date.now(); s.write(Buffer.from([0x01])); });
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(t); resolve({ closed: true, afterMs: Date.now() - sentAt }); });
  });
  out(r);
}

const modes = { query, burst, garbage, same, seq, tcp, slowtcp };
if (!modes[mode]) { process.stderr.write(`unknown mode ${mode}\n`); process.exit(2); }
await modes[mode]();

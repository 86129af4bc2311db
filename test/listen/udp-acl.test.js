// The UDP listener's source ACL on the real native socket (a plain loopback listener, no root): the
// check reads the client address straight from the native metadata words, so this is where a byte
// order or offset mistake would show. Refused datagrams reach no stage, get no reply and are counted.
import t from 'tap';
import dgram from 'node:dgram';
import { UdpListener } from '../../dist/listen/udp.js';
import { ClientAcl } from '../../dist/listen/acl.js';
import { ContextPool } from '../../dist/pipeline/context.js';

function listener(t, cidrs) {
  const seen = [];
  const pool = new ContextPool(16);
  // The chain echoes the query back as the "answer", so an admitted datagram gets exactly one reply.
  const chain = { run(ctx) { seen.push(ctx.len); ctx.responder.send(ctx, ctx.buf, 0, ctx.len); pool.release(ctx); } };
  const l = new UdpListener('plain-test', { address: '127.0.0.1:0', transparent: false, acl: new ClientAcl(cidrs) }, chain, pool);
  t.teardown(() => l.close());
  return { l, seen };
}

async function exchange(port, count) {
  const s = dgram.createSocket('udp4');
  const replies = [];
  s.on('message', (m) => replies.push(m));
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  for (let i = 0; i < count; i++) s.send(Buffer.from(`query-${i}-padding-to-twelve`), port, '127.0.0.1');
  return { s, replies };
}

const portOf = (l) => l.socket.port;

t.test('a source outside the ACL is dropped and counted, with no reply and no stage run', async (t) => {
  const { l, seen } = listener(t, ['10.0.0.0/8', '2001:db8::/32']);
  const { s, replies } = await exchange(portOf(l), 3);
  t.teardown(() => s.close());
  const until = Date.now() + 10_000;
  while (l.droppedAcl < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  t.equal(l.droppedAcl, 3, 'three refused datagrams counted');
  t.same(seen, [], 'no stage saw them');
  t.equal(replies.length, 0, 'no reply');
});

t.test('a source inside the ACL (127.0.0.0/8) reaches the chain and is answered', async (t) => {
  const { l, seen } = listener(t, ['10.0.0.0/8', '127.0.0.0/8']);
  const { s, replies } = await exchange(portOf(l), 3);
  t.teardown(() => s.close());
  const until = Date.now() + 10_000;
  while (replies.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  t.equal(replies.length, 3, 'three replies');
  t.equal(seen.length, 3, 'three queries reached the chain');
  t.equal(l.droppedAcl, 0);
});

t.test('a /32 of the exact address admits; a /32 of its neighbour does not (byte order on the wire words)', async (t) => {
  for (const [cidr, admitted] of [['127.0.0.1/32', true], ['127.0.0.2/32', false], ['1.0.0.127/32', false], ['127.0.0.0/31', true]]) {
    const { l } = listener(t, [cidr]);
    const { s, replies } = await exchange(portOf(l), 1);
    const until = Date.now() + 10_000;
    while (replies.length + l.droppedAcl < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    t.equal(replies.length === 1, admitted, `${cidr}: ${admitted ? 'admitted' : 'refused'}`);
    s.close();
  }
});

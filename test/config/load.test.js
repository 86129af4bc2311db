import t from 'tap';
import { parseConfig } from '../../dist/config/load.js';

const good = `listen:
  tproxy:
    udp: "[::]:53"
upstreams:
  - url: "https://192.0.2.1/dns-query"
`;

t.test('a minimal config loads with defaults', async (t) => {
  const c = parseConfig(good, 'c.yaml');
  t.equal(c.listen.tproxy.udp, '[::]:53');
  t.equal(c.upstream.timeoutMs, 2000);
  t.equal(c.cache.maxBytes, 64 * 1024 * 1024);
  t.equal(c.listen.udpMaxSize, 1232);
});

t.test('errors name the key and the line', async (t) => {
  t.throws(() => parseConfig(good.replace('"[::]:53"', '"[::]53"'), 'c.yaml'), { message: /c\.yaml:3: .*listen\.tproxy\.udp/ });
  t.throws(() => parseConfig(good + 'cache:\n  maxBytes: "lots"\n', 'c.yaml'), { message: /c\.yaml:7: "cache\.maxBytes" must be integer/ });
  t.throws(() => parseConfig(good + 'cahce: {}\n', 'c.yaml'), { message: /c\.yaml:6: unknown key "cahce"/ });
  t.throws(() => parseConfig('listen: {}\n', 'c.yaml'), { message: /missing required key "upstreams"/ });
  t.throws(() => parseConfig(good + 'metrics:\n  listen: "0.0.0.0:9153"\n', 'c.yaml'), { message: /c\.yaml:7: .*not loopback/ });
  t.throws(() => parseConfig('listen: [\n', 'c.yaml'), { message: /c\.yaml:\d+: YAML syntax error/ });
  t.throws(() => parseConfig(good.replace('https://192.0.2.1/dns-query', 'ftp://x'), 'c.yaml'), { message: /c\.yaml:5: "upstreams\.0\.url"/ });
});

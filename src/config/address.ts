import net from 'node:net';

/** "[::]:53", "0.0.0.0:53", "127.0.0.1:5353" → parts; throws with a readable reason. */
export function parseHostPort(s: string): { host: string; port: number; family: 4 | 6 } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  if (!m) throw new Error(`"${s}" is not address:port (IPv6 goes in brackets: "[::]:53")`);
  const host = m[1];
  const port = Number(m[2]);
  if (!(port >= 0 && port <= 65535)) throw new Error(`port ${port} out of range`);
  const fam = net.isIP(host);
  if (fam === 0 && host !== 'localhost') throw new Error(`"${host}" is not an IP address`);
  return { host: host === 'localhost' ? '127.0.0.1' : host, port, family: fam === 6 ? 6 : 4 };
}

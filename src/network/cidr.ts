// Strict CIDR parsing/normalisation for values that end up inside nft rulesets.
// Everything that reaches `nft -f -` must pass through here (or through another
// strict validator) so config values can never inject ruleset syntax.
import { isIPv4, isIPv6 } from 'node:net';

export interface Cidr {
  family: 4 | 6;
  /** canonical network address (host bits cleared) */
  address: string;
  prefix: number;
  /** `address/prefix`, ready for nft / ip */
  text: string;
}

function v4ToBigInt(addr: string): bigint {
  return addr.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function bigIntToV4(n: bigint): string {
  const parts: string[] = [];
  for (let i = 3; i >= 0; i--) parts.push(String(Number((n >> BigInt(i * 8)) & 0xffn)));
  return parts.join('.');
}

function v6ToBigInt(addr: string): bigint {
  let text = addr.toLowerCase();
  // embedded IPv4 tail (::ffff:1.2.3.4)
  const v4tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4tail) {
    const v = v4ToBigInt(v4tail[1]);
    text = text.slice(0, -v4tail[1].length) + ((v >> 16n) & 0xffffn).toString(16) + ':' + (v & 0xffffn).toString(16);
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headParts = head ? head.split(':') : [];
  const tailParts = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const fill = tail !== undefined ? 8 - headParts.length - tailParts.length : 0;
  const groups = [...headParts, ...Array<string>(fill).fill('0'), ...tailParts];
  if (groups.length !== 8) throw new Error(`bad IPv6 address ${addr}`);
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function bigIntToV6(n: bigint): string {
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
  // RFC 5952: compress the longest run (>= 2) of zero groups
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best === -1) return groups.join(':');
  return groups.slice(0, best).join(':') + '::' + groups.slice(best + bestLen).join(':');
}

/** Parse `addr` or `addr/prefix`; host bits are cleared. Throws on anything else. */
export function parseCidr(input: string): Cidr {
  if (typeof input !== 'string' || input.length > 64 || !/^[0-9A-Fa-f:./]+$/.test(input)) {
    throw new Error(`invalid CIDR ${JSON.stringify(input)}`);
  }
  const slash = input.indexOf('/');
  const addr = slash === -1 ? input : input.slice(0, slash);
  const prefixText = slash === -1 ? undefined : input.slice(slash + 1);
  let family: 4 | 6;
  if (isIPv4(addr)) family = 4;
  else if (isIPv6(addr)) family = 6;
  else throw new Error(`invalid CIDR ${JSON.stringify(input)}: not an IP address`);
  const bits = family === 4 ? 32 : 128;
  let prefix = bits;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
      throw new Error(`invalid CIDR ${JSON.stringify(input)}: prefix must be 0..${bits}`);
    }
    prefix = Number(prefixText);
  }
  const value = family === 4 ? v4ToBigInt(addr) : v6ToBigInt(addr);
  const all = (1n << BigInt(bits)) - 1n;
  const mask = prefix === 0 ? 0n : (all << BigInt(bits - prefix)) & all;
  const net = value & mask;
  const address = family === 4 ? bigIntToV4(net) : bigIntToV6(net);
  return { family, address, prefix, text: `${address}/${prefix}` };
}

import type { BlockMode, EdeCode } from './config.js';
import type { BlockTemplates } from './wire.js';

export interface BlockDecision {
  readonly kind: 'block';
  readonly mode: BlockMode;
  /** RFC 8914 info code: 15 Blocked, 17 Filtered */
  readonly ede: EdeCode;
  /** name of the list (or "inline", "group:<name>") whose rule matched */
  readonly list: string;
  /** canonical rule text, e.g. "||ads.example.com^" (computed lazily) */
  readonly rule: string;
  /** the blocked name (the qname, or the CNAME target for inspectAnswer) */
  readonly name: string;
  /** true when produced by inspectAnswer (blocked CNAME target) */
  readonly viaCname: boolean;
  /** internal: source index and answer templates */
  readonly src: number;
  readonly templates: BlockTemplates;
}

export interface LocalDecision {
  readonly kind: 'local';
  /** the local name that answered */
  readonly name: string;
  readonly qtype: number;
  readonly rcode: number;
  /** answer section bytes (first owner is a pointer to the question) */
  readonly answer: Uint8Array;
  readonly ancount: number;
  /** authority section bytes (SOA for NODATA) */
  readonly authority: Uint8Array;
  readonly nscount: number;
}

export interface ForwardDecision {
  readonly kind: 'forward';
  /** normalised upstream: "udp://ip:port", "tcp://…", "https://…" */
  readonly upstream: string;
  /** the configured forward zone that matched */
  readonly domain: string;
}

export type Decision = BlockDecision | LocalDecision | ForwardDecision;

export interface BadLine {
  source: string;
  line: number;
  text: string;
  reason: string;
  kind: 'bad' | 'unsupported';
}

export type LogFn = (level: 'info' | 'warn' | 'error', msg: string, fields?: object) => void;

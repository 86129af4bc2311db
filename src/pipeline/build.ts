// The one place the chain is assembled. Order, and why:
//   0. (ratelimit) — first: it needs only the source address, so a flooding client costs one table
//                  lookup per datagram (malformed ones too, which would otherwise each earn a FORMERR).
//   1. validate  — everything after it reads the parsed question; malformed input stops here.
//   1b. (bypass)  — encrypted-DNS bypass control (#19): after validation (it reads the question), before
//                  the filter, because its answers (canaries, DDR naming our own listeners, listed DoH
//                  hostnames) hold for every client whatever its filter group allows, and a DDR query
//                  must never be forwarded (a public resolver would name itself). Groups may opt out.
//   2. (filter)  — policy needs only the question and the client; blocked names must never reach the
//                  cache or the network, and the client's group becomes part of the cache key.
//   3. cache     — answers hits without the network; coalesces identical misses; serves stale.
//   4. (cname)   — CNAME inspection; after the cache so that, on the way back, it rewrites an answer
//                  whose CNAME chain lands on a blocked name before the cache stores it.
//   5. forward   — last: only queries nothing else could answer spend upstream capacity.
// Answer hooks run in reverse on the way out, so the cache stores what forward fetched.
import { Chain, Stage } from './chain.js';
import type { QueryContext } from './context.js';

export interface ChainParts {
  ratelimit?: Stage | null;
  validate: Stage;
  bypass?: Stage | null;
  filter?: Stage | null;
  cache?: Stage | null;
  cname?: Stage | null;
  forward: Stage;
}

export function buildChain(parts: ChainParts, sink: ConstructorParameters<typeof Chain>[1]): Chain {
  const stages: Stage[] = [];
  if (parts.ratelimit) stages.push(parts.ratelimit);
  stages.push(parts.validate);
  if (parts.bypass) stages.push(parts.bypass);
  if (parts.filter) stages.push(parts.filter);
  if (parts.cache) stages.push(parts.cache);
  if (parts.cname) stages.push(parts.cname);
  stages.push(parts.forward);
  return new Chain(stages, sink);
}

/** Late binding for stages that need to answer through a chain built after them. */
export class ChainRef {
  chain: Chain | null = null;
  readonly respond = (ctx: QueryContext): void => { this.chain!.respond(ctx); };
}

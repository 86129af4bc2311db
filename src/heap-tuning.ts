// `memory.semiSpaceMiB`, applied by `dns-tproxy run` as soon as the config is loaded.
//
// V8 grows the young generation from 0.5 MiB semi-spaces up to 16 MiB under allocation pressure (the miss
// path allocates per query) and keeps it while busy: 32 MiB of RSS for a process whose live young objects
// are a few hundred KiB. Measured with `npm run bench -- --scenarios miss` (README "Memory"): semi-spaces
// of at most 1 MiB cost ~8 % more CPU per miss than V8's 16 MiB; 4 MiB cost no more than 16. Hence the
// default cap of 4.
//
// `--max-semi-space-size` is fixed when the heap is set up and would need a node command-line flag, which
// `node dist/cli.js` (systemd, peers.sh) does not pass. `--semi-space-growth-factor` is read at every
// resize: one growth step goes straight to the cap, and once there growth is switched off.
// DNS_TPROXY_SEMI_SPACE_MIB overrides the config, for measurement (0 = V8's default, no cap).
import v8 from 'node:v8';
import { PerformanceObserver } from 'node:perf_hooks';

const MIB = 1024 * 1024;
export const DEFAULT_SEMI_SPACE_MIB = 4;
/** V8's own growth factor, restored for "no cap". */
const V8_GROWTH_FACTOR = 2;

const fromEnv = process.env.DNS_TPROXY_SEMI_SPACE_MIB;
let watch: PerformanceObserver | null = null;

/** new_space's size: both semi-spaces. */
function youngGenerationBytes(): number {
  for (const s of v8.getHeapSpaceStatistics()) if (s.space_name === 'new_space') return s.space_size;
  return 0;
}

function setGrowthFactor(f: number): void { v8.setFlagsFromString(`--semi-space-growth-factor=${f}`); }

/** Caps each semi-space at `mib` MiB (0: V8's default). A young generation already past it stays. */
export function capYoungGeneration(mib: number): void {
  watch?.disconnect();
  watch = null;
  if (!Number.isInteger(mib) || mib <= 0) { setGrowthFactor(V8_GROWTH_FACTOR); return; }
  const now = youngGenerationBytes() / 2 || MIB / 2;
  if (now >= mib * MIB) { setGrowthFactor(1); return; }
  setGrowthFactor(Math.max(2, Math.round((mib * MIB) / now)));
  // GC entries arrive shortly after each collection, and growth only ever happens at one.
  const w = new PerformanceObserver(() => {
    if (youngGenerationBytes() < 2 * mib * MIB) return;
    setGrowthFactor(1);
    w.disconnect();
    if (watch === w) watch = null;
  });
  w.observe({ entryTypes: ['gc'] });
  watch = w;
}

/** Applies the configured cap unless the environment overrides it. */
export function applyConfiguredSemiSpace(mib: number): void {
  capYoungGeneration(fromEnv !== undefined ? Number(fromEnv) : mib);
}

// Imported first by cli.ts, before anything allocates much.
//
// V8 grows the young generation from 1 MiB semi-spaces to 16 MiB under allocation pressure (the miss path
// allocates per query), and never gives it back: 32 MiB of RSS on a process whose live young objects are a
// few hundred KiB. A growth factor of 1 keeps the semi-spaces at their initial size. This flag is read on
// every resize, so setting it at run time works; `--max-semi-space-size` is fixed at heap set-up and would
// need a node command-line flag, which `node dist/cli.js` (systemd, peers.sh) does not pass.
// DNS_TPROXY_YOUNG_GROWTH overrides it (for measurement: `2` restores V8's default).
import v8 from 'node:v8';

const growth = Number(process.env.DNS_TPROXY_YOUNG_GROWTH ?? 1);
if (Number.isFinite(growth) && growth >= 1) v8.setFlagsFromString(`--semi-space-growth-factor=${growth}`);

// Gateway network setup for dns-tproxy: nftables TPROXY steering of port-53
// traffic plus the policy routing that delivers it to the local listeners.
//
//   networkUp     idempotent apply (routes -> ip rules -> nft table, atomically)
//   networkDown   removes everything we own; no error when already down
//   networkShow   read-only health report
//   cleanupStale  `run --manage-network` start-up after a crash: report + down
//   networkExit   apply failMode when dns-tproxy exits (open: down, closed: keep)
import {
  networkSchema,
  resolveNetworkConfig,
  validatePorts,
  NetworkConfigError,
  DEFAULTS,
  type ListenPorts,
  type NetworkConfig,
  type ResolvedNetworkConfig,
  type FailMode,
} from './config.js';
import { CommandError, NFT, run, runOk } from './exec.js';
import { renderDelete, renderRuleset } from './ruleset.js';
import { ensureRoute, ensureRule, findRoute, findRules, removeRoute, removeRule, type Family } from './routing.js';
import { formatChecks, listTable, listening, nftCheck, ruleText, type Check } from './show.js';
import { aclCidrs, deriveIngress, describeIngress, readIngress, BUILTIN_CLIENT_RANGES, type Ingress } from './ingress.js';

export { networkSchema, resolveNetworkConfig, NetworkConfigError, CommandError, DEFAULTS, renderRuleset };
export { aclCidrs, deriveIngress, describeIngress, readIngress, BUILTIN_CLIENT_RANGES };
export type { ListenPorts, NetworkConfig, ResolvedNetworkConfig, FailMode, Check, Ingress };

const families = (cfg: ResolvedNetworkConfig): Family[] => (cfg.ipv6 ? [4, 6] : [4]);

/**
 * The nft script networkUp would load (for `network rules`, docs and tests). `wanInterfaces`: what
 * readIngress derived (interfaces carrying a default route), skipped when network.interfaces is empty.
 */
export function networkRuleset(cfg: NetworkConfig | undefined, ports: ListenPorts, wanInterfaces: readonly string[] = []): string {
  return renderRuleset(resolveNetworkConfig(cfg), validatePorts(ports), wanInterfaces);
}

export async function networkUp(cfg: NetworkConfig | undefined, ports: ListenPorts): Promise<Ingress> {
  const c = resolveNetworkConfig(cfg);
  const p = validatePorts(ports);
  const ingress = await readIngress(c);
  const script = renderRuleset(c, p, ingress.wanInterfaces);
  const existed = (await listTable(c.table)) !== undefined;
  try {
    // Routing first, so the moment nft starts marking packets they are deliverable.
    for (const f of families(c)) {
      await ensureRoute(c, f);
      await ensureRule(c, f);
    }
    if (!c.ipv6) {
      // ipv6 switched off since the last up: do not leave the v6 half behind
      await removeRule(c, 6).catch(() => 0);
      await removeRoute(c, 6).catch(() => false);
    }
    await runOk(NFT, ['-f', '-'], script);
  } catch (err) {
    if (!existed) await downResolved(c).catch(() => []);
    throw err;
  }
  return ingress;
}

async function downResolved(c: ResolvedNetworkConfig): Promise<string[]> {
  const removed: string[] = [];
  const errors: string[] = [];
  // Every step is attempted even when an earlier one fails, and a failed step is tried once more:
  // stopping half way would leave a rule or route behind that only a manual cleanup removes.
  const step = async <T>(what: string, fn: () => Promise<T>, fatal = true): Promise<T | undefined> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (attempt === 0) { await new Promise((r) => setTimeout(r, 100)); continue; }
        if (fatal) errors.push(`${what}: ${(err as Error).message}`);
        return undefined;
      }
    }
  };
  if ((await step('nft list', () => listTable(c.table))) !== undefined) {
    await step('nft delete', () => runOk(NFT, ['-f', '-'], renderDelete(c.table)));
    removed.push(`nft table inet ${c.table}`);
  }
  // Both families always: config may have changed (ipv6: false) since `up`. IPv6 failures are not
  // fatal: v6 may be disabled in the kernel.
  for (const f of [4, 6] as Family[]) {
    const v = f === 4 ? 'ip' : 'ip -6';
    const n = (await step(`${v} rule`, () => removeRule(c, f), f === 4)) ?? 0;
    if (n) removed.push(`${v} rule ${ruleText(c)}${n > 1 ? ` (x${n})` : ''}`);
    const r = (await step(`${v} route`, () => removeRoute(c, f), f === 4)) ?? false;
    if (r) removed.push(`${v} route local default dev lo table ${c.routeTable}`);
  }
  if (errors.length) throw new Error(`network down incomplete: ${errors.join('; ')}`);
  return removed;
}

export async function networkDown(cfg: NetworkConfig | undefined): Promise<void> {
  await downResolved(resolveNetworkConfig(cfg));
}

/** Like networkDown, but returns what was found (and removed), for logging after a crash. */
export async function cleanupStale(cfg: NetworkConfig | undefined): Promise<{ found: string[] }> {
  return { found: await downResolved(resolveNetworkConfig(cfg)) };
}

/**
 * Called when dns-tproxy exits under `run --manage-network` (and by a systemd
 * ExecStopPost hook): failMode open removes everything, closed keeps the rules.
 */
export async function networkExit(cfg: NetworkConfig | undefined): Promise<{ action: 'removed' | 'kept'; found: string[] }> {
  const c = resolveNetworkConfig(cfg);
  if (c.failMode === 'closed') return { action: 'kept', found: [] };
  return { action: 'removed', found: await downResolved(c) };
}

export async function networkShow(
  cfg: NetworkConfig | undefined,
  ports: ListenPorts,
): Promise<{ ok: boolean; checks: Check[]; text: string }> {
  const c = resolveNetworkConfig(cfg);
  const p = validatePorts(ports);
  const checks: Check[] = [];
  const nftVersion = await run(NFT, ['--version']).catch(() => undefined);
  if (!nftVersion || nftVersion.code !== 0) {
    checks.push({ name: 'nft-table', ok: false, detail: 'nft not runnable (install nftables)' });
  } else {
    checks.push(nftCheck(c, p, await listTable(c.table)));
  }
  for (const f of families(c)) {
    const rules = await findRules(c, f);
    checks.push({
      name: `ip-rule-v${f}`,
      ok: rules.length === 1,
      detail: rules.length === 0 ? `missing: ${ruleText(c)}` : rules.map((r) => r.raw).join(' | ') + (rules.length > 1 ? ' (duplicated)' : ''),
    });
    const route = await findRoute(c, f);
    checks.push({
      name: `route-v${f}`,
      ok: route !== undefined,
      detail: route ? `table ${c.routeTable}: ${route}` : `missing: local default dev lo table ${c.routeTable}`,
    });
  }
  const udp = await listening('udp', p.udpPort);
  checks.push({
    name: 'listener-udp',
    ok: udp.length > 0,
    detail: udp.length ? `port ${p.udpPort} bound (${udp.join(', ')})` : `nothing bound on udp port ${p.udpPort}`,
  });
  if (c.tcp) {
    const tcp = await listening('tcp', p.tcpPort);
    checks.push({
      name: 'listener-tcp',
      ok: tcp.length > 0,
      detail: tcp.length ? `port ${p.tcpPort} listening (${tcp.join(', ')})` : `nothing listening on tcp port ${p.tcpPort}`,
    });
  }
  let ingressText: string;
  try {
    ingressText = describeIngress(await readIngress(c));
  } catch (e) {
    ingressText = `ingress: cannot read interfaces and routes (${(e as Error).message})\n`;
  }
  const ok = checks.every((x) => x.ok);
  const head =
    `dns-tproxy network: ${ok ? 'OK' : 'NOT OK'} (failMode ${c.failMode}, local ${c.local ? 'on' : 'off'}, ` +
    `ipv6 ${c.ipv6 ? 'on' : 'off'}, tcp ${c.tcp ? 'on' : 'off'})`;
  return { ok, checks, text: `${head}\n${formatChecks(checks)}\n${ingressText}` };
}
